/* Placement (docs/CLUSTER.md 1.7): which relay a client of a room should
 * connect to, from the registered relays and the room's home. Pure.
 *
 * Thread safety: none needed; every function reads only its arguments. */
#ifndef ROOST_CLUSTER_DIRPLACE_H
#define ROOST_CLUSTER_DIRPLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dirkey.h"

/* The relay takes new participants: accepting, and fewer participants than
 * its (known, non-zero) maximum. */
bool dirplace_has_capacity(const struct dir_load *l);

/* How full a relay is, in permille: max(participants / max, cpu), capped at
 * 1000; 1000 when the maximum is unknown. */
uint32_t dirplace_fill(const struct dir_load *l);

/* Index into relays[0..n) of the relay to use: the home (id home_id, NULL
 * when the room has none) when it is listed and has capacity, else the
 * least-filled relay with capacity (ties: smallest id). *is_home says which
 * rule answered. Returns the index, or ROOST_EFULL when no relay has
 * capacity (n == 0 included). */
int dirplace_choose(const struct dir_relay *relays, size_t n, const char *home_id, bool *is_home);

#endif
