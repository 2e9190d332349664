/* The nettle packet protection of lib/quic/qcrypto.c: RFC 9001 Appendix A
 * (client Initial: key derivation from the client's initial secret, the
 * first ciphertext block of the protected packet and its header
 * protection mask; the server Initial's mask), and the same output as
 * ngtcp2_crypto_gnutls's contexts for AES-128-GCM and AES-256-GCM at
 * every length up to 300 bytes, in place and not, with a corrupted tag or
 * AAD refused. The callbacks also take gnutls's contexts (untagged). */
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
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "quic/qcrypto.h"

static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static ngtcp2_crypto_aead aead_of(gnutls_cipher_algorithm_t c)
{
    ngtcp2_crypto_aead a = {.native_handle = (void *)(intptr_t)c, .max_overhead = 16};
    return a;
}

static ngtcp2_crypto_cipher hp_of(gnutls_cipher_algorithm_t c)
{
    ngtcp2_crypto_cipher h = {.native_handle = (void *)(intptr_t)c};
    return h;
}

/* RFC 9001 A.1 and A.2: the client Initial. */
static void rfc9001_client_initial(void)
{
    ngtcp2_crypto_aead aead = aead_of(GNUTLS_CIPHER_AES_128_GCM);
    ngtcp2_crypto_cipher hp = hp_of(GNUTLS_CIPHER_AES_128_CBC);
    ngtcp2_crypto_md md = {.native_handle = (void *)(intptr_t)GNUTLS_DIG_SHA256};
    uint8_t secret[32], key[16], iv[12], hpk[16], want[64];
    unhex(secret, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
    assert_int_equal(qcrypto_derive_pp_key(key, iv, hpk, NGTCP2_PROTO_VER_V1, &aead, &md, secret,
                                           sizeof(secret)),
                     0);
    unhex(want, "1f369613dd76d5467730efcbe3b1a22d");
    assert_memory_equal(key, want, 16);
    unhex(want, "fa044b2f42a3fd3b46fb255c");
    assert_memory_equal(iv, want, 12);
    unhex(want, "9f50449e04a0e810283a1e9933adedd2");
    assert_memory_equal(hpk, want, 16);

    ngtcp2_crypto_aead_ctx actx = {0};
    ngtcp2_crypto_cipher_ctx hctx = {0};
    assert_int_equal(qcrypto_aead_ctx_init(&actx, &aead, key), 0);
    assert_int_equal(qcrypto_hp_ctx_init(&hctx, &hp, hpk), 0);
    assert_true(qcrypto_is_own(actx.native_handle));
    assert_true(qcrypto_is_own(hctx.native_handle));

    /* Packet number 2: the nonce is the iv with its last byte xor 2. The
     * header (A.2) is the AAD; the first ciphertext block depends only on
     * the first plaintext block (CTR) and is the packet's HP sample. */
    uint8_t aad[32], pt[16], out[32], nonce[12];
    size_t aadlen = unhex(aad, "c300000001088394c8f03e5157080000449e00000002");
    unhex(pt, "060040f1010000ed0303ebf8fa56f129");
    memcpy(nonce, iv, 12);
    nonce[11] ^= 2;
    assert_int_equal(qcrypto_encrypt_cb(out, &aead, &actx, pt, sizeof(pt), nonce, 12, aad, aadlen),
                     0);
    unhex(want, "d1b1c98dd7689fb8ec11d242b123dc9b");
    assert_memory_equal(out, want, 16);

    uint8_t mask[16];
    assert_int_equal(qcrypto_hp_mask_cb(mask, &hp, &hctx, want), 0);
    uint8_t wmask[5];
    unhex(wmask, "437b9aec36");
    assert_memory_equal(mask, wmask, 5);

    /* A.3, the server Initial's header protection. */
    ngtcp2_crypto_cipher_ctx sctx = {0};
    uint8_t shp[16], ssample[16];
    unhex(shp, "c206b8d9b9f0f37644430b490eeaa314");
    unhex(ssample, "2cd0991cd25b0aac406a5816b6394100");
    assert_int_equal(qcrypto_hp_ctx_init(&sctx, &hp, shp), 0);
    assert_int_equal(qcrypto_hp_mask_cb(mask, &hp, &sctx, ssample), 0);
    unhex(wmask, "2ec0d8356a");
    assert_memory_equal(mask, wmask, 5);

    qcrypto_delete_aead_ctx_cb(NULL, &actx, NULL);
    qcrypto_delete_cipher_ctx_cb(NULL, &hctx, NULL);
    qcrypto_delete_cipher_ctx_cb(NULL, &sctx, NULL);
    assert_null(actx.native_handle);
    assert_null(hctx.native_handle);
}

static void test_rfc9001_client_initial(void **state)
{
    (void)state;
    rfc9001_client_initial();
}

/* ChaCha20 has no nettle context here: the caller keeps gnutls's. */
static void test_chacha_not_ours(void **state)
{
    (void)state;
    ngtcp2_crypto_aead aead = aead_of(GNUTLS_CIPHER_CHACHA20_POLY1305);
    ngtcp2_crypto_cipher hp = hp_of(GNUTLS_CIPHER_CHACHA20_32);
    uint8_t key[32] = {1};
    ngtcp2_crypto_aead_ctx actx = {0};
    ngtcp2_crypto_cipher_ctx hctx = {0};
    assert_int_equal(qcrypto_aead_ctx_init(&actx, &aead, key), -1);
    assert_int_equal(qcrypto_hp_ctx_init(&hctx, &hp, key), -1);
    assert_null(actx.native_handle);
}

static void same_as_gnutls(gnutls_cipher_algorithm_t ac, gnutls_cipher_algorithm_t hc,
                           size_t keylen)
{
    ngtcp2_crypto_aead aead = aead_of(ac);
    ngtcp2_crypto_cipher hp = hp_of(hc);
    uint8_t key[32], hpk[32], nonce[12], aad[40];
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (uint8_t)(i * 7 + 3);
        hpk[i] = (uint8_t)(i * 13 + 1);
    }
    ngtcp2_crypto_aead_ctx own_e = {0}, own_d = {0}, g_e = {0}, g_d = {0};
    ngtcp2_crypto_cipher_ctx own_h = {0}, g_h = {0};
    assert_int_equal(qcrypto_aead_ctx_init(&own_e, &aead, key), 0);
    assert_int_equal(qcrypto_aead_ctx_init(&own_d, &aead, key), 0);
    assert_int_equal(qcrypto_hp_ctx_init(&own_h, &hp, hpk), 0);
    assert_int_equal(ngtcp2_crypto_aead_ctx_encrypt_init(&g_e, &aead, key, 12), 0);
    assert_int_equal(ngtcp2_crypto_aead_ctx_decrypt_init(&g_d, &aead, key, 12), 0);
    /* As ngtcp2_crypto_cipher_ctx_encrypt_init (not exported in 0.12). */
    gnutls_cipher_hd_t hd;
    gnutls_datum_t kd = {.data = hpk, .size = (unsigned)keylen};
    assert_int_equal(gnutls_cipher_init(&hd, hc, &kd, NULL), 0);
    g_h.native_handle = hd;
    assert_false(qcrypto_is_own(g_e.native_handle));

    static uint8_t pt[300], a[316], b[316], c[316];
    for (size_t len = 0; len <= sizeof(pt); len++) {
        for (size_t i = 0; i < len; i++)
            pt[i] = (uint8_t)(len * 31 + i * 5);
        for (size_t i = 0; i < sizeof(nonce); i++)
            nonce[i] = (uint8_t)(len + i);
        size_t aadlen = len % sizeof(aad);
        for (size_t i = 0; i < aadlen; i++)
            aad[i] = (uint8_t)(len ^ i);
        /* Ours and gnutls's through the same callback. */
        assert_int_equal(qcrypto_encrypt_cb(a, &aead, &own_e, pt, len, nonce, 12, aad, aadlen), 0);
        assert_int_equal(qcrypto_encrypt_cb(b, &aead, &g_e, pt, len, nonce, 12, aad, aadlen), 0);
        assert_memory_equal(a, b, len + 16);
        /* In place, as ngtcp2 encrypts. */
        memcpy(c, pt, len);
        assert_int_equal(qcrypto_encrypt_cb(c, &aead, &own_e, c, len, nonce, 12, aad, aadlen), 0);
        assert_memory_equal(c, b, len + 16);
        /* Decrypt: ours of gnutls's, in place; gnutls's of ours. */
        assert_int_equal(qcrypto_decrypt_cb(c, &aead, &own_d, c, len + 16, nonce, 12, aad, aadlen),
                         0);
        if (len)
            assert_memory_equal(c, pt, len);
        assert_int_equal(qcrypto_decrypt_cb(c, &aead, &g_d, a, len + 16, nonce, 12, aad, aadlen),
                         0);
        if (len)
            assert_memory_equal(c, pt, len);
        /* A flipped tag bit, ciphertext bit or AAD byte is refused. */
        a[len + (len % 16)] ^= 0x10;
        assert_int_equal(qcrypto_decrypt_cb(c, &aead, &own_d, a, len + 16, nonce, 12, aad, aadlen),
                         NGTCP2_ERR_DECRYPT);
        a[len + (len % 16)] ^= 0x10;
        if (len) {
            a[len / 2] ^= 1;
            assert_int_equal(
                qcrypto_decrypt_cb(c, &aead, &own_d, a, len + 16, nonce, 12, aad, aadlen),
                NGTCP2_ERR_DECRYPT);
            a[len / 2] ^= 1;
        }
        if (aadlen) {
            aad[0] ^= 0x80;
            assert_int_equal(
                qcrypto_decrypt_cb(c, &aead, &own_d, a, len + 16, nonce, 12, aad, aadlen),
                NGTCP2_ERR_DECRYPT);
            aad[0] ^= 0x80;
        }
        assert_int_equal(qcrypto_decrypt_cb(c, &aead, &own_d, a, 15, nonce, 12, aad, aadlen),
                         NGTCP2_ERR_DECRYPT);
        /* Header protection: the sample is any 16 bytes. */
        if (len >= 16) {
            uint8_t m1[16], m2[16];
            assert_int_equal(qcrypto_hp_mask_cb(m1, &hp, &own_h, a + len - 16), 0);
            assert_int_equal(qcrypto_hp_mask_cb(m2, &hp, &g_h, a + len - 16), 0);
            assert_memory_equal(m1, m2, 5);
        }
    }
    qcrypto_delete_aead_ctx_cb(NULL, &own_e, NULL);
    qcrypto_delete_aead_ctx_cb(NULL, &own_d, NULL);
    qcrypto_delete_cipher_ctx_cb(NULL, &own_h, NULL);
    qcrypto_delete_aead_ctx_cb(NULL, &g_e, NULL);
    qcrypto_delete_aead_ctx_cb(NULL, &g_d, NULL);
    qcrypto_delete_cipher_ctx_cb(NULL, &g_h, NULL);
}

static void test_same_as_gnutls_aes128(void **state)
{
    (void)state;
    same_as_gnutls(GNUTLS_CIPHER_AES_128_GCM, GNUTLS_CIPHER_AES_128_CBC, 16);
}

static void test_same_as_gnutls_aes256(void **state)
{
    (void)state;
    same_as_gnutls(GNUTLS_CIPHER_AES_256_GCM, GNUTLS_CIPHER_AES_256_CBC, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc9001_client_initial),
        cmocka_unit_test(test_chacha_not_ours),
        cmocka_unit_test(test_same_as_gnutls_aes128),
        cmocka_unit_test(test_same_as_gnutls_aes256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
