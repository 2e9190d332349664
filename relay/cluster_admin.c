/* The cluster's operations side (relay/cluster.h): state, counters and
 * Prometheus text for /healthz and /metrics, and the directory requests
 * the admin endpoint waits for (a bounded wait). Any thread. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/error.h"
#include "relay/cluster_int.h"
#include "relay/relay_int.h"
#include "relay/trunk.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ operations */

bool cluster_up(const struct cluster *c)
{
    return c != NULL && c->d != NULL && dir_up(c->d);
}

const char *cluster_relay_id(const struct cluster *c)
{
    return c->id;
}

void cluster_stats(const struct cluster *c, struct cluster_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (c->d != NULL)
        dir_stats(c->d, &out->dir);
    out->joins_waited = atomic_load_explicit(&c->joins_waited, memory_order_relaxed);
    out->joins_rejected = atomic_load_explicit(&c->joins_rejected, memory_order_relaxed);
    out->claim_failures = atomic_load_explicit(&c->claim_failures, memory_order_relaxed);
    out->homes_self = atomic_load_explicit(&c->homes_self, memory_order_relaxed);
    out->homes_remote = atomic_load_explicit(&c->homes_remote, memory_order_relaxed);
    out->rooms_gone = atomic_load_explicit(&c->rooms_gone, memory_order_relaxed);
}

int cluster_metrics_text(const struct cluster *c, char *buf, size_t cap)
{
    struct cluster_stats st;
    cluster_stats(c, &st);
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } fam[] = {
#define F(n, t, h, f) {n, t, h, offsetof(struct cluster_stats, f)}
        F("roost_cluster_up", "gauge", "1 while the relay is connected to the cluster's Redis.",
          dir.up),
        F("roost_cluster_leases_held", "gauge", "Room homes this relay holds (leases).",
          dir.leases_held),
        F("roost_cluster_claims_total", "counter", "Claims of a room home answered by Redis.",
          dir.claims),
        F("roost_cluster_claims_won_total", "counter", "Claims that made this relay the home.",
          dir.claims_won),
        F("roost_cluster_leases_lost_total", "counter",
          "Leases lost (expired before a renew, or taken).", dir.leases_lost),
        F("roost_cluster_releases_total", "counter", "Leases released (room empty here).",
          dir.releases),
        F("roost_cluster_redis_errors_total", "counter", "Failed Redis commands.",
          dir.redis_errors),
        F("roost_cluster_reconnects_total", "counter", "Reconnections to Redis.", dir.reconnects),
        F("roost_cluster_request_timeouts_total", "counter",
          "Directory requests failed after the wait bound (join_wait).", dir.req_timeouts),
        F("roost_cluster_joins_waited_total", "counter",
          "JOINs of a room not placed here that waited for its claim.", joins_waited),
        F("roost_cluster_joins_rejected_total", "counter",
          "JOINs rejected because the directory was unavailable.", joins_rejected),
        F("roost_cluster_claim_failures_total", "counter",
          "Claims that failed (Redis unavailable): new rooms refused, placed rooms retried.",
          claim_failures),
#undef F
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
        uint64_t v = *(const uint64_t *)((const char *)&st + fam[i].off);
        int n = snprintf(buf + off, cap - off, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", fam[i].name,
                         fam[i].help, fam[i].name, fam[i].type, fam[i].name, (unsigned long long)v);
        if (n < 0 || (size_t)n >= cap - off)
            return -1;
        off += (size_t)n;
    }
    return (int)off;
}

/* A request the admin thread waits for; the callback may come after the
 * waiter gave up, so both hold a reference. */
struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int refs;
    struct cluster_answer a;
};

static void waiter_put(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void on_answer(const struct dir_result *res, void *arg)
{
    struct waiter *w = arg;
    dir_lease_put(res->lease); /* only claims carry one */
    pthread_mutex_lock(&w->mu);
    struct cluster_answer *a = &w->a;
    a->err = res->err;
    snprintf(a->reason, sizeof(a->reason), "%s", res->reason ? res->reason : "");
    a->has_home = res->has_home;
    a->home_is_self = res->home_is_self;
    snprintf(a->home_id, sizeof(a->home_id), "%s", res->home_id);
    snprintf(a->home_addr, sizeof(a->home_addr), "%s", res->home_addr);
    a->gen = res->gen;
    a->lease_ttl_ms = res->lease_ttl_ms;
    a->has_place = res->place != NULL;
    if (res->place != NULL)
        a->place = *res->place;
    a->place_is_home = res->place_is_home;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    waiter_put(w);
}

int cluster_ask(struct cluster *c, enum dir_op op, const char *room, size_t len,
                struct cluster_answer *out)
{
    memset(out, 0, sizeof(*out));
    if (c == NULL || c->d == NULL)
        return ROOST_ECLOSED;
    struct waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return ROOST_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    w->refs = 2;
    int rc = op == DIR_OP_PLACE ? dir_place(c->d, room, len, on_answer, w)
                                : dir_lookup(c->d, room, len, on_answer, w);
    if (rc != 0) {
        w->refs = 1;
        waiter_put(w);
        return rc;
    }
    uint64_t until = mono_ns() + ((uint64_t)c->dc.timing.wait_ms + 1000u) * 1000000ull;
    struct timespec ts = {(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
            break;
    if (w->done)
        *out = w->a;
    rc = w->done ? 0 : ROOST_ETIMEDOUT;
    pthread_mutex_unlock(&w->mu);
    waiter_put(w);
    return rc;
}

/* ------------------------------------------------------- /rooms/{id} */

void cluster_query_finish(struct cluster_query *q)
{
    pthread_mutex_lock(&q->mu);
    q->done = true;
    pthread_cond_signal(&q->cv);
    bool last = --q->refs == 0;
    pthread_mutex_unlock(&q->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

int cluster_room_local(struct cluster *c, const char *room, size_t len,
                       struct cluster_room_local *out)
{
    memset(out, 0, sizeof(*out));
    if (c == NULL || len == 0 || len > 64)
        return ROOST_EINVAL;
    struct cluster_query *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ROOST_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&q->mu, NULL);
    q->refs = 2;
    q->len = (uint8_t)len;
    memcpy(q->room, room, len);
    struct worker_msg wm = {.type = CLUSTER_MSG_QUERY};
    wm.u.ptr[0] = q;
    int rc = worker_pool_post(c->r->pool, relay_room_owner(c->r, room, len), &wm);
    if (rc != 0) {
        q->refs = 1;
        cluster_query_finish(q);
        return rc;
    }
    uint64_t until = mono_ns() + 1000000000ull;
    struct timespec ts = {(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
    pthread_mutex_lock(&q->mu);
    while (!q->done)
        if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
            break;
    if (q->done)
        *out = q->out;
    rc = q->done ? 0 : ROOST_ETIMEDOUT;
    pthread_mutex_unlock(&q->mu);
    cluster_query_finish(q);
    return rc;
}

static const char *role(const struct cluster_room_local *l)
{
    if (!l->answered)
        return "no answer";
    if (!l->known)
        return "none";
    if (l->claiming)
        return "claiming";
    if (!l->home_known)
        return "home unknown";
    return l->self ? (l->lease_valid ? "home" : "home, lease expired") : "subscriber";
}

void cluster_room_json(struct relay *r, const char *room, void *arg)
{
    json_t *j = arg;
    struct cluster *c = relay_cluster(r);
    if (j == NULL || c == NULL)
        return;
    struct cluster_room_local l;
    (void)cluster_room_local(c, room, strlen(room), &l);
    json_t *home = l.home_known ? json_pack("{s:s, s:s, s:I}", "relay_id", l.home_id, "address",
                                            l.home_addr, "gen", (json_int_t)l.gen)
                                : json_null();
    struct relay_stats st;
    relay_stats(r, &st);
    struct trunk_stats ts;
    trunk_stats_total(r, &ts);
    /* Trunk counters are per relay (summed over its trunks and rooms):
     * the trunks keep no per-room counters. */
    json_t *trunks = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "up", (json_int_t)ts.trunks_up, "frames_out",
        (json_int_t)ts.frames_out, "frames_in", (json_int_t)ts.frames_in, "stale_gen_drops",
        (json_int_t)ts.stale_gen_drops, "subscriptions_accepted", (json_int_t)ts.subs_accepted,
        "reconnects", (json_int_t)ts.reconnects, "lost", (json_int_t)ts.trunks_lost);
    /* The room's relays as its members' ids say (pid_prefix, PROTOCOL.md
     * §4): this relay's own and each other relay's participants here. */
    json_t *relays = json_array();
    for (unsigned p = 0; p < 256; p++)
        if (l.by_prefix[p] > 0)
            json_array_append_new(relays, json_pack("{s:i, s:I, s:b}", "pid_prefix", (int)p,
                                                    "members", (json_int_t)l.by_prefix[p], "self",
                                                    p == c->pid_prefix));
    json_object_set_new(j, "cluster",
                        json_pack("{s:s, s:s, s:b, s:o, s:o, s:I, s:I, s:o}", "relay_id", c->id,
                                  "role", role(&l), "lease_valid", l.lease_valid, "home_here", home,
                                  "relays", relays, "trunk_subscriptions",
                                  (json_int_t)l.trunk_subscriptions, "trunk_members_relay",
                                  (json_int_t)st.trunk_members, "trunks_relay", trunks));
}
