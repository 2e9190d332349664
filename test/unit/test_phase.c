/* bench/phase.c: where each speaker's send slots fall in the interval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bench/phase.c"

#define MS 1000000ULL

/* Every speaker of a thread gets its own slot in [0, interval): the
 * thread's sends stay evenly spread in both modes. */
static void check_bijection(uint32_t rooms, uint32_t speakers, bool packed)
{
    const uint64_t iv = 20 * MS;
    uint32_t n = rooms * speakers;
    bool seen[256];
    assert_true(n <= 256);
    memset(seen, 0, sizeof(seen));
    for (uint32_t r = 0; r < rooms; r++)
        for (uint32_t m = 0; m < speakers; m++) {
            uint64_t off = phase_offset(iv, rooms, speakers, r, m, packed);
            assert_true(off < iv);
            uint64_t slot = (off * n + iv - 1) / iv; /* off = floor(iv * slot / n) */
            assert_false(seen[slot]);
            seen[slot] = true;
        }
}

static void test_all_slots_distinct(void **state)
{
    (void)state;
    check_bijection(10, 5, false);
    check_bijection(10, 5, true);
    check_bijection(7, 3, false);
    check_bijection(1, 5, false);
    check_bijection(50, 1, true);
}

/* spread: one room's members are interval / speakers apart, so each one
 * hears the others at different moments of its own interval. */
static void test_spread_room(void **state)
{
    (void)state;
    const uint64_t iv = 20 * MS;
    for (uint32_t m = 1; m < 5; m++) {
        uint64_t a = phase_offset(iv, 10, 5, 3, m - 1, false);
        uint64_t b = phase_offset(iv, 10, 5, 3, m, false);
        assert_int_equal(b - a, iv / 5);
    }
}

/* packed (the bench before session 6): a room's members one after another,
 * interval / (rooms * speakers) apart: one burst per room. */
static void test_packed_room(void **state)
{
    (void)state;
    const uint64_t iv = 20 * MS;
    for (uint32_t m = 1; m < 5; m++) {
        uint64_t a = phase_offset(iv, 10, 5, 3, m - 1, true);
        uint64_t b = phase_offset(iv, 10, 5, 3, m, true);
        assert_int_equal(b - a, iv / 50);
    }
}

static void test_out_of_range(void **state)
{
    (void)state;
    assert_int_equal(phase_offset(20 * MS, 0, 5, 0, 0, false), 0);
    assert_int_equal(phase_offset(20 * MS, 4, 0, 0, 0, false), 0);
    assert_int_equal(phase_offset(20 * MS, 4, 5, 4, 0, false), 0);
    assert_int_equal(phase_offset(20 * MS, 4, 5, 0, 5, true), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_slots_distinct),
        cmocka_unit_test(test_spread_room),
        cmocka_unit_test(test_packed_room),
        cmocka_unit_test(test_out_of_range),
    };
    return cmocka_run_group_tests_name("phase", tests, NULL, NULL);
}
