/* Worker turn cadence (worker_config.turn_batch_us, the "batch hold"):
 * with a window far larger than scheduling noise (400 ms; stalls of 30-70 ms
 * were seen on the loaded 2-CPU build machine with no cadence), a worker fed
 * a steady trickle of fd events holds between turns (counted), yet
 *   - a timer fires no later than its slack (the loop's 1 ms epoll
 *     rounding) plus a scheduling margin (half the window) past its
 *     deadline: without the timer bound it would wait out the window;
 *   - a control message from another worker and a post from a non-worker
 *     thread are delivered within the margin: they cut the hold; media
 *     messages do not (they are what the hold batches);
 *   - turn_batch_us = 0 never holds (today's loop);
 *   - with a timer slack (timer_slack_us) a timer that falls due in a hold
 *     fires at most its slack late and no longer cuts the hold short: the
 *     hold's turn runs it (fewer turns), never later than the slack;
 *   - a hold that brought nothing is followed by a blocking wait, not by an
 *     empty turn and a second epoll_wait;
 *   - a message to an awake worker does not write its eventfd; one to a
 *     blocked worker does (counted on the sender: wakes_sent).
 * The bounds derive from the configured window, never from tight wall-clock
 * assumptions: the machine may be loaded.
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
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/timer.h"
#include "core/worker.h"

#define WINDOW_US 400000u                          /* the cadence under test */
#define MARGIN_NS (WINDOW_US * 1000ull / 2)        /* scheduling margin: 200 ms */
#define SLACK_NS 1000000ull                        /* the loop's ms rounding */
#define TIMER_PERIOD_NS 3000000ull                 /* re-armed every 3 ms */
#define CTL_PERIOD_NS 5000000ull                   /* worker 0 sends every 5 ms */
#define RUN_NS (3 * (uint64_t)WINDOW_US * 1000ull) /* 1.2 s of traffic */

enum { T_CTL = 1, T_MEDIA, T_POST };

struct ctx {
    int pipe_rd, pipe_wr; /* fed by the main thread, read by worker `fed` */
    unsigned fed;
    struct timer tm;      /* worker `fed`: late-timer probe */
    struct timer send_tm; /* worker 0: sends to `fed` */
    bool send_media;
    bool probe; /* arm the timer probe on worker `fed` */
    bool send;  /* worker 0 sends to `fed` */
    _Atomic uint64_t fd_turns;
    _Atomic uint64_t timer_fires, timer_max_late;
    _Atomic uint64_t ctl_rx, ctl_max_delay;
    _Atomic uint64_t media_rx;
    _Atomic uint64_t post_rx, post_max_delay;
    _Atomic uint64_t errors;
};

static struct ctx C;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void max_store(_Atomic uint64_t *m, uint64_t v)
{
    uint64_t cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

static void on_pipe(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)w, (void)events, (void)arg;
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    atomic_fetch_add(&C.fd_turns, 1);
}

static void on_probe(struct timer *t, uint64_t now, void *arg)
{
    struct worker *w = arg;
    /* `now` is the turn's clock; the expiry was the deadline. */
    uint64_t late = now > t->expiry ? now - t->expiry : 0;
    max_store(&C.timer_max_late, late);
    atomic_fetch_add(&C.timer_fires, 1);
    if (timer_arm(worker_timers(w), t, now + TIMER_PERIOD_NS) != 0)
        atomic_fetch_add(&C.errors, 1);
}

static void on_send(struct timer *t, uint64_t now, void *arg)
{
    struct worker *w = arg;
    struct worker_msg m = {.type = C.send_media ? T_MEDIA : T_CTL};
    m.u.u64[0] = mono_ns();
    int rc = worker_send(w, C.fed, &m, C.send_media ? WORKER_MSG_MEDIA : WORKER_MSG_CONTROL);
    if (rc != 0)
        atomic_fetch_add(&C.errors, 1);
    if (timer_arm(worker_timers(w), t, now + CTL_PERIOD_NS) != 0)
        atomic_fetch_add(&C.errors, 1);
}

static int op_start(struct worker *w, void *arg)
{
    (void)arg;
    if (worker_id(w) == C.fed) {
        timer_init(&C.tm, on_probe, w);
        int rc = worker_fd_add(w, C.pipe_rd, EPOLLIN, on_pipe, NULL);
        if (rc != 0 || !C.probe)
            return rc;
        return timer_arm(worker_timers(w), &C.tm, worker_now(w) + TIMER_PERIOD_NS);
    }
    if (worker_id(w) == 0 && C.send) {
        timer_init(&C.send_tm, on_send, w);
        return timer_arm(worker_timers(w), &C.send_tm, worker_now(w) + CTL_PERIOD_NS);
    }
    return 0;
}

static void op_stop(struct worker *w, void *arg)
{
    (void)arg;
    if (worker_id(w) == C.fed) {
        timer_cancel(worker_timers(w), &C.tm);
        worker_fd_del(w, C.pipe_rd);
    } else if (worker_id(w) == 0 && C.send) {
        timer_cancel(worker_timers(w), &C.send_tm);
    }
}

static void op_msg(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w, (void)arg;
    uint64_t d = mono_ns() - m->u.u64[0];
    switch (m->type) {
    case T_CTL:
        atomic_fetch_add(&C.ctl_rx, 1);
        max_store(&C.ctl_max_delay, d);
        break;
    case T_MEDIA:
        atomic_fetch_add(&C.media_rx, 1);
        break;
    case T_POST:
        atomic_fetch_add(&C.post_rx, 1);
        max_store(&C.post_max_delay, d);
        break;
    default:
        atomic_fetch_add(&C.errors, 1);
    }
}

static const struct worker_ops ops = {.start = op_start, .stop = op_stop, .on_msg = op_msg};

enum { PROBE = 1, SEND = 2, MEDIA = 4, POSTS = 8 };

/* Runs `n` workers with the window `batch_us`, feeding worker n-1 one byte
 * every 200 us for RUN_NS; with PROBE a timer on it re-armed every 3 ms,
 * with SEND worker 0 sends it a control (MEDIA: media) message every 5 ms,
 * with POSTS the main thread posts to it every 5 ms. Each source alone:
 * any one of them would cut the holds and hide the others' bound. */
static void run_slack(unsigned n, uint32_t batch_us, uint32_t slack_us, int what,
                      struct worker_stats *st)
{
    memset(&C, 0, sizeof(C));
    C.probe = what & PROBE;
    C.send = what & SEND;
    bool posts = what & POSTS;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    C.pipe_rd = p[0];
    C.pipe_wr = p[1];
    C.fed = n - 1;
    C.send_media = what & MEDIA;
    struct worker_config cfg = {
        .n_workers = n, .no_pin = true, .turn_batch_us = batch_us, .timer_slack_us = slack_us};
    struct worker_pool *pool;
    assert_int_equal(worker_pool_new(&pool, &cfg, &ops, NULL), 0);
    assert_int_equal(worker_pool_start(pool), 0);

    uint64_t end = mono_ns() + RUN_NS, next_post = 0;
    while (mono_ns() < end) {
        ssize_t r = write(C.pipe_wr, "x", 1);
        (void)r;
        uint64_t t = mono_ns();
        if (posts && t >= next_post) {
            struct worker_msg m = {.type = T_POST};
            m.u.u64[0] = t;
            assert_int_equal(worker_pool_post(pool, C.fed, &m), 0);
            next_post = t + CTL_PERIOD_NS;
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    worker_pool_stop(pool);
    worker_pool_stats(pool, C.fed, st);
    worker_pool_del(pool);
    print_message("holds %llu cut %llu turns %llu fd_turns %llu timer_late_max %llu us "
                  "ctl_max %llu us post_max %llu us\n",
                  (unsigned long long)st->holds, (unsigned long long)st->hold_ctl,
                  (unsigned long long)st->turns, (unsigned long long)atomic_load(&C.fd_turns),
                  (unsigned long long)atomic_load(&C.timer_max_late) / 1000,
                  (unsigned long long)atomic_load(&C.ctl_max_delay) / 1000,
                  (unsigned long long)atomic_load(&C.post_max_delay) / 1000);
    close(p[0]);
    close(p[1]);
    assert_int_equal(atomic_load(&C.errors), 0);
}

static void run(unsigned n, uint32_t batch_us, int what, struct worker_stats *st)
{
    run_slack(n, batch_us, 0, what, st);
}

/* Timers are never held past their deadline by the cadence, and the loop
 * did hold (fewer fd turns than bytes fed, holds counted). */
static void test_timer_not_late(void **state)
{
    (void)state;
    struct worker_stats st;
    run(1, WINDOW_US, PROBE, &st);
    assert_true(st.holds > 0);
    assert_true(atomic_load(&C.timer_fires) > 0);
    assert_true(atomic_load(&C.timer_max_late) <= SLACK_NS + MARGIN_NS);
    /* It batched: a turn every 200 us would be RUN_NS / 200 us = 6000 fd
     * turns; holds ended by the 3 ms timer give far fewer. */
    assert_true(atomic_load(&C.fd_turns) < RUN_NS / 200000 / 2);
}

/* Control messages (ring) cut the hold: never held past the margin, though
 * the window is twice as long. */
static void test_control_not_held(void **state)
{
    (void)state;
    struct worker_stats st;
    run(2, WINDOW_US, SEND, &st);
    assert_true(st.holds > 0);
    assert_true(st.hold_ctl > 0);
    assert_true(atomic_load(&C.ctl_rx) > 0);
    assert_true(atomic_load(&C.ctl_max_delay) <= MARGIN_NS);
}

/* Posts from a non-worker thread (inbox) cut the hold likewise. */
static void test_post_not_held(void **state)
{
    (void)state;
    struct worker_stats st;
    run(1, WINDOW_US, POSTS, &st);
    assert_true(st.holds > 0);
    assert_true(st.hold_ctl > 0);
    assert_true(atomic_load(&C.post_rx) > 0);
    assert_true(atomic_load(&C.post_max_delay) <= MARGIN_NS);
}

/* Media do not cut a hold: the same run with media instead of control
 * holds whole windows, and every media message is delivered at a window's
 * end (counted). */
static void test_media_batched(void **state)
{
    (void)state;
    struct worker_stats st;
    run(2, WINDOW_US, SEND | MEDIA, &st);
    assert_true(st.holds > 0);
    assert_true(st.hold_ctl <= 1); /* the stop request may cut the last one */
    assert_true(atomic_load(&C.media_rx) > 0);
    assert_int_equal(atomic_load(&C.ctl_rx), 0);
}

/* turn_batch_us = 0: the loop never holds. */
static void test_zero_is_off(void **state)
{
    (void)state;
    struct worker_stats st;
    run(2, 0, PROBE | SEND | POSTS, &st);
    assert_int_equal(st.holds, 0);
    assert_int_equal(st.hold_ctl, 0);
    assert_true(atomic_load(&C.ctl_rx) > 0);
    assert_true(atomic_load(&C.timer_fires) > 0);
}

static void test_bad_window(void **state)
{
    (void)state;
    struct worker_config cfg = {
        .n_workers = 1, .no_pin = true, .turn_batch_us = WORKER_TURN_BATCH_MAX_US + 1};
    struct worker_pool *pool;
    assert_int_equal(worker_pool_new(&pool, &cfg, &ops, NULL), ROOST_EINVAL);
    cfg.turn_batch_us = 1000;
    cfg.timer_slack_us = WORKER_TURN_BATCH_MAX_US + 1;
    assert_int_equal(worker_pool_new(&pool, &cfg, &ops, NULL), ROOST_EINVAL);
}

/* A slack shorter than the window: the 3 ms timer ends holds (counted in
 * hold_timer) at most its slack late, far sooner than the 400 ms window
 * would (the margin is below the window minus the slack, so a hold that
 * ignored the timer would fail this). */
#define SHORT_SLACK_US (WINDOW_US / 4)
static void test_timer_slack_bound(void **state)
{
    (void)state;
    struct worker_stats st;
    run_slack(1, WINDOW_US, SHORT_SLACK_US, PROBE, &st);
    assert_true(st.holds > 0);
    assert_true(st.hold_timer > 0);
    assert_true(atomic_load(&C.timer_fires) > 0);
    uint64_t bound = SHORT_SLACK_US * 1000ull + SLACK_NS + (uint64_t)WINDOW_US * 1000ull * 3 / 8;
    assert_true(atomic_load(&C.timer_max_late) <= bound);
}

/* A slack of a whole window: a timer falling due in a hold fires with the
 * hold's turn, so the 3 ms timer no longer adds turns: about one fd turn
 * per 400 ms window (without the slack, one per timer: ~400), and never
 * later than the slack plus the margin. */
static void test_timer_slack_no_extra_turns(void **state)
{
    (void)state;
    struct worker_stats st;
    run_slack(1, WINDOW_US, WINDOW_US, PROBE, &st);
    assert_true(st.holds > 0);
    assert_int_equal(st.hold_timer, 0);
    assert_true(atomic_load(&C.timer_fires) > 0);
    assert_true(atomic_load(&C.fd_turns) <= 2 * RUN_NS / (WINDOW_US * 1000ull) + 3);
    assert_true(atomic_load(&C.timer_max_late) <= WINDOW_US * 1000ull + SLACK_NS + MARGIN_NS);
}

/* Bytes far apart (four windows): each wakes a blocked worker, its turn
 * holds, and after the hold the worker blocks again in one epoll_wait: no
 * empty turn per byte (the previous loop polled after every hold: one
 * empty turn per byte, twice the turns). */
#define SPARSE_WINDOW_US 20000u
#define SPARSE_GAP_NS (4ull * SPARSE_WINDOW_US * 1000u)
#define SPARSE_BYTES 12u
static void test_hold_then_block(void **state)
{
    (void)state;
    memset(&C, 0, sizeof(C));
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    C.pipe_rd = p[0];
    C.pipe_wr = p[1];
    C.fed = 0;
    struct worker_config cfg = {.n_workers = 1, .no_pin = true, .turn_batch_us = SPARSE_WINDOW_US};
    struct worker_pool *pool;
    assert_int_equal(worker_pool_new(&pool, &cfg, &ops, NULL), 0);
    assert_int_equal(worker_pool_start(pool), 0);
    for (unsigned i = 0; i < SPARSE_BYTES; i++) {
        struct timespec ts = {0, (long)SPARSE_GAP_NS};
        nanosleep(&ts, NULL);
        ssize_t r = write(C.pipe_wr, "x", 1);
        (void)r;
    }
    struct timespec ts = {0, (long)SPARSE_GAP_NS};
    nanosleep(&ts, NULL);
    worker_pool_stop(pool);
    struct worker_stats st;
    worker_pool_stats(pool, 0, &st);
    worker_pool_del(pool);
    close(p[0]);
    close(p[1]);
    print_message(
        "bytes %u fd_turns %llu turns %llu holds %llu empty %llu blocks %llu polls %llu\n",
        SPARSE_BYTES, (unsigned long long)atomic_load(&C.fd_turns), (unsigned long long)st.turns,
        (unsigned long long)st.holds, (unsigned long long)st.empty_turns,
        (unsigned long long)st.blocks, (unsigned long long)st.polls);
    assert_true(atomic_load(&C.fd_turns) > 0);
    assert_true(st.holds > 0);
    assert_true(st.empty_turns <= SPARSE_BYTES / 4);
    assert_true(st.turns <= SPARSE_BYTES + SPARSE_BYTES / 2 + 1);
    assert_int_equal(atomic_load(&C.errors), 0);
}

/* Wake-ups are written only to a worker that sleeps. Worker 1 spins (it
 * asks for another turn every turn, so it never announces sleep): worker
 * 0's control messages reach it without one eventfd write. Then worker 1
 * blocks (no cadence, nothing to do): each message written to it while it
 * sleeps costs worker 0 one write, counted in wakes_sent. */
static _Atomic int spin_on;
static _Atomic uint64_t spin_rx, spin_tx;
/* Gap between worker 0's messages: 1 ms while worker 1 spins, 5 ms while it
 * blocks, so that on a loaded machine worker 1 has gone back to sleep
 * before the next one in nearly every gap (it may be preempted mid-turn). */
static uint64_t spin_gap_ns;
static void spin_msg(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w, (void)m, (void)arg;
    atomic_fetch_add(&spin_rx, 1);
}
static void spin_turn_end(struct worker *w, void *arg)
{
    (void)arg;
    if (worker_id(w) == 1 && atomic_load(&spin_on))
        worker_wake_self(w);
}
static void spin_send(struct timer *t, uint64_t now, void *arg)
{
    struct worker *w = arg;
    struct worker_msg m = {.type = T_CTL};
    if (worker_send(w, 1, &m, WORKER_MSG_CONTROL) != 0)
        atomic_fetch_add(&C.errors, 1);
    else
        atomic_fetch_add(&spin_tx, 1);
    if (timer_arm(worker_timers(w), t, now + spin_gap_ns) != 0)
        atomic_fetch_add(&C.errors, 1);
}
static struct timer spin_tm;
static int spin_start(struct worker *w, void *arg)
{
    (void)arg;
    if (worker_id(w) != 0)
        return 0;
    timer_init(&spin_tm, spin_send, w);
    return timer_arm(worker_timers(w), &spin_tm, worker_now(w) + spin_gap_ns);
}
static void spin_stop(struct worker *w, void *arg)
{
    (void)arg;
    if (worker_id(w) == 0)
        timer_cancel(worker_timers(w), &spin_tm);
}
static const struct worker_ops spin_ops = {
    .start = spin_start, .stop = spin_stop, .on_msg = spin_msg, .on_turn_end = spin_turn_end};

static void spin_run(bool spin, struct worker_stats *st0, struct worker_stats *st1)
{
    memset(&C, 0, sizeof(C));
    atomic_store(&spin_on, spin);
    atomic_store(&spin_rx, 0);
    atomic_store(&spin_tx, 0);
    spin_gap_ns = spin ? 1000000u : 5000000u;
    struct worker_config cfg = {.n_workers = 2, .no_pin = true};
    struct worker_pool *pool;
    assert_int_equal(worker_pool_new(&pool, &cfg, &spin_ops, NULL), 0);
    assert_int_equal(worker_pool_start(pool), 0);
    /* Until worker 1 got 20 messages (spin_gap_ns apart), bounded by 10 s. */
    uint64_t end = mono_ns() + 10000000000ull;
    while (atomic_load(&spin_rx) < 20 && mono_ns() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&spin_on, 0); /* the stop request must be able to end it */
    worker_pool_stop(pool);
    worker_pool_stats(pool, 0, st0);
    worker_pool_stats(pool, 1, st1);
    worker_pool_del(pool);
    assert_true(atomic_load(&spin_rx) >= 20);
    assert_int_equal(atomic_load(&C.errors), 0);
}

static void test_no_wake_when_awake(void **state)
{
    (void)state;
    struct worker_stats s0, s1;
    spin_run(true, &s0, &s1);
    /* Worker 1 may have slept between its start and its first turn's
     * wake_self, and after spin_on went off: at most a couple of writes. */
    print_message("spinning: wakes_sent %llu (msgs %llu)\n", (unsigned long long)s0.wakes_sent,
                  (unsigned long long)s1.msgs_in);
    assert_true(s0.wakes_sent <= 2);
    spin_run(false, &s0, &s1);
    print_message("blocked: wakes_sent %llu (msgs %llu, sent %llu)\n",
                  (unsigned long long)s0.wakes_sent, (unsigned long long)s1.msgs_in,
                  (unsigned long long)atomic_load(&spin_tx));
    /* A message sent after worker 1 went to sleep costs one write; one
     * sent while it is still in a turn (preempted, on a loaded machine)
     * costs none. At most one write per message sent: a message sent just
     * before the stop may never be read, so msgs_in is not the bound. */
    assert_true(s0.wakes_sent >= 5);
    assert_true(s0.wakes_sent <= atomic_load(&spin_tx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_not_late),    cmocka_unit_test(test_control_not_held),
        cmocka_unit_test(test_post_not_held),     cmocka_unit_test(test_media_batched),
        cmocka_unit_test(test_zero_is_off),       cmocka_unit_test(test_bad_window),
        cmocka_unit_test(test_timer_slack_bound), cmocka_unit_test(test_timer_slack_no_extra_turns),
        cmocka_unit_test(test_hold_then_block),   cmocka_unit_test(test_no_wake_when_awake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
