/* The latency histograms: the bench's (lib/client/hist: bucket layout,
 * nearest-rank percentiles against a sorted reference, merging, edge
 * values, huge latencies) and the relay's fan-out and join histograms
 * (relay_hist_add, relay_hist_add_stamp: a huge or wrapped latency goes to
 * the +Inf bucket and is counted as overflow, never into a low bucket). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/hist.h"
#include "core/buf.h"
#include "core/stat.h"
#include "relay/relay_int.h"

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

/* Latencies far above any real one keep their size: the top bucket ends at
 * UINT64_MAX, so nothing overflows into a low bucket, and a tail of huge
 * samples shows in p99. */
static void test_huge_latencies(void **state)
{
    (void)state;
    static const uint64_t huge[] = {2147483648ull,      4294967296ull,  4294967297ull,
                                    600000000000ull,    1ull << 40,     1ull << 62,
                                    (1ull << 63) + 123, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        unsigned b = hist_bucket(huge[i]);
        assert_true(hist_bucket_high(b) >= huge[i]);
        assert_true(b >= hist_bucket(2147483648ull));
    }
    struct hist *h = new_hist();
    for (int i = 0; i < 98; i++)
        hist_record(h, 1000000);   /* 1 ms */
    hist_record(h, 5000000000ull); /* 5 s: past a 32-bit ns wrap */
    hist_record(h, 1ull << 40);
    assert_true(hist_quantile(h, 0.99) >= 5000000000ull);
    assert_int_equal(hist_quantile(h, 1.0), 1ull << 40);
    assert_true(hist_quantile(h, 0.5) >= 1000000 && hist_quantile(h, 0.5) < 1010000);
    assert_true(hist_mean(h) > 1e10);
    free(h);
}

/* ------------------------------------------------------ relay histogram */

static void relay_hist_read(_Atomic uint64_t *slots, struct relay_hist *out)
{
    stat_read((uint64_t *)out, slots, STAT_N(struct relay_hist));
}

static void test_relay_hist_buckets(void **state)
{
    (void)state;
    _Atomic uint64_t h[STAT_N(struct relay_hist)] = {0};
    struct relay_hist r;
    /* Each bound lands in its own bucket, one ns more in the next. */
    for (unsigned i = 0; i + 1 < RELAY_HIST_N; i++) {
        memset(h, 0, sizeof(h));
        relay_hist_add(h, RELAY_HIST_BOUND_NS(i));
        relay_hist_add(h, RELAY_HIST_BOUND_NS(i) + 1);
        relay_hist_read(h, &r);
        assert_int_equal(r.bucket[i], 1);
        assert_int_equal(r.bucket[i + 1], 1);
        assert_int_equal(r.count, 2);
        assert_int_equal(r.overflow, i + 2 == RELAY_HIST_N ? 1 : 0);
    }
    memset(h, 0, sizeof(h));
    relay_hist_add(h, 0);
    relay_hist_add(h, 1024);
    relay_hist_read(h, &r);
    assert_int_equal(r.bucket[0], 2);
    assert_int_equal(r.sum_ns, 1024);
    assert_int_equal(r.overflow, 0);
}

/* The bounds: strictly increasing, every power of 4 from 1 KiB-ns to 4 GiB-ns
 * still one (dashboards that used the first histogram's `le` keep working),
 * and the finer ones a 1 ms target needs: a sample just under or at 1 ms is
 * counted at or below le=0.001, one just over it is not. */
static void test_relay_hist_fine_bounds(void **state)
{
    (void)state;
    for (unsigned i = 1; i + 1 < RELAY_HIST_N; i++)
        assert_true(RELAY_HIST_BOUND_NS(i) > RELAY_HIST_BOUND_NS(i - 1));
    for (unsigned k = 0; k < 12; k++) {
        uint64_t p4 = 1024ull << (2 * k);
        bool found = false;
        for (unsigned i = 0; i + 1 < RELAY_HIST_N; i++)
            found = found || RELAY_HIST_BOUND_NS(i) == p4;
        assert_true(found);
    }
    static const uint64_t fine[] = {500000, 750000, 1000000, 1500000, 2000000};
    for (size_t k = 0; k < sizeof(fine) / sizeof(fine[0]); k++) {
        unsigned i = 0;
        while (i + 1 < RELAY_HIST_N && RELAY_HIST_BOUND_NS(i) != fine[k])
            i++;
        assert_true(i + 1 < RELAY_HIST_N);
        _Atomic uint64_t h[STAT_N(struct relay_hist)] = {0};
        struct relay_hist r;
        relay_hist_add(h, fine[k] - 1);
        relay_hist_add(h, fine[k]);
        relay_hist_add(h, fine[k] + 1);
        relay_hist_read(h, &r);
        assert_int_equal(r.bucket[i], 2);
        assert_int_equal(r.bucket[i + 1], 1);
    }
    /* 1.2 ms: above 1.049 ms, at or below 1.5 ms. */
    _Atomic uint64_t h[STAT_N(struct relay_hist)] = {0};
    struct relay_hist r;
    relay_hist_add(h, 1200000);
    relay_hist_read(h, &r);
    unsigned j = 0;
    while (RELAY_HIST_BOUND_NS(j) != 1500000)
        j++;
    assert_int_equal(r.bucket[j], 1);
    assert_int_equal(r.bucket[j - 1], 0);
    assert_int_equal(r.count, 1);
}

/* Above the top finite bound (4.29 s): the +Inf bucket and overflow, with
 * the true value in the sum; never bucket 0. */
static void test_relay_hist_overflow(void **state)
{
    (void)state;
    _Atomic uint64_t h[STAT_N(struct relay_hist)] = {0};
    struct relay_hist r;
    relay_hist_add(h, 2200000000ull); /* 2.2 s: >= 2^31 ns, the last finite bucket */
    relay_hist_add(h, 5000000000ull); /* 5 s */
    relay_hist_add(h, UINT64_MAX - 1);
    relay_hist_add(h, BUF_STAMP_UNKNOWN);
    relay_hist_read(h, &r);
    assert_int_equal(r.bucket[0], 0);
    assert_int_equal(r.bucket[RELAY_HIST_N - 2], 1);
    assert_int_equal(r.bucket[RELAY_HIST_N - 1], 3);
    assert_int_equal(r.overflow, 3);
    assert_int_equal(r.count, 4);
}

/* Stamps: the caller passes the raw 32-bit difference. Real differences
 * convert at 256 ns a unit across the 32-bit wrap of the stamp itself; 2.1
 * s and 5 s (which wrapped a 32-bit ns stamp) keep their size; a
 * difference of half the wrap or more is unknown and overflows. */
static void test_relay_hist_stamp(void **state)
{
    (void)state;
    _Atomic uint64_t h[STAT_N(struct relay_hist)] = {0};
    struct relay_hist r;
    uint32_t u = 1u << BUF_STAMP_SHIFT;
    assert_int_equal(buf_stamp_ns(0), 0);
    assert_int_equal(buf_stamp_ns(40), 40 * u);
    assert_int_equal(buf_stamp_ns((1u << 31) - 1), (uint64_t)((1u << 31) - 1) * u);
    assert_true(buf_stamp_ns(1u << 31) == BUF_STAMP_UNKNOWN);
    assert_true(buf_stamp_ns(UINT32_MAX) == BUF_STAMP_UNKNOWN);
    /* The stamp counter wrapped between ingress and egress: 0xfffffff1 ->
     * 0x00000011 is 32 units (8.2 us, bucket 2). */
    uint32_t t0 = 0xfffffff1u, t1 = 0x00000011u;
    relay_hist_add_stamp(h, t1 - t0);
    relay_hist_read(h, &r);
    assert_int_equal(r.bucket[2], 1);
    assert_int_equal(r.sum_ns, 32 * u);
    /* 2.2 s and 5 s after ingress. */
    relay_hist_add_stamp(h, (uint32_t)(2200000000ull / u));
    relay_hist_add_stamp(h, (uint32_t)(5000000000ull / u));
    relay_hist_add_stamp(h, 0x90000000u); /* too old to tell */
    relay_hist_read(h, &r);
    assert_int_equal(r.bucket[0], 0);
    assert_int_equal(r.bucket[RELAY_HIST_N - 2], 1);
    assert_int_equal(r.bucket[RELAY_HIST_N - 1], 2);
    assert_int_equal(r.overflow, 2);
    assert_int_equal(r.count, 4);
    /* buf_stamp_now: never 0, and two readings differ by a small count. */
    uint32_t a = buf_stamp_now(), b = buf_stamp_now();
    assert_true(a != 0 && b != 0);
    assert_true(buf_stamp_ns(b - a) < 1000000000ull);
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
        cmocka_unit_test(test_huge_latencies),
        cmocka_unit_test(test_relay_hist_buckets),
        cmocka_unit_test(test_relay_hist_overflow),
        cmocka_unit_test(test_relay_hist_fine_bounds),
        cmocka_unit_test(test_relay_hist_stamp),
    };
    return cmocka_run_group_tests_name("hist", tests, NULL, NULL);
}
