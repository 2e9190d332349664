#include "proto/varint.h"

#include "core/error.h"

size_t varint_len(uint64_t v)
{
    if (v < (UINT64_C(1) << 6))
        return 1;
    if (v < (UINT64_C(1) << 14))
        return 2;
    if (v < (UINT64_C(1) << 30))
        return 4;
    if (v <= VARINT_MAX)
        return 8;
    return 0;
}

int varint_encode(uint8_t *out, size_t cap, uint64_t v)
{
    size_t n = varint_len(v);
    if (n == 0)
        return ROOST_ERANGE;
    if (cap < n)
        return ROOST_ENOSPC;
    /* Length class in the two top bits: 00 = 1, 01 = 2, 10 = 4, 11 = 8. */
    static const uint8_t prefix[9] = {[1] = 0x00, [2] = 0x40, [4] = 0x80, [8] = 0xc0};
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    out[0] |= prefix[n];
    return (int)n;
}

int varint_decode(const uint8_t *buf, size_t len, uint64_t *v)
{
    if (len == 0)
        return ROOST_ETRUNC;
    size_t n = (size_t)1 << (buf[0] >> 6);
    if (len < n)
        return ROOST_ETRUNC;
    uint64_t x = buf[0] & 0x3f;
    for (size_t i = 1; i < n; i++)
        x = (x << 8) | buf[i];
    *v = x;
    return (int)n;
}
