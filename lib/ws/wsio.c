/* Bytes to and from the socket: gnutls transport, the output buffer,
 * frames, the control and media queues and the send API, and writing at
 * turn end. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <wslay/wslay.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/frame.h"
#include "ws/ws_int.h"

/* Fill/flush rounds per write: bounded work per connection per turn. */
#define WRITE_ROUNDS 8

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
ssize_t wsio_tls_push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
    struct ws_conn *c = p;
    if (obuf_append(c, data, n) < 0) {
        gnutls_transport_set_errno(c->tls, ENOMEM);
        return -1;
    }
    return (ssize_t)n;
}

/* Raw bytes from the socket: >0, 0 at EOF, ROOST_EAGAIN, ROOST_ESYS. */
ssize_t wsio_sock_recv(struct ws_conn *c, void *buf, size_t n)
{
    ssize_t r = recv(c->fd, buf, n, 0);
    if (r > 0) {
        c->last_rx = wsconn_now(c);
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

ssize_t wsio_tls_pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    struct ws_conn *c = p;
    ssize_t r = wsio_sock_recv(c, buf, n);
    if (r >= 0)
        return r;
    gnutls_transport_set_errno(c->tls, r == ROOST_EAGAIN ? EAGAIN : ECONNRESET);
    return -1;
}

int wsio_tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
    (void)ms; /* non-blocking: only ask whether bytes are there */
    struct ws_conn *c = p;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return poll(&pfd, 1, 0);
}

/* Plaintext bytes from the connection: >0, 0 at EOF (close_notify or TCP
 * FIN), ROOST_EAGAIN, or ROOST_ESYS / ROOST_ECRYPTO. */
ssize_t wsio_rx(struct ws_conn *c, void *buf, size_t n)
{
    if (c->tls == NULL)
        return wsio_sock_recv(c, buf, n);
    ssize_t r = gnutls_record_recv(c->tls, buf, n);
    if (r >= 0)
        return r;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
        return ROOST_EAGAIN;
    if (r == GNUTLS_E_PREMATURE_TERMINATION)
        return 0;
    return ROOST_ECRYPTO;
}

int wsio_tx(struct ws_conn *c, const uint8_t *p, size_t n)
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
    int rc = wsio_tx(c, hdr, h);
    if (rc == 0 && n > 0)
        rc = wsio_tx(c, p, n);
    if (c->tls != NULL && gnutls_record_uncork(c->tls, 0) < 0)
        rc = ROOST_ECRYPTO;
    return rc;
}

ssize_t wsio_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                     void *user)
{
    (void)flags;
    struct ws_conn *c = user;
    if (wsio_tx(c, data, len) < 0) {
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
    uint64_t now = wsconn_now(c);
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

void wsio_write(struct ws_conn *c)
{
    if (c->state == CS_DEAD || c->blocked)
        return;
    for (int round = 0; round < WRITE_ROUNDS; round++) {
        if ((c->state == CS_OPEN || c->state == CS_CLOSING) && conn_fill(c) < 0) {
            wsconn_abort(c, WS_APP_INTERNAL);
            return;
        }
        if (conn_flush(c) < 0) {
            ST_INC(c->s, sock_errors);
            wsconn_abort(c, WS_APP_INTERNAL);
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
    wsconn_set_events(c);
    wsconn_schedule(c);
}

/* ------------------------------------------------------------ conn API */

int ws_conn_send_control(struct ws_conn *c, const uint8_t *body, size_t len)
{
    if (c->state != CS_OPEN)
        return ROOST_ECLOSED;
    if (len == 0 || len > FRAME_MAX_BODY)
        return ROOST_EINVAL;
    if (c->cq_bytes + 1 + FRAME_MAX_HDR + len > c->s->sh->cfg.control_queue_max) {
        wsconn_too_slow(c, "control queue full");
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
    it->at = wsconn_now(c);
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
        wsconn_mark_dirty(c);
    wsconn_schedule(c);
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
    m->at = wsconn_now(c);
    c->mq_n++;
    if (!c->blocked)
        wsconn_mark_dirty(c);
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
