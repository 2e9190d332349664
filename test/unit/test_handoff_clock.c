/* worker_now_refresh (session 8): the clock a worker's turn read once,
 * read again mid-turn, for a connection handed over by a worker whose
 * turn began later (quic/handoff.c: ngtcp2's clock must never go back for
 * a connection, or its ACK processing fails an assertion). It moves
 * worker_now forward to the clock, never back, and the time it skips is
 * counted busy (the turn's). A pool that is never started: its workers'
 * clocks are read by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "core/worker.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_refresh_moves_forward(void **state)
{
    (void)state;
    struct worker_pool *pool;
    static const struct worker_ops wops = {0};
    struct worker_config cfg = {.n_workers = 2, .no_pin = true};
    assert_int_equal(worker_pool_new(&pool, &cfg, &wops, NULL), 0);
    struct worker *w = worker_pool_get(pool, 1);
    uint64_t before = worker_now(w);
    uint64_t other = mono_ns(); /* another worker's later turn start */
    assert_true(other > before);
    worker_now_refresh(w);
    uint64_t after = worker_now(w);
    assert_true(after >= other);
    struct worker_stats ws;
    worker_pool_stats(pool, 1, &ws);
    assert_true(ws.busy_ns >= after - before);
    /* Never back. */
    worker_now_refresh(w);
    assert_true(worker_now(w) >= after);
    worker_pool_del(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_moves_forward),
    };
    return cmocka_run_group_tests_name("handoff_clock", tests, NULL, NULL);
}
