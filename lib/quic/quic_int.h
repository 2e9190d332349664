/* Private to lib/quic: the structures shared by its files and the calls
 * between them.
 *
 *   shared.c  process-level state: credentials, secrets, sockets, limits
 *   conn.c    one connection: ngtcp2 callbacks, read, write loop, close
 *   server.c  a worker's server: accept, stateless replies, forwarding,
 *             socket readiness, the dirty list
 *
 * Calls run one way: server.c -> conn.c -> shared.c (credentials); conn.c
 * never calls server.c, shared.c calls neither.
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
#include "core/timer.h"
#include "quic/ctlstream.h"
#include "quic/quic.h"
#include "quic/tbucket.h"
#include "quic/udp.h"

#define SECRET_LEN 32

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
    uint8_t reset_secret[SECRET_LEN];
    uint8_t retry_secret[SECRET_LEN];
    struct udp_addr bound;
    int fds[WORKER_MAX];
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
    CS_CLOSING,       /* we sent CONNECTION_CLOSE; waiting 3 PTO */
    CS_DRAINING,      /* the peer closed; waiting 3 PTO */
    CS_DEAD,          /* freed at turn end */
};

struct dgram_item {
    struct buf *b;
    uint32_t off, len;
};

struct quic_conn {
    ngtcp2_crypto_conn_ref ref; /* gnutls session pointer */
    struct quic_creds *creds;   /* counted; NULL until tls_init */
    struct quic_server *s;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    struct timer timer;
    uint32_t slot, gen;
    enum conn_state state;
    bool dirty, opened, closed_cb, half_open;
    struct quic_conn *dirty_next;
    struct udp_addr remote, local;
    ngtcp2_cid odcid; /* the client's Initial DCID, also a table key */
    int64_t ctl_stream;
    struct ctl_tx tx;
    struct ctl_rx rx;
    struct dgram_item *dq;
    unsigned dq_head, dq_n;
    uint64_t dgram_seq;
    uint64_t close_error;
    ngtcp2_connection_close_error ccerr;
    uint8_t *close_pkt;
    size_t close_len;
    unsigned close_resends;
    void *user;
    struct quic_conn_stats cs;
};

struct conn_slot {
    struct quic_conn *c;
    uint32_t gen;
    uint32_t next_free;
};

struct quic_server {
    struct worker *w;
    struct quic_shared *sh;
    const struct quic_app_ops *ops;
    void *arg;
    unsigned id, n_workers;
    int fd;
    bool epollout;
    _Atomic uint64_t *st; /* this worker's slots in sh->stats */
    struct cid_table *cids;
    struct conn_slot *slots;
    uint32_t n_slots, free_head, live;
    unsigned half_open;
    struct quic_conn *dirty_head;
    struct udp_rx *rx;
    struct udp_tx *tx;
    uint64_t rx_batches;
};

/* shared.c */
/* Drops a reference; frees on the last. Accepts NULL. Any thread. */
void quic_creds_unref(struct quic_creds *cr);

/* conn.c */
/* Creates the connection for a client Initial (hd) that passed admission;
 * ocid: the original DCID a Retry token vouched for, or NULL. Returns NULL
 * when the slot table is full or setup failed (nothing to tell the app). */
struct quic_conn *quic_conn_new(struct quic_server *s, const ngtcp2_pkt_hd *hd,
                                const ngtcp2_cid *ocid, const struct udp_addr *remote,
                                const struct udp_addr *local);
/* Frees now: on_close (GOING_AWAY) if not yet told, CIDs out of the table,
 * slot released. */
void quic_conn_free(struct quic_conn *c);
/* Feeds one received packet. */
void quic_conn_read(struct quic_conn *c, const uint8_t *data, size_t len,
                    const struct udp_addr *remote, const struct udp_addr *local);
/* Writes every packet the connection has ready into the send batch.
 * Returns false when the batch is blocked (the connection stays dirty). */
bool quic_conn_write(struct quic_conn *c);
/* Writes the pending CONNECTION_CLOSE (state CS_CLOSE_PENDING). */
void quic_conn_write_close(struct quic_conn *c);
/* Puts the connection on its server's dirty list (written at turn end). */
void quic_conn_mark_dirty(struct quic_conn *c);
/* Queues one packet that no connection writes (stateless replies). */
void quic_send_raw(struct quic_server *s, const uint8_t *p, size_t n, const struct udp_addr *remote,
                   const struct udp_addr *local);

#endif
