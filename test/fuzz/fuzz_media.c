/* Fuzz target: media datagram headers. The input is decoded as a client ->
 * relay datagram and as a relay -> client datagram; whatever decodes must
 * re-encode (known flags only: unknown ones are ignored on receive and zero
 * on send) and decode to the same fields, and the relay's prepend path must
 * produce a relay -> client datagram that carries the same header and
 * payload byte for byte. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static uint8_t relayed[MEDIA_DATAGRAM_MAX + MEDIA_SENDER_LEN];

static int same(const struct media_hdr *a, const struct media_hdr *b)
{
    return a->participant_id == b->participant_id && a->stream_id == b->stream_id &&
           (a->flags & MEDIA_F_KNOWN) == (b->flags & MEDIA_F_KNOWN) && a->seq == b->seq &&
           a->timestamp == b->timestamp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct media_hdr h, h2;
    uint8_t buf[MEDIA_R2C_HDR_LEN];

    /* Client -> relay. */
    int rc = media_c2r_decode(data, size, &h);
    CHECK(rc == MEDIA_C2R_HDR_LEN || rc == ROOST_ETRUNC || rc == ROOST_EUNKNOWN);
    if (rc == MEDIA_C2R_HDR_LEN) {
        CHECK(size >= MEDIA_C2R_HDR_LEN && h.participant_id == 0);
        struct media_hdr k = h;
        k.flags &= MEDIA_F_KNOWN;
        CHECK(media_c2r_encode(&k, buf, sizeof(buf)) == MEDIA_C2R_HDR_LEN);
        CHECK(media_c2r_decode(buf, MEDIA_C2R_HDR_LEN, &h2) == MEDIA_C2R_HDR_LEN);
        CHECK(same(&h, &h2));
        /* The relay path: prepend a participant id, copy the rest. */
        uint32_t pid = size > 12 ? (uint32_t)data[12] << 8 | 1u : 7u;
        int n = media_relay_datagram(data, size, pid, relayed, sizeof(relayed));
        if (size > MEDIA_DATAGRAM_MAX) {
            CHECK(n == ROOST_ETOOBIG);
        } else {
            CHECK(n == (int)size + MEDIA_SENDER_LEN);
            CHECK(memcmp(relayed + MEDIA_SENDER_LEN, data, size) == 0);
            CHECK(media_r2c_decode(relayed, (size_t)n, &h2) == MEDIA_R2C_HDR_LEN);
            h.participant_id = pid;
            CHECK(same(&h, &h2) && h2.flags == data[2]);
        }
    } else {
        CHECK(media_relay_datagram(data, size, 1, relayed, sizeof(relayed)) == rc);
    }

    /* Relay -> client. */
    rc = media_r2c_decode(data, size, &h);
    CHECK(rc == MEDIA_R2C_HDR_LEN || rc == ROOST_ETRUNC || rc == ROOST_EUNKNOWN ||
          rc == ROOST_EMALFORMED);
    if (rc == MEDIA_R2C_HDR_LEN) {
        CHECK(h.participant_id != 0);
        struct media_hdr k = h;
        k.flags &= MEDIA_F_KNOWN;
        CHECK(media_r2c_encode(&k, buf, sizeof(buf)) == MEDIA_R2C_HDR_LEN);
        CHECK(media_r2c_decode(buf, sizeof(buf), &h2) == MEDIA_R2C_HDR_LEN);
        CHECK(same(&h, &h2));
        /* The encoder reproduces every byte but the reserved ones. */
        CHECK(memcmp(buf, data, 4) == 0 && buf[5] == data[5] &&
              (buf[6] & MEDIA_F_KNOWN) == (data[6] & MEDIA_F_KNOWN));
        CHECK(memcmp(buf + 8, data + 8, 8) == 0);
    }
    return 0;
}
