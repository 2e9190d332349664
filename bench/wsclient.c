#include "bench/wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "core/error.h"
#include "proto/frame.h"
#include "ws/http.h"
#include "ws/ws.h"

#define RBUF_CAP (WS_MESSAGE_MAX + 16) /* one whole message of the relay's largest + header */
#define WBUF_CAP (64u * 1024)          /* plaintext waiting for the socket */
#define HEAD_MAX 4096                  /* the 101 answer's head */
#define TLS_CHUNK 16384                /* one TLS record */

struct wscl_tls {
    gnutls_certificate_credentials_t cred;
    gnutls_datum_t pinned; /* DER; empty with a CA file */
    char server_name[256];
};

enum wscl_state { ST_TCP, ST_TLS, ST_HTTP, ST_OPEN, ST_DONE };

struct wscl {
    int fd, epfd;
    void *tag;
    enum wscl_state st;
    struct wscl_tls *tls;
    gnutls_session_t sess;
    const struct wscl_cbs *cbs;
    void *user;
    bool want_out;     /* EPOLLOUT armed */
    size_t tls_retry;  /* gnutls_record_send returned EAGAIN for this many bytes */
    uint64_t mask_rng; /* xorshift: masking keys (RFC 6455 asks for unpredictable) */
    char key[WS_KEY_LEN + 1];
    size_t rlen, wlen;
    uint8_t rbuf[RBUF_CAP];
    uint8_t wbuf[WBUF_CAP];
};

/* ------------------------------------------------------------ TLS */

static int verify_pinned(gnutls_session_t s)
{
    struct wscl *c = gnutls_session_get_ptr(s);
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    const gnutls_datum_t *pin = &c->tls->pinned;
    if (certs == NULL || n == 0 || certs[0].size != pin->size ||
        memcmp(certs[0].data, pin->data, pin->size) != 0)
        return GNUTLS_E_CERTIFICATE_ERROR;
    return 0;
}

int wscl_tls_new(struct wscl_tls **out, const char *ca_file, const char *pinned_cert,
                 const char *server_name)
{
    if (ca_file == NULL && pinned_cert == NULL)
        return ROOST_EINVAL;
    struct wscl_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ROOST_ENOMEM;
    snprintf(t->server_name, sizeof(t->server_name), "%s", server_name ? server_name : "localhost");
    if (gnutls_certificate_allocate_credentials(&t->cred) != 0) {
        free(t);
        return ROOST_ENOMEM;
    }
    int rc = ROOST_ECRYPTO;
    if (pinned_cert != NULL) {
        gnutls_datum_t pem = {NULL, 0};
        gnutls_x509_crt_t crt = NULL;
        if (gnutls_load_file(pinned_cert, &pem) == 0 && gnutls_x509_crt_init(&crt) == 0 &&
            gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) == 0 &&
            gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &t->pinned) == 0)
            rc = 0;
        if (crt != NULL)
            gnutls_x509_crt_deinit(crt);
        gnutls_free(pem.data);
        if (rc == 0)
            gnutls_certificate_set_verify_function(t->cred, verify_pinned);
    } else if (gnutls_certificate_set_x509_trust_file(t->cred, ca_file, GNUTLS_X509_FMT_PEM) > 0) {
        rc = 0;
    }
    if (rc != 0) {
        wscl_tls_del(t);
        return rc;
    }
    *out = t;
    return 0;
}

void wscl_tls_del(struct wscl_tls *t)
{
    if (t == NULL)
        return;
    gnutls_certificate_free_credentials(t->cred);
    gnutls_free(t->pinned.data);
    free(t);
}

/* ------------------------------------------------------------ I/O */

static void set_out(struct wscl *c, bool on)
{
    if (c->want_out == on || c->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c->tag};
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = on;
}

static void end(struct wscl *c, enum wscl_end why, int64_t code)
{
    if (c->st == ST_DONE)
        return;
    c->st = ST_DONE;
    if (c->fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->cbs->on_close != NULL)
        c->cbs->on_close(c, why, code, c->user);
}

/* Writes what wbuf holds. Returns 0 (all written or the socket is full),
 * or < 0 after end(). */
static int flush(struct wscl *c)
{
    size_t off = 0;
    while (off < c->wlen) {
        ssize_t r;
        if (c->sess != NULL) {
            size_t n = c->tls_retry ? c->tls_retry : c->wlen - off;
            if (n > TLS_CHUNK)
                n = TLS_CHUNK;
            r = gnutls_record_send(c->sess, c->wbuf + off, n);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                c->tls_retry = n; /* the same data again next time */
                break;
            }
            c->tls_retry = 0;
            if (r < 0) {
                end(c, WSCL_END_EOF, r);
                return ROOST_ECLOSED;
            }
        } else {
            r = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r == -1 && (errno == EAGAIN || errno == EINTR))
                break;
            if (r == -1) {
                end(c, WSCL_END_EOF, errno);
                return ROOST_ECLOSED;
            }
        }
        off += (size_t)r;
    }
    if (off > 0) {
        memmove(c->wbuf, c->wbuf + off, c->wlen - off);
        c->wlen -= off;
    }
    set_out(c, c->wlen > 0);
    return 0;
}

/* Reads into rbuf. 1: bytes, 0: nothing now, < 0: ended (end() called). */
static int fill(struct wscl *c)
{
    if (c->rlen == RBUF_CAP) {
        end(c, WSCL_END_PROTOCOL, 0);
        return ROOST_ECLOSED;
    }
    ssize_t r;
    if (c->sess != NULL) {
        r = gnutls_record_recv(c->sess, c->rbuf + c->rlen, RBUF_CAP - c->rlen);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return 0;
        if (r < 0) {
            end(c, WSCL_END_EOF, r);
            return ROOST_ECLOSED;
        }
    } else {
        r = recv(c->fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen, MSG_DONTWAIT);
        if (r == -1 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (r == -1) {
            end(c, WSCL_END_EOF, errno);
            return ROOST_ECLOSED;
        }
    }
    if (r == 0) {
        end(c, WSCL_END_EOF, 0);
        return ROOST_ECLOSED;
    }
    c->rlen += (size_t)r;
    return 1;
}

static void consume(struct wscl *c, size_t n)
{
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
}

/* ------------------------------------------------------------ frames */

static uint32_t next_mask(struct wscl *c)
{
    uint64_t x = c->mask_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->mask_rng = x;
    return (uint32_t)(x >> 16);
}

/* Appends one masked frame (FIN) of [pre][p..p+n) to wbuf. */
static int put_frame(struct wscl *c, uint8_t opcode, const uint8_t *pre, size_t pn,
                     const uint8_t *p, size_t n)
{
    size_t len = pn + n, h = 0;
    uint8_t hdr[14];
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        return ROOST_ETOOBIG;
    }
    if (WBUF_CAP - c->wlen < h + 4 + len)
        return ROOST_EFULL;
    uint32_t m = next_mask(c);
    uint8_t key[4] = {(uint8_t)(m >> 24), (uint8_t)(m >> 16), (uint8_t)(m >> 8), (uint8_t)m};
    memcpy(hdr + h, key, 4);
    h += 4;
    uint8_t *o = c->wbuf + c->wlen;
    memcpy(o, hdr, h);
    o += h;
    for (size_t i = 0; i < pn; i++)
        o[i] = pre[i] ^ key[i & 3];
    for (size_t i = 0; i < n; i++)
        o[pn + i] = p[i] ^ key[(pn + i) & 3];
    c->wlen += h + len;
    return 0;
}

/* Handles the complete frames in rbuf. Returns < 0 once the connection
 * ended. */
static int frames(struct wscl *c)
{
    while (c->st == ST_OPEN && c->rlen >= 2) {
        const uint8_t *b = c->rbuf;
        size_t h = 2;
        uint64_t n = b[1] & 0x7f;
        if (b[1] & 0x80 || !(b[0] & 0x80) || (b[0] & 0x70)) {
            end(c, WSCL_END_PROTOCOL, 0); /* masked, fragmented or with RSV bits */
            return ROOST_ECLOSED;
        }
        if (n == 126) {
            if (c->rlen < 4)
                return 0;
            n = (uint64_t)b[2] << 8 | b[3];
            h = 4;
        } else if (n == 127) {
            if (c->rlen < 10)
                return 0;
            n = 0;
            for (int k = 0; k < 8; k++)
                n = n << 8 | b[2 + k];
            h = 10;
        }
        if (n > RBUF_CAP - h) {
            end(c, WSCL_END_PROTOCOL, 0);
            return ROOST_ECLOSED;
        }
        if (c->rlen < h + n)
            return 0;
        uint8_t op = b[0] & 0x0f;
        const uint8_t *d = b + h;
        if (op == 0x2 && n > 0) {
            c->cbs->on_message(c, d, (size_t)n, c->user);
        } else if (op == 0x9) { /* Ping: a Pong with the same data */
            (void)put_frame(c, 0xa, NULL, 0, d, (size_t)n);
            if (flush(c) < 0)
                return ROOST_ECLOSED;
        } else if (op == 0x8) {
            uint16_t code = n >= 2 ? (uint16_t)(d[0] << 8 | d[1]) : 1005;
            uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
            if (code != 1005 && put_frame(c, 0x8, NULL, 0, echo, 2) == 0)
                (void)flush(c);
            end(c, WSCL_END_CLOSE, code);
            return ROOST_ECLOSED;
        }
        if (c->st != ST_OPEN)
            return ROOST_ECLOSED;
        consume(c, h + (size_t)n);
    }
    return 0;
}

/* ------------------------------------------------------------ phases */

static void start_upgrade(struct wscl *c)
{
    uint8_t raw[16];
    gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof(raw));
    ws_base64_encode(raw, sizeof(raw), c->key);
    int n = snprintf((char *)c->wbuf, WBUF_CAP,
                     "GET " WS_PATH " HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " WS_SUBPROTOCOL
                     "\r\nUser-Agent: roost-bench\r\n\r\n",
                     c->tls ? c->tls->server_name : "localhost", c->key);
    c->wlen = (size_t)n;
    c->st = ST_HTTP;
    (void)flush(c);
}

static void handshake(struct wscl *c)
{
    int r = gnutls_handshake(c->sess);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        set_out(c, gnutls_record_get_direction(c->sess) == 1);
        return;
    }
    if (r < 0) {
        end(c, WSCL_END_CONNECT, r);
        return;
    }
    start_upgrade(c);
}

static void tcp_done(struct wscl *c)
{
    int err = 0;
    socklen_t el = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
        err = errno;
    if (err != 0) {
        end(c, WSCL_END_CONNECT, err);
        return;
    }
    if (c->tls == NULL) {
        start_upgrade(c);
        return;
    }
    if (gnutls_init(&c->sess, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != 0) {
        c->sess = NULL;
        end(c, WSCL_END_CONNECT, GNUTLS_E_MEMORY_ERROR);
        return;
    }
    gnutls_session_set_ptr(c->sess, c);
    const char *sn = c->tls->server_name;
    if (gnutls_set_default_priority(c->sess) != 0 ||
        gnutls_credentials_set(c->sess, GNUTLS_CRD_CERTIFICATE, c->tls->cred) != 0) {
        end(c, WSCL_END_CONNECT, GNUTLS_E_INTERNAL_ERROR);
        return;
    }
    gnutls_server_name_set(c->sess, GNUTLS_NAME_DNS, sn, strlen(sn));
    if (c->tls->pinned.size == 0)
        gnutls_session_set_verify_cert(c->sess, sn, 0);
    gnutls_transport_set_int(c->sess, c->fd);
    c->st = ST_TLS;
    handshake(c);
}

/* The upgrade's answer: 101, the accept key, the subprotocol. */
static void http_answer(struct wscl *c)
{
    uint8_t *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (e == NULL) {
        if (c->rlen > HEAD_MAX)
            end(c, WSCL_END_HTTP, 0);
        return;
    }
    size_t hl = (size_t)(e - c->rbuf) + 4;
    char head[HEAD_MAX + 1];
    size_t k = hl < HEAD_MAX ? hl : HEAD_MAX;
    memcpy(head, c->rbuf, k);
    head[k] = '\0';
    consume(c, hl);
    int status = 0;
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1 || status != 101) {
        end(c, WSCL_END_HTTP, status);
        return;
    }
    char accept[WS_ACCEPT_LEN + 1], want[128];
    ws_http_accept(c->key, accept);
    snprintf(want, sizeof(want), "Sec-WebSocket-Accept: %s\r\n", accept);
    if (strcasestr(head, want) == NULL ||
        strcasestr(head, "Sec-WebSocket-Protocol: " WS_SUBPROTOCOL "\r\n") == NULL) {
        end(c, WSCL_END_HTTP, status);
        return;
    }
    c->st = ST_OPEN;
    if (c->cbs->on_open != NULL)
        c->cbs->on_open(c, c->user);
    if (c->st == ST_OPEN)
        (void)frames(c); /* frames that came with the 101 */
}

void wscl_handle(struct wscl *c, uint32_t events)
{
    if (c->st == ST_DONE)
        return;
    if (c->st == ST_TCP) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            tcp_done(c);
        return;
    }
    if (c->st == ST_TLS) {
        handshake(c);
        if (c->st != ST_HTTP)
            return;
    }
    if ((events & EPOLLOUT) && c->wlen > 0 && flush(c) < 0)
        return;
    /* Read until the socket is empty (TLS may hold decrypted records). */
    for (int rounds = 0; rounds < 64 && c->st != ST_DONE; rounds++) {
        int r = fill(c);
        if (r <= 0)
            break;
        if (c->st == ST_HTTP)
            http_answer(c);
        else if (c->st == ST_OPEN && frames(c) < 0)
            break;
    }
}

/* ------------------------------------------------------------ API */

int wscl_connect(struct wscl **out, const char *host, uint16_t port, struct wscl_tls *tls, int epfd,
                 void *tag, const struct wscl_cbs *cbs, void *user)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        sl = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        sl = sizeof(*in6);
    } else {
        return ROOST_EINVAL;
    }
    struct wscl *c = malloc(sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    memset(c, 0, offsetof(struct wscl, rbuf));
    c->epfd = epfd;
    c->tag = tag;
    c->tls = tls;
    c->cbs = cbs;
    c->user = user;
    c->st = ST_TCP;
    c->want_out = true;
    gnutls_rnd(GNUTLS_RND_NONCE, &c->mask_rng, sizeof(c->mask_rng));
    c->mask_rng |= 1;
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd == -1) {
        free(c);
        return ROOST_ESYS;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as browsers do */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = tag};
    if ((connect(c->fd, (struct sockaddr *)&ss, sl) == -1 && errno != EINPROGRESS) ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
        close(c->fd);
        free(c);
        return ROOST_ESYS;
    }
    *out = c;
    return 0;
}

int wscl_send(struct wscl *c, uint8_t tag, const uint8_t *p, size_t n)
{
    if (c->st != ST_OPEN)
        return ROOST_ECLOSED;
    int rc = put_frame(c, 0x2, &tag, 1, p, n);
    if (rc != 0)
        return rc;
    if (!c->want_out && flush(c) < 0)
        return ROOST_ECLOSED;
    return 0;
}

int wscl_send_control(struct wscl *c, const uint8_t *body, size_t len)
{
    uint8_t b[FRAME_MAX_HDR + FRAME_MAX_BODY];
    int hl = frame_put_header(b, sizeof(b), len);
    if (hl < 0 || len > FRAME_MAX_BODY)
        return ROOST_EINVAL;
    memcpy(b + hl, body, len);
    return wscl_send(c, WS_TAG_CONTROL, b, (size_t)hl + len);
}

bool wscl_open(const struct wscl *c)
{
    return c->st == ST_OPEN;
}

void wscl_close(struct wscl *c)
{
    if (c->st == ST_DONE)
        return;
    if (c->st == ST_OPEN) {
        uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
        if (put_frame(c, 0x8, NULL, 0, code, 2) == 0)
            (void)flush(c);
        if (c->sess != NULL && c->st != ST_DONE)
            (void)gnutls_bye(c->sess, GNUTLS_SHUT_WR);
    }
    end(c, WSCL_END_LOCAL, 0);
}

void wscl_free(struct wscl *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->sess != NULL)
        gnutls_deinit(c->sess);
    free(c);
}
