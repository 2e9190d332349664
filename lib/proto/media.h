/* Media datagram headers (docs/PROTOCOL.md §8). Client -> relay: 12 bytes,
 * [ver|rsvd][stream][flags][rsvd][seq u32][timestamp u32]. Relay -> client:
 * the sender's participant id (u32) prepended to the 12 bytes as received.
 * All big-endian. The payload follows the header and is opaque.
 *
 * Pure functions: no I/O, no global state, callable from any thread. */
#ifndef ROOST_PROTO_MEDIA_H
#define ROOST_PROTO_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#define MEDIA_HDR_VERSION 1      /* top two bits of the first header byte */
#define MEDIA_C2R_HDR_LEN 12     /* client -> relay header */
#define MEDIA_R2C_HDR_LEN 16     /* relay -> client header */
#define MEDIA_SENDER_LEN 4       /* what the relay prepends */
#define MEDIA_DATAGRAM_MAX 65535 /* no QUIC DATAGRAM frame is larger */

#define MEDIA_F_KEYFRAME 0x01 /* part of an independently decodable frame */
#define MEDIA_F_END 0x02      /* last packet of its frame */
#define MEDIA_F_VIDEO 0x04    /* stream kind: set = video, clear = audio */
#define MEDIA_F_START 0x08    /* first packet of its frame */
#define MEDIA_F_KNOWN 0x0f    /* other bits: zero on send, ignored on receive */

struct media_hdr {
    uint32_t participant_id; /* relay -> client only; 0 in client -> relay */
    uint8_t stream_id;
    uint8_t flags; /* as on the wire, unknown bits included: mask with MEDIA_F_KNOWN */
    uint32_t seq;
    uint32_t timestamp;
};

/* Writes the 12-byte client -> relay header of *h into out[0..cap) (reserved
 * bits zero; h->participant_id is not written). Returns MEDIA_C2R_HDR_LEN,
 * ROOST_ENOSPC when cap < 12, or ROOST_EINVAL when h->flags has bits
 * outside MEDIA_F_KNOWN. */
int media_c2r_encode(const struct media_hdr *h, uint8_t *out, size_t cap);

/* Reads a client -> relay header from buf[0..len) into *h (participant_id
 * set to 0). Returns the header length (the payload starts there and runs
 * to len), ROOST_ETRUNC when len < 12, or ROOST_EUNKNOWN for a header
 * version other than MEDIA_HDR_VERSION (the datagram is dropped). Reserved
 * bits are ignored. */
int media_c2r_decode(const uint8_t *buf, size_t len, struct media_hdr *h);

/* Writes the 16-byte relay -> client header of *h into out[0..cap).
 * Returns MEDIA_R2C_HDR_LEN, ROOST_ENOSPC, or ROOST_EINVAL when
 * h->participant_id is 0 or h->flags has unknown bits. */
int media_r2c_encode(const struct media_hdr *h, uint8_t *out, size_t cap);

/* Reads a relay -> client header from buf[0..len) into *h. Returns the
 * header length, ROOST_ETRUNC when len < 16, ROOST_EUNKNOWN for an unknown
 * header version, ROOST_EMALFORMED for participant id 0. */
int media_r2c_decode(const uint8_t *buf, size_t len, struct media_hdr *h);

/* Relay fast path: builds the outgoing datagram [pid][in as received] in
 * out[0..cap) from the client's datagram in[0..in_len), after checking its
 * header with media_c2r_decode. Reserved bits and unknown flags pass
 * through unchanged. in and out must not overlap. Returns the outgoing
 * length (in_len + 4), or ROOST_ETRUNC / ROOST_EUNKNOWN (bad input header),
 * ROOST_EINVAL (pid 0), ROOST_ETOOBIG (in_len > MEDIA_DATAGRAM_MAX),
 * ROOST_ENOSPC (cap < in_len + 4). */
int media_relay_datagram(const uint8_t *in, size_t in_len, uint32_t pid, uint8_t *out, size_t cap);

#endif
