/* Trunks, private to relay/trunk*.c: the structures they share.
 * trunk.c: process level, connections (dial, accept, HELLO, re-dial),
 * trunk messages in, the QUIC ops, worker level and counters.
 * trunkroom.c: keep-alive, sending, rooms on a trunk (hidden and remote
 * members, presence mirror) and the room ops.
 * trunksub.c: subscriptions and fencing: the homes held, the home ops,
 * revocations, empty subscriptions ending, static_home, test hooks.
 * trunkmedia.c: media in from a trunk, keyframe-cache replays.
 * Everything of a trunk_set runs on its worker. */
#ifndef ROOST_RELAY_TRUNK_INT_H
#define ROOST_RELAY_TRUNK_INT_H

#include "relay/trunk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "cluster/trunkmsg.h"
#include "core/be.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stat.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "quic/client.h"
#include "quic/quic.h"
#include "relay/relay_int.h"
#include "room/room.h"

#define EXPORTER_LABEL "EXPORTER-roost-trunk"
#define STATIC_GEN 1u
#define BACKOFF_MIN_NS (50ull * 1000000ull)
#define BACKOFF_MAX_NS (2000ull * 1000000ull)

#define TSTAT_INC(set, f) stat_inc((set)->st, STAT_IDX(struct trunk_stats, f))
#define TSTAT_DEC(set, f) stat_dec((set)->st, STAT_IDX(struct trunk_stats, f))
#define TSTAT_ADD(set, f, n) stat_add((set)->st, STAT_IDX(struct trunk_stats, f), n)

/* ------------------------------------------------------------ structures */

struct home_ent {
    struct home_ent *next;
    uint8_t len;
    char room[TRUNKMSG_ROOM_MAX];
    uint64_t gen;
    /* The directory's lease of gen (a reference), NULL in static_home mode
     * or from the test hook: while it is set, SUBSCRIBEs are accepted only
     * while it is valid by this relay's clock (the lease-lost event may
     * still be on its way to the owner worker). */
    struct dir_lease *lease;
};

struct trunk_shared {
    char id[TRUNKMSG_ID_MAX + 1];
    size_t id_len;
    uint8_t secret[256];
    size_t secret_len;
    uint8_t prefix;
    bool static_mode, static_self;
    char static_id[TRUNKMSG_ID_MAX + 1];
    char static_addr[256];
    pthread_mutex_t mu; /* homes: owner workers write, accepting workers read */
    struct home_ent *homes;
    struct cluster *cluster;
};

enum { TEP_HIDDEN = 1, TEP_GHOST = 2 };

struct troom;

/* A room endpoint of this module; passed to lib/room tagged (low bit set)
 * so that trunk_room_ops tells it from a session. */
/* A replayed datagram that arrived before its ghost's JOINED. */
struct held_pkt {
    struct held_pkt *next;
    uint32_t len;
    uint8_t d[];
};
#define HELD_MAX 256 /* per ghost: a replay is at most a few keyframes */

struct tep {
    uint8_t kind;
    struct troom *tr;
    uint32_t pid; /* ghost: the remote participant */
    struct room_member *m;
    /* ghost: keyframe-cache replay waiting for its JOINED (in order) */
    struct held_pkt *held, **held_tail;
    uint32_t n_held;
};

/* The newest sequence number of a (remote sender, stream) this relay
 * fanned out live on a subscription (replays at or below it are not sent
 * to the members again). */
struct seen_ent {
    uint32_t pid;
    uint32_t seq;
    uint8_t stream;
};
#define SEEN_MAX 1024 /* per subscription */

struct mirror {
    uint32_t pid;
    uint8_t flags; /* PERM_* */
    uint8_t name_len;
    uint8_t name[TRUNKMSG_NAME_MAX];
};

struct trunk;

struct troom {
    struct trunk *t;
    struct troom *next;
    uint32_t handle;
    uint64_t gen;
    bool active;        /* subscription accepted: media and presence flow */
    bool hidden_joined; /* the hidden member's JOINED (and cache replay) is done */
    /* Outbound: this relay's own members of the room (tr->mir) went to
     * zero; trunk_turn_end ends the subscription if they still are. */
    bool empty;
    /* Outbound: SUBSCRIBE again after a NOT_HOME (the home may not have
     * processed its own claim yet: REVIEW18 finding 5); doubling delay. */
    struct timer resub;
    uint64_t resub_ns;
    uint8_t room_len;
    char room[TRUNKMSG_ROOM_MAX + 1];
    struct tep hidden;
    struct tep **ghosts;
    uint32_t n_ghosts, cap_ghosts;
    struct mirror *mir; /* this side's members as the hidden member saw them */
    uint32_t n_mir, cap_mir;
    /* Kept while the subscription lives, across trunk losses (its ghosts
     * and their caches do not survive them). */
    struct seen_ent *seen;
    uint32_t n_seen, cap_seen;
};

enum tstate { T_DIALING = 0, T_HELLO, T_UP, T_DOWN };

struct trunk {
    struct trunk_set *set;
    struct trunk *next;
    struct trunk *grave_next; /* on set->grave: closed, freed at turn end */
    bool outbound;
    enum tstate st;
    struct quic_conn *c;
    struct quic_conn *dead; /* outbound: closed connection to free before redialing */
    char peer_id[TRUNKMSG_ID_MAX + 1];
    uint8_t peer_len;
    uint8_t peer_prefix; /* the peer's pid_prefix (its HELLO) */
    char host[64];
    uint16_t port;
    struct troom *rooms;
    uint32_t next_handle;
    struct timer redial;
    uint64_t backoff_ns;
    uint64_t down_since; /* 0: never up, or up */
    uint64_t last_rx;    /* anything received (liveness; ka_cb) */
    bool was_up;
};

struct homed {
    struct homed *next;
    uint8_t len;
    char room[TRUNKMSG_ROOM_MAX];
};

struct trunk_set {
    struct relay_worker *rw;
    struct trunk_shared *sh;
    struct quic_client *cl;
    struct timer cl_timer;
    struct timer ka; /* keep-alive: PING on every trunk up, idle timeout / 3 */
    struct trunk *trunks;
    /* Accepted trunks whose connection closed during this turn: out of
     * trunks, still allocated (callers up the stack — room callbacks, loops
     * over trunks or rooms — may hold them), freed by trunk_turn_end. */
    struct trunk *grave;
    bool check_empty;      /* some outbound troom has empty set */
    struct homed *homed;   /* static_home: rooms already reported to trunk_home_ops */
    struct homed *dropped; /* directory: subscriptions ended empty, room not closed yet */
    struct msg *scratch;
    bool live; /* between trunk_set_new and trunk_set_del, on its worker */
    _Atomic uint64_t st[STAT_N(struct trunk_stats)];
};

static const struct quic_app_ops trunk_client_ops;

static inline void *tep_ptr(struct tep *e)
{
    return (void *)((uintptr_t)e | 1u);
}

static inline struct tep *tep_of(void *ep)
{
    return ((uintptr_t)ep & 1u) ? (struct tep *)((uintptr_t)ep & ~(uintptr_t)1u) : NULL;
}

static inline void *trunk_user(struct trunk *t)
{
    return (void *)((uintptr_t)t | 1u);
}

static inline struct trunk *trunk_of(struct quic_conn *c)
{
    uintptr_t u = (uintptr_t)quic_conn_user(c);
    return (u & 1u) ? (struct trunk *)(u & ~(uintptr_t)1u) : NULL;
}

static inline uint64_t trunk_now_of(struct trunk_set *set)
{
    return worker_now(set->rw->w);
}

/* ------------------------------------------------ between trunk*.c */

/* trunk.c */
/* HELLO verified: the trunk is up (an outbound one re-subscribes). */
void trunk_up(struct trunk *t);
/* trunkauth.c */
int trunk_send_hello(struct trunk *t);
/* Counts and closes with TRUNK_ERR_AUTH. */
void trunk_close_auth(struct trunk *t, const char *why);
void trunk_on_hello(struct trunk *t, const struct trunkmsg *m);
/* Counts and logs a pid_prefix conflict; close: closes with TRUNK_ERR_PREFIX. */
void trunk_close_prefix(struct trunk *t, bool close);
struct trunk *trunk_out_get(struct trunk_set *set, const char *id, const char *addr);

/* trunkroom.c: keep-alive, messages, rooms on a trunk, members */
uint64_t trunk_ka_period(const struct trunk_set *set);
void trunk_ka_cb(struct timer *tm, uint64_t now, void *arg);
int trunk_send_msg(struct trunk *t, const struct trunkmsg *m);
void trunk_send_presence(struct troom *tr, uint8_t kind, const struct mirror *mi);
void trunk_send_subscribe(struct troom *tr);
struct tep *trunk_ghost_find(const struct troom *tr, uint32_t pid);
/* Whether participant pid belongs to the other side of tr's trunk (so its
 * presence, frames and link reports never go back there): by its id's
 * prefix, which does not depend on the ghost still being here. */
bool trunk_from_peer(const struct troom *tr, uint32_t pid);
void trunk_ghost_add(struct troom *tr, uint32_t pid, uint8_t flags, const uint8_t *name,
                     size_t name_len);
void trunk_ghost_del_at(struct troom *tr, uint32_t i);
/* A relayed datagram (sender id first) of ghost g arrived on tr: live, or
 * a keyframe-cache replay (docs/CLUSTER.md §2.5). */
void trunk_media_in(struct troom *tr, struct tep *g, const uint8_t *d, size_t len, bool replay);
/* trunkmedia.c: a ghost's held replay: dropped (ghost gone) / sent on (its
 * JOINED). */
void trunk_held_free(struct tep *g);
void trunk_held_flush(struct tep *g);
void trunk_ghosts_clear(struct troom *tr);
struct troom *trunk_troom_by_handle(struct trunk *t, uint32_t handle);
struct troom *trunk_troom_by_room(struct trunk *t, const char *room, size_t len);
struct troom *trunk_troom_new(struct trunk *t, uint32_t handle, uint64_t gen, const void *room,
                              size_t len);
void trunk_troom_del(struct troom *tr);
struct mirror *trunk_mirror_find(struct troom *tr, uint32_t pid);
void trunk_mirror_join(struct troom *tr, uint32_t pid, uint8_t flags, struct msg_str name);
void trunk_mirror_leave(struct troom *tr, uint32_t pid);
void trunk_troom_activate(struct troom *tr);
void trunk_troom_resub_later(struct troom *tr);

/* trunksub.c: subscriptions and fencing */
uint32_t trunk_home_check(struct trunk_shared *sh, const uint8_t *room, size_t len, uint64_t gen);
void trunk_empty_rooms(struct trunk_set *set);
/* The room closed: no more an empty subscription's room to learn the home
 * of again (set->dropped). */
void trunk_dropped_forget(struct trunk_set *set, const char *room, size_t len);
void trunk_post_local_join(struct relay_worker *rw, const char *room, size_t len);
void trunk_on_local_join(struct trunk_set *set, struct buf *b);

/* A home that lost a room (gone) or took it with a newer generation ends
 * the subscriptions it accepted with generation <= upto, on every worker
 * (TRUNK_MSG_REVOKE; payload: struct trunk_revoke in a buf). */
struct trunk_revoke {
    char room[TRUNKMSG_ROOM_MAX];
    size_t room_len;
    uint64_t upto;
};
/* The arguments of trunk_test_home / trunk_test_gone (in a buf). */
struct test_home {
    char room[TRUNKMSG_ROOM_MAX];
    size_t room_len;
    bool self, gone;
    char id[TRUNKMSG_ID_MAX + 1];
    char addr[256];
    uint64_t gen;
};

void trunk_on_revoke(struct trunk_set *set, const struct trunk_revoke *rv);

#endif
