/* Browser participants end to end: an in-process relay with its WebSocket
 * listener (ws_listen), QUIC participants (test/common/participant) and
 * WebSocket participants (test/common/ws_client: wsp) in the same rooms.
 *
 *   - mixed room over wss:// (upgrade on /ws) and plain ws:// on loopback
 *     (upgrade on /): presence both ways, media both ways delivered
 *     exactly once with the bytes intact, LEAVE seen by the QUIC side,
 *     /rooms lists the WebSocket member as transport "ws", GOAWAY on drain
 *     reaches both transports and a new WebSocket connection is refused;
 *   - plain ws:// on a non-loopback address is refused by relay_new;
 *   - the static page: web_root files with their types, and everything
 *     outside the rules (traversal, dot-files, symlinks, unknown types,
 *     over the size cap) refused;
 *   - a WebSocket reader that stops reading: its media is dropped (counted
 *     per reason in relay_worker_stats and /metrics), its control times out
 *     and it is closed with TOO_SLOW, while a WebSocket reader in the same
 *     room gets every packet exactly once.
 * Deadlines derive from the configured timeouts; nothing sleeps blindly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../common/echo_app.h"
#include "../common/participant.h"
#include "../common/ws_client.h"
#include "core/buf.h"
#include "core/error.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "relay/admin.h"
#include "relay/metrics.h"
#include "relay/relay.h"

#define WAIT_MS 15000
#define K 50 /* media packets each way */
#define PAYLOAD 100

static char ca_path[600];

/* --------------------------------------------- QUIC side with payloads */

/* What the QUIC participant received, per sequence number (the WS sender
 * sends seq 1..K). */
static struct {
    unsigned count[K + 1];
    unsigned bad;
} qrx;

static struct roost_client_callbacks qcbs;

static void q_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    struct media_hdr h;
    if (media_r2c_decode(data, len, &h) >= 0) {
        bool intact = len == MEDIA_R2C_HDR_LEN + PAYLOAD;
        for (size_t i = 0; intact && i < PAYLOAD; i++)
            intact = data[MEDIA_R2C_HDR_LEN + i] == wsp_payload(h.seq, i);
        if (!intact || h.seq == 0 || h.seq > K)
            qrx.bad++;
        else
            qrx.count[h.seq]++;
    }
    part_cbs.on_datagram(c, data, len, arg);
}

static struct roost_client *qclient(void)
{
    qcbs = part_cbs;
    qcbs.on_datagram = q_datagram;
    struct roost_client_config cc = {.ca_file = ca_path};
    struct roost_client *cl;
    assert_int_equal(roost_client_new(&cl, &cc, &qcbs, NULL), 0);
    return cl;
}

static int q_send(struct part *p, uint32_t seq)
{
    uint8_t d[MEDIA_C2R_HDR_LEN + PAYLOAD];
    struct media_hdr h = {.stream_id = 0, .seq = seq, .timestamp = seq * 960};
    media_c2r_encode(&h, d, sizeof(d));
    for (size_t i = 0; i < PAYLOAD; i++)
        d[MEDIA_C2R_HDR_LEN + i] = wsp_payload(seq, i);
    return roost_conn_send_datagram(p->c, d, sizeof(d));
}

/* ------------------------------------------------------------- helpers */

struct world {
    struct roost_client *cl;
    struct wsp *w[3];
    unsigned nw;
};

/* Steps the QUIC client and polls every WebSocket participant until
 * pred holds or timeout_ms passed. */
static bool until(struct world *wd, bool (*pred)(void *), void *arg, int timeout_ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)timeout_ms;
    while (!pred(arg)) {
        if (wsc_now_ms() >= end)
            return pred(arg);
        if (wd->cl != NULL)
            roost_client_step(wd->cl, 1);
        for (unsigned i = 0; i < wd->nw; i++)
            if (wd->w[i] != NULL && !wd->w[i]->closed)
                (void)wsp_poll(wd->w[i], 1);
    }
    return true;
}

static void settle(struct world *wd, int ms)
{
    uint64_t end = wsc_now_ms() + (uint64_t)ms;
    while (wsc_now_ms() < end) {
        if (wd->cl != NULL)
            roost_client_step(wd->cl, 1);
        for (unsigned i = 0; i < wd->nw; i++)
            if (wd->w[i] != NULL && !wd->w[i]->closed)
                (void)wsp_poll(wd->w[i], 1);
    }
}

struct pair {
    struct part *q;
    struct wsp *w;
};

static bool both_joined(void *arg)
{
    struct pair *p = arg;
    return (p->q->answered || p->q->closed) && (p->w->answered || p->w->closed);
}

static bool q_answered(void *arg)
{
    struct pair *p = arg;
    return p->q->answered || p->q->closed;
}

static bool presence_both(void *arg)
{
    struct pair *p = arg;
    return part_events(p->q, MSG_EV_JOIN, p->w->pid) == 1;
}

static bool media_both(void *arg)
{
    struct pair *p = arg;
    unsigned got = 0;
    for (unsigned s = 1; s <= K; s++)
        got += qrx.count[s] > 0;
    return got == K && p->w->n_media >= K;
}

static bool q_saw_leave(void *arg)
{
    struct pair *p = arg;
    return part_events(p->q, MSG_EV_LEAVE, p->w->pid) == 1;
}

static bool ws_goaway(void *arg)
{
    struct pair *p = arg;
    return p->w->n_goaway == 1;
}

static void relay_cfg(struct relay_config *cfg, bool plain)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->n_workers = 2;
    cfg->ws.addr = "127.0.0.1";
    cfg->ws.port = 0;
    cfg->ws.plain = plain;
}

/* ------------------------------------------------------------ mixed room */

static void mixed_room(bool plain, const char *path)
{
    int64_t base = buf_live();
    memset(&qrx, 0, sizeof(qrx));
    struct test_relay tr;
    struct relay_config cfg;
    relay_cfg(&cfg, plain);
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    uint16_t wport = relay_ws_port(tr.r);
    assert_int_not_equal(wport, 0);

    struct world wd = {.cl = qclient()};
    struct part *q = calloc(1, sizeof(*q));
    struct wsp *w = calloc(1, sizeof(*w));
    assert_non_null(q);
    assert_non_null(w);
    snprintf(q->room, sizeof(q->room), "mix");
    snprintf(q->name, sizeof(q->name), "quic-alice");
    test_token(&tr, "mix", "alice", TOKEN_PERM_ALL, 0, 600, q->token, sizeof(q->token));
    snprintf(w->room, sizeof(w->room), "mix");
    snprintf(w->name, sizeof(w->name), "browser-bob");
    test_token(&tr, "mix", "bob", TOKEN_PERM_ALL, 0, 600, w->token, sizeof(w->token));

    /* The QUIC member first, then the browser: presence both ways. */
    assert_int_equal(part_connect(wd.cl, tr.port, q), 0);
    struct pair pr = {q, w};
    assert_true(until(&wd, q_answered, &pr, WAIT_MS));
    assert_true(q->joined);
    assert_int_equal(wsp_connect(w, "127.0.0.1", wport, plain ? NULL : ca_path, path, 0, WAIT_MS),
                     0);
    wd.w[0] = w;
    wd.nw = 1;
    assert_true(until(&wd, both_joined, &pr, WAIT_MS));
    assert_true(q->joined);
    assert_true(w->joined);
    assert_int_not_equal(w->pid, 0);
    /* bob sees alice in JOINED; alice sees bob's JOIN event. */
    bool alice_listed = false;
    for (uint32_t i = 0; i < w->joined_n; i++)
        alice_listed |= w->joined_pids[i] == q->pid;
    assert_true(alice_listed);
    assert_true(until(&wd, presence_both, &pr, WAIT_MS));

    /* /rooms: the browser is a member like any other, over "ws". */
    struct relay_member_info *mi;
    size_t n_mi;
    assert_int_equal(relay_members(tr.r, &mi, &n_mi), 0);
    assert_int_equal(n_mi, 2);
    unsigned n_ws = 0;
    for (size_t i = 0; i < n_mi; i++)
        if (mi[i].pid == w->pid) {
            assert_string_equal(mi[i].transport, "ws");
            assert_string_equal(mi[i].display, "browser-bob");
            n_ws++;
        } else {
            assert_string_equal(mi[i].transport, "quic");
        }
    assert_int_equal(n_ws, 1);
    free(mi);
    /* ... and the admin endpoint's /rooms says so. */
    struct admin *adm;
    struct admin_config ac = {.addr = "127.0.0.1"};
    assert_int_equal(admin_new(&adm, tr.r, &ac), 0);
    struct wsc *hc;
    assert_int_equal(wsc_connect(&hc, "127.0.0.1", admin_port(adm), NULL, 0, WAIT_MS), 0);
    static const char get[] = "GET /rooms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(wsc_send_raw(hc, get, sizeof(get) - 1, WAIT_MS), 0);
    const uint8_t *body;
    size_t blen;
    assert_int_equal(wsc_read_all(hc, &body, &blen, WAIT_MS), 0);
    char *text = strndup((const char *)body, blen);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"transport\": \"ws\""));
    assert_non_null(strstr(text, "\"transport\": \"quic\""));
    free(text);
    wsc_free(hc);
    admin_del(adm);

    /* Media both ways, paced: K packets each. */
    for (uint32_t s = 1; s <= K; s++) {
        assert_int_equal(q_send(q, s), 0);
        assert_int_equal(wsp_send_media(w, s, PAYLOAD), 0);
        if (s % 5 == 0)
            settle(&wd, 1);
    }
    if (!until(&wd, media_both, &pr, WAIT_MS)) {
        unsigned got = 0;
        for (unsigned s = 1; s <= K; s++)
            got += qrx.count[s] > 0;
        struct relay_stats rs;
        relay_stats(tr.r, &rs);
        struct ws_stats t = {0};
        struct relay_worker_stats a0, a1;
        relay_worker_stats(tr.r, 0, &a0);
        relay_worker_stats(tr.r, 1, &a1);
        t.media_in = a0.ws.media_in + a1.ws.media_in;
        fail_msg("quic got %u/%u (bad %u, n_media %u), ws got %u/%u; relay media_in %llu out %llu "
                 "dropped %llu not_joined %llu ws_in %llu malformed %llu",
                 got, K, qrx.bad, q->n_media, w->n_media, K, (unsigned long long)rs.media_in,
                 (unsigned long long)rs.media_out, (unsigned long long)rs.media_dropped,
                 (unsigned long long)rs.dgram_not_joined, (unsigned long long)t.media_in,
                 (unsigned long long)(a0.room.media_dropped_malformed +
                                      a1.room.media_dropped_malformed));
    }
    settle(&wd, 100); /* a duplicate would arrive now */
    /* Exactly once, intact, from the right sender. */
    assert_int_equal(qrx.bad, 0);
    for (unsigned s = 1; s <= K; s++)
        assert_int_equal(qrx.count[s], 1);
    assert_int_equal(w->n_media, K);
    unsigned seen[K + 1] = {0};
    for (uint32_t i = 0; i < w->n_media; i++) {
        struct wsp_rx *rx = &w->media[i];
        assert_int_equal(rx->sender, q->pid);
        assert_true(rx->seq >= 1 && rx->seq <= K);
        assert_int_equal(rx->len, PAYLOAD);
        assert_true(rx->intact);
        seen[rx->seq]++;
        /* TCP: in order. */
        if (i > 0)
            assert_true(rx->seq > w->media[i - 1].seq);
    }
    for (unsigned s = 1; s <= K; s++)
        assert_int_equal(seen[s], 1);
    struct relay_stats st;
    relay_stats(tr.r, &st);
    assert_int_equal(st.participants, 2);

    /* Drain: GOAWAY to the browser too; a new browser is refused. */
    assert_int_equal(relay_drain(tr.r), 0);
    assert_true(until(&wd, ws_goaway, &pr, WAIT_MS));
    struct wsp *late = calloc(1, sizeof(*late));
    assert_non_null(late);
    assert_true(wsp_connect(late, "127.0.0.1", wport, plain ? NULL : ca_path, path, 0, WAIT_MS) <
                0);
    wsp_free(late);
    free(late);

    /* The browser leaves: the QUIC member sees it. */
    assert_int_equal(wsp_leave(w), 0);
    assert_true(until(&wd, q_saw_leave, &pr, WAIT_MS));
    /* LEAVE closes with NO_ERROR (1000) after what was queued. */
    for (uint64_t end = wsc_now_ms() + WAIT_MS; !w->closed && wsc_now_ms() < end;)
        (void)wsp_poll(w, 10);
    assert_true(w->closed);
    assert_int_equal(w->close_code, 1000);

    wsp_free(w);
    free(w);
    roost_client_del(wd.cl);
    free(q);
    test_relay_stop(&tr);
    assert_int_equal(buf_live(), base);
}

static void test_mixed_room_tls(void **state)
{
    (void)state;
    mixed_room(false, "/ws");
}

static void test_mixed_room_plain(void **state)
{
    (void)state;
    mixed_room(true, "/");
}

static void test_plain_refused(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg;
    relay_cfg(&cfg, true);
    cfg.ws.addr = "0.0.0.0";
    assert_int_equal(test_relay_start(&tr, &cfg), ROOST_EINVAL);
    unlink(tr.key_file);
    /* TLS on the same address is fine. */
    relay_cfg(&cfg, false);
    cfg.ws.addr = "0.0.0.0";
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    assert_int_not_equal(relay_ws_port(tr.r), 0);
    test_relay_stop(&tr);
}

/* ------------------------------------------------------------ web root */

static char web_dir[256];

static void put_file(const char *name, const char *text, size_t len)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", web_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* GET path over a fresh connection: the status, and the whole answer in
 * out (NUL-ended). */
static int http_get(uint16_t port, const char *path, char *out, size_t cap)
{
    struct wsc *c;
    assert_int_equal(wsc_connect(&c, "127.0.0.1", port, ca_path, 0, WAIT_MS), 0);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
                     path);
    assert_int_equal(wsc_send_raw(c, req, (size_t)n, WAIT_MS), 0);
    const uint8_t *d;
    size_t len;
    assert_int_equal(wsc_read_all(c, &d, &len, WAIT_MS), 0);
    size_t k = len < cap - 1 ? len : cap - 1;
    memcpy(out, d, k);
    out[k] = '\0';
    wsc_free(c);
    int status = 0;
    if (sscanf(out, "HTTP/1.1 %d", &status) != 1)
        return -1;
    return status;
}

static void test_web_root(void **state)
{
    (void)state;
    snprintf(web_dir, sizeof(web_dir), "%s/web-%d", echo_cert_dir(false), (int)getpid());
    mkdir(web_dir, 0755);
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/js", web_dir);
    mkdir(sub, 0755);
    put_file("index.html", "<!doctype html><title>roost</title>\n", 36);
    put_file("js/app.js", "console.log(1);\n", 16);
    put_file(".secret.txt", "no\n", 3);
    put_file("run.sh", "#!/bin/sh\n", 10);
    char *big = calloc(1, WS_WEB_FILE_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', WS_WEB_FILE_MAX + 1);
    put_file("big.txt", big, WS_WEB_FILE_MAX + 1);
    free(big);
    char lnk[512], tgt[512];
    snprintf(lnk, sizeof(lnk), "%s/link.txt", web_dir);
    snprintf(tgt, sizeof(tgt), "%s/server.key", echo_cert_dir(false));
    unlink(lnk);
    assert_int_equal(symlink(tgt, lnk), 0);

    struct test_relay tr;
    struct relay_config cfg;
    relay_cfg(&cfg, false);
    cfg.ws.web_root = web_dir;
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    uint16_t port = relay_ws_port(tr.r);
    char *out = malloc(8192);
    assert_non_null(out);

    assert_int_equal(http_get(port, "/", out, 8192), 200);
    assert_non_null(strstr(out, "Content-Type: text/html; charset=utf-8\r\n"));
    assert_non_null(strstr(out, "Content-Length: 36\r\n"));
    assert_non_null(strstr(out, "X-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n<!doctype html><title>roost</title>\n"));
    assert_int_equal(http_get(port, "/index.html?x=1", out, 8192), 200);
    assert_int_equal(http_get(port, "/js/app.js", out, 8192), 200);
    assert_non_null(strstr(out, "Content-Type: text/javascript; charset=utf-8\r\n"));
    assert_non_null(strstr(out, "console.log(1);"));
    /* Nothing outside the rules. */
    const char *refused[] = {"/../server.key", "/js/../index.html", "/.secret.txt",
                             "/run.sh",        "/link.txt",         "/nope.html",
                             "//index.html",   "/%2e%2e/x",         "/js"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        int st = http_get(port, refused[i], out, 8192);
        if (st != 404)
            fail_msg("%s: status %d", refused[i], st);
        assert_null(strstr(out, "PRIVATE KEY"));
    }
    assert_int_equal(http_get(port, "/big.txt", out, 8192), 403);
    /* The WebSocket path itself, without an upgrade. */
    assert_int_equal(http_get(port, "/ws", out, 8192), 426);
    /* And the upgrade on / still works with a web root. */
    struct wsc *c;
    int status = 0;
    assert_int_equal(wsc_connect(&c, "127.0.0.1", port, ca_path, 0, WAIT_MS), 0);
    assert_int_equal(wsc_upgrade(c, "/", "roost.v1", NULL, 0, &status, WAIT_MS), 0);
    assert_int_equal(status, 101);
    wsc_free(c);
    struct relay_worker_stats ws0, ws1;
    relay_worker_stats(tr.r, 0, &ws0);
    relay_worker_stats(tr.r, 1, &ws1);
    assert_int_equal(ws0.ws.web_served + ws1.ws.web_served, 3);
    assert_int_equal(ws0.ws.web_refused + ws1.ws.web_refused, 11);

    free(out);
    test_relay_stop(&tr);
    unlink(lnk);
    const char *files[] = {"index.html", "js/app.js", ".secret.txt", "run.sh", "big.txt"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", web_dir, files[i]);
        unlink(p);
    }
    rmdir(sub);
    rmdir(web_dir);
}

/* ------------------------------------------------------------- rejects */

static bool w_joined(void *arg)
{
    struct wsp *w = arg;
    return w->answered || w->closed;
}

static bool w_rejects(void *arg)
{
    struct wsp *w = arg;
    return w->closed || w->n_rejects >= 3;
}

/* A browser with a bad token: JOIN_REJECTED each time, and after the third
 * the relay closes with the rejection's code only once the rejection was
 * written (the session's linger polls the WebSocket's pending control):
 * the client reads all three JOIN_REJECTED, then Close 4000 + code. */
static void test_rejects(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg;
    relay_cfg(&cfg, false);
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct wsp *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    snprintf(w->room, sizeof(w->room), "locked");
    snprintf(w->name, sizeof(w->name), "mallory");
    /* A token for another room. */
    test_token(&tr, "other", "mallory", TOKEN_PERM_ALL, 0, 600, w->token, sizeof(w->token));
    assert_int_equal(wsp_connect(w, "127.0.0.1", relay_ws_port(tr.r), ca_path, "/ws", 0, WAIT_MS),
                     0);
    struct world wd = {.w = {w}, .nw = 1};
    assert_true(until(&wd, w_joined, w, WAIT_MS));
    assert_int_equal(w->n_rejects, 1);
    uint32_t code = w->reject_code;
    assert_int_not_equal(code, 0);
    assert_int_equal(wsp_join(w), 0);
    assert_int_equal(wsp_join(w), 0);
    assert_true(until(&wd, w_rejects, w, WAIT_MS));
    for (uint64_t end = wsc_now_ms() + WAIT_MS; !w->closed && wsc_now_ms() < end;)
        (void)wsp_poll(w, 10);
    assert_int_equal(w->n_rejects, 3);
    assert_false(w->joined);
    assert_true(w->closed);
    assert_int_equal(w->close_code, 4000 + code);
    wsp_free(w);
    free(w);
    test_relay_stop(&tr);
}

/* ------------------------------------------------------------ timeouts */

/* The relay's handshake and idle timeouts apply to WebSocket connections:
 * no upgrade in time (TCP closed), no HELLO in time after the upgrade
 * (Close 4014, the session deadline), and a joined participant that sends
 * nothing, not even Pongs (the relay's Pings go unanswered): Close 4014
 * after the idle timeout. Bounds derive from the configured timeouts.
 *
 * Two relays, each with only the timeout under test short: a participant
 * that must get through TLS, the upgrade, HELLO and JOIN first would be
 * cut off by a short handshake timeout whenever a loaded machine stalls
 * the test that long (400 ms for both steps failed under load). The short
 * ones are 2 s: an upgrade or a TLS handshake slower than that is a stall
 * of seconds. */
static void test_timeouts(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg;
    relay_cfg(&cfg, false);
    cfg.handshake_timeout_ns = 2000ull * 1000000ull;
    cfg.idle_timeout_ns = (uint64_t)WAIT_MS * 1000000ull;
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    uint16_t port = relay_ws_port(tr.r);
    int slack_ms = 20 * (int)(cfg.handshake_timeout_ns / 1000000u); /* loaded machine */

    /* No upgrade request: closed without an answer. */
    struct wsc *c;
    assert_int_equal(wsc_connect(&c, "127.0.0.1", port, ca_path, 0, WAIT_MS), 0);
    uint64_t t0 = wsc_now_ms();
    const uint8_t *d;
    size_t len;
    assert_int_equal(wsc_read_all(c, &d, &len, slack_ms), 0);
    assert_int_equal(len, 0);
    assert_true(wsc_now_ms() - t0 >= cfg.handshake_timeout_ns / 1000000u * 9 / 10);
    wsc_free(c);

    /* Upgraded, no HELLO: the session's deadline closes it (IDLE_TIMEOUT). */
    int status = 0;
    assert_int_equal(wsc_connect(&c, "127.0.0.1", port, ca_path, 0, WAIT_MS), 0);
    assert_int_equal(wsc_upgrade(c, "/ws", "roost.v1", NULL, 0, &status, WAIT_MS), 0);
    struct wsc_frame f;
    uint16_t code = 0;
    for (uint64_t end = wsc_now_ms() + (uint64_t)slack_ms; code == 0 && wsc_now_ms() < end;) {
        int r = wsc_recv_frame(c, &f, 50);
        if (r < 0)
            break;
        if (r == 1 && f.opcode == 0x8)
            code = f.close_code;
    }
    assert_int_equal(code, 4000 + PROTO_ERR_IDLE_TIMEOUT);
    wsc_free(c);
    struct relay_worker_stats a, b;
    relay_worker_stats(tr.r, 0, &a);
    relay_worker_stats(tr.r, 1, &b);
    assert_int_equal(a.ws.handshake_timeouts + b.ws.handshake_timeouts, 1);
    assert_int_equal(a.ws.idle_timeouts + b.ws.idle_timeouts, 0);
    test_relay_stop(&tr);

    /* Joined, then silent: the relay pings, nobody answers, IDLE_TIMEOUT. */
    relay_cfg(&cfg, false);
    cfg.handshake_timeout_ns = (uint64_t)WAIT_MS * 1000000ull;
    cfg.idle_timeout_ns = 2000ull * 1000000ull;
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    port = relay_ws_port(tr.r);
    slack_ms = 20 * (int)(cfg.idle_timeout_ns / 1000000u);
    struct wsp *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    snprintf(w->room, sizeof(w->room), "idle");
    snprintf(w->name, sizeof(w->name), "sleepy");
    test_token(&tr, "idle", "sleepy", TOKEN_PERM_ALL, 0, 600, w->token, sizeof(w->token));
    assert_int_equal(wsp_connect(w, "127.0.0.1", port, ca_path, "/ws", 0, WAIT_MS), 0);
    struct world wd = {.w = {w}, .nw = 1};
    assert_true(until(&wd, w_joined, w, WAIT_MS));
    assert_true(w->joined);
    /* Wait for the relay to give up, reading nothing meanwhile. */
    bool gone = false;
    for (uint64_t end = wsc_now_ms() + (uint64_t)slack_ms; !gone && wsc_now_ms() < end;) {
        struct relay_stats st;
        relay_stats(tr.r, &st);
        gone = st.participants == 0;
        if (!gone) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL); /* polling the relay's counter, not a fixed wait */
        }
    }
    assert_true(gone);
    /* What it finds when it reads again: Pings, then Close 4014. */
    for (uint64_t end = wsc_now_ms() + WAIT_MS; !w->closed && wsc_now_ms() < end;)
        (void)wsp_poll(w, 10);
    assert_true(w->closed);
    assert_int_equal(w->close_code, 4000 + PROTO_ERR_IDLE_TIMEOUT);
    relay_worker_stats(tr.r, 0, &a);
    relay_worker_stats(tr.r, 1, &b);
    assert_true(a.ws.pings_sent + b.ws.pings_sent >= 1);
    assert_int_equal(a.ws.idle_timeouts + b.ws.idle_timeouts, 1);
    assert_int_equal(a.ws.handshake_timeouts + b.ws.handshake_timeouts, 0);
    wsp_free(w);
    free(w);
    test_relay_stop(&tr);
}

/* --------------------------------------------------------- slow reader */

#define SLOW_N 400
#define SLOW_LEN 1000

struct slow {
    struct relay *r;
    struct wsp *fast, *slow;
};

static struct ws_stats ws_total(struct relay *r)
{
    struct ws_stats t = {0};
    for (unsigned i = 0; i < relay_workers(r); i++) {
        struct relay_worker_stats s;
        relay_worker_stats(r, i, &s);
        uint64_t *d = (uint64_t *)&t;
        const uint64_t *v = (const uint64_t *)&s.ws;
        for (size_t k = 0; k < sizeof(t) / sizeof(uint64_t); k++)
            d[k] += v[k];
    }
    return t;
}

static bool too_slow_seen(void *arg)
{
    struct slow *s = arg;
    return ws_total(s->r).too_slow >= 1;
}

static void test_slow_reader(void **state)
{
    (void)state;
    int64_t base = buf_live();
    struct test_relay tr;
    struct relay_config cfg;
    relay_cfg(&cfg, true);
    cfg.n_workers = 1; /* one worker: the slow reader shares it with everyone */
    cfg.quality_interval_ns = 100ull * 1000000ull; /* control flows to the slow reader */
    /* Room enough that the reader that reads never drops on a loaded
     * machine (or under ASan): a 64-packet queue, no age limit within the
     * test; small socket buffers so that the one that stops reading
     * blocks after a few dozen packets. */
    cfg.ws.media_queue_max = 64;
    cfg.ws.media_max_age_ns = 60ull * 1000000000ull;
    cfg.ws.control_timeout_ns = 1000ull * 1000000ull;
    cfg.ws.sock_sndbuf = 4096;
    cfg.ws.out_buffer = 16384;
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    uint16_t wport = relay_ws_port(tr.r);
    struct world wd = {.cl = qclient()};
    struct part *q = calloc(1, sizeof(*q));
    struct wsp *fast = calloc(1, sizeof(*fast));
    struct wsp *slow = calloc(1, sizeof(*slow));
    assert_true(q && fast && slow);
    snprintf(q->room, sizeof(q->room), "slow");
    snprintf(q->name, sizeof(q->name), "sender");
    test_token(&tr, "slow", "sender", TOKEN_PERM_ALL, 0, 600, q->token, sizeof(q->token));
    struct wsp *ws[2] = {fast, slow};
    const char *names[2] = {"fast", "slow"};
    for (int i = 0; i < 2; i++) {
        snprintf(ws[i]->room, sizeof(ws[i]->room), "slow");
        snprintf(ws[i]->name, sizeof(ws[i]->name), "%s", names[i]);
        test_token(&tr, "slow", names[i], TOKEN_PERM_ALL, 0, 600, ws[i]->token,
                   sizeof(ws[i]->token));
        /* The slow one has a small receive buffer: it fills fast. */
        assert_int_equal(
            wsp_connect(ws[i], "127.0.0.1", wport, NULL, "/ws", i == 1 ? 4096 : 0, WAIT_MS), 0);
    }
    assert_int_equal(part_connect(wd.cl, tr.port, q), 0);
    wd.w[0] = fast;
    wd.w[1] = slow;
    wd.nw = 2;
    struct pair p1 = {q, fast}, p2 = {q, slow};
    assert_true(until(&wd, both_joined, &p1, WAIT_MS));
    assert_true(until(&wd, both_joined, &p2, WAIT_MS));
    assert_true(q->joined && fast->joined && slow->joined);

    /* From here the slow reader reads nothing. */
    wd.w[1] = NULL;
    struct slow s = {tr.r, fast, slow};
    for (uint32_t k = 1; k <= SLOW_N; k++) {
        uint8_t d[MEDIA_C2R_HDR_LEN + SLOW_LEN];
        struct media_hdr h = {.stream_id = 0, .seq = k, .timestamp = k * 960};
        media_c2r_encode(&h, d, sizeof(d));
        for (size_t i = 0; i < SLOW_LEN; i++)
            d[MEDIA_C2R_HDR_LEN + i] = wsp_payload(k, i);
        assert_int_equal(roost_conn_send_datagram(q->c, d, sizeof(d)), 0);
        settle(&wd, 1); /* paced: one packet per step, the fast reader reads each step */
    }
    /* The reader that reads gets everything, exactly once, in order. QUIC
     * may lose a datagram between the sender and the relay on a loaded
     * machine: what the relay received is what the fast reader must get. */
    uint64_t deadline = wsc_now_ms() + WAIT_MS;
    struct relay_stats st;
    for (;;) {
        relay_stats(tr.r, &st);
        if (fast->n_media >= st.media_in || wsc_now_ms() >= deadline)
            break;
        settle(&wd, 2);
    }
    relay_stats(tr.r, &st);
    assert_true(st.media_in >= SLOW_N * 9 / 10);
    assert_int_equal(fast->n_media, st.media_in);
    for (uint32_t i = 0; i < fast->n_media; i++) {
        assert_true(fast->media[i].intact);
        assert_int_equal(fast->media[i].len, SLOW_LEN);
        if (i > 0)
            assert_true(fast->media[i].seq > fast->media[i - 1].seq);
    }
    /* The slow one: media dropped (counted per reason), then its control
     * waited past control_timeout: TOO_SLOW. Bound: the control timeout
     * plus a few quality intervals, generously scaled for a loaded box. */
    int bound_ms = (int)((cfg.ws.control_timeout_ns + 5 * cfg.quality_interval_ns) / 1000000u) * 5;
    assert_true(until(&wd, too_slow_seen, &s, bound_ms));
    struct ws_stats t = ws_total(tr.r);
    assert_true(t.media_drop_queue > 0); /* oldest first, counted */
    assert_int_equal(t.too_slow, 1);
    assert_false(fast->closed);
    char *m;
    size_t ml;
    assert_int_equal(metrics_render(tr.r, &m, &ml), 0);
    assert_non_null(strstr(m, "roost_ws_media_dropped_total{worker=\"0\",reason=\"queue_full\"}"));
    assert_non_null(strstr(m, "roost_ws_too_slow_total{worker=\"0\"} 1\n"));
    free(m);
    /* The slow reader, reading again, finds the end: a Close 4011
     * (TOO_SLOW) or, after the relay's close timeout, the TCP end. */
    for (uint64_t end = wsc_now_ms() + WAIT_MS; !slow->closed && wsc_now_ms() < end;)
        (void)wsp_poll(slow, 10);
    assert_true(slow->closed);
    assert_true(slow->close_code == 0 || slow->close_code == 4000 + PROTO_ERR_TOO_SLOW);
    /* The fast reader is still in the room and still served. A datagram is
     * unreliable (a loaded machine may hold one past its age limit): one
     * every 50 ms, each with the next sequence number, until one arrives. */
    uint32_t before = fast->n_media;
    uint32_t seq = SLOW_N + 1;
    for (uint64_t end = wsc_now_ms() + WAIT_MS; fast->n_media == before && wsc_now_ms() < end;) {
        assert_int_equal(q_send(q, seq++), 0);
        for (int i = 0; i < 25 && fast->n_media == before; i++)
            settle(&wd, 2);
    }
    assert_true(fast->n_media > before);
    assert_true(fast->media[before].intact);
    assert_true(fast->media[before].seq > SLOW_N);

    for (int i = 0; i < 2; i++) {
        wsp_free(ws[i]);
        free(ws[i]);
    }
    roost_client_del(wd.cl);
    free(q);
    test_relay_stop(&tr);
    assert_int_equal(buf_live(), base);
}

int main(void)
{
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", echo_cert_dir(false));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_room_tls), cmocka_unit_test(test_mixed_room_plain),
        cmocka_unit_test(test_plain_refused),  cmocka_unit_test(test_web_root),
        cmocka_unit_test(test_slow_reader),    cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests_name("relay_ws", tests, NULL, NULL);
}
