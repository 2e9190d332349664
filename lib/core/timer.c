#include "core/timer.h"
#include "core/error.h"

#include <stdlib.h>

#define TIMER_UNARMED UINT32_MAX

struct timers {
    struct timer **heap; /* heap[0] is the earliest (expiry, seq) */
    uint32_t len;
    uint32_t cap;
    uint64_t next_seq; /* arming counter: breaks expiry ties */
};

void timer_init(struct timer *t, timer_cb cb, void *arg)
{
    t->expiry = TIMER_NEVER;
    t->seq = 0;
    t->heap_idx = TIMER_UNARMED;
    t->cb = cb;
    t->arg = arg;
}

int timers_new(struct timers **out)
{
    struct timers *ts = calloc(1, sizeof(*ts));
    *out = ts;
    return ts == NULL ? ROOST_ENOMEM : 0;
}

void timers_del(struct timers *ts)
{
    if (ts == NULL)
        return;
    free(ts->heap);
    free(ts);
}

static bool before(const struct timer *a, const struct timer *b)
{
    return a->expiry < b->expiry || (a->expiry == b->expiry && a->seq < b->seq);
}

static void place(struct timers *ts, struct timer *t, uint32_t i)
{
    ts->heap[i] = t;
    t->heap_idx = i;
}

static void sift_up(struct timers *ts, uint32_t i)
{
    struct timer *t = ts->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(t, ts->heap[parent]))
            break;
        place(ts, ts->heap[parent], i);
        i = parent;
    }
    place(ts, t, i);
}

static void sift_down(struct timers *ts, uint32_t i)
{
    struct timer *t = ts->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= ts->len)
            break;
        if (child + 1 < ts->len && before(ts->heap[child + 1], ts->heap[child]))
            child++;
        if (!before(ts->heap[child], t))
            break;
        place(ts, ts->heap[child], i);
        i = child;
    }
    place(ts, t, i);
}

/* Removes the element at i and restores the heap property. */
static void heap_remove(struct timers *ts, uint32_t i)
{
    struct timer *t = ts->heap[i];
    t->heap_idx = TIMER_UNARMED;
    ts->len--;
    if (i == ts->len)
        return;
    struct timer *last = ts->heap[ts->len];
    place(ts, last, i);
    /* The moved element may belong above or below its new position. */
    if (i > 0 && before(last, ts->heap[(i - 1) / 2]))
        sift_up(ts, i);
    else
        sift_down(ts, i);
}

int timer_arm(struct timers *ts, struct timer *t, uint64_t expiry)
{
    if (t->heap_idx != TIMER_UNARMED) {
        /* Re-arming counts as a new arming for tie-breaks. */
        uint64_t old = t->expiry;
        t->expiry = expiry;
        t->seq = ts->next_seq++;
        if (expiry < old)
            sift_up(ts, t->heap_idx);
        else
            sift_down(ts, t->heap_idx);
        return 0;
    }
    if (ts->len == ts->cap) {
        uint32_t cap = ts->cap ? ts->cap * 2 : 64;
        if (cap <= ts->cap || cap == TIMER_UNARMED)
            return ROOST_ENOMEM;
        struct timer **heap = realloc(ts->heap, (size_t)cap * sizeof(*heap));
        if (heap == NULL)
            return ROOST_ENOMEM;
        ts->heap = heap;
        ts->cap = cap;
    }
    t->expiry = expiry;
    t->seq = ts->next_seq++;
    place(ts, t, ts->len++);
    sift_up(ts, t->heap_idx);
    return 0;
}

void timer_cancel(struct timers *ts, struct timer *t)
{
    if (t->heap_idx == TIMER_UNARMED)
        return;
    heap_remove(ts, t->heap_idx);
}

bool timer_armed(const struct timer *t)
{
    return t->heap_idx != TIMER_UNARMED;
}

uint64_t timers_next(const struct timers *ts)
{
    return ts->len ? ts->heap[0]->expiry : TIMER_NEVER;
}

unsigned timers_run(struct timers *ts, uint64_t now)
{
    unsigned fired = 0;
    /* The heap is consistent before every callback, so callbacks may arm,
     * re-arm or cancel any timer, including the one that fired. */
    while (ts->len > 0 && ts->heap[0]->expiry <= now) {
        struct timer *t = ts->heap[0];
        heap_remove(ts, 0);
        fired++;
        t->cb(t, now, t->arg);
    }
    return fired;
}

unsigned timers_count(const struct timers *ts)
{
    return ts->len;
}
