/* QUALITY summaries (lib/proto/quality): round trip at the edges, the
 * extension's byte layout, truncation on both sides, field limits, a plain
 * link report (no extension) and a body of another type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "proto/msg.h"
#include "proto/quality.h"

static const struct quality_summary example = {
    .receivers = 0x01020304,
    .worst_pid = 77,
    .loss_median = 0x0102,
    .loss_worst = 999,
    .rtt_median_us = 0x0a0b0c0d,
    .rtt_worst_us = 0xfffffffe,
};

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t body[128];
    int n = quality_summary_encode(&example, 1000, body, sizeof(body));
    assert_true(n > QUALITY_EXT_LEN);
    struct msg_quality q;
    struct quality_summary s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(quality_summary_decode(body, (size_t)n, &q, &s), 1);
    /* The v1 fields describe the worst receiver. */
    assert_int_equal(q.participant_id, 77);
    assert_int_equal(q.interval_ms, 1000);
    assert_int_equal(q.loss_permille, 999);
    assert_int_equal(q.rtt_us, 0xfffffffe);
    assert_memory_equal(&s, &example, sizeof(s));

    /* The extension: kind, then big-endian fields at fixed offsets. */
    const uint8_t *p = body + n - QUALITY_EXT_LEN;
    static const uint8_t want[QUALITY_EXT_LEN] = {
        QUALITY_EXT_SUMMARY,
        0x01,
        0x02,
        0x03,
        0x04, /* receivers */
        0x01,
        0x02, /* loss_median */
        0x03,
        0xe7, /* loss_worst = 999 */
        0x0a,
        0x0b,
        0x0c,
        0x0d, /* rtt_median_us */
        0xff,
        0xff,
        0xff,
        0xfe, /* rtt_worst_us */
    };
    assert_memory_equal(p, want, QUALITY_EXT_LEN);

    /* The limits themselves round-trip. */
    struct quality_summary edge = {.receivers = UINT32_MAX,
                                   .worst_pid = UINT32_MAX,
                                   .loss_median = QUALITY_LOSS_MAX,
                                   .loss_worst = QUALITY_LOSS_MAX,
                                   .rtt_median_us = UINT32_MAX,
                                   .rtt_worst_us = 0};
    n = quality_summary_encode(&edge, 0, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(quality_summary_decode(body, (size_t)n, &q, &s), 1);
    assert_memory_equal(&s, &edge, sizeof(s));
}

static void test_truncation(void **state)
{
    (void)state;
    uint8_t body[128];
    int n = quality_summary_encode(&example, 1000, body, sizeof(body));
    assert_true(n > 0);
    /* Encoder: every capacity short of the whole body fails, none writes
     * past cap. */
    for (int cap = 0; cap < n; cap++) {
        uint8_t small[128];
        memset(small, 0xee, sizeof(small));
        int rc = quality_summary_encode(&example, 1000, small, (size_t)cap);
        assert_true(rc < 0);
        for (size_t i = (size_t)cap; i < sizeof(small); i++)
            assert_int_equal(small[i], 0xee);
    }
    assert_int_equal(quality_summary_encode(&example, 1000, body, (size_t)n - 1), ROOST_ENOSPC);
    /* Decoder: a body cut inside the v1 fields is an error; cut inside the
     * extension it is a plain link report (the extension is optional). */
    int v1 = n - QUALITY_EXT_LEN;
    for (int len = 0; len < n; len++) {
        struct msg_quality q;
        struct quality_summary s;
        int rc = quality_summary_decode(body, (size_t)len, &q, &s);
        if (len < v1)
            assert_true(rc < 0);
        else
            assert_int_equal(rc, 0);
    }
}

static void test_limits(void **state)
{
    (void)state;
    uint8_t body[128];
    struct quality_summary s = example;
    s.receivers = 0;
    assert_int_equal(quality_summary_encode(&s, 1000, body, sizeof(body)), ROOST_EINVAL);
    s = example;
    s.worst_pid = 0;
    assert_int_equal(quality_summary_encode(&s, 1000, body, sizeof(body)), ROOST_EINVAL);
    s = example;
    s.loss_worst = QUALITY_LOSS_MAX + 1;
    assert_int_equal(quality_summary_encode(&s, 1000, body, sizeof(body)), ROOST_EINVAL);
    s = example;
    s.loss_median = QUALITY_LOSS_MAX + 1;
    assert_int_equal(quality_summary_encode(&s, 1000, body, sizeof(body)), ROOST_EINVAL);
}

/* A QUALITY about the recipient's own link has no extension; another
 * message type is refused. */
static void test_link_report_and_other_type(void **state)
{
    (void)state;
    struct msg m;
    memset(&m, 0, sizeof(m.type) + sizeof(m.u.quality));
    m.type = MSG_QUALITY;
    m.u.quality = (struct msg_quality){.participant_id = 5,
                                       .interval_ms = 1000,
                                       .rtt_us = 20000,
                                       .loss_permille = 12,
                                       .dropped = 3,
                                       .est_kbps = 800};
    uint8_t body[128];
    int n = msg_encode_body(&m, body, sizeof(body));
    assert_true(n > 0);
    struct msg_quality q;
    struct quality_summary s = {.receivers = 42};
    assert_int_equal(quality_summary_decode(body, (size_t)n, &q, &s), 0);
    assert_int_equal(q.participant_id, 5);
    assert_int_equal(q.loss_permille, 12);
    assert_int_equal(q.est_kbps, 800);
    assert_int_equal(s.receivers, 42); /* untouched */
    /* Trailing bytes that are not a summary extension are ignored. */
    body[n] = 0x7f;
    memset(body + n + 1, 0, QUALITY_EXT_LEN);
    assert_int_equal(quality_summary_decode(body, (size_t)n + QUALITY_EXT_LEN, &q, &s), 0);

    memset(&m, 0, sizeof(m));
    m.type = MSG_LEAVE;
    n = msg_encode_body(&m, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(quality_summary_decode(body, (size_t)n, &q, &s), ROOST_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_link_report_and_other_type),
    };
    return cmocka_run_group_tests_name("proto_quality", tests, NULL, NULL);
}
