/* Connection hand-off between workers: see handoff.h. */
#include "quic/handoff.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "quic/cid.h"
#include "quic/quic_int.h"
#include "quic/steer.h"

_Static_assert(STEER_CID_LEN == QUIC_CID_LEN, "the steering map's key is a server CID");

_Atomic int quic_handoff_test_hold;

/* QUIC_MSG_ADOPT's payload: the connection and what the runtime's discard
 * needs to end it without a server (the sending server's app). */
#define ADOPT_CONN 0
#define ADOPT_OPS 1
#define ADOPT_ARG 2
#define ADOPT_DQMAX_U32 6
/* The sending worker's clock when it let go (worker_now, its turn's start):
 * every timestamp ngtcp2 holds for the connection is at most that. */
#define ADOPT_NOW_U64 4

static struct quic_server *server_of(const struct quic_conn *c)
{
    return (struct quic_server *)((char *)c->ep - offsetof(struct quic_server, ep));
}

unsigned quic_conn_worker(const struct quic_conn *c)
{
    return server_of(c)->id;
}

int quic_handoff_server_init(struct quic_server *s)
{
    return cid_table_new(&s->fwd);
}

int quic_conn_handoff(struct quic_conn *c, unsigned to)
{
    if (!quic_conn_is_server(c))
        return ROOST_EINVAL;
    struct quic_server *s = server_of(c);
    if (to >= s->n_workers || to == s->id)
        return ROOST_EINVAL;
    if (c->state != CS_OPEN || c->half_open)
        return ROOST_ECLOSED;
    if (c->handoff_to != 0)
        return ROOST_EEXIST;
    c->handoff_to = (uint16_t)(to + 1);
    c->handoff_next = s->handoff_head;
    s->handoff_head = c;
    return 0;
}

void quic_handoff_forget(struct quic_server *s, struct quic_conn *c)
{
    if (c->handoff_to == 0)
        return;
    for (struct quic_conn **p = &s->handoff_head; *p != NULL; p = &(*p)->handoff_next)
        if (*p == c) {
            *p = c->handoff_next;
            break;
        }
    c->handoff_to = 0;
    c->handoff_next = NULL;
}

/* ----------------------------------------------------- forwarding table */

static void fwd_drop(struct quic_server *s, const uint8_t *cid, size_t len)
{
    if (cid_table_remove(s->fwd, cid, len, NULL) == 0)
        stat_dec(s->ep.st, QS(handoff_fwd_cids));
}

static void fwd_set(struct quic_server *s, const ngtcp2_cid *cid, unsigned to)
{
    fwd_drop(s, cid->data, cid->datalen);
    if (cid_table_put(s->fwd, cid->data, cid->datalen, (void *)(uintptr_t)(to + 1)) == 0)
        stat_inc(s->ep.st, QS(handoff_fwd_cids));
    else
        log_error("event=handoff_fwd_failed to=%u", to); /* its packets get a reset */
}

int quic_handoff_fwd_lookup(const struct quic_server *s, const uint8_t *cid, size_t len)
{
    if (cid_table_count(s->fwd) == 0)
        return -1;
    void *v = cid_table_get(s->fwd, cid, len);
    return v == NULL ? -1 : (int)((uintptr_t)v - 1);
}

/* ------------------------------------------- kernel steering (steer.h) */

/* With extended-BPF steering, the kernel delivers c's CIDs that name
 * another worker straight to s (c was just adopted here), and those that
 * name s by their worker byte again. A refusal (map full) leaves the old
 * worker forwarding them, as without the program. */
static void steer_cids(struct quic_server *s, const ngtcp2_cid *ids, size_t n)
{
    static _Atomic bool warned;
    const struct steer_ebpf *st = s->sh->ebpf;
    if (st == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (ids[i].datalen != STEER_CID_LEN)
            continue;
        if (ids[i].data[0] == s->id) {
            (void)steer_ebpf_unmove(st, ids[i].data, ids[i].datalen);
            continue;
        }
        if (steer_ebpf_move(st, ids[i].data, ids[i].datalen, s->id) != 0 &&
            !atomic_exchange_explicit(&warned, true, memory_order_relaxed))
            log_warn("event=steer_move_failed worker=%u effect=\"the old worker forwards the "
                     "connection's packets\" (logged once)",
                     s->id);
    }
}

void quic_handoff_cid_gone(struct quic_server *s, const struct quic_conn *c, const ngtcp2_cid *cid)
{
    (void)c;
    if (s->stopping || cid->datalen == 0 || cid->datalen > 20)
        return;
    if (s->sh->ebpf != NULL && cid->datalen == STEER_CID_LEN)
        (void)steer_ebpf_unmove(s->sh->ebpf, cid->data, cid->datalen);
    fwd_drop(s, cid->data, cid->datalen);
    struct worker_msg m = {.type = QUIC_MSG_UNFWD};
    m.u.bytes[0] = (uint8_t)cid->datalen;
    memcpy(m.u.bytes + 1, cid->data, cid->datalen);
    for (unsigned w = 0; w < s->n_workers; w++)
        if (w != s->id && worker_send(s->w, w, &m, WORKER_MSG_CONTROL) != 0)
            log_error("event=unfwd_send_failed to=%u", w); /* an entry lingers */
}

/* ------------------------------------------------------------- adopting */

/* The CIDs ngtcp2 holds for c (caller frees), or NULL (no memory). */
static ngtcp2_cid *scids(const struct quic_conn *c, size_t *n)
{
    *n = ngtcp2_conn_get_num_scid(c->conn);
    ngtcp2_cid *ids = calloc(*n ? *n : 1, sizeof(*ids));
    if (ids != NULL)
        ngtcp2_conn_get_scid(c->conn, ids);
    return ids;
}

/* Ends c that has no slot on s (none was free): on_close, its CIDs'
 * forwarding entries dropped everywhere, freed. */
static void abandon(struct quic_server *s, struct quic_conn *c)
{
    stat_inc(s->ep.st, QS(handoffs_failed));
    quic_conn_notify(c, QUIC_APP_GOING_AWAY);
    size_t n;
    ngtcp2_cid *ids = scids(c, &n);
    for (size_t i = 0; ids != NULL && i < n; i++)
        quic_handoff_cid_gone(s, c, &ids[i]);
    free(ids);
    if (c->odcid.datalen > 0)
        quic_handoff_cid_gone(s, c, &c->odcid);
    quic_conn_fini(c);
    free(c);
}

static void adopt(struct quic_server *s, struct quic_conn *c, bool count)
{
    c->ep = &s->ep;
    s->ep.active++;
    c->dirty = false;
    c->dirty_next = NULL;
    c->armed_exp = UINT64_MAX;
    if (c->dq != NULL)
        stat_inc(s->ep.st, QS(dgram_queues));
    int knob = 3;
    if (atomic_compare_exchange_strong(&quic_handoff_test_hold, &knob, 0) ||
        quic_server_slot_take(s, c) != 0) {
        log_error("event=handoff_no_slot");
        abandon(s, c);
        return;
    }
    if (count)
        stat_inc(s->ep.st, QS(handoffs_in));
    size_t n;
    ngtcp2_cid *ids = scids(c, &n);
    int rc = ids == NULL ? ROOST_ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        fwd_drop(s, ids[i].data, ids[i].datalen);
        rc = cid_table_put(s->cids, ids[i].data, ids[i].datalen, c);
    }
    /* Only now, with every CID mapped here: a packet the kernel delivers
     * here from now on finds its connection. Those already queued on the
     * old worker's socket reach it through the ring, after the ADOPT. */
    if (rc == 0)
        steer_cids(s, ids, n);
    free(ids);
    if (rc == 0 && c->odcid.datalen > 0) {
        fwd_drop(s, c->odcid.data, c->odcid.datalen);
        (void)cid_table_put(s->cids, c->odcid.data, c->odcid.datalen, c);
    }
    /* Written at this turn's end: what is due, and its timer armed on this
     * worker's heap (quic_conn_write ends with arm_timer). */
    quic_conn_mark_dirty(c);
    if (rc != 0) {
        quic_conn_close(c, QUIC_APP_INTERNAL, "hand-off failed");
        return;
    }
    if (s->ep.ops->on_adopt != NULL)
        s->ep.ops->on_adopt(c, s->ep.arg);
}

/* Takes c off s's dirty list (on_detach may have queued control). */
static void undirty(struct quic_server *s, struct quic_conn *c)
{
    if (!c->dirty)
        return;
    for (struct quic_conn **p = &s->ep.dirty_head; *p != NULL; p = &(*p)->dirty_next)
        if (*p == c) {
            *p = c->dirty_next;
            break;
        }
    c->dirty = false;
    c->dirty_next = NULL;
}

/* Detaches c from s and sends it to worker to. */
static void detach_send(struct quic_server *s, struct quic_conn *c, unsigned to)
{
    size_t n;
    ngtcp2_cid *ids = scids(c, &n);
    if (ids == NULL) {
        stat_inc(s->ep.st, QS(handoffs_failed));
        return;
    }
    if (s->ep.ops->on_detach != NULL)
        s->ep.ops->on_detach(c, s->ep.arg);
    if (c->state != CS_OPEN) { /* the app closed it */
        free(ids);
        stat_inc(s->ep.st, QS(handoffs_failed));
        return;
    }
    undirty(s, c);
    timer_cancel(s->ep.timers, &c->timer);
    c->armed_exp = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        cid_table_remove(s->cids, ids[i].data, ids[i].datalen, c);
        fwd_set(s, &ids[i], to);
    }
    free(ids);
    /* The client's Initial DCID too: a late Initial retransmission (by the
     * 4-tuple hash, so to this worker) must reach the connection, not
     * start a new one. */
    if (cid_table_remove(s->cids, c->odcid.data, c->odcid.datalen, c) == 0)
        fwd_set(s, &c->odcid, to);
    quic_server_slot_release(s, c);
    s->ep.active--;
    if (c->dq != NULL)
        stat_dec(s->ep.st, QS(dgram_queues));
    c->handed = true;
    struct worker_msg m = {.type = QUIC_MSG_ADOPT};
    m.u.ptr[ADOPT_CONN] = c;
    m.u.ptr[ADOPT_OPS] = (void *)s->ep.ops;
    m.u.ptr[ADOPT_ARG] = s->ep.arg;
    m.u.u32[ADOPT_DQMAX_U32] = s->ep.dgram_queue_max;
    m.u.u64[ADOPT_NOW_U64] = quic_ep_now(&s->ep);
    if (worker_send(s->w, to, &m, WORKER_MSG_CONTROL) != 0) {
        /* Not sent (spill queue at its bound, no memory): it stays. */
        stat_inc(s->ep.st, QS(handoffs_failed));
        adopt(s, c, false);
        return;
    }
    stat_inc(s->ep.st, QS(handoffs_out));
}

void quic_handoff_turn_end(struct quic_server *s)
{
    struct quic_conn *list = s->handoff_head;
    s->handoff_head = NULL;
    while (list != NULL) {
        struct quic_conn *c = list;
        list = c->handoff_next;
        c->handoff_next = NULL;
        unsigned to = (unsigned)c->handoff_to - 1u;
        if (c->state != CS_OPEN) {
            c->handoff_to = 0;
            stat_inc(s->ep.st, QS(handoffs_failed));
            continue;
        }
        if (c->dirty) {
            /* Its writes are blocked (EPOLLOUT pending): not this turn. */
            c->handoff_next = s->handoff_head;
            s->handoff_head = c;
            continue;
        }
        c->handoff_to = 0;
        detach_send(s, c, to);
    }
}

static void hold(struct quic_server *s, struct quic_conn *c)
{
    if (s->n_held == s->cap_held) {
        unsigned cap = s->cap_held ? s->cap_held * 2 : 4;
        struct quic_conn **h = realloc(s->held, cap * sizeof(*h));
        if (h == NULL) {
            adopt(s, c, true);
            return;
        }
        s->held = h;
        s->cap_held = cap;
    }
    s->held[s->n_held++] = c;
}

void quic_handoff_on_msg(struct quic_server *s, const struct worker_msg *msg)
{
    if (msg->type == QUIC_MSG_UNFWD) {
        size_t len = msg->u.bytes[0];
        if (len > 0 && len <= 20)
            fwd_drop(s, msg->u.bytes + 1, len);
        return;
    }
    if (msg->type != QUIC_MSG_ADOPT)
        return;
    struct quic_conn *c = msg->u.ptr[ADOPT_CONN];
    int knob = atomic_load_explicit(&quic_handoff_test_hold, memory_order_relaxed);
    if (knob == 1) {
        stat_inc(s->ep.st, QS(handoffs_in)); /* taken: adopted at del */
        hold(s, c);
        return;
    }
    if (knob == 2 && worker_send(s->w, s->id, msg, WORKER_MSG_CONTROL) == 0)
        return;
    /* Each worker reads the clock once per turn: this turn may have begun
     * before the sender's last one, when it last used the connection.
     * ngtcp2's clock must never go back (a packet sent with an older time
     * than an earlier one fails an assertion in its ACK processing,
     * ngtcp2_rtb_recv_ack): read again, it is past the sender's (this
     * message was sent after it). */
    if (worker_now(s->w) < msg->u.u64[ADOPT_NOW_U64])
        worker_now_refresh(s->w);
    adopt(s, c, true);
}

void quic_handoff_discard(const struct worker_msg *msg)
{
    if (msg->type != QUIC_MSG_ADOPT)
        return;
    /* At shutdown, no server: end it on a stand-in end point that tells
     * the sending server's app (on_close, GOING_AWAY) and counts nowhere. */
    static _Atomic uint64_t nowhere[STAT_N(struct quic_stats)];
    struct quic_conn *c = msg->u.ptr[ADOPT_CONN];
    struct quic_ep limbo;
    memset(&limbo, 0, sizeof(limbo));
    limbo.role = QUIC_ROLE_SERVER;
    limbo.ops = msg->u.ptr[ADOPT_OPS];
    limbo.arg = msg->u.ptr[ADOPT_ARG];
    limbo.dgram_queue_max = msg->u.u32[ADOPT_DQMAX_U32];
    limbo.st = nowhere;
    limbo.active = 1;
    c->ep = &limbo;
    quic_conn_notify(c, QUIC_APP_GOING_AWAY);
    quic_conn_fini(c);
    free(c);
}

void quic_handoff_server_del(struct quic_server *s)
{
    s->handoff_head = NULL; /* pending ones end with the others */
    for (unsigned i = 0; i < s->n_held; i++)
        adopt(s, s->held[i], false);
    free(s->held);
    s->held = NULL;
    s->n_held = s->cap_held = 0;
}
