/* Timers on fake time: order, ties, re-arm, cancel (also from callbacks),
 * arming from callbacks, and 10k random timers against a sorted reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/timer.h"

#define MAX_FIRED 20000

struct log {
    int ids[MAX_FIRED];
    uint64_t at[MAX_FIRED];
    unsigned n;
};

struct tt {
    struct timer t;
    int id;
    struct log *log;
    struct timers *ts;
    struct tt *victim;   /* cancel this one from the callback */
    struct tt *to_arm;   /* arm this one from the callback ... */
    uint64_t arm_at;     /* ... at this time */
    uint64_t rearm_self; /* re-arm self at this time (0: no) */
};

static void on_fire(struct timer *t, uint64_t now, void *arg)
{
    struct tt *x = arg;
    assert_ptr_equal(&x->t, t);
    assert_false(timer_armed(t)); /* disarmed before the callback */
    struct log *l = x->log;
    if (l->n < MAX_FIRED) {
        l->ids[l->n] = x->id;
        l->at[l->n] = now;
        l->n++;
    }
    if (x->victim)
        timer_cancel(x->ts, &x->victim->t);
    if (x->to_arm)
        assert_int_equal(timer_arm(x->ts, &x->to_arm->t, x->arm_at), 0);
    if (x->rearm_self) {
        uint64_t when = x->rearm_self;
        x->rearm_self = 0;
        assert_int_equal(timer_arm(x->ts, t, when), 0);
    }
}

static void setup_tt(struct tt *x, int id, struct log *l, struct timers *ts)
{
    memset(x, 0, sizeof(*x));
    x->id = id;
    x->log = l;
    x->ts = ts;
    timer_init(&x->t, on_fire, x);
}

static struct log lg;

static void test_order(void **state)
{
    (void)state;
    struct timers *ts;
    assert_int_equal(timers_new(&ts), 0);
    memset(&lg, 0, sizeof(lg));
    struct tt x[5];
    uint64_t when[5] = {50, 10, 40, 20, 30};
    for (int i = 0; i < 5; i++) {
        setup_tt(&x[i], i, &lg, ts);
        assert_false(timer_armed(&x[i].t));
        assert_int_equal(timer_arm(ts, &x[i].t, when[i]), 0);
        assert_true(timer_armed(&x[i].t));
    }
    assert_int_equal(timers_count(ts), 5);
    assert_int_equal(timers_next(ts), 10);
    assert_int_equal(timers_run(ts, 9), 0);
    assert_int_equal(timers_run(ts, 30), 3);
    assert_int_equal(timers_next(ts), 40);
    assert_int_equal(timers_run(ts, 1000), 2);
    assert_int_equal(timers_next(ts), TIMER_NEVER);
    int expect[5] = {1, 3, 4, 2, 0};
    assert_int_equal(lg.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(lg.ids[i], expect[i]);
    assert_int_equal(lg.at[0], 30); /* callbacks get the `now` of the run */
    timers_del(ts);
    timers_del(NULL);
}

static void test_ties(void **state)
{
    (void)state;
    struct timers *ts;
    assert_int_equal(timers_new(&ts), 0);
    memset(&lg, 0, sizeof(lg));
    struct tt x[100];
    /* Same expiry: fire in arming order, whatever the heap shape. */
    for (int i = 0; i < 100; i++) {
        setup_tt(&x[i], i, &lg, ts);
        assert_int_equal(timer_arm(ts, &x[i].t, i % 2 ? 7 : 5), 0);
    }
    assert_int_equal(timers_run(ts, 7), 100);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(lg.ids[i], 2 * i);
        assert_int_equal(lg.ids[50 + i], 2 * i + 1);
    }
    /* Re-arming counts as a new arming: x[0] goes after x[1]. */
    memset(&lg, 0, sizeof(lg));
    assert_int_equal(timer_arm(ts, &x[0].t, 100), 0);
    assert_int_equal(timer_arm(ts, &x[1].t, 100), 0);
    assert_int_equal(timer_arm(ts, &x[0].t, 100), 0);
    assert_int_equal(timers_run(ts, 100), 2);
    assert_int_equal(lg.ids[0], 1);
    assert_int_equal(lg.ids[1], 0);
    timers_del(ts);
}

static void test_rearm(void **state)
{
    (void)state;
    struct timers *ts;
    assert_int_equal(timers_new(&ts), 0);
    memset(&lg, 0, sizeof(lg));
    struct tt x[3];
    for (int i = 0; i < 3; i++) {
        setup_tt(&x[i], i, &lg, ts);
        assert_int_equal(timer_arm(ts, &x[i].t, 100 + 10 * (uint64_t)i), 0);
    }
    assert_int_equal(timer_arm(ts, &x[2].t, 50), 0);  /* earlier */
    assert_int_equal(timer_arm(ts, &x[0].t, 200), 0); /* later */
    assert_int_equal(timers_count(ts), 3);            /* moved, not duplicated */
    assert_int_equal(timers_next(ts), 50);
    assert_int_equal(timers_run(ts, 150), 2);
    assert_int_equal(lg.ids[0], 2);
    assert_int_equal(lg.ids[1], 1);
    assert_int_equal(timers_run(ts, 199), 0);
    assert_int_equal(timers_run(ts, 200), 1);
    assert_int_equal(lg.ids[2], 0);
    timers_del(ts);
}

static void test_cancel(void **state)
{
    (void)state;
    struct timers *ts;
    assert_int_equal(timers_new(&ts), 0);
    memset(&lg, 0, sizeof(lg));
    struct tt x[4];
    for (int i = 0; i < 4; i++) {
        setup_tt(&x[i], i, &lg, ts);
        assert_int_equal(timer_arm(ts, &x[i].t, 10 + (uint64_t)i), 0);
    }
    timer_cancel(ts, &x[0].t); /* the root */
    timer_cancel(ts, &x[2].t); /* a middle one */
    assert_false(timer_armed(&x[0].t));
    timer_cancel(ts, &x[0].t); /* no-op when not armed */
    assert_int_equal(timers_count(ts), 2);
    assert_int_equal(timers_next(ts), 11);
    assert_int_equal(timers_run(ts, 100), 2);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.ids[0], 1);
    assert_int_equal(lg.ids[1], 3);
    timers_del(ts);
}

static void test_callbacks_cancel_and_arm(void **state)
{
    (void)state;
    struct timers *ts;
    assert_int_equal(timers_new(&ts), 0);
    memset(&lg, 0, sizeof(lg));
    struct tt a, b, c, d, e;
    setup_tt(&a, 1, &lg, ts);
    setup_tt(&b, 2, &lg, ts);
    setup_tt(&c, 3, &lg, ts);
    setup_tt(&d, 4, &lg, ts);
    setup_tt(&e, 5, &lg, ts);
    a.victim = &b; /* a cancels b, due in the same run */
    a.to_arm = &c; /* a arms c for a time already past: fires in this run */
    a.arm_at = 5;
    d.to_arm = &e; /* d arms e for the future: not in this run */
    d.arm_at = 500;
    d.rearm_self = 300; /* d re-arms itself */
    assert_int_equal(timer_arm(ts, &a.t, 10), 0);
    assert_int_equal(timer_arm(ts, &b.t, 20), 0);
    assert_int_equal(timer_arm(ts, &d.t, 30), 0);
    assert_int_equal(timers_run(ts, 100), 3);
    assert_int_equal(lg.n, 3);
    assert_int_equal(lg.ids[0], 1);
    assert_int_equal(lg.ids[1], 3);
    assert_int_equal(lg.ids[2], 4);
    assert_false(timer_armed(&b.t));
    assert_true(timer_armed(&d.t));
    assert_true(timer_armed(&e.t));
    assert_int_equal(timers_next(ts), 300);
    assert_int_equal(timers_run(ts, 1000), 2);
    assert_int_equal(lg.ids[3], 4);
    assert_int_equal(lg.ids[4], 5);
    assert_int_equal(timers_count(ts), 0);
    timers_del(ts);
}

/* ------------------------------------------------------------ random */

#define NRAND 10000

struct ref {
    uint64_t expiry;
    uint64_t seq;
    int id;
};

static int ref_cmp(const void *pa, const void *pb)
{
    const struct ref *a = pa, *b = pb;
    if (a->expiry != b->expiry)
        return a->expiry < b->expiry ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static struct tt rx[NRAND];
static struct ref refs[NRAND];

static void test_random_vs_sorted(void **state)
{
    (void)state;
    struct timers *ts;
    assert_int_equal(timers_new(&ts), 0);
    memset(&lg, 0, sizeof(lg));
    srand(42);
    uint64_t seq = 0, expiry[NRAND], armed_seq[NRAND];
    int armed[NRAND];
    for (int i = 0; i < NRAND; i++) {
        setup_tt(&rx[i], i, &lg, ts);
        expiry[i] = (uint64_t)(rand() % 5000); /* many ties */
        armed_seq[i] = seq++;
        armed[i] = 1;
        assert_int_equal(timer_arm(ts, &rx[i].t, expiry[i]), 0);
    }
    /* Re-arm a third, cancel a tenth. */
    for (int i = 0; i < NRAND; i += 3) {
        expiry[i] = (uint64_t)(rand() % 5000);
        armed_seq[i] = seq++;
        assert_int_equal(timer_arm(ts, &rx[i].t, expiry[i]), 0);
    }
    for (int i = 0; i < NRAND; i += 10) {
        timer_cancel(ts, &rx[i].t);
        armed[i] = 0;
    }
    unsigned n = 0;
    for (int i = 0; i < NRAND; i++) {
        if (armed[i])
            refs[n++] = (struct ref){expiry[i], armed_seq[i], i};
    }
    qsort(refs, n, sizeof(refs[0]), ref_cmp);
    assert_int_equal(timers_count(ts), n);
    /* Run in steps so that partial runs are checked too. */
    unsigned fired = 0;
    for (uint64_t now = 0; now < 5000; now += 97)
        fired += timers_run(ts, now);
    fired += timers_run(ts, 5000);
    assert_int_equal(fired, n);
    assert_int_equal(lg.n, n);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(lg.ids[i], refs[i].id);
    assert_int_equal(timers_count(ts), 0);
    timers_del(ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_rearm),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_callbacks_cancel_and_arm),
        cmocka_unit_test(test_random_vs_sorted),
    };
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
