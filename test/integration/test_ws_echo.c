/* WebSocket transport end to end on loopback: a ws_server on a real worker
 * pool with an echo application, and a hand-written client
 * (test/common/ws_client). Upgrade with and without the subprotocol, wrong
 * path, control and media round trips over wss:// and ws://, early frames
 * sent with the request, fragmented messages with an interleaved Ping,
 * every kind of violation and the close code it gets, Ping/Pong keep-alive
 * and the idle timeout, the handshake timeout, a reader that stops reading
 * (its media is dropped and counted, its control overflow closes it with
 * TOO_SLOW, and another connection keeps its round trips), the plain-ws://
 * loopback rule, and on_close exactly once for every accepted connection.
 * Deadlines derive from the configured timeouts; nothing sleeps blindly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../common/echo_app.h"
#include "../common/ws_client.h"
#include "core/buf.h"
#include "core/error.h"
#include "ws/ws.h"

#define MAX_TRACK 256
#define MEDIA_LEN 1200

struct track {
    _Atomic int closes;
};

struct wse {
    struct ws_shared *sh;
    struct worker_pool *pool;
    struct ws_shared_config cfg;
    _Atomic uint64_t opens, closes, unopened_closes, double_closes;
    _Atomic uint64_t by_code[32];
    _Atomic uint64_t max_out_buffered, max_media_queued;
    _Atomic unsigned next_track;
    struct track tracks[MAX_TRACK];
};

/* --------------------------------------------------------- echo app */

static int app_open(struct ws_conn *c, void *arg)
{
    struct wse *e = arg;
    atomic_fetch_add(&e->opens, 1);
    unsigned i = atomic_fetch_add(&e->next_track, 1);
    if (i < MAX_TRACK)
        ws_conn_set_user(c, &e->tracks[i]);
    return 0;
}

static void note_stats(struct wse *e, struct ws_conn *c)
{
    struct ws_conn_stats st;
    ws_conn_stats(c, &st);
    if (st.out_buffered > atomic_load(&e->max_out_buffered))
        atomic_store(&e->max_out_buffered, st.out_buffered);
    if (st.media_queued > atomic_load(&e->max_media_queued))
        atomic_store(&e->max_media_queued, st.media_queued);
}

static void app_control(struct ws_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct wse *e = arg;
    char cmd[64];
    size_t k = len < sizeof(cmd) - 1 ? len : sizeof(cmd) - 1;
    memcpy(cmd, body, k);
    cmd[k] = '\0';
    unsigned n;
    if (sscanf(cmd, "flood:%u", &n) == 1) {
        static uint8_t pkt[MEDIA_LEN];
        memset(pkt, 0x6d, sizeof(pkt));
        for (unsigned i = 0; i < n; i++)
            (void)ws_conn_send_media(c, pkt, sizeof(pkt));
        note_stats(e, c);
        return;
    }
    if (sscanf(cmd, "ctlflood:%u", &n) == 1) {
        static uint8_t big[4000];
        memset(big, 'C', sizeof(big));
        for (unsigned i = 0; i < n; i++)
            if (ws_conn_send_control(c, big, sizeof(big)) < 0)
                return;
        return;
    }
    if (strcmp(cmd, "stats") == 0) {
        struct ws_conn_stats st;
        ws_conn_stats(c, &st);
        char out[128];
        int l = snprintf(out, sizeof(out), "%llu %llu %llu %d", (unsigned long long)st.bytes_in,
                         (unsigned long long)st.control_in, (unsigned long long)st.srtt_ns,
                         ws_conn_tls(c) ? 1 : 0);
        (void)ws_conn_send_control(c, (const uint8_t *)out, (size_t)l);
        return;
    }
    if (sscanf(cmd, "close:%u", &n) == 1) {
        ws_conn_close(c, n, "asked to");
        return;
    }
    (void)ws_conn_send_control(c, body, len);
}

static void app_media(struct ws_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    (void)ws_conn_send_media(c, data, len);
}

static void app_close(struct ws_conn *c, uint64_t code, void *arg)
{
    struct wse *e = arg;
    atomic_fetch_add(&e->closes, 1);
    atomic_fetch_add(&e->by_code[code < 32 ? code : 31], 1);
    struct track *t = ws_conn_user(c);
    if (t == NULL) {
        atomic_fetch_add(&e->unopened_closes, 1);
        return;
    }
    if (atomic_fetch_add(&t->closes, 1) != 0)
        atomic_fetch_add(&e->double_closes, 1);
}

static const struct ws_app_ops app_ops = {
    .on_open = app_open,
    .on_control = app_control,
    .on_media = app_media,
    .on_close = app_close,
};

static int w_start(struct worker *w, void *arg)
{
    struct wse *e = arg;
    struct ws_server *s = NULL;
    int rc = ws_server_new(&s, w, e->sh, &app_ops, e);
    if (rc < 0)
        return rc;
    worker_set_user(w, s);
    return 0;
}

static void w_stop(struct worker *w, void *arg)
{
    (void)arg;
    ws_server_del(worker_user(w));
    worker_set_user(w, NULL);
}

static void w_turn_end(struct worker *w, void *arg)
{
    (void)arg;
    ws_server_turn_end(worker_user(w));
}

static void w_msg(struct worker *w, const struct worker_msg *m, void *arg)
{
    (void)w;
    (void)m;
    (void)arg; /* the WebSocket layer sends no ring messages */
}

static const struct worker_ops w_ops = {
    .start = w_start,
    .on_msg = w_msg,
    .stop = w_stop,
    .on_turn_end = w_turn_end,
};

static char ca_path[600];

/* Starts a 2-worker server; cfg fields left 0 take the module defaults. */
static struct wse *server_start(struct ws_shared_config cfg)
{
    static char cert[600], key[600];
    const char *d = echo_cert_dir(false);
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", d);
    if (!cfg.plain) {
        cfg.cert_file = cert;
        cfg.key_file = key;
    }
    if (cfg.addr == NULL)
        cfg.addr = "127.0.0.1";
    cfg.n_workers = 2;
    struct wse *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(ws_shared_new(&e->sh, &cfg), 0);
    e->cfg = cfg;
    struct worker_config wc = {.n_workers = 2, .no_pin = true};
    assert_int_equal(worker_pool_new(&e->pool, &wc, &w_ops, e), 0);
    assert_int_equal(worker_pool_start(e->pool), 0);
    return e;
}

static struct ws_stats stats(struct wse *e)
{
    struct ws_stats st;
    ws_shared_stats_total(e->sh, &st);
    return st;
}

/* Stops the server and checks the one-close-per-connection contract. */
static void server_stop(struct wse *e)
{
    worker_pool_stop(e->pool);
    struct ws_stats st = stats(e);
    assert_int_equal(atomic_load(&e->double_closes), 0);
    /* Refused connections never became connections. */
    uint64_t conns = st.accepted - st.refused_full - st.refused_draining;
    assert_int_equal(atomic_load(&e->closes), conns);
    assert_int_equal(st.conns_closed, conns);
    assert_int_equal(st.conns_open, 0);
    worker_pool_del(e->pool);
    ws_shared_del(e->sh);
    free(e);
    assert_int_equal(buf_live(), 0);
}

static bool wait_u64(_Atomic uint64_t *v, uint64_t want, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    while (atomic_load(v) < want) {
        if (wsc_now_ms() >= end)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return true;
}

static bool wait_stat(struct wse *e, size_t field_off, uint64_t want, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct ws_stats st = stats(e);
        if (*(uint64_t *)((char *)&st + field_off) >= want)
            return true;
        if (wsc_now_ms() >= end)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
#define WAIT_STAT(e, f, want, ms) wait_stat(e, offsetof(struct ws_stats, f), want, ms)

static struct wsc *open_ws(struct wse *e, int rcvbuf)
{
    struct wsc *c = NULL;
    assert_int_equal(wsc_connect(&c, "127.0.0.1", ws_shared_port(e->sh),
                                 e->cfg.plain ? NULL : ca_path, rcvbuf, 5000),
                     0);
    int status = 0;
    assert_int_equal(wsc_upgrade(c, "/ws", "roost.v1", NULL, 0, &status, 5000), 0);
    assert_int_equal(status, 101);
    return c;
}

/* Next frame that is not a Ping (Pings are answered). */
static int recv_app(struct wsc *c, struct wsc_frame *f, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = (int)(end > wsc_now_ms() ? end - wsc_now_ms() : 0);
        int r = wsc_recv_frame(c, f, left);
        if (r != 1 || f->opcode != 0x9)
            return r;
        wsc_send_frame(c, 0xA, true, true, f->data, f->len);
    }
}

static void expect_control(struct wsc *c, const char *body)
{
    struct wsc_frame f;
    assert_int_equal(recv_app(c, &f, 5000), 1);
    assert_int_equal(f.opcode, 0x2);
    size_t n = strlen(body);
    assert_int_equal(f.len, 2 + n);
    assert_int_equal(f.data[0], WS_TAG_CONTROL);
    assert_int_equal(f.data[1], n);
    assert_memory_equal(f.data + 2, body, n);
}

static void control_round_trip(struct wsc *c, const char *body)
{
    assert_int_equal(wsc_send_control(c, (const uint8_t *)body, strlen(body)), 0);
    expect_control(c, body);
}

/* Reads until a Close frame; returns its code (0 if the stream ended). */
static uint16_t expect_close(struct wsc *c, int timeout_ms)
{
    struct wsc_frame f;
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = (int)(end > wsc_now_ms() ? end - wsc_now_ms() : 0);
        int r = wsc_recv_frame(c, &f, left);
        if (r != 1)
            return 0;
        if (f.opcode == 0x8)
            return f.close_code ? f.close_code : 1005;
    }
}

/* After a Close, the relay half-closes: the client sees the end. */
static void expect_eof(struct wsc *c, int timeout_ms)
{
    struct wsc_frame f;
    int r;
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    do {
        int left = (int)(end > wsc_now_ms() ? end - wsc_now_ms() : 0);
        r = wsc_recv_frame(c, &f, left);
    } while (r == 1 && wsc_now_ms() < end);
    assert_true(r < 0);
}

/* ------------------------------------------------------------- tests */

static void test_upgrade(void **state)
{
    (void)state;
    struct wse *e = server_start((struct ws_shared_config){0});
    struct wsc *ok = open_ws(e, 0);

    struct wsc *c = NULL;
    int status = 0;
    assert_int_equal(wsc_connect(&c, "127.0.0.1", ws_shared_port(e->sh), ca_path, 0, 5000), 0);
    assert_int_equal(wsc_upgrade(c, "/ws", NULL, NULL, 0, &status, 5000), 1);
    assert_int_equal(status, 400);
    expect_eof(c, 5000);
    wsc_free(c);

    assert_int_equal(wsc_connect(&c, "127.0.0.1", ws_shared_port(e->sh), ca_path, 0, 5000), 0);
    assert_int_equal(wsc_upgrade(c, "/chat", "roost.v1", NULL, 0, &status, 5000), 1);
    assert_int_equal(status, 404);
    expect_eof(c, 5000);
    wsc_free(c);

    assert_int_equal(wsc_connect(&c, "127.0.0.1", ws_shared_port(e->sh), ca_path, 0, 5000), 0);
    assert_int_equal(wsc_upgrade(c, "/ws", "chat, roost.v2", NULL, 0, &status, 5000), 1);
    assert_int_equal(status, 400);
    wsc_free(c);

    assert_true(wait_u64(&e->unopened_closes, 3, 5000));
    assert_int_equal(atomic_load(&e->opens), 1);
    assert_int_equal(atomic_load(&e->by_code[PROTO_ERR_PROTOCOL_VIOLATION]), 3);
    assert_int_equal(stats(e).http_rejected, 3);

    /* The client closes normally: the relay answers with 1000 and ends. */
    uint8_t cl[2] = {0x03, 0xe8};
    assert_int_equal(wsc_send_frame(ok, 0x8, true, true, cl, 2), 0);
    assert_int_equal(expect_close(ok, 5000), 1000);
    expect_eof(ok, 5000);
    assert_true(wait_u64(&e->by_code[PROTO_ERR_NO_ERROR], 1, 5000));
    wsc_free(ok);
    server_stop(e);
}

static void run_round_trips(bool plain, const char *addr)
{
    struct wse *e = server_start((struct ws_shared_config){.plain = plain, .addr = addr});
    struct wsc *c = NULL;
    assert_int_equal(wsc_connect(&c, addr, ws_shared_port(e->sh), plain ? NULL : ca_path, 0, 5000),
                     0);
    /* A control message written together with the request. */
    uint8_t early[64];
    const uint8_t ctl[] = {0x01, 0x05, 'e', 'a', 'r', 'l', 'y'};
    size_t el = wsc_frame_encode(early, sizeof(early), 0x2, true, true, ctl, sizeof(ctl));
    int status = 0;
    assert_int_equal(wsc_upgrade(c, "/ws", "roost.v1", early, el, &status, 5000), 0);
    expect_control(c, "early");

    control_round_trip(c, "hello");

    /* Media: one packet, echoed byte for byte with its tag. */
    uint8_t pkt[100];
    for (size_t i = 0; i < sizeof(pkt); i++)
        pkt[i] = (uint8_t)i;
    assert_int_equal(wsc_send_msg(c, WS_TAG_MEDIA, pkt, sizeof(pkt)), 0);
    struct wsc_frame f;
    assert_int_equal(recv_app(c, &f, 5000), 1);
    assert_int_equal(f.opcode, 0x2);
    assert_int_equal(f.len, 1 + sizeof(pkt));
    assert_int_equal(f.data[0], WS_TAG_MEDIA);
    assert_memory_equal(f.data + 1, pkt, sizeof(pkt));

    /* A fragmented control message with a Ping between its frames. */
    const char *body = "fragmented-message";
    uint8_t msg[64];
    msg[0] = WS_TAG_CONTROL;
    msg[1] = (uint8_t)strlen(body);
    memcpy(msg + 2, body, strlen(body));
    size_t ml = 2 + strlen(body);
    assert_int_equal(wsc_send_frame(c, 0x2, false, true, msg, 5), 0);
    assert_int_equal(wsc_send_frame(c, 0x9, true, true, (const uint8_t *)"p", 1), 0);
    assert_int_equal(wsc_send_frame(c, 0x0, false, true, msg + 5, 6), 0);
    assert_int_equal(wsc_send_frame(c, 0x0, true, true, msg + 11, ml - 11), 0);
    assert_int_equal(wsc_recv_frame(c, &f, 5000), 1);
    assert_int_equal(f.opcode, 0xA); /* the Pong comes first */
    assert_int_equal(f.len, 1);
    assert_int_equal(f.data[0], 'p');
    expect_control(c, body);

    /* A large media message in two fragments, echoed whole. */
    size_t big = 60000;
    uint8_t *bm = malloc(big);
    assert_non_null(bm);
    bm[0] = WS_TAG_MEDIA;
    for (size_t i = 1; i < big; i++)
        bm[i] = (uint8_t)(i * 7);
    assert_int_equal(wsc_send_frame(c, 0x2, false, true, bm, 30000), 0);
    assert_int_equal(wsc_send_frame(c, 0x0, true, true, bm + 30000, big - 30000), 0);
    assert_int_equal(recv_app(c, &f, 5000), 1);
    assert_int_equal(f.len, big);
    assert_memory_equal(f.data, bm, big);
    free(bm);

    /* The connection's own counters, as the application reads them. */
    assert_int_equal(wsc_send_control(c, (const uint8_t *)"stats", 5), 0);
    assert_int_equal(recv_app(c, &f, 5000), 1);
    unsigned long long bytes_in = 0, control_in = 0, srtt = 0;
    int tls = -1;
    char txt[128];
    size_t tl = f.len - 2 < sizeof(txt) - 1 ? f.len - 2 : sizeof(txt) - 1;
    memcpy(txt, f.data + 2, tl);
    txt[tl] = '\0';
    assert_int_equal(sscanf(txt, "%llu %llu %llu %d", &bytes_in, &control_in, &srtt, &tls), 4);
    assert_true(bytes_in > 60000);
    assert_int_equal(control_in, 4);
    assert_true(srtt > 0);
    assert_int_equal(tls, plain ? 0 : 1);

    struct ws_stats st = stats(e);
    assert_int_equal(st.handshakes_ok, 1);
    assert_int_equal(st.control_in, 4);
    assert_int_equal(st.media_in, 2);
    assert_int_equal(st.media_out, 2);

    /* Shutdown with the connection open: Close 4012 (GOING_AWAY). */
    worker_pool_stop(e->pool);
    assert_int_equal(expect_close(c, 5000), 4000 + PROTO_ERR_GOING_AWAY);
    assert_int_equal(atomic_load(&e->by_code[PROTO_ERR_GOING_AWAY]), 1);
    wsc_free(c);
    server_stop(e);
}

static void test_round_trips_tls(void **state)
{
    (void)state;
    run_round_trips(false, "127.0.0.1");
}

static void test_round_trips_v6(void **state)
{
    (void)state;
    run_round_trips(false, "::1");
}

static void test_round_trips_plain(void **state)
{
    (void)state;
    run_round_trips(true, "127.0.0.1");
}

/* The relay closes on the application's word: Close 4000 + code, with the
 * reason, after the control queued before it when the code is NO_ERROR. */
static void test_app_close(void **state)
{
    (void)state;
    struct wse *e = server_start((struct ws_shared_config){0});
    struct wsc *c = open_ws(e, 0);
    assert_int_equal(wsc_send_control(c, (const uint8_t *)"before", 6), 0);
    assert_int_equal(wsc_send_control(c, (const uint8_t *)"close:0", 7), 0);
    expect_control(c, "before");
    assert_int_equal(expect_close(c, 5000), 1000);
    expect_eof(c, 5000);
    wsc_free(c);
    c = open_ws(e, 0);
    assert_int_equal(wsc_send_control(c, (const uint8_t *)"close:13", 8), 0);
    struct wsc_frame f;
    assert_int_equal(recv_app(c, &f, 5000), 1);
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal(f.close_code, 4000 + PROTO_ERR_REPLACED);
    assert_int_equal(f.len, 2 + strlen("asked to"));
    assert_memory_equal(f.data + 2, "asked to", f.len - 2);
    expect_eof(c, 5000);
    wsc_free(c);
    assert_true(wait_u64(&e->by_code[PROTO_ERR_REPLACED], 1, 5000));
    assert_int_equal(atomic_load(&e->by_code[PROTO_ERR_NO_ERROR]), 1);
    server_stop(e);
}

static void test_violations(void **state)
{
    (void)state;
    struct wse *e = server_start((struct ws_shared_config){.max_message = WS_MESSAGE_MIN});
    struct {
        const char *what;
        uint16_t code;
    } cases[] = {
        {"unmasked", 1002}, {"text", 4002},     {"unknown tag", 4002},     {"bad control", 4002},
        {"empty", 4002},    {"oversize", 1009}, {"fragmented ping", 1002}, {"two frames", 4002},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++) {
        struct wsc *c = open_ws(e, 0);
        const char *w = cases[i].what;
        if (strcmp(w, "unmasked") == 0) {
            const uint8_t m[] = {0x01, 0x01, 0x06};
            assert_int_equal(wsc_send_frame(c, 0x2, true, false, m, sizeof(m)), 0);
        } else if (strcmp(w, "text") == 0) {
            assert_int_equal(wsc_send_frame(c, 0x1, true, true, (const uint8_t *)"hi", 2), 0);
        } else if (strcmp(w, "unknown tag") == 0) {
            assert_int_equal(wsc_send_msg(c, 0x07, (const uint8_t *)"x", 1), 0);
        } else if (strcmp(w, "bad control") == 0) {
            const uint8_t m[] = {0x05, 0x01, 0x02};
            assert_int_equal(wsc_send_msg(c, WS_TAG_CONTROL, m, sizeof(m)), 0);
        } else if (strcmp(w, "empty") == 0) {
            assert_int_equal(wsc_send_frame(c, 0x2, true, true, NULL, 0), 0);
        } else if (strcmp(w, "oversize") == 0) {
            uint8_t *m = calloc(1, WS_MESSAGE_MIN + 10);
            assert_non_null(m);
            assert_int_equal(wsc_send_msg(c, WS_TAG_MEDIA, m, WS_MESSAGE_MIN + 10), 0);
            free(m);
        } else if (strcmp(w, "fragmented ping") == 0) {
            assert_int_equal(wsc_send_frame(c, 0x9, false, true, (const uint8_t *)"x", 1), 0);
        } else {
            const uint8_t m[] = {0x01, 0x06, 0x01, 0x06};
            assert_int_equal(wsc_send_msg(c, WS_TAG_CONTROL, m, sizeof(m)), 0);
        }
        uint16_t got = expect_close(c, 5000);
        if (got != cases[i].code)
            fail_msg("%s: close code %u, want %u", w, got, cases[i].code);
        expect_eof(c, 5000);
        wsc_free(c);
    }
    assert_true(wait_u64(&e->by_code[PROTO_ERR_PROTOCOL_VIOLATION], n, 5000));
    assert_int_equal(stats(e).protocol_violations, n);
    server_stop(e);
}

static void test_keepalive(void **state)
{
    (void)state;
    const uint64_t idle_ms = 1000;
    struct wse *e = server_start((struct ws_shared_config){.idle_timeout_ns = idle_ms * 1000000});
    struct wsc *a = open_ws(e, 0);
    struct wsc *b = open_ws(e, 0); /* silent: answers nothing */

    /* Our Ping is answered. */
    assert_int_equal(wsc_send_frame(a, 0x9, true, true, (const uint8_t *)"hi", 2), 0);
    struct wsc_frame f;
    assert_int_equal(wsc_recv_frame(a, &f, 5000), 1);
    assert_int_equal(f.opcode, 0xA);
    assert_int_equal(f.len, 2);

    /* The relay's Pings, answered, keep a alive past two idle timeouts. */
    uint64_t end = wsc_now_ms() + 2 * idle_ms + idle_ms / 2;
    unsigned pings = 0;
    while (wsc_now_ms() < end) {
        int r = wsc_recv_frame(a, &f, (int)(end - wsc_now_ms()));
        if (r == 0)
            break;
        assert_int_equal(r, 1);
        assert_int_equal(f.opcode, 0x9);
        pings++;
        assert_int_equal(wsc_send_frame(a, 0xA, true, true, f.data, f.len), 0);
    }
    assert_true(pings >= 2);
    control_round_trip(a, "still here");

    /* b got Pings it never answered, then the idle close. */
    assert_int_equal(expect_close(b, 5000), 4000 + PROTO_ERR_IDLE_TIMEOUT);
    expect_eof(b, 5000);
    assert_int_equal(atomic_load(&e->by_code[PROTO_ERR_IDLE_TIMEOUT]), 1);
    struct ws_stats st = stats(e);
    assert_int_equal(st.idle_timeouts, 1);
    assert_true(st.pings_sent >= 3);
    wsc_free(a);
    wsc_free(b);
    server_stop(e);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    const uint64_t hs_ms = 300;
    struct wse *e =
        server_start((struct ws_shared_config){.handshake_timeout_ns = hs_ms * 1000000});
    /* TLS done, no request. */
    struct wsc *c = NULL;
    uint64_t t0 = wsc_now_ms();
    assert_int_equal(wsc_connect(&c, "127.0.0.1", ws_shared_port(e->sh), ca_path, 0, 5000), 0);
    expect_eof(c, (int)(hs_ms * 10));
    assert_true(wsc_now_ms() - t0 >= hs_ms);
    wsc_free(c);
    /* Nothing at all: plain TCP against the TLS port. */
    struct wsc *raw = NULL;
    assert_int_equal(wsc_connect(&raw, "127.0.0.1", ws_shared_port(e->sh), NULL, 0, 5000), 0);
    expect_eof(raw, (int)(hs_ms * 10));
    wsc_free(raw);
    assert_true(wait_u64(&e->by_code[PROTO_ERR_IDLE_TIMEOUT], 2, 5000));
    assert_int_equal(stats(e).handshake_timeouts, 2);
    assert_int_equal(atomic_load(&e->opens), 0);
    server_stop(e);
}

static void test_slow_reader(void **state)
{
    (void)state;
    struct ws_shared_config cfg = {
        .out_buffer = 16 * 1024,
        .sock_sndbuf = 16 * 1024,
        .media_queue_max = 64,
        .control_queue_max = 64 * 1024,
        .media_max_age_ns = 10ULL * 1000000000, /* test queue drops, not age */
    };
    struct wse *e = server_start(cfg);
    struct wsc *slow = open_ws(e, 4096);
    struct wsc *fast = open_ws(e, 0);

    /* slow asks for media and never reads; fast keeps its round trips. */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(wsc_send_control(slow, (const uint8_t *)"flood:50", 8), 0);
        char body[32];
        snprintf(body, sizeof(body), "rt-%d", i);
        control_round_trip(fast, body);
        if (stats(e).media_drop_queue > 0 && i >= 4)
            break;
    }
    assert_true(WAIT_STAT(e, media_drop_queue, 1, 5000));
    /* Nothing grew past its bound: one message over the byte bound at most. */
    assert_true(atomic_load(&e->max_media_queued) <= 64);
    assert_true(atomic_load(&e->max_out_buffered) <= 16 * 1024 + MEDIA_LEN + 64);

    /* fast's media still flows. */
    uint8_t pkt[40] = {0x40, 0};
    assert_int_equal(wsc_send_msg(fast, WS_TAG_MEDIA, pkt, sizeof(pkt)), 0);
    struct wsc_frame f;
    assert_int_equal(recv_app(fast, &f, 5000), 1);
    assert_int_equal(f.len, 1 + sizeof(pkt));

    /* Control the slow reader cannot take: TOO_SLOW. */
    assert_int_equal(wsc_send_control(slow, (const uint8_t *)"ctlflood:40", 11), 0);
    assert_true(wait_u64(&e->by_code[PROTO_ERR_TOO_SLOW], 1, 5000));
    assert_int_equal(stats(e).too_slow, 1);
    control_round_trip(fast, "after");

    /* The slow reader, reading at last, finds media and then the end
     * (its Close may not fit; the close timeout ends it either way). */
    uint64_t end = wsc_now_ms() + 10000;
    int r;
    do {
        r = wsc_recv_frame(slow, &f, (int)(end - wsc_now_ms()));
    } while (r == 1 && f.opcode != 0x8);
    if (r == 1)
        assert_int_equal(f.close_code, 4000 + PROTO_ERR_TOO_SLOW);
    wsc_free(slow);
    wsc_free(fast);
    server_stop(e);
}

/* Control that waits longer than the control timeout closes with
 * TOO_SLOW even below the byte bound. */
static void test_control_timeout(void **state)
{
    (void)state;
    const uint64_t ct_ms = 300;
    struct ws_shared_config cfg = {
        .out_buffer = 16 * 1024,
        .sock_sndbuf = 16 * 1024,
        .control_timeout_ns = ct_ms * 1000000,
    };
    struct wse *e = server_start(cfg);
    struct wsc *slow = open_ws(e, 4096);
    uint64_t t0 = wsc_now_ms();
    assert_int_equal(wsc_send_control(slow, (const uint8_t *)"ctlflood:50", 11), 0);
    assert_true(wait_u64(&e->by_code[PROTO_ERR_TOO_SLOW], 1, (int)(ct_ms * 20)));
    assert_true(wsc_now_ms() - t0 >= ct_ms);
    wsc_free(slow);
    server_stop(e);
}

/* Pings from a client that does not read its Pongs: TOO_SLOW, not an
 * unbounded Pong queue. */
static void test_ping_flood(void **state)
{
    (void)state;
    struct ws_shared_config cfg = {.out_buffer = 16 * 1024, .sock_sndbuf = 16 * 1024};
    struct wse *e = server_start(cfg);
    struct wsc *c = open_ws(e, 4096);
    /* Fill the way back first, then ping without reading. */
    for (int i = 0; i < 8; i++)
        assert_int_equal(wsc_send_control(c, (const uint8_t *)"flood:50", 8), 0);
    assert_true(WAIT_STAT(e, media_drop_queue, 1, 5000));
    uint8_t frames[400 * 8];
    size_t n = 0;
    for (int i = 0; i < 400; i++)
        n += wsc_frame_encode(frames + n, sizeof(frames) - n, 0x9, true, true, NULL, 0);
    assert_int_equal(wsc_send_raw(c, frames, n, 5000), 0);
    assert_true(wait_u64(&e->by_code[PROTO_ERR_TOO_SLOW], 1, 5000));
    wsc_free(c);
    server_stop(e);
}

/* A certificate reload serves new connections with the new certificate
 * while old ones go on; draining refuses new connections only. */
static void test_reload_and_drain(void **state)
{
    (void)state;
    struct wse *e = server_start((struct ws_shared_config){0});
    uint16_t port = ws_shared_port(e->sh);
    struct wsc *a = open_ws(e, 0);
    const char *other = echo_cert_dir(true);
    char cert2[600], key2[600], ca2[600];
    snprintf(cert2, sizeof(cert2), "%s/server.pem", other);
    snprintf(key2, sizeof(key2), "%s/server.key", other);
    snprintf(ca2, sizeof(ca2), "%s/ca.pem", other);
    assert_int_equal(ws_shared_reload_cert(e->sh, cert2, key2), 0);
    assert_int_equal(ws_shared_reload_cert(e->sh, "/nonexistent.pem", key2), ROOST_ECRYPTO);

    struct wsc *b = NULL;
    assert_true(wsc_connect(&b, "127.0.0.1", port, ca_path, 0, 5000) < 0);
    assert_int_equal(wsc_connect(&b, "127.0.0.1", port, ca2, 0, 5000), 0);
    int status = 0;
    assert_int_equal(wsc_upgrade(b, "/ws", "roost.v1", NULL, 0, &status, 5000), 0);
    control_round_trip(a, "old certificate");
    control_round_trip(b, "new certificate");

    ws_shared_set_draining(e->sh, true);
    assert_true(ws_shared_draining(e->sh));
    struct wsc *c = NULL;
    assert_true(wsc_connect(&c, "127.0.0.1", port, ca2, 0, 5000) < 0);
    assert_true(WAIT_STAT(e, refused_draining, 1, 5000));
    control_round_trip(a, "draining");
    control_round_trip(b, "draining");
    ws_shared_set_draining(e->sh, false);
    assert_int_equal(wsc_connect(&c, "127.0.0.1", port, ca2, 0, 5000), 0);
    wsc_free(c);
    wsc_free(a);
    wsc_free(b);
    server_stop(e);
}

static void test_config(void **state)
{
    (void)state;
    assert_true(ws_addr_is_loopback("127.0.0.1"));
    assert_true(ws_addr_is_loopback("127.1.2.3"));
    assert_true(ws_addr_is_loopback("::1"));
    assert_true(ws_addr_is_loopback("::ffff:127.0.0.1"));
    assert_false(ws_addr_is_loopback("0.0.0.0"));
    assert_false(ws_addr_is_loopback("::"));
    assert_false(ws_addr_is_loopback("192.0.2.1"));
    assert_false(ws_addr_is_loopback("localhost"));
    assert_false(ws_addr_is_loopback(NULL));

    struct ws_shared *sh = NULL;
    struct ws_shared_config c = {.plain = true, .addr = "0.0.0.0", .n_workers = 1};
    assert_int_equal(ws_shared_new(&sh, &c), ROOST_EINVAL);
    c.addr = "::";
    assert_int_equal(ws_shared_new(&sh, &c), ROOST_EINVAL);
    c.addr = "127.0.0.1";
    assert_int_equal(ws_shared_new(&sh, &c), 0);
    assert_true(ws_shared_port(sh) != 0);
    ws_shared_del(sh);
    /* TLS needs a certificate; the message cap has a floor. */
    c.plain = false;
    assert_int_equal(ws_shared_new(&sh, &c), ROOST_EINVAL);
    c.plain = true;
    c.max_message = WS_MESSAGE_MIN - 1;
    assert_int_equal(ws_shared_new(&sh, &c), ROOST_EINVAL);
    /* Nothing to reload on a plain listener. */
    c.max_message = 0;
    assert_int_equal(ws_shared_new(&sh, &c), 0);
    assert_int_equal(ws_shared_reload_cert(sh, "a.pem", "a.key"), ROOST_EINVAL);
    ws_shared_del(sh);

    assert_int_equal(ws_close_code_from_app(PROTO_ERR_NO_ERROR), 1000);
    assert_int_equal(ws_close_code_from_app(PROTO_ERR_TOO_SLOW), 4011);
    assert_int_equal(ws_app_from_close_code(1000), PROTO_ERR_NO_ERROR);
    assert_int_equal(ws_app_from_close_code(1001), PROTO_ERR_NO_ERROR);
    assert_int_equal(ws_app_from_close_code(1005), PROTO_ERR_NO_ERROR);
    assert_int_equal(ws_app_from_close_code(4000), PROTO_ERR_NO_ERROR);
    assert_int_equal(ws_app_from_close_code(4013), PROTO_ERR_REPLACED);
    assert_int_equal(ws_app_from_close_code(1002), PROTO_ERR_INTERNAL);
    assert_int_equal(ws_app_from_close_code(3000), PROTO_ERR_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_round_trips_tls),
        cmocka_unit_test(test_round_trips_plain),
        cmocka_unit_test(test_round_trips_v6),
        cmocka_unit_test(test_app_close),
        cmocka_unit_test(test_violations),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_control_timeout),
        cmocka_unit_test(test_ping_flood),
        cmocka_unit_test(test_reload_and_drain),
    };
    return cmocka_run_group_tests_name("ws_echo", tests, NULL, NULL);
}
