/* Media datagram headers (lib/proto/media) and the application error-code
 * table (lib/proto/errcode): exact byte layout, round trips at the edges,
 * truncation, header version, unknown flags and reserved bits, the relay's
 * prepend path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "proto/errcode.h"
#include "proto/media.h"

/* The example of PROTOCOL.md §10: participant 7, stream 1, a one-packet
 * video keyframe, sequence 42, timestamp 90000. */
static const uint8_t example_r2c[16] = {0x00, 0x00, 0x00, 0x07, 0x40, 0x01, 0x0f, 0x00,
                                        0x00, 0x00, 0x00, 0x2a, 0x00, 0x01, 0x5f, 0x90};

static void test_layout(void **state)
{
    (void)state;
    struct media_hdr h = {
        .participant_id = 7,
        .stream_id = 1,
        .flags = MEDIA_F_KEYFRAME | MEDIA_F_END | MEDIA_F_VIDEO | MEDIA_F_START,
        .seq = 42,
        .timestamp = 90000,
    };
    uint8_t out[16];
    assert_int_equal(media_r2c_encode(&h, out, sizeof(out)), MEDIA_R2C_HDR_LEN);
    assert_memory_equal(out, example_r2c, 16);
    assert_int_equal(media_c2r_encode(&h, out, sizeof(out)), MEDIA_C2R_HDR_LEN);
    assert_memory_equal(out, example_r2c + 4, 12);
    /* Every field lands at its documented offset. */
    h = (struct media_hdr){0xa1b2c3d4, 0xe5, MEDIA_F_END, 0x01020304, 0xfffefdfc};
    assert_int_equal(media_r2c_encode(&h, out, sizeof(out)), 16);
    const uint8_t want[16] = {0xa1, 0xb2, 0xc3, 0xd4, 0x40, 0xe5, 0x02, 0x00,
                              0x01, 0x02, 0x03, 0x04, 0xff, 0xfe, 0xfd, 0xfc};
    assert_memory_equal(out, want, 16);
}

static void test_round_trip_edges(void **state)
{
    (void)state;
    const struct media_hdr cases[] = {
        {1, 0, 0, 0, 0},
        {UINT32_MAX, UINT8_MAX, MEDIA_F_KNOWN, UINT32_MAX, UINT32_MAX},
        {0x80000000u, 0x80, MEDIA_F_VIDEO, 0x80000000u, 1},
        {2, 3, MEDIA_F_START, 1, 0x7fffffffu},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[MEDIA_R2C_HDR_LEN + 3] = {0};
        struct media_hdr out;
        memset(&out, 0xa5, sizeof(out));
        assert_int_equal(media_c2r_encode(&cases[i], buf, sizeof(buf)), 12);
        assert_int_equal(media_c2r_decode(buf, 12, &out), 12);
        assert_int_equal(out.participant_id, 0);
        assert_int_equal(out.stream_id, cases[i].stream_id);
        assert_int_equal(out.flags, cases[i].flags);
        assert_int_equal(out.seq, cases[i].seq);
        assert_int_equal(out.timestamp, cases[i].timestamp);
        /* With a payload after it, the header length is still 12. */
        assert_int_equal(media_c2r_decode(buf, sizeof(buf), &out), 12);

        memset(&out, 0xa5, sizeof(out));
        assert_int_equal(media_r2c_encode(&cases[i], buf, sizeof(buf)), 16);
        assert_int_equal(media_r2c_decode(buf, 16, &out), 16);
        assert_memory_equal(&out.participant_id, &cases[i].participant_id, 4);
        assert_int_equal(out.stream_id, cases[i].stream_id);
        assert_int_equal(out.flags, cases[i].flags);
        assert_int_equal(out.seq, cases[i].seq);
        assert_int_equal(out.timestamp, cases[i].timestamp);
    }
}

/* Every length below the header size is truncated, from exact-size heap
 * buffers so that ASan would catch a read past the end. */
static void test_truncation(void **state)
{
    (void)state;
    struct media_hdr h = {9, 1, MEDIA_F_END, 5, 6}, out;
    uint8_t full[16];
    assert_int_equal(media_r2c_encode(&h, full, sizeof(full)), 16);
    for (size_t n = 0; n < 16; n++) {
        uint8_t *p = malloc(n ? n : 1);
        assert_non_null(p);
        memcpy(p, full, n);
        assert_int_equal(media_r2c_decode(p, n, &out), ROOST_ETRUNC);
        if (n < 12)
            assert_int_equal(media_c2r_decode(p, n, &out), ROOST_ETRUNC);
        uint8_t o[32];
        if (n < 12)
            assert_int_equal(media_relay_datagram(p, n, 1, o, sizeof(o)), ROOST_ETRUNC);
        free(p);
    }
    /* Encoders: too little room. */
    uint8_t small[16];
    assert_int_equal(media_c2r_encode(&h, small, 11), ROOST_ENOSPC);
    assert_int_equal(media_r2c_encode(&h, small, 15), ROOST_ENOSPC);
    assert_int_equal(media_r2c_encode(&h, small, 0), ROOST_ENOSPC);
}

static void test_version(void **state)
{
    (void)state;
    struct media_hdr out;
    uint8_t b[16] = {0, 0, 0, 1, 0x40};
    for (unsigned v = 0; v < 4; v++) {
        b[4] = (uint8_t)(v << 6);
        int want = v == MEDIA_HDR_VERSION ? 0 : ROOST_EUNKNOWN;
        assert_int_equal(media_c2r_decode(b + 4, 12, &out), want ? want : 12);
        assert_int_equal(media_r2c_decode(b, 16, &out), want ? want : 16);
    }
}

/* Reserved bits and unknown flags: ignored (kept in flags for the caller to
 * mask) on receive, refused by the encoders, passed through by the relay. */
static void test_reserved_and_unknown_flags(void **state)
{
    (void)state;
    struct media_hdr out;
    const uint8_t c2r[12] = {0x7f, 3, 0xf5, 0xff, 0, 0, 0, 1, 0, 0, 0, 2};
    assert_int_equal(media_c2r_decode(c2r, sizeof(c2r), &out), 12);
    assert_int_equal(out.stream_id, 3);
    assert_int_equal(out.flags, 0xf5);
    assert_int_equal(out.flags & MEDIA_F_KNOWN, MEDIA_F_KEYFRAME | MEDIA_F_VIDEO);
    assert_int_equal(out.seq, 1);
    assert_int_equal(out.timestamp, 2);

    uint8_t buf[16];
    struct media_hdr h = {1, 0, 0x10, 0, 0};
    assert_int_equal(media_c2r_encode(&h, buf, sizeof(buf)), ROOST_EINVAL);
    assert_int_equal(media_r2c_encode(&h, buf, sizeof(buf)), ROOST_EINVAL);
    /* The encoder writes reserved bits as zero. */
    h.flags = 0;
    assert_int_equal(media_c2r_encode(&h, buf, sizeof(buf)), 12);
    assert_int_equal(buf[0], 0x40);
    assert_int_equal(buf[3], 0x00);

    /* The relay copies the header byte for byte, reserved bits included. */
    uint8_t in[12 + 5];
    memcpy(in, c2r, 12);
    memcpy(in + 12, "hello", 5);
    uint8_t relayed[32];
    assert_int_equal(media_relay_datagram(in, sizeof(in), 0x01020304, relayed, sizeof(relayed)),
                     (int)sizeof(in) + 4);
    assert_memory_equal(relayed, "\x01\x02\x03\x04", 4);
    assert_memory_equal(relayed + 4, in, sizeof(in));
    assert_int_equal(media_r2c_decode(relayed, sizeof(in) + 4, &out), 16);
    assert_int_equal(out.participant_id, 0x01020304);
    assert_int_equal(out.flags, 0xf5);
    assert_memory_equal(relayed + 16, "hello", 5);
}

static void test_relay_datagram(void **state)
{
    (void)state;
    struct media_hdr h = {0, 2, MEDIA_F_START | MEDIA_F_END, 77, 88}, out;
    uint8_t in[12 + 100];
    assert_int_equal(media_c2r_encode(&h, in, sizeof(in)), 12);
    memset(in + 12, 0x5a, 100);
    uint8_t o[12 + 100 + 4];
    /* Exactly enough room, header-only datagram, and one byte short. */
    assert_int_equal(media_relay_datagram(in, sizeof(in), 42, o, sizeof(o)), (int)sizeof(o));
    assert_int_equal(media_r2c_decode(o, sizeof(o), &out), 16);
    assert_int_equal(out.participant_id, 42);
    assert_int_equal(out.stream_id, 2);
    assert_int_equal(out.seq, 77);
    assert_int_equal(out.timestamp, 88);
    assert_int_equal(media_relay_datagram(in, 12, 42, o, 16), 16);
    assert_int_equal(media_relay_datagram(in, sizeof(in), 42, o, sizeof(o) - 1), ROOST_ENOSPC);
    assert_int_equal(media_relay_datagram(in, sizeof(in), 42, o, 3), ROOST_ENOSPC);
    /* pid 0 is reserved; an unknown header version is not forwarded. */
    assert_int_equal(media_relay_datagram(in, sizeof(in), 0, o, sizeof(o)), ROOST_EINVAL);
    in[0] = 0x80;
    assert_int_equal(media_relay_datagram(in, sizeof(in), 42, o, sizeof(o)), ROOST_EUNKNOWN);
    /* Nothing larger than a QUIC datagram can be. */
    in[0] = 0x40;
    assert_int_equal(media_relay_datagram(in, (size_t)MEDIA_DATAGRAM_MAX + 1, 42, o, SIZE_MAX),
                     ROOST_ETOOBIG);
}

static void test_pid_zero(void **state)
{
    (void)state;
    struct media_hdr h = {0, 1, 0, 1, 1}, out;
    uint8_t buf[16];
    assert_int_equal(media_r2c_encode(&h, buf, sizeof(buf)), ROOST_EINVAL);
    h.participant_id = 1;
    assert_int_equal(media_r2c_encode(&h, buf, sizeof(buf)), 16);
    memset(buf, 0, 4);
    assert_int_equal(media_r2c_decode(buf, sizeof(buf), &out), ROOST_EMALFORMED);
}

static void test_errcode_table(void **state)
{
    (void)state;
    static const struct {
        uint32_t code;
        const char *name;
    } table[] = {
        {0x00, "NO_ERROR"},
        {0x01, "INTERNAL"},
        {0x02, "PROTOCOL_VIOLATION"},
        {0x03, "UNSUPPORTED_VERSION"},
        {0x04, "BAD_TOKEN"},
        {0x05, "TOKEN_EXPIRED"},
        {0x06, "TOKEN_NOT_YET_VALID"},
        {0x07, "WRONG_ROOM"},
        {0x08, "ROOM_FULL"},
        {0x09, "SERVER_FULL"},
        {0x0a, "NOT_PERMITTED"},
        {0x0b, "TOO_SLOW"},
        {0x0c, "GOING_AWAY"},
        {0x0d, "REPLACED"},
        {0x0e, "IDLE_TIMEOUT"},
        {0x0f, "ALREADY_JOINED"},
        {0x10, "NOT_JOINED"},
        {0x11, "RATE_LIMITED"},
    };
    /* The numbers are the wire contract of PROTOCOL.md §6. */
    assert_int_equal(sizeof(table) / sizeof(table[0]), PROTO_ERR_LAST + 1);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        assert_string_equal(proto_errcode_name(table[i].code), table[i].name);
    assert_int_equal(PROTO_ERR_BAD_TOKEN, 0x04);
    assert_int_equal(PROTO_ERR_TOO_SLOW, 0x0b);
    assert_int_equal(PROTO_ERR_RATE_LIMITED, 0x11);
    assert_string_equal(proto_errcode_name(PROTO_ERR_LAST + 1), "UNKNOWN");
    assert_string_equal(proto_errcode_name(UINT64_MAX), "UNKNOWN");
}

static void test_errcode_from_token(void **state)
{
    (void)state;
    assert_int_equal(proto_errcode_from_token_err(0), PROTO_ERR_NO_ERROR);
    assert_int_equal(proto_errcode_from_token_err(ROOST_EEXPIRED), PROTO_ERR_TOKEN_EXPIRED);
    assert_int_equal(proto_errcode_from_token_err(ROOST_ENOTYET), PROTO_ERR_TOKEN_NOT_YET_VALID);
    assert_int_equal(proto_errcode_from_token_err(ROOST_EWRONGROOM), PROTO_ERR_WRONG_ROOM);
    assert_int_equal(proto_errcode_from_token_err(ROOST_EACCES), PROTO_ERR_NOT_PERMITTED);
    assert_int_equal(proto_errcode_from_token_err(ROOST_ENOMEM), PROTO_ERR_INTERNAL);
    assert_int_equal(proto_errcode_from_token_err(ROOST_EBADTAG), PROTO_ERR_BAD_TOKEN);
    assert_int_equal(proto_errcode_from_token_err(ROOST_EMALFORMED), PROTO_ERR_BAD_TOKEN);
    assert_int_equal(proto_errcode_from_token_err(ROOST_EBADKEY), PROTO_ERR_BAD_TOKEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_round_trip_edges),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_reserved_and_unknown_flags),
        cmocka_unit_test(test_relay_datagram),
        cmocka_unit_test(test_pid_zero),
        cmocka_unit_test(test_errcode_table),
        cmocka_unit_test(test_errcode_from_token),
    };
    return cmocka_run_group_tests_name("proto_media", tests, NULL, NULL);
}
