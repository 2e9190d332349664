#include "core/buf.h"

#include <stdlib.h>

/* The live-buffer gauge, one slot per thread that ever allocated or freed a
 * buffer. A slot is written only by its thread, with a relaxed load and
 * store (no read-modify-write), and sits alone on its cache line, so the
 * per-packet path touches no line that another thread writes. A thread that
 * frees buffers another thread allocated drives its own slot negative; the
 * sum over all slots is exact. Slots are never freed: a thread that exits
 * leaves its count behind, which the sum still needs. */
struct slot {
    _Atomic int64_t live;
    struct slot *next; /* set before the push, never changed after */
} __attribute__((aligned(64)));

/* Singly linked list of every slot, newest first; only pushed to (CAS). */
static _Atomic(struct slot *) slots;

/* Fallback when a thread's slot cannot be allocated: one slot shared by such
 * threads, updated with atomic adds. Not on the list; buf_live adds it. */
static struct slot shared;

/* This thread's slot: NULL until its first buf_new/buf_unref. */
static _Thread_local struct slot *mine;

static struct slot *slot_get(void)
{
    struct slot *s = mine;
    if (__builtin_expect(s != NULL, 1))
        return s;
    s = aligned_alloc(_Alignof(struct slot), sizeof(struct slot));
    if (s == NULL) {
        /* Not cached in `mine`: the next call tries the allocation again. */
        return &shared;
    }
    atomic_init(&s->live, 0);
    s->next = atomic_load_explicit(&slots, memory_order_relaxed);
    /* release: publishes s->live's initial value and s->next to buf_live's
     * acquire load of `slots`. On failure s->next is reloaded. */
    while (!atomic_compare_exchange_weak_explicit(&slots, &s->next, s, memory_order_release,
                                                  memory_order_relaxed))
        ;
    mine = s;
    return s;
}

static void live_add(int64_t d)
{
    struct slot *s = slot_get();
    if (__builtin_expect(s == &shared, 0)) {
        atomic_fetch_add_explicit(&shared.live, d, memory_order_relaxed);
        return;
    }
    /* Single writer: load + store cannot lose an update. */
    atomic_store_explicit(&s->live, atomic_load_explicit(&s->live, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

struct buf *buf_new(uint32_t cap)
{
    struct buf *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = 0;
    b->cap = cap;
    b->stamp = 0;
    live_add(1);
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
        live_add(-1);
        free(b);
    }
}

int64_t buf_live(void)
{
    int64_t sum = atomic_load_explicit(&shared.live, memory_order_relaxed);
    /* acquire: pairs with the release CAS in slot_get, so each slot's
     * initialisation and `next` are visible before we read them. */
    for (const struct slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        sum += atomic_load_explicit(&s->live, memory_order_relaxed);
    return sum;
}
