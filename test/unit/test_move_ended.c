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

/* placement = pack, bound `pack_members` (no affinity): new rooms are made
 * on worker 0 whatever their home (place.c). */
static void r_start_pack(uint32_t pack_members)
{
    struct room_limits lim = {.placement = ROOM_PLACE_PACK, .pack_members = pack_members};
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

/* a, b and d, new members on workers 0, 1 and 2, join room id. */
static void join3(struct ep *a, struct ep *b, struct ep *d, const char *id)
{
    ep_new(a, 0);
    ep_new(b, 1);
    ep_new(d, 2);
    ep_join(a, id, "a");
    ep_join(b, id, "b");
    ep_join(d, id, "d");
    r_pump();
    assert_int_equal(a->last_code, 0);
    assert_int_equal(b->last_code, 0);
    assert_int_equal(d->last_code, 0);
}

static bool no_placements(void)
{
    for (unsigned w = 0; w < NW; w++)
        for (uint32_t b = 0; b <= R.s[w]->placed_mask; b++)
            if (R.s[w]->placed[b] != NULL)
                return false;
    return true;
}

static struct room *find(unsigned w, const char *id)
{
    uint64_t h;
    return owner_room_find(R.s[w], (const uint8_t *)id, strlen(id), &h);
}

static int move(unsigned home, const char *id, unsigned to)
{
    uint32_t n;
    return room_shard_move(R.s[home], (const uint8_t *)id, strlen(id), to, &n);
}

static void del3(struct ep *a, struct ep *b, struct ep *d)
{
    room_member_del(a->m);
    room_member_del(b->m);
    room_member_del(d->m);
}

/* Delivers and flushes on workers 1 and 2 only (worker 0's queue waits). */
static void pump_not0(void)
{
    for (bool any = true; any;) {
        any = false;
        for (unsigned w = 1; w < NW; w++) {
            while (r_step(w))
                any = true;
            room_shard_flush(R.s[w]);
        }
    }
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

/* A placed room (pack: home 1, made on 0, in 0's table) moved to 2 ends
 * there; the runtime refuses its UNALIAS to 0. The room stays published in
 * 0's table and valid (without the fix the refused message's release freed
 * it there: ASan reports the read below as a use after free); it goes at
 * the next turn's end and 0 unpublishes it and gets its slot back. */
static void test_unalias_refused_kept(void **state)
{
    (void)state;
    r_start_pack(100);
    const char *id = home_room(1, 0);
    struct ep a, b, d;
    join3(&a, &b, &d, id);
    struct room *r = find(0, id);
    assert_non_null(r);
    uint32_t slot = r->slot, gen = r->gen, free0 = R.sh->tables[0].n_free;
    assert_int_equal(move(1, id, 2), 0);
    r_pump();
    assert_ptr_equal(find(2, id), r);
    del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_UNALIAS;
    pump_not0();                      /* the LEAVEs reach the room: it ends on 2 */
    assert_int_equal(R.fail_type, 0); /* the UNALIAS was refused */
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements()); /* its DROP went */
    rcu_read_lock();
    struct room *pub = room_resolve(R.sh, 0, slot, gen); /* a reader of table 0 */
    assert_ptr_equal(pub, r);
    assert_int_equal(snapshot_count(rcu_dereference(pub->snap)), 0);
    rcu_read_unlock();
    r_pump(); /* worker 2's next turn end sends it again; 0 unpublishes it */
    r_pump();
    assert_null(R.sh->tables[0].slots[slot]);
    assert_int_equal(R.sh->tables[0].n_free, free0 + 1);
    r_stop();
}

/* The same, and the relay stops before the UNALIAS could go again: the
 * room is unpublished and freed with its last owner's shard (ASan: no
 * leak, no double free). */
static void test_unalias_refused_shutdown(void **state)
{
    (void)state;
    r_start_pack(100);
    const char *id = home_room(1, 0);
    struct ep a, b, d;
    join3(&a, &b, &d, id);
    uint32_t slot = find(0, id)->slot;
    assert_int_equal(move(1, id, 2), 0);
    r_pump();
    del3(&a, &b, &d);
    R.fail_type = ROOM_MSG_UNALIAS;
    for (unsigned w = 1; w < NW; w++) /* the LEAVEs, no turn end after the room's */
        while (r_step(w))
            ;
    room_shard_flush(R.s[2]); /* it ends, its UNALIAS is refused */
    assert_int_equal(R.fail_type, 0);
    assert_non_null(R.sh->tables[0].slots[slot]);
    r_stop_discard();
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
    r_start_pack(100);
    const char *id = home_room(1, 0);
    struct ep a, b, d, c, e;
    join3(&a, &b, &d, id);
    struct room *old = find(0, id);
    assert_int_equal(old->slot, 0);
    assert_int_equal(move(1, id, 2), 0);
    r_pump();
    assert_ptr_equal(find(2, id), old);
    del3(&a, &b, &d);
    pump_not0(); /* it ends on 2; its DROP settles the home's placement */
    assert_true(no_placements());
    struct worker_msg unalias = hold(0, ROOM_MSG_UNALIAS);
    assert_ptr_equal(R.sh->tables[0].slots[0], old); /* still published */
    /* The same id again: placed on 0 (pack), a new room in slot 1. */
    ep_new(&c, 1);
    ep_join(&c, id, "c");
    r_pump();
    assert_int_equal(c.last_code, 0);
    struct room *r = find(0, id);
    assert_non_null(r);
    assert_ptr_not_equal(r, old);
    assert_int_equal(r->slot, 1);
    assert_int_equal(room_member_owner(c.m), 0);
    /* The move names the live room; it arrives on 2. */
    uint32_t n = 0;
    assert_int_equal(room_shard_move(R.s[1], (const uint8_t *)id, strlen(id), 2, &n), 0);
    ep_new(&e, 2);
    ep_join(&e, id, "e"); /* waits while the move is asked, then goes on */
    r_pump();
    assert_int_equal(e.joined_cb, 1);
    assert_int_equal(e.last_code, 0);
    assert_ptr_equal(find(2, id), r);
    assert_null(find(0, id));
    assert_int_equal(room_shard_room_at(R.s[1], (const uint8_t *)id, strlen(id)), 2);
    assert_int_equal(room_member_owner(c.m), 2);
    assert_int_equal(room_member_owner(e.m), 2);
    assert_int_equal(n, 1); /* the live room's members */
    /* The stale room's UNALIAS arrives at last: its slot goes, not the
     * live room's. */
    assert_true(R.tail[0] - R.head[0] < QMAX);
    R.q[0][R.tail[0]++ % QMAX] = unalias;
    r_pump();
    assert_null(R.sh->tables[0].slots[0]);
    assert_ptr_equal(R.sh->tables[0].slots[1], r);
    room_member_del(c.m);
    room_member_del(e.m);
    r_pump();
    assert_int_equal(room_shared_rooms(R.sh), 0);
    assert_true(no_placements());
    r_stop();
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
    r_start_pack(100);
    const char *id = home_room(1, 0), *id2 = home_room(2, 1), *id3 = home_room(1, 2);
    struct ep a, b, d, e, f, g, h;
    join3(&a, &b, &d, id);
    assert_non_null(find(0, id));
    ep_new(&g, 2);
    ep_join(&g, id3, "g");
    r_pump();
    assert_non_null(find(0, id3));
    uint8_t buf[64];
    struct media_hdr mh = {.stream_id = 1, .seq = 1};
    assert_int_equal(media_c2r_encode(&mh, buf, sizeof(buf)), MEDIA_C2R_HDR_LEN);
    memset(buf + MEDIA_C2R_HDR_LEN, 0xab, 8);
    assert_int_equal(room_publish(a.m, buf, MEDIA_C2R_HDR_LEN + 8), 0); /* FANOUTs to 1, 2 */
    ep_new(&e, 2);
    ep_join(&e, id, "e");
    assert_true(r_step(1)); /* routed: the FWD JOIN waits for 0 */
    ep_new(&f, 1);
    ep_join(&f, id, "f");
    assert_true(r_step(1));
    assert_true(r_step(0));   /* e applied on 0 */
    assert_true(r_step(0));   /* f applied */
    room_shard_flush(R.s[0]); /* ACKs to 1, 2; EVENTS to 0, 1, 2 */
    room_member_del(d.m);     /* its LEAVE waits for the home */
    ep_new(&h, 1);
    ep_join(&h, id2, "h"); /* a new room: its JOIN waits for its home (2) */
    assert_int_equal(move(2, id2, 1), ROOST_ENOENT);
    assert_int_equal(move(1, id3, 2), 0); /* a MOVE_REQ to 0 */
    assert_true(R.tail[0] != R.head[0]);
    while (r_step(0))
        ; /* the MOVE_REQ: id3's MOVE waits for 2 */
    assert_null(find(0, id3));
    room_member_del(a.m);
    room_member_del(b.m);
    room_member_del(e.m);
    room_member_del(f.m);
    room_member_del(g.m);
    room_member_del(h.m);
    r_stop_discard();
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
