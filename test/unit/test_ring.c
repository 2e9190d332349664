/* SPSC ring: ordering, full/empty, wrap-around of slots and of the 32-bit
 * indices, partial bursts, staging, and a two-thread stress that checks
 * sequence and checksum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <pthread.h>

#include "core/error.h"
#include "core/ring.h"

struct msg {
    uint64_t seq;
    uint64_t val;
    uint8_t pad[48];
};
_Static_assert(sizeof(struct msg) == 64, "64-byte slots like worker_msg");

static uint64_t mix(uint64_t x)
{
    /* splitmix64 finaliser: a payload that depends on every bit of seq. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static struct msg mk(uint64_t seq)
{
    struct msg m;
    memset(&m, 0, sizeof(m));
    m.seq = seq;
    m.val = mix(seq);
    return m;
}

static void test_new_invalid(void **state)
{
    (void)state;
    struct ring *r = (struct ring *)1;
    assert_int_equal(ring_new(&r, 0, 64), ROOST_EINVAL);
    assert_null(r);
    assert_int_equal(ring_new(&r, 1, 64), ROOST_EINVAL);
    assert_int_equal(ring_new(&r, 3, 64), ROOST_EINVAL);
    assert_int_equal(ring_new(&r, 1000, 64), ROOST_EINVAL);
    assert_int_equal(ring_new(&r, 1u << 31, 64), ROOST_EINVAL);
    assert_int_equal(ring_new(&r, 8, 0), ROOST_EINVAL);
    assert_int_equal(ring_new(&r, 8, 64), 0);
    assert_non_null(r);
    assert_int_equal(ring_capacity(r), 8);
    assert_int_equal(ring_slot_size(r), 64);
    /* Producer and consumer state on separate cache lines. */
    assert_true(offsetof(struct ring, cons) - offsetof(struct ring, prod) >= 64);
    assert_int_equal(offsetof(struct ring, prod) % 64, 0);
    assert_int_equal((uintptr_t)r % 64, 0);
    assert_int_equal((uintptr_t)r->slots % 64, 0);
    ring_del(r);
    ring_del(NULL);
}

static void test_order_full_empty(void **state)
{
    (void)state;
    struct ring *r;
    assert_int_equal(ring_new(&r, 8, sizeof(struct msg)), 0);
    struct msg m;
    assert_true(ring_empty(r));
    assert_int_equal(ring_pop_burst(r, &m, 1), 0);
    for (uint64_t i = 0; i < 8; i++) {
        m = mk(i);
        assert_int_equal(ring_push_burst(r, &m, 1), 1);
        assert_false(ring_empty(r));
    }
    assert_int_equal(ring_free(r), 0);
    m = mk(99);
    assert_int_equal(ring_push_burst(r, &m, 1), 0); /* full */
    assert_int_equal(ring_count(r), 8);
    for (uint64_t i = 0; i < 8; i++) {
        assert_int_equal(ring_pop_burst(r, &m, 1), 1);
        assert_int_equal(m.seq, i);
        assert_int_equal(m.val, mix(i));
    }
    assert_true(ring_empty(r));
    assert_int_equal(ring_pop_burst(r, &m, 1), 0);
    /* Space is back after the pops. */
    assert_int_equal(ring_free(r), 8);
    ring_del(r);
}

/* Runs bursts of varying sizes through a small ring starting from `start`
 * so that both slot positions and the uint32_t indices wrap. */
static void run_wrap(uint32_t start)
{
    struct ring *r;
    assert_int_equal(ring_new(&r, 8, sizeof(struct msg)), 0);
    atomic_store(&r->prod.tail, start);
    r->prod.next = start;
    r->prod.cons_cache = start;
    atomic_store(&r->cons.head, start);
    r->cons.prod_cache = start;

    struct msg in[8], out[8];
    uint64_t next_in = 0, next_out = 0;
    for (unsigned iter = 0; iter < 2000; iter++) {
        unsigned want = 1 + iter % 8;
        for (unsigned i = 0; i < want; i++)
            in[i] = mk(next_in + i);
        unsigned pushed = ring_push_burst(r, in, want);
        next_in += pushed;
        assert_true(next_in - next_out <= 8);
        unsigned popn = 1 + (iter * 7) % 8;
        uint64_t avail = next_in - next_out;
        unsigned got = ring_pop_burst(r, out, popn);
        assert_int_equal(got, popn < avail ? popn : avail);
        for (unsigned i = 0; i < got; i++) {
            assert_int_equal(out[i].seq, next_out + i);
            assert_int_equal(out[i].val, mix(next_out + i));
        }
        next_out += got;
    }
    while (ring_pop_burst(r, out, 1) == 1) {
        assert_int_equal(out[0].seq, next_out);
        next_out++;
    }
    assert_int_equal(next_out, next_in);
    assert_true(next_in > 4000);
    ring_del(r);
}

static void test_wrap_capacity(void **state)
{
    (void)state;
    run_wrap(0);
}

static void test_wrap_index(void **state)
{
    (void)state;
    run_wrap(UINT32_MAX - 5); /* the free-running indices cross 2^32 */
}

static void test_partial_bursts(void **state)
{
    (void)state;
    struct ring *r;
    assert_int_equal(ring_new(&r, 16, sizeof(struct msg)), 0);
    struct msg in[32], out[32];
    for (unsigned i = 0; i < 32; i++)
        in[i] = mk(i);
    assert_int_equal(ring_push_burst(r, in, 10), 10);
    assert_int_equal(ring_push_burst(r, in + 10, 10), 6); /* nearly full: partial */
    assert_int_equal(ring_push_burst(r, in + 16, 10), 0); /* full */
    assert_int_equal(ring_pop_burst(r, out, 4), 4);
    assert_int_equal(ring_push_burst(r, in + 16, 10), 4);
    assert_int_equal(ring_pop_burst(r, out + 4, 32), 16); /* pops what is there */
    for (unsigned i = 0; i < 20; i++)
        assert_int_equal(out[i].seq, i);
    assert_int_equal(ring_pop_burst(r, out, 32), 0);
    ring_del(r);
}

static void test_stage_publish(void **state)
{
    (void)state;
    struct ring *r;
    assert_int_equal(ring_new(&r, 8, sizeof(struct msg)), 0);
    struct msg in[8], out[8];
    for (unsigned i = 0; i < 8; i++)
        in[i] = mk(i);
    assert_int_equal(ring_stage_burst(r, in, 5), 5);
    assert_int_equal(ring_unpublished(r), 5);
    /* Staged slots are invisible to the consumer. */
    assert_true(ring_empty(r));
    assert_int_equal(ring_pop_burst(r, out, 8), 0);
    /* Staged slots still take space. */
    assert_int_equal(ring_stage_burst(r, in + 5, 8), 3);
    assert_int_equal(ring_publish(r), 8);
    assert_int_equal(ring_publish(r), 0);
    assert_int_equal(ring_unpublished(r), 0);
    assert_int_equal(ring_count(r), 8);
    assert_int_equal(ring_pop_burst(r, out, 8), 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(out[i].seq, i);
    ring_del(r);
}

static void test_odd_slot_size(void **state)
{
    (void)state;
    struct ring *r;
    assert_int_equal(ring_new(&r, 4, 3), 0);
    unsigned char in[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, out[15] = {0};
    assert_int_equal(ring_push_burst(r, in, 5), 4);
    assert_int_equal(ring_pop_burst(r, out, 2), 2);
    assert_int_equal(ring_push_burst(r, in + 12, 1), 1);
    assert_int_equal(ring_pop_burst(r, out + 6, 5), 3);
    assert_memory_equal(out, in, 15);
    ring_del(r);
}

/* ------------------------------------------------------------- stress */

#define STRESS_MSGS 10000000ull /* 10M; fast enough under ASan too (~2 s) */

struct stress {
    struct ring *r;
    uint64_t sum_out;
    uint64_t sum_in;
    uint64_t received;
    uint64_t bad_seq;
};

static void *stress_producer(void *arg)
{
    struct stress *s = arg;
    struct msg batch[32];
    uint64_t seq = 0, rnd = 12345;
    while (seq < STRESS_MSGS) {
        rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
        unsigned n = 1 + (unsigned)(rnd >> 59); /* 1..32 */
        if (n > STRESS_MSGS - seq)
            n = (unsigned)(STRESS_MSGS - seq);
        for (unsigned i = 0; i < n; i++)
            batch[i] = mk(seq + i);
        /* Alternate between push_burst and stage + publish. */
        unsigned k = 0;
        while (k < n) {
            if (rnd & 1) {
                k += ring_push_burst(s->r, batch + k, n - k);
            } else {
                k += ring_stage_burst(s->r, batch + k, n - k);
                ring_publish(s->r);
            }
        }
        for (unsigned i = 0; i < n; i++)
            s->sum_in += batch[i].val;
        seq += n;
    }
    return NULL;
}

static void *stress_consumer(void *arg)
{
    struct stress *s = arg;
    struct msg batch[32];
    uint64_t expect = 0;
    while (expect < STRESS_MSGS) {
        unsigned n = ring_pop_burst(s->r, batch, 32);
        for (unsigned i = 0; i < n; i++) {
            if (batch[i].seq != expect || batch[i].val != mix(expect))
                s->bad_seq++;
            s->sum_out += batch[i].val;
            expect++;
        }
    }
    s->received = expect;
    return NULL;
}

static void test_two_thread_stress(void **state)
{
    (void)state;
    struct stress s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(ring_new(&s.r, 1024, sizeof(struct msg)), 0);
    pthread_t prod, cons;
    assert_int_equal(pthread_create(&cons, NULL, stress_consumer, &s), 0);
    assert_int_equal(pthread_create(&prod, NULL, stress_producer, &s), 0);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    assert_int_equal(s.received, STRESS_MSGS);
    assert_int_equal(s.bad_seq, 0);
    assert_true(s.sum_in == s.sum_out);
    assert_true(ring_empty(s.r));
    ring_del(s.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),    cmocka_unit_test(test_order_full_empty),
        cmocka_unit_test(test_wrap_capacity),  cmocka_unit_test(test_wrap_index),
        cmocka_unit_test(test_partial_bursts), cmocka_unit_test(test_stage_publish),
        cmocka_unit_test(test_odd_slot_size),  cmocka_unit_test(test_two_thread_stress),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
