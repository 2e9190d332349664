/* Trunks: media arriving on a trunk, and keyframe-cache replays
 * (trunk_int.h; docs/CLUSTER.md §2.5, PROTOCOL.md §12.3). */
#include "relay/trunk_int.h"

static struct seen_ent *seen_find(struct troom *tr, uint32_t pid, uint8_t stream)
{
    for (uint32_t i = 0; i < tr->n_seen; i++)
        if (tr->seen[i].pid == pid && tr->seen[i].stream == stream)
            return &tr->seen[i];
    return NULL;
}

static void seen_note(struct troom *tr, const struct media_hdr *h)
{
    struct seen_ent *e = seen_find(tr, h->participant_id, h->stream_id);
    if (e == NULL) {
        if (tr->n_seen >= SEEN_MAX)
            return; /* bounded: a replay for it is then fanned out again */
        if (tr->n_seen == tr->cap_seen) {
            uint32_t nc = tr->cap_seen ? tr->cap_seen * 2 : 8;
            struct seen_ent *n = realloc(tr->seen, nc * sizeof(*n));
            if (n == NULL)
                return;
            tr->seen = n;
            tr->cap_seen = nc;
        }
        e = &tr->seen[tr->n_seen++];
        *e = (struct seen_ent){.pid = h->participant_id, .stream = h->stream_id, .seq = h->seq};
        return;
    }
    if ((int32_t)(h->seq - e->seq) > 0)
        e->seq = h->seq;
}

/* Fans a datagram out to this relay's members, or, for a replayed one they
 * already had live (sequence at or below the newest fanned out for its
 * stream), only feeds the ghost's keyframe cache: after a trunk loss or a
 * re-subscription the home replays its cache down the new subscription,
 * and the members that stayed must not get those packets twice. */
static void media_apply(struct troom *tr, struct tep *g, const uint8_t *d, size_t len, bool replay)
{
    struct trunk_set *set = tr->t->set;
    struct media_hdr h;
    if (media_r2c_decode(d, len, &h) < 0) {
        TSTAT_INC(set, unknown_drops);
        return;
    }
    struct seen_ent *e = replay ? seen_find(tr, h.participant_id, h.stream_id) : NULL;
    if (e != NULL && (int32_t)(h.seq - e->seq) <= 0) {
        if (room_cache_relayed(g->m, d, len) == 0)
            TSTAT_INC(set, replay_dups);
        else
            TSTAT_INC(set, unknown_drops);
        return;
    }
    if (room_publish_relayed(g->m, d, len) != 0) {
        TSTAT_INC(set, unknown_drops);
        return;
    }
    seen_note(tr, &h);
    TSTAT_INC(set, frames_in);
}

void trunk_media_in(struct troom *tr, struct tep *g, const uint8_t *d, size_t len, bool replay)
{
    struct trunk_set *set = tr->t->set;
    if (replay)
        TSTAT_INC(set, replay_in);
    if (!replay || room_member_joined(g->m)) {
        media_apply(tr, g, d, len, replay);
        return;
    }
    /* The home replays right after announcing the sender, usually before
     * the ghost's join completed here: kept until its JOINED (tr_joined). */
    struct held_pkt *p = g->n_held < HELD_MAX ? malloc(sizeof(*p) + len) : NULL;
    if (p == NULL) {
        TSTAT_INC(set, unknown_drops);
        return;
    }
    p->next = NULL;
    p->len = (uint32_t)len;
    memcpy(p->d, d, len);
    if (g->held == NULL)
        g->held_tail = &g->held;
    *g->held_tail = p;
    g->held_tail = &p->next;
    g->n_held++;
}

void trunk_held_free(struct tep *g)
{
    while (g->held != NULL) {
        struct held_pkt *p = g->held;
        g->held = p->next;
        free(p);
    }
    g->n_held = 0;
}

/* The ghost's JOINED: its held replay goes out in arrival order, before any
 * live datagram (those were dropped until now). */
void trunk_held_flush(struct tep *g)
{
    while (g->held != NULL) {
        struct held_pkt *p = g->held;
        g->held = p->next;
        g->n_held--;
        media_apply(g->tr, g, p->d, p->len, true);
        free(p);
    }
}
