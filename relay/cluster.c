/* The relay's side of the cluster directory: relay/cluster.h says what and
 * docs/CLUSTER.md 1.8 why.
 *
 * Per worker, a table of the rooms this worker owns that have a directory
 * state: a claim in flight (their JOINs parked by lib/room's gate), a
 * known home (this relay with its lease, or another relay), or "home
 * unknown, claim again" after a failed claim or a lost lease of a room
 * that still has members. Only the owner worker touches its table; the
 * cluster thread reaches it through worker messages. */
#include "relay/cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "relay/relay_int.h"
#include "relay/cluster_int.h"

#define BUCKETS 1024u
#define RETRY_NS 500000000ull /* re-claim scan of rooms whose home is unknown */
#define BUSY_HIGH 0.90        /* as /capacity: above, not accepting */
#define REJECT_REASON "cluster directory unavailable: cannot place a new room; retry later"

struct centry {
    struct centry *next;
    bool claiming;   /* a dir_claim is in flight */
    bool live;       /* the room exists on the shard */
    bool closed;     /* closed while claiming: dropped when the answer comes */
    bool in_gate;    /* inside room_shard_gate_open for it */
    bool need_claim; /* live, home unknown: the retry timer claims again */
    bool home_known, self;
    struct dir_lease *lease; /* self: our reference */
    uint64_t claim_since;    /* worker clock when the claim in flight was sent */
    uint64_t gen;
    char home_id[DIR_ID_MAX + 1];
    char home_addr[DIR_ADDR_MAX + 1];
    uint8_t len;
    char room[ROOM_ID_MAX + 1];
};

struct cluster_worker {
    struct cluster *c;
    struct relay_worker *rw;
    struct timer retry;
    uint32_t n_need; /* entries with need_claim */
    struct centry *b[BUCKETS];
};

/* A claim's answer or a lost lease, posted to the owner worker. */
struct cmsg {
    int err;
    const char *reason; /* static */
    bool self;
    struct dir_lease *lease;
    uint64_t gen;
    char home_id[DIR_ID_MAX + 1];
    char home_addr[DIR_ADDR_MAX + 1];
    uint8_t len;
    char room[ROOM_ID_MAX + 1];
};

static void count(_Atomic uint64_t *v)
{
    atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------- the table */

static uint32_t room_hash(const char *room, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a: the table is per worker, ids are short */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)room[i]) * 16777619u;
    return h & (BUCKETS - 1);
}

static struct centry *find(struct cluster_worker *cw, const char *room, size_t len)
{
    for (struct centry *e = cw->b[room_hash(room, len)]; e != NULL; e = e->next)
        if (e->len == len && memcmp(e->room, room, len) == 0)
            return e;
    return NULL;
}

static struct centry *add(struct cluster_worker *cw, const char *room, size_t len)
{
    struct centry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    memcpy(e->room, room, len);
    e->len = (uint8_t)len;
    uint32_t h = room_hash(room, len);
    e->next = cw->b[h];
    cw->b[h] = e;
    return e;
}

static void set_need(struct cluster_worker *cw, struct centry *e, bool on)
{
    if (e->need_claim != on)
        cw->n_need += on ? 1u : (uint32_t)-1;
    e->need_claim = on;
}

static void drop(struct cluster_worker *cw, struct centry *e)
{
    for (struct centry **pp = &cw->b[room_hash(e->room, e->len)]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    set_need(cw, e, false);
    if (e->lease != NULL)
        dir_release(cw->c->d, e->lease);
    free(e);
}

static struct cluster_worker *worker_of(struct cluster *c, struct relay_worker *rw)
{
    return c->cw[worker_id(rw->w)];
}

/* ------------------------------------------------------ cluster thread */

/* A claim answered (cluster thread): to the room's owner worker. */
static void on_claimed(const struct dir_result *res, void *arg)
{
    struct cluster *c = arg;
    struct cmsg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        dir_lease_put(res->lease); /* the lease lapses; the room re-claims on its timer */
        log_error("event=cluster_claim_lost reason=nomem");
        return;
    }
    m->err = res->err;
    m->reason = res->reason;
    m->self = res->err == 0 && res->home_is_self;
    m->lease = m->self ? res->lease : NULL;
    m->gen = res->gen;
    snprintf(m->home_id, sizeof(m->home_id), "%s", res->home_id);
    snprintf(m->home_addr, sizeof(m->home_addr), "%s", res->home_addr);
    m->len = (uint8_t)res->room_len;
    memcpy(m->room, res->room, res->room_len);
    if (!m->self && res->lease != NULL)
        dir_lease_put(res->lease);
    struct worker_msg wm = {.type = CLUSTER_MSG_CLAIMED};
    wm.u.ptr[0] = m;
    unsigned owner = relay_room_owner(c->r, m->room, m->len);
    if (worker_pool_post(c->r->pool, owner, &wm) != 0)
        cluster_msg_discard(&wm); /* shutting down */
}

static void on_event(const struct dir_event *ev, void *arg)
{
    struct cluster *c = arg;
    switch (ev->type) {
    case DIR_EV_UP:
        log_info("event=cluster_redis_up redis=%s:%u relay_id=%s", c->host,
                 (unsigned)c->dc.redis_port, c->id);
        break;
    case DIR_EV_DOWN:
        log_warn("event=cluster_redis_down redis=%s:%u msg=\"placed rooms keep working; JOINs "
                 "of new rooms are rejected after join_wait\"",
                 c->host, (unsigned)c->dc.redis_port);
        break;
    case DIR_EV_LEASE_LOST: {
        log_warn("event=cluster_lease_lost room_len=%zu gen=%llu reason=%s", ev->room_len,
                 (unsigned long long)ev->gen, ev->reason == DIR_LOST_TAKEN ? "taken" : "expired");
        struct cmsg *m = calloc(1, sizeof(*m));
        if (m == NULL)
            return;
        m->gen = ev->gen;
        m->len = (uint8_t)ev->room_len;
        memcpy(m->room, ev->room, ev->room_len);
        struct worker_msg wm = {.type = CLUSTER_MSG_LOST};
        wm.u.ptr[0] = m;
        if (worker_pool_post(c->r->pool, relay_room_owner(c->r, m->room, m->len), &wm) != 0)
            cluster_msg_discard(&wm);
        break;
    }
    }
}

/* What /capacity says, for the relay's registration (cluster thread). */
static void on_load(struct dir_load *out, void *arg)
{
    struct cluster *c = arg;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->mu);
    if (!c->stats_ok) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    struct relay *r = c->r;
    struct relay_limits lim;
    relay_limits(r, &lim);
    struct relay_stats tot;
    relay_stats(r, &tot);
    unsigned n = relay_workers(r);
    uint64_t now = mono_ns(), dt = now - c->last_ns;
    double max_share = 0;
    bool any_full = false;
    for (unsigned i = 0; i < n && i < WORKER_MAX; i++) {
        struct relay_worker_stats ws;
        relay_worker_stats(r, i, &ws);
        double sh = c->last_ns == 0 || dt == 0
                        ? 0.0
                        : (double)(ws.worker.busy_ns - c->last_busy[i]) / (double)dt;
        max_share = sh > max_share ? sh : max_share;
        c->last_busy[i] = ws.worker.busy_ns;
        any_full |= ws.quic.conns_open >= lim.max_conns_per_worker;
    }
    c->last_ns = now;
    pthread_mutex_unlock(&c->mu);
    uint64_t maxp = (uint64_t)lim.max_conns_per_worker * n;
    out->participants = tot.participants > 0 ? (uint32_t)tot.participants : 0;
    out->max_participants = maxp > UINT32_MAX ? UINT32_MAX : (uint32_t)maxp;
    out->rooms = tot.rooms > 0 ? (uint32_t)tot.rooms : 0;
    out->cpu_permille = (uint32_t)((max_share > 1.0 ? 1.0 : max_share) * 1000.0);
    out->accepting = !relay_draining(r) && tot.rooms < (int64_t)lim.max_rooms && !any_full &&
                     max_share < BUSY_HIGH;
}

/* ------------------------------------------------------------ worker side */

static void home_ops(struct cluster_worker *cw, struct centry *e)
{
    struct cluster *c = cw->c;
    count(e->self ? &c->homes_self : &c->homes_remote);
    log_info("event=cluster_home room_len=%u self=%s home=%s addr=%s gen=%llu", e->len,
             e->self ? "true" : "false", e->home_id, e->home_addr, (unsigned long long)e->gen);
    if (c->ops != NULL && c->ops->home != NULL)
        c->ops->home(cw->rw, e->room, e->len, e->self, e->home_id, e->home_addr, e->gen,
                     c->ops_arg);
}

static void gone_ops(struct cluster_worker *cw, struct centry *e, uint64_t gen)
{
    struct cluster *c = cw->c;
    count(&c->rooms_gone);
    if (c->ops != NULL && c->ops->gone != NULL)
        c->ops->gone(cw->rw, e->room, e->len, gen, c->ops_arg);
}

static int claim(struct cluster_worker *cw, struct centry *e)
{
    int rc = dir_claim(cw->c->d, e->room, e->len, on_claimed, cw->c);
    if (rc == 0) {
        e->claiming = true;
        e->claim_since = worker_now(cw->rw->w);
        set_need(cw, e, false);
    }
    return rc;
}

static void on_claim_answer(struct cluster_worker *cw, struct cmsg *m)
{
    struct cluster *c = cw->c;
    struct centry *e = find(cw, m->room, m->len);
    if (e == NULL || e->closed) {
        if (m->lease != NULL)
            dir_release(c->d, m->lease); /* nobody here needs it any more */
        if (e != NULL)
            drop(cw, e);
        return;
    }
    e->claiming = false;
    struct room_shard *rs = relay_worker_shard(cw->rw);
    if (m->err != 0) {
        count(&c->claim_failures);
        log_warn("event=cluster_claim_failed room_len=%u live=%s err=\"%s\" reason=\"%s\"", e->len,
                 e->live ? "true" : "false", roost_strerror(m->err), m->reason);
        if (e->live) {
            set_need(cw, e, true); /* keeps serving locally; claims again */
            return;
        }
        count(&c->joins_rejected);
        e->in_gate = true;
        room_shard_gate_open(rs, (const uint8_t *)e->room, e->len, PROTO_ERR_SERVER_FULL,
                             REJECT_REASON, c->dc.timing.wait_ms ? c->dc.timing.wait_ms : 2000);
        drop(cw, e);
        return;
    }
    if (m->self) {
        if (e->lease == m->lease)
            dir_lease_put(m->lease); /* a second reference to the lease we hold */
        else {
            dir_lease_put(e->lease);
            e->lease = m->lease;
        }
    } else if (e->lease != NULL) {
        dir_lease_put(e->lease); /* we held it once; another relay has it now */
        e->lease = NULL;
    }
    e->self = m->self;
    e->gen = m->gen;
    snprintf(e->home_id, sizeof(e->home_id), "%s", m->self ? c->id : m->home_id);
    snprintf(e->home_addr, sizeof(e->home_addr), "%s", m->self ? c->addr : m->home_addr);
    e->home_known = true;
    set_need(cw, e, false);
    home_ops(cw, e);
    if (!e->live) {
        e->in_gate = true;
        bool live =
            room_shard_gate_open(rs, (const uint8_t *)e->room, e->len, ROOM_GATE_OPEN, NULL, 0);
        e->in_gate = false;
        if (!live) { /* every joiner left meanwhile */
            gone_ops(cw, e, e->gen);
            drop(cw, e);
            return;
        }
        e->live = true;
    }
}

static void on_lost(struct cluster_worker *cw, struct cmsg *m)
{
    struct centry *e = find(cw, m->room, m->len);
    if (e == NULL || e->lease == NULL || dir_lease_gen(e->lease) != m->gen)
        return; /* released already, or an older lease */
    dir_lease_put(e->lease);
    e->lease = NULL;
    e->home_known = false;
    e->self = false;
    gone_ops(cw, e, m->gen);
    if (e->live && !e->claiming && claim(cw, e) != 0)
        set_need(cw, e, true);
}

/* /rooms/{id}: this worker's entry for the room. */
static void on_query(struct cluster_worker *cw, struct cluster_query *q)
{
    struct cluster_room_local *o = &q->out;
    struct centry *e = find(cw, q->room, q->len);
    o->answered = true;
    (void)room_shard_census(relay_worker_shard(cw->rw), (const uint8_t *)q->room, q->len,
                            o->by_prefix, &o->trunk_subscriptions);
    if (e != NULL) {
        o->known = true;
        o->claiming = e->claiming;
        o->need_claim = e->need_claim;
        o->home_known = e->home_known;
        o->self = e->self;
        o->lease_valid = e->lease != NULL && dir_lease_valid(e->lease, mono_ns());
        o->gen = e->gen;
        snprintf(o->home_id, sizeof(o->home_id), "%s", e->home_id);
        snprintf(o->home_addr, sizeof(o->home_addr), "%s", e->home_addr);
    }
    cluster_query_finish(q);
}

void cluster_on_msg(struct relay_worker *rw, const struct worker_msg *msg)
{
    struct cluster *c = rw->r->cluster;
    struct cmsg *m = msg->u.ptr[0];
    struct cluster_worker *cw = c != NULL ? worker_of(c, rw) : NULL;
    if (cw == NULL || cw->rw == NULL) {
        cluster_msg_discard(msg);
        return;
    }
    if (msg->type == CLUSTER_MSG_QUERY) {
        on_query(cw, msg->u.ptr[0]);
        return;
    }
    if (msg->type == CLUSTER_MSG_CLAIMED)
        on_claim_answer(cw, m);
    else if (msg->type == CLUSTER_MSG_LOST)
        on_lost(cw, m);
    free(m);
}

void cluster_msg_discard(const struct worker_msg *msg)
{
    if (msg->type == CLUSTER_MSG_QUERY) {
        if (msg->u.ptr[0] != NULL)
            cluster_query_finish(msg->u.ptr[0]); /* unanswered */
        return;
    }
    struct cmsg *m = msg->u.ptr[0];
    if (m == NULL)
        return;
    dir_lease_put(m->lease);
    free(m);
}

uint32_t cluster_gate(struct cluster *c, struct relay_worker *rw, const uint8_t *room, size_t len,
                      const char **reason, uint32_t *retry_ms)
{
    if (c == NULL)
        return ROOM_GATE_OPEN;
    struct cluster_worker *cw = worker_of(c, rw);
    struct centry *e = find(cw, (const char *)room, len);
    if (e != NULL) {
        /* A claim is in flight: this join waits with the others. An entry
         * closed while re-claiming becomes this room's claim again. */
        e->closed = false;
        if (e->claiming) {
            count(&c->joins_waited);
            return ROOM_GATE_WAIT;
        }
        drop(cw, e); /* not live and not claiming: stale */
    }
    e = add(cw, (const char *)room, len);
    int rc = e != NULL ? claim(cw, e) : ROOST_ENOMEM;
    if (rc != 0) {
        if (e != NULL)
            drop(cw, e);
        count(&c->joins_rejected);
        *reason = REJECT_REASON;
        *retry_ms = c->dc.timing.wait_ms;
        return PROTO_ERR_SERVER_FULL;
    }
    count(&c->joins_waited);
    return ROOM_GATE_WAIT;
}

void cluster_room_closed(struct cluster *c, struct relay_worker *rw, const uint8_t *room,
                         size_t len)
{
    if (c == NULL)
        return;
    struct cluster_worker *cw = worker_of(c, rw);
    struct centry *e = find(cw, (const char *)room, len);
    if (e == NULL || e->in_gate)
        return; /* in_gate: the claim answer sees the room is not live */
    uint64_t gen = e->gen;
    bool known = e->home_known;
    e->live = false;
    if (e->lease != NULL) {
        dir_release(c->d, e->lease);
        e->lease = NULL;
    }
    if (known)
        gone_ops(cw, e, gen);
    if (e->claiming) {
        e->closed = true;
        e->home_known = false;
        set_need(cw, e, false);
    } else {
        drop(cw, e);
    }
}

int cluster_room_retry(struct cluster *c, struct relay_worker *rw, const char *room,
                       size_t room_len)
{
    if (c == NULL)
        return ROOST_EINVAL;
    struct cluster_worker *cw = worker_of(c, rw);
    struct centry *e = find(cw, room, room_len);
    if (e == NULL || !e->live)
        return ROOST_ENOENT;
    if (e->claiming)
        return 0;
    int rc = claim(cw, e);
    if (rc != 0)
        set_need(cw, e, true);
    return rc;
}

struct dir_lease *cluster_room_lease(struct cluster *c, struct relay_worker *rw, const char *room,
                                     size_t room_len, uint64_t gen)
{
    if (c == NULL)
        return NULL;
    struct centry *e = find(worker_of(c, rw), room, room_len);
    if (e == NULL || !e->self || e->lease == NULL || dir_lease_gen(e->lease) != gen)
        return NULL;
    return e->lease;
}

/* Claims again the live rooms whose home is unknown, while Redis is up. */
/* A claim whose answer never came (its message lost to an allocation or a
 * post failure on the cluster thread: REVIEW18 finding 9) is answered as
 * failed after 2 join_wait + a lease, so that parked JOINs are rejected
 * and a live room claims again. A late real answer is still applied. */
static void claims_overdue(struct cluster_worker *cw, uint64_t now)
{
    const struct dir_timing *t = &cw->c->dc.timing;
    uint64_t limit = (2ull * (t->wait_ms ? t->wait_ms : 2000) + t->lease_ms) * 1000000ull;
    for (uint32_t b = 0; b < BUCKETS; b++) {
        struct centry *e = cw->b[b];
        while (e != NULL) {
            struct centry *next = e->next; /* on_claim_answer may drop e */
            if (e->claiming && now - e->claim_since > limit) {
                struct cmsg m = {.err = ROOST_ETIMEDOUT, .reason = "claim answer lost"};
                m.len = e->len;
                memcpy(m.room, e->room, e->len);
                on_claim_answer(cw, &m);
            }
            e = next;
        }
    }
}

static void retry_tick(struct timer *t, uint64_t now, void *arg)
{
    struct cluster_worker *cw = arg;
    claims_overdue(cw, now);
    if (cw->n_need > 0 && dir_up(cw->c->d))
        for (uint32_t b = 0; b < BUCKETS && cw->n_need > 0; b++)
            for (struct centry *e = cw->b[b]; e != NULL; e = e->next)
                if (e->need_claim && !e->claiming)
                    (void)claim(cw, e);
    timer_arm(worker_timers(cw->rw->w), t, now + RETRY_NS);
}

void cluster_worker_start(struct cluster *c, struct relay_worker *rw)
{
    if (c == NULL)
        return;
    struct cluster_worker *cw = c->cw[worker_id(rw->w)]; /* made by cluster_new */
    cw->rw = rw;
    timer_init(&cw->retry, retry_tick, cw);
    timer_arm(worker_timers(rw->w), &cw->retry, worker_now(rw->w) + RETRY_NS);
}

void cluster_worker_stop(struct cluster *c, struct relay_worker *rw)
{
    if (c == NULL)
        return;
    struct cluster_worker *cw = worker_of(c, rw);
    timer_cancel(worker_timers(rw->w), &cw->retry);
    for (uint32_t b = 0; b < BUCKETS; b++)
        while (cw->b[b] != NULL) {
            struct centry *e = cw->b[b];
            cw->b[b] = e->next;
            dir_lease_put(e->lease); /* dir_del releases what it still holds */
            free(e);
        }
    cw->n_need = 0;
}

/* ------------------------------------------------------------- lifecycle */

void cluster_set_home_ops(struct cluster *c, const struct cluster_home_ops *ops, void *arg)
{
    if (c == NULL)
        return;
    c->ops = ops;
    c->ops_arg = arg;
}

/* src into dst[cap] (validated lengths; cut if ever longer). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int read_password(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ROOST_EINVAL;
    int rc = fgets(out, (int)cap, f) != NULL ? 0 : ROOST_EINVAL;
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return rc;
}

int cluster_new(struct cluster **out, struct relay *r, const struct relay_config *cfg)
{
    *out = NULL;
    const struct relay_cluster_config *k = &cfg->cluster;
    char why[256];
    if (cluster_trunk_port_check(cfg->cluster_trunk_listen, cfg->port, why, sizeof(why)) != 0) {
        log_error("event=config_error key=trunk_listen value=%s msg=\"%s\"",
                  cfg->cluster_trunk_listen, why);
        return ROOST_EINVAL;
    }
    if (k->redis_host[0] == '\0')
        return 0;
    const char *addr = k->trunk_advertise[0] ? k->trunk_advertise : cfg->cluster_trunk_listen;
    if (!dirkey_valid_id(cfg->cluster_relay_id) || !dirkey_valid_addr(addr) || k->pid_prefix == 0) {
        log_error("event=config_error msg=\"[cluster] redis needs relay_id, pid_prefix and "
                  "trunk_listen (see --check-config)\"");
        return ROOST_EINVAL;
    }
    struct cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    c->r = r;
    c->pid_prefix = k->pid_prefix;
    copy_str(c->host, sizeof(c->host), k->redis_host);
    copy_str(c->id, sizeof(c->id), cfg->cluster_relay_id);
    copy_str(c->addr, sizeof(c->addr), addr);
    copy_str(c->prefix, sizeof(c->prefix), k->key_prefix[0] ? k->key_prefix : "roost");
    copy_str(c->password, sizeof(c->password), k->redis_password);
    if (c->password[0] == '\0' && k->redis_password_file[0] != '\0' &&
        read_password(k->redis_password_file, c->password, sizeof(c->password)) != 0) {
        log_error("event=config_error key=redis_password_file msg=\"cannot read\" path=%s",
                  k->redis_password_file);
        free(c);
        return ROOST_EINVAL;
    }
    c->dc = (struct dir_config){
        .redis_host = c->host,
        .redis_port = k->redis_port,
        .password = c->password[0] ? c->password : NULL,
        .db = k->redis_db,
        .prefix = c->prefix,
        .relay_id = c->id,
        .trunk_addr = c->addr,
        .timing = k->timing,
        .load_cb = on_load,
        .load_arg = c,
        .event_cb = on_event,
        .event_arg = c,
    };
    if (dirtime_complete(&c->dc.timing) != 0) {
        log_error("event=config_error msg=\"[cluster] timings cannot keep the lease guard\"");
        free(c);
        return ROOST_EINVAL;
    }
    unsigned n = relay_workers(r);
    for (unsigned i = 0; i < n && i < WORKER_MAX; i++) {
        c->cw[i] = calloc(1, sizeof(*c->cw[i]));
        if (c->cw[i] == NULL) {
            for (unsigned j = 0; j < i; j++)
                free(c->cw[j]);
            free(c);
            return ROOST_ENOMEM;
        }
        c->cw[i]->c = c;
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

int cluster_start(struct cluster *c)
{
    if (c == NULL)
        return 0;
    int rc = dir_new(&c->d, &c->dc);
    if (rc != 0) {
        log_error("event=cluster_start_failed err=\"%s\"", roost_strerror(rc));
        return rc;
    }
    log_info("event=cluster_start relay_id=%s redis=%s:%u trunk_addr=%s prefix=%s lease_ms=%u "
             "join_wait_ms=%u home_ops=%s",
             c->id, c->host, (unsigned)c->dc.redis_port, c->addr, c->prefix, c->dc.timing.lease_ms,
             c->dc.timing.wait_ms, c->ops != NULL ? "trunks" : "none");
    if (c->ops == NULL)
        log_warn("event=cluster_no_trunks msg=\"no trunk ops registered: rooms are placed in "
                 "Redis but served locally only\"");
    return 0;
}

void cluster_set_stats_ok(struct cluster *c, bool on)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stats_ok = on;
    pthread_mutex_unlock(&c->mu);
}

void cluster_quiesce(struct cluster *c)
{
    cluster_set_stats_ok(c, false);
}

void cluster_stop(struct cluster *c)
{
    if (c == NULL || c->d == NULL)
        return;
    cluster_quiesce(c);
    dir_del(c->d);
    c->d = NULL;
}

void cluster_del(struct cluster *c)
{
    if (c == NULL)
        return;
    cluster_stop(c);
    for (unsigned i = 0; i < WORKER_MAX; i++)
        free(c->cw[i]); /* their entries went with cluster_worker_stop */
    pthread_mutex_destroy(&c->mu);
    free(c);
}
