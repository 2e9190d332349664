#include "core/error.h"

#include <string.h>

const char *roost_strerror(int err)
{
    switch (err) {
    case ROOST_OK:
        return "success";
    case ROOST_ETRUNC:
        return "truncated input";
    case ROOST_EMALFORMED:
        return "malformed input";
    case ROOST_ETOOBIG:
        return "field or count exceeds its limit";
    case ROOST_EUNKNOWN:
        return "unknown type or version";
    case ROOST_EBADTAG:
        return "authentication tag mismatch";
    case ROOST_EEXPIRED:
        return "expired";
    case ROOST_ENOTYET:
        return "not yet valid";
    case ROOST_EBADKEY:
        return "unknown or unusable key";
    case ROOST_EWRONGROOM:
        return "token is for another room";
    case ROOST_ECRYPTO:
        return "crypto library failure";
    case ROOST_EQUIC:
        return "QUIC library failure";
    case ROOST_ECLOSED:
        return "closed";
    case ROOST_EFULL:
        return "limit reached";
    case ROOST_ESYS:
        return "system call failed";
    default:
        break;
    }
    if (err < 0 && err > ROOST_EBASE)
        return strerror(-err); /* glibc: static strings for known errnos */
    return "unknown error";
}
