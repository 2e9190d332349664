/* Rooms, link quality (issue 6): every quality interval each worker sends
 * its joined members their own QUALITY and the room owners one report of
 * their subscribers; each owner combines the latest reports of every
 * worker into one summary per publisher (proto/quality.h). No per-packet
 * work.
 *
 * Cost per tick (issue 13): the members of this worker and the rooms it
 * owns, never the capacity (no walk of the room hash buckets or of the room
 * table): O(m log m) for m members (sorts of a few words each), and no
 * allocation in a steady state (the shard's grow-only scratch, s->q) but
 * the report and summary buffers that travel to other workers. */
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

struct qpid {
    uint32_t pid, idx;
};

static int qpid_cmp(const void *a, const void *b)
{
    const struct qpid *x = a, *y = b;
    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Grows a scratch array to hold n elements; false on ENOMEM. */
static bool grow(void **p, uint32_t *cap, uint32_t n, size_t size)
{
    if (n <= *cap)
        return true;
    uint32_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *v = realloc(*p, (size_t)c * size);
    if (v == NULL)
        return false;
    *p = v;
    *cap = c;
    return true;
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
            h->tab = (uint16_t)rows[i].owner;
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
    if (h->worker >= WORKER_MAX)
        return;
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, h->tab, h->room_slot, h->room_gen);
    /* Kept only where the room is linked (its owner's buckets): a room
     * that moves may be on its way here or away. r->own: stored by the
     * room's last owner (release) before its MOVE; the table worker
     * forwards by it. */
    bool here = false;
    for (const struct room *x = r != NULL ? s->buckets[(uint32_t)(r->hash >> 32) & s->bucket_mask]
                                          : NULL;
         x != NULL && !here; x = x->hnext)
        here = x == r;
    unsigned own = r != NULL ? atomic_load_explicit(&r->own, memory_order_acquire) : s->id;
    if (here) {
        buf_unref(r->qrep[h->worker]);
        r->qrep[h->worker] = buf_ref(b);
        r->qrep_t[h->worker] = worker_now(s->w);
    }
    rcu_read_unlock();
    if (r != NULL && !here && own != s->id && h->tab == s->id) {
        /* A moved room (move.c): its owner is elsewhere now; the report
         * follows it (one that gets there before the room, or after it
         * moved on, is dropped there: the next interval's is kept). */
        struct buf *fb = buf_ref(b);
        struct worker_msg wm;
        room_msg_put(&wm, ROOM_MSG_QREPORT, &fb, sizeof(fb));
        room_send(s, own, &wm);
    }
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Median and maximum of sorted v[0..n) without one occurrence of `skip`
 * (the publisher's own entry, when it subscribes too): found by binary
 * search, O(log n). */
static void stat_skip(const uint32_t *v, uint32_t n, bool has_skip, uint32_t skip, uint32_t *med,
                      uint32_t *max)
{
    uint32_t si = n;
    if (has_skip) {
        uint32_t lo = 0, hi = n; /* first index with v[i] >= skip */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (v[mid] < skip)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n && v[lo] == skip)
            si = lo;
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

/* Owner: each hidden member of r (a trunk) gets every receiver heard of,
 * to pass on to the relay on its other side (room.h, "link quality across
 * relays"). One message per hidden member per interval. */
static void send_far(struct room_shard *s, const struct room *r, const struct qreport_entry *all,
                     uint32_t n)
{
    for (uint32_t i = 0; i < r->n_infos && n > 0; i++) {
        const struct room_info *in = &r->infos[i];
        if (!(in->perms & ROOM_PERM_HIDDEN))
            continue;
        struct buf *b = buf_new((uint32_t)(sizeof(struct qfar_hdr) + n * sizeof(*all)));
        if (b == NULL)
            return;
        struct qfar_hdr *h = (struct qfar_hdr *)b->data;
        *h = (struct qfar_hdr){.slot = in->slot, .gen = in->gen, .pid = in->pid, .n = n};
        memcpy(h + 1, all, n * sizeof(*all));
        b->len = (uint32_t)(sizeof(*h) + n * sizeof(*all));
        struct worker_msg wm;
        room_msg_put(&wm, ROOM_MSG_QFAR, &b, sizeof(b));
        room_send(s, in->worker, &wm);
    }
}

void room_quality_on_far(struct room_shard *s, struct buf *b)
{
    const struct qfar_hdr *h = (const struct qfar_hdr *)b->data;
    struct room_member *m = room_member_resolve(s, h->slot, h->gen);
    if (m == NULL || m->pid != h->pid || m->state != MEMBER_JOINED ||
        !(m->perms & ROOM_PERM_HIDDEN))
        return;
    const struct qreport_entry *e = (const struct qreport_entry *)(h + 1);
    struct msg *msg = s->scratch;
    for (uint32_t i = 0; i < h->n; i++) {
        memset(msg, 0, sizeof(msg->type) + sizeof(msg->u.quality));
        msg->type = MSG_QUALITY;
        struct msg_quality *q = &msg->u.quality;
        q->participant_id = e[i].pid;
        q->interval_ms = (uint32_t)(s->sh->lim.quality_interval_ns / 1000000u);
        q->rtt_us = e[i].rtt_us;
        q->loss_permille = e[i].loss;
        uint8_t body[64];
        int len = msg_encode_body(msg, body, sizeof(body));
        if (len > 0)
            s->ops->control(m->ep, body, (size_t)len, s->arg);
    }
}

/* Owner: every publisher of r gets a summary of the other subscribers,
 * one QSUM message per worker that has publishers. O(n log n) for n
 * reported subscribers plus O(publishers log n): the publisher's own entry
 * by binary search in an index by pid, the worst receiver from the two
 * worst (so that excluding the publisher is O(1)). */
static void room_summarise(struct room_shard *s, struct room *r, uint64_t now)
{
    struct qscratch *sc = &s->q;
    uint64_t stale = 2 * s->sh->lim.quality_interval_ns;
    uint32_t total = 0;
    for (unsigned w = 0; w < s->sh->n_workers; w++)
        if (r->qrep[w] != NULL && r->qrep_t[w] + stale >= now)
            total += ((const struct qreport_hdr *)r->qrep[w]->data)->n;
    if (total + 1 > sc->cap) {
        uint32_t c = sc->cap;
        bool ok = grow((void **)&sc->all, &c, total + 1, sizeof(*sc->all));
        c = sc->cap;
        ok = ok && grow((void **)&sc->loss, &c, total + 1, sizeof(*sc->loss));
        c = sc->cap;
        ok = ok && grow((void **)&sc->rtt, &c, total + 1, sizeof(*sc->rtt));
        c = sc->cap;
        ok = ok && grow(&sc->byp, &c, total + 1, sizeof(struct qpid));
        if (!ok)
            return; /* the arrays that did grow keep their storage */
        sc->cap = c;
    }
    if (!grow((void **)&sc->out, &sc->out_cap, r->n_infos + 1, sizeof(*sc->out)))
        return;
    struct qreport_entry *all = sc->all;
    uint32_t *loss = sc->loss, *rtt = sc->rtt;
    struct qpid *byp = sc->byp;
    struct qsum_entry *out = sc->out;
    uint32_t n = 0;
    for (unsigned w = 0; w < s->sh->n_workers; w++) {
        if (r->qrep[w] == NULL || r->qrep_t[w] + stale < now)
            continue;
        const struct qreport_hdr *h = (const struct qreport_hdr *)r->qrep[w]->data;
        memcpy(&all[n], h + 1, h->n * sizeof(*all));
        n += h->n;
    }
    send_far(s, r, all, n);
    /* The worst receiver: w1 the first entry of the highest loss, w2 the
     * first of the highest among the others (n when none). */
    uint32_t w1 = n, w2 = n;
    for (uint32_t i = 0; i < n; i++) {
        loss[i] = all[i].loss;
        rtt[i] = all[i].rtt_us;
        byp[i] = (struct qpid){.pid = all[i].pid, .idx = i};
        if (w1 == n || all[i].loss > all[w1].loss) {
            w2 = w1;
            w1 = i;
        } else if (w2 == n || all[i].loss > all[w2].loss) {
            w2 = i;
        }
    }
    qsort(loss, n, sizeof(*loss), u32_cmp);
    qsort(rtt, n, sizeof(*rtt), u32_cmp);
    qsort(byp, n, sizeof(*byp), qpid_cmp);
    /* Per worker, the publishers it delivers to. */
    for (unsigned w = 0; w < s->sh->n_workers; w++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < r->n_infos; i++) {
            const struct room_info *in = &r->infos[i];
            if (in->worker != w || !(in->perms & PERM_PUBLISH))
                continue;
            /* The publisher's own entry: the first with its pid. */
            uint32_t lo = 0, hi = n;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (byp[mid].pid < in->pid)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            const struct qreport_entry *self =
                lo < n && byp[lo].pid == in->pid ? &all[byp[lo].idx] : NULL;
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
             * a QUALITY about a subscriber's link), the publisher excepted. */
            uint32_t wi = self != NULL && self == &all[w1] ? w2 : w1;
            q->sum.worst_pid = wi < n ? all[wi].pid : 0;
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

/* Appends a row (the scratch grows); false on ENOMEM. */
static bool row_add(struct room_shard *s, uint32_t *n, const struct qrow *row)
{
    if (!grow(&s->q.rows, &s->q.rows_cap, *n + 1, sizeof(*row)))
        return false;
    ((struct qrow *)s->q.rows)[(*n)++] = *row;
    return true;
}

/* A hidden member (a trunk, remote.c) reports the receivers on the other
 * relay it stands for, renewed within 3 intervals, not itself (it has no
 * link of its own: it would count as a perfect receiver). */
static bool far_rows(struct room_shard *s, struct room_member *m, uint64_t now, uint64_t interval,
                     uint32_t *n)
{
    bool ok = true;
    uint32_t k = 0;
    for (uint32_t j = 0; j < m->n_far; j++) {
        struct room_far f = m->far[j];
        if (f.t + 3 * interval < now)
            continue; /* not renewed: that receiver left, or its trunk is down */
        m->far[k++] = f;
        struct qrow row = {.owner = m->owner,
                           .room_slot = m->room_slot,
                           .room_gen = m->room_gen,
                           .e = {.pid = f.pid, .loss = f.loss, .rtt_us = f.rtt_us},
                           .subscriber = true};
        ok = ok && row_add(s, n, &row);
    }
    m->n_far = k;
    return ok;
}

void room_shard_quality(struct room_shard *s, uint64_t now)
{
    if (s->ops->link_stats == NULL)
        return;
    uint64_t interval = s->sh->lim.quality_interval_ns;
    uint32_t live = s->mcap - s->n_mfree;
    bool ok = live == 0 || grow(&s->q.rows, &s->q.rows_cap, live, sizeof(struct qrow));
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->mcap; i++) {
        struct room_member *m = s->mslots[i];
        if (m == NULL || m->state != MEMBER_JOINED)
            continue;
        if (m->perms & ROOM_PERM_HIDDEN) {
            ok = far_rows(s, m, now, interval, &n) && ok;
            continue;
        }
        member_quality(s, m, interval);
        struct qrow row = {.owner = m->owner,
                           .room_slot = m->room_slot,
                           .room_gen = m->room_gen,
                           .e = {.pid = m->pid, .loss = m->q_loss, .rtt_us = m->q_rtt_us},
                           .subscriber = (m->perms & PERM_SUBSCRIBE) != 0};
        ok = ok && row_add(s, &n, &row);
    }
    if (n > 0)
        send_reports(s, s->q.rows, n);
    /* Owner side: summaries from the latest reports, owned rooms only. */
    for (struct room *r = s->owned; r != NULL; r = r->onext)
        room_summarise(s, r, now);
}
