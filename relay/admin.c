#include "relay/admin.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "relay/cluster.h"
#include "relay/metrics.h"
#include "relay/relay.h"

#define BUSY_WINDOW_NS 200000000ull /* shorter windows reuse the last share */
#define BUSY_HIGH 0.90              /* above: stop admitting (can_accept_more) */

struct admin {
    struct MHD_Daemon *d;
    struct relay *r;
    struct admin_config cfg;
    uint16_t port;
    /* Busy share per worker, from busy_ns deltas between /capacity calls. */
    pthread_mutex_t mu;
    uint64_t last_ns;
    uint64_t last_busy[WORKER_MAX];
    double share[WORKER_MAX];
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len)
{
    /* MHD frees body with free() after sending. */
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    char *b = strdup(text);
    if (b == NULL)
        return MHD_NO;
    return reply(conn, status, "text/plain; charset=utf-8", b, strlen(b));
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned status, json_t *j)
{
    if (j == NULL)
        return reply_text(conn, 500, "out of memory\n");
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(j);
    if (s == NULL)
        return reply_text(conn, 500, "out of memory\n");
    size_t n = strlen(s);
    /* jansson allocates with malloc by default (no json_set_alloc_funcs). */
    return reply(conn, status, "application/json", s, n);
}

/* -------------------------------------------------------------- capacity */

static json_t *capacity_json(struct admin *a)
{
    struct relay *r = a->r;
    unsigned n = relay_workers(r);
    struct relay_limits lim;
    relay_limits(r, &lim);
    struct relay_stats tot;
    relay_stats(r, &tot);
    bool draining = relay_draining(r);

    json_t *workers = json_array();
    uint64_t now = mono_ns();
    pthread_mutex_lock(&a->mu);
    bool fresh = a->last_ns == 0 || now - a->last_ns >= BUSY_WINDOW_NS;
    uint64_t dt = now - a->last_ns;
    double max_share = 0, sum_share = 0;
    uint64_t conns_total = 0, rej_full = 0, rej_room = 0, rej_server = 0, retry_ho = 0,
             retry_rate = 0, refused_drain = 0;
    bool any_full = false;
    for (unsigned i = 0; i < n; i++) {
        struct relay_worker_stats ws;
        relay_worker_stats(r, i, &ws);
        if (fresh) {
            /* First call: the share since the worker started is unknown;
             * report 0 until a window has passed. */
            a->share[i] = a->last_ns == 0 || dt == 0
                              ? 0.0
                              : (double)(ws.worker.busy_ns - a->last_busy[i]) / (double)dt;
            if (a->share[i] > 1.0)
                a->share[i] = 1.0;
            a->last_busy[i] = ws.worker.busy_ns;
        }
        double sh = a->share[i];
        max_share = sh > max_share ? sh : max_share;
        sum_share += sh;
        conns_total += ws.quic.conns_open;
        bool full = ws.quic.conns_open >= lim.max_conns_per_worker;
        any_full |= full;
        rej_full += ws.quic.refused_full;
        rej_room += ws.room.rejects_room_full;
        rej_server += ws.room.rejects_server_full;
        retry_ho += ws.quic.retry_half_open;
        retry_rate += ws.quic.retry_rate;
        refused_drain += ws.quic.refused_draining + ws.relay.rejects_draining;
        json_array_append_new(
            workers, json_pack("{s:i, s:i, s:f, s:I, s:I, s:I, s:I, s:b}", "worker", (int)i, "cpu",
                               ws.cpu, "busy", sh, "connections", (json_int_t)ws.quic.conns_open,
                               "half_open", (json_int_t)ws.quic.conns_half_open, "max_connections",
                               (json_int_t)lim.max_conns_per_worker, "rooms",
                               (json_int_t)(ws.room.rooms_created - ws.room.rooms_destroyed +
                                            ws.room.rooms_moved_in - ws.room.rooms_moved_out),
                               "full", full));
    }
    if (fresh)
        a->last_ns = now;
    pthread_mutex_unlock(&a->mu);

    bool rooms_full = tot.rooms >= (int64_t)lim.max_rooms;
    bool busy = max_share >= BUSY_HIGH;
    bool can = !draining && !rooms_full && !any_full && !busy;
    /* A hint for balancers and clients: how long before asking again. */
    uint64_t backoff = 0;
    if (draining)
        backoff = a->cfg.drain_timeout_ns / 1000000u;
    else if (!can)
        backoff = 1000u + (uint64_t)(4000.0 * (max_share > 1.0 ? 1.0 : max_share));
    const char *reason = draining     ? "draining"
                         : rooms_full ? "max_rooms"
                         : any_full   ? "max_conns"
                         : busy       ? "busy"
                                      : "";
    uint64_t max_participants = (uint64_t)lim.max_conns_per_worker * n;
    return json_pack(
        "{s:o, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:I, s:s, "
        "s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
        "workers", workers, "load", n ? sum_share / n : 0.0, "max_worker_load", max_share,
        "connections", (json_int_t)conns_total, "max_connections", (json_int_t)max_participants,
        "participants", (json_int_t)tot.participants, "max_participants",
        (json_int_t)max_participants, "rooms", (json_int_t)tot.rooms, "max_rooms",
        (json_int_t)lim.max_rooms, "max_members_per_room", (json_int_t)lim.max_members, "draining",
        draining, "can_accept_more", can, "suggested_backoff_ms", (json_int_t)backoff, "reason",
        reason, "rejections", "conn_limit", (json_int_t)rej_full, "room_full", (json_int_t)rej_room,
        "server_full", (json_int_t)rej_server, "retry_half_open", (json_int_t)retry_ho,
        "retry_handshake_rate", (json_int_t)retry_rate, "draining", (json_int_t)refused_drain);
}

/* ----------------------------------------------------------------- rooms */

static json_t *member_json(const struct relay_member_info *m)
{
    const struct quic_conn_stats *l = &m->link;
    json_t *link = json_pack(
        "{s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "rtt_ms", (double)l->srtt_ns / 1e6,
        "min_rtt_ms", (double)l->min_rtt_ns / 1e6, "cwnd", (json_int_t)l->cwnd, "bytes_in",
        (json_int_t)l->bytes_in, "bytes_out", (json_int_t)l->bytes_out, "datagrams_in",
        (json_int_t)l->dgram_in, "datagrams_out", (json_int_t)l->dgram_out, "datagrams_lost",
        (json_int_t)l->dgram_lost, "datagrams_dropped",
        (json_int_t)(l->dgram_drop_cwnd + l->dgram_drop_too_large + l->dgram_drop_queue),
        "control_pending", (json_int_t)l->control_pending);
    json_t *name = json_string(m->display);
    if (name == NULL)
        name = json_string("?"); /* not UTF-8 (cut at 64 bytes mid-character) */
    return json_pack("{s:I, s:o, s:i, s:b, s:I, s:s, s:o}", "participant_id", (json_int_t)m->pid,
                     "display_name", name, "worker", (int)m->worker, "joined", m->joined,
                     "joined_for_ms", (json_int_t)m->joined_for_ms, "transport",
                     m->transport != NULL ? m->transport : "quic", "link", link);
}

static int cmp_member(const void *pa, const void *pb)
{
    const struct relay_member_info *a = pa, *b = pb;
    int c = strcmp(a->room, b->room);
    if (c != 0)
        return c;
    return a->pid < b->pid ? -1 : a->pid > b->pid;
}

/* All rooms, or only `only` (NULL: all). *found: the room exists. */
static json_t *rooms_json(struct admin *a, const char *only, bool *found)
{
    struct relay_member_info *v;
    size_t n;
    *found = false;
    if (relay_members(a->r, &v, &n) != 0)
        return NULL;
    if (n > 1) /* v is NULL when no worker has a member: qsort(NULL, 0) is undefined */
        qsort(v, n, sizeof(*v), cmp_member);
    json_t *rooms = json_array();
    json_t *members = NULL;
    const char *cur_id = NULL;
    for (size_t i = 0; i < n; i++) {
        if (only != NULL && strcmp(v[i].room, only) != 0)
            continue;
        if (cur_id == NULL || strcmp(v[i].room, cur_id) != 0) {
            cur_id = v[i].room;
            json_t *id = json_string(v[i].room);
            members = json_array();
            json_array_append_new(rooms,
                                  json_pack("{s:o, s:i, s:o}", "id", id ? id : json_string("?"),
                                            "owner_worker", (int)v[i].owner, "members", members));
        }
        json_array_append_new(members, member_json(&v[i]));
    }
    /* Member counts once the arrays are complete. */
    size_t k;
    json_t *room;
    json_array_foreach(rooms, k, room)
    {
        json_object_set_new(
            room, "member_count",
            json_integer((json_int_t)json_array_size(json_object_get(room, "members"))));
    }
    free(v);
    if (only != NULL) {
        json_t *one = json_array_size(rooms) ? json_incref(json_array_get(rooms, 0)) : NULL;
        json_decref(rooms);
        *found = one != NULL;
        return one;
    }
    *found = true;
    return json_pack("{s:I, s:o}", "count", (json_int_t)json_array_size(rooms), "rooms", rooms);
}

/* --------------------------------------------------------------- cluster */

/* GET /cluster/place?room=R (docs/CLUSTER.md 1.7): a bounded wait, and
 * none at all while Redis is known to be down. */
static enum MHD_Result cluster_place(struct admin *a, struct MHD_Connection *conn)
{
    struct cluster *c = relay_cluster(a->r);
    const char *room = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "room");
    if (c == NULL)
        return reply_json(conn, 404, json_pack("{s:s}", "error", "no [cluster] configured"));
    if (room == NULL || *room == '\0' || strlen(room) > 64)
        return reply_json(conn, 400, json_pack("{s:s}", "error", "expected ?room=ID (1-64 bytes)"));
    if (!cluster_up(c))
        return reply_json(conn, 503, json_pack("{s:s}", "error", "redis unavailable"));
    struct cluster_answer an;
    int rc = cluster_ask(c, DIR_OP_PLACE, room, strlen(room), &an);
    if (rc != 0 || an.err != 0)
        return reply_json(conn, 503,
                          json_pack("{s:s}", "error",
                                    rc != 0        ? roost_strerror(rc)
                                    : an.reason[0] ? an.reason
                                                   : "failed"));
    /* Clients use the relay's trunk host with the cluster's client port. */
    char addr[DIR_ADDR_MAX + 16];
    snprintf(addr, sizeof(addr), "%s", an.place.addr);
    char *colon = strrchr(addr, ':');
    if (colon != NULL)
        snprintf(colon, sizeof(addr) - (size_t)(colon - addr), ":%u", relay_port(a->r));
    json_t *home = an.has_home ? json_pack("{s:s, s:I, s:b}", "relay_id", an.home_id, "gen",
                                           (json_int_t)an.gen, "self", an.home_is_self)
                               : json_null();
    return reply_json(conn, 200,
                      json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "room", room, "relay_id",
                                an.place.id, "address", addr, "trunk_address", an.place.addr,
                                "is_home", an.place_is_home, "home", home));
}

/* The room's home as Redis has it, for /rooms/{id}. */
static json_t *cluster_home_json(struct admin *a, const char *room)
{
    struct cluster *c = relay_cluster(a->r);
    if (c == NULL)
        return NULL;
    if (!cluster_up(c))
        return json_pack("{s:s}", "error", "redis unavailable");
    struct cluster_answer an;
    int rc = cluster_ask(c, DIR_OP_LOOKUP, room, strlen(room), &an);
    if (rc != 0 || an.err != 0)
        return json_pack("{s:s}", "error", rc != 0 ? roost_strerror(rc) : an.reason);
    if (!an.has_home)
        return json_null();
    return json_pack("{s:s, s:s, s:b, s:I, s:I}", "relay_id", an.home_id, "address", an.home_addr,
                     "self", an.home_is_self, "gen", (json_int_t)an.gen, "lease_ttl_ms",
                     (json_int_t)an.lease_ttl_ms);
}

/* ------------------------------------------------------------ room move */

/* POST /rooms/{id}/move?worker=N (docs/OPERATIONS.md, "Moving a live
 * room"): 202 started, 200 already there, 400 bad worker, 404 no such
 * room, 409 a move in flight / placed / cluster, 503 draining. */
static enum MHD_Result room_move(struct admin *a, struct MHD_Connection *conn, const char *room,
                                 size_t len)
{
    struct relay *r = a->r;
    const char *ws = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "worker");
    char *end = NULL;
    unsigned long to = ws != NULL && *ws != '\0' ? strtoul(ws, &end, 10) : 0;
    enum relay_move_result res;
    unsigned status;
    json_t *j;
    if (relay_draining(r)) {
        res = RELAY_MOVE_DRAINING;
        status = 503;
        j = json_pack("{s:s}", "error", "draining");
    } else if (ws == NULL || end == NULL || *end != '\0' || *ws == '-' || to >= relay_workers(r)) {
        res = RELAY_MOVE_BAD_WORKER;
        status = 400;
        j = json_pack("{s:s, s:I}", "error", "worker must be 0..workers-1", "workers",
                      (json_int_t)relay_workers(r));
    } else {
        unsigned from;
        uint32_t members;
        int rc = relay_room_move(r, room, len, (unsigned)to, &from, &members);
        switch (rc) {
        case 0:
            res = RELAY_MOVE_STARTED;
            status = 202;
            j = json_pack("{s:s#, s:I, s:I, s:I, s:s}", "room", room, (int)len, "from",
                          (json_int_t)from, "to", (json_int_t)to, "members", (json_int_t)members,
                          "state", "moving");
            break;
        case ROOST_EEXIST:
            res = RELAY_MOVE_NOOP;
            status = 200;
            j = json_pack("{s:s#, s:I, s:I, s:s}", "room", room, (int)len, "to", (json_int_t)to,
                          "members", (json_int_t)members, "state", "already there");
            break;
        case ROOST_ENOENT:
            res = RELAY_MOVE_NOT_FOUND;
            status = 404;
            j = json_pack("{s:s}", "error", "no such room");
            break;
        case ROOST_EINVAL:
            res = RELAY_MOVE_BAD_WORKER;
            status = 400;
            j = json_pack("{s:s}", "error", "no such worker");
            break;
        case ROOST_EACCES:
            res = RELAY_MOVE_CONFLICT;
            status = 409;
            j = json_pack("{s:s}", "error",
                          "rooms do not move in a cluster: trunks and the directory find a room "
                          "at its hash owner");
            break;
        case ROOST_EAGAIN:
            res = RELAY_MOVE_CONFLICT;
            status = 409;
            j = json_pack("{s:s}", "error",
                          "a move of this room is in flight (one at a time: try again), or "
                          "it is being made or ending");
            break;
        case ROOST_ECLOSED:
            res = RELAY_MOVE_DRAINING;
            status = 503;
            j = json_pack("{s:s}", "error", "shutting down");
            break;
        default:
            res = RELAY_MOVE_ERROR;
            status = 500;
            j = json_pack("{s:s}", "error", roost_strerror(rc));
            break;
        }
    }
    relay_room_move_count(r, res);
    return reply_json(conn, status, j);
}

/* -------------------------------------------------------------- dispatch */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    (void)version;
    (void)upload;
    struct admin *a = cls;
    if (strcmp(method, "POST") == 0) {
        /* The first call only announces the request (MHD); a body is
         * ignored; the answer goes when it has all arrived. */
        static int started;
        if (*req_cls == NULL) {
            *req_cls = &started;
            return MHD_YES;
        }
        if (*upload_size != 0) {
            *upload_size = 0;
            return MHD_YES;
        }
        size_t ul = strlen(url);
        if (strncmp(url, "/rooms/", 7) == 0 && ul > 12 && strcmp(url + ul - 5, "/move") == 0)
            return room_move(a, conn, url + 7, ul - 12);
        return reply_text(conn, 404, "not found: POST /rooms/{id}/move?worker=N\n");
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(conn, 405, "only GET and POST /rooms/{id}/move\n");
    if (strcmp(url, "/metrics") == 0) {
        char *text;
        size_t len;
        if (metrics_render(a->r, &text, &len) != 0)
            return reply_text(conn, 500, "out of memory\n");
        return reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    }
    if (strcmp(url, "/healthz") == 0) {
        if (relay_draining(a->r))
            return reply_text(conn, 503, "draining\n");
        /* Placed rooms keep working without Redis: degraded, not down. */
        if (relay_cluster(a->r) != NULL && !cluster_up(relay_cluster(a->r)))
            return reply_text(conn, 200,
                              "degraded: cluster redis unavailable, new rooms refused\n");
        return reply_text(conn, 200, "ok\n");
    }
    if (strcmp(url, "/cluster/place") == 0)
        return cluster_place(a, conn);
    if (strcmp(url, "/capacity") == 0)
        return reply_json(conn, 200, capacity_json(a));
    bool found;
    if (strcmp(url, "/rooms") == 0 || strcmp(url, "/rooms/") == 0)
        return reply_json(conn, 200, rooms_json(a, NULL, &found));
    if (strncmp(url, "/rooms/", 7) == 0) {
        /* MHD has already percent-decoded the path. */
        json_t *j = rooms_json(a, url + 7, &found);
        if (!found) {
            json_decref(j);
            return reply_json(conn, 404, json_pack("{s:s}", "error", "no such room"));
        }
        json_t *home = cluster_home_json(a, url + 7);
        if (home != NULL)
            json_object_set_new(j, "home", home);
        cluster_room_json(a->r, url + 7, j); /* this relay's role, trunks (cluster_admin.c) */
        return reply_json(conn, 200, j);
    }
    return reply_text(conn, 404, "not found: try /metrics /capacity /rooms /healthz\n");
}

int admin_new(struct admin **out, struct relay *r, const struct admin_config *cfg)
{
    const char *addr = cfg->addr ? cfg->addr : "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    /* One internal thread on epoll: idle connections cost a descriptor and
     * a small pool, never a thread, so the limit can be large. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        return ROOST_EINVAL;
    }
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return ROOST_ENOMEM;
    a->r = r;
    a->cfg = *cfg;
    a->cfg.addr = NULL;
    pthread_mutex_init(&a->mu, NULL);
    /* Idle connections must not starve /healthz (a load balancer would
     * drain a healthy relay): the limit is far above what a scraper, an
     * operator and a balancer use; beyond it connections wait in the
     * kernel's backlog, and every slot frees within conn_timeout, so a
     * request waits at most about ceil(queued / limit) * timeout. */
    unsigned limit = cfg->conn_limit ? cfg->conn_limit : ADMIN_DEFAULT_CONN_LIMIT;
    uint64_t tmo_ns = cfg->conn_timeout_ns ? cfg->conn_timeout_ns : ADMIN_DEFAULT_CONN_TIMEOUT_NS;
    unsigned tmo_s = (unsigned)((tmo_ns + 999999999ull) / 1000000000ull);
    a->d = MHD_start_daemon(flags, cfg->port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, limit,
                            MHD_OPTION_CONNECTION_TIMEOUT, tmo_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_END);
    if (a->d == NULL) {
        log_error("event=admin_failed addr=%s port=%u msg=\"cannot listen\"", addr, cfg->port);
        pthread_mutex_destroy(&a->mu);
        free(a);
        return ROOST_ESYS;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    a->port = di != NULL ? di->port : cfg->port;
    *out = a;
    return 0;
}

uint16_t admin_port(const struct admin *a)
{
    return a->port;
}

void admin_del(struct admin *a)
{
    if (a == NULL)
        return;
    MHD_stop_daemon(a->d);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
