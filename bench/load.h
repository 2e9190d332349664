/* The load generator: simulated participants on a few pinned threads, one
 * run of one workload (join, measure, drain), against the relay over QUIC
 * (lib/client) or against the floor over plain UDP (bench/floor.h).
 *
 * Rooms are placed whole on threads (room r on thread r % threads), so a
 * thread knows what every member of its rooms sent and computes exact
 * per-receiver expectations without sharing counters. Speakers are members
 * 0..speakers-1 of each room. Each media payload starts with the send time
 * (CLOCK_MONOTONIC ns, little-endian u64) and the sender's bench index
 * (u32), then the Opus frame; sequence numbers count the frames a sender
 * actually sent, so a gap is a loss.
 *
 * Phases: every thread connects and joins its participants (paced by the
 * join rate); once all have answered the controller opens the measurement
 * window [start, start + duration); speakers send on their frame clock; a
 * join storm, if asked for, joins extra idle participants during the
 * window; after the window the threads keep receiving for the drain time,
 * freeze their counters and report.
 *
 * load_run is called from one thread (the bench's main thread) and blocks
 * for the whole run. */
#ifndef ROOST_BENCH_LOAD_H
#define ROOST_BENCH_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/audio.h"
#include "client/hist.h"
#include "client/talk.h"
#include "proto/token.h"

struct floor;

/* Bench payload prefix after the media header. */
#define LOAD_PAYLOAD_HDR 12

enum load_mode {
    LOAD_QUIC = 0,
    LOAD_FLOOR = 1,
};

struct load_config {
    enum load_mode mode;
    const char *host; /* numeric IPv4/IPv6 */
    uint16_t port;
    uint32_t rooms, size, speakers;
    uint64_t duration_ns;
    uint64_t frame_ns;         /* frame duration (audio table) */
    uint64_t send_interval_ns; /* time between a speaker's frame slots (normally frame_ns) */
    uint64_t drain_ns;
    uint64_t join_timeout_ns;
    unsigned threads;
    const int *cpus; /* optional CPU list for the bench threads */
    unsigned n_cpus;
    bool pin;
    double join_rate;                 /* joins/s over all threads before the window; 0: unlimited */
    double storm_rate;                /* extra joins/s during the window; 0: none */
    const struct token_keyring *keys; /* QUIC: mints a token per participant */
    const char *ca_file, *pinned_cert, *server_name;
    struct talk_config talk;
    const struct audio_table *audio; /* borrowed for the run */
    const char *room_prefix;         /* room ids are "<prefix><n>" */
    int relay_pid;                   /* > 0: sample its CPU and RSS from /proc */
    struct floor *floor;             /* LOAD_FLOOR: sample its counters */
};

struct load_rx_stat {
    uint32_t idx, room, member;
    uint64_t expected, delivered, lost, dup, reordered;
};

struct load_tx_stat {
    uint32_t idx, room, member;
    uint64_t target, sent, skipped, failed;
    uint64_t expected, delivered; /* over every receiver of its room */
};

struct load_thread_stat {
    int cpu; /* -1: not pinned */
    unsigned participants;
    uint64_t cpu_ns, wall_ns; /* over the window and drain */
    double util;
    uint64_t target, sent;
    uint64_t max_late_ns; /* latest send behind its slot */
    bool saturated;
};

struct load_result {
    /* Totals of the window. */
    uint64_t target, sent, skipped, failed;
    uint64_t expected, delivered, lost, dup, reordered, foreign;
    double send_ratio; /* sent / target */
    double loss_ratio; /* lost / expected */
    uint64_t joins_ok, joins_failed, closed_early;
    uint64_t storm_planned, storm_ok, storm_failed;
    uint64_t window_ns;
    struct hist *latency, *join, *storm_join; /* one-way latency, JOIN -> JOINED */
    /* Per participant. */
    uint32_t n_rx, n_tx;
    struct load_rx_stat *rx;
    struct load_tx_stat *tx;
    unsigned n_threads;
    struct load_thread_stat *threads;
    /* The server side over the window (relay via /proc, or the floor). */
    double server_cpu_s;       /* < 0: unknown */
    uint64_t egress_datagrams; /* floor: exact; relay: media datagrams delivered (a lower bound) */
    long rss_before_kb, rss_joined_kb; /* relay VmRSS before joins and once joined; -1 unknown */
    char server_name[72];              /* from WELCOME */
    unsigned max_datagram;
    bool inconclusive;
    char reasons[512];
};

/* Runs the workload. res is filled (free it with load_result_free, also
 * after an error). Returns 0 (the run completed; it may still be
 * INCONCLUSIVE), ROOST_EINVAL (bad config), ROOST_ETIMEDOUT (joins did not
 * complete in time), ROOST_ENOMEM, ROOST_ESYS; err describes failures. */
int load_run(const struct load_config *cfg, struct load_result *res, char *err, size_t err_len);
void load_result_free(struct load_result *res);

/* /proc helpers: CPU time (utime + stime) of a process in seconds, and its
 * VmRSS in KiB. Return < 0 when unreadable. */
double load_proc_cpu_s(int pid);
long load_proc_rss_kb(int pid);

#endif
