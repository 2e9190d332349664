/* Trunks: the keep-alive, sending, rooms on a trunk (hidden and remote
 * members, presence mirror) and the room ops (trunk_int.h). */
#include "relay/trunk_int.h"

/* ---------------------------------------------------------- keep-alive */

static uint64_t lease_ns(const struct trunk_set *set)
{
    return set->sh->cluster != NULL ? (uint64_t)set->rw->r->cfg.cluster.timing.lease_ms * 1000000ull
                                    : 0;
}

/* A trunk with no room traffic would reach the idle timeout (both ends
 * use the relay's) and be closed and re-dialed; a PING every third of it
 * keeps it open. With the directory also a third of the lease: a dialed trunk that
 * received nothing for a lease is taken as dead (REVIEW18 finding 10). */
uint64_t trunk_ka_period(const struct trunk_set *set)
{
    uint64_t idle = set->rw->r->cfg.idle_timeout_ns;
    uint64_t p = (idle ? idle : RELAY_DEFAULT_IDLE_NS) / 3;
    uint64_t l = lease_ns(set) / 3;
    return l > 0 && l < p ? l : p;
}

void trunk_ka_cb(struct timer *tm, uint64_t now, void *arg)
{
    struct trunk_set *set = arg;
    struct trunkmsg ping = {.type = TRUNKMSG_PING};
    uint64_t lease = lease_ns(set);
    for (struct trunk *t = set->trunks; t != NULL; t = t->next) {
        if (t->st == T_UP && t->outbound && lease > 0 && now - t->last_rx > lease) {
            log_warn("event=trunk_dead peer=%s silent_ms=%llu", t->peer_id,
                     (unsigned long long)((now - t->last_rx) / 1000000u));
            quic_conn_close(t->c, QUIC_APP_INTERNAL, "trunk silent for a lease");
            continue; /* on_close: re-dial, and the directory is asked */
        }
        if (t->st == T_UP) {
            trunk_send_msg(t, &ping);
        } else if (t->outbound && lease > 0 && set->sh->cluster != NULL) {
            /* Down: the home may be gone for good; ask the directory again
             * (it claims the room once the old lease expired). */
            for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
                cluster_room_retry(set->sh->cluster, set->rw, tr->room, tr->room_len);
        }
    }
    timer_arm(worker_timers(set->rw->w), tm, now + trunk_ka_period(set));
}

/* ----------------------------------------------------------- sending */

int trunk_send_msg(struct trunk *t, const struct trunkmsg *m)
{
    if (t->c == NULL)
        return ROOST_ECLOSED;
    uint8_t b[TRUNKMSG_BODY_MAX];
    int n = trunkmsg_encode(m, b, sizeof(b));
    if (n < 0) {
        log_error("event=trunk_encode_failed type=%s err=\"%s\"", trunkmsg_type_name(m->type),
                  roost_strerror(n));
        return n;
    }
    return quic_conn_send_control(t->c, b, (size_t)n);
}

void trunk_send_presence(struct troom *tr, uint8_t kind, const struct mirror *mi)
{
    struct trunkmsg m = {.type = TRUNKMSG_PRESENCE,
                         .handle = tr->handle,
                         .gen = tr->gen,
                         .kind = kind,
                         .pid = mi->pid};
    if (kind == TRUNK_PRESENCE_JOIN) {
        m.flags = mi->flags;
        m.name_len = mi->name_len;
        memcpy(m.name, mi->name, mi->name_len);
    }
    if (trunk_send_msg(tr->t, &m) == 0)
        TSTAT_INC(tr->t->set, presence_out);
}

void trunk_send_subscribe(struct troom *tr)
{
    struct trunkmsg m = {
        .type = TRUNKMSG_SUBSCRIBE, .handle = tr->handle, .gen = tr->gen, .room_len = tr->room_len};
    memcpy(m.room, tr->room, tr->room_len);
    trunk_send_msg(tr->t, &m);
}

/* ------------------------------------------------------------- trooms */

/* A subscriber sends up only its own relay's participants (every other one
 * came from the home); the home sends a subscriber everything but that
 * subscriber's own (docs/CLUSTER.md §2.3). Not the ghost list: a remote
 * member that joined and left at once is gone before the hidden member
 * hears of its JOIN, and was then announced back to its own side (issue 18:
 * seen by members on the home as JOIN LEAVE JOIN LEAVE). */
bool trunk_from_peer(const struct troom *tr, uint32_t pid)
{
    uint8_t top = (uint8_t)(pid >> 24);
    return tr->t->outbound ? top != tr->t->set->sh->prefix : top == tr->t->peer_prefix;
}

struct tep *trunk_ghost_find(const struct troom *tr, uint32_t pid)
{
    for (uint32_t i = 0; i < tr->n_ghosts; i++)
        if (tr->ghosts[i]->pid == pid)
            return tr->ghosts[i];
    return NULL;
}

void trunk_ghost_add(struct troom *tr, uint32_t pid, uint8_t flags, const uint8_t *name,
                     size_t name_len)
{
    if (trunk_ghost_find(tr, pid) != NULL)
        return;
    if (tr->n_ghosts == tr->cap_ghosts) {
        uint32_t nc = tr->cap_ghosts ? tr->cap_ghosts * 2 : 8;
        struct tep **g = realloc(tr->ghosts, nc * sizeof(*g));
        if (g == NULL)
            return;
        tr->ghosts = g;
        tr->cap_ghosts = nc;
    }
    struct tep *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return;
    e->kind = TEP_GHOST;
    e->tr = tr;
    e->pid = pid;
    struct room_shard *s = relay_worker_shard(tr->t->set->rw);
    if (room_member_new_remote(s, tep_ptr(e), pid, &e->m) != 0) {
        free(e);
        return;
    }
    int rc = room_join(e->m, (const uint8_t *)tr->room, tr->room_len, NULL, 0, name, name_len,
                       flags & PERM_PUBLISH);
    if (rc != 0) {
        log_error("event=trunk_ghost_join_failed pid=%u err=\"%s\"", pid, roost_strerror(rc));
        room_member_del(e->m);
        free(e);
        return;
    }
    tr->ghosts[tr->n_ghosts++] = e;
}

void trunk_ghost_del_at(struct troom *tr, uint32_t i)
{
    struct tep *e = tr->ghosts[i];
    trunk_held_free(e);
    room_member_del(e->m);
    free(e);
    tr->ghosts[i] = tr->ghosts[--tr->n_ghosts];
}

void trunk_ghosts_clear(struct troom *tr)
{
    while (tr->n_ghosts > 0)
        trunk_ghost_del_at(tr, tr->n_ghosts - 1);
}

struct troom *trunk_troom_by_handle(struct trunk *t, uint32_t handle)
{
    for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
        if (tr->handle == handle)
            return tr;
    return NULL;
}

struct troom *trunk_troom_by_room(struct trunk *t, const char *room, size_t len)
{
    for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
        if (tr->room_len == len && memcmp(tr->room, room, len) == 0)
            return tr;
    return NULL;
}

static void resub_cb(struct timer *tm, uint64_t now, void *arg)
{
    (void)tm;
    (void)now;
    struct troom *tr = arg;
    if (!tr->active && tr->t->st == T_UP)
        trunk_send_subscribe(tr);
}

/* A refused subscription is offered again later, at the same generation:
 * 50 ms doubling up to the lease (or 2 s). A newer answer of the
 * directory (op_home) replaces it meanwhile. */
void trunk_troom_resub_later(struct troom *tr)
{
    struct trunk_set *set = tr->t->set;
    uint64_t cap = BACKOFF_MAX_NS;
    const struct relay_config *cfg = &set->rw->r->cfg;
    if (cfg->cluster.timing.lease_ms > 0)
        cap = (uint64_t)cfg->cluster.timing.lease_ms * 1000000ull;
    tr->resub_ns = tr->resub_ns ? tr->resub_ns * 2 : BACKOFF_MIN_NS;
    if (tr->resub_ns > cap)
        tr->resub_ns = cap;
    timer_arm(worker_timers(set->rw->w), &tr->resub, trunk_now_of(set) + tr->resub_ns);
}

struct troom *trunk_troom_new(struct trunk *t, uint32_t handle, uint64_t gen, const void *room,
                              size_t len)
{
    struct troom *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return NULL;
    tr->t = t;
    tr->handle = handle;
    tr->gen = gen;
    tr->room_len = (uint8_t)len;
    memcpy(tr->room, room, len);
    tr->hidden.kind = TEP_HIDDEN;
    tr->hidden.tr = tr;
    timer_init(&tr->resub, resub_cb, tr);
    struct room_shard *s = relay_worker_shard(t->set->rw);
    int rc = room_member_new(s, tep_ptr(&tr->hidden), &tr->hidden.m);
    if (rc == 0) {
        rc =
            room_join(tr->hidden.m, room, len, NULL, 0, NULL, 0, PERM_SUBSCRIBE | ROOM_PERM_HIDDEN);
        if (rc != 0)
            room_member_del(tr->hidden.m);
    }
    if (rc != 0) {
        log_error("event=trunk_room_failed err=\"%s\"", roost_strerror(rc));
        free(tr);
        return NULL;
    }
    tr->next = t->rooms;
    t->rooms = tr;
    return tr;
}

void trunk_troom_del(struct troom *tr)
{
    struct trunk *t = tr->t;
    for (struct troom **pp = &t->rooms; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == tr) {
            *pp = tr->next;
            break;
        }
    }
    timer_cancel(worker_timers(t->set->rw->w), &tr->resub);
    trunk_ghosts_clear(tr);
    room_member_del(tr->hidden.m);
    free(tr->ghosts);
    free(tr->mir);
    free(tr->seen);
    free(tr);
}

struct mirror *trunk_mirror_find(struct troom *tr, uint32_t pid)
{
    for (uint32_t i = 0; i < tr->n_mir; i++)
        if (tr->mir[i].pid == pid)
            return &tr->mir[i];
    return NULL;
}

/* A member of this side appeared (hidden member's JOINED or events). */
void trunk_mirror_join(struct troom *tr, uint32_t pid, uint8_t flags, struct msg_str name)
{
    if (trunk_from_peer(tr, pid) || trunk_ghost_find(tr, pid) != NULL ||
        trunk_mirror_find(tr, pid) != NULL)
        return; /* our remote members are the other side's: never sent back */
    if (tr->n_mir == tr->cap_mir) {
        uint32_t nc = tr->cap_mir ? tr->cap_mir * 2 : 8;
        struct mirror *m = realloc(tr->mir, nc * sizeof(*m));
        if (m == NULL)
            return;
        tr->mir = m;
        tr->cap_mir = nc;
    }
    struct mirror *mi = &tr->mir[tr->n_mir++];
    mi->pid = pid;
    mi->flags = flags;
    mi->name_len = (uint8_t)(name.len < TRUNKMSG_NAME_MAX ? name.len : TRUNKMSG_NAME_MAX);
    if (mi->name_len)
        memcpy(mi->name, name.ptr, mi->name_len);
    if (tr->active && tr->t->st == T_UP)
        trunk_send_presence(tr, TRUNK_PRESENCE_JOIN, mi);
}

void trunk_mirror_leave(struct troom *tr, uint32_t pid)
{
    struct mirror *mi = trunk_mirror_find(tr, pid);
    if (mi == NULL)
        return;
    if (tr->active && tr->t->st == T_UP)
        trunk_send_presence(tr, TRUNK_PRESENCE_LEAVE, mi);
    *mi = tr->mir[--tr->n_mir];
}

/* The subscription became active: the other side learns this side's room. */
void trunk_troom_activate(struct troom *tr)
{
    tr->active = true;
    tr->resub_ns = 0;
    timer_cancel(worker_timers(tr->t->set->rw->w), &tr->resub);
    for (uint32_t i = 0; i < tr->n_mir; i++)
        trunk_send_presence(tr, TRUNK_PRESENCE_JOIN, &tr->mir[i]);
}

/* ------------------------------------------------------------ room ops */

static uint8_t member_perms(uint8_t msg_flags)
{
    return (msg_flags & MSG_MEMBER_PUBLISHER) ? PERM_PUBLISH : 0;
}

static void hidden_control(struct troom *tr, const uint8_t *body, size_t len)
{
    struct msg *m = tr->t->set->scratch;
    if (msg_decode(body, len, m) != 0)
        return;
    if (m->type == MSG_JOINED) {
        for (uint32_t i = 0; i < m->u.joined.n_members; i++) {
            const struct msg_member *mm = &m->u.joined.members[i];
            trunk_mirror_join(tr, mm->participant_id, member_perms(mm->flags), mm->display_name);
        }
    } else if (m->type == MSG_QUALITY) {
        /* A receiver's link, from the room's owner (room.h, "link quality
         * across relays"): the other side's publishers count it. Never
         * back to the side it came from (its receivers are our ghosts). */
        const struct msg_quality *q = &m->u.quality;
        if (!tr->active || tr->t->st != T_UP || trunk_from_peer(tr, q->participant_id))
            return;
        struct trunkmsg k = {.type = TRUNKMSG_QUALITY,
                             .handle = tr->handle,
                             .gen = tr->gen,
                             .pid = q->participant_id,
                             .loss = q->loss_permille > 1000 ? 1000 : q->loss_permille,
                             .rtt_us = q->rtt_us};
        if (trunk_send_msg(tr->t, &k) == 0)
            TSTAT_INC(tr->t->set, quality_out);
        return;
    } else if (m->type == MSG_PARTICIPANT_EVENTS) {
        for (uint32_t i = 0; i < m->u.events.n_events; i++) {
            const struct msg_event *e = &m->u.events.events[i];
            if (e->kind == MSG_EV_JOIN)
                trunk_mirror_join(tr, e->participant_id, member_perms(e->flags), e->display_name);
            else
                trunk_mirror_leave(tr, e->participant_id);
        }
    } else {
        return;
    }
    /* A subscriber whose own members are all gone ends its subscription,
     * so that the room (hidden member and ghosts gone) closes on both
     * relays (REVIEW18 finding 3). Not here: this runs inside a lib/room
     * callback of the hidden member; trunk_turn_end does it. */
    tr->empty = tr->t->outbound && tr->n_mir == 0;
    if (tr->empty)
        tr->t->set->check_empty = true;
}

static void ghost_control(struct tep *g, const uint8_t *body, size_t len)
{
    struct troom *tr = g->tr;
    struct msg *m = tr->t->set->scratch;
    if (msg_decode(body, len, m) != 0 || m->type != MSG_KEYFRAME_REQUEST)
        return; /* JOINED, presence, QUALITY of a remote member: not forwarded */
    if (!tr->active || tr->t->st != T_UP)
        return;
    struct trunkmsg k = {.type = TRUNKMSG_KFREQ,
                         .handle = tr->handle,
                         .gen = tr->gen,
                         .pid = g->pid,
                         .from = m->u.keyframe_request.participant_id,
                         .stream = m->u.keyframe_request.stream_id};
    if (trunk_send_msg(tr->t, &k) == 0)
        TSTAT_INC(tr->t->set, kfreq_relayed);
}

static int hidden_media(struct troom *tr, struct buf *b, uint32_t off, uint32_t len)
{
    struct trunk *t = tr->t;
    if (!tr->active || t->st != T_UP || len < MEDIA_SENDER_LEN)
        return ROOST_ECLOSED;
    if (trunk_from_peer(tr, be_get32(b->data + off)))
        return 0; /* came from this trunk: star, never back */
    uint8_t d[TRUNKMSG_DGRAM_HDR_LEN + ROOM_MAX_DATAGRAM + MEDIA_SENDER_LEN];
    if (len > sizeof(d) - TRUNKMSG_DGRAM_HDR_LEN)
        return ROOST_ETOOBIG;
    /* Before its JOINED completed the hidden member only gets the room's
     * cached keyframes (lib/room replays them to a joiner): marked, so the
     * other side does not hand them again to members that had them live. */
    trunkmsg_dgram_hdr(d, tr->handle, tr->gen, !tr->hidden_joined);
    memcpy(d + TRUNKMSG_DGRAM_HDR_LEN, b->data + off, len);
    int rc = quic_conn_send_datagram(t->c, d, TRUNKMSG_DGRAM_HDR_LEN + len);
    if (rc == 0)
        TSTAT_INC(t->set, frames_out);
    return rc;
}

static int tr_media(void *ep, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    struct tep *e = tep_of(ep);
    if (e == NULL)
        return session_room_ops.media(ep, b, off, len, arg);
    return e->kind == TEP_HIDDEN ? hidden_media(e->tr, b, off, len) : ROOST_EINVAL;
}

static void tr_control(void *ep, const uint8_t *body, size_t len, void *arg)
{
    struct tep *e = tep_of(ep);
    if (e == NULL) {
        session_room_ops.control(ep, body, len, arg);
        return;
    }
    if (e->kind == TEP_HIDDEN)
        hidden_control(e->tr, body, len);
    else
        ghost_control(e, body, len);
}

static void tr_joined(void *ep, uint32_t code, void *arg)
{
    struct tep *e = tep_of(ep);
    if (e == NULL) {
        struct session *ss = ep;
        if (session_room_ops.joined != NULL)
            session_room_ops.joined(ep, code, arg);
        struct relay_worker *rw = arg;
        if (code == 0 && rw->ts != NULL && rw->ts->live &&
            (rw->ts->sh->static_mode || rw->ts->sh->cluster != NULL))
            trunk_post_local_join(rw, ss->room, ss->room_len);
        return;
    }
    if (code != 0)
        log_warn("event=trunk_member_rejected kind=%s code=%u",
                 e->kind == TEP_HIDDEN ? "hidden" : "remote", code);
    else if (e->kind == TEP_HIDDEN)
        e->tr->hidden_joined = true; /* its cache replay is over: live frames now */
    else
        trunk_held_flush(e);
}

static void tr_replaced(void *ep, void *arg)
{
    if (tep_of(ep) == NULL && session_room_ops.replaced != NULL)
        session_room_ops.replaced(ep, arg);
}

static int tr_link_stats(void *ep, struct room_link *out, void *arg)
{
    /* Trunk members have no link of their own: a hidden member reports the
     * receivers of its other side instead (lib/room quality.c). */
    if (tep_of(ep) != NULL || session_room_ops.link_stats == NULL)
        return ROOST_ENOENT;
    return session_room_ops.link_stats(ep, out, arg);
}

/* The directory's hooks (relay/cluster.c) are the sessions' ones: with
 * trunks on the relay registers this table instead (REVIEW18 finding 2). */
static uint32_t tr_gate(const uint8_t *room, size_t len, const char **reason, uint32_t *retry_ms,
                        void *arg)
{
    return session_room_ops.gate(room, len, reason, retry_ms, arg);
}

static void tr_room_closed(const uint8_t *room, size_t len, void *arg)
{
    struct relay_worker *rw = arg;
    if (rw->ts != NULL && rw->ts->live)
        trunk_dropped_forget(rw->ts, (const char *)room, len);
    session_room_ops.room_closed(room, len, arg);
}

const struct room_ops trunk_room_ops = {
    .media = tr_media,
    .control = tr_control,
    .joined = tr_joined,
    .replaced = tr_replaced,
    .link_stats = tr_link_stats,
    .gate = tr_gate,
    .room_closed = tr_room_closed,
};
