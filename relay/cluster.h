/* The relay's side of the cluster directory (issue 18, docs/CLUSTER.md
 * section 1.8): starts lib/cluster/dir with this relay's load, claims a
 * room's home when the room gets its first member here (its JOINs wait,
 * bounded, for the answer), releases it when the last one leaves, and
 * tells the trunks (struct cluster_home_ops) where each room's home is.
 *
 * No worker ever waits for Redis: the owner worker of a room submits
 * requests and gets the answers as worker messages (worker_pool_post from
 * the cluster thread). A relay without [cluster] redis has no struct
 * cluster at all (relay_cluster() is NULL) and behaves as a lone relay.
 *
 * Thread safety, per function:
 *   cluster_new, cluster_start, cluster_quiesce, cluster_stop,
 *   cluster_del, cluster_set_home_ops      : main thread (relay.c)
 *   cluster_worker_*, cluster_on_msg, cluster_gate, cluster_room_closed,
 *   cluster_room_retry                     : the room owner's worker
 *   cluster_msg_discard                    : any thread (shutdown)
 *   cluster_up, cluster_stats, cluster_metrics_text, cluster_relay_id,
 *   cluster_ask                            : any thread (admin); cluster_ask
 *                                            blocks a bounded time */
#ifndef ROOST_RELAY_CLUSTER_H
#define ROOST_RELAY_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dir.h"

struct relay;
struct relay_config;
struct relay_worker;
struct worker_msg;
struct cluster;

/* Called on the worker that owns the room (lib/room owner shard), never on the
 * cluster thread. All pointers are borrowed for the call only. */
struct cluster_home_ops {
    /* The room's home is known: after the first local member's claim, after a
     * re-claim, or when another relay took the home over. self: this relay
     * holds the lease (gen is its fencing token); else home_id/home_addr name
     * the home relay and its trunk address ("host:port") and gen is the
     * home's lease generation as Redis has it. */
    void (*home)(struct relay_worker *rw, const char *room, size_t room_len, bool self,
                 const char *home_id, const char *home_addr, uint64_t gen, void *arg);
    /* The room has no more local members here, or this relay lost the home
     * (lease expired/taken: gen is the lost generation). Trunk state of the
     * room on this relay must stop. */
    void (*gone)(struct relay_worker *rw, const char *room, size_t room_len, uint64_t gen,
                 void *arg);
};

/* Registered once at start-up, before workers run; NULL ops: rooms are served
 * locally only (one log line at start says so when [cluster] is configured). */
void cluster_set_home_ops(struct cluster *c, const struct cluster_home_ops *ops, void *arg);

/* From the room's owner worker: the trunk to the home failed or the home's
 * generation looks stale; ask the directory again (claim: becomes home if the
 * old lease expired, else learns the new home). The answer arrives later
 * through ops->home. Returns 0 or a ROOST_E* code. */
int cluster_room_retry(struct cluster *c, struct relay_worker *rw, const char *room,
                       size_t room_len);

/* From the room's owner worker: the lease this relay holds for the room
 * at generation gen (borrowed: take a reference with dir_lease_get to keep
 * it), or NULL (not held, another generation, c NULL). The trunks check
 * it before accepting a SUBSCRIBE (docs/CLUSTER.md §2.5, split brain). */
struct dir_lease *cluster_room_lease(struct cluster *c, struct relay_worker *rw, const char *room,
                                     size_t room_len, uint64_t gen);

/* ------------------------------------------------------------ lifecycle */

/* trunk_listen must name the relay's QUIC port: trunks ride it (ALPN
 * roost-trunk/1), there is no socket of their own. 0 when it does, or
 * trunk_listen is empty, or port is 0 (ephemeral: checked by nobody);
 * else ROOST_EINVAL and the reason in err. --check-config
 * (relay/config_cluster.c, where it lives) and cluster_new call it. */
int cluster_trunk_port_check(const char *trunk_listen, uint16_t port, char *err, size_t err_len);

/* *out NULL (and 0) when cfg has no [cluster] redis. Reads the password
 * file. Refuses (with or without redis) a trunk_listen whose port is not
 * cfg->port. Returns 0, ROOST_EINVAL (logged) or ROOST_ENOMEM. */
int cluster_new(struct cluster **out, struct relay *r, const struct relay_config *cfg);
/* Starts the cluster thread (Redis need not be up). Before the workers
 * start. Returns 0 or dir_new's error. */
int cluster_start(struct cluster *c);
/* The workers run (on) or are about to stop (off): whether the load
 * callback may read their counters. */
void cluster_set_stats_ok(struct cluster *c, bool on);
void cluster_quiesce(struct cluster *c); /* cluster_set_stats_ok(c, false) */
/* After the workers stopped: stops the cluster thread (leases released,
 * registration deleted, best effort). Idempotent. Accepts NULL. */
void cluster_stop(struct cluster *c);
void cluster_del(struct cluster *c);

/* --------------------------------------------------------- worker side */

/* Ring messages (inside RELAY_MSG_FIRST..LAST; relay.c forwards them). */
#define CLUSTER_MSG_FIRST 0x0380
#define CLUSTER_MSG_CLAIMED 0x0380 /* u.ptr[0]: a claim answer */
#define CLUSTER_MSG_LOST 0x0381    /* u.ptr[0]: a lost lease */
#define CLUSTER_MSG_QUERY 0x0382   /* u.ptr[0]: a /rooms/{id} question (cluster_int.h) */
#define CLUSTER_MSG_LAST 0x03bf

void cluster_worker_start(struct cluster *c, struct relay_worker *rw);
void cluster_worker_stop(struct cluster *c, struct relay_worker *rw);
void cluster_on_msg(struct relay_worker *rw, const struct worker_msg *msg);
void cluster_msg_discard(const struct worker_msg *msg);

/* lib/room's gate and room_closed (struct room_ops) on the owner: c NULL
 * opens every gate. */
uint32_t cluster_gate(struct cluster *c, struct relay_worker *rw, const uint8_t *room, size_t len,
                      const char **reason, uint32_t *retry_ms);
void cluster_room_closed(struct cluster *c, struct relay_worker *rw, const uint8_t *room,
                         size_t len);

/* ---------------------------------------------------------- operations */

struct cluster_stats {
    struct dir_stats dir;
    uint64_t joins_waited;             /* JOINs that waited for a claim */
    uint64_t joins_rejected;           /* ... and were rejected (directory unavailable) */
    uint64_t claim_failures;           /* claims answered with an error */
    uint64_t homes_self, homes_remote; /* home answers given to the trunks */
    uint64_t rooms_gone;               /* ops->gone calls */
};
bool cluster_up(const struct cluster *c);
void cluster_stats(const struct cluster *c, struct cluster_stats *out);
const char *cluster_relay_id(const struct cluster *c);
/* Prometheus text of the cluster families into buf (NUL-terminated).
 * Returns the length, or -1 when it does not fit. */
int cluster_metrics_text(const struct cluster *c, char *buf, size_t cap);

/* One directory request answered synchronously for the admin endpoint:
 * op DIR_OP_PLACE or DIR_OP_LOOKUP. Waits at most the directory's request
 * bound plus one second. Returns 0 (out filled, out->err may be set) or
 * ROOST_ETIMEDOUT / ROOST_ENOMEM / the submit error. */
struct cluster_answer {
    int err;
    char reason[96];
    bool has_home, home_is_self;
    char home_id[DIR_ID_MAX + 1];
    char home_addr[DIR_ADDR_MAX + 1];
    uint64_t gen;
    int64_t lease_ttl_ms;
    bool has_place, place_is_home;
    struct dir_relay place;
};
int cluster_ask(struct cluster *c, enum dir_op op, const char *room, size_t len,
                struct cluster_answer *out);

/* What this relay's owner worker of the room knows (a bounded round trip
 * to it, at most 1 s): its role for the room, the generation, whether the
 * lease is valid now by this relay's clock. */
struct cluster_room_local {
    bool answered; /* the owner worker answered */
    bool known;    /* the room has a directory entry here */
    bool claiming, need_claim, home_known, self, lease_valid;
    uint64_t gen;
    char home_id[DIR_ID_MAX + 1];
    char home_addr[DIR_ADDR_MAX + 1];
    /* The room on the owner (room_shard_census): members per issuing
     * relay (pid_prefix), and hidden members (one per subscribed trunk:
     * on the home, the relays that subscribe; on a subscriber, 1). */
    uint32_t by_prefix[256];
    uint32_t trunk_subscriptions;
};
int cluster_room_local(struct cluster *c, const char *room, size_t len,
                       struct cluster_room_local *out);
/* For the admin's /rooms/{id} (docs/OPERATIONS.md): sets "cluster" in the
 * room's JSON object j (a json_t *) to this relay's id and role for the
 * room (cluster_room_local), the room's trunk members here and the
 * relay's trunk counters. No-op when r has no cluster or trunks. */
void cluster_room_json(struct relay *r, const char *room, void *j);

#endif
