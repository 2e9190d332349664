/* One client connection's protocol state: the control state machine of
 * docs/PROTOCOL.md (HELLO/WELCOME, JOIN with the token check, LEAVE,
 * KEYFRAME_REQUEST, ERROR, violations and deadlines), the callbacks lib/room
 * (struct room_ops) calls on a worker, the session's life from open to
 * burial and GOAWAY to sessions (the /rooms member listing: members.c). The session
 * does not know its transport: it talks to its connection only through
 * struct endpoint_ops (relay/endpoint.c: QUIC or WebSocket). Everything here runs on the session's
 * worker. */
#include "relay/relay_int.h"
#include "relay/cluster.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "proto/token.h"
#include "room/room.h"

#define RELAY_SERVER_NAME "roost-relay/0.1"
#define RELAY_MAX_REJECTS 3 /* JOIN_REJECTED answers before the connection is closed */
/* At most one ERROR NOT_PERMITTED per this interval for media from a member
 * without PUBLISH (PROTOCOL.md §5). */
#define RELAY_NOPERM_ERROR_INTERVAL_NS (1000ull * 1000000ull)

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
        ss->eo->send_control(ss->c, body, (size_t)n); /* EFULL closes: TOO_SLOW */
}

static void session_close(struct session *ss, uint32_t code, const char *reason)
{
    if (ss->c != NULL)
        ss->eo->close(ss->c, code, reason); /* on_close runs now; ss stays until turn end */
}

/* The close after the last allowed JOIN_REJECTED. Closing with an error
 * code drops control bytes still queued or unacknowledged (QUIC and
 * WebSocket alike), so the client would see the close code without the
 * rejection. Neither transport has "close once the control is delivered",
 * so the session lingers: it polls the endpoint's pending control bytes
 * (endpoint_path.control_pending: unacknowledged on QUIC, not yet written
 * to the socket on WebSocket) every CLOSE_POLL and closes once they are 0,
 * or after CLOSE_LINGER_MAX whatever the client did. Meanwhile the session
 * is LEAVING: JOINs are ignored. */
#define RELAY_CLOSE_POLL_NS (2ull * 1000000ull)
#define RELAY_CLOSE_LINGER_MAX_NS (1000ull * 1000000ull)

static void session_linger(struct timer *t, uint64_t now, void *arg)
{
    struct session *ss = arg;
    if (ss->c == NULL)
        return;
    struct endpoint_path ph;
    ss->eo->path(ss->c, &ph);
    if (ph.control_pending == 0 || now >= ss->linger_until) {
        session_close(ss, ss->linger_code, ss->linger_reason);
        return;
    }
    if (timer_arm(worker_timers(ss->rw->w), t, now + RELAY_CLOSE_POLL_NS) != 0)
        session_close(ss, ss->linger_code, ss->linger_reason); /* no memory: close now */
}

/* reason: a string with static storage (it is used later). */
static void session_close_after_control(struct session *ss, uint32_t code, const char *reason)
{
    if (ss->c == NULL)
        return;
    ss->state = SESSION_LEAVING;
    ss->linger_code = code;
    ss->linger_reason = reason;
    uint64_t now = worker_now(ss->rw->w);
    ss->linger_until = now + RELAY_CLOSE_LINGER_MAX_NS;
    timer_cancel(worker_timers(ss->rw->w), &ss->deadline);
    /* Not before the next turn: the bytes just queued are written at the
     * end of this one. */
    if (timer_arm(worker_timers(ss->rw->w), &ss->linger, now + RELAY_CLOSE_POLL_NS) != 0)
        session_close(ss, code, reason); /* no memory: close now */
}

/* A request of this session could not be queued to another worker: the
 * spill queue there is at its bound (lib/core/worker.h). The session gives
 * way rather than grow the queue: TOO_SLOW, as for its own control queue
 * (PROTOCOL.md §6). Counted in roost_ring_spill_full_total. */
static void session_too_slow(struct session *ss)
{
    log_debug("event=spill_full");
    session_close(ss, PROTO_ERR_TOO_SLOW, "relay worker queue full");
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
        session_close_after_control(ss, code, reason);
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
        relay_hist_add_stamp(ss->rw->h_fanout, buf_stamp_now() - t0);
    }
    return ss->eo->queue_media(ss->c, b, off, len);
}

static void room_cb_control(void *ep, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    if (ss->c != NULL)
        ss->eo->send_control(ss->c, body, len);
}

static void room_cb_joined(void *ep, uint32_t code, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    /* ss->c NULL: the connection closed while the JOIN was in flight (a
     * deadline or idle timer, or a message handler, closed it earlier in
     * this turn; the session is buried at its end). Its on_close counted no
     * leave, so this counts no join: roost_joins_total == roost_leaves_total
     * once the relay is empty (torture/churn checks it). */
    if (ss->state != SESSION_JOINING || ss->c == NULL)
        return;
    if (code == ROOM_JOIN_MOVE) {
        /* A small room owned elsewhere: the connection moves to the owner
         * and joins from there (session_adopt); still JOINING meanwhile. */
        if (ss->eo->handoff != NULL && ss->join_body != NULL &&
            ss->eo->handoff(ss->c, room_member_owner(ss->m)) == 0) {
            ss->join_moves++;
            return;
        }
        ss->state = SESSION_WELCOMED;
        session_reject(ss, PROTO_ERR_INTERNAL, "hand-off to the room's worker failed");
        return;
    }
    /* The JOIN is answered: from here on the room says whether the session
     * is in it. on_ack in lib/room marked the member JOINED (or idle, on a
     * reject) before calling ops->joined. */
    ss->state = SESSION_WELCOMED;
    ss->join_moves = 0;
    if (code == 0) {
        assert(room_member_joined(ss->m));
        ss->was_joined = true;
        /* A member that came here by a hand-off can move again, with its
         * room (room_cb_move). */
        room_member_set_movable(ss->m, ss->eo->handoff != NULL);
        timer_cancel(worker_timers(ss->rw->w), &ss->deadline);
        WSTAT_INC(ss->rw, joins_ok);
        ss->joined_ns = worker_now(ss->rw->w);
        relay_hist_add(ss->rw->h_join, ss->joined_ns - ss->join_ns);
        return;
    }
    /* JOIN_REJECTED already went out through room_cb_control. */
    WSTAT_INC(ss->rw, join_rejects);
    if (++ss->rejects >= RELAY_MAX_REJECTS)
        session_close_after_control(ss, code, "too many rejected joins");
}

/* Live room migration (lib/room/move.c): the member's room moved to
 * worker `to`; a joined QUIC connection follows it at this turn's end and
 * stays joined (session_detach / session_adopt, with ss->rebind). */
static void room_cb_move(void *ep, unsigned to, void *arg)
{
    (void)arg;
    struct session *ss = ep;
    if (ss->c == NULL || ss->eo->handoff == NULL || ss->state != SESSION_WELCOMED || ss->rebind ||
        !room_member_joined(ss->m))
        return;
    if (ss->eo->handoff(ss->c, to) == 0)
        ss->rebind = true;
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
    struct endpoint_path ph;
    ss->eo->path(ss->c, &ph);
    *out = (struct room_link){
        .srtt_ns = ph.srtt_ns,
        .min_rtt_ns = ph.min_rtt_ns,
        .rttvar_ns = ph.rttvar_ns,
        .dgram_out = ph.media_out,
        .dgram_acked = ph.media_acked,
        .dgram_lost = ph.media_lost,
        .dgram_dropped = ph.media_dropped,
        .bytes_in = ph.bytes_in,
        .bytes_out = ph.bytes_out,
    };
    return 0;
}

/* The cluster directory's gate on the owner (relay/cluster.c; opens at
 * once without [cluster] redis). */
static uint32_t room_cb_gate(const uint8_t *room, size_t len, const char **reason,
                             uint32_t *retry_ms, void *arg)
{
    struct relay_worker *rw = arg;
    return cluster_gate(rw->r->cluster, rw, room, len, reason, retry_ms);
}

static void room_cb_room_closed(const uint8_t *room, size_t len, void *arg)
{
    struct relay_worker *rw = arg;
    cluster_room_closed(rw->r->cluster, rw, room, len);
}

const struct room_ops session_room_ops = {
    .media = room_cb_media,
    .control = room_cb_control,
    .move = room_cb_move,
    .joined = room_cb_joined,
    .replaced = room_cb_replaced,
    .link_stats = room_cb_link_stats,
    .gate = room_cb_gate,
    .room_closed = room_cb_room_closed,
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
    /* What the relay forwards; whether it fits a receiver's path is
     * PROTOCOL.md §8.3 (dropped for that receiver, counted in QUALITY). */
    m.u.welcome.max_datagram = ROOM_MAX_DATAGRAM;
    m.u.welcome.max_stream_id = 255;
    m.u.welcome.max_members = r->cfg.max_members ? r->cfg.max_members : ROOM_DEFAULT_MAX_MEMBERS;
    m.u.welcome.server_name.ptr = (const uint8_t *)RELAY_SERVER_NAME;
    m.u.welcome.server_name.len = strlen(RELAY_SERVER_NAME);
    ss->state = SESSION_WELCOMED;
    session_send(ss, &m);
}

_Atomic bool session_test_hold_joins;
_Atomic bool session_test_refuse_repeats;

static uint64_t session_hs_timeout(const struct relay *r)
{
    return r->cfg.handshake_timeout_ns ? r->cfg.handshake_timeout_ns : RELAY_DEFAULT_HANDSHAKE_NS;
}

static void on_join(struct session *ss, const struct msg_join *j)
{
    struct relay *r = ss->rw->r;
    struct token_claims cl;
    unsigned perms; /* PERM_* */
    const uint8_t *ident = NULL;
    size_t ident_len = 0;

    if (!ss->repeating) {
        /* The client's own JOIN starts afresh: an earlier JOIN on this
         * connection whose hand-offs ended without an answer (its repeat
         * refused by the token check, a failed hand-off, a reject after
         * the last hand-off) left its count spent and the member perhaps
         * not movable; this JOIN must still be able to follow its room. */
        ss->join_moves = 0;
        room_member_set_movable(ss->m, ss->eo->handoff != NULL);
    }
    ss->join_ns = worker_now(ss->rw->w);
    ss->room_len = (uint8_t)(j->room_id.len <= ROOM_ID_MAX ? j->room_id.len : ROOM_ID_MAX);
    memcpy(ss->room, j->room_id.ptr, ss->room_len);
    ss->room[ss->room_len] = '\0';
    size_t dl = j->display_name.len <= DISPLAY_NAME_MAX ? j->display_name.len : DISPLAY_NAME_MAX;
    if (dl > 0) /* an empty name may have a NULL pointer */
        memcpy(ss->display, j->display_name.ptr, dl);
    ss->display[dl] = '\0';
    if (r->cfg.insecure_no_auth) {
        perms = PERM_ALL;
    } else {
        /* Pairs with rcu_xchg_pointer in relay_reload; used only in this
         * call, before the worker's next quiescent state. */
        const struct token_keyring *keys = rcu_dereference(r->keys);
        int rc =
            token_verify((const char *)j->token.ptr, j->token.len, keys,
                         (const char *)j->room_id.ptr, j->room_id.len, wall_seconds(),
                         r->cfg.token_skew_s ? r->cfg.token_skew_s : TOKEN_DEFAULT_SKEW_S, &cl);
        if (rc == 0 && ss->repeating &&
            atomic_load_explicit(&session_test_refuse_repeats, memory_order_relaxed))
            rc = ROOST_EEXPIRED; /* test hook */
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
        perms = token_room_perms(cl.perms); /* the one translation of token bits */
        ident = (const uint8_t *)cl.identity;
        ident_len = cl.identity_len;
    }
    /* JOINING before room_join: when this worker owns the room, a reject
     * (room or server full) is answered within room_join, and room_cb_joined
     * must then find the JOIN in flight to count it and return to WELCOMED. */
    ss->state = SESSION_JOINING;
    /* The answer is due within the handshake timeout too: an owner that
     * never answers must not leave the session JOINING forever. */
    timer_arm(worker_timers(ss->rw->w), &ss->deadline, ss->join_ns + session_hs_timeout(r));
    if (atomic_load_explicit(&session_test_hold_joins, memory_order_relaxed))
        return; /* test hook: the JOIN is "lost" on its way to the owner */
    int rc = room_join(ss->m, j->room_id.ptr, j->room_id.len, ident, ident_len, j->display_name.ptr,
                       j->display_name.len, perms);
    if (rc == ROOST_EFULL) {
        session_too_slow(ss);
        return;
    }
    if (rc != 0) {
        ss->state = SESSION_WELCOMED;
        session_reject(ss, PROTO_ERR_INTERNAL, roost_strerror(rc));
    }
}

static void on_keyframe_request(struct session *ss, const struct msg_keyframe_request *k)
{
    int rc = room_keyframe_request(ss->m, k->participant_id, k->stream_id);
    if (rc == ROOST_EFULL)
        session_too_slow(ss);
    else if (rc == ROOST_EACCES)
        session_error(ss, PROTO_ERR_NOT_PERMITTED, MSG_KEYFRAME_REQUEST,
                      "keyframe requests need SUBSCRIBE");
    else if (rc != 0)
        session_error(ss, PROTO_ERR_NOT_JOINED, MSG_KEYFRAME_REQUEST,
                      "no such participant in the room");
}

void session_control(struct session *ss, const uint8_t *body, size_t len)
{
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
        if (ss->state == SESSION_WELCOMED && !room_member_joined(ss->m) &&
            ss->rw->r->cfg.affinity_max_members > 0) {
            /* Kept for a repeat on the room owner's worker. */
            uint8_t *copy = malloc(len);
            if (copy != NULL)
                memcpy(copy, body, len);
            free(ss->join_body);
            ss->join_body = copy;
            ss->join_len = copy != NULL ? len : 0;
        }
        if (ss->state == SESSION_OPEN)
            session_violation(ss, "JOIN before HELLO");
        else if (ss->state == SESSION_JOINING || room_member_joined(ss->m))
            session_error(ss, PROTO_ERR_ALREADY_JOINED, MSG_JOIN, "already joined or joining");
        else if (ss->state == SESSION_WELCOMED)
            on_join(ss, &m->u.join); /* LEAVING: ignored, the connection is closing */
        break;
    case MSG_LEAVE:
        if (ss->state == SESSION_OPEN) {
            session_violation(ss, "LEAVE before HELLO");
        } else if (!room_member_joined(ss->m)) {
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
        else if (!room_member_joined(ss->m))
            session_error(ss, PROTO_ERR_NOT_JOINED, MSG_KEYFRAME_REQUEST, "not joined");
        else
            on_keyframe_request(ss, &m->u.keyframe_request);
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

void session_media(struct session *ss, const uint8_t *data, size_t len)
{
    if (ss == NULL || !room_member_joined(ss->m)) {
        if (ss != NULL)
            WSTAT_INC(ss->rw, dgram_not_joined);
        return;
    }
    /* Drops are counted by the room layer. */
    if (room_publish(ss->m, data, len) == ROOST_EACCES) {
        /* No PUBLISH: tell the client, rate-limited (stored as now+1 so
         * that 0 means "never"). */
        uint64_t now = worker_now(ss->rw->w);
        if (ss->noperm_err_ns == 0 ||
            now + 1 - ss->noperm_err_ns >= RELAY_NOPERM_ERROR_INTERVAL_NS) {
            ss->noperm_err_ns = now + 1;
            session_error(ss, PROTO_ERR_NOT_PERMITTED, 0, "no publish permission");
        }
    }
}

static void session_deadline(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    (void)now;
    struct session *ss = arg;
    /* room_cb_joined cancels the deadline; the room test only says so. */
    if ((ss->state == SESSION_OPEN || ss->state == SESSION_WELCOMED) && !room_member_joined(ss->m))
        session_close(ss, PROTO_ERR_IDLE_TIMEOUT, "no HELLO or JOIN in time");
    else if (ss->state == SESSION_JOINING) /* armed again by on_join */
        session_close(ss, PROTO_ERR_INTERNAL, "no answer to JOIN in time");
}

int session_open(struct relay_worker *rw, const struct endpoint_ops *eo, void *conn,
                 struct session **out)
{
    if (atomic_load_explicit(&rw->r->draining, memory_order_relaxed)) {
        WSTAT_INC(rw, rejects_draining);
        return PROTO_ERR_GOING_AWAY; /* handshake finished after the drain began */
    }
    struct session *ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return PROTO_ERR_SERVER_FULL;
    ss->rw = rw;
    ss->eo = eo;
    ss->c = conn;
    ss->opened_ns = worker_now(rw->w);
    if (room_member_new(relay_worker_shard(rw), ss, &ss->m) != 0) {
        free(ss);
        return PROTO_ERR_SERVER_FULL;
    }
    room_member_set_movable(ss->m, eo->handoff != NULL);
    uint64_t hs = session_hs_timeout(rw->r);
    timer_init(&ss->deadline, session_deadline, ss);
    timer_init(&ss->linger, session_linger, ss);
    timer_arm(worker_timers(rw->w), &ss->deadline, worker_now(rw->w) + hs);
    *out = ss;
    ss->next = rw->live;
    if (rw->live != NULL)
        rw->live->prev = ss;
    rw->live = ss;
    WSTAT_INC(rw, sessions_opened);
    return 0;
}

static void session_unlink(struct session *ss)
{
    struct relay_worker *rw = ss->rw;
    if (ss->prev != NULL)
        ss->prev->next = ss->next;
    else
        rw->live = ss->next;
    if (ss->next != NULL)
        ss->next->prev = ss->prev;
    ss->prev = ss->next = NULL;
}

void session_detach(struct session *ss)
{
    if (ss == NULL)
        return;
    struct relay_worker *rw = ss->rw;
    timer_cancel(worker_timers(rw->w), &ss->deadline);
    timer_cancel(worker_timers(rw->w), &ss->linger);
    session_unlink(ss);
    if (ss->rebind) {
        /* Joined, moving with its room: it stays in the room (no LEAVE);
         * keep.valid is false if it left meanwhile. */
        room_member_detach(ss->m, &ss->keep);
        ss->moved_pid = ss->keep.pid;
    } else {
        /* Idle (the owner answered ROOM_JOIN_MOVE): no LEAVE to send. */
        ss->moved_pid = room_member_pid(ss->m);
        room_member_del(ss->m);
    }
    ss->m = NULL;
    ss->in_transit = true;
}

_Atomic unsigned session_test_bounce_repeats;

/* session_test_bounce_repeats: true when the connection was handed on to
 * the next worker (the JOIN stays kept and in flight). */
static bool session_test_bounce(struct relay_worker *rw, struct session *ss)
{
    unsigned n = atomic_load_explicit(&session_test_bounce_repeats, memory_order_relaxed);
    while (n > 0 &&
           !atomic_compare_exchange_weak_explicit(&session_test_bounce_repeats, &n, n - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    if (n == 0)
        return false;
    unsigned to = (worker_id(rw->w) + 1) % rw->r->n_workers;
    if (ss->eo->handoff(ss->c, to) != 0)
        return false;
    ss->join_moves++;
    return true;
}

void session_adopt(struct relay_worker *rw, struct session *ss)
{
    if (ss == NULL)
        return;
    ss->rw = rw;
    ss->in_transit = false;
    ss->next = rw->live;
    if (rw->live != NULL)
        rw->live->prev = ss;
    rw->live = ss;
    if (ss->rebind && ss->keep.valid) {
        ss->rebind = false;
        int rc = room_member_rebind(relay_worker_shard(rw), ss, &ss->keep, &ss->m);
        WSTAT_INC(rw, sessions_adopted);
        if (rc != 0) {
            log_error("event=room_rebind_failed err=\"%s\"", roost_strerror(rc));
            session_close(ss, PROTO_ERR_INTERNAL, "moving with the room failed");
        }
        return;
    }
    if (ss->rebind) {
        /* It left its room before the move: an idle member again. */
        ss->rebind = false;
        if (room_member_new_pid(relay_worker_shard(rw), ss, ss->moved_pid, &ss->m) != 0) {
            ss->m = NULL;
            session_close(ss, PROTO_ERR_SERVER_FULL, "no member slot");
            return;
        }
        room_member_set_movable(ss->m, ss->eo->handoff != NULL);
        WSTAT_INC(rw, sessions_adopted);
        return;
    }
    if (room_member_new_pid(relay_worker_shard(rw), ss, ss->moved_pid, &ss->m) != 0) {
        ss->m = NULL;
        session_close(ss, PROTO_ERR_SERVER_FULL, "no member slot");
        return;
    }
    WSTAT_INC(rw, sessions_adopted);
    /* The JOIN again, from here: this worker owned the room when it was
     * answered. It stays movable (a few times): the room's home may have
     * placed the room elsewhere since (its placement ended, pack moved on),
     * and a member that could not follow would split the room. */
    bool movable = ss->eo->handoff != NULL && ss->join_moves < RELAY_JOIN_MOVES_MAX;
    room_member_set_movable(ss->m, movable);
    if (movable && ss->join_body != NULL && session_test_bounce(rw, ss))
        return;
    uint8_t *body = ss->join_body;
    size_t len = ss->join_len;
    ss->join_body = NULL;
    ss->join_len = 0;
    ss->state = SESSION_WELCOMED;
    if (body != NULL) {
        ss->repeating = true; /* on_join: not the client's own JOIN */
        session_control(ss, body, len);
        ss->repeating = false; /* ss stays until turn end, even if closed */
    }
    free(body);
}

void session_transit_closed(struct relay_worker *rw, struct session *ss)
{
    /* rw == ss->rw: ended at shutdown, off every worker (the old worker's
     * limbo end point): no message may be sent. */
    if (ss == NULL || !ss->in_transit || rw == NULL || rw == ss->rw || !ss->rebind ||
        !ss->keep.valid)
        return;
    log_warn("event=room_rebind_failed pid=%u reason=conn_lost_in_transit", ss->keep.pid);
    room_keep_leave(relay_worker_shard(rw), &ss->keep);
    ss->keep.valid = false;
}

/* The one leave path: every end of a connection comes here. */
void session_closed(struct session *ss, uint64_t app_error)
{
    if (ss == NULL || ss->c == NULL)
        return;
    if (ss->in_transit) {
        /* Ended between workers (shutdown, no slot there): no member, no
         * timer, on no list; a moving member's keyframe cache goes. */
        room_keep_release(&ss->keep);
        free(ss->join_body);
        free(ss);
        return;
    }
    struct relay_worker *rw = ss->rw;
    /* One summary line per connection; never the token. */
    struct endpoint_path ph;
    ss->eo->path(ss->c, &ph);
    log_info("event=conn_closed transport=%s duration_ms=%llu bytes_in=%llu bytes_out=%llu "
             "dgram_in=%llu dgram_out=%llu dropped=%llu lost=%llu rtt_us=%llu joined=%d "
             "close_code=0x%llx",
             ss->eo->name, (unsigned long long)((worker_now(rw->w) - ss->opened_ns) / 1000000u),
             (unsigned long long)ph.bytes_in, (unsigned long long)ph.bytes_out,
             (unsigned long long)ph.media_in, (unsigned long long)ph.media_out,
             (unsigned long long)ph.media_dropped, (unsigned long long)ph.media_lost,
             (unsigned long long)(ph.srtt_ns / 1000u), ss->was_joined,
             (unsigned long long)app_error);
    if (ss->was_joined)
        WSTAT_INC(rw, leaves);
    ss->c = NULL;
    timer_cancel(worker_timers(rw->w), &ss->deadline);
    timer_cancel(worker_timers(rw->w), &ss->linger);
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

void session_bury(struct relay_worker *rw)
{
    while (rw->grave != NULL) {
        struct session *ss = rw->grave;
        rw->grave = ss->grave_next;
        room_member_del(ss->m); /* sends LEAVE to the owner when in a room */
        free(ss->join_body);
        free(ss);
        WSTAT_INC(rw, sessions_closed);
    }
}

/* --------------------------------------------------------------- GOAWAY */

void session_goaway_all(struct relay_worker *rw)
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
