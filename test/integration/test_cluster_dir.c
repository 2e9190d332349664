/* The cluster directory (lib/cluster/dir) against a real redis-server:
 * two directory clients ("relays") register and list each other with TTLs;
 * a room claimed by one is found as home by the other; renewals keep it;
 * release (and shutdown) free it; a home whose thread is stalled past its
 * lease stops believing by its own clock and the other claims with a
 * higher generation (split-brain guard); a lease overwritten in Redis is
 * reported taken; Redis killed: the client reports down, requests fail
 * within the wait bound with a clear reason, the home drops its lease by
 * its own clock; Redis restarted on the same port: the same client
 * re-registers, claims again, and restores a lease that was still valid;
 * placement; a real child process paused with SIGSTOP past its lease
 * (then SIGCONT) never believes it is home after the other claimed;
 * shutdown with requests pending.
 *
 * Timings are short (500 ms leases) and every wait polls against a
 * deadline derived from them. Callbacks run on the cluster threads and
 * only record (cmocka asserts are not thread-safe); the test thread
 * checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/redis_server.h"
#include "cluster/dir.h"
#include "core/error.h"

#define LEASE_MS 500
#define MARGIN_MS 80
#define WAIT_MS 300
#define RELAY_TTL_MS 500
#define ANSWER_MS 3000 /* a request answered while Redis is up: generous for a loaded box */
#define MS 1000000ull

static struct redis_server shared = {.pid = -1};

static void nap(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct dir_timing fast_timing(void)
{
    return (struct dir_timing){
        .refresh_ms = 100,
        .relay_ttl_ms = RELAY_TTL_MS,
        .lease_ms = LEASE_MS,
        .renew_ms = 120,
        .margin_ms = MARGIN_MS,
        .wait_ms = WAIT_MS,
        .connect_timeout_ms = 300,
        .cmd_timeout_ms = 300,
        .backoff_min_ms = 20,
        .backoff_max_ms = 100,
    };
}

/* ---------------------------------------------------------------- relays */

#define MAX_LOST 16

struct relay {
    struct dir *d;
    _Atomic uint32_t part, max, cpu;
    _Atomic bool accept;
    pthread_mutex_t mu; /* guards the event log */
    unsigned ups, downs, n_lost;
    struct {
        char room[DIR_ROOM_MAX + 1];
        uint64_t gen;
        enum dir_lost_reason reason;
    } lost[MAX_LOST];
};

static void load_cb(struct dir_load *out, void *arg)
{
    struct relay *r = arg;
    out->participants = atomic_load(&r->part);
    out->max_participants = atomic_load(&r->max);
    out->cpu_permille = atomic_load(&r->cpu);
    out->rooms = 1;
    out->accepting = atomic_load(&r->accept);
}

static void event_cb(const struct dir_event *ev, void *arg)
{
    struct relay *r = arg;
    pthread_mutex_lock(&r->mu);
    if (ev->type == DIR_EV_UP)
        r->ups++;
    else if (ev->type == DIR_EV_DOWN)
        r->downs++;
    else if (ev->type == DIR_EV_LEASE_LOST && r->n_lost < MAX_LOST) {
        memcpy(r->lost[r->n_lost].room, ev->room, ev->room_len);
        r->lost[r->n_lost].room[ev->room_len] = '\0';
        r->lost[r->n_lost].gen = ev->gen;
        r->lost[r->n_lost].reason = ev->reason;
        r->n_lost++;
    }
    pthread_mutex_unlock(&r->mu);
}

static struct relay *relay_new(const char *prefix, const char *id, uint16_t port,
                               struct dir_timing t)
{
    struct relay *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    pthread_mutex_init(&r->mu, NULL);
    atomic_store(&r->part, 10);
    atomic_store(&r->max, 100);
    atomic_store(&r->accept, true);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", 5000u + (unsigned)(id[0] - 'a'));
    struct dir_config cfg = {
        .redis_host = "127.0.0.1",
        .redis_port = port,
        .prefix = prefix,
        .relay_id = id,
        .trunk_addr = addr,
        .timing = t,
        .load_cb = load_cb,
        .load_arg = r,
        .event_cb = event_cb,
        .event_arg = r,
    };
    assert_int_equal(dir_new(&r->d, &cfg), 0);
    return r;
}

static void relay_del(struct relay *r)
{
    if (r == NULL)
        return;
    dir_del(r->d);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static unsigned relay_count(struct relay *r, unsigned *field)
{
    pthread_mutex_lock(&r->mu);
    unsigned v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* Polls `cond` every 2 ms until true or ms elapsed. */
#define POLL_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        uint64_t deadline_ = redis_test_now_ms() + (ms);                                           \
        while (!(cond) && redis_test_now_ms() < deadline_)                                         \
            nap(2);                                                                                \
        assert_true(cond);                                                                         \
    } while (0)

static bool up_now(struct relay *r)
{
    return dir_up(r->d);
}

/* ------------------------------------------------------------------ boxes */

/* One answer, copied out of the callback. */
struct box {
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

static void box_init(struct box *b)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->place = -1;
}

static void box_fini(struct box *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

static void box_cb(const struct dir_result *res, void *arg)
{
    struct box *b = arg;
    pthread_mutex_lock(&b->mu);
    b->res = *res;
    snprintf(b->reason, sizeof(b->reason), "%s", res->reason);
    b->n_relays = res->n_relays < 8 ? res->n_relays : 8;
    if (b->n_relays > 0)
        memcpy(b->relays, res->relays, b->n_relays * sizeof(b->relays[0]));
    b->place = res->place != NULL ? (int)(res->place - res->relays) : -1;
    b->res.relays = NULL;
    b->res.place = NULL;
    b->res.room = NULL;
    b->res.reason = NULL;
    b->done_ms = redis_test_now_ms();
    b->done = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static bool box_wait(struct box *b, unsigned ms)
{
    uint64_t deadline = redis_test_now_ms() + ms;
    pthread_mutex_lock(&b->mu);
    while (!b->done && redis_test_now_ms() < deadline) {
        pthread_mutex_unlock(&b->mu);
        nap(1);
        pthread_mutex_lock(&b->mu);
    }
    bool done = b->done;
    pthread_mutex_unlock(&b->mu);
    return done;
}

enum op { CLAIM, LOOKUP, LIST, PLACE };

/* Submits and waits for the answer (asserts it comes within ANSWER_MS). */
static void call(struct relay *r, enum op op, const char *room, struct box *b)
{
    box_init(b);
    int rc = -1;
    size_t len = room != NULL ? strlen(room) : 0;
    switch (op) {
    case CLAIM:
        rc = dir_claim(r->d, room, len, box_cb, b);
        break;
    case LOOKUP:
        rc = dir_lookup(r->d, room, len, box_cb, b);
        break;
    case LIST:
        rc = dir_list(r->d, box_cb, b);
        break;
    case PLACE:
        rc = dir_place(r->d, room, len, box_cb, b);
        break;
    }
    assert_int_equal(rc, 0);
    assert_true(box_wait(b, ANSWER_MS));
}

/* Claim that must win; returns the lease (caller releases or puts). */
static struct dir_lease *claim_home(struct relay *r, const char *room)
{
    struct box b;
    call(r, CLAIM, room, &b);
    assert_int_equal(b.res.err, 0);
    assert_true(b.res.has_home);
    assert_true(b.res.home_is_self);
    assert_non_null(b.res.lease);
    assert_true(b.res.gen > 0);
    assert_int_equal(dir_lease_gen(b.res.lease), b.res.gen);
    box_fini(&b);
    return b.res.lease;
}

static bool list_has(struct relay *r, const char *id, size_t want_n)
{
    struct box b;
    call(r, LIST, NULL, &b);
    assert_int_equal(b.res.err, 0);
    bool found = false;
    for (size_t i = 0; i < b.n_relays; i++)
        found |= strcmp(b.relays[i].id, id) == 0;
    box_fini(&b);
    return found && (want_n == 0 || b.n_relays == want_n);
}

static bool lookup_home_is(struct relay *r, const char *room, const char *id)
{
    struct box b;
    call(r, LOOKUP, room, &b);
    assert_int_equal(b.res.err, 0);
    box_fini(&b);
    if (id == NULL)
        return !b.res.has_home;
    return b.res.has_home && strcmp(b.res.home_id, id) == 0;
}

/* Raw access for checks and for tampering. */
static redisReply *raw(const struct redis_server *rs, const char *fmt, ...)
{
    redisContext *c = redis_server_connect(rs);
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

/* ------------------------------------------------------------------ tests */

static void test_register_list(void **state)
{
    (void)state;
    struct relay *a = relay_new("t1", "a", shared.port, fast_timing());
    struct relay *b = relay_new("t1", "b", shared.port, fast_timing());
    atomic_store(&b->part, 50);
    POLL_UNTIL(up_now(a) && up_now(b), ANSWER_MS);
    POLL_UNTIL(list_has(a, "b", 2) && list_has(b, "a", 2), ANSWER_MS);
    /* b's load reaches a with b's next refresh. */
    struct box l;
    uint64_t deadline = redis_test_now_ms() + ANSWER_MS;
    for (;;) {
        call(a, LIST, NULL, &l);
        assert_int_equal(l.n_relays, 2);
        int ib = strcmp(l.relays[0].id, "b") == 0 ? 0 : 1;
        if (l.relays[ib].load.participants == 50 || redis_test_now_ms() > deadline)
            break;
        box_fini(&l);
        nap(10);
    }
    for (size_t i = 0; i < 2; i++) {
        const struct dir_relay *r = &l.relays[i];
        bool isb = strcmp(r->id, "b") == 0;
        assert_string_equal(r->addr, isb ? "127.0.0.1:5001" : "127.0.0.1:5000");
        assert_int_equal(r->load.participants, isb ? 50 : 10);
        assert_int_equal(r->load.max_participants, 100);
        assert_true(r->load.accepting);
        assert_true(r->ttl_ms > 0 && r->ttl_ms <= RELAY_TTL_MS);
    }
    box_fini(&l);
    /* The hash in Redis carries a TTL. */
    redisReply *t = raw(&shared, "PTTL t1:relay:a");
    assert_int_equal(t->type, REDIS_REPLY_INTEGER);
    assert_true(t->integer > 0 && t->integer <= RELAY_TTL_MS);
    freeReplyObject(t);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_int_equal(st.up, 1);
    assert_true(st.refreshes >= 1);
    assert_int_equal(relay_count(a, &a->ups), 1);
    /* A stopped relay unregisters at once. */
    relay_del(b);
    assert_true(list_has(a, "a", 1));
    relay_del(a);
}

static void test_claim_renew_release(void **state)
{
    (void)state;
    struct relay *a = relay_new("t2", "a", shared.port, fast_timing());
    struct relay *b = relay_new("t2", "b", shared.port, fast_timing());
    struct dir_lease *la = claim_home(a, "demo");
    uint64_t g1 = dir_lease_gen(la);
    assert_true(dir_lease_valid(la, dir_now()));
    size_t rl;
    assert_memory_equal(dir_lease_room(la, &rl), "demo", 4);
    assert_int_equal(rl, 4);

    /* The other relay finds a as home, with a's trunk address. */
    struct box c;
    call(b, CLAIM, "demo", &c);
    assert_int_equal(c.res.err, 0);
    assert_true(c.res.has_home);
    assert_false(c.res.home_is_self);
    assert_null(c.res.lease);
    assert_string_equal(c.res.home_id, "a");
    assert_string_equal(c.res.home_addr, "127.0.0.1:5000");
    assert_int_equal(c.res.gen, g1);
    assert_true(c.res.lease_ttl_ms > 0 && c.res.lease_ttl_ms <= LEASE_MS);
    box_fini(&c);
    assert_true(lookup_home_is(b, "demo", "a"));

    /* Claiming again on a answers the same lease without a new generation. */
    struct dir_lease *la2 = claim_home(a, "demo");
    assert_ptr_equal(la2, la);
    dir_lease_put(la2);

    /* Renewals keep it past several leases. */
    struct dir_stats st;
    uint64_t t0 = redis_test_now_ms();
    POLL_UNTIL((dir_stats(a->d, &st), st.renewals >= 8), 8 * 120 + ANSWER_MS);
    assert_true(redis_test_now_ms() - t0 >= LEASE_MS);
    assert_true(dir_lease_valid(la, dir_now()));
    redisReply *v = raw(&shared, "GET t2:room:demo");
    char want[64];
    snprintf(want, sizeof(want), "a:%llu", (unsigned long long)g1);
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_string_equal(v->str, want);
    freeReplyObject(v);
    assert_true(lookup_home_is(b, "demo", "a"));
    assert_int_equal(st.claims_won, 1);
    assert_int_equal(st.leases_held, 1);

    /* Release: invalid at once, deleted in Redis (b sees no home). */
    dir_release(a->d, la);
    POLL_UNTIL(lookup_home_is(b, "demo", NULL), ANSWER_MS);
    dir_stats(a->d, &st);
    assert_int_equal(st.releases, 1);
    assert_int_equal(st.leases_held, 0);
    assert_int_equal(st.leases_lost, 0);

    /* Now b can claim, with a higher generation. */
    struct dir_lease *lb = claim_home(b, "demo");
    assert_true(dir_lease_gen(lb) > g1);
    assert_true(lookup_home_is(a, "demo", "b"));
    dir_release(b->d, lb);
    assert_int_equal(relay_count(a, &a->n_lost), 0);
    relay_del(a);
    relay_del(b);
}

/* Split-brain guard: the home's cluster thread stalls (as if paused by
 * SIGSTOP) past its lease. It stops believing by its own clock before
 * Redis lets the other claim; the other then claims with a higher
 * generation; when the stalled thread resumes it reports the loss and
 * never believes again. */
static void test_stalled_home(void **state)
{
    (void)state;
    struct relay *a = relay_new("t3", "a", shared.port, fast_timing());
    struct relay *b = relay_new("t3", "b", shared.port, fast_timing());
    struct dir_lease *la = claim_home(a, "room");
    uint64_t g1 = dir_lease_gen(la);
    dir_test_stall(a->d, true);
    uint64_t stalled_at = dir_now();

    /* a's belief ends by the clock alone, within one lease of the stall. */
    POLL_UNTIL(!dir_lease_valid(la, dir_now()), LEASE_MS + 100);
    uint64_t until_a = dir_lease_until(la);
    assert_true(until_a != 0 && until_a <= stalled_at + LEASE_MS * MS);

    /* b polls claims until Redis expires a's key. */
    struct box c;
    uint64_t deadline = redis_test_now_ms() + LEASE_MS + ANSWER_MS;
    for (;;) {
        call(b, CLAIM, "room", &c);
        assert_int_equal(c.res.err, 0);
        if (c.res.home_is_self || redis_test_now_ms() > deadline)
            break;
        assert_string_equal(c.res.home_id, "a");
        assert_int_equal(c.res.gen, g1);
        box_fini(&c);
        nap(5);
    }
    uint64_t b_home_at = dir_now();
    assert_true(c.res.home_is_self);
    struct dir_lease *lb = c.res.lease;
    box_fini(&c);
    assert_true(dir_lease_gen(lb) > g1);
    /* Never both: a stopped believing before b became home. */
    assert_true(until_a <= b_home_at);
    assert_false(dir_lease_valid(la, b_home_at));
    assert_true(dir_lease_valid(lb, dir_now()));

    /* a resumes: it reports the lease lost, stays not home, and finds b. */
    dir_test_stall(a->d, false);
    POLL_UNTIL(relay_count(a, &a->n_lost) == 1, ANSWER_MS);
    pthread_mutex_lock(&a->mu);
    assert_string_equal(a->lost[0].room, "room");
    assert_int_equal(a->lost[0].gen, g1);
    assert_int_equal(a->lost[0].reason, DIR_LOST_EXPIRED);
    pthread_mutex_unlock(&a->mu);
    assert_false(dir_lease_valid(la, dir_now()));
    assert_int_equal(dir_lease_until(la), 0);
    call(a, CLAIM, "room", &c);
    assert_false(c.res.home_is_self);
    assert_string_equal(c.res.home_id, "b");
    assert_int_equal(c.res.gen, dir_lease_gen(lb));
    box_fini(&c);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_int_equal(st.leases_expired, 1);
    assert_int_equal(st.leases_held, 0);
    /* b keeps renewing, past a lease. */
    dir_stats(b->d, &st);
    uint64_t renewed = st.renewals;
    POLL_UNTIL((dir_stats(b->d, &st), st.renewals >= renewed + 5), 5 * 120 + ANSWER_MS);
    assert_true(dir_lease_valid(lb, dir_now()));
    dir_lease_put(la);
    dir_release(b->d, lb);
    relay_del(a);
    relay_del(b);
}

/* Someone else's value in the key: the next renew reports the lease taken. */
static void test_taken(void **state)
{
    (void)state;
    struct relay *a = relay_new("t4", "a", shared.port, fast_timing());
    struct dir_lease *la = claim_home(a, "x");
    freeReplyObject(raw(&shared, "SET t4:room:x z:99999999999999999 PX 10000"));
    POLL_UNTIL(relay_count(a, &a->n_lost) == 1, ANSWER_MS);
    assert_false(dir_lease_valid(la, dir_now()));
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->lost[0].reason, DIR_LOST_TAKEN);
    pthread_mutex_unlock(&a->mu);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_int_equal(st.leases_taken, 1);
    /* Releasing a lost lease does not delete the other's key. */
    dir_release(a->d, la);
    POLL_UNTIL((dir_stats(a->d, &st), st.releases == 1), ANSWER_MS);
    assert_true(lookup_home_is(a, "x", "z"));
    relay_del(a);
}

/* Redis killed and restarted on the same port, with short leases. */
static void test_redis_down(void **state)
{
    (void)state;
    struct redis_server rs = {.pid = -1};
    assert_int_equal(redis_server_start(&rs, 0), 0);
    struct relay *a = relay_new("t5", "a", rs.port, fast_timing());
    POLL_UNTIL(up_now(a), ANSWER_MS);
    struct dir_lease *la = claim_home(a, "r");
    uint64_t g1 = dir_lease_gen(la);

    redis_server_kill(&rs);
    uint64_t killed = dir_now();
    /* Down is noticed at the next refresh or renew. */
    POLL_UNTIL(!up_now(a), ANSWER_MS);
    POLL_UNTIL(relay_count(a, &a->downs) == 1, ANSWER_MS);

    /* Requests (a lookup, a claim of a new room: a cross-relay join) wait
     * the bound, then fail with a clear reason. */
    struct box c, c2;
    box_init(&c);
    box_init(&c2);
    uint64_t sub = redis_test_now_ms();
    assert_int_equal(dir_lookup(a->d, "other", 5, box_cb, &c), 0);
    assert_int_equal(dir_claim(a->d, "new", 3, box_cb, &c2), 0);
    assert_true(box_wait(&c, WAIT_MS + 1000));
    assert_true(box_wait(&c2, WAIT_MS + 1000));
    assert_int_equal(c.res.err, ROOST_ETIMEDOUT);
    assert_string_equal(c.reason, "redis unavailable");
    assert_true(c.done_ms - sub >= WAIT_MS - 5);
    assert_int_equal(c2.res.err, ROOST_ETIMEDOUT);
    assert_string_equal(c2.reason, "redis unavailable");
    assert_null(c2.res.lease);
    box_fini(&c);
    box_fini(&c2);

    /* The home drops its lease by its own clock, within one lease. */
    POLL_UNTIL(!dir_lease_valid(la, dir_now()), LEASE_MS + 100);
    assert_true(dir_lease_until(la) == 0 || dir_lease_until(la) < killed + LEASE_MS * MS);
    POLL_UNTIL(relay_count(a, &a->n_lost) == 1, ANSWER_MS);
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->lost[0].reason, DIR_LOST_EXPIRED);
    pthread_mutex_unlock(&a->mu);
    dir_lease_put(la);

    /* Redis back on the same port: the same client re-registers and can
     * claim again; the generation still grows although Redis forgot it. */
    assert_int_equal(redis_server_restart(&rs), 0);
    POLL_UNTIL(up_now(a), ANSWER_MS);
    POLL_UNTIL(relay_count(a, &a->ups) == 2, ANSWER_MS);
    assert_true(list_has(a, "a", 1));
    struct dir_lease *la2 = claim_home(a, "r");
    assert_true(dir_lease_gen(la2) > g1);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_true(st.reconnects >= 1);
    assert_true(st.req_timeouts >= 2);
    assert_true(st.redis_errors >= 1);
    assert_int_equal(st.up, 1);
    dir_release(a->d, la2);
    relay_del(a);
    redis_server_stop(&rs);
}

/* Redis restarted within the lease: the lease stays valid throughout and
 * the renew puts the key back (same value, generation floor raised). */
static void test_redis_restart_restore(void **state)
{
    (void)state;
    struct redis_server rs = {.pid = -1};
    assert_int_equal(redis_server_start(&rs, 0), 0);
    struct dir_timing t = fast_timing();
    t.lease_ms = 3000;
    t.margin_ms = 300;
    t.renew_ms = 100;
    struct relay *a = relay_new("t6", "a", rs.port, t);
    struct dir_lease *la = claim_home(a, "r");
    uint64_t g1 = dir_lease_gen(la);

    redis_server_kill(&rs);
    POLL_UNTIL(!up_now(a), ANSWER_MS);
    assert_true(dir_lease_valid(la, dir_now()));
    /* A held room is answered without Redis. */
    struct dir_lease *again = claim_home(a, "r");
    assert_ptr_equal(again, la);
    dir_lease_put(again);

    assert_int_equal(redis_server_restart(&rs), 0);
    struct dir_stats st;
    POLL_UNTIL((dir_stats(a->d, &st), st.restores >= 1), ANSWER_MS);
    assert_true(dir_lease_valid(la, dir_now()));
    assert_int_equal(relay_count(a, &a->n_lost), 0);
    redisReply *v = raw(&rs, "GET t6:room:r");
    char want[64];
    snprintf(want, sizeof(want), "a:%llu", (unsigned long long)g1);
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_string_equal(v->str, want);
    freeReplyObject(v);
    v = raw(&rs, "GET t6:gen:r");
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_int_equal(strtoull(v->str, NULL, 10), g1);
    freeReplyObject(v);
    v = raw(&rs, "EXISTS t6:relay:a");
    assert_int_equal(v->integer, 1);
    freeReplyObject(v);
    /* Another relay sees a as home with the same generation. */
    struct relay *b = relay_new("t6", "b", rs.port, t);
    struct box c;
    call(b, CLAIM, "r", &c);
    assert_false(c.res.home_is_self);
    assert_string_equal(c.res.home_id, "a");
    assert_int_equal(c.res.gen, g1);
    box_fini(&c);
    dir_release(a->d, la);
    relay_del(b);
    relay_del(a);
    redis_server_stop(&rs);
}

static bool place_is(struct relay *r, const char *room, int err, const char *id, bool home)
{
    struct box b;
    call(r, PLACE, room, &b);
    box_fini(&b);
    if (b.res.err != err)
        return false;
    if (err != 0)
        return true;
    return b.place >= 0 && strcmp(b.relays[b.place].id, id) == 0 && b.res.place_is_home == home;
}

static void test_place(void **state)
{
    (void)state;
    struct relay *a = relay_new("t7", "a", shared.port, fast_timing());
    struct relay *b = relay_new("t7", "b", shared.port, fast_timing());
    atomic_store(&b->part, 50);
    POLL_UNTIL(list_has(a, "b", 2), ANSWER_MS);
    struct dir_lease *lb = claim_home(b, "p");
    /* The home while it has capacity, though fuller. */
    POLL_UNTIL(place_is(a, "p", 0, "b", true), ANSWER_MS);
    struct box c;
    call(a, PLACE, "p", &c);
    assert_true(c.res.has_home);
    assert_string_equal(c.res.home_id, "b");
    assert_string_equal(c.res.home_addr, "127.0.0.1:5001");
    assert_int_equal(c.res.gen, dir_lease_gen(lb));
    box_fini(&c);
    /* A room without home: least loaded. */
    assert_true(place_is(b, "q", 0, "a", false));
    /* Home stops accepting: the least-loaded other. */
    atomic_store(&b->accept, false);
    POLL_UNTIL(place_is(a, "p", 0, "a", false), ANSWER_MS);
    /* Nobody accepts. */
    atomic_store(&a->accept, false);
    POLL_UNTIL(place_is(a, "p", ROOST_EFULL, NULL, false), ANSWER_MS);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_true(st.places >= 4);
    dir_release(b->d, lb);
    relay_del(a);
    relay_del(b);
}

/* dir_del with requests pending (no Redis at all): each is answered once,
 * ROOST_ECLOSED; leases held are released in Redis at shutdown. */
/* The split-brain test with a real paused process, as the issue asks:
 * a child process holds the lease, gets SIGSTOP past it, the other relay
 * claims with a higher generation, then SIGCONT: the child's own clock
 * says it is not home (and its deadline was before the other's claim;
 * CLOCK_MONOTONIC is system-wide, so the two processes compare). The child
 * uses no cmocka (its asserts would unwind into the parent's copy). */
struct child_report {
    uint64_t gen;
    uint64_t until;
    uint32_t valid;
};

static bool read_full(int fd, void *buf, size_t n, unsigned ms)
{
    uint8_t *p = buf;
    uint64_t deadline = redis_test_now_ms() + ms;
    while (n > 0) {
        uint64_t now = redis_test_now_ms();
        if (now >= deadline)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void child_main(int wfd, int rfd)
{
    struct dir_config cfg = {.redis_host = "127.0.0.1",
                             .redis_port = shared.port,
                             .prefix = "t9",
                             .relay_id = "c",
                             .trunk_addr = "127.0.0.1:5002",
                             .timing = fast_timing()};
    struct dir *d = NULL;
    if (dir_new(&d, &cfg) != 0)
        _exit(2);
    struct box b;
    box_init(&b);
    if (dir_claim(d, "stop", 4, box_cb, &b) != 0 || !box_wait(&b, ANSWER_MS) || b.res.err != 0 ||
        b.res.lease == NULL)
        _exit(3);
    struct child_report rep = {.gen = b.res.gen, .valid = 1};
    if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(4);
    /* Parent: SIGSTOP ... SIGCONT, then one byte: report the belief now. */
    char go;
    if (read(rfd, &go, 1) != 1)
        _exit(5);
    rep.valid = dir_lease_valid(b.res.lease, dir_now());
    rep.until = dir_lease_until(b.res.lease);
    if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(6);
    dir_lease_put(b.res.lease);
    dir_del(d);
    _exit(0);
}

static void test_sigstop_home(void **state)
{
    (void)state;
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid != -1);
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        child_main(up[1], down[0]);
    }
    close(up[1]);
    close(down[0]);
    struct child_report rep;
    assert_true(read_full(up[0], &rep, sizeof(rep), ANSWER_MS));
    assert_true(rep.gen > 0);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint64_t stopped_at = dir_now();

    struct relay *b = relay_new("t9", "b", shared.port, fast_timing());
    struct box c;
    uint64_t deadline = redis_test_now_ms() + LEASE_MS + ANSWER_MS;
    for (;;) {
        call(b, CLAIM, "stop", &c);
        assert_int_equal(c.res.err, 0);
        if (c.res.home_is_self || redis_test_now_ms() > deadline)
            break;
        assert_string_equal(c.res.home_id, "c");
        box_fini(&c);
        nap(5);
    }
    uint64_t b_home_at = dir_now();
    assert_true(c.res.home_is_self);
    struct dir_lease *lb = c.res.lease;
    box_fini(&c);
    assert_true(dir_lease_gen(lb) > rep.gen);
    assert_true(b_home_at - stopped_at >= (LEASE_MS - MARGIN_MS) * MS / 2);

    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(write(down[1], "g", 1), 1);
    assert_true(read_full(up[0], &rep, sizeof(rep), ANSWER_MS));
    assert_int_equal(rep.valid, 0);
    /* Its deadline (or 0 once its thread saw it pass) precedes b's claim. */
    assert_true(rep.until <= b_home_at);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(up[0]);
    close(down[1]);
    assert_true(dir_lease_valid(lb, dir_now()));
    /* The resumed child's renew found b's value (or it had expired first):
     * b is still home. */
    assert_true(lookup_home_is(b, "stop", "b"));
    dir_release(b->d, lb);
    relay_del(b);
}

static void test_shutdown(void **state)
{
    (void)state;
    struct dir_config bad = {
        .redis_host = "127.0.0.1", .redis_port = 1, .relay_id = "bad id", .trunk_addr = "x:1"};
    struct dir *d = NULL;
    assert_int_equal(dir_new(&d, &bad), ROOST_EINVAL);
    bad.relay_id = "ok";
    bad.timing.lease_ms = 100;
    bad.timing.margin_ms = 100;
    assert_int_equal(dir_new(&d, &bad), ROOST_EINVAL);

    /* A port nobody listens on: a closed listener's. */
    struct redis_server none = {.pid = -1};
    assert_int_equal(redis_server_start(&none, 0), 0);
    redis_server_stop(&none);
    struct dir_timing t = fast_timing();
    t.wait_ms = 10000;
    struct relay *a = relay_new("t8", "a", none.port, t);
    struct box c1, c2;
    box_init(&c1);
    box_init(&c2);
    assert_int_equal(dir_claim(a->d, "r", 1, box_cb, &c1), 0);
    assert_int_equal(dir_list(a->d, box_cb, &c2), 0);
    assert_int_equal(dir_claim(a->d, "", 0, box_cb, &c1), ROOST_EINVAL);
    struct dir_stats st;
    POLL_UNTIL((dir_stats(a->d, &st), st.connect_failures >= 2), ANSWER_MS);
    assert_false(up_now(a));
    relay_del(a);
    assert_true(c1.done && c2.done);
    assert_int_equal(c1.res.err, ROOST_ECLOSED);
    assert_int_equal(c2.res.err, ROOST_ECLOSED);
    box_fini(&c1);
    box_fini(&c2);

    /* Shutdown releases: another relay sees no home right after. */
    struct relay *x = relay_new("t8", "x", shared.port, fast_timing());
    struct relay *y = relay_new("t8", "y", shared.port, fast_timing());
    struct dir_lease *lx = claim_home(x, "s");
    relay_del(x);
    assert_false(dir_lease_valid(lx, dir_now()));
    assert_true(lookup_home_is(y, "s", NULL));
    dir_lease_put(lx);
    relay_del(y);
}

static int group_setup(void **state)
{
    (void)state;
    int rc = redis_server_start(&shared, 0);
    if (rc != 0)
        fprintf(stderr, "# cannot start redis-server: %d (scripts/install-deps installs it)\n", rc);
    return rc == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_server_stop(&shared);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_list), cmocka_unit_test(test_claim_renew_release),
        cmocka_unit_test(test_stalled_home),  cmocka_unit_test(test_taken),
        cmocka_unit_test(test_redis_down),    cmocka_unit_test(test_redis_restart_restore),
        cmocka_unit_test(test_place),         cmocka_unit_test(test_sigstop_home),
        cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests_name("cluster_dir", tests, group_setup, group_teardown);
}
