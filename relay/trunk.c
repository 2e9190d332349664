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
#include "relay/trunk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "cluster/trunkmsg.h"
#include "core/be.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stat.h"
#include "core/timer.h"
#include "core/worker.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "quic/client.h"
#include "quic/quic.h"
#include "relay/relay_int.h"
#include "room/room.h"

/* From relay/cluster.h (wt-cluster); weak so that this branch links
 * without it. */
__attribute__((weak)) int cluster_room_retry(struct cluster *c, struct relay_worker *rw,
                                             const char *room, size_t room_len);

#define EXPORTER_LABEL "EXPORTER-roost-trunk"
#define STATIC_GEN 1u
#define BACKOFF_MIN_NS (50ull * 1000000ull)
#define BACKOFF_MAX_NS (2000ull * 1000000ull)

#define TSTAT_INC(set, f) stat_inc((set)->st, STAT_IDX(struct trunk_stats, f))
#define TSTAT_DEC(set, f) stat_dec((set)->st, STAT_IDX(struct trunk_stats, f))
#define TSTAT_ADD(set, f, n) stat_add((set)->st, STAT_IDX(struct trunk_stats, f), n)

/* ------------------------------------------------------------ structures */

struct home_ent {
    struct home_ent *next;
    uint8_t len;
    char room[TRUNKMSG_ROOM_MAX];
    uint64_t gen;
};

struct trunk_shared {
    char id[TRUNKMSG_ID_MAX + 1];
    size_t id_len;
    uint8_t secret[256];
    size_t secret_len;
    uint8_t prefix;
    bool static_mode, static_self;
    char static_id[TRUNKMSG_ID_MAX + 1];
    char static_addr[256];
    pthread_mutex_t mu; /* homes: owner workers write, accepting workers read */
    struct home_ent *homes;
    struct cluster *cluster;
};

enum { TEP_HIDDEN = 1, TEP_GHOST = 2 };

struct troom;

/* A room endpoint of this module; passed to lib/room tagged (low bit set)
 * so that trunk_room_ops tells it from a session. */
struct tep {
    uint8_t kind;
    struct troom *tr;
    uint32_t pid; /* ghost: the remote participant */
    struct room_member *m;
};

struct mirror {
    uint32_t pid;
    uint8_t flags; /* PERM_* */
    uint8_t name_len;
    uint8_t name[TRUNKMSG_NAME_MAX];
};

struct trunk;

struct troom {
    struct trunk *t;
    struct troom *next;
    uint32_t handle;
    uint64_t gen;
    bool active; /* subscription accepted: media and presence flow */
    uint8_t room_len;
    char room[TRUNKMSG_ROOM_MAX + 1];
    struct tep hidden;
    struct tep **ghosts;
    uint32_t n_ghosts, cap_ghosts;
    struct mirror *mir; /* this side's members as the hidden member saw them */
    uint32_t n_mir, cap_mir;
};

enum tstate { T_DIALING = 0, T_HELLO, T_UP, T_DOWN };

struct trunk {
    struct trunk_set *set;
    struct trunk *next;
    bool outbound;
    enum tstate st;
    struct quic_conn *c;
    struct quic_conn *dead; /* outbound: closed connection to free before redialing */
    char peer_id[TRUNKMSG_ID_MAX + 1];
    uint8_t peer_len;
    char host[64];
    uint16_t port;
    struct troom *rooms;
    uint32_t next_handle;
    struct timer redial;
    uint64_t backoff_ns;
    uint64_t down_since; /* 0: never up, or up */
    bool was_up;
};

struct homed {
    struct homed *next;
    uint8_t len;
    char room[TRUNKMSG_ROOM_MAX];
};

struct trunk_set {
    struct relay_worker *rw;
    struct trunk_shared *sh;
    struct quic_client *cl;
    struct timer cl_timer;
    struct trunk *trunks;
    struct homed *homed; /* static_home: rooms already reported to trunk_home_ops */
    struct msg *scratch;
    bool live; /* between trunk_set_new and trunk_set_del, on its worker */
    _Atomic uint64_t st[STAT_N(struct trunk_stats)];
};

static const struct quic_app_ops trunk_client_ops;

static inline void *tep_ptr(struct tep *e)
{
    return (void *)((uintptr_t)e | 1u);
}

static inline struct tep *tep_of(void *ep)
{
    return ((uintptr_t)ep & 1u) ? (struct tep *)((uintptr_t)ep & ~(uintptr_t)1u) : NULL;
}

static inline void *trunk_user(struct trunk *t)
{
    return (void *)((uintptr_t)t | 1u);
}

static inline struct trunk *trunk_of(struct quic_conn *c)
{
    uintptr_t u = (uintptr_t)quic_conn_user(c);
    return (u & 1u) ? (struct trunk *)(u & ~(uintptr_t)1u) : NULL;
}

static uint64_t now_of(struct trunk_set *set)
{
    return worker_now(set->rw->w);
}

/* --------------------------------------------------------- process level */

int trunk_shared_new(struct trunk_shared **out, const struct relay_config *cfg)
{
    *out = NULL;
    if (cfg->cluster_relay_id[0] == '\0')
        return 0;
    struct trunk_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_EINVAL;
    sh->id_len = strlen(cfg->cluster_relay_id);
    if (sh->id_len > TRUNKMSG_ID_MAX) {
        log_error("event=trunk_config msg=\"relay_id longer than %d bytes\"", TRUNKMSG_ID_MAX);
        goto fail;
    }
    memcpy(sh->id, cfg->cluster_relay_id, sh->id_len);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < sh->id_len; i++)
        h = (h ^ (uint8_t)sh->id[i]) * 16777619u;
    sh->prefix = (uint8_t)(h % 255u + 1u);
    if (cfg->cluster_secret_file[0] == '\0') {
        log_error("event=trunk_config msg=\"cluster_secret_file is required\"");
        goto fail;
    }
    int fd = open(cfg->cluster_secret_file, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        log_error("event=trunk_config msg=\"cannot open cluster_secret_file\" path=%s err=\"%s\"",
                  cfg->cluster_secret_file, strerror(errno));
        rc = ROOST_EIO;
        goto fail;
    }
    ssize_t n = read(fd, sh->secret, sizeof(sh->secret));
    close(fd);
    while (n > 0 && (sh->secret[n - 1] == '\n' || sh->secret[n - 1] == '\r'))
        n--;
    if (n < 16) {
        log_error("event=trunk_config msg=\"cluster secret shorter than 16 bytes\" path=%s",
                  cfg->cluster_secret_file);
        goto fail;
    }
    sh->secret_len = (size_t)n;
    if (cfg->cluster_static_home[0] != '\0') {
        const char *at = strchr(cfg->cluster_static_home, '@');
        if (at == NULL || at == cfg->cluster_static_home ||
            (size_t)(at - cfg->cluster_static_home) > TRUNKMSG_ID_MAX || strrchr(at, ':') == NULL ||
            strlen(at + 1) >= sizeof(sh->static_addr)) {
            log_error("event=trunk_config msg=\"static_home must be ID@HOST:PORT\" value=\"%s\"",
                      cfg->cluster_static_home);
            goto fail;
        }
        sh->static_mode = true;
        memcpy(sh->static_id, cfg->cluster_static_home, (size_t)(at - cfg->cluster_static_home));
        snprintf(sh->static_addr, sizeof(sh->static_addr), "%s", at + 1);
        sh->static_self = strcmp(sh->static_id, sh->id) == 0;
    }
    pthread_mutex_init(&sh->mu, NULL);
    log_info("event=trunk_config relay_id=%s pid_prefix=%u static_home=%s%s", sh->id, sh->prefix,
             sh->static_mode ? sh->static_id : "-", sh->static_self ? " (self)" : "");
    *out = sh;
    return 0;
fail:
    free(sh);
    return rc;
}

void trunk_shared_del(struct trunk_shared *sh)
{
    if (sh == NULL)
        return;
    while (sh->homes != NULL) {
        struct home_ent *e = sh->homes;
        sh->homes = e->next;
        free(e);
    }
    pthread_mutex_destroy(&sh->mu);
    explicit_bzero(sh->secret, sizeof(sh->secret));
    free(sh);
}

uint8_t trunk_pid_prefix(const struct trunk_shared *sh)
{
    return sh->prefix;
}

void trunk_shared_set_cluster(struct trunk_shared *sh, struct cluster *c)
{
    sh->cluster = c;
}

/* The home this relay holds for room: TRUNK_OK with the generation, or
 * TRUNK_ERR_NOT_HOME / TRUNK_ERR_STALE_GEN against the subscriber's gen. */
static uint32_t home_check(struct trunk_shared *sh, const uint8_t *room, size_t len, uint64_t gen)
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
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return code;
}

static void home_set(struct trunk_shared *sh, const char *room, size_t len, bool on, uint64_t gen)
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
        if (*pp != NULL && gen > (*pp)->gen)
            (*pp)->gen = gen;
    } else if (*pp != NULL && (gen == 0 || (*pp)->gen <= gen)) {
        struct home_ent *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&sh->mu);
}

/* ----------------------------------------------------------- sending */

static int send_msg(struct trunk *t, const struct trunkmsg *m)
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

static void send_presence(struct troom *tr, uint8_t kind, const struct mirror *mi)
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
    if (send_msg(tr->t, &m) == 0)
        TSTAT_INC(tr->t->set, presence_out);
}

static void send_subscribe(struct troom *tr)
{
    struct trunkmsg m = {
        .type = TRUNKMSG_SUBSCRIBE, .handle = tr->handle, .gen = tr->gen, .room_len = tr->room_len};
    memcpy(m.room, tr->room, tr->room_len);
    send_msg(tr->t, &m);
}

/* ------------------------------------------------------------- trooms */

static struct tep *ghost_find(const struct troom *tr, uint32_t pid)
{
    for (uint32_t i = 0; i < tr->n_ghosts; i++)
        if (tr->ghosts[i]->pid == pid)
            return tr->ghosts[i];
    return NULL;
}

static void ghost_add(struct troom *tr, uint32_t pid, uint8_t flags, const uint8_t *name,
                      size_t name_len)
{
    if (ghost_find(tr, pid) != NULL)
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

static void ghost_del_at(struct troom *tr, uint32_t i)
{
    struct tep *e = tr->ghosts[i];
    room_member_del(e->m);
    free(e);
    tr->ghosts[i] = tr->ghosts[--tr->n_ghosts];
}

static void ghosts_clear(struct troom *tr)
{
    while (tr->n_ghosts > 0)
        ghost_del_at(tr, tr->n_ghosts - 1);
}

static struct troom *troom_by_handle(struct trunk *t, uint32_t handle)
{
    for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
        if (tr->handle == handle)
            return tr;
    return NULL;
}

static struct troom *troom_by_room(struct trunk *t, const char *room, size_t len)
{
    for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
        if (tr->room_len == len && memcmp(tr->room, room, len) == 0)
            return tr;
    return NULL;
}

static struct troom *troom_new(struct trunk *t, uint32_t handle, uint64_t gen, const void *room,
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

static void troom_del(struct troom *tr)
{
    struct trunk *t = tr->t;
    for (struct troom **pp = &t->rooms; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == tr) {
            *pp = tr->next;
            break;
        }
    }
    ghosts_clear(tr);
    room_member_del(tr->hidden.m);
    free(tr->ghosts);
    free(tr->mir);
    free(tr);
}

static struct mirror *mirror_find(struct troom *tr, uint32_t pid)
{
    for (uint32_t i = 0; i < tr->n_mir; i++)
        if (tr->mir[i].pid == pid)
            return &tr->mir[i];
    return NULL;
}

/* A member of this side appeared (hidden member's JOINED or events). */
static void mirror_join(struct troom *tr, uint32_t pid, uint8_t flags, struct msg_str name)
{
    if (ghost_find(tr, pid) != NULL || mirror_find(tr, pid) != NULL)
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
        send_presence(tr, TRUNK_PRESENCE_JOIN, mi);
}

static void mirror_leave(struct troom *tr, uint32_t pid)
{
    struct mirror *mi = mirror_find(tr, pid);
    if (mi == NULL)
        return;
    if (tr->active && tr->t->st == T_UP)
        send_presence(tr, TRUNK_PRESENCE_LEAVE, mi);
    *mi = tr->mir[--tr->n_mir];
}

/* The subscription became active: the other side learns this side's room. */
static void troom_activate(struct troom *tr)
{
    tr->active = true;
    for (uint32_t i = 0; i < tr->n_mir; i++)
        send_presence(tr, TRUNK_PRESENCE_JOIN, &tr->mir[i]);
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
            mirror_join(tr, mm->participant_id, member_perms(mm->flags), mm->display_name);
        }
    } else if (m->type == MSG_PARTICIPANT_EVENTS) {
        for (uint32_t i = 0; i < m->u.events.n_events; i++) {
            const struct msg_event *e = &m->u.events.events[i];
            if (e->kind == MSG_EV_JOIN)
                mirror_join(tr, e->participant_id, member_perms(e->flags), e->display_name);
            else
                mirror_leave(tr, e->participant_id);
        }
    }
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
    if (send_msg(tr->t, &k) == 0)
        TSTAT_INC(tr->t->set, kfreq_relayed);
}

static int hidden_media(struct troom *tr, struct buf *b, uint32_t off, uint32_t len)
{
    struct trunk *t = tr->t;
    if (!tr->active || t->st != T_UP || len < MEDIA_SENDER_LEN)
        return ROOST_ECLOSED;
    if (ghost_find(tr, be_get32(b->data + off)) != NULL)
        return 0; /* came from this trunk: star, never back */
    uint8_t d[TRUNKMSG_DGRAM_HDR_LEN + ROOM_MAX_DATAGRAM + MEDIA_SENDER_LEN];
    if (len > sizeof(d) - TRUNKMSG_DGRAM_HDR_LEN)
        return ROOST_ETOOBIG;
    trunkmsg_dgram_hdr(d, tr->handle, tr->gen);
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

static void post_local_join(struct relay_worker *rw, const char *room, size_t len);

static void tr_joined(void *ep, uint32_t code, void *arg)
{
    struct tep *e = tep_of(ep);
    if (e == NULL) {
        struct session *ss = ep;
        if (session_room_ops.joined != NULL)
            session_room_ops.joined(ep, code, arg);
        struct relay_worker *rw = arg;
        if (code == 0 && rw->ts != NULL && rw->ts->live && rw->ts->sh->static_mode)
            post_local_join(rw, ss->room, ss->room_len);
        return;
    }
    if (code != 0)
        log_warn("event=trunk_member_rejected kind=%s code=%u",
                 e->kind == TEP_HIDDEN ? "hidden" : "remote", code);
}

static void tr_replaced(void *ep, void *arg)
{
    if (tep_of(ep) == NULL && session_room_ops.replaced != NULL)
        session_room_ops.replaced(ep, arg);
}

static int tr_link_stats(void *ep, struct room_link *out, void *arg)
{
    if (tep_of(ep) != NULL || session_room_ops.link_stats == NULL)
        return ROOST_ENOENT; /* no QUALITY for trunk members (docs/CLUSTER.md §2.7) */
    return session_room_ops.link_stats(ep, out, arg);
}

const struct room_ops trunk_room_ops = {
    .media = tr_media,
    .control = tr_control,
    .joined = tr_joined,
    .replaced = tr_replaced,
    .link_stats = tr_link_stats,
};

/* --------------------------------------------------------- connections */

static void trunk_free(struct trunk *t)
{
    struct trunk_set *set = t->set;
    while (t->rooms != NULL)
        troom_del(t->rooms);
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

static void cl_rearm(struct trunk_set *set)
{
    if (set->cl == NULL)
        return;
    uint64_t now = now_of(set);
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
    quic_client_process(set->cl, now_of(set));
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
        timer_arm(worker_timers(set->rw->w), &t->redial, now_of(set) + t->backoff_ns);
        return;
    }
    cl_process(set);
}

static void redial_cb(struct timer *tm, uint64_t now, void *arg)
{
    (void)tm;
    (void)now;
    struct trunk *t = arg;
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

static struct trunk *trunk_out_get(struct trunk_set *set, const char *id, const char *addr)
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

static void trunk_up(struct trunk *t)
{
    struct trunk_set *set = t->set;
    t->st = T_UP;
    TSTAT_INC(set, trunks_up);
    if (t->outbound) {
        if (t->was_up) {
            TSTAT_INC(set, reconnects);
            TSTAT_ADD(set, gap_ns, now_of(set) - t->down_since);
        }
        t->was_up = true;
        t->down_since = 0;
        t->backoff_ns = BACKOFF_MIN_NS;
        for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next)
            send_subscribe(tr);
    }
    log_info("event=trunk_up peer=%s dir=%s", t->peer_id, t->outbound ? "out" : "in");
}

static int hello_mac(struct trunk *t, char role, bool ours, uint8_t mac[TRUNKMSG_MAC_LEN])
{
    struct trunk_shared *sh = t->set->sh;
    uint8_t ex[32];
    int rc = quic_conn_export(t->c, EXPORTER_LABEL, ex, sizeof(ex));
    if (rc != 0)
        return rc;
    if (ours)
        return trunkmsg_mac(sh->secret, sh->secret_len, role, sh->id, sh->id_len, t->peer_id,
                            t->peer_len, ex, mac);
    return trunkmsg_mac(sh->secret, sh->secret_len, role, t->peer_id, t->peer_len, sh->id,
                        sh->id_len, ex, mac);
}

static int send_hello(struct trunk *t)
{
    struct trunk_shared *sh = t->set->sh;
    struct trunkmsg m = {
        .type = TRUNKMSG_HELLO, .version = TRUNKMSG_VERSION, .id_len = (uint8_t)sh->id_len};
    memcpy(m.id, sh->id, sh->id_len);
    int rc = hello_mac(t, t->outbound ? 'c' : 's', true, m.mac);
    return rc != 0 ? rc : send_msg(t, &m);
}

static void close_auth(struct trunk *t, const char *why)
{
    TSTAT_INC(t->set, auth_failures);
    log_warn("event=trunk_auth_failed peer=%.*s dir=%s reason=\"%s\"", (int)t->peer_len, t->peer_id,
             t->outbound ? "out" : "in", why);
    quic_conn_close(t->c, TRUNK_ERR_AUTH, "trunk authentication failed");
}

static void on_hello(struct trunk *t, const struct trunkmsg *m)
{
    if (t->st != T_HELLO) {
        quic_conn_close(t->c, TRUNK_ERR_PROTOCOL, "unexpected HELLO");
        return;
    }
    if (m->version != TRUNKMSG_VERSION) {
        close_auth(t, "version");
        return;
    }
    if (t->outbound) {
        if (m->id_len != t->peer_len || memcmp(m->id, t->peer_id, t->peer_len) != 0) {
            close_auth(t, "the home answered with another relay id");
            return;
        }
    } else {
        memcpy(t->peer_id, m->id, m->id_len);
        t->peer_id[m->id_len] = '\0';
        t->peer_len = m->id_len;
    }
    uint8_t want[TRUNKMSG_MAC_LEN];
    if (hello_mac(t, t->outbound ? 's' : 'c', false, want) != 0 ||
        gnutls_memcmp(want, m->mac, TRUNKMSG_MAC_LEN) != 0) {
        close_auth(t, "bad MAC (cluster secret differs?)");
        return;
    }
    if (!t->outbound && send_hello(t) != 0)
        return; /* closing (too slow) */
    trunk_up(t);
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
    ack.code = home_check(set->sh, m->room, m->room_len, m->gen);
    struct troom *old = troom_by_handle(t, m->handle);
    if (old != NULL)
        troom_del(old);
    if (ack.code == TRUNK_OK) {
        struct troom *tr = troom_new(t, m->handle, m->gen, m->room, m->room_len);
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
    send_msg(t, &ack);
}

static void on_sub_ack(struct trunk *t, const struct trunkmsg *m)
{
    struct troom *tr = troom_by_handle(t, m->handle);
    if (tr == NULL || tr->gen != m->gen)
        return; /* answer to an older subscription */
    if (m->code == TRUNK_OK) {
        troom_activate(tr);
        return;
    }
    log_warn("event=trunk_subscribe_refused peer=%s room=\"%.*s\" gen=%llu code=%u", t->peer_id,
             (int)tr->room_len, tr->room, (unsigned long long)tr->gen, m->code);
    TSTAT_INC(t->set, subs_rejected);
    struct trunk_shared *sh = t->set->sh;
    if (sh->cluster != NULL && cluster_room_retry != NULL)
        cluster_room_retry(sh->cluster, t->set->rw, tr->room, tr->room_len);
}

static void on_control(struct trunk *t, const uint8_t *body, size_t len)
{
    struct trunkmsg m;
    int rc = trunkmsg_decode(body, len, &m);
    if (rc == ROOST_EUNKNOWN)
        return; /* newer peer: ignored */
    if (rc != 0) {
        quic_conn_close(t->c, TRUNK_ERR_PROTOCOL, "malformed trunk message");
        return;
    }
    if (t->st != T_UP && m.type != TRUNKMSG_HELLO) {
        close_auth(t, "message before HELLO");
        return;
    }
    if (m.type == TRUNKMSG_HELLO) {
        on_hello(t, &m);
        return;
    }
    if (m.type == TRUNKMSG_SUBSCRIBE) {
        on_subscribe(t, &m);
        return;
    }
    struct troom *tr = troom_by_handle(t, m.handle);
    if (tr == NULL)
        return;
    if (m.gen != tr->gen) {
        TSTAT_INC(t->set, stale_gen_drops);
        return;
    }
    switch (m.type) {
    case TRUNKMSG_UNSUBSCRIBE:
        if (!t->outbound)
            troom_del(tr);
        break;
    case TRUNKMSG_SUB_ACK:
        on_sub_ack(t, &m);
        break;
    case TRUNKMSG_PRESENCE:
        TSTAT_INC(t->set, presence_in);
        if (m.kind == TRUNK_PRESENCE_JOIN) {
            ghost_add(tr, m.pid, m.flags, m.name, m.name_len);
        } else {
            for (uint32_t i = 0; i < tr->n_ghosts; i++) {
                if (tr->ghosts[i]->pid == m.pid) {
                    ghost_del_at(tr, i);
                    break;
                }
            }
        }
        break;
    case TRUNKMSG_KFREQ:
        if (tr->hidden.m != NULL)
            (void)room_keyframe_request(tr->hidden.m, m.pid, m.stream);
        break;
    default: /* QUALITY: not yet forwarded (CLUSTER.md §2.7) */
        break;
    }
}

static void on_datagram(struct trunk *t, const uint8_t *d, size_t len)
{
    uint32_t handle;
    uint64_t gen;
    int off = trunkmsg_dgram_parse(d, len, &handle, &gen);
    struct troom *tr = off > 0 && t->st == T_UP ? troom_by_handle(t, handle) : NULL;
    if (tr == NULL || len < (size_t)off + MEDIA_R2C_HDR_LEN) {
        TSTAT_INC(t->set, unknown_drops);
        return;
    }
    if (gen != tr->gen) {
        TSTAT_INC(t->set, stale_gen_drops);
        return;
    }
    struct tep *g = ghost_find(tr, be_get32(d + off));
    if (g == NULL || room_publish_relayed(g->m, d + off, len - (size_t)off) != 0) {
        TSTAT_INC(t->set, unknown_drops);
        return;
    }
    TSTAT_INC(t->set, frames_in);
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
    if (code == TRUNK_ERR_AUTH && t->st != T_UP && t->outbound) {
        struct quic_close_info ci;
        quic_conn_close_info(t->c, &ci);
        if (ci.remote)
            TSTAT_INC(set, auth_failures); /* refused by the other side */
    }
    if (!t->outbound) {
        t->c = NULL;
        trunk_free(t);
        return;
    }
    t->dead = t->c;
    t->c = NULL;
    t->st = T_DOWN;
    if (was_up) {
        TSTAT_INC(set, trunks_lost);
        t->down_since = now_of(set);
    }
    for (struct troom *tr = t->rooms; tr != NULL; tr = tr->next) {
        tr->active = false;
        ghosts_clear(tr);
        if (set->sh->cluster != NULL && cluster_room_retry != NULL)
            cluster_room_retry(set->sh->cluster, set->rw, tr->room, tr->room_len);
    }
    timer_arm(worker_timers(set->rw->w), &t->redial, now_of(set) + t->backoff_ns);
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
    return send_hello(t) == 0 ? 0 : QUIC_APP_INTERNAL;
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

const struct quic_app_ops trunk_quic_ops = {
    .on_open = sq_on_open,
    .on_control = sq_on_control,
    .on_datagram = sq_on_datagram,
    .on_close = sq_on_close,
};

/* ------------------------------------------------------- the home ops */

static void op_home(struct relay_worker *rw, const char *room, size_t room_len, bool self,
                    const char *home_id, const char *home_addr, uint64_t gen, void *arg)
{
    (void)arg;
    struct trunk_set *set = rw->ts;
    if (set == NULL || !set->live || room_len == 0 || room_len > TRUNKMSG_ROOM_MAX)
        return;
    if (self) {
        home_set(set->sh, room, room_len, true, gen);
        /* Subscriptions to another home for this room end here. */
        for (struct trunk *t = set->trunks; t != NULL; t = t->next) {
            struct troom *tr = t->outbound ? troom_by_room(t, room, room_len) : NULL;
            if (tr != NULL)
                troom_del(tr);
        }
        return;
    }
    struct trunk *t = trunk_out_get(set, home_id, home_addr);
    if (t == NULL)
        return;
    for (struct trunk *o = set->trunks; o != NULL; o = o->next) {
        struct troom *tr = o != t && o->outbound ? troom_by_room(o, room, room_len) : NULL;
        if (tr != NULL) { /* the home moved */
            struct trunkmsg u = {
                .type = TRUNKMSG_UNSUBSCRIBE, .handle = tr->handle, .gen = tr->gen};
            if (o->st == T_UP)
                send_msg(o, &u);
            troom_del(tr);
        }
    }
    struct troom *tr = troom_by_room(t, room, room_len);
    if (tr != NULL) {
        if (gen <= tr->gen)
            return; /* known, or older than what we follow */
        tr->gen = gen;
        tr->active = false;
        ghosts_clear(tr);
    } else {
        tr = troom_new(t, ++t->next_handle, gen, room, room_len);
        if (tr == NULL)
            return;
    }
    if (t->st == T_UP)
        send_subscribe(tr);
}

static void op_gone(struct relay_worker *rw, const char *room, size_t room_len, uint64_t gen,
                    void *arg)
{
    (void)arg;
    struct trunk_set *set = rw->ts;
    if (set == NULL || !set->live)
        return;
    home_set(set->sh, room, room_len, false, gen);
    for (struct trunk *t = set->trunks; t != NULL; t = t->next) {
        struct troom *tr = t->outbound ? troom_by_room(t, room, room_len) : NULL;
        if (tr == NULL)
            continue;
        struct trunkmsg u = {.type = TRUNKMSG_UNSUBSCRIBE, .handle = tr->handle, .gen = tr->gen};
        if (t->st == T_UP)
            send_msg(t, &u);
        troom_del(tr);
    }
}

const struct cluster_home_ops trunk_home_ops = {
    .home = op_home,
    .gone = op_gone,
};

/* static_home: the first local member of a room on this relay makes its
 * owner worker call trunk_home_ops.home, as the directory's claim answer
 * will. */
static void post_local_join(struct relay_worker *rw, const char *room, size_t len)
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

static void on_local_join(struct trunk_set *set, struct buf *b)
{
    struct trunk_shared *sh = set->sh;
    for (struct homed *h = set->homed; h != NULL; h = h->next)
        if (h->len == b->len && memcmp(h->room, b->data, b->len) == 0)
            return;
    struct homed *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return;
    h->len = (uint8_t)b->len;
    memcpy(h->room, b->data, b->len);
    h->next = set->homed;
    set->homed = h;
    trunk_home_ops.home(set->rw, h->room, h->len, sh->static_self, sh->static_id, sh->static_addr,
                        STATIC_GEN, set->rw->r);
}

/* Test hook: every dialed trunk of this worker is closed as if the path
 * had failed (the other side sees the close); the trunks re-dial. */
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
    if (msg->type == TRUNK_MSG_LOCAL_JOIN)
        memcpy(&b, msg->u.bytes, sizeof(b));
    if (rw->ts != NULL && rw->ts->live) {
        if (msg->type == TRUNK_MSG_LOCAL_JOIN)
            on_local_join(rw->ts, b);
        else if (msg->type == TRUNK_MSG_TEST_DROP)
            test_drop(rw->ts);
    }
    buf_unref(b);
}

static void trunk_msg_discard(const struct worker_msg *msg)
{
    if (msg->type != TRUNK_MSG_LOCAL_JOIN)
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
    while (set->trunks != NULL) {
        struct trunk *t = set->trunks;
        if (t->st == T_UP)
            TSTAT_DEC(set, trunks_up);
        t->st = T_DOWN;
        trunk_free(t);
    }
    timer_cancel(worker_timers(rw->w), &set->cl_timer);
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
    free(set->scratch);
    set->scratch = NULL;
    set->live = false;
}

void trunk_turn_end(struct relay_worker *rw)
{
    if (rw->ts != NULL && rw->ts->live && rw->ts->cl != NULL)
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
