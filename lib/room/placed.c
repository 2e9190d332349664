/* Rooms, the placed owner's side of placement (place.c has the home's):
 * the DROP that tells a room's home its placed (or moved) room is gone,
 * and the DROP of a PLACE join that made no room here; the messages owed
 * to another worker (those DROPs, bounces, UNALIAS) that the runtime
 * refused, kept and sent again; and the census of a room owned here
 * (admin views, relay/cluster.c). Owner worker only. */
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/worker.h"
#include "room/room_int.h"

struct buf *place_drop_buf(struct room_shard *s, const struct join_req *jr)
{
    if (s->in_buf != NULL && (const void *)s->in_buf->data == (const void *)jr)
        return buf_ref(s->in_buf); /* sizeof(struct join_req) > sizeof(struct drop_msg) */
    return buf_new(sizeof(struct drop_msg));
}

/* ---------------------------------------------------------- owed messages
 *
 * A DROP, a bounce or an UNALIAS is owed: the other worker's state waits
 * for it (the home's placement drains; the table worker's slot is held),
 * so it is sent as WORKER_MSG_OWED, which the runtime refuses only when a
 * spill queue cannot grow (ROOST_ENOMEM). A refused one is kept on the
 * shard's owed list and sent again at each turn's end and by the shard's
 * timer (an idle worker has no turn end), and what follows it to the same
 * worker waits behind it, so that the home sees a room's bounces after
 * its DROP. Logged once when kept. */

static uint64_t owed_bit(unsigned to)
{
    return 1ull << to; /* to < WORKER_MAX = 64 */
}

/* The runtime's send (the tests' hook) of an owed message: 0, or its
 * error (nothing went; the caller still holds the references). */
static int owed_send(struct room_shard *s, unsigned to, struct worker_msg *wm)
{
    return s->send_hook != NULL ? s->send_hook(s->send_hook_arg, to, wm)
                                : worker_send(s->w, to, wm, WORKER_MSG_OWED);
}

/* Fills *bp (allocated when NULL) with a DROP and sends it. Returns 0 (the
 * home has it, and `moved` with it: *bp is NULL) or the error (*bp kept,
 * or NULL when it could not be allocated). *bp is cleared before the send:
 * it may be moved->drop, and moved is the home's once sent. */
static int drop_send(struct room_shard *s, unsigned home, const uint8_t *id, size_t len,
                     uint32_t routed, struct buf **bp, struct room *moved)
{
    struct buf *b = *bp != NULL ? *bp : buf_new(sizeof(struct drop_msg));
    if (b == NULL)
        return ROOST_ENOMEM;
    *bp = NULL;
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
    int rc = owed_send(s, home, &wm);
    if (rc != 0)
        *bp = b;
    return rc;
}

/* A moved room that ended here goes back to its table's worker, which
 * unpublishes and frees it (owner_room_unalias). Not room_send: on a
 * failed send its release would free the room while it is still published
 * in that table (readers there may hold it). Returns 0 (r is the table
 * worker's now) or the send's error. */
static int unalias_send(struct room_shard *s, struct room *r)
{
    struct worker_msg wm;
    struct room *rp = r;
    memset(&wm, 0, sizeof(wm));
    wm.type = ROOM_MSG_UNALIAS;
    memcpy(wm.u.bytes, &rp, sizeof(rp));
    return owed_send(s, r->tab, &wm);
}

/* A PLACE's DROP that made no room: what it takes to send it again. */
struct owed_drop {
    struct room_owed o;
    uint16_t home;
    uint8_t len;
    uint32_t routed;
    uint8_t id[ROOM_ID_MAX];
};

struct owed_msg {
    struct room_owed o;
    uint16_t to;
    struct worker_msg wm;
};

/* What a room's end still owes: its DROP (to its home; a room in the
 * home's table goes with it), then its UNALIAS (to its table worker). A
 * part whose worker has older messages owed (*blocked) waits; a refused
 * part blocks its worker. Returns 0 when all went (r is not touched after
 * the last; a room unpublished here already is freed after a grace
 * period), else the refusal's error (ROOST_EAGAIN: waited behind). */
static int owed_end_try(struct room_shard *s, struct room *r, uint64_t *blocked)
{
    int rc = 0;
    if (r->owes_drop) {
        bool carried = r->tab != s->id && r->tab == r->home;
        rc = *blocked & owed_bit(r->home) ? ROOST_EAGAIN
                                          : drop_send(s, r->home, r->id, r->id_len, r->routed_in,
                                                      &r->drop, carried ? r : NULL);
        if (rc != 0) {
            *blocked |= owed_bit(r->home);
            if (r->owes_unalias) /* it frees r: after the DROP */
                *blocked |= owed_bit(r->tab);
            return rc;
        }
        if (carried)
            return 0; /* r is the home's now */
        r->owes_drop = false;
    }
    if (r->owes_unalias) {
        rc = *blocked & owed_bit(r->tab) ? ROOST_EAGAIN : unalias_send(s, r);
        if (rc != 0) {
            *blocked |= owed_bit(r->tab);
            return rc;
        }
        return 0; /* r is its table worker's now */
    }
    /* In this worker's table, unpublished already (owner_room_destroy):
     * readers may still hold it until their next quiescent state. */
    call_rcu(&r->rcu, owner_room_free_rcu);
    return 0;
}

/* Tries o; 0 when it went (o is freed or not ours any more). */
static int owed_try(struct room_shard *s, struct room_owed *o, uint64_t *blocked)
{
    switch (o->kind) {
    case ROOM_OWED_END:
        return owed_end_try(s, caa_container_of(o, struct room, end_owed), blocked);
    case ROOM_OWED_DROP: {
        struct owed_drop *od = caa_container_of(o, struct owed_drop, o);
        struct buf *b = NULL;
        int rc = *blocked & owed_bit(od->home)
                     ? ROOST_EAGAIN
                     : drop_send(s, od->home, od->id, od->len, od->routed, &b, NULL);
        if (rc != 0) {
            buf_unref(b);
            *blocked |= owed_bit(od->home);
            return rc;
        }
        free(od);
        return 0;
    }
    default: {
        struct owed_msg *om = caa_container_of(o, struct owed_msg, o);
        int rc = *blocked & owed_bit(om->to) ? ROOST_EAGAIN : owed_send(s, om->to, &om->wm);
        if (rc != 0) {
            *blocked |= owed_bit(om->to);
            return rc;
        }
        free(om);
        return 0;
    }
    }
}

static void owed_arm(struct room_shard *s, uint64_t now)
{
    int rc = timer_arm(worker_timers(s->w), &s->owed_timer, now + s->owed_ms * 1000000ull);
    if (rc != 0) /* the turn ends still send it again */
        log_error("event=room_owed_timer_failed err=\"%s\"", roost_strerror(rc));
}

/* Keeps o last on the owed list; the timer sends it if no turn ends. */
static void owed_keep(struct room_shard *s, struct room_owed *o, uint16_t type, unsigned to, int rc)
{
    const char *what = type == ROOM_MSG_DROP      ? "drop"
                       : type == ROOM_MSG_UNALIAS ? "unalias"
                                                  : "bounce";
    log_error("event=room_owed_deferred msg=%s to=%u err=\"%s\"", what, to,
              rc == ROOST_EAGAIN ? "behind an owed message" : roost_strerror(rc));
    o->next = NULL;
    if (s->owed == NULL)
        s->owed_tail = &s->owed;
    *s->owed_tail = o;
    s->owed_tail = &o->next;
    if (!timer_armed(&s->owed_timer)) {
        s->owed_ms = ROOM_OWED_RETRY_MS;
        owed_arm(s, worker_now(s->w));
    }
}

void place_owed_retry(struct room_shard *s)
{
    uint64_t blocked = 0;
    struct room_owed **pp = &s->owed;
    while (*pp != NULL) {
        struct room_owed *o = *pp;
        struct room_owed *next = o->next; /* o may be gone once it went */
        if (owed_try(s, o, &blocked) == 0)
            *pp = next;
        else
            pp = &o->next;
    }
    s->owed_tail = pp;
    s->owed_to = blocked; /* the workers of what is still owed */
    if (s->owed == NULL)
        timer_cancel(worker_timers(s->w), &s->owed_timer);
}

static void owed_tick(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    struct room_shard *s = arg;
    place_owed_retry(s);
    if (s->owed == NULL)
        return;
    s->owed_ms = s->owed_ms * 2 < ROOM_OWED_RETRY_MAX_MS ? s->owed_ms * 2 : ROOM_OWED_RETRY_MAX_MS;
    owed_arm(s, now);
}

void place_owed_init(struct room_shard *s)
{
    timer_init(&s->owed_timer, owed_tick, s);
    s->owed_tail = &s->owed;
}

void place_owed_free(struct room_shard *s)
{
    timer_cancel(worker_timers(s->w), &s->owed_timer);
    while (s->owed != NULL) {
        struct room_owed *o = s->owed;
        s->owed = o->next;
        if (o->kind == ROOM_OWED_END) {
            struct room *r = caa_container_of(o, struct room, end_owed);
            struct room **slot = &s->sh->tables[r->tab].slots[r->slot];
            if (*slot == r) /* else unpublished already, its slot reused */
                rcu_assign_pointer(*slot, NULL);
            owner_room_free(r);
        } else if (o->kind == ROOM_OWED_DROP) {
            free(caa_container_of(o, struct owed_drop, o));
        } else {
            struct owed_msg *om = caa_container_of(o, struct owed_msg, o);
            room_msg_release(&om->wm);
            free(om);
        }
    }
    s->owed_tail = &s->owed;
    s->owed_to = 0;
}

void place_room_end(struct room_shard *s, struct room *r)
{
    uint64_t blocked = s->owed_to;
    int rc = owed_end_try(s, r, &blocked);
    if (rc == 0)
        return; /* r is not ours any more, or freed after a grace period */
    s->owed_to = blocked;
    /* Still published in the home's or the table worker's table (readers
     * there may hold it), or holding the DROP the home waits for: kept
     * until it went, never freed here meanwhile. */
    r->end_owed.kind = ROOM_OWED_END;
    owed_keep(s, &r->end_owed, r->owes_drop ? ROOM_MSG_DROP : ROOM_MSG_UNALIAS,
              r->owes_drop ? r->home : r->tab, rc);
}

int place_send_owed(struct room_shard *s, unsigned to, struct worker_msg *wm)
{
    int rc = s->owed_to & owed_bit(to) ? ROOST_EAGAIN : owed_send(s, to, wm);
    if (rc == 0)
        return 0;
    struct owed_msg *om = malloc(sizeof(*om));
    if (om == NULL) {
        room_msg_release(wm); /* the caller logs it */
        return ROOST_ENOMEM;
    }
    s->owed_to |= owed_bit(to);
    om->o.kind = ROOM_OWED_MSG;
    om->to = (uint16_t)to;
    om->wm = *wm;
    owed_keep(s, &om->o, wm->type, to, rc);
    return 0;
}

/* The DROP of a PLACE that made no room, to its home (place.c
 * owner_on_drop), in b (place_drop_buf; NULL: allocated here). Kept when
 * it cannot go (the id and count: no room holds them). */
static void place_send_drop(struct room_shard *s, unsigned home, const uint8_t *id, size_t len,
                            uint32_t routed, struct buf *b)
{
    int rc =
        s->owed_to & owed_bit(home) ? ROOST_EAGAIN : drop_send(s, home, id, len, routed, &b, NULL);
    if (rc == 0)
        return;
    buf_unref(b); /* made again when it goes */
    struct owed_drop *od = malloc(sizeof(*od));
    if (od == NULL) {
        /* The home keeps that room's placement. */
        log_error("event=room_drop_lost home=%u err=\"%s\"", home, roost_strerror(rc));
        return;
    }
    s->owed_to |= owed_bit(home);
    od->o.kind = ROOM_OWED_DROP;
    od->home = (uint16_t)home;
    od->len = (uint8_t)len;
    od->routed = routed;
    memcpy(od->id, id, len);
    owed_keep(s, &od->o, ROOM_MSG_DROP, home, rc);
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
                    place_drop_buf(s, jr));
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
