/* The client endpoint's path hook (quic_client_set_path), driven by
 * roost-bench's timing wheel (bench/netem.c) against an echo server: with
 * an emulated 60 ms round trip every datagram goes through the hook both
 * ways, the handshake and DATAGRAM echoes still work, and the connection's
 * own RTT estimate sees the 60 ms (on bare loopback it is far below); a
 * connection freed while the path holds its datagrams has them dropped
 * (gone), nothing is released for it afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../common/echo_app.h"
#include "client/client_int.h"
#include "core/buf.h"
#include "quic/client.h"
#include "quic/quic.h"

/* The wheel under test is roost-bench's; the Makefile links test programs
 * with the libraries only. */
#include "bench/netem.c"

#define MS 1000000ull
#define RTT (60 * MS)

struct path {
    struct netem *nm;
    uint64_t out, in, gone, released;
};

static void p_out(void *arg, struct quic_conn *c, const uint8_t *d, size_t len)
{
    struct path *p = arg;
    p->out++;
    assert_int_equal(netem_push(p->nm, NETEM_OUT, c, NULL, d, len, roost_client_now()), 1);
}

static void p_in(void *arg, struct quic_conn *c, const uint8_t *d, size_t len)
{
    struct path *p = arg;
    p->in++;
    assert_int_equal(netem_push(p->nm, NETEM_IN, c, NULL, d, len, roost_client_now()), 1);
}

static void p_gone(void *arg, struct quic_conn *c)
{
    struct path *p = arg;
    p->gone++;
    netem_forget(p->nm, c);
}

static const struct quic_client_path hooks = {.out = p_out, .in = p_in, .gone = p_gone};

static void p_release(void *arg, unsigned dir, void *ctx, const uint8_t *d, size_t len,
                      uint64_t now)
{
    struct path *p = arg;
    p->released++;
    if (dir == NETEM_OUT)
        quic_client_emit(ctx, d, len);
    else
        (void)quic_client_deliver(ctx, d, len, now);
}

static struct echo_server *es;
static struct echo_conn ec;

/* Steps the client and the path until pred holds or timeout_ms passed. */
static bool drive(struct roost_client *cl, struct path *p, bool (*pred)(void), int timeout_ms)
{
    uint64_t end = echo_now_ms() + (uint64_t)timeout_ms;
    while (!pred()) {
        if (echo_now_ms() >= end)
            return pred();
        if (p != NULL)
            netem_run(p->nm, roost_client_now());
        roost_client_step(cl, 1);
    }
    return true;
}

static bool opened(void)
{
    return ec.opened > 0;
}

static uint64_t want;
static bool echoed(void)
{
    return ec.dgram_in >= want;
}

static void start(struct roost_client **cl, struct path *p, uint64_t rtt)
{
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    assert_int_equal(echo_client_new(cl, false, NULL), 0);
    if (p != NULL) {
        memset(p, 0, sizeof(*p));
        struct netem_config nc = {.rtt_ns = rtt, .seed = 1};
        assert_int_equal(netem_new(&p->nm, &nc, p_release, p), 0);
        quic_client_set_path(client_quic(*cl), &hooks, p);
    }
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(*cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
}

/* Opens, echoes 20 DATAGRAMs, returns the smoothed RTT. */
static uint64_t echo_rtt(struct roost_client *cl, struct path *p)
{
    assert_true(drive(cl, p, opened, 10000));
    for (int i = 0; i < 20; i++) {
        const uint8_t d[32] = {(uint8_t)i};
        assert_int_equal(roost_conn_send_datagram(ec.c, d, sizeof(d)), 0);
        want = (uint64_t)i + 1;
        assert_true(drive(cl, p, echoed, 10000));
    }
    struct roost_conn_stats st;
    roost_conn_stats(ec.c, &st);
    return st.min_rtt_ns;
}

static void test_path_rtt(void **state)
{
    (void)state;
    struct roost_client *cl;
    struct path p;
    start(&cl, &p, RTT);
    uint64_t t0 = echo_now_ms();
    uint64_t rtt = echo_rtt(cl, &p);
    /* 20 sequential echoes of one round trip each, plus the handshake. */
    assert_true(echo_now_ms() - t0 >= 21 * RTT / MS);
    assert_true(rtt >= RTT);
    assert_true(p.out > 20 && p.in > 20);
    struct netem_stats ns;
    netem_stats(p.nm, &ns);
    assert_int_equal(ns.queued[NETEM_OUT], p.out);
    assert_int_equal(ns.queued[NETEM_IN], p.in);
    roost_client_del(cl);
    assert_int_equal(p.gone, 1);
    netem_del(p.nm);
    echo_server_stop(es);
}

/* The control: the same exchange on bare loopback is far faster. */
static void test_no_path(void **state)
{
    (void)state;
    struct roost_client *cl;
    start(&cl, NULL, 0);
    assert_true(echo_rtt(cl, NULL) < RTT / 4);
    roost_client_del(cl);
    echo_server_stop(es);
}

static bool held(void)
{
    return ec.opened > 0 && ec.dgram_in == 0;
}

static void test_gone_forgets(void **state)
{
    (void)state;
    struct roost_client *cl;
    struct path p;
    start(&cl, &p, RTT);
    assert_true(drive(cl, &p, opened, 10000));
    const uint8_t d[32] = {1};
    assert_int_equal(roost_conn_send_datagram(ec.c, d, sizeof(d)), 0);
    /* Let the datagram leave into the path (the step writes it), not its
     * echo come back. */
    assert_true(drive(cl, &p, held, 10000));
    roost_client_step(cl, 0);
    assert_true(netem_held(p.nm) > 0);
    uint64_t released = p.released;
    roost_conn_del(ec.c);
    assert_int_equal(p.gone, 1);
    assert_int_equal(netem_held(p.nm), 0);
    netem_run(p.nm, roost_client_now() + 10 * RTT);
    assert_int_equal(p.released, released);
    roost_client_del(cl);
    netem_del(p.nm);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_rtt),
        cmocka_unit_test(test_no_path),
        cmocka_unit_test(test_gone_forgets),
    };
    return cmocka_run_group_tests_name("quic_path", tests, NULL, NULL);
}
