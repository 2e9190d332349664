/* Worker runtime: all-to-all delivery exactly once and in order (1, 2, 4
 * workers), eventfd wakeups only for a sleeping consumer, control spill and
 * media drop on a full ring, timers through a worker, pinning, RCU QSBR
 * (synchronize_rcu completes with idle and busy workers), start failure, and
 * shutdown with counted buffers in flight (nothing leaks), messages to self
 * (next message phase, FIFO, never re-entrant, bounded per turn, discarded
 * at shutdown) and handlers registered per type range.
 *
 * Worker threads never call cmocka asserts (not thread-safe): they record
 * into `struct ctx`, and the main thread checks after joining them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/timer.h"
#include "core/worker.h"

enum {
    T_GO_ALL = 1,  /* u32[0] = K: send K T_DATA to every other worker */
    T_DATA,        /* u64[0] = per-pair sequence */
    T_MEDIA_BURST, /* u32[0] = count of media to send to worker 1 */
    T_MEDIA,       /* media payload */
    T_CTRL_BURST,  /* u32[0] = count of control T_DATA to worker 1, then one media */
    T_SPIN,        /* u32[0] = 1: keep turning (wake_self), 0: stop */
    T_BUF_FLOOD,   /* u32[0] = count of T_BUF to each other worker, then stop */
    T_BUF,         /* ptr[0] = struct buf * (one reference) */
    T_FD_ADD,      /* u32[0] = fd to watch for EPOLLIN */
};

#define MAXW 8

struct ctx {
    /* next[to][from]: expected sequence; written by worker `to` only. */
    uint64_t next[MAXW][WORKER_MAX + 1];
    uint64_t sent[MAXW][MAXW]; /* written by worker `from` only */
    _Atomic uint64_t data_rx;
    _Atomic uint64_t order_err;
    _Atomic uint64_t send_err;
    _Atomic uint64_t bad_dest_einval;
    _Atomic uint64_t posts_rx;
    _Atomic uint64_t media_rx;
    _Atomic uint64_t media_eagain;
    _Atomic int last_media_rc;
    _Atomic int spinning[MAXW];
    _Atomic uint64_t buf_sent;
    _Atomic uint64_t buf_rx;
    _Atomic uint64_t discarded;
    _Atomic uint64_t discarded_from_worker;
    _Atomic unsigned started;
    _Atomic unsigned stopped;
    int fail_start_id; /* -1: none */
    int cpu_seen[MAXW];
    /* timer test */
    int timer_mode;
    struct timer tm[5];
    int fired[8];
    _Atomic unsigned n_fired;
    /* fd test */
    _Atomic uint64_t fd_reads;
    _Atomic int fd_add_rc, fd_readd_rc, fd_mod_rc, fd_del_rc, fd_mod_after_del_rc;
};

static struct ctx C;

static void reset(void)
{
    memset(&C, 0, sizeof(C));
    C.fail_start_id = -1;
}

static void t_on_timer(struct timer *t, uint64_t now, void *arg)
{
    (void)now;
    int id = (int)(intptr_t)arg;
    unsigned k = atomic_load(&C.n_fired);
    if (k < 8)
        C.fired[k] = id;
    if (id == 0) {
        /* Cancel timer 3 from inside a callback. */
        struct timers *ts = worker_timers((struct worker *)C.tm[4].arg);
        timer_cancel(ts, &C.tm[3]);
    }
    (void)t;
    atomic_fetch_add(&C.n_fired, 1);
}

static int t_start(struct worker *w, void *arg)
{
    (void)arg;
    unsigned id = worker_id(w);
    if ((int)id == C.fail_start_id)
        return ROOST_EIO;
    if (id < MAXW)
        C.cpu_seen[id] = sched_getcpu();
    if (C.timer_mode && id == 0) {
        struct timers *ts = worker_timers(w);
        uint64_t now = worker_now(w);
        for (int i = 0; i < 4; i++)
            timer_init(&C.tm[i], t_on_timer, (void *)(intptr_t)i);
        timer_init(&C.tm[4], t_on_timer, w); /* never armed; carries w */
        /* Fire order must be 0, 1, 2; 3 is cancelled by 0's callback; 1 is
         * armed late, then re-armed earlier than 2. */
        timer_arm(ts, &C.tm[0], now + 2000000);
        timer_arm(ts, &C.tm[2], now + 6000000);
        timer_arm(ts, &C.tm[3], now + 7000000);
        timer_arm(ts, &C.tm[1], now + 9000000);
        timer_arm(ts, &C.tm[1], now + 4000000);
    }
    atomic_fetch_add(&C.started, 1);
    return 0;
}

static void t_stop(struct worker *w, void *arg)
{
    (void)w;
    (void)arg;
    atomic_fetch_add(&C.stopped, 1);
}

static void send_data(struct worker *w, unsigned to)
{
    unsigned me = worker_id(w);
    struct worker_msg m = {.type = T_DATA};
    m.u.u64[0] = C.sent[me][to];
    int rc = worker_send(w, to, &m, WORKER_MSG_CONTROL);
    if (rc != 0)
        atomic_fetch_add(&C.send_err, 1);
    else
        C.sent[me][to]++;
}

static void t_on_fd(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)arg;
    char c;
    if (!(events & EPOLLIN) || read(fd, &c, 1) != 1)
        return;
    atomic_fetch_add(&C.fd_reads, 1);
    if (c == 'x') { /* deregister from inside the callback */
        atomic_store(&C.fd_del_rc, worker_fd_del(w, fd));
        atomic_store(&C.fd_mod_after_del_rc, worker_fd_mod(w, fd, EPOLLIN));
    }
}

static void t_on_msg(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)arg;
    unsigned me = worker_id(w);
    unsigned n = worker_count(w);
    if (m->from == WORKER_MAX)
        atomic_fetch_add(&C.posts_rx, 1);
    switch (m->type) {
    case T_GO_ALL: {
        struct worker_msg x = {.type = T_DATA};
        if (worker_send(w, n, &x, WORKER_MSG_CONTROL) == ROOST_EINVAL)
            atomic_fetch_add(&C.bad_dest_einval, 1);
        for (uint32_t i = 0; i < m->u.u32[0]; i++) {
            for (unsigned to = 0; to < n; to++) {
                if (to != me)
                    send_data(w, to);
            }
        }
        break;
    }
    case T_DATA:
        if (m->from >= n || m->u.u64[0] != C.next[me][m->from])
            atomic_fetch_add(&C.order_err, 1);
        else
            C.next[me][m->from]++;
        atomic_fetch_add(&C.data_rx, 1);
        break;
    case T_MEDIA_BURST:
        for (uint32_t i = 0; i < m->u.u32[0]; i++) {
            struct worker_msg x = {.type = T_MEDIA};
            int rc = worker_send(w, 1, &x, WORKER_MSG_MEDIA);
            if (rc == ROOST_EAGAIN)
                atomic_fetch_add(&C.media_eagain, 1);
            else if (rc != 0)
                atomic_fetch_add(&C.send_err, 1);
        }
        break;
    case T_MEDIA:
        atomic_fetch_add(&C.media_rx, 1);
        break;
    case T_CTRL_BURST: {
        for (uint32_t i = 0; i < m->u.u32[0]; i++)
            send_data(w, 1);
        struct worker_msg x = {.type = T_MEDIA};
        atomic_store(&C.last_media_rc, worker_send(w, 1, &x, WORKER_MSG_MEDIA));
        break;
    }
    case T_SPIN:
        atomic_store(&C.spinning[me], (int)m->u.u32[0]);
        break;
    case T_BUF_FLOOD:
        for (uint32_t i = 0; i < m->u.u32[0]; i++) {
            for (unsigned to = 0; to < n; to++) {
                if (to == me)
                    continue;
                struct worker_msg x = {.type = T_BUF};
                struct buf *b = buf_new(32);
                if (b == NULL) {
                    atomic_fetch_add(&C.send_err, 1);
                    continue;
                }
                x.u.ptr[0] = b;
                if (worker_send(w, to, &x, WORKER_MSG_CONTROL) != 0) {
                    buf_unref(b);
                    atomic_fetch_add(&C.send_err, 1);
                    continue;
                }
                atomic_fetch_add(&C.buf_sent, 1);
            }
        }
        /* Stop with these still in flight. */
        worker_pool_request_stop(worker_pool(w));
        break;
    case T_FD_ADD: {
        int fd = (int)m->u.u32[0];
        atomic_store(&C.fd_add_rc, worker_fd_add(w, fd, EPOLLIN, t_on_fd, NULL));
        atomic_store(&C.fd_readd_rc, worker_fd_add(w, fd, EPOLLIN, t_on_fd, NULL));
        atomic_store(&C.fd_mod_rc, worker_fd_mod(w, fd, EPOLLIN));
        break;
    }
    case T_BUF:
        buf_unref(m->u.ptr[0]);
        atomic_fetch_add(&C.buf_rx, 1);
        break;
    default:
        break;
    }
}

static void t_on_turn_end(struct worker *w, void *arg)
{
    (void)arg;
    if (atomic_load(&C.spinning[worker_id(w)]))
        worker_wake_self(w);
}

static void t_on_discard(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)arg;
    if (m->type == T_BUF) {
        buf_unref(m->u.ptr[0]);
        if (m->from != WORKER_MAX)
            atomic_fetch_add(&C.discarded_from_worker, 1);
    }
    atomic_fetch_add(&C.discarded, 1);
}

static const struct worker_ops OPS = {
    .start = t_start,
    .stop = t_stop,
    .on_msg = t_on_msg,
    .on_turn_end = t_on_turn_end,
    .on_discard = t_on_discard,
};

/* Polls until *v >= want or about 20 s passed. Returns the last value. */
static uint64_t wait_for(_Atomic uint64_t *v, uint64_t want)
{
    for (int i = 0; i < 20000 && atomic_load(v) < want; i++)
        usleep(1000);
    return atomic_load(v);
}

static struct worker_pool *make_pool(unsigned n, unsigned cap)
{
    struct worker_config cfg = {.n_workers = n, .ring_capacity = cap, .no_pin = true};
    struct worker_pool *p = NULL;
    assert_int_equal(worker_pool_new(&p, &cfg, &OPS, &C), 0);
    assert_non_null(p);
    assert_int_equal(worker_pool_size(p), n);
    return p;
}

static void post(struct worker_pool *p, unsigned to, uint16_t type, uint32_t v)
{
    struct worker_msg m = {.type = type};
    m.u.u32[0] = v;
    assert_int_equal(worker_pool_post(p, to, &m), 0);
}

/* ----------------------------------------------------------- all-to-all */

static void all_to_all(unsigned n)
{
    const uint32_t K = 3000;
    reset();
    /* Capacity 256 < K: part of the traffic goes through the spill queues. */
    struct worker_pool *p = make_pool(n, 256);
    assert_int_equal(worker_pool_start(p), 0);
    assert_int_equal(atomic_load(&C.started), n);
    for (unsigned i = 0; i < n; i++)
        post(p, i, T_GO_ALL, K);
    uint64_t want = (uint64_t)n * (n - 1) * K;
    assert_int_equal(wait_for(&C.data_rx, want), want);
    assert_int_equal(wait_for(&C.posts_rx, n), n);
    usleep(20000); /* nothing more may arrive */
    worker_pool_stop(p);
    assert_int_equal(atomic_load(&C.stopped), n);
    assert_int_equal(atomic_load(&C.data_rx), want);
    assert_int_equal(atomic_load(&C.order_err), 0);
    assert_int_equal(atomic_load(&C.send_err), 0);
    assert_int_equal(atomic_load(&C.bad_dest_einval), n);
    assert_int_equal(atomic_load(&C.discarded), 0);
    for (unsigned to = 0; to < n; to++) {
        for (unsigned from = 0; from < n; from++)
            assert_int_equal(C.next[to][from], from == to ? 0 : K);
        struct worker_stats st;
        worker_pool_stats(p, to, &st);
        assert_int_equal(st.msgs_out, (uint64_t)(n - 1) * K);
        assert_int_equal(st.msgs_in, (uint64_t)(n - 1) * K + 1);
        assert_int_equal(st.ring_drops, 0);
        assert_true(st.turns > 0);
        if (n > 1)
            assert_true(st.ring_spills > 0);
    }
    worker_pool_del(p);
}

static void test_all_to_all_1(void **state)
{
    (void)state;
    all_to_all(1);
}

static void test_all_to_all_2(void **state)
{
    (void)state;
    all_to_all(2);
}

static void test_all_to_all_4(void **state)
{
    (void)state;
    all_to_all(4);
}

/* -------------------------------------------------------------- wakeup */

static uint64_t stat_of(struct worker_pool *p, unsigned id, int which)
{
    struct worker_stats st;
    worker_pool_stats(p, id, &st);
    return which == 0 ? st.wakeups : st.turns;
}

static void test_wakeup_edge(void **state)
{
    (void)state;
    reset();
    struct worker_pool *p = make_pool(2, 64);
    assert_int_equal(worker_pool_start(p), 0);

    /* An idle worker blocks: its turn count stands still. */
    usleep(50000);
    uint64_t turns = stat_of(p, 1, 1);
    usleep(50000);
    assert_true(stat_of(p, 1, 1) <= turns + 1);

    /* A sleeping worker is woken through its eventfd by a ring message. */
    uint64_t wake0 = stat_of(p, 1, 0);
    post(p, 0, T_GO_ALL, 1); /* worker 0 sends one T_DATA to worker 1 */
    assert_int_equal(wait_for(&C.data_rx, 1), 1);
    assert_true(stat_of(p, 1, 0) >= wake0 + 1);

    /* A busy worker is never signalled: make worker 1 spin, then send it
     * many messages; its wakeup count does not move. */
    post(p, 1, T_SPIN, 1);
    for (int i = 0; i < 5000 && stat_of(p, 1, 1) < turns + 1000; i++)
        usleep(1000);
    usleep(10000);
    uint64_t wake1 = stat_of(p, 1, 0);
    post(p, 0, T_GO_ALL, 2000);
    assert_int_equal(wait_for(&C.data_rx, 1 + 2000), 2001);
    assert_int_equal(stat_of(p, 1, 0), wake1);
    post(p, 1, T_SPIN, 0);

    worker_pool_stop(p);
    assert_int_equal(atomic_load(&C.order_err), 0);
    worker_pool_del(p);
}

/* ---------------------------------------------------------- spill / drop */

static void test_spill_and_drop(void **state)
{
    (void)state;
    reset();
    const unsigned cap = 8;
    struct worker_pool *p = make_pool(2, cap);
    assert_int_equal(worker_pool_start(p), 0);

    /* Media: in one turn, cap messages fill the ring, the rest are dropped. */
    post(p, 0, T_MEDIA_BURST, cap + 10);
    assert_int_equal(wait_for(&C.media_rx, cap), cap);
    assert_int_equal(atomic_load(&C.media_eagain), 10);
    struct worker_stats st;
    worker_pool_stats(p, 0, &st);
    assert_int_equal(st.ring_drops, 10);
    assert_int_equal(st.ring_spills, 0);

    /* Control: 10000 through a ring of 8, none lost, in order; the media
     * message sent behind them meets the full ring and is dropped. */
    post(p, 0, T_CTRL_BURST, 10000);
    assert_int_equal(wait_for(&C.data_rx, 10000), 10000);
    usleep(20000);
    worker_pool_stop(p);
    assert_int_equal(atomic_load(&C.data_rx), 10000);
    assert_int_equal(atomic_load(&C.order_err), 0);
    assert_int_equal(atomic_load(&C.send_err), 0);
    assert_int_equal(C.next[1][0], 10000);
    assert_int_equal(atomic_load(&C.last_media_rc), ROOST_EAGAIN);
    assert_int_equal(atomic_load(&C.media_rx), cap);
    worker_pool_stats(p, 0, &st);
    assert_int_equal(st.ring_spills, 10000 - cap);
    assert_int_equal(st.ring_drops, 11);
    assert_int_equal(st.msgs_out, cap + 10000);
    worker_pool_stats(p, 1, &st);
    assert_int_equal(st.msgs_in, cap + 10000);
    assert_int_equal(atomic_load(&C.discarded), 0);
    worker_pool_del(p);
}

/* -------------------------------------------------------------- timers */

static void test_timers_in_worker(void **state)
{
    (void)state;
    reset();
    C.timer_mode = 1;
    struct worker_pool *p = make_pool(1, 0);
    assert_int_equal(worker_pool_start(p), 0);
    for (int i = 0; i < 5000 && atomic_load(&C.n_fired) < 3; i++)
        usleep(1000);
    usleep(30000); /* past the cancelled timer's expiry */
    worker_pool_stop(p);
    assert_int_equal(atomic_load(&C.n_fired), 3);
    assert_int_equal(C.fired[0], 0);
    assert_int_equal(C.fired[1], 1);
    assert_int_equal(C.fired[2], 2);
    worker_pool_del(p);
}

/* ----------------------------------------------------------------- fds */

static void test_fd_callbacks(void **state)
{
    (void)state;
    reset();
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    struct worker_pool *p = make_pool(2, 64);
    assert_int_equal(worker_pool_start(p), 0);
    post(p, 1, T_FD_ADD, (uint32_t)pfd[0]);
    assert_int_equal(write(pfd[1], "a", 1), 1);
    assert_int_equal(wait_for(&C.fd_reads, 1), 1);
    assert_int_equal(atomic_load(&C.fd_add_rc), 0);
    assert_int_equal(atomic_load(&C.fd_readd_rc), ROOST_EEXIST);
    assert_int_equal(atomic_load(&C.fd_mod_rc), 0);
    assert_int_equal(write(pfd[1], "x", 1), 1); /* callback removes the fd */
    assert_int_equal(wait_for(&C.fd_reads, 2), 2);
    assert_int_equal(write(pfd[1], "b", 1), 1); /* no longer watched */
    usleep(30000);
    worker_pool_stop(p);
    assert_int_equal(atomic_load(&C.fd_reads), 2);
    assert_int_equal(atomic_load(&C.fd_del_rc), 0);
    assert_int_equal(atomic_load(&C.fd_mod_after_del_rc), ROOST_ENOENT);
    worker_pool_del(p);
    close(pfd[0]);
    close(pfd[1]);
}

/* ------------------------------------------------------------- pinning */

static void test_pinning(void **state)
{
    (void)state;
    reset();
    cpu_set_t mask;
    assert_int_equal(sched_getaffinity(0, sizeof(mask), &mask), 0);
    int cpus[CPU_SETSIZE], ncpu = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &mask))
            cpus[ncpu++] = c;
    }
    /* 4 workers on the process's CPUs (2 on the test machine): cpus[i % n]. */
    struct worker_config cfg = {.n_workers = 4};
    struct worker_pool *p = NULL;
    assert_int_equal(worker_pool_new(&p, &cfg, &OPS, &C), 0);
    assert_int_equal(worker_pool_start(p), 0);
    worker_pool_stop(p);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(worker_cpu(worker_pool_get(p, i)), cpus[i % (unsigned)ncpu]);
        assert_int_equal(C.cpu_seen[i], cpus[i % (unsigned)ncpu]);
    }
    worker_pool_del(p);

    /* An explicit list overrides the mask, and n_workers 0 means one per CPU. */
    int one[1] = {cpus[ncpu - 1]};
    struct worker_config cfg2 = {.cpus = one, .n_cpus = 1, .n_workers = 3};
    assert_int_equal(worker_pool_new(&p, &cfg2, &OPS, &C), 0);
    assert_int_equal(worker_cpu(worker_pool_get(p, 2)), one[0]);
    assert_null(worker_pool_get(p, 3));
    worker_pool_del(p);
    struct worker_config cfg3 = {.n_workers = 0, .no_pin = true};
    assert_int_equal(worker_pool_new(&p, &cfg3, &OPS, &C), 0);
    assert_int_equal(worker_pool_size(p), (unsigned)ncpu);
    assert_int_equal(worker_cpu(worker_pool_get(p, 0)), -1);
    worker_pool_del(p);
}

static void test_bad_config(void **state)
{
    (void)state;
    reset();
    struct worker_pool *p = (struct worker_pool *)1;
    struct worker_config cfg = {.n_workers = 2, .ring_capacity = 100, .no_pin = true};
    assert_int_equal(worker_pool_new(&p, &cfg, &OPS, &C), ROOST_EINVAL);
    assert_null(p);
    cfg.ring_capacity = 64;
    cfg.n_workers = WORKER_MAX + 1;
    assert_int_equal(worker_pool_new(&p, &cfg, &OPS, &C), ROOST_EINVAL);
    int bad[1] = {CPU_SETSIZE + 5};
    struct worker_config cfg2 = {.n_workers = 1, .cpus = bad, .n_cpus = 1};
    assert_int_equal(worker_pool_new(&p, &cfg2, &OPS, &C), ROOST_EINVAL);
    bad[0] = -1;
    assert_int_equal(worker_pool_new(&p, &cfg2, &OPS, &C), ROOST_EINVAL);
    worker_pool_del(NULL);
}

/* ----------------------------------------------------------------- RCU */

static void test_rcu_qsbr(void **state)
{
    (void)state;
    reset();
    alarm(300); /* a worker that fails to go offline or quiesce hangs here (a
                 * hang, not a timing bound: generous for a loaded machine) */
    struct worker_pool *p = make_pool(2, 64);
    assert_int_equal(worker_pool_start(p), 0);
    usleep(20000);
    synchronize_rcu(); /* idle workers: offline in epoll_wait */
    post(p, 0, T_SPIN, 1);
    post(p, 1, T_SPIN, 1);
    usleep(20000);
    for (int i = 0; i < 10; i++)
        synchronize_rcu(); /* busy workers: a quiescent state every turn */
    post(p, 0, T_SPIN, 0);
    post(p, 1, T_SPIN, 0);
    worker_pool_stop(p);
    worker_pool_del(p);
    alarm(0);
}

/* ------------------------------------------------------ start failure */

static void test_start_failure(void **state)
{
    (void)state;
    reset();
    C.fail_start_id = 1;
    struct worker_pool *p = make_pool(3, 64);
    assert_int_equal(worker_pool_start(p), ROOST_EIO);
    /* Workers 0 and 2 started and are stopped; no thread is left running. */
    assert_int_equal(atomic_load(&C.started), 2);
    assert_int_equal(atomic_load(&C.stopped), 2);
    assert_int_equal(worker_pool_start(p), ROOST_EINVAL);
    worker_pool_stop(p);
    worker_pool_del(p);
}

/* ---------------------------------------------------------- shutdown */

static void test_shutdown_in_flight(void **state)
{
    (void)state;
    reset();
    int64_t live0 = buf_live();
    struct worker_pool *p = make_pool(4, 64);
    assert_int_equal(worker_pool_start(p), 0);
    uint64_t posted = 0;
    /* Worker 0 floods everyone with counted buffers (beyond the rings'
     * capacity, so most sit in its spill queues) and then stops the pool. */
    post(p, 0, T_BUF_FLOOD, 500);
    assert_int_equal(wait_for(&C.buf_sent, 500 * 3), 500 * 3);
    for (unsigned to = 0; to < 4; to++) {
        for (int i = 0; i < 50; i++) {
            struct worker_msg m = {.type = T_BUF};
            m.u.ptr[0] = buf_new(16);
            assert_non_null(m.u.ptr[0]);
            int rc = worker_pool_post(p, to, &m);
            if (rc == ROOST_ECLOSED) { /* that worker already shut down */
                buf_unref(m.u.ptr[0]);
                continue;
            }
            assert_int_equal(rc, 0);
            posted++;
        }
    }
    worker_pool_stop(p);
    worker_pool_stop(p); /* idempotent */
    uint64_t sent = atomic_load(&C.buf_sent) + posted;
    assert_int_equal(atomic_load(&C.buf_sent), 500 * 3);
    assert_int_equal(atomic_load(&C.send_err), 0);
    assert_true(atomic_load(&C.discarded_from_worker) > 0);
    assert_int_equal(atomic_load(&C.buf_rx) + atomic_load(&C.discarded), sent);
    /* Every buffer came back through on_msg or on_discard. */
    assert_int_equal(buf_live(), live0);
    /* The inboxes are closed after shutdown. */
    struct worker_msg m = {.type = T_DATA};
    assert_int_equal(worker_pool_post(p, 0, &m), ROOST_ECLOSED);
    assert_int_equal(worker_pool_post(p, 4, &m), ROOST_EINVAL);
    worker_pool_del(p);
    assert_int_equal(buf_live(), live0);
}

static void test_never_started(void **state)
{
    (void)state;
    reset();
    int64_t live0 = buf_live();
    struct worker_pool *p = make_pool(2, 64);
    for (int i = 0; i < 3; i++) {
        struct worker_msg m = {.type = T_BUF};
        m.u.ptr[0] = buf_new(16);
        assert_int_equal(worker_pool_post(p, (unsigned)i % 2, &m), 0);
    }
    worker_pool_del(p); /* on_discard on this thread releases them */
    assert_int_equal(atomic_load(&C.discarded), 3);
    assert_int_equal(atomic_load(&C.stopped), 0);
    assert_int_equal(buf_live(), live0);
}

/* ------------------------------------------------------- self delivery */

enum {
    S_GO = 0x10,   /* from the inbox: log, send S_SELF 1..3 to self, log */
    S_SELF,        /* u32[0] = seq; 1 also sends 4, 4 arms a send from turn end */
    S_CHAIN,       /* u32[0] = seq: sends itself the next until S_STOPCHAIN */
    S_STOPCHAIN,   /* from the inbox */
    S_BUF,         /* ptr[0] = struct buf * */
    S_FROM_FD = 9, /* log marker: the fd callback sent seq 6 */
};

#define SLOG_MAX 64
#define TE_MARK 1000u   /* log entry: on_turn_end */
#define GO_BEGIN 2000u  /* log entry: S_GO handler entered */
#define GO_END 2001u    /* log entry: S_GO handler returning */
#define CHAIN_TURNS 512 /* chain messages delivered per turn, by turn */

struct sctx {
    /* Written by worker 0 only; read by the main thread after stop. */
    uint32_t log[SLOG_MAX];
    unsigned n_log;
    bool logging;
    int depth; /* inside a handler: re-entry detector */
    unsigned reentered;
    bool send_from_turn_end;
    int pipe_rd;
    unsigned n_te;
    /* chain */
    bool chain_stop;
    uint32_t chain_next;
    uint32_t chain_order_err;
    uint32_t per_turn[CHAIN_TURNS];
    unsigned turn;
    _Atomic uint32_t chain_rx;
    _Atomic int stopchain_rx;
    /* shutdown */
    unsigned self_bufs_at_stop;
    _Atomic uint64_t discarded, discarded_bufs;
    int send_rc;
};

static struct sctx S;

static void slog(uint32_t v)
{
    if (S.logging && S.n_log < SLOG_MAX)
        S.log[S.n_log++] = v;
}

static void s_send(struct worker *w, uint16_t type, uint32_t v)
{
    struct worker_msg m = {.type = type};
    m.u.u32[0] = v;
    int rc = worker_send(w, worker_id(w), &m, WORKER_MSG_CONTROL);
    if (rc != 0)
        S.send_rc = rc;
}

static void s_on_fd(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)arg;
    (void)events;
    char c;
    if (read(fd, &c, 1) != 1)
        return;
    slog(S_FROM_FD);
    s_send(w, S_SELF, 6);
}

static void s_on_msg(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)arg;
    if (S.depth++ != 0)
        S.reentered++;
    switch (m->type) {
    case S_GO:
        S.logging = true;
        slog(GO_BEGIN);
        for (uint32_t i = 1; i <= 3; i++)
            s_send(w, S_SELF, i);
        slog(GO_END);
        break;
    case S_SELF:
        slog(m->u.u32[0]);
        if (m->u.u32[0] == 1)
            s_send(w, S_SELF, 4); /* appended while the FIFO drains */
        if (m->u.u32[0] == 4)
            S.send_from_turn_end = true;
        if (m->u.u32[0] == 5) /* sent from on_turn_end: now from an fd */
            (void)worker_fd_add(w, S.pipe_rd, EPOLLIN, s_on_fd, NULL);
        break;
    case S_CHAIN:
        if (m->u.u32[0] != S.chain_next)
            S.chain_order_err++;
        S.chain_next = m->u.u32[0] + 1;
        if (S.turn < CHAIN_TURNS)
            S.per_turn[S.turn]++;
        atomic_store(&S.chain_rx, S.chain_next);
        if (!S.chain_stop)
            s_send(w, S_CHAIN, S.chain_next);
        break;
    case S_STOPCHAIN:
        S.chain_stop = true;
        atomic_store(&S.stopchain_rx, 1);
        break;
    case S_BUF:
        buf_unref(m->u.ptr[0]);
        break;
    default:
        break;
    }
    S.depth--;
}

static void s_on_turn_end(struct worker *w, void *arg)
{
    (void)arg;
    S.turn++;
    if (S.logging && S.n_te < 16) {
        S.n_te++;
        slog(TE_MARK);
    }
    if (S.send_from_turn_end) {
        S.send_from_turn_end = false;
        s_send(w, S_SELF, 5);
    }
}

static void s_stop(struct worker *w, void *arg)
{
    (void)arg;
    /* Sent after the last turn: only the discard can release them. */
    for (unsigned i = 0; i < S.self_bufs_at_stop; i++) {
        struct worker_msg m = {.type = S_BUF};
        m.u.ptr[0] = buf_new(16);
        if (m.u.ptr[0] == NULL || worker_send(w, worker_id(w), &m, WORKER_MSG_CONTROL) != 0)
            S.send_rc = ROOST_ENOMEM;
    }
}

static void s_on_discard(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)arg;
    if (m->type == S_BUF) {
        buf_unref(m->u.ptr[0]);
        atomic_fetch_add(&S.discarded_bufs, 1);
    }
    atomic_fetch_add(&S.discarded, 1);
}

static const struct worker_ops SOPS = {
    .stop = s_stop,
    .on_msg = s_on_msg,
    .on_turn_end = s_on_turn_end,
    .on_discard = s_on_discard,
};

static struct worker_pool *s_pool(unsigned n)
{
    struct worker_config cfg = {.n_workers = n, .ring_capacity = 64, .no_pin = true};
    struct worker_pool *p = NULL;
    assert_int_equal(worker_pool_new(&p, &cfg, &SOPS, NULL), 0);
    assert_int_equal(worker_pool_start(p), 0);
    return p;
}

static void s_post(struct worker_pool *p, uint16_t type, uint32_t v)
{
    struct worker_msg m = {.type = type};
    m.u.u32[0] = v;
    assert_int_equal(worker_pool_post(p, 0, &m), 0);
}

/* Sent from a handler: the same message phase, after the handler returned,
 * in FIFO order with what the drain itself appends. Sent from on_turn_end
 * or an fd callback: the next turn's message phase. */
static void test_self_send_order(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    S.pipe_rd = pfd[0];
    struct worker_pool *p = s_pool(1);
    s_post(p, S_GO, 0);
    usleep(50000);
    assert_int_equal(write(pfd[1], "a", 1), 1);
    usleep(50000);
    worker_pool_stop(p);
    static const uint32_t want[] = {
        GO_BEGIN, GO_END,  1, 2, 3, 4, TE_MARK, /* turn of the post */
        5,        TE_MARK,                      /* sent from on_turn_end */
    };
    /* The fd turn: callback after the message phase; 6 the turn after. */
    static const uint32_t want_tail[] = {S_FROM_FD, TE_MARK, 6, TE_MARK};
    assert_true(S.n_log >= 9);
    for (unsigned i = 0; i < 9; i++)
        assert_int_equal(S.log[i], want[i]);
    /* Idle turns (e.g. the wakeup of the pipe) may add turn-end marks
     * before the fd event; the tail is exact. */
    unsigned k = 9;
    while (k < S.n_log && S.log[k] == TE_MARK)
        k++;
    assert_int_equal(S.n_log - k, 4);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(S.log[k + i], want_tail[i]);
    assert_int_equal(S.reentered, 0);
    assert_int_equal(S.send_rc, 0);
    struct worker_stats st;
    worker_pool_stats(p, 0, &st);
    assert_int_equal(st.msgs_out, 6);    /* 1..6 to self */
    assert_int_equal(st.msgs_in, 6 + 1); /* and the post */
    worker_pool_del(p);
    close(pfd[0]);
    close(pfd[1]);
}

/* A handler that keeps sending itself a message gets at most a ring's turn
 * budget per turn: turns go on and the inbox is still served. */
static void test_self_send_bounded(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    struct worker_pool *p = s_pool(1);
    struct worker_msg m = {.type = S_CHAIN};
    assert_int_equal(worker_pool_post(p, 0, &m), 0);
    for (int i = 0; i < 5000 && atomic_load(&S.chain_rx) < 20000; i++)
        usleep(1000);
    s_post(p, S_STOPCHAIN, 0);
    for (int i = 0; i < 5000 && !atomic_load(&S.stopchain_rx); i++)
        usleep(1000);
    assert_true(atomic_load(&S.stopchain_rx));
    usleep(20000);
    worker_pool_stop(p);
    assert_true(S.chain_next >= 20000);
    assert_int_equal(S.chain_order_err, 0);
    assert_int_equal(S.reentered, 0);
    unsigned busy_turns = 0;
    for (unsigned t = 0; t < CHAIN_TURNS; t++) {
        assert_true(S.per_turn[t] <= 1024 + 1); /* + the one from the inbox */
        busy_turns += S.per_turn[t] > 0;
    }
    assert_true(busy_turns >= 20000 / 1025);
    assert_int_equal(atomic_load(&S.discarded), 0);
    worker_pool_del(p);
}

/* Messages a worker sent itself and never delivered reach on_discard. */
static void test_self_send_discard(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    int64_t live0 = buf_live();
    S.self_bufs_at_stop = 5;
    struct worker_pool *p = s_pool(2);
    worker_pool_stop(p);
    assert_int_equal(S.send_rc, 0);
    assert_int_equal(atomic_load(&S.discarded_bufs), 5 * 2);
    assert_int_equal(buf_live(), live0);
    worker_pool_del(p);
    assert_int_equal(buf_live(), live0);
}

/* ------------------------------------------------------------ handlers */

struct hctx {
    int rc_a, rc_b, rc_overlap, rc_inside, rc_bad, rc_null;
    _Atomic unsigned a_rx, b_rx, fallback_rx;
    _Atomic unsigned a_arg_ok;
    _Atomic unsigned a_discard, ops_discard;
    _Atomic uint16_t last_fallback;
    unsigned rx_total;
};

static struct hctx H;

static void h_a(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)m;
    if (arg == &H.rc_a)
        atomic_fetch_add(&H.a_arg_ok, 1);
    atomic_fetch_add(&H.a_rx, 1);
}

static void h_b(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)m;
    (void)arg;
    atomic_fetch_add(&H.b_rx, 1);
}

static void h_a_discard(const struct worker_msg *m)
{
    buf_unref(m->u.ptr[0]);
    atomic_fetch_add(&H.a_discard, 1);
}

static int h_start(struct worker *w, void *arg)
{
    (void)arg;
    struct worker_handler a = {
        .first = 0x0100, .last = 0x01ff, .on_msg = h_a, .discard = h_a_discard};
    struct worker_handler b = {.first = 0x0200, .last = 0x02ff, .on_msg = h_b};
    struct worker_handler overlap = {.first = 0x01ff, .last = 0x0200, .on_msg = h_b};
    struct worker_handler inside = {.first = 0x0210, .last = 0x0220, .on_msg = h_b};
    struct worker_handler bad = {.first = 0x0400, .last = 0x03ff, .on_msg = h_b};
    struct worker_handler null_cb = {.first = 0x0500, .last = 0x05ff};
    if (worker_id(w) == 0) {
        H.rc_a = worker_handle(w, &a, &H.rc_a);
        H.rc_b = worker_handle(w, &b, NULL);
        H.rc_overlap = worker_handle(w, &overlap, NULL);
        H.rc_inside = worker_handle(w, &inside, NULL);
        H.rc_bad = worker_handle(w, &bad, NULL);
        H.rc_null = worker_handle(w, &null_cb, NULL);
    }
    return 0;
}

static void h_fallback(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)arg;
    atomic_store(&H.last_fallback, m->type);
    atomic_fetch_add(&H.fallback_rx, 1);
}

static void h_stop(struct worker *w, void *arg)
{
    (void)arg;
    if (worker_id(w) != 0)
        return;
    /* Left for the discard: one of range A, one of B (no discard: ops),
     * one of no range (ops). */
    static const uint16_t types[] = {0x0150, 0x0250, 0x0350};
    for (unsigned i = 0; i < 3; i++) {
        struct worker_msg m = {.type = types[i]};
        m.u.ptr[0] = buf_new(8);
        (void)worker_send(w, 0, &m, WORKER_MSG_CONTROL);
    }
}

static void h_discard(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)arg;
    buf_unref(m->u.ptr[0]);
    atomic_fetch_add(&H.ops_discard, 1);
}

static void test_handlers(void **state)
{
    (void)state;
    memset(&H, 0, sizeof(H));
    int64_t live0 = buf_live();
    static const struct worker_ops ops = {
        .start = h_start, .stop = h_stop, .on_msg = h_fallback, .on_discard = h_discard};
    struct worker_config cfg = {.n_workers = 1, .no_pin = true};
    struct worker_pool *p = NULL;
    assert_int_equal(worker_pool_new(&p, &cfg, &ops, NULL), 0);
    assert_int_equal(worker_pool_start(p), 0);
    assert_int_equal(H.rc_a, 0);
    assert_int_equal(H.rc_b, 0);
    assert_int_equal(H.rc_overlap, ROOST_EINVAL);
    assert_int_equal(H.rc_inside, ROOST_EINVAL);
    assert_int_equal(H.rc_bad, ROOST_EINVAL);
    assert_int_equal(H.rc_null, ROOST_EINVAL);
    static const uint16_t types[] = {0x0100, 0x01ff, 0x0150, 0x0200, 0x02ff, 0x00ff, 0x0300};
    for (unsigned i = 0; i < 7; i++) {
        struct worker_msg m = {.type = types[i]};
        assert_int_equal(worker_pool_post(p, 0, &m), 0);
    }
    for (int i = 0; i < 5000 && H.a_rx + H.b_rx + H.fallback_rx < 7; i++)
        usleep(1000);
    worker_pool_stop(p);
    assert_int_equal(atomic_load(&H.a_rx), 3);
    assert_int_equal(atomic_load(&H.a_arg_ok), 3);
    assert_int_equal(atomic_load(&H.b_rx), 2);
    assert_int_equal(atomic_load(&H.fallback_rx), 2);
    assert_int_equal(atomic_load(&H.last_fallback), 0x0300);
    /* Discard: the range's own for A; ops->on_discard for the others. */
    assert_int_equal(atomic_load(&H.a_discard), 1);
    assert_int_equal(atomic_load(&H.ops_discard), 2);
    assert_int_equal(buf_live(), live0);
    worker_pool_del(p);
}

/* ops->on_msg is optional: a message nobody handles is dropped. */
static void test_handlers_no_on_msg(void **state)
{
    (void)state;
    memset(&H, 0, sizeof(H));
    static const struct worker_ops ops = {.start = h_start};
    struct worker_config cfg = {.n_workers = 1, .no_pin = true};
    struct worker_pool *p = NULL;
    assert_int_equal(worker_pool_new(&p, &cfg, &ops, NULL), 0);
    assert_int_equal(worker_pool_start(p), 0);
    for (unsigned i = 0; i < 3; i++) {
        struct worker_msg m = {.type = (uint16_t)(i == 1 ? 0x0201 : 0x0777)};
        assert_int_equal(worker_pool_post(p, 0, &m), 0);
    }
    for (int i = 0; i < 5000 && atomic_load(&H.b_rx) < 1; i++)
        usleep(1000);
    usleep(20000);
    worker_pool_stop(p);
    assert_int_equal(atomic_load(&H.b_rx), 1);
    struct worker_stats st;
    worker_pool_stats(p, 0, &st);
    assert_int_equal(st.msgs_in, 3);
    worker_pool_del(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),        cmocka_unit_test(test_all_to_all_1),
        cmocka_unit_test(test_all_to_all_2),      cmocka_unit_test(test_all_to_all_4),
        cmocka_unit_test(test_wakeup_edge),       cmocka_unit_test(test_spill_and_drop),
        cmocka_unit_test(test_timers_in_worker),  cmocka_unit_test(test_fd_callbacks),
        cmocka_unit_test(test_pinning),           cmocka_unit_test(test_rcu_qsbr),
        cmocka_unit_test(test_start_failure),     cmocka_unit_test(test_shutdown_in_flight),
        cmocka_unit_test(test_never_started),     cmocka_unit_test(test_self_send_order),
        cmocka_unit_test(test_self_send_bounded), cmocka_unit_test(test_self_send_discard),
        cmocka_unit_test(test_handlers),          cmocka_unit_test(test_handlers_no_on_msg),
    };
    return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
