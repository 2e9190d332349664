/* Private to relay/: the structures that relay.c (lifecycle, worker ops,
 * drain, reload), endpoint.c (the QUIC and WebSocket transports behind a
 * session), session.c (one client connection's protocol state and the room
 * callbacks) and stats.c (counters and their readers) share.
 *
 * Layering: relay.c calls endpoint.c and session.c, endpoint.c calls
 * session.c, session.c calls stats.c (relay_hist_add) and a session's
 * endpoint only through struct endpoint_ops; stats.c calls neither;
 * nothing calls back into relay.c.
 * This header includes only relay/relay.h and lib/.
 *
 * Thread safety: a struct relay_worker and its sessions belong to their
 * worker thread; fields other threads read say so. */
#ifndef ROOST_RELAY_RELAY_INT_H
#define ROOST_RELAY_RELAY_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/stat.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/msg.h"
#include "proto/token.h"
#include "quic/quic.h"
#include "relay/relay.h"
#include "room/room.h"
#include "ws/ws.h"

#define RELAY_DEFAULT_HANDSHAKE_NS QUIC_DEFAULT_HANDSHAKE_TIMEOUT_NS
#define RELAY_DEFAULT_IDLE_NS QUIC_DEFAULT_IDLE_TIMEOUT_NS
#define RELAY_DEFAULT_DRAIN_MS 30000u
/* Hand-offs one JOIN may follow (ROOM_JOIN_MOVE): a JOIN repeated on the
 * worker it was sent to may find its room placed elsewhere again (the
 * placement ended or pack moved on meanwhile) and follow it; past this
 * bound it joins where it is and the home places a new room there. */
#define RELAY_JOIN_MOVES_MAX 3u
/* Ring messages of this module (posted by main/admin), beside lib/quic's
 * QUIC_MSG_* (0x01xx) and lib/room's ROOM_MSG_* (0x02xx). */
#define RELAY_MSG_FIRST 0x0300
#define RELAY_MSG_DRAIN 0x0300     /* send GOAWAY to every session */
#define RELAY_MSG_MEMBERS 0x0301   /* u.ptr[0]: struct members_req * */
#define RELAY_MSG_ROOM_MOVE 0x0302 /* u.ptr[0]: struct room_move_req * (relay.c) */
#define RELAY_MSG_LAST 0x03ff

/* What the session knows and the room does not. Whether the session is in
 * a room is the room's fact alone: room_member_joined(ss->m), true from the
 * moment JOINED was delivered (lib/room sets it before ops->joined) until
 * LEAVE or REPLACED. */
enum session_state {
    SESSION_OPEN = 0, /* waiting for HELLO */
    SESSION_WELCOMED, /* HELLO answered; JOIN may come (or came and was answered) */
    SESSION_JOINING,  /* JOIN sent to the room's owner, no answer yet */
    SESSION_LEAVING,  /* LEAVE received or replaced; closing */
};

struct relay_worker;
struct trunk_set;
struct trunk_shared;

/* What a session needs from its transport's path (QUALITY, /rooms, logs),
 * the same for QUIC and WebSocket. Media counters count the relay's
 * media packets to this client. */
struct endpoint_path {
    uint64_t srtt_ns, min_rtt_ns, rttvar_ns;
    uint64_t media_in, media_out, media_acked, media_lost;
    uint64_t media_dropped; /* by the transport: queue full, stale, cwnd, too large */
    uint64_t bytes_in, bytes_out;
    uint64_t control_pending; /* control bytes queued or not yet acknowledged */
};

/* The endpoint interface (relay/endpoint.c implements it for lib/quic and
 * lib/ws): everything a session does to its connection goes through it.
 * conn is the transport's connection, valid until the transport's on_close
 * ran (then the session's conn is NULL and nothing is called). */
struct endpoint_ops {
    const char *name; /* "quic", "ws": logs and /rooms */
    /* One control body (type + fields). ROOST_EFULL: the client does not
     * read; the transport is then closing with TOO_SLOW (on_close ran). */
    int (*send_control)(void *conn, const uint8_t *body, size_t len);
    /* b[off, off+len) as one media packet; takes its own reference. An
     * error is a drop, counted by the transport. */
    int (*queue_media)(void *conn, struct buf *b, uint32_t off, uint32_t len);
    /* Closes with a roost code (PROTOCOL.md §6); on_close runs before it
     * returns. reason may be NULL. */
    void (*close)(void *conn, uint64_t code, const char *reason);
    void (*path)(void *conn, struct endpoint_path *out);
    /* Hands the connection to worker `to` at the end of this turn
     * (lib/quic/handoff.h); NULL: the transport cannot move. Returns 0 or
     * an error (nothing happens). */
    int (*handoff)(void *conn, unsigned to);
};

/* One client connection's protocol state. Owned by its worker; freed at
 * the end of the loop turn in which its connection closed, so that no
 * callback in progress (room delivery, control) sees it vanish. */
struct session {
    struct relay_worker *rw;
    const struct endpoint_ops *eo;
    void *c; /* the transport's connection (eo); NULL once closed */
    struct room_member *m;
    enum session_state state;
    unsigned rejects;
    struct timer deadline; /* HELLO / JOIN must arrive in time */
    struct timer linger;   /* close once queued control is delivered */
    uint64_t linger_until; /* ... or at this time at the latest */
    uint32_t linger_code;
    const char *linger_reason; /* static storage */
    struct session *grave_next;
    struct session *prev, *next; /* rw->live: open sessions (GOAWAY, /rooms) */
    uint64_t opened_ns, join_ns, joined_ns;
    uint64_t noperm_err_ns; /* last ERROR NOT_PERMITTED for media, +1; 0 = never */
    bool was_joined;        /* was in a room at some point (leaves counter, close log) */
    uint8_t room_len;
    char room[ROOM_ID_MAX + 1]; /* of the last JOIN, for /rooms and logs */
    char display[DISPLAY_NAME_MAX + 1];
    /* Room-affine placement (issue 14): the last JOIN's body, repeated on
     * the owner's worker after a hand-off; in_transit between on_detach
     * and on_adopt (the member is gone, pid is kept for the new one). */
    uint8_t *join_body;
    size_t join_len;
    bool in_transit;
    uint32_t moved_pid;
    unsigned join_moves; /* hand-offs of the JOIN in flight (RELAY_JOIN_MOVES_MAX) */
    /* Set while session_adopt repeats the kept JOIN: on_join tells the
     * repeat from the client's own JOIN, which starts afresh. */
    bool repeating;
    /* Live room migration (lib/room/move.c): the connection moves with its
     * room while joined (room_cb_move); keep holds the member's room state
     * between on_detach and on_adopt. */
    bool rebind;
    struct room_keep keep;
};

struct relay_worker {
    struct relay *r;
    struct worker *w;
    struct quic_server *qs; /* this worker only (admin reads quic_shared_stats) */
    struct ws_server *wss;  /* NULL without a WebSocket listener */
    /* The room shard. Set by w_start with a release store once the shard
     * is ready and cleared by w_stop before room_shard_del. Other threads
     * (relay_stats, relay_worker_stats) load it with acquire; this worker
     * reads it relaxed through relay_worker_shard(). */
    _Atomic(struct room_shard *) rs;
    struct session *grave; /* closed sessions to free at turn end */
    struct session *live;  /* open sessions */
    struct timer quality;  /* QUALITY reports (room_shard_quality) */
    struct trunk_set *ts;  /* relay/trunk.c; NULL without a cluster */
    /* This worker's jemalloc arena (core/memstat.h), MEMSTAT_NO_ARENA
     * without one; set by w_start before the shard, read by the admin. */
    _Atomic uint32_t arena;
    /* Counters (core/stat.h), written only by this worker, laid out as the
     * public structs that relay_worker_stats fills. */
    _Atomic uint64_t st[STAT_N(struct relay_wcounters)];
    _Atomic uint64_t h_join[STAT_N(struct relay_hist)];
    _Atomic uint64_t h_fanout[STAT_N(struct relay_hist)];
} __attribute__((aligned(64)));

struct relay {
    /* As given, except cfg.affinity_max_members: the limit in force
     * (relay_affinity_resolve; 0: off); affinity_setting is as given. */
    struct relay_config cfg;
    uint32_t affinity_setting;
    /* cfg.placement is the placement in force (relay_placement_resolve);
     * placement_setting as given, placement_why the rule (static). */
    uint8_t placement_setting;
    const char *placement_why;
    struct quic_shared *qsh;
    struct ws_shared *wsh; /* NULL without a WebSocket listener */
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
    struct cluster *cluster; /* relay/cluster.h; NULL without [cluster] redis */
    /* Trunks (relay/trunk.h); NULL without [cluster] relay_id. */
    struct trunk_shared *trunk;
    struct trunk_set *tsets; /* n_workers */
    /* POST /rooms/{id}/move answers by result (admin thread, relaxed). */
    _Atomic uint64_t room_moves[RELAY_MOVE_N];
};

/* One event in a counter of struct relay_wcounters; rw's worker only. */
#define WSTAT_INC(rw, f) stat_inc((rw)->st, STAT_IDX(struct relay_wcounters, f))

/* The worker's own shard (its worker only: it stored it, relaxed is enough). */
static inline struct room_shard *relay_worker_shard(struct relay_worker *rw)
{
    return atomic_load_explicit(&rw->rs, memory_order_relaxed);
}

/* ------------------------------------------------------------- stats.c */

/* Adds one sample of ns to the histogram slots h (STAT_N(struct
 * relay_hist), laid out as struct relay_hist). A sample above the top
 * finite bound goes to the +Inf bucket and is counted in overflow; ns ==
 * BUF_STAMP_UNKNOWN (an age the stamp cannot tell) likewise, adding the top
 * finite bound to sum_ns. h's worker only. */
void relay_hist_add(_Atomic uint64_t *h, uint64_t ns);
/* Adds one stamp-based sample: d is the raw difference buf_stamp_now() -
 * b->stamp (core/buf.h), unsigned, as computed; the histogram converts it
 * (buf_stamp_ns) and handles the wrap. h's worker only. */
void relay_hist_add_stamp(_Atomic uint64_t *h, uint32_t d);

/* ----------------------------------------------------------- session.c */

/* The callbacks lib/room calls on a worker (arg: its struct relay_worker). */
extern const struct room_ops session_room_ops;

/* The transport-independent session entry points, called by the
 * transports' adapters (endpoint.c) on the session's worker. */
/* A connection opened on rw: allocates its session (stored in *out).
 * Returns 0, or a roost code to refuse the connection with. */
int session_open(struct relay_worker *rw, const struct endpoint_ops *eo, void *conn,
                 struct session **out);
/* One control body / one media packet received on the session's
 * connection (borrowed for the call). */
void session_control(struct session *ss, const uint8_t *body, size_t len);
void session_media(struct session *ss, const uint8_t *data, size_t len);
/* The connection ended (the transport's on_close): the one leave path. */
void session_closed(struct session *ss, uint64_t app_error);
/* Hand-off (ROOM_JOIN_MOVE): the connection leaves this worker (its
 * on_detach) / arrives on rw (on_adopt; the JOIN is repeated there). */
void session_detach(struct session *ss);
void session_adopt(struct relay_worker *rw, struct session *ss);
/* A connection moving with its room ended on rw, the worker it was handed
 * to, before it was adopted (no slot there): its member's entry leaves the
 * room (room_keep_leave). Before session_closed. */
void session_transit_closed(struct relay_worker *rw, struct session *ss);

/* Test hook: while set, a JOIN that passed the token check is not sent to
 * the room's owner, so the session stays JOINING (its deadline test). */
extern _Atomic bool session_test_hold_joins;
/* Test hook: while non-zero, a JOIN about to be repeated after a hand-off
 * (session_adopt) by a member that may still move is handed on to the next
 * worker instead, as when the room's home placed the room elsewhere
 * meanwhile (another ROOM_JOIN_MOVE, counted in join_moves); each such
 * bounce takes one off. 0: off. */
extern _Atomic unsigned session_test_bounce_repeats;
/* Test hook: while set, a JOIN repeated after a hand-off is refused in the
 * token check as an expired token (TOKEN_EXPIRED): the repeat of a JOIN
 * whose token expired on the way. Off by default. */
extern _Atomic bool session_test_refuse_repeats;

/* Frees the sessions whose connection closed this turn (turn end, stop). */
void session_bury(struct relay_worker *rw);
/* RELAY_MSG_DRAIN: GOAWAY to every welcomed session, closes the others. */
void session_goaway_all(struct relay_worker *rw);
/* RELAY_MSG_MEMBERS: appends this worker's members to q (relay_members);
 * session_members_done then counts the answer as given. */
struct members_req;
void session_members_collect(struct relay_worker *rw, struct members_req *q);
/* Counts one worker's answer to q as given, also for a RELAY_MSG_MEMBERS
 * discarded at shutdown, so that relay_members does not wait for a worker
 * that is gone. Any thread. */
void session_members_done(struct members_req *q);

/* ---------------------------------------------------------- endpoint.c */

/* The transports' application callbacks (arg: the struct relay_worker). */
extern const struct quic_app_ops session_quic_ops;
extern const struct ws_app_ops session_ws_ops;

/* QUIC's link counters in /rooms' terms (struct quic_conn_stats) for any
 * endpoint: QUIC copies its own, WebSocket maps its path. */
void endpoint_link_stats(const struct session *ss, struct quic_conn_stats *out);

#endif
