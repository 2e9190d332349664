#include "room/room.h"

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
#include "proto/frame.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "room/kfcache.h"
#include "room/quality.h"
#include "room/snapshot.h"

/* Ring messages of this module. */
enum {
    ROOM_MSG_JOIN = ROOM_MSG_FIRST, /* member worker -> owner: struct join_req in a buf */
    ROOM_MSG_ACK,                   /* owner -> member worker: struct ack_hdr + frames in a buf */
    ROOM_MSG_LEAVE,                 /* member worker -> owner: struct leave_req in a buf */
    ROOM_MSG_FANOUT,                /* sender worker -> member worker: struct fanout_msg */
    ROOM_MSG_EVENTS,                /* owner -> member worker: struct events_msg */
    ROOM_MSG_REPLACED,              /* owner -> member worker: struct replaced_msg */
    ROOM_MSG_KFREQ,                 /* requester worker -> sender worker: struct kfreq_msg */
    ROOM_MSG_QREPORT, /* member worker -> owner: struct qreport_hdr + entries in a buf */
    ROOM_MSG_QSUM,    /* owner -> publisher worker: struct qsum_entry[] in a buf */
};

#define IDENTITY_MAX 64
#define ROOM_DEFAULT_MAX_ROOMS 10000u
#define ROOM_DEFAULT_MAX_MEMBERS 500u
#define ROOM_TABLE_MAX (1u << 20)
/* Published cache views by member slot: a fixed directory of chunks, so a
 * reader never sees a table move (chunks are only added, freed at exit). */
#define KFDIR_CHUNK_BITS 12
#define KFDIR_CHUNK (1u << KFDIR_CHUNK_BITS)
#define KFDIR_CHUNKS 256 /* 1M member slots per worker */
#define KFREQ_DEFAULT_WINDOW_NS (200ull * 1000000ull)
#define QUALITY_DEFAULT_INTERVAL_NS (1000ull * 1000000ull)
#define STREAMS 256

/* ------------------------------------------------------------------ types */

/* Per-owner table of room slots. slots[] entries are RCU-published by the
 * owner (rcu_assign_pointer) and read by every worker (rcu_dereference);
 * gens[] is owner-only. */
struct room_table {
    uint32_t cap;
    struct room **slots;
    uint32_t *gens;
    uint32_t *free_slots; /* stack of unused slot numbers, owner-only */
    uint32_t n_free;
};

struct room_shared {
    unsigned n_workers;
    struct hash_key key;
    struct room_limits lim;
    struct room_table tables[WORKER_MAX];
    _Atomic int64_t rooms;        /* live rooms, server-wide (control path only) */
    _Atomic int64_t participants; /* members in rooms, server-wide */
    /* Keyframe caches: kfdir[w][chunk][i] is the view published by the
     * member in slot chunk*KFDIR_CHUNK+i of worker w. Chunks and views are
     * written by worker w only (rcu_assign_pointer), read by any worker. */
    struct kfcache_view *_Atomic *_Atomic kfdir[WORKER_MAX][KFDIR_CHUNKS];
};

/* The owner's record of one member: what JOINED lists and what duplicate
 * identities are matched against. */
struct room_info {
    uint32_t pid;
    uint16_t worker;
    uint16_t flags; /* SNAPSHOT_MAY_* */
    uint32_t slot;
    uint32_t gen;
    uint32_t join_seq;
    uint8_t ident_len;
    uint8_t name_len;
    uint8_t identity[IDENTITY_MAX];
    uint8_t name[DISPLAY_NAME_MAX];
};

struct room_event {
    uint8_t kind; /* MSG_EV_JOIN / MSG_EV_LEAVE */
    uint32_t pid;
};

struct room {
    /* Read by any worker inside a read-side section. */
    struct snapshot *snap; /* RCU-published */
    uint32_t gen;
    /* Owner-only below. */
    struct rcu_head rcu;
    uint32_t slot;
    uint8_t id_len;
    uint8_t id[ROOM_ID_MAX];
    uint64_t hash;
    struct room *hnext;
    struct room *dirty_next;
    bool dirty;

    struct room_info *infos; /* current members (pending changes applied) */
    uint32_t n_infos, cap_infos;
    struct snapshot_change *changes; /* this turn's batch */
    uint32_t n_changes, cap_changes;
    struct room_info *acks; /* joiners accepted this turn */
    uint32_t n_acks, cap_acks;
    struct room_event *events; /* this turn's presence deltas */
    uint32_t n_events, cap_events;
    /* Latest subscriber report of each worker (quality), and when. */
    struct buf *qrep[WORKER_MAX];
    uint64_t qrep_t[WORKER_MAX];
};

enum member_state {
    MEMBER_IDLE = 0,
    MEMBER_JOINING,
    MEMBER_JOINED,
};

struct room_member {
    struct room_shard *s;
    void *ep;
    uint32_t pid;
    uint32_t slot;
    uint32_t gen;
    uint32_t join_seq;
    enum member_state state;
    uint8_t perms;
    uint16_t owner;
    uint32_t room_slot;
    uint32_t room_gen;
    uint64_t joined_version; /* snapshot version that added us */
    uint8_t room_len;
    uint8_t room_id[ROOM_ID_MAX];
    /* Room state, on this member's worker. */
    struct kfcache *kc;   /* publishing members: keyframe cache + prefill */
    uint64_t *kfreq_last; /* per stream: when a KEYFRAME_REQUEST last went out (+1) */
    struct room_link q_prev;
    bool q_have;
    uint16_t q_loss; /* permille, last interval */
    uint32_t q_rtt_us;
};

struct room_shard {
    struct room_shared *sh;
    struct worker *w;
    unsigned id;
    const struct room_ops *ops;
    void *arg;

    /* Owner side: rooms by id. */
    struct room **buckets;
    uint32_t bucket_mask;
    struct room *dirty_head;

    /* Member side: handle table. */
    struct room_member **mslots;
    uint32_t *mgens;
    uint32_t mcap;
    uint32_t *mfree;
    uint32_t n_mfree;
    uint32_t pid_seq;

    struct msg *scratch; /* large (lists of 200); control path only */
    struct room_stats st;
};

/* Payloads. */
struct join_req {
    uint32_t pid, slot, gen, join_seq;
    uint16_t worker;
    uint8_t perms, room_len, ident_len, name_len;
    uint8_t room[ROOM_ID_MAX];
    uint8_t identity[IDENTITY_MAX];
    uint8_t name[DISPLAY_NAME_MAX];
};

struct ack_hdr {
    uint32_t pid, slot, gen, join_seq;
    uint32_t code; /* 0 or proto errcode */
    uint32_t room_slot, room_gen;
    uint16_t owner;
    uint64_t version;
    uint32_t frames_len; /* framed messages follow */
};

struct leave_req {
    uint32_t pid;
    uint8_t room_len;
    uint8_t room[ROOM_ID_MAX];
};

struct fanout_msg {
    uint32_t owner, room_slot, room_gen, sender;
    struct buf *b;
};

struct events_msg {
    uint32_t owner, room_slot, room_gen;
    uint64_t version;
    struct buf *b; /* framed PARTICIPANT_EVENTS messages */
};

struct replaced_msg {
    uint32_t slot, gen, pid;
};

struct kfreq_msg {
    uint32_t slot, gen, pid; /* the sender (target) */
    uint32_t from;           /* the requester */
    uint8_t stream;
};

struct qreport_hdr {
    uint32_t room_slot, room_gen;
    uint16_t worker;
    uint32_t n;
};

struct qreport_entry {
    uint32_t pid;
    uint16_t loss; /* permille */
    uint32_t rtt_us;
};

struct qsum_entry {
    uint32_t slot, gen, pid; /* the publisher */
    struct quality_summary sum;
};

_Static_assert(sizeof(struct fanout_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct events_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct kfreq_msg) <= 56, "fits a ring message");

/* Counters are written only by the shard's worker; relaxed stores keep the
 * admin reader's loads well-defined without a read-modify-write. */
#define STAT_INC(s, f) __atomic_store_n(&(s)->st.f, (s)->st.f + 1, __ATOMIC_RELAXED)

/* ---------------------------------------------------------------- helpers */

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 4;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (p == NULL)
        return ROOST_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static void msg_put(struct worker_msg *wm, uint16_t type, const void *payload, size_t len)
{
    memset(wm, 0, sizeof(*wm));
    wm->type = type;
    memcpy(wm->u.bytes, payload, len);
}

static void shard_deliver_msg(struct room_shard *s, unsigned to, struct worker_msg *wm,
                              enum worker_msg_class cls);
static void shard_handle_msg(struct worker *w, const struct worker_msg *wm, void *arg);
static void shard_discard_msg(const struct worker_msg *wm);

/* ------------------------------------------------------------ shared state */

int room_shared_new(struct room_shared **out, unsigned n_workers, const struct room_limits *lim)
{
    if (out == NULL || n_workers == 0 || n_workers > WORKER_MAX)
        return ROOST_EINVAL;
    struct room_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    sh->n_workers = n_workers;
    sh->lim.max_rooms = lim && lim->max_rooms ? lim->max_rooms : ROOM_DEFAULT_MAX_ROOMS;
    sh->lim.max_members = lim && lim->max_members ? lim->max_members : ROOM_DEFAULT_MAX_MEMBERS;
    sh->lim.keyframe_cap = lim && lim->keyframe_cap ? lim->keyframe_cap : KFCACHE_DEFAULT_CAP;
    sh->lim.prefill_ms = lim ? lim->prefill_ms : 0;
    sh->lim.kfreq_window_ns =
        lim && lim->kfreq_window_ns ? lim->kfreq_window_ns : KFREQ_DEFAULT_WINDOW_NS;
    sh->lim.quality_interval_ns =
        lim && lim->quality_interval_ns ? lim->quality_interval_ns : QUALITY_DEFAULT_INTERVAL_NS;
    int rc = hash_key_random(&sh->key);
    if (rc != 0)
        goto fail;
    /* Every owner may in the worst case hold every room. */
    uint32_t cap = sh->lim.max_rooms < ROOM_TABLE_MAX ? sh->lim.max_rooms : ROOM_TABLE_MAX;
    for (unsigned i = 0; i < n_workers; i++) {
        struct room_table *t = &sh->tables[i];
        t->cap = cap;
        t->slots = calloc(cap, sizeof(*t->slots));
        t->gens = calloc(cap, sizeof(*t->gens));
        t->free_slots = malloc((size_t)cap * sizeof(*t->free_slots));
        if (t->slots == NULL || t->gens == NULL || t->free_slots == NULL) {
            rc = ROOST_ENOMEM;
            goto fail;
        }
        for (uint32_t k = 0; k < cap; k++)
            t->free_slots[k] = cap - 1 - k; /* pop from the end: slot 0 first */
        t->n_free = cap;
    }
    *out = sh;
    return 0;
fail:
    room_shared_del(sh);
    return rc;
}

void room_shared_del(struct room_shared *sh)
{
    if (sh == NULL)
        return;
    for (unsigned i = 0; i < sh->n_workers; i++) {
        free(sh->tables[i].slots);
        free(sh->tables[i].gens);
        free(sh->tables[i].free_slots);
        for (unsigned c = 0; c < KFDIR_CHUNKS; c++)
            free(atomic_load_explicit(&sh->kfdir[i][c], memory_order_relaxed));
    }
    free(sh);
}

unsigned room_shared_owner(const struct room_shared *sh, const uint8_t *room_id, size_t len)
{
    return hash_owner(&sh->key, room_id, len, sh->n_workers);
}

uint64_t room_shared_quality_interval(const struct room_shared *sh)
{
    return sh->lim.quality_interval_ns;
}

int64_t room_shared_rooms(const struct room_shared *sh)
{
    return atomic_load_explicit(&sh->rooms, memory_order_relaxed);
}

int64_t room_shared_participants(const struct room_shared *sh)
{
    return atomic_load_explicit(&sh->participants, memory_order_relaxed);
}

/* Resolves a room handle. Caller is inside a read-side section; the result
 * is valid until it leaves it. */
static struct room *room_resolve(struct room_shared *sh, unsigned owner, uint32_t slot,
                                 uint32_t gen)
{
    if (owner >= sh->n_workers || slot >= sh->tables[owner].cap)
        return NULL;
    /* Pairs with rcu_assign_pointer in room_create/room_destroy. */
    struct room *r = rcu_dereference(sh->tables[owner].slots[slot]);
    if (r == NULL || r->gen != gen)
        return NULL;
    return r;
}

/* ------------------------------------------------------------------ shard */

int room_shard_new(struct room_shard **out, struct room_shared *sh, struct worker *w,
                   const struct room_ops *ops, void *arg)
{
    if (out == NULL || sh == NULL || w == NULL || ops == NULL || ops->media == NULL ||
        ops->control == NULL)
        return ROOST_EINVAL;
    struct room_shard *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ROOST_ENOMEM;
    s->sh = sh;
    s->w = w;
    s->id = worker_id(w);
    s->ops = ops;
    s->arg = arg;
    uint32_t nb = 64;
    while (nb < sh->lim.max_rooms && nb < (1u << 16))
        nb *= 2;
    s->buckets = calloc(nb, sizeof(*s->buckets));
    s->scratch = malloc(sizeof(*s->scratch));
    if (s->buckets == NULL || s->scratch == NULL) {
        room_shard_del(s);
        return ROOST_ENOMEM;
    }
    s->bucket_mask = nb - 1;
    /* The runtime hands this module's messages straight to the shard. */
    struct worker_handler h = {.first = ROOM_MSG_FIRST,
                               .last = ROOM_MSG_LAST,
                               .on_msg = shard_handle_msg,
                               .discard = shard_discard_msg};
    int rc = worker_handle(w, &h, s);
    if (rc != 0) {
        room_shard_del(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void room_free(struct room *r)
{
    snapshot_free(r->snap);
    free(r->infos);
    free(r->changes);
    free(r->acks);
    free(r->events);
    for (unsigned w = 0; w < WORKER_MAX; w++)
        buf_unref(r->qrep[w]);
    free(r);
}

static void room_free_rcu(struct rcu_head *head)
{
    room_free(caa_container_of(head, struct room, rcu));
}

void room_shard_del(struct room_shard *s)
{
    if (s == NULL)
        return;
    /* Every worker has left its loop: no reader holds a room or snapshot,
     * so the owner frees directly. */
    for (uint32_t b = 0; s->buckets && b <= s->bucket_mask; b++) {
        struct room *r = s->buckets[b];
        while (r != NULL) {
            struct room *next = r->hnext;
            struct room_table *t = &s->sh->tables[s->id];
            rcu_assign_pointer(t->slots[r->slot], NULL);
            atomic_fetch_sub_explicit(&s->sh->rooms, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->sh->participants, r->n_infos, memory_order_relaxed);
            room_free(r);
            r = next;
        }
    }
    free(s->buckets);
    free(s->mslots);
    free(s->mgens);
    free(s->mfree);
    free(s->scratch);
    free(s);
}

void room_shard_stats(const struct room_shard *s, struct room_stats *out)
{
    const uint64_t *src = (const uint64_t *)&s->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* --------------------------------------------------------- member handles */

static struct room_member *member_resolve(struct room_shard *s, uint32_t slot, uint32_t gen)
{
    if (slot >= s->mcap || s->mgens[slot] != gen)
        return NULL;
    return s->mslots[slot];
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
    /* Unique server-wide: worker id in the low part, never 0. */
    m->pid = s->pid_seq++ * s->sh->n_workers + s->id + 1;
    if (m->pid == 0) /* wrapped */
        m->pid = s->pid_seq++ * s->sh->n_workers + s->id + 1;
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
    /* Pairs with the release store in cache_slot. */
    struct kfcache_view *_Atomic *chunk = atomic_load_explicit(
        &sh->kfdir[e->worker][e->slot >> KFDIR_CHUNK_BITS], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    /* Pairs with rcu_assign_pointer in kfcache (publish). */
    const struct kfcache_view *v = rcu_dereference(chunk[e->slot & (KFDIR_CHUNK - 1)]);
    if (v == NULL)
        return NULL;
    const struct kfcache_tag *t = kfcache_view_tag(v);
    if (t->pid != e->participant_id || t->gen != e->gen || t->owner != owner ||
        t->room_slot != room_slot || t->room_gen != room_gen)
        return NULL;
    return v;
}

/* Cleared when the sender leaves its room (every leave path). */
static void member_cache_stop(struct room_member *m)
{
    kfcache_del(m->kc);
    m->kc = NULL;
}

/* A publishing member just joined: its cache starts empty, tagged with the
 * room, so that views never leak into another room. */
static void member_cache_start(struct room_shard *s, struct room_member *m)
{
    member_cache_stop(m);
    if (!(m->perms & ROOM_PERM_PUBLISH))
        return;
    struct kfcache_view *_Atomic *slot = cache_slot(s, m->slot);
    struct kfcache_config cfg = {.cap_bytes = s->sh->lim.keyframe_cap,
                                 .prefill_ms = s->sh->lim.prefill_ms};
    if (slot == NULL || kfcache_new(&m->kc, &cfg, slot) != 0) {
        log_error("event=kfcache_failed pid=%u reason=nomem", m->pid);
        return; /* media still flows; late joiners wait for a keyframe */
    }
    struct kfcache_tag tag = {.pid = m->pid,
                              .gen = m->gen,
                              .owner = m->owner,
                              .room_slot = m->room_slot,
                              .room_gen = m->room_gen};
    kfcache_set_tag(m->kc, &tag);
}

/* Right after JOINED: the cached keyframes (then the audio prefill) of
 * every other sender, before any live frame can reach the joiner (it is
 * marked JOINED only after this, on this thread). */
static void replay_caches(struct room_shard *s, struct room_member *m)
{
    if (!(m->perms & ROOM_PERM_SUBSCRIBE))
        return;
    /* A sender that promoted a keyframe and then fanned out with a
     * snapshot without us fences between the two; this fence pairs with
     * it so that we see that keyframe here (store/load on both sides). */
    atomic_thread_fence(memory_order_seq_cst);
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, m->owner, m->room_slot, m->room_gen);
    uint32_t n = 0;
    const struct snapshot_member *e = r ? snapshot_members(rcu_dereference(r->snap), &n) : NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].participant_id == m->pid || !(e[i].flags & SNAPSHOT_MAY_PUBLISH))
            continue;
        const struct kfcache_view *v =
            cache_view(s->sh, &e[i], m->owner, m->room_slot, m->room_gen);
        uint32_t cnt = kfcache_view_count(v);
        for (uint32_t k = 0; k < cnt; k++) {
            struct buf *b = kfcache_view_packet(v, k);
            if (s->ops->media(m->ep, b, 0, b->len, s->arg) == 0) {
                STAT_INC(s, media_out);
                STAT_INC(s, kf_replayed);
            } else {
                STAT_INC(s, media_out_failed);
            }
        }
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
    lr->room_len = m->room_len;
    memcpy(lr->room, m->room_id, m->room_len);
    b->len = sizeof(*lr);
    struct worker_msg wm;
    msg_put(&wm, ROOM_MSG_LEAVE, &b, sizeof(b));
    unsigned owner = room_shared_owner(s->sh, m->room_id, m->room_len);
    shard_deliver_msg(s, owner, &wm, WORKER_MSG_CONTROL);
}

int room_leave(struct room_member *m)
{
    if (m->state == MEMBER_IDLE)
        return ROOST_ENOENT;
    member_send_leave(m);
    member_cache_stop(m);
    m->state = MEMBER_IDLE;
    return 0;
}

void room_member_del(struct room_member *m)
{
    if (m == NULL)
        return;
    struct room_shard *s = m->s;
    if (m->state != MEMBER_IDLE)
        member_send_leave(m);
    member_cache_stop(m);
    free(m->kfreq_last);
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
    jr->perms = (uint8_t)perms;
    jr->room_len = (uint8_t)room_len;
    jr->ident_len = (uint8_t)identity_len;
    jr->name_len = (uint8_t)display_len;
    memcpy(jr->room, room_id, room_len);
    if (identity_len)
        memcpy(jr->identity, identity, identity_len);
    if (display_len)
        memcpy(jr->name, display, display_len);
    b->len = sizeof(*jr);

    m->state = MEMBER_JOINING;
    m->perms = (uint8_t)perms;
    m->room_len = (uint8_t)room_len;
    memcpy(m->room_id, room_id, room_len);

    struct worker_msg wm;
    msg_put(&wm, ROOM_MSG_JOIN, &b, sizeof(b));
    shard_deliver_msg(s, room_shared_owner(s->sh, room_id, room_len), &wm, WORKER_MSG_CONTROL);
    return 0;
}

/* --------------------------------------------------------------- fan-out */

/* Delivers b to this worker's members in `e[0..n)` except the sender. */
static void deliver_slice(struct room_shard *s, const struct snapshot_member *e, uint32_t n,
                          uint32_t sender, struct buf *b)
{
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].participant_id == sender || !(e[i].flags & SNAPSHOT_MAY_SUBSCRIBE))
            continue;
        struct room_member *mm = member_resolve(s, e[i].slot, e[i].gen);
        if (mm == NULL) {
            STAT_INC(s, stale_handles);
            continue;
        }
        if (mm->state != MEMBER_JOINED) /* media starts after JOINED */
            continue;
        if (s->ops->media(mm->ep, b, 0, b->len, s->arg) == 0)
            STAT_INC(s, media_out);
        else
            STAT_INC(s, media_out_failed);
    }
}

int room_publish(struct room_member *m, const uint8_t *dgram, size_t len)
{
    struct room_shard *s = m->s;
    if (m->state != MEMBER_JOINED) {
        STAT_INC(s, media_dropped_not_joined);
        return ROOST_ENOENT;
    }
    if (!(m->perms & ROOM_PERM_PUBLISH)) {
        STAT_INC(s, media_dropped_no_publish);
        return ROOST_EACCES;
    }
    if (len > MEDIA_DATAGRAM_MAX) {
        STAT_INC(s, media_dropped_malformed);
        return ROOST_EMALFORMED;
    }
    struct buf *b = buf_new((uint32_t)len + MEDIA_SENDER_LEN);
    if (b == NULL) {
        STAT_INC(s, media_dropped_nomem);
        return ROOST_ENOMEM;
    }
    b->stamp = buf_stamp_now(); /* fan-out latency metric */
    /* The frame is written once; every delivery shares it. */
    int n = media_relay_datagram(dgram, len, m->pid, b->data, b->cap);
    if (n < 0) {
        buf_unref(b);
        STAT_INC(s, media_dropped_malformed);
        return ROOST_EMALFORMED;
    }
    b->len = (uint32_t)n;
    STAT_INC(s, media_in);
    if (m->kc != NULL) {
        int ev = kfcache_feed(m->kc, b, worker_now(s->w));
        if (ev > 0) {
            if (ev & KFCACHE_EV_PROMOTED) {
                STAT_INC(s, kf_cached);
                /* Pairs with the fence in replay_caches: the new view is
                 * visible to a joiner that our snapshot read below misses. */
                atomic_thread_fence(memory_order_seq_cst);
            }
            if (ev & KFCACHE_EV_DISCARDED)
                STAT_INC(s, kf_discarded);
            if (ev & KFCACHE_EV_OVER_CAP)
                STAT_INC(s, kf_over_cap);
        }
    }

    rcu_read_lock();
    struct room *r = room_resolve(s->sh, m->owner, m->room_slot, m->room_gen);
    const struct snapshot *snap = r ? rcu_dereference(r->snap) : NULL;
    unsigned ng = snapshot_group_count(snap);
    for (unsigned g = 0; g < ng; g++) {
        unsigned wid;
        uint32_t cnt;
        const struct snapshot_member *e = snapshot_group(snap, g, &wid, &cnt);
        if (wid == s->id) {
            deliver_slice(s, e, cnt, m->pid, b);
            continue;
        }
        /* A worker whose only member is the sender gets nothing. */
        if (cnt == 1 && e[0].participant_id == m->pid)
            continue;
        struct fanout_msg fm = {
            .owner = m->owner,
            .room_slot = m->room_slot,
            .room_gen = m->room_gen,
            .sender = m->pid,
            .b = buf_ref(b),
        };
        struct worker_msg wm;
        msg_put(&wm, ROOM_MSG_FANOUT, &fm, sizeof(fm));
        if (worker_send(s->w, wid, &wm, WORKER_MSG_MEDIA) == 0) {
            STAT_INC(s, fanout_sent);
        } else {
            buf_unref(fm.b);
            STAT_INC(s, fanout_ring_drops);
        }
    }
    rcu_read_unlock();
    buf_unref(b);
    return 0;
}

static void on_fanout(struct room_shard *s, const struct fanout_msg *fm)
{
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, fm->owner, fm->room_slot, fm->room_gen);
    if (r != NULL) {
        uint32_t n;
        const struct snapshot_member *e =
            snapshot_worker_members(rcu_dereference(r->snap), s->id, &n);
        deliver_slice(s, e, n, fm->sender, fm->b);
    }
    rcu_read_unlock();
    buf_unref(fm->b);
}

/* ------------------------------------------------------------ owner side */

static struct room *room_lookup(struct room_shard *s, const uint8_t *id, size_t len,
                                uint64_t *hash_out)
{
    uint64_t h = hash_siphash24(&s->sh->key, id, len);
    *hash_out = h;
    /* High bits: the low bits chose the owner (mod N). */
    for (struct room *r = s->buckets[(h >> 32) & s->bucket_mask]; r; r = r->hnext)
        if (r->hash == h && r->id_len == len && memcmp(r->id, id, len) == 0)
            return r;
    return NULL;
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
    uint32_t b = (uint32_t)(h >> 32) & s->bucket_mask;
    r->hnext = s->buckets[b];
    s->buckets[b] = r;
    /* Pairs with rcu_dereference in room_resolve: the room's fields are
     * visible before its pointer is. */
    rcu_assign_pointer(t->slots[r->slot], r);
    STAT_INC(s, rooms_created);
    *out = r;
    return 0;
}

static void room_destroy(struct room_shard *s, struct room *r)
{
    struct room_table *t = &s->sh->tables[s->id];
    uint32_t b = (uint32_t)(r->hash >> 32) & s->bucket_mask;
    for (struct room **pp = &s->buckets[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == r) {
            *pp = r->hnext;
            break;
        }
    }
    rcu_assign_pointer(t->slots[r->slot], NULL);
    t->free_slots[t->n_free++] = r->slot;
    atomic_fetch_sub_explicit(&s->sh->rooms, 1, memory_order_relaxed);
    STAT_INC(s, rooms_destroyed);
    /* Readers that resolved the room before it was unpublished may still
     * use it and its snapshot until their next quiescent state. */
    call_rcu(&r->rcu, room_free_rcu);
}

static void room_mark_dirty(struct room_shard *s, struct room *r)
{
    if (r->dirty)
        return;
    r->dirty = true;
    r->dirty_next = s->dirty_head;
    s->dirty_head = r;
}

static int room_add_change(struct room *r, enum snapshot_op op, const struct room_info *in)
{
    int rc = grow((void **)&r->changes, &r->cap_changes, r->n_changes + 1, sizeof(*r->changes));
    if (rc != 0)
        return rc;
    struct snapshot_change *c = &r->changes[r->n_changes++];
    memset(c, 0, sizeof(*c));
    c->op = op;
    c->member.participant_id = in->pid;
    c->member.worker = in->worker;
    c->member.flags = in->flags;
    c->member.slot = in->slot;
    c->member.gen = in->gen;
    return 0;
}

static int room_add_event(struct room *r, uint8_t kind, uint32_t pid)
{
    int rc = grow((void **)&r->events, &r->cap_events, r->n_events + 1, sizeof(*r->events));
    if (rc != 0)
        return rc;
    r->events[r->n_events++] = (struct room_event){.kind = kind, .pid = pid};
    return 0;
}

static void send_replaced(struct room_shard *s, const struct room_info *old)
{
    struct replaced_msg rm = {.slot = old->slot, .gen = old->gen, .pid = old->pid};
    struct worker_msg wm;
    msg_put(&wm, ROOM_MSG_REPLACED, &rm, sizeof(rm));
    shard_deliver_msg(s, old->worker, &wm, WORKER_MSG_CONTROL);
}

/* Removes member i from the room's current list and queues the change. */
static void room_remove_info(struct room_shard *s, struct room *r, uint32_t i)
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
        room_add_event(r, MSG_EV_LEAVE, old.pid) != 0)
        log_error("event=room_change_nomem pid=%u", old.pid);
    atomic_fetch_sub_explicit(&s->sh->participants, 1, memory_order_relaxed);
    STAT_INC(s, leaves);
    room_mark_dirty(s, r);
}

/* Writes one framed message for *m into a fresh buffer region; returns
 * bytes written or a negative error. */
static int frame_into(struct buf **bp, const struct msg *m)
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

static void send_ack(struct room_shard *s, const struct join_req *jr, uint32_t code,
                     const struct room *r, uint64_t version, struct buf *frames)
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
    }
    a->owner = (uint16_t)s->id;
    a->version = version;
    a->frames_len = flen;
    if (flen)
        memcpy(b->data + sizeof(*a), frames->data, flen);
    b->len = (uint32_t)sizeof(*a) + flen;
    buf_unref(frames);
    struct worker_msg wm;
    msg_put(&wm, ROOM_MSG_ACK, &b, sizeof(b));
    shard_deliver_msg(s, jr->worker, &wm, WORKER_MSG_CONTROL);
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
    if (frame_into(&frames, m) < 0) {
        buf_unref(frames);
        frames = NULL;
    }
    send_ack(s, jr, code, NULL, 0, frames);
}

static void on_join(struct room_shard *s, const struct join_req *jr)
{
    uint64_t h;
    struct room *r = room_lookup(s, jr->room, jr->room_len, &h);
    if (r != NULL) {
        /* Count only the members not being replaced. */
        bool dup = false;
        for (uint32_t i = 0; i < r->n_infos && jr->ident_len; i++)
            if (r->infos[i].ident_len == jr->ident_len &&
                memcmp(r->infos[i].identity, jr->identity, jr->ident_len) == 0)
                dup = true;
        if (!dup && r->n_infos >= s->sh->lim.max_members) {
            STAT_INC(s, rejects_room_full);
            send_reject(s, jr, PROTO_ERR_ROOM_FULL, "room is full", 5000);
            return;
        }
    } else {
        int rc = room_create(s, jr->room, jr->room_len, h, &r);
        if (rc != 0) {
            STAT_INC(s, rejects_server_full);
            send_reject(s, jr, rc == ROOST_EFULL ? PROTO_ERR_SERVER_FULL : PROTO_ERR_INTERNAL,
                        rc == ROOST_EFULL ? "server has no room for another room" : "out of memory",
                        5000);
            return;
        }
    }

    /* Duplicate identity: the newer join replaces the older connection. */
    for (uint32_t i = 0; i < r->n_infos && jr->ident_len; i++) {
        struct room_info *o = &r->infos[i];
        if (o->ident_len == jr->ident_len &&
            memcmp(o->identity, jr->identity, jr->ident_len) == 0) {
            send_replaced(s, o);
            STAT_INC(s, replaced);
            room_remove_info(s, r, i);
            break;
        }
    }

    struct room_info in = {
        .pid = jr->pid,
        .worker = jr->worker,
        .flags = (uint16_t)(((jr->perms & ROOM_PERM_PUBLISH) ? SNAPSHOT_MAY_PUBLISH : 0) |
                            ((jr->perms & ROOM_PERM_SUBSCRIBE) ? SNAPSHOT_MAY_SUBSCRIBE : 0)),
        .slot = jr->slot,
        .gen = jr->gen,
        .join_seq = jr->join_seq,
        .ident_len = jr->ident_len,
        .name_len = jr->name_len,
    };
    memcpy(in.identity, jr->identity, jr->ident_len);
    memcpy(in.name, jr->name, jr->name_len);
    if (grow((void **)&r->infos, &r->cap_infos, r->n_infos + 1, sizeof(*r->infos)) != 0 ||
        grow((void **)&r->acks, &r->cap_acks, r->n_acks + 1, sizeof(*r->acks)) != 0 ||
        room_add_change(r, SNAPSHOT_ADD, &in) != 0 || room_add_event(r, MSG_EV_JOIN, in.pid) != 0) {
        send_reject(s, jr, PROTO_ERR_INTERNAL, "out of memory", 1000);
        if (r->n_infos == 0 && !r->dirty)
            room_destroy(s, r);
        return;
    }
    r->infos[r->n_infos++] = in;
    r->acks[r->n_acks++] = in;
    atomic_fetch_add_explicit(&s->sh->participants, 1, memory_order_relaxed);
    STAT_INC(s, joins);
    room_mark_dirty(s, r);
}

static void on_leave(struct room_shard *s, const struct leave_req *lr)
{
    uint64_t h;
    struct room *r = room_lookup(s, lr->room, lr->room_len, &h);
    if (r == NULL)
        return; /* already replaced and the room went away */
    for (uint32_t i = 0; i < r->n_infos; i++) {
        if (r->infos[i].pid == lr->pid) {
            room_remove_info(s, r, i);
            return;
        }
    }
}

static uint8_t info_member_flags(const struct room_info *in)
{
    return (in->flags & SNAPSHOT_MAY_PUBLISH) ? MSG_MEMBER_PUBLISHER : 0;
}

static const struct room_info *room_find_info(const struct room *r, uint32_t pid)
{
    for (uint32_t i = 0; i < r->n_infos; i++)
        if (r->infos[i].pid == pid)
            return &r->infos[i];
    return NULL;
}

/* JOINED for one joiner: the other members, the first JOINED_MAX_MEMBERS in
 * JOINED (MORE set when there are more), the rest as JOIN events. */
static int build_joined(struct room_shard *s, const struct room *r, const struct room_info *j,
                        struct buf **frames)
{
    struct msg *m = s->scratch;
    memset(m, 0, sizeof(*m));
    m->type = MSG_JOINED;
    struct msg_joined *jd = &m->u.joined;
    jd->room_id.ptr = r->id;
    jd->room_id.len = r->id_len;
    jd->permissions = (uint8_t)(((j->flags & SNAPSHOT_MAY_PUBLISH) ? MSG_PERM_PUBLISH : 0) |
                                ((j->flags & SNAPSHOT_MAY_SUBSCRIBE) ? MSG_PERM_SUBSCRIBE : 0));
    jd->member_total = r->n_infos - 1;
    uint32_t i = 0;
    for (; i < r->n_infos && jd->n_members < JOINED_MAX_MEMBERS; i++) {
        const struct room_info *o = &r->infos[i];
        if (o->pid == j->pid)
            continue;
        struct msg_member *mm = &jd->members[jd->n_members++];
        mm->participant_id = o->pid;
        mm->flags = info_member_flags(o);
        mm->display_name.ptr = o->name;
        mm->display_name.len = o->name_len;
    }
    bool more = false;
    for (uint32_t k = i; k < r->n_infos; k++)
        if (r->infos[k].pid != j->pid)
            more = true;
    if (more)
        jd->flags |= MSG_JOINED_MORE;
    int rc = frame_into(frames, m);
    if (rc < 0 || !more)
        return rc < 0 ? rc : 0;
    while (i < r->n_infos) {
        memset(m, 0, sizeof(m->type) + sizeof(m->u.events));
        m->type = MSG_PARTICIPANT_EVENTS;
        struct msg_events *ev = &m->u.events;
        for (; i < r->n_infos && ev->n_events < EVENTS_MAX; i++) {
            const struct room_info *o = &r->infos[i];
            if (o->pid == j->pid)
                continue;
            struct msg_event *e = &ev->events[ev->n_events++];
            e->kind = MSG_EV_JOIN;
            e->participant_id = o->pid;
            e->flags = info_member_flags(o);
            e->display_name.ptr = o->name;
            e->display_name.len = o->name_len;
        }
        bool last = true;
        for (uint32_t k = i; k < r->n_infos; k++)
            if (r->infos[k].pid != j->pid)
                last = false;
        if (last)
            ev->flags |= MSG_EVENTS_SYNC_DONE;
        if (ev->n_events && (rc = frame_into(frames, m)) < 0)
            return rc;
    }
    return 0;
}

/* This turn's presence deltas as framed PARTICIPANT_EVENTS, coalesced: a
 * participant that joined and left in the same turn appears only as LEAVE
 * (harmless for the others: unknown LEAVEs are ignored). */
static int build_events(struct room_shard *s, const struct room *r, struct buf **frames)
{
    struct msg *m = s->scratch;
    uint32_t i = 0;
    while (i < r->n_events) {
        memset(m, 0, sizeof(m->type) + sizeof(m->u.events));
        m->type = MSG_PARTICIPANT_EVENTS;
        struct msg_events *ev = &m->u.events;
        for (; i < r->n_events && ev->n_events < EVENTS_MAX; i++) {
            const struct room_event *re = &r->events[i];
            struct msg_event *e = &ev->events[ev->n_events];
            e->participant_id = re->pid;
            if (re->kind == MSG_EV_JOIN) {
                const struct room_info *in = room_find_info(r, re->pid);
                if (in == NULL)
                    continue; /* left again this turn: its LEAVE follows */
                e->kind = MSG_EV_JOIN;
                e->flags = info_member_flags(in);
                e->display_name.ptr = in->name;
                e->display_name.len = in->name_len;
            } else {
                e->kind = MSG_EV_LEAVE;
            }
            ev->n_events++;
        }
        if (ev->n_events) {
            int rc = frame_into(frames, m);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void room_flush_one(struct room_shard *s, struct room *r)
{
    struct snapshot *prev = r->snap;
    struct snapshot *next = NULL;
    int rc = snapshot_build(prev, r->changes, r->n_changes, s->sh->n_workers,
                            s->sh->lim.max_members, &next);
    if (rc != 0) {
        /* Keep the batch; try again next turn. */
        log_error("event=snapshot_build_failed room_slot=%u err=\"%s\"", r->slot,
                  roost_strerror(rc));
        room_mark_dirty(s, r);
        return;
    }
    /* Pairs with rcu_dereference(r->snap) on the fan-out path. */
    rcu_assign_pointer(r->snap, next);
    if (prev != NULL)
        call_rcu(snapshot_rcu_head(prev), snapshot_free_rcu);
    STAT_INC(s, snapshots);
    uint64_t version = snapshot_version(next);
    r->n_changes = 0;

    /* Answers to this turn's joiners. */
    for (uint32_t k = 0; k < r->n_acks; k++) {
        const struct room_info *j = &r->acks[k];
        struct join_req jr = {
            .pid = j->pid,
            .slot = j->slot,
            .gen = j->gen,
            .join_seq = j->join_seq,
            .worker = j->worker,
        };
        struct buf *frames = NULL;
        if (build_joined(s, r, j, &frames) != 0) {
            buf_unref(frames);
            frames = NULL;
            log_error("event=joined_encode_failed pid=%u", j->pid);
        }
        send_ack(s, &jr, 0, r, version, frames);
    }
    r->n_acks = 0;

    /* One PARTICIPANT_EVENTS per turn, fanned out like media: one message
     * per worker that has members. */
    if (r->n_events && snapshot_count(next) > 0) {
        struct buf *frames = NULL;
        if (build_events(s, r, &frames) == 0 && frames != NULL) {
            unsigned ng = snapshot_group_count(next);
            for (unsigned g = 0; g < ng; g++) {
                unsigned wid;
                uint32_t cnt;
                snapshot_group(next, g, &wid, &cnt);
                struct events_msg em = {
                    .owner = s->id,
                    .room_slot = r->slot,
                    .room_gen = r->gen,
                    .version = version,
                    .b = buf_ref(frames),
                };
                struct worker_msg wm;
                msg_put(&wm, ROOM_MSG_EVENTS, &em, sizeof(em));
                shard_deliver_msg(s, wid, &wm, WORKER_MSG_CONTROL);
            }
        }
        buf_unref(frames);
    }
    r->n_events = 0;

    if (r->n_infos == 0)
        room_destroy(s, r);
}

void room_shard_flush(struct room_shard *s)
{
    struct room *r = s->dirty_head;
    s->dirty_head = NULL;
    while (r != NULL) {
        struct room *next = r->dirty_next;
        r->dirty = false;
        r->dirty_next = NULL;
        room_flush_one(s, r);
        r = next;
    }
}

/* ----------------------------------------------------------- member side */

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

static void on_ack(struct room_shard *s, struct buf *b)
{
    const struct ack_hdr *a = (const struct ack_hdr *)b->data;
    struct room_member *m = member_resolve(s, a->slot, a->gen);
    /* A member that left or re-joined since: its LEAVE already went to the
     * owner (after the JOIN, same ring), so just drop the answer. */
    if (m == NULL || m->state != MEMBER_JOINING || m->join_seq != a->join_seq)
        return;
    if (a->code == 0) {
        m->owner = a->owner;
        m->room_slot = a->room_slot;
        m->room_gen = a->room_gen;
        m->joined_version = a->version;
        member_cache_start(s, m);
    } else {
        m->state = MEMBER_IDLE;
    }
    deliver_frames(s, m, b->data + sizeof(*a), a->frames_len);
    if (a->code == 0) {
        /* JOINED went out; the other senders' caches follow, then live
         * frames (fan-out skips members not yet JOINED). */
        replay_caches(s, m);
        m->state = MEMBER_JOINED;
    }
    if (s->ops->joined)
        s->ops->joined(m->ep, a->code, s->arg);
}

static void on_events(struct room_shard *s, const struct events_msg *em)
{
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, em->owner, em->room_slot, em->room_gen);
    if (r != NULL) {
        uint32_t n;
        const struct snapshot_member *e =
            snapshot_worker_members(rcu_dereference(r->snap), s->id, &n);
        for (uint32_t i = 0; i < n; i++) {
            struct room_member *m = member_resolve(s, e[i].slot, e[i].gen);
            /* Joiners of this version (or later) got the state in JOINED. */
            if (m == NULL || m->state != MEMBER_JOINED || m->joined_version >= em->version)
                continue;
            deliver_frames(s, m, em->b->data, em->b->len);
            STAT_INC(s, events_sent);
        }
    }
    rcu_read_unlock();
    buf_unref(em->b);
}

static void on_replaced(struct room_shard *s, const struct replaced_msg *rm)
{
    struct room_member *m = member_resolve(s, rm->slot, rm->gen);
    if (m == NULL || m->pid != rm->pid || m->state == MEMBER_IDLE)
        return;
    m->state = MEMBER_IDLE; /* the owner already removed it */
    member_cache_stop(m);
    if (s->ops->replaced)
        s->ops->replaced(m->ep, s->arg);
}

/* ----------------------------------------------------- keyframe requests */

int room_keyframe_request(struct room_member *m, uint32_t target, uint8_t stream)
{
    struct room_shard *s = m->s;
    if (m->state != MEMBER_JOINED)
        return ROOST_ENOENT;
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
        STAT_INC(s, kfreq_unknown);
        return ROOST_ENOENT;
    }
    /* Suppression happens on the sender's worker: requests from receivers
     * on every worker meet there. */
    struct worker_msg wm;
    msg_put(&wm, ROOM_MSG_KFREQ, &km, sizeof(km));
    shard_deliver_msg(s, to, &wm, WORKER_MSG_CONTROL);
    return 0;
}

static void on_kfreq(struct room_shard *s, const struct kfreq_msg *km)
{
    struct room_member *m = member_resolve(s, km->slot, km->gen);
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
        STAT_INC(s, kfreq_suppressed);
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
    STAT_INC(s, kfreq_relayed);
}

/* ----------------------------------------------------------- link quality */

struct qrow {
    uint32_t owner, room_slot, room_gen;
    struct qreport_entry e;
    bool subscriber;
};

static int qrow_cmp(const void *a, const void *b)
{
    const struct qrow *x = a, *y = b;
    if (x->owner != y->owner)
        return x->owner < y->owner ? -1 : 1;
    if (x->room_slot != y->room_slot)
        return x->room_slot < y->room_slot ? -1 : 1;
    if (x->room_gen != y->room_gen)
        return x->room_gen < y->room_gen ? -1 : 1;
    return 0;
}

/* Own link: counters since the previous tick. */
static void member_quality(struct room_shard *s, struct room_member *m, uint64_t interval_ns)
{
    struct room_link l;
    if (s->ops->link_stats(m->ep, &l, s->arg) != 0)
        return;
    struct room_link p = m->q_have ? m->q_prev : (struct room_link){0};
    uint64_t lost = l.dgram_lost - p.dgram_lost;
    uint64_t acked = l.dgram_acked - p.dgram_acked;
    uint64_t dropped = l.dgram_dropped - p.dgram_dropped;
    uint64_t bytes_out = l.bytes_out - p.bytes_out;
    m->q_prev = l;
    m->q_have = true;
    m->q_loss = lost + acked ? (uint16_t)(lost * QUALITY_LOSS_MAX / (lost + acked)) : 0;
    m->q_rtt_us = (uint32_t)(l.srtt_ns / 1000u);

    struct msg *msg = s->scratch;
    memset(msg, 0, sizeof(msg->type) + sizeof(msg->u.quality));
    msg->type = MSG_QUALITY;
    struct msg_quality *q = &msg->u.quality;
    q->participant_id = m->pid;
    q->interval_ms = (uint32_t)(interval_ns / 1000000u);
    q->rtt_us = m->q_rtt_us;
    q->rttvar_us = (uint32_t)(l.rttvar_ns / 1000u);
    q->loss_permille = m->q_loss;
    q->dropped = (uint32_t)dropped;
    /* What we managed to send towards it: kbit/s over the interval. */
    q->est_kbps = interval_ns ? (uint32_t)(bytes_out * 8u * 1000000u / interval_ns) : 0;
    uint8_t body[64];
    int n = msg_encode_body(msg, body, sizeof(body));
    if (n < 0)
        return;
    s->ops->control(m->ep, body, (size_t)n, s->arg);
    STAT_INC(s, quality_sent);
}

/* One report per room to its owner: this worker's subscribers. */
static void send_reports(struct room_shard *s, struct qrow *rows, uint32_t n)
{
    qsort(rows, n, sizeof(*rows), qrow_cmp);
    uint32_t i = 0;
    while (i < n) {
        uint32_t j = i;
        uint32_t subs = 0;
        while (j < n && qrow_cmp(&rows[i], &rows[j]) == 0)
            subs += rows[j++].subscriber;
        struct buf *b =
            buf_new((uint32_t)(sizeof(struct qreport_hdr) + subs * sizeof(struct qreport_entry)));
        if (b != NULL) {
            struct qreport_hdr *h = (struct qreport_hdr *)b->data;
            struct qreport_entry *e = (struct qreport_entry *)(h + 1);
            memset(h, 0, sizeof(*h));
            h->room_slot = rows[i].room_slot;
            h->room_gen = rows[i].room_gen;
            h->worker = (uint16_t)s->id;
            for (uint32_t k = i; k < j; k++)
                if (rows[k].subscriber)
                    e[h->n++] = rows[k].e;
            b->len = (uint32_t)(sizeof(*h) + h->n * sizeof(*e));
            struct worker_msg wm;
            msg_put(&wm, ROOM_MSG_QREPORT, &b, sizeof(b));
            shard_deliver_msg(s, rows[i].owner, &wm, WORKER_MSG_CONTROL);
        }
        i = j;
    }
}

static void on_qreport(struct room_shard *s, struct buf *b)
{
    const struct qreport_hdr *h = (const struct qreport_hdr *)b->data;
    struct room_table *t = &s->sh->tables[s->id];
    if (h->room_slot >= t->cap || h->worker >= WORKER_MAX)
        return;
    struct room *r = t->slots[h->room_slot]; /* owner: no read section needed */
    if (r == NULL || r->gen != h->room_gen)
        return;
    buf_unref(r->qrep[h->worker]);
    r->qrep[h->worker] = buf_ref(b);
    r->qrep_t[h->worker] = worker_now(s->w);
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Median and maximum of sorted v[0..n) without one occurrence of `skip`
 * (the publisher's own entry, when it subscribes too). */
static void stat_skip(const uint32_t *v, uint32_t n, bool has_skip, uint32_t skip, uint32_t *med,
                      uint32_t *max)
{
    uint32_t si = n;
    if (has_skip)
        for (uint32_t i = 0; i < n; i++)
            if (v[i] == skip) {
                si = i;
                break;
            }
    uint32_t m = si < n ? n - 1 : n;
    if (m == 0) {
        *med = *max = 0;
        return;
    }
    uint32_t k = m / 2;
    *med = v[k >= si ? k + 1 : k];
    *max = v[m - 1 >= si ? m : m - 1];
}

/* Owner: every publisher of r gets a summary of the other subscribers,
 * one QSUM message per worker that has publishers. */
static void room_summarise(struct room_shard *s, struct room *r, uint64_t now)
{
    uint64_t stale = 2 * s->sh->lim.quality_interval_ns;
    uint32_t total = 0;
    for (unsigned w = 0; w < s->sh->n_workers; w++)
        if (r->qrep[w] != NULL && r->qrep_t[w] + stale >= now)
            total += ((const struct qreport_hdr *)r->qrep[w]->data)->n;
    struct qreport_entry *all = malloc((total + 1) * sizeof(*all));
    uint32_t *loss = malloc((total + 1) * sizeof(*loss)); /* permille, <= 1000 */
    uint32_t *rtt = malloc((total + 1) * sizeof(*rtt));
    struct qsum_entry *out = malloc((r->n_infos + 1) * sizeof(*out));
    if (all == NULL || loss == NULL || rtt == NULL || out == NULL)
        goto done;
    uint32_t n = 0;
    for (unsigned w = 0; w < s->sh->n_workers; w++) {
        if (r->qrep[w] == NULL || r->qrep_t[w] + stale < now)
            continue;
        const struct qreport_hdr *h = (const struct qreport_hdr *)r->qrep[w]->data;
        memcpy(&all[n], h + 1, h->n * sizeof(*all));
        n += h->n;
    }
    for (uint32_t i = 0; i < n; i++) {
        loss[i] = all[i].loss;
        rtt[i] = all[i].rtt_us;
    }
    qsort(loss, n, sizeof(*loss), u32_cmp);
    qsort(rtt, n, sizeof(*rtt), u32_cmp);
    /* Per worker, the publishers it delivers to. */
    for (unsigned w = 0; w < s->sh->n_workers; w++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < r->n_infos; i++) {
            const struct room_info *in = &r->infos[i];
            if (in->worker != w || !(in->flags & SNAPSHOT_MAY_PUBLISH))
                continue;
            const struct qreport_entry *self = NULL;
            for (uint32_t a = 0; a < n && self == NULL; a++)
                if (all[a].pid == in->pid)
                    self = &all[a];
            struct qsum_entry *q = &out[k++];
            memset(q, 0, sizeof(*q));
            q->slot = in->slot;
            q->gen = in->gen;
            q->pid = in->pid;
            q->sum.receivers = self ? n - 1 : n;
            uint32_t lmed, lmax;
            stat_skip(loss, n, self != NULL, self ? self->loss : 0, &lmed, &lmax);
            q->sum.loss_median = (uint16_t)lmed;
            q->sum.loss_worst = (uint16_t)lmax;
            stat_skip(rtt, n, self != NULL, self ? self->rtt_us : 0, &q->sum.rtt_median_us,
                      &q->sum.rtt_worst_us);
            /* Name the receiver with the worst loss (PROTOCOL.md §4.9:
             * a QUALITY about a subscriber's link). */
            q->sum.worst_pid = 0;
            uint16_t wl = 0;
            for (uint32_t a = 0; a < n; a++)
                if (&all[a] != self && (q->sum.worst_pid == 0 || all[a].loss > wl)) {
                    q->sum.worst_pid = all[a].pid;
                    wl = all[a].loss;
                }
        }
        if (k == 0)
            continue;
        struct buf *b = buf_new((uint32_t)(k * sizeof(*out)));
        if (b == NULL)
            continue;
        memcpy(b->data, out, k * sizeof(*out));
        b->len = (uint32_t)(k * sizeof(*out));
        struct worker_msg wm;
        msg_put(&wm, ROOM_MSG_QSUM, &b, sizeof(b));
        shard_deliver_msg(s, w, &wm, WORKER_MSG_CONTROL);
    }
done:
    free(all);
    free(loss);
    free(rtt);
    free(out);
}

static void on_qsum(struct room_shard *s, struct buf *b)
{
    uint32_t n = b->len / sizeof(struct qsum_entry);
    const struct qsum_entry *q = (const struct qsum_entry *)b->data;
    uint64_t interval_ms = s->sh->lim.quality_interval_ns / 1000000u;
    for (uint32_t i = 0; i < n; i++) {
        struct room_member *m = member_resolve(s, q[i].slot, q[i].gen);
        if (m == NULL || m->pid != q[i].pid || m->state != MEMBER_JOINED)
            continue;
        if (q[i].sum.receivers == 0)
            continue; /* nobody to describe */
        uint8_t body[128];
        int len = quality_summary_encode(&q[i].sum, (uint32_t)interval_ms, body, sizeof(body));
        if (len < 0)
            continue;
        s->ops->control(m->ep, body, (size_t)len, s->arg);
        STAT_INC(s, quality_sent);
    }
}

void room_shard_quality(struct room_shard *s, uint64_t now)
{
    if (s->ops->link_stats == NULL)
        return;
    uint64_t interval = s->sh->lim.quality_interval_ns;
    uint32_t live = s->mcap - s->n_mfree;
    struct qrow *rows = live ? malloc(live * sizeof(*rows)) : NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->mcap; i++) {
        struct room_member *m = s->mslots[i];
        if (m == NULL || m->state != MEMBER_JOINED)
            continue;
        member_quality(s, m, interval);
        if (rows != NULL && n < live)
            rows[n++] =
                (struct qrow){.owner = m->owner,
                              .room_slot = m->room_slot,
                              .room_gen = m->room_gen,
                              .e = {.pid = m->pid, .loss = m->q_loss, .rtt_us = m->q_rtt_us},
                              .subscriber = (m->perms & ROOM_PERM_SUBSCRIBE) != 0};
    }
    if (rows != NULL)
        send_reports(s, rows, n);
    free(rows);
    /* Owner side: summaries from the latest reports. */
    for (uint32_t bk = 0; bk <= s->bucket_mask; bk++)
        for (struct room *r = s->buckets[bk]; r != NULL; r = r->hnext)
            room_summarise(s, r, now);
}

/* ------------------------------------------------------------- messaging */

bool room_shard_on_msg(struct room_shard *s, const struct worker_msg *wm)
{
    struct buf *b;
    switch (wm->type) {
    case ROOM_MSG_JOIN:
        memcpy(&b, wm->u.bytes, sizeof(b));
        on_join(s, (const struct join_req *)b->data);
        buf_unref(b);
        return true;
    case ROOM_MSG_ACK:
        memcpy(&b, wm->u.bytes, sizeof(b));
        on_ack(s, b);
        buf_unref(b);
        return true;
    case ROOM_MSG_LEAVE:
        memcpy(&b, wm->u.bytes, sizeof(b));
        on_leave(s, (const struct leave_req *)b->data);
        buf_unref(b);
        return true;
    case ROOM_MSG_FANOUT: {
        struct fanout_msg fm;
        memcpy(&fm, wm->u.bytes, sizeof(fm));
        on_fanout(s, &fm);
        return true;
    }
    case ROOM_MSG_EVENTS: {
        struct events_msg em;
        memcpy(&em, wm->u.bytes, sizeof(em));
        on_events(s, &em);
        return true;
    }
    case ROOM_MSG_REPLACED: {
        struct replaced_msg rm;
        memcpy(&rm, wm->u.bytes, sizeof(rm));
        on_replaced(s, &rm);
        return true;
    }
    case ROOM_MSG_KFREQ: {
        struct kfreq_msg km;
        memcpy(&km, wm->u.bytes, sizeof(km));
        on_kfreq(s, &km);
        return true;
    }
    case ROOM_MSG_QREPORT:
        memcpy(&b, wm->u.bytes, sizeof(b));
        on_qreport(s, b);
        buf_unref(b);
        return true;
    case ROOM_MSG_QSUM:
        memcpy(&b, wm->u.bytes, sizeof(b));
        on_qsum(s, b);
        buf_unref(b);
        return true;
    default:
        return false;
    }
}

bool room_msg_discard(const struct worker_msg *wm)
{
    struct buf *b;
    switch (wm->type) {
    case ROOM_MSG_JOIN:
    case ROOM_MSG_ACK:
    case ROOM_MSG_LEAVE:
    case ROOM_MSG_QREPORT:
    case ROOM_MSG_QSUM:
        memcpy(&b, wm->u.bytes, sizeof(b));
        buf_unref(b);
        return true;
    case ROOM_MSG_FANOUT: {
        struct fanout_msg fm;
        memcpy(&fm, wm->u.bytes, sizeof(fm));
        buf_unref(fm.b);
        return true;
    }
    case ROOM_MSG_EVENTS: {
        struct events_msg em;
        memcpy(&em, wm->u.bytes, sizeof(em));
        buf_unref(em.b);
        return true;
    }
    case ROOM_MSG_REPLACED:
    case ROOM_MSG_KFREQ:
        return true;
    default:
        return false;
    }
}

/* Every room message goes through the runtime, to this worker included:
 * the local FIFO delivers it in the message phase, never on the sender's
 * stack, so a local join runs in the same order as a remote one. Control
 * is never dropped (rings spill; the local FIFO grows). */
static void shard_deliver_msg(struct room_shard *s, unsigned to, struct worker_msg *wm,
                              enum worker_msg_class cls)
{
    int rc = worker_send(s->w, to, wm, cls);
    if (rc != 0) {
        log_error("event=room_msg_send_failed type=0x%x to=%u err=\"%s\"", wm->type, to,
                  roost_strerror(rc));
        room_msg_discard(wm);
    }
}

static void shard_handle_msg(struct worker *w, const struct worker_msg *wm, void *arg)
{
    (void)w;
    room_shard_on_msg(arg, wm);
}

static void shard_discard_msg(const struct worker_msg *wm)
{
    room_msg_discard(wm);
}
