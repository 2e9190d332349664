/* Private to lib/cluster/dir*.c: the directory's internal types and the
 * calls between its files. Not for use outside the directory module.
 *
 * The files call each other in one direction only (no cycle):
 *   dir.c (public API, lifecycle) -> dirthread -> dirreq -> dirredis -> dirlease
 * and dir.c also calls dirlease (dir_now, dir_lease_put, dirlease_end). */
#ifndef ROOST_CLUSTER_DIR_INT_H
#define ROOST_CLUSTER_DIR_INT_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dir.h"
#include "core/stat.h"

/* ------------------------------------------------------------------ types */

struct dir_lease {
    /* Local deadline (ns); 0 once released (any thread, dir_release) or
     * lost (cluster thread). Stores are release, loads acquire: a reader
     * that sees a deadline sees the generation and room written before the
     * lease was published. The cluster thread extends it only with a CAS
     * from the value it read, so a concurrent release (store 0) wins. */
    _Atomic uint64_t until;
    _Atomic uint32_t refs;
    uint64_t gen;
    size_t room_len;
    char room[DIR_ROOM_MAX + 1];
    /* Cluster thread only. */
    uint64_t renew_at;
    size_t value_len;
    char value[DIR_VALUE_MAX + 1];
};

enum req_op {
    REQ_CLAIM = DIR_OP_CLAIM,
    REQ_LOOKUP = DIR_OP_LOOKUP,
    REQ_LIST = DIR_OP_LIST,
    REQ_PLACE = DIR_OP_PLACE,
    REQ_RELEASE = 100,
};

struct dir_req {
    struct dir_req *next;
    enum req_op op;
    dir_done_cb cb;
    void *arg;
    uint64_t deadline;       /* fail with ROOST_ETIMEDOUT after this while Redis is down */
    struct dir_lease *lease; /* RELEASE: the reference dir_release consumed */
    size_t room_len;
    char room[DIR_ROOM_MAX + 1];
};

struct dir {
    /* Immutable after dir_new. */
    char host[256];
    uint16_t port;
    char *password;
    int db;
    char prefix[DIR_PREFIX_MAX + 1];
    char id[DIR_ID_MAX + 1];
    char addr[DIR_ADDR_MAX + 1];
    char inst[17];
    char relay_key[DIR_KEY_MAX + 1];
    char relays_key[DIR_KEY_MAX + 1];
    char relay_prefix[DIR_KEY_MAX + 1];
    struct dir_timing t;
    dir_load_cb load_cb;
    void *load_arg;
    dir_event_cb event_cb;
    void *event_arg;
    size_t max_queue;

    pthread_t thread;
    bool thread_started;

    /* Guarded by mu: the request FIFO and the flags the thread waits on. */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    struct dir_req *q_head, *q_tail;
    size_t q_len;
    bool stop;
    bool stall;

    _Atomic uint64_t st[STAT_N(struct dir_stats)]; /* writer: cluster thread */

    /* Cluster thread only. */
    redisContext *rc;
    bool is_up;   /* connected and registered; mirrors the up gauge */
    bool ever_up; /* counts reconnects after the first */
    uint32_t backoff_ms;
    uint64_t reconnect_at;
    uint64_t refresh_at;
    struct dir_req *p_head, *p_tail; /* taken from the FIFO, waiting for Redis */
    struct dir_lease **held;         /* leases this relay holds (one reference each) */
    size_t n_held, cap_held;
};

#define ST(field) STAT_IDX(struct dir_stats, field)

/* ---------------------------------------------------------------- dirlease
 * Any thread: dirlease_end. Cluster thread only: the rest. */

/* Ends l for every holder: until becomes 0 (release store). */
void dirlease_end(struct dir_lease *l);
/* A lease for q's room held by `id` at generation gen, one reference, not
 * yet published (until 0). NULL when out of memory. */
struct dir_lease *dirlease_new(const struct dir_req *q, const char *id, uint64_t gen);
/* Calls the configured event callback, if any. */
void dirlease_emit(struct dir *d, const struct dir_event *ev);
/* Index in d->held of the room's lease, or -1. */
int dirlease_held_find(const struct dir *d, const char *room, size_t len);
/* Removes held[i] (order is not kept) and drops the table's reference. */
void dirlease_held_remove(struct dir *d, size_t i);
/* Appends l to the table, which takes over the caller's reference. False
 * when out of memory (l is then still the caller's). */
bool dirlease_held_add(struct dir *d, struct dir_lease *l);
/* Ends held[i], counts it, logs it, removes it and emits DIR_EV_LEASE_LOST. */
void dirlease_lose(struct dir *d, size_t i, enum dir_lost_reason why);
/* Loses every held lease past its local deadline. */
void dirlease_expire(struct dir *d, uint64_t now);

/* ---------------------------------------------------------------- dirredis
 * Cluster thread only. */

/* One command; NULL after any failure, which has closed the connection. */
redisReply *dirredis_command(struct dir *d, int argc, const char **argv, const size_t *lens);
/* Reply parsing: false when r is missing or of the wrong shape. */
bool dirredis_reply_int(const redisReply *r, long long *out);
bool dirredis_reply_u64(const redisReply *r, uint64_t *out);
/* Copies a string reply (nil: "") into out[cap]. False when too long. */
bool dirredis_reply_str(const redisReply *r, char *out, size_t cap);
/* Writes this relay's registration; false when the connection failed. */
bool dirredis_register(struct dir *d);
/* Connects, authenticates, selects the db and registers; on failure
 * schedules the next attempt (d->reconnect_at). */
void dirredis_connect(struct dir *d, uint64_t now);
/* Renews every held lease due at now. */
void dirredis_renew_due(struct dir *d, uint64_t now);

/* ------------------------------------------------------------------ dirreq
 * Cluster thread only. */

/* Answers q with err/reason (RELEASE: drops its lease reference). Does not
 * free q. */
void dirreq_fail(struct dir_req *q, int err, const char *reason);
/* Answers a claim of a room this relay holds without Redis; false if not held. */
bool dirreq_claim_held(struct dir *d, struct dir_req *q, uint64_t now);
/* Serves q; false when the connection failed and q stays pending. Does not
 * free q. */
bool dirreq_serve(struct dir *d, struct dir_req *q);

/* --------------------------------------------------------------- dirthread */

/* The cluster thread's start routine (arg: the struct dir); dir_new starts
 * it, dir_del stops and joins it. */
void *dirthread_main(void *arg);

#endif
