/* Room-affine placement on the owner side (lib/room/owner.c,
 * affinity_max_members), driven directly as in test_owner.c: a pool that is
 * never started lends the shard its worker, the shard's send hook captures
 * what the owner sends. A JOIN from another worker for a room that would
 * then have at most the limit's members is answered ROOM_JOIN_MOVE (no
 * member added, no room created) when the joiner can move; a local JOIN,
 * an unmovable joiner (WebSocket) and a room over the limit join as
 * without affinity.
 *
 * The owner load bound (owner_share_max, lib/room/place.c) runs two
 * shards whose messages a router delivers by hand, one queue per
 * destination worker (the rings' order per pair is kept): a home over its
 * share places new rooms on the next worker, rooms already live stay, and
 * the drain of a placement (DROP, bounced messages) keeps a member's JOIN
 * and LEAVE in order even when they cross the room's end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/worker.h"
#include "proto/errcode.h"
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

static int capture(void *arg, unsigned to, struct worker_msg *wm)
{
    (void)arg, (void)to;
    assert_true(E.n_sent < CAP_MAX);
    E.sent[E.n_sent++] = *wm;
    return 0;
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

/* ------------------------------------------------ owner load bound */

#define QMAX 256

static struct {
    struct worker_pool *pool;
    struct room_shared *sh;
    struct room_shard *s[N_WORKERS];
    struct worker_msg q[N_WORKERS][QMAX];
    unsigned head[N_WORKERS], tail[N_WORKERS];
    /* The last answer per pid: code and the owner that sent it. */
    uint32_t ack_code[64];
    int ack_owner[64];
    int64_t buf_base;
    /* The next fail_joins JOINs sent to worker 1 are refused, as
     * worker_send refuses past the spill bound. */
    unsigned fail_joins;
    struct buf *last_join_in[N_WORKERS];   /* the last JOIN's buffer delivered */
    struct buf *last_leave_out[N_WORKERS]; /* the last LEAVE's buffer sent to w */
} R;

static int route_capture(void *arg, unsigned to, struct worker_msg *wm)
{
    (void)arg;
    assert_true(to < N_WORKERS);
    if (wm->type == ROOM_MSG_JOIN && to == 1 && R.fail_joins > 0) {
        R.fail_joins--;
        return ROOST_EFULL;
    }
    assert_true(R.tail[to] - R.head[to] < QMAX);
    if (wm->type == ROOM_MSG_LEAVE)
        memcpy(&R.last_leave_out[to], wm->u.bytes, sizeof(struct buf *));
    R.q[to][R.tail[to]++ % QMAX] = *wm;
    return 0;
}

static void r_start(uint32_t share, uint32_t amax)
{
    memset(&R, 0, sizeof(R));
    R.buf_base = buf_live();
    for (unsigned i = 0; i < 64; i++)
        R.ack_owner[i] = -1;
    rcu_register_thread();
    struct room_limits lim = {.owner_share_max = share, .affinity_max_members = amax};
    assert_int_equal(room_shared_new(&R.sh, N_WORKERS, &lim), 0);
    static const struct worker_ops ops = {0};
    struct worker_config cfg = {.n_workers = N_WORKERS, .no_pin = true};
    assert_int_equal(worker_pool_new(&R.pool, &cfg, &ops, NULL), 0);
    for (unsigned w = 0; w < N_WORKERS; w++) {
        assert_int_equal(room_shard_new(&R.s[w], R.sh, worker_pool_get(R.pool, w), &fake_ops, NULL),
                         0);
        R.s[w]->send_hook = route_capture;
    }
}

/* Delivers the oldest message queued for worker w; false when none. */
static bool r_step(unsigned w)
{
    if (R.head[w] == R.tail[w])
        return false;
    struct worker_msg wm = R.q[w][R.head[w]++ % QMAX];
    struct buf *b;
    switch (wm.type) {
    case ROOM_MSG_JOIN: /* as dispatch.c does */
        memcpy(&b, wm.u.bytes, sizeof(b));
        R.last_join_in[w] = b;
        R.s[w]->in_buf = b;
        owner_on_join(R.s[w], (const struct join_req *)b->data);
        R.s[w]->in_buf = NULL;
        break;
    case ROOM_MSG_LEAVE:
        memcpy(&b, wm.u.bytes, sizeof(b));
        R.s[w]->in_buf = b;
        owner_on_leave(R.s[w], (const struct leave_req *)b->data);
        R.s[w]->in_buf = NULL;
        break;
    case ROOM_MSG_DROP:
        memcpy(&b, wm.u.bytes, sizeof(b));
        owner_on_drop(R.s[w], (const struct drop_msg *)b->data);
        break;
    case ROOM_MSG_ACK: {
        memcpy(&b, wm.u.bytes, sizeof(b));
        const struct ack_hdr *a = (const struct ack_hdr *)b->data;
        assert_true(a->pid < 64);
        R.ack_code[a->pid] = a->code;
        R.ack_owner[a->pid] = a->owner;
        break;
    }
    default:
        break;
    }
    assert_true(room_msg_release(&wm));
    return true;
}

/* Delivers and flushes until nothing is left anywhere. */
static void r_pump(void)
{
    bool any = true;
    while (any) {
        any = false;
        for (unsigned w = 0; w < N_WORKERS; w++) {
            while (r_step(w))
                any = true;
            room_shard_flush(R.s[w]);
            any |= R.head[w] != R.tail[w];
        }
    }
}

static bool r_no_placements(void)
{
    for (unsigned w = 0; w < N_WORKERS; w++)
        for (uint32_t b = 0; b <= R.s[w]->placed_mask; b++)
            if (R.s[w]->placed[b] != NULL)
                return false;
    return true;
}

static void r_stop(void)
{
    r_pump();
    for (unsigned w = 0; w < N_WORKERS; w++)
        room_shard_del(R.s[w]);
    worker_pool_del(R.pool);
    rcu_thread_offline();
    rcu_barrier();
    rcu_thread_online();
    rcu_unregister_thread();
    room_shared_del(R.sh);
    assert_int_equal(buf_live(), R.buf_base);
}

/* A member's JOIN (or LEAVE), queued for the room's home as member.c does. */
static void r_join_from(uint32_t pid, unsigned worker, const char *room, bool movable)
{
    struct buf *b = buf_new(sizeof(struct join_req));
    assert_non_null(b);
    struct join_req *jr = (struct join_req *)b->data;
    memset(jr, 0, sizeof(*jr));
    jr->pid = pid;
    jr->slot = pid;
    jr->gen = 1;
    jr->join_seq = 1;
    jr->worker = (uint16_t)worker;
    jr->perms = PERM_ALL;
    jr->movable = movable;
    jr->room_len = (uint8_t)strlen(room);
    memcpy(jr->room, room, jr->room_len);
    jr->ident_len = 1;
    jr->identity[0] = (uint8_t)pid;
    b->len = sizeof(*jr);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_JOIN, &b, sizeof(b));
    route_capture(NULL, room_shared_owner(R.sh, (const uint8_t *)room, strlen(room)), &wm);
}

static void r_join(uint32_t pid, const char *room)
{
    r_join_from(pid, 0, room, false);
}

static void r_leave(uint32_t pid, const char *room)
{
    struct buf *b = buf_new(sizeof(struct leave_req));
    assert_non_null(b);
    struct leave_req *lr = (struct leave_req *)b->data;
    memset(lr, 0, sizeof(*lr));
    lr->pid = pid;
    lr->slot = pid;
    lr->gen = 1;
    lr->room_len = (uint8_t)strlen(room);
    memcpy(lr->room, room, lr->room_len);
    b->len = sizeof(*lr);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_LEAVE, &b, sizeof(b));
    route_capture(NULL, room_shared_owner(R.sh, (const uint8_t *)room, strlen(room)), &wm);
}

/* The n-th room id (from 0) whose home is worker 0. */
static const char *home0_room(unsigned n)
{
    static char ids[8][16];
    for (unsigned i = 0, found = 0;; i++) {
        char id[16];
        snprintf(id, sizeof(id), "room-%u", i);
        if (room_shared_owner(R.sh, (const uint8_t *)id, strlen(id)) != 0)
            continue;
        if (found++ == n) {
            memcpy(ids[n], id, sizeof(id));
            return ids[n];
        }
    }
}

static struct room_stats r_stats(unsigned w)
{
    struct room_stats st;
    room_shard_stats(R.s[w], &st);
    return st;
}

/* share 50%: once worker 0 owns every participant, the next room hashing
 * to it is made on worker 1; the room already live stays on 0; later joins
 * and leaves of the placed room go through the home to worker 1; when the
 * placed room ends, the placement goes too. */
static void run_bound(uint32_t share)
{
    r_start(share, 0);
    const char *a = home0_room(0), *b = home0_room(1);
    r_join(1, a);
    r_pump();
    assert_int_equal(R.ack_code[1], 0);
    assert_int_equal(R.ack_owner[1], 0);
    r_join(2, b);
    r_pump();
    assert_int_equal(R.ack_code[2], 0);
    assert_int_equal(R.ack_owner[2], share ? 1 : 0);
    r_join(3, a); /* live: stays */
    r_join(4, b);
    r_pump();
    assert_int_equal(R.ack_owner[3], 0);
    assert_int_equal(R.ack_owner[4], share ? 1 : 0);
    assert_int_equal(room_shared_rooms(R.sh), 2);
    assert_int_equal(room_shared_participants(R.sh), 4);
    assert_int_equal(atomic_load(&R.sh->owned[1]), share ? 2 : 0);
    if (share) {
        assert_int_equal(r_stats(0).rooms_placed, 1);
        assert_int_equal(r_stats(0).routed, 1); /* pid 4's JOIN */
    }
    r_leave(2, b);
    r_leave(4, b);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 1);
    assert_int_equal(room_shared_participants(R.sh), 2);
    assert_true(r_no_placements());
    /* Worker 0 still holds everything: placed again. */
    r_join(5, b);
    r_pump();
    assert_int_equal(R.ack_owner[5], share ? 1 : 0);
    r_leave(5, b);
    r_leave(1, a);
    r_leave(3, a);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_int_equal(atomic_load(&R.sh->owned[0]), 0);
    assert_int_equal(atomic_load(&R.sh->owned[1]), 0);
    assert_true(r_no_placements());
    r_stop();
}

static void test_bound_places_new_rooms(void **state)
{
    (void)state;
    run_bound(50);
}

static void test_bound_off_keeps_hash(void **state)
{
    (void)state;
    run_bound(0);
}

/* A JOIN routed to the placed owner that finds the room gone comes back to
 * the home after the DROP; a LEAVE of the same member that reached the home
 * between the two waits for it, so the member joins and leaves in order:
 * no ghost is left in a room. */
static void test_bound_drain_keeps_order(void **state)
{
    (void)state;
    r_start(50, 0);
    const char *a = home0_room(0), *b = home0_room(1);
    r_join(1, a);
    r_pump();
    r_join(2, b);
    r_pump();
    assert_int_equal(R.ack_owner[2], 1);
    r_leave(2, b);
    r_join(3, b);
    while (r_step(0)) /* both routed to worker 1 */
        ;
    assert_int_equal(r_stats(0).routed, 2);
    assert_true(r_step(1));   /* pid 2 leaves: the room empties */
    room_shard_flush(R.s[1]); /* the room goes: DROP(routed 2) to the home */
    r_leave(3, b);            /* pid 3 gives up, straight to the home */
    assert_true(r_step(1));   /* pid 3's JOIN finds no room: bounced */
    assert_int_equal(r_stats(1).bounced, 1);
    r_pump();
    assert_int_equal(room_shared_participants(R.sh), 1);
    assert_int_equal(room_shared_rooms(R.sh), 1);
    assert_true(r_no_placements());
    r_leave(1, a);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    r_stop();
}

/* Affinity on the placed owner: a PLACE join from another worker is
 * answered MOVE (no room, DROP to the home); the member joins again from
 * the placed owner's worker and the room is made there. */
static void test_bound_with_affinity(void **state)
{
    (void)state;
    r_start(50, 8);
    const char *a = home0_room(0), *b = home0_room(1);
    r_join(1, a);
    r_pump();
    r_join_from(2, 0, b, true);
    r_pump();
    assert_int_equal(R.ack_code[2], ROOM_JOIN_MOVE);
    assert_int_equal(R.ack_owner[2], 1);
    assert_true(r_no_placements());
    r_join_from(2, 1, b, true);
    r_pump();
    assert_int_equal(R.ack_code[2], 0);
    assert_int_equal(R.ack_owner[2], 1);
    r_stop();
}

/* Random joins and leaves of 24 members over 4 rooms with the messages
 * delivered in random interleavings (per-pair order kept): at every step no
 * room is live on two workers; at the end each member that stays is in its
 * room once, and after everyone leaves nothing is left (no ghost, no
 * placement). */
static void test_bound_random(void **state)
{
    (void)state;
    srand(14);
    for (unsigned round = 0; round < 20; round++) {
        r_start(40, 0);
        const char *rooms_ids[4] = {home0_room(0), home0_room(1), home0_room(2), home0_room(3)};
        int in[24];
        for (unsigned p = 0; p < 24; p++)
            in[p] = -1;
        for (unsigned step = 0; step < 300; step++) {
            unsigned p = (unsigned)rand() % 24;
            int act = rand() % 4;
            if (act == 0 && in[p] < 0) {
                in[p] = rand() % 4;
                r_join(p + 1, rooms_ids[in[p]]);
            } else if (act == 1 && in[p] >= 0) {
                r_leave(p + 1, rooms_ids[in[p]]);
                in[p] = -1;
            } else if (act == 2) {
                r_step((unsigned)rand() % N_WORKERS);
            } else {
                room_shard_flush(R.s[(unsigned)rand() % N_WORKERS]);
            }
            for (unsigned k = 0; k < 4; k++) {
                const uint8_t *id = (const uint8_t *)rooms_ids[k];
                size_t len = strlen(rooms_ids[k]);
                unsigned live = 0;
                for (unsigned w = 0; w < N_WORKERS; w++) {
                    uint64_t h = hash_siphash24(&R.sh->key, id, len);
                    for (struct room *r = R.s[w]->buckets[(h >> 32) & R.s[w]->bucket_mask]; r;
                         r = r->hnext)
                        live += r->id_len == len && memcmp(r->id, id, len) == 0;
                }
                assert_true(live <= 1);
            }
        }
        r_pump();
        int64_t stay = 0;
        for (unsigned p = 0; p < 24; p++)
            stay += in[p] >= 0;
        assert_int_equal(room_shared_participants(R.sh), stay);
        for (unsigned p = 0; p < 24; p++)
            if (in[p] >= 0)
                r_leave(p + 1, rooms_ids[in[p]]);
        r_pump();
        assert_int_equal(room_shared_participants(R.sh), 0);
        assert_int_equal(room_shared_rooms(R.sh), 0);
        assert_true(r_no_placements());
        r_stop();
    }
}

static struct room *r_find(unsigned w, const char *id)
{
    uint64_t h;
    return owner_room_find(R.s[w], (const uint8_t *)id, strlen(id), &h);
}

/* A routed JOIN the home cannot send (spill queue at its bound) is not
 * counted: the joiner is told to try again, and when the placed room ends
 * its DROP's count matches, so the placement goes and the room id takes
 * joins again (counted before the send, it drained forever: every later
 * JOIN of the room was parked at the home). */
static void test_bound_route_send_fails(void **state)
{
    (void)state;
    r_start(50, 0);
    const char *a = home0_room(0), *b = home0_room(1);
    r_join(1, a);
    r_pump();
    r_join(2, b);
    r_pump();
    assert_int_equal(R.ack_owner[2], 1);
    R.fail_joins = 1;
    r_join(3, b); /* FWD to worker 1 refused */
    r_pump();
    assert_int_equal(R.fail_joins, 0);
    assert_int_equal(R.ack_code[3], PROTO_ERR_SERVER_FULL);
    assert_int_equal(R.ack_owner[3], 0);
    assert_int_equal(r_stats(0).routed, 0);
    assert_int_equal(r_stats(0).route_lost, 1);
    r_leave(2, b);
    r_pump();
    assert_true(r_no_placements());
    assert_int_equal(room_shared_rooms(R.sh), 1);
    r_join(4, b);
    r_pump();
    assert_int_equal(R.ack_code[4], 0);
    assert_int_equal(R.ack_owner[4], 1);
    r_leave(4, b);
    r_leave(1, a);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(r_no_placements());
    r_stop();
}

/* A PLACE the home cannot send: no placement is left, the room is made at
 * the home as without the bound. */
static void test_bound_place_send_fails(void **state)
{
    (void)state;
    r_start(50, 0);
    const char *a = home0_room(0), *b = home0_room(1);
    r_join(1, a);
    r_pump();
    R.fail_joins = 1;
    r_join(2, b);
    r_pump();
    assert_int_equal(R.fail_joins, 0);
    assert_int_equal(R.ack_code[2], 0);
    assert_int_equal(R.ack_owner[2], 0);
    assert_int_equal(r_stats(0).rooms_placed, 0);
    assert_true(r_no_placements());
    r_leave(2, b);
    r_leave(1, a);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    r_stop();
}

/* The placed room holds its DROP from its creation: the PLACE JOIN's own
 * buffer, so the room's end allocates nothing; a LEAVE is forwarded in its
 * own buffer too. */
static void test_bound_drop_preallocated(void **state)
{
    (void)state;
    r_start(50, 0);
    const char *a = home0_room(0), *b = home0_room(1);
    r_join(1, a);
    r_pump();
    r_join(2, b);
    r_pump();
    struct room *r = r_find(1, b);
    assert_non_null(r);
    assert_int_equal(r->home, 0);
    assert_non_null(r->drop);
    assert_ptr_equal(r->drop, R.last_join_in[1]);
    /* A forwarded LEAVE goes on in the member's own buffer (no allocation). */
    r_leave(2, b);
    struct buf *mine = R.last_leave_out[0];
    assert_true(r_step(0));
    assert_ptr_equal(R.last_leave_out[1], mine);
    r_leave(1, a);
    r_pump();
    assert_true(r_no_placements());
    assert_int_equal(room_shared_rooms(R.sh), 0);
    r_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_places_new_rooms),
        cmocka_unit_test(test_bound_off_keeps_hash),
        cmocka_unit_test(test_bound_drain_keeps_order),
        cmocka_unit_test(test_bound_with_affinity),
        cmocka_unit_test(test_bound_random),
        cmocka_unit_test(test_bound_route_send_fails),
        cmocka_unit_test(test_bound_place_send_fails),
        cmocka_unit_test(test_bound_drop_preallocated),
        cmocka_unit_test(test_remote_small_moves),
        cmocka_unit_test(test_unmovable_joins_in_place),
        cmocka_unit_test(test_off_joins_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
