/* Strict UTF-8 validation (RFC 3629), for the strings of the wire protocol.
 *
 * Pure function: no I/O, no global state, callable from any thread. */
#ifndef ROOST_PROTO_UTF8_H
#define ROOST_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns true when s[0..len) is well-formed UTF-8: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no stray
 * continuation byte, no sequence cut by the end of the input. U+0000 is
 * valid UTF-8 and accepted here (the protocol rejects it separately).
 * s may be NULL when len is 0. Never reads past len. */
bool utf8_valid(const uint8_t *s, size_t len);

#endif
