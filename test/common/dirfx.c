#include "dirfx.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clusterfx.h"

struct redis_server dirfx_redis = {.pid = -1};

int dirfx_group_setup(void **state)
{
    (void)state;
    return clusterfx_redis_start(&dirfx_redis);
}

int dirfx_group_teardown(void **state)
{
    (void)state;
    redis_server_stop(&dirfx_redis);
    return 0;
}

void dirfx_nap(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct dir_timing dirfx_timing(void)
{
    return (struct dir_timing){
        .refresh_ms = 100,
        .relay_ttl_ms = DIRFX_RELAY_TTL_MS,
        .lease_ms = DIRFX_LEASE_MS,
        .renew_ms = 120,
        .margin_ms = DIRFX_MARGIN_MS,
        .wait_ms = DIRFX_WAIT_MS,
        .connect_timeout_ms = 300,
        .cmd_timeout_ms = 300,
        .backoff_min_ms = 20,
        .backoff_max_ms = 100,
    };
}

static void load_cb(struct dir_load *out, void *arg)
{
    struct dirfx_relay *r = arg;
    out->participants = atomic_load(&r->part);
    out->max_participants = atomic_load(&r->max);
    out->cpu_permille = atomic_load(&r->cpu);
    out->rooms = 1;
    out->accepting = atomic_load(&r->accept);
}

static void event_cb(const struct dir_event *ev, void *arg)
{
    struct dirfx_relay *r = arg;
    pthread_mutex_lock(&r->mu);
    if (ev->type == DIR_EV_UP)
        r->ups++;
    else if (ev->type == DIR_EV_DOWN)
        r->downs++;
    else if (ev->type == DIR_EV_LEASE_LOST && r->n_lost < DIRFX_MAX_LOST) {
        memcpy(r->lost[r->n_lost].room, ev->room, ev->room_len);
        r->lost[r->n_lost].room[ev->room_len] = '\0';
        r->lost[r->n_lost].gen = ev->gen;
        r->lost[r->n_lost].reason = ev->reason;
        r->n_lost++;
    }
    pthread_mutex_unlock(&r->mu);
}

struct dirfx_relay *dirfx_relay_new(const char *prefix, const char *id, uint16_t port,
                                    struct dir_timing t)
{
    struct dirfx_relay *r = calloc(1, sizeof(*r));
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

void dirfx_relay_del(struct dirfx_relay *r)
{
    if (r == NULL)
        return;
    dir_del(r->d);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

unsigned dirfx_relay_count(struct dirfx_relay *r, unsigned *field)
{
    pthread_mutex_lock(&r->mu);
    unsigned v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

bool dirfx_up(struct dirfx_relay *r)
{
    return dir_up(r->d);
}

void dirfx_box_init(struct dirfx_box *b)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->place = -1;
}

void dirfx_box_fini(struct dirfx_box *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

void dirfx_box_cb(const struct dir_result *res, void *arg)
{
    struct dirfx_box *b = arg;
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

bool dirfx_box_wait(struct dirfx_box *b, unsigned ms)
{
    uint64_t deadline = redis_test_now_ms() + ms;
    pthread_mutex_lock(&b->mu);
    while (!b->done && redis_test_now_ms() < deadline) {
        pthread_mutex_unlock(&b->mu);
        dirfx_nap(1);
        pthread_mutex_lock(&b->mu);
    }
    bool done = b->done;
    pthread_mutex_unlock(&b->mu);
    return done;
}

/* Submits and waits for the answer (asserts it comes within DIRFX_ANSWER_MS). */
void dirfx_call(struct dirfx_relay *r, enum dirfx_op op, const char *room, struct dirfx_box *b)
{
    dirfx_box_init(b);
    int rc = -1;
    size_t len = room != NULL ? strlen(room) : 0;
    switch (op) {
    case DIRFX_CLAIM:
        rc = dir_claim(r->d, room, len, dirfx_box_cb, b);
        break;
    case DIRFX_LOOKUP:
        rc = dir_lookup(r->d, room, len, dirfx_box_cb, b);
        break;
    case DIRFX_LIST:
        rc = dir_list(r->d, dirfx_box_cb, b);
        break;
    case DIRFX_PLACE:
        rc = dir_place(r->d, room, len, dirfx_box_cb, b);
        break;
    }
    assert_int_equal(rc, 0);
    assert_true(dirfx_box_wait(b, DIRFX_ANSWER_MS));
}

/* Claim that must win; returns the lease (caller releases or puts). */
struct dir_lease *dirfx_claim_home(struct dirfx_relay *r, const char *room)
{
    struct dirfx_box b;
    dirfx_call(r, DIRFX_CLAIM, room, &b);
    assert_int_equal(b.res.err, 0);
    assert_true(b.res.has_home);
    assert_true(b.res.home_is_self);
    assert_non_null(b.res.lease);
    assert_true(b.res.gen > 0);
    assert_int_equal(dir_lease_gen(b.res.lease), b.res.gen);
    dirfx_box_fini(&b);
    return b.res.lease;
}

struct dir_lease *dirfx_claim_when_free(struct dirfx_relay *r, const char *room,
                                        const char *other_id, uint64_t gen, uint64_t *at)
{
    struct dirfx_box c;
    uint64_t deadline = redis_test_now_ms() + DIRFX_LEASE_MS + DIRFX_ANSWER_MS;
    for (;;) {
        dirfx_call(r, DIRFX_CLAIM, room, &c);
        assert_int_equal(c.res.err, 0);
        if (c.res.home_is_self || redis_test_now_ms() > deadline)
            break;
        assert_string_equal(c.res.home_id, other_id);
        if (gen != 0)
            assert_int_equal(c.res.gen, gen);
        dirfx_box_fini(&c);
        dirfx_nap(5);
    }
    *at = dir_now();
    assert_true(c.res.home_is_self);
    struct dir_lease *l = c.res.lease;
    dirfx_box_fini(&c);
    return l;
}

bool dirfx_list_has(struct dirfx_relay *r, const char *id, size_t want_n)
{
    struct dirfx_box b;
    dirfx_call(r, DIRFX_LIST, NULL, &b);
    assert_int_equal(b.res.err, 0);
    bool found = false;
    for (size_t i = 0; i < b.n_relays; i++)
        found |= strcmp(b.relays[i].id, id) == 0;
    dirfx_box_fini(&b);
    return found && (want_n == 0 || b.n_relays == want_n);
}

bool dirfx_lookup_home_is(struct dirfx_relay *r, const char *room, const char *id)
{
    struct dirfx_box b;
    dirfx_call(r, DIRFX_LOOKUP, room, &b);
    assert_int_equal(b.res.err, 0);
    dirfx_box_fini(&b);
    if (id == NULL)
        return !b.res.has_home;
    return b.res.has_home && strcmp(b.res.home_id, id) == 0;
}

/* Raw access for checks and for tampering. */
redisReply *dirfx_raw(const struct redis_server *rs, const char *fmt, ...)
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
