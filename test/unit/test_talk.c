/* The talk-spurt model: disabled means always speech; TALKING -> SILENT and
 * SILENT -> TALKING transitions happen with the configured mean durations;
 * DTX frames open each pause and recur at the DTX interval; no DTX frames
 * when DTX is off; the sequence depends only on the seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "client/talk.h"
#include "core/error.h"

#define FRAME_NS 20000000ull

static struct talk_config on_cfg(void)
{
    return (struct talk_config){.enabled = true, .frame_ns = FRAME_NS};
}

static void test_rejects_zero_frame(void **state)
{
    (void)state;
    struct talk t;
    struct talk_config c = {.enabled = true};
    assert_int_equal(talk_init(&t, &c, 1), ROOST_EINVAL);
}

static void test_disabled_always_speaks(void **state)
{
    (void)state;
    struct talk t;
    struct talk_config c = {.enabled = false, .frame_ns = FRAME_NS};
    assert_int_equal(talk_init(&t, &c, 7), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(talk_next(&t), TALK_SPEECH);
    assert_true(talk_is_talking(&t));
}

/* Walks n frames and measures spurts, pauses and the DTX cadence. */
struct walk {
    uint64_t speech, dtx, silent;
    uint64_t spurts, pauses; /* completed runs */
    uint64_t spurt_frames, pause_frames;
    bool dtx_cadence_ok;
    bool pause_starts_with_dtx;
};

static void walk(struct talk *t, uint64_t n, uint32_t dtx_every, struct walk *w)
{
    *w = (struct walk){.dtx_cadence_ok = true, .pause_starts_with_dtx = true};
    int prev = -1;
    uint64_t run = 0, in_pause = 0;
    for (uint64_t i = 0; i < n; i++) {
        enum talk_frame f = talk_next(t);
        int talking = f == TALK_SPEECH;
        if (f == TALK_SPEECH)
            w->speech++;
        else if (f == TALK_DTX)
            w->dtx++;
        else
            w->silent++;
        if (prev != -1 && talking != prev) {
            /* A transition: close the previous run (the first run may
             * have started before frame 0, so it is not counted). */
            if (w->speech + w->dtx + w->silent > run + 1) {
                if (prev) {
                    w->spurts++;
                    w->spurt_frames += run;
                } else {
                    w->pauses++;
                    w->pause_frames += run;
                }
            }
            run = 0;
            in_pause = 0;
            if (!talking && f != TALK_DTX && dtx_every)
                w->pause_starts_with_dtx = false;
        }
        if (!talking) {
            bool want = dtx_every && in_pause % dtx_every == 0;
            if ((f == TALK_DTX) != want)
                w->dtx_cadence_ok = false;
            in_pause++;
        }
        run++;
        prev = talking;
    }
}

static void test_transitions_and_means(void **state)
{
    (void)state;
    struct talk t;
    struct talk_config c = on_cfg();
    assert_int_equal(talk_init(&t, &c, 42), 0);
    struct walk w;
    walk(&t, 500000, 20, &w); /* ~2.8 hours of 20 ms frames */
    /* Both transitions happen, many times. */
    assert_true(w.spurts > 1000);
    assert_true(w.pauses > 1000);
    /* Mean spurt 1 s = 50 frames, mean pause 1.5 s = 75 frames (±10 %). */
    double ms = (double)w.spurt_frames / w.spurts, mp = (double)w.pause_frames / w.pauses;
    assert_true(fabs(ms - 50) < 5);
    assert_true(fabs(mp - 75) < 7.5);
    /* Talking share about 1 / 2.5. */
    double share = (double)w.speech / 500000.0;
    assert_true(fabs(share - 0.4) < 0.03);
    /* DTX: one at the start of each pause, then every 400 ms (20 frames). */
    assert_true(w.dtx_cadence_ok);
    assert_true(w.pause_starts_with_dtx);
    assert_true(w.dtx > w.pauses);
}

static void test_custom_means(void **state)
{
    (void)state;
    struct talk t;
    struct talk_config c = on_cfg();
    c.mean_talk_ns = 200000000ull;    /* 10 frames */
    c.mean_silence_ns = 600000000ull; /* 30 frames */
    c.dtx_interval_ns = 100000000ull; /* every 5 frames */
    assert_int_equal(talk_init(&t, &c, 3), 0);
    struct walk w;
    walk(&t, 400000, 5, &w);
    assert_true(fabs((double)w.spurt_frames / w.spurts - 10) < 1.5);
    assert_true(fabs((double)w.pause_frames / w.pauses - 30) < 3);
    assert_true(w.dtx_cadence_ok);
}

static void test_no_dtx(void **state)
{
    (void)state;
    struct talk t;
    struct talk_config c = on_cfg();
    c.dtx_interval_ns = UINT64_MAX;
    assert_int_equal(talk_init(&t, &c, 9), 0);
    struct walk w;
    walk(&t, 100000, 0, &w);
    assert_int_equal(w.dtx, 0);
    assert_true(w.silent > 0);
    assert_true(w.dtx_cadence_ok);
}

static void test_seed_determines_sequence(void **state)
{
    (void)state;
    struct talk a, b, c;
    struct talk_config cfg = on_cfg();
    talk_init(&a, &cfg, 1234);
    talk_init(&b, &cfg, 1234);
    talk_init(&c, &cfg, 1235);
    int differ = 0;
    for (int i = 0; i < 10000; i++) {
        enum talk_frame fa = talk_next(&a);
        assert_int_equal(fa, talk_next(&b));
        differ += fa != talk_next(&c);
    }
    assert_true(differ > 100);
}

static void test_state_query_follows_frames(void **state)
{
    (void)state;
    struct talk t;
    struct talk_config c = on_cfg();
    talk_init(&t, &c, 5);
    for (int i = 0; i < 10000; i++) {
        enum talk_frame f = talk_next(&t);
        assert_int_equal(talk_is_talking(&t), f == TALK_SPEECH);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_zero_frame),
        cmocka_unit_test(test_disabled_always_speaks),
        cmocka_unit_test(test_transitions_and_means),
        cmocka_unit_test(test_custom_means),
        cmocka_unit_test(test_no_dtx),
        cmocka_unit_test(test_seed_determines_sequence),
        cmocka_unit_test(test_state_query_follows_frames),
    };
    return cmocka_run_group_tests_name("talk", tests, NULL, NULL);
}
