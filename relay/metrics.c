#include "relay/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/memstat.h"
#include "relay/cluster.h"
#include "relay/relay.h"
#include "relay/trunk.h"

/* Growing text buffer; a failed allocation sticks and is reported once. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool nomem;
};

__attribute__((format(printf, 2, 3))) static void put(struct sbuf *b, const char *fmt, ...)
{
    if (b->nomem)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->nomem = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->nomem = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void head(struct sbuf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family with one sample per worker: value(ws) picks the field. */
#define PER_WORKER(b, name, type, help, expr)                                                      \
    do {                                                                                           \
        head(b, name, type, help);                                                                 \
        for (unsigned i_ = 0; i_ < n; i_++) {                                                      \
            const struct relay_worker_stats *s = &ws[i_];                                          \
            put(b, "%s{worker=\"%u\"} %llu\n", name, i_, (unsigned long long)(expr));              \
        }                                                                                          \
    } while (0)

struct labelled {
    const char *label;
    size_t off; /* offset of a uint64_t inside struct relay_worker_stats */
};

static void per_worker_labelled(struct sbuf *b, const struct relay_worker_stats *ws, unsigned n,
                                const char *name, const char *help, const char *key,
                                const struct labelled *v, size_t nv)
{
    head(b, name, "counter", help);
    for (unsigned i = 0; i < n; i++)
        for (size_t k = 0; k < nv; k++) {
            const uint64_t *p = (const uint64_t *)((const char *)&ws[i] + v[k].off);
            put(b, "%s{worker=\"%u\",%s=\"%s\"} %llu\n", name, i, key, v[k].label,
                (unsigned long long)*p);
        }
}

static void histogram(struct sbuf *b, const struct relay_worker_stats *ws, unsigned n,
                      const char *name, const char *help, size_t off)
{
    head(b, name, "histogram", help);
    for (unsigned i = 0; i < n; i++) {
        const struct relay_hist *h = (const struct relay_hist *)((const char *)&ws[i] + off);
        uint64_t cum = 0;
        for (unsigned k = 0; k < RELAY_HIST_N - 1; k++) {
            cum += h->bucket[k];
            put(b, "%s_bucket{worker=\"%u\",le=\"%.9g\"} %llu\n", name, i,
                (double)RELAY_HIST_BOUND_NS(k) / 1e9, (unsigned long long)cum);
        }
        /* +Inf must equal _count: take the larger in case the worker moved
         * between our reads of the buckets and of the count. */
        cum += h->bucket[RELAY_HIST_N - 1];
        uint64_t count = h->count > cum ? h->count : cum;
        put(b, "%s_bucket{worker=\"%u\",le=\"+Inf\"} %llu\n", name, i, (unsigned long long)count);
        put(b, "%s_sum{worker=\"%u\"} %.9f\n", name, i, (double)h->sum_ns / 1e9);
        put(b, "%s_count{worker=\"%u\"} %llu\n", name, i, (unsigned long long)count);
    }
}

#define OFF(f) offsetof(struct relay_worker_stats, f)

/* Heap per worker from its own jemalloc arena (core/memstat.h), and the
 * measured figure per connection: every worker's live bytes over every
 * worker's open connections. Absent without jemalloc. */
static void heap(struct sbuf *b, const struct relay_worker_stats *ws, unsigned n)
{
    uint64_t live = 0, conns = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!ws[i].heap_known)
            return;
        live += ws[i].heap_allocated;
        conns += ws[i].quic.conns_open;
    }
    head(b, "roost_worker_heap_bytes", "gauge",
         "Bytes in the worker's allocator arena: live (allocated) and active pages.");
    for (unsigned i = 0; i < n; i++) {
        put(b, "roost_worker_heap_bytes{worker=\"%u\",kind=\"allocated\"} %llu\n", i,
            (unsigned long long)ws[i].heap_allocated);
        put(b, "roost_worker_heap_bytes{worker=\"%u\",kind=\"active\"} %llu\n", i,
            (unsigned long long)ws[i].heap_active);
    }
    head(b, "roost_heap_per_connection_bytes", "gauge",
         "Workers' live heap divided by open connections (includes rooms and the "
         "workers' fixed state; 0 without connections).");
    put(b, "roost_heap_per_connection_bytes %llu\n",
        (unsigned long long)(conns ? live / conns : 0));
}

/* Trunks between relays (docs/CLUSTER.md §2.6): relay totals, only with
 * a cluster configured. */
static void trunk_metrics(struct sbuf *b, struct relay *r)
{
    if (!trunk_on(r))
        return;
    struct trunk_stats t;
    trunk_stats_total(r, &t);
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } f[] = {
#define TF(n, ty, h) {"roost_trunk_" #n, ty, h, offsetof(struct trunk_stats, n)}
        TF(trunks_up, "gauge", "Authenticated trunks to other relays."),
        TF(frames_out, "counter", "Media datagrams sent on trunks."),
        TF(frames_in, "counter", "Media datagrams received on trunks and fanned out."),
        TF(stale_gen_drops, "counter", "Trunk messages dropped for a stale lease generation."),
        TF(unknown_drops, "counter", "Trunk datagrams for an unknown room handle or sender."),
        TF(reconnects, "counter", "Dialed trunks re-established after a loss."),
        TF(trunks_lost, "counter", "Dialed trunks that went down."),
        TF(auth_failures, "counter", "Trunks closed for a failed HELLO (either side)."),
        TF(subs_accepted, "counter", "Room subscriptions accepted as home."),
        TF(subs_rejected, "counter", "Room subscriptions refused (not home, stale generation)."),
        TF(presence_in, "counter", "PRESENCE messages received on trunks."),
        TF(presence_out, "counter", "PRESENCE messages sent on trunks."),
        TF(kfreq_relayed, "counter", "Keyframe requests sent on trunks."),
        TF(prefix_conflicts, "counter",
           "Trunks refused because both relays have the same pid_prefix (either side)."),
        TF(quality_out, "counter", "Receiver link reports (QUALITY) sent on trunks."),
        TF(quality_in, "counter", "Receiver link reports (QUALITY) received on trunks."),
        TF(replay_in, "counter", "Keyframe-cache replay datagrams received on trunks."),
        TF(replay_dups, "counter",
           "Replayed datagrams this relay had already fanned out live: cached, not sent again."),
#undef TF
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&t + f[i].off, sizeof(v));
        head(b, f[i].name, f[i].type, f[i].help);
        put(b, "%s %llu\n", f[i].name, (unsigned long long)v);
    }
    head(b, "roost_trunk_gap_seconds_total", "counter",
         "Time dialed trunks were down before they came back.");
    put(b, "roost_trunk_gap_seconds_total %.6f\n", (double)t.gap_ns / 1e9);
}

int metrics_render(struct relay *r, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    unsigned n = relay_workers(r);
    struct relay_worker_stats *ws = calloc(n, sizeof(*ws));
    if (ws == NULL)
        return ROOST_ENOMEM;
    (void)memstat_refresh(); /* one allocator snapshot for every worker */
    for (unsigned i = 0; i < n; i++)
        relay_worker_stats(r, i, &ws[i]);
    struct relay_stats tot;
    relay_stats(r, &tot);
    struct relay_limits lim;
    relay_limits(r, &lim);

    struct sbuf b = {0};
    head(&b, "roost_build_info", "gauge", "Version of the running relay.");
    put(&b, "roost_build_info{version=\"0.1\"} 1\n");
    /* Process CPU (every thread: workers, admin, RCU), so that CPU per join
     * or per frame can be read as a ratio of two counters of one scrape. */
    struct timespec cpu;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0) {
        head(&b, "process_cpu_seconds_total", "counter", "User and system CPU of the relay.");
        put(&b, "process_cpu_seconds_total %.6f\n", (double)cpu.tv_sec + cpu.tv_nsec / 1e9);
    }
    head(&b, "roost_workers", "gauge", "Worker threads.");
    put(&b, "roost_workers %u\n", n);
    head(&b, "roost_draining", "gauge", "1 while draining after SIGTERM.");
    put(&b, "roost_draining %d\n", relay_draining(r) ? 1 : 0);
    head(&b, "roost_steering", "gauge",
         "1 when the kernel steers packets to their connection's worker by CID.");
    put(&b, "roost_steering %d\n", relay_steering(r) ? 1 : 0);
    head(&b, "roost_steering_mode", "gauge",
         "1 for the steering in force: ebpf (CID and moved-CID map), cbpf (CID byte) or hash.");
    put(&b, "roost_steering_mode{mode=\"%s\"} 1\n", relay_steering_mode(r));
    head(&b, "roost_affinity_max_members", "gauge",
         "Room-affine placement in force: rooms up to this many members keep them on the "
         "owner worker; 0: off ([limits] affinity_max_members, auto resolved at start).");
    put(&b, "roost_affinity_max_members %u\n", relay_affinity_max_members(r));
    head(&b, "roost_placement", "gauge",
         "1 for the placement of new rooms in force ([limits] placement): spread (by hash) or "
         "pack (fill the lowest-numbered worker up to pack_members participants).");
    put(&b, "roost_placement{mode=\"%s\"} 1\n", relay_placement(r));
    head(&b, "roost_placement_setting", "gauge",
         "1 for the placement in force and why: explicit ([limits] placement = spread|pack), "
         "auto:affinity / auto:no_affinity (auto: pack iff room affinity is in force), "
         "auto:cluster / cluster (a cluster relay always spreads).");
    put(&b, "roost_placement_setting{setting=\"%s\",why=\"%s\"} 1\n", relay_placement(r),
        relay_placement_why(r));
    head(&b, "roost_pack_members", "gauge",
         "Participants a worker owns before pack places new rooms on the next ([limits] "
         "pack_members).");
    put(&b, "roost_pack_members %u\n", relay_pack_members(r));
    head(&b, "roost_server_rooms", "gauge", "Live rooms, server-wide.");
    put(&b, "roost_server_rooms %lld\n", (long long)tot.rooms);
    head(&b, "roost_server_participants", "gauge",
         "Room members connected to this relay, server-wide (trunk members not counted).");
    put(&b, "roost_server_participants %lld\n", (long long)tot.participants);
    head(&b, "roost_server_trunk_members", "gauge",
         "Trunk members in rooms: one hidden member per (trunk, room), one remote member per "
         "participant of another relay.");
    put(&b, "roost_server_trunk_members %lld\n", (long long)tot.trunk_members);
    head(&b, "roost_server_connections", "gauge", "Open QUIC connections, server-wide.");
    uint64_t conns = 0;
    for (unsigned i = 0; i < n; i++)
        conns += ws[i].quic.conns_open;
    put(&b, "roost_server_connections %llu\n", (unsigned long long)conns);
    head(&b, "roost_limit", "gauge", "Configured admission limits.");
    put(&b, "roost_limit{limit=\"max_rooms\"} %u\n", lim.max_rooms);
    put(&b, "roost_limit{limit=\"max_members\"} %u\n", lim.max_members);
    put(&b, "roost_limit{limit=\"max_conns_per_worker\"} %u\n", lim.max_conns_per_worker);
    put(&b, "roost_limit{limit=\"max_half_open\"} %u\n", lim.max_half_open);
    put(&b, "roost_limit{limit=\"handshake_rate\"} %u\n", lim.handshake_rate);

    PER_WORKER(&b, "roost_connections", "gauge", "Open QUIC connections.", s->quic.conns_open);
    heap(&b, ws, n);
    PER_WORKER(&b, "roost_datagram_queues", "gauge",
               "Connections holding a datagram queue (made at a first datagram, freed when idle).",
               s->quic.dgram_queues);
    PER_WORKER(&b, "roost_connections_half_open", "gauge", "Handshakes in progress.",
               s->quic.conns_half_open);
    PER_WORKER(&b, "roost_rooms", "gauge", "Rooms owned by this worker.",
               s->room.rooms_created - s->room.rooms_destroyed + s->room.rooms_moved_in -
                   s->room.rooms_moved_out);
    PER_WORKER(&b, "roost_participants", "gauge",
               "Members of rooms owned by this worker (trunk members included).",
               s->room.joins - s->room.leaves + s->room.members_moved_in -
                   s->room.members_moved_out);
    PER_WORKER(&b, "roost_sessions_opened_total", "counter", "Protocol sessions opened.",
               s->relay.sessions_opened);
    PER_WORKER(&b, "roost_sessions_closed_total", "counter", "Protocol sessions closed.",
               s->relay.sessions_closed);

    static const struct labelled hs[] = {
        {"ok", OFF(quic.handshakes_ok)},
        {"failed", OFF(quic.handshakes_failed)},
        {"timeout", OFF(quic.handshake_timeouts)},
    };
    per_worker_labelled(&b, ws, n, "roost_handshakes_total", "QUIC handshakes by result.", "result",
                        hs, sizeof(hs) / sizeof(hs[0]));
    static const struct labelled stateless[] = {
        {"retry", OFF(quic.retry_sent)},
        {"stateless_reset", OFF(quic.reset_sent)},
        {"version_negotiation", OFF(quic.vn_sent)},
        {"connection_close", OFF(quic.close_sent)},
    };
    per_worker_labelled(&b, ws, n, "roost_stateless_sent_total",
                        "Stateless packets sent (Retry, reset, VN, CONNECTION_CLOSE).", "kind",
                        stateless, sizeof(stateless) / sizeof(stateless[0]));
    PER_WORKER(&b, "roost_stateless_rate_limited_total", "counter",
               "Stateless answers suppressed by their rate limit.", s->quic.rate_limited);

    PER_WORKER(&b, "roost_packets_received_total", "counter", "UDP datagrams received.",
               s->quic.pkts_in);
    /* Garbage, so an operator can tell a flood from real load (bad
     * Initials are roost_handshakes_total{result="failed"}). */
    static const struct labelled pdrops[] = {
        {"malformed", OFF(quic.malformed)},
        {"unknown_cid", OFF(quic.unknown_cid)},
        {"forward_failed", OFF(quic.fwd_dropped)},
        {"addr_budget", OFF(quic.budget_dropped_addr)},
        {"conn_budget", OFF(quic.budget_dropped_conn)},
    };
    per_worker_labelled(&b, ws, n, "roost_packets_dropped_total",
                        "UDP datagrams dropped before reaching a connection, by reason.", "reason",
                        pdrops, sizeof(pdrops) / sizeof(pdrops[0]));
    PER_WORKER(&b, "roost_budget_closes_total", "counter",
               "Connections closed RATE_LIMITED for exceeding their receive budget.",
               s->quic.budget_closed);
    PER_WORKER(&b, "roost_budget_addr_evictions_total", "counter",
               "Source addresses evicted from the bounded receive-budget table.",
               s->quic.budget_addr_evictions);
    PER_WORKER(&b, "roost_packets_sent_total", "counter", "UDP datagrams sent.", s->quic.pkts_out);
    PER_WORKER(&b, "roost_packets_forwarded_total", "counter",
               "UDP datagrams that arrived on another worker's socket and were passed to the "
               "connection's owner through a ring (about 0 with steering).",
               s->quic.fwd_out);
    static const struct labelled handoffs[] = {
        {"out", OFF(quic.handoffs_out)},
        {"in", OFF(quic.handoffs_in)},
        {"failed", OFF(quic.handoffs_failed)},
    };
    per_worker_labelled(&b, ws, n, "roost_handoffs_total",
                        "Connections handed to (out) or adopted from (in) another worker, and "
                        "hand-offs given up (lib/quic/handoff.h).",
                        "dir", handoffs, sizeof(handoffs) / sizeof(handoffs[0]));
    PER_WORKER(&b, "roost_rooms_placed_total", "counter",
               "New rooms hashing to this worker made on another one: it owned more than "
               "[limits] owner_share_max of the participants.",
               s->room.rooms_placed);
    head(&b, "roost_room_moves_total", "counter",
         "POST /rooms/{id}/move answers by result (docs/OPERATIONS.md).");
    for (unsigned k = 0; k < RELAY_MOVE_N; k++)
        put(&b, "roost_room_moves_total{result=\"%s\"} %llu\n", relay_move_result_names[k],
            (unsigned long long)relay_room_moves(r, (enum relay_move_result)k));
    PER_WORKER(&b, "roost_handoff_forward_cids", "gauge",
               "CIDs of connections that left this worker, still forwarded to their new worker.",
               s->quic.handoff_fwd_cids);
    PER_WORKER(&b, "roost_bytes_received_total", "counter", "UDP payload bytes received.",
               s->quic.bytes_in);
    PER_WORKER(&b, "roost_bytes_sent_total", "counter", "UDP payload bytes sent.",
               s->quic.bytes_out);
    PER_WORKER(&b, "roost_datagrams_received_total", "counter", "QUIC DATAGRAM frames received.",
               s->quic.dgram_in);
    PER_WORKER(&b, "roost_datagrams_sent_total", "counter", "QUIC DATAGRAM frames sent.",
               s->quic.dgram_out);
    PER_WORKER(&b, "roost_datagrams_spurious_loss_total", "counter",
               "Datagrams declared lost by QUIC, then acknowledged (reordering, not loss).",
               s->quic.dgram_spurious);
    PER_WORKER(&b, "roost_quic_packets_written_total", "counter",
               "QUIC packets connections wrote (frames per packet: datagrams packed / this).",
               s->quic.pkts_written);
    PER_WORKER(&b, "roost_quic_datagrams_packed_total", "counter",
               "DATAGRAM frames packed into those packets.", s->quic.dgram_out);
    PER_WORKER(&b, "roost_quic_ack_only_received_total", "counter",
               "Packets received that brought no stream data or datagram (ACK-only, mostly).",
               s->quic.ack_only_in);
    PER_WORKER(&b, "roost_quic_write_calls_total", "counter",
               "ngtcp2 packet write calls (write_pkt, writev_stream, writev_datagram).",
               s->quic.write_calls);
    PER_WORKER(&b, "roost_quic_write_empty_total", "counter",
               "ngtcp2 packet write calls that wrote nothing.", s->quic.write_empty);
    PER_WORKER(&b, "roost_quic_sendmmsg_calls_total", "counter", "sendmmsg calls.",
               s->quic.sendmmsg_calls);
    /* The timer and pacer paths of connwrite.c, so a per-frame profile
     * (scripts/frame-counters) can be read against them. */
    PER_WORKER(&b, "roost_quic_timer_fires_total", "counter", "Connection timers that fired.",
               s->quic.timer_fires);
    PER_WORKER(&b, "roost_quic_acks_settled_total", "counter",
               "Delayed-ACK timers settled by a write instead of a wake-up.", s->quic.acks_settled);
    PER_WORKER(&b, "roost_quic_pace_holds_total", "counter",
               "Writes the pacer made wait for its send time (datagrams or control bytes held).",
               s->quic.pace_holds);
    PER_WORKER(&b, "roost_quic_expiry_kept_total", "counter",
               "Datagram-only writes that re-armed the timer from the kept expiry.",
               s->quic.expiry_kept);
    PER_WORKER(&b, "roost_media_in_total", "counter", "Media datagrams accepted for fan-out.",
               s->room.media_in);
    PER_WORKER(&b, "roost_media_out_total", "counter", "Media deliveries to members.",
               s->room.media_out);
    static const struct labelled drops[] = {
        {"cwnd_aged", OFF(quic.dgram_drop_cwnd)},
        {"too_large", OFF(quic.dgram_drop_too_large)},
        {"queue_full", OFF(quic.dgram_drop_queue)},
        {"conn_state", OFF(quic.dgram_drop_state)},
        {"lost", OFF(quic.dgram_lost)},
        {"not_joined", OFF(relay.dgram_not_joined)},
        {"no_publish", OFF(room.media_dropped_no_publish)},
        {"malformed", OFF(room.media_dropped_malformed)},
        {"nomem", OFF(room.media_dropped_nomem)},
        {"delivery_failed", OFF(room.media_out_failed)},
        {"fanout_ring_full", OFF(room.fanout_ring_drops)},
        {"stale", OFF(room.stale_handles)},
        {"moved", OFF(room.media_lost_moved)},
    };
    per_worker_labelled(&b, ws, n, "roost_datagrams_dropped_total", "Datagrams dropped, by reason.",
                        "reason", drops, sizeof(drops) / sizeof(drops[0]));
    /* WebSocket (browser) connections, docs/PROTOCOL.md §11. */
    PER_WORKER(&b, "roost_ws_connections", "gauge", "Open WebSocket connections.",
               s->ws.conns_open);
    static const struct labelled wsdrops[] = {
        {"queue_full", OFF(ws.media_drop_queue)},
        {"stale", OFF(ws.media_drop_stale)},
        {"too_large", OFF(ws.media_drop_too_large)},
        {"conn_state", OFF(ws.media_drop_state)},
    };
    per_worker_labelled(&b, ws, n, "roost_ws_media_dropped_total",
                        "Media for WebSocket readers dropped (slow reader), by reason.", "reason",
                        wsdrops, sizeof(wsdrops) / sizeof(wsdrops[0]));
    PER_WORKER(&b, "roost_ws_too_slow_total", "counter",
               "WebSocket connections closed TOO_SLOW (control not written in time).",
               s->ws.too_slow);
    static const struct labelled wsconn[] = {
        {"ok", OFF(ws.handshakes_ok)},
        {"tls_failed", OFF(ws.tls_failed)},
        {"http_rejected", OFF(ws.http_rejected)},
        {"timeout", OFF(ws.handshake_timeouts)},
        {"refused_full", OFF(ws.refused_full)},
        {"refused_draining", OFF(ws.refused_draining)},
    };
    per_worker_labelled(&b, ws, n, "roost_ws_handshakes_total", "WebSocket upgrades, by outcome.",
                        "result", wsconn, sizeof(wsconn) / sizeof(wsconn[0]));
    static const struct labelled wsweb[] = {
        {"served", OFF(ws.web_served)},
        {"refused", OFF(ws.web_refused)},
    };
    per_worker_labelled(&b, ws, n, "roost_ws_web_requests_total",
                        "Static page requests on the WebSocket port, by outcome.", "result", wsweb,
                        sizeof(wsweb) / sizeof(wsweb[0]));
    PER_WORKER(&b, "roost_ring_drops_total", "counter",
               "Media messages dropped on a full inter-worker ring.", s->worker.ring_drops);
    PER_WORKER(&b, "roost_ring_spills_total", "counter",
               "Control messages spilled to the overflow queue.", s->worker.ring_spills);
    PER_WORKER(&b, "roost_ring_spill_full_total", "counter",
               "Control messages refused: the overflow queue to their worker at its bound.",
               s->worker.spill_full);
    PER_WORKER(&b, "roost_fanout_messages_total", "counter", "FANOUT messages to other workers.",
               s->room.fanout_sent);

    PER_WORKER(&b, "roost_joins_total", "counter", "Joins answered with JOINED.",
               s->relay.joins_ok);
    PER_WORKER(&b, "roost_leaves_total", "counter", "Members that left a room (any cause).",
               s->relay.leaves);
    static const struct labelled rej[] = {
        {"bad_token", OFF(relay.rejects_bad_token)},
        {"not_permitted", OFF(relay.rejects_not_permitted)},
        {"room_full", OFF(room.rejects_room_full)},
        {"server_full", OFF(room.rejects_server_full)},
    };
    per_worker_labelled(&b, ws, n, "roost_join_rejections_total", "JOIN_REJECTED answers, by code.",
                        "code", rej, sizeof(rej) / sizeof(rej[0]));
    static const struct labelled adm[] = {
        {"retry_half_open", OFF(quic.retry_half_open)},
        {"retry_handshake_rate", OFF(quic.retry_rate)},
        {"refused_conn_limit", OFF(quic.refused_full)},
        {"refused_draining", OFF(quic.refused_draining)},
        {"closed_draining", OFF(relay.rejects_draining)},
    };
    per_worker_labelled(&b, ws, n, "roost_admission_rejections_total",
                        "New connections answered with Retry or refused, by reason.", "reason", adm,
                        sizeof(adm) / sizeof(adm[0]));
    PER_WORKER(&b, "roost_goaway_sent_total", "counter", "GOAWAY messages sent (drain).",
               s->relay.goaway_sent);
    PER_WORKER(&b, "roost_protocol_violations_total", "counter",
               "Sessions closed for a protocol violation.", s->relay.protocol_violations);

    histogram(&b, ws, n, "roost_join_latency_seconds", "JOIN received to JOINED sent.",
              OFF(join_latency));
    histogram(&b, ws, n, "roost_fanout_latency_seconds",
              "Relay-internal delay from datagram ingress to queueing on the egress worker.",
              OFF(fanout_latency));
    PER_WORKER(&b, "roost_tls_resumed_total", "counter",
               "Handshakes that resumed a TLS session from a ticket.", s->quic.tls_resumed);
    PER_WORKER(&b, "roost_tls_resumed_psk_ke_total", "counter",
               "Resumed handshakes without a key exchange (psk_ke, no forward secrecy).",
               s->quic.tls_resumed_psk_ke);
    PER_WORKER(&b, "roost_tls_released_total", "counter",
               "TLS sessions freed once their handshake completed (server).", s->quic.tls_released);
    PER_WORKER(&b, "roost_join_latency_overflow_total", "counter",
               "Join latencies too large or unknown for the histogram's bounds (+Inf).",
               s->join_latency.overflow);
    PER_WORKER(&b, "roost_fanout_latency_overflow_total", "counter",
               "Fan-out latencies over 4.29 s or unknown (stamp wrapped), counted in +Inf.",
               s->fanout_latency.overflow);

    head(&b, "roost_worker_busy_seconds_total", "counter",
         "Time each worker spent outside epoll_wait.");
    for (unsigned i = 0; i < n; i++)
        put(&b, "roost_worker_busy_seconds_total{worker=\"%u\"} %.6f\n", i,
            (double)ws[i].worker.busy_ns / 1e9);
    PER_WORKER(&b, "roost_worker_turns_total", "counter", "Event loop turns.", s->worker.turns);
    PER_WORKER(&b, "roost_worker_batch_holds_total", "counter",
               "Turn cadence: waits of up to turn_batch_us between turns.", s->worker.holds);
    PER_WORKER(&b, "roost_worker_batch_holds_cut_total", "counter",
               "Turn cadence waits cut short by a control message, a post or stop.",
               s->worker.hold_ctl);
    PER_WORKER(&b, "roost_worker_batch_holds_timer_total", "counter",
               "Turn cadence waits ended early by a timer's deadline (plus timer slack).",
               s->worker.hold_timer);
    PER_WORKER(&b, "roost_worker_empty_turns_total", "counter",
               "Loop turns that found no fd event, message or due timer.", s->worker.empty_turns);
    PER_WORKER(&b, "roost_worker_blocking_waits_total", "counter",
               "epoll_wait calls that could sleep (no work pending; holds not included).",
               s->worker.blocks);
    PER_WORKER(&b, "roost_worker_polls_total", "counter",
               "epoll_wait calls that could not sleep (work pending, or after a hold).",
               s->worker.polls);
    PER_WORKER(&b, "roost_worker_wakeups_total", "counter",
               "eventfd wake-ups this worker received (ring, post, stop).", s->worker.wakeups);
    PER_WORKER(&b, "roost_worker_wakeups_sent_total", "counter",
               "eventfd writes this worker made to wake a sleeping worker.", s->worker.wakes_sent);
    PER_WORKER(&b, "roost_worker_messages_in_total", "counter",
               "Worker messages delivered (rings, posts, messages to self).", s->worker.msgs_in);
    trunk_metrics(&b, r);

    char cl[4096];
    if (relay_cluster(r) != NULL && cluster_metrics_text(relay_cluster(r), cl, sizeof(cl)) > 0)
        put(&b, "%s", cl);

    free(ws);
    if (b.nomem) {
        free(b.p);
        return ROOST_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
