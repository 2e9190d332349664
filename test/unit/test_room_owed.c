/* Owed room messages the runtime refuses (lib/room/placed.c, the owed
 * list): a placed or moved room's DROP to its home, a PLACE's DROP that
 * made no room, the bounces behind a DROP, and a moved room's UNALIAS to
 * its table worker. Each is one the other worker's state waits for, so a
 * refusal (ROOST_ENOMEM: a spill queue could not grow; the fixture's
 * fail_type) keeps it and sends it again: at the worker's next turn end,
 * and by a shard timer armed when it was kept, so that an idle worker
 * sends it too. Driven by hand (test/common/roomfx): shards on a pool that
 * is never started; the timer is run on the worker's own timer heap.
 *
 * - A refused DROP ends the home's placement once it goes (a later JOIN of
 *   the id is placed again); without the fix it was lost, and the home
 *   kept the placement forever.
 * - A moved room whose DROP (which carries it back to its home's table)
 *   was refused is freed once it goes, or at shutdown (ASan: no leak);
 *   without the fix it was leaked, still published in the home's table.
 * - A bounce (a JOIN routed to the room's old owner after it ended) goes
 *   behind the DROP it follows, never before it: the home counts it as
 *   coming back after the DROP.
 * - The retry needs no other traffic on the worker: the timer is armed
 *   when a message is kept, backs off while it is refused, and is off once
 *   nothing is owed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/timer.h"
#include "core/worker.h"
#include "room/room.h"
#include "room/room_int.h"
#include "../common/roomfx.h"

#define NW 3

static struct roomfx R;

/* Delivers every queued message, no turn end (flush) anywhere. */
static void deliver_all(void)
{
    for (bool any = true; any;) {
        any = false;
        for (unsigned w = 0; w < NW; w++)
            while (roomfx_step(&R, w))
                any = true;
    }
}

static struct timers *timers_of(unsigned w)
{
    return worker_timers(worker_pool_get(R.pool, w));
}

static bool queue_empty(unsigned w)
{
    return R.head[w] == R.tail[w];
}

/* Pack, home 1: the room is placed on 0; its members leave and it ends
 * there; the runtime refuses its DROP to 1. The next turn end on 0 sends
 * it again: the home's placement drains and goes, and a later JOIN of the
 * id is placed again (on 0, answered there). Without the fix the DROP was
 * lost: the placement stayed, the later JOIN was routed to 0, bounced and
 * applied on the home (a second room of that id, on 1). */
static void test_drop_refused_retried(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d, c;
    roomfx_join3(&R, &a, &b, &d, id);
    assert_non_null(roomfx_find(&R, 0, id));
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_DROP;
    roomfx_pump(&R); /* it ends on 0; its DROP is refused, then sent again */
    assert_int_equal(R.fail_type, 0);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.joined_cb, 1);
    assert_int_equal(c.last_code, 0);
    assert_non_null(roomfx_find(&R, 0, id));
    assert_null(roomfx_find(&R, 1, id));
    assert_int_equal(room_member_owner(c.m), 0);
    room_member_del(c.m);
    roomfx_pump(&R);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* A room moved off its home (1, no bound) to 2 ends there; its DROP
 * carries it back to 1's table and is refused. It stays published in 1's
 * table (readers there may hold it) until the DROP goes; then 1
 * unpublishes it, gets its slot back, and frees it (ASan: no leak).
 * Without the fix the room was leaked, its slot held forever. */
static void test_moved_drop_refused_freed(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 1, id);
    assert_non_null(r);
    uint32_t slot = r->slot, free1 = R.sh->tables[1].n_free;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_DROP;
    deliver_all();
    room_shard_flush(R.s[2]); /* it ends on 2; its DROP is refused */
    assert_int_equal(R.fail_type, 0);
    assert_ptr_equal(R.sh->tables[1].slots[slot], r); /* still published */
    assert_false(roomfx_no_placements(&R));
    room_shard_flush(R.s[2]); /* 2's next turn end sends it */
    deliver_all();            /* 1 unpublishes it */
    assert_null(R.sh->tables[1].slots[slot]);
    assert_int_equal(R.sh->tables[1].n_free, free1 + 1);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* The same, and the relay stops before the DROP could go again: the room
 * is unpublished and freed with its last owner's shard, its DROP buffer
 * with it (ASan: no leak; roomfx checks buf_live). */
static void test_moved_drop_refused_shutdown(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_DROP;
    deliver_all();
    room_shard_flush(R.s[2]);
    assert_int_equal(R.fail_type, 0);
    /* Nothing is queued: the queues' old entries (the MOVE named the
     * room) must not keep it reachable for LeakSanitizer. */
    for (unsigned w = 0; w < NW; w++)
        assert_true(queue_empty(w));
    memset(R.q, 0, sizeof(R.q));
    roomfx_stop_discard(&R);
}

/* The moved room's refused DROP again, and worker 2 stays idle (no
 * message, no turn end): only its timer runs. It was armed when the DROP
 * was kept, a few ms ahead; refused again when it fires, it is armed
 * again later (backoff); when the DROP goes it is off. Without the fix no
 * timer was armed: the DROP waited for 2's next turn, which an idle worker
 * may not have for long (here: never). */
static void test_owed_timer_idle(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    uint32_t slot = roomfx_find(&R, 1, id)->slot;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    roomfx_del3(&a, &b, &d);
    struct timers *ts = timers_of(2);
    assert_int_equal(timers_next(ts), TIMER_NEVER);
    R.fail_type = ROOM_MSG_DROP;
    deliver_all();
    room_shard_flush(R.s[2]); /* it ends on 2; its DROP is refused */
    assert_int_equal(R.fail_type, 0);
    uint64_t now = worker_now(worker_pool_get(R.pool, 2));
    uint64_t t1 = timers_next(ts);
    assert_true(t1 != TIMER_NEVER); /* armed when the DROP was kept */
    assert_true(t1 > now && t1 - now <= 50 * 1000000ull);
    R.fail_type = ROOM_MSG_DROP; /* refused again when the timer fires */
    assert_int_equal(timers_run(ts, t1), 1);
    assert_int_equal(R.fail_type, 0);
    assert_true(queue_empty(1));
    uint64_t t2 = timers_next(ts);
    assert_true(t2 != TIMER_NEVER);
    assert_true(t2 - t1 > t1 - now); /* backs off */
    assert_int_equal(timers_run(ts, t2), 1);
    assert_int_equal(timers_next(ts), TIMER_NEVER); /* nothing owed: off */
    assert_false(queue_empty(1));                   /* the DROP */
    while (roomfx_step(&R, 1))
        ;
    assert_null(R.sh->tables[1].slots[slot]);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* A refused UNALIAS (pack, home 1: placed on 0, moved to 2, ended there)
 * on an idle worker 2: its timer sends it; 0 unpublishes the room. */
static void test_unalias_timer_idle(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    uint32_t slot = r->slot, free0 = R.sh->tables[0].n_free;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_UNALIAS;
    deliver_all();
    room_shard_flush(R.s[2]); /* it ends on 2; its UNALIAS is refused */
    assert_int_equal(R.fail_type, 0);
    assert_ptr_equal(R.sh->tables[0].slots[slot], r);
    struct timers *ts = timers_of(2);
    uint64_t t1 = timers_next(ts);
    assert_true(t1 != TIMER_NEVER);
    assert_int_equal(timers_run(ts, t1), 1);
    assert_int_equal(timers_next(ts), TIMER_NEVER);
    while (roomfx_step(&R, 0))
        ;
    assert_null(R.sh->tables[0].slots[slot]);
    assert_int_equal(R.sh->tables[0].n_free, free0 + 1);
    roomfx_stop(&R);
}

/* Pack, home 1: placed on 0 (in 0's table), moved to 2, ended there: it
 * owes its home a DROP (naming no room) and its table worker an UNALIAS
 * (which hands the room over: 0 frees it). The DROP is refused: the
 * UNALIAS waits behind it (the DROP is still read from the room), then
 * both go by 2's timer and 0 unpublishes the room. Without the fix the
 * DROP was lost (the home kept its placement) and the UNALIAS went. */
static void test_end_drop_then_unalias(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    uint32_t slot = r->slot;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_DROP;
    deliver_all();
    room_shard_flush(R.s[2]); /* it ends on 2; its DROP is refused */
    assert_int_equal(R.fail_type, 0);
    assert_true(queue_empty(0)); /* the UNALIAS waits behind the DROP */
    assert_true(queue_empty(1));
    assert_ptr_equal(R.sh->tables[0].slots[slot], r);
    struct timers *ts = timers_of(2);
    uint64_t t1 = timers_next(ts);
    assert_true(t1 != TIMER_NEVER);
    assert_int_equal(timers_run(ts, t1), 1);
    assert_int_equal(timers_next(ts), TIMER_NEVER);
    assert_false(queue_empty(1)); /* the DROP */
    assert_false(queue_empty(0)); /* then the UNALIAS */
    deliver_all();
    assert_null(R.sh->tables[0].slots[slot]);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* Pack, home 1, placed on 0: it ends there and its DROP is refused. A
 * JOIN of the id then reaches the home, which routes it to 0 (the
 * placement is still there); 0 has no such room and bounces it. The
 * bounce waits behind the DROP (the home counts it as one of those coming
 * back after the DROP); both go at 0's next turn end, in order, and the
 * JOIN is placed again. Without the fix the bounce reached the home first
 * (no DROP came: not draining) and was applied there. */
static void test_bounce_behind_drop(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d, c;
    roomfx_join3(&R, &a, &b, &d, id);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_DROP;
    deliver_all();
    room_shard_flush(R.s[0]); /* it ends on 0; its DROP is refused */
    assert_int_equal(R.fail_type, 0);
    assert_null(roomfx_find(&R, 0, id));
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    assert_true(roomfx_step(&R, 1)); /* the home routes it to 0 */
    assert_true(queue_empty(1));
    assert_true(roomfx_step(&R, 0)); /* no room: bounced */
    assert_true(queue_empty(1));     /* behind the DROP */
    roomfx_pump(&R);
    assert_int_equal(c.joined_cb, 1);
    assert_int_equal(c.last_code, 0);
    assert_non_null(roomfx_find(&R, 0, id));
    assert_null(roomfx_find(&R, 1, id));
    assert_int_equal(room_member_owner(c.m), 0);
    room_member_del(c.m);
    roomfx_pump(&R);
    assert_true(roomfx_no_placements(&R));
    assert_int_equal(room_shared_rooms(R.sh), 0);
    roomfx_stop(&R);
}

/* Pack with affinity, home 1: a movable joiner on 2 is placed on 0, which
 * makes no room (the joiner is asked to move there: ROOM_JOIN_MOVE) and
 * owes the home the PLACE's DROP; the runtime refuses it. Kept (the room
 * id and count: no room holds them), it goes by 0's timer and the home's
 * placement goes. Without the fix it was lost: the placement stayed. */
static void test_unused_place_drop_refused(void **state)
{
    (void)state;
    struct room_limits lim = {
        .placement = ROOM_PLACE_PACK, .pack_members = 100, .affinity_max_members = 5};
    roomfx_start_lim(&R, NW, &lim);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep c;
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    R.fail_type = ROOM_MSG_DROP;
    deliver_all(); /* home 1 places it on 0; 0 answers JOIN_MOVE; the DROP is refused */
    assert_int_equal(R.fail_type, 0);
    assert_int_equal(c.last_code, ROOM_JOIN_MOVE);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_false(roomfx_no_placements(&R));
    struct timers *ts = timers_of(0);
    uint64_t t1 = timers_next(ts);
    assert_true(t1 != TIMER_NEVER);
    assert_int_equal(timers_run(ts, t1), 1);
    deliver_all();
    assert_true(roomfx_no_placements(&R));
    room_member_del(c.m);
    roomfx_stop(&R);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drop_refused_retried),
        cmocka_unit_test(test_moved_drop_refused_freed),
        cmocka_unit_test(test_moved_drop_refused_shutdown),
        cmocka_unit_test(test_owed_timer_idle),
        cmocka_unit_test(test_unalias_timer_idle),
        cmocka_unit_test(test_end_drop_then_unalias),
        cmocka_unit_test(test_bounce_behind_drop),
        cmocka_unit_test(test_unused_place_drop_refused),
    };
    /* One test alone (a failed one leaves the fixture half-way). */
    const char *filter = getenv("CMOCKA_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
