#include "client/hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned hist_bucket(uint64_t v)
{
    if (v < HIST_EXACT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (HIST_SUB_BITS - 1); /* >= 1: v >> shift is in [HALF, EXACT) */
    return HIST_EXACT + (shift - 1) * HIST_HALF + (unsigned)((v >> shift) - HIST_HALF);
}

uint64_t hist_bucket_high(unsigned i)
{
    if (i < HIST_EXACT)
        return i;
    unsigned shift = (i - HIST_EXACT) / HIST_HALF + 1;
    uint64_t m = (i - HIST_EXACT) % HIST_HALF + HIST_HALF;
    if (shift + HIST_SUB_BITS >= 64 && m + 1 == HIST_EXACT)
        return UINT64_MAX; /* the top bucket ends at the top of the range */
    return ((m + 1) << shift) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
    h->b[hist_bucket(v)]++;
    h->n++;
    h->sum += (long double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->n == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    if (!(q > 0))
        q = 0;
    if (q > 1)
        q = 1;
    /* Nearest rank, 1-based; the small epsilon keeps q * n that should be
     * an integer from rounding up past it. */
    long double r = (long double)q * (long double)h->n;
    uint64_t rank = (uint64_t)r;
    if ((long double)rank < r - 1e-9L)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank >= h->n)
        return h->max;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->n ? (double)(h->sum / (long double)h->n) : 0.0;
}
