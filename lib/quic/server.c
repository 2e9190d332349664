/* A worker's QUIC server: accepting, stateless replies (version
 * negotiation, reset, Retry, close), forwarding mis-routed packets to the
 * owning worker, the dirty list and socket readiness, and the quic_server_*
 * lifecycle. See quic_int.h for the file layout. */
#include "quic/quic.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "core/buf.h"
#include "core/error.h"
#include "quic/cid.h"
#include "quic/quic_int.h"

#define RETRY_TOKEN_TIMEOUT (10ULL * NGTCP2_SECONDS)
#define RX_BATCHES_PER_FLUSH 16

static uint64_t now_ns(struct quic_server *s)
{
    return worker_now(s->w);
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
            quic_conn_free(c);
            continue;
        }
        if (!quic_conn_write(c)) {
            quic_conn_mark_dirty(c); /* batch blocked: retry on EPOLLOUT */
            break;
        }
        /* quic_conn_write may have ended it (set_dead re-marks it dirty). */
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

static void send_version_negotiation(struct quic_server *s, const ngtcp2_version_cid *vc,
                                     const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_vn, now_ns(s))) {
        stat_inc(s->st, QS(rate_limited));
        return;
    }
    uint8_t out[256];
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    uint8_t r;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        out, sizeof(out), r, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv, 1);
    if (n > 0) {
        quic_send_raw(s, out, (size_t)n, remote, local);
        stat_inc(s->st, QS(vn_sent));
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
        stat_inc(s->st, QS(rate_limited));
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
        quic_send_raw(s, out, (size_t)n, remote, local);
        stat_inc(s->st, QS(reset_sent));
    }
}

static void send_retry(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                       const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_retry, now_ns(s))) {
        stat_inc(s->st, QS(rate_limited));
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
        quic_send_raw(s, out, (size_t)n, remote, local);
        stat_inc(s->st, QS(retry_sent));
    }
}

static void send_stateless_close(struct quic_server *s, const ngtcp2_pkt_hd *hd, uint64_t error,
                                 const struct udp_addr *remote, const struct udp_addr *local)
{
    if (!tbucket_take(&s->sh->tb_close, now_ns(s))) {
        stat_inc(s->st, QS(rate_limited));
        return;
    }
    uint8_t out[UDP_TX_MAX];
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(out, sizeof(out), hd->version, &hd->scid,
                                                          &hd->dcid, error, NULL, 0);
    if (n > 0) {
        quic_send_raw(s, out, (size_t)n, remote, local);
        stat_inc(s->st, QS(close_sent));
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
        stat_inc(s->st, QS(fwd_dropped));
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
        stat_inc(s->st, QS(fwd_dropped));
        return;
    }
    stat_inc(s->st, QS(fwd_out));
}

static void new_connection(struct quic_server *s, const uint8_t *data, size_t len,
                           const struct udp_addr *remote, const struct udp_addr *local)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) {
        stat_inc(s->st, QS(malformed));
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
        stat_inc(s->st, QS(refused_draining));
        send_stateless_close(s, &hd, NGTCP2_CONNECTION_REFUSED, remote, local);
        return;
    }
    if (pocid == NULL) {
        bool over = s->half_open >=
                    atomic_load_explicit(&s->sh->live_retry_threshold, memory_order_relaxed);
        if (over)
            stat_inc(s->st, QS(retry_half_open));
        else if (!s->sh->cfg.force_retry && !tbucket_take(&s->sh->tb_hs, now_ns(s))) {
            stat_inc(s->st, QS(retry_rate));
            over = true;
        }
        if (over || s->sh->cfg.force_retry) {
            send_retry(s, &hd, remote, local);
            return;
        }
    }
    if (s->live >= atomic_load_explicit(&s->sh->live_max_conns, memory_order_relaxed)) {
        stat_inc(s->st, QS(refused_full));
        send_stateless_close(s, &hd, NGTCP2_CONNECTION_REFUSED, remote, local);
        return;
    }
    struct quic_conn *c = quic_conn_new(s, &hd, pocid, remote, local);
    if (c == NULL) {
        stat_inc(s->st, QS(handshakes_failed));
        return;
    }
    quic_conn_read(c, data, len, remote, local);
}

static void handle_packet(struct quic_server *s, const uint8_t *data, size_t len,
                          const struct udp_addr *remote, const struct udp_addr *local,
                          bool forwarded)
{
    stat_inc(s->st, QS(pkts_in));
    stat_add(s->st, QS(bytes_in), (uint64_t)len);
    if (len == 0) {
        stat_inc(s->st, QS(malformed));
        return;
    }
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, QUIC_CID_LEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        /* Only a full-size Initial earns an answer (anti-amplification). */
        if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
            send_version_negotiation(s, &vc, remote, local);
        else
            stat_inc(s->st, QS(malformed));
        return;
    }
    if (rv != 0) {
        stat_inc(s->st, QS(malformed));
        return;
    }
    struct quic_conn *c = cid_table_get(s->cids, vc.dcid, vc.dcidlen);
    if (c != NULL) {
        quic_conn_read(c, data, len, remote, local);
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
        stat_inc(s->st, QS(unknown_cid));
        return;
    }
    if (owner < 0 || (unsigned)owner >= s->n_workers) {
        stat_inc(s->st, QS(malformed));
        return;
    }
    if ((unsigned)owner != s->id) {
        /* Never reset a CID that names another worker: hand it over. */
        if (!forwarded)
            forward(s, (unsigned)owner, data, len, remote, local);
        else
            stat_inc(s->st, QS(unknown_cid));
        return;
    }
    stat_inc(s->st, QS(unknown_cid));
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
                stat_inc(s->st, QS(sock_errors));
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
        stat_inc(s->st, QS(fwd_in));
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
    s->st = sh->stats[id].st;
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
            quic_conn_write_close(c);
    }
    (void)udp_tx_flush(s->tx);
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].c != NULL)
            quic_conn_free(s->slots[i].c);
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
