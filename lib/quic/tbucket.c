#include "quic/tbucket.h"

void tbucket_init(struct tbucket *b, uint32_t rate, uint32_t burst)
{
    if (burst == 0)
        burst = 1;
    b->interval = rate == 0 ? 0 : 1000000000ULL / rate;
    if (rate != 0 && b->interval == 0)
        b->interval = 1;
    b->burst_ns = b->interval * burst;
    atomic_init(&b->tat, 0);
}

bool tbucket_take(struct tbucket *b, uint64_t now)
{
    if (b->interval == 0)
        return true;
    uint64_t tat = atomic_load_explicit(&b->tat, memory_order_relaxed);
    for (;;) {
        uint64_t base = tat > now ? tat : now;
        if (base + b->interval > now + b->burst_ns)
            return false;
        /* relaxed: the counter guards no other memory. */
        if (atomic_compare_exchange_weak_explicit(&b->tat, &tat, base + b->interval,
                                                  memory_order_relaxed, memory_order_relaxed))
            return true;
    }
}
