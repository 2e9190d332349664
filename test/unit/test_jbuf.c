/* The jitter buffer of roost-cli call (relay/cli/jbuf): in-order play,
 * reordering, loss concealed with the next packet's FEC or with PLC, late
 * and duplicate packets, DTX pauses (no FEC, no loss, playout re-anchored),
 * a sender whose timing fell behind playout (resync),
 * target delay growing with jitter and shrinking when it calms down, the
 * max-delay bound. Time is simulated: 1 ms steps, a get every 20 ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "relay/cli/jbuf.h"

#define MS 1000000ull
#define FRAME_TS 960

struct pkt {
    uint32_t seq, ts;
    uint64_t at; /* arrival, ns */
};

/* What each get returned: kind and, for FRAME/FEC, the first payload byte
 * (the packet's seq & 0xff). */
struct trace {
    enum jbuf_kind kind[4096];
    uint8_t tag[4096];
    unsigned n;
    unsigned late, dup;
};

static struct jbuf *mk(uint32_t min_ms, uint32_t max_ms)
{
    struct jbuf_config cfg = {
        .rate = 48000, .frame_ts = FRAME_TS, .min_delay_ms = min_ms, .max_delay_ms = max_ms};
    struct jbuf *jb = jbuf_new(&cfg);
    assert_non_null(jb);
    return jb;
}

/* Runs the clock from 0 to until_ns: packets delivered at their time
 * (in array order when equal), a get at every 20 ms tick from t0. */
static void run(struct jbuf *jb, const struct pkt *p, size_t n, uint64_t t0, uint64_t until,
                struct trace *tr)
{
    size_t next = 0;
    uint64_t tick = t0;
    for (uint64_t t = 0; t <= until; t += MS) {
        while (next < n && p[next].at <= t) {
            uint8_t data[4] = {(uint8_t)p[next].seq, 1, 2, 3};
            enum jbuf_put_result r = jbuf_put(jb, p[next].seq, p[next].ts, data, 4, t);
            tr->late += r == JBUF_LATE;
            tr->dup += r == JBUF_DUP;
            next++;
        }
        if (t == tick) {
            struct jbuf_out o;
            jbuf_get(jb, t, &o);
            assert_true(tr->n < 4096);
            tr->kind[tr->n] = o.kind;
            tr->tag[tr->n] = (o.kind == JBUF_FRAME || o.kind == JBUF_FEC) ? o.data[0] : 0xff;
            tr->n++;
            tick += 20 * MS;
        }
    }
}

/* Frames seq 0..n-1 at 20 ms, sent at 5 ms past the tick, plus delay. */
static size_t steady(struct pkt *p, uint32_t n, uint64_t start, uint64_t delay)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = (struct pkt){
            .seq = 100 + i, .ts = 5000 + i * FRAME_TS, .at = start + i * 20 * MS + delay};
    return n;
}

/* Tags of FRAME outputs, in order, into out; returns how many. */
static unsigned frames_played(const struct trace *tr, uint8_t *out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < tr->n; i++)
        if (tr->kind[i] == JBUF_FRAME)
            out[k++] = tr->tag[i];
    return k;
}

static unsigned count(const struct trace *tr, enum jbuf_kind kind)
{
    unsigned k = 0;
    for (unsigned i = 0; i < tr->n; i++)
        k += tr->kind[i] == kind;
    return k;
}

static void test_silence_then_in_order(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 400);
    struct pkt p[50];
    size_t n = steady(p, 50, 105 * MS, 0);
    struct trace tr = {0};
    run(jb, p, n, 0, 1400 * MS, &tr);
    assert_int_equal(tr.kind[0], JBUF_SILENCE); /* before the first packet */
    uint8_t got[64];
    assert_int_equal(frames_played(&tr, got), 50);
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(got[i], (uint8_t)(100 + i));
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.expected, 50);
    assert_int_equal(st.fec + st.plc, 0);
    assert_true(st.delay_ms >= 40 && st.delay_ms <= 60);
    jbuf_free(jb);
}

static void test_reorder(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 400);
    struct pkt p[40];
    size_t n = steady(p, 40, 105 * MS, 0);
    /* 10 and 11 swapped, 20 arrives 30 ms late (after 21): within the delay. */
    struct pkt t = p[10];
    p[10] = p[11];
    p[11] = t;
    p[10].at = p[11].at;
    p[20].at += 30 * MS;
    t = p[20];
    p[20] = p[21];
    p[21] = t;
    struct trace tr = {0};
    run(jb, p, n, 0, 1200 * MS, &tr);
    uint8_t got[64];
    assert_int_equal(frames_played(&tr, got), 40);
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(got[i], (uint8_t)(100 + i));
    assert_int_equal(tr.late, 0);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.lost, 0);
    jbuf_free(jb);
}

static void test_loss_fec_and_plc(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 400);
    struct pkt p[40];
    size_t n = steady(p, 40, 105 * MS, 0);
    /* Lose seq 110 (single: FEC from 111) and 120, 121 (PLC for 120,
     * FEC from 122 for 121). */
    struct pkt q[40];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i].seq != 110 && p[i].seq != 120 && p[i].seq != 121)
            q[m++] = p[i];
    struct trace tr = {0};
    run(jb, q, m, 0, 1200 * MS, &tr);
    unsigned fec = 0;
    for (unsigned i = 0; i < tr.n; i++) {
        if (tr.kind[i] == JBUF_FEC) {
            fec++;
            assert_true(tr.tag[i] == 111 || tr.tag[i] == 122);
            /* The FEC output is followed by its packet, played normally. */
            assert_int_equal(tr.kind[i + 1], JBUF_FRAME);
            assert_int_equal(tr.tag[i + 1], tr.tag[i]);
        }
        if (tr.kind[i] == JBUF_FRAME && tr.tag[i] == 119) {
            assert_int_equal(tr.kind[i + 1], JBUF_PLC);
            assert_int_equal(tr.kind[i + 2], JBUF_FEC);
        }
    }
    assert_int_equal(fec, 2);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.lost, 3);
    assert_int_equal(st.fec, 2);
    assert_int_equal(st.plc, 1);
    jbuf_free(jb);
}

static void test_late_and_dup(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 400);
    struct pkt p[41];
    steady(p, 40, 105 * MS, 0);
    p[15].at += 200 * MS; /* far past its slot */
    p[40] = p[5];         /* a duplicate, while 5 is still held */
    p[40].at = p[5].at + 1 * MS;
    /* keep arrival order */
    for (size_t i = 41; i-- > 1;)
        for (size_t j = 0; j < i; j++)
            if (p[j].at > p[j + 1].at) {
                struct pkt t = p[j];
                p[j] = p[j + 1];
                p[j + 1] = t;
            }
    struct trace tr = {0};
    struct jbuf_stats st0;
    jbuf_stats(jb, &st0);
    run(jb, p, 41, 0, 1200 * MS, &tr);
    assert_int_equal(tr.late, 1);
    assert_int_equal(tr.dup, 1);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.dup, 1);
    assert_int_equal(st.lost, 0); /* late is not lost on the wire */
    /* The late packet raised the target by about a frame. */
    assert_true(st.target_ms >= 40 + 15);
    jbuf_free(jb);
}

static void test_dtx_pause(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 400);
    /* 20 frames, a 1 s pause (ts jumps, seq continues), 20 frames. */
    struct pkt p[40];
    steady(p, 20, 105 * MS, 0);
    for (uint32_t i = 0; i < 20; i++)
        p[20 + i] = (struct pkt){.seq = 120 + i,
                                 .ts = 5000 + (70 + i) * FRAME_TS,
                                 .at = 105 * MS + (70 + i) * 20 * MS + 3 * MS};
    struct trace tr = {0};
    run(jb, p, 40, 0, 2400 * MS, &tr);
    uint8_t got[64];
    assert_int_equal(frames_played(&tr, got), 40);
    assert_int_equal(count(&tr, JBUF_FEC), 0); /* nothing was lost */
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.plc, 0);
    assert_true(st.pause >= 40);
    assert_int_equal(st.spurts, 2);
    jbuf_free(jb);
}

/* Arrival jitter up to 80 ms for 10 s, then none for 20 s: the target
 * grows above 60 ms, then decays back to near the minimum. */
static void test_adapts(void **state)
{
    (void)state;
    struct jbuf *jb = mk(20, 300);
    static struct pkt p[1500];
    uint64_t rnd = 12345;
    for (uint32_t i = 0; i < 1500; i++) {
        uint64_t j = 0;
        if (i < 500) {
            rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
            j = (rnd >> 33) % 80;
        }
        p[i] = (struct pkt){.seq = i, .ts = i * FRAME_TS, .at = 105 * MS + i * 20 * MS + j * MS};
    }
    for (size_t i = 1; i < 1500; i++)
        for (size_t j = i; j > 0 && p[j - 1].at > p[j].at; j--) {
            struct pkt t = p[j];
            p[j] = p[j - 1];
            p[j - 1] = t;
        }
    /* First 10 s. */
    struct trace *tr = calloc(1, sizeof(*tr));
    assert_non_null(tr);
    size_t n10 = 0;
    while (n10 < 1500 && p[n10].at <= 10100 * MS)
        n10++;
    run(jb, p, n10, 0, 10100 * MS, tr);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_true(st.target_ms >= 60);
    assert_true(st.jitter_ms > 5);
    /* Few late packets once adapted: under 5 % over the jittery part. */
    assert_true(st.late < 25);
    uint32_t high = st.target_ms;
    /* Then 20 s calm: same clock continued. */
    for (size_t i = n10; i < 1500; i++) {
        uint8_t d[2] = {(uint8_t)p[i].seq, 0};
        uint64_t t = p[i].at;
        jbuf_put(jb, p[i].seq, p[i].ts, d, 2, t);
        struct jbuf_out o;
        jbuf_get(jb, t + 1 * MS, &o);
    }
    jbuf_stats(jb, &st);
    assert_true(st.target_ms < high);
    assert_true(st.target_ms <= 35);
    free(tr);
    jbuf_free(jb);
}

/* A burst ahead of time (40 packets at once, as a sender that reads ahead
 * would send them): no packet is played after waiting more than max_delay;
 * the rest of the burst is skipped and the stream goes on. */
static void test_bound(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 200);
    struct pkt p[60];
    steady(p, 60, 105 * MS, 0);
    for (size_t i = 10; i < 50; i++)
        p[i].at = p[10].at;
    struct trace tr = {0};
    run(jb, p, 60, 0, 1600 * MS, &tr);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_true(st.skips > 0);
    assert_true(st.delay_ms <= 200 + 20);
    uint8_t got[64];
    unsigned k = frames_played(&tr, got);
    /* Played in order: the burst's first 200 ms (plus the frame due), then
     * the stream after it. */
    assert_true(k > 20);
    for (unsigned i = 1; i < k; i++)
        assert_true((uint8_t)(got[i] - got[i - 1]) >= 1);
    assert_true(st.skips >= 25);
    assert_int_equal(got[k - 1], 159);
    jbuf_free(jb);
}

/* A jitter spike (frames 10..19 come 150 ms late) raises the target and
 * stretches playout; once calm, the target decays and the delay comes
 * back down by dropping quiet frames (1 byte against 10: the noise floor
 * between words), in order, never a loud one. */
static void test_shrink_on_quiet(void **state)
{
    (void)state;
    struct jbuf *jb = mk(20, 400);
    enum { N = 500 };
    uint64_t tick = 0, at[N];
    for (unsigned i = 0; i < N; i++)
        at[i] = 105 * MS + i * 20 * MS + (i >= 10 && i < 20 ? 150 * MS : 0);
    unsigned next = 0, played = 0, quiet_played = 0;
    uint32_t last = 0, delay_max = 0;
    for (uint64_t t = 0; t <= (N * 20 + 600) * MS; t += MS) {
        while (next < N && at[next] <= t) {
            uint8_t d[10] = {(uint8_t)next};
            size_t len = next % 5 == 0 ? 1 : 10;
            jbuf_put(jb, next, next * FRAME_TS, d, len, t);
            next++;
        }
        if (t == tick) {
            struct jbuf_out o;
            jbuf_get(jb, t, &o);
            if (o.kind == JBUF_FRAME) {
                uint32_t seq = o.ts / FRAME_TS;
                assert_true(played == 0 || seq > last);
                last = seq;
                played++;
                quiet_played += o.len == 1;
            }
            struct jbuf_stats st;
            jbuf_stats(jb, &st);
            if (st.delay_ms > delay_max)
                delay_max = st.delay_ms;
            tick += 20 * MS;
        }
    }
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_true(st.stretches > 0);
    assert_true(delay_max >= 100);
    assert_true(st.shrinks > 0);
    /* Down to within two frames of the target, from far above it. */
    assert_true(st.delay_ms < st.target_ms + 40);
    assert_true(st.delay_ms + 40 <= delay_max);
    /* Only quiet frames were dropped. */
    assert_int_equal(played + st.shrinks + st.late + st.skips, N);
    assert_true(played - quiet_played + st.late >= N - N / 5); /* every loud one, or late */
    jbuf_free(jb);
}

/* The player stalls for 500 ms, then reads what arrived meanwhile and runs
 * the missed gets at once, at their nominal times: nothing is skipped or
 * concealed. */
static void test_player_stall(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 200);
    struct pkt p[60];
    steady(p, 60, 105 * MS, 0);
    size_t next = 0;
    unsigned played = 0;
    for (uint64_t tick = 0; tick <= 1600 * MS; tick += 20 * MS) {
        /* The gets due between 400 and 900 ms run at 900 ms. */
        uint64_t now = tick >= 400 * MS && tick < 900 * MS ? 900 * MS : tick;
        while (next < 60 && p[next].at <= now) {
            uint8_t d[1] = {(uint8_t)p[next].seq};
            jbuf_put(jb, p[next].seq, p[next].ts, d, 1, now);
            next++;
        }
        struct jbuf_out o;
        jbuf_get(jb, tick, &o);
        played += o.kind == JBUF_FRAME;
    }
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.skips, 0);
    assert_int_equal(st.late, 0);
    assert_int_equal(played, 60);
    jbuf_free(jb);
}

/* The sender stalls for 1.5 s and carries on with the next timestamp (its
 * clock skipped): every new packet is behind playout. After three late in
 * a row the buffer starts over and plays the rest. */
static void test_resync(void **state)
{
    (void)state;
    struct jbuf *jb = mk(40, 400);
    struct pkt p[60];
    steady(p, 60, 105 * MS, 0);
    for (size_t i = 20; i < 60; i++)
        p[i].at += 1500 * MS;
    struct trace tr = {0};
    run(jb, p, 60, 0, 3000 * MS, &tr);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.resyncs, 1);
    assert_int_equal(st.late, 2);
    uint8_t got[64];
    unsigned k = frames_played(&tr, got);
    assert_int_equal(k, 58);
    assert_int_equal(got[20], 122); /* 120, 121 late; 122 starts over */
    assert_int_equal(got[57], 159);
    jbuf_free(jb);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct jbuf_config bad = {.rate = 0, .frame_ts = 960};
    assert_null(jbuf_new(&bad));
    struct jbuf *jb = mk(0, 0);
    uint8_t big[JBUF_PAYLOAD_MAX + 1] = {0};
    assert_int_equal(jbuf_put(jb, 1, 0, big, sizeof(big), 0), JBUF_INVAL);
    assert_int_equal(jbuf_put(jb, 1, 0, big, 0, 0), JBUF_INVAL);
    struct jbuf_stats st;
    jbuf_stats(jb, &st);
    assert_int_equal(st.target_ms, 20); /* min_delay 0: one frame */
    assert_int_equal(st.expected, 0);
    jbuf_free(jb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silence_then_in_order),
        cmocka_unit_test(test_reorder),
        cmocka_unit_test(test_loss_fec_and_plc),
        cmocka_unit_test(test_late_and_dup),
        cmocka_unit_test(test_dtx_pause),
        cmocka_unit_test(test_adapts),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_shrink_on_quiet),
        cmocka_unit_test(test_player_stall),
        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
