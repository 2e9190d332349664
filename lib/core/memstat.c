#include "core/memstat.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static mallctl_fn lookup(void)
{
    /* Resolved per call: a few calls per scrape, and no global state to
     * initialise before the first thread starts. */
    return (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
}

uint32_t memstat_thread_arena(void)
{
    mallctl_fn mallctl = lookup();
    if (mallctl == NULL)
        return MEMSTAT_NO_ARENA;
    unsigned arena;
    size_t len = sizeof(arena);
    if (mallctl("arenas.create", &arena, &len, NULL, 0) != 0)
        return MEMSTAT_NO_ARENA;
    if (mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena)) != 0)
        return MEMSTAT_NO_ARENA;
    return arena;
}

bool memstat_refresh(void)
{
    mallctl_fn mallctl = lookup();
    if (mallctl == NULL)
        return false;
    uint64_t epoch = 1;
    size_t len = sizeof(epoch);
    return mallctl("epoch", &epoch, &len, &epoch, len) == 0;
}

static bool read_size(mallctl_fn mallctl, const char *name, uint64_t *out)
{
    size_t v;
    size_t len = sizeof(v);
    if (mallctl(name, &v, &len, NULL, 0) != 0)
        return false;
    *out = v;
    return true;
}

bool memstat_arena(uint32_t arena, struct memstat_arena *out)
{
    mallctl_fn mallctl = lookup();
    if (mallctl == NULL || arena == MEMSTAT_NO_ARENA)
        return false;
    char name[64];
    uint64_t small, large, pactive;
    snprintf(name, sizeof(name), "stats.arenas.%u.small.allocated", arena);
    if (!read_size(mallctl, name, &small))
        return false;
    snprintf(name, sizeof(name), "stats.arenas.%u.large.allocated", arena);
    if (!read_size(mallctl, name, &large))
        return false;
    /* Active pages (live extents) of the arena, in pages. */
    snprintf(name, sizeof(name), "stats.arenas.%u.pactive", arena);
    if (!read_size(mallctl, name, &pactive))
        return false;
    size_t page;
    size_t len = sizeof(page);
    if (mallctl("arenas.page", &page, &len, NULL, 0) != 0)
        return false;
    out->allocated = small + large;
    out->resident = pactive * page;
    return true;
}

bool memstat_total(struct memstat_arena *out)
{
    mallctl_fn mallctl = lookup();
    if (mallctl == NULL)
        return false;
    return read_size(mallctl, "stats.allocated", &out->allocated) &&
           read_size(mallctl, "stats.resident", &out->resident);
}
