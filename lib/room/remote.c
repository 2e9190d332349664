/* Rooms, members of other relays (room.h, "members of other relays"): a
 * remote participant's member with its own id, and the fan-out of a frame
 * that another relay already relayed. The fan-out loop is fanout.c's,
 * repeated here so that the hot path there stays as it is. */
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

static void deliver_slice(struct room_shard *s, const struct snapshot_member *e, uint32_t n,
                          uint32_t sender, struct buf *b)
{
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].participant_id == sender || !(e[i].flags & PERM_SUBSCRIBE))
            continue;
        struct room_member *mm = room_member_resolve(s, e[i].slot, e[i].gen);
        if (mm == NULL) {
            ROOM_STAT_INC(s, stale_handles);
            continue;
        }
        if (mm->state != MEMBER_JOINED)
            continue;
        if (s->ops->media(mm->ep, b, 0, b->len, s->arg) == 0)
            ROOM_STAT_INC(s, media_out);
        else
            ROOM_STAT_INC(s, media_out_failed);
    }
}

int room_publish_relayed(struct room_member *m, const uint8_t *dgram, size_t len)
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
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL) {
        ROOM_STAT_INC(s, media_dropped_nomem);
        return ROOST_ENOMEM;
    }
    b->stamp = buf_stamp_now();
    memcpy(b->data, dgram, len);
    b->len = (uint32_t)len;
    ROOM_STAT_INC(s, media_in);
    struct kfcache *kc = room_member_cache(s, m);
    if (kc != NULL) {
        int ev = kfcache_feed(kc, b, worker_now(s->w));
        if (ev > 0) {
            if (ev & KFCACHE_EV_PROMOTED) {
                ROOM_STAT_INC(s, kf_cached);
                atomic_thread_fence(memory_order_seq_cst); /* as in room_publish */
            }
            if (ev & KFCACHE_EV_DISCARDED)
                ROOM_STAT_INC(s, kf_discarded);
            if (ev & KFCACHE_EV_OVER_CAP)
                ROOM_STAT_INC(s, kf_over_cap);
        }
    }
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, m->owner, m->room_slot, m->room_gen);
    const struct snapshot *snap = r ? rcu_dereference(r->snap) : NULL;
    unsigned ng = snapshot_group_count(snap);
    for (unsigned g = 0; g < ng; g++) {
        unsigned wid;
        uint32_t cnt;
        const struct snapshot_member *e = snapshot_group(snap, g, &wid, &cnt);
        if (wid == s->id) {
            deliver_slice(s, e, cnt, m->pid, b);
            continue;
        }
        if (cnt == 1 && e[0].participant_id == m->pid)
            continue;
        struct fanout_msg fm = {
            .owner = m->owner,
            .room_slot = m->room_slot,
            .room_gen = m->room_gen,
            .sender = m->pid,
            .b = buf_ref(b),
        };
        struct worker_msg wm;
        room_msg_put(&wm, ROOM_MSG_FANOUT, &fm, sizeof(fm));
        if (worker_send(s->w, wid, &wm, WORKER_MSG_MEDIA) == 0) {
            ROOM_STAT_INC(s, fanout_sent);
        } else {
            buf_unref(fm.b);
            ROOM_STAT_INC(s, fanout_ring_drops);
        }
    }
    rcu_read_unlock();
    buf_unref(b);
    return 0;
}
