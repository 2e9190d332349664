#include "proto/varint.h"

#include "core/be.h"
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
    switch (n) {
    case 1:
        out[0] = (uint8_t)v;
        break;
    case 2:
        be_put16(out, (uint16_t)v);
        break;
    case 4:
        be_put32(out, (uint32_t)v);
        break;
    default:
        be_put64(out, v);
        break;
    }
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
    /* The value is the n big-endian bytes without the two prefix bits. */
    switch (n) {
    case 1:
        *v = buf[0] & 0x3f;
        break;
    case 2:
        *v = be_get16(buf) & 0x3fff;
        break;
    case 4:
        *v = be_get32(buf) & 0x3fffffffu;
        break;
    default:
        *v = be_get64(buf) & VARINT_MAX;
        break;
    }
    return (int)n;
}
