/* Latency histogram: log-linear buckets in the manner of HdrHistogram.
 *
 * Values (ns, or any u64) below 2^HIST_SUB_BITS are counted exactly; above,
 * each power-of-two range is split into 2^(HIST_SUB_BITS-1) equal buckets,
 * so a reported value is at most 1/2^(HIST_SUB_BITS-1) above the true one
 * (0.8 %), whatever the magnitude, in a fixed ~59 KiB of counters.
 * Recording is a few instructions and never allocates.
 *
 * Percentiles use the nearest-rank definition: the value at rank
 * ceil(q * n) of the sorted samples. The histogram reports the upper bound
 * of the bucket holding that rank, clamped to [min, max], so q = 1 gives
 * the exact maximum.
 *
 * Thread safety: none; one owner thread per histogram (merge after the
 * owners have stopped writing). */
#ifndef ROOST_CLIENT_HIST_H
#define ROOST_CLIENT_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_EXACT (1u << HIST_SUB_BITS)      /* values counted exactly */
#define HIST_HALF (1u << (HIST_SUB_BITS - 1)) /* buckets per power of two above */
#define HIST_BUCKETS (HIST_EXACT + (64 - HIST_SUB_BITS) * HIST_HALF)

/* Exposed so it can live in caller storage; fields are read-only to
 * callers. */
struct hist {
    uint64_t n;   /* samples */
    uint64_t min; /* UINT64_MAX when empty */
    uint64_t max;
    long double sum;
    uint64_t b[HIST_BUCKETS];
};

/* Empties h. */
void hist_init(struct hist *h);
/* Counts one sample. */
void hist_record(struct hist *h, uint64_t v);
/* Adds every sample of src into dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* Returns the value at quantile q (0..1, clamped) by nearest rank, as
 * described above; 0 when h is empty. */
uint64_t hist_quantile(const struct hist *h, double q);
/* Returns the mean (0 when empty). */
double hist_mean(const struct hist *h);

/* Bucket index of v, and the largest value of bucket i (for tests). */
unsigned hist_bucket(uint64_t v);
uint64_t hist_bucket_high(unsigned i);

#endif
