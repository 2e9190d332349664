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
#include "../common/echo_app.h"

#define BOUND (ECHO_BLAST_COUNT * (ECHO_BLAST_SIZE + 2) + 20000)
/* Deadline of a condition (never a timing bound): a loaded machine only
 * makes it come later. */
#define WAIT_MS 30000
#define BLASTS_MAX 20 /* blast requests a stalled reader sends: 20x the bound */

static struct echo_conn ec;
static uint64_t want;

static bool opened(void *arg)
{
    (void)arg;
    return ec.opened > 0;
}

static bool got_all(void *arg)
{
    (void)arg;
    return ec.ctl_in >= want;
}

static struct echo_server *g_es;

static bool server_closed(void *arg)
{
    (void)arg;
    return atomic_load(&g_es->closes) == 1;
}

static struct roost_client *setup(void)
{
    struct quic_shared_config qc = {.n_workers = 1, .control_queue_max = BOUND};
    assert_int_equal(echo_server_start(&g_es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(g_es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, WAIT_MS));
    return cl;
}

static void test_reader_gets_more_than_bound(void **state)
{
    (void)state;
    struct roost_client *cl = setup();
    const uint8_t req[] = {'b', 'l', 'a', 's', 't'};
    for (int i = 0; i < 8; i++) {
        want = ec.ctl_in + ECHO_BLAST_COUNT;
        assert_int_equal(roost_conn_send_control(ec.c, req, sizeof(req)), 0);
        assert_true(echo_client_until(cl, got_all, NULL, WAIT_MS));
    }
    assert_int_equal(ec.ctl_in, 8 * ECHO_BLAST_COUNT); /* 8x the bound's worth */
    struct quic_stats st;
    echo_server_stats(g_es, &st);
    assert_int_equal(st.too_slow, 0);
    assert_int_equal(ec.closed, 0);
    roost_client_del(cl);
    echo_server_stop(g_es);
}

static void test_stalled_reader_closed(void **state)
{
    (void)state;
    struct roost_client *cl = setup();
    const uint8_t req[] = {'b', 'l', 'a', 's', 't'};
    assert_int_equal(roost_conn_send_control(ec.c, req, sizeof(req)), 0);
    roost_client_step(cl, 0);
    /* Stop reading: nothing the relay sends is acknowledged any more. */
    roost_client_set_rx_drop(cl, 1.0);
    /* One more request every 100 ms (up to BLASTS_MAX), until the server
     * closed the connection or the deadline. */
    uint64_t t0 = echo_now_ms();
    for (int i = 0; !server_closed(NULL) && echo_now_ms() - t0 < WAIT_MS; i++) {
        if (i < BLASTS_MAX)
            assert_int_equal(roost_conn_send_control(ec.c, req, sizeof(req)), 0);
        echo_client_until(cl, server_closed, NULL, 100);
    }
    assert_true(server_closed(NULL));
    assert_int_equal(atomic_load(&g_es->close_too_slow), 1);
    struct quic_stats st;
    echo_server_stats(g_es, &st);
    assert_int_equal(st.too_slow, 1);
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_gets_more_than_bound),
        cmocka_unit_test(test_stalled_reader_closed),
    };
    return cmocka_run_group_tests_name("quic_slow", tests, NULL, NULL);
}
