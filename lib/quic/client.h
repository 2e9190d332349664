/* The client end of lib/quic: many connections driven from one thread.
 *
 * Each connection has its own connected UDP socket (its own source port,
 * so a relay's SO_REUSEPORT spreads connections over workers); one epoll
 * set and one timer heap serve them all. A connection verifies the server's
 * certificate against a CA file (or, in dev mode, a pinned certificate)
 * unless it resumes a session from a ticket the relay gave it earlier,
 * opens the control stream when the handshake completes, and then speaks
 * the conn API of quic.h, like a server connection: the two ends share
 * that code (quic_int.h says where they differ).
 *
 * The application sees connections through quic_app_ops: on_open's return
 * value is honoured as on the server; on_close runs exactly once per
 * connection (quic_conn_close_info tells how it ended), after which the
 * connection stays allocated until quic_client_conn_del.
 *
 * lib/client wraps this as the public roost_* API.
 *
 * Thread safety: a client and its connections belong to the thread that
 * created the client. Different clients are independent. */
#ifndef ROOST_QUIC_CLIENT_H
#define ROOST_QUIC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quic/quic.h"

struct quic_client;

#define QUIC_CLIENT_DEFAULT_HANDSHAKE_TIMEOUT_NS (10ULL * 1000000000ULL)
#define QUIC_CLIENT_DEFAULT_CONTROL_QUEUE_MAX (1 << 20)

struct quic_client_config {
    const char *ca_file;           /* PEM trust anchors */
    const char *pinned_cert;       /* dev mode: accept exactly this PEM certificate instead */
    const char *server_name;       /* SNI and name checked in the certificate; NULL: "localhost" */
    const char *alpn;              /* NULL: QUIC_ALPN */
    uint64_t idle_timeout_ns;      /* 0: QUIC_DEFAULT_IDLE_TIMEOUT_NS */
    uint64_t handshake_timeout_ns; /* 0: QUIC_CLIENT_DEFAULT_HANDSHAKE_TIMEOUT_NS */
    size_t control_queue_max;      /* unacked control bytes; 0: 1 MiB */
    const char *priority;          /* gnutls priority string; NULL: QUIC_DEFAULT_PRIORITY */
    /* Session resumption: the client keeps the latest ticket per relay
     * address (in memory, for the client's life) and offers it on the next
     * connection there: a resumed handshake skips the certificate. */
    bool no_tickets;
    /* Accept any server certificate: for an application that authenticates
     * the peer itself over the TLS exporter (trunks: docs/CLUSTER.md §2).
     * ca_file and pinned_cert may then both be NULL. */
    bool no_verify;
    /* ACK policy: how many ack-eliciting packets may arrive before an ACK
     * goes at once (ngtcp2_settings.ack_thresh). 0: 2, RFC 9000 §13.2.2's
     * SHOULD. A media receiver may raise it (QUIC_CLIENT_ACK_THRESH_MEDIA):
     * its ACKs then ride with its own datagrams, or go alone at the
     * delayed-ACK deadline (within the advertised max_ack_delay), not once
     * per two packets; docs/PROTOCOL.md "ACK policy of media receivers". */
    unsigned ack_thresh;
};

/* The media receiver's ACK threshold: at most ten packets without an ACK
 * (Chromium's ACK decimation uses the same bound), well under the
 * sender's initial congestion window. */
#define QUIC_CLIENT_ACK_THRESH_MEDIA 10u

/* The max_ack_delay a client with a raised ack_thresh advertises (ngtcp2's
 * default is 25 ms). Its delayed ACK goes alone about max_ack_delay - 10 ms
 * after the packet (conn.c ack_can_wait): 15 ms with 25 ms, shorter than a
 * talking client's 20 ms frame interval, so every talking receiver sent an
 * ACK-only packet just before its own frame. With 40 ms the ACK rides on
 * that frame; the relay's PTO grows by the same 15 ms (docs/PROTOCOL.md
 * §13). */
#define QUIC_CLIENT_MEDIA_MAX_ACK_DELAY_NS (40ULL * 1000000ULL)

/* cfg strings are read during the call; ops and arg are borrowed for the
 * client's life. Returns 0, ROOST_EINVAL, ROOST_ECRYPTO (CA or pinned
 * certificate unreadable), ROOST_ESYS, ROOST_ENOMEM. */
int quic_client_new(struct quic_client **out, const struct quic_client_config *cfg,
                    const struct quic_app_ops *ops, void *arg);
/* Frees every connection (without callbacks) and the client. Accepts NULL. */
void quic_client_del(struct quic_client *cl);

/* Starts a connection to host (numeric IPv4/IPv6) and port; user is set as
 * with quic_conn_set_user. Returns 0, ROOST_EINVAL, ROOST_ESYS,
 * ROOST_ECRYPTO, ROOST_EQUIC, ROOST_ENOMEM. */
int quic_client_connect(struct quic_client *cl, const char *host, uint16_t port, void *user,
                        struct quic_conn **out);
/* Frees a connection (closing it silently if still open: nothing is sent,
 * no callback). Accepts NULL. */
void quic_client_conn_del(struct quic_conn *c);
/* Any connection of the client, or NULL (for callers that free them all). */
struct quic_conn *quic_client_first(struct quic_client *cl);

/* Reads what arrived, runs timers and sends what is ready, at time now
 * (CLOCK_MONOTONIC ns). Never blocks. Returns 0 or ROOST_ESYS. */
int quic_client_process(struct quic_client *cl, uint64_t now);
/* ns until quic_client_process has work without input (UINT64_MAX: none). */
uint64_t quic_client_next_timeout(const struct quic_client *cl, uint64_t now);
/* The epoll fd, readable when quic_client_process has input. */
int quic_client_fd(const struct quic_client *cl);
/* Connections not yet over. */
unsigned quic_client_active(const struct quic_client *cl);
/* Forgets the ticket kept for host:port (the next connection there makes
 * a full handshake). */
void quic_client_forget_ticket(struct quic_client *cl, const char *host, uint16_t port);
/* True when the client keeps a ticket for host:port. */
bool quic_client_has_ticket(struct quic_client *cl, const char *host, uint16_t port);
/* Test hook: drop this share (0..1) of received datagrams. */
void quic_client_set_rx_drop(struct quic_client *cl, double share);

/* Path emulation (roost-bench --rtt, --jitter, --loss; bench/netem.h):
 * with a path set, every datagram a connection sends goes to out instead
 * of its socket, and every datagram read from its socket (after the rx
 * drop hook) goes to in instead of the connection. The path hands them on
 * later, from the client's thread, with quic_client_emit and
 * quic_client_deliver. gone runs when a connection is about to be freed:
 * the path must drop what it holds for it. data is valid during the call. */
struct quic_client_path {
    void (*out)(void *arg, struct quic_conn *c, const uint8_t *data, size_t len);
    void (*in)(void *arg, struct quic_conn *c, const uint8_t *data, size_t len);
    void (*gone)(void *arg, struct quic_conn *c);
};
/* path and arg are borrowed until the client is freed or the path is
 * replaced; NULL removes it. Set it before the first connection. */
void quic_client_set_path(struct quic_client *cl, const struct quic_client_path *path, void *arg);

/* The ACK threshold (quic_client_config.ack_thresh) of connections made
 * from now on; 0: the default. Set it before connecting: a connection's
 * ngtcp2 settings are fixed when it is made. */
void quic_client_set_ack_thresh(struct quic_client *cl, unsigned n);
/* Sends a datagram on the connection's socket now (a lost send is a lost
 * datagram, as on a real path). */
void quic_client_emit(struct quic_conn *c, const uint8_t *data, size_t len);
/* Reads a datagram into the connection at time now, as if it had just
 * arrived on its socket. Returns false when the connection is over. */
bool quic_client_deliver(struct quic_conn *c, const uint8_t *data, size_t len, uint64_t now);

/* Test hook (conformance): connections started from now on announce no
 * max_datagram_frame_size (0); a relay must refuse them (PROTOCOL.md §2). */
void quic_client_set_no_datagrams(struct quic_client *cl, bool on);
/* Test hooks (conformance): finish (FIN after the queued bytes) or reset
 * (RESET_STREAM with app_error) the control stream, which PROTOCOL.md §2
 * forbids. Returns 0, ROOST_ECLOSED (not open), ROOST_EQUIC. */
int quic_client_ctl_finish(struct quic_conn *c);
int quic_client_ctl_reset(struct quic_conn *c, uint64_t app_error);
/* The reason phrase of the connection's close (the peer's, or our own;
 * empty if none or not closed), cut to QUIC_REASON_MAX bytes, copied into
 * out as a C string (at most cap - 1 bytes). Returns its length. */
size_t quic_client_close_reason(const struct quic_conn *c, char *out, size_t cap);

/* Test hook (NAT rebinding): moves the connection to a new socket with a
 * new source port. Returns 0 or ROOST_ESYS. */
int quic_client_rebind(struct quic_conn *c);
/* The connection's current local UDP port. */
uint16_t quic_client_local_port(const struct quic_conn *c);

#endif
