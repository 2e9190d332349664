/* 1000 concurrent client connections against a 4-worker echo relay: all
 * complete their handshake, they spread over the workers (SO_REUSEPORT on
 * distinct source ports), every one exchanges datagrams, and the server
 * ends with zero connections after the clients close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "core/buf.h"
#include "../common/echo_app.h"

#define N 1000
#define WORKERS 4
/* Deadline of a condition that must come (never a timing bound), and the
 * handshake timeout of both ends: 1000 handshakes on a loaded machine
 * under ASan may take longer than the defaults (server 5 s, client 10 s)
 * and this test is not about the timeout. */
#define WAIT_MS 60000
#define HS_TIMEOUT_NS (60ULL * 1000000000ULL)

static struct echo_conn conns[N];

static bool all_open(void *arg)
{
    (void)arg;
    return echo_conns_open(conns, N);
}

/* Every connection opened or was closed (a failed handshake). */
static bool all_settled(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < N; i++)
        if (!conns[i].opened && !conns[i].closed)
            return false;
    return true;
}

static bool all_dgram(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < N; i++)
        if (conns[i].dgram_in == 0)
            return false;
    return true;
}

static struct echo_server *g_es;

static bool server_empty(void *arg)
{
    (void)arg;
    struct quic_stats st;
    echo_server_stats(g_es, &st);
    return st.conns_open == 0;
}

static void test_thousand(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct quic_shared_config qc = {
        .n_workers = WORKERS, .retry_threshold = 2 * N, .handshake_timeout_ns = HS_TIMEOUT_NS};
    assert_int_equal(echo_server_start(&g_es, &qc), 0);
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca, .handshake_timeout_ns = HS_TIMEOUT_NS};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &echo_client_cbs, NULL), 0);
    /* Waves of 50: a burst of 1000 Initials would overflow the default
     * (clamped) socket buffers and leave the test waiting on PTOs. */
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(
            roost_client_connect(cl, "127.0.0.1", echo_server_port(g_es), &conns[i], &conns[i].c),
            0);
        if (i % 50 == 49)
            for (int k = 0; k < 4; k++)
                roost_client_step(cl, 1);
    }
    assert_true(echo_client_until(cl, all_settled, NULL, WAIT_MS));
    assert_true(all_open(NULL));
    /* Datagrams are unreliable: resent, paced, to those without an echo. */
    uint8_t dg[64] = {1, 2, 3};
    for (uint64_t end = echo_now_ms() + WAIT_MS; !all_dgram(NULL) && echo_now_ms() < end;) {
        for (unsigned i = 0; i < N; i++)
            if (conns[i].dgram_in == 0)
                roost_conn_send_datagram(conns[i].c, dg, sizeof(dg));
        echo_client_until(cl, all_dgram, NULL, 200);
    }
    assert_true(all_dgram(NULL));
    unsigned used = 0;
    for (unsigned w = 0; w < WORKERS; w++) {
        struct quic_stats st;
        quic_shared_stats(g_es->sh, w, &st);
        if (st.handshakes_ok > 0)
            used++;
        printf("# worker %u: handshakes_ok=%llu\n", w, (unsigned long long)st.handshakes_ok);
    }
    assert_int_equal(used, WORKERS);
    struct quic_stats st;
    echo_server_stats(g_es, &st);
    assert_int_equal(st.handshakes_ok, N);
    for (unsigned i = 0; i < N; i++)
        roost_conn_close(conns[i].c, 0);
    assert_true(echo_client_until(cl, server_empty, NULL, WAIT_MS));
    assert_int_equal(atomic_load(&g_es->closes), N);
    roost_client_del(cl);
    echo_server_stop(g_es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thousand),
    };
    return cmocka_run_group_tests_name("quic_many", tests, NULL, NULL);
}
