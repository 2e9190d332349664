/* The relay's life: relay_new/start/stop/del, the worker ops that bind a
 * worker to its room shard, QUIC server, WebSocket server (when ws_listen
 * is set) and sessions (relay/session.c, through relay/endpoint.c), drain
 * and reload. The sessions themselves live in relay/session.c, the
 * counters' readers in relay/stats.c. */
#include "relay/relay_int.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <urcu-qsbr.h>

#include "core/error.h"
#include "core/memstat.h"
#include "proto/keyfile.h"
#include "core/log.h"
#include "core/rcuptr.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/token.h"
#include "quic/quic.h"
#include "relay/cluster.h"
#include "room/room.h"
#include "relay/trunk.h"
#include "ws/ws.h"

/* -------------------------------------------------------------- workers */

/* Every quality_interval: link stats and QUALITY summaries (lib/room). */
static void relay_quality_tick(struct timer *t, uint64_t now, void *arg)
{
    struct relay_worker *rw = arg;
    room_shard_quality(relay_worker_shard(rw), now);
    timer_arm(worker_timers(rw->w), t, now + room_shared_quality_interval(rw->r->rsh));
}

/* ------------------------------------------------ live room migration */

/* A POST /rooms/{id}/move: the room's home worker answers, the admin
 * thread waits (control path: a mutex is fine). */
struct room_move_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    unsigned to, from;
    uint32_t members;
    size_t len;
    uint8_t room[ROOM_ID_MAX];
};

static void room_move_done(struct room_move_req *q, int rc)
{
    pthread_mutex_lock(&q->mu);
    q->rc = rc;
    q->done = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void room_move_run(struct relay_worker *rw, struct room_move_req *q)
{
    uint32_t members = 0;
    /* The room's owner now (the home may have placed or moved it away). */
    q->from = room_shard_room_at(relay_worker_shard(rw), q->room, q->len);
    int rc = room_shard_move(relay_worker_shard(rw), q->room, q->len, q->to, &members);
    q->members = members;
    room_move_done(q, rc);
}

const char *const relay_move_result_names[RELAY_MOVE_N] = {
    "started", "noop", "not_found", "bad_worker", "conflict", "draining", "error"};

void relay_room_move_count(struct relay *r, enum relay_move_result res)
{
    atomic_fetch_add_explicit(&r->room_moves[res], 1, memory_order_relaxed);
}

uint64_t relay_room_moves(const struct relay *r, enum relay_move_result res)
{
    return atomic_load_explicit(&r->room_moves[res], memory_order_relaxed);
}

int relay_room_move(struct relay *r, const char *room, size_t len, unsigned to, unsigned *from,
                    uint32_t *members)
{
    *members = 0;
    *from = 0;
    if (to >= r->n_workers)
        return ROOST_EINVAL;
    if (len == 0 || len > ROOM_ID_MAX)
        return ROOST_ENOENT;
    if (r->cluster != NULL || r->trunk != NULL)
        return ROOST_EACCES; /* the gate and the trunks find a room at its hash owner */
    struct room_move_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ROOST_ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    memcpy(q->room, room, len);
    q->len = len;
    q->to = to;
    unsigned home = room_shared_owner(r->rsh, q->room, len);
    struct worker_msg m = {.type = RELAY_MSG_ROOM_MOVE};
    m.u.ptr[0] = q;
    int rc = worker_pool_post(r->pool, home, &m);
    if (rc == 0) {
        pthread_mutex_lock(&q->mu);
        while (!q->done)
            pthread_cond_wait(&q->cv, &q->mu);
        pthread_mutex_unlock(&q->mu);
        rc = q->rc;
        *from = q->from;
        *members = q->members;
    } else {
        rc = ROOST_ECLOSED;
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
    return rc;
}

/* RELAY_MSG_FIRST..RELAY_MSG_LAST, registered with the runtime in w_start
 * (the room shard and the QUIC server register their own ranges). */
static void relay_on_msg(struct worker *w, const struct worker_msg *msg, void *arg)
{
    (void)w;
    struct relay_worker *rw = arg;
    switch (msg->type) {
    case RELAY_MSG_DRAIN:
        session_goaway_all(rw);
        break;
    case RELAY_MSG_MEMBERS:
        session_members_collect(rw, msg->u.ptr[0]);
        session_members_done(msg->u.ptr[0]);
        break;
    case RELAY_MSG_ROOM_MOVE:
        room_move_run(rw, msg->u.ptr[0]);
        break;
    default:
        if (msg->type >= CLUSTER_MSG_FIRST && msg->type <= CLUSTER_MSG_LAST) {
            cluster_on_msg(rw, msg);
            break;
        }
        log_warn("event=unknown_ring_msg type=0x%x", msg->type);
        break;
    }
}

/* A RELAY_MSG_* no worker will handle (shutdown). Any thread. */
static void relay_msg_discard(const struct worker_msg *msg)
{
    if (msg->type == RELAY_MSG_MEMBERS)
        session_members_done(msg->u.ptr[0]); /* the waiter must not hang at shutdown */
    if (msg->type == RELAY_MSG_ROOM_MOVE)
        room_move_done(msg->u.ptr[0], ROOST_ECLOSED);
    if (msg->type >= CLUSTER_MSG_FIRST && msg->type <= CLUSTER_MSG_LAST)
        cluster_msg_discard(msg);
}

static int w_start(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    rw->r = r;
    rw->w = w;
    /* First, so the shard, the server and every connection of this worker
     * are counted in its own arena. */
    atomic_store_explicit(&rw->arena, memstat_thread_arena(), memory_order_relaxed);
    struct worker_handler h = {.first = RELAY_MSG_FIRST,
                               .last = RELAY_MSG_LAST,
                               .on_msg = relay_on_msg,
                               .discard = relay_msg_discard};
    int rc = worker_handle(w, &h, rw);
    if (rc != 0)
        return rc;
    struct room_shard *rs;
    rc = room_shard_new(&rs, r->rsh, w, r->trunk ? &trunk_room_ops : &session_room_ops, rw);
    if (rc != 0)
        return rc;
    /* Published before the QUIC server can open a session that uses it;
     * pairs with the acquire loads in relay_stats/relay_worker_stats
     * (relay/stats.c): the shard is initialised before readers see it. */
    atomic_store_explicit(&rw->rs, rs, memory_order_release);
    rc = trunk_set_new(rw);
    if (rc == 0)
        rc =
            quic_server_new(&rw->qs, w, r->qsh, r->trunk ? &trunk_quic_ops : &session_quic_ops, rw);
    if (rc != 0) {
        trunk_set_del(rw);
        atomic_store_explicit(&rw->rs, NULL, memory_order_relaxed);
        room_shard_del(rs);
        return rc;
    }
    /* This worker's TCP listener: its connections stay on this worker, as
     * a QUIC connection does. */
    if (r->wsh != NULL && (rc = ws_server_new(&rw->wss, w, r->wsh, &session_ws_ops, rw)) != 0) {
        quic_server_del(rw->qs);
        rw->qs = NULL;
        session_bury(rw);
        atomic_store_explicit(&rw->rs, NULL, memory_order_relaxed);
        room_shard_del(rs);
        return rc;
    }
    timer_init(&rw->quality, relay_quality_tick, rw);
    timer_arm(worker_timers(w), &rw->quality, worker_now(w) + room_shared_quality_interval(r->rsh));
    cluster_worker_start(r->cluster, rw);
    return 0;
}

static void w_stop(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    timer_cancel(worker_timers(w), &rw->quality);
    trunk_set_del(rw); /* trunks first: their members leave the rooms */
    /* Closes every connection: on_close buries the sessions. */
    ws_server_del(rw->wss);
    rw->wss = NULL;
    quic_server_del(rw->qs);
    rw->qs = NULL;
    session_bury(rw);
    /* Readers that load NULL skip the shard; readers may not overlap the
     * stop itself (relay.h: relay_stats, relay_worker_stats). */
    struct room_shard *rs = relay_worker_shard(rw);
    atomic_store_explicit(&rw->rs, NULL, memory_order_relaxed);
    room_shard_del(rs);
    cluster_worker_stop(r->cluster, rw);
}

static void w_turn_end(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    session_bury(rw);
    room_shard_flush(relay_worker_shard(rw));
    trunk_turn_end(rw);
    quic_server_turn_end(rw->qs);
    if (rw->wss != NULL)
        ws_server_turn_end(rw->wss);
}

static const struct worker_ops relay_worker_ops = {
    .start = w_start,
    .stop = w_stop,
    .on_turn_end = w_turn_end,
};

/* ----------------------------------------------------------------- api */

static unsigned default_workers(const struct relay_config *cfg)
{
    if (cfg->n_workers)
        return cfg->n_workers;
    if (cfg->n_cpus)
        return cfg->n_cpus;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    return 1;
}

/* A relay_config cadence field: 0 is the default, RELAY_OFF is 0. */
static uint32_t setting_us(uint32_t v, uint32_t def)
{
    return v == 0 ? def : v == RELAY_OFF ? 0 : v;
}

uint32_t relay_turn_batch_us(const struct relay_config *cfg)
{
    return setting_us(cfg->turn_batch_us, RELAY_DEFAULT_TURN_BATCH_US);
}

uint32_t relay_timer_slack_us(const struct relay_config *cfg)
{
    return setting_us(cfg->timer_slack_us, RELAY_DEFAULT_TIMER_SLACK_US);
}

uint32_t relay_affinity_resolve(uint32_t setting, const char *steering_mode)
{
    if (setting == RELAY_AFFINITY_AUTO)
        return steering_mode != NULL && strcmp(steering_mode, "ebpf") == 0
                   ? RELAY_AFFINITY_AUTO_MEMBERS
                   : 0;
    return setting == RELAY_OFF ? 0 : setting;
}

uint8_t relay_placement_resolve(uint8_t setting, uint32_t affinity, bool cluster, const char **why)
{
    bool is_auto = setting != ROOM_PLACE_SPREAD && setting != ROOM_PLACE_PACK;
    if (cluster) {
        *why = is_auto ? "auto:cluster" : setting == ROOM_PLACE_PACK ? "cluster" : "explicit";
        return ROOM_PLACE_SPREAD;
    }
    if (!is_auto) {
        *why = "explicit";
        return setting;
    }
    *why = affinity > 0 ? "auto:affinity" : "auto:no_affinity";
    return affinity > 0 ? ROOM_PLACE_PACK : ROOM_PLACE_SPREAD;
}

const char *relay_placement_why(const struct relay *r)
{
    return r->placement_why != NULL ? r->placement_why : "explicit";
}

const char *relay_placement(const struct relay *r)
{
    return r->cfg.placement == ROOM_PLACE_PACK ? "pack" : "spread";
}

uint32_t relay_pack_members(const struct relay *r)
{
    return r->cfg.pack_members;
}

uint32_t relay_affinity_max_members(const struct relay *r)
{
    return r->cfg.affinity_max_members;
}

int relay_new(struct relay **out, const struct relay_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->cert_file == NULL || cfg->key_file == NULL)
        return ROOST_EINVAL;
    if (!cfg->insecure_no_auth && cfg->token_key_file == NULL) {
        log_error("event=config_error msg=\"a token key file is required (or the dev flag "
                  "--insecure-no-auth)\"");
        return ROOST_EINVAL;
    }
    struct relay *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return ROOST_ENOMEM;
    r->cfg = *cfg;
    r->cert_loaded_wall = time(NULL);
    atomic_init(&r->draining, false);
    atomic_init(&r->live_max_conns,
                cfg->max_conns_per_worker ? cfg->max_conns_per_worker : QUIC_DEFAULT_MAX_CONNS);
    atomic_init(&r->live_max_half_open,
                cfg->max_half_open ? cfg->max_half_open : QUIC_DEFAULT_RETRY_THRESHOLD);
    int rc;
    if (!cfg->insecure_no_auth) {
        char err[256];
        r->keys = calloc(1, sizeof(*r->keys));
        if (r->keys == NULL) {
            rc = ROOST_ENOMEM;
            goto fail;
        }
        rc = keyfile_load(cfg->token_key_file, r->keys, err, sizeof(err));
        if (rc != 0) {
            log_error("event=token_keys_failed msg=\"%s\"", err);
            rc = ROOST_EBADKEY;
            goto fail;
        }
    } else {
        log_warn("event=insecure_no_auth msg=\"DEV MODE: join tokens are NOT checked; every "
                 "client may join any room\"");
    }
    r->n_workers = default_workers(cfg);
    if (r->n_workers > WORKER_MAX) {
        rc = ROOST_EINVAL;
        goto fail;
    }
    r->rw = aligned_alloc(64, sizeof(*r->rw) * r->n_workers);
    if (r->rw == NULL) {
        rc = ROOST_ENOMEM;
        goto fail;
    }
    memset(r->rw, 0, sizeof(*r->rw) * r->n_workers);
    for (unsigned i = 0; i < r->n_workers; i++)
        atomic_init(&r->rw[i].arena, MEMSTAT_NO_ARENA);

    struct quic_shared_config qc = {
        .cert_file = cfg->cert_file,
        .key_file = cfg->key_file,
        .state_dir = cfg->state_dir,
        .addr = cfg->addr ? cfg->addr : "127.0.0.1",
        .port = cfg->port,
        .n_workers = r->n_workers,
        .idle_timeout_ns = cfg->idle_timeout_ns,
        .handshake_timeout_ns = cfg->handshake_timeout_ns,
        .force_retry = cfg->force_retry,
        .max_conns = cfg->max_conns_per_worker,
        .retry_threshold = cfg->max_half_open,
        .handshake_rate = cfg->handshake_rate,
        .sock_buf = cfg->sock_buf,
        .priority = cfg->tls_priority,
        .ticket_period_s = cfg->ticket_period_s,
        .no_tickets = cfg->no_tickets,
        .no_steering = cfg->no_steering,
        .conn_pkt_rate = cfg->conn_pkt_rate,
        .conn_byte_rate = cfg->conn_byte_rate,
        .addr_pkt_rate = cfg->addr_pkt_rate,
        .addr_byte_rate = cfg->addr_byte_rate,
    };
    rc = trunk_shared_new(&r->trunk, cfg);
    if (rc == 0)
        rc = trunk_sets_new(r);
    if (rc != 0)
        goto fail;
    if (r->trunk != NULL)
        qc.alpn2 = TRUNK_ALPN_STR;
    rc = quic_shared_new(&r->qsh, &qc);
    if (rc != 0) {
        log_error("event=quic_setup_failed err=\"%s\"", roost_strerror(rc));
        goto fail;
    }
    if (cfg->ws.addr != NULL) {
        struct ws_shared_config wc = cfg->ws;
        wc.n_workers = r->n_workers;
        if (!wc.plain) {
            wc.cert_file = cfg->cert_file;
            wc.key_file = cfg->key_file;
        }
        if (wc.handshake_timeout_ns == 0)
            wc.handshake_timeout_ns = cfg->handshake_timeout_ns;
        if (wc.idle_timeout_ns == 0)
            wc.idle_timeout_ns = cfg->idle_timeout_ns;
        if (wc.max_conns == 0)
            wc.max_conns = cfg->max_conns_per_worker ? cfg->max_conns_per_worker : 10000;
        if (wc.plain && !ws_addr_is_loopback(wc.addr)) {
            log_error("event=ws_setup_failed msg=\"plain ws:// (no TLS) is allowed only on a "
                      "loopback address\" addr=%s",
                      wc.addr);
            rc = ROOST_EINVAL;
            goto fail;
        }
        rc = ws_shared_new(&r->wsh, &wc);
        if (rc != 0) {
            log_error("event=ws_setup_failed addr=%s port=%u err=\"%s\"", wc.addr,
                      (unsigned)wc.port, roost_strerror(rc));
            goto fail;
        }
    }
    /* Affinity: after the sockets, so that `auto` follows the steering
     * program that actually loaded (quic_shared_new tried them). */
    r->affinity_setting = cfg->affinity_max_members;
    r->cfg.affinity_max_members =
        relay_affinity_resolve(cfg->affinity_max_members, quic_shared_steering_mode(r->qsh));
    log_info("event=affinity affinity_max_members=%u setting=%s steering=%s",
             r->cfg.affinity_max_members,
             cfg->affinity_max_members == RELAY_AFFINITY_AUTO ? "auto"
             : cfg->affinity_max_members == RELAY_OFF         ? "off"
                                                              : "explicit",
             quic_shared_steering_mode(r->qsh));
    struct room_limits lim = {
        .max_rooms = cfg->max_rooms,
        .max_members = cfg->max_members,
        .affinity_max_members = r->cfg.affinity_max_members,
        /* A cluster's gate and trunks find a room at
         * its hash owner: no placement there. */
        .owner_share_max = cfg->cluster_relay_id[0] ? 0 : cfg->owner_share_max,
        .placement = relay_placement_resolve(cfg->placement, r->cfg.affinity_max_members,
                                             cfg->cluster_relay_id[0] != '\0', &r->placement_why),
        .pack_members = cfg->pack_members,
        .keyframe_cap = cfg->keyframe_cap,
        .prefill_ms = cfg->prefill_ms,
        .kfreq_window_ns = cfg->kfreq_window_ns,
        .quality_interval_ns = cfg->quality_interval_ns,
        .pid_prefix = cfg->cluster_relay_id[0] ? cfg->cluster.pid_prefix : 0};
    rc = room_shared_new(&r->rsh, r->n_workers, &lim);
    if (rc != 0)
        goto fail;
    r->cfg.placement = lim.placement;
    r->cfg.pack_members = lim.pack_members ? lim.pack_members : ROOM_DEFAULT_PACK_MEMBERS;
    r->placement_setting = cfg->placement;
    log_info("event=placement placement=%s why=%s pack_members=%u setting=%s "
             "affinity_max_members=%u workers=%u",
             relay_placement(r), r->placement_why, r->cfg.pack_members,
             cfg->placement == ROOM_PLACE_PACK     ? "pack"
             : cfg->placement == ROOM_PLACE_SPREAD ? "spread"
                                                   : "auto",
             r->cfg.affinity_max_members, r->n_workers);
    rc = cluster_new(&r->cluster, r, cfg);
    if (rc != 0)
        goto fail;
    if (r->cluster != NULL && r->trunk != NULL) { /* CLUSTER_IFACE.md */
        cluster_set_home_ops(r->cluster, &trunk_home_ops, r);
        trunk_shared_set_cluster(r->trunk, r->cluster);
    }
    struct worker_config wc = {
        .n_workers = r->n_workers,
        .cpus = cfg->cpus,
        .n_cpus = cfg->n_cpus,
        .no_pin = cfg->no_pin,
        .turn_batch_us = relay_turn_batch_us(cfg),
        .timer_slack_us = relay_timer_slack_us(cfg),
        .ring_capacity = cfg->ring_capacity,
        .spill_max = cfg->spill_max,
    };
    rc = worker_pool_new(&r->pool, &wc, &relay_worker_ops, r);
    if (rc != 0) {
        log_error("event=workers_failed err=\"%s\"", roost_strerror(rc));
        goto fail;
    }
    *out = r;
    return 0;
fail:
    relay_del(r);
    return rc;
}

int relay_start(struct relay *r)
{
    int rc = cluster_start(r->cluster); /* before workers claim rooms */
    if (rc != 0)
        return rc;
    rc = worker_pool_start(r->pool);
    if (rc == 0) {
        r->started = true;
        cluster_set_stats_ok(r->cluster, true);
    }
    return rc;
}

uint16_t relay_port(const struct relay *r)
{
    return quic_shared_port(r->qsh);
}

uint16_t relay_ws_port(const struct relay *r)
{
    return r->wsh != NULL ? ws_shared_port(r->wsh) : 0;
}

unsigned relay_workers(const struct relay *r)
{
    return r->n_workers;
}

void relay_request_stop(struct relay *r)
{
    worker_pool_request_stop(r->pool);
}

void relay_stop(struct relay *r)
{
    cluster_quiesce(r->cluster); /* no more reads of the workers' counters */
    if (r->pool != NULL)
        worker_pool_stop(r->pool);
    /* After the workers: answers still coming find the pool closed. */
    cluster_stop(r->cluster);
}

void relay_del(struct relay *r)
{
    if (r == NULL)
        return;
    cluster_quiesce(r->cluster);
    if (r->pool != NULL)
        worker_pool_stop(r->pool);
    cluster_del(r->cluster);  /* its callbacks post to the pool: before it goes */
    worker_pool_del(r->pool); /* stops and joins */
    /* Snapshots and rooms retired with call_rcu must be freed before the
     * room tables go. */
    rcu_register_thread();
    rcu_barrier();
    rcu_unregister_thread();
    room_shared_del(r->rsh);
    ws_shared_del(r->wsh);
    quic_shared_del(r->qsh);
    trunk_sets_del(r);
    trunk_shared_del(r->trunk);
    if (r->keys != NULL) {
        token_keyring_wipe(r->keys);
        free(r->keys);
    }
    free(r->rw);
    free(r);
}

int relay_drain(struct relay *r)
{
    atomic_store_explicit(&r->draining, true, memory_order_relaxed);
    quic_shared_set_draining(r->qsh, true);
    if (r->wsh != NULL)
        ws_shared_set_draining(r->wsh, true);
    int ret = 0;
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct worker_msg m = {.type = RELAY_MSG_DRAIN};
        int rc = worker_pool_post(r->pool, i, &m);
        if (rc != 0 && rc != ROOST_ECLOSED)
            ret = rc;
    }
    return ret;
}

bool relay_draining(const struct relay *r)
{
    return atomic_load_explicit(&r->draining, memory_order_relaxed);
}

bool relay_steering(const struct relay *r)
{
    return quic_shared_steering(r->qsh);
}

const char *relay_steering_mode(const struct relay *r)
{
    return quic_shared_steering_mode(r->qsh);
}

static bool str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

static bool file_newer(const char *path, time_t t)
{
    struct stat st;
    return path != NULL && stat(path, &st) == 0 && st.st_mtime > t;
}

int relay_reload(struct relay *r, const struct relay_config *cfg)
{
    int ret = 0;
    if (!r->cfg.insecure_no_auth && cfg->token_key_file != NULL) {
        struct token_keyring *nk = calloc(1, sizeof(*nk));
        char err[256];
        int rc =
            nk == NULL ? ROOST_ENOMEM : keyfile_load(cfg->token_key_file, nk, err, sizeof(err));
        if (rc != 0) {
            log_error("event=reload_failed what=token_keys msg=\"%s\" keeping=old_keys",
                      nk == NULL ? "out of memory" : err);
            free(nk);
            ret = ROOST_EBADKEY;
        } else {
            /* Pairs with rcu_dereference in on_join. */
            struct token_keyring *old = rcu_xchg_pointer(&r->keys, nk);
            rcuptr_synchronize(); /* no worker still verifies with old */
            token_keyring_wipe(old);
            free(old);
            r->cfg.token_key_file = cfg->token_key_file;
            log_info("event=reload what=token_keys keys=%u", nk->n);
        }
    }
    /* Raised or lowered: a higher limit grows each worker's connection
     * table on that worker when it fills (lib/quic); a lower one refuses
     * new connections until enough close. */
    unsigned mc = cfg->max_conns_per_worker ? cfg->max_conns_per_worker : QUIC_DEFAULT_MAX_CONNS;
    unsigned ho = cfg->max_half_open ? cfg->max_half_open : QUIC_DEFAULT_RETRY_THRESHOLD;
    atomic_store_explicit(&r->live_max_conns, mc, memory_order_relaxed);
    atomic_store_explicit(&r->live_max_half_open, ho, memory_order_relaxed);
    quic_shared_set_limits(r->qsh, mc, ho);
    log_info("event=reload what=limits max_conns=%u max_half_open=%u", mc, ho);
    /* Certificate and key: new sessions get the new ones, sessions in
     * progress keep theirs (counted credentials in lib/quic). */
    if (cfg->cert_file != NULL && cfg->key_file != NULL &&
        (str_differs(cfg->cert_file, r->cfg.cert_file) ||
         str_differs(cfg->key_file, r->cfg.key_file) ||
         file_newer(cfg->cert_file, r->cert_loaded_wall) ||
         file_newer(cfg->key_file, r->cert_loaded_wall))) {
        int rc = quic_shared_reload_cert(r->qsh, cfg->cert_file, cfg->key_file);
        if (rc == 0 && r->wsh != NULL && !r->cfg.ws.plain)
            rc = ws_shared_reload_cert(r->wsh, cfg->cert_file, cfg->key_file);
        if (rc != 0) {
            log_error("event=reload_failed what=cert err=\"%s\" keeping=old_cert",
                      roost_strerror(rc));
            ret = rc;
        } else {
            r->cfg.cert_file = cfg->cert_file;
            r->cfg.key_file = cfg->key_file;
            r->cert_loaded_wall = time(NULL); /* later reloads compare against this load */
            log_info("event=reload what=cert cert=%s", cfg->cert_file);
        }
    }
    /* Session ticket keys rotate on SIGHUP too (and on their schedule);
     * tickets of the previous key stay valid for one period. */
    if (!r->cfg.no_tickets && quic_shared_rotate_tickets(r->qsh) == 0)
        log_info("event=reload what=ticket_keys");
    /* What is fixed at start: say so rather than silently ignore it. */
    struct {
        const char *key;
        bool changed;
    } fixed[] = {
        {"listen", str_differs(cfg->addr, r->cfg.addr)},
        {"port", cfg->port != r->cfg.port},
        {"workers", cfg->n_workers != r->cfg.n_workers},
        {"turn_batch_us", cfg->turn_batch_us != r->cfg.turn_batch_us},
        {"timer_slack_us", cfg->timer_slack_us != r->cfg.timer_slack_us},
        {"state_dir", str_differs(cfg->state_dir, r->cfg.state_dir)},
        {"insecure_no_auth", cfg->insecure_no_auth != r->cfg.insecure_no_auth},
        {"max_rooms", cfg->max_rooms != r->cfg.max_rooms},
        {"max_members", cfg->max_members != r->cfg.max_members},
        {"affinity_max_members", cfg->affinity_max_members != r->affinity_setting},
        {"owner_share_max", cfg->owner_share_max != r->cfg.owner_share_max},
        {"placement", cfg->placement != r->placement_setting},
        {"pack_members", (cfg->pack_members ? cfg->pack_members : ROOM_DEFAULT_PACK_MEMBERS) !=
                             r->cfg.pack_members},
        {"idle_timeout", cfg->idle_timeout_ns != r->cfg.idle_timeout_ns},
        {"handshake_timeout", cfg->handshake_timeout_ns != r->cfg.handshake_timeout_ns},
        {"handshake_rate", cfg->handshake_rate != r->cfg.handshake_rate},
        {"force_retry", cfg->force_retry != r->cfg.force_retry},
        {"steering", cfg->no_steering != r->cfg.no_steering},
        {"keyframe_cap", cfg->keyframe_cap != r->cfg.keyframe_cap},
        {"prefill", cfg->prefill_ms != r->cfg.prefill_ms},
        {"keyframe_request_window", cfg->kfreq_window_ns != r->cfg.kfreq_window_ns},
        {"quality_interval", cfg->quality_interval_ns != r->cfg.quality_interval_ns},
        {"ws_listen", str_differs(cfg->ws.addr, r->cfg.ws.addr) || cfg->ws.port != r->cfg.ws.port},
        {"ws_plain", cfg->ws.plain != r->cfg.ws.plain},
        {"web_root", str_differs(cfg->ws.web_root, r->cfg.ws.web_root)},
        {"conn_packet_rate", cfg->conn_pkt_rate != r->cfg.conn_pkt_rate},
        {"conn_byte_rate", cfg->conn_byte_rate != r->cfg.conn_byte_rate},
        {"addr_packet_rate", cfg->addr_pkt_rate != r->cfg.addr_pkt_rate},
        {"addr_byte_rate", cfg->addr_byte_rate != r->cfg.addr_byte_rate},
        {"[cluster]", strcmp(cfg->cluster.redis_host, r->cfg.cluster.redis_host) != 0 ||
                          cfg->cluster.redis_port != r->cfg.cluster.redis_port ||
                          strcmp(cfg->cluster_relay_id, r->cfg.cluster_relay_id) != 0 ||
                          strcmp(cfg->cluster_trunk_listen, r->cfg.cluster_trunk_listen) != 0 ||
                          cfg->cluster.pid_prefix != r->cfg.cluster.pid_prefix ||
                          cfg->cluster.timing.lease_ms != r->cfg.cluster.timing.lease_ms},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i].changed)
            log_warn("event=reload_needs_restart key=%s", fixed[i].key);
    return ret;
}

unsigned relay_room_owner(struct relay *r, const char *room, size_t len)
{
    return room_shared_owner(r->rsh, (const uint8_t *)room, len);
}

struct cluster *relay_cluster(struct relay *r)
{
    return r->cluster;
}
