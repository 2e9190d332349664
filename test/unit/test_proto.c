/* Control-message codec (lib/proto/msg): round trips of every message with
 * minimum, maximum and edge values; every truncation rejected; oversized
 * fields and counts rejected; invalid values rejected by both decoder and
 * encoder; unknown types and trailing bytes handled as PROTOCOL.md §7 says;
 * golden bytes of the spec's examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "proto/errcode.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/varint.h"

#define STR(s) ((struct msg_str){(const uint8_t *)(s), sizeof(s) - 1})
#define EMPTY ((struct msg_str){NULL, 0})

/* Strings at their limits, in multi-byte UTF-8 where the field is UTF-8. */
static uint8_t name64[DISPLAY_NAME_MAX];  /* 32 x U+00E9 */
static uint8_t room64[ROOM_ID_MAX];       /* 16 x U+1F600 */
static uint8_t token1024[JOIN_TOKEN_MAX]; /* every printable ASCII byte */
static uint8_t text256[TEXT_MAX];         /* 85 x U+20AC + 'x' */
static uint8_t ascii256[TEXT_MAX];        /* printable ASCII */
static uint8_t big[JOIN_TOKEN_MAX + 2];   /* one past any limit */

static struct msg_str view(const uint8_t *p, size_t n)
{
    return (struct msg_str){p, n};
}

static void fill_strings(void)
{
    for (size_t i = 0; i < sizeof(name64); i += 2) {
        name64[i] = 0xc3;
        name64[i + 1] = 0xa9;
    }
    for (size_t i = 0; i < sizeof(room64); i += 4)
        memcpy(room64 + i, "\xf0\x9f\x98\x80", 4);
    for (size_t i = 0; i < sizeof(token1024); i++)
        token1024[i] = (uint8_t)(0x20 + i % 95);
    for (size_t i = 0; i + 3 <= sizeof(text256); i += 3)
        memcpy(text256 + i, "\xe2\x82\xac", 3);
    text256[sizeof(text256) - 1] = 'x';
    for (size_t i = 0; i < sizeof(ascii256); i++)
        ascii256[i] = (uint8_t)(0x20 + (i * 7) % 95);
    memset(big, 'a', sizeof(big));
}

/* ------------------------------------------------------------ samples */

#define MAX_SAMPLES 40
static struct msg samples[MAX_SAMPLES];
static size_t n_samples;

static struct msg *add(uint64_t type)
{
    assert_true(n_samples < MAX_SAMPLES);
    struct msg *m = &samples[n_samples++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    return m;
}

static void build_samples(void)
{
    struct msg *m;
    n_samples = 0;

    m = add(MSG_HELLO); /* minimum */
    m->u.hello = (struct msg_hello){1, 1, EMPTY};
    m = add(MSG_HELLO); /* maximum */
    m->u.hello = (struct msg_hello){UINT16_MAX, UINT16_MAX, view(name64, CLIENT_NAME_MAX)};
    m = add(MSG_HELLO);
    m->u.hello = (struct msg_hello){1, 7, STR("roost-cli/0.1")};

    m = add(MSG_WELCOME);
    m->u.welcome = (struct msg_welcome){1, 1, 0, WELCOME_MIN_DATAGRAM, 0, 1, EMPTY};
    m = add(MSG_WELCOME);
    m->u.welcome = (struct msg_welcome){UINT16_MAX,
                                        UINT32_MAX,
                                        UINT32_MAX,
                                        UINT16_MAX,
                                        UINT8_MAX,
                                        UINT32_MAX,
                                        view(name64, SERVER_NAME_MAX)};

    m = add(MSG_JOIN);
    m->u.join = (struct msg_join){STR("r"), EMPTY, EMPTY};
    m = add(MSG_JOIN);
    m->u.join = (struct msg_join){view(room64, ROOM_ID_MAX), view(token1024, JOIN_TOKEN_MAX),
                                  view(name64, DISPLAY_NAME_MAX)};

    m = add(MSG_JOINED); /* empty room */
    m->u.joined.room_id = STR("a");
    m = add(MSG_JOINED); /* full first chunk of a big room, every field at its maximum */
    m->u.joined.room_id = view(room64, ROOM_ID_MAX);
    m->u.joined.permissions = 0xff;
    m->u.joined.flags = MSG_JOINED_MORE | 0x80;
    m->u.joined.member_total = UINT32_MAX;
    m->u.joined.n_members = JOINED_MAX_MEMBERS;
    for (uint32_t i = 0; i < JOINED_MAX_MEMBERS; i++)
        m->u.joined.members[i] = (struct msg_member){i == 0 ? UINT32_MAX : i, (uint8_t)i,
                                                     view(name64, DISPLAY_NAME_MAX)};
    m = add(MSG_JOINED); /* a few, with empty names */
    m->u.joined.room_id = STR("lobby");
    m->u.joined.permissions = MSG_PERM_PUBLISH | MSG_PERM_SUBSCRIBE;
    m->u.joined.member_total = 3;
    m->u.joined.n_members = 3;
    m->u.joined.members[0] = (struct msg_member){1, MSG_MEMBER_PUBLISHER, STR("ann")};
    m->u.joined.members[1] = (struct msg_member){2, 0, EMPTY};
    m->u.joined.members[2] = (struct msg_member){0x10000, 0, STR("\xe4\xb8\xad")};

    m = add(MSG_JOIN_REJECTED);
    m->u.join_rejected = (struct msg_join_rejected){PROTO_ERR_NO_ERROR, 0, EMPTY};
    m = add(MSG_JOIN_REJECTED);
    m->u.join_rejected =
        (struct msg_join_rejected){UINT32_MAX, UINT32_MAX, view(text256, TEXT_MAX)};
    m = add(MSG_JOIN_REJECTED);
    m->u.join_rejected = (struct msg_join_rejected){PROTO_ERR_ROOM_FULL, 5000, STR("full")};

    add(MSG_LEAVE);

    m = add(MSG_PARTICIPANT_EVENTS); /* empty batch that only ends the sync */
    m->u.events.flags = MSG_EVENTS_SYNC_DONE;
    m = add(MSG_PARTICIPANT_EVENTS); /* maximum: all JOINs with longest names */
    m->u.events.flags = 0xff;
    m->u.events.n_events = EVENTS_MAX;
    for (uint32_t i = 0; i < EVENTS_MAX; i++)
        m->u.events.events[i] =
            (struct msg_event){MSG_EV_JOIN, UINT32_MAX - i, 0xff, view(name64, DISPLAY_NAME_MAX)};
    m = add(MSG_PARTICIPANT_EVENTS); /* maximum count of LEAVEs */
    m->u.events.n_events = EVENTS_MAX;
    for (uint32_t i = 0; i < EVENTS_MAX; i++)
        m->u.events.events[i] = (struct msg_event){MSG_EV_LEAVE, i + 1, 0, EMPTY};
    m = add(MSG_PARTICIPANT_EVENTS); /* mixed */
    m->u.events.n_events = 3;
    m->u.events.events[0] = (struct msg_event){MSG_EV_JOIN, 5, MSG_MEMBER_PUBLISHER, STR("e")};
    m->u.events.events[1] = (struct msg_event){MSG_EV_LEAVE, 6, 0, EMPTY};
    m->u.events.events[2] = (struct msg_event){MSG_EV_JOIN, 7, 0, EMPTY};

    m = add(MSG_KEYFRAME_REQUEST);
    m->u.keyframe_request = (struct msg_keyframe_request){1, 0};
    m = add(MSG_KEYFRAME_REQUEST);
    m->u.keyframe_request = (struct msg_keyframe_request){UINT32_MAX, UINT8_MAX};

    m = add(MSG_QUALITY);
    m->u.quality = (struct msg_quality){1, 0, 0, 0, 0, 0, 0};
    m = add(MSG_QUALITY);
    m->u.quality = (struct msg_quality){UINT32_MAX,       UINT32_MAX, UINT32_MAX, UINT32_MAX,
                                        QUALITY_LOSS_MAX, UINT32_MAX, UINT32_MAX};

    m = add(MSG_ERROR);
    m->u.error = (struct msg_error){0, 0, EMPTY};
    m = add(MSG_ERROR);
    m->u.error = (struct msg_error){UINT32_MAX, VARINT_MAX, view(text256, TEXT_MAX)};
    m = add(MSG_ERROR);
    m->u.error = (struct msg_error){PROTO_ERR_NOT_JOINED, MSG_LEAVE, STR("not joined")};

    m = add(MSG_GOAWAY);
    m->u.goaway = (struct msg_goaway){0, EMPTY};
    m = add(MSG_GOAWAY);
    m->u.goaway = (struct msg_goaway){UINT32_MAX, view(ascii256, TEXT_MAX)};
    m = add(MSG_GOAWAY);
    m->u.goaway = (struct msg_goaway){30000, STR("[::1]:4433")};
}

static int setup(void **state)
{
    (void)state;
    fill_strings();
    build_samples();
    return 0;
}

/* Decodes from an exact-size heap copy so that ASan sees any over-read. */
static int decode_exact(const uint8_t *buf, size_t len, struct msg *m, size_t *consumed, bool frame)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    int rc = frame ? msg_decode_frame(copy, len, m, consumed) : msg_decode(copy, len, m);
    free(copy);
    return rc; /* views into copy are dead now: callers only use rc */
}

static uint8_t wire[FRAME_MAX_HDR + FRAME_MAX_BODY + 64];

/* ------------------------------------------------------------ tests */

static void test_every_type_sampled(void **state)
{
    (void)state;
    for (uint64_t t = 1; t <= MSG_TYPE_LAST; t++) {
        size_t seen = 0;
        for (size_t i = 0; i < n_samples; i++)
            seen += samples[i].type == t;
        assert_true(seen >= (t == MSG_LEAVE ? 1u : 2u));
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        const struct msg *m = &samples[i];
        int n = msg_encode(m, wire, sizeof(wire));
        assert_true(n > 0);
        assert_int_equal(msg_encoded_len(m), n);
        assert_true((size_t)n <= FRAME_MAX_HDR + FRAME_MAX_BODY);
        static struct msg out;
        memset(&out, 0xa5, sizeof(out));
        size_t consumed = 0;
        assert_int_equal(msg_decode_frame(wire, (size_t)n, &out, &consumed), 0);
        assert_int_equal(consumed, (size_t)n);
        assert_true(msg_equal(m, &out));
        assert_true(msg_equal(&out, m));
        /* The body alone is the frame minus its prefix. */
        static uint8_t body[FRAME_MAX_BODY];
        size_t hdr, blen;
        assert_int_equal(frame_parse(wire, (size_t)n, &hdr, &blen), 0);
        assert_int_equal(msg_encode_body(m, body, sizeof(body)), (int)blen);
        assert_memory_equal(body, wire + hdr, blen);
        assert_int_equal(msg_encode_body(m, body, blen - 1), ROOST_ENOSPC);
        /* Encoding the decoded message gives the same bytes. */
        static uint8_t again[sizeof(wire)];
        assert_int_equal(msg_encode(&out, again, sizeof(again)), n);
        assert_memory_equal(wire, again, (size_t)n);
    }
}

/* Decoded strings are views into the input, not copies. */
static void test_strings_are_views(void **state)
{
    (void)state;
    struct msg m = {.type = MSG_JOIN};
    m.u.join = (struct msg_join){STR("room"), STR("tok"), STR("me")};
    int n = msg_encode(&m, wire, sizeof(wire));
    assert_true(n > 0);
    struct msg out;
    size_t consumed;
    assert_int_equal(msg_decode_frame(wire, (size_t)n, &out, &consumed), 0);
    assert_ptr_equal(out.u.join.room_id.ptr, wire + 3);
    assert_ptr_equal(out.u.join.token.ptr, wire + 8);
    assert_ptr_equal(out.u.join.display_name.ptr, wire + 12);
    /* Empty strings come back as (NULL, 0). */
    m.u.join = (struct msg_join){STR("r"), EMPTY, EMPTY};
    n = msg_encode(&m, wire, sizeof(wire));
    assert_int_equal(msg_decode_frame(wire, (size_t)n, &out, &consumed), 0);
    assert_null(out.u.join.token.ptr);
    assert_int_equal(out.u.join.token.len, 0);
}

/* Every strict prefix of every valid frame, and of its body, is rejected as
 * truncated, from exact-size buffers. */
static void test_every_prefix_rejected(void **state)
{
    (void)state;
    static struct msg out;
    for (size_t i = 0; i < n_samples; i++) {
        int n = msg_encode(&samples[i], wire, sizeof(wire));
        assert_true(n > 0);
        size_t hdr, body;
        assert_int_equal(frame_parse(wire, (size_t)n, &hdr, &body), 0);
        assert_int_equal(hdr + body, (size_t)n);
        for (size_t k = 0; k < (size_t)n; k++) {
            size_t consumed = 777;
            assert_int_equal(decode_exact(wire, k, &out, &consumed, true), ROOST_ETRUNC);
            assert_int_equal(consumed, 777);
        }
        for (size_t k = 0; k < body; k++)
            assert_int_equal(decode_exact(wire + hdr, k, &out, NULL, false), ROOST_ETRUNC);
        assert_int_equal(decode_exact(wire + hdr, body, &out, NULL, false), 0);
    }
}

/* Bytes after the last field are ignored (forward compatibility). */
static void test_trailing_bytes_ignored(void **state)
{
    (void)state;
    static struct msg out;
    static uint8_t body[FRAME_MAX_BODY];
    for (size_t i = 0; i < n_samples; i++) {
        int n = msg_encode(&samples[i], wire, sizeof(wire));
        size_t hdr, blen;
        assert_int_equal(frame_parse(wire, (size_t)n, &hdr, &blen), 0);
        if (blen + 5 > sizeof(body))
            continue; /* the maximal lists leave no room to append */
        memcpy(body, wire + hdr, blen);
        memcpy(body + blen, "\x00\xff\x40\x01z", 5);
        assert_int_equal(msg_decode(body, blen + 5, &out), 0);
        assert_true(msg_equal(&samples[i], &out));
    }
}

static void test_unknown_types(void **state)
{
    (void)state;
    struct msg out;
    /* One past the last type, a grease type, a 2-byte and an 8-byte type. */
    const uint8_t t0c[] = {0x0c};
    const uint8_t grease[] = {0x40, 0x40, 1, 2, 3}; /* 0x40 = 0x21 + 0x1f */
    const uint8_t t2[] = {0x7f, 0xff, 0xde, 0xad};
    const uint8_t t8[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(msg_decode(t0c, sizeof(t0c), &out), ROOST_EUNKNOWN);
    assert_true(out.type == 0x0c);
    assert_int_equal(msg_decode(grease, sizeof(grease), &out), ROOST_EUNKNOWN);
    assert_true(out.type == 0x40);
    assert_true(msg_type_is_grease(out.type));
    assert_int_equal(msg_decode(t2, sizeof(t2), &out), ROOST_EUNKNOWN);
    assert_true(out.type == 0x3fff);
    assert_int_equal(msg_decode(t8, sizeof(t8), &out), ROOST_EUNKNOWN);
    assert_true(out.type == VARINT_MAX);

    /* On a stream, an unknown frame is skipped and the next one decodes. */
    uint8_t stream[64];
    size_t len = 0;
    stream[len++] = 4;                           /* body_len */
    memcpy(stream + len, "\x5f\xaa\xbb\xcc", 4); /* type 0x1f = 31: unknown */
    len += 4;
    int n = msg_encode(&samples[0], stream + len, sizeof(stream) - len);
    assert_true(n > 0);
    len += (size_t)n;
    size_t consumed = 0;
    assert_int_equal(msg_decode_frame(stream, len, &out, &consumed), ROOST_EUNKNOWN);
    assert_int_equal(consumed, 5);
    assert_int_equal(msg_decode_frame(stream + 5, len - 5, &out, &consumed), 0);
    assert_int_equal(consumed, (size_t)n);
    assert_true(msg_equal(&samples[0], &out));

    /* Type 0 is reserved and malformed, not unknown; an empty body has no type. */
    const uint8_t t00[] = {0x00, 1, 2};
    assert_int_equal(msg_decode(t00, sizeof(t00), &out), ROOST_EMALFORMED);
    assert_int_equal(msg_decode(t00, 0, &out), ROOST_ETRUNC);
    const uint8_t empty_frame[] = {0x00};
    assert_int_equal(msg_decode_frame(empty_frame, 1, &out, &consumed), ROOST_ETRUNC);
    assert_int_equal(consumed, 1);

    /* The encoder refuses unknown types. */
    struct msg bad = {.type = 0x0c};
    assert_int_equal(msg_encode(&bad, wire, sizeof(wire)), ROOST_EINVAL);
    bad.type = 0;
    assert_int_equal(msg_encode(&bad, wire, sizeof(wire)), ROOST_EINVAL);
    assert_int_equal(msg_encoded_len(&bad), ROOST_EINVAL);
    assert_int_equal(msg_encode_body(&bad, wire, sizeof(wire)), ROOST_EINVAL);
}

static void test_frame_over_limit(void **state)
{
    (void)state;
    struct msg out;
    size_t consumed = 5;
    /* body_len 16385, nothing after it: rejected before the body arrives. */
    const uint8_t over[] = {0x80, 0x00, 0x40, 0x01};
    assert_int_equal(msg_decode_frame(over, sizeof(over), &out, &consumed), ROOST_ETOOBIG);
    assert_int_equal(consumed, 5);
    /* Exactly FRAME_MAX_BODY is accepted as a frame (here an unknown type
     * padded out to the limit). */
    static uint8_t maxf[4 + FRAME_MAX_BODY];
    memset(maxf, 0, sizeof(maxf));
    assert_int_equal(frame_put_header(maxf, 4, FRAME_MAX_BODY), 4);
    maxf[4] = 0x3e; /* type 62, unknown */
    assert_int_equal(msg_decode_frame(maxf, sizeof(maxf), &out, &consumed), ROOST_EUNKNOWN);
    assert_int_equal(consumed, sizeof(maxf));
}

/* Builds a body by hand: type, then raw bytes. */
static size_t body_of(uint8_t *b, uint8_t type, const void *fields, size_t n)
{
    b[0] = type;
    memcpy(b + 1, fields, n);
    return n + 1;
}

static void test_oversized_fields(void **state)
{
    (void)state;
    struct msg out;
    uint8_t b[JOIN_TOKEN_MAX + 64];
    size_t n;

    /* HELLO client_name 65 bytes. */
    memcpy(b, "\x01\x00\x01\x00\x01\x40\x41", 7);
    memset(b + 7, 'a', 65);
    assert_int_equal(msg_decode(b, 7 + 65, &out), ROOST_ETOOBIG);
    /* ... and a length far beyond the input is ETOOBIG too, not ETRUNC. */
    assert_int_equal(msg_decode(b, 7, &out), ROOST_ETOOBIG);
    /* JOIN room_id 65. */
    b[0] = MSG_JOIN;
    b[1] = 0x40;
    b[2] = 65;
    memset(b + 3, 'r', 65);
    b[68] = 0;
    b[69] = 0;
    assert_int_equal(msg_decode(b, 70, &out), ROOST_ETOOBIG);
    /* JOIN token 1025 (varint 0x4401). */
    b[1] = 1;
    b[2] = 'r';
    b[3] = 0x44;
    b[4] = 0x01;
    memset(b + 5, 't', 1025);
    b[5 + 1025] = 0;
    assert_int_equal(msg_decode(b, 5 + 1025 + 1, &out), ROOST_ETOOBIG);
    /* JOIN token exactly 1024 is fine. */
    b[4] = 0x00;
    b[5 + 1024] = 0;
    assert_int_equal(msg_decode(b, 5 + 1024 + 1, &out), 0);
    assert_int_equal(out.u.join.token.len, 1024);
    /* JOIN display_name 65. */
    n = body_of(b, MSG_JOIN, "\x01r\x00\x40\x41", 5);
    memset(b + n, 'd', 65);
    assert_int_equal(msg_decode(b, n + 65, &out), ROOST_ETOOBIG);
    /* JOIN_REJECTED reason 257, ERROR text 257, GOAWAY reconnect 257. */
    n = body_of(b, MSG_JOIN_REJECTED, "\0\0\0\x08\0\0\0\0\x41\x01", 10);
    memset(b + n, 'x', 257);
    assert_int_equal(msg_decode(b, n + 257, &out), ROOST_ETOOBIG);
    n = body_of(b, MSG_ERROR, "\0\0\0\x01\x00\x41\x01", 7);
    memset(b + n, 'x', 257);
    assert_int_equal(msg_decode(b, n + 257, &out), ROOST_ETOOBIG);
    n = body_of(b, MSG_GOAWAY, "\0\0\0\0\x41\x01", 6);
    memset(b + n, 'x', 257);
    assert_int_equal(msg_decode(b, n + 257, &out), ROOST_ETOOBIG);
    /* WELCOME server_name 65. */
    n = body_of(b, MSG_WELCOME, "\0\x01\0\0\0\x01\0\0\0\0\x04\xb0\x07\0\0\0\x10\x40\x41", 19);
    memset(b + n, 's', 65);
    assert_int_equal(msg_decode(b, n + 65, &out), ROOST_ETOOBIG);
    b[n - 1] = 0x40; /* 64: fine */
    assert_int_equal(msg_decode(b, n + 64, &out), 0);
    /* JOINED with 201 members; PARTICIPANT_EVENTS with 201 events. */
    n = body_of(b, MSG_JOINED, "\x01r\x03\x00\xff\xff\xff\xff\x40\xc9", 10);
    assert_int_equal(msg_decode(b, n, &out), ROOST_ETOOBIG);
    n = body_of(b, MSG_PARTICIPANT_EVENTS, "\x00\x40\xc9", 3);
    assert_int_equal(msg_decode(b, n, &out), ROOST_ETOOBIG);
    /* A count at the limit but no entries is merely truncated. */
    n = body_of(b, MSG_PARTICIPANT_EVENTS, "\x00\x40\xc8", 3);
    assert_int_equal(msg_decode(b, n, &out), ROOST_ETRUNC);
    /* A member display name of 65. */
    n = body_of(b, MSG_JOINED, "\x01r\x03\x00\0\0\0\x01\x01\0\0\0\x09\x00\x40\x41", 16);
    memset(b + n, 'm', 65);
    assert_int_equal(msg_decode(b, n + 65, &out), ROOST_ETOOBIG);
    /* An event display name of 65. */
    n = body_of(b, MSG_PARTICIPANT_EVENTS, "\x00\x01\x01\0\0\0\x09\x00\x40\x41", 10);
    memset(b + n, 'm', 65);
    assert_int_equal(msg_decode(b, n + 65, &out), ROOST_ETOOBIG);
}

static void test_encoder_limits(void **state)
{
    (void)state;
    struct msg m = {.type = MSG_JOIN};
    m.u.join = (struct msg_join){view(big, ROOM_ID_MAX + 1), EMPTY, EMPTY};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_ETOOBIG);
    m.u.join = (struct msg_join){STR("r"), view(big, JOIN_TOKEN_MAX + 1), EMPTY};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_ETOOBIG);
    m.u.join = (struct msg_join){STR("r"), EMPTY, view(big, DISPLAY_NAME_MAX + 1)};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_ETOOBIG);
    m.u.join = (struct msg_join){EMPTY, EMPTY, EMPTY};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m.u.join = (struct msg_join){{NULL, 3}, EMPTY, EMPTY};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);

    struct msg h = {.type = MSG_HELLO};
    h.u.hello = (struct msg_hello){1, 1, view(big, CLIENT_NAME_MAX + 1)};
    assert_int_equal(msg_encode(&h, wire, sizeof(wire)), ROOST_ETOOBIG);
    struct msg e = {.type = MSG_ERROR};
    e.u.error = (struct msg_error){0, 0, view(big, TEXT_MAX + 1)};
    assert_int_equal(msg_encode(&e, wire, sizeof(wire)), ROOST_ETOOBIG);
    e.u.error = (struct msg_error){0, VARINT_MAX + 1, EMPTY};
    assert_int_equal(msg_encode(&e, wire, sizeof(wire)), ROOST_EINVAL);

    static struct msg j;
    j.type = MSG_JOINED;
    j.u.joined.room_id = STR("r");
    j.u.joined.member_total = UINT32_MAX;
    j.u.joined.n_members = JOINED_MAX_MEMBERS + 1;
    assert_int_equal(msg_encode(&j, wire, sizeof(wire)), ROOST_ETOOBIG);
    static struct msg ev;
    ev.type = MSG_PARTICIPANT_EVENTS;
    ev.u.events.n_events = EVENTS_MAX + 1;
    assert_int_equal(msg_encode(&ev, wire, sizeof(wire)), ROOST_ETOOBIG);
}

/* Values outside their range: EMALFORMED from the decoder, EINVAL from the
 * encoder. Each case flips one field of a valid message. */
static void test_invalid_values(void **state)
{
    (void)state;
    struct msg out;
    static const struct {
        const char *what;
        const char *body;
        size_t len;
    } bad[] = {
#define B(what, s) {what, s, sizeof(s) - 1}
        B("hello min 0", "\x01\x00\x00\x00\x01\x00"),
        B("hello max < min", "\x01\x00\x02\x00\x01\x00"),
        B("hello bad utf8", "\x01\x00\x01\x00\x01\x01\xff"),
        B("welcome version 0", "\x02\0\0\0\0\0\x01\0\0\0\0\x04\xb0\x07\0\0\0\x10\x00"),
        B("welcome pid 0", "\x02\0\x01\0\0\0\0\0\0\0\0\x04\xb0\x07\0\0\0\x10\x00"),
        B("welcome max_datagram 11", "\x02\0\x01\0\0\0\x01\0\0\0\0\x00\x0b\x07\0\0\0\x10\x00"),
        B("welcome max_members 0", "\x02\0\x01\0\0\0\x01\0\0\0\0\x04\xb0\x07\0\0\0\x00\x00"),
        B("join empty room", "\x03\x00\x00\x00"),
        B("join room NUL", "\x03\x02r\x00\x00\x00"),
        B("join room overlong", "\x03\x02\xc0\xaf\x00\x00"),
        B("join room surrogate", "\x03\x03\xed\xa0\x80\x00\x00"),
        B("join token DEL", "\x03\x01r\x01\x7f\x00"),
        B("join token control", "\x03\x01r\x01\x1f\x00"),
        B("join token high", "\x03\x01r\x01\x80\x00"),
        B("join name cut utf8", "\x03\x01r\x00\x01\xe2"),
        B("joined total < n", "\x04\x01r\x00\x00\0\0\0\x00\x01\0\0\0\x01\x00\x00"),
        B("joined member pid 0", "\x04\x01r\x00\x00\0\0\0\x01\x01\0\0\0\x00\x00\x00"),
        B("events kind 0", "\x07\x00\x01\x00\0\0\0\x01"),
        B("events kind 3", "\x07\x00\x01\x03\0\0\0\x01"),
        B("events pid 0", "\x07\x00\x01\x02\0\0\0\x00"),
        B("keyframe pid 0", "\x08\0\0\0\0\x01"),
        B("quality pid 0", "\x09\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
        B("quality loss 1001", "\x09\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\x03\xe9\0\0\0\0\0\0\0\0"),
        B("error text 5-byte seq", "\x0a\0\0\0\x01\x00\x05\xf8\x88\x80\x80\x80"),
        B("goaway non-ascii", "\x0b\0\0\0\0\x02\xc3\xa9"),
#undef B
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = decode_exact((const uint8_t *)bad[i].body, bad[i].len, &out, NULL, false);
        if (rc != ROOST_EMALFORMED)
            fail_msg("%s: got %d", bad[i].what, rc);
    }
    /* Boundary values that are valid: loss 1000, max_datagram 12. */
    assert_int_equal(
        msg_decode(
            (const uint8_t *)"\x09\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\x03\xe8\0\0\0\0\0\0\0\0", 27,
            &out),
        0);
    assert_int_equal(out.u.quality.loss_permille, 1000);

    /* The encoder refuses the same values. */
    struct msg m;
    m = (struct msg){.type = MSG_HELLO, .u.hello = {0, 1, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_HELLO, .u.hello = {2, 1, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_HELLO, .u.hello = {1, 1, STR("\xc0\x80")}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_WELCOME, .u.welcome = {1, 0, 0, 12, 0, 1, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_WELCOME, .u.welcome = {1, 1, 0, 11, 0, 1, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_WELCOME, .u.welcome = {1, 1, 0, 12, 0, 0, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_WELCOME, .u.welcome = {0, 1, 0, 12, 0, 1, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_JOIN, .u.join = {STR("r"), STR("a\nb"), EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_JOIN, .u.join = {STR("a\0b"), EMPTY, EMPTY}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_KEYFRAME_REQUEST, .u.keyframe_request = {0, 1}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_QUALITY, .u.quality = {1, 0, 0, 0, 1001, 0, 0}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_QUALITY, .u.quality = {0, 0, 0, 0, 0, 0, 0}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);
    m = (struct msg){.type = MSG_GOAWAY, .u.goaway = {0, STR("h\xc3\xa9")}};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), ROOST_EINVAL);

    static struct msg j;
    memset(&j, 0, sizeof(j));
    j.type = MSG_JOINED;
    j.u.joined.room_id = STR("r");
    j.u.joined.n_members = 2;
    j.u.joined.member_total = 1;
    j.u.joined.members[0] = (struct msg_member){1, 0, EMPTY};
    j.u.joined.members[1] = (struct msg_member){2, 0, EMPTY};
    assert_int_equal(msg_encode(&j, wire, sizeof(wire)), ROOST_EINVAL);
    j.u.joined.member_total = 2;
    assert_true(msg_encode(&j, wire, sizeof(wire)) > 0);
    j.u.joined.members[1].participant_id = 0;
    assert_int_equal(msg_encode(&j, wire, sizeof(wire)), ROOST_EINVAL);
    j.u.joined.members[1].participant_id = 2;
    j.u.joined.room_id = EMPTY;
    assert_int_equal(msg_encode(&j, wire, sizeof(wire)), ROOST_EINVAL);

    static struct msg ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = MSG_PARTICIPANT_EVENTS;
    ev.u.events.n_events = 1;
    ev.u.events.events[0] = (struct msg_event){3, 1, 0, EMPTY};
    assert_int_equal(msg_encode(&ev, wire, sizeof(wire)), ROOST_EINVAL);
    ev.u.events.events[0] = (struct msg_event){MSG_EV_LEAVE, 0, 0, EMPTY};
    assert_int_equal(msg_encode(&ev, wire, sizeof(wire)), ROOST_EINVAL);
}

/* Non-minimal varints for the type, string lengths and counts decode. */
static void test_non_minimal_varints(void **state)
{
    (void)state;
    struct msg out;
    /* JOIN with a 2-byte type, 4-byte room length, 8-byte token length. */
    const uint8_t join[] = {0x40, 0x03, 0x80, 0, 0, 1,   'r', 0xc0, 0,   0,
                            0,    0,    0,    0, 2, 'a', 'b', 0x40, 0x00};
    assert_int_equal(msg_decode(join, sizeof(join), &out), 0);
    assert_true(out.type == MSG_JOIN);
    assert_memory_equal(out.u.join.room_id.ptr, "r", 1);
    assert_int_equal(out.u.join.token.len, 2);
    /* PARTICIPANT_EVENTS with a 2-byte count. */
    const uint8_t ev[] = {0x07, 0x00, 0x40, 0x01, 0x02, 0, 0, 0, 9};
    assert_int_equal(msg_decode(ev, sizeof(ev), &out), 0);
    assert_int_equal(out.u.events.n_events, 1);
    assert_int_equal(out.u.events.events[0].participant_id, 9);
}

/* The bytes in PROTOCOL.md §10. */
static void test_spec_examples(void **state)
{
    (void)state;
    struct msg m = {.type = MSG_HELLO, .u.hello = {1, 1, STR("cli/1")}};
    const uint8_t hello[] = {0x0b, 0x01, 0x00, 0x01, 0x00, 0x01, 0x05, 'c', 'l', 'i', '/', '1'};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), sizeof(hello));
    assert_memory_equal(wire, hello, sizeof(hello));
    m = (struct msg){.type = MSG_LEAVE};
    assert_int_equal(msg_encode(&m, wire, sizeof(wire)), 2);
    assert_memory_equal(wire, "\x01\x06", 2);
    /* A PARTICIPANT_EVENTS with one JOIN and one LEAVE, field by field. */
    static struct msg ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = MSG_PARTICIPANT_EVENTS;
    ev.u.events.n_events = 2;
    ev.u.events.events[0] = (struct msg_event){MSG_EV_JOIN, 0x01020304, 1, STR("al")};
    ev.u.events.events[1] = (struct msg_event){MSG_EV_LEAVE, 7, 0, EMPTY};
    const uint8_t evw[] = {17,   0x07, 0x00, 0x02, 0x01, 1, 2, 3, 4,
                           0x01, 0x02, 'a',  'l',  0x02, 0, 0, 0, 7};
    assert_int_equal(msg_encode(&ev, wire, sizeof(wire)), sizeof(evw));
    assert_memory_equal(wire, evw, sizeof(evw));
}

/* Too small an output buffer: ENOSPC for every cap below the size, and no
 * byte written past cap. */
static void test_encode_enospc(void **state)
{
    (void)state;
    static uint8_t buf[sizeof(wire) + 1];
    for (size_t i = 0; i < n_samples; i++) {
        int n = msg_encoded_len(&samples[i]);
        assert_true(n > 0);
        /* All caps for small messages; a spread for the big ones. */
        size_t step = n > 2000 ? 97 : 1;
        for (size_t cap = 0; cap < (size_t)n; cap += step) {
            memset(buf, 0xee, cap + 1);
            assert_int_equal(msg_encode(&samples[i], buf, cap), ROOST_ENOSPC);
            assert_int_equal(buf[cap], 0xee);
        }
        assert_int_equal(msg_encode(&samples[i], buf, (size_t)n), n);
    }
}

static void test_type_helpers(void **state)
{
    (void)state;
    assert_string_equal(msg_type_name(MSG_HELLO), "HELLO");
    assert_string_equal(msg_type_name(MSG_PARTICIPANT_EVENTS), "PARTICIPANT_EVENTS");
    assert_string_equal(msg_type_name(MSG_GOAWAY), "GOAWAY");
    assert_string_equal(msg_type_name(0), "UNKNOWN");
    assert_string_equal(msg_type_name(MSG_TYPE_LAST + 1), "UNKNOWN");
    assert_int_equal(msg_direction(MSG_HELLO), MSG_DIR_C2R);
    assert_int_equal(msg_direction(MSG_JOIN), MSG_DIR_C2R);
    assert_int_equal(msg_direction(MSG_LEAVE), MSG_DIR_C2R);
    assert_int_equal(msg_direction(MSG_WELCOME), MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_JOINED), MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_JOIN_REJECTED), MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_PARTICIPANT_EVENTS), MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_QUALITY), MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_GOAWAY), MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_KEYFRAME_REQUEST), MSG_DIR_C2R | MSG_DIR_R2C);
    assert_int_equal(msg_direction(MSG_ERROR), MSG_DIR_C2R | MSG_DIR_R2C);
    assert_int_equal(msg_direction(0), 0);
    assert_int_equal(msg_direction(0x21), 0);
    assert_true(msg_type_is_grease(0x21));
    assert_true(msg_type_is_grease(0x40));
    assert_true(msg_type_is_grease(0x5f));
    assert_false(msg_type_is_grease(0x20));
    assert_false(msg_type_is_grease(0x41));
    assert_false(msg_type_is_grease(MSG_HELLO));
    /* No defined type is a grease type. */
    for (uint64_t t = 1; t <= MSG_TYPE_LAST; t++)
        assert_false(msg_type_is_grease(t));
}

static void test_msg_equal(void **state)
{
    (void)state;
    struct msg a = {.type = MSG_JOIN, .u.join = {STR("r"), STR("t"), STR("n")}};
    struct msg b = a;
    assert_true(msg_equal(&a, &b));
    b.u.join.display_name = STR("m");
    assert_false(msg_equal(&a, &b));
    b = a;
    b.type = MSG_LEAVE;
    assert_false(msg_equal(&a, &b));
    /* LEAVE events compare by kind and id only. */
    static struct msg x, y;
    x.type = y.type = MSG_PARTICIPANT_EVENTS;
    x.u.events.n_events = y.u.events.n_events = 1;
    x.u.events.events[0] = (struct msg_event){MSG_EV_LEAVE, 3, 0, EMPTY};
    y.u.events.events[0] = (struct msg_event){MSG_EV_LEAVE, 3, 9, STR("ignored")};
    assert_true(msg_equal(&x, &y));
    y.u.events.events[0].kind = MSG_EV_JOIN;
    assert_false(msg_equal(&x, &y));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_sampled),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_strings_are_views),
        cmocka_unit_test(test_every_prefix_rejected),
        cmocka_unit_test(test_trailing_bytes_ignored),
        cmocka_unit_test(test_unknown_types),
        cmocka_unit_test(test_frame_over_limit),
        cmocka_unit_test(test_oversized_fields),
        cmocka_unit_test(test_encoder_limits),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_non_minimal_varints),
        cmocka_unit_test(test_spec_examples),
        cmocka_unit_test(test_encode_enospc),
        cmocka_unit_test(test_type_helpers),
        cmocka_unit_test(test_msg_equal),
    };
    return cmocka_run_group_tests_name("proto", tests, setup, NULL);
}
