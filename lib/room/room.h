/* Rooms: owner shards, RCU-published participant snapshots, cross-shard
 * joins and fan-out over the worker rings (DESIGN.md §1-§2).
 *
 * Two sides live in every worker's shard:
 *   - the OWNER side holds the rooms whose id hashes to this worker
 *     (owner(room) = siphash(key, room id) mod N). It alone changes a room:
 *     it applies the joins and leaves drained in one loop turn as one batch,
 *     publishes the next snapshot with rcu_assign_pointer, answers joiners
 *     (JOINED / JOIN_REJECTED) and fans out one PARTICIPANT_EVENTS per turn.
 *   - the MEMBER side holds the participants whose connection lives on this
 *     worker (struct room_member, one per connection), their handles
 *     (slot + generation, so a stale snapshot entry is skipped) and the
 *     delivery of media and control to them through `struct room_ops`.
 *
 * Fan-out: a member's datagram becomes one counted buffer (relay header +
 * payload, written once); the member's worker reads the room's snapshot in
 * one read-side section, delivers to its own members and sends one FANOUT
 * (room handle + buffer reference) to each other worker that has members.
 * Nothing crossing a ring is a bare pointer to RCU-protected memory: rooms
 * travel as (owner, slot, generation) handles resolved through the owner's
 * RCU-published slot table.
 *
 * The endpoint behind a member is opaque (`void *ep`): a QUIC connection in
 * the relay, a fake in unit tests, later a trunk or a WebSocket.
 *
 * Thread safety: room_shared_* on the main thread (before the workers start
 * and after they stop), room_shared_rooms/room_shared_participants from any
 * thread. Everything taking a shard or a member: only that shard's worker.
 */
#ifndef ROOST_ROOM_ROOM_H
#define ROOST_ROOM_ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/perm.h"

struct buf;
struct worker;
struct worker_msg;
struct room_shared;
struct room_shard;
struct room_member;
struct kfcache;

/* Ring message types used by this module: 0x0200..0x02ff. */
#define ROOM_MSG_FIRST 0x0200
#define ROOM_MSG_LAST 0x02ff

/* What a zero in struct room_limits means (relay/config.c uses them too). */
/* Largest client->relay media datagram forwarded (WELCOME.max_datagram,
 * PROTOCOL.md §8.3); larger ones are dropped as malformed. */
#define ROOM_MAX_DATAGRAM 1200
#define ROOM_DEFAULT_MAX_ROOMS 10000 /* plain integers: relay/config.c prints them */
#define ROOM_DEFAULT_MAX_MEMBERS 500
#define ROOM_DEFAULT_KEYFRAME_CAP (200u * 1024u)           /* = KFCACHE_DEFAULT_CAP */
#define ROOM_DEFAULT_KEYFRAME_SENDER_BYTES (1024u * 1024u) /* = KFCACHE_DEFAULT_SENDER_BYTES */
#define ROOM_DEFAULT_KEYFRAME_SENDER_PKTS 1024u            /* = KFCACHE_DEFAULT_SENDER_PKTS */
#define ROOM_DEFAULT_REPLAY_MAX_PKTS 4096u
#define ROOM_DEFAULT_KFREQ_WINDOW_NS (200ull * 1000000ull)
#define ROOM_DEFAULT_QUALITY_INTERVAL_NS (1000ull * 1000000ull)

struct room_limits {
    uint32_t max_rooms;   /* rooms on this server; 0: ROOM_DEFAULT_MAX_ROOMS */
    uint32_t max_members; /* participants per room; 0: ROOM_DEFAULT_MAX_MEMBERS */
    /* Room state (issue 6). */
    uint32_t keyframe_cap; /* bytes per (sender, stream); 0: ROOM_DEFAULT_KEYFRAME_CAP */
    uint32_t prefill_ms;   /* audio prefill for joiners; 0: off */
    /* What one sender's cache may hold over all its streams: real memory
     * (buffers with headers, not payload) and packets. 0: the defaults. */
    uint32_t keyframe_sender_bytes; /* 0: ROOM_DEFAULT_KEYFRAME_SENDER_BYTES */
    uint32_t keyframe_sender_pkts;  /* 0: ROOM_DEFAULT_KEYFRAME_SENDER_PKTS */
    uint32_t replay_max_pkts;       /* cached packets one joiner gets, all senders; 0: 4096 */
    uint64_t kfreq_window_ns;       /* KEYFRAME_REQUEST suppression; 0: ..._KFREQ_WINDOW_NS */
    uint64_t quality_interval_ns;   /* QUALITY period (room_shard_quality); 0: 1 s */
    /* Cluster (issue 18): 1..255 makes every participant id this relay
     * issues carry it as its top byte (PROTOCOL.md §4), so relays with
     * different prefixes never issue the same id; 0: the whole u32. */
    uint8_t pid_prefix;
    /* Room-affine placement (issue 14): a JOIN from another worker for a
     * room that would then have at most this many members is answered
     * ROOM_JOIN_MOVE instead of being applied; 0: off. */
    uint32_t affinity_max_members;
    /* Owner load bound (issue 14): a worker that owns rooms holding more
     * than this percentage of the relay's participants is "over"; a new
     * room whose id hashes to an over worker is created on the first
     * worker the next hashes name that is not over (docs/OPERATIONS.md
     * "Owner load bound"); rooms already live stay. 0: off. Not for a
     * relay in a cluster (its gate and trunks name rooms by hash owner). */
    uint32_t owner_share_max;
    /* Placement of new rooms (issue 13/14, docs/OPERATIONS.md "Packing
     * rooms"): ROOM_PLACE_AUTO is resolved by the relay before it gets
     * here (relay_placement_resolve: pack iff room affinity is in force);
     * left AUTO it means spread. ROOM_PLACE_SPREAD (each room on the worker its id hashes
     * to, as above) or ROOM_PLACE_PACK: a new room goes to the
     * lowest-numbered worker that owns fewer than pack_members
     * participants, so that few workers carry the load while it is light
     * (an idle worker sleeps); when every worker is at the bound, by hash
     * (and owner_share_max) as spread. Not for a relay in a cluster. */
    uint8_t placement;
    uint32_t pack_members; /* pack's bound per worker; 0: ROOM_DEFAULT_PACK_MEMBERS */
};

enum { ROOM_PLACE_AUTO = 0, ROOM_PLACE_SPREAD = 1, ROOM_PLACE_PACK = 2 };
#define ROOM_DEFAULT_PACK_MEMBERS 200

/* ops->joined's code for "join on the owner's worker instead": nothing was
 * sent to the client and the member is idle again; the endpoint should be
 * handed to room_member_owner(m) and the JOIN repeated there (relay/
 * session.c). Never a wire code. */
#define ROOM_JOIN_MOVE 0xffff0001u

/* Cumulative link counters of one endpoint (room_ops.link_stats). */
struct room_link {
    uint64_t srtt_ns, min_rtt_ns, rttvar_ns;
    uint64_t dgram_out, dgram_acked, dgram_lost; /* media sent, acked, declared lost */
    uint64_t dgram_dropped;                      /* congestion control or queue limits */
    uint64_t bytes_in, bytes_out;
};

/* Delivery to an endpoint, on the endpoint's worker. */
struct room_ops {
    /* A relay media datagram: bytes [off, off+len) of b. Borrowed for the
     * call: take a reference (buf_ref) to keep it. Returns 0 or an error
     * (counted as a delivery drop, e.g. queue full). */
    int (*media)(void *ep, struct buf *b, uint32_t off, uint32_t len, void *arg);
    /* One control message body (type + fields, no length prefix). */
    void (*control)(void *ep, const uint8_t *body, size_t len, void *arg);
    /* The join finished: code 0 (JOINED was just sent through control) or
     * a proto error code (JOIN_REJECTED was just sent). Optional. */
    void (*joined)(void *ep, uint32_t code, void *arg);
    /* A newer join with the same identity replaced this member; it is
     * already out of the room. The endpoint should be closed (REPLACED). */
    void (*replaced)(void *ep, void *arg);
    /* Fills the endpoint's cumulative link counters (room_shard_quality).
     * Optional: without it no QUALITY is sent. Returns 0 or an error (the
     * endpoint is skipped). */
    int (*link_stats)(void *ep, struct room_link *out, void *arg);
    /* Owner side, optional (the cluster directory, relay/cluster.c). gate:
     * a join for a room that is not live on this relay. Returns
     * ROOM_GATE_OPEN (create the room now), ROOM_GATE_WAIT (the join, and
     * every later one for the room, waits until room_shard_gate_open) or a
     * proto error code (JOIN_REJECTED with *reason, static text, and
     * *retry_ms). room_closed: the room's last member left and the room is
     * gone. Neither may call back into the shard. */
    uint32_t (*gate)(const uint8_t *room, size_t len, const char **reason, uint32_t *retry_ms,
                     void *arg);
    void (*room_closed)(const uint8_t *room, size_t len, void *arg);
    /* Live room migration (room_shard_move), optional: the member's room
     * moved to worker `to`; the endpoint may hand its connection there
     * (then, on the old worker, room_member_detach; on `to`,
     * room_member_rebind). Called on the member's worker, for joined
     * members whose endpoint is movable (room_member_set_movable). */
    void (*move)(void *ep, unsigned to, void *arg);
};

#define ROOM_GATE_OPEN 0u
#define ROOM_GATE_WAIT UINT32_MAX

struct room_stats {
    uint64_t rooms_created;
    uint64_t rooms_destroyed;
    uint64_t joins;  /* accepted, on the owner */
    uint64_t leaves; /* removals applied, on the owner */
    uint64_t rejects_room_full;
    uint64_t rejects_server_full;
    uint64_t replaced;
    uint64_t snapshots; /* snapshots published */
    uint64_t media_in;  /* datagrams accepted for fan-out */
    uint64_t media_dropped_not_joined;
    uint64_t media_dropped_no_publish;
    uint64_t media_dropped_malformed;
    uint64_t media_dropped_nomem;
    uint64_t media_out;            /* deliveries handed to ops->media */
    uint64_t media_out_failed;     /* ops->media returned an error */
    uint64_t fanout_sent;          /* FANOUT messages pushed */
    uint64_t fanout_ring_drops;    /* FANOUT dropped on a full ring */
    uint64_t stale_handles;        /* snapshot entries skipped: member gone */
    uint64_t media_skipped_moving; /* FANOUT deliveries skipped: member moved (move.c) */
    uint64_t media_lost_moved;     /* FANOUT deliveries lost: member moved away (move.c) */
    uint64_t events_sent;          /* PARTICIPANT_EVENTS messages delivered */
    uint64_t kf_cached;            /* keyframes promoted into a sender's cache */
    uint64_t kf_discarded;         /* partial keyframes flushed */
    uint64_t kf_over_cap;          /* keyframes larger than the cap, not cached */
    uint64_t kf_replayed;          /* cached packets delivered to joiners */
    uint64_t kfreq_relayed;        /* KEYFRAME_REQUEST delivered to senders */
    uint64_t kfreq_suppressed;     /* duplicates inside the window */
    uint64_t kfreq_unknown;        /* target not in the room */
    uint64_t quality_sent;         /* QUALITY messages delivered */
    uint64_t kf_caches;            /* gauge: live keyframe caches (made at a first frame) */
    uint64_t join_moves;           /* joins answered ROOM_JOIN_MOVE (affinity), on the owner */
    uint64_t rooms_placed;         /* new rooms sent to another worker (owner load bound), home */
    uint64_t routed;               /* JOIN/LEAVE routed by a home to a placed room's owner */
    uint64_t bounced;              /* routed messages that found the room gone, sent back */
    uint64_t route_lost;           /* JOIN/LEAVE a home could not send to a placed owner */
    uint64_t rooms_moved_out;      /* live rooms this worker handed to another (move.c) */
    uint64_t rooms_moved_in;       /* live rooms that arrived here */
    uint64_t members_moved_out;    /* their members (joins - leaves + in - out: owned members) */
    uint64_t members_moved_in;
    uint64_t member_moves;   /* joined members asked to move with their room */
    uint64_t rebinds;        /* moved members re-bound quietly, on the owner */
    uint64_t rebinds_gone;   /* re-binds that found the member gone (replaced) */
    uint64_t rebinds_failed; /* re-binds not sent (no slot, memory, ring): a LEAVE instead */
    uint64_t move_requests;  /* moves of a moved room asked of its owner, on the home */
    uint64_t rooms_home;     /* moved rooms back on their home, on the home */
};

/* Process-wide state: the hash key, limits and the per-owner room slot
 * tables. Returns 0, ROOST_EINVAL (n_workers 0 or > WORKER_MAX),
 * ROOST_ENOMEM or ROOST_ESYS (no randomness for the key). */
int room_shared_new(struct room_shared **out, unsigned n_workers, const struct room_limits *lim);
/* Frees it; every shard must be gone and rcu_barrier() done. Accepts NULL. */
void room_shared_del(struct room_shared *sh);
/* The worker a room id hashes to: its home, where every JOIN and LEAVE
 * goes first. It owns the room unless the owner load bound placed the room
 * on another worker (room_member_owner names that one). Any thread. */
unsigned room_shared_owner(const struct room_shared *sh, const uint8_t *room_id, size_t len);
/* Live rooms and participants, server-wide (relaxed counters). Participants
 * are this relay's own members; the trunks' hidden and remote members
 * (ROOM_PERM_HIDDEN / ROOM_PERM_REMOTE) are counted apart. */
int64_t room_shared_rooms(const struct room_shared *sh);
int64_t room_shared_participants(const struct room_shared *sh);
int64_t room_shared_trunk_members(const struct room_shared *sh);

/* Creates the shard of worker w, on w's thread (ops->start), and registers
 * it with the runtime for ROOM_MSG_FIRST..LAST (worker_handle): room
 * messages never reach the worker's ops->on_msg / on_discard. ops and arg
 * are borrowed for the shard's life. Returns 0 or ROOST_ENOMEM/ROOST_EINVAL
 * (also: a shard already registered on w). */
int room_shard_new(struct room_shard **out, struct room_shared *sh, struct worker *w,
                   const struct room_ops *ops, void *arg);
/* On w's thread (ops->stop): frees the rooms it owns and its member table.
 * Members must have been deleted by their owners first. Accepts NULL. */
void room_shard_del(struct room_shard *s);
/* Once per loop turn (ops->on_turn_end, before the transport flushes):
 * applies this turn's joins and leaves, one snapshot per changed room,
 * sends answers and presence. */
void room_shard_flush(struct room_shard *s);
void room_shard_stats(const struct room_shard *s, struct room_stats *out);
/* Ends the wait of the joins ops->gate parked for a room, on its owner's
 * worker: code 0 applies them in arrival order (the room is created), any
 * other code rejects each with it (reason: static text). Joins whose
 * member left meanwhile are gone already. Returns true when the room is
 * live afterwards (false: nothing to serve, e.g. every joiner left). */
bool room_shard_gate_open(struct room_shard *s, const uint8_t *room, size_t len, uint32_t code,
                          const char *reason, uint32_t retry_ms);
/* On the room's owner worker (admin views, relay/cluster.c): the room's
 * members by the top byte of their participant id (the issuing relay's
 * pid_prefix), hidden members (one per subscribed trunk) apart. Returns
 * the member count, 0 when the room is not live here. */
uint32_t room_shard_census(struct room_shard *s, const uint8_t *room, size_t len,
                           uint32_t by_prefix[256], uint32_t *hidden);

/* Live room migration (issue 14; docs/HACKING.md "Moving a live room"),
 * on the room's home worker (room_shared_owner): hands the room's state
 * (members, permissions, pending batch, quality reports) to worker `to`
 * through the ring; the room keeps its handle, so fan-out never pauses.
 * Every JOIN and LEAVE for it is routed from the home to its owner in
 * order until it ends. A room may move again, or back home, any number of
 * times, one move at a time: when it lives elsewhere the home asks its
 * owner (lib/room/place.c). The members of the worker it leaves, or of
 * every worker when the room has at most affinity_max_members members,
 * are asked to move (ops->move). *members: its member count. Returns 0
 * (started), ROOST_EINVAL (`to` is no worker), ROOST_ENOENT (no such room
 * with this home), ROOST_EEXIST (on `to` already: nothing done),
 * ROOST_EAGAIN (a move of it is in flight; or it is being made on the
 * worker it was placed on, or is ending; or it waits for the cluster
 * gate; or this worker is not its home) or ROOST_ENOMEM. A room placed on
 * another worker (owner load bound, pack) moves as a moved one does. */
int room_shard_move(struct room_shard *s, const uint8_t *room, size_t len, unsigned to,
                    uint32_t *members);
/* On the room's home: the worker that owns the room now (this one, or the
 * one its placement routes to; this one when there is no such room). */
unsigned room_shard_room_at(struct room_shard *s, const uint8_t *room, size_t len);

/* What a joined member's room state is while its connection changes
 * workers (room_member_detach -> room_member_rebind). */
struct room_keep {
    bool valid; /* the member was joined */
    uint8_t perms;
    uint8_t room_len;
    uint16_t tab, at, old_worker;
    uint32_t pid, room_slot, room_gen, old_slot, old_gen;
    uint32_t rehome_moves; /* room_member.rehome_moves */
    uint64_t joined_version, events_seen;
    uint8_t room_id[64]; /* ROOM_ID_MAX */
    /* A publishing member's keyframe cache, unpublished, travelling with
     * it (owned by the keep: room_member_rebind takes it, room_keep_leave
     * and room_keep_release free it). NULL: none. */
    struct kfcache *kc;
};

/* A moved member whose connection ended between workers (no slot on the
 * new one): its entry, named by keep (room_member_detach), leaves the
 * room with a LEAVE to the others, as a vanished member's would. Sent
 * from s, the shard of the calling worker; nothing when !keep->valid.
 * Releases what keep holds (room_keep_release). */
void room_keep_leave(struct room_shard *s, struct room_keep *keep);
/* Frees what a keep holds (its keyframe cache) without sending anything
 * (a connection that ended between workers at shutdown). Any worker;
 * buffers are counted. Accepts a keep holding nothing. */
void room_keep_release(struct room_keep *keep);
/* A moving member, on its old worker: keeps its room state in *keep and
 * frees it WITHOUT a LEAVE (it stays in the room; deliveries to it are
 * skipped until it is re-bound). A member not joined is deleted as by
 * room_member_del (keep->valid false). Accepts NULL (keep->valid false). */
void room_member_detach(struct room_member *m, struct room_keep *keep);
/* On the new worker: a member for ep with keep's participant id, joined
 * at once (it publishes from now on), and a quiet re-bind JOIN to the
 * room's owner that replaces its old handle in the room (no JOINED, no
 * presence). Returns 0, ROOST_EINVAL (keep not valid) or ROOST_ENOMEM (no
 * member made) or the send's error (the member exists but is idle: the
 * caller should close the endpoint). */
int room_member_rebind(struct room_shard *s, void *ep, struct room_keep *keep,
                       struct room_member **out);

/* A participant on this worker; `ep` is its endpoint (borrowed until
 * room_member_del). Allocates its participant id: never 0, unique
 * server-wide among live participants always, and for the relay's life
 * until a worker has issued 2^32 / n_workers ids (member.c pid_alloc).
 * Returns 0 or ROOST_ENOMEM. */
int room_member_new(struct room_shard *s, void *ep, struct room_member **out);
/* The one leave path: leaves the room if joined or joining, then frees.
 * Every end of a connection (LEAVE, close, idle timeout, reset) calls this.
 * Accepts NULL. */
void room_member_del(struct room_member *m);
uint32_t room_member_pid(const struct room_member *m);
/* As room_member_new, but with the participant id pid the member had on
 * another worker (a connection handed off before it joined: its WELCOME
 * named that id). Returns 0 or ROOST_ENOMEM. */
int room_member_new_pid(struct room_shard *s, void *ep, uint32_t pid, struct room_member **out);
/* Whether the member's endpoint can be handed to another worker (a QUIC
 * connection can, a WebSocket one cannot): only then may its JOIN be
 * answered ROOM_JOIN_MOVE. Off for a new member. */
void room_member_set_movable(struct room_member *m, bool on);
/* The worker that answered the member's last JOIN (its room's owner). */
unsigned room_member_owner(const struct room_member *m);
/* True once JOINED was delivered and until it leaves. */
bool room_member_joined(const struct room_member *m);
/* True while a member that moved with its room waits for the answer to its
 * quiet re-bind (move.c): joined, but the room's snapshot still names its
 * old handle, so frames it sends or is sent may be lost meanwhile (counted:
 * media_lost_moved, stale_handles). */
bool room_member_rebinding(const struct room_member *m);

/* Asks the owner of room_id to add this member. Strings are copied; limits
 * (ROOM_ID_MAX, identity and display name 64 bytes) are checked here.
 * perms: PERM_* (proto/perm.h). The answer arrives through ops->control (+ joined).
 * Returns 0, ROOST_EEXIST (already joining or joined), ROOST_EINVAL,
 * ROOST_ENOMEM, or ROOST_EFULL (the queue to the owner's worker is at its
 * bound: nothing sent, the member stays idle; the session closes TOO_SLOW). */
int room_join(struct room_member *m, const uint8_t *room_id, size_t room_len,
              const uint8_t *identity, size_t identity_len, const uint8_t *display,
              size_t display_len, unsigned perms);
/* Leaves the room (LEAVE message); the member stays allocated and may join
 * again. Returns 0 or ROOST_ENOENT when not in a room. */
int room_leave(struct room_member *m);
/* A client->relay media datagram from this member: fans it out to every
 * other member of its room that may subscribe. Returns 0 or the reason it
 * was dropped (and counted): ROOST_ENOENT not joined, ROOST_EACCES no
 * publish permission, ROOST_EMALFORMED bad header or over ROOM_MAX_DATAGRAM,
 * ROOST_ENOMEM. */
int room_publish(struct room_member *m, const uint8_t *dgram, size_t len);

/* A KEYFRAME_REQUEST from this (joined) member for (target, stream): relayed
 * to the target's worker, which delivers KEYFRAME_REQUEST(participant_id =
 * m's id, stream) through ops->control unless one for the same (target,
 * stream) went out within kfreq_window_ns (suppressed and counted there).
 * Returns 0, ROOST_ENOENT (m not joined, or target not in m's room: answer
 * NOT_JOINED), ROOST_EACCES (m lacks PERM_SUBSCRIBE: answer NOT_PERMITTED),
 * ROOST_ENOMEM, or ROOST_EFULL (the queue to the target's worker is at its
 * bound: the session closes TOO_SLOW). Member's worker. */
int room_keyframe_request(struct room_member *m, uint32_t target, uint8_t stream);

/* ------------------------------------------------ members of other relays
 * (lib/room/remote.c; the trunks of docs/CLUSTER.md §2). A trunk shows up
 * in a room as
 *   - one HIDDEN member per (trunk, room): joined with ROOM_PERM_HIDDEN |
 *     PERM_SUBSCRIBE, it receives every frame and presence change of the
 *     room once, like any subscriber, and appears in no JOINED or
 *     PARTICIPANT_EVENTS;
 *   - one REMOTE member per participant of the other side: an ordinary
 *     member (presence, keyframe cache, keyframe requests) with that
 *     participant's id, never PERM_SUBSCRIBE (the hidden member receives
 *     for the whole trunk), whose frames arrive already relayed. */
#define ROOM_PERM_HIDDEN 0x80u
/* Set by lib/room on a remote member's join (room_member_new_remote): the
 * owner matches its LEAVE by member handle, and a join with its id
 * replaces it (a re-announced remote participant may join from another
 * worker before its old member's LEAVE arrives). */
#define ROOM_PERM_REMOTE 0x40u

/* room_member_new with a participant id chosen by the caller (a remote
 * participant's, unique cluster-wide by its relay's pid prefix). Same
 * returns. */
int room_member_new_remote(struct room_shard *s, void *ep, uint32_t pid, struct room_member **out);
/* A relay -> client media datagram (sender id first) of remote member m,
 * received on a trunk: fanned out to the room like room_publish (sender
 * excluded, keyframe cache fed). The sender id in the datagram must be m's.
 * Returns as room_publish. */
int room_publish_relayed(struct room_member *m, const uint8_t *dgram, size_t len);

/* A relayed datagram of remote member m that this relay's members already
 * had (a keyframe cache replay from the home after a re-subscription,
 * docs/CLUSTER.md §2.5): feeds m's keyframe cache, so that later joiners
 * get it, and delivers it to nobody. Returns as room_publish_relayed. */
int room_cache_relayed(struct room_member *m, const uint8_t *dgram, size_t len);

/* Link quality across relays (issue 18). A hidden member stands for the
 * receivers on the other side of its trunk:
 *   - room_member_far_quality records one such receiver's link (its id,
 *     loss per mille over the last interval, RTT); the hidden member's
 *     worker reports it to the room's owner as a subscriber of the room
 *     (instead of the hidden member itself) while it is renewed, for up to
 *     3 quality intervals, so the publishers' QUALITY summaries include it;
 *   - each quality interval the owner hands every hidden member of the
 *     room one QUALITY (PROTOCOL.md §4.9, no summary extension) per
 *     receiver it heard of — this relay's and the other trunks' — through
 *     ops->control; the trunk forwards those of the other sides.
 * Returns 0, ROOST_EINVAL (not a hidden member, pid 0, loss over 1000) or
 * ROOST_ENOMEM. Member's worker. */
int room_member_far_quality(struct room_member *m, uint32_t pid, uint16_t loss, uint32_t rtt_us);

/* Link quality tick, every quality_interval on each worker (the caller's
 * timer; now = worker_now). Samples ops->link_stats of every joined member
 * of this worker and sends it its own QUALITY; sends the room owner one
 * summary message per room with this worker's subscribers; on the owner,
 * combines the latest summaries of every worker into one QUALITY summary
 * per publisher (see proto/quality.h). No per-packet work. */
void room_shard_quality(struct room_shard *s, uint64_t now);
/* The configured quality interval (ns). */
uint64_t room_shared_quality_interval(const struct room_shared *sh);

#endif
