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
#include "room/snapshot.h"

/* Ring messages of this module. */
enum {
    ROOM_MSG_JOIN = ROOM_MSG_FIRST, /* member worker -> owner: struct join_req in a buf */
    ROOM_MSG_ACK,                   /* owner -> member worker: struct ack_hdr + frames in a buf */
    ROOM_MSG_LEAVE,                 /* member worker -> owner: struct leave_req in a buf */
    ROOM_MSG_FANOUT,                /* sender worker -> member worker: struct fanout_msg */
    ROOM_MSG_EVENTS,                /* owner -> member worker: struct events_msg */
    ROOM_MSG_REPLACED,              /* owner -> member worker: struct replaced_msg */
};

#define IDENTITY_MAX 64
#define ROOM_DEFAULT_MAX_ROOMS 10000u
#define ROOM_DEFAULT_MAX_MEMBERS 500u
#define ROOM_TABLE_MAX (1u << 20)

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

_Static_assert(sizeof(struct fanout_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct events_msg) <= 56, "fits a ring message");

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
    }
    free(sh);
}

unsigned room_shared_owner(const struct room_shared *sh, const uint8_t *room_id, size_t len)
{
    return hash_owner(&sh->key, room_id, len, sh->n_workers);
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
    /* The frame is written once; every delivery shares it. */
    int n = media_relay_datagram(dgram, len, m->pid, b->data, b->cap);
    if (n < 0) {
        buf_unref(b);
        STAT_INC(s, media_dropped_malformed);
        return ROOST_EMALFORMED;
    }
    b->len = (uint32_t)n;
    STAT_INC(s, media_in);

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
        m->state = MEMBER_JOINED;
        m->owner = a->owner;
        m->room_slot = a->room_slot;
        m->room_gen = a->room_gen;
        m->joined_version = a->version;
    } else {
        m->state = MEMBER_IDLE;
    }
    deliver_frames(s, m, b->data + sizeof(*a), a->frames_len);
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
    if (s->ops->replaced)
        s->ops->replaced(m->ep, s->arg);
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
        return true;
    default:
        return false;
    }
}

/* Control messages to self are handled inline; to others through the ring
 * (control never dropped: the runtime spills). */
static void shard_deliver_msg(struct room_shard *s, unsigned to, struct worker_msg *wm,
                              enum worker_msg_class cls)
{
    if (to == s->id) {
        room_shard_on_msg(s, wm);
        return;
    }
    int rc = worker_send(s->w, to, wm, cls);
    if (rc != 0) {
        log_error("event=room_msg_send_failed type=0x%x to=%u err=\"%s\"", wm->type, to,
                  roost_strerror(rc));
        room_msg_discard(wm);
    }
}
