#include "proto/errcode.h"

#include "core/error.h"

const char *proto_errcode_name(uint64_t code)
{
    static const char *const names[] = {
        [PROTO_ERR_NO_ERROR] = "NO_ERROR",
        [PROTO_ERR_INTERNAL] = "INTERNAL",
        [PROTO_ERR_PROTOCOL_VIOLATION] = "PROTOCOL_VIOLATION",
        [PROTO_ERR_UNSUPPORTED_VERSION] = "UNSUPPORTED_VERSION",
        [PROTO_ERR_BAD_TOKEN] = "BAD_TOKEN",
        [PROTO_ERR_TOKEN_EXPIRED] = "TOKEN_EXPIRED",
        [PROTO_ERR_TOKEN_NOT_YET_VALID] = "TOKEN_NOT_YET_VALID",
        [PROTO_ERR_WRONG_ROOM] = "WRONG_ROOM",
        [PROTO_ERR_ROOM_FULL] = "ROOM_FULL",
        [PROTO_ERR_SERVER_FULL] = "SERVER_FULL",
        [PROTO_ERR_NOT_PERMITTED] = "NOT_PERMITTED",
        [PROTO_ERR_TOO_SLOW] = "TOO_SLOW",
        [PROTO_ERR_GOING_AWAY] = "GOING_AWAY",
        [PROTO_ERR_REPLACED] = "REPLACED",
        [PROTO_ERR_IDLE_TIMEOUT] = "IDLE_TIMEOUT",
        [PROTO_ERR_ALREADY_JOINED] = "ALREADY_JOINED",
        [PROTO_ERR_NOT_JOINED] = "NOT_JOINED",
        [PROTO_ERR_RATE_LIMITED] = "RATE_LIMITED",
    };
    if (code > PROTO_ERR_LAST)
        return "UNKNOWN";
    return names[code];
}

enum proto_errcode proto_errcode_from_token_err(int err)
{
    switch (err) {
    case 0:
        return PROTO_ERR_NO_ERROR;
    case ROOST_EEXPIRED:
        return PROTO_ERR_TOKEN_EXPIRED;
    case ROOST_ENOTYET:
        return PROTO_ERR_TOKEN_NOT_YET_VALID;
    case ROOST_EWRONGROOM:
        return PROTO_ERR_WRONG_ROOM;
    case ROOST_EACCES:
        return PROTO_ERR_NOT_PERMITTED;
    case ROOST_ENOMEM:
        return PROTO_ERR_INTERNAL;
    default:
        return PROTO_ERR_BAD_TOKEN;
    }
}
