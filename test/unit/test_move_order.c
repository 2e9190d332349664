/* The order of a room's move messages as a member that joins around a move
 * sees them (lib/room/member.c member_on_ack, move.c move_on_rehome).
 *
 * The JOIN's answer (ROOM_MSG_ACK) and the REHOMEs of the room's moves come
 * from different workers, on rings with no order between them: a REHOME
 * of an earlier move may reach the member after the answer of the room's
 * current owner, and a REHOME of a later move may reach it before the
 * answer of the owner the room has left since. The answer carries the
 * room's move count (ack_hdr.moves) so that the member orders both: the
 * first REHOME is stale, the second names the owner (and, when it asks the
 * room's members to follow, the member follows once joined).
 *
 * Four workers, driven by hand as test_room_move.c does (a router with one
 * queue per destination worker, room_dispatch_one): the room's home (0),
 * its owners (1, then 2), and the members' worker (3), whose rings from 1
 * and 2 are read in the order each test holds back. */
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

#define NW 4
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

static void r_start_lim(const struct room_limits *lim)
{
    memset(&R, 0, sizeof(R));
    R.buf_base = buf_live();
    rcu_register_thread();
    assert_int_equal(room_shared_new(&R.sh, NW, lim), 0);
    static const struct worker_ops wops = {0};
    struct worker_config cfg = {.n_workers = NW, .no_pin = true};
    assert_int_equal(worker_pool_new(&R.pool, &cfg, &wops, NULL), 0);
    for (unsigned w = 0; w < NW; w++) {
        assert_int_equal(room_shard_new(&R.s[w], R.sh, worker_pool_get(R.pool, w), &ops, NULL), 0);
        R.s[w]->send_hook = hook;
    }
}

static void r_start(uint32_t amax)
{
    struct room_limits lim = {.affinity_max_members = amax};
    r_start_lim(&lim);
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

static bool no_placements(void)
{
    for (unsigned w = 0; w < NW; w++)
        for (uint32_t b = 0; b <= R.s[w]->placed_mask; b++)
            if (R.s[w]->placed[b] != NULL)
                return false;
    return true;
}

static int move(unsigned home, const char *id, unsigned to)
{
    uint32_t n;
    return room_shard_move(R.s[home], (const uint8_t *)id, strlen(id), to, &n);
}

/* Takes the first message of `type` out of worker w's queue (the others
 * keep their order): held back, as a ring read later than another. */
static struct worker_msg hold(unsigned w, uint16_t type)
{
    for (unsigned i = R.head[w]; i != R.tail[w]; i++) {
        if (R.q[w][i % QMAX].type != type)
            continue;
        struct worker_msg wm = R.q[w][i % QMAX];
        for (unsigned k = i; k + 1 != R.tail[w]; k++)
            R.q[w][k % QMAX] = R.q[w][(k + 1) % QMAX];
        R.tail[w]--;
        return wm;
    }
    fail_msg("no message of type 0x%x for worker %u", type, w);
    struct worker_msg none = {0};
    return none;
}

static void release(unsigned w, const struct worker_msg *wm)
{
    assert_true(R.tail[w] - R.head[w] < QMAX);
    R.q[w][R.tail[w]++ % QMAX] = *wm;
}

/* A room (home 0) with a on worker 0 and d on worker 3. */
static void join2(struct ep *a, struct ep *d, const char *id)
{
    ep_new(a, 0);
    ep_new(d, 3);
    ep_join(a, id, "a");
    ep_join(d, id, "d");
    r_pump();
    assert_int_equal(a->last_code, 0);
    assert_int_equal(d->last_code, 0);
}

/* The room moves 0 -> 1 -> 2; the REHOME of the first move (from 1) is read
 * on worker 3 only after c joined there and was answered by the room's
 * owner (2). That REHOME is stale for c as for d: c's owner stays 2.
 * Without ack_hdr.moves c's move count was 0 and the REHOME of move 1 set
 * its owner to 1, where the room is not. */
static void test_stale_rehome_after_join(void **state)
{
    (void)state;
    r_start(0);
    const char *id = home_room(0, 0);
    struct ep a, d, c;
    join2(&a, &d, id);
    assert_int_equal(move(0, id, 1), 0);
    assert_true(r_step(1)); /* the MOVE: REHOMEs to 0 and 3, ARRIVED to 0 */
    struct worker_msg rh1 = hold(3, ROOM_MSG_REHOME);
    r_pump();
    assert_int_equal(move(0, id, 2), 0);
    r_pump();
    assert_int_equal(room_member_owner(d.m), 2);
    ep_new(&c, 3);
    ep_join(&c, id, "c"); /* through the home to 2, answered there */
    r_pump();
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 2);
    release(3, &rh1); /* move 1's REHOME, late */
    r_pump();
    assert_int_equal(room_member_owner(d.m), 2);
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, -1);
    room_member_del(a.m);
    room_member_del(c.m);
    room_member_del(d.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

/* c (worker 3) joins the room while it is on 1: 1 answers (its owner then)
 * but the answer is read on 3 only after the room moved on to 2 and 2's
 * REHOME arrived (c was in the snapshot, not yet joined). The REHOME is
 * of a later move than the answer: c's owner is 2. Without the fix the
 * REHOME skipped the joining member and the answer set its owner to 1. */
static void test_rehome_before_join_answer(void **state)
{
    (void)state;
    r_start(0);
    const char *id = home_room(0, 0);
    struct ep a, d, c;
    join2(&a, &d, id);
    assert_int_equal(move(0, id, 1), 0);
    r_pump();
    assert_int_equal(room_member_owner(d.m), 1);
    ep_new(&c, 3);
    ep_join(&c, id, "c");
    assert_true(r_step(0)); /* the home routes it to 1 */
    assert_true(r_step(1));
    room_shard_flush(R.s[1]); /* applied, answered */
    struct worker_msg ack = hold(3, ROOM_MSG_ACK);
    assert_int_equal(move(0, id, 2), 0);
    r_pump(); /* the move; 2's REHOME reaches 3 */
    assert_int_equal(room_member_owner(d.m), 2);
    assert_false(room_member_joined(c.m));
    release(3, &ack);
    r_pump();
    assert_int_equal(c.last_code, 0);
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    /* A later move's REHOME still reaches it. */
    assert_int_equal(move(0, id, 1), 0);
    r_pump();
    assert_int_equal(room_member_owner(c.m), 1);
    assert_int_equal(room_member_owner(d.m), 1);
    room_member_del(a.m);
    room_member_del(c.m);
    room_member_del(d.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

/* As above, with a REHOME that asks every member to follow the room (a
 * small room: affinity_max_members 8): c, whose answer comes after it, is
 * asked to move to the room's owner (2) once it is joined. Members join
 * while not movable (no ROOM_JOIN_MOVE for a small room); c becomes
 * movable before the REHOME. */
static void test_rehome_follow_before_join_answer(void **state)
{
    (void)state;
    r_start(8);
    const char *id = home_room(0, 0);
    struct ep a, d, c;
    ep_new(&a, 0);
    ep_new(&d, 3);
    room_member_set_movable(a.m, false);
    room_member_set_movable(d.m, false);
    ep_join(&a, id, "a");
    ep_join(&d, id, "d");
    r_pump();
    assert_int_equal(d.last_code, 0);
    assert_int_equal(move(0, id, 1), 0);
    r_pump();
    ep_new(&c, 3);
    room_member_set_movable(c.m, false);
    ep_join(&c, id, "c");
    room_member_set_movable(c.m, true);
    assert_true(r_step(0));
    assert_true(r_step(1));
    room_shard_flush(R.s[1]);
    struct worker_msg ack = hold(3, ROOM_MSG_ACK);
    assert_int_equal(move(0, id, 2), 0);
    r_pump();
    assert_int_equal(c.moved_to, -1);
    release(3, &ack);
    r_pump();
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, 2);
    assert_int_equal(d.moved_to, -1); /* not movable */
    room_member_del(a.m);
    room_member_del(c.m);
    room_member_del(d.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

/* c (worker 1, movable) joins the room while it is owned by 1, and the
 * home's MOVE_REQ (to 2) is handled on 1 in the same message phase: the
 * room leaves with c's answer still in its batch. 2 sends its REHOME
 * (move 1, members on 1 follow) first, then, after its flush, c's answer
 * (move 1, at 2), on the same ring. c follows the room once joined. With
 * `others_on_1` d is on 1 too, so the REHOME reaches 1 (it found c in the
 * snapshot and asked it to follow, but the answer of the same move
 * dropped that); without, 1 had no member of the room in its published
 * snapshot and no REHOME reaches it: only the answer can say follow. */
static void carried_join_follows(bool others_on_1)
{
    r_start(0);
    const char *id = home_room(0, 0);
    struct ep a, d, c;
    ep_new(&a, 0);
    ep_new(&d, others_on_1 ? 1 : 3);
    room_member_set_movable(a.m, false);
    room_member_set_movable(d.m, false);
    ep_join(&a, id, "a");
    ep_join(&d, id, "d");
    r_pump();
    assert_int_equal(d.last_code, 0);
    assert_int_equal(move(0, id, 1), 0);
    r_pump();
    assert_int_equal(room_member_owner(d.m), 1);
    ep_new(&c, 1);
    ep_join(&c, id, "c");
    assert_true(r_step(0));              /* the home routes it to 1 */
    assert_int_equal(move(0, id, 2), 0); /* MOVE_REQ to 1, behind the JOIN */
    assert_true(r_step(1));              /* the JOIN: applied, answer pending */
    assert_true(r_step(1));              /* the MOVE_REQ: the room goes, batch and all */
    assert_true(r_step(2));              /* the MOVE: REHOMEs, ARRIVED */
    room_shard_flush(R.s[2]);            /* c is in the snapshot; its answer */
    r_pump();
    assert_int_equal(c.last_code, 0);
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, 2);
    assert_int_equal(d.moved_to, -1); /* not movable */
    room_member_del(a.m);
    room_member_del(c.m);
    room_member_del(d.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

static void test_carried_join_follows(void **state)
{
    (void)state;
    carried_join_follows(true);
}

static void test_carried_join_follows_no_rehome(void **state)
{
    (void)state;
    carried_join_follows(false);
}

/* The carried join is the room's first: c (worker 1, the room's home)
 * makes the room, and the move to 2 (the relay's ROOM_MOVE on the home,
 * same message phase) takes it before any snapshot was published: no
 * REHOME goes anywhere. c's answer from 2 asks it to follow. */
static void test_carried_first_join_follows(void **state)
{
    (void)state;
    r_start(0);
    const char *id = home_room(1, 0);
    struct ep c;
    ep_new(&c, 1);
    ep_join(&c, id, "c");
    assert_true(r_step(1)); /* the JOIN makes the room on 1 */
    assert_int_equal(move(1, id, 2), 0);
    r_pump();
    assert_int_equal(c.last_code, 0);
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, 2);
    room_member_del(c.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

/* c (worker 1, movable) joins while the home moves the room 1 -> 2: its
 * JOIN waits at the home and is applied on 2 after the room arrived (not
 * carried). 2's REHOME (move 1: members on 1 follow) is read on 1 only
 * after 2 published a snapshot with c in it, then c's answer (move 1,
 * same owner). The REHOME's follow stands: c follows. Without the fix an
 * answer of the same move as the REHOME dropped it (`>` in member_on_ack). */
static void test_rehome_follow_same_move_answer(void **state)
{
    (void)state;
    r_start(0);
    const char *id = home_room(0, 0);
    struct ep a, d, c;
    ep_new(&a, 0);
    ep_new(&d, 1);
    room_member_set_movable(a.m, false);
    room_member_set_movable(d.m, false);
    ep_join(&a, id, "a");
    ep_join(&d, id, "d");
    r_pump();
    assert_int_equal(move(0, id, 1), 0);
    r_pump();
    assert_int_equal(room_member_owner(d.m), 1);
    ep_new(&c, 1);
    ep_join(&c, id, "c");
    assert_int_equal(move(0, id, 2), 0); /* MOVE_REQ to 1, placement paused */
    assert_true(r_step(0));              /* c's JOIN waits for the move */
    assert_true(r_step(1));              /* the MOVE_REQ: MOVE to 2 */
    assert_true(r_step(2));              /* the MOVE: REHOMEs, ARRIVED */
    struct worker_msg rh = hold(1, ROOM_MSG_REHOME);
    while (r_step(0)) /* REHOME, ARRIVED: c's JOIN goes to 2 */
        ;
    assert_true(r_step(2));
    room_shard_flush(R.s[2]); /* c is in the snapshot; its answer */
    struct worker_msg ack = hold(1, ROOM_MSG_ACK);
    release(1, &rh);
    release(1, &ack);
    r_pump();
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, 2);
    assert_int_equal(d.moved_to, -1); /* not movable */
    room_member_del(a.m);
    room_member_del(c.m);
    room_member_del(d.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

/* As test_carried_join_follows, but c's answer (carried on move 1, to 2)
 * is read on 1 only after the REHOME of move 2 (2 -> 3, members on 2
 * follow): that REHOME names the owner (3) and does not ask 1's members
 * to follow, yet c was on the worker the room left at move 1, as the
 * members that followed it to 2 and on to 3 were: c follows to 3. */
static void test_carried_join_follows_later_move(void **state)
{
    (void)state;
    r_start(0);
    const char *id = home_room(0, 0);
    struct ep a, d, c;
    ep_new(&a, 0);
    ep_new(&d, 1);
    room_member_set_movable(a.m, false);
    room_member_set_movable(d.m, false);
    ep_join(&a, id, "a");
    ep_join(&d, id, "d");
    r_pump();
    assert_int_equal(move(0, id, 1), 0);
    r_pump();
    ep_new(&c, 1);
    ep_join(&c, id, "c");
    assert_true(r_step(0));
    assert_int_equal(move(0, id, 2), 0);
    assert_true(r_step(1)); /* the JOIN */
    assert_true(r_step(1)); /* the MOVE_REQ */
    assert_true(r_step(2)); /* the MOVE */
    room_shard_flush(R.s[2]);
    struct worker_msg ack = hold(1, ROOM_MSG_ACK);
    r_pump(); /* move 1's REHOME reaches 1 */
    assert_int_equal(move(0, id, 3), 0);
    r_pump(); /* move 2's REHOME reaches 1 */
    assert_false(room_member_joined(c.m));
    assert_int_equal(c.moved_to, -1);
    release(1, &ack);
    r_pump();
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 3);
    assert_int_equal(c.moved_to, 3);
    room_member_del(a.m);
    room_member_del(c.m);
    room_member_del(d.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_rehome_after_join),
        cmocka_unit_test(test_rehome_before_join_answer),
        cmocka_unit_test(test_rehome_follow_before_join_answer),
        cmocka_unit_test(test_carried_join_follows),
        cmocka_unit_test(test_carried_join_follows_no_rehome),
        cmocka_unit_test(test_carried_first_join_follows),
        cmocka_unit_test(test_rehome_follow_same_move_answer),
        cmocka_unit_test(test_carried_join_follows_later_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
