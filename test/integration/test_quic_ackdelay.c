/* Delayed ACKs (issue 13): when the delayed-ACK timer fires (ngtcp2 0.12
 * times it at srtt/8, microseconds on loopback) the ACK waits, up to the
 * max_ack_delay this end advertised, for a packet that goes anyway and
 * rides along with it; if none goes, it is sent alone by the deadline.
 * A client sending a datagram every millisecond to the echo app then
 * sends almost no ACK-only packets (one per echo before); the last ACK
 * still arrives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "quic/quic_int.h"
#include "../common/echo_app.h"

#define ROUNDS 20

static struct echo_conn ec;
static struct echo_server *g_es;
static uint64_t want;

static bool opened(void *arg)
{
    (void)arg;
    return ec.opened > 0;
}

static bool got_dgrams(void *arg)
{
    (void)arg;
    return ec.dgram_in >= want;
}

static struct quic_stats stats(void)
{
    struct quic_stats st;
    echo_server_stats(g_es, &st);
    return st;
}

/* The client's loop runs (timers, reads) until the time in *arg (ms). */
static bool until_ms(void *arg)
{
    return echo_now_ms() >= *(const uint64_t *)arg;
}

static bool ack_only_more(void *arg)
{
    return stats().ack_only_in > *(const uint64_t *)arg;
}

static void test_acks_ride_along(void **state)
{
    (void)state;
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&g_es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(g_es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, 10000));
    const uint8_t d[] = {1, 2, 3};
    /* Warm up: an echo round trip and 50 ms for the handshake's leftovers
     * (HANDSHAKE_DONE, its ACK, new connection IDs). */
    want = 1;
    assert_int_equal(roost_conn_send_datagram(ec.c, d, sizeof(d)), 0);
    assert_true(echo_client_until(cl, got_dgrams, NULL, 10000));
    uint64_t t = echo_now_ms() + 50;
    (void)echo_client_until(cl, until_ms, &t, 1000);
    struct quic_stats a = stats();
    for (unsigned i = 0; i < ROUNDS; i++) {
        want = ec.dgram_in + 1;
        assert_int_equal(roost_conn_send_datagram(ec.c, d, sizeof(d)), 0);
        assert_true(echo_client_until(cl, got_dgrams, NULL, 10000));
        t = echo_now_ms() + 1;
        (void)echo_client_until(cl, until_ms, &t, 1000);
    }
    struct quic_stats b = stats();
    uint64_t acks = b.ack_only_in - a.ack_only_in;
    uint64_t pkts = b.pkts_written - a.pkts_written;
    print_message("%d echoes: client ACK-only packets %llu, server packets %llu (write calls "
                  "%llu, empty %llu, datagrams %llu)\n",
                  ROUNDS, (unsigned long long)acks, (unsigned long long)pkts,
                  (unsigned long long)(b.write_calls - a.write_calls),
                  (unsigned long long)(b.write_empty - a.write_empty),
                  (unsigned long long)(b.dgram_out - a.dgram_out));
    /* An ACK-only packet per echo from the client without the delay
     * (measured: 19 of 20); slack for a loaded machine (a stalled loop
     * lets a deadline pass). */
    assert_true(acks <= ROUNDS / 2);
    /* Nothing more to ride on: the client's last ACK goes alone, by its
     * deadline (max_ack_delay, 25 ms). */
    uint64_t before = b.ack_only_in;
    assert_true(echo_client_until(cl, ack_only_more, &before, 10000));
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acks_ride_along),
    };
    return cmocka_run_group_tests_name("quic_ackdelay", tests, NULL, NULL);
}
