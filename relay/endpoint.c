/* The transports behind a session: the endpoint interface of relay_int.h
 * (struct endpoint_ops) for a QUIC connection (lib/quic) and for a
 * WebSocket connection (lib/ws), and each transport's application
 * callbacks, which hand what arrives to the transport-independent session
 * (relay/session.c). A session never calls a transport directly; rooms,
 * tokens, presence, the keyframe cache and QUALITY see only the session.
 * Everything here runs on the connection's worker. */
#include "relay/relay_int.h"

#include <string.h>

#include "core/buf.h"
#include "quic/quic.h"
#include "ws/ws.h"

/* ------------------------------------------------------------------ QUIC */

static int q_send_control(void *conn, const uint8_t *body, size_t len)
{
    return quic_conn_send_control(conn, body, len); /* EFULL closes: TOO_SLOW */
}

static int q_queue_media(void *conn, struct buf *b, uint32_t off, uint32_t len)
{
    return quic_conn_queue_datagram(conn, b, off, len);
}

static void q_close(void *conn, uint64_t code, const char *reason)
{
    quic_conn_close(conn, code, reason);
}

static void q_path(void *conn, struct endpoint_path *out)
{
    struct quic_conn_stats cs;
    quic_conn_stats(conn, &cs);
    *out = (struct endpoint_path){
        .srtt_ns = cs.srtt_ns,
        .min_rtt_ns = cs.min_rtt_ns,
        .rttvar_ns = cs.rttvar_ns,
        .media_in = cs.dgram_in,
        .media_out = cs.dgram_out,
        .media_acked = cs.dgram_acked,
        .media_lost = cs.dgram_lost,
        .media_dropped = cs.dgram_drop_cwnd + cs.dgram_drop_queue + cs.dgram_drop_too_large,
        .bytes_in = cs.bytes_in,
        .bytes_out = cs.bytes_out,
        .control_pending = cs.control_pending,
    };
}

static int q_handoff(void *conn, unsigned to)
{
    return quic_conn_handoff(conn, to);
}

static const struct endpoint_ops quic_endpoint = {
    .name = "quic",
    .send_control = q_send_control,
    .queue_media = q_queue_media,
    .close = q_close,
    .path = q_path,
    .handoff = q_handoff,
};

static int q_on_open(struct quic_conn *c, void *arg)
{
    struct session *ss;
    int code = session_open(arg, &quic_endpoint, c, &ss);
    if (code == 0)
        quic_conn_set_user(c, ss);
    return code;
}

static void q_on_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    session_control(quic_conn_user(c), body, len);
}

static void q_on_datagram(struct quic_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    session_media(quic_conn_user(c), data, len);
}

static void q_on_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    struct session *ss = quic_conn_user(c);
    quic_conn_set_user(c, NULL);
    session_transit_closed(arg, ss);
    session_closed(ss, app_error);
}

static void q_on_detach(struct quic_conn *c, void *arg)
{
    (void)arg;
    session_detach(quic_conn_user(c));
}

static void q_on_adopt(struct quic_conn *c, void *arg)
{
    session_adopt(arg, quic_conn_user(c));
}

const struct quic_app_ops session_quic_ops = {
    .on_open = q_on_open,
    .on_control = q_on_control,
    .on_datagram = q_on_datagram,
    .on_close = q_on_close,
    .on_detach = q_on_detach,
    .on_adopt = q_on_adopt,
};

/* ------------------------------------------------------------- WebSocket */

static int w_send_control(void *conn, const uint8_t *body, size_t len)
{
    return ws_conn_send_control(conn, body, len); /* EFULL closes: TOO_SLOW */
}

static int w_queue_media(void *conn, struct buf *b, uint32_t off, uint32_t len)
{
    /* Bounded per connection: a full queue drops its oldest packet. */
    return ws_conn_queue_media(conn, b, off, len);
}

static void w_close(void *conn, uint64_t code, const char *reason)
{
    ws_conn_close(conn, code, reason);
}

static void w_path(void *conn, struct endpoint_path *out)
{
    struct ws_conn_stats cs;
    ws_conn_stats(conn, &cs);
    /* TCP delivers what it was given: written media counts as acknowledged,
     * none as lost; what the relay could not write is dropped (§11.3). */
    *out = (struct endpoint_path){
        .srtt_ns = cs.srtt_ns,
        .min_rtt_ns = cs.srtt_ns,
        .rttvar_ns = cs.rttvar_ns,
        .media_in = cs.media_in,
        .media_out = cs.media_out,
        .media_acked = cs.media_out,
        .media_lost = 0,
        .media_dropped = cs.media_drop_queue + cs.media_drop_stale + cs.media_drop_too_large,
        .bytes_in = cs.bytes_in,
        .bytes_out = cs.bytes_out,
        .control_pending = cs.control_pending,
    };
}

static const struct endpoint_ops ws_endpoint = {
    .name = "ws",
    .send_control = w_send_control,
    .queue_media = w_queue_media,
    .close = w_close,
    .path = w_path,
};

static int w_on_open(struct ws_conn *c, void *arg)
{
    struct session *ss;
    int code = session_open(arg, &ws_endpoint, c, &ss);
    if (code == 0)
        ws_conn_set_user(c, ss);
    return code;
}

static void w_on_control(struct ws_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    session_control(ws_conn_user(c), body, len);
}

static void w_on_media(struct ws_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    session_media(ws_conn_user(c), data, len);
}

static void w_on_close(struct ws_conn *c, uint64_t app_error, void *arg)
{
    (void)arg;
    struct session *ss = ws_conn_user(c);
    ws_conn_set_user(c, NULL);
    session_closed(ss, app_error);
}

const struct ws_app_ops session_ws_ops = {
    .on_open = w_on_open,
    .on_control = w_on_control,
    .on_media = w_on_media,
    .on_close = w_on_close,
};

/* ---------------------------------------------------------------- /rooms */

void endpoint_link_stats(const struct session *ss, struct quic_conn_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (ss->c == NULL)
        return;
    if (ss->eo == &quic_endpoint) {
        quic_conn_stats(ss->c, out);
        return;
    }
    struct endpoint_path ph;
    ss->eo->path(ss->c, &ph);
    out->srtt_ns = ph.srtt_ns;
    out->min_rtt_ns = ph.min_rtt_ns;
    out->rttvar_ns = ph.rttvar_ns;
    out->dgram_in = ph.media_in;
    out->dgram_out = ph.media_out;
    out->dgram_acked = ph.media_acked;
    out->dgram_lost = ph.media_lost;
    out->dgram_drop_queue = ph.media_dropped;
    out->bytes_in = ph.bytes_in;
    out->bytes_out = ph.bytes_out;
    out->control_pending = ph.control_pending;
}
