/* Private to lib/ws: the structures shared by its files and the calls
 * between them.
 *
 *   ws.c        leaf: close codes, message tags, conn accessors
 *   wsshared.c  process-level state: credentials, sockets, reload,
 *               draining, counters
 *   wsconn.c    a connection's life: dirty list, epoll mask, deadlines
 *               and its timer, closing, freeing
 *   wsio.c      bytes to and from the socket: TLS push/pull, obuf, frames,
 *               output queues and the send API, writing at turn end
 *   wsweb.c     a plain GET: a static file from the web root
 *   wsinput.c   input: TLS handshake, HTTP upgrade, frames through wslay,
 *               messages to the application, socket events
 *   wsserver.c  a worker's server: accept, TLS setup, turn end, teardown
 *
 * Calls run one way, down this order: wsserver.c -> wsinput.c -> wsweb.c
 * -> wsio.c -> wsconn.c -> wsshared.c, ws.c. A file may call any file below it,
 * never one above it; ws.c and wsshared.c call no other file.
 *
 * Thread safety: as ws.h; a server, its connections and its counters
 * belong to its worker. */
#ifndef ROOST_WS_WS_INT_H
#define ROOST_WS_WS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <gnutls/gnutls.h>
#include <wslay/wslay.h>

#include "core/stat.h"
#include "core/timer.h"
#include "core/worker.h"
#include "ws/ws.h"

struct stat_slot {
    _Alignas(64) _Atomic uint64_t v[STAT_N(struct ws_stats)];
};

#define ST_ADD(s, f, n) stat_add((s)->st, STAT_IDX(struct ws_stats, f), (uint64_t)(n))
#define ST_INC(s, f) stat_inc((s)->st, STAT_IDX(struct ws_stats, f))
#define ST_DEC(s, f) stat_dec((s)->st, STAT_IDX(struct ws_stats, f))

/* Certificate credentials, counted: a gnutls session must keep its
 * credentials until it is deinitialised. Each TLS connection holds one
 * reference; ws_shared holds one for the current credentials, published
 * with RCU so that a reload can swap them while workers accept. */
struct ws_creds {
    _Atomic uint32_t refs;
    gnutls_certificate_credentials_t cred;
};

struct ws_shared {
    struct ws_shared_config cfg;
    struct ws_creds *creds; /* NULL when plain; RCU-published by ws_shared_reload_cert */
    _Atomic bool draining;
    gnutls_priority_t prio;
    struct sockaddr_storage bound;
    socklen_t bound_len;
    uint16_t port;
    int web_fd; /* the web root directory (O_PATH), -1: none */
    int fds[WORKER_MAX];
    struct stat_slot stats[WORKER_MAX];
};

enum conn_state {
    CS_TLS,     /* TLS handshake */
    CS_HTTP,    /* reading the upgrade request */
    CS_OPEN,    /* WebSocket */
    CS_CLOSING, /* our Close (or HTTP error) is being written; lingering */
    CS_DEAD,    /* socket closed; freed at turn end */
};

struct ctl_item {
    struct ctl_item *next;
    uint64_t at; /* queued at (worker time) */
    uint32_t len;
    uint8_t data[]; /* tag, §3.2 length prefix, body */
};

struct media_item {
    struct buf *b;
    uint32_t off, len;
    uint64_t at;
};

struct ws_conn {
    struct ws_server *s;
    int fd;
    uint32_t slot, gen;
    enum conn_state state;
    bool opened, closed_cb, dirty, blocked;
    bool close_own, close_frame_done, fin_sent;
    bool rx_eof, rx_err;
    uint32_t events; /* current epoll mask */
    struct ws_conn *dirty_next;
    gnutls_session_t tls;   /* NULL for plain ws:// */
    struct ws_creds *creds; /* counted; released after tls */
    wslay_event_context_ptr ws;
    struct timer timer;
    uint64_t timer_at;
    uint64_t t_accept, last_rx, ping_at, close_deadline;
    size_t rx_budget;
    /* Upgrade request; after the upgrade, [hoff, hlen) are early frames. */
    uint8_t *hbuf;
    size_t hlen, hoff;
    /* Bytes for the socket (ciphertext, or plaintext for ws://). */
    uint8_t *obuf;
    size_t ohead, olen, ocap;
    uint64_t out_total, sent_total;
    /* Control not yet handed to TLS, and control in obuf not yet sent. */
    struct ctl_item *cq_head, *cq_tail;
    size_t cq_bytes;
    bool ctl_in_out;
    uint64_t ctl_out_end, ctl_out_since;
    struct media_item *mq;
    unsigned mq_head, mq_n;
    uint16_t close_code;
    uint8_t reason[WS_CLOSE_REASON_MAX];
    size_t reason_len;
    void *user;
    struct ws_conn_stats cs;
};

struct conn_slot {
    struct ws_conn *c;
    uint32_t gen;
    uint32_t next_free;
};

struct ws_server {
    struct worker *w;
    struct ws_shared *sh;
    const struct ws_app_ops *ops;
    void *arg;
    unsigned id;
    int lfd;
    _Atomic uint64_t *st;
    struct conn_slot *slots;
    uint32_t n_slots, free_head, live;
    struct ws_conn *dirty_head;
    uint8_t scratch[16384];
};

/* wsshared.c */
/* Drops a credentials reference; frees on the last. Accepts NULL. Any
 * thread. */
void wsshared_creds_unref(struct ws_creds *cr);

/* wsconn.c */
/* The worker's clock. */
uint64_t wsconn_now(const struct ws_conn *c);
/* Puts the connection on its server's dirty list (written or freed at
 * turn end). */
void wsconn_mark_dirty(struct ws_conn *c);
/* The one leave path towards the application: on_close exactly once. */
void wsconn_notify_close(struct ws_conn *c, uint64_t app_error);
/* Sets the epoll mask from what obuf holds. */
void wsconn_set_events(struct ws_conn *c);
/* Closes the socket now; the memory goes at turn end. */
void wsconn_set_dead(struct ws_conn *c);
/* Ends the connection at once, without a Close frame. */
void wsconn_abort(struct ws_conn *c, uint64_t app_error);
/* Tells the application (if not yet), releases everything, frees c and
 * its slot. */
void wsconn_free(struct ws_conn *c);
/* Arms the timer for the connection's next deadline when it moved
 * earlier. */
void wsconn_schedule(struct ws_conn *c);
/* The connection timer's callback (arg: the connection). */
void wsconn_on_timer(struct timer *t, uint64_t now, void *arg);
/* From OPEN to CLOSING. own: we write our Close (code, reason);
 * otherwise wslay has queued its own. */
void wsconn_begin_close(struct ws_conn *c, uint64_t app_error, bool own, uint16_t code,
                        const char *reason);
/* Closes for a protocol violation / a reader too slow, counted. */
void wsconn_violation(struct ws_conn *c, const char *why);
void wsconn_too_slow(struct ws_conn *c, const char *why);

/* wsio.c */
/* gnutls transport callbacks (pointer: the connection). */
ssize_t wsio_tls_push(gnutls_transport_ptr_t p, const void *data, size_t n);
ssize_t wsio_tls_pull(gnutls_transport_ptr_t p, void *buf, size_t n);
int wsio_tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms);
/* Raw bytes from the socket: >0, 0 at EOF, ROOST_EAGAIN, ROOST_ESYS. */
ssize_t wsio_sock_recv(struct ws_conn *c, void *buf, size_t n);
/* Plaintext bytes from the connection: >0, 0 at EOF, ROOST_EAGAIN, or
 * ROOST_ESYS / ROOST_ECRYPTO. */
ssize_t wsio_rx(struct ws_conn *c, void *buf, size_t n);
/* Plaintext bytes towards the peer (through TLS when on). Returns 0,
 * ROOST_ENOMEM or ROOST_ECRYPTO. */
int wsio_tx(struct ws_conn *c, const uint8_t *p, size_t n);
/* wslay's send callback (user: the connection). */
ssize_t wsio_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                     void *user);
/* Fills obuf from the queues and writes it to the socket; may end the
 * connection. */
void wsio_write(struct ws_conn *c);

/* wsweb.c */
/* Answers a plain GET of path (NUL-ended, from ws_http_parse) with a file
 * of the web root, or an error status, through wsio_tx. Returns the HTTP
 * status written, or a negative error when nothing could be written. */
int wsweb_answer(struct ws_conn *c, const char *path);
/* Maps a request path to a name relative to the web root in rel (cap
 * bytes; "/" and ".../" name index.html). False when the path breaks the
 * rules of wsweb.c (characters, empty or dot-led segments). Pure. */
bool wsweb_map_path(const char *path, char *rel, size_t cap);

/* wsinput.c */
/* The connection socket's epoll callback (arg: the connection). */
void wsinput_on_event(struct worker *w, int fd, uint32_t events, void *arg);

#endif
