/* Trunks between relays (docs/CLUSTER.md §2), end to end: three in-process
 * relays on loopback in static_home mode (r0 is every room's home),
 * participants of one room ("demo") spread over the three. Exact delivery
 * (every frame to every other participant once, each frame crossing each
 * trunk once), presence (everyone sees everyone, joins and leaves in
 * order), a late joiner on a non-home relay gets the keyframe of a
 * publisher on the other non-home relay, a lost trunk comes back (counted)
 * with media flowing again and a replayed keyframe delivered once, a
 * relay with the wrong cluster secret or a taken pid prefix is refused,
 * and fencing by home generation. test_cluster_trunk_rooms.c has the
 * tests of other rooms (QUALITY, permissions, keep-alive, rooms closing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "../common/caseguard.h"
#include "../common/clusterfx.h"
#include "../common/echo_app.h"
#include "../common/participant.h"
#include "proto/errcode.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/quality.h"
#include "relay/metrics.h"
#include "relay/trunk.h"

#define WAIT_MS 15000
#define NR 3
#define PER 2
#define NP (NR * PER)
#define K 20

static struct clusterfx_static fx;
static struct part v[NP];
static char bad_secret_file[64] = "/tmp/roost-trunk-bad-XXXXXX";

static struct trunk_stats tstats(unsigned i)
{
    return clusterfx_trunk_stats(&fx.tr[i]);
}

static int group_setup(void **state)
{
    (void)state;
    if (clusterfx_secret_file(bad_secret_file, "not-the-cluster-secret-at-all\n") != 0)
        return -1;
    return clusterfx_static_setup(&fx, &part_cbs);
}

static int group_teardown(void **state)
{
    (void)state;
    clusterfx_static_teardown(&fx);
    unlink(bad_secret_file);
    return 0;
}

/* Presence first: media starts once everyone sees everyone. */
static void test_presence(void **state)
{
    (void)state;
    for (unsigned i = 0; i < NP; i++) {
        char id[16];
        snprintf(id, sizeof(id), "user-%u", i);
        clusterfx_static_join(&fx, &v[i], i / PER, "demo", id, TOKEN_PERM_ALL);
    }
    struct clusterfx_grp g = {v, NP, NP - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    for (unsigned i = 0; i < NP; i++) {
        /* cluster-unique ids: the relay's prefix in the top byte */
        for (unsigned j = 0; j < NP; j++) {
            if (i == j)
                continue;
            assert_int_not_equal(v[i].pid, v[j].pid);
            assert_true(clusterfx_knows(&v[i], v[j].pid));
        }
    }
    for (unsigned i = 0; i < NR; i++)
        assert_int_equal(tstats(i).auth_failures, 0);
    assert_int_equal(tstats(0).trunks_up, 2);
    assert_int_equal(tstats(1).trunks_up, 1);
    assert_int_equal(tstats(2).trunks_up, 1);
}

/* On a failure: where frames went missing. */
static void dump(void)
{
    for (unsigned i = 0; i < NP; i++)
        fprintf(stderr, "# part %u pid %u media %u\n", i, v[i].pid, v[i].n_media);
    for (unsigned i = 0; i < NR; i++) {
        struct trunk_stats t = tstats(i);
        struct relay_stats rs;
        relay_stats(fx.tr[i].r, &rs);
        struct relay_worker_stats ws;
        uint64_t cw = 0, dq = 0, dl = 0, ds = 0;
        for (unsigned w = 0; w < relay_workers(fx.tr[i].r); w++) {
            relay_worker_stats(fx.tr[i].r, w, &ws);
            cw += ws.quic.dgram_drop_cwnd;
            dq += ws.quic.dgram_drop_queue;
            dl += ws.quic.dgram_lost;
            ds += ws.quic.dgram_drop_state;
        }
        fprintf(stderr,
                "# r%u trunk out %llu in %llu unknown %llu stale %llu | room in %llu out %llu "
                "dropped %llu | quic cwnd %llu queue %llu lost %llu state %llu\n",
                i, (unsigned long long)t.frames_out, (unsigned long long)t.frames_in,
                (unsigned long long)t.unknown_drops, (unsigned long long)t.stale_gen_drops,
                (unsigned long long)rs.media_in, (unsigned long long)rs.media_out,
                (unsigned long long)rs.media_dropped, (unsigned long long)cw,
                (unsigned long long)dq, (unsigned long long)dl, (unsigned long long)ds);
    }
}

static void check_exact(uint32_t base_seq)
{
    for (unsigned m = 0; m < NP; m++) {
        struct part *p = &v[m];
        uint8_t seen[NP][K];
        memset(seen, 0, sizeof(seen));
        unsigned got = 0;
        for (uint32_t k = 0; k < p->n_media; k++) {
            if (p->media[k].seq < base_seq)
                continue;
            uint32_t s = p->media[k].seq - base_seq;
            uint32_t idx = s / 1000, q = s % 1000;
            assert_true(idx < NP && q < K);
            assert_int_not_equal(idx, m);
            assert_int_equal(p->media[k].sender, v[idx].pid);
            assert_int_equal(seen[idx][q], 0);
            seen[idx][q] = 1;
            got++;
        }
        assert_int_equal(got, (NP - 1) * K);
    }
}

static void send_round(uint32_t base_seq)
{
    for (unsigned k = 0; k < K; k++) {
        for (unsigned i = 0; i < NP; i++)
            assert_int_equal(part_send(&v[i], base_seq + i * 1000 + k), 0);
        roost_client_step(fx.cl, 1);
    }
}

static void test_exact_delivery(void **state)
{
    (void)state;
    struct trunk_stats before[NR];
    for (unsigned i = 0; i < NR; i++)
        before[i] = tstats(i);
    uint32_t had[NP];
    for (unsigned i = 0; i < NP; i++)
        had[i] = v[i].n_media;
    send_round(0);
    struct clusterfx_grp g = {v, NP, (NP - 1) * K};
    bool ok = echo_client_until(fx.cl, clusterfx_all_media, &g, WAIT_MS);
    if (!ok)
        dump();
    assert_true(ok);
    for (int i = 0; i < 20; i++) /* anything extra would arrive now */
        roost_client_step(fx.cl, 5);
    for (unsigned i = 0; i < NP; i++)
        assert_int_equal(v[i].n_media - had[i], (NP - 1) * K);
    check_exact(0);
    /* Each frame crosses each trunk once: a non-home relay sends its own
     * PER*K frames up; the home sends every frame not from a relay to that
     * relay: 2 trunks x (NP - PER) * K. */
    uint64_t out[NR], in[NR];
    for (unsigned i = 0; i < NR; i++) {
        struct trunk_stats st = tstats(i);
        out[i] = st.frames_out - before[i].frames_out;
        in[i] = st.frames_in - before[i].frames_in;
        assert_int_equal(st.stale_gen_drops, 0);
        assert_int_equal(st.unknown_drops, 0);
    }
    assert_int_equal(out[1], PER * K);
    assert_int_equal(out[2], PER * K);
    assert_int_equal(out[0], 2 * (NP - PER) * K);
    assert_int_equal(in[0], 2 * PER * K);
    assert_int_equal(in[1], (NP - PER) * K);
    assert_int_equal(in[2], (NP - PER) * K);
}

/* A keyframe published on r2 reaches a participant joining r1 later,
 * from r1's own cache (fed by what came over its trunk). */
static void test_late_joiner_keyframe(void **state)
{
    (void)state;
    struct part *pub = &v[NP - 1]; /* on r2 */
    uint8_t d[MEDIA_C2R_HDR_LEN + 40];
    struct media_hdr h = {.stream_id = 1,
                          .flags = MEDIA_F_KEYFRAME | MEDIA_F_START | MEDIA_F_END | MEDIA_F_VIDEO,
                          .seq = 777777,
                          .timestamp = 1};
    assert_true(media_c2r_encode(&h, d, sizeof(d)) > 0);
    memset(d + MEDIA_C2R_HDR_LEN, 0x4b, sizeof(d) - MEDIA_C2R_HDR_LEN);
    assert_int_equal(roost_conn_send_datagram(pub->c, d, sizeof(d)), 0);
    /* everyone live gets it, r1's members included: r1's cache has it */
    struct clusterfx_frame w = {&v[PER], pub->pid, 777777};
    assert_true(echo_client_until(fx.cl, clusterfx_got_frame, &w, WAIT_MS));
    static struct part late;
    clusterfx_static_join(&fx, &late, 1, "demo", "late-joiner", TOKEN_PERM_ALL);
    struct clusterfx_frame lw = {&late, pub->pid, 777777};
    assert_true(echo_client_until(fx.cl, clusterfx_got_frame, &lw, WAIT_MS));
    struct clusterfx_grp g = {&late, 1, NP};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    part_leave(&late);
    struct clusterfx_grp back = {v, NP, NP - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &back, WAIT_MS));
}

/* Presence ordering (issue 18): participants that join r1 and leave as
 * soon as they are JOINED, without waiting for anyone to see them. Their
 * JOIN and LEAVE cross the trunks back to back and may be applied in one
 * turn on r0 and r2; every member must see each of them as JOIN then LEAVE,
 * or not at all (before the fix some saw a LEAVE alone). A marker joining
 * each of r1 and r2 afterwards is seen after that relay's churn on every
 * path (presence is ordered per trunk and per room), so once everyone
 * knows both markers the churn has arrived. */
static bool is_joined(void *arg)
{
    return ((struct part *)arg)->joined;
}

struct mw {
    uint32_t pid;
};

static bool all_know_pid(void *arg)
{
    const struct mw *w = arg;
    for (unsigned i = 0; i < NP; i++)
        if (!clusterfx_knows(&v[i], w->pid))
            return false;
    return true;
}

struct blinks {
    struct part *p;
    unsigned n;
    bool left[16];
};

static bool blinked(void *arg)
{
    struct blinks *b = arg;
    unsigned done = 0;
    for (unsigned k = 0; k < b->n; k++) {
        if (b->p[k].joined && !b->left[k]) {
            assert_int_equal(part_leave(&b->p[k]), 0);
            b->left[k] = true;
        }
        done += b->left[k];
    }
    return done == b->n;
}

static void test_presence_join_leave(void **state)
{
    (void)state;
    enum { CHURN = 10 };
    static struct part t[CHURN], marker[2];
    struct blinks b = {t, CHURN, {0}};
    for (unsigned k = 0; k < CHURN; k++) {
        char id[16];
        snprintf(id, sizeof(id), "blink-%u", k);
        clusterfx_static_join(&fx, &t[k], 1 + k % 2, "demo", id, TOKEN_PERM_ALL); /* r1, r2 */
    }
    /* all at once: each LEAVE goes out in the step that saw its JOINED */
    assert_true(echo_client_until(fx.cl, blinked, &b, WAIT_MS));
    clusterfx_static_join(&fx, &marker[0], 1, "demo", "marker-1", TOKEN_PERM_ALL);
    clusterfx_static_join(&fx, &marker[1], 2, "demo", "marker-2", TOKEN_PERM_ALL);
    for (unsigned k = 0; k < 2; k++) {
        assert_true(echo_client_until(fx.cl, is_joined, &marker[k], WAIT_MS));
        struct mw w = {marker[k].pid};
        assert_true(echo_client_until(fx.cl, all_know_pid, &w, WAIT_MS));
    }
    for (unsigned i = 0; i < NP; i++) {
        for (unsigned k = 0; k < CHURN; k++) {
            uint8_t seq[8];
            unsigned n = 0;
            for (uint32_t e = 0; e < v[i].n_events; e++)
                if (v[i].events[e].pid == t[k].pid && n < 8)
                    seq[n++] = v[i].events[e].kind;
            if (n != 0 && !(n == 2 && seq[0] == MSG_EV_JOIN && seq[1] == MSG_EV_LEAVE)) {
                fprintf(stderr, "# part %u saw blink-%u (pid %u) as", i, k, t[k].pid);
                for (unsigned e = 0; e < n; e++)
                    fprintf(stderr, " %s", seq[e] == MSG_EV_JOIN ? "JOIN" : "LEAVE");
                fprintf(stderr, "\n");
                fail();
            }
        }
    }
    part_leave(&marker[0]);
    part_leave(&marker[1]);
    struct clusterfx_grp back = {v, NP, NP - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &back, WAIT_MS));
}

/* A relay with another secret: its trunk to the home is refused on both
 * ends, and its participant sees nobody. */
static void test_wrong_secret(void **state)
{
    (void)state;
    uint64_t home_fail = tstats(0).auth_failures;
    assert_int_equal(clusterfx_static_start(&fx.tr[NR], NR, 1, bad_secret_file, fx.tr[0].port, 0),
                     0);
    static struct part lone;
    clusterfx_static_join(&fx, &lone, NR, "demo", "intruder", TOKEN_PERM_ALL);
    struct clusterfx_grp g = {&lone, 1, 0};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    for (int i = 0;
         i < 600 && (tstats(0).auth_failures == home_fail || tstats(NR).auth_failures == 0); i++)
        roost_client_step(fx.cl, 10);
    assert_true(tstats(0).auth_failures > home_fail);
    assert_true(tstats(NR).auth_failures > 0);
    assert_int_equal(tstats(NR).trunks_up, 0);
    assert_int_equal(clusterfx_known(&lone), 0);
    /* nobody in demo saw it */
    for (unsigned i = 0; i < NP; i++)
        assert_false(clusterfx_knows(&v[i], lone.pid));
    test_relay_stop(&fx.tr[NR]);
    fx.tr[NR].r = NULL;
}

/* A relay configured with r0's pid_prefix (1): its trunk to the home is
 * refused at HELLO on both ends (TRUNK_ERR_PREFIX, counted, in /metrics),
 * and nobody sees its participant. */
static bool has_metric(struct relay *r, const char *line)
{
    char *text = NULL;
    size_t tlen = 0;
    if (metrics_render(r, &text, &tlen) != 0)
        return false;
    bool found = strstr(text, line) != NULL;
    free(text);
    return found;
}

static void test_prefix_conflict(void **state)
{
    (void)state;
    uint64_t home_conf = tstats(0).prefix_conflicts;
    uint32_t had[NP];
    for (unsigned i = 0; i < NP; i++)
        had[i] = v[i].n_events;
    assert_int_equal(clusterfx_static_start(&fx.tr[NR], NR, 1, fx.secret_file, fx.tr[0].port, 1),
                     0);
    static struct part twin;
    clusterfx_static_join(&fx, &twin, NR, "demo", "twin", TOKEN_PERM_ALL);
    struct clusterfx_grp g = {&twin, 1, 0};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    for (int i = 0;
         i < 600 && (tstats(0).prefix_conflicts == home_conf || tstats(NR).prefix_conflicts == 0);
         i++)
        roost_client_step(fx.cl, 10);
    assert_true(tstats(0).prefix_conflicts > home_conf);
    assert_true(tstats(NR).prefix_conflicts > 0);
    assert_int_equal(tstats(NR).trunks_up, 0);
    assert_int_equal(tstats(NR).auth_failures, 0);
    char line[64];
    snprintf(line, sizeof(line), "roost_trunk_prefix_conflicts %llu\n",
             (unsigned long long)tstats(NR).prefix_conflicts);
    assert_true(has_metric(fx.tr[NR].r, line));
    assert_true(has_metric(fx.tr[0].r, "roost_trunk_prefix_conflicts "));
    assert_int_equal(clusterfx_known(&twin), 0);
    /* nobody in demo saw it (its id may well equal one of r0's) */
    for (unsigned i = 0; i < NP; i++)
        assert_int_equal(v[i].n_events, had[i]);
    test_relay_stop(&fx.tr[NR]);
    fx.tr[NR].r = NULL;
}

/* A lost trunk (r1's, closed as a failed path would be) comes back by
 * itself: counted as a reconnect with its gap, presence rebuilt on both
 * sides, and media exact again. */
struct upw {
    unsigned relay;
    uint64_t reconnects;
};

static bool reconnected(void *arg)
{
    struct upw *w = arg;
    struct trunk_stats st = tstats(w->relay);
    return st.reconnects > w->reconnects && st.trunks_up == 1;
}

static void test_trunk_lost(void **state)
{
    (void)state;
    struct trunk_stats b1 = tstats(1);
    assert_int_equal(trunk_test_drop(fx.tr[1].r), 0);
    struct upw w = {1, b1.reconnects};
    assert_true(echo_client_until(fx.cl, reconnected, &w, WAIT_MS));
    struct trunk_stats a1 = tstats(1);
    assert_int_equal(a1.trunks_lost, b1.trunks_lost + 1);
    assert_true(a1.gap_ns > b1.gap_ns);
    fprintf(stderr, "# trunk gap %.1f ms\n", (double)(a1.gap_ns - b1.gap_ns) / 1e6);
    char *text = NULL;
    size_t tlen = 0;
    assert_int_equal(metrics_render(fx.tr[1].r, &text, &tlen), 0);
    char line[64];
    snprintf(line, sizeof(line), "roost_trunk_reconnects %llu\n",
             (unsigned long long)a1.reconnects);
    assert_non_null(strstr(text, line));
    assert_non_null(strstr(text, "roost_trunk_gap_seconds_total "));
    free(text);
    struct clusterfx_grp g = {v, NP, NP - 1};
    bool ok = echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS);
    for (unsigned i = 0; i < NP && !ok; i++) {
        fprintf(stderr, "# part %u pid %u knows %u (joined %d):", i, v[i].pid,
                clusterfx_known(&v[i]), v[i].joined);
        for (uint32_t k = 0; k < v[i].n_events; k++)
            fprintf(stderr, " %c%u", v[i].events[k].kind == MSG_EV_JOIN ? '+' : '-',
                    v[i].events[k].pid);
        fprintf(stderr, "\n");
    }
    assert_true(ok);
    uint32_t had[NP];
    for (unsigned i = 0; i < NP; i++)
        had[i] = v[i].n_media;
    send_round(1000000);
    for (unsigned i = 0; i < NP; i++) {
        struct clusterfx_grp one = {&v[i], 1, had[i] + (NP - 1) * K};
        assert_true(echo_client_until(fx.cl, clusterfx_all_media, &one, WAIT_MS));
    }
    for (int i = 0; i < 20; i++)
        roost_client_step(fx.cl, 5);
    check_exact(1000000);
}

/* Keyframes exactly once after a re-subscription (issue 18): r1's
 * members got a keyframe of r2's publisher live; r1's trunk is lost and
 * comes back, and the home replays its cache down the new subscription.
 * r1 recognises the replay as frames it already fanned out: its members do
 * not get them again (before: twice, or the replay was dropped because the
 * sender's remote member had not joined yet), yet r1's new cache has them,
 * so a participant joining r1 afterwards gets the keyframe. */
static unsigned copies(const struct part *p, uint32_t sender, uint32_t seq)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < p->n_media; i++)
        n += p->media[i].sender == sender && p->media[i].seq == seq;
    return n;
}

struct dupw {
    unsigned relay;
    uint64_t dups;
};

static bool replay_seen(void *arg)
{
    struct dupw *w = arg;
    return tstats(w->relay).replay_dups > w->dups;
}

static void test_replay_once(void **state)
{
    (void)state;
    struct part *pub = &v[NP - 1]; /* on r2 */
    uint8_t d[MEDIA_C2R_HDR_LEN + 40];
    struct media_hdr h = {.stream_id = 1,
                          .flags = MEDIA_F_KEYFRAME | MEDIA_F_START | MEDIA_F_END | MEDIA_F_VIDEO,
                          .seq = 888888,
                          .timestamp = 2};
    assert_true(media_c2r_encode(&h, d, sizeof(d)) > 0);
    memset(d + MEDIA_C2R_HDR_LEN, 0x4c, sizeof(d) - MEDIA_C2R_HDR_LEN);
    assert_int_equal(roost_conn_send_datagram(pub->c, d, sizeof(d)), 0);
    for (unsigned i = PER; i < 2 * PER; i++) {
        struct clusterfx_frame w = {&v[i], pub->pid, 888888};
        assert_true(echo_client_until(fx.cl, clusterfx_got_frame, &w, WAIT_MS));
        assert_int_equal(copies(&v[i], pub->pid, 888888), 1);
    }
    struct trunk_stats b1 = tstats(1);
    assert_int_equal(trunk_test_drop(fx.tr[1].r), 0);
    struct upw u = {1, b1.reconnects};
    assert_true(echo_client_until(fx.cl, reconnected, &u, WAIT_MS));
    struct dupw dw = {1, b1.replay_dups};
    assert_true(echo_client_until(fx.cl, replay_seen, &dw, WAIT_MS));
    assert_true(tstats(1).replay_in > b1.replay_in);
    struct clusterfx_grp g = {v, NP, NP - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    for (int i = 0; i < 20; i++)
        roost_client_step(fx.cl, 5);
    for (unsigned i = PER; i < 2 * PER; i++)
        assert_int_equal(copies(&v[i], pub->pid, 888888), 1);
    static struct part late;
    clusterfx_static_join(&fx, &late, 1, "demo", "after-replay", TOKEN_PERM_ALL);
    struct clusterfx_frame lw = {&late, pub->pid, 888888};
    assert_true(echo_client_until(fx.cl, clusterfx_got_frame, &lw, WAIT_MS));
    assert_int_equal(copies(&late, pub->pid, 888888), 1);
    part_leave(&late);
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
}

/* Fencing: the directory tells r1 that demo's home generation is now 2
 * while r0 holds it with 1. r1 re-subscribes with 2, r0 refuses
 * (STALE_GEN), both count it; r1's participants lose the remote members
 * and get no more frames from the others, r2 is unaffected; an older
 * generation afterwards is ignored. */
struct rejw {
    unsigned relay;
    uint64_t want;
};

static bool rejected(void *arg)
{
    struct rejw *w = arg;
    return tstats(w->relay).subs_rejected >= w->want;
}

static void test_fencing(void **state)
{
    (void)state;
    struct trunk_stats b0 = tstats(0), b1 = tstats(1);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", fx.tr[0].port);
    assert_int_equal(trunk_test_home(fx.tr[1].r, "demo", false, "r0", addr, 2), 0);
    struct rejw w1 = {1, b1.subs_rejected + 1}, w0 = {0, b0.subs_rejected + 1};
    assert_true(echo_client_until(fx.cl, rejected, &w1, WAIT_MS));
    assert_true(echo_client_until(fx.cl, rejected, &w0, WAIT_MS));
    assert_true(tstats(0).stale_gen_drops > b0.stale_gen_drops);
    /* r1's members see only each other now; r2's see r0's and their own */
    struct clusterfx_grp g1 = {&v[PER], PER, PER - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g1, WAIT_MS));
    struct clusterfx_grp g2 = {&v[2 * PER], PER, 2 * PER - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g2, WAIT_MS));
    uint32_t had1 = v[PER].n_media;
    assert_int_equal(part_send(&v[0], 3000000), 0);
    struct clusterfx_frame w = {&v[2 * PER], v[0].pid, 3000000};
    assert_true(echo_client_until(fx.cl, clusterfx_got_frame, &w, WAIT_MS));
    for (int i = 0; i < 20; i++)
        roost_client_step(fx.cl, 5);
    assert_int_equal(v[PER].n_media, had1);
    /* an older generation than the one followed: ignored (r0 would accept
     * a re-subscription with 1 and presence would come back) */
    uint64_t acc0 = tstats(0).subs_accepted;
    assert_int_equal(trunk_test_home(fx.tr[1].r, "demo", false, "r0", addr, 1), 0);
    for (int i = 0; i < 40; i++)
        roost_client_step(fx.cl, 5);
    assert_int_equal(tstats(0).subs_accepted, acc0);
    assert_int_equal(tstats(1).subs_rejected, b1.subs_rejected + 1);
    assert_int_equal(clusterfx_known(&v[PER]), PER - 1);
    /* r0 loses the home (gone with generation 1): the subscription it had
     * accepted from r2 ends (SUB_ACK NOT_HOME), so r0's and r2's members
     * see only their own relay's. */
    uint64_t rej2 = tstats(2).subs_rejected;
    assert_int_equal(trunk_test_gone(fx.tr[0].r, "demo", 1), 0);
    struct rejw w2 = {2, rej2 + 1};
    assert_true(echo_client_until(fx.cl, rejected, &w2, WAIT_MS));
    struct clusterfx_grp g0 = {&v[0], PER, PER - 1}, g2b = {&v[2 * PER], PER, PER - 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g0, WAIT_MS));
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g2b, WAIT_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASEGUARD_TEST(test_presence),
        CASEGUARD_TEST(test_exact_delivery),
        CASEGUARD_TEST(test_late_joiner_keyframe),
        CASEGUARD_TEST(test_presence_join_leave),
        CASEGUARD_TEST(test_trunk_lost),
        CASEGUARD_TEST(test_replay_once),
        CASEGUARD_TEST(test_wrong_secret),
        CASEGUARD_TEST(test_prefix_conflict),
        CASEGUARD_TEST(test_fencing),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
