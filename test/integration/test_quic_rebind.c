/* NAT rebinding: the client's UDP source port changes mid-connection.
 *
 * Without steering (no_steering), SO_REUSEPORT's 4-tuple hash may drop its
 * packets on another worker, which hands them to the owner (the CID's worker
 * byte) through the ring; the connection survives and keeps exchanging
 * control messages and datagrams. That test rebinds until at least one
 * packet was forwarded.
 *
 * With steering (the default), the kernel picks the owner's socket by the
 * CID: forty rebinds on four workers forward nothing (with the hash, the
 * chance that forty new 4-tuples all land on the owner is 0.75^40). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "../common/echo_app.h"

/* Deadline of a condition (never a timing bound): a loaded machine only
 * makes the echo come later. A lost datagram is sent again every
 * RESEND_MS while waiting. */
#define WAIT_MS 30000
#define RESEND_MS 100

static struct echo_conn ec;
static uint64_t want_ctl, want_dg;

static bool opened(void *arg)
{
    (void)arg;
    return ec.opened > 0;
}

static bool echoed(void *arg)
{
    (void)arg;
    return ec.ctl_in >= want_ctl && ec.dgram_in >= want_dg;
}

static void exchange(struct roost_client *cl)
{
    want_ctl = ec.ctl_in + 1;
    want_dg = ec.dgram_in + 1;
    const uint8_t body[] = "ping";
    assert_int_equal(roost_conn_send_control(ec.c, body, sizeof(body)), 0);
    uint8_t dg[80] = {7};
    uint64_t t0 = echo_now_ms();
    while (!echoed(NULL) && echo_now_ms() - t0 < WAIT_MS) {
        if (ec.dgram_in < want_dg)
            assert_int_equal(roost_conn_send_datagram(ec.c, dg, sizeof(dg)), 0);
        echo_client_until(cl, echoed, NULL, RESEND_MS);
    }
    assert_true(echoed(NULL));
}

static void test_rebind_forwarded(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 4, .no_steering = true};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, WAIT_MS));
    exchange(cl);
    struct quic_stats st;
    int rebinds = 0;
    for (; rebinds < 40; rebinds++) {
        uint16_t old = roost_conn_local_port(ec.c);
        assert_int_equal(roost_conn_rebind(ec.c), 0);
        assert_int_not_equal(roost_conn_local_port(ec.c), old);
        exchange(cl);
        echo_server_stats(es, &st);
        if (st.fwd_in > 0)
            break;
    }
    printf("# rebinds=%d fwd_out=%llu fwd_in=%llu\n", rebinds + 1, (unsigned long long)st.fwd_out,
           (unsigned long long)st.fwd_in);
    assert_true(st.fwd_out > 0);
    assert_true(st.fwd_in > 0);
    /* Still the same connection, still working after more traffic. */
    exchange(cl);
    exchange(cl);
    assert_int_equal(ec.closed, 0);
    echo_server_stats(es, &st);
    assert_int_equal(st.handshakes_ok, 1);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.reset_sent, 0);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_rebind_steered(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 4};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    assert_true(echo_server_steering(es));
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, 10000));
    exchange(cl);
    struct quic_stats st;
    for (int i = 0; i < 40; i++) {
        uint16_t old = roost_conn_local_port(ec.c);
        assert_int_equal(roost_conn_rebind(ec.c), 0);
        assert_int_not_equal(roost_conn_local_port(ec.c), old);
        exchange(cl);
    }
    echo_server_stats(es, &st);
    printf("# steered: rebinds=40 fwd_out=%llu fwd_in=%llu pkts_in=%llu\n",
           (unsigned long long)st.fwd_out, (unsigned long long)st.fwd_in,
           (unsigned long long)st.pkts_in);
    assert_int_equal(st.fwd_out, 0);
    assert_int_equal(st.fwd_in, 0);
    assert_int_equal(ec.closed, 0);
    assert_int_equal(st.handshakes_ok, 1);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.reset_sent, 0);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebind_forwarded),
        cmocka_unit_test(test_rebind_steered),
    };
    return cmocka_run_group_tests_name("quic_rebind", tests, NULL, NULL);
}
