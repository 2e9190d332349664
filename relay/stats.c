/* Counters and their readers: relay_stats, relay_worker_stats and
 * relay_limits run on any thread and only read; relay_hist_add runs on the
 * histogram's worker. */
#include "relay/relay_int.h"

#include <stdatomic.h>
#include <string.h>

#include "core/buf.h"
#include "core/memstat.h"
#include "core/stat.h"
#include "quic/quic.h"
#include "room/room.h"

/* The slot arrays are read back as these structs. */
_Static_assert(sizeof(struct relay_wcounters) % sizeof(uint64_t) == 0, "only uint64_t fields");
_Static_assert(sizeof(struct relay_hist) % sizeof(uint64_t) == 0, "only uint64_t fields");

const uint64_t relay_hist_bound_ns[RELAY_HIST_N - 1] = {
    1024,    4096,     16384,    65536,     100000,     150000,        200000,  262144,
    350000,  500000,   750000,   1000000,   1048576,    1500000,       2000000, 3000000,
    4194304, 16777216, 67108864, 268435456, 1073741824, 4294967296ull,
};

void relay_hist_add(_Atomic uint64_t *h, uint64_t ns)
{
    /* The first bound >= ns (binary search over the 22 finite bounds);
     * none: +Inf. */
    unsigned i;
    if (ns == BUF_STAMP_UNKNOWN) {
        i = RELAY_HIST_N - 1;
        ns = RELAY_HIST_BOUND_NS(RELAY_HIST_N - 2); /* a lower bound for the sum */
    } else {
        unsigned lo = 0, hi = RELAY_HIST_N - 1;
        while (lo < hi) {
            unsigned mid = (lo + hi) / 2;
            if (relay_hist_bound_ns[mid] >= ns)
                hi = mid;
            else
                lo = mid + 1;
        }
        i = lo;
    }
    stat_inc(h, STAT_IDX(struct relay_hist, bucket) + i);
    stat_inc(h, STAT_IDX(struct relay_hist, count));
    stat_add(h, STAT_IDX(struct relay_hist, sum_ns), ns);
    if (i == RELAY_HIST_N - 1)
        stat_inc(h, STAT_IDX(struct relay_hist, overflow));
}

void relay_hist_add_stamp(_Atomic uint64_t *h, uint32_t d)
{
    relay_hist_add(h, buf_stamp_ns(d));
}

/* Another worker's room shard, or NULL before its start and after its stop.
 * The acquire pairs with the release store in w_start (relay/relay.c): a
 * non-NULL shard was initialised before it was published. */
static struct room_shard *shard_of(struct relay_worker *rw)
{
    return atomic_load_explicit(&rw->rs, memory_order_acquire);
}

void relay_stats(struct relay *r, struct relay_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->rooms = room_shared_rooms(r->rsh);
    out->participants = room_shared_participants(r->rsh);
    out->trunk_members = room_shared_trunk_members(r->rsh);
    struct relay_wcounters c;
    memset(&c, 0, sizeof(c));
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct relay_worker *rw = &r->rw[i];
        stat_sum((uint64_t *)&c, rw->st, STAT_N(struct relay_wcounters));
        struct room_shard *shard = shard_of(rw);
        if (shard != NULL) {
            struct room_stats rs;
            room_shard_stats(shard, &rs);
            out->rejects_room_full += rs.rejects_room_full;
            out->rejects_server_full += rs.rejects_server_full;
            out->replaced += rs.replaced;
            out->media_in += rs.media_in;
            out->media_out += rs.media_out;
            out->media_dropped += rs.media_dropped_no_publish + rs.media_dropped_malformed +
                                  rs.media_dropped_nomem + rs.media_out_failed;
            out->fanout_sent += rs.fanout_sent;
            out->fanout_ring_drops += rs.fanout_ring_drops;
            out->snapshots += rs.snapshots;
        }
    }
    out->sessions_opened = c.sessions_opened;
    out->sessions_closed = c.sessions_closed;
    out->joins_ok = c.joins_ok;
    out->join_rejects = c.join_rejects;
    out->rejects_bad_token = c.rejects_bad_token;
    out->rejects_not_permitted = c.rejects_not_permitted;
    out->protocol_violations = c.protocol_violations;
    out->dgram_not_joined = c.dgram_not_joined;
    out->conns_open = out->sessions_opened - out->sessions_closed;
    struct quic_stats qs;
    quic_shared_stats_total(r->qsh, &qs);
    out->quic_fwd_in = qs.fwd_in;
}

void relay_worker_stats(struct relay *r, unsigned worker, struct relay_worker_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->cpu = -1;
    if (worker >= r->n_workers)
        return;
    struct relay_worker *rw = &r->rw[worker];
    stat_read((uint64_t *)&out->relay, rw->st, STAT_N(struct relay_wcounters));
    stat_read((uint64_t *)&out->join_latency, rw->h_join, STAT_N(struct relay_hist));
    stat_read((uint64_t *)&out->fanout_latency, rw->h_fanout, STAT_N(struct relay_hist));
    quic_shared_stats(r->qsh, worker, &out->quic);
    struct memstat_arena ma;
    if (memstat_arena(atomic_load_explicit(&rw->arena, memory_order_relaxed), &ma)) {
        out->heap_known = true;
        out->heap_allocated = ma.allocated;
        out->heap_active = ma.resident;
    }
    if (r->wsh != NULL)
        ws_shared_stats(r->wsh, worker, &out->ws);
    struct room_shard *shard = shard_of(rw);
    if (shard != NULL)
        room_shard_stats(shard, &out->room);
    if (r->pool != NULL) {
        worker_pool_stats(r->pool, worker, &out->worker);
        struct worker *w = worker_pool_get(r->pool, worker);
        if (w != NULL && r->started)
            out->cpu = worker_cpu(w);
    }
}

void relay_limits(struct relay *r, struct relay_limits *out)
{
    out->max_rooms = r->cfg.max_rooms ? r->cfg.max_rooms : ROOM_DEFAULT_MAX_ROOMS;
    out->max_members = r->cfg.max_members ? r->cfg.max_members : ROOM_DEFAULT_MAX_MEMBERS;
    out->max_conns_per_worker = atomic_load_explicit(&r->live_max_conns, memory_order_relaxed);
    out->max_half_open = atomic_load_explicit(&r->live_max_half_open, memory_order_relaxed);
    out->handshake_rate = r->cfg.handshake_rate;
}
