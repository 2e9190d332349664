/* The owner side of rooms (lib/room/owner.c) driven directly, without
 * worker threads: a pool that is created but never started lends the shard
 * its struct worker, the test thread calls the owner's entry points
 * (owner_on_join, owner_on_leave, room_shard_flush) as the dispatcher would,
 * and the shard's send hook (room_int.h) captures every control message the
 * owner sends instead of handing it to the runtime. Each test checks one
 * transition: the room created and JOINED with the member list, one
 * snapshot per batch, a leave's snapshot and LEAVE event, the last leave
 * destroying the room, room and server full, and a duplicate identity
 * replacing the older member. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "room/room.h"
#include "room/room_int.h"
#include "room/snapshot.h"

#define N_WORKERS 3
#define OWNER 0
#define CAP_MAX 64

struct sent {
    unsigned to;
    struct worker_msg wm;
};

struct env {
    struct worker_pool *pool;
    struct room_shared *sh;
    struct room_shard *s;
    struct sent sent[CAP_MAX];
    unsigned n_sent;
    int64_t buf_base;
};

static struct env E;

static int capture(void *arg, unsigned to, struct worker_msg *wm)
{
    (void)arg;
    assert_true(E.n_sent < CAP_MAX);
    E.sent[E.n_sent++] = (struct sent){.to = to, .wm = *wm};
    return 0;
}

/* Releases what was captured (the hook took the references). */
static void sent_clear(void)
{
    for (unsigned i = 0; i < E.n_sent; i++)
        assert_true(room_msg_release(&E.sent[i].wm));
    E.n_sent = 0;
}

static int fake_media(void *ep, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    (void)ep, (void)b, (void)off, (void)len, (void)arg;
    fail_msg("the owner side delivered media");
    return 0;
}

static void fake_control(void *ep, const uint8_t *body, size_t len, void *arg)
{
    (void)ep, (void)body, (void)len, (void)arg;
    fail_msg("the owner side delivered control to an endpoint");
}

static const struct room_ops fake_ops = {.media = fake_media, .control = fake_control};

/* Set by the cluster tests (issue 18) before env_start: the shard's ops
 * (NULL: fake_ops) and the participant id prefix. */
static const struct room_ops *env_ops;
static uint8_t env_pid_prefix;

static void env_start(uint32_t max_rooms, uint32_t max_members)
{
    memset(&E, 0, sizeof(E));
    E.buf_base = buf_live();
    rcu_register_thread();
    struct room_limits lim = {
        .max_rooms = max_rooms, .max_members = max_members, .pid_prefix = env_pid_prefix};
    assert_int_equal(room_shared_new(&E.sh, N_WORKERS, &lim), 0);
    static const struct worker_ops ops = {0};
    struct worker_config cfg = {.n_workers = N_WORKERS, .no_pin = true};
    assert_int_equal(worker_pool_new(&E.pool, &cfg, &ops, NULL), 0);
    assert_int_equal(room_shard_new(&E.s, E.sh, worker_pool_get(E.pool, OWNER),
                                    env_ops != NULL ? env_ops : &fake_ops, NULL),
                     0);
    E.s->send_hook = capture;
}

static void env_stop(void)
{
    sent_clear();
    room_shard_del(E.s);
    worker_pool_del(E.pool);
    /* Retired snapshots and rooms; offline so that the grace periods the
     * barrier waits for need not wait for this thread. */
    rcu_thread_offline();
    rcu_barrier();
    rcu_thread_online();
    rcu_unregister_thread();
    room_shared_del(E.sh);
    assert_int_equal(buf_live(), E.buf_base);
}

/* A join request as the member side builds it. */
static void join(const char *room, uint32_t pid, unsigned worker, const char *ident)
{
    struct buf *b = buf_new(sizeof(struct join_req));
    assert_non_null(b);
    struct join_req *jr = (struct join_req *)b->data;
    memset(jr, 0, sizeof(*jr));
    jr->pid = pid;
    jr->slot = pid * 10;
    jr->gen = pid * 100;
    jr->join_seq = 1;
    jr->worker = (uint16_t)worker;
    jr->perms = PERM_ALL;
    jr->room_len = (uint8_t)strlen(room);
    memcpy(jr->room, room, jr->room_len);
    jr->ident_len = (uint8_t)strlen(ident);
    memcpy(jr->identity, ident, jr->ident_len);
    jr->name_len = 1;
    jr->name[0] = 'n';
    b->len = sizeof(*jr);
    owner_on_join(E.s, jr);
    buf_unref(b);
}

static void leave(const char *room, uint32_t pid)
{
    struct leave_req lr = {.pid = pid, .room_len = (uint8_t)strlen(room)};
    memcpy(lr.room, room, lr.room_len);
    owner_on_leave(E.s, &lr);
}

static uint64_t stat_of(size_t idx)
{
    struct room_stats st;
    room_shard_stats(E.s, &st);
    return ((const uint64_t *)&st)[idx];
}
#define STAT(field) stat_of(STAT_IDX(struct room_stats, field))

/* The captured messages of one type, in order. */
static unsigned sent_of(uint16_t type, const struct sent **out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < E.n_sent; i++)
        if (E.sent[i].wm.type == type && n < max)
            out[n++] = &E.sent[i];
    return n;
}

static struct buf *payload_buf(const struct sent *x)
{
    struct buf *b;
    memcpy(&b, x->wm.u.bytes, sizeof(b));
    return b;
}

/* Decodes the k-th framed message of frames[0..len). */
static void frame_at(const uint8_t *p, size_t len, unsigned k, struct msg *m)
{
    for (;;) {
        size_t hl, bl;
        assert_int_equal(frame_parse(p, len, &hl, &bl), 0);
        assert_true(hl + bl <= len);
        if (k-- == 0) {
            assert_int_equal(msg_decode(p + hl, bl, m), 0);
            return;
        }
        p += hl + bl;
        len -= hl + bl;
    }
}

static const struct ack_hdr *ack_of(const struct sent *x, struct msg *first)
{
    struct buf *b = payload_buf(x);
    const struct ack_hdr *a = (const struct ack_hdr *)b->data;
    assert_true(a->frames_len > 0);
    frame_at(b->data + sizeof(*a), a->frames_len, 0, first);
    return a;
}

static void events_of(const struct sent *x, struct msg *m)
{
    struct events_msg em;
    memcpy(&em, x->wm.u.bytes, sizeof(em));
    frame_at(em.b->data, em.b->len, 0, m);
}

/* The owner's published snapshot of a room by its slot, inside a section. */
static const struct snapshot *snap_of(uint32_t room_slot)
{
    struct room *r = rcu_dereference(E.sh->tables[OWNER].slots[room_slot]);
    return r ? rcu_dereference(r->snap) : NULL;
}

static struct msg M; /* large: not on the stack */

static void test_join_creates_room(void **state)
{
    (void)state;
    env_start(0, 0);
    join("r", 11, 1, "a");
    assert_int_equal(E.n_sent, 0); /* answers go out at the flush */
    assert_int_equal(room_shared_rooms(E.sh), 1);
    room_shard_flush(E.s);
    const struct sent *acks[4];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 1);
    assert_int_equal(acks[0]->to, 1);
    const struct ack_hdr *a = ack_of(acks[0], &M);
    assert_int_equal(a->code, 0);
    assert_int_equal(a->pid, 11);
    assert_int_equal(a->slot, 110);
    assert_int_equal(a->gen, 1100);
    assert_int_equal(a->owner, OWNER);
    assert_int_equal(a->version, 1);
    assert_int_equal(M.type, MSG_JOINED);
    assert_int_equal(M.u.joined.n_members, 0);
    assert_int_equal(M.u.joined.permissions, PERM_ALL);
    uint32_t room_slot = a->room_slot;
    rcu_read_lock();
    assert_int_equal(snapshot_count(snap_of(room_slot)), 1);
    rcu_read_unlock();
    sent_clear();

    /* The second joiner hears of the first in JOINED; the room's workers
     * get one EVENTS each. */
    join("r", 22, 2, "b");
    room_shard_flush(E.s);
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 1);
    assert_int_equal(acks[0]->to, 2);
    a = ack_of(acks[0], &M);
    assert_int_equal(a->code, 0);
    assert_int_equal(a->room_slot, room_slot);
    assert_int_equal(a->version, 2);
    assert_int_equal(M.type, MSG_JOINED);
    assert_int_equal(M.u.joined.n_members, 1);
    assert_int_equal(M.u.joined.member_total, 1);
    assert_int_equal(M.u.joined.members[0].participant_id, 11);
    const struct sent *evs[4];
    assert_int_equal(sent_of(ROOM_MSG_EVENTS, evs, 4), 2);
    assert_int_equal(evs[0]->to, 1);
    assert_int_equal(evs[1]->to, 2);
    events_of(evs[0], &M);
    assert_int_equal(M.type, MSG_PARTICIPANT_EVENTS);
    assert_int_equal(M.u.events.n_events, 1);
    assert_int_equal(M.u.events.events[0].kind, MSG_EV_JOIN);
    assert_int_equal(M.u.events.events[0].participant_id, 22);
    assert_int_equal(room_shared_rooms(E.sh), 1);
    assert_int_equal(room_shared_participants(E.sh), 2);
    assert_int_equal(STAT(joins), 2);
    assert_int_equal(STAT(rooms_created), 1);
    env_stop();
}

/* Joins applied in one turn: one snapshot, one answer each. */
static void test_batch_one_snapshot(void **state)
{
    (void)state;
    env_start(0, 0);
    char id[8];
    for (uint32_t i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "u%u", i);
        join("batch", i, 1 + i % 2, id);
    }
    assert_int_equal(STAT(snapshots), 0);
    room_shard_flush(E.s);
    assert_int_equal(STAT(snapshots), 1);
    const struct sent *acks[8];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 8), 5);
    const struct ack_hdr *a = ack_of(acks[0], &M);
    assert_int_equal(a->version, 1);
    for (unsigned k = 1; k < 5; k++)
        assert_int_equal(ack_of(acks[k], &M)->version, 1);
    rcu_read_lock();
    const struct snapshot *sn = snap_of(a->room_slot);
    assert_int_equal(snapshot_count(sn), 5);
    assert_int_equal(snapshot_version(sn), 1);
    rcu_read_unlock();
    /* A flush with nothing new publishes nothing. */
    sent_clear();
    room_shard_flush(E.s);
    assert_int_equal(STAT(snapshots), 1);
    assert_int_equal(E.n_sent, 0);
    env_stop();
}

static void test_leave(void **state)
{
    (void)state;
    env_start(0, 0);
    join("l", 1, 1, "a");
    join("l", 2, 2, "b");
    room_shard_flush(E.s);
    const struct sent *acks[4];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 2);
    uint32_t room_slot = ack_of(acks[0], &M)->room_slot;
    sent_clear();

    leave("l", 2);
    room_shard_flush(E.s);
    assert_int_equal(STAT(leaves), 1);
    rcu_read_lock();
    const struct snapshot *sn = snap_of(room_slot);
    assert_int_equal(snapshot_version(sn), 2);
    assert_int_equal(snapshot_count(sn), 1);
    assert_null(snapshot_find(sn, 2));
    assert_non_null(snapshot_find(sn, 1));
    rcu_read_unlock();
    /* One EVENTS, to the remaining member's worker only: LEAVE. */
    const struct sent *evs[4];
    assert_int_equal(sent_of(ROOM_MSG_EVENTS, evs, 4), 1);
    assert_int_equal(evs[0]->to, 1);
    events_of(evs[0], &M);
    assert_int_equal(M.u.events.n_events, 1);
    assert_int_equal(M.u.events.events[0].kind, MSG_EV_LEAVE);
    assert_int_equal(M.u.events.events[0].participant_id, 2);
    assert_int_equal(room_shared_participants(E.sh), 1);
    assert_int_equal(room_shared_rooms(E.sh), 1);
    env_stop();
}

/* A JOIN and a LEAVE of one participant applied in one turn send nothing
 * to the others, never a LEAVE alone (issue 18: a remote member announced
 * and withdrawn back to back over a trunk reached members as a bare LEAVE);
 * the other changes of the batch go out as usual. */
static void test_join_leave_one_turn(void **state)
{
    (void)state;
    env_start(0, 0);
    join("jl", 1, 1, "a");
    room_shard_flush(E.s);
    sent_clear();

    join("jl", 2, 2, "b");
    leave("jl", 2);
    join("jl", 3, 2, "c");
    room_shard_flush(E.s);
    const struct sent *evs[4];
    assert_int_equal(sent_of(ROOM_MSG_EVENTS, evs, 4), 2);
    events_of(evs[0], &M);
    assert_int_equal(M.u.events.n_events, 1);
    assert_int_equal(M.u.events.events[0].kind, MSG_EV_JOIN);
    assert_int_equal(M.u.events.events[0].participant_id, 3);
    sent_clear();

    /* a present member's LEAVE still goes out next to a hidden pair */
    join("jl", 4, 2, "d");
    leave("jl", 4);
    leave("jl", 3);
    room_shard_flush(E.s);
    assert_int_equal(sent_of(ROOM_MSG_EVENTS, evs, 4), 1);
    events_of(evs[0], &M);
    assert_int_equal(M.u.events.n_events, 1);
    assert_int_equal(M.u.events.events[0].kind, MSG_EV_LEAVE);
    assert_int_equal(M.u.events.events[0].participant_id, 3);
    sent_clear();

    /* only the pair in the batch: no EVENTS message at all */
    join("jl", 5, 2, "e");
    leave("jl", 5);
    room_shard_flush(E.s);
    assert_int_equal(sent_of(ROOM_MSG_EVENTS, evs, 4), 0);
    assert_int_equal(room_shared_participants(E.sh), 1);
    env_stop();
}

static void test_last_leave_destroys(void **state)
{
    (void)state;
    env_start(0, 0);
    join("d", 1, 1, "a");
    room_shard_flush(E.s);
    const struct sent *acks[4];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 1);
    uint32_t room_slot = ack_of(acks[0], &M)->room_slot;
    sent_clear();
    leave("d", 1);
    room_shard_flush(E.s);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    assert_int_equal(room_shared_participants(E.sh), 0);
    assert_int_equal(STAT(rooms_destroyed), 1);
    rcu_read_lock();
    assert_null(rcu_dereference(E.sh->tables[OWNER].slots[room_slot]));
    rcu_read_unlock();
    assert_int_equal(E.n_sent, 0); /* nobody left to tell */
    /* The id is free again: a new room, a new generation. */
    join("d", 2, 1, "b");
    room_shard_flush(E.s);
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 1);
    assert_int_equal(ack_of(acks[0], &M)->code, 0);
    assert_int_equal(STAT(rooms_created), 2);
    env_stop();
}

static void test_room_full(void **state)
{
    (void)state;
    env_start(0, 2);
    join("f", 1, 1, "a");
    join("f", 2, 1, "b");
    join("f", 3, 2, "c");
    room_shard_flush(E.s);
    const struct sent *acks[4];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 3);
    /* The rejection went out at once, before the flush's answers. */
    const struct ack_hdr *a = ack_of(acks[0], &M);
    assert_int_equal(a->pid, 3);
    assert_int_equal(acks[0]->to, 2);
    assert_int_equal(a->code, PROTO_ERR_ROOM_FULL);
    assert_int_equal(M.type, MSG_JOIN_REJECTED);
    assert_int_equal(M.u.join_rejected.code, PROTO_ERR_ROOM_FULL);
    assert_int_equal(ack_of(acks[1], &M)->code, 0);
    assert_int_equal(ack_of(acks[2], &M)->code, 0);
    assert_int_equal(STAT(rejects_room_full), 1);
    assert_int_equal(room_shared_participants(E.sh), 2);
    env_stop();
}

static void test_server_full(void **state)
{
    (void)state;
    env_start(1, 0);
    join("one", 1, 1, "a");
    join("two", 2, 2, "b");
    const struct sent *acks[4];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 1);
    const struct ack_hdr *a = ack_of(acks[0], &M);
    assert_int_equal(a->pid, 2);
    assert_int_equal(a->code, PROTO_ERR_SERVER_FULL);
    assert_int_equal(M.type, MSG_JOIN_REJECTED);
    assert_int_equal(M.u.join_rejected.code, PROTO_ERR_SERVER_FULL);
    assert_int_equal(STAT(rejects_server_full), 1);
    assert_int_equal(room_shared_rooms(E.sh), 1);
    room_shard_flush(E.s);
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 2);
    assert_int_equal(ack_of(acks[1], &M)->code, 0);
    env_stop();
}

static void test_duplicate_identity(void **state)
{
    (void)state;
    env_start(0, 0);
    join("dup", 1, 1, "same");
    join("dup", 2, 1, "other");
    room_shard_flush(E.s);
    sent_clear();
    join("dup", 3, 2, "same");
    /* REPLACED to the old member's worker, with its handle, at once. */
    const struct sent *rep[4];
    assert_int_equal(sent_of(ROOM_MSG_REPLACED, rep, 4), 1);
    assert_int_equal(rep[0]->to, 1);
    struct replaced_msg rm;
    memcpy(&rm, rep[0]->wm.u.bytes, sizeof(rm));
    assert_int_equal(rm.pid, 1);
    assert_int_equal(rm.slot, 10);
    assert_int_equal(rm.gen, 100);
    assert_int_equal(STAT(replaced), 1);
    room_shard_flush(E.s);
    /* The newcomer's JOINED lists only the other member. */
    const struct sent *acks[4];
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 4), 1);
    assert_int_equal(acks[0]->to, 2);
    ack_of(acks[0], &M);
    assert_int_equal(M.u.joined.n_members, 1);
    assert_int_equal(M.u.joined.members[0].participant_id, 2);
    /* The others hear LEAVE old, JOIN new, in one message. */
    const struct sent *evs[4];
    assert_int_equal(sent_of(ROOM_MSG_EVENTS, evs, 4), 2);
    events_of(evs[0], &M);
    assert_int_equal(M.u.events.n_events, 2);
    assert_int_equal(M.u.events.events[0].kind, MSG_EV_LEAVE);
    assert_int_equal(M.u.events.events[0].participant_id, 1);
    assert_int_equal(M.u.events.events[1].kind, MSG_EV_JOIN);
    assert_int_equal(M.u.events.events[1].participant_id, 3);
    assert_int_equal(room_shared_participants(E.sh), 2);
    rcu_read_lock();
    const struct snapshot *sn = snap_of(ack_of(acks[0], &M)->room_slot);
    assert_null(snapshot_find(sn, 1));
    assert_non_null(snapshot_find(sn, 3));
    rcu_read_unlock();
    env_stop();
}

/* Participant ids near the u32 wrap (issue 15): never 0, always this
 * worker's residue, never the id of a live member. The test hook is
 * s->pid_seq, set to start just before the last k that fits. */
static void test_pid_wrap(void **state)
{
    (void)state;
    env_start(0, 0);
    int ep;
    struct room_member *m[8];
    E.s->pid_seq = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(room_member_new(E.s, &ep, &m[i]), 0);
    room_member_del(m[1]); /* k = 1 is free again; k = 0 and 2 stay alive */
    uint32_t kmax = (UINT32_MAX - 1u - OWNER) / N_WORKERS;
    E.s->pid_seq = kmax - 1;
    for (int i = 3; i < 8; i++)
        assert_int_equal(room_member_new(E.s, &ep, &m[i]), 0);
    assert_int_equal(room_member_pid(m[3]), (kmax - 1) * N_WORKERS + OWNER + 1);
    assert_int_equal(room_member_pid(m[4]), kmax * N_WORKERS + OWNER + 1);
    assert_int_equal(room_member_pid(m[5]), 1 * N_WORKERS + OWNER + 1); /* m[1]'s, freed */
    assert_int_equal(room_member_pid(m[6]), 3 * N_WORKERS + OWNER + 1); /* k = 2 is alive */
    assert_int_equal(room_member_pid(m[7]), 4 * N_WORKERS + OWNER + 1);
    int live[] = {0, 2, 3, 4, 5, 6, 7};
    for (unsigned i = 0; i < 7; i++) {
        uint32_t p = room_member_pid(m[live[i]]);
        assert_int_not_equal(p, 0);
        assert_int_equal(p % N_WORKERS, (OWNER + 1) % N_WORKERS);
        for (unsigned j = 0; j < i; j++)
            assert_int_not_equal(p, room_member_pid(m[live[j]]));
    }
    assert_int_equal(E.s->pid_wraps, 1);
    for (unsigned i = 0; i < 7; i++)
        room_member_del(m[live[i]]);
    env_stop();
}

/* Cluster prefix (issue 18): the top byte is the relay's, the issue-15
 * rule holds on the low 24 bits, and two relays (prefixes 1 and 2) that
 * make the same members hand out different ids. */
static void test_pid_prefix(void **state)
{
    (void)state;
    int ep;
    uint32_t first[2][3];
    for (unsigned relay = 0; relay < 2; relay++) {
        env_pid_prefix = (uint8_t)(relay + 1);
        env_start(0, 0);
        struct room_member *m[8];
        for (int i = 0; i < 3; i++) {
            assert_int_equal(room_member_new(E.s, &ep, &m[i]), 0);
            first[relay][i] = room_member_pid(m[i]);
            assert_int_equal(first[relay][i] >> 24, relay + 1);
            assert_int_equal(first[relay][i] & 0xffffffu, (uint32_t)i * N_WORKERS + OWNER + 1);
        }
        room_member_del(m[1]);
        uint32_t kmax = (0xffffffu - 1u - OWNER) / N_WORKERS;
        E.s->pid_seq = kmax - 1;
        for (int i = 3; i < 8; i++)
            assert_int_equal(room_member_new(E.s, &ep, &m[i]), 0);
        uint32_t pre = (uint32_t)(relay + 1) << 24;
        assert_int_equal(room_member_pid(m[3]), pre | ((kmax - 1) * N_WORKERS + OWNER + 1));
        assert_int_equal(room_member_pid(m[4]), pre | (kmax * N_WORKERS + OWNER + 1));
        assert_int_equal(room_member_pid(m[5]), pre | (1 * N_WORKERS + OWNER + 1)); /* wrapped */
        assert_int_equal(room_member_pid(m[6]), pre | (3 * N_WORKERS + OWNER + 1)); /* 2 alive */
        int live[] = {0, 2, 3, 4, 5, 6, 7};
        for (unsigned i = 0; i < 7; i++) {
            uint32_t p = room_member_pid(m[live[i]]);
            assert_int_equal(p >> 24, relay + 1);
            for (unsigned j = 0; j < i; j++)
                assert_int_not_equal(p, room_member_pid(m[live[j]]));
        }
        assert_int_equal(E.s->pid_wraps, 1);
        for (unsigned i = 0; i < 7; i++)
            room_member_del(m[live[i]]);
        env_stop();
    }
    env_pid_prefix = 0;
    for (int i = 0; i < 3; i++)
        assert_int_not_equal(first[0][i], first[1][i]);
}

/* The cluster gate (issue 18): joins of a room that is not live wait until
 * room_shard_gate_open, a member that leaves meanwhile is forgotten, an
 * open gate applies the rest in order, a closed one rejects them, and the
 * room's end is reported. */
static uint32_t gate_code, gate_calls, closed_calls;

static uint32_t fake_gate(const uint8_t *room, size_t len, const char **reason, uint32_t *retry_ms,
                          void *arg)
{
    (void)room;
    (void)len;
    (void)arg;
    gate_calls++;
    *reason = "gate says no";
    *retry_ms = 1234;
    return gate_code;
}

static void fake_closed(const uint8_t *room, size_t len, void *arg)
{
    (void)room;
    (void)len;
    (void)arg;
    closed_calls++;
}

static void test_gate(void **state)
{
    (void)state;
    static struct room_ops gated;
    gated = fake_ops;
    gated.gate = fake_gate;
    gated.room_closed = fake_closed;
    env_ops = &gated;
    gate_calls = closed_calls = 0;
    env_start(0, 0);
    const struct sent *acks[8];

    gate_code = ROOM_GATE_WAIT;
    join("g", 1, 1, "a");
    join("g", 2, 2, "b");
    join("g", 3, 1, "c");
    room_shard_flush(E.s);
    assert_int_equal(gate_calls, 1); /* the later joins wait behind the first */
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 8), 0);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    leave("g", 2); /* gone before the gate opened */
    assert_true(room_shard_gate_open(E.s, (const uint8_t *)"g", 1, ROOM_GATE_OPEN, NULL, 0));
    room_shard_flush(E.s);
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 8), 2);
    assert_int_equal(ack_of(acks[0], &M)->pid, 1);
    assert_int_equal(M.type, MSG_JOINED);
    assert_int_equal(ack_of(acks[1], &M)->pid, 3);
    assert_int_equal(room_shared_participants(E.sh), 2);
    sent_clear();
    /* The room is live: joins go straight in, no gate. */
    join("g", 4, 1, "d");
    assert_int_equal(gate_calls, 1);
    leave("g", 1);
    leave("g", 3);
    leave("g", 4);
    room_shard_flush(E.s);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    assert_int_equal(closed_calls, 1);
    sent_clear();

    /* Closed gate: every parked join rejected with its code and reason. */
    join("h", 5, 1, "e");
    join("h", 6, 2, "f");
    assert_false(room_shard_gate_open(E.s, (const uint8_t *)"h", 1, PROTO_ERR_SERVER_FULL,
                                      "directory down", 2000));
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 8), 2);
    for (int i = 0; i < 2; i++) {
        const struct ack_hdr *a = ack_of(acks[i], &M);
        assert_int_equal(a->code, PROTO_ERR_SERVER_FULL);
        assert_int_equal(M.type, MSG_JOIN_REJECTED);
        assert_int_equal(M.u.join_rejected.retry_after_ms, 2000);
        assert_int_equal(M.u.join_rejected.reason.len, strlen("directory down"));
    }
    sent_clear();
    /* A gate that refuses at once. */
    gate_code = PROTO_ERR_SERVER_FULL;
    join("i", 7, 1, "g");
    assert_int_equal(sent_of(ROOM_MSG_ACK, acks, 8), 1);
    assert_int_equal(ack_of(acks[0], &M)->code, PROTO_ERR_SERVER_FULL);
    assert_int_equal(M.u.join_rejected.retry_after_ms, 1234);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    env_stop();
    env_ops = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_creates_room),
        cmocka_unit_test(test_batch_one_snapshot),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_join_leave_one_turn),
        cmocka_unit_test(test_last_leave_destroys),
        cmocka_unit_test(test_room_full),
        cmocka_unit_test(test_server_full),
        cmocka_unit_test(test_duplicate_identity),
        cmocka_unit_test(test_pid_wrap),
        cmocka_unit_test(test_pid_prefix),
        cmocka_unit_test(test_gate),
    };
    return cmocka_run_group_tests_name("owner", tests, NULL, NULL);
}
