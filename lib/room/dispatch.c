/* Rooms, the message switch: this module's ring messages to the side that
 * handles them, registered with the runtime per shard (worker_handle). */
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/worker.h"
#include "room/room_int.h"

/* Every type of ROOM_MSG_FIRST..LAST is listed; the runtime only hands us
 * that range, so an unknown type is a message this build does not know. */
static void dispatch_msg(struct worker *w, const struct worker_msg *wm, void *arg)
{
    (void)w;
    struct room_shard *s = arg;
    struct buf *b;
    switch (wm->type) {
    case ROOM_MSG_JOIN:
        memcpy(&b, wm->u.bytes, sizeof(b));
        s->in_buf = b;
        owner_on_join(s, (const struct join_req *)b->data);
        s->in_buf = NULL;
        buf_unref(b);
        return;
    case ROOM_MSG_ACK:
        memcpy(&b, wm->u.bytes, sizeof(b));
        member_on_ack(s, b);
        buf_unref(b);
        return;
    case ROOM_MSG_LEAVE:
        memcpy(&b, wm->u.bytes, sizeof(b));
        s->in_buf = b;
        owner_on_leave(s, (const struct leave_req *)b->data);
        s->in_buf = NULL;
        buf_unref(b);
        return;
    case ROOM_MSG_FANOUT: {
        struct fanout_msg fm;
        memcpy(&fm, wm->u.bytes, sizeof(fm));
        fanout_on_msg(s, &fm);
        return;
    }
    case ROOM_MSG_EVENTS: {
        struct events_msg em;
        memcpy(&em, wm->u.bytes, sizeof(em));
        member_on_events(s, &em);
        return;
    }
    case ROOM_MSG_REPLACED: {
        struct replaced_msg rm;
        memcpy(&rm, wm->u.bytes, sizeof(rm));
        member_on_replaced(s, &rm);
        return;
    }
    case ROOM_MSG_KFREQ: {
        struct kfreq_msg km;
        memcpy(&km, wm->u.bytes, sizeof(km));
        member_on_kfreq(s, &km);
        return;
    }
    case ROOM_MSG_QREPORT:
        memcpy(&b, wm->u.bytes, sizeof(b));
        room_quality_on_report(s, b);
        buf_unref(b);
        return;
    case ROOM_MSG_QSUM:
        memcpy(&b, wm->u.bytes, sizeof(b));
        room_quality_on_summary(s, b);
        buf_unref(b);
        return;
    case ROOM_MSG_QFAR:
        memcpy(&b, wm->u.bytes, sizeof(b));
        room_quality_on_far(s, b);
        buf_unref(b);
        return;
    case ROOM_MSG_DROP:
        memcpy(&b, wm->u.bytes, sizeof(b));
        owner_on_drop(s, (const struct drop_msg *)b->data);
        buf_unref(b);
        return;
    case ROOM_MSG_MOVE: {
        struct room *r;
        memcpy(&r, wm->u.bytes, sizeof(r));
        move_on_arrive(s, r);
        return;
    }
    case ROOM_MSG_REHOME: {
        struct rehome_msg rm;
        memcpy(&rm, wm->u.bytes, sizeof(rm));
        move_on_rehome(s, &rm);
        return;
    }
    case ROOM_MSG_MOVE_REQ: {
        struct move_req_msg mr;
        memcpy(&mr, wm->u.bytes, sizeof(mr));
        move_on_request(s, &mr);
        return;
    }
    case ROOM_MSG_ARRIVED: {
        struct arrived_msg am;
        memcpy(&am, wm->u.bytes, sizeof(am));
        place_on_arrived(s, &am);
        return;
    }
    case ROOM_MSG_UNALIAS: {
        struct room *r;
        memcpy(&r, wm->u.bytes, sizeof(r));
        owner_room_unalias(s, r);
        return;
    }
    default:
        log_warn("event=unknown_room_msg type=0x%x", wm->type);
        return;
    }
}

void room_dispatch_one(struct room_shard *s, const struct worker_msg *wm)
{
    dispatch_msg(s->w, wm, s);
}

static void dispatch_discard(const struct worker_msg *wm)
{
    room_msg_release(wm);
}

int room_dispatch_register(struct room_shard *s)
{
    struct worker_handler h = {.first = ROOM_MSG_FIRST,
                               .last = ROOM_MSG_LAST,
                               .on_msg = dispatch_msg,
                               .discard = dispatch_discard};
    return worker_handle(s->w, &h, s);
}
