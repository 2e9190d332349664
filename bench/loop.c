/* The bench thread's loop (bench/load_int.h): connects its participants at
 * the join rate, opens and closes the measurement window, runs timers, the
 * QUIC client, the path emulation and the floor sockets, and freezes its
 * counters after the drain. */
#include "bench/load_int.h"
#include "bench/phase.h"
#include "bench/participant.h"
#include "bench/wsclient.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

#include "bench/netem.h"
#include "client/client.h"
#include "core/error.h"
#include "core/timer.h"

#define SATURATED_UTIL 0.90 /* a bench thread busier than this may have been the bottleneck */

/* The calling thread's time runnable but waiting for a CPU
 * (/proc/thread-self/schedstat, second field), 0 when unknown. */
static uint64_t thread_runq_ns(void)
{
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    if (f == NULL)
        return 0;
    unsigned long long run = 0, wait = 0;
    if (fscanf(f, "%llu %llu", &run, &wait) != 2)
        wait = 0;
    fclose(f);
    return wait;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------ thread loop */

static int connect_one(struct lthread *t, struct bp *p)
{
    const struct load_config *cfg = t->L->cfg;
    p->st = BP_CONNECTING;
    int rc;
    if (p->is_ws)
        rc = wscl_connect(&p->ws, cfg->ws_host, cfg->ws_port, t->wstls, t->epfd, p,
                          &participant_ws_cbs, p);
    else if (cfg->mode == LOAD_QUIC)
        rc =
            roost_client_connect(t->cl, t->L->rl[p->relay].host, t->L->rl[p->relay].port, p, &p->c);
    else
        rc = load_floor_connect(t, p);
    if (rc != 0)
        participant_ended(p, mono_ns(), LOAD_END_SETUP, (uint64_t)(int64_t)rc);
    return rc;
}

/* Connects whoever is due; returns the time of the next due connect. */
static uint64_t pace(struct lthread *t, uint64_t now)
{
    const struct load_config *cfg = t->L->cfg;
    uint64_t next = UINT64_MAX;
    double rate = cfg->join_rate / cfg->threads;
    while (t->next_base < t->n_base) {
        uint64_t due = rate > 0 ? t->join_t0 + (uint64_t)(t->next_base * 1e9 / rate) : 0;
        if (due > now) {
            next = due;
            break;
        }
        connect_one(t, &t->p[t->next_base++]);
    }
    if (t->measuring && t->n_storm > 0) {
        double srate = cfg->storm_rate / cfg->threads;
        uint64_t t0 = t->L->start_ns;
        while (t->next_storm < t->n_storm) {
            uint64_t due = t0 + (uint64_t)(t->next_storm * 1e9 / srate);
            if (due >= t->L->end_ns)
                break;
            if (due > now) {
                if (due < next)
                    next = due;
                break;
            }
            connect_one(t, &t->p[t->n_base + t->next_storm++]);
        }
    }
    return next;
}

static void start_window(struct lthread *t, uint64_t now)
{
    const struct load_config *cfg = t->L->cfg;
    t->measuring = true;
    t->cpu0 = thread_cpu_ns();
    t->runq0 = thread_runq_ns();
    t->wall0 = now;
    /* The thread's base participants are its rooms, member by member
     * (load.c make_thread); speakers are each room's first members. */
    uint32_t rooms_here = cfg->size ? t->n_base / cfg->size : 0;
    uint32_t speakers = cfg->speakers < cfg->size ? cfg->speakers : cfg->size;
    for (uint32_t i = 0; i < t->n_base; i++) {
        struct bp *p = &t->p[i];
        if (!p->speaker)
            continue;
        p->next = t->L->start_ns + phase_offset(cfg->send_interval_ns, rooms_here, speakers,
                                                i / cfg->size, p->member, cfg->phase_packed);
        (void)timer_arm(t->timers, &p->tm, p->next);
    }
}

static void finish_window(struct lthread *t, uint64_t now)
{
    const struct load_config *cfg = t->L->cfg;
    t->finished = true;
    t->ts.cpu_ns = thread_cpu_ns() - t->cpu0;
    t->ts.wall_ns = now - t->wall0;
    t->ts.util = t->ts.wall_ns ? (double)t->ts.cpu_ns / (double)t->ts.wall_ns : 0;
    t->ts.saturated = t->ts.util > SATURATED_UTIL;
    t->ts.max_late_ns = t->max_late;
    t->ts.max_stall_ns = t->max_stall;
    uint64_t rq = thread_runq_ns();
    t->ts.runq_ns = rq > t->runq0 ? rq - t->runq0 : 0;
    t->ts.cpu = t->cpu;
    t->ts.participants = t->n_base;
    t->n_rxs = t->n_base;
    t->n_txs = 0;
    for (uint32_t i = 0; i < t->n_base; i++)
        t->n_txs += t->p[i].speaker;
    t->rxs = calloc(t->n_rxs ? t->n_rxs : 1, sizeof(*t->rxs));
    t->txs = calloc(t->n_txs ? t->n_txs : 1, sizeof(*t->txs));
    if (t->rxs == NULL || t->txs == NULL)
        return; /* load_run reports the failure */
    uint32_t tx = 0;
    /* Rooms are contiguous in t->p: members 0..size-1 of a room follow each
     * other, so a room's speakers are at p[base .. base + speakers). */
    for (uint32_t i = 0; i < t->n_base; i++) {
        struct bp *r = &t->p[i];
        struct bp *room0 = r - r->member;
        struct load_rx_stat *s = &t->rxs[i];
        *s = (struct load_rx_stat){.idx = r->idx,
                                   .room = r->room,
                                   .member = r->member,
                                   .transport = r->is_ws,
                                   .relay = r->relay};
        s->dup = r->dup;
        s->reordered = r->reordered;
        for (uint32_t m = 0; m < cfg->speakers; m++) {
            if (m == r->member)
                continue;
            s->expected += room0[m].sent;
            s->delivered += r->rx[m].got;
        }
        s->lost = s->expected > s->delivered ? s->expected - s->delivered : 0;
        if (r->speaker) {
            struct load_tx_stat *x = &t->txs[tx++];
            *x = (struct load_tx_stat){.idx = r->idx,
                                       .room = r->room,
                                       .member = r->member,
                                       .transport = r->is_ws,
                                       .relay = r->relay};
            x->target = r->target;
            x->sent = r->sent;
            x->skipped = r->skipped;
            x->failed = r->failed;
            x->expected = r->sent * (cfg->size - 1);
            for (uint32_t m = 0; m < cfg->size; m++)
                if (m != r->member)
                    x->delivered += room0[m].rx[r->member].got;
            t->ts.target += r->target;
            t->ts.sent += r->sent;
        }
    }
}

/* Waits for events at most timeout_ns from now. Notes, in the window, the
 * longest wait that ended by its timeout past its deadline (a stall seen
 * from the thread; the summary's figure). */
static void wait_events(struct lthread *t, uint64_t now, uint64_t timeout_ns)
{
    const struct load_config *cfg = t->L->cfg;
    if (timeout_ns > 10000000)
        timeout_ns = 10000000; /* see phase changes within 10 ms */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)timeout_ns};
    struct epoll_event evs[64];
    /* With WebSocket participants t->epfd holds the QUIC client's epoll fd
     * too (data.ptr NULL: roost_client_process runs every turn anyway). */
    int fd = t->epfd >= 0 ? t->epfd : roost_client_fd(t->cl);
    int n = epoll_pwait2(fd, evs, t->epfd >= 0 ? 64 : 1, &ts, NULL);
    if (n == 0 && t->measuring && !t->finished) {
        uint64_t woke = mono_ns(), deadline = now + timeout_ns;
        if (woke > deadline && woke - deadline > t->max_stall)
            t->max_stall = woke - deadline;
    }
    for (int i = 0; t->epfd >= 0 && i < n; i++) {
        struct bp *p = evs[i].data.ptr;
        if (p == NULL)
            continue;
        if (p->ws != NULL)
            wscl_handle(p->ws, evs[i].events);
        else if (cfg->mode == LOAD_FLOOR)
            load_floor_read(t, p);
    }
}

/* The join timeout passed (load_run): unanswered joins, and joins not yet
 * started, end as LOAD_END_TIMEOUT so that the thread reports ready. */
static void expire_joins(struct lthread *t, uint64_t now)
{
    for (uint32_t i = 0; i < t->n_base; i++) {
        struct bp *p = &t->p[i];
        if (p->st != BP_JOINED && p->st != BP_FAILED)
            participant_ended(p, now, LOAD_END_TIMEOUT, 0);
    }
    t->next_base = t->n_base;
}

void *load_thread_main(void *arg)
{
    struct lthread *t = arg;
    struct load *L = t->L;
    const struct load_config *cfg = L->cfg;
    t->join_t0 = mono_ns();
    for (;;) {
        uint64_t now = mono_ns();
        int ph = atomic_load_explicit(&L->phase, memory_order_acquire);
        if (ph == PH_CLOSE)
            break;
        /* Pairs with the release store of PH_MEASURE: start_ns/end_ns. */
        if (ph == PH_MEASURE && !t->measuring)
            start_window(t, now);
        /* Pairs with the release store in load_run. */
        if (!t->ready && atomic_load_explicit(&L->joins_expired, memory_order_acquire))
            expire_joins(t, now);
        uint64_t next = pace(t, now);
        if (t->nm != NULL)
            netem_run(t->nm, now);
        timers_run(t->timers, now);
        if (cfg->mode == LOAD_QUIC)
            (void)roost_client_process(t->cl, mono_ns());
        now = mono_ns();
        if (!t->ready && t->answered_base == t->n_base) {
            t->ready = true;
            atomic_fetch_add_explicit(&L->ready, 1, memory_order_release);
        }
        if (t->measuring && !t->finished && now >= L->end_ns + cfg->drain_ns) {
            finish_window(t, now);
            /* Pairs with the acquire load in load_run: the frozen stats. */
            atomic_fetch_add_explicit(&L->done, 1, memory_order_release);
        }
        uint64_t wait = next > now ? next - now : 0;
        uint64_t tn = timers_next(t->timers);
        if (tn != TIMER_NEVER)
            wait = tn > now ? (tn - now < wait ? tn - now : wait) : 0;
        if (cfg->mode == LOAD_QUIC) {
            uint64_t c = roost_client_next_timeout(t->cl, now);
            if (c < wait)
                wait = c;
        }
        if (t->nm != NULL) {
            uint64_t d = netem_next(t->nm);
            if (d != UINT64_MAX)
                wait = d > now ? (d - now < wait ? d - now : wait) : 0;
        }
        if (t->measuring && !t->finished) {
            uint64_t e = L->end_ns + cfg->drain_ns;
            if (e > now && e - now < wait)
                wait = e - now;
        }
        wait_events(t, now, wait);
    }
    /* Close politely so the relay frees the sessions now, not at idle
     * timeout. */
    if (cfg->mode == LOAD_QUIC) {
        for (uint32_t i = 0; i < t->n_base + t->n_storm; i++) {
            if (t->p[i].c != NULL && !roost_conn_is_closed(t->p[i].c))
                roost_conn_close(t->p[i].c, 0);
            if (t->p[i].ws != NULL)
                wscl_close(t->p[i].ws); /* Close 1000 */
        }
        (void)roost_client_process(t->cl, mono_ns());
    }
    /* The closing packets leave now; what was still on its way in is
     * dropped. */
    if (t->nm != NULL)
        netem_flush(t->nm, NETEM_OUT, mono_ns());
    return NULL;
}
