/* Path emulation for roost-bench (--rtt, --jitter, --loss): datagrams the
 * bench sends and receives wait in a timing wheel before they go on to the
 * socket or to the participant, so the relay and the bench's QUIC stack see
 * a path with a real round-trip time instead of loopback's ~0.1 ms. No proxy
 * process and no extra socket: the bench's own endpoint hands its datagrams
 * to the wheel (bench/load.c wires it to the QUIC client through
 * quic_client_set_path, and to the floor's plain sockets directly).
 *
 * Each direction (NETEM_OUT: bench -> relay, NETEM_IN: relay -> bench)
 * waits rtt/2, plus or minus a uniform draw of the jitter (never below 0),
 * and drops each datagram with probability loss. A flow (one connection or
 * floor socket, struct netem_flow in the caller's storage) keeps its order
 * per direction: jitter delays, it never reorders a flow's datagrams (a
 * datagram waits at least until the one before it in its flow is due).
 *
 * The wheel: slots of 2^16 ns (65.5 us), as many as cover the longest
 * delay, each a list sorted by (due, push order); a bitmap of non-empty
 * slots finds the next due one. Entries come from a pool grown in chunks
 * and reused, so the per-datagram cost is a copy and a list append. A
 * datagram is released exactly when due (not at its slot's start), in (due,
 * push order) order.
 *
 * Time is a parameter: netem never reads the clock.
 *
 * Thread safety: none; a netem belongs to one bench thread. */
#ifndef ROOST_BENCH_NETEM_H
#define ROOST_BENCH_NETEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { NETEM_OUT = 0, NETEM_IN = 1 };

#define NETEM_MAX_LEN 2048                /* longest datagram carried (UDP_RX_MAX) */
#define NETEM_MAX_RTT_NS 10000000000ull   /* --rtt at most 10 s */
#define NETEM_MAX_JITTER_NS 1000000000ull /* --jitter at most 1 s */

struct netem_config {
    uint64_t rtt_ns;    /* added round trip: each direction waits rtt/2 */
    uint64_t jitter_ns; /* each datagram's one-way delay is rtt/2 +- uniform(jitter), >= 0 */
    double loss;        /* share of datagrams dropped, each direction, in [0, 1] */
    uint64_t seed;      /* the loss and jitter draws: same seed, same sequence */
};

/* True when cfg changes anything (else the bench does not use a wheel). */
bool netem_active(const struct netem_config *cfg);

/* Per-flow state, in the caller's storage, zeroed before first use. */
struct netem_flow {
    uint64_t last_due[2]; /* per direction: the due time of the flow's latest datagram */
};

struct netem_stats {
    uint64_t queued[2];   /* accepted per direction */
    uint64_t lost[2];     /* dropped by the loss draw */
    uint64_t released[2]; /* handed on */
    uint64_t dropped;     /* forgotten (netem_forget, netem_flush of the other direction) */
    uint64_t max_held;    /* most datagrams held at once */
};

/* Called for each released datagram: ctx is what netem_push was given,
 * data is valid during the call only. It may call netem_push and
 * netem_forget. */
typedef void (*netem_release_cb)(void *arg, unsigned dir, void *ctx, const uint8_t *data,
                                 size_t len, uint64_t now);

struct netem;

/* cb and arg are borrowed for the netem's life. Returns 0, ROOST_EINVAL
 * (rtt, jitter or loss out of range), ROOST_ENOMEM. */
int netem_new(struct netem **out, const struct netem_config *cfg, netem_release_cb cb, void *arg);
/* Frees the wheel and what it holds (nothing is released). Accepts NULL. */
void netem_del(struct netem *nm);

/* Queues len bytes going direction dir for ctx (flow may be NULL: no
 * order kept), to be released at now + the drawn delay. Returns 1 (queued),
 * 0 (lost by the draw), ROOST_ETOOBIG (len > NETEM_MAX_LEN), ROOST_ENOMEM. */
int netem_push(struct netem *nm, unsigned dir, void *ctx, struct netem_flow *flow,
               const uint8_t *data, size_t len, uint64_t now);
/* Releases every datagram due at or before now, in (due, push order). */
void netem_run(struct netem *nm, uint64_t now);
/* The due time of the earliest held datagram, UINT64_MAX when none. */
uint64_t netem_next(const struct netem *nm);
/* Drops every datagram held for ctx (its connection is being freed). */
void netem_forget(struct netem *nm, const void *ctx);
/* Releases every held datagram of direction dir now and drops the others
 * (the end of a run: the bench's closing packets leave at once). */
void netem_flush(struct netem *nm, unsigned dir, uint64_t now);
/* Datagrams held. */
size_t netem_held(const struct netem *nm);
void netem_stats(const struct netem *nm, struct netem_stats *out);

#endif
