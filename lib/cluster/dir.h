/* The cluster directory client (docs/CLUSTER.md section 1): one dedicated
 * thread that talks to Redis with hiredis's synchronous API and timeouts,
 * registers this relay, claims / renews / releases room homes (leases with
 * generation numbers), looks up homes, lists relays and places clients.
 *
 * The rest of the process never waits for Redis. Requests go into a FIFO
 * (mutex + condvar, held only to link a node) and each accepted request is
 * answered exactly once by a completion callback on the cluster thread; the
 * relay turns the answer into a worker message (worker_pool_post). Whether
 * this relay is home of a room is read lock-free from a lease object, with
 * the reader's own clock, so the belief ends on time even when the cluster
 * thread or Redis is stuck.
 *
 * Thread safety, per function:
 *   dir_new, dir_del                      : one owner thread (main)
 *   dir_claim, dir_lookup, dir_list,
 *   dir_place, dir_release, dir_up,
 *   dir_stats, dir_test_stall             : any thread, including workers
 *                                           (never from inside a dir callback
 *                                           for dir_del)
 *   dir_lease_*                           : any thread holding a reference
 *   callbacks (done, event, load)         : called on the cluster thread;
 *                                           they must not block and must not
 *                                           call dir_del */
#ifndef ROOST_CLUSTER_DIR_H
#define ROOST_CLUSTER_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dirkey.h"
#include "cluster/dirtime.h"

struct dir;
struct dir_lease;

enum dir_op {
    DIR_OP_CLAIM = 1,
    DIR_OP_LOOKUP,
    DIR_OP_LIST,
    DIR_OP_PLACE,
};

/* An answer; every pointer in it is borrowed for the callback only. */
struct dir_result {
    enum dir_op op;
    /* 0, or: ROOST_ETIMEDOUT (Redis unreachable for the whole wait bound),
     * ROOST_EIO (Redis answered with an error or garbage), ROOST_EFULL
     * (PLACE: no relay has capacity), ROOST_ECLOSED (the directory is
     * shutting down), ROOST_ENOMEM. */
    int err;
    const char *reason; /* static text, "" when err == 0 */
    const char *room;   /* CLAIM, LOOKUP, PLACE: the room asked about */
    size_t room_len;

    /* CLAIM, LOOKUP, PLACE: the room's home as Redis has it. */
    bool has_home;     /* a lease exists */
    bool home_is_self; /* it names this relay */
    char home_id[DIR_ID_MAX + 1];
    uint64_t gen;                     /* the home's generation (fencing token) */
    char home_addr[DIR_ADDR_MAX + 1]; /* "" when the home is not registered */
    int64_t lease_ttl_ms;             /* remaining lease in Redis; -1 unknown */
    /* CLAIM with home_is_self: a new reference to the lease, owned by the
     * callback's caller from now on (dir_lease_put or dir_release). */
    struct dir_lease *lease;

    /* LIST, PLACE: every registered relay (PLACE: those it chose from). */
    const struct dir_relay *relays;
    size_t n_relays;
    /* PLACE: the chosen relay and whether it is the home. */
    const struct dir_relay *place;
    bool place_is_home;
};

typedef void (*dir_done_cb)(const struct dir_result *res, void *arg);

enum dir_event_type {
    DIR_EV_UP = 1,     /* connected to Redis (and registered) */
    DIR_EV_DOWN,       /* lost Redis (or could not reach it) */
    DIR_EV_LEASE_LOST, /* this relay is no longer home of `room` */
};

enum dir_lost_reason {
    DIR_LOST_EXPIRED = 1, /* not renewed before its local deadline */
    DIR_LOST_TAKEN,       /* a renew found another relay's value */
};

struct dir_event {
    enum dir_event_type type;
    /* LEASE_LOST: */
    const char *room; /* borrowed for the callback */
    size_t room_len;
    uint64_t gen;
    enum dir_lost_reason reason;
};

typedef void (*dir_event_cb)(const struct dir_event *ev, void *arg);
/* Fills the load this relay publishes; called on the cluster thread once
 * per refresh. */
typedef void (*dir_load_cb)(struct dir_load *out, void *arg);

struct dir_config {
    const char *redis_host; /* numeric or name; copied */
    uint16_t redis_port;
    const char *password;     /* AUTH when non-NULL; copied */
    int db;                   /* SELECT when > 0 */
    const char *prefix;       /* key prefix, NULL: "roost" */
    const char *relay_id;     /* this relay, [A-Za-z0-9._-]{1,32} */
    const char *trunk_addr;   /* "host:port" others trunk to */
    struct dir_timing timing; /* zeros take the defaults */
    dir_load_cb load_cb;      /* NULL: publishes zeros (not accepting) */
    void *load_arg;
    dir_event_cb event_cb; /* NULL: none */
    void *event_arg;
    size_t max_queue; /* requests waiting at once, 0: 4096 */
};

/* Counters, single writer (the cluster thread). up and leases_held are
 * gauges. */
struct dir_stats {
    uint64_t up;
    uint64_t reconnects; /* successful connects after the first */
    uint64_t connect_failures;
    uint64_t redis_errors; /* failed commands (I/O, timeout, error reply) */
    uint64_t refreshes;    /* registrations written */
    uint64_t claims;       /* claim commands answered */
    uint64_t claims_won;
    uint64_t claims_elsewhere;
    uint64_t renewals;    /* successful renews */
    uint64_t restores;    /* renews that set back a key Redis had lost */
    uint64_t leases_lost; /* expired + taken */
    uint64_t leases_expired;
    uint64_t leases_taken;
    uint64_t releases; /* compare-and-delete sent */
    uint64_t lookups;
    uint64_t lists;
    uint64_t places;
    uint64_t req_timeouts; /* requests failed after the wait bound */
    uint64_t leases_held;
};

/* Starts the cluster thread; it connects, registers and keeps the relay
 * registered until dir_del. Returns 0, ROOST_EINVAL (bad id, prefix,
 * address or timing: dirtime_complete), ROOST_ENOMEM or ROOST_ESYS (thread
 * creation). Redis need not be reachable: the thread keeps trying. cfg is
 * copied; the callbacks' args are borrowed until dir_del returns. */
int dir_new(struct dir **out, const struct dir_config *cfg);

/* Stops the thread: pending requests complete with ROOST_ECLOSED, held
 * leases are invalidated (and released in Redis, best effort, as is the
 * relay's registration). Lease references held elsewhere stay valid
 * objects (never valid leases) until put. Accepts NULL. */
void dir_del(struct dir *d);

/* Asks to become home of a room (room: len bytes, see dirkey_valid_room).
 * The answer says whether this relay is home (with a lease reference) or
 * which relay is. While this relay holds the lease the cluster thread
 * renews it; dir_release ends it. Claiming a room already held answers
 * with another reference to the same lease.
 * Returns 0 (cb will be called exactly once), ROOST_EINVAL, ROOST_ENOMEM,
 * ROOST_EFULL (queue full) or ROOST_ECLOSED. */
int dir_claim(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg);
/* The room's home (has_home false: nobody holds it). Same returns. */
int dir_lookup(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg);
/* Every registered relay. Same returns. */
int dir_list(struct dir *d, dir_done_cb cb, void *arg);
/* Where a client of the room should connect (docs/CLUSTER.md 1.7). */
int dir_place(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg);

/* The room is empty here: ends the lease at once (dir_lease_valid turns
 * false for every holder), stops renewing it and deletes it in Redis if it
 * is still ours (best effort: otherwise it expires). Consumes the caller's
 * reference. Accepts NULL. */
void dir_release(struct dir *d, struct dir_lease *lease);

/* True while now (CLOCK_MONOTONIC ns, the caller's clock) is before the
 * lease's local deadline and the lease was neither released nor lost. */
bool dir_lease_valid(const struct dir_lease *l, uint64_t now);
uint64_t dir_lease_gen(const struct dir_lease *l);
/* The local deadline (ns), 0 once lost or released. */
uint64_t dir_lease_until(const struct dir_lease *l);
/* Room bytes (not NUL-terminated in general; NUL-terminated here). */
const char *dir_lease_room(const struct dir_lease *l, size_t *len);
void dir_lease_get(struct dir_lease *l);
/* Drops a reference; the last one frees. Accepts NULL. */
void dir_lease_put(struct dir_lease *l);

/* Connected to Redis (relaxed read). */
bool dir_up(const struct dir *d);
void dir_stats(const struct dir *d, struct dir_stats *out);
const char *dir_relay_id(const struct dir *d);

/* Tests only: on, the cluster thread stops at the top of its next turn and
 * does nothing (no Redis, no renewals, no events) until off, like a
 * process paused with SIGSTOP. */
void dir_test_stall(struct dir *d, bool on);

/* CLOCK_MONOTONIC in ns, the clock leases are measured with. */
uint64_t dir_now(void);

#endif
