/* Counters and their readers: relay_stats, relay_worker_stats and
 * relay_limits run on any thread and only read; relay_hist_add runs on the
 * histogram's worker. */
#include "relay/relay_int.h"

#include <stdatomic.h>
#include <string.h>

#include "quic/quic.h"
#include "room/room.h"

void relay_hist_add(struct relay_hist *h, uint64_t ns)
{
    /* Bounds are powers of two (4^i KiB-ns): the bucket is a bit count. */
    unsigned i = 0;
    if (ns > 1024) {
        unsigned bits = 64u - (unsigned)__builtin_clzll(ns - 1);
        i = (bits - 10 + 1) / 2;
        if (i > RELAY_HIST_N - 1)
            i = RELAY_HIST_N - 1;
    }
    __atomic_store_n(&h->bucket[i], h->bucket[i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sum_ns, h->sum_ns + ns, __ATOMIC_RELAXED);
}

static uint64_t rd(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void relay_stats(struct relay *r, struct relay_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->rooms = room_shared_rooms(r->rsh);
    out->participants = room_shared_participants(r->rsh);
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct relay_worker *rw = &r->rw[i];
        out->sessions_opened += rd(&rw->st.sessions_opened);
        out->sessions_closed += rd(&rw->st.sessions_closed);
        out->joins_ok += rd(&rw->st.joins_ok);
        out->join_rejects += rd(&rw->st.join_rejects);
        out->rejects_bad_token += rd(&rw->st.rejects_bad_token);
        out->rejects_not_permitted += rd(&rw->st.rejects_not_permitted);
        out->protocol_violations += rd(&rw->st.protocol_violations);
        out->dgram_not_joined += rd(&rw->st.dgram_not_joined);
        if (rw->rs != NULL) {
            struct room_stats rs;
            room_shard_stats(rw->rs, &rs);
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
    const uint64_t *src = (const uint64_t *)&rw->st;
    uint64_t *dst = (uint64_t *)&out->relay;
    for (size_t i = 0; i < sizeof(out->relay) / sizeof(uint64_t); i++)
        dst[i] = rd(&src[i]);
    const struct relay_hist *hs[2] = {&rw->h_join, &rw->h_fanout};
    struct relay_hist *hd[2] = {&out->join_latency, &out->fanout_latency};
    for (int k = 0; k < 2; k++) {
        for (unsigned i = 0; i < RELAY_HIST_N; i++)
            hd[k]->bucket[i] = rd(&hs[k]->bucket[i]);
        hd[k]->count = rd(&hs[k]->count);
        hd[k]->sum_ns = rd(&hs[k]->sum_ns);
    }
    quic_shared_stats(r->qsh, worker, &out->quic);
    /* The shard pointer is set once by its worker at start; relaxed read. */
    struct room_shard *shard = __atomic_load_n(&rw->rs, __ATOMIC_ACQUIRE);
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
    out->max_rooms = r->cfg.max_rooms ? r->cfg.max_rooms : 10000;
    out->max_members = r->cfg.max_members ? r->cfg.max_members : 500;
    out->max_conns_per_worker = atomic_load_explicit(&r->live_max_conns, memory_order_relaxed);
    out->max_half_open = atomic_load_explicit(&r->live_max_half_open, memory_order_relaxed);
    out->handshake_rate = r->cfg.handshake_rate;
}
