/* Rooms, the member side: the participants whose endpoint lives on this
 * worker, their handles, their join/leave requests and the owner's answers,
 * presence events, REPLACED, keyframe requests, and the keyframe caches
 * (publishing a sender's view, replaying the others' to a joiner). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/worker.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "room/kfcache.h"
#include "room/room_int.h"
#include "room/snapshot.h"

/* --------------------------------------------------------- member handles */

/* Participant ids: pid = k * n_workers + id + 1 for this worker's k =
 * pid_seq, 0, 1, 2, ...: never 0, and the residue says which worker made it,
 * so workers never collide. Ids are unique for the relay's life until k
 * passes the last value whose pid fits a u32 (2^32 / n_workers ids per
 * worker). Then k starts over at 0, skipping the k of every member alive at
 * that moment (pid_skip, sorted): members made after the wrap have k that
 * the new round has not reached yet, so a live id is never issued twice
 * (PROTOCOL.md §4: unique while the participant lives). The skip list is
 * rebuilt at each wrap: O(members) once per 2^32 / n_workers joins.
 * With a cluster prefix (room_limits.pid_prefix, issue 18; PROTOCOL.md §4) the prefix is
 * the top byte and the rule above works on the low 24 bits (2^24 /
 * n_workers ids per worker between wraps). */
#define PID_LOCAL_MASK 0x00ffffffu

static uint32_t pid_local_max(const struct room_shard *s)
{
    return s->sh->lim.pid_prefix != 0 ? PID_LOCAL_MASK : UINT32_MAX;
}

static int pid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int pid_wrap(struct room_shard *s)
{
    unsigned n = s->sh->n_workers;
    uint32_t cnt = 0;
    for (uint32_t i = 0; i < s->mcap; i++)
        cnt += s->mslots[i] != NULL;
    uint32_t *skip = NULL;
    if (cnt > 0) {
        skip = malloc(cnt * sizeof(*skip));
        if (skip == NULL)
            return ROOST_ENOMEM;
        uint32_t j = 0;
        for (uint32_t i = 0; i < s->mcap; i++)
            if (s->mslots[i] != NULL)
                skip[j++] = ((s->mslots[i]->pid & pid_local_max(s)) - 1u - s->id) / n;
        qsort(skip, cnt, sizeof(*skip), pid_cmp);
    }
    free(s->pid_skip);
    s->pid_skip = skip;
    s->n_pid_skip = cnt;
    s->pid_seq = 0;
    s->pid_wraps++;
    log_info("event=pid_wrap worker=%u live=%u", s->id, cnt);
    return 0;
}

static int pid_alloc(struct room_shard *s, uint32_t *out)
{
    unsigned n = s->sh->n_workers;
    uint32_t kmax = (pid_local_max(s) - 1u - s->id) / n; /* kmax * n + id + 1 <= local max */
    for (;;) {
        if (s->pid_seq > kmax) { /* kmax < UINT32_MAX: pid_seq cannot overflow */
            int rc = pid_wrap(s);
            if (rc != 0)
                return rc;
        }
        uint32_t k = s->pid_seq++;
        if (s->n_pid_skip > 0 &&
            bsearch(&k, s->pid_skip, s->n_pid_skip, sizeof(k), pid_cmp) != NULL)
            continue; /* alive since before the wrap */
        *out = (k * n + s->id + 1u) | ((uint32_t)s->sh->lim.pid_prefix << 24);
        return 0;
    }
}

int room_member_new(struct room_shard *s, void *ep, struct room_member **out)
{
    if (s->n_mfree == 0) {
        uint32_t old = s->mcap;
        uint32_t ncap = old ? old * 2 : 64;
        if (ncap > KFDIR_CHUNKS * KFDIR_CHUNK)
            return ROOST_ENOMEM; /* the cache directory's bound */
        struct room_member **ms = realloc(s->mslots, ncap * sizeof(*ms));
        if (ms == NULL)
            return ROOST_ENOMEM;
        s->mslots = ms;
        uint32_t *gens = realloc(s->mgens, ncap * sizeof(*gens));
        if (gens == NULL)
            return ROOST_ENOMEM;
        s->mgens = gens;
        uint32_t *fr = realloc(s->mfree, ncap * sizeof(*fr));
        if (fr == NULL)
            return ROOST_ENOMEM;
        s->mfree = fr;
        for (uint32_t i = old; i < ncap; i++) {
            s->mslots[i] = NULL;
            s->mgens[i] = 0;
        }
        for (uint32_t i = ncap; i > old; i--)
            s->mfree[s->n_mfree++] = i - 1;
        s->mcap = ncap;
    }
    struct room_member *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ROOST_ENOMEM;
    uint32_t slot = s->mfree[--s->n_mfree];
    m->s = s;
    m->ep = ep;
    m->slot = slot;
    m->gen = ++s->mgens[slot];
    int rc = pid_alloc(s, &m->pid);
    if (rc != 0) {
        s->mfree[s->n_mfree++] = slot;
        free(m);
        return rc;
    }
    s->mslots[slot] = m;
    *out = m;
    return 0;
}

uint32_t room_member_pid(const struct room_member *m)
{
    return m->pid;
}

bool room_member_joined(const struct room_member *m)
{
    return m->state == MEMBER_JOINED;
}

bool room_member_rebinding(const struct room_member *m)
{
    return m->state == MEMBER_JOINED && m->rebinding;
}

/* ------------------------------------------------------ keyframe caches */

/* The directory entry of member slot `slot` on this worker, allocating its
 * chunk on first use. NULL without memory. */
static struct kfcache_view *_Atomic *cache_slot(struct room_shard *s, uint32_t slot)
{
    struct kfcache_view *_Atomic *_Atomic *cp = &s->sh->kfdir[s->id][slot >> KFDIR_CHUNK_BITS];
    struct kfcache_view *_Atomic *chunk = atomic_load_explicit(cp, memory_order_relaxed);
    if (chunk == NULL) {
        chunk = calloc(KFDIR_CHUNK, sizeof(*chunk));
        if (chunk == NULL)
            return NULL;
        /* Pairs with the acquire load in cache_view. */
        atomic_store_explicit(cp, chunk, memory_order_release);
    }
    return &chunk[slot & (KFDIR_CHUNK - 1)];
}

/* The view a snapshot member published, if it is still that member's and
 * in this room. Inside a read-side section. */
static const struct kfcache_view *cache_view(struct room_shared *sh,
                                             const struct snapshot_member *e, unsigned owner,
                                             uint32_t room_slot, uint32_t room_gen)
{
    RCUPTR_ASSERT_READER();
    /* Pairs with the release store in cache_slot. */
    struct kfcache_view *_Atomic *chunk = atomic_load_explicit(
        &sh->kfdir[e->worker][e->slot >> KFDIR_CHUNK_BITS], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    /* Pairs with rcu_assign_pointer (a release store) in kfcache's publish.
     * An acquire load rather than rcu_dereference: the slot is _Atomic, which
     * clang's __atomic builtins (inside rcu_dereference) refuse. */
    const struct kfcache_view *v =
        atomic_load_explicit(&chunk[e->slot & (KFDIR_CHUNK - 1)], memory_order_acquire);
    if (v == NULL)
        return NULL;
    const struct kfcache_tag *t = kfcache_view_tag(v);
    if (t->pid != e->participant_id || t->gen != e->gen || t->owner != owner ||
        t->room_slot != room_slot || t->room_gen != room_gen)
        return NULL;
    return v;
}

/* Cleared when the sender leaves its room (every leave path). */
static void member_cache_stop(struct room_shard *s, struct room_member *m)
{
    if (m->kc == NULL)
        return;
    kfcache_del(m->kc);
    m->kc = NULL;
    stat_dec(s->st, STAT_IDX(struct room_stats, kf_caches));
}

/* A publishing member's cache is made at its first frame, not at its join:
 * most members of a large room never publish (muted, listeners), and an
 * empty cache is ~2 KiB per member. Tagged with the room, so that views
 * never leak into another room. Returns the cache or NULL (no PUBLISH, or
 * no memory: media still flows; late joiners wait for a keyframe). */
struct kfcache *room_member_cache(struct room_shard *s, struct room_member *m)
{
    if (m->kc != NULL || !(m->perms & PERM_PUBLISH))
        return m->kc;
    struct kfcache_view *_Atomic *slot = cache_slot(s, m->slot);
    struct kfcache_config cfg = {.cap_bytes = s->sh->lim.keyframe_cap,
                                 .prefill_ms = s->sh->lim.prefill_ms,
                                 .sender_cap_bytes = s->sh->lim.keyframe_sender_bytes,
                                 .sender_cap_pkts = s->sh->lim.keyframe_sender_pkts};
    if (slot == NULL || kfcache_new(&m->kc, &cfg, slot) != 0) {
        log_error("event=kfcache_failed pid=%u reason=nomem", m->pid);
        return NULL;
    }
    struct kfcache_tag tag = {.pid = m->pid,
                              .gen = m->gen,
                              .owner = m->owner,
                              .room_slot = m->room_slot,
                              .room_gen = m->room_gen};
    kfcache_set_tag(m->kc, &tag);
    ROOM_STAT_INC(s, kf_caches);
    return m->kc;
}

void member_cache_adopt(struct room_shard *s, struct room_member *m, struct kfcache *kc)
{
    if (kc == NULL)
        return;
    struct kfcache_view *_Atomic *slot = cache_slot(s, m->slot);
    struct kfcache_tag tag = {.pid = m->pid,
                              .gen = m->gen,
                              .owner = m->owner,
                              .room_slot = m->room_slot,
                              .room_gen = m->room_gen};
    if (slot == NULL || !(m->perms & PERM_PUBLISH) || m->kc != NULL) {
        kfcache_del(kc); /* the next keyframe starts it again */
        return;
    }
    if (kfcache_attach(kc, slot, &tag) != 0)
        log_error("event=kfcache_failed pid=%u reason=nomem", m->pid); /* it still caches */
    m->kc = kc;
    ROOM_STAT_INC(s, kf_caches);
}

struct replay {
    struct room_shard *s;
    struct room_member *m;
};

static int replay_one(struct buf *b, void *arg)
{
    struct replay *rp = arg;
    if (rp->s->ops->media(rp->m->ep, b, 0, b->len, rp->s->arg) == 0) {
        ROOM_STAT_INC(rp->s, media_out);
        ROOM_STAT_INC(rp->s, kf_replayed);
    } else {
        ROOM_STAT_INC(rp->s, media_out_failed);
    }
    return 0;
}

/* Right after JOINED: the cached keyframes (then the audio prefill) of
 * every other sender, before any live frame can reach the joiner (it is
 * marked JOINED only after this, on this thread). At most replay_max_pkts
 * packets in all (each sender's view is bounded by its packet cap). */
static void replay_caches(struct room_shard *s, struct room_member *m)
{
    if (!(m->perms & PERM_SUBSCRIBE))
        return;
    /* A sender that promoted a keyframe and then fanned out with a
     * snapshot without us fences between the two; this fence pairs with
     * it so that we see that keyframe here (store/load on both sides). */
    atomic_thread_fence(memory_order_seq_cst);
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, m->owner, m->room_slot, m->room_gen);
    uint32_t n = 0, left = s->sh->lim.replay_max_pkts;
    const struct snapshot_member *e = r ? snapshot_members(rcu_dereference(r->snap), &n) : NULL;
    struct replay rp = {.s = s, .m = m};
    for (uint32_t i = 0; i < n && left > 0; i++) {
        if (e[i].participant_id == m->pid || !(e[i].flags & PERM_PUBLISH))
            continue;
        const struct kfcache_view *v =
            cache_view(s->sh, &e[i], m->owner, m->room_slot, m->room_gen);
        left -= kfcache_view_walk(v, left, replay_one, &rp);
    }
    rcu_read_unlock();
}

static void member_send_leave(struct room_member *m)
{
    struct room_shard *s = m->s;
    struct buf *b = buf_new(sizeof(struct leave_req));
    if (b == NULL) {
        /* Control is never dropped silently: without memory for the
         * message the owner keeps a ghost entry; the delivery side skips
         * it (stale handle) and it goes with the room. */
        log_error("event=room_leave_lost pid=%u reason=nomem", m->pid);
        return;
    }
    struct leave_req *lr = (struct leave_req *)b->data;
    memset(lr, 0, sizeof(*lr));
    lr->pid = m->pid;
    lr->slot = m->slot;
    lr->gen = m->gen;
    lr->worker = (uint16_t)s->id;
    lr->room_len = m->room_len;
    memcpy(lr->room, m->room_id, m->room_len);
    b->len = sizeof(*lr);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_LEAVE, &b, sizeof(b));
    room_send(s, room_owner_of(s->sh, m->room_id, m->room_len), &wm);
}

int room_leave(struct room_member *m)
{
    if (m->state == MEMBER_IDLE)
        return ROOST_ENOENT;
    member_send_leave(m);
    member_cache_stop(m->s, m);
    m->state = MEMBER_IDLE;
    return 0;
}

int room_member_new_pid(struct room_shard *s, void *ep, uint32_t pid, struct room_member **out)
{
    int rc = room_member_new(s, ep, out);
    if (rc == 0)
        (*out)->pid = pid; /* the id this worker just allocated stays unused */
    return rc;
}

void room_member_set_movable(struct room_member *m, bool on)
{
    m->movable = on;
}

unsigned room_member_owner(const struct room_member *m)
{
    return m->at;
}

void room_member_del(struct room_member *m)
{
    if (m == NULL)
        return;
    struct room_shard *s = m->s;
    if (m->state != MEMBER_IDLE)
        member_send_leave(m);
    member_cache_stop(s, m);
    free(m->kfreq_last);
    free(m->far); /* hidden members: receivers on other relays (remote.c) */
    /* Bumping the generation invalidates every snapshot entry that still
     * names this slot. */
    s->mgens[m->slot]++;
    s->mslots[m->slot] = NULL;
    s->mfree[s->n_mfree++] = m->slot;
    free(m);
}

int room_join(struct room_member *m, const uint8_t *room_id, size_t room_len,
              const uint8_t *identity, size_t identity_len, const uint8_t *display,
              size_t display_len, unsigned perms)
{
    if (m->state != MEMBER_IDLE)
        return ROOST_EEXIST;
    if (room_len == 0 || room_len > ROOM_ID_MAX || identity_len > IDENTITY_MAX ||
        display_len > DISPLAY_NAME_MAX)
        return ROOST_EINVAL;
    struct room_shard *s = m->s;
    struct buf *b = buf_new(sizeof(struct join_req));
    if (b == NULL)
        return ROOST_ENOMEM;
    struct join_req *jr = (struct join_req *)b->data;
    memset(jr, 0, sizeof(*jr));
    jr->pid = m->pid;
    jr->slot = m->slot;
    jr->gen = m->gen;
    jr->join_seq = ++m->join_seq;
    jr->worker = (uint16_t)s->id;
    jr->perms = (uint8_t)(perms | (m->remote ? ROOM_PERM_REMOTE : 0));
    jr->movable = m->movable;
    jr->room_len = (uint8_t)room_len;
    jr->ident_len = (uint8_t)identity_len;
    jr->name_len = (uint8_t)display_len;
    memcpy(jr->room, room_id, room_len);
    if (identity_len)
        memcpy(jr->identity, identity, identity_len);
    if (display_len)
        memcpy(jr->name, display, display_len);
    b->len = sizeof(*jr);

    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_JOIN, &b, sizeof(b));
    int rc = room_send_req(s, room_owner_of(s->sh, room_id, room_len), &wm);
    if (rc != 0)
        return rc; /* the member stays IDLE */
    m->state = MEMBER_JOINING;
    m->rebinding = false;
    m->moved_version = 0;
    m->rehome_moves = 0; /* a new room (or the same id begun again) */
    m->rehomed = m->follow = false;
    m->perms = (uint8_t)perms;
    m->room_len = (uint8_t)room_len;
    memcpy(m->room_id, room_id, room_len);
    return 0;
}

/* ----------------------------------------------------- answers and events */

static void deliver_frames(struct room_shard *s, struct room_member *m, const uint8_t *p,
                           size_t len)
{
    while (len > 0) {
        size_t hl, bl;
        if (frame_parse(p, len, &hl, &bl) != 0 || hl + bl > len)
            return; /* our own encoding: cannot happen */
        s->ops->control(m->ep, p + hl, bl, s->arg);
        p += hl + bl;
        len -= hl + bl;
    }
}

void member_on_ack(struct room_shard *s, struct buf *b)
{
    const struct ack_hdr *a = (const struct ack_hdr *)b->data;
    struct room_member *m = room_member_resolve(s, a->slot, a->gen);
    if (a->code == ROOM_REBIND_OK || a->code == ROOM_REBIND_FOLLOW || a->code == ROOM_REBIND_GONE) {
        /* A moved member's quiet re-bind (move.c): joined already. */
        if (m == NULL || !m->rebinding || m->join_seq != a->join_seq)
            return;
        m->rebinding = false;
        /* A REHOME meanwhile decides unless it is of an earlier move than
         * the answer (it came late, from another worker's ring). */
        bool rehome = m->rehomed && m->rehome_moves >= a->moves;
        bool follow = rehome ? m->follow : a->code == ROOM_REBIND_FOLLOW;
        if (!rehome) {
            m->at = a->at;
            if (a->moves > m->rehome_moves)
                m->rehome_moves = a->moves;
        }
        m->rehomed = m->follow = false;
        if (a->code != ROOM_REBIND_GONE) {
            m->moved_version = a->version;
            /* The presence changes it missed while its connection moved
             * (the owner's history); newer ones come as EVENTS. */
            deliver_frames(s, m, b->data + sizeof(*a), a->frames_len);
            m->events_seen = a->version;
            /* The room moved on while it moved: it follows again. */
            if (follow && m->at != s->id && m->state == MEMBER_JOINED && m->movable &&
                s->ops->move != NULL) {
                ROOM_STAT_INC(s, member_moves);
                s->ops->move(m->ep, m->at, s->arg);
            }
        } else if (m->state != MEMBER_IDLE) {
            m->state = MEMBER_IDLE; /* not in the room (replaced meanwhile) */
            member_cache_stop(s, m);
            if (s->ops->replaced)
                s->ops->replaced(m->ep, s->arg);
        }
        return;
    }
    /* A member that left or re-joined since: its LEAVE already went to the
     * owner (after the JOIN, same ring), so just drop the answer. */
    if (m == NULL || m->state != MEMBER_JOINING || m->join_seq != a->join_seq)
        return;
    bool follow = false;
    if (a->code == 0) {
        m->owner = a->owner;
        m->room_slot = a->room_slot;
        m->room_gen = a->room_gen;
        m->joined_version = a->version;
        m->events_seen = a->version;
        /* The room's moves so far: a REHOME of an earlier one is stale. A
         * REHOME of a later move that came first (move_on_rehome) names
         * the owner; one of the same move came from the same owner (rh_at
         * == a->at) and its follow stands. An answer carried on a move
         * (a->follow: on the worker the room left) follows too, to the
         * room's owner now. */
        if (m->rehomed && m->rh_tab == a->owner && m->rh_slot == a->room_slot &&
            m->rh_gen == a->room_gen && m->rehome_moves >= a->moves) {
            m->at = m->rh_at;
            follow = m->follow || a->follow;
        } else {
            m->at = a->at;
            m->rehome_moves = a->moves;
            follow = a->follow;
        }
        member_cache_stop(s, m); /* a new room: room_member_cache starts afresh */
    } else {
        m->state = MEMBER_IDLE;
        if (a->code == ROOM_JOIN_MOVE)
            m->owner = m->at = a->at;
    }
    m->rehomed = m->follow = false;
    deliver_frames(s, m, b->data + sizeof(*a), a->frames_len);
    if (a->code == 0) {
        /* JOINED went out; the other senders' caches follow, then live
         * frames (fan-out skips members not yet JOINED). */
        replay_caches(s, m);
        m->state = MEMBER_JOINED;
    }
    if (s->ops->joined)
        s->ops->joined(m->ep, a->code, s->arg);
    /* Asked to follow its room by that REHOME: once it is joined. */
    if (follow && m->at != s->id && m->state == MEMBER_JOINED && m->movable &&
        s->ops->move != NULL) {
        ROOM_STAT_INC(s, member_moves);
        s->ops->move(m->ep, m->at, s->arg);
    }
}

void member_on_events(struct room_shard *s, const struct events_msg *em)
{
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, em->owner, em->room_slot, em->room_gen);
    if (r != NULL) {
        uint32_t n;
        const struct snapshot_member *e =
            snapshot_worker_members(rcu_dereference(r->snap), s->id, &n);
        for (uint32_t i = 0; i < n; i++) {
            struct room_member *m = room_member_resolve(s, e[i].slot, e[i].gen);
            /* Joiners of this version (or later) got the state in JOINED;
             * a member that moved here had older events on its old worker. */
            if (m == NULL || m->state != MEMBER_JOINED || m->joined_version >= em->version ||
                m->rebinding || m->moved_version > em->version)
                continue;
            deliver_frames(s, m, em->b->data, em->b->len);
            m->events_seen = em->version;
            ROOM_STAT_INC(s, events_sent);
        }
    }
    rcu_read_unlock();
    buf_unref(em->b);
}

void member_on_replaced(struct room_shard *s, const struct replaced_msg *rm)
{
    struct room_member *m = room_member_resolve(s, rm->slot, rm->gen);
    if (m == NULL || m->pid != rm->pid || m->state == MEMBER_IDLE)
        return;
    m->state = MEMBER_IDLE; /* the owner already removed it */
    member_cache_stop(s, m);
    if (s->ops->replaced)
        s->ops->replaced(m->ep, s->arg);
}

/* ----------------------------------------------------- keyframe requests */

int room_keyframe_request(struct room_member *m, uint32_t target, uint8_t stream)
{
    struct room_shard *s = m->s;
    if (m->state != MEMBER_JOINED)
        return ROOST_ENOENT;
    if (!(m->perms & PERM_SUBSCRIBE))
        return ROOST_EACCES; /* a member that receives no media has no decoder to refresh */
    struct kfreq_msg km = {.from = m->pid, .stream = stream};
    bool found = false;
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, m->owner, m->room_slot, m->room_gen);
    const struct snapshot_member *e =
        r && target != m->pid ? snapshot_find(rcu_dereference(r->snap), target) : NULL;
    if (e != NULL) {
        km.slot = e->slot;
        km.gen = e->gen;
        km.pid = e->participant_id;
        found = true;
    }
    unsigned to = e ? e->worker : 0;
    rcu_read_unlock();
    if (!found) {
        ROOM_STAT_INC(s, kfreq_unknown);
        return ROOST_ENOENT;
    }
    /* Suppression happens on the sender's worker: requests from receivers
     * on every worker meet there. */
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_KFREQ, &km, sizeof(km));
    return room_send_req(s, to, &wm);
}

void member_on_kfreq(struct room_shard *s, const struct kfreq_msg *km)
{
    struct room_member *m = room_member_resolve(s, km->slot, km->gen);
    if (m == NULL || m->pid != km->pid || m->state != MEMBER_JOINED)
        return;
    uint64_t now = worker_now(s->w);
    if (m->kfreq_last == NULL) {
        m->kfreq_last = calloc(STREAMS, sizeof(*m->kfreq_last));
        if (m->kfreq_last == NULL)
            return;
    }
    /* Stored as now+1 so that 0 means "never". */
    uint64_t last = m->kfreq_last[km->stream];
    if (last != 0 && now + 1 - last < s->sh->lim.kfreq_window_ns) {
        ROOM_STAT_INC(s, kfreq_suppressed);
        return;
    }
    m->kfreq_last[km->stream] = now + 1;
    struct msg *msg = s->scratch;
    memset(msg, 0, sizeof(msg->type) + sizeof(msg->u.keyframe_request));
    msg->type = MSG_KEYFRAME_REQUEST;
    msg->u.keyframe_request.participant_id = km->from;
    msg->u.keyframe_request.stream_id = km->stream;
    uint8_t body[64];
    int n = msg_encode_body(msg, body, sizeof(body));
    if (n < 0)
        return;
    s->ops->control(m->ep, body, (size_t)n, s->arg);
    ROOM_STAT_INC(s, kfreq_relayed);
}
