/* Test support for the cluster directory tests (test_cluster_dir*.c):
 * directory clients (lib/cluster/dir) against a real redis-server, with
 * short timings, their events recorded; one answer of a request waited
 * for in a box; raw Redis access. Callbacks run on the cluster threads and
 * only record (cmocka asserts are not thread-safe); the test's thread
 * checks. Not part of the relay. */
#ifndef ROOST_TEST_DIRFX_H
#define ROOST_TEST_DIRFX_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dir.h"
#include "redis_server.h"

/* dirfx_timing()'s figures. */
#define DIRFX_LEASE_MS 500
#define DIRFX_MARGIN_MS 80
#define DIRFX_WAIT_MS 300
#define DIRFX_RELAY_TTL_MS 500
/* A request answered while Redis is up: generous for a loaded box. */
#define DIRFX_ANSWER_MS 3000
#define DIRFX_MS 1000000ull

/* The group's redis-server (on a free port), started by
 * dirfx_group_setup and stopped by dirfx_group_teardown (cmocka group
 * fixtures). */
extern struct redis_server dirfx_redis;
int dirfx_group_setup(void **state);
int dirfx_group_teardown(void **state);

void dirfx_nap(unsigned ms);
/* Short timings: 500 ms leases and relay TTL, 300 ms waits. */
struct dir_timing dirfx_timing(void);

/* A directory client ("relay") and what its events told. */
#define DIRFX_MAX_LOST 16

struct dirfx_relay {
    struct dir *d;
    _Atomic uint32_t part, max, cpu;
    _Atomic bool accept;
    pthread_mutex_t mu; /* guards the event log */
    unsigned ups, downs, n_lost;
    struct {
        char room[DIR_ROOM_MAX + 1];
        uint64_t gen;
        enum dir_lost_reason reason;
    } lost[DIRFX_MAX_LOST];
};

/* A client of Redis on 127.0.0.1:port under prefix, as relay id (its trunk
 * address made from id's first letter), load 10 of 100, accepting. */
struct dirfx_relay *dirfx_relay_new(const char *prefix, const char *id, uint16_t port,
                                    struct dir_timing t);
void dirfx_relay_del(struct dirfx_relay *r);
/* *field of r's event record, read under its lock. */
unsigned dirfx_relay_count(struct dirfx_relay *r, unsigned *field);
bool dirfx_up(struct dirfx_relay *r);

/* Polls `cond` every 2 ms until true or ms elapsed. */
#define DIRFX_POLL_UNTIL(cond, ms)                                                                 \
    do {                                                                                           \
        uint64_t deadline_ = redis_test_now_ms() + (ms);                                           \
        while (!(cond) && redis_test_now_ms() < deadline_)                                         \
            dirfx_nap(2);                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

/* One answer, copied out of the callback. */
struct dirfx_box {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    uint64_t done_ms;
    struct dir_result res; /* borrowed pointers cleared; lease kept (owned) */
    char reason[64];
    struct dir_relay relays[8];
    size_t n_relays;
    int place; /* index into relays, -1 none */
};

void dirfx_box_init(struct dirfx_box *b);
void dirfx_box_fini(struct dirfx_box *b);
/* A dir_cb filling the box (arg). */
void dirfx_box_cb(const struct dir_result *res, void *arg);
/* Waits up to ms for the answer; true when it came. */
bool dirfx_box_wait(struct dirfx_box *b, unsigned ms);

enum dirfx_op { DIRFX_CLAIM, DIRFX_LOOKUP, DIRFX_LIST, DIRFX_PLACE };

/* Submits and waits for the answer (asserts it comes within
 * DIRFX_ANSWER_MS). */
void dirfx_call(struct dirfx_relay *r, enum dirfx_op op, const char *room, struct dirfx_box *b);
/* Claim that must win; returns the lease (caller releases or puts). */
struct dir_lease *dirfx_claim_home(struct dirfx_relay *r, const char *room);
/* r claims room again and again (every 5 ms) until it wins, once the
 * other relay's lease expired in Redis, at most DIRFX_LEASE_MS +
 * DIRFX_ANSWER_MS; until then the home must be other_id (at generation gen
 * unless 0). Returns the lease won and in *at (dir_now()) when it was. */
struct dir_lease *dirfx_claim_when_free(struct dirfx_relay *r, const char *room,
                                        const char *other_id, uint64_t gen, uint64_t *at);
/* r's list has id (and want_n relays, unless 0). */
bool dirfx_list_has(struct dirfx_relay *r, const char *id, size_t want_n);
/* r's lookup of room names id as home (NULL: no home). */
bool dirfx_lookup_home_is(struct dirfx_relay *r, const char *room, const char *id);
/* Raw access for checks and for tampering; asserts a reply. */
redisReply *dirfx_raw(const struct redis_server *rs, const char *fmt, ...);

#endif /* ROOST_TEST_DIRFX_H */
