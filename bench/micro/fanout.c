/* Fan-out read path micro-benchmark: the RCU participant snapshot against
 * a member list under a per-room pthread_rwlock and under one global
 * pthread_mutex (DESIGN.md §6: the baseline for the RCU claim).
 *
 * Two reader threads play two workers. Each "frame": pick a room at random,
 * pick a sender among the room's members on the reader's own worker, then,
 * inside the read-side section (or under the lock), append (participant id,
 * frame pointer) to the reader's send queue for every member on its worker
 * except the sender, and one (worker, frame) FANOUT entry for every other
 * worker that has members. The queues are reset each frame (what a worker
 * does between "queue" and "flush"); a checksum over them is kept so that
 * the work cannot be optimised away.
 *
 * One writer thread applies joins and leaves, paced at a fixed rate, to
 * rooms picked at random (a leave when the room is at its target size, a
 * join otherwise):
 *   rcu    : snapshot_build with one change, rcu_assign_pointer, call_rcu
 *            of the old snapshot; readers rcu_read_lock/rcu_dereference and
 *            announce a quiescent state every --qs-every frames (a loop
 *            turn); the writer goes offline while it sleeps.
 *   rwlock : the same per-worker member arrays, mutated in place under the
 *            room's write lock; readers hold the read lock per frame.
 *   mutex  : the same arrays, one process-wide mutex for readers and writer.
 * The writer's call_rcu callbacks run on a liburcu call_rcu thread pinned
 * to the writer's CPU (reclamation is part of the RCU cost, and this keeps
 * it off the other reader's CPU).
 * The locked lists are grouped by worker too, so the three variants do the
 * same delivery work and differ only in synchronisation.
 *
 * Result: ns per fanned-out frame (a reader's wall time / its frames, mean
 * of the two readers) per room size and churn rate, and the ratios. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "proto/perm.h"
#include "room/snapshot.h"

#define N_READERS 2 /* = number of (simulated) workers */
#define N_FRAMES_BUF 64
#define MAX_SECONDS 600.0
#define MAX_REPS 15

enum mode { MODE_RCU, MODE_RWLOCK, MODE_MUTEX, MODE_COUNT };
static const char *const mode_name[MODE_COUNT] = {"rcu", "rwlock", "mutex"};

static const uint32_t room_sizes[] = {5, 50, 500};
static const unsigned churn_rates[] = {1000, 10000};
#define N_SIZES (sizeof(room_sizes) / sizeof(room_sizes[0]))
#define N_CHURNS (sizeof(churn_rates) / sizeof(churn_rates[0]))

struct wmember {
    uint32_t id;
    uint16_t worker;
};

/* Cache-line separated: what readers read, the lock, the writer's own. */
struct room {
    /* Read by readers. */
    struct snapshot *snap;                   /* rcu */
    struct snapshot_member *list[N_READERS]; /* locked: per-worker arrays */
    _Atomic uint32_t list_count[N_READERS];  /* written under the lock */
    pthread_rwlock_t lock __attribute__((aligned(64)));
    /* Writer only. */
    struct wmember *mirror __attribute__((aligned(64)));
    uint32_t n_mirror;
} __attribute__((aligned(64)));

struct sendq_ent {
    uint32_t participant_id;
    const void *frame;
};

struct fanout_ent {
    uint32_t worker;
    const void *frame;
};

struct cell {
    enum mode mode;
    uint32_t size;
    unsigned churn;
    unsigned n_rooms;
    unsigned qs_every;
    double seconds;
    struct room *rooms;
    pthread_mutex_t global;
    pthread_barrier_t start;
    atomic_bool stop;
    uint32_t next_id;
    int cpu_reader[N_READERS];
    int cpu_writer;
    struct call_rcu_data *crdp; /* rcu: reclamation thread, pinned with the writer */
    /* Results. */
    uint64_t frames[N_READERS];
    uint64_t deliveries[N_READERS];
    uint64_t elapsed_ns[N_READERS];
    uint64_t cpu_ns[N_READERS];
    uint64_t checksum[N_READERS];
    uint64_t writer_ops;
    uint64_t writer_ns;
};

struct reader_arg {
    struct cell *c;
    unsigned self;
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static inline uint32_t rnd(uint64_t *st, uint32_t bound)
{
    /* xorshift64*, per thread. */
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return (uint32_t)(((x * 0x2545f4914f6cdd1dull) >> 32) % bound);
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (r != 0)
        fprintf(stderr, "warning: cannot pin to cpu %d: %s\n", cpu, strerror(r));
}

/* ---------------------------------------------------------------- readers */

static void *reader_main(void *p)
{
    struct reader_arg *ra = p;
    struct cell *c = ra->c;
    const unsigned self = ra->self;
    uint64_t rng = 0x1234567ull * (self + 1) + c->size;
    static const char frames_buf[N_READERS][N_FRAMES_BUF][64];
    struct sendq_ent *q = calloc(c->size + 1, sizeof(*q));
    struct fanout_ent fq[N_READERS];
    uint64_t frames = 0, deliveries = 0, sum = 0;

    if (q == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    pin(c->cpu_reader[self]);
    if (c->mode == MODE_RCU)
        rcu_register_thread();
    pthread_barrier_wait(&c->start);
    const uint64_t t0 = now_ns(), cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);

    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        /* One "loop turn": qs_every frames, then a quiescent state. */
        for (unsigned f = 0; f < c->qs_every; f++) {
            struct room *rm = &c->rooms[rnd(&rng, c->n_rooms)];
            const void *frame = frames_buf[self][frames % N_FRAMES_BUF];
            uint32_t qn = 0, fqn = 0;

            if (c->mode == MODE_RCU) {
                rcu_read_lock();
                const struct snapshot *s = rcu_dereference(rm->snap);
                uint32_t n = 0;
                const struct snapshot_member *mine = snapshot_worker_members(s, self, &n);
                uint32_t sender = n ? mine[rnd(&rng, n)].participant_id : UINT32_MAX;
                for (uint32_t k = 0; k < n; k++) {
                    if (mine[k].participant_id != sender)
                        q[qn++] = (struct sendq_ent){mine[k].participant_id, frame};
                }
                unsigned ng = snapshot_group_count(s);
                for (unsigned g = 0; g < ng; g++) {
                    unsigned w = 0;
                    uint32_t gn = 0;
                    snapshot_group(s, g, &w, &gn);
                    if (w != self)
                        fq[fqn++] = (struct fanout_ent){w, frame};
                }
                rcu_read_unlock();
            } else {
                if (c->mode == MODE_RWLOCK)
                    pthread_rwlock_rdlock(&rm->lock);
                else
                    pthread_mutex_lock(&c->global);
                uint32_t n = atomic_load_explicit(&rm->list_count[self], memory_order_relaxed);
                const struct snapshot_member *mine = rm->list[self];
                uint32_t sender = n ? mine[rnd(&rng, n)].participant_id : UINT32_MAX;
                for (uint32_t k = 0; k < n; k++) {
                    if (mine[k].participant_id != sender)
                        q[qn++] = (struct sendq_ent){mine[k].participant_id, frame};
                }
                for (unsigned w = 0; w < N_READERS; w++) {
                    if (w != self &&
                        atomic_load_explicit(&rm->list_count[w], memory_order_relaxed) > 0)
                        fq[fqn++] = (struct fanout_ent){w, frame};
                }
                if (c->mode == MODE_RWLOCK)
                    pthread_rwlock_unlock(&rm->lock);
                else
                    pthread_mutex_unlock(&c->global);
            }
            /* "Flush": consume the queues so the appends are live work. */
            sum += qn + 7u * fqn;
            if (qn)
                sum += q[qn - 1].participant_id ^ (uintptr_t)q[qn / 2].frame;
            if (fqn)
                sum += fq[fqn - 1].worker;
            deliveries += qn;
            frames++;
        }
        if (c->mode == MODE_RCU)
            rcu_quiescent_state();
    }
    const uint64_t t1 = now_ns(), cpu1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (c->mode == MODE_RCU)
        rcu_unregister_thread();
    c->cpu_ns[self] = cpu1 - cpu0;
    c->frames[self] = frames;
    c->deliveries[self] = deliveries;
    c->elapsed_ns[self] = t1 - t0;
    c->checksum[self] = sum;
    free(q);
    return NULL;
}

/* ----------------------------------------------------------------- writer */

static struct snapshot_member make_member(uint32_t id, uint16_t worker)
{
    return (struct snapshot_member){
        .participant_id = id, .worker = worker, .flags = PERM_ALL, .slot = id, .gen = 1};
}

static void die_err(const char *what, int err)
{
    fprintf(stderr, "%s failed: %d\n", what, err);
    exit(1);
}

/* One join or leave on room `rm`; the writer is the only mutator, so it
 * finds positions without a lock and locks only to mutate. */
static void writer_op(struct cell *c, struct room *rm, uint64_t *rng)
{
    const bool leave = rm->n_mirror >= c->size;
    struct wmember wm;
    if (leave) {
        uint32_t i = rnd(rng, rm->n_mirror);
        wm = rm->mirror[i];
        rm->mirror[i] = rm->mirror[--rm->n_mirror];
    } else {
        wm = (struct wmember){.id = c->next_id++, .worker = (uint16_t)rnd(rng, N_READERS)};
        rm->mirror[rm->n_mirror++] = wm;
    }

    if (c->mode == MODE_RCU) {
        struct snapshot_change ch = {.op = leave ? SNAPSHOT_REMOVE : SNAPSHOT_ADD,
                                     .member = make_member(wm.id, wm.worker)};
        struct snapshot *old = rm->snap, *s = NULL;
        int r = snapshot_build(old, &ch, 1, N_READERS, c->size + 1, &s);
        if (r != 0)
            die_err("snapshot_build", r);
        rcu_assign_pointer(rm->snap, s);
        call_rcu(snapshot_rcu_head(old), snapshot_free_rcu);
        return;
    }

    struct snapshot_member *arr = rm->list[wm.worker];
    uint32_t n = atomic_load_explicit(&rm->list_count[wm.worker], memory_order_relaxed);
    uint32_t pos = 0;
    if (leave) {
        while (arr[pos].participant_id != wm.id)
            pos++;
    }
    if (c->mode == MODE_RWLOCK)
        pthread_rwlock_wrlock(&rm->lock);
    else
        pthread_mutex_lock(&c->global);
    if (leave) {
        arr[pos] = arr[n - 1];
        n--;
    } else {
        arr[n++] = make_member(wm.id, wm.worker);
    }
    atomic_store_explicit(&rm->list_count[wm.worker], n, memory_order_relaxed);
    if (c->mode == MODE_RWLOCK)
        pthread_rwlock_unlock(&rm->lock);
    else
        pthread_mutex_unlock(&c->global);
}

static void *writer_main(void *p)
{
    struct cell *c = p;
    uint64_t rng = 0xfeedfaceull + c->size + c->churn;
    const uint64_t period = 1000000000ull / c->churn;
    uint64_t ops = 0;

    pin(c->cpu_writer);
    /* Sleep to the exact deadline: the default 50 us timer slack would
     * halve a 10k/s rate. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (c->mode == MODE_RCU) {
        rcu_register_thread();
        set_thread_call_rcu_data(c->crdp);
    }
    pthread_barrier_wait(&c->start);
    const uint64_t t0 = now_ns();
    uint64_t next = t0;

    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        uint64_t t = now_ns();
        if (t < next) {
            /* A worker goes offline before it blocks. */
            if (c->mode == MODE_RCU)
                rcu_thread_offline();
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                  .tv_nsec = (long)(next % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
            if (c->mode == MODE_RCU)
                rcu_thread_online();
        } else if (t - next > 10000000ull) {
            next = t; /* more than 10 ms behind: do not burst to catch up */
        }
        writer_op(c, &c->rooms[rnd(&rng, c->n_rooms)], &rng);
        ops++;
        next += period;
        if (c->mode == MODE_RCU)
            rcu_quiescent_state();
    }
    c->writer_ns = now_ns() - t0;
    c->writer_ops = ops;
    if (c->mode == MODE_RCU) {
        set_thread_call_rcu_data(NULL);
        rcu_unregister_thread();
    }
    return NULL;
}

/* ------------------------------------------------------------------ cells */

static void cell_setup(struct cell *c)
{
    c->rooms = aligned_alloc(64, sizeof(struct room) * c->n_rooms);
    if (c->rooms == NULL)
        die_err("aligned_alloc", -ENOMEM);
    memset(c->rooms, 0, sizeof(struct room) * c->n_rooms);
    pthread_mutex_init(&c->global, NULL);
    uint64_t rng = 0xabcdefull + c->size;
    c->next_id = 1;
    struct snapshot_change *ch = calloc(c->size, sizeof(*ch));
    if (ch == NULL)
        die_err("calloc", -ENOMEM);
    for (unsigned r = 0; r < c->n_rooms; r++) {
        struct room *rm = &c->rooms[r];
        pthread_rwlock_init(&rm->lock, NULL);
        rm->mirror = calloc(c->size + 1, sizeof(*rm->mirror));
        for (unsigned w = 0; w < N_READERS; w++)
            rm->list[w] = calloc(c->size + 1, sizeof(struct snapshot_member));
        for (uint32_t k = 0; k < c->size; k++) {
            struct wmember wm = {.id = c->next_id++, .worker = (uint16_t)rnd(&rng, N_READERS)};
            rm->mirror[rm->n_mirror++] = wm;
            uint32_t n = atomic_load_explicit(&rm->list_count[wm.worker], memory_order_relaxed);
            rm->list[wm.worker][n] = make_member(wm.id, wm.worker);
            atomic_store_explicit(&rm->list_count[wm.worker], n + 1, memory_order_relaxed);
            ch[k] = (struct snapshot_change){.op = SNAPSHOT_ADD,
                                             .member = make_member(wm.id, wm.worker)};
        }
        int err = snapshot_build(NULL, ch, c->size, N_READERS, c->size + 1, &rm->snap);
        if (err != 0)
            die_err("snapshot_build", err);
    }
    free(ch);
}

static void cell_teardown(struct cell *c)
{
    /* Every thread has unregistered: wait for the queued call_rcu frees,
     * then free the current snapshots directly (no reader is left). */
    if (c->mode == MODE_RCU) {
        rcu_barrier();
        call_rcu_data_free(c->crdp);
        c->crdp = NULL;
    }
    for (unsigned r = 0; r < c->n_rooms; r++) {
        struct room *rm = &c->rooms[r];
        snapshot_free(rm->snap);
        pthread_rwlock_destroy(&rm->lock);
        free(rm->mirror);
        for (unsigned w = 0; w < N_READERS; w++)
            free(rm->list[w]);
    }
    pthread_mutex_destroy(&c->global);
    free(c->rooms);
    c->rooms = NULL;
}

static void cell_run(struct cell *c)
{
    pthread_t readers[N_READERS], writer;
    struct reader_arg ra[N_READERS];
    cell_setup(c);
    if (c->mode == MODE_RCU) {
        /* The writer's call_rcu callbacks (grace-period waits and frees)
         * run on a thread of their own pinned to the writer's CPU, so all
         * the control-plane work lands on one known CPU instead of
         * wherever the scheduler puts liburcu's default thread. */
        c->crdp = create_call_rcu_data(0, c->cpu_writer);
        if (c->crdp == NULL)
            die_err("create_call_rcu_data", -ENOMEM);
    }
    atomic_store(&c->stop, false);
    pthread_barrier_init(&c->start, NULL, N_READERS + 2);
    for (unsigned i = 0; i < N_READERS; i++) {
        ra[i] = (struct reader_arg){.c = c, .self = i};
        if (pthread_create(&readers[i], NULL, reader_main, &ra[i]) != 0)
            die_err("pthread_create", -errno);
    }
    if (pthread_create(&writer, NULL, writer_main, c) != 0)
        die_err("pthread_create", -errno);
    pthread_barrier_wait(&c->start);
    struct timespec ts = {.tv_sec = (time_t)c->seconds,
                          .tv_nsec = (long)((c->seconds - (double)(time_t)c->seconds) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    atomic_store(&c->stop, true);
    for (unsigned i = 0; i < N_READERS; i++)
        pthread_join(readers[i], NULL);
    pthread_join(writer, NULL);
    pthread_barrier_destroy(&c->start);
    cell_teardown(c);
}

static double ns_per_frame(const struct cell *c)
{
    double sum = 0;
    for (unsigned i = 0; i < N_READERS; i++)
        sum += c->frames[i] ? (double)c->elapsed_ns[i] / (double)c->frames[i] : 0;
    return sum / N_READERS;
}

struct run {
    double ns_frame;
    double ns_reader[N_READERS];
    double cpu_share;
    double deliv_frame;
    double writer_rate;
};

static struct run run_of(const struct cell *c)
{
    struct run r = {.ns_frame = ns_per_frame(c)};
    uint64_t frames = 0, deliv = 0;
    double share = 0;
    for (unsigned i = 0; i < N_READERS; i++) {
        r.ns_reader[i] = c->frames[i] ? (double)c->elapsed_ns[i] / (double)c->frames[i] : 0.0;
        share += c->elapsed_ns[i] ? (double)c->cpu_ns[i] / (double)c->elapsed_ns[i] : 0.0;
        frames += c->frames[i];
        deliv += c->deliveries[i];
    }
    r.cpu_share = share / N_READERS;
    r.deliv_frame = frames ? (double)deliv / (double)frames : 0.0;
    r.writer_rate = c->writer_ns ? (double)c->writer_ops * 1e9 / (double)c->writer_ns : 0.0;
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v); min and max when asked. */
static double median(double *v, unsigned n, double *lo, double *hi)
{
    qsort(v, n, sizeof(*v), cmp_double);
    if (lo)
        *lo = v[0];
    if (hi)
        *hi = v[n - 1];
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--seconds S] [--rooms N] [--qs-every N] [--reps N]\n"
            "  --seconds S   total measuring time, split over the %zu cells and the passes\n"
            "                (default 27, max %.0f)\n"
            "  --rooms N     rooms, readers pick one at random per frame (default 64)\n"
            "  --qs-every N  RCU readers announce a quiescent state every N frames (default 64)\n",
            argv0, N_SIZES * N_CHURNS * MODE_COUNT, MAX_SECONDS);
}

int main(int argc, char **argv)
{
    double seconds = 27.0;
    unsigned n_rooms = 64, qs_every = 64, reps = 3;
    static const struct option longopts[] = {
        {"seconds", required_argument, NULL, 's'},  {"rooms", required_argument, NULL, 'r'},
        {"qs-every", required_argument, NULL, 'q'}, {"reps", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "s:r:q:p:h", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 's':
            seconds = strtod(optarg, &end);
            if (*end != '\0' || !(seconds > 0 && seconds <= MAX_SECONDS)) {
                fprintf(stderr, "--seconds: expected 0 < S <= %.0f\n", MAX_SECONDS);
                return 2;
            }
            break;
        case 'r':
            n_rooms = (unsigned)strtoul(optarg, &end, 10);
            if (*end != '\0' || n_rooms == 0 || n_rooms > 100000) {
                fprintf(stderr, "--rooms: expected 1..100000\n");
                return 2;
            }
            break;
        case 'q':
            qs_every = (unsigned)strtoul(optarg, &end, 10);
            if (*end != '\0' || qs_every == 0 || qs_every > 1000000) {
                fprintf(stderr, "--qs-every: expected 1..1000000\n");
                return 2;
            }
            break;
        case 'p':
            reps = (unsigned)strtoul(optarg, &end, 10);
            if (*end != '\0' || reps == 0 || reps > MAX_REPS) {
                fprintf(stderr, "--reps: expected 1..%d\n", MAX_REPS);
                return 2;
            }
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 0;
        default:
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr, argv[0]);
        return 2;
    }

    /* Progress goes to stderr: keep the table's lines in order with it. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* CPUs this process may run on, in order. */
    cpu_set_t mask;
    int cpus[CPU_SETSIZE], n_cpus = 0;
    if (sched_getaffinity(0, sizeof(mask), &mask) == 0) {
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &mask))
                cpus[n_cpus++] = i;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    const unsigned n_cells = N_SIZES * N_CHURNS * MODE_COUNT;
    const double cell_s = seconds / (n_cells * reps);

    printf("fanout: RCU snapshot vs per-room rwlock vs global mutex on the fan-out read path\n");
    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\ncores: %ld online, %d usable by this process\n", online, n_cpus);
    int cpu_reader[N_READERS], cpu_writer = -1;
    for (unsigned i = 0; i < N_READERS; i++)
        cpu_reader[i] = n_cpus ? cpus[i % (unsigned)n_cpus] : -1;
    if (n_cpus > 0)
        cpu_writer = cpus[N_READERS % n_cpus];
    printf("threads: %d readers (simulated workers 0..%d) pinned to cpu", N_READERS, N_READERS - 1);
    for (unsigned i = 0; i < N_READERS; i++)
        printf(" %d", cpu_reader[i]);
    printf("; writer pinned to cpu %d", cpu_writer);
    bool shared = false;
    for (unsigned i = 0; i < N_READERS; i++) {
        if (cpu_reader[i] == cpu_writer) {
            printf(" -- the writer SHARES a CPU with reader %u", i);
            shared = true;
            break;
        }
    }
    printf("%s\n", shared ? " (its ops preempt that reader; both readers' times are averaged)"
                          : " (its own CPU)");
    printf("rooms: %u, readers pick one at random per frame; RCU quiescent state every %u "
           "frames;\nwriter: paced joins/leaves to random rooms, one snapshot per change (no "
           "batching);\nrcu: call_rcu thread pinned with the writer;\n%u cells x %u passes x %.2f "
           "s = %.1f s of measurement\n\n",
           n_rooms, qs_every, n_cells, reps, cell_s, cell_s * n_cells * reps);

    /* Repetitions are interleaved (every cell once per pass) so that a
     * burst of outside load hits all variants alike; the median is kept. */
    static struct run runs[MAX_REPS][N_SIZES][N_CHURNS][MODE_COUNT];
    for (unsigned rep = 0; rep < reps; rep++) {
        for (unsigned si = 0; si < N_SIZES; si++) {
            for (unsigned ci = 0; ci < N_CHURNS; ci++) {
                for (unsigned m = 0; m < MODE_COUNT; m++) {
                    struct cell c = {.mode = (enum mode)m,
                                     .size = room_sizes[si],
                                     .churn = churn_rates[ci],
                                     .n_rooms = n_rooms,
                                     .qs_every = qs_every,
                                     .seconds = cell_s,
                                     .cpu_writer = cpu_writer};
                    memcpy(c.cpu_reader, cpu_reader, sizeof(cpu_reader));
                    cell_run(&c);
                    runs[rep][si][ci][m] = run_of(&c);
                }
            }
        }
        fprintf(stderr, "pass %u/%u done\n", rep + 1, reps);
    }

    double result[N_SIZES][N_CHURNS][MODE_COUNT];
    printf("per cell, over %u passes: median / min / max ns per frame (mean of the readers),\n"
           "median per reader, readers' CPU share of wall time (< 100%%: preempted or blocked),\n"
           "deliveries queued per frame, writer ops/s achieved\n",
           reps);
    printf("%5s %8s %-7s %9s %9s %9s %9s %9s %6s %8s %9s\n", "size", "churn/s", "mode", "median",
           "min", "max", "reader0", "reader1", "cpu%", "deliv/fr", "writer/s");
    for (unsigned si = 0; si < N_SIZES; si++) {
        for (unsigned ci = 0; ci < N_CHURNS; ci++) {
            for (unsigned m = 0; m < MODE_COUNT; m++) {
                double v[MAX_REPS][7];
                for (unsigned rep = 0; rep < reps; rep++) {
                    const struct run *r = &runs[rep][si][ci][m];
                    v[rep][0] = r->ns_frame;
                    v[rep][1] = r->ns_reader[0];
                    v[rep][2] = r->ns_reader[1];
                    v[rep][3] = r->cpu_share;
                    v[rep][4] = r->deliv_frame;
                    v[rep][5] = r->writer_rate;
                }
                double col[7], lo = 0, hi = 0;
                for (unsigned k = 0; k < 6; k++) {
                    double tmp[MAX_REPS];
                    for (unsigned rep = 0; rep < reps; rep++)
                        tmp[rep] = v[rep][k];
                    col[k] = median(tmp, reps, k == 0 ? &lo : NULL, k == 0 ? &hi : NULL);
                }
                result[si][ci][m] = col[0];
                printf("%5u %8u %-7s %9.1f %9.1f %9.1f %9.1f %9.1f %5.0f%% %8.1f %9.0f\n",
                       room_sizes[si], churn_rates[ci], mode_name[m], col[0], lo, hi, col[1],
                       col[2], col[3] * 100.0, col[4], col[5]);
            }
        }
    }

    printf(
        "\nsummary: median ns per fanned-out frame (lower is better), ratios (>1: RCU faster)\n");
    printf("%5s %8s %10s %10s %10s %11s %10s\n", "size", "churn/s", "rcu", "rwlock", "mutex",
           "rwlock/rcu", "mutex/rcu");
    for (unsigned si = 0; si < N_SIZES; si++) {
        for (unsigned ci = 0; ci < N_CHURNS; ci++) {
            const double *r = result[si][ci];
            printf("%5u %8u %10.1f %10.1f %10.1f %10.2fx %9.2fx\n", room_sizes[si], churn_rates[ci],
                   r[MODE_RCU], r[MODE_RWLOCK], r[MODE_MUTEX],
                   r[MODE_RCU] > 0 ? r[MODE_RWLOCK] / r[MODE_RCU] : 0.0,
                   r[MODE_RCU] > 0 ? r[MODE_MUTEX] / r[MODE_RCU] : 0.0);
        }
    }
    printf("target (issue): rwlock/rcu >= 5x under 10000/s churn\n");
    return 0;
}
