/* Counters with one writer and any number of readers: the one counter
 * idiom of the tree.
 *
 * A module keeps its counters as an array of relaxed atomic slots, one
 * array per worker (or per object that one thread owns), laid out like a
 * public struct of uint64_t fields so that readers get a plain struct:
 *
 *     struct foo_stats { uint64_t pkts, drops; };          public, plain
 *     _Atomic uint64_t st[STAT_N(struct foo_stats)];       per worker
 *     stat_inc(st, STAT_IDX(struct foo_stats, pkts));      owner only
 *     stat_read((uint64_t *)&out, st, STAT_N(struct foo_stats));  any thread
 *
 * The writer does a relaxed load and a relaxed store, not a read-modify-
 * write: only it writes, so no increment is lost, and the per-packet path
 * has no locked instruction. Readers see each slot atomically (no torn
 * values) but slots may lag one another by a loop turn. Gauges that go down
 * (connections open) add (uint64_t)-1: the sum wraps back correctly.
 *
 * Thread safety: stat_add/stat_inc/stat_dec only from the slots' owner;
 * stat_read/stat_sum from any thread. */
#ifndef ROOST_CORE_STAT_H
#define ROOST_CORE_STAT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Slots a public stats struct of uint64_t fields needs, and a field's slot. */
#define STAT_N(type) (sizeof(type) / sizeof(uint64_t))
#define STAT_IDX(type, field) (offsetof(type, field) / sizeof(uint64_t))

static inline void stat_add(_Atomic uint64_t *slots, size_t i, uint64_t n)
{
    atomic_store_explicit(&slots[i], atomic_load_explicit(&slots[i], memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void stat_inc(_Atomic uint64_t *slots, size_t i)
{
    stat_add(slots, i, 1);
}

static inline void stat_dec(_Atomic uint64_t *slots, size_t i)
{
    stat_add(slots, i, (uint64_t)-1);
}

/* out[k] = slots[k] for k < n. */
static inline void stat_read(uint64_t *out, const _Atomic uint64_t *slots, size_t n)
{
    for (size_t k = 0; k < n; k++)
        out[k] = atomic_load_explicit(&slots[k], memory_order_relaxed);
}

/* out[k] += slots[k] for k < n: summing per-worker slots. */
static inline void stat_sum(uint64_t *out, const _Atomic uint64_t *slots, size_t n)
{
    for (size_t k = 0; k < n; k++)
        out[k] += atomic_load_explicit(&slots[k], memory_order_relaxed);
}

#endif
