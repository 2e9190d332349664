/* A connection's DATAGRAM bookkeeping both ends share: leaving the send
 * queue (sent, aged out, refused), and loss counted exactly. ngtcp2
 * declares a reordered datagram lost (packet or time threshold) and then
 * reports its late ACK as well; a small ring of the ids declared lost
 * lets that ACK cancel the loss (counted spurious), and a loss counts only
 * once its reorder window ended without one (issue 16). */
#include "core/buf.h"
#include "quic/quic_int.h"

void quic_dgram_pop(struct quic_conn *c, enum dgram_fate why)
{
    struct dgram_item *d = &c->dq[c->dq_head];
    buf_unref(d->b);
    d->b = NULL;
    c->dq_head = (c->dq_head + 1) % c->ep->dgram_queue_max;
    c->dq_n--;
    switch (why) {
    case DG_SENT:
        break;
    case DG_AGED:
        c->cs.dgram_drop_cwnd++;
        stat_inc(c->ep->st, QS(dgram_drop_cwnd));
        break;
    case DG_TOO_LARGE:
        c->cs.dgram_drop_too_large++;
        stat_inc(c->ep->st, QS(dgram_drop_too_large));
        break;
    case DG_STATE:
        c->cs.dgram_drop_state++;
        stat_inc(c->ep->st, QS(dgram_drop_state));
        break;
    }
}

uint64_t quic_dgram_held_from(const struct quic_conn *c)
{
    uint64_t t = c->dq[c->dq_head].t;
    return t > c->dq_held_since ? t : c->dq_held_since;
}

void quic_dgram_drop_queued(struct quic_conn *c)
{
    while (c->dq_n > 0)
        quic_dgram_pop(c, DG_STATE);
}

void quic_dgram_age_out(struct quic_conn *c, uint64_t now)
{
    uint64_t max = c->ep->dgram_max_age_ns;
    while (c->dq_n > 0 && now - quic_dgram_held_from(c) > max)
        quic_dgram_pop(c, DG_AGED);
}

/* A declared loss is confirmed: the datagram did not arrive. */
static void lost_confirm(struct quic_conn *c)
{
    c->cs.dgram_lost++;
    stat_inc(c->ep->st, QS(dgram_lost));
}

void quic_dgram_lost_expire(struct quic_conn *c, uint64_t now)
{
    while (c->lost_n > 0 && c->lost[c->lost_head].until <= now) {
        c->lost_head = (c->lost_head + 1) % QUIC_LOST_RING;
        c->lost_n--;
        lost_confirm(c);
    }
}

void quic_dgram_acked(struct quic_conn *c, uint64_t id)
{
    c->cs.dgram_acked++;
    if (c->lost_n == 0)
        return;
    quic_dgram_lost_expire(c, quic_ep_now(c->ep));
    for (unsigned i = 0; i < c->lost_n; i++) {
        if (c->lost[(c->lost_head + i) % QUIC_LOST_RING].id != id)
            continue;
        /* Declared lost, arrived after all: reordering, not loss. Close
         * the gap, keeping the ring oldest first. */
        for (unsigned j = i; j + 1 < c->lost_n; j++)
            c->lost[(c->lost_head + j) % QUIC_LOST_RING] =
                c->lost[(c->lost_head + j + 1) % QUIC_LOST_RING];
        c->lost_n--;
        c->cs.dgram_spurious++;
        stat_inc(c->ep->st, QS(dgram_spurious));
        return;
    }
}

void quic_dgram_lost(struct quic_conn *c, uint64_t id, uint64_t window)
{
    uint64_t now = quic_ep_now(c->ep);
    quic_dgram_lost_expire(c, now);
    if (c->lost_n == QUIC_LOST_RING) {
        /* Full: the oldest counts as lost now. */
        c->lost_head = (c->lost_head + 1) % QUIC_LOST_RING;
        c->lost_n--;
        lost_confirm(c);
    }
    struct lost_dgram *l = &c->lost[(c->lost_head + c->lost_n) % QUIC_LOST_RING];
    l->id = id;
    l->until = now + window;
    c->lost_n++;
}

uint64_t quic_conn_lost_pending_expired(const struct quic_conn *c, uint64_t now)
{
    uint64_t n = 0;
    while (n < c->lost_n && c->lost[(c->lost_head + n) % QUIC_LOST_RING].until <= now)
        n++;
    return n;
}
