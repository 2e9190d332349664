#include "proto/frame.h"

#include "core/error.h"
#include "proto/varint.h"

int frame_parse(const uint8_t *buf, size_t len, size_t *hdr_len, size_t *body_len)
{
    uint64_t v;
    int n = varint_decode(buf, len, &v);
    if (n < 0)
        return n;
    if (v > FRAME_MAX_BODY)
        return ROOST_ETOOBIG;
    *hdr_len = (size_t)n;
    *body_len = (size_t)v;
    return 0;
}

int frame_put_header(uint8_t *out, size_t cap, size_t body_len)
{
    if (body_len > FRAME_MAX_BODY)
        return ROOST_ETOOBIG;
    return varint_encode(out, cap, body_len);
}
