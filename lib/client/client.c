#include "client/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "core/error.h"
#include "core/timer.h"
#include "proto/frame.h"
#include "quic/ctlstream.h"
#include "quic/udp.h"

#define DGRAM_Q 256
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW (1024 * 1024)

static const char priority_str[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:%DISABLE_TLS13_COMPAT_MODE";

enum cstate { C_CONNECTING, C_OPEN, C_CLOSE_PENDING, C_CLOSED };

struct dq_item {
    uint8_t *p;
    size_t len;
};

struct roost_conn {
    ngtcp2_crypto_conn_ref ref;
    struct roost_client *cl;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    int fd;
    struct udp_addr local, remote;
    struct timer timer;
    enum cstate state;
    bool dirty, notified;
    struct roost_conn *dirty_next;
    struct roost_conn *prev, *next; /* all connections */
    int64_t stream;
    struct ctl_tx tx;
    struct ctl_rx rx;
    struct dq_item dq[DGRAM_Q];
    unsigned dq_head, dq_n;
    uint64_t dgram_seq;
    ngtcp2_connection_close_error ccerr;
    struct roost_close_info info;
    void *user;
    struct roost_conn_stats st;
};

struct roost_client {
    struct roost_client_config cfg;
    char server_name[256];
    char alpn[64];
    const struct roost_client_callbacks *cbs;
    void *arg;
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
    gnutls_datum_t pinned; /* DER */
    int epfd;
    struct timers *timers;
    struct roost_conn *conns;
    struct roost_conn *dirty_head;
    unsigned active;
    uint64_t now;
    double rx_drop;
    uint64_t rng;
    struct udp_rx *rx;
    struct udp_tx *tx;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void mark_dirty(struct roost_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->cl->dirty_head;
    c->cl->dirty_head = c;
}

static void notify(struct roost_conn *c)
{
    if (c->notified)
        return;
    c->notified = true;
    if (c->cl->cbs->on_close != NULL)
        c->cl->cbs->on_close(c, &c->info, c->cl->arg);
}

static void finish(struct roost_conn *c)
{
    /* The one place a connection ends: callback once, resources kept until
     * roost_conn_del. */
    if (c->state == C_CLOSED)
        return;
    c->state = C_CLOSED;
    c->cl->active--;
    timer_cancel(c->cl->timers, &c->timer);
    notify(c);
}

static void close_local(struct roost_conn *c, const ngtcp2_connection_close_error *e)
{
    if (c->state != C_CONNECTING && c->state != C_OPEN)
        return;
    c->ccerr = *e;
    c->info.remote = false;
    c->info.app = e->type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
    c->info.code = e->error_code;
    c->state = C_CLOSE_PENDING;
    mark_dirty(c);
}

static void close_liberr(struct roost_conn *c, int liberr)
{
    ngtcp2_connection_close_error e;
    ngtcp2_connection_close_error_default(&e);
    if (liberr == NGTCP2_ERR_CRYPTO)
        ngtcp2_connection_close_error_set_transport_error_tls_alert(
            &e, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
    else
        ngtcp2_connection_close_error_set_transport_error_liberr(&e, liberr, NULL, 0);
    c->info.liberr = liberr;
    close_local(c, &e);
}

/* ---------------------------------------------------------- callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((struct roost_conn *)ref->user_data)->conn;
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
    (void)user_data;
    if (gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen) != 0 ||
        gnutls_rnd(GNUTLS_RND_NONCE, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    cid->datalen = cidlen;
    return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *user_data)
{
    struct roost_conn *c = user_data;
    if (ngtcp2_conn_open_bidi_stream(conn, &c->stream, NULL) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    c->state = C_OPEN;
    c->info.opened = true;
    if (c->cl->cbs->on_open != NULL)
        c->cl->cbs->on_open(c, c->cl->arg);
    mark_dirty(c);
    return 0;
}

static void deliver_body(const uint8_t *body, size_t len, void *arg)
{
    struct roost_conn *c = arg;
    c->st.control_recv++;
    if (c->state == C_OPEN && c->cl->cbs->on_control != NULL)
        c->cl->cbs->on_control(c, body, len, c->cl->arg);
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                               uint64_t offset, const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data)
{
    (void)flags;
    (void)offset;
    (void)stream_user_data;
    struct roost_conn *c = user_data;
    if (stream_id != c->stream)
        return 0;
    int rc = ctl_rx_feed(&c->rx, data, datalen, deliver_body, c);
    if (rc < 0) {
        ngtcp2_connection_close_error e;
        ngtcp2_connection_close_error_default(&e);
        ngtcp2_connection_close_error_set_application_error(&e, 0x02, NULL, 0);
        close_local(c, &e);
        return 0;
    }
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
}

static int acked_stream_cb(ngtcp2_conn *conn, int64_t stream_id, uint64_t offset, uint64_t datalen,
                           void *user_data, void *stream_user_data)
{
    (void)conn;
    (void)stream_user_data;
    struct roost_conn *c = user_data;
    if (stream_id == c->stream)
        ctl_tx_acked(&c->tx, offset, datalen);
    return 0;
}

static int recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t datalen,
                            void *user_data)
{
    (void)conn;
    (void)flags;
    struct roost_conn *c = user_data;
    c->st.dgram_recv++;
    if (c->state == C_OPEN && c->cl->cbs->on_datagram != NULL)
        c->cl->cbs->on_datagram(c, data, datalen, c->cl->arg);
    return 0;
}

static int ack_datagram_cb(ngtcp2_conn *conn, uint64_t id, void *user_data)
{
    (void)conn;
    (void)id;
    ((struct roost_conn *)user_data)->st.dgram_acked++;
    return 0;
}

static int lost_datagram_cb(ngtcp2_conn *conn, uint64_t id, void *user_data)
{
    (void)conn;
    (void)id;
    ((struct roost_conn *)user_data)->st.dgram_lost++;
    return 0;
}

static int recv_stateless_reset_cb(ngtcp2_conn *conn, const ngtcp2_pkt_stateless_reset *sr,
                                   void *user_data)
{
    (void)conn;
    (void)sr;
    ((struct roost_conn *)user_data)->info.reset = true;
    return 0;
}

static const ngtcp2_callbacks client_callbacks = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_stream_cb,
    .recv_stateless_reset = recv_stateless_reset_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .recv_datagram = recv_datagram_cb,
    .ack_datagram = ack_datagram_cb,
    .lost_datagram = lost_datagram_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ------------------------------------------------------------ timers */

static void on_timer(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    struct roost_conn *c = arg;
    if (c->state != C_CONNECTING && c->state != C_OPEN)
        return;
    int rv = ngtcp2_conn_handle_expiry(c->conn, now);
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        c->info.idle = true;
        c->info.liberr = rv;
        finish(c);
        return;
    }
    if (rv != 0) {
        close_liberr(c, rv);
        return;
    }
    mark_dirty(c);
}

/* ------------------------------------------------------------ verify */

static int verify_pinned(gnutls_session_t session)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    struct roost_conn *c = ref->user_data;
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    const gnutls_datum_t *pin = &c->cl->pinned;
    if (certs == NULL || n == 0 || certs[0].size != pin->size ||
        memcmp(certs[0].data, pin->data, pin->size) != 0)
        return GNUTLS_E_CERTIFICATE_ERROR;
    return 0;
}

static int load_pinned(struct roost_client *cl, const char *file)
{
    gnutls_datum_t pem = {NULL, 0};
    gnutls_x509_crt_t crt = NULL;
    int rc = ROOST_ECRYPTO;
    if (gnutls_load_file(file, &pem) != 0)
        return ROOST_ECRYPTO;
    if (gnutls_x509_crt_init(&crt) != 0)
        goto out;
    if (gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) != 0)
        goto out;
    if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &cl->pinned) != 0)
        goto out;
    rc = 0;
out:
    if (crt != NULL)
        gnutls_x509_crt_deinit(crt);
    gnutls_free(pem.data);
    return rc;
}

/* ---------------------------------------------------------- endpoint */

int roost_client_new(struct roost_client **out, const struct roost_client_config *cfg,
                     const struct roost_client_callbacks *cbs, void *arg)
{
    if (cfg->ca_file == NULL && cfg->pinned_cert == NULL)
        return ROOST_EINVAL;
    struct roost_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_ENOMEM;
    cl->epfd = -1;
    cl->cfg = *cfg;
    cl->cbs = cbs;
    cl->arg = arg;
    snprintf(cl->server_name, sizeof(cl->server_name), "%s",
             cfg->server_name ? cfg->server_name : "localhost");
    snprintf(cl->alpn, sizeof(cl->alpn), "%s", cfg->alpn ? cfg->alpn : "roost/1");
    cl->cfg.ca_file = cl->cfg.pinned_cert = cl->cfg.server_name = cl->cfg.alpn = NULL;
    if (cl->cfg.idle_timeout_ns == 0)
        cl->cfg.idle_timeout_ns = 30ULL * NGTCP2_SECONDS;
    if (cl->cfg.handshake_timeout_ns == 0)
        cl->cfg.handshake_timeout_ns = 10ULL * NGTCP2_SECONDS;
    if (cl->cfg.control_queue_max == 0)
        cl->cfg.control_queue_max = 1 << 20;
    cl->rng = mono_ns() | 1;
    cl->rx = malloc(sizeof(*cl->rx));
    cl->tx = malloc(sizeof(*cl->tx));
    if (cl->rx == NULL || cl->tx == NULL)
        goto fail;
    rc = timers_new(&cl->timers);
    if (rc < 0)
        goto fail;
    rc = ROOST_ECRYPTO;
    if (gnutls_certificate_allocate_credentials(&cl->cred) != 0) {
        cl->cred = NULL;
        goto fail;
    }
    if (cfg->pinned_cert != NULL) {
        if (load_pinned(cl, cfg->pinned_cert) < 0)
            goto fail;
        gnutls_certificate_set_verify_function(cl->cred, verify_pinned);
    } else if (gnutls_certificate_set_x509_trust_file(cl->cred, cfg->ca_file,
                                                      GNUTLS_X509_FMT_PEM) <= 0) {
        goto fail;
    }
    if (gnutls_priority_init(&cl->prio, priority_str, NULL) != 0) {
        cl->prio = NULL;
        goto fail;
    }
    cl->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (cl->epfd == -1) {
        rc = ROOST_ESYS;
        goto fail;
    }
    *out = cl;
    return 0;
fail:
    roost_client_del(cl);
    return rc;
}

static void conn_release(struct roost_conn *c)
{
    struct roost_client *cl = c->cl;
    if (c->state != C_CLOSED)
        cl->active--;
    timer_cancel(cl->timers, &c->timer);
    if (c->dirty) {
        struct roost_conn **pp = &cl->dirty_head;
        while (*pp != c)
            pp = &(*pp)->dirty_next;
        *pp = c->dirty_next;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        cl->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->conn != NULL)
        ngtcp2_conn_del(c->conn);
    if (c->tls != NULL)
        gnutls_deinit(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    ctl_tx_free(&c->tx);
    ctl_rx_free(&c->rx);
    for (unsigned i = 0; i < c->dq_n; i++)
        free(c->dq[(c->dq_head + i) % DGRAM_Q].p);
    free(c);
}

void roost_client_del(struct roost_client *cl)
{
    if (cl == NULL)
        return;
    while (cl->conns != NULL)
        conn_release(cl->conns);
    if (cl->epfd >= 0)
        close(cl->epfd);
    if (cl->prio != NULL)
        gnutls_priority_deinit(cl->prio);
    if (cl->cred != NULL)
        gnutls_certificate_free_credentials(cl->cred);
    gnutls_free(cl->pinned.data);
    timers_del(cl->timers);
    free(cl->rx);
    free(cl->tx);
    free(cl);
}

static int open_socket(struct roost_conn *c)
{
    struct udp_addr any;
    memset(&any, 0, sizeof(any));
    any.u.sa.sa_family = c->remote.u.sa.sa_family;
    any.len = c->remote.len;
    int fd = udp_socket_open(&any, false, 1 << 20, NULL, NULL);
    if (fd < 0)
        return fd;
    /* connect: only the relay's packets reach this socket, and the local
     * address the path names is the real one. */
    if (connect(fd, &c->remote.u.sa, c->remote.len) == -1 || udp_socket_local(fd, &c->local) < 0) {
        close(fd);
        return ROOST_ESYS;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(c->cl->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        close(fd);
        return ROOST_ESYS;
    }
    return fd;
}

static int tls_init(struct roost_conn *c)
{
    struct roost_client *cl = c->cl;
    if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
        c->tls = NULL;
        return ROOST_ECRYPTO;
    }
    if (ngtcp2_crypto_gnutls_configure_client_session(c->tls) != 0)
        return ROOST_ECRYPTO;
    if (gnutls_priority_set(c->tls, cl->prio) != 0)
        return ROOST_ECRYPTO;
    gnutls_session_set_ptr(c->tls, &c->ref);
    if (gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cl->cred) != 0)
        return ROOST_ECRYPTO;
    gnutls_datum_t alpn = {.data = (unsigned char *)cl->alpn, .size = (unsigned)strlen(cl->alpn)};
    gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY);
    gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, cl->server_name, strlen(cl->server_name));
    if (cl->pinned.data == NULL)
        gnutls_session_set_verify_cert(c->tls, cl->server_name, 0);
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    return 0;
}

int roost_client_connect(struct roost_client *cl, const char *host, uint16_t port, void *user,
                         struct roost_conn **out)
{
    struct roost_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    int rc;
    c->cl = cl;
    c->fd = -1;
    c->stream = -1;
    c->user = user;
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    c->state = C_CONNECTING;
    timer_init(&c->timer, on_timer, c);
    ctl_tx_init(&c->tx, cl->cfg.control_queue_max);
    ctl_rx_init(&c->rx);
    c->next = cl->conns;
    if (cl->conns != NULL)
        cl->conns->prev = c;
    cl->conns = c;
    cl->active++;
    rc = udp_addr_parse(&c->remote, host, port);
    if (rc < 0)
        goto fail;
    c->fd = open_socket(c);
    if (c->fd < 0) {
        rc = c->fd;
        goto fail;
    }
    ngtcp2_cid dcid, scid;
    dcid.datalen = 16;
    scid.datalen = 8;
    rc = ROOST_ECRYPTO;
    if (gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen) != 0 ||
        gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen) != 0)
        goto fail;
    uint64_t now = cl->now ? cl->now : mono_ns();
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = now;
    settings.handshake_timeout = cl->cfg.handshake_timeout_ns;
    settings.no_pmtud = 1;
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_streams_bidi = 0;
    params.initial_max_streams_uni = 0;
    params.initial_max_stream_data_bidi_local = STREAM_WINDOW;
    params.initial_max_data = CONN_WINDOW;
    params.max_idle_timeout = cl->cfg.idle_timeout_ns;
    params.max_datagram_frame_size = 1500;
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&c->local.u.sa, .addrlen = c->local.len},
        .remote = {.addr = (ngtcp2_sockaddr *)&c->remote.u.sa, .addrlen = c->remote.len},
    };
    rc = ROOST_EQUIC;
    if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                               &client_callbacks, &settings, &params, NULL, c) != 0) {
        c->conn = NULL;
        goto fail;
    }
    rc = tls_init(c);
    if (rc < 0)
        goto fail;
    mark_dirty(c);
    *out = c;
    return 0;
fail:
    c->state = C_CLOSED;
    cl->active--;
    conn_release(c);
    /* conn_release decremented nothing extra: state was CLOSED. */
    return rc;
}

/* ------------------------------------------------------------ I/O */

static void write_conn(struct roost_conn *c)
{
    struct roost_client *cl = c->cl;
    uint64_t now = cl->now;
    udp_tx_init(cl->tx, c->fd);
    if (c->state == C_CLOSE_PENDING) {
        struct udp_txpkt *pkt = udp_tx_slot(cl->tx);
        ngtcp2_path_storage ps;
        ngtcp2_path_storage_zero(&ps);
        ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, NULL, pkt->data,
                                                            UDP_TX_MAX, &c->ccerr, now);
        if (n > 0) {
            udp_tx_commit(cl->tx, (size_t)n, &c->remote, NULL);
            (void)udp_tx_flush(cl->tx);
        }
        finish(c);
        return;
    }
    if (c->state != C_CONNECTING && c->state != C_OPEN)
        return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    bool stream_blocked = false;
    for (;;) {
        struct udp_txpkt *pkt = udp_tx_slot(cl->tx);
        if (pkt == NULL)
            break;
        ngtcp2_ssize n;
        const uint8_t *sdata = NULL;
        size_t slen = 0;
        if (!stream_blocked && c->stream >= 0)
            slen = ctl_tx_peek(&c->tx, &sdata);
        if (slen > 0) {
            ngtcp2_vec v = {.base = (uint8_t *)sdata, .len = slen};
            ngtcp2_ssize taken = -1;
            n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, pkt->data, UDP_TX_MAX, &taken,
                                          NGTCP2_WRITE_STREAM_FLAG_MORE, c->stream, &v, 1, now);
            if (taken > 0)
                ctl_tx_sent(&c->tx, (size_t)taken);
            if (n == NGTCP2_ERR_WRITE_MORE)
                continue;
            if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
                n == NGTCP2_ERR_STREAM_NOT_FOUND) {
                stream_blocked = true;
                continue;
            }
        } else if (c->dq_n > 0 && c->state == C_OPEN) {
            struct dq_item *d = &c->dq[c->dq_head];
            ngtcp2_vec v = {.base = d->p, .len = d->len};
            int accepted = 0;
            n = ngtcp2_conn_writev_datagram(c->conn, &ps.path, &pi, pkt->data, UDP_TX_MAX,
                                            &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE,
                                            c->dgram_seq, &v, 1, now);
            bool pop = accepted || n == 0 || n == NGTCP2_ERR_INVALID_ARGUMENT ||
                       n == NGTCP2_ERR_INVALID_STATE;
            if (accepted) {
                c->dgram_seq++;
                c->st.dgram_sent++;
            } else if (pop) {
                c->st.dgram_dropped++;
            }
            if (pop) {
                free(d->p);
                d->p = NULL;
                c->dq_head = (c->dq_head + 1) % DGRAM_Q;
                c->dq_n--;
            }
            if (n == NGTCP2_ERR_WRITE_MORE || (!accepted && pop))
                continue;
        } else {
            n = ngtcp2_conn_write_pkt(c->conn, &ps.path, &pi, pkt->data, UDP_TX_MAX, now);
        }
        if (n < 0) {
            close_liberr(c, (int)n);
            return;
        }
        if (n == 0)
            break;
        udp_tx_commit(cl->tx, (size_t)n, &c->remote, NULL);
    }
    if (udp_tx_flush(cl->tx) < 0) {
        /* The client's socket is full: the packets are lost, QUIC recovers. */
        cl->tx->head = cl->tx->n = 0;
    }
    uint64_t exp = ngtcp2_conn_get_expiry(c->conn);
    if (exp == UINT64_MAX)
        timer_cancel(cl->timers, &c->timer);
    else
        (void)timer_arm(cl->timers, &c->timer, exp);
}

static void flush_dirty(struct roost_client *cl)
{
    while (cl->dirty_head != NULL) {
        struct roost_conn *c = cl->dirty_head;
        cl->dirty_head = c->dirty_next;
        c->dirty = false;
        write_conn(c);
    }
}

static bool drop_rx(struct roost_client *cl)
{
    if (cl->rx_drop <= 0)
        return false;
    cl->rng ^= cl->rng << 13;
    cl->rng ^= cl->rng >> 7;
    cl->rng ^= cl->rng << 17;
    return (double)(cl->rng >> 11) / 9007199254740992.0 < cl->rx_drop;
}

static void read_conn(struct roost_conn *c)
{
    struct roost_client *cl = c->cl;
    for (;;) {
        int n = udp_rx_recv(c->fd, cl->rx, &c->local);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            if (c->state != C_CONNECTING && c->state != C_OPEN)
                return;
            size_t len = cl->rx->msgs[i].msg_len;
            if (len == 0 || drop_rx(cl))
                continue;
            ngtcp2_path path = {
                .local = {.addr = (ngtcp2_sockaddr *)&c->local.u.sa, .addrlen = c->local.len},
                .remote = {.addr = (ngtcp2_sockaddr *)&c->remote.u.sa, .addrlen = c->remote.len},
            };
            ngtcp2_pkt_info pi = {0};
            int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, cl->rx->data[i], len, cl->now);
            if (rv == NGTCP2_ERR_DRAINING) {
                ngtcp2_connection_close_error e;
                ngtcp2_conn_get_connection_close_error(c->conn, &e);
                c->info.remote = true;
                c->info.app = e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
                c->info.code = e.error_code;
                finish(c);
                return;
            }
            if (rv != 0) {
                if (c->info.reset) {
                    c->info.remote = true;
                    finish(c);
                    return;
                }
                close_liberr(c, rv);
                mark_dirty(c);
                return;
            }
            mark_dirty(c);
        }
    }
}

int roost_client_process(struct roost_client *cl, uint64_t now)
{
    cl->now = now;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(cl->epfd, evs, 64, 0);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return ROOST_ESYS;
        }
        for (int i = 0; i < n; i++)
            read_conn(evs[i].data.ptr);
        if (n < 64)
            break;
    }
    timers_run(cl->timers, now);
    flush_dirty(cl);
    return 0;
}

uint64_t roost_client_next_timeout(const struct roost_client *cl, uint64_t now)
{
    if (cl->dirty_head != NULL)
        return 0;
    uint64_t t = timers_next(cl->timers);
    if (t == TIMER_NEVER)
        return UINT64_MAX;
    return t > now ? t - now : 0;
}

int roost_client_step(struct roost_client *cl, int timeout_ms)
{
    uint64_t now = mono_ns();
    uint64_t wait = roost_client_next_timeout(cl, now);
    int ms = timeout_ms;
    if (wait != UINT64_MAX && (uint64_t)ms * 1000000ULL > wait)
        ms = (int)((wait + 999999) / 1000000);
    if (ms > 0) {
        struct epoll_event ev;
        int n = epoll_wait(cl->epfd, &ev, 1, ms);
        if (n == -1 && errno != EINTR)
            return ROOST_ESYS;
        /* The event is level-triggered: process() reads it again. */
    }
    return roost_client_process(cl, mono_ns());
}

int roost_client_fd(const struct roost_client *cl)
{
    return cl->epfd;
}

unsigned roost_client_active(const struct roost_client *cl)
{
    return cl->active;
}

void roost_client_set_rx_drop(struct roost_client *cl, double share)
{
    cl->rx_drop = share;
}

/* ------------------------------------------------------ conn API */

int roost_conn_send_control(struct roost_conn *c, const uint8_t *body, size_t len)
{
    if (c->state != C_CONNECTING && c->state != C_OPEN)
        return ROOST_ECLOSED;
    int rc = ctl_tx_push(&c->tx, body, len);
    if (rc < 0)
        return rc;
    c->st.control_sent++;
    mark_dirty(c);
    return 0;
}

int roost_conn_send_datagram(struct roost_conn *c, const uint8_t *data, size_t len)
{
    if (c->state != C_OPEN)
        return ROOST_ECLOSED;
    if (c->dq_n == DGRAM_Q) {
        c->st.dgram_dropped++;
        return ROOST_EFULL;
    }
    uint8_t *p = malloc(len ? len : 1);
    if (p == NULL)
        return ROOST_ENOMEM;
    memcpy(p, data, len);
    struct dq_item *d = &c->dq[(c->dq_head + c->dq_n) % DGRAM_Q];
    d->p = p;
    d->len = len;
    c->dq_n++;
    mark_dirty(c);
    return 0;
}

void roost_conn_close(struct roost_conn *c, uint64_t app_error)
{
    ngtcp2_connection_close_error e;
    ngtcp2_connection_close_error_default(&e);
    ngtcp2_connection_close_error_set_application_error(&e, app_error, NULL, 0);
    close_local(c, &e);
    /* The CONNECTION_CLOSE is written by the next step (this may run inside
     * a callback); the application hears of the end now. */
    if (c->state == C_CLOSE_PENDING)
        notify(c);
}

void roost_conn_del(struct roost_conn *c)
{
    if (c == NULL)
        return;
    conn_release(c);
}

void *roost_conn_user(const struct roost_conn *c)
{
    return c->user;
}

bool roost_conn_is_open(const struct roost_conn *c)
{
    return c->state == C_OPEN;
}

bool roost_conn_is_closed(const struct roost_conn *c)
{
    return c->state == C_CLOSED;
}

int roost_conn_rebind(struct roost_conn *c)
{
    int old = c->fd;
    struct udp_addr old_local = c->local;
    int fd = open_socket(c);
    if (fd < 0) {
        c->local = old_local;
        return fd;
    }
    epoll_ctl(c->cl->epfd, EPOLL_CTL_DEL, old, NULL);
    close(old);
    c->fd = fd;
    /* The client sees a new local address, the relay a new 4-tuple: what a
     * NAT rebinding looks like from both ends. */
    ngtcp2_addr a = {.addr = (ngtcp2_sockaddr *)&c->local.u.sa, .addrlen = c->local.len};
    ngtcp2_conn_set_local_addr(c->conn, &a);
    mark_dirty(c);
    return 0;
}

uint16_t roost_conn_local_port(const struct roost_conn *c)
{
    return udp_addr_port(&c->local);
}

void roost_conn_stats(const struct roost_conn *c, struct roost_conn_stats *out)
{
    *out = c->st;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    out->srtt_ns = st.smoothed_rtt;
    out->min_rtt_ns = st.min_rtt;
    out->latest_rtt_ns = st.latest_rtt;
    out->rttvar_ns = st.rttvar;
    out->cwnd = st.cwnd;
    out->bytes_in_flight = st.bytes_in_flight;
}
