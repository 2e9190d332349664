/* Rooms on the real worker runtime, with fake endpoints instead of QUIC
 * connections: joins and leaves across shards, snapshot batching, exact
 * fan-out, presence deltas, limits, duplicate identities, permissions and
 * teardown with nothing left behind, and the same order of events for a
 * join whether the room's owner is the joiner's worker or another one. The test thread drives
 * workers by posting commands; each endpoint's log is read under its mutex. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "room/room.h"

#define MAX_EP 256
#define MAX_LOG 8192
#define CMD_MSG 0x0300

struct rx {
    uint32_t sender;
    uint32_t seq;
};

struct ep {
    unsigned worker;
    struct room_member *m; /* worker-owned */
    uint32_t pid;
    pthread_mutex_t mu;
    uint32_t n_media;
    struct rx media[MAX_LOG];
    bool got_answer;
    uint32_t answer_code;
    uint32_t joined_n, joined_total;
    uint32_t joined_pids[256];
    uint32_t n_events;
    struct {
        uint8_t kind;
        uint32_t pid;
    } events[1024];
    uint32_t n_event_msgs;
    bool replaced;
};

enum cmd_kind { CMD_NEW, CMD_JOIN, CMD_SEND, CMD_LEAVE, CMD_DEL, CMD_NEW_REMOTE };

struct cmd {
    enum cmd_kind kind;
    struct ep *ep[64];
    unsigned n_ep;
    const char *room;
    const char *identity[64];
    unsigned perms;
    uint32_t seq_from, count;
    int rc[64];
    _Atomic int done;
};

struct env {
    struct worker_pool *pool;
    struct room_shared *sh;
    struct room_shard *shards[WORKER_MAX];
    struct ep eps[MAX_EP];
    unsigned n_ep;
};

static struct env E;

/* ----------------------------------------------------------------- trace */

/* What endpoints saw, in order, while tracing is on (test_local_order). */
enum {
    TR_JOIN_CALL = 1, /* the command is about to call room_join */
    TR_JOIN_RET,      /* room_join returned */
    TR_REPLACED,      /* ops->replaced */
    TR_JOINED_CB,     /* ops->joined, code 0 */
    TR_CTRL = 0x100,  /* ops->control: TR_CTRL + message type */
};

#define TRACE_MAX 64

struct trace_ent {
    const struct ep *ep;
    uint32_t what;
};

static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;
static struct trace_ent trace[TRACE_MAX];
static unsigned n_trace;
static _Atomic int trace_on;

static void trace_add(const struct ep *ep, uint32_t what)
{
    if (!atomic_load(&trace_on))
        return;
    pthread_mutex_lock(&trace_mu);
    if (n_trace < TRACE_MAX)
        trace[n_trace++] = (struct trace_ent){.ep = ep, .what = what};
    pthread_mutex_unlock(&trace_mu);
}

/* -------------------------------------------------------------- endpoint */

static int ep_media(void *epv, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    (void)arg;
    struct ep *ep = epv;
    struct media_hdr h;
    int hl = media_r2c_decode(b->data + off, len, &h);
    assert_true(hl > 0);
    pthread_mutex_lock(&ep->mu);
    if (ep->n_media < MAX_LOG)
        ep->media[ep->n_media++] = (struct rx){.sender = h.participant_id, .seq = h.seq};
    pthread_mutex_unlock(&ep->mu);
    return 0;
}

static void ep_control(void *epv, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct ep *ep = epv;
    struct msg *m = malloc(sizeof(*m));
    assert_non_null(m);
    assert_int_equal(msg_decode(body, len, m), 0);
    trace_add(ep, TR_CTRL + m->type);
    pthread_mutex_lock(&ep->mu);
    switch (m->type) {
    case MSG_JOINED:
        ep->got_answer = true;
        ep->answer_code = 0;
        ep->joined_n = m->u.joined.n_members;
        ep->joined_total = m->u.joined.member_total;
        for (uint32_t i = 0; i < m->u.joined.n_members && i < 256; i++)
            ep->joined_pids[i] = m->u.joined.members[i].participant_id;
        break;
    case MSG_JOIN_REJECTED:
        ep->got_answer = true;
        ep->answer_code = m->u.join_rejected.code;
        break;
    case MSG_PARTICIPANT_EVENTS:
        ep->n_event_msgs++;
        for (uint32_t i = 0; i < m->u.events.n_events && ep->n_events < 1024; i++) {
            ep->events[ep->n_events].kind = m->u.events.events[i].kind;
            ep->events[ep->n_events].pid = m->u.events.events[i].participant_id;
            ep->n_events++;
        }
        break;
    default:
        fail_msg("unexpected control message type %lu", (unsigned long)m->type);
    }
    pthread_mutex_unlock(&ep->mu);
    free(m);
}

static void ep_replaced(void *epv, void *arg)
{
    (void)arg;
    struct ep *ep = epv;
    trace_add(ep, TR_REPLACED);
    pthread_mutex_lock(&ep->mu);
    ep->replaced = true;
    pthread_mutex_unlock(&ep->mu);
}

static void ep_joined(void *epv, uint32_t code, void *arg)
{
    (void)arg;
    trace_add(epv, TR_JOINED_CB + code);
}

static const struct room_ops ep_ops = {
    .media = ep_media,
    .control = ep_control,
    .joined = ep_joined,
    .replaced = ep_replaced,
};

/* --------------------------------------------------------------- workers */

/* Payload bytes of CMD_SEND datagrams (set by the main thread between
 * commands; post_wait orders it before the worker's read). */
static size_t send_payload = 8;

static void run_cmd(struct worker *w, struct cmd *c)
{
    struct room_shard *s = E.shards[worker_id(w)];
    for (unsigned i = 0; i < c->n_ep; i++) {
        struct ep *ep = c->ep[i];
        switch (c->kind) {
        case CMD_NEW:
            c->rc[i] = room_member_new(s, ep, &ep->m);
            if (c->rc[i] == 0)
                ep->pid = room_member_pid(ep->m);
            break;
        case CMD_NEW_REMOTE: /* with the pid the test set */
            c->rc[i] = room_member_new_remote(s, ep, ep->pid, &ep->m);
            break;
        case CMD_JOIN: {
            const char *id = c->identity[i] ? c->identity[i] : "";
            trace_add(ep, TR_JOIN_CALL);
            c->rc[i] =
                room_join(ep->m, (const uint8_t *)c->room, strlen(c->room), (const uint8_t *)id,
                          strlen(id), (const uint8_t *)"name", 4, c->perms);
            trace_add(ep, TR_JOIN_RET);
            break;
        }
        case CMD_SEND:
            for (uint32_t k = 0; k < c->count; k++) {
                uint8_t d[ROOM_MAX_DATAGRAM + 16];
                size_t pl = send_payload; /* 8 unless a test changes it */
                assert_true(MEDIA_C2R_HDR_LEN + pl <= sizeof(d));
                struct media_hdr h = {.stream_id = 1, .seq = c->seq_from + k, .timestamp = k};
                assert_int_equal(media_c2r_encode(&h, d, sizeof(d)), MEDIA_C2R_HDR_LEN);
                memset(d + MEDIA_C2R_HDR_LEN, 0xab, pl);
                c->rc[i] = room_publish(ep->m, d, MEDIA_C2R_HDR_LEN + pl);
            }
            break;
        case CMD_LEAVE:
            c->rc[i] = room_leave(ep->m);
            break;
        case CMD_DEL:
            room_member_del(ep->m);
            ep->m = NULL;
            c->rc[i] = 0;
            break;
        }
    }
    atomic_store_explicit(&c->done, 1, memory_order_release);
}

static int w_start(struct worker *w, void *arg)
{
    (void)arg;
    return room_shard_new(&E.shards[worker_id(w)], E.sh, w, &ep_ops, NULL);
}

static void w_stop(struct worker *w, void *arg)
{
    (void)arg;
    unsigned id = worker_id(w);
    for (unsigned i = 0; i < E.n_ep; i++) {
        if (E.eps[i].worker == id && E.eps[i].m != NULL) {
            room_member_del(E.eps[i].m);
            E.eps[i].m = NULL;
        }
    }
    /* Messages that leave sent now are discarded by the runtime. */
    room_shard_del(E.shards[id]);
    E.shards[id] = NULL;
}

static void w_msg(struct worker *w, const struct worker_msg *msg, void *arg)
{
    (void)arg;
    if (msg->type == CMD_MSG) {
        run_cmd(w, msg->u.ptr[0]);
        return;
    }
    /* Room messages go to the handler the shard registered (worker_handle). */
    fail_msg("message 0x%x reached ops->on_msg", msg->type);
}

static void w_turn_end(struct worker *w, void *arg)
{
    (void)arg;
    room_shard_flush(E.shards[worker_id(w)]);
}

static void w_discard(struct worker *w, const struct worker_msg *msg, void *arg)
{
    (void)w;
    (void)arg;
    /* Room messages go to the shard's registered discard. */
    if (msg->type != CMD_MSG)
        fail_msg("message 0x%x reached ops->on_discard", msg->type);
}

static const struct worker_ops wops = {
    .start = w_start,
    .stop = w_stop,
    .on_msg = w_msg,
    .on_turn_end = w_turn_end,
    .on_discard = w_discard,
};

static int64_t buf_base;
static uint8_t env_pid_prefix; /* room_limits.pid_prefix of the next env_start */

static void env_start(unsigned n_workers, uint32_t max_rooms, uint32_t max_members)
{
    memset(&E, 0, sizeof(E));
    buf_base = buf_live();
    struct room_limits lim = {
        .max_rooms = max_rooms, .max_members = max_members, .pid_prefix = env_pid_prefix};
    assert_int_equal(room_shared_new(&E.sh, n_workers, &lim), 0);
    struct worker_config cfg = {.n_workers = n_workers, .no_pin = true};
    assert_int_equal(worker_pool_new(&E.pool, &cfg, &wops, NULL), 0);
    assert_int_equal(worker_pool_start(E.pool), 0);
}

static void env_stop(void)
{
    worker_pool_stop(E.pool);
    worker_pool_del(E.pool);
    /* Deferred frees of snapshots and rooms. */
    rcu_register_thread();
    rcu_barrier();
    rcu_unregister_thread();
    assert_int_equal(room_shared_rooms(E.sh), 0);
    room_shared_del(E.sh);
    for (unsigned i = 0; i < E.n_ep; i++)
        pthread_mutex_destroy(&E.eps[i].mu);
    assert_int_equal(buf_live(), buf_base);
}

static struct ep *ep_add(unsigned worker)
{
    assert_true(E.n_ep < MAX_EP);
    struct ep *ep = &E.eps[E.n_ep++];
    memset(ep, 0, sizeof(*ep));
    pthread_mutex_init(&ep->mu, NULL);
    ep->worker = worker;
    return ep;
}

/* Posts one command to a worker and waits until it ran. */
static void post_wait(unsigned worker, struct cmd *c)
{
    struct worker_msg wm = {.type = CMD_MSG};
    wm.u.ptr[0] = c;
    atomic_store(&c->done, 0);
    assert_int_equal(worker_pool_post(E.pool, worker, &wm), 0);
    for (int i = 0; i < 5000 && !atomic_load_explicit(&c->done, memory_order_acquire); i++)
        usleep(1000);
    assert_true(atomic_load(&c->done));
}

static void cmd_one(enum cmd_kind kind, struct ep *ep, const char *room, const char *identity,
                    unsigned perms, uint32_t seq_from, uint32_t count, int expect_rc)
{
    struct cmd c = {.kind = kind,
                    .n_ep = 1,
                    .room = room,
                    .perms = perms,
                    .seq_from = seq_from,
                    .count = count};
    c.ep[0] = ep;
    c.identity[0] = identity;
    post_wait(ep->worker, &c);
    assert_int_equal(c.rc[0], expect_rc);
}

typedef bool (*pred_fn)(void *);

static bool wait_for(pred_fn pred, void *arg)
{
    for (int i = 0; i < 5000; i++) {
        if (pred(arg))
            return true;
        usleep(1000);
    }
    return pred(arg);
}

static bool ep_answered(void *arg)
{
    struct ep *ep = arg;
    pthread_mutex_lock(&ep->mu);
    bool r = ep->got_answer;
    pthread_mutex_unlock(&ep->mu);
    return r;
}

static void join_wait(struct ep *ep, const char *room, const char *identity, unsigned perms,
                      uint32_t expect_code)
{
    pthread_mutex_lock(&ep->mu);
    ep->got_answer = false;
    pthread_mutex_unlock(&ep->mu);
    cmd_one(CMD_JOIN, ep, room, identity, perms, 0, 0, 0);
    assert_true(wait_for(ep_answered, ep));
    assert_int_equal(ep->answer_code, expect_code);
}

static struct ep *new_member(unsigned worker)
{
    struct ep *ep = ep_add(worker);
    cmd_one(CMD_NEW, ep, NULL, NULL, 0, 0, 0, 0);
    return ep;
}

static uint32_t media_count(struct ep *ep)
{
    pthread_mutex_lock(&ep->mu);
    uint32_t n = ep->n_media;
    pthread_mutex_unlock(&ep->mu);
    return n;
}

static void sum_stats(struct room_stats *tot)
{
    memset(tot, 0, sizeof(*tot));
    unsigned n = worker_pool_size(E.pool);
    for (unsigned i = 0; i < n; i++) {
        struct room_stats st;
        room_shard_stats(E.shards[i], &st);
        uint64_t *d = (uint64_t *)tot;
        const uint64_t *s = (const uint64_t *)&st;
        for (size_t k = 0; k < sizeof(st) / sizeof(uint64_t); k++)
            d[k] += s[k];
    }
}

/* ------------------------------------------------------------------ tests */

/* Every member of R rooms x S members sends K datagrams; each receives
 * exactly the others' datagrams of its own room, once each. */
static void exact_delivery(unsigned n_workers)
{
    enum { R = 3, S = 4, K = 25 };
    env_start(n_workers, 0, 0);
    struct ep *eps[R][S];
    char rooms[R][16];
    for (unsigned r = 0; r < R; r++) {
        snprintf(rooms[r], sizeof(rooms[r]), "room-%u", r);
        for (unsigned i = 0; i < S; i++) {
            /* Spread members over workers regardless of the room's owner. */
            eps[r][i] = new_member((r + i) % n_workers);
            char id[16];
            snprintf(id, sizeof(id), "u%u-%u", r, i);
            join_wait(eps[r][i], rooms[r], id, PERM_ALL, 0);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < S; i++)
            cmd_one(CMD_SEND, eps[r][i], NULL, NULL, 0, 1000 * (r * S + i), K, 0);
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < S; i++) {
            struct ep *ep = eps[r][i];
            for (int t = 0; t < 5000 && media_count(ep) < (S - 1) * K; t++)
                usleep(1000);
        }
    usleep(20000); /* let any extra (wrong) delivery arrive */
    for (unsigned r = 0; r < R; r++) {
        for (unsigned i = 0; i < S; i++) {
            struct ep *ep = eps[r][i];
            assert_int_equal(media_count(ep), (S - 1) * K);
            uint8_t seen[R * S][K];
            memset(seen, 0, sizeof(seen));
            for (uint32_t k = 0; k < ep->n_media; k++) {
                uint32_t idx = ep->media[k].seq / 1000, q = ep->media[k].seq % 1000;
                assert_true(idx < R * S && q < K);
                assert_int_equal(idx / S, r);         /* never another room */
                assert_int_not_equal(idx, r * S + i); /* never our own */
                assert_int_equal(ep->media[k].sender, eps[idx / S][idx % S]->pid);
                assert_int_equal(seen[idx][q], 0); /* once */
                seen[idx][q] = 1;
            }
        }
    }
    struct room_stats st;
    sum_stats(&st);
    assert_int_equal(st.media_in, R * S * K);
    assert_int_equal(st.media_out, R * S * (S - 1) * K);
    assert_int_equal(st.fanout_ring_drops, 0);
    assert_int_equal(room_shared_rooms(E.sh), R);
    assert_int_equal(room_shared_participants(E.sh), R * S);
    /* Everyone leaves: rooms torn down. */
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < S; i++)
            cmd_one(CMD_DEL, eps[r][i], NULL, NULL, 0, 0, 0, 0);
    for (int t = 0; t < 5000 && room_shared_rooms(E.sh) != 0; t++)
        usleep(1000);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    assert_int_equal(room_shared_participants(E.sh), 0);
    env_stop();
}

static void test_exact_delivery_1w(void **state)
{
    (void)state;
    exact_delivery(1);
}

static void test_exact_delivery_2w(void **state)
{
    (void)state;
    exact_delivery(2);
}

static uint32_t events_of(struct ep *ep, uint8_t kind, uint32_t pid)
{
    uint32_t n = 0;
    pthread_mutex_lock(&ep->mu);
    for (uint32_t i = 0; i < ep->n_events; i++)
        if (ep->events[i].kind == kind && ep->events[i].pid == pid)
            n++;
    pthread_mutex_unlock(&ep->mu);
    return n;
}

struct ev_wait {
    struct ep *ep;
    uint8_t kind;
    uint32_t pid;
};

static bool has_event(void *arg)
{
    struct ev_wait *w = arg;
    return events_of(w->ep, w->kind, w->pid) > 0;
}

static void test_presence(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    struct ep *a = new_member(0), *b = new_member(1), *c = new_member(0);
    join_wait(a, "p", "a", PERM_ALL, 0);
    assert_int_equal(a->joined_n, 0);
    join_wait(b, "p", "b", PERM_ALL, 0);
    assert_int_equal(b->joined_n, 1);
    assert_int_equal(b->joined_pids[0], a->pid);
    struct ev_wait wb = {a, MSG_EV_JOIN, b->pid};
    assert_true(wait_for(has_event, &wb));
    join_wait(c, "p", "c", PERM_ALL, 0);
    assert_int_equal(c->joined_n, 2);
    assert_int_equal(c->joined_total, 2);
    struct ev_wait wc1 = {a, MSG_EV_JOIN, c->pid}, wc2 = {b, MSG_EV_JOIN, c->pid};
    assert_true(wait_for(has_event, &wc1));
    assert_true(wait_for(has_event, &wc2));
    cmd_one(CMD_LEAVE, c, NULL, NULL, 0, 0, 0, 0);
    struct ev_wait wl1 = {a, MSG_EV_LEAVE, c->pid}, wl2 = {b, MSG_EV_LEAVE, c->pid};
    assert_true(wait_for(has_event, &wl1));
    assert_true(wait_for(has_event, &wl2));
    usleep(20000);
    /* Exactly one delta per change; nobody hears of itself. */
    assert_int_equal(events_of(a, MSG_EV_JOIN, b->pid), 1);
    assert_int_equal(events_of(a, MSG_EV_JOIN, c->pid), 1);
    assert_int_equal(events_of(b, MSG_EV_JOIN, c->pid), 1);
    assert_int_equal(events_of(a, MSG_EV_LEAVE, c->pid), 1);
    assert_int_equal(events_of(b, MSG_EV_LEAVE, c->pid), 1);
    assert_int_equal(events_of(b, MSG_EV_JOIN, b->pid), 0);
    assert_int_equal(c->n_events, 0);
    assert_int_equal(events_of(b, MSG_EV_JOIN, a->pid), 0); /* b learnt of a in JOINED */
    cmd_one(CMD_DEL, a, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, b, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, c, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

/* Trunk members (room.h): a hidden member is in no JOINED list and no
 * PARTICIPANT_EVENTS, its join and its leave included; with a pid prefix
 * every id carries it in its top byte. */
static void test_hidden_member_and_prefix(void **state)
{
    (void)state;
    env_pid_prefix = 0x5a;
    env_start(2, 0, 0);
    env_pid_prefix = 0;
    struct ep *a = new_member(0), *h = new_member(1), *b = new_member(0);
    assert_int_equal(a->pid >> 24, 0x5a);
    assert_int_equal(h->pid >> 24, 0x5a);
    assert_int_equal(b->pid >> 24, 0x5a);
    join_wait(a, "t", "a", PERM_ALL, 0);
    join_wait(h, "t", "", PERM_SUBSCRIBE | ROOM_PERM_HIDDEN, 0);
    assert_int_equal(h->joined_n, 1); /* the hidden member sees the room */
    join_wait(b, "t", "b", PERM_ALL, 0);
    assert_int_equal(b->joined_n, 1);
    assert_int_equal(b->joined_pids[0], a->pid);
    assert_int_equal(b->joined_total, 1);
    struct ev_wait wb = {a, MSG_EV_JOIN, b->pid}, wh = {h, MSG_EV_JOIN, b->pid};
    assert_true(wait_for(has_event, &wb));
    assert_true(wait_for(has_event, &wh));
    cmd_one(CMD_LEAVE, h, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_LEAVE, b, NULL, NULL, 0, 0, 0, 0);
    struct ev_wait wl = {a, MSG_EV_LEAVE, b->pid};
    assert_true(wait_for(has_event, &wl));
    assert_int_equal(events_of(a, MSG_EV_JOIN, h->pid), 0);
    assert_int_equal(events_of(a, MSG_EV_LEAVE, h->pid), 0);
    assert_int_equal(events_of(b, MSG_EV_JOIN, h->pid), 0);
    cmd_one(CMD_DEL, a, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, h, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, b, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

/* A remote participant re-announced from another worker joins before its
 * old member's LEAVE arrives: the new one replaces the old (others see
 * LEAVE then JOIN), and the old LEAVE then removes nothing. */
static void test_remote_rejoin_race(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    struct ep *a = new_member(0);
    join_wait(a, "x", "a", PERM_ALL, 0);
    struct ep *old = ep_add(1), *nw = ep_add(0);
    old->pid = nw->pid = 0x77000001u;
    cmd_one(CMD_NEW_REMOTE, old, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_NEW_REMOTE, nw, NULL, NULL, 0, 0, 0, 0);
    join_wait(old, "x", "", PERM_PUBLISH, 0);
    struct ev_wait w1 = {a, MSG_EV_JOIN, old->pid};
    assert_true(wait_for(has_event, &w1));
    join_wait(nw, "x", "", PERM_PUBLISH, 0); /* the old one is still in */
    cmd_one(CMD_DEL, old, NULL, NULL, 0, 0, 0, 0);
    struct ev_wait wl = {a, MSG_EV_LEAVE, nw->pid};
    assert_true(wait_for(has_event, &wl));
    /* The old LEAVE left worker 1 before this probe's JOIN, on the same
     * ring to the owner (or both local to it): once the probe is
     * announced, the old LEAVE has been applied. */
    struct ep *probe = new_member(1);
    join_wait(probe, "x", "probe", PERM_ALL, 0);
    struct ev_wait wp = {a, MSG_EV_JOIN, probe->pid};
    assert_true(wait_for(has_event, &wp));
    pthread_mutex_lock(&a->mu);
    uint8_t last = 0;
    for (uint32_t i = 0; i < a->n_events; i++)
        if (a->events[i].pid == nw->pid)
            last = a->events[i].kind;
    pthread_mutex_unlock(&a->mu);
    assert_int_equal(last, MSG_EV_JOIN);
    assert_int_equal(events_of(a, MSG_EV_LEAVE, nw->pid), 1);
    assert_int_equal(room_shared_participants(E.sh), 2); /* a, probe; the remote one apart */
    assert_int_equal(room_shared_trunk_members(E.sh), 1);
    cmd_one(CMD_DEL, probe, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, nw, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, a, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

/* Joins drained in one turn are folded into one snapshot and announced in
 * one PARTICIPANT_EVENTS message. */
static void test_join_batch(void **state)
{
    (void)state;
    env_start(1, 0, 0);
    struct ep *first = new_member(0);
    join_wait(first, "batch", "first", PERM_ALL, 0);
    struct room_stats before;
    sum_stats(&before);
    uint32_t msgs_before = first->n_event_msgs;

    struct cmd nc = {.kind = CMD_NEW, .n_ep = 20};
    for (unsigned i = 0; i < nc.n_ep; i++)
        nc.ep[i] = ep_add(0);
    post_wait(0, &nc);
    struct cmd jc = {.kind = CMD_JOIN, .n_ep = 20, .room = "batch", .perms = PERM_ALL};
    char ids[20][16];
    for (unsigned i = 0; i < jc.n_ep; i++) {
        jc.ep[i] = nc.ep[i];
        snprintf(ids[i], sizeof(ids[i]), "j%u", i);
        jc.identity[i] = ids[i];
    }
    post_wait(0, &jc); /* all 20 joins inside one turn */
    for (unsigned i = 0; i < jc.n_ep; i++)
        assert_true(wait_for(ep_answered, jc.ep[i]));
    struct ev_wait w = {first, MSG_EV_JOIN, jc.ep[19]->pid};
    assert_true(wait_for(has_event, &w));
    struct room_stats after;
    sum_stats(&after);
    assert_int_equal(after.snapshots - before.snapshots, 1);
    assert_int_equal(first->n_event_msgs - msgs_before, 1);
    assert_int_equal(first->n_events, 20);
    for (unsigned i = 0; i < jc.n_ep; i++)
        assert_int_equal(jc.ep[i]->joined_total, 20); /* first + 19 others */
    for (unsigned i = 0; i < E.n_ep; i++)
        cmd_one(CMD_DEL, &E.eps[i], NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

static void test_room_full(void **state)
{
    (void)state;
    env_start(2, 0, 2);
    struct ep *a = new_member(0), *b = new_member(1), *c = new_member(1);
    join_wait(a, "small", "a", PERM_ALL, 0);
    join_wait(b, "small", "b", PERM_ALL, 0);
    join_wait(c, "small", "c", PERM_ALL, PROTO_ERR_ROOM_FULL);
    struct room_stats st;
    sum_stats(&st);
    assert_int_equal(st.rejects_room_full, 1);
    /* A rejected member may join elsewhere. */
    join_wait(c, "other", "c", PERM_ALL, 0);
    cmd_one(CMD_DEL, a, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, b, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, c, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

static void test_server_full(void **state)
{
    (void)state;
    env_start(2, 1, 0);
    struct ep *a = new_member(0), *b = new_member(1);
    join_wait(a, "one", "a", PERM_ALL, 0);
    join_wait(b, "two", "b", PERM_ALL, PROTO_ERR_SERVER_FULL);
    /* Once the first room is gone there is space again. */
    cmd_one(CMD_LEAVE, a, NULL, NULL, 0, 0, 0, 0);
    for (int t = 0; t < 5000 && room_shared_rooms(E.sh) != 0; t++)
        usleep(1000);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    join_wait(b, "two", "b", PERM_ALL, 0);
    cmd_one(CMD_DEL, a, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, b, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

static bool ep_replaced_p(void *arg)
{
    struct ep *ep = arg;
    pthread_mutex_lock(&ep->mu);
    bool r = ep->replaced;
    pthread_mutex_unlock(&ep->mu);
    return r;
}

static void test_duplicate_identity(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    struct ep *other = new_member(0), *old = new_member(0), *neu = new_member(1);
    join_wait(other, "dup", "x", PERM_ALL, 0);
    join_wait(old, "dup", "same", PERM_ALL, 0);
    join_wait(neu, "dup", "same", PERM_ALL, 0);
    assert_true(wait_for(ep_replaced_p, old));
    assert_int_equal(neu->joined_n, 1); /* only "other": the old one is gone */
    assert_int_equal(neu->joined_pids[0], other->pid);
    struct ev_wait w = {other, MSG_EV_LEAVE, old->pid};
    assert_true(wait_for(has_event, &w));
    assert_int_equal(room_shared_participants(E.sh), 2);
    /* The replaced member's media goes nowhere; the new one's does. */
    cmd_one(CMD_SEND, old, NULL, NULL, 0, 0, 1, ROOST_ENOENT);
    cmd_one(CMD_SEND, neu, NULL, NULL, 0, 7, 1, 0);
    for (int t = 0; t < 5000 && media_count(other) < 1; t++)
        usleep(1000);
    assert_int_equal(media_count(other), 1);
    assert_int_equal(other->media[0].sender, neu->pid);
    cmd_one(CMD_DEL, other, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, old, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, neu, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

static void test_permissions(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    struct ep *pub = new_member(0), *subonly = new_member(1), *pubonly = new_member(1);
    join_wait(pub, "perm", "pub", PERM_ALL, 0);
    join_wait(subonly, "perm", "sub", PERM_SUBSCRIBE, 0);
    join_wait(pubonly, "perm", "po", PERM_PUBLISH, 0);
    cmd_one(CMD_SEND, subonly, NULL, NULL, 0, 0, 5, ROOST_EACCES);
    cmd_one(CMD_SEND, pub, NULL, NULL, 0, 100, 5, 0);
    for (int t = 0; t < 5000 && media_count(subonly) < 5; t++)
        usleep(1000);
    usleep(20000);
    assert_int_equal(media_count(subonly), 5);
    assert_int_equal(media_count(pubonly), 0); /* may not subscribe */
    assert_int_equal(media_count(pub), 0);     /* subscribe-only sent nothing */
    struct room_stats st;
    sum_stats(&st);
    assert_int_equal(st.media_dropped_no_publish, 5);
    cmd_one(CMD_DEL, pub, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, subonly, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, pubonly, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

/* A publisher's keyframe cache exists only once it sent a frame: joining
 * (even with PUBLISH) allocates none, the first frame makes one, leaving
 * frees it; a subscribe-only member never gets one. */
static void test_cache_made_at_first_frame(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    struct ep *pub = new_member(0), *sub = new_member(1);
    join_wait(pub, "lazy", "pub", PERM_ALL, 0);
    join_wait(sub, "lazy", "sub", PERM_SUBSCRIBE, 0);
    struct room_stats st;
    sum_stats(&st);
    assert_int_equal(st.kf_caches, 0);
    cmd_one(CMD_SEND, pub, NULL, NULL, 0, 0, 3, 0);
    for (int t = 0; t < 5000 && media_count(sub) < 3; t++)
        usleep(1000);
    assert_int_equal(media_count(sub), 3);
    sum_stats(&st);
    assert_int_equal(st.kf_caches, 1);
    cmd_one(CMD_SEND, pub, NULL, NULL, 0, 3, 3, 0); /* the same cache */
    for (int t = 0; t < 5000 && media_count(sub) < 6; t++)
        usleep(1000);
    sum_stats(&st);
    assert_int_equal(st.kf_caches, 1);
    cmd_one(CMD_DEL, pub, NULL, NULL, 0, 0, 0, 0);
    sum_stats(&st);
    assert_int_equal(st.kf_caches, 0);
    cmd_one(CMD_DEL, sub, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

/* WELCOME.max_datagram is enforced: a datagram of ROOM_MAX_DATAGRAM bytes
 * is forwarded, one byte more is dropped (PROTOCOL.md §8.3). */
static void test_datagram_limit(void **state)
{
    (void)state;
    env_start(1, 0, 0);
    struct ep *pub = new_member(0), *sub = new_member(0);
    join_wait(pub, "size", "pub", PERM_ALL, 0);
    join_wait(sub, "size", "sub", PERM_ALL, 0);
    send_payload = ROOM_MAX_DATAGRAM - MEDIA_C2R_HDR_LEN;
    cmd_one(CMD_SEND, pub, NULL, NULL, 0, 0, 1, 0);
    send_payload = ROOM_MAX_DATAGRAM - MEDIA_C2R_HDR_LEN + 1;
    cmd_one(CMD_SEND, pub, NULL, NULL, 0, 1, 1, ROOST_EMALFORMED);
    send_payload = 8;
    for (int t = 0; t < 5000 && media_count(sub) < 1; t++)
        usleep(1000);
    usleep(20000);
    assert_int_equal(media_count(sub), 1);
    cmd_one(CMD_DEL, pub, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, sub, NULL, NULL, 0, 0, 0, 0);
    env_stop();
}

/* A member deleted while its join is in flight: the owner still removes it,
 * the room goes away and the late answer is dropped. */
static void test_leave_while_joining(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    for (int round = 0; round < 50; round++) {
        struct ep *a = new_member(round % 2);
        struct cmd c = {.kind = CMD_JOIN, .n_ep = 1, .room = "race", .perms = PERM_ALL};
        c.ep[0] = a;
        c.identity[0] = "r";
        post_wait(a->worker, &c);
        cmd_one(CMD_DEL, a, NULL, NULL, 0, 0, 0, 0);
    }
    for (int t = 0; t < 5000 && room_shared_rooms(E.sh) != 0; t++)
        usleep(1000);
    assert_int_equal(room_shared_rooms(E.sh), 0);
    assert_int_equal(room_shared_participants(E.sh), 0);
    env_stop();
}

/* Members still in rooms when the pool stops: everything is released. */
static void test_shutdown_with_rooms(void **state)
{
    (void)state;
    env_start(2, 0, 0);
    struct ep *a = new_member(0), *b = new_member(1);
    join_wait(a, "s", "a", PERM_ALL, 0);
    join_wait(b, "s", "b", PERM_ALL, 0);
    cmd_one(CMD_SEND, a, NULL, NULL, 0, 0, 50, 0);
    env_stop(); /* asserts zero rooms and every buffer returned */
}

/* One join on worker 0 that replaces a member with the same identity, with
 * a third member on worker 0 too; the room's owner is worker 0 (local) or
 * worker 1 (remote). Returns the trace as (role, event) pairs; role 0 the
 * joiner, 1 the replaced member, 2 the bystander. */
static unsigned traced_join(bool local, uint32_t *out, unsigned max)
{
    env_start(2, 0, 0);
    char room[32];
    for (unsigned k = 0;; k++) {
        snprintf(room, sizeof(room), "order-%u", k);
        if (room_shared_owner(E.sh, (const uint8_t *)room, strlen(room)) == (local ? 0u : 1u))
            break;
    }
    struct ep *bystander = new_member(0), *old = new_member(0), *joiner = new_member(0);
    join_wait(bystander, room, "by", PERM_ALL, 0);
    join_wait(old, room, "dup", PERM_ALL, 0);
    struct ev_wait w0 = {bystander, MSG_EV_JOIN, old->pid};
    assert_true(wait_for(has_event, &w0));
    usleep(20000); /* quiet */

    pthread_mutex_lock(&trace_mu);
    n_trace = 0;
    pthread_mutex_unlock(&trace_mu);
    atomic_store(&trace_on, 1);
    join_wait(joiner, room, "dup", PERM_ALL, 0);
    assert_true(wait_for(ep_replaced_p, old));
    struct ev_wait w1 = {bystander, MSG_EV_JOIN, joiner->pid};
    assert_true(wait_for(has_event, &w1));
    usleep(20000); /* anything late would land in the trace */
    atomic_store(&trace_on, 0);

    pthread_mutex_lock(&trace_mu);
    unsigned n = n_trace < max ? n_trace : max;
    for (unsigned i = 0; i < n; i++) {
        uint32_t role = trace[i].ep == joiner ? 0 : trace[i].ep == old ? 1 : 2;
        out[i] = role << 16 | trace[i].what;
    }
    pthread_mutex_unlock(&trace_mu);
    cmd_one(CMD_DEL, bystander, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, old, NULL, NULL, 0, 0, 0, 0);
    cmd_one(CMD_DEL, joiner, NULL, NULL, 0, 0, 0, 0);
    env_stop();
    return n;
}

/* A local join (owner = the joiner's worker) takes the same order as a
 * remote one: no room code runs on the stack of room_join, and the
 * replaced member, the joiner and the bystander hear of it in the order
 * the owner sent it. */
static void test_local_order(void **state)
{
    (void)state;
    uint32_t loc[TRACE_MAX], rem[TRACE_MAX];
    unsigned nl = traced_join(true, loc, TRACE_MAX);
    unsigned nr = traced_join(false, rem, TRACE_MAX);
    static const uint32_t want[] = {
        0u << 16 | TR_JOIN_CALL, 0u << 16 | TR_JOIN_RET,
        1u << 16 | TR_REPLACED,  0u << 16 | (TR_CTRL + MSG_JOINED),
        0u << 16 | TR_JOINED_CB, 2u << 16 | (TR_CTRL + MSG_PARTICIPANT_EVENTS),
    };
    unsigned nw = sizeof(want) / sizeof(want[0]);
    for (unsigned i = 0; i < nr && i < nw; i++)
        assert_int_equal(rem[i], want[i]);
    assert_int_equal(nr, nw);
    for (unsigned i = 0; i < nl && i < nr; i++)
        assert_int_equal(loc[i], rem[i]);
    assert_int_equal(nl, nr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_delivery_1w),
        cmocka_unit_test(test_exact_delivery_2w),
        cmocka_unit_test(test_presence),
        cmocka_unit_test(test_hidden_member_and_prefix),
        cmocka_unit_test(test_remote_rejoin_race),
        cmocka_unit_test(test_join_batch),
        cmocka_unit_test(test_room_full),
        cmocka_unit_test(test_server_full),
        cmocka_unit_test(test_duplicate_identity),
        cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_cache_made_at_first_frame),
        cmocka_unit_test(test_datagram_limit),
        cmocka_unit_test(test_leave_while_joining),
        cmocka_unit_test(test_shutdown_with_rooms),
        cmocka_unit_test(test_local_order),
    };
    return cmocka_run_group_tests_name("room", tests, NULL, NULL);
}
