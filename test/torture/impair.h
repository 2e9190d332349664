/* Pure parts of the impairment proxy (test/integration/prog_impair.c): the
 * seeded generator, the per-packet decision (loss, duplication, delay,
 * jitter, reordering), the delay queue and the command line. No sockets and
 * no clock here, so test/unit/test_impair.c checks them with fixed seeds and
 * fake time.
 *
 * The proxy and the unit test each compile impair.c into themselves (the
 * Makefile links test programs only with the test libraries).
 *
 * Thread safety: none; the proxy is one thread. */
#ifndef ROOST_TORTURE_IMPAIR_H
#define ROOST_TORTURE_IMPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMPAIR_MTU 1500      /* largest datagram carried; longer ones are truncated by recv */
#define IMPAIR_REBIND_MAX 16 /* --rebind-at times */

enum { IMPAIR_UP = 0, IMPAIR_DOWN = 1 }; /* up: client -> relay, down: relay -> client */

/* xoshiro256**: fast, good enough for test decisions, and the same sequence
 * on every machine for a given seed. */
struct impair_rng {
    uint64_t s[4];
};

void impair_rng_seed(struct impair_rng *r, uint64_t seed);
uint64_t impair_rng_next(struct impair_rng *r);
/* Uniform in [0, 1). */
double impair_rng_unit(struct impair_rng *r);

/* Impairments of one direction. Probabilities are in [0, 1]. */
struct impair_dir {
    double loss;         /* a packet is dropped */
    double dup;          /* a kept packet is sent twice */
    double reorder;      /* a copy is held back reorder_ns longer */
    uint64_t delay_ns;   /* base one-way delay */
    uint64_t jitter_ns;  /* each copy's delay is delay +- uniform(jitter), >= 0 */
    uint64_t reorder_ns; /* extra hold of a reordered copy */
};

/* What happens to one packet: copies is 0 (lost), 1 or 2 (duplicated);
 * delay_ns[i] is how long copy i waits; reordered[i] says it was held. */
struct impair_verdict {
    unsigned copies;
    uint64_t delay_ns[2];
    bool reordered[2];
};

/* Draws the verdict for one packet. The number of draws per packet is
 * fixed (loss, dup, then jitter and reorder for both copies), so a given
 * seed gives the same verdict sequence whatever the probabilities. */
void impair_decide(const struct impair_dir *d, struct impair_rng *r, struct impair_verdict *v);

/* One queued datagram. */
struct impair_pkt {
    uint64_t due; /* ns, the caller's clock */
    uint64_t seq; /* push order: ties on due leave in push order */
    uint32_t dir; /* IMPAIR_UP / IMPAIR_DOWN */
    uint32_t client;
    uint32_t client_gen; /* the mapping's generation when queued (stale: dropped) */
    uint16_t len;
    uint8_t data[IMPAIR_MTU];
};

/* Bounded delay queue: a binary min-heap on (due, seq) over a fixed pool of
 * packets, so the proxy never allocates per packet and a flood cannot grow
 * it. */
struct impair_queue {
    struct impair_pkt *pool;  /* cap packets */
    struct impair_pkt **heap; /* n queued, ordered */
    struct impair_pkt **free; /* n_free unused */
    size_t n, n_free, cap;
    uint64_t next_seq;
};

/* Returns 0 or -ENOMEM. */
int impair_queue_init(struct impair_queue *q, size_t cap);
void impair_queue_free(struct impair_queue *q);
/* A free packet to fill, or NULL when all cap are queued (caller counts the
 * drop). Give it back with impair_queue_push or impair_queue_release. */
struct impair_pkt *impair_queue_alloc(struct impair_queue *q);
/* Queues p (from impair_queue_alloc) to leave at due. */
void impair_queue_push(struct impair_queue *q, struct impair_pkt *p, uint64_t due);
/* The earliest packet, or NULL when empty. */
const struct impair_pkt *impair_queue_peek(const struct impair_queue *q);
/* Removes and returns the earliest packet if due <= now, else NULL. Release
 * it after use. */
struct impair_pkt *impair_queue_pop_due(struct impair_queue *q, uint64_t now);
void impair_queue_release(struct impair_queue *q, struct impair_pkt *p);

/* The proxy's configuration. */
struct impair_opts {
    char listen_host[64];
    uint16_t listen_port; /* 0: ephemeral (printed at start) */
    char up_host[64];
    uint16_t up_port;
    struct impair_dir dir[2];
    uint64_t seed;
    double duration_s; /* stop after this long; 0: until SIGTERM */
    double rebind_every_s;
    double rebind_at_s[IMPAIR_REBIND_MAX];
    unsigned n_rebind_at;
    unsigned max_clients;
    double idle_s; /* a mapping unused this long may be reused */
    size_t queue_cap;
    const char *stats_file;
};

/* Defaults, then argv[1..argc). Options (percentages are 0..100, times
 * take ms/s/m or are seconds; "--X" sets both directions, "--up-X" and
 * "--down-X" one):
 *   --listen HOST:PORT  --upstream HOST:PORT  --seed N  --duration T
 *   --loss P  --dup P  --reorder P  --delay T  --jitter T  --reorder-delay T
 *   --rebind-every T  --rebind-at T[,T...]  --max-clients N  --idle T
 *   --queue N  --stats FILE
 * Returns 0, 1 for --help, or -EINVAL with a message in err. */
int impair_parse(int argc, char **argv, struct impair_opts *o, char *err, size_t errcap);

/* Parses "5", "5s", "250ms", "2m" into ns. Returns 0 or -EINVAL. */
int impair_parse_time(const char *s, uint64_t *ns);
/* Parses "HOST:PORT" or "[V6]:PORT" (numeric host). Returns 0 or -EINVAL. */
int impair_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port, bool allow_zero);

#endif
