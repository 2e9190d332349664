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

#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "quic/client.h"
#include "quic/quic_int.h"
#include "../common/echo_app.h"

struct tconn {
    int opened, closed;
    bool resumed;
    uint64_t ctl_in;
};

static int t_open(struct quic_conn *c, void *arg)
{
    (void)arg;
    struct tconn *t = quic_conn_user(c);
    t->opened++;
    t->resumed = quic_conn_tls_resumed(c);
    return 0;
}

static void t_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)body;
    (void)len;
    (void)arg;
    ((struct tconn *)quic_conn_user(c))->ctl_in++;
}

static void t_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)app_error;
    (void)arg;
    ((struct tconn *)quic_conn_user(c))->closed++;
}

static const struct quic_app_ops ops = {
    .on_open = t_open, .on_control = t_control, .on_close = t_close};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool until_ge(struct quic_client *cl, const uint64_t *v, uint64_t want)
{
    uint64_t end = mono_ns() + 10000000000ULL;
    while (*v < want) {
        if (mono_ns() > end)
            return false;
        struct pollfd p = {.fd = quic_client_fd(cl), .events = POLLIN};
        uint64_t to = quic_client_next_timeout(cl, mono_ns());
        (void)poll(&p, 1, to > 5000000 ? 5 : (int)(to / 1000000));
        assert_int_equal(quic_client_process(cl, mono_ns()), 0);
    }
    return true;
}

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
    struct tconn t = {0};
    struct quic_conn *c = NULL;
    assert_int_equal(quic_client_connect(cl, "127.0.0.1", port, &t, &c), 0);
    uint64_t end = mono_ns() + 10000000000ULL;
    while (t.opened == 0 && t.closed == 0 && mono_ns() < end) {
        struct pollfd p = {.fd = quic_client_fd(cl), .events = POLLIN};
        (void)poll(&p, 1, 5);
        assert_int_equal(quic_client_process(cl, mono_ns()), 0);
    }
    assert_int_equal(t.opened, 1);
    assert_int_equal(t.closed, 0);
    assert_int_equal(quic_conn_send_control(c, (const uint8_t *)"hi", 2), 0);
    assert_true(until_ge(cl, &t.ctl_in, 1));
    /* The server answered after its handshake completed: its session is
     * gone by now. */
    assert_int_equal(stats(es).tls_released, released_before + 1);
    end = mono_ns() + 5000000000ULL;
    while (!quic_client_has_ticket(cl, "127.0.0.1", port) && mono_ns() < end) {
        usleep(2000);
        assert_int_equal(quic_client_process(cl, mono_ns()), 0);
    }
    assert_true(quic_client_has_ticket(cl, "127.0.0.1", port));
    /* A key update once the handshake is confirmed: the echo still works
     * both ways under the new keys. */
    end = mono_ns() + 5000000000ULL;
    int rv;
    while ((rv = ngtcp2_conn_initiate_key_update(c->conn, mono_ns())) != 0 && mono_ns() < end) {
        usleep(2000);
        assert_int_equal(quic_client_process(cl, mono_ns()), 0);
    }
    assert_int_equal(rv, 0);
    for (uint64_t i = 2; i <= 4; i++) {
        assert_int_equal(quic_conn_send_control(c, (const uint8_t *)"hi", 2), 0);
        assert_true(until_ge(cl, &t.ctl_in, i));
    }
    assert_int_equal(t.closed, 0);
    quic_conn_close(c, QUIC_APP_NO_ERROR, NULL);
    assert_int_equal(quic_client_process(cl, mono_ns()), 0);
    quic_client_conn_del(c);
    return t.resumed;
}

static void test_release(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct quic_client_config cc = {.ca_file = ca};
    struct quic_client *cl = NULL;
    assert_int_equal(quic_client_new(&cl, &cc, &ops, NULL), 0);
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
