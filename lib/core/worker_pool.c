/* Worker runtime, the threads: start-up handshake, pinning, shutdown
 * barriers, the pool's creation and destruction, posting from non-worker
 * threads and reading counters. The loop itself is lib/core/worker.c. */
#include "core/worker.h"

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
#include <unistd.h>
#include <urcu-qsbr.h>

#include "core/error.h"
#include "core/log.h"
#include "core/ring.h"
#include "core/timer.h"
#include "core/worker_int.h"

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

    w->now = worker_clock_ns();
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
        worker_run_loop(w);
    }

    /* Shutdown: every loop has ended before any stop() runs; every stop()
     * has ended (and published what it sent) before anyone discards. */
    worker_publish_all(w);
    pool_barrier(p);
    if (w->started_ok && p->ops->stop)
        p->ops->stop(w, p->arg);
    worker_publish_all(w);
    pool_barrier(p);
    worker_discard_inbound(w);

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
        worker_evfd_signal(p->w[i]->evfd);
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
    if (w->hold_epfd != -1)
        close(w->hold_epfd);
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
    w->hold_epfd = -1;
    w->batch_ns = p->batch_ns;
    w->slack_ns = p->slack_ns;
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
    /* The batch hold waits on the eventfd alone (control and stop). */
    w->hold_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->hold_epfd == -1 || epoll_ctl(w->hold_epfd, EPOLL_CTL_ADD, w->evfd, &ev) == -1)
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
    if (cfg->turn_batch_us > WORKER_TURN_BATCH_MAX_US ||
        cfg->timer_slack_us > WORKER_TURN_BATCH_MAX_US)
        return ROOST_EINVAL;

    struct worker_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ROOST_ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->ops = ops;
    p->arg = arg;
    p->no_pin = cfg->no_pin;
    p->batch_ns = (uint64_t)cfg->turn_batch_us * 1000u;
    p->slack_ns = (uint64_t)cfg->timer_slack_us * 1000u;
    p->spill_max = cfg->spill_max ? cfg->spill_max : DEFAULT_SPILL_MAX;
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
     * on_discard here, on the calling thread: no worker thread exists. Ring
     * writes such a worker staged (worker_send from the calling thread, the
     * tests' hand-driven shards) are published first, as a worker thread
     * does before its exit barrier: the discard only sees published ones. */
    for (unsigned i = 0; i < p->n; i++)
        if (!p->w[i]->thread_created)
            worker_publish_all(p->w[i]);
    for (unsigned i = 0; i < p->n; i++) {
        struct worker *w = p->w[i];
        if (!w->thread_created)
            worker_discard_inbound(w);
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
    worker_wake_if_sleeping(w, true); /* posts are control: they cut a hold */
    return 0;
}

void worker_pool_stats(struct worker_pool *p, unsigned id, struct worker_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (id >= p->n)
        return;
    stat_read((uint64_t *)out, p->w[id]->st, STAT_N(struct worker_stats));
}
