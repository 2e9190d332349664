/* Rooms: the shared state, the shards' lifecycle and counters. The sides
 * live in owner.c, member.c, fanout.c and quality.c, the message switch in
 * dispatch.c; see room_int.h for who calls whom. */
#include "room/room.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/stat.h"
#include "core/worker.h"
#include "room/kfcache.h"
#include "room/room_int.h"

_Static_assert(ROOM_DEFAULT_KEYFRAME_CAP == KFCACHE_DEFAULT_CAP, "one default keyframe cap");

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
    sh->lim.keyframe_cap = lim && lim->keyframe_cap ? lim->keyframe_cap : ROOM_DEFAULT_KEYFRAME_CAP;
    sh->lim.prefill_ms = lim ? lim->prefill_ms : 0;
    sh->lim.pid_prefix = lim ? lim->pid_prefix : 0;
    sh->lim.affinity_max_members = lim ? lim->affinity_max_members : 0;
    sh->lim.owner_share_max = lim ? lim->owner_share_max : 0;
    sh->lim.placement = lim ? lim->placement : ROOM_PLACE_SPREAD;
    sh->lim.pack_members = lim && lim->pack_members ? lim->pack_members : ROOM_DEFAULT_PACK_MEMBERS;
    sh->lim.keyframe_sender_bytes = lim && lim->keyframe_sender_bytes
                                        ? lim->keyframe_sender_bytes
                                        : ROOM_DEFAULT_KEYFRAME_SENDER_BYTES;
    sh->lim.keyframe_sender_pkts = lim && lim->keyframe_sender_pkts
                                       ? lim->keyframe_sender_pkts
                                       : ROOM_DEFAULT_KEYFRAME_SENDER_PKTS;
    sh->lim.replay_max_pkts =
        lim && lim->replay_max_pkts ? lim->replay_max_pkts : ROOM_DEFAULT_REPLAY_MAX_PKTS;
    sh->lim.kfreq_window_ns =
        lim && lim->kfreq_window_ns ? lim->kfreq_window_ns : ROOM_DEFAULT_KFREQ_WINDOW_NS;
    sh->lim.quality_interval_ns = lim && lim->quality_interval_ns
                                      ? lim->quality_interval_ns
                                      : ROOM_DEFAULT_QUALITY_INTERVAL_NS;
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
    return room_owner_of(sh, room_id, len);
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

int64_t room_shared_trunk_members(const struct room_shared *sh)
{
    return atomic_load_explicit(&sh->trunk_members, memory_order_relaxed);
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
    place_owed_init(s); /* first: room_shard_del cancels its timer */
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
    s->placed = calloc(256, sizeof(*s->placed));
    s->placed_mask = 255;
    if (s->buckets == NULL || s->scratch == NULL || s->placed == NULL) {
        room_shard_del(s);
        return ROOST_ENOMEM;
    }
    s->bucket_mask = nb - 1;
    /* The runtime hands this module's messages straight to the shard. */
    int rc = room_dispatch_register(s);
    if (rc != 0) {
        room_shard_del(s);
        return rc;
    }
    *out = s;
    return 0;
}

void room_shard_del(struct room_shard *s)
{
    if (s == NULL)
        return;
    if (s->buckets != NULL)
        owner_free_rooms(s);
    place_free(s);
    free(s->buckets);
    free(s->placed);
    free(s->mslots);
    free(s->mgens);
    free(s->mfree);
    free(s->pid_skip);
    free(s->scratch);
    free(s->q.rows);
    free(s->q.all);
    free(s->q.loss);
    free(s->q.rtt);
    free(s->q.byp);
    free(s->q.out);
    free(s);
}

void room_shard_stats(const struct room_shard *s, struct room_stats *out)
{
    stat_read((uint64_t *)out, s->st, STAT_N(struct room_stats));
}
