/* Counted buffers: the only payload memory that crosses workers.
 *
 * A buffer is written once by the worker that creates it, then shared
 * read-only; each holder owns one reference. buf_ref/buf_unref are the only
 * atomic read-modify-writes on the per-packet path (DESIGN.md §1).
 * A process-wide gauge of live buffers lets tests prove every buffer came
 * back: each thread counts its allocations and frees in its own cache-line
 * slot (relaxed load + store, no shared write per packet), and buf_live()
 * sums the slots. */
#ifndef ROOST_CORE_BUF_H
#define ROOST_CORE_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct buf {
    _Atomic uint32_t refs;
    uint32_t len;   /* bytes used */
    uint32_t cap;   /* bytes allocated after the header */
    uint32_t stamp; /* ingress time: buf_stamp_now(); 0 = none (latency metrics) */
    uint8_t data[];
};

/* Allocates a buffer of `cap` bytes with one reference and len 0.
 * Returns NULL on allocation failure. Any thread. */
struct buf *buf_new(uint32_t cap);

/* Takes another reference. Any thread holding a reference. */
static inline struct buf *buf_ref(struct buf *b)
{
    /* relaxed: the caller already holds a reference, so the object is alive
     * and its contents were published to this thread by whatever handed over
     * that reference (a ring push/pop pair). */
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

/* The ingress stamp of a media buffer and its egress reading, for the
 * fan-out latency metric: CLOCK_MONOTONIC in units of 2^BUF_STAMP_SHIFT ns
 * (256 ns), low 32 bits, never 0. Read directly (vDSO, tens of ns) because
 * the turn-start times of two workers are not comparable: the egress
 * worker's turn may have begun before the ingress worker's.
 *
 * The reader passes the raw difference buf_stamp_now() - stamp (unsigned,
 * so it is right across the wrap) to a histogram, which converts it with
 * buf_stamp_ns. 32 bits of 256 ns units wrap after 2^40 ns (18.3 min), far
 * above any latency bucket (the top finite one is 4.29 s): an age of half
 * the wrap or more (9.2 min) reads as BUF_STAMP_UNKNOWN, and only a buffer
 * held over 18.3 min (a keyframe cached that long) could read as its age
 * modulo the wrap. */
#define BUF_STAMP_SHIFT 8
#define BUF_STAMP_UNKNOWN UINT64_MAX

static inline uint32_t buf_stamp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return (uint32_t)(ns >> BUF_STAMP_SHIFT) | 1u;
}

/* A stamp difference (buf_stamp_now() - stamp) in ns, or BUF_STAMP_UNKNOWN
 * when it is half the wrap period or more (older than 9.2 min, or not a
 * difference of two stamps). Exact to 2^BUF_STAMP_SHIFT ns. */
static inline uint64_t buf_stamp_ns(uint32_t d)
{
    if (d >= 1u << 31)
        return BUF_STAMP_UNKNOWN;
    return (uint64_t)d << BUF_STAMP_SHIFT;
}

/* Drops a reference; frees on the last. Accepts NULL. Any thread. */
void buf_unref(struct buf *b);

/* Number of buffers allocated and not yet freed, process-wide. Any thread.
 * Exact once the threads that allocated and freed have synchronised with the
 * caller (e.g. joined, or handed over through a ring); while they run, the
 * sum may lag their latest buf_new/buf_unref. */
int64_t buf_live(void);

#endif
