/* SPSC ring: one producer thread, one consumer thread, fixed-size slots.
 *
 * Capacity is a power of two; indices are free-running uint32_t counters
 * masked on access, so `tail - head` is the fill level even across the 2^32
 * wrap. Producer and consumer state live on separate cache lines, and each
 * side keeps a cached copy of the other side's index so that it touches the
 * other side's line only when its cached view says full (producer) or empty
 * (consumer).
 *
 * The producer may stage writes (ring_stage_burst) and publish them later in
 * one store (ring_publish): the worker runtime publishes once per loop turn.
 * Staged slots are invisible to the consumer until published.
 *
 * Memory ordering (every acquire names its release):
 *   ring_publish  : store-release prod.tail   -> pairs with the consumer's
 *                   load-acquire of prod.tail in ring_pop_burst/ring_count:
 *                   slot contents written before the publish are visible to
 *                   the consumer that sees the new tail.
 *   ring_pop_burst: store-release cons.head   -> pairs with the producer's
 *                   load-acquire of cons.head in ring_stage_burst/ring_free:
 *                   the consumer's reads of a slot finish before the
 *                   producer may overwrite it.
 *
 * Thread safety, per function:
 *   | function                              | thread                        |
 *   |---------------------------------------|-------------------------------|
 *   | ring_new, ring_del                    | any, while no other thread    |
 *   |                                       | uses the ring                 |
 *   | ring_capacity, ring_slot_size         | any                           |
 *   | ring_stage_burst, ring_publish,       | the producer only             |
 *   | ring_push_burst, ring_free,           |                               |
 *   | ring_unpublished                      |                               |
 *   | ring_pop_burst, ring_count,           | the consumer only             |
 *   | ring_empty                            |                               |
 * The producer and consumer functions may run concurrently with each other;
 * two producers (or two consumers) may not. */
#ifndef ROOST_CORE_RING_H
#define ROOST_CORE_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define RING_CACHE_LINE 64

/* Exposed for inlining only; fields are private to ring.{c,h}. */
struct ring {
    /* Read-only after ring_new: shared by both sides, written by neither. */
    uint32_t mask;
    uint32_t capacity;
    uint32_t slot_size;
    unsigned char *slots;

    /* Producer's line. `tail` is the only field the consumer reads. */
    struct {
        _Atomic uint32_t tail; /* published: slots below it are readable */
        uint32_t next;         /* staged: next slot to write (>= tail) */
        uint32_t cons_cache;   /* last seen cons.head */
    } prod __attribute__((aligned(RING_CACHE_LINE)));

    /* Consumer's line. `head` is the only field the producer reads. */
    struct {
        _Atomic uint32_t head; /* slots below it are free again */
        uint32_t prod_cache;   /* last seen prod.tail */
    } cons __attribute__((aligned(RING_CACHE_LINE)));
};

/* Creates a ring of `capacity` slots of `slot_size` bytes each.
 * capacity: power of two, 2 .. 2^30. slot_size: 1 .. 65536.
 * Returns 0 and *out, ROOST_EINVAL or ROOST_ENOMEM. Caller owns the ring. */
int ring_new(struct ring **out, uint32_t capacity, uint32_t slot_size);
/* Frees the ring; unread messages are dropped (the caller drains them first
 * if they hold references). Accepts NULL. */
void ring_del(struct ring *r);

static inline uint32_t ring_capacity(const struct ring *r)
{
    return r->capacity;
}

static inline uint32_t ring_slot_size(const struct ring *r)
{
    return r->slot_size;
}

static inline unsigned char *ring_slot(const struct ring *r, uint32_t idx)
{
    return r->slots + (size_t)(idx & r->mask) * r->slot_size;
}

/* GCC cannot see that the 64-byte branch is taken only for 64-byte slots and
 * warns when a caller with smaller slots inlines it: silence that here only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
static inline void ring_copy(const struct ring *r, void *dst, const void *src)
{
    /* The common 64-byte message gets a fixed-size copy the compiler
     * inlines; other sizes take the generic path. */
    if (r->slot_size == 64)
        memcpy(dst, src, 64);
    else
        memcpy(dst, src, r->slot_size);
}
#pragma GCC diagnostic pop

/* Producer: free slots, refreshing the cached consumer index. */
static inline uint32_t ring_free(struct ring *r)
{
    /* acquire: pairs with the store-release of cons.head in ring_pop_burst,
     * so the consumer has finished reading the slots we may now reuse. */
    r->prod.cons_cache = atomic_load_explicit(&r->cons.head, memory_order_acquire);
    return r->capacity - (r->prod.next - r->prod.cons_cache);
}

/* Producer: copies up to n slots from `msgs` (n * slot_size bytes) into the
 * ring without publishing them. Returns how many were staged (0..n): fewer
 * than n when the ring is (nearly) full. */
static inline unsigned ring_stage_burst(struct ring *r, const void *msgs, unsigned n)
{
    uint32_t free_slots = r->capacity - (r->prod.next - r->prod.cons_cache);
    if (free_slots < n)
        free_slots = ring_free(r);
    if (n > free_slots)
        n = free_slots;
    const unsigned char *src = msgs;
    for (unsigned i = 0; i < n; i++)
        ring_copy(r, ring_slot(r, r->prod.next + i), src + (size_t)i * r->slot_size);
    r->prod.next += n;
    return n;
}

/* Producer: number of staged, not yet published slots. */
static inline uint32_t ring_unpublished(const struct ring *r)
{
    return r->prod.next - atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
}

/* Producer: makes every staged slot visible to the consumer with one store.
 * Returns how many slots this call published (0 when nothing was staged). */
static inline uint32_t ring_publish(struct ring *r)
{
    /* relaxed: only this thread writes prod.tail. */
    uint32_t old = atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
    if (old == r->prod.next)
        return 0;
    /* release: pairs with the consumer's load-acquire of prod.tail in
     * ring_pop_burst/ring_count; the slot writes above happen before it. */
    atomic_store_explicit(&r->prod.tail, r->prod.next, memory_order_release);
    return r->prod.next - old;
}

/* Producer: stage + publish. Returns how many were pushed (0..n). */
static inline unsigned ring_push_burst(struct ring *r, const void *msgs, unsigned n)
{
    unsigned k = ring_stage_burst(r, msgs, n);
    ring_publish(r);
    return k;
}

/* Consumer: published slots not yet popped, refreshing the cached tail. */
static inline uint32_t ring_count(struct ring *r)
{
    /* acquire: pairs with the store-release of prod.tail in ring_publish, so
     * the slots below the tail we read are fully written. */
    r->cons.prod_cache = atomic_load_explicit(&r->prod.tail, memory_order_acquire);
    return r->cons.prod_cache - atomic_load_explicit(&r->cons.head, memory_order_relaxed);
}

/* Consumer: true when nothing published is left to pop. */
static inline bool ring_empty(struct ring *r)
{
    uint32_t head = atomic_load_explicit(&r->cons.head, memory_order_relaxed);
    if (r->cons.prod_cache != head)
        return false;
    return ring_count(r) == 0;
}

/* Consumer: copies up to n published slots into `out` (n * slot_size bytes)
 * and frees them with one index store. Returns how many were popped. */
static inline unsigned ring_pop_burst(struct ring *r, void *out, unsigned n)
{
    /* relaxed: only this thread writes cons.head. */
    uint32_t head = atomic_load_explicit(&r->cons.head, memory_order_relaxed);
    uint32_t avail = r->cons.prod_cache - head;
    if (avail < n)
        avail = ring_count(r);
    if (n > avail)
        n = avail;
    if (n == 0)
        return 0;
    unsigned char *dst = out;
    for (unsigned i = 0; i < n; i++)
        ring_copy(r, dst + (size_t)i * r->slot_size, ring_slot(r, head + i));
    /* release: pairs with the producer's load-acquire of cons.head in
     * ring_free; our slot reads above happen before the producer reuses them. */
    atomic_store_explicit(&r->cons.head, head + n, memory_order_release);
    return n;
}

#endif
