/* A worker's WebSocket server: accept, TLS setup, the turn end, and
 * teardown. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <urcu-qsbr.h>

#include "core/error.h"
#include "ws/ws_int.h"

#define ACCEPT_BATCH 64

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
    gnutls_transport_set_push_function(c->tls, wsio_tls_push);
    gnutls_transport_set_pull_function(c->tls, wsio_tls_pull);
    gnutls_transport_set_pull_timeout_function(c->tls, wsio_tls_pull_timeout);
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
    timer_init(&c->timer, wsconn_on_timer, c);
    c->t_accept = c->last_rx = worker_now(s->w);
    if (s->sh->creds != NULL) {
        if (tls_setup(c) < 0)
            goto fail;
        c->state = CS_TLS;
    } else {
        c->state = CS_HTTP;
    }
    if (worker_fd_add(s->w, fd, EPOLLIN, wsinput_on_event, c) < 0)
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
    wsconn_schedule(c);
    return;
fail:
    ST_INC(s, sock_errors);
    if (c != NULL) {
        if (c->tls != NULL)
            gnutls_deinit(c->tls);
        wsshared_creds_unref(c->creds);
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
            wsconn_free(c);
            continue;
        }
        wsio_write(c); /* may end it: wsconn_set_dead marks it dirty again */
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
            wsio_write(c); /* best effort: the Close frame, once */
        }
    }
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].c != NULL)
            wsconn_free(s->slots[i].c);
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
