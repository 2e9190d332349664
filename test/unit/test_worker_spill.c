/* The bounded control spill queues (lib/core/worker.c): with the consumer
 * stalled, a producer's REQUESTs to it are refused with ROOST_EFULL once
 * spill_max wait, other control messages once WORKER_SPILL_HARD_X times
 * that; the refusal is per destination (another worker still takes both);
 * an OWED message still goes past the hard bound; the producer polls its
 * spill queue instead of spinning; once the
 * consumer runs again everything that was accepted arrives, in order.
 *
 * Worker threads record into atomics; the main thread asserts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/worker.h"

#define RING_CAP 4
#define SPILL_MAX 8
#define WAIT_MS 30000 /* deadline of a condition, not a timing bound */

enum {
    T_START = 1, /* posted to w0: send T_BLOCK to w1 */
    T_BLOCK,     /* at w1: stall until released */
    T_FILL,      /* posted to w0: fill the queue to w1, then probe w2 */
    T_SEQ,       /* u64[0] = sequence, from w0 */
};

static struct {
    sem_t release;
    _Atomic int blocked, filled;
    _Atomic uint64_t n_req, n_ctl, rx, order_err, rx_w2;
    _Atomic int req_rc, ctl_rc, w2_req_rc, w2_ctl_rc, owed_rc;
    uint64_t next; /* w1 only */
} C;

static void on_msg(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)arg;
    unsigned id = worker_id(w);
    switch (m->type) {
    case T_START: {
        struct worker_msg b = {.type = T_BLOCK};
        (void)worker_send(w, 1, &b, WORKER_MSG_CONTROL);
        break;
    }
    case T_BLOCK:
        atomic_store(&C.blocked, 1);
        sem_wait(&C.release);
        break;
    case T_FILL: {
        uint64_t seq = 0;
        struct worker_msg d = {.type = T_SEQ};
        int rc;
        for (;;) {
            d.u.u64[0] = seq;
            rc = worker_send(w, 1, &d, WORKER_MSG_REQUEST);
            if (rc != 0)
                break;
            seq++;
        }
        atomic_store(&C.req_rc, rc);
        atomic_store(&C.n_req, seq);
        uint64_t req = seq;
        for (;;) {
            d.u.u64[0] = seq;
            rc = worker_send(w, 1, &d, WORKER_MSG_CONTROL);
            if (rc != 0)
                break;
            seq++;
        }
        atomic_store(&C.ctl_rc, rc);
        atomic_store(&C.n_ctl, seq - req);
        /* OWED: past the hard bound, still queued (in order). */
        int orc = 0;
        for (unsigned k = 0; k < 3; k++) {
            d.u.u64[0] = seq;
            orc |= worker_send(w, 1, &d, WORKER_MSG_OWED);
            seq++;
        }
        atomic_store(&C.owed_rc, orc);
        /* Another destination is not affected. */
        d.u.u64[0] = 0;
        atomic_store(&C.w2_req_rc, worker_send(w, 2, &d, WORKER_MSG_REQUEST));
        atomic_store(&C.w2_ctl_rc, worker_send(w, 2, &d, WORKER_MSG_CONTROL));
        atomic_store(&C.filled, 1);
        break;
    }
    case T_SEQ:
        if (id == 2) {
            atomic_fetch_add(&C.rx_w2, 1);
            break;
        }
        if (m->u.u64[0] != C.next)
            atomic_fetch_add(&C.order_err, 1);
        C.next = m->u.u64[0] + 1;
        atomic_fetch_add(&C.rx, 1);
        break;
    default:
        break;
    }
}

static const struct worker_ops OPS = {.on_msg = on_msg};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool wait_for(_Atomic int *flag)
{
    uint64_t t0 = now_ms();
    while (!atomic_load(flag) && now_ms() - t0 < WAIT_MS)
        usleep(1000);
    return atomic_load(flag) != 0;
}

static void test_spill_bound(void **state)
{
    (void)state;
    memset(&C, 0, sizeof(C));
    sem_init(&C.release, 0, 0);
    struct worker_config cfg = {
        .n_workers = 3, .ring_capacity = RING_CAP, .spill_max = SPILL_MAX, .no_pin = true};
    struct worker_pool *p = NULL;
    assert_int_equal(worker_pool_new(&p, &cfg, &OPS, NULL), 0);
    assert_int_equal(worker_pool_start(p), 0);
    struct worker_msg m = {.type = T_START};
    assert_int_equal(worker_pool_post(p, 0, &m), 0);
    assert_true(wait_for(&C.blocked));
    m.type = T_FILL;
    assert_int_equal(worker_pool_post(p, 0, &m), 0);
    assert_true(wait_for(&C.filled));

    /* The ring's slots, then SPILL_MAX spilled REQUESTs; then control up
     * to the hard bound. */
    uint64_t n_req = atomic_load(&C.n_req), n_ctl = atomic_load(&C.n_ctl);
    assert_int_equal(atomic_load(&C.req_rc), ROOST_EFULL);
    assert_int_equal(atomic_load(&C.ctl_rc), ROOST_EFULL);
    assert_int_equal(atomic_load(&C.owed_rc), 0);
    assert_true(n_req >= SPILL_MAX && n_req <= RING_CAP + SPILL_MAX);
    assert_int_equal(n_req + n_ctl, n_req - SPILL_MAX + WORKER_SPILL_HARD_X * SPILL_MAX);
    assert_int_equal(atomic_load(&C.w2_req_rc), 0);
    assert_int_equal(atomic_load(&C.w2_ctl_rc), 0);
    struct worker_stats st;
    worker_pool_stats(p, 0, &st);
    assert_int_equal(st.spill_full, 2);
    assert_int_equal(st.ring_spills, WORKER_SPILL_HARD_X * SPILL_MAX + 3);

    /* While w0 has spilled messages it polls every WORKER_SPILL_POLL_MS:
     * its turns follow the clock, not the CPU (a spinning loop turns
     * thousands of times in this interval). */
    worker_pool_stats(p, 0, &st);
    uint64_t turns0 = st.turns, t0 = now_ms();
    usleep(300 * 1000); /* a sampling interval, not a wait for readiness */
    worker_pool_stats(p, 0, &st);
    uint64_t el = now_ms() - t0;
    assert_true(st.turns - turns0 <= 2 * el / WORKER_SPILL_POLL_MS + 50);

    /* Released: everything accepted arrives, in order. */
    sem_post(&C.release);
    uint64_t want = n_req + n_ctl + 3, t1 = now_ms();
    while ((atomic_load(&C.rx) < want || atomic_load(&C.rx_w2) < 2) && now_ms() - t1 < WAIT_MS)
        usleep(1000);
    assert_int_equal(atomic_load(&C.rx), want);
    assert_int_equal(atomic_load(&C.rx_w2), 2);
    assert_int_equal(atomic_load(&C.order_err), 0);
    worker_pool_del(p);
    sem_destroy(&C.release);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spill_bound),
    };
    return cmocka_run_group_tests_name("worker_spill", tests, NULL, NULL);
}
