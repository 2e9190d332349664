/* Relay-to-relay trunks (docs/CLUSTER.md §2): QUIC connections with ALPN
 * roost-trunk/1 between relays that share rooms, on the worker runtime.
 *
 * Process level (struct trunk_shared, in struct relay): the relay id, the
 * cluster secret, the homes this relay holds (room -> generation; written
 * by the room's owner worker through trunk_home_ops, read by the worker
 * that accepted a trunk when a SUBSCRIBE arrives: control path, a mutex),
 * and the test/fixed-deployment mode `static_home`.
 *
 * Worker level (struct trunk_set, in struct relay_worker): the trunks of
 * this worker — the ones it dialed (a quic_client on this worker's loop)
 * and the ones its QUIC server accepted — and, per trunk and room, the
 * room's hidden member and the remote members (lib/room room.h, "members
 * of other relays"). Everything of a trunk_set runs on its worker.
 *
 * The interface with the directory (relay/cluster.h, CLUSTER_IFACE.md):
 * trunk_home_ops, arg: the struct relay *. */
#ifndef ROOST_RELAY_TRUNK_H
#define ROOST_RELAY_TRUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct relay;
struct relay_worker;
struct relay_config;
struct room_ops;
struct quic_app_ops;
struct cluster;

/* = TRUNK_ALPN (lib/cluster/trunkmsg.h), for relay.c. */
#define TRUNK_ALPN_STR "roost-trunk/1"

/* Ring messages of this module (0x0500..0x050f). */
#define TRUNK_MSG_FIRST 0x0500
#define TRUNK_MSG_LOCAL_JOIN 0x0500 /* static_home: a local member joined; to the owner */
#define TRUNK_MSG_TEST_DROP 0x0501  /* trunk_test_drop */
#define TRUNK_MSG_TEST_HOME 0x0502  /* trunk_test_home */
#define TRUNK_MSG_REVOKE 0x0503     /* owner -> every worker: end accepted subscriptions */
#define TRUNK_MSG_LAST 0x050f

#include "relay/cluster.h" /* struct cluster_home_ops (CLUSTER_IFACE.md) */

/* The ops the directory calls on a room's owner worker; arg: struct relay *. */
extern const struct cluster_home_ops trunk_home_ops;

/* Counters of one worker (only uint64_t fields; core/stat.h slots). */
struct trunk_stats {
    uint64_t trunks_up;        /* gauge: authenticated trunks */
    uint64_t frames_out;       /* media datagrams sent on trunks */
    uint64_t frames_in;        /* media datagrams received and fanned out */
    uint64_t stale_gen_drops;  /* room-scoped messages with a stale generation */
    uint64_t unknown_drops;    /* datagrams for an unknown handle or sender */
    uint64_t reconnects;       /* dialed trunks re-established after a loss */
    uint64_t trunks_lost;      /* dialed trunks that went down */
    uint64_t gap_ns;           /* time dialed trunks spent down before coming back */
    uint64_t auth_failures;    /* trunks closed with TRUNK_ERR_AUTH (either side) */
    uint64_t subs_accepted;    /* SUBSCRIBE accepted (home side) */
    uint64_t subs_rejected;    /* SUBSCRIBE refused (not home, stale generation) */
    uint64_t presence_in;      /* PRESENCE received */
    uint64_t presence_out;     /* PRESENCE sent */
    uint64_t kfreq_relayed;    /* KEYFRAME_REQUEST sent on trunks */
    uint64_t prefix_conflicts; /* trunks refused: the peer has this relay's pid_prefix */
    uint64_t quality_out;      /* QUALITY (one receiver's link) sent on trunks */
    uint64_t quality_in;       /* QUALITY received and reported to this relay's publishers */
    uint64_t replay_in;        /* keyframe-cache replay datagrams received */
    uint64_t replay_dups;      /* of those, already fanned out live here: cached only */
};

/* Process level. With cfg->cluster_relay_id empty: *out = NULL, 0 (no
 * cluster; trunks off). Otherwise reads the secret file (at least 16
 * bytes), parses cluster_static_home ("ID@HOST:PORT", optional).
 * Returns 0, ROOST_EINVAL (logged), ROOST_EIO, ROOST_ENOMEM. Main thread. */
struct trunk_shared;
int trunk_shared_new(struct trunk_shared **out, const struct relay_config *cfg);
void trunk_shared_del(struct trunk_shared *ts);
/* For cluster_room_retry when the trunk to a home is lost; NULL: none. */
void trunk_shared_set_cluster(struct trunk_shared *ts, struct cluster *c);

/* The room and QUIC callbacks a clustered relay registers instead of
 * session_room_ops / session_quic_ops: they hand trunk endpoints and
 * trunk connections to this module and everything else to the sessions. */
extern const struct room_ops trunk_room_ops;
extern const struct quic_app_ops trunk_quic_ops;

/* The per-worker sets, allocated with the relay (main thread, after
 * trunk_shared_new and r->rw) so that counters stay readable from any
 * thread until relay_del; no-ops without a cluster. */
int trunk_sets_new(struct relay *r);
void trunk_sets_del(struct relay *r);
/* Worker level, on rw's worker: after the room shard exists / before it
 * goes. trunk_set_del closes every trunk (members leave). */
int trunk_set_new(struct relay_worker *rw);
void trunk_set_del(struct relay_worker *rw);
/* Each loop turn (before the QUIC server flushes). */
void trunk_turn_end(struct relay_worker *rw);
/* Any thread: the worker's counters. */
void trunk_worker_stats(struct relay *r, unsigned worker, struct trunk_stats *out);
/* True when the relay runs trunks ([cluster] relay_id set). Any thread. */
bool trunk_on(const struct relay *r);
/* Sum over the workers (zero without a cluster). Any thread. */
void trunk_stats_total(struct relay *r, struct trunk_stats *out);

/* Test hook: closes every trunk this relay dialed, on each worker, as a
 * failed path would (the peers see the close); they re-dial with backoff.
 * Main thread (worker_pool_post). Returns 0 or the post's error. */
int trunk_test_drop(struct relay *r);
/* Test hook: calls trunk_home_ops.home on the room's owner worker with
 * these arguments, as the directory will (fencing tests). Main thread.
 * Returns 0, ROOST_EINVAL, ROOST_ENOMEM or the post's error. */
int trunk_test_home(struct relay *r, const char *room, bool self, const char *home_id,
                    const char *home_addr, uint64_t gen);
/* Test hook: trunk_home_ops.gone(room, gen) on the room's owner worker. */
int trunk_test_gone(struct relay *r, const char *room, uint64_t gen);

#endif
