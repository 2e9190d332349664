/* roost-bench's reading of the relay's /metrics (bench/metrics.c): the
 * relay-added latency histogram (roost_fanout_latency_seconds) summed over
 * workers and differenced over the window, with either set of bucket
 * bounds (the first histogram's powers of 4, or the finer ones around
 * 1 ms), and its quantiles interpolated inside a bucket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "bench/metrics.h"

static void parse(const char *text, struct metrics_sample *s)
{
    assert_int_equal(metrics_parse(text, strlen(text), s), 0);
    assert_true(s->ok);
}

/* Two workers, finer bounds; the counters the report needs still parse. */
static const char before[] = "# HELP roost_fanout_latency_seconds x\n"
                             "# TYPE roost_fanout_latency_seconds histogram\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.0005\"} 10\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.001\"} 10\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.0015\"} 10\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 10\n"
                             "roost_fanout_latency_seconds_sum{worker=\"0\"} 0.001\n"
                             "roost_fanout_latency_seconds_count{worker=\"0\"} 10\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"0.0005\"} 0\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"0.001\"} 0\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"0.0015\"} 0\n"
                             "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"+Inf\"} 0\n"
                             "roost_worker_turns_total{worker=\"0\"} 5\n"
                             "roost_worker_turns_total{worker=\"1\"} 7\n";
/* After: worker 0 got 50 more at <= 0.5 ms, worker 1 got 48 in (0.5, 1]
 * ms and 2 in (1, 1.5] ms: 100 samples, p50 at the 0.5 ms bound, p99 in
 * the (1, 1.5] ms bucket, half-way. */
static const char after[] = "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.0005\"} 60\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.001\"} 60\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.0015\"} 60\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 60\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"0.0005\"} 0\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"0.001\"} 48\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"0.0015\"} 50\n"
                            "roost_fanout_latency_seconds_bucket{worker=\"1\",le=\"+Inf\"} 50\n"
                            "roost_worker_turns_total{worker=\"0\"} 15\n"
                            "roost_worker_turns_total{worker=\"1\"} 17\n";

static void test_latency_window(void **state)
{
    (void)state;
    struct metrics_sample a, b;
    parse(before, &a);
    parse(after, &b);
    assert_int_equal(a.lat.n, 4);
    struct metrics_delta d;
    metrics_diff(&a, &b, &d);
    assert_true(d.ok);
    assert_true(d.have[METRICS_TURNS]);
    assert_int_equal(d.v[METRICS_TURNS], 20);
    uint64_t n = 0;
    double p50 = metrics_latency_quantile(&d, 0.5, &n);
    assert_int_equal(n, 100);
    assert_true(fabs(p50 - 0.0005) < 1e-9);
    double p99 = metrics_latency_quantile(&d, 0.99, NULL);
    assert_true(fabs(p99 - 0.00125) < 1e-9);
    /* p75: 25 of the 48 in (0.5, 1] ms. */
    double p75 = metrics_latency_quantile(&d, 0.75, NULL);
    assert_true(fabs(p75 - (0.0005 + 0.0005 * 25.0 / 48.0)) < 1e-9);
}

/* The first histogram's bounds (powers of 4) parse the same way; a
 * quantile in +Inf is infinite; an empty window is unknown (-1). */
static void test_latency_coarse_and_edges(void **state)
{
    (void)state;
    static const char t0[] =
        "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.000262144\"} 0\n"
        "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.001048576\"} 0\n"
        "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 0\n";
    static const char t1[] =
        "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.000262144\"} 98\n"
        "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"0.001048576\"} 99\n"
        "roost_fanout_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 100\n";
    struct metrics_sample a, b;
    parse(t0, &a);
    parse(t1, &b);
    struct metrics_delta d;
    metrics_diff(&a, &b, &d);
    assert_true(fabs(metrics_latency_quantile(&d, 0.5, NULL) - 0.000262144 * 50 / 98) < 1e-12);
    assert_true(fabs(metrics_latency_quantile(&d, 0.99, NULL) - 0.001048576) < 1e-12);
    assert_true(isinf(metrics_latency_quantile(&d, 1.0, NULL)));
    metrics_diff(&a, &a, &d);
    uint64_t n = 7;
    assert_true(metrics_latency_quantile(&d, 0.5, &n) < 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_window),
        cmocka_unit_test(test_latency_coarse_and_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
