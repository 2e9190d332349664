#include "ws_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/error.h"
#include "proto/frame.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "ws/http.h"
#include "ws/ws.h"

#define RBUF_MAX (2u << 20)

struct wsc {
    int fd;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    uint8_t *rbuf;
    size_t rlen;
    uint8_t *frame; /* last frame's payload */
    char key[WS_KEY_LEN + 1];
};

uint64_t wsc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int left_ms(uint64_t end)
{
    uint64_t now = wsc_now_ms();
    return now >= end ? 0 : (int)(end - now);
}

static int wait_fd(int fd, short ev, uint64_t end)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int r = poll(&p, 1, left_ms(end));
    return r;
}

int wsc_fd(const struct wsc *c)
{
    return c->fd;
}

void wsc_free(struct wsc *c)
{
    if (c == NULL)
        return;
    if (c->tls != NULL)
        gnutls_deinit(c->tls);
    if (c->cred != NULL)
        gnutls_certificate_free_credentials(c->cred);
    if (c->fd >= 0)
        close(c->fd);
    free(c->rbuf);
    free(c->frame);
    free(c);
}

int wsc_connect(struct wsc **out, const char *addr, uint16_t port, const char *ca_file, int rcvbuf,
                int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        sl = sizeof(*in4);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        sl = sizeof(*in6);
    } else {
        return ROOST_EINVAL;
    }
    struct wsc *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    c->rbuf = malloc(RBUF_MAX);
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->rbuf == NULL || c->fd == -1)
        goto fail;
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(c->fd, (struct sockaddr *)&ss, sl) == -1) {
        if (errno != EINPROGRESS)
            goto fail;
        if (wait_fd(c->fd, POLLOUT, end) <= 0)
            goto fail;
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0)
            goto fail;
    }
    if (ca_file != NULL) {
        if (gnutls_certificate_allocate_credentials(&c->cred) != 0) {
            c->cred = NULL;
            goto fail;
        }
        if (gnutls_certificate_set_x509_trust_file(c->cred, ca_file, GNUTLS_X509_FMT_PEM) <= 0)
            goto fail;
        if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != 0) {
            c->tls = NULL;
            goto fail;
        }
        if (gnutls_set_default_priority(c->tls) != 0 ||
            gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred) != 0)
            goto fail;
        gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, "localhost", 9);
        gnutls_session_set_verify_cert(c->tls, "localhost", 0);
        gnutls_transport_set_int(c->tls, c->fd);
        for (;;) {
            int r = gnutls_handshake(c->tls);
            if (r == 0)
                break;
            if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
                goto fail;
            if (wait_fd(c->fd, gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN, end) <= 0)
                goto fail;
        }
        if (gnutls_protocol_get_version(c->tls) != GNUTLS_TLS1_3)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    wsc_free(c);
    return ROOST_EIO;
}

int wsc_send_raw(struct wsc *c, const void *p, size_t n, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t r;
        if (c->tls != NULL) {
            r = gnutls_record_send(c->tls, b, n);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                /* gnutls keeps the record: call again with the same data. */
                if (wait_fd(c->fd, POLLOUT, end) <= 0)
                    return ROOST_ETIMEDOUT;
                continue;
            }
            if (r < 0)
                return ROOST_EIO;
        } else {
            r = send(c->fd, b, n, MSG_NOSIGNAL);
            if (r == -1 && (errno == EAGAIN || errno == EINTR)) {
                if (wait_fd(c->fd, POLLOUT, end) <= 0)
                    return ROOST_ETIMEDOUT;
                continue;
            }
            if (r == -1)
                return ROOST_EIO;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads more plaintext into rbuf. 1: got bytes, 0: timeout, <0: EOF/error. */
static int fill(struct wsc *c, uint64_t end)
{
    if (c->rlen == RBUF_MAX)
        return ROOST_ENOSPC;
    for (;;) {
        ssize_t r;
        if (c->tls != NULL) {
            r = gnutls_record_recv(c->tls, c->rbuf + c->rlen, RBUF_MAX - c->rlen);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                r = -2;
            else if (r < 0)
                return ROOST_EIO;
        } else {
            r = recv(c->fd, c->rbuf + c->rlen, RBUF_MAX - c->rlen, 0);
            if (r == -1 && (errno == EAGAIN || errno == EINTR))
                r = -2;
            else if (r == -1)
                return ROOST_EIO;
        }
        if (r == 0)
            return ROOST_ECLOSED;
        if (r > 0) {
            c->rlen += (size_t)r;
            return 1;
        }
        int w = wait_fd(c->fd, POLLIN, end);
        if (w <= 0)
            return 0;
    }
}

static void consume(struct wsc *c, size_t n)
{
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
}

int wsc_upgrade(struct wsc *c, const char *path, const char *protocol, const uint8_t *extra,
                size_t extra_len, int *status, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    uint8_t raw[16];
    gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof(raw));
    ws_base64_encode(raw, sizeof(raw), c->key);
    char req[1024 + 65536];
    int n = snprintf(req, 1024,
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, c->key, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? protocol : "", protocol ? "\r\n" : "");
    if (extra_len > 65536)
        return ROOST_EINVAL;
    if (extra_len > 0)
        memcpy(req + n, extra, extra_len);
    if (wsc_send_raw(c, req, (size_t)n + extra_len, timeout_ms) < 0)
        return ROOST_EIO;
    *status = 0;
    for (;;) {
        uint8_t *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (e != NULL) {
            size_t hl = (size_t)(e - c->rbuf) + 4;
            char head[4096];
            size_t k = hl < sizeof(head) - 1 ? hl : sizeof(head) - 1;
            memcpy(head, c->rbuf, k);
            head[k] = '\0';
            consume(c, hl);
            if (sscanf(head, "HTTP/1.1 %d", status) != 1)
                return ROOST_EMALFORMED;
            if (*status != 101)
                return 1;
            char accept[WS_ACCEPT_LEN + 1], want[128];
            ws_http_accept(c->key, accept);
            snprintf(want, sizeof(want), "Sec-WebSocket-Accept: %s\r\n", accept);
            if (strstr(head, want) == NULL || strstr(head, "Upgrade: websocket\r\n") == NULL ||
                strstr(head, "Sec-WebSocket-Protocol: roost.v1\r\n") == NULL)
                return ROOST_EMALFORMED;
            return 0;
        }
        int r = fill(c, end);
        if (r <= 0)
            return r == 0 ? ROOST_ETIMEDOUT : r;
    }
}

size_t wsc_frame_encode(uint8_t *out, size_t cap, uint8_t opcode, bool fin, bool mask,
                        const uint8_t *p, size_t n)
{
    size_t h = 0;
    if (cap < n + 14)
        return 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    uint8_t m = mask ? 0x80 : 0;
    if (n < 126) {
        out[h++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        out[h++] = m | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = m | 127;
        for (int k = 7; k >= 0; k--)
            out[h++] = (uint8_t)((uint64_t)n >> (8 * k));
    }
    uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    if (mask) {
        gnutls_rnd(GNUTLS_RND_NONCE, key, 4);
        memcpy(out + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < n; i++)
        out[h + i] = mask ? (uint8_t)(p[i] ^ key[i % 4]) : p[i];
    return h + n;
}

int wsc_send_frame(struct wsc *c, uint8_t opcode, bool fin, bool mask, const uint8_t *p, size_t n)
{
    size_t cap = n + 14;
    uint8_t *b = malloc(cap);
    if (b == NULL)
        return ROOST_ENOMEM;
    size_t l = wsc_frame_encode(b, cap, opcode, fin, mask, p, n);
    int rc = wsc_send_raw(c, b, l, 5000);
    free(b);
    return rc;
}

int wsc_send_msg(struct wsc *c, uint8_t tag, const uint8_t *p, size_t n)
{
    uint8_t *b = malloc(n + 1);
    if (b == NULL)
        return ROOST_ENOMEM;
    b[0] = tag;
    if (n > 0)
        memcpy(b + 1, p, n);
    int rc = wsc_send_frame(c, 0x2, true, true, b, n + 1);
    free(b);
    return rc;
}

int wsc_send_control(struct wsc *c, const uint8_t *body, size_t len)
{
    uint8_t *b = malloc(len + FRAME_MAX_HDR);
    if (b == NULL)
        return ROOST_ENOMEM;
    int hl = frame_put_header(b, FRAME_MAX_HDR, len);
    if (hl < 0) {
        free(b);
        return hl;
    }
    memcpy(b + hl, body, len);
    int rc = wsc_send_msg(c, 0x01, b, (size_t)hl + len);
    free(b);
    return rc;
}

int wsc_recv_frame(struct wsc *c, struct wsc_frame *f, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (c->rlen >= 2) {
            size_t h = 2;
            uint64_t n = c->rbuf[1] & 0x7f;
            bool masked = (c->rbuf[1] & 0x80) != 0;
            bool have = true;
            if (n == 126) {
                have = c->rlen >= 4;
                if (have)
                    n = (uint64_t)c->rbuf[2] << 8 | c->rbuf[3];
                h = 4;
            } else if (n == 127) {
                have = c->rlen >= 10;
                if (have) {
                    n = 0;
                    for (int k = 0; k < 8; k++)
                        n = n << 8 | c->rbuf[2 + k];
                }
                h = 10;
            }
            if (masked)
                return ROOST_EMALFORMED; /* servers never mask */
            if (have && n > RBUF_MAX - 16)
                return ROOST_ETOOBIG;
            if (have && c->rlen >= h + n) {
                free(c->frame);
                c->frame = malloc(n ? n : 1);
                if (c->frame == NULL)
                    return ROOST_ENOMEM;
                memcpy(c->frame, c->rbuf + h, n);
                f->opcode = c->rbuf[0] & 0x0f;
                f->fin = (c->rbuf[0] & 0x80) != 0;
                f->data = c->frame;
                f->len = n;
                f->close_code = 0;
                if (f->opcode == 0x8 && n >= 2)
                    f->close_code = (uint16_t)(c->frame[0] << 8 | c->frame[1]);
                consume(c, h + n);
                return 1;
            }
        }
        int r = fill(c, end);
        if (r <= 0)
            return r;
    }
}

int wsc_read_all(struct wsc *c, const uint8_t **data, size_t *len, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int r = fill(c, end);
        if (r == 0)
            return ROOST_ETIMEDOUT;
        if (r < 0)
            break;
    }
    *data = c->rbuf;
    *len = c->rlen;
    return 0;
}

/* ------------------------------------------------------------ wsp */

uint8_t wsp_payload(uint32_t seq, size_t i)
{
    return (uint8_t)(seq * 31u + (uint32_t)i * 7u + 1u);
}

static int wsp_send_msg(struct wsp *p, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    if (n <= 0)
        return n < 0 ? n : ROOST_EINVAL;
    return wsc_send_control(p->c, body, (size_t)n);
}

int wsp_connect(struct wsp *p, const char *addr, uint16_t port, const char *ca_file,
                const char *path, int rcvbuf, int timeout_ms)
{
    int rc = wsc_connect(&p->c, addr, port, ca_file, rcvbuf, timeout_ms);
    if (rc != 0)
        return rc;
    int status = 0;
    rc = wsc_upgrade(p->c, path, WS_SUBPROTOCOL, NULL, 0, &status, timeout_ms);
    if (rc != 0)
        return rc < 0 ? rc : ROOST_EMALFORMED;
    struct msg m = {.type = MSG_HELLO};
    m.u.hello.min_version = 1;
    m.u.hello.max_version = 1;
    m.u.hello.client_name.ptr = (const uint8_t *)"roost-ws-test";
    m.u.hello.client_name.len = 13;
    return wsp_send_msg(p, &m);
}

static void wsp_on_control(struct wsp *p, const uint8_t *body, size_t len)
{
    struct msg *m = malloc(sizeof(*m));
    if (m == NULL || msg_decode(body, len, m) != 0) {
        free(m);
        return;
    }
    switch (m->type) {
    case MSG_WELCOME: {
        p->welcomed = true;
        p->pid = m->u.welcome.participant_id;
        struct msg j = {.type = MSG_JOIN};
        j.u.join.room_id.ptr = (const uint8_t *)p->room;
        j.u.join.room_id.len = strlen(p->room);
        j.u.join.token.ptr = (const uint8_t *)p->token;
        j.u.join.token.len = strlen(p->token);
        j.u.join.display_name.ptr = (const uint8_t *)p->name;
        j.u.join.display_name.len = strlen(p->name);
        (void)wsp_send_msg(p, &j);
        break;
    }
    case MSG_JOINED:
        p->answered = p->joined = true;
        p->joined_n = m->u.joined.n_members;
        for (uint32_t i = 0; i < p->joined_n && i < 256; i++)
            p->joined_pids[i] = m->u.joined.members[i].participant_id;
        break;
    case MSG_JOIN_REJECTED:
        p->answered = true;
        p->reject_code = m->u.join_rejected.code;
        break;
    case MSG_PARTICIPANT_EVENTS:
        for (uint32_t i = 0; i < m->u.events.n_events && p->n_events < 1024; i++) {
            p->events[p->n_events].kind = m->u.events.events[i].kind;
            p->events[p->n_events].pid = m->u.events.events[i].participant_id;
            p->n_events++;
        }
        break;
    case MSG_QUALITY:
        p->n_quality++;
        if (m->u.quality.participant_id == p->pid)
            p->quality_dropped += m->u.quality.dropped;
        break;
    case MSG_GOAWAY:
        p->n_goaway++;
        break;
    case MSG_ERROR:
        p->n_errors++;
        p->last_error = m->u.error.code;
        break;
    default:
        break;
    }
    free(m);
}

static void wsp_on_media(struct wsp *p, const uint8_t *d, size_t len)
{
    struct media_hdr h;
    if (media_r2c_decode(d, len, &h) < 0 || p->n_media >= WSP_LOG)
        return;
    struct wsp_rx *rx = &p->media[p->n_media++];
    rx->sender = h.participant_id;
    rx->seq = h.seq;
    rx->len = (uint32_t)(len - MEDIA_R2C_HDR_LEN);
    rx->intact = true;
    for (size_t i = 0; i < rx->len; i++)
        if (d[MEDIA_R2C_HDR_LEN + i] != wsp_payload(h.seq, i))
            rx->intact = false;
}

int wsp_poll(struct wsp *p, int timeout_ms)
{
    if (p->closed)
        return ROOST_ECLOSED;
    int n = 0;
    for (;;) {
        struct wsc_frame f;
        int r = wsc_recv_frame(p->c, &f, n == 0 ? timeout_ms : 0);
        if (r == 0)
            return n;
        if (r < 0) {
            p->closed = true;
            return r;
        }
        n++;
        if (f.opcode == 0x9) { /* Ping: the Pong echoes it */
            (void)wsc_send_frame(p->c, 0xa, true, true, f.data, f.len);
            continue;
        }
        if (f.opcode == 0x8) {
            p->close_code = f.close_code ? f.close_code : 1005;
            p->closed = true;
            return ROOST_ECLOSED;
        }
        if (f.opcode != 0x2 || f.len == 0)
            continue;
        const uint8_t *body;
        size_t bl;
        switch (ws_msg_parse(f.data, f.len, &body, &bl)) {
        case WS_TAG_CONTROL:
            wsp_on_control(p, body, bl);
            break;
        case WS_TAG_MEDIA:
            wsp_on_media(p, body, bl);
            break;
        default:
            break;
        }
    }
}

int wsp_send_media(struct wsp *p, uint32_t seq, size_t len)
{
    uint8_t d[MEDIA_C2R_HDR_LEN + 1200];
    if (len > sizeof(d) - MEDIA_C2R_HDR_LEN)
        return ROOST_EINVAL;
    struct media_hdr h = {.stream_id = 0, .seq = seq, .timestamp = seq * 960};
    media_c2r_encode(&h, d, sizeof(d));
    for (size_t i = 0; i < len; i++)
        d[MEDIA_C2R_HDR_LEN + i] = wsp_payload(seq, i);
    return wsc_send_msg(p->c, WS_TAG_MEDIA, d, MEDIA_C2R_HDR_LEN + len);
}

int wsp_leave(struct wsp *p)
{
    struct msg m = {.type = MSG_LEAVE};
    return wsp_send_msg(p, &m);
}

uint32_t wsp_events(const struct wsp *p, uint8_t kind, uint32_t pid)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_events; i++)
        if (p->events[i].kind == kind && p->events[i].pid == pid)
            n++;
    return n;
}

void wsp_free(struct wsp *p)
{
    wsc_free(p->c);
    p->c = NULL;
}
