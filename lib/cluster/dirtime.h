/* Directory time arithmetic (docs/CLUSTER.md 1.4, 1.5): defaults and checks
 * of the timing settings, the local lease deadline, renew scheduling and
 * reconnect backoff. Pure functions of their arguments: time is always a
 * parameter (ns of CLOCK_MONOTONIC), so the split-brain guard is tested on
 * fake time.
 *
 * Thread safety: none needed; every function reads only its arguments. */
#ifndef ROOST_CLUSTER_DIRTIME_H
#define ROOST_CLUSTER_DIRTIME_H

#include <stdint.h>

#define DIRTIME_MS 1000000ull /* ns per ms */

/* All in milliseconds; 0 takes the default. */
struct dir_timing {
    uint32_t refresh_ms;         /* relay registration refresh (1000) */
    uint32_t relay_ttl_ms;       /* TTL of the relay hash (3 x refresh) */
    uint32_t lease_ms;           /* room lease, PX (5000) */
    uint32_t renew_ms;           /* renew interval of a held lease (lease / 3) */
    uint32_t margin_ms;          /* local deadline before Redis's (lease / 10) */
    uint32_t wait_ms;            /* bound on a request waiting for Redis (2000) */
    uint32_t connect_timeout_ms; /* hiredis connect timeout (500) */
    uint32_t cmd_timeout_ms;     /* hiredis command timeout (500) */
    uint32_t backoff_min_ms;     /* first reconnect delay (50) */
    uint32_t backoff_max_ms;     /* reconnect delay cap (2000) */
};

/* Fills the zero fields of *t with defaults (derived ones from the others)
 * and checks the result. Returns 0 or ROOST_EINVAL when the settings cannot
 * keep the guard: margin >= lease, renew >= lease - margin (the lease would
 * lapse between renewals), refresh >= relay TTL, backoff_min > backoff_max. */
int dirtime_complete(struct dir_timing *t);

/* The local deadline of a lease whose claim or renew was sent at sent_ns:
 * sent_ns + lease - margin. Redis starts its PX countdown when it executes
 * the command, after sent_ns, so this deadline comes at least `margin`
 * before any other relay can claim. */
uint64_t dirtime_lease_until(uint64_t sent_ns, const struct dir_timing *t);

/* The deadline after a successful claim or renew sent at sent_ns and
 * answered at now_ns, given the deadline before it (UINT64_MAX for a
 * claim). Returns 0 when the answer came too late for the lease to be
 * trusted (now_ns >= old_until: the holder may already have been seen as
 * not home, and a lease never comes back; or the new deadline is already
 * past). */
uint64_t dirtime_after_success(uint64_t old_until, uint64_t sent_ns, uint64_t now_ns,
                               const struct dir_timing *t);

/* When a lease renewed (or claimed) at sent_ns is next renewed. */
uint64_t dirtime_renew_at(uint64_t sent_ns, const struct dir_timing *t);

/* Next reconnect delay in ms after cur_ms (0: the first failure). */
uint32_t dirtime_backoff_next(uint32_t cur_ms, const struct dir_timing *t);

#endif
