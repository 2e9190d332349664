/* One server connection: the ngtcp2 callbacks, reading, the write loop,
 * closing and the conn API of quic.h. See quic_int.h for the file layout. */
#include "quic/quic.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/frame.h"
#include "quic/cid.h"
#include "quic/quic_int.h"

#define CLOSE_RESENDS 4
/* Our receive windows: small, and extended as control bytes are consumed. */
#define STREAM_WINDOW (32 * 1024)
#define CONN_WINDOW (64 * 1024)
#define MAX_DGRAM_FRAME 1400

/* ------------------------------------------------------ connections */

static uint64_t now_ns(struct quic_server *s)
{
    return worker_now(s->w);
}

void quic_conn_mark_dirty(struct quic_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->s->dirty_head;
    c->s->dirty_head = c;
}

static void leave_half_open(struct quic_conn *c)
{
    if (c->half_open) {
        c->half_open = false;
        c->s->half_open--;
        stat_dec(c->s->st, QS(conns_half_open));
    }
}

/* The one leave path: on_close exactly once per connection. */
static void notify_close(struct quic_conn *c, uint64_t app_error)
{
    if (c->closed_cb)
        return;
    c->closed_cb = true;
    leave_half_open(c);
    if (c->s->ops->on_close != NULL)
        c->s->ops->on_close(c, app_error, c->s->arg);
}

static void set_dead(struct quic_conn *c)
{
    c->state = CS_DEAD;
    timer_cancel(worker_timers(c->s->w), &c->timer);
    quic_conn_mark_dirty(c);
}

/* Starts the closing/draining wait: 3 PTO, then the connection is freed. */
static void start_wait(struct quic_conn *c, enum conn_state st)
{
    c->state = st;
    uint64_t pto = ngtcp2_conn_get_pto(c->conn);
    if (timer_arm(worker_timers(c->s->w), &c->timer, now_ns(c->s) + 3 * pto) < 0)
        set_dead(c);
}

void quic_conn_free(struct quic_conn *c)
{
    struct quic_server *s = c->s;
    notify_close(c, QUIC_APP_GOING_AWAY);
    leave_half_open(c);
    timer_cancel(worker_timers(s->w), &c->timer);
    if (c->conn != NULL) {
        size_t n = ngtcp2_conn_get_num_scid(c->conn);
        ngtcp2_cid *ids = calloc(n ? n : 1, sizeof(*ids));
        if (ids != NULL) {
            ngtcp2_conn_get_scid(c->conn, ids);
            for (size_t i = 0; i < n; i++)
                cid_table_remove(s->cids, ids[i].data, ids[i].datalen, c);
            free(ids);
        }
        ngtcp2_conn_del(c->conn);
    }
    /* Any CID still naming this connection (e.g. one ngtcp2 retired but
     * we never saw removed) must not dangle: the odcid is removed here; the
     * others were removed through remove_connection_id or above. */
    cid_table_remove(s->cids, c->odcid.data, c->odcid.datalen, c);
    if (c->tls != NULL)
        gnutls_deinit(c->tls);
    quic_creds_unref(c->creds); /* after the session that used them */
    ctl_tx_free(&c->tx);
    ctl_rx_free(&c->rx);
    for (unsigned i = 0; i < c->dq_n; i++)
        buf_unref(c->dq[(c->dq_head + i) % s->sh->cfg.dgram_queue_max].b);
    free(c->dq);
    free(c->close_pkt);
    struct conn_slot *sl = &s->slots[c->slot];
    sl->c = NULL;
    sl->gen++;
    sl->next_free = s->free_head;
    s->free_head = c->slot;
    s->live--;
    stat_dec(s->st, QS(conns_open));
    stat_inc(s->st, QS(conns_closed));
    free(c);
}

/* Records a local close; the CONNECTION_CLOSE packet is written at turn
 * end, outside any ngtcp2 callback. */
static void close_with(struct quic_conn *c, const ngtcp2_connection_close_error *e,
                       uint64_t app_error)
{
    if (c->state != CS_HANDSHAKE && c->state != CS_OPEN)
        return;
    c->ccerr = *e;
    c->ccerr.reason = NULL;
    c->ccerr.reasonlen = 0;
    c->close_error = app_error;
    c->state = CS_CLOSE_PENDING;
    quic_conn_mark_dirty(c);
    notify_close(c, app_error);
}

static void close_liberr(struct quic_conn *c, int liberr)
{
    ngtcp2_connection_close_error e;
    ngtcp2_connection_close_error_default(&e);
    if (liberr == NGTCP2_ERR_CRYPTO)
        ngtcp2_connection_close_error_set_transport_error_tls_alert(
            &e, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
    else
        ngtcp2_connection_close_error_set_transport_error_liberr(&e, liberr, NULL, 0);
    if (!c->opened)
        stat_inc(c->s->st, QS(handshakes_failed));
    close_with(c, &e, QUIC_APP_INTERNAL);
}

void quic_conn_close(struct quic_conn *c, uint64_t app_error, const char *reason)
{
    (void)reason; /* reason phrases are not sent: they would need storage
                     until the deferred write */
    ngtcp2_connection_close_error e;
    ngtcp2_connection_close_error_default(&e);
    ngtcp2_connection_close_error_set_application_error(&e, app_error, NULL, 0);
    close_with(c, &e, app_error);
}

static void on_timer(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    struct quic_conn *c = arg;
    switch (c->state) {
    case CS_CLOSING:
    case CS_DRAINING:
        set_dead(c);
        return;
    case CS_HANDSHAKE:
    case CS_OPEN:
        break;
    default:
        return;
    }
    int rv = ngtcp2_conn_handle_expiry(c->conn, now);
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        /* Silent close: the peer is gone or never finished. */
        if (c->opened)
            stat_inc(c->s->st, QS(idle_timeouts));
        else
            stat_inc(c->s->st, QS(handshake_timeouts));
        notify_close(c, QUIC_APP_IDLE_TIMEOUT);
        set_dead(c);
        return;
    }
    if (rv != 0) {
        close_liberr(c, rv);
        return;
    }
    quic_conn_mark_dirty(c);
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

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                          void *user_data)
{
    (void)conn;
    (void)cidlen; /* ngtcp2 asks for the length of our initial SCID */
    struct quic_conn *c = user_data;
    for (int tries = 0; tries < 4; tries++) {
        if (cid_generate(cid->data, c->s->id) < 0)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        cid->datalen = QUIC_CID_LEN;
        int rc = cid_table_put(c->s->cids, cid->data, cid->datalen, c);
        if (rc == ROOST_EEXIST)
            continue;
        if (rc < 0)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        if (ngtcp2_crypto_generate_stateless_reset_token(token, c->s->sh->reset_secret, SECRET_LEN,
                                                         cid) != 0) {
            cid_table_remove(c->s->cids, cid->data, cid->datalen, c);
            return NGTCP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    }
    return NGTCP2_ERR_CALLBACK_FAILURE;
}

static int remove_cid_cb(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *user_data)
{
    (void)conn;
    struct quic_conn *c = user_data;
    cid_table_remove(c->s->cids, cid->data, cid->datalen, c);
    return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *user_data)
{
    (void)conn;
    struct quic_conn *c = user_data;
    leave_half_open(c);
    stat_inc(c->s->st, QS(handshakes_ok));
    c->state = CS_OPEN;
    c->opened = true;
    int r = c->s->ops->on_open != NULL ? c->s->ops->on_open(c, c->s->arg) : 0;
    if (r > 0)
        quic_conn_close(c, (uint64_t)r, NULL);
    return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t stream_id, void *user_data)
{
    (void)conn;
    struct quic_conn *c = user_data;
    /* One client bidi stream is allowed by our transport parameters. */
    if (c->ctl_stream < 0 && (stream_id & 0x3) == 0)
        c->ctl_stream = stream_id;
    return 0;
}

static void deliver_body(const uint8_t *body, size_t len, void *arg)
{
    struct quic_conn *c = arg;
    stat_inc(c->s->st, QS(control_in));
    if (c->state == CS_OPEN && c->s->ops->on_control != NULL)
        c->s->ops->on_control(c, body, len, c->s->arg);
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                               uint64_t offset, const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data)
{
    (void)flags;
    (void)offset;
    (void)stream_user_data;
    struct quic_conn *c = user_data;
    if (stream_id != c->ctl_stream || c->state != CS_OPEN)
        return 0;
    c->cs.bytes_in += datalen;
    int rc = ctl_rx_feed(&c->rx, data, datalen, deliver_body, c);
    if (rc < 0) {
        if (rc == ROOST_ENOMEM)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        quic_conn_close(c, QUIC_APP_PROTOCOL_VIOLATION, "bad control frame");
        return 0;
    }
    /* Bytes are consumed once copied out (a partial message is bounded by
     * FRAME_MAX_BODY), so the windows slide by what arrived. */
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
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
    c->cs.dgram_in++;
    stat_inc(c->s->st, QS(dgram_in));
    if (c->state == CS_OPEN && c->s->ops->on_datagram != NULL)
        c->s->ops->on_datagram(c, data, datalen, c->s->arg);
    return 0;
}

static int ack_datagram_cb(ngtcp2_conn *conn, uint64_t id, void *user_data)
{
    (void)conn;
    (void)id;
    ((struct quic_conn *)user_data)->cs.dgram_acked++;
    return 0;
}

static int lost_datagram_cb(ngtcp2_conn *conn, uint64_t id, void *user_data)
{
    (void)conn;
    (void)id;
    struct quic_conn *c = user_data;
    c->cs.dgram_lost++;
    stat_inc(c->s->st, QS(dgram_lost));
    return 0;
}

static const ngtcp2_callbacks server_callbacks = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_stream_cb,
    .stream_open = stream_open_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .recv_datagram = recv_datagram_cb,
    .ack_datagram = ack_datagram_cb,
    .lost_datagram = lost_datagram_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ------------------------------------------------------ conn create */

static int tls_init(struct quic_conn *c)
{
    struct quic_shared *sh = c->s->sh;
    if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NO_TICKETS | GNUTLS_NO_END_OF_EARLY_DATA) !=
        0) {
        c->tls = NULL;
        return ROOST_ECRYPTO;
    }
    if (gnutls_priority_set(c->tls, sh->prio) != 0)
        return ROOST_ECRYPTO;
    if (ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0)
        return ROOST_ECRYPTO;
    gnutls_session_set_ptr(c->tls, &c->ref);
    /* New sessions use the current credentials; the reference keeps them
     * alive for this session across a reload. Workers are QSBR readers. */
    rcu_read_lock();
    c->creds = rcu_dereference(sh->creds);
    atomic_fetch_add_explicit(&c->creds->refs, 1, memory_order_relaxed);
    rcu_read_unlock();
    if (gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->creds->cred) != 0)
        return ROOST_ECRYPTO;
    /* MANDATORY: a client offering no common protocol gets the
     * no_application_protocol alert. */
    gnutls_datum_t alpn = {.data = (unsigned char *)QUIC_ALPN, .size = sizeof(QUIC_ALPN) - 1};
    if (gnutls_alpn_set_protocols(c->tls, &alpn, 1,
                                  GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE) != 0)
        return ROOST_ECRYPTO;
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    return 0;
}

struct quic_conn *quic_conn_new(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                                const ngtcp2_cid *ocid, const struct udp_addr *remote,
                                const struct udp_addr *local)
{
    struct quic_shared *sh = s->sh;
    if (s->free_head == UINT32_MAX)
        return NULL;
    struct quic_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->dq = calloc(sh->cfg.dgram_queue_max, sizeof(*c->dq));
    if (c->dq == NULL) {
        free(c);
        return NULL;
    }
    c->s = s;
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    c->ctl_stream = -1;
    c->remote = *remote;
    c->local = *local;
    c->odcid = hd->dcid;
    c->state = CS_HANDSHAKE;
    ctl_tx_init(&c->tx, sh->cfg.control_queue_max);
    ctl_rx_init(&c->rx);
    timer_init(&c->timer, on_timer, c);
    /* Take a slot now so quic_conn_free can release it on any failure below. */
    c->slot = s->free_head;
    struct conn_slot *sl = &s->slots[c->slot];
    s->free_head = sl->next_free;
    sl->c = c;
    c->gen = sl->gen;
    s->live++;
    stat_inc(s->st, QS(conns_open));
    c->half_open = true;
    s->half_open++;
    stat_inc(s->st, QS(conns_half_open));
    c->closed_cb = true; /* nothing to tell the application if setup fails */

    ngtcp2_cid scid;
    scid.datalen = QUIC_CID_LEN;
    for (int tries = 0;; tries++) {
        if (tries == 4 || cid_generate(scid.data, s->id) < 0)
            goto fail;
        if (cid_table_get(s->cids, scid.data, scid.datalen) == NULL)
            break;
    }
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = now_ns(s);
    settings.handshake_timeout = sh->cfg.handshake_timeout_ns;
    settings.no_pmtud = 1;
    settings.token = hd->token;
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_streams_bidi = 1;
    params.initial_max_streams_uni = 0;
    params.initial_max_stream_data_bidi_remote = STREAM_WINDOW;
    params.initial_max_stream_data_bidi_local = 0;
    params.initial_max_stream_data_uni = 0;
    params.initial_max_data = CONN_WINDOW;
    params.max_idle_timeout = sh->cfg.idle_timeout_ns;
    params.max_datagram_frame_size = MAX_DGRAM_FRAME + 64;
    params.active_connection_id_limit = 4;
    params.stateless_reset_token_present = 1;
    if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, sh->reset_secret,
                                                     SECRET_LEN, &scid) != 0)
        goto fail;
    if (ocid != NULL) {
        params.original_dcid = *ocid;
        params.retry_scid = hd->dcid;
        params.retry_scid_present = 1;
    } else {
        params.original_dcid = hd->dcid;
    }
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&c->local.u.sa, .addrlen = c->local.len},
        .remote = {.addr = (ngtcp2_sockaddr *)&c->remote.u.sa, .addrlen = c->remote.len},
    };
    if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path, hd->version, &server_callbacks,
                               &settings, &params, NULL, c) != 0) {
        c->conn = NULL;
        goto fail;
    }
    if (tls_init(c) < 0)
        goto fail;
    if (cid_table_put(s->cids, scid.data, scid.datalen, c) < 0)
        goto fail;
    if (cid_table_put(s->cids, hd->dcid.data, hd->dcid.datalen, c) < 0)
        goto fail;
    c->closed_cb = false;
    return c;
fail:
    quic_conn_free(c);
    return NULL;
}

/* ------------------------------------------------------------ write */

void quic_send_raw(struct quic_server *s, const uint8_t *p, size_t n, const struct udp_addr *remote,
                   const struct udp_addr *local)
{
    struct udp_txpkt *pkt = udp_tx_slot(s->tx);
    if (pkt == NULL || n > UDP_TX_MAX)
        return;
    memcpy(pkt->data, p, n);
    udp_tx_commit(s->tx, n, remote, local);
    stat_inc(s->st, QS(pkts_out));
    stat_add(s->st, QS(bytes_out), (uint64_t)n);
}

void quic_conn_write_close(struct quic_conn *c)
{
    struct quic_server *s = c->s;
    uint8_t pktbuf[UDP_TX_MAX];
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, NULL, pktbuf,
                                                        sizeof(pktbuf), &c->ccerr, now_ns(s));
    if (n <= 0) {
        set_dead(c);
        return;
    }
    c->close_pkt = malloc((size_t)n);
    if (c->close_pkt != NULL) {
        memcpy(c->close_pkt, pktbuf, (size_t)n);
        c->close_len = (size_t)n;
    }
    quic_send_raw(s, pktbuf, (size_t)n, &c->remote, &c->local);
    start_wait(c, CS_CLOSING);
}

static void drop_dgram(struct quic_conn *c, int why)
{
    struct dgram_item *d = &c->dq[c->dq_head];
    buf_unref(d->b);
    d->b = NULL;
    c->dq_head = (c->dq_head + 1) % c->s->sh->cfg.dgram_queue_max;
    c->dq_n--;
    if (why == 1) {
        c->cs.dgram_drop_cwnd++;
        stat_inc(c->s->st, QS(dgram_drop_cwnd));
    } else if (why == 2) {
        c->cs.dgram_drop_too_large++;
        stat_inc(c->s->st, QS(dgram_drop_too_large));
    } else if (why == 3) {
        stat_inc(c->s->st, QS(dgram_drop_state));
    }
}

/* Writes every packet the connection has ready into the send batch.
 * Returns false when the batch is blocked (the connection stays dirty). */
bool quic_conn_write(struct quic_conn *c)
{
    struct quic_server *s = c->s;
    if (c->state == CS_CLOSE_PENDING) {
        quic_conn_write_close(c);
        return true;
    }
    if (c->state != CS_HANDSHAKE && c->state != CS_OPEN)
        return true;
    uint64_t now = now_ns(s);
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    bool stream_blocked = false;
    for (;;) {
        struct udp_txpkt *pkt = udp_tx_slot(s->tx);
        if (pkt == NULL)
            return false;
        ngtcp2_ssize n;
        const uint8_t *sdata = NULL;
        size_t slen = 0;
        if (!stream_blocked && c->ctl_stream >= 0 && c->state == CS_OPEN)
            slen = ctl_tx_peek(&c->tx, &sdata);
        if (slen > 0) {
            ngtcp2_vec v = {.base = (uint8_t *)sdata, .len = slen};
            ngtcp2_ssize taken = -1;
            n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, pkt->data, UDP_TX_MAX, &taken,
                                          NGTCP2_WRITE_STREAM_FLAG_MORE, c->ctl_stream, &v, 1, now);
            if (taken > 0)
                ctl_tx_sent(&c->tx, (size_t)taken);
            if (n == NGTCP2_ERR_WRITE_MORE)
                continue;
            if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
                n == NGTCP2_ERR_STREAM_NOT_FOUND) {
                stream_blocked = true;
                continue;
            }
        } else if (c->dq_n > 0 && c->state == CS_OPEN) {
            struct dgram_item *d = &c->dq[c->dq_head];
            ngtcp2_vec v = {.base = d->b->data + d->off, .len = d->len};
            int accepted = 0;
            n = ngtcp2_conn_writev_datagram(c->conn, &ps.path, &pi, pkt->data, UDP_TX_MAX,
                                            &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE,
                                            c->dgram_seq, &v, 1, now);
            if (accepted) {
                c->dgram_seq++;
                c->cs.dgram_out++;
                c->cs.bytes_out += d->len;
                stat_inc(s->st, QS(dgram_out));
                drop_dgram(c, 0);
                if (n == NGTCP2_ERR_WRITE_MORE)
                    continue;
            } else if (n == 0) {
                /* Congestion window (or amplification limit): drop. */
                drop_dgram(c, 1);
                continue;
            } else if (n == NGTCP2_ERR_INVALID_ARGUMENT) {
                drop_dgram(c, 2);
                continue;
            } else if (n == NGTCP2_ERR_INVALID_STATE) {
                drop_dgram(c, 3);
                continue;
            }
            /* n > 0 and not accepted: the packet filled with other frames;
             * the datagram goes in the next one. */
        } else {
            n = ngtcp2_conn_write_pkt(c->conn, &ps.path, &pi, pkt->data, UDP_TX_MAX, now);
        }
        if (n < 0) {
            close_liberr(c, (int)n);
            return true;
        }
        if (n == 0)
            break;
        struct udp_addr r, l;
        memcpy(&r.u, ps.path.remote.addr, ps.path.remote.addrlen);
        r.len = ps.path.remote.addrlen;
        memcpy(&l.u, ps.path.local.addr, ps.path.local.addrlen);
        l.len = ps.path.local.addrlen;
        udp_tx_commit(s->tx, (size_t)n, &r, &l);
        stat_inc(s->st, QS(pkts_out));
        stat_add(s->st, QS(bytes_out), (uint64_t)n);
    }
    uint64_t exp = ngtcp2_conn_get_expiry(c->conn);
    if (exp == UINT64_MAX)
        timer_cancel(worker_timers(s->w), &c->timer);
    else if (timer_arm(worker_timers(s->w), &c->timer, exp) < 0)
        close_liberr(c, NGTCP2_ERR_NOMEM);
    return true;
}

/* ------------------------------------------------------------- read */

void quic_conn_read(struct quic_conn *c, const uint8_t *data, size_t len,
                    const struct udp_addr *remote, const struct udp_addr *local)
{
    struct quic_server *s = c->s;
    switch (c->state) {
    case CS_CLOSING:
        if (c->close_pkt != NULL && c->close_resends < CLOSE_RESENDS) {
            c->close_resends++;
            quic_send_raw(s, c->close_pkt, c->close_len, remote, local);
        }
        return;
    case CS_HANDSHAKE:
    case CS_OPEN:
        break;
    default:
        return;
    }
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&local->u.sa, .addrlen = local->len},
        .remote = {.addr = (ngtcp2_sockaddr *)&remote->u.sa, .addrlen = remote->len},
    };
    ngtcp2_pkt_info pi = {0};
    int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, now_ns(s));
    if (rv != 0) {
        switch (rv) {
        case NGTCP2_ERR_DRAINING: {
            ngtcp2_connection_close_error e;
            ngtcp2_conn_get_connection_close_error(c->conn, &e);
            uint64_t code = e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION
                                ? e.error_code
                                : QUIC_APP_INTERNAL;
            if (!c->opened)
                stat_inc(s->st, QS(handshakes_failed));
            notify_close(c, code);
            start_wait(c, CS_DRAINING);
            return;
        }
        case NGTCP2_ERR_DROP_CONN:
        case NGTCP2_ERR_RETRY:
            notify_close(c, QUIC_APP_INTERNAL);
            set_dead(c);
            return;
        default:
            close_liberr(c, rv);
            return;
        }
    }
    /* Remember the current path: closes and raw replies use it. */
    const ngtcp2_path *p = ngtcp2_conn_get_path(c->conn);
    memcpy(&c->remote.u, p->remote.addr, p->remote.addrlen);
    c->remote.len = p->remote.addrlen;
    memcpy(&c->local.u, p->local.addr, p->local.addrlen);
    c->local.len = p->local.addrlen;
    quic_conn_mark_dirty(c);
}

struct quic_handle quic_conn_handle(const struct quic_conn *c)
{
    struct quic_handle h = {.worker = (uint16_t)c->s->id, .slot = c->slot, .gen = c->gen};
    return h;
}

/* ------------------------------------------------------ conn API */

int quic_conn_send_control(struct quic_conn *c, const uint8_t *body, size_t len)
{
    if (c->state != CS_OPEN)
        return ROOST_ECLOSED;
    int rc = ctl_tx_push(&c->tx, body, len);
    if (rc == ROOST_EFULL) {
        stat_inc(c->s->st, QS(too_slow));
        quic_conn_close(c, QUIC_APP_TOO_SLOW, "control queue full");
        return rc;
    }
    if (rc < 0)
        return rc;
    stat_inc(c->s->st, QS(control_out));
    quic_conn_mark_dirty(c);
    return 0;
}

int quic_conn_queue_datagram(struct quic_conn *c, struct buf *b, uint32_t off, uint32_t len)
{
    struct quic_server *s = c->s;
    if (c->state != CS_OPEN) {
        stat_inc(s->st, QS(dgram_drop_state));
        return ROOST_ECLOSED;
    }
    unsigned cap = s->sh->cfg.dgram_queue_max;
    if (c->dq_n == cap) {
        c->cs.dgram_drop_queue++;
        stat_inc(s->st, QS(dgram_drop_queue));
        return ROOST_EFULL;
    }
    struct dgram_item *d = &c->dq[(c->dq_head + c->dq_n) % cap];
    d->b = buf_ref(b);
    d->off = off;
    d->len = len;
    c->dq_n++;
    quic_conn_mark_dirty(c);
    return 0;
}

int quic_conn_send_datagram(struct quic_conn *c, const uint8_t *data, size_t len)
{
    if (len > UINT32_MAX)
        return ROOST_EINVAL;
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL)
        return ROOST_ENOMEM;
    memcpy(b->data, data, len);
    b->len = (uint32_t)len;
    int rc = quic_conn_queue_datagram(c, b, 0, (uint32_t)len);
    buf_unref(b);
    return rc;
}

void quic_conn_set_user(struct quic_conn *c, void *u)
{
    c->user = u;
}

void *quic_conn_user(const struct quic_conn *c)
{
    return c->user;
}

bool quic_conn_opened(const struct quic_conn *c)
{
    return c->opened;
}

struct quic_server *quic_conn_server(const struct quic_conn *c)
{
    return c->s;
}

void quic_conn_stats(struct quic_conn *c, struct quic_conn_stats *out)
{
    *out = c->cs;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    out->srtt_ns = st.smoothed_rtt;
    out->min_rtt_ns = st.min_rtt;
    out->latest_rtt_ns = st.latest_rtt;
    out->cwnd = st.cwnd;
    out->bytes_in_flight = st.bytes_in_flight;
    out->control_pending = ctl_tx_pending(&c->tx);
}
