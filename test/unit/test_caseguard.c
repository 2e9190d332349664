/* The harness's containment of a failed case (test/common/caseguard.h):
 * what a case registered and left is stopped by its teardown, and the
 * buffers it held come back; what a group set-up registered, or what the
 * case stopped itself, is left alone. The teardown is called here directly,
 * as cmocka calls it after a case that failed (an assertion's longjmp
 * skipped the case's own clean-up). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/buf.h"
#include "../common/caseguard.h"
#include "../common/echo_app.h"
#include "../common/participant.h"

struct fake {
    int id;
    unsigned *released;
};

static int released_id;

static void fake_release(void *copy)
{
    struct fake *f = copy;
    (*f->released)++;
    released_id = f->id;
}

static void buf_release(void *copy)
{
    buf_unref(*(struct buf **)copy);
}

static void test_case_items_released_group_items_kept(void **state)
{
    (void)state;
    unsigned n0 = caseguard_held(), group_rel = 0, case_rel = 0, done_rel = 0;
    int gkey, ckey, dkey;
    /* a group set-up's: outside any case */
    struct fake g = {1, &group_rel};
    caseguard_hold(&gkey, fake_release, &g, sizeof(g));
    assert_int_equal(caseguard_setup(NULL), 0);
    {
        /* copied: the case's frame may be gone when the teardown runs */
        struct fake c = {2, &case_rel};
        caseguard_hold(&ckey, fake_release, &c, sizeof(c));
        memset(&c, 0, sizeof(c));
    }
    struct fake d = {3, &done_rel};
    caseguard_hold(&dkey, fake_release, &d, sizeof(d));
    caseguard_drop(&dkey); /* stopped by the case itself */
    unsigned r0 = caseguard_reaped();
    assert_int_equal(caseguard_teardown(NULL), 0);
    assert_int_equal(case_rel, 1);
    assert_int_equal(released_id, 2);
    assert_int_equal(done_rel, 0);
    assert_int_equal(group_rel, 0);
    assert_int_equal(caseguard_reaped(), r0 + 1);
    assert_int_equal(caseguard_held(), n0 + 1);
    /* the next case's teardown leaves the group's alone too */
    assert_int_equal(caseguard_setup(NULL), 0);
    assert_int_equal(caseguard_teardown(NULL), 0);
    assert_int_equal(group_rel, 0);
    caseguard_drop(&gkey);
    assert_int_equal(caseguard_held(), n0);
}

/* Buffers a failed case held come back at its teardown: the next case's
 * baseline is what it was before. */
static void test_buffers_contained(void **state)
{
    (void)state;
    int64_t before = buf_live();
    assert_int_equal(caseguard_setup(NULL), 0);
    assert_int_equal(caseguard_buf_base(), before);
    struct buf *b = buf_new(64);
    assert_non_null(b);
    caseguard_hold(b, buf_release, &b, sizeof(b));
    assert_int_equal(buf_live(), before + 1);
    assert_int_equal(caseguard_teardown(NULL), 0);
    assert_int_equal(buf_live(), before);
    assert_int_equal(caseguard_buf_base(), 0); /* outside a case */
}

/* A relay and an echo server a case started and left running (it failed
 * before its test_relay_stop / echo_server_stop) are stopped by the
 * teardown; stopped by the case, they are not stopped again. */
static void test_relay_and_server_stopped(void **state)
{
    (void)state;
    unsigned n0 = caseguard_held();
    int64_t before = buf_live();
    assert_int_equal(caseguard_setup(NULL), 0);
    struct test_relay tr, kept;
    struct relay_config cfg = {.n_workers = 1};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct relay_config cfg2 = {.n_workers = 1};
    assert_int_equal(test_relay_start(&kept, &cfg2), 0);
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    assert_int_equal(caseguard_held(), n0 + 3);
    test_relay_stop(&kept);
    assert_int_equal(caseguard_held(), n0 + 2);
    memset(&tr, 0, sizeof(tr)); /* as a case's frame after the longjmp */
    unsigned r0 = caseguard_reaped();
    assert_int_equal(caseguard_teardown(NULL), 0);
    assert_int_equal(caseguard_reaped(), r0 + 2);
    assert_int_equal(caseguard_held(), n0);
    assert_int_equal(buf_live(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_items_released_group_items_kept),
        cmocka_unit_test(test_buffers_contained),
        cmocka_unit_test(test_relay_and_server_stopped),
    };
    return cmocka_run_group_tests_name("caseguard", tests, NULL, NULL);
}
