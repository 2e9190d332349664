/* Trunks between relays (docs/CLUSTER.md §2), rooms other than
 * test_cluster_trunk.c's "demo", on three in-process relays in static_home
 * mode (r0 is every room's home): QUALITY and KEYFRAME_REQUEST cross the
 * trunks to the publisher, permissions hold (and presence mirrors them)
 * across relays, a trunk with no room traffic stays up (keep-alive), and
 * a room spanning a trunk closes on both relays once its members left. */
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
#define K 20

static struct clusterfx_static fx;

/* What the participants' client sees beyond struct part (participant.c):
 * QUALITY summaries and KEYFRAME_REQUESTs, by connection. */
#define NX 8
static struct xrec {
    struct part *p;
    uint32_t n_summaries;
    struct quality_summary last;
    uint32_t n_kfreq;
    uint8_t kfreq_stream;
} xr[NX];

static struct xrec *xrec_of(struct part *p)
{
    for (unsigned i = 0; i < NX; i++)
        if (xr[i].p == p)
            return &xr[i];
    return NULL;
}

/* Member flags (MSG_MEMBER_PUBLISHER) each watched participant was told,
 * by JOINED or a JOIN event: what presence says of a member's permissions. */
#define NF 4
static struct frec {
    struct part *p;
    uint32_t n;
    uint32_t pid[16];
    uint8_t flags[16];
} fr[NF];

static void frec_note(struct part *p, uint32_t pid, uint8_t flags)
{
    for (unsigned i = 0; i < NF; i++) {
        if (fr[i].p != p)
            continue;
        for (uint32_t k = 0; k < fr[i].n; k++) {
            if (fr[i].pid[k] == pid) {
                fr[i].flags[k] = flags;
                return;
            }
        }
        if (fr[i].n < 16) {
            fr[i].pid[fr[i].n] = pid;
            fr[i].flags[fr[i].n++] = flags;
        }
        return;
    }
}

/* The flags p was told for pid, or -1 when it heard of no JOIN. */
static int frec_flags(const struct part *p, uint32_t pid)
{
    for (unsigned i = 0; i < NF; i++)
        for (uint32_t k = 0; fr[i].p == p && k < fr[i].n; k++)
            if (fr[i].pid[k] == pid)
                return fr[i].flags[k];
    return -1;
}

static void frec_control(struct part *p, const uint8_t *body, size_t len)
{
    bool watched = false;
    for (unsigned i = 0; i < NF; i++)
        watched |= p != NULL && fr[i].p == p;
    if (!watched || len == 0 || (body[0] != MSG_JOINED && body[0] != MSG_PARTICIPANT_EVENTS))
        return;
    struct msg *m = malloc(sizeof(*m));
    if (m != NULL && msg_decode(body, len, m) == 0) {
        if (m->type == MSG_JOINED)
            for (uint32_t i = 0; i < m->u.joined.n_members; i++)
                frec_note(p, m->u.joined.members[i].participant_id, m->u.joined.members[i].flags);
        else
            for (uint32_t i = 0; i < m->u.events.n_events; i++)
                if (m->u.events.events[i].kind == MSG_EV_JOIN)
                    frec_note(p, m->u.events.events[i].participant_id, m->u.events.events[i].flags);
    }
    free(m);
}

static void x_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    frec_control(roost_conn_user(c), body, len);
    struct xrec *x = xrec_of(roost_conn_user(c));
    if (x != NULL && len > 0 && body[0] == MSG_QUALITY) {
        struct msg_quality q;
        struct quality_summary sum;
        if (quality_summary_decode(body, len, &q, &sum) == 1) {
            x->n_summaries++;
            x->last = sum;
        }
    } else if (x != NULL && len > 0 && body[0] == MSG_KEYFRAME_REQUEST) {
        struct msg *m = malloc(sizeof(*m));
        if (m != NULL && msg_decode(body, len, m) == 0) {
            x->n_kfreq++;
            x->kfreq_stream = m->u.keyframe_request.stream_id;
        }
        free(m);
    }
    part_cbs.on_control(c, body, len, arg);
}

static struct trunk_stats tstats(unsigned i)
{
    return clusterfx_trunk_stats(&fx.tr[i]);
}

static int group_setup(void **state)
{
    (void)state;
    static struct roost_client_callbacks cbs;
    cbs = part_cbs;
    cbs.on_control = x_control;
    return clusterfx_static_setup(&fx, &cbs);
}

static int group_teardown(void **state)
{
    (void)state;
    clusterfx_static_teardown(&fx);
    return 0;
}

/* QUALITY and KEYFRAME_REQUEST cross the trunks to the publisher (issue
 * 18). Room "qual": the publisher on r2, receivers on r0 (the home) and on
 * r1 (two trunk hops away, through the home). The publisher's QUALITY
 * summary counts both remote receivers (before, it described only r2's
 * hidden member, a receiver with a perfect link), and a KEYFRAME_REQUEST
 * from r1 reaches it. */
struct qw {
    struct xrec *x;
    uint32_t want_receivers;
    uint32_t worst_a, worst_b;
};

static bool summary_is(void *arg)
{
    struct qw *w = arg;
    const struct quality_summary *q = &w->x->last;
    return w->x->n_summaries > 0 && q->receivers == w->want_receivers &&
           (q->worst_pid == w->worst_a || q->worst_pid == w->worst_b);
}

static bool kfreq_in(void *arg)
{
    return ((struct xrec *)arg)->n_kfreq > 0;
}

static void test_quality_kfreq(void **state)
{
    (void)state;
    static struct part pub, r0rx, r1rx;
    clusterfx_static_join(&fx, &pub, 2, "qual", "q-pub", TOKEN_PERM_ALL);
    clusterfx_static_join(&fx, &r0rx, 0, "qual", "q-home", TOKEN_PERM_ALL);
    clusterfx_static_join(&fx, &r1rx, 1, "qual", "q-far", TOKEN_PERM_ALL);
    xr[0] = (struct xrec){.p = &pub};
    struct part *all3[3] = {&pub, &r0rx, &r1rx};
    for (unsigned i = 0; i < 3; i++) {
        struct clusterfx_grp g = {all3[i], 1, 2};
        assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    }
    struct trunk_stats q1 = tstats(1), q2 = tstats(2);
    struct qw w = {&xr[0], 2, r0rx.pid, r1rx.pid};
    bool ok = echo_client_until(fx.cl, summary_is, &w, WAIT_MS);
    if (!ok)
        fprintf(stderr, "# summaries %u: receivers %u worst %u (want 2, %u or %u)\n",
                xr[0].n_summaries, xr[0].last.receivers, xr[0].last.worst_pid, r0rx.pid, r1rx.pid);
    assert_true(ok);
    assert_true(tstats(1).quality_out > q1.quality_out); /* r1 -> home */
    assert_true(tstats(0).quality_in > 0);
    assert_true(tstats(2).quality_in > q2.quality_in); /* home -> r2 */
    /* a keyframe request from r1 for the publisher's stream 3 */
    uint64_t k1 = tstats(1).kfreq_relayed, k0 = tstats(0).kfreq_relayed;
    struct msg m = {.type = MSG_KEYFRAME_REQUEST};
    m.u.keyframe_request.participant_id = pub.pid;
    m.u.keyframe_request.stream_id = 3;
    uint8_t body[32];
    int n = msg_encode_body(&m, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(roost_conn_send_control(r1rx.c, body, (size_t)n), 0);
    assert_true(echo_client_until(fx.cl, kfreq_in, &xr[0], WAIT_MS));
    assert_int_equal(xr[0].kfreq_stream, 3);
    assert_int_equal(xr[0].n_kfreq, 1);
    assert_int_equal(tstats(1).kfreq_relayed, k1 + 1);
    assert_int_equal(tstats(0).kfreq_relayed, k0 + 1);
    assert_int_equal(r1rx.n_errors, 0);
    part_leave(&r1rx);
    part_leave(&r0rx);
    part_leave(&pub);
    xr[0].p = NULL;
}

/* Permissions across relays (issue 18). Room "perm": a subscribe-only
 * participant on r1 (a subscriber relay), a publish-only one on r1 too, a
 * full one on r2 and one on r0 (the home). Presence mirrors permissions:
 * everyone, on every relay, sees the subscribe-only member's JOIN without
 * the publisher flag and the others' with it. The subscribe-only member's
 * datagrams are dropped at r1 (counted there, ERROR NOT_PERMITTED) and
 * never cross a trunk; publishers on r0 and r2 reach it through two and
 * one trunk hops; the publish-only member reaches the others and receives
 * nothing. */
static bool sub_only_got(void *arg)
{
    struct part **p = arg; /* sub-only, publish-only, r2, r0 */
    return p[0]->n_media >= 3 * K && p[2]->n_media >= 2 * K && p[3]->n_media >= 2 * K &&
           p[0]->n_errors > 0;
}

static void test_permissions(void **state)
{
    (void)state;
    static struct part so, po, p2, p0;
    struct part *all[4] = {&so, &po, &p2, &p0};
    for (unsigned i = 0; i < 4; i++)
        fr[i] = (struct frec){.p = all[i]};
    clusterfx_static_join(&fx, &so, 1, "perm", "sub-only", TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE);
    clusterfx_static_join(&fx, &po, 1, "perm", "pub-only", TOKEN_PERM_JOIN | TOKEN_PERM_PUBLISH);
    clusterfx_static_join(&fx, &p2, 2, "perm", "pub-r2", TOKEN_PERM_ALL);
    clusterfx_static_join(&fx, &p0, 0, "perm", "pub-home", TOKEN_PERM_ALL);
    for (unsigned i = 0; i < 4; i++) {
        struct clusterfx_grp g = {all[i], 1, 3};
        assert_true(echo_client_until(fx.cl, clusterfx_all_know, &g, WAIT_MS));
    }
    for (unsigned i = 0; i < 4; i++) {
        for (unsigned j = 0; j < 4; j++) {
            if (i == j)
                continue;
            int want = j == 0 ? 0 : MSG_MEMBER_PUBLISHER;
            int got = frec_flags(all[i], all[j]->pid);
            if (got != want)
                fprintf(stderr, "# %s sees %s with flags %d, want %d\n", all[i]->name, all[j]->name,
                        got, want);
            assert_int_equal(got, want);
        }
    }
    struct relay_stats b[NR];
    struct trunk_stats t[NR];
    for (unsigned i = 0; i < NR; i++) {
        relay_stats(fx.tr[i].r, &b[i]);
        t[i] = tstats(i);
    }
    /* each sender's k-th frame: seq 5000000 + sender * 1000 + k */
    for (unsigned k = 0; k < K; k++) {
        for (unsigned i = 0; i < 4; i++)
            assert_int_equal(part_send(all[i], 5000000 + i * 1000 + k), 0);
        roost_client_step(fx.cl, 1);
    }
    bool ok = echo_client_until(fx.cl, sub_only_got, all, WAIT_MS);
    if (!ok)
        for (unsigned i = 0; i < 4; i++)
            fprintf(stderr, "# %s media %u errors %u\n", all[i]->name, all[i]->n_media,
                    all[i]->n_errors);
    assert_true(ok);
    for (int i = 0; i < 20; i++) /* anything extra would arrive now */
        roost_client_step(fx.cl, 5);
    assert_int_equal(so.last_error, PROTO_ERR_NOT_PERMITTED);
    assert_int_equal(so.n_media, 3 * K);
    assert_int_equal(po.n_media, 0);
    assert_int_equal(p2.n_media, 2 * K);
    assert_int_equal(p0.n_media, 2 * K);
    for (unsigned i = 0; i < 4; i++) {
        unsigned from[4] = {0};
        for (uint32_t k = 0; k < all[i]->n_media; k++) {
            uint32_t s = all[i]->media[k].seq - 5000000, idx = s / 1000;
            assert_true(idx < 4 && idx != i && idx != 0);
            assert_int_equal(all[i]->media[k].sender, all[idx]->pid);
            from[idx]++;
        }
        for (unsigned j = 1; j < 4; j++)
            if (j != i && i != 1)
                assert_int_equal(from[j], K);
    }
    /* dropped at r1 and counted there; only the publish-only member's
     * frames went up r1's trunk, and the home sent r1 only r0's and r2's */
    struct relay_stats a[NR];
    for (unsigned i = 0; i < NR; i++)
        relay_stats(fx.tr[i].r, &a[i]);
    assert_int_equal(a[1].media_dropped - b[1].media_dropped, K);
    assert_int_equal(a[0].media_dropped, b[0].media_dropped);
    assert_int_equal(a[2].media_dropped, b[2].media_dropped);
    assert_int_equal(tstats(1).frames_out - t[1].frames_out, K);
    assert_int_equal(tstats(1).frames_in - t[1].frames_in, 2 * K);
    assert_int_equal(tstats(0).frames_in - t[0].frames_in, 2 * K); /* K from r1, K from r2 */
    assert_int_equal(tstats(2).frames_in - t[2].frames_in, 2 * K); /* r0's and r1's */
    for (unsigned i = 0; i < NR; i++)
        assert_int_equal(tstats(i).unknown_drops, t[i].unknown_drops);
    for (unsigned i = 0; i < 4; i++) {
        part_leave(all[i]);
        fr[i].p = NULL;
    }
}

/* Keep-alive: a trunk with no room traffic stays up past the idle
 * timeout (PING every third of it). Two relays of their own with a 1 s
 * idle timeout; one participant makes relay 1 dial the home, then leaves. */
struct upn {
    struct relay *r;
};

static bool trunk_up_pred(void *arg)
{
    struct upn *u = arg;
    struct trunk_stats st;
    trunk_stats_total(u->r, &st);
    return st.trunks_up == 1;
}

static void test_keepalive(void **state)
{
    (void)state;
    struct test_relay ka[2];
    const uint64_t idle = 1000000000ull;
    for (unsigned i = 0; i < 2; i++) {
        struct relay_config cfg = {.n_workers = 1, .idle_timeout_ns = idle};
        snprintf(cfg.cluster_relay_id, sizeof(cfg.cluster_relay_id), "k%u", i);
        cfg.cluster.pid_prefix = (uint8_t)(i + 1);
        snprintf(cfg.cluster_secret_file, sizeof(cfg.cluster_secret_file), "%s", fx.secret_file);
        snprintf(cfg.cluster_static_home, sizeof(cfg.cluster_static_home), "k0@127.0.0.1:%u",
                 i ? ka[0].port : 1u);
        assert_int_equal(test_relay_start(&ka[i], &cfg), 0);
    }
    static struct part p;
    assert_int_equal(clusterfx_join(fx.cl, &p, &ka[1], "quiet", "once", TOKEN_PERM_ALL), 0);
    struct upn u = {ka[1].r};
    assert_true(echo_client_until(fx.cl, trunk_up_pred, &u, WAIT_MS));
    roost_conn_close(p.c, PROTO_ERR_NO_ERROR);
    /* three idle timeouts without a room frame */
    for (int i = 0; i < 300; i++)
        roost_client_step(fx.cl, 10);
    struct trunk_stats st;
    trunk_stats_total(ka[1].r, &st);
    assert_int_equal(st.trunks_lost, 0);
    assert_int_equal(st.trunks_up, 1);
    for (unsigned i = 0; i < 2; i++)
        test_relay_stop(&ka[i]);
}

struct roomsw {
    struct relay *r;
    int64_t want;
};

static bool rooms_are(void *arg)
{
    struct roomsw *w = arg;
    struct relay_stats rs;
    relay_stats(w->r, &rs);
    return rs.rooms == w->want;
}

/* A room spanning a trunk closes on both relays once its members left
 * (REVIEW18 finding 3: the subscriber's hidden member and the home's kept
 * each other's room alive forever). r1 subscribes to the home r0. */
static void test_rooms_close(void **state)
{
    (void)state;
    struct relay_stats s0, s1;
    relay_stats(fx.tr[0].r, &s0);
    relay_stats(fx.tr[1].r, &s1);
    static struct part a, b;
    clusterfx_static_join(&fx, &a, 1, "closing", "sub-member", TOKEN_PERM_ALL);
    clusterfx_static_join(&fx, &b, 0, "closing", "home-member", TOKEN_PERM_ALL);
    struct clusterfx_grp ga = {&a, 1, 1}, gb = {&b, 1, 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &ga, WAIT_MS));
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &gb, WAIT_MS));
    struct roomsw w1 = {fx.tr[1].r, s1.rooms + 1}, w0 = {fx.tr[0].r, s0.rooms + 1};
    assert_true(rooms_are(&w1));
    assert_true(rooms_are(&w0));
    /* the subscriber's last member leaves: its room closes, the home's stays */
    assert_int_equal(part_leave(&a), 0);
    w1.want = s1.rooms;
    assert_true(echo_client_until(fx.cl, rooms_are, &w1, WAIT_MS));
    gb.want = 0;
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &gb, WAIT_MS));
    assert_true(rooms_are(&w0));
    /* and the home's when its last member leaves */
    assert_int_equal(part_leave(&b), 0);
    w0.want = s0.rooms;
    assert_true(echo_client_until(fx.cl, rooms_are, &w0, WAIT_MS));
    /* a new member on the subscriber subscribes again */
    static struct part c, d;
    clusterfx_static_join(&fx, &d, 0, "closing", "home-again", TOKEN_PERM_ALL);
    clusterfx_static_join(&fx, &c, 1, "closing", "sub-again", TOKEN_PERM_ALL);
    struct clusterfx_grp gc = {&c, 1, 1}, gd = {&d, 1, 1};
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &gc, WAIT_MS));
    assert_true(echo_client_until(fx.cl, clusterfx_all_know, &gd, WAIT_MS));
    part_leave(&c);
    part_leave(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASEGUARD_TEST(test_quality_kfreq),
        CASEGUARD_TEST(test_permissions),
        CASEGUARD_TEST(test_keepalive),
        CASEGUARD_TEST(test_rooms_close),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
