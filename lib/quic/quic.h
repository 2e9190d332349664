/* The QUIC server on the worker runtime (DESIGN.md §1-§3), and the
 * connection API both ends share (the client end is quic/client.h).
 *
 * Process level: a `quic_shared` is created by main before the worker pool
 * starts. It loads the certificate and key once, loads (or creates) the
 * static secrets in the state directory, opens one SO_REUSEPORT UDP socket
 * per worker in worker order, and holds the global rate limits and the
 * per-worker counters.
 *
 * Worker level: each worker creates its `quic_server` in its ops->start
 * (which registers the ring messages QUIC_MSG_FIRST..LAST with the runtime,
 * worker_handle) and routes its other runtime hooks here:
 *   ops->on_turn_end -> quic_server_turn_end
 *   ops->stop        -> quic_server_del
 * A server owns its socket, its connections and their timers; everything
 * runs on its worker's thread.
 *
 * Connections: the application sees them through quic_app_ops. Every
 * connection that was created ends with exactly one on_close, whatever the
 * cause (close by either side, idle timeout, handshake timeout, stateless
 * reset, error, server shutdown); after on_close the connection must not be
 * used (keep a quic_handle to refer to it later, it goes stale).
 *
 * Thread safety: quic_shared_* from main (quic_shared_stats: any thread);
 * everything else on the owning worker's thread. */
#ifndef ROOST_QUIC_QUIC_H
#define ROOST_QUIC_QUIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/worker.h"
#include "proto/errcode.h"

struct buf;
struct quic_shared;
struct quic_server;
struct quic_conn;

#define QUIC_ALPN "roost/1"

/* Application error codes this layer closes with (docs/PROTOCOL.md §6). */
#define QUIC_APP_NO_ERROR PROTO_ERR_NO_ERROR
#define QUIC_APP_INTERNAL PROTO_ERR_INTERNAL
#define QUIC_APP_PROTOCOL_VIOLATION PROTO_ERR_PROTOCOL_VIOLATION
#define QUIC_APP_SERVER_FULL PROTO_ERR_SERVER_FULL
#define QUIC_APP_TOO_SLOW PROTO_ERR_TOO_SLOW
#define QUIC_APP_GOING_AWAY PROTO_ERR_GOING_AWAY
#define QUIC_APP_IDLE_TIMEOUT PROTO_ERR_IDLE_TIMEOUT
#define QUIC_APP_RATE_LIMITED PROTO_ERR_RATE_LIMITED /* receive budget exceeded */

/* Ring message types owned by this layer (0x0100-0x01ff). */
#define QUIC_MSG_FIRST 0x0100
#define QUIC_MSG_FWD 0x0100   /* u.ptr[0]: struct buf * holding a mis-routed packet */
#define QUIC_MSG_ADOPT 0x0101 /* u.ptr[0]: a struct quic_conn * handed off (handoff.c) */
#define QUIC_MSG_UNFWD 0x0102 /* u.bytes: a retired CID's forwarding entry to drop */
#define QUIC_MSG_LAST 0x01ff

/* Defaults for a zero field of quic_shared_config (relay/config.c uses them
 * too, so a default is written once). */
#define QUIC_DEFAULT_IDLE_TIMEOUT_NS (30ULL * 1000000000ULL)
#define QUIC_DEFAULT_HANDSHAKE_TIMEOUT_NS (5ULL * 1000000000ULL)
#define QUIC_DEFAULT_RETRY_THRESHOLD 256
#define QUIC_DEFAULT_MAX_CONNS 100000
#define QUIC_DEFAULT_CONTROL_QUEUE_MAX (256 * 1024)
#define QUIC_DEFAULT_DGRAM_QUEUE_MAX 256
/* A datagram the congestion controller (or the pacer) holds back waits in
 * its connection's queue at most this long from the write that first held
 * it (not from its queueing: a busy loop is no hold), then is dropped and
 * counted (reason cwnd_aged): two 20 ms frame intervals. */
#define QUIC_DEFAULT_DGRAM_MAX_AGE_NS (40ULL * 1000000ULL)
#define QUIC_DEFAULT_SOCK_BUF (4 << 20)
#define QUIC_DEFAULT_RATE 1000 /* retry, vn, reset and close replies per second */
#define QUIC_DEFAULT_RATE_BURST 100
/* TLS 1.3 only, AEADs we accept, X25519 first: both ends send their key
 * share for the first group, so a roost client and relay use X25519
 * (cheaper than P-256) and fall back to P-256/P-384 with other peers.
 * PSK resumption uses psk_dhe_ke (docs/OPERATIONS.md says why). */
#define QUIC_DEFAULT_PRIORITY                                                                      \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"      \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:%DISABLE_TLS13_COMPAT_MODE"
/* Ticket master key rotation period; tickets live two periods at most. */
#define QUIC_DEFAULT_TICKET_PERIOD_S (6u * 3600u)

/* The steering program (quic_shared_config.steer; steer.h). */
enum quic_steer_mode {
    QUIC_STEER_AUTO, /* extended BPF, else classic BPF, else the hash */
    QUIC_STEER_EBPF, /* extended BPF, else the hash */
    QUIC_STEER_CBPF, /* classic BPF, else the hash */
    QUIC_STEER_HASH, /* the 4-tuple hash (as no_steering) */
};

struct quic_shared_config {
    const char *cert_file; /* PEM certificate chain */
    const char *key_file;  /* PEM private key */
    const char *state_dir; /* holds quic-secrets (created 0600 if absent); NULL: random per run */
    const char *addr;      /* numeric IPv4 or IPv6 address */
    uint16_t port;         /* 0: ephemeral, chosen by the first socket */
    unsigned n_workers;    /* sockets to open, 1..WORKER_MAX */
    uint64_t idle_timeout_ns;      /* 0: 30 s */
    uint64_t handshake_timeout_ns; /* 0: 5 s */
    unsigned retry_threshold;      /* half-open conns per worker before Retry; 0: 256 */
    bool force_retry;              /* always validate addresses with Retry */
    unsigned max_conns;            /* per worker; 0: 100000 */
    size_t control_queue_max;      /* unacked control bytes per conn; 0: 256 KiB */
    unsigned dgram_queue_max;      /* queued datagrams per conn; 0: 256 */
    uint64_t dgram_max_age_ns;     /* cwnd-blocked datagram age limit; 0: 40 ms */
    int sock_buf;                  /* requested SO_RCVBUF/SO_SNDBUF; 0: 4 MiB */
    uint32_t retry_rate, vn_rate, reset_rate, close_rate; /* per second, 0: 1000 */
    uint32_t rate_burst;                                  /* 0: 100 */
    uint32_t handshake_rate;                              /* new ones/s before Retry; 0: no cap */
    /* TLS: gnutls priority string (NULL: QUIC_DEFAULT_PRIORITY), checked by
     * quic_shared_new; session tickets (keys in state_dir/quic-tickets, or
     * random per run without a state_dir), rotated every ticket_period_s
     * (0: QUIC_DEFAULT_TICKET_PERIOD_S); no_tickets: full handshakes only. */
    const char *priority;
    unsigned ticket_period_s;
    bool no_tickets;
    /* Kernel steering of short-header packets to their connection's worker
     * (steer.h); on by default, falling back to the 4-tuple hash with one
     * log line when the kernel refuses. no_steering: hash only. steer:
     * which program (QUIC_STEER_AUTO: extended BPF, else classic, else the
     * hash; the environment variable ROOST_STEERING=ebpf|cbpf|hash forces
     * one when this is AUTO). */
    bool no_steering;
    enum quic_steer_mode steer;
    /* Receive budgets, checked before decryption (lib/quic/budget.h):
     * packets/s and bytes/s per connection (over: closed with
     * QUIC_APP_RATE_LIMITED) and per source IP address per worker (over:
     * the packet is dropped). 0: unlimited. */
    uint32_t conn_pkt_rate, addr_pkt_rate;
    uint64_t conn_byte_rate, addr_byte_rate;
    /* A second ALPN the server accepts besides QUIC_ALPN (relay trunks:
     * "roost-trunk/1"); the application tells them apart with
     * quic_conn_alpn_is. NULL: QUIC_ALPN only. Static storage. */
    const char *alpn2;
};

/* Per-worker counters; written only by the worker (relaxed). */
struct quic_stats {
    uint64_t pkts_in, pkts_out, bytes_in, bytes_out;
    uint64_t handshakes_ok, handshakes_failed, handshake_timeouts, idle_timeouts;
    uint64_t conns_open, conns_half_open, conns_closed, resets_received;
    uint64_t retry_sent, vn_sent, reset_sent, close_sent, rate_limited;
    uint64_t fwd_out, fwd_in, fwd_dropped;
    uint64_t malformed, unknown_cid;
    uint64_t control_in, control_out, too_slow;
    /* dgram_lost: declared lost by ngtcp2 and not acked within the reorder
     * window; dgram_spurious: declared lost, then acked (reordering);
     * dgram_drop_cwnd: held back by the congestion controller or the pacer
     * longer than dgram_max_age_ns; dgram_drop_too_large: fits no packet of
     * the receiver's current path; dgram_drop_queue: over dgram_queue_max;
     * dgram_drop_state: the connection was not open (closing, closed, or
     * still queued when it closed). */
    uint64_t dgram_in, dgram_out, dgram_lost, dgram_drop_cwnd, dgram_drop_too_large,
        dgram_drop_queue, dgram_drop_state, dgram_spurious;
    /* The send path: QUIC packets connections wrote (stateless replies
     * and close resends are not counted), ngtcp2 write calls (write_pkt,
     * writev_stream, writev_datagram) and those that wrote nothing,
     * sendmmsg calls; received packets during whose read no stream data
     * or datagram reached the application (ACK-only, mostly). */
    uint64_t pkts_written, write_calls, write_empty, sendmmsg_calls, ack_only_in;
    /* Connection timers that fired, and delayed-ACK timers settled at a
     * write instead (no wake-up for them; connwrite.c settle_ack); writes
     * the pacer made wait (datagrams or control bytes left for its send
     * time; connwrite.c pace_set); writes of datagrams only that re-armed
     * the timer without reading ngtcp2's expiry (connwrite.c
     * expiry_after_dgrams). */
    uint64_t timer_fires, acks_settled, pace_holds, expiry_kept;
    uint64_t sock_eagain, sock_errors;
    /* Admission: Initials answered with Retry (half-open limit / handshake
     * rate) or refused with a stateless CONNECTION_CLOSE (full / draining). */
    uint64_t retry_half_open, retry_rate, refused_full, refused_draining;
    /* Handshakes that resumed a session from a ticket (no certificate). */
    uint64_t tls_resumed;
    /* Of those, resumed without a key exchange (psk_ke, no forward secrecy:
     * only with a priority string that enables it). */
    uint64_t tls_resumed_psk_ke;
    /* Server TLS sessions freed once their handshake completed. */
    uint64_t tls_released;
    /* Gauge: connections holding a datagram queue (made at a first
     * datagram, freed after QUIC_DQ_IDLE_NS idle). */
    uint64_t dgram_queues;
    /* Receive budgets: connections closed for exceeding theirs, packets
     * dropped by a connection's (after its close) or an address's budget,
     * address entries evicted from the bounded table. */
    uint64_t budget_closed, budget_dropped_conn, budget_dropped_addr, budget_addr_evictions;
    /* Hand-off (quic_conn_handoff): connections sent to and adopted from
     * other workers, hand-offs given up (closed first, or no slot), and
     * the gauge of forwarding entries for CIDs of connections that left. */
    uint64_t handoffs_out, handoffs_in, handoffs_failed, handoff_fwd_cids;
};

/* Creates the shared state. Returns 0; ROOST_EINVAL (bad config/address,
 * quic-secrets not a regular file), ROOST_EACCES (quic-secrets readable
 * or writable by group or others: logged with the chmod to run),
 * ROOST_ECRYPTO (certificate/key unreadable), ROOST_EIO (state dir),
 * ROOST_ESYS (socket), ROOST_ENOMEM. Main thread, before the pool starts. */
int quic_shared_new(struct quic_shared **out, const struct quic_shared_config *cfg);
/* Frees; sockets not taken by a server are closed. Accepts NULL. Main
 * thread, after every server was deleted. */
void quic_shared_del(struct quic_shared *sh);
/* Loads a new certificate chain and key for NEW connections; existing
 * sessions keep the credentials they started with, freed when the last of
 * them ends. On error (logged) the current credentials stay. Main thread,
 * while the workers run (it waits for an RCU grace period). Returns 0,
 * ROOST_ECRYPTO or ROOST_ENOMEM. */
int quic_shared_reload_cert(struct quic_shared *sh, const char *cert_file, const char *key_file);
/* Makes a new ticket master key current; the current one stays valid as
 * the previous one for one period, the previous one is dropped (its
 * tickets get full handshakes). Also runs every ticket_period_s on the
 * shared state's own timer thread. Main thread (SIGHUP), while the workers
 * run (it waits for an RCU grace period). Returns 0; ROOST_EAGAIN (a
 * rotation is under way), ROOST_EINVAL (tickets off), ROOST_EIO,
 * ROOST_ECRYPTO, ROOST_ENOMEM; on error the keys stay. */
int quic_shared_rotate_tickets(struct quic_shared *sh);
/* True when the kernel steers packets by connection ID (steer.h). */
bool quic_shared_steering(const struct quic_shared *sh);
/* The steering in force: "ebpf", "cbpf" or "hash" (steer.h). */
const char *quic_shared_steering_mode(const struct quic_shared *sh);
/* CIDs of handed-off connections the kernel steers to their new worker
 * (extended BPF; 0 otherwise). One bpf(2) call per CID: tests. */
size_t quic_shared_steer_moved(const struct quic_shared *sh);
/* Checks a gnutls priority string; on error writes the reason with the
 * position gnutls stopped at into msg. Returns 0 or ROOST_EINVAL. */
int quic_priority_check(const char *priority, char *msg, size_t msglen);
/* The bound UDP port (useful with port 0). */
uint16_t quic_shared_port(const struct quic_shared *sh);
/* Reads one worker's counters (values may lag). Any thread. */
void quic_shared_stats(const struct quic_shared *sh, unsigned worker, struct quic_stats *out);
/* Sum of every worker's counters. Any thread. */
void quic_shared_stats_total(const struct quic_shared *sh, struct quic_stats *out);
/* Draining: every new Initial is refused with a stateless CONNECTION_CLOSE
 * (CONNECTION_REFUSED); existing connections are untouched. Any thread. */
void quic_shared_set_draining(struct quic_shared *sh, bool on);
bool quic_shared_draining(const struct quic_shared *sh);
/* Changes the half-open threshold (Retry above it; 0: keep) and the
 * per-worker connection limit (0: keep). A lower limit refuses new
 * Initials until enough connections close (open ones stay); a higher one
 * lets each worker grow its connection slot table, on that worker, when
 * the table fills. Takes effect for the next Initial. Any thread (SIGHUP
 * reload on main). */
void quic_shared_set_limits(struct quic_shared *sh, unsigned max_conns, unsigned retry_threshold);

struct quic_app_ops {
    /* Handshake complete. Return 0 to accept, or an application error code
     * (> 0) to close the connection with it. */
    int (*on_open)(struct quic_conn *c, void *arg);
    /* One control-message body (type + fields, no length prefix). The bytes
     * are borrowed for the call. */
    void (*on_control)(struct quic_conn *c, const uint8_t *body, size_t len, void *arg);
    /* One DATAGRAM payload, borrowed for the call. */
    void (*on_datagram)(struct quic_conn *c, const uint8_t *data, size_t len, void *arg);
    /* The connection ended (see the file comment). app_error is the code
     * the connection was closed with (ours or the peer's), QUIC_APP_IDLE_TIMEOUT
     * for idle/handshake timeouts, QUIC_APP_GOING_AWAY for shutdown,
     * QUIC_APP_INTERNAL for transport errors and resets. */
    void (*on_close)(struct quic_conn *c, uint64_t app_error, void *arg);
    /* Hand-off (quic_conn_handoff), optional: on_detach runs on the old
     * worker when the connection leaves it (at turn end), on_adopt on the
     * new worker when it arrives; the user pointer travels with it. A
     * connection still in a ring at shutdown gets on_close
     * (QUIC_APP_GOING_AWAY) from the runtime's discard, after the workers
     * stopped. */
    void (*on_detach)(struct quic_conn *c, void *arg);
    void (*on_adopt)(struct quic_conn *c, void *arg);
};

/* Creates worker w's server on the socket the shared state opened for it.
 * sh, ops and arg are borrowed for the server's life. Returns 0,
 * ROOST_EINVAL (worker id out of range or socket already taken),
 * ROOST_ENOMEM, ROOST_ESYS. On w's thread (ops->start). */
int quic_server_new(struct quic_server **out, struct worker *w, struct quic_shared *sh,
                    const struct quic_app_ops *ops, void *arg);
/* Ends every connection (on_close with QUIC_APP_GOING_AWAY, a best-effort
 * CONNECTION_CLOSE is sent), closes the socket and frees. Accepts NULL. */
void quic_server_del(struct quic_server *s);
/* Writes packets for every connection with work and flushes the send batch. */
void quic_server_turn_end(struct quic_server *s);
/* Live connections on this server. */
unsigned quic_server_conn_count(const struct quic_server *s);

struct quic_handle {
    uint16_t worker;
    uint16_t pad;
    uint32_t slot;
    uint32_t gen;
};

/* The connection a handle names, or NULL when it ended. */
struct quic_conn *quic_server_conn(struct quic_server *s, struct quic_handle h);
struct quic_handle quic_conn_handle(const struct quic_conn *c);

/* Frames and queues a control message (1..FRAME_MAX_BODY bytes, copied).
 * Returns 0; ROOST_EINVAL / ROOST_ETOOBIG (bad length); ROOST_ECLOSED
 * (not open); ROOST_EFULL when the peer stopped reading: the connection
 * is then being closed with QUIC_APP_TOO_SLOW; ROOST_ENOMEM. */
int quic_conn_send_control(struct quic_conn *c, const uint8_t *body, size_t len);
/* Queues b[off, off+len) as one DATAGRAM; takes its own reference to b.
 * The datagram is encrypted into the send batch at the end of the loop
 * turn. Returns 0, or ROOST_EFULL / ROOST_ECLOSED (dropped and counted). */
int quic_conn_queue_datagram(struct quic_conn *c, struct buf *b, uint32_t off, uint32_t len);
/* Copying convenience for small payloads: allocates a buffer. Returns as
 * quic_conn_queue_datagram, or ROOST_ENOMEM. */
int quic_conn_send_datagram(struct quic_conn *c, const uint8_t *data, size_t len);
/* Closes with an application error; on_close runs before this returns
 * (unless the connection already ended). reason may be NULL. */
void quic_conn_close(struct quic_conn *c, uint64_t app_error, const char *reason);
/* Hands an open server connection to worker `to` (lib/quic/handoff.h):
 * at the end of this loop turn, once its pending packets are written, it
 * leaves this worker with its ngtcp2 and TLS state, queues and budgets;
 * `to` adopts it, re-arms its timer and maps its CIDs, and this worker
 * forwards packets for them there until the CIDs are retired. Returns 0;
 * ROOST_EINVAL (a client connection, `to` out of range or this worker);
 * ROOST_ECLOSED (not open); ROOST_EEXIST (a hand-off is pending). */
int quic_conn_handoff(struct quic_conn *c, unsigned to);
/* The worker the connection is on (a server connection). */
unsigned quic_conn_worker(const struct quic_conn *c);
/* Test knob: 1 holds adopted connections until quic_server_del (adopted
 * then: shutdown during a hand-off), 2 bounces QUIC_MSG_ADOPT to self so
 * that it is still queued at shutdown (the discard path), 3 ends the next
 * connection adopted as if the worker had no slot for it (a connection
 * that ends between workers), then resets to 0. 0: off. */
extern _Atomic int quic_handoff_test_hold;
void quic_conn_set_user(struct quic_conn *c, void *u);
void *quic_conn_user(const struct quic_conn *c);
/* True once on_open ran (the handshake completed and was accepted). */
bool quic_conn_opened(const struct quic_conn *c);
struct quic_server *quic_conn_server(const struct quic_conn *c);

/* True while the connection is open (handshake done, no close begun). */
bool quic_conn_is_open(const struct quic_conn *c);
/* True once the connection is over: nothing is sent or received any more. */
bool quic_conn_is_closed(const struct quic_conn *c);
/* True when the connection negotiated this ALPN (after the handshake). */
bool quic_conn_alpn_is(const struct quic_conn *c, const char *alpn);
/* TLS exporter (RFC 8446 §7.5) of the connection's session: len bytes
 * for label with an empty context. Returns 0 or ROOST_ECRYPTO. */
int quic_conn_export(const struct quic_conn *c, const char *label, uint8_t *out, size_t len);
/* True when the TLS handshake resumed a session (PSK from a ticket). */
bool quic_conn_tls_resumed(const struct quic_conn *c);

/* How a connection ended (valid in and after on_close). */
struct quic_close_info {
    bool remote;   /* the peer closed it (CONNECTION_CLOSE or stateless reset) */
    bool app;      /* code is an application code (PROTOCOL.md §6), else transport */
    bool opened;   /* the handshake had completed */
    bool idle;     /* idle or handshake timeout */
    bool reset;    /* stateless reset received (client) */
    uint64_t code; /* application or transport error code (TLS alert: 0x100 + alert) */
    int liberr;    /* ngtcp2 error that ended it locally, 0 if none */
};
void quic_conn_close_info(const struct quic_conn *c, struct quic_close_info *out);

struct quic_conn_stats {
    uint64_t srtt_ns, min_rtt_ns, latest_rtt_ns, rttvar_ns;
    uint64_t cwnd, bytes_in_flight;
    /* dgram_lost: lost for sure (declared lost and not acked within the
     * reorder window); dgram_spurious: declared lost, acked later (counted
     * in dgram_acked, not in dgram_lost). */
    uint64_t dgram_in, dgram_out, dgram_acked, dgram_lost, dgram_spurious;
    /* dgram_drop_cwnd: held back by the congestion controller or the pacer
     * longer than dgram_max_age_ns, then dropped. */
    uint64_t dgram_drop_cwnd, dgram_drop_too_large, dgram_drop_queue, dgram_drop_state;
    uint64_t bytes_in, bytes_out;
    uint64_t control_in, control_out; /* control messages */
    uint64_t control_pending;         /* unacked control bytes */
};
void quic_conn_stats(const struct quic_conn *c, struct quic_conn_stats *out);

#endif
