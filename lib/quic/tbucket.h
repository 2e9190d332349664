/* Process-wide token bucket for rare, abusable responses (Retry, version
 * negotiation, stateless reset, stateless CONNECTION_CLOSE). Implemented as
 * GCRA on one atomic "theoretical arrival time", so any worker can take a
 * token without a lock. Only abnormal traffic reaches it, never the
 * per-packet path of an established connection.
 *
 * Thread safety: tbucket_take from any thread; init before sharing. */
#ifndef ROOST_QUIC_TBUCKET_H
#define ROOST_QUIC_TBUCKET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct tbucket {
    _Atomic uint64_t tat; /* ns */
    uint64_t interval;    /* ns per token; 0: unlimited */
    uint64_t burst_ns;    /* interval * burst */
};

/* rate tokens per second (0: unlimited), burst tokens at once (>= 1). */
void tbucket_init(struct tbucket *b, uint32_t rate, uint32_t burst);
/* Takes one token at time now (ns). Returns true when allowed. */
bool tbucket_take(struct tbucket *b, uint64_t now);

#endif
