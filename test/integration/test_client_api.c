/* The public session API of libroost-client (include/roost/client.h)
 * against an in-process relay: join with a token, presence with names,
 * media with parsed headers (audio packets, a video keyframe split into
 * START..END packets and reassembled), keyframe requests reaching the
 * sender, LEAVE seen by the other side, a rejected token, the argument
 * checks, and the same exchange with the library's thread
 * (roost_client_run) driven from this thread under roost_client_lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/echo_app.h"
#include "../common/participant.h"
#include "client/client.h"

#define WAIT_MS 10000
#define FRAME_LEN 3000

struct rx {
    uint32_t sender;
    uint8_t stream, flags;
    uint32_t seq;
    size_t len;
};

struct who {
    struct roost_session *s;
    bool joined, closed, rejected;
    uint32_t reject_code;
    uint32_t self_id;
    unsigned perms;
    uint32_t max_datagram;
    unsigned n_join, n_leave;
    uint32_t last_join_id, last_leave_id;
    char last_join_name[65], last_leave_name[65];
    unsigned n_rx;
    struct rx rx[64];
    uint8_t frame[FRAME_LEN]; /* video stream 1 reassembled */
    size_t frame_len;
    unsigned n_kf;
    uint32_t kf_from;
    uint8_t kf_stream;
};

static void w_joined(struct roost_session *s, const struct roost_joined *j, void *arg)
{
    struct who *w = arg;
    assert_ptr_equal(s, w->s);
    w->joined = true;
    w->self_id = j->self_id;
    w->perms = j->permissions;
    w->max_datagram = j->max_datagram;
}

static void w_rejected(struct roost_session *s, uint32_t code, uint32_t retry, const char *reason,
                       void *arg)
{
    (void)s;
    (void)retry;
    (void)reason;
    struct who *w = arg;
    w->rejected = true;
    w->reject_code = code;
}

static void w_presence(struct roost_session *s, const struct roost_presence *p, void *arg)
{
    (void)s;
    struct who *w = arg;
    if (p->kind == ROOST_PRESENCE_JOIN) {
        w->n_join++;
        w->last_join_id = p->participant_id;
        snprintf(w->last_join_name, sizeof(w->last_join_name), "%s", p->display_name);
    } else {
        w->n_leave++;
        w->last_leave_id = p->participant_id;
        snprintf(w->last_leave_name, sizeof(w->last_leave_name), "%s", p->display_name);
    }
}

static void w_media(struct roost_session *s, const struct roost_media *m, void *arg)
{
    (void)s;
    struct who *w = arg;
    if (w->n_rx < 64)
        w->rx[w->n_rx++] = (struct rx){m->sender, m->stream_id, m->flags, m->seq, m->len};
    if (m->stream_id == 1 && w->frame_len + m->len <= FRAME_LEN) {
        memcpy(w->frame + w->frame_len, m->payload, m->len);
        w->frame_len += m->len;
    }
}

static void w_keyframe(struct roost_session *s, uint32_t from, uint8_t stream, void *arg)
{
    (void)s;
    struct who *w = arg;
    w->n_kf++;
    w->kf_from = from;
    w->kf_stream = stream;
}

static void w_close(struct roost_session *s, const struct roost_close_info *info, void *arg)
{
    (void)s;
    (void)info;
    struct who *w = arg;
    w->closed = true;
}

static const struct roost_session_callbacks w_cbs = {
    .on_joined = w_joined,
    .on_rejected = w_rejected,
    .on_presence = w_presence,
    .on_media = w_media,
    .on_keyframe_request = w_keyframe,
    .on_close = w_close,
};

static struct roost_client *session_endpoint(void)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl;
    assert_int_equal(roost_client_new(&cl, &cc, NULL, NULL), 0);
    return cl;
}

static int start(struct roost_client *cl, struct test_relay *tr, struct who *w, const char *room,
                 const char *name, const char *token)
{
    struct roost_session_config sc = {.room = room, .token = token, .display_name = name};
    return roost_session_new(&w->s, cl, "127.0.0.1", tr->port, &sc, &w_cbs, w);
}

struct pair {
    struct who *a, *b;
    unsigned want_rx;
};

static bool both_joined(void *arg)
{
    struct pair *p = arg;
    return p->a->joined && p->b->joined && p->a->n_join >= 1 && p->b->n_join >= 1;
}
static bool b_has_rx(void *arg)
{
    struct pair *p = arg;
    return p->b->n_rx >= p->want_rx;
}
static bool a_has_kf(void *arg)
{
    struct pair *p = arg;
    return p->a->n_kf >= 1;
}
static bool b_saw_leave(void *arg)
{
    struct pair *p = arg;
    return p->b->n_leave >= 1 && p->a->closed;
}
static bool rejected(void *arg)
{
    struct who *w = arg;
    return w->rejected && w->closed;
}

static void test_session_loop(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = session_endpoint();
    struct who *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    char ta[1024], tb[1024];
    test_token(&tr, "api", "alice", TOKEN_PERM_ALL, 0, 600, ta, sizeof(ta));
    test_token(&tr, "api", "bob", TOKEN_PERM_ALL, 0, 600, tb, sizeof(tb));

    /* Argument checks. */
    struct roost_conn *raw;
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", tr.port, NULL, &raw), ROOST_ERR_INVAL);
    struct roost_session *s;
    struct roost_session_config bad = {
        .room = "api", .token = ta, .resume_ticket = ta, .resume_ticket_len = 1};
    assert_int_equal(roost_session_new(&s, cl, "127.0.0.1", tr.port, &bad, &w_cbs, NULL),
                     ROOST_ERR_INVAL);
    char long_room[80];
    memset(long_room, 'r', sizeof(long_room) - 1);
    long_room[sizeof(long_room) - 1] = '\0';
    bad = (struct roost_session_config){.room = long_room, .token = ta};
    assert_int_equal(roost_session_new(&s, cl, "127.0.0.1", tr.port, &bad, &w_cbs, NULL),
                     ROOST_ERR_TOOBIG);
    assert_string_equal(roost_error_code_name(ROOST_CODE_BAD_TOKEN), "BAD_TOKEN");

    assert_int_equal(start(cl, &tr, a, "api", "alice", ta), 0);
    assert_int_equal(roost_session_send(a->s, 0, 0, 0, "x", 1), ROOST_ERR_INVAL); /* not joined */
    assert_int_equal(start(cl, &tr, b, "api", "bob", tb), 0);
    struct pair p = {a, b, 0};
    assert_true(echo_client_until(cl, both_joined, &p, WAIT_MS));
    assert_int_equal(a->perms, ROOST_PERM_PUBLISH | ROOST_PERM_SUBSCRIBE);
    assert_int_equal(a->self_id, roost_session_id(a->s));
    assert_int_equal(b->last_join_id, a->self_id);
    assert_string_equal(b->last_join_name, "alice");
    assert_int_equal(a->last_join_id, b->self_id);
    assert_string_equal(a->last_join_name, "bob");
    assert_true(a->max_datagram > ROOST_MEDIA_HDR_LEN && a->max_datagram < FRAME_LEN);

    /* Audio: three single-packet frames on stream 0. */
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(
            roost_session_send(a->s, 0, ROOST_MEDIA_START | ROOST_MEDIA_END, i * 960, "opus", 4),
            0);
    assert_int_equal(roost_session_send(a->s, 0, 0x80, 0, "x", 1), ROOST_ERR_INVAL);
    assert_int_equal(roost_session_send(a->s, 0, 0, 0, ta, a->max_datagram), ROOST_ERR_TOOBIG);
    roost_client_step(cl, 1);
    /* Video: one keyframe split by the library. */
    uint8_t frame[FRAME_LEN];
    for (size_t i = 0; i < sizeof(frame); i++)
        frame[i] = (uint8_t)(i * 7);
    int np = roost_session_send_frame(a->s, 1, ROOST_MEDIA_VIDEO | ROOST_MEDIA_KEYFRAME, 90000,
                                      frame, sizeof(frame));
    assert_true(np >= 3);
    p.want_rx = 3 + (unsigned)np;
    bool got = echo_client_until(cl, b_has_rx, &p, WAIT_MS);
    if (!got) {
        struct roost_conn_stats st;
        roost_conn_stats(roost_session_conn(a->s), &st);
        fprintf(stderr, "DEBUG np=%d n_rx=%u maxdg=%u sent=%llu dropped=%llu\n", np, b->n_rx,
                a->max_datagram, (unsigned long long)st.dgram_sent,
                (unsigned long long)st.dgram_dropped);
    }
    assert_true(got);
    unsigned audio = 0, video = 0;
    for (unsigned i = 0; i < b->n_rx; i++) {
        struct rx *r = &b->rx[i];
        assert_int_equal(r->sender, a->self_id);
        if (r->stream == 0) {
            assert_int_equal(r->seq, audio);
            assert_int_equal(r->flags, ROOST_MEDIA_START | ROOST_MEDIA_END);
            assert_int_equal(r->len, 4);
            audio++;
            continue;
        }
        assert_int_equal(r->stream, 1);
        assert_int_equal(r->seq, video);
        unsigned want = ROOST_MEDIA_VIDEO | ROOST_MEDIA_KEYFRAME |
                        (video == 0 ? ROOST_MEDIA_START : 0) |
                        (video == (unsigned)np - 1 ? ROOST_MEDIA_END : 0);
        assert_int_equal(r->flags, want);
        video++;
    }
    assert_int_equal(audio, 3);
    assert_int_equal(video, (unsigned)np);
    assert_int_equal(b->frame_len, sizeof(frame));
    assert_memory_equal(b->frame, frame, sizeof(frame));

    /* Keyframe request: bob asks alice for stream 1. */
    assert_int_equal(roost_session_request_keyframe(b->s, a->self_id, 1), 0);
    assert_true(echo_client_until(cl, a_has_kf, &p, WAIT_MS));
    assert_int_equal(a->kf_from, b->self_id);
    assert_int_equal(a->kf_stream, 1);

    /* LEAVE: the relay closes alice; bob hears it with alice's name. */
    assert_int_equal(roost_session_leave(a->s), 0);
    assert_true(echo_client_until(cl, b_saw_leave, &p, WAIT_MS));
    assert_int_equal(b->last_leave_id, a->self_id);
    assert_string_equal(b->last_leave_name, "alice");
    assert_true(roost_session_is_closed(a->s));
    assert_int_equal(roost_session_send(a->s, 0, 0, 0, "x", 1), ROOST_ERR_CLOSED);
    roost_session_del(a->s);

    /* A token for another room is rejected. */
    struct who *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_int_equal(start(cl, &tr, c, "other", "carol", ta), 0);
    assert_true(echo_client_until(cl, rejected, c, WAIT_MS));
    assert_false(c->joined);

    roost_client_del(cl); /* frees b's and c's sessions */
    free(a);
    free(b);
    free(c);
    test_relay_stop(&tr);
}

/* Thread mode: every call from here under the lock, the callbacks on the
 * library's thread. */
static bool locked(struct roost_client *cl, bool (*pred)(void *), void *arg)
{
    struct timespec t0, now, nap = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        roost_client_lock(cl);
        bool ok = pred(arg);
        roost_client_unlock(cl);
        if (ok)
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 > WAIT_MS)
            return false;
        nanosleep(&nap, NULL);
    }
}

static void test_session_thread(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 1};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = session_endpoint();
    struct who *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    char ta[1024], tb[1024];
    test_token(&tr, "thr", "alice", TOKEN_PERM_ALL, 0, 600, ta, sizeof(ta));
    test_token(&tr, "thr", "bob", TOKEN_PERM_ALL, 0, 600, tb, sizeof(tb));
    assert_int_equal(roost_client_run(cl), 0);
    assert_int_equal(roost_client_run(cl), ROOST_ERR_EXIST);
    roost_client_lock(cl);
    assert_int_equal(start(cl, &tr, a, "thr", "alice", ta), 0);
    assert_int_equal(start(cl, &tr, b, "thr", "bob", tb), 0);
    roost_client_unlock(cl);
    struct pair p = {a, b, 20};
    assert_true(locked(cl, both_joined, &p));
    for (uint32_t i = 0; i < 20; i++) {
        roost_client_lock(cl);
        assert_int_equal(
            roost_session_send(a->s, 0, ROOST_MEDIA_START | ROOST_MEDIA_END, i * 960, "opus", 4),
            0);
        roost_client_unlock(cl);
    }
    assert_true(locked(cl, b_has_rx, &p));
    roost_client_stop(cl);
    for (unsigned i = 0; i < b->n_rx; i++)
        assert_int_equal(b->rx[i].seq, i);
    roost_client_stop(cl); /* not running: no-op */
    roost_client_del(cl);
    free(a);
    free(b);
    test_relay_stop(&tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_loop),
        cmocka_unit_test(test_session_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
