/* QUIC variable-length integers (RFC 9000 §16): the two high bits of the
 * first byte give the length (1, 2, 4 or 8 bytes), the rest is the value,
 * big-endian, so values up to 2^62 - 1 are representable.
 *
 * Pure functions: no I/O, no global state, callable from any thread. */
#ifndef ROOST_PROTO_VARINT_H
#define ROOST_PROTO_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define VARINT_MAX ((UINT64_C(1) << 62) - 1) /* largest encodable value */
#define VARINT_MAX_LEN 8                     /* longest encoding, bytes */

/* Returns the length in bytes (1, 2, 4 or 8) of the minimal encoding of v,
 * or 0 when v > VARINT_MAX (not encodable). */
size_t varint_len(uint64_t v);

/* Writes the minimal encoding of v into out (cap bytes). Returns the number
 * of bytes written (1..8); ROOST_ERANGE when v > VARINT_MAX; ROOST_ENOSPC
 * when cap is too small (nothing is written then). */
int varint_encode(uint8_t *out, size_t cap, uint64_t v);

/* Reads one varint from buf[0..len) into *v. Never reads past len.
 * Returns the number of bytes consumed (1..8), or ROOST_ETRUNC when buf
 * ends before the encoding does (len == 0 included); *v is untouched on
 * error. Non-minimal encodings (e.g. 0x40 0x05 for 5) are accepted, as RFC
 * 9000 §16 allows; encoders here always write the minimal form. */
int varint_decode(const uint8_t *buf, size_t len, uint64_t *v);

#endif
