/* The write path of one connection (split from conn.c): the write loop
 * (control bytes, coalesced datagrams, ngtcp2_conn_write_pkt when due,
 * pacing, the kept cwnd queue), the CONNECTION_CLOSE and the timer re-arm.
 * Like conn.c it asks c->ep->role where the ends differ. */
#include "quic/quic.h"

#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2.h>

#include "core/buf.h"
#include "core/error.h"
#include "quic/quic_int.h"

void quic_send_raw(struct quic_ep *ep, const uint8_t *p, size_t n, const struct udp_addr *remote,
                   const struct udp_addr *local)
{
    struct udp_txpkt *pkt = udp_tx_slot(ep->tx);
    if (pkt == NULL || n > UDP_TX_MAX)
        return;
    memcpy(pkt->data, p, n);
    udp_tx_commit(ep->tx, n, remote, local);
    stat_inc(ep->st, QS(pkts_out));
    stat_add(ep->st, QS(bytes_out), n);
}

static void write_close(struct quic_conn *c)
{
    uint8_t pktbuf[UDP_TX_MAX];
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
        c->conn, &ps.path, NULL, pktbuf, sizeof(pktbuf), &c->ccerr, quic_ep_now(c->ep));
    if (n <= 0) {
        quic_conn_end_now(c, quic_conn_close_code(c));
        return;
    }
    if (quic_conn_is_server(c)) {
        c->close_pkt = malloc((size_t)n);
        if (c->close_pkt != NULL) {
            memcpy(c->close_pkt, pktbuf, (size_t)n);
            c->close_len = (size_t)n;
        }
    }
    /* Over budget, the close waits for more bytes from the peer (a resend
     * on its next packet), as RFC 9000 §10.2 allows. */
    if (quic_conn_amp_allows(c, (size_t)n)) {
        quic_conn_amp_sent(c, (size_t)n);
        quic_send_raw(c->ep, pktbuf, (size_t)n, &c->remote, quic_conn_tx_local(c, &c->local));
    }
    quic_conn_linger(c, CS_CLOSING, quic_conn_close_code(c));
}

/* Arms the timer for exp (ngtcp2's next expiry), or sooner for the pacer's
 * send time when something waits for it, or for the oldest held-back
 * datagram's age limit; untouched when unchanged. */
static void arm_at(struct quic_conn *c, uint64_t exp)
{
    if (c->ack_due != 0 && c->ack_due < exp)
        exp = c->ack_due; /* a delayed ACK's deadline (conn.c ack_can_wait) */
    if (c->pace_ts != 0 && c->pace_ts < exp && (c->dq_n > 0 || ctl_tx_has_unsent(&c->tx)))
        exp = c->pace_ts;
    if (c->dq_held && c->dq_n > 0) {
        uint64_t old = quic_dgram_held_from(c) + c->ep->dgram_max_age_ns + 1;
        if (old < exp)
            exp = old;
    }
    if (quic_conn_timer_set(c, exp) < 0)
        quic_conn_close_liberr(c, NGTCP2_ERR_NOMEM);
}

/* ngtcp2's next expiry, read (and kept for expiry_after_dgrams). */
static uint64_t expiry(struct quic_conn *c)
{
    c->ng_exp = ngtcp2_conn_get_expiry(c->conn);
    c->ng_exp_ok = true;
    return c->ng_exp;
}

/* The delayed ACK's timer was settled at: ack_at and the deadline. */
static void settled(struct quic_conn *c, uint64_t at, uint64_t max_ack_delay)
{
    c->ack_at = at;
    uint64_t due = c->ack_rx_ts + (max_ack_delay - QUIC_ACK_MARGIN_NS);
    if (c->ack_due == 0 || due < c->ack_due)
        c->ack_due = due;
    stat_inc(c->ep->st, QS(acks_settled));
}

/* ngtcp2 0.12 times the ACK of a packet read at t for t + min(max_ack_delay,
 * srtt / 8) (microseconds on a short path), and only handle_expiry clears
 * that timer: one loop wake-up per packet read, for a timer that
 * ack_can_wait (conn.c) then turns into a deadline. When e, ngtcp2's next
 * expiry, is that timer for the last packet read that the ACK may wait
 * for (c->ack_rx_ts, noted by after_read: no older one is owed then) and
 * the ACK may wait by ack_can_wait's rules, it is settled here as its
 * firing would settle it:
 * handle_expiry at e (e is the earliest expiry, so nothing else expires by
 * then) and the deadline, the same as on_timer's, in ack_due. The ACK then
 * rides with the next packet written from e on, when ngtcp2 counts it due
 * (c->ack_at: before then a packet does not carry it), or goes alone at
 * ack_due. Returns the expiry to arm for.
 *
 * Servers only. With it the bench's clients sent more ACK-only packets at
 * --rtt 30ms (0.43 per frame the relay received, 0.33 before, one pair),
 * which cost the relay more than it saved; the likely cause: the deadline
 * is then exactly max_ack_delay - margin after the packet, on_timer's
 * that much after the timer ran, so later by however late it ran (a
 * loaded client's loop). A client keeps on_timer's. */
static uint64_t settle_ack(struct quic_conn *c, uint64_t now, uint64_t e)
{
    if (c->ack_rx_ts == 0 || c->ack_at != 0 || e <= now || e == UINT64_MAX || c->state != CS_OPEN ||
        !c->confirmed || !quic_conn_is_server(c))
        return e;
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c->conn, &cs);
    uint64_t max = ngtcp2_conn_get_local_transport_params(c->conn)->max_ack_delay;
    if (e != c->ack_rx_ts + quic_conn_ack_delay(c, &cs) ||
        max <= cs.smoothed_rtt / 8 + QUIC_ACK_MARGIN_NS)
        return e;
    /* An error (none is expected by e) is left to the timer: on_timer
     * calls handle_expiry again and closes as it should. */
    c->ng_exp_ok = false;
    if (ngtcp2_conn_handle_expiry(c->conn, e) != 0)
        return e;
    settled(c, e, max);
    return expiry(c);
}

/* The timer's re-arm for a connection that only read since its last one
 * (quic_conn_write's fast path). Reads leave only two of ngtcp2's expiries
 * before the one the timer was armed for (c->armed_exp, the earliest of
 * them all then): the delayed-ACK timer and the loss detection timer.
 * Whatever else a read sets is a PTO or more away (retired connection IDs,
 * lost packets' records, the idle timer), and nothing moves earlier (but
 * by a smaller PTO after an RTT sample). So when the delayed-ACK time of
 * c->ack_rx_ts's packet comes before the loss detection timer and 1 ms
 * (the pacer's slack) before armed_exp, handle_expiry at that time settles
 * that timer and nothing else: settle_ack without reading the expiry
 * first (one ngtcp2_conn_get_expiry per packet read less). */
static void arm_after_reads(struct quic_conn *c, uint64_t now)
{
    if (c->ack_rx_ts != 0 && c->ack_at == 0 && c->state == CS_OPEN && c->confirmed &&
        c->armed_exp != UINT64_MAX && quic_conn_is_server(c)) {
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(c->conn, &cs);
        uint64_t max = ngtcp2_conn_get_local_transport_params(c->conn)->max_ack_delay;
        uint64_t at = c->ack_rx_ts + quic_conn_ack_delay(c, &cs);
        if (at > now && max > cs.smoothed_rtt / 8 + QUIC_ACK_MARGIN_NS &&
            at < cs.loss_detection_timer && at + NGTCP2_MILLISECONDS < c->armed_exp &&
            ngtcp2_conn_handle_expiry(c->conn, at) == 0) {
            settled(c, at, max);
            arm_at(c, expiry(c));
            return;
        }
    }
    quic_conn_arm_timer(c);
}

void quic_conn_arm_timer(struct quic_conn *c)
{
    arm_at(c, settle_ack(c, quic_ep_now(c->ep), expiry(c)));
}

/* A packet was written at now: a settled ACK went with it if ngtcp2
 * counted it due by then (else ngtcp2's own timer stands for any ACK
 * owed, and a deadline on_timer set was for one due then, which went). */
static void ack_sent(struct quic_conn *c, uint64_t now)
{
    if (c->ack_at != 0) {
        if (now < c->ack_at)
            return; /* not due yet: it did not go, the deadline stays */
        c->ack_at = 0;
        c->ack_rx_ts = 0;
    } else if (now > c->ack_rx_ts) {
        c->ack_rx_ts = 0; /* a read of an earlier turn: settle_ack looks no more */
    }
    c->ack_due = 0;
}

/* Queues the packet ngtcp2 wrote into pkt (n bytes, to the path it wrote
 * into pkt's addresses) on the send batch. */
static void commit_pkt(struct quic_conn *c, struct udp_txpkt *pkt, const ngtcp2_path *path,
                       size_t n, uint64_t now)
{
    struct quic_ep *ep = c->ep;
    pkt->remote.len = path->remote.addrlen;
    pkt->local.len = c->fd >= 0 ? 0 : path->local.addrlen; /* quic_conn_tx_local */
    udp_tx_commit_slot(ep->tx, n);
    ack_sent(c, now);
    quic_conn_amp_sent(c, n);
    stat_inc(ep->st, QS(pkts_out));
    stat_inc(ep->st, QS(pkts_written));
    stat_add(ep->st, QS(bytes_out), (uint64_t)n);
}

/* Roost's pacer, for open connections: after a write of sent bytes at now
 * (not itself held by the pacer), the next send time is now + sent / rate,
 * the rate ngtcp2 0.12 paces with (the congestion controller's pacing
 * rate, else cwnd / srtt x 1.25, RFC 9002 §7.7); a write may go up to
 * QUIC_PACE_SLACK_NS before it, so a time closer than that is none (0).
 * The same rule as ngtcp2_conn_update_pkt_tx_time, but ngtcp2 0.12 clears
 * its next send time in ngtcp2_conn_handle_expiry only: even a small
 * write's (the usual case) cost a handle_expiry round after it, or a
 * timer wake-up to write nothing. This one costs nothing when it is near,
 * and the timer wakes for it only when something waits (arm_at). While it
 * holds, datagrams and control bytes wait (the datagram queue is held:
 * aged out past its limit, counted); a write ngtcp2 was asked for (an ACK
 * due, a timer, a retransmission) goes. */
static void pace_set(struct quic_conn *c, uint64_t now, size_t sent, const ngtcp2_conn_stat *cs)
{
    double rate =
        cs->pacing_rate > 0 ? cs->pacing_rate : (double)cs->cwnd / (double)cs->smoothed_rtt * 1.25;
    double iv = rate > 0 ? (double)sent / rate : 0; /* ns */
    c->pace_ts = iv > (double)QUIC_PACE_SLACK_NS ? now + (uint64_t)iv : 0;
}

/* ngtcp2's next expiry after a write of an open connection that wrote
 * packets of datagrams only (each writev_datagram call took its datagram
 * or wrote nothing; no other ngtcp2 call), given its loss detection timer
 * after it. Such a write moves none of ngtcp2's expiries earlier but that
 * timer (a packet may carry a frame ngtcp2 queued, e.g. MAX_STREAM_DATA,
 * and start it): the idle timer and keep-alive (unused) only move later,
 * an ACK sent ends the delayed-ACK timer, lost packets are kept as long,
 * the pacer's (the handshake's) is not set again, and PMTUD probes and
 * path challenges go in packets of their own (a writev_datagram call that
 * wrote a packet without its datagram: not this case). So when nothing but
 * such writes happened since ngtcp2's expiry was last read (ng_exp_ok;
 * reads, timers and other writes clear it) the minimum of that and the
 * loss detection timer is never later than the expiry: it may be earlier
 * (an expiry that moved later: an early timer fire, harmless), so only
 * when the kept one is at least QUIC_EXP_LAZY_NS off (the idle timeout,
 * mostly; a delayed ACK or a loss timer is sooner). Saves reading the
 * expiry (ngtcp2 0.12 computes the PTO twice for it) and re-arming the
 * timer for an idle timeout that moved on by a frame interval. Returns
 * UINT64_MAX when the expiry must be read. */
static uint64_t expiry_after_dgrams(struct quic_conn *c, uint64_t now, uint64_t loss_timer)
{
    if (!c->ng_exp_ok || c->ng_exp < now + QUIC_EXP_LAZY_NS)
        return UINT64_MAX;
    stat_inc(c->ep->st, QS(expiry_kept));
    return loss_timer < c->ng_exp ? loss_timer : c->ng_exp;
}

/* After a write of sent bytes (> 0) at now: sets the pacer's send time and
 * returns ngtcp2's next expiry. paced: the write was held by roost's pacer
 * (its send time stands); dgrams_only: the write was one for
 * expiry_after_dgrams. During the handshake ngtcp2 paces its own packets:
 * its next send time is set, and cleared at once when nothing waits and it
 * is within its 1 ms slack (else the timer would wake for it to write
 * nothing). */
static uint64_t pace(struct quic_conn *c, uint64_t now, size_t sent, bool paced, bool dgrams_only)
{
    if (c->state == CS_OPEN) {
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(c->conn, &cs);
        if (!paced)
            pace_set(c, now, sent, &cs);
        if (dgrams_only) {
            uint64_t e = expiry_after_dgrams(c, now, cs.loss_detection_timer);
            if (e != UINT64_MAX)
                return e;
        }
        return expiry(c);
    }
    ngtcp2_conn_update_pkt_tx_time(c->conn, now);
    uint64_t e = expiry(c);
    const uint8_t *p;
    if (c->dq_n == 0 && ctl_tx_peek(&c->tx, &p) == 0 && e > now && e <= now + NGTCP2_MILLISECONDS) {
        c->ng_exp_ok = false;
        (void)ngtcp2_conn_handle_expiry(c->conn, now);
        e = expiry(c);
    }
    return e;
}

/* Gives back an empty datagram queue unused for QUIC_DQ_IDLE_NS. */
static void dq_release(struct quic_conn *c, uint64_t now)
{
    if (c->dq != NULL && c->dq_n == 0 && now - c->dq_last > QUIC_DQ_IDLE_NS) {
        free(c->dq);
        c->dq = NULL;
        c->dq_head = 0;
        stat_dec(c->ep->st, QS(dgram_queues));
    }
}

/* Whether the next packet may be the last the congestion window lets go:
 * ngtcp2's window left (read once per write, at the first datagram packet)
 * minus what this write sent since is at most one packet. */
static inline bool near_full(struct quic_conn *c, uint64_t *left, size_t *at, size_t sent)
{
    if (*left == UINT64_MAX) {
        *left = ngtcp2_conn_get_cwnd_left(c->conn);
        *at = sent;
    }
    return (uint64_t)(sent - *at) + UDP_TX_MAX >= *left;
}

/* The AEAD tag of every QUIC v1 packet protection (AES-GCM, ChaCha20-
 * Poly1305, AES-CCM: RFC 9001 §5.3). */
#define AEAD_TAG_LEN 16

/* The longest DATAGRAM frame an empty 1-RTT packet on the current path
 * carries. ngtcp2 0.12 (conn_write_pkt) puts a DATAGRAM frame in a packet
 * only when it fits the room left and otherwise writes no packet at all:
 * the same 0, not accepted, as a shut congestion window, so a datagram
 * larger than any packet (within the peer's max_datagram_frame_size, above
 * the path's size: 1200 until PMTUD raises it, again after a migration)
 * would hold the queue for good. The room is the path's UDP payload (the
 * send buffer's at most) less the short header (first byte, the DCID, the
 * packet number) and the AEAD tag. The packet number is counted as 1 byte,
 * the shortest: ngtcp2 takes more only beyond 127 packets past the largest
 * acknowledged, and a datagram that fits once it is 1 byte again waits as
 * for the window. So a datagram ngtcp2 could carry is never dropped. The
 * path's size and DCID change only when a packet is read or a timer fires
 * (PMTUD, migration), never during a write: read once per write, and only
 * for a datagram above DGRAM_FITS_ANY (smaller ones fit every path). */
static size_t dgram_room(struct quic_conn *c)
{
    size_t pmtu = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
    if (pmtu > UDP_TX_MAX)
        pmtu = UDP_TX_MAX;
    size_t over = 1 + ngtcp2_conn_get_dcid(c->conn)->datalen + 1 + AEAD_TAG_LEN;
    return pmtu > over ? pmtu - over : 0;
}

/* The largest datagram every 1-RTT packet carries: QUIC's smallest path
 * (1200 bytes, RFC 9000 §14), the longest DCID (20 bytes), a 4-byte packet
 * number, the tag and a 3-byte frame header (type, 2-byte length). The
 * write's one compare per datagram: only a larger one costs dgram_room. */
#define DGRAM_FITS_ANY (1200 - (1 + NGTCP2_MAX_CIDLEN + 4) - AEAD_TAG_LEN - 3)

/* A DATAGRAM frame's length for len bytes: type, varint length, data
 * (ngtcp2_pkt_datagram_framelen). */
static inline size_t dgram_framelen(uint32_t len)
{
    size_t v = len < 64 ? 1 : len < 16384 ? 2 : len < (1u << 30) ? 4 : 8;
    return 1 + v + len;
}

static bool stream_refused(ngtcp2_ssize n)
{
    return n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
           n == NGTCP2_ERR_STREAM_NOT_FOUND;
}

/* The write of one connection, by design:
 * - control bytes, then every queued datagram, coalesced into as few
 *   packets as they fit (FLAG_MORE while more follow; the last one without
 *   it, so it closes the packet itself); ACKs ride along;
 * - ngtcp2_conn_write_pkt only when something asked for it (need_pkt: a
 *   timer, the handshake, an ACK due now, a possible retransmission) or
 *   to close a packet left open;
 * - at most the send quantum per call, then the pacer's next send time
 *   (pace_set: datagrams and control bytes wait for it; the timer fires
 *   then if something does);
 * - when the congestion window (or the pacer) says no, the queue is kept,
 *   bounded by the age limit and its length; a datagram no packet of the
 *   path can carry is dropped (dgram_room), never held as if it were. */
bool quic_conn_write(struct quic_conn *c)
{
    struct quic_ep *ep = c->ep;
    if (c->state == CS_CLOSE_PENDING) {
        write_close(c);
        return true;
    }
    if (!quic_conn_live(c))
        return true;
    uint64_t now = quic_ep_now(ep);
    if (c->state == CS_OPEN && !c->need_pkt && c->dq_n == 0 && !ctl_tx_has_unsent(&c->tx) &&
        !(c->ctl_fin && !c->ctl_fin_sent)) {
        /* Dirty only for the timer (reads that brought only ACKs): one
         * expiry per connection per turn, however many packets came. */
        quic_dgram_lost_expire(c, now);
        dq_release(c, now);
        arm_after_reads(c, now);
        return true;
    }
    quic_dgram_lost_expire(c, now);
    if (c->dq_held)
        quic_dgram_age_out(c, now);
    bool need = c->need_pkt || c->state != CS_OPEN;
    bool dgrams_only = !need; /* for expiry_after_dgrams: so far */
    c->need_pkt = false;
    c->rx_elicit = 0; /* any packet carries an ACK if one is owed */
    size_t quantum = ngtcp2_conn_get_send_quantum(c->conn);
    if (quantum < UDP_TX_MAX)
        quantum = UDP_TX_MAX; /* at least one packet per write */
    size_t sent = 0;
    /* Roost's pacer holds the datagrams and control bytes of an open
     * connection until its send time (less the slack); what ngtcp2 was
     * asked for (need) goes. */
    bool paced = c->pace_ts != 0 && c->pace_ts > now + QUIC_PACE_SLACK_NS;
    if (!paced)
        c->pace_ts = 0;
    /* ngtcp2 copies the path of each packet it writes into the batch
     * slot's own addresses: no copy of them per packet. */
    ngtcp2_path path = {.local.addrlen = 0};
    ngtcp2_pkt_info pi;
    bool stream_blocked = paced, dgram_blocked = paced, open_pkt = false;
    bool guarded = false;            /* the PTO guard was tried in this write */
    uint64_t cwnd_left = UINT64_MAX; /* read once per write, when datagrams go */
    size_t sent_at_left = 0;         /* sent when cwnd_left was read */
    size_t room = SIZE_MAX;          /* dgram_room, read at the first datagram */
    bool open = c->state == CS_OPEN;
    for (;;) {
        if (sent >= quantum && !open_pkt)
            break; /* paced: the rest at the next send time */
        struct udp_txpkt *pkt = udp_tx_slot(ep->tx);
        if (pkt == NULL) {
            c->need_pkt = need || open_pkt;
            if (sent > 0)
                (void)pace(c, now, sent, paced, false);
            quic_conn_arm_timer(c);
            return false;
        }
        path.local.addr = &pkt->local.u.sa;
        path.remote.addr = &pkt->remote.u.sa;
        bool more_dgrams = open && !dgram_blocked && c->dq_n > 0;
        const uint8_t *sdata = NULL;
        size_t slen = 0;
        bool stream_ok = open && !stream_blocked && c->ctl_stream >= 0;
        if (stream_ok)
            slen = ctl_tx_peek(&c->tx, &sdata);
        ngtcp2_ssize n;
        if (slen == 0 && stream_ok && c->ctl_fin && !c->ctl_fin_sent) {
            /* Test knob (client): a FIN after the queued bytes. */
            ngtcp2_ssize taken = -1;
            dgrams_only = false;
            stat_inc(ep->st, QS(write_calls));
            n = ngtcp2_conn_writev_stream(c->conn, &path, &pi, pkt->data, UDP_TX_MAX, &taken,
                                          NGTCP2_WRITE_STREAM_FLAG_FIN, c->ctl_stream, NULL, 0,
                                          now);
            if (taken >= 0)
                c->ctl_fin_sent = true;
            if (stream_refused(n)) {
                stream_blocked = true;
                continue;
            }
            need = true;
        } else if (slen > 0) {
            ngtcp2_vec v = {.base = (uint8_t *)sdata, .len = slen};
            ngtcp2_ssize taken = -1;
            uint32_t fl = more_dgrams ? NGTCP2_WRITE_STREAM_FLAG_MORE : 0;
            dgrams_only = false;
            stat_inc(ep->st, QS(write_calls));
            n = ngtcp2_conn_writev_stream(c->conn, &path, &pi, pkt->data, UDP_TX_MAX, &taken, fl,
                                          c->ctl_stream, &v, 1, now);
            if (taken > 0)
                ctl_tx_sent(&c->tx, (size_t)taken);
            if (n == NGTCP2_ERR_WRITE_MORE) {
                open_pkt = true;
                continue;
            }
            if (stream_refused(n)) {
                stream_blocked = true;
                continue;
            }
        } else if (more_dgrams && !open_pkt && !guarded && c->ctl_stream >= 0 && !stream_blocked &&
                   near_full(c, &cwnd_left, &sent_at_left, sent)) {
            /* This packet may be the last the congestion window lets go.
             * ngtcp2 0.12 counts no DATAGRAM-only packet as PTO-eliciting
             * (made so upstream in 0.14): were every packet of a full
             * window such and all lost, no loss detection timer would run
             * and nothing would ever go again. A zero-length STREAM frame
             * on the control stream (no byte for the peer's app) opens the
             * packet and makes it PTO-eliciting. Once per write, only near
             * a full window. */
            guarded = true;
            dgrams_only = false;
            stat_inc(ep->st, QS(write_calls));
            n = ngtcp2_conn_writev_stream(c->conn, &path, &pi, pkt->data, UDP_TX_MAX, NULL,
                                          NGTCP2_WRITE_STREAM_FLAG_MORE, c->ctl_stream, NULL, 0,
                                          now);
            if (n == NGTCP2_ERR_WRITE_MORE) {
                open_pkt = true;
                continue;
            }
            if (stream_refused(n)) {
                stream_blocked = true;
                continue;
            }
            if (n == 0)
                continue; /* window or pacer shut: the datagram write finds it so */
            /* n > 0: a packet of other frames (an ACK) went; n < 0: error. */
        } else if (more_dgrams) {
            struct dgram_item *d = &c->dq[c->dq_head];
            if (d->len > DGRAM_FITS_ANY) {
                if (room == SIZE_MAX)
                    room = dgram_room(c);
                if (dgram_framelen(d->len) > room) {
                    /* No packet of this path carries it: dropped for
                     * this peer only, never taken for a shut window. */
                    quic_dgram_pop(c, DG_TOO_LARGE);
                    continue;
                }
            }
            ngtcp2_vec v = {.base = d->b->data + d->off, .len = d->len};
            int accepted = 0;
            uint32_t fl = c->dq_n > 1 ? NGTCP2_WRITE_DATAGRAM_FLAG_MORE : 0;
            stat_inc(ep->st, QS(write_calls));
            n = ngtcp2_conn_writev_datagram(c->conn, &path, &pi, pkt->data, UDP_TX_MAX, &accepted,
                                            fl, c->dgram_seq, &v, 1, now);
            if (accepted) {
                c->dgram_seq++;
                c->cs.dgram_out++;
                c->cs.bytes_out += d->len;
                stat_inc(ep->st, QS(dgram_out));
                quic_dgram_pop(c, DG_SENT);
                if (n == NGTCP2_ERR_WRITE_MORE) {
                    open_pkt = true;
                    continue;
                }
            } else if (n == 0) {
                /* Congestion window, pacer or amplification limit (the
                 * datagram fits an empty packet: checked above): keep the
                 * queue (bounded by age and length) until it opens. */
                dgram_blocked = true;
                if (!open_pkt)
                    stat_inc(ep->st, QS(write_empty));
                open_pkt = false;
                continue;
            } else if (n == NGTCP2_ERR_INVALID_ARGUMENT) {
                quic_dgram_pop(c, DG_TOO_LARGE);
                continue;
            } else if (n == NGTCP2_ERR_INVALID_STATE) {
                quic_dgram_pop(c, DG_STATE);
                continue;
            }
            /* n > 0 and not accepted: the packet filled with other frames
             * (or was a PMTUD probe); the datagram goes in the next one. */
            if (!accepted)
                dgrams_only = false;
        } else if (need || open_pkt) {
            dgrams_only = false;
            stat_inc(ep->st, QS(write_calls));
            n = ngtcp2_conn_write_pkt(c->conn, &path, &pi, pkt->data, UDP_TX_MAX, now);
            /* ngtcp2 fills a packet with all it has that fits: one with
             * room to spare (an ACK, mostly) was the last, no round to
             * find nothing. The handshake may coalesce packets: loop. */
            if (n > 0 && open && !open_pkt &&
                (size_t)n + 64 < ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn))
                need = false;
        } else {
            break; /* nothing more was asked for */
        }
        if (n < 0) {
            quic_conn_close_liberr(c, (int)n);
            return true;
        }
        open_pkt = false;
        if (n == 0) {
            stat_inc(ep->st, QS(write_empty));
            break;
        }
        commit_pkt(c, pkt, &path, (size_t)n, now);
        sent += (size_t)n;
    }
    /* What is left (the pacer's next send time, a held-back queue) waits
     * for the timer. Only a queue the congestion controller or the pacer
     * held back ages out: one merely late (the process was busy) goes, and
     * a held one ages from this write on, not from its queueing (a loop
     * busy before it, or the endpoint's cached time at the queueing). */
    bool held = dgram_blocked && c->dq_n > 0;
    if (held && !c->dq_held)
        c->dq_held_since = now;
    c->dq_held = held;
    if (paced && (c->dq_n > 0 || ctl_tx_has_unsent(&c->tx)))
        stat_inc(ep->st, QS(pace_holds));
    dq_release(c, now);
    arm_at(c, settle_ack(c, now, sent > 0 ? pace(c, now, sent, paced, dgrams_only) : expiry(c)));
    return true;
}
