/* Roost's pacer (issue 13 item 4; lib/quic/connwrite.c pace_set), on a
 * client connection whose received packets wait DELAY_NS on their way in
 * (so its smoothed RTT is about that): after a write of B bytes the next
 * send time is B / (cwnd / srtt x 1.25) later, ngtcp2 0.12's rule. When
 * nothing waits for it the timer is not armed for it (ngtcp2's own pacer
 * armed it: a wake-up to write nothing, or a handle_expiry round after
 * every write to clear it); a datagram queued before it waits (counted in
 * pace_holds), the timer is armed for it, and it goes at its send time,
 * never before it less the slack. Writes of datagrams only keep the
 * expiry last read from ngtcp2 (connwrite.c expiry_after_dgrams). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "client/client_int.h"
#include "quic/client.h"
#include "quic/quic_int.h"
#include "../common/caseguard.h"
#include "../common/quicpath.h"

#define DELAY_NS (50ULL * 1000000ULL)
/* Datagrams of DGRAM_SIZE bytes: their packets are DGRAM_PKT_MIN..
 * DGRAM_PKT_MAX - 1 bytes (ACK-only packets are smaller, PMTUD probes
 * larger). */
#define DGRAM_SIZE 700
#define DGRAM_PKT_MIN 700
#define DGRAM_PKT_MAX 1200

static struct qp q;

/* The client's path: what it sends goes out at once (bytes and datagram
 * packets counted, with the client's time of the last one); what it
 * receives waits DELAY_NS. */
static struct qp_path path = {
    .delay_ns = DELAY_NS, .count_min = DGRAM_PKT_MIN, .count_max = DGRAM_PKT_MAX};

static bool dgram_pkts_over(void *arg)
{
    return path.counted > *(const uint64_t *)arg;
}

static uint64_t pace_holds(const struct quic_conn *c)
{
    return atomic_load_explicit(&c->ep->st[QS(pace_holds)], memory_order_relaxed);
}

static uint64_t expiry_kept(const struct quic_conn *c)
{
    return atomic_load_explicit(&c->ep->st[QS(expiry_kept)], memory_order_relaxed);
}

/* An echo server and a client connected to it on the delayed path, warmed
 * up: the RTT estimate is about DELAY_NS. Returns the client; path.c is its
 * connection. */
static struct roost_client *connect_delayed(void)
{
    struct quic_shared_config qc = {.n_workers = 1};
    qp_start(&q, &qc, &path, 0);
    struct roost_client *cl = q.cl;
    struct quic_conn *c = path.c;
    assert_non_null(c);
    /* The age limit out of the way: a loaded machine may stall this loop
     * past the default 40 ms, and this test follows one datagram. */
    c->ep->dgram_max_age_ns = 60ULL * 1000000000ULL;
    /* Warm-up: echoes one at a time (the RTT estimate comes to about
     * DELAY_NS), then 200 ms for the handshake's leftovers. */
    uint8_t d[DGRAM_SIZE];
    memset(d, 7, sizeof(d));
    for (int i = 0; i < 5; i++) {
        q.want = q.ec.dgram_in + 1;
        assert_int_equal(roost_conn_send_datagram(q.ec.c, d, 3), 0);
        assert_true(qp_until(&q, qp_got_dgrams, &q, QP_WAIT_MS));
    }
    uint64_t t = echo_now_ms() + 200;
    (void)qp_until(&q, qp_until_ms, &t, 1000);
    return cl;
}

static void test_paced_write(void **state)
{
    (void)state;
    struct roost_client *cl = connect_delayed();
    struct quic_conn *c = path.c;
    uint8_t d[DGRAM_SIZE];
    memset(d, 7, sizeof(d));
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c->conn, &cs);
    assert_true(cs.smoothed_rtt >= DELAY_NS / 2);
    assert_true(cs.pacing_rate <= 0); /* CUBIC: cwnd / srtt x 1.25 */
    /* A burst whose time at the pacing rate is at least 5 ms (five times
     * the slack), within the congestion window. */
    double rate = (double)cs.cwnd / (double)cs.smoothed_rtt * 1.25; /* bytes/ns */
    unsigned n = (unsigned)(5.0 * QUIC_PACE_SLACK_NS * rate / DGRAM_SIZE) + 1;
    print_message("srtt %.1f ms, cwnd %llu, in flight %llu: %u datagrams of %u bytes\n",
                  (double)cs.smoothed_rtt / 1e6, (unsigned long long)cs.cwnd,
                  (unsigned long long)cs.bytes_in_flight, n, DGRAM_SIZE);
    assert_true(cs.bytes_in_flight + (uint64_t)n * (DGRAM_SIZE + 64) <= cs.cwnd);
    uint64_t now = roost_client_now();
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
    uint64_t b0 = path.bytes_out;
    assert_int_equal(roost_client_process(cl, now), 0);
    uint64_t sent = path.bytes_out - b0;
    assert_true(sent >= (uint64_t)n * DGRAM_SIZE);
    assert_int_equal(c->dq_n, 0);
    /* The send time, by ngtcp2's rule: now + sent / rate. */
    ngtcp2_conn_get_conn_stat(c->conn, &cs);
    rate = (double)cs.cwnd / (double)cs.smoothed_rtt * 1.25;
    uint64_t at = now + (uint64_t)((double)sent / rate);
    print_message("%llu bytes sent: send time %.2f ms on, timer %.2f ms on\n",
                  (unsigned long long)sent, (double)(c->pace_ts - now) / 1e6,
                  (double)(c->armed_exp - now) / 1e6);
    assert_true(at > now + QUIC_PACE_SLACK_NS);
    assert_true(c->pace_ts + 1000 >= at && c->pace_ts <= at + 1000);
    /* Nothing waits: the timer is not armed for the pacer (ngtcp2 0.12's
     * own pacer armed it at exactly that time). */
    assert_true(c->armed_exp > c->pace_ts);
    /* One more datagram at the same time: it waits, the timer is armed
     * for the send time, the write is counted held. */
    uint64_t pace_ts = c->pace_ts, h0 = pace_holds(c), p0 = path.counted;
    assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
    assert_int_equal(roost_client_process(cl, now), 0);
    assert_int_equal(path.counted, p0);
    assert_int_equal(c->dq_n, 1);
    assert_int_equal(c->armed_exp, pace_ts);
    assert_int_equal(pace_holds(c), h0 + 1);
    /* Then it goes, not before its send time less the slack. */
    assert_true(qp_until(&q, dgram_pkts_over, &p0, QP_WAIT_MS));
    print_message("the held datagram went %.2f ms after the burst (send time %.2f ms)\n",
                  (double)(path.counted_at - now) / 1e6, (double)(pace_ts - now) / 1e6);
    assert_true(path.counted_at + QUIC_PACE_SLACK_NS >= pace_ts);
    assert_int_equal(c->dq_n, 0);
    qp_stop(&q, true);
}

/* Writes of datagrams only with no read between them: each keeps the
 * expiry last read from ngtcp2 (the idle timeout, 30 s off) and does not
 * re-arm the timer, which is never later than ngtcp2's expiry; after a
 * read the next write reads it again. */
static void test_expiry_kept(void **state)
{
    (void)state;
    struct roost_client *cl = connect_delayed();
    struct quic_conn *c = path.c;
    const uint8_t d[] = {1, 2, 3}; /* small: the pacer never holds them */
    /* Until ngtcp2's next expiry is the idle timeout (PMTUD probing, a
     * delayed ACK or a loss timer are sooner): a write, then 100 ms. */
    uint64_t end = echo_now_ms() + QP_WAIT_MS;
    for (;;) {
        assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
        assert_int_equal(roost_client_process(cl, roost_client_now()), 0);
        if (c->ng_exp_ok && c->ng_exp >= roost_client_now() + QUIC_EXP_LAZY_NS)
            break;
        assert_true(echo_now_ms() < end);
        uint64_t t = echo_now_ms() + 100;
        (void)qp_until(&q, qp_until_ms, &t, 1000);
    }
    uint64_t armed = c->armed_exp, k0 = expiry_kept(c);
    print_message("ngtcp2's expiry %.1f ms on, the timer %.1f ms on\n",
                  (double)(c->ng_exp - roost_client_now()) / 1e6,
                  (double)(armed - roost_client_now()) / 1e6);
    /* What the client reads now waits DELAY_NS on the path: these writes
     * follow no read. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
        assert_int_equal(roost_client_process(cl, roost_client_now()), 0);
        assert_int_equal(expiry_kept(c), k0 + 1 + (uint64_t)i);
        assert_int_equal(c->armed_exp, armed);
        assert_true(c->armed_exp <= ngtcp2_conn_get_expiry(c->conn));
    }
    /* A read (one packet the path held), then a write: the expiry is read
     * again. */
    end = echo_now_ms() + QP_WAIT_MS;
    while (path.n == 0 && echo_now_ms() < end)
        roost_client_step(cl, 1); /* reads into the held queue only */
    assert_true(path.n > 0);
    assert_true(qp_hand_in_one(&q));
    assert_false(c->ng_exp_ok);
    uint64_t k1 = expiry_kept(c);
    assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
    assert_int_equal(roost_client_process(cl, roost_client_now()), 0);
    assert_int_equal(expiry_kept(c), k1);
    assert_true(c->ng_exp_ok);
    assert_true(c->armed_exp <= ngtcp2_conn_get_expiry(c->conn));
    qp_stop(&q, true);
}

/* A datagram queued while the loop is busy (no write until long after
 * it was queued; the endpoint's cached time at the queueing is that old
 * by then too) and then held by the pacer ages from the write that held
 * it, not from its queueing (connwrite.c dq_held_since): with an age limit
 * of half the pacer's interval, it goes at the send time instead of being
 * dropped as held back too long. Explicit times: queued right after the
 * burst, held by a write 2 ms before the send time, written at it. Under
 * load, the first datagram after a handshake, held a moment by ngtcp2's
 * handshake pacer, aged out so (test_quic_ackdelay's warm-up echo). */
static void test_hold_ages_from_write(void **state)
{
    (void)state;
    struct roost_client *cl = connect_delayed();
    struct quic_conn *c = path.c;
    uint8_t d[DGRAM_SIZE];
    memset(d, 7, sizeof(d));
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c->conn, &cs);
    /* A burst whose time at the pacing rate is at least 10 ms. */
    double rate = (double)cs.cwnd / (double)cs.smoothed_rtt * 1.25; /* bytes/ns */
    unsigned n = (unsigned)(10.0 * QUIC_PACE_SLACK_NS * rate / DGRAM_SIZE) + 1;
    assert_true(cs.bytes_in_flight + (uint64_t)n * (DGRAM_SIZE + 64) <= cs.cwnd);
    uint64_t now = roost_client_now();
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
    assert_int_equal(roost_client_process(cl, now), 0);
    assert_int_equal(c->dq_n, 0);
    uint64_t pace_ts = c->pace_ts, iv = pace_ts - now;
    print_message("pacer interval %.2f ms\n", (double)iv / 1e6);
    assert_true(pace_ts > now && iv >= 4 * QUIC_PACE_SLACK_NS);
    c->ep->dgram_max_age_ns = iv / 2;
    uint64_t out0 = c->cs.dgram_out, aged0 = c->cs.dgram_drop_cwnd;
    assert_int_equal(roost_conn_send_datagram(q.ec.c, d, sizeof(d)), 0);
    /* The first write after it: held by the pacer (queued iv - 2 ms ago). */
    assert_int_equal(roost_client_process(cl, pace_ts - 2 * QUIC_PACE_SLACK_NS), 0);
    assert_int_equal(c->dq_n, 1);
    assert_true(c->dq_held);
    /* At the send time it goes: held 2 ms, under the limit (iv / 2); it
     * was queued iv ago, over it. */
    assert_int_equal(roost_client_process(cl, pace_ts), 0);
    assert_int_equal(c->cs.dgram_drop_cwnd, aged0);
    assert_int_equal(c->cs.dgram_out, out0 + 1);
    assert_int_equal(c->dq_n, 0);
    qp_stop(&q, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASEGUARD_TEST(test_paced_write),
        CASEGUARD_TEST(test_expiry_kept),
        CASEGUARD_TEST(test_hold_ages_from_write),
    };
    return cmocka_run_group_tests_name("quic_pace", tests, NULL, NULL);
}
