/* Packet protection of a server's 1-RTT keys, without gnutls's generic
 * cipher API.
 *
 * ngtcp2_crypto_gnutls protects every packet through gnutls: a header
 * protection mask is gnutls_cipher_set_iv plus gnutls_cipher_encrypt2 on
 * an AES-CBC handle (~175 instructions for one AES block), an AEAD goes
 * through gnutls_aead_cipher_encrypt's checks and dispatch (~1,150 for a
 * 120-byte packet). For AES-128-GCM and AES-256-GCM (the suites of
 * QUIC_DEFAULT_PRIORITY but ChaCha20) the 1-RTT keys installed on a
 * server connection are instead nettle contexts kept ready per key:
 * gcm_aes128/256 and aes128/256 (gnutls's own backend; ~1,140 for a
 * 120-byte packet and ~50 for a mask). The AES and GHASH code stays in a
 * maintained library: nothing here implements a cipher.
 *
 * Such a context is told apart from a gnutls handle by the low bit of the
 * ngtcp2 context's native_handle (set: ours). The callbacks here take
 * either, so Initial, Handshake and 0-RTT keys, the client end and
 * ChaCha20 keep ngtcp2_crypto_gnutls's contexts unchanged.
 *
 * Thread safety: a context belongs to its connection (its worker). */
#ifndef ROOST_QUIC_QCRYPTO_H
#define ROOST_QUIC_QCRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

/* The callbacks of ngtcp2_callbacks: as ngtcp2_crypto_*_cb, for either
 * kind of context. */
int qcrypto_encrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                       const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *plaintext,
                       size_t plaintextlen, const uint8_t *nonce, size_t noncelen,
                       const uint8_t *aad, size_t aadlen);
int qcrypto_decrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                       const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *ciphertext,
                       size_t ciphertextlen, const uint8_t *nonce, size_t noncelen,
                       const uint8_t *aad, size_t aadlen);
int qcrypto_hp_mask_cb(uint8_t *dest, const ngtcp2_crypto_cipher *hp,
                       const ngtcp2_crypto_cipher_ctx *hp_ctx, const uint8_t *sample);
/* A key update makes nettle contexts when the current suite has them. */
int qcrypto_update_key_cb(ngtcp2_conn *conn, uint8_t *rx_secret, uint8_t *tx_secret,
                          ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                          ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                          const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                          size_t secretlen, void *user_data);
void qcrypto_delete_aead_ctx_cb(ngtcp2_conn *conn, ngtcp2_crypto_aead_ctx *aead_ctx,
                                void *user_data);
void qcrypto_delete_cipher_ctx_cb(ngtcp2_conn *conn, ngtcp2_crypto_cipher_ctx *cipher_ctx,
                                  void *user_data);

/* Replaces ngtcp2_crypto_gnutls's secret function on a server session
 * (after ngtcp2_crypto_gnutls_configure_server_session): 1-RTT keys of
 * AES-GCM suites get nettle contexts, the rest goes to
 * ngtcp2_crypto_derive_and_install_{rx,tx}_key as before. */
void qcrypto_configure_server_session(gnutls_session_t tls);

/* Context constructors, exported for the unit test: 0 or -1 (a suite
 * without nettle contexts: the caller uses ngtcp2_crypto's). ctx is made
 * with the low bit set; free with the delete callbacks. */
int qcrypto_aead_ctx_init(ngtcp2_crypto_aead_ctx *ctx, const ngtcp2_crypto_aead *aead,
                          const uint8_t *key);
int qcrypto_hp_ctx_init(ngtcp2_crypto_cipher_ctx *ctx, const ngtcp2_crypto_cipher *hp,
                        const uint8_t *key);
/* ngtcp2 0.12's packet protection key derivation (not exported by its
 * library): key, iv and (when not NULL) hp_key from a traffic secret. */
int qcrypto_derive_pp_key(uint8_t *key, uint8_t *iv, uint8_t *hp_key, uint32_t version,
                          const ngtcp2_crypto_aead *aead, const ngtcp2_crypto_md *md,
                          const uint8_t *secret, size_t secretlen);
/* Whether a context is one of ours. */
int qcrypto_is_own(const void *native_handle);

#endif
