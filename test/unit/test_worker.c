/* Worker runtime: all-to-all delivery exactly once and in order (1, 2, 4
 * workers), eventfd wakeups only for a sleeping consumer, control spill and
 * media drop on a full ring, timers through a worker, pinning, RCU QSBR
 * (synchronize_rcu completes with idle and busy workers), start failure, and
 * shutdown with counted buffers in flight (nothing leaks).
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
    _Atomic uint64_t self_einval;
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
        if (worker_send(w, me, &x, WORKER_MSG_CONTROL) == ROOST_EINVAL &&
            worker_send(w, n, &x, WORKER_MSG_CONTROL) == ROOST_EINVAL)
            atomic_fetch_add(&C.self_einval, 1);
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
    assert_int_equal(atomic_load(&C.self_einval), n);
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
    alarm(20); /* a worker that fails to go offline or quiesce hangs here */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),       cmocka_unit_test(test_all_to_all_1),
        cmocka_unit_test(test_all_to_all_2),     cmocka_unit_test(test_all_to_all_4),
        cmocka_unit_test(test_wakeup_edge),      cmocka_unit_test(test_spill_and_drop),
        cmocka_unit_test(test_timers_in_worker), cmocka_unit_test(test_fd_callbacks),
        cmocka_unit_test(test_pinning),          cmocka_unit_test(test_rcu_qsbr),
        cmocka_unit_test(test_start_failure),    cmocka_unit_test(test_shutdown_in_flight),
        cmocka_unit_test(test_never_started),
    };
    return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
