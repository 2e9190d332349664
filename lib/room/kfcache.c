#include "room/kfcache.h"

#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/rcuptr.h"

#include "core/buf.h"
#include "core/error.h"
#include "proto/media.h"

#define STREAMS 256
#define NS_PER_MS 1000000ull

struct pkt {
    struct buf *b;
    uint64_t t; /* arrival, prefill only */
};

/* A growable array of counted references; owner-only. */
struct pkts {
    struct pkt *v;
    uint32_t n, cap, head; /* head: first live entry (prefill trims from the front) */
    uint64_t bytes;
};

struct stream {
    struct pkts build; /* keyframe being received */
    bool building, over;
    struct pkts kf; /* latest complete keyframe */
    struct pkts pf; /* audio prefill window */
};

struct kfcache_view {
    struct rcu_head rcu; /* first: freed from call_rcu */
    struct kfcache_tag tag;
    uint32_t n;
    struct buf *b[];
};

struct kfcache {
    struct kfcache_config cfg;
    struct kfcache_view *_Atomic *slot;
    struct kfcache_tag tag;
    struct stream *st[STREAMS]; /* allocated on a stream's first cached packet */
    struct kfcache_stats stats;
};

static void pkts_release(struct pkts *p)
{
    for (uint32_t i = p->head; i < p->n; i++)
        buf_unref(p->v[i].b);
    p->n = p->head = 0;
    p->bytes = 0;
}

static void pkts_free(struct pkts *p)
{
    pkts_release(p);
    free(p->v);
    p->v = NULL;
    p->cap = 0;
}

static int pkts_push(struct pkts *p, struct buf *b, uint64_t t)
{
    if (p->n == p->cap) {
        if (p->head > 0) {
            /* Reuse the trimmed front before growing. */
            memmove(p->v, p->v + p->head, (p->n - p->head) * sizeof(*p->v));
            p->n -= p->head;
            p->head = 0;
        } else {
            uint32_t ncap = p->cap ? p->cap * 2 : 16;
            struct pkt *nv = realloc(p->v, ncap * sizeof(*nv));
            if (nv == NULL)
                return ROOST_ENOMEM;
            p->v = nv;
            p->cap = ncap;
        }
    }
    p->v[p->n++] = (struct pkt){.b = buf_ref(b), .t = t};
    p->bytes += b->len;
    return 0;
}

static void pkts_pop_front(struct pkts *p)
{
    struct pkt *e = &p->v[p->head++];
    p->bytes -= e->b->len;
    buf_unref(e->b);
    if (p->head == p->n)
        p->head = p->n = 0;
}

static void view_free_rcu(struct rcu_head *h)
{
    struct kfcache_view *v = caa_container_of(h, struct kfcache_view, rcu);
    for (uint32_t i = 0; i < v->n; i++)
        buf_unref(v->b[i]);
    free(v);
}

static void publish(struct kfcache *c, struct kfcache_view *v)
{
    struct kfcache_view *old = atomic_load_explicit(c->slot, memory_order_relaxed);
    /* Pairs with rcu_dereference on the joiner's worker: the view's
     * contents are visible before its pointer. */
    rcu_assign_pointer(*c->slot, v);
    if (old != NULL)
        call_rcu(&old->rcu, view_free_rcu);
    c->stats.published++;
}

/* Rebuilds and publishes the view from the current state. On allocation
 * failure the old view is unpublished (a joiner gets nothing rather than
 * a stale keyframe). */
static int republish(struct kfcache *c)
{
    uint32_t n = 0;
    for (unsigned s = 0; s < STREAMS; s++)
        if (c->st[s] != NULL)
            n += (c->st[s]->kf.n - c->st[s]->kf.head) + (c->st[s]->pf.n - c->st[s]->pf.head);
    if (n == 0) {
        publish(c, NULL);
        return 0;
    }
    struct kfcache_view *v = malloc(sizeof(*v) + (size_t)n * sizeof(v->b[0]));
    if (v == NULL) {
        publish(c, NULL);
        return ROOST_ENOMEM;
    }
    v->tag = c->tag;
    v->n = 0;
    for (unsigned s = 0; s < STREAMS; s++) {
        const struct stream *st = c->st[s];
        if (st != NULL)
            for (uint32_t i = st->kf.head; i < st->kf.n; i++)
                v->b[v->n++] = buf_ref(st->kf.v[i].b);
    }
    for (unsigned s = 0; s < STREAMS; s++) {
        const struct stream *st = c->st[s];
        if (st != NULL)
            for (uint32_t i = st->pf.head; i < st->pf.n; i++)
                v->b[v->n++] = buf_ref(st->pf.v[i].b);
    }
    publish(c, v);
    return 0;
}

int kfcache_new(struct kfcache **out, const struct kfcache_config *cfg,
                struct kfcache_view *_Atomic *slot)
{
    if (out == NULL || slot == NULL)
        return ROOST_EINVAL;
    struct kfcache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ROOST_ENOMEM;
    if (cfg != NULL)
        c->cfg = *cfg;
    if (c->cfg.cap_bytes == 0)
        c->cfg.cap_bytes = KFCACHE_DEFAULT_CAP;
    c->slot = slot;
    *out = c;
    return 0;
}

void kfcache_clear(struct kfcache *c)
{
    bool had = atomic_load_explicit(c->slot, memory_order_relaxed) != NULL;
    for (unsigned s = 0; s < STREAMS; s++) {
        struct stream *st = c->st[s];
        if (st == NULL)
            continue;
        pkts_free(&st->build);
        pkts_free(&st->kf);
        pkts_free(&st->pf);
        free(st);
        c->st[s] = NULL;
    }
    if (had)
        publish(c, NULL);
}

void kfcache_del(struct kfcache *c)
{
    if (c == NULL)
        return;
    kfcache_clear(c);
    free(c);
}

void kfcache_set_tag(struct kfcache *c, const struct kfcache_tag *tag)
{
    c->tag = *tag;
}

static void build_reset(struct stream *st)
{
    pkts_release(&st->build);
    st->building = false;
    st->over = false;
}

static int feed_keyframe(struct kfcache *c, struct stream *st, struct buf *b, uint8_t flags)
{
    if (st->building && (flags & MEDIA_F_START))
        build_reset(st); /* the previous keyframe never ended */
    st->building = true;
    if (!st->over) {
        if (st->build.bytes + b->len > c->cfg.cap_bytes) {
            /* Too big to cache: release what is buffered, and drop the
             * stream's older keyframe, which this one makes stale. */
            st->over = true;
            pkts_release(&st->build);
            c->stats.over_cap++;
            if (st->kf.n > st->kf.head) {
                pkts_release(&st->kf);
                republish(c);
            }
        } else if (pkts_push(&st->build, b, 0) != 0) {
            build_reset(st);
            return ROOST_ENOMEM;
        }
    }
    if (!(flags & MEDIA_F_END))
        return 0;
    if (st->over) {
        build_reset(st);
        return 0;
    }
    /* Promote: the buffered frame becomes the stream's keyframe. */
    struct pkts old = st->kf;
    st->kf = st->build;
    st->build = old;
    build_reset(st);
    c->stats.promoted++;
    return republish(c);
}

static int feed_prefill(struct kfcache *c, struct stream *st, struct buf *b, uint64_t now)
{
    uint64_t win = (uint64_t)c->cfg.prefill_ms * NS_PER_MS;
    while (st->pf.n > st->pf.head &&
           (st->pf.v[st->pf.head].t + win <= now || st->pf.bytes + b->len > c->cfg.cap_bytes))
        pkts_pop_front(&st->pf);
    if (b->len > c->cfg.cap_bytes)
        return republish(c);
    if (pkts_push(&st->pf, b, now) != 0) {
        republish(c);
        return ROOST_ENOMEM;
    }
    c->stats.prefill_in++;
    return republish(c);
}

int kfcache_feed(struct kfcache *c, struct buf *b, uint64_t now)
{
    if (b->len < MEDIA_R2C_HDR_LEN)
        return ROOST_EMALFORMED;
    uint8_t stream = b->data[MEDIA_SENDER_LEN + 1];
    uint8_t flags = b->data[MEDIA_SENDER_LEN + 2];
    struct stream *st = c->st[stream];
    bool key = flags & MEDIA_F_KEYFRAME;
    bool audio_pf = !(flags & MEDIA_F_VIDEO) && c->cfg.prefill_ms > 0;
    if (st == NULL) {
        if (!key && !audio_pf)
            return 0; /* the common case: nothing to cache, nothing buffered */
        st = calloc(1, sizeof(*st));
        if (st == NULL)
            return ROOST_ENOMEM;
        c->st[stream] = st;
    }
    uint64_t promoted = c->stats.promoted, over = c->stats.over_cap;
    int rc = 0;
    int ev = 0;
    /* With prefill on, an audio stream's packets are all in the prefill
     * window: caching its keyframes too would send them twice. */
    if (key && !audio_pf) {
        rc = feed_keyframe(c, st, b, flags);
    } else if (st->building) {
        /* A non-keyframe packet before END: the keyframe is incomplete. */
        build_reset(st);
        c->stats.discarded++;
        ev |= KFCACHE_EV_DISCARDED;
    }
    if (audio_pf) {
        int rc2 = feed_prefill(c, st, b, now);
        if (rc == 0)
            rc = rc2;
    }
    if (c->stats.promoted != promoted)
        ev |= KFCACHE_EV_PROMOTED;
    if (c->stats.over_cap != over)
        ev |= KFCACHE_EV_OVER_CAP;
    return rc < 0 ? rc : ev;
}

void kfcache_stats(const struct kfcache *c, struct kfcache_stats *out)
{
    *out = c->stats;
}

const struct kfcache_tag *kfcache_view_tag(const struct kfcache_view *v)
{
    RCUPTR_ASSERT_READER();
    return &v->tag;
}

uint32_t kfcache_view_count(const struct kfcache_view *v)
{
    RCUPTR_ASSERT_READER();
    return v ? v->n : 0;
}

struct buf *kfcache_view_packet(const struct kfcache_view *v, uint32_t i)
{
    RCUPTR_ASSERT_READER();
    return v->b[i];
}
