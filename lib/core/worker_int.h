/* Worker runtime, private to lib/core/worker.c (the loop: sending,
 * receiving, fds) and lib/core/worker_pool.c (threads: start-up, shutdown,
 * the pool). Not for other modules: they see lib/core/worker.h. */
#ifndef ROOST_CORE_WORKER_INT_H
#define ROOST_CORE_WORKER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

#include "core/msgq.h"
#include "core/stat.h"
#include "core/worker.h"

#define DEFAULT_RING_CAPACITY 4096
#define DEFAULT_SPILL_MAX 4096 /* spilled REQUESTs per destination */
#define RING_BURST 32          /* messages popped per ring read */
#define RING_TURN_BUDGET 1024  /* messages taken from one ring per turn */
#define MAX_EVENTS 64
#define EVFD_TAG UINT64_MAX /* epoll data of the wakeup eventfd */
#define CACHE_LINE 64
#define HANDLERS_MAX 8 /* type ranges per worker: one per module (quic, room, relay) */

struct fd_entry {
    worker_fd_cb cb;
    void *arg;
    uint32_t gen; /* bumped on del: stale events of a reused fd are ignored */
    bool used;
};

/* A registered type range (worker_handle). */
struct handler_ent {
    struct worker_handler h;
    void *arg;
};

struct worker {
    /* Owner-only fields first (HAProxy tinfo style). */
    struct worker_pool *pool;
    unsigned id;
    unsigned n;
    int cpu;
    uint64_t now;
    int epfd;
    int evfd;
    struct timers *timers;
    void *user;
    struct ring **out;   /* out[to]: this worker produces; NULL for self */
    struct ring **in;    /* in[from]: this worker consumes; NULL for self */
    struct msgq *spill;  /* spill[to]: control messages that met a full ring */
    unsigned n_spilling; /* destinations with a non-empty spill queue */
    struct fd_entry *fds;
    unsigned fds_cap;
    bool wake_self;
    bool more; /* a ring hit its turn budget or epoll returned a full batch */
    /* Turn cadence (worker.c, "batch hold"): 0 = off. */
    uint64_t batch_ns;   /* turn_batch_us in ns */
    uint64_t slack_ns;   /* timer_slack_us in ns */
    uint64_t turn_start; /* worker_now of the current turn */
    uint64_t ingress_ns; /* worker_set_ingress */
    bool traffic;        /* the last turn had fd events or ring messages */
    int hold_epfd;       /* epoll set of the eventfd alone: the hold's wait */
    uint64_t ctl_out;    /* bitmap: control staged for these workers this turn */
    bool started_ok;
    bool thread_created;
    int start_rc;
    pthread_t thread;
    struct msgq inbox_work; /* inbox messages being delivered this turn */
    /* Messages this worker sent to itself, delivered in the message phase
     * (after the rings and the inbox), never inside the sending call. */
    struct msgq selfq;
    /* Handlers by type range, scanned in order on every message: few (one
     * per module), so a linear scan of one or two cache lines. */
    struct handler_ent handlers[HANDLERS_MAX];
    unsigned n_handlers;
    uint8_t *unhandled_seen; /* bitmap by type: unhandled types already logged */
    struct worker_msg batch[RING_BURST];
    struct epoll_event events[MAX_EVENTS];

    /* Written by this worker only (relaxed stores), read by any thread. */
    _Atomic uint64_t st[STAT_N(struct worker_stats)] __attribute__((aligned(CACHE_LINE)));

    /* Written by other threads. */
    /* SLEEP_AWAKE, SLEEP_BLOCKED (any publish wakes), SLEEP_HOLD (only
     * control wakes; the batch hold). */
    _Atomic int sleeping __attribute__((aligned(CACHE_LINE)));
    _Atomic int ctl_pending; /* a producer published control to us */
    _Atomic int inbox_pending;
    pthread_mutex_t inbox_lock;
    struct msgq inbox; /* under inbox_lock */
    bool inbox_closed; /* under inbox_lock: the worker has discarded it */
};

enum { SLEEP_AWAKE = 0, SLEEP_BLOCKED = 1, SLEEP_HOLD = 2 };

enum pool_state { POOL_NEW, POOL_STARTED, POOL_STOPPED };

struct worker_pool {
    unsigned n;
    const struct worker_ops *ops; /* borrowed */
    void *arg;                    /* borrowed */
    struct worker **w;
    struct ring **rings; /* rings[from * n + to] */
    int *cpus;           /* worker i runs on cpus[i % n_cpus] */
    unsigned n_cpus;
    bool no_pin;
    uint64_t batch_ns;  /* worker_config.turn_batch_us in ns */
    uint64_t slack_ns;  /* worker_config.timer_slack_us in ns */
    uint32_t spill_max; /* worker_config.spill_max or DEFAULT_SPILL_MAX */
    enum pool_state state;
    _Atomic int stop;

    /* Start-up handshake and shutdown barriers (cold path). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n_threads;  /* threads actually created */
    unsigned n_reported; /* threads that ran ops->start */
    int go;              /* 0 undecided, 1 run, -1 abort */
    unsigned bar_waiting;
    unsigned bar_gen;
};

/* A worker counter's slot (lib/core/stat.h). */
#define WSTAT(f) STAT_IDX(struct worker_stats, f)

static inline uint64_t worker_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* worker.c, for worker_pool.c. All on w's own thread unless said. */
/* Wakes a worker's loop through its eventfd. Any thread. */
void worker_evfd_signal(int fd);
/* Wakes dst if it announced it sleeps (after the caller's seq_cst fence):
 * blocked, or holding a batch window when ctl (control was published to it;
 * the caller stored dst->ctl_pending = 1 before its fence). Returns true
 * when it wrote dst's eventfd. */
bool worker_wake_if_sleeping(struct worker *dst, bool ctl);
/* Publishes every ring with staged writes and wakes sleeping consumers. */
void worker_publish_all(struct worker *w);
/* The loop, until the pool's stop flag. */
void worker_run_loop(struct worker *w);
/* Hands every message still addressed to w to its discard (shutdown). */
void worker_discard_inbound(struct worker *w);

#endif
