/* Rooms, link quality (issue 6): every quality interval each worker sends
 * its joined members their own QUALITY and the room owners one report of
 * their subscribers; each owner combines the latest reports of every
 * worker into one summary per publisher (proto/quality.h). No per-packet
 * work. */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/worker.h"
#include "proto/msg.h"
#include "proto/quality.h"
#include "room/room_int.h"

struct qrow {
    uint32_t owner, room_slot, room_gen;
    struct qreport_entry e;
    bool subscriber;
};

static int qrow_cmp(const void *a, const void *b)
{
    const struct qrow *x = a, *y = b;
    if (x->owner != y->owner)
        return x->owner < y->owner ? -1 : 1;
    if (x->room_slot != y->room_slot)
        return x->room_slot < y->room_slot ? -1 : 1;
    if (x->room_gen != y->room_gen)
        return x->room_gen < y->room_gen ? -1 : 1;
    return 0;
}

/* Own link: counters since the previous tick. */
static void member_quality(struct room_shard *s, struct room_member *m, uint64_t interval_ns)
{
    struct room_link l;
    if (s->ops->link_stats(m->ep, &l, s->arg) != 0)
        return;
    struct room_link p = m->q_have ? m->q_prev : (struct room_link){0};
    if (!m->q_have)
        m->q_balance = 0;
    uint64_t lost = l.dgram_lost - p.dgram_lost;
    uint64_t acked = l.dgram_acked - p.dgram_acked;
    uint64_t sent = l.dgram_out - p.dgram_out;
    uint64_t dropped = l.dgram_dropped - p.dgram_dropped;
    uint64_t bytes_out = l.bytes_out - p.bytes_out;
    m->q_prev = l;
    m->q_have = true;
    m->q_loss = quality_loss_permille(sent, acked, lost, &m->q_balance); /* robust to reordering */
    m->q_rtt_us = (uint32_t)(l.srtt_ns / 1000u);

    struct msg *msg = s->scratch;
    memset(msg, 0, sizeof(msg->type) + sizeof(msg->u.quality));
    msg->type = MSG_QUALITY;
    struct msg_quality *q = &msg->u.quality;
    q->participant_id = m->pid;
    q->interval_ms = (uint32_t)(interval_ns / 1000000u);
    q->rtt_us = m->q_rtt_us;
    q->rttvar_us = (uint32_t)(l.rttvar_ns / 1000u);
    q->loss_permille = m->q_loss;
    q->dropped = (uint32_t)dropped;
    /* What we managed to send towards it: kbit/s over the interval. */
    q->est_kbps = interval_ns ? (uint32_t)(bytes_out * 8u * 1000000u / interval_ns) : 0;
    uint8_t body[64];
    int n = msg_encode_body(msg, body, sizeof(body));
    if (n < 0)
        return;
    s->ops->control(m->ep, body, (size_t)n, s->arg);
    ROOM_STAT_INC(s, quality_sent);
}

/* One report per room to its owner: this worker's subscribers. */
static void send_reports(struct room_shard *s, struct qrow *rows, uint32_t n)
{
    qsort(rows, n, sizeof(*rows), qrow_cmp);
    uint32_t i = 0;
    while (i < n) {
        uint32_t j = i;
        uint32_t subs = 0;
        while (j < n && qrow_cmp(&rows[i], &rows[j]) == 0)
            subs += rows[j++].subscriber;
        struct buf *b =
            buf_new((uint32_t)(sizeof(struct qreport_hdr) + subs * sizeof(struct qreport_entry)));
        if (b != NULL) {
            struct qreport_hdr *h = (struct qreport_hdr *)b->data;
            struct qreport_entry *e = (struct qreport_entry *)(h + 1);
            memset(h, 0, sizeof(*h));
            h->room_slot = rows[i].room_slot;
            h->room_gen = rows[i].room_gen;
            h->worker = (uint16_t)s->id;
            for (uint32_t k = i; k < j; k++)
                if (rows[k].subscriber)
                    e[h->n++] = rows[k].e;
            b->len = (uint32_t)(sizeof(*h) + h->n * sizeof(*e));
            struct worker_msg wm;
            room_msg_put(&wm, ROOM_MSG_QREPORT, &b, sizeof(b));
            room_send(s, rows[i].owner, &wm);
        }
        i = j;
    }
}

void room_quality_on_report(struct room_shard *s, struct buf *b)
{
    const struct qreport_hdr *h = (const struct qreport_hdr *)b->data;
    struct room_table *t = &s->sh->tables[s->id];
    if (h->room_slot >= t->cap || h->worker >= WORKER_MAX)
        return;
    struct room *r = t->slots[h->room_slot]; /* owner: no read section needed */
    if (r == NULL || r->gen != h->room_gen)
        return;
    buf_unref(r->qrep[h->worker]);
    r->qrep[h->worker] = buf_ref(b);
    r->qrep_t[h->worker] = worker_now(s->w);
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Median and maximum of sorted v[0..n) without one occurrence of `skip`
 * (the publisher's own entry, when it subscribes too). */
static void stat_skip(const uint32_t *v, uint32_t n, bool has_skip, uint32_t skip, uint32_t *med,
                      uint32_t *max)
{
    uint32_t si = n;
    if (has_skip)
        for (uint32_t i = 0; i < n; i++)
            if (v[i] == skip) {
                si = i;
                break;
            }
    uint32_t m = si < n ? n - 1 : n;
    if (m == 0) {
        *med = *max = 0;
        return;
    }
    uint32_t k = m / 2;
    *med = v[k >= si ? k + 1 : k];
    *max = v[m - 1 >= si ? m : m - 1];
}

/* Owner: every publisher of r gets a summary of the other subscribers,
 * one QSUM message per worker that has publishers. */
static void room_summarise(struct room_shard *s, struct room *r, uint64_t now)
{
    uint64_t stale = 2 * s->sh->lim.quality_interval_ns;
    uint32_t total = 0;
    for (unsigned w = 0; w < s->sh->n_workers; w++)
        if (r->qrep[w] != NULL && r->qrep_t[w] + stale >= now)
            total += ((const struct qreport_hdr *)r->qrep[w]->data)->n;
    struct qreport_entry *all = malloc((total + 1) * sizeof(*all));
    uint32_t *loss = malloc((total + 1) * sizeof(*loss)); /* permille, <= 1000 */
    uint32_t *rtt = malloc((total + 1) * sizeof(*rtt));
    struct qsum_entry *out = malloc((r->n_infos + 1) * sizeof(*out));
    if (all == NULL || loss == NULL || rtt == NULL || out == NULL)
        goto done;
    uint32_t n = 0;
    for (unsigned w = 0; w < s->sh->n_workers; w++) {
        if (r->qrep[w] == NULL || r->qrep_t[w] + stale < now)
            continue;
        const struct qreport_hdr *h = (const struct qreport_hdr *)r->qrep[w]->data;
        memcpy(&all[n], h + 1, h->n * sizeof(*all));
        n += h->n;
    }
    for (uint32_t i = 0; i < n; i++) {
        loss[i] = all[i].loss;
        rtt[i] = all[i].rtt_us;
    }
    qsort(loss, n, sizeof(*loss), u32_cmp);
    qsort(rtt, n, sizeof(*rtt), u32_cmp);
    /* Per worker, the publishers it delivers to. */
    for (unsigned w = 0; w < s->sh->n_workers; w++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < r->n_infos; i++) {
            const struct room_info *in = &r->infos[i];
            if (in->worker != w || !(in->perms & PERM_PUBLISH))
                continue;
            const struct qreport_entry *self = NULL;
            for (uint32_t a = 0; a < n && self == NULL; a++)
                if (all[a].pid == in->pid)
                    self = &all[a];
            struct qsum_entry *q = &out[k++];
            memset(q, 0, sizeof(*q));
            q->slot = in->slot;
            q->gen = in->gen;
            q->pid = in->pid;
            q->sum.receivers = self ? n - 1 : n;
            uint32_t lmed, lmax;
            stat_skip(loss, n, self != NULL, self ? self->loss : 0, &lmed, &lmax);
            q->sum.loss_median = (uint16_t)lmed;
            q->sum.loss_worst = (uint16_t)lmax;
            stat_skip(rtt, n, self != NULL, self ? self->rtt_us : 0, &q->sum.rtt_median_us,
                      &q->sum.rtt_worst_us);
            /* Name the receiver with the worst loss (PROTOCOL.md §4.9:
             * a QUALITY about a subscriber's link). */
            q->sum.worst_pid = 0;
            uint16_t wl = 0;
            for (uint32_t a = 0; a < n; a++)
                if (&all[a] != self && (q->sum.worst_pid == 0 || all[a].loss > wl)) {
                    q->sum.worst_pid = all[a].pid;
                    wl = all[a].loss;
                }
        }
        if (k == 0)
            continue;
        struct buf *b = buf_new((uint32_t)(k * sizeof(*out)));
        if (b == NULL)
            continue;
        memcpy(b->data, out, k * sizeof(*out));
        b->len = (uint32_t)(k * sizeof(*out));
        struct worker_msg wm;
        room_msg_put(&wm, ROOM_MSG_QSUM, &b, sizeof(b));
        room_send(s, w, &wm);
    }
done:
    free(all);
    free(loss);
    free(rtt);
    free(out);
}

void room_quality_on_summary(struct room_shard *s, struct buf *b)
{
    uint32_t n = b->len / sizeof(struct qsum_entry);
    const struct qsum_entry *q = (const struct qsum_entry *)b->data;
    uint64_t interval_ms = s->sh->lim.quality_interval_ns / 1000000u;
    for (uint32_t i = 0; i < n; i++) {
        struct room_member *m = room_member_resolve(s, q[i].slot, q[i].gen);
        if (m == NULL || m->pid != q[i].pid || m->state != MEMBER_JOINED)
            continue;
        if (q[i].sum.receivers == 0)
            continue; /* nobody to describe */
        uint8_t body[128];
        int len = quality_summary_encode(&q[i].sum, (uint32_t)interval_ms, body, sizeof(body));
        if (len < 0)
            continue;
        s->ops->control(m->ep, body, (size_t)len, s->arg);
        ROOM_STAT_INC(s, quality_sent);
    }
}

void room_shard_quality(struct room_shard *s, uint64_t now)
{
    if (s->ops->link_stats == NULL)
        return;
    uint64_t interval = s->sh->lim.quality_interval_ns;
    uint32_t live = s->mcap - s->n_mfree;
    struct qrow *rows = live ? malloc(live * sizeof(*rows)) : NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->mcap; i++) {
        struct room_member *m = s->mslots[i];
        if (m == NULL || m->state != MEMBER_JOINED)
            continue;
        member_quality(s, m, interval);
        if (rows != NULL && n < live)
            rows[n++] =
                (struct qrow){.owner = m->owner,
                              .room_slot = m->room_slot,
                              .room_gen = m->room_gen,
                              .e = {.pid = m->pid, .loss = m->q_loss, .rtt_us = m->q_rtt_us},
                              .subscriber = (m->perms & PERM_SUBSCRIBE) != 0};
    }
    if (rows != NULL)
        send_reports(s, rows, n);
    free(rows);
    /* Owner side: summaries from the latest reports. */
    for (uint32_t bk = 0; bk <= s->bucket_mask; bk++)
        for (struct room *r = s->buckets[bk]; r != NULL; r = r->hnext)
            room_summarise(s, r, now);
}
