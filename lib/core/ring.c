#include "core/ring.h"
#include "core/error.h"

#include <stdlib.h>

int ring_new(struct ring **out, uint32_t capacity, uint32_t slot_size)
{
    *out = NULL;
    if (capacity < 2 || capacity > (1u << 30) || (capacity & (capacity - 1)) != 0)
        return ROOST_EINVAL;
    if (slot_size == 0 || slot_size > 65536)
        return ROOST_EINVAL;

    /* One allocation: the header (a multiple of the cache line, so the slot
     * array starts on a line boundary) followed by the slots. */
    size_t hdr = (sizeof(struct ring) + RING_CACHE_LINE - 1) & ~(size_t)(RING_CACHE_LINE - 1);
    size_t bytes = (size_t)capacity * slot_size;
    size_t total = (hdr + bytes + RING_CACHE_LINE - 1) & ~(size_t)(RING_CACHE_LINE - 1);
    struct ring *r = aligned_alloc(RING_CACHE_LINE, total);
    if (r == NULL)
        return ROOST_ENOMEM;
    memset(r, 0, hdr);
    r->mask = capacity - 1;
    r->capacity = capacity;
    r->slot_size = slot_size;
    r->slots = (unsigned char *)r + hdr;
    atomic_init(&r->prod.tail, 0);
    atomic_init(&r->cons.head, 0);
    *out = r;
    return 0;
}

void ring_del(struct ring *r)
{
    free(r);
}
