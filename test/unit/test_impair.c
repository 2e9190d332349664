/* The impairment proxy's pure parts (test/torture/impair.c): the seeded
 * generator is reproducible, loss and duplication decisions match their
 * probabilities for a fixed seed (and are exact at 0 and 100 %), delays
 * stay in delay +- jitter (+ the reorder hold), the delay queue releases
 * in (due, push order) order and is bounded, and the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* The module under test is compiled into this program (see impair.h). */
#include "test/torture/impair.c"

#define DRAWS 100000

static void test_rng_reproducible(void **state)
{
    (void)state;
    struct impair_rng a, b, c;
    impair_rng_seed(&a, 42);
    impair_rng_seed(&b, 42);
    impair_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = impair_rng_next(&a);
        assert_int_equal(x, impair_rng_next(&b));
        differ += x != impair_rng_next(&c);
    }
    assert_true(differ > 990);
    /* Seed 0 must not give the all-zero (stuck) state. */
    impair_rng_seed(&a, 0);
    assert_true(impair_rng_next(&a) != 0 || impair_rng_next(&a) != 0);
    for (int i = 0; i < DRAWS; i++) {
        double u = impair_rng_unit(&a);
        assert_true(u >= 0 && u < 1);
    }
}

static void count(const struct impair_dir *d, uint64_t seed, unsigned *lost, unsigned *dup)
{
    struct impair_rng r;
    impair_rng_seed(&r, seed);
    *lost = *dup = 0;
    for (int i = 0; i < DRAWS; i++) {
        struct impair_verdict v;
        impair_decide(d, &r, &v);
        *lost += v.copies == 0;
        *dup += v.copies == 2;
    }
}

static void test_loss_dup_rates(void **state)
{
    (void)state;
    struct impair_dir d = {.loss = 0.05, .dup = 0.02};
    unsigned lost, dup;
    count(&d, 7, &lost, &dup);
    /* Binomial: sd = sqrt(n p (1-p)) ~ 69 for loss and ~43 for dup; 5 sd. */
    assert_in_range(lost, 5000 - 345, 5000 + 345);
    unsigned kept = DRAWS - lost;
    assert_in_range(dup, kept * 0.02 - 215, kept * 0.02 + 215);
    /* The same seed gives the same decisions. */
    unsigned lost2, dup2;
    count(&d, 7, &lost2, &dup2);
    assert_int_equal(lost, lost2);
    assert_int_equal(dup, dup2);

    struct impair_dir none = {0};
    count(&none, 7, &lost, &dup);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    struct impair_dir all = {.loss = 1};
    count(&all, 7, &lost, &dup);
    assert_int_equal(lost, DRAWS);
    struct impair_dir twice = {.dup = 1};
    count(&twice, 7, &lost, &dup);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, DRAWS);
}

static void test_fixed_draws_per_packet(void **state)
{
    (void)state;
    /* Changing a probability must not shift later packets' draws: packet
     * k's loss decision at 5 % and at 50 % comes from the same number. */
    struct impair_dir a = {.loss = 0.05}, b = {.loss = 0.5, .dup = 0.3, .reorder = 0.2};
    struct impair_rng ra, rb;
    impair_rng_seed(&ra, 9);
    impair_rng_seed(&rb, 9);
    for (int i = 0; i < 10000; i++) {
        struct impair_verdict va, vb;
        impair_decide(&a, &ra, &va);
        impair_decide(&b, &rb, &vb);
        if (va.copies == 0)
            assert_int_equal(vb.copies, 0); /* lost at 5 % => lost at 50 % */
    }
    assert_memory_equal(ra.s, rb.s, sizeof(ra.s));
}

static void test_delay_bounds(void **state)
{
    (void)state;
    struct impair_rng r;
    impair_rng_seed(&r, 3);
    struct impair_dir d = {.delay_ns = 20000000, .jitter_ns = 5000000};
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < DRAWS; i++) {
        struct impair_verdict v;
        impair_decide(&d, &r, &v);
        assert_int_equal(v.copies, 1);
        assert_false(v.reordered[0]);
        lo = v.delay_ns[0] < lo ? v.delay_ns[0] : lo;
        hi = v.delay_ns[0] > hi ? v.delay_ns[0] : hi;
    }
    assert_true(lo >= 15000000 && lo < 15100000);
    assert_true(hi <= 25000000 && hi > 24900000);

    /* Jitter larger than the delay: clamped at 0, never negative/wrapped. */
    struct impair_dir z = {.delay_ns = 1000000, .jitter_ns = 5000000};
    unsigned zeros = 0;
    for (int i = 0; i < DRAWS; i++) {
        struct impair_verdict v;
        impair_decide(&z, &r, &v);
        assert_true(v.delay_ns[0] <= 6000000);
        zeros += v.delay_ns[0] == 0;
    }
    assert_in_range(zeros, DRAWS * 0.4 - 1000, DRAWS * 0.4 + 1000);

    /* Every copy reordered: the hold is added to its delay. */
    struct impair_dir h = {.delay_ns = 10000000, .reorder = 1, .reorder_ns = 30000000, .dup = 1};
    for (int i = 0; i < 1000; i++) {
        struct impair_verdict v;
        impair_decide(&h, &r, &v);
        assert_int_equal(v.copies, 2);
        for (int k = 0; k < 2; k++) {
            assert_true(v.reordered[k]);
            assert_int_equal(v.delay_ns[k], 40000000);
        }
    }
}

static void test_queue_order(void **state)
{
    (void)state;
    struct impair_queue q;
    assert_int_equal(impair_queue_init(&q, 4096), 0);
    struct impair_rng r;
    impair_rng_seed(&r, 11);
    /* Random due times with many ties (values 0..99): pop order must be
     * by due, and by push order among equal dues. */
    for (uint32_t i = 0; i < 4096; i++) {
        struct impair_pkt *p = impair_queue_alloc(&q);
        assert_non_null(p);
        p->client = i;
        impair_queue_push(&q, p, impair_rng_next(&r) % 100);
    }
    assert_null(impair_queue_alloc(&q)); /* bounded */
    uint64_t last_due = 0;
    uint32_t last_client = 0;
    size_t popped = 0;
    for (uint64_t now = 0; now < 100; now += 7) {
        struct impair_pkt *p;
        while ((p = impair_queue_pop_due(&q, now)) != NULL) {
            assert_true(p->due <= now);
            assert_true(p->due >= last_due);
            if (p->due == last_due && popped > 0)
                assert_true(p->client > last_client);
            last_due = p->due;
            last_client = p->client;
            impair_queue_release(&q, p);
            popped++;
        }
        const struct impair_pkt *top = impair_queue_peek(&q);
        if (top != NULL)
            assert_true(top->due > now);
    }
    struct impair_pkt *p;
    while ((p = impair_queue_pop_due(&q, UINT64_MAX)) != NULL) {
        assert_true(p->due >= last_due);
        last_due = p->due;
        impair_queue_release(&q, p);
        popped++;
    }
    assert_int_equal(popped, 4096);
    assert_null(impair_queue_peek(&q));
    /* Everything came back to the pool. */
    for (int i = 0; i < 4096; i++)
        assert_non_null(impair_queue_alloc(&q));
    impair_queue_free(&q);
}

static void test_queue_not_due(void **state)
{
    (void)state;
    struct impair_queue q;
    assert_int_equal(impair_queue_init(&q, 2), 0);
    struct impair_pkt *a = impair_queue_alloc(&q), *b = impair_queue_alloc(&q);
    impair_queue_push(&q, a, 50);
    impair_queue_push(&q, b, 10);
    assert_null(impair_queue_pop_due(&q, 9));
    assert_ptr_equal(impair_queue_peek(&q), b);
    assert_ptr_equal(impair_queue_pop_due(&q, 10), b);
    assert_null(impair_queue_pop_due(&q, 49));
    assert_ptr_equal(impair_queue_pop_due(&q, 1000), a);
    assert_null(impair_queue_pop_due(&q, 1000));
    impair_queue_release(&q, a);
    impair_queue_release(&q, b);
    impair_queue_free(&q);
}

static int parse(struct impair_opts *o, char *err, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"prog_impair";
    while (*args != NULL && argc < 31)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    return impair_parse(argc, argv, o, err, 256);
}

static void test_parse(void **state)
{
    (void)state;
    struct impair_opts o;
    char err[256];
    const char *full[] = {"--upstream",
                          "127.0.0.1:4433",
                          "--listen",
                          "[::1]:0",
                          "--seed",
                          "99",
                          "--loss",
                          "5",
                          "--down-loss=10%",
                          "--dup",
                          "1.5",
                          "--delay",
                          "20ms",
                          "--jitter",
                          "5ms",
                          "--up-reorder",
                          "2",
                          "--reorder-delay",
                          "40ms",
                          "--rebind-at",
                          "5s,12",
                          "--rebind-every",
                          "1m",
                          "--duration",
                          "30s",
                          "--max-clients",
                          "64",
                          "--stats",
                          "/tmp/x.json",
                          NULL};
    assert_int_equal(parse(&o, err, full), 0);
    assert_string_equal(o.up_host, "127.0.0.1");
    assert_int_equal(o.up_port, 4433);
    assert_string_equal(o.listen_host, "::1");
    assert_int_equal(o.listen_port, 0);
    assert_int_equal(o.seed, 99);
    assert_true(o.dir[IMPAIR_UP].loss == 0.05);
    assert_true(o.dir[IMPAIR_DOWN].loss == 0.10);
    assert_true(o.dir[IMPAIR_UP].dup == 0.015 && o.dir[IMPAIR_DOWN].dup == 0.015);
    assert_int_equal(o.dir[IMPAIR_UP].delay_ns, 20000000);
    assert_int_equal(o.dir[IMPAIR_DOWN].jitter_ns, 5000000);
    assert_true(o.dir[IMPAIR_UP].reorder == 0.02);
    assert_true(o.dir[IMPAIR_DOWN].reorder == 0);
    assert_int_equal(o.dir[IMPAIR_DOWN].reorder_ns, 40000000);
    assert_int_equal(o.n_rebind_at, 2);
    assert_true(o.rebind_at_s[0] == 5 && o.rebind_at_s[1] == 12);
    assert_true(o.rebind_every_s == 60);
    assert_true(o.duration_s == 30);
    assert_int_equal(o.max_clients, 64);
    assert_string_equal(o.stats_file, "/tmp/x.json");

    const char *defaults[] = {"--upstream", "10.0.0.1:1", NULL};
    assert_int_equal(parse(&o, err, defaults), 0);
    assert_string_equal(o.listen_host, "127.0.0.1");
    assert_true(o.dir[IMPAIR_UP].loss == 0 && o.dir[IMPAIR_DOWN].delay_ns == 0);
    assert_int_equal(o.dir[IMPAIR_UP].reorder_ns, 30000000);
    assert_int_equal(o.seed, 1);

    const char *help[] = {"--help", NULL};
    assert_int_equal(parse(&o, err, help), 1);

    static const char *const bad[][5] = {
        {"--loss", "5", NULL},                         /* no --upstream */
        {"--upstream", "127.0.0.1", NULL},             /* no port */
        {"--upstream", "127.0.0.1:0", NULL},           /* port 0 upstream */
        {"--upstream", "h:1", "--loss", "101"},        /* > 100 % */
        {"--upstream", "h:1", "--dup", "-1"},          /* negative */
        {"--upstream", "h:1", "--delay", "5parsecs"},  /* unit */
        {"--upstream", "h:1", "--bogus", "1"},         /* unknown */
        {"--upstream", "h:1", "--sideways-loss", "1"}, /* unknown direction */
        {"--upstream", "h:1", "--loss", NULL},         /* missing value */
        {"--upstream", "h:1", "--rebind-at", ",,"},    /* empty list */
        {"--upstream", "h:1", "--max-clients", "0"},   /* below range */
        {"--upstream", "h:1", "stray", NULL},          /* not an option */
        {"--upstream", "[::1:5", NULL},                /* unclosed bracket */
        {"--upstream", "h:1", "--seed", "x"},          /* not a number */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = parse(&o, err, bad[i]);
        if (rc != -EINVAL)
            fail_msg("case %zu (%s %s) accepted", i, bad[i][0], bad[i][2] ? bad[i][2] : "");
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reproducible),
        cmocka_unit_test(test_loss_dup_rates),
        cmocka_unit_test(test_fixed_draws_per_packet),
        cmocka_unit_test(test_delay_bounds),
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_queue_not_due),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests_name("impair", tests, NULL, NULL);
}
