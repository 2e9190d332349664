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
    return fanout_publish_buf(s, m, b);
}
