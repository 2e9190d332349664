/* Join tokens (lib/proto/token): mint/verify round trip, a known-answer token
 * computed independently (Python hmac, docs/TOKENS.md), every rejection path,
 * clock-skew boundaries, caps, strict base64url, every single-bit flip, and
 * key rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/error.h"
#include "proto/perm.h"
#include "proto/token.h"

#define NOW 1700000000u
#define SKEW 30u

/* From docs/TOKENS.md: key bytes 0..31, id "k1", room "room-1", identity
 * "alice", all permissions, nbf 1700000000, exp 1700000600, token id
 * a0..af. Computed with Python's hmac/base64, not with this code. */
static const char kat_token[] =
    "v1.k1.AQcAAAAAZVPxAAAAAABlU_NYoKGio6SlpqeoqaqrrK2urwZyb29tLTEFYWxpY2U."
    "gh-LCdZIE8_JsMfM491OtakvnCotD1986m2UUXdLcx8";

static void secret_fill(uint8_t s[TOKEN_KEY_LEN], uint8_t base)
{
    for (int i = 0; i < TOKEN_KEY_LEN; i++)
        s[i] = (uint8_t)(base + i);
}

/* ring with "k1" (secret 0..31) and optionally "k2" (secret 100..131) */
static void ring_make(struct token_keyring *r, int with_k2)
{
    uint8_t s[TOKEN_KEY_LEN];
    token_keyring_init(r);
    secret_fill(s, 0);
    assert_int_equal(token_keyring_add(r, "k1", 2, s), 0);
    if (with_k2) {
        secret_fill(s, 100);
        assert_int_equal(token_keyring_add(r, "k2", 2, s), 0);
    }
}

static void claims_make(struct token_claims *c, const char *room, unsigned perms, uint64_t nbf,
                        uint64_t exp)
{
    uint8_t id[TOKEN_ID_LEN];
    for (int i = 0; i < TOKEN_ID_LEN; i++)
        id[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(token_claims_set(c, room, strlen(room), "alice", 5, perms, nbf, exp, id), 0);
}

/* Mints a token for room-1 valid [NOW, NOW+600) with key k1. */
static int mint_default(char *out, size_t cap)
{
    struct token_keyring r;
    struct token_claims c;
    ring_make(&r, 0);
    claims_make(&c, "room-1", TOKEN_PERM_ALL, NOW, NOW + 600);
    int n = token_mint(token_keyring_signer(&r), &c, out, cap);
    assert_true(n > 0);
    return n;
}

static int verify_str(const char *tok, const struct token_keyring *r, const char *room,
                      uint64_t now, struct token_claims *out)
{
    return token_verify(tok, strlen(tok), r, room, strlen(room), now, SKEW, out);
}

static int is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

/* Splits tok into its four parts (offsets of the dots). */
static void dots(const char *tok, size_t d[3])
{
    int k = 0;
    for (size_t i = 0; tok[i] != '\0'; i++)
        if (tok[i] == '.' && k < 3)
            d[k++] = i;
    assert_int_equal(k, 3);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    int n = mint_default(tok, sizeof(tok));
    assert_int_equal((size_t)n, strlen(tok));
    assert_string_equal(tok, kat_token); /* deterministic given the inputs */

    struct token_keyring r;
    struct token_claims c;
    ring_make(&r, 1);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &c), 0);
    assert_string_equal(c.room, "room-1");
    assert_int_equal(c.room_len, 6);
    assert_string_equal(c.identity, "alice");
    assert_int_equal(c.identity_len, 5);
    assert_int_equal(c.perms, TOKEN_PERM_ALL);
    assert_int_equal(c.nbf, NOW);
    assert_int_equal(c.exp, NOW + 600);
    assert_string_equal(c.key_id, "k1");
    for (int i = 0; i < TOKEN_ID_LEN; i++)
        assert_int_equal(c.id[i], 0xa0 + i);

    /* Permissions travel as minted. */
    struct token_claims m;
    claims_make(&m, "room-1", TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE, NOW, NOW + 10);
    assert_true(token_mint(token_keyring_signer(&r), &m, tok, sizeof(tok)) > 0);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &c), 0);
    assert_int_equal(c.perms, TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE);
}

/* The tag is HMAC-SHA256 over label || 0 || text-before-tag: recomputed here
 * with gnutls directly, independent of token.c. */
static void test_tag_definition(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    size_t d[3];
    dots(tok, d);
    uint8_t msg[600], key[TOKEN_KEY_LEN], tag[32], got[32];
    size_t label = strlen("roost-join-token-v1") + 1, glen = 0;
    memcpy(msg, "roost-join-token-v1", label); /* includes the 0 byte */
    memcpy(msg + label, tok, d[2]);
    secret_fill(key, 0);
    assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, sizeof(key), msg, label + d[2], tag),
                     0);
    assert_int_equal(
        token_b64url_decode(tok + d[2] + 1, strlen(tok) - d[2] - 1, got, sizeof(got), &glen), 0);
    assert_int_equal(glen, 32);
    assert_memory_equal(got, tag, 32);
}

static void test_expired(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims c;
    ring_make(&r, 0);
    uint64_t exp = NOW + 600;
    /* Valid while now < exp + skew. */
    assert_int_equal(verify_str(tok, &r, "room-1", exp - 1, &c), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", exp, &c), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", exp + SKEW - 1, &c), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", exp + SKEW, &c), ROOST_EEXPIRED);
    assert_int_equal(c.exp, exp); /* authenticated claims are reported */
    assert_int_equal(verify_str(tok, &r, "room-1", exp + 100000, &c), ROOST_EEXPIRED);
    /* Without skew the boundary is exp itself. */
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, exp - 1, 0, &c), 0);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, exp, 0, &c), ROOST_EEXPIRED);
}

static void test_not_yet_valid(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims c;
    ring_make(&r, 0);
    /* Valid once nbf <= now + skew. */
    assert_int_equal(verify_str(tok, &r, "room-1", NOW - SKEW, &c), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW - SKEW - 1, &c), ROOST_ENOTYET);
    assert_int_equal(c.nbf, NOW);
    assert_int_equal(verify_str(tok, &r, "room-1", 0, &c), ROOST_ENOTYET);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, NOW, 0, &c), 0);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, NOW - 1, 0, &c),
                     ROOST_ENOTYET);
}

/* Saturating time arithmetic: no wrap-around near UINT64_MAX. */
static void test_time_extremes(void **state)
{
    (void)state;
    struct token_keyring r;
    struct token_claims c, v;
    char tok[TOKEN_MAX_LEN + 1];
    ring_make(&r, 0);
    claims_make(&c, "room-1", TOKEN_PERM_ALL, UINT64_MAX - 10, UINT64_MAX);
    assert_true(token_mint(token_keyring_signer(&r), &c, tok, sizeof(tok)) > 0);
    assert_int_equal(verify_str(tok, &r, "room-1", UINT64_MAX - 5, &v), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", 0, &v), ROOST_ENOTYET);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, UINT64_MAX, UINT32_MAX, &v),
                     ROOST_EEXPIRED);
    claims_make(&c, "room-1", TOKEN_PERM_ALL, 0, 1);
    assert_true(token_mint(token_keyring_signer(&r), &c, tok, sizeof(tok)) > 0);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, 0, 0, &v), 0);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "room-1", 6, 1, 0, &v), ROOST_EEXPIRED);
}

static void test_wrong_room(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims c;
    ring_make(&r, 0);
    assert_int_equal(verify_str(tok, &r, "room-2", NOW, &c), ROOST_EWRONGROOM);
    assert_string_equal(c.room, "room-1");
    assert_int_equal(verify_str(tok, &r, "room-", NOW, &c), ROOST_EWRONGROOM);
    assert_int_equal(verify_str(tok, &r, "room-10", NOW, &c), ROOST_EWRONGROOM);
    assert_int_equal(verify_str(tok, &r, "ROOM-1", NOW, &c), ROOST_EWRONGROOM);
    assert_int_equal(token_verify(tok, strlen(tok), &r, "", 0, NOW, SKEW, &c), ROOST_EWRONGROOM);
    /* Room is checked before time: an expired token for another room says so. */
    assert_int_equal(verify_str(tok, &r, "room-2", NOW + 100000, &c), ROOST_EWRONGROOM);
}

/* Re-encodes the payload part of tok after fn changed its bytes; the tag is
 * kept. */
static void retamper_payload(char *tok, size_t cap, void (*fn)(uint8_t *p, size_t n))
{
    size_t d[3];
    dots(tok, d);
    uint8_t p[TOKEN_PAYLOAD_MAX];
    size_t n = 0;
    assert_int_equal(token_b64url_decode(tok + d[1] + 1, d[2] - d[1] - 1, p, sizeof(p), &n), 0);
    fn(p, n);
    char tail[64];
    snprintf(tail, sizeof(tail), "%s", tok + d[2]);
    char enc[TOKEN_B64URL_LEN(TOKEN_PAYLOAD_MAX) + 1];
    token_b64url_encode(p, n, enc);
    snprintf(tok + d[1] + 1, cap - d[1] - 1, "%s%s", enc, tail);
}

static void grant_far_expiry(uint8_t *p, size_t n)
{
    (void)n;
    p[10] ^= 0x01; /* high byte of exp */
}

static void change_room(uint8_t *p, size_t n)
{
    (void)n;
    p[1 + 1 + 8 + 8 + 16 + 1 + 5] = '2'; /* room-1 -> room-2 */
}

static void test_tampered_payload(void **state)
{
    (void)state;
    struct token_keyring r;
    struct token_claims c, v;
    char tok[TOKEN_MAX_LEN + 1];
    ring_make(&r, 0);
    /* A subscribe-only token upgraded to publish. */
    claims_make(&c, "room-1", TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE, NOW, NOW + 600);
    assert_true(token_mint(token_keyring_signer(&r), &c, tok, sizeof(tok)) > 0);
    size_t d[3];
    dots(tok, d);
    uint8_t p[TOKEN_PAYLOAD_MAX];
    size_t n = 0;
    assert_int_equal(token_b64url_decode(tok + d[1] + 1, d[2] - d[1] - 1, p, sizeof(p), &n), 0);
    assert_int_equal(p[1], TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE);
    char forged[TOKEN_MAX_LEN + 1];
    memcpy(forged, tok, sizeof(forged));
    p[1] |= TOKEN_PERM_PUBLISH;
    char enc[TOKEN_B64URL_LEN(TOKEN_PAYLOAD_MAX) + 1];
    token_b64url_encode(p, n, enc);
    snprintf(forged + d[1] + 1, sizeof(forged) - d[1] - 1, "%s%s", enc, tok + d[2]);
    assert_int_equal(verify_str(forged, &r, "room-1", NOW, &v), ROOST_EBADTAG);
    assert_true(is_zero(&v, sizeof(v)));

    memcpy(forged, tok, sizeof(forged));
    retamper_payload(forged, sizeof(forged), grant_far_expiry);
    assert_int_equal(verify_str(forged, &r, "room-1", NOW, &v), ROOST_EBADTAG);

    memcpy(forged, tok, sizeof(forged));
    retamper_payload(forged, sizeof(forged), change_room);
    assert_int_equal(verify_str(forged, &r, "room-2", NOW, &v), ROOST_EBADTAG);
}

static void test_tampered_tag(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1], other[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims c, v;
    ring_make(&r, 0);
    size_t d[3];
    dots(tok, d);
    uint8_t tag[32];
    size_t n = 0;
    assert_int_equal(token_b64url_decode(tok + d[2] + 1, strlen(tok) - d[2] - 1, tag, 32, &n), 0);
    for (int byte = 0; byte < 32; byte += 7) {
        tag[byte] ^= 0x80;
        token_b64url_encode(tag, 32, tok + d[2] + 1);
        assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), ROOST_EBADTAG);
        tag[byte] ^= 0x80;
    }
    token_b64url_encode(tag, 32, tok + d[2] + 1);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), 0);

    /* The tag of another valid token does not transfer. */
    claims_make(&c, "room-1", TOKEN_PERM_JOIN, NOW, NOW + 600);
    assert_true(token_mint(token_keyring_signer(&r), &c, other, sizeof(other)) > 0);
    size_t e[3];
    dots(other, e);
    memcpy(tok + d[2], other + e[2], strlen(other + e[2]) + 1);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), ROOST_EBADTAG);
}

static void test_wrong_key(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    /* Same id, other secret (e.g. a relay configured with a stale file). */
    struct token_keyring r;
    struct token_claims v;
    uint8_t s[TOKEN_KEY_LEN];
    secret_fill(s, 0);
    s[31] ^= 1;
    token_keyring_init(&r);
    assert_int_equal(token_keyring_add(&r, "k1", 2, s), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), ROOST_EBADTAG);
    assert_true(is_zero(&v, sizeof(v)));
}

static void test_unknown_key_id(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims v;
    uint8_t s[TOKEN_KEY_LEN];
    secret_fill(s, 0); /* even the right secret under another id */
    token_keyring_init(&r);
    assert_int_equal(token_keyring_add(&r, "k2", 2, s), 0);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), ROOST_EBADKEY);
    token_keyring_init(&r);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), ROOST_EBADKEY);
    assert_true(is_zero(&v, sizeof(v)));
}

static void test_truncated(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    int n = mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims v;
    ring_make(&r, 0);
    /* Every prefix is rejected; exact-size heap copies let ASan see overreads. */
    for (int len = 0; len < n; len++) {
        char *p = malloc(len ? (size_t)len : 1);
        assert_non_null(p);
        memcpy(p, tok, (size_t)len);
        int rc = token_verify(p, (size_t)len, &r, "room-1", 6, NOW, SKEW, &v);
        assert_true(rc < 0);
        assert_true(rc != ROOST_EWRONGROOM && rc != ROOST_EEXPIRED && rc != ROOST_ENOTYET);
        free(p);
    }
    size_t d[3];
    dots(tok, d);
    assert_int_equal(token_verify(tok, 0, &r, "room-1", 6, NOW, SKEW, &v), ROOST_ETRUNC);
    assert_int_equal(token_verify(tok, 2, &r, "room-1", 6, NOW, SKEW, &v), ROOST_ETRUNC);
    assert_int_equal(token_verify(tok, d[2], &r, "room-1", 6, NOW, SKEW, &v), ROOST_ETRUNC);
    assert_int_equal(token_verify(tok, d[2] + 1, &r, "room-1", 6, NOW, SKEW, &v), ROOST_ETRUNC);
    assert_int_equal(token_verify(tok, (size_t)n - 1, &r, "room-1", 6, NOW, SKEW, &v),
                     ROOST_ETRUNC);
    /* Payload cut short but tag intact. */
    char cut[TOKEN_MAX_LEN + 1];
    snprintf(cut, sizeof(cut), "v1.k1.%.40s%s", tok + d[1] + 1, tok + d[2]);
    assert_int_equal(verify_str(cut, &r, "room-1", NOW, &v), ROOST_ETRUNC);
}

static void test_oversized(void **state)
{
    (void)state;
    struct token_keyring r;
    struct token_claims v;
    ring_make(&r, 0);
    char big[TOKEN_MAX_LEN + 2];
    memset(big, 'A', sizeof(big));
    assert_int_equal(token_verify(big, TOKEN_MAX_LEN + 1, &r, "room-1", 6, NOW, SKEW, &v),
                     ROOST_ETOOBIG);
    /* The cap is checked before anything is read: a huge length with a
     * one-byte buffer is refused without touching memory (ASan build). */
    char *one = malloc(1);
    assert_non_null(one);
    one[0] = 'v';
    assert_int_equal(token_verify(one, SIZE_MAX, &r, "room-1", 6, NOW, SKEW, &v), ROOST_ETOOBIG);
    free(one);

    char tok[TOKEN_MAX_LEN + 1];
    int n = mint_default(tok, sizeof(tok));
    /* A valid token padded with garbage up to the cap. */
    char pad[TOKEN_MAX_LEN + 2];
    memcpy(pad, tok, (size_t)n);
    memset(pad + n, 'A', sizeof(pad) - (size_t)n);
    assert_int_equal(token_verify(pad, TOKEN_MAX_LEN + 1, &r, "room-1", 6, NOW, SKEW, &v),
                     ROOST_ETOOBIG);
    /* Over-long parts. */
    assert_int_equal(token_verify(pad, (size_t)n + 1, &r, "room-1", 6, NOW, SKEW, &v),
                     ROOST_ETOOBIG); /* 44-character tag */
    size_t d[3];
    dots(tok, d);
    char s[2 * TOKEN_MAX_LEN];
    snprintf(s, sizeof(s), "v1.k1.%.*s%s", 220, big, tok + d[2]);
    assert_int_equal(verify_str(s, &r, "room-1", NOW, &v), ROOST_ETOOBIG);
    snprintf(s, sizeof(s), "v1.abcdefghijklmnopq%s", tok + d[1]);
    assert_int_equal(verify_str(s, &r, "room-1", NOW, &v), ROOST_ETOOBIG);

    /* The largest legal token fits the cap and verifies. */
    struct token_keyring big_ring;
    struct token_claims c;
    uint8_t sec[TOKEN_KEY_LEN], id[TOKEN_ID_LEN] = {0};
    secret_fill(sec, 7);
    token_keyring_init(&big_ring);
    assert_int_equal(token_keyring_add(&big_ring, "0123456789abcdef", 16, sec), 0);
    char room[65], ident[65];
    memset(room, 'r', 64);
    room[64] = '\0';
    memset(ident, 'i', 64);
    ident[64] = '\0';
    assert_int_equal(token_claims_set(&c, room, 64, ident, 64, TOKEN_PERM_ALL, 1, 2, id), 0);
    n = token_mint(token_keyring_signer(&big_ring), &c, tok, sizeof(tok));
    assert_int_equal(n, 3 + 16 + 1 + 219 + 1 + 43);
    assert_int_equal(token_verify(tok, (size_t)n, &big_ring, room, 64, 1, 0, &v), 0);
    assert_string_equal(v.identity, ident);
}

static void test_every_bit_flip(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1];
    int n = mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims v;
    ring_make(&r, 1);
    assert_int_equal(verify_str(tok, &r, "room-1", NOW, &v), 0);
    int flips = 0;
    for (int i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            char *p = malloc((size_t)n);
            assert_non_null(p);
            memcpy(p, tok, (size_t)n);
            p[i] = (char)(p[i] ^ (1 << bit));
            int rc = token_verify(p, (size_t)n, &r, "room-1", 6, NOW, SKEW, &v);
            if (rc == 0)
                fail_msg("flip of bit %d of byte %d accepted", bit, i);
            /* Nothing that changed is authenticated. */
            assert_true(rc != ROOST_EWRONGROOM && rc != ROOST_EEXPIRED && rc != ROOST_ENOTYET);
            assert_true(is_zero(&v, sizeof(v)));
            free(p);
            flips++;
        }
    }
    assert_int_equal(flips, n * 8);
}

static void test_rotation(void **state)
{
    (void)state;
    uint8_t old_s[TOKEN_KEY_LEN], new_s[TOKEN_KEY_LEN];
    secret_fill(old_s, 10);
    secret_fill(new_s, 200);
    struct token_keyring before, during, after;
    token_keyring_init(&before);
    assert_int_equal(token_keyring_add(&before, "old", 3, old_s), 0);
    token_keyring_init(&during); /* new key first: it signs */
    assert_int_equal(token_keyring_add(&during, "new", 3, new_s), 0);
    assert_int_equal(token_keyring_add(&during, "old", 3, old_s), 0);
    token_keyring_init(&after);
    assert_int_equal(token_keyring_add(&after, "new", 3, new_s), 0);

    struct token_claims c, v;
    char t_old[TOKEN_MAX_LEN + 1], t_new[TOKEN_MAX_LEN + 1];
    claims_make(&c, "room-1", TOKEN_PERM_ALL, NOW, NOW + 600);
    assert_true(token_mint(token_keyring_signer(&before), &c, t_old, sizeof(t_old)) > 0);
    assert_true(token_mint(token_keyring_signer(&during), &c, t_new, sizeof(t_new)) > 0);
    assert_memory_equal(t_old, "v1.old.", 7);
    assert_memory_equal(t_new, "v1.new.", 7);

    assert_int_equal(verify_str(t_old, &during, "room-1", NOW, &v), 0);
    assert_string_equal(v.key_id, "old");
    assert_int_equal(verify_str(t_new, &during, "room-1", NOW, &v), 0);
    assert_string_equal(v.key_id, "new");
    assert_int_equal(verify_str(t_new, &before, "room-1", NOW, &v), ROOST_EBADKEY);
    assert_int_equal(verify_str(t_old, &after, "room-1", NOW, &v), ROOST_EBADKEY);
    assert_int_equal(verify_str(t_new, &after, "room-1", NOW, &v), 0);
}

static void test_base64url_strict(void **state)
{
    (void)state;
    uint8_t out[64];
    size_t n = 0;
    assert_int_equal(token_b64url_decode("QQ", 2, out, sizeof(out), &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'A');
    assert_int_equal(token_b64url_decode("QR", 2, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("QUE", 3, out, sizeof(out), &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(token_b64url_decode("QUF", 3, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("Q", 1, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("QQ==", 4, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("ab+/", 4, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("ab-_", 4, out, sizeof(out), &n), 0);
    assert_int_equal(token_b64url_decode("ab c", 4, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("ab\0c", 4, out, sizeof(out), &n), ROOST_EMALFORMED);
    assert_int_equal(token_b64url_decode("QUFB", 4, out, 2, &n), ROOST_ENOSPC);
    assert_int_equal(token_b64url_decode("", 0, out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    /* Round trip at every length mod 3. */
    uint8_t in[40];
    char enc[64];
    for (size_t len = 0; len <= sizeof(in); len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)(i * 37 + len);
        size_t e = token_b64url_encode(in, len, enc);
        assert_int_equal(e, token_b64url_len(len));
        assert_int_equal(token_b64url_decode(enc, e, out, sizeof(out), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(out, in, len);
    }

    /* In a token: padding or a non-canonical last tag character. */
    char tok[TOKEN_MAX_LEN + 1], t2[TOKEN_MAX_LEN + 8];
    int tn = mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims v;
    ring_make(&r, 0);
    size_t d[3];
    dots(tok, d);
    snprintf(t2, sizeof(t2), "%.*s=%s", (int)d[2], tok, tok + d[2]);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    snprintf(t2, sizeof(t2), "%s=", tok);
    assert_true(verify_str(t2, &r, "room-1", NOW, &v) < 0);
    /* 43 characters carry 258 bits: the last one's low 2 bits are unused. */
    memcpy(t2, tok, (size_t)tn + 1);
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *pos = strchr(alpha, t2[tn - 1]);
    assert_non_null(pos);
    t2[tn - 1] = alpha[(pos - alpha) ^ 1];
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
}

static void test_syntax(void **state)
{
    (void)state;
    char tok[TOKEN_MAX_LEN + 1], t2[TOKEN_MAX_LEN + 8];
    mint_default(tok, sizeof(tok));
    struct token_keyring r;
    struct token_claims v;
    ring_make(&r, 0);
    snprintf(t2, sizeof(t2), "v2%s", tok + 2);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EUNKNOWN);
    snprintf(t2, sizeof(t2), "v10%s", tok + 2);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EUNKNOWN);
    snprintf(t2, sizeof(t2), "V1%s", tok + 2);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    snprintf(t2, sizeof(t2), "x%s", tok + 1);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    snprintf(t2, sizeof(t2), "%s.", tok);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    snprintf(t2, sizeof(t2), "v1..%s", tok + 6);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    snprintf(t2, sizeof(t2), "v1.k!%s", tok + 5);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    snprintf(t2, sizeof(t2), " %s", tok);
    assert_int_equal(verify_str(t2, &r, "room-1", NOW, &v), ROOST_EMALFORMED);
    /* A NUL inside the given length is just another bad byte. */
    memcpy(t2, tok, strlen(tok) + 1);
    t2[4] = '\0';
    assert_true(token_verify(t2, strlen(tok), &r, "room-1", 6, NOW, SKEW, &v) < 0);
}

/* Payloads with a valid tag but a bad layout: the parser behind the tag. */
static void check_signed(const uint8_t *p, size_t n, int want)
{
    struct token_keyring r;
    struct token_claims v;
    char tok[TOKEN_MAX_LEN + 1];
    ring_make(&r, 0);
    int len = token_encode(token_keyring_signer(&r), p, n, tok, sizeof(tok));
    assert_true(len > 0);
    assert_int_equal(token_verify(tok, (size_t)len, &r, "room-1", 6, NOW, SKEW, &v), want);
    if (want != 0)
        assert_true(is_zero(&v, sizeof(v)));
}

static size_t payload_build(uint8_t *p, uint8_t ver, uint8_t perms, uint64_t nbf, uint64_t exp,
                            const char *room, size_t rl, const char *ident, size_t il)
{
    size_t n = 0;
    p[n++] = ver;
    p[n++] = perms;
    for (int i = 7; i >= 0; i--)
        p[n++] = (uint8_t)(nbf >> (8 * i));
    for (int i = 7; i >= 0; i--)
        p[n++] = (uint8_t)(exp >> (8 * i));
    for (int i = 0; i < TOKEN_ID_LEN; i++)
        p[n++] = (uint8_t)i;
    p[n++] = (uint8_t)rl;
    memcpy(p + n, room, rl);
    n += rl;
    p[n++] = (uint8_t)il;
    memcpy(p + n, ident, il);
    n += il;
    return n;
}

static void test_signed_bad_payload(void **state)
{
    (void)state;
    uint8_t p[TOKEN_PAYLOAD_MAX + 8];
    size_t n;
    char room65[66];
    memset(room65, 'r', 65);

    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room-1", 6, "alice", 5);
    check_signed(p, n, 0); /* the builder matches the layout */
    check_signed(p, n - 1, ROOST_ETRUNC);
    check_signed(p, 20, ROOST_ETRUNC);
    p[n] = 0;
    check_signed(p, n + 1, ROOST_EMALFORMED); /* trailing byte */
    n = payload_build(p, 2, TOKEN_PERM_ALL, NOW, NOW + 600, "room-1", 6, "alice", 5);
    check_signed(p, n, ROOST_EUNKNOWN);
    n = payload_build(p, 1, 0x08 | TOKEN_PERM_JOIN, NOW, NOW + 600, "room-1", 6, "alice", 5);
    check_signed(p, n, ROOST_EMALFORMED);
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW, "room-1", 6, "alice", 5);
    check_signed(p, n, ROOST_EMALFORMED); /* exp == nbf */
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "", 0, "alice", 5);
    check_signed(p, n, ROOST_EMALFORMED);
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room-1", 6, "", 0);
    check_signed(p, n, ROOST_EMALFORMED);
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, room65, 65, "alice", 5);
    check_signed(p, n, ROOST_ETOOBIG);
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room-1", 6, room65, 65);
    check_signed(p, n, ROOST_ETOOBIG);
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room-1", 6, "alice", 5);
    p[1 + 1 + 16 + 16 + 1 + 6] = 30; /* identity_len beyond the end */
    check_signed(p, n, ROOST_ETRUNC);
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room\xc0\x80", 6, "alice", 5);
    check_signed(p, n, ROOST_EMALFORMED); /* overlong UTF-8 */
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room\n1", 6, "alice", 5);
    check_signed(p, n, ROOST_EMALFORMED); /* control character */
    n = payload_build(p, 1, TOKEN_PERM_ALL, NOW, NOW + 600, "room-1", 6, "al\0ce", 5);
    check_signed(p, n, ROOST_EMALFORMED);

    /* token_encode refuses oversized payloads and tiny buffers. */
    struct token_keyring r;
    char tok[TOKEN_MAX_LEN + 1];
    ring_make(&r, 0);
    assert_int_equal(
        token_encode(token_keyring_signer(&r), p, TOKEN_PAYLOAD_MAX + 1, tok, sizeof(tok)),
        ROOST_ETOOBIG);
    assert_int_equal(token_encode(token_keyring_signer(&r), p, n, tok, 10), ROOST_ENOSPC);
}

static void test_mint_checks(void **state)
{
    (void)state;
    struct token_keyring r;
    struct token_claims c;
    uint8_t id[TOKEN_ID_LEN] = {0};
    char s65[66], tok[TOKEN_MAX_LEN + 1];
    memset(s65, 'x', 65);
    ring_make(&r, 0);

    assert_int_equal(token_claims_set(&c, s65, 64, "a", 1, TOKEN_PERM_ALL, 1, 2, id), 0);
    assert_int_equal(token_claims_set(&c, s65, 65, "a", 1, TOKEN_PERM_ALL, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "r", 1, s65, 64, TOKEN_PERM_ALL, 1, 2, id), 0);
    assert_int_equal(token_claims_set(&c, "r", 1, s65, 65, TOKEN_PERM_ALL, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "", 0, "a", 1, TOKEN_PERM_ALL, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "r", 1, "", 0, TOKEN_PERM_ALL, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "r", 1, "a", 1, TOKEN_PERM_ALL, 2, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "r", 1, "a", 1, TOKEN_PERM_ALL, 3, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "r", 1, "a", 1, 0x08, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "r", 1, "a", 1, 0x101, 1, 2, id), ROOST_EINVAL);
    /* UTF-8: accepted multi-byte forms, rejected overlong/surrogate/>U+10FFFF. */
    assert_int_equal(token_claims_set(&c, "caf\xc3\xa9", 5, "\xf0\x9f\x90\xa6", 4, 1, 1, 2, id), 0);
    assert_int_equal(token_claims_set(&c, "\xc0\xaf", 2, "a", 1, 1, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "\xe0\x80\xaf", 3, "a", 1, 1, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "\xf0\x80\x80\xaf", 4, "a", 1, 1, 1, 2, id),
                     ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "\xed\xa0\x80", 3, "a", 1, 1, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "\xf4\x90\x80\x80", 4, "a", 1, 1, 1, 2, id),
                     ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "\xe2\x82", 2, "a", 1, 1, 1, 2, id), ROOST_EINVAL);
    assert_int_equal(token_claims_set(&c, "a\x7f", 2, "a", 1, 1, 1, 2, id), ROOST_EINVAL);

    /* Mint re-checks claims the caller filled by hand. */
    assert_int_equal(token_claims_set(&c, "r", 1, "a", 1, TOKEN_PERM_ALL, 1, 2, id), 0);
    c.exp = c.nbf;
    assert_int_equal(token_mint(token_keyring_signer(&r), &c, tok, sizeof(tok)), ROOST_EINVAL);

    /* Exact buffer: length + 1 for the NUL. */
    assert_int_equal(token_claims_set(&c, "r", 1, "a", 1, TOKEN_PERM_ALL, 1, 2, id), 0);
    int n = token_mint(token_keyring_signer(&r), &c, tok, sizeof(tok));
    assert_true(n > 0);
    char *exact = malloc((size_t)n + 1);
    assert_non_null(exact);
    assert_int_equal(token_mint(token_keyring_signer(&r), &c, exact, (size_t)n + 1), n);
    assert_string_equal(exact, tok);
    assert_int_equal(token_mint(token_keyring_signer(&r), &c, exact, (size_t)n), ROOST_ENOSPC);
    free(exact);

    /* A key with an invalid id cannot sign. */
    struct token_key bad = r.keys[0];
    bad.id[1] = '!';
    assert_int_equal(token_mint(&bad, &c, tok, sizeof(tok)), ROOST_EINVAL);
}

static void test_keyring_ops(void **state)
{
    (void)state;
    struct token_keyring r;
    uint8_t s[TOKEN_KEY_LEN] = {1};
    char id[24];
    token_keyring_init(&r);
    assert_null(token_keyring_signer(&r));
    assert_int_equal(token_keyring_add(&r, "", 0, s), ROOST_EINVAL);
    assert_int_equal(token_keyring_add(&r, "a b", 3, s), ROOST_EINVAL);
    assert_int_equal(token_keyring_add(&r, "abcdefghijklmnopq", 17, s), ROOST_EINVAL);
    assert_int_equal(token_keyring_add(&r, "abcdefghijklmnop", 16, s), 0);
    assert_int_equal(token_keyring_add(&r, "abcdefghijklmnop", 16, s), ROOST_EEXIST);
    for (int i = 1; i < TOKEN_KEYRING_MAX; i++) {
        snprintf(id, sizeof(id), "k%d", i);
        assert_int_equal(token_keyring_add(&r, id, strlen(id), s), 0);
    }
    assert_int_equal(token_keyring_add(&r, "one-more", 8, s), ROOST_EFULL);
    assert_string_equal(token_keyring_signer(&r)->id, "abcdefghijklmnop");
    assert_non_null(token_keyring_find(&r, "k3", 2));
    assert_null(token_keyring_find(&r, "k", 1));
    assert_null(token_keyring_find(&r, "k33", 3));
    token_keyring_wipe(&r);
    assert_int_equal(r.n, 0);
    assert_true(is_zero(&r, sizeof(r)));
    assert_int_equal(token_key_id_check("A-z_9", 5), 0);
    assert_int_equal(token_key_id_check("a.b", 3), ROOST_EMALFORMED);
    assert_int_equal(token_key_id_check("abcdefghijklmnopq", 17), ROOST_ETOOBIG);
}

/* Token bits are translated once into the room vocabulary: join alone
 * grants no room permission; each of publish/subscribe maps to its bit. */
static void test_room_perms(void **state)
{
    (void)state;
    assert_int_equal(token_room_perms(0), 0);
    assert_int_equal(token_room_perms(TOKEN_PERM_JOIN), 0);
    assert_int_equal(token_room_perms(TOKEN_PERM_JOIN | TOKEN_PERM_PUBLISH), PERM_PUBLISH);
    assert_int_equal(token_room_perms(TOKEN_PERM_SUBSCRIBE), PERM_SUBSCRIBE);
    assert_int_equal(token_room_perms(TOKEN_PERM_ALL), PERM_ALL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tag_definition),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_not_yet_valid),
        cmocka_unit_test(test_time_extremes),
        cmocka_unit_test(test_wrong_room),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_tampered_tag),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_unknown_key_id),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_base64url_strict),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_signed_bad_payload),
        cmocka_unit_test(test_mint_checks),
        cmocka_unit_test(test_keyring_ops),
        cmocka_unit_test(test_room_perms),
    };
    return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
