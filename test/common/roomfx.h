/* Test support: the hand-driven room-shard fixture the room move unit
 * tests (test_room_move.c, test_move_order.c, test_move_ended.c,
 * test_move_rebind.c, test_place_pack.c) share: shards on a worker pool
 * that is never started, real members on them with fake endpoints
 * (struct roomfx_ep, recording what the room tells them), and a router
 * (the shards' send hook) with one queue per destination worker, so the
 * rings' order per pair is kept, delivered through room_dispatch_one or
 * the test's own step. Not part of the relay.
 *
 * Thread safety: the test's thread. */
#ifndef ROOST_TEST_ROOMFX_H
#define ROOST_TEST_ROOMFX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/worker.h"
#include "room/room.h"

#define ROOMFX_MAXW 4
#define ROOMFX_QMAX 256

struct roomfx;

/* Delivers the oldest message queued for worker w; false when none. */
typedef bool (*roomfx_step_fn)(struct roomfx *fx, unsigned w);

/* The fields are the tests' to read and to reorder (held-back messages). */
struct roomfx {
    struct worker_pool *pool;
    struct room_shared *sh;
    unsigned nw;
    struct room_shard *s[ROOMFX_MAXW];
    struct worker_msg q[ROOMFX_MAXW][ROOMFX_QMAX];
    unsigned head[ROOMFX_MAXW], tail[ROOMFX_MAXW];
    int64_t buf_base;
    int fail_type;       /* the next message of this type is refused (0: none) */
    roomfx_step_fn step; /* NULL: roomfx_step */
};

/* A fake endpoint: what the room ops (roomfx_ops) told it. */
struct roomfx_ep {
    unsigned w;
    struct room_member *m;
    uint32_t pid;
    unsigned media, events, joined_msgs, controls, joined_cb, replaced;
    uint32_t last_code;
    int moved_to;
};

/* Room ops recording into struct roomfx_ep. */
extern const struct room_ops roomfx_ops;

/* nw (<= ROOMFX_MAXW) shards with `ops` (NULL: roomfx_ops), limits lim. */
void roomfx_start_ops(struct roomfx *fx, unsigned nw, const struct room_limits *lim,
                      const struct room_ops *ops);
void roomfx_start_lim(struct roomfx *fx, unsigned nw, const struct room_limits *lim);
/* affinity_max_members = amax. */
void roomfx_start(struct roomfx *fx, unsigned nw, uint32_t amax);
/* placement = pack, bound `pack_members` (no affinity): new rooms are made
 * on worker 0 whatever their home (place.c). */
void roomfx_start_pack(struct roomfx *fx, unsigned nw, uint32_t pack_members);
/* The shards' send hook (arg: the fixture): queues wm for worker `to`,
 * or refuses it (ROOST_ENOMEM) when of fail_type. */
int roomfx_send(void *arg, unsigned to, struct worker_msg *wm);
/* Queues wm last for worker w (a held-back message released). */
void roomfx_push(struct roomfx *fx, unsigned w, const struct worker_msg *wm);
/* Through room_dispatch_one, as the worker does. */
bool roomfx_step(struct roomfx *fx, unsigned w);
/* Delivers and flushes (each worker's turn end) until nothing is left. */
void roomfx_pump(struct roomfx *fx);
/* Shutdown: what is still queued is discarded (the runtime's discard);
 * checks no buffer leaked. */
void roomfx_stop_discard(struct roomfx *fx);
/* Pumps, then stops. */
void roomfx_stop(struct roomfx *fx);
/* The n-th (n < 4) room id whose home is worker w. */
const char *roomfx_home_room(struct roomfx *fx, unsigned w, unsigned n);
/* No worker has a placed room. */
bool roomfx_no_placements(struct roomfx *fx);
/* The room id owned by worker w, or NULL. */
struct room *roomfx_find(struct roomfx *fx, unsigned w, const char *id);
/* room_shard_move of id asked of `home`. */
int roomfx_move(struct roomfx *fx, unsigned home, const char *id, unsigned to);
/* Takes the first message of `type` out of worker w's queue (the others
 * keep their order): held back, as a ring read later than another. */
struct worker_msg roomfx_hold(struct roomfx *fx, unsigned w, uint16_t type);

/* A new movable member on worker w. */
void roomfx_ep_new(struct roomfx *fx, struct roomfx_ep *e, unsigned w);
void roomfx_ep_join(struct roomfx_ep *e, const char *room, const char *ident);
/* One media frame. */
void roomfx_ep_send(struct roomfx_ep *e);
/* The connection hand-off of a moved member, as relay/session.c does it:
 * detached on its worker, re-bound on `to`. */
void roomfx_ep_hand_off(struct roomfx *fx, struct roomfx_ep *e, unsigned to);
/* a, b and d, new members on workers 0, 1 and 2, join room id. */
void roomfx_join3(struct roomfx *fx, struct roomfx_ep *a, struct roomfx_ep *b, struct roomfx_ep *d,
                  const char *id);
void roomfx_del3(struct roomfx_ep *a, struct roomfx_ep *b, struct roomfx_ep *d);

#endif
