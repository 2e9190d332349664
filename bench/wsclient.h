/* A non-blocking WebSocket client for roost-bench's WebSocket participants
 * (docs/PROTOCOL.md §11): TCP, TLS by gnutls (or plain ws:// to a loopback
 * relay), the HTTP/1.1 upgrade with subprotocol roost.v1, and RFC 6455
 * framing (client frames masked; server frames unmasked and unfragmented,
 * as the relay writes them). It does no waiting of its own: the caller's
 * epoll set holds its socket (data.ptr as given to wscl_connect) and the
 * caller passes each readiness to wscl_handle, so that hundreds of
 * connections share one bench thread with its QUIC connections and timers.
 *
 * test/common/ws_client is the blocking test client (it sends what a
 * browser never would); this one is the well-behaved, event-driven one.
 * Both use lib/ws for the accept key and the message tags.
 *
 * Thread safety: none; a client and its wscl_tls on one thread. */
#ifndef ROOST_BENCH_WSCLIENT_H
#define ROOST_BENCH_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wscl;
struct wscl_tls;

/* How a connection ended (on_close, exactly once per connection). */
enum wscl_end {
    WSCL_END_CLOSE = 0, /* a Close frame from the server; code: its status (1005: none) */
    WSCL_END_EOF,       /* TCP/TLS ended without a Close frame (EOF, reset); code: errno or 0 */
    WSCL_END_CONNECT,   /* TCP connect or TLS handshake failed; code: errno or gnutls error */
    WSCL_END_HTTP,      /* the upgrade was refused or malformed; code: HTTP status (0: bad) */
    WSCL_END_PROTOCOL,  /* the server broke the framing (masked, fragmented, too big) */
    WSCL_END_LOCAL,     /* closed by wscl_close */
};

struct wscl_cbs {
    /* The 101 arrived: messages may be sent. */
    void (*on_open)(struct wscl *c, void *user);
    /* One binary message (tag first), borrowed for the call. */
    void (*on_message)(struct wscl *c, const uint8_t *msg, size_t len, void *user);
    /* The connection ended; c stays valid (wscl_free it) but sends fail. */
    void (*on_close)(struct wscl *c, enum wscl_end why, int64_t code, void *user);
};

/* Client TLS credentials: trust anchors (ca_file) or, for development,
 * exactly one pinned PEM certificate. Returns 0, ROOST_EINVAL (neither),
 * ROOST_ECRYPTO (unreadable), ROOST_ENOMEM. */
int wscl_tls_new(struct wscl_tls **out, const char *ca_file, const char *pinned_cert,
                 const char *server_name);
void wscl_tls_del(struct wscl_tls *t);

/* Starts connecting to host:port (numeric) and adds the socket to epfd
 * with data.ptr = tag. tls NULL: plain ws://. The callbacks run from
 * wscl_handle (never from here). Returns 0, ROOST_EINVAL, ROOST_ESYS,
 * ROOST_ENOMEM, ROOST_ECRYPTO. */
int wscl_connect(struct wscl **out, const char *host, uint16_t port, struct wscl_tls *tls, int epfd,
                 void *tag, const struct wscl_cbs *cbs, void *user);
/* Handles readiness (epoll events) of c's socket. */
void wscl_handle(struct wscl *c, uint32_t events);
/* Frames, masks and writes one binary message [tag][p..p+n). What the
 * socket does not take waits in a bounded buffer (written on EPOLLOUT).
 * Returns 0; ROOST_ECLOSED (not open); ROOST_EFULL (buffer full: dropped,
 * nothing written); ROOST_ETOOBIG. */
int wscl_send(struct wscl *c, uint8_t tag, const uint8_t *p, size_t n);
/* A control message: tag 0x01, the §3.2 length prefix, body. */
int wscl_send_control(struct wscl *c, const uint8_t *body, size_t len);
bool wscl_open(const struct wscl *c);
/* Best effort: a Close frame with status 1000 (when open and the socket
 * takes it now), then the socket is closed; on_close runs with
 * WSCL_END_LOCAL unless the connection already ended. */
void wscl_close(struct wscl *c);
/* Closes (without callbacks) and frees. Accepts NULL. */
void wscl_free(struct wscl *c);

#endif
