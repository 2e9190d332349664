/* Serving one request on the cluster thread: CLAIM, LOOKUP, LIST/PLACE and
 * RELEASE against Redis, and answering a request through its callback.
 * Calls dirredis and dirlease. */
#include "cluster/dir_int.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/dir_lua.h"
#include "cluster/dirplace.h"
#include "core/error.h"
#include "core/log.h"

static const char REASON_MALFORMED[] = "malformed directory reply";
static const char REASON_SLOW[] = "redis answered after the lease";
static const char REASON_NOMEM[] = "out of memory";
static const char REASON_FULL[] = "no relay has capacity";

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

void dirreq_fail(struct dir_req *q, int err, const char *reason)
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
        !dirredis_reply_str(addr, res->home_addr, sizeof(res->home_addr)))
        return ROOST_EIO;
    long long ttl;
    if (dirredis_reply_int(pttl, &ttl))
        res->lease_ttl_ms = ttl;
    res->has_home = true;
    res->home_is_self = strcmp(res->home_id, d->id) == 0;
    return 0;
}

/* Claim of a room this relay already holds: answered without Redis. */
bool dirreq_claim_held(struct dir *d, struct dir_req *q, uint64_t now)
{
    int i = dirlease_held_find(d, q->room, q->room_len);
    if (i < 0)
        return false;
    struct dir_lease *l = d->held[i];
    if (!dir_lease_valid(l, now)) {
        /* Released, RELEASE not yet served: forget it here; its
         * compare-and-delete will not match a newer value. */
        if (atomic_load_explicit(&l->until, memory_order_acquire) == 0)
            dirlease_held_remove(d, (size_t)i);
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

/* Each do_* returns false when the connection failed: the request stays
 * pending (retried after reconnecting, until its deadline). */
static bool do_claim(struct dir *d, struct dir_req *q)
{
    uint64_t now = dir_now();
    if (dirreq_claim_held(d, q, now))
        return true;
    char rk[DIR_KEY_MAX + 1], gk[DIR_KEY_MAX + 1], lease_ms[16];
    size_t rl, gl;
    if (room_keys(d, q, rk, &rl, gk, &gl) != 0) {
        dirreq_fail(q, ROOST_EINVAL, "bad room");
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
    redisReply *r = dirredis_command(d, 8, argv, lens);
    if (r == NULL)
        return false;
    stat_inc(d->st, ST(claims));
    struct dir_result res = {.lease_ttl_ms = -1};
    long long won = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !dirredis_reply_int(r->element[0], &won))
        goto malformed;
    if (won == 1) {
        if (!dirredis_reply_u64(r->element[1], &res.gen) || res.gen == 0)
            goto malformed;
        freeReplyObject(r);
        r = NULL;
        uint64_t until = dirtime_after_success(UINT64_MAX, sent, dir_now(), &d->t);
        if (until == 0) {
            /* Our key is in Redis but the answer came too late to trust
             * the deadline; it expires, or a new claim takes it over. */
            dirreq_fail(q, ROOST_ETIMEDOUT, REASON_SLOW);
            return true;
        }
        struct dir_lease *l = dirlease_new(q, d->id, res.gen);
        if (l == NULL || !dirlease_held_add(d, l)) {
            free(l);
            dirreq_fail(q, ROOST_ENOMEM, REASON_NOMEM);
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
    dirreq_fail(q, ROOST_EIO, REASON_MALFORMED);
    return true;
}

static bool do_lookup(struct dir *d, struct dir_req *q)
{
    char rk[DIR_KEY_MAX + 1], gk[DIR_KEY_MAX + 1];
    size_t rl, gl;
    if (room_keys(d, q, rk, &rl, gk, &gl) != 0) {
        dirreq_fail(q, ROOST_EINVAL, "bad room");
        return true;
    }
    const char *argv[] = {"EVAL", LOOKUP_LUA, "1", rk, d->relay_prefix};
    size_t lens[] = {4, sizeof(LOOKUP_LUA) - 1, 1, rl, strlen(d->relay_prefix)};
    redisReply *r = dirredis_command(d, 5, argv, lens);
    if (r == NULL)
        return false;
    stat_inc(d->st, ST(lookups));
    struct dir_result res = {.lease_ttl_ms = -1};
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 3) ||
        (r->elements == 3 && set_home(d, &res, r->element[0], r->element[1], r->element[2]) != 0)) {
        freeReplyObject(r);
        stat_inc(d->st, ST(redis_errors));
        dirreq_fail(q, ROOST_EIO, REASON_MALFORMED);
        return true;
    }
    freeReplyObject(r);
    complete(q, &res);
    return true;
}

static bool parse_u32(const redisReply *r, uint32_t *out)
{
    uint64_t v = 0;
    if (r != NULL && r->type != REDIS_REPLY_NIL && !dirredis_reply_u64(r, &v))
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
        dirreq_fail(q, ROOST_EINVAL, "bad room");
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
    redisReply *r = dirredis_command(d, place ? 6 : 5, argv, lens);
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
        dirreq_fail(q, ROOST_ENOMEM, REASON_NOMEM);
        return true;
    }
    for (size_t k = 0; k < n; k++) {
        redisReply **e = r->element + 2 + k * LIST_FIELDS;
        uint32_t accept = 0;
        long long ttl = -1;
        if (!dirredis_reply_str(e[0], rel[k].id, sizeof(rel[k].id)) ||
            !dirredis_reply_str(e[1], rel[k].addr, sizeof(rel[k].addr)) ||
            !parse_u32(e[2], &rel[k].load.participants) ||
            !parse_u32(e[3], &rel[k].load.max_participants) ||
            !parse_u32(e[4], &rel[k].load.rooms) || !parse_u32(e[5], &rel[k].load.cpu_permille) ||
            !parse_u32(e[6], &accept) || !dirredis_reply_int(e[7], &ttl))
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
    dirreq_fail(q, ROOST_EIO, REASON_MALFORMED);
    return true;
}

static bool do_release(struct dir *d, struct dir_req *q)
{
    struct dir_lease *l = q->lease;
    int i = dirlease_held_find(d, l->room, l->room_len);
    if (i >= 0 && d->held[i] == l)
        dirlease_held_remove(d, (size_t)i);
    char rk[DIR_KEY_MAX + 1];
    int rl = dirkey_room(rk, sizeof(rk), d->prefix, l->room, l->room_len);
    const char *argv[] = {"EVAL", RELEASE_LUA, "1", rk, l->value};
    size_t lens[] = {4, sizeof(RELEASE_LUA) - 1, 1, (size_t)rl, l->value_len};
    redisReply *r = dirredis_command(d, 5, argv, lens);
    if (r == NULL)
        return false; /* retried; the lease is already out of the table */
    freeReplyObject(r);
    stat_inc(d->st, ST(releases));
    dir_lease_put(l);
    return true;
}

bool dirreq_serve(struct dir *d, struct dir_req *q)
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
