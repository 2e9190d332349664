/* QUIC endpoint, end to end on loopback: handshake, control round trip and
 * datagram round trip against the echo application with 1, 2 and 4
 * workers, over IPv4 and IPv6; then every connection is closed by the
 * client and the server's one leave path (on_close) runs for each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "../common/echo_app.h"

#define NCONN 8

struct cconn {
    struct roost_conn *c;
    int opened, closed, ctl_ok, dgram_ok;
    struct roost_close_info info;
};

struct ctx {
    struct cconn conns[NCONN];
    unsigned n;
    struct echo_server *es;
};

static void c_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    struct cconn *cc = roost_conn_user(c);
    cc->opened++;
}

static void c_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct cconn *cc = roost_conn_user(c);
    char want[32];
    snprintf(want, sizeof(want), "hello-%u", (unsigned)(cc - ((struct ctx *)arg)->conns));
    if (len == strlen(want) && memcmp(body, want, len) == 0)
        cc->ctl_ok++;
}

static void c_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct cconn *cc = roost_conn_user(c);
    if (len == 100 && data[0] == 0xAB && data[99] == 0xCD)
        cc->dgram_ok++;
}

static void c_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)arg;
    struct cconn *cc = roost_conn_user(c);
    cc->closed++;
    cc->info = *info;
}

static const struct roost_client_callbacks cbs = {
    .on_open = c_open,
    .on_control = c_control,
    .on_datagram = c_datagram,
    .on_close = c_close,
};

static bool all_open(void *arg)
{
    struct ctx *x = arg;
    for (unsigned i = 0; i < x->n; i++)
        if (!x->conns[i].opened)
            return false;
    return true;
}

static bool all_echoed(void *arg)
{
    struct ctx *x = arg;
    for (unsigned i = 0; i < x->n; i++)
        if (!x->conns[i].ctl_ok || !x->conns[i].dgram_ok)
            return false;
    return true;
}

static bool server_closed_all(void *arg)
{
    struct ctx *x = arg;
    return atomic_load(&x->es->closes) == x->n;
}

static void run(unsigned workers, const char *addr)
{
    struct ctx x;
    memset(&x, 0, sizeof(x));
    x.n = NCONN;
    struct quic_shared_config qc = {.n_workers = workers, .addr = addr};
    assert_int_equal(echo_server_start(&x.es, &qc), 0);
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &cbs, &x), 0);
    for (unsigned i = 0; i < x.n; i++)
        assert_int_equal(
            roost_client_connect(cl, addr, echo_server_port(x.es), &x.conns[i], &x.conns[i].c), 0);
    assert_true(echo_client_until(cl, all_open, &x, 10000));

    uint8_t dg[100];
    memset(dg, 0x11, sizeof(dg));
    dg[0] = 0xAB;
    dg[99] = 0xCD;
    for (unsigned i = 0; i < x.n; i++) {
        char body[32];
        int l = snprintf(body, sizeof(body), "hello-%u", i);
        assert_int_equal(roost_conn_send_control(x.conns[i].c, (uint8_t *)body, (size_t)l), 0);
    }
    /* Datagrams are unreliable: resend until each connection saw an echo. */
    for (int round = 0; round < 100 && !all_echoed(&x); round++) {
        for (unsigned i = 0; i < x.n; i++)
            if (!x.conns[i].dgram_ok)
                assert_int_equal(roost_conn_send_datagram(x.conns[i].c, dg, sizeof(dg)), 0);
        echo_client_until(cl, all_echoed, &x, 100);
    }
    assert_true(all_echoed(&x));
    /* The server opens on the client's Finished: after the client did. */
    assert_int_equal(atomic_load(&x.es->opens), x.n);
    for (unsigned i = 0; i < x.n; i++) {
        struct roost_conn_stats st;
        roost_conn_stats(x.conns[i].c, &st);
        assert_true(st.srtt_ns > 0);
        assert_int_equal(x.conns[i].ctl_ok, 1);
    }
    struct quic_stats qs;
    echo_server_stats(x.es, &qs);
    assert_int_equal(qs.handshakes_ok, x.n);
    assert_int_equal(qs.conns_open, x.n);
    assert_true(qs.dgram_in >= x.n);
    assert_int_equal(qs.control_in, x.n);

    for (unsigned i = 0; i < x.n; i++) {
        roost_conn_close(x.conns[i].c, 0);
        assert_int_equal(x.conns[i].closed, 1);
    }
    assert_true(echo_client_until(cl, server_closed_all, &x, 10000));
    for (unsigned i = 0; i < x.n; i++)
        roost_conn_del(x.conns[i].c);
    roost_client_del(cl);
    echo_server_stop(x.es);
    assert_int_equal(buf_live(), 0);
}

static void test_1_worker_v4(void **state)
{
    (void)state;
    run(1, "127.0.0.1");
}

static void test_2_workers_v4(void **state)
{
    (void)state;
    run(2, "127.0.0.1");
}

static void test_4_workers_v4(void **state)
{
    (void)state;
    run(4, "127.0.0.1");
}

static void test_1_worker_v6(void **state)
{
    (void)state;
    run(1, "::1");
}

static void test_4_workers_v6(void **state)
{
    (void)state;
    run(4, "::1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_1_worker_v4),  cmocka_unit_test(test_2_workers_v4),
        cmocka_unit_test(test_4_workers_v4), cmocka_unit_test(test_1_worker_v6),
        cmocka_unit_test(test_4_workers_v6),
    };
    return cmocka_run_group_tests_name("quic_basic", tests, NULL, NULL);
}
