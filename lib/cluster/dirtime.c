#include "cluster/dirtime.h"

#include <stddef.h>

#include "core/error.h"

int dirtime_complete(struct dir_timing *t)
{
    if (t == NULL)
        return ROOST_EINVAL;
    if (t->refresh_ms == 0)
        t->refresh_ms = 1000;
    if (t->relay_ttl_ms == 0)
        t->relay_ttl_ms = 3 * t->refresh_ms;
    if (t->lease_ms == 0)
        t->lease_ms = 5000;
    if (t->renew_ms == 0)
        t->renew_ms = t->lease_ms / 3 ? t->lease_ms / 3 : 1;
    if (t->margin_ms == 0)
        t->margin_ms = t->lease_ms / 10 ? t->lease_ms / 10 : 1;
    if (t->wait_ms == 0)
        t->wait_ms = 2000;
    if (t->connect_timeout_ms == 0)
        t->connect_timeout_ms = 500;
    if (t->cmd_timeout_ms == 0)
        t->cmd_timeout_ms = 500;
    if (t->backoff_min_ms == 0)
        t->backoff_min_ms = 50;
    if (t->backoff_max_ms == 0)
        t->backoff_max_ms = t->backoff_min_ms > 2000 ? t->backoff_min_ms : 2000;
    if (t->margin_ms >= t->lease_ms || t->renew_ms >= t->lease_ms - t->margin_ms ||
        t->refresh_ms >= t->relay_ttl_ms || t->backoff_min_ms > t->backoff_max_ms)
        return ROOST_EINVAL;
    return 0;
}

uint64_t dirtime_lease_until(uint64_t sent_ns, const struct dir_timing *t)
{
    return sent_ns + (uint64_t)(t->lease_ms - t->margin_ms) * DIRTIME_MS;
}

uint64_t dirtime_after_success(uint64_t old_until, uint64_t sent_ns, uint64_t now_ns,
                               const struct dir_timing *t)
{
    if (now_ns >= old_until)
        return 0;
    uint64_t until = dirtime_lease_until(sent_ns, t);
    return now_ns < until ? until : 0;
}

uint64_t dirtime_renew_at(uint64_t sent_ns, const struct dir_timing *t)
{
    return sent_ns + (uint64_t)t->renew_ms * DIRTIME_MS;
}

uint32_t dirtime_backoff_next(uint32_t cur_ms, const struct dir_timing *t)
{
    if (cur_ms == 0)
        return t->backoff_min_ms;
    uint64_t n = (uint64_t)cur_ms * 2;
    return n > t->backoff_max_ms ? t->backoff_max_ms : (uint32_t)n;
}
