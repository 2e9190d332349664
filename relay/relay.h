/* The relay application: binds QUIC connections (lib/quic) to room members
 * (lib/room) on the worker runtime, and speaks the control protocol of
 * docs/PROTOCOL.md (HELLO/WELCOME, JOIN with token checks, LEAVE).
 *
 * One `relay` per process: relay_new loads credentials and opens the
 * sockets, relay_start runs the workers, relay_stop joins them. roost-relay
 * (relay/main.c) is a thin wrapper; integration tests run it in-process.
 *
 * Thread safety: relay_* from the thread that created it, except
 * relay_request_stop (any thread, async-signal-safe) and relay_stats (any). */
#ifndef ROOST_RELAY_RELAY_H
#define ROOST_RELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dirtime.h"
#include "core/worker.h"
#include "quic/quic.h"
#include "room/room.h"
#include "ws/ws.h"

struct relay;

/* The defaults of the turn cadence and of room-affine placement, chosen
 * from measurement (docs/OPERATIONS.md, "Turn cadence" and "Room-affine
 * placement"; docs/BENCHMARKS.md). They are what the config file's
 * defaults give AND what a zeroed relay_config (tests) gets: in the three
 * fields below 0 means "the default" and RELAY_OFF means off. */
#define RELAY_DEFAULT_TURN_BATCH_US 500  /* [server] turn_batch_us */
#define RELAY_DEFAULT_TIMER_SLACK_US 500 /* [server] timer_slack_us */
/* [limits] affinity_max_members = auto: this many under eBPF steering; off
 * under cbpf or hash, where every packet of a handed-off connection would
 * be forwarded through a ring (worse than no affinity). */
#define RELAY_AFFINITY_AUTO_MEMBERS 8
#define RELAY_AFFINITY_AUTO 0u /* relay_config.affinity_max_members: auto */
#define RELAY_OFF UINT32_MAX   /* relay_config: the setting is off (0 is its default) */

/* The Redis directory of a cluster relay ([cluster] in docs/CONFIG.md). */
struct relay_cluster_config {
    char redis_host[256]; /* "": no directory, the relay is alone */
    uint16_t redis_port;
    char redis_password[256];      /* AUTH; "" none */
    char redis_password_file[256]; /* read at start when redis_password is "" */
    int redis_db;                  /* SELECT when > 0 */
    char key_prefix[64];           /* "": "roost" */
    char trunk_advertise[256];     /* registered trunk address; "": cluster_trunk_listen */
    uint8_t pid_prefix;            /* 1..255, unique per relay (PROTOCOL.md §3) */
    /* lease_ms, refresh_ms, wait_ms (the bound a JOIN of an unplaced room
     * waits for Redis), connect/cmd timeouts; zeros: defaults. */
    struct dir_timing timing;
};

struct relay_config {
    const char *addr;   /* numeric IPv4/IPv6; NULL: 127.0.0.1 */
    uint16_t port;      /* 0: ephemeral (tests) */
    unsigned n_workers; /* 0: one per CPU in the affinity mask (or per cpus entry) */
    const int *cpus;    /* optional CPU list */
    unsigned n_cpus;
    bool no_pin;                   /* tests */
    uint32_t turn_batch_us;        /* worker_config's; 0: default, RELAY_OFF: off (0 us) */
    uint32_t timer_slack_us;       /* worker_config's; 0: default, RELAY_OFF: exact (0 us) */
    const char *cert_file;         /* PEM chain */
    const char *key_file;          /* PEM key */
    const char *state_dir;         /* reset/retry secrets; NULL: random per run */
    const char *tls_priority;      /* gnutls priority string; NULL: QUIC_DEFAULT_PRIORITY */
    unsigned ticket_period_s;      /* ticket key rotation; 0: QUIC_DEFAULT_TICKET_PERIOD_S */
    bool no_tickets;               /* no session tickets (full handshakes only) */
    const char *token_key_file;    /* required unless insecure_no_auth */
    bool insecure_no_auth;         /* dev only: every JOIN is accepted, loudly logged */
    uint32_t token_skew_s;         /* 0: TOKEN_DEFAULT_SKEW_S */
    uint64_t idle_timeout_ns;      /* 0: 30 s */
    uint64_t handshake_timeout_ns; /* 0: 5 s; also HELLO/JOIN deadline */
    bool force_retry;
    bool no_steering;              /* hash by 4-tuple only (quic.h) */
    uint32_t max_rooms;            /* 0: 10000 */
    uint32_t max_members;          /* per room; 0: 500 */
    uint32_t affinity_max_members; /* 0: auto, RELAY_OFF: off (relay_affinity_resolve) */
    uint32_t owner_share_max;      /* owner load bound, percent of participants; 0: off */
    uint8_t placement;             /* ROOM_PLACE_AUTO (0), _SPREAD or _PACK (room.h) */
    uint32_t pack_members;         /* pack's bound per worker; 0: ROOM_DEFAULT_PACK_MEMBERS */
    unsigned max_conns_per_worker; /* 0: 100000 */
    unsigned max_half_open;        /* per worker, handshakes in flight before Retry; 0: 256 */
    uint32_t handshake_rate;       /* new handshakes/s server-wide before Retry; 0: unlimited */
    uint32_t drain_ms;             /* announced in GOAWAY; 0: 30000 */
    int sock_buf;                  /* UDP SO_RCVBUF/SO_SNDBUF bytes; 0: 4 MiB */
    uint32_t keyframe_cap;         /* keyframe cache bytes per (sender, stream); 0: 200 KiB */
    uint32_t prefill_ms;           /* audio prefill sent to joiners; 0: off */
    uint64_t kfreq_window_ns;      /* KEYFRAME_REQUEST duplicate window; 0: 200 ms */
    uint64_t quality_interval_ns;  /* QUALITY reports; 0: 1 s */
    /* WebSocket transport (issue 20, docs/PROTOCOL.md §11): on when ws.addr
     * is set. relay_new fills cert_file, key_file (unless ws.plain),
     * n_workers, and the timeouts left 0 from the ones above; the rest
     * (port, plain, web_root, queue limits) is taken as given. */
    struct ws_shared_config ws;
    /* Receive budgets (lib/quic/budget.h); 0: unlimited. The config file's
     * defaults are in relay/config.c. */
    uint32_t conn_pkt_rate, addr_pkt_rate;
    uint64_t conn_byte_rate, addr_byte_rate;
    /* Worker runtime (tests): messages per ring and spilled requests per
     * destination (lib/core/worker.h); 0: the runtime's defaults. */
    unsigned ring_capacity, spill_max;
    /* Cluster (issue 18, docs/CLUSTER.md; relay/config_cluster.c parses
     * them). cluster_trunk_listen "" = no trunk listener. */
    char cluster_relay_id[256];
    char cluster_trunk_listen[256];
    char cluster_secret_file[256];
    /* The directory (relay/cluster.c): on when cluster.redis_host is set. */
    struct relay_cluster_config cluster;
    /* Tests and fixed deployments without Redis: "ID@HOST:PORT" is the home
     * of every room (relay/trunk.h). "" = off. */
    char cluster_static_home[256];
};

/* Totals over every worker (relaxed reads; may lag by a loop turn). */
struct relay_stats {
    int64_t rooms;
    int64_t participants;  /* this relay's own members (what /capacity counts) */
    int64_t trunk_members; /* trunks' hidden and remote members (docs/CLUSTER.md 2.3) */
    uint64_t conns_open;   /* sessions alive */
    uint64_t sessions_opened, sessions_closed;
    uint64_t joins_ok, join_rejects; /* as answered to clients */
    uint64_t rejects_bad_token, rejects_room_full, rejects_server_full, rejects_not_permitted;
    uint64_t replaced;
    uint64_t protocol_violations;
    uint64_t media_in, media_out, media_dropped; /* room layer: in, delivered, dropped */
    uint64_t dgram_not_joined;                   /* datagrams before JOINED */
    uint64_t fanout_sent;                        /* FANOUT messages to other workers */
    uint64_t fanout_ring_drops;
    uint64_t quic_fwd_in; /* packets forwarded between workers */
    uint64_t snapshots;
};

/* Returns 0, ROOST_EINVAL (bad config; logged), ROOST_EBADKEY (token key
 * file unusable; logged with the reason), ROOST_ECRYPTO (cert/key),
 * ROOST_ESYS (sockets), ROOST_ENOMEM. */
int relay_new(struct relay **out, const struct relay_config *cfg);
int relay_start(struct relay *r);
uint16_t relay_port(const struct relay *r);
/* The WebSocket TCP port, 0 when the relay has no WebSocket listener. */
uint16_t relay_ws_port(const struct relay *r);
unsigned relay_workers(const struct relay *r);
void relay_request_stop(struct relay *r);
/* Joins the workers (after relay_request_stop or on its own). */
void relay_stop(struct relay *r);
/* Stops if needed and frees. Accepts NULL. */
void relay_del(struct relay *r);
/* Any thread, but not concurrently with relay_stop or relay_del (they free
 * the room shards it reads). */
void relay_stats(struct relay *r, struct relay_stats *out);

/* ---------------------------------------------------------- operations
 * (relay/admin.c, relay/main.c; docs/OPERATIONS.md) */

/* Latency histogram: bucket i counts samples <= RELAY_HIST_BOUND_NS(i)
 * (and above the bound before it), not cumulative; bucket RELAY_HIST_N - 1
 * is +Inf, and overflow counts the samples in it (above 4.29 s, or too old
 * for the stamp to tell: they are never folded into a lower bucket). A
 * worker keeps it as core/stat.h slots (only it writes); relay_worker_stats
 * copies them out. The bounds are the powers of 4 from 1.02 us to 4.29 s
 * (the first histogram's; dashboards may use them) and, between 65.5 us
 * and 4.19 ms, finer ones (100, 150, 200, 350, 500 and 750 us, 1, 1.5, 2
 * and 3 ms) so that a p99 can be told against a 1 ms target. */
#define RELAY_HIST_N 23
extern const uint64_t relay_hist_bound_ns[RELAY_HIST_N - 1];
#define RELAY_HIST_BOUND_NS(i) (relay_hist_bound_ns[(i)]) /* 1.02 us .. 4.29 s */
struct relay_hist {
    uint64_t bucket[RELAY_HIST_N];
    uint64_t count, sum_ns;
    uint64_t overflow; /* samples in bucket RELAY_HIST_N - 1 */
};

/* Relay-level counters of one worker (written only by it; core/stat.h slots
 * inside, read with relay_worker_stats). Only uint64_t fields. */
struct relay_wcounters {
    uint64_t sessions_opened, sessions_closed;
    uint64_t joins_ok, join_rejects;
    uint64_t rejects_bad_token, rejects_not_permitted, rejects_draining;
    uint64_t protocol_violations;
    uint64_t dgram_not_joined;
    uint64_t goaway_sent;
    uint64_t leaves;           /* sessions that were in a room when they ended */
    uint64_t sessions_adopted; /* arrived from another worker (room-affine hand-off) */
};

/* Everything one worker counts, read with relaxed loads (values may lag). */
struct relay_worker_stats {
    struct relay_wcounters relay;
    struct relay_hist join_latency;   /* JOIN received -> JOINED answered */
    struct relay_hist fanout_latency; /* datagram ingress -> queued on egress worker */
    struct quic_stats quic;
    struct ws_stats ws; /* zero without a WebSocket listener */
    struct room_stats room;
    struct worker_stats worker;
    int cpu; /* -1: not pinned */
    /* The worker's jemalloc arena at the last memstat_refresh(): live and
     * active bytes; heap_known false without jemalloc. */
    bool heap_known;
    uint64_t heap_allocated, heap_active;
};
/* Any thread; worker < relay_workers(r). Not concurrently with relay_stop
 * or relay_del (they free the room shards it reads): stop the admin
 * endpoint first. */
void relay_worker_stats(struct relay *r, unsigned worker, struct relay_worker_stats *out);

/* The limits in force (reload may change some). Any thread. */
struct relay_limits {
    uint32_t max_rooms, max_members;
    unsigned max_conns_per_worker, max_half_open;
    uint32_t handshake_rate;
};
void relay_limits(struct relay *r, struct relay_limits *out);

/* Drain (SIGTERM): new Initials are refused, new sessions closed with
 * GOING_AWAY, and every open session gets GOAWAY(drain_ms). Relaying goes
 * on; the caller stops the relay once relay_stats().rooms is 0 or its
 * deadline passed. Main thread. Returns 0 or ROOST_ENOMEM (a worker could
 * not be told; it still refuses new connections). */
int relay_drain(struct relay *r);
bool relay_draining(const struct relay *r);
/* True when the kernel steers packets by connection ID. Any thread. */
bool relay_steering(const struct relay *r);
/* "ebpf", "cbpf" or "hash" (quic_shared_steering_mode). */
const char *relay_steering_mode(const struct relay *r);
/* relay_config.affinity_max_members as set, resolved against the steering
 * program in force (mode as relay_steering_mode): RELAY_AFFINITY_AUTO gives
 * RELAY_AFFINITY_AUTO_MEMBERS under "ebpf" and 0 (off) otherwise;
 * RELAY_OFF gives 0; any other value is kept. Pure. */
uint32_t relay_affinity_resolve(uint32_t setting, const char *steering_mode);
/* The affinity limit in force (resolved at relay_new; 0: off). Any thread. */
uint32_t relay_affinity_max_members(const struct relay *r);
/* relay_config.placement as set, resolved against the affinity limit in
 * force (relay_affinity_resolve's result) and whether the relay is in a
 * cluster: ROOM_PLACE_AUTO gives pack when affinity > 0 (a small room's
 * members then share its worker, and pack keeps rooms off idle workers),
 * else spread; a cluster always gets spread (its gate and trunks find a
 * room at its hash owner). *why (static) says which rule: "explicit",
 * "auto:affinity", "auto:no_affinity", "auto:cluster" or "cluster" (pack
 * asked for in a cluster). Returns ROOM_PLACE_SPREAD or _PACK. Pure. */
uint8_t relay_placement_resolve(uint8_t setting, uint32_t affinity, bool cluster, const char **why);
/* [limits] placement in force ("spread" or "pack"; spread in a cluster),
 * why (relay_placement_resolve) and pack's bound per worker
 * (pack_members). */
const char *relay_placement(const struct relay *r);
const char *relay_placement_why(const struct relay *r);
uint32_t relay_pack_members(const struct relay *r);
/* The turn cadence cfg gives the workers (worker_config.turn_batch_us and
 * .timer_slack_us): its field, the default for 0, 0 for RELAY_OFF. Pure. */
uint32_t relay_turn_batch_us(const struct relay_config *cfg);
uint32_t relay_timer_slack_us(const struct relay_config *cfg);

/* Reload (SIGHUP) from cfg: token keys (new sessions verify with the new
 * keyring; joined members stay), max_conns_per_worker (raised or lowered) and
 * max_half_open. Other changed settings are logged as needing a restart.
 * cfg's strings must outlive the relay. Main thread. Returns 0, or
 * ROOST_EBADKEY (key file unusable: the old keys stay, logged). */
int relay_reload(struct relay *r, const struct relay_config *cfg);

/* One member as seen by its worker (for /rooms). */
struct relay_member_info {
    char room[65]; /* NUL-terminated room id (may hold any UTF-8) */
    size_t room_len;
    char display[65];
    uint32_t pid;
    unsigned worker, owner;
    bool joined;    /* false while the JOIN is in flight */
    bool rebinding; /* joined, moved with its room, its re-bind not yet answered */
    uint64_t joined_for_ms;
    const char *transport;       /* "quic" or "ws" (static) */
    struct quic_conn_stats link; /* for "ws": TCP RTT, media and byte counters */
};
/* Asks every worker for its members (a message through worker_pool_post;
 * waits for the answers). *out is malloc'd (free it), *n its entries.
 * Admin thread or main. Returns 0 or ROOST_ENOMEM. */
int relay_members(struct relay *r, struct relay_member_info **out, size_t *n);
/* The worker owning a room id. Any thread. */
unsigned relay_room_owner(struct relay *r, const char *room, size_t len);
/* Live room migration (POST /rooms/{id}/move?worker=N; docs/OPERATIONS.md):
 * asks the room's home worker to hand the room to worker `to`
 * (room_shard_move) and waits for its answer. *from: the worker that
 * owned the room when asked (room_shard_room_at); *members: the room's
 * member count. Returns 0 (started), ROOST_EINVAL (no such worker),
 * ROOST_ENOENT (no such room), ROOST_EEXIST (on `to` already),
 * ROOST_EAGAIN (a move in flight, being made, or ending), ROOST_EACCES (a cluster relay: rooms
 * never move), ROOST_ECLOSED (shutting down) or ROOST_ENOMEM. Admin thread or main. */
int relay_room_move(struct relay *r, const char *room, size_t len, unsigned to, unsigned *from,
                    uint32_t *members);
/* roost_room_moves_total by result (admin.c counts, metrics.c prints). */
enum relay_move_result {
    RELAY_MOVE_STARTED = 0,
    RELAY_MOVE_NOOP,
    RELAY_MOVE_NOT_FOUND,
    RELAY_MOVE_BAD_WORKER,
    RELAY_MOVE_CONFLICT,
    RELAY_MOVE_DRAINING,
    RELAY_MOVE_ERROR,
    RELAY_MOVE_N
};
extern const char *const relay_move_result_names[RELAY_MOVE_N];
void relay_room_move_count(struct relay *r, enum relay_move_result res);
uint64_t relay_room_moves(const struct relay *r, enum relay_move_result res);
/* The cluster directory (relay/cluster.h), NULL without [cluster] redis.
 * Any thread. */
struct cluster *relay_cluster(struct relay *r);

#endif
