/* The roost protocol on one client connection (include/roost/client.h,
 * "session"): HELLO when the connection opens, JOIN after WELCOME, the
 * relay's messages decoded into callbacks, media headers built on send and
 * parsed on receive. The wire rules are docs/PROTOCOL.md; the codecs are
 * lib/proto's, so this file only keeps state and translates. */
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/client_int.h"
#include "core/error.h"
#include "proto/errcode.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/quality.h"

_Static_assert(ROOST_MEDIA_HDR_LEN == MEDIA_C2R_HDR_LEN, "media header length");
_Static_assert(ROOST_MEDIA_RECV_HDR_LEN == MEDIA_R2C_HDR_LEN, "media header length");
_Static_assert(ROOST_MEDIA_KEYFRAME == MEDIA_F_KEYFRAME && ROOST_MEDIA_END == MEDIA_F_END &&
                   ROOST_MEDIA_VIDEO == MEDIA_F_VIDEO && ROOST_MEDIA_START == MEDIA_F_START,
               "media flags");
_Static_assert(ROOST_PERM_PUBLISH == MSG_PERM_PUBLISH && ROOST_PERM_SUBSCRIBE == MSG_PERM_SUBSCRIBE,
               "permission bits");

/* The largest media datagram the session sends in one packet. QUIC packets
 * stay at 1200 bytes of UDP payload until path MTU discovery says more, and
 * a DATAGRAM frame shares them with the short header (CID up to 20 bytes),
 * packet number, AEAD tag and frame header (about 44 bytes), and the relay
 * adds 4 bytes towards the receivers: WELCOME.max_datagram (1200 from
 * today's relay) alone would let the QUIC layer drop full-size packets
 * locally. */
#define PATH_SAFE_DATAGRAM 1100

/* A member as seen at JOIN, so that a LEAVE can name who left. */
struct peer {
    uint32_t pid;
    char name[DISPLAY_NAME_MAX + 1];
};

struct roost_session {
    struct roost_conn *conn;
    const struct roost_session_callbacks *cbs;
    void *arg;
    char room[ROOM_ID_MAX + 1];
    char token[JOIN_TOKEN_MAX + 1];
    char name[DISPLAY_NAME_MAX + 1];
    char client_name[CLIENT_NAME_MAX + 1];
    uint32_t pid;          /* from WELCOME */
    uint32_t max_datagram; /* from WELCOME */
    bool joined, closed;
    struct msg *m;    /* decode scratch (about 5 KiB) */
    uint8_t *scratch; /* MEDIA_DATAGRAM_MAX: one outgoing datagram */
    uint32_t seq[256];
    struct peer *peers; /* unordered; small rooms, linear search */
    size_t n_peers, cap_peers;
};

static void str_copy(char *dst, size_t cap, struct msg_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n > 0)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static struct msg_str view(const char *s)
{
    return (struct msg_str){.ptr = (const uint8_t *)s, .len = strlen(s)};
}

static int send_msg(struct roost_session *s, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    if (n < 0)
        return n;
    return roost_conn_send_control(s->conn, body, (size_t)n);
}

static void build_join(const struct roost_session *s, struct msg *m)
{
    *m = (struct msg){.type = MSG_JOIN};
    m->u.join.room_id = view(s->room);
    m->u.join.token = view(s->token);
    m->u.join.display_name = view(s->name);
}

/* ---------------------------------------------------------- presence */

static struct peer *peer_find(struct roost_session *s, uint32_t pid)
{
    for (size_t i = 0; i < s->n_peers; i++)
        if (s->peers[i].pid == pid)
            return &s->peers[i];
    return NULL;
}

static void presence_join(struct roost_session *s, uint32_t pid, uint8_t flags, struct msg_str name)
{
    if (pid == s->pid)
        return;
    struct peer *p = peer_find(s, pid);
    if (p == NULL && s->n_peers == s->cap_peers) {
        size_t cap = s->cap_peers ? 2 * s->cap_peers : 16;
        struct peer *np = realloc(s->peers, cap * sizeof(*np));
        if (np != NULL) {
            s->peers = np;
            s->cap_peers = cap;
        }
    }
    struct peer tmp;
    if (p == NULL && s->n_peers < s->cap_peers)
        p = &s->peers[s->n_peers++];
    if (p == NULL)
        p = &tmp; /* out of memory: still report the JOIN, without a name at LEAVE */
    p->pid = pid;
    str_copy(p->name, sizeof(p->name), name);
    if (s->cbs->on_presence != NULL) {
        struct roost_presence ev = {
            .kind = ROOST_PRESENCE_JOIN,
            .participant_id = pid,
            .publisher = (flags & MSG_MEMBER_PUBLISHER) != 0,
            .display_name = p->name,
        };
        s->cbs->on_presence(s, &ev, s->arg);
    }
}

static void presence_leave(struct roost_session *s, uint32_t pid)
{
    struct peer *p = peer_find(s, pid);
    struct peer gone = {.pid = pid};
    if (p != NULL) {
        gone = *p;
        *p = s->peers[--s->n_peers];
    }
    if (s->cbs->on_presence != NULL) {
        struct roost_presence ev = {
            .kind = ROOST_PRESENCE_LEAVE,
            .participant_id = pid,
            .display_name = gone.name,
        };
        s->cbs->on_presence(s, &ev, s->arg);
    }
}

/* ---------------------------------------------------- relay messages */

static void on_quality(struct roost_session *s, const uint8_t *body, size_t len)
{
    struct msg_quality q;
    struct quality_summary sum;
    int rc = quality_summary_decode(body, len, &q, &sum);
    if (rc < 0 || s->cbs->on_quality == NULL)
        return;
    struct roost_quality out = {
        .participant_id = q.participant_id,
        .interval_ms = q.interval_ms,
        .rtt_us = q.rtt_us,
        .rttvar_us = q.rttvar_us,
        .loss_permille = q.loss_permille,
        .dropped = q.dropped,
        .est_kbps = q.est_kbps,
        .summary = rc == 1,
    };
    if (rc == 1) {
        out.receivers = sum.receivers;
        out.loss_median = sum.loss_median;
        out.loss_worst = sum.loss_worst;
        out.rtt_median_us = sum.rtt_median_us;
        out.rtt_worst_us = sum.rtt_worst_us;
    }
    s->cbs->on_quality(s, &out, s->arg);
}

static void on_message(struct roost_session *s, const struct msg *m)
{
    char text[TEXT_MAX + 1];
    switch (m->type) {
    case MSG_WELCOME: {
        s->pid = m->u.welcome.participant_id;
        s->max_datagram = m->u.welcome.max_datagram < PATH_SAFE_DATAGRAM ? m->u.welcome.max_datagram
                                                                         : PATH_SAFE_DATAGRAM;
        struct msg j;
        build_join(s, &j);
        if (send_msg(s, &j) < 0)
            roost_conn_close(s->conn, PROTO_ERR_INTERNAL);
        break;
    }
    case MSG_JOINED: {
        const struct msg_joined *j = &m->u.joined;
        s->joined = true;
        if (s->cbs->on_joined != NULL) {
            struct roost_joined info = {
                .self_id = s->pid,
                .permissions = j->permissions,
                .member_total = j->member_total,
                .max_datagram = s->max_datagram,
            };
            s->cbs->on_joined(s, &info, s->arg);
        }
        for (uint32_t i = 0; i < j->n_members && !s->closed; i++)
            presence_join(s, j->members[i].participant_id, j->members[i].flags,
                          j->members[i].display_name);
        break;
    }
    case MSG_JOIN_REJECTED:
        str_copy(text, sizeof(text), m->u.join_rejected.reason);
        if (s->cbs->on_rejected != NULL)
            s->cbs->on_rejected(s, m->u.join_rejected.code, m->u.join_rejected.retry_after_ms, text,
                                s->arg);
        break;
    case MSG_PARTICIPANT_EVENTS:
        for (uint32_t i = 0; i < m->u.events.n_events && !s->closed; i++) {
            const struct msg_event *e = &m->u.events.events[i];
            if (e->kind == MSG_EV_JOIN)
                presence_join(s, e->participant_id, e->flags, e->display_name);
            else if (e->kind == MSG_EV_LEAVE)
                presence_leave(s, e->participant_id);
        }
        break;
    case MSG_KEYFRAME_REQUEST:
        if (s->cbs->on_keyframe_request != NULL)
            s->cbs->on_keyframe_request(s, m->u.keyframe_request.participant_id,
                                        m->u.keyframe_request.stream_id, s->arg);
        break;
    case MSG_ERROR:
        str_copy(text, sizeof(text), m->u.error.text);
        if (s->cbs->on_error != NULL)
            s->cbs->on_error(s, m->u.error.code, text, s->arg);
        break;
    case MSG_GOAWAY:
        str_copy(text, sizeof(text), m->u.goaway.reconnect);
        if (s->cbs->on_goaway != NULL)
            s->cbs->on_goaway(s, m->u.goaway.drain_ms, text, s->arg);
        break;
    default:
        break; /* client -> relay types never come back; ignore */
    }
}

/* ------------------------------------------------ connection callbacks */

static void sc_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    struct roost_session *s = roost_conn_user(c);
    struct msg m = {.type = MSG_HELLO};
    m.u.hello.min_version = PROTO_VERSION;
    m.u.hello.max_version = PROTO_VERSION;
    m.u.hello.client_name = view(s->client_name);
    if (send_msg(s, &m) < 0)
        roost_conn_close(c, PROTO_ERR_INTERNAL);
}

static void sc_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct roost_session *s = roost_conn_user(c);
    int rc = msg_decode(body, len, s->m);
    if (rc == ROOST_EUNKNOWN)
        return; /* PROTOCOL.md §7: unknown types are ignored */
    if (rc < 0) {
        roost_conn_close(c, PROTO_ERR_PROTOCOL_VIOLATION);
        return;
    }
    if (s->m->type == MSG_QUALITY)
        on_quality(s, body, len);
    else
        on_message(s, s->m);
}

static void sc_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct roost_session *s = roost_conn_user(c);
    struct roost_media m;
    if (s->cbs->on_media == NULL || roost_media_parse(data, len, &m) < 0)
        return;
    s->cbs->on_media(s, &m, s->arg);
}

static void sc_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)arg;
    struct roost_session *s = roost_conn_user(c);
    s->closed = true;
    s->joined = false;
    if (s->cbs->on_close != NULL)
        s->cbs->on_close(s, info, s->arg);
}

const struct roost_client_callbacks session_conn_cbs = {
    .on_open = sc_open,
    .on_control = sc_control,
    .on_datagram = sc_datagram,
    .on_close = sc_close,
};

/* ------------------------------------------------------------- API */

static int copy_in(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return ROOST_ETOOBIG;
    memcpy(dst, src, n + 1);
    return 0;
}

int roost_session_new(struct roost_session **out, struct roost_client *cl, const char *host,
                      uint16_t port, const struct roost_session_config *cfg,
                      const struct roost_session_callbacks *cbs, void *arg)
{
    static const struct roost_session_callbacks none;
    if (cfg == NULL || cfg->room == NULL || cfg->token == NULL)
        return ROOST_EINVAL;
    /* Resumption is reserved (include/roost/client.h): refuse rather than
     * silently do a full join the caller did not ask for. */
    if (cfg->resume_ticket != NULL || cfg->resume_ticket_len != 0)
        return ROOST_EINVAL;
    struct roost_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ROOST_ENOMEM;
    s->cbs = cbs != NULL ? cbs : &none;
    s->arg = arg;
    int rc = copy_in(s->room, sizeof(s->room), cfg->room);
    if (rc == 0)
        rc = copy_in(s->token, sizeof(s->token), cfg->token);
    if (rc == 0 && cfg->display_name != NULL)
        rc = copy_in(s->name, sizeof(s->name), cfg->display_name);
    if (rc == 0)
        rc = copy_in(s->client_name, sizeof(s->client_name),
                     cfg->client_name != NULL ? cfg->client_name : "libroost-client");
    if (rc < 0)
        goto fail;
    /* Check the JOIN with the encoder's rules now, not after the handshake. */
    struct msg j;
    build_join(s, &j);
    rc = msg_encoded_len(&j);
    if (rc < 0)
        goto fail;
    s->m = malloc(sizeof(*s->m));
    s->scratch = malloc(MEDIA_DATAGRAM_MAX);
    if (s->m == NULL || s->scratch == NULL) {
        rc = ROOST_ENOMEM;
        goto fail;
    }
    rc = client_connect_session(cl, host, port, s, &s->conn);
    if (rc < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    roost_session_del(s);
    return rc;
}

void roost_session_del(struct roost_session *s)
{
    if (s == NULL)
        return;
    roost_conn_del(s->conn);
    free(s->peers);
    free(s->scratch);
    free(s->m);
    free(s);
}

int roost_session_leave(struct roost_session *s)
{
    if (s->closed)
        return ROOST_ECLOSED;
    if (!s->joined)
        return ROOST_EINVAL;
    struct msg m = {.type = MSG_LEAVE};
    return send_msg(s, &m);
}

void roost_session_close(struct roost_session *s)
{
    if (!s->closed)
        roost_conn_close(s->conn, PROTO_ERR_NO_ERROR);
}

int roost_session_send(struct roost_session *s, uint8_t stream_id, unsigned flags,
                       uint32_t timestamp, const void *payload, size_t len)
{
    if (s->closed)
        return ROOST_ECLOSED;
    if (!s->joined || (flags & ~(unsigned)MEDIA_F_KNOWN) != 0 || (payload == NULL && len > 0))
        return ROOST_EINVAL;
    if (len > s->max_datagram - MEDIA_C2R_HDR_LEN)
        return ROOST_ETOOBIG;
    struct media_hdr h = {
        .stream_id = stream_id,
        .flags = (uint8_t)flags,
        .seq = s->seq[stream_id],
        .timestamp = timestamp,
    };
    int rc = media_c2r_encode(&h, s->scratch, MEDIA_DATAGRAM_MAX);
    if (rc < 0)
        return rc;
    if (len > 0)
        memcpy(s->scratch + MEDIA_C2R_HDR_LEN, payload, len);
    rc = roost_conn_send_datagram(s->conn, s->scratch, MEDIA_C2R_HDR_LEN + len);
    /* A dropped packet still used its number: the receivers see a gap,
     * which is what happened. */
    s->seq[stream_id]++;
    return rc;
}

int roost_session_send_frame(struct roost_session *s, uint8_t stream_id, unsigned flags,
                             uint32_t timestamp, const void *frame, size_t len)
{
    if (!s->closed && !s->joined)
        return ROOST_EINVAL;
    size_t room = s->max_datagram > MEDIA_C2R_HDR_LEN ? s->max_datagram - MEDIA_C2R_HDR_LEN : 0;
    if (room == 0)
        return s->closed ? ROOST_ECLOSED : ROOST_EINVAL;
    unsigned keep = flags & (ROOST_MEDIA_KEYFRAME | ROOST_MEDIA_VIDEO);
    const uint8_t *p = frame;
    size_t off = 0;
    int n = 0;
    do {
        size_t chunk = len - off < room ? len - off : room;
        unsigned f =
            keep | (off == 0 ? ROOST_MEDIA_START : 0) | (off + chunk == len ? ROOST_MEDIA_END : 0);
        int rc = roost_session_send(s, stream_id, f, timestamp, p + off, chunk);
        if (rc < 0)
            return rc;
        off += chunk;
        n++;
    } while (off < len);
    return n;
}

int roost_session_request_keyframe(struct roost_session *s, uint32_t sender, uint8_t stream_id)
{
    if (s->closed)
        return ROOST_ECLOSED;
    if (!s->joined || sender == 0)
        return ROOST_EINVAL;
    struct msg m = {.type = MSG_KEYFRAME_REQUEST};
    m.u.keyframe_request.participant_id = sender;
    m.u.keyframe_request.stream_id = stream_id;
    return send_msg(s, &m);
}

uint32_t roost_session_id(const struct roost_session *s)
{
    return s->pid;
}

bool roost_session_is_joined(const struct roost_session *s)
{
    return s->joined;
}

bool roost_session_is_closed(const struct roost_session *s)
{
    return s->closed;
}

struct roost_conn *roost_session_conn(const struct roost_session *s)
{
    return s->conn;
}

/* ------------------------------------------------------ media headers */

int roost_media_header_write(const struct roost_media *m, uint8_t *out, size_t cap)
{
    struct media_hdr h = {
        .stream_id = m->stream_id,
        .flags = m->flags,
        .seq = m->seq,
        .timestamp = m->timestamp,
    };
    return media_c2r_encode(&h, out, cap);
}

int roost_media_parse(const uint8_t *data, size_t len, struct roost_media *m)
{
    struct media_hdr h;
    int rc = media_r2c_decode(data, len, &h);
    if (rc < 0)
        return rc;
    *m = (struct roost_media){
        .sender = h.participant_id,
        .stream_id = h.stream_id,
        .flags = h.flags & MEDIA_F_KNOWN,
        .seq = h.seq,
        .timestamp = h.timestamp,
        .payload = data + rc,
        .len = len - (size_t)rc,
    };
    return 0;
}

const char *roost_error_code_name(uint64_t code)
{
    return proto_errcode_name(code);
}
