/* Receive budgets in the server's dispatch (lib/quic/budget.h): a
 * connection sending above its packet budget is closed with RATE_LIMITED
 * (0x11) and counted, while another connection at a media-like rate on the
 * same server is unaffected; a source address above its budget has its
 * packets dropped (counted) before they reach a connection. Deadlines are
 * generous and every wait is on a condition, never a sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "proto/errcode.h"
#include "../common/echo_app.h"

/* The flooder is congestion-controlled like any QUIC sender (a loaded
 * ASan relay acks slowly), so the budget is low enough that even a slow
 * flooder exceeds it; the paced sender stays 10x below it. */
#define CONN_RATE 100          /* packets/s */
#define CONN_BYTES (64 * 1024) /* bytes/s */
#define PACED_PPS 10           /* the "legit" sender: packets/s, of PACED_SIZE */
#define PACED_SIZE 500
#define FLOOD_SIZE 1000
#define PACED_MS 2000 /* how long it sends */
#define WAIT_MS 30000 /* a deadline for conditions, not a timing bound */

static struct echo_server *g_es;
static struct echo_conn ec[2];

static bool both_open(void *arg)
{
    (void)arg;
    return echo_conns_open(ec, 2);
}

static bool opened0(void *arg)
{
    (void)arg;
    return ec[0].opened > 0;
}

static void test_flooder_closed_paced_unaffected(void **state)
{
    (void)state;
    struct quic_shared_config qc = {
        .n_workers = 1, .conn_pkt_rate = CONN_RATE, .conn_byte_rate = CONN_BYTES};
    assert_int_equal(echo_server_start(&g_es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(ec, 0, sizeof(ec));
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            roost_client_connect(cl, "127.0.0.1", echo_server_port(g_es), &ec[i], &ec[i].c), 0);
    assert_true(echo_client_until(cl, both_open, NULL, WAIT_MS));

    /* ec[0] sends PACED_PPS datagrams a second by the wall clock; ec[1]
     * sends as fast as its queue takes them until it is closed. */
    uint8_t d[FLOOD_SIZE];
    memset(d, 0xab, sizeof(d));
    uint64_t t0 = echo_now_ms(), paced_sent = 0;
    const uint64_t paced_total = (uint64_t)PACED_PPS * PACED_MS / 1000;
    for (;;) {
        uint64_t el = echo_now_ms() - t0;
        uint64_t due = el >= PACED_MS ? paced_total : (uint64_t)PACED_PPS * el / 1000;
        for (; paced_sent < due; paced_sent++)
            assert_int_equal(roost_conn_send_datagram(ec[0].c, d, PACED_SIZE), 0);
        if (!ec[1].closed)
            for (int i = 0; i < 64; i++)
                (void)roost_conn_send_datagram(ec[1].c, d, FLOOD_SIZE);
        roost_client_step(cl, ec[1].closed ? 5 : 0);
        if (ec[1].closed && paced_sent == paced_total)
            break;
        assert_true(el < WAIT_MS);
    }
    /* The flooder: closed by the relay with RATE_LIMITED. */
    assert_int_equal(ec[1].closed, 1);
    assert_true(ec[1].info.remote);
    assert_true(ec[1].info.app);
    assert_int_equal(ec[1].info.code, PROTO_ERR_RATE_LIMITED);
    /* The paced one: open, and its datagrams echoed. */
    assert_int_equal(ec[0].closed, 0);
    uint64_t t1 = echo_now_ms();
    while (ec[0].dgram_in < paced_total * 9 / 10 && echo_now_ms() - t1 < WAIT_MS)
        roost_client_step(cl, 10);
    assert_true(ec[0].dgram_in >= paced_total * 9 / 10); /* loopback: only cwnd may drop */
    struct quic_stats st;
    echo_server_stats(g_es, &st);
    assert_int_equal(st.budget_closed, 1);
    assert_int_equal(st.budget_dropped_addr, 0);
    assert_int_equal(atomic_load(&g_es->closes), 1);
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
}

static void test_addr_over_budget_dropped(void **state)
{
    (void)state;
    /* 100 packets/s from one address: the handshake fits its burst. */
    struct quic_shared_config qc = {.n_workers = 1, .addr_pkt_rate = 100};
    assert_int_equal(echo_server_start(&g_es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(ec, 0, sizeof(ec));
    assert_int_equal(
        roost_client_connect(cl, "127.0.0.1", echo_server_port(g_es), &ec[0], &ec[0].c), 0);
    assert_true(echo_client_until(cl, opened0, NULL, WAIT_MS));
    uint8_t d[64] = {0};
    struct quic_stats st;
    uint64_t t0 = echo_now_ms();
    do {
        for (int i = 0; i < 64; i++)
            (void)roost_conn_send_datagram(ec[0].c, d, sizeof(d));
        roost_client_step(cl, 0);
        echo_server_stats(g_es, &st);
        assert_true(echo_now_ms() - t0 < WAIT_MS);
    } while (st.budget_dropped_addr == 0);
    /* Dropped before any connection saw them: the connection is not
     * closed for it (no connection budget here). */
    assert_int_equal(st.budget_closed, 0);
    assert_int_equal(ec[0].closed, 0);
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flooder_closed_paced_unaffected),
        cmocka_unit_test(test_addr_over_budget_dropped),
    };
    return cmocka_run_group_tests_name("quic_budget", tests, NULL, NULL);
}
