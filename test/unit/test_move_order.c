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

#include <string.h>

#include "core/worker.h"
#include "room/room.h"
#include "room/room_int.h"
#include "room/snapshot.h"
#include "../common/roomfx.h"

#define NW 4

static struct roomfx R;

/* A room (home 0) with a on worker 0 and d on worker 3. */
static void join2(struct roomfx_ep *a, struct roomfx_ep *d, const char *id)
{
    roomfx_ep_new(&R, a, 0);
    roomfx_ep_new(&R, d, 3);
    roomfx_ep_join(a, id, "a");
    roomfx_ep_join(d, id, "d");
    roomfx_pump(&R);
    assert_int_equal(a->last_code, 0);
    assert_int_equal(d->last_code, 0);
}

/* As join2 with d on worker dw, a and d not movable (no ROOM_JOIN_MOVE). */
static void join2_fixed(struct roomfx_ep *a, struct roomfx_ep *d, const char *id, unsigned dw)
{
    roomfx_ep_new(&R, a, 0);
    roomfx_ep_new(&R, d, dw);
    room_member_set_movable(a->m, false);
    room_member_set_movable(d->m, false);
    roomfx_ep_join(a, id, "a");
    roomfx_ep_join(d, id, "d");
    roomfx_pump(&R);
}

/* c joined and followed the room to `to`; d, not movable, was not asked. */
static void followed(const struct roomfx_ep *c, const struct roomfx_ep *d, unsigned to)
{
    assert_true(room_member_joined(c->m));
    assert_int_equal(room_member_owner(c->m), to);
    assert_int_equal(c->moved_to, to);
    assert_int_equal(d->moved_to, -1); /* not movable */
}

/* The members leave: the room ends, nothing stays placed; the fixture stops. */
static void end3(struct roomfx_ep *a, struct roomfx_ep *c, struct roomfx_ep *d)
{
    room_member_del(a->m);
    room_member_del(c->m);
    room_member_del(d->m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* The room moves 0 -> 1 -> 2; the REHOME of the first move (from 1) is read
 * on worker 3 only after c joined there and was answered by the room's
 * owner (2). That REHOME is stale for c as for d: c's owner stays 2.
 * Without ack_hdr.moves c's move count was 0 and the REHOME of move 1 set
 * its owner to 1, where the room is not. */
static void test_stale_rehome_after_join(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, d, c;
    join2(&a, &d, id);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    assert_true(roomfx_step(&R, 1)); /* the MOVE: REHOMEs to 0 and 3, ARRIVED to 0 */
    struct worker_msg rh1 = roomfx_hold(&R, 3, ROOM_MSG_REHOME);
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(d.m), 2);
    roomfx_ep_new(&R, &c, 3);
    roomfx_ep_join(&c, id, "c"); /* through the home to 2, answered there */
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 2);
    roomfx_push(&R, 3, &rh1); /* move 1's REHOME, late */
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(d.m), 2);
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, -1);
    end3(&a, &c, &d);
}

/* c (worker 3) joins the room while it is on 1: 1 answers (its owner then)
 * but the answer is read on 3 only after the room moved on to 2 and 2's
 * REHOME arrived (c was in the snapshot, not yet joined). The REHOME is
 * of a later move than the answer: c's owner is 2. Without the fix the
 * REHOME skipped the joining member and the answer set its owner to 1. */
static void test_rehome_before_join_answer(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, d, c;
    join2(&a, &d, id);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(d.m), 1);
    roomfx_ep_new(&R, &c, 3);
    roomfx_ep_join(&c, id, "c");
    assert_true(roomfx_step(&R, 0)); /* the home routes it to 1 */
    assert_true(roomfx_step(&R, 1));
    room_shard_flush(R.s[1]); /* applied, answered */
    struct worker_msg ack = roomfx_hold(&R, 3, ROOM_MSG_ACK);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R); /* the move; 2's REHOME reaches 3 */
    assert_int_equal(room_member_owner(d.m), 2);
    assert_false(room_member_joined(c.m));
    roomfx_push(&R, 3, &ack);
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    /* A later move's REHOME still reaches it. */
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(c.m), 1);
    assert_int_equal(room_member_owner(d.m), 1);
    end3(&a, &c, &d);
}

/* As above, with a REHOME that asks every member to follow the room (a
 * small room: affinity_max_members 8): c, whose answer comes after it, is
 * asked to move to the room's owner (2) once it is joined. Members join
 * while not movable (no ROOM_JOIN_MOVE for a small room); c becomes
 * movable before the REHOME. */
static void test_rehome_follow_before_join_answer(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 8);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, d, c;
    join2_fixed(&a, &d, id, 3);
    assert_int_equal(d.last_code, 0);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    roomfx_ep_new(&R, &c, 3);
    room_member_set_movable(c.m, false);
    roomfx_ep_join(&c, id, "c");
    room_member_set_movable(c.m, true);
    assert_true(roomfx_step(&R, 0));
    assert_true(roomfx_step(&R, 1));
    room_shard_flush(R.s[1]);
    struct worker_msg ack = roomfx_hold(&R, 3, ROOM_MSG_ACK);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R);
    assert_int_equal(c.moved_to, -1);
    roomfx_push(&R, 3, &ack);
    roomfx_pump(&R);
    followed(&c, &d, 2);
    end3(&a, &c, &d);
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
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, d, c;
    join2_fixed(&a, &d, id, others_on_1 ? 1 : 3);
    assert_int_equal(d.last_code, 0);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(d.m), 1);
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    assert_true(roomfx_step(&R, 0));                /* the home routes it to 1 */
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* MOVE_REQ to 1, behind the JOIN */
    assert_true(roomfx_step(&R, 1));                /* the JOIN: applied, answer pending */
    assert_true(roomfx_step(&R, 1));                /* the MOVE_REQ: the room goes, batch and all */
    assert_true(roomfx_step(&R, 2));                /* the MOVE: REHOMEs, ARRIVED */
    room_shard_flush(R.s[2]);                       /* c is in the snapshot; its answer */
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    followed(&c, &d, 2);
    end3(&a, &c, &d);
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
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep c;
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    assert_true(roomfx_step(&R, 1)); /* the JOIN makes the room on 1 */
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(c.moved_to, 2);
    room_member_del(c.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
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
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, d, c;
    join2_fixed(&a, &d, id, 1);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(d.m), 1);
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* MOVE_REQ to 1, placement paused */
    assert_true(roomfx_step(&R, 0));                /* c's JOIN waits for the move */
    assert_true(roomfx_step(&R, 1));                /* the MOVE_REQ: MOVE to 2 */
    assert_true(roomfx_step(&R, 2));                /* the MOVE: REHOMEs, ARRIVED */
    struct worker_msg rh = roomfx_hold(&R, 1, ROOM_MSG_REHOME);
    while (roomfx_step(&R, 0)) /* REHOME, ARRIVED: c's JOIN goes to 2 */
        ;
    assert_true(roomfx_step(&R, 2));
    room_shard_flush(R.s[2]); /* c is in the snapshot; its answer */
    struct worker_msg ack = roomfx_hold(&R, 1, ROOM_MSG_ACK);
    roomfx_push(&R, 1, &rh);
    roomfx_push(&R, 1, &ack);
    roomfx_pump(&R);
    followed(&c, &d, 2);
    end3(&a, &c, &d);
}

/* As test_carried_join_follows, but c's answer (carried on move 1, to 2)
 * is read on 1 only after the REHOME of move 2 (2 -> 3, members on 2
 * follow): that REHOME names the owner (3) and does not ask 1's members
 * to follow, yet c was on the worker the room left at move 1, as the
 * members that followed it to 2 and on to 3 were: c follows to 3. */
static void test_carried_join_follows_later_move(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, d, c;
    join2_fixed(&a, &d, id, 1);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    assert_true(roomfx_step(&R, 0));
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    assert_true(roomfx_step(&R, 1)); /* the JOIN */
    assert_true(roomfx_step(&R, 1)); /* the MOVE_REQ */
    assert_true(roomfx_step(&R, 2)); /* the MOVE */
    room_shard_flush(R.s[2]);
    struct worker_msg ack = roomfx_hold(&R, 1, ROOM_MSG_ACK);
    roomfx_pump(&R); /* move 1's REHOME reaches 1 */
    assert_int_equal(roomfx_move(&R, 0, id, 3), 0);
    roomfx_pump(&R); /* move 2's REHOME reaches 1 */
    assert_false(room_member_joined(c.m));
    assert_int_equal(c.moved_to, -1);
    roomfx_push(&R, 1, &ack);
    roomfx_pump(&R);
    assert_true(room_member_joined(c.m));
    assert_int_equal(room_member_owner(c.m), 3);
    assert_int_equal(c.moved_to, 3);
    end3(&a, &c, &d);
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
