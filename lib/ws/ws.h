/* The WebSocket server on the worker runtime (docs/PROTOCOL.md §11): the
 * browser transport, shaped like lib/quic so that both can sit behind one
 * endpoint interface.
 *
 * Process level: a `ws_shared` is created by main before the worker pool
 * starts. It loads the certificate and key once (gnutls credentials), and
 * opens one SO_REUSEPORT listening TCP socket per worker, in worker order.
 * Plain ws:// (no TLS) is accepted only on a loopback address.
 *
 * Worker level: each worker creates its `ws_server` in its ops->start and
 * routes its runtime hooks here:
 *   ops->on_turn_end -> ws_server_turn_end
 *   ops->stop        -> ws_server_del
 * (no ring messages: a TCP connection never moves between workers). A
 * server owns its listening socket, its connections, their sockets and
 * their timers; everything runs on its worker's thread. Each connection is
 * TLS by gnutls (push/pull over the non-blocking socket through our own
 * buffers), the HTTP upgrade (lib/ws/http), then WebSocket framing: wslay
 * parses what the client sends (masking, fragments, Ping/Pong/Close), and
 * the relay's messages are framed here, so that media is never copied into
 * a queue it cannot be dropped from.
 *
 * Connections: the application sees them through ws_app_ops. Every
 * accepted connection ends with exactly one on_close, whatever the cause
 * (close by either side, idle or handshake timeout, protocol violation,
 * TCP or TLS error, server shutdown); after on_close the connection must
 * not be used (keep a ws_handle to refer to it later, it goes stale).
 *
 * Thread safety: ws_shared_* from main (ws_shared_stats*: any thread);
 * everything else on the owning worker's thread. */
#ifndef ROOST_WS_WS_H
#define ROOST_WS_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/worker.h"
#include "proto/errcode.h"

struct buf;
struct ws_shared;
struct ws_server;
struct ws_conn;

/* Channel tags: the first byte of every binary message (§11.2). */
#define WS_TAG_CONTROL 0x01
#define WS_TAG_MEDIA 0x02

#define WS_MESSAGE_MAX 65536 /* default cap of a received message, tag included */
#define WS_MESSAGE_MIN 16389 /* the cap may not go below tag + largest control frame */
#define WS_CLOSE_REASON_MAX 123

/* Application error codes this layer closes with (docs/PROTOCOL.md §6). */
#define WS_APP_NO_ERROR PROTO_ERR_NO_ERROR
#define WS_APP_INTERNAL PROTO_ERR_INTERNAL
#define WS_APP_PROTOCOL_VIOLATION PROTO_ERR_PROTOCOL_VIOLATION
#define WS_APP_SERVER_FULL PROTO_ERR_SERVER_FULL
#define WS_APP_TOO_SLOW PROTO_ERR_TOO_SLOW
#define WS_APP_GOING_AWAY PROTO_ERR_GOING_AWAY
#define WS_APP_IDLE_TIMEOUT PROTO_ERR_IDLE_TIMEOUT

struct ws_shared_config {
    const char *cert_file;         /* PEM certificate chain; NULL only with plain */
    const char *key_file;          /* PEM private key; NULL only with plain */
    bool plain;                    /* ws:// without TLS: refused unless addr is loopback */
    const char *addr;              /* numeric IPv4 or IPv6 address */
    uint16_t port;                 /* 0: ephemeral, chosen by the first socket */
    unsigned n_workers;            /* sockets to open, 1..WORKER_MAX */
    unsigned max_conns;            /* per worker; 0: 10000 */
    uint64_t handshake_timeout_ns; /* accept to 101 sent; 0: 5 s */
    uint64_t idle_timeout_ns;      /* nothing received; 0: 30 s */
    uint64_t ping_interval_ns;     /* silence before we Ping; 0: idle / 3 */
    uint64_t control_timeout_ns;   /* oldest unwritten control; 0: 5 s */
    uint64_t close_timeout_ns;     /* linger after our Close; 0: 2 s */
    uint64_t media_max_age_ns;     /* queued media older than this is dropped; 0: 500 ms */
    size_t max_message;            /* received message cap; 0: WS_MESSAGE_MAX */
    size_t control_queue_max;      /* unwritten control bytes; 0: 256 KiB */
    unsigned media_queue_max;      /* queued media packets; 0: 256 */
    size_t out_buffer;             /* encrypted bytes held above the socket; 0: 64 KiB */
    int sock_sndbuf;               /* SO_SNDBUF of accepted sockets; 0: kernel default */
    /* Static files for a plain GET (lib/ws/wsweb.c): a directory, opened
     * once by ws_shared_new; NULL: none (a plain GET gets 426). */
    const char *web_root;
};

/* The largest file the static server sends (bigger ones get 403). */
#define WS_WEB_FILE_MAX (4u << 20)

/* Per-worker counters; written only by the worker (relaxed, lib/core/stat.h). */
struct ws_stats {
    uint64_t accepted, conns_open, conns_closed, refused_full, refused_draining;
    uint64_t handshakes_ok, tls_failed, http_rejected, handshake_timeouts;
    uint64_t idle_timeouts, pings_sent, too_slow, protocol_violations, peer_closed, peer_reset;
    uint64_t bytes_in, bytes_out;
    uint64_t control_in, control_out, media_in, media_out;
    uint64_t media_drop_queue, media_drop_stale, media_drop_too_large, media_drop_state;
    uint64_t sock_errors;
    uint64_t web_served, web_refused; /* static GETs answered 200 / with an error */
};

/* Creates the shared state. Returns 0; ROOST_EINVAL (bad config, bad
 * address, plain on a non-loopback address, max_message below
 * WS_MESSAGE_MIN, web_root not a directory), ROOST_ECRYPTO (certificate/key unreadable), ROOST_ESYS
 * (socket, bind, listen), ROOST_ENOMEM. Main thread, before the pool
 * starts. */
int ws_shared_new(struct ws_shared **out, const struct ws_shared_config *cfg);
/* Frees; sockets not taken by a server are closed. Accepts NULL. Main
 * thread, after every server was deleted. */
void ws_shared_del(struct ws_shared *sh);
/* The bound TCP port (useful with port 0). */
uint16_t ws_shared_port(const struct ws_shared *sh);
/* Loads a new certificate chain and key for NEW connections; existing
 * sessions keep the credentials they started with, freed when the last of
 * them ends. On error (logged) the current credentials stay. Main thread,
 * while the workers run (it waits for an RCU grace period). Returns 0,
 * ROOST_EINVAL (a plain ws:// listener), ROOST_ECRYPTO or ROOST_ENOMEM. */
int ws_shared_reload_cert(struct ws_shared *sh, const char *cert_file, const char *key_file);
/* Draining: new TCP connections are closed at once (counted in
 * refused_draining); existing connections are untouched. Any thread. */
void ws_shared_set_draining(struct ws_shared *sh, bool on);
bool ws_shared_draining(const struct ws_shared *sh);
/* True when the numeric address is a loopback address (127.0.0.0/8, ::1,
 * ::ffff:127.x.y.z): the only addresses plain ws:// may bind. */
bool ws_addr_is_loopback(const char *addr);
/* Reads one worker's counters / the sum of all (values may lag). Any thread. */
void ws_shared_stats(const struct ws_shared *sh, unsigned worker, struct ws_stats *out);
void ws_shared_stats_total(const struct ws_shared *sh, struct ws_stats *out);

struct ws_app_ops {
    /* Upgrade complete (101 sent). Return 0 to accept, or an application
     * error code (> 0) to close the connection with it. */
    int (*on_open)(struct ws_conn *c, void *arg);
    /* One control-message body (type + fields, no tag and no length
     * prefix), as lib/quic delivers it. Borrowed for the call. */
    void (*on_control)(struct ws_conn *c, const uint8_t *body, size_t len, void *arg);
    /* One media packet (the §8.1 header and payload, no tag), unchecked,
     * like a QUIC DATAGRAM payload. Borrowed for the call. */
    void (*on_media)(struct ws_conn *c, const uint8_t *data, size_t len, void *arg);
    /* The connection ended (see the file comment). app_error is the code
     * it was closed with (ours, or the peer's mapped back, §11.4),
     * WS_APP_IDLE_TIMEOUT for idle and handshake timeouts,
     * WS_APP_GOING_AWAY for shutdown, WS_APP_PROTOCOL_VIOLATION for bad
     * frames and messages and rejected upgrades, WS_APP_INTERNAL for TCP
     * and TLS errors and a TCP close without a Close frame. */
    void (*on_close)(struct ws_conn *c, uint64_t app_error, void *arg);
};

/* Creates worker w's server on the socket the shared state opened for it.
 * sh, ops and arg are borrowed for the server's life. Returns 0,
 * ROOST_EINVAL (worker id out of range or socket already taken),
 * ROOST_ENOMEM, ROOST_ESYS. On w's thread (ops->start). */
int ws_server_new(struct ws_server **out, struct worker *w, struct ws_shared *sh,
                  const struct ws_app_ops *ops, void *arg);
/* Ends every connection (on_close with WS_APP_GOING_AWAY; a best-effort
 * Close frame 4012 is written), closes the sockets and frees. Accepts
 * NULL. */
void ws_server_del(struct ws_server *s);
/* Writes what connections queued this turn and frees ended ones. */
void ws_server_turn_end(struct ws_server *s);
/* Live connections on this server (accepted, not yet freed). */
unsigned ws_server_conn_count(const struct ws_server *s);

struct ws_handle {
    uint16_t worker;
    uint16_t pad;
    uint32_t slot;
    uint32_t gen;
};

/* The connection a handle names, or NULL when it ended. */
struct ws_conn *ws_server_conn(struct ws_server *s, struct ws_handle h);
struct ws_handle ws_conn_handle(const struct ws_conn *c);

/* Frames and queues a control message (body: 1..FRAME_MAX_BODY bytes,
 * copied). Returns 0; ROOST_EINVAL (bad length); ROOST_ECLOSED (not open);
 * ROOST_EFULL when the peer stopped reading: the connection is then being
 * closed with WS_APP_TOO_SLOW (on_close has run); ROOST_ENOMEM. */
int ws_conn_send_control(struct ws_conn *c, const uint8_t *body, size_t len);
/* Queues b[off, off+len) as one media message (tag added here); takes its
 * own reference to b, released when the packet is written or dropped.
 * When the queue is full the oldest queued packet is dropped (counted) to
 * make room. Returns 0, or ROOST_ECLOSED / ROOST_ETOOBIG (dropped and
 * counted; no reference taken). */
int ws_conn_queue_media(struct ws_conn *c, struct buf *b, uint32_t off, uint32_t len);
/* Copying convenience for small payloads: allocates a buffer. Returns as
 * ws_conn_queue_media, or ROOST_ENOMEM. */
int ws_conn_send_media(struct ws_conn *c, const uint8_t *data, size_t len);
/* Closes with an application error (Close frame 1000 or 4000 + code, with
 * reason cut to WS_CLOSE_REASON_MAX bytes at a character boundary; reason
 * may be NULL). on_close runs before this returns (unless the connection
 * already ended). Control queued before a NO_ERROR close is still written
 * first; queued media is discarded. */
void ws_conn_close(struct ws_conn *c, uint64_t app_error, const char *reason);
void ws_conn_set_user(struct ws_conn *c, void *u);
void *ws_conn_user(const struct ws_conn *c);
/* True once on_open ran and accepted the connection. */
bool ws_conn_opened(const struct ws_conn *c);
/* True for a wss:// connection (false: plain ws:// on loopback). */
bool ws_conn_tls(const struct ws_conn *c);
struct ws_server *ws_conn_server(const struct ws_conn *c);

struct ws_conn_stats {
    uint64_t srtt_ns, rttvar_ns; /* TCP's estimate (TCP_INFO) */
    uint64_t cwnd_bytes, retrans;
    uint64_t bytes_in, bytes_out;
    uint64_t control_in, control_out, media_in, media_out;
    uint64_t media_drop_queue, media_drop_stale, media_drop_too_large;
    uint64_t control_pending; /* control bytes not yet written to the socket */
    uint64_t media_queued;    /* packets waiting */
    uint64_t out_buffered;    /* encrypted bytes waiting for the socket */
};
/* Fills *out (TCP fields zero if the kernel does not answer). */
void ws_conn_stats(struct ws_conn *c, struct ws_conn_stats *out);

/* Classifies one received binary message (§11.2), pure. Returns
 * WS_TAG_CONTROL with body[0..*body_len) the control body (type + fields,
 * 1..FRAME_MAX_BODY bytes), WS_TAG_MEDIA with the media packet (any
 * length, checked by the caller as a QUIC datagram would be), or
 * ROOST_EMALFORMED: empty message, unknown tag, or a control message that
 * is not exactly one §3.2 frame (a PROTOCOL_VIOLATION). */
int ws_msg_parse(const uint8_t *msg, size_t len, const uint8_t **body, size_t *body_len);

/* WebSocket close code for a roost code (§11.4), and back. */
uint16_t ws_close_code_from_app(uint64_t app_error);
uint64_t ws_app_from_close_code(uint16_t code);

#endif
