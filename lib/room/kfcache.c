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
    uint64_t bytes;        /* payload (b->len): the per-stream cap */
    uint64_t mem;          /* real memory charged to the sender (pkt_mem) */
};

struct stream {
    struct pkts build; /* keyframe being received */
    bool building, over;
    struct pkts kf; /* latest complete keyframe */
    struct pkts pf; /* audio prefill window */
};

/* One stream's published packets: immutable once published, shared by
 * every view until that stream changes. Keyframe packets, then prefill. */
struct kfsub {
    uint32_t n_kf, n;
    struct buf *b[];
};

struct kfsub_ent {
    uint32_t stream;
    struct kfsub *sub;
};

/* What readers see: the non-empty streams in stream order. A new view is
 * built when one stream changes; it copies the other streams' pointers
 * (no buffer references are taken for them) and the retired view frees
 * only the sub it replaced (or all of them, when the cache is cleared). */
struct kfcache_view {
    struct rcu_head rcu; /* first: freed from call_rcu */
    struct kfcache_tag tag;
    struct kfsub *retire; /* freed with this view: the sub the next view replaced */
    bool retire_all;      /* freed with this view: every sub (clear) */
    uint32_t n;           /* packets over all subs */
    uint32_t n_ent;
    struct kfsub_ent ent[];
};

struct kfcache {
    struct kfcache_config cfg;
    struct kfcache_view *_Atomic *slot;
    struct kfcache_view *cur; /* what *slot holds (owner's copy) */
    struct kfcache_tag tag;
    struct stream *st[STREAMS]; /* allocated on a stream's first cached packet */
    uint64_t mem;               /* real memory held, every stream (kfcache_mem) */
    uint32_t npk;               /* packets held, every stream */
    struct kfcache_stats stats;
};

/* What one held packet costs: the buffer (header + capacity + malloc's
 * own header), its slot in a pkts array and its pointer in a published
 * sub, not just the payload. */
static uint64_t pkt_mem(const struct buf *b)
{
    return sizeof(struct buf) + b->cap + 16u + sizeof(struct pkt) + sizeof(struct buf *);
}

static void pkts_release(struct kfcache *c, struct pkts *p)
{
    for (uint32_t i = p->head; i < p->n; i++)
        buf_unref(p->v[i].b);
    c->mem -= p->mem;
    c->npk -= p->n - p->head;
    p->n = p->head = 0;
    p->bytes = 0;
    p->mem = 0;
}

static void pkts_free(struct kfcache *c, struct pkts *p)
{
    pkts_release(c, p);
    free(p->v);
    p->v = NULL;
    p->cap = 0;
}

/* Whether one more packet b fits the sender's caps. */
static bool sender_fits(const struct kfcache *c, const struct buf *b)
{
    return c->npk + 1u <= c->cfg.sender_cap_pkts && c->mem + pkt_mem(b) <= c->cfg.sender_cap_bytes;
}

static int pkts_push(struct kfcache *c, struct pkts *p, struct buf *b, uint64_t t)
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
    p->mem += pkt_mem(b);
    c->mem += pkt_mem(b);
    c->npk++;
    return 0;
}

static void pkts_pop_front(struct kfcache *c, struct pkts *p)
{
    struct pkt *e = &p->v[p->head++];
    p->bytes -= e->b->len;
    p->mem -= pkt_mem(e->b);
    c->mem -= pkt_mem(e->b);
    c->npk--;
    buf_unref(e->b);
    if (p->head == p->n)
        p->head = p->n = 0;
}

static void sub_free(struct kfsub *sb)
{
    if (sb == NULL)
        return;
    for (uint32_t i = 0; i < sb->n; i++)
        buf_unref(sb->b[i]);
    free(sb);
}

static void view_free_rcu(struct rcu_head *h)
{
    struct kfcache_view *v = caa_container_of(h, struct kfcache_view, rcu);
    if (v->retire_all)
        for (uint32_t i = 0; i < v->n_ent; i++)
            sub_free(v->ent[i].sub);
    sub_free(v->retire);
    free(v);
}

/* Publishes v (NULL: nothing) and retires the current view, which then
 * frees `retire` (the sub v no longer holds) or, with retire_all, every
 * sub it holds. */
static void publish(struct kfcache *c, struct kfcache_view *v, struct kfsub *retire,
                    bool retire_all)
{
    struct kfcache_view *old = c->cur;
    /* Pairs with rcu_dereference on the joiner's worker: the view's
     * contents are visible before its pointer. */
    rcu_assign_pointer(*c->slot, v);
    c->cur = v;
    if (old != NULL) {
        old->retire = retire;
        old->retire_all = retire_all;
        call_rcu(&old->rcu, view_free_rcu);
    } else {
        /* Nothing published held it: no reader can see it. */
        sub_free(retire);
    }
    c->stats.published++;
}

/* The stream's current packets as a new sub; *out NULL when it has none. */
static int sub_build(const struct stream *st, struct kfsub **out)
{
    *out = NULL;
    uint32_t nk = st ? st->kf.n - st->kf.head : 0, np = st ? st->pf.n - st->pf.head : 0;
    if (nk + np == 0)
        return 0;
    struct kfsub *sb = malloc(sizeof(*sb) + (size_t)(nk + np) * sizeof(sb->b[0]));
    if (sb == NULL)
        return ROOST_ENOMEM;
    sb->n_kf = nk;
    sb->n = 0;
    for (uint32_t i = st->kf.head; i < st->kf.n; i++)
        sb->b[sb->n++] = buf_ref(st->kf.v[i].b);
    for (uint32_t i = st->pf.head; i < st->pf.n; i++)
        sb->b[sb->n++] = buf_ref(st->pf.v[i].b);
    *out = sb;
    return 0;
}

/* Publishes a view in which stream `s` is rebuilt from the current state
 * and every other stream is shared with the current view: the work is one
 * stream's packets plus one pointer per non-empty stream. On allocation
 * failure the old view is unpublished (a joiner gets nothing rather than a
 * stale keyframe). */
static int republish(struct kfcache *c, unsigned s)
{
    const struct kfcache_view *old = c->cur;
    struct kfsub *sb = NULL;
    int rc = sub_build(c->st[s], &sb);
    uint32_t n_old = old ? old->n_ent : 0;
    struct kfsub *prev = NULL;
    for (uint32_t i = 0; i < n_old; i++)
        if (old->ent[i].stream == s)
            prev = old->ent[i].sub;
    uint32_t n_ent = n_old - (prev != NULL) + (sb != NULL);
    if (rc != 0 || (n_ent == 0 && old == NULL)) {
        if (old != NULL)
            publish(c, NULL, NULL, true);
        return rc;
    }
    if (n_ent == 0) {
        publish(c, NULL, NULL, true);
        return 0;
    }
    struct kfcache_view *v = malloc(sizeof(*v) + (size_t)n_ent * sizeof(v->ent[0]));
    if (v == NULL) {
        sub_free(sb);
        publish(c, NULL, NULL, true);
        return ROOST_ENOMEM;
    }
    v->tag = c->tag;
    v->retire = NULL;
    v->retire_all = false;
    v->n = 0;
    v->n_ent = 0;
    bool placed = sb == NULL;
    for (uint32_t i = 0; i < n_old; i++) {
        if (!placed && old->ent[i].stream > s) {
            v->ent[v->n_ent++] = (struct kfsub_ent){.stream = s, .sub = sb};
            v->n += sb->n;
            placed = true;
        }
        if (old->ent[i].stream == s)
            continue;
        v->ent[v->n_ent++] = old->ent[i];
        v->n += old->ent[i].sub->n;
    }
    if (!placed) {
        v->ent[v->n_ent++] = (struct kfsub_ent){.stream = s, .sub = sb};
        v->n += sb->n;
    }
    publish(c, v, prev, false);
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
    if (c->cfg.sender_cap_bytes == 0)
        c->cfg.sender_cap_bytes = KFCACHE_DEFAULT_SENDER_BYTES;
    if (c->cfg.sender_cap_pkts == 0)
        c->cfg.sender_cap_pkts = KFCACHE_DEFAULT_SENDER_PKTS;
    c->slot = slot;
    *out = c;
    return 0;
}

void kfcache_clear(struct kfcache *c)
{
    for (unsigned s = 0; s < STREAMS; s++) {
        struct stream *st = c->st[s];
        if (st == NULL)
            continue;
        pkts_free(c, &st->build);
        pkts_free(c, &st->kf);
        pkts_free(c, &st->pf);
        free(st);
        c->st[s] = NULL;
    }
    if (c->cur != NULL)
        publish(c, NULL, NULL, true);
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

void kfcache_detach(struct kfcache *c)
{
    if (c->cur != NULL)
        publish(c, NULL, NULL, true); /* the streams keep their own references */
    c->slot = NULL;
}

int kfcache_attach(struct kfcache *c, struct kfcache_view *_Atomic *slot,
                   const struct kfcache_tag *tag)
{
    c->slot = slot;
    c->tag = *tag;
    int rc = 0;
    for (unsigned s = 0; s < STREAMS && rc == 0; s++)
        if (c->st[s] != NULL)
            rc = republish(c, s); /* one stream at a time: the others shared */
    return rc;
}

static void build_reset(struct kfcache *c, struct stream *st)
{
    pkts_release(c, &st->build);
    st->building = false;
    st->over = false;
}

static int feed_keyframe(struct kfcache *c, unsigned s, struct stream *st, struct buf *b,
                         uint8_t flags)
{
    if (st->building && (flags & MEDIA_F_START))
        build_reset(c, st); /* the previous keyframe never ended */
    st->building = true;
    if (!st->over && !sender_fits(c, b) && st->kf.n > st->kf.head) {
        /* The sender's caps are reached: this stream's older keyframe,
         * which the one arriving makes stale, goes first. */
        pkts_release(c, &st->kf);
        republish(c, s);
    }
    if (!st->over) {
        if (st->build.bytes + b->len > c->cfg.cap_bytes || !sender_fits(c, b)) {
            /* Too big to cache (for the stream's cap or what the sender's
             * caps leave): release what is buffered, and drop the stream's
             * older keyframe, which this one makes stale. */
            st->over = true;
            pkts_release(c, &st->build);
            c->stats.over_cap++;
            if (st->kf.n > st->kf.head) {
                pkts_release(c, &st->kf);
                republish(c, s);
            }
        } else if (pkts_push(c, &st->build, b, 0) != 0) {
            build_reset(c, st);
            return ROOST_ENOMEM;
        }
    }
    if (!(flags & MEDIA_F_END))
        return 0;
    if (st->over) {
        build_reset(c, st);
        return 0;
    }
    /* Promote: the buffered frame becomes the stream's keyframe. */
    struct pkts old = st->kf;
    st->kf = st->build;
    st->build = old;
    build_reset(c, st);
    c->stats.promoted++;
    return republish(c, s);
}

static int feed_prefill(struct kfcache *c, unsigned s, struct stream *st, struct buf *b,
                        uint64_t now)
{
    uint64_t win = (uint64_t)c->cfg.prefill_ms * NS_PER_MS;
    while (st->pf.n > st->pf.head &&
           (st->pf.v[st->pf.head].t + win <= now || st->pf.bytes + b->len > c->cfg.cap_bytes ||
            !sender_fits(c, b)))
        pkts_pop_front(c, &st->pf);
    if (b->len > c->cfg.cap_bytes || !sender_fits(c, b))
        return republish(c, s); /* the other streams hold the sender's caps */
    if (pkts_push(c, &st->pf, b, now) != 0) {
        republish(c, s);
        return ROOST_ENOMEM;
    }
    c->stats.prefill_in++;
    return republish(c, s);
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
        rc = feed_keyframe(c, stream, st, b, flags);
    } else if (st->building) {
        /* A non-keyframe packet before END: the keyframe is incomplete. */
        build_reset(c, st);
        c->stats.discarded++;
        ev |= KFCACHE_EV_DISCARDED;
    }
    if (audio_pf) {
        int rc2 = feed_prefill(c, stream, st, b, now);
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
    out->mem = c->mem;
    out->pkts = c->npk;
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
    /* Keyframes of every stream, then prefill of every stream. */
    for (uint32_t e = 0; e < v->n_ent; e++) {
        const struct kfsub *sb = v->ent[e].sub;
        if (i < sb->n_kf)
            return sb->b[i];
        i -= sb->n_kf;
    }
    for (uint32_t e = 0; e < v->n_ent; e++) {
        const struct kfsub *sb = v->ent[e].sub;
        if (i < sb->n - sb->n_kf)
            return sb->b[sb->n_kf + i];
        i -= sb->n - sb->n_kf;
    }
    return NULL; /* i >= count: cannot happen */
}

uint32_t kfcache_view_walk(const struct kfcache_view *v, uint32_t max,
                           int (*fn)(struct buf *b, void *arg), void *arg)
{
    RCUPTR_ASSERT_READER();
    uint32_t done = 0;
    if (v == NULL)
        return 0;
    for (int phase = 0; phase < 2; phase++)
        for (uint32_t e = 0; e < v->n_ent; e++) {
            const struct kfsub *sb = v->ent[e].sub;
            uint32_t from = phase == 0 ? 0 : sb->n_kf, to = phase == 0 ? sb->n_kf : sb->n;
            for (uint32_t i = from; i < to; i++) {
                if (done == max)
                    return done;
                fn(sb->b[i], arg);
                done++;
            }
        }
    return done;
}
