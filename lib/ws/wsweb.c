/* A plain GET on the WebSocket port: one static file from the web root
 * (the browser page), or an error status. Safe by construction rather than
 * by filtering: the path may hold only [A-Za-z0-9._-] segments separated
 * by single slashes, no segment may start with '.' (no "..", no hidden
 * files), the file is opened beneath the web root with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), must be a regular file of at
 * most WS_WEB_FILE_MAX bytes, and its type comes from a fixed table of
 * extensions (others are not served). One request per connection. The
 * file is read on the worker: the page is a few small files, loaded once
 * per browser. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "ws/http.h"
#include "ws/ws_int.h"

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".wasm", "application/wasm"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot == NULL || strchr(dot, '/') != NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

static bool seg_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

/* path (from the request, starting with '/') to a relative name under the
 * web root in rel (cap bytes): "/" and ".../" name index.html. Returns
 * false for anything outside the rules of the file comment. */
bool wsweb_map_path(const char *path, char *rel, size_t cap)
{
    if (path[0] != '/')
        return false;
    const char *p = path + 1;
    size_t n = strlen(p);
    bool seg_start = true;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '/') {
            if (seg_start)
                return false; /* "//" */
            seg_start = true;
            continue;
        }
        if (!seg_char(ch) || (seg_start && ch == '.'))
            return false;
        seg_start = false;
    }
    const char *index = (n == 0 || p[n - 1] == '/') ? "index.html" : "";
    if (n + strlen(index) + 1 > cap)
        return false;
    memcpy(rel, p, n);
    strcpy(rel + n, index);
    return true;
}

static int open_beneath(int dirfd, const char *rel)
{
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd == -1 && errno == ENOSYS) /* kernel < 5.6: no symlinks checked on the way */
        fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    return (int)fd;
}

static int send_error(struct ws_conn *c, int status, const char *why)
{
    char resp[512];
    int n = ws_http_response_error(status, why, resp, sizeof(resp));
    if (n < 0 || wsio_tx(c, (const uint8_t *)resp, (size_t)n) < 0)
        return ROOST_EIO;
    ST_INC(c->s, web_refused);
    return status;
}

/* Reads the whole regular file fd (st_size bytes) into a new buffer. */
static uint8_t *read_all(int fd, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    if (b == NULL)
        return NULL;
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, b + got, size - got, (off_t)got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(b);
            return NULL;
        }
        got += (size_t)r;
    }
    return b;
}

int wsweb_answer(struct ws_conn *c, const char *path)
{
    int dirfd = c->s->sh->web_fd;
    if (dirfd < 0 || strcmp(path, WS_PATH) == 0)
        return send_error(c, 426, "WebSocket upgrade required");
    char rel[WS_HTTP_PATH_MAX + 16];
    const char *type;
    if (!wsweb_map_path(path, rel, sizeof(rel)) || (type = content_type(rel)) == NULL)
        return send_error(c, 404, "not found");
    int fd = open_beneath(dirfd, rel);
    if (fd == -1)
        return send_error(c, 404, "not found");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)WS_WEB_FILE_MAX) {
        close(fd);
        return send_error(c, 403, "not served");
    }
    size_t size = (size_t)st.st_size;
    uint8_t *body = read_all(fd, size);
    close(fd);
    if (body == NULL)
        return send_error(c, 500, "cannot read the file");
    char head[512];
    int n = ws_http_response_200(type, size, head, sizeof(head));
    int rc = n < 0 ? ROOST_EIO : wsio_tx(c, (const uint8_t *)head, (size_t)n);
    if (rc == 0 && size > 0)
        rc = wsio_tx(c, body, size);
    free(body);
    if (rc < 0)
        return ROOST_EIO;
    ST_INC(c->s, web_served);
    return 200;
}
