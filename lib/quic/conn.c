/* One connection of either end: the ngtcp2 callbacks both ends share,
 * reading, closing, timers and the conn API of quic.h (the write path is
 * connwrite.c).
 * Where the ends differ this file asks c->ep->role (see quic_int.h); it
 * calls neither server.c nor client.c. */
#include "quic/quic.h"

#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/frame.h"
#include "quic/qcrypto.h"
#include "quic/quic_int.h"

#define CLOSE_RESENDS 4

void quic_path_init(ngtcp2_path *p, const struct udp_addr *local, const struct udp_addr *remote)
{
    p->local.addr = (ngtcp2_sockaddr *)&local->u.sa;
    p->local.addrlen = local->len;
    p->remote.addr = (ngtcp2_sockaddr *)&remote->u.sa;
    p->remote.addrlen = remote->len;
    p->user_data = NULL;
}

void quic_conn_mark_data(struct quic_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->ep->dirty_head;
    c->ep->dirty_head = c;
}

void quic_conn_mark_dirty(struct quic_conn *c)
{
    c->need_pkt = true;
    quic_conn_mark_data(c);
}

/* The connection's timer is off (cancelled, or fired). */
static void timer_off(struct quic_conn *c)
{
    timer_cancel(c->ep->timers, &c->timer);
    c->armed_exp = UINT64_MAX;
}

/* Arms the timer for exp unless it already is. Returns 0 or ROOST_ENOMEM. */
int quic_conn_timer_set(struct quic_conn *c, uint64_t exp)
{
    if (exp == c->armed_exp)
        return 0;
    if (exp == UINT64_MAX) {
        timer_off(c);
        return 0;
    }
    int rc = timer_arm(c->ep->timers, &c->timer, exp);
    c->armed_exp = rc == 0 ? exp : UINT64_MAX;
    return rc;
}

static void leave_half_open(struct quic_conn *c)
{
    if (c->half_open) {
        c->half_open = false;
        c->ep->half_open--;
        stat_dec(c->ep->st, QS(conns_half_open));
    }
}

/* The one leave path: on_close exactly once per connection. */
void quic_conn_notify(struct quic_conn *c, uint64_t app_error)
{
    if (c->closed_cb)
        return;
    c->closed_cb = true;
    leave_half_open(c);
    if (c->ep->ops->on_close != NULL)
        c->ep->ops->on_close(c, app_error, c->ep->arg);
}

/* The code on_close reports for what info recorded. */
uint64_t quic_conn_close_code(const struct quic_conn *c)
{
    return c->info.app ? c->info.code : QUIC_APP_INTERNAL;
}

/* Over: the server frees it at turn end, the client keeps it until
 * quic_client_conn_del. */
static void set_dead(struct quic_conn *c)
{
    if (c->state != CS_DEAD)
        c->ep->active--;
    c->state = CS_DEAD;
    quic_dgram_drop_queued(c);
    timer_off(c);
    quic_conn_mark_dirty(c);
}

/* Ends the connection now and tells the app (if not yet told). The app is
 * told last: a client's app may free the connection from on_close, so
 * nothing here or in the callers touches c after this. */
void quic_conn_end_now(struct quic_conn *c, uint64_t app_error)
{
    set_dead(c);
    quic_conn_notify(c, app_error);
}

/* After a close was sent (CS_CLOSING) or received (CS_DRAINING): the server
 * waits 3 PTO, then frees; the client ends at once. Tells the app last. */
void quic_conn_linger(struct quic_conn *c, enum conn_state st, uint64_t app_error)
{
    if (!quic_conn_is_server(c)) {
        quic_conn_end_now(c, app_error);
        return;
    }
    c->state = st;
    quic_dgram_drop_queued(c);
    uint64_t pto = ngtcp2_conn_get_pto(c->conn);
    if (quic_conn_timer_set(c, quic_ep_now(c->ep) + 3 * pto) < 0)
        set_dead(c);
    quic_conn_notify(c, app_error);
}

/* Records a local close; the CONNECTION_CLOSE packet is written at turn
 * end, outside any ngtcp2 callback. tell: on_close now (see quic_int.h). */
/* Copies a reason phrase into c->reason, cut at QUIC_REASON_MAX bytes on
 * a UTF-8 character boundary. */
static void keep_reason(struct quic_conn *c, const uint8_t *r, size_t n)
{
    if (r == NULL)
        n = 0;
    if (n > sizeof(c->reason)) {
        n = sizeof(c->reason);
        while (n > 0 && (r[n] & 0xC0) == 0x80)
            n--; /* r[n] continues a character: cut before that character */
    }
    if (n > 0)
        memcpy(c->reason, r, n);
    c->reason_len = n;
}

static void close_with(struct quic_conn *c, const ngtcp2_connection_close_error *e,
                       uint64_t app_error, bool tell)
{
    if (!quic_conn_live(c))
        return;
    c->ccerr = *e;
    keep_reason(c, e->reason, e->reasonlen);
    c->ccerr.reason = c->reason_len > 0 ? c->reason : NULL;
    c->ccerr.reasonlen = c->reason_len;
    c->info.remote = false;
    c->info.app = e->type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
    c->info.code = e->error_code;
    c->state = CS_CLOSE_PENDING;
    /* No datagram goes after a close: the queued ones are counted now,
     * before the app hears of the end (its on_close may read the stats). */
    quic_dgram_drop_queued(c);
    quic_conn_mark_dirty(c);
    if (tell)
        quic_conn_notify(c, app_error);
}

static void close_app(struct quic_conn *c, uint64_t app_error, const char *reason, bool tell)
{
    ngtcp2_connection_close_error e;
    ngtcp2_connection_close_error_default(&e);
    ngtcp2_connection_close_error_set_application_error(&e, app_error, (const uint8_t *)reason,
                                                        reason != NULL ? strlen(reason) : 0);
    close_with(c, &e, app_error, tell);
}

void quic_conn_close_liberr(struct quic_conn *c, int liberr)
{
    ngtcp2_connection_close_error e;
    ngtcp2_connection_close_error_default(&e);
    if (liberr == NGTCP2_ERR_CRYPTO)
        ngtcp2_connection_close_error_set_transport_error_tls_alert(
            &e, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
    else
        ngtcp2_connection_close_error_set_transport_error_liberr(&e, liberr, NULL, 0);
    if (!c->opened)
        stat_inc(c->ep->st, QS(handshakes_failed));
    if (quic_conn_live(c))
        c->info.liberr = liberr;
    close_with(c, &e, QUIC_APP_INTERNAL, quic_conn_is_server(c));
}

void quic_conn_close(struct quic_conn *c, uint64_t app_error, const char *reason)
{
    close_app(c, app_error, reason, false);
    /* A close pending from an earlier error the client was not yet told of
     * is told now too: the application hears of the end before this
     * returns. */
    if (c->state == CS_CLOSE_PENDING)
        quic_conn_notify(c, app_error);
}

uint64_t quic_conn_ack_delay(const struct quic_conn *c, const ngtcp2_conn_stat *cs)
{
    uint64_t max = ngtcp2_conn_get_local_transport_params(c->conn)->max_ack_delay;
    uint64_t d = cs->smoothed_rtt / 8;
    return d < max ? d : max;
}

/* Whether the write a timer asks for may wait for the next packet that
 * goes anyway (ACKs ride along in any packet). ngtcp2 0.12 times its
 * delayed ACK at min(max_ack_delay, srtt / 8): microseconds on a short
 * path, so a lone ACK-only packet answers nearly every packet received.
 * RFC 9000 §13.2.1 lets it wait up to the max_ack_delay this end
 * advertised: the ACK goes with the next datagram or control bytes
 * before then, else on its own at the deadline (c->ack_due, on the
 * timer). Never when the loss detection timer fired (probes and
 * retransmissions go at once) nor before the handshake is confirmed
 * (Initial and Handshake packets are acknowledged at once); the
 * every-second-packet ACK (after_read) is not delayed. */
static bool ack_can_wait(struct quic_conn *c, uint64_t now, bool loss_due)
{
    if (c->ack_due != 0 && now >= c->ack_due) {
        c->ack_due = 0; /* the deadline: write it now */
        c->ack_at = 0;  /* a settled ACK goes with that write */
        return false;
    }
    if (c->state != CS_OPEN || !c->confirmed || loss_due)
        return false;
    if (c->ack_due != 0)
        return true;
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c->conn, &cs);
    uint64_t max = ngtcp2_conn_get_local_transport_params(c->conn)->max_ack_delay;
    /* The ACK fell due at most srtt/8 after the packet came (plus how late
     * this timer ran: QUIC_ACK_MARGIN_NS covers it). */
    uint64_t spent = cs.smoothed_rtt / 8 + QUIC_ACK_MARGIN_NS;
    if (max <= spent)
        return false;
    c->ack_due = now + (max - spent);
    return true;
}

static void on_timer(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    struct quic_conn *c = arg;
    c->armed_exp = UINT64_MAX; /* it fired: disarmed */
    c->ng_exp_ok = false;
    if (c->state == CS_CLOSING || c->state == CS_DRAINING) {
        set_dead(c); /* the 3 PTO wait is over */
        return;
    }
    if (!quic_conn_live(c))
        return;
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c->conn, &cs);
    bool loss_due = cs.loss_detection_timer <= now;
    stat_inc(c->ep->st, QS(timer_fires));
    int rv = ngtcp2_conn_handle_expiry(c->conn, now);
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        /* Silent close: the peer is gone or never finished. */
        if (c->opened)
            stat_inc(c->ep->st, QS(idle_timeouts));
        else
            stat_inc(c->ep->st, QS(handshake_timeouts));
        c->info.idle = true;
        c->info.liberr = rv;
        quic_conn_end_now(c, QUIC_APP_IDLE_TIMEOUT);
        return;
    }
    if (rv != 0) {
        quic_conn_close_liberr(c, rv);
        return;
    }
    if (!ack_can_wait(c, now, loss_due))
        quic_conn_mark_dirty(c);
    else
        quic_conn_mark_data(c); /* queued data only; the timer holds the ACK's deadline */
}

/* ------------------------------------------------- ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((struct quic_conn *)ref->user_data)->conn;
}

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *user_data)
{
    struct quic_conn *c = user_data;
    /* The client opens the one control stream; the server accepts it. */
    if (!quic_conn_is_server(c) && ngtcp2_conn_open_bidi_stream(conn, &c->ctl_stream, NULL) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (quic_conn_is_server(c) &&
        ngtcp2_conn_get_remote_transport_params(conn)->max_datagram_frame_size == 0) {
        /* PROTOCOL.md §2: media travels in DATAGRAM frames; a client that
         * cannot receive them cannot take part. A failed handshake: the
         * app never sees the connection open. */
        stat_inc(c->ep->st, QS(handshakes_failed));
        close_app(c, QUIC_APP_PROTOCOL_VIOLATION, "max_datagram_frame_size required", true);
        return 0;
    }
    leave_half_open(c);
    stat_inc(c->ep->st, QS(handshakes_ok));
    c->state = CS_OPEN;
    c->opened = true;
    c->info.opened = true;
    /* A server's handshake is confirmed as it completes (RFC 9001
     * §4.1.2); ngtcp2 0.12 calls handshake_confirmed for clients only. */
    if (quic_conn_is_server(c))
        c->confirmed = true;
    int r = c->ep->ops->on_open != NULL ? c->ep->ops->on_open(c, c->ep->arg) : 0;
    if (r > 0)
        quic_conn_close(c, (uint64_t)r, NULL);
    quic_conn_mark_dirty(c);
    return 0;
}

/* Handshake confirmed (RFC 9001 §4.1.2): no Initial or Handshake packet
 * is acknowledged any more, so a delayed ACK is a 1-RTT one (those MUST
 * go at once). */
static int handshake_confirmed_cb(ngtcp2_conn *conn, void *user_data)
{
    (void)conn;
    ((struct quic_conn *)user_data)->confirmed = true;
    return 0;
}

static void deliver_body(const uint8_t *body, size_t len, void *arg)
{
    struct quic_conn *c = arg;
    c->cs.control_in++;
    stat_inc(c->ep->st, QS(control_in));
    if (c->state == CS_OPEN && c->ep->ops->on_control != NULL)
        c->ep->ops->on_control(c, body, len, c->ep->arg);
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                               uint64_t offset, const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data)
{
    (void)offset;
    (void)stream_user_data;
    struct quic_conn *c = user_data;
    c->rx_cb = true;
    if (stream_id != c->ctl_stream || c->state != CS_OPEN)
        return 0;
    if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
        /* PROTOCOL.md §2: the control stream lives as long as the
         * connection; finishing it is a violation (what came with the FIN
         * is not delivered). */
        close_app(c, QUIC_APP_PROTOCOL_VIOLATION, "control stream finished",
                  quic_conn_is_server(c));
        return 0;
    }
    c->cs.bytes_in += datalen;
    int rc = ctl_rx_feed(&c->rx, data, datalen, deliver_body, c);
    if (rc < 0) {
        if (rc == ROOST_ENOMEM)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        close_app(c, QUIC_APP_PROTOCOL_VIOLATION, "bad control frame", quic_conn_is_server(c));
        return 0;
    }
    /* Bytes are consumed once copied out (a partial message is bounded by
     * FRAME_MAX_BODY), so the windows slide by what arrived. */
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
}

/* RESET_STREAM or STOP_SENDING on the control stream, or the stream
 * closing while the connection lives: a PROTOCOL_VIOLATION (§2). */
static void ctl_stream_gone(struct quic_conn *c, int64_t stream_id, const char *why)
{
    if (stream_id == c->ctl_stream && quic_conn_live(c))
        close_app(c, QUIC_APP_PROTOCOL_VIOLATION, why, quic_conn_is_server(c));
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t stream_id, uint64_t final_size,
                           uint64_t app_error_code, void *user_data, void *stream_user_data)
{
    (void)conn;
    (void)final_size;
    (void)app_error_code;
    (void)stream_user_data;
    ctl_stream_gone(user_data, stream_id, "control stream reset");
    return 0;
}

static int stream_stop_sending_cb(ngtcp2_conn *conn, int64_t stream_id, uint64_t app_error_code,
                                  void *user_data, void *stream_user_data)
{
    (void)conn;
    (void)app_error_code;
    (void)stream_user_data;
    ctl_stream_gone(user_data, stream_id, "control stream stopped");
    return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                           uint64_t app_error_code, void *user_data, void *stream_user_data)
{
    (void)conn;
    (void)flags;
    (void)app_error_code;
    (void)stream_user_data;
    ctl_stream_gone(user_data, stream_id, "control stream closed");
    return 0;
}

static int acked_stream_cb(ngtcp2_conn *conn, int64_t stream_id, uint64_t offset, uint64_t datalen,
                           void *user_data, void *stream_user_data)
{
    (void)conn;
    (void)stream_user_data;
    struct quic_conn *c = user_data;
    if (stream_id == c->ctl_stream)
        ctl_tx_acked(&c->tx, offset, datalen);
    return 0;
}

static int recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t datalen,
                            void *user_data)
{
    (void)conn;
    (void)flags;
    struct quic_conn *c = user_data;
    c->rx_cb = true;
    c->cs.dgram_in++;
    stat_inc(c->ep->st, QS(dgram_in));
    if (c->state == CS_OPEN && c->ep->ops->on_datagram != NULL)
        c->ep->ops->on_datagram(c, data, datalen, c->ep->arg);
    return 0;
}

static int ack_datagram_cb(ngtcp2_conn *conn, uint64_t id, void *user_data)
{
    (void)conn;
    quic_dgram_acked(user_data, id);
    return 0;
}

/* The reorder window: as long as ngtcp2 keeps a lost packet's entry and
 * can still report its ACK (three PTO), at least 1 ms. */
static int lost_datagram_cb(ngtcp2_conn *conn, uint64_t id, void *user_data)
{
    uint64_t w = 3 * ngtcp2_conn_get_pto(conn);
    quic_dgram_lost(user_data, id, w > 1000000u ? w : 1000000u);
    return 0;
}

void quic_ep_init(struct quic_ep *ep, enum quic_role role, const struct quic_app_ops *ops,
                  void *arg, size_t control_queue_max, unsigned dgram_queue_max)
{
    ep->role = role;
    ep->ops = ops;
    ep->arg = arg;
    ep->control_queue_max = control_queue_max;
    ep->dgram_queue_max = dgram_queue_max;
    ep->dgram_max_age_ns = QUIC_DEFAULT_DGRAM_MAX_AGE_NS;
    ep->ack_thresh = QUIC_DEFAULT_ACK_THRESH;
    ngtcp2_callbacks *cb = &ep->callbacks;
    memset(cb, 0, sizeof(*cb));
    cb->recv_crypto_data = quic_recv_crypto_data_cb;
    cb->handshake_completed = handshake_completed_cb;
    cb->handshake_confirmed = handshake_confirmed_cb;
    /* Either kind of key context: ngtcp2_crypto_gnutls's or nettle's
     * (a server's 1-RTT keys, qcrypto.h). */
    cb->encrypt = qcrypto_encrypt_cb;
    cb->decrypt = qcrypto_decrypt_cb;
    cb->hp_mask = qcrypto_hp_mask_cb;
    cb->recv_stream_data = recv_stream_data_cb;
    cb->acked_stream_data_offset = acked_stream_cb;
    cb->stream_reset = stream_reset_cb;
    cb->stream_stop_sending = stream_stop_sending_cb;
    cb->stream_close = stream_close_cb;
    cb->rand = rand_cb;
    cb->update_key = qcrypto_update_key_cb;
    cb->delete_crypto_aead_ctx = qcrypto_delete_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = qcrypto_delete_cipher_ctx_cb;
    cb->recv_datagram = recv_datagram_cb;
    cb->ack_datagram = ack_datagram_cb;
    cb->lost_datagram = lost_datagram_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
}

/* -------------------------------------------------- create and free */

int quic_conn_init(struct quic_conn *c, struct quic_ep *ep)
{
    c->ep = ep;
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    c->fd = -1;
    c->ctl_stream = -1;
    c->state = CS_HANDSHAKE;
    c->armed_exp = UINT64_MAX;
    ctl_tx_init(&c->tx, ep->control_queue_max);
    ctl_rx_init(&c->rx);
    timer_init(&c->timer, on_timer, c);
    ep->active++;
    /* The datagram queue (dgram_queue_max items, 6 KiB by default) is made
     * at the first datagram and given back after QUIC_DQ_IDLE_NS without
     * one (dq_release): an idle participant holds none. */
    return 0;
}

int quic_conn_tls_init(struct quic_conn *c, gnutls_priority_t prio, struct quic_creds *creds,
                       const char *alpn)
{
    c->creds = creds;
    bool server = quic_conn_is_server(c);
    unsigned flags = server ? GNUTLS_SERVER | GNUTLS_NO_TICKETS | GNUTLS_NO_END_OF_EARLY_DATA
                            : GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA;
    if (gnutls_init(&c->tls, flags) != 0) {
        c->tls = NULL;
        return ROOST_ECRYPTO;
    }
    if (gnutls_priority_set(c->tls, prio) != 0)
        return ROOST_ECRYPTO;
    if ((server ? ngtcp2_crypto_gnutls_configure_server_session(c->tls)
                : ngtcp2_crypto_gnutls_configure_client_session(c->tls)) != 0)
        return ROOST_ECRYPTO;
    if (server)
        qcrypto_configure_server_session(c->tls);
    gnutls_session_set_ptr(c->tls, &c->ref);
    if (gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, creds->cred) != 0)
        return ROOST_ECRYPTO;
    /* MANDATORY: a peer offering no common protocol gets the
     * no_application_protocol alert. */
    gnutls_datum_t a = {.data = (unsigned char *)alpn, .size = (unsigned)strlen(alpn)};
    if (gnutls_alpn_set_protocols(c->tls, &a, 1,
                                  GNUTLS_ALPN_MANDATORY |
                                      (server ? GNUTLS_ALPN_SERVER_PRECEDENCE : 0)) != 0)
        return ROOST_ECRYPTO;
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    return 0;
}

void quic_conn_fini(struct quic_conn *c)
{
    if (c->state != CS_DEAD)
        c->ep->active--;
    leave_half_open(c);
    timer_off(c);
    if (c->conn != NULL)
        ngtcp2_conn_del(c->conn);
    if (c->tls != NULL)
        gnutls_deinit(c->tls);
    quic_creds_unref(c->creds); /* after the session that used them */
    ctl_tx_free(&c->tx);
    ctl_rx_free(&c->rx);
    /* Freed while still open (a server's shutdown, a hand-off that found
     * no server): what is queued never goes, counted like a close's. */
    if (c->dq != NULL) {
        quic_dgram_drop_queued(c);
        stat_dec(c->ep->st, QS(dgram_queues));
    }
    free(c->dq);
    free(c->close_pkt);
}

/* ------------------------------------------------------------- read */

/* After a packet was read: write now only what is due. A packet that
 * brought the application nothing (an ACK, mostly) needs no answer but a
 * re-armed timer, unless the window it opened lets held-back datagrams go;
 * ngtcp2 acks every ep->ack_thresh-th ack-eliciting packet at once (the
 * second by default), the others when the ACK delay expires (the timer) or
 * with our next packet. */
static void after_read(struct quic_conn *c, bool moved, uint64_t now)
{
    if (c->ack_at != 0) {
        /* A settled ACK is still owed: an RTT sample in this packet may
         * have moved when ngtcp2 counts it due (srtt / 8). */
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(c->conn, &cs);
        c->ack_at = c->ack_rx_ts + quic_conn_ack_delay(c, &cs);
        if (c->ack_due < c->ack_at)
            c->ack_due = c->ack_at; /* its timer was settled: the deadline stands for it */
    }
    if (c->rx_cb)
        c->rx_elicit++;
    else if (c->state == CS_OPEN)
        stat_inc(c->ep->st, QS(ack_only_in));
    if (c->state != CS_OPEN || moved || c->rx_elicit >= c->ep->ack_thresh ||
        ctl_tx_pending(&c->tx) > 0) {
        /* The handshake, a new path, an ACK due now, control bytes in
         * flight (an ACK may have declared some lost). */
        quic_conn_mark_dirty(c);
        return;
    }
    /* Queued datagrams may go now (the window opened); else only the
     * timer moved: re-armed once per turn (quic_conn_write at turn end),
     * not after every packet. An ACK owed for data may wait: the turn-end
     * write settles ngtcp2's delayed-ACK timer for it (settle_ack) when
     * it is the next expiry, instead of waking the loop for it. */
    if (c->rx_cb && c->ack_at == 0)
        c->ack_rx_ts = now;
    quic_conn_mark_data(c);
}

bool quic_conn_read(struct quic_conn *c, const uint8_t *data, size_t len,
                    const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!c->opened && udp_addr_equal(remote, &c->remote))
        c->amp_rx += len;
    if (c->state == CS_CLOSING && c->close_pkt != NULL && c->close_resends < CLOSE_RESENDS) {
        /* Before the address is validated, only to it and inside the 3x
         * budget: a spoofed source must not turn junk into a reflector. */
        bool ok = c->opened || !quic_conn_is_server(c) ||
                  (udp_addr_equal(remote, &c->remote) && quic_conn_amp_allows(c, c->close_len));
        if (ok) {
            c->close_resends++;
            quic_conn_amp_sent(c, c->close_len);
            quic_send_raw(c->ep, c->close_pkt, c->close_len, remote, quic_conn_tx_local(c, local));
        }
    }
    if (!quic_conn_live(c))
        return false;
    ngtcp2_path path;
    quic_path_init(&path, local, remote);
    ngtcp2_pkt_info pi = {0};
    c->rx_cb = false;
    c->ng_exp_ok = false; /* a read may move any of ngtcp2's expiries */
    uint64_t now = quic_ep_now(c->ep);
    int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, now);
    if (rv == NGTCP2_ERR_DRAINING) {
        /* The peer closed (CONNECTION_CLOSE, or a stateless reset the
         * client recognised). */
        ngtcp2_connection_close_error e;
        ngtcp2_conn_get_connection_close_error(c->conn, &e);
        c->info.remote = true;
        c->info.app = e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
        c->info.code = e.error_code;
        keep_reason(c, e.reason, e.reasonlen);
        if (!c->opened)
            stat_inc(c->ep->st, QS(handshakes_failed));
        quic_conn_linger(c, CS_DRAINING, quic_conn_close_code(c));
        return false;
    }
    if (rv != 0) {
        if (c->info.reset || rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_RETRY) {
            /* Nothing to send: a reset peer has no state, and ngtcp2 asks
             * for DROP_CONN/RETRY connections to vanish silently. */
            c->info.remote = c->info.reset;
            if (!c->info.reset)
                c->info.liberr = rv;
            /* An Initial that cannot be decrypted, or a handshake ngtcp2
             * gives up on, is a failed handshake (it is what a flood of bad
             * Initials looks like in /metrics). */
            if (!c->opened)
                stat_inc(c->ep->st, QS(handshakes_failed));
            quic_conn_end_now(c, QUIC_APP_INTERNAL);
            return false;
        }
        quic_conn_close_liberr(c, rv);
        return false;
    }
    if (c->opened && c->tls != NULL)
        quic_conn_tls_release(c); /* the server needs no TLS session after the handshake */
    /* Remember the current path: closes and raw replies use it. */
    const ngtcp2_path *p = ngtcp2_conn_get_path(c->conn);
    bool moved = !udp_addr_equal(remote, &c->remote);
    if (p->remote.addrlen != c->remote.len ||
        memcmp(&c->remote.u, p->remote.addr, p->remote.addrlen) != 0) {
        memcpy(&c->remote.u, p->remote.addr, p->remote.addrlen);
        c->remote.len = p->remote.addrlen;
        moved = true;
    }
    memcpy(&c->local.u, p->local.addr, p->local.addrlen);
    c->local.len = p->local.addrlen;
    if (quic_conn_live(c))
        after_read(c, moved, now);
    else
        quic_conn_mark_dirty(c); /* a callback closed it: the close goes at turn end */
    return true;
}
