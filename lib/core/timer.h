/* Timers: an intrusive binary min-heap owned by one thread (a worker).
 *
 * Time is a parameter: every call takes `now` (ns, CLOCK_MONOTONIC as read by
 * the caller's loop), so timers are testable without sleeping. A timer is
 * embedded in its owner (e.g. a connection); arming, re-arming and
 * cancelling are O(log n) and never allocate except to grow the heap.
 *
 * Thread safety: none. All calls on one `struct timers` from one thread. */
#ifndef ROOST_CORE_TIMER_H
#define ROOST_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TIMER_NEVER UINT64_MAX

struct timer;
struct timers;

/* Called when the timer expires; it is already disarmed and may be re-armed
 * or freed from inside the callback. */
typedef void (*timer_cb)(struct timer *t, uint64_t now, void *arg);

/* Exposed so it can be embedded; fields are private to timer.c. */
struct timer {
    uint64_t expiry;
    uint64_t seq;      /* insertion order: equal expiries fire in arming order */
    uint32_t heap_idx; /* UINT32_MAX when not armed */
    timer_cb cb;
    void *arg;
};

/* Initialises an unarmed timer. */
void timer_init(struct timer *t, timer_cb cb, void *arg);

/* Returns 0 or ROOST_ENOMEM. */
int timers_new(struct timers **out);
/* Frees the heap; armed timers are simply forgotten (their owners free
 * them). Accepts NULL. */
void timers_del(struct timers *ts);

/* Arms `t` to fire at `expiry`, or moves it if already armed.
 * Returns 0 or ROOST_ENOMEM (only when the heap must grow). */
int timer_arm(struct timers *ts, struct timer *t, uint64_t expiry);
/* Disarms `t`; no-op when not armed. */
void timer_cancel(struct timers *ts, struct timer *t);
bool timer_armed(const struct timer *t);

/* Earliest expiry, or TIMER_NEVER when nothing is armed. */
uint64_t timers_next(const struct timers *ts);
/* Fires, in expiry order, every timer with expiry <= now. Timers armed by a
 * callback for a time <= now fire in the same call. Returns how many fired. */
unsigned timers_run(struct timers *ts, uint64_t now);
unsigned timers_count(const struct timers *ts);

#endif
