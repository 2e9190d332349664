#include "quic/quic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "proto/frame.h"
#include "quic/cid.h"
#include "quic/ctlstream.h"
#include "quic/tbucket.h"
#include "quic/udp.h"

#define SECRET_LEN 32
#define RETRY_TOKEN_TIMEOUT (10ULL * NGTCP2_SECONDS)
#define CLOSE_RESENDS 4
#define RX_BATCHES_PER_FLUSH 16
/* Our receive windows: small, and extended as control bytes are consumed. */
#define STREAM_WINDOW (32 * 1024)
#define CONN_WINDOW (64 * 1024)
#define MAX_DGRAM_FRAME 1400

static const char priority_str[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:%DISABLE_TLS13_COMPAT_MODE";

/* Counters are written by one worker and read by others: relaxed atomics. */
struct stats_slot {
    _Alignas(64) _Atomic uint64_t v[sizeof(struct quic_stats) / sizeof(uint64_t)];
};

#define STAT_IDX(f) (offsetof(struct quic_stats, f) / sizeof(uint64_t))
#define STAT_ADD(s, f, n)                                                                          \
    atomic_store_explicit(&(s)->st->v[STAT_IDX(f)],                                                \
                          atomic_load_explicit(&(s)->st->v[STAT_IDX(f)], memory_order_relaxed) +   \
                              (uint64_t)(n),                                                       \
                          memory_order_relaxed)
#define STAT_INC(s, f) STAT_ADD(s, f, 1)
#define STAT_DEC(s, f) STAT_ADD(s, f, -1)

/* Certificate credentials, counted: gnutls does not own them, and a
 * session must keep its credentials until it is deinitialised. Each
 * connection holds one reference; quic_shared holds one for the current
 * credentials, published with RCU so SIGHUP can swap them while workers
 * accept new connections. */
struct quic_creds {
    _Atomic uint32_t refs;
    gnutls_certificate_credentials_t cred;
};

struct quic_shared {
    struct quic_shared_config cfg;
    struct quic_creds *creds; /* RCU-published by quic_shared_reload_cert */
    gnutls_priority_t prio;
    uint8_t reset_secret[SECRET_LEN];
    uint8_t retry_secret[SECRET_LEN];
    struct udp_addr bound;
    int fds[WORKER_MAX];
    struct tbucket tb_retry, tb_vn, tb_reset, tb_close, tb_hs;
    /* Changed by main at run time (drain, reload); read per Initial. */
    _Atomic bool draining;
    _Atomic unsigned live_max_conns, live_retry_threshold;
    struct stats_slot stats[WORKER_MAX];
};

enum conn_state {
    CS_HANDSHAKE,
    CS_OPEN,
    CS_CLOSE_PENDING, /* close asked; CONNECTION_CLOSE written at turn end */
    CS_CLOSING,       /* we sent CONNECTION_CLOSE; waiting 3 PTO */
    CS_DRAINING,      /* the peer closed; waiting 3 PTO */
    CS_DEAD,          /* freed at turn end */
};

struct dgram_item {
    struct buf *b;
    uint32_t off, len;
};

struct quic_conn {
    ngtcp2_crypto_conn_ref ref; /* gnutls session pointer */
    struct quic_creds *creds;   /* counted; NULL until tls_init */
    struct quic_server *s;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    struct timer timer;
    uint32_t slot, gen;
    enum conn_state state;
    bool dirty, opened, closed_cb, half_open;
    struct quic_conn *dirty_next;
    struct udp_addr remote, local;
    ngtcp2_cid odcid; /* the client's Initial DCID, also a table key */
    int64_t ctl_stream;
    struct ctl_tx tx;
    struct ctl_rx rx;
    struct dgram_item *dq;
    unsigned dq_head, dq_n;
    uint64_t dgram_seq;
    uint64_t close_error;
    ngtcp2_connection_close_error ccerr;
    uint8_t *close_pkt;
    size_t close_len;
    unsigned close_resends;
    void *user;
    struct quic_conn_stats cs;
};

struct conn_slot {
    struct quic_conn *c;
    uint32_t gen;
    uint32_t next_free;
};

struct quic_server {
    struct worker *w;
    struct quic_shared *sh;
    const struct quic_app_ops *ops;
    void *arg;
    unsigned id, n_workers;
    int fd;
    bool epollout;
    struct stats_slot *st;
    struct cid_table *cids;
    struct conn_slot *slots;
    uint32_t n_slots, free_head, live;
    unsigned half_open;
    struct quic_conn *dirty_head;
    struct udp_rx *rx;
    struct udp_tx *tx;
    uint64_t rx_batches;
};

/* ------------------------------------------------------------ shared */

static int load_secrets(struct quic_shared *sh, const char *dir)
{
    uint8_t both[2 * SECRET_LEN];
    if (dir == NULL) {
        if (gnutls_rnd(GNUTLS_RND_KEY, both, sizeof(both)) != 0)
            return ROOST_ECRYPTO;
        goto out;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/quic-secrets", dir) >= sizeof(path))
        return ROOST_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd != -1) {
        ssize_t n = read(fd, both, sizeof(both));
        close(fd);
        if (n != (ssize_t)sizeof(both)) {
            log_error("msg=\"quic secrets file unreadable\" path=%s", path);
            return ROOST_EIO;
        }
        goto out;
    }
    if (gnutls_rnd(GNUTLS_RND_KEY, both, sizeof(both)) != 0)
        return ROOST_ECRYPTO;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1) {
        log_error("msg=\"cannot create quic secrets\" path=%s err=%s", path, strerror(errno));
        return ROOST_EIO;
    }
    ssize_t n = write(fd, both, sizeof(both));
    if (n != (ssize_t)sizeof(both) || fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return ROOST_EIO;
    }
    close(fd);
out:
    memcpy(sh->reset_secret, both, SECRET_LEN);
    memcpy(sh->retry_secret, both + SECRET_LEN, SECRET_LEN);
    return 0;
}

static int creds_load(const char *cert, const char *key, struct quic_creds **out)
{
    struct quic_creds *cr = calloc(1, sizeof(*cr));
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

static void creds_unref(struct quic_creds *cr)
{
    /* acq_rel: the last holder sees every other holder's use finished. */
    if (cr != NULL && atomic_fetch_sub_explicit(&cr->refs, 1, memory_order_acq_rel) == 1) {
        gnutls_certificate_free_credentials(cr->cred);
        free(cr);
    }
}

int quic_shared_reload_cert(struct quic_shared *sh, const char *cert_file, const char *key_file)
{
    struct quic_creds *nc;
    int rc = creds_load(cert_file, key_file, &nc);
    if (rc < 0)
        return rc;
    /* Pairs with rcu_dereference in tls_init. After the grace period no
     * worker can still be between reading the old pointer and taking its
     * reference, so dropping ours is safe; connections keep theirs. */
    struct quic_creds *old = rcu_xchg_pointer(&sh->creds, nc);
    synchronize_rcu();
    creds_unref(old);
    return 0;
}

int quic_shared_new(struct quic_shared **out, const struct quic_shared_config *cfg)
{
    if (cfg->cert_file == NULL || cfg->key_file == NULL || cfg->addr == NULL ||
        cfg->n_workers == 0 || cfg->n_workers > WORKER_MAX)
        return ROOST_EINVAL;
    struct quic_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        sh->fds[i] = -1;
    int rc;
    sh->cfg = *cfg;
    struct quic_shared_config *c = &sh->cfg;
    c->cert_file = c->key_file = c->state_dir = c->addr = NULL; /* borrowed only here */
    if (c->idle_timeout_ns == 0)
        c->idle_timeout_ns = 30ULL * NGTCP2_SECONDS;
    if (c->handshake_timeout_ns == 0)
        c->handshake_timeout_ns = 5ULL * NGTCP2_SECONDS;
    if (c->retry_threshold == 0)
        c->retry_threshold = 256;
    if (c->max_conns == 0)
        c->max_conns = 100000;
    if (c->control_queue_max == 0)
        c->control_queue_max = 256 * 1024;
    if (c->dgram_queue_max == 0)
        c->dgram_queue_max = 256;
    if (c->sock_buf == 0)
        c->sock_buf = 4 << 20;
    uint32_t burst = c->rate_burst ? c->rate_burst : 100;
    tbucket_init(&sh->tb_retry, c->retry_rate ? c->retry_rate : 1000, burst);
    tbucket_init(&sh->tb_vn, c->vn_rate ? c->vn_rate : 1000, burst);
    tbucket_init(&sh->tb_reset, c->reset_rate ? c->reset_rate : 1000, burst);
    tbucket_init(&sh->tb_close, c->close_rate ? c->close_rate : 1000, burst);
    tbucket_init(&sh->tb_hs, c->handshake_rate, c->handshake_rate ? c->handshake_rate : 1);
    atomic_init(&sh->draining, false);
    atomic_init(&sh->live_max_conns, c->max_conns);
    atomic_init(&sh->live_retry_threshold, c->retry_threshold);

    rc = udp_addr_parse(&sh->bound, cfg->addr, cfg->port);
    if (rc < 0)
        goto fail;
    rc = load_secrets(sh, cfg->state_dir);
    if (rc < 0)
        goto fail;
    rc = creds_load(cfg->cert_file, cfg->key_file, &sh->creds);
    if (rc < 0)
        goto fail;
    rc = ROOST_ECRYPTO;
    if (gnutls_priority_init(&sh->prio, priority_str, NULL) != 0) {
        sh->prio = NULL;
        goto fail;
    }
    /* Sockets in worker order: the SO_REUSEPORT group index of socket i is
     * i, which later kernel steering by CID byte can rely on. */
    for (unsigned i = 0; i < cfg->n_workers; i++) {
        int rcv = 0, snd = 0;
        int fd = udp_socket_open(&sh->bound, true, c->sock_buf, &rcv, &snd);
        if (fd < 0) {
            log_error("msg=\"cannot open quic socket\" err=%s", strerror(errno));
            rc = ROOST_ESYS;
            goto fail;
        }
        sh->fds[i] = fd;
        /* Linux reports twice the value it granted. */
        if (i == 0 && (rcv / 2 < c->sock_buf || snd / 2 < c->sock_buf))
            log_warn("msg=\"udp socket buffers clamped\" requested=%d rcvbuf=%d sndbuf=%d "
                     "hint=\"raise net.core.rmem_max/wmem_max\"",
                     c->sock_buf, rcv / 2, snd / 2);
        if (i == 0 && udp_addr_port(&sh->bound) == 0) {
            rc = udp_socket_local(fd, &sh->bound);
            if (rc < 0)
                goto fail;
        }
    }
    *out = sh;
    return 0;
fail:
    quic_shared_del(sh);
    return rc;
}

void quic_shared_del(struct quic_shared *sh)
{
    if (sh == NULL)
        return;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        if (sh->fds[i] >= 0)
            close(sh->fds[i]);
    if (sh->prio != NULL)
        gnutls_priority_deinit(sh->prio);
    creds_unref(sh->creds);
    gnutls_memset(sh->reset_secret, 0, SECRET_LEN);
    gnutls_memset(sh->retry_secret, 0, SECRET_LEN);
    free(sh);
}

uint16_t quic_shared_port(const struct quic_shared *sh)
{
    return udp_addr_port(&sh->bound);
}

void quic_shared_stats(const struct quic_shared *sh, unsigned worker, struct quic_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (worker >= WORKER_MAX)
        return;
    uint64_t *o = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        o[i] = atomic_load_explicit(&sh->stats[worker].v[i], memory_order_relaxed);
}

void quic_shared_set_draining(struct quic_shared *sh, bool on)
{
    atomic_store_explicit(&sh->draining, on, memory_order_relaxed);
}

bool quic_shared_draining(const struct quic_shared *sh)
{
    return atomic_load_explicit(&sh->draining, memory_order_relaxed);
}

void quic_shared_set_limits(struct quic_shared *sh, unsigned max_conns, unsigned retry_threshold)
{
    if (max_conns != 0)
        atomic_store_explicit(&sh->live_max_conns,
                              max_conns < sh->cfg.max_conns ? max_conns : sh->cfg.max_conns,
                              memory_order_relaxed);
    if (retry_threshold != 0)
        atomic_store_explicit(&sh->live_retry_threshold, retry_threshold, memory_order_relaxed);
}

void quic_shared_stats_total(const struct quic_shared *sh, struct quic_stats *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t *o = (uint64_t *)out;
    for (unsigned w = 0; w < sh->cfg.n_workers; w++)
        for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
            o[i] += atomic_load_explicit(&sh->stats[w].v[i], memory_order_relaxed);
}

/* ------------------------------------------------------ connections */

static uint64_t now_ns(struct quic_server *s)
{
    return worker_now(s->w);
}

static void mark_dirty(struct quic_conn *c)
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
        STAT_DEC(c->s, conns_half_open);
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
    mark_dirty(c);
}

/* Starts the closing/draining wait: 3 PTO, then the connection is freed. */
static void start_wait(struct quic_conn *c, enum conn_state st)
{
    c->state = st;
    uint64_t pto = ngtcp2_conn_get_pto(c->conn);
    if (timer_arm(worker_timers(c->s->w), &c->timer, now_ns(c->s) + 3 * pto) < 0)
        set_dead(c);
}

static void conn_free(struct quic_conn *c)
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
    creds_unref(c->creds); /* after the session that used them */
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
    STAT_DEC(s, conns_open);
    STAT_INC(s, conns_closed);
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
    mark_dirty(c);
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
        STAT_INC(c->s, handshakes_failed);
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
            STAT_INC(c->s, idle_timeouts);
        else
            STAT_INC(c->s, handshake_timeouts);
        notify_close(c, QUIC_APP_IDLE_TIMEOUT);
        set_dead(c);
        return;
    }
    if (rv != 0) {
        close_liberr(c, rv);
        return;
    }
    mark_dirty(c);
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
    STAT_INC(c->s, handshakes_ok);
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
    STAT_INC(c->s, control_in);
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
    STAT_INC(c->s, dgram_in);
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
    STAT_INC(c->s, dgram_lost);
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

static struct quic_conn *conn_new(struct quic_server *s, const ngtcp2_pkt_hd *hd,
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
    /* Take a slot now so conn_free can release it on any failure below. */
    c->slot = s->free_head;
    struct conn_slot *sl = &s->slots[c->slot];
    s->free_head = sl->next_free;
    sl->c = c;
    c->gen = sl->gen;
    s->live++;
    STAT_INC(s, conns_open);
    c->half_open = true;
    s->half_open++;
    STAT_INC(s, conns_half_open);
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
    conn_free(c);
    return NULL;
}

/* ------------------------------------------------------------ write */

static void send_raw(struct quic_server *s, const uint8_t *p, size_t n,
                     const struct udp_addr *remote, const struct udp_addr *local)
{
    struct udp_txpkt *pkt = udp_tx_slot(s->tx);
    if (pkt == NULL || n > UDP_TX_MAX)
        return;
    memcpy(pkt->data, p, n);
    udp_tx_commit(s->tx, n, remote, local);
    STAT_INC(s, pkts_out);
    STAT_ADD(s, bytes_out, n);
}

static void write_close(struct quic_conn *c)
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
    send_raw(s, pktbuf, (size_t)n, &c->remote, &c->local);
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
        STAT_INC(c->s, dgram_drop_cwnd);
    } else if (why == 2) {
        c->cs.dgram_drop_too_large++;
        STAT_INC(c->s, dgram_drop_too_large);
    } else if (why == 3) {
        STAT_INC(c->s, dgram_drop_state);
    }
}

/* Writes every packet the connection has ready into the send batch.
 * Returns false when the batch is blocked (the connection stays dirty). */
static bool conn_write(struct quic_conn *c)
{
    struct quic_server *s = c->s;
    if (c->state == CS_CLOSE_PENDING) {
        write_close(c);
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
                STAT_INC(s, dgram_out);
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
        STAT_INC(s, pkts_out);
        STAT_ADD(s, bytes_out, n);
    }
    uint64_t exp = ngtcp2_conn_get_expiry(c->conn);
    if (exp == UINT64_MAX)
        timer_cancel(worker_timers(s->w), &c->timer);
    else if (timer_arm(worker_timers(s->w), &c->timer, exp) < 0)
        close_liberr(c, NGTCP2_ERR_NOMEM);
    return true;
}

static void set_epollout(struct quic_server *s, bool on)
{
    if (s->epollout == on)
        return;
    if (worker_fd_mod(s->w, s->fd, EPOLLIN | (on ? EPOLLOUT : 0)) == 0)
        s->epollout = on;
}

static void process_dirty(struct quic_server *s)
{
    while (s->dirty_head != NULL) {
        struct quic_conn *c = s->dirty_head;
        s->dirty_head = c->dirty_next;
        c->dirty = false;
        if (c->state == CS_DEAD) {
            conn_free(c);
            continue;
        }
        if (!conn_write(c)) {
            mark_dirty(c); /* batch blocked: retry on EPOLLOUT */
            break;
        }
        /* conn_write may have ended it (set_dead re-marks it dirty). */
    }
    int rc = udp_tx_flush(s->tx);
    set_epollout(s, rc == ROOST_EAGAIN || s->dirty_head != NULL);
    if (rc == 0 && s->dirty_head != NULL)
        worker_wake_self(s->w);
}

void quic_server_turn_end(struct quic_server *s)
{
    process_dirty(s);
}

/* ------------------------------------------------------------- read */

static void conn_read(struct quic_conn *c, const uint8_t *data, size_t len,
                      const struct udp_addr *remote, const struct udp_addr *local)
{
    struct quic_server *s = c->s;
    switch (c->state) {
    case CS_CLOSING:
        if (c->close_pkt != NULL && c->close_resends < CLOSE_RESENDS) {
            c->close_resends++;
            send_raw(s, c->close_pkt, c->close_len, remote, local);
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
                STAT_INC(s, handshakes_failed);
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
    mark_dirty(c);
}

static void send_version_negotiation(struct quic_server *s, const ngtcp2_version_cid *vc,
                                     const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_vn, now_ns(s))) {
        STAT_INC(s, rate_limited);
        return;
    }
    uint8_t out[256];
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    uint8_t r;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        out, sizeof(out), r, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv, 1);
    if (n > 0) {
        send_raw(s, out, (size_t)n, remote, local);
        STAT_INC(s, vn_sent);
    }
}

static void send_stateless_reset(struct quic_server *s, const ngtcp2_version_cid *vc, size_t pktlen,
                                 const struct udp_addr *remote, const struct udp_addr *local)
{
    /* Smaller than what triggered it (no reset loops), never below the
     * minimum a peer recognises. */
    size_t len = pktlen - 1 < 43 ? pktlen - 1 : 43;
    if (pktlen < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1)
        return;
    if (!tbucket_take(&s->sh->tb_reset, now_ns(s))) {
        STAT_INC(s, rate_limited);
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
        send_raw(s, out, (size_t)n, remote, local);
        STAT_INC(s, reset_sent);
    }
}

static void send_retry(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                       const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_retry, now_ns(s))) {
        STAT_INC(s, rate_limited);
        return;
    }
    ngtcp2_cid scid;
    scid.datalen = QUIC_CID_LEN;
    if (cid_generate(scid.data, s->id) < 0)
        return;
    uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
    ngtcp2_ssize tl =
        ngtcp2_crypto_generate_retry_token(token, s->sh->retry_secret, SECRET_LEN, hd->version,
                                           &remote->u.sa, remote->len, &scid, &hd->dcid, now_ns(s));
    if (tl < 0)
        return;
    uint8_t out[UDP_TX_MAX];
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(out, sizeof(out), hd->version, &hd->scid, &scid,
                                               &hd->dcid, token, (size_t)tl);
    if (n > 0) {
        send_raw(s, out, (size_t)n, remote, local);
        STAT_INC(s, retry_sent);
    }
}

static void send_stateless_close(struct quic_server *s, const ngtcp2_pkt_hd *hd, uint64_t error,
                                 const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_close, now_ns(s))) {
        STAT_INC(s, rate_limited);
        return;
    }
    uint8_t out[UDP_TX_MAX];
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(out, sizeof(out), hd->version, &hd->scid,
                                                          &hd->dcid, error, NULL, 0);
    if (n > 0) {
        send_raw(s, out, (size_t)n, remote, local);
        STAT_INC(s, close_sent);
    }
}

struct fwd_hdr {
    struct udp_addr remote, local;
};

static void forward(struct quic_server *s, unsigned owner, const uint8_t *data, size_t len,
                    const struct udp_addr *remote, const struct udp_addr *local)
{
    struct buf *b = buf_new((uint32_t)(sizeof(struct fwd_hdr) + len));
    if (b == NULL) {
        STAT_INC(s, fwd_dropped);
        return;
    }
    struct fwd_hdr h = {.remote = *remote, .local = *local};
    memcpy(b->data, &h, sizeof(h));
    memcpy(b->data + sizeof(h), data, len);
    b->len = (uint32_t)(sizeof(h) + len);
    struct worker_msg m = {.type = QUIC_MSG_FWD};
    m.u.ptr[0] = b;
    /* Media class: a full ring drops (a lost packet, recovered by QUIC). */
    if (worker_send(s->w, owner, &m, WORKER_MSG_MEDIA) != 0) {
        buf_unref(b);
        STAT_INC(s, fwd_dropped);
        return;
    }
    STAT_INC(s, fwd_out);
}

static void new_connection(struct quic_server *s, const uint8_t *data, size_t len,
                           const struct udp_addr *remote, const struct udp_addr *local)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) {
        STAT_INC(s, malformed);
        return;
    }
    ngtcp2_cid ocid, *pocid = NULL;
    if (hd.token.len > 0 && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
        if (ngtcp2_crypto_verify_retry_token(
                &ocid, hd.token.base, hd.token.len, s->sh->retry_secret, SECRET_LEN, hd.version,
                &remote->u.sa, remote->len, &hd.dcid, RETRY_TOKEN_TIMEOUT, now_ns(s)) != 0) {
            send_stateless_close(s, &hd, NGTCP2_INVALID_TOKEN, remote, local);
            return;
        }
        pocid = &ocid;
    } else {
        /* Other tokens (NEW_TOKEN) are not issued by us: ignore. */
        hd.token.base = NULL;
        hd.token.len = 0;
    }
    /* Relaxed: these are settings main changes rarely (drain, reload). */
    if (atomic_load_explicit(&s->sh->draining, memory_order_relaxed)) {
        STAT_INC(s, refused_draining);
        send_stateless_close(s, &hd, NGTCP2_CONNECTION_REFUSED, remote, local);
        return;
    }
    if (pocid == NULL) {
        bool over = s->half_open >=
                    atomic_load_explicit(&s->sh->live_retry_threshold, memory_order_relaxed);
        if (over)
            STAT_INC(s, retry_half_open);
        else if (!s->sh->cfg.force_retry && !tbucket_take(&s->sh->tb_hs, now_ns(s))) {
            STAT_INC(s, retry_rate);
            over = true;
        }
        if (over || s->sh->cfg.force_retry) {
            send_retry(s, &hd, remote, local);
            return;
        }
    }
    if (s->live >= atomic_load_explicit(&s->sh->live_max_conns, memory_order_relaxed)) {
        STAT_INC(s, refused_full);
        send_stateless_close(s, &hd, NGTCP2_CONNECTION_REFUSED, remote, local);
        return;
    }
    struct quic_conn *c = conn_new(s, &hd, pocid, remote, local);
    if (c == NULL) {
        STAT_INC(s, handshakes_failed);
        return;
    }
    conn_read(c, data, len, remote, local);
}

static void handle_packet(struct quic_server *s, const uint8_t *data, size_t len,
                          const struct udp_addr *remote, const struct udp_addr *local,
                          bool forwarded)
{
    STAT_INC(s, pkts_in);
    STAT_ADD(s, bytes_in, len);
    if (len == 0) {
        STAT_INC(s, malformed);
        return;
    }
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, QUIC_CID_LEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        /* Only a full-size Initial earns an answer (anti-amplification). */
        if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
            send_version_negotiation(s, &vc, remote, local);
        else
            STAT_INC(s, malformed);
        return;
    }
    if (rv != 0) {
        STAT_INC(s, malformed);
        return;
    }
    struct quic_conn *c = cid_table_get(s->cids, vc.dcid, vc.dcidlen);
    if (c != NULL) {
        conn_read(c, data, len, remote, local);
        return;
    }
    int owner = cid_worker(vc.dcid, vc.dcidlen);
    bool long_hdr = (data[0] & 0x80) != 0;
    if (long_hdr) {
        /* Client-chosen Initial DCIDs are handled where they land. */
        if ((data[0] & 0x30) == 0x00) {
            new_connection(s, data, len, remote, local);
            return;
        }
        if (owner >= 0 && (unsigned)owner < s->n_workers && (unsigned)owner != s->id &&
            !forwarded) {
            forward(s, (unsigned)owner, data, len, remote, local);
            return;
        }
        STAT_INC(s, unknown_cid);
        return;
    }
    if (owner < 0 || (unsigned)owner >= s->n_workers) {
        STAT_INC(s, malformed);
        return;
    }
    if ((unsigned)owner != s->id) {
        /* Never reset a CID that names another worker: hand it over. */
        if (!forwarded)
            forward(s, (unsigned)owner, data, len, remote, local);
        else
            STAT_INC(s, unknown_cid);
        return;
    }
    STAT_INC(s, unknown_cid);
    send_stateless_reset(s, &vc, len, remote, local);
}

static void on_socket(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)w;
    (void)fd;
    struct quic_server *s = arg;
    if (events & EPOLLOUT)
        process_dirty(s);
    if (!(events & (EPOLLIN | EPOLLERR)))
        return;
    unsigned batches = 0;
    for (;;) {
        int n = udp_rx_recv(s->fd, s->rx, &s->sh->bound);
        if (n <= 0) {
            if (n < 0)
                STAT_INC(s, sock_errors);
            break;
        }
        for (int i = 0; i < n; i++)
            handle_packet(s, s->rx->data[i], s->rx->msgs[i].msg_len, &s->rx->remote[i],
                          &s->rx->local[i], false);
        /* Under a flood, keep live connections moving between batches. */
        if (++batches % RX_BATCHES_PER_FLUSH == 0)
            process_dirty(s);
    }
}

bool quic_server_on_msg(struct quic_server *s, const struct worker_msg *msg)
{
    if (msg->type < QUIC_MSG_FIRST || msg->type > QUIC_MSG_LAST)
        return false;
    if (msg->type == QUIC_MSG_FWD) {
        struct buf *b = msg->u.ptr[0];
        struct fwd_hdr h;
        memcpy(&h, b->data, sizeof(h));
        STAT_INC(s, fwd_in);
        handle_packet(s, b->data + sizeof(h), b->len - sizeof(h), &h.remote, &h.local, true);
        buf_unref(b);
    }
    return true;
}

bool quic_server_discard(const struct worker_msg *msg)
{
    if (msg->type < QUIC_MSG_FIRST || msg->type > QUIC_MSG_LAST)
        return false;
    if (msg->type == QUIC_MSG_FWD)
        buf_unref(msg->u.ptr[0]);
    return true;
}

/* ----------------------------------------------------------- server */

int quic_server_new(struct quic_server **out, struct worker *w, struct quic_shared *sh,
                    const struct quic_app_ops *ops, void *arg)
{
    unsigned id = worker_id(w);
    if (id >= sh->cfg.n_workers || sh->fds[id] < 0)
        return ROOST_EINVAL;
    struct quic_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_ENOMEM;
    s->w = w;
    s->sh = sh;
    s->ops = ops;
    s->arg = arg;
    s->id = id;
    s->n_workers = sh->cfg.n_workers;
    s->st = &sh->stats[id];
    s->fd = -1;
    s->rx = malloc(sizeof(*s->rx));
    s->tx = malloc(sizeof(*s->tx));
    s->n_slots = sh->cfg.max_conns;
    s->slots = calloc(s->n_slots, sizeof(*s->slots));
    if (s->rx == NULL || s->tx == NULL || s->slots == NULL)
        goto fail;
    for (uint32_t i = 0; i < s->n_slots; i++)
        s->slots[i].next_free = i + 1 < s->n_slots ? i + 1 : UINT32_MAX;
    s->free_head = 0;
    rc = cid_table_new(&s->cids);
    if (rc < 0)
        goto fail;
    s->fd = sh->fds[id];
    udp_tx_init(s->tx, s->fd);
    rc = worker_fd_add(w, s->fd, EPOLLIN, on_socket, s);
    if (rc < 0) {
        s->fd = -1;
        goto fail;
    }
    sh->fds[id] = -1; /* the server owns it now */
    *out = s;
    return 0;
fail:
    cid_table_del(s->cids);
    free(s->slots);
    free(s->rx);
    free(s->tx);
    free(s);
    return rc;
}

void quic_server_del(struct quic_server *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct quic_conn *c = s->slots[i].c;
        if (c == NULL)
            continue;
        if (c->state == CS_HANDSHAKE || c->state == CS_OPEN)
            quic_conn_close(c, QUIC_APP_GOING_AWAY, NULL);
        if (c->state == CS_CLOSE_PENDING)
            write_close(c);
    }
    (void)udp_tx_flush(s->tx);
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].c != NULL)
            conn_free(s->slots[i].c);
    s->dirty_head = NULL;
    if (s->fd >= 0) {
        worker_fd_del(s->w, s->fd);
        close(s->fd);
    }
    cid_table_del(s->cids);
    free(s->slots);
    free(s->rx);
    free(s->tx);
    free(s);
}

unsigned quic_server_conn_count(const struct quic_server *s)
{
    return s->live;
}

struct quic_conn *quic_server_conn(struct quic_server *s, struct quic_handle h)
{
    if (h.worker != s->id || h.slot >= s->n_slots)
        return NULL;
    struct conn_slot *sl = &s->slots[h.slot];
    if (sl->c == NULL || sl->gen != h.gen || sl->c->closed_cb)
        return NULL;
    return sl->c;
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
        STAT_INC(c->s, too_slow);
        quic_conn_close(c, QUIC_APP_TOO_SLOW, "control queue full");
        return rc;
    }
    if (rc < 0)
        return rc;
    STAT_INC(c->s, control_out);
    mark_dirty(c);
    return 0;
}

int quic_conn_queue_datagram(struct quic_conn *c, struct buf *b, uint32_t off, uint32_t len)
{
    struct quic_server *s = c->s;
    if (c->state != CS_OPEN) {
        STAT_INC(s, dgram_drop_state);
        return ROOST_ECLOSED;
    }
    unsigned cap = s->sh->cfg.dgram_queue_max;
    if (c->dq_n == cap) {
        c->cs.dgram_drop_queue++;
        STAT_INC(s, dgram_drop_queue);
        return ROOST_EFULL;
    }
    struct dgram_item *d = &c->dq[(c->dq_head + c->dq_n) % cap];
    d->b = buf_ref(b);
    d->off = off;
    d->len = len;
    c->dq_n++;
    mark_dirty(c);
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
