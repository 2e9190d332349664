/* roost error codes: negative errno where one fits, own codes below -1000.
 * Every fallible function returns 0 (or a non-negative count) on success and
 * one of these on failure. */
#ifndef ROOST_CORE_ERROR_H
#define ROOST_CORE_ERROR_H

#include <errno.h>

enum roost_err {
    ROOST_OK = 0,
    ROOST_ENOMEM = -ENOMEM,
    ROOST_EINVAL = -EINVAL,
    ROOST_EAGAIN = -EAGAIN,
    ROOST_ENOENT = -ENOENT,
    ROOST_EEXIST = -EEXIST,
    ROOST_ENOSPC = -ENOSPC,
    ROOST_ERANGE = -ERANGE,
    ROOST_EIO = -EIO,
    ROOST_EACCES = -EACCES,
    ROOST_ETIMEDOUT = -ETIMEDOUT,

    /* Own codes. */
    ROOST_EBASE = -1000,
    ROOST_ETRUNC = -1001,     /* input ends before the item it announces */
    ROOST_EMALFORMED = -1002, /* input is structurally invalid */
    ROOST_ETOOBIG = -1003,    /* a field or count exceeds its limit */
    ROOST_EUNKNOWN = -1004,   /* unknown type or version */
    ROOST_EBADTAG = -1005,    /* authentication tag mismatch */
    ROOST_EEXPIRED = -1006,   /* token or credential past its expiry */
    ROOST_ENOTYET = -1007,    /* token not yet valid */
    ROOST_EBADKEY = -1008,    /* unknown key id, or unusable key */
    ROOST_EWRONGROOM = -1009, /* token for another room */
    ROOST_ECRYPTO = -1010,    /* TLS / crypto library failure */
    ROOST_EQUIC = -1011,      /* QUIC library failure */
    ROOST_ECLOSED = -1012,    /* object is closed or shutting down */
    ROOST_EFULL = -1013,      /* a limit was reached */
    ROOST_ESYS = -1014,       /* system call failure; errno says more */
};

/* Returns a static, human-readable string for any roost_err or negative errno. */
const char *roost_strerror(int err);

#endif
