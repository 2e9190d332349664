/* The server frees a connection's TLS session once the handshake completed
 * (quic_conn_tls_release, issue 15: ~16 KB per idle participant): the
 * connection keeps working afterwards, through a key update the client
 * starts (ngtcp2 derives the next keys without the session), and a
 * resumed session is still counted as resumed; the client still gets its
 * ticket (it was submitted before the release). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <unistd.h>

#include "core/buf.h"
#include "quic/client.h"
#include "quic/quic_int.h"
#include "../common/echo_app.h"
#include "../common/resumecl.h"

static struct quic_stats stats(struct echo_server *es)
{
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st;
}

/* One connection: opens, echoes, has the server's session released,
 * updates its keys and echoes again. Returns whether it resumed. */
static bool one(struct quic_client *cl, struct echo_server *es, uint64_t released_before)
{
    uint16_t port = echo_server_port(es);
    struct resumecl_conn t = {0};
    struct quic_conn *c = NULL;
    assert_int_equal(quic_client_connect(cl, "127.0.0.1", port, &t, &c), 0);
    assert_true(resumecl_until_open(cl, &t));
    assert_int_equal(t.opened, 1);
    assert_int_equal(t.closed, 0);
    assert_int_equal(quic_conn_send_control(c, (const uint8_t *)"hi", 2), 0);
    assert_true(resumecl_until(cl, &t.ctl_in, 1));
    /* The server answered after its handshake completed: its session is
     * gone by now. */
    assert_int_equal(stats(es).tls_released, released_before + 1);
    assert_true(resumecl_until_ticket(cl, port));
    /* A key update once the handshake is confirmed: the echo still works
     * both ways under the new keys. */
    uint64_t end = resumecl_now_ns() + (uint64_t)RESUMECL_WAIT_MS * 1000000ULL;
    int rv;
    while ((rv = ngtcp2_conn_initiate_key_update(c->conn, resumecl_now_ns())) != 0 &&
           resumecl_now_ns() < end) {
        usleep(2000);
        assert_int_equal(quic_client_process(cl, resumecl_now_ns()), 0);
    }
    assert_int_equal(rv, 0);
    for (uint64_t i = 2; i <= 4; i++) {
        assert_int_equal(quic_conn_send_control(c, (const uint8_t *)"hi", 2), 0);
        assert_true(resumecl_until(cl, &t.ctl_in, i));
    }
    assert_int_equal(t.closed, 0);
    assert_int_equal(resumecl_close(cl, c), 0);
    return t.resumed;
}

static void test_release(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct quic_client *cl = NULL;
    assert_int_equal(resumecl_new(&cl, NULL), 0);
    assert_false(one(cl, es, 0));
    assert_int_equal(stats(es).tls_resumed, 0);
    assert_true(one(cl, es, 1));
    assert_int_equal(stats(es).tls_resumed, 1);
    quic_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_release)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
