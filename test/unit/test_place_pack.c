/* Unit tests: placement = pack (lib/room/place.c, place_choose) and
 * moving a placed room (move.c room_shard_move / move_on_request through
 * the home's placement).
 *
 * Two shards whose messages a router delivers by hand, one queue per
 * destination worker (the rings' order per pair is kept), as
 * test_owner_affinity.c's owner load bound tests do: pack fills worker 0
 * up to pack_members participants, then spills to worker 1; a room that
 * ends frees its members' share so that new rooms go back to worker 0;
 * when every worker is at the bound a room goes to its hash owner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/perm.h"
#include "room/room.h"
#include "room/room_int.h"
#include "../common/roomfx.h"

#define N_WORKERS 2

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

static struct roomfx R;
/* What ROOM_MSG_ACKs told each pid. */
static uint32_t ack_code[64];
static int ack_owner[64];

static bool r_step(struct roomfx *fx, unsigned w);

static void r_start_aff(uint8_t placement, uint32_t pack_members, uint32_t affinity)
{
    memset(ack_code, 0, sizeof(ack_code));
    for (unsigned i = 0; i < 64; i++)
        ack_owner[i] = -1;
    struct room_limits lim = {
        .placement = placement, .pack_members = pack_members, .affinity_max_members = affinity};
    roomfx_start_ops(&R, N_WORKERS, &lim, &fake_ops);
    R.step = r_step; /* this test's own dispatch */
}

static void r_start(uint8_t placement, uint32_t pack_members)
{
    r_start_aff(placement, pack_members, 0);
}

/* Delivers the oldest message queued for worker w; false when none. */
static bool r_step(struct roomfx *fx, unsigned w)
{
    if (fx->head[w] == fx->tail[w])
        return false;
    struct worker_msg wm = fx->q[w][fx->head[w]++ % ROOMFX_QMAX];
    struct buf *b;
    switch (wm.type) {
    case ROOM_MSG_JOIN: /* as dispatch.c does */
        memcpy(&b, wm.u.bytes, sizeof(b));
        fx->s[w]->in_buf = b;
        owner_on_join(fx->s[w], (const struct join_req *)b->data);
        fx->s[w]->in_buf = NULL;
        break;
    case ROOM_MSG_LEAVE:
        memcpy(&b, wm.u.bytes, sizeof(b));
        fx->s[w]->in_buf = b;
        owner_on_leave(fx->s[w], (const struct leave_req *)b->data);
        fx->s[w]->in_buf = NULL;
        break;
    case ROOM_MSG_DROP:
        memcpy(&b, wm.u.bytes, sizeof(b));
        owner_on_drop(fx->s[w], (const struct drop_msg *)b->data);
        break;
    case ROOM_MSG_MOVE: {
        struct room *r;
        memcpy(&r, wm.u.bytes, sizeof(r));
        move_on_arrive(fx->s[w], r);
        return true; /* the room is this worker's now: nothing to release */
    }
    case ROOM_MSG_MOVE_REQ: {
        struct move_req_msg mr;
        memcpy(&mr, wm.u.bytes, sizeof(mr));
        move_on_request(fx->s[w], &mr);
        break;
    }
    case ROOM_MSG_ARRIVED: {
        struct arrived_msg am;
        memcpy(&am, wm.u.bytes, sizeof(am));
        place_on_arrived(fx->s[w], &am);
        break;
    }
    case ROOM_MSG_ACK: {
        memcpy(&b, wm.u.bytes, sizeof(b));
        const struct ack_hdr *a = (const struct ack_hdr *)b->data;
        assert_true(a->pid < 64);
        ack_code[a->pid] = a->code;
        ack_owner[a->pid] = a->owner;
        break;
    }
    default:
        break;
    }
    assert_true(room_msg_release(&wm));
    return true;
}

/* A member's JOIN (or LEAVE), queued for the room's home as member.c does;
 * the member is on `worker`, its endpoint movable or not (affinity). */
static void r_join_from(uint32_t pid, const char *room, unsigned worker, bool movable)
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
    jr->movable = movable;
    jr->perms = PERM_ALL;
    jr->room_len = (uint8_t)strlen(room);
    memcpy(jr->room, room, jr->room_len);
    jr->ident_len = 1;
    jr->identity[0] = (uint8_t)pid;
    b->len = sizeof(*jr);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_JOIN, &b, sizeof(b));
    roomfx_send(&R, room_shared_owner(R.sh, (const uint8_t *)room, strlen(room)), &wm);
}

static void r_join(uint32_t pid, const char *room)
{
    r_join_from(pid, room, 0, false);
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
    roomfx_send(&R, room_shared_owner(R.sh, (const uint8_t *)room, strlen(room)), &wm);
}

/* The n-th room id (from 0, n < 8) whose home is worker `home`. */
static const char *home_room(unsigned home, unsigned n)
{
    static char ids[N_WORKERS][8][16];
    for (unsigned i = 0, found = 0;; i++) {
        char id[16];
        snprintf(id, sizeof(id), "room-%u", i);
        if (room_shared_owner(R.sh, (const uint8_t *)id, strlen(id)) != home)
            continue;
        if (found++ == n) {
            memcpy(ids[home][n], id, sizeof(id));
            return ids[home][n];
        }
    }
}

static int64_t owned(unsigned w)
{
    return atomic_load(&R.sh->owned[w]);
}

/* The worker that owns room id now (its shard's buckets), or -1. */
static int owner_of(const char *id)
{
    int at = -1;
    for (unsigned w = 0; w < N_WORKERS; w++) {
        uint64_t h;
        if (owner_room_find(R.s[w], (const uint8_t *)id, strlen(id), &h) != NULL) {
            assert_int_equal(at, -1); /* one owner */
            at = (int)w;
        }
    }
    return at;
}

/* Pack, bound 2: worker 0 takes new rooms (whatever their home) until it
 * owns 2 participants; then worker 1 does; later joins of a room follow it. */
static void test_pack_fills_then_spills(void **state)
{
    (void)state;
    r_start(ROOM_PLACE_PACK, 2);
    const char *a = home_room(1, 0), *b = home_room(0, 0), *c = home_room(1, 1);
    r_join(1, a); /* home 1, packed on 0 */
    roomfx_pump(&R);
    assert_int_equal(ack_code[1], 0);
    assert_int_equal(ack_owner[1], 0);
    r_join(2, a);
    roomfx_pump(&R);
    assert_int_equal(ack_owner[2], 0);
    assert_int_equal(owned(0), 2);
    r_join(3, b); /* home 0, but worker 0 is at the bound: on 1 */
    r_join(4, b);
    roomfx_pump(&R);
    assert_int_equal(ack_owner[3], 1);
    assert_int_equal(ack_owner[4], 1);
    assert_int_equal(owner_of(b), 1);
    assert_int_equal(owned(1), 2);
    /* Both at the bound: by hash (c's home is 1). */
    r_join(5, c);
    roomfx_pump(&R);
    assert_int_equal(ack_owner[5], 1);
    assert_int_equal(owned(0), 2);
    assert_int_equal(owned(1), 3);
    struct room_stats st;
    room_shard_stats(R.s[1], &st);
    assert_int_equal(st.rooms_placed, 1); /* a */
    room_shard_stats(R.s[0], &st);
    assert_int_equal(st.rooms_placed, 1); /* b */
    for (uint32_t p = 1; p <= 5; p++)
        r_leave(p, p <= 2 ? a : p <= 4 ? b : c);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* A room that ends frees its members' share: the next new room goes back
 * to worker 0 (the fuller one), not to 1. */
static void test_pack_end_frees_slot(void **state)
{
    (void)state;
    r_start(ROOM_PLACE_PACK, 2);
    const char *a = home_room(0, 0), *b = home_room(1, 0), *c = home_room(1, 1);
    r_join(1, a);
    r_join(2, a);
    roomfx_pump(&R);
    r_join(3, b); /* 0 is full: on 1 (its home) */
    roomfx_pump(&R);
    assert_int_equal(ack_owner[3], 1);
    r_leave(1, a);
    r_leave(2, a);
    roomfx_pump(&R);
    assert_int_equal(owned(0), 0);
    assert_int_equal(owner_of(a), -1);
    r_join(4, c); /* home 1, 1 owns 1 participant: packed on 0 again */
    roomfx_pump(&R);
    assert_int_equal(ack_owner[4], 0);
    assert_int_equal(owner_of(c), 0);
    r_leave(3, b);
    r_leave(4, c);
    roomfx_pump(&R);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* Pack with affinity (session 10): a new room's first joiner that cannot
 * move (a WebSocket member, or a JOIN that followed its room too often) gets
 * the room on its own worker, not on the pack worker where it would be the
 * one member off the room's worker; a movable one is sent to the pack
 * worker (ROOM_JOIN_MOVE) as before. */
static void test_pack_unmovable_joiner_own_worker(void **state)
{
    (void)state;
    r_start_aff(ROOM_PLACE_PACK, 100, 8);
    const char *a = home_room(0, 0), *b = home_room(0, 1);
    r_join_from(1, a, 1, false); /* pack would pick 0 */
    roomfx_pump(&R);
    assert_int_equal(ack_code[1], 0);
    assert_int_equal(ack_owner[1], 1);
    assert_int_equal(owner_of(a), 1);
    r_join_from(2, b, 1, true); /* movable: to the pack worker */
    roomfx_pump(&R);
    assert_int_equal(ack_code[2], ROOM_JOIN_MOVE);
    assert_int_equal(ack_owner[2], 0);
    assert_int_equal(owner_of(b), -1);
    r_leave(1, a);
    roomfx_pump(&R);
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(roomfx_no_placements(&R));
    roomfx_stop(&R);
}

/* Spread (the default): every room on its home. */
static void test_spread_keeps_hash(void **state)
{
    (void)state;
    r_start(ROOM_PLACE_SPREAD, 2);
    const char *a = home_room(1, 0), *b = home_room(0, 0);
    r_join(1, a);
    r_join(2, b);
    roomfx_pump(&R);
    assert_int_equal(ack_owner[1], 1);
    assert_int_equal(ack_owner[2], 0);
    assert_true(roomfx_no_placements(&R));
    r_leave(1, a);
    r_leave(2, b);
    roomfx_stop(&R);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_fills_then_spills),
        cmocka_unit_test(test_pack_end_frees_slot),
        cmocka_unit_test(test_pack_unmovable_joiner_own_worker),
        cmocka_unit_test(test_spread_keeps_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
