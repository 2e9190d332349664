/* Heap accounting per worker, from the allocator itself.
 *
 * With jemalloc (the relay links it), each worker thread gets an arena of
 * its own (memstat_thread_arena at worker start), so everything the worker
 * allocates — ngtcp2 connections, gnutls sessions, roost's sessions and
 * rooms — is counted in that arena, wherever it is later freed. The admin
 * thread reads the arena's live bytes; divided by the worker's connections
 * that is a measured, not estimated, per-connection figure.
 *
 * Without jemalloc (tests, libc malloc) every call reports "unavailable"
 * and nothing changes. mallctl is looked up at run time, so the tree needs
 * no jemalloc headers.
 *
 * Thread safety: memstat_thread_arena on the thread it binds; the readers
 * from any thread (jemalloc serialises its statistics epoch). */
#ifndef ROOST_CORE_MEMSTAT_H
#define ROOST_CORE_MEMSTAT_H

#include <stdbool.h>
#include <stdint.h>

#define MEMSTAT_NO_ARENA UINT32_MAX

/* Creates an arena and makes the calling thread allocate from it. Returns
 * its index, or MEMSTAT_NO_ARENA without jemalloc or on failure (the
 * thread keeps the default arenas). */
uint32_t memstat_thread_arena(void);

struct memstat_arena {
    uint64_t allocated; /* live bytes: small + large size classes */
    uint64_t resident;  /* pages the arena holds resident (live + cached) */
};

/* Refreshes jemalloc's statistics snapshot; call once before a batch of
 * memstat_arena reads. Returns false without jemalloc. */
bool memstat_refresh(void);
/* Reads one arena from the last snapshot. Returns false when unavailable. */
bool memstat_arena(uint32_t arena, struct memstat_arena *out);
/* Process totals from the last snapshot (stats.allocated, stats.resident). */
bool memstat_total(struct memstat_arena *out);

#endif
