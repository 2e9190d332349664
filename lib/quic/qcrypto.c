/* Packet protection of a server's 1-RTT keys on nettle:
 * see qcrypto.h. */
#include "quic/qcrypto.h"

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

enum qc_alg { QC_AES128 = 1, QC_AES256 };

struct qc_aead {
    enum qc_alg alg;
    union {
        struct gcm_aes128_ctx a128;
        struct gcm_aes256_ctx a256;
    } u;
};

struct qc_hp {
    enum qc_alg alg;
    union {
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

static void *qc_alloc(size_t n)
{
    return malloc(n);
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
    a->alg = alg;
    if (alg == QC_AES128)
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
    h->alg = alg;
    if (alg == QC_AES128)
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
    /* gcm_*_decrypt hashes the ciphertext before it writes the
     * plaintext: dest may be the ciphertext itself; the tag after it is
     * not overwritten. */
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
    if (!aead_alg(aead) || !ngtcp2_conn_is_server(conn)) /* the client keeps gnutls's */
        return ngtcp2_crypto_update_key_cb(conn, rx_secret, tx_secret, rx_aead_ctx, rx_iv,
                                           tx_aead_ctx, tx_iv, current_rx_secret, current_tx_secret,
                                           secretlen, user_data);
    const ngtcp2_crypto_md *md = &ctx->md;
    uint32_t version = ngtcp2_conn_get_negotiated_version(conn);
    uint8_t rx_key[64], tx_key[64];
    int rc = NGTCP2_ERR_CALLBACK_FAILURE;
    if (update_traffic_secret(rx_secret, md, current_rx_secret, secretlen) != 0 ||
        qcrypto_derive_pp_key(rx_key, rx_iv, NULL, version, aead, md, rx_secret, secretlen) != 0 ||
        update_traffic_secret(tx_secret, md, current_tx_secret, secretlen) != 0 ||
        qcrypto_derive_pp_key(tx_key, tx_iv, NULL, version, aead, md, tx_secret, secretlen) != 0)
        goto out;
    if (qcrypto_aead_ctx_init(rx_aead_ctx, aead, rx_key) != 0)
        goto out;
    if (qcrypto_aead_ctx_init(tx_aead_ctx, aead, tx_key) != 0) {
        qcrypto_delete_aead_ctx_cb(conn, rx_aead_ctx, user_data);
        goto out;
    }
    rc = 0;
out:
    explicit_bzero(rx_key, sizeof(rx_key)); /* no key copies left on the stack */
    explicit_bzero(tx_key, sizeof(tx_key));
    return rc;
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
    ngtcp2_crypto_aead_ctx aead_ctx = {0};
    ngtcp2_crypto_cipher_ctx hp_ctx = {0};
    int rc = -1;
    if (qcrypto_derive_pp_key(key, iv, hp_key, version, &ctx->aead, &ctx->md, secret, secretlen) !=
        0)
        goto out;
    if (qcrypto_aead_ctx_init(&aead_ctx, &ctx->aead, key) != 0)
        goto fail;
    if (qcrypto_hp_ctx_init(&hp_ctx, &ctx->hp, hp_key) != 0)
        goto fail;
    int rv =
        rx ? ngtcp2_conn_install_rx_key(conn, secret, secretlen, &aead_ctx, iv, ivlen, &hp_ctx)
           : ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, iv, ivlen, &hp_ctx);
    if (rv != 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    /* Not installed: ours to free, through the deleters, which wipe the
     * key schedules. */
    if (hp_ctx.native_handle != NULL)
        qcrypto_delete_cipher_ctx_cb(conn, &hp_ctx, NULL);
    if (aead_ctx.native_handle != NULL)
        qcrypto_delete_aead_ctx_cb(conn, &aead_ctx, NULL);
out:
    explicit_bzero(key, sizeof(key)); /* no key copies left on the stack */
    explicit_bzero(iv, sizeof(iv));
    explicit_bzero(hp_key, sizeof(hp_key));
    return rc;
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
