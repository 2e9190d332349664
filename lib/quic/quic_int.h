/* Private to lib/quic: the structures shared by its files and the calls
 * between them.
 *
 *   shared.c  process-level state: credentials, secrets, sockets, limits
 *   conn.c    one connection of either end: ngtcp2 callbacks both ends
 *             share, read, write loop, close, timers
 *   connapi.c the conn API of quic.h applications call
 *   dgram.c   a connection's datagram queue leaving and exact loss counts
 *   server.c  a worker's server: accept, server callbacks (CID table,
 *             reset tokens), forwarding, socket readiness, its dirty list
 *   servertls.c the server end's TLS session: credentials, ALPN, tickets
 *   qcrypto.c packet protection callbacks; a server's 1-RTT keys on
 *             nettle instead of gnutls (qcrypto.h)
 *   stateless.c the server's replies without a connection (version
 *             negotiation, reset, Retry, close), rate-limited
 *   client.c  the client end: TLS client sessions and verification, a
 *             socket per connection, reset detection, rebinding
 *
 * Calls run one way: server.c and client.c -> conn.c -> shared.c
 * (credentials); conn.c calls neither end, the ends never call each other,
 * shared.c calls no other file.
 *
 * Thread safety: as quic.h; a server, its connections and its counters
 * belong to its worker. */
#ifndef ROOST_QUIC_QUIC_INT_H
#define ROOST_QUIC_QUIC_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "core/stat.h"
#include "core/worker.h"
#include "core/timer.h"
#include "quic/budget.h"
#include "quic/ctlstream.h"
#include "quic/quic.h"
#include "quic/tbucket.h"
#include "quic/tickets.h"
#include "quic/udp.h"

#define SECRET_LEN 32
/* Reason phrases are cut to this many bytes (PROTOCOL.md allows 256; ours
 * are short, and a bound keeps struct quic_conn small). */
#define QUIC_REASON_MAX 64

/* A quic_stats field's counter slot. */
#define QS(field) STAT_IDX(struct quic_stats, field)

/* One worker's counters, on their own cache lines: written by the worker,
 * read by any thread. */
struct quic_wstats {
    _Alignas(64) _Atomic uint64_t st[STAT_N(struct quic_stats)];
};

/* Certificate credentials, counted: gnutls does not own them, and a
 * session must keep its credentials until it is deinitialised. Each
 * connection holds one reference; quic_shared holds one for the current
 * credentials, published with RCU so SIGHUP can swap them while workers
 * accept new connections. */
struct quic_creds {
    _Atomic uint32_t refs;
    gnutls_certificate_credentials_t cred;
};

struct quic_shared {
    struct quic_shared_config cfg;
    struct quic_creds *creds; /* RCU-published by quic_shared_reload_cert */
    gnutls_priority_t prio;
    struct tickets_keys *tickets; /* RCU-published; NULL: tickets off */
    struct quic_tickets_timer *tickets_timer;
    char state_dir[4096]; /* "" without one */
    uint8_t reset_secret[SECRET_LEN];
    uint8_t retry_secret[SECRET_LEN];
    struct udp_addr bound;
    int fds[WORKER_MAX];
    bool steering;           /* the reuseport program is attached (steer.h) */
    const char *steer_mode;  /* "ebpf", "cbpf", "hash" */
    struct steer_ebpf *ebpf; /* the extended program's maps; NULL: not on */
    struct tbucket tb_retry, tb_vn, tb_reset, tb_close, tb_hs;
    /* Changed by main at run time (drain, reload); read per Initial. */
    _Atomic bool draining;
    _Atomic unsigned live_max_conns, live_retry_threshold;
    struct quic_wstats stats[WORKER_MAX];
};

enum conn_state {
    CS_HANDSHAKE,
    CS_OPEN,
    CS_CLOSE_PENDING, /* close asked; CONNECTION_CLOSE written at turn end */
    CS_CLOSING,       /* we sent CONNECTION_CLOSE; waiting 3 PTO (server) */
    CS_DRAINING,      /* the peer closed; waiting 3 PTO (server) */
    CS_DEAD,          /* over: the server frees it at turn end, the client
                         keeps it until quic_client_conn_del */
};

/* The two ends share conn.c; where they differ, conn.c asks the role:
 * - the server tells its app of every local close at once (its app never
 *   frees a connection), the client only when the CONNECTION_CLOSE is
 *   written, outside any ngtcp2 callback (its app may free the connection
 *   from on_close); quic_conn_close tells both at once;
 * - the server waits 3 PTO in CLOSING/DRAINING (resending its close), the
 *   client ends at once;
 * - the client opens the control stream when the handshake completes, the
 *   server accepts the one the client opened;
 * - the server closes a connection whose control queue is full (TOO_SLOW),
 *   the client returns ROOST_EFULL to its caller.
 * Everything else (CID table, reset tokens, Retry; sockets per connection,
 * reset detection, rebinding) lives in server.c or client.c. */
enum quic_role {
    QUIC_ROLE_SERVER,
    QUIC_ROLE_CLIENT,
};

/* What a connection needs from the end that owns it. Embedded in
 * struct quic_server and struct quic_client. */
struct quic_ep {
    enum quic_role role;
    struct worker *w;      /* server: the clock of its worker; client: NULL */
    uint64_t now;          /* client: the time of the current step */
    struct timers *timers; /* connection timers */
    struct udp_tx *tx;     /* the send batch */
    _Atomic uint64_t *st;  /* counters (server: its worker's slots) */
    const struct quic_app_ops *ops;
    void *arg;
    size_t control_queue_max;
    unsigned dgram_queue_max;
    uint64_t dgram_max_age_ns; /* a held-back datagram's age limit */
    /* ack-eliciting packets received before an ACK goes at once
     * (ngtcp2_settings.ack_thresh; conn.c after_read): 2 (RFC 9000
     * §13.2.2) unless a client's config raised it. */
    unsigned ack_thresh;
    struct quic_conn *dirty_head; /* written at the end of the turn/step */
    unsigned half_open;           /* server: connections before handshake */
    unsigned active;              /* connections not yet CS_DEAD */
    ngtcp2_callbacks callbacks;   /* conn.c's, plus the role's own */
};

static inline uint64_t quic_ep_now(const struct quic_ep *ep)
{
    return ep->w != NULL ? worker_now(ep->w) : ep->now;
}

/* What a delayed ACK keeps of the advertised max_ack_delay for timer
 * lateness (the turn cadence, a busy loop) and for the peer's PTO, which
 * counts on the ACK within max_ack_delay plus about 1 ms. */
#define QUIC_ACK_MARGIN_NS (10ULL * 1000000ULL)
/* ngtcp2's and RFC 9000 §13.2.2's: an ACK after every second ack-eliciting
 * packet (a client may raise it: quic_client_config.ack_thresh). */
#define QUIC_DEFAULT_ACK_THRESH 2u
/* A paced write may go this long before its send time (ngtcp2 0.12's
 * NGTCP2_PKT_PACING_OVERHEAD: a user-space loop cannot wake finer). */
#define QUIC_PACE_SLACK_NS 1000000ULL
/* After a write of datagrams only, ngtcp2's last expiry stands (not read
 * again) when it is at least this far off (connwrite.c): an early timer
 * fire is harmless, so one this far off may be one. */
#define QUIC_EXP_LAZY_NS 1000000000ULL

/* Datagram queue entry: a counted buffer reference, the bytes to send and
 * when it was queued (the age limit while the congestion controller holds
 * the queue back). */
/* An empty datagram queue unused this long is freed (conn.c). */
#define QUIC_DQ_IDLE_NS (1000ULL * 1000000ULL)

struct dgram_item {
    struct buf *b;
    uint32_t off, len;
    uint64_t t;
};

/* Datagrams ngtcp2 declared lost, kept for a reorder window: a late ACK of
 * one cancels the loss (counted spurious), the window's end confirms it
 * (counted lost). Oldest first; a full ring confirms its oldest. */
#define QUIC_LOST_RING 32
struct lost_dgram {
    uint64_t id, until;
};

struct quic_conn {
    ngtcp2_crypto_conn_ref ref; /* gnutls session pointer */
    struct quic_creds *creds;   /* counted; NULL until tls init */
    struct quic_ep *ep;         /* borrowed: the owning server or client */
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    struct timer timer;
    enum conn_state state;
    bool dirty, opened, closed_cb, half_open;
    bool tls_resumed; /* kept when the TLS session is released */
    struct quic_conn *dirty_next;
    struct udp_addr remote, local;
    int fd; /* client: its own connected socket; server: -1 (the worker's) */
    int64_t ctl_stream;
    struct ctl_tx tx;
    struct ctl_rx rx;
    struct dgram_item *dq; /* ring of ep->dgram_queue_max; NULL while idle */
    unsigned dq_head, dq_n;
    uint64_t dq_last; /* when the last datagram was queued */
    uint64_t dgram_seq;
    /* Write only what is due: need_pkt asks the write for ngtcp2_conn_write_pkt
     * (a timer fired, the handshake, a path change, an immediate ACK, a
     * possible retransmission); a connection dirty only for queued
     * datagrams or control bytes writes those and stops. rx_cb: a stream
     * or datagram callback fired during the current read; rx_elicit: reads
     * with one since the last packet we wrote (ngtcp2 acks every
     * ep->ack_thresh-th one at once, the second by default). armed_exp: the expiry the timer was
     * last armed for. */
    bool need_pkt, rx_cb;
    bool dq_held; /* the last write left datagrams the cwnd or pacer refused */
    /* When the write that set dq_held ran: the hold, not a busy loop or a
     * stale cached time before it, counts against the age limit. */
    uint64_t dq_held_since;
    /* A delayed ACK's deadline (0: none): it rides with the next packet,
     * or goes alone then (conn.c ack_can_wait). */
    uint64_t ack_due;
    /* The delayed ACK settled without a wake-up (connwrite.c settle_ack):
     * ack_rx_ts, when the last ack-eliciting packet the ACK may wait for
     * was read (0: none), then, once settled, the first one the ACK is
     * owed for; ack_at, when ngtcp2 counts that ACK due, once its timer
     * was settled early (0: not settled): a packet written before then
     * does not carry it, so ack_due stays. */
    uint64_t ack_rx_ts, ack_at;
    bool confirmed; /* handshake confirmed (ngtcp2's callback) */
    unsigned rx_elicit;
    uint64_t armed_exp;
    /* Roost's pacer (connwrite.c pace_set; open connections): the time
     * before which datagrams and control bytes wait, 0 when nothing does.
     * ngtcp2 0.12's own is used for the handshake only: only
     * ngtcp2_conn_handle_expiry clears its next send time. */
    uint64_t pace_ts;
    /* ngtcp2's next expiry as last read (ng_exp_ok: and nothing since but
     * writes of datagrams only): a lower bound of all its expiries but the
     * loss detection timer (connwrite.c expiry_after_dgrams). */
    uint64_t ng_exp;
    bool ng_exp_ok;
    struct lost_dgram lost[QUIC_LOST_RING];
    unsigned lost_head, lost_n;
    ngtcp2_connection_close_error ccerr; /* reason points into reason[] */
    struct quic_close_info info;
    /* The close's reason phrase (ours, or the peer's), bounded: kept here
     * because the CONNECTION_CLOSE is written at turn end, after the
     * caller's string may be gone. */
    uint8_t reason[QUIC_REASON_MAX];
    size_t reason_len;
    bool ctl_fin, ctl_fin_sent; /* client test knob: FIN the control stream */
    /* Anti-amplification (RFC 9000 §8.1) for what we send besides ngtcp2
     * (our CONNECTION_CLOSE and its resends): bytes received from and sent
     * to c->remote before the handshake completed (the address is then
     * validated). */
    uint64_t amp_rx, amp_tx;
    struct budget rxb;  /* receive budget (server; lib/quic/budget.h) */
    uint8_t *close_pkt; /* server: our CONNECTION_CLOSE, resent on input */
    size_t close_len;
    unsigned close_resends;
    void *user;
    struct quic_conn_stats cs;
    /* server */
    uint32_t slot, gen;
    ngtcp2_cid odcid; /* the client's Initial DCID, also a table key */
    /* Hand-off (handoff.c): handoff_to is the target worker + 1 while one
     * is pending (0: none), on the server's handoff list; handed: the
     * connection changed workers at least once (its CIDs may have
     * forwarding entries on other workers). */
    uint16_t handoff_to;
    bool handed;
    struct quic_conn *handoff_next;
    /* client */
    struct quic_conn *prev, *next; /* the client's connections */
};

/* Which end this connection is (the few places the ends differ). */
static inline bool quic_conn_is_server(const struct quic_conn *c)
{
    return c->ep->role == QUIC_ROLE_SERVER;
}

/* Handshaking or open: no close begun. */
static inline bool quic_conn_live(const struct quic_conn *c)
{
    return c->state == CS_HANDSHAKE || c->state == CS_OPEN;
}

/* The source address to send with: none on a connected socket of its own
 * (the kernel knows it), else the path's local address (pktinfo). */
static inline const struct udp_addr *quic_conn_tx_local(const struct quic_conn *c,
                                                        const struct udp_addr *local)
{
    return c->fd >= 0 ? NULL : local;
}

/* Whether n more bytes may go to the peer's address: always for a client
 * (the limit binds servers) and once the handshake completed (the address is validated), else
 * within 3x what it sent us (ngtcp2 keeps its own packets inside the same budget; amp_tx counts
 * them too). */
static inline bool quic_conn_amp_allows(const struct quic_conn *c, size_t n)
{
    return !quic_conn_is_server(c) || c->opened || c->amp_tx + n <= 3 * c->amp_rx;
}

static inline void quic_conn_amp_sent(struct quic_conn *c, size_t n)
{
    if (!c->opened)
        c->amp_tx += n;
}

struct conn_slot {
    struct quic_conn *c;
    uint32_t gen;
    uint32_t next_free;
};

struct quic_server {
    struct quic_ep ep;
    struct worker *w;
    struct quic_shared *sh;
    unsigned id, n_workers;
    int fd;
    bool epollout;
    struct cid_table *cids;
    struct conn_slot *slots;
    uint32_t n_slots, free_head, live;
    struct udp_rx *rx;
    struct udp_tx *tx;
    uint64_t tx_calls; /* tx->calls already counted in sendmmsg_calls */
    uint64_t rx_batches;
    struct budget_lim conn_lim;     /* receive budget of each connection */
    struct budget_addr_table addrs; /* receive budgets per source address */
    /* Hand-off (handoff.c): CIDs of connections that left this worker ->
     * (void *)(uintptr_t)(worker + 1) they went to; connections to hand off
     * at turn end; adopted connections held by a test knob until del. */
    struct cid_table *fwd;
    struct quic_conn *handoff_head;
    struct quic_conn **held;
    unsigned n_held, cap_held;
    bool stopping;
};

/* server.c, for handoff.c */
/* Takes a free slot for c (growing the table within the live limit); sets
 * c->slot, c->gen and counts it live. Returns 0, ROOST_EFULL or
 * ROOST_ENOMEM. */
int quic_server_slot_take(struct quic_server *s, struct quic_conn *c);
/* Gives c's slot back (its handle goes stale) and counts it not live. */
void quic_server_slot_release(struct quic_server *s, struct quic_conn *c);
/* Forwards a packet to worker owner through the ring; hops: how many
 * times it was forwarded already. */
void quic_server_forward(struct quic_server *s, unsigned owner, const uint8_t *data, size_t len,
                         const struct udp_addr *remote, const struct udp_addr *local,
                         unsigned hops);

/* servertls.c, for server.c: the accepted connection's TLS session
 * (credentials, ALPN, tickets and their hook). Returns 0 or ROOST_E*. */
int quic_server_tls_init(struct quic_conn *c, struct quic_shared *sh);

/* stateless.c, for server.c: replies without a connection, each within its
 * token bucket (counted as rate_limited when over it). */
void quic_stateless_vn(struct quic_server *s, const ngtcp2_version_cid *vc,
                       const struct udp_addr *remote, const struct udp_addr *local);
/* pktlen: the triggering packet's length (the reset is shorter). */
void quic_stateless_reset(struct quic_server *s, const ngtcp2_version_cid *vc, size_t pktlen,
                          const struct udp_addr *remote, const struct udp_addr *local);
void quic_stateless_retry(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                          const struct udp_addr *remote, const struct udp_addr *local);
void quic_stateless_close(struct quic_server *s, const ngtcp2_pkt_hd *hd, uint64_t error,
                          const struct udp_addr *remote, const struct udp_addr *local);

/* handoff.c (lib/quic/handoff.h) */
/* At turn end, after the dirty list was written: detaches and sends every
 * connection whose hand-off is pending and that has nothing left to
 * write. */
void quic_handoff_turn_end(struct quic_server *s);
/* QUIC_MSG_ADOPT / QUIC_MSG_UNFWD on the receiving server. */
void quic_handoff_on_msg(struct quic_server *s, const struct worker_msg *msg);
/* Releases what a hand-off message holds at shutdown (no server). */
void quic_handoff_discard(const struct worker_msg *msg);
/* The worker a CID of a connection that left this one went to, or -1. */
int quic_handoff_fwd_lookup(const struct quic_server *s, const uint8_t *cid, size_t len);
/* A CID of c is gone for good (retired, or c freed): its forwarding
 * entries on other workers are dropped (c->handed only). */
void quic_handoff_cid_gone(struct quic_server *s, const struct quic_conn *c, const ngtcp2_cid *cid);
/* c is being freed: off the pending list. */
void quic_handoff_forget(struct quic_server *s, struct quic_conn *c);
/* quic_server_del: adopts the connections a test knob held, drops the
 * forwarding table. */
void quic_handoff_server_del(struct quic_server *s);
int quic_handoff_server_init(struct quic_server *s);

/* shared.c */
/* Empty credentials with one reference. Returns 0, ROOST_ENOMEM,
 * ROOST_ECRYPTO. */
int quic_creds_new(struct quic_creds **out);
/* Takes another reference (the caller holds one, or reads a published
 * pointer inside an RCU read section). Returns cr. */
struct quic_creds *quic_creds_ref(struct quic_creds *cr);
/* Drops a reference; frees on the last. Accepts NULL. Any thread. */
void quic_creds_unref(struct quic_creds *cr);
/* The TLS 1.3-only priorities both ends use (NULL: QUIC_DEFAULT_PRIORITY).
 * Returns 0 or ROOST_ECRYPTO (*out NULL). */
int quic_priority_init(gnutls_priority_t *out, const char *priority);
/* Ticket lifetime for the period: two periods, within gnutls' bound. */
unsigned quic_ticket_lifetime(unsigned period_s);

/* conn.c */
/* Sets ep's role, app and queue limits, and fills ep->callbacks with the
 * callbacks both ends share; the role adds its own (client_initial or
 * recv_client_initial, CIDs, streams) and sets clock, timers, tx, st. */
void quic_ep_init(struct quic_ep *ep, enum quic_role role, const struct quic_app_ops *ops,
                  void *arg, size_t control_queue_max, unsigned dgram_queue_max);
/* Sets up c (zeroed by the caller) for ep: queues, timer, state
 * CS_HANDSHAKE, counted in ep->active. Returns 0 or ROOST_ENOMEM (then
 * call quic_conn_fini). */
int quic_conn_init(struct quic_conn *c, struct quic_ep *ep);
/* Creates the TLS session for c->conn with prio and creds and offers
 * (client) or requires (server) alpn. c takes over the caller's reference
 * to creds, also on error. Returns 0 or ROOST_ECRYPTO. */
int quic_conn_tls_init(struct quic_conn *c, gnutls_priority_t prio, struct quic_creds *creds,
                       const char *alpn);
/* Server, once the handshake completed: frees the TLS session (~16 KB per
 * idle connection) and its credentials reference. Nothing needs them any
 * more: ngtcp2 has copied the NewSessionTicket (it copies submitted crypto
 * data), key updates use ngtcp2's crypto context, and CRYPTO data after
 * the handshake (a client may send none in QUIC) closes the connection
 * (quic_recv_crypto_data_cb). No-op otherwise. */
void quic_conn_tls_release(struct quic_conn *c);
/* ngtcp2's recv_crypto_data through the crypto helper, refused with a
 * CALLBACK_FAILURE once the session is released. */
int quic_recv_crypto_data_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level, uint64_t offset,
                             const uint8_t *data, size_t datalen, void *user_data);
/* Releases what quic_conn_init and quic_conn_tls_init set up, in order
 * (ngtcp2, then the TLS session, then its credentials). Does not tell the
 * app and does not free c. */
void quic_conn_fini(struct quic_conn *c);
/* The one on_close per connection (no-op after the first). */
void quic_conn_notify(struct quic_conn *c, uint64_t app_error);
/* Feeds one received packet. Returns false when the connection is not (or
 * no longer) live; the app may then have been told of the end, and a
 * client's app may have freed c: the caller must not touch c again. */
bool quic_conn_read(struct quic_conn *c, const uint8_t *data, size_t len,
                    const struct udp_addr *remote, const struct udp_addr *local);
/* Writes every packet the connection has ready into ep->tx (and a pending
 * CONNECTION_CLOSE). Returns false when the batch is blocked (the caller
 * keeps it dirty or drops the batch). */
bool quic_conn_write(struct quic_conn *c);
/* Shared by conn.c and connwrite.c: end now and tell the app; linger
 * after a close sent or received (server: 3 PTO); the code on_close
 * reports; close on an ngtcp2 error; arm the timer for exp (0 or
 * ROOST_ENOMEM); arm it for ngtcp2's next expiry (or a held-back
 * datagram's age limit). */
void quic_conn_end_now(struct quic_conn *c, uint64_t app_error);
void quic_conn_linger(struct quic_conn *c, enum conn_state st, uint64_t app_error);
uint64_t quic_conn_close_code(const struct quic_conn *c);
void quic_conn_close_liberr(struct quic_conn *c, int liberr);
/* ngtcp2 0.12's delayed-ACK time: min(max_ack_delay, srtt / 8). */
uint64_t quic_conn_ack_delay(const struct quic_conn *c, const ngtcp2_conn_stat *cs);
int quic_conn_timer_set(struct quic_conn *c, uint64_t exp);
void quic_conn_arm_timer(struct quic_conn *c);
/* Puts the connection on its end's dirty list, for a full write (queued
 * data and whatever ngtcp2 has to send). */
void quic_conn_mark_dirty(struct quic_conn *c);
/* Puts it on the dirty list for its queued datagrams and control bytes
 * only (no ngtcp2_conn_write_pkt unless something else asks for one). */
void quic_conn_mark_data(struct quic_conn *c);
/* Queues one packet that no connection writes (stateless replies). */
void quic_send_raw(struct quic_ep *ep, const uint8_t *p, size_t n, const struct udp_addr *remote,
                   const struct udp_addr *local);
/* ngtcp2 path of two addresses (borrowed). */
void quic_path_init(ngtcp2_path *p, const struct udp_addr *local, const struct udp_addr *remote);

/* dgram.c */
enum dgram_fate {
    DG_SENT,
    DG_AGED,      /* held back by cwnd or the pacer past the age limit */
    DG_TOO_LARGE, /* fits no packet of the path (connwrite.c dgram_room) */
    DG_STATE,     /* the connection is not open: closing, or closed */
};
/* Takes the queue's head off (its buffer reference dropped), counted by
 * fate. */
void quic_dgram_pop(struct quic_conn *c, enum dgram_fate why);
/* Drops (DG_STATE) every queued datagram: the connection left CS_OPEN
 * and none of them will go. */
void quic_dgram_drop_queued(struct quic_conn *c);
/* Drops (DG_AGED) the queued datagrams held back longer than
 * ep->dgram_max_age_ns: held back by the congestion controller or the
 * pacer, stale media is worth less than the bandwidth it would take. A
 * datagram's hold starts when it was queued or, if later, when the write
 * that first held it ran (dq_held_since). */
void quic_dgram_age_out(struct quic_conn *c, uint64_t now);
/* When the oldest queued datagram's hold started (dq_n > 0). */
uint64_t quic_dgram_held_from(const struct quic_conn *c);
/* ngtcp2's ack_datagram / lost_datagram: counted acked; declared lost and
 * kept for window ns (the reorder window), a late ACK cancelling the
 * loss. */
void quic_dgram_acked(struct quic_conn *c, uint64_t id);
void quic_dgram_lost(struct quic_conn *c, uint64_t id, uint64_t window);
/* Confirms (counts lost) the declared losses whose window ended by now. */
void quic_dgram_lost_expire(struct quic_conn *c, uint64_t now);
/* Declared losses whose window ended by now, not confirmed yet
 * (quic_conn_stats counts them as lost). */
uint64_t quic_conn_lost_pending_expired(const struct quic_conn *c, uint64_t now);

#endif
