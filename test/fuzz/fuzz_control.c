/* Fuzz target: control-stream framing and control-message decoding.
 * The input is read as a control stream: frames one after another, as
 * msg_decode_frame sees them, until one fails. Every message that decodes
 * must re-encode, decode again to an equal message and re-encode to the
 * same bytes (round-trip property); the input is also decoded once as a
 * bare body. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/frame.h"
#include "proto/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* struct msg is ~5 KiB: static, the fuzzer runs one input at a time. */
static struct msg m1, m2;
static uint8_t enc1[FRAME_MAX_HDR + FRAME_MAX_BODY], enc2[FRAME_MAX_HDR + FRAME_MAX_BODY];

static int known_rc(int rc)
{
    return rc == 0 || rc == ROOST_ETRUNC || rc == ROOST_ETOOBIG || rc == ROOST_EMALFORMED ||
           rc == ROOST_EUNKNOWN;
}

static void round_trip(const struct msg *m, size_t wire_len)
{
    int n = msg_encode(m, enc1, sizeof(enc1));
    CHECK(n > 0);
    CHECK(msg_encoded_len(m) == n);
    /* Minimal varints and dropped trailing bytes never make it longer. */
    CHECK((size_t)n <= wire_len);
    size_t consumed = 0;
    CHECK(msg_decode_frame(enc1, (size_t)n, &m2, &consumed) == 0);
    CHECK(consumed == (size_t)n);
    CHECK(msg_equal(m, &m2) && msg_equal(&m2, m));
    CHECK(msg_encode(&m2, enc2, sizeof(enc2)) == n);
    CHECK(memcmp(enc1, enc2, (size_t)n) == 0);
    /* One byte short of room is refused, not overrun. */
    CHECK(msg_encode(m, enc2, (size_t)n - 1) == ROOST_ENOSPC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        size_t hdr_len = 0, body_len = 0;
        int frc = frame_parse(data + off, size - off, &hdr_len, &body_len);
        CHECK(frc == 0 || frc == ROOST_ETRUNC || frc == ROOST_ETOOBIG);
        size_t consumed = 0;
        int rc = msg_decode_frame(data + off, size - off, &m1, &consumed);
        CHECK(known_rc(rc));
        if (frc != 0) {
            CHECK(rc == frc);
            break;
        }
        if (rc == ROOST_ETRUNC && consumed == 0) {
            CHECK(size - off - hdr_len < body_len);
            break; /* the frame is not complete */
        }
        CHECK(consumed == hdr_len + body_len);
        if (rc == 0)
            round_trip(&m1, consumed);
        else if (rc == ROOST_EUNKNOWN)
            CHECK(m1.type != 0 && msg_direction(m1.type) == 0); /* skipped, as the spec says */
        else
            break; /* protocol violation: the connection would close */
        off += consumed;
    }

    /* The whole input as one body (no length prefix). */
    int rc = msg_decode(data, size, &m1);
    CHECK(known_rc(rc));
    if (rc == 0 && size <= FRAME_MAX_BODY)
        round_trip(&m1, size + FRAME_MAX_HDR);
    return 0;
}
