/* The connection API of quic.h that both ends' applications call: queueing
 * control and datagrams, the user pointer, state and statistics. The
 * connection's machinery (callbacks, read, write loop, closing) is conn.c. */
#include "quic/quic.h"

#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/frame.h"
#include "quic/quic_int.h"

int quic_conn_send_control(struct quic_conn *c, const uint8_t *body, size_t len)
{
    /* Queued during the handshake too: written once the stream is open. */
    if (!quic_conn_live(c))
        return ROOST_ECLOSED;
    int rc = ctl_tx_push(&c->tx, body, len);
    if (rc == ROOST_EFULL && quic_conn_is_server(c)) {
        stat_inc(c->ep->st, QS(too_slow));
        quic_conn_close(c, QUIC_APP_TOO_SLOW, "control queue full");
        return rc;
    }
    if (rc < 0)
        return rc;
    c->cs.control_out++;
    stat_inc(c->ep->st, QS(control_out));
    quic_conn_mark_data(c);
    return 0;
}

/* Counts and refuses a datagram the connection cannot queue now. */
static int dq_check(struct quic_conn *c)
{
    if (c->state != CS_OPEN) {
        c->cs.dgram_drop_state++;
        stat_inc(c->ep->st, QS(dgram_drop_state));
        return ROOST_ECLOSED;
    }
    if (c->dq_n == c->ep->dgram_queue_max) {
        c->cs.dgram_drop_queue++;
        stat_inc(c->ep->st, QS(dgram_drop_queue));
        return ROOST_EFULL;
    }
    if (c->dq == NULL) {
        c->dq = malloc(sizeof(*c->dq) * c->ep->dgram_queue_max);
        if (c->dq == NULL)
            return ROOST_ENOMEM;
        c->dq_head = 0;
        stat_inc(c->ep->st, QS(dgram_queues));
    }
    return 0;
}

/* Queues b[off, off+len); the queue takes over the caller's reference. */
static void dq_push(struct quic_conn *c, struct buf *b, uint32_t off, uint32_t len)
{
    struct dgram_item *d = &c->dq[(c->dq_head + c->dq_n) % c->ep->dgram_queue_max];
    d->b = b;
    d->off = off;
    d->len = len;
    d->t = quic_ep_now(c->ep);
    c->dq_last = d->t;
    c->dq_n++;
    quic_conn_mark_data(c);
}

int quic_conn_queue_datagram(struct quic_conn *c, struct buf *b, uint32_t off, uint32_t len)
{
    int rc = dq_check(c);
    if (rc < 0)
        return rc;
    dq_push(c, buf_ref(b), off, len);
    return 0;
}

int quic_conn_send_datagram(struct quic_conn *c, const uint8_t *data, size_t len)
{
    if (len > UINT32_MAX)
        return ROOST_EINVAL;
    /* Checked before allocating: a refused datagram costs no buffer. */
    int rc = dq_check(c);
    if (rc < 0)
        return rc;
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL)
        return ROOST_ENOMEM;
    memcpy(b->data, data, len);
    b->len = (uint32_t)len;
    dq_push(c, b, 0, (uint32_t)len); /* our reference goes to the queue */
    return 0;
}

void quic_conn_set_user(struct quic_conn *c, void *u)
{
    c->user = u;
}

void *quic_conn_user(const struct quic_conn *c)
{
    return c->user;
}

bool quic_conn_opened(const struct quic_conn *c)
{
    return c->opened;
}

bool quic_conn_is_open(const struct quic_conn *c)
{
    return c->state == CS_OPEN;
}

bool quic_conn_is_closed(const struct quic_conn *c)
{
    return c->state == CS_DEAD;
}

void quic_conn_close_info(const struct quic_conn *c, struct quic_close_info *out)
{
    *out = c->info;
}

void quic_conn_stats(const struct quic_conn *c, struct quic_conn_stats *out)
{
    *out = c->cs;
    /* Declared losses past their reorder window are losses already. */
    out->dgram_lost += quic_conn_lost_pending_expired(c, quic_ep_now(c->ep));
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    out->srtt_ns = st.smoothed_rtt;
    out->min_rtt_ns = st.min_rtt;
    out->latest_rtt_ns = st.latest_rtt;
    out->rttvar_ns = st.rttvar;
    out->cwnd = st.cwnd;
    out->bytes_in_flight = st.bytes_in_flight;
    out->control_pending = ctl_tx_pending(&c->tx);
}
