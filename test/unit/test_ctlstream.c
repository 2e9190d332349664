/* Inbound control-stream reassembly (ctl_rx_feed) under every way the
 * stream can be cut: a stream of frames is fed byte by byte, in every
 * split into two pieces, and at every chunk size, with length prefixes of
 * every varint length (1, 2, 4 and non-minimal 8 bytes) and bodies up to
 * FRAME_MAX_BODY. Every body must come out exactly once, intact and in
 * order. Run under ASan (make check-asan) this also checks that no split
 * writes past the receive buffer: an 8-byte prefix with a FRAME_MAX_BODY
 * body is 4 bytes longer than FRAME_MAX_HDR + FRAME_MAX_BODY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "proto/frame.h"
#include "quic/ctlstream.h"

#define MAX_FRAMES 8

/* What the callback saw: the bodies, concatenated, and their lengths. */
struct seen {
    uint8_t *bytes;
    size_t len, cap;
    size_t lens[MAX_FRAMES * 2];
    size_t n;
};

static void on_body(const uint8_t *body, size_t len, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < MAX_FRAMES * 2);
    assert_true(s->len + len <= s->cap);
    memcpy(s->bytes + s->len, body, len);
    s->len += len;
    s->lens[s->n++] = len;
}

/* Writes v as a varint of exactly `size` bytes (1, 2, 4, 8). */
static size_t put_varint(uint8_t *p, uint64_t v, size_t size)
{
    uint8_t top = size == 1 ? 0x00 : size == 2 ? 0x40 : size == 4 ? 0x80 : 0xc0;
    for (size_t i = 0; i < size; i++)
        p[i] = (uint8_t)(v >> (8 * (size - 1 - i)));
    p[0] |= top;
    return size;
}

struct stream {
    uint8_t *wire;
    size_t len;
    uint8_t *bodies; /* the bodies concatenated */
    size_t blen;
    size_t lens[MAX_FRAMES];
    size_t n;
};

static void stream_add(struct stream *st, size_t body_len, size_t prefix_size, uint8_t seed)
{
    assert_true(st->n < MAX_FRAMES);
    st->len += put_varint(st->wire + st->len, body_len, prefix_size);
    for (size_t i = 0; i < body_len; i++) {
        uint8_t b = (uint8_t)(seed + i * 7);
        st->wire[st->len++] = b;
        st->bodies[st->blen++] = b;
    }
    st->lens[st->n++] = body_len;
}

static void stream_init(struct stream *st, size_t cap)
{
    memset(st, 0, sizeof(*st));
    st->wire = malloc(cap);
    st->bodies = malloc(cap);
    assert_non_null(st->wire);
    assert_non_null(st->bodies);
}

static void stream_free(struct stream *st)
{
    free(st->wire);
    free(st->bodies);
}

/* Feeds st->wire in pieces: cuts[] are the piece ends (ascending, the last
 * == st->len); checks every body came out once, intact, in order. */
static void feed_cuts(const struct stream *st, const size_t *cuts, size_t ncuts)
{
    struct ctl_rx r;
    struct seen s = {0};
    s.cap = st->blen;
    s.bytes = malloc(s.cap + 1);
    assert_non_null(s.bytes);
    ctl_rx_init(&r);
    size_t off = 0;
    for (size_t i = 0; i < ncuts; i++) {
        size_t n = cuts[i] - off;
        /* Each piece in its own allocation of exactly its size, as ngtcp2
         * hands it over: ASan sees any read past the piece. */
        uint8_t *piece = malloc(n > 0 ? n : 1);
        assert_non_null(piece);
        memcpy(piece, st->wire + off, n);
        assert_int_equal(ctl_rx_feed(&r, piece, n, on_body, &s), (int)n);
        free(piece);
        off = cuts[i];
    }
    assert_int_equal(off, st->len);
    assert_int_equal(s.n, st->n);
    for (size_t i = 0; i < st->n; i++)
        assert_int_equal(s.lens[i], st->lens[i]);
    assert_int_equal(s.len, st->blen);
    assert_memory_equal(s.bytes, st->bodies, st->blen);
    assert_int_equal(r.len, 0);
    ctl_rx_free(&r);
    free(s.bytes);
}

static void feed_chunked(const struct stream *st, size_t chunk)
{
    size_t ncuts = (st->len + chunk - 1) / chunk;
    size_t *cuts = malloc(ncuts * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < ncuts; i++)
        cuts[i] = (i + 1) * chunk < st->len ? (i + 1) * chunk : st->len;
    feed_cuts(st, cuts, ncuts);
    free(cuts);
}

/* Small frames with every prefix length, including non-minimal ones: byte
 * by byte, every two-piece split, every three-piece split. */
static void test_small_every_split(void **state)
{
    (void)state;
    struct stream st;
    stream_init(&st, 4096);
    stream_add(&st, 3, 1, 1);
    stream_add(&st, 5, 8, 2);  /* non-minimal: 8-byte prefix for 5 */
    stream_add(&st, 1, 2, 3);  /* non-minimal 2-byte */
    stream_add(&st, 70, 2, 4); /* minimal 2-byte */
    stream_add(&st, 2, 4, 5);  /* non-minimal 4-byte */
    stream_add(&st, 9, 8, 6);
    feed_chunked(&st, 1);
    for (size_t a = 0; a <= st.len; a++) {
        size_t cuts[2] = {a, st.len};
        feed_cuts(&st, cuts, 2);
    }
    for (size_t a = 0; a <= st.len; a += 3)
        for (size_t b = a; b <= st.len; b += 2) {
            size_t cuts[3] = {a, b, st.len};
            feed_cuts(&st, cuts, 3);
        }
    stream_free(&st);
}

/* The largest bodies behind 8-byte prefixes: the tail left over after a
 * piece can be 8 + FRAME_MAX_BODY - 1 bytes, which must fit the buffer. */
static void test_max_body_nonminimal(void **state)
{
    (void)state;
    static const size_t sizes[] = {8, 4, 2, 1}; /* the 8-byte case first */
    for (size_t k = 0; k < 4; k++) {
        struct stream st;
        stream_init(&st, 3 * (8 + FRAME_MAX_BODY));
        stream_add(&st, FRAME_MAX_BODY, sizes[k] >= 2 ? 8 : 4, 11);
        stream_add(&st, 1, 8, 12);
        stream_add(&st, FRAME_MAX_BODY, sizes[k] >= 4 ? 4 : 8, 13);
        /* One piece that ends one byte before the first body does: the
         * whole incomplete message is copied aside in one go. */
        size_t first = 8 + FRAME_MAX_BODY;
        for (size_t d = 1; d <= 9; d++) {
            size_t cuts[3] = {first - d, first + 9 + 3, st.len};
            feed_cuts(&st, cuts, 3);
        }
        for (size_t a = first - 16; a <= first + 16; a++) {
            size_t cuts[2] = {a, st.len};
            feed_cuts(&st, cuts, 2);
        }
        feed_chunked(&st, sizes[k]);
        feed_chunked(&st, 1200);
        feed_chunked(&st, st.len);
        stream_free(&st);
    }
}

/* A prefix above FRAME_MAX_BODY is refused in any split, also when it is
 * written non-minimally and arrives byte by byte. */
static void test_too_big_any_split(void **state)
{
    (void)state;
    uint8_t wire[16];
    size_t n = put_varint(wire, FRAME_MAX_BODY + 1, 8);
    for (size_t a = 0; a < n; a++) {
        struct ctl_rx r;
        struct seen s = {0};
        ctl_rx_init(&r);
        int rc = ctl_rx_feed(&r, wire, a, on_body, &s);
        assert_int_equal(rc, (int)a);
        assert_int_equal(ctl_rx_feed(&r, wire + a, n - a, on_body, &s), ROOST_ETOOBIG);
        assert_int_equal(s.n, 0);
        ctl_rx_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_every_split),
        cmocka_unit_test(test_max_body_nonminimal),
        cmocka_unit_test(test_too_big_any_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
