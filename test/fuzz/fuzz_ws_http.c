/* Fuzz target: the WebSocket upgrade parser (lib/ws/http) and the static
 * server's path mapping (lib/ws/wsweb.c). The input is parsed whole and in
 * every prefix a split read could deliver (at most 64 cuts). Invariants:
 * an accepted request ends with the empty line, lies within WS_HTTP_MAX,
 * and either is an upgrade (a 24-character key, a 101 answer) or a plain
 * GET whose path starts with '/', fits WS_HTTP_PATH_MAX and, when it maps
 * to a file name, maps to one with no empty, "." or ".." segment and no
 * leading '/';
 * a rejection names a status the spec lists; a prefix of an accepted
 * request is never accepted with another length (only "need more" or the
 * same verdict). Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ws/http.h"
#include "ws/ws_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static int status_ok(int s)
{
    return s == 400 || s == 404 || s == 405 || s == 414 || s == 426 || s == 431 || s == 505;
}

static void check_one(const uint8_t *data, size_t size, int *verdict)
{
    struct ws_http_req req;
    int rc = ws_http_parse(data, size, &req);
    if (rc > 0) {
        CHECK((size_t)rc <= size && rc <= WS_HTTP_MAX && rc >= 4);
        CHECK(memcmp(data + rc - 4, "\r\n\r\n", 4) == 0);
        CHECK(req.path[0] == '/' && strlen(req.path) <= WS_HTTP_PATH_MAX);
        if (!req.upgrade) {
            CHECK(req.status == 200 && req.key[0] == '\0');
            char rel[WS_HTTP_PATH_MAX + 16];
            if (wsweb_map_path(req.path, rel, sizeof(rel))) {
                CHECK(rel[0] != '/' && rel[0] != '\0');
                /* Every segment: non-empty, not starting with '.'. */
                for (const char *seg = rel; seg != NULL;) {
                    CHECK(seg[0] != '\0' && seg[0] != '/' && seg[0] != '.');
                    seg = strchr(seg, '/');
                    if (seg != NULL)
                        seg++;
                }
            }
        } else {
            CHECK(strlen(req.key) == WS_KEY_LEN && req.status == 101);
            char out[512];
            int n = ws_http_response_101(req.key, out, sizeof(out));
            CHECK(n > 0 && (size_t)n == strlen(out));
        }
    } else if (rc < 0) {
        CHECK(rc == ROOST_EMALFORMED || rc == ROOST_ETOOBIG);
        CHECK(status_ok(req.status) && req.why != NULL);
        char out[512];
        CHECK(ws_http_response_error(req.status, req.why, out, sizeof(out)) > 0);
    } else {
        CHECK(size < WS_HTTP_MAX);
    }
    *verdict = rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int whole;
    check_one(data, size, &whole);
    size_t step = size / 64 + 1;
    for (size_t cut = 0; cut < size; cut += step) {
        /* Exact-size copy: ASan sees any read past the prefix. */
        uint8_t *p = malloc(cut ? cut : 1);
        if (p == NULL)
            return 0;
        memcpy(p, data, cut);
        int part;
        check_one(p, cut, &part);
        free(p);
        if (whole > 0)
            CHECK(part == 0 || part == whole);
    }
    return 0;
}
