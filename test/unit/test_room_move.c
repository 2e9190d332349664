/* Live room migration (lib/room/move.c), driven by hand: two shards on a
 * pool that is never started, real members on them (fake endpoints), and a
 * router that delivers the control messages each shard sends (the shards'
 * send hook), one queue per destination worker, so the rings' order per
 * pair is kept, through the module's own dispatcher (room_dispatch_one).
 * Three workers: the room's home, where it moves, and a third.
 *
 * Each state transition of a move has a test that fails without it: the
 * room leaving its owner and arriving (MOVE), the members' workers learning
 * the new owner and the old owner's members being asked to move (REHOME),
 * the home routing later JOINs and LEAVEs to the new owner, an unflushed
 * batch travelling with the room, quality reports following it, the end of
 * a moved room (DROP carrying it back to its table), a moved member's quiet
 * re-bind (and its leave, vanish or replacement meanwhile), and a shutdown
 * with a MOVE or a moved room's DROP still in a ring. Session 7: a moved
 * room moves again and back home (MOVE_REQ, ARRIVED), one move at a time,
 * with JOINs and LEAVEs in the rings meanwhile; a publisher's keyframe
 * cache moves with its connection. Session 8: a room placed off its home
 * (placement = pack) moves when asked of its home, comes home and moves
 * on, and goes back to its table's worker at its end (UNALIAS), also with
 * the UNALIAS still in a ring at shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
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

static struct room_stats st(unsigned w)
{
    struct room_stats s;
    room_shard_stats(R.s[w], &s);
    return s;
}

/* A room moves from its home (0) to 1: its members stay joined, keep their
 * handle and hear of no presence change; they learn the new owner
 * (REHOME) and those on the old owner's worker are asked to move; later
 * joins and leaves go through the home to the new owner; the room's end
 * returns it to the home's table (DROP), after which the id starts afresh
 * on its home. */
static void test_move_basic(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c, d;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_new(&R, &d, 2);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_ep_join(&d, id, "d");
    roomfx_pump(&R);
    assert_int_equal(a.last_code, 0);
    assert_int_equal(b.last_code, 0);
    assert_int_equal(room_member_owner(a.m), 0);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    uint32_t slot = r->slot, gen = r->gen;
    unsigned ev_a = a.events, ev_b = b.events, ctl_a = a.controls;

    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    assert_int_equal(n, 3);
    assert_null(roomfx_find(&R, 0, id)); /* gone from the old owner at once */
    assert_int_equal(room_shared_rooms(R.sh), 1);
    assert_int_equal(st(0).rooms_moved_out, 1);
    /* A second move while it travels: refused. */
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), ROOST_EAGAIN);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 1, id), r); /* the same room object, same handle */
    assert_int_equal(r->tab, 0);
    assert_int_equal(r->slot, slot);
    assert_int_equal(r->gen, gen);
    assert_int_equal(st(1).rooms_moved_in, 1);
    assert_int_equal(atomic_load(&R.sh->owned[0]), 0);
    assert_int_equal(atomic_load(&R.sh->owned[1]), 3);
    /* REHOME: all know the new owner; a (on the old owner's worker) is
     * asked to move, b (on the new owner's) and d (elsewhere) are not. */
    assert_int_equal(room_member_owner(a.m), 1);
    assert_int_equal(room_member_owner(b.m), 1);
    assert_int_equal(room_member_owner(d.m), 1);
    assert_int_equal(a.moved_to, 1);
    assert_int_equal(b.moved_to, -1);
    assert_int_equal(d.moved_to, -1);
    assert_int_equal(a.events, ev_a);
    assert_int_equal(b.events, ev_b);
    assert_int_equal(a.controls, ctl_a);
    assert_true(room_member_joined(a.m) && room_member_joined(b.m));
    /* Asked of its home where it is already: nothing; asked of its owner
     * (not its home): refused; other refusals. */
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), ROOST_EEXIST);
    assert_int_equal(room_shard_move(R.s[1], (const uint8_t *)id, strlen(id), 0, &n), ROOST_EAGAIN);
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), NW, &n),
                     ROOST_EINVAL);
    assert_int_equal(room_shard_move(R.s[2], (const uint8_t *)id, strlen(id), 1, &n),
                     ROOST_ENOENT); /* not its owner */
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)"nope", 4, 1, &n), ROOST_ENOENT);

    /* A later joiner: through the home, answered by the new owner. */
    roomfx_ep_new(&R, &c, 0);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 1);
    assert_int_equal(st(0).routed, 1);
    assert_int_equal(a.events, ev_a + 1); /* c's JOIN, as always */
    assert_int_equal(room_shared_participants(R.sh), 4);

    /* Everyone leaves: the room ends on 1, its DROP takes it back to 0. */
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    room_member_del(d.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    assert_null(roomfx_find(&R, 1, id));
    /* The id starts afresh on its home. */
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    assert_int_equal(a.last_code, 0);
    assert_int_equal(room_member_owner(a.m), 0);
    assert_non_null(roomfx_find(&R, 0, id));
    room_member_del(a.m);
    roomfx_stop(&R);
}

/* Moving to the worker that owns it already does nothing. */
static void test_move_noop(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 0, &n), ROOST_EEXIST);
    assert_int_equal(n, 1);
    assert_non_null(roomfx_find(&R, 0, id));
    assert_int_equal(a.moved_to, -1);
    room_member_del(a.m);
    roomfx_stop(&R);
}

/* A join applied on the old owner but not yet flushed (no JOINED sent)
 * travels with the room: the new owner answers it. */
static void test_move_pending_batch(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&b, id, "b");
    assert_true(roomfx_step(&R, 0)); /* applied, not flushed */
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    assert_int_equal(n, 2);
    roomfx_pump(&R);
    assert_int_equal(b.joined_cb, 1);
    assert_int_equal(b.last_code, 0);
    assert_int_equal(b.joined_msgs, 1);
    assert_int_equal(room_member_owner(b.m), 1);
    assert_int_equal(a.events, 1); /* b's JOIN */
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_stop(&R);
}

/* Within affinity_max_members every worker's movable members follow;
 * without it only the old owner's worker's (test_move_basic). */
static void test_move_affinity_all(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 2);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, x, c;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 0);
    roomfx_ep_new(&R, &x, 0);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_ep_join(&x, id, "x");
    roomfx_pump(&R);
    /* Over the limit: a joiner on worker 2 stays there. */
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    room_member_del(b.m);
    room_member_del(x.m);
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    assert_int_equal(n, 2);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 1);
    assert_int_equal(c.moved_to, 1);
    assert_int_equal(st(2).member_moves, 1);
    room_member_del(a.m);
    room_member_del(c.m);
    roomfx_stop(&R);
}

/* A moved member's quiet re-bind: after its connection moved it is joined
 * at once with the same participant id; deliveries to it resume when the
 * owner has replaced its handle (one snapshot change), and nobody hears of
 * a LEAVE or JOIN; it gets no second JOINED. */
static void test_rebind_quiet(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 1);
    unsigned ev_a = a.events, ev_b = b.events, jm = a.joined_msgs, jc = a.joined_cb;
    roomfx_ep_hand_off(&R, &a, 1);
    roomfx_pump(&R);
    assert_int_equal(st(1).rebinds, 1);
    assert_false(a.m->rebinding);
    assert_int_equal(room_shared_participants(R.sh), 2);
    assert_int_equal(a.events, ev_a);
    assert_int_equal(b.events, ev_b);
    assert_int_equal(a.joined_msgs, jm);
    assert_int_equal(a.joined_cb, jc);
    /* Both on worker 1 now: local deliveries both ways. */
    roomfx_ep_send(&b);
    assert_int_equal(a.media, 1);
    roomfx_ep_send(&a);
    assert_int_equal(b.media, 1);
    assert_int_equal(room_member_owner(a.m), 1);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* A presence change while a member's connection is between workers: the
 * EVENTS went to its old worker (gone) and are skipped on the new one
 * until the re-bind; the re-bind's answer carries them from the moved
 * room's history: the member hears of it once, and of later ones as
 * always. */
static void test_rebind_events_in_transit(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c, d;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    unsigned ev_a = a.events, ev_b = b.events;
    struct room_keep keep;
    room_member_detach(a.m, &keep);
    a.m = NULL;
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(b.events, ev_b + 1);
    assert_int_equal(a.events, ev_a);
    assert_int_equal(room_member_rebind(R.s[1], &a, &keep, &a.m), 0);
    roomfx_pump(&R);
    assert_int_equal(a.events, ev_a + 1); /* c's JOIN, from the history */
    roomfx_ep_new(&R, &d, 1);
    roomfx_ep_join(&d, id, "d");
    roomfx_pump(&R);
    assert_int_equal(a.events, ev_a + 2);
    assert_int_equal(b.events, ev_b + 2);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    room_member_del(d.m);
    roomfx_stop(&R);
}

/* The member leaves (or its connection vanishes) right after it was
 * re-bound, before the re-bind reached the owner: the LEAVE follows the
 * re-bind JOIN on the same path, so it is applied after it: no ghost. */
static void run_rebind_then_gone(bool vanish)
{
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    unsigned ev_b = b.events;
    roomfx_ep_hand_off(&R, &a, 1);
    if (vanish) {
        room_member_del(a.m);
        a.m = NULL;
    } else {
        assert_int_equal(room_leave(a.m), 0);
    }
    roomfx_pump(&R);
    assert_int_equal(room_shared_participants(R.sh), 1);
    assert_int_equal(b.events, ev_b + 1); /* one LEAVE */
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* The re-bind cannot be sent (here: the ring refuses the re-bind JOIN;
 * also no member slot or no memory on the new worker): the connection is
 * closed there, and its entry leaves the room at once, with a LEAVE to
 * the others, as a vanished member's would. */
static void test_rebind_send_fails(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    unsigned ev_b = b.events;
    struct room_keep keep;
    room_member_detach(a.m, &keep);
    a.m = NULL;
    R.fail_type = ROOM_MSG_JOIN;
    assert_int_not_equal(room_member_rebind(R.s[1], &a, &keep, &a.m), 0);
    assert_int_equal(R.fail_type, 0);
    room_member_del(a.m); /* the session closes it */
    a.m = NULL;
    roomfx_pump(&R);
    assert_int_equal(st(1).rebinds_failed, 1);
    assert_int_equal(room_shared_participants(R.sh), 1);
    assert_int_equal(b.events, ev_b + 1); /* one LEAVE */
    assert_int_equal(roomfx_find(&R, 1, id)->n_infos, 1);
    room_member_del(b.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* A FANOUT of one frame from `from`, as its worker sends it when it read
 * the room's snapshot `version`, handled by worker w now (rings between
 * different pairs of workers keep no order between them). */
static struct room *find_any(const char *id)
{
    for (unsigned w = 0; w < NW; w++)
        if (roomfx_find(&R, w, id) != NULL)
            return roomfx_find(&R, w, id);
    return NULL;
}

static void fanout_at(unsigned w, const char *id, const struct roomfx_ep *from, uint64_t version)
{
    struct room *r = find_any(id);
    assert_non_null(r);
    struct buf *b = buf_new(64);
    assert_non_null(b);
    memset(b->data, 0, 64);
    b->len = 64;
    struct fanout_msg fm = {.owner = r->tab,
                            .room_slot = r->slot,
                            .room_gen = r->gen,
                            .sender = from->pid,
                            .version = version,
                            .b = b};
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_FANOUT, &fm, sizeof(fm));
    rcu_quiescent_state();
    room_dispatch_one(R.s[w], &wm);
}

static uint64_t version_of(const char *id)
{
    return snapshot_version(find_any(id)->snap);
}

/* Three members on three workers; the room moved from 0 to 1, and a (on
 * 0) asked to move to 1. */
static const char *three_moved(struct roomfx_ep *a, struct roomfx_ep *b, struct roomfx_ep *c)
{
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    roomfx_ep_new(&R, a, 0);
    roomfx_ep_new(&R, b, 1);
    roomfx_ep_new(&R, c, 2);
    roomfx_ep_join(a, id, "a");
    roomfx_ep_join(b, id, "b");
    roomfx_ep_join(c, id, "c");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    assert_int_equal(a->moved_to, 1);
    return id;
}

/* A FANOUT sent by a snapshot that still had a moved member on its old
 * worker, handled there once the re-bind's snapshot is out (the member's
 * entry is on its new worker now): that copy is lost, and counted
 * (media_lost_moved, roost_datagrams_dropped_total{reason="moved"}); the
 * new worker skips the member in that FANOUT (never twice). Handled
 * there before the re-bind's snapshot, the stale entry is counted as
 * such (stale_handles). */
static void test_fanout_lost_counted(void **state)
{
    (void)state;
    struct roomfx_ep a, b, c;
    const char *id = three_moved(&a, &b, &c);
    uint64_t v_old = version_of(id);
    struct room_keep keep;
    room_member_detach(a.m, &keep);
    a.m = NULL;
    struct room_stats s0 = st(0);
    fanout_at(0, id, &c, v_old); /* before the re-bind */
    assert_int_equal(st(0).stale_handles, s0.stale_handles + 1);
    assert_int_equal(room_member_rebind(R.s[1], &a, &keep, &a.m), 0);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    assert_true(version_of(id) > v_old);
    fanout_at(0, id, &c, v_old); /* after it */
    assert_int_equal(st(0).media_lost_moved, s0.media_lost_moved + 1);
    assert_int_equal(st(0).stale_handles, s0.stale_handles + 1);
    struct room_stats s1 = st(1);
    fanout_at(1, id, &c, v_old);
    assert_int_equal(b.media, 1);
    assert_int_equal(a.media, 0);
    assert_int_equal(st(1).media_skipped_moving, s1.media_skipped_moving + 1);
    fanout_at(1, id, &c, version_of(id));
    assert_int_equal(a.media, 1);
    assert_int_equal(b.media, 2);
    assert_int_equal(st(0).media_lost_moved + st(1).media_lost_moved, 1);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    roomfx_stop(&R);
}

/* A FANOUT sent by the re-bind's snapshot (the member on its new worker)
 * that arrives there before the re-bind's answer: delivered (the room's
 * log of re-binds says the sender's snapshot had it there), once; one sent
 * by an older snapshot is still skipped there (its old worker had it). */
static void test_fanout_before_rebind_ack(void **state)
{
    (void)state;
    struct roomfx_ep a, b, c;
    const char *id = three_moved(&a, &b, &c);
    uint64_t v_old = version_of(id);
    roomfx_ep_hand_off(&R, &a, 1);
    /* The re-bind JOIN through the home (0) to the owner (1), flushed;
     * its answer to 1 is held back. */
    while (roomfx_step(&R, 0))
        ;
    while (roomfx_step(&R, 1))
        ;
    room_shard_flush(R.s[1]);
    assert_int_equal(R.tail[1] - R.head[1], 1);
    struct worker_msg ack = R.q[1][R.head[1]++ % ROOMFX_QMAX];
    assert_int_equal((int)ack.type, ROOM_MSG_ACK);
    assert_true(a.m->rebinding);
    uint64_t v_new = version_of(id);
    assert_true(v_new > v_old);
    fanout_at(1, id, &c, v_new);
    assert_int_equal(a.media, 1);
    assert_int_equal(b.media, 1);
    fanout_at(1, id, &c, v_old); /* a's copy went to 0 */
    assert_int_equal(a.media, 1);
    assert_int_equal(b.media, 2);
    rcu_quiescent_state();
    room_dispatch_one(R.s[1], &ack);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    fanout_at(1, id, &c, v_new);
    fanout_at(1, id, &c, v_old);
    assert_int_equal(a.media, 2);
    assert_int_equal(b.media, 4);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    roomfx_stop(&R);
}

static void test_rebind_then_leave(void **state)
{
    (void)state;
    run_rebind_then_gone(false);
}

static void test_rebind_then_vanish(void **state)
{
    (void)state;
    run_rebind_then_gone(true);
}

/* The member left its room while its connection was moving (detached
 * while not joined): nothing to re-bind. */
static void test_detach_not_joined(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    assert_int_equal(room_leave(a.m), 0);
    struct room_keep keep;
    room_member_detach(a.m, &keep);
    assert_false(keep.valid);
    assert_int_equal(keep.pid, a.pid);
    struct room_member *m = NULL;
    assert_int_equal(room_member_rebind(R.s[1], &a, &keep, &m), ROOST_EINVAL);
    assert_null(m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    roomfx_stop(&R);
}

/* The same identity joined again while the member's connection moved: the
 * REPLACED went to its old handle (gone); the re-bind finds it replaced
 * and the endpoint is told now. */
static void test_rebind_replaced_meanwhile(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, a2;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    struct room_keep keep;
    room_member_detach(a.m, &keep);
    a.m = NULL;
    roomfx_ep_new(&R, &a2, 1);
    roomfx_ep_join(&a2, id, "a"); /* same identity */
    roomfx_pump(&R);
    assert_int_equal(a2.last_code, 0);
    assert_int_equal(room_member_rebind(R.s[1], &a, &keep, &a.m), 0);
    roomfx_pump(&R);
    assert_int_equal(st(1).rebinds_gone, 1);
    assert_int_equal(a.replaced, 1);
    assert_false(room_member_joined(a.m));
    assert_int_equal(room_shared_participants(R.sh), 2);
    room_member_del(a.m);
    room_member_del(a2.m);
    room_member_del(b.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* A quality report sent to the room's table worker (its handle) after the
 * room moved is forwarded to the new owner, which keeps it. */
static void test_move_quality_follows(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    struct room *r = roomfx_find(&R, 1, id);
    assert_non_null(r);
    struct buf *b = buf_new(sizeof(struct qreport_hdr));
    assert_non_null(b);
    struct qreport_hdr *h = (struct qreport_hdr *)b->data;
    memset(h, 0, sizeof(*h));
    h->room_slot = r->slot;
    h->room_gen = r->gen;
    h->tab = 0;
    h->worker = 1;
    b->len = sizeof(*h);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_QREPORT, &b, sizeof(b));
    roomfx_send(&R, 0, &wm);
    roomfx_pump(&R);
    assert_non_null(r->qrep[1]);
    room_member_del(a.m);
    roomfx_stop(&R);
}

/* Shutdown with the MOVE still in a ring: the discard frees the room. */
static void test_shutdown_move_in_ring(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    room_member_del(a.m); /* its LEAVE queued too */
    roomfx_stop_discard(&R);
}

/* Shutdown with a moved room's DROP in a ring: the discard frees it. */
static void test_shutdown_drop_in_ring(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    room_member_del(a.m);
    while (roomfx_step(&R, 0)) /* the LEAVE, routed on */
        ;
    assert_true(roomfx_step(&R, 1));
    room_shard_flush(R.s[1]); /* the room ends: DROP queued to 0 */
    assert_null(roomfx_find(&R, 1, id));
    assert_true(R.head[0] != R.tail[0]);
    roomfx_stop_discard(&R);
}

/* Shutdown with the moved room live on its new owner (the home still
 * holds its placement and table slot). */
static void test_shutdown_moved_room_live(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    uint32_t n;
    assert_int_equal(room_shard_move(R.s[0], (const uint8_t *)id, strlen(id), 1, &n), 0);
    roomfx_pump(&R);
    struct room_keep keep;
    room_member_detach(a.m, &keep); /* a connection that ends in a ring */
    roomfx_stop(&R);
}

/* ------------------------------------------- moving again (session 7) */

/* Whether anything is queued to worker w. */
static bool parked_anything(unsigned w)
{
    return R.head[w] != R.tail[w];
}

/* A moved room moves again (1 -> 2), asked of its home (0): the home asks
 * the owner (MOVE_REQ), which hands the room on; the new owner tells the
 * home (ARRIVED), and from then on the home routes there. One move at a
 * time: asked again while it is in flight, the answer is EAGAIN; asked to
 * where it is, EEXIST. The members of the worker it left follow. */
static void test_move_second(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, d, c;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 0, id);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    assert_int_equal(roomfx_move(&R, 0, id, 2), ROOST_EAGAIN); /* the first is in flight */
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 1, id), r);
    assert_int_equal(roomfx_move(&R, 0, id, 1), ROOST_EEXIST);
    assert_int_equal(roomfx_move(&R, 1, id, 2), ROOST_EAGAIN); /* only its home moves it */
    unsigned ev[3] = {a.events, b.events, d.events};
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    assert_int_equal(roomfx_move(&R, 0, id, 0), ROOST_EAGAIN); /* in flight */
    assert_int_equal(roomfx_move(&R, 0, id, 1), ROOST_EAGAIN);
    roomfx_pump(&R);
    assert_null(roomfx_find(&R, 1, id));
    assert_ptr_equal(roomfx_find(&R, 2, id), r); /* the same room, the same handle */
    assert_int_equal(r->tab, 0);
    assert_int_equal(r->moves, 2);
    assert_int_equal(st(0).move_requests, 1);
    assert_int_equal(st(1).rooms_moved_out, 1);
    assert_int_equal(st(2).rooms_moved_in, 1);
    assert_int_equal(atomic_load(&R.sh->owned[1]), 0);
    assert_int_equal(atomic_load(&R.sh->owned[2]), 3);
    assert_int_equal(room_member_owner(a.m), 2);
    assert_int_equal(room_member_owner(b.m), 2);
    assert_int_equal(room_member_owner(d.m), 2);
    assert_int_equal(b.moved_to, 2); /* on the worker it left */
    assert_int_equal(d.moved_to, -1);
    assert_int_equal(a.events, ev[0]);
    assert_int_equal(b.events, ev[1]);
    assert_int_equal(d.events, ev[2]);
    assert_int_equal(roomfx_move(&R, 0, id, 2), ROOST_EEXIST);
    /* A later joiner: through the home, answered by the new owner. */
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(a.events, ev[0] + 1);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    room_member_del(d.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* Back home (1 -> 0): the placement goes, the room is linked on its home
 * again, later JOINs and LEAVEs are applied there without routing; it can
 * move away again after that, and ends on its home normally. */
static void test_move_back_home(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    struct room *r = roomfx_find(&R, 0, id);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    unsigned ev_a = a.events, ev_b = b.events;
    assert_int_equal(roomfx_move(&R, 0, id, 0), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 0, id), r);
    assert_null(roomfx_find(&R, 1, id));
    assert_true(roomfx_no_placements(&R));
    assert_int_equal(st(0).rooms_home, 1);
    assert_int_equal(atomic_load(&R.sh->owned[0]), 2);
    assert_int_equal(atomic_load(&R.sh->owned[1]), 0);
    assert_int_equal(room_member_owner(a.m), 0);
    assert_int_equal(room_member_owner(b.m), 0);
    assert_int_equal(b.moved_to, 0); /* on the worker it left */
    assert_int_equal(a.events, ev_a);
    assert_int_equal(b.events, ev_b);
    uint64_t routed = st(0).routed;
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 0);
    assert_int_equal(st(0).routed, routed); /* applied at home */
    assert_int_equal(a.events, ev_a + 1);
    /* And away again, from home: a third move. */
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    assert_int_equal(r->moves, 3);
    room_member_del(c.m);
    roomfx_pump(&R);
    assert_int_equal(a.events, ev_a + 2); /* c's LEAVE, routed to 2 */
    assert_int_equal(roomfx_move(&R, 0, id, 0), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 0, id), r);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    assert_null(roomfx_find(&R, 0, id));
    roomfx_stop(&R);
}

/* JOINs and LEAVEs in the rings while the room moves on: those the home
 * routed before it asked for the move reach the old owner first (same
 * ring) and travel with the room's batch; those arriving at the home
 * meanwhile wait there (nothing routed) and follow the room to its new
 * owner once it ARRIVED, in order: a member that joins and leaves across
 * the move leaves no ghost, nobody is lost. */
static void test_move_routed_in_ring(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c, d;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    uint64_t routed = st(0).routed;
    unsigned ev_a = a.events;
    /* c's JOIN and b's LEAVE: routed to 1 before the move is asked. */
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    assert_int_equal(room_leave(b.m), 0);
    while (roomfx_step(&R, 0))
        ;
    assert_int_equal(st(0).routed, routed + 2);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* MOVE_REQ behind them */
    /* d's JOIN and c's LEAVE reach the home while the move is asked: they
     * wait there. */
    roomfx_ep_new(&R, &d, 1);
    roomfx_ep_join(&d, id, "d");
    assert_int_equal(room_leave(c.m), 0);
    while (roomfx_step(&R, 0))
        ;
    assert_int_equal(st(0).routed, routed + 2);
    assert_false(parked_anything(2));
    roomfx_pump(&R);
    assert_non_null(roomfx_find(&R, 2, id));
    assert_int_equal(st(0).routed, routed + 4); /* sent on to 2 */
    assert_int_equal(c.joined_cb, 0);           /* it left before its answer came */
    assert_int_equal(d.joined_cb, 1);
    assert_int_equal(d.last_code, 0);
    assert_int_equal(a.events, ev_a + 4); /* c and d in, b and c out */
    assert_int_equal(room_member_owner(d.m), 2);
    assert_int_equal(roomfx_find(&R, 2, id)->n_infos, 2); /* a and d: no ghost of b or c */
    assert_int_equal(room_shared_participants(R.sh), 2);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    room_member_del(d.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* The room ends on its owner before the home's MOVE_REQ gets there: the
 * owner finds nothing (and ignores it), the DROP unpauses the home's
 * placement, which drains; a JOIN that waited for the move makes the room
 * afresh on its home. */
static void test_move_req_after_end(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, e;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    struct room *r = roomfx_find(&R, 0, id);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 1, id), r);
    room_member_del(a.m);
    while (roomfx_step(&R, 0)) /* the LEAVE, routed on */
        ;
    while (roomfx_step(&R, 1))
        ;
    room_shard_flush(R.s[1]); /* the room ends: DROP queued to 0 */
    assert_null(roomfx_find(&R, 1, id));
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* the home does not know yet */
    roomfx_ep_new(&R, &e, 2);
    roomfx_ep_join(&e, id, "e");
    roomfx_pump(&R);
    assert_int_equal(e.last_code, 0);
    assert_int_equal(room_member_owner(e.m), 0);
    assert_non_null(roomfx_find(&R, 0, id));
    assert_null(roomfx_find(&R, 2, id));
    assert_int_equal(room_shared_rooms(R.sh), 1);
    assert_true(roomfx_no_placements(&R));
    room_member_del(e.m);
    roomfx_stop(&R);
}

/* Shutdown while the home waits for a move it asked for: the MOVE_REQ in
 * a ring, a JOIN and a LEAVE held at the home (the placement's `later`):
 * the discard and place_free free them all (ASan: no leak). */
static void test_shutdown_move_req_held(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_new(&R, &b, 2);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* MOVE_REQ queued to 1 */
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c");
    assert_int_equal(room_leave(b.m), 0);
    while (roomfx_step(&R, 0)) /* both held at the home */
        ;
    assert_int_equal(roomfx_move(&R, 0, id, 0), ROOST_EAGAIN);
    assert_true(parked_anything(1));
    room_member_del(a.m); /* the members' LEAVEs: queued, discarded */
    room_member_del(b.m);
    room_member_del(c.m);
    roomfx_stop_discard(&R);
}

/* Shutdown with a moved room's MOVE (1 -> 2, asked by the home) and then
 * its ARRIVED in the rings: the discard frees the room once. */
static void test_shutdown_arrived_in_ring(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, c;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_ep_new(&R, &c, 0);
    roomfx_ep_join(&c, id, "c");
    while (roomfx_step(&R, 0)) /* held */
        ;
    while (roomfx_step(&R, 1)) /* MOVE_REQ: the MOVE to 2 */
        ;
    while (roomfx_step(&R, 2)) /* arrived: ARRIVED queued to 0 */
        ;
    assert_non_null(roomfx_find(&R, 2, id));
    assert_true(parked_anything(0));
    room_member_del(a.m);
    room_member_del(c.m);
    roomfx_stop_discard(&R);
}

/* The last member's LEAVE and then a JOIN wait at the home while the room
 * moves on (1 -> 2): the ARRIVED releases both to the new owner in order,
 * where the room empties and ends (its DROP follows the ARRIVED) and the
 * JOIN either finds it or bounces and makes it afresh on its home: the
 * joiner is answered once, one room and one participant, and nothing is
 * left once it leaves. */
static void test_move_ends_on_arrival(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, e;
    roomfx_ep_new(&R, &a, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* MOVE_REQ queued to 1 */
    room_member_del(a.m);                           /* its LEAVE: to the home */
    a.m = NULL;
    roomfx_ep_new(&R, &e, 0);
    roomfx_ep_join(&e, id, "e");
    while (roomfx_step(&R, 0)) /* both held */
        ;
    roomfx_pump(&R);
    assert_int_equal(e.joined_cb, 1);
    assert_int_equal(e.last_code, 0);
    unsigned at = room_member_owner(e.m);
    assert_non_null(roomfx_find(&R, at, id));
    assert_int_equal(room_shared_rooms(R.sh), 1);
    assert_int_equal(room_shared_participants(R.sh), 1);
    assert_int_equal(roomfx_find(&R, at, id)->n_infos, 1);
    room_member_del(e.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* Members move with their room twice and back home: each time quietly
 * re-bound (same id, no JOINED, no presence), a re-bind still in a ring
 * when the next move starts waits at the home and follows the room; media
 * is delivered once after each move. */
static void test_move_twice_members_follow(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    unsigned ev_a = a.events, ev_b = b.events, jm = a.joined_msgs + b.joined_msgs;
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 1);
    roomfx_ep_hand_off(&R, &a, 1); /* its re-bind JOIN is queued to the home */
    a.moved_to = -1;
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R);
    assert_non_null(roomfx_find(&R, 2, id));
    assert_false(a.m->rebinding); /* re-bound on 2, where the room went */
    assert_int_equal(st(2).rebinds, 1);
    assert_int_equal(b.moved_to, 2);
    /* a re-bound on 1, the worker the room left meanwhile: its answer
     * (ROOM_REBIND_FOLLOW) sends it on after the room. */
    assert_int_equal(a.moved_to, 2);
    assert_int_equal(room_member_owner(a.m), 2);
    roomfx_ep_hand_off(&R, &b, 2);
    roomfx_ep_hand_off(&R, &a, 2);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    assert_false(b.m->rebinding);
    assert_int_equal(st(2).rebinds, 3);
    roomfx_ep_send(&a); /* both on 2: delivered there, once */
    roomfx_ep_send(&b);
    assert_int_equal(a.media, 1);
    assert_int_equal(b.media, 1);
    /* Back home: members on 2 (the worker it left) follow. */
    a.moved_to = b.moved_to = -1;
    assert_int_equal(roomfx_move(&R, 0, id, 0), 0);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 0);
    assert_int_equal(b.moved_to, 0);
    roomfx_ep_hand_off(&R, &a, 0);
    roomfx_ep_hand_off(&R, &b, 0);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    assert_false(b.m->rebinding);
    assert_int_equal(st(0).rebinds, 2);
    roomfx_ep_send(&a);
    roomfx_ep_send(&b);
    assert_int_equal(a.media, 2);
    assert_int_equal(b.media, 2);
    assert_int_equal(a.events, ev_a);
    assert_int_equal(b.events, ev_b);
    assert_int_equal(a.joined_msgs + b.joined_msgs, jm);
    assert_int_equal(room_shared_participants(R.sh), 2);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* One keyframe packet (start and end) on stream 2. */
static void ep_send_kf(struct roomfx_ep *e)
{
    uint8_t d[64];
    struct media_hdr h = {.stream_id = 2,
                          .seq = 7,
                          .flags = MEDIA_F_KEYFRAME | MEDIA_F_VIDEO | MEDIA_F_START | MEDIA_F_END};
    assert_int_equal(media_c2r_encode(&h, d, sizeof(d)), MEDIA_C2R_HDR_LEN);
    memset(d + MEDIA_C2R_HDR_LEN, 0xcd, 8);
    assert_int_equal(room_publish(e->m, d, MEDIA_C2R_HDR_LEN + 8), 0);
}

/* A publisher's keyframe cache moves with its connection: a member that
 * joins after the move gets the cached keyframe at once, from the cache
 * published on the publisher's new worker. */
static void test_move_kfcache_follows(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 0);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    ep_send_kf(&a); /* (media here stays on one worker: this harness
                     * drives only the control messages) */
    assert_int_equal(b.media, 1);
    assert_int_equal(st(0).kf_cached, 1);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    roomfx_ep_hand_off(&R, &a, 1);
    roomfx_ep_hand_off(&R, &b, 1);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    assert_int_equal(st(0).kf_caches, 0); /* it left worker 0 ... */
    assert_int_equal(st(1).kf_caches, 1); /* ... for worker 1 */
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(st(1).kf_replayed, 1);
    assert_int_equal(c.media, 1);
    /* It goes on caching there: a newer keyframe replaces it. */
    ep_send_kf(&a);
    assert_int_equal(c.media, 2);
    assert_int_equal(st(1).kf_cached, 1);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    roomfx_stop(&R);
}

/* A moving publisher whose connection ends between workers: its keyframe
 * cache goes with the keep (room_keep_leave), its entry leaves the room
 * with a LEAVE to the others, and nothing leaks (r_stop counts buffers). */
static void test_move_kfcache_transit_closed(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 0);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    ep_send_kf(&a);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    unsigned ev_b = b.events;
    struct room_keep keep;
    room_member_detach(a.m, &keep);
    a.m = NULL;
    assert_non_null(keep.kc);
    room_keep_leave(R.s[1], &keep); /* as session_transit_closed does */
    assert_null(keep.kc);
    roomfx_pump(&R);
    assert_int_equal(b.events, ev_b + 1);
    assert_int_equal(roomfx_find(&R, 1, id)->n_infos, 1);
    room_keep_release(&keep); /* then session_closed: nothing left */
    room_member_del(b.m);
    roomfx_stop(&R);
}

/* A moved member is told only the presence changes it has not seen: one
 * it got on its old worker before its connection moved is not repeated by
 * the re-bind's answer (the history after the version it had seen). */
static void test_rebind_seen_no_repeat(void **state)
{
    (void)state;
    roomfx_start(&R, NW, 0);
    const char *id = roomfx_home_room(&R, 0, 0);
    struct roomfx_ep a, b, c;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_join(&a, id, "a");
    roomfx_ep_join(&b, id, "b");
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 1);
    unsigned ev_a = a.events;
    roomfx_ep_new(&R, &c, 2);
    roomfx_ep_join(&c, id, "c"); /* kept in the moved room's history */
    roomfx_pump(&R);
    assert_int_equal(a.events, ev_a + 1); /* on its old worker still */
    roomfx_ep_hand_off(&R, &a, 1);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    assert_int_equal(a.events, ev_a + 1); /* not again */
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    roomfx_stop(&R);
}

/* The room moves on while a moved member's re-bind answer is on its way
 * (the re-bind was applied on the old owner): the REHOME finds the member
 * re-binding and it follows once the answer is in. */
static void test_rebind_follow_after_answer(void **state)
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
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    roomfx_ep_hand_off(&R, &a, 1);
    while (roomfx_step(&R, 0)) /* the re-bind, routed on */
        ;
    while (roomfx_step(&R, 1))
        ;
    room_shard_flush(R.s[1]); /* applied on 1: its answer is queued to 1 */
    assert_int_equal(R.tail[1] - R.head[1], 1);
    struct worker_msg ack = R.q[1][R.head[1]++ % ROOMFX_QMAX];
    assert_int_equal((int)ack.type, ROOM_MSG_ACK);
    a.moved_to = -1;
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R);
    assert_non_null(roomfx_find(&R, 2, id));
    assert_true(a.m->rebinding);
    assert_int_equal(a.moved_to, -1); /* not while re-binding */
    rcu_quiescent_state();
    room_dispatch_one(R.s[1], &ack);
    assert_false(a.m->rebinding);
    assert_int_equal(a.moved_to, 2);
    assert_int_equal(room_member_owner(a.m), 2);
    roomfx_ep_hand_off(&R, &a, 2);
    roomfx_pump(&R);
    assert_false(a.m->rebinding);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_stop(&R);
}

/* A member that moved twice has two entries in the room's re-bind log: a
 * FANOUT of a snapshot between them (the member on its previous worker,
 * which had that copy) is skipped on its newest worker while its second
 * re-bind's answer is on the way: the latest entry counts, not the
 * first. */
static void test_rebound_twice_latest(void **state)
{
    (void)state;
    struct roomfx_ep a, b, c;
    const char *id = three_moved(&a, &b, &c);
    roomfx_ep_hand_off(&R, &a, 1);
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0);
    roomfx_pump(&R);
    assert_int_equal(a.moved_to, 2);
    roomfx_ep_hand_off(&R, &a, 2);
    while (roomfx_step(&R, 0)) /* the re-bind, routed to 2 */
        ;
    while (roomfx_step(&R, 2))
        ;
    room_shard_flush(R.s[2]); /* applied, published; its answer held */
    assert_int_equal(R.tail[2] - R.head[2], 1);
    struct worker_msg ack = R.q[2][R.head[2]++ % ROOMFX_QMAX];
    assert_int_equal((int)ack.type, ROOM_MSG_ACK);
    assert_true(a.m->rebinding);
    uint64_t v2 = version_of(id);
    struct room_stats s2 = st(2);
    fanout_at(2, id, &c, v2 - 1); /* a was on 1 in that one */
    assert_int_equal(a.media, 0);
    assert_int_equal(st(2).media_skipped_moving, s2.media_skipped_moving + 1);
    fanout_at(2, id, &c, v2);
    assert_int_equal(a.media, 1);
    rcu_quiescent_state();
    room_dispatch_one(R.s[2], &ack);
    roomfx_pump(&R);
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(c.m);
    roomfx_stop(&R);
}

/* Two more moves while a moved member's re-bind answer is on its way: the
 * first REHOME asks it to follow (it was on the worker the room left),
 * the second, newer one does not (the room left another worker, and the
 * member's room is large): the newest decides, and the member learns the
 * room's newest owner, not the answer's. */
static void test_rebind_rehomed_twice(void **state)
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
    assert_int_equal(roomfx_move(&R, 0, id, 1), 0);
    roomfx_pump(&R);
    roomfx_ep_hand_off(&R, &a, 1);
    while (roomfx_step(&R, 0))
        ;
    while (roomfx_step(&R, 1))
        ;
    room_shard_flush(R.s[1]);
    assert_int_equal(R.tail[1] - R.head[1], 1);
    struct worker_msg ack = R.q[1][R.head[1]++ % ROOMFX_QMAX];
    a.moved_to = -1;
    assert_int_equal(roomfx_move(&R, 0, id, 2), 0); /* REHOME to 1: follow */
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 0, id, 0), 0); /* REHOME to 1: stay (it left 2) */
    roomfx_pump(&R);
    assert_non_null(roomfx_find(&R, 0, id));
    assert_true(a.m->rebinding);
    rcu_quiescent_state();
    room_dispatch_one(R.s[1], &ack);
    assert_false(a.m->rebinding);
    assert_int_equal(a.moved_to, -1);
    assert_int_equal(room_member_owner(a.m), 0);
    room_member_del(a.m);
    room_member_del(b.m);
    roomfx_stop(&R);
}

/* ------------------------------------------- placed rooms (session 8) */

static unsigned room_at(unsigned home, const char *id)
{
    return room_shard_room_at(R.s[home], (const uint8_t *)id, strlen(id));
}

/* A room placed off its home (pack: home 1, made on 0, published in 0's
 * table) moves when asked of its home, as a moved room does: the home
 * asks its owner (MOVE_REQ), the room arrives on 2 (ARRIVED names it by
 * its handle in 0's table) and the home routes there from then on. The
 * owner the admin answer names ("from") is the room's owner, not its home.
 * It ends on 2: its slot goes back to table 0 (UNALIAS), its DROP drains
 * the home's placement. */
static void test_move_placed(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d, c;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    assert_int_equal(r->home, 1);
    assert_int_equal(r->tab, 0);
    uint32_t slot = r->slot, free0 = R.sh->tables[0].n_free, free1 = R.sh->tables[1].n_free;
    assert_int_equal(room_at(1, id), 0);
    assert_int_equal(roomfx_move(&R, 0, id, 2), ROOST_EAGAIN); /* only its home moves it */
    assert_int_equal(roomfx_move(&R, 1, id, 0), ROOST_EEXIST);
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    assert_int_equal(roomfx_move(&R, 1, id, 1), ROOST_EAGAIN); /* in flight */
    assert_int_equal(st(1).move_requests, 1);
    roomfx_pump(&R);
    assert_null(roomfx_find(&R, 0, id));
    assert_ptr_equal(roomfx_find(&R, 2, id), r); /* the same room, the same handle */
    assert_int_equal(r->tab, 0);
    assert_int_equal(room_at(1, id), 2);
    assert_int_equal(st(0).rooms_moved_out, 1);
    assert_int_equal(st(2).rooms_moved_in, 1);
    assert_int_equal(atomic_load(&R.sh->owned[0]), 0);
    assert_int_equal(atomic_load(&R.sh->owned[2]), 3);
    assert_int_equal(room_member_owner(a.m), 2);
    assert_int_equal(room_member_owner(b.m), 2);
    assert_int_equal(a.moved_to, 2); /* on the worker it left */
    assert_int_equal(roomfx_move(&R, 1, id, 2), ROOST_EEXIST);
    /* A later joiner: through the home, answered by the new owner. */
    roomfx_ep_new(&R, &c, 1);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 2);
    roomfx_del3(&a, &b, &d);
    room_member_del(c.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    assert_null(R.sh->tables[0].slots[slot]);
    assert_int_equal(R.sh->tables[0].n_free, free0 + 1);
    assert_int_equal(R.sh->tables[1].n_free, free1);
    roomfx_stop(&R);
}

/* A placed room moved to its home: the placement goes and later JOINs are
 * applied there; moved on from its home (1 -> 2), back to its table's
 * worker (2 -> 0, asked of the home) and on again (0 -> 2); it ends on 2
 * and its slot goes back to table 0, not to the home's. */
static void test_move_placed_home_and_on(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d, c;
    roomfx_join3(&R, &a, &b, &d, id);
    struct room *r = roomfx_find(&R, 0, id);
    uint32_t slot = r->slot, free0 = R.sh->tables[0].n_free, free1 = R.sh->tables[1].n_free;
    assert_int_equal(roomfx_move(&R, 1, id, 1), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 1, id), r);
    assert_true(roomfx_no_placements(&R));
    assert_int_equal(st(1).rooms_home, 1);
    assert_int_equal(room_at(1, id), 1);
    uint64_t routed = st(1).routed;
    roomfx_ep_new(&R, &c, 0);
    roomfx_ep_join(&c, id, "c");
    roomfx_pump(&R);
    assert_int_equal(c.last_code, 0);
    assert_int_equal(room_member_owner(c.m), 1);
    assert_int_equal(st(1).routed, routed); /* applied on the home */
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    assert_int_equal(room_at(1, id), 2);
    assert_int_equal(roomfx_move(&R, 1, id, 0), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 0, id), r);
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 2, id), r);
    assert_int_equal(r->moves, 4);
    assert_int_equal(r->tab, 0);
    roomfx_del3(&a, &b, &d);
    room_member_del(c.m);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_int_equal(room_shared_participants(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    assert_null(R.sh->tables[0].slots[slot]);
    assert_int_equal(R.sh->tables[0].n_free, free0 + 1);
    assert_int_equal(R.sh->tables[1].n_free, free1);
    roomfx_stop(&R);
}

/* A placed room that ends back on its table's worker frees its slot
 * there; one asked to move before its PLACE made it is refused (EAGAIN). */
static void test_move_placed_ends_on_table(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_ep_new(&R, &a, 0);
    roomfx_ep_join(&a, id, "a");
    assert_true(roomfx_step(&R, 1)); /* the home places it: the PLACE is on its way to 0 */
    assert_int_equal(roomfx_move(&R, 1, id, 2), ROOST_EAGAIN);
    roomfx_pump(&R);
    roomfx_ep_new(&R, &b, 1);
    roomfx_ep_new(&R, &d, 2);
    roomfx_ep_join(&b, id, "b");
    roomfx_ep_join(&d, id, "d");
    roomfx_pump(&R);
    struct room *r = roomfx_find(&R, 0, id);
    assert_non_null(r);
    uint32_t free0 = R.sh->tables[0].n_free;
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    assert_int_equal(roomfx_move(&R, 1, id, 0), 0);
    roomfx_pump(&R);
    assert_ptr_equal(roomfx_find(&R, 0, id), r);
    roomfx_del3(&a, &b, &d);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    assert_int_equal(R.sh->tables[0].n_free, free0 + 1);
    roomfx_stop(&R);
}

/* Shutdown while a placed room's UNALIAS is in the ring to its table's
 * worker: the discard frees the room (ASan: no leak). */
static void test_shutdown_unalias_in_ring(void **state)
{
    (void)state;
    roomfx_start_pack(&R, NW, 100);
    const char *id = roomfx_home_room(&R, 1, 0);
    struct roomfx_ep a, b, d;
    roomfx_join3(&R, &a, &b, &d, id);
    assert_int_equal(roomfx_move(&R, 1, id, 2), 0);
    roomfx_pump(&R);
    roomfx_del3(&a, &b, &d);
    /* Workers 1 and 2 only: the LEAVEs reach the room, it ends on 2. */
    for (bool any = true; any;) {
        any = false;
        for (unsigned w = 1; w < NW; w++) {
            while (roomfx_step(&R, w))
                any = true;
            room_shard_flush(R.s[w]);
        }
    }
    assert_int_equal(room_shared_rooms(R.sh), 0);
    bool unalias = false;
    for (unsigned i = R.head[0]; i != R.tail[0]; i++)
        unalias |= R.q[0][i % ROOMFX_QMAX].type == ROOM_MSG_UNALIAS;
    assert_true(unalias);
    roomfx_stop_discard(&R);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_move_basic),
        cmocka_unit_test(test_move_noop),
        cmocka_unit_test(test_move_pending_batch),
        cmocka_unit_test(test_move_affinity_all),
        cmocka_unit_test(test_rebind_quiet),
        cmocka_unit_test(test_rebind_events_in_transit),
        cmocka_unit_test(test_rebind_send_fails),
        cmocka_unit_test(test_fanout_lost_counted),
        cmocka_unit_test(test_fanout_before_rebind_ack),
        cmocka_unit_test(test_rebind_then_leave),
        cmocka_unit_test(test_rebind_then_vanish),
        cmocka_unit_test(test_detach_not_joined),
        cmocka_unit_test(test_rebind_replaced_meanwhile),
        cmocka_unit_test(test_move_quality_follows),
        cmocka_unit_test(test_shutdown_move_in_ring),
        cmocka_unit_test(test_shutdown_drop_in_ring),
        cmocka_unit_test(test_shutdown_moved_room_live),
        cmocka_unit_test(test_move_second),
        cmocka_unit_test(test_move_back_home),
        cmocka_unit_test(test_move_routed_in_ring),
        cmocka_unit_test(test_move_req_after_end),
        cmocka_unit_test(test_shutdown_move_req_held),
        cmocka_unit_test(test_shutdown_arrived_in_ring),
        cmocka_unit_test(test_move_ends_on_arrival),
        cmocka_unit_test(test_move_twice_members_follow),
        cmocka_unit_test(test_move_kfcache_follows),
        cmocka_unit_test(test_move_kfcache_transit_closed),
        cmocka_unit_test(test_rebind_seen_no_repeat),
        cmocka_unit_test(test_rebind_follow_after_answer),
        cmocka_unit_test(test_rebound_twice_latest),
        cmocka_unit_test(test_rebind_rehomed_twice),
        cmocka_unit_test(test_move_placed),
        cmocka_unit_test(test_move_placed_home_and_on),
        cmocka_unit_test(test_move_placed_ends_on_table),
        cmocka_unit_test(test_shutdown_unalias_in_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
