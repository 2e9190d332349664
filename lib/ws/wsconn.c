/* A connection's life: the dirty list, its epoll mask, its deadlines and
 * timer, closing, and freeing at turn end. */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <wslay/wslay.h>

#include "core/buf.h"
#include "core/timer.h"
#include "ws/ws_int.h"

/* ------------------------------------------------------- conn basics */

uint64_t wsconn_now(const struct ws_conn *c)
{
    return worker_now(c->s->w);
}

void wsconn_mark_dirty(struct ws_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->s->dirty_head;
    c->s->dirty_head = c;
}

/* The one leave path towards the application: on_close exactly once. */
void wsconn_notify_close(struct ws_conn *c, uint64_t app_error)
{
    if (c->closed_cb)
        return;
    c->closed_cb = true;
    if (c->s->ops->on_close != NULL)
        c->s->ops->on_close(c, app_error, c->s->arg);
}

void wsconn_set_events(struct ws_conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t ev = EPOLLIN | (c->olen > 0 ? EPOLLOUT : 0);
    if (ev != c->events && worker_fd_mod(c->s->w, c->fd, ev) == 0)
        c->events = ev;
}

/* Closes the socket now; the memory goes at turn end (the connection may
 * still be on the caller's stack). */
void wsconn_set_dead(struct ws_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    c->state = CS_DEAD;
    timer_cancel(worker_timers(c->s->w), &c->timer);
    if (c->fd >= 0) {
        worker_fd_del(c->s->w, c->fd);
        close(c->fd);
        c->fd = -1;
    }
    wsconn_mark_dirty(c);
}

/* Ends the connection at once, without a Close frame (TCP/TLS errors,
 * handshake timeout, shutdown). */
void wsconn_abort(struct ws_conn *c, uint64_t app_error)
{
    wsconn_notify_close(c, app_error);
    wsconn_set_dead(c);
}

static void drop_media(struct ws_conn *c)
{
    unsigned cap = c->s->sh->cfg.media_queue_max;
    for (unsigned i = 0; i < c->mq_n; i++)
        buf_unref(c->mq[(c->mq_head + i) % cap].b);
    c->mq_head = c->mq_n = 0;
}

static void drop_control(struct ws_conn *c)
{
    while (c->cq_head != NULL) {
        struct ctl_item *it = c->cq_head;
        c->cq_head = it->next;
        free(it);
    }
    c->cq_tail = NULL;
    c->cq_bytes = 0;
}

void wsconn_free(struct ws_conn *c)
{
    struct ws_server *s = c->s;
    wsconn_notify_close(c, WS_APP_GOING_AWAY);
    timer_cancel(worker_timers(s->w), &c->timer);
    if (c->fd >= 0) {
        worker_fd_del(s->w, c->fd);
        close(c->fd);
    }
    if (c->ws != NULL)
        wslay_event_context_free(c->ws);
    if (c->tls != NULL)
        gnutls_deinit(c->tls);
    wsshared_creds_unref(c->creds); /* after the session that used them */
    drop_media(c);
    drop_control(c);
    free(c->mq);
    free(c->hbuf);
    free(c->obuf);
    struct conn_slot *sl = &s->slots[c->slot];
    sl->c = NULL;
    sl->gen++;
    sl->next_free = s->free_head;
    s->free_head = c->slot;
    s->live--;
    ST_DEC(s, conns_open);
    ST_INC(s, conns_closed);
    free(c);
}

/* ----------------------------------------------------------- deadlines */

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static bool ping_pending(const struct ws_conn *c)
{
    return c->ping_at > c->last_rx;
}

static uint64_t control_since(const struct ws_conn *c)
{
    uint64_t t = UINT64_MAX;
    if (c->cq_head != NULL)
        t = c->cq_head->at;
    if (c->ctl_in_out)
        t = min64(t, c->ctl_out_since);
    return t;
}

static uint64_t conn_deadline(const struct ws_conn *c)
{
    const struct ws_shared_config *cfg = &c->s->sh->cfg;
    switch (c->state) {
    case CS_TLS:
    case CS_HTTP:
        return c->t_accept + cfg->handshake_timeout_ns;
    case CS_OPEN: {
        uint64_t d = c->last_rx + cfg->idle_timeout_ns;
        if (!ping_pending(c))
            d = min64(d, c->last_rx + cfg->ping_interval_ns);
        uint64_t since = control_since(c);
        if (since != UINT64_MAX)
            d = min64(d, since + cfg->control_timeout_ns);
        return d;
    }
    case CS_CLOSING:
        return c->close_deadline;
    default:
        return TIMER_NEVER;
    }
}

/* Arms the timer when the deadline moved earlier; a later deadline (new
 * bytes received) is found when the timer fires, so the per-packet path
 * does not touch the heap. */
void wsconn_schedule(struct ws_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    uint64_t d = conn_deadline(c);
    if (timer_armed(&c->timer) && c->timer_at <= d)
        return;
    if (timer_arm(worker_timers(c->s->w), &c->timer, d) < 0) {
        wsconn_abort(c, WS_APP_INTERNAL);
        return;
    }
    c->timer_at = d;
}

/* ------------------------------------------------------------- closing */

static void set_reason(struct ws_conn *c, const char *reason)
{
    size_t n = reason ? strlen(reason) : 0;
    size_t k = n < WS_CLOSE_REASON_MAX ? n : WS_CLOSE_REASON_MAX;
    /* Cut at a character boundary: never before a continuation byte. */
    while (k > 0 && k < n && ((uint8_t)reason[k] & 0xc0) == 0x80)
        k--;
    if (k > 0)
        memcpy(c->reason, reason, k);
    c->reason_len = k;
}

/* From OPEN to CLOSING. own: we write our Close (close_code); otherwise
 * wslay has queued its own (an answer to the peer's, or a violation). */
void wsconn_begin_close(struct ws_conn *c, uint64_t app_error, bool own, uint16_t code,
                        const char *reason)
{
    c->state = CS_CLOSING;
    c->close_own = own;
    c->close_code = code;
    set_reason(c, reason);
    if (c->ws != NULL) {
        wslay_event_shutdown_read(c->ws); /* no more messages, even in this read */
        if (own)
            wslay_event_shutdown_write(c->ws);
    }
    drop_media(c);
    /* After LEAVE, what was queued still goes out before the Close. */
    if (app_error != WS_APP_NO_ERROR || !own)
        drop_control(c);
    c->close_deadline = wsconn_now(c) + c->s->sh->cfg.close_timeout_ns;
    c->blocked = false; /* re-evaluate at turn end */
    wsconn_mark_dirty(c);
    wsconn_notify_close(c, app_error);
}

void ws_conn_close(struct ws_conn *c, uint64_t app_error, const char *reason)
{
    switch (c->state) {
    case CS_OPEN:
        wsconn_begin_close(c, app_error, true, ws_close_code_from_app(app_error), reason);
        break;
    case CS_TLS:
    case CS_HTTP:
        wsconn_abort(c, app_error);
        break;
    default:
        break;
    }
}

void wsconn_violation(struct ws_conn *c, const char *why)
{
    ST_INC(c->s, protocol_violations);
    ws_conn_close(c, WS_APP_PROTOCOL_VIOLATION, why);
}

void wsconn_too_slow(struct ws_conn *c, const char *why)
{
    ST_INC(c->s, too_slow);
    ws_conn_close(c, WS_APP_TOO_SLOW, why);
}

/* --------------------------------------------------------------- timer */

void wsconn_on_timer(struct timer *t, uint64_t now, void *arg)
{
    (void)t;
    struct ws_conn *c = arg;
    const struct ws_shared_config *cfg = &c->s->sh->cfg;
    switch (c->state) {
    case CS_TLS:
    case CS_HTTP:
        if (now >= c->t_accept + cfg->handshake_timeout_ns) {
            ST_INC(c->s, handshake_timeouts);
            wsconn_abort(c, WS_APP_IDLE_TIMEOUT);
            return;
        }
        break;
    case CS_OPEN: {
        uint64_t since = control_since(c);
        if (now >= c->last_rx + cfg->idle_timeout_ns) {
            ST_INC(c->s, idle_timeouts);
            ws_conn_close(c, WS_APP_IDLE_TIMEOUT, "idle timeout");
        } else if (since != UINT64_MAX && now >= since + cfg->control_timeout_ns) {
            wsconn_too_slow(c, "control not read in time");
        } else if (!ping_pending(c) && now >= c->last_rx + cfg->ping_interval_ns) {
            struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
            if (wslay_event_queue_msg(c->ws, &m) == 0) {
                c->ping_at = now;
                ST_INC(c->s, pings_sent);
                wsconn_mark_dirty(c);
            }
        }
        break;
    }
    case CS_CLOSING:
        if (now >= c->close_deadline) {
            wsconn_set_dead(c);
            return;
        }
        break;
    default:
        return;
    }
    wsconn_schedule(c);
}
