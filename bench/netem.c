#include "bench/netem.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define TICK_SHIFT 16  /* slot width: 65.536 us */
#define CHUNK 256      /* entries per pool allocation */
#define LAG_SLACK 2048 /* slots (134 ms) */

struct entry {
    struct entry *next;
    uint64_t due;
    void *ctx;
    uint32_t len;
    uint8_t dir;
    uint8_t data[NETEM_MAX_LEN];
};

struct slot {
    struct entry *head, *tail; /* sorted by (due, push order) */
};

struct chunk {
    struct chunk *next;
    struct entry e[CHUNK];
};

struct netem {
    struct netem_config cfg;
    netem_release_cb cb;
    void *arg;
    uint64_t rng;
    uint64_t half; /* rtt / 2 */
    struct slot *slots;
    uint64_t *bits; /* bit i: slot i non-empty */
    size_t nslots, mask, nwords;
    uint64_t cur; /* tick of the last run: slots before it are empty */
    size_t held;
    struct entry *free;
    struct chunk *chunks;
    struct netem_stats st;
};

bool netem_active(const struct netem_config *cfg)
{
    return cfg->rtt_ns > 0 || cfg->jitter_ns > 0 || cfg->loss > 0;
}

/* splitmix64 to seed, xorshift64* to draw: reproducible for a seed. */
static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t draw(struct netem *nm)
{
    nm->rng ^= nm->rng >> 12;
    nm->rng ^= nm->rng << 25;
    nm->rng ^= nm->rng >> 27;
    return nm->rng * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, 1). */
static double unit(struct netem *nm)
{
    return (double)(draw(nm) >> 11) / 9007199254740992.0;
}

int netem_new(struct netem **out, const struct netem_config *cfg, netem_release_cb cb, void *arg)
{
    *out = NULL;
    if (cfg->rtt_ns > NETEM_MAX_RTT_NS || cfg->jitter_ns > NETEM_MAX_JITTER_NS ||
        !(cfg->loss >= 0 && cfg->loss <= 1) || cb == NULL)
        return ROOST_EINVAL;
    struct netem *nm = calloc(1, sizeof(*nm));
    if (nm == NULL)
        return ROOST_ENOMEM;
    nm->cfg = *cfg;
    nm->cb = cb;
    nm->arg = arg;
    nm->rng = splitmix(cfg->seed);
    if (nm->rng == 0)
        nm->rng = 1;
    nm->half = cfg->rtt_ns / 2;
    /* Enough slots that no two pending ticks share one: the longest delay,
     * a slot of slack either side, and LAG_SLACK for a bench thread that
     * runs the wheel late (then entries span more than the delay). */
    size_t need = (size_t)((nm->half + cfg->jitter_ns) >> TICK_SHIFT) + 3 + LAG_SLACK;
    nm->nslots = 64;
    while (nm->nslots < need)
        nm->nslots <<= 1;
    nm->mask = nm->nslots - 1;
    nm->nwords = nm->nslots / 64;
    nm->slots = calloc(nm->nslots, sizeof(*nm->slots));
    nm->bits = calloc(nm->nwords, sizeof(*nm->bits));
    if (nm->slots == NULL || nm->bits == NULL) {
        netem_del(nm);
        return ROOST_ENOMEM;
    }
    *out = nm;
    return 0;
}

void netem_del(struct netem *nm)
{
    if (nm == NULL)
        return;
    while (nm->chunks != NULL) {
        struct chunk *c = nm->chunks;
        nm->chunks = c->next;
        free(c);
    }
    free(nm->slots);
    free(nm->bits);
    free(nm);
}

static struct entry *entry_get(struct netem *nm)
{
    if (nm->free == NULL) {
        struct chunk *c = malloc(sizeof(*c));
        if (c == NULL)
            return NULL;
        c->next = nm->chunks;
        nm->chunks = c;
        for (int i = CHUNK - 1; i >= 0; i--) {
            c->e[i].next = nm->free;
            nm->free = &c->e[i];
        }
    }
    struct entry *e = nm->free;
    nm->free = e->next;
    return e;
}

static void entry_put(struct netem *nm, struct entry *e)
{
    e->next = nm->free;
    nm->free = e;
}

static uint64_t delay_of(struct netem *nm)
{
    uint64_t d = nm->half;
    uint64_t j = nm->cfg.jitter_ns;
    if (j > 0) {
        /* Uniform in [-j, +j], clamped at 0. */
        double off = (unit(nm) * 2.0 - 1.0) * (double)j;
        if (off < 0 && (uint64_t)(-off) >= d)
            d = 0;
        else
            d = off < 0 ? d - (uint64_t)(-off) : d + (uint64_t)off;
    }
    return d;
}

static void slot_insert(struct netem *nm, struct entry *e)
{
    size_t i = (size_t)(e->due >> TICK_SHIFT) & nm->mask;
    struct slot *s = &nm->slots[i];
    e->next = NULL;
    if (s->head == NULL) {
        s->head = s->tail = e;
        nm->bits[i / 64] |= 1ull << (i % 64);
    } else if (s->tail->due <= e->due) {
        s->tail->next = e; /* the common case: constant delay, append */
        s->tail = e;
    } else {
        /* After every entry due at or before it: push order among equals. */
        struct entry **pp = &s->head;
        while ((*pp)->due <= e->due)
            pp = &(*pp)->next;
        e->next = *pp;
        *pp = e;
    }
    if (++nm->held > nm->st.max_held)
        nm->st.max_held = nm->held;
}

int netem_push(struct netem *nm, unsigned dir, void *ctx, struct netem_flow *flow,
               const uint8_t *data, size_t len, uint64_t now)
{
    if (len > NETEM_MAX_LEN)
        return ROOST_ETOOBIG;
    dir = dir ? NETEM_IN : NETEM_OUT;
    if (nm->cfg.loss > 0 && unit(nm) < nm->cfg.loss) {
        nm->st.lost[dir]++;
        return 0;
    }
    uint64_t due = now + delay_of(nm);
    if (flow != NULL) {
        if (due < flow->last_due[dir])
            due = flow->last_due[dir];
        flow->last_due[dir] = due;
    }
    /* Never behind the wheel's cursor (a caller's now may trail the
     * last run's by a little): such an entry leaves at the next run. */
    if ((due >> TICK_SHIFT) < nm->cur)
        due = nm->cur << TICK_SHIFT;
    struct entry *e = entry_get(nm);
    if (e == NULL)
        return ROOST_ENOMEM;
    e->due = due;
    e->ctx = ctx;
    e->len = (uint32_t)len;
    e->dir = (uint8_t)dir;
    memcpy(e->data, data, len);
    slot_insert(nm, e);
    nm->st.queued[dir]++;
    return 1;
}

static void slot_unlinked(struct netem *nm, size_t i)
{
    if (nm->slots[i].head == NULL) {
        nm->slots[i].tail = NULL;
        nm->bits[i / 64] &= ~(1ull << (i % 64));
    }
}

static void release(struct netem *nm, struct entry *e, uint64_t now)
{
    nm->held--;
    nm->st.released[e->dir]++;
    nm->cb(nm->arg, e->dir, e->ctx, e->data, e->len, now);
    entry_put(nm, e);
}

void netem_run(struct netem *nm, uint64_t now)
{
    uint64_t nt = now >> TICK_SHIFT;
    if (nt < nm->cur)
        nt = nm->cur;
    /* At most one lap, from the old cursor: a cursor far behind visits
     * every slot once, in due order (every held entry is due within one
     * lap of the cursor, and a slot's list is sorted). */
    uint64_t from = nm->cur;
    uint64_t to = nt - nm->cur >= nm->nslots ? nm->cur + nm->mask : nt;
    nm->cur = nt;
    for (uint64_t t = from; t <= to && nm->held > 0; t++) {
        size_t i = (size_t)t & nm->mask;
        struct slot *s = &nm->slots[i];
        /* Re-read the head each time: the callback may push or forget. */
        while (s->head != NULL && s->head->due <= now) {
            struct entry *e = s->head;
            s->head = e->next;
            slot_unlinked(nm, i);
            release(nm, e, now);
        }
    }
}

uint64_t netem_next(const struct netem *nm)
{
    if (nm->held == 0)
        return UINT64_MAX;
    /* The first non-empty slot from the cursor on holds the earliest due
     * (no slot holds two laps: see nslots). */
    size_t start = (size_t)nm->cur & nm->mask;
    for (size_t k = 0; k <= nm->nwords; k++) {
        size_t w = (start / 64 + k) % nm->nwords;
        uint64_t b = nm->bits[w];
        if (k == 0)
            b &= ~0ull << (start % 64);
        else if (k == nm->nwords)
            b &= (start % 64) ? ~(~0ull << (start % 64)) : 0;
        if (b != 0) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(b);
            return nm->slots[i].head->due;
        }
    }
    return UINT64_MAX; /* not reached: held > 0 */
}

void netem_forget(struct netem *nm, const void *ctx)
{
    for (size_t w = 0; w < nm->nwords && nm->held > 0; w++) {
        uint64_t b = nm->bits[w];
        while (b != 0) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(b);
            b &= b - 1;
            struct entry **pp = &nm->slots[i].head;
            struct entry *last = NULL;
            while (*pp != NULL) {
                struct entry *e = *pp;
                if (e->ctx == ctx) {
                    *pp = e->next;
                    nm->held--;
                    nm->st.dropped++;
                    entry_put(nm, e);
                } else {
                    last = e;
                    pp = &e->next;
                }
            }
            nm->slots[i].tail = last;
            slot_unlinked(nm, i);
        }
    }
}

void netem_flush(struct netem *nm, unsigned dir, uint64_t now)
{
    /* In due order: from the cursor, one lap. */
    for (uint64_t t = nm->cur; t <= nm->cur + nm->mask && nm->held > 0; t++) {
        size_t i = (size_t)t & nm->mask;
        struct slot *s = &nm->slots[i];
        while (s->head != NULL) {
            struct entry *e = s->head;
            s->head = e->next;
            slot_unlinked(nm, i);
            if (e->dir == dir) {
                release(nm, e, now);
            } else {
                nm->held--;
                nm->st.dropped++;
                entry_put(nm, e);
            }
        }
    }
}

size_t netem_held(const struct netem *nm)
{
    return nm->held;
}

void netem_stats(const struct netem *nm, struct netem_stats *out)
{
    *out = nm->st;
}
