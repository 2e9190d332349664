/* Micro-benchmark: counted buffers (lib/core/buf.h), buf_new + buf_unref
 * pairs against plain malloc + free of the same size, measured in the same
 * run, with 1 thread and with 2 threads churning at once (pinned to
 * different CPUs when two are available). The 2-thread row shows what a
 * shared cache line in the live-buffer gauge costs when workers allocate
 * concurrently.
 *
 * Each thread allocates a burst of --burst buffers of --size bytes, then
 * drops them, for --seconds per cell. Figures are ns per (new, unref) pair
 * and million pairs per second summed over the threads.
 * Usage: buf [--seconds S] [--size B] [--burst N] */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"

#define MAXBURST 256
#define MAXTHREADS 2

static double opt_seconds = 1.0;
static uint32_t opt_size = 1200;
static unsigned opt_burst = 32;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) == -1)
        fprintf(stderr, "warning: cannot pin to cpu %d: %s\n", cpu, strerror(errno));
}

struct job {
    pthread_t tid;
    int cpu;
    int use_buf; /* 1: buf_new/buf_unref, 0: malloc/free */
    uint64_t pairs;
    uint64_t ns;
};

/* Every thread starts measuring together. */
static _Atomic unsigned ready, go;

static void *churn(void *arg)
{
    struct job *j = arg;
    void *v[MAXBURST];
    pin(j->cpu);
    atomic_fetch_add(&ready, 1);
    while (!atomic_load_explicit(&go, memory_order_acquire))
        ;
    uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(opt_seconds * 1e9), t = t0, pairs = 0;
    while (t < stop) {
        for (int round = 0; round < 64; round++) {
            if (j->use_buf) {
                for (unsigned k = 0; k < opt_burst; k++) {
                    struct buf *b = buf_new(opt_size);
                    if (b == NULL)
                        abort();
                    b->data[0] = (uint8_t)k; /* touch it, as a receiver would */
                    v[k] = b;
                }
                for (unsigned k = 0; k < opt_burst; k++)
                    buf_unref(v[k]);
            } else {
                for (unsigned k = 0; k < opt_burst; k++) {
                    uint8_t *p = malloc(sizeof(struct buf) + opt_size);
                    if (p == NULL)
                        abort();
                    p[sizeof(struct buf)] = (uint8_t)k;
                    /* Keep the compiler from eliding the malloc/free pair. */
                    __asm__ volatile("" : : "r"(p) : "memory");
                    v[k] = p;
                }
                for (unsigned k = 0; k < opt_burst; k++)
                    free(v[k]);
            }
            pairs += opt_burst;
        }
        t = now_ns();
    }
    j->pairs = pairs;
    j->ns = t - t0;
    return NULL;
}

static void cell(const char *name, int use_buf, unsigned nthreads, const int *cpus)
{
    struct job jobs[MAXTHREADS];
    atomic_store(&ready, 0);
    atomic_store(&go, 0);
    for (unsigned i = 0; i < nthreads; i++) {
        jobs[i] = (struct job){.cpu = cpus[i], .use_buf = use_buf};
        if (pthread_create(&jobs[i].tid, NULL, churn, &jobs[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    while (atomic_load(&ready) < nthreads)
        ;
    atomic_store_explicit(&go, 1, memory_order_release);
    uint64_t pairs = 0;
    double ns_per = 0, mps = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(jobs[i].tid, NULL);
        pairs += jobs[i].pairs;
        ns_per += (double)jobs[i].ns / (double)jobs[i].pairs / nthreads;
        mps += (double)jobs[i].pairs / ((double)jobs[i].ns / 1e9) / 1e6;
    }
    printf("%-16s threads=%u  %8.1f ns/pair  %8.2f Mpairs/s  (%llu pairs)\n", name, nthreads,
           ns_per, mps, (unsigned long long)pairs);
}

static void usage(const char *argv0)
{
    printf("usage: %s [--seconds S] [--size B] [--burst N]\n"
           "  --seconds S   time per cell (default 1.0, max 600)\n"
           "  --size B      buffer payload bytes (default 1200)\n"
           "  --burst N     buffers held at once per thread (default 32, max %d)\n",
           argv0, MAXBURST);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(argv[0]);
            return 0;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            opt_seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            opt_size = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--burst") == 0 && i + 1 < argc) {
            opt_burst = (unsigned)strtoul(argv[++i], NULL, 10);
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (!(opt_seconds > 0 && opt_seconds <= 600) || opt_burst == 0 || opt_burst > MAXBURST ||
        opt_size > (1u << 20)) {
        usage(argv[0]);
        return 2;
    }

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int cpus[MAXTHREADS] = {-1, -1};
    if (ncpu >= 2) {
        cpus[0] = 0;
        cpus[1] = 1;
    }
    printf("# buf micro-benchmark: %ld online CPUs, size %u, burst %u, %.1f s per cell\n", ncpu,
           opt_size, opt_burst, opt_seconds);
    printf("# command: %s", argv[0]);
    for (int i = 1; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    int64_t live0 = buf_live();
    for (unsigned n = 1; n <= MAXTHREADS; n++) {
        cell("malloc+free", 0, n, cpus);
        cell("buf_new+unref", 1, n, cpus);
    }
    if (buf_live() != live0) {
        fprintf(stderr, "buf_live %lld, expected %lld\n", (long long)buf_live(), (long long)live0);
        return 1;
    }
    return 0;
}
