/* Trunks: subscriptions and fencing (trunk_int.h). The homes this relay
 * holds (what a SUBSCRIBE is checked against), the home ops that start,
 * move and end outbound subscriptions, the revocation of subscriptions a
 * home accepted at an older generation, empty subscriptions ending,
 * static_home's first local member, and the test hooks that drive the
 * home ops. */
#include "relay/trunk_int.h"

/* ------------------------------------------------------- home entries */

/* The home this relay holds for room: TRUNK_OK with the generation, or
 * TRUNK_ERR_NOT_HOME / TRUNK_ERR_STALE_GEN against the subscriber's gen. */
uint32_t trunk_home_check(struct trunk_shared *sh, const uint8_t *room, size_t len, uint64_t gen)
{
    if (sh->static_mode)
        return sh->static_self ? (gen == STATIC_GEN ? TRUNK_OK : TRUNK_ERR_STALE_GEN)
                               : TRUNK_ERR_NOT_HOME;
    uint32_t code = TRUNK_ERR_NOT_HOME;
    pthread_mutex_lock(&sh->mu);
    for (struct home_ent *e = sh->homes; e != NULL; e = e->next) {
        if (e->len == len && memcmp(e->room, room, len) == 0) {
            code = gen == e->gen  ? TRUNK_OK
                   : gen < e->gen ? TRUNK_ERR_STALE_GEN
                                  : TRUNK_ERR_NOT_HOME;
            /* The lease ran out by our clock: not home any more, even
             * before the lease-lost event reaches the owner worker. */
            if (code == TRUNK_OK && e->lease != NULL && !dir_lease_valid(e->lease, dir_now()))
                code = TRUNK_ERR_NOT_HOME;
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return code;
}

static bool home_held(struct trunk_shared *sh, const char *room, size_t len)
{
    bool held = false;
    pthread_mutex_lock(&sh->mu);
    for (struct home_ent *e = sh->homes; e != NULL && !held; e = e->next)
        held = e->len == len && memcmp(e->room, room, len) == 0;
    pthread_mutex_unlock(&sh->mu);
    return held;
}

/* lease (on only, may be NULL): the lease of gen, referenced while kept. */
static void home_set(struct trunk_shared *sh, const char *room, size_t len, bool on, uint64_t gen,
                     struct dir_lease *lease)
{
    pthread_mutex_lock(&sh->mu);
    struct home_ent **pp = &sh->homes;
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->len == len && memcmp((*pp)->room, room, len) == 0)
            break;
    if (on) {
        if (*pp == NULL && (*pp = calloc(1, sizeof(**pp))) != NULL) {
            (*pp)->len = (uint8_t)len;
            memcpy((*pp)->room, room, len);
        }
        struct home_ent *e = *pp;
        if (e != NULL && gen >= e->gen && lease != NULL && lease != e->lease) {
            dir_lease_get(lease);
            dir_lease_put(e->lease);
            e->lease = lease;
        } else if (e != NULL && gen > e->gen && lease == NULL) {
            dir_lease_put(e->lease); /* an older generation's */
            e->lease = NULL;
        }
        if (e != NULL && gen > e->gen)
            e->gen = gen;
    } else if (*pp != NULL && (gen == 0 || (*pp)->gen <= gen)) {
        struct home_ent *e = *pp;
        *pp = e->next;
        dir_lease_put(e->lease);
        free(e);
    }
    pthread_mutex_unlock(&sh->mu);
}

/* Lists of room names (struct homed): take removes, true when it was in;
 * add is true when the room was not in and now is (at the head). */
static bool homed_take(struct homed **list, const char *room, size_t len)
{
    for (struct homed **pp = list; *pp != NULL; pp = &(*pp)->next) {
        struct homed *h = *pp;
        if (h->len == len && memcmp(h->room, room, len) == 0) {
            *pp = h->next;
            free(h);
            return true;
        }
    }
    return false;
}

static bool homed_add(struct homed **list, const char *room, size_t len)
{
    for (struct homed *h = *list; h != NULL; h = h->next)
        if (h->len == len && memcmp(h->room, room, len) == 0)
            return false;
    struct homed *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return false;
    h->len = (uint8_t)len;
    memcpy(h->room, room, len);
    h->next = *list;
    *list = h;
    return true;
}

/* ------------------------------------------------------ unsubscribing */

/* An outbound subscription ends: UNSUBSCRIBE while the trunk is up, and
 * the room leaves the trunk. */
static void unsubscribe(struct trunk *t, struct troom *tr)
{
    struct trunkmsg u = {.type = TRUNKMSG_UNSUBSCRIBE, .handle = tr->handle, .gen = tr->gen};
    if (t->st == T_UP)
        trunk_send_msg(t, &u);
    trunk_troom_del(tr);
}

/* Every outbound subscription to room ends, but the one on trunk keep
 * (NULL: none kept). */
static void unsubscribe_room(struct trunk_set *set, const char *room, size_t len,
                             const struct trunk *keep)
{
    for (struct trunk *t = set->trunks; t != NULL; t = t->next) {
        struct troom *tr = t != keep && t->outbound ? trunk_troom_by_room(t, room, len) : NULL;
        if (tr != NULL)
            unsubscribe(t, tr);
    }
}

/* static_home: the room is reported to trunk_home_ops again at its next
 * first local member. */
static void homed_forget(struct trunk_set *set, const char *room, size_t len)
{
    (void)homed_take(&set->homed, room, len);
}

/* Each turn end when asked: outbound subscriptions still without a local
 * member are unsubscribed and dropped. */
void trunk_empty_rooms(struct trunk_set *set)
{
    set->check_empty = false;
    for (struct trunk *t = set->trunks; t != NULL; t = t->next) {
        if (!t->outbound)
            continue;
        struct troom *tr = t->rooms;
        while (tr != NULL) {
            struct troom *next = tr->next;
            if (tr->empty && tr->n_mir == 0) {
                log_info("event=trunk_room_empty peer=%s room=\"%.*s\"", t->peer_id,
                         (int)tr->room_len, tr->room);
                homed_forget(set, tr->room, tr->room_len);
                if (set->sh->cluster != NULL)
                    (void)homed_add(&set->dropped, tr->room, tr->room_len);
                unsubscribe(t, tr);
            } else {
                tr->empty = false;
            }
            tr = next;
        }
    }
}

void trunk_dropped_forget(struct trunk_set *set, const char *room, size_t len)
{
    (void)homed_take(&set->dropped, room, len);
}

/* ------------------------------------------------------------ fencing */

/* A home that lost a room (gone) or took it with a newer generation ends
 * the subscriptions it accepted with generation <= upto, on every worker
 * (TRUNK_MSG_REVOKE; trunk_on_revoke). */
static void revoke_post(struct relay_worker *rw, const char *room, size_t len, uint64_t upto)
{
    for (unsigned i = 0; i < rw->r->n_workers; i++) {
        struct buf *b = buf_new(sizeof(struct trunk_revoke));
        if (b == NULL) {
            log_error("event=trunk_revoke_lost reason=nomem");
            return;
        }
        struct trunk_revoke *rv = (struct trunk_revoke *)b->data;
        memset(rv, 0, sizeof(*rv));
        memcpy(rv->room, room, len);
        rv->room_len = len;
        rv->upto = upto;
        b->len = sizeof(*rv);
        struct worker_msg wm = {.type = TRUNK_MSG_REVOKE};
        memcpy(wm.u.bytes, &b, sizeof(b));
        if (worker_send(rw->w, i, &wm, WORKER_MSG_CONTROL) != 0)
            buf_unref(b);
    }
}

void trunk_on_revoke(struct trunk_set *set, const struct trunk_revoke *rv)
{
    for (struct trunk *t = set->trunks; t != NULL; t = t->next) {
        struct troom *tr = t->outbound ? NULL : trunk_troom_by_room(t, rv->room, rv->room_len);
        if (tr == NULL || tr->gen > rv->upto)
            continue;
        struct trunkmsg ack = {.type = TRUNKMSG_SUB_ACK,
                               .handle = tr->handle,
                               .gen = tr->gen,
                               .code = TRUNK_ERR_NOT_HOME};
        if (t->st == T_UP)
            trunk_send_msg(t, &ack);
        trunk_troom_del(tr);
    }
}

/* ------------------------------------------------------- the home ops */

static void op_home(struct relay_worker *rw, const char *room, size_t room_len, bool self,
                    const char *home_id, const char *home_addr, uint64_t gen, void *arg)
{
    (void)arg;
    struct trunk_set *set = rw->ts;
    if (set == NULL || !set->live || room_len == 0 || room_len > TRUNKMSG_ROOM_MAX)
        return;
    if (self) {
        home_set(set->sh, room, room_len, true, gen,
                 cluster_room_lease(set->sh->cluster, rw, room, room_len, gen));
        if (gen > 0)
            revoke_post(rw, room, room_len, gen - 1); /* fenced: older subscriptions */
        /* Subscriptions to another home for this room end here; that
         * relay learns it (REVIEW18 finding 12: it kept our ghosts). */
        unsubscribe_room(set, room, room_len, NULL);
        return;
    }
    /* Another relay is home at gen: if this one held the room at an older
     * generation, it stops acting as its home on every worker (REVIEW18
     * finding 4). */
    if (gen > 0 && home_held(set->sh, room, room_len)) {
        home_set(set->sh, room, room_len, false, gen - 1, NULL);
        revoke_post(rw, room, room_len, gen - 1);
    }
    struct trunk *t = trunk_out_get(set, home_id, home_addr);
    if (t == NULL)
        return;
    unsubscribe_room(set, room, room_len, t); /* the home moved */
    struct troom *tr = trunk_troom_by_room(t, room, room_len);
    if (tr != NULL) {
        if (gen <= tr->gen)
            return; /* known, or older than what we follow */
        tr->gen = gen;
        tr->active = false;
        trunk_ghosts_clear(tr);
    } else {
        tr = trunk_troom_new(t, ++t->next_handle, gen, room, room_len);
        if (tr == NULL)
            return;
    }
    if (t->st == T_UP)
        trunk_send_subscribe(tr);
}

static void op_gone(struct relay_worker *rw, const char *room, size_t room_len, uint64_t gen,
                    void *arg)
{
    (void)arg;
    struct trunk_set *set = rw->ts;
    if (set == NULL || !set->live)
        return;
    home_set(set->sh, room, room_len, false, gen, NULL);
    revoke_post(rw, room, room_len, gen);
    unsubscribe_room(set, room, room_len, NULL);
}

const struct cluster_home_ops trunk_home_ops = {
    .home = op_home,
    .gone = op_gone,
};

/* -------------------------------------------------------- static_home */

/* static_home: the first local member of a room on this relay makes its
 * owner worker call trunk_home_ops.home, as the directory's claim answer
 * will. */
void trunk_post_local_join(struct relay_worker *rw, const char *room, size_t len)
{
    struct buf *b = buf_new((uint32_t)len);
    if (b == NULL)
        return;
    memcpy(b->data, room, len);
    b->len = (uint32_t)len;
    struct worker_msg wm = {.type = TRUNK_MSG_LOCAL_JOIN};
    memcpy(wm.u.bytes, &b, sizeof(b));
    unsigned owner = relay_room_owner(rw->r, room, len);
    if (worker_send(rw->w, owner, &wm, WORKER_MSG_CONTROL) != 0)
        buf_unref(b);
}

void trunk_on_local_join(struct trunk_set *set, struct buf *b)
{
    struct trunk_shared *sh = set->sh;
    if (!sh->static_mode) {
        /* Directory: a member joined a room whose subscription ended (its
         * last member left while this one's JOIN was on its way) and that
         * did not close: learn the home again. */
        if (sh->cluster == NULL || !homed_take(&set->dropped, (const char *)b->data, b->len))
            return;
        for (struct trunk *t = set->trunks; t != NULL; t = t->next)
            if (t->outbound && trunk_troom_by_room(t, (const char *)b->data, b->len) != NULL)
                return;
        cluster_room_retry(sh->cluster, set->rw, (const char *)b->data, b->len);
        return;
    }
    /* Reported already (or no memory): nothing to do; else added at the
     * head. */
    if (!homed_add(&set->homed, (const char *)b->data, b->len))
        return;
    struct homed *h = set->homed;
    trunk_home_ops.home(set->rw, h->room, h->len, sh->static_self, sh->static_id, sh->static_addr,
                        STATIC_GEN, set->rw->r);
}

/* ------------------------------------------------------ test hooks */

/* th to the room's owner worker (TRUNK_MSG_TEST_HOME). */
static int test_home_post(struct relay *r, const struct test_home *th)
{
    struct buf *b = buf_new(sizeof(*th));
    if (b == NULL)
        return ROOST_ENOMEM;
    memcpy(b->data, th, sizeof(*th));
    b->len = sizeof(*th);
    struct worker_msg wm = {.type = TRUNK_MSG_TEST_HOME};
    memcpy(wm.u.bytes, &b, sizeof(b));
    int rc = worker_pool_post(r->pool, relay_room_owner(r, th->room, th->room_len), &wm);
    if (rc != 0)
        buf_unref(b);
    return rc;
}

int trunk_test_home(struct relay *r, const char *room, bool self, const char *home_id,
                    const char *home_addr, uint64_t gen)
{
    size_t len = strlen(room);
    struct test_home th;
    if (len == 0 || len > TRUNKMSG_ROOM_MAX || strlen(home_id) > TRUNKMSG_ID_MAX ||
        strlen(home_addr) >= sizeof(th.addr))
        return ROOST_EINVAL;
    memset(&th, 0, sizeof(th));
    memcpy(th.room, room, len);
    th.room_len = len;
    th.self = self;
    snprintf(th.id, sizeof(th.id), "%s", home_id);
    snprintf(th.addr, sizeof(th.addr), "%s", home_addr);
    th.gen = gen;
    return test_home_post(r, &th);
}

int trunk_test_gone(struct relay *r, const char *room, uint64_t gen)
{
    size_t len = strlen(room);
    if (len == 0 || len > TRUNKMSG_ROOM_MAX)
        return ROOST_EINVAL;
    struct test_home th;
    memset(&th, 0, sizeof(th));
    memcpy(th.room, room, len);
    th.room_len = len;
    th.gone = true;
    th.gen = gen;
    return test_home_post(r, &th);
}
