/* Rooms, the owner side at the end of a loop turn: each dirty room's
 * batch of joins and leaves becomes its next snapshot, the joiners get
 * their answers (JOINED with the member list) and the members one
 * PARTICIPANT_EVENTS; an emptied room ends. owner.c applies the batch.
 * Owner worker only. */
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/worker.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "room/room_int.h"
#include "room/snapshot.h"

static uint8_t info_member_flags(const struct room_info *in)
{
    return (in->perms & PERM_PUBLISH) ? MSG_MEMBER_PUBLISHER : 0;
}

static const struct room_info *room_find_info(const struct room *r, uint32_t pid)
{
    for (uint32_t i = 0; i < r->n_infos; i++)
        if (r->infos[i].pid == pid)
            return &r->infos[i];
    return NULL;
}

/* JOINED for one joiner: the other members, the first JOINED_MAX_MEMBERS in
 * JOINED (MORE set when there are more), the rest as JOIN events. */
static int build_joined(struct room_shard *s, const struct room *r, const struct room_info *j,
                        struct buf **frames)
{
    struct msg *m = s->scratch;
    memset(m, 0, sizeof(*m));
    m->type = MSG_JOINED;
    struct msg_joined *jd = &m->u.joined;
    jd->room_id.ptr = r->id;
    jd->room_id.len = r->id_len;
    jd->permissions = (uint8_t)(j->perms & PERM_ALL); /* PERM_* are the wire bits */
    jd->member_total = 0;
    for (uint32_t k = 0; k < r->n_infos; k++) /* hidden: trunk subscriptions (lib/room/remote.c) */
        jd->member_total += r->infos[k].pid != j->pid && !(r->infos[k].perms & ROOM_PERM_HIDDEN);
    uint32_t i = 0;
    for (; i < r->n_infos && jd->n_members < JOINED_MAX_MEMBERS; i++) {
        const struct room_info *o = &r->infos[i];
        if (o->pid == j->pid || (o->perms & ROOM_PERM_HIDDEN))
            continue;
        struct msg_member *mm = &jd->members[jd->n_members++];
        mm->participant_id = o->pid;
        mm->flags = info_member_flags(o);
        mm->display_name.ptr = o->name;
        mm->display_name.len = o->name_len;
    }
    bool more = false;
    for (uint32_t k = i; k < r->n_infos; k++)
        if (r->infos[k].pid != j->pid && !(r->infos[k].perms & ROOM_PERM_HIDDEN))
            more = true;
    if (more)
        jd->flags |= MSG_JOINED_MORE;
    int rc = owner_frame_into(frames, m);
    if (rc < 0 || !more)
        return rc < 0 ? rc : 0;
    while (i < r->n_infos) {
        memset(m, 0, sizeof(m->type) + sizeof(m->u.events));
        m->type = MSG_PARTICIPANT_EVENTS;
        struct msg_events *ev = &m->u.events;
        for (; i < r->n_infos && ev->n_events < EVENTS_MAX; i++) {
            const struct room_info *o = &r->infos[i];
            if (o->pid == j->pid || (o->perms & ROOM_PERM_HIDDEN))
                continue;
            struct msg_event *e = &ev->events[ev->n_events++];
            e->kind = MSG_EV_JOIN;
            e->participant_id = o->pid;
            e->flags = info_member_flags(o);
            e->display_name.ptr = o->name;
            e->display_name.len = o->name_len;
        }
        bool last = true;
        for (uint32_t k = i; k < r->n_infos; k++)
            if (r->infos[k].pid != j->pid && !(r->infos[k].perms & ROOM_PERM_HIDDEN))
                last = false;
        if (last)
            ev->flags |= MSG_EVENTS_SYNC_DONE;
        if (ev->n_events && (rc = owner_frame_into(frames, m)) < 0)
            return rc;
    }
    return 0;
}

/* Whether the members saw r->events[i]'s participant (a LEAVE) as present
 * just before it: its latest earlier event this turn was a JOIN that went
 * out (the participant is still in: build_events sends JOINs of present
 * members only), or it had none (present before this turn). A JOIN and a
 * LEAVE in one turn thus send nothing, never a LEAVE alone (issue 18: a
 * remote member's JOIN and LEAVE arriving together over a trunk). */
static bool leave_visible(const struct room *r, uint32_t i)
{
    uint32_t pid = r->events[i].pid;
    while (i-- > 0) {
        if (r->events[i].pid != pid)
            continue;
        if (r->events[i].kind != MSG_EV_JOIN)
            return false; /* left already */
        const struct room_info *in = room_find_info(r, pid);
        return in != NULL && !(in->perms & ROOM_PERM_HIDDEN);
    }
    return true;
}

/* This turn's presence deltas as framed PARTICIPANT_EVENTS, coalesced: a
 * participant that joined and left in the same turn does not appear at all
 * (PROTOCOL.md §4.7 allows dropping the pair). */
static int build_events(struct room_shard *s, const struct room *r, struct buf **frames)
{
    struct msg *m = s->scratch;
    bool joins = false; /* without a JOIN this turn every LEAVE is visible */
    for (uint32_t k = 0; k < r->n_events && !joins; k++)
        joins = r->events[k].kind == MSG_EV_JOIN;
    uint32_t i = 0;
    while (i < r->n_events) {
        memset(m, 0, sizeof(m->type) + sizeof(m->u.events));
        m->type = MSG_PARTICIPANT_EVENTS;
        struct msg_events *ev = &m->u.events;
        for (; i < r->n_events && ev->n_events < EVENTS_MAX; i++) {
            const struct room_event *re = &r->events[i];
            struct msg_event *e = &ev->events[ev->n_events];
            e->participant_id = re->pid;
            if (re->kind == MSG_EV_JOIN) {
                const struct room_info *in = room_find_info(r, re->pid);
                if (in == NULL || (in->perms & ROOM_PERM_HIDDEN))
                    continue; /* left again this turn (its LEAVE follows), or hidden */
                e->kind = MSG_EV_JOIN;
                e->flags = info_member_flags(in);
                e->display_name.ptr = in->name;
                e->display_name.len = in->name_len;
            } else {
                if (joins && !leave_visible(r, i))
                    continue; /* joined this turn and nobody saw it */
                e->kind = MSG_EV_LEAVE;
            }
            ev->n_events++;
        }
        if (ev->n_events) {
            int rc = owner_frame_into(frames, m);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void room_flush_one(struct room_shard *s, struct room *r)
{
    struct snapshot *prev = r->snap;
    struct snapshot *next = NULL;
    int rc = snapshot_build(prev, r->changes, r->n_changes, s->sh->n_workers,
                            s->sh->lim.max_members, &next);
    if (rc != 0) {
        /* Keep the batch; try again next turn. */
        log_error("event=snapshot_build_failed room_slot=%u err=\"%s\"", r->slot,
                  roost_strerror(rc));
        owner_mark_dirty(s, r);
        return;
    }
    if (r->moves > 0)
        move_rebound_log(r, snapshot_version(next)); /* before it is published */
    /* Pairs with rcu_dereference(r->snap) on the fan-out path. */
    rcu_assign_pointer(r->snap, next);
    if (prev != NULL)
        call_rcu(snapshot_rcu_head(prev), snapshot_free_rcu);
    ROOM_STAT_INC(s, snapshots);
    uint64_t version = snapshot_version(next);
    r->n_changes = 0;

    /* Answers to this turn's joiners. */
    for (uint32_t k = 0; k < r->n_acks; k++) {
        const struct room_info *j = &r->acks[k];
        struct join_req jr = {
            .pid = j->pid,
            .slot = j->slot,
            .gen = j->gen,
            .join_seq = j->join_seq,
            .worker = j->worker,
        };
        if (j->quiet) { /* a re-bind (move.c): no JOINED, the events it missed */
            /* Re-bound on the worker the room left since: it follows. */
            uint32_t code = j->worker != s->id && j->worker == r->from && r->from != r->own
                                ? ROOM_REBIND_FOLLOW
                                : ROOM_REBIND_OK;
            owner_send_ack(s, &jr, code, r, version, move_events_since(r, j->seen), false);
            continue;
        }
        struct buf *frames = NULL;
        if (build_joined(s, r, j, &frames) != 0) {
            buf_unref(frames);
            frames = NULL;
            log_error("event=joined_encode_failed pid=%u", j->pid);
        }
        /* Carried here by a move that hands its member over: it follows. */
        owner_send_ack(s, &jr, 0, r, version, frames, j->follow && j->worker != s->id);
    }
    r->n_acks = 0;

    /* One PARTICIPANT_EVENTS per turn, fanned out like media: one message
     * per worker that has members. */
    if (r->n_events && snapshot_count(next) > 0) {
        struct buf *frames = NULL;
        if (build_events(s, r, &frames) == 0 && frames != NULL) {
            unsigned ng = snapshot_group_count(next);
            for (unsigned g = 0; g < ng; g++) {
                unsigned wid;
                uint32_t cnt;
                snapshot_group(next, g, &wid, &cnt);
                struct events_msg em = {
                    .owner = r->tab,
                    .room_slot = r->slot,
                    .room_gen = r->gen,
                    .version = version,
                    .b = buf_ref(frames),
                };
                struct worker_msg wm;
                room_msg_put(&wm, ROOM_MSG_EVENTS, &em, sizeof(em));
                room_send(s, wid, &wm);
            }
            if (r->moves > 0) /* for members re-bound later (move.c) */
                move_events_keep(r, version, frames);
        }
        buf_unref(frames);
    }
    r->n_events = 0;

    if (r->n_infos == 0)
        owner_room_destroy(s, r);
}

void room_shard_flush(struct room_shard *s)
{
    if (s->owed != NULL) /* the timer too: an idle worker has no turn end */
        place_owed_retry(s);
    struct room *r = s->dirty_head;
    s->dirty_head = NULL;
    while (r != NULL) {
        struct room *next = r->dirty_next;
        r->dirty = false;
        r->dirty_next = NULL;
        room_flush_one(s, r);
        r = next;
    }
}
