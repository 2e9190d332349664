/* Input: the TLS handshake, the HTTP upgrade, frames through wslay,
 * messages to the application, and the socket's events. */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <gnutls/gnutls.h>
#include <wslay/wslay.h>

#include "core/error.h"
#include "ws/http.h"
#include "ws/ws_int.h"

/* Bytes read per connection per readiness event: a fast sender cannot keep
 * its worker from the others (level-triggered epoll brings it back). */
#define RX_BUDGET (128 * 1024)
/* Pongs wslay may hold for a client that pings without reading. */
#define PONG_QUEUE_MAX 256

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
    ssize_t r = wsio_rx(c, buf, len);
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
        wsconn_violation(c, len == 0                   ? "empty message"
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
        wsconn_violation(c, "text message");
        return;
    case WSLAY_PING:
        /* wslay queued the Pong; a client that pings without reading
         * them is a slow reader of control. */
        if (wslay_event_get_queued_msg_count(ctx) > PONG_QUEUE_MAX)
            wsconn_too_slow(c, "pongs not read");
        return;
    case WSLAY_CONNECTION_CLOSE: {
        uint16_t code = arg->status_code ? arg->status_code : 1005;
        ST_INC(c->s, peer_closed);
        /* wslay queued the answering Close. */
        wsconn_begin_close(c, ws_app_from_close_code(code), false, code, NULL);
        return;
    }
    default:
        return;
    }
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = ws_recv_cb,
    .send_callback = wsio_send_cb,
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
            wsconn_abort(c, WS_APP_INTERNAL);
            return;
        }
        if (rc == WSLAY_ERR_CALLBACK_FAILURE) {
            /* A malformed frame header: wslay queued a Close without a
             * status; ours says 1002. */
            ST_INC(c->s, protocol_violations);
            wsconn_begin_close(c, WS_APP_PROTOCOL_VIOLATION, true, WSLAY_CODE_PROTOCOL_ERROR,
                               "malformed frame");
            return;
        }
        wsconn_abort(c, WS_APP_INTERNAL);
        return;
    }
    if (!wslay_event_get_read_enabled(c->ws)) {
        /* wslay found an RFC 6455 violation and queued its Close (1002,
         * 1007 or 1009). */
        ST_INC(c->s, protocol_violations);
        wsconn_begin_close(c, WS_APP_PROTOCOL_VIOLATION, false, 0, NULL);
        return;
    }
    if (c->ws != NULL && wslay_event_want_write(c->ws))
        wsconn_mark_dirty(c);
}

static void upgrade(struct ws_conn *c, size_t req_len, const char *key)
{
    struct ws_server *s = c->s;
    char resp[256];
    int n = ws_http_response_101(key, resp, sizeof(resp));
    if (n < 0 || wsio_tx(c, (const uint8_t *)resp, (size_t)n) < 0) {
        wsconn_abort(c, WS_APP_INTERNAL);
        return;
    }
    if (wslay_event_context_server_init(&c->ws, &wslay_cbs, c) != 0) {
        c->ws = NULL;
        wsconn_abort(c, WS_APP_INTERNAL);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, s->sh->cfg.max_message);
    c->hoff = req_len;
    if (c->hoff == c->hlen)
        free_hbuf(c); /* no early frames */
    c->state = CS_OPEN;
    c->last_rx = wsconn_now(c);
    ST_INC(s, handshakes_ok);
    wsconn_mark_dirty(c);
    int code = s->ops->on_open != NULL ? s->ops->on_open(c, s->arg) : 0;
    if (c->state != CS_OPEN)
        return;
    if (code != 0) {
        ws_conn_close(c, (uint64_t)code, "refused");
        return;
    }
    c->opened = true;
}

/* After an HTTP answer (error or file): close once it is written. */
static void http_done(struct ws_conn *c, uint64_t app_error)
{
    c->state = CS_CLOSING;
    c->close_frame_done = true;
    if (c->tls != NULL)
        (void)gnutls_bye(c->tls, GNUTLS_SHUT_WR);
    c->close_deadline = wsconn_now(c) + c->s->sh->cfg.close_timeout_ns;
    free_hbuf(c);
    wsconn_mark_dirty(c);
    wsconn_notify_close(c, app_error);
}

static void serve_file(struct ws_conn *c, const struct ws_http_req *req)
{
    int status = wsweb_answer(c, req->path);
    if (status < 0) {
        wsconn_abort(c, WS_APP_INTERNAL);
        return;
    }
    http_done(c, status == 200 ? WS_APP_NO_ERROR : WS_APP_PROTOCOL_VIOLATION);
}

static void reject(struct ws_conn *c, const struct ws_http_req *req)
{
    char resp[512];
    ST_INC(c->s, http_rejected);
    int n = ws_http_response_error(req->status, req->why, resp, sizeof(resp));
    if (n < 0 || wsio_tx(c, (const uint8_t *)resp, (size_t)n) < 0) {
        wsconn_abort(c, WS_APP_PROTOCOL_VIOLATION);
        return;
    }
    c->state = CS_CLOSING;
    c->close_frame_done = true;
    if (c->tls != NULL)
        (void)gnutls_bye(c->tls, GNUTLS_SHUT_WR);
    c->close_deadline = wsconn_now(c) + c->s->sh->cfg.close_timeout_ns;
    wsconn_mark_dirty(c);
    wsconn_notify_close(c, WS_APP_PROTOCOL_VIOLATION);
}

static void read_http(struct ws_conn *c)
{
    if (c->hbuf == NULL) {
        c->hbuf = malloc(WS_HTTP_MAX);
        if (c->hbuf == NULL) {
            wsconn_abort(c, WS_APP_INTERNAL);
            return;
        }
    }
    for (;;) {
        ssize_t r = wsio_rx(c, c->hbuf + c->hlen, WS_HTTP_MAX - c->hlen);
        if (r == ROOST_EAGAIN)
            return;
        if (r <= 0) {
            wsconn_abort(c, WS_APP_INTERNAL);
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
        if (!req.upgrade) {
            serve_file(c, &req);
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
        ssize_t r = wsio_sock_recv(c, c->s->scratch, sizeof(c->s->scratch));
        if (r == ROOST_EAGAIN)
            return;
        if (r <= 0) {
            /* The client closed its side (or reset): our Close was
             * answered or will not be read; nothing to linger for. */
            wsconn_set_dead(c);
            return;
        }
    }
}

static void conn_read(struct ws_conn *c)
{
    switch (c->state) {
    case CS_TLS: {
        int r = gnutls_handshake(c->tls);
        wsconn_mark_dirty(c); /* handshake records to send */
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return;
        if (r < 0) {
            if (!gnutls_error_is_fatal(r))
                return;
            ST_INC(c->s, tls_failed);
            wsconn_abort(c, WS_APP_INTERNAL);
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

void wsinput_on_event(struct worker *w, int fd, uint32_t events, void *arg)
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
        wsio_write(c);
    }
    wsconn_schedule(c);
}
