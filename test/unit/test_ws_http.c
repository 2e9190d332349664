/* The WebSocket upgrade parser and answers (lib/ws/http): a valid request
 * (and its variants browsers send), each missing or invalid header with the
 * status it must be answered with, size limits, split delivery byte by
 * byte, pipelined bytes after the request, the RFC 6455 accept key, base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "ws/http.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

#define REQ_HEAD "GET /ws HTTP/1.1\r\n"
#define H_HOST "Host: relay.example:4443\r\n"
#define H_UP "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_KEY "Sec-WebSocket-Key: " KEY "\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define H_PROTO "Sec-WebSocket-Protocol: roost.v1\r\n"

static const char valid[] = REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n";

static int parse(const char *s, struct ws_http_req *req)
{
    return ws_http_parse((const uint8_t *)s, strlen(s), req);
}

static void expect_ok(const char *s)
{
    struct ws_http_req req;
    int rc = parse(s, &req);
    if (rc != (int)strlen(s))
        fail_msg("rc %d (status %d: %s) for:\n%s", rc, req.status, req.why ? req.why : "", s);
    assert_true(req.upgrade);
    assert_string_equal(req.key, KEY);
}

static void expect_status(const char *s, int status)
{
    struct ws_http_req req;
    int rc = parse(s, &req);
    if (rc >= 0 || req.status != status)
        fail_msg("rc %d status %d (want %d) for:\n%s", rc, req.status, status, s);
    assert_non_null(req.why);
}

/* A complete plain GET (no upgrade): its path, no key. */
static void expect_get(const char *s, const char *path)
{
    struct ws_http_req req;
    int rc = parse(s, &req);
    if (rc != (int)strlen(s))
        fail_msg("rc %d (status %d: %s) for:\n%s", rc, req.status, req.why ? req.why : "", s);
    assert_false(req.upgrade);
    assert_string_equal(req.path, path);
    assert_string_equal(req.key, "");
}

static void test_valid(void **state)
{
    (void)state;
    expect_ok(valid);
    /* The upgrade is accepted on "/" too, with or without a query. */
    expect_ok("GET / HTTP/1.1\r\n" H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n");
    expect_ok("GET /?room=demo HTTP/1.1\r\n" H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n");
    /* Plain GETs of the page: the path without its query, not decoded. */
    expect_get("GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", "/");
    expect_get("GET /app.js?v=2 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", "/app.js");
    expect_get("GET /a/../%2e%2e/b HTTP/1.1\r\nHost: x\r\n\r\n", "/a/../%2e%2e/b");
    /* What Chromium sends: more headers, a protocol list, extensions. */
    expect_ok("GET /ws?room=demo HTTP/1.1\r\n"
              "Host: 127.0.0.1:4443\r\n"
              "Connection: keep-alive, Upgrade\r\n"
              "Pragma: no-cache\r\n"
              "Cache-Control: no-cache\r\n"
              "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
              "Upgrade: WebSocket\r\n"
              "Origin: https://127.0.0.1:4443\r\n"
              "Sec-WebSocket-Version: 13\r\n"
              "Accept-Encoding: gzip, deflate, br\r\n"
              "Accept-Language: en-US,en;q=0.9\r\n"
              "Sec-WebSocket-Key: " KEY "\r\n"
              "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
              "Sec-WebSocket-Protocol: other.v9, roost.v1\r\n"
              "\r\n");
    /* Case-insensitive names, OWS around values, protocol header repeated. */
    expect_ok(REQ_HEAD "host:x\r\nUPGRADE:   websocket \r\nconnection:\tupgrade\r\n"
                       "sec-websocket-key: " KEY "\r\nsec-websocket-version:13\r\n"
                       "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b,,roost.v1\r\n"
                       "Content-Length: 0\r\n\r\n");
}

static void test_missing_headers(void **state)
{
    (void)state;
    expect_status(REQ_HEAD H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400); /* Host */
    expect_status(REQ_HEAD H_HOST H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD H_HOST H_CONN H_KEY H_VER H_PROTO "\r\n", 426); /* Upgrade */
    expect_status(REQ_HEAD H_HOST H_UP H_KEY H_VER H_PROTO "\r\n", 426);   /* Connection */
    expect_get(REQ_HEAD H_HOST "\r\n", "/ws"); /* plain GET: served (or 426) by the server */
    expect_status(REQ_HEAD H_HOST H_KEY H_VER H_PROTO "\r\n", 426);       /* Upgrade, Connection */
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_VER H_PROTO "\r\n", 400); /* Key */
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_PROTO "\r\n", 426); /* Version */
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER "\r\n", 400);   /* Protocol */
}

static void test_invalid_headers(void **state)
{
    (void)state;
    expect_status(REQ_HEAD H_HOST "Upgrade: h2c\r\n" H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD H_HOST H_UP "Connection: keep-alive\r\n" H_KEY H_VER H_PROTO "\r\n",
                  400);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN "Sec-WebSocket-Key: abc\r\n" H_VER H_PROTO "\r\n",
                  400);
    /* 24 characters but 17 bytes, and a key with non-zero pad bits. */
    expect_status(REQ_HEAD H_HOST H_UP H_CONN
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=A\r\n" H_VER H_PROTO "\r\n",
                  400);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" H_VER H_PROTO "\r\n",
                  400);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY "Sec-WebSocket-Version: 8\r\n" H_PROTO "\r\n",
                  426);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER H_VER H_PROTO "\r\n", 426);
    /* The subprotocol compares exactly. */
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER "Sec-WebSocket-Protocol: ROOST.V1\r\n"
                                                          "\r\n",
                  400);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER "Sec-WebSocket-Protocol: roost.v10\r\n"
                                                          "\r\n",
                  400);
    /* Bodies, folding, bad names, control characters, bare LF. */
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "Content-Length: 5\r\n\r\n", 400);
    expect_status(REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "Transfer-Encoding: chunked\r\n"
                                                                  "\r\n",
                  400);
    expect_status(REQ_HEAD H_HOST " folded\r\n" H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD "Host : x\r\n" H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD "Ho(st: x\r\n" H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD "no colon\r\n" H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD "X-A: a\x01z\r\n" H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status(REQ_HEAD "X-A: a\x7fz\r\n" H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n", 400);
    expect_status("GET /ws HTTP/1.1\nHost: x\r\n", 400);
    /* A NUL inside a value. */
    char nul[sizeof(valid) + 16];
    int n = snprintf(nul, sizeof(nul), "%sX-A: aXb\r\n%s", REQ_HEAD, valid + strlen(REQ_HEAD));
    char *x = strstr(nul, "aXb");
    x[1] = '\0';
    struct ws_http_req req;
    assert_true(ws_http_parse((uint8_t *)nul, (size_t)n, &req) < 0);
    assert_int_equal(req.status, 400);
}

static void test_request_line(void **state)
{
    (void)state;
    const char *rest = H_HOST H_UP H_CONN H_KEY H_VER H_PROTO "\r\n";
    struct {
        const char *line;
        int status;
    } cases[] = {
        {"POST /ws HTTP/1.1\r\n", 405},        {"get /ws HTTP/1.1\r\n", 405},
        {"GET /chat HTTP/1.1\r\n", 404},       {"GET /index.html HTTP/1.1\r\n", 404},
        {"GET /ws/ HTTP/1.1\r\n", 404},        {"GET /wss HTTP/1.1\r\n", 404},
        {"GET http://x/ws HTTP/1.1\r\n", 400}, {"GET /ws HTTP/1.0\r\n", 505},
        {"GET /ws HTTP/2.0\r\n", 505},         {"GET /ws HTTP/1.1 \r\n", 400},
        {"GET  /ws HTTP/1.1\r\n", 400},        {"GET /ws\r\n", 400},
        {"GET /ws HTTPS/1.1\r\n", 400},        {"\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s%s", cases[i].line, rest);
        expect_status(buf, cases[i].status);
    }
}

static void test_limits(void **state)
{
    (void)state;
    struct ws_http_req req;
    /* The largest acceptable request: padded to exactly WS_HTTP_MAX. */
    char *big = malloc(WS_HTTP_MAX + 64);
    assert_non_null(big);
    size_t head = strlen(valid) - 2; /* without the empty line */
    memcpy(big, valid, head);
    size_t pad_total = WS_HTTP_MAX - strlen(valid);
    /* One "X-Pad: ...\r\n" header of pad_total bytes. */
    memcpy(big + head, "X-Pad: ", 7);
    memset(big + head + 7, 'p', pad_total - 9);
    memcpy(big + head + pad_total - 2, "\r\n\r\n", 4);
    assert_int_equal(ws_http_parse((uint8_t *)big, WS_HTTP_MAX, &req), WS_HTTP_MAX);
    /* One byte more: 431, whether complete or not. */
    memmove(big + head + 1, big + head, pad_total + 2);
    big[head] = 'Y';
    assert_int_equal(ws_http_parse((uint8_t *)big, WS_HTTP_MAX + 1, &req), ROOST_ETOOBIG);
    assert_int_equal(req.status, 431);
    memset(big, 'a', WS_HTTP_MAX);
    memcpy(big, "GET /ws HTTP/1.1\r\nX: ", 21);
    assert_int_equal(ws_http_parse((uint8_t *)big, WS_HTTP_MAX - 1, &req), 0);
    assert_int_equal(ws_http_parse((uint8_t *)big, WS_HTTP_MAX, &req), ROOST_ETOOBIG);
    assert_int_equal(req.status, 431);
    /* A request line over 1024 bytes: 414 before the request completes. */
    memset(big, 'a', 2000);
    memcpy(big, "GET /", 5);
    assert_int_equal(ws_http_parse((uint8_t *)big, 1000, &req), 0);
    assert_int_equal(ws_http_parse((uint8_t *)big, 1100, &req), ROOST_ETOOBIG);
    assert_int_equal(req.status, 414);
    /* A path over WS_HTTP_PATH_MAX (inside a short request line): 414. */
    static const char tail[] = " HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t tl = sizeof(tail) - 1;
    memset(big, 'a', 600);
    memcpy(big, "GET /", 5);
    memcpy(big + 4 + WS_HTTP_PATH_MAX, tail, tl); /* "/" and 254 bytes */
    assert_int_equal(ws_http_parse((uint8_t *)big, 4 + WS_HTTP_PATH_MAX + tl, &req),
                     (int)(4 + WS_HTTP_PATH_MAX + tl));
    assert_false(req.upgrade);
    assert_int_equal(strlen(req.path), WS_HTTP_PATH_MAX);
    memset(big, 'a', 600);
    memcpy(big, "GET /", 5);
    memcpy(big + 5 + WS_HTTP_PATH_MAX, tail, tl);
    assert_int_equal(ws_http_parse((uint8_t *)big, 5 + WS_HTTP_PATH_MAX + tl, &req), ROOST_ETOOBIG);
    assert_int_equal(req.status, 414);
    free(big);
    /* 64 header lines pass, 65 do not. */
    char many[4096];
    size_t n =
        (size_t)snprintf(many, sizeof(many), "%s", REQ_HEAD H_HOST H_UP H_CONN H_KEY H_VER H_PROTO);
    for (int i = 6; i < 64; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: v\r\n", i);
    snprintf(many + n, sizeof(many) - n, "\r\n");
    assert_int_equal(parse(many, &req), (int)strlen(many));
    snprintf(many + n, sizeof(many) - n, "X-65: v\r\n\r\n");
    expect_status(many, 431);
}

static void test_split_delivery(void **state)
{
    (void)state;
    struct ws_http_req req;
    size_t len = strlen(valid);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(ws_http_parse((const uint8_t *)valid, cut, &req), 0);
    assert_int_equal(ws_http_parse((const uint8_t *)valid, len, &req), (int)len);
    /* Bytes after the request (a pipelined first frame) are not consumed. */
    char more[sizeof(valid) + 8];
    memcpy(more, valid, len);
    memcpy(more + len, "\x82\x83xyzw", 6);
    assert_int_equal(ws_http_parse((const uint8_t *)more, len + 6, &req), (int)len);
    /* An early error is reported as soon as its bytes are present. */
    assert_int_equal(ws_http_parse((const uint8_t *)"GET /ws\n", 8, &req), ROOST_EMALFORMED);
}

static void test_answers(void **state)
{
    (void)state;
    /* RFC 6455 §1.3's example. */
    char acc[WS_ACCEPT_LEN + 1];
    assert_int_equal(ws_http_accept(KEY, acc), 0);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char out[512];
    int n = ws_http_response_101(KEY, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(out));
    assert_non_null(strstr(out, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr(out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_non_null(strstr(out, "Sec-WebSocket-Protocol: roost.v1\r\n"));
    assert_int_equal(ws_http_response_101(KEY, out, 50), ROOST_ENOSPC);
    n = ws_http_response_error(426, "version", out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(out, "Sec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(out, "Connection: close\r\n"));
    n = ws_http_response_error(404, "nope", out, sizeof(out));
    assert_non_null(strstr(out, "Content-Length: 5\r\n\r\nnope\n"));
    assert_int_equal(ws_http_response_error(404, "nope", out, 20), ROOST_ENOSPC);
}

static void test_base64(void **state)
{
    (void)state;
    const char *vec[][2] = {{"", ""},
                            {"f", "Zg=="},
                            {"fo", "Zm8="},
                            {"foo", "Zm9v"},
                            {"foob", "Zm9vYg=="},
                            {"fooba", "Zm9vYmE="},
                            {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char enc[16];
        uint8_t dec[16];
        size_t n = ws_base64_encode((const uint8_t *)vec[i][0], strlen(vec[i][0]), enc);
        assert_int_equal(n, strlen(vec[i][1]));
        assert_string_equal(enc, vec[i][1]);
        int d = ws_base64_decode(vec[i][1], strlen(vec[i][1]), dec, sizeof(dec));
        assert_int_equal(d, (int)strlen(vec[i][0]));
        assert_memory_equal(dec, vec[i][0], (size_t)d);
    }
    uint8_t dec[8];
    assert_int_equal(ws_base64_decode("Zm9", 3, dec, sizeof(dec)), ROOST_EMALFORMED);
    assert_int_equal(ws_base64_decode("Zm9*", 4, dec, sizeof(dec)), ROOST_EMALFORMED);
    assert_int_equal(ws_base64_decode("Z===", 4, dec, sizeof(dec)), ROOST_EMALFORMED);
    assert_int_equal(ws_base64_decode("Zm==Zm9v", 8, dec, sizeof(dec)), ROOST_EMALFORMED);
    assert_int_equal(ws_base64_decode("Zm9vYmFy", 8, dec, 5), ROOST_ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),           cmocka_unit_test(test_missing_headers),
        cmocka_unit_test(test_invalid_headers), cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_split_delivery),
        cmocka_unit_test(test_answers),         cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests_name("ws_http", tests, NULL, NULL);
}
