/* Worker runtime: N pinned threads, each with an epoll loop, timers, and one
 * SPSC ring from every other worker (N x (N-1) rings). DESIGN.md §1.
 *
 * A worker owns its fds, its timers and whatever its ops create; the only way
 * to reach another worker is worker_send(). Each loop turn:
 *   1. read the clock once (worker_now), run expired timers;
 *   2. message phase: drain every inbound ring, then the inbox, then the
 *      messages this worker sent itself, each into the handler registered
 *      for its type (worker_handle) or else ops->on_msg;
 *   3. dispatch ready fds;
 *   4. ops->on_turn_end (flush send batches), publish ring indices, wake
 *      consumers whose ring went empty -> non-empty while they slept;
 *   5. rcu_quiescent_state(); go offline around a blocking epoll_wait.
 *
 * Thread safety, per function:
 *   worker_pool_*           : the thread that created the pool (main), except
 *                             worker_pool_request_stop (any thread, async-signal-safe)
 *                             and worker_pool_post (any non-worker thread).
 *   worker_* taking a worker: only that worker's own thread.
 */
#ifndef ROOST_CORE_WORKER_H
#define ROOST_CORE_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#define WORKER_MAX 64 /* worker id must fit the first byte of a CID */

struct worker;
struct worker_pool;
struct timers;

/* Fixed-size ring message: one cache line. `type` is the application's;
 * values >= 0xff00 are reserved for the runtime. Payload carries handles,
 * counted references (struct buf *) or small values, never bare pointers to
 * RCU-protected memory. */
struct worker_msg {
    uint16_t type;
    uint16_t flags;
    uint32_t from; /* sender worker id; set by worker_send */
    union {
        uint8_t bytes[56];
        uint32_t u32[14];
        uint64_t u64[7];
        void *ptr[7];
    } u;
};
_Static_assert(sizeof(struct worker_msg) == 64, "worker_msg is one cache line");

/* Control messages are never dropped silently: a full ring spills to a
 * local overflow queue per destination, drained in order before newer
 * messages. The queue is bounded (worker_config.spill_max): a REQUEST (a
 * control message its sender can refuse, e.g. a client's JOIN) is refused
 * with ROOST_EFULL once spill_max messages wait for that destination; any
 * other control message (answers, teardowns: their number follows the
 * requests admitted) once WORKER_SPILL_HARD_X times that. An OWED message
 * is never refused for the bound (only ROOST_ENOMEM): one the receiver's
 * state waits for, whose loss would wedge it (lib/room's DROP and
 * bounces; their number follows messages admitted already). Media meeting
 * a full ring is dropped and counted. */
enum worker_msg_class {
    WORKER_MSG_CONTROL = 0,
    WORKER_MSG_MEDIA = 1,
    WORKER_MSG_REQUEST = 2,
    WORKER_MSG_OWED = 3,
};
#define WORKER_SPILL_HARD_X 4
#define WORKER_SPILL_POLL_MS 1

struct worker_config {
    unsigned n_workers;     /* 0: one per CPU in the process affinity mask */
    const int *cpus;        /* optional CPU list (overrides the mask), n_cpus entries */
    unsigned n_cpus;        /* workers run on cpus[i % n_cpus] */
    unsigned ring_capacity; /* messages per ring, power of two; 0: 4096 */
    unsigned spill_max;     /* spilled REQUESTs per destination; 0: 4096 */
    bool no_pin;            /* tests only: skip pinning */
    /* Turn cadence (worker.c, "batch hold"): after a turn that found work
     * but did not fill a batch, the worker waits until this long after that
     * turn's start (bounded by its next timer, cut short by control
     * messages, posts and stop) before it looks at its fds again, so that
     * datagrams arriving meanwhile share one turn. A busy worker (full
     * epoll batch, ring budget hit, work queued for itself) or a turn longer
     * than the window runs the next turn at once; an idle worker wakes at
     * once on the first event. 0: off (every event wakes a turn).
     * At most WORKER_TURN_BATCH_MAX_US. */
    uint32_t turn_batch_us;
    /* How late a timer may fire so as not to cut a batch hold short: a
     * hold ends at min(window end, earliest timer expiry + slack), so a
     * timer that falls due during a hold fires with the hold's next turn,
     * at most timer_slack_us after its expiry, instead of costing a turn of
     * its own. 0: a hold ends at the earliest expiry. The blocking wait
     * (no traffic) is unchanged: timers end it at their expiry, rounded up
     * to epoll_wait's millisecond. At most WORKER_TURN_BATCH_MAX_US. */
    uint32_t timer_slack_us;
};

#define WORKER_TURN_BATCH_MAX_US 1000000u /* 1 s (tests); the relay allows 100 ms */

struct worker_ops {
    /* On the worker thread, registered with RCU, before the first turn.
     * A non-zero return aborts worker_pool_start. */
    int (*start)(struct worker *w, void *arg);
    /* On the worker thread after its last turn; release everything it owns.
     * All workers have left their loops before any stop() runs. */
    void (*stop)(struct worker *w, void *arg);
    /* A message (from another worker, from itself, or from
     * worker_pool_post) whose type no worker_handle range holds. Optional:
     * without it such a message is logged (once per type) and dropped. */
    void (*on_msg)(struct worker *w, const struct worker_msg *msg, void *arg);
    /* Once per loop turn after events and messages: flush batches here. */
    void (*on_turn_end)(struct worker *w, void *arg);
    /* Messages still queued at shutdown (rings, spills, inbox, messages to
     * self) whose type no worker_handle range with a discard holds are
     * handed here (on the receiving worker's thread, after stop()) so
     * counted references are released.
     * Exception: for a worker whose thread never ran (pool never started,
     * or thread creation failed) worker_pool_del calls it on its own thread.
     * It must not send messages. */
    void (*on_discard)(struct worker *w, const struct worker_msg *msg, void *arg);
};

/* Messages of one type range, for one module (0x01xx quic, 0x02xx room,
 * 0x03xx relay): registered per worker with worker_handle. */
struct worker_handler {
    uint16_t first, last; /* inclusive type range */
    void (*on_msg)(struct worker *w, const struct worker_msg *msg, void *arg);
    /* Releases what a message of the range holds when it is discarded at
     * shutdown (after stop(); must not use per-worker state). Optional:
     * without it ops->on_discard gets the message. */
    void (*discard)(const struct worker_msg *msg);
};

struct worker_stats {
    uint64_t turns;
    uint64_t wakeups;     /* eventfd wakeups received */
    uint64_t msgs_in;     /* messages delivered, self-sent ones included */
    uint64_t msgs_out;    /* messages sent, to self included */
    uint64_t ring_drops;  /* media dropped on a full ring */
    uint64_t ring_spills; /* control messages that went to the spill queue */
    uint64_t spill_full;  /* control messages refused: spill queue at its bound */
    uint64_t busy_ns;     /* time not spent blocked in epoll_wait or a hold */
    uint64_t holds;       /* batch holds waited (turn_batch_us) */
    uint64_t hold_ctl;    /* holds cut short by control, a post or stop */
    /* Where a worker's kernel time goes (docs/BENCHMARKS.md, "2 workers vs
     * 1"): epoll_wait calls that could block and that could not (a hold's
     * wait is counted in holds), eventfd writes this worker made to wake
     * other workers, holds whose end was a timer's deadline rather than the
     * window's, and turns that found nothing (no fd event, message or
     * timer). */
    uint64_t blocks;      /* blocking epoll_wait calls */
    uint64_t polls;       /* non-blocking epoll_wait calls */
    uint64_t wakes_sent;  /* eventfd writes to wake another worker */
    uint64_t hold_timer;  /* holds ended by a timer's deadline (plus slack) */
    uint64_t empty_turns; /* turns with no fd event, message or timer */
};

/* Creates (does not start) a pool. ops and arg are borrowed for the pool's
 * life. Returns 0, ROOST_EINVAL (bad config: capacity not a power of two,
 * too many workers, CPU not allowed), ROOST_ENOMEM or ROOST_ESYS. */
int worker_pool_new(struct worker_pool **out, const struct worker_config *cfg,
                    const struct worker_ops *ops, void *arg);
/* Starts every thread and waits until each ran ops->start. On failure no
 * thread is left running: workers whose start() succeeded get stop(), and
 * messages they sent go to on_discard. Returns 0, the first non-zero start()
 * result, ROOST_ESYS (thread creation or pinning failed) or ROOST_EINVAL
 * (already started or stopped). */
int worker_pool_start(struct worker_pool *p);
/* Asks every worker to leave its loop. Any thread; async-signal-safe. */
void worker_pool_request_stop(struct worker_pool *p);
/* request_stop + join every thread. Idempotent. */
void worker_pool_stop(struct worker_pool *p);
/* Stops if needed and frees everything. Accepts NULL. */
void worker_pool_del(struct worker_pool *p);
unsigned worker_pool_size(const struct worker_pool *p);
struct worker *worker_pool_get(struct worker_pool *p, unsigned id);
/* Posts a control message to worker `to` from a non-worker thread (main,
 * admin): a mutex-protected inbox, never on the hot path. msg->from is set
 * to WORKER_MAX. Posting before worker_pool_start is allowed (delivered on
 * the first turn). Returns 0, ROOST_EINVAL, ROOST_ENOMEM, or ROOST_ECLOSED
 * once that worker has shut down (the message is not taken: the caller
 * still owns its references). */
int worker_pool_post(struct worker_pool *p, unsigned to, const struct worker_msg *msg);
/* Sums relaxed reads of a worker's counters. Any thread (values may lag). */
void worker_pool_stats(struct worker_pool *p, unsigned id, struct worker_stats *out);

unsigned worker_id(const struct worker *w);
unsigned worker_count(const struct worker *w);
int worker_cpu(const struct worker *w); /* -1 when not pinned */
/* Monotonic ns, read once at the start of the current loop turn. */
uint64_t worker_now(const struct worker *w);
/* Reads the clock again mid-turn: worker_now moves forward (never back).
 * For state handed over from another worker whose clock was read later
 * than this turn's start (quic/handoff.c). */
void worker_now_refresh(struct worker *w);
/* The ingress time (CLOCK_MONOTONIC ns; the kernel's receive timestamp) of
 * the datagram being handled on this worker, set around its handling by
 * the receive path; 0 outside (then stamp "now"). For latency metrics:
 * the time a datagram waited in the socket (a turn cadence hold, a busy
 * worker, scheduling) counts as relay-added. */
void worker_set_ingress(struct worker *w, uint64_t ns);
uint64_t worker_ingress(const struct worker *w);
/* Application data for this worker (e.g. its QUIC endpoint). */
void worker_set_user(struct worker *w, void *user);
void *worker_user(const struct worker *w);
struct timers *worker_timers(struct worker *w);
struct worker_pool *worker_pool(struct worker *w);

/* On w's own thread, normally from ops->start: messages of types
 * [first, last] are delivered to h->on_msg(w, msg, arg). h is copied.
 * Dispatch scans the registered ranges in order (they are few), then falls
 * back to ops->on_msg. Returns 0, ROOST_EINVAL (bad range, overlaps a
 * registered one), ROOST_ENOMEM (no free handler slot; a worker holds 8). */
int worker_handle(struct worker *w, const struct worker_handler *h, void *arg);

/* Queues msg to worker `to`. Producer index is published at the end of the
 * turn (or by worker_flush) - one publish per burst.
 * To self (to == worker_id(w)): appended to a local FIFO, never delivered
 * inside this call. The FIFO is drained in the message phase, after the
 * rings and the inbox, including what its handlers append while it drains
 * (at most a ring's turn budget per turn; the worker does not sleep while
 * it is non-empty). So a message sent to self from a timer or a handler
 * is delivered in this turn's message phase, and one sent from an fd
 * callback or on_turn_end in the next turn's - exactly when another worker
 * would see a message published at this turn's end. Self messages are
 * never dropped (media included); at shutdown they go to the discard like
 * ring messages.
 * Returns 0; ROOST_EAGAIN when a media message met a full ring (dropped,
 * counted); ROOST_EFULL when a control message met a full ring and a spill
 * queue at its bound (not queued, counted: the caller still owns the
 * message's references and must give way, e.g. close the client that asked);
 * ROOST_ENOMEM if a control spill or the self FIFO could not allocate;
 * ROOST_EINVAL for a bad destination. While a spill queue is not empty the
 * worker polls it every WORKER_SPILL_POLL_MS instead of sleeping. */
int worker_send(struct worker *w, unsigned to, const struct worker_msg *msg,
                enum worker_msg_class cls);
/* Publishes pending ring writes now and wakes sleeping consumers. */
void worker_flush(struct worker *w);

/* fd readiness callback, on the worker's thread. */
typedef void (*worker_fd_cb)(struct worker *w, int fd, uint32_t events, void *arg);
/* Registers fd with the worker's epoll (events: EPOLLIN/EPOLLOUT...).
 * Returns 0, ROOST_ESYS, ROOST_ENOMEM, ROOST_EINVAL (fd < 0 or no cb) or
 * ROOST_EEXIST (fd already registered). fd_mod and fd_del return 0,
 * ROOST_ENOENT (fd not registered) or ROOST_ESYS. After fd_del, events of
 * that fd still pending in the current turn are not delivered. */
int worker_fd_add(struct worker *w, int fd, uint32_t events, worker_fd_cb cb, void *arg);
int worker_fd_mod(struct worker *w, int fd, uint32_t events);
int worker_fd_del(struct worker *w, int fd);

/* Ask to run another turn without blocking (e.g. work left in a batch). */
void worker_wake_self(struct worker *w);

#endif
