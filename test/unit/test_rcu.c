/* RCU glue (lib/core/rcuptr): publish / read / deferred free under QSBR.
 *
 * - stress: one reader per allowed CPU, pinned, behaving like a worker loop
 *   (a batch of read-side sections, then a quiescent state), while the writer
 *   republishes a versioned structure 100,000 times. Every read must see a
 *   complete version (all elements equal the version, checksum matches,
 *   version field unchanged at the end of the read), versions never go
 *   backwards for one reader, and every retired version is freed exactly
 *   once. Under ASan a read of a freed version is a use-after-free report;
 *   in normal builds the free callback poisons the object first.
 * - deterministic grace-period tests driven step by step: a reader inside a
 *   section (or merely online) holds back synchronize and the deferred
 *   free; a quiescent state, going offline or unregistering releases it.
 *
 * Reader threads never call cmocka asserts (not thread-safe); they count
 * failures in atomics that the test thread checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rcuptr.h"

#define NVALS 16
#define N_REPUBLISH 100000
#define READS_PER_TURN 64

/* A "blocked" check waits this long and expects no progress; a "completes"
 * check waits at most SLOW_MS. Neither asserts on speed. */
#define BLOCK_MS 200
#define SLOW_MS 10000

/* ------------------------------------------------------------ helpers */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1)
        ;
}

/* Polls an atomic flag for up to `ms`; true if it became set. */
static bool wait_flag(_Atomic int *flag, unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        if (atomic_load_explicit(flag, memory_order_acquire))
            return true;
        sleep_ms(1);
    }
    return atomic_load_explicit(flag, memory_order_acquire) != 0;
}

/* A blocking RCU call (synchronize, barrier) on a separate thread, so the
 * test can see whether it blocks and never hangs itself when it should not
 * have. A call that never returns is left behind on failure; the process
 * exits anyway. */
struct bgop {
    pthread_t tid;
    void (*fn)(void);
    _Atomic int done;
};

static void *bgop_main(void *arg)
{
    struct bgop *op = arg;
    op->fn();
    atomic_store_explicit(&op->done, 1, memory_order_release);
    return NULL;
}

static void bgop_start(struct bgop *op, void (*fn)(void))
{
    op->fn = fn;
    atomic_init(&op->done, 0);
    assert_int_equal(pthread_create(&op->tid, NULL, bgop_main, op), 0);
}

static void bgop_expect_blocked(struct bgop *op)
{
    assert_false(wait_flag(&op->done, BLOCK_MS));
}

static void bgop_expect_done(struct bgop *op)
{
    if (!wait_flag(&op->done, SLOW_MS))
        fail_msg("RCU call still blocked after %d ms", SLOW_MS);
    assert_int_equal(pthread_join(op->tid, NULL), 0);
}

/* rcuptr_barrier, failing instead of hanging. */
static void barrier_bounded(void)
{
    static struct bgop op; /* static: may outlive a failure */
    bgop_start(&op, rcuptr_barrier);
    bgop_expect_done(&op);
}

/* --------------------------------------------------------- versioned data */

struct version {
    uint64_t v;
    uint64_t vals[NVALS];
    uint64_t sum;
    struct rcu_head head;
};

static _Atomic uint32_t *freed_per_version; /* indexed by version */
static _Atomic uint64_t n_freed;

static uint64_t checksum(const uint64_t *vals)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < NVALS; i++)
        h = (h ^ vals[i]) * 0x100000001b3ULL;
    return h;
}

static struct version *version_new(uint64_t v)
{
    struct version *ver = malloc(sizeof(*ver));
    if (ver == NULL)
        return NULL;
    ver->v = v;
    for (int i = 0; i < NVALS; i++)
        ver->vals[i] = v;
    ver->sum = checksum(ver->vals);
    return ver;
}

static void version_free(struct rcu_head *head)
{
    struct version *ver = caa_container_of(head, struct version, head);
    if (freed_per_version != NULL)
        atomic_fetch_add_explicit(&freed_per_version[ver->v], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_freed, 1, memory_order_release);
    /* Poison so that a premature free is visible to readers even without
     * ASan (which reports the access itself). */
    memset(ver, 0xdb, offsetof(struct version, head));
    free(ver);
}

/* ------------------------------------------------------------- stress */

struct stress {
    struct rcuptr slot;
    _Atomic int stop;
    _Atomic int ready;
    _Atomic uint64_t bad_content; /* torn or poisoned version seen */
    _Atomic uint64_t went_back;   /* version lower than one seen before */
    _Atomic uint64_t saw_null;
};

struct reader {
    struct stress *s;
    pthread_t tid;
    int cpu;
    uint64_t reads;
    uint64_t distinct; /* versions seen that differ from the previous read */
};

static void *stress_reader(void *arg)
{
    struct reader *r = arg;
    struct stress *s = r->s;
    uint64_t last = 0;

    if (r->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(r->cpu, &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set); /* best effort */
    }
    rcuptr_thread_register();
    atomic_fetch_add_explicit(&s->ready, 1, memory_order_release);
    do {
        for (int k = 0; k < READS_PER_TURN; k++) {
            rcuptr_read_lock();
            const struct version *ver = rcuptr_deref(&s->slot);
            if (ver == NULL) {
                atomic_fetch_add(&s->saw_null, 1);
                rcuptr_read_unlock();
                continue;
            }
            uint64_t v = ver->v;
            bool ok = true;
            for (int i = 0; i < NVALS; i++)
                ok &= ver->vals[i] == v;
            ok &= ver->sum == checksum(ver->vals);
            ok &= ver->v == v; /* still the same object: not freed and reused */
            rcuptr_read_unlock();
            if (!ok)
                atomic_fetch_add(&s->bad_content, 1);
            if (v < last)
                atomic_fetch_add(&s->went_back, 1);
            if (v != last)
                r->distinct++;
            last = v;
            r->reads++;
        }
        rcuptr_quiescent(); /* end of a "loop turn" */
    } while (!atomic_load_explicit(&s->stop, memory_order_acquire));
    rcuptr_thread_unregister();
    return NULL;
}

static void test_stress_republish(void **state)
{
    (void)state;
    static struct stress s; /* static: large enough to keep off the stack */
    memset(&s, 0, sizeof(s));
    freed_per_version = calloc(N_REPUBLISH + 1, sizeof(*freed_per_version));
    assert_non_null(freed_per_version);
    atomic_store(&n_freed, 0);

    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    assert_int_equal(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    int n_readers = CPU_COUNT(&allowed);
    assert_true(n_readers > 0);
    struct reader *readers = calloc((size_t)n_readers, sizeof(*readers));
    assert_non_null(readers);

    rcuptr_thread_register();
    RCUPTR_INIT(&s.slot, struct version, head, version_free);
    struct version *first = version_new(0);
    assert_non_null(first);
    rcuptr_publish(&s.slot, first);

    /* Offline while the readers start: we block on nothing, but keep the
     * habit of never waiting while online. */
    rcuptr_thread_offline();
    /* No cmocka asserts until the readers are joined: a failure that left
     * them running (registered, online) would stall every later test. */
    int cpu = 0, started = 0;
    for (int i = 0; i < n_readers; i++) {
        while (!CPU_ISSET(cpu, &allowed))
            cpu++;
        readers[i].s = &s;
        readers[i].cpu = cpu++;
        if (pthread_create(&readers[i].tid, NULL, stress_reader, &readers[i]) != 0)
            break;
        started++;
    }
    while (atomic_load_explicit(&s.ready, memory_order_acquire) < started)
        sched_yield();
    rcuptr_thread_online();

    uint64_t published = 0;
    bool writer_ok = started == n_readers;
    for (uint64_t v = 1; writer_ok && v <= N_REPUBLISH; v++) {
        struct version *ver = version_new(v);
        const struct version *cur = rcuptr_writer_get(&s.slot);
        if (ver == NULL || cur == NULL || cur->v != v - 1) {
            free(ver);
            writer_ok = false;
            break;
        }
        rcuptr_publish(&s.slot, ver);
        published++;
        /* The writer is a registered thread too: without this, no grace
         * period would ever end and nothing would be freed. */
        rcuptr_quiescent();
    }

    atomic_store_explicit(&s.stop, 1, memory_order_release);
    rcuptr_thread_offline();
    uint64_t total_reads = 0, total_distinct = 0, idle_readers = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(readers[i].tid, NULL);
        idle_readers += readers[i].reads == 0;
        total_reads += readers[i].reads;
        total_distinct += readers[i].distinct;
    }
    rcuptr_thread_online();

    assert_true(writer_ok);
    assert_int_equal(published, N_REPUBLISH);
    assert_int_equal(idle_readers, 0);
    assert_int_equal(atomic_load(&s.bad_content), 0);
    assert_int_equal(atomic_load(&s.went_back), 0);
    assert_int_equal(atomic_load(&s.saw_null), 0);

    rcuptr_fini(&s.slot); /* retires the last version */
    assert_null(rcuptr_writer_get(&s.slot));
    rcuptr_thread_offline();
    barrier_bounded();
    assert_int_equal(atomic_load(&n_freed), N_REPUBLISH + 1);
    for (uint64_t v = 0; v <= N_REPUBLISH; v++) {
        if (atomic_load(&freed_per_version[v]) != 1)
            fail_msg("version %llu freed %u times", (unsigned long long)v,
                     (unsigned)atomic_load(&freed_per_version[v]));
    }
    print_message("# %d readers, %llu reads, %llu version changes observed\n", n_readers,
                  (unsigned long long)total_reads, (unsigned long long)total_distinct);

    rcuptr_thread_unregister();
    free(readers);
    free(freed_per_version);
    freed_per_version = NULL;
}

/* ------------------------------------------- step-by-step reader thread */

enum cmd {
    CMD_NONE,
    CMD_LOCK_DEREF, /* read_lock + deref, keep the pointer */
    CMD_CHECK,      /* re-read the kept object's contents */
    CMD_UNLOCK,
    CMD_QUIESCENT,
    CMD_OFFLINE,
    CMD_ONLINE,
    CMD_EXIT, /* unregister and leave */
};

struct stepper {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum cmd cmd;
    unsigned seq, ack;
    struct rcuptr *slot;
    const struct version *held;
    uint64_t held_v;
    bool held_ok;
};

static void *stepper_main(void *arg)
{
    struct stepper *st = arg;
    rcuptr_thread_register();
    pthread_mutex_lock(&st->mu);
    for (;;) {
        /* Waiting here while online is the point: QSBR sees a registered
         * online thread that has not announced a quiescent state. */
        while (st->seq == st->ack)
            pthread_cond_wait(&st->cv, &st->mu);
        enum cmd c = st->cmd;
        switch (c) {
        case CMD_LOCK_DEREF:
            rcuptr_read_lock();
            st->held = rcuptr_deref(st->slot);
            st->held_v = st->held != NULL ? st->held->v : UINT64_MAX;
            break;
        case CMD_CHECK: {
            const struct version *ver = st->held;
            bool ok = ver != NULL && ver->v == st->held_v && ver->sum == checksum(ver->vals);
            for (int i = 0; ok && i < NVALS; i++)
                ok = ver->vals[i] == st->held_v;
            st->held_ok = ok;
            break;
        }
        case CMD_UNLOCK:
            rcuptr_read_unlock();
            st->held = NULL;
            break;
        case CMD_QUIESCENT:
            rcuptr_quiescent();
            break;
        case CMD_OFFLINE:
            rcuptr_thread_offline();
            break;
        case CMD_ONLINE:
            rcuptr_thread_online();
            break;
        case CMD_EXIT:
        case CMD_NONE:
            break;
        }
        st->ack = st->seq;
        pthread_cond_broadcast(&st->cv);
        if (c == CMD_EXIT)
            break;
    }
    pthread_mutex_unlock(&st->mu);
    rcuptr_thread_unregister();
    return NULL;
}

/* The stepper still running if a test failed half-way; the teardown stops
 * it so a failure cannot stall the grace periods of later tests. */
static struct stepper *live_stepper;

static void step(struct stepper *st, enum cmd c);

static void stepper_start(struct stepper *st, struct rcuptr *slot)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->slot = slot;
    assert_int_equal(pthread_create(&st->tid, NULL, stepper_main, st), 0);
    live_stepper = st;
    /* A round trip: the thread registers before it takes its first command,
     * so it is registered (and online) once this returns. */
    step(st, CMD_NONE);
}

/* Runs one command on the stepper and waits for it to finish. */
static void step(struct stepper *st, enum cmd c)
{
    pthread_mutex_lock(&st->mu);
    st->cmd = c;
    st->seq++;
    pthread_cond_broadcast(&st->cv);
    while (st->ack != st->seq)
        pthread_cond_wait(&st->cv, &st->mu);
    pthread_mutex_unlock(&st->mu);
}

static void stepper_stop(struct stepper *st)
{
    live_stepper = NULL;
    step(st, CMD_EXIT);
    assert_int_equal(pthread_join(st->tid, NULL), 0);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
}

/* After each test: leave no registered thread behind, even after a failure
 * (a stepper left inside a section, or the test thread still registered). */
static int teardown(void **state)
{
    (void)state;
    if (live_stepper != NULL) {
        struct stepper *st = live_stepper;
        live_stepper = NULL;
        step(st, CMD_EXIT);
        pthread_join(st->tid, NULL);
    }
    rcuptr_thread_unregister();
    return 0;
}

/* A reader inside a read-side section keeps its version alive: neither
 * synchronize nor the deferred free completes until it announces a quiescent
 * state (under QSBR, unlocking alone is not enough). */
static void test_free_waits_for_reader(void **state)
{
    (void)state;
    struct rcuptr slot;
    static struct stepper st; /* static: outlives a failed test (teardown) */
    static struct bgop sy;    /* static: a blocked call may outlive a failure */

    freed_per_version = calloc(3, sizeof(*freed_per_version));
    assert_non_null(freed_per_version);
    atomic_store(&n_freed, 0);

    rcuptr_thread_register();
    RCUPTR_INIT(&slot, struct version, head, version_free);
    rcuptr_publish(&slot, version_new(1));
    rcuptr_thread_offline(); /* the test thread waits below: never online */

    stepper_start(&st, &slot);
    step(&st, CMD_LOCK_DEREF);
    assert_int_equal(st.held_v, 1);

    rcuptr_thread_online();
    rcuptr_publish(&slot, version_new(2)); /* retires version 1 */
    rcuptr_thread_offline();

    bgop_start(&sy, rcuptr_synchronize);
    bgop_expect_blocked(&sy);
    assert_int_equal(atomic_load(&freed_per_version[1]), 0);
    step(&st, CMD_CHECK);
    assert_true(st.held_ok); /* version 1 still intact */

    step(&st, CMD_UNLOCK);
    bgop_expect_blocked(&sy); /* QSBR: unlock is not a quiescent state */
    assert_int_equal(atomic_load(&freed_per_version[1]), 0);

    step(&st, CMD_QUIESCENT);
    bgop_expect_done(&sy);

    /* The call_rcu thread runs its own grace period, which started after the
     * one above: an idle reader must be offline (or keep announcing) for it
     * to end. */
    step(&st, CMD_OFFLINE);
    barrier_bounded(); /* version 1's free has run now */
    assert_int_equal(atomic_load(&freed_per_version[1]), 1);
    assert_int_equal(atomic_load(&freed_per_version[2]), 0);

    /* The reader now sees version 2. */
    step(&st, CMD_ONLINE);
    step(&st, CMD_LOCK_DEREF);
    assert_int_equal(st.held_v, 2);
    step(&st, CMD_UNLOCK);
    step(&st, CMD_QUIESCENT);
    stepper_stop(&st);

    rcuptr_thread_online();
    rcuptr_fini(&slot);
    rcuptr_thread_offline();
    barrier_bounded();
    assert_int_equal(atomic_load(&freed_per_version[2]), 1);
    assert_int_equal(atomic_load(&n_freed), 2);
    rcuptr_thread_unregister();
    free(freed_per_version);
    freed_per_version = NULL;
}

/* Each thread state transition seen from a grace period: online blocks,
 * quiescent releases, offline releases, online blocks again, unregister
 * releases. The test thread itself is not registered. */
static void test_thread_states(void **state)
{
    (void)state;
    struct rcuptr slot;
    static struct stepper st; /* static: outlives a failed test (teardown) */
    static struct bgop sy;    /* static: a blocked call may outlive a failure */

    assert_false(rcuptr_thread_registered());
    rcuptr_init(&slot, 0, version_free); /* unused by the stepper here */
    stepper_start(&st, &slot);
    /* A registered idle thread that never announces: blocks. */
    bgop_start(&sy, rcuptr_synchronize);
    bgop_expect_blocked(&sy);
    step(&st, CMD_QUIESCENT);
    bgop_expect_done(&sy);

    /* Online again after the quiescent state: the next grace period waits. */
    bgop_start(&sy, rcuptr_synchronize);
    bgop_expect_blocked(&sy);
    step(&st, CMD_OFFLINE);
    bgop_expect_done(&sy);

    /* Offline threads never block... */
    bgop_start(&sy, rcuptr_synchronize);
    bgop_expect_done(&sy);

    /* ...until they come back online. */
    step(&st, CMD_ONLINE);
    bgop_start(&sy, rcuptr_synchronize);
    bgop_expect_blocked(&sy);
    stepper_stop(&st); /* unregistering releases it */
    bgop_expect_done(&sy);
}

/* Registration bookkeeping, and retire for objects that were never in a
 * slot. */
static void test_register_and_retire(void **state)
{
    (void)state;
    freed_per_version = calloc(2, sizeof(*freed_per_version));
    assert_non_null(freed_per_version);
    atomic_store(&n_freed, 0);

    assert_false(rcuptr_thread_registered());
    rcuptr_thread_register();
    assert_true(rcuptr_thread_registered());
    rcuptr_thread_register(); /* no-op, liburcu would abort on a second one */
    assert_true(rcuptr_thread_registered());

    struct version *ver = version_new(1);
    assert_non_null(ver);
    rcuptr_retire(&ver->head, version_free);
    rcuptr_barrier(); /* called online on purpose: it goes offline itself */
    assert_int_equal(atomic_load(&freed_per_version[1]), 1);

    /* Publishing NULL into an empty slot retires nothing. */
    struct rcuptr slot;
    RCUPTR_INIT(&slot, struct version, head, version_free);
    rcuptr_publish(&slot, NULL);
    rcuptr_fini(&slot);
    rcuptr_barrier();
    assert_int_equal(atomic_load(&n_freed), 1);

    rcuptr_thread_offline();
    rcuptr_thread_unregister(); /* offline threads may unregister */
    assert_false(rcuptr_thread_registered());
    rcuptr_thread_unregister(); /* no-op */
    free(freed_per_version);
    freed_per_version = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_register_and_retire, teardown),
        cmocka_unit_test_teardown(test_thread_states, teardown),
        cmocka_unit_test_teardown(test_free_waits_for_reader, teardown),
        cmocka_unit_test_teardown(test_stress_republish, teardown),
    };
    int rc = cmocka_run_group_tests_name("rcu", tests, NULL, NULL);
    /* Nothing should be queued any more; the barrier makes that explicit
     * before LeakSanitizer looks at exit. After a failure it might hang. */
    if (rc == 0)
        rcuptr_barrier();
    return rc;
}
