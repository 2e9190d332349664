/* The Redis side on the cluster thread: connecting and registering, the
 * command and reply helpers every request uses, and the pipelined lease
 * renewals. Calls only dirlease. */
#include "cluster/dir_int.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/dir_lua.h"
#include "core/log.h"

static void emit_state(struct dir *d, enum dir_event_type type)
{
    struct dir_event ev = {.type = type};
    dirlease_emit(d, &ev);
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
redisReply *dirredis_command(struct dir *d, int argc, const char **argv, const size_t *lens)
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

bool dirredis_reply_int(const redisReply *r, long long *out)
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

bool dirredis_reply_u64(const redisReply *r, uint64_t *out)
{
    return r != NULL && r->type == REDIS_REPLY_STRING && dirkey_parse_u64(r->str, r->len, out) == 0;
}

/* Copies a string reply (nil: "") into out[cap]. False when too long. */
bool dirredis_reply_str(const redisReply *r, char *out, size_t cap)
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

bool dirredis_register(struct dir *d)
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
    redisReply *r = dirredis_command(d, (int)(sizeof(argv) / sizeof(argv[0])), argv, lens);
    if (r == NULL)
        return false;
    freeReplyObject(r);
    stat_inc(d->st, ST(refreshes));
    d->refresh_at = dir_now() + (uint64_t)d->t.refresh_ms * DIRTIME_MS;
    return true;
}

void dirredis_connect(struct dir *d, uint64_t now)
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
    if (!dirredis_register(d)) {
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
    int i = dirlease_held_find(d, l->room, l->room_len);
    if (i < 0 || d->held[i] != l)
        return; /* released meanwhile */
    uint64_t old = atomic_load_explicit(&l->until, memory_order_acquire);
    if (old == 0)
        return; /* released; its RELEASE request removes it */
    if (v == 0) {
        dirlease_lose(d, (size_t)i, DIR_LOST_TAKEN);
        return;
    }
    uint64_t until = dirtime_after_success(old, sent, dir_now(), &d->t);
    if (until == 0) {
        dirlease_lose(d, (size_t)i, DIR_LOST_EXPIRED);
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
void dirredis_renew_due(struct dir *d, uint64_t now)
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
            dir_lease_get(l); /* the batch's reference: dirlease_lose() drops the table's */
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
            } else if (!dirredis_reply_int(r, &v) || v < 0 || v > 2) {
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
