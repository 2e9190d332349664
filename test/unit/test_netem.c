/* roost-bench's path emulation (bench/netem.c) on fake time: a datagram
 * leaves exactly when due (rtt/2 after its push, not before, not at its
 * slot's start), in (due, push order) order; jitter stays within its bound
 * and never reorders a flow; the loss rate is within bounds for a fixed
 * seed and reproducible; forget drops a context's datagrams; flush releases
 * one direction now; a callback may push; delays longer than the wheel's
 * first lap and late runs are handled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* The module under test is compiled into this program (the Makefile links
 * unit tests with the libraries, not with bench/). */
#include "bench/netem.c"

#define MS 1000000ull
#define US 1000ull

struct rel {
    unsigned dir;
    void *ctx;
    uint32_t id; /* first 4 bytes of the datagram */
    size_t len;
    uint64_t now;
};

struct sink {
    struct rel r[200000];
    size_t n;
    struct netem *nm; /* for the re-push test */
    bool repush;
};

static void on_release(void *arg, unsigned dir, void *ctx, const uint8_t *data, size_t len,
                       uint64_t now)
{
    struct sink *s = arg;
    uint32_t id = 0;
    memcpy(&id, data, len < 4 ? len : 4);
    s->r[s->n++] = (struct rel){.dir = dir, .ctx = ctx, .id = id, .len = len, .now = now};
    if (s->repush && dir == NETEM_IN) {
        uint32_t back = id + 1000000;
        assert_int_equal(netem_push(s->nm, NETEM_OUT, ctx, NULL, (uint8_t *)&back, 4, now), 1);
    }
}

static struct sink *sink_new(void)
{
    struct sink *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    return s;
}

static void push_id(struct netem *nm, unsigned dir, void *ctx, struct netem_flow *f, uint32_t id,
                    uint64_t now)
{
    uint8_t d[64];
    memset(d, 0xab, sizeof(d));
    memcpy(d, &id, 4);
    assert_int_equal(netem_push(nm, dir, ctx, f, d, sizeof(d), now), 1);
}

static void test_config(void **state)
{
    (void)state;
    struct netem *nm;
    struct netem_config c = {.rtt_ns = NETEM_MAX_RTT_NS + 1};
    assert_int_equal(netem_new(&nm, &c, on_release, NULL), ROOST_EINVAL);
    c = (struct netem_config){.jitter_ns = NETEM_MAX_JITTER_NS + 1};
    assert_int_equal(netem_new(&nm, &c, on_release, NULL), ROOST_EINVAL);
    c = (struct netem_config){.loss = 1.5};
    assert_int_equal(netem_new(&nm, &c, on_release, NULL), ROOST_EINVAL);
    c = (struct netem_config){0};
    assert_false(netem_active(&c));
    c.rtt_ns = 1;
    assert_true(netem_active(&c));
    c = (struct netem_config){.loss = 0.01};
    assert_true(netem_active(&c));
    c = (struct netem_config){.rtt_ns = 30 * MS};
    assert_int_equal(netem_new(&nm, &c, on_release, NULL), 0);
    uint8_t big[NETEM_MAX_LEN + 1] = {0};
    assert_int_equal(netem_push(nm, NETEM_OUT, NULL, NULL, big, sizeof(big), 0), ROOST_ETOOBIG);
    assert_int_equal(netem_push(nm, NETEM_OUT, NULL, NULL, big, NETEM_MAX_LEN, 0), 1);
    netem_del(nm);
    netem_del(NULL);
}

/* rtt 30 ms, no jitter: each datagram leaves exactly 15 ms after its push,
 * in push order, whatever the run times. */
static void test_delay_exact(void **state)
{
    (void)state;
    struct sink *s = sink_new();
    struct netem *nm;
    struct netem_config c = {.rtt_ns = 30 * MS};
    assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
    uint64_t t0 = 1000 * MS + 12345; /* not on a slot boundary */
    for (uint32_t i = 0; i < 100; i++)
        push_id(nm, i % 2, (void *)(uintptr_t)(i % 7 + 1), NULL, i, t0 + i * 37 * US);
    assert_int_equal(netem_held(nm), 100);
    assert_int_equal(netem_next(nm), t0 + 15 * MS);
    /* One ns early: nothing. */
    netem_run(nm, t0 + 15 * MS - 1);
    assert_int_equal(s->n, 0);
    /* Step 1 us at a time: each leaves at its due time, in order. */
    for (uint64_t t = t0 + 15 * MS; s->n < 100; t += US) {
        uint64_t next = netem_next(nm);
        netem_run(nm, t);
        if (next <= t)
            assert_true(s->n > 0);
    }
    for (uint32_t i = 0; i < 100; i++) {
        assert_int_equal(s->r[i].id, i);
        assert_int_equal(s->r[i].dir, i % 2);
        assert_int_equal(s->r[i].len, 64);
        uint64_t due = t0 + i * 37 * US + 15 * MS;
        assert_true(s->r[i].now >= due && s->r[i].now < due + US);
    }
    assert_int_equal(netem_held(nm), 0);
    assert_int_equal(netem_next(nm), UINT64_MAX);
    struct netem_stats st;
    netem_stats(nm, &st);
    assert_int_equal(st.queued[0] + st.queued[1], 100);
    assert_int_equal(st.released[0] + st.released[1], 100);
    netem_del(nm);
    free(s);
}

/* Jitter: delays in [rtt/2 - j, rtt/2 + j]; one flow never reordered; a
 * run releases in (due, push order) order across flows. */
static void test_jitter_order(void **state)
{
    (void)state;
    struct sink *s = sink_new();
    struct netem *nm;
    struct netem_config c = {.rtt_ns = 20 * MS, .jitter_ns = 4 * MS, .seed = 7};
    assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
    enum { FLOWS = 8, PER = 500 };
    struct netem_flow flows[FLOWS];
    memset(flows, 0, sizeof(flows));
    uint64_t pushed_at[FLOWS * PER];
    uint64_t t = 5 * MS;
    uint32_t id = 0;
    for (int k = 0; k < PER; k++) {
        for (int f = 0; f < FLOWS; f++, id++) {
            pushed_at[id] = t;
            push_id(nm, NETEM_IN, &flows[f], &flows[f], id, t);
        }
        t += 100 * US;
        netem_run(nm, t);
    }
    while (netem_held(nm) > 0) {
        t += 50 * US;
        netem_run(nm, t);
    }
    assert_int_equal(s->n, FLOWS * PER);
    uint32_t last[FLOWS];
    memset(last, 0xff, sizeof(last));
    uint64_t min_d = UINT64_MAX, max_d = 0;
    for (size_t i = 0; i < s->n; i++) {
        int f = (int)((struct netem_flow *)s->r[i].ctx - flows);
        assert_true(f >= 0 && f < FLOWS);
        assert_int_equal(s->r[i].id % FLOWS, (uint32_t)f);
        if (last[f] != UINT32_MAX)
            assert_true(s->r[i].id > last[f]); /* per-flow order */
        last[f] = s->r[i].id;
        /* Released at its run, within one run step (100 us) of due. */
        uint64_t d = s->r[i].now - pushed_at[s->r[i].id];
        if (d < min_d)
            min_d = d;
        if (d > max_d)
            max_d = d;
    }
    assert_true(min_d >= 6 * MS);
    /* rtt/2 + j, plus the per-flow order hold (bounded by the last draw),
     * plus the run step. */
    assert_true(max_d <= 14 * MS + 100 * US);
    /* The jitter really spreads: not all at 10 ms. */
    assert_true(max_d - min_d > 4 * MS);
    netem_del(nm);
    free(s);
}

/* Same-due ties across flows leave in push order; a late run releases in
 * due order. */
static void test_due_order(void **state)
{
    (void)state;
    struct sink *s = sink_new();
    struct netem *nm;
    struct netem_config c = {.rtt_ns = 2 * MS};
    assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
    /* Pushed with decreasing now: due order is the reverse of push order. */
    for (uint32_t i = 0; i < 10; i++)
        push_id(nm, NETEM_OUT, NULL, NULL, i, 10 * MS - i * 10 * US);
    /* Ties. */
    for (uint32_t i = 10; i < 20; i++)
        push_id(nm, NETEM_OUT, NULL, NULL, i, 10 * MS);
    netem_run(nm, 100 * MS); /* late */
    assert_int_equal(s->n, 20);
    for (size_t i = 1; i < s->n; i++) {
        /* due = push now + 1 ms: compare via the ids' push times */
        uint32_t a = s->r[i - 1].id, b = s->r[i].id;
        uint64_t da = a < 10 ? 10 * MS - a * 10 * US : 10 * MS;
        uint64_t db = b < 10 ? 10 * MS - b * 10 * US : 10 * MS;
        assert_true(da < db || (da == db && a < b));
    }
    netem_del(nm);
    free(s);
}

/* Loss: within 4 sigma of the rate for a fixed seed; the same seed draws
 * the same losses; 0 and 1 are exact. */
static void test_loss_rate(void **state)
{
    (void)state;
    const int N = 100000;
    const double p = 0.02;
    uint64_t lost_a = 0, lost_b = 0;
    uint8_t pattern_a[1000], pattern_b[1000];
    for (int run = 0; run < 2; run++) {
        struct sink *s = sink_new();
        struct netem *nm;
        struct netem_config c = {.rtt_ns = 1 * MS, .loss = p, .seed = 42};
        assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
        uint64_t lost = 0;
        uint8_t d[8] = {0};
        for (int i = 0; i < N; i++) {
            int rc = netem_push(nm, i % 2, NULL, NULL, d, sizeof(d), (uint64_t)i * US);
            assert_true(rc == 0 || rc == 1);
            lost += rc == 0;
            if (i < 1000)
                (run ? pattern_b : pattern_a)[i] = (uint8_t)rc;
            if (i % 100 == 0)
                netem_run(nm, (uint64_t)i * US);
        }
        netem_run(nm, (uint64_t)N * US + 10 * MS);
        struct netem_stats st;
        netem_stats(nm, &st);
        assert_int_equal(st.lost[0] + st.lost[1], lost);
        assert_int_equal(st.released[0] + st.released[1], (uint64_t)N - lost);
        assert_int_equal(s->n, (size_t)N - lost);
        *(run ? &lost_b : &lost_a) = lost;
        netem_del(nm);
        free(s);
    }
    double sigma = 44.3; /* sqrt(N p (1 - p)) */
    assert_true((double)lost_a > N * p - 4 * sigma && (double)lost_a < N * p + 4 * sigma);
    assert_int_equal(lost_a, lost_b);
    assert_memory_equal(pattern_a, pattern_b, sizeof(pattern_a));

    struct netem *nm;
    struct netem_config all = {.loss = 1.0};
    assert_int_equal(netem_new(&nm, &all, on_release, NULL), 0);
    uint8_t d[8] = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(netem_push(nm, NETEM_OUT, NULL, NULL, d, sizeof(d), 0), 0);
    netem_del(nm);
}

/* forget drops one context's datagrams only; flush releases one direction
 * now and drops the other. */
static void test_forget_flush(void **state)
{
    (void)state;
    struct sink *s = sink_new();
    struct netem *nm;
    struct netem_config c = {.rtt_ns = 40 * MS};
    assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
    int a, b;
    for (uint32_t i = 0; i < 50; i++) {
        push_id(nm, NETEM_OUT, &a, NULL, i, i * 100 * US);
        push_id(nm, NETEM_IN, &b, NULL, 100 + i, i * 100 * US);
        push_id(nm, NETEM_OUT, &b, NULL, 200 + i, i * 100 * US);
    }
    assert_int_equal(netem_held(nm), 150);
    netem_forget(nm, &a);
    assert_int_equal(netem_held(nm), 100);
    netem_run(nm, 1000 * MS);
    assert_int_equal(s->n, 100);
    for (size_t i = 0; i < s->n; i++)
        assert_ptr_equal(s->r[i].ctx, &b);

    s->n = 0;
    for (uint32_t i = 0; i < 20; i++) {
        push_id(nm, NETEM_OUT, &a, NULL, i, 2000 * MS + i);
        push_id(nm, NETEM_IN, &a, NULL, 100 + i, 2000 * MS + i);
    }
    netem_flush(nm, NETEM_OUT, 2000 * MS + 50);
    assert_int_equal(netem_held(nm), 0);
    assert_int_equal(s->n, 20);
    for (uint32_t i = 0; i < 20; i++) {
        assert_int_equal(s->r[i].dir, NETEM_OUT);
        assert_int_equal(s->r[i].id, i);
        assert_int_equal(s->r[i].now, 2000 * MS + 50);
    }
    struct netem_stats st;
    netem_stats(nm, &st);
    assert_int_equal(st.dropped, 70);
    netem_del(nm);
    free(s);
}

/* A release callback may push (an ACK answering a delivered packet): the
 * answer waits its own delay. */
static void test_push_from_callback(void **state)
{
    (void)state;
    struct sink *s = sink_new();
    struct netem *nm;
    struct netem_config c = {.rtt_ns = 10 * MS};
    assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
    s->nm = nm;
    s->repush = true;
    push_id(nm, NETEM_IN, NULL, NULL, 1, 0);
    netem_run(nm, 5 * MS);
    assert_int_equal(s->n, 1);
    assert_int_equal(netem_next(nm), 10 * MS);
    netem_run(nm, 10 * MS);
    assert_int_equal(s->n, 2);
    assert_int_equal(s->r[1].id, 1000001);
    assert_int_equal(s->r[1].dir, NETEM_OUT);
    netem_del(nm);
    free(s);
}

/* Delays beyond 64 slots and a run seconds late: nothing lost, order kept. */
static void test_long_and_late(void **state)
{
    (void)state;
    struct sink *s = sink_new();
    struct netem *nm;
    struct netem_config c = {.rtt_ns = 600 * MS};
    assert_int_equal(netem_new(&nm, &c, on_release, s), 0);
    uint64_t t = 0;
    for (uint32_t i = 0; i < 3000; i++) {
        push_id(nm, NETEM_OUT, NULL, NULL, i, t);
        t += 1 * MS;
        if (i % 10 == 0)
            netem_run(nm, t);
    }
    /* Due: i ms + 300 ms; run very late. */
    netem_run(nm, t + 5000 * MS);
    assert_int_equal(s->n, 3000);
    for (uint32_t i = 0; i < 3000; i++) {
        assert_int_equal(s->r[i].id, i);
        if (s->r[i].now < t + 5000 * MS)
            assert_true(s->r[i].now >= (uint64_t)i * MS + 300 * MS);
    }
    netem_del(nm);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_delay_exact),
        cmocka_unit_test(test_jitter_order),
        cmocka_unit_test(test_due_order),
        cmocka_unit_test(test_loss_rate),
        cmocka_unit_test(test_forget_flush),
        cmocka_unit_test(test_push_from_callback),
        cmocka_unit_test(test_long_and_late),
    };
    return cmocka_run_group_tests_name("netem", tests, NULL, NULL);
}
