/* A moved member's quiet re-bind as the relay reports it (session 8):
 * room_member_rebinding() is true from the member's hand-off until the
 * owner's answer to its re-bind, and only then. Meanwhile the room's
 * snapshot may still name the member's old handle, so frames it sends to
 * the others that moved with it go to the worker they left and are lost
 * (counted: media_lost_moved or stale_handles; test_room_move.c
 * test_fanout_lost_counted); once the answer came, they arrive.
 * relay_members reports that state (relay_member_info.rebinding) and
 * test_handoff_prop waits for it to end before it checks delivery.
 *
 * REHOMEs of two successive moves come from two workers, on rings with no
 * order between them: the member keeps the newest (room.moves).
 *
 * The harness is test_room_move.c's (shards on a pool never started and a
 * router that delivers the control messages each shard sends, in order per
 * pair of workers). */
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
#include "core/error.h"
#include "core/worker.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "room/room.h"
#include "room/room_int.h"
#include "room/snapshot.h"

#define NW 3
#define QMAX 256

struct ep {
    unsigned w;
    struct room_member *m;
    uint32_t pid;
    unsigned media, events, joined_msgs, controls, joined_cb, replaced;
    uint32_t last_code;
    int moved_to;
};

static struct {
    struct worker_pool *pool;
    struct room_shared *sh;
    struct room_shard *s[NW];
    struct worker_msg q[NW][QMAX];
    unsigned head[NW], tail[NW];
    int64_t buf_base;
    int fail_type; /* the next message of this type is refused (0: none) */
} R;

static struct msg dec; /* large: lists of 200 */

static int hook(void *arg, unsigned to, struct worker_msg *wm)
{
    (void)arg;
    assert_true(to < NW);
    if (R.fail_type != 0 && (int)wm->type == R.fail_type) {
        R.fail_type = 0;
        return ROOST_ENOMEM;
    }
    assert_true(R.tail[to] - R.head[to] < QMAX);
    R.q[to][R.tail[to]++ % QMAX] = *wm;
    return 0;
}

static int ep_media(void *e, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    (void)b, (void)off, (void)len, (void)arg;
    ((struct ep *)e)->media++;
    return 0;
}

static void ep_control(void *e, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct ep *ep = e;
    ep->controls++;
    if (msg_decode(body, len, &dec) != 0)
        return;
    if (dec.type == MSG_PARTICIPANT_EVENTS)
        ep->events += dec.u.events.n_events;
    if (dec.type == MSG_JOINED)
        ep->joined_msgs++;
}

static void ep_joined(void *e, uint32_t code, void *arg)
{
    (void)arg;
    struct ep *ep = e;
    ep->joined_cb++;
    ep->last_code = code;
}

static void ep_replaced(void *e, void *arg)
{
    (void)arg;
    ((struct ep *)e)->replaced++;
}

static void ep_move(void *e, unsigned to, void *arg)
{
    (void)arg;
    ((struct ep *)e)->moved_to = (int)to;
}

static const struct room_ops ops = {.media = ep_media,
                                    .control = ep_control,
                                    .joined = ep_joined,
                                    .replaced = ep_replaced,
                                    .move = ep_move};

static void r_start(uint32_t amax)
{
    memset(&R, 0, sizeof(R));
    R.buf_base = buf_live();
    rcu_register_thread();
    struct room_limits lim = {.affinity_max_members = amax};
    assert_int_equal(room_shared_new(&R.sh, NW, &lim), 0);
    static const struct worker_ops wops = {0};
    struct worker_config cfg = {.n_workers = NW, .no_pin = true};
    assert_int_equal(worker_pool_new(&R.pool, &cfg, &wops, NULL), 0);
    for (unsigned w = 0; w < NW; w++) {
        assert_int_equal(room_shard_new(&R.s[w], R.sh, worker_pool_get(R.pool, w), &ops, NULL), 0);
        R.s[w]->send_hook = hook;
    }
}

static bool r_step(unsigned w)
{
    if (R.head[w] == R.tail[w])
        return false;
    struct worker_msg wm = R.q[w][R.head[w]++ % QMAX];
    rcu_quiescent_state();
    room_dispatch_one(R.s[w], &wm);
    return true;
}

/* Delivers and flushes (each worker's turn end) until nothing is left. */
static void r_pump(void)
{
    bool any = true;
    while (any) {
        any = false;
        for (unsigned w = 0; w < NW; w++) {
            while (r_step(w))
                any = true;
            room_shard_flush(R.s[w]);
            any |= R.head[w] != R.tail[w];
        }
    }
}

/* Shutdown: what is still queued is discarded (the runtime's discard). */
static void r_stop_discard(void)
{
    for (unsigned w = 0; w < NW; w++)
        while (R.head[w] != R.tail[w])
            assert_true(room_msg_release(&R.q[w][R.head[w]++ % QMAX]));
    for (unsigned w = 0; w < NW; w++)
        room_shard_del(R.s[w]);
    worker_pool_del(R.pool);
    rcu_thread_offline();
    rcu_barrier();
    rcu_thread_online();
    rcu_unregister_thread();
    room_shared_del(R.sh);
    assert_int_equal(buf_live(), R.buf_base);
}

static void r_stop(void)
{
    r_pump();
    r_stop_discard();
}

/* The n-th room id whose home is worker w. */
static const char *home_room(unsigned w, unsigned n)
{
    static char ids[4][16];
    for (unsigned i = 0, found = 0;; i++) {
        char id[16];
        snprintf(id, sizeof(id), "room-%u", i);
        if (room_shared_owner(R.sh, (const uint8_t *)id, strlen(id)) != w)
            continue;
        if (found++ == n) {
            memcpy(ids[n], id, sizeof(id));
            return ids[n];
        }
    }
}

static void ep_new(struct ep *e, unsigned w)
{
    memset(e, 0, sizeof(*e));
    e->w = w;
    e->moved_to = -1;
    assert_int_equal(room_member_new(R.s[w], e, &e->m), 0);
    room_member_set_movable(e->m, true);
    e->pid = room_member_pid(e->m);
}

static void ep_join(struct ep *e, const char *room, const char *ident)
{
    assert_int_equal(room_join(e->m, (const uint8_t *)room, strlen(room), (const uint8_t *)ident,
                               strlen(ident), (const uint8_t *)"n", 1, PERM_ALL),
                     0);
}

static void ep_send(struct ep *e)
{
    uint8_t d[64];
    struct media_hdr h = {.stream_id = 1, .seq = 1};
    assert_int_equal(media_c2r_encode(&h, d, sizeof(d)), MEDIA_C2R_HDR_LEN);
    memset(d + MEDIA_C2R_HDR_LEN, 0xab, 8);
    assert_int_equal(room_publish(e->m, d, MEDIA_C2R_HDR_LEN + 8), 0);
}

/* The connection hand-off of a moved member, as relay/session.c does it:
 * detached on its worker, re-bound on `to`. */
static void ep_hand_off(struct ep *e, unsigned to)
{
    struct room_keep keep;
    room_member_detach(e->m, &keep);
    assert_true(keep.valid);
    e->m = NULL;
    e->w = to;
    assert_int_equal(room_member_rebind(R.s[to], e, &keep, &e->m), 0);
    assert_int_equal(room_member_pid(e->m), e->pid);
    assert_true(room_member_joined(e->m));
}

/* Two members on the room's home (0) move with it to 1; each is handed
 * over, and re-binding until the owner's answer is handled. */
static void test_rebinding_until_answered(void **state)
{
    (void)state;
    r_start(3);
    const char *id = home_room(0, 0);
    struct ep a, b;
    ep_new(&a, 0);
    ep_new(&b, 0);
    ep_join(&a, id, "a");
    ep_join(&b, id, "b");
    r_pump();
    assert_false(room_member_rebinding(a.m));
    ep_send(&a);
    assert_int_equal(b.media, 1);
    assert_int_equal(a.media, 0);

    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    r_pump();
    assert_int_equal(a.moved_to, 1);
    assert_int_equal(b.moved_to, 1);
    ep_hand_off(&a, 1);
    ep_hand_off(&b, 1);
    /* Joined at once on the new worker, not re-bound yet. */
    assert_true(room_member_joined(a.m) && room_member_rebinding(a.m));
    assert_true(room_member_joined(b.m) && room_member_rebinding(b.m));
    /* The re-bind JOINs reach the home (0), which routes them to the
     * owner (1); the owner's answers are not handled yet. */
    while (r_step(0))
        ;
    assert_true(room_member_rebinding(a.m) && room_member_rebinding(b.m));
    r_pump();
    assert_false(room_member_rebinding(a.m));
    assert_false(room_member_rebinding(b.m));
    assert_true(room_member_joined(a.m) && room_member_joined(b.m));
    /* Both on 1 in the room's snapshot now: delivered there. */
    ep_send(&a);
    assert_int_equal(b.media, 2);
    ep_send(&b);
    assert_int_equal(a.media, 1);
    room_member_del(a.m);
    room_member_del(b.m);
    r_stop();
}

/* A member that joined normally, or is still joining, is never re-binding. */
static void test_rebinding_not_joined(void **state)
{
    (void)state;
    r_start(3);
    const char *id = home_room(0, 0);
    struct ep a;
    ep_new(&a, 0);
    assert_false(room_member_rebinding(a.m));
    ep_join(&a, id, "a");
    assert_false(room_member_rebinding(a.m)); /* JOINING */
    r_pump();
    assert_true(room_member_joined(a.m));
    assert_false(room_member_rebinding(a.m));
    room_member_del(a.m);
    r_stop();
}

/* Delivers and flushes on every worker but `skip` until nothing is left
 * there. */
static void r_pump_but(unsigned skip)
{
    bool any = true;
    while (any) {
        any = false;
        for (unsigned w = 0; w < NW; w++) {
            if (w == skip)
                continue;
            while (r_step(w))
                any = true;
            room_shard_flush(R.s[w]);
            any |= R.head[w] != R.tail[w];
        }
    }
}

/* Two moves in a row (0 -> 1, then back home to 0): each new owner sends
 * REHOME to the members' workers, from two different workers, on rings
 * with no order between them. A member that stays where it is (on 2, off
 * the old owners' workers) gets the second move's first: the first's,
 * arriving later, is stale and must not name the old owner again. */
static void test_rehome_reordered(void **state)
{
    (void)state;
    r_start(0);
    const char *id = home_room(0, 0);
    struct ep a, b;
    ep_new(&a, 0);
    ep_new(&b, 2);
    ep_join(&a, id, "a");
    ep_join(&b, id, "b");
    r_pump();
    assert_int_equal(room_member_owner(b.m), 0);
    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    r_pump_but(2);
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 0, &n), 0);
    r_pump_but(2);
    /* Worker 2's queue: the REHOME of the first move, then the second's. */
    unsigned q = R.tail[2] - R.head[2];
    assert_int_equal(q, 2);
    struct worker_msg first = R.q[2][R.head[2] % QMAX];
    struct worker_msg second = R.q[2][(R.head[2] + 1) % QMAX];
    assert_int_equal((int)first.type, ROOM_MSG_REHOME);
    assert_int_equal((int)second.type, ROOM_MSG_REHOME);
    R.head[2] += 2;
    rcu_quiescent_state();
    room_dispatch_one(R.s[2], &second);
    assert_int_equal(room_member_owner(b.m), 0);
    room_dispatch_one(R.s[2], &first); /* late */
    assert_int_equal(room_member_owner(b.m), 0);
    r_pump();
    assert_int_equal(room_member_owner(b.m), 0);
    room_member_del(a.m);
    room_member_del(b.m);
    r_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebinding_until_answered),
        cmocka_unit_test(test_rebinding_not_joined),
        cmocka_unit_test(test_rehome_reordered),
    };
    return cmocka_run_group_tests_name("move_rebind", tests, NULL, NULL);
}
