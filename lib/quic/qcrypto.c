/* Packet protection of a server's 1-RTT keys on AES-NI/PCLMUL or nettle:
 * see qcrypto.h. */
#include "quic/qcrypto.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/aes.h>
#include <nettle/gcm.h>
#include <nettle/memops.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#define TAGLEN 16
#define HP_SAMPLELEN 16
#define HP_MASKLEN 5

enum qc_alg { QC_AES128 = 1, QC_AES256, QC_AES128NI };
/* AES-128-GCM and the AES-128 header protection mask on AES-NI and PCLMUL
 * (x86-64, checked at run time), inline: nettle's gcm_aes128 spends more
 * in its generic CTR and GHASH glue than in the AES and GHASH
 * instructions for packets of a few blocks. GHASH as in Intel's "Intel
 * Carry-Less Multiplication Instruction and its Usage for Computing the
 * GCM Mode" (byte-reflected operands, shift-based reduction). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QC_NI 1
#define NI_FN __attribute__((target("aes,pclmul,ssse3,sse4.1")))

struct ni_key {
    __m128i rk[11];
    __m128i h;          /* the hash key H, byte-reflected */
    __m128i h2, h3, h4; /* its powers, for four blocks at once */
};

/* -1 unknown, 0 off, 1 on; read by every worker making a context. */
static _Atomic int ni_state = -1;

static bool ni_ok(void)
{
    int ok = ni_state;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
             __builtin_cpu_supports("sse4.1");
        ni_state = ok;
    }
    return ok;
}

NI_FN static __m128i ni_expand(__m128i k, __m128i g)
{
    g = _mm_shuffle_epi32(g, 0xff);
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, g);
}

NI_FN static inline __m128i ni_aes(const __m128i *rk, __m128i b)
{
    /* Unrolled: a loop costs ~3 instructions a round more. */
    b = _mm_xor_si128(b, rk[0]);
    b = _mm_aesenc_si128(b, rk[1]);
    b = _mm_aesenc_si128(b, rk[2]);
    b = _mm_aesenc_si128(b, rk[3]);
    b = _mm_aesenc_si128(b, rk[4]);
    b = _mm_aesenc_si128(b, rk[5]);
    b = _mm_aesenc_si128(b, rk[6]);
    b = _mm_aesenc_si128(b, rk[7]);
    b = _mm_aesenc_si128(b, rk[8]);
    b = _mm_aesenc_si128(b, rk[9]);
    return _mm_aesenclast_si128(b, rk[10]);
}

NI_FN static inline __m128i ni_bswap(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

NI_FN static void ni_powers(struct ni_key *k);

NI_FN static void ni_set_key(struct ni_key *k, const uint8_t *key)
{
    __m128i *rk = k->rk;
    rk[0] = _mm_loadu_si128((const __m128i *)key);
#define NI_STEP(i, rcon) rk[i] = ni_expand(rk[i - 1], _mm_aeskeygenassist_si128(rk[i - 1], rcon))
    NI_STEP(1, 0x01);
    NI_STEP(2, 0x02);
    NI_STEP(3, 0x04);
    NI_STEP(4, 0x08);
    NI_STEP(5, 0x10);
    NI_STEP(6, 0x20);
    NI_STEP(7, 0x40);
    NI_STEP(8, 0x80);
    NI_STEP(9, 0x1b);
    NI_STEP(10, 0x36);
#undef NI_STEP
    k->h = ni_bswap(ni_aes(rk, _mm_setzero_si128()));
    ni_powers(k);
}

/* The 256-bit carry-less product of a and b: lo, hi. */
NI_FN static inline void ni_clmul(__m128i a, __m128i b, __m128i *lo, __m128i *hi)
{
    __m128i t3 = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i t4 = _mm_clmulepi64_si128(a, b, 0x10);
    __m128i t5 = _mm_clmulepi64_si128(a, b, 0x01);
    __m128i t6 = _mm_clmulepi64_si128(a, b, 0x11);
    t4 = _mm_xor_si128(t4, t5);
    *lo = _mm_xor_si128(t3, _mm_slli_si128(t4, 8));
    *hi = _mm_xor_si128(t6, _mm_srli_si128(t4, 8));
}

/* A product of ni_clmul (or the xor of several: the reduction is linear,
 * so products of several blocks are reduced once) shifted one bit left
 * and reduced modulo the GCM polynomial. */
NI_FN static inline __m128i ni_reduce(__m128i t3, __m128i t6)
{
    __m128i t7 = _mm_srli_epi32(t3, 31);
    __m128i t8 = _mm_srli_epi32(t6, 31);
    t3 = _mm_slli_epi32(t3, 1);
    t6 = _mm_slli_epi32(t6, 1);
    __m128i t9 = _mm_srli_si128(t7, 12);
    t8 = _mm_slli_si128(t8, 4);
    t7 = _mm_slli_si128(t7, 4);
    t3 = _mm_or_si128(t3, t7);
    t6 = _mm_or_si128(t6, t8);
    t6 = _mm_or_si128(t6, t9);
    t7 = _mm_slli_epi32(t3, 31);
    t8 = _mm_slli_epi32(t3, 30);
    t9 = _mm_slli_epi32(t3, 25);
    t7 = _mm_xor_si128(t7, t8);
    t7 = _mm_xor_si128(t7, t9);
    t8 = _mm_srli_si128(t7, 4);
    t7 = _mm_slli_si128(t7, 12);
    t3 = _mm_xor_si128(t3, t7);
    __m128i t2 = _mm_srli_epi32(t3, 1);
    __m128i t4 = _mm_srli_epi32(t3, 2);
    __m128i t5 = _mm_srli_epi32(t3, 7);
    t2 = _mm_xor_si128(t2, t4);
    t2 = _mm_xor_si128(t2, t5);
    t2 = _mm_xor_si128(t2, t8);
    t3 = _mm_xor_si128(t3, t2);
    return _mm_xor_si128(t6, t3);
}

/* a * b in GF(2^128), both byte-reflected. */
NI_FN static inline __m128i ni_gfmul(__m128i a, __m128i b)
{
    __m128i lo, hi;
    ni_clmul(a, b, &lo, &hi);
    return ni_reduce(lo, hi);
}

NI_FN static inline __m128i ni_ghash(__m128i x, __m128i h, __m128i block)
{
    return ni_gfmul(_mm_xor_si128(x, ni_bswap(block)), h);
}

/* Four blocks at once: (((x + b0)H + b1)H + b2)H + b3)H
 * = (x + b0)H^4 + b1 H^3 + b2 H^2 + b3 H, one reduction. */
NI_FN static inline __m128i ni_ghash4(const struct ni_key *k, __m128i x, __m128i b0, __m128i b1,
                                      __m128i b2, __m128i b3)
{
    __m128i lo, hi, l, h;
    ni_clmul(_mm_xor_si128(x, ni_bswap(b0)), k->h4, &lo, &hi);
    ni_clmul(ni_bswap(b1), k->h3, &l, &h);
    lo = _mm_xor_si128(lo, l);
    hi = _mm_xor_si128(hi, h);
    ni_clmul(ni_bswap(b2), k->h2, &l, &h);
    lo = _mm_xor_si128(lo, l);
    hi = _mm_xor_si128(hi, h);
    ni_clmul(ni_bswap(b3), k->h, &l, &h);
    lo = _mm_xor_si128(lo, l);
    hi = _mm_xor_si128(hi, h);
    return ni_reduce(lo, hi);
}

NI_FN static void ni_powers(struct ni_key *k)
{
    k->h2 = ni_gfmul(k->h, k->h);
    k->h3 = ni_gfmul(k->h2, k->h);
    k->h4 = ni_gfmul(k->h3, k->h);
}

NI_FN static inline __m128i ni_load_part(const uint8_t *p, size_t n)
{
    uint8_t b[16] = {0};
    memcpy(b, p, n);
    return _mm_loadu_si128((const __m128i *)b);
}

/* AES-128-GCM with a 12-byte nonce: out = in xor keystream (in may be
 * out), the tag of aad and the ciphertext (in when !enc, out when enc). */
NI_FN static void ni_gcm(const struct ni_key *k, bool enc, uint8_t *out, const uint8_t *in,
                         size_t n, const uint8_t *nonce, const uint8_t *aad, size_t aadlen,
                         uint8_t *tag)
{
    __m128i base = ni_load_part(nonce, 12);
    __m128i x = _mm_setzero_si128();
    size_t i;
    for (i = 0; i + 16 <= aadlen; i += 16)
        x = ni_ghash(x, k->h, _mm_loadu_si128((const __m128i *)(aad + i)));
    if (i < aadlen)
        x = ni_ghash(x, k->h, ni_load_part(aad + i, aadlen - i));
    uint32_t ctr = 2;
    for (i = 0; i + 64 <= n; i += 64, ctr += 4) {
        __m128i b0 = _mm_loadu_si128((const __m128i *)(in + i));
        __m128i b1 = _mm_loadu_si128((const __m128i *)(in + i + 16));
        __m128i b2 = _mm_loadu_si128((const __m128i *)(in + i + 32));
        __m128i b3 = _mm_loadu_si128((const __m128i *)(in + i + 48));
        __m128i c0 = _mm_xor_si128(
            b0, ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(ctr), 3)));
        __m128i c1 = _mm_xor_si128(
            b1, ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(ctr + 1), 3)));
        __m128i c2 = _mm_xor_si128(
            b2, ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(ctr + 2), 3)));
        __m128i c3 = _mm_xor_si128(
            b3, ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(ctr + 3), 3)));
        _mm_storeu_si128((__m128i *)(out + i), c0);
        _mm_storeu_si128((__m128i *)(out + i + 16), c1);
        _mm_storeu_si128((__m128i *)(out + i + 32), c2);
        _mm_storeu_si128((__m128i *)(out + i + 48), c3);
        x = enc ? ni_ghash4(k, x, c0, c1, c2, c3) : ni_ghash4(k, x, b0, b1, b2, b3);
    }
    for (; i + 16 <= n; i += 16, ctr++) {
        __m128i ks = ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(ctr), 3));
        __m128i b = _mm_loadu_si128((const __m128i *)(in + i));
        __m128i c = _mm_xor_si128(b, ks);
        _mm_storeu_si128((__m128i *)(out + i), c);
        x = ni_ghash(x, k->h, enc ? c : b);
    }
    if (i < n) {
        size_t r = n - i;
        __m128i ks = ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(ctr), 3));
        uint8_t b[16] = {0};
        memcpy(b, in + i, r);
        __m128i inb = _mm_loadu_si128((const __m128i *)b);
        _mm_storeu_si128((__m128i *)b, _mm_xor_si128(inb, ks));
        memcpy(out + i, b, r);
        if (enc) {
            memset(b + r, 0, 16 - r);
            x = ni_ghash(x, k->h, _mm_loadu_si128((const __m128i *)b));
        } else {
            x = ni_ghash(x, k->h, inb);
        }
    }
    __m128i len = _mm_set_epi64x((long long)((uint64_t)aadlen * 8), (long long)((uint64_t)n * 8));
    x = ni_gfmul(_mm_xor_si128(x, len), k->h);
    __m128i j0 = ni_aes(k->rk, _mm_insert_epi32(base, (int)__builtin_bswap32(1u), 3));
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(ni_bswap(x), j0));
}

/* Whether two tags are equal, in constant time (memeql_sec is a byte
 * loop of ~170 instructions). */
NI_FN static bool ni_tag_eq(const uint8_t *a, const uint8_t *b)
{
    __m128i x = _mm_loadu_si128((const __m128i *)a);
    __m128i y = _mm_loadu_si128((const __m128i *)b);
    return _mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) == 0xffff;
}

NI_FN static void ni_hp(const struct ni_key *k, uint8_t *dest, const uint8_t *sample)
{
    uint8_t b[16];
    _mm_storeu_si128((__m128i *)b, ni_aes(k->rk, _mm_loadu_si128((const __m128i *)sample)));
    memcpy(dest, b, HP_MASKLEN);
}
#endif

struct qc_aead {
    enum qc_alg alg;
    union {
#ifdef QC_NI
        struct ni_key ni;
#endif
        struct gcm_aes128_ctx a128;
        struct gcm_aes256_ctx a256;
    } u;
};

struct qc_hp {
    enum qc_alg alg;
    union {
#ifdef QC_NI
        struct ni_key ni;
#endif
        struct aes128_ctx a128;
        struct aes256_ctx a256;
    } u;
};

/* Ours have the low bit of native_handle set: malloc'd pointers (gnutls's
 * handles and ours) are at least 2-aligned. */
static void *tag(void *p)
{
    return (void *)((uintptr_t)p | 1u);
}

static void *untag(const void *h)
{
    return (void *)((uintptr_t)h & ~(uintptr_t)1);
}

bool qcrypto_use_ni(bool on)
{
#ifdef QC_NI
    ni_state = -1;
    if (on)
        return ni_ok();
    ni_state = 0;
#else
    (void)on;
#endif
    return false;
}

int qcrypto_is_own(const void *native_handle)
{
    return ((uintptr_t)native_handle & 1u) != 0;
}

static enum qc_alg aead_alg(const ngtcp2_crypto_aead *aead)
{
    switch ((gnutls_cipher_algorithm_t)(intptr_t)aead->native_handle) {
    case GNUTLS_CIPHER_AES_128_GCM:
        return QC_AES128;
    case GNUTLS_CIPHER_AES_256_GCM:
        return QC_AES256;
    default:
        return 0;
    }
}

static enum qc_alg hp_alg(const ngtcp2_crypto_cipher *hp)
{
    switch ((gnutls_cipher_algorithm_t)(intptr_t)hp->native_handle) {
    case GNUTLS_CIPHER_AES_128_CBC:
        return QC_AES128;
    case GNUTLS_CIPHER_AES_256_CBC:
        return QC_AES256;
    default:
        return 0;
    }
}

/* 16-aligned for the AES-NI round keys. */
static void *qc_alloc(size_t n)
{
    return aligned_alloc(16, (n + 15) & ~(size_t)15);
}

static void qc_ni_set_key(void *u, const uint8_t *key)
{
#ifdef QC_NI
    ni_set_key(u, key);
#else
    (void)u;
    (void)key;
#endif
}

int qcrypto_aead_ctx_init(ngtcp2_crypto_aead_ctx *ctx, const ngtcp2_crypto_aead *aead,
                          const uint8_t *key)
{
    enum qc_alg alg = aead_alg(aead);
    if (!alg)
        return -1;
    struct qc_aead *a = qc_alloc(sizeof(*a));
    if (!a)
        return -1;
#ifdef QC_NI
    if (alg == QC_AES128 && ni_ok())
        alg = QC_AES128NI;
#endif
    a->alg = alg;
    if (alg == QC_AES128NI)
        qc_ni_set_key(&a->u, key);
    else if (alg == QC_AES128)
        gcm_aes128_set_key(&a->u.a128, key);
    else
        gcm_aes256_set_key(&a->u.a256, key);
    ctx->native_handle = tag(a);
    return 0;
}

int qcrypto_hp_ctx_init(ngtcp2_crypto_cipher_ctx *ctx, const ngtcp2_crypto_cipher *hp,
                        const uint8_t *key)
{
    enum qc_alg alg = hp_alg(hp);
    if (!alg)
        return -1;
    struct qc_hp *h = qc_alloc(sizeof(*h));
    if (!h)
        return -1;
#ifdef QC_NI
    if (alg == QC_AES128 && ni_ok())
        alg = QC_AES128NI;
#endif
    h->alg = alg;
    if (alg == QC_AES128NI)
        qc_ni_set_key(&h->u, key);
    else if (alg == QC_AES128)
        aes128_set_encrypt_key(&h->u.a128, key);
    else
        aes256_set_encrypt_key(&h->u.a256, key);
    ctx->native_handle = tag(h);
    return 0;
}

int qcrypto_encrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                       const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *plaintext,
                       size_t plaintextlen, const uint8_t *nonce, size_t noncelen,
                       const uint8_t *aad, size_t aadlen)
{
    if (!qcrypto_is_own(aead_ctx->native_handle))
        return ngtcp2_crypto_encrypt_cb(dest, aead, aead_ctx, plaintext, plaintextlen, nonce,
                                        noncelen, aad, aadlen);
    struct qc_aead *a = untag(aead_ctx->native_handle);
#ifdef QC_NI
    if (a->alg == QC_AES128NI) {
        if (noncelen != 12)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        ni_gcm(&a->u.ni, true, dest, plaintext, plaintextlen, nonce, aad, aadlen,
               dest + plaintextlen);
        return 0;
    }
#endif
    if (a->alg == QC_AES128) {
        gcm_aes128_set_iv(&a->u.a128, noncelen, nonce);
        gcm_aes128_update(&a->u.a128, aadlen, aad);
        gcm_aes128_encrypt(&a->u.a128, plaintextlen, dest, plaintext);
        gcm_aes128_digest(&a->u.a128, TAGLEN, dest + plaintextlen);
    } else {
        gcm_aes256_set_iv(&a->u.a256, noncelen, nonce);
        gcm_aes256_update(&a->u.a256, aadlen, aad);
        gcm_aes256_encrypt(&a->u.a256, plaintextlen, dest, plaintext);
        gcm_aes256_digest(&a->u.a256, TAGLEN, dest + plaintextlen);
    }
    return 0;
}

int qcrypto_decrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                       const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *ciphertext,
                       size_t ciphertextlen, const uint8_t *nonce, size_t noncelen,
                       const uint8_t *aad, size_t aadlen)
{
    if (!qcrypto_is_own(aead_ctx->native_handle))
        return ngtcp2_crypto_decrypt_cb(dest, aead, aead_ctx, ciphertext, ciphertextlen, nonce,
                                        noncelen, aad, aadlen);
    if (ciphertextlen < TAGLEN)
        return NGTCP2_ERR_DECRYPT;
    struct qc_aead *a = untag(aead_ctx->native_handle);
    size_t n = ciphertextlen - TAGLEN;
    uint8_t tagbuf[TAGLEN];
    /* gcm_*_decrypt and ni_gcm hash a ciphertext block before they write
     * it: dest may be the ciphertext itself; the tag after it is not
     * overwritten. */
#ifdef QC_NI
    if (a->alg == QC_AES128NI) {
        if (noncelen != 12)
            return NGTCP2_ERR_DECRYPT;
        ni_gcm(&a->u.ni, false, dest, ciphertext, n, nonce, aad, aadlen, tagbuf);
        return ni_tag_eq(tagbuf, ciphertext + n) ? 0 : NGTCP2_ERR_DECRYPT;
    } else
#endif
        if (a->alg == QC_AES128) {
        gcm_aes128_set_iv(&a->u.a128, noncelen, nonce);
        gcm_aes128_update(&a->u.a128, aadlen, aad);
        gcm_aes128_decrypt(&a->u.a128, n, dest, ciphertext);
        gcm_aes128_digest(&a->u.a128, TAGLEN, tagbuf);
    } else {
        gcm_aes256_set_iv(&a->u.a256, noncelen, nonce);
        gcm_aes256_update(&a->u.a256, aadlen, aad);
        gcm_aes256_decrypt(&a->u.a256, n, dest, ciphertext);
        gcm_aes256_digest(&a->u.a256, TAGLEN, tagbuf);
    }
    if (!memeql_sec(tagbuf, ciphertext + n, TAGLEN))
        return NGTCP2_ERR_DECRYPT;
    return 0;
}

int qcrypto_hp_mask_cb(uint8_t *dest, const ngtcp2_crypto_cipher *hp,
                       const ngtcp2_crypto_cipher_ctx *hp_ctx, const uint8_t *sample)
{
    if (!qcrypto_is_own(hp_ctx->native_handle))
        return ngtcp2_crypto_hp_mask_cb(dest, hp, hp_ctx, sample);
    const struct qc_hp *h = untag(hp_ctx->native_handle);
    uint8_t buf[HP_SAMPLELEN];
#ifdef QC_NI
    if (h->alg == QC_AES128NI) {
        ni_hp(&h->u.ni, dest, sample);
        return 0;
    }
#endif
    if (h->alg == QC_AES128)
        aes128_encrypt(&h->u.a128, HP_SAMPLELEN, buf, sample);
    else
        aes256_encrypt(&h->u.a256, HP_SAMPLELEN, buf, sample);
    memcpy(dest, buf, HP_MASKLEN);
    return 0;
}

void qcrypto_delete_aead_ctx_cb(ngtcp2_conn *conn, ngtcp2_crypto_aead_ctx *aead_ctx,
                                void *user_data)
{
    if (!qcrypto_is_own(aead_ctx->native_handle)) {
        ngtcp2_crypto_delete_crypto_aead_ctx_cb(conn, aead_ctx, user_data);
        return;
    }
    struct qc_aead *a = untag(aead_ctx->native_handle);
    explicit_bzero(a, sizeof(*a)); /* as gnutls_aead_cipher_deinit */
    free(a);
    aead_ctx->native_handle = NULL;
}

void qcrypto_delete_cipher_ctx_cb(ngtcp2_conn *conn, ngtcp2_crypto_cipher_ctx *cipher_ctx,
                                  void *user_data)
{
    if (!qcrypto_is_own(cipher_ctx->native_handle)) {
        ngtcp2_crypto_delete_crypto_cipher_ctx_cb(conn, cipher_ctx, user_data);
        return;
    }
    struct qc_hp *h = untag(cipher_ctx->native_handle);
    explicit_bzero(h, sizeof(*h));
    free(h);
    cipher_ctx->native_handle = NULL;
}

/* ngtcp2_crypto_derive_packet_protection_key and
 * ngtcp2_crypto_update_traffic_secret of ngtcp2 0.12 (crypto/shared.c),
 * which its library does not export. hp_key may be NULL. */
int qcrypto_derive_pp_key(uint8_t *key, uint8_t *iv, uint8_t *hp_key, uint32_t version,
                          const ngtcp2_crypto_aead *aead, const ngtcp2_crypto_md *md,
                          const uint8_t *secret, size_t secretlen)
{
    bool v2 = version == NGTCP2_PROTO_VER_V2_DRAFT;
    const char *kl = v2 ? "quicv2 key" : "quic key";
    const char *il = v2 ? "quicv2 iv" : "quic iv";
    const char *hl = v2 ? "quicv2 hp" : "quic hp";
    size_t keylen = ngtcp2_crypto_aead_keylen(aead);
    size_t ivlen = ngtcp2_crypto_packet_protection_ivlen(aead);
    if (ngtcp2_crypto_hkdf_expand_label(key, keylen, md, secret, secretlen, (const uint8_t *)kl,
                                        strlen(kl)) != 0 ||
        ngtcp2_crypto_hkdf_expand_label(iv, ivlen, md, secret, secretlen, (const uint8_t *)il,
                                        strlen(il)) != 0)
        return -1;
    if (hp_key && ngtcp2_crypto_hkdf_expand_label(hp_key, keylen, md, secret, secretlen,
                                                  (const uint8_t *)hl, strlen(hl)) != 0)
        return -1;
    return 0;
}

static int update_traffic_secret(uint8_t *dest, const ngtcp2_crypto_md *md, const uint8_t *secret,
                                 size_t secretlen)
{
    static const char label[] = "quic ku";
    return ngtcp2_crypto_hkdf_expand_label(dest, secretlen, md, secret, secretlen,
                                           (const uint8_t *)label, sizeof(label) - 1);
}

/* As ngtcp2_crypto_update_key (ngtcp2 0.12 crypto/shared.c), with nettle
 * contexts when the suite has them. */
int qcrypto_update_key_cb(ngtcp2_conn *conn, uint8_t *rx_secret, uint8_t *tx_secret,
                          ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                          ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                          const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                          size_t secretlen, void *user_data)
{
    const ngtcp2_crypto_ctx *ctx = ngtcp2_conn_get_crypto_ctx(conn);
    const ngtcp2_crypto_aead *aead = &ctx->aead;
    if (!aead_alg(aead))
        return ngtcp2_crypto_update_key_cb(conn, rx_secret, tx_secret, rx_aead_ctx, rx_iv,
                                           tx_aead_ctx, tx_iv, current_rx_secret, current_tx_secret,
                                           secretlen, user_data);
    const ngtcp2_crypto_md *md = &ctx->md;
    uint32_t version = ngtcp2_conn_get_negotiated_version(conn);
    uint8_t rx_key[64], tx_key[64];
    if (update_traffic_secret(rx_secret, md, current_rx_secret, secretlen) != 0 ||
        qcrypto_derive_pp_key(rx_key, rx_iv, NULL, version, aead, md, rx_secret, secretlen) != 0 ||
        update_traffic_secret(tx_secret, md, current_tx_secret, secretlen) != 0 ||
        qcrypto_derive_pp_key(tx_key, tx_iv, NULL, version, aead, md, tx_secret, secretlen) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (qcrypto_aead_ctx_init(rx_aead_ctx, aead, rx_key) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (qcrypto_aead_ctx_init(tx_aead_ctx, aead, tx_key) != 0) {
        qcrypto_delete_aead_ctx_cb(conn, rx_aead_ctx, user_data);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

/* The 1-RTT branch of ngtcp2_crypto_derive_and_install_{rx,tx}_key
 * (ngtcp2 0.12 crypto/shared.c) for a server, with nettle contexts.
 * Returns 0, -1 on failure, 1 when the suite has no nettle contexts. */
static int install_app_key(ngtcp2_conn *conn, gnutls_session_t tls, bool rx, const uint8_t *secret,
                           size_t secretlen)
{
    const ngtcp2_crypto_ctx *ctx = ngtcp2_conn_get_crypto_ctx(conn);
    if (!ctx->aead.native_handle) {
        ngtcp2_crypto_ctx cctx;
        ngtcp2_crypto_ctx_tls(&cctx, tls);
        ngtcp2_conn_set_crypto_ctx(conn, &cctx);
        ctx = ngtcp2_conn_get_crypto_ctx(conn);
    }
    if (!aead_alg(&ctx->aead) || !hp_alg(&ctx->hp))
        return 1;
    uint32_t version = ngtcp2_conn_get_negotiated_version(conn);
    size_t ivlen = ngtcp2_crypto_packet_protection_ivlen(&ctx->aead);
    uint8_t key[64], iv[64], hp_key[64];
    if (qcrypto_derive_pp_key(key, iv, hp_key, version, &ctx->aead, &ctx->md, secret, secretlen) !=
        0)
        return -1;
    ngtcp2_crypto_aead_ctx aead_ctx = {0};
    ngtcp2_crypto_cipher_ctx hp_ctx = {0};
    if (qcrypto_aead_ctx_init(&aead_ctx, &ctx->aead, key) != 0)
        goto fail;
    if (qcrypto_hp_ctx_init(&hp_ctx, &ctx->hp, hp_key) != 0)
        goto fail;
    int rv =
        rx ? ngtcp2_conn_install_rx_key(conn, secret, secretlen, &aead_ctx, iv, ivlen, &hp_ctx)
           : ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, iv, ivlen, &hp_ctx);
    if (rv != 0)
        goto fail;
    return 0;
fail:
    free(untag(hp_ctx.native_handle));
    free(untag(aead_ctx.native_handle));
    return -1;
}

static int secret_func(gnutls_session_t tls, gnutls_record_encryption_level_t glevel,
                       const void *rx_secret, const void *tx_secret, size_t secretlen)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(tls);
    ngtcp2_conn *conn = ref->get_conn(ref);
    ngtcp2_crypto_level level = ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(glevel);
    bool app = level == NGTCP2_CRYPTO_LEVEL_APPLICATION && ngtcp2_conn_is_server(conn);
    if (rx_secret) {
        int rv = app ? install_app_key(conn, tls, true, rx_secret, secretlen) : 1;
        if (rv < 0)
            return -1;
        if (rv > 0 && ngtcp2_crypto_derive_and_install_rx_key(conn, NULL, NULL, NULL, level,
                                                              rx_secret, secretlen) != 0)
            return -1;
    }
    if (tx_secret) {
        int rv = app ? install_app_key(conn, tls, false, tx_secret, secretlen) : 1;
        if (rv < 0)
            return -1;
        if (rv > 0 && ngtcp2_crypto_derive_and_install_tx_key(conn, NULL, NULL, NULL, level,
                                                              tx_secret, secretlen) != 0)
            return -1;
    }
    return 0;
}

void qcrypto_configure_server_session(gnutls_session_t tls)
{
    gnutls_handshake_set_secret_function(tls, secret_func);
}
