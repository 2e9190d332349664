#include "ws/ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <urcu-qsbr.h>
#include <wslay/wslay.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stat.h"
#include "core/timer.h"
#include "proto/frame.h"
#include "ws/http.h"

#define MS 1000000ULL
#define ACCEPT_BATCH 64
/* Bytes read per connection per readiness event: a fast sender cannot keep
 * its worker from the others (level-triggered epoll brings it back). */
#define RX_BUDGET (128 * 1024)
/* Pongs wslay may hold for a client that pings without reading. */
#define PONG_QUEUE_MAX 256
/* Fill/flush rounds per write: bounded work per connection per turn. */
#define WRITE_ROUNDS 8

static const char priority_str[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

struct stat_slot {
    _Alignas(64) _Atomic uint64_t v[STAT_N(struct ws_stats)];
};

#define ST_ADD(s, f, n) stat_add((s)->st, STAT_IDX(struct ws_stats, f), (uint64_t)(n))
#define ST_INC(s, f) stat_inc((s)->st, STAT_IDX(struct ws_stats, f))
#define ST_DEC(s, f) stat_dec((s)->st, STAT_IDX(struct ws_stats, f))

/* Certificate credentials, counted: a gnutls session must keep its
 * credentials until it is deinitialised. Each TLS connection holds one
 * reference; ws_shared holds one for the current credentials, published
 * with RCU so that a reload can swap them while workers accept. */
struct ws_creds {
    _Atomic uint32_t refs;
    gnutls_certificate_credentials_t cred;
};

struct ws_shared {
    struct ws_shared_config cfg;
    struct ws_creds *creds; /* NULL when plain; RCU-published by ws_shared_reload_cert */
    _Atomic bool draining;
    gnutls_priority_t prio;
    struct sockaddr_storage bound;
    socklen_t bound_len;
    uint16_t port;
    int fds[WORKER_MAX];
    struct stat_slot stats[WORKER_MAX];
};

enum conn_state {
    CS_TLS,     /* TLS handshake */
    CS_HTTP,    /* reading the upgrade request */
    CS_OPEN,    /* WebSocket */
    CS_CLOSING, /* our Close (or HTTP error) is being written; lingering */
    CS_DEAD,    /* socket closed; freed at turn end */
};

struct ctl_item {
    struct ctl_item *next;
    uint64_t at; /* queued at (worker time) */
    uint32_t len;
    uint8_t data[]; /* tag, §3.2 length prefix, body */
};

struct media_item {
    struct buf *b;
    uint32_t off, len;
    uint64_t at;
};

struct ws_conn {
    struct ws_server *s;
    int fd;
    uint32_t slot, gen;
    enum conn_state state;
    bool opened, closed_cb, dirty, blocked;
    bool close_own, close_frame_done, fin_sent;
    bool rx_eof, rx_err;
    uint32_t events; /* current epoll mask */
    struct ws_conn *dirty_next;
    gnutls_session_t tls;   /* NULL for plain ws:// */
    struct ws_creds *creds; /* counted; released after tls */
    wslay_event_context_ptr ws;
    struct timer timer;
    uint64_t timer_at;
    uint64_t t_accept, last_rx, ping_at, close_deadline;
    size_t rx_budget;
    /* Upgrade request; after the upgrade, [hoff, hlen) are early frames. */
    uint8_t *hbuf;
    size_t hlen, hoff;
    /* Bytes for the socket (ciphertext, or plaintext for ws://). */
    uint8_t *obuf;
    size_t ohead, olen, ocap;
    uint64_t out_total, sent_total;
    /* Control not yet handed to TLS, and control in obuf not yet sent. */
    struct ctl_item *cq_head, *cq_tail;
    size_t cq_bytes;
    bool ctl_in_out;
    uint64_t ctl_out_end, ctl_out_since;
    struct media_item *mq;
    unsigned mq_head, mq_n;
    uint16_t close_code;
    uint8_t reason[WS_CLOSE_REASON_MAX];
    size_t reason_len;
    void *user;
    struct ws_conn_stats cs;
};

struct conn_slot {
    struct ws_conn *c;
    uint32_t gen;
    uint32_t next_free;
};

struct ws_server {
    struct worker *w;
    struct ws_shared *sh;
    const struct ws_app_ops *ops;
    void *arg;
    unsigned id;
    int lfd;
    _Atomic uint64_t *st;
    struct conn_slot *slots;
    uint32_t n_slots, free_head, live;
    struct ws_conn *dirty_head;
    uint8_t scratch[16384];
};

/* ------------------------------------------------------------ codes */

uint16_t ws_close_code_from_app(uint64_t app_error)
{
    if (app_error == PROTO_ERR_NO_ERROR)
        return 1000;
    if (app_error < 1000)
        return (uint16_t)(4000 + app_error);
    return 4000 + PROTO_ERR_INTERNAL;
}

uint64_t ws_app_from_close_code(uint16_t code)
{
    if (code == 1000 || code == 1001 || code == 1005 || code == 4000)
        return PROTO_ERR_NO_ERROR;
    if (code > 4000 && code <= 4999)
        return code - 4000u;
    return PROTO_ERR_INTERNAL;
}

/* ------------------------------------------------------------ shared */

static int addr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return ROOST_EINVAL;
}

bool ws_addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (addr == NULL)
        return false;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

static int creds_load(const char *cert, const char *key, struct ws_creds **out)
{
    struct ws_creds *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return ROOST_ENOMEM;
    if (gnutls_certificate_allocate_credentials(&cr->cred) != 0) {
        free(cr);
        return ROOST_ECRYPTO;
    }
    int g = gnutls_certificate_set_x509_key_file(cr->cred, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        log_error("msg=\"cannot load certificate\" cert=%s key=%s err=\"%s\"", cert, key,
                  gnutls_strerror(g));
        gnutls_certificate_free_credentials(cr->cred);
        free(cr);
        return ROOST_ECRYPTO;
    }
    atomic_init(&cr->refs, 1);
    *out = cr;
    return 0;
}

static void creds_unref(struct ws_creds *cr)
{
    /* acq_rel: the last holder sees every other holder's use finished. */
    if (cr != NULL && atomic_fetch_sub_explicit(&cr->refs, 1, memory_order_acq_rel) == 1) {
        gnutls_certificate_free_credentials(cr->cred);
        free(cr);
    }
}

int ws_shared_reload_cert(struct ws_shared *sh, const char *cert_file, const char *key_file)
{
    if (sh->creds == NULL)
        return ROOST_EINVAL; /* plain */
    struct ws_creds *nc;
    int rc = creds_load(cert_file, key_file, &nc);
    if (rc < 0)
        return rc;
    /* Pairs with rcu_dereference in tls_setup. After the grace period no
     * worker is between reading the old pointer and taking its reference,
     * so ours can go; connections keep theirs. */
    struct ws_creds *old = rcu_xchg_pointer(&sh->creds, nc);
    synchronize_rcu();
    creds_unref(old);
    return 0;
}

void ws_shared_set_draining(struct ws_shared *sh, bool on)
{
    atomic_store_explicit(&sh->draining, on, memory_order_relaxed);
}

bool ws_shared_draining(const struct ws_shared *sh)
{
    return atomic_load_explicit(&sh->draining, memory_order_relaxed);
}

static int listen_open(struct ws_shared *sh)
{
    int fd = socket(sh->bound.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return ROOST_ESYS;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    if (sh->bound.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sh->bound, sh->bound_len) == -1)
        goto fail;
    if (listen(fd, 1024) == -1)
        goto fail;
    return fd;
fail:
    close(fd);
    return ROOST_ESYS;
}

int ws_shared_new(struct ws_shared **out, const struct ws_shared_config *cfg)
{
    if (cfg->addr == NULL || cfg->n_workers == 0 || cfg->n_workers > WORKER_MAX)
        return ROOST_EINVAL;
    if (!cfg->plain && (cfg->cert_file == NULL || cfg->key_file == NULL))
        return ROOST_EINVAL;
    if (cfg->plain && !ws_addr_is_loopback(cfg->addr)) {
        log_error("msg=\"plain ws:// is allowed on loopback only\" addr=%s", cfg->addr);
        return ROOST_EINVAL;
    }
    if (cfg->max_message != 0 && cfg->max_message < WS_MESSAGE_MIN)
        return ROOST_EINVAL;
    struct ws_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        sh->fds[i] = -1;
    sh->cfg = *cfg;
    struct ws_shared_config *c = &sh->cfg;
    c->cert_file = c->key_file = c->addr = NULL; /* borrowed only here */
    if (c->max_conns == 0)
        c->max_conns = 10000;
    if (c->handshake_timeout_ns == 0)
        c->handshake_timeout_ns = 5000 * MS;
    if (c->idle_timeout_ns == 0)
        c->idle_timeout_ns = 30000 * MS;
    if (c->ping_interval_ns == 0)
        c->ping_interval_ns = c->idle_timeout_ns / 3;
    if (c->control_timeout_ns == 0)
        c->control_timeout_ns = 5000 * MS;
    if (c->close_timeout_ns == 0)
        c->close_timeout_ns = 2000 * MS;
    if (c->media_max_age_ns == 0)
        c->media_max_age_ns = 500 * MS;
    if (c->max_message == 0)
        c->max_message = WS_MESSAGE_MAX;
    if (c->control_queue_max == 0)
        c->control_queue_max = 256 * 1024;
    if (c->media_queue_max == 0)
        c->media_queue_max = 256;
    if (c->out_buffer == 0)
        c->out_buffer = 64 * 1024;

    int rc = addr_parse(cfg->addr, cfg->port, &sh->bound, &sh->bound_len);
    if (rc < 0)
        goto fail;
    atomic_init(&sh->draining, false);
    if (!cfg->plain) {
        rc = creds_load(cfg->cert_file, cfg->key_file, &sh->creds);
        if (rc < 0)
            goto fail;
        rc = ROOST_ECRYPTO;
        if (gnutls_priority_init(&sh->prio, priority_str, NULL) != 0) {
            sh->prio = NULL;
            goto fail;
        }
    }
    /* Sockets in worker order, all on one port: the first one picks it
     * when the configuration says 0. */
    for (unsigned i = 0; i < cfg->n_workers; i++) {
        int fd = listen_open(sh);
        if (fd < 0) {
            log_error("msg=\"cannot open ws listener\" addr=%s port=%u err=%s", cfg->addr,
                      (unsigned)sh->port, strerror(errno));
            rc = ROOST_ESYS;
            goto fail;
        }
        sh->fds[i] = fd;
        if (i == 0) {
            socklen_t l = sh->bound_len;
            if (getsockname(fd, (struct sockaddr *)&sh->bound, &l) == -1) {
                rc = ROOST_ESYS;
                goto fail;
            }
            sh->port = sh->bound.ss_family == AF_INET
                           ? ntohs(((struct sockaddr_in *)&sh->bound)->sin_port)
                           : ntohs(((struct sockaddr_in6 *)&sh->bound)->sin6_port);
        }
    }
    *out = sh;
    return 0;
fail:
    ws_shared_del(sh);
    return rc;
}

void ws_shared_del(struct ws_shared *sh)
{
    if (sh == NULL)
        return;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        if (sh->fds[i] >= 0)
            close(sh->fds[i]);
    if (sh->prio != NULL)
        gnutls_priority_deinit(sh->prio);
    creds_unref(sh->creds);
    free(sh);
}

uint16_t ws_shared_port(const struct ws_shared *sh)
{
    return sh->port;
}

void ws_shared_stats(const struct ws_shared *sh, unsigned worker, struct ws_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (worker < WORKER_MAX)
        stat_read((uint64_t *)out, sh->stats[worker].v, STAT_N(struct ws_stats));
}

void ws_shared_stats_total(const struct ws_shared *sh, struct ws_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < sh->cfg.n_workers; w++)
        stat_sum((uint64_t *)out, sh->stats[w].v, STAT_N(struct ws_stats));
}

/* ------------------------------------------------------- conn basics */

static uint64_t now_ns(const struct ws_conn *c)
{
    return worker_now(c->s->w);
}

static void mark_dirty(struct ws_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->s->dirty_head;
    c->s->dirty_head = c;
}

/* The one leave path towards the application: on_close exactly once. */
static void notify_close(struct ws_conn *c, uint64_t app_error)
{
    if (c->closed_cb)
        return;
    c->closed_cb = true;
    if (c->s->ops->on_close != NULL)
        c->s->ops->on_close(c, app_error, c->s->arg);
}

static void set_events(struct ws_conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t ev = EPOLLIN | (c->olen > 0 ? EPOLLOUT : 0);
    if (ev != c->events && worker_fd_mod(c->s->w, c->fd, ev) == 0)
        c->events = ev;
}

/* Closes the socket now; the memory goes at turn end (the connection may
 * still be on the caller's stack). */
static void set_dead(struct ws_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    c->state = CS_DEAD;
    timer_cancel(worker_timers(c->s->w), &c->timer);
    if (c->fd >= 0) {
        worker_fd_del(c->s->w, c->fd);
        close(c->fd);
        c->fd = -1;
    }
    mark_dirty(c);
}

/* Ends the connection at once, without a Close frame (TCP/TLS errors,
 * handshake timeout, shutdown). */
static void conn_abort(struct ws_conn *c, uint64_t app_error)
{
    notify_close(c, app_error);
    set_dead(c);
}

static void drop_media(struct ws_conn *c)
{
    unsigned cap = c->s->sh->cfg.media_queue_max;
    for (unsigned i = 0; i < c->mq_n; i++)
        buf_unref(c->mq[(c->mq_head + i) % cap].b);
    c->mq_head = c->mq_n = 0;
}

static void drop_control(struct ws_conn *c)
{
    while (c->cq_head != NULL) {
        struct ctl_item *it = c->cq_head;
        c->cq_head = it->next;
        free(it);
    }
    c->cq_tail = NULL;
    c->cq_bytes = 0;
}

static void conn_free(struct ws_conn *c)
{
    struct ws_server *s = c->s;
    notify_close(c, WS_APP_GOING_AWAY);
    timer_cancel(worker_timers(s->w), &c->timer);
    if (c->fd >= 0) {
        worker_fd_del(s->w, c->fd);
        close(c->fd);
    }
    if (c->ws != NULL)
        wslay_event_context_free(c->ws);
    if (c->tls != NULL)
        gnutls_deinit(c->tls);
    creds_unref(c->creds); /* after the session that used them */
    drop_media(c);
    drop_control(c);
    free(c->mq);
    free(c->hbuf);
    free(c->obuf);
    struct conn_slot *sl = &s->slots[c->slot];
    sl->c = NULL;
    sl->gen++;
    sl->next_free = s->free_head;
    s->free_head = c->slot;
    s->live--;
    ST_DEC(s, conns_open);
    ST_INC(s, conns_closed);
    free(c);
}

/* ----------------------------------------------------------- deadlines */

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static bool ping_pending(const struct ws_conn *c)
{
    return c->ping_at > c->last_rx;
}

static uint64_t control_since(const struct ws_conn *c)
{
    uint64_t t = UINT64_MAX;
    if (c->cq_head != NULL)
        t = c->cq_head->at;
    if (c->ctl_in_out)
        t = min64(t, c->ctl_out_since);
    return t;
}

static uint64_t conn_deadline(const struct ws_conn *c)
{
    const struct ws_shared_config *cfg = &c->s->sh->cfg;
    switch (c->state) {
    case CS_TLS:
    case CS_HTTP:
        return c->t_accept + cfg->handshake_timeout_ns;
    case CS_OPEN: {
        uint64_t d = c->last_rx + cfg->idle_timeout_ns;
        if (!ping_pending(c))
            d = min64(d, c->last_rx + cfg->ping_interval_ns);
        uint64_t since = control_since(c);
        if (since != UINT64_MAX)
            d = min64(d, since + cfg->control_timeout_ns);
        return d;
    }
    case CS_CLOSING:
        return c->close_deadline;
    default:
        return TIMER_NEVER;
    }
}

/* Arms the timer when the deadline moved earlier; a later deadline (new
 * bytes received) is found when the timer fires, so the per-packet path
 * does not touch the heap. */
static void schedule(struct ws_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    uint64_t d = conn_deadline(c);
    if (timer_armed(&c->timer) && c->timer_at <= d)
        return;
    if (timer_arm(worker_timers(c->s->w), &c->timer, d) < 0) {
        conn_abort(c, WS_APP_INTERNAL);
        return;
    }
    c->timer_at = d;
}

/* ------------------------------------------------------------- output */

static int obuf_append(struct ws_conn *c, const void *p, size_t n)
{
    if (c->ohead + c->olen + n > c->ocap && c->ohead > 0) {
        memmove(c->obuf, c->obuf + c->ohead, c->olen);
        c->ohead = 0;
    }
    if (c->olen + n > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 16384;
        while (cap < c->olen + n)
            cap *= 2;
        uint8_t *nb = realloc(c->obuf, cap);
        if (nb == NULL)
            return ROOST_ENOMEM;
        c->obuf = nb;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->ohead + c->olen, p, n);
    c->olen += n;
    c->out_total += n;
    return 0;
}

/* gnutls writes records into obuf; the socket is written at turn end. */
static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
    struct ws_conn *c = p;
    if (obuf_append(c, data, n) < 0) {
        gnutls_transport_set_errno(c->tls, ENOMEM);
        return -1;
    }
    return (ssize_t)n;
}

/* Raw bytes from the socket: >0, 0 at EOF, ROOST_EAGAIN, ROOST_ESYS. */
static ssize_t sock_recv(struct ws_conn *c, void *buf, size_t n)
{
    ssize_t r = recv(c->fd, buf, n, 0);
    if (r > 0) {
        c->last_rx = now_ns(c);
        c->cs.bytes_in += (uint64_t)r;
        ST_ADD(c->s, bytes_in, r);
        return r;
    }
    if (r == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return ROOST_EAGAIN;
    return ROOST_ESYS;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    struct ws_conn *c = p;
    ssize_t r = sock_recv(c, buf, n);
    if (r >= 0)
        return r;
    gnutls_transport_set_errno(c->tls, r == ROOST_EAGAIN ? EAGAIN : ECONNRESET);
    return -1;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
    (void)ms; /* non-blocking: only ask whether bytes are there */
    struct ws_conn *c = p;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return poll(&pfd, 1, 0);
}

/* Plaintext bytes from the connection: >0, 0 at EOF (close_notify or TCP
 * FIN), ROOST_EAGAIN, or ROOST_ESYS / ROOST_ECRYPTO. */
static ssize_t conn_rx(struct ws_conn *c, void *buf, size_t n)
{
    if (c->tls == NULL)
        return sock_recv(c, buf, n);
    ssize_t r = gnutls_record_recv(c->tls, buf, n);
    if (r >= 0)
        return r;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
        return ROOST_EAGAIN;
    if (r == GNUTLS_E_PREMATURE_TERMINATION)
        return 0;
    return ROOST_ECRYPTO;
}

static int conn_tx(struct ws_conn *c, const uint8_t *p, size_t n)
{
    if (c->tls == NULL)
        return obuf_append(c, p, n);
    while (n > 0) {
        ssize_t r = gnutls_record_send(c->tls, p, n);
        if (r < 0)
            return ROOST_ECRYPTO;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One unmasked frame (FIN set): [tag] + p[0..n) as its payload. tag < 0:
 * none. Corked, so a message becomes as few TLS records as fit. */
static int conn_tx_frame(struct ws_conn *c, uint8_t opcode, int tag, const uint8_t *p, size_t n)
{
    uint8_t hdr[16];
    size_t plen = n + (tag >= 0 ? 1 : 0);
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (plen < 126) {
        hdr[h++] = (uint8_t)plen;
    } else if (plen < 65536) {
        hdr[h++] = 126;
        hdr[h++] = (uint8_t)(plen >> 8);
        hdr[h++] = (uint8_t)plen;
    } else {
        hdr[h++] = 127;
        for (int k = 7; k >= 0; k--)
            hdr[h++] = (uint8_t)((uint64_t)plen >> (8 * k));
    }
    if (tag >= 0)
        hdr[h++] = (uint8_t)tag;
    if (c->tls != NULL)
        gnutls_record_cork(c->tls);
    int rc = conn_tx(c, hdr, h);
    if (rc == 0 && n > 0)
        rc = conn_tx(c, p, n);
    if (c->tls != NULL && gnutls_record_uncork(c->tls, 0) < 0)
        rc = ROOST_ECRYPTO;
    return rc;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    (void)flags;
    struct ws_conn *c = user;
    if (conn_tx(c, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Writes our Close frame (code, reason) and the TLS close_notify. */
static int write_close(struct ws_conn *c)
{
    uint8_t p[2 + WS_CLOSE_REASON_MAX];
    p[0] = (uint8_t)(c->close_code >> 8);
    p[1] = (uint8_t)c->close_code;
    memcpy(p + 2, c->reason, c->reason_len);
    return conn_tx_frame(c, WSLAY_CONNECTION_CLOSE, -1, p, 2 + c->reason_len);
}

/* Moves queued messages into obuf while it is below its bound: wslay's own
 * frames (Pong, Ping, its Close) first, then control, then media. A
 * message is written whole or not at all. Returns 0 or an error. */
static int conn_fill(struct ws_conn *c)
{
    const struct ws_shared_config *cfg = &c->s->sh->cfg;
    struct ws_server *s = c->s;
    uint64_t now = now_ns(c);
    while (c->olen < cfg->out_buffer) {
        if (c->ws != NULL && wslay_event_want_write(c->ws)) {
            if (wslay_event_send(c->ws) != 0)
                return ROOST_EIO;
            /* Our send callback takes everything, so wslay's queue is
             * empty now; never spin on it if it is not. */
            if (wslay_event_want_write(c->ws))
                break;
            continue;
        }
        if (c->cq_head != NULL) {
            struct ctl_item *it = c->cq_head;
            if (conn_tx_frame(c, WSLAY_BINARY_FRAME, -1, it->data, it->len) < 0)
                return ROOST_EIO;
            if (!c->ctl_in_out) {
                c->ctl_in_out = true;
                c->ctl_out_since = it->at;
            }
            c->ctl_out_end = c->out_total;
            c->cq_head = it->next;
            if (c->cq_head == NULL)
                c->cq_tail = NULL;
            c->cq_bytes -= it->len;
            free(it);
            continue;
        }
        if (c->state == CS_OPEN && c->mq_n > 0) {
            unsigned cap = cfg->media_queue_max;
            struct media_item m = c->mq[c->mq_head];
            c->mq_head = (c->mq_head + 1) % cap;
            c->mq_n--;
            int rc = 0;
            if (now - m.at > cfg->media_max_age_ns) {
                c->cs.media_drop_stale++;
                ST_INC(s, media_drop_stale);
            } else {
                rc = conn_tx_frame(c, WSLAY_BINARY_FRAME, WS_TAG_MEDIA, m.b->data + m.off, m.len);
                c->cs.media_out++;
                ST_INC(s, media_out);
            }
            buf_unref(m.b);
            if (rc < 0)
                return ROOST_EIO;
            continue;
        }
        break;
    }
    if (c->state == CS_CLOSING && !c->close_frame_done && c->cq_head == NULL) {
        bool done = false;
        if (c->close_own) {
            if (write_close(c) < 0)
                return ROOST_EIO;
            done = true;
        } else if (c->ws == NULL || wslay_event_get_close_sent(c->ws)) {
            done = true; /* wslay wrote its Close (answer or violation) */
        }
        if (done) {
            c->close_frame_done = true;
            if (c->tls != NULL && gnutls_bye(c->tls, GNUTLS_SHUT_WR) < 0)
                return ROOST_EIO;
        }
    }
    return 0;
}

/* Writes obuf to the socket. Returns 0 (all or EAGAIN) or ROOST_ESYS. */
static int conn_flush(struct ws_conn *c)
{
    while (c->olen > 0) {
        ssize_t r = send(c->fd, c->obuf + c->ohead, c->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->blocked = true;
                break;
            }
            return ROOST_ESYS;
        }
        c->ohead += (size_t)r;
        c->olen -= (size_t)r;
        c->sent_total += (uint64_t)r;
        c->cs.bytes_out += (uint64_t)r;
        ST_ADD(c->s, bytes_out, r);
    }
    if (c->olen == 0)
        c->ohead = 0;
    if (c->ctl_in_out && c->sent_total >= c->ctl_out_end)
        c->ctl_in_out = false;
    return 0;
}

static void conn_write(struct ws_conn *c)
{
    if (c->state == CS_DEAD || c->blocked)
        return;
    for (int round = 0; round < WRITE_ROUNDS; round++) {
        if ((c->state == CS_OPEN || c->state == CS_CLOSING) && conn_fill(c) < 0) {
            conn_abort(c, WS_APP_INTERNAL);
            return;
        }
        if (conn_flush(c) < 0) {
            ST_INC(c->s, sock_errors);
            conn_abort(c, WS_APP_INTERNAL);
            return;
        }
        if (c->blocked)
            break;
        bool more = c->cq_head != NULL || (c->state == CS_OPEN && c->mq_n > 0) ||
                    (c->ws != NULL && wslay_event_want_write(c->ws));
        if (!more)
            break;
    }
    if (c->state == CS_CLOSING && c->close_frame_done && c->olen == 0 && !c->fin_sent) {
        /* Half-close: the client sees EOF after our Close and closes its
         * side; unread bytes of its are discarded, not answered by RST. */
        shutdown(c->fd, SHUT_WR);
        c->fin_sent = true;
    }
    set_events(c);
    schedule(c);
}

/* ------------------------------------------------------------- closing */

static void set_reason(struct ws_conn *c, const char *reason)
{
    size_t n = reason ? strlen(reason) : 0;
    size_t k = n < WS_CLOSE_REASON_MAX ? n : WS_CLOSE_REASON_MAX;
    /* Cut at a character boundary: never before a continuation byte. */
    while (k > 0 && k < n && ((uint8_t)reason[k] & 0xc0) == 0x80)
        k--;
    if (k > 0)
        memcpy(c->reason, reason, k);
    c->reason_len = k;
}

/* From OPEN to CLOSING. own: we write our Close (close_code); otherwise
 * wslay has queued its own (an answer to the peer's, or a violation). */
static void begin_close(struct ws_conn *c, uint64_t app_error, bool own, uint16_t code,
                        const char *reason)
{
    c->state = CS_CLOSING;
    c->close_own = own;
    c->close_code = code;
    set_reason(c, reason);
    if (c->ws != NULL) {
        wslay_event_shutdown_read(c->ws); /* no more messages, even in this read */
        if (own)
            wslay_event_shutdown_write(c->ws);
    }
    drop_media(c);
    /* After LEAVE, what was queued still goes out before the Close. */
    if (app_error != WS_APP_NO_ERROR || !own)
        drop_control(c);
    c->close_deadline = now_ns(c) + c->s->sh->cfg.close_timeout_ns;
    c->blocked = false; /* re-evaluate at turn end */
    mark_dirty(c);
    notify_close(c, app_error);
}

void ws_conn_close(struct ws_conn *c, uint64_t app_error, const char *reason)
{
    switch (c->state) {
    case CS_OPEN:
        begin_close(c, app_error, true, ws_close_code_from_app(app_error), reason);
        break;
    case CS_TLS:
    case CS_HTTP:
        conn_abort(c, app_error);
        break;
    default:
        break;
    }
}

static void violation(struct ws_conn *c, const char *why)
{
    ST_INC(c->s, protocol_violations);
    ws_conn_close(c, WS_APP_PROTOCOL_VIOLATION, why);
}

static void too_slow(struct ws_conn *c, const char *why)
{
    ST_INC(c->s, too_slow);
    ws_conn_close(c, WS_APP_TOO_SLOW, why);
}

/* --------------------------------------------------------------- input */

static void free_hbuf(struct ws_conn *c)
{
    free(c->hbuf);
    c->hbuf = NULL;
    c->hlen = c->hoff = 0;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user)
{
    (void)flags;
    struct ws_conn *c = user;
    if (c->hoff < c->hlen) {
        size_t n = c->hlen - c->hoff < len ? c->hlen - c->hoff : len;
        memcpy(buf, c->hbuf + c->hoff, n);
        c->hoff += n;
        if (c->hoff == c->hlen)
            free_hbuf(c);
        return (ssize_t)n;
    }
    /* Over budget: stop at a record boundary (nothing left inside gnutls),
     * so the next EPOLLIN finds everything still unread. */
    if (c->rx_budget == 0 && (c->tls == NULL || gnutls_record_check_pending(c->tls) == 0)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ssize_t r = conn_rx(c, buf, len);
    if (r > 0) {
        c->rx_budget = (size_t)r < c->rx_budget ? c->rx_budget - (size_t)r : 0;
        return r;
    }
    if (r == ROOST_EAGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (r == 0)
        c->rx_eof = true;
    else
        c->rx_err = true;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

int ws_msg_parse(const uint8_t *msg, size_t len, const uint8_t **body, size_t *body_len)
{
    if (len == 0)
        return ROOST_EMALFORMED;
    if (msg[0] == WS_TAG_MEDIA) {
        *body = msg + 1;
        *body_len = len - 1;
        return WS_TAG_MEDIA;
    }
    if (msg[0] != WS_TAG_CONTROL)
        return ROOST_EMALFORMED;
    size_t hl, bl;
    int rc = frame_parse(msg + 1, len - 1, &hl, &bl);
    if (rc < 0 || bl == 0 || hl + bl != len - 1)
        return ROOST_EMALFORMED;
    *body = msg + 1 + hl;
    *body_len = bl;
    return WS_TAG_CONTROL;
}

static void on_binary(struct ws_conn *c, const uint8_t *msg, size_t len)
{
    struct ws_server *s = c->s;
    const uint8_t *body;
    size_t n;
    switch (ws_msg_parse(msg, len, &body, &n)) {
    case WS_TAG_CONTROL:
        c->cs.control_in++;
        ST_INC(s, control_in);
        if (s->ops->on_control != NULL)
            s->ops->on_control(c, body, n, s->arg);
        return;
    case WS_TAG_MEDIA:
        c->cs.media_in++;
        ST_INC(s, media_in);
        if (s->ops->on_media != NULL)
            s->ops->on_media(c, body, n, s->arg);
        return;
    default:
        violation(c, len == 0                   ? "empty message"
                     : msg[0] == WS_TAG_CONTROL ? "control message is not exactly one frame"
                                                : "unknown channel tag");
        return;
    }
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    struct ws_conn *c = user;
    if (c->state != CS_OPEN)
        return;
    switch (arg->opcode) {
    case WSLAY_BINARY_FRAME:
        on_binary(c, arg->msg, arg->msg_length);
        return;
    case WSLAY_TEXT_FRAME:
        violation(c, "text message");
        return;
    case WSLAY_PING:
        /* wslay queued the Pong; a client that pings without reading
         * them is a slow reader of control. */
        if (wslay_event_get_queued_msg_count(ctx) > PONG_QUEUE_MAX)
            too_slow(c, "pongs not read");
        return;
    case WSLAY_CONNECTION_CLOSE: {
        uint16_t code = arg->status_code ? arg->status_code : 1005;
        ST_INC(c->s, peer_closed);
        /* wslay queued the answering Close. */
        begin_close(c, ws_app_from_close_code(code), false, code, NULL);
        return;
    }
    default:
        return;
    }
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = ws_recv_cb,
    .send_callback = ws_send_cb,
    .on_msg_recv_callback = ws_msg_cb,
};

static void read_open(struct ws_conn *c)
{
    c->rx_budget = RX_BUDGET;
    c->rx_eof = c->rx_err = false;
    int rc = wslay_event_recv(c->ws);
    if (c->state != CS_OPEN)
        return; /* closed from a callback */
    if (rc != 0) {
        if (c->rx_eof || c->rx_err) {
            /* TCP or TLS ended without a Close frame. */
            ST_INC(c->s, peer_reset);
            conn_abort(c, WS_APP_INTERNAL);
            return;
        }
        if (rc == WSLAY_ERR_CALLBACK_FAILURE) {
            /* A malformed frame header: wslay queued a Close without a
             * status; ours says 1002. */
            ST_INC(c->s, protocol_violations);
            begin_close(c, WS_APP_PROTOCOL_VIOLATION, true, WSLAY_CODE_PROTOCOL_ERROR,
                        "malformed frame");
            return;
        }
        conn_abort(c, WS_APP_INTERNAL);
        return;
    }
    if (!wslay_event_get_read_enabled(c->ws)) {
        /* wslay found an RFC 6455 violation and queued its Close (1002,
         * 1007 or 1009). */
        ST_INC(c->s, protocol_violations);
        begin_close(c, WS_APP_PROTOCOL_VIOLATION, false, 0, NULL);
        return;
    }
    if (c->ws != NULL && wslay_event_want_write(c->ws))
        mark_dirty(c);
}

static void upgrade(struct ws_conn *c, size_t req_len, const char *key)
{
    struct ws_server *s = c->s;
    char resp[256];
    int n = ws_http_response_101(key, resp, sizeof(resp));
    if (n < 0 || conn_tx(c, (const uint8_t *)resp, (size_t)n) < 0) {
        conn_abort(c, WS_APP_INTERNAL);
        return;
    }
    if (wslay_event_context_server_init(&c->ws, &wslay_cbs, c) != 0) {
        c->ws = NULL;
        conn_abort(c, WS_APP_INTERNAL);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, s->sh->cfg.max_message);
    c->hoff = req_len;
    if (c->hoff == c->hlen)
        free_hbuf(c); /* no early frames */
    c->state = CS_OPEN;
    c->last_rx = now_ns(c);
    ST_INC(s, handshakes_ok);
    mark_dirty(c);
    int code = s->ops->on_open != NULL ? s->ops->on_open(c, s->arg) : 0;
    if (c->state != CS_OPEN)
        return;
    if (code != 0) {
        ws_conn_close(c, (uint64_t)code, "refused");
        return;
    }
    c->opened = true;
}

static void reject(struct ws_conn *c, const struct ws_http_req *req)
{
    char resp[512];
    ST_INC(c->s, http_rejected);
    int n = ws_http_response_error(req->status, req->why, resp, sizeof(resp));
    if (n < 0 || conn_tx(c, (const uint8_t *)resp, (size_t)n) < 0) {
        conn_abort(c, WS_APP_PROTOCOL_VIOLATION);
        return;
    }
    c->state = CS_CLOSING;
    c->close_frame_done = true;
    if (c->tls != NULL)
        (void)gnutls_bye(c->tls, GNUTLS_SHUT_WR);
    c->close_deadline = now_ns(c) + c->s->sh->cfg.close_timeout_ns;
    mark_dirty(c);
    notify_close(c, WS_APP_PROTOCOL_VIOLATION);
}

static void read_http(struct ws_conn *c)
{
    if (c->hbuf == NULL) {
        c->hbuf = malloc(WS_HTTP_MAX);
        if (c->hbuf == NULL) {
            conn_abort(c, WS_APP_INTERNAL);
            return;
        }
    }
    for (;;) {
        ssize_t r = conn_rx(c, c->hbuf + c->hlen, WS_HTTP_MAX - c->hlen);
        if (r == ROOST_EAGAIN)
            return;
        if (r <= 0) {
            conn_abort(c, WS_APP_INTERNAL);
            return;
        }
        c->hlen += (size_t)r;
        struct ws_http_req req;
        int rc = ws_http_parse(c->hbuf, c->hlen, &req);
        if (rc == 0)
            continue;
        if (rc < 0) {
            reject(c, &req);
            return;
        }
        upgrade(c, (size_t)rc, req.key);
        if (c->state == CS_OPEN)
            read_open(c);
        return;
    }
}

static void read_discard(struct ws_conn *c)
{
    for (int i = 0; i < 16; i++) {
        ssize_t r = sock_recv(c, c->s->scratch, sizeof(c->s->scratch));
        if (r == ROOST_EAGAIN)
            return;
        if (r <= 0) {
            /* The client closed its side (or reset): our Close was
             * answered or will not be read; nothing to linger for. */
            set_dead(c);
            return;
        }
    }
}

static void conn_read(struct ws_conn *c)
{
    switch (c->state) {
    case CS_TLS: {
        int r = gnutls_handshake(c->tls);
        mark_dirty(c); /* handshake records to send */
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return;
        if (r < 0) {
            if (!gnutls_error_is_fatal(r))
                return;
            ST_INC(c->s, tls_failed);
            conn_abort(c, WS_APP_INTERNAL);
            return;
        }
        c->state = CS_HTTP;
        /* The request may have come with the client's Finished. */
    }
        /* fall through */
    case CS_HTTP:
        read_http(c);
        break;
    case CS_OPEN:
        read_open(c);
        break;
    case CS_CLOSING:
        read_discard(c);
        break;
    default:
        break;
    }
}

static void on_conn_event(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)w;
    (void)fd;
    struct ws_conn *c = arg;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(c);
    if (c->state == CS_DEAD)
        return;
    if (events & EPOLLOUT) {
        c->blocked = false;
        conn_write(c);
    }
    schedule(c);
}

static void on_timer(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    struct ws_conn *c = arg;
    const struct ws_shared_config *cfg = &c->s->sh->cfg;
    switch (c->state) {
    case CS_TLS:
    case CS_HTTP:
        if (now >= c->t_accept + cfg->handshake_timeout_ns) {
            ST_INC(c->s, handshake_timeouts);
            conn_abort(c, WS_APP_IDLE_TIMEOUT);
            return;
        }
        break;
    case CS_OPEN: {
        uint64_t since = control_since(c);
        if (now >= c->last_rx + cfg->idle_timeout_ns) {
            ST_INC(c->s, idle_timeouts);
            ws_conn_close(c, WS_APP_IDLE_TIMEOUT, "idle timeout");
        } else if (since != UINT64_MAX && now >= since + cfg->control_timeout_ns) {
            too_slow(c, "control not read in time");
        } else if (!ping_pending(c) && now >= c->last_rx + cfg->ping_interval_ns) {
            struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
            if (wslay_event_queue_msg(c->ws, &m) == 0) {
                c->ping_at = now;
                ST_INC(c->s, pings_sent);
                mark_dirty(c);
            }
        }
        break;
    }
    case CS_CLOSING:
        if (now >= c->close_deadline) {
            set_dead(c);
            return;
        }
        break;
    default:
        return;
    }
    schedule(c);
}

/* ------------------------------------------------------------- accept */

static int tls_setup(struct ws_conn *c)
{
    struct ws_shared *sh = c->s->sh;
    if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_TICKETS) != 0) {
        c->tls = NULL;
        return ROOST_ECRYPTO;
    }
    /* New sessions use the current credentials; the reference keeps them
     * for this session across a reload. Workers are QSBR readers. */
    rcu_read_lock();
    c->creds = rcu_dereference(sh->creds);
    atomic_fetch_add_explicit(&c->creds->refs, 1, memory_order_relaxed);
    rcu_read_unlock();
    if (gnutls_priority_set(c->tls, sh->prio) != 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->creds->cred) != 0)
        return ROOST_ECRYPTO;
    /* Not mandatory: clients that offer no ALPN (or only h2) still get
     * HTTP/1.1, which is all we speak. */
    gnutls_datum_t alpn = {.data = (unsigned char *)"http/1.1", .size = 8};
    if (gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_SERVER_PRECEDENCE) != 0)
        return ROOST_ECRYPTO;
    gnutls_transport_set_ptr(c->tls, c);
    gnutls_transport_set_push_function(c->tls, tls_push);
    gnutls_transport_set_pull_function(c->tls, tls_pull);
    gnutls_transport_set_pull_timeout_function(c->tls, tls_pull_timeout);
    return 0;
}

static void conn_new(struct ws_server *s, int fd)
{
    const struct ws_shared_config *cfg = &s->sh->cfg;
    struct ws_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto fail;
    c->mq = calloc(cfg->media_queue_max, sizeof(*c->mq));
    if (c->mq == NULL)
        goto fail;
    c->s = s;
    c->fd = fd;
    int one = 1;
    /* Real-time messages: no Nagle delay. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cfg->sock_sndbuf > 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sock_sndbuf, sizeof(cfg->sock_sndbuf));
    timer_init(&c->timer, on_timer, c);
    c->t_accept = c->last_rx = worker_now(s->w);
    if (s->sh->creds != NULL) {
        if (tls_setup(c) < 0)
            goto fail;
        c->state = CS_TLS;
    } else {
        c->state = CS_HTTP;
    }
    if (worker_fd_add(s->w, fd, EPOLLIN, on_conn_event, c) < 0)
        goto fail;
    c->events = EPOLLIN;
    uint32_t slot = s->free_head;
    struct conn_slot *sl = &s->slots[slot];
    s->free_head = sl->next_free;
    sl->c = c;
    c->slot = slot;
    c->gen = sl->gen;
    s->live++;
    ST_INC(s, conns_open);
    schedule(c);
    return;
fail:
    ST_INC(s, sock_errors);
    if (c != NULL) {
        if (c->tls != NULL)
            gnutls_deinit(c->tls);
        creds_unref(c->creds);
        free(c->mq);
        free(c);
    }
    close(fd);
}

static void on_listen(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)w;
    (void)events;
    struct ws_server *s = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd == -1) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                ST_INC(s, sock_errors);
            return;
        }
        ST_INC(s, accepted);
        if (s->free_head == UINT32_MAX) {
            ST_INC(s, refused_full);
            close(cfd);
            continue;
        }
        if (ws_shared_draining(s->sh)) {
            ST_INC(s, refused_draining);
            close(cfd);
            continue;
        }
        conn_new(s, cfd);
    }
}

/* ------------------------------------------------------------- server */

int ws_server_new(struct ws_server **out, struct worker *w, struct ws_shared *sh,
                  const struct ws_app_ops *ops, void *arg)
{
    unsigned id = worker_id(w);
    if (id >= sh->cfg.n_workers || sh->fds[id] < 0)
        return ROOST_EINVAL;
    struct ws_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ROOST_ENOMEM;
    s->w = w;
    s->sh = sh;
    s->ops = ops;
    s->arg = arg;
    s->id = id;
    s->st = sh->stats[id].v;
    s->n_slots = sh->cfg.max_conns;
    s->slots = calloc(s->n_slots, sizeof(*s->slots));
    if (s->slots == NULL) {
        free(s);
        return ROOST_ENOMEM;
    }
    for (uint32_t i = 0; i < s->n_slots; i++)
        s->slots[i].next_free = i + 1 < s->n_slots ? i + 1 : UINT32_MAX;
    s->free_head = 0;
    int rc = worker_fd_add(w, sh->fds[id], EPOLLIN, on_listen, s);
    if (rc < 0) {
        free(s->slots);
        free(s);
        return rc;
    }
    s->lfd = sh->fds[id];
    sh->fds[id] = -1; /* the server owns it now */
    *out = s;
    return 0;
}

static void process_dirty(struct ws_server *s)
{
    while (s->dirty_head != NULL) {
        struct ws_conn *c = s->dirty_head;
        s->dirty_head = c->dirty_next;
        c->dirty = false;
        if (c->state == CS_DEAD) {
            conn_free(c);
            continue;
        }
        conn_write(c); /* may end it: set_dead marks it dirty again */
    }
}

void ws_server_turn_end(struct ws_server *s)
{
    process_dirty(s);
}

void ws_server_del(struct ws_server *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct ws_conn *c = s->slots[i].c;
        if (c == NULL)
            continue;
        if (c->state == CS_OPEN) {
            ws_conn_close(c, WS_APP_GOING_AWAY, "server shutdown");
            c->blocked = false;
            conn_write(c); /* best effort: the Close frame, once */
        }
    }
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].c != NULL)
            conn_free(s->slots[i].c);
    s->dirty_head = NULL;
    worker_fd_del(s->w, s->lfd);
    close(s->lfd);
    free(s->slots);
    free(s);
}

unsigned ws_server_conn_count(const struct ws_server *s)
{
    return s->live;
}

struct ws_conn *ws_server_conn(struct ws_server *s, struct ws_handle h)
{
    if (h.worker != s->id || h.slot >= s->n_slots)
        return NULL;
    struct conn_slot *sl = &s->slots[h.slot];
    if (sl->c == NULL || sl->gen != h.gen || sl->c->closed_cb)
        return NULL;
    return sl->c;
}

struct ws_handle ws_conn_handle(const struct ws_conn *c)
{
    struct ws_handle h = {.worker = (uint16_t)c->s->id, .slot = c->slot, .gen = c->gen};
    return h;
}

/* ------------------------------------------------------------ conn API */

int ws_conn_send_control(struct ws_conn *c, const uint8_t *body, size_t len)
{
    if (c->state != CS_OPEN)
        return ROOST_ECLOSED;
    if (len == 0 || len > FRAME_MAX_BODY)
        return ROOST_EINVAL;
    if (c->cq_bytes + 1 + FRAME_MAX_HDR + len > c->s->sh->cfg.control_queue_max) {
        too_slow(c, "control queue full");
        return ROOST_EFULL;
    }
    struct ctl_item *it = malloc(sizeof(*it) + 1 + FRAME_MAX_HDR + len);
    if (it == NULL)
        return ROOST_ENOMEM;
    it->data[0] = WS_TAG_CONTROL;
    int hl = frame_put_header(it->data + 1, FRAME_MAX_HDR, len);
    if (hl < 0) {
        free(it);
        return ROOST_EINVAL;
    }
    memcpy(it->data + 1 + hl, body, len);
    it->len = (uint32_t)(1 + (size_t)hl + len);
    it->at = now_ns(c);
    it->next = NULL;
    if (c->cq_tail != NULL)
        c->cq_tail->next = it;
    else
        c->cq_head = it;
    c->cq_tail = it;
    c->cq_bytes += it->len;
    c->cs.control_out++;
    ST_INC(c->s, control_out);
    if (!c->blocked)
        mark_dirty(c);
    schedule(c);
    return 0;
}

int ws_conn_queue_media(struct ws_conn *c, struct buf *b, uint32_t off, uint32_t len)
{
    struct ws_server *s = c->s;
    const struct ws_shared_config *cfg = &s->sh->cfg;
    if (c->state != CS_OPEN) {
        ST_INC(s, media_drop_state);
        return ROOST_ECLOSED;
    }
    if ((size_t)len + 1 > cfg->max_message) {
        c->cs.media_drop_too_large++;
        ST_INC(s, media_drop_too_large);
        return ROOST_ETOOBIG;
    }
    unsigned cap = cfg->media_queue_max;
    if (c->mq_n == cap) {
        /* Oldest first: the newest media is the most useful. */
        buf_unref(c->mq[c->mq_head].b);
        c->mq_head = (c->mq_head + 1) % cap;
        c->mq_n--;
        c->cs.media_drop_queue++;
        ST_INC(s, media_drop_queue);
    }
    struct media_item *m = &c->mq[(c->mq_head + c->mq_n) % cap];
    m->b = buf_ref(b);
    m->off = off;
    m->len = len;
    m->at = now_ns(c);
    c->mq_n++;
    if (!c->blocked)
        mark_dirty(c);
    return 0;
}

int ws_conn_send_media(struct ws_conn *c, const uint8_t *data, size_t len)
{
    if (len > UINT32_MAX)
        return ROOST_EINVAL;
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL)
        return ROOST_ENOMEM;
    memcpy(b->data, data, len);
    b->len = (uint32_t)len;
    int rc = ws_conn_queue_media(c, b, 0, (uint32_t)len);
    buf_unref(b);
    return rc;
}

void ws_conn_set_user(struct ws_conn *c, void *u)
{
    c->user = u;
}

void *ws_conn_user(const struct ws_conn *c)
{
    return c->user;
}

bool ws_conn_opened(const struct ws_conn *c)
{
    return c->opened;
}

bool ws_conn_tls(const struct ws_conn *c)
{
    return c->tls != NULL;
}

struct ws_server *ws_conn_server(const struct ws_conn *c)
{
    return c->s;
}

void ws_conn_stats(struct ws_conn *c, struct ws_conn_stats *out)
{
    *out = c->cs;
    out->control_pending = c->cq_bytes + (c->ctl_in_out ? c->ctl_out_end - c->sent_total : 0);
    out->media_queued = c->mq_n;
    out->out_buffered = c->olen;
    struct tcp_info ti;
    socklen_t l = sizeof(ti);
    if (c->fd >= 0 && getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0) {
        out->srtt_ns = (uint64_t)ti.tcpi_rtt * 1000;
        out->rttvar_ns = (uint64_t)ti.tcpi_rttvar * 1000;
        out->cwnd_bytes = (uint64_t)ti.tcpi_snd_cwnd * ti.tcpi_snd_mss;
        out->retrans = ti.tcpi_total_retrans;
    }
}
