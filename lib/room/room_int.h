/* Rooms, private: the structs every side of lib/room shares, the ring
 * payloads, and the plumbing (handle resolution, sending) as static inline
 * functions. Not for use outside lib/room.
 *
 * The files of the module and what each calls (each arrow is "calls a
 * function defined in"):
 *
 *   room.c     (shared/shard lifecycle, stats)   -> dispatch.c, owner.c,
 *                                                   place.c, placed.c
 *   dispatch.c (the message switch, the handler) -> place.c, member.c,
 *                                                   fanout.c, quality.c
 *   place.c    (owner load bound: routing JOIN/LEAVE home <-> placed
 *               owner, DROP)                      -> owner.c, placed.c
 *   move.c     (live room migration: MOVE, REHOME, a joined member's
 *               quiet re-bind after its connection moved) -> owner.c,
 *                                                   place.c, member.c
 *   owner.c    (room table, joins/leaves, snapshots, JOINED/EVENTS)
 *                                                -> placed.c, move.c
 *   placed.c   (the placed owner's side of placement: DROP, an unused
 *               PLACE; the messages owed to another worker that the
 *               runtime refused, kept and sent again; the census of a
 *               room owned here)             -> owner.c (owner_room_free*:
 *                                                   a kept room's end)
 *   member.c   (members, join/leave requests, answers, events, replaced,
 *               keyframe requests, keyframe cache views and replay)
 *   fanout.c   (the media hot path)
 *   quality.c  (link quality reports and summaries)
 *
 * owner.c, member.c, fanout.c and quality.c call only this header's
 * inline functions and other modules. The plumbing is inline for that
 * reason and because the fan-out path resolves a handle per recipient. */
#ifndef ROOST_ROOM_ROOM_INT_H
#define ROOST_ROOM_ROOM_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/rcuptr.h"
#include "core/stat.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "proto/quality.h"
#include "room/room.h"

struct kfcache;
struct kfcache_view;
struct snapshot;

/* Ring messages of this module. */
enum {
    ROOM_MSG_JOIN = ROOM_MSG_FIRST, /* member worker -> owner: struct join_req in a buf */
    ROOM_MSG_ACK,                   /* owner -> member worker: struct ack_hdr + frames in a buf */
    ROOM_MSG_LEAVE,                 /* member worker -> owner: struct leave_req in a buf */
    ROOM_MSG_FANOUT,                /* sender worker -> member worker: struct fanout_msg */
    ROOM_MSG_EVENTS,                /* owner -> member worker: struct events_msg */
    ROOM_MSG_REPLACED,              /* owner -> member worker: struct replaced_msg */
    ROOM_MSG_KFREQ,                 /* requester worker -> sender worker: struct kfreq_msg */
    ROOM_MSG_QREPORT,  /* member worker -> owner: struct qreport_hdr + entries in a buf */
    ROOM_MSG_QSUM,     /* owner -> publisher worker: struct qsum_entry[] in a buf */
    ROOM_MSG_QFAR,     /* owner -> hidden member's worker: struct qfar_hdr + entries in a buf */
    ROOM_MSG_DROP,     /* placed owner -> home: struct drop_msg in a buf (place.c) */
    ROOM_MSG_MOVE,     /* old owner -> new owner: the struct room * itself (move.c) */
    ROOM_MSG_REHOME,   /* new owner -> member worker: struct rehome_msg (move.c) */
    ROOM_MSG_MOVE_REQ, /* home -> a moved room's owner: struct move_req_msg (move.c) */
    ROOM_MSG_ARRIVED,  /* a moved room's new owner -> home: struct arrived_msg (place.c) */
    ROOM_MSG_UNALIAS,  /* a room's last owner -> its table worker: the struct room * (owner.c) */
};

/* How a JOIN or LEAVE reached an owner (place.c): straight
 * from the member's worker to the room's home (the hash owner), or from
 * the home to the worker it placed the room on, or back from there. */
enum {
    ROUTE_DIRECT = 0,
    ROUTE_PLACE,  /* home -> chosen owner: create the room here */
    ROUTE_FWD,    /* home -> placed owner: the room lives there */
    ROUTE_BOUNCE, /* placed owner -> home: the room was gone already */
};

#define IDENTITY_MAX 64
#define ROOM_TABLE_MAX (1u << 20)
/* Published cache views by member slot: a fixed directory of chunks, so a
 * reader never sees a table move (chunks are only added, freed at exit). */
#define KFDIR_CHUNK_BITS 12
#define KFDIR_CHUNK (1u << KFDIR_CHUNK_BITS)
#define KFDIR_CHUNKS 256 /* 1M member slots per worker */
#define STREAMS 256
/* Presence events a moved room keeps for members re-bound later (move.c):
 * the last this many turns that had any. */
#define MOVE_EVHIST 16
#define MOVE_REBOUND 16
/* Owed messages the runtime refused (placed.c): first tried again this
 * long after, then twice as long after each refusal, up to the max. */
#define ROOM_OWED_RETRY_MS 2u
#define ROOM_OWED_RETRY_MAX_MS 128u

/* ------------------------------------------------------------------ types */

/* Per-owner table of room slots. slots[] entries are RCU-published by the
 * owner (rcu_assign_pointer) and read by every worker (rcu_dereference);
 * gens[] is owner-only. */
struct room_table {
    uint32_t cap;
    struct room **slots;
    uint32_t *gens;
    uint32_t *free_slots; /* stack of unused slot numbers, owner-only */
    uint32_t n_free;
};

struct room_shared {
    unsigned n_workers;
    struct hash_key key;
    struct room_limits lim;
    struct room_table tables[WORKER_MAX];
    _Atomic int64_t rooms;         /* live rooms, server-wide (control path only) */
    _Atomic int64_t participants;  /* members in rooms, server-wide, trunk members not */
    _Atomic int64_t trunk_members; /* hidden and remote members (relay/trunk.c), server-wide */
    /* Members in the rooms each worker owns (owner.c; relaxed, read by
     * the homes choosing where a new room goes). */
    _Atomic int64_t owned[WORKER_MAX];
    /* Keyframe caches: kfdir[w][chunk][i] is the view published by the
     * member in slot chunk*KFDIR_CHUNK+i of worker w. Chunks and views are
     * written by worker w only (rcu_assign_pointer), read by any worker. */
    struct kfcache_view *_Atomic *_Atomic kfdir[WORKER_MAX][KFDIR_CHUNKS];
};

/* The owner's record of one member: what JOINED lists and what duplicate
 * identities are matched against. */
struct room_info {
    uint32_t pid;
    uint16_t worker;
    uint16_t perms; /* PERM_* (also the snapshot member's flags) */
    uint32_t slot;
    uint32_t gen;
    uint32_t join_seq;
    uint8_t ident_len;
    uint8_t name_len;
    bool quiet;    /* in acks: a re-bind (move.c), answered ROOM_REBIND_OK */
    uint16_t from; /* ... of a member that moved from this worker */
    uint64_t seen; /* ... with the events after this version */
    /* In acks: a join the room carried on a move (its old owner accepted
     * it, the new one answers): its member follows the room as the
     * move's REHOME would have asked (move.c move_on_arrive). */
    bool follow;
    uint8_t identity[IDENTITY_MAX];
    uint8_t name[DISPLAY_NAME_MAX];
};

struct room_event {
    uint8_t kind; /* MSG_EV_JOIN / MSG_EV_LEAVE */
    uint32_t pid;
};

/* A message another worker's state waits for (owed: a DROP, a bounce, an
 * UNALIAS) that the runtime refused (ROOST_ENOMEM: a spill queue could not
 * grow), or one to the same worker behind such a one: kept on the shard's
 * owed list, in order, and sent again (placed.c). The entry heads what it
 * owes: a room's end (embedded in the room: keeping it never allocates),
 * a DROP of no room (its id and count) or a whole message. */
enum {
    ROOM_OWED_END,  /* struct room (end_owed): its DROP, then its UNALIAS */
    ROOM_OWED_DROP, /* a PLACE's DROP that made no room (placed.c) */
    ROOM_OWED_MSG,  /* a message as built (a bounce) */
};
struct room_owed {
    struct room_owed *next;
    uint8_t kind;
};

struct room {
    /* Read by any worker inside a read-side section. */
    struct snapshot *snap; /* RCU-published */
    uint32_t gen;
    /* Owner-only below. */
    struct rcu_head rcu;
    uint32_t slot;
    uint8_t id_len;
    uint8_t id[ROOM_ID_MAX];
    uint64_t hash;
    struct room *hnext;
    struct room *onext, *oprev; /* the shard's list of owned rooms (quality tick) */
    struct room *dirty_next;
    bool dirty;
    /* Placement: the home (hash owner) of a room placed here from there,
     * and how many of the home's routed JOIN/LEAVE (PLACE + FWD) reached
     * it; both go back in the DROP when the room goes. */
    uint16_t home;
    uint32_t routed_in;
    /* A placed room's DROP, allocated when the room was made (the PLACE
     * JOIN's own buffer): the room's end never fails to allocate it. */
    struct buf *drop;
    /* Its end (owner_room_destroy) when the runtime refused its DROP or
     * UNALIAS: still owed (placed.c), the DROP first; kept on the shard's
     * owed list by end_owed meanwhile (then not freed here). */
    struct room_owed end_owed;
    bool owes_drop, owes_unalias;
    /* Live room migration (move.c): `tab` is the worker whose slot table
     * holds the room (its handle: tab, slot, gen), set at creation and
     * never changed, so members' handles stay valid when the room moves
     * (any number of times); `own` is the worker that owns it now (== tab
     * until a move; stored by the old owner before the MOVE, with release,
     * read with acquire by the table worker to forward quality reports);
     * `from` the worker it came from by its last move (REHOME: whose
     * members follow), `moves` how many moves it made (0: never moved, no
     * re-bind log or presence history is kept). */
    uint16_t tab;
    _Atomic uint16_t own;
    uint16_t from;
    uint32_t moves;
    /* A moved room's latest PARTICIPANT_EVENTS (framed) by snapshot
     * version, a ring (move_events_keep): a member re-bound after moving
     * gets those it missed in transit (move_events_since). */
    struct buf *evhist[MOVE_EVHIST];
    uint64_t evhist_v[MOVE_EVHIST];
    uint32_t evhist_next;
    /* Its latest re-binds (move.c, move_rebound_log), a ring read by any
     * worker inside a read-side section: the snapshot version from which
     * each moved member is on its new worker (0: empty), and who (pid <<
     * 32 | old worker << 1 | subscribes). Written by the owner before
     * that snapshot is published: a reader of it sees the entry. */
    _Atomic uint64_t rb_v[MOVE_REBOUND];
    _Atomic uint64_t rb_who[MOVE_REBOUND];
    uint32_t rb_next;

    struct room_info *infos; /* current members (pending changes applied) */
    uint32_t n_infos, cap_infos;
    struct snapshot_change *changes; /* this turn's batch */
    uint32_t n_changes, cap_changes;
    struct room_info *acks; /* joiners accepted this turn */
    uint32_t n_acks, cap_acks;
    struct room_event *events; /* this turn's presence deltas */
    uint32_t n_events, cap_events;
    /* Latest subscriber report of each worker (quality), and when. */
    struct buf *qrep[WORKER_MAX];
    uint64_t qrep_t[WORKER_MAX];
};

enum member_state {
    MEMBER_IDLE = 0,
    MEMBER_JOINING,
    MEMBER_JOINED,
};

struct room_member {
    struct room_shard *s;
    void *ep;
    uint32_t pid;
    uint32_t slot;
    uint32_t gen;
    uint32_t join_seq;
    enum member_state state;
    uint8_t perms; /* PERM_* */
    bool movable;  /* room_member_set_movable */
    /* A re-bound member (move.c, room_member_rebind) whose quiet JOIN is
     * not answered yet: JOINED already, with the room handle it had. */
    bool rebinding;
    /* A REHOME reached it while it was re-binding (newer than the
     * re-bind's answer: m->at is its), and whether it asked it to follow
     * its room: done once the answer is in. */
    bool rehomed, follow;
    /* The room's move count (room.moves) of the last REHOME applied: one
     * from an earlier move that arrives later (REHOMEs of two moves come
     * from two workers, on rings with no order between them) is stale. */
    uint32_t rehome_moves;
    /* A REHOME that reached a JOINING member already in the room's
     * snapshot (before the JOIN's answer, which may come from the room's
     * previous owner): the room's handle (rh_tab, rh_slot, rh_gen), its
     * owner rh_at, its move count in rehome_moves, whether to follow in
     * `follow`, flagged by `rehomed`. The answer applies it when it is of
     * that room and older (member_on_ack). */
    uint16_t rh_tab, rh_at;
    uint32_t rh_slot, rh_gen;
    /* The snapshot version that put a re-bound member on this worker:
     * FANOUT and EVENTS made from an older one are skipped (its old
     * worker had them). 0: never moved. */
    uint64_t moved_version;
    uint64_t events_seen; /* version of the last presence it got (JOINED or EVENTS) */
    uint16_t owner;       /* the room handle's table worker (room.tab) */
    uint16_t at;          /* the worker that owns the room (room_member_owner) */
    uint32_t room_slot;
    uint32_t room_gen;
    uint64_t joined_version; /* snapshot version that added us */
    uint8_t room_len;
    uint8_t room_id[ROOM_ID_MAX];
    /* Room state, on this member's worker. */
    struct kfcache *kc;   /* publishing members: keyframe cache + prefill */
    uint64_t *kfreq_last; /* per stream: when a KEYFRAME_REQUEST last went out (+1) */
    struct room_link q_prev;
    bool q_have;
    bool remote;       /* room_member_new_remote: joins with ROOM_PERM_REMOTE */
    uint16_t q_loss;   /* permille, last interval */
    int64_t q_balance; /* quality_loss_permille's state */
    uint32_t q_rtt_us;
    /* Hidden members (remote.c): receivers on other relays, reported as
     * subscribers of the room (room_member_far_quality). */
    struct room_far *far;
    uint32_t n_far, cap_far;
};

struct room_far {
    uint32_t pid;
    uint16_t loss;
    uint32_t rtt_us;
    uint64_t t; /* when it was reported (worker_now) */
};

struct room_shard {
    struct room_shared *sh;
    struct worker *w;
    unsigned id;
    const struct room_ops *ops;
    void *arg;

    /* Owner side: rooms by id. */
    struct room **buckets;
    uint32_t bucket_mask;
    struct room *owned; /* every owned room (onext/oprev): O(rooms) walks */
    struct room *dirty_head;
    /* Messages owed to other workers that could not go yet (placed.c), in
     * order: sent again at each turn's end and by owed_timer (armed while
     * the list is not empty: an idle worker has no turn end), owed_ms after
     * the last try (doubling up to ROOM_OWED_RETRY_MAX_MS); freed at
     * shutdown. */
    struct room_owed *owed, **owed_tail;
    uint64_t owed_to; /* the workers they go to (bit w): what follows waits */
    struct timer owed_timer;
    uint32_t owed_ms;

    /* Member side: handle table. */
    struct room_member **mslots;
    uint32_t *mgens;
    uint32_t mcap;
    uint32_t *mfree;
    uint32_t n_mfree;
    /* Participant ids (member.c pid_alloc): the next k, the k of members
     * alive at the last wrap (sorted), and how often k wrapped. Tests may
     * set pid_seq to start near the wrap. */
    uint32_t pid_seq;
    uint32_t *pid_skip;
    uint32_t n_pid_skip;
    uint32_t pid_wraps;
    /* Joins waiting for ops->gate (owner.c), in arrival order. */
    struct parked_join *parked, **parked_tail;
    /* Rooms hashing here that live on another worker (owner.c placement),
     * by the hash's high bits. */
    struct placement **placed;
    uint32_t placed_mask;
    /* The buffer of the JOIN or LEAVE being handled (dispatch.c), or NULL:
     * a placed owner reuses it for the DROP and the BOUNCE it sends, so
     * that neither allocates. */
    struct buf *in_buf;

    struct msg *scratch; /* large (lists of 200); control path only */
    /* Quality tick scratch (quality.c): grown, never shrunk, freed with the
     * shard, so that a steady tick does not allocate. */
    struct qscratch {
        void *rows; /* struct qrow[rows_cap] */
        uint32_t rows_cap;
        struct qreport_entry *all;
        uint32_t *loss, *rtt;
        void *byp; /* struct qpid[cap]: entries by pid */
        uint32_t cap;
        struct qsum_entry *out;
        uint32_t out_cap;
    } q;
    /* Written by this shard's worker only (stat_inc); read by any thread. */
    _Atomic uint64_t st[STAT_N(struct room_stats)];

    /* The seam of the owner tests (test_owner): when set, room_send hands
     * control messages here instead of to the runtime, and the hook takes
     * over their references; a hook returning non-zero refused the message
     * as worker_send can (the sender releases it). NULL in the relay. Never
     * on the media path. */
    int (*send_hook)(void *arg, unsigned to, struct worker_msg *wm);
    void *send_hook_arg;
};

#define ROOM_STAT_INC(s, field) stat_inc((s)->st, STAT_IDX(struct room_stats, field))

/* Payloads. */
struct join_req {
    uint32_t pid, slot, gen, join_seq;
    uint16_t worker;
    uint8_t perms, room_len, ident_len, name_len;
    uint8_t movable; /* the joiner's endpoint can change workers (affinity) */
    uint8_t route;   /* ROUTE_* */
    /* A re-bind (move.c): the member is in the room already as (old_worker,
     * old_slot, old_gen); replace its handle with this one, quietly. */
    uint8_t rebind;
    uint16_t old_worker;
    uint32_t old_slot, old_gen;
    uint64_t seen_version; /* the last presence it got */
    uint8_t room[ROOM_ID_MAX];
    uint8_t identity[IDENTITY_MAX];
    uint8_t name[DISPLAY_NAME_MAX];
};

struct ack_hdr {
    uint32_t pid, slot, gen, join_seq;
    uint32_t code; /* 0 or proto errcode */
    uint32_t room_slot, room_gen;
    uint16_t owner; /* the room handle's table worker */
    uint16_t at;    /* the worker that answered (the room's owner) */
    uint64_t version;
    uint32_t frames_len; /* framed messages follow */
    /* The room's move count (room.moves) when it answered: a REHOME of an
     * earlier move that reaches the member later (rings from different
     * workers have no order between them) is stale (member.c, move.c). */
    uint32_t moves;
    /* A JOINED answer carried on a move (room_info.follow): the member
     * follows the room to `at` once joined (member.c member_on_ack). */
    uint8_t follow;
};

struct leave_req {
    uint32_t pid;
    uint32_t slot, gen; /* the member's handle: remote members are matched by it */
    uint16_t worker;
    uint8_t room_len;
    uint8_t route; /* ROUTE_* */
    uint8_t room[ROOM_ID_MAX];
};

/* A placed room is gone from its owner (or was never made there): routed
 * messages counts the PLACE and FWD messages that reached it, so the home
 * knows how many more are coming back (ROUTE_BOUNCE). */
struct drop_msg {
    uint16_t from;
    uint8_t room_len;
    uint32_t routed;
    uint8_t room[ROOM_ID_MAX];
    /* A moved room (move.c): the room itself, still published in the
     * home's slot table; the home unpublishes and frees it (and the
     * runtime's discard frees it at shutdown). NULL otherwise. */
    struct room *moved;
};

/* The new owner of a moved room to a worker with members in it: the room
 * is owned by `at` now; members whose connection can move and that are on
 * worker `from` (ROOM_MOVE_ANY: on any worker) are handed to `at`. */
struct rehome_msg {
    uint32_t tab, room_slot, room_gen;
    uint16_t at;
    uint16_t from;
    uint32_t moves; /* room.moves: orders the REHOMEs of successive moves */
};
#define ROOM_MOVE_ANY 0xffffu

/* The home of a moved room to its owner (move.c, move_on_request): hand
 * the room named by its handle (tab = the home, slot, gen; hash: where it
 * is in the owner's buckets) to worker `to`. The home routes nothing to
 * that owner meanwhile (its placement is paused, place.c), so every JOIN
 * and LEAVE it routed there before is applied first. */
struct move_req_msg {
    uint64_t hash;
    uint32_t slot, gen;
    uint16_t tab, to;
};

/* A moved room's owner to its home: the room (its handle: hash, table
 * worker tab, slot, gen) is owned by `at` now, with every JOIN and LEAVE
 * the home routed before applied (place_on_arrived: the placement routes
 * to `at` from now on). From the new owner on the room's arrival, or from
 * the old one when the MOVE could not be sent (at: itself). */
struct arrived_msg {
    uint64_t hash;
    uint32_t slot, gen;
    uint16_t tab, at;
};

struct fanout_msg {
    uint32_t owner, room_slot, room_gen, sender;
    uint64_t version; /* of the snapshot the sender read (move.c) */
    struct buf *b;
};

struct events_msg {
    uint32_t owner, room_slot, room_gen;
    uint64_t version;
    struct buf *b; /* framed PARTICIPANT_EVENTS messages */
};

struct replaced_msg {
    uint32_t slot, gen, pid;
};

struct kfreq_msg {
    uint32_t slot, gen, pid; /* the sender (target) */
    uint32_t from;           /* the requester */
    uint8_t stream;
};

struct qreport_hdr {
    uint32_t room_slot, room_gen;
    uint16_t tab; /* the room handle's table worker (a moved room: forwarded) */
    uint16_t worker;
    uint32_t n;
};

struct qreport_entry {
    uint32_t pid;
    uint16_t loss; /* permille */
    uint32_t rtt_us;
};

/* Every receiver the owner heard of, for one hidden member. */
struct qfar_hdr {
    uint32_t slot, gen, pid; /* the hidden member */
    uint32_t n;              /* struct qreport_entry follow */
};

struct qsum_entry {
    uint32_t slot, gen, pid; /* the publisher */
    struct quality_summary sum;
};

_Static_assert(sizeof(struct fanout_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct events_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct kfreq_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct rehome_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct move_req_msg) <= 56, "fits a ring message");
_Static_assert(sizeof(struct arrived_msg) <= 56, "fits a ring message");

/* move.c: frees the room a discarded MOVE or DROP still owns (shutdown:
 * no reader is left). Accepts NULL. */
void move_discard_room(struct room *r);

/* Answers to a re-bind JOIN (move.c), never on the wire: done (quietly:
 * no JOINED, no presence), or the member was not in the room any more
 * (replaced meanwhile): the endpoint is told ops->replaced. */
#define ROOM_REBIND_OK 0xffff0002u
#define ROOM_REBIND_GONE 0xffff0003u
/* ROOM_REBIND_OK, and the member should follow the room on to its owner
 * (ack.at): it re-bound on the worker the room left since (its REHOME
 * found it between workers). */
#define ROOM_REBIND_FOLLOW 0xffff0004u

/* --------------------------------------------------------------- plumbing */

/* Grows *arr (of elem-sized entries, capacity *cap) to hold need entries. */
static inline int room_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 4;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (p == NULL)
        return ROOST_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static inline void room_msg_put(struct worker_msg *wm, uint16_t type, const void *payload,
                                size_t len)
{
    memset(wm, 0, sizeof(*wm));
    wm->type = type;
    memcpy(wm->u.bytes, payload, len);
}

/* Releases the references a message of this module holds. Returns false
 * for a type that is not this module's. */
static inline bool room_msg_release(const struct worker_msg *wm)
{
    struct buf *b;
    switch (wm->type) {
    case ROOM_MSG_JOIN:
    case ROOM_MSG_ACK:
    case ROOM_MSG_LEAVE:
    case ROOM_MSG_QREPORT:
    case ROOM_MSG_QSUM:
    case ROOM_MSG_QFAR:
        memcpy(&b, wm->u.bytes, sizeof(b));
        buf_unref(b);
        return true;
    case ROOM_MSG_DROP:
        memcpy(&b, wm->u.bytes, sizeof(b));
        move_discard_room(((struct drop_msg *)b->data)->moved);
        buf_unref(b);
        return true;
    case ROOM_MSG_MOVE:
    case ROOM_MSG_UNALIAS: {
        struct room *r;
        memcpy(&r, wm->u.bytes, sizeof(r));
        move_discard_room(r);
        return true;
    }
    case ROOM_MSG_FANOUT: {
        struct fanout_msg fm;
        memcpy(&fm, wm->u.bytes, sizeof(fm));
        buf_unref(fm.b);
        return true;
    }
    case ROOM_MSG_EVENTS: {
        struct events_msg em;
        memcpy(&em, wm->u.bytes, sizeof(em));
        buf_unref(em.b);
        return true;
    }
    case ROOM_MSG_REPLACED:
    case ROOM_MSG_KFREQ:
    case ROOM_MSG_REHOME:
    case ROOM_MSG_MOVE_REQ:
    case ROOM_MSG_ARRIVED:
        return true;
    default:
        return false;
    }
}

/* Every control message goes through the runtime, to this worker included:
 * the local FIFO delivers it in the message phase, never on the sender's
 * stack, so a local join runs in the same order as a remote one. Control
 * spills when a ring is full; past the spill queue's hard bound it is
 * logged and released (lib/core/worker.h); the error is returned for the
 * senders that must not lose the message silently (place.c). A member's
 * own requests go through room_send_req instead. */
static inline int room_send_cls(struct room_shard *s, unsigned to, struct worker_msg *wm,
                                enum worker_msg_class cls)
{
    int rc = s->send_hook != NULL ? s->send_hook(s->send_hook_arg, to, wm)
                                  : worker_send(s->w, to, wm, cls);
    if (rc != 0) {
        log_error("event=room_msg_send_failed type=0x%x to=%u err=\"%s\"", wm->type, to,
                  roost_strerror(rc));
        room_msg_release(wm);
    }
    return rc;
}

static inline int room_send(struct room_shard *s, unsigned to, struct worker_msg *wm)
{
    return room_send_cls(s, to, wm, WORKER_MSG_CONTROL);
}

/* A request of a member (JOIN, KEYFRAME_REQUEST): refused with ROOST_EFULL
 * when the spill queue to `to` is at its bound (WORKER_MSG_REQUEST), so
 * the member's session can give way (close TOO_SLOW) instead of growing the
 * queue. On an error the message's references are released. */
static inline int room_send_req(struct room_shard *s, unsigned to, struct worker_msg *wm)
{
    int rc = s->send_hook != NULL ? s->send_hook(s->send_hook_arg, to, wm)
                                  : worker_send(s->w, to, wm, WORKER_MSG_REQUEST);
    if (rc != 0)
        room_msg_release(wm);
    return rc;
}

static inline unsigned room_owner_of(const struct room_shared *sh, const uint8_t *room_id,
                                     size_t len)
{
    return hash_owner(&sh->key, room_id, len, sh->n_workers);
}

/* Resolves a room handle. Caller is inside a read-side section; the result
 * is valid until it leaves it. */
static inline struct room *room_resolve(struct room_shared *sh, unsigned owner, uint32_t slot,
                                        uint32_t gen)
{
    RCUPTR_ASSERT_READER();
    if (owner >= sh->n_workers || slot >= sh->tables[owner].cap)
        return NULL;
    /* Pairs with rcu_assign_pointer in room_create/room_destroy. */
    struct room *r = rcu_dereference(sh->tables[owner].slots[slot]);
    if (r == NULL || r->gen != gen)
        return NULL;
    return r;
}

/* The room with this id owned here, or NULL; *hash_out: its siphash.
 * Owner side (the shard's own worker). */
static inline struct room *owner_room_find(struct room_shard *s, const uint8_t *id, size_t len,
                                           uint64_t *hash_out)
{
    uint64_t h = hash_siphash24(&s->sh->key, id, len);
    *hash_out = h;
    /* High bits: the low bits chose the owner (mod N). */
    for (struct room *r = s->buckets[(h >> 32) & s->bucket_mask]; r; r = r->hnext)
        if (r->hash == h && r->id_len == len && memcmp(r->id, id, len) == 0)
            return r;
    return NULL;
}

/* A member of this shard by handle; NULL when the slot was reused. */
/* The member's keyframe cache, made at its first frame (member.c). */
struct kfcache *room_member_cache(struct room_shard *s, struct room_member *m);

static inline struct room_member *room_member_resolve(struct room_shard *s, uint32_t slot,
                                                      uint32_t gen)
{
    if (slot >= s->mcap || s->mgens[slot] != gen)
        return NULL;
    return s->mslots[slot];
}

/* ------------------------------------------------------ between the files */

/* dispatch.c: registers the shard's handler for ROOM_MSG_FIRST..LAST. */
int room_dispatch_register(struct room_shard *s);
/* Handles one message as the runtime would (it takes the message's
 * references): the hand-driven routers of the unit tests. */
void room_dispatch_one(struct room_shard *s, const struct worker_msg *wm);

/* place.c: the owner side's entry points. A JOIN or LEAVE is routed
 * (home -> placed owner, or back) or applied here (owner_apply_*). */
void owner_on_join(struct room_shard *s, const struct join_req *jr);
void owner_on_leave(struct room_shard *s, const struct leave_req *lr);
void owner_on_drop(struct room_shard *s, const struct drop_msg *dm);
/* Frees the home's placements and what waits in them (room_shard_del). */
void place_free(struct room_shard *s);

/* owner.c (the placed owner's side: placed.c) */
void owner_apply_join(struct room_shard *s, const struct join_req *jr);
void owner_apply_leave(struct room_shard *s, const struct leave_req *lr);
/* Answers jr with JOIN_REJECTED (code, reason, retry after retry_ms). */
void owner_reject(struct room_shard *s, const struct join_req *jr, uint32_t code,
                  const char *reason, uint32_t retry_ms);
/* The buffer the DROP of a room placed here from jr's home goes in: the
 * JOIN's own (s->in_buf, one more reference) when jr is in it, else a new
 * one; NULL when none could be had. */
struct buf *place_drop_buf(struct room_shard *s, const struct join_req *jr);
/* placed.c: the end of a room that owes messages (r->owes_drop: its DROP
 * to its home, place.c owner_on_drop, in r->drop, carrying r when it lives
 * in the home's table; r->owes_unalias: then its UNALIAS to its table
 * worker). What the runtime refuses is kept and sent again (the owed
 * list); r is not touched here once the last went. A room published here
 * only (unpublished already) is freed after a grace period then. */
void place_room_end(struct room_shard *s, struct room *r);
/* placed.c: sends an owed message (a bounce) to `to`, behind those still
 * owed to `to`; kept when the runtime refuses it. Returns 0 (sent or
 * kept: wm's references are taken) or ROOST_ENOMEM (neither: released,
 * not logged). */
int place_send_owed(struct room_shard *s, unsigned to, struct worker_msg *wm);
/* placed.c: sends again what is owed (room_shard_flush, the timer). */
void place_owed_retry(struct room_shard *s);
/* placed.c: the owed list's timer (room_shard_new), and its end with the
 * shard (owner_free_rooms: no reader is left; a kept room is unpublished
 * from its table and freed). */
void place_owed_init(struct room_shard *s);
void place_owed_free(struct room_shard *s);
/* A PLACE join (jr->route) that made no room here: its DROP (in jr's own
 * buffer when it can: jr is not used after this). Other joins: nothing. */
void place_unused(struct room_shard *s, const struct join_req *jr);
/* Frees every room this shard owns (room_shard_del: no reader is left). */
void owner_free_rooms(struct room_shard *s);
/* Live room migration (move.c): the owner.c pieces it needs. */
/* Takes r off this shard's hash, owned and dirty lists (and its members
 * off owned[]); *was_dirty: it had a batch pending. */
/* Takes r out of its shard's hash bucket and owned list (no dirty list,
 * no counts): what destroying and moving a room share. */
void owner_room_unlist(struct room_shard *s, struct room *r);
void owner_room_unlink(struct room_shard *s, struct room *r, bool *was_dirty);
/* Puts a room that arrived (MOVE) on this shard's lists. */
void owner_room_link(struct room_shard *s, struct room *r, bool dirty);
/* The home of a moved room, on its DROP: unpublishes r from this worker's
 * slot table and frees it after a grace period. */
void owner_room_unalias(struct room_shard *s, struct room *r);
/* owner.c: frees a room now / after a grace period (call_rcu). */
void owner_room_free(struct room *r);
void owner_room_free_rcu(struct rcu_head *head);
/* move.c: a moved room's events of one turn (frames: one more reference
 * taken); the framed events after version `seen` in one new buffer, or
 * NULL (none, or no memory: logged). */
void move_events_keep(struct room *r, uint64_t version, struct buf *frames);
struct buf *move_events_since(const struct room *r, uint64_t seen);
/* A re-bind JOIN (jr->rebind) on the room's owner. */
void owner_rebind(struct room_shard *s, const struct join_req *jr);
/* owner.c helpers shared with move.c. */
int owner_add_change_add(struct room *r, const struct room_info *in);
/* Removes r->infos[i] (a LEAVE to the others, as for a vanished member). */
void owner_remove_info(struct room_shard *s, struct room *r, uint32_t i);
/* Owner, before publishing snapshot `version`: records this batch's
 * re-binds (quiet acks) in r's ring (rb_v, rb_who). */
void move_rebound_log(struct room *r, uint64_t version);
/* Read side (any worker, inside the section that resolved r): the
 * version from which member pid is on its new worker, 0 if unknown. */
uint64_t move_rebound_version(const struct room *r, uint32_t pid);
/* A FANOUT of snapshot `sent` handled here by the newer snapshot `now`:
 * counts (media_lost_moved) the deliveries owed to members that were on
 * this worker in `sent` and had moved away by `now`. */
void move_count_lost(struct room_shard *s, const struct room *r, uint32_t sender, uint64_t sent,
                     uint64_t now);
void owner_mark_dirty(struct room_shard *s, struct room *r);
/* Answers jr (ROOM_MSG_ACK to its worker) with code, r's handle and move
 * count when r is set, and frames (consumed); follow: the member follows
 * the room once joined (an answer carried on a move). */
void owner_send_ack(struct room_shard *s, const struct join_req *jr, uint32_t code,
                    const struct room *r, uint64_t version, struct buf *frames, bool follow);
/* Appends m, encoded, to *bp (grown or made as needed); bytes or error. */
int owner_frame_into(struct buf **bp, const struct msg *m);
/* Ends an emptied room (unpublished, freed after a grace period). */
void owner_room_destroy(struct room_shard *s, struct room *r);
/* move.c, the owner side: a MOVE arrived; the home asks for a move. */
void move_on_arrive(struct room_shard *s, struct room *r);
void move_on_request(struct room_shard *s, const struct move_req_msg *mr);
/* move.c, the member side. */
void move_on_rehome(struct room_shard *s, const struct rehome_msg *rm);
/* place.c: the home remembers that its room r moved to worker `to`
 * (a placement, routed 0, drained by the DROP as for a placed room; a
 * move in flight until `to` says the room ARRIVED). Returns 0,
 * ROOST_EEXIST (a placement is there) or ROOST_ENOMEM. */
int place_add_moved(struct room_shard *s, struct room *r, unsigned to);
void place_remove_moved(struct room_shard *s, struct room *r);
/* The home, for a room id that is not here (room_shard_move): moves the
 * room it moved away before on to `to` (or back here): asks its owner
 * (MOVE_REQ) and pauses the placement until the room ARRIVED (or ended).
 * *members: its member count (its snapshot's). Returns 0, ROOST_ENOENT
 * (no such room), ROOST_EEXIST (on `to` already), ROOST_EAGAIN (placed by
 * the owner load bound, ending, or a move in flight) or the send's
 * error. */
int place_move_on(struct room_shard *s, const uint8_t *id, size_t len, unsigned to,
                  uint32_t *members);
/* The home: a moved room ARRIVED on its new owner (or stayed: am->at is
 * the old owner): its placement routes there, and what waited goes. */
void place_on_arrived(struct room_shard *s, const struct arrived_msg *am);
/* The home: its moved room r came back (MOVE, linked here already): the
 * placement goes, and what waited in it is applied here, in order. */
void place_home_again(struct room_shard *s, struct room *r);

/* A join waiting for ops->gate to open its room (owner side). */
struct parked_join {
    struct parked_join *next;
    struct join_req jr;
};

/* member.c */
/* A re-bound member (move.c) takes the keyframe cache its connection
 * brought (room_keep.kc, from room_member_detach; NULL: none): published
 * in m's slot with m's tag, so a later joiner gets its cached keyframes at
 * once. Freed instead when it cannot be (no memory, no publish right). */
void member_cache_adopt(struct room_shard *s, struct room_member *m, struct kfcache *kc);
void member_on_ack(struct room_shard *s, struct buf *b);
void member_on_events(struct room_shard *s, const struct events_msg *em);
void member_on_replaced(struct room_shard *s, const struct replaced_msg *rm);
void member_on_kfreq(struct room_shard *s, const struct kfreq_msg *km);

/* fanout.c */
void fanout_on_msg(struct room_shard *s, const struct fanout_msg *fm);
/* Fans b (a relayed datagram, header written, stamped) out from member m:
 * feeds m's keyframe cache, delivers to this worker's members and sends one
 * FANOUT per other worker. Consumes the caller's reference. Returns 0.
 * room_publish and room_publish_relayed (remote.c) share it. */
int fanout_publish_buf(struct room_shard *s, struct room_member *m, struct buf *b);

/* quality.c */
void room_quality_on_report(struct room_shard *s, struct buf *b);
void room_quality_on_summary(struct room_shard *s, struct buf *b);
void room_quality_on_far(struct room_shard *s, struct buf *b);

#endif
