/* Micro-benchmark: reading a published list under QSBR RCU (lib/core/rcuptr)
 * against the same list behind a pthread_rwlock read lock and behind a
 * pthread_mutex, measured in the same run (DESIGN.md §6: the baseline for
 * the RCU claim).
 *
 * The list has 16 entries; one read = enter the read side, sum the entries,
 * leave. Readers run like workers: READS_PER_TURN reads, then (QSBR only) a
 * quiescent state, then check the stop flag. A writer thread republishes the
 * list at a target rate (1k/s paced by clock_nanosleep, 100k/s by a busy
 * wait): QSBR builds a new list and retires the old one with call_rcu; the
 * lock variants rewrite the list in place under the write lock / mutex.
 * Readers are pinned to the first CPUs of the affinity mask, the writer to
 * the last, so with as many readers as CPUs the writer shares a CPU.
 *
 * Each of the 12 cells (3 methods x {1,2} readers x 2 rates) runs for
 * --seconds / 12, default 18 s in all.
 * Usage: rcu [--seconds S] */
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

#include "core/rcuptr.h"

#define NENTRIES 16
#define READS_PER_TURN 100
#define MAX_READERS 2
#define N_CELLS 12

enum method { M_QSBR, M_RWLOCK, M_MUTEX, M_COUNT };
static const char *const method_names[] = {"qsbr", "rwlock", "mutex"};

struct list {
    uint64_t e[NENTRIES];
    struct rcu_head head;
};

struct shared {
    enum method m;
    uint64_t rate; /* writes per second */
    struct rcuptr slot;
    pthread_rwlock_t rw;
    pthread_mutex_t mu;
    struct list locked; /* the list the lock variants protect */
    pthread_barrier_t go;
    _Atomic int stop;        /* readers */
    _Atomic int writer_stop; /* set once the readers are joined */
    uint64_t writes;
    _Atomic uint64_t writes_live; /* relaxed count for the achieved rate */
    _Atomic uint64_t bad;         /* reads that saw a torn list: must stay 0 */
};

struct reader {
    struct shared *sh;
    pthread_t tid;
    int cpu;
    uint64_t reads;
    uint64_t ns;
    uint64_t sink;
};

static double opt_seconds = 18.0;
static int cpus[CPU_SETSIZE];
static int n_cpus;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) == -1)
        fprintf(stderr, "warning: cannot pin to cpu %d: %s\n", cpu, strerror(errno));
}

static void list_fill(struct list *l, uint64_t version)
{
    for (int i = 0; i < NENTRIES; i++)
        l->e[i] = version;
}

static void list_free(struct rcu_head *head)
{
    free(caa_container_of(head, struct list, head));
}

/* Sum of a consistent list is 16 x its version; anything else is torn. */
static inline uint64_t sum_list(const struct list *l, struct shared *sh)
{
    uint64_t s = 0;
    for (int i = 0; i < NENTRIES; i++)
        s += l->e[i];
    if (s != l->e[0] * NENTRIES)
        atomic_fetch_add_explicit(&sh->bad, 1, memory_order_relaxed);
    return s;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct shared *sh = r->sh;
    uint64_t sink = 0, reads = 0;

    pin(r->cpu);
    if (sh->m == M_QSBR)
        rcuptr_thread_register();
    pthread_barrier_wait(&sh->go);
    uint64_t t0 = now_ns();
    /* One loop per method so the measured loop has no method switch. */
    switch (sh->m) {
    case M_QSBR:
        do {
            for (int k = 0; k < READS_PER_TURN; k++) {
                rcuptr_read_lock();
                const struct list *l = rcuptr_deref(&sh->slot);
                sink += sum_list(l, sh);
                rcuptr_read_unlock();
            }
            rcuptr_quiescent();
            reads += READS_PER_TURN;
        } while (!atomic_load_explicit(&sh->stop, memory_order_relaxed));
        break;
    case M_RWLOCK:
        do {
            for (int k = 0; k < READS_PER_TURN; k++) {
                pthread_rwlock_rdlock(&sh->rw);
                sink += sum_list(&sh->locked, sh);
                pthread_rwlock_unlock(&sh->rw);
            }
            reads += READS_PER_TURN;
        } while (!atomic_load_explicit(&sh->stop, memory_order_relaxed));
        break;
    case M_MUTEX:
        do {
            for (int k = 0; k < READS_PER_TURN; k++) {
                pthread_mutex_lock(&sh->mu);
                sink += sum_list(&sh->locked, sh);
                pthread_mutex_unlock(&sh->mu);
            }
            reads += READS_PER_TURN;
        } while (!atomic_load_explicit(&sh->stop, memory_order_relaxed));
        break;
    case M_COUNT:
        break;
    }
    r->ns = now_ns() - t0;
    r->reads = reads;
    r->sink = sink;
    if (sh->m == M_QSBR)
        rcuptr_thread_unregister();
    return NULL;
}

/* Waits until `deadline` (CLOCK_MONOTONIC ns). Long gaps sleep; short ones
 * spin, since a sleep's timer slack (~50 us) would cap the rate. */
static void wait_until(uint64_t deadline, uint64_t interval)
{
    if (interval >= 200000) {
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                              .tv_nsec = (long)(deadline % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        return;
    }
    while (now_ns() < deadline)
        ;
}

static void *writer_main(void *arg)
{
    struct shared *sh = arg;
    uint64_t interval = 1000000000u / sh->rate;
    uint64_t version = 1, writes = 0;

    pin(cpus[n_cpus - 1]);
    if (sh->m == M_QSBR) {
        rcuptr_thread_register();
        /* The first version, before the readers pass the barrier (which
         * orders it before their first read). */
        struct list *l = malloc(sizeof(*l));
        if (l == NULL)
            abort();
        list_fill(l, version);
        rcuptr_publish(&sh->slot, l);
        rcuptr_thread_offline(); /* online only while publishing */
    }
    pthread_barrier_wait(&sh->go);
    uint64_t next = now_ns() + interval;
    /* Runs until the readers are gone, so that its final unpublish cannot
     * meet a reader. */
    while (!atomic_load_explicit(&sh->writer_stop, memory_order_relaxed)) {
        wait_until(next, interval);
        next += interval;
        version++;
        switch (sh->m) {
        case M_QSBR: {
            struct list *l = malloc(sizeof(*l));
            if (l == NULL)
                abort(); /* a benchmark, not a library: no recovery */
            list_fill(l, version);
            rcuptr_thread_online();
            rcuptr_publish(&sh->slot, l);
            rcuptr_thread_offline();
            break;
        }
        case M_RWLOCK:
            pthread_rwlock_wrlock(&sh->rw);
            list_fill(&sh->locked, version);
            pthread_rwlock_unlock(&sh->rw);
            break;
        case M_MUTEX:
            pthread_mutex_lock(&sh->mu);
            list_fill(&sh->locked, version);
            pthread_mutex_unlock(&sh->mu);
            break;
        case M_COUNT:
            break;
        }
        writes++;
        atomic_store_explicit(&sh->writes_live, writes, memory_order_relaxed);
    }
    if (sh->m == M_QSBR) {
        rcuptr_thread_online();
        rcuptr_fini(&sh->slot);
        rcuptr_thread_unregister();
    }
    sh->writes = writes;
    return NULL;
}

struct result {
    double ns_per_read;
    double writes_per_s;
    uint64_t reads;
};

static int run_cell(enum method m, int n_readers, uint64_t rate, double seconds, struct result *out)
{
    static struct shared sh; /* static: holds locks, not re-entered */
    struct reader readers[MAX_READERS];
    pthread_t writer;
    pthread_rwlockattr_t rwattr;

    memset(&sh, 0, sizeof(sh));
    memset(readers, 0, sizeof(readers));
    sh.m = m;
    sh.rate = rate;
    /* Writer-preferring: with glibc's default (reader preference) two busy
     * readers can starve the writer and the cell would not measure the
     * target write rate at all. */
    pthread_rwlockattr_init(&rwattr);
    pthread_rwlockattr_setkind_np(&rwattr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sh.rw, &rwattr);
    pthread_rwlockattr_destroy(&rwattr);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_barrier_init(&sh.go, NULL, (unsigned)n_readers + 2);
    list_fill(&sh.locked, 1);
    RCUPTR_INIT(&sh.slot, struct list, head, list_free);
    for (int i = 0; i < n_readers; i++) {
        readers[i].sh = &sh;
        readers[i].cpu = cpus[i % n_cpus];
        if (pthread_create(&readers[i].tid, NULL, reader_main, &readers[i]) != 0)
            return -1;
    }
    if (pthread_create(&writer, NULL, writer_main, &sh) != 0)
        return -1;
    pthread_barrier_wait(&sh.go);
    uint64_t t0 = now_ns();
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    atomic_store_explicit(&sh.stop, 1, memory_order_relaxed);
    uint64_t sink = 0, reads = 0;
    double ns_sum = 0;
    for (int i = 0; i < n_readers; i++) {
        pthread_join(readers[i].tid, NULL);
        reads += readers[i].reads;
        sink += readers[i].sink;
        ns_sum += (double)readers[i].ns / (double)(readers[i].reads ? readers[i].reads : 1);
    }
    uint64_t elapsed = now_ns() - t0;
    uint64_t writes_then = atomic_load_explicit(&sh.writes_live, memory_order_relaxed);
    atomic_store_explicit(&sh.writer_stop, 1, memory_order_relaxed);
    pthread_join(writer, NULL);
    /* Every retired list is freed before the next cell. */
    rcuptr_barrier();

    pthread_barrier_destroy(&sh.go);
    pthread_mutex_destroy(&sh.mu);
    pthread_rwlock_destroy(&sh.rw);
    if (atomic_load(&sh.bad) != 0) {
        fprintf(stderr, "error: %s saw %llu torn lists\n", method_names[m],
                (unsigned long long)atomic_load(&sh.bad));
        return -1;
    }
    out->ns_per_read = ns_sum / n_readers; /* mean over readers of each one's ns/read */
    out->writes_per_s = (double)writes_then * 1e9 / (double)elapsed;
    out->reads = reads + (sink & 0); /* keep the sums alive */
    return 0;
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--seconds S]   (total run time, default 18)\n", prog);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            char *end;
            opt_seconds = strtod(argv[++i], &end);
            if (*end != '\0' || !(opt_seconds > 0) || opt_seconds > 3600) {
                usage(argv[0]);
                return 2;
            }
        } else {
            usage(argv[0]);
            return 2;
        }
    }

    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == -1) {
        perror("sched_getaffinity");
        return 1;
    }
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed))
            cpus[n_cpus++] = c;

    printf("# bench/micro/rcu: ns per read of a %d-entry published list\n", NENTRIES);
    printf("# command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n# cores online: %ld, in affinity mask: %d\n", sysconf(_SC_NPROCESSORS_ONLN), n_cpus);
    printf("# readers pinned to cpus");
    for (int i = 0; i < MAX_READERS; i++)
        printf(" %d", cpus[i % n_cpus]);
    printf(" (in order), writer pinned to cpu %d\n", cpus[n_cpus - 1]);
    printf("# qsbr: quiescent state every %d reads; rwlock: writer-preferring; "
           "writer paced by clock_nanosleep at 1k/s, busy wait at 100k/s\n",
           READS_PER_TURN);
    printf("# %.2f s per cell, %d cells\n\n", opt_seconds / N_CELLS, N_CELLS);

    static const uint64_t rates[] = {1000, 100000};
    struct result res[M_COUNT][MAX_READERS][2];

    printf("%-7s %7s %12s %12s %14s %10s  %s\n", "method", "readers", "writes/s", "achieved",
           "reads", "ns/read", "writer cpu");
    for (int nr = 1; nr <= MAX_READERS; nr++) {
        for (int ri = 0; ri < 2; ri++) {
            for (int m = 0; m < M_COUNT; m++) {
                struct result *r = &res[m][nr - 1][ri];
                if (run_cell((enum method)m, nr, rates[ri], opt_seconds / N_CELLS, r) != 0) {
                    fprintf(stderr, "cell failed\n");
                    return 1;
                }
                bool shared_cpu = false;
                for (int i = 0; i < nr; i++)
                    shared_cpu |= cpus[i % n_cpus] == cpus[n_cpus - 1];
                printf("%-7s %7d %12llu %12.0f %14llu %10.2f  %s\n", method_names[m], nr,
                       (unsigned long long)rates[ri], r->writes_per_s, (unsigned long long)r->reads,
                       r->ns_per_read, shared_cpu ? "shared with a reader" : "own");
                fflush(stdout);
            }
        }
    }

    printf("\n%7s %12s %14s %14s\n", "readers", "writes/s", "rwlock/qsbr", "mutex/qsbr");
    for (int nr = 1; nr <= MAX_READERS; nr++)
        for (int ri = 0; ri < 2; ri++) {
            double q = res[M_QSBR][nr - 1][ri].ns_per_read;
            printf("%7d %12llu %14.1f %14.1f\n", nr, (unsigned long long)rates[ri],
                   res[M_RWLOCK][nr - 1][ri].ns_per_read / q,
                   res[M_MUTEX][nr - 1][ri].ns_per_read / q);
        }
    return 0;
}
