#include "cluster/dir.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster/dirplace.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stat.h"

/* ---------------------------------------------------------------- scripts
 *
 * docs/CLUSTER.md 1.3. Sent in full with EVAL each time: no script cache
 * to lose when Redis restarts. Lua numbers are doubles; generations stay
 * below 2^53 (microseconds since 1970 are about 2^50.6) and are formatted
 * with %.0f so they never turn into exponent notation. */

/* KEYS: room, gen. ARGV: relay id, lease ms, relay hash prefix. */
static const char CLAIM_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local holder = string.match(cur, '^(.+):%d+$')\n"
    "  if holder ~= ARGV[1] then\n"
    "    local addr = false\n"
    "    if holder then addr = redis.call('HGET', ARGV[3] .. holder, 'addr') end\n"
    "    return {0, cur, addr, redis.call('PTTL', KEYS[1])}\n"
    "  end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local g = tonumber(redis.call('GET', KEYS[2]) or '0') + 1\n"
    "if g < floor then g = floor end\n"
    "local gs = string.format('%.0f', g)\n"
    "redis.call('SET', KEYS[2], gs, 'PX', 86400000)\n"
    "redis.call('SET', KEYS[1], ARGV[1] .. ':' .. gs, 'PX', ARGV[2])\n"
    "return {1, gs}\n";

/* KEYS: room, gen. ARGV: value, lease ms, generation. 1 renewed, 2 restored
 * (the key was gone), 0 someone else holds it. */
static const char RENEW_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "if cur then return 0 end\n"
    "local g = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "if g < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3], 'PX', 86400000) end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 2\n";

/* KEYS: room. ARGV: value. Compare-and-delete. */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS: relay hash, relay set. ARGV: id, ttl ms, field, value, ... */
static const char REGISTER_LUA[] = "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\n"
                                   "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                   "redis.call('SADD', KEYS[2], ARGV[1])\n"
                                   "return 1\n";

/* KEYS: relay hash, relay set. ARGV: id. */
static const char UNREGISTER_LUA[] = "redis.call('DEL', KEYS[1])\n"
                                     "redis.call('SREM', KEYS[2], ARGV[1])\n"
                                     "return 1\n";

/* KEYS: room. ARGV: relay hash prefix. {} or {value, addr|nil, pttl}. */
static const char LOOKUP_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return {} end\n"
    "local holder = string.match(cur, '^(.+):%d+$')\n"
    "local addr = false\n"
    "if holder then addr = redis.call('HGET', ARGV[1] .. holder, 'addr') end\n"
    "return {cur, addr, redis.call('PTTL', KEYS[1])}\n";

/* KEYS: relay set [, room]. ARGV: relay hash prefix.
 * {room value|nil, room pttl, then per live relay: id, addr, part, maxpart,
 * rooms, cpu, accept, pttl}. Ids whose hash expired leave the set. */
#define LIST_FIELDS 8
static const char LIST_LUA[] =
    "local out = {false, -1}\n"
    "if KEYS[2] then\n"
    "  local v = redis.call('GET', KEYS[2])\n"
    "  if v then out[1] = v out[2] = redis.call('PTTL', KEYS[2]) end\n"
    "end\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local k = ARGV[1] .. id\n"
    "  local f = redis.call('HMGET', k, 'addr', 'part', 'maxpart', 'rooms', 'cpu', 'accept')\n"
    "  if f[1] then\n"
    "    out[#out + 1] = id\n"
    "    for i = 1, 6 do out[#out + 1] = f[i] end\n"
    "    out[#out + 1] = redis.call('PTTL', k)\n"
    "  else\n"
    "    redis.call('SREM', KEYS[1], id)\n"
    "  end\n"
    "end\n"
    "return out\n";

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

static const char REASON_DOWN[] = "redis unavailable";
static const char REASON_CLOSED[] = "directory shutting down";
static const char REASON_MALFORMED[] = "malformed directory reply";
static const char REASON_SLOW[] = "redis answered after the lease";
static const char REASON_NOMEM[] = "out of memory";
static const char REASON_FULL[] = "no relay has capacity";

uint64_t dir_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ leases */

bool dir_lease_valid(const struct dir_lease *l, uint64_t now)
{
    /* Pairs with the release stores in lease_publish/lease_extend/lease_end. */
    return l != NULL && now < atomic_load_explicit(&l->until, memory_order_acquire);
}

uint64_t dir_lease_gen(const struct dir_lease *l)
{
    return l->gen;
}

uint64_t dir_lease_until(const struct dir_lease *l)
{
    return atomic_load_explicit(&l->until, memory_order_acquire);
}

const char *dir_lease_room(const struct dir_lease *l, size_t *len)
{
    if (len != NULL)
        *len = l->room_len;
    return l->room;
}

void dir_lease_get(struct dir_lease *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void dir_lease_put(struct dir_lease *l)
{
    if (l == NULL)
        return;
    /* acq_rel: the last putter sees every other holder's writes before free. */
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

static void lease_end(struct dir_lease *l)
{
    atomic_store_explicit(&l->until, 0, memory_order_release);
}

/* ------------------------------------------------------------------ events */

static void emit(struct dir *d, const struct dir_event *ev)
{
    if (d->event_cb != NULL)
        d->event_cb(ev, d->event_arg);
}

static void emit_state(struct dir *d, enum dir_event_type type)
{
    struct dir_event ev = {.type = type};
    emit(d, &ev);
}

static int held_find(const struct dir *d, const char *room, size_t len)
{
    for (size_t i = 0; i < d->n_held; i++)
        if (d->held[i]->room_len == len && memcmp(d->held[i]->room, room, len) == 0)
            return (int)i;
    return -1;
}

/* Removes held[i] (order is not kept) and drops the table's reference. */
static void held_remove(struct dir *d, size_t i)
{
    struct dir_lease *l = d->held[i];
    d->held[i] = d->held[--d->n_held];
    stat_dec(d->st, ST(leases_held));
    dir_lease_put(l);
}

static void lose(struct dir *d, size_t i, enum dir_lost_reason why)
{
    struct dir_lease *l = d->held[i];
    lease_end(l);
    stat_inc(d->st, ST(leases_lost));
    stat_inc(d->st, why == DIR_LOST_TAKEN ? ST(leases_taken) : ST(leases_expired));
    log_warn("event=lease_lost room=\"%.*s\" gen=%" PRIu64 " reason=%s", (int)l->room_len, l->room,
             l->gen, why == DIR_LOST_TAKEN ? "taken" : "expired");
    struct dir_event ev = {.type = DIR_EV_LEASE_LOST,
                           .room = l->room,
                           .room_len = l->room_len,
                           .gen = l->gen,
                           .reason = why};
    dir_lease_get(l); /* keep the room bytes alive for the event */
    held_remove(d, i);
    emit(d, &ev);
    dir_lease_put(l);
}

/* Leases past their local deadline are lost, whether or not Redis answers:
 * the split-brain guard (docs/CLUSTER.md 1.5). Released ones (until 0)
 * wait for their RELEASE request. */
static void expire_leases(struct dir *d, uint64_t now)
{
    for (size_t i = 0; i < d->n_held;) {
        uint64_t u = atomic_load_explicit(&d->held[i]->until, memory_order_acquire);
        if (u != 0 && now >= u) {
            lose(d, i, DIR_LOST_EXPIRED);
            continue;
        }
        i++;
    }
}

/* ------------------------------------------------------------------- redis */

static void disconnect(struct dir *d, const char *what)
{
    if (d->rc == NULL)
        return;
    log_warn("event=redis_down host=%s port=%u msg=\"%s: %s\"", d->host, d->port, what,
             d->rc->err ? d->rc->errstr : "error reply");
    redisFree(d->rc);
    d->rc = NULL;
    stat_inc(d->st, ST(redis_errors));
    /* A connection that was up retries soon; one that fails right after
     * connecting (e.g. registration refused) backs off further. */
    d->backoff_ms = dirtime_backoff_next(d->is_up ? 0 : d->backoff_ms, &d->t);
    d->reconnect_at = dir_now() + (uint64_t)d->backoff_ms * DIRTIME_MS;
    if (d->is_up) {
        d->is_up = false;
        stat_dec(d->st, ST(up));
        emit_state(d, DIR_EV_DOWN);
    }
}

/* One command. Any failure (I/O, timeout, error reply) closes the
 * connection, so the caller only checks for NULL: transient errors
 * (LOADING after a restart, READONLY after a failover) are retried by
 * reconnecting, and requests keep waiting up to their bound. */
static redisReply *command(struct dir *d, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(d->rc, argc, argv, lens);
    if (r == NULL) {
        disconnect(d, argv[0]);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("event=redis_error cmd=%s msg=\"%.*s\"", argv[0], (int)r->len, r->str);
        freeReplyObject(r);
        disconnect(d, argv[0]);
        return NULL;
    }
    return r;
}

static bool reply_int(const redisReply *r, long long *out)
{
    if (r == NULL)
        return false;
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return true;
    }
    if (r->type == REDIS_REPLY_STRING) {
        uint64_t v;
        if (dirkey_parse_u64(r->str, r->len, &v) != 0 || v > INT64_MAX)
            return false;
        *out = (long long)v;
        return true;
    }
    return false;
}

static bool reply_u64(const redisReply *r, uint64_t *out)
{
    return r != NULL && r->type == REDIS_REPLY_STRING && dirkey_parse_u64(r->str, r->len, out) == 0;
}

/* Copies a string reply (nil: "") into out[cap]. False when too long. */
static bool reply_str(const redisReply *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (r == NULL || r->type == REDIS_REPLY_NIL)
        return true;
    if (r->type != REDIS_REPLY_STRING || r->len >= cap)
        return false;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return true;
}

static bool do_register(struct dir *d)
{
    struct dir_load l = {0};
    if (d->load_cb != NULL)
        d->load_cb(&l, d->load_arg);
    char ttl[16], part[16], maxpart[16], rooms[16], cpu[16];
    snprintf(ttl, sizeof(ttl), "%u", d->t.relay_ttl_ms);
    snprintf(part, sizeof(part), "%u", l.participants);
    snprintf(maxpart, sizeof(maxpart), "%u", l.max_participants);
    snprintf(rooms, sizeof(rooms), "%u", l.rooms);
    snprintf(cpu, sizeof(cpu), "%u", l.cpu_permille);
    const char *argv[] = {"EVAL",
                          REGISTER_LUA,
                          "2",
                          d->relay_key,
                          d->relays_key,
                          d->id,
                          ttl,
                          "addr",
                          d->addr,
                          "part",
                          part,
                          "maxpart",
                          maxpart,
                          "rooms",
                          rooms,
                          "cpu",
                          cpu,
                          "accept",
                          l.accepting ? "1" : "0",
                          "inst",
                          d->inst};
    size_t lens[sizeof(argv) / sizeof(argv[0])];
    for (size_t i = 0; i < sizeof(argv) / sizeof(argv[0]); i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = command(d, (int)(sizeof(argv) / sizeof(argv[0])), argv, lens);
    if (r == NULL)
        return false;
    freeReplyObject(r);
    stat_inc(d->st, ST(refreshes));
    d->refresh_at = dir_now() + (uint64_t)d->t.refresh_ms * DIRTIME_MS;
    return true;
}

static void try_connect(struct dir *d, uint64_t now)
{
    struct timeval ct = {.tv_sec = d->t.connect_timeout_ms / 1000,
                         .tv_usec = (d->t.connect_timeout_ms % 1000) * 1000};
    struct timeval cmdt = {.tv_sec = d->t.cmd_timeout_ms / 1000,
                           .tv_usec = (d->t.cmd_timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(d->host, d->port, ct);
    if (c == NULL || c->err || redisSetTimeout(c, cmdt) != REDIS_OK) {
        log_debug("event=redis_connect_failed host=%s port=%u msg=\"%s\"", d->host, d->port,
                  c != NULL ? c->errstr : "out of memory");
        redisFree(c);
        goto fail;
    }
    d->rc = c;
    redisEnableKeepAlive(c);
    if (d->password != NULL) {
        const char *argv[] = {"AUTH", d->password};
        size_t lens[] = {4, strlen(d->password)};
        redisReply *r = redisCommandArgv(c, 2, argv, lens);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (!ok)
            goto fail_close;
    }
    if (d->db > 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", d->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        redisReply *r = redisCommandArgv(c, 2, argv, lens);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (!ok)
            goto fail_close;
    }
    /* Up only once registered: a relay that cannot write is not up. */
    if (!do_register(d)) {
        stat_inc(d->st, ST(connect_failures));
        return; /* disconnect() already scheduled the retry */
    }
    if (d->ever_up)
        stat_inc(d->st, ST(reconnects));
    d->ever_up = true;
    d->is_up = true;
    stat_inc(d->st, ST(up));
    d->backoff_ms = 0;
    /* Renew every lease still valid now: restores keys a restarted Redis
     * forgot before anyone else can claim them. */
    for (size_t i = 0; i < d->n_held; i++)
        d->held[i]->renew_at = now;
    log_info("event=redis_up host=%s port=%u relay=%s", d->host, d->port, d->id);
    emit_state(d, DIR_EV_UP);
    return;

fail_close:
    log_warn("event=redis_auth_failed host=%s port=%u", d->host, d->port);
    redisFree(c);
    d->rc = NULL;
fail:
    stat_inc(d->st, ST(connect_failures));
    d->backoff_ms = dirtime_backoff_next(d->backoff_ms, &d->t);
    d->reconnect_at = now + (uint64_t)d->backoff_ms * DIRTIME_MS;
}

/* Answer to one pipelined renew of l, sent at `sent`. */
static void renew_answer(struct dir *d, struct dir_lease *l, long long v, uint64_t sent)
{
    int i = held_find(d, l->room, l->room_len);
    if (i < 0 || d->held[i] != l)
        return; /* released meanwhile */
    uint64_t old = atomic_load_explicit(&l->until, memory_order_acquire);
    if (old == 0)
        return; /* released; its RELEASE request removes it */
    if (v == 0) {
        lose(d, (size_t)i, DIR_LOST_TAKEN);
        return;
    }
    uint64_t until = dirtime_after_success(old, sent, dir_now(), &d->t);
    if (until == 0) {
        lose(d, (size_t)i, DIR_LOST_EXPIRED);
        return;
    }
    /* Release order pairs with dir_lease_valid's acquire; a failed CAS means
     * dir_release ended the lease meanwhile, and ended stays ended. */
    atomic_compare_exchange_strong_explicit(&l->until, &old, until, memory_order_release,
                                            memory_order_relaxed);
    stat_inc(d->st, ST(renewals));
    if (v == 2)
        stat_inc(d->st, ST(restores));
}

#define RENEW_BATCH 64

/* Pipelines one renew per lease due, RENEW_BATCH at a time. An I/O failure
 * disconnects; unanswered leases keep their deadlines and are due again
 * after reconnecting. */
static void renew_due(struct dir *d, uint64_t now)
{
    struct dir_lease *batch[RENEW_BATCH];
    char lease_ms[16];
    snprintf(lease_ms, sizeof(lease_ms), "%u", d->t.lease_ms);
    while (d->rc != NULL) {
        size_t n = 0;
        bool failed = false;
        uint64_t sent = dir_now(); /* before sending: the guard's reference time */
        for (size_t i = 0; i < d->n_held && n < RENEW_BATCH; i++) {
            struct dir_lease *l = d->held[i];
            if (l->renew_at > now || atomic_load_explicit(&l->until, memory_order_acquire) == 0)
                continue;
            char rk[DIR_KEY_MAX + 1], gk[DIR_KEY_MAX + 1], gen[24];
            int rl = dirkey_room(rk, sizeof(rk), d->prefix, l->room, l->room_len);
            int gl = dirkey_gen(gk, sizeof(gk), d->prefix, l->room, l->room_len);
            int nl = snprintf(gen, sizeof(gen), "%" PRIu64, l->gen);
            const char *argv[] = {"EVAL", RENEW_LUA, "2", rk, gk, l->value, lease_ms, gen};
            size_t lens[] = {4,
                             sizeof(RENEW_LUA) - 1,
                             1,
                             (size_t)rl,
                             (size_t)gl,
                             l->value_len,
                             strlen(lease_ms),
                             (size_t)nl};
            if (redisAppendCommandArgv(d->rc, 8, argv, lens) != REDIS_OK) {
                failed = true;
                break;
            }
            /* Not due again this turn, whatever the answer. */
            l->renew_at = dirtime_renew_at(sent, &d->t);
            dir_lease_get(l); /* the batch's reference: lose() drops the table's */
            batch[n++] = l;
        }
        if (n == 0 && !failed)
            return;
        for (size_t k = 0; k < n; k++) {
            struct dir_lease *l = batch[k];
            void *rp = NULL;
            if (failed || redisGetReply(d->rc, &rp) != REDIS_OK || rp == NULL) {
                failed = true;
                l->renew_at = now; /* unanswered: due again after reconnecting */
                dir_lease_put(l);
                continue;
            }
            redisReply *r = rp;
            long long v = -1;
            if (r->type == REDIS_REPLY_ERROR) {
                log_warn("event=redis_error cmd=renew msg=\"%.*s\"", (int)r->len, r->str);
                failed = true;
            } else if (!reply_int(r, &v) || v < 0 || v > 2) {
                failed = true;
            }
            freeReplyObject(r);
            if (failed)
                l->renew_at = now;
            else
                renew_answer(d, l, v, sent);
            dir_lease_put(l);
        }
        if (failed) {
            disconnect(d, "renew");
            return;
        }
    }
}

/* ---------------------------------------------------------------- requests */

static void complete(struct dir_req *q, struct dir_result *res)
{
    res->op = (enum dir_op)q->op;
    res->room = q->room;
    res->room_len = q->room_len;
    if (res->reason == NULL)
        res->reason = "";
    q->cb(res, q->arg);
}

static void fail_req(struct dir_req *q, int err, const char *reason)
{
    if (q->op == REQ_RELEASE) {
        dir_lease_put(q->lease);
        return;
    }
    struct dir_result res = {.err = err, .reason = reason, .lease_ttl_ms = -1};
    complete(q, &res);
}

/* Fills the home fields of res from a room value (NULL: no home). */
static int set_home(struct dir *d, struct dir_result *res, const redisReply *val,
                    const redisReply *addr, const redisReply *pttl)
{
    res->lease_ttl_ms = -1;
    if (val == NULL || val->type == REDIS_REPLY_NIL)
        return 0;
    if (val->type != REDIS_REPLY_STRING ||
        dirkey_value_parse(val->str, val->len, res->home_id, &res->gen) != 0 ||
        !reply_str(addr, res->home_addr, sizeof(res->home_addr)))
        return ROOST_EIO;
    long long ttl;
    if (reply_int(pttl, &ttl))
        res->lease_ttl_ms = ttl;
    res->has_home = true;
    res->home_is_self = strcmp(res->home_id, d->id) == 0;
    return 0;
}

static struct dir_lease *lease_new(const struct dir_req *q, const char *id, uint64_t gen)
{
    struct dir_lease *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    memcpy(l->room, q->room, q->room_len);
    l->room_len = q->room_len;
    l->gen = gen;
    int n = dirkey_value_format(l->value, sizeof(l->value), id, gen);
    if (n < 0) {
        free(l);
        return NULL;
    }
    l->value_len = (size_t)n;
    atomic_init(&l->refs, 1);
    atomic_init(&l->until, 0);
    return l;
}

/* Claim of a room this relay already holds: answered without Redis. */
static bool claim_held(struct dir *d, struct dir_req *q, uint64_t now)
{
    int i = held_find(d, q->room, q->room_len);
    if (i < 0)
        return false;
    struct dir_lease *l = d->held[i];
    if (!dir_lease_valid(l, now)) {
        /* Released, RELEASE not yet served: forget it here; its
         * compare-and-delete will not match a newer value. */
        if (atomic_load_explicit(&l->until, memory_order_acquire) == 0)
            held_remove(d, (size_t)i);
        return false;
    }
    struct dir_result res = {.has_home = true, .home_is_self = true, .gen = l->gen};
    snprintf(res.home_id, sizeof(res.home_id), "%s", d->id);
    snprintf(res.home_addr, sizeof(res.home_addr), "%s", d->addr);
    res.lease_ttl_ms = (int64_t)((dir_lease_until(l) - now) / DIRTIME_MS);
    dir_lease_get(l);
    res.lease = l;
    complete(q, &res);
    return true;
}

static int room_keys(struct dir *d, const struct dir_req *q, char *rk, size_t *rl, char *gk,
                     size_t *gl)
{
    int a = dirkey_room(rk, DIR_KEY_MAX + 1, d->prefix, q->room, q->room_len);
    int b = dirkey_gen(gk, DIR_KEY_MAX + 1, d->prefix, q->room, q->room_len);
    if (a < 0 || b < 0)
        return ROOST_EINVAL;
    *rl = (size_t)a;
    *gl = (size_t)b;
    return 0;
}

static bool held_add(struct dir *d, struct dir_lease *l)
{
    if (d->n_held == d->cap_held) {
        size_t cap = d->cap_held ? d->cap_held * 2 : 16;
        struct dir_lease **h = realloc(d->held, cap * sizeof(*h));
        if (h == NULL)
            return false;
        d->held = h;
        d->cap_held = cap;
    }
    d->held[d->n_held++] = l;
    stat_inc(d->st, ST(leases_held));
    return true;
}

/* Each do_* returns false when the connection failed: the request stays
 * pending (retried after reconnecting, until its deadline). */
static bool do_claim(struct dir *d, struct dir_req *q)
{
    uint64_t now = dir_now();
    if (claim_held(d, q, now))
        return true;
    char rk[DIR_KEY_MAX + 1], gk[DIR_KEY_MAX + 1], lease_ms[16];
    size_t rl, gl;
    if (room_keys(d, q, rk, &rl, gk, &gl) != 0) {
        fail_req(q, ROOST_EINVAL, "bad room");
        return true;
    }
    snprintf(lease_ms, sizeof(lease_ms), "%u", d->t.lease_ms);
    const char *argv[] = {"EVAL", CLAIM_LUA, "2", rk, gk, d->id, lease_ms, d->relay_prefix};
    size_t lens[] = {4,
                     sizeof(CLAIM_LUA) - 1,
                     1,
                     rl,
                     gl,
                     strlen(d->id),
                     strlen(lease_ms),
                     strlen(d->relay_prefix)};
    uint64_t sent = dir_now(); /* before sending: the guard's reference time */
    redisReply *r = command(d, 8, argv, lens);
    if (r == NULL)
        return false;
    stat_inc(d->st, ST(claims));
    struct dir_result res = {.lease_ttl_ms = -1};
    long long won = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !reply_int(r->element[0], &won))
        goto malformed;
    if (won == 1) {
        if (!reply_u64(r->element[1], &res.gen) || res.gen == 0)
            goto malformed;
        freeReplyObject(r);
        r = NULL;
        uint64_t until = dirtime_after_success(UINT64_MAX, sent, dir_now(), &d->t);
        if (until == 0) {
            /* Our key is in Redis but the answer came too late to trust
             * the deadline; it expires, or a new claim takes it over. */
            fail_req(q, ROOST_ETIMEDOUT, REASON_SLOW);
            return true;
        }
        struct dir_lease *l = lease_new(q, d->id, res.gen);
        if (l == NULL || !held_add(d, l)) {
            free(l);
            fail_req(q, ROOST_ENOMEM, REASON_NOMEM);
            return true;
        }
        l->renew_at = dirtime_renew_at(sent, &d->t);
        atomic_store_explicit(&l->until, until, memory_order_release);
        stat_inc(d->st, ST(claims_won));
        log_debug("event=lease_claimed room=\"%.*s\" gen=%" PRIu64, (int)q->room_len, q->room,
                  res.gen);
        res.has_home = res.home_is_self = true;
        snprintf(res.home_id, sizeof(res.home_id), "%s", d->id);
        snprintf(res.home_addr, sizeof(res.home_addr), "%s", d->addr);
        res.lease_ttl_ms = (int64_t)((until - sent) / DIRTIME_MS);
        dir_lease_get(l); /* the caller's; the table keeps the first */
        res.lease = l;
        complete(q, &res);
        return true;
    }
    if (won != 0 || r->elements < 4 ||
        set_home(d, &res, r->element[1], r->element[2], r->element[3]) != 0)
        goto malformed;
    freeReplyObject(r);
    stat_inc(d->st, ST(claims_elsewhere));
    complete(q, &res);
    return true;

malformed:
    freeReplyObject(r);
    stat_inc(d->st, ST(redis_errors));
    fail_req(q, ROOST_EIO, REASON_MALFORMED);
    return true;
}

static bool do_lookup(struct dir *d, struct dir_req *q)
{
    char rk[DIR_KEY_MAX + 1], gk[DIR_KEY_MAX + 1];
    size_t rl, gl;
    if (room_keys(d, q, rk, &rl, gk, &gl) != 0) {
        fail_req(q, ROOST_EINVAL, "bad room");
        return true;
    }
    const char *argv[] = {"EVAL", LOOKUP_LUA, "1", rk, d->relay_prefix};
    size_t lens[] = {4, sizeof(LOOKUP_LUA) - 1, 1, rl, strlen(d->relay_prefix)};
    redisReply *r = command(d, 5, argv, lens);
    if (r == NULL)
        return false;
    stat_inc(d->st, ST(lookups));
    struct dir_result res = {.lease_ttl_ms = -1};
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 3) ||
        (r->elements == 3 && set_home(d, &res, r->element[0], r->element[1], r->element[2]) != 0)) {
        freeReplyObject(r);
        stat_inc(d->st, ST(redis_errors));
        fail_req(q, ROOST_EIO, REASON_MALFORMED);
        return true;
    }
    freeReplyObject(r);
    complete(q, &res);
    return true;
}

static bool parse_u32(const redisReply *r, uint32_t *out)
{
    uint64_t v = 0;
    if (r != NULL && r->type != REDIS_REPLY_NIL && !reply_u64(r, &v))
        return false;
    *out = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return true;
}

/* LIST and PLACE: one script reads the relays (and the room's value). */
static bool do_list(struct dir *d, struct dir_req *q)
{
    char rk[DIR_KEY_MAX + 1], gk[DIR_KEY_MAX + 1];
    size_t rl = 0, gl;
    bool place = q->op == REQ_PLACE;
    if (place && room_keys(d, q, rk, &rl, gk, &gl) != 0) {
        fail_req(q, ROOST_EINVAL, "bad room");
        return true;
    }
    const char *argv[] = {
        "EVAL",         LIST_LUA, place ? "2" : "1", d->relays_key, place ? rk : d->relay_prefix,
        d->relay_prefix};
    size_t lens[] = {4,
                     sizeof(LIST_LUA) - 1,
                     1,
                     strlen(d->relays_key),
                     place ? rl : strlen(d->relay_prefix),
                     strlen(d->relay_prefix)};
    redisReply *r = command(d, place ? 6 : 5, argv, lens);
    if (r == NULL)
        return false;
    stat_inc(d->st, place ? ST(places) : ST(lists));
    struct dir_result res = {.lease_ttl_ms = -1};
    struct dir_relay *rel = NULL;
    size_t n = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || (r->elements - 2) % LIST_FIELDS != 0)
        goto malformed;
    if (place && set_home(d, &res, r->element[0], NULL, r->element[1]) != 0)
        goto malformed;
    n = (r->elements - 2) / LIST_FIELDS;
    if (n > 0 && (rel = calloc(n, sizeof(*rel))) == NULL) {
        freeReplyObject(r);
        fail_req(q, ROOST_ENOMEM, REASON_NOMEM);
        return true;
    }
    for (size_t k = 0; k < n; k++) {
        redisReply **e = r->element + 2 + k * LIST_FIELDS;
        uint32_t accept = 0;
        long long ttl = -1;
        if (!reply_str(e[0], rel[k].id, sizeof(rel[k].id)) ||
            !reply_str(e[1], rel[k].addr, sizeof(rel[k].addr)) ||
            !parse_u32(e[2], &rel[k].load.participants) ||
            !parse_u32(e[3], &rel[k].load.max_participants) ||
            !parse_u32(e[4], &rel[k].load.rooms) || !parse_u32(e[5], &rel[k].load.cpu_permille) ||
            !parse_u32(e[6], &accept) || !reply_int(e[7], &ttl))
            goto malformed;
        rel[k].load.accepting = accept != 0;
        rel[k].ttl_ms = ttl;
    }
    freeReplyObject(r);
    res.relays = rel;
    res.n_relays = n;
    if (place) {
        /* The home's address comes from its registration in the list. */
        int i = dirplace_choose(rel, n, res.has_home ? res.home_id : NULL, &res.place_is_home);
        for (size_t k = 0; res.has_home && k < n; k++)
            if (strcmp(rel[k].id, res.home_id) == 0)
                snprintf(res.home_addr, sizeof(res.home_addr), "%s", rel[k].addr);
        if (i < 0) {
            res.err = ROOST_EFULL;
            res.reason = REASON_FULL;
        } else {
            res.place = &rel[i];
        }
    }
    complete(q, &res);
    free(rel);
    return true;

malformed:
    freeReplyObject(r);
    free(rel);
    stat_inc(d->st, ST(redis_errors));
    fail_req(q, ROOST_EIO, REASON_MALFORMED);
    return true;
}

static bool do_release(struct dir *d, struct dir_req *q)
{
    struct dir_lease *l = q->lease;
    int i = held_find(d, l->room, l->room_len);
    if (i >= 0 && d->held[i] == l)
        held_remove(d, (size_t)i);
    char rk[DIR_KEY_MAX + 1];
    int rl = dirkey_room(rk, sizeof(rk), d->prefix, l->room, l->room_len);
    const char *argv[] = {"EVAL", RELEASE_LUA, "1", rk, l->value};
    size_t lens[] = {4, sizeof(RELEASE_LUA) - 1, 1, (size_t)rl, l->value_len};
    redisReply *r = command(d, 5, argv, lens);
    if (r == NULL)
        return false; /* retried; the lease is already out of the table */
    freeReplyObject(r);
    stat_inc(d->st, ST(releases));
    dir_lease_put(l);
    return true;
}

static bool serve(struct dir *d, struct dir_req *q)
{
    switch (q->op) {
    case REQ_CLAIM:
        return do_claim(d, q);
    case REQ_LOOKUP:
        return do_lookup(d, q);
    case REQ_LIST:
    case REQ_PLACE:
        return do_list(d, q);
    case REQ_RELEASE:
        return do_release(d, q);
    }
    return true;
}

/* ------------------------------------------------------------------ thread */

static void turn(struct dir *d)
{
    uint64_t now = dir_now();
    expire_leases(d, now);
    if (d->rc == NULL && now >= d->reconnect_at)
        try_connect(d, now);
    if (d->rc != NULL && now >= d->refresh_at)
        do_register(d);
    if (d->rc != NULL)
        renew_due(d, now);
    /* Requests in order; a connection failure leaves the rest pending. */
    while (d->rc != NULL && d->p_head != NULL) {
        struct dir_req *q = d->p_head;
        if (!serve(d, q))
            break;
        d->p_head = q->next;
        if (d->p_head == NULL)
            d->p_tail = NULL;
        free(q);
    }
    now = dir_now();
    expire_leases(d, now);
    if (d->rc != NULL)
        return;
    /* Down: claims of rooms held answer locally; the rest wait until their
     * bound. */
    struct dir_req **pp = &d->p_head;
    d->p_tail = NULL;
    while (*pp != NULL) {
        struct dir_req *q = *pp;
        bool done = false;
        if (q->op == REQ_CLAIM && claim_held(d, q, now)) {
            done = true;
        } else if (now >= q->deadline) {
            if (q->op != REQ_RELEASE) {
                stat_inc(d->st, ST(req_timeouts));
                log_info("event=dir_request_failed op=%d msg=\"%s\"", (int)q->op, REASON_DOWN);
            }
            fail_req(q, ROOST_ETIMEDOUT, REASON_DOWN);
            done = true;
        }
        if (done) {
            *pp = q->next;
            free(q);
        } else {
            d->p_tail = q;
            pp = &q->next;
        }
    }
}

/* When the thread must run next, on its own (requests wake it earlier). */
static uint64_t next_due(const struct dir *d)
{
    uint64_t next = UINT64_MAX;
#define MIN_(x)                                                                                    \
    do {                                                                                           \
        uint64_t x_ = (x);                                                                         \
        if (x_ < next)                                                                             \
            next = x_;                                                                             \
    } while (0)
    for (size_t i = 0; i < d->n_held; i++) {
        uint64_t u = atomic_load_explicit(&d->held[i]->until, memory_order_acquire);
        if (u != 0)
            MIN_(u);
        if (d->rc != NULL && u != 0)
            MIN_(d->held[i]->renew_at);
    }
    if (d->rc != NULL) {
        MIN_(d->refresh_at);
        if (d->p_head != NULL)
            MIN_(0);
    } else {
        MIN_(d->reconnect_at);
        for (const struct dir_req *q = d->p_head; q != NULL; q = q->next)
            MIN_(q->deadline);
    }
#undef MIN_
    return next;
}

static void shutdown_thread(struct dir *d)
{
    /* Best effort: let others claim our rooms now rather than after the
     * lease, and disappear from placement. */
    while (d->n_held > 0) {
        struct dir_lease *l = d->held[0];
        lease_end(l);
        if (d->rc != NULL) {
            char rk[DIR_KEY_MAX + 1];
            int rl = dirkey_room(rk, sizeof(rk), d->prefix, l->room, l->room_len);
            const char *argv[] = {"EVAL", RELEASE_LUA, "1", rk, l->value};
            size_t lens[] = {4, sizeof(RELEASE_LUA) - 1, 1, (size_t)rl, l->value_len};
            redisReply *r = command(d, 5, argv, lens);
            freeReplyObject(r);
        }
        held_remove(d, 0);
    }
    if (d->rc != NULL) {
        const char *argv[] = {"EVAL", UNREGISTER_LUA, "2", d->relay_key, d->relays_key, d->id};
        size_t lens[] = {4,
                         sizeof(UNREGISTER_LUA) - 1,
                         1,
                         strlen(d->relay_key),
                         strlen(d->relays_key),
                         strlen(d->id)};
        redisReply *r = command(d, 6, argv, lens);
        freeReplyObject(r);
    }
    for (struct dir_req *q = d->p_head, *nx; q != NULL; q = nx) {
        nx = q->next;
        fail_req(q, ROOST_ECLOSED, REASON_CLOSED);
        free(q);
    }
    d->p_head = d->p_tail = NULL;
    pthread_mutex_lock(&d->mu);
    struct dir_req *rest = d->q_head;
    d->q_head = d->q_tail = NULL;
    d->q_len = 0;
    pthread_mutex_unlock(&d->mu);
    for (struct dir_req *q = rest, *nx; q != NULL; q = nx) {
        nx = q->next;
        fail_req(q, ROOST_ECLOSED, REASON_CLOSED);
        free(q);
    }
    if (d->rc != NULL) {
        redisFree(d->rc);
        d->rc = NULL;
    }
    if (d->is_up) {
        d->is_up = false;
        stat_dec(d->st, ST(up));
    }
}

static void *dir_main(void *arg)
{
    struct dir *d = arg;
    log_set_thread_tag("cluster");
    for (;;) {
        /* Computed outside the lock (thread-only state): submitters never
         * wait for a scan of the held leases. */
        uint64_t next = next_due(d);
        pthread_mutex_lock(&d->mu);
        for (;;) {
            if (d->stop)
                break;
            if (d->stall) {
                pthread_cond_wait(&d->cv, &d->mu);
                continue;
            }
            if (d->q_head != NULL)
                break;
            if (next <= dir_now())
                break;
            if (next == UINT64_MAX) {
                pthread_cond_wait(&d->cv, &d->mu);
            } else {
                struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                      .tv_nsec = (long)(next % 1000000000ull)};
                pthread_cond_timedwait(&d->cv, &d->mu, &ts);
            }
        }
        if (d->stop) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        /* Take the whole FIFO: the lock is never held across Redis. */
        if (d->q_head != NULL) {
            if (d->p_tail != NULL)
                d->p_tail->next = d->q_head;
            else
                d->p_head = d->q_head;
            d->p_tail = d->q_tail;
            d->q_head = d->q_tail = NULL;
            d->q_len = 0;
        }
        pthread_mutex_unlock(&d->mu);
        turn(d);
    }
    shutdown_thread(d);
    return NULL;
}

/* -------------------------------------------------------------- public API */

static int enqueue(struct dir *d, struct dir_req *q, bool bypass_limit)
{
    q->deadline = dir_now() + (uint64_t)d->t.wait_ms * DIRTIME_MS;
    q->next = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->stop) {
        pthread_mutex_unlock(&d->mu);
        return ROOST_ECLOSED;
    }
    if (!bypass_limit && d->q_len >= d->max_queue) {
        pthread_mutex_unlock(&d->mu);
        return ROOST_EFULL;
    }
    if (d->q_tail != NULL)
        d->q_tail->next = q;
    else
        d->q_head = q;
    d->q_tail = q;
    d->q_len++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int submit(struct dir *d, enum req_op op, const char *room, size_t len, dir_done_cb cb,
                  void *arg)
{
    if (d == NULL || cb == NULL || (room != NULL && !dirkey_valid_room(room, len)))
        return ROOST_EINVAL;
    struct dir_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ROOST_ENOMEM;
    q->op = op;
    q->cb = cb;
    q->arg = arg;
    if (room != NULL) {
        memcpy(q->room, room, len);
        q->room_len = len;
    }
    int rc = enqueue(d, q, false);
    if (rc != 0)
        free(q);
    return rc;
}

int dir_claim(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg)
{
    if (room == NULL)
        return ROOST_EINVAL;
    return submit(d, REQ_CLAIM, room, len, cb, arg);
}

int dir_lookup(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg)
{
    if (room == NULL)
        return ROOST_EINVAL;
    return submit(d, REQ_LOOKUP, room, len, cb, arg);
}

int dir_list(struct dir *d, dir_done_cb cb, void *arg)
{
    return submit(d, REQ_LIST, NULL, 0, cb, arg);
}

int dir_place(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg)
{
    if (room == NULL)
        return ROOST_EINVAL;
    return submit(d, REQ_PLACE, room, len, cb, arg);
}

void dir_release(struct dir *d, struct dir_lease *l)
{
    if (l == NULL)
        return;
    lease_end(l); /* every holder stops believing now, not when the thread gets to it */
    struct dir_req *q = d != NULL ? calloc(1, sizeof(*q)) : NULL;
    if (q == NULL) {
        dir_lease_put(l); /* the key expires by its TTL */
        return;
    }
    q->op = REQ_RELEASE;
    q->lease = l;
    if (enqueue(d, q, true) != 0) {
        dir_lease_put(l);
        free(q);
    }
}

bool dir_up(const struct dir *d)
{
    return atomic_load_explicit(&d->st[ST(up)], memory_order_relaxed) != 0;
}

void dir_stats(const struct dir *d, struct dir_stats *out)
{
    stat_read((uint64_t *)out, d->st, STAT_N(struct dir_stats));
}

const char *dir_relay_id(const struct dir *d)
{
    return d->id;
}

void dir_test_stall(struct dir *d, bool on)
{
    pthread_mutex_lock(&d->mu);
    d->stall = on;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

int dir_new(struct dir **out, const struct dir_config *cfg)
{
    *out = NULL;
    if (cfg == NULL || cfg->redis_host == NULL || cfg->redis_port == 0 ||
        strlen(cfg->redis_host) >= sizeof(((struct dir *)0)->host) ||
        !dirkey_valid_id(cfg->relay_id) || !dirkey_valid_addr(cfg->trunk_addr) ||
        (cfg->prefix != NULL && !dirkey_valid_prefix(cfg->prefix)))
        return ROOST_EINVAL;
    struct dir_timing t = cfg->timing;
    if (dirtime_complete(&t) != 0)
        return ROOST_EINVAL;
    uint8_t nonce[8];
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        return ROOST_ESYS;

    struct dir *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_ENOMEM;
    snprintf(d->host, sizeof(d->host), "%s", cfg->redis_host);
    d->port = cfg->redis_port;
    if (cfg->password != NULL && (d->password = strdup(cfg->password)) == NULL)
        goto fail_alloc;
    d->db = cfg->db;
    snprintf(d->prefix, sizeof(d->prefix), "%s", cfg->prefix != NULL ? cfg->prefix : "roost");
    snprintf(d->id, sizeof(d->id), "%s", cfg->relay_id);
    snprintf(d->addr, sizeof(d->addr), "%s", cfg->trunk_addr);
    for (size_t i = 0; i < sizeof(nonce); i++)
        snprintf(d->inst + 2 * i, 3, "%02x", nonce[i]);
    if (dirkey_relay(d->relay_key, sizeof(d->relay_key), d->prefix, d->id) < 0 ||
        dirkey_relays(d->relays_key, sizeof(d->relays_key), d->prefix) < 0 ||
        dirkey_relay_prefix(d->relay_prefix, sizeof(d->relay_prefix), d->prefix) < 0) {
        rc = ROOST_EINVAL;
        goto fail_alloc;
    }
    d->t = t;
    d->load_cb = cfg->load_cb;
    d->load_arg = cfg->load_arg;
    d->event_cb = cfg->event_cb;
    d->event_arg = cfg->event_arg;
    d->max_queue = cfg->max_queue ? cfg->max_queue : 4096;
    for (size_t i = 0; i < STAT_N(struct dir_stats); i++)
        atomic_init(&d->st[i], 0);

    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        rc = ROOST_ESYS;
        goto fail_alloc;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        rc = ROOST_ESYS;
        goto fail_alloc;
    }
    pthread_mutex_init(&d->mu, NULL);
    if (pthread_create(&d->thread, NULL, dir_main, d) != 0) {
        rc = ROOST_ESYS;
        goto fail_thread;
    }
    d->thread_started = true;
    *out = d;
    return 0;

fail_thread:
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
fail_alloc:
    free(d->password);
    free(d);
    return rc;
}

void dir_del(struct dir *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (d->thread_started)
        pthread_join(d->thread, NULL);
    free(d->held);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->password);
    free(d);
}
