/* The session's answers end to end (issue 16): the rate-limited ERROR
 * NOT_PERMITTED for media without PUBLISH, KEYFRAME_REQUEST needing
 * SUBSCRIBE, and every JOIN_REJECTED reaching the client before the close
 * that follows the last allowed rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>

#include "../common/echo_app.h"
#include "../common/participant.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "relay/relay_int.h"

#define WAIT_MS 10000

/* A participant that also counts JOIN_REJECTED and KEYFRAME_REQUEST. */
struct spart {
    struct part p; /* first: roost_conn_user returns it */
    uint32_t n_rejected, n_kfreq;
    unsigned extra_joins; /* JOINs sent right after the first one */
    bool grease_first;    /* send an unknown message type before HELLO */
};

static void send_body(struct roost_conn *c, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(roost_conn_send_control(c, body, (size_t)n), 0);
}

static void send_join(struct spart *x)
{
    struct msg j = {.type = MSG_JOIN};
    j.u.join.room_id.ptr = (const uint8_t *)x->p.room;
    j.u.join.room_id.len = strlen(x->p.room);
    j.u.join.token.ptr = (const uint8_t *)x->p.token;
    j.u.join.token.len = strlen(x->p.token);
    send_body(x->p.c, &j);
}

static void s_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct spart *x = roost_conn_user(c);
    struct msg *m = malloc(sizeof(*m));
    assert_non_null(m);
    bool welcome = false;
    if (msg_decode(body, len, m) == 0) {
        if (m->type == MSG_JOIN_REJECTED)
            x->n_rejected++;
        else if (m->type == MSG_KEYFRAME_REQUEST)
            x->n_kfreq++;
        welcome = m->type == MSG_WELCOME;
    }
    free(m);
    part_cbs.on_control(c, body, len, arg); /* sends the first JOIN on WELCOME */
    if (welcome)
        for (unsigned i = 0; i < x->extra_joins; i++)
            send_join(x);
}

/* Before HELLO: a greased type (0x21, PROTOCOL.md §7) that must be ignored. */
static void s_open(struct roost_conn *c, void *arg)
{
    struct spart *x = roost_conn_user(c);
    if (x->grease_first) {
        static const uint8_t grease[] = {0x21, 0xde, 0xad, 0xbe, 0xef};
        assert_int_equal(roost_conn_send_control(c, grease, sizeof(grease)), 0);
    }
    part_cbs.on_open(c, arg);
}

static struct roost_client_callbacks scbs;

static struct roost_client *client_new(void)
{
    scbs = part_cbs;
    scbs.on_control = s_control;
    scbs.on_open = s_open;
    struct roost_client *cl;
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    assert_int_equal(roost_client_new(&cl, &cc, &scbs, NULL), 0);
    return cl;
}

static void setup_s(struct test_relay *tr, struct spart *x, const char *room, const char *id,
                    unsigned perms)
{
    memset(x, 0, sizeof(*x));
    snprintf(x->p.room, sizeof(x->p.room), "%s", room);
    snprintf(x->p.name, sizeof(x->p.name), "%s", id);
    test_token(tr, room, id, perms, 0, 600, x->p.token, sizeof(x->p.token));
}

struct sps {
    struct spart **v;
    unsigned n;
    uint32_t want_errors;
};

static bool all_answered(void *arg)
{
    struct sps *s = arg;
    for (unsigned i = 0; i < s->n; i++)
        if (!s->v[i]->p.answered && !s->v[i]->p.closed)
            return false;
    return true;
}

static bool first_errors(void *arg)
{
    struct sps *s = arg;
    return s->v[0]->p.n_errors >= s->want_errors;
}

static bool first_closed(void *arg)
{
    struct sps *s = arg;
    return s->v[0]->p.closed;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void join(struct roost_client *cl, struct test_relay *tr, struct spart **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(part_connect(cl, tr->port, &v[i]->p), 0);
    struct sps s = {.v = v, .n = n};
    assert_true(echo_client_until(cl, all_answered, &s, WAIT_MS));
}

static void send_kfreq(struct spart *x, uint32_t target, uint8_t stream)
{
    struct msg m = {.type = MSG_KEYFRAME_REQUEST};
    m.u.keyframe_request.participant_id = target;
    m.u.keyframe_request.stream_id = stream;
    send_body(x->p.c, &m);
}

/* Media without PUBLISH: dropped, and one ERROR NOT_PERMITTED per second
 * however many datagrams come (PROTOCOL.md §5). */
static void test_media_not_permitted(void **st)
{
    (void)st;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 1};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = client_new();
    struct spart a, b;
    setup_s(&tr, &a, "np", "subonly", TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE);
    setup_s(&tr, &b, "np", "pub", TOKEN_PERM_ALL);
    struct spart *v[2] = {&a, &b};
    join(cl, &tr, v, 2);
    assert_true(a.p.joined && b.p.joined);
    uint64_t t0 = echo_now_ms();
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(part_send(&a.p, i), 0);
    struct sps s = {.v = v, .n = 2, .want_errors = 1};
    assert_true(echo_client_until(cl, first_errors, &s, WAIT_MS));
    assert_int_equal(a.p.last_error, PROTO_ERR_NOT_PERMITTED);
    /* More inside the same second: no second ERROR. */
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(part_send(&a.p, 100 + i), 0);
    echo_client_until(cl, never, NULL, 200);
    if (echo_now_ms() - t0 < 900) /* still inside the interval (else: a loaded machine) */
        assert_int_equal(a.p.n_errors, 1);
    assert_int_equal(b.p.n_media, 0);
    /* After the interval, another datagram gets another ERROR. */
    echo_client_until(cl, never, NULL, 1100);
    uint32_t before = a.p.n_errors;
    assert_int_equal(part_send(&a.p, 200), 0);
    s.want_errors = before + 1;
    assert_true(echo_client_until(cl, first_errors, &s, WAIT_MS));
    assert_int_equal(a.p.last_error, PROTO_ERR_NOT_PERMITTED);
    assert_int_equal(b.p.n_media, 0);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* KEYFRAME_REQUEST needs SUBSCRIBE: answered NOT_PERMITTED, not relayed. */
static void test_kfreq_needs_subscribe(void **st)
{
    (void)st;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = client_new();
    struct spart a, b, c;
    setup_s(&tr, &a, "kq", "pubonly", TOKEN_PERM_JOIN | TOKEN_PERM_PUBLISH);
    setup_s(&tr, &b, "kq", "pub", TOKEN_PERM_ALL);
    setup_s(&tr, &c, "kq", "sub", TOKEN_PERM_JOIN | TOKEN_PERM_SUBSCRIBE);
    struct spart *v[3] = {&a, &b, &c};
    join(cl, &tr, v, 3);
    send_kfreq(&a, b.p.pid, 1);
    struct sps s = {.v = v, .n = 3, .want_errors = 1};
    assert_true(echo_client_until(cl, first_errors, &s, WAIT_MS));
    assert_int_equal(a.p.last_error, PROTO_ERR_NOT_PERMITTED);
    /* A subscriber's request is relayed (and the refused one was not). */
    send_kfreq(&c, b.p.pid, 1);
    uint64_t end = echo_now_ms() + WAIT_MS;
    while (b.n_kfreq == 0 && echo_now_ms() < end)
        roost_client_step(cl, 2);
    assert_int_equal(b.n_kfreq, 1);
    assert_int_equal(c.p.n_errors, 0);
    echo_client_until(cl, never, NULL, 100);
    assert_int_equal(b.n_kfreq, 1);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* Three bad JOINs back to back: the third rejection closes the connection,
 * and the client reads all three JOIN_REJECTED before the close. */
static void test_rejects_before_close(void **st)
{
    (void)st;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 1};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = client_new();
    for (unsigned round = 0; round < 5; round++) {
        struct spart a;
        setup_s(&tr, &a, "rj", "u", TOKEN_PERM_ALL);
        a.p.token[strlen(a.p.token) - 5] ^= 1; /* tampered: BAD_TOKEN */
        a.extra_joins = 2;
        struct spart *v[1] = {&a};
        assert_int_equal(part_connect(cl, tr.port, &a.p), 0);
        struct sps s = {.v = v, .n = 1};
        assert_true(echo_client_until(cl, first_closed, &s, WAIT_MS));
        assert_true(a.p.ci.remote && a.p.ci.app);
        assert_int_equal(a.p.ci.code, PROTO_ERR_BAD_TOKEN);
        assert_int_equal(a.n_rejected, 3);
        assert_int_equal(a.p.reject_code, PROTO_ERR_BAD_TOKEN);
        roost_conn_del(a.p.c);
    }
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* A JOIN the owner never answers: the session does not stay JOINING
 * forever; it is closed INTERNAL one handshake timeout after the JOIN. */
static void test_joining_deadline(void **st)
{
    (void)st;
    struct test_relay tr;
    const uint64_t hs_ms = 500;
    struct relay_config cfg = {.n_workers = 1, .handshake_timeout_ns = hs_ms * 1000000ull};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = client_new();
    atomic_store(&session_test_hold_joins, true);
    struct spart a;
    setup_s(&tr, &a, "jd", "u", TOKEN_PERM_ALL);
    struct spart *v[1] = {&a};
    assert_int_equal(part_connect(cl, tr.port, &a.p), 0);
    struct sps s = {.v = v, .n = 1};
    uint64_t t0 = echo_now_ms();
    assert_true(echo_client_until(cl, first_closed, &s, WAIT_MS));
    assert_true(echo_now_ms() - t0 >= hs_ms / 2);
    assert_false(a.p.answered);
    assert_true(a.p.welcomed);
    assert_true(a.p.ci.remote && a.p.ci.app);
    assert_int_equal(a.p.ci.code, PROTO_ERR_INTERNAL);
    atomic_store(&session_test_hold_joins, false);
    roost_conn_del(a.p.c);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* An unknown message type before HELLO is ignored, not a violation
 * (PROTOCOL.md §5 and §7 agree). */
static void test_unknown_before_hello(void **st)
{
    (void)st;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 1};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = client_new();
    struct spart a;
    setup_s(&tr, &a, "gr", "u", TOKEN_PERM_ALL);
    a.grease_first = true;
    struct spart *v[1] = {&a};
    join(cl, &tr, v, 1);
    assert_true(a.p.welcomed);
    assert_true(a.p.joined);
    assert_false(a.p.closed);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_not_permitted),  cmocka_unit_test(test_kfreq_needs_subscribe),
        cmocka_unit_test(test_rejects_before_close), cmocka_unit_test(test_joining_deadline),
        cmocka_unit_test(test_unknown_before_hello),
    };
    return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
