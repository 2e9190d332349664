/* The public face of a connection that needs no other file: close codes,
 * the channel tags of a message, and the conn accessors. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "core/error.h"
#include "proto/frame.h"
#include "ws/ws_int.h"

/* ------------------------------------------------------------ codes */

uint16_t ws_close_code_from_app(uint64_t app_error)
{
    if (app_error == PROTO_ERR_NO_ERROR)
        return 1000;
    if (app_error < 1000)
        return (uint16_t)(4000 + app_error);
    return 4000 + PROTO_ERR_INTERNAL;
}

uint64_t ws_app_from_close_code(uint16_t code)
{
    if (code == 1000 || code == 1001 || code == 1005 || code == 4000)
        return PROTO_ERR_NO_ERROR;
    if (code > 4000 && code <= 4999)
        return code - 4000u;
    return PROTO_ERR_INTERNAL;
}

/* ---------------------------------------------------------- messages */

int ws_msg_parse(const uint8_t *msg, size_t len, const uint8_t **body, size_t *body_len)
{
    if (len == 0)
        return ROOST_EMALFORMED;
    if (msg[0] == WS_TAG_MEDIA) {
        *body = msg + 1;
        *body_len = len - 1;
        return WS_TAG_MEDIA;
    }
    if (msg[0] != WS_TAG_CONTROL)
        return ROOST_EMALFORMED;
    size_t hl, bl;
    int rc = frame_parse(msg + 1, len - 1, &hl, &bl);
    if (rc < 0 || bl == 0 || hl + bl != len - 1)
        return ROOST_EMALFORMED;
    *body = msg + 1 + hl;
    *body_len = bl;
    return WS_TAG_CONTROL;
}

/* --------------------------------------------------------- accessors */

struct ws_handle ws_conn_handle(const struct ws_conn *c)
{
    struct ws_handle h = {.worker = (uint16_t)c->s->id, .slot = c->slot, .gen = c->gen};
    return h;
}

void ws_conn_set_user(struct ws_conn *c, void *u)
{
    c->user = u;
}

void *ws_conn_user(const struct ws_conn *c)
{
    return c->user;
}

bool ws_conn_opened(const struct ws_conn *c)
{
    return c->opened;
}

bool ws_conn_tls(const struct ws_conn *c)
{
    return c->tls != NULL;
}

struct ws_server *ws_conn_server(const struct ws_conn *c)
{
    return c->s;
}

void ws_conn_stats(struct ws_conn *c, struct ws_conn_stats *out)
{
    *out = c->cs;
    out->control_pending = c->cq_bytes + (c->ctl_in_out ? c->ctl_out_end - c->sent_total : 0);
    out->media_queued = c->mq_n;
    out->out_buffered = c->olen;
    struct tcp_info ti;
    socklen_t l = sizeof(ti);
    if (c->fd >= 0 && getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0) {
        out->srtt_ns = (uint64_t)ti.tcpi_rtt * 1000;
        out->rttvar_ns = (uint64_t)ti.tcpi_rttvar * 1000;
        out->cwnd_bytes = (uint64_t)ti.tcpi_snd_cwnd * ti.tcpi_snd_mss;
        out->retrans = ti.tcpi_total_retrans;
    }
}
