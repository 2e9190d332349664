/* Control-stream framing: every control message on the stream is
 * varint(body_len) followed by body_len bytes of body, and a body is
 * varint(type) followed by the message's fields (docs/PROTOCOL.md §3).
 *
 * Pure functions: no I/O, no global state, callable from any thread. */
#ifndef ROOST_PROTO_FRAME_H
#define ROOST_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAX_BODY 16384 /* max control message body (type + fields), bytes */
#define FRAME_MAX_HDR 4      /* a length prefix for <= FRAME_MAX_BODY fits in 4 bytes */

/* Parses the frame header at buf[0..len): varint body length. On success sets
 * *hdr_len (bytes of the length prefix) and *body_len and returns 0;
 * ROOST_ETRUNC when more bytes are needed; ROOST_ETOOBIG when body_len >
 * FRAME_MAX_BODY (the connection must be closed with PROTOCOL_VIOLATION).
 * A body_len of 0 is returned as is: the caller's message decoder rejects
 * an empty body (it has no type). Never reads past len. */
int frame_parse(const uint8_t *buf, size_t len, size_t *hdr_len, size_t *body_len);

/* Writes the length prefix for a body of body_len bytes into out (cap bytes);
 * returns the prefix length or ROOST_ENOSPC / ROOST_ETOOBIG. */
int frame_put_header(uint8_t *out, size_t cap, size_t body_len);

#endif
