#include "proto/keyfile.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int errno_to_roost(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return ROOST_ENOENT;
    case EACCES:
    case EPERM:
        return ROOST_EACCES;
    case EEXIST:
        return ROOST_EEXIST;
    default:
        return ROOST_EIO;
    }
}

/* Parses one non-comment line (without its newline). */
static int parse_line(const char *s, size_t n, const char *name, unsigned lineno,
                      struct token_keyring *out, char *err, size_t err_len)
{
    size_t i = 0;
    while (i < n && is_blank(s[i]))
        i++;
    size_t id0 = i;
    while (i < n && !is_blank(s[i]))
        i++;
    size_t id_len = i - id0;
    while (i < n && is_blank(s[i]))
        i++;
    size_t sec0 = i;
    while (i < n && !is_blank(s[i]))
        i++;
    size_t sec_len = i - sec0;
    while (i < n && is_blank(s[i]))
        i++;
    if (sec_len == 0 || i != n) {
        set_err(err, err_len, "%s:%u: expected '<key id> <base64url 32-byte secret>'", name,
                lineno);
        return ROOST_EMALFORMED;
    }
    if (token_key_id_check(s + id0, id_len) != 0) {
        set_err(err, err_len, "%s:%u: bad key id '%.*s' (want 1-%d of [A-Za-z0-9_-])", name, lineno,
                (int)(id_len > 32 ? 32 : id_len), s + id0, TOKEN_KEY_ID_MAX);
        return ROOST_EMALFORMED;
    }
    uint8_t secret[TOKEN_KEY_LEN];
    size_t got = 0;
    if (sec_len != TOKEN_B64URL_LEN(TOKEN_KEY_LEN) ||
        token_b64url_decode(s + sec0, sec_len, secret, sizeof(secret), &got) != 0 ||
        got != TOKEN_KEY_LEN) {
        explicit_bzero(secret, sizeof(secret));
        set_err(err, err_len,
                "%s:%u: key '%.*s': secret must be %d bytes as unpadded base64url (%d characters)",
                name, lineno, (int)id_len, s + id0, TOKEN_KEY_LEN,
                (int)TOKEN_B64URL_LEN(TOKEN_KEY_LEN));
        return ROOST_EMALFORMED;
    }
    int rc = token_keyring_add(out, s + id0, id_len, secret);
    explicit_bzero(secret, sizeof(secret));
    if (rc == ROOST_EEXIST) {
        set_err(err, err_len, "%s:%u: duplicate key id '%.*s'", name, lineno, (int)id_len, s + id0);
        return ROOST_EMALFORMED;
    }
    if (rc == ROOST_EFULL) {
        set_err(err, err_len, "%s:%u: more than %d keys", name, lineno, TOKEN_KEYRING_MAX);
        return ROOST_ETOOBIG;
    }
    return rc;
}

int keyfile_parse(const char *text, size_t len, const char *name, struct token_keyring *out,
                  char *err, size_t err_len)
{
    token_keyring_init(out);
    if (len > KEYFILE_MAX) {
        set_err(err, err_len, "%s: larger than %d bytes", name, KEYFILE_MAX);
        return ROOST_ETOOBIG;
    }
    unsigned lineno = 0;
    size_t pos = 0;
    int rc = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos;
        size_t n = end - pos;
        pos = nl ? end + 1 : len;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (memchr(s, '\0', n) != NULL) {
            set_err(err, err_len, "%s:%u: NUL byte", name, lineno);
            rc = ROOST_EMALFORMED;
            goto out;
        }
        size_t i = 0;
        while (i < n && is_blank(s[i]))
            i++;
        if (i == n || s[i] == '#')
            continue;
        rc = parse_line(s, n, name, lineno, out, err, err_len);
        if (rc != 0)
            goto out;
    }
    if (out->n == 0) {
        set_err(err, err_len, "%s: no keys", name);
        rc = ROOST_EMALFORMED;
    }
out:
    if (rc != 0)
        token_keyring_wipe(out);
    return rc;
}

int keyfile_load(const char *path, struct token_keyring *out, char *err, size_t err_len)
{
    int fd = -1, rc = 0;
    char *buf = NULL;
    size_t len = 0;

    token_keyring_init(out);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        rc = errno_to_roost(errno);
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) == -1) {
        rc = ROOST_EIO;
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ROOST_EINVAL;
        set_err(err, err_len, "%s: not a regular file", path);
        goto out;
    }
    /* A secret others can read is not a secret: refuse rather than warn. */
    if ((st.st_mode & 077) != 0) {
        rc = ROOST_EACCES;
        set_err(err, err_len,
                "%s: mode %04o gives group or others access to the keys; run: chmod 600 %s", path,
                (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_size > KEYFILE_MAX) {
        rc = ROOST_ETOOBIG;
        set_err(err, err_len, "%s: larger than %d bytes", path, KEYFILE_MAX);
        goto out;
    }
    buf = malloc(KEYFILE_MAX + 1);
    if (buf == NULL) {
        rc = ROOST_ENOMEM;
        set_err(err, err_len, "%s: out of memory", path);
        goto out;
    }
    /* Read to EOF, not st_size: the file may change under us; the cap holds. */
    for (;;) {
        ssize_t r = read(fd, buf + len, KEYFILE_MAX + 1 - len);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            rc = ROOST_EIO;
            set_err(err, err_len, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > KEYFILE_MAX) {
            rc = ROOST_ETOOBIG;
            set_err(err, err_len, "%s: larger than %d bytes", path, KEYFILE_MAX);
            goto out;
        }
    }
    rc = keyfile_parse(buf, len, path, out, err, err_len);
out:
    if (buf != NULL) {
        explicit_bzero(buf, KEYFILE_MAX + 1);
        free(buf);
    }
    if (fd != -1)
        close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int keyfile_generate(const char *path, const char *key_id, struct token_keyring *out, char *err,
                     size_t err_len)
{
    struct token_keyring ring;
    uint8_t secret[TOKEN_KEY_LEN];
    char id[TOKEN_KEY_ID_MAX + 1];
    char text[512];
    int fd = -1, rc = 0, created = 0;

    token_keyring_init(&ring);
    memset(secret, 0, sizeof(secret));
    memset(text, 0, sizeof(text));
    if (key_id == NULL) {
        uint8_t r[4];
        if (gnutls_rnd(GNUTLS_RND_NONCE, r, sizeof(r)) < 0) {
            rc = ROOST_ECRYPTO;
            set_err(err, err_len, "%s: random generator failed", path);
            goto out;
        }
        snprintf(id, sizeof(id), "k%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    } else {
        if (token_key_id_check(key_id, strlen(key_id)) != 0) {
            rc = ROOST_EINVAL;
            set_err(err, err_len, "bad key id '%.32s' (want 1-%d of [A-Za-z0-9_-])", key_id,
                    TOKEN_KEY_ID_MAX);
            goto out;
        }
        snprintf(id, sizeof(id), "%s", key_id);
    }
    if (gnutls_rnd(GNUTLS_RND_KEY, secret, sizeof(secret)) < 0) {
        rc = ROOST_ECRYPTO;
        set_err(err, err_len, "%s: random generator failed", path);
        goto out;
    }
    rc = token_keyring_add(&ring, id, strlen(id), secret);
    if (rc != 0)
        goto out;

    int n = snprintf(text, sizeof(text),
                     "# roost join-token keys: '<key id> <base64url 32-byte secret>' per line.\n"
                     "# The first key signs new tokens; every key verifies. Keep mode 0600.\n"
                     "%s ",
                     id);
    n += (int)token_b64url_encode(secret, sizeof(secret), text + n);
    text[n++] = '\n';

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1) {
        rc = errno_to_roost(errno);
        set_err(err, err_len, "%s: %s%s", path, strerror(errno),
                errno == EEXIST ? " (refusing to overwrite a key file)" : "");
        goto out;
    }
    created = 1;
    /* The umask can only remove bits, but be exact about what we promise. */
    if (fchmod(fd, 0600) == -1 || write_all(fd, text, (size_t)n) == -1 || fsync(fd) == -1) {
        rc = ROOST_EIO;
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd) == -1) {
        fd = -1;
        rc = ROOST_EIO;
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    if (out != NULL)
        *out = ring;
out:
    if (fd != -1)
        close(fd);
    if (rc != 0 && created)
        unlink(path);
    explicit_bzero(secret, sizeof(secret));
    explicit_bzero(text, sizeof(text));
    token_keyring_wipe(&ring);
    return rc;
}
