/* The public roost_* client API over the client end of lib/quic
 * (quic/client.h): a roost_conn is a small handle naming a quic_conn, and
 * the callbacks are translated between the two. */
#include "client/client.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

#include "core/error.h"
#include "quic/client.h"

struct roost_client {
    struct quic_client *q;
    const struct roost_client_callbacks *cbs;
    void *arg;
};

struct roost_conn {
    struct quic_conn *q;
    struct roost_client *cl;
    void *user;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------- callbacks */

static int t_open(struct quic_conn *q, void *arg)
{
    struct roost_client *cl = arg;
    if (cl->cbs->on_open != NULL)
        cl->cbs->on_open(quic_conn_user(q), cl->arg);
    return 0;
}

static void t_control(struct quic_conn *q, const uint8_t *body, size_t len, void *arg)
{
    struct roost_client *cl = arg;
    if (cl->cbs->on_control != NULL)
        cl->cbs->on_control(quic_conn_user(q), body, len, cl->arg);
}

static void t_datagram(struct quic_conn *q, const uint8_t *data, size_t len, void *arg)
{
    struct roost_client *cl = arg;
    if (cl->cbs->on_datagram != NULL)
        cl->cbs->on_datagram(quic_conn_user(q), data, len, cl->arg);
}

static void t_close(struct quic_conn *q, uint64_t app_error, void *arg)
{
    (void)app_error; /* the close info says more */
    struct roost_client *cl = arg;
    if (cl->cbs->on_close == NULL)
        return;
    struct quic_close_info qi;
    quic_conn_close_info(q, &qi);
    struct roost_close_info info = {
        .remote = qi.remote,
        .app = qi.app,
        .opened = qi.opened,
        .idle = qi.idle,
        .reset = qi.reset,
        .code = qi.code,
        .liberr = qi.liberr,
    };
    cl->cbs->on_close(quic_conn_user(q), &info, cl->arg);
}

static const struct quic_app_ops trampolines = {
    .on_open = t_open,
    .on_control = t_control,
    .on_datagram = t_datagram,
    .on_close = t_close,
};

/* ---------------------------------------------------------- endpoint */

int roost_client_new(struct roost_client **out, const struct roost_client_config *cfg,
                     const struct roost_client_callbacks *cbs, void *arg)
{
    struct roost_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return ROOST_ENOMEM;
    cl->cbs = cbs;
    cl->arg = arg;
    struct quic_client_config qc = {
        .ca_file = cfg->ca_file,
        .pinned_cert = cfg->pinned_cert,
        .server_name = cfg->server_name,
        .alpn = cfg->alpn,
        .idle_timeout_ns = cfg->idle_timeout_ns,
        .handshake_timeout_ns = cfg->handshake_timeout_ns,
        .control_queue_max = cfg->control_queue_max,
    };
    int rc = quic_client_new(&cl->q, &qc, &trampolines, cl);
    if (rc < 0) {
        free(cl);
        return rc;
    }
    *out = cl;
    return 0;
}

void roost_client_del(struct roost_client *cl)
{
    if (cl == NULL)
        return;
    struct quic_conn *q;
    while ((q = quic_client_first(cl->q)) != NULL)
        roost_conn_del(quic_conn_user(q));
    quic_client_del(cl->q);
    free(cl);
}

int roost_client_connect(struct roost_client *cl, const char *host, uint16_t port, void *user,
                         struct roost_conn **out)
{
    struct roost_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    c->cl = cl;
    c->user = user;
    int rc = quic_client_connect(cl->q, host, port, c, &c->q);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int roost_client_process(struct roost_client *cl, uint64_t now)
{
    return quic_client_process(cl->q, now);
}

uint64_t roost_client_next_timeout(const struct roost_client *cl, uint64_t now)
{
    return quic_client_next_timeout(cl->q, now);
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
        int n = epoll_wait(quic_client_fd(cl->q), &ev, 1, ms);
        if (n == -1 && errno != EINTR)
            return ROOST_ESYS;
        /* The event is level-triggered: process() reads it again. */
    }
    return roost_client_process(cl, mono_ns());
}

int roost_client_fd(const struct roost_client *cl)
{
    return quic_client_fd(cl->q);
}

unsigned roost_client_active(const struct roost_client *cl)
{
    return quic_client_active(cl->q);
}

void roost_client_set_rx_drop(struct roost_client *cl, double share)
{
    quic_client_set_rx_drop(cl->q, share);
}

/* ------------------------------------------------------ conn API */

int roost_conn_send_control(struct roost_conn *c, const uint8_t *body, size_t len)
{
    return quic_conn_send_control(c->q, body, len);
}

int roost_conn_send_datagram(struct roost_conn *c, const uint8_t *data, size_t len)
{
    return quic_conn_send_datagram(c->q, data, len);
}

void roost_conn_close(struct roost_conn *c, uint64_t app_error)
{
    /* The CONNECTION_CLOSE is written by the next step (this may run inside
     * a callback); the application hears of the end now. */
    quic_conn_close(c->q, app_error, NULL);
}

void roost_conn_del(struct roost_conn *c)
{
    if (c == NULL)
        return;
    quic_client_conn_del(c->q);
    free(c);
}

void *roost_conn_user(const struct roost_conn *c)
{
    return c->user;
}

bool roost_conn_is_open(const struct roost_conn *c)
{
    return quic_conn_is_open(c->q);
}

bool roost_conn_is_closed(const struct roost_conn *c)
{
    return quic_conn_is_closed(c->q);
}

int roost_conn_rebind(struct roost_conn *c)
{
    return quic_client_rebind(c->q);
}

uint16_t roost_conn_local_port(const struct roost_conn *c)
{
    return quic_client_local_port(c->q);
}

void roost_conn_stats(const struct roost_conn *c, struct roost_conn_stats *out)
{
    struct quic_conn_stats s;
    quic_conn_stats(c->q, &s);
    *out = (struct roost_conn_stats){
        .srtt_ns = s.srtt_ns,
        .min_rtt_ns = s.min_rtt_ns,
        .latest_rtt_ns = s.latest_rtt_ns,
        .rttvar_ns = s.rttvar_ns,
        .cwnd = s.cwnd,
        .bytes_in_flight = s.bytes_in_flight,
        .dgram_sent = s.dgram_out,
        .dgram_recv = s.dgram_in,
        .dgram_acked = s.dgram_acked,
        .dgram_lost = s.dgram_lost,
        .dgram_dropped =
            s.dgram_drop_queue + s.dgram_drop_cwnd + s.dgram_drop_too_large + s.dgram_drop_state,
        .control_sent = s.control_out,
        .control_recv = s.control_in,
    };
}
