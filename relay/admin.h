/* The admin HTTP endpoint (libmicrohttpd, its own thread):
 *   GET /metrics     Prometheus text (relay/metrics.h)
 *   GET /capacity    JSON: per-worker load and connections, rooms and
 *                    participants against limits, can_accept_more,
 *                    suggested_backoff_ms (for a load balancer)
 *   GET /rooms       JSON: every room, its owner worker and members with
 *                    per-member link statistics
 *   GET /rooms/{id}  JSON: one room (404 when it has no member here)
 *   GET /healthz     200 "ok", or 503 "draining" after SIGTERM
 * Bound to 127.0.0.1 by default: it is an operator interface, not public.
 *
 * Thread safety: admin_new/admin_del on main; handlers run on the
 * endpoint's thread and only read the relay (relay_worker_stats,
 * relay_members). */
#ifndef ROOST_RELAY_ADMIN_H
#define ROOST_RELAY_ADMIN_H

#include <stdint.h>

struct relay;
struct admin;

struct admin_config {
    const char *addr;          /* numeric IPv4/IPv6; NULL: 127.0.0.1 */
    uint16_t port;             /* 0: ephemeral (see admin_port) */
    uint64_t drain_timeout_ns; /* backoff suggested while draining */
    unsigned conn_limit;       /* connections served at once; 0: default */
    uint64_t conn_timeout_ns;  /* idle connection closed after (whole seconds); 0: default */
};

#define ADMIN_DEFAULT_CONN_LIMIT 1024
#define ADMIN_DEFAULT_CONN_TIMEOUT_NS (5ull * 1000000000ull)

/* Starts the endpoint; r is borrowed and must outlive it (admin_del before
 * relay_stop). Returns 0, ROOST_EINVAL (bad address), ROOST_ESYS (cannot
 * listen; logged), ROOST_ENOMEM. */
int admin_new(struct admin **out, struct relay *r, const struct admin_config *cfg);
/* The bound TCP port. */
uint16_t admin_port(const struct admin *a);
/* Stops the thread and frees. Accepts NULL. */
void admin_del(struct admin *a);

#endif
