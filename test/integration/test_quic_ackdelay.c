/* Delayed ACKs (issue 13): when the delayed-ACK timer fires (ngtcp2 0.12
 * times it at srtt/8, microseconds on loopback) the ACK waits, up to the
 * max_ack_delay this end advertised, for a packet that goes anyway and
 * rides along with it; if none goes, it is sent alone by the deadline.
 * A client sending a datagram every millisecond to the echo app then
 * sends almost no ACK-only packets (one per echo before); the last ACK
 * still arrives. The server settles the delayed-ACK timer of each packet
 * it reads at the write that answers it, without a wake-up for it.
 *
 * The ACK threshold (roost_client_set_ack_thresh, issue 13): a burst of
 * BURST datagrams, one per packet, read one at a time, draws an ACK after
 * every second packet by default and after every tenth with the media
 * receiver's threshold; the ACK owed for packets below the threshold still
 * goes by its deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/buf.h"
#include "client/client_int.h"
#include "quic/client.h"
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
    /* The server acknowledges every second datagram at once (ack_thresh
     * 2: the ACK rides with that echo); the delayed-ACK timer of each other
     * one is settled at the write that echoes it (settle_ack), not by a
     * loop wake-up: a timer fired for each of those before (measured: 10
     * of 20 echoes); slack for a loaded machine (a stalled loop lets a
     * deadline pass). */
    uint64_t fires = b.timer_fires - a.timer_fires;
    uint64_t settled = b.acks_settled - a.acks_settled;
    print_message("server timers fired %llu, delayed ACKs settled at a write %llu\n",
                  (unsigned long long)fires, (unsigned long long)settled);
    assert_true(settled >= ROUNDS / 4);
    assert_true(fires <= ROUNDS / 4);
    /* Nothing more to ride on: the client's last ACK goes alone, by its
     * deadline (max_ack_delay, 25 ms). */
    uint64_t before = b.ack_only_in;
    assert_true(echo_client_until(cl, ack_only_more, &before, 10000));
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
}

/* --------------------------------------------- the ACK threshold */

#define BURST 10
#define BURST_SIZE 1000 /* one datagram per packet */
#define ACK_MAX_LEN 100 /* an ACK-only packet; PMTU probes are larger */
#define HELD_MAX 64

/* The client's path (quic/client.h): what it sends goes out at once (small
 * packets counted); what it receives is held until the test hands it in,
 * one packet at a time. */
static struct {
    struct quic_conn *c;
    uint8_t data[HELD_MAX][1500];
    size_t len[HELD_MAX];
    unsigned n;
    unsigned small_out;
    size_t last_len;
} path;

static void path_out(void *arg, struct quic_conn *c, const uint8_t *data, size_t len)
{
    (void)arg;
    if (len < ACK_MAX_LEN)
        path.small_out++, path.last_len = len;
    quic_client_emit(c, data, len);
}

static void path_in(void *arg, struct quic_conn *c, const uint8_t *data, size_t len)
{
    (void)arg;
    path.c = c;
    if (path.n < HELD_MAX && len <= sizeof(path.data[0])) {
        memcpy(path.data[path.n], data, len);
        path.len[path.n++] = len;
    }
}

static void path_gone(void *arg, struct quic_conn *c)
{
    (void)arg;
    (void)c;
    path.n = 0;
}

static const struct quic_client_path held_path = {path_out, path_in, path_gone};

/* Hands in (and processes, so that what is due is written) the held
 * packets, one at a time. */
static void hand_in(struct roost_client *cl)
{
    for (unsigned i = 0; i < path.n; i++) {
        (void)quic_client_deliver(path.c, path.data[i], path.len[i], roost_client_now());
        (void)roost_client_process(cl, roost_client_now());
    }
    path.n = 0;
}

/* Steps the client, handing in what it receives, until pred holds. */
static bool pump(struct roost_client *cl, bool (*pred)(void *), void *arg, int timeout_ms)
{
    uint64_t end = echo_now_ms() + (uint64_t)timeout_ms;
    while (!pred(arg) && echo_now_ms() < end) {
        roost_client_step(cl, 2);
        hand_in(cl);
    }
    return pred(arg);
}

/* Runs one burst with the client's ack_thresh (0: default); returns the
 * ACK-only packets the client sent while the burst was read, and in
 * *slack_ms how long the reading took (deadline ACKs may have gone). */
static unsigned burst_acks(unsigned ack_thresh, uint64_t *slack_ms)
{
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&g_es, &qc), 0);
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &echo_client_cbs, NULL), 0);
    assert_int_equal(roost_client_set_ack_thresh(cl, ack_thresh), 0);
    memset(&path, 0, sizeof(path));
    quic_client_set_path(client_quic(cl), &held_path, NULL);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(g_es), &ec, &ec.c), 0);
    assert_true(pump(cl, opened, NULL, 10000));
    /* A raised threshold comes with a longer advertised max_ack_delay, so
     * a talking client's ACK can wait for its own next frame. */
    uint64_t mad = ack_thresh > QUIC_DEFAULT_ACK_THRESH ? QUIC_CLIENT_MEDIA_MAX_ACK_DELAY_NS
                                                        : 25ULL * 1000000ULL;
    assert_int_equal(ngtcp2_conn_get_local_transport_params(path.c->conn)->max_ack_delay, mad);
    /* Warm up: an echo and 100 ms for the handshake's leftovers. */
    want = 1;
    const uint8_t d[] = {1, 2, 3};
    assert_int_equal(roost_conn_send_datagram(ec.c, d, sizeof(d)), 0);
    assert_true(pump(cl, got_dgrams, NULL, 10000));
    uint64_t t = echo_now_ms() + 100;
    (void)pump(cl, until_ms, &t, 1000);
    /* The burst: held until all of it is here, then read one by one. */
    uint8_t cmd[ECHO_BURST_LEN + 4] = {0};
    memcpy(cmd, ECHO_BURST_CMD, ECHO_BURST_LEN);
    cmd[ECHO_BURST_LEN + 1] = BURST;
    cmd[ECHO_BURST_LEN + 2] = BURST_SIZE >> 8;
    cmd[ECHO_BURST_LEN + 3] = BURST_SIZE & 0xff;
    assert_int_equal(roost_conn_send_control(ec.c, cmd, sizeof(cmd)), 0);
    (void)roost_client_process(cl, roost_client_now());
    /* Read one at a time, as each arrives, until every datagram was read
     * (the first one carries the ACK of the command: no probe for it). */
    uint64_t target = ec.dgram_in + BURST;
    uint64_t end = echo_now_ms() + 10000;
    unsigned before = path.small_out;
    uint64_t t0 = echo_now_ms();
    unsigned next = 0;
    while (ec.dgram_in < target && echo_now_ms() < end) {
        if (next == path.n) {
            path.n = next = 0;
            roost_client_step(cl, 2); /* reads more into the held queue */
            continue;
        }
        (void)quic_client_deliver(path.c, path.data[next], path.len[next], roost_client_now());
        next++;
        (void)roost_client_process(cl, roost_client_now());
    }
    assert_true(ec.dgram_in >= target);
    path.n = 0;
    *slack_ms = echo_now_ms() - t0;
    unsigned acks = path.small_out - before;
    print_message("ack_thresh %u: %u ACK-only packets for %u packets read (in %llu ms; last %zu "
                  "bytes)\n",
                  ack_thresh, acks, BURST, (unsigned long long)*slack_ms, path.last_len);
    if (acks == 0) {
        /* Owed but below the threshold: it goes by the deadline, inside the
         * max_ack_delay the client advertised (40 ms with a raised
         * threshold), late by no more than the longest stall of this loop
         * (the slack a loaded machine gets: a timer cannot fire while its
         * loop is not running), and not before max_ack_delay - 10 ms after
         * the first packet read, less a millisecond of timer granularity:
         * with ngtcp2's 25 ms it went after 15 ms, before a talking client's
         * next 20 ms frame. */
        unsigned b = path.small_out;
        uint64_t t_read = roost_client_now(), gap = 0, last = t_read;
        while (path.small_out == b && echo_now_ms() < end) {
            roost_client_step(cl, 1);
            hand_in(cl);
            uint64_t tn = roost_client_now();
            if (tn - last > gap)
                gap = tn - last;
            last = tn;
        }
        assert_true(path.small_out > b);
        uint64_t took = last - t_read;
        print_message("the owed ACK went %llu us after the last read (longest loop gap %llu us)\n",
                      (unsigned long long)(took / 1000), (unsigned long long)(gap / 1000));
        assert_true(took <= mad + gap + 1000000ULL);
        /* Measured from the end of the reading; the first packet read,
         * which started the delay, came *slack_ms earlier. */
        assert_true(took + *slack_ms * 1000000ULL + 1000000ULL >= mad - QUIC_ACK_MARGIN_NS);
    }
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
    return acks;
}

static void test_ack_thresh(void **state)
{
    (void)state;
    uint64_t slack;
    /* Default: every second packet (RFC 9000 §13.2.2). */
    unsigned acks = burst_acks(0, &slack);
    assert_true(acks >= BURST / 2 - 1);
    /* The media receiver's threshold: one at the tenth packet, plus any
     * that went by the deadline while a loaded machine stalled the loop
     * (at most one per ~15 ms), plus one other small packet the client may
     * send meanwhile (a probe of its command, seen once in tens of runs on
     * a loaded machine). */
    unsigned acks2 = acks;
    acks = burst_acks(QUIC_CLIENT_ACK_THRESH_MEDIA, &slack);
    assert_true(acks >= 1);
    assert_true(acks <= BURST / QUIC_CLIENT_ACK_THRESH_MEDIA + 1 + slack / 10);
    assert_true(acks + 2 < acks2);
    /* Below the threshold: no ACK at once; burst_acks checks that it
     * still goes by the deadline. */
    acks = burst_acks(BURST + 1, &slack);
    assert_true(acks <= 1 + slack / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acks_ride_along),
        cmocka_unit_test(test_ack_thresh),
    };
    return cmocka_run_group_tests_name("quic_ackdelay", tests, NULL, NULL);
}
