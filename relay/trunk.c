/* Relay-to-relay trunks (trunk.h, docs/CLUSTER.md §2).
 *
 * A trunk is a QUIC connection (ALPN roost-trunk/1) between this worker
 * and another relay. The side that needs a room's home dials it (a
 * quic_client on this worker's loop); the home's QUIC server accepts it on
 * whichever worker the kernel chose. Both ends speak trunkmsg: HELLO with
 * an HMAC over the cluster secret bound to the TLS exporter, then room
 * subscriptions. Per (trunk, room) each end keeps a `troom`:
 *   - a HIDDEN room member that receives the room's frames and presence
 *     once and forwards them on the trunk (frames of the trunk's own remote
 *     members are not sent back: star through the home, no echo);
 *   - one REMOTE member (`ghost`) per participant the other end announced,
 *     through which that participant's frames and presence enter the room.
 * Both ends are symmetric once the subscription is accepted. */
#include "relay/trunk_int.h"

/* --------------------------------------------------------- connections */

static void trunk_free(struct trunk *t)
{
    struct trunk_set *set = t->set;
    while (t->rooms != NULL)
        trunk_troom_del(t->rooms);
    timer_cancel(worker_timers(set->rw->w), &t->redial);
    for (struct trunk **pp = &set->trunks; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (t->outbound) {
        if (t->c != NULL) {
            quic_conn_set_user(t->c, NULL);
            quic_client_conn_del(t->c);
        }
        quic_client_conn_del(t->dead);
    } else if (t->c != NULL) {
        struct quic_conn *c = t->c;
        t->c = NULL;
        quic_conn_set_user(c, NULL); /* its on_close then finds no session: nothing to do */
        quic_conn_close(c, QUIC_APP_GOING_AWAY, "trunk closed");
    }
    free(t);
}

static void grave_free(struct trunk_set *set)
{
    while (set->grave != NULL) {
        struct trunk *t = set->grave;
        set->grave = t->grave_next;
        trunk_free(t);
    }
}

static void cl_rearm(struct trunk_set *set)
{
    if (set->cl == NULL)
        return;
    uint64_t now = trunk_now_of(set);
    uint64_t d = quic_client_next_timeout(set->cl, now);
    if (d == UINT64_MAX)
        timer_cancel(worker_timers(set->rw->w), &set->cl_timer);
    else
        timer_arm(worker_timers(set->rw->w), &set->cl_timer, now + d);
}

static void cl_process(struct trunk_set *set)
{
    if (set->cl == NULL)
        return;
    quic_client_process(set->cl, trunk_now_of(set));
    cl_rearm(set);
}

static void cl_timer_cb(struct timer *tm, uint64_t now, void *arg)
{
    (void)tm;
    (void)now;
    cl_process(arg);
}

static void cl_fd_cb(struct worker *w, int fd, uint32_t events, void *arg)
{
    (void)w;
    (void)fd;
    (void)events;
    cl_process(arg);
}

static int client_ensure(struct trunk_set *set)
{
    if (set->cl != NULL)
        return 0;
    struct quic_client_config cc = {
        .alpn = TRUNK_ALPN,
        .no_verify = true, /* the HELLO MAC authenticates the home (CLUSTER.md §2.2) */
        .no_tickets = true,
    };
    int rc = quic_client_new(&set->cl, &cc, &trunk_client_ops, set);
    if (rc != 0)
        return rc;
    rc = worker_fd_add(set->rw->w, quic_client_fd(set->cl), EPOLLIN, cl_fd_cb, set);
    if (rc != 0) {
        quic_client_del(set->cl);
        set->cl = NULL;
    }
    return rc;
}

static void dial(struct trunk *t)
{
    struct trunk_set *set = t->set;
    if (t->dead != NULL) {
        quic_client_conn_del(t->dead);
        t->dead = NULL;
    }
    t->st = T_DIALING;
    int rc = client_ensure(set);
    if (rc == 0)
        rc = quic_client_connect(set->cl, t->host, t->port, trunk_user(t), &t->c);
    if (rc != 0) {
        log_error("event=trunk_dial_failed peer=%s addr=%s:%u err=\"%s\"", t->peer_id, t->host,
                  t->port, roost_strerror(rc));
        t->c = NULL;
        t->st = T_DOWN;
        timer_arm(worker_timers(set->rw->w), &t->redial, trunk_now_of(set) + t->backoff_ns);
        return;
    }
    cl_process(set);
}

static void redial_cb(struct timer *tm, uint64_t now, void *arg)
{
    (void)tm;
    (void)now;
    struct trunk *t = arg;
    if (t->rooms == NULL) { /* nothing to follow there any more: no re-dial (finding 12) */
        log_info("event=trunk_forget peer=%s", t->peer_id);
        trunk_free(t);
        return;
    }
    t->backoff_ns = t->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : t->backoff_ns * 2;
    dial(t);
}

static struct trunk *trunk_out_find(struct trunk_set *set, const char *id)
{
    for (struct trunk *t = set->trunks; t != NULL; t = t->next)
        if (t->outbound && strcmp(t->peer_id, id) == 0)
            return t;
    return NULL;
}

struct trunk *trunk_out_get(struct trunk_set *set, const char *id, const char *addr)
{
    struct trunk *t = trunk_out_find(set, id);
    if (t != NULL)
        return t;
    const char *colon = strrchr(addr, ':');
    size_t id_len = strlen(id);
    if (colon == NULL || id_len == 0 || id_len > TRUNKMSG_ID_MAX) {
        log_error("event=trunk_bad_home id=%s addr=%s", id, addr);
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->set = set;
    t->outbound = true;
    memcpy(t->peer_id, id, id_len);
    t->peer_len = (uint8_t)id_len;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(t->host)) {
        log_error("event=trunk_bad_home id=%s addr=%s msg=\"host longer than %zu bytes\"", id, addr,
                  sizeof(t->host) - 1);
        free(t);
        return NULL;
    }
    memcpy(t->host, h, hl);
    t->port = (uint16_t)atoi(colon + 1);
    t->backoff_ns = BACKOFF_MIN_NS;
    timer_init(&t->redial, redial_cb, t);
    t->next = set->trunks;
    set->trunks = t;
    log_info("event=trunk_dial peer=%s addr=%s:%u", t->peer_id, t->host, t->port);
    dial(t);
    return t;
}

void trunk_up(struct trunk *t)
{
    struct trunk_set *set = t->set;
    t->st = T_UP;
    t->last_rx = trunk_now_of(t->set);
    TSTAT_INC(set, trunks_up);
    if (t->outbound) {
        if (t->was_up) {
            TSTAT_INC(set, reconnects);
            TSTAT_ADD(set, gap_ns, trunk_now_of(set) - t->down_since);
        }
        t->was_up = true;
        t->down_since = 0;
        t->backoff_ns = BACKOFF_MIN_NS;
        for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
            trunk_send_subscribe(tr);
    }
    log_info("event=trunk_up peer=%s dir=%s", t->peer_id, t->outbound ? "out" : "in");
}

/* --------------------------------------------------- trunk messages in */

static void on_subscribe(struct trunk *t, const struct trunkmsg *m)
{
    struct trunk_set *set = t->set;
    struct trunkmsg ack = {.type = TRUNKMSG_SUB_ACK, .handle = m->handle, .gen = m->gen};
    if (t->outbound) {
        quic_conn_close(t->c, TRUNK_ERR_PROTOCOL, "SUBSCRIBE to the dialing side");
        return;
    }
    ack.code = trunk_home_check(set->sh, m->room, m->room_len, m->gen);
    struct troom *old = trunk_troom_by_handle(t, m->handle);
    if (old != NULL)
        trunk_troom_del(old);
    /* One subscription per room and trunk: the room under another handle
     * would send every frame twice (REVIEW18 finding 15). */
    old = trunk_troom_by_room(t, (const char *)m->room, m->room_len);
    if (old != NULL)
        trunk_troom_del(old);
    if (ack.code == TRUNK_OK) {
        struct troom *tr = trunk_troom_new(t, m->handle, m->gen, m->room, m->room_len);
        if (tr == NULL)
            ack.code = TRUNK_ERR_FULL;
        else
            tr->active = true; /* the members arrive with the hidden member's JOINED */
    }
    if (ack.code == TRUNK_OK) {
        TSTAT_INC(set, subs_accepted);
    } else {
        TSTAT_INC(set, subs_rejected);
        if (ack.code == TRUNK_ERR_STALE_GEN)
            TSTAT_INC(set, stale_gen_drops);
    }
    trunk_send_msg(t, &ack);
}

static void on_sub_ack(struct trunk *t, const struct trunkmsg *m)
{
    struct troom *tr = trunk_troom_by_handle(t, m->handle);
    if (tr == NULL || tr->gen != m->gen)
        return; /* answer to an older subscription */
    if (m->code == TRUNK_OK) {
        trunk_troom_activate(tr);
        return;
    }
    log_warn("event=trunk_subscribe_refused peer=%s room=\"%.*s\" gen=%llu code=%u", t->peer_id,
             (int)tr->room_len, tr->room, (unsigned long long)tr->gen, m->code);
    TSTAT_INC(t->set, subs_rejected);
    tr->active = false; /* also a home that revoked an accepted subscription */
    trunk_ghosts_clear(tr);
    struct trunk_shared *sh = t->set->sh;
    if (sh->cluster != NULL) {
        cluster_room_retry(sh->cluster, t->set->rw, tr->room, tr->room_len);
        if (m->code == TRUNK_ERR_NOT_HOME)
            trunk_troom_resub_later(tr);
    }
}

static void on_control(struct trunk *t, const uint8_t *body, size_t len)
{
    t->last_rx = trunk_now_of(t->set);
    struct trunkmsg m;
    int rc = trunkmsg_decode(body, len, &m);
    if (rc == ROOST_EUNKNOWN)
        return; /* newer peer: ignored */
    if (rc != 0) {
        quic_conn_close(t->c, TRUNK_ERR_PROTOCOL, "malformed trunk message");
        return;
    }
    if (t->st != T_UP && m.type != TRUNKMSG_HELLO) {
        trunk_close_auth(t, "message before HELLO");
        return;
    }
    if (m.type == TRUNKMSG_HELLO) {
        trunk_on_hello(t, &m);
        return;
    }
    if (m.type == TRUNKMSG_PING)
        return; /* its packet reset the idle timer */
    if (m.type == TRUNKMSG_SUBSCRIBE) {
        on_subscribe(t, &m);
        return;
    }
    struct troom *tr = trunk_troom_by_handle(t, m.handle);
    if (tr == NULL)
        return;
    if (m.gen != tr->gen) {
        TSTAT_INC(t->set, stale_gen_drops);
        return;
    }
    if (!t->outbound && m.type != TRUNKMSG_UNSUBSCRIBE &&
        trunk_home_check(t->set->sh, (const uint8_t *)tr->room, tr->room_len, tr->gen) !=
            TRUNK_OK) {
        /* This relay is no longer the home at this generation (a revoke on
         * its way from the owner worker): the subscriber learns it now
         * (REVIEW18 finding 4). */
        struct trunkmsg ack = {.type = TRUNKMSG_SUB_ACK,
                               .handle = tr->handle,
                               .gen = tr->gen,
                               .code = TRUNK_ERR_NOT_HOME};
        TSTAT_INC(t->set, stale_gen_drops);
        trunk_troom_del(tr);
        trunk_send_msg(t, &ack);
        return;
    }
    switch (m.type) {
    case TRUNKMSG_UNSUBSCRIBE:
        if (!t->outbound)
            trunk_troom_del(tr);
        break;
    case TRUNKMSG_SUB_ACK:
        on_sub_ack(t, &m);
        break;
    case TRUNKMSG_PRESENCE:
        TSTAT_INC(t->set, presence_in);
        if (m.kind == TRUNK_PRESENCE_JOIN) {
            if (m.pid >> 24 == t->set->sh->prefix) {
                /* An id this relay issues: the peer shares our pid_prefix
                 * (misconfigured); a remote member with it could collide. */
                log_warn("event=trunk_presence_own_prefix peer=%s pid=%u", t->peer_id, m.pid);
                TSTAT_INC(t->set, unknown_drops);
                break;
            }
            trunk_ghost_add(tr, m.pid, m.flags, m.name, m.name_len);
        } else {
            for (uint32_t i = 0; i < tr->n_ghosts; i++) {
                if (tr->ghosts[i]->pid == m.pid) {
                    trunk_ghost_del_at(tr, i);
                    break;
                }
            }
        }
        break;
    case TRUNKMSG_KFREQ:
        if (tr->hidden.m != NULL)
            (void)room_keyframe_request(tr->hidden.m, m.pid, m.stream);
        break;
    case TRUNKMSG_QUALITY:
        /* A receiver of the other side (announced there: one of our
         * ghosts), reported to this relay's publishers by the hidden
         * member. */
        if (trunk_ghost_find(tr, m.pid) == NULL || tr->hidden.m == NULL ||
            room_member_far_quality(tr->hidden.m, m.pid, m.loss, m.rtt_us) != 0) {
            TSTAT_INC(t->set, unknown_drops);
            break;
        }
        TSTAT_INC(t->set, quality_in);
        break;
    default:
        break;
    }
}

static void on_datagram(struct trunk *t, const uint8_t *d, size_t len)
{
    uint32_t handle;
    uint64_t gen;
    bool replay = false;
    t->last_rx = trunk_now_of(t->set);
    int off = trunkmsg_dgram_parse(d, len, &handle, &gen, &replay);
    struct troom *tr = off > 0 && t->st == T_UP ? trunk_troom_by_handle(t, handle) : NULL;
    if (tr == NULL || len < (size_t)off + MEDIA_R2C_HDR_LEN) {
        TSTAT_INC(t->set, unknown_drops);
        return;
    }
    if (gen != tr->gen) {
        TSTAT_INC(t->set, stale_gen_drops);
        return;
    }
    struct tep *g = trunk_ghost_find(tr, be_get32(d + off));
    if (g == NULL) {
        TSTAT_INC(t->set, unknown_drops);
        return;
    }
    trunk_media_in(tr, g, d + off, len - (size_t)off, replay);
}

/* The connection ended: an accepted trunk goes with its rooms; a dialed
 * one keeps its subscriptions (re-sent when it is back) and drops the
 * remote members (the other side re-announces them). */
static void on_close(struct trunk *t, uint64_t code)
{
    struct trunk_set *set = t->set;
    bool was_up = t->st == T_UP;
    if (was_up)
        TSTAT_DEC(set, trunks_up);
    log_info("event=trunk_down peer=%s dir=%s code=0x%llx", t->peer_id, t->outbound ? "out" : "in",
             (unsigned long long)code);
    if ((code == TRUNK_ERR_AUTH || code == TRUNK_ERR_PREFIX) && t->st != T_UP && t->outbound) {
        struct quic_close_info ci;
        quic_conn_close_info(t->c, &ci);
        if (ci.remote && code == TRUNK_ERR_AUTH)
            TSTAT_INC(set, auth_failures); /* refused by the other side */
        else if (ci.remote)
            trunk_close_prefix(t, false);
    }
    if (!t->outbound) {
        /* Not freed here: quic_conn_close runs this from inside whoever
         * sent (a full control queue closes with TOO_SLOW), possibly a
         * lib/room callback of one of this trunk's members or a loop over
         * the trunks (REVIEW18 finding 1). Sends fail from now on (t->c
         * NULL, T_DOWN); trunk_turn_end frees it. */
        t->c = NULL;
        t->st = T_DOWN;
        for (struct trunk **pp = &set->trunks; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == t) {
                *pp = t->next;
                break;
            }
        }
        t->grave_next = set->grave;
        set->grave = t;
        return;
    }
    t->dead = t->c;
    t->c = NULL;
    t->st = T_DOWN;
    if (was_up) {
        TSTAT_INC(set, trunks_lost);
        t->down_since = trunk_now_of(set);
    }
    for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next) {
        tr->active = false;
        trunk_ghosts_clear(tr);
        if (set->sh->cluster != NULL)
            cluster_room_retry(set->sh->cluster, set->rw, tr->room, tr->room_len);
    }
    timer_arm(worker_timers(set->rw->w), &t->redial, trunk_now_of(set) + t->backoff_ns);
}

/* ------------------------------------------------------------ QUIC ops */

/* Dialed trunks (quic_client, arg: the trunk_set). */
static int cq_on_open(struct quic_conn *c, void *arg)
{
    (void)arg;
    struct trunk *t = trunk_of(c);
    if (t == NULL)
        return QUIC_APP_INTERNAL;
    t->st = T_HELLO;
    /* Nothing but HELLO goes out before the home proved it knows the secret. */
    return trunk_send_hello(t) == 0 ? 0 : QUIC_APP_INTERNAL;
}

static void cq_on_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct trunk *t = trunk_of(c);
    if (t != NULL)
        on_control(t, body, len);
}

static void cq_on_datagram(struct quic_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct trunk *t = trunk_of(c);
    if (t != NULL)
        on_datagram(t, data, len);
}

static void cq_on_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)arg;
    struct trunk *t = trunk_of(c);
    if (t != NULL && t->c == c)
        on_close(t, app_error);
}

static const struct quic_app_ops trunk_client_ops = {
    .on_open = cq_on_open,
    .on_control = cq_on_control,
    .on_datagram = cq_on_datagram,
    .on_close = cq_on_close,
};

/* The relay's server: trunks by ALPN, everything else to the sessions. */
static int sq_on_open(struct quic_conn *c, void *arg)
{
    struct relay_worker *rw = arg;
    if (!quic_conn_alpn_is(c, TRUNK_ALPN))
        return session_quic_ops.on_open(c, arg);
    if (rw->ts == NULL || !rw->ts->live)
        return TRUNK_ERR_PROTOCOL;
    struct trunk *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return QUIC_APP_INTERNAL;
    t->set = rw->ts;
    t->c = c;
    t->st = T_HELLO;
    snprintf(t->peer_id, sizeof(t->peer_id), "?");
    timer_init(&t->redial, redial_cb, t);
    t->next = rw->ts->trunks;
    rw->ts->trunks = t;
    quic_conn_set_user(c, trunk_user(t));
    return 0;
}

static void sq_on_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct trunk *t = trunk_of(c);
    if (t == NULL)
        session_quic_ops.on_control(c, body, len, arg);
    else
        on_control(t, body, len);
}

static void sq_on_datagram(struct quic_conn *c, const uint8_t *data, size_t len, void *arg)
{
    struct trunk *t = trunk_of(c);
    if (t == NULL)
        session_quic_ops.on_datagram(c, data, len, arg);
    else
        on_datagram(t, data, len);
}

static void sq_on_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    struct trunk *t = trunk_of(c);
    if (t == NULL) {
        session_quic_ops.on_close(c, app_error, arg);
        return;
    }
    quic_conn_set_user(c, NULL);
    on_close(t, app_error);
}

/* Room-affine hand-off (session 7: on by default under ebpf) moves client
 * sessions between workers; without these their session never learnt it
 * had left, nor the new worker that it had arrived, and the JOIN hung
 * until its deadline. Trunks are never handed off. */
static void sq_on_detach(struct quic_conn *c, void *arg)
{
    if (trunk_of(c) == NULL)
        session_quic_ops.on_detach(c, arg);
}

static void sq_on_adopt(struct quic_conn *c, void *arg)
{
    if (trunk_of(c) == NULL)
        session_quic_ops.on_adopt(c, arg);
}

const struct quic_app_ops trunk_quic_ops = {
    .on_open = sq_on_open,
    .on_control = sq_on_control,
    .on_datagram = sq_on_datagram,
    .on_close = sq_on_close,
    .on_detach = sq_on_detach,
    .on_adopt = sq_on_adopt,
};

static void test_drop(struct trunk_set *set)
{
    for (struct trunk *t = set->trunks; t != NULL; t = t->next)
        if (t->outbound && t->c != NULL)
            quic_conn_close(t->c, QUIC_APP_INTERNAL, "trunk dropped (test)");
}

static void trunk_on_msg(struct worker *w, const struct worker_msg *msg, void *arg)
{
    (void)w;
    struct relay_worker *rw = arg;
    struct buf *b = NULL;
    if (msg->type != TRUNK_MSG_TEST_DROP)
        memcpy(&b, msg->u.bytes, sizeof(b));
    if (rw->ts != NULL && rw->ts->live) {
        if (msg->type == TRUNK_MSG_LOCAL_JOIN) {
            trunk_on_local_join(rw->ts, b);
        } else if (msg->type == TRUNK_MSG_TEST_DROP) {
            test_drop(rw->ts);
        } else if (msg->type == TRUNK_MSG_TEST_HOME) {
            const struct test_home *th = (const struct test_home *)b->data;
            if (th->gone)
                trunk_home_ops.gone(rw, th->room, th->room_len, th->gen, rw->r);
            else
                trunk_home_ops.home(rw, th->room, th->room_len, th->self, th->id, th->addr, th->gen,
                                    rw->r);
        } else if (msg->type == TRUNK_MSG_REVOKE) {
            trunk_on_revoke(rw->ts, (const struct trunk_revoke *)b->data);
        }
    }
    buf_unref(b);
}

static void trunk_msg_discard(const struct worker_msg *msg)
{
    if (msg->type == TRUNK_MSG_TEST_DROP)
        return;
    struct buf *b;
    memcpy(&b, msg->u.bytes, sizeof(b));
    buf_unref(b);
}

int trunk_test_drop(struct relay *r)
{
    struct worker_msg wm = {.type = TRUNK_MSG_TEST_DROP};
    for (unsigned i = 0; i < r->n_workers; i++) {
        int rc = worker_pool_post(r->pool, i, &wm);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --------------------------------------------------------- worker level */

int trunk_sets_new(struct relay *r)
{
    if (r->trunk == NULL)
        return 0;
    r->tsets = calloc(r->n_workers, sizeof(*r->tsets));
    if (r->tsets == NULL)
        return ROOST_ENOMEM;
    for (unsigned i = 0; i < r->n_workers; i++) {
        r->tsets[i].sh = r->trunk;
        r->rw[i].ts = &r->tsets[i];
    }
    return 0;
}

void trunk_sets_del(struct relay *r)
{
    free(r->tsets);
    r->tsets = NULL;
}

int trunk_set_new(struct relay_worker *rw)
{
    struct trunk_set *set = rw->ts;
    if (set == NULL)
        return 0;
    set->scratch = malloc(sizeof(*set->scratch));
    if (set->scratch == NULL)
        return ROOST_ENOMEM;
    set->rw = rw;
    timer_init(&set->cl_timer, cl_timer_cb, set);
    timer_init(&set->ka, trunk_ka_cb, set);
    timer_arm(worker_timers(rw->w), &set->ka, worker_now(rw->w) + trunk_ka_period(set));
    struct worker_handler h = {.first = TRUNK_MSG_FIRST,
                               .last = TRUNK_MSG_LAST,
                               .on_msg = trunk_on_msg,
                               .discard = trunk_msg_discard};
    int rc = worker_handle(rw->w, &h, rw);
    if (rc != 0) {
        free(set->scratch);
        set->scratch = NULL;
        return rc;
    }
    set->live = true;
    return 0;
}

void trunk_set_del(struct relay_worker *rw)
{
    struct trunk_set *set = rw->ts;
    if (set == NULL || !set->live)
        return;
    grave_free(set);
    while (set->trunks != NULL) {
        struct trunk *t = set->trunks;
        if (t->st == T_UP)
            TSTAT_DEC(set, trunks_up);
        t->st = T_DOWN;
        trunk_free(t);
    }
    grave_free(set); /* closed while the others left their rooms */
    timer_cancel(worker_timers(rw->w), &set->cl_timer);
    timer_cancel(worker_timers(rw->w), &set->ka);
    if (set->cl != NULL) {
        worker_fd_del(rw->w, quic_client_fd(set->cl));
        quic_client_del(set->cl);
        set->cl = NULL;
    }
    while (set->homed != NULL) {
        struct homed *h = set->homed;
        set->homed = h->next;
        free(h);
    }
    while (set->dropped != NULL) {
        struct homed *h = set->dropped;
        set->dropped = h->next;
        free(h);
    }
    free(set->scratch);
    set->scratch = NULL;
    set->live = false;
}

void trunk_turn_end(struct relay_worker *rw)
{
    if (rw->ts == NULL || !rw->ts->live)
        return;
    if (rw->ts->check_empty)
        trunk_empty_rooms(rw->ts);
    grave_free(rw->ts);
    if (rw->ts->cl != NULL)
        cl_process(rw->ts);
}

static const struct trunk_set *set_of(struct relay *r, unsigned worker)
{
    return r->tsets != NULL ? &r->tsets[worker] : NULL;
}

void trunk_worker_stats(struct relay *r, unsigned worker, struct trunk_stats *out)
{
    memset(out, 0, sizeof(*out));
    const struct trunk_set *set = worker < r->n_workers ? set_of(r, worker) : NULL;
    if (set != NULL)
        stat_read((uint64_t *)out, set->st, STAT_N(struct trunk_stats));
}

bool trunk_on(const struct relay *r)
{
    return r->trunk != NULL;
}

void trunk_stats_total(struct relay *r, struct trunk_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < r->n_workers; i++) {
        const struct trunk_set *set = set_of(r, i);
        if (set != NULL)
            stat_sum((uint64_t *)out, set->st, STAT_N(struct trunk_stats));
    }
}
