/* The load generator: simulated participants on a few pinned threads, one
 * run of one workload (join, measure, drain), against the relay over QUIC
 * (lib/client) and, for the last ws_per_room members of each room,
 * WebSocket (bench/wsclient.h), or against the floor over plain UDP
 * (bench/floor.h).
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
#include "bench/metrics.h"
#include "bench/netem.h"
#include "client/hist.h"
#include "client/talk.h"
#include "proto/token.h"

struct floor;

/* Bench payload prefix after the media header. */
#define LOAD_PAYLOAD_HDR 12

/* roost-bench --relays: at most this many relays. */
#define LOAD_RELAYS_MAX 8

/* One relay of a cluster run (--relays): its QUIC address, and optionally
 * its process id (CPU and RSS from /proc) and its admin endpoint (/metrics
 * before and after the window). */
struct load_relay {
    const char *host; /* numeric IPv4/IPv6 */
    uint16_t port;
    int pid;           /* > 0: sample its CPU from /proc */
    const char *admin; /* admin HOST:PORT, or NULL */
};

struct load_config;
/* The relay a participant connects to in a cluster run: member m of room r
 * goes to relay (r + m) mod n. Each room is spread round-robin over the
 * relays (a room of size >= n has a member on every relay, sizes differ by
 * at most one), and the rotation by r puts each room's member 0, the
 * first to join and so usually the room's home under the directory, on a
 * different relay. 0 without --relays. */
static inline unsigned load_relay_of(unsigned n_relays, uint32_t room, uint32_t member)
{
    return n_relays > 1 ? (unsigned)(((uint64_t)room + member) % n_relays) : 0;
}

enum load_mode {
    LOAD_QUIC = 0, /* the relay; some participants may be WebSocket ones (ws_per_room) */
    LOAD_FLOOR = 1,
};

/* A participant's transport (the per-transport breakdown of a run). */
enum load_transport {
    LOAD_TR_QUIC = 0, /* QUIC (or the floor's plain UDP) */
    LOAD_TR_WS = 1,   /* WebSocket (docs/PROTOCOL.md §11), LOAD_QUIC mode only */
    LOAD_TR_N,
};

/* The verdict of a run, and roost-bench's exit code (docs/BENCH.md). */
enum load_verdict {
    LOAD_OK = 0,           /* the relay met the SLO and the bench kept its schedule */
    LOAD_FAIL = 1,         /* the relay's fault: see load_result.fail_reasons */
    LOAD_INCONCLUSIVE = 2, /* the bench's fault: see load_result.bench_reasons */
};

/* How a participant's connection or join ended before the bench closed it;
 * counted per (kind, code) in load_result.ends. */
enum load_end_kind {
    LOAD_END_REJECTED = 0, /* JOIN_REJECTED; code: its PROTOCOL.md section 6 code */
    LOAD_END_CLOSED_APP,   /* CONNECTION_CLOSE from the relay; code: application code */
    LOAD_END_CLOSED_QUIC,  /* CONNECTION_CLOSE from the relay; code: transport code */
    LOAD_END_RESET,        /* stateless reset from the relay (it lost the connection) */
    LOAD_END_IDLE,         /* idle or handshake timeout: the relay stopped answering */
    LOAD_END_LOCAL,        /* the bench's QUIC stack closed it after an error; code: ngtcp2 error */
    LOAD_END_TIMEOUT,      /* join not answered within the join timeout */
    LOAD_END_SETUP,        /* the bench could not start it (socket, token): the bench's fault */
    LOAD_END_TCP,          /* WebSocket: TCP connect, TLS or the upgrade failed, or the
                            * connection ended without a Close frame; code: errno, gnutls
                            * error or HTTP status (0 if none) */
    LOAD_END_KINDS,
};

struct load_end {
    uint8_t kind;  /* enum load_end_kind */
    bool joined;   /* after JOINED (closed early), else the join failed */
    uint64_t code; /* see the kind; 0 if none */
    uint64_t n;
};
#define LOAD_ENDS_MAX 16 /* distinct (kind, joined, code); more are merged into the last */

struct load_config {
    enum load_mode mode;
    const char *host; /* numeric IPv4/IPv6 */
    uint16_t port;
    uint32_t rooms, size, speakers;
    uint64_t duration_ns;
    uint64_t frame_ns;         /* frame duration (audio table) */
    uint64_t send_interval_ns; /* time between a speaker's frame slots (normally frame_ns) */
    bool phase_packed;         /* speakers' first slots: bench/phase.h */
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
    uint64_t slo_p99_ns;             /* latency SLO (p99 one-way), always evaluated */
    double slo_loss;                 /* loss SLO, a ratio (0.001 = 0.1 %) */
    struct floor *floor;             /* LOAD_FLOOR: sample its counters */
    /* The emulated path (bench/netem.h) of every participant, both modes;
     * all zero: loopback as it is. The one-way latency recorded is net of
     * the path's nominal delay (rtt: rtt/2 each way). */
    struct netem_config path;
    const char *metrics_addr; /* the relay's admin HOST:PORT: /metrics over the window */
    /* WebSocket participants (LOAD_QUIC mode, path emulation off): the last
     * ws_per_room members of every room connect to ws_host:ws_port over
     * WebSocket (TLS with ca_file / pinned_cert / server_name, or plain
     * ws:// with ws_plain) instead of QUIC; the join storm stays QUIC. */
    uint32_t ws_per_room;
    const char *ws_host;
    uint16_t ws_port;
    bool ws_plain;
    /* A cluster run (--relays, LOAD_QUIC, no WebSocket): n_relays > 0
     * relays replace host/port, relay_pid and metrics_addr; participants
     * are spread over them by load_relay_of. */
    unsigned n_relays;
    const struct load_relay *relays;
};

struct load_rx_stat {
    uint32_t idx, room, member;
    uint8_t transport; /* enum load_transport */
    uint8_t relay;     /* index in load_config.relays (0 without --relays) */
    uint64_t expected, delivered, lost, dup, reordered;
};

struct load_tx_stat {
    uint32_t idx, room, member;
    uint8_t transport; /* enum load_transport */
    uint8_t relay;     /* index in load_config.relays (0 without --relays) */
    uint64_t target, sent, skipped, failed;
    uint64_t expected, delivered; /* over every receiver of its room */
};

struct load_thread_stat {
    int cpu; /* -1: not pinned */
    unsigned participants;
    uint64_t cpu_ns, wall_ns; /* over the window and drain */
    double util;
    uint64_t target, sent;
    uint64_t max_late_ns;  /* latest send behind its slot */
    uint64_t max_stall_ns; /* longest timed wait that woke past its deadline */
    uint64_t runq_ns;      /* time runnable but not running (schedstat run_delay); 0 unknown */
    bool saturated;
};

/* One transport's share of a run: its participants as senders (frames
 * they sent, and their delivery to every receiver) and as receivers
 * (frames expected at them, delivered, lost, latency at them). */
struct load_transport_stat {
    uint32_t participants, speakers;
    uint64_t joins_ok, joins_failed, closed_early;
    uint64_t target, sent, skipped, failed;
    uint64_t tx_expected, tx_delivered;       /* as senders */
    uint64_t rx_expected, rx_delivered, lost; /* as receivers */
    struct hist *latency;                     /* at its receivers */
};

/* One relay's share of a cluster run (--relays): its participants as
 * senders and receivers, its process and its own counters. */
struct load_relay_stat {
    uint32_t participants, speakers;
    uint64_t joins_ok, joins_failed, closed_early;
    uint64_t sent;                            /* frames its participants sent */
    uint64_t rx_expected, rx_delivered, lost; /* at its participants */
    double cpu_s;                             /* over the window; < 0 unknown */
    bool gone;                                /* its process exited during the run */
    struct metrics_delta counters;            /* its /metrics over the window */
};

struct load_result {
    /* Totals of the window. */
    uint64_t target, sent, skipped, failed;
    uint64_t expected, delivered, lost, dup, reordered, foreign;
    double send_ratio;     /* sent / target */
    double schedule_ratio; /* (target - skipped) / target: slots the bench reached in time */
    double loss_ratio;     /* lost / expected */
    uint64_t joins_ok, joins_failed, closed_early;
    struct load_end ends[LOAD_ENDS_MAX]; /* how failed joins and early closes ended */
    unsigned n_ends;
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
    double server_runq_s;      /* --relay-pid: time its threads waited for a CPU; < 0 unknown */
    uint64_t egress_datagrams; /* floor: exact; relay: media datagrams delivered (a lower bound) */
    long rss_before_kb, rss_joined_kb; /* relay VmRSS before joins and once joined; -1 unknown */
    char server_name[72];              /* from WELCOME */
    unsigned max_datagram;
    bool relay_gone; /* relay_pid exited (or is a zombie) by the end of the run */
    /* The server's own counters over the window (relay: /metrics, when
     * metrics_addr is set; floor: exact), and the path emulation's. */
    struct metrics_delta server_counters;
    struct netem_stats path_stats; /* summed over the bench threads */
    /* The SLO, always evaluated (on the window's latency and loss). */
    uint64_t p99_ns;
    bool slo_p99_met, slo_loss_met;
    /* The verdict (bench/verdict.h: what each means, and the precedence). */
    enum load_verdict verdict;
    bool relay_fault; /* a relay fault was seen (fail_reasons, not the SLO) */
    /* The bench did not generate the workload asked for (send schedule not
     * kept, a bench thread saturated, participants not set up): every
     * figure, the relay's CPU included, measures the bench. Set even when a
     * relay fault makes the verdict FAIL; not set for a stall that only
     * explains a broken SLO (the verdict is INCONCLUSIVE, the workload was
     * generated). */
    bool inconclusive;
    char fail_reasons[512];  /* the relay's faults and broken SLO, "; "-separated */
    char bench_reasons[512]; /* the bench's faults */
    char reasons[1040];      /* both: fail_reasons, then bench_reasons */
    /* Per transport (enum load_transport). */
    struct load_transport_stat tr[LOAD_TR_N];
    /* A cluster run (--relays): per relay, and the one-way latency per
     * (sender's relay, receiver's relay): pair_latency[from * n + to]. The
     * totals above (server_cpu_s, server_counters) are sums over the
     * relays. trunk_ideal: frames that must cross a trunk at least, sum
     * over the frames sent of (relays with members of the sender's room -
     * 1): each other relay of the room receives each frame once. */
    unsigned n_relays;
    struct load_relay_stat relays[LOAD_RELAYS_MAX];
    struct hist *pair_latency;
    uint64_t trunk_ideal;
    int gone_pid; /* the first relay found gone (relay_gone) */
};

/* Runs the workload. res is filled (free it with load_result_free, also
 * after an error). Returns 0 (the run completed, with a verdict; joins
 * that did not complete within the join timeout are a FAIL, not an
 * error), ROOST_EINVAL (bad config), ROOST_ETIMEDOUT (the bench threads did
 * not finish the window), ROOST_ENOMEM, ROOST_ESYS; err describes
 * failures. */
int load_run(const struct load_config *cfg, struct load_result *res, char *err, size_t err_len);
void load_result_free(struct load_result *res);

#endif
