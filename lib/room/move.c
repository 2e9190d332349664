/* Rooms, live room migration (issue 14; docs/HACKING.md "Moving a live
 * room"): a room's state goes from its owner to another worker in one ring
 * message, and its members' connections may follow.
 *
 * The room object itself moves (ROOM_MSG_MOVE carries the struct room *:
 * ownership goes with the message, as QUIC_MSG_ADOPT carries a
 * connection). It stays published in its old owner's slot table under the
 * same handle (room.tab, slot, gen) for the rest of its life, so every
 * member's handle, every FANOUT and EVENTS in flight and every keyframe
 * cache tag stay valid: fan-out never pauses and no frame is delivered
 * twice (there is one snapshot). Only the room's owner-only state changes
 * hands: its members, their permissions and identities, the batch of this
 * turn, the quality reports. The room's home (the first move starts
 * there) keeps a placement (place.c) naming the owner, so every later
 * JOIN and LEAVE is routed there in arrival order, and the room's DROP at
 * its end carries the room back to the home's table to be unpublished and
 * freed after a grace period.
 *
 * Moving again, or back home: the home asks the room's owner (MOVE_REQ,
 * move_on_request) and holds what it would route there until the room
 * ARRIVED on its new owner or came home (place.c). One move at a time per
 * room; each move the room makes is counted (room.moves) and moves its
 * members as the first did.
 *
 * Members: the new owner tells each worker with members (REHOME) that the
 * room is owned there now; a worker whose members should follow (the old
 * owner's, or every worker's when the room has at most
 * affinity_max_members members) asks each joined movable member's
 * endpoint to move (ops->move). The endpoint hands its connection over at
 * the end of the loop turn; the old worker frees the member without a
 * LEAVE (room_member_detach), the new worker makes it again with the same
 * participant id, joined at once (room_member_rebind), and sends a quiet
 * re-bind JOIN that replaces the member's handle in the room (one
 * snapshot change, no JOINED, no presence event; the presence changes it
 * missed in transit come with the answer, from the moved room's history). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stat.h"
#include "core/worker.h"
#include "room/kfcache.h"
#include "room/room_int.h"
#include "room/snapshot.h"

_Static_assert(sizeof(((struct room_keep *)0)->room_id) == ROOM_ID_MAX, "keep holds a room id");

/* ------------------------------------------------------------ owner side */

void owner_room_unlist(struct room_shard *s, struct room *r)
{
    uint32_t b = (uint32_t)(r->hash >> 32) & s->bucket_mask;
    for (struct room **pp = &s->buckets[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == r) {
            *pp = r->hnext;
            break;
        }
    }
    if (r->oprev != NULL)
        r->oprev->onext = r->onext;
    else
        s->owned = r->onext;
    if (r->onext != NULL)
        r->onext->oprev = r->oprev;
}

void owner_room_unlink(struct room_shard *s, struct room *r, bool *was_dirty)
{
    owner_room_unlist(s, r);
    r->hnext = r->onext = r->oprev = NULL;
    *was_dirty = r->dirty;
    if (r->dirty) {
        for (struct room **pp = &s->dirty_head; *pp; pp = &(*pp)->dirty_next) {
            if (*pp == r) {
                *pp = r->dirty_next;
                break;
            }
        }
        r->dirty = false;
        r->dirty_next = NULL;
    }
    atomic_fetch_sub_explicit(&s->sh->owned[s->id], r->n_infos, memory_order_relaxed);
}

void owner_room_link(struct room_shard *s, struct room *r, bool dirty)
{
    uint32_t b = (uint32_t)(r->hash >> 32) & s->bucket_mask;
    r->hnext = s->buckets[b];
    s->buckets[b] = r;
    r->oprev = NULL;
    r->onext = s->owned;
    if (s->owned != NULL)
        s->owned->oprev = r;
    s->owned = r;
    atomic_fetch_add_explicit(&s->sh->owned[s->id], r->n_infos, memory_order_relaxed);
    if (dirty)
        owner_mark_dirty(s, r);
}

/* Hands r (owned here, off every list but still named in them) to `to`:
 * MOVE carries the room itself. Returns 0 (r is `to`'s now: not touched
 * here again) or the send's error (r is still this worker's, unlinked). */
static int move_send(struct room_shard *s, struct room *r, unsigned to)
{
    r->from = (uint16_t)s->id;
    r->moves++;
    r->routed_in = 0; /* the home routes nothing here meanwhile, or counts anew */
    /* Before the MOVE: a report the table worker forwards by it reaches
     * `to` after r was this worker's last (quality.c reads it with
     * acquire; nothing here writes r after it). */
    atomic_store_explicit(&r->own, (uint16_t)to, memory_order_release);
    struct worker_msg wm;
    struct room *rp = r;
    memset(&wm, 0, sizeof(wm));
    wm.type = ROOM_MSG_MOVE;
    memcpy(wm.u.bytes, &rp, sizeof(rp));
    /* Control, never dropped: a full ring spills (OWED: not refused for
     * the spill bound either; only a failed allocation refuses it). */
    int rc = s->send_hook != NULL ? s->send_hook(s->send_hook_arg, to, &wm)
                                  : worker_send(s->w, to, &wm, WORKER_MSG_OWED);
    if (rc != 0) {
        r->moves--;
        atomic_store_explicit(&r->own, (uint16_t)s->id, memory_order_relaxed);
    }
    return rc;
}

static void move_log(struct room_shard *s, uint64_t hash, unsigned to, uint32_t n)
{
    uint32_t amax = s->sh->lim.affinity_max_members;
    ROOM_STAT_INC(s, rooms_moved_out);
    stat_add(s->st, STAT_IDX(struct room_stats, members_moved_out), n);
    log_info("event=room_move room_hash=%016llx from=%u to=%u members=%u conns=%s",
             (unsigned long long)hash, s->id, to, n,
             amax > 0 && n <= amax ? "all" : "owner_worker");
}

int room_shard_move(struct room_shard *s, const uint8_t *room, size_t len, unsigned to,
                    uint32_t *members)
{
    *members = 0;
    if (to >= s->sh->n_workers)
        return ROOST_EINVAL;
    if (len == 0 || len > ROOM_ID_MAX)
        return ROOST_ENOENT;
    uint64_t h;
    struct room *r = owner_room_find(s, room, len, &h);
    if (r == NULL) /* moved away before (or none): its owner is asked */
        return place_move_on(s, room, len, to, members);
    *members = r->n_infos;
    if (to == s->id)
        return ROOST_EEXIST;
    /* Placed here from its home (owner load bound, pack): its JOIN and
     * LEAVE pass the home's placement, which only the home may change:
     * the move is asked of the home. */
    if (r->home != s->id)
        return ROOST_EAGAIN;
    /* Its DROP, made now: its end never fails to allocate it. */
    struct buf *drop = r->drop != NULL ? NULL : buf_new(sizeof(struct drop_msg));
    if (r->drop == NULL && drop == NULL)
        return ROOST_ENOMEM;
    int rc = place_add_moved(s, r, to);
    if (rc != 0) {
        buf_unref(drop);
        return rc == ROOST_EEXIST ? ROOST_EAGAIN : rc;
    }
    bool dirty;
    owner_room_unlink(s, r, &dirty);
    uint32_t n = r->n_infos; /* r is the new owner's once the MOVE went */
    if (drop != NULL)
        r->drop = drop;
    rc = move_send(s, r, to);
    if (rc != 0) {
        if (drop != NULL) {
            r->drop = NULL;
            buf_unref(drop);
        }
        place_remove_moved(s, r);
        owner_room_link(s, r, dirty);
        return rc;
    }
    move_log(s, h, to, n);
    return 0;
}

void move_on_request(struct room_shard *s, const struct move_req_msg *mr)
{
    /* By its handle: the room may have ended here (its DROP is on its way
     * to the home, which unpauses) and the handle been reused. */
    struct room *r = s->buckets[(uint32_t)(mr->hash >> 32) & s->bucket_mask];
    while (r != NULL &&
           !(r->hash == mr->hash && r->tab == mr->tab && r->slot == mr->slot && r->gen == mr->gen))
        r = r->hnext;
    if (r == NULL) {
        log_info("event=room_move_req_gone room_hash=%016llx", (unsigned long long)mr->hash);
        return;
    }
    bool dirty;
    owner_room_unlink(s, r, &dirty);
    uint32_t n = r->n_infos;
    uint64_t hash = r->hash;
    int rc = move_send(s, r, mr->to);
    if (rc == 0) {
        move_log(s, hash, mr->to, n);
        return;
    }
    /* Stays here: the home is told (ARRIVED at this worker) and unpauses. */
    log_error("event=room_move_failed room_hash=%016llx to=%u err=\"%s\"", (unsigned long long)hash,
              mr->to, roost_strerror(rc));
    owner_room_link(s, r, dirty);
    struct arrived_msg am = {
        .hash = r->hash, .slot = r->slot, .gen = r->gen, .tab = r->tab, .at = (uint16_t)s->id};
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_ARRIVED, &am, sizeof(am));
    room_send_cls(s, r->home, &wm, WORKER_MSG_OWED);
}

/* Whose members follow r to this worker, its new owner: those on the
 * worker it left, or on any worker (ROOM_MOVE_ANY) for a small room. */
static uint16_t rehome_from(const struct room_shard *s, const struct room *r)
{
    uint32_t amax = s->sh->lim.affinity_max_members;
    return amax > 0 && r->n_infos <= amax ? ROOM_MOVE_ANY : r->from;
}

/* The members' workers learn the new owner; those whose members follow
 * the room move them (move_on_rehome). */
static void send_rehome(struct room_shard *s, struct room *r)
{
    struct rehome_msg rm = {
        .tab = r->tab,
        .room_slot = r->slot,
        .room_gen = r->gen,
        .at = (uint16_t)s->id,
        .from = rehome_from(s, r),
        .moves = r->moves,
    };
    /* The owner reads its own room's snapshot: no read section needed. */
    const struct snapshot *snap = r->snap;
    unsigned ng = snapshot_group_count(snap);
    for (unsigned g = 0; g < ng; g++) {
        unsigned wid;
        uint32_t cnt;
        snapshot_group(snap, g, &wid, &cnt);
        struct worker_msg wm;
        room_msg_put(&wm, ROOM_MSG_REHOME, &rm, sizeof(rm));
        room_send(s, wid, &wm);
    }
}

void move_on_arrive(struct room_shard *s, struct room *r)
{
    /* The batch the old owner had not flushed (joins, leaves, answers,
     * events) is flushed here at this turn's end. */
    bool dirty = r->n_changes > 0 || r->n_acks > 0 || r->n_events > 0;
    /* Joiners in that batch are in no published snapshot: the REHOME
     * below may not reach their worker or find them there. Their answer
     * asks them to follow as the REHOME would (flush.c room_flush_one). */
    uint16_t from = rehome_from(s, r);
    for (uint32_t k = 0; k < r->n_acks; k++) {
        struct room_info *a = &r->acks[k];
        if (!a->quiet && (from == ROOM_MOVE_ANY || a->worker == from))
            a->follow = true;
    }
    owner_room_link(s, r, dirty);
    ROOM_STAT_INC(s, rooms_moved_in);
    stat_add(s->st, STAT_IDX(struct room_stats, members_moved_in), r->n_infos);
    send_rehome(s, r);
    if (r->home == s->id) {
        /* Back home: no DROP will be owed; what waited for the move is
         * applied here now, behind the room's own batch. */
        buf_unref(r->drop);
        r->drop = NULL;
        place_home_again(s, r);
        return;
    }
    /* The home routes here from now on, behind this (ring order): the room
     * is linked before anything it routes arrives. */
    struct arrived_msg am = {
        .hash = r->hash, .slot = r->slot, .gen = r->gen, .tab = r->tab, .at = (uint16_t)s->id};
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_ARRIVED, &am, sizeof(am));
    room_send_cls(s, r->home, &wm, WORKER_MSG_OWED);
}

void owner_rebind(struct room_shard *s, const struct join_req *jr)
{
    uint64_t h;
    struct room *r = owner_room_find(s, jr->room, jr->room_len, &h);
    struct room_info *in = NULL;
    for (uint32_t i = 0; r != NULL && i < r->n_infos && in == NULL; i++) {
        struct room_info *c = &r->infos[i];
        if (c->pid == jr->pid && c->worker == jr->old_worker && c->slot == jr->old_slot &&
            c->gen == jr->old_gen)
            in = c;
    }
    if (in == NULL ||
        room_grow((void **)&r->acks, &r->cap_acks, r->n_acks + 1, sizeof(*r->acks)) != 0) {
        /* Replaced (same identity) or removed while its connection moved:
         * the REPLACED went to its old handle; say it again. Out of
         * memory: it goes (GONE closes it), with a LEAVE to the others. */
        if (in != NULL) {
            log_error("event=room_rebind_failed pid=%u reason=nomem", jr->pid);
            owner_remove_info(s, r, (uint32_t)(in - r->infos));
        }
        ROOM_STAT_INC(s, rebinds_gone);
        owner_send_ack(s, jr, ROOM_REBIND_GONE, NULL, 0, NULL, false);
        return;
    }
    struct room_info old = *in;
    in->worker = jr->worker;
    in->slot = jr->slot;
    in->gen = jr->gen;
    in->join_seq = jr->join_seq;
    if (owner_add_change_add(r, in) != 0) {
        *in = old;
        log_error("event=room_rebind_failed pid=%u reason=nomem", jr->pid);
        owner_remove_info(s, r, (uint32_t)(in - r->infos));
        ROOM_STAT_INC(s, rebinds_gone);
        owner_send_ack(s, jr, ROOM_REBIND_GONE, NULL, 0, NULL, false);
        return;
    }
    struct room_info *a = &r->acks[r->n_acks++];
    *a = *in;
    a->quiet = true;
    a->from = jr->old_worker;
    a->seen = jr->seen_version;
    ROOM_STAT_INC(s, rebinds);
    owner_mark_dirty(s, r);
}

void move_rebound_log(struct room *r, uint64_t version)
{
    for (uint32_t k = 0; k < r->n_acks; k++) {
        const struct room_info *a = &r->acks[k];
        if (!a->quiet)
            continue;
        uint32_t i = r->rb_next++ % MOVE_REBOUND;
        uint64_t who = (uint64_t)a->pid << 32 | (uint64_t)a->from << 1 |
                       ((a->perms & PERM_SUBSCRIBE) ? 1u : 0u);
        /* Ordered before the snapshot's publication by its
         * rcu_assign_pointer (a release). */
        atomic_store_explicit(&r->rb_v[i], 0, memory_order_relaxed);
        atomic_store_explicit(&r->rb_who[i], who, memory_order_relaxed);
        atomic_store_explicit(&r->rb_v[i], version, memory_order_relaxed);
    }
}

uint64_t move_rebound_version(const struct room *r, uint32_t pid)
{
    /* A member that moved more than once has an entry per re-bind: its
     * latest (versions only grow) says where it is. */
    uint64_t best = 0;
    for (uint32_t i = 0; i < MOVE_REBOUND; i++) {
        uint64_t v = atomic_load_explicit(&r->rb_v[i], memory_order_relaxed);
        uint64_t who = atomic_load_explicit(&r->rb_who[i], memory_order_relaxed);
        if (v > best && (uint32_t)(who >> 32) == pid)
            best = v;
    }
    return best;
}

void move_count_lost(struct room_shard *s, const struct room *r, uint32_t sender, uint64_t sent,
                     uint64_t now)
{
    for (uint32_t i = 0; i < MOVE_REBOUND; i++) {
        uint64_t v = atomic_load_explicit(&r->rb_v[i], memory_order_relaxed);
        uint64_t who = atomic_load_explicit(&r->rb_who[i], memory_order_relaxed);
        /* On this worker in `sent` (before its re-bind), gone in `now`. */
        if (v > sent && v <= now && (uint16_t)((who >> 1) & 0xffffu) == s->id && (who & 1u) &&
            (uint32_t)(who >> 32) != sender)
            ROOM_STAT_INC(s, media_lost_moved);
    }
}

void owner_room_unalias(struct room_shard *s, struct room *r)
{
    struct room_table *t = &s->sh->tables[s->id];
    /* Pairs with rcu_dereference in room_resolve. */
    rcu_assign_pointer(t->slots[r->slot], NULL);
    t->free_slots[t->n_free++] = r->slot;
    call_rcu(&r->rcu, owner_room_free_rcu); /* readers may hold it a grace period */
}

void move_discard_room(struct room *r)
{
    if (r != NULL)
        owner_room_free(r); /* shutdown: no reader is left */
}

void move_events_keep(struct room *r, uint64_t version, struct buf *frames)
{
    uint32_t i = r->evhist_next++ % MOVE_EVHIST;
    buf_unref(r->evhist[i]);
    r->evhist[i] = buf_ref(frames);
    r->evhist_v[i] = version;
}

struct buf *move_events_since(const struct room *r, uint64_t seen)
{
    uint32_t len = 0, first = r->evhist_next > MOVE_EVHIST ? r->evhist_next - MOVE_EVHIST : 0;
    if (first > 0 && r->evhist_v[first % MOVE_EVHIST] > seen) /* older ones were dropped */
        log_warn("event=room_rebind_events_short seen=%llu", (unsigned long long)seen);
    for (uint32_t k = first; k < r->evhist_next; k++)
        if (r->evhist_v[k % MOVE_EVHIST] > seen)
            len += r->evhist[k % MOVE_EVHIST]->len;
    if (len == 0)
        return NULL;
    struct buf *b = buf_new(len);
    if (b == NULL) {
        log_error("event=room_rebind_events_lost reason=nomem");
        return NULL;
    }
    for (uint32_t k = first; k < r->evhist_next; k++) {
        const struct buf *e = r->evhist[k % MOVE_EVHIST];
        if (r->evhist_v[k % MOVE_EVHIST] > seen) {
            memcpy(b->data + b->len, e->data, e->len);
            b->len += e->len;
        }
    }
    return b;
}

/* ----------------------------------------------------------- member side */

/* A REHOME for a member whose JOIN is in r's snapshot but not answered
 * yet: the answer may come from the room's previous owner, behind this
 * (another worker's ring). Kept for member_on_ack, which applies it when
 * the answer is of this room and of an earlier move. A member joining
 * another room id (its entry here is from before a LEAVE) is not
 * concerned. Reader side: r's id never changes. */
static void rehome_joining(struct room_member *m, const struct room *r, const struct rehome_msg *rm,
                           bool follow)
{
    if (m->room_len != r->id_len || memcmp(m->room_id, r->id, r->id_len) != 0)
        return;
    bool same = m->rehomed && m->rh_tab == rm->tab && m->rh_slot == rm->room_slot &&
                m->rh_gen == rm->room_gen;
    if (same && rm->moves < m->rehome_moves)
        return; /* an earlier move's, after a later one's */
    m->rehomed = true;
    m->rh_tab = (uint16_t)rm->tab;
    m->rh_slot = rm->room_slot;
    m->rh_gen = rm->room_gen;
    m->rh_at = rm->at;
    m->rehome_moves = rm->moves;
    m->follow = follow && m->movable;
}

void move_on_rehome(struct room_shard *s, const struct rehome_msg *rm)
{
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, rm->tab, rm->room_slot, rm->room_gen);
    uint32_t n = 0;
    const struct snapshot_member *e =
        r != NULL ? snapshot_worker_members(rcu_dereference(r->snap), s->id, &n) : NULL;
    bool follow = (rm->from == ROOM_MOVE_ANY || rm->from == s->id) && rm->at != s->id;
    for (uint32_t i = 0; i < n; i++) {
        struct room_member *m = room_member_resolve(s, e[i].slot, e[i].gen);
        if (m != NULL && m->state == MEMBER_JOINING && !m->rebinding) {
            rehome_joining(m, r, rm, follow);
            continue;
        }
        if (m == NULL || m->state != MEMBER_JOINED || m->owner != rm->tab ||
            m->room_slot != rm->room_slot || m->room_gen != rm->room_gen)
            continue;
        /* The room moved on since that REHOME was sent (the newer one
         * came first, from another worker): stale. */
        if (rm->moves < m->rehome_moves)
            continue;
        m->rehome_moves = rm->moves;
        m->at = rm->at;
        if (m->rebinding) {
            m->rehomed = true;
            m->follow = follow && m->movable; /* once its re-bind is answered */
        } else if (follow && m->movable && s->ops->move != NULL) {
            ROOM_STAT_INC(s, member_moves);
            s->ops->move(m->ep, rm->at, s->arg); /* records the wish: turn end */
        }
    }
    rcu_read_unlock();
}

void room_member_detach(struct room_member *m, struct room_keep *keep)
{
    memset(keep, 0, sizeof(*keep));
    if (m == NULL)
        return;
    keep->pid = m->pid;
    if (m->state == MEMBER_JOINED) {
        keep->valid = true;
        keep->perms = m->perms;
        keep->room_len = m->room_len;
        memcpy(keep->room_id, m->room_id, m->room_len);
        keep->tab = m->owner;
        keep->at = m->at;
        keep->room_slot = m->room_slot;
        keep->room_gen = m->room_gen;
        keep->old_worker = (uint16_t)m->s->id;
        keep->old_slot = m->slot;
        keep->old_gen = m->gen;
        keep->joined_version = m->joined_version;
        keep->events_seen = m->events_seen;
        keep->rehome_moves = m->rehome_moves;
        m->state = MEMBER_IDLE; /* it stays in the room: no LEAVE */
        if (m->kc != NULL) {
            /* Its keyframes go with it (member_cache_adopt on the new
             * worker): a joiner after the move need not wait for one. */
            kfcache_detach(m->kc);
            keep->kc = m->kc;
            m->kc = NULL;
            stat_dec(m->s->st, STAT_IDX(struct room_stats, kf_caches));
        }
    }
    room_member_del(m);
}

/* A re-bind that could not be sent: the member's entry (its old handle,
 * stale now) leaves the room as a vanished member's would, by the same
 * path (the home, then the owner). Best effort: a LEAVE that cannot be
 * sent is logged (the entry goes with the room, as before). */
static void rebind_failed_leave(struct room_shard *s, struct room_keep *keep)
{
    ROOM_STAT_INC(s, rebinds_failed);
    room_keep_leave(s, keep);
}

void room_keep_release(struct room_keep *keep)
{
    kfcache_del(keep->kc);
    keep->kc = NULL;
}

void room_keep_leave(struct room_shard *s, struct room_keep *keep)
{
    room_keep_release(keep);
    if (!keep->valid || keep->room_len == 0 || keep->room_len > ROOM_ID_MAX)
        return;
    struct buf *b = buf_new(sizeof(struct leave_req));
    if (b == NULL) {
        log_error("event=room_leave_lost pid=%u reason=nomem", keep->pid);
        return;
    }
    struct leave_req *lr = (struct leave_req *)b->data;
    memset(lr, 0, sizeof(*lr));
    lr->pid = keep->pid;
    lr->slot = keep->old_slot;
    lr->gen = keep->old_gen;
    lr->worker = keep->old_worker;
    lr->room_len = keep->room_len;
    memcpy(lr->room, keep->room_id, keep->room_len);
    b->len = sizeof(*lr);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_LEAVE, &b, sizeof(b));
    room_send_cls(s, room_owner_of(s->sh, keep->room_id, keep->room_len), &wm, WORKER_MSG_OWED);
}

int room_member_rebind(struct room_shard *s, void *ep, struct room_keep *keep,
                       struct room_member **out)
{
    *out = NULL;
    if (!keep->valid || keep->room_len == 0 || keep->room_len > ROOM_ID_MAX) {
        room_keep_release(keep);
        return ROOST_EINVAL;
    }
    struct room_member *m;
    int rc = room_member_new_pid(s, ep, keep->pid, &m);
    if (rc != 0) {
        rebind_failed_leave(s, keep);
        return rc;
    }
    *out = m;
    m->movable = true;
    struct buf *b = buf_new(sizeof(struct join_req));
    if (b == NULL) {
        rebind_failed_leave(s, keep);
        return ROOST_ENOMEM;
    }
    struct join_req *jr = (struct join_req *)b->data;
    memset(jr, 0, sizeof(*jr));
    jr->pid = m->pid;
    jr->slot = m->slot;
    jr->gen = m->gen;
    jr->join_seq = ++m->join_seq;
    jr->worker = (uint16_t)s->id;
    jr->perms = keep->perms;
    jr->room_len = keep->room_len;
    memcpy(jr->room, keep->room_id, keep->room_len);
    jr->rebind = 1;
    jr->old_worker = keep->old_worker;
    jr->old_slot = keep->old_slot;
    jr->old_gen = keep->old_gen;
    jr->seen_version = keep->events_seen;
    b->len = sizeof(*jr);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_JOIN, &b, sizeof(b));
    /* Through the room's home, as every JOIN: a LEAVE of this member sent
     * later takes the same path behind it. OWED: the member is in the
     * room already, this only fixes its handle. */
    rc =
        room_send_cls(s, room_owner_of(s->sh, keep->room_id, keep->room_len), &wm, WORKER_MSG_OWED);
    if (rc != 0) {
        rebind_failed_leave(s, keep);
        return rc;
    }
    m->state = MEMBER_JOINED; /* it publishes at once; deliveries follow the re-bind */
    m->rebinding = true;
    m->perms = keep->perms;
    m->owner = keep->tab;
    m->at = keep->at;
    m->room_slot = keep->room_slot;
    m->room_gen = keep->room_gen;
    m->joined_version = keep->joined_version;
    m->events_seen = keep->events_seen;
    m->rehome_moves = keep->rehome_moves;
    m->room_len = keep->room_len;
    memcpy(m->room_id, keep->room_id, keep->room_len);
    member_cache_adopt(s, m, keep->kc); /* with m's handle and room in its tag */
    keep->kc = NULL;
    return 0;
}
