/* A datagram too large for every packet of the receiver's current path,
 * right after the handshake: the server's path is 1200 bytes until PMTUD
 * raises it, and the relay forwards up to 1204 bytes (PROTOCOL.md §8.3).
 * Such a datagram is dropped for that connection only and counted
 * (too_large); the ones behind it go. Before, ngtcp2 0.12's empty write
 * for it was taken for a shut congestion window: it stayed at the head of
 * the queue and everything behind it aged out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "quic/quic_int.h"
#include "../common/caseguard.h"
#include "../common/quicpath.h"

/* Long enough that a loaded machine does not hold a few small datagrams
 * that long (none may age out); short enough that a held queue fails the
 * test soon. */
#define AGE_NS (2000ULL * 1000000ULL)
/* What the client receives waits this long (until handed in): the
 * server's PMTUD probe goes unacknowledged, its path stays 1200 bytes. */
#define HOLD_NS (3600ULL * 1000000000ULL)
/* The largest datagram a 1200-byte 1-RTT packet carries on this
 * connection: the server's DCID is the client's 8-byte SCID
 * (lib/quic/client.c), a short header of 1 + 8 + 1 (packet number, one
 * byte this early), a 16-byte AEAD tag and the DATAGRAM frame's 3 bytes
 * (type, 2-byte length). */
#define FITS_1200 (1200 - (1 + 8 + 1) - 16 - 3)

static struct qp q;
static struct qp_path path;

struct outcomes {
    struct quic_stats a;
    uint64_t n;
};

static bool all_out(void *arg)
{
    const struct outcomes *o = arg;
    struct quic_stats b = qp_stats(&q);
    return (b.dgram_out - o->a.dgram_out) + (b.dgram_drop_cwnd - o->a.dgram_drop_cwnd) +
               (b.dgram_drop_queue - o->a.dgram_drop_queue) +
               (b.dgram_drop_state - o->a.dgram_drop_state) +
               (b.dgram_drop_too_large - o->a.dgram_drop_too_large) >=
           o->n;
}

/* On the 1200-byte path: the largest datagram that fits goes, one byte more
 * and the relay's largest forward (1204) are dropped as too large, and the
 * five small ones queued behind them go (none held, none aged out). */
static void test_too_large_for_1200_path(void **state)
{
    (void)state;
    struct quic_shared_config qc = {.n_workers = 1, .dgram_max_age_ns = AGE_NS};
    qp_start(&q, &qc, &path, 0);
    /* Opened: the client wrote its Finished in the step that opened it,
     * so whatever the server sends after confirming (the PMTUD probe
     * among it) comes in a later step and is held. */
    path.delay_ns = HOLD_NS;
    struct outcomes o = {qp_stats(&q), 8};
    qp_burst(&q, 1, FITS_1200);
    qp_burst(&q, 1, FITS_1200 + 1);
    qp_burst(&q, 1, 1204);
    qp_burst(&q, 5, 100);
    assert_true(qp_until(&q, all_out, &o, QP_WAIT_MS));
    struct quic_stats b = qp_stats(&q);
    print_message("out %llu, too_large %llu, cwnd_aged %llu\n",
                  (unsigned long long)(b.dgram_out - o.a.dgram_out),
                  (unsigned long long)(b.dgram_drop_too_large - o.a.dgram_drop_too_large),
                  (unsigned long long)(b.dgram_drop_cwnd - o.a.dgram_drop_cwnd));
    assert_int_equal(b.dgram_drop_too_large - o.a.dgram_drop_too_large, 2);
    assert_int_equal(b.dgram_drop_cwnd - o.a.dgram_drop_cwnd, 0);
    assert_int_equal(b.dgram_out - o.a.dgram_out, 6);
    /* What was sent arrives once handed in. */
    path.delay_ns = 0;
    qp_hand_in_all(&q);
    q.want = 6;
    assert_true(qp_until(&q, qp_got_dgrams, &q, QP_WAIT_MS));
    assert_int_equal(q.ec.dgram_in, 6);
    qp_stop(&q, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASEGUARD_TEST(test_too_large_for_1200_path),
    };
    return cmocka_run_group_tests_name("quic_oversize", tests, NULL, NULL);
}
