/* QUIC varints (RFC 9000 §16) and control-stream framing: every length
 * class and its boundaries, non-minimal encodings, truncation, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "proto/frame.h"
#include "proto/varint.h"

/* Each length class at both ends, with the bytes RFC 9000 prescribes. */
static void test_varint_classes(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t len;
        uint8_t bytes[8];
    } cases[] = {
        {0, 1, {0x00}},
        {37, 1, {0x25}},
        {63, 1, {0x3f}},
        {64, 2, {0x40, 0x40}},
        {15293, 2, {0x7b, 0xbd}},
        {16383, 2, {0x7f, 0xff}},
        {16384, 4, {0x80, 0x00, 0x40, 0x00}},
        {494878333, 4, {0x9d, 0x7f, 0x3e, 0x7d}},
        {(UINT64_C(1) << 30) - 1, 4, {0xbf, 0xff, 0xff, 0xff}},
        {UINT64_C(1) << 30, 8, {0xc0, 0, 0, 0, 0x40, 0, 0, 0}},
        {UINT64_C(151288809941952652), 8, {0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c}},
        {VARINT_MAX, 8, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t out[8];
        assert_int_equal(varint_len(cases[i].v), cases[i].len);
        assert_int_equal(varint_encode(out, sizeof(out), cases[i].v), (int)cases[i].len);
        assert_memory_equal(out, cases[i].bytes, cases[i].len);
        uint64_t v = 0;
        assert_int_equal(varint_decode(out, cases[i].len, &v), (int)cases[i].len);
        assert_true(v == cases[i].v);
        /* Extra bytes after the varint are not consumed. */
        uint8_t longer[10] = {0};
        memcpy(longer, out, cases[i].len);
        assert_int_equal(varint_decode(longer, sizeof(longer), &v), (int)cases[i].len);
        assert_true(v == cases[i].v);
        /* Every strict prefix is truncated, and *v stays untouched. */
        for (size_t n = 0; n < cases[i].len; n++) {
            uint64_t w = 12345;
            assert_int_equal(varint_decode(out, n, &w), ROOST_ETRUNC);
            assert_true(w == 12345);
        }
        /* Too little room: ENOSPC, no partial write past cap. */
        if (cases[i].len > 1) {
            uint8_t small[8];
            memset(small, 0xee, sizeof(small));
            assert_int_equal(varint_encode(small, cases[i].len - 1, cases[i].v), ROOST_ENOSPC);
        }
    }
}

static void test_varint_out_of_range(void **state)
{
    (void)state;
    uint8_t out[8];
    assert_int_equal(varint_len(VARINT_MAX + 1), 0);
    assert_int_equal(varint_len(UINT64_MAX), 0);
    assert_int_equal(varint_encode(out, sizeof(out), VARINT_MAX + 1), ROOST_ERANGE);
    assert_int_equal(varint_encode(out, sizeof(out), UINT64_MAX), ROOST_ERANGE);
}

/* Non-minimal encodings are accepted (RFC 9000 allows them); the encoder
 * never produces them. */
static void test_varint_non_minimal(void **state)
{
    (void)state;
    const uint8_t two[] = {0x40, 0x05};
    const uint8_t four[] = {0x80, 0x00, 0x00, 0x05};
    const uint8_t eight[] = {0xc0, 0, 0, 0, 0, 0, 0, 0x05};
    uint64_t v = 0;
    assert_int_equal(varint_decode(two, sizeof(two), &v), 2);
    assert_true(v == 5);
    assert_int_equal(varint_decode(four, sizeof(four), &v), 4);
    assert_true(v == 5);
    assert_int_equal(varint_decode(eight, sizeof(eight), &v), 8);
    assert_true(v == 5);
    uint8_t out[8];
    assert_int_equal(varint_encode(out, sizeof(out), 5), 1);
    assert_int_equal(out[0], 0x05);
}

static void test_frame_header(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 63, 64, 16383, 16384};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t out[FRAME_MAX_HDR];
        int n = frame_put_header(out, sizeof(out), lens[i]);
        assert_int_equal(n, (int)varint_len(lens[i]));
        size_t hdr = 0, body = 0;
        assert_int_equal(frame_parse(out, (size_t)n, &hdr, &body), 0);
        assert_int_equal(hdr, (size_t)n);
        assert_int_equal(body, lens[i]);
        for (int k = 0; k < n; k++)
            assert_int_equal(frame_parse(out, (size_t)k, &hdr, &body), ROOST_ETRUNC);
    }
    uint8_t out[8];
    assert_int_equal(frame_put_header(out, sizeof(out), FRAME_MAX_BODY + 1), ROOST_ETOOBIG);
    assert_int_equal(frame_put_header(out, 1, 64), ROOST_ENOSPC);
    assert_int_equal(frame_put_header(out, 0, 0), ROOST_ENOSPC);
}

static void test_frame_too_big(void **state)
{
    (void)state;
    size_t hdr = 99, body = 99;
    const uint8_t just_over[] = {0x80, 0x00, 0x40, 0x01}; /* 16385 */
    assert_int_equal(frame_parse(just_over, sizeof(just_over), &hdr, &body), ROOST_ETOOBIG);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(frame_parse(huge, sizeof(huge), &hdr, &body), ROOST_ETOOBIG);
    /* The outputs are not written on failure. */
    assert_int_equal(hdr, 99);
    assert_int_equal(body, 99);
    /* A non-minimal prefix for a small body is accepted. */
    const uint8_t nonmin[] = {0x80, 0x00, 0x00, 0x07};
    assert_int_equal(frame_parse(nonmin, sizeof(nonmin), &hdr, &body), 0);
    assert_int_equal(hdr, 4);
    assert_int_equal(body, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_classes),     cmocka_unit_test(test_varint_out_of_range),
        cmocka_unit_test(test_varint_non_minimal), cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_frame_too_big),
    };
    return cmocka_run_group_tests_name("proto_varint", tests, NULL, NULL);
}
