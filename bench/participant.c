#include "bench/participant.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "bench/floor.h"
#include "bench/verdict.h"
#include "core/be.h"
#include "core/error.h"
#include "proto/media.h"
#include "proto/token.h"
#include "ws/ws.h"

/* Little-endian, not be.h: the payload's send time and sender index are a
 * private format of roost-bench (written and read only here), fixed LE. */
static void wr_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------ receive */

/* A media payload arrived at receiver r at time now. */
void participant_rx_frame(struct bp *r, uint32_t seq, const uint8_t *pl, size_t len, uint64_t now)
{
    struct lthread *t = r->t;
    const struct load_config *cfg = t->L->cfg;
    if (len < LOAD_PAYLOAD_HDR) {
        r->foreign++;
        return;
    }
    uint64_t sent_at = rd_le(pl, 8);
    uint32_t idx = (uint32_t)rd_le(pl + 8, 4);
    uint32_t room = idx / cfg->size, m = idx % cfg->size;
    if (room != r->room || m >= cfg->speakers || m == r->member || r->rx == NULL) {
        r->foreign++;
        return;
    }
    struct rxs *s = &r->rx[m];
    bool fresh;
    if (seq >= s->next) {
        uint32_t shift = seq - s->next + 1;
        s->win = shift >= 64 ? 0 : s->win << shift;
        s->win |= 1;
        s->next = seq + 1;
        fresh = true;
    } else {
        uint32_t d = s->next - 1 - seq;
        r->reordered++;
        if (d < 64) {
            fresh = !(s->win & (1ull << d));
            s->win |= 1ull << d;
        } else {
            fresh = true; /* too old to tell; a duplicate this late is unlikely */
        }
        if (!fresh) {
            r->reordered--;
            r->dup++;
        }
    }
    if (!fresh)
        return;
    s->got++;
    /* Net of the emulated path's nominal delay (rtt/2 each way): what the
     * relay and the two endpoints added, plus the jitter's share. */
    uint64_t path = cfg->path.rtt_ns;
    if (t->measuring && now >= sent_at) {
        uint64_t v = now - sent_at > path ? now - sent_at - path : 0;
        hist_record(&t->lat, v);
        hist_record(&t->lat_tr[r->is_ws], v);
        if (t->lat_pair != NULL) {
            unsigned n = t->L->n_rl;
            hist_record(&t->lat_pair[load_relay_of(n, room, m) * n + r->relay], v);
        }
    }
}

/* ---------------------------------------------------------------- send */

static size_t build_media(struct bp *p, uint8_t *out, size_t cap, bool dtx, uint64_t now)
{
    const struct load_config *cfg = p->t->L->cfg;
    const struct audio_table *a = cfg->audio;
    const struct audio_frame *fr = dtx ? &a->dtx : &a->frames[p->pos++ % a->n];
    size_t off = 0;
    if (cfg->mode == LOAD_FLOOR) {
        out[0] = FLOOR_MEDIA;
        be_put32(out + 1, p->room);
        be_put32(out + 5, p->member);
        off = FLOOR_HDR_LEN;
    }
    size_t need = off + MEDIA_C2R_HDR_LEN + LOAD_PAYLOAD_HDR + fr->len;
    if (need > cap)
        return 0;
    uint32_t samples = (uint32_t)(cfg->frame_ns * AUDIO_RATE / 1000000000ull);
    struct media_hdr h = {
        .stream_id = 0,
        .flags = MEDIA_F_START | MEDIA_F_END,
        .seq = p->seq,
        .timestamp = p->seq * samples,
    };
    media_c2r_encode(&h, out + off, cap - off);
    off += MEDIA_C2R_HDR_LEN;
    wr_le(out + off, now, 8);
    wr_le(out + off + 8, p->idx, 4);
    off += LOAD_PAYLOAD_HDR;
    memcpy(out + off, fr->data, fr->len);
    return off + fr->len;
}

void participant_on_slot(struct timer *tm, uint64_t now, void *arg)
{
    (void)tm;
    struct bp *p = arg;
    struct lthread *t = p->t;
    const struct load_config *cfg = t->L->cfg;
    uint64_t slot = p->next;
    if (slot >= t->L->end_ns)
        return;
    p->next += cfg->send_interval_ns;
    (void)timer_arm(t->timers, &p->tm, p->next);
    enum talk_frame k = talk_next(&p->talk);
    if (k == TALK_SILENT)
        return;
    p->target++;
    if (now > slot + cfg->send_interval_ns) {
        /* More than a slot behind: this thread cannot keep the frame
         * clock. Sending stale frames would hide that; skip them. */
        p->skipped++;
        return;
    }
    if (p->st != BP_JOINED) {
        p->failed++;
        return;
    }
    uint8_t d[MEDIA_C2R_HDR_LEN + FLOOR_HDR_LEN + LOAD_PAYLOAD_HDR + sizeof(cfg->audio->dtx.data)];
    uint64_t ts = mono_ns();
    size_t len = build_media(p, d, sizeof(d), k == TALK_DTX, ts);
    int rc;
    if (len == 0)
        rc = ROOST_ETOOBIG;
    else if (p->is_ws)
        rc = wscl_send(p->ws, WS_TAG_MEDIA, d, len);
    else if (cfg->mode == LOAD_QUIC)
        rc = roost_conn_send_datagram(p->c, d, len);
    else
        rc = load_floor_send(p, d, len);
    if (rc != 0) {
        p->failed++;
        return;
    }
    p->sent++;
    p->seq++;
    if (ts > slot && ts - slot > t->max_late)
        t->max_late = ts - slot;
}

/* ------------------------------------------------------ join handling */

void participant_joined(struct bp *p, uint64_t now, bool ok)
{
    struct lthread *t = p->t;
    if (p->st == BP_JOINED || p->st == BP_FAILED)
        return;
    p->st = ok ? BP_JOINED : BP_FAILED;
    if (p->storm) {
        if (ok) {
            t->storm_ok++;
            hist_record(&t->sjoin, now - p->t_join);
        } else {
            t->storm_failed++;
        }
    } else {
        t->answered_base++;
        if (ok) {
            t->joins_ok++;
            t->tr_joins_ok[p->is_ws]++;
            t->rl_joins_ok[p->relay]++;
            hist_record(&t->join, now - p->t_join);
        } else {
            t->joins_failed++;
            t->tr_joins_failed[p->is_ws]++;
            t->rl_joins_failed[p->relay]++;
        }
    }
}

void participant_ended(struct bp *p, uint64_t now, enum load_end_kind kind, uint64_t code)
{
    struct lthread *t = p->t;
    if (p->st == BP_FAILED)
        return;
    bool joined = p->st == BP_JOINED;
    verdict_end_add(t->ends, &t->n_ends, kind, joined, code, 1);
    if (joined) {
        t->closed_early++;
        if (!p->storm) {
            t->tr_closed_early[p->is_ws]++;
            t->rl_closed_early[p->relay]++;
        }
    } else
        participant_joined(p, now, false);
}

/* ------------------------------------------ control (both transports) */

static void send_msg(struct bp *p, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    if (n <= 0)
        return;
    if (p->is_ws)
        (void)wscl_send_control(p->ws, body, (size_t)n);
    else
        (void)roost_conn_send_control(p->c, body, (size_t)n);
}

/* The connection is open: HELLO. */
static void on_open(struct bp *p)
{
    struct msg m = {.type = MSG_HELLO};
    m.u.hello.min_version = 1;
    m.u.hello.max_version = 1;
    m.u.hello.client_name.ptr = (const uint8_t *)"roost-bench";
    m.u.hello.client_name.len = 11;
    send_msg(p, &m);
}

/* Counts a base participant that has been told of every other member of
 * its room. Across relays a member's JOIN reaches the other relays a trunk
 * hop or two after its own JOINED, and a frame that arrives before its
 * sender's JOIN is dropped there (docs/CLUSTER.md 2.8): --relays opens the
 * window only once everyone sees the whole room. */
static void participant_presence(struct bp *p)
{
    const struct load_config *cfg = p->t->L->cfg;
    if (p->storm || p->peers_done || p->st != BP_JOINED || cfg->size == 0 ||
        p->peers < (int32_t)cfg->size - 1)
        return;
    p->peers_done = true;
    /* Pairs with the acquire load in load_run. */
    atomic_fetch_add_explicit(&p->t->presence_ok, 1, memory_order_release);
}

/* One control message body: JOIN after WELCOME, then JOINED or
 * JOIN_REJECTED; PARTICIPANT_EVENTS for presence. */
static void on_control(struct bp *p, const uint8_t *body, size_t len)
{
    struct lthread *t = p->t;
    struct msg *m = &t->msg;
    if (msg_decode(body, len, m) != 0)
        return;
    switch (m->type) {
    case MSG_WELCOME: {
        p->pid = m->u.welcome.participant_id;
        if (t->server_name[0] == '\0') {
            size_t n = m->u.welcome.server_name.len;
            if (n >= sizeof(t->server_name))
                n = sizeof(t->server_name) - 1;
            memcpy(t->server_name, m->u.welcome.server_name.ptr, n);
            t->server_name[n] = '\0';
            t->max_datagram = m->u.welcome.max_datagram;
        }
        const struct load_config *cfg = t->L->cfg;
        char room[ROOM_ID_MAX + 1], ident[32], tok[TOKEN_MAX_LEN + 1];
        snprintf(room, sizeof(room), "%s%u", cfg->room_prefix, p->room);
        snprintf(ident, sizeof(ident), "b%u", p->idx);
        struct token_claims cl;
        uint8_t id[TOKEN_ID_LEN] = {0};
        wr_le(id, p->idx, 4);
        wr_le(id + 4, mono_ns(), 8);
        uint64_t now_s = (uint64_t)time(NULL);
        int n = -1;
        if (token_claims_set(&cl, room, strlen(room), ident, strlen(ident), TOKEN_PERM_ALL,
                             now_s - 60, now_s + 24 * 3600, id) == 0)
            n = token_mint(token_keyring_signer(cfg->keys), &cl, tok, sizeof(tok));
        if (n < 0) {
            participant_ended(p, mono_ns(), LOAD_END_SETUP, 0);
            return;
        }
        struct msg j = {.type = MSG_JOIN};
        j.u.join.room_id.ptr = (const uint8_t *)room;
        j.u.join.room_id.len = strlen(room);
        j.u.join.token.ptr = (const uint8_t *)tok;
        j.u.join.token.len = (size_t)n;
        j.u.join.display_name.ptr = (const uint8_t *)ident;
        j.u.join.display_name.len = strlen(ident);
        p->st = BP_JOINING;
        p->t_join = mono_ns();
        send_msg(p, &j);
        break;
    }
    case MSG_JOINED:
        p->peers = (int32_t)m->u.joined.n_members;
        participant_joined(p, mono_ns(), true);
        participant_presence(p);
        break;
    case MSG_PARTICIPANT_EVENTS:
        for (uint32_t i = 0; i < m->u.events.n_events; i++)
            p->peers += m->u.events.events[i].kind == MSG_EV_JOIN ? 1 : -1;
        participant_presence(p);
        break;
    case MSG_JOIN_REJECTED:
        participant_ended(p, mono_ns(), LOAD_END_REJECTED, m->u.join_rejected.code);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ QUIC */

static void q_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    on_open(roost_conn_user(c));
}

static void q_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    on_control(roost_conn_user(c), body, len);
}

static void q_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct bp *p = roost_conn_user(c);
    struct media_hdr h;
    int off = media_r2c_decode(data, len, &h);
    if (off < 0) {
        p->foreign++;
        return;
    }
    participant_rx_frame(p, h.seq, data + off, len - (size_t)off, mono_ns());
}

static void q_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)arg;
    struct bp *p = roost_conn_user(c);
    struct lthread *t = p->t;
    if (atomic_load_explicit(&t->L->phase, memory_order_relaxed) == PH_CLOSE)
        return;
    enum load_end_kind k = LOAD_END_LOCAL;
    uint64_t code = 0;
    if (info->reset) {
        k = LOAD_END_RESET;
    } else if (info->remote) {
        k = info->app ? LOAD_END_CLOSED_APP : LOAD_END_CLOSED_QUIC;
        code = info->code;
    } else if (info->idle) {
        k = LOAD_END_IDLE;
    } else {
        code = (uint64_t)(int64_t)info->liberr;
    }
    participant_ended(p, mono_ns(), k, code);
}

const struct roost_client_callbacks participant_quic_cbs = {
    .on_open = q_open,
    .on_control = q_control,
    .on_datagram = q_datagram,
    .on_close = q_close,
};

/* ------------------------------------------------------- WebSocket */

static void w_open(struct wscl *c, void *user)
{
    (void)c;
    on_open(user);
}

static void w_message(struct wscl *c, const uint8_t *msg, size_t len, void *user)
{
    (void)c;
    struct bp *p = user;
    const uint8_t *body;
    size_t bl;
    switch (ws_msg_parse(msg, len, &body, &bl)) {
    case WS_TAG_CONTROL:
        on_control(p, body, bl);
        break;
    case WS_TAG_MEDIA: {
        struct media_hdr h;
        int off = media_r2c_decode(body, bl, &h);
        if (off < 0) {
            p->foreign++;
            return;
        }
        participant_rx_frame(p, h.seq, body + off, bl - (size_t)off, mono_ns());
        break;
    }
    default:
        p->foreign++;
        break;
    }
}

static void w_close(struct wscl *c, enum wscl_end why, int64_t code, void *user)
{
    (void)c;
    struct bp *p = user;
    if (atomic_load_explicit(&p->t->L->phase, memory_order_relaxed) == PH_CLOSE ||
        why == WSCL_END_LOCAL)
        return;
    if (why == WSCL_END_CLOSE)
        participant_ended(p, mono_ns(), LOAD_END_CLOSED_APP,
                          ws_app_from_close_code((uint16_t)code));
    else
        participant_ended(p, mono_ns(), LOAD_END_TCP, (uint64_t)code);
}

const struct wscl_cbs participant_ws_cbs = {
    .on_open = w_open,
    .on_message = w_message,
    .on_close = w_close,
};
