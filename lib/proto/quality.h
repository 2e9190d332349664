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

#endif
