/* TLS policy: a client offering another ALPN is refused with the
 * no_application_protocol alert; a client that cannot verify the relay's
 * certificate (unrelated CA) refuses it; a pinned certificate (dev mode)
 * is accepted only when it is the relay's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <ngtcp2/ngtcp2.h>

#include "core/buf.h"
#include "../common/echo_app.h"

static struct echo_conn ec;

static bool closed(void *arg)
{
    (void)arg;
    return ec.closed > 0;
}

static bool opened(void *arg)
{
    (void)arg;
    return ec.opened > 0;
}

static struct echo_server *start(void)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    memset(&ec, 0, sizeof(ec));
    return es;
}

static void test_wrong_alpn(void **state)
{
    (void)state;
    struct echo_server *es = start();
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, "h3"), 0);
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, closed, NULL, 10000));
    assert_int_equal(ec.opened, 0);
    assert_true(ec.info.remote);
    assert_false(ec.info.app);
    assert_int_equal(ec.info.code, NGTCP2_CRYPTO_ERROR + 120); /* no_application_protocol */
    struct quic_stats st;
    echo_server_stats(es, &st);
    assert_int_equal(st.handshakes_ok, 0);
    assert_int_equal(st.handshakes_failed, 1);
    assert_int_equal(atomic_load(&es->opens), 0);
    roost_client_del(cl);
    echo_server_stop(es);
}

static void test_unverifiable_cert(void **state)
{
    (void)state;
    struct echo_server *es = start();
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, true, NULL), 0);
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, closed, NULL, 10000));
    assert_int_equal(ec.opened, 0);
    assert_false(ec.info.remote);
    assert_int_equal(ec.info.liberr, NGTCP2_ERR_CRYPTO);
    assert_true(ec.info.code > NGTCP2_CRYPTO_ERROR && ec.info.code <= NGTCP2_CRYPTO_ERROR + 255);
    roost_client_del(cl);
    echo_server_stop(es);
}

static void pinned(bool right)
{
    struct echo_server *es = start();
    char pem[600];
    snprintf(pem, sizeof(pem), "%s/%s", echo_cert_dir(!right), right ? "server.pem" : "ca.pem");
    struct roost_client_config cc = {.pinned_cert = pem};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &echo_client_cbs, NULL), 0);
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    if (right) {
        assert_true(echo_client_until(cl, opened, NULL, 10000));
        assert_int_equal(ec.closed, 0);
    } else {
        assert_true(echo_client_until(cl, closed, NULL, 10000));
        assert_int_equal(ec.opened, 0);
    }
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_pinned_right(void **state)
{
    (void)state;
    pinned(true);
}

static void test_pinned_wrong(void **state)
{
    (void)state;
    pinned(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_alpn),
        cmocka_unit_test(test_unverifiable_cert),
        cmocka_unit_test(test_pinned_right),
        cmocka_unit_test(test_pinned_wrong),
    };
    return cmocka_run_group_tests_name("quic_tls", tests, NULL, NULL);
}
