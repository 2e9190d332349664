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

#include <string.h>
#include <urcu-qsbr.h>

#include "core/worker.h"
#include "room/room.h"
#include "room/room_int.h"
#include "room/snapshot.h"
#include "../common/roomfx.h"

#define NW 3

static struct roomfx R;

/* Two members on the room's home (0) move with it to 1; each is handed
 * over, and re-binding until the owner's answer is handled. */
static void test_rebinding_until_answered(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 3);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 0);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    assert_false(room_member_rebinding(a.m));
    roomfx_ep_send(&a);
    assert_int_equal(b.media, 1);
    assert_int_equal(a.media, 0);

    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 1);
    assert_int_equal(b.moved_to, 1);
    roomfx_ep_hand_off(&R, &a, 1);
    roomfx_ep_hand_off(&R, &b, 1);
    /* Joined at once on the new worker, not re-bound yet. */
    assert_true(room_member_joined(a.m) && room_member_rebinding(a.m));
    assert_true(room_member_joined(b.m) && room_member_rebinding(b.m));
    /* The re-bind JOINs reach the home (0), which routes them to the
     * owner (1); the owner's answers are not handled yet. */
    while (roomfx_step(&R, 0))
        ;
    assert_true(room_member_rebinding(a.m) && room_member_rebinding(b.m));
    roomfx_pump(&R);
    assert_false(room_member_rebinding(a.m));
    assert_false(room_member_rebinding(b.m));
    assert_true(room_member_joined(a.m) && room_member_joined(b.m));
    /* Both on 1 in the room's snapshot now: delivered there. */
    roomfx_ep_send(&a);
    assert_int_equal(b.media, 2);
    roomfx_ep_send(&b);
    assert_int_equal(a.media, 1);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_stop(&R);
}

/* A member that joined normally, or is still joining, is never re-binding. */
static void test_rebinding_not_joined(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 3);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 0);
    assert_false(room_member_rebinding(a.m));
    roomfx_ep_join(&a, id, "a");
    assert_false(room_member_rebinding(a.m)); /* JOINING */
    roomfx_pump(&R);
    assert_true(room_member_joined(a.m));
    assert_false(room_member_rebinding(a.m));
    room_member_del(a.m);
    roomfx_stop(&R);
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
            while (roomfx_step(&R, w))
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
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 2);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(b.m), 0);
    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    r_pump_but(2);
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 0, &n), 0);
    r_pump_but(2);
    /* Worker 2's queue: the REHOME of the first move, then the second's. */
    unsigned q = R.tail[2] - R.head[2];
    assert_int_equal(q, 2);
    struct worker_msg first = R.q[2][R.head[2] % ROOMFX_QMAX];
    struct worker_msg second = R.q[2][(R.head[2] + 1) % ROOMFX_QMAX];
    assert_int_equal((int)first.type, ROOM_MSG_REHOME);
    assert_int_equal((int)second.type, ROOM_MSG_REHOME);
    R.head[2] += 2;
    rcu_quiescent_state();
    room_dispatch_one(R.s[2], &second);
    assert_int_equal(room_member_owner(b.m), 0);
    room_dispatch_one(R.s[2], &first); /* late */
    assert_int_equal(room_member_owner(b.m), 0);
    roomfx_pump(&R);
    assert_int_equal(room_member_owner(b.m), 0);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_stop(&R);
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
