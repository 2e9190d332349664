#include "relay/relay.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/keyring.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "proto/token.h"
#include "quic/quic.h"
#include "room/room.h"

#define RELAY_SERVER_NAME "roost-relay/0.1"
#define RELAY_MAX_REJECTS 3 /* JOIN_REJECTED answers before the connection is closed */
#define RELAY_DEFAULT_HANDSHAKE_NS (5ull * 1000000000ull)
#define RELAY_DEFAULT_IDLE_NS (30ull * 1000000000ull)

enum session_state {
    SESSION_OPEN = 0, /* waiting for HELLO */
    SESSION_WELCOMED, /* waiting for JOIN */
    SESSION_JOINING,  /* JOIN sent to the room's owner */
    SESSION_JOINED,
    SESSION_LEAVING, /* LEAVE received; closing */
};

struct relay_worker;

/* One client connection's protocol state. Owned by its worker; freed at
 * the end of the loop turn in which its connection closed, so that no
 * callback in progress (room delivery, control) sees it vanish. */
struct session {
    struct relay_worker *rw;
    struct quic_conn *c; /* NULL once closed */
    struct room_member *m;
    enum session_state state;
    unsigned rejects;
    struct timer deadline; /* HELLO / JOIN must arrive in time */
    struct session *grave_next;
};

/* Counters written only by their worker (relaxed stores). */
struct relay_wstats {
    uint64_t sessions_opened, sessions_closed;
    uint64_t joins_ok, join_rejects;
    uint64_t rejects_bad_token, rejects_not_permitted;
    uint64_t protocol_violations;
    uint64_t dgram_not_joined;
};

struct relay_worker {
    struct relay *r;
    struct worker *w;
    struct quic_server *qs;
    struct room_shard *rs;
    struct session *grave; /* closed sessions to free at turn end */
    struct relay_wstats st;
} __attribute__((aligned(64)));

struct relay {
    struct relay_config cfg;
    struct quic_shared *qsh;
    struct room_shared *rsh;
    struct worker_pool *pool;
    struct token_keyring keys;
    unsigned n_workers;
    bool started;
    struct relay_worker *rw; /* n_workers */
};

#define WSTAT_INC(rw, f) __atomic_store_n(&(rw)->st.f, (rw)->st.f + 1, __ATOMIC_RELAXED)

/* -------------------------------------------------------------- helpers */

static void session_send(struct session *ss, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    if (n < 0) {
        log_error("event=encode_failed type=%s err=\"%s\"", msg_type_name(m->type),
                  roost_strerror(n));
        return;
    }
    if (ss->c != NULL)
        quic_conn_send_control(ss->c, body, (size_t)n); /* EFULL closes: TOO_SLOW */
}

static void session_close(struct session *ss, uint32_t code, const char *reason)
{
    if (ss->c != NULL)
        quic_conn_close(ss->c, code, reason); /* on_close runs now; ss stays until turn end */
}

static void session_violation(struct session *ss, const char *what)
{
    WSTAT_INC(ss->rw, protocol_violations);
    log_debug("event=protocol_violation what=\"%s\"", what);
    session_close(ss, PROTO_ERR_PROTOCOL_VIOLATION, what);
}

static void session_error(struct session *ss, uint32_t code, uint64_t type, const char *text)
{
    struct msg m = {.type = MSG_ERROR};
    m.u.error.code = code;
    m.u.error.msg_type = type;
    m.u.error.text.ptr = (const uint8_t *)text;
    m.u.error.text.len = strlen(text);
    session_send(ss, &m);
}

static void session_reject(struct session *ss, uint32_t code, const char *reason)
{
    struct msg m = {.type = MSG_JOIN_REJECTED};
    m.u.join_rejected.code = code;
    m.u.join_rejected.reason.ptr = (const uint8_t *)reason;
    m.u.join_rejected.reason.len = strlen(reason);
    session_send(ss, &m);
    WSTAT_INC(ss->rw, join_rejects);
    if (++ss->rejects >= RELAY_MAX_REJECTS)
        session_close(ss, code, reason);
}

static uint64_t wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec;
}

/* ------------------------------------------------------- room callbacks */

static int room_cb_media(void *ep, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    if (ss->c == NULL)
        return ROOST_ECLOSED;
    return quic_conn_queue_datagram(ss->c, b, off, len);
}

static void room_cb_control(void *ep, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    if (ss->c != NULL)
        quic_conn_send_control(ss->c, body, len);
}

static void room_cb_joined(void *ep, uint32_t code, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    if (ss->state != SESSION_JOINING)
        return;
    if (code == 0) {
        ss->state = SESSION_JOINED;
        timer_cancel(worker_timers(ss->rw->w), &ss->deadline);
        WSTAT_INC(ss->rw, joins_ok);
        return;
    }
    /* JOIN_REJECTED already went out through room_cb_control. */
    ss->state = SESSION_WELCOMED;
    WSTAT_INC(ss->rw, join_rejects);
    if (++ss->rejects >= RELAY_MAX_REJECTS)
        session_close(ss, code, "too many rejected joins");
}

static void room_cb_replaced(void *ep, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    ss->state = SESSION_LEAVING;
    session_close(ss, PROTO_ERR_REPLACED, "same identity joined on another connection");
}

static const struct room_ops relay_room_ops = {
    .media = room_cb_media,
    .control = room_cb_control,
    .joined = room_cb_joined,
    .replaced = room_cb_replaced,
};

/* --------------------------------------------------------- control path */

static void on_hello(struct session *ss, const struct msg_hello *h)
{
    if (h->min_version > PROTO_VERSION || h->max_version < PROTO_VERSION) {
        session_close(ss, PROTO_ERR_UNSUPPORTED_VERSION, "supported: 1");
        return;
    }
    struct relay *r = ss->rw->r;
    struct msg m = {.type = MSG_WELCOME};
    m.u.welcome.version = PROTO_VERSION;
    m.u.welcome.participant_id = room_member_pid(ss->m);
    uint64_t idle = r->cfg.idle_timeout_ns ? r->cfg.idle_timeout_ns : RELAY_DEFAULT_IDLE_NS;
    m.u.welcome.idle_timeout_ms = (uint32_t)(idle / 1000000u);
    m.u.welcome.max_datagram = 1200; /* fits any path QUIC allows */
    m.u.welcome.max_stream_id = 255;
    m.u.welcome.max_members = r->cfg.max_members ? r->cfg.max_members : 500;
    m.u.welcome.server_name.ptr = (const uint8_t *)RELAY_SERVER_NAME;
    m.u.welcome.server_name.len = strlen(RELAY_SERVER_NAME);
    ss->state = SESSION_WELCOMED;
    session_send(ss, &m);
}

static void on_join(struct session *ss, const struct msg_join *j)
{
    struct relay *r = ss->rw->r;
    struct token_claims cl;
    unsigned perms;
    const uint8_t *ident = NULL;
    size_t ident_len = 0;

    if (r->cfg.insecure_no_auth) {
        perms = ROOM_PERM_PUBLISH | ROOM_PERM_SUBSCRIBE;
    } else {
        int rc =
            token_verify((const char *)j->token.ptr, j->token.len, &r->keys,
                         (const char *)j->room_id.ptr, j->room_id.len, wall_seconds(),
                         r->cfg.token_skew_s ? r->cfg.token_skew_s : TOKEN_DEFAULT_SKEW_S, &cl);
        if (rc != 0) {
            WSTAT_INC(ss->rw, rejects_bad_token);
            /* The token itself is never logged. */
            log_debug("event=join_rejected reason=\"%s\"", roost_strerror(rc));
            session_reject(ss, proto_errcode_from_token_err(rc), roost_strerror(rc));
            return;
        }
        if (!(cl.perms & TOKEN_PERM_JOIN)) {
            WSTAT_INC(ss->rw, rejects_not_permitted);
            session_reject(ss, PROTO_ERR_NOT_PERMITTED, "token does not grant joining");
            return;
        }
        perms = ((cl.perms & TOKEN_PERM_PUBLISH) ? ROOM_PERM_PUBLISH : 0) |
                ((cl.perms & TOKEN_PERM_SUBSCRIBE) ? ROOM_PERM_SUBSCRIBE : 0);
        ident = (const uint8_t *)cl.identity;
        ident_len = cl.identity_len;
    }
    int rc = room_join(ss->m, j->room_id.ptr, j->room_id.len, ident, ident_len, j->display_name.ptr,
                       j->display_name.len, perms);
    if (rc != 0) {
        session_reject(ss, PROTO_ERR_INTERNAL, roost_strerror(rc));
        return;
    }
    ss->state = SESSION_JOINING;
}

static void conn_on_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct session *ss = quic_conn_user(c);
    if (ss == NULL || ss->c == NULL)
        return;
    struct msg *m = malloc(sizeof(*m)); /* ~5 KiB: control path only */
    if (m == NULL) {
        session_close(ss, PROTO_ERR_INTERNAL, "out of memory");
        return;
    }
    int rc = msg_decode(body, len, m);
    if (rc == ROOST_EUNKNOWN)
        goto out; /* unknown types are ignored (PROTOCOL.md §7) */
    if (rc != 0) {
        session_violation(ss, "malformed control message");
        goto out;
    }
    if (!(msg_direction(m->type) & MSG_DIR_C2R)) {
        session_violation(ss, "message in the wrong direction");
        goto out;
    }
    switch (m->type) {
    case MSG_HELLO:
        if (ss->state != SESSION_OPEN)
            session_violation(ss, "second HELLO");
        else
            on_hello(ss, &m->u.hello);
        break;
    case MSG_JOIN:
        if (ss->state == SESSION_OPEN)
            session_violation(ss, "JOIN before HELLO");
        else if (ss->state == SESSION_JOINING || ss->state == SESSION_JOINED)
            session_error(ss, PROTO_ERR_ALREADY_JOINED, MSG_JOIN, "already joined or joining");
        else if (ss->state == SESSION_WELCOMED)
            on_join(ss, &m->u.join);
        break;
    case MSG_LEAVE:
        if (ss->state == SESSION_OPEN) {
            session_violation(ss, "LEAVE before HELLO");
        } else if (ss->state != SESSION_JOINED) {
            session_error(ss, PROTO_ERR_NOT_JOINED, MSG_LEAVE, "not joined");
        } else {
            room_leave(ss->m);
            ss->state = SESSION_LEAVING;
            session_close(ss, PROTO_ERR_NO_ERROR, "left");
        }
        break;
    case MSG_KEYFRAME_REQUEST:
        if (ss->state == SESSION_OPEN)
            session_violation(ss, "KEYFRAME_REQUEST before HELLO");
        else if (ss->state != SESSION_JOINED)
            session_error(ss, PROTO_ERR_NOT_JOINED, MSG_KEYFRAME_REQUEST, "not joined");
        /* Relaying to the sender arrives with the room-state work (keyframe
         * cache and requests); until then a joined member's request is
         * accepted and not forwarded. */
        break;
    case MSG_ERROR:
        if (ss->state == SESSION_OPEN)
            session_violation(ss, "ERROR before HELLO");
        else
            log_debug("event=client_error code=%u", m->u.error.code);
        break;
    default:
        session_violation(ss, "unexpected message");
        break;
    }
out:
    free(m);
}

static void conn_on_datagram(struct quic_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct session *ss = quic_conn_user(c);
    if (ss == NULL || ss->state != SESSION_JOINED) {
        if (ss != NULL)
            WSTAT_INC(ss->rw, dgram_not_joined);
        return;
    }
    room_publish(ss->m, data, len); /* drops are counted by the room layer */
}

static void session_deadline(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    (void)now;
    struct session *ss = arg;
    if (ss->state == SESSION_OPEN || ss->state == SESSION_WELCOMED)
        session_close(ss, PROTO_ERR_IDLE_TIMEOUT, "no HELLO or JOIN in time");
}

static int conn_on_open(struct quic_conn *c, void *arg)
{
    struct relay_worker *rw = arg;
    struct session *ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return PROTO_ERR_SERVER_FULL;
    ss->rw = rw;
    ss->c = c;
    if (room_member_new(rw->rs, ss, &ss->m) != 0) {
        free(ss);
        return PROTO_ERR_SERVER_FULL;
    }
    struct relay *r = rw->r;
    uint64_t hs =
        r->cfg.handshake_timeout_ns ? r->cfg.handshake_timeout_ns : RELAY_DEFAULT_HANDSHAKE_NS;
    timer_init(&ss->deadline, session_deadline, ss);
    timer_arm(worker_timers(rw->w), &ss->deadline, worker_now(rw->w) + hs);
    quic_conn_set_user(c, ss);
    WSTAT_INC(rw, sessions_opened);
    return 0;
}

/* The one leave path: every end of a connection comes here. */
static void conn_on_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)app_error;
    struct relay_worker *rw = arg;
    struct session *ss = quic_conn_user(c);
    if (ss == NULL)
        return;
    quic_conn_set_user(c, NULL);
    ss->c = NULL;
    timer_cancel(worker_timers(rw->w), &ss->deadline);
    ss->grave_next = rw->grave;
    rw->grave = ss;
}

static void relay_bury(struct relay_worker *rw)
{
    while (rw->grave != NULL) {
        struct session *ss = rw->grave;
        rw->grave = ss->grave_next;
        room_member_del(ss->m); /* sends LEAVE to the owner when in a room */
        free(ss);
        WSTAT_INC(rw, sessions_closed);
    }
}

static const struct quic_app_ops relay_quic_ops = {
    .on_open = conn_on_open,
    .on_control = conn_on_control,
    .on_datagram = conn_on_datagram,
    .on_close = conn_on_close,
};

/* -------------------------------------------------------------- workers */

static int w_start(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    rw->r = r;
    rw->w = w;
    int rc = room_shard_new(&rw->rs, r->rsh, w, &relay_room_ops, rw);
    if (rc != 0)
        return rc;
    rc = quic_server_new(&rw->qs, w, r->qsh, &relay_quic_ops, rw);
    if (rc != 0) {
        room_shard_del(rw->rs);
        rw->rs = NULL;
        return rc;
    }
    return 0;
}

static void w_stop(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    /* Closes every connection: on_close buries the sessions. */
    quic_server_del(rw->qs);
    rw->qs = NULL;
    relay_bury(rw);
    room_shard_del(rw->rs);
    rw->rs = NULL;
}

static void w_msg(struct worker *w, const struct worker_msg *msg, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    if (room_shard_on_msg(rw->rs, msg))
        return;
    if (quic_server_on_msg(rw->qs, msg))
        return;
    log_warn("event=unknown_ring_msg type=0x%x", msg->type);
}

static void w_turn_end(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    relay_bury(rw);
    room_shard_flush(rw->rs);
    quic_server_turn_end(rw->qs);
}

static void w_discard(struct worker *w, const struct worker_msg *msg, void *arg)
{
    (void)w;
    (void)arg;
    if (!room_msg_discard(msg))
        quic_server_discard(msg);
}

static const struct worker_ops relay_worker_ops = {
    .start = w_start,
    .stop = w_stop,
    .on_msg = w_msg,
    .on_turn_end = w_turn_end,
    .on_discard = w_discard,
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
    int rc;
    if (!cfg->insecure_no_auth) {
        char err[256];
        rc = keyring_load(cfg->token_key_file, &r->keys, err, sizeof(err));
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
    };
    rc = quic_shared_new(&r->qsh, &qc);
    if (rc != 0) {
        log_error("event=quic_setup_failed err=\"%s\"", roost_strerror(rc));
        goto fail;
    }
    struct room_limits lim = {.max_rooms = cfg->max_rooms, .max_members = cfg->max_members};
    rc = room_shared_new(&r->rsh, r->n_workers, &lim);
    if (rc != 0)
        goto fail;
    struct worker_config wc = {
        .n_workers = r->n_workers,
        .cpus = cfg->cpus,
        .n_cpus = cfg->n_cpus,
        .no_pin = cfg->no_pin,
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
    int rc = worker_pool_start(r->pool);
    if (rc == 0)
        r->started = true;
    return rc;
}

uint16_t relay_port(const struct relay *r)
{
    return quic_shared_port(r->qsh);
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
    if (r->pool != NULL)
        worker_pool_stop(r->pool);
}

void relay_del(struct relay *r)
{
    if (r == NULL)
        return;
    worker_pool_del(r->pool); /* stops and joins */
    /* Snapshots and rooms retired with call_rcu must be freed before the
     * room tables go. */
    rcu_register_thread();
    rcu_barrier();
    rcu_unregister_thread();
    room_shared_del(r->rsh);
    quic_shared_del(r->qsh);
    token_keyring_wipe(&r->keys);
    free(r->rw);
    free(r);
}

static uint64_t rd(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void relay_stats(struct relay *r, struct relay_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->rooms = room_shared_rooms(r->rsh);
    out->participants = room_shared_participants(r->rsh);
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct relay_worker *rw = &r->rw[i];
        out->sessions_opened += rd(&rw->st.sessions_opened);
        out->sessions_closed += rd(&rw->st.sessions_closed);
        out->joins_ok += rd(&rw->st.joins_ok);
        out->join_rejects += rd(&rw->st.join_rejects);
        out->rejects_bad_token += rd(&rw->st.rejects_bad_token);
        out->rejects_not_permitted += rd(&rw->st.rejects_not_permitted);
        out->protocol_violations += rd(&rw->st.protocol_violations);
        out->dgram_not_joined += rd(&rw->st.dgram_not_joined);
        if (rw->rs != NULL) {
            struct room_stats rs;
            room_shard_stats(rw->rs, &rs);
            out->rejects_room_full += rs.rejects_room_full;
            out->rejects_server_full += rs.rejects_server_full;
            out->replaced += rs.replaced;
            out->media_in += rs.media_in;
            out->media_out += rs.media_out;
            out->media_dropped += rs.media_dropped_no_publish + rs.media_dropped_malformed +
                                  rs.media_dropped_nomem + rs.media_out_failed;
            out->fanout_sent += rs.fanout_sent;
            out->fanout_ring_drops += rs.fanout_ring_drops;
            out->snapshots += rs.snapshots;
        }
    }
    out->conns_open = out->sessions_opened - out->sessions_closed;
    struct quic_stats qs;
    quic_shared_stats_total(r->qsh, &qs);
    out->quic_fwd_in = qs.fwd_in;
}
