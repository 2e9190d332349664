/* Session ticket keys (file, rotation, which master a ticket names) and
 * the client's ticket store. See tickets.h. */
#include "quic/tickets.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/be.h"
#include "core/error.h"

/* File layout: cur (64) | prev (64, all zero: none) | rotated_at (be64). */
#define FILE_LEN (2 * TICKETS_KEY_LEN + 8)

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int tickets_write(const char *path, const struct tickets_keys *k)
{
    uint8_t b[FILE_LEN];
    memcpy(b, k->cur, TICKETS_KEY_LEN);
    if (k->has_prev)
        memcpy(b + TICKETS_KEY_LEN, k->prev, TICKETS_KEY_LEN);
    else
        memset(b + TICKETS_KEY_LEN, 0, TICKETS_KEY_LEN);
    be_put64(b + 2 * TICKETS_KEY_LEN, k->rotated_at);
    char tmp[4200];
    int rc = ROOST_EIO;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        goto out;
    (void)unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1)
        goto out;
    bool ok = write(fd, b, sizeof(b)) == (ssize_t)sizeof(b) && fsync(fd) == 0;
    close(fd);
    /* rename: a crash leaves the old or the new file, never half of one. */
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    gnutls_memset(b, 0, sizeof(b));
    return rc;
}

static void set_msg(char *msg, size_t n, const char *fmt, const char *path, const char *why)
{
    if (msg != NULL && n > 0)
        snprintf(msg, n, fmt, path, why);
}

int tickets_load(const char *path, struct tickets_keys *out, uint64_t now_s, char *msg,
                 size_t msglen)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1 && errno == ENOENT) {
        if (gnutls_rnd(GNUTLS_RND_KEY, out->cur, TICKETS_KEY_LEN) != 0)
            return ROOST_ECRYPTO;
        out->rotated_at = now_s;
        int rc = tickets_write(path, out);
        if (rc < 0)
            set_msg(msg, msglen, "cannot create '%s': %s", path, strerror(errno));
        return rc;
    }
    if (fd == -1) {
        set_msg(msg, msglen, "cannot open '%s': %s", path, strerror(errno));
        return ROOST_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        set_msg(msg, msglen, "'%s': %s", path, "not a regular file");
        return ROOST_EIO;
    }
    /* A ticket key lets its holder decrypt every resumption it issued
     * (and impersonate the relay to resuming clients): only the owner. */
    if ((st.st_mode & 077) != 0) {
        close(fd);
        set_msg(msg, msglen, "'%s': %s", path, "readable by group or other (chmod 600)");
        return ROOST_EACCES;
    }
    uint8_t b[FILE_LEN + 1];
    ssize_t n = read(fd, b, sizeof(b));
    close(fd);
    if (n != FILE_LEN) {
        gnutls_memset(b, 0, sizeof(b));
        set_msg(msg, msglen, "'%s': %s", path, "wrong size");
        return ROOST_EIO;
    }
    memcpy(out->cur, b, TICKETS_KEY_LEN);
    memcpy(out->prev, b + TICKETS_KEY_LEN, TICKETS_KEY_LEN);
    out->has_prev = !all_zero(out->prev, TICKETS_KEY_LEN);
    out->rotated_at = be_get64(b + 2 * TICKETS_KEY_LEN);
    gnutls_memset(b, 0, sizeof(b));
    return 0;
}

int tickets_rotate(const char *path, const struct tickets_keys *old, struct tickets_keys *next,
                   uint64_t now_s)
{
    memset(next, 0, sizeof(*next));
    if (gnutls_rnd(GNUTLS_RND_KEY, next->cur, TICKETS_KEY_LEN) != 0)
        return ROOST_ECRYPTO;
    memcpy(next->prev, old->cur, TICKETS_KEY_LEN);
    next->has_prev = true;
    next->rotated_at = now_s;
    return path != NULL ? tickets_write(path, next) : 0;
}

int tickets_key_name(const uint8_t master[TICKETS_KEY_LEN], uint64_t now_s, unsigned lifetime_s,
                     unsigned back, uint8_t name[TICKETS_NAME_LEN])
{
    uint64_t x = (uint64_t)lifetime_s * TICKETS_GNUTLS_PERIOD_PRODUCT;
    if (x == 0)
        return ROOST_EINVAL;
    uint64_t t = now_s / x;
    if (t < back)
        return ROOST_EINVAL;
    uint8_t in[8 + TICKETS_KEY_LEN], out[64];
    be_put64(in, t - back);
    memcpy(in + 8, master, TICKETS_KEY_LEN);
    int g = gnutls_hash_fast(GNUTLS_DIG_SHA3_512, in, sizeof(in), out);
    gnutls_memset(in, 0, sizeof(in));
    if (g != 0)
        return ROOST_ECRYPTO;
    memcpy(name, out, TICKETS_NAME_LEN);
    gnutls_memset(out, 0, sizeof(out));
    return 0;
}

bool tickets_issued_under(const uint8_t *id, size_t idlen, const uint8_t master[TICKETS_KEY_LEN],
                          uint64_t now_s, unsigned lifetime_s)
{
    if (idlen < TICKETS_NAME_LEN)
        return false;
    for (unsigned back = 0; back < 2; back++) {
        uint8_t name[TICKETS_NAME_LEN];
        if (tickets_key_name(master, now_s, lifetime_s, back, name) == 0 &&
            memcmp(name, id, TICKETS_NAME_LEN) == 0)
            return true;
    }
    return false;
}

/* A length-prefixed vector at *p: its body and advance past it. */
static bool vec(const uint8_t **p, const uint8_t *end, unsigned lenbytes, const uint8_t **body,
                size_t *blen)
{
    if ((size_t)(end - *p) < lenbytes)
        return false;
    size_t n = lenbytes == 1 ? (*p)[0] : be_get16(*p);
    *p += lenbytes;
    if ((size_t)(end - *p) < n)
        return false;
    *body = *p;
    *blen = n;
    *p += n;
    return true;
}

#define EXT_PRE_SHARED_KEY 41

bool tickets_ch_psk_identity(const uint8_t *ch, size_t len, const uint8_t **id, size_t *idlen)
{
    const uint8_t *p = ch, *end = ch + len, *b;
    size_t n;
    if (len < 2 + 32)
        return false;
    p += 2 + 32; /* legacy_version, random */
    if (!vec(&p, end, 1, &b, &n) || !vec(&p, end, 2, &b, &n) || !vec(&p, end, 1, &b, &n))
        return false; /* session id, cipher suites, compression methods */
    const uint8_t *ext;
    size_t extlen;
    if (!vec(&p, end, 2, &ext, &extlen))
        return false;
    const uint8_t *q = ext, *qend = ext + extlen;
    while ((size_t)(qend - q) >= 4) {
        uint16_t type = be_get16(q);
        q += 2;
        if (!vec(&q, qend, 2, &b, &n))
            return false;
        if (type != EXT_PRE_SHARED_KEY)
            continue;
        /* OfferedPsks: identities<7..2^16-1>, each identity<1..2^16-1> +
         * obfuscated_ticket_age (4); binders follow. */
        const uint8_t *r = b, *rend = b + n, *ids, *one;
        size_t idslen, onelen;
        if (!vec(&r, rend, 2, &ids, &idslen))
            return false;
        const uint8_t *s = ids;
        if (!vec(&s, ids + idslen, 2, &one, &onelen) || onelen == 0)
            return false;
        *id = one;
        *idlen = onelen;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------- store */

static struct tickets_entry *find(struct tickets_store *st, const struct udp_addr *addr)
{
    for (unsigned i = 0; i < st->n; i++)
        if (udp_addr_equal(&st->e[i].addr, addr))
            return &st->e[i];
    return NULL;
}

int tickets_store_put(struct tickets_store *st, const struct udp_addr *addr, const uint8_t *data,
                      size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return ROOST_ENOMEM;
    memcpy(copy, data, len);
    struct tickets_entry *e = find(st, addr);
    if (e == NULL && st->n < TICKETS_STORE_MAX) {
        e = &st->e[st->n++];
    } else if (e == NULL) {
        e = &st->e[0];
        for (unsigned i = 1; i < st->n; i++)
            if (st->e[i].used < e->used)
                e = &st->e[i];
    }
    if (e->data != NULL) {
        gnutls_memset(e->data, 0, e->len);
        free(e->data);
    }
    e->addr = *addr;
    e->data = copy;
    e->len = len;
    e->used = ++st->clock;
    return 0;
}

const struct tickets_entry *tickets_store_get(struct tickets_store *st, const struct udp_addr *addr)
{
    struct tickets_entry *e = find(st, addr);
    if (e != NULL)
        e->used = ++st->clock;
    return e;
}

void tickets_store_forget(struct tickets_store *st, const struct udp_addr *addr)
{
    struct tickets_entry *e = find(st, addr);
    if (e == NULL)
        return;
    gnutls_memset(e->data, 0, e->len);
    free(e->data);
    *e = st->e[--st->n];
    memset(&st->e[st->n], 0, sizeof(st->e[st->n]));
}

void tickets_store_clear(struct tickets_store *st)
{
    for (unsigned i = 0; i < st->n; i++) {
        gnutls_memset(st->e[i].data, 0, st->e[i].len);
        free(st->e[i].data);
    }
    memset(st, 0, sizeof(*st));
}
