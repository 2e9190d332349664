/* Prometheus text exposition (format 0.0.4) of a relay's counters.
 *
 * Every value is a sum, at scrape time, of per-worker counters that only
 * their worker writes (relaxed loads here): the hot path takes no lock and
 * no shared atomic for metrics. Labels are `worker` and small fixed sets
 * (result, reason, code); never a room, connection or identity.
 *
 * Thread safety: any thread (the admin thread in practice). */
#ifndef ROOST_RELAY_METRICS_H
#define ROOST_RELAY_METRICS_H

#include <stddef.h>

struct relay;

/* Renders the text into a malloc'd NUL-terminated buffer (*out, *len
 * bytes without the NUL; the caller frees). Returns 0 or ROOST_ENOMEM. */
int metrics_render(struct relay *r, char **out, size_t *len);

#endif
