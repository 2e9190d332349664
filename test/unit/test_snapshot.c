/* Participant snapshots: adds, removes, replacement (a member that moves to
 * another worker), batches checked against a reference model, limits,
 * errors, allocation failures, grouping invariants and RCU reclamation.
 *
 * The module's .c is included so that its malloc/free go through counting
 * hooks: that proves one allocation per snapshot, no scratch leak, the
 * ROOST_ENOMEM paths, and that the call_rcu callback frees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <urcu-qsbr.h>

static long live_allocs;        /* blocks from hook_malloc not yet freed */
static int fail_countdown = -1; /* n >= 0: the (n+1)-th malloc fails */

static void *hook_malloc(size_t sz)
{
    if (fail_countdown == 0) {
        fail_countdown = -1;
        return NULL;
    }
    if (fail_countdown > 0)
        fail_countdown--;
    void *p = malloc(sz);
    if (p != NULL)
        __atomic_add_fetch(&live_allocs, 1, __ATOMIC_RELAXED);
    return p;
}

static void hook_free(void *p)
{
    if (p != NULL)
        __atomic_sub_fetch(&live_allocs, 1, __ATOMIC_RELAXED); /* call_rcu thread too */
    free(p);
}

#define malloc hook_malloc
#define free hook_free
#include "room/snapshot.c"
#undef malloc
#undef free

static long live(void)
{
    return __atomic_load_n(&live_allocs, __ATOMIC_RELAXED);
}

static struct snapshot_change add(uint32_t id, uint16_t worker, uint32_t slot, uint32_t gen)
{
    return (struct snapshot_change){
        .op = SNAPSHOT_ADD,
        .member = {.participant_id = id,
                   .worker = worker,
                   .flags = PERM_PUBLISH | PERM_SUBSCRIBE,
                   .slot = slot,
                   .gen = gen},
    };
}

static struct snapshot_change rm(uint32_t id)
{
    return (struct snapshot_change){.op = SNAPSHOT_REMOVE, .member = {.participant_id = id}};
}

/* Grouping invariants, through the public API only: groups ascend by
 * worker, are non-empty, contiguous from the start of the member array and
 * cover it exactly; each slice holds only its worker, ascending by id;
 * snapshot_worker_members agrees with the groups for every worker; find
 * returns each member's own entry. */
static void check_invariants(const struct snapshot *s)
{
    uint32_t total = 0;
    const struct snapshot_member *all = snapshot_members(s, &total);
    assert_int_equal(total, snapshot_count(s));
    unsigned ng = snapshot_group_count(s);
    uint32_t covered = 0;
    int last_worker = -1;
    for (unsigned g = 0; g < ng; g++) {
        unsigned w = 0;
        uint32_t n = 0;
        const struct snapshot_member *slice = snapshot_group(s, g, &w, &n);
        assert_non_null(slice);
        assert_true(n > 0);
        assert_true((int)w > last_worker);
        assert_true(w < snapshot_n_workers(s));
        last_worker = (int)w;
        assert_ptr_equal(slice, all + covered); /* contiguous, in order */
        for (uint32_t k = 0; k < n; k++) {
            assert_int_equal(slice[k].worker, w);
            if (k > 0)
                assert_true(slice[k - 1].participant_id < slice[k].participant_id);
            assert_ptr_equal(snapshot_find(s, slice[k].participant_id), &slice[k]);
        }
        uint32_t n2 = 0;
        assert_ptr_equal(snapshot_worker_members(s, w, &n2), slice);
        assert_int_equal(n2, n);
        covered += n;
    }
    assert_int_equal(covered, total);
    /* Workers without a group report nothing. */
    for (unsigned w = 0; w < snapshot_n_workers(s); w++) {
        uint32_t n = 99;
        const struct snapshot_member *m = snapshot_worker_members(s, w, &n);
        if (m == NULL)
            assert_int_equal(n, 0);
        else
            assert_true(n > 0);
    }
    unsigned wdummy = 0;
    uint32_t ndummy = 99;
    assert_null(snapshot_group(s, ng, &wdummy, &ndummy));
    assert_int_equal(ndummy, 0);
}

static void assert_member(const struct snapshot *s, uint32_t id, uint16_t worker, uint32_t slot,
                          uint32_t gen)
{
    const struct snapshot_member *m = snapshot_find(s, id);
    assert_non_null(m);
    assert_int_equal(m->participant_id, id);
    assert_int_equal(m->worker, worker);
    assert_int_equal(m->slot, slot);
    assert_int_equal(m->gen, gen);
    assert_int_equal(m->flags, PERM_PUBLISH | PERM_SUBSCRIBE);
}

static void test_empty(void **state)
{
    (void)state;
    long before = live();
    struct snapshot *s = NULL;
    assert_int_equal(snapshot_build(NULL, NULL, 0, 4, 10, &s), 0);
    assert_non_null(s);
    assert_int_equal(live(), before + 1);
    assert_int_equal(snapshot_count(s), 0);
    assert_int_equal(snapshot_version(s), 1);
    assert_int_equal(snapshot_n_workers(s), 4);
    assert_int_equal(snapshot_group_count(s), 0);
    assert_null(snapshot_find(s, 0));
    uint32_t n = 99;
    assert_null(snapshot_worker_members(s, 0, &n));
    assert_int_equal(n, 0);
    check_invariants(s);

    /* NULL reads as the empty, unpublished room. */
    assert_int_equal(snapshot_count(NULL), 0);
    assert_int_equal(snapshot_version(NULL), 0);
    assert_int_equal(snapshot_group_count(NULL), 0);
    assert_null(snapshot_find(NULL, 1));
    n = 99;
    assert_null(snapshot_worker_members(NULL, 0, &n));
    assert_int_equal(n, 0);
    n = 99;
    assert_null(snapshot_members(NULL, &n));
    assert_int_equal(n, 0);

    /* Removing everything gives an empty snapshot, not an error. */
    struct snapshot *one = NULL, *none = NULL;
    struct snapshot_change c = add(7, 1, 3, 4);
    assert_int_equal(snapshot_build(s, &c, 1, 4, 10, &one), 0);
    c = rm(7);
    assert_int_equal(snapshot_build(one, &c, 1, 4, 10, &none), 0);
    assert_int_equal(snapshot_count(none), 0);
    assert_int_equal(snapshot_group_count(none), 0);
    assert_int_equal(snapshot_version(none), 3);
    snapshot_free(none);
    snapshot_free(one);
    snapshot_free(s);
    snapshot_free(NULL);
    assert_int_equal(live(), before);
}

static void test_add(void **state)
{
    (void)state;
    long before = live();
    struct snapshot *s1 = NULL, *s2 = NULL;
    struct snapshot_change c1[] = {add(30, 2, 300, 1), add(10, 0, 100, 1), add(20, 2, 200, 1)};
    assert_int_equal(snapshot_build(NULL, c1, 3, 3, 16, &s1), 0);
    /* One allocation per snapshot; the scratch is gone. */
    assert_int_equal(live(), before + 1);
    assert_int_equal(snapshot_count(s1), 3);
    assert_int_equal(snapshot_group_count(s1), 2);
    assert_member(s1, 10, 0, 100, 1);
    assert_member(s1, 20, 2, 200, 1);
    assert_member(s1, 30, 2, 300, 1);
    assert_null(snapshot_find(s1, 15));
    uint32_t n = 0;
    const struct snapshot_member *w2 = snapshot_worker_members(s1, 2, &n);
    assert_int_equal(n, 2);
    assert_int_equal(w2[0].participant_id, 20);
    assert_int_equal(w2[1].participant_id, 30);
    assert_null(snapshot_worker_members(s1, 1, &n));
    assert_int_equal(n, 0);
    check_invariants(s1);

    struct snapshot_change c2 = add(5, 1, 50, 9);
    assert_int_equal(snapshot_build(s1, &c2, 1, 3, 16, &s2), 0);
    assert_int_equal(snapshot_version(s2), snapshot_version(s1) + 1);
    assert_int_equal(snapshot_count(s2), 4);
    assert_int_equal(snapshot_group_count(s2), 3);
    assert_member(s2, 5, 1, 50, 9);
    assert_member(s2, 30, 2, 300, 1);
    check_invariants(s2);
    /* prev is immutable. */
    assert_int_equal(snapshot_count(s1), 3);
    assert_null(snapshot_find(s1, 5));
    check_invariants(s1);
    snapshot_free(s1);
    snapshot_free(s2);
    assert_int_equal(live(), before);
}

static void test_remove(void **state)
{
    (void)state;
    struct snapshot *s1 = NULL, *s2 = NULL, *s3 = NULL;
    struct snapshot_change c1[] = {add(1, 0, 10, 1), add(2, 1, 20, 1), add(3, 1, 30, 1),
                                   add(4, 0, 40, 1)};
    assert_int_equal(snapshot_build(NULL, c1, 4, 2, 16, &s1), 0);
    struct snapshot_change c2[] = {rm(2), rm(4)};
    assert_int_equal(snapshot_build(s1, c2, 2, 2, 16, &s2), 0);
    assert_int_equal(snapshot_count(s2), 2);
    assert_null(snapshot_find(s2, 2));
    assert_null(snapshot_find(s2, 4));
    assert_member(s2, 1, 0, 10, 1);
    assert_member(s2, 3, 1, 30, 1);
    check_invariants(s2);
    assert_int_equal(snapshot_count(s1), 4); /* prev untouched */
    assert_member(s1, 2, 1, 20, 1);

    /* Removing an absent id is a no-op (a leave racing a failed join). */
    struct snapshot_change c3 = rm(99);
    assert_int_equal(snapshot_build(s2, &c3, 1, 2, 16, &s3), 0);
    assert_int_equal(snapshot_count(s3), 2);
    check_invariants(s3);
    snapshot_free(s1);
    snapshot_free(s2);
    snapshot_free(s3);
}

/* Adding an id already present replaces it: a member whose endpoint moved
 * to another worker changes group, and its old group disappears. */
static void test_regroup(void **state)
{
    (void)state;
    struct snapshot *s1 = NULL, *s2 = NULL;
    struct snapshot_change c1[] = {add(1, 0, 10, 1), add(2, 1, 20, 1), add(3, 1, 30, 1)};
    assert_int_equal(snapshot_build(NULL, c1, 3, 3, 16, &s1), 0);
    struct snapshot_change c2 = add(1, 2, 77, 5);
    assert_int_equal(snapshot_build(s1, &c2, 1, 3, 16, &s2), 0);
    assert_int_equal(snapshot_count(s2), 3);
    assert_member(s2, 1, 2, 77, 5);
    uint32_t n = 0;
    assert_null(snapshot_worker_members(s2, 0, &n));
    assert_int_equal(n, 0);
    const struct snapshot_member *w2 = snapshot_worker_members(s2, 2, &n);
    assert_int_equal(n, 1);
    assert_int_equal(w2[0].participant_id, 1);
    assert_int_equal(snapshot_group_count(s2), 2);
    check_invariants(s2);
    snapshot_free(s1);
    snapshot_free(s2);
}

/* Within one batch, the last change of an id wins. */
static void test_batch_last_wins(void **state)
{
    (void)state;
    struct snapshot *s1 = NULL, *s2 = NULL;
    struct snapshot_change c1[] = {add(1, 0, 10, 1), add(2, 0, 20, 1)};
    assert_int_equal(snapshot_build(NULL, c1, 2, 4, 16, &s1), 0);
    struct snapshot_change c2[] = {
        add(5, 1, 1, 1), rm(5),           add(5, 3, 2, 2), /* join, leave, rejoin: present */
        add(6, 1, 1, 1), rm(6),                            /* join, leave: absent */
        rm(1),           add(1, 2, 9, 9),                  /* present member moves */
        rm(2),           add(2, 1, 3, 3), rm(2),           /* ends removed */
        add(8, 0, 1, 1), add(8, 0, 4, 4),                  /* duplicate add: last fields */
    };
    assert_int_equal(snapshot_build(s1, c2, sizeof(c2) / sizeof(c2[0]), 4, 16, &s2), 0);
    assert_int_equal(snapshot_count(s2), 3);
    assert_member(s2, 5, 3, 2, 2);
    assert_null(snapshot_find(s2, 6));
    assert_member(s2, 1, 2, 9, 9);
    assert_null(snapshot_find(s2, 2));
    assert_member(s2, 8, 0, 4, 4);
    check_invariants(s2);
    snapshot_free(s1);
    snapshot_free(s2);
}

static void test_limits(void **state)
{
    (void)state;
    long before = live();
    struct snapshot *full = NULL, *s = NULL;
    struct snapshot_change c[4];
    for (uint32_t i = 0; i < 4; i++)
        c[i] = add(i + 1, (uint16_t)(i % 2), i, 1);
    /* Exactly the limit: fine. */
    assert_int_equal(snapshot_build(NULL, c, 4, 2, 4, &full), 0);
    assert_int_equal(snapshot_count(full), 4);

    /* One more: ROOST_EFULL, nothing built, *out untouched, no leak. */
    struct snapshot_change more = add(9, 0, 9, 1);
    s = (struct snapshot *)(uintptr_t)0x1;
    assert_int_equal(snapshot_build(full, &more, 1, 2, 4, &s), ROOST_EFULL);
    assert_ptr_equal(s, (struct snapshot *)(uintptr_t)0x1);
    assert_int_equal(live(), before + 1);
    /* Also from scratch. */
    struct snapshot_change five[5] = {c[0], c[1], c[2], c[3], more};
    assert_int_equal(snapshot_build(NULL, five, 5, 2, 4, &s), ROOST_EFULL);

    /* At the limit, a replacement or a leave+join in one batch fits. */
    s = NULL;
    struct snapshot_change swap[] = {rm(1), more, add(2, 1, 50, 2)};
    assert_int_equal(snapshot_build(full, swap, 3, 2, 4, &s), 0);
    assert_int_equal(snapshot_count(s), 4);
    assert_member(s, 9, 0, 9, 1);
    check_invariants(s);
    snapshot_free(s);

    /* max_members 0: only the empty room. */
    assert_int_equal(snapshot_build(NULL, NULL, 0, 2, 0, &s), 0);
    assert_int_equal(snapshot_count(s), 0);
    snapshot_free(s);
    assert_int_equal(snapshot_build(NULL, &more, 1, 2, 0, &s), ROOST_EFULL);
    snapshot_free(full);
    assert_int_equal(live(), before);
}

static void test_invalid(void **state)
{
    (void)state;
    long before = live();
    struct snapshot *s = NULL, *prev = NULL;
    struct snapshot_change ok = add(1, 3, 1, 1);
    assert_int_equal(snapshot_build(NULL, &ok, 1, 4, 8, NULL), ROOST_EINVAL);
    assert_int_equal(snapshot_build(NULL, NULL, 1, 4, 8, &s), ROOST_EINVAL);
    assert_int_equal(snapshot_build(NULL, &ok, 1, 0, 8, &s), ROOST_EINVAL);
    assert_int_equal(snapshot_build(NULL, &ok, 1, SNAPSHOT_MAX_WORKERS + 1, 8, &s), ROOST_EINVAL);
    struct snapshot_change bad = ok;
    bad.op = (enum snapshot_op)0;
    assert_int_equal(snapshot_build(NULL, &bad, 1, 4, 8, &s), ROOST_EINVAL);
    /* A bad op is rejected even when a later change overrides its id. */
    struct snapshot_change bad_then_ok[] = {bad, ok};
    assert_int_equal(snapshot_build(NULL, bad_then_ok, 2, 4, 8, &s), ROOST_EINVAL);
    /* Worker out of range. */
    assert_int_equal(snapshot_build(NULL, &ok, 1, 3, 8, &s), ROOST_EINVAL);
    /* ... but not when a later change in the batch removes that member. */
    struct snapshot_change add_rm[] = {ok, rm(1)};
    assert_int_equal(snapshot_build(NULL, add_rm, 2, 3, 8, &s), 0);
    snapshot_free(s);
    s = NULL;
    /* A kept member of prev whose worker no longer exists. */
    assert_int_equal(snapshot_build(NULL, &ok, 1, 4, 8, &prev), 0);
    struct snapshot_change other = add(2, 0, 1, 1);
    assert_int_equal(snapshot_build(prev, &other, 1, 3, 8, &s), ROOST_EINVAL);
    assert_null(s);
    snapshot_free(prev);
    assert_int_equal(live(), before);
}

static void test_enomem(void **state)
{
    (void)state;
    long before = live();
    struct snapshot *s = NULL;
    struct snapshot_change c[] = {add(1, 0, 1, 1), add(2, 1, 2, 1)};
    fail_countdown = 0; /* the scratch */
    assert_int_equal(snapshot_build(NULL, c, 2, 2, 8, &s), ROOST_ENOMEM);
    assert_null(s);
    fail_countdown = 1; /* the snapshot block */
    assert_int_equal(snapshot_build(NULL, c, 2, 2, 8, &s), ROOST_ENOMEM);
    assert_null(s);
    assert_int_equal(live(), before); /* the scratch was released */
    fail_countdown = -1;
    assert_int_equal(snapshot_build(NULL, c, 2, 2, 8, &s), 0);
    snapshot_free(s);
}

/* Reference model: a flat table indexed by participant id. */
#define MODEL_IDS 300
#define MODEL_WORKERS 5
#define MODEL_MAX 200

struct model {
    bool present[MODEL_IDS];
    struct snapshot_member m[MODEL_IDS];
    uint32_t count;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t bound)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)(((rng_state * 0x2545f4914f6cdd1dULL) >> 32) % bound);
}

static void model_apply(struct model *md, const struct snapshot_change *c)
{
    uint32_t id = c->member.participant_id;
    if (c->op == SNAPSHOT_ADD) {
        md->count += !md->present[id];
        md->present[id] = true;
        md->m[id] = c->member;
    } else if (md->present[id]) {
        md->present[id] = false;
        md->count--;
    }
}

static void model_check(const struct model *md, const struct snapshot *s)
{
    assert_int_equal(snapshot_count(s), md->count);
    for (uint32_t id = 0; id < MODEL_IDS; id++) {
        const struct snapshot_member *m = snapshot_find(s, id);
        if (!md->present[id]) {
            assert_null(m);
            continue;
        }
        assert_non_null(m);
        assert_memory_equal(m, &md->m[id], sizeof(*m));
    }
    check_invariants(s);
}

static void test_random_batches(void **state)
{
    (void)state;
    long before = live();
    static struct model md, next;
    memset(&md, 0, sizeof(md));
    struct snapshot *cur = NULL;
    struct snapshot_change batch[64];
    unsigned full_seen = 0, built = 0;
    for (int round = 0; round < 3000; round++) {
        /* Batch sizes from 0 to 63; a bias towards adds early on fills the
         * room up to (and past) the limit, then it churns around it. */
        size_t n = rnd(64);
        unsigned add_pct = round < 1000 ? 75 : 55;
        next = md;
        for (size_t k = 0; k < n; k++) {
            uint32_t id = rnd(MODEL_IDS);
            if (rnd(100) < add_pct)
                batch[k] = add(id, (uint16_t)rnd(MODEL_WORKERS), rnd(1u << 20), rnd(1000));
            else
                batch[k] = rm(id);
            batch[k].member.flags = (uint16_t)rnd(4);
            model_apply(&next, &batch[k]);
        }
        struct snapshot *s = NULL;
        int r = snapshot_build(cur, batch, n, MODEL_WORKERS, MODEL_MAX, &s);
        if (next.count > MODEL_MAX) {
            assert_int_equal(r, ROOST_EFULL);
            assert_null(s);
            full_seen++;
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(snapshot_version(s), snapshot_version(cur) + 1);
            model_check(&next, s);
            /* The previous snapshot still matches the old model. */
            if (cur != NULL)
                model_check(&md, cur);
            snapshot_free(cur);
            cur = s;
            md = next;
            built++;
        }
        assert_int_equal(live(), before + (cur != NULL));
    }
    /* The run exercised both outcomes, and a sizeable room. */
    assert_true(full_seen > 10);
    assert_true(built > 1000);
    snapshot_free(cur);
    assert_int_equal(live(), before);
}

/* Retirement through call_rcu: the callback frees the snapshot after a
 * grace period. */
static void test_rcu_retire(void **state)
{
    (void)state;
    long before = live();
    rcu_register_thread();
    struct snapshot *s = NULL;
    struct snapshot_change c = add(1, 0, 1, 1);
    assert_int_equal(snapshot_build(NULL, &c, 1, 1, 8, &s), 0);
    assert_ptr_equal((void *)snapshot_rcu_head(s), (void *)((char *)s + SNAPSHOT_RCU_HEAD_OFFSET));
    assert_int_equal(live(), before + 1);
    call_rcu(snapshot_rcu_head(s), snapshot_free_rcu);
    /* QSBR: a registered thread that blocks must be offline, or the grace
     * period the barrier waits for would wait on us. */
    rcu_thread_offline();
    rcu_barrier();
    rcu_thread_online();
    assert_int_equal(live(), before);
    rcu_unregister_thread();
}

/* The readers' rule (RCUPTR_ASSERT_READER): a registered thread inside a
 * read-side section. Around every test that reads; test_rcu_retire
 * registers itself. */
static int reader_on(void **state)
{
    (void)state;
    rcu_register_thread();
    rcu_read_lock();
    return 0;
}

static int reader_off(void **state)
{
    (void)state;
    rcu_read_unlock();
    rcu_unregister_thread();
    return 0;
}

#define READER_TEST(f) cmocka_unit_test_setup_teardown(f, reader_on, reader_off)

int main(void)
{
    const struct CMUnitTest tests[] = {
        READER_TEST(test_empty),           READER_TEST(test_add),
        READER_TEST(test_remove),          READER_TEST(test_regroup),
        READER_TEST(test_batch_last_wins), READER_TEST(test_limits),
        READER_TEST(test_invalid),         READER_TEST(test_enomem),
        READER_TEST(test_random_batches),  cmocka_unit_test(test_rcu_retire),
    };
    return cmocka_run_group_tests_name("snapshot", tests, NULL, NULL);
}
