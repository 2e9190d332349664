/* Private to the load generator: the run, its bench threads and their
 * simulated participants, shared by the driver (bench/load.c: threads,
 * endpoints, aggregation; bench/loop.c: the thread loop, pacing, join storm,
 * window; bench/verdict.c judges the result) and
 * the participant model
 * (bench/participant.c: talk schedule, frames, JOIN, per-receiver sequence
 * and latency bookkeeping). Each struct bp and struct lthread is touched only
 * by its bench thread, except where struct load says otherwise. */
#ifndef ROOST_BENCH_LOAD_INT_H
#define ROOST_BENCH_LOAD_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "bench/load.h"
#include "bench/wsclient.h"
#include "client/client.h"
#include "client/hist.h"
#include "client/talk.h"
#include "core/timer.h"
#include "proto/msg.h"

#define RX_BATCH 32
#define RX_MAX 2048

enum phase {
    PH_JOIN = 0,
    PH_MEASURE = 1,
    PH_CLOSE = 2,
};

enum bp_state {
    BP_IDLE = 0,
    BP_CONNECTING,
    BP_JOINING, /* JOIN sent */
    BP_JOINED,
    BP_FAILED,
};

/* What a receiver knows about one speaker of its room. */
struct rxs {
    uint32_t next; /* highest sequence seen + 1 */
    uint64_t win;  /* bit i: sequence next-1-i was received */
    uint64_t got;  /* distinct frames received */
};

struct lthread;

/* One simulated participant. */
struct bp {
    struct lthread *t;
    struct roost_conn *c; /* QUIC */
    struct wscl *ws;      /* WebSocket (is_ws) */
    bool is_ws;
    int fd; /* floor: connected UDP socket */
    uint32_t idx, room, member;
    uint8_t relay; /* index in struct load.rl (load_relay_of) */
    bool speaker, storm;
    uint8_t st;
    uint64_t t_join; /* JOIN sent */
    uint32_t pid;
    struct netem_flow nmf; /* the path emulation keeps this flow's order */
    /* Sender. */
    struct timer tm;
    struct talk talk;
    uint64_t next; /* the slot the timer fires for */
    uint32_t seq, pos;
    uint64_t target, sent, skipped, failed;
    /* Presence: the other members this participant has been told of
     * (JOINED's list, then JOIN/LEAVE events); peers_done once it saw the
     * whole room (--relays waits for it, see load_run). */
    int32_t peers;
    bool peers_done;
    /* Receiver: one entry per speaker of the room. */
    struct rxs *rx;
    uint64_t dup, reordered, foreign;
};

struct load;

struct lthread {
    struct load *L;
    unsigned id;
    pthread_t th;
    bool started;
    int cpu;
    struct roost_client *cl;
    int epfd; /* floor mode, or WebSocket participants (then it holds the client's fd too) */
    struct timers *timers;
    struct netem *nm; /* path emulation (--rtt, --jitter, --loss), or NULL */
    struct bp *p;     /* base participants then storm participants */
    uint32_t n_base, n_storm;
    uint32_t next_base, next_storm; /* next to connect */
    uint32_t answered_base;
    /* Base participants that saw every other member of their room
     * (bp.peers_done); read by load_run. */
    _Atomic uint32_t presence_ok;
    uint64_t join_t0;
    bool ready, measuring, finished;
    uint64_t cpu0, wall0;
    uint64_t max_late;
    uint64_t max_stall; /* longest wake-up past its deadline, in the window */
    uint64_t runq0;     /* schedstat run_delay at the window's start */
    struct msg msg;     /* decode scratch */
    struct hist lat, join, sjoin;
    struct hist lat_tr[LOAD_TR_N]; /* lat by the receiver's transport */
    uint64_t joins_ok, joins_failed, closed_early, storm_ok, storm_failed;
    uint64_t tr_joins_ok[LOAD_TR_N], tr_joins_failed[LOAD_TR_N], tr_closed_early[LOAD_TR_N];
    uint64_t rl_joins_ok[LOAD_RELAYS_MAX], rl_joins_failed[LOAD_RELAYS_MAX],
        rl_closed_early[LOAD_RELAYS_MAX]; /* by the participant's relay */
    struct hist *lat_pair;  /* --relays: n * n, [sender's relay * n + receiver's relay] */
    struct wscl_tls *wstls; /* WebSocket participants over TLS */
    struct load_end ends[LOAD_ENDS_MAX];
    unsigned n_ends;
    char server_name[72];
    unsigned max_datagram;
    /* Frozen at the end of the drain. */
    struct load_rx_stat *rxs;
    struct load_tx_stat *txs;
    uint32_t n_rxs, n_txs;
    struct load_thread_stat ts;
    uint8_t rbuf[RX_BATCH][RX_MAX];
};

struct load {
    const struct load_config *cfg;
    struct lthread **t;
    _Atomic int phase;
    _Atomic unsigned ready, done;
    /* Set by load_run when the join timeout passed: every thread gives up
     * on its unanswered joins (LOAD_END_TIMEOUT) and reports ready. */
    _Atomic bool joins_expired;
    /* Written before the release store of PH_MEASURE, read after the
     * acquire load that sees it. */
    uint64_t start_ns, end_ns;
    struct udp_dest {
        struct sockaddr_storage ss;
        socklen_t len;
    } dest;
    /* The relays participants connect to (LOAD_QUIC): cfg->relays, or the
     * one relay of cfg->host/port/relay_pid/metrics_addr. */
    struct load_relay rl[LOAD_RELAYS_MAX];
    unsigned n_rl;
};

/* Floor mode: sends a datagram on p's socket, through the emulated path
 * when there is one (bench/load.c). Returns 0 or ROOST_ESYS. */
int load_floor_send(struct bp *p, const uint8_t *d, size_t len);
/* Floor mode: opens p's socket on t's epoll set and sends its join; reads
 * and handles what p's socket holds (bench/load.c). */
int load_floor_connect(struct lthread *t, struct bp *p);
void load_floor_read(struct lthread *t, struct bp *p);
/* A bench thread's body (bench/loop.c; arg: its struct lthread). */
void *load_thread_main(void *arg);

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
