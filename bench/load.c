#include "bench/load.h"
#include "bench/load_int.h"
#include "bench/participant.h"
#include "bench/procstat.h"
#include "bench/verdict.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/floor.h"
#include "bench/metrics.h"
#include "bench/netem.h"
#include "client/client_int.h"
#include "client/client.h"
#include "core/be.h"
#include "core/error.h"
#include "core/timer.h"
#include "proto/media.h"
#include "quic/client.h"
#include "quic/quic.h"

/* ------------------------------------------------------------- floor */

int load_floor_connect(struct lthread *t, struct bp *p)
{
    const struct load *L = t->L;
    int fd = socket(L->dest.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return ROOST_ESYS;
    int buf = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    if (connect(fd, (const struct sockaddr *)&L->dest.ss, L->dest.len) == -1) {
        close(fd);
        return ROOST_ESYS;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        close(fd);
        return ROOST_ESYS;
    }
    p->fd = fd;
    uint8_t j[FLOOR_HDR_LEN] = {FLOOR_JOIN};
    be_put32(j + 1, p->room);
    be_put32(j + 5, p->member);
    p->st = BP_JOINING;
    p->t_join = mono_ns();
    return load_floor_send(p, j, sizeof(j));
}

int load_floor_send(struct bp *p, const uint8_t *d, size_t len)
{
    struct lthread *t = p->t;
    if (t->nm != NULL) {
        int rc = netem_push(t->nm, NETEM_OUT, p, &p->nmf, d, len, mono_ns());
        return rc < 0 ? ROOST_ESYS : 0; /* lost on the path: sent, as far as the sender knows */
    }
    return send(p->fd, d, len, MSG_DONTWAIT) == (ssize_t)len ? 0 : ROOST_ESYS;
}

/* One datagram from the floor to p, at time now. */
static void f_handle(struct bp *p, const uint8_t *d, size_t len, uint64_t now)
{
    if (len == 5 && d[0] == FLOOR_JOINED) {
        p->pid = be_get32(d + 1);
        participant_joined(p, now, true);
    } else if (len >= FLOOR_HDR_LEN + MEDIA_C2R_HDR_LEN && d[0] == FLOOR_MEDIA) {
        struct media_hdr h;
        int off = media_c2r_decode(d + FLOOR_HDR_LEN, len - FLOOR_HDR_LEN, &h);
        if (off < 0) {
            p->foreign++;
            return;
        }
        size_t hl = FLOOR_HDR_LEN + (size_t)off;
        participant_rx_frame(p, h.seq, d + hl, len - hl, now);
    } else {
        p->foreign++;
    }
}

void load_floor_read(struct lthread *t, struct bp *p)
{
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    for (;;) {
        for (unsigned i = 0; i < RX_BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = t->rbuf[i], .iov_len = RX_MAX};
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(p->fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        uint64_t now = mono_ns();
        for (int i = 0; i < n; i++) {
            if (t->nm != NULL)
                (void)netem_push(t->nm, NETEM_IN, p, &p->nmf, t->rbuf[i], msgs[i].msg_len, now);
            else
                f_handle(p, t->rbuf[i], msgs[i].msg_len, now);
        }
        if (n < RX_BATCH)
            return;
    }
}

/* ------------------------------------------------------ path emulation */

/* The participant of a QUIC connection: quic_conn -> roost_conn -> bp. */
static struct bp *bp_of(struct quic_conn *q)
{
    return roost_conn_user(quic_conn_user(q));
}

static void q_path_out(void *arg, struct quic_conn *q, const uint8_t *d, size_t len)
{
    struct lthread *t = arg;
    (void)netem_push(t->nm, NETEM_OUT, q, &bp_of(q)->nmf, d, len, mono_ns());
}

static void q_path_in(void *arg, struct quic_conn *q, const uint8_t *d, size_t len)
{
    struct lthread *t = arg;
    (void)netem_push(t->nm, NETEM_IN, q, &bp_of(q)->nmf, d, len, mono_ns());
}

static void q_path_gone(void *arg, struct quic_conn *q)
{
    struct lthread *t = arg;
    netem_forget(t->nm, q);
}

static const struct quic_client_path q_path = {
    .out = q_path_out,
    .in = q_path_in,
    .gone = q_path_gone,
};

/* A datagram's wait on the emulated path is over. */
static void path_release(void *arg, unsigned dir, void *ctx, const uint8_t *d, size_t len,
                         uint64_t now)
{
    struct lthread *t = arg;
    if (t->L->cfg->mode == LOAD_QUIC) {
        if (dir == NETEM_OUT)
            quic_client_emit(ctx, d, len);
        else
            (void)quic_client_deliver(ctx, d, len, now);
        return;
    }
    struct bp *p = ctx;
    if (dir == NETEM_OUT)
        (void)send(p->fd, d, len, MSG_DONTWAIT);
    else
        f_handle(p, d, len, now);
}

/* ------------------------------------------------------------ run */

static void free_thread(struct lthread *t)
{
    if (t == NULL)
        return;
    for (uint32_t i = 0; t->p != NULL && i < t->n_base + t->n_storm; i++) {
        free(t->p[i].rx);
        wscl_free(t->p[i].ws);
        if (t->p[i].fd >= 0)
            close(t->p[i].fd);
    }
    if (t->nm != NULL)
        netem_flush(t->nm, NETEM_OUT, mono_ns());
    roost_client_del(t->cl);
    wscl_tls_del(t->wstls);
    netem_del(t->nm);
    if (t->epfd >= 0)
        close(t->epfd);
    timers_del(t->timers);
    free(t->lat_pair);
    free(t->p);
    free(t->rxs);
    free(t->txs);
    free(t);
}

static int make_thread(struct load *L, unsigned id, uint32_t n_storm_total, struct lthread **out)
{
    const struct load_config *cfg = L->cfg;
    int rc = ROOST_ENOMEM;
    struct lthread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return rc;
    t->L = L;
    t->id = id;
    t->epfd = -1;
    t->cpu = -1;
    hist_init(&t->lat);
    hist_init(&t->join);
    hist_init(&t->sjoin);
    for (int i = 0; i < LOAD_TR_N; i++)
        hist_init(&t->lat_tr[i]);
    uint32_t my_rooms = 0;
    for (uint32_t r = id; r < cfg->rooms; r += cfg->threads)
        my_rooms++;
    t->n_base = my_rooms * cfg->size;
    for (uint32_t j = 0; j < n_storm_total; j++)
        if ((cfg->rooms + j / cfg->size) % cfg->threads == id)
            t->n_storm++;
    uint32_t total = t->n_base + t->n_storm;
    t->p = calloc(total ? total : 1, sizeof(*t->p));
    if (t->p == NULL || timers_new(&t->timers) != 0)
        goto fail;
    uint32_t k = 0;
    for (uint32_t r = id; r < cfg->rooms; r += cfg->threads) {
        for (uint32_t m = 0; m < cfg->size; m++, k++) {
            struct bp *p = &t->p[k];
            p->t = t;
            p->fd = -1;
            p->room = r;
            p->member = m;
            p->idx = r * cfg->size + m;
            p->relay = (uint8_t)load_relay_of(L->n_rl, r, m);
            p->speaker = m < cfg->speakers;
            p->is_ws = cfg->mode == LOAD_QUIC && m >= cfg->size - cfg->ws_per_room;
            p->rx = calloc(cfg->speakers ? cfg->speakers : 1, sizeof(*p->rx));
            if (p->rx == NULL)
                goto fail;
            timer_init(&p->tm, participant_on_slot, p);
            struct talk_config tc = cfg->talk;
            tc.frame_ns = cfg->frame_ns;
            (void)talk_init(&p->talk, &tc, p->idx);
            p->pos = p->idx * 7919u; /* different speakers, different frames */
        }
    }
    for (uint32_t j = 0; j < n_storm_total; j++) {
        uint32_t room = cfg->rooms + j / cfg->size;
        if (room % cfg->threads != id)
            continue;
        struct bp *p = &t->p[k++];
        p->t = t;
        p->fd = -1;
        p->room = room;
        p->member = j % cfg->size;
        p->idx = room * cfg->size + p->member;
        p->relay = (uint8_t)load_relay_of(L->n_rl, room, p->member);
        p->storm = true;
    }
    if (L->n_rl > 1) {
        t->lat_pair = malloc(sizeof(*t->lat_pair) * L->n_rl * L->n_rl);
        if (t->lat_pair == NULL)
            goto fail;
        for (unsigned i = 0; i < L->n_rl * L->n_rl; i++)
            hist_init(&t->lat_pair[i]);
    }
    if (netem_active(&cfg->path)) {
        struct netem_config nc = cfg->path;
        nc.seed += id; /* each thread its own draws, reproducible */
        rc = netem_new(&t->nm, &nc, path_release, t);
        if (rc != 0)
            goto fail;
    }
    if (cfg->mode == LOAD_QUIC) {
        struct roost_client_config cc = {
            .ca_file = cfg->ca_file,
            .pinned_cert = cfg->pinned_cert,
            .server_name = cfg->server_name,
            .handshake_timeout_ns = cfg->join_timeout_ns,
        };
        rc = roost_client_new(&t->cl, &cc, &participant_quic_cbs, NULL);
        if (rc != 0)
            goto fail;
        roost_client_set_ack_thresh(t->cl, ROOST_ACK_THRESH_MEDIA); /* PROTOCOL.md §13 */
        if (t->nm != NULL)
            quic_client_set_path(client_quic(t->cl), &q_path, t);
        if (cfg->ws_per_room > 0 && t->n_base > 0) {
            /* One epoll set for the QUIC client (data.ptr NULL) and the
             * WebSocket sockets (data.ptr: the participant). */
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
            t->epfd = epoll_create1(EPOLL_CLOEXEC);
            if (t->epfd == -1 ||
                epoll_ctl(t->epfd, EPOLL_CTL_ADD, roost_client_fd(t->cl), &ev) == -1) {
                rc = ROOST_ESYS;
                goto fail;
            }
            if (!cfg->ws_plain) {
                rc = wscl_tls_new(&t->wstls, cfg->ca_file, cfg->pinned_cert, cfg->server_name);
                if (rc != 0)
                    goto fail;
            }
        }
    } else {
        t->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (t->epfd == -1) {
            rc = ROOST_ESYS;
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    free_thread(t);
    return rc;
}

/* The per-relay figures of a cluster run (--relays). */
static void aggregate_relays(struct load *L, struct load_result *res)
{
    const struct load_config *cfg = L->cfg;
    unsigned n = L->n_rl;
    res->n_relays = n;
    for (unsigned i = 0; i < cfg->threads; i++) {
        const struct lthread *t = L->t[i];
        for (unsigned k = 0; k < n; k++) {
            res->relays[k].joins_ok += t->rl_joins_ok[k];
            res->relays[k].joins_failed += t->rl_joins_failed[k];
            res->relays[k].closed_early += t->rl_closed_early[k];
        }
        if (t->lat_pair != NULL && res->pair_latency != NULL)
            for (unsigned k = 0; k < n * n; k++)
                hist_merge(&res->pair_latency[k], &t->lat_pair[k]);
    }
    for (uint32_t i = 0; i < res->n_rx; i++) {
        struct load_relay_stat *x = &res->relays[res->rx[i].relay];
        x->participants++;
        x->rx_expected += res->rx[i].expected;
        x->rx_delivered += res->rx[i].delivered;
        x->lost += res->rx[i].lost;
    }
    /* Round robin: a room of size s covers min(s, n) relays. */
    uint64_t span = cfg->size < n ? cfg->size : n;
    for (uint32_t i = 0; i < res->n_tx; i++) {
        struct load_relay_stat *x = &res->relays[res->tx[i].relay];
        x->speakers++;
        x->sent += res->tx[i].sent;
        res->trunk_ideal += res->tx[i].sent * (span - 1);
    }
}

static int aggregate(struct load *L, struct load_result *res)
{
    const struct load_config *cfg = L->cfg;
    uint32_t n_rx = 0, n_tx = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        struct lthread *t = L->t[i];
        if (t->rxs == NULL || t->txs == NULL)
            return ROOST_ENOMEM;
        n_rx += t->n_rxs;
        n_tx += t->n_txs;
    }
    res->rx = calloc(n_rx ? n_rx : 1, sizeof(*res->rx));
    res->tx = calloc(n_tx ? n_tx : 1, sizeof(*res->tx));
    res->threads = calloc(cfg->threads, sizeof(*res->threads));
    if (res->rx == NULL || res->tx == NULL || res->threads == NULL)
        return ROOST_ENOMEM;
    res->n_threads = cfg->threads;
    for (unsigned i = 0; i < cfg->threads; i++) {
        struct lthread *t = L->t[i];
        memcpy(res->rx + res->n_rx, t->rxs, t->n_rxs * sizeof(*t->rxs));
        memcpy(res->tx + res->n_tx, t->txs, t->n_txs * sizeof(*t->txs));
        res->n_rx += t->n_rxs;
        res->n_tx += t->n_txs;
        res->threads[i] = t->ts;
        hist_merge(res->latency, &t->lat);
        hist_merge(res->join, &t->join);
        hist_merge(res->storm_join, &t->sjoin);
        res->joins_ok += t->joins_ok;
        res->joins_failed += t->joins_failed;
        res->closed_early += t->closed_early;
        res->storm_ok += t->storm_ok;
        res->storm_failed += t->storm_failed;
        for (unsigned e = 0; e < t->n_ends; e++)
            verdict_end_add(res->ends, &res->n_ends, t->ends[e].kind, t->ends[e].joined,
                            t->ends[e].code, t->ends[e].n);
        for (uint32_t j = 0; j < t->n_base; j++) {
            res->dup += t->p[j].dup;
            res->reordered += t->p[j].reordered;
            res->foreign += t->p[j].foreign;
        }
        if (t->nm != NULL) {
            struct netem_stats ns;
            netem_stats(t->nm, &ns);
            for (int d = 0; d < 2; d++) {
                res->path_stats.queued[d] += ns.queued[d];
                res->path_stats.lost[d] += ns.lost[d];
                res->path_stats.released[d] += ns.released[d];
            }
            res->path_stats.dropped += ns.dropped;
            res->path_stats.max_held += ns.max_held;
        }
        if (res->server_name[0] == '\0' && t->server_name[0] != '\0') {
            memcpy(res->server_name, t->server_name, sizeof(res->server_name));
            res->max_datagram = t->max_datagram;
        }
    }
    for (uint32_t i = 0; i < res->n_tx; i++) {
        res->target += res->tx[i].target;
        res->sent += res->tx[i].sent;
        res->skipped += res->tx[i].skipped;
        res->failed += res->tx[i].failed;
    }
    for (uint32_t i = 0; i < res->n_rx; i++) {
        res->expected += res->rx[i].expected;
        res->delivered += res->rx[i].delivered;
        res->lost += res->rx[i].lost;
    }
    for (unsigned i = 0; i < cfg->threads; i++) {
        struct lthread *t = L->t[i];
        for (int k = 0; k < LOAD_TR_N; k++) {
            hist_merge(res->tr[k].latency, &t->lat_tr[k]);
            res->tr[k].joins_ok += t->tr_joins_ok[k];
            res->tr[k].joins_failed += t->tr_joins_failed[k];
            res->tr[k].closed_early += t->tr_closed_early[k];
        }
    }
    for (uint32_t i = 0; i < res->n_tx; i++) {
        struct load_transport_stat *k = &res->tr[res->tx[i].transport];
        k->speakers++;
        k->target += res->tx[i].target;
        k->sent += res->tx[i].sent;
        k->skipped += res->tx[i].skipped;
        k->failed += res->tx[i].failed;
        k->tx_expected += res->tx[i].expected;
        k->tx_delivered += res->tx[i].delivered;
    }
    for (uint32_t i = 0; i < res->n_rx; i++) {
        struct load_transport_stat *k = &res->tr[res->rx[i].transport];
        k->participants++;
        k->rx_expected += res->rx[i].expected;
        k->rx_delivered += res->rx[i].delivered;
        k->lost += res->rx[i].lost;
    }
    if (cfg->n_relays > 0)
        aggregate_relays(L, res);
    res->send_ratio = res->target ? (double)res->sent / (double)res->target : 1.0;
    res->schedule_ratio =
        res->target ? (double)(res->target - res->skipped) / (double)res->target : 1.0;
    res->loss_ratio = res->expected ? (double)res->lost / (double)res->expected : 0.0;
    verdict_judge(cfg, res);
    return 0;
}

/* A cluster run's relays after the window: each one's CPU, whether it is
 * gone, its /metrics; the totals are the sums (known when known for every
 * relay). */
static void relays_after(const struct load_config *cfg, const struct metrics_sample *ms0,
                         struct metrics_sample *ms1, const double *cpu0, struct load_result *res)
{
    bool cpu_known = true, admins = true;
    double cpu = 0;
    struct metrics_delta *sum = &res->server_counters;
    memset(sum, 0, sizeof(*sum));
    sum->ok = true;
    for (int f = 0; f < METRICS_N; f++)
        sum->have[f] = true;
    for (unsigned k = 0; k < cfg->n_relays; k++) {
        const struct load_relay *x = &cfg->relays[k];
        struct load_relay_stat *rs = &res->relays[k];
        if (x->pid > 0 && !procstat_alive(x->pid)) {
            rs->gone = true;
            if (!res->relay_gone)
                res->gone_pid = x->pid;
            res->relay_gone = true;
        }
        double after = x->pid > 0 ? procstat_cpu_s(x->pid) : -1;
        if (cpu0[k] >= 0 && after >= 0)
            rs->cpu_s = after - cpu0[k];
        if (rs->cpu_s < 0)
            cpu_known = false;
        else
            cpu += rs->cpu_s;
        if (x->admin == NULL) {
            admins = false;
            continue;
        }
        memset(&ms1[k], 0, sizeof(ms1[k]));
        if (metrics_scrape(x->admin, 2000, &ms1[k]) != 0)
            ms1[k].ok = false;
        metrics_diff(&ms0[k], &ms1[k], &rs->counters);
        sum->ok = sum->ok && rs->counters.ok;
        for (int f = 0; f < METRICS_N; f++) {
            sum->have[f] = sum->have[f] && rs->counters.have[f];
            sum->v[f] += rs->counters.v[f];
        }
    }
    if (cpu_known)
        res->server_cpu_s = cpu;
    if (!admins)
        memset(sum, 0, sizeof(*sum));
}

int load_run(const struct load_config *cfg, struct load_result *res, char *err, size_t err_len)
{
    int rc = 0;
    struct load L = {.cfg = cfg};
    struct floor_stats fs0 = {0}, fs1 = {0};
    memset(res, 0, sizeof(*res));
    res->server_cpu_s = -1;
    res->server_runq_s = -1;
    res->rss_before_kb = res->rss_joined_kb = -1;
    snprintf(err, err_len, "ok");
    if (cfg->threads == 0 || cfg->rooms == 0 || cfg->size < 2 || cfg->speakers > cfg->size ||
        cfg->frame_ns == 0 || cfg->send_interval_ns == 0 || cfg->audio == NULL ||
        (cfg->mode == LOAD_QUIC && cfg->keys == NULL)) {
        snprintf(err, err_len, "invalid load configuration");
        return ROOST_EINVAL;
    }
    if (cfg->ws_per_room > 0 &&
        (cfg->mode != LOAD_QUIC || cfg->ws_per_room > cfg->size || cfg->ws_host == NULL ||
         cfg->ws_port == 0 || netem_active(&cfg->path))) {
        snprintf(err, err_len,
                 "WebSocket participants need the relay (not the floor), a "
                 "WebSocket address, and no path emulation");
        return ROOST_EINVAL;
    }
    if (cfg->n_relays > LOAD_RELAYS_MAX ||
        (cfg->n_relays > 0 &&
         (cfg->mode != LOAD_QUIC || cfg->relays == NULL || cfg->ws_per_room > 0))) {
        snprintf(err, err_len,
                 "--relays: at most %d relays, QUIC participants only (not the floor, not "
                 "WebSocket)",
                 LOAD_RELAYS_MAX);
        return ROOST_EINVAL;
    }
    if (cfg->n_relays > 0) {
        memcpy(L.rl, cfg->relays, cfg->n_relays * sizeof(*L.rl));
        L.n_rl = cfg->n_relays;
    } else {
        L.rl[0] = (struct load_relay){.host = cfg->host,
                                      .port = cfg->port,
                                      .pid = cfg->relay_pid,
                                      .admin = cfg->metrics_addr};
        L.n_rl = 1;
    }
    for (unsigned k = 0; k < LOAD_RELAYS_MAX; k++)
        res->relays[k].cpu_s = -1;
    if (L.n_rl > 1) {
        res->pair_latency = malloc(sizeof(struct hist) * L.n_rl * L.n_rl);
        if (res->pair_latency == NULL)
            return ROOST_ENOMEM;
        for (unsigned k = 0; k < L.n_rl * L.n_rl; k++)
            hist_init(&res->pair_latency[k]);
    }
    res->latency = malloc(sizeof(struct hist));
    res->join = malloc(sizeof(struct hist));
    res->storm_join = malloc(sizeof(struct hist));
    L.t = calloc(cfg->threads, sizeof(*L.t));
    if (res->latency == NULL || res->join == NULL || res->storm_join == NULL || L.t == NULL) {
        rc = ROOST_ENOMEM;
        goto out;
    }
    hist_init(res->latency);
    hist_init(res->join);
    hist_init(res->storm_join);
    for (int k = 0; k < LOAD_TR_N; k++) {
        res->tr[k].latency = malloc(sizeof(struct hist));
        if (res->tr[k].latency == NULL) {
            rc = ROOST_ENOMEM;
            goto out;
        }
        hist_init(res->tr[k].latency);
    }
    if (cfg->mode == LOAD_FLOOR) {
        struct sockaddr_in *a = (struct sockaddr_in *)&L.dest.ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&L.dest.ss;
        if (inet_pton(AF_INET, cfg->host, &a->sin_addr) == 1) {
            a->sin_family = AF_INET;
            a->sin_port = htons(cfg->port);
            L.dest.len = sizeof(*a);
        } else if (inet_pton(AF_INET6, cfg->host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons(cfg->port);
            L.dest.len = sizeof(*a6);
        } else {
            snprintf(err, err_len, "bad address %s", cfg->host);
            rc = ROOST_EINVAL;
            goto out;
        }
    }
    double dur_s = (double)cfg->duration_ns / 1e9;
    uint32_t n_storm = cfg->storm_rate > 0 ? (uint32_t)(cfg->storm_rate * dur_s) : 0;
    res->storm_planned = n_storm;
    for (unsigned i = 0; i < cfg->threads; i++) {
        rc = make_thread(&L, i, n_storm, &L.t[i]);
        if (rc != 0) {
            snprintf(err, err_len, "bench thread set-up: %s", roost_strerror(rc));
            goto out;
        }
    }
    if (cfg->relay_pid > 0)
        res->rss_before_kb = procstat_rss_kb(cfg->relay_pid);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (unsigned i = 0; i < cfg->threads; i++) {
        struct lthread *t = L.t[i];
        if (pthread_create(&t->th, NULL, load_thread_main, t) != 0) {
            rc = ROOST_ESYS;
            snprintf(err, err_len, "pthread_create failed");
            goto stop;
        }
        t->started = true;
        if (cfg->n_cpus > 0 || (cfg->pin && ncpu > 0)) {
            cpu_set_t set;
            CPU_ZERO(&set);
            t->cpu = cfg->n_cpus ? cfg->cpus[i % cfg->n_cpus] : (int)(i % (unsigned)ncpu);
            CPU_SET(t->cpu, &set);
            if (pthread_setaffinity_np(t->th, sizeof(set), &set) != 0)
                t->cpu = -1;
        }
    }
    /* Joins. */
    uint64_t t0 = mono_ns();
    /* Pairs with the release increments of each thread once all its
     * participants have answered. */
    bool expired = false;
    while (atomic_load_explicit(&L.ready, memory_order_acquire) < cfg->threads) {
        uint64_t el = mono_ns() - t0;
        if (!expired && el > cfg->join_timeout_ns) {
            /* The unanswered joins are a FAIL (LOAD_END_TIMEOUT), not an
             * error: the threads give them up and report ready. Pairs with
             * the acquire load in thread_main. */
            atomic_store_explicit(&L.joins_expired, true, memory_order_release);
            expired = true;
        } else if (expired && el > cfg->join_timeout_ns + 10000000000ull) {
            snprintf(err, err_len, "bench threads did not give up their joins");
            rc = ROOST_ETIMEDOUT;
            goto stop;
        }
        usleep(2000);
    }
    /* Every base participant has answered: joins_ok no longer changes. */
    uint64_t joined = 0;
    for (unsigned i = 0; i < cfg->threads; i++)
        joined += L.t[i]->joins_ok;
    /* Across relays, wait (bounded by the join timeout) until every joined
     * participant has been told of its whole room; a room with a failed
     * join never gets there, and the window then opens at the bound. */
    for (uint64_t p0 = mono_ns(); cfg->n_relays > 1 && mono_ns() - p0 < cfg->join_timeout_ns;) {
        uint64_t seen = 0;
        for (unsigned i = 0; i < cfg->threads; i++)
            seen += atomic_load_explicit(&L.t[i]->presence_ok, memory_order_acquire);
        if (seen >= joined)
            break;
        usleep(2000);
    }
    if (cfg->relay_pid > 0)
        res->rss_joined_kb = procstat_rss_kb(cfg->relay_pid);
    /* The window. */
    struct metrics_sample ms0 = {0}, ms1 = {0};
    if (cfg->metrics_addr != NULL && metrics_scrape(cfg->metrics_addr, 2000, &ms0) != 0)
        ms0.ok = false;
    double cpu_before = cfg->relay_pid > 0 ? procstat_cpu_s(cfg->relay_pid) : -1;
    double runq_before = cfg->relay_pid > 0 ? procstat_runq_s(cfg->relay_pid) : -1;
    struct metrics_sample rms0[LOAD_RELAYS_MAX], rms1[LOAD_RELAYS_MAX];
    double rcpu0[LOAD_RELAYS_MAX];
    for (unsigned k = 0; k < cfg->n_relays; k++) {
        const struct load_relay *x = &cfg->relays[k];
        memset(&rms0[k], 0, sizeof(rms0[k]));
        if (x->admin != NULL && metrics_scrape(x->admin, 2000, &rms0[k]) != 0)
            rms0[k].ok = false;
        rcpu0[k] = x->pid > 0 ? procstat_cpu_s(x->pid) : -1;
    }
    if (cfg->floor != NULL)
        floor_stats(cfg->floor, &fs0);
    L.start_ns = mono_ns() + 20000000;
    /* Nobody joined: nothing to measure, the verdict is already FAIL. */
    res->window_ns = joined > 0 ? cfg->duration_ns : 0;
    L.end_ns = L.start_ns + res->window_ns;
    atomic_store_explicit(&L.phase, PH_MEASURE, memory_order_release);
    uint64_t deadline = L.end_ns + cfg->drain_ns + 10000000000ull;
    /* Pairs with the release increments after each thread froze its stats. */
    while (atomic_load_explicit(&L.done, memory_order_acquire) < cfg->threads) {
        if (mono_ns() > deadline) {
            snprintf(err, err_len, "bench threads did not finish the window");
            rc = ROOST_ETIMEDOUT;
            goto stop;
        }
        usleep(2000);
    }
    if (cfg->relay_pid > 0 && !procstat_alive(cfg->relay_pid))
        res->relay_gone = true;
    if (cfg->relay_pid > 0) {
        double cpu_after = procstat_cpu_s(cfg->relay_pid);
        if (cpu_before >= 0 && cpu_after >= 0)
            res->server_cpu_s = cpu_after - cpu_before;
        double runq_after = procstat_runq_s(cfg->relay_pid);
        if (runq_before >= 0 && runq_after >= runq_before)
            res->server_runq_s = runq_after - runq_before;
    }
    if (cfg->metrics_addr != NULL && metrics_scrape(cfg->metrics_addr, 2000, &ms1) != 0)
        ms1.ok = false;
    if (cfg->metrics_addr != NULL)
        metrics_diff(&ms0, &ms1, &res->server_counters);
    if (cfg->n_relays > 0)
        relays_after(cfg, rms0, rms1, rcpu0, res);
    if (cfg->floor != NULL) {
        floor_stats(cfg->floor, &fs1);
        res->server_cpu_s = (double)(fs1.cpu_ns - fs0.cpu_ns) / 1e9;
        /* The floor's counters, exact: a datagram is a frame, no ACKs. */
        struct metrics_delta *m = &res->server_counters;
        m->ok = true;
        uint64_t v[METRICS_N] = {
            [METRICS_PKTS_IN] = fs1.rx - fs0.rx,      [METRICS_PKTS_OUT] = fs1.tx - fs0.tx,
            [METRICS_DGRAM_IN] = fs1.rx - fs0.rx,     [METRICS_DGRAM_OUT] = fs1.tx - fs0.tx,
            [METRICS_TURNS] = fs1.turns - fs0.turns,  [METRICS_ACK_ONLY_IN] = 0,
            [METRICS_PKTS_WRITTEN] = fs1.tx - fs0.tx,
        };
        for (int f = 0; f < METRICS_N; f++) {
            m->v[f] = v[f];
            m->have[f] = f != METRICS_TRUNK_OUT && f != METRICS_TRUNK_IN; /* no trunks */
        }
    }
stop:
    atomic_store_explicit(&L.phase, PH_CLOSE, memory_order_release);
    for (unsigned i = 0; i < cfg->threads; i++)
        if (L.t[i] != NULL && L.t[i]->started)
            pthread_join(L.t[i]->th, NULL);
    if (rc == 0) {
        rc = aggregate(&L, res);
        if (rc != 0)
            snprintf(err, err_len, "out of memory");
        res->egress_datagrams =
            cfg->floor != NULL ? fs1.tx - fs0.tx : res->delivered; /* see load.h */
    }
out:
    for (unsigned i = 0; L.t != NULL && i < cfg->threads; i++)
        free_thread(L.t[i]);
    free(L.t);
    return rc;
}

void load_result_free(struct load_result *res)
{
    free(res->latency);
    free(res->join);
    free(res->storm_join);
    free(res->rx);
    free(res->tx);
    free(res->threads);
    free(res->pair_latency);
    for (int k = 0; k < LOAD_TR_N; k++)
        free(res->tr[k].latency);
    memset(res, 0, sizeof(*res));
}
