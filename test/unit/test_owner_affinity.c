/* Room-affine placement on the owner side (lib/room/owner.c,
 * affinity_max_members), driven directly as in test_owner.c: a pool that is
 * never started lends the shard its worker, the shard's send hook captures
 * what the owner sends. A JOIN from another worker for a room that would
 * then have at most the limit's members is answered ROOM_JOIN_MOVE (no
 * member added, no room created) when the joiner can move; a local JOIN,
 * an unmovable joiner (WebSocket) and a room over the limit join as
 * without affinity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/worker.h"
#include "proto/perm.h"
#include "room/room.h"
#include "room/room_int.h"

#define N_WORKERS 2
#define OWNER 0
#define CAP_MAX 64

static struct {
    struct worker_pool *pool;
    struct room_shared *sh;
    struct room_shard *s;
    struct worker_msg sent[CAP_MAX];
    unsigned n_sent;
    int64_t buf_base;
} E;

static void capture(void *arg, unsigned to, struct worker_msg *wm)
{
    (void)arg, (void)to;
    assert_true(E.n_sent < CAP_MAX);
    E.sent[E.n_sent++] = *wm;
}

static int fake_media(void *ep, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    (void)ep, (void)b, (void)off, (void)len, (void)arg;
    return 0;
}

static void fake_control(void *ep, const uint8_t *body, size_t len, void *arg)
{
    (void)ep, (void)body, (void)len, (void)arg;
}

static const struct room_ops fake_ops = {.media = fake_media, .control = fake_control};

static void env_start(uint32_t amax)
{
    memset(&E, 0, sizeof(E));
    E.buf_base = buf_live();
    rcu_register_thread();
    struct room_limits lim = {.affinity_max_members = amax};
    assert_int_equal(room_shared_new(&E.sh, N_WORKERS, &lim), 0);
    static const struct worker_ops ops = {0};
    struct worker_config cfg = {.n_workers = N_WORKERS, .no_pin = true};
    assert_int_equal(worker_pool_new(&E.pool, &cfg, &ops, NULL), 0);
    assert_int_equal(room_shard_new(&E.s, E.sh, worker_pool_get(E.pool, OWNER), &fake_ops, NULL),
                     0);
    E.s->send_hook = capture;
}

static void sent_clear(void)
{
    for (unsigned i = 0; i < E.n_sent; i++)
        assert_true(room_msg_release(&E.sent[i]));
    E.n_sent = 0;
}

static void env_stop(void)
{
    sent_clear();
    room_shard_del(E.s);
    worker_pool_del(E.pool);
    rcu_thread_offline();
    rcu_barrier();
    rcu_thread_online();
    rcu_unregister_thread();
    room_shared_del(E.sh);
    assert_int_equal(buf_live(), E.buf_base);
}

static void join(uint32_t pid, unsigned worker, bool movable)
{
    struct join_req jr;
    memset(&jr, 0, sizeof(jr));
    jr.pid = pid;
    jr.slot = pid;
    jr.gen = 1;
    jr.join_seq = 1;
    jr.worker = (uint16_t)worker;
    jr.perms = PERM_ALL;
    jr.movable = movable;
    jr.room_len = 1;
    jr.room[0] = 'r';
    jr.ident_len = 1;
    jr.identity[0] = (uint8_t)('a' + pid);
    owner_on_join(E.s, &jr);
}

/* The code of the last ACK the owner sent (after a flush). */
static uint32_t last_ack_code(void)
{
    room_shard_flush(E.s);
    for (unsigned i = E.n_sent; i-- > 0;)
        if (E.sent[i].type == ROOM_MSG_ACK) {
            struct buf *b;
            memcpy(&b, E.sent[i].u.bytes, sizeof(b));
            return ((const struct ack_hdr *)b->data)->code;
        }
    fail_msg("no ACK");
    return 0;
}

static int64_t rooms(void)
{
    return room_shared_rooms(E.sh);
}

static void test_remote_small_moves(void **state)
{
    (void)state;
    env_start(2);
    join(1, 1, true);
    assert_int_equal(last_ack_code(), ROOM_JOIN_MOVE);
    assert_int_equal(rooms(), 0); /* nothing created for it */
    /* It comes back from the owner's worker: joined. */
    join(1, OWNER, true);
    assert_int_equal(last_ack_code(), 0);
    assert_int_equal(rooms(), 1);
    /* The second fits the limit too: moved. */
    join(2, 1, true);
    assert_int_equal(last_ack_code(), ROOM_JOIN_MOVE);
    join(2, OWNER, true);
    assert_int_equal(last_ack_code(), 0);
    /* The third would make 3 > 2: joins where it is. */
    join(3, 1, true);
    assert_int_equal(last_ack_code(), 0);
    assert_int_equal(room_shared_participants(E.sh), 3);
    env_stop();
}

static void test_unmovable_joins_in_place(void **state)
{
    (void)state;
    env_start(8);
    join(1, 1, false);
    assert_int_equal(last_ack_code(), 0);
    assert_int_equal(room_shared_participants(E.sh), 1);
    env_stop();
}

static void test_off_joins_in_place(void **state)
{
    (void)state;
    env_start(0);
    join(1, 1, true);
    assert_int_equal(last_ack_code(), 0);
    assert_int_equal(room_shared_participants(E.sh), 1);
    env_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remote_small_moves),
        cmocka_unit_test(test_unmovable_joins_in_place),
        cmocka_unit_test(test_off_joins_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
