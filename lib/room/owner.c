/* Rooms, the owner side: the rooms whose id hashes to this worker. Only
 * this worker changes them: it applies the joins and leaves of one loop
 * turn as one batch; at the turn's end flush.c publishes the next
 * snapshot, answers the joiners (JOINED / JOIN_REJECTED) and fans out one
 * PARTICIPANT_EVENTS per turn.
 * Single-threaded code: everything here runs on the owner's worker. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "room/room_int.h"
#include "room/snapshot.h"

/* ------------------------------------------------------------ room table */

void owner_room_free(struct room *r)
{
    snapshot_free(r->snap);
    free(r->infos);
    free(r->changes);
    free(r->acks);
    free(r->events);
    for (unsigned w = 0; w < WORKER_MAX; w++)
        buf_unref(r->qrep[w]);
    buf_unref(r->drop);
    for (unsigned i = 0; i < MOVE_EVHIST; i++)
        buf_unref(r->evhist[i]);
    free(r);
}

/* Server-wide member gauges: participants, or trunk members (hidden and
 * remote members stand for other relays' participants: not counted as
 * this relay's load in /capacity and roost_server_participants). */
static void member_count(struct room_shard *s, uint16_t perms, int64_t d)
{
    _Atomic int64_t *g = perms & (ROOM_PERM_HIDDEN | ROOM_PERM_REMOTE) ? &s->sh->trunk_members
                                                                       : &s->sh->participants;
    atomic_fetch_add_explicit(g, d, memory_order_relaxed);
}

void owner_room_free_rcu(struct rcu_head *head)
{
    owner_room_free(caa_container_of(head, struct room, rcu));
}

void owner_free_rooms(struct room_shard *s)
{
    /* Every worker has left its loop: no reader holds a room or snapshot,
     * so the owner frees directly. */
    for (uint32_t b = 0; b <= s->bucket_mask; b++) {
        struct room *r = s->buckets[b];
        while (r != NULL) {
            struct room *next = r->hnext;
            struct room_table *t = &s->sh->tables[r->tab]; /* a moved room: its home's */
            rcu_assign_pointer(t->slots[r->slot], NULL);
            atomic_fetch_sub_explicit(&s->sh->rooms, 1, memory_order_relaxed);
            for (uint32_t i = 0; i < r->n_infos; i++)
                member_count(s, r->infos[i].perms, -1);
            atomic_fetch_sub_explicit(&s->sh->owned[s->id], r->n_infos, memory_order_relaxed);
            owner_room_free(r);
            r = next;
        }
        s->buckets[b] = NULL;
    }
    s->owned = NULL;
    /* Ended here, their DROP or UNALIAS never sent: unpublished from their
     * table and freed now (no reader is left). */
    place_owed_free(s);
    while (s->parked != NULL) {
        struct parked_join *p = s->parked;
        s->parked = p->next;
        free(p);
    }
    s->parked_tail = &s->parked;
}

static int room_create(struct room_shard *s, const uint8_t *id, size_t len, uint64_t h,
                       struct room **out)
{
    struct room_table *t = &s->sh->tables[s->id];
    int64_t n = atomic_fetch_add_explicit(&s->sh->rooms, 1, memory_order_relaxed);
    if (n >= (int64_t)s->sh->lim.max_rooms || t->n_free == 0) {
        atomic_fetch_sub_explicit(&s->sh->rooms, 1, memory_order_relaxed);
        return ROOST_EFULL;
    }
    struct room *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        atomic_fetch_sub_explicit(&s->sh->rooms, 1, memory_order_relaxed);
        return ROOST_ENOMEM;
    }
    r->slot = t->free_slots[--t->n_free];
    r->gen = ++t->gens[r->slot];
    r->id_len = (uint8_t)len;
    memcpy(r->id, id, len);
    r->hash = h;
    r->home = (uint16_t)s->id;
    r->tab = (uint16_t)s->id;
    atomic_init(&r->own, (uint16_t)s->id);
    r->from = (uint16_t)s->id;
    uint32_t b = (uint32_t)(h >> 32) & s->bucket_mask;
    r->hnext = s->buckets[b];
    s->buckets[b] = r;
    r->oprev = NULL;
    r->onext = s->owned;
    if (s->owned != NULL)
        s->owned->oprev = r;
    s->owned = r;
    /* Pairs with rcu_dereference in room_resolve: the room's fields are
     * visible before its pointer is. */
    rcu_assign_pointer(t->slots[r->slot], r);
    ROOM_STAT_INC(s, rooms_created);
    *out = r;
    return 0;
}

void owner_room_destroy(struct room_shard *s, struct room *r)
{
    struct room_table *t = &s->sh->tables[s->id];
    owner_room_unlist(s, r);
    bool moved = r->tab != s->id;
    if (!moved) {
        rcu_assign_pointer(t->slots[r->slot], NULL);
        t->free_slots[t->n_free++] = r->slot;
    }
    atomic_fetch_sub_explicit(&s->sh->rooms, 1, memory_order_relaxed);
    ROOM_STAT_INC(s, rooms_destroyed);
    if (s->ops->room_closed != NULL)
        s->ops->room_closed(r->id, r->id_len, s->arg);
    /* A placed room tells its home (DROP). A moved room published in its
     * home's table goes with its DROP: the home unpublishes it and frees
     * it (owner_room_unalias); one in another worker's table (placed
     * there, then moved) goes back there (UNALIAS) and its DROP names no
     * room. Owed: what the runtime refuses is kept and sent again. */
    r->owes_drop = r->home != s->id;
    r->owes_unalias = moved && r->tab != r->home;
    if (r->owes_drop || r->owes_unalias) {
        place_room_end(s, r);
        return;
    }
    /* Readers that resolved the room before it was unpublished may still
     * use it and its snapshot until their next quiescent state. */
    call_rcu(&r->rcu, owner_room_free_rcu);
}

static void room_mark_dirty(struct room_shard *s, struct room *r)
{
    if (r->dirty)
        return;
    r->dirty = true;
    r->dirty_next = s->dirty_head;
    s->dirty_head = r;
}

void owner_mark_dirty(struct room_shard *s, struct room *r)
{
    room_mark_dirty(s, r);
}

static int room_add_change(struct room *r, enum snapshot_op op, const struct room_info *in)
{
    int rc =
        room_grow((void **)&r->changes, &r->cap_changes, r->n_changes + 1, sizeof(*r->changes));
    if (rc != 0)
        return rc;
    struct snapshot_change *c = &r->changes[r->n_changes++];
    memset(c, 0, sizeof(*c));
    c->op = op;
    c->member.participant_id = in->pid;
    c->member.worker = in->worker;
    c->member.flags = in->perms;
    c->member.slot = in->slot;
    c->member.gen = in->gen;
    return 0;
}

int owner_add_change_add(struct room *r, const struct room_info *in)
{
    return room_add_change(r, SNAPSHOT_ADD, in);
}

static int room_add_event(struct room *r, uint8_t kind, uint32_t pid)
{
    int rc = room_grow((void **)&r->events, &r->cap_events, r->n_events + 1, sizeof(*r->events));
    if (rc != 0)
        return rc;
    r->events[r->n_events++] = (struct room_event){.kind = kind, .pid = pid};
    return 0;
}

static void send_replaced(struct room_shard *s, const struct room_info *old)
{
    struct replaced_msg rm = {.slot = old->slot, .gen = old->gen, .pid = old->pid};
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_REPLACED, &rm, sizeof(rm));
    room_send(s, old->worker, &wm);
}

/* Removes member i from the room's current list and queues the change. */
void owner_remove_info(struct room_shard *s, struct room *r, uint32_t i)
{
    struct room_info old = r->infos[i];
    r->infos[i] = r->infos[--r->n_infos];
    /* Not yet answered: the joiner never sees a JOINED for this room. */
    for (uint32_t k = 0; k < r->n_acks; k++) {
        if (r->acks[k].pid == old.pid) {
            r->acks[k] = r->acks[--r->n_acks];
            break;
        }
    }
    /* Allocation failures below leave the snapshot one turn stale at worst;
     * the next change of the room carries the removal (snapshot_build
     * folds by participant id). */
    if (room_add_change(r, SNAPSHOT_REMOVE, &old) != 0 ||
        (!(old.perms & ROOM_PERM_HIDDEN) && room_add_event(r, MSG_EV_LEAVE, old.pid) != 0))
        log_error("event=room_change_nomem pid=%u", old.pid);
    member_count(s, old.perms, -1);
    atomic_fetch_sub_explicit(&s->sh->owned[s->id], 1, memory_order_relaxed);
    ROOM_STAT_INC(s, leaves);
    room_mark_dirty(s, r);
}

/* Writes one framed message for *m into a fresh buffer region; returns
 * bytes written or a negative error. */
int owner_frame_into(struct buf **bp, const struct msg *m)
{
    int need = msg_encoded_len(m);
    if (need < 0)
        return need;
    struct buf *b = *bp;
    if (b == NULL || b->cap - b->len < (uint32_t)need) {
        uint32_t used = b ? b->len : 0;
        uint32_t cap = used + (uint32_t)need;
        if (b != NULL && cap < b->cap * 2)
            cap = b->cap * 2;
        struct buf *nb = buf_new(cap);
        if (nb == NULL)
            return ROOST_ENOMEM;
        if (b != NULL) {
            memcpy(nb->data, b->data, used);
            nb->len = used;
            buf_unref(b);
        }
        *bp = b = nb;
    }
    int n = msg_encode(m, b->data + b->len, b->cap - b->len);
    if (n < 0)
        return n;
    b->len += (uint32_t)n;
    return n;
}

void owner_send_ack(struct room_shard *s, const struct join_req *jr, uint32_t code,
                    const struct room *r, uint64_t version, struct buf *frames, bool follow)
{
    uint32_t flen = frames ? frames->len : 0;
    struct buf *b = buf_new((uint32_t)sizeof(struct ack_hdr) + flen);
    if (b == NULL) {
        buf_unref(frames);
        log_error("event=room_ack_lost pid=%u reason=nomem", jr->pid);
        return;
    }
    struct ack_hdr *a = (struct ack_hdr *)b->data;
    memset(a, 0, sizeof(*a));
    a->pid = jr->pid;
    a->slot = jr->slot;
    a->gen = jr->gen;
    a->join_seq = jr->join_seq;
    a->code = code;
    if (r != NULL) {
        a->room_slot = r->slot;
        a->room_gen = r->gen;
        a->moves = r->moves;
    }
    a->owner = (uint16_t)(r != NULL ? r->tab : s->id);
    a->at = (uint16_t)s->id;
    a->version = version;
    a->frames_len = flen;
    a->follow = follow;
    if (flen)
        memcpy(b->data + sizeof(*a), frames->data, flen);
    b->len = (uint32_t)sizeof(*a) + flen;
    buf_unref(frames);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_ACK, &b, sizeof(b));
    room_send(s, jr->worker, &wm);
}

static void send_reject(struct room_shard *s, const struct join_req *jr, uint32_t code,
                        const char *reason, uint32_t retry_ms)
{
    struct msg *m = s->scratch;
    memset(m, 0, sizeof(m->type) + sizeof(m->u.join_rejected));
    m->type = MSG_JOIN_REJECTED;
    m->u.join_rejected.code = code;
    m->u.join_rejected.retry_after_ms = retry_ms;
    m->u.join_rejected.reason.ptr = (const uint8_t *)reason;
    m->u.join_rejected.reason.len = strlen(reason);
    struct buf *frames = NULL;
    if (owner_frame_into(&frames, m) < 0) {
        buf_unref(frames);
        frames = NULL;
    }
    owner_send_ack(s, jr, code, NULL, 0, frames, false);
}

/* Placement, the placed owner's side (DROP, an unused PLACE): placed.c. */

void owner_reject(struct room_shard *s, const struct join_req *jr, uint32_t code,
                  const char *reason, uint32_t retry_ms)
{
    send_reject(s, jr, code, reason, retry_ms);
}

/* ------------------------------------------------- gate (cluster, issue 18) */

static bool parked_for(const struct room_shard *s, const uint8_t *room, size_t len)
{
    for (const struct parked_join *p = s->parked; p != NULL; p = p->next)
        if (p->jr.room_len == len && memcmp(p->jr.room, room, len) == 0)
            return true;
    return false;
}

/* Whether jr may go on now; otherwise it was parked or rejected. */
static bool gate_pass(struct room_shard *s, const struct join_req *jr)
{
    const char *reason = "";
    uint32_t retry_ms = 0;
    uint32_t code = ROOM_GATE_WAIT;
    if (!parked_for(s, jr->room, jr->room_len))
        code = s->ops->gate(jr->room, jr->room_len, &reason, &retry_ms, s->arg);
    if (code == ROOM_GATE_OPEN)
        return true;
    if (code != ROOM_GATE_WAIT) {
        send_reject(s, jr, code, reason, retry_ms);
        return false;
    }
    struct parked_join *p = malloc(sizeof(*p));
    if (p == NULL) {
        send_reject(s, jr, PROTO_ERR_INTERNAL, "out of memory", 1000);
        return false;
    }
    p->next = NULL;
    p->jr = *jr;
    if (s->parked == NULL)
        s->parked_tail = &s->parked;
    *s->parked_tail = p;
    s->parked_tail = &p->next;
    return false;
}

/* A member left before its parked join was applied. */
static void gate_drop(struct room_shard *s, const struct leave_req *lr)
{
    for (struct parked_join **pp = &s->parked; *pp != NULL; pp = &(*pp)->next) {
        struct parked_join *p = *pp;
        if (p->jr.pid == lr->pid && p->jr.room_len == lr->room_len &&
            memcmp(p->jr.room, lr->room, lr->room_len) == 0) {
            *pp = p->next;
            if (s->parked_tail == &p->next)
                s->parked_tail = pp;
            free(p);
            return;
        }
    }
}

static void owner_join(struct room_shard *s, const struct join_req *jr, bool gated);

bool room_shard_gate_open(struct room_shard *s, const uint8_t *room, size_t len, uint32_t code,
                          const char *reason, uint32_t retry_ms)
{
    /* Taken off the list first: owner_join may park nothing now (gated),
     * but a reject must not find the list half walked. */
    struct parked_join *mine = NULL, **mt = &mine;
    for (struct parked_join **pp = &s->parked; *pp != NULL;) {
        struct parked_join *p = *pp;
        if (p->jr.room_len == len && memcmp(p->jr.room, room, len) == 0) {
            *pp = p->next;
            p->next = NULL;
            *mt = p;
            mt = &p->next;
        } else {
            pp = &p->next;
        }
    }
    s->parked_tail = &s->parked;
    while (*s->parked_tail != NULL)
        s->parked_tail = &(*s->parked_tail)->next;
    while (mine != NULL) {
        struct parked_join *p = mine;
        mine = p->next;
        if (code == ROOM_GATE_OPEN)
            owner_join(s, &p->jr, true);
        else
            send_reject(s, &p->jr, code, reason != NULL ? reason : "", retry_ms);
        free(p);
    }
    uint64_t h;
    return owner_room_find(s, room, len, &h) != NULL;
}

void owner_apply_join(struct room_shard *s, const struct join_req *jr)
{
    owner_join(s, jr, false);
}

static void owner_join(struct room_shard *s, const struct join_req *jr, bool gated)
{
    if (jr->rebind) {
        owner_rebind(s, jr); /* move.c */
        return;
    }
    uint64_t h;
    struct room *r = owner_room_find(s, jr->room, jr->room_len, &h);
    /* Room-affine placement: a small room's joiner from another worker is
     * sent here with its connection (ROOM_JOIN_MOVE), so that the room's
     * fan-out stays on this core; it joins again from here. */
    uint32_t amax = s->sh->lim.affinity_max_members;
    if (amax > 0 && jr->movable && jr->worker != s->id &&
        (r != NULL ? r->n_infos : 0) + 1 <= amax) {
        ROOM_STAT_INC(s, join_moves);
        owner_send_ack(s, jr, ROOM_JOIN_MOVE, NULL, 0, NULL, false);
        if (r == NULL)
            place_unused(s, jr);
        return;
    }
    /* Trunk members (hidden, remote) are never gated: the trunk that
     * makes them already follows the room's home (docs/CLUSTER.md §2). */
    if (r == NULL && !gated && s->ops->gate != NULL &&
        !(jr->perms & (ROOM_PERM_HIDDEN | ROOM_PERM_REMOTE)) && !gate_pass(s, jr)) {
        place_unused(s, jr); /* the bound is off in a cluster (relay.c): no PLACE here */
        return;
    }
    if (r != NULL) {
        /* Count only the members not being replaced. */
        bool dup = false;
        for (uint32_t i = 0; i < r->n_infos && jr->ident_len; i++)
            if (r->infos[i].ident_len == jr->ident_len &&
                memcmp(r->infos[i].identity, jr->identity, jr->ident_len) == 0)
                dup = true;
        if (!dup && r->n_infos >= s->sh->lim.max_members) {
            ROOM_STAT_INC(s, rejects_room_full);
            send_reject(s, jr, PROTO_ERR_ROOM_FULL, "room is full", 5000);
            return;
        }
    } else {
        /* A placed room holds its DROP from the start: its end cannot
         * fail to allocate it (the home would wait for it forever). */
        struct buf *drop = NULL;
        int rc = 0;
        if (jr->route == ROUTE_PLACE && (drop = place_drop_buf(s, jr)) == NULL)
            rc = ROOST_ENOMEM;
        if (rc == 0)
            rc = room_create(s, jr->room, jr->room_len, h, &r);
        if (rc == 0 && jr->route == ROUTE_PLACE) {
            r->home = (uint16_t)room_owner_of(s->sh, jr->room, jr->room_len);
            r->routed_in = 1;
            r->drop = drop;
            drop = NULL;
        }
        if (rc != 0) {
            buf_unref(drop);
            ROOM_STAT_INC(s, rejects_server_full);
            send_reject(s, jr, rc == ROOST_EFULL ? PROTO_ERR_SERVER_FULL : PROTO_ERR_INTERNAL,
                        rc == ROOST_EFULL ? "server has no room for another room" : "out of memory",
                        5000);
            place_unused(s, jr); /* last: the DROP may reuse jr's buffer */
            return;
        }
    }

    /* A remote participant re-announced (trunk re-established on another
     * worker) before its old member's LEAVE arrived: the newer replaces it
     * (LEAVE, then JOIN); the old LEAVE then matches nothing. */
    for (uint32_t i = 0; i < r->n_infos && (jr->perms & ROOM_PERM_REMOTE); i++) {
        if (r->infos[i].pid == jr->pid && (r->infos[i].perms & ROOM_PERM_REMOTE)) {
            owner_remove_info(s, r, i);
            break;
        }
    }
    /* Duplicate identity: the newer join replaces the older connection. */
    for (uint32_t i = 0; i < r->n_infos && jr->ident_len; i++) {
        struct room_info *o = &r->infos[i];
        if (o->ident_len == jr->ident_len &&
            memcmp(o->identity, jr->identity, jr->ident_len) == 0) {
            send_replaced(s, o);
            ROOM_STAT_INC(s, replaced);
            owner_remove_info(s, r, i);
            break;
        }
    }

    struct room_info in = {
        .pid = jr->pid,
        .worker = jr->worker,
        .perms = (uint16_t)(jr->perms & (PERM_ALL | ROOM_PERM_HIDDEN | ROOM_PERM_REMOTE)),
        .slot = jr->slot,
        .gen = jr->gen,
        .join_seq = jr->join_seq,
        .ident_len = jr->ident_len,
        .name_len = jr->name_len,
    };
    memcpy(in.identity, jr->identity, jr->ident_len);
    memcpy(in.name, jr->name, jr->name_len);
    if (room_grow((void **)&r->infos, &r->cap_infos, r->n_infos + 1, sizeof(*r->infos)) != 0 ||
        room_grow((void **)&r->acks, &r->cap_acks, r->n_acks + 1, sizeof(*r->acks)) != 0 ||
        room_add_change(r, SNAPSHOT_ADD, &in) != 0 || room_add_event(r, MSG_EV_JOIN, in.pid) != 0) {
        send_reject(s, jr, PROTO_ERR_INTERNAL, "out of memory", 1000);
        if (r->n_infos == 0 && !r->dirty)
            owner_room_destroy(s, r);
        return;
    }
    r->infos[r->n_infos++] = in;
    r->acks[r->n_acks++] = in;
    member_count(s, in.perms, 1);
    atomic_fetch_add_explicit(&s->sh->owned[s->id], 1, memory_order_relaxed);
    ROOM_STAT_INC(s, joins);
    room_mark_dirty(s, r);
}

void owner_apply_leave(struct room_shard *s, const struct leave_req *lr)
{
    uint64_t h;
    struct room *r = owner_room_find(s, lr->room, lr->room_len, &h);
    if (r == NULL) {
        if (s->parked != NULL)
            gate_drop(s, lr);
        return; /* already replaced and the room went away (or parked) */
    }
    for (uint32_t i = 0; i < r->n_infos; i++) {
        const struct room_info *in = &r->infos[i];
        if (in->pid != lr->pid)
            continue;
        if ((in->perms & ROOM_PERM_REMOTE) &&
            (in->worker != lr->worker || in->slot != lr->slot || in->gen != lr->gen))
            continue; /* an older remote member's LEAVE: it was replaced */
        owner_remove_info(s, r, i);
        return;
    }
}
