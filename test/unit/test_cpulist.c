/* CPU lists (lib/core/cpulist): single CPUs, ranges, duplicates kept as
 * written, the CPU_SETSIZE and `max` bounds, garbage and the empty list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>
#include <stdio.h>
#include <cmocka.h>

#include "core/cpulist.h"
#include "core/error.h"

#define MAX 8

static int parse(const char *s, int *cpus, unsigned *n)
{
    return cpulist_parse(s, cpus, MAX, n);
}

static void test_ranges(void **state)
{
    (void)state;
    int c[MAX];
    unsigned n = 99;
    assert_int_equal(parse("3", c, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0], 3);

    assert_int_equal(parse("0,2-4,7", c, &n), 0);
    assert_int_equal(n, 5);
    int want[] = {0, 2, 3, 4, 7};
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(c[i], want[i]);

    assert_int_equal(parse("5-5", c, &n), 0); /* one-CPU range */
    assert_int_equal(n, 1);
    assert_int_equal(c[0], 5);

    assert_int_equal(parse("6,1", c, &n), 0); /* order as written */
    assert_int_equal(c[0], 6);
    assert_int_equal(c[1], 1);

    assert_int_equal(parse("1,", c, &n), 0); /* one trailing comma */
    assert_int_equal(n, 1);
}

static void test_duplicates_kept(void **state)
{
    (void)state;
    int c[MAX];
    unsigned n = 0;
    assert_int_equal(parse("1,1,0-1", c, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(c[0], 1);
    assert_int_equal(c[1], 1);
    assert_int_equal(c[2], 0);
    assert_int_equal(c[3], 1);
}

static void test_bounds(void **state)
{
    (void)state;
    int c[MAX];
    unsigned n = 7;
    char s[64];
    assert_int_equal(parse("0-7", c, &n), 0);
    assert_int_equal(n, MAX);
    assert_int_equal(parse("0-8", c, &n), ROOST_ERANGE); /* one past max */
    assert_int_equal(n, 0);
    assert_int_equal(parse("0-3,4-7,0", c, &n), ROOST_ERANGE);

    snprintf(s, sizeof(s), "%d", CPU_SETSIZE - 1);
    assert_int_equal(parse(s, c, &n), 0);
    assert_int_equal(c[0], CPU_SETSIZE - 1);
    snprintf(s, sizeof(s), "%d", CPU_SETSIZE);
    assert_int_equal(parse(s, c, &n), ROOST_EINVAL);
    snprintf(s, sizeof(s), "0-%d", CPU_SETSIZE);
    assert_int_equal(parse(s, c, &n), ROOST_EINVAL); /* range end checked first */
    assert_int_equal(parse("99999999999999999999999", c, &n), ROOST_EINVAL);
    assert_int_equal(parse("-1", c, &n), ROOST_EINVAL);

    /* max 0: any CPU is one too many. */
    assert_int_equal(cpulist_parse("0", c, 0, &n), ROOST_ERANGE);
}

static void test_garbage(void **state)
{
    (void)state;
    int c[MAX];
    unsigned n = 3;
    const char *bad[] = {"x",    "1x",  "1-",    "-",   "3-1", ",",   ",1",
                         "1,,2", "1;2", "1-2-3", "1 2", "0x1", "1.5", "1-x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 3;
        assert_int_equal(parse(bad[i], c, &n), ROOST_EINVAL);
        assert_int_equal(n, 0);
    }
}

static void test_empty(void **state)
{
    (void)state;
    int c[MAX];
    unsigned n = 3;
    assert_int_equal(parse("", c, &n), ROOST_EINVAL);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges), cmocka_unit_test(test_duplicates_kept),
        cmocka_unit_test(test_bounds), cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests_name("cpulist", tests, NULL, NULL);
}
