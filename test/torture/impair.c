/* Pure parts of the impairment proxy; see impair.h. */
#include "test/torture/impair.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ rng */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void impair_rng_seed(struct impair_rng *r, uint64_t seed)
{
    /* splitmix64 expands the seed, as xoshiro's authors recommend: never
     * the all-zero state. */
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t impair_rng_next(struct impair_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double impair_rng_unit(struct impair_rng *r)
{
    return (double)(impair_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------- decision */

void impair_decide(const struct impair_dir *d, struct impair_rng *r, struct impair_verdict *v)
{
    /* Fixed number of draws: the verdict of packet k depends only on the
     * seed and k, not on what earlier packets drew. */
    double u_loss = impair_rng_unit(r);
    double u_dup = impair_rng_unit(r);
    double u_jit[2] = {impair_rng_unit(r), impair_rng_unit(r)};
    double u_reo[2] = {impair_rng_unit(r), impair_rng_unit(r)};
    memset(v, 0, sizeof(*v));
    if (u_loss < d->loss)
        return;
    v->copies = u_dup < d->dup ? 2 : 1;
    for (unsigned i = 0; i < v->copies; i++) {
        double delay = (double)d->delay_ns;
        if (d->jitter_ns > 0)
            delay += (2 * u_jit[i] - 1) * (double)d->jitter_ns;
        if (delay < 0)
            delay = 0;
        v->delay_ns[i] = (uint64_t)delay;
        if (u_reo[i] < d->reorder) {
            v->delay_ns[i] += d->reorder_ns;
            v->reordered[i] = true;
        }
    }
}

/* ---------------------------------------------------------------- queue */

int impair_queue_init(struct impair_queue *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    q->pool = calloc(cap, sizeof(*q->pool));
    q->heap = calloc(cap, sizeof(*q->heap));
    q->free = calloc(cap, sizeof(*q->free));
    if (q->pool == NULL || q->heap == NULL || q->free == NULL) {
        impair_queue_free(q);
        return -ENOMEM;
    }
    q->cap = cap;
    for (size_t i = 0; i < cap; i++)
        q->free[i] = &q->pool[cap - 1 - i];
    q->n_free = cap;
    return 0;
}

void impair_queue_free(struct impair_queue *q)
{
    free(q->pool);
    free(q->heap);
    free(q->free);
    memset(q, 0, sizeof(*q));
}

struct impair_pkt *impair_queue_alloc(struct impair_queue *q)
{
    if (q->n_free == 0)
        return NULL;
    return q->free[--q->n_free];
}

void impair_queue_release(struct impair_queue *q, struct impair_pkt *p)
{
    /* Every packet comes from the pool, so n_free < cap here. */
    q->free[q->n_free++] = p;
}

static bool before(const struct impair_pkt *a, const struct impair_pkt *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

void impair_queue_push(struct impair_queue *q, struct impair_pkt *p, uint64_t due)
{
    p->due = due;
    p->seq = q->next_seq++;
    size_t i = q->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(p, q->heap[up]))
            break;
        q->heap[i] = q->heap[up];
        i = up;
    }
    q->heap[i] = p;
}

const struct impair_pkt *impair_queue_peek(const struct impair_queue *q)
{
    return q->n > 0 ? q->heap[0] : NULL;
}

struct impair_pkt *impair_queue_pop_due(struct impair_queue *q, uint64_t now)
{
    if (q->n == 0 || q->heap[0]->due > now)
        return NULL;
    struct impair_pkt *top = q->heap[0];
    struct impair_pkt *last = q->heap[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && before(q->heap[c + 1], q->heap[c]))
            c++;
        if (!before(q->heap[c], last))
            break;
        q->heap[i] = q->heap[c];
        i = c;
    }
    if (q->n > 0)
        q->heap[i] = last;
    return top;
}

/* -------------------------------------------------------------- options */

int impair_parse_time(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0 && v <= 1e7))
        return -EINVAL;
    double mul;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1e9;
    else if (strcmp(end, "ms") == 0)
        mul = 1e6;
    else if (strcmp(end, "us") == 0)
        mul = 1e3;
    else if (strcmp(end, "m") == 0)
        mul = 60e9;
    else
        return -EINVAL;
    *ns = (uint64_t)(v * mul + 0.5);
    return 0;
}

int impair_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port, bool allow_zero)
{
    const char *h = s, *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -EINVAL;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= cap)
        return -EINVAL;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || p < (allow_zero ? 0 : 1) || p > 65535)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static int parse_pct(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0 && v <= 100))
        return -EINVAL;
    if (*end == '%')
        end++;
    if (*end != '\0')
        return -EINVAL;
    *out = v / 100;
    return 0;
}

static int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static double ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* Sets a per-direction field in dirs [lo, hi]. */
static int set_dir(struct impair_opts *o, const char *key, const char *val, int lo, int hi)
{
    for (int d = lo; d <= hi; d++) {
        struct impair_dir *x = &o->dir[d];
        int rc;
        if (strcmp(key, "loss") == 0)
            rc = parse_pct(val, &x->loss);
        else if (strcmp(key, "dup") == 0)
            rc = parse_pct(val, &x->dup);
        else if (strcmp(key, "reorder") == 0)
            rc = parse_pct(val, &x->reorder);
        else if (strcmp(key, "delay") == 0)
            rc = impair_parse_time(val, &x->delay_ns);
        else if (strcmp(key, "jitter") == 0)
            rc = impair_parse_time(val, &x->jitter_ns);
        else if (strcmp(key, "reorder-delay") == 0)
            rc = impair_parse_time(val, &x->reorder_ns);
        else
            return 1; /* not a direction key */
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int parse_rebind_at(struct impair_opts *o, const char *val)
{
    char buf[256];
    if (strlen(val) >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, val, strlen(val) + 1);
    o->n_rebind_at = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        uint64_t ns;
        if (o->n_rebind_at == IMPAIR_REBIND_MAX || impair_parse_time(t, &ns) != 0)
            return -EINVAL;
        o->rebind_at_s[o->n_rebind_at++] = ns_to_s(ns);
    }
    return o->n_rebind_at > 0 ? 0 : -EINVAL;
}

int impair_parse(int argc, char **argv, struct impair_opts *o, char *err, size_t errcap)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->listen_host, sizeof(o->listen_host), "127.0.0.1");
    o->seed = 1;
    o->max_clients = 1024;
    o->idle_s = 60;
    o->queue_cap = 16384;
    o->dir[IMPAIR_UP].reorder_ns = o->dir[IMPAIR_DOWN].reorder_ns = 30000000; /* 30 ms */
    bool have_up = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errcap, "unexpected argument '%s'", a);
            return -EINVAL;
        }
        char key[64];
        const char *val;
        const char *eq = strchr(a, '=');
        if (eq != NULL) {
            size_t kl = (size_t)(eq - a - 2);
            if (kl >= sizeof(key))
                goto bad_key;
            memcpy(key, a + 2, kl);
            key[kl] = '\0';
            val = eq + 1;
        } else {
            if (strlen(a + 2) >= sizeof(key))
                goto bad_key;
            snprintf(key, sizeof(key), "%s", a + 2);
            if (i + 1 >= argc) {
                snprintf(err, errcap, "--%s needs a value", key);
                return -EINVAL;
            }
            val = argv[++i];
        }
        int rc;
        uint64_t u;
        if (strncmp(key, "up-", 3) == 0)
            rc = set_dir(o, key + 3, val, IMPAIR_UP, IMPAIR_UP);
        else if (strncmp(key, "down-", 5) == 0)
            rc = set_dir(o, key + 5, val, IMPAIR_DOWN, IMPAIR_DOWN);
        else
            rc = set_dir(o, key, val, IMPAIR_UP, IMPAIR_DOWN);
        if (rc == 1) {
            if (strcmp(key, "listen") == 0) {
                rc = impair_parse_hostport(val, o->listen_host, sizeof(o->listen_host),
                                           &o->listen_port, true);
            } else if (strcmp(key, "upstream") == 0) {
                rc = impair_parse_hostport(val, o->up_host, sizeof(o->up_host), &o->up_port, false);
                have_up = rc == 0;
            } else if (strcmp(key, "seed") == 0) {
                rc = parse_uint(val, 0, UINT64_MAX, &o->seed);
            } else if (strcmp(key, "duration") == 0) {
                rc = impair_parse_time(val, &u);
                o->duration_s = ns_to_s(u);
            } else if (strcmp(key, "rebind-every") == 0) {
                rc = impair_parse_time(val, &u);
                o->rebind_every_s = ns_to_s(u);
            } else if (strcmp(key, "rebind-at") == 0) {
                rc = parse_rebind_at(o, val);
            } else if (strcmp(key, "max-clients") == 0) {
                rc = parse_uint(val, 1, 65536, &u);
                o->max_clients = (unsigned)u;
            } else if (strcmp(key, "idle") == 0) {
                rc = impair_parse_time(val, &u);
                o->idle_s = ns_to_s(u);
            } else if (strcmp(key, "queue") == 0) {
                rc = parse_uint(val, 1, 1u << 20, &u);
                o->queue_cap = (size_t)u;
            } else if (strcmp(key, "stats") == 0) {
                o->stats_file = val;
                rc = 0;
            } else {
                goto bad_key;
            }
        }
        if (rc != 0) {
            snprintf(err, errcap, "invalid value for --%s: '%s'", key, val);
            return -EINVAL;
        }
        continue;
    bad_key:
        snprintf(err, errcap, "unknown option '%s'", a);
        return -EINVAL;
    }
    if (!have_up) {
        snprintf(err, errcap, "--upstream HOST:PORT is required");
        return -EINVAL;
    }
    return 0;
}
