/* Receive budgets (lib/quic/budget.c): the GCRA arithmetic (one second's
 * burst, then the rate; nothing charged for a refused packet; packets and
 * bytes independently) and the bounded per-address table (fixed memory,
 * eviction of the entry that owes least, an over-budget address stays
 * limited while a few others come and go). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "quic/budget.h"

#define MS 1000000ULL
#define SEC 1000000000ULL

static void test_packets_burst_then_rate(void **state)
{
    (void)state;
    struct budget_lim l;
    budget_lim_init(&l, 100, 0); /* 100 packets/s, burst 1 s = 100 */
    struct budget b = {0};
    uint64_t now = 5 * SEC;
    unsigned ok = 0;
    for (int i = 0; i < 1000; i++)
        ok += budget_take(&b, &l, now, 1200);
    assert_int_equal(ok, 100);
    /* 10 ms later: exactly one more token. */
    assert_true(budget_take(&b, &l, now + 10 * MS, 1200));
    assert_false(budget_take(&b, &l, now + 10 * MS, 1200));
    /* After a quiet second the burst is back, not more. */
    ok = 0;
    for (int i = 0; i < 1000; i++)
        ok += budget_take(&b, &l, now + 3 * SEC, 1200);
    assert_int_equal(ok, 100);
}

static void test_bytes_limit_independent(void **state)
{
    (void)state;
    struct budget_lim l;
    budget_lim_init(&l, 0, 100000); /* 100 kB/s, no packet limit */
    struct budget b = {0};
    uint64_t now = SEC;
    unsigned ok = 0;
    for (int i = 0; i < 1000; i++)
        ok += budget_take(&b, &l, now, 1000);
    assert_int_equal(ok, 100); /* 100 kB of 1000-byte packets */
    /* Small packets still fit where a large one does not. */
    assert_false(budget_take(&b, &l, now + 5 * MS, 1000)); /* 500 B of budget back */
    assert_true(budget_take(&b, &l, now + 5 * MS, 400));

    /* Both limits: a refused packet charges neither. */
    budget_lim_init(&l, 10, 1000000);
    memset(&b, 0, sizeof(b));
    assert_true(budget_take(&b, &l, now, 1000000)); /* the whole byte burst */
    assert_false(budget_take(&b, &l, now, 1));      /* bytes exhausted */
    uint64_t tp = b.tat_pkt;
    assert_false(budget_take(&b, &l, now, 1));
    assert_int_equal(b.tat_pkt, tp);

    budget_lim_init(&l, 0, 0);
    assert_false(budget_lim_on(&l));
}

static void addr_of(uint8_t a[16], uint32_t i)
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff;
    memcpy(a + 12, &i, 4);
}

static void test_addr_table_bounded(void **state)
{
    (void)state;
    struct budget_lim l;
    budget_lim_init(&l, 10, 0);
    struct budget_addr_table t;
    assert_int_equal(budget_addr_init(&t, &l), 0);
    const uint32_t cap = BUDGET_ADDR_SETS * BUDGET_ADDR_WAYS;
    uint8_t a[16];
    uint64_t now = SEC;
    /* Far more addresses than entries: each gets its fresh budget, the
     * table stays the same size and evicts the rest. */
    for (uint32_t i = 0; i < 10 * cap; i++) {
        addr_of(a, i);
        assert_true(budget_addr_take(&t, a, now, 100));
    }
    assert_true(t.evictions >= 9 * cap);
    assert_true(t.evictions <= 10 * cap);

    /* An address that spent its budget stays limited while a handful of
     * others come and go (its entry owes the most in its set). */
    addr_of(a, 0xdead);
    now += 10 * SEC;
    unsigned ok = 0;
    for (int i = 0; i < 100; i++)
        ok += budget_addr_take(&t, a, now, 100);
    assert_int_equal(ok, 10);
    uint8_t o[16];
    for (uint32_t i = 0; i < 3; i++) {
        addr_of(o, 0x100000 + i);
        assert_true(budget_addr_take(&t, o, now, 100));
    }
    assert_false(budget_addr_take(&t, a, now, 100));
    budget_addr_fini(&t);

    /* No limit: no table, everything passes. */
    budget_lim_init(&l, 0, 0);
    assert_int_equal(budget_addr_init(&t, &l), 0);
    assert_null(t.e);
    assert_true(budget_addr_take(&t, a, now, 100));
    budget_addr_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packets_burst_then_rate),
        cmocka_unit_test(test_bytes_limit_independent),
        cmocka_unit_test(test_addr_table_bounded),
    };
    return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
