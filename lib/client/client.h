/* roost client endpoint: many QUIC connections driven from one thread.
 *
 * The bench runs thousands of connections per endpoint, the CLI one, the
 * tests a few hundred. Each connection has its own UDP socket (its own
 * source port, so the relay's SO_REUSEPORT spreads connections over
 * workers); one epoll set and one timer heap serve them all. The endpoint
 * never blocks except in roost_client_step.
 *
 * A connection verifies the relay's certificate against a CA file (or, in
 * dev mode, a pinned certificate), opens the control stream once the
 * handshake completes, carries control-message bodies both ways (framed with
 * lib/proto framing) and DATAGRAMs.
 *
 * Thread safety: an endpoint and its connections belong to the thread that
 * created the endpoint. Different endpoints are independent. */
#ifndef ROOST_CLIENT_CLIENT_H
#define ROOST_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct roost_client;
struct roost_conn;

struct roost_client_config {
    const char *ca_file;           /* PEM trust anchors */
    const char *pinned_cert;       /* dev mode: accept exactly this PEM certificate instead */
    const char *server_name;       /* SNI and name checked in the certificate; NULL: "localhost" */
    const char *alpn;              /* NULL: "roost/1" (tests offer others) */
    uint64_t idle_timeout_ns;      /* 0: 30 s */
    uint64_t handshake_timeout_ns; /* 0: 10 s */
    size_t control_queue_max;      /* unacked control bytes; 0: 1 MiB */
};

/* How a connection ended. */
struct roost_close_info {
    bool remote;   /* the relay closed it (CONNECTION_CLOSE received) */
    bool app;      /* code is an application code (PROTOCOL.md §6), else transport */
    bool opened;   /* the handshake had completed */
    bool idle;     /* idle or handshake timeout */
    bool reset;    /* stateless reset received */
    uint64_t code; /* application or transport error code (TLS alert: 0x100 + alert) */
    int liberr;    /* ngtcp2 error that ended it locally, 0 if none */
};

struct roost_client_callbacks {
    /* Handshake complete and the control stream is open. */
    void (*on_open)(struct roost_conn *c, void *arg);
    /* A control-message body, borrowed for the call. */
    void (*on_control)(struct roost_conn *c, const uint8_t *body, size_t len, void *arg);
    /* A DATAGRAM payload, borrowed for the call. */
    void (*on_datagram)(struct roost_conn *c, const uint8_t *data, size_t len, void *arg);
    /* Exactly once per connection; the connection stays allocated until
     * roost_conn_del. */
    void (*on_close)(struct roost_conn *c, const struct roost_close_info *info, void *arg);
};

/* Creates an endpoint. cfg strings are read during the call; cbs and arg
 * are borrowed for the endpoint's life. Returns 0, ROOST_EINVAL,
 * ROOST_ECRYPTO (CA or pinned certificate unreadable), ROOST_ESYS,
 * ROOST_ENOMEM. */
int roost_client_new(struct roost_client **out, const struct roost_client_config *cfg,
                     const struct roost_client_callbacks *cbs, void *arg);
/* Frees every connection (without callbacks) and the endpoint. Accepts NULL. */
void roost_client_del(struct roost_client *cl);

/* Starts a connection to host (numeric IPv4/IPv6) and port. user is
 * returned by roost_conn_user. Returns 0, ROOST_EINVAL, ROOST_ESYS,
 * ROOST_ECRYPTO, ROOST_EQUIC, ROOST_ENOMEM. */
int roost_client_connect(struct roost_client *cl, const char *host, uint16_t port, void *user,
                         struct roost_conn **out);

/* Waits up to timeout_ms (0: poll) for packets or timers, processes them,
 * and sends what is ready. Returns 0 or ROOST_ESYS. */
int roost_client_step(struct roost_client *cl, int timeout_ms);
/* The endpoint's epoll fd (readable when roost_client_process has work),
 * for callers with their own loop. */
int roost_client_fd(const struct roost_client *cl);
/* Non-blocking step at time now (CLOCK_MONOTONIC ns). Returns 0 or
 * ROOST_ESYS. */
int roost_client_process(struct roost_client *cl, uint64_t now);
/* ns until the next timer (UINT64_MAX: none). */
uint64_t roost_client_next_timeout(const struct roost_client *cl, uint64_t now);
/* Connections not yet closed. */
unsigned roost_client_active(const struct roost_client *cl);
/* Test hook: drop this share (0..1) of received datagrams. */
void roost_client_set_rx_drop(struct roost_client *cl, double share);

/* Frames and queues a control body (1..FRAME_MAX_BODY bytes, copied); it is
 * sent once the control stream is open. Returns 0, ROOST_EINVAL,
 * ROOST_ETOOBIG, ROOST_ECLOSED, ROOST_EFULL, ROOST_ENOMEM. */
int roost_conn_send_control(struct roost_conn *c, const uint8_t *body, size_t len);
/* Queues one DATAGRAM (copied). Returns 0, ROOST_ECLOSED (not open),
 * ROOST_EFULL (queue full: dropped), ROOST_ENOMEM. */
int roost_conn_send_datagram(struct roost_conn *c, const uint8_t *data, size_t len);
/* Closes with an application error code; on_close runs now. */
void roost_conn_close(struct roost_conn *c, uint64_t app_error);
/* Frees a connection (closing it silently if still open, no callback).
 * Accepts NULL. */
void roost_conn_del(struct roost_conn *c);
void *roost_conn_user(const struct roost_conn *c);
bool roost_conn_is_open(const struct roost_conn *c);
bool roost_conn_is_closed(const struct roost_conn *c);
/* Test hook (NAT rebinding): moves the connection to a new socket with a
 * new source port. Returns 0 or ROOST_ESYS. */
int roost_conn_rebind(struct roost_conn *c);
/* The connection's current local UDP port. */
uint16_t roost_conn_local_port(const struct roost_conn *c);

struct roost_conn_stats {
    uint64_t srtt_ns, min_rtt_ns, latest_rtt_ns, rttvar_ns;
    uint64_t cwnd, bytes_in_flight;
    uint64_t dgram_sent, dgram_recv, dgram_acked, dgram_lost, dgram_dropped;
    uint64_t control_sent, control_recv;
};
void roost_conn_stats(const struct roost_conn *c, struct roost_conn_stats *out);

#endif
