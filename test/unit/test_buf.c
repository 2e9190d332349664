/* Counted buffers (lib/core/buf): references, the last unref frees, and the
 * per-thread live-buffer gauge stays exact when buffers are allocated on one
 * thread and freed on another, when many threads churn at once, and when a
 * thread's slot cannot be allocated (the shared fallback slot).
 *
 * buf.c is included so that its slot allocator can be made to fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <cmocka.h>

static _Atomic int fail_slot_alloc;

static void *test_aligned_alloc(size_t align, size_t size)
{
    if (atomic_load(&fail_slot_alloc))
        return NULL;
    return aligned_alloc(align, size);
}

#define aligned_alloc test_aligned_alloc
#include "core/buf.c"
#undef aligned_alloc

static void test_refs(void **state)
{
    (void)state;
    int64_t live = buf_live();
    struct buf *b = buf_new(100);
    assert_non_null(b);
    assert_int_equal(b->cap, 100);
    assert_int_equal(b->len, 0);
    assert_int_equal(b->stamp, 0);
    assert_int_equal(buf_live(), live + 1);
    assert_ptr_equal(buf_ref(b), b);
    buf_ref(b);
    buf_unref(b);
    buf_unref(b);
    assert_int_equal(buf_live(), live + 1);
    buf_unref(b); /* last: frees (ASan would catch a leak or a double free) */
    assert_int_equal(buf_live(), live);
}

static void test_cap0_and_null(void **state)
{
    (void)state;
    int64_t live = buf_live();
    struct buf *b = buf_new(0);
    assert_non_null(b);
    assert_int_equal(b->cap, 0);
    assert_int_equal(buf_live(), live + 1);
    buf_unref(b);
    assert_int_equal(buf_live(), live);
    buf_unref(NULL);
    assert_int_equal(buf_live(), live);
}

/* ------------------------------------------------ across threads */

#define HANDOFF 1000

struct handoff {
    struct buf *v[HANDOFF];
};

static void *alloc_thread(void *arg)
{
    struct handoff *h = arg;
    for (int i = 0; i < HANDOFF; i++) {
        h->v[i] = buf_new(32);
        assert_non_null(h->v[i]);
    }
    return NULL;
}

static void *free_thread(void *arg)
{
    struct handoff *h = arg;
    for (int i = 0; i < HANDOFF; i++)
        buf_unref(h->v[i]);
    return NULL;
}

static void test_alloc_here_free_there(void **state)
{
    (void)state;
    static struct handoff h;
    int64_t live = buf_live();
    pthread_t a, f;
    assert_int_equal(pthread_create(&a, NULL, alloc_thread, &h), 0);
    assert_int_equal(pthread_join(a, NULL), 0);
    /* The allocating thread has exited; its slot (and count) remain. */
    assert_int_equal(buf_live(), live + HANDOFF);
    assert_int_equal(pthread_create(&f, NULL, free_thread, &h), 0);
    assert_int_equal(pthread_join(f, NULL), 0);
    assert_int_equal(buf_live(), live);

    /* And one allocated here, freed on another thread. */
    h.v[0] = buf_new(8);
    assert_int_equal(buf_live(), live + 1);
    struct handoff *one = calloc(1, sizeof(*one));
    assert_non_null(one);
    one->v[0] = h.v[0];
    for (int i = 1; i < HANDOFF; i++)
        one->v[i] = NULL; /* buf_unref(NULL) is a no-op */
    assert_int_equal(pthread_create(&f, NULL, free_thread, one), 0);
    assert_int_equal(pthread_join(f, NULL), 0);
    free(one);
    assert_int_equal(buf_live(), live);
}

#define CHURN_THREADS 8
#define CHURN_ROUNDS 2000
#define CHURN_HOLD 16

struct churn {
    _Atomic int *go;
    struct buf *give[CHURN_ROUNDS]; /* freed by the next thread */
    struct churn *next;
    int64_t mid_live; /* a read while others run: just must not crash */
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    struct buf *hold[CHURN_HOLD];
    while (!atomic_load(c->go))
        ;
    for (int r = 0; r < CHURN_ROUNDS; r++) {
        for (int k = 0; k < CHURN_HOLD; k++) {
            hold[k] = buf_new((uint32_t)(k * 10));
            assert_non_null(hold[k]);
        }
        /* Shared with another thread for a moment: both hold a reference. */
        buf_ref(hold[0]);
        c->give[r] = hold[0];
        for (int k = 0; k < CHURN_HOLD; k++)
            buf_unref(hold[k]);
    }
    c->mid_live = buf_live();
    return NULL;
}

/* Frees what the neighbour thread kept, and churns a little of its own. */
static void *churn_free_thread(void *arg)
{
    struct churn *c = arg;
    for (int r = 0; r < CHURN_ROUNDS; r++) {
        buf_unref(c->next->give[r]);
        buf_unref(buf_new(16));
    }
    return NULL;
}

static void test_many_threads(void **state)
{
    (void)state;
    static struct churn c[CHURN_THREADS];
    _Atomic int go = 0;
    int64_t live = buf_live();
    pthread_t t[CHURN_THREADS];
    for (int i = 0; i < CHURN_THREADS; i++) {
        c[i].go = &go;
        c[i].next = &c[(i + 1) % CHURN_THREADS];
        assert_int_equal(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < CHURN_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(buf_live(), live + CHURN_THREADS * CHURN_ROUNDS);
    /* Second wave: each new thread frees what its neighbour kept. */
    for (int i = 0; i < CHURN_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_free_thread, &c[i]), 0);
    for (int i = 0; i < CHURN_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(buf_live(), live);
}

static void test_slot_alloc_failure(void **state)
{
    (void)state;
    int64_t live = buf_live();
    static struct handoff h;
    pthread_t a, f;
    /* Fresh threads get no slot: they count on the shared slot. */
    atomic_store(&fail_slot_alloc, 1);
    assert_int_equal(pthread_create(&a, NULL, alloc_thread, &h), 0);
    assert_int_equal(pthread_join(a, NULL), 0);
    int64_t shared_after = atomic_load(&shared.live);
    assert_true(shared_after >= HANDOFF);
    assert_int_equal(buf_live(), live + HANDOFF);
    /* Freed on a thread that does get its own slot. */
    atomic_store(&fail_slot_alloc, 0);
    assert_int_equal(pthread_create(&f, NULL, free_thread, &h), 0);
    assert_int_equal(pthread_join(f, NULL), 0);
    assert_int_equal(buf_live(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_cap0_and_null),
        cmocka_unit_test(test_alloc_here_free_there),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_slot_alloc_failure),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
