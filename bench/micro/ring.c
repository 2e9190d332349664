/* Micro-benchmark: the SPSC ring (lib/core/ring.h) against a mutex +
 * condition-variable queue, measured in the same run.
 *
 *   throughput (messages/s) at burst 1 and burst 32, producer and consumer
 *   on different CPUs when two are available;
 *   cross-core round trip (ping-pong) latency in ns.
 *
 * Each measurement stops at --messages messages or --seconds seconds,
 * whichever comes first, so the default run is bounded (~10 s).
 * Usage: ring [--seconds S] [--messages N] */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/ring.h"

#define QCAP 4096
#define MAXBURST 32

struct msg {
    uint64_t seq;
    uint8_t pad[56];
};
_Static_assert(sizeof(struct msg) == 64, "one cache line, like worker_msg");

static double opt_seconds = 1.5;
static uint64_t opt_messages = 1000000000;
static int cpu_a = -1, cpu_b = -1;

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

/* ------------------------------------------------- mutex + cond queue */

struct mq {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    struct msg v[QCAP];
    uint32_t head, len;
};

static void mq_init(struct mq *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->head = q->len = 0;
}

static void mq_destroy(struct mq *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

/* Blocks until at least one slot is free; pushes up to n. */
static unsigned mq_push(struct mq *q, const struct msg *m, unsigned n)
{
    pthread_mutex_lock(&q->lock);
    while (q->len == QCAP)
        pthread_cond_wait(&q->not_full, &q->lock);
    unsigned k = QCAP - q->len < n ? QCAP - q->len : n;
    for (unsigned i = 0; i < k; i++)
        q->v[(q->head + q->len + i) % QCAP] = m[i];
    q->len += k;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    return k;
}

/* Blocks until at least one message is there; pops up to n. */
static unsigned mq_pop(struct mq *q, struct msg *m, unsigned n)
{
    pthread_mutex_lock(&q->lock);
    while (q->len == 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    unsigned k = q->len < n ? q->len : n;
    for (unsigned i = 0; i < k; i++)
        m[i] = q->v[(q->head + i) % QCAP];
    q->head = (q->head + k) % QCAP;
    q->len -= k;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return k;
}

/* ------------------------------------------------------- throughput */

struct tp {
    bool use_ring;
    unsigned burst;
    struct ring *r;
    struct mq *q;
    uint64_t limit;            /* messages */
    uint64_t deadline;         /* ns */
    _Atomic uint64_t produced; /* final count, set when the producer ends */
    _Atomic int producer_done;
    uint64_t consumed;
    uint64_t errors;
};

static void *tp_producer(void *arg)
{
    struct tp *t = arg;
    pin(cpu_a);
    struct msg batch[MAXBURST];
    memset(batch, 0, sizeof(batch));
    uint64_t seq = 0;
    while (seq < t->limit) {
        if ((seq & 4095) < t->burst && now_ns() > t->deadline)
            break;
        unsigned n = t->burst;
        for (unsigned i = 0; i < n; i++)
            batch[i].seq = seq + i;
        unsigned k = 0;
        while (k < n) {
            if (t->use_ring)
                k += ring_push_burst(t->r, batch + k, n - k);
            else
                k += mq_push(t->q, batch + k, n - k);
        }
        seq += n;
    }
    atomic_store(&t->produced, seq);
    atomic_store(&t->producer_done, 1);
    if (!t->use_ring) {
        /* Wake a consumer blocked on an empty queue so it sees the end. */
        struct msg end = {.seq = UINT64_MAX};
        mq_push(t->q, &end, 1);
    }
    return NULL;
}

static void *tp_consumer(void *arg)
{
    struct tp *t = arg;
    pin(cpu_b);
    struct msg batch[MAXBURST];
    uint64_t expect = 0;
    for (;;) {
        unsigned n =
            t->use_ring ? ring_pop_burst(t->r, batch, t->burst) : mq_pop(t->q, batch, t->burst);
        for (unsigned i = 0; i < n; i++) {
            if (batch[i].seq == UINT64_MAX)
                goto out;
            if (batch[i].seq != expect)
                t->errors++;
            expect++;
        }
        if (n == 0 && atomic_load(&t->producer_done) && expect == atomic_load(&t->produced))
            break;
    }
out:
    t->consumed = expect;
    return NULL;
}

/* Returns messages/s; 0 on error. */
static double run_tp(bool use_ring, unsigned burst, uint64_t *count, double *secs)
{
    struct tp t;
    memset(&t, 0, sizeof(t));
    t.use_ring = use_ring;
    t.burst = burst;
    t.limit = opt_messages;
    if (use_ring) {
        if (ring_new(&t.r, QCAP, sizeof(struct msg)) != 0)
            return 0;
    } else {
        t.q = malloc(sizeof(*t.q));
        if (t.q == NULL)
            return 0;
        mq_init(t.q);
    }
    uint64_t t0 = now_ns();
    t.deadline = t0 + (uint64_t)(opt_seconds * 1e9);
    pthread_t a, b;
    pthread_create(&b, NULL, tp_consumer, &t);
    pthread_create(&a, NULL, tp_producer, &t);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    uint64_t t1 = now_ns();
    if (use_ring) {
        ring_del(t.r);
    } else {
        mq_destroy(t.q);
        free(t.q);
    }
    if (t.errors || t.consumed != t.produced) {
        fprintf(stderr, "error: sequence mismatch (%llu errors)\n", (unsigned long long)t.errors);
        return 0;
    }
    *count = t.consumed;
    *secs = (double)(t1 - t0) / 1e9;
    return (double)t.consumed / *secs;
}

/* -------------------------------------------------------- ping-pong */

struct pp {
    bool use_ring;
    struct ring *ab, *ba;
    struct mq *qab, *qba;
    uint64_t iters;
};

static void *pp_echo(void *arg)
{
    struct pp *p = arg;
    pin(cpu_b);
    struct msg m;
    for (uint64_t i = 0; i < p->iters; i++) {
        if (p->use_ring) {
            while (ring_pop_burst(p->ab, &m, 1) == 0)
                ;
            while (ring_push_burst(p->ba, &m, 1) == 0)
                ;
        } else {
            mq_pop(p->qab, &m, 1);
            mq_push(p->qba, &m, 1);
        }
    }
    return NULL;
}

/* Returns ns per round trip; fills *iters. */
static double run_pp(bool use_ring, uint64_t *iters_out)
{
    struct pp p;
    memset(&p, 0, sizeof(p));
    p.use_ring = use_ring;
    /* Calibrate: a short run to size the measured run to --seconds. */
    uint64_t iters = 1000;
    double ns_per = 0;
    for (int pass = 0; pass < 2; pass++) {
        p.iters = iters;
        if (use_ring) {
            ring_new(&p.ab, 64, sizeof(struct msg));
            ring_new(&p.ba, 64, sizeof(struct msg));
        } else {
            p.qab = malloc(sizeof(*p.qab));
            p.qba = malloc(sizeof(*p.qba));
            mq_init(p.qab);
            mq_init(p.qba);
        }
        pthread_t e;
        pthread_create(&e, NULL, pp_echo, &p);
        struct msg m = {0};
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < iters; i++) {
            m.seq = i;
            if (use_ring) {
                while (ring_push_burst(p.ab, &m, 1) == 0)
                    ;
                while (ring_pop_burst(p.ba, &m, 1) == 0)
                    ;
            } else {
                mq_push(p.qab, &m, 1);
                mq_pop(p.qba, &m, 1);
            }
        }
        uint64_t t1 = now_ns();
        pthread_join(e, NULL);
        if (use_ring) {
            ring_del(p.ab);
            ring_del(p.ba);
        } else {
            mq_destroy(p.qab);
            mq_destroy(p.qba);
            free(p.qab);
            free(p.qba);
        }
        ns_per = (double)(t1 - t0) / (double)iters;
        *iters_out = iters;
        double want = opt_seconds * 1e9 / (ns_per > 1 ? ns_per : 1);
        iters = want < 1000 ? 1000 : (uint64_t)want;
        if (iters > opt_messages)
            iters = opt_messages;
    }
    return ns_per;
}

/* ------------------------------------------------------------ main */

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--messages N]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            opt_seconds = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) {
            opt_messages = strtoull(argv[++i], NULL, 10);
        } else {
            usage(argv[0]);
        }
    }
    if (opt_seconds <= 0 || opt_messages < 1000)
        usage(argv[0]);

    cpu_set_t mask;
    CPU_ZERO(&mask);
    sched_getaffinity(0, sizeof(mask), &mask);
    int usable = CPU_COUNT(&mask);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &mask))
            continue;
        if (cpu_a < 0)
            cpu_a = c;
        else if (cpu_b < 0)
            cpu_b = c;
    }
    if (cpu_b < 0)
        cpu_a = -1; /* one CPU: do not pin both threads onto it */

    printf("bench/micro/ring: SPSC ring vs mutex+condvar queue, 64-byte messages\n");
    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    printf("cores: online %ld, usable by this process %d; ", sysconf(_SC_NPROCESSORS_ONLN), usable);
    if (cpu_a >= 0)
        printf("producer on cpu %d, consumer on cpu %d\n", cpu_a, cpu_b);
    else
        printf("threads not pinned (one CPU)\n");
    printf("limits: %.2f s or %llu messages per measurement; ring/queue capacity %d\n\n",
           opt_seconds, (unsigned long long)opt_messages, QCAP);

    double tp[2][2]; /* [ring?][burst32?] */
    printf("%-26s %14s %9s %12s\n", "throughput", "messages", "seconds", "Mmsg/s");
    unsigned bursts[2] = {1, 32};
    for (int b = 0; b < 2; b++) {
        for (int useq = 1; useq >= 0; useq--) {
            uint64_t count = 0;
            double secs = 0;
            double rate = run_tp(useq, bursts[b], &count, &secs);
            if (rate == 0)
                return 1;
            tp[useq][b] = rate;
            char name[64];
            snprintf(name, sizeof(name), "%s burst %u", useq ? "ring" : "mutex+cond", bursts[b]);
            printf("%-26s %14llu %9.3f %12.2f\n", name, (unsigned long long)count, secs,
                   rate / 1e6);
        }
    }
    printf("\n%-26s %14s %12s\n", "round trip (ping-pong)", "round trips", "ns");
    double rtt[2];
    for (int useq = 1; useq >= 0; useq--) {
        uint64_t iters = 0;
        rtt[useq] = run_pp(useq, &iters);
        printf("%-26s %14llu %12.0f\n", useq ? "ring" : "mutex+cond", (unsigned long long)iters,
               rtt[useq]);
    }
    printf("\nratios (ring vs mutex+cond, same run):\n");
    printf("  throughput burst 1 : %6.1fx\n", tp[1][0] / tp[0][0]);
    printf("  throughput burst 32: %6.1fx  (target >= 10x)\n", tp[1][1] / tp[0][1]);
    printf("  round trip latency : %6.1fx lower\n", rtt[0] / rtt[1]);
    return 0;
}
