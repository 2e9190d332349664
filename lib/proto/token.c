#include "proto/token.h"
#include "core/be.h"
#include "core/error.h"
#include "proto/perm.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>

#define TAG_B64_LEN TOKEN_B64URL_LEN(TOKEN_TAG_LEN)         /* 43 */
#define PAYLOAD_B64_MIN TOKEN_B64URL_LEN(TOKEN_PAYLOAD_MIN) /* 51 */
#define PAYLOAD_B64_MAX TOKEN_B64URL_LEN(TOKEN_PAYLOAD_MAX) /* 219 */

_Static_assert(TAG_B64_LEN == 43 && PAYLOAD_B64_MIN == 51 && PAYLOAD_B64_MAX == 219,
               "lengths documented in docs/TOKENS.md");
_Static_assert(3 + TOKEN_KEY_ID_MAX + 1 + PAYLOAD_B64_MAX + 1 + TAG_B64_LEN <= TOKEN_MAX_LEN,
               "largest token fits the cap");

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ------------------------------------------------------------ helpers */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

static int key_id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Strict UTF-8 (no overlong forms, no surrogates, <= U+10FFFF) without C0
 * controls or DEL: room and identity end up in logs and on the CLI. */
static int text_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int claims_ok(const struct token_claims *c)
{
    if (c->room_len == 0 || c->room_len > TOKEN_ROOM_MAX || c->identity_len == 0 ||
        c->identity_len > TOKEN_IDENTITY_MAX)
        return 0;
    if (!text_ok((const uint8_t *)c->room, c->room_len) ||
        !text_ok((const uint8_t *)c->identity, c->identity_len))
        return 0;
    if ((c->perms & ~TOKEN_PERM_ALL) != 0 || c->exp <= c->nbf)
        return 0;
    return 1;
}

/* tag = HMAC-SHA256(key, TOKEN_LABEL || 0x00 || text) */
static int compute_tag(const struct token_key *key, const char *text, size_t len,
                       uint8_t tag[TOKEN_TAG_LEN])
{
    uint8_t msg[sizeof(TOKEN_LABEL) + TOKEN_MAX_LEN]; /* sizeof counts the NUL separator */
    if (len > TOKEN_MAX_LEN)
        return ROOST_ETOOBIG;
    memcpy(msg, TOKEN_LABEL, sizeof(TOKEN_LABEL));
    memcpy(msg + sizeof(TOKEN_LABEL), text, len);
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key->secret, TOKEN_KEY_LEN, msg,
                         sizeof(TOKEN_LABEL) + len, tag) < 0)
        return ROOST_ECRYPTO;
    return 0;
}

/* ------------------------------------------------------------ keyring */

int token_key_id_check(const char *id, size_t len)
{
    if (len == 0)
        return ROOST_EMALFORMED;
    if (len > TOKEN_KEY_ID_MAX)
        return ROOST_ETOOBIG;
    for (size_t i = 0; i < len; i++)
        if (!key_id_char((unsigned char)id[i]))
            return ROOST_EMALFORMED;
    return 0;
}

void token_keyring_init(struct token_keyring *ring)
{
    memset(ring, 0, sizeof(*ring));
}

int token_keyring_add(struct token_keyring *ring, const char *id, size_t id_len,
                      const uint8_t secret[TOKEN_KEY_LEN])
{
    if (token_key_id_check(id, id_len) != 0)
        return ROOST_EINVAL;
    if (token_keyring_find(ring, id, id_len) != NULL)
        return ROOST_EEXIST;
    if (ring->n >= TOKEN_KEYRING_MAX)
        return ROOST_EFULL;
    struct token_key *k = &ring->keys[ring->n++];
    memset(k, 0, sizeof(*k));
    memcpy(k->id, id, id_len);
    k->id_len = (uint8_t)id_len;
    memcpy(k->secret, secret, TOKEN_KEY_LEN);
    return 0;
}

const struct token_key *token_keyring_find(const struct token_keyring *ring, const char *id,
                                           size_t id_len)
{
    for (unsigned i = 0; i < ring->n && i < TOKEN_KEYRING_MAX; i++) {
        const struct token_key *k = &ring->keys[i];
        if (k->id_len == id_len && memcmp(k->id, id, id_len) == 0)
            return k;
    }
    return NULL;
}

const struct token_key *token_keyring_signer(const struct token_keyring *ring)
{
    return ring->n > 0 ? &ring->keys[0] : NULL;
}

void token_keyring_wipe(struct token_keyring *ring)
{
    explicit_bzero(ring, sizeof(*ring));
}

/* ------------------------------------------------------------ base64url */

size_t token_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

int token_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (len % 4 == 1)
        return ROOST_EMALFORMED; /* no byte string encodes to this length */
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return ROOST_ENOSPC;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return ROOST_EMALFORMED;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits (2 or 4) must be zero, or two texts would decode to the
     * same bytes and a bit flip there would go unnoticed. */
    if (acc != 0)
        return ROOST_EMALFORMED;
    *out_len = o;
    return 0;
}

/* ------------------------------------------------------------ mint */

int token_claims_set(struct token_claims *c, const char *room, size_t room_len,
                     const char *identity, size_t identity_len, unsigned perms, uint64_t nbf,
                     uint64_t exp, const uint8_t id[TOKEN_ID_LEN])
{
    memset(c, 0, sizeof(*c));
    if (room_len == 0 || room_len > TOKEN_ROOM_MAX || identity_len == 0 ||
        identity_len > TOKEN_IDENTITY_MAX)
        return ROOST_EINVAL;
    memcpy(c->room, room, room_len);
    c->room_len = (uint8_t)room_len;
    memcpy(c->identity, identity, identity_len);
    c->identity_len = (uint8_t)identity_len;
    c->perms = (uint8_t)(perms & 0xff);
    c->nbf = nbf;
    c->exp = exp;
    memcpy(c->id, id, TOKEN_ID_LEN);
    if (perms > 0xff || !claims_ok(c)) {
        memset(c, 0, sizeof(*c));
        return ROOST_EINVAL;
    }
    return 0;
}

int token_encode(const struct token_key *key, const uint8_t *payload, size_t payload_len, char *out,
                 size_t cap)
{
    if (token_key_id_check(key->id, key->id_len) != 0)
        return ROOST_EINVAL;
    if (payload_len > TOKEN_PAYLOAD_MAX)
        return ROOST_ETOOBIG;
    size_t signed_len = 3 + key->id_len + 1 + token_b64url_len(payload_len);
    size_t total = signed_len + 1 + TAG_B64_LEN;
    if (cap < total + 1)
        return ROOST_ENOSPC;
    size_t o = 0;
    memcpy(out, "v1.", 3);
    o += 3;
    memcpy(out + o, key->id, key->id_len);
    o += key->id_len;
    out[o++] = '.';
    o += token_b64url_encode(payload, payload_len, out + o);
    uint8_t tag[TOKEN_TAG_LEN];
    int rc = compute_tag(key, out, o, tag);
    if (rc != 0)
        return rc;
    out[o++] = '.';
    o += token_b64url_encode(tag, TOKEN_TAG_LEN, out + o);
    return (int)o;
}

int token_mint(const struct token_key *key, const struct token_claims *c, char *out, size_t cap)
{
    if (!claims_ok(c))
        return ROOST_EINVAL;
    uint8_t p[TOKEN_PAYLOAD_MAX];
    size_t n = 0;
    p[n++] = TOKEN_PAYLOAD_VERSION;
    p[n++] = c->perms;
    be_put64(p + n, c->nbf);
    n += 8;
    be_put64(p + n, c->exp);
    n += 8;
    memcpy(p + n, c->id, TOKEN_ID_LEN);
    n += TOKEN_ID_LEN;
    p[n++] = c->room_len;
    memcpy(p + n, c->room, c->room_len);
    n += c->room_len;
    p[n++] = c->identity_len;
    memcpy(p + n, c->identity, c->identity_len);
    n += c->identity_len;
    return token_encode(key, p, n, out, cap);
}

/* ------------------------------------------------------------ verify */

/* Parses an authenticated payload into c. */
static int parse_payload(const uint8_t *p, size_t n, struct token_claims *c)
{
    size_t o = 0;
    if (n < TOKEN_PAYLOAD_MIN)
        return ROOST_ETRUNC;
    if (p[o++] != TOKEN_PAYLOAD_VERSION)
        return ROOST_EUNKNOWN;
    c->perms = p[o++];
    if ((c->perms & ~TOKEN_PERM_ALL) != 0)
        return ROOST_EMALFORMED;
    c->nbf = be_get64(p + o);
    o += 8;
    c->exp = be_get64(p + o);
    o += 8;
    memcpy(c->id, p + o, TOKEN_ID_LEN);
    o += TOKEN_ID_LEN;

    size_t rl = p[o++];
    if (rl == 0)
        return ROOST_EMALFORMED;
    if (rl > TOKEN_ROOM_MAX)
        return ROOST_ETOOBIG;
    if (n - o < rl + 1)
        return ROOST_ETRUNC;
    memcpy(c->room, p + o, rl);
    c->room_len = (uint8_t)rl;
    o += rl;

    size_t il = p[o++];
    if (il == 0)
        return ROOST_EMALFORMED;
    if (il > TOKEN_IDENTITY_MAX)
        return ROOST_ETOOBIG;
    if (n - o < il)
        return ROOST_ETRUNC;
    memcpy(c->identity, p + o, il);
    c->identity_len = (uint8_t)il;
    o += il;

    if (o != n)
        return ROOST_EMALFORMED; /* trailing bytes */
    if (!text_ok((const uint8_t *)c->room, rl) || !text_ok((const uint8_t *)c->identity, il))
        return ROOST_EMALFORMED;
    if (c->exp <= c->nbf)
        return ROOST_EMALFORMED;
    return 0;
}

/* All syntax up to (not including) the tag check. */
static int split(const char *tok, size_t len, size_t *kid_end, size_t *pay_end)
{
    if (len == 0)
        return ROOST_ETRUNC;
    if (len > TOKEN_MAX_LEN)
        return ROOST_ETOOBIG;
    const char *d1 = memchr(tok, '.', len);
    size_t vlen = d1 ? (size_t)(d1 - tok) : len;
    if (vlen != 2 || tok[0] != 'v' || tok[1] != '1') {
        if (vlen < 2 || tok[0] != 'v')
            return ROOST_EMALFORMED;
        for (size_t i = 1; i < vlen; i++)
            if (tok[i] < '0' || tok[i] > '9')
                return ROOST_EMALFORMED;
        return ROOST_EUNKNOWN;
    }
    if (d1 == NULL)
        return ROOST_ETRUNC;
    size_t p1 = 3;
    const char *d2 = memchr(tok + p1, '.', len - p1);
    if (d2 == NULL)
        return ROOST_ETRUNC;
    size_t p2 = (size_t)(d2 - tok) + 1;
    const char *d3 = memchr(tok + p2, '.', len - p2);
    if (d3 == NULL)
        return ROOST_ETRUNC;
    size_t p3 = (size_t)(d3 - tok) + 1;
    if (memchr(tok + p3, '.', len - p3) != NULL)
        return ROOST_EMALFORMED;
    *kid_end = p2 - 1;
    *pay_end = p3 - 1;
    return 0;
}

int token_verify(const char *tok, size_t len, const struct token_keyring *keys, const char *room,
                 size_t room_len, uint64_t now_s, uint32_t skew_s, struct token_claims *out)
{
    uint8_t payload[TOKEN_PAYLOAD_MAX];
    uint8_t tag[TOKEN_TAG_LEN], want[TOKEN_TAG_LEN];
    size_t kid_end = 0, pay_end = 0, plen = 0, tlen = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = split(tok, len, &kid_end, &pay_end);
    if (rc != 0)
        return rc;

    const char *kid = tok + 3;
    size_t kid_len = kid_end - 3;
    rc = token_key_id_check(kid, kid_len);
    if (rc != 0)
        return rc;

    const char *pay = tok + kid_end + 1;
    size_t pay_len = pay_end - kid_end - 1;
    if (pay_len > PAYLOAD_B64_MAX)
        return ROOST_ETOOBIG;
    if (pay_len < PAYLOAD_B64_MIN)
        return ROOST_ETRUNC;
    const char *tg = tok + pay_end + 1;
    size_t tg_len = len - pay_end - 1;
    if (tg_len > TAG_B64_LEN)
        return ROOST_ETOOBIG;
    if (tg_len < TAG_B64_LEN)
        return ROOST_ETRUNC;

    /* Decoding is syntax only; the payload is not interpreted before the tag
     * has been checked. */
    if (token_b64url_decode(tg, tg_len, tag, sizeof(tag), &tlen) != 0 || tlen != TOKEN_TAG_LEN)
        return ROOST_EMALFORMED;
    if (token_b64url_decode(pay, pay_len, payload, sizeof(payload), &plen) != 0)
        return ROOST_EMALFORMED;

    const struct token_key *key = token_keyring_find(keys, kid, kid_len);
    if (key == NULL)
        return ROOST_EBADKEY;
    rc = compute_tag(key, tok, pay_end, want);
    if (rc != 0)
        return rc;
    rc = gnutls_memcmp(tag, want, TOKEN_TAG_LEN) == 0 ? 0 : ROOST_EBADTAG;
    explicit_bzero(want, sizeof(want));
    if (rc != 0)
        return rc;

    rc = parse_payload(payload, plen, out);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    memcpy(out->key_id, kid, kid_len);

    if (room_len != out->room_len || memcmp(room, out->room, room_len) != 0)
        return ROOST_EWRONGROOM;
    if (sat_add(now_s, skew_s) < out->nbf)
        return ROOST_ENOTYET;
    if (now_s >= sat_add(out->exp, skew_s))
        return ROOST_EEXPIRED;
    return 0;
}

unsigned token_room_perms(unsigned token_perms)
{
    return ((token_perms & TOKEN_PERM_PUBLISH) ? PERM_PUBLISH : 0) |
           ((token_perms & TOKEN_PERM_SUBSCRIBE) ? PERM_SUBSCRIBE : 0);
}
