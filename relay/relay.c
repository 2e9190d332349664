#include "relay/relay.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "core/log.h"
#include "core/rcuptr.h"
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
#define RELAY_DEFAULT_DRAIN_MS 30000u
/* Ring messages of this module (posted by main/admin): 0x0300-0x03ff. */
#define RELAY_MSG_DRAIN 0x0300   /* send GOAWAY to every session */
#define RELAY_MSG_MEMBERS 0x0301 /* u.ptr[0]: struct members_req * */

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
    struct session *prev, *next; /* rw->live: open sessions (GOAWAY, /rooms) */
    uint64_t opened_ns, join_ns, joined_ns;
    bool was_joined;
    uint8_t room_len;
    char room[ROOM_ID_MAX + 1]; /* of the last JOIN, for /rooms and logs */
    char display[DISPLAY_NAME_MAX + 1];
};

struct relay_worker {
    struct relay *r;
    struct worker *w;
    struct quic_server *qs;
    struct room_shard *rs;
    struct session *grave; /* closed sessions to free at turn end */
    struct session *live;  /* open sessions */
    struct timer quality;  /* QUALITY reports (room_shard_quality) */
    struct relay_wcounters st;
    struct relay_hist h_join, h_fanout; /* written only by this worker */
} __attribute__((aligned(64)));

struct relay {
    struct relay_config cfg;
    struct quic_shared *qsh;
    struct room_shared *rsh;
    struct worker_pool *pool;
    /* RCU-published (QSBR): workers read it in on_join; reload swaps it,
     * waits a grace period and frees the old one. */
    struct token_keyring *keys;
    _Atomic bool draining;
    _Atomic unsigned live_max_conns, live_max_half_open;
    time_t cert_loaded_wall;
    unsigned n_workers;
    bool started;
    struct relay_worker *rw; /* n_workers */
};

#define WSTAT_INC(rw, f) __atomic_store_n(&(rw)->st.f, (rw)->st.f + 1, __ATOMIC_RELAXED)

void relay_hist_add(struct relay_hist *h, uint64_t ns)
{
    /* Bounds are powers of two (4^i KiB-ns): the bucket is a bit count. */
    unsigned i = 0;
    if (ns > 1024) {
        unsigned bits = 64u - (unsigned)__builtin_clzll(ns - 1);
        i = (bits - 10 + 1) / 2;
        if (i > RELAY_HIST_N - 1)
            i = RELAY_HIST_N - 1;
    }
    __atomic_store_n(&h->bucket[i], h->bucket[i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sum_ns, h->sum_ns + ns, __ATOMIC_RELAXED);
}

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
    /* b->stamp: buf_stamp_now() at ingress, 0 when unstamped. The frame is
     * encrypted and sent at the end of this loop turn. */
    uint32_t t0 = b->stamp;
    if (t0 != 0) {
        uint32_t d = buf_stamp_now() - t0;
        relay_hist_add(&ss->rw->h_fanout, d < (1u << 31) ? d : 0);
    }
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
        ss->was_joined = true;
        timer_cancel(worker_timers(ss->rw->w), &ss->deadline);
        WSTAT_INC(ss->rw, joins_ok);
        ss->joined_ns = worker_now(ss->rw->w);
        relay_hist_add(&ss->rw->h_join, ss->joined_ns - ss->join_ns);
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

static int room_cb_link_stats(void *ep, struct room_link *out, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    if (ss->c == NULL)
        return ROOST_ECLOSED;
    struct quic_conn_stats cs;
    quic_conn_stats(ss->c, &cs);
    *out = (struct room_link){
        .srtt_ns = cs.srtt_ns,
        .min_rtt_ns = cs.min_rtt_ns,
        .dgram_out = cs.dgram_out,
        .dgram_acked = cs.dgram_acked,
        .dgram_lost = cs.dgram_lost,
        .dgram_dropped = cs.dgram_drop_cwnd + cs.dgram_drop_queue + cs.dgram_drop_too_large,
        .bytes_in = cs.bytes_in,
        .bytes_out = cs.bytes_out,
    };
    return 0;
}

/* Every quality_interval: link stats and QUALITY summaries (lib/room). */
static void relay_quality_tick(struct timer *t, uint64_t now, void *arg)
{
    struct relay_worker *rw = arg;
    room_shard_quality(rw->rs, now);
    timer_arm(worker_timers(rw->w), t, now + room_shared_quality_interval(rw->r->rsh));
}

static const struct room_ops relay_room_ops = {
    .media = room_cb_media,
    .control = room_cb_control,
    .joined = room_cb_joined,
    .replaced = room_cb_replaced,
    .link_stats = room_cb_link_stats,
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

    ss->join_ns = worker_now(ss->rw->w);
    ss->room_len = (uint8_t)(j->room_id.len <= ROOM_ID_MAX ? j->room_id.len : ROOM_ID_MAX);
    memcpy(ss->room, j->room_id.ptr, ss->room_len);
    ss->room[ss->room_len] = '\0';
    size_t dl = j->display_name.len <= DISPLAY_NAME_MAX ? j->display_name.len : DISPLAY_NAME_MAX;
    if (dl > 0) /* an empty name may have a NULL pointer */
        memcpy(ss->display, j->display_name.ptr, dl);
    ss->display[dl] = '\0';
    if (r->cfg.insecure_no_auth) {
        perms = ROOM_PERM_PUBLISH | ROOM_PERM_SUBSCRIBE;
    } else {
        /* Pairs with rcu_xchg_pointer in relay_reload; used only in this
         * call, before the worker's next quiescent state. */
        const struct token_keyring *keys = rcu_dereference(r->keys);
        int rc =
            token_verify((const char *)j->token.ptr, j->token.len, keys,
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
        else if (room_keyframe_request(ss->m, m->u.keyframe_request.participant_id,
                                       m->u.keyframe_request.stream_id) != 0)
            session_error(ss, PROTO_ERR_NOT_JOINED, MSG_KEYFRAME_REQUEST,
                          "no such participant in the room");
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
    if (atomic_load_explicit(&rw->r->draining, memory_order_relaxed)) {
        WSTAT_INC(rw, rejects_draining);
        return PROTO_ERR_GOING_AWAY; /* handshake finished after the drain began */
    }
    struct session *ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return PROTO_ERR_SERVER_FULL;
    ss->rw = rw;
    ss->c = c;
    ss->opened_ns = worker_now(rw->w);
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
    ss->next = rw->live;
    if (rw->live != NULL)
        rw->live->prev = ss;
    rw->live = ss;
    WSTAT_INC(rw, sessions_opened);
    return 0;
}

/* The one leave path: every end of a connection comes here. */
static void conn_on_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    struct relay_worker *rw = arg;
    struct session *ss = quic_conn_user(c);
    if (ss == NULL)
        return;
    /* One summary line per connection; never the token. */
    struct quic_conn_stats cs;
    quic_conn_stats(c, &cs);
    log_info(
        "event=conn_closed duration_ms=%llu bytes_in=%llu bytes_out=%llu dgram_in=%llu "
        "dgram_out=%llu dropped=%llu lost=%llu rtt_us=%llu joined=%d close_code=0x%llx",
        (unsigned long long)((worker_now(rw->w) - ss->opened_ns) / 1000000u),
        (unsigned long long)cs.bytes_in, (unsigned long long)cs.bytes_out,
        (unsigned long long)cs.dgram_in, (unsigned long long)cs.dgram_out,
        (unsigned long long)(cs.dgram_drop_cwnd + cs.dgram_drop_too_large + cs.dgram_drop_queue),
        (unsigned long long)cs.dgram_lost, (unsigned long long)(cs.srtt_ns / 1000u), ss->was_joined,
        (unsigned long long)app_error);
    if (ss->was_joined)
        WSTAT_INC(rw, leaves);
    quic_conn_set_user(c, NULL);
    ss->c = NULL;
    timer_cancel(worker_timers(rw->w), &ss->deadline);
    if (ss->prev != NULL)
        ss->prev->next = ss->next;
    else
        rw->live = ss->next;
    if (ss->next != NULL)
        ss->next->prev = ss->prev;
    ss->prev = ss->next = NULL;
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
    timer_init(&rw->quality, relay_quality_tick, rw);
    timer_arm(worker_timers(w), &rw->quality, worker_now(w) + room_shared_quality_interval(r->rsh));
    return 0;
}

static void w_stop(struct worker *w, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    timer_cancel(worker_timers(w), &rw->quality);
    /* Closes every connection: on_close buries the sessions. */
    quic_server_del(rw->qs);
    rw->qs = NULL;
    relay_bury(rw);
    room_shard_del(rw->rs);
    rw->rs = NULL;
}

/* A /rooms request: each worker appends its members, the last one to
 * answer wakes the waiting admin thread (control path: a mutex is fine). */
struct members_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending;
    struct relay_member_info *v;
    size_t n, cap;
    bool nomem;
};

static void members_done(struct members_req *q)
{
    pthread_mutex_lock(&q->mu);
    if (--q->pending == 0)
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void members_collect(struct relay_worker *rw, struct members_req *q)
{
    uint64_t now = worker_now(rw->w);
    for (struct session *ss = rw->live; ss != NULL; ss = ss->next) {
        if (ss->c == NULL || (ss->state != SESSION_JOINED && ss->state != SESSION_JOINING))
            continue;
        struct relay_member_info mi = {.pid = room_member_pid(ss->m),
                                       .worker = worker_id(rw->w),
                                       .joined = ss->state == SESSION_JOINED};
        memcpy(mi.room, ss->room, ss->room_len + 1u);
        mi.room_len = ss->room_len;
        memcpy(mi.display, ss->display, sizeof(mi.display));
        mi.owner = room_shared_owner(rw->r->rsh, (const uint8_t *)ss->room, ss->room_len);
        mi.joined_for_ms = mi.joined ? (now - ss->joined_ns) / 1000000u : 0;
        quic_conn_stats(ss->c, &mi.link);
        pthread_mutex_lock(&q->mu);
        if (q->n == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 64;
            struct relay_member_info *nv = realloc(q->v, cap * sizeof(*nv));
            if (nv == NULL) {
                q->nomem = true;
                pthread_mutex_unlock(&q->mu);
                break;
            }
            q->v = nv;
            q->cap = cap;
        }
        q->v[q->n++] = mi;
        pthread_mutex_unlock(&q->mu);
    }
}

static void relay_goaway_all(struct relay_worker *rw)
{
    struct relay *r = rw->r;
    struct msg m = {.type = MSG_GOAWAY};
    m.u.goaway.drain_ms = r->cfg.drain_ms ? r->cfg.drain_ms : RELAY_DEFAULT_DRAIN_MS;
    for (struct session *ss = rw->live; ss != NULL; ss = ss->next) {
        if (ss->c == NULL || ss->state == SESSION_OPEN)
            continue; /* GOAWAY is sent after WELCOME (PROTOCOL.md) */
        session_send(ss, &m);
        WSTAT_INC(rw, goaway_sent);
    }
    /* Sessions without HELLO yet will not get to join: close them now. */
    for (struct session *ss = rw->live, *nx; ss != NULL; ss = nx) {
        nx = ss->next;
        if (ss->c != NULL && ss->state == SESSION_OPEN)
            session_close(ss, PROTO_ERR_GOING_AWAY, "relay is draining");
    }
}

static bool relay_on_msg(struct relay_worker *rw, const struct worker_msg *msg)
{
    switch (msg->type) {
    case RELAY_MSG_DRAIN:
        relay_goaway_all(rw);
        return true;
    case RELAY_MSG_MEMBERS:
        members_collect(rw, msg->u.ptr[0]);
        members_done(msg->u.ptr[0]);
        return true;
    default:
        return false;
    }
}

static void w_msg(struct worker *w, const struct worker_msg *msg, void *arg)
{
    struct relay *r = arg;
    struct relay_worker *rw = &r->rw[worker_id(w)];
    if (relay_on_msg(rw, msg))
        return;
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
    if (msg->type == RELAY_MSG_MEMBERS) {
        members_done(msg->u.ptr[0]); /* the waiter must not hang at shutdown */
        return;
    }
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
    r->cert_loaded_wall = time(NULL);
    atomic_init(&r->draining, false);
    atomic_init(&r->live_max_conns, cfg->max_conns_per_worker ? cfg->max_conns_per_worker : 100000);
    atomic_init(&r->live_max_half_open, cfg->max_half_open ? cfg->max_half_open : 256);
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
    };
    rc = quic_shared_new(&r->qsh, &qc);
    if (rc != 0) {
        log_error("event=quic_setup_failed err=\"%s\"", roost_strerror(rc));
        goto fail;
    }
    struct room_limits lim = {.max_rooms = cfg->max_rooms,
                              .max_members = cfg->max_members,
                              .keyframe_cap = cfg->keyframe_cap,
                              .prefill_ms = cfg->prefill_ms,
                              .kfreq_window_ns = cfg->kfreq_window_ns,
                              .quality_interval_ns = cfg->quality_interval_ns};
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
    if (r->keys != NULL) {
        token_keyring_wipe(r->keys);
        free(r->keys);
    }
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

void relay_worker_stats(struct relay *r, unsigned worker, struct relay_worker_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->cpu = -1;
    if (worker >= r->n_workers)
        return;
    struct relay_worker *rw = &r->rw[worker];
    const uint64_t *src = (const uint64_t *)&rw->st;
    uint64_t *dst = (uint64_t *)&out->relay;
    for (size_t i = 0; i < sizeof(out->relay) / sizeof(uint64_t); i++)
        dst[i] = rd(&src[i]);
    const struct relay_hist *hs[2] = {&rw->h_join, &rw->h_fanout};
    struct relay_hist *hd[2] = {&out->join_latency, &out->fanout_latency};
    for (int k = 0; k < 2; k++) {
        for (unsigned i = 0; i < RELAY_HIST_N; i++)
            hd[k]->bucket[i] = rd(&hs[k]->bucket[i]);
        hd[k]->count = rd(&hs[k]->count);
        hd[k]->sum_ns = rd(&hs[k]->sum_ns);
    }
    quic_shared_stats(r->qsh, worker, &out->quic);
    /* The shard pointer is set once by its worker at start; relaxed read. */
    struct room_shard *shard = __atomic_load_n(&rw->rs, __ATOMIC_ACQUIRE);
    if (shard != NULL)
        room_shard_stats(shard, &out->room);
    if (r->pool != NULL) {
        worker_pool_stats(r->pool, worker, &out->worker);
        struct worker *w = worker_pool_get(r->pool, worker);
        if (w != NULL && r->started)
            out->cpu = worker_cpu(w);
    }
}

void relay_limits(struct relay *r, struct relay_limits *out)
{
    out->max_rooms = r->cfg.max_rooms ? r->cfg.max_rooms : 10000;
    out->max_members = r->cfg.max_members ? r->cfg.max_members : 500;
    out->max_conns_per_worker = atomic_load_explicit(&r->live_max_conns, memory_order_relaxed);
    out->max_half_open = atomic_load_explicit(&r->live_max_half_open, memory_order_relaxed);
    out->handshake_rate = r->cfg.handshake_rate;
}

int relay_drain(struct relay *r)
{
    atomic_store_explicit(&r->draining, true, memory_order_relaxed);
    quic_shared_set_draining(r->qsh, true);
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
    unsigned mc = cfg->max_conns_per_worker ? cfg->max_conns_per_worker : 100000;
    unsigned start_mc = r->cfg.max_conns_per_worker ? r->cfg.max_conns_per_worker : 100000;
    if (mc > start_mc) {
        log_warn("event=reload_needs_restart key=max_conns msg=\"can only be lowered at run "
                 "time\" running=%u wanted=%u",
                 start_mc, mc);
        mc = start_mc;
    }
    unsigned ho = cfg->max_half_open ? cfg->max_half_open : 256;
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
    /* What is fixed at start: say so rather than silently ignore it. */
    struct {
        const char *key;
        bool changed;
    } fixed[] = {
        {"listen", str_differs(cfg->addr, r->cfg.addr)},
        {"port", cfg->port != r->cfg.port},
        {"workers", cfg->n_workers != r->cfg.n_workers},
        {"state_dir", str_differs(cfg->state_dir, r->cfg.state_dir)},
        {"insecure_no_auth", cfg->insecure_no_auth != r->cfg.insecure_no_auth},
        {"max_rooms", cfg->max_rooms != r->cfg.max_rooms},
        {"max_members", cfg->max_members != r->cfg.max_members},
        {"idle_timeout", cfg->idle_timeout_ns != r->cfg.idle_timeout_ns},
        {"handshake_timeout", cfg->handshake_timeout_ns != r->cfg.handshake_timeout_ns},
        {"handshake_rate", cfg->handshake_rate != r->cfg.handshake_rate},
        {"force_retry", cfg->force_retry != r->cfg.force_retry},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i].changed)
            log_warn("event=reload_needs_restart key=%s", fixed[i].key);
    return ret;
}

int relay_members(struct relay *r, struct relay_member_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    struct members_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ROOST_ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->pending = 1; /* ours, dropped after posting */
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct worker_msg m = {.type = RELAY_MSG_MEMBERS};
        m.u.ptr[0] = q;
        pthread_mutex_lock(&q->mu);
        q->pending++;
        pthread_mutex_unlock(&q->mu);
        if (worker_pool_post(r->pool, i, &m) != 0)
            members_done(q); /* worker gone (or no memory): nothing to wait for */
    }
    pthread_mutex_lock(&q->mu);
    q->pending--;
    while (q->pending > 0)
        pthread_cond_wait(&q->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    int rc = q->nomem ? ROOST_ENOMEM : 0;
    if (rc == 0) {
        *out = q->v;
        *n = q->n;
    } else {
        free(q->v);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
    return rc;
}

unsigned relay_room_owner(struct relay *r, const char *room, size_t len)
{
    return room_shared_owner(r->rsh, (const uint8_t *)room, len);
}
