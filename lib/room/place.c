/* Rooms, placement (the owner load bound, room_limits.owner_share_max):
 * where the owner side's JOIN, LEAVE and DROP messages go before owner.c
 * applies them.
 *
 * Every JOIN and LEAVE goes to the room's home, the worker its id hashes
 * to. Normally the home owns the room. With the owner load bound
 * (room_limits.owner_share_max) a home that is over its share creates no
 * new room itself: it picks the first worker the next hashes of the id
 * name that is not over either, remembers the placement and routes the
 * JOIN there (ROUTE_PLACE); every later JOIN and LEAVE for the room goes
 * the same way (ROUTE_FWD), behind the first in the same ring. The placed
 * owner answers the joiners itself (their member then names it as owner:
 * fan-out, quality and presence never pass the home).
 *
 * When the placed room goes (or the PLACE made none: affinity, full), its
 * owner sends the home a DROP with the number of routed messages that
 * reached it. Those sent after that count find no room and come back
 * (ROUTE_BOUNCE), behind the DROP. Until all are back the placement drains:
 * messages arriving meanwhile wait (they are newer than the bounced ones);
 * then the placement goes and the bounced ones, then the waiting ones, are
 * handled in order as if they had just arrived (a new room may be placed).
 * So a member's JOIN and LEAVE reach the room's one owner in their order,
 * and two owners never hold the same room.
 *
 * A live room moved off its home (move.c, room_shard_move) gets the same
 * kind of placement, made when the room leaves (routed 0): its DROP
 * carries the room itself, which the home unpublishes from its slot table
 * (the room kept its handle there) before the drain goes on as above.
 *
 * A moved room may move again, or back home, any number of times, one
 * move at a time; the home orders every move (place_move_on): it asks
 * the room's owner for it (MOVE_REQ, behind every JOIN and LEAVE it routed
 * there) and pauses the placement: JOINs and LEAVEs arriving meanwhile
 * wait, in order. The owner applies what it was routed, then hands the
 * room on (MOVE). The new owner tells the home (ARRIVED) once the room is
 * linked there, so everything the home routes after that reaches the
 * room behind its arrival; or the room comes home (place_home_again):
 * the placement goes and what waited is applied here. A room that ends
 * before the MOVE_REQ reaches its owner drains as above (its DROP unpauses
 * the placement). A move from the home itself needs no pause: the MOVE
 * and what the home routes after it share one ring; it is in flight (no
 * further move) until the ARRIVED. So a member's JOIN and LEAVE reach the
 * room's one owner in their order however often the room moves.
 *
 * Session 8: placement = pack (place_choose) places new rooms by the same
 * machinery, on the lowest-numbered worker under pack_members. A room
 * placed off its home moves like a moved one: the home finds it in its
 * table worker's table (place_room_find), asks its owner (MOVE_REQ) and
 * knows it by its handle from then on (ARRIVED names the handle; the
 * placement keeps tab, slot, gen). Only a room in the home's own table
 * travels back with its DROP; one in another worker's table goes back to
 * that worker at its end (ROOM_MSG_UNALIAS, owner.c). */

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "room/room_int.h"
#include "room/snapshot.h"

struct parked_msg {
    struct parked_msg *next;
    bool is_join;
    union {
        struct join_req jr;
        struct leave_req lr;
    } u;
};

struct placement {
    struct placement *next;
    uint64_t hash;
    uint8_t id_len;
    uint8_t id[ROOM_ID_MAX];
    uint16_t at;        /* the owner it was placed on */
    uint32_t routed;    /* PLACE + FWD sent there */
    struct room *moved; /* a room moved from here (move.c), in this worker's table */
    /* The room's table worker (where its handle is published: the worker
     * it was placed on, or this one for a room moved from here) and, once
     * a move was asked (`handle`), its slot and gen there: what ARRIVED
     * names. A room published in another worker's table is only read
     * here by a scan of that table in a read section (place_room_find). */
    uint16_t tab;
    bool handle;
    uint32_t slot, gen;
    bool moving;   /* a move in flight: until ARRIVED (or the room ends) */
    bool paused;   /* ... asked of the owner: what arrives waits in `later` */
    bool draining; /* DROP came; `pending` routed messages are coming back */
    uint32_t pending;
    struct parked_msg *back, **back_tail;   /* bounced, in order */
    struct parked_msg *later, **later_tail; /* arrived while draining */
};

static void parked_list_free(struct parked_msg *pm)
{
    while (pm != NULL) {
        struct parked_msg *next = pm->next;
        free(pm);
        pm = next;
    }
}

void place_free(struct room_shard *s)
{
    if (s->placed == NULL)
        return;
    for (uint32_t b = 0; b <= s->placed_mask; b++) {
        while (s->placed[b] != NULL) {
            struct placement *p = s->placed[b];
            s->placed[b] = p->next;
            parked_list_free(p->back);
            parked_list_free(p->later);
            free(p);
        }
    }
}

static struct placement **placement_ref(struct room_shard *s, const uint8_t *id, size_t len,
                                        uint64_t h)
{
    struct placement **pp = &s->placed[(h >> 32) & s->placed_mask];
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->id_len == len && memcmp((*pp)->id, id, len) == 0)
            return pp;
    return pp;
}

/* The placement of the room with this handle (a move asked), or NULL. */
static struct placement **placement_by_handle(struct room_shard *s, uint64_t h, unsigned tab,
                                              uint32_t slot, uint32_t gen)
{
    struct placement **pp = &s->placed[(h >> 32) & s->placed_mask];
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->handle && (*pp)->tab == tab && (*pp)->slot == slot &&
            (*pp)->gen == gen)
            return pp;
    return pp;
}

/* A placed room, owned elsewhere and published in worker p->tab's table:
 * found by a scan of that table (admin path only; tables do not grow).
 * Caller holds a read section; NULL while the PLACE has made no room yet
 * or after the room was unpublished.
 *
 * The table may still publish an ended room of the same id: one that
 * moved on from there and ended on another worker, whose UNALIAS has not
 * reached the table worker yet (owner.c room_destroy) while the id was
 * placed there again. Its MOVE_REQ would find nothing on p->at and get no
 * answer (the placement would stay paused). So once the placement knows
 * its room's handle (a move was asked or made) only that handle is taken;
 * before, only a room owned where the placement says: the room it placed
 * there has not moved (own == tab == at), an ended one in that table had
 * moved away from it (own != tab). */
static struct room *place_room_find(struct room_shard *s, const struct placement *p)
{
    const struct room_table *t = &s->sh->tables[p->tab];
    for (uint32_t i = 0; i < t->cap; i++) {
        struct room *r = rcu_dereference(t->slots[i]);
        if (r == NULL || r->hash != p->hash || r->id_len != p->id_len ||
            memcmp(r->id, p->id, p->id_len) != 0)
            continue;
        if (p->handle ? r->slot != p->slot || r->gen != p->gen
                      : atomic_load_explicit(&r->own, memory_order_acquire) != p->at)
            continue;
        return r;
    }
    return NULL;
}

/* Whether worker w owns more than its share of the relay's participants. */
static bool owner_over(const struct room_shared *sh, unsigned w)
{
    int64_t own = atomic_load_explicit(&sh->owned[w], memory_order_relaxed);
    int64_t all = atomic_load_explicit(&sh->participants, memory_order_relaxed);
    return own * 100 > (int64_t)sh->lim.owner_share_max * all;
}

/* Where a new room hashing here goes. Pack (room_limits.placement): the
 * lowest-numbered worker that owns fewer than pack_members participants
 * (with affinity, a joiner that cannot move: its own worker);
 * when every worker owns that many, as spread. Spread: here, unless this
 * worker is over its share; then the first of the next hashes of the id
 * (the hash key with the round number mixed in) that names a worker not
 * over; when none of 2N rounds does, the next worker in id order that is
 * not over; here when every worker is over. */
static unsigned place_choose(const struct room_shard *s, const struct join_req *jr)
{
    const struct room_shared *sh = s->sh;
    const uint8_t *id = jr->room;
    size_t len = jr->room_len;
    if (sh->n_workers < 2)
        return s->id;
    /* Pack with room affinity: a joiner that cannot change workers (not
     * movable: WebSocket, or its JOIN followed the room too often) gets the
     * room on its own worker. On the pack worker it would be the one member
     * off the room's worker, for the room's whole life (a split room);
     * movable joiners follow it there. */
    if (sh->lim.placement == ROOM_PLACE_PACK && sh->lim.affinity_max_members > 0 && !jr->movable &&
        jr->worker < sh->n_workers)
        return jr->worker;
    /* Pack: the lowest-numbered worker under the bound; by hash (below)
     * when every worker is at it. */
    if (sh->lim.placement == ROOM_PLACE_PACK)
        for (unsigned w = 0; w < sh->n_workers; w++)
            if (atomic_load_explicit(&sh->owned[w], memory_order_relaxed) <
                (int64_t)sh->lim.pack_members)
                return w;
    if (sh->lim.owner_share_max == 0 || !owner_over(sh, s->id))
        return s->id;
    for (unsigned k = 1; k <= 2 * sh->n_workers; k++) {
        struct hash_key kk = sh->key;
        kk.bytes[0] ^= (uint8_t)k;
        kk.bytes[1] ^= (uint8_t)(k >> 8);
        unsigned c = hash_owner(&kk, id, len, sh->n_workers);
        if (c != s->id && !owner_over(sh, c))
            return c;
    }
    for (unsigned k = 1; k < sh->n_workers; k++) { /* the hashes kept naming busy ones */
        unsigned c = (s->id + k) % sh->n_workers;
        if (!owner_over(sh, c))
            return c;
    }
    return s->id;
}

/* One routed JOIN or LEAVE, whichever it is. */
struct rmsg {
    const struct join_req *jr;
    const struct leave_req *lr;
};

static const uint8_t *rmsg_room(const struct rmsg *m, size_t *len)
{
    *len = m->jr ? m->jr->room_len : m->lr->room_len;
    return m->jr ? m->jr->room : m->lr->room;
}

/* Sends m to `to` with its route set. A bounce or a LEAVE goes in the
 * message's own buffer (s->in_buf) when m is in it, so that it needs no
 * allocation, and is never refused for the spill bound (WORKER_MSG_OWED:
 * the home waits for a bounce; a lost LEAVE leaves a ghost member; their
 * number follows JOINs admitted already). A JOIN is copied into a new
 * buffer (the home still needs it if the send fails). Returns 0 (a
 * bounce the runtime refused is kept and sent again: placed.c), or the
 * error: then nothing went. */
static int rmsg_send(struct room_shard *s, unsigned to, const struct rmsg *m, uint8_t route)
{
    bool owed = route == ROUTE_BOUNCE || m->lr != NULL;
    const void *src = m->jr ? (const void *)m->jr : (const void *)m->lr;
    uint32_t len = m->jr ? (uint32_t)sizeof(*m->jr) : (uint32_t)sizeof(*m->lr);
    struct buf *b;
    if (owed && s->in_buf != NULL && (const void *)s->in_buf->data == src) {
        b = buf_ref(s->in_buf);
    } else {
        b = buf_new(len);
        if (b == NULL)
            return ROOST_ENOMEM;
        memcpy(b->data, src, len);
        b->len = len;
    }
    if (m->jr)
        ((struct join_req *)b->data)->route = route;
    else
        ((struct leave_req *)b->data)->route = route;
    struct worker_msg wm;
    room_msg_put(&wm, m->jr ? ROOM_MSG_JOIN : ROOM_MSG_LEAVE, &b, sizeof(b));
    /* A bounce goes behind the room's DROP (the home counts it as coming
     * back after that), which may be owed still: kept in order (placed.c). */
    if (route == ROUTE_BOUNCE)
        return place_send_owed(s, to, &wm);
    return room_send_cls(s, to, &wm, owed ? WORKER_MSG_OWED : WORKER_MSG_CONTROL);
}

/* A routed JOIN or LEAVE the home could not send to the placed owner. It
 * is not counted, so the DROP's count still matches and the placement
 * still drains. The joiner is told to try again; a LEAVE (OWED, in its
 * own buffer) fails only when a spill queue cannot grow: it is logged. */
static void route_lost(struct room_shard *s, const struct rmsg *m, unsigned to, int rc)
{
    ROOM_STAT_INC(s, route_lost);
    if (m->jr) {
        log_error("event=room_route_lost kind=join pid=%u to=%u err=\"%s\"", m->jr->pid, to,
                  roost_strerror(rc));
        owner_reject(s, m->jr, PROTO_ERR_SERVER_FULL, "room owner busy, try again", 1000);
    } else {
        log_error("event=room_route_lost kind=leave pid=%u to=%u err=\"%s\"", m->lr->pid, to,
                  roost_strerror(rc));
    }
}

static int rmsg_park(struct parked_msg ***tail, const struct rmsg *m)
{
    struct parked_msg *pm = calloc(1, sizeof(*pm));
    if (pm == NULL)
        return ROOST_ENOMEM;
    pm->is_join = m->jr != NULL;
    if (m->jr) {
        pm->u.jr = *m->jr;
        pm->u.jr.route = ROUTE_DIRECT;
    } else {
        pm->u.lr = *m->lr;
        pm->u.lr.route = ROUTE_DIRECT;
    }
    **tail = pm;
    *tail = &pm->next;
    return 0;
}

static void route_in(struct room_shard *s, const struct rmsg *m);

/* Messages that waited, in order, as if they had just arrived (their
 * placement routes to the room's owner again, or is gone: applied here). */
static void place_replay(struct room_shard *s, struct parked_msg *q)
{
    while (q != NULL) {
        struct parked_msg *pm = q;
        q = pm->next;
        struct rmsg m = {.jr = pm->is_join ? &pm->u.jr : NULL,
                         .lr = pm->is_join ? NULL : &pm->u.lr};
        route_in(s, &m);
        free(pm);
    }
}

/* Every routed message is back: the placement goes, and what waited is
 * handled in order (bounced first: they are older). */
static void placement_settle(struct room_shard *s, struct placement **pp)
{
    struct placement *p = *pp;
    *pp = p->next;
    struct parked_msg *q = p->back;
    if (q != NULL)
        *p->back_tail = p->later;
    else
        q = p->later;
    free(p);
    place_replay(s, q);
}

void owner_on_drop(struct room_shard *s, const struct drop_msg *dm)
{
    uint64_t h = hash_siphash24(&s->sh->key, dm->room, dm->room_len);
    struct placement **pp = placement_ref(s, dm->room, dm->room_len, h);
    struct placement *p = *pp;
    if (p == NULL || p->draining || p->at != dm->from || dm->routed > p->routed ||
        (dm->moved != NULL && dm->moved != p->moved)) {
        log_error("event=room_drop_unexpected from=%u", dm->from);
        return;
    }
    /* A room in this worker's table comes with its DROP (one in another
     * worker's table went back there: owner.c room_destroy). */
    if (dm->moved != NULL)
        owner_room_unalias(s, dm->moved); /* its handle goes; readers keep it a grace period */
    p->moved = NULL;
    p->handle = false;
    /* Ended before a move asked of its owner (which finds nothing): what
     * waited for the move waits for the drain (`later`, as a drain's). */
    p->moving = p->paused = false;
    p->draining = true;
    p->pending = p->routed - dm->routed;
    if (p->pending == 0)
        placement_settle(s, pp);
}

/* The home's side: routes m to the room's placed owner, parks it while a
 * placement drains, or places a new room. Returns false when the message
 * is for this worker to apply. */
static bool route_home(struct room_shard *s, const struct rmsg *m, uint8_t route)
{
    size_t len;
    const uint8_t *id = rmsg_room(m, &len);
    uint64_t h;
    struct room *r = owner_room_find(s, id, len, &h);
    struct placement **pp = placement_ref(s, id, len, h);
    struct placement *p = *pp;
    if (route == ROUTE_BOUNCE) {
        if (p == NULL || !p->draining) {
            log_error("event=room_bounce_unexpected");
            return false;
        }
        if (rmsg_park(&p->back_tail, m) != 0)
            log_error("event=room_route_lost kind=bounce reason=nomem");
        if (--p->pending == 0)
            placement_settle(s, pp);
        return true;
    }
    if (p != NULL) {
        if (p->draining || p->paused) {
            if (rmsg_park(&p->later_tail, m) != 0)
                log_error("event=room_route_lost kind=park reason=nomem");
            return true;
        }
        int rc = rmsg_send(s, p->at, m, ROUTE_FWD);
        if (rc != 0) {
            route_lost(s, m, p->at, rc);
            return true;
        }
        p->routed++; /* only what went: the DROP counts what arrived */
        ROOM_STAT_INC(s, routed);
        return true;
    }
    if (r != NULL || m->jr == NULL || m->jr->rebind)
        return false; /* a re-bind (move.c) makes no room: answered here */
    unsigned at = place_choose(s, m->jr);
    if (at == s->id)
        return false;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return false; /* created here, as without the bound */
    int rc = rmsg_send(s, at, m, ROUTE_PLACE);
    if (rc != 0) {
        log_error("event=room_place_failed to=%u err=\"%s\"", at, roost_strerror(rc));
        free(p);
        return false; /* likewise */
    }
    p->hash = h;
    p->id_len = (uint8_t)len;
    memcpy(p->id, id, len);
    p->at = (uint16_t)at;
    p->tab = (uint16_t)at; /* owner_join publishes it there */
    p->routed = 1;
    p->back_tail = &p->back;
    p->later_tail = &p->later;
    *pp = p;
    ROOM_STAT_INC(s, rooms_placed);
    return true;
}

/* A routed message on the placed owner's side: for its room if the room is
 * here (counted), else back to the home. Returns false when the message is
 * for this worker to apply. */
static bool route_placed(struct room_shard *s, const struct rmsg *m, uint8_t route, unsigned home)
{
    size_t len;
    const uint8_t *id = rmsg_room(m, &len);
    uint64_t h;
    struct room *r = owner_room_find(s, id, len, &h);
    if (r != NULL) {
        r->routed_in++;
        return false;
    }
    if (route == ROUTE_PLACE && m->jr != NULL)
        return false; /* owner_join makes the room (or sends the DROP) */
    ROOM_STAT_INC(s, bounced);
    int rc = rmsg_send(s, home, m, ROUTE_BOUNCE);
    if (rc != 0)
        log_error("event=room_bounce_lost home=%u err=\"%s\"", home, roost_strerror(rc));
    return true;
}

static void route_in(struct room_shard *s, const struct rmsg *m)
{
    size_t len;
    const uint8_t *id = rmsg_room(m, &len);
    unsigned home = room_owner_of(s->sh, id, len);
    uint8_t route = m->jr ? m->jr->route : m->lr->route;
    bool routed = home == s->id ? route_home(s, m, route)
                                : route != ROUTE_DIRECT && route_placed(s, m, route, home);
    if (routed)
        return;
    if (m->jr)
        owner_apply_join(s, m->jr);
    else
        owner_apply_leave(s, m->lr);
}

int place_add_moved(struct room_shard *s, struct room *r, unsigned to)
{
    struct placement **pp = placement_ref(s, r->id, r->id_len, r->hash);
    if (*pp != NULL)
        return ROOST_EEXIST;
    struct placement *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ROOST_ENOMEM;
    p->hash = r->hash;
    p->id_len = r->id_len;
    memcpy(p->id, r->id, r->id_len);
    p->at = (uint16_t)to;
    /* A room placed here from another worker's table (came home, moves
     * on): not read by the home again, it may end and be freed there. */
    p->moved = r->tab == s->id ? r : NULL;
    p->tab = r->tab;
    p->handle = true;
    p->slot = r->slot;
    p->gen = r->gen;
    p->moving = true;
    p->back_tail = &p->back;
    p->later_tail = &p->later;
    *pp = p;
    return 0;
}

unsigned room_shard_room_at(struct room_shard *s, const uint8_t *id, size_t len)
{
    if (len == 0 || len > ROOM_ID_MAX)
        return s->id;
    uint64_t h;
    if (owner_room_find(s, id, len, &h) != NULL)
        return s->id;
    const struct placement *p = *placement_ref(s, id, len, h);
    return p != NULL ? p->at : s->id;
}

int place_move_on(struct room_shard *s, const uint8_t *id, size_t len, unsigned to,
                  uint32_t *members)
{
    uint64_t h = hash_siphash24(&s->sh->key, id, len);
    struct placement *p = *placement_ref(s, id, len, h);
    if (p == NULL)
        return ROOST_ENOENT;
    if (p->draining)
        return ROOST_EAGAIN; /* ending */
    /* Owned elsewhere: its snapshot (RCU-published) has the count. A room
     * moved from here is in this worker's table; a placed one (the owner
     * load bound, pack, or a room that came home from another table and
     * moved on) in its table worker's, found there. */
    rcu_read_lock();
    struct room *r = p->moved != NULL ? p->moved : place_room_find(s, p);
    if (r == NULL) {
        rcu_read_unlock();
        return ROOST_EAGAIN; /* its PLACE made none yet, or it ended */
    }
    *members = snapshot_count(rcu_dereference(r->snap));
    /* Immutable fields of the room. */
    struct move_req_msg mr = {
        .hash = r->hash, .slot = r->slot, .gen = r->gen, .tab = r->tab, .to = (uint16_t)to};
    rcu_read_unlock();
    if (p->moving)
        return ROOST_EAGAIN; /* one move at a time */
    if (p->at == to)
        return ROOST_EEXIST;
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_MOVE_REQ, &mr, sizeof(mr));
    /* The home waits for its answer (ARRIVED or DROP): no spill bound. */
    int rc = s->send_hook != NULL ? s->send_hook(s->send_hook_arg, p->at, &wm)
                                  : worker_send(s->w, p->at, &wm, WORKER_MSG_OWED);
    if (rc != 0)
        return rc;
    p->handle = true;
    p->slot = mr.slot;
    p->gen = mr.gen;
    p->moving = p->paused = true;
    ROOM_STAT_INC(s, move_requests);
    log_info("event=room_move room_hash=%016llx from=%u to=%u members=%u via=home",
             (unsigned long long)h, p->at, to, *members);
    return 0;
}

void place_on_arrived(struct room_shard *s, const struct arrived_msg *am)
{
    /* By the room's handle: it may have ended on its new owner already
     * (its DROP comes behind this) and, in another worker's table, been
     * unpublished there. */
    struct placement *p = *placement_by_handle(s, am->hash, am->tab, am->slot, am->gen);
    if (p == NULL || !p->moving || am->at >= s->sh->n_workers) {
        log_error("event=room_arrived_unexpected at=%u", am->at);
        return;
    }
    if (p->paused)
        p->routed = 0; /* all it routed to the old owner was applied there */
    p->at = am->at;
    p->moving = false;
    if (!p->paused)
        return;
    p->paused = false;
    struct parked_msg *q = p->later;
    p->later = NULL;
    p->later_tail = &p->later;
    place_replay(s, q);
}

void place_home_again(struct room_shard *s, struct room *r)
{
    struct placement **pp = placement_by_handle(s, r->hash, r->tab, r->slot, r->gen);
    struct placement *p = *pp;
    if (p == NULL || !p->paused) {
        log_error("event=room_home_unexpected");
        return;
    }
    *pp = p->next;
    struct parked_msg *q = p->later;
    parked_list_free(p->back); /* empty: nothing was routed that could bounce */
    free(p);
    ROOM_STAT_INC(s, rooms_home);
    place_replay(s, q);
}

/* Takes back a placement place_add_moved made (the MOVE could not go). */
void place_remove_moved(struct room_shard *s, struct room *r)
{
    struct placement **pp = placement_by_handle(s, r->hash, r->tab, r->slot, r->gen);
    struct placement *p = *pp;
    if (p == NULL)
        return;
    *pp = p->next;
    free(p);
}

void owner_on_join(struct room_shard *s, const struct join_req *jr)
{
    struct rmsg m = {.jr = jr};
    route_in(s, &m);
}

void owner_on_leave(struct room_shard *s, const struct leave_req *lr)
{
    struct rmsg m = {.lr = lr};
    route_in(s, &m);
}
