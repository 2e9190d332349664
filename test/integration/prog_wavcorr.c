/* prog_wavcorr: how close a recording is to its source, by numbers (the
 * listening test of test_call.sh, docs/BENCHMARKS.md "Listening test").
 *
 *   prog_wavcorr SOURCE.wav RECORDING.wav
 *
 * Both 48 kHz mono. Leading exact-zero samples of the recording (the time
 * before the first packet was played) are skipped. Then:
 *  - global: one lag for the whole file, found by a coarse search on a
 *    2 kHz (24-sample mean) copy of both signals over +-1 s and refined at
 *    48 kHz over +-48 samples; the normalised cross-correlation at that lag
 *    over the source's length: sum(x*y) / sqrt(sum(x^2) * sum(y^2));
 *  - segmented: the source cut into 0.5 s segments, each allowed to move
 *    from the previous segment's lag by whole 20 ms frames (up to 3: a
 *    jitter buffer moves playout by frames when it adapts), or, when the
 *    segment still matches poorly (< 0.5), to anywhere within +-1 s (a
 *    stall moves playout by its length); a move is taken only when it
 *    raises the segment's coefficient by more than 0.1; the dot products
 *    and energies then summed into one coefficient.
 * Both divide by the whole source's energy: what is missing from the
 * recording counts as silence.
 * Prints "global=G lag=L segmented=S moves=M" on stdout; exit 0, or 2 on
 * bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/cli/wav.h"

#define DEC 24                     /* coarse decimation: 2 kHz */
#define COARSE_RANGE (48000 / DEC) /* +-1 s */
#define SEG 24000                  /* 0.5 s */
#define MOVE_FRAMES 3              /* +-60 ms in 20 ms frames */

static float *decimate(const int16_t *x, size_t n, size_t *m)
{
    *m = n / DEC;
    float *d = calloc(*m + 1, sizeof(float));
    if (d == NULL)
        exit(2);
    for (size_t i = 0; i < *m; i++) {
        float s = 0;
        for (size_t k = 0; k < DEC; k++)
            s += x[i * DEC + k];
        d[i] = s / DEC;
    }
    return d;
}

/* sum x[i] * y[i + lag] for i in [from, to) where both exist; energies of
 * the overlapping parts in *ex, *ey. */
static double dotf(const float *x, size_t nx, const float *y, size_t ny, long lag, size_t from,
                   size_t to, double *ex, double *ey)
{
    double s = 0, a = 0, b = 0;
    if (to > nx)
        to = nx;
    for (size_t i = from; i < to; i++) {
        long j = (long)i + lag;
        if (j < 0)
            continue;
        if ((size_t)j >= ny)
            break;
        s += (double)x[i] * y[j];
        a += (double)x[i] * x[i];
        b += (double)y[j] * y[j];
    }
    if (ex)
        *ex = a;
    if (ey)
        *ey = b;
    return s;
}

static double dots(const int16_t *x, size_t nx, const int16_t *y, size_t ny, long lag, size_t from,
                   size_t to, double *ex, double *ey)
{
    double s = 0, a = 0, b = 0;
    if (to > nx)
        to = nx;
    for (size_t i = from; i < to; i++) {
        long j = (long)i + lag;
        if (j < 0)
            continue;
        if ((size_t)j >= ny)
            break;
        s += (double)x[i] * y[j];
        a += (double)x[i] * x[i];
        b += (double)y[j] * y[j];
    }
    *ex = a;
    *ey = b;
    return s;
}

static double ncc(double s, double a, double b)
{
    return a > 0 && b > 0 ? s / sqrt(a * b) : 0;
}

/* Best lag in [lo, hi] (coarse units) for x[from, to) against y, then
 * refined at full rate; returns the full-rate lag. */
static long best_lag(const int16_t *x, size_t nx, const int16_t *y, size_t ny, const float *dx,
                     size_t ndx, const float *dy, size_t ndy, long lo, long hi, size_t from,
                     size_t to)
{
    long best = lo;
    double bs = -2;
    for (long l = lo; l <= hi; l++) {
        double a, b;
        double s = dotf(dx, ndx, dy, ndy, l, from / DEC, to / DEC, &a, &b);
        double c = ncc(s, a, b);
        if (c > bs) {
            bs = c;
            best = l;
        }
    }
    long fbest = best * DEC;
    bs = -2;
    long center = fbest;
    for (long l = center - 2 * DEC; l <= center + 2 * DEC; l++) {
        double a, b;
        double s = dots(x, nx, y, ny, l, from, to, &a, &b);
        double c = ncc(s, a, b);
        if (c > bs) {
            bs = c;
            fbest = l;
        }
    }
    return fbest;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: prog_wavcorr SOURCE.wav RECORDING.wav\n");
        return 2;
    }
    char err[512];
    int16_t *x, *y0;
    size_t nx, ny0;
    if (wav_read(argv[1], &x, &nx, err, sizeof(err)) != 0 ||
        wav_read(argv[2], &y0, &ny0, err, sizeof(err)) != 0) {
        fprintf(stderr, "prog_wavcorr: %s\n", err);
        return 2;
    }
    size_t skip = 0;
    while (skip < ny0 && y0[skip] == 0)
        skip++;
    const int16_t *y = y0 + skip;
    size_t ny = ny0 - skip;
    if (ny < 48000) {
        printf("global=0 lag=0 segmented=0 moves=0 (recording has %zu non-silent samples)\n", ny);
        return 0;
    }
    size_t ndx, ndy;
    float *dx = decimate(x, nx, &ndx), *dy = decimate(y, ny, &ndy);

    long g = best_lag(x, nx, y, ny, dx, ndx, dy, ndy, -COARSE_RANGE, COARSE_RANGE, 0, nx);
    double a, b;
    double s = dots(x, nx, y, ny, g, 0, nx, &a, &b);
    /* Over the whole source: missing recording counts as silence. */
    double ex = 0;
    for (size_t i = 0; i < nx; i++)
        ex += (double)x[i] * x[i];
    double global = ncc(s, ex, b);

    double ss = 0, sb = 0;
    long prev = g;
    unsigned moves = 0;
    for (size_t from = 0; from < nx; from += SEG) {
        size_t to = from + SEG < nx ? from + SEG : nx;
        double seg_e = 0;
        for (size_t i = from; i < to; i++)
            seg_e += (double)x[i] * x[i];
        long l = prev;
        /* Quiet segments say nothing about the lag: keep the previous one.
         * Playout moves by whole 20 ms frames when a jitter buffer adapts:
         * those moves are tried first, and one is taken only when it
         * raises the coefficient by more than 0.1. A segment that still
         * matches poorly (under 0.5) is searched for within +-1 s: a
         * stalled sender or player moves playout by its stall. */
        if (seg_e > 1e3 * (double)(to - from)) {
            double e1, e2;
            double d = dots(x, nx, y, ny, prev, from, to, &e1, &e2);
            double best = ncc(d, e1, e2);
            for (long k = -MOVE_FRAMES; k <= MOVE_FRAMES; k++) {
                long cand = prev + k * 960;
                d = dots(x, nx, y, ny, cand, from, to, &e1, &e2);
                double c = ncc(d, e1, e2);
                if (k != 0 && c > best + 0.1) {
                    best = c;
                    l = cand;
                }
            }
            if (best < 0.5) {
                long cand = best_lag(x, nx, y, ny, dx, ndx, dy, ndy, prev / DEC - COARSE_RANGE,
                                     prev / DEC + COARSE_RANGE, from, to);
                d = dots(x, nx, y, ny, cand, from, to, &e1, &e2);
                if (ncc(d, e1, e2) > best + 0.1)
                    l = cand;
            }
        }
        if (l != prev)
            moves++;
        prev = l;
        double e2;
        ss += dots(x, nx, y, ny, l, from, to, &a, &e2);
        sb += e2;
    }
    printf("global=%.4f lag=%ld segmented=%.4f moves=%u\n", global, g + (long)skip, ncc(ss, ex, sb),
           moves);
    free(dx);
    free(dy);
    free(x);
    free(y0);
    return 0;
}
