/* Rooms, members of other relays (room.h, "members of other relays"): a
 * remote participant's member with its own id, and the fan-out of a frame
 * that another relay already relayed (its relay header is kept; the
 * fan-out itself is fanout.c's, fanout_publish_buf). */
#include <stdatomic.h>
#include <urcu-qsbr.h>

#include "core/be.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/worker.h"
#include "proto/media.h"
#include "room/kfcache.h"
#include "room/room_int.h"
#include "room/snapshot.h"

int room_member_new_remote(struct room_shard *s, void *ep, uint32_t pid, struct room_member **out)
{
    if (pid == 0)
        return ROOST_EINVAL;
    int rc = room_member_new(s, ep, out);
    if (rc == 0) {
        (*out)->pid = pid; /* the id room_member_new took is simply not used */
        (*out)->remote = true;
    }
    return rc;
}

int room_member_far_quality(struct room_member *m, uint32_t pid, uint16_t loss, uint32_t rtt_us)
{
    if (!(m->perms & ROOM_PERM_HIDDEN) || pid == 0 || loss > 1000)
        return ROOST_EINVAL;
    uint64_t now = worker_now(m->s->w);
    for (uint32_t i = 0; i < m->n_far; i++) {
        if (m->far[i].pid == pid) {
            m->far[i] = (struct room_far){.pid = pid, .loss = loss, .rtt_us = rtt_us, .t = now};
            return 0;
        }
    }
    /* Bounded: a room has at most max_members receivers; stale entries go
     * at the quality tick (quality.c). */
    if (m->n_far >= m->s->sh->lim.max_members)
        return ROOST_ENOMEM;
    if (room_grow((void **)&m->far, &m->cap_far, m->n_far + 1, sizeof(*m->far)) != 0)
        return ROOST_ENOMEM;
    m->far[m->n_far++] = (struct room_far){.pid = pid, .loss = loss, .rtt_us = rtt_us, .t = now};
    return 0;
}

/* The checks both relayed paths share. */
static int relayed_check(struct room_member *m, const uint8_t *dgram, size_t len)
{
    struct room_shard *s = m->s;
    if (m->state != MEMBER_JOINED) {
        ROOM_STAT_INC(s, media_dropped_not_joined);
        return ROOST_ENOENT;
    }
    if (!(m->perms & PERM_PUBLISH)) {
        ROOM_STAT_INC(s, media_dropped_no_publish);
        return ROOST_EACCES;
    }
    if (len < MEDIA_R2C_HDR_LEN || len > ROOM_MAX_DATAGRAM + MEDIA_SENDER_LEN ||
        be_get32(dgram) != m->pid) {
        ROOM_STAT_INC(s, media_dropped_malformed);
        return ROOST_EMALFORMED;
    }
    return 0;
}

int room_cache_relayed(struct room_member *m, const uint8_t *dgram, size_t len)
{
    struct room_shard *s = m->s;
    int rc = relayed_check(m, dgram, len);
    struct kfcache *kc = rc == 0 ? room_member_cache(s, m) : NULL;
    if (kc == NULL)
        return rc;
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL) {
        ROOM_STAT_INC(s, media_dropped_nomem);
        return ROOST_ENOMEM;
    }
    b->stamp = buf_stamp_now();
    memcpy(b->data, dgram, len);
    b->len = (uint32_t)len;
    /* As fanout_publish_buf's feed, without the fan-out: no reader of the
     * room can miss this keyframe for lack of a fence (nobody is sent it). */
    int ev = kfcache_feed(kc, b, worker_now(s->w));
    if (ev > 0 && (ev & KFCACHE_EV_PROMOTED))
        ROOM_STAT_INC(s, kf_cached);
    if (ev > 0 && (ev & KFCACHE_EV_DISCARDED))
        ROOM_STAT_INC(s, kf_discarded);
    if (ev > 0 && (ev & KFCACHE_EV_OVER_CAP))
        ROOM_STAT_INC(s, kf_over_cap);
    buf_unref(b);
    return 0;
}

int room_publish_relayed(struct room_member *m, const uint8_t *dgram, size_t len)
{
    struct room_shard *s = m->s;
    int rc = relayed_check(m, dgram, len);
    if (rc != 0)
        return rc;
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL) {
        ROOM_STAT_INC(s, media_dropped_nomem);
        return ROOST_ENOMEM;
    }
    b->stamp = buf_stamp_now();
    memcpy(b->data, dgram, len);
    b->len = (uint32_t)len;
    return fanout_publish_buf(s, m, b);
}
