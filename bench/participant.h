/* The participant model of the load generator: what one simulated
 * participant does. A speaker sends on its frame clock (talk-spurt schedule
 * from lib/client/talk, Opus frames from the audio table, bench payload
 * header with send time and index); over QUIC or WebSocket it says HELLO, mints its token
 * and JOINs; as a receiver it tracks each speaker's sequence window (loss,
 * duplicates, reordering) and records one-way latency.
 *
 * Every function runs on the bench thread that owns the participant (p->t). */
#ifndef ROOST_BENCH_PARTICIPANT_H
#define ROOST_BENCH_PARTICIPANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/load_int.h"

/* A media payload (after the media header) arrived at receiver r at now. */
void participant_rx_frame(struct bp *r, uint32_t seq, const uint8_t *pl, size_t len, uint64_t now);

/* Timer callback of a speaker's frame slot (arg: the struct bp): re-arms for
 * the next slot until the window ends, and sends one frame unless silent. */
void participant_on_slot(struct timer *tm, uint64_t now, void *arg);

/* The participant's JOIN was answered (ok) or failed; counts it once. */
void participant_joined(struct bp *p, uint64_t now, bool ok);
/* The participant's join failed, or its connection ended early (after
 * JOINED), in the way kind/code say (enum load_end_kind): counts it in its
 * thread's ends and, before JOINED, as a failed join. */
void participant_ended(struct bp *p, uint64_t now, enum load_end_kind kind, uint64_t code);

/* lib/client callbacks of a participant's QUIC connection (user data: the
 * struct bp). */
extern const struct roost_client_callbacks participant_quic_cbs;
/* bench/wsclient callbacks of a WebSocket participant (user: the struct
 * bp): the same HELLO, JOIN and media over docs/PROTOCOL.md §11. */
extern const struct wscl_cbs participant_ws_cbs;

#endif
