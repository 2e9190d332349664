#include "ws/http.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/error.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ------------------------------------------------------------- base64 */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws_base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int ws_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 != 0)
        return ROOST_EMALFORMED;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int pad = 0;
        if (last && in[i + 3] == '=')
            pad = in[i + 2] == '=' ? 2 : 1;
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            int d = k >= 4 - pad ? 0 : b64_val(in[i + (size_t)k]);
            if (d < 0)
                return ROOST_EMALFORMED;
            v = v << 6 | (uint32_t)d;
        }
        /* Canonical form only: the bits under the padding are zero. */
        if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0))
            return ROOST_EMALFORMED;
        size_t n = 3 - (size_t)pad;
        if (o + n > cap)
            return ROOST_ENOSPC;
        out[o++] = (uint8_t)(v >> 16);
        if (n > 1)
            out[o++] = (uint8_t)(v >> 8);
        if (n > 2)
            out[o++] = (uint8_t)v;
    }
    return (int)o;
}

/* ------------------------------------------------------------- parser */

struct span {
    const uint8_t *p;
    size_t n;
};

static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

static bool span_ieq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s.p[i]) != (uint8_t)lit[i])
            return false;
    return true;
}

static bool span_eq(struct span s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static struct span trim_ows(struct span s)
{
    while (s.n > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

/* True when the comma-separated list v holds token tok (case-insensitive
 * when ci, else exact). Empty elements are skipped (RFC 9110 §5.6.1). */
static bool list_has(struct span v, const char *tok, bool ci)
{
    size_t start = 0;
    for (size_t i = 0; i <= v.n; i++) {
        if (i < v.n && v.p[i] != ',')
            continue;
        struct span e = trim_ows((struct span){v.p + start, i - start});
        if (ci ? span_ieq(e, tok) : span_eq(e, tok))
            return true;
        start = i + 1;
    }
    return false;
}

static int reject(struct ws_http_req *req, int status, const char *why)
{
    req->status = status;
    req->why = why;
    return status == 431 || status == 414 ? ROOST_ETOOBIG : ROOST_EMALFORMED;
}

static int parse_request_line(struct span l, struct ws_http_req *req)
{
    if (l.n > WS_HTTP_LINE_MAX)
        return reject(req, 414, "request line too long");
    size_t i = 0;
    while (i < l.n && is_tchar(l.p[i]))
        i++;
    struct span method = {l.p, i};
    if (method.n == 0 || i >= l.n || l.p[i] != ' ')
        return reject(req, 400, "bad request line");
    size_t t0 = ++i;
    while (i < l.n && l.p[i] > 0x20 && l.p[i] < 0x7f)
        i++;
    struct span target = {l.p + t0, i - t0};
    if (target.n == 0 || i >= l.n || l.p[i] != ' ')
        return reject(req, 400, "bad request line");
    struct span version = {l.p + i + 1, l.n - i - 1};
    if (!span_eq(version, "HTTP/1.1")) {
        bool looks = version.n == 8 && memcmp(version.p, "HTTP/", 5) == 0 && version.p[5] >= '0' &&
                     version.p[5] <= '9' && version.p[6] == '.' && version.p[7] >= '0' &&
                     version.p[7] <= '9';
        return reject(req, looks ? 505 : 400, looks ? "HTTP/1.1 only" : "bad request line");
    }
    if (!span_eq(method, "GET"))
        return reject(req, 405, "GET only");
    if (target.p[0] != '/')
        return reject(req, 400, "origin-form request target only");
    size_t plen = 0;
    while (plen < target.n && target.p[plen] != '?')
        plen++;
    if (plen > WS_HTTP_PATH_MAX)
        return reject(req, 414, "path too long");
    memcpy(req->path, target.p, plen);
    req->path[plen] = '\0';
    return 0;
}

struct hdr_state {
    unsigned host, key, version, upgrade, connection;
    bool upgrade_ws, conn_upgrade, version_13, protocol_ok, key_ok, protocol_seen;
};

static int parse_header(struct span l, struct hdr_state *h, struct ws_http_req *req)
{
    if (l.p[0] == ' ' || l.p[0] == '\t')
        return reject(req, 400, "obsolete line folding");
    size_t i = 0;
    while (i < l.n && is_tchar(l.p[i]))
        i++;
    if (i == 0 || i >= l.n || l.p[i] != ':')
        return reject(req, 400, "bad header line");
    struct span name = {l.p, i};
    struct span v = {l.p + i + 1, l.n - i - 1};
    for (size_t k = 0; k < v.n; k++) {
        uint8_t c = v.p[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return reject(req, 400, "control character in header value");
    }
    v = trim_ows(v);
    if (span_ieq(name, "host")) {
        h->host++;
    } else if (span_ieq(name, "upgrade")) {
        h->upgrade++;
        h->upgrade_ws |= list_has(v, "websocket", true);
    } else if (span_ieq(name, "connection")) {
        h->connection++;
        h->conn_upgrade |= list_has(v, "upgrade", true);
    } else if (span_ieq(name, "sec-websocket-key")) {
        h->key++;
        uint8_t raw[18];
        h->key_ok =
            v.n == WS_KEY_LEN && ws_base64_decode((const char *)v.p, v.n, raw, sizeof(raw)) == 16;
        if (h->key_ok) {
            memcpy(req->key, v.p, WS_KEY_LEN);
            req->key[WS_KEY_LEN] = '\0';
        }
    } else if (span_ieq(name, "sec-websocket-version")) {
        h->version++;
        h->version_13 = span_eq(v, "13");
    } else if (span_ieq(name, "sec-websocket-protocol")) {
        h->protocol_seen = true;
        h->protocol_ok |= list_has(v, WS_SUBPROTOCOL, false);
    } else if (span_ieq(name, "content-length")) {
        bool zero = v.n > 0;
        for (size_t k = 0; k < v.n; k++)
            zero &= v.p[k] == '0';
        if (!zero)
            return reject(req, 400, "no request body allowed");
    } else if (span_ieq(name, "transfer-encoding")) {
        return reject(req, 400, "no request body allowed");
    }
    return 0;
}

int ws_http_parse(const uint8_t *buf, size_t len, struct ws_http_req *req)
{
    memset(req, 0, sizeof(*req));
    size_t scan = len < WS_HTTP_MAX ? len : WS_HTTP_MAX;
    size_t end = 0; /* request length once the empty line is found */
    size_t first_eol = 0;
    for (size_t i = 0; i < scan; i++) {
        if (buf[i] != '\n')
            continue;
        if (i == 0 || buf[i - 1] != '\r')
            return reject(req, 400, "bare LF");
        if (first_eol == 0)
            first_eol = i;
        if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = i + 1;
            break;
        }
    }
    if (first_eol == 0 && scan > WS_HTTP_LINE_MAX + 1)
        return reject(req, 414, "request line too long");
    if (end == 0) {
        if (len >= WS_HTTP_MAX)
            return reject(req, 431, "request too large");
        return 0;
    }
    /* Lines: [start, eol-1) without CRLF; the last one is the empty line. */
    size_t pos = 0;
    unsigned lines = 0;
    struct hdr_state h;
    memset(&h, 0, sizeof(h));
    int rc;
    while (pos < end) {
        const uint8_t *nl = memchr(buf + pos, '\n', end - pos);
        size_t eol = (size_t)(nl - buf); /* index of LF; CR before it */
        struct span l = {buf + pos, eol - 1 - pos};
        pos = eol + 1;
        if (lines == 0) {
            if ((rc = parse_request_line(l, req)) < 0)
                return rc;
        } else if (l.n == 0) {
            break; /* the empty line: pos == end */
        } else {
            if (lines > WS_HTTP_HEADERS_MAX)
                return reject(req, 431, "too many header lines");
            if ((rc = parse_header(l, &h, req)) < 0)
                return rc;
        }
        lines++;
    }
    if (lines == 0 || pos != end)
        return reject(req, 400, "bad request");
    if (h.host != 1)
        return reject(req, 400, "exactly one Host header required");
    if (h.upgrade == 0 && !h.conn_upgrade && h.key == 0 && h.version == 0 && !h.protocol_seen) {
        /* A plain GET (nothing of an upgrade in it): a static file, or 426
         * when there is none. */
        req->upgrade = false;
        req->status = 200;
        return (int)end;
    }
    if (strcmp(req->path, "/") != 0 && strcmp(req->path, WS_PATH) != 0)
        return reject(req, 404, "the WebSocket path is " WS_PATH " or /");
    if (h.upgrade == 0 || h.connection == 0)
        return reject(req, 426, "WebSocket upgrade required");
    if (!h.upgrade_ws)
        return reject(req, 400, "Upgrade must name websocket");
    if (!h.conn_upgrade)
        return reject(req, 400, "Connection must name upgrade");
    if (h.version != 1 || !h.version_13)
        return reject(req, 426, "Sec-WebSocket-Version 13 required");
    if (h.key != 1 || !h.key_ok)
        return reject(req, 400, "bad Sec-WebSocket-Key");
    if (!h.protocol_ok)
        return reject(req, 400, "Sec-WebSocket-Protocol " WS_SUBPROTOCOL " required");
    req->status = 101;
    req->upgrade = true;
    return (int)end;
}

/* ----------------------------------------------------------- answers */

int ws_http_accept(const char *key, char *out)
{
    char cat[WS_KEY_LEN + sizeof(ws_guid)];
    memcpy(cat, key, WS_KEY_LEN);
    memcpy(cat + WS_KEY_LEN, ws_guid, sizeof(ws_guid) - 1);
    uint8_t digest[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, cat, WS_KEY_LEN + sizeof(ws_guid) - 1, digest) != 0)
        return ROOST_ECRYPTO;
    ws_base64_encode(digest, sizeof(digest), out);
    return 0;
}

int ws_http_response_101(const char *key, char *out, size_t cap)
{
    char accept[WS_ACCEPT_LEN + 1];
    if (ws_http_accept(key, accept) < 0)
        return ROOST_ECRYPTO;
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: " WS_SUBPROTOCOL "\r\n"
                     "\r\n",
                     accept);
    if (n < 0 || (size_t)n >= cap)
        return ROOST_ENOSPC;
    return n;
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 414:
        return "URI Too Long";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 505:
        return "HTTP Version Not Supported";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

int ws_http_response_error(int status, const char *why, char *out, size_t cap)
{
    if (why == NULL)
        why = status_text(status);
    const char *extra = "";
    if (status == 426)
        extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    else if (status == 405)
        extra = "Allow: GET\r\n";
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "\r\n"
                     "%s\n",
                     status, status_text(status), extra, strlen(why) + 1, why);
    if (n < 0 || (size_t)n >= cap)
        return ROOST_ENOSPC;
    return n;
}

int ws_http_response_200(const char *content_type, size_t body_len, char *out, size_t cap)
{
    /* One request per connection; never sniffed, never cached stale. */
    int n = snprintf(out, cap,
                     "HTTP/1.1 200 OK\r\n"
                     "Connection: close\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-cache\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "Referrer-Policy: no-referrer\r\n"
                     "\r\n",
                     content_type, body_len);
    if (n < 0 || (size_t)n >= cap)
        return ROOST_ENOSPC;
    return n;
}
