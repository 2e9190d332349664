/* udp_rx_recv over several calls on one batch (set up once, then only the
 * fields recvmmsg wrote are reset): every datagram's bytes, sender, local
 * address (pktinfo) and kernel receive time are right in each call, for
 * batches of different sizes and senders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "quic/udp.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Receives exactly `want` datagrams (waiting for readiness, never a fixed
 * sleep) into rx; returns how many calls it took. */
static int recv_all(int fd, struct udp_rx *rx, const struct udp_addr *bound, int want, int *got,
                    uint8_t seen[][2], struct udp_addr *from, uint64_t t0)
{
    int calls = 0;
    while (*got < want) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 10000) == 1);
        int n = udp_rx_recv(fd, rx, bound);
        calls++;
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
            assert_int_equal(rx->msgs[i].msg_len, 2);
            memcpy(seen[*got], rx->data[i], 2);
            from[*got] = rx->remote[i];
            /* pktinfo: the local address the datagram was sent to. */
            assert_int_equal(rx->local[i].len, bound->len);
            assert_true(udp_addr_equal(&rx->local[i], bound));
            /* Kernel receive time, as CLOCK_MONOTONIC: after the send began,
             * not after now (1 ms of slack for the clock conversion). */
            assert_true(rx->rx_ns[i] != 0);
            assert_true(rx->rx_ns[i] + 1000000 >= t0);
            assert_true(rx->rx_ns[i] <= mono_ns() + 1000000);
            (*got)++;
        }
    }
    return calls;
}

/* One batch shared by an IPv4 and an IPv6 socket, rounds alternating: the
 * IPv6 headers need a longer name (28 bytes) and control (72) than the
 * IPv4 round left in msg_namelen / msg_controllen, so a batch that did not
 * reset them would truncate the sender and lose the timestamp. */
static void test_batches(void **state)
{
    (void)state;
    int rfd[2], s1[2], s2[2];
    struct udp_addr bound[2], a1[2], a2[2];
    const char *host[2] = {"127.0.0.1", "::1"};
    for (int f = 0; f < 2; f++) {
        struct udp_addr a;
        assert_int_equal(udp_addr_parse(&a, host[f], 0), 0);
        rfd[f] = udp_socket_open(&a, false, 0, NULL, NULL);
        s1[f] = udp_socket_open(&a, false, 0, NULL, NULL);
        s2[f] = udp_socket_open(&a, false, 0, NULL, NULL);
        assert_true(rfd[f] >= 0 && s1[f] >= 0 && s2[f] >= 0);
        assert_int_equal(udp_socket_local(rfd[f], &bound[f]), 0);
        assert_int_equal(udp_socket_local(s1[f], &a1[f]), 0);
        assert_int_equal(udp_socket_local(s2[f], &a2[f]), 0);
    }

    /* Garbage, as from malloc, then udp_rx_init: the first call sets the
     * batch up. */
    struct udp_rx *rx = malloc(sizeof(*rx));
    assert_non_null(rx);
    memset(rx, 0xa5, sizeof(*rx));
    udp_rx_init(rx);

    for (int round = 0; round < 6; round++) {
        int f = round % 2;
        int want = 1 + (round % 4) * 20; /* 1, 21, 41, 61, 1, 21 */
        uint64_t t0 = mono_ns();
        for (int k = 0; k < want; k++) {
            uint8_t d[2] = {(uint8_t)round, (uint8_t)k};
            int s = k % 2 ? s2[f] : s1[f];
            assert_int_equal(sendto(s, d, 2, 0, &bound[f].u.sa, bound[f].len), 2);
        }
        uint8_t seen[64][2];
        struct udp_addr from[64];
        int got = 0;
        recv_all(rfd[f], rx, &bound[f], want, &got, seen, from, t0);
        assert_int_equal(got, want);
        for (int k = 0; k < want; k++) {
            assert_int_equal(seen[k][0], round);
            assert_int_equal(seen[k][1], k); /* sequential sends: in order */
            assert_true(udp_addr_equal(&from[k], k % 2 ? &a2[f] : &a1[f]));
        }
        /* Nothing left: an empty call returns 0 and keeps the batch usable. */
        assert_int_equal(udp_rx_recv(rfd[f], rx, &bound[f]), 0);
    }
    free(rx);
    for (int f = 0; f < 2; f++) {
        close(rfd[f]);
        close(s1[f]);
        close(s2[f]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
