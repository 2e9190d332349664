/* The bounded control write queue: bytes stay queued until acknowledged, so
 * a client that keeps reading can receive far more than the bound over
 * time; a client that stops reading (drops everything it receives) hits
 * the bound and is closed with TOO_SLOW through the one leave path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "../common/caseguard.h"
#include "../common/quicpath.h"

#define BOUND (ECHO_BLAST_COUNT * (ECHO_BLAST_SIZE + 2) + 20000)
#define BLASTS_MAX 20 /* blast requests a stalled reader sends: 20x the bound */

static struct qp q;

static bool server_closed(void *arg)
{
    (void)arg;
    return atomic_load(&q.es->closes) == 1;
}

static struct roost_client *setup(void)
{
    struct quic_shared_config qc = {.n_workers = 1, .control_queue_max = BOUND};
    qp_start(&q, &qc, NULL, 0);
    return q.cl;
}

static void test_reader_gets_more_than_bound(void **state)
{
    (void)state;
    struct roost_client *cl = setup();
    const uint8_t req[] = {'b', 'l', 'a', 's', 't'};
    for (int i = 0; i < 8; i++) {
        q.want = q.ec.ctl_in + ECHO_BLAST_COUNT;
        assert_int_equal(roost_conn_send_control(q.ec.c, req, sizeof(req)), 0);
        assert_true(echo_client_until(cl, qp_got_ctl, &q, QP_WAIT_MS));
    }
    assert_int_equal(q.ec.ctl_in, 8 * ECHO_BLAST_COUNT); /* 8x the bound's worth */
    assert_int_equal(qp_stats(&q).too_slow, 0);
    assert_int_equal(q.ec.closed, 0);
    qp_stop(&q, false);
}

static void test_stalled_reader_closed(void **state)
{
    (void)state;
    struct roost_client *cl = setup();
    const uint8_t req[] = {'b', 'l', 'a', 's', 't'};
    assert_int_equal(roost_conn_send_control(q.ec.c, req, sizeof(req)), 0);
    roost_client_step(cl, 0);
    /* Stop reading: nothing the relay sends is acknowledged any more. */
    roost_client_set_rx_drop(cl, 1.0);
    /* One more request every 100 ms (up to BLASTS_MAX), until the server
     * closed the connection or the deadline. */
    uint64_t t0 = echo_now_ms();
    for (int i = 0; !server_closed(NULL) && echo_now_ms() - t0 < QP_WAIT_MS; i++) {
        if (i < BLASTS_MAX)
            assert_int_equal(roost_conn_send_control(q.ec.c, req, sizeof(req)), 0);
        echo_client_until(cl, server_closed, NULL, 100);
    }
    assert_true(server_closed(NULL));
    assert_int_equal(atomic_load(&q.es->close_too_slow), 1);
    assert_int_equal(qp_stats(&q).too_slow, 1);
    qp_stop(&q, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASEGUARD_TEST(test_reader_gets_more_than_bound),
        CASEGUARD_TEST(test_stalled_reader_closed),
    };
    return cmocka_run_group_tests_name("quic_slow", tests, NULL, NULL);
}
