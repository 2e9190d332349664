/* The floor: a plain UDP fan-out forwarder built into the bench, the
 * baseline every relay figure is compared with. It does what the relay's
 * hot path must do at minimum (receive a datagram, send it to the other
 * members of its room) with nothing else: no QUIC, no crypto, no tokens.
 * Like the relay it runs one pinned thread per worker, each with its own
 * SO_REUSEPORT socket, recvmmsg in and sendmmsg out.
 *
 * Wire (all integers big-endian), one datagram each:
 *   JOIN   'J' room u32, member u32         client -> floor
 *   JOINED 'A' participant id u32           floor -> that client
 *   MEDIA  'M' room u32, member u32, media  both ways; forwarded unchanged
 * where media is the 12-byte client->relay header and the payload. A
 * member's address is the source of its JOIN; members must join before
 * sending.
 *
 * Thread safety: floor_* from the thread that created the floor, except
 * floor_stats (any thread). */
#ifndef ROOST_BENCH_FLOOR_H
#define ROOST_BENCH_FLOOR_H

#include <stdbool.h>
#include <stdint.h>

#define FLOOR_JOIN 'J'
#define FLOOR_JOINED 'A'
#define FLOOR_MEDIA 'M'
#define FLOOR_HDR_LEN 9 /* type, room, member */

struct floor;

struct floor_config {
    unsigned workers; /* >= 1 */
    uint32_t rooms;   /* room numbers 0..rooms-1 */
    uint32_t size;    /* members 0..size-1 per room */
    const int *cpus;  /* optional CPU list for pinning (cpus[i % n_cpus]) */
    unsigned n_cpus;
    bool pin; /* pin worker i to CPU i % online CPUs when no list */
};

struct floor_stats {
    uint64_t rx;      /* datagrams received */
    uint64_t tx;      /* datagrams sent (egress) */
    uint64_t tx_fail; /* egress datagrams sendmmsg did not take */
    uint64_t joins;
    uint64_t turns;  /* loop turns: wake-ups that found datagrams */
    uint64_t cpu_ns; /* CPU time of all workers so far */
};

/* Binds 127.0.0.1 on an ephemeral port and starts the workers.
 * Returns 0, ROOST_EINVAL, ROOST_ESYS, ROOST_ENOMEM. */
int floor_new(struct floor **out, const struct floor_config *cfg);
uint16_t floor_port(const struct floor *f);
/* Totals so far (relaxed reads of each worker's counters). */
void floor_stats(struct floor *f, struct floor_stats *out);
/* Stops and joins the workers, frees. Accepts NULL. */
void floor_del(struct floor *f);

#endif
