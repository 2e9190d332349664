/* Keyframe cache and audio prefill state machine (lib/room/kfcache), fed
 * relay datagrams on fake time: buffering until END, promotion, flushing
 * by a non-keyframe packet, replacement, the byte cap, clearing, prefill
 * window and order. Every buffer must come back (buf_live). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/media.h"
#include "room/kfcache.h"

#define MS 1000000ull

static struct kfcache_view *_Atomic slot;
static int64_t base;

static struct buf *pkt(uint8_t stream, uint8_t flags, uint32_t seq, uint32_t payload)
{
    struct buf *b = buf_new(MEDIA_R2C_HDR_LEN + payload);
    assert_non_null(b);
    struct media_hdr h = {.participant_id = 7, .stream_id = stream, .flags = flags, .seq = seq};
    assert_int_equal(media_r2c_encode(&h, b->data, b->cap), MEDIA_R2C_HDR_LEN);
    memset(b->data + MEDIA_R2C_HDR_LEN, (int)seq, payload);
    b->len = MEDIA_R2C_HDR_LEN + payload;
    return b;
}

/* Feeds one packet; returns the feed result. */
static int feed(struct kfcache *c, uint8_t stream, uint8_t flags, uint32_t seq, uint32_t payload,
                uint64_t now)
{
    struct buf *b = pkt(stream, flags, seq, payload);
    int rc = kfcache_feed(c, b, now);
    buf_unref(b);
    return rc;
}

static uint32_t seq_of(struct buf *b)
{
    struct media_hdr h;
    assert_int_equal(media_r2c_decode(b->data, b->len, &h), MEDIA_R2C_HDR_LEN);
    return h.seq;
}

/* The published view as a list of sequence numbers. */
static uint32_t view_seqs(uint32_t *out, uint32_t cap)
{
    const struct kfcache_view *v = atomic_load(&slot);
    uint32_t n = kfcache_view_count(v);
    assert_true(n <= cap);
    for (uint32_t i = 0; i < n; i++)
        out[i] = seq_of(kfcache_view_packet(v, i));
    return n;
}

static struct kfcache *mk(uint32_t cap, uint32_t prefill_ms)
{
    struct kfcache *c;
    struct kfcache_config cfg = {.cap_bytes = cap, .prefill_ms = prefill_ms};
    atomic_store(&slot, NULL);
    assert_int_equal(kfcache_new(&c, &cfg, &slot), 0);
    return c;
}

static void done(struct kfcache *c)
{
    kfcache_del(c);
    assert_null(atomic_load(&slot));
    rcu_barrier();
    assert_int_equal(buf_live(), base);
}

#define KF (MEDIA_F_KEYFRAME | MEDIA_F_VIDEO)
#define VID MEDIA_F_VIDEO

static void test_buffered_until_end(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    assert_int_equal(feed(c, 1, KF | MEDIA_F_START, 1, 100, 0), 0);
    assert_int_equal(feed(c, 1, KF, 2, 100, 0), 0);
    /* Not END yet: nothing published. */
    assert_null(atomic_load(&slot));
    assert_int_equal(kfcache_view_count(atomic_load(&slot)), 0);
    done(c);
}

static void test_promoted_on_end(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    feed(c, 1, KF | MEDIA_F_START, 1, 100, 0);
    feed(c, 1, KF, 2, 100, 0);
    assert_int_equal(feed(c, 1, KF | MEDIA_F_END, 3, 100, 0), KFCACHE_EV_PROMOTED);
    uint32_t s[8];
    assert_int_equal(view_seqs(s, 8), 3);
    assert_int_equal(s[0], 1);
    assert_int_equal(s[1], 2);
    assert_int_equal(s[2], 3);
    /* Delta frames after it leave it in place. */
    feed(c, 1, VID | MEDIA_F_START | MEDIA_F_END, 4, 50, 0);
    assert_int_equal(view_seqs(s, 8), 3);
    done(c);
}

static void test_partial_flushed(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 1, 100, 0); /* cached */
    feed(c, 1, KF | MEDIA_F_START, 2, 100, 0);
    assert_int_equal(feed(c, 1, VID, 3, 100, 0), KFCACHE_EV_DISCARDED);
    /* The late END of the flushed keyframe starts a new one-packet frame,
     * not a promotion of 2..4: only the END packet itself. */
    feed(c, 1, KF | MEDIA_F_END, 4, 100, 0);
    uint32_t s[8];
    assert_int_equal(view_seqs(s, 8), 1);
    assert_int_equal(s[0], 4);
    struct kfcache_stats cs;
    kfcache_stats(c, &cs);
    assert_int_equal(cs.discarded, 1);
    done(c);
}

static void test_partial_flushed_keeps_old(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 1, 100, 0);
    feed(c, 1, KF | MEDIA_F_START, 2, 100, 0);
    feed(c, 1, VID, 3, 100, 0);
    uint32_t s[8];
    assert_int_equal(view_seqs(s, 8), 1);
    assert_int_equal(s[0], 1);
    done(c);
}

static void test_second_replaces_first(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    feed(c, 1, KF | MEDIA_F_START, 1, 100, 0);
    feed(c, 1, KF | MEDIA_F_END, 2, 100, 0);
    feed(c, 1, VID, 3, 100, 0);
    feed(c, 1, KF | MEDIA_F_START, 4, 100, 0);
    feed(c, 1, KF, 5, 100, 0);
    feed(c, 1, KF | MEDIA_F_END, 6, 100, 0);
    uint32_t s[8];
    assert_int_equal(view_seqs(s, 8), 3);
    assert_int_equal(s[0], 4);
    assert_int_equal(s[2], 6);
    /* Other streams are independent and come in stream order. */
    feed(c, 0, KF | MEDIA_F_START | MEDIA_F_END, 7, 100, 0);
    assert_int_equal(view_seqs(s, 8), 4);
    assert_int_equal(s[0], 7);
    assert_int_equal(s[1], 4);
    done(c);
}

static void test_over_cap_not_cached(void **st)
{
    (void)st;
    struct kfcache *c = mk(1000, 0);
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 1, 100, 0);
    feed(c, 1, KF | MEDIA_F_START, 2, 400, 0);
    assert_int_equal(feed(c, 1, KF, 3, 400, 0), 0);
    /* 3 x 416 bytes > 1000. */
    assert_int_equal(feed(c, 1, KF, 4, 400, 0), KFCACHE_EV_OVER_CAP);
    assert_int_equal(feed(c, 1, KF | MEDIA_F_END, 5, 400, 0), 0);
    /* Not cached, and the older keyframe went as stale. */
    assert_int_equal(kfcache_view_count(atomic_load(&slot)), 0);
    struct kfcache_stats cs;
    kfcache_stats(c, &cs);
    assert_int_equal(cs.over_cap, 1);
    assert_int_equal(cs.promoted, 1);
    /* The next keyframe within the cap is cached again. */
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 6, 100, 0);
    uint32_t s[8];
    assert_int_equal(view_seqs(s, 8), 1);
    assert_int_equal(s[0], 6);
    done(c);
}

static void test_cleared(void **st)
{
    (void)st;
    int64_t b0 = buf_live();
    struct kfcache *c = mk(0, 50);
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 1, 100, 0);
    feed(c, 0, 0, 2, 100, 0); /* audio prefill */
    assert_int_equal(kfcache_view_count(atomic_load(&slot)), 2);
    kfcache_clear(c);
    assert_null(atomic_load(&slot));
    rcu_barrier();
    assert_int_equal(buf_live(), b0);
    /* Usable again after a clear (the sender joins another room). */
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 3, 100, 0);
    assert_int_equal(kfcache_view_count(atomic_load(&slot)), 1);
    done(c);
}

static void test_prefill_window(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 200);
    /* 20 ms audio frames for 1 s: the last 200 ms remain, in order. */
    for (uint32_t i = 0; i < 50; i++)
        feed(c, 0, MEDIA_F_START | MEDIA_F_END, 100 + i, 80, (uint64_t)i * 20 * MS);
    uint32_t s[64];
    uint32_t n = view_seqs(s, 64);
    assert_int_equal(n, 10);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(s[i], 140 + i);
    /* Video is not prefilled; keyframes come before prefill. */
    feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 7, 100, 49 * 20 * MS);
    n = view_seqs(s, 64);
    assert_int_equal(n, 11);
    assert_int_equal(s[0], 7);
    assert_int_equal(s[1], 140);
    done(c);
}

static void test_prefill_cap(void **st)
{
    (void)st;
    struct kfcache *c = mk(500, 1000);
    for (uint32_t i = 0; i < 10; i++)
        feed(c, 0, 0, i, 100, (uint64_t)i * MS); /* 116 bytes each */
    uint32_t s[16];
    uint32_t n = view_seqs(s, 16);
    assert_int_equal(n, 4);
    assert_int_equal(s[0], 6);
    assert_int_equal(s[3], 9);
    done(c);
}

static void test_prefill_off_by_default(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    for (uint32_t i = 0; i < 10; i++)
        feed(c, 0, MEDIA_F_START | MEDIA_F_END, i, 80, (uint64_t)i * 20 * MS);
    assert_null(atomic_load(&slot));
    done(c);
}

/* One sender tries to exhaust its worker (issue 16): 256 streams of
 * keyframes of 40 tiny packets each. What it holds stays within the
 * sender's caps (real memory and packets, all streams together), and the
 * buffers alive are those the caps allow. */
static void test_sender_caps(void **st)
{
    (void)st;
    struct kfcache *c;
    struct kfcache_config cfg = {.sender_cap_bytes = 64u * 1024u, .sender_cap_pkts = 300};
    atomic_store(&slot, NULL);
    assert_int_equal(kfcache_new(&c, &cfg, &slot), 0);
    uint32_t seq = 0;
    for (unsigned round = 0; round < 3; round++)
        for (unsigned s = 0; s < 256; s++)
            for (uint32_t k = 0; k < 40; k++) {
                uint8_t f = KF | (k == 0 ? MEDIA_F_START : 0) | (k == 39 ? MEDIA_F_END : 0);
                feed(c, (uint8_t)s, f, seq++, 16, 0);
                struct kfcache_stats cs;
                kfcache_stats(c, &cs);
                assert_true(cs.mem <= cfg.sender_cap_bytes);
                assert_true(cs.pkts <= cfg.sender_cap_pkts);
            }
    struct kfcache_stats cs;
    kfcache_stats(c, &cs);
    assert_true(cs.promoted >= 7); /* 300 packets: 7 keyframes of 40 */
    assert_true(cs.over_cap > 0);
    rcu_barrier();
    /* Held by the cache (once in its arrays, once in the view: one buffer). */
    assert_true(buf_live() - base <= (int64_t)cfg.sender_cap_pkts);
    rcu_read_lock();
    assert_true(kfcache_view_count(atomic_load(&slot)) <= cfg.sender_cap_pkts);
    rcu_read_unlock();
    done(c);
}

/* A promotion republishes only its stream: the packets of the other
 * streams are not referenced again (the old code took one reference per
 * cached packet of every stream for every new view). */
static void test_republish_one_stream(void **st)
{
    (void)st;
    struct kfcache *c = mk(0, 0);
    feed(c, 0, KF | MEDIA_F_START, 1, 100, 0);
    feed(c, 0, KF | MEDIA_F_END, 2, 100, 0);
    rcu_read_lock();
    struct buf *b0 = kfcache_view_packet(atomic_load(&slot), 0);
    rcu_read_unlock();
    assert_int_equal(seq_of(b0), 1);
    uint32_t refs = atomic_load(&b0->refs);
    for (uint32_t i = 0; i < 50; i++)
        feed(c, 1, KF | MEDIA_F_START | MEDIA_F_END, 100 + i, 100, 0);
    assert_int_equal(atomic_load(&b0->refs), refs);
    uint32_t s[8];
    assert_int_equal(view_seqs(s, 8), 3);
    assert_int_equal(s[0], 1);
    assert_int_equal(s[1], 2);
    assert_int_equal(s[2], 149);
    done(c);
}

static int setup(void **st)
{
    (void)st;
    base = buf_live();
    return 0;
}

int main(void)
{
    rcu_register_thread();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_buffered_until_end, setup),
        cmocka_unit_test_setup(test_promoted_on_end, setup),
        cmocka_unit_test_setup(test_partial_flushed, setup),
        cmocka_unit_test_setup(test_partial_flushed_keeps_old, setup),
        cmocka_unit_test_setup(test_second_replaces_first, setup),
        cmocka_unit_test_setup(test_over_cap_not_cached, setup),
        cmocka_unit_test_setup(test_cleared, setup),
        cmocka_unit_test_setup(test_prefill_window, setup),
        cmocka_unit_test_setup(test_prefill_cap, setup),
        cmocka_unit_test_setup(test_prefill_off_by_default, setup),
        cmocka_unit_test_setup(test_sender_caps, setup),
        cmocka_unit_test_setup(test_republish_one_stream, setup),
    };
    int rc = cmocka_run_group_tests_name("kfcache", tests, NULL, NULL);
    rcu_unregister_thread();
    return rc;
}
