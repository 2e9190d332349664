/* Connection lifetimes and stateless responses: an idle connection is
 * closed and freed after the idle timeout; a handshake that never
 * completes is freed after the handshake timeout; forced Retry still lets
 * clients connect; a stateless reset answers an unknown CID of this
 * worker with the token derived from the persisted secret (same token after
 * a restart), and resets are rate-limited; a CID naming another worker is
 * forwarded to it rather than reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "core/buf.h"
#include "core/error.h"
#include "quic/cid.h"
#include "../common/echo_app.h"

/* Deadlines of conditions that must come (never a timing bound): a loaded
 * machine only makes them come later. Timeouts under test are derived
 * from their configured value. */
#define WAIT_MS 30000
#define IDLE_MS 300      /* idle_timeout of the idle test */
#define HANDSHAKE_MS 300 /* handshake_timeout of the handshake test */

static struct echo_conn ec;

static bool opened(void *arg)
{
    (void)arg;
    return ec.opened > 0;
}

static bool wait_server(struct echo_server *es, bool (*pred)(struct echo_server *), int ms)
{
    uint64_t end = echo_now_ms() + (uint64_t)ms;
    while (!pred(es)) {
        if (echo_now_ms() > end)
            return false;
        usleep(10000);
    }
    return true;
}

static struct echo_server *g_es;

static bool server_opened(void *arg)
{
    (void)arg;
    return atomic_load(&g_es->opens) == 1;
}

static bool got_control(void *arg)
{
    (void)arg;
    return ec.ctl_in > 0;
}

static bool none_open(struct echo_server *es)
{
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st.conns_open == 0 && atomic_load(&es->closes) == 1;
}

static void test_idle_timeout(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1, .idle_timeout_ns = IDLE_MS * 1000000ULL};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    g_es = es;
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, WAIT_MS));
    /* Until the server saw the handshake finish, then go silent. */
    assert_true(echo_client_until(cl, server_opened, NULL, WAIT_MS));
    assert_true(wait_server(es, none_open, WAIT_MS + 10 * IDLE_MS));
    struct quic_stats st;
    echo_server_stats(es, &st);
    assert_int_equal(st.idle_timeouts, 1);
    assert_int_equal(atomic_load(&es->close_idle), 1);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1,
                                    .handshake_timeout_ns = HANDSHAKE_MS * 1000000ULL};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    /* Send the Initial, then never read or answer again. */
    roost_client_step(cl, 0);
    assert_true(wait_server(es, none_open, WAIT_MS + 10 * HANDSHAKE_MS));
    struct quic_stats st;
    echo_server_stats(es, &st);
    assert_int_equal(st.handshake_timeouts, 1);
    assert_int_equal(st.handshakes_ok, 0);
    assert_int_equal(st.conns_half_open, 0);
    assert_int_equal(atomic_load(&es->opens), 0);
    roost_client_del(cl);
    echo_server_stop(es);
}

static void test_forced_retry(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2, .force_retry = true};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, WAIT_MS));
    const uint8_t body[] = "after-retry";
    assert_int_equal(roost_conn_send_control(ec.c, body, sizeof(body)), 0);
    assert_true(echo_client_until(cl, got_control, NULL, WAIT_MS));
    assert_int_equal(ec.ctl_in, 1);
    struct quic_stats st;
    echo_server_stats(es, &st);
    assert_true(st.retry_sent >= 1);
    assert_int_equal(st.handshakes_ok, 1);
    roost_client_del(cl);
    echo_server_stop(es);
}

static int raw_socket(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* A 60-byte short-header packet for cid. */
static void send_short(int fd, const uint8_t *cid)
{
    uint8_t p[60];
    memset(p, 0x5a, sizeof(p));
    p[0] = 0x40 | 0x01;
    memcpy(p + 1, cid, QUIC_CID_LEN);
    assert_int_equal(send(fd, p, sizeof(p), 0), (ssize_t)sizeof(p));
}

static ssize_t recv_wait(int fd, uint8_t *buf, size_t cap, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) <= 0)
        return -1;
    return recv(fd, buf, cap, 0);
}

static void expect_token(const char *dir, const uint8_t *cid, const uint8_t *got)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/quic-secrets", dir);
    uint8_t secret[64];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, secret, sizeof(secret)), 64);
    close(fd);
    ngtcp2_cid c;
    ngtcp2_cid_init(&c, cid, QUIC_CID_LEN);
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    assert_int_equal(ngtcp2_crypto_generate_stateless_reset_token(token, secret, 32, &c), 0);
    assert_memory_equal(token, got, sizeof(token));
}

static void test_stateless_reset(void **state)
{
    (void)state;
    char dir[] = "/tmp/roost-quic-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint8_t cid[QUIC_CID_LEN];
    assert_int_equal(cid_generate(cid, 0), 0);
    for (int restart = 0; restart < 2; restart++) {
        struct echo_server *es = NULL;
        struct quic_shared_config qc = {
            .n_workers = 1, .state_dir = dir, .reset_rate = 10, .rate_burst = 5};
        assert_int_equal(echo_server_start(&es, &qc), 0);
        int fd = raw_socket(echo_server_port(es));
        send_short(fd, cid);
        uint8_t buf[2048];
        ssize_t n = recv_wait(fd, buf, sizeof(buf), WAIT_MS);
        assert_true(n >= 21 && n < 60);
        assert_int_equal(buf[0] & 0xc0, 0x40);
        expect_token(dir, cid, buf + n - NGTCP2_STATELESS_RESET_TOKENLEN);
        if (restart == 1) {
            /* Rate limit: 200 more unknown CIDs earn at most the burst. */
            for (int i = 0; i < 200; i++)
                send_short(fd, cid);
            /* Until the server handled all 200 (answered or limited), then
             * until every answer it counted arrived: no quiet period to
             * guess. (UDP on loopback: none of the 201 is lost unless the
             * socket buffer overflows, which 201 small packets do not.) */
            struct quic_stats st;
            uint64_t t0 = echo_now_ms();
            do {
                echo_server_stats(es, &st);
                if (st.reset_sent + st.rate_limited >= 201)
                    break;
                usleep(1000);
            } while (echo_now_ms() - t0 < WAIT_MS);
            assert_true(st.reset_sent + st.rate_limited >= 201);
            int got = 0;
            while ((uint64_t)got + 1 < st.reset_sent &&
                   recv_wait(fd, buf, sizeof(buf), WAIT_MS) > 0)
                got++;
            printf("# resets answered=%d sent=%llu limited=%llu\n", got,
                   (unsigned long long)st.reset_sent, (unsigned long long)st.rate_limited);
            assert_true(got <= 8);
            assert_true(st.rate_limited >= 190);
            assert_int_equal(st.reset_sent, (uint64_t)got + 1);
        }
        close(fd);
        echo_server_stop(es);
    }
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* quic-secrets is refused when group or others may access it (as the
 * token key files are), and when it is not a regular file. */
static void test_secrets_mode(void **state)
{
    (void)state;
    char dir[] = "/tmp/roost-quic-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/quic-secrets", dir);
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1, .state_dir = dir};
    assert_int_equal(echo_server_start(&es, &qc), 0); /* creates it, 0600 */
    echo_server_stop(es);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    static const mode_t bad[] = {0640, 0604, 0660, 0644, 0620, 0602};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        es = NULL;
        assert_int_equal(echo_server_start(&es, &qc), ROOST_EACCES);
        assert_null(es);
    }
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(echo_server_start(&es, &qc), 0); /* read-only for us is fine */
    echo_server_stop(es);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    es = NULL;
    assert_int_equal(echo_server_start(&es, &qc), ROOST_EINVAL);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Two unknown short-header CIDs from one socket, one per worker: each must
 * be answered (stateless reset) by the worker its CID names. Without
 * steering the 4-tuple lands on one worker and the other CID's packet is
 * forwarded through the ring; with steering the kernel delivers each to its
 * owner directly and nothing is forwarded. */
static void reset_by_owner(bool steering)
{
    struct echo_server *es = NULL;
    /* Steering by the CID byte: the classic program, which any process
     * gets (ROOST_STEERING, which forces the default mode, does not apply). */
    struct quic_shared_config qc = {
        .n_workers = 2, .no_steering = !steering, .steer = QUIC_STEER_CBPF};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    assert_int_equal(echo_server_steering(es), steering);
    int fd = raw_socket(echo_server_port(es));
    uint8_t c0[QUIC_CID_LEN], c1[QUIC_CID_LEN];
    assert_int_equal(cid_generate(c0, 0), 0);
    assert_int_equal(cid_generate(c1, 1), 0);
    send_short(fd, c0);
    send_short(fd, c1);
    uint8_t buf[2048];
    int got = 0;
    while (got < 2 && recv_wait(fd, buf, sizeof(buf), WAIT_MS) > 0)
        got++;
    assert_int_equal(got, 2);
    struct quic_stats s0, s1;
    quic_shared_stats(es->sh, 0, &s0);
    quic_shared_stats(es->sh, 1, &s1);
    assert_int_equal(s0.reset_sent, 1);
    assert_int_equal(s1.reset_sent, 1);
    assert_int_equal(s0.fwd_out + s1.fwd_out, steering ? 0 : 1);
    assert_int_equal(s0.fwd_in + s1.fwd_in, steering ? 0 : 1);
    close(fd);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_reset_only_by_owner(void **state)
{
    (void)state;
    reset_by_owner(false);
}

static void test_reset_steered_to_owner(void **state)
{
    (void)state;
    reset_by_owner(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_timeout),           cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_forced_retry),           cmocka_unit_test(test_stateless_reset),
        cmocka_unit_test(test_reset_only_by_owner),    cmocka_unit_test(test_secrets_mode),
        cmocka_unit_test(test_reset_steered_to_owner),
    };
    return cmocka_run_group_tests_name("quic_timeouts", tests, NULL, NULL);
}
