/* Directory time arithmetic (lib/cluster/dirtime) on fake time: defaults
 * and rejected settings, the local deadline, late answers, backoff, and the
 * split-brain guard simulated: a home that claims and renews over a link
 * with random delays never believes past the moment Redis would let
 * another relay claim (Redis's expiry minus the margin), a home that stops
 * renewing stops believing before that moment, and with short delays the
 * lease never lapses between renewals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/dirtime.h"
#include "core/error.h"

#define MS DIRTIME_MS

static void test_defaults(void **state)
{
    (void)state;
    struct dir_timing t = {0};
    assert_int_equal(dirtime_complete(&t), 0);
    assert_int_equal(t.refresh_ms, 1000);
    assert_int_equal(t.relay_ttl_ms, 3000);
    assert_int_equal(t.lease_ms, 5000);
    assert_int_equal(t.renew_ms, 1666);
    assert_int_equal(t.margin_ms, 500);
    assert_int_equal(t.wait_ms, 2000);
    assert_int_equal(t.backoff_min_ms, 50);
    assert_int_equal(t.backoff_max_ms, 2000);

    /* Derived from what is given. */
    struct dir_timing s = {.lease_ms = 300, .refresh_ms = 100};
    assert_int_equal(dirtime_complete(&s), 0);
    assert_int_equal(s.renew_ms, 100);
    assert_int_equal(s.margin_ms, 30);
    assert_int_equal(s.relay_ttl_ms, 300);

    /* Settings that cannot keep the guard. */
    struct dir_timing bad1 = {.lease_ms = 100, .margin_ms = 100};
    assert_int_equal(dirtime_complete(&bad1), ROOST_EINVAL);
    struct dir_timing bad2 = {.lease_ms = 300, .margin_ms = 50, .renew_ms = 250};
    assert_int_equal(dirtime_complete(&bad2), ROOST_EINVAL);
    struct dir_timing bad3 = {.refresh_ms = 1000, .relay_ttl_ms = 1000};
    assert_int_equal(dirtime_complete(&bad3), ROOST_EINVAL);
    struct dir_timing bad4 = {.backoff_min_ms = 500, .backoff_max_ms = 100};
    assert_int_equal(dirtime_complete(&bad4), ROOST_EINVAL);
    assert_int_equal(dirtime_complete(NULL), ROOST_EINVAL);
}

static void test_deadlines(void **state)
{
    (void)state;
    struct dir_timing t = {.lease_ms = 300, .margin_ms = 50, .renew_ms = 100};
    assert_int_equal(dirtime_complete(&t), 0);
    uint64_t t0 = 1000 * MS;
    assert_int_equal(dirtime_lease_until(t0, &t), t0 + 250 * MS);
    assert_int_equal(dirtime_renew_at(t0, &t), t0 + 100 * MS);
    /* Claim answered quickly: deadline from the send time, not the answer. */
    assert_int_equal(dirtime_after_success(UINT64_MAX, t0, t0 + 20 * MS, &t), t0 + 250 * MS);
    /* Claim answered after its own deadline: not trusted. */
    assert_int_equal(dirtime_after_success(UINT64_MAX, t0, t0 + 250 * MS, &t), 0);
    /* Renew answered before the old deadline extends it... */
    uint64_t old = t0 + 250 * MS;
    assert_int_equal(dirtime_after_success(old, t0 + 100 * MS, t0 + 110 * MS, &t), t0 + 350 * MS);
    /* ...but not once the old deadline passed: a lease never comes back. */
    assert_int_equal(dirtime_after_success(old, t0 + 100 * MS, old, &t), 0);
    assert_int_equal(dirtime_after_success(old, t0 + 100 * MS, old + 1, &t), 0);
}

static void test_backoff(void **state)
{
    (void)state;
    struct dir_timing t = {.backoff_min_ms = 50, .backoff_max_ms = 1000};
    assert_int_equal(dirtime_complete(&t), 0);
    uint32_t b = dirtime_backoff_next(0, &t);
    assert_int_equal(b, 50);
    uint32_t seq[] = {100, 200, 400, 800, 1000, 1000};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        b = dirtime_backoff_next(b, &t);
        assert_int_equal(b, seq[i]);
    }
    assert_int_equal(dirtime_backoff_next(UINT32_MAX, &t), 1000);
}

/* xorshift: reproducible delays. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

/* A home renews over a link with delays up to max_delay each way, for
 * `rounds` renewals, and then (stall) stops. At every step its belief must
 * end no later than Redis's expiry minus the margin: the earliest moment
 * another relay may claim, less the margin that absorbs clock-rate skew. */
static void simulate(uint64_t max_delay, unsigned rounds, bool expect_no_lapse)
{
    struct dir_timing t = {.lease_ms = 300, .margin_ms = 50, .renew_ms = 100};
    assert_int_equal(dirtime_complete(&t), 0);
    uint64_t now = 5000 * MS;
    /* Claim. */
    uint64_t sent = now;
    uint64_t exec = sent + rnd(max_delay + 1);      /* Redis runs it */
    uint64_t answer = exec + rnd(max_delay + 1);    /* the home reads the answer */
    uint64_t redis_expiry = exec + t.lease_ms * MS; /* PX counted from execution */
    uint64_t until = dirtime_after_success(UINT64_MAX, sent, answer, &t);
    uint64_t next_renew = dirtime_renew_at(sent, &t);
    unsigned lapses = 0;
    for (unsigned i = 0; i < rounds; i++) {
        if (until != 0)
            assert_true(until + t.margin_ms * MS <= redis_expiry);
        sent = next_renew > answer ? next_renew : answer;
        if (until == 0 || sent >= until) {
            lapses++;
            break;
        }
        exec = sent + rnd(max_delay + 1);
        answer = exec + rnd(max_delay + 1);
        if (exec < redis_expiry) /* still ours in Redis: PEXPIRE */
            redis_expiry = exec + t.lease_ms * MS;
        else
            break; /* expired in Redis: a real renew would get 0 or restore */
        until = dirtime_after_success(until, sent, answer, &t);
        next_renew = dirtime_renew_at(sent, &t);
    }
    if (expect_no_lapse)
        assert_int_equal(lapses, 0);
    /* Stall: no more renewals. The belief ends by the clock alone, before
     * anyone else can claim. */
    if (until != 0)
        assert_true(until + t.margin_ms * MS <= redis_expiry);
}

static void test_guard_sim(void **state)
{
    (void)state;
    for (int k = 0; k < 2000; k++)
        simulate(10 * MS, 50, true); /* short delays: never lapses */
    for (int k = 0; k < 2000; k++)
        simulate(200 * MS, 50, false); /* long delays: may lapse, never overlaps */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_guard_sim),
    };
    return cmocka_run_group_tests_name("cluster_dirtime", tests, NULL, NULL);
}
