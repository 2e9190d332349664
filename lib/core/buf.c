#include "core/buf.h"

#include <stdlib.h>

/* Process-wide live count. Updated with relaxed atomics on alloc/free only
 * (not per reference), so the cost is one uncontended-ish add per buffer. */
static _Atomic int64_t buf_live_count;

struct buf *buf_new(uint32_t cap)
{
    struct buf *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = 0;
    b->cap = cap;
    b->stamp = 0;
    atomic_fetch_add_explicit(&buf_live_count, 1, memory_order_relaxed);
    return b;
}

void buf_unref(struct buf *b)
{
    if (b == NULL)
        return;
    /* release: our writes/reads of the buffer happen before the free;
     * acquire on the last drop: pairs with every other holder's release so
     * the freeing thread sees all their accesses finished. */
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        atomic_fetch_sub_explicit(&buf_live_count, 1, memory_order_relaxed);
        free(b);
    }
}

int64_t buf_live(void)
{
    return atomic_load_explicit(&buf_live_count, memory_order_relaxed);
}
