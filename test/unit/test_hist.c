/* The latency histogram: bucket layout, nearest-rank percentiles against a
 * sorted reference, merging, edge values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/hist.h"

static struct hist *new_hist(void)
{
    struct hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    hist_init(h);
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank on a sorted array. */
static uint64_t ref_quantile(const uint64_t *v, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n - 1e-9);
    if (rank == 0)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_empty(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    assert_int_equal(h->n, 0);
    assert_int_equal(hist_quantile(h, 0.5), 0);
    assert_int_equal(hist_quantile(h, 1.0), 0);
    assert_true(hist_mean(h) == 0.0);
    free(h);
}

static void test_buckets_monotonic_and_tight(void **state)
{
    (void)state;
    /* Every bucket's high is above the previous one, and each value maps
     * into a bucket whose range holds it, within 1/128 relative. */
    for (unsigned i = 1; i < HIST_BUCKETS; i++)
        assert_true(hist_bucket_high(i) > hist_bucket_high(i - 1));
    assert_int_equal(hist_bucket_high(HIST_BUCKETS - 1), UINT64_MAX);
    for (int k = 0; k < 200000; k++) {
        uint64_t v = next_rand() >> (next_rand() % 64);
        unsigned b = hist_bucket(v);
        assert_true(b < HIST_BUCKETS);
        uint64_t hi = hist_bucket_high(b);
        assert_true(hi >= v);
        if (b > 0)
            assert_true(hist_bucket_high(b - 1) < v);
        assert_true((long double)(hi - v) <= (long double)v / HIST_HALF);
    }
    for (uint64_t v = 0; v < HIST_EXACT; v++)
        assert_int_equal(hist_bucket_high(hist_bucket(v)), v);
    assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}

static void check_against_reference(uint64_t *v, size_t n)
{
    struct hist *h = new_hist();
    for (size_t i = 0; i < n; i++)
        hist_record(h, v[i]);
    qsort(v, n, sizeof(*v), cmp_u64);
    static const double qs[] = {0.0, 0.001, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0};
    uint64_t prev = 0;
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t ref = ref_quantile(v, n, qs[i]);
        uint64_t got = hist_quantile(h, qs[i]);
        /* Never below the true value, at most one bucket width above it. */
        assert_true(got >= ref);
        assert_true((long double)(got - ref) <= (long double)ref / HIST_HALF);
        assert_true(got >= prev); /* percentiles are ordered */
        prev = got;
    }
    assert_int_equal(hist_quantile(h, 1.0), v[n - 1]);
    assert_int_equal(h->max, v[n - 1]);
    assert_int_equal(h->min, v[0]);
    assert_int_equal(h->n, n);
    free(h);
}

static void test_uniform_vs_sorted(void **state)
{
    (void)state;
    size_t n = 100000;
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = next_rand() % 5000000; /* 0..5 ms in ns */
    check_against_reference(v, n);
    free(v);
}

static void test_heavy_tail_vs_sorted(void **state)
{
    (void)state;
    size_t n = 50001;
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        /* Log-uniform over 1 ns .. ~1 s: stresses every octave. */
        double e = (double)(next_rand() % 30000) / 1000.0;
        v[i] = (uint64_t)pow(2.0, e);
    }
    check_against_reference(v, n);
    free(v);
}

static void test_small_exact(void **state)
{
    (void)state;
    uint64_t v[] = {5, 1, 4, 2, 3};
    struct hist *h = new_hist();
    for (int i = 0; i < 5; i++)
        hist_record(h, v[i]);
    assert_int_equal(hist_quantile(h, 0.2), 1);
    assert_int_equal(hist_quantile(h, 0.21), 2);
    assert_int_equal(hist_quantile(h, 0.5), 3);
    assert_int_equal(hist_quantile(h, 0.99), 5);
    assert_int_equal(hist_quantile(h, -1), 1);
    assert_int_equal(hist_quantile(h, 2), 5);
    assert_true(fabs(hist_mean(h) - 3.0) < 1e-9);
    free(h);
}

static void test_merge(void **state)
{
    (void)state;
    struct hist *a = new_hist(), *b = new_hist(), *all = new_hist();
    for (int i = 0; i < 10000; i++) {
        uint64_t x = next_rand() % 1000000;
        hist_record(i % 3 ? a : b, x);
        hist_record(all, x);
    }
    hist_merge(a, b);
    assert_int_equal(a->n, all->n);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->b, all->b, sizeof(a->b));
    for (double q = 0; q <= 1.0; q += 0.05)
        assert_int_equal(hist_quantile(a, q), hist_quantile(all, q));
    struct hist *empty = new_hist();
    hist_merge(a, empty); /* merging nothing changes nothing, min included */
    assert_int_equal(a->min, all->min);
    free(a);
    free(b);
    free(all);
    free(empty);
}

static void test_extremes(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    hist_record(h, 0);
    hist_record(h, UINT64_MAX);
    assert_int_equal(hist_quantile(h, 0.5), 0);
    assert_int_equal(hist_quantile(h, 1.0), UINT64_MAX);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_buckets_monotonic_and_tight),
        cmocka_unit_test(test_uniform_vs_sorted),
        cmocka_unit_test(test_heavy_tail_vs_sorted),
        cmocka_unit_test(test_small_exact),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests_name("hist", tests, NULL, NULL);
}
