/* The public roost_* client API over the client end of lib/quic
 * (quic/client.h): a roost_conn is a small handle naming a quic_conn, and
 * the callbacks are translated between the two. Also the thread mode
 * (roost_client_run) and the checks that the public error codes are
 * lib/core's. */
#include "client/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "client/client_int.h"
#include "core/error.h"
#include "proto/errcode.h"
#include "quic/client.h"

/* The public header defines its codes without lib/core (it must be
 * self-contained); both sides promise the same values. */
#define SAME_CODE(pub, core) _Static_assert((int)(pub) == (int)(core), #pub " != " #core)
SAME_CODE(ROOST_ERR_OK, ROOST_OK);
SAME_CODE(ROOST_ERR_NOMEM, ROOST_ENOMEM);
SAME_CODE(ROOST_ERR_INVAL, ROOST_EINVAL);
SAME_CODE(ROOST_ERR_AGAIN, ROOST_EAGAIN);
SAME_CODE(ROOST_ERR_NOENT, ROOST_ENOENT);
SAME_CODE(ROOST_ERR_EXIST, ROOST_EEXIST);
SAME_CODE(ROOST_ERR_NOSPC, ROOST_ENOSPC);
SAME_CODE(ROOST_ERR_RANGE, ROOST_ERANGE);
SAME_CODE(ROOST_ERR_IO, ROOST_EIO);
SAME_CODE(ROOST_ERR_ACCES, ROOST_EACCES);
SAME_CODE(ROOST_ERR_TIMEDOUT, ROOST_ETIMEDOUT);
SAME_CODE(ROOST_ERR_TRUNC, ROOST_ETRUNC);
SAME_CODE(ROOST_ERR_MALFORMED, ROOST_EMALFORMED);
SAME_CODE(ROOST_ERR_TOOBIG, ROOST_ETOOBIG);
SAME_CODE(ROOST_ERR_UNKNOWN, ROOST_EUNKNOWN);
SAME_CODE(ROOST_ERR_BADTAG, ROOST_EBADTAG);
SAME_CODE(ROOST_ERR_EXPIRED, ROOST_EEXPIRED);
SAME_CODE(ROOST_ERR_NOTYET, ROOST_ENOTYET);
SAME_CODE(ROOST_ERR_BADKEY, ROOST_EBADKEY);
SAME_CODE(ROOST_ERR_WRONGROOM, ROOST_EWRONGROOM);
SAME_CODE(ROOST_ERR_CRYPTO, ROOST_ECRYPTO);
SAME_CODE(ROOST_ERR_QUIC, ROOST_EQUIC);
SAME_CODE(ROOST_ERR_CLOSED, ROOST_ECLOSED);
SAME_CODE(ROOST_ERR_FULL, ROOST_EFULL);
SAME_CODE(ROOST_ERR_SYS, ROOST_ESYS);
SAME_CODE(ROOST_CODE_BAD_TOKEN, PROTO_ERR_BAD_TOKEN);
SAME_CODE(ROOST_CODE_TOKEN_EXPIRED, PROTO_ERR_TOKEN_EXPIRED);
SAME_CODE(ROOST_CODE_ROOM_FULL, PROTO_ERR_ROOM_FULL);
SAME_CODE(ROOST_CODE_NOT_PERMITTED, PROTO_ERR_NOT_PERMITTED);
SAME_CODE(ROOST_CODE_GOING_AWAY, PROTO_ERR_GOING_AWAY);
SAME_CODE(ROOST_CODE_REPLACED, PROTO_ERR_REPLACED);

struct roost_client {
    struct quic_client *q;
    const struct roost_client_callbacks *cbs;
    void *arg;
    bool sessions; /* created with cbs NULL: connections belong to sessions */
    /* Thread mode. The lock is held by the internal thread while it
     * processes (so callbacks run under it) and by other threads around
     * their calls; released before the thread sleeps. */
    pthread_mutex_t lock;
    pthread_t thread;
    atomic_bool running; /* written by run/stop only; read by unlock */
    atomic_bool stop;    /* release by stop, acquire by the thread's loop */
    int wake_fd;         /* eventfd: unlock and stop wake the thread */
    int ep_fd;           /* the thread's epoll: quic fd + wake_fd */
};

struct roost_conn {
    struct quic_conn *q;
    struct roost_client *cl;
    void *user;
};

uint64_t roost_client_now(void)
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
    cl->sessions = cbs == NULL;
    cl->cbs = cbs != NULL ? cbs : &session_conn_cbs;
    cl->arg = arg;
    cl->wake_fd = -1;
    cl->ep_fd = -1;
    if (pthread_mutex_init(&cl->lock, NULL) != 0) {
        free(cl);
        return ROOST_ESYS;
    }
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
        pthread_mutex_destroy(&cl->lock);
        free(cl);
        return rc;
    }
    *out = cl;
    return 0;
}

int roost_client_set_ack_thresh(struct roost_client *cl, unsigned n)
{
    if (n > 255)
        return ROOST_EINVAL;
    quic_client_set_ack_thresh(cl->q, n);
    return 0;
}

void roost_client_del(struct roost_client *cl)
{
    if (cl == NULL)
        return;
    roost_client_stop(cl);
    struct quic_conn *q;
    while ((q = quic_client_first(cl->q)) != NULL) {
        struct roost_conn *c = quic_conn_user(q);
        if (cl->sessions)
            roost_session_del(c->user); /* frees c too */
        else
            roost_conn_del(c);
    }
    quic_client_del(cl->q);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

static int connect_any(struct roost_client *cl, const char *host, uint16_t port, void *user,
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

int roost_client_connect(struct roost_client *cl, const char *host, uint16_t port, void *user,
                         struct roost_conn **out)
{
    if (cl->sessions)
        return ROOST_EINVAL;
    return connect_any(cl, host, port, user, out);
}

int client_connect_session(struct roost_client *cl, const char *host, uint16_t port,
                           struct roost_session *s, struct roost_conn **out)
{
    if (!cl->sessions)
        return ROOST_EINVAL;
    return connect_any(cl, host, port, s, out);
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
    uint64_t now = roost_client_now();
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
    return roost_client_process(cl, roost_client_now());
}

int roost_client_fd(const struct roost_client *cl)
{
    return quic_client_fd(cl->q);
}

unsigned roost_client_active(const struct roost_client *cl)
{
    return quic_client_active(cl->q);
}

struct quic_client *client_quic(struct roost_client *cl)
{
    return cl->q;
}

void roost_client_set_rx_drop(struct roost_client *cl, double share)
{
    quic_client_set_rx_drop(cl->q, share);
}

/* ------------------------------------------------------ thread mode */

static void *run_main(void *arg)
{
    struct roost_client *cl = arg;
    pthread_mutex_lock(&cl->lock);
    /* Pairs with the release store in roost_client_stop. */
    while (!atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        uint64_t wait = roost_client_next_timeout(cl, roost_client_now());
        /* Wake at least once a second even without timers: cheap, and a
         * bound on any missed wake-up. */
        int ms = wait >= 1000000000ULL ? 1000 : (int)((wait + 999999) / 1000000);
        pthread_mutex_unlock(&cl->lock);
        struct epoll_event ev[2];
        int n = epoll_wait(cl->ep_fd, ev, 2, ms);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == cl->wake_fd) {
                uint64_t v;
                (void)!read(cl->wake_fd, &v, sizeof(v));
            }
        }
        pthread_mutex_lock(&cl->lock);
        roost_client_process(cl, roost_client_now());
    }
    pthread_mutex_unlock(&cl->lock);
    return NULL;
}

static void wake(struct roost_client *cl)
{
    uint64_t one = 1;
    (void)!write(cl->wake_fd, &one, sizeof(one));
}

int roost_client_run(struct roost_client *cl)
{
    if (atomic_load_explicit(&cl->running, memory_order_relaxed))
        return ROOST_EEXIST;
    cl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    cl->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (cl->wake_fd == -1 || cl->ep_fd == -1)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cl->wake_fd};
    if (epoll_ctl(cl->ep_fd, EPOLL_CTL_ADD, cl->wake_fd, &ev) == -1)
        goto fail;
    ev.data.fd = quic_client_fd(cl->q);
    if (epoll_ctl(cl->ep_fd, EPOLL_CTL_ADD, ev.data.fd, &ev) == -1)
        goto fail;
    atomic_store_explicit(&cl->stop, false, memory_order_relaxed);
    if (pthread_create(&cl->thread, NULL, run_main, cl) != 0)
        goto fail;
    atomic_store_explicit(&cl->running, true, memory_order_relaxed);
    return 0;
fail:
    if (cl->wake_fd != -1)
        close(cl->wake_fd);
    if (cl->ep_fd != -1)
        close(cl->ep_fd);
    cl->wake_fd = cl->ep_fd = -1;
    return ROOST_ESYS;
}

void roost_client_stop(struct roost_client *cl)
{
    if (!atomic_load_explicit(&cl->running, memory_order_relaxed))
        return;
    /* Pairs with the acquire load in run_main's loop. */
    atomic_store_explicit(&cl->stop, true, memory_order_release);
    wake(cl);
    pthread_join(cl->thread, NULL);
    atomic_store_explicit(&cl->running, false, memory_order_relaxed);
    close(cl->wake_fd);
    close(cl->ep_fd);
    cl->wake_fd = cl->ep_fd = -1;
}

void roost_client_lock(struct roost_client *cl)
{
    pthread_mutex_lock(&cl->lock);
}

void roost_client_unlock(struct roost_client *cl)
{
    pthread_mutex_unlock(&cl->lock);
    /* What the caller queued goes out now rather than at the next timer. */
    if (atomic_load_explicit(&cl->running, memory_order_relaxed))
        wake(cl);
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
