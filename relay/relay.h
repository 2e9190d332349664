/* The relay application: binds QUIC connections (lib/quic) to room members
 * (lib/room) on the worker runtime, and speaks the control protocol of
 * docs/PROTOCOL.md (HELLO/WELCOME, JOIN with token checks, LEAVE).
 *
 * One `relay` per process: relay_new loads credentials and opens the
 * sockets, relay_start runs the workers, relay_stop joins them. roost-relay
 * (relay/main.c) is a thin wrapper; integration tests run it in-process.
 *
 * Thread safety: relay_* from the thread that created it, except
 * relay_request_stop (any thread, async-signal-safe) and relay_stats (any). */
#ifndef ROOST_RELAY_RELAY_H
#define ROOST_RELAY_RELAY_H

#include <stdbool.h>
#include <stdint.h>

struct relay;

struct relay_config {
    const char *addr;   /* numeric IPv4/IPv6; NULL: 127.0.0.1 */
    uint16_t port;      /* 0: ephemeral (tests) */
    unsigned n_workers; /* 0: one per CPU in the affinity mask (or per cpus entry) */
    const int *cpus;    /* optional CPU list */
    unsigned n_cpus;
    bool no_pin;                   /* tests */
    const char *cert_file;         /* PEM chain */
    const char *key_file;          /* PEM key */
    const char *state_dir;         /* reset/retry secrets; NULL: random per run */
    const char *token_key_file;    /* required unless insecure_no_auth */
    bool insecure_no_auth;         /* dev only: every JOIN is accepted, loudly logged */
    uint32_t token_skew_s;         /* 0: TOKEN_DEFAULT_SKEW_S */
    uint64_t idle_timeout_ns;      /* 0: 30 s */
    uint64_t handshake_timeout_ns; /* 0: 5 s; also HELLO/JOIN deadline */
    bool force_retry;
    uint32_t max_rooms;            /* 0: 10000 */
    uint32_t max_members;          /* per room; 0: 500 */
    unsigned max_conns_per_worker; /* 0: 100000 */
};

/* Totals over every worker (relaxed reads; may lag by a loop turn). */
struct relay_stats {
    int64_t rooms;
    int64_t participants;
    uint64_t conns_open; /* sessions alive */
    uint64_t sessions_opened, sessions_closed;
    uint64_t joins_ok, join_rejects; /* as answered to clients */
    uint64_t rejects_bad_token, rejects_room_full, rejects_server_full, rejects_not_permitted;
    uint64_t replaced;
    uint64_t protocol_violations;
    uint64_t media_in, media_out, media_dropped; /* room layer: in, delivered, dropped */
    uint64_t dgram_not_joined;                   /* datagrams before JOINED */
    uint64_t fanout_sent;                        /* FANOUT messages to other workers */
    uint64_t fanout_ring_drops;
    uint64_t quic_fwd_in; /* packets forwarded between workers */
    uint64_t snapshots;
};

/* Returns 0, ROOST_EINVAL (bad config; logged), ROOST_EBADKEY (token key
 * file unusable; logged with the reason), ROOST_ECRYPTO (cert/key),
 * ROOST_ESYS (sockets), ROOST_ENOMEM. */
int relay_new(struct relay **out, const struct relay_config *cfg);
int relay_start(struct relay *r);
uint16_t relay_port(const struct relay *r);
unsigned relay_workers(const struct relay *r);
void relay_request_stop(struct relay *r);
/* Joins the workers (after relay_request_stop or on its own). */
void relay_stop(struct relay *r);
/* Stops if needed and frees. Accepts NULL. */
void relay_del(struct relay *r);
void relay_stats(struct relay *r, struct relay_stats *out);

#endif
