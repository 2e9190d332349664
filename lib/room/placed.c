/* Rooms, the placed owner's side of placement (place.c has the home's):
 * the DROP that tells a room's home its placed (or moved) room is gone,
 * and the DROP of a PLACE join that made no room here; and the census of
 * a room owned here (admin views, relay/cluster.c). Owner worker only. */
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/worker.h"
#include "room/room_int.h"

struct buf *place_drop_buf(struct room_shard *s, const struct join_req *jr)
{
    if (s->in_buf != NULL && (const void *)s->in_buf->data == (const void *)jr)
        return buf_ref(s->in_buf); /* sizeof(struct join_req) > sizeof(struct drop_msg) */
    return buf_new(sizeof(struct drop_msg));
}

/* The end of a placed room (or a PLACE that made none), to its home
 * (place.c owner_on_drop), in b (place_drop_buf; NULL: allocated here). */
void place_send_drop(struct room_shard *s, unsigned home, const uint8_t *id, size_t len,
                     uint32_t routed, struct buf *b, struct room *moved)
{
    if (b == NULL)
        b = buf_new(sizeof(struct drop_msg));
    if (b == NULL) {
        log_error("event=room_drop_lost home=%u reason=nomem", home);
        return;
    }
    struct drop_msg *dm = (struct drop_msg *)b->data;
    memset(dm, 0, sizeof(*dm));
    dm->from = (uint16_t)s->id;
    dm->room_len = (uint8_t)len;
    dm->routed = routed;
    memcpy(dm->room, id, len);
    dm->moved = moved;
    b->len = sizeof(*dm);
    struct worker_msg wm;
    room_msg_put(&wm, ROOM_MSG_DROP, &b, sizeof(b));
    /* The home waits for it: no spill bound. */
    int rc = s->send_hook != NULL ? s->send_hook(s->send_hook_arg, home, &wm)
                                  : worker_send(s->w, home, &wm, WORKER_MSG_OWED);
    if (rc != 0) {
        /* A moved room stays in the home's table, where readers may still
         * find it: leaked rather than freed under them. */
        log_error("event=room_drop_lost home=%u err=\"%s\"", home, roost_strerror(rc));
        buf_unref(b);
    }
}

/* A PLACE join that made no room here: the home's placement goes. The
 * DROP may go in jr's own buffer: jr is not used after this. */
void place_unused(struct room_shard *s, const struct join_req *jr)
{
    if (jr->route != ROUTE_PLACE)
        return;
    struct drop_msg dm = {.from = (uint16_t)s->id, .room_len = jr->room_len, .routed = 1};
    memcpy(dm.room, jr->room, jr->room_len);
    place_send_drop(s, room_owner_of(s->sh, dm.room, dm.room_len), dm.room, dm.room_len, 1,
                    place_drop_buf(s, jr), NULL);
}

uint32_t room_shard_census(struct room_shard *s, const uint8_t *room, size_t len,
                           uint32_t by_prefix[256], uint32_t *hidden)
{
    memset(by_prefix, 0, 256 * sizeof(*by_prefix));
    *hidden = 0;
    uint64_t h;
    struct room *r = owner_room_find(s, room, len, &h);
    if (r == NULL)
        return 0;
    for (uint32_t i = 0; i < r->n_infos; i++) {
        if (r->infos[i].perms & ROOM_PERM_HIDDEN)
            (*hidden)++;
        else
            by_prefix[r->infos[i].pid >> 24]++;
    }
    return r->n_infos;
}
