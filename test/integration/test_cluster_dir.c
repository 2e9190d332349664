/* The cluster directory (lib/cluster/dir) against a real redis-server,
 * while Redis stays up: two directory clients ("relays", test/common/dirfx)
 * register and list each other with TTLs; a room claimed by one is found
 * as home by the other; renewals keep it; release (and shutdown) free it;
 * a home whose thread is stalled past its lease stops believing by its own
 * clock and the other claims with a higher generation (split-brain guard);
 * a lease overwritten in Redis is reported taken; placement; shutdown with
 * requests pending. test_cluster_dir_redis.c has Redis going down and
 * a paused process.
 *
 * Timings are short (500 ms leases) and every wait polls against a
 * deadline derived from them. Callbacks run on the cluster threads and
 * only record (cmocka asserts are not thread-safe); the test thread
 * checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/dirfx.h"
#include "cluster/dir.h"
#include "core/error.h"

static void test_register_list(void **state)
{
    (void)state;
    struct dirfx_relay *a = dirfx_relay_new("t1", "a", dirfx_redis.port, dirfx_timing());
    struct dirfx_relay *b = dirfx_relay_new("t1", "b", dirfx_redis.port, dirfx_timing());
    atomic_store(&b->part, 50);
    DIRFX_POLL_UNTIL(dirfx_up(a) && dirfx_up(b), DIRFX_ANSWER_MS);
    DIRFX_POLL_UNTIL(dirfx_list_has(a, "b", 2) && dirfx_list_has(b, "a", 2), DIRFX_ANSWER_MS);
    /* b's load reaches a with b's next refresh. */
    struct dirfx_box l;
    uint64_t deadline = redis_test_now_ms() + DIRFX_ANSWER_MS;
    for (;;) {
        dirfx_call(a, DIRFX_LIST, NULL, &l);
        assert_int_equal(l.n_relays, 2);
        int ib = strcmp(l.relays[0].id, "b") == 0 ? 0 : 1;
        if (l.relays[ib].load.participants == 50 || redis_test_now_ms() > deadline)
            break;
        dirfx_box_fini(&l);
        dirfx_nap(10);
    }
    for (size_t i = 0; i < 2; i++) {
        const struct dir_relay *r = &l.relays[i];
        bool isb = strcmp(r->id, "b") == 0;
        assert_string_equal(r->addr, isb ? "127.0.0.1:5001" : "127.0.0.1:5000");
        assert_int_equal(r->load.participants, isb ? 50 : 10);
        assert_int_equal(r->load.max_participants, 100);
        assert_true(r->load.accepting);
        assert_true(r->ttl_ms > 0 && r->ttl_ms <= DIRFX_RELAY_TTL_MS);
    }
    dirfx_box_fini(&l);
    /* The hash in Redis carries a TTL. */
    redisReply *t = dirfx_raw(&dirfx_redis, "PTTL t1:relay:a");
    assert_int_equal(t->type, REDIS_REPLY_INTEGER);
    assert_true(t->integer > 0 && t->integer <= DIRFX_RELAY_TTL_MS);
    freeReplyObject(t);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_int_equal(st.up, 1);
    assert_true(st.refreshes >= 1);
    assert_int_equal(dirfx_relay_count(a, &a->ups), 1);
    /* A stopped relay unregisters at once. */
    dirfx_relay_del(b);
    assert_true(dirfx_list_has(a, "a", 1));
    dirfx_relay_del(a);
}

static void test_claim_renew_release(void **state)
{
    (void)state;
    struct dirfx_relay *a = dirfx_relay_new("t2", "a", dirfx_redis.port, dirfx_timing());
    struct dirfx_relay *b = dirfx_relay_new("t2", "b", dirfx_redis.port, dirfx_timing());
    struct dir_lease *la = dirfx_claim_home(a, "demo");
    uint64_t g1 = dir_lease_gen(la);
    assert_true(dir_lease_valid(la, dir_now()));
    size_t rl;
    assert_memory_equal(dir_lease_room(la, &rl), "demo", 4);
    assert_int_equal(rl, 4);

    /* The other relay finds a as home, with a's trunk address. */
    struct dirfx_box c;
    dirfx_call(b, DIRFX_CLAIM, "demo", &c);
    assert_int_equal(c.res.err, 0);
    assert_true(c.res.has_home);
    assert_false(c.res.home_is_self);
    assert_null(c.res.lease);
    assert_string_equal(c.res.home_id, "a");
    assert_string_equal(c.res.home_addr, "127.0.0.1:5000");
    assert_int_equal(c.res.gen, g1);
    assert_true(c.res.lease_ttl_ms > 0 && c.res.lease_ttl_ms <= DIRFX_LEASE_MS);
    dirfx_box_fini(&c);
    assert_true(dirfx_lookup_home_is(b, "demo", "a"));

    /* Claiming again on a answers the same lease without a new generation. */
    struct dir_lease *la2 = dirfx_claim_home(a, "demo");
    assert_ptr_equal(la2, la);
    dir_lease_put(la2);

    /* Renewals keep it past several leases. */
    struct dir_stats st;
    uint64_t t0 = redis_test_now_ms();
    DIRFX_POLL_UNTIL((dir_stats(a->d, &st), st.renewals >= 8), 8 * 120 + DIRFX_ANSWER_MS);
    assert_true(redis_test_now_ms() - t0 >= DIRFX_LEASE_MS);
    assert_true(dir_lease_valid(la, dir_now()));
    redisReply *v = dirfx_raw(&dirfx_redis, "GET t2:room:demo");
    char want[64];
    snprintf(want, sizeof(want), "a:%llu", (unsigned long long)g1);
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_string_equal(v->str, want);
    freeReplyObject(v);
    assert_true(dirfx_lookup_home_is(b, "demo", "a"));
    assert_int_equal(st.claims_won, 1);
    assert_int_equal(st.leases_held, 1);

    /* Release: invalid at once, deleted in Redis (b sees no home). */
    dir_release(a->d, la);
    DIRFX_POLL_UNTIL(dirfx_lookup_home_is(b, "demo", NULL), DIRFX_ANSWER_MS);
    dir_stats(a->d, &st);
    assert_int_equal(st.releases, 1);
    assert_int_equal(st.leases_held, 0);
    assert_int_equal(st.leases_lost, 0);

    /* Now b can claim, with a higher generation. */
    struct dir_lease *lb = dirfx_claim_home(b, "demo");
    assert_true(dir_lease_gen(lb) > g1);
    assert_true(dirfx_lookup_home_is(a, "demo", "b"));
    dir_release(b->d, lb);
    assert_int_equal(dirfx_relay_count(a, &a->n_lost), 0);
    dirfx_relay_del(a);
    dirfx_relay_del(b);
}

/* Split-brain guard: the home's cluster thread stalls (as if paused by
 * SIGSTOP) past its lease. It stops believing by its own clock before
 * Redis lets the other claim; the other then claims with a higher
 * generation; when the stalled thread resumes it reports the loss and
 * never believes again. */
static void test_stalled_home(void **state)
{
    (void)state;
    struct dirfx_relay *a = dirfx_relay_new("t3", "a", dirfx_redis.port, dirfx_timing());
    struct dirfx_relay *b = dirfx_relay_new("t3", "b", dirfx_redis.port, dirfx_timing());
    struct dir_lease *la = dirfx_claim_home(a, "room");
    uint64_t g1 = dir_lease_gen(la);
    dir_test_stall(a->d, true);
    uint64_t stalled_at = dir_now();

    /* a's belief ends by the clock alone, within one lease of the stall. */
    DIRFX_POLL_UNTIL(!dir_lease_valid(la, dir_now()), DIRFX_LEASE_MS + 100);
    uint64_t until_a = dir_lease_until(la);
    assert_true(until_a != 0 && until_a <= stalled_at + DIRFX_LEASE_MS * DIRFX_MS);

    /* b polls claims until Redis expires a's key. */
    uint64_t b_home_at;
    struct dir_lease *lb = dirfx_claim_when_free(b, "room", "a", g1, &b_home_at);
    assert_true(dir_lease_gen(lb) > g1);
    /* Never both: a stopped believing before b became home. */
    assert_true(until_a <= b_home_at);
    assert_false(dir_lease_valid(la, b_home_at));
    assert_true(dir_lease_valid(lb, dir_now()));

    /* a resumes: it reports the lease lost, stays not home, and finds b. */
    dir_test_stall(a->d, false);
    DIRFX_POLL_UNTIL(dirfx_relay_count(a, &a->n_lost) == 1, DIRFX_ANSWER_MS);
    pthread_mutex_lock(&a->mu);
    assert_string_equal(a->lost[0].room, "room");
    assert_int_equal(a->lost[0].gen, g1);
    assert_int_equal(a->lost[0].reason, DIR_LOST_EXPIRED);
    pthread_mutex_unlock(&a->mu);
    assert_false(dir_lease_valid(la, dir_now()));
    assert_int_equal(dir_lease_until(la), 0);
    struct dirfx_box c;
    dirfx_call(a, DIRFX_CLAIM, "room", &c);
    assert_false(c.res.home_is_self);
    assert_string_equal(c.res.home_id, "b");
    assert_int_equal(c.res.gen, dir_lease_gen(lb));
    dirfx_box_fini(&c);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_int_equal(st.leases_expired, 1);
    assert_int_equal(st.leases_held, 0);
    /* b keeps renewing, past a lease. */
    dir_stats(b->d, &st);
    uint64_t renewed = st.renewals;
    DIRFX_POLL_UNTIL((dir_stats(b->d, &st), st.renewals >= renewed + 5), 5 * 120 + DIRFX_ANSWER_MS);
    assert_true(dir_lease_valid(lb, dir_now()));
    dir_lease_put(la);
    dir_release(b->d, lb);
    dirfx_relay_del(a);
    dirfx_relay_del(b);
}

/* Someone else's value in the key: the next renew reports the lease taken. */
static void test_taken(void **state)
{
    (void)state;
    struct dirfx_relay *a = dirfx_relay_new("t4", "a", dirfx_redis.port, dirfx_timing());
    struct dir_lease *la = dirfx_claim_home(a, "x");
    freeReplyObject(dirfx_raw(&dirfx_redis, "SET t4:room:x z:99999999999999999 PX 10000"));
    DIRFX_POLL_UNTIL(dirfx_relay_count(a, &a->n_lost) == 1, DIRFX_ANSWER_MS);
    assert_false(dir_lease_valid(la, dir_now()));
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->lost[0].reason, DIR_LOST_TAKEN);
    pthread_mutex_unlock(&a->mu);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_int_equal(st.leases_taken, 1);
    /* Releasing a lost lease does not delete the other's key. */
    dir_release(a->d, la);
    DIRFX_POLL_UNTIL((dir_stats(a->d, &st), st.releases == 1), DIRFX_ANSWER_MS);
    assert_true(dirfx_lookup_home_is(a, "x", "z"));
    dirfx_relay_del(a);
}

static bool place_is(struct dirfx_relay *r, const char *room, int err, const char *id, bool home)
{
    struct dirfx_box b;
    dirfx_call(r, DIRFX_PLACE, room, &b);
    dirfx_box_fini(&b);
    if (b.res.err != err)
        return false;
    if (err != 0)
        return true;
    return b.place >= 0 && strcmp(b.relays[b.place].id, id) == 0 && b.res.place_is_home == home;
}

static void test_place(void **state)
{
    (void)state;
    struct dirfx_relay *a = dirfx_relay_new("t7", "a", dirfx_redis.port, dirfx_timing());
    struct dirfx_relay *b = dirfx_relay_new("t7", "b", dirfx_redis.port, dirfx_timing());
    atomic_store(&b->part, 50);
    DIRFX_POLL_UNTIL(dirfx_list_has(a, "b", 2), DIRFX_ANSWER_MS);
    struct dir_lease *lb = dirfx_claim_home(b, "p");
    /* The home while it has capacity, though fuller. */
    DIRFX_POLL_UNTIL(place_is(a, "p", 0, "b", true), DIRFX_ANSWER_MS);
    struct dirfx_box c;
    dirfx_call(a, DIRFX_PLACE, "p", &c);
    assert_true(c.res.has_home);
    assert_string_equal(c.res.home_id, "b");
    assert_string_equal(c.res.home_addr, "127.0.0.1:5001");
    assert_int_equal(c.res.gen, dir_lease_gen(lb));
    dirfx_box_fini(&c);
    /* A room without home: least loaded. */
    assert_true(place_is(b, "q", 0, "a", false));
    /* Home stops accepting: the least-loaded other. */
    atomic_store(&b->accept, false);
    DIRFX_POLL_UNTIL(place_is(a, "p", 0, "a", false), DIRFX_ANSWER_MS);
    /* Nobody accepts. */
    atomic_store(&a->accept, false);
    DIRFX_POLL_UNTIL(place_is(a, "p", ROOST_EFULL, NULL, false), DIRFX_ANSWER_MS);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_true(st.places >= 4);
    dir_release(b->d, lb);
    dirfx_relay_del(a);
    dirfx_relay_del(b);
}

/* dir_del with requests pending (no Redis at all): each is answered once,
 * ROOST_ECLOSED; leases held are released in Redis at shutdown. */
static void test_shutdown(void **state)
{
    (void)state;
    struct dir_config bad = {
        .redis_host = "127.0.0.1", .redis_port = 1, .relay_id = "bad id", .trunk_addr = "x:1"};
    struct dir *d = NULL;
    assert_int_equal(dir_new(&d, &bad), ROOST_EINVAL);
    bad.relay_id = "ok";
    bad.timing.lease_ms = 100;
    bad.timing.margin_ms = 100;
    assert_int_equal(dir_new(&d, &bad), ROOST_EINVAL);

    /* A port nobody listens on: a closed listener's. */
    struct redis_server none = {.pid = -1};
    assert_int_equal(redis_server_start(&none, 0), 0);
    redis_server_stop(&none);
    struct dir_timing t = dirfx_timing();
    t.wait_ms = 10000;
    struct dirfx_relay *a = dirfx_relay_new("t8", "a", none.port, t);
    struct dirfx_box c1, c2;
    dirfx_box_init(&c1);
    dirfx_box_init(&c2);
    assert_int_equal(dir_claim(a->d, "r", 1, dirfx_box_cb, &c1), 0);
    assert_int_equal(dir_list(a->d, dirfx_box_cb, &c2), 0);
    assert_int_equal(dir_claim(a->d, "", 0, dirfx_box_cb, &c1), ROOST_EINVAL);
    struct dir_stats st;
    DIRFX_POLL_UNTIL((dir_stats(a->d, &st), st.connect_failures >= 2), DIRFX_ANSWER_MS);
    assert_false(dirfx_up(a));
    dirfx_relay_del(a);
    assert_true(c1.done && c2.done);
    assert_int_equal(c1.res.err, ROOST_ECLOSED);
    assert_int_equal(c2.res.err, ROOST_ECLOSED);
    dirfx_box_fini(&c1);
    dirfx_box_fini(&c2);

    /* Shutdown releases: another relay sees no home right after. */
    struct dirfx_relay *x = dirfx_relay_new("t8", "x", dirfx_redis.port, dirfx_timing());
    struct dirfx_relay *y = dirfx_relay_new("t8", "y", dirfx_redis.port, dirfx_timing());
    struct dir_lease *lx = dirfx_claim_home(x, "s");
    dirfx_relay_del(x);
    assert_false(dir_lease_valid(lx, dir_now()));
    assert_true(dirfx_lookup_home_is(y, "s", NULL));
    dir_lease_put(lx);
    dirfx_relay_del(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_list), cmocka_unit_test(test_claim_renew_release),
        cmocka_unit_test(test_stalled_home),  cmocka_unit_test(test_taken),
        cmocka_unit_test(test_place),         cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests_name("cluster_dir", tests, dirfx_group_setup,
                                       dirfx_group_teardown);
}
