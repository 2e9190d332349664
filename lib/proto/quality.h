/* QUALITY summaries: what a publisher learns about its audience
 * (docs/PROTOCOL.md §4.9, issue 6). The wire codec; the room computes the
 * summaries (lib/room/quality.c).
 *
 * A summary travels as a QUALITY message about a subscriber's link (the
 * receiver with the worst loss: participant_id, loss_permille = worst loss,
 * rtt_us = worst RTT), followed by an extension the v1 decoder skips
 * ("bytes after the last field are ignored", PROTOCOL.md §7):
 *   u8  kind (QUALITY_EXT_SUMMARY)
 *   u32 receivers
 *   u16 loss_median  (permille)
 *   u16 loss_worst   (permille)
 *   u32 rtt_median_us
 *   u32 rtt_worst_us
 * all big-endian. A QUALITY about the recipient's own link carries no
 * extension.
 *
 * Pure functions: no I/O, no global state, any thread. */
#ifndef ROOST_PROTO_QUALITY_H
#define ROOST_PROTO_QUALITY_H

#include <stddef.h>
#include <stdint.h>

#define QUALITY_EXT_SUMMARY 1
#define QUALITY_EXT_LEN 17

struct msg_quality;

struct quality_summary {
    uint32_t receivers;               /* subscribers described (the publisher excluded) */
    uint32_t worst_pid;               /* the receiver with the worst loss */
    uint16_t loss_median, loss_worst; /* permille */
    uint32_t rtt_median_us, rtt_worst_us;
};

/* Writes the QUALITY body (type + fields + extension) for *sum into
 * out[0, cap). Returns its length, ROOST_EINVAL (no receivers, worst_pid 0,
 * loss above 1000) or ROOST_ENOSPC. */
int quality_summary_encode(const struct quality_summary *sum, uint32_t interval_ms, uint8_t *out,
                           size_t cap);
/* Decodes a QUALITY body: *q gets the v1 fields; returns 1 and fills *sum
 * when the summary extension is present, 0 when not (a link report), or
 * the msg_decode error (ROOST_EUNKNOWN for another type: ROOST_EINVAL). */
int quality_summary_decode(const uint8_t *body, size_t len, struct msg_quality *q,
                           struct quality_summary *sum);

/* Loss towards a receiver over one interval, per mille (0..1000), from the
 * transport's datagram counters of that interval: sent, acked (every ACK of
 * a datagram, including a late one for a datagram already declared lost)
 * and lost (declared lost). The transport declares a reordered datagram
 * lost (packet or time threshold) and then, when its ACK arrives, acked as
 * well (ngtcp2 keeps the entry after loss and calls ack_datagram for it),
 * so lost / (lost + acked) counts every reordering as a loss.
 *
 * The estimate: real = min(lost, balance), where *balance (per receiver,
 * starting at 0) accumulates sent - acked - real over all intervals so far.
 * Reordering raises `lost` but not the balance (its late ACK cancels it); a
 * real loss raises both. The balance also holds the datagrams in flight at
 * the interval's end (about rate x RTT): when that inflates one interval's
 * estimate, the ACKs that follow lower the balance and the next intervals
 * pay it back, so the reported loss never adds up to more than
 * sent - acked over the receiver's life. Pure (state in *balance). */
uint16_t quality_loss_permille(uint64_t sent, uint64_t acked, uint64_t lost, int64_t *balance);

#endif
