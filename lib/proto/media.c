#include "proto/media.h"

#include <string.h>

#include "core/be.h"
#include "core/error.h"

int media_c2r_encode(const struct media_hdr *h, uint8_t *out, size_t cap)
{
    if (h->flags & ~MEDIA_F_KNOWN)
        return ROOST_EINVAL;
    if (cap < MEDIA_C2R_HDR_LEN)
        return ROOST_ENOSPC;
    out[0] = MEDIA_HDR_VERSION << 6;
    out[1] = h->stream_id;
    out[2] = h->flags;
    out[3] = 0;
    be_put32(out + 4, h->seq);
    be_put32(out + 8, h->timestamp);
    return MEDIA_C2R_HDR_LEN;
}

int media_c2r_decode(const uint8_t *buf, size_t len, struct media_hdr *h)
{
    if (len < MEDIA_C2R_HDR_LEN)
        return ROOST_ETRUNC;
    if (buf[0] >> 6 != MEDIA_HDR_VERSION)
        return ROOST_EUNKNOWN;
    h->participant_id = 0;
    h->stream_id = buf[1];
    h->flags = buf[2];
    h->seq = be_get32(buf + 4);
    h->timestamp = be_get32(buf + 8);
    return MEDIA_C2R_HDR_LEN;
}

int media_r2c_encode(const struct media_hdr *h, uint8_t *out, size_t cap)
{
    if (h->participant_id == 0)
        return ROOST_EINVAL;
    if (h->flags & ~MEDIA_F_KNOWN)
        return ROOST_EINVAL;
    if (cap < MEDIA_R2C_HDR_LEN)
        return ROOST_ENOSPC;
    be_put32(out, h->participant_id);
    return MEDIA_SENDER_LEN + media_c2r_encode(h, out + MEDIA_SENDER_LEN, cap - MEDIA_SENDER_LEN);
}

int media_r2c_decode(const uint8_t *buf, size_t len, struct media_hdr *h)
{
    if (len < MEDIA_R2C_HDR_LEN)
        return ROOST_ETRUNC;
    int rc = media_c2r_decode(buf + MEDIA_SENDER_LEN, len - MEDIA_SENDER_LEN, h);
    if (rc < 0)
        return rc;
    uint32_t pid = be_get32(buf);
    if (pid == 0)
        return ROOST_EMALFORMED;
    h->participant_id = pid;
    return MEDIA_R2C_HDR_LEN;
}

int media_relay_datagram(const uint8_t *in, size_t in_len, uint32_t pid, uint8_t *out, size_t cap)
{
    struct media_hdr h;
    int rc = media_c2r_decode(in, in_len, &h);
    if (rc < 0)
        return rc;
    if (pid == 0)
        return ROOST_EINVAL;
    if (in_len > MEDIA_DATAGRAM_MAX)
        return ROOST_ETOOBIG;
    if (cap < MEDIA_SENDER_LEN || cap - MEDIA_SENDER_LEN < in_len)
        return ROOST_ENOSPC;
    be_put32(out, pid);
    memcpy(out + MEDIA_SENDER_LEN, in, in_len);
    return (int)(in_len + MEDIA_SENDER_LEN);
}
