/* The relay end to end: an in-process roost relay on 127.0.0.1 and real
 * QUIC clients speaking the protocol. Exact delivery, presence, tokens,
 * permissions, duplicate identities, limits, and churn that must leave
 * zero rooms, zero sessions and every media buffer returned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "../common/echo_app.h"
#include "../common/participant.h"
#include "proto/errcode.h"
#include "proto/msg.h"

/* Deadline of a condition that must come (a failure bound, never a timing
 * assumption): 10 s was too short for a wave of 100 joins under ASan at
 * load 17+. */
#define WAIT_MS 30000

struct relay_wait {
    struct test_relay *tr;
    int64_t rooms;
    uint64_t conns;
};

static bool relay_drained(void *arg)
{
    struct relay_wait *w = arg;
    struct relay_stats st;
    relay_stats(w->tr->r, &st);
    return st.rooms == w->rooms && st.conns_open == w->conns;
}

static void join_all(struct roost_client *cl, struct test_relay *tr, struct part *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(part_connect(cl, tr->port, &v[i]), 0);
    struct part_set ps = {v, n, 0};
    assert_true(echo_client_until(cl, part_all_answered, &ps, WAIT_MS));
}

static void setup_part(struct test_relay *tr, struct part *p, const char *room,
                       const char *identity, unsigned perms)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->room, sizeof(p->room), "%s", room);
    snprintf(p->name, sizeof(p->name), "%s", identity);
    test_token(tr, room, identity, perms, 0, 600, p->token, sizeof(p->token));
}

/* ------------------------------------------------------- exact delivery */

/* affinity: relay_config.affinity_max_members (RELAY_AFFINITY_AUTO: the
 * default, RELAY_OFF: off). */
static void exact_delivery(unsigned n_workers, uint32_t affinity)
{
    enum { R = 4, S = 3, K = 20 };
    int64_t base = buf_live();
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = n_workers, .affinity_max_members = affinity};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    struct part *v = calloc(R * S, sizeof(*v));
    assert_non_null(v);
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < S; i++) {
            char room[16], id[16];
            snprintf(room, sizeof(room), "room-%u", r);
            snprintf(id, sizeof(id), "user-%u-%u", r, i);
            setup_part(&tr, &v[r * S + i], room, id, TOKEN_PERM_ALL);
        }
    join_all(cl, &tr, v, R * S);
    for (unsigned i = 0; i < R * S; i++)
        assert_true(v[i].joined);
    /* Paced: a few datagrams per member per loop step. */
    for (unsigned k = 0; k < K; k++) {
        for (unsigned i = 0; i < R * S; i++)
            assert_int_equal(part_send(&v[i], i * 1000 + k), 0);
        roost_client_step(cl, 1);
    }
    struct part_set d = {v, R * S, (S - 1) * K};
    assert_true(echo_client_until(cl, part_all_media, &d, WAIT_MS));
    for (int i = 0; i < 20; i++) /* anything extra would arrive now */
        roost_client_step(cl, 5);
    for (unsigned m = 0; m < R * S; m++) {
        struct part *p = &v[m];
        assert_int_equal(p->n_media, (S - 1) * K);
        uint8_t seen[R * S][K];
        memset(seen, 0, sizeof(seen));
        for (uint32_t k = 0; k < p->n_media; k++) {
            uint32_t idx = p->media[k].seq / 1000, q = p->media[k].seq % 1000;
            assert_true(idx < R * S && q < K);
            assert_int_equal(idx / S, m / S); /* never another room */
            assert_int_not_equal(idx, m);     /* never its own */
            assert_int_equal(p->media[k].sender, v[idx].pid);
            assert_int_equal(seen[idx][q], 0); /* once */
            seen[idx][q] = 1;
        }
    }
    struct relay_stats st;
    relay_stats(tr.r, &st);
    assert_int_equal(st.media_in, R * S * K);
    assert_int_equal(st.media_out, R * S * (S - 1) * K);
    assert_int_equal(st.rooms, R);
    assert_int_equal(st.participants, R * S);
    assert_int_equal(st.joins_ok, R * S);
    assert_int_equal(st.fanout_ring_drops, 0);
    /* With two workers the kernel spreads 12 connections over both (all
     * on one: p = 2^-11), so without room affinity frames crossed the
     * rings; with it (rooms of 3 within the limit) every member was moved
     * to its room's owner before it joined, so none did. */
    uint32_t amax = relay_affinity_max_members(tr.r);
    if (n_workers > 1 && amax == 0)
        assert_true(st.fanout_sent > 0);
    if (n_workers > 1 && amax >= S)
        assert_int_equal(st.fanout_sent, 0);
    roost_client_del(cl);
    free(v);
    /* Abrupt client exit: the relay notices at shutdown at the latest. */
    test_relay_stop(&tr);
    assert_int_equal(buf_live(), base);
}

static void test_exact_delivery_1w(void **state)
{
    (void)state;
    exact_delivery(1, RELAY_AFFINITY_AUTO);
}

/* Affinity pinned off: this one is about frames that cross the rings
 * (FANOUT to the other worker), which room affinity avoids for rooms this
 * small. */
static void test_exact_delivery_2w(void **state)
{
    (void)state;
    exact_delivery(2, RELAY_OFF);
}

/* The defaults (affinity auto: on under ebpf steering). */
static void test_exact_delivery_2w_defaults(void **state)
{
    (void)state;
    exact_delivery(2, RELAY_AFFINITY_AUTO);
}

/* ------------------------------------------------------------- presence */

static bool has_ev(struct part *p, uint8_t kind, uint32_t pid)
{
    return part_events(p, kind, pid) > 0;
}

struct evw {
    struct part *p;
    uint8_t kind;
    uint32_t pid;
};

static bool ev_pred(void *arg)
{
    struct evw *w = arg;
    return has_ev(w->p, w->kind, w->pid);
}

static void test_presence(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    struct part v[3];
    setup_part(&tr, &v[0], "pres", "a", TOKEN_PERM_ALL);
    setup_part(&tr, &v[1], "pres", "b", TOKEN_PERM_ALL);
    setup_part(&tr, &v[2], "pres", "c", TOKEN_PERM_ALL);
    join_all(cl, &tr, &v[0], 1);
    join_all(cl, &tr, &v[1], 1);
    assert_int_equal(v[1].joined_n, 1);
    assert_int_equal(v[1].joined_pids[0], v[0].pid);
    struct evw w = {&v[0], MSG_EV_JOIN, v[1].pid};
    assert_true(echo_client_until(cl, ev_pred, &w, WAIT_MS));
    join_all(cl, &tr, &v[2], 1);
    assert_int_equal(v[2].joined_n, 2);
    struct evw w1 = {&v[0], MSG_EV_JOIN, v[2].pid}, w2 = {&v[1], MSG_EV_JOIN, v[2].pid};
    assert_true(echo_client_until(cl, ev_pred, &w1, WAIT_MS));
    assert_true(echo_client_until(cl, ev_pred, &w2, WAIT_MS));
    /* c leaves: the relay closes it with NO_ERROR, the others see LEFT. */
    assert_int_equal(part_leave(&v[2]), 0);
    struct evw l1 = {&v[0], MSG_EV_LEAVE, v[2].pid}, l2 = {&v[1], MSG_EV_LEAVE, v[2].pid};
    assert_true(echo_client_until(cl, ev_pred, &l1, WAIT_MS));
    assert_true(echo_client_until(cl, ev_pred, &l2, WAIT_MS));
    struct part_set pc = {&v[2], 1, 0};
    assert_true(echo_client_until(cl, part_all_closed, &pc, WAIT_MS));
    assert_true(v[2].ci.remote && v[2].ci.app);
    assert_int_equal(v[2].ci.code, PROTO_ERR_NO_ERROR);
    for (int i = 0; i < 20; i++)
        roost_client_step(cl, 5);
    assert_int_equal(part_events(&v[0], MSG_EV_JOIN, v[1].pid), 1);
    assert_int_equal(part_events(&v[0], MSG_EV_JOIN, v[2].pid), 1);
    assert_int_equal(part_events(&v[1], MSG_EV_JOIN, v[2].pid), 1);
    assert_int_equal(part_events(&v[0], MSG_EV_LEAVE, v[2].pid), 1);
    assert_int_equal(part_events(&v[1], MSG_EV_LEAVE, v[2].pid), 1);
    assert_int_equal(v[1].n_events, 2); /* c joined, c left */
    assert_int_equal(v[2].n_events, 0);
    /* An abrupt disconnect ends in the same leave. */
    roost_conn_close(v[1].c, PROTO_ERR_NO_ERROR);
    struct evw l3 = {&v[0], MSG_EV_LEAVE, v[1].pid};
    assert_true(echo_client_until(cl, ev_pred, &l3, WAIT_MS));
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* ------------------------------------------------------------ tokens */

static void expect_reject(struct test_relay *tr, struct roost_client *cl, struct part *p,
                          uint32_t code)
{
    join_all(cl, tr, p, 1);
    assert_false(p->joined);
    assert_int_equal(p->reject_code, code);
}

static void test_tokens(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    struct part p;

    setup_part(&tr, &p, "t", "u", TOKEN_PERM_ALL);
    p.token[0] = '\0'; /* missing */
    expect_reject(&tr, cl, &p, PROTO_ERR_BAD_TOKEN);

    setup_part(&tr, &p, "t", "u", TOKEN_PERM_ALL);
    size_t n = strlen(p.token);
    p.token[n - 5] = p.token[n - 5] == 'A' ? 'B' : 'A'; /* tampered tag */
    expect_reject(&tr, cl, &p, PROTO_ERR_BAD_TOKEN);

    memset(&p, 0, sizeof(p));
    snprintf(p.room, sizeof(p.room), "t");
    test_token(&tr, "t", "u", TOKEN_PERM_ALL, -600, -300, p.token, sizeof(p.token));
    expect_reject(&tr, cl, &p, PROTO_ERR_TOKEN_EXPIRED);

    memset(&p, 0, sizeof(p));
    snprintf(p.room, sizeof(p.room), "t");
    test_token(&tr, "other", "u", TOKEN_PERM_ALL, 0, 600, p.token, sizeof(p.token));
    expect_reject(&tr, cl, &p, PROTO_ERR_WRONG_ROOM);

    memset(&p, 0, sizeof(p));
    snprintf(p.room, sizeof(p.room), "t");
    test_token(&tr, "t", "u", TOKEN_PERM_PUBLISH | TOKEN_PERM_SUBSCRIBE, 0, 600, p.token,
               sizeof(p.token)); /* no JOIN permission */
    expect_reject(&tr, cl, &p, PROTO_ERR_NOT_PERMITTED);

    struct relay_stats st;
    relay_stats(tr.r, &st);
    assert_int_equal(st.joins_ok, 0);
    assert_int_equal(st.rooms, 0);
    assert_int_equal(st.join_rejects, 5);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* ------------------------------------------------ permissions, replace */

static void test_permissions_and_replace(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    struct part v[4];
    setup_part(&tr, &v[0], "perm", "pub", TOKEN_PERM_ALL);
    setup_part(&tr, &v[1], "perm", "subonly", TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE);
    setup_part(&tr, &v[2], "perm", "pubonly", TOKEN_PERM_JOIN | TOKEN_PERM_PUBLISH);
    join_all(cl, &tr, v, 3);
    for (unsigned i = 0; i < 5; i++) {
        part_send(&v[0], i);
        part_send(&v[1], 100 + i); /* may not publish */
    }
    struct part_set d = {&v[1], 1, 5};
    assert_true(echo_client_until(cl, part_all_media, &d, WAIT_MS));
    for (int i = 0; i < 20; i++)
        roost_client_step(cl, 5);
    assert_int_equal(v[1].n_media, 5);
    assert_int_equal(v[2].n_media, 0); /* no subscribe permission */
    assert_int_equal(v[0].n_media, 0); /* the subscribe-only member's media went nowhere */
    struct relay_stats st;
    relay_stats(tr.r, &st);
    assert_int_equal(st.media_dropped, 5);

    /* Same identity again: the newer connection replaces the older. */
    setup_part(&tr, &v[3], "perm", "pub", TOKEN_PERM_ALL);
    join_all(cl, &tr, &v[3], 1);
    assert_true(v[3].joined);
    struct part_set pc = {&v[0], 1, 0};
    assert_true(echo_client_until(cl, part_all_closed, &pc, WAIT_MS));
    assert_true(v[0].ci.remote && v[0].ci.app);
    assert_int_equal(v[0].ci.code, PROTO_ERR_REPLACED);
    struct evw w = {&v[1], MSG_EV_LEAVE, v[0].pid};
    assert_true(echo_client_until(cl, ev_pred, &w, WAIT_MS));
    relay_stats(tr.r, &st);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.participants, 3);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* --------------------------------------------------------------- limits */

static void test_limits(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2, .max_members = 2, .max_rooms = 1};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    struct part v[4];
    setup_part(&tr, &v[0], "lim", "a", TOKEN_PERM_ALL);
    setup_part(&tr, &v[1], "lim", "b", TOKEN_PERM_ALL);
    join_all(cl, &tr, v, 2);
    assert_true(v[0].joined && v[1].joined);
    setup_part(&tr, &v[2], "lim", "c", TOKEN_PERM_ALL);
    expect_reject(&tr, cl, &v[2], PROTO_ERR_ROOM_FULL);
    setup_part(&tr, &v[3], "lim2", "d", TOKEN_PERM_ALL);
    expect_reject(&tr, cl, &v[3], PROTO_ERR_SERVER_FULL);
    struct relay_stats st;
    relay_stats(tr.r, &st);
    assert_int_equal(st.rejects_room_full, 1);
    assert_int_equal(st.rejects_server_full, 1);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* ---------------------------------------------------------------- churn */

/* Waves of members join random rooms on both workers, send, and end in
 * one of three ways (LEAVE, close, vanish) while a stable member of each
 * room keeps sending. Afterwards: no rooms, no sessions, no buffers. */
static void test_churn(void **state)
{
    (void)state;
    enum { ROOMS = 8, WAVES = 20, PER_WAVE = 100 };
    int64_t base = buf_live();
    struct test_relay tr;
    /* The idle timeout ends the vanished members; it is also how long a
     * joiner may stall between HELLO and JOIN before the relay drops it.
     * 3 s leaves room for a loaded machine under ASan (1 s did not: a few
     * of 2000 joiners were idled out before their JOIN was read). */
    const uint64_t idle_ns = 3000000000ull;
    struct relay_config cfg = {.n_workers = 2, .idle_timeout_ns = idle_ns};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    struct part *stable = calloc(ROOMS, sizeof(*stable));
    struct part *v = calloc(PER_WAVE, sizeof(*v));
    assert_non_null(stable);
    assert_non_null(v);
    char room[16], id[32];
    for (unsigned r = 0; r < ROOMS; r++) {
        snprintf(room, sizeof(room), "churn-%u", r);
        snprintf(id, sizeof(id), "stable-%u", r);
        setup_part(&tr, &stable[r], room, id, TOKEN_PERM_ALL);
    }
    join_all(cl, &tr, stable, ROOMS);
    unsigned joined = 0;
    uint32_t seq = 0;
    for (unsigned wave = 0; wave < WAVES; wave++) {
        for (unsigned i = 0; i < PER_WAVE; i++) {
            snprintf(room, sizeof(room), "churn-%u", (unsigned)rand() % ROOMS);
            snprintf(id, sizeof(id), "w%u-%u", wave, i);
            setup_part(&tr, &v[i], room, id, TOKEN_PERM_ALL);
        }
        join_all(cl, &tr, v, PER_WAVE);
        for (unsigned k = 0; k < 3; k++) {
            for (unsigned i = 0; i < PER_WAVE; i++)
                if (v[i].joined)
                    part_send(&v[i], seq++);
            for (unsigned r = 0; r < ROOMS; r++)
                part_send(&stable[r], seq++);
            roost_client_step(cl, 1);
        }
        for (unsigned i = 0; i < PER_WAVE; i++) {
            joined += v[i].joined;
            switch (i % 3) {
            case 0:
                part_leave(&v[i]);
                break;
            case 1:
                roost_conn_close(v[i].c, PROTO_ERR_NO_ERROR);
                break;
            default:
                break; /* vanishes below: the relay's idle timeout ends it */
            }
        }
        for (int s = 0; s < 10; s++)
            roost_client_step(cl, 2);
        for (unsigned i = 0; i < PER_WAVE; i++)
            roost_conn_del(v[i].c); /* silent for those still open */
    }
    assert_int_equal(joined, WAVES * PER_WAVE);
    for (unsigned r = 0; r < ROOMS; r++)
        roost_conn_close(stable[r].c, PROTO_ERR_NO_ERROR);
    roost_client_step(cl, 5);
    struct relay_wait w = {&tr, 0, 0};
    /* Vanished members go at the relay's idle timeout: wait three of them
     * (ngtcp2 closes at max(idle, 3 PTO)) plus slack, polling. */
    uint64_t wait_ms = 3 * idle_ns / 1000000u + 10000;
    for (uint64_t i = 0; i < wait_ms / 10 && !relay_drained(&w); i++)
        usleep(10000);
    struct relay_stats st;
    relay_stats(tr.r, &st);
    assert_int_equal(st.rooms, 0);
    assert_int_equal(st.participants, 0);
    assert_int_equal(st.conns_open, 0);
    assert_int_equal(st.joins_ok, WAVES * PER_WAVE + ROOMS);
    assert_true(st.media_out > 0);
    roost_client_del(cl);
    free(v);
    free(stable);
    test_relay_stop(&tr);
    assert_int_equal(buf_live(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_delivery_1w),
        cmocka_unit_test(test_exact_delivery_2w),
        cmocka_unit_test(test_exact_delivery_2w_defaults),
        cmocka_unit_test(test_presence),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_permissions_and_replace),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_churn),
    };
    return cmocka_run_group_tests_name("relay", tests, NULL, NULL);
}
