/* Application error codes of the roost protocol (docs/PROTOCOL.md §6): the
 * u32 carried in QUIC CONNECTION_CLOSE (type 0x1d), JOIN_REJECTED.code and
 * ERROR.code. Values are part of the wire contract: never renumber, add new
 * codes only at the end.
 *
 * Pure functions: no I/O, no global state, callable from any thread. */
#ifndef ROOST_PROTO_ERRCODE_H
#define ROOST_PROTO_ERRCODE_H

#include <stdint.h>

enum proto_errcode {
    PROTO_ERR_NO_ERROR = 0x00,
    PROTO_ERR_INTERNAL = 0x01,
    PROTO_ERR_PROTOCOL_VIOLATION = 0x02,
    PROTO_ERR_UNSUPPORTED_VERSION = 0x03,
    PROTO_ERR_BAD_TOKEN = 0x04,
    PROTO_ERR_TOKEN_EXPIRED = 0x05,
    PROTO_ERR_TOKEN_NOT_YET_VALID = 0x06,
    PROTO_ERR_WRONG_ROOM = 0x07,
    PROTO_ERR_ROOM_FULL = 0x08,
    PROTO_ERR_SERVER_FULL = 0x09,
    PROTO_ERR_NOT_PERMITTED = 0x0a,
    PROTO_ERR_TOO_SLOW = 0x0b,
    PROTO_ERR_GOING_AWAY = 0x0c,
    PROTO_ERR_REPLACED = 0x0d,
    PROTO_ERR_IDLE_TIMEOUT = 0x0e,
    PROTO_ERR_ALREADY_JOINED = 0x0f,
    PROTO_ERR_NOT_JOINED = 0x10,
    PROTO_ERR_RATE_LIMITED = 0x11,
};

#define PROTO_ERR_LAST PROTO_ERR_RATE_LIMITED /* highest defined code */

/* Returns the spec name of an application error code ("NO_ERROR",
 * "BAD_TOKEN", ...), or "UNKNOWN" for a code this version does not define
 * (the caller then treats it as INTERNAL and shows the number). The string
 * is static. */
const char *proto_errcode_name(uint64_t code);

/* Maps an error returned by the join-token verifier (lib/proto/token.h) to
 * the code sent in JOIN_REJECTED: ROOST_EEXPIRED -> TOKEN_EXPIRED,
 * ROOST_ENOTYET -> TOKEN_NOT_YET_VALID, ROOST_EWRONGROOM -> WRONG_ROOM,
 * ROOST_EACCES -> NOT_PERMITTED, ROOST_ENOMEM -> INTERNAL, any other
 * negative error -> BAD_TOKEN; 0 -> NO_ERROR. */
enum proto_errcode proto_errcode_from_token_err(int err);

#endif
