/* QUIC-layer conformance with docs/PROTOCOL.md §2 and §4.2, end to end on
 * loopback against the echo application, with the internal client
 * (lib/quic/client.h) and its test knobs:
 * - a FIN on the control stream after the first message, and a
 *   RESET_STREAM after messages and datagrams flowed, each end the
 *   connection with CONNECTION_CLOSE PROTOCOL_VIOLATION (0x02);
 * - a client announcing no max_datagram_frame_size is closed with
 *   PROTOCOL_VIOLATION at handshake completion, never opened for the app,
 *   and counted as a failed handshake;
 * - a close's reason phrase reaches the peer (UNSUPPORTED_VERSION with
 *   "supported: 1", as §4.2 says it SHOULD);
 * - garbage is counted where /metrics exports it: well-formed Initials with
 *   bad crypto each count as a failed handshake, and malformed datagrams
 *   and unknown CIDs in their counters (read with
 *   quic_shared_stats_total, which relay/metrics.c reads too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>
#include <cmocka.h>

#include "core/error.h"
#include "quic/cid.h"
#include "quic/client.h"
#include "../common/echo_app.h"

struct tconn {
    struct quic_conn *c;
    int opened, closed;
    uint64_t ctl_in, dgram_in;
    uint64_t close_code;
    struct quic_close_info info;
    char reason[128];
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int t_open(struct quic_conn *c, void *arg)
{
    (void)arg;
    ((struct tconn *)quic_conn_user(c))->opened++;
    return 0;
}

static void t_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    (void)body;
    (void)len;
    ((struct tconn *)quic_conn_user(c))->ctl_in++;
}

static void t_datagram(struct quic_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    (void)data;
    (void)len;
    ((struct tconn *)quic_conn_user(c))->dgram_in++;
}

static void t_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)arg;
    struct tconn *t = quic_conn_user(c);
    t->closed++;
    t->close_code = app_error;
    quic_conn_close_info(c, &t->info);
    quic_client_close_reason(c, t->reason, sizeof(t->reason));
}

static const struct quic_app_ops tops = {
    .on_open = t_open,
    .on_control = t_control,
    .on_datagram = t_datagram,
    .on_close = t_close,
};

/* Steps the client until *flag >= want or timeout_ms passed. */
static bool until(struct quic_client *cl, const int *flag, int want, int timeout_ms)
{
    uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ULL;
    for (;;) {
        uint64_t now = mono_ns();
        assert_int_equal(quic_client_process(cl, now), 0);
        if (*flag >= want)
            return true;
        if (now >= end)
            return false;
        uint64_t wait = quic_client_next_timeout(cl, now);
        int ms = wait == UINT64_MAX ? 5 : (int)(wait / 1000000ULL);
        if (ms > 5)
            ms = 5;
        struct epoll_event ev;
        (void)epoll_wait(quic_client_fd(cl), &ev, 1, ms);
    }
}

struct env {
    struct echo_server *es;
    struct quic_client *cl;
};

static int setup(void **state)
{
    static struct env e;
    memset(&e, 0, sizeof(e));
    struct quic_shared_config qc = {.n_workers = 1, .addr = "127.0.0.1"};
    if (echo_server_start(&e.es, &qc) != 0)
        return -1;
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct quic_client_config cc = {.ca_file = ca};
    if (quic_client_new(&e.cl, &cc, &tops, NULL) != 0)
        return -1;
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    quic_client_del(e->cl);
    echo_server_stop(e->es);
    return 0;
}

static void connect_open(struct env *e, struct tconn *t)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(quic_client_connect(e->cl, "127.0.0.1", echo_server_port(e->es), t, &t->c), 0);
    assert_true(until(e->cl, &t->opened, 1, 10000));
}

static void assert_violation(const struct tconn *t, const char *reason)
{
    assert_int_equal(t->closed, 1);
    assert_true(t->info.remote);
    assert_true(t->info.app);
    assert_int_equal(t->info.code, QUIC_APP_PROTOCOL_VIOLATION);
    assert_int_equal(t->close_code, QUIC_APP_PROTOCOL_VIOLATION);
    assert_string_equal(t->reason, reason);
}

/* A FIN right after the first control message (where the relay would have
 * just answered HELLO). */
static void test_fin_after_first_message(void **state)
{
    struct env *e = *state;
    struct tconn t;
    connect_open(e, &t);
    assert_int_equal(quic_conn_send_control(t.c, (const uint8_t *)"HELLO", 5), 0);
    int got = 0;
    for (int i = 0; i < 2000 && t.ctl_in == 0; i++) {
        until(e->cl, &got, 1, 5);
    }
    assert_int_equal(t.ctl_in, 1);
    assert_int_equal(quic_client_ctl_finish(t.c), 0);
    assert_true(until(e->cl, &t.closed, 1, 5000));
    assert_violation(&t, "control stream finished");
    quic_client_conn_del(t.c);
}

/* A RESET_STREAM after control and datagrams flowed (a joined session). */
static void test_reset_after_traffic(void **state)
{
    struct env *e = *state;
    struct tconn t;
    connect_open(e, &t);
    assert_int_equal(quic_conn_send_control(t.c, (const uint8_t *)"JOIN", 4), 0);
    uint8_t dg[50] = {1, 2, 3};
    int got = 0;
    for (int i = 0; i < 200 && (t.ctl_in == 0 || t.dgram_in == 0); i++) {
        if (t.dgram_in == 0)
            assert_int_equal(quic_conn_send_datagram(t.c, dg, sizeof(dg)), 0);
        until(e->cl, &got, 1, 20);
    }
    assert_true(t.ctl_in >= 1 && t.dgram_in >= 1);
    assert_int_equal(quic_client_ctl_reset(t.c, 0x42), 0);
    assert_true(until(e->cl, &t.closed, 1, 5000));
    assert_violation(&t, "control stream reset");
    quic_client_conn_del(t.c);
}

/* No max_datagram_frame_size: refused at handshake completion. */
static void test_no_datagram_support(void **state)
{
    struct env *e = *state;
    struct quic_stats before, after;
    echo_server_stats(e->es, &before);
    uint64_t opens = atomic_load(&e->es->opens);
    quic_client_set_no_datagrams(e->cl, true);
    struct tconn t;
    memset(&t, 0, sizeof(t));
    assert_int_equal(quic_client_connect(e->cl, "127.0.0.1", echo_server_port(e->es), &t, &t.c), 0);
    quic_client_set_no_datagrams(e->cl, false);
    assert_true(until(e->cl, &t.closed, 1, 10000));
    assert_violation(&t, "max_datagram_frame_size required");
    echo_server_stats(e->es, &after);
    assert_int_equal(atomic_load(&e->es->opens), opens); /* never opened for the app */
    assert_int_equal(after.handshakes_failed, before.handshakes_failed + 1);
    assert_int_equal(after.handshakes_ok, before.handshakes_ok);
    quic_client_conn_del(t.c);
}

/* The reason phrase of an application close reaches the client. */
static void test_close_reason(void **state)
{
    struct env *e = *state;
    struct tconn t;
    connect_open(e, &t);
    assert_int_equal(quic_conn_send_control(t.c, (const uint8_t *)ECHO_CLOSE_CMD, ECHO_CLOSE_LEN),
                     0);
    assert_true(until(e->cl, &t.closed, 1, 5000));
    assert_true(t.info.remote);
    assert_true(t.info.app);
    assert_int_equal(t.info.code, PROTO_ERR_UNSUPPORTED_VERSION);
    assert_string_equal(t.reason, ECHO_CLOSE_REASON);
    quic_client_conn_del(t.c);
}

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint8_t rnd8(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint8_t)rng;
}

#define BAD_INITIALS 40

static bool stats_reach(struct env *e, uint64_t failed, uint64_t malformed, uint64_t unknown)
{
    for (int i = 0; i < 400; i++) {
        struct quic_stats st;
        echo_server_stats(e->es, &st);
        if (st.handshakes_failed >= failed && st.malformed >= malformed &&
            st.unknown_cid >= unknown)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_garbage_counted(void **state)
{
    struct env *e = *state;
    struct quic_stats before, after;
    echo_server_stats(e->es, &before);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(echo_server_port(e->es))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint8_t p[1200];
    /* Well-formed Initials (v1, 8-byte DCID, no token, a length that
     * matches) whose protected payload is random: they fail to decrypt. */
    for (int i = 0; i < BAD_INITIALS; i++) {
        memset(p, 0, sizeof(p));
        p[0] = 0xc3;
        p[4] = 1;
        p[5] = 8;
        for (int k = 6; k < 14; k++)
            p[k] = rnd8();
        p[14] = 0; /* scid length */
        p[15] = 0; /* token length */
        size_t plen = sizeof(p) - 18;
        p[16] = (uint8_t)(0x40 | (plen >> 8));
        p[17] = (uint8_t)plen;
        for (size_t k = 18; k < sizeof(p); k++)
            p[k] = rnd8();
        assert_int_equal(send(fd, p, sizeof(p), 0), (ssize_t)sizeof(p));
        usleep(1000);
    }
    /* Malformed: a truncated long header. */
    for (int i = 0; i < 10; i++) {
        uint8_t t[3] = {0xc0, 0, 0};
        assert_int_equal(send(fd, t, sizeof(t), 0), 3);
    }
    /* Unknown CID: a short header naming no connection of this worker. */
    for (int i = 0; i < 10; i++) {
        uint8_t s1[40];
        for (size_t k = 0; k < sizeof(s1); k++)
            s1[k] = rnd8();
        s1[0] = 0x40;
        cid_generate(s1 + 1, 0); /* names worker 0, which has no such CID */
        assert_int_equal(send(fd, s1, sizeof(s1), 0), (ssize_t)sizeof(s1));
    }
    close(fd);
    bool reached = stats_reach(e, before.handshakes_failed + BAD_INITIALS, before.malformed + 10,
                               before.unknown_cid + 10);
    echo_server_stats(e->es, &after);
    print_message("# handshakes_failed +%llu malformed +%llu unknown_cid +%llu\n",
                  (unsigned long long)(after.handshakes_failed - before.handshakes_failed),
                  (unsigned long long)(after.malformed - before.malformed),
                  (unsigned long long)(after.unknown_cid - before.unknown_cid));
    print_message("# half_open %llu conns_open %llu pkts_in +%llu\n",
                  (unsigned long long)after.conns_half_open, (unsigned long long)after.conns_open,
                  (unsigned long long)(after.pkts_in - before.pkts_in));
    assert_true(reached);
    assert_int_equal(after.handshakes_failed, before.handshakes_failed + BAD_INITIALS);
    assert_int_equal(after.handshakes_ok, before.handshakes_ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fin_after_first_message), cmocka_unit_test(test_reset_after_traffic),
        cmocka_unit_test(test_no_datagram_support),     cmocka_unit_test(test_close_reason),
        cmocka_unit_test(test_garbage_counted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
