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

/* ------------------------------------------------------------- wakeups */

void worker_evfd_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the worker is woken anyway. */
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r;
}

/* Called by a producer after its publish and a seq_cst fence. */
bool worker_wake_if_sleeping(struct worker *dst, bool ctl)
{
    /* relaxed load first: the common case (consumer awake) costs no RMW. The
     * ordering against our publish comes from the caller's seq_cst fence. */
    int s = atomic_load_explicit(&dst->sleeping, memory_order_relaxed);
    if (s == SLEEP_AWAKE || (s == SLEEP_HOLD && !ctl))
        return false;
    /* Compare-exchange: of several producers racing here, one writes the
     * eventfd; a media producer never ends a hold. */
    if (!atomic_compare_exchange_strong_explicit(&dst->sleeping, &s, SLEEP_AWAKE,
                                                 memory_order_relaxed, memory_order_relaxed))
        return false;
    worker_evfd_signal(dst->evfd);
    return true;
}

/* Publishes every ring with staged writes, then wakes sleeping consumers
 * whose ring went from empty to non-empty. A consumer holding a batch
 * window (SLEEP_HOLD) is woken only when what we published holds a control
 * message: for those the flag ctl_pending is set before the fence, so the
 * consumer's own check after its fence (batch_hold) sees it or we see its
 * SLEEP_HOLD (the same Dekker pairing as for sleeping). */
void worker_publish_all(struct worker *w)
{
    uint64_t woke = 0; /* bitmap of destinations that got new messages */
    for (unsigned to = 0; to < w->n; to++) {
        if (w->out[to] != NULL && ring_publish(w->out[to]) > 0)
            woke |= 1ull << to;
    }
    uint64_t ctl = w->ctl_out & woke;
    w->ctl_out = 0;
    if (woke == 0)
        return;
    for (unsigned to = 0; ctl != 0 && to < w->n; to++) {
        if (ctl & (1ull << to))
            atomic_store_explicit(&w->pool->w[to]->ctl_pending, 1, memory_order_relaxed);
    }
    /* seq_cst fence: orders the prod.tail stores above before the loads of
     * `sleeping` below; pairs with the fence in sleep_prepare (see the file
     * comment: Dekker-style, one of the two sides sees the other's store). */
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t sent = 0;
    for (unsigned to = 0; to < w->n; to++) {
        if ((woke & (1ull << to)) && worker_wake_if_sleeping(w->pool->w[to], (ctl >> to) & 1))
            sent++;
    }
    if (sent != 0)
        stat_add(w->st, WSTAT(wakes_sent), sent);
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
        w->ctl_out |= 1ull << to; /* spilled messages are control */
    }
    w->n_spilling--;
    return true;
}

int worker_send(struct worker *w, unsigned to, const struct worker_msg *msg,
                enum worker_msg_class cls)
{
    if (to >= w->n)
        return ROOST_EINVAL;
    if (cls != WORKER_MSG_CONTROL && cls != WORKER_MSG_MEDIA && cls != WORKER_MSG_REQUEST &&
        cls != WORKER_MSG_OWED)
        return ROOST_EINVAL;

    struct worker_msg m = *msg;
    m.from = w->id;
    if (to == w->id) {
        /* No ring to self: the local FIFO, drained in the message phase. */
        int rc = msgq_push(&w->selfq, &m);
        if (rc != 0)
            return rc;
        stat_add(w->st, WSTAT(msgs_out), 1);
        return 0;
    }
    /* Older spilled messages go first, so that nothing overtakes them. */
    if (spill_drain(w, to) && ring_stage_burst(w->out[to], &m, 1) == 1) {
        if (cls != WORKER_MSG_MEDIA)
            w->ctl_out |= 1ull << to;
        stat_add(w->st, WSTAT(msgs_out), 1);
        return 0;
    }
    if (cls == WORKER_MSG_MEDIA) {
        stat_add(w->st, WSTAT(ring_drops), 1);
        return ROOST_EAGAIN;
    }
    struct msgq *q = &w->spill[to];
    uint32_t bound = w->pool->spill_max;
    if (cls == WORKER_MSG_OWED)
        bound = UINT32_MAX;
    else if (cls != WORKER_MSG_REQUEST)
        bound = bound > UINT32_MAX / WORKER_SPILL_HARD_X ? UINT32_MAX : bound * WORKER_SPILL_HARD_X;
    if (q->len >= bound) {
        stat_add(w->st, WSTAT(spill_full), 1);
        return ROOST_EFULL;
    }
    int rc = msgq_push(q, &m);
    if (rc != 0)
        return rc;
    if (q->len == 1)
        w->n_spilling++;
    stat_add(w->st, WSTAT(ring_spills), 1);
    stat_add(w->st, WSTAT(msgs_out), 1);
    return 0;
}

void worker_flush(struct worker *w)
{
    worker_publish_all(w);
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
    /* Cleared before the rings are read: control published after this sets
     * it again. An RMW, not a store, so that it cannot land after the ring
     * loads below and erase a newer producer's flag. */
    if (atomic_load_explicit(&w->ctl_pending, memory_order_relaxed) != 0)
        atomic_exchange_explicit(&w->ctl_pending, 0, memory_order_seq_cst);
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
            w->traffic = true;
            stat_add(w->st, WSTAT(msgs_in), k);
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
    stat_add(w->st, WSTAT(msgs_in), q->len);
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
        stat_add(w->st, WSTAT(msgs_in), 1);
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
                stat_add(w->st, WSTAT(wakeups), 1);
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
    atomic_store_explicit(&w->sleeping, SLEEP_BLOCKED, memory_order_relaxed);
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
        atomic_store_explicit(&w->sleeping, SLEEP_AWAKE, memory_order_relaxed);
    return idle;
}

/* The batch hold (turn cadence, worker_config.turn_batch_us). Called when
 * the last turn found work (fd events or ring messages) but nothing is
 * pending for an immediate turn. Waits, on the eventfd alone, until
 * turn_start + batch_ns or the next timer's expiry plus the timer slack
 * (worker_config.timer_slack_us), whichever is first, so that what arrives
 * on the fds and in the rings meanwhile is taken in one turn. What never
 * waits:
 *   - timers: the wait ends at the earliest expiry plus the slack (ns
 *     timeout), so a timer fires at most slack_ns late; with a slack of a
 *     window or more, a timer falling due in a hold fires with the hold's
 *     turn instead of cutting the hold short and costing a turn of its
 *     own;
 *   - control: a producer that published a control message (worker_send
 *     with WORKER_MSG_CONTROL, a spilled message), a post (inbox) and stop
 *     write the eventfd when they see SLEEP_HOLD, and the check below after
 *     our fence sees what they published before; media publishes do not
 *     wake a holding worker (they are the batch).
 * Returns true when it waited (the clock moved: w->now is re-read). */
static bool batch_hold(struct worker *w)
{
    uint64_t t0 = worker_clock_ns();
    uint64_t until = w->turn_start + w->batch_ns;
    uint64_t next = timers_next(w->timers);
    bool by_timer = false;
    if (next != TIMER_NEVER && next < until && until - next > w->slack_ns) {
        until = next + w->slack_ns;
        by_timer = true;
    }
    if (until <= t0)
        return false; /* the turn took the whole window: back to back */
    atomic_store_explicit(&w->sleeping, SLEEP_HOLD, memory_order_relaxed);
    /* seq_cst fence: pairs with the fence in worker_publish_all (taken after
     * its ctl_pending store) and in worker_pool_post. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->ctl_pending, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&w->inbox_pending, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&w->pool->stop, memory_order_relaxed) != 0) {
        atomic_store_explicit(&w->sleeping, SLEEP_AWAKE, memory_order_relaxed);
        return false;
    }
    stat_add(w->st, WSTAT(busy_ns), t0 - w->now);
    uint64_t d = until - t0;
    struct timespec ts = {.tv_sec = (time_t)(d / 1000000000u), .tv_nsec = (long)(d % 1000000000u)};
    struct epoll_event ev;
    rcu_thread_offline();
    int r = epoll_pwait2(w->hold_epfd, &ev, 1, &ts, NULL);
    rcu_thread_online();
    atomic_store_explicit(&w->sleeping, SLEEP_AWAKE, memory_order_relaxed);
    if (r == -1 && errno == ENOSYS) {
        log_warn("%s", "msg=\"epoll_pwait2 unavailable: turn_batch_us ignored\"");
        w->batch_ns = 0;
    }
    stat_add(w->st, WSTAT(holds), 1);
    if (r > 0)
        stat_add(w->st, WSTAT(hold_ctl), 1);
    else if (by_timer)
        stat_add(w->st, WSTAT(hold_timer), 1);
    w->now = worker_clock_ns();
    return true;
}

static int turn_timeout(struct worker *w)
{
    if (w->more || w->wake_self || w->selfq.len > 0)
        return 0;
    /* Spilled messages wait for their consumer to make room in a ring: poll
     * for it every WORKER_SPILL_POLL_MS rather than spin. */
    int cap = w->n_spilling > 0 ? WORKER_SPILL_POLL_MS : -1;
    uint64_t next = timers_next(w->timers);
    if (next == TIMER_NEVER)
        return cap;
    if (next <= w->now)
        return 0;
    uint64_t ms = (next - w->now + 999999) / 1000000;
    if (cap >= 0 && ms > (uint64_t)cap)
        return cap;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void worker_run_loop(struct worker *w)
{
    const struct worker_ops *ops = w->pool->ops;
    void *arg = w->pool->arg;

    w->now = worker_clock_ns(); /* busy_ns starts here, not before start() */
    w->turn_start = w->now;
    for (;;) {
        int timeout = turn_timeout(w);
        /* After a hold, the wait below may block: epoll_wait returns at
         * once with what came during the hold, and when nothing came the
         * worker goes to sleep in the same call, without an empty turn and
         * a second epoll_wait. The hold moved the clock: the timeout is
         * taken again (a timer that fell due makes it 0). */
        if (timeout != 0 && w->batch_ns != 0 && w->traffic && batch_hold(w))
            timeout = turn_timeout(w);
        w->more = false;
        w->wake_self = false;
        w->traffic = false;
        int n;
        if (timeout != 0 && sleep_prepare(w)) {
            uint64_t t0 = worker_clock_ns();
            stat_add(w->st, WSTAT(busy_ns), t0 - w->now);
            /* Offline while blocked: synchronize_rcu need not wait for us. */
            stat_add(w->st, WSTAT(blocks), 1);
            rcu_thread_offline();
            n = epoll_wait(w->epfd, w->events, MAX_EVENTS, timeout);
            rcu_thread_online();
            atomic_store_explicit(&w->sleeping, SLEEP_AWAKE, memory_order_relaxed);
            w->now = worker_clock_ns();
        } else {
            stat_add(w->st, WSTAT(polls), 1);
            n = epoll_wait(w->epfd, w->events, MAX_EVENTS, 0);
            uint64_t t = worker_clock_ns();
            stat_add(w->st, WSTAT(busy_ns), t - w->now);
            w->now = t;
        }
        w->turn_start = w->now;
        if (n == -1) {
            if (errno != EINTR)
                log_error("msg=\"epoll_wait failed\" errno=%d", errno);
            n = 0;
        }
        if (n == MAX_EVENTS)
            w->more = true;
        if (n > 0)
            w->traffic = true;
        if (atomic_load_explicit(&w->pool->stop, memory_order_relaxed))
            break;

        unsigned fired = timers_run(w->timers, w->now);
        for (unsigned to = 0; w->n_spilling > 0 && to < w->n; to++) {
            if (w->out[to] != NULL)
                spill_drain(w, to);
        }
        uint64_t msgs = atomic_load_explicit(&w->st[WSTAT(msgs_in)], memory_order_relaxed);
        deliver_rings(w);
        deliver_inbox(w);
        deliver_self(w);
        if (n == 0 && fired == 0 &&
            atomic_load_explicit(&w->st[WSTAT(msgs_in)], memory_order_relaxed) == msgs)
            stat_add(w->st, WSTAT(empty_turns), 1);
        dispatch_events(w, n);
        if (ops->on_turn_end)
            ops->on_turn_end(w, arg);
        worker_publish_all(w);
        rcu_quiescent_state();
        stat_add(w->st, WSTAT(turns), 1);
    }
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
void worker_discard_inbound(struct worker *w)
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

void worker_now_refresh(struct worker *w)
{
    uint64_t t = worker_clock_ns();
    if (t > w->now) {
        stat_add(w->st, WSTAT(busy_ns), t - w->now); /* the sleep adds the rest */
        w->now = t;
    }
}

void worker_set_ingress(struct worker *w, uint64_t ns)
{
    w->ingress_ns = ns;
}

uint64_t worker_ingress(const struct worker *w)
{
    return w->ingress_ns;
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
