/* Placement (lib/cluster/dirplace): the home while it has capacity, else
 * the least-filled relay with capacity (participants or CPU, whichever is
 * higher; ties by id), ROOST_EFULL when none has. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/dirplace.h"
#include "core/error.h"

static struct dir_relay rel(const char *id, uint32_t part, uint32_t max, uint32_t cpu, bool acc)
{
    struct dir_relay r = {.ttl_ms = 1000};
    strcpy(r.id, id);
    strcpy(r.addr, "127.0.0.1:1");
    r.load = (struct dir_load){
        .participants = part, .max_participants = max, .cpu_permille = cpu, .accepting = acc};
    return r;
}

static void test_capacity_fill(void **state)
{
    (void)state;
    struct dir_relay a = rel("a", 10, 100, 50, true);
    assert_true(dirplace_has_capacity(&a.load));
    assert_int_equal(dirplace_fill(&a.load), 100);
    a.load.cpu_permille = 700;
    assert_int_equal(dirplace_fill(&a.load), 700);
    a.load.participants = 100;
    assert_false(dirplace_has_capacity(&a.load));
    assert_int_equal(dirplace_fill(&a.load), 1000);
    a.load.max_participants = 0;
    assert_false(dirplace_has_capacity(&a.load));
    assert_int_equal(dirplace_fill(&a.load), 1000);
    struct dir_relay b = rel("b", 0, 10, 0, false);
    assert_false(dirplace_has_capacity(&b.load));
    b.load.cpu_permille = 5000;
    b.load.accepting = true;
    assert_int_equal(dirplace_fill(&b.load), 1000);
}

static void test_choose(void **state)
{
    (void)state;
    struct dir_relay r[4] = {
        rel("c", 50, 100, 100, true),
        rel("a", 10, 100, 100, true),
        rel("b", 10, 100, 100, true),
        rel("d", 5, 100, 900, true),
    };
    bool home = true;
    /* No home: least filled; a and b tie at 100 permille, a wins by id. */
    assert_int_equal(dirplace_choose(r, 4, NULL, &home), 1);
    assert_false(home);
    /* Home with capacity: the home, even if fuller. */
    assert_int_equal(dirplace_choose(r, 4, "c", &home), 0);
    assert_true(home);
    /* Home full: the least filled other. */
    r[0].load.accepting = false;
    assert_int_equal(dirplace_choose(r, 4, "c", &home), 1);
    assert_false(home);
    /* Home not registered (dead): least filled. */
    assert_int_equal(dirplace_choose(r, 4, "zz", &home), 1);
    assert_false(home);
    /* CPU counts: d has few participants but a busy worker. */
    r[1].load.accepting = false;
    r[2].load.participants = 95;
    assert_int_equal(dirplace_choose(r, 4, NULL, &home), 3);
    /* Nobody accepts. */
    for (int i = 0; i < 4; i++)
        r[i].load.accepting = false;
    assert_int_equal(dirplace_choose(r, 4, "c", &home), ROOST_EFULL);
    assert_int_equal(dirplace_choose(r, 0, NULL, &home), ROOST_EFULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_fill),
        cmocka_unit_test(test_choose),
    };
    return cmocka_run_group_tests_name("cluster_dirplace", tests, NULL, NULL);
}
