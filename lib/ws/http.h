/* The HTTP/1.1 side of the WebSocket transport (docs/PROTOCOL.md §11.1):
 * a strict, bounded parser for the upgrade request (or a plain GET of a
 * static file, served by lib/ws/wsweb.c when a web root is configured) and
 * the builders of the answers (101, or an error status).
 *
 * The parser is pure and stateless: the caller gathers the request bytes in
 * one buffer (at most WS_HTTP_MAX) and calls ws_http_parse on the whole
 * buffer after each read; it answers "need more", "complete and
 * acceptable" or "reject with this status".
 *
 * Pure functions: no I/O, no global state, callable from any thread. */
#ifndef ROOST_WS_HTTP_H
#define ROOST_WS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_PATH "/ws"        /* upgrade paths: WS_PATH and "/" */
#define WS_HTTP_PATH_MAX 255 /* request path (without query), bytes */
#define WS_SUBPROTOCOL "roost.v1"
#define WS_HTTP_MAX 8192      /* request line + headers + empty line, bytes */
#define WS_HTTP_LINE_MAX 1024 /* request line, bytes (without CRLF) */
#define WS_HTTP_HEADERS_MAX 64
#define WS_KEY_LEN 24    /* base64 of 16 bytes */
#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

struct ws_http_req {
    /* Set when ws_http_parse returns a length: true for a WebSocket upgrade
     * (key set), false for a plain GET (no Upgrade header: a static file). */
    bool upgrade;
    /* Set when ws_http_parse returns a length: the client's key (NUL-ended). */
    char key[WS_KEY_LEN + 1];
    /* Set when ws_http_parse returns a length: the request path without
     * the query (NUL-ended, starts with '/'), not decoded. */
    char path[WS_HTTP_PATH_MAX + 1];
    /* Set when ws_http_parse fails: the HTTP status to answer (400, 404,
     * 405, 414, 426, 431, 505) and a static, short reason for logs. */
    int status;
    const char *why;
};

/* Parses the upgrade request at buf[0..len). Returns:
 *   0                 the request is not complete yet (no empty line) and
 *                     len <= WS_HTTP_MAX: read more;
 *   n > 0             a complete, acceptable request of n bytes (the empty
 *                     line included); req->path is set. With req->upgrade
 *                     a WebSocket upgrade of "/" or WS_PATH: req->key is
 *                     set and bytes after it belong to the WebSocket
 *                     stream. Without: a GET with no Upgrade header (any
 *                     path; the caller serves a file or answers 426);
 *   ROOST_EMALFORMED  reject: req->status and req->why are set;
 *   ROOST_ETOOBIG     reject (431 or 414): req->status and req->why set.
 * Never reads past len. */
int ws_http_parse(const uint8_t *buf, size_t len, struct ws_http_req *req);

/* Computes Sec-WebSocket-Accept for key (WS_KEY_LEN characters):
 * base64(SHA-1(key + RFC 6455 GUID)) into out (WS_ACCEPT_LEN + 1 bytes,
 * NUL-ended). Returns 0 or ROOST_ECRYPTO. */
int ws_http_accept(const char *key, char *out);

/* Writes the 101 answer for key into out[0..cap). Returns its length,
 * ROOST_ENOSPC or ROOST_ECRYPTO. */
int ws_http_response_101(const char *key, char *out, size_t cap);

/* Writes an error answer (status line, Connection: close, a text body with
 * why; for 426 also Upgrade and Sec-WebSocket-Version: 13) into
 * out[0..cap). Returns its length or ROOST_ENOSPC. */
int ws_http_response_error(int status, const char *why, char *out, size_t cap);

/* Writes the head of a 200 answer with a body of body_len bytes of type
 * content_type into out[0..cap). Returns its length or ROOST_ENOSPC. */
int ws_http_response_200(const char *content_type, size_t body_len, char *out, size_t cap);

/* Base64 (RFC 4648, with padding) of in[0..len) into out, NUL-ended; out
 * needs 4 * ((len + 2) / 3) + 1 bytes. Returns the encoded length. */
size_t ws_base64_encode(const uint8_t *in, size_t len, char *out);

/* Decodes exactly len base64 characters (padded, len a multiple of 4) into
 * out (cap bytes). Returns the decoded length, or ROOST_EMALFORMED (bad
 * character, bad padding, non-zero pad bits) / ROOST_ENOSPC. */
int ws_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
