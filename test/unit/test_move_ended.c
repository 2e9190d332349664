/* Moved and placed rooms at their end (lib/room/owner.c room_destroy, the
 * UNALIAS to the room's table worker; lib/room/place.c place_room_find),
 * driven by hand as test_room_move.c does: shards on a pool that is never
 * started, real members on them, and a router (the shards' send hook) with
 * one queue per destination worker, delivered through room_dispatch_one.
 *
 * - An UNALIAS the runtime refuses (ROOST_ENOMEM) must not free the room:
 *   it is still published in its table worker's table, where readers may
 *   hold it. It is sent again at the next turn's end, or freed at shutdown.
 * - A placed room that ended on another worker stays published in its
 *   table until its UNALIAS arrives; a room of the same id placed there
 *   again meanwhile must be the one a move asked of the home names, or the
 *   MOVE_REQ finds nothing and the home's placement stays paused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/worker.h"
#include "proto/media.h"
#include "room/room.h"
#include "room/room_int.h"
#include "room/snapshot.h"
#include "../common/roomfx.h"

#define NW 3

static struct roomfx R;

/* Delivers and flushes on workers 1 and 2 only (worker 0's queue waits). */
static void pump_not0(void)
{
    for (bool any = true; any;) {
        any = false;
        for (unsigned w = 1; w < NW; w++) {
            while (roomfx_step(&R, w))
                any = true;
            room_shard_flush(R.s[w]);
        }
    }
}

/* A placed room (pack: home 1, made on 0, in 0's table) moved to 2 ends
 * there; the runtime refuses its UNALIAS to 0. The room stays published in
 * 0's table and valid (without the fix the refused message's release freed
 * it there: ASan reports the read below as a use after free); it goes at
 * the next turn's end and 0 unpublishes it and gets its slot back. */
static void test_unalias_refused_kept(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    uint32_t slot = r->slot, gen = r->gen, free0 = R.sh->tables[0].n_free;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_UNALIAS;
    pump_not0();                      /* the LEAVEs reach the room: it ends on 2 */
    assert_int_equal(R.fail_type, 0); /* the UNALIAS was refused */
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R)); /* its DROP went */
    rcu_read_lock();
    struct room *pub = room_resolve(R.sh, 0, slot, gen); /* a reader of table 0 */
    assert_ptr_equal(pub, r);
    assert_int_equal(snapshot_count(rcu_dereference(pub->snap)), 0);
    rcu_read_unlock();
    roomfx_pump(&R); /* worker 2's next turn end sends it again; 0 unpublishes it */
    roomfx_pump(&R);
    assert_null(R.sh->tables[0].slots[slot]);
    assert_int_equal(R.sh->tables[0].n_free, free0 + 1);
    roomfx_stop(&R);
}

/* The same, and the relay stops before the UNALIAS could go again: the
 * room is unpublished and freed with its last owner's shard (ASan: no
 * leak, no double free). */
static void test_unalias_refused_shutdown(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    uint32_t slot = roomfx_find(&R, 0, id)->slot;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    roomfx_del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_UNALIAS;
    for (unsigned w = 1; w < NW; w++) /* the LEAVEs, no turn end after the room's */
        while (roomfx_step(&R, w))
            ;
    room_shard_flush(R.s[2]); /* it ends, its UNALIAS is refused */
    assert_int_equal(R.fail_type, 0);
    assert_non_null(R.sh->tables[0].slots[slot]);
    roomfx_stop_discard(&R);
}

/* Pack, home 1: a room placed on 0 (table 0, slot 0) moved to 2 ends
 * there; its UNALIAS to 0 is read late (another ring), so it is still
 * published in 0's table when the same id is placed on 0 again (slot 1).
 * A move asked of the home then must name the live room: the stale one is
 * owned by 2, not where the placement is (0). Without the fix the home
 * found the stale room first, its MOVE_REQ found nothing on 0, and the
 * placement stayed paused: a later JOIN was never answered. */
static void test_move_placed_again_stale(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d, c, e;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *old = roomfx_find(&R, 0, id);
    assert_int_equal(old->slot, 0);
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), old);
    roomfx_del3(&a, &b, &d);
    pump_not0(); /* it ends on 2; its DROP settles the home's placement */
    assert_true(roomfx_no_placements(&R));
    struct worker_msg unalias = roomfx_hold(&R, 0, ROOM_MSG_UNALIAS);
    assert_ptr_equal(R.sh->tables[0].slots[0], old); /* still published */
    /* The same id again: placed on 0 (pack), a new room in slot 1. */
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    assert_ptr_not_equal(r, old);
    assert_int_equal(r->slot, 1);
    assert_int_equal(room_member_owner(c.m), 0);
    /* The move names the live room; it arrives on 2. */
    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[1], (const uint8_t *)id, strlen(id), 2, &n), 0);
    roomfx_ep_new(&R, &e, 2);
    roomfx_ep_join(&e, id, "e"); /* waits while the move is asked, then goes on */
    roomfx_pump(&R);
    assert_int_equal(e.joined_cb, 1);
    assert_int_equal(e.last_code, 0);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    assert_null(roomfx_find(&R, 0, id));
    assert_int_equal(room_shard_room_at(R.s[1], (const uint8_t *)id, strlen(id)), 2);
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(room_member_owner(e.m), 2);
    assert_int_equal(n, 1); /* the live room's members */
    /* The stale room's UNALIAS arrives at last: its slot goes, not the
     * live room's. */
    assert_true(R.tail[0] - R.head[0] < ROOMFX_QMAX);
    R.q[0][R.tail[0]++ % ROOMFX_QMAX] = unalias;
    roomfx_pump(&R);
    assert_null(R.sh->tables[0].slots[0]);
    assert_ptr_equal(R.sh->tables[0].slots[1], r);
    room_member_del(c.m);
    room_member_del(e.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* Shutdown with placed rooms alive (pack: homes 1 and 2, made on 0) and
 * messages of every kind of theirs in the queues: media (FANOUT), a JOIN
 * routed by the home (FWD), a LEAVE, JOIN answers and presence (ACK,
 * EVENTS), a PLACE not yet applied, and a moved placed room's MOVE. The
 * discard and the shards' end release every buffer and room (r_stop_discard
 * checks buf_live; ASan: no leak). */
static void test_shutdown_placed_alive(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0), *id2 = roomfx_home_room(&R, 2, 1),
               *id3 = roomfx_home_room(&R, 1, 2);
    struct roomfx_ep a, b, d, e, f, g, h;
    roomfx_join3(&R, &a, &b, &d, id);
    assert_non_null(roomfx_find(&R, 0, id));
    roomfx_ep_new(&R, &g, 2);
    roomfx_ep_join(&g, id3, "g");
    roomfx_pump(&R);
    assert_non_null(roomfx_find(&R, 0, id3));
    uint8_t buf[64];
    struct media_hdr mh = {.stream_id = 1, .seq = 1};
    assert_int_equal(media_c2r_encode(&mh, buf, sizeof(buf)), MEDIA_C2R_HDR_LEN);
    memset(buf + MEDIA_C2R_HDR_LEN, 0xab, 8);
    assert_int_equal(room_publish(a.m, buf, MEDIA_C2R_HDR_LEN + 8), 0); /* FANOUTs to 1, 2 */
    roomfx_ep_new(&R, &e, 2);
    roomfx_ep_join(&e, id, "e");
    assert_true(roomfx_step(&R, 1)); /* routed: the FWD JOIN waits for 0 */
    roomfx_ep_new(&R, &f, 1);
    roomfx_ep_join(&f, id, "f");
    assert_true(roomfx_step(&R, 1));
    assert_true(roomfx_step(&R, 0)); /* e applied on 0 */
    assert_true(roomfx_step(&R, 0)); /* f applied */
    room_shard_flush(R.s[0]);        /* ACKs to 1, 2; EVENTS to 0, 1, 2 */
    room_member_del(d.m);            /* its LEAVE waits for the home */
    roomfx_ep_new(&R, &h, 1);
    roomfx_ep_join(&h, id2, "h"); /* a new room: its JOIN waits for its home (2) */
    assert_int_equal(roomfx_move(&R, 2, id2, 1), ROOST_ENOENT);
    assert_int_equal(roomfx_move(&R, 1, id3, 2), 0); /* a MOVE_REQ to 0 */
    assert_true(R.tail[0] != R.head[0]);
    while (roomfx_step(&R, 0))
        ; /* the MOVE_REQ: id3's MOVE waits for 2 */
    assert_null(roomfx_find(&R, 0, id3));
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(e.m);
    room_member_del(f.m);
    room_member_del(g.m);
    room_member_del(h.m);
    roomfx_stop_discard(&R);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unalias_refused_kept),
        cmocka_unit_test(test_unalias_refused_shutdown),
        cmocka_unit_test(test_move_placed_again_stale),
        cmocka_unit_test(test_shutdown_placed_alive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
