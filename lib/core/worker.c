/* Worker runtime. See worker.h for the contract and DESIGN.md §1.
 *
 * Wakeup protocol (the idea of h2o's lib/common/multithread.c, done with
 * atomics instead of a mutex): a consumer that is about to block stores
 * `sleeping = 1`, issues a seq_cst fence, then re-checks every inbound ring,
 * its inbox and the stop flag; only if all are empty does it block in
 * epoll_wait. A producer publishes its ring index (store-release), issues a
 * seq_cst fence, then reads the consumer's `sleeping`. The two fences order
 * "store my flag/index, then load the other's": at least one side sees the
 * other's store, so either the consumer finds the message in its re-check or
 * the producer sees the flag and writes the eventfd. The producer clears the
 * flag with an exchange so that, of several producers, only the first writes
 * the eventfd: one signal per empty -> non-empty edge of a sleeping consumer,
 * none while the consumer is awake. */
#include "core/worker.h"
#include "core/error.h"
#include "core/log.h"
#include "core/ring.h"
#include "core/timer.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#define DEFAULT_RING_CAPACITY 4096
#define RING_BURST 32         /* messages popped per ring read */
#define RING_TURN_BUDGET 1024 /* messages taken from one ring per turn */
#define MAX_EVENTS 64
#define EVFD_TAG UINT64_MAX /* epoll data of the wakeup eventfd */
#define CACHE_LINE 64
#define HANDLERS_MAX 8 /* type ranges per worker: one per module (quic, room, relay) */

/* Growable FIFO of messages: spill queues and the inbox. Grows by doubling
 * and keeps its storage, so a steady state does not allocate. */
struct msgq {
    struct worker_msg *v;
    uint32_t head;
    uint32_t len;
    uint32_t cap; /* power of two or 0 */
};

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

struct worker_counters {
    _Atomic uint64_t turns;
    _Atomic uint64_t wakeups;
    _Atomic uint64_t msgs_in;
    _Atomic uint64_t msgs_out;
    _Atomic uint64_t ring_drops;
    _Atomic uint64_t ring_spills;
    _Atomic uint64_t busy_ns;
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
    struct worker_counters st __attribute__((aligned(CACHE_LINE)));

    /* Written by other threads. */
    _Atomic int sleeping __attribute__((aligned(CACHE_LINE)));
    _Atomic int inbox_pending;
    pthread_mutex_t inbox_lock;
    struct msgq inbox; /* under inbox_lock */
    bool inbox_closed; /* under inbox_lock: the worker has discarded it */
};

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

/* ------------------------------------------------------------ counters */

static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
    /* relaxed load + store, not an RMW: only the owning worker writes. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --------------------------------------------------------------- msgq */

static int msgq_push(struct msgq *q, const struct worker_msg *m)
{
    if (q->len == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 64;
        if (cap <= q->cap)
            return ROOST_ENOMEM;
        struct worker_msg *v = malloc((size_t)cap * sizeof(*v));
        if (v == NULL)
            return ROOST_ENOMEM;
        /* Unwrap into the new array. */
        for (uint32_t i = 0; i < q->len; i++)
            v[i] = q->v[(q->head + i) & (q->cap - 1)];
        free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = cap;
    }
    q->v[(q->head + q->len) & (q->cap - 1)] = *m;
    q->len++;
    return 0;
}

static const struct worker_msg *msgq_front(const struct msgq *q)
{
    return &q->v[q->head & (q->cap - 1)];
}

static void msgq_pop(struct msgq *q)
{
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
}

static void msgq_free(struct msgq *q)
{
    free(q->v);
    memset(q, 0, sizeof(*q));
}

/* ------------------------------------------------------------- wakeups */

static void evfd_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the worker is woken anyway. */
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r;
}

/* Called by a producer after its publish and a seq_cst fence. */
static void wake_if_sleeping(struct worker *dst)
{
    /* relaxed load first: the common case (consumer awake) costs no RMW. The
     * ordering against our publish comes from the caller's seq_cst fence. */
    if (atomic_load_explicit(&dst->sleeping, memory_order_relaxed) == 0)
        return;
    /* Exchange: of several producers racing here, one writes the eventfd. */
    if (atomic_exchange_explicit(&dst->sleeping, 0, memory_order_relaxed) == 1)
        evfd_signal(dst->evfd);
}

/* Publishes every ring with staged writes, then wakes sleeping consumers
 * whose ring went from empty to non-empty. */
static void publish_all(struct worker *w)
{
    uint64_t woke = 0; /* bitmap of destinations that got new messages */
    for (unsigned to = 0; to < w->n; to++) {
        if (w->out[to] != NULL && ring_publish(w->out[to]) > 0)
            woke |= 1ull << to;
    }
    if (woke == 0)
        return;
    /* seq_cst fence: orders the prod.tail stores above before the loads of
     * `sleeping` below; pairs with the fence in sleep_prepare (see the file
     * comment: Dekker-style, one of the two sides sees the other's store). */
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned to = 0; to < w->n; to++) {
        if (woke & (1ull << to))
            wake_if_sleeping(w->pool->w[to]);
    }
}

/* ------------------------------------------------------------ sending */

/* Moves spilled messages into the ring, oldest first. Returns true when the
 * spill queue for `to` is empty afterwards. */
static bool spill_drain(struct worker *w, unsigned to)
{
    struct msgq *q = &w->spill[to];
    if (q->len == 0)
        return true;
    struct ring *r = w->out[to];
    while (q->len > 0) {
        if (ring_stage_burst(r, msgq_front(q), 1) == 0)
            return false;
        msgq_pop(q);
    }
    w->n_spilling--;
    return true;
}

int worker_send(struct worker *w, unsigned to, const struct worker_msg *msg,
                enum worker_msg_class cls)
{
    if (to >= w->n)
        return ROOST_EINVAL;
    if (cls != WORKER_MSG_CONTROL && cls != WORKER_MSG_MEDIA)
        return ROOST_EINVAL;

    struct worker_msg m = *msg;
    m.from = w->id;
    if (to == w->id) {
        /* No ring to self: the local FIFO, drained in the message phase. */
        int rc = msgq_push(&w->selfq, &m);
        if (rc != 0)
            return rc;
        stat_add(&w->st.msgs_out, 1);
        return 0;
    }
    /* Older spilled messages go first, so that nothing overtakes them. */
    if (spill_drain(w, to) && ring_stage_burst(w->out[to], &m, 1) == 1) {
        stat_add(&w->st.msgs_out, 1);
        return 0;
    }
    if (cls == WORKER_MSG_MEDIA) {
        stat_add(&w->st.ring_drops, 1);
        return ROOST_EAGAIN;
    }
    struct msgq *q = &w->spill[to];
    int rc = msgq_push(q, &m);
    if (rc != 0)
        return rc;
    if (q->len == 1)
        w->n_spilling++;
    stat_add(&w->st.ring_spills, 1);
    stat_add(&w->st.msgs_out, 1);
    return 0;
}

void worker_flush(struct worker *w)
{
    publish_all(w);
}

/* ---------------------------------------------------------- receiving */

static void on_unhandled(struct worker *w, const struct worker_msg *m)
{
    /* Logged once per type: a sender bug would otherwise flood the log. */
    if (w->unhandled_seen == NULL)
        w->unhandled_seen = calloc(65536 / 8, 1);
    if (w->unhandled_seen != NULL) {
        uint8_t bit = (uint8_t)(1u << (m->type & 7));
        if (w->unhandled_seen[m->type >> 3] & bit)
            return;
        w->unhandled_seen[m->type >> 3] |= bit;
    }
    log_warn("event=unhandled_ring_msg type=0x%x from=%u", m->type, m->from);
}

/* The per-message dispatch: the registered range holding the type, else
 * ops->on_msg. */
static inline void dispatch_msg(struct worker *w, const struct worker_msg *m)
{
    for (unsigned i = 0; i < w->n_handlers; i++) {
        const struct handler_ent *e = &w->handlers[i];
        /* One unsigned compare: first <= type <= last. */
        if ((uint16_t)(m->type - e->h.first) <= (uint16_t)(e->h.last - e->h.first)) {
            e->h.on_msg(w, m, e->arg);
            return;
        }
    }
    if (w->pool->ops->on_msg != NULL)
        w->pool->ops->on_msg(w, m, w->pool->arg);
    else
        on_unhandled(w, m);
}

int worker_handle(struct worker *w, const struct worker_handler *h, void *arg)
{
    if (h == NULL || h->on_msg == NULL || h->first > h->last)
        return ROOST_EINVAL;
    for (unsigned i = 0; i < w->n_handlers; i++) {
        const struct worker_handler *o = &w->handlers[i].h;
        if (h->first <= o->last && o->first <= h->last)
            return ROOST_EINVAL;
    }
    if (w->n_handlers == HANDLERS_MAX)
        return ROOST_ENOMEM;
    w->handlers[w->n_handlers++] = (struct handler_ent){.h = *h, .arg = arg};
    return 0;
}

static void deliver_rings(struct worker *w)
{
    for (unsigned from = 0; from < w->n; from++) {
        struct ring *r = w->in[from];
        if (r == NULL)
            continue;
        unsigned taken = 0;
        while (taken < RING_TURN_BUDGET) {
            unsigned k = ring_pop_burst(r, w->batch, RING_BURST);
            if (k == 0)
                break;
            taken += k;
            stat_add(&w->st.msgs_in, k);
            for (unsigned i = 0; i < k; i++)
                dispatch_msg(w, &w->batch[i]);
        }
        if (taken >= RING_TURN_BUDGET)
            w->more = true;
    }
}

static void deliver_inbox(struct worker *w)
{
    /* relaxed: a hint only; the mutex orders the queue contents. */
    if (atomic_load_explicit(&w->inbox_pending, memory_order_relaxed) == 0)
        return;
    /* Swap the inbox with the (empty) work queue so that callbacks run
     * without the lock held and both keep their storage. */
    pthread_mutex_lock(&w->inbox_lock);
    struct msgq tmp = w->inbox;
    w->inbox = w->inbox_work;
    w->inbox_work = tmp;
    atomic_store_explicit(&w->inbox_pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->inbox_lock);

    struct msgq *q = &w->inbox_work;
    stat_add(&w->st.msgs_in, q->len);
    while (q->len > 0) {
        struct worker_msg m = *msgq_front(q);
        msgq_pop(q);
        dispatch_msg(w, &m);
    }
    q->head = 0;
}

/* Messages to self, oldest first, including those the handlers append while
 * this runs; bounded like a ring so that a handler that keeps sending to
 * itself cannot starve fds and timers. */
static void deliver_self(struct worker *w)
{
    struct msgq *q = &w->selfq;
    unsigned taken = 0;
    while (q->len > 0) {
        if (taken == RING_TURN_BUDGET) {
            w->more = true;
            return;
        }
        /* Copied out: the handler may push and so move the storage. */
        struct worker_msg m = *msgq_front(q);
        msgq_pop(q);
        taken++;
        stat_add(&w->st.msgs_in, 1);
        dispatch_msg(w, &m);
    }
}

/* ----------------------------------------------------------- the loop */

static void dispatch_events(struct worker *w, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t data = w->events[i].data.u64;
        if (data == EVFD_TAG) {
            uint64_t v;
            if (read(w->evfd, &v, sizeof(v)) == (ssize_t)sizeof(v))
                stat_add(&w->st.wakeups, 1);
            continue;
        }
        unsigned fd = (unsigned)(data & 0xffffffffu);
        uint32_t gen = (uint32_t)(data >> 32);
        /* A callback earlier in this batch may have removed (or removed and
         * re-added) this fd: the generation tells. */
        if (fd >= w->fds_cap || !w->fds[fd].used || w->fds[fd].gen != gen)
            continue;
        w->fds[fd].cb(w, (int)fd, w->events[i].events, w->fds[fd].arg);
    }
}

/* Announces "about to sleep" and re-checks every source. Returns true when
 * the worker may block. */
static bool sleep_prepare(struct worker *w)
{
    atomic_store_explicit(&w->sleeping, 1, memory_order_relaxed);
    /* seq_cst fence: orders the flag store before the loads of the ring
     * tails, the inbox flag and the stop flag below; pairs with the fence in
     * publish_all (and worker_pool_post) taken after their stores. */
    atomic_thread_fence(memory_order_seq_cst);
    bool idle = w->selfq.len == 0 &&
                atomic_load_explicit(&w->pool->stop, memory_order_relaxed) == 0 &&
                atomic_load_explicit(&w->inbox_pending, memory_order_relaxed) == 0;
    for (unsigned from = 0; idle && from < w->n; from++) {
        if (w->in[from] != NULL && !ring_empty(w->in[from]))
            idle = false;
    }
    if (!idle)
        atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
    return idle;
}

static int turn_timeout(struct worker *w)
{
    if (w->more || w->wake_self || w->n_spilling > 0 || w->selfq.len > 0)
        return 0;
    uint64_t next = timers_next(w->timers);
    if (next == TIMER_NEVER)
        return -1;
    if (next <= w->now)
        return 0;
    uint64_t ms = (next - w->now + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void run_loop(struct worker *w)
{
    const struct worker_ops *ops = w->pool->ops;
    void *arg = w->pool->arg;

    w->now = clock_ns(); /* busy_ns starts here, not before start() */
    for (;;) {
        int timeout = turn_timeout(w);
        w->more = false;
        w->wake_self = false;
        int n;
        if (timeout != 0 && sleep_prepare(w)) {
            uint64_t t0 = clock_ns();
            stat_add(&w->st.busy_ns, t0 - w->now);
            /* Offline while blocked: synchronize_rcu need not wait for us. */
            rcu_thread_offline();
            n = epoll_wait(w->epfd, w->events, MAX_EVENTS, timeout);
            rcu_thread_online();
            atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
            w->now = clock_ns();
        } else {
            n = epoll_wait(w->epfd, w->events, MAX_EVENTS, 0);
            uint64_t t = clock_ns();
            stat_add(&w->st.busy_ns, t - w->now);
            w->now = t;
        }
        if (n == -1) {
            if (errno != EINTR)
                log_error("msg=\"epoll_wait failed\" errno=%d", errno);
            n = 0;
        }
        if (n == MAX_EVENTS)
            w->more = true;
        if (atomic_load_explicit(&w->pool->stop, memory_order_relaxed))
            break;

        timers_run(w->timers, w->now);
        for (unsigned to = 0; w->n_spilling > 0 && to < w->n; to++) {
            if (w->out[to] != NULL)
                spill_drain(w, to);
        }
        deliver_rings(w);
        deliver_inbox(w);
        deliver_self(w);
        dispatch_events(w, n);
        if (ops->on_turn_end)
            ops->on_turn_end(w, arg);
        publish_all(w);
        rcu_quiescent_state();
        stat_add(&w->st.turns, 1);
    }
}

/* ------------------------------------------------- start-up, shutdown */

/* All threads meet here; offline while waiting so that a synchronize_rcu
 * on another thread (e.g. in ops->stop) does not wait for us forever. */
static void pool_barrier(struct worker_pool *p)
{
    rcu_thread_offline();
    pthread_mutex_lock(&p->lock);
    unsigned gen = p->bar_gen;
    if (++p->bar_waiting == p->n_threads) {
        p->bar_waiting = 0;
        p->bar_gen++;
        pthread_cond_broadcast(&p->cond);
    } else {
        while (gen == p->bar_gen)
            pthread_cond_wait(&p->cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    rcu_thread_online();
}

static void discard_msg(struct worker *w, const struct worker_msg *m)
{
    for (unsigned i = 0; i < w->n_handlers; i++) {
        const struct worker_handler *h = &w->handlers[i].h;
        if (m->type >= h->first && m->type <= h->last && h->discard != NULL) {
            h->discard(m);
            return;
        }
    }
    if (w->pool->ops->on_discard)
        w->pool->ops->on_discard(w, m, w->pool->arg);
}

/* Hands every message still addressed to `w` to its discard: rings (oldest),
 * then each producer's spill queue (newer), then the inbox, then what it
 * sent itself. Runs when no producer can send any more. */
static void discard_inbound(struct worker *w)
{
    struct worker_pool *p = w->pool;
    struct worker_msg m;
    for (unsigned from = 0; from < w->n; from++) {
        if (w->in[from] == NULL)
            continue;
        /* Every producer published its staged writes before the barrier. */
        while (ring_pop_burst(w->in[from], &m, 1) == 1)
            discard_msg(w, &m);
        /* The producer's spill queue for us: only we touch it now. (Its
         * n_spilling is left alone: several consumers run this at once.) */
        struct msgq *q = &p->w[from]->spill[w->id];
        while (q->len > 0) {
            m = *msgq_front(q);
            msgq_pop(q);
            discard_msg(w, &m);
        }
    }
    pthread_mutex_lock(&w->inbox_lock);
    w->inbox_closed = true;
    struct msgq q = w->inbox;
    memset(&w->inbox, 0, sizeof(w->inbox));
    pthread_mutex_unlock(&w->inbox_lock);
    while (q.len > 0) {
        m = *msgq_front(&q);
        msgq_pop(&q);
        discard_msg(w, &m);
    }
    msgq_free(&q);
    while (w->selfq.len > 0) {
        m = *msgq_front(&w->selfq);
        msgq_pop(&w->selfq);
        discard_msg(w, &m);
    }
}

static int pin_self(struct worker *w)
{
    if (w->cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) == -1) {
        log_error("msg=\"cannot pin worker\" cpu=%d errno=%d", w->cpu, errno);
        return ROOST_ESYS;
    }
    return 0;
}

static void *worker_main(void *opaque)
{
    struct worker *w = opaque;
    struct worker_pool *p = w->pool;
    char tag[16];
    snprintf(tag, sizeof(tag), "w%u", w->id);
    log_set_thread_tag(tag);
    rcu_register_thread();

    w->now = clock_ns();
    int rc = pin_self(w);
    if (rc == 0 && p->ops->start)
        rc = p->ops->start(w, p->arg);
    w->started_ok = rc == 0;

    /* Report and wait for the pool's verdict: run only if every worker
     * started. Offline while waiting (see pool_barrier). */
    rcu_thread_offline();
    pthread_mutex_lock(&p->lock);
    w->start_rc = rc;
    p->n_reported++;
    pthread_cond_broadcast(&p->cond);
    while (p->go == 0)
        pthread_cond_wait(&p->cond, &p->lock);
    bool run = p->go > 0;
    pthread_mutex_unlock(&p->lock);
    rcu_thread_online();

    if (run) {
        log_debug("msg=\"worker running\" cpu=%d", w->cpu);
        run_loop(w);
    }

    /* Shutdown: every loop has ended before any stop() runs; every stop()
     * has ended (and published what it sent) before anyone discards. */
    publish_all(w);
    pool_barrier(p);
    if (w->started_ok && p->ops->stop)
        p->ops->stop(w, p->arg);
    publish_all(w);
    pool_barrier(p);
    discard_inbound(w);

    rcu_unregister_thread();
    return NULL;
}

int worker_pool_start(struct worker_pool *p)
{
    if (p->state != POOL_NEW)
        return ROOST_EINVAL;
    int rc = 0;
    unsigned created = 0;
    for (; created < p->n; created++) {
        struct worker *w = p->w[created];
        int err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) {
            log_error("msg=\"cannot create worker thread\" err=%d", err);
            rc = ROOST_ESYS;
            break;
        }
        w->thread_created = true;
    }

    pthread_mutex_lock(&p->lock);
    p->n_threads = created;
    while (p->n_reported < created)
        pthread_cond_wait(&p->cond, &p->lock);
    for (unsigned i = 0; rc == 0 && i < created; i++)
        rc = p->w[i]->start_rc;
    p->go = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);

    if (rc != 0) {
        for (unsigned i = 0; i < created; i++)
            pthread_join(p->w[i]->thread, NULL);
        p->state = POOL_STOPPED;
        return rc;
    }
    p->state = POOL_STARTED;
    return 0;
}

void worker_pool_request_stop(struct worker_pool *p)
{
    /* Only an atomic store and write(2): async-signal-safe. The eventfd write
     * is unconditional (no edge logic) because stopping is rare. seq_cst so a
     * worker's sleep_prepare, after its own fence, sees it or gets the write. */
    atomic_store_explicit(&p->stop, 1, memory_order_seq_cst);
    for (unsigned i = 0; i < p->n; i++)
        evfd_signal(p->w[i]->evfd);
}

void worker_pool_stop(struct worker_pool *p)
{
    if (p->state == POOL_STARTED) {
        worker_pool_request_stop(p);
        for (unsigned i = 0; i < p->n; i++)
            pthread_join(p->w[i]->thread, NULL);
    }
    p->state = POOL_STOPPED;
}

/* ---------------------------------------------------- pool new / del */

static void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    if (w->epfd != -1)
        close(w->epfd);
    if (w->evfd != -1)
        close(w->evfd);
    timers_del(w->timers);
    if (w->spill) {
        for (unsigned i = 0; i < w->n; i++)
            msgq_free(&w->spill[i]);
    }
    free(w->spill);
    free(w->out);
    free(w->in);
    free(w->fds);
    msgq_free(&w->inbox_work);
    msgq_free(&w->inbox);
    msgq_free(&w->selfq);
    free(w->unhandled_seen);
    pthread_mutex_destroy(&w->inbox_lock);
    free(w);
}

static int worker_alloc(struct worker_pool *p, unsigned id, struct worker **out)
{
    struct worker *w =
        aligned_alloc(CACHE_LINE, (sizeof(*w) + CACHE_LINE - 1) & ~(size_t)(CACHE_LINE - 1));
    *out = w;
    if (w == NULL)
        return ROOST_ENOMEM;
    memset(w, 0, sizeof(*w));
    w->pool = p;
    w->id = id;
    w->n = p->n;
    w->epfd = -1;
    w->evfd = -1;
    w->cpu = p->no_pin ? -1 : p->cpus[id % p->n_cpus];
    pthread_mutex_init(&w->inbox_lock, NULL);

    w->out = calloc(p->n, sizeof(*w->out));
    w->in = calloc(p->n, sizeof(*w->in));
    w->spill = calloc(p->n, sizeof(*w->spill));
    if (w->out == NULL || w->in == NULL || w->spill == NULL)
        return ROOST_ENOMEM;
    int rc = timers_new(&w->timers);
    if (rc != 0)
        return rc;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd == -1 || w->evfd == -1)
        return ROOST_ESYS;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EVFD_TAG};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) == -1)
        return ROOST_ESYS;
    return 0;
}

/* The CPUs workers may run on: the configured list, checked against the
 * process mask, or every CPU of the mask. */
static int pool_cpus(struct worker_pool *p, const struct worker_config *cfg)
{
    cpu_set_t mask;
    CPU_ZERO(&mask);
    if (sched_getaffinity(0, sizeof(mask), &mask) == -1)
        return ROOST_ESYS;
    if (cfg->cpus != NULL && cfg->n_cpus > 0) {
        p->cpus = calloc(cfg->n_cpus, sizeof(*p->cpus));
        if (p->cpus == NULL)
            return ROOST_ENOMEM;
        for (unsigned i = 0; i < cfg->n_cpus; i++) {
            int c = cfg->cpus[i];
            if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET(c, &mask)) {
                log_error("msg=\"CPU not allowed\" cpu=%d", c);
                return ROOST_EINVAL;
            }
            p->cpus[i] = c;
        }
        p->n_cpus = cfg->n_cpus;
        return 0;
    }
    int count = CPU_COUNT(&mask);
    if (count <= 0)
        return ROOST_ESYS;
    p->cpus = calloc((size_t)count, sizeof(*p->cpus));
    if (p->cpus == NULL)
        return ROOST_ENOMEM;
    for (int c = 0; c < CPU_SETSIZE && p->n_cpus < (unsigned)count; c++) {
        if (CPU_ISSET(c, &mask))
            p->cpus[p->n_cpus++] = c;
    }
    return 0;
}

static void pool_free(struct worker_pool *p)
{
    if (p->w) {
        for (unsigned i = 0; i < p->n; i++)
            worker_free(p->w[i]);
    }
    if (p->rings) {
        for (unsigned i = 0; i < p->n * p->n; i++)
            ring_del(p->rings[i]);
    }
    free(p->rings);
    free(p->w);
    free(p->cpus);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int worker_pool_new(struct worker_pool **out, const struct worker_config *cfg,
                    const struct worker_ops *ops, void *arg)
{
    *out = NULL;
    if (cfg == NULL || ops == NULL)
        return ROOST_EINVAL;
    if (cfg->n_workers > WORKER_MAX || (cfg->cpus == NULL && cfg->n_cpus > 0))
        return ROOST_EINVAL;
    uint32_t cap = cfg->ring_capacity ? cfg->ring_capacity : DEFAULT_RING_CAPACITY;
    if (cap < 2 || (cap & (cap - 1)) != 0 || cap > (1u << 24))
        return ROOST_EINVAL;

    struct worker_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ROOST_ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->ops = ops;
    p->arg = arg;
    p->no_pin = cfg->no_pin;
    p->state = POOL_NEW;
    atomic_init(&p->stop, 0);

    int rc = pool_cpus(p, cfg);
    if (rc != 0)
        goto fail;
    p->n = cfg->n_workers;
    if (p->n == 0) {
        p->n = p->n_cpus;
        if (p->n > WORKER_MAX) {
            log_warn("msg=\"more CPUs than workers allowed\" cpus=%u max=%u", p->n, WORKER_MAX);
            p->n = WORKER_MAX;
        }
    }

    rc = ROOST_ENOMEM;
    p->w = calloc(p->n, sizeof(*p->w));
    p->rings = calloc((size_t)p->n * p->n, sizeof(*p->rings));
    if (p->w == NULL || p->rings == NULL)
        goto fail;
    for (unsigned i = 0; i < p->n; i++) {
        rc = worker_alloc(p, i, &p->w[i]);
        if (rc != 0)
            goto fail;
    }
    for (unsigned from = 0; from < p->n; from++) {
        for (unsigned to = 0; to < p->n; to++) {
            if (from == to)
                continue;
            struct ring **r = &p->rings[from * p->n + to];
            rc = ring_new(r, cap, sizeof(struct worker_msg));
            if (rc != 0)
                goto fail;
            p->w[from]->out[to] = *r;
            p->w[to]->in[from] = *r;
        }
    }
    *out = p;
    return 0;

fail:
    pool_free(p);
    return rc;
}

void worker_pool_del(struct worker_pool *p)
{
    if (p == NULL)
        return;
    worker_pool_stop(p);
    /* Workers whose thread ran have discarded their inbound messages. What
     * is left (a pool never started, or a thread never created) is handed to
     * on_discard here, on the calling thread: no worker thread exists. */
    for (unsigned i = 0; i < p->n; i++) {
        struct worker *w = p->w[i];
        if (!w->thread_created)
            discard_inbound(w);
    }
    pool_free(p);
}

/* ------------------------------------------------------- accessors etc */

unsigned worker_pool_size(const struct worker_pool *p)
{
    return p->n;
}

struct worker *worker_pool_get(struct worker_pool *p, unsigned id)
{
    return id < p->n ? p->w[id] : NULL;
}

int worker_pool_post(struct worker_pool *p, unsigned to, const struct worker_msg *msg)
{
    if (to >= p->n)
        return ROOST_EINVAL;
    struct worker *w = p->w[to];
    struct worker_msg m = *msg;
    m.from = WORKER_MAX;

    pthread_mutex_lock(&w->inbox_lock);
    int rc = w->inbox_closed ? ROOST_ECLOSED : msgq_push(&w->inbox, &m);
    if (rc == 0)
        atomic_store_explicit(&w->inbox_pending, 1, memory_order_relaxed);
    pthread_mutex_unlock(&w->inbox_lock);
    if (rc != 0)
        return rc;
    /* seq_cst fence: orders the inbox_pending store before the load of
     * `sleeping`; pairs with the fence in sleep_prepare. */
    atomic_thread_fence(memory_order_seq_cst);
    wake_if_sleeping(w);
    return 0;
}

void worker_pool_stats(struct worker_pool *p, unsigned id, struct worker_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (id >= p->n)
        return;
    const struct worker_counters *c = &p->w[id]->st;
    out->turns = atomic_load_explicit(&c->turns, memory_order_relaxed);
    out->wakeups = atomic_load_explicit(&c->wakeups, memory_order_relaxed);
    out->msgs_in = atomic_load_explicit(&c->msgs_in, memory_order_relaxed);
    out->msgs_out = atomic_load_explicit(&c->msgs_out, memory_order_relaxed);
    out->ring_drops = atomic_load_explicit(&c->ring_drops, memory_order_relaxed);
    out->ring_spills = atomic_load_explicit(&c->ring_spills, memory_order_relaxed);
    out->busy_ns = atomic_load_explicit(&c->busy_ns, memory_order_relaxed);
}

unsigned worker_id(const struct worker *w)
{
    return w->id;
}

unsigned worker_count(const struct worker *w)
{
    return w->n;
}

int worker_cpu(const struct worker *w)
{
    return w->cpu;
}

uint64_t worker_now(const struct worker *w)
{
    return w->now;
}

void worker_set_user(struct worker *w, void *user)
{
    w->user = user;
}

void *worker_user(const struct worker *w)
{
    return w->user;
}

struct timers *worker_timers(struct worker *w)
{
    return w->timers;
}

struct worker_pool *worker_pool(struct worker *w)
{
    return w->pool;
}

void worker_wake_self(struct worker *w)
{
    w->wake_self = true;
}

/* ----------------------------------------------------------------- fds */

int worker_fd_add(struct worker *w, int fd, uint32_t events, worker_fd_cb cb, void *arg)
{
    if (fd < 0 || cb == NULL)
        return ROOST_EINVAL;
    if ((unsigned)fd >= w->fds_cap) {
        unsigned cap = w->fds_cap ? w->fds_cap : 64;
        while (cap <= (unsigned)fd)
            cap *= 2;
        struct fd_entry *v = realloc(w->fds, cap * sizeof(*v));
        if (v == NULL)
            return ROOST_ENOMEM;
        memset(v + w->fds_cap, 0, (cap - w->fds_cap) * sizeof(*v));
        w->fds = v;
        w->fds_cap = cap;
    }
    struct fd_entry *e = &w->fds[fd];
    if (e->used)
        return ROOST_EEXIST;
    struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)e->gen << 32) | (unsigned)fd};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        return ROOST_ESYS;
    e->cb = cb;
    e->arg = arg;
    e->used = true;
    return 0;
}

int worker_fd_mod(struct worker *w, int fd, uint32_t events)
{
    if (fd < 0 || (unsigned)fd >= w->fds_cap || !w->fds[fd].used)
        return ROOST_ENOENT;
    struct epoll_event ev = {.events = events,
                             .data.u64 = ((uint64_t)w->fds[fd].gen << 32) | (unsigned)fd};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) == -1)
        return ROOST_ESYS;
    return 0;
}

int worker_fd_del(struct worker *w, int fd)
{
    if (fd < 0 || (unsigned)fd >= w->fds_cap || !w->fds[fd].used)
        return ROOST_ENOENT;
    struct fd_entry *e = &w->fds[fd];
    e->used = false;
    e->gen++;
    e->cb = NULL;
    e->arg = NULL;
    /* A closed fd has already left the epoll set: not an error. */
    if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) == -1 && errno != EBADF && errno != ENOENT)
        return ROOST_ESYS;
    return 0;
}
