/* Rooms, the fan-out hot path: a member's datagram becomes one counted
 * buffer written once; this worker delivers it to its own members of the
 * room and sends one FANOUT to each other worker that has members, which
 * delivers to its slice. No allocation per recipient, no locks, no
 * read-modify-write: one read-side section per datagram. */
#include <stdatomic.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/worker.h"
#include "proto/media.h"
#include "room/kfcache.h"
#include "room/room_int.h"
#include "room/snapshot.h"

/* Delivers b to this worker's members in `e[0..n)` except the sender. */
/* version: the snapshot the sender fanned out by (FANOUT), or UINT64_MAX
 * for the sender's own worker (the snapshot read here, now). */
static void deliver_slice(struct room_shard *s, const struct room *r,
                          const struct snapshot_member *e, uint32_t n, uint32_t sender,
                          struct buf *b, uint64_t version)
{
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].participant_id == sender || !(e[i].flags & PERM_SUBSCRIBE))
            continue;
        struct room_member *mm = room_member_resolve(s, e[i].slot, e[i].gen);
        if (mm == NULL) {
            ROOM_STAT_INC(s, stale_handles);
            continue;
        }
        if (mm->state != MEMBER_JOINED) /* media starts after JOINED */
            continue;
        /* A member that moved here with its room (move.c): a FANOUT sent
         * by a snapshot that still had it on its old worker went there
         * too (delivered, or skipped as stale): never twice. */
        if (version != UINT64_MAX && (mm->rebinding || mm->moved_version > version)) {
            /* Its re-bind's answer may still be on the way: the room's
             * log of re-binds says whether `version` had it here. */
            uint64_t v = mm->rebinding ? move_rebound_version(r, mm->pid) : mm->moved_version;
            if (v == 0 || v > version) {
                ROOM_STAT_INC(s, media_skipped_moving);
                continue;
            }
        }
        if (s->ops->media(mm->ep, b, 0, b->len, s->arg) == 0)
            ROOM_STAT_INC(s, media_out);
        else
            ROOM_STAT_INC(s, media_out_failed);
    }
}

int room_publish(struct room_member *m, const uint8_t *dgram, size_t len)
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
    if (len > ROOM_MAX_DATAGRAM) { /* WELCOME.max_datagram */
        ROOM_STAT_INC(s, media_dropped_malformed);
        return ROOST_EMALFORMED;
    }
    struct buf *b = buf_new((uint32_t)len + MEDIA_SENDER_LEN);
    if (b == NULL) {
        ROOM_STAT_INC(s, media_dropped_nomem);
        return ROOST_ENOMEM;
    }
    /* Fan-out latency metric: from the kernel's receive time when the
     * receive path gave it (worker_ingress), so that time spent waiting in
     * the socket (turn cadence, busy worker) counts. */
    uint64_t in = worker_ingress(s->w);
    b->stamp = in != 0 ? (uint32_t)(in >> BUF_STAMP_SHIFT) | 1u : buf_stamp_now();
    /* The frame is written once; every delivery shares it. */
    int n = media_relay_datagram(dgram, len, m->pid, b->data, b->cap);
    if (n < 0) {
        buf_unref(b);
        ROOM_STAT_INC(s, media_dropped_malformed);
        return ROOST_EMALFORMED;
    }
    b->len = (uint32_t)n;
    return fanout_publish_buf(s, m, b);
}

int fanout_publish_buf(struct room_shard *s, struct room_member *m, struct buf *b)
{
    ROOM_STAT_INC(s, media_in);
    struct kfcache *kc = room_member_cache(s, m);
    if (kc != NULL) {
        int ev = kfcache_feed(kc, b, worker_now(s->w));
        if (ev > 0) {
            if (ev & KFCACHE_EV_PROMOTED) {
                ROOM_STAT_INC(s, kf_cached);
                /* Pairs with the fence in replay_caches: the new view is
                 * visible to a joiner that our snapshot read below misses. */
                atomic_thread_fence(memory_order_seq_cst);
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
            deliver_slice(s, r, e, cnt, m->pid, b, UINT64_MAX);
            continue;
        }
        /* A worker whose only member is the sender gets nothing. */
        if (cnt == 1 && e[0].participant_id == m->pid)
            continue;
        struct fanout_msg fm = {
            .owner = m->owner,
            .room_slot = m->room_slot,
            .room_gen = m->room_gen,
            .sender = m->pid,
            .version = snapshot_version(snap),
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

void fanout_on_msg(struct room_shard *s, const struct fanout_msg *fm)
{
    rcu_read_lock();
    struct room *r = room_resolve(s->sh, fm->owner, fm->room_slot, fm->room_gen);
    if (r != NULL) {
        uint32_t n;
        const struct snapshot *snap = rcu_dereference(r->snap);
        const struct snapshot_member *e = snapshot_worker_members(snap, s->id, &n);
        deliver_slice(s, r, e, n, fm->sender, fm->b, fm->version);
        /* Newer than the sender's: members of ours in its snapshot may
         * have moved away meanwhile (move.c); their copy is lost, counted. */
        uint64_t now = snapshot_version(snap);
        if (fm->version < now)
            move_count_lost(s, r, fm->sender, fm->version, now);
    }
    rcu_read_unlock();
    buf_unref(fm->b);
}
