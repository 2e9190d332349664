#include "proto/msg.h"

#include <string.h>

#include "core/be.h"
#include "core/error.h"
#include "proto/utf8.h"
#include "proto/varint.h"

/* Largest body any message can have with every field at its limit; the
 * limits are chosen so that it fits one frame (PROTOCOL.md §4.4). */
#define STR_MAX_ENC(n) (2 + (n)) /* varint length (<= 16383: 2 bytes) + bytes */
#define JOINED_MAX_BODY                                                                            \
    (1 + STR_MAX_ENC(ROOM_ID_MAX) + 1 + 1 + 4 + 2 +                                                \
     JOINED_MAX_MEMBERS * (4 + 1 + STR_MAX_ENC(DISPLAY_NAME_MAX)))
#define EVENTS_MAX_BODY (1 + 1 + 2 + EVENTS_MAX * (1 + 4 + 1 + STR_MAX_ENC(DISPLAY_NAME_MAX)))
#define JOIN_MAX_BODY                                                                              \
    (1 + STR_MAX_ENC(ROOM_ID_MAX) + STR_MAX_ENC(JOIN_TOKEN_MAX) + STR_MAX_ENC(DISPLAY_NAME_MAX))
_Static_assert(JOINED_MAX_BODY <= FRAME_MAX_BODY, "JOINED must fit one frame");
_Static_assert(EVENTS_MAX_BODY <= FRAME_MAX_BODY, "PARTICIPANT_EVENTS must fit one frame");
_Static_assert(JOIN_MAX_BODY <= FRAME_MAX_BODY, "JOIN must fit one frame");

/* ------------------------------------------------------------ reading */

struct rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

static int rd_u8(struct rd *r, uint8_t *v)
{
    if (r->len - r->pos < 1)
        return ROOST_ETRUNC;
    *v = r->p[r->pos++];
    return 0;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
    if (r->len - r->pos < 2)
        return ROOST_ETRUNC;
    *v = be_get16(r->p + r->pos);
    r->pos += 2;
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
    if (r->len - r->pos < 4)
        return ROOST_ETRUNC;
    *v = be_get32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_varint(struct rd *r, uint64_t *v)
{
    int n = varint_decode(r->p + r->pos, r->len - r->pos, v);
    if (n < 0)
        return n;
    r->pos += (size_t)n;
    return 0;
}

enum str_kind {
    STR_UTF8,  /* strict UTF-8, no NUL */
    STR_ASCII, /* printable ASCII 0x20..0x7e */
};

static bool str_ok(const uint8_t *s, size_t len, enum str_kind kind)
{
    if (kind == STR_ASCII) {
        for (size_t i = 0; i < len; i++)
            if (s[i] < 0x20 || s[i] > 0x7e)
                return false;
        return true;
    }
    if (len > 0 && memchr(s, 0, len) != NULL)
        return false;
    return utf8_valid(s, len);
}

/* The limit is checked before the bytes are looked for, so an oversized
 * length is ETOOBIG even when the input is also short (PROTOCOL.md §3.1). */
static int rd_str(struct rd *r, struct msg_str *s, size_t min, size_t max, enum str_kind kind)
{
    uint64_t n;
    int rc = rd_varint(r, &n);
    if (rc < 0)
        return rc;
    if (n > max)
        return ROOST_ETOOBIG;
    if (r->len - r->pos < n)
        return ROOST_ETRUNC;
    if (n < min)
        return ROOST_EMALFORMED;
    const uint8_t *p = r->p + r->pos;
    if (!str_ok(p, (size_t)n, kind))
        return ROOST_EMALFORMED;
    s->ptr = n ? p : NULL;
    s->len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

static int rd_pid(struct rd *r, uint32_t *pid)
{
    int rc = rd_u32(r, pid);
    if (rc < 0)
        return rc;
    return *pid == 0 ? ROOST_EMALFORMED : 0;
}

static int rd_count(struct rd *r, uint32_t *count, uint32_t max)
{
    uint64_t n;
    int rc = rd_varint(r, &n);
    if (rc < 0)
        return rc;
    if (n > max)
        return ROOST_ETOOBIG;
    *count = (uint32_t)n;
    return 0;
}

/* Each decoder reads its fields in wire order and stops at the first
 * error; TRY keeps that readable. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } while (0)

static int dec_hello(struct rd *r, struct msg_hello *h)
{
    TRY(rd_u16(r, &h->min_version));
    TRY(rd_u16(r, &h->max_version));
    TRY(rd_str(r, &h->client_name, 0, CLIENT_NAME_MAX, STR_UTF8));
    if (h->min_version == 0 || h->max_version < h->min_version)
        return ROOST_EMALFORMED;
    return 0;
}

static int dec_welcome(struct rd *r, struct msg_welcome *w)
{
    TRY(rd_u16(r, &w->version));
    TRY(rd_pid(r, &w->participant_id));
    TRY(rd_u32(r, &w->idle_timeout_ms));
    TRY(rd_u16(r, &w->max_datagram));
    TRY(rd_u8(r, &w->max_stream_id));
    TRY(rd_u32(r, &w->max_members));
    TRY(rd_str(r, &w->server_name, 0, SERVER_NAME_MAX, STR_UTF8));
    if (w->version == 0 || w->max_datagram < WELCOME_MIN_DATAGRAM || w->max_members == 0)
        return ROOST_EMALFORMED;
    return 0;
}

static int dec_join(struct rd *r, struct msg_join *j)
{
    TRY(rd_str(r, &j->room_id, 1, ROOM_ID_MAX, STR_UTF8));
    TRY(rd_str(r, &j->token, 0, JOIN_TOKEN_MAX, STR_ASCII));
    TRY(rd_str(r, &j->display_name, 0, DISPLAY_NAME_MAX, STR_UTF8));
    return 0;
}

static int dec_joined(struct rd *r, struct msg_joined *j)
{
    TRY(rd_str(r, &j->room_id, 1, ROOM_ID_MAX, STR_UTF8));
    TRY(rd_u8(r, &j->permissions));
    TRY(rd_u8(r, &j->flags));
    TRY(rd_u32(r, &j->member_total));
    TRY(rd_count(r, &j->n_members, JOINED_MAX_MEMBERS));
    for (uint32_t i = 0; i < j->n_members; i++) {
        struct msg_member *mb = &j->members[i];
        TRY(rd_pid(r, &mb->participant_id));
        TRY(rd_u8(r, &mb->flags));
        TRY(rd_str(r, &mb->display_name, 0, DISPLAY_NAME_MAX, STR_UTF8));
    }
    if (j->member_total < j->n_members)
        return ROOST_EMALFORMED;
    return 0;
}

static int dec_join_rejected(struct rd *r, struct msg_join_rejected *j)
{
    TRY(rd_u32(r, &j->code));
    TRY(rd_u32(r, &j->retry_after_ms));
    TRY(rd_str(r, &j->reason, 0, TEXT_MAX, STR_UTF8));
    return 0;
}

static int dec_events(struct rd *r, struct msg_events *e)
{
    TRY(rd_u8(r, &e->flags));
    TRY(rd_count(r, &e->n_events, EVENTS_MAX));
    for (uint32_t i = 0; i < e->n_events; i++) {
        struct msg_event *ev = &e->events[i];
        TRY(rd_u8(r, &ev->kind));
        TRY(rd_pid(r, &ev->participant_id));
        if (ev->kind == MSG_EV_JOIN) {
            TRY(rd_u8(r, &ev->flags));
            TRY(rd_str(r, &ev->display_name, 0, DISPLAY_NAME_MAX, STR_UTF8));
        } else if (ev->kind == MSG_EV_LEAVE) {
            ev->flags = 0;
            ev->display_name = (struct msg_str){NULL, 0};
        } else {
            /* Events carry no length, so an unknown kind cannot be skipped. */
            return ROOST_EMALFORMED;
        }
    }
    return 0;
}

static int dec_keyframe_request(struct rd *r, struct msg_keyframe_request *k)
{
    TRY(rd_pid(r, &k->participant_id));
    TRY(rd_u8(r, &k->stream_id));
    return 0;
}

static int dec_quality(struct rd *r, struct msg_quality *q)
{
    TRY(rd_pid(r, &q->participant_id));
    TRY(rd_u32(r, &q->interval_ms));
    TRY(rd_u32(r, &q->rtt_us));
    TRY(rd_u32(r, &q->rttvar_us));
    TRY(rd_u16(r, &q->loss_permille));
    TRY(rd_u32(r, &q->dropped));
    TRY(rd_u32(r, &q->est_kbps));
    if (q->loss_permille > QUALITY_LOSS_MAX)
        return ROOST_EMALFORMED;
    return 0;
}

static int dec_error(struct rd *r, struct msg_error *e)
{
    TRY(rd_u32(r, &e->code));
    TRY(rd_varint(r, &e->msg_type));
    TRY(rd_str(r, &e->text, 0, TEXT_MAX, STR_UTF8));
    return 0;
}

static int dec_goaway(struct rd *r, struct msg_goaway *g)
{
    TRY(rd_u32(r, &g->drain_ms));
    TRY(rd_str(r, &g->reconnect, 0, TEXT_MAX, STR_ASCII));
    return 0;
}

int msg_decode(const uint8_t *body, size_t len, struct msg *m)
{
    struct rd r = {.p = body, .len = len, .pos = 0};
    TRY(rd_varint(&r, &m->type));
    /* Trailing bytes after the last field are not checked: later versions
     * may append fields (PROTOCOL.md §3.2). */
    switch (m->type) {
    case 0:
        return ROOST_EMALFORMED;
    case MSG_HELLO:
        return dec_hello(&r, &m->u.hello);
    case MSG_WELCOME:
        return dec_welcome(&r, &m->u.welcome);
    case MSG_JOIN:
        return dec_join(&r, &m->u.join);
    case MSG_JOINED:
        return dec_joined(&r, &m->u.joined);
    case MSG_JOIN_REJECTED:
        return dec_join_rejected(&r, &m->u.join_rejected);
    case MSG_LEAVE:
        return 0;
    case MSG_PARTICIPANT_EVENTS:
        return dec_events(&r, &m->u.events);
    case MSG_KEYFRAME_REQUEST:
        return dec_keyframe_request(&r, &m->u.keyframe_request);
    case MSG_QUALITY:
        return dec_quality(&r, &m->u.quality);
    case MSG_ERROR:
        return dec_error(&r, &m->u.error);
    case MSG_GOAWAY:
        return dec_goaway(&r, &m->u.goaway);
    default:
        return ROOST_EUNKNOWN;
    }
}

int msg_decode_frame(const uint8_t *buf, size_t len, struct msg *m, size_t *consumed)
{
    size_t hdr_len, body_len;
    TRY(frame_parse(buf, len, &hdr_len, &body_len));
    if (len - hdr_len < body_len)
        return ROOST_ETRUNC;
    *consumed = hdr_len + body_len;
    return msg_decode(buf + hdr_len, body_len, m);
}

/* ------------------------------------------------------------ writing */

/* With out == NULL the writer only counts, so one code path both sizes and
 * writes a message. */
struct wr {
    uint8_t *out;
    size_t cap;
    size_t pos;
};

static int wr_bytes(struct wr *w, const void *p, size_t n)
{
    if (w->out != NULL) {
        if (w->cap - w->pos < n)
            return ROOST_ENOSPC;
        if (n > 0)
            memcpy(w->out + w->pos, p, n);
    }
    w->pos += n;
    return 0;
}

static int wr_u8(struct wr *w, uint8_t v)
{
    return wr_bytes(w, &v, 1);
}

static int wr_u16(struct wr *w, uint16_t v)
{
    uint8_t b[2];
    be_put16(b, v);
    return wr_bytes(w, b, sizeof(b));
}

static int wr_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4];
    be_put32(b, v);
    return wr_bytes(w, b, sizeof(b));
}

static int wr_varint(struct wr *w, uint64_t v)
{
    uint8_t b[VARINT_MAX_LEN];
    int n = varint_encode(b, sizeof(b), v);
    if (n < 0)
        return ROOST_EINVAL; /* above 2^62 - 1 */
    return wr_bytes(w, b, (size_t)n);
}

static int wr_str(struct wr *w, const struct msg_str *s, size_t min, size_t max, enum str_kind kind)
{
    if (s->len > max)
        return ROOST_ETOOBIG;
    if (s->len < min || (s->len > 0 && s->ptr == NULL) || !str_ok(s->ptr, s->len, kind))
        return ROOST_EINVAL;
    TRY(wr_varint(w, s->len));
    return wr_bytes(w, s->ptr, s->len);
}

static int wr_pid(struct wr *w, uint32_t pid)
{
    if (pid == 0)
        return ROOST_EINVAL;
    return wr_u32(w, pid);
}

static int enc_body(const struct msg *m, struct wr *w)
{
    TRY(m->type == 0 || m->type > MSG_TYPE_LAST ? ROOST_EINVAL : 0);
    TRY(wr_varint(w, m->type));
    switch ((enum msg_type)m->type) {
    case MSG_HELLO: {
        const struct msg_hello *h = &m->u.hello;
        if (h->min_version == 0 || h->max_version < h->min_version)
            return ROOST_EINVAL;
        TRY(wr_u16(w, h->min_version));
        TRY(wr_u16(w, h->max_version));
        return wr_str(w, &h->client_name, 0, CLIENT_NAME_MAX, STR_UTF8);
    }
    case MSG_WELCOME: {
        const struct msg_welcome *x = &m->u.welcome;
        if (x->version == 0 || x->max_datagram < WELCOME_MIN_DATAGRAM || x->max_members == 0)
            return ROOST_EINVAL;
        TRY(wr_u16(w, x->version));
        TRY(wr_pid(w, x->participant_id));
        TRY(wr_u32(w, x->idle_timeout_ms));
        TRY(wr_u16(w, x->max_datagram));
        TRY(wr_u8(w, x->max_stream_id));
        TRY(wr_u32(w, x->max_members));
        return wr_str(w, &x->server_name, 0, SERVER_NAME_MAX, STR_UTF8);
    }
    case MSG_JOIN: {
        const struct msg_join *j = &m->u.join;
        TRY(wr_str(w, &j->room_id, 1, ROOM_ID_MAX, STR_UTF8));
        TRY(wr_str(w, &j->token, 0, JOIN_TOKEN_MAX, STR_ASCII));
        return wr_str(w, &j->display_name, 0, DISPLAY_NAME_MAX, STR_UTF8);
    }
    case MSG_JOINED: {
        const struct msg_joined *j = &m->u.joined;
        if (j->n_members > JOINED_MAX_MEMBERS)
            return ROOST_ETOOBIG;
        if (j->member_total < j->n_members)
            return ROOST_EINVAL;
        TRY(wr_str(w, &j->room_id, 1, ROOM_ID_MAX, STR_UTF8));
        TRY(wr_u8(w, j->permissions));
        TRY(wr_u8(w, j->flags));
        TRY(wr_u32(w, j->member_total));
        TRY(wr_varint(w, j->n_members));
        for (uint32_t i = 0; i < j->n_members; i++) {
            const struct msg_member *mb = &j->members[i];
            TRY(wr_pid(w, mb->participant_id));
            TRY(wr_u8(w, mb->flags));
            TRY(wr_str(w, &mb->display_name, 0, DISPLAY_NAME_MAX, STR_UTF8));
        }
        return 0;
    }
    case MSG_JOIN_REJECTED: {
        const struct msg_join_rejected *j = &m->u.join_rejected;
        TRY(wr_u32(w, j->code));
        TRY(wr_u32(w, j->retry_after_ms));
        return wr_str(w, &j->reason, 0, TEXT_MAX, STR_UTF8);
    }
    case MSG_LEAVE:
        return 0;
    case MSG_PARTICIPANT_EVENTS: {
        const struct msg_events *e = &m->u.events;
        if (e->n_events > EVENTS_MAX)
            return ROOST_ETOOBIG;
        TRY(wr_u8(w, e->flags));
        TRY(wr_varint(w, e->n_events));
        for (uint32_t i = 0; i < e->n_events; i++) {
            const struct msg_event *ev = &e->events[i];
            if (ev->kind != MSG_EV_JOIN && ev->kind != MSG_EV_LEAVE)
                return ROOST_EINVAL;
            TRY(wr_u8(w, ev->kind));
            TRY(wr_pid(w, ev->participant_id));
            if (ev->kind == MSG_EV_JOIN) {
                TRY(wr_u8(w, ev->flags));
                TRY(wr_str(w, &ev->display_name, 0, DISPLAY_NAME_MAX, STR_UTF8));
            }
        }
        return 0;
    }
    case MSG_KEYFRAME_REQUEST:
        TRY(wr_pid(w, m->u.keyframe_request.participant_id));
        return wr_u8(w, m->u.keyframe_request.stream_id);
    case MSG_QUALITY: {
        const struct msg_quality *q = &m->u.quality;
        if (q->loss_permille > QUALITY_LOSS_MAX)
            return ROOST_EINVAL;
        TRY(wr_pid(w, q->participant_id));
        TRY(wr_u32(w, q->interval_ms));
        TRY(wr_u32(w, q->rtt_us));
        TRY(wr_u32(w, q->rttvar_us));
        TRY(wr_u16(w, q->loss_permille));
        TRY(wr_u32(w, q->dropped));
        return wr_u32(w, q->est_kbps);
    }
    case MSG_ERROR:
        TRY(wr_u32(w, m->u.error.code));
        TRY(wr_varint(w, m->u.error.msg_type));
        return wr_str(w, &m->u.error.text, 0, TEXT_MAX, STR_UTF8);
    case MSG_GOAWAY:
        TRY(wr_u32(w, m->u.goaway.drain_ms));
        return wr_str(w, &m->u.goaway.reconnect, 0, TEXT_MAX, STR_ASCII);
    }
    return ROOST_EINVAL;
}

int msg_encoded_len(const struct msg *m)
{
    struct wr w = {.out = NULL, .cap = 0, .pos = 0};
    TRY(enc_body(m, &w));
    if (w.pos > FRAME_MAX_BODY)
        return ROOST_ETOOBIG; /* cannot happen with the limits above */
    return (int)(varint_len(w.pos) + w.pos);
}

int msg_encode(const struct msg *m, uint8_t *out, size_t cap)
{
    /* Sizing pass first: it validates everything and gives the prefix. */
    struct wr w = {.out = NULL, .cap = 0, .pos = 0};
    TRY(enc_body(m, &w));
    size_t body_len = w.pos;
    int hdr = frame_put_header(out, cap, body_len);
    if (hdr < 0)
        return hdr;
    if (cap - (size_t)hdr < body_len)
        return ROOST_ENOSPC;
    w = (struct wr){.out = out + hdr, .cap = cap - (size_t)hdr, .pos = 0};
    TRY(enc_body(m, &w));
    return hdr + (int)body_len;
}

int msg_encode_body(const struct msg *m, uint8_t *out, size_t cap)
{
    struct wr w = {.out = NULL, .cap = 0, .pos = 0};
    TRY(enc_body(m, &w));
    if (cap < w.pos)
        return ROOST_ENOSPC;
    w = (struct wr){.out = out, .cap = cap, .pos = 0};
    TRY(enc_body(m, &w));
    return (int)w.pos;
}

/* ------------------------------------------------------------ helpers */

static bool str_eq(const struct msg_str *a, const struct msg_str *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

bool msg_equal(const struct msg *a, const struct msg *b)
{
    if (a->type != b->type)
        return false;
    switch ((enum msg_type)a->type) {
    case MSG_HELLO: {
        const struct msg_hello *x = &a->u.hello, *y = &b->u.hello;
        return x->min_version == y->min_version && x->max_version == y->max_version &&
               str_eq(&x->client_name, &y->client_name);
    }
    case MSG_WELCOME: {
        const struct msg_welcome *x = &a->u.welcome, *y = &b->u.welcome;
        return x->version == y->version && x->participant_id == y->participant_id &&
               x->idle_timeout_ms == y->idle_timeout_ms && x->max_datagram == y->max_datagram &&
               x->max_stream_id == y->max_stream_id && x->max_members == y->max_members &&
               str_eq(&x->server_name, &y->server_name);
    }
    case MSG_JOIN: {
        const struct msg_join *x = &a->u.join, *y = &b->u.join;
        return str_eq(&x->room_id, &y->room_id) && str_eq(&x->token, &y->token) &&
               str_eq(&x->display_name, &y->display_name);
    }
    case MSG_JOINED: {
        const struct msg_joined *x = &a->u.joined, *y = &b->u.joined;
        if (!str_eq(&x->room_id, &y->room_id) || x->permissions != y->permissions ||
            x->flags != y->flags || x->member_total != y->member_total ||
            x->n_members != y->n_members || x->n_members > JOINED_MAX_MEMBERS)
            return false;
        for (uint32_t i = 0; i < x->n_members; i++) {
            const struct msg_member *p = &x->members[i], *q = &y->members[i];
            if (p->participant_id != q->participant_id || p->flags != q->flags ||
                !str_eq(&p->display_name, &q->display_name))
                return false;
        }
        return true;
    }
    case MSG_JOIN_REJECTED: {
        const struct msg_join_rejected *x = &a->u.join_rejected, *y = &b->u.join_rejected;
        return x->code == y->code && x->retry_after_ms == y->retry_after_ms &&
               str_eq(&x->reason, &y->reason);
    }
    case MSG_LEAVE:
        return true;
    case MSG_PARTICIPANT_EVENTS: {
        const struct msg_events *x = &a->u.events, *y = &b->u.events;
        if (x->flags != y->flags || x->n_events != y->n_events || x->n_events > EVENTS_MAX)
            return false;
        for (uint32_t i = 0; i < x->n_events; i++) {
            const struct msg_event *p = &x->events[i], *q = &y->events[i];
            if (p->kind != q->kind || p->participant_id != q->participant_id)
                return false;
            /* A LEAVE carries no flags or name on the wire. */
            if (p->kind == MSG_EV_JOIN &&
                (p->flags != q->flags || !str_eq(&p->display_name, &q->display_name)))
                return false;
        }
        return true;
    }
    case MSG_KEYFRAME_REQUEST:
        return a->u.keyframe_request.participant_id == b->u.keyframe_request.participant_id &&
               a->u.keyframe_request.stream_id == b->u.keyframe_request.stream_id;
    case MSG_QUALITY: {
        const struct msg_quality *x = &a->u.quality, *y = &b->u.quality;
        return x->participant_id == y->participant_id && x->interval_ms == y->interval_ms &&
               x->rtt_us == y->rtt_us && x->rttvar_us == y->rttvar_us &&
               x->loss_permille == y->loss_permille && x->dropped == y->dropped &&
               x->est_kbps == y->est_kbps;
    }
    case MSG_ERROR:
        return a->u.error.code == b->u.error.code && a->u.error.msg_type == b->u.error.msg_type &&
               str_eq(&a->u.error.text, &b->u.error.text);
    case MSG_GOAWAY:
        return a->u.goaway.drain_ms == b->u.goaway.drain_ms &&
               str_eq(&a->u.goaway.reconnect, &b->u.goaway.reconnect);
    }
    return false;
}

const char *msg_type_name(uint64_t type)
{
    static const char *const names[] = {
        [MSG_HELLO] = "HELLO",
        [MSG_WELCOME] = "WELCOME",
        [MSG_JOIN] = "JOIN",
        [MSG_JOINED] = "JOINED",
        [MSG_JOIN_REJECTED] = "JOIN_REJECTED",
        [MSG_LEAVE] = "LEAVE",
        [MSG_PARTICIPANT_EVENTS] = "PARTICIPANT_EVENTS",
        [MSG_KEYFRAME_REQUEST] = "KEYFRAME_REQUEST",
        [MSG_QUALITY] = "QUALITY",
        [MSG_ERROR] = "ERROR",
        [MSG_GOAWAY] = "GOAWAY",
    };
    if (type == 0 || type > MSG_TYPE_LAST)
        return "UNKNOWN";
    return names[type];
}

int msg_direction(uint64_t type)
{
    switch (type) {
    case MSG_HELLO:
    case MSG_JOIN:
    case MSG_LEAVE:
        return MSG_DIR_C2R;
    case MSG_WELCOME:
    case MSG_JOINED:
    case MSG_JOIN_REJECTED:
    case MSG_PARTICIPANT_EVENTS:
    case MSG_QUALITY:
    case MSG_GOAWAY:
        return MSG_DIR_R2C;
    case MSG_KEYFRAME_REQUEST:
    case MSG_ERROR:
        return MSG_DIR_C2R | MSG_DIR_R2C;
    default:
        return 0;
    }
}

bool msg_type_is_grease(uint64_t type)
{
    return type >= 0x21 && (type - 0x21) % 0x1f == 0;
}
