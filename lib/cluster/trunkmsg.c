/* Trunk message codec (trunkmsg.h). */
#include "cluster/trunkmsg.h"

#include <stdbool.h>
#include <string.h>
#include <gnutls/crypto.h>

#include "core/be.h"
#include "core/error.h"

struct wr {
    uint8_t *p;
    size_t cap, n;
    bool over;
};

static void w_bytes(struct wr *w, const void *b, size_t len)
{
    if (w->over || w->cap - w->n < len) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->n, b, len);
    w->n += len;
}

static void w_u8(struct wr *w, uint8_t v)
{
    w_bytes(w, &v, 1);
}

static void w_u16(struct wr *w, uint16_t v)
{
    uint8_t b[2];
    be_put16(b, v);
    w_bytes(w, b, 2);
}

static void w_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4];
    be_put32(b, v);
    w_bytes(w, b, 4);
}

static void w_u64(struct wr *w, uint64_t v)
{
    uint8_t b[8];
    be_put64(b, v);
    w_bytes(w, b, 8);
}

static void w_str(struct wr *w, const void *s, uint8_t len)
{
    w_u8(w, len);
    w_bytes(w, s, len);
}

static bool has_room_scope(uint8_t type)
{
    return type >= TRUNKMSG_SUBSCRIBE && type <= TRUNKMSG_QUALITY;
}

/* The checks the encoder and the decoder share. */
static bool valid(const struct trunkmsg *m)
{
    if (m->type == TRUNKMSG_HELLO)
        return m->id_len >= 1 && m->id_len <= TRUNKMSG_ID_MAX && m->prefix != 0;
    if (m->type == TRUNKMSG_PING)
        return true;
    if (!has_room_scope(m->type) || m->handle == 0)
        return false;
    switch (m->type) {
    case TRUNKMSG_SUBSCRIBE:
        return m->room_len >= 1 && m->room_len <= TRUNKMSG_ROOM_MAX;
    case TRUNKMSG_PRESENCE:
        return m->pid != 0 && (m->kind == TRUNK_PRESENCE_JOIN || m->kind == TRUNK_PRESENCE_LEAVE) &&
               m->name_len <= TRUNKMSG_NAME_MAX;
    case TRUNKMSG_KFREQ:
        return m->pid != 0;
    case TRUNKMSG_QUALITY:
        return m->pid != 0 && m->loss <= 1000;
    default:
        return true;
    }
}

int trunkmsg_encode(const struct trunkmsg *m, uint8_t *out, size_t cap)
{
    if (!valid(m))
        return ROOST_EINVAL;
    struct wr w = {.p = out, .cap = cap};
    w_u8(&w, m->type);
    if (m->type == TRUNKMSG_HELLO) {
        w_u8(&w, m->version);
        w_str(&w, m->id, m->id_len);
        w_bytes(&w, m->mac, TRUNKMSG_MAC_LEN);
        w_u8(&w, m->prefix);
        return w.over ? ROOST_ENOSPC : (int)w.n;
    }
    if (m->type == TRUNKMSG_PING)
        return w.over ? ROOST_ENOSPC : (int)w.n;
    w_u32(&w, m->handle);
    w_u64(&w, m->gen);
    switch (m->type) {
    case TRUNKMSG_SUBSCRIBE:
        w_str(&w, m->room, m->room_len);
        break;
    case TRUNKMSG_SUB_ACK:
        w_u32(&w, m->code);
        break;
    case TRUNKMSG_PRESENCE:
        w_u8(&w, m->kind);
        w_u32(&w, m->pid);
        if (m->kind == TRUNK_PRESENCE_JOIN) {
            w_u8(&w, m->flags);
            w_str(&w, m->name, m->name_len);
        }
        break;
    case TRUNKMSG_KFREQ:
        w_u32(&w, m->pid);
        w_u32(&w, m->from);
        w_u8(&w, m->stream);
        break;
    case TRUNKMSG_QUALITY:
        w_u32(&w, m->pid);
        w_u16(&w, m->loss);
        w_u32(&w, m->rtt_us);
        break;
    default: /* UNSUBSCRIBE: handle and generation only */
        break;
    }
    return w.over ? ROOST_ENOSPC : (int)w.n;
}

struct rd {
    const uint8_t *p;
    size_t len, n;
    bool trunc;
};

static const uint8_t *r_take(struct rd *r, size_t k)
{
    if (r->trunc || r->len - r->n < k) {
        r->trunc = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->n;
    r->n += k;
    return p;
}

static uint8_t r_u8(struct rd *r)
{
    const uint8_t *p = r_take(r, 1);
    return p ? p[0] : 0;
}

static uint16_t r_u16(struct rd *r)
{
    const uint8_t *p = r_take(r, 2);
    return p ? be_get16(p) : 0;
}

static uint32_t r_u32(struct rd *r)
{
    const uint8_t *p = r_take(r, 4);
    return p ? be_get32(p) : 0;
}

static uint64_t r_u64(struct rd *r)
{
    const uint8_t *p = r_take(r, 8);
    return p ? be_get64(p) : 0;
}

/* A string into dst (cap bytes); *bad when its length is over cap. */
static uint8_t r_str(struct rd *r, void *dst, size_t cap, bool *bad)
{
    uint8_t n = r_u8(r);
    if (n > cap) {
        *bad = true;
        return 0;
    }
    const uint8_t *p = r_take(r, n);
    if (p != NULL && n > 0)
        memcpy(dst, p, n);
    return n;
}

int trunkmsg_decode(const uint8_t *body, size_t len, struct trunkmsg *m)
{
    memset(m, 0, sizeof(*m));
    struct rd r = {.p = body, .len = len};
    bool bad = false;
    m->type = r_u8(&r);
    if (r.trunc)
        return ROOST_ETRUNC;
    if (m->type == TRUNKMSG_HELLO) {
        m->version = r_u8(&r);
        m->id_len = r_str(&r, m->id, TRUNKMSG_ID_MAX, &bad);
        if (bad)
            return ROOST_EMALFORMED;
        const uint8_t *mac = r_take(&r, TRUNKMSG_MAC_LEN);
        if (mac != NULL)
            memcpy(m->mac, mac, TRUNKMSG_MAC_LEN);
        m->prefix = r_u8(&r);
    } else if (m->type == TRUNKMSG_PING) {
        return 0;
    } else if (has_room_scope(m->type)) {
        m->handle = r_u32(&r);
        m->gen = r_u64(&r);
        switch (m->type) {
        case TRUNKMSG_SUBSCRIBE:
            m->room_len = r_str(&r, m->room, TRUNKMSG_ROOM_MAX, &bad);
            break;
        case TRUNKMSG_SUB_ACK:
            m->code = r_u32(&r);
            break;
        case TRUNKMSG_PRESENCE:
            m->kind = r_u8(&r);
            m->pid = r_u32(&r);
            if (m->kind == TRUNK_PRESENCE_JOIN) {
                m->flags = r_u8(&r);
                m->name_len = r_str(&r, m->name, TRUNKMSG_NAME_MAX, &bad);
            }
            break;
        case TRUNKMSG_KFREQ:
            m->pid = r_u32(&r);
            m->from = r_u32(&r);
            m->stream = r_u8(&r);
            break;
        case TRUNKMSG_QUALITY:
            m->pid = r_u32(&r);
            m->loss = r_u16(&r);
            m->rtt_us = r_u32(&r);
            break;
        default:
            break;
        }
    } else {
        return ROOST_EUNKNOWN;
    }
    if (bad)
        return ROOST_EMALFORMED;
    if (r.trunc)
        return ROOST_ETRUNC;
    return valid(m) ? 0 : ROOST_EMALFORMED;
}

void trunkmsg_dgram_hdr(uint8_t *out, uint32_t handle, uint64_t gen, bool replay)
{
    out[0] = replay ? TRUNKMSG_DGRAM_REPLAY : TRUNKMSG_DGRAM;
    be_put32(out + 1, handle);
    be_put64(out + 5, gen);
}

int trunkmsg_dgram_parse(const uint8_t *d, size_t len, uint32_t *handle, uint64_t *gen,
                         bool *replay)
{
    if (len < TRUNKMSG_DGRAM_HDR_LEN)
        return ROOST_ETRUNC;
    if (d[0] != TRUNKMSG_DGRAM && d[0] != TRUNKMSG_DGRAM_REPLAY)
        return ROOST_EMALFORMED;
    *replay = d[0] == TRUNKMSG_DGRAM_REPLAY;
    *handle = be_get32(d + 1);
    *gen = be_get64(d + 5);
    return *handle == 0 ? ROOST_EMALFORMED : TRUNKMSG_DGRAM_HDR_LEN;
}

int trunkmsg_mac(const uint8_t *secret, size_t secret_len, char role, const char *id, size_t id_len,
                 uint8_t prefix, const char *peer, size_t peer_len, const uint8_t exporter[32],
                 uint8_t out[TRUNKMSG_MAC_LEN])
{
    if (id_len > TRUNKMSG_ID_MAX || peer_len > TRUNKMSG_ID_MAX)
        return ROOST_EINVAL;
    uint8_t msg[16 + 3 + 2 * TRUNKMSG_ID_MAX + 32];
    size_t n = 0;
    memcpy(msg, "roost-trunk/1 ", 14);
    n = 14;
    msg[n++] = (uint8_t)role;
    msg[n++] = (uint8_t)id_len;
    memcpy(msg + n, id, id_len);
    n += id_len;
    msg[n++] = prefix;
    msg[n++] = (uint8_t)peer_len;
    memcpy(msg + n, peer, peer_len);
    n += peer_len;
    memcpy(msg + n, exporter, 32);
    n += 32;
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, secret_len, msg, n, out) != 0)
        return ROOST_ECRYPTO;
    return 0;
}

const char *trunkmsg_type_name(uint8_t type)
{
    switch (type) {
    case TRUNKMSG_HELLO:
        return "HELLO";
    case TRUNKMSG_SUBSCRIBE:
        return "SUBSCRIBE";
    case TRUNKMSG_UNSUBSCRIBE:
        return "UNSUBSCRIBE";
    case TRUNKMSG_SUB_ACK:
        return "SUB_ACK";
    case TRUNKMSG_PRESENCE:
        return "PRESENCE";
    case TRUNKMSG_KFREQ:
        return "KFREQ";
    case TRUNKMSG_QUALITY:
        return "QUALITY";
    case TRUNKMSG_PING:
        return "PING";
    default:
        return "UNKNOWN";
    }
}
