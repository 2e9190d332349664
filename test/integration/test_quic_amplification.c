/* The 3x anti-amplification limit (RFC 9000 §8.1), measured from outside:
 * a client's packets go through a test proxy whose socket is the address
 * the server sees. The proxy forwards the client's first Initial flight
 * only, never delivers the server's answers (the handshake cannot
 * complete), then sends small junk packets that name the connection (the
 * client's Initial DCID). Bytes the server sent to the proxy's address must
 * stay <= 3 x bytes it received from it:
 * - with a wrong ALPN the server closes during the handshake: its
 *   CONNECTION_CLOSE and every resend (one per junk packet) must fit;
 * - with the right ALPN the server's handshake flight and its
 *   retransmissions must fit;
 * - junk from a second address (a spoofed victim) that names the closing
 *   connection in minimal short-header packets (1 + CID bytes, smaller than
 *   a third of the close) must not be answered beyond 3x either: before
 *   the handshake completed the close is resent only to the peer's
 *   address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "quic/client.h"
#include "../common/echo_app.h"

#define JUNK 40
#define JUNK_LEN 48
/* The victim sends as many packets as the server resends its close at
 * most: 4 x 17 B buy 204 B, less than 4 closes (~58 B each). */
#define JUNK_SPOOF 4

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)ts.tv_nsec / 1000000ULL;
}

static int on_open(struct quic_conn *c, void *arg)
{
    (void)c;
    (void)arg;
    return 0;
}

static const struct quic_app_ops ops = {.on_open = on_open};

static int udp_bound(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static uint16_t port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    return ntohs(a.sin_port);
}

struct counts {
    uint64_t tx, rx;     /* the proxy's address: to / from the server */
    uint64_t tx_v, rx_v; /* the victim's address */
};

static void run(const char *alpn, bool spoof, struct counts *out)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1, .addr = "127.0.0.1"};
    assert_int_equal(echo_server_start(&es, &qc), 0);

    int p = udp_bound(); /* the client talks to this */
    int q = udp_bound(); /* the server sees this address */
    int v = udp_bound(); /* a second address: the spoofed victim */
    struct sockaddr_in srv = {.sin_family = AF_INET,
                              .sin_port = htons(echo_server_port(es)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(q, (struct sockaddr *)&srv, sizeof(srv)), 0);
    assert_int_equal(connect(v, (struct sockaddr *)&srv, sizeof(srv)), 0);

    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct quic_client_config cc = {.ca_file = ca, .alpn = alpn};
    struct quic_client *cl = NULL;
    assert_int_equal(quic_client_new(&cl, &cc, &ops, NULL), 0);
    struct quic_conn *c = NULL;
    assert_int_equal(quic_client_connect(cl, "127.0.0.1", port_of(p), NULL, &c), 0);

    uint8_t dcid[20], scid[20];
    size_t dcidlen = 0, scidlen = 0;
    uint64_t tx = 0, rx = 0, tx_v = 0, rx_v = 0, start = mono_ms(), first = 0;
    int junk = 0;
    uint8_t buf[65536];
    while (mono_ms() - start < 2500) {
        (void)quic_client_process(cl, mono_ms() * 1000000ULL);
        ssize_t n;
        while ((n = recv(p, buf, sizeof(buf), 0)) > 0) {
            /* Only the first flight (the first 50 ms) goes through. */
            if (first != 0 && mono_ms() - first > 50)
                continue;
            if (first == 0) {
                first = mono_ms();
                assert_true(n > 6 && (buf[0] & 0x80));
                dcidlen = buf[5];
                assert_true(dcidlen <= 20 && (size_t)n > 6 + dcidlen);
                memcpy(dcid, buf + 6, dcidlen);
            }
            if (send(q, buf, (size_t)n, 0) == n)
                tx += (uint64_t)n;
        }
        while ((n = recv(q, buf, sizeof(buf), 0)) > 0) {
            rx += (uint64_t)n; /* never delivered */
            /* The server's CID, from its first long-header packet. */
            if (scidlen == 0 && (buf[0] & 0x80) && n > 6 && (size_t)n > 7u + buf[5]) {
                size_t l = buf[6 + buf[5]];
                if (l > 0 && l <= 20 && (size_t)n >= 7u + buf[5] + l) {
                    memcpy(scid, buf + 7 + buf[5], l);
                    scidlen = l;
                }
            }
        }
        while ((n = recv(v, buf, sizeof(buf), 0)) > 0)
            rx_v += (uint64_t)n;
        if (spoof && scidlen > 0 && first != 0 && mono_ms() - first > 200 && junk < JUNK_SPOOF) {
            /* The smallest packet the server routes: a short header and
             * the CID. */
            uint8_t j[21];
            j[0] = 0x40;
            memcpy(j + 1, scid, scidlen);
            if (send(v, j, 1 + scidlen, 0) == (ssize_t)(1 + scidlen))
                tx_v += 1 + scidlen;
            junk++;
        }
        /* Junk naming the connection: a Handshake-type long header with
         * the client's Initial DCID and garbage the server cannot open. */
        if (!spoof && first != 0 && mono_ms() - first > 200 && junk < JUNK) {
            uint8_t j[JUNK_LEN];
            memset(j, 0x5a, sizeof(j));
            j[0] = 0xe0;
            j[1] = 0, j[2] = 0, j[3] = 0, j[4] = 1;
            j[5] = (uint8_t)dcidlen;
            memcpy(j + 6, dcid, dcidlen);
            j[6 + dcidlen] = 0; /* scid length */
            if (send(q, j, sizeof(j), 0) == (ssize_t)sizeof(j))
                tx += sizeof(j);
            junk++;
        }
        usleep(2000);
    }
    out->tx = tx;
    out->rx = rx;
    out->tx_v = tx_v;
    out->rx_v = rx_v;
    quic_client_del(cl);
    close(p);
    close(q);
    close(v);
    echo_server_stop(es);
}

static void report(const char *what, const struct counts *c)
{
    print_message("# %s: to server %llu B, from server %llu B; victim: to %llu B, from %llu B\n",
                  what, (unsigned long long)c->tx, (unsigned long long)c->rx,
                  (unsigned long long)c->tx_v, (unsigned long long)c->rx_v);
}

static void test_close_resends_within_3x(void **state)
{
    (void)state;
    struct counts c;
    run("not-roost", false, &c);
    report("wrong ALPN, junk from the peer", &c);
    assert_true(c.tx > 0);
    assert_true(c.rx > 0); /* the close went out */
    assert_true(c.rx <= 3 * c.tx);
}

static void test_handshake_within_3x(void **state)
{
    (void)state;
    struct counts c;
    run(NULL, false, &c);
    report("right ALPN, junk from the peer", &c);
    assert_true(c.tx > 0);
    assert_true(c.rx > 0);
    assert_true(c.rx <= 3 * c.tx);
}

static void test_spoofed_junk_within_3x(void **state)
{
    (void)state;
    struct counts c;
    run("not-roost", true, &c);
    report("wrong ALPN, junk from a victim", &c);
    assert_true(c.tx > 0 && c.rx > 0);
    assert_true(c.rx <= 3 * c.tx);
    assert_true(c.tx_v > 0); /* the junk was sent */
    assert_true(c.rx_v <= 3 * c.tx_v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_resends_within_3x),
        cmocka_unit_test(test_handshake_within_3x),
        cmocka_unit_test(test_spoofed_junk_within_3x),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
