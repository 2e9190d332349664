/* The client end: TLS client sessions and certificate verification, a
 * connected socket per connection, the client's ngtcp2 callbacks (random
 * CIDs, stateless reset detection, Retry), rebinding, and the step loop.
 * The connection itself is conn.c's, shared with the server. */
#include "quic/client.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "core/error.h"
#include "core/timer.h"
#include "quic/quic_int.h"

/* Our receive windows: the client reads everything the relay sends. */
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW (1024 * 1024)
#define SOCK_BUF (1 << 20)

struct quic_client {
    struct quic_ep ep;
    char server_name[256];
    char alpn[64];
    uint64_t idle_timeout_ns, handshake_timeout_ns;
    struct quic_creds *creds; /* trust anchors or the pinned check */
    gnutls_priority_t prio;
    gnutls_datum_t pinned; /* DER */
    bool no_tickets;
    bool no_verify;                /* quic_client_config.no_verify */
    struct tickets_store *tickets; /* latest ticket per relay address */
    int epfd;
    struct timers *timers;
    struct quic_conn *conns;
    double rx_drop;
    bool no_datagrams; /* test knob: max_datagram_frame_size 0 */
    uint64_t rng;
    struct udp_rx *rx;
    struct udp_tx *tx;
    const struct quic_client_path *path; /* path emulation, or NULL */
    void *path_arg;
    struct quic_conn *tx_conn;                      /* the connection flush_dirty is writing */
    _Atomic uint64_t st[STAT_N(struct quic_stats)]; /* conn.c counts here too */
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct quic_client *client_of(const struct quic_conn *c)
{
    return (struct quic_client *)((char *)c->ep - offsetof(struct quic_client, ep));
}

/* ---------------------------------------------------------- callbacks */

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

static int recv_stateless_reset_cb(ngtcp2_conn *conn, const ngtcp2_pkt_stateless_reset *sr,
                                   void *user_data)
{
    (void)conn;
    (void)sr;
    struct quic_conn *c = user_data;
    c->info.reset = true;
    stat_inc(c->ep->st, QS(resets_received));
    return 0;
}

/* ------------------------------------------------------------ verify */

static int verify_pinned(gnutls_session_t session)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    struct quic_conn *c = ref->user_data;
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    const gnutls_datum_t *pin = &client_of(c)->pinned;
    if (certs == NULL || n == 0 || certs[0].size != pin->size ||
        memcmp(certs[0].data, pin->data, pin->size) != 0)
        return GNUTLS_E_CERTIFICATE_ERROR;
    return 0;
}

static int verify_none(gnutls_session_t session)
{
    (void)session;
    return 0;
}

static int load_pinned(struct quic_client *cl, const char *file)
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

/* ------------------------------------------------------------ client */

int quic_client_new(struct quic_client **out, const struct quic_client_config *cfg,
                    const struct quic_app_ops *ops, void *arg)
{
    if (cfg->ca_file == NULL && cfg->pinned_cert == NULL && !cfg->no_verify)
        return ROOST_EINVAL;
    struct quic_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_ENOMEM;
    cl->epfd = -1;
    snprintf(cl->server_name, sizeof(cl->server_name), "%s",
             cfg->server_name ? cfg->server_name : "localhost");
    snprintf(cl->alpn, sizeof(cl->alpn), "%s", cfg->alpn ? cfg->alpn : QUIC_ALPN);
    cl->idle_timeout_ns =
        cfg->idle_timeout_ns ? cfg->idle_timeout_ns : QUIC_DEFAULT_IDLE_TIMEOUT_NS;
    cl->handshake_timeout_ns = cfg->handshake_timeout_ns ? cfg->handshake_timeout_ns
                                                         : QUIC_CLIENT_DEFAULT_HANDSHAKE_TIMEOUT_NS;
    quic_ep_init(&cl->ep, QUIC_ROLE_CLIENT, ops, arg,
                 cfg->control_queue_max ? cfg->control_queue_max
                                        : QUIC_CLIENT_DEFAULT_CONTROL_QUEUE_MAX,
                 QUIC_DEFAULT_DGRAM_QUEUE_MAX);
    cl->ep.st = cl->st;
    if (cfg->ack_thresh > 0)
        cl->ep.ack_thresh = cfg->ack_thresh;
    ngtcp2_callbacks *cb = &cl->ep.callbacks;
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb->recv_stateless_reset = recv_stateless_reset_cb;
    cb->get_new_connection_id = get_new_cid_cb;
    cl->rng = mono_ns() | 1;
    cl->rx = malloc(sizeof(*cl->rx));
    cl->tx = malloc(sizeof(*cl->tx));
    if (cl->rx == NULL || cl->tx == NULL)
        goto fail;
    udp_rx_init(cl->rx);
    cl->ep.tx = cl->tx;
    rc = timers_new(&cl->timers);
    if (rc < 0)
        goto fail;
    cl->ep.timers = cl->timers;
    rc = quic_creds_new(&cl->creds);
    if (rc < 0)
        goto fail;
    rc = ROOST_ECRYPTO;
    cl->no_verify = cfg->no_verify;
    if (cfg->no_verify) {
        gnutls_certificate_set_verify_function(cl->creds->cred, verify_none);
    } else if (cfg->pinned_cert != NULL) {
        if (load_pinned(cl, cfg->pinned_cert) < 0)
            goto fail;
        gnutls_certificate_set_verify_function(cl->creds->cred, verify_pinned);
    } else if (gnutls_certificate_set_x509_trust_file(cl->creds->cred, cfg->ca_file,
                                                      GNUTLS_X509_FMT_PEM) <= 0) {
        goto fail;
    }
    if (cfg->priority != NULL && quic_priority_check(cfg->priority, NULL, 0) < 0) {
        rc = ROOST_EINVAL;
        goto fail;
    }
    if (quic_priority_init(&cl->prio, cfg->priority) < 0)
        goto fail;
    cl->no_tickets = cfg->no_tickets;
    cl->tickets = calloc(1, sizeof(*cl->tickets));
    if (cl->tickets == NULL) {
        rc = ROOST_ENOMEM;
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
    quic_client_del(cl);
    return rc;
}

void quic_client_del(struct quic_client *cl)
{
    if (cl == NULL)
        return;
    while (cl->conns != NULL)
        quic_client_conn_del(cl->conns);
    if (cl->epfd >= 0)
        close(cl->epfd);
    if (cl->prio != NULL)
        gnutls_priority_deinit(cl->prio);
    quic_creds_unref(cl->creds); /* after every session that used them */
    gnutls_free(cl->pinned.data);
    if (cl->tickets != NULL)
        tickets_store_clear(cl->tickets);
    free(cl->tickets);
    timers_del(cl->timers);
    free(cl->rx);
    free(cl->tx);
    free(cl);
}

struct quic_conn *quic_client_first(struct quic_client *cl)
{
    return cl->conns;
}

/* ------------------------------------------------------- connections */

static int open_socket(struct quic_conn *c)
{
    struct udp_addr any;
    memset(&any, 0, sizeof(any));
    any.u.sa.sa_family = c->remote.u.sa.sa_family;
    any.len = c->remote.len;
    int fd = udp_socket_open(&any, false, SOCK_BUF, NULL, NULL);
    if (fd < 0)
        return fd;
    /* connect: only the server's packets reach this socket, and the local
     * address the path names is the real one. */
    if (connect(fd, &c->remote.u.sa, c->remote.len) == -1 || udp_socket_local(fd, &c->local) < 0) {
        close(fd);
        return ROOST_ESYS;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(client_of(c)->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        close(fd);
        return ROOST_ESYS;
    }
    return fd;
}

/* After a NewSessionTicket was read (post-handshake, 1-RTT): keep the
 * session for the relay's address. A failure only costs the next
 * connection a full handshake. */
static int ticket_hook(gnutls_session_t tls, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg)
{
    (void)msg;
    if (htype != GNUTLS_HANDSHAKE_NEW_SESSION_TICKET || when != GNUTLS_HOOK_POST || !incoming)
        return 0;
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(tls);
    struct quic_conn *c = ref->user_data;
    gnutls_datum_t d = {NULL, 0};
    if (gnutls_session_get_data2(tls, &d) == 0) {
        (void)tickets_store_put(client_of(c)->tickets, &c->remote, d.data, d.size);
        gnutls_free(d.data);
    }
    return 0;
}

static int tls_init(struct quic_conn *c)
{
    struct quic_client *cl = client_of(c);
    int rc = quic_conn_tls_init(c, cl->prio, quic_creds_ref(cl->creds), cl->alpn);
    if (rc < 0)
        return rc;
    gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, cl->server_name, strlen(cl->server_name));
    if (cl->pinned.data == NULL && !cl->no_verify)
        gnutls_session_set_verify_cert(c->tls, cl->server_name, 0);
    if (cl->no_tickets)
        return 0;
    /* Offer the last ticket from this address. A ticket the relay no
     * longer accepts (other or expired key) just means a full handshake
     * with certificate verification, in the same round trips. */
    const struct tickets_entry *e = tickets_store_get(cl->tickets, &c->remote);
    if (e != NULL && gnutls_session_set_data(c->tls, e->data, e->len) != 0)
        tickets_store_forget(cl->tickets, &c->remote);
    gnutls_handshake_set_hook_function(c->tls, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET,
                                       GNUTLS_HOOK_POST, ticket_hook);
    return 0;
}

void quic_client_forget_ticket(struct quic_client *cl, const char *host, uint16_t port)
{
    struct udp_addr a;
    if (udp_addr_parse(&a, host, port) == 0)
        tickets_store_forget(cl->tickets, &a);
}

bool quic_client_has_ticket(struct quic_client *cl, const char *host, uint16_t port)
{
    struct udp_addr a;
    return udp_addr_parse(&a, host, port) == 0 && tickets_store_get(cl->tickets, &a) != NULL;
}

int quic_client_connect(struct quic_client *cl, const char *host, uint16_t port, void *user,
                        struct quic_conn **out)
{
    struct quic_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    c->user = user;
    c->next = cl->conns;
    if (cl->conns != NULL)
        cl->conns->prev = c;
    cl->conns = c;
    int rc = quic_conn_init(c, &cl->ep);
    if (rc < 0)
        goto fail;
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
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = cl->ep.now ? cl->ep.now : mono_ns();
    settings.handshake_timeout = cl->handshake_timeout_ns;
    settings.ack_thresh = cl->ep.ack_thresh;
    /* PMTUD on, as on the server (see there: ngtcp2 0.12 aborts after a
     * path validation when it is off). */
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_streams_bidi = 0;
    params.initial_max_streams_uni = 0;
    params.initial_max_stream_data_bidi_local = STREAM_WINDOW;
    params.initial_max_data = CONN_WINDOW;
    params.max_idle_timeout = cl->idle_timeout_ns;
    params.max_datagram_frame_size = cl->no_datagrams ? 0 : 1500;
    if (cl->ep.ack_thresh > QUIC_DEFAULT_ACK_THRESH)
        params.max_ack_delay = QUIC_CLIENT_MEDIA_MAX_ACK_DELAY_NS;
    ngtcp2_path path;
    quic_path_init(&path, &c->local, &c->remote);
    rc = ROOST_EQUIC;
    if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                               &cl->ep.callbacks, &settings, &params, NULL, c) != 0) {
        c->conn = NULL;
        goto fail;
    }
    rc = tls_init(c);
    if (rc < 0)
        goto fail;
    quic_conn_mark_dirty(c);
    *out = c;
    return 0;
fail:
    quic_client_conn_del(c);
    return rc;
}

void quic_client_conn_del(struct quic_conn *c)
{
    if (c == NULL)
        return;
    struct quic_client *cl = client_of(c);
    if (cl->path != NULL)
        cl->path->gone(cl->path_arg, c);
    if (c->dirty) {
        struct quic_conn **pp = &cl->ep.dirty_head;
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
    quic_conn_fini(c);
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    free(c);
}

int quic_client_rebind(struct quic_conn *c)
{
    int old = c->fd;
    struct udp_addr old_local = c->local;
    int fd = open_socket(c);
    if (fd < 0) {
        c->local = old_local;
        return fd;
    }
    epoll_ctl(client_of(c)->epfd, EPOLL_CTL_DEL, old, NULL);
    close(old);
    c->fd = fd;
    /* The client sees a new local address, the server a new 4-tuple: what a
     * NAT rebinding looks like from both ends. */
    ngtcp2_addr a = {.addr = (ngtcp2_sockaddr *)&c->local.u.sa, .addrlen = c->local.len};
    ngtcp2_conn_set_local_addr(c->conn, &a);
    quic_conn_mark_dirty(c);
    return 0;
}

uint16_t quic_client_local_port(const struct quic_conn *c)
{
    return udp_addr_port(&c->local);
}

/* --------------------------------------------------------------- I/O */

static void path_out(void *arg, const struct udp_txpkt *p)
{
    struct quic_client *cl = arg;
    cl->path->out(cl->path_arg, cl->tx_conn, p->data, p->len);
}

/* Each connection sends on its own socket, so the batch is per connection:
 * a full socket loses the packets (QUIC recovers). */
static void flush_dirty(struct quic_client *cl)
{
    while (cl->ep.dirty_head != NULL) {
        struct quic_conn *c = cl->ep.dirty_head;
        cl->ep.dirty_head = c->dirty_next;
        c->dirty = false;
        if (c->state == CS_DEAD)
            continue; /* kept for quic_client_conn_del */
        udp_tx_init(cl->tx, c->fd);
        if (cl->path != NULL) {
            cl->tx->sink = path_out;
            cl->tx->sink_arg = cl;
            cl->tx_conn = c;
        }
        (void)quic_conn_write(c);
        if (udp_tx_flush(cl->tx) < 0)
            cl->tx->head = cl->tx->n = 0;
        /* Only this flush's packets are c's. */
        cl->tx->sink = NULL;
        cl->tx_conn = NULL;
    }
}

static bool drop_rx(struct quic_client *cl)
{
    if (cl->rx_drop <= 0)
        return false;
    cl->rng ^= cl->rng << 13;
    cl->rng ^= cl->rng >> 7;
    cl->rng ^= cl->rng << 17;
    return (double)(cl->rng >> 11) / 9007199254740992.0 < cl->rx_drop;
}

static void conn_input(struct quic_client *cl, struct quic_conn *c)
{
    for (;;) {
        int n = udp_rx_recv(c->fd, cl->rx, &c->local);
        if (n <= 0)
            return;
        if (!quic_conn_live(c))
            return;
        for (int i = 0; i < n; i++) {
            size_t len = cl->rx->msgs[i].msg_len;
            if (len == 0 || drop_rx(cl))
                continue;
            if (cl->path != NULL) {
                cl->path->in(cl->path_arg, c, cl->rx->data[i], len);
                continue;
            }
            /* A connected socket: the path is always this one. */
            if (!quic_conn_read(c, cl->rx->data[i], len, &c->remote, &c->local))
                return; /* over: c may be gone */
        }
    }
}

int quic_client_process(struct quic_client *cl, uint64_t now)
{
    cl->ep.now = now;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(cl->epfd, evs, 64, 0);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return ROOST_ESYS;
        }
        for (int i = 0; i < n; i++)
            conn_input(cl, evs[i].data.ptr);
        if (n < 64)
            break;
    }
    timers_run(cl->timers, now);
    flush_dirty(cl);
    return 0;
}

uint64_t quic_client_next_timeout(const struct quic_client *cl, uint64_t now)
{
    if (cl->ep.dirty_head != NULL)
        return 0;
    uint64_t t = timers_next(cl->timers);
    if (t == TIMER_NEVER)
        return UINT64_MAX;
    return t > now ? t - now : 0;
}

int quic_client_fd(const struct quic_client *cl)
{
    return cl->epfd;
}

unsigned quic_client_active(const struct quic_client *cl)
{
    return cl->ep.active;
}

void quic_client_set_rx_drop(struct quic_client *cl, double share)
{
    cl->rx_drop = share;
}

void quic_client_set_ack_thresh(struct quic_client *cl, unsigned n)
{
    cl->ep.ack_thresh = n > 0 ? n : QUIC_DEFAULT_ACK_THRESH;
}

void quic_client_set_path(struct quic_client *cl, const struct quic_client_path *path, void *arg)
{
    cl->path = path;
    cl->path_arg = arg;
}

void quic_client_emit(struct quic_conn *c, const uint8_t *data, size_t len)
{
    /* Counted as sent when written (conn.c); a refused send is a loss. */
    (void)send(c->fd, data, len, MSG_DONTWAIT);
}

bool quic_client_deliver(struct quic_conn *c, const uint8_t *data, size_t len, uint64_t now)
{
    client_of(c)->ep.now = now;
    if (!quic_conn_live(c))
        return false;
    return quic_conn_read(c, data, len, &c->remote, &c->local);
}

void quic_client_set_no_datagrams(struct quic_client *cl, bool on)
{
    cl->no_datagrams = on;
}

int quic_client_ctl_finish(struct quic_conn *c)
{
    if (c->state != CS_OPEN || c->ctl_stream < 0)
        return ROOST_ECLOSED;
    c->ctl_fin = true;
    quic_conn_mark_dirty(c);
    return 0;
}

int quic_client_ctl_reset(struct quic_conn *c, uint64_t app_error)
{
    if (c->state != CS_OPEN || c->ctl_stream < 0)
        return ROOST_ECLOSED;
    if (ngtcp2_conn_shutdown_stream_write(c->conn, c->ctl_stream, app_error) != 0)
        return ROOST_EQUIC;
    quic_conn_mark_dirty(c);
    return 0;
}

size_t quic_client_close_reason(const struct quic_conn *c, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    size_t n = c->reason_len < cap - 1 ? c->reason_len : cap - 1;
    memcpy(out, c->reason, n);
    out[n] = '\0';
    return n;
}
