/* A worker's QUIC server: accepting connections (the server's ngtcp2
 * callbacks: CID table, reset tokens), forwarding mis-routed packets to
 * the owning worker, the dirty list and socket readiness, and the quic_server_*
 * lifecycle. See quic_int.h for the file layout. */
#include "quic/quic.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "quic/cid.h"
#include "quic/quic_int.h"

#define RETRY_TOKEN_TIMEOUT (10ULL * NGTCP2_SECONDS)
/* Our receive windows: small, and extended as control bytes are consumed. */
#define STREAM_WINDOW (32 * 1024)
#define CONN_WINDOW (64 * 1024)
#define MAX_DGRAM_FRAME 1400
#define RX_BATCHES_PER_FLUSH 16

static uint64_t now_ns(struct quic_server *s)
{
    return worker_now(s->w);
}

/* ------------------------------------------------ server connections */

static struct quic_server *server_of(const struct quic_conn *c)
{
    return (struct quic_server *)((char *)c->ep - offsetof(struct quic_server, ep));
}

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                          void *user_data)
{
    (void)conn;
    (void)cidlen; /* ngtcp2 asks for the length of our initial SCID */
    struct quic_conn *c = user_data;
    struct quic_server *s = server_of(c);
    for (int tries = 0; tries < 4; tries++) {
        if (cid_generate(cid->data, s->id) < 0)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        cid->datalen = QUIC_CID_LEN;
        int rc = cid_table_put(s->cids, cid->data, cid->datalen, c);
        if (rc == ROOST_EEXIST)
            continue;
        if (rc < 0)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        if (ngtcp2_crypto_generate_stateless_reset_token(token, s->sh->reset_secret, SECRET_LEN,
                                                         cid) != 0) {
            cid_table_remove(s->cids, cid->data, cid->datalen, c);
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
    cid_table_remove(server_of(c)->cids, cid->data, cid->datalen, c);
    if (c->handed)
        quic_handoff_cid_gone(server_of(c), c, cid);
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

/* Frees now: on_close (GOING_AWAY) if not yet told, every CID out of the
 * table, the slot released. */
static void conn_free(struct quic_conn *c)
{
    struct quic_server *s = server_of(c);
    quic_conn_notify(c, QUIC_APP_GOING_AWAY);
    quic_handoff_forget(s, c);
    if (c->conn != NULL) {
        size_t n = ngtcp2_conn_get_num_scid(c->conn);
        ngtcp2_cid *ids = calloc(n ? n : 1, sizeof(*ids));
        if (ids != NULL) {
            ngtcp2_conn_get_scid(c->conn, ids);
            for (size_t i = 0; i < n; i++) {
                cid_table_remove(s->cids, ids[i].data, ids[i].datalen, c);
                if (c->handed)
                    quic_handoff_cid_gone(s, c, &ids[i]);
            }
            free(ids);
        }
    }
    quic_conn_fini(c);
    /* Any CID still naming this connection (e.g. one ngtcp2 retired but
     * we never saw removed) must not dangle: the odcid is removed here; the
     * others were removed through remove_connection_id or above. */
    cid_table_remove(s->cids, c->odcid.data, c->odcid.datalen, c);
    if (c->handed && c->odcid.datalen > 0)
        quic_handoff_cid_gone(s, c, &c->odcid);
    quic_server_slot_release(s, c);
    stat_inc(s->ep.st, QS(conns_closed));
    free(c);
}

void quic_server_slot_release(struct quic_server *s, struct quic_conn *c)
{
    struct conn_slot *sl = &s->slots[c->slot];
    sl->c = NULL;
    sl->gen++;
    sl->next_free = s->free_head;
    s->free_head = c->slot;
    s->live--;
    stat_dec(s->ep.st, QS(conns_open));
}

/* Grows the slot table when it is full and the live limit (raised by a
 * reload, quic_shared_set_limits) allows more: doubles it, up to the limit.
 * Only this server's worker reads or writes s->slots (connections keep
 * their slot index, never a pointer into the table, and no caller holds a
 * struct conn_slot * across conn_accept), so a realloc here is safe without
 * telling anyone. Returns 0, or ROOST_EFULL (at the limit) / ROOST_ENOMEM. */
static int slots_grow(struct quic_server *s)
{
    uint64_t cap = atomic_load_explicit(&s->sh->live_max_conns, memory_order_relaxed);
    if (cap > UINT32_MAX - 1u)
        cap = UINT32_MAX - 1u; /* UINT32_MAX ends the free list */
    if (s->n_slots >= cap)
        return ROOST_EFULL;
    uint64_t n = (uint64_t)s->n_slots * 2u;
    if (n > cap)
        n = cap;
    if (n > SIZE_MAX / sizeof(*s->slots))
        return ROOST_ENOMEM;
    struct conn_slot *t = realloc(s->slots, (size_t)n * sizeof(*t));
    if (t == NULL)
        return ROOST_ENOMEM;
    for (uint64_t i = s->n_slots; i < n; i++)
        t[i] = (struct conn_slot){.next_free = i + 1 < n ? (uint32_t)(i + 1) : s->free_head};
    s->free_head = s->n_slots;
    s->slots = t;
    s->n_slots = (uint32_t)n;
    return 0;
}

int quic_server_slot_take(struct quic_server *s, struct quic_conn *c)
{
    if (s->free_head == UINT32_MAX) {
        int rc = slots_grow(s);
        if (rc != 0)
            return rc;
    }
    c->slot = s->free_head;
    struct conn_slot *sl = &s->slots[c->slot];
    s->free_head = sl->next_free;
    sl->c = c;
    c->gen = sl->gen;
    s->live++;
    stat_inc(s->ep.st, QS(conns_open));
    return 0;
}

/* Creates the connection for a client Initial (hd) that passed admission;
 * ocid: the original DCID a Retry token vouched for, or NULL. Returns NULL
 * when the slot table is full (and cannot grow) or setup failed (nothing
 * to tell the app). */
static struct quic_conn *conn_accept(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                                     const ngtcp2_cid *ocid, const struct udp_addr *remote,
                                     const struct udp_addr *local)
{
    struct quic_shared *sh = s->sh;
    if (s->free_head == UINT32_MAX && slots_grow(s) != 0)
        return NULL;
    struct quic_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    /* Take a slot now so conn_free can release it on any failure below. */
    (void)quic_server_slot_take(s, c);
    c->closed_cb = true; /* nothing to tell the application if setup fails */
    c->remote = *remote;
    c->local = *local;
    c->odcid = hd->dcid;
    if (quic_conn_init(c, &s->ep) < 0)
        goto fail;
    c->half_open = true;
    s->ep.half_open++;
    stat_inc(s->ep.st, QS(conns_half_open));

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
    /* PMTUD stays on: ngtcp2 0.12 starts it after validating a migrated
     * path even when no_pmtud is set, and then aborts on its own assertion
     * (`!conn->local.settings.no_pmtud` in conn_start_pmtud; fixed upstream
     * later). A client whose NAT rebinds must never abort the relay. */
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
    ngtcp2_path path;
    quic_path_init(&path, &c->local, &c->remote);
    if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path, hd->version, &s->ep.callbacks,
                               &settings, &params, NULL, c) != 0) {
        c->conn = NULL;
        goto fail;
    }
    if (quic_server_tls_init(c, sh) < 0)
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

static void set_epollout(struct quic_server *s, bool on)
{
    if (s->epollout == on)
        return;
    if (worker_fd_mod(s->w, s->fd, EPOLLIN | (on ? EPOLLOUT : 0)) == 0)
        s->epollout = on;
}

static void process_dirty(struct quic_server *s)
{
    while (s->ep.dirty_head != NULL) {
        struct quic_conn *c = s->ep.dirty_head;
        s->ep.dirty_head = c->dirty_next;
        c->dirty = false;
        if (c->state == CS_DEAD) {
            conn_free(c);
            continue;
        }
        if (!quic_conn_write(c)) {
            quic_conn_mark_dirty(c); /* batch blocked: retry on EPOLLOUT */
            break;
        }
        /* quic_conn_write may have ended it (set_dead re-marks it dirty). */
    }
    int rc = udp_tx_flush(s->tx);
    if (s->tx->calls != s->tx_calls) {
        stat_add(s->ep.st, QS(sendmmsg_calls), s->tx->calls - s->tx_calls);
        s->tx_calls = s->tx->calls;
    }
    set_epollout(s, rc == ROOST_EAGAIN || s->ep.dirty_head != NULL);
    if (rc == 0 && s->ep.dirty_head != NULL)
        worker_wake_self(s->w);
}

void quic_server_turn_end(struct quic_server *s)
{
    process_dirty(s);
    if (s->handoff_head != NULL)
        quic_handoff_turn_end(s);
}

struct fwd_hdr {
    struct udp_addr remote, local;
    unsigned hops; /* forwards before this one */
};

/* A packet is forwarded at most this many times (hand-off chains are
 * finite; the bound is a backstop). */
#define FWD_MAX_HOPS 8

void quic_server_forward(struct quic_server *s, unsigned owner, const uint8_t *data, size_t len,
                         const struct udp_addr *remote, const struct udp_addr *local, unsigned hops)
{
    struct buf *b = buf_new((uint32_t)(sizeof(struct fwd_hdr) + len));
    if (b == NULL) {
        stat_inc(s->ep.st, QS(fwd_dropped));
        return;
    }
    struct fwd_hdr h = {.remote = *remote, .local = *local, .hops = hops};
    memcpy(b->data, &h, sizeof(h));
    memcpy(b->data + sizeof(h), data, len);
    b->len = (uint32_t)(sizeof(h) + len);
    struct worker_msg m = {.type = QUIC_MSG_FWD};
    m.u.ptr[0] = b;
    /* Media class: a full ring drops (a lost packet, recovered by QUIC). */
    if (worker_send(s->w, owner, &m, WORKER_MSG_MEDIA) != 0) {
        buf_unref(b);
        stat_inc(s->ep.st, QS(fwd_dropped));
        return;
    }
    stat_inc(s->ep.st, QS(fwd_out));
}

static void new_connection(struct quic_server *s, const uint8_t *data, size_t len,
                           const struct udp_addr *remote, const struct udp_addr *local)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) {
        stat_inc(s->ep.st, QS(malformed));
        return;
    }
    ngtcp2_cid ocid, *pocid = NULL;
    if (hd.token.len > 0 && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
        if (ngtcp2_crypto_verify_retry_token(
                &ocid, hd.token.base, hd.token.len, s->sh->retry_secret, SECRET_LEN, hd.version,
                &remote->u.sa, remote->len, &hd.dcid, RETRY_TOKEN_TIMEOUT, now_ns(s)) != 0) {
            stat_inc(s->ep.st, QS(handshakes_failed)); /* a failed Initial */
            quic_stateless_close(s, &hd, NGTCP2_INVALID_TOKEN, remote, local);
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
        stat_inc(s->ep.st, QS(refused_draining));
        quic_stateless_close(s, &hd, NGTCP2_CONNECTION_REFUSED, remote, local);
        return;
    }
    if (pocid == NULL) {
        bool over = s->ep.half_open >=
                    atomic_load_explicit(&s->sh->live_retry_threshold, memory_order_relaxed);
        if (over)
            stat_inc(s->ep.st, QS(retry_half_open));
        else if (!s->sh->cfg.force_retry && !tbucket_take(&s->sh->tb_hs, now_ns(s))) {
            stat_inc(s->ep.st, QS(retry_rate));
            over = true;
        }
        if (over || s->sh->cfg.force_retry) {
            quic_stateless_retry(s, &hd, remote, local);
            return;
        }
    }
    if (s->live >= atomic_load_explicit(&s->sh->live_max_conns, memory_order_relaxed)) {
        stat_inc(s->ep.st, QS(refused_full));
        quic_stateless_close(s, &hd, NGTCP2_CONNECTION_REFUSED, remote, local);
        return;
    }
    struct quic_conn *c = conn_accept(s, &hd, pocid, remote, local);
    if (c == NULL) {
        stat_inc(s->ep.st, QS(handshakes_failed));
        return;
    }
    quic_conn_read(c, data, len, remote, local);
}

/* The per-address receive budget of remote's IP address (any port).
 * Returns false when the packet is over it (dropped, counted). */
static bool addr_budget_ok(struct quic_server *s, size_t len, const struct udp_addr *remote)
{
    if (s->addrs.e == NULL)
        return true;
    uint8_t a[16] = {0};
    if (remote->u.sa.sa_family == AF_INET6) {
        memcpy(a, &remote->u.in6.sin6_addr, 16);
    } else {
        a[10] = a[11] = 0xff; /* IPv4-mapped */
        memcpy(a + 12, &remote->u.in.sin_addr, 4);
    }
    uint64_t ev = s->addrs.evictions;
    bool ok = budget_addr_take(&s->addrs, a, now_ns(s), len);
    if (s->addrs.evictions != ev)
        stat_inc(s->ep.st, QS(budget_addr_evictions));
    if (!ok)
        stat_inc(s->ep.st, QS(budget_dropped_addr));
    return ok;
}

/* The connection's receive budget, before its packet is decrypted. Over
 * it, a live connection is closed with RATE_LIMITED; the packet (and every
 * later one over budget) is dropped unread, so a closing connection spends
 * no decryption and sends no close for them. */
static bool conn_budget_ok(struct quic_server *s, struct quic_conn *c, size_t len)
{
    if (budget_take(&c->rxb, &s->conn_lim, now_ns(s), len))
        return true;
    if (quic_conn_live(c)) {
        stat_inc(s->ep.st, QS(budget_closed));
        quic_conn_close(c, QUIC_APP_RATE_LIMITED, "receive budget exceeded");
    } else {
        stat_inc(s->ep.st, QS(budget_dropped_conn));
    }
    return false;
}

static void handle_packet(struct quic_server *s, const uint8_t *data, size_t len,
                          const struct udp_addr *remote, const struct udp_addr *local,
                          unsigned hops)
{
    bool forwarded = hops > 0;
    stat_inc(s->ep.st, QS(pkts_in));
    stat_add(s->ep.st, QS(bytes_in), (uint64_t)len);
    /* A forwarded packet was charged where it arrived. */
    if (!forwarded && !addr_budget_ok(s, len, remote))
        return;
    if (len == 0) {
        stat_inc(s->ep.st, QS(malformed));
        return;
    }
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, QUIC_CID_LEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        /* Only a full-size Initial earns an answer (anti-amplification). */
        if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
            quic_stateless_vn(s, &vc, remote, local);
        else
            stat_inc(s->ep.st, QS(malformed));
        return;
    }
    if (rv != 0) {
        stat_inc(s->ep.st, QS(malformed));
        return;
    }
    struct quic_conn *c = cid_table_get(s->cids, vc.dcid, vc.dcidlen);
    if (c != NULL) {
        if (budget_lim_on(&s->conn_lim) && !conn_budget_ok(s, c, len))
            return;
        quic_conn_read(c, data, len, remote, local);
        return;
    }
    /* A connection that was handed off: where its CID went. */
    int moved = quic_handoff_fwd_lookup(s, vc.dcid, vc.dcidlen);
    if (moved >= 0) {
        if (hops < FWD_MAX_HOPS)
            quic_server_forward(s, (unsigned)moved, data, len, remote, local, hops + 1);
        else
            stat_inc(s->ep.st, QS(fwd_dropped));
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
            quic_server_forward(s, (unsigned)owner, data, len, remote, local, 1);
            return;
        }
        stat_inc(s->ep.st, QS(unknown_cid));
        return;
    }
    if (owner < 0 || (unsigned)owner >= s->n_workers) {
        stat_inc(s->ep.st, QS(malformed));
        return;
    }
    if ((unsigned)owner != s->id) {
        /* Never reset a CID that names another worker: hand it over. */
        if (!forwarded)
            quic_server_forward(s, (unsigned)owner, data, len, remote, local, 1);
        else
            stat_inc(s->ep.st, QS(unknown_cid));
        return;
    }
    stat_inc(s->ep.st, QS(unknown_cid));
    quic_stateless_reset(s, &vc, len, remote, local);
}

static void on_socket(struct worker *w, int fd, uint32_t events, void *arg)
{
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
                stat_inc(s->ep.st, QS(sock_errors));
            break;
        }
        for (int i = 0; i < n; i++) {
            worker_set_ingress(w, s->rx->rx_ns[i]); /* latency metrics */
            handle_packet(s, s->rx->data[i], s->rx->msgs[i].msg_len, &s->rx->remote[i],
                          &s->rx->local[i], 0);
        }
        worker_set_ingress(w, 0);
        /* A batch short of full emptied the socket: no second receive call
         * to learn so (EPOLLIN is level-triggered: what came meanwhile is
         * read next turn). */
        if (n < UDP_BATCH)
            break;
        /* Under a flood, keep live connections moving between batches. */
        if (++batches % RX_BATCHES_PER_FLUSH == 0)
            process_dirty(s);
    }
}

/* QUIC_MSG_FIRST..LAST, registered with the runtime by quic_server_new. */
static void server_on_msg(struct worker *w, const struct worker_msg *msg, void *arg)
{
    (void)w;
    struct quic_server *s = arg;
    if (msg->type == QUIC_MSG_FWD) {
        struct buf *b = msg->u.ptr[0];
        struct fwd_hdr h;
        memcpy(&h, b->data, sizeof(h));
        stat_inc(s->ep.st, QS(fwd_in));
        handle_packet(s, b->data + sizeof(h), b->len - sizeof(h), &h.remote, &h.local,
                      h.hops > 0 ? h.hops : 1);
        buf_unref(b);
        return;
    }
    quic_handoff_on_msg(s, msg);
}

/* A QUIC_MSG_* no worker will handle (shutdown): release its buffer. */
static void server_discard(const struct worker_msg *msg)
{
    if (msg->type == QUIC_MSG_FWD)
        buf_unref(msg->u.ptr[0]);
    else
        quic_handoff_discard(msg);
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
    quic_ep_init(&s->ep, QUIC_ROLE_SERVER, ops, arg, sh->cfg.control_queue_max,
                 sh->cfg.dgram_queue_max);
    if (sh->cfg.dgram_max_age_ns > 0)
        s->ep.dgram_max_age_ns = sh->cfg.dgram_max_age_ns;
    s->ep.w = w;
    s->ep.timers = worker_timers(w);
    ngtcp2_callbacks *cb = &s->ep.callbacks;
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    cb->stream_open = stream_open_cb;
    cb->get_new_connection_id = get_new_cid_cb;
    cb->remove_connection_id = remove_cid_cb;
    s->id = id;
    s->n_workers = sh->cfg.n_workers;
    s->ep.st = sh->stats[id].st;
    s->fd = -1;
    s->rx = malloc(sizeof(*s->rx));
    s->tx = malloc(sizeof(*s->tx));
    s->n_slots = sh->cfg.max_conns;
    s->slots = calloc(s->n_slots, sizeof(*s->slots));
    if (s->rx == NULL || s->tx == NULL || s->slots == NULL)
        goto fail;
    udp_rx_init(s->rx);
    for (uint32_t i = 0; i < s->n_slots; i++)
        s->slots[i].next_free = i + 1 < s->n_slots ? i + 1 : UINT32_MAX;
    s->free_head = 0;
    rc = cid_table_new(&s->cids);
    if (rc < 0)
        goto fail;
    rc = quic_handoff_server_init(s);
    if (rc < 0)
        goto fail;
    budget_lim_init(&s->conn_lim, sh->cfg.conn_pkt_rate, sh->cfg.conn_byte_rate);
    struct budget_lim alim;
    budget_lim_init(&alim, sh->cfg.addr_pkt_rate, sh->cfg.addr_byte_rate);
    rc = budget_addr_init(&s->addrs, &alim);
    if (rc < 0)
        goto fail;
    s->fd = sh->fds[id];
    udp_tx_init(s->tx, s->fd);
    s->ep.tx = s->tx;
    /* Forwarded packets for this worker's CIDs arrive as ring messages. A
     * start that fails after this aborts the pool, so the handler never
     * sees a message with the freed server (discard takes no server). */
    struct worker_handler h = {.first = QUIC_MSG_FIRST,
                               .last = QUIC_MSG_LAST,
                               .on_msg = server_on_msg,
                               .discard = server_discard};
    rc = worker_handle(w, &h, s);
    if (rc < 0)
        goto fail;
    rc = worker_fd_add(w, s->fd, EPOLLIN, on_socket, s);
    if (rc < 0) {
        s->fd = -1;
        goto fail;
    }
    sh->fds[id] = -1; /* the server owns it now */
    *out = s;
    return 0;
fail:
    budget_addr_fini(&s->addrs);
    cid_table_del(s->cids);
    cid_table_del(s->fwd);
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
    s->stopping = true;
    quic_handoff_server_del(s); /* held connections are adopted, closed below */
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct quic_conn *c = s->slots[i].c;
        if (c == NULL)
            continue;
        if (quic_conn_live(c))
            quic_conn_close(c, QUIC_APP_GOING_AWAY, NULL);
        if (c->state == CS_CLOSE_PENDING)
            (void)quic_conn_write(c);
    }
    (void)udp_tx_flush(s->tx);
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].c != NULL)
            conn_free(s->slots[i].c);
    s->ep.dirty_head = NULL;
    if (s->fd >= 0) {
        worker_fd_del(s->w, s->fd);
        close(s->fd);
    }
    cid_table_del(s->cids);
    cid_table_del(s->fwd);
    budget_addr_fini(&s->addrs);
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
    struct quic_handle h = {.worker = (uint16_t)server_of(c)->id, .slot = c->slot, .gen = c->gen};
    return h;
}

struct quic_server *quic_conn_server(const struct quic_conn *c)
{
    return server_of(c);
}

/* ------------------------------------------------- ALPN and exporter */

bool quic_conn_alpn_is(const struct quic_conn *c, const char *alpn)
{
    gnutls_datum_t p;
    if (c->tls == NULL || gnutls_alpn_get_selected_protocol(c->tls, &p) != 0)
        return false;
    size_t n = strlen(alpn);
    return p.size == n && memcmp(p.data, alpn, n) == 0;
}

int quic_conn_export(const struct quic_conn *c, const char *label, uint8_t *out, size_t len)
{
    if (c->tls == NULL ||
        gnutls_prf_rfc5705(c->tls, strlen(label), label, 0, NULL, len, (char *)out) != 0)
        return ROOST_ECRYPTO;
    return 0;
}
