/* Pure pieces of the QUIC layer: control-stream framing queue (bounded,
 * chunks kept until acknowledged, rollback), inbound reassembly (split,
 * coalesced, oversize, empty body), the CID table (put/get/remove with
 * backward-shift deletion under growth), CID worker byte, and the GCRA
 * token bucket driven by explicit time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "proto/frame.h"
#include "quic/cid.h"
#include "quic/steer.h"
#include "quic/ctlstream.h"
#include "quic/tbucket.h"

static void test_tx_queue(void **state)
{
    (void)state;
    struct ctl_tx q;
    ctl_tx_init(&q, 20000);
    uint8_t body[5000];
    memset(body, 'x', sizeof(body));
    assert_int_equal(ctl_tx_push(&q, body, 0), ROOST_EINVAL);
    assert_int_equal(ctl_tx_push(&q, body, FRAME_MAX_BODY + 1), ROOST_ETOOBIG);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctl_tx_push(&q, body, sizeof(body)), 0);
    size_t framed = sizeof(body) + 2;
    assert_int_equal(ctl_tx_pending(&q), 3 * framed);
    /* The bound counts unacked bytes: a fourth message would exceed it. */
    assert_int_equal(ctl_tx_push(&q, body, sizeof(body)), ROOST_EFULL);
    assert_int_equal(ctl_tx_pending(&q), 3 * framed);
    const uint8_t *p;
    size_t n = ctl_tx_peek(&q, &p);
    assert_int_equal(n, sizeof(body) + 2);              /* a chunk sized to its message */
    assert_int_equal(p[0], 0x40 | (sizeof(body) >> 8)); /* 2-byte varint prefix */
    const uint8_t *first = p;
    ctl_tx_sent(&q, n);
    size_t total = n;
    while ((n = ctl_tx_peek(&q, &p)) > 0) {
        ctl_tx_sent(&q, n);
        total += n;
    }
    assert_int_equal(total, 3 * framed);
    assert_false(ctl_tx_has_unsent(&q));
    /* Sent but unacked bytes still count and stay in place. */
    assert_int_equal(ctl_tx_push(&q, body, sizeof(body)), ROOST_EFULL);
    assert_int_equal(first[2], 'x');
    uint64_t chunks = q.chunks;
    ctl_tx_acked(&q, 0, 8192);
    assert_int_equal(q.chunks, chunks - 1);
    assert_int_equal(ctl_tx_pending(&q), 3 * framed - 8192);
    ctl_tx_acked(&q, 8192, 3 * framed - 8192);
    assert_int_equal(ctl_tx_pending(&q), 0);
    /* Everything acked: no chunk is kept, not even the partly filled tail
     * (idle connections hold no send buffer). */
    assert_int_equal(q.chunks, 0);
    assert_int_equal(ctl_tx_push(&q, body, sizeof(body)), 0);
    assert_int_equal(q.chunks, 1);
    n = ctl_tx_peek(&q, &p);
    assert_int_equal(n, framed); /* the new message starts a fresh chunk */
    ctl_tx_sent(&q, n);
    ctl_tx_acked(&q, 3 * framed, framed);
    assert_int_equal(q.chunks, 0);
    ctl_tx_free(&q);
    assert_int_equal(q.chunks, 0);
}

/* Issue 15: send chunks are sized to the message (small ones share one),
 * not a fixed 8 KiB. */
static void test_tx_chunk_sizing(void **state)
{
    (void)state;
    struct ctl_tx q;
    ctl_tx_init(&q, 1 << 20);
    uint8_t small[10], big[5000];
    memset(small, 's', sizeof(small));
    memset(big, 'b', sizeof(big));
    for (int i = 0; i < 20; i++)
        assert_int_equal(ctl_tx_push(&q, small, sizeof(small)), 0);
    assert_int_equal(q.chunks, 1); /* 20 x 11 bytes share one */
    /* The big one does not fit the small chunk's slack: a chunk of its
     * own, so the first run ends with the small ones. */
    assert_int_equal(ctl_tx_push(&q, big, sizeof(big)), 0);
    assert_int_equal(q.chunks, 2);
    const uint8_t *p;
    size_t n = ctl_tx_peek(&q, &p);
    assert_int_equal(n, 20 * (sizeof(small) + 1));
    ctl_tx_sent(&q, n);
    n = ctl_tx_peek(&q, &p);
    assert_int_equal(n, sizeof(big) + 2);
    assert_int_equal(p[2], 'b');
    ctl_tx_sent(&q, n);
    /* A message after the big one starts a third chunk (the big one has
     * no slack), and the bytes handed out never move. */
    assert_int_equal(ctl_tx_push(&q, small, sizeof(small)), 0);
    assert_int_equal(q.chunks, 3);
    assert_int_equal(p[sizeof(big) + 1], 'b');
    ctl_tx_acked(&q, 0, ctl_tx_pending(&q));
    assert_int_equal(q.chunks, 0);
    ctl_tx_free(&q);
}

struct got {
    int n;
    size_t lens[16];
    uint8_t last[64];
};

static void on_body(const uint8_t *b, size_t len, void *arg)
{
    struct got *g = arg;
    g->lens[g->n++] = len;
    memcpy(g->last, b, len < 64 ? len : 64);
}

static void test_rx_reassembly(void **state)
{
    (void)state;
    uint8_t stream[64];
    size_t off = 0;
    /* three messages: "abc", 300 x 'q' (2-byte prefix), "z" */
    stream[off++] = 3;
    memcpy(stream + off, "abc", 3);
    off += 3;
    uint8_t big[2 + 300];
    big[0] = 0x40 | (300 >> 8);
    big[1] = 300 & 0xff;
    memset(big + 2, 'q', 300);
    struct ctl_rx r;
    ctl_rx_init(&r);
    struct got g = {0};
    /* Byte-by-byte feeding delivers the same bodies as one big write. */
    for (size_t i = 0; i < off; i++)
        assert_int_equal(ctl_rx_feed(&r, stream + i, 1, on_body, &g), 1);
    for (size_t i = 0; i < sizeof(big); i += 7) {
        size_t k = sizeof(big) - i < 7 ? sizeof(big) - i : 7;
        assert_int_equal(ctl_rx_feed(&r, big + i, k, on_body, &g), (int)k);
    }
    uint8_t z[2] = {1, 'z'};
    assert_int_equal(ctl_rx_feed(&r, z, 2, on_body, &g), 2);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.lens[0], 3);
    assert_int_equal(g.lens[1], 300);
    assert_int_equal(g.lens[2], 1);
    assert_int_equal(g.last[0], 'z');
    /* A message split over feeds is gathered in a buffer sized to it and
     * given back once delivered: between messages none is held. */
    assert_null(r.buf);
    assert_int_equal(ctl_rx_feed(&r, big, 100, on_body, &g), 100);
    assert_non_null(r.buf);
    assert_int_equal(r.cap, sizeof(big));
    assert_int_equal(ctl_rx_feed(&r, big + 100, sizeof(big) - 100, on_body, &g),
                     (int)(sizeof(big) - 100));
    assert_int_equal(g.n, 4);
    assert_int_equal(g.lens[3], 300);
    assert_null(r.buf);
    /* A prefix split over feeds: the buffer grows to the message. */
    assert_int_equal(ctl_rx_feed(&r, big, 1, on_body, &g), 1);
    assert_true(r.cap <= 8);
    assert_int_equal(ctl_rx_feed(&r, big + 1, 5, on_body, &g), 5);
    assert_int_equal(r.cap, sizeof(big));
    assert_int_equal(ctl_rx_feed(&r, big + 6, sizeof(big) - 6, on_body, &g),
                     (int)(sizeof(big) - 6));
    assert_int_equal(g.n, 5);
    assert_null(r.buf);
    /* An empty body and an oversize prefix are errors. */
    uint8_t empty[1] = {0};
    assert_int_equal(ctl_rx_feed(&r, empty, 1, on_body, &g), ROOST_EMALFORMED);
    ctl_rx_free(&r);
    ctl_rx_init(&r);
    uint8_t huge[4] = {0x80, 0x00, 0x50, 0x00}; /* 20480 > FRAME_MAX_BODY */
    assert_int_equal(ctl_rx_feed(&r, huge, 4, on_body, &g), ROOST_ETOOBIG);
    ctl_rx_free(&r);
}

static void test_cid_table(void **state)
{
    (void)state;
    struct cid_table *t = NULL;
    assert_int_equal(cid_table_new(&t), 0);
    enum { N = 5000 };
    static uint8_t ids[N][QUIC_CID_LEN];
    static int vals[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(cid_generate(ids[i], (unsigned)i % 7), 0);
        assert_int_equal(cid_worker(ids[i], QUIC_CID_LEN), i % 7);
        assert_int_equal(cid_table_put(t, ids[i], QUIC_CID_LEN, &vals[i]), 0);
    }
    assert_int_equal(cid_worker(ids[0], 8), -1);
    assert_int_equal(cid_table_put(t, ids[3], QUIC_CID_LEN, &vals[4]), ROOST_EEXIST);
    assert_int_equal(cid_table_count(t), N);
    /* Remove every other entry; the rest must stay reachable. */
    for (int i = 0; i < N; i += 2)
        assert_int_equal(cid_table_remove(t, ids[i], QUIC_CID_LEN, &vals[i]), 0);
    assert_int_equal(cid_table_remove(t, ids[1], QUIC_CID_LEN, &vals[2]), ROOST_ENOENT);
    for (int i = 0; i < N; i++) {
        void *v = cid_table_get(t, ids[i], QUIC_CID_LEN);
        if (i % 2)
            assert_ptr_equal(v, &vals[i]);
        else
            assert_null(v);
    }
    assert_int_equal(cid_table_count(t), N / 2);
    assert_null(cid_table_get(t, ids[1], 8));
    cid_table_del(t);
}

/* The cache of recent hits (cid.c) never answers for a removed CID, and
 * CIDs that share a cache slot (same last bytes) are both found. */
static void test_cid_table_cache(void **state)
{
    (void)state;
    struct cid_table *t = NULL;
    assert_int_equal(cid_table_new(&t), 0);
    int x, y, z;
    uint8_t a[QUIC_CID_LEN], b[QUIC_CID_LEN];
    assert_int_equal(cid_generate(a, 0), 0);
    memcpy(b, a, sizeof(b));
    b[1] ^= 0x5a; /* same last bytes: the same cache slot */
    assert_int_equal(cid_table_put(t, a, sizeof(a), &x), 0);
    assert_ptr_equal(cid_table_get(t, a, sizeof(a)), &x); /* cached */
    assert_int_equal(cid_table_remove(t, a, sizeof(a), &x), 0);
    assert_null(cid_table_get(t, a, sizeof(a)));
    assert_int_equal(cid_table_put(t, a, sizeof(a), &y), 0);
    assert_ptr_equal(cid_table_get(t, a, sizeof(a)), &y);
    assert_null(cid_table_get(t, b, sizeof(b)));
    assert_int_equal(cid_table_put(t, b, sizeof(b), &z), 0);
    for (int i = 0; i < 3; i++) {
        assert_ptr_equal(cid_table_get(t, a, sizeof(a)), &y);
        assert_ptr_equal(cid_table_get(t, b, sizeof(b)), &z);
    }
    /* A removal that names another value removes nothing, cached or not. */
    assert_int_equal(cid_table_remove(t, b, sizeof(b), &x), ROOST_ENOENT);
    assert_ptr_equal(cid_table_get(t, b, sizeof(b)), &z);
    /* Short CIDs (client-chosen) too. */
    assert_int_equal(cid_table_put(t, a, 2, &x), 0);
    assert_ptr_equal(cid_table_get(t, a, 2), &x);
    assert_int_equal(cid_table_remove(t, a, 2, NULL), 0);
    assert_null(cid_table_get(t, a, 2));
    assert_ptr_equal(cid_table_get(t, a, sizeof(a)), &y);
    cid_table_del(t);
}

static void test_tbucket(void **state)
{
    (void)state;
    struct tbucket b;
    tbucket_init(&b, 10, 3); /* 10/s, burst 3 */
    uint64_t t0 = 1000000000ULL;
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += tbucket_take(&b, t0);
    assert_int_equal(ok, 3);
    assert_false(tbucket_take(&b, t0 + 50000000ULL));
    assert_true(tbucket_take(&b, t0 + 100000000ULL));
    /* A long pause refills only up to the burst. */
    ok = 0;
    for (int i = 0; i < 10; i++)
        ok += tbucket_take(&b, t0 + 100ULL * 1000000000ULL);
    assert_int_equal(ok, 3);
    tbucket_init(&b, 0, 0);
    assert_true(tbucket_take(&b, 0));
}

/* The steering program's choice, mirrored: short headers go to the worker
 * byte of the DCID, long headers and bytes naming no worker to the hash. */
static void test_steer_index(void **state)
{
    (void)state;
    uint8_t cid[QUIC_CID_LEN];
    uint8_t pkt[1 + QUIC_CID_LEN + 20] = {0x40};
    for (unsigned w = 0; w < 4; w++) {
        assert_int_equal(cid_generate(cid, w), 0);
        memcpy(pkt + 1, cid, sizeof(cid));
        assert_int_equal(steer_index(pkt, sizeof(pkt), 4), w);
        assert_int_equal(cid_worker(pkt + 1, QUIC_CID_LEN), (int)w);
    }
    pkt[1] = 4; /* names no worker of 4 */
    assert_true(steer_index(pkt, sizeof(pkt), 4) >= 4);
    pkt[0] = 0xc0; /* long header: client-chosen DCID */
    pkt[1] = 0;
    assert_true(steer_index(pkt, sizeof(pkt), 4) >= 4);
    assert_int_equal(steer_index(pkt, 0, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tx_queue),        cmocka_unit_test(test_tx_chunk_sizing),
        cmocka_unit_test(test_rx_reassembly),   cmocka_unit_test(test_cid_table),
        cmocka_unit_test(test_cid_table_cache), cmocka_unit_test(test_tbucket),
        cmocka_unit_test(test_steer_index),
    };
    return cmocka_run_group_tests_name("quic_parts", tests, NULL, NULL);
}
