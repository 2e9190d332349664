/* Replies a worker's server sends without a connection (quic_int.h,
 * stateless.c): version negotiation, stateless reset, Retry and a close for
 * a refused Initial. Each is rate-limited by its token bucket in the shared
 * state, so a flood of triggers cannot turn the relay into an amplifier. */
#include <stddef.h>
#include <stdint.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "quic/cid.h"
#include "quic/quic.h"
#include "quic/quic_int.h"

void quic_stateless_vn(struct quic_server *s, const ngtcp2_version_cid *vc,
                       const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_vn, worker_now(s->w))) {
        stat_inc(s->ep.st, QS(rate_limited));
        return;
    }
    uint8_t out[256];
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    uint8_t r;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        out, sizeof(out), r, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv, 1);
    if (n > 0) {
        quic_send_raw(&s->ep, out, (size_t)n, remote, local);
        stat_inc(s->ep.st, QS(vn_sent));
    }
}

void quic_stateless_reset(struct quic_server *s, const ngtcp2_version_cid *vc, size_t pktlen,
                          const struct udp_addr *remote, const struct udp_addr *local)
{
    /* Smaller than what triggered it (no reset loops), never below the
     * minimum a peer recognises. */
    size_t len = pktlen - 1 < 43 ? pktlen - 1 : 43;
    if (pktlen < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1)
        return;
    if (!tbucket_take(&s->sh->tb_reset, worker_now(s->w))) {
        stat_inc(s->ep.st, QS(rate_limited));
        return;
    }
    ngtcp2_cid cid;
    ngtcp2_cid_init(&cid, vc->dcid, vc->dcidlen);
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (ngtcp2_crypto_generate_stateless_reset_token(token, s->sh->reset_secret, SECRET_LEN,
                                                     &cid) != 0)
        return;
    uint8_t rnd[64];
    size_t randlen = len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
    uint8_t out[64];
    ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(out, sizeof(out), token, rnd, randlen);
    if (n > 0) {
        quic_send_raw(&s->ep, out, (size_t)n, remote, local);
        stat_inc(s->ep.st, QS(reset_sent));
    }
}

void quic_stateless_retry(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                          const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_retry, worker_now(s->w))) {
        stat_inc(s->ep.st, QS(rate_limited));
        return;
    }
    ngtcp2_cid scid;
    scid.datalen = QUIC_CID_LEN;
    if (cid_generate(scid.data, s->id) < 0)
        return;
    uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
    ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token(token, s->sh->retry_secret, SECRET_LEN,
                                                         hd->version, &remote->u.sa, remote->len,
                                                         &scid, &hd->dcid, worker_now(s->w));
    if (tl < 0)
        return;
    uint8_t out[UDP_TX_MAX];
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(out, sizeof(out), hd->version, &hd->scid, &scid,
                                               &hd->dcid, token, (size_t)tl);
    if (n > 0) {
        quic_send_raw(&s->ep, out, (size_t)n, remote, local);
        stat_inc(s->ep.st, QS(retry_sent));
    }
}

void quic_stateless_close(struct quic_server *s, const ngtcp2_pkt_hd *hd, uint64_t error,
                          const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_close, worker_now(s->w))) {
        stat_inc(s->ep.st, QS(rate_limited));
        return;
    }
    uint8_t out[UDP_TX_MAX];
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(out, sizeof(out), hd->version, &hd->scid,
                                                          &hd->dcid, error, NULL, 0);
    if (n > 0) {
        quic_send_raw(&s->ep, out, (size_t)n, remote, local);
        stat_inc(s->ep.st, QS(close_sent));
    }
}
