/* The cluster directory (lib/cluster/dir) against a real redis-server
 * that fails (test/common/dirfx; test_cluster_dir.c has the rest): Redis
 * killed: the client reports down, requests fail within the wait bound
 * with a clear reason, the home drops its lease by its own clock; Redis
 * restarted on the same port: the same client re-registers, claims again,
 * and restores a lease that was still valid; a real child process paused
 * with SIGSTOP past its lease (then SIGCONT) never believes it is home
 * after the other claimed.
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

/* Redis killed and restarted on the same port, with short leases. */
static void test_redis_down(void **state)
{
    (void)state;
    struct redis_server rs = {.pid = -1};
    assert_int_equal(redis_server_start(&rs, 0), 0);
    struct dirfx_relay *a = dirfx_relay_new("t5", "a", rs.port, dirfx_timing());
    DIRFX_POLL_UNTIL(dirfx_up(a), DIRFX_ANSWER_MS);
    struct dir_lease *la = dirfx_claim_home(a, "r");
    uint64_t g1 = dir_lease_gen(la);

    redis_server_kill(&rs);
    uint64_t killed = dir_now();
    /* Down is noticed at the next refresh or renew. */
    DIRFX_POLL_UNTIL(!dirfx_up(a), DIRFX_ANSWER_MS);
    DIRFX_POLL_UNTIL(dirfx_relay_count(a, &a->downs) == 1, DIRFX_ANSWER_MS);

    /* Requests (a lookup, a claim of a new room: a cross-relay join) wait
     * the bound, then fail with a clear reason. */
    struct dirfx_box c, c2;
    dirfx_box_init(&c);
    dirfx_box_init(&c2);
    uint64_t sub = redis_test_now_ms();
    assert_int_equal(dir_lookup(a->d, "other", 5, dirfx_box_cb, &c), 0);
    assert_int_equal(dir_claim(a->d, "new", 3, dirfx_box_cb, &c2), 0);
    assert_true(dirfx_box_wait(&c, DIRFX_WAIT_MS + 1000));
    assert_true(dirfx_box_wait(&c2, DIRFX_WAIT_MS + 1000));
    assert_int_equal(c.res.err, ROOST_ETIMEDOUT);
    assert_string_equal(c.reason, "redis unavailable");
    assert_true(c.done_ms - sub >= DIRFX_WAIT_MS - 5);
    assert_int_equal(c2.res.err, ROOST_ETIMEDOUT);
    assert_string_equal(c2.reason, "redis unavailable");
    assert_null(c2.res.lease);
    dirfx_box_fini(&c);
    dirfx_box_fini(&c2);

    /* The home drops its lease by its own clock, within one lease. */
    DIRFX_POLL_UNTIL(!dir_lease_valid(la, dir_now()), DIRFX_LEASE_MS + 100);
    assert_true(dir_lease_until(la) == 0 ||
                dir_lease_until(la) < killed + DIRFX_LEASE_MS * DIRFX_MS);
    DIRFX_POLL_UNTIL(dirfx_relay_count(a, &a->n_lost) == 1, DIRFX_ANSWER_MS);
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->lost[0].reason, DIR_LOST_EXPIRED);
    pthread_mutex_unlock(&a->mu);
    dir_lease_put(la);

    /* Redis back on the same port: the same client re-registers and can
     * claim again; the generation still grows although Redis forgot it. */
    assert_int_equal(redis_server_restart(&rs), 0);
    DIRFX_POLL_UNTIL(dirfx_up(a), DIRFX_ANSWER_MS);
    DIRFX_POLL_UNTIL(dirfx_relay_count(a, &a->ups) == 2, DIRFX_ANSWER_MS);
    assert_true(dirfx_list_has(a, "a", 1));
    struct dir_lease *la2 = dirfx_claim_home(a, "r");
    assert_true(dir_lease_gen(la2) > g1);
    struct dir_stats st;
    dir_stats(a->d, &st);
    assert_true(st.reconnects >= 1);
    assert_true(st.req_timeouts >= 2);
    assert_true(st.redis_errors >= 1);
    assert_int_equal(st.up, 1);
    dir_release(a->d, la2);
    dirfx_relay_del(a);
    redis_server_stop(&rs);
}

/* Redis restarted within the lease: the lease stays valid throughout and
 * the renew puts the key back (same value, generation floor raised). */
static void test_redis_restart_restore(void **state)
{
    (void)state;
    struct redis_server rs = {.pid = -1};
    assert_int_equal(redis_server_start(&rs, 0), 0);
    struct dir_timing t = dirfx_timing();
    t.lease_ms = 3000;
    t.margin_ms = 300;
    t.renew_ms = 100;
    struct dirfx_relay *a = dirfx_relay_new("t6", "a", rs.port, t);
    struct dir_lease *la = dirfx_claim_home(a, "r");
    uint64_t g1 = dir_lease_gen(la);

    redis_server_kill(&rs);
    DIRFX_POLL_UNTIL(!dirfx_up(a), DIRFX_ANSWER_MS);
    assert_true(dir_lease_valid(la, dir_now()));
    /* A held room is answered without Redis. */
    struct dir_lease *again = dirfx_claim_home(a, "r");
    assert_ptr_equal(again, la);
    dir_lease_put(again);

    assert_int_equal(redis_server_restart(&rs), 0);
    struct dir_stats st;
    DIRFX_POLL_UNTIL((dir_stats(a->d, &st), st.restores >= 1), DIRFX_ANSWER_MS);
    assert_true(dir_lease_valid(la, dir_now()));
    assert_int_equal(dirfx_relay_count(a, &a->n_lost), 0);
    redisReply *v = dirfx_raw(&rs, "GET t6:room:r");
    char want[64];
    snprintf(want, sizeof(want), "a:%llu", (unsigned long long)g1);
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_string_equal(v->str, want);
    freeReplyObject(v);
    v = dirfx_raw(&rs, "GET t6:gen:r");
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_int_equal(strtoull(v->str, NULL, 10), g1);
    freeReplyObject(v);
    v = dirfx_raw(&rs, "EXISTS t6:relay:a");
    assert_int_equal(v->integer, 1);
    freeReplyObject(v);
    /* Another relay sees a as home with the same generation. */
    struct dirfx_relay *b = dirfx_relay_new("t6", "b", rs.port, t);
    struct dirfx_box c;
    dirfx_call(b, DIRFX_CLAIM, "r", &c);
    assert_false(c.res.home_is_self);
    assert_string_equal(c.res.home_id, "a");
    assert_int_equal(c.res.gen, g1);
    dirfx_box_fini(&c);
    dir_release(a->d, la);
    dirfx_relay_del(b);
    dirfx_relay_del(a);
    redis_server_stop(&rs);
}

/* The split-brain test with a real paused process, as the issue asks:
 * a child process holds the lease, gets SIGSTOP past it, the other relay
 * claims with a higher generation, then SIGCONT: the child's own clock
 * says it is not home (and its deadline was before the other's claim;
 * CLOCK_MONOTONIC is system-wide, so the two processes compare). The child
 * uses no cmocka (its asserts would unwind into the parent's copy). */
struct child_report {
    uint64_t gen;
    uint64_t until;
    uint32_t valid;
};

static bool read_full(int fd, void *buf, size_t n, unsigned ms)
{
    uint8_t *p = buf;
    uint64_t deadline = redis_test_now_ms() + ms;
    while (n > 0) {
        uint64_t now = redis_test_now_ms();
        if (now >= deadline)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void child_main(int wfd, int rfd)
{
    struct dir_config cfg = {.redis_host = "127.0.0.1",
                             .redis_port = dirfx_redis.port,
                             .prefix = "t9",
                             .relay_id = "c",
                             .trunk_addr = "127.0.0.1:5002",
                             .timing = dirfx_timing()};
    struct dir *d = NULL;
    if (dir_new(&d, &cfg) != 0)
        _exit(2);
    struct dirfx_box b;
    dirfx_box_init(&b);
    if (dir_claim(d, "stop", 4, dirfx_box_cb, &b) != 0 || !dirfx_box_wait(&b, DIRFX_ANSWER_MS) ||
        b.res.err != 0 || b.res.lease == NULL)
        _exit(3);
    struct child_report rep = {.gen = b.res.gen, .valid = 1};
    if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(4);
    /* Parent: SIGSTOP ... SIGCONT, then one byte: report the belief now. */
    char go;
    if (read(rfd, &go, 1) != 1)
        _exit(5);
    rep.valid = dir_lease_valid(b.res.lease, dir_now());
    rep.until = dir_lease_until(b.res.lease);
    if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(6);
    dir_lease_put(b.res.lease);
    dir_del(d);
    _exit(0);
}

static void test_sigstop_home(void **state)
{
    (void)state;
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid != -1);
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        child_main(up[1], down[0]);
    }
    close(up[1]);
    close(down[0]);
    struct child_report rep;
    assert_true(read_full(up[0], &rep, sizeof(rep), DIRFX_ANSWER_MS));
    assert_true(rep.gen > 0);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint64_t stopped_at = dir_now();

    struct dirfx_relay *b = dirfx_relay_new("t9", "b", dirfx_redis.port, dirfx_timing());
    uint64_t b_home_at;
    struct dir_lease *lb = dirfx_claim_when_free(b, "stop", "c", 0, &b_home_at);
    assert_true(dir_lease_gen(lb) > rep.gen);
    assert_true(b_home_at - stopped_at >= (DIRFX_LEASE_MS - DIRFX_MARGIN_MS) * DIRFX_MS / 2);

    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(write(down[1], "g", 1), 1);
    assert_true(read_full(up[0], &rep, sizeof(rep), DIRFX_ANSWER_MS));
    assert_int_equal(rep.valid, 0);
    /* Its deadline (or 0 once its thread saw it pass) precedes b's claim. */
    assert_true(rep.until <= b_home_at);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(up[0]);
    close(down[1]);
    assert_true(dir_lease_valid(lb, dir_now()));
    /* The resumed child's renew found b's value (or it had expired first):
     * b is still home. */
    assert_true(dirfx_lookup_home_is(b, "stop", "b"));
    dir_release(b->d, lb);
    dirfx_relay_del(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_redis_restart_restore),
        cmocka_unit_test(test_sigstop_home),
    };
    return cmocka_run_group_tests_name("cluster_dir_redis", tests, dirfx_group_setup,
                                       dirfx_group_teardown);
}
