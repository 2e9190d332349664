/* The relay's own counters over a bench window: roost-bench --metrics
 * HOST:PORT reads the relay's admin /metrics (Prometheus text) before and
 * after the window and keeps the differences of the families the per-frame
 * report needs (UDP packets in and out, DATAGRAM frames, loop turns, and
 * ACK-only packets in and QUIC packets written where the relay exports
 * them, and the trunk frames of a relay in a cluster). Each family is
 * summed over all its samples (workers, labels).
 *
 * Thread safety: none needed; load_run calls it from the main thread. */
#ifndef ROOST_BENCH_METRICS_H
#define ROOST_BENCH_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metrics_family {
    METRICS_PKTS_IN = 0,  /* roost_packets_received_total */
    METRICS_PKTS_OUT,     /* roost_packets_sent_total */
    METRICS_DGRAM_IN,     /* roost_datagrams_received_total */
    METRICS_DGRAM_OUT,    /* roost_datagrams_sent_total */
    METRICS_TURNS,        /* roost_worker_turns_total */
    METRICS_ACK_ONLY_IN,  /* the first family named *ack_only*_total */
    METRICS_PKTS_WRITTEN, /* the first family named *packets_written*_total */
    METRICS_TRUNK_OUT,    /* roost_trunk_frames_out: media datagrams sent on trunks */
    METRICS_TRUNK_IN,     /* roost_trunk_frames_in: media datagrams received on trunks */
    METRICS_N,
};

/* The relay-added latency histogram (roost_fanout_latency_seconds, from
 * a datagram's kernel receive timestamp to its queueing on the egress
 * worker), summed over workers: cumulative counts by upper bound `le` in
 * seconds (the last is +Inf), ascending. Any set of bounds is read, so a
 * relay with finer or coarser buckets parses the same. */
#define METRICS_LAT_MAX 64
struct metrics_lat {
    unsigned n;
    double le[METRICS_LAT_MAX];
    double cum[METRICS_LAT_MAX];
};

struct metrics_sample {
    bool ok;
    bool have[METRICS_N];
    double v[METRICS_N];
    struct metrics_lat lat;
};

/* The window's differences. A family is known when both samples had it. */
struct metrics_delta {
    bool ok; /* both scrapes succeeded */
    bool have[METRICS_N];
    uint64_t v[METRICS_N];
    struct metrics_lat lat; /* the window's samples by bound (after - before) */
};

/* Parses Prometheus text (len bytes, need not be NUL-terminated) into
 * out, summing each family's samples. Returns 0 (families not present
 * stay have = false). */
int metrics_parse(const char *text, size_t len, struct metrics_sample *out);
/* GET http://hostport/metrics (numeric IPv4 "a.b.c.d:port" or
 * "[v6]:port"), within timeout_ms. Returns 0, ROOST_EINVAL (bad address),
 * ROOST_ESYS, ROOST_ETIMEDOUT, ROOST_EMALFORMED (not a 200 answer). */
int metrics_scrape(const char *hostport, int timeout_ms, struct metrics_sample *out);
void metrics_diff(const struct metrics_sample *before, const struct metrics_sample *after,
                  struct metrics_delta *out);
/* The family's name as printed in reports. */
const char *metrics_name(enum metrics_family f);
/* The q-quantile (0 < q <= 1) of the window's relay-added latency in
 * seconds, interpolated linearly inside its bucket (the first bucket from
 * 0); INFINITY when it falls in +Inf; -1 when the window has no samples.
 * *n (optional) gets the number of samples. */
double metrics_latency_quantile(const struct metrics_delta *d, double q, uint64_t *n);

#endif
