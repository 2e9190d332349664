#include "quicpath.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "caseguard.h"
#include "client/client_int.h"
#include "core/buf.h"
#include "quic/client.h"
#include "quic/quic_int.h"

static void path_out(void *arg, struct quic_conn *c, const uint8_t *data, size_t len)
{
    struct qp_path *p = arg;
    p->c = c;
    p->bytes_out += len;
    if (len >= p->count_min && len < p->count_max) {
        p->counted++;
        p->counted_at = c->ep->now;
        p->counted_len = len;
    }
    quic_client_emit(c, data, len);
}

static void path_in(void *arg, struct quic_conn *c, const uint8_t *data, size_t len)
{
    struct qp_path *p = arg;
    p->c = c;
    if (p->n < QP_HELD_MAX && len <= sizeof(p->data[0])) {
        unsigned i = (p->head + p->n) % QP_HELD_MAX;
        memcpy(p->data[i], data, len);
        p->len[i] = len;
        p->due[i] = roost_client_now() + p->delay_ns;
        p->n++;
    }
}

static void path_gone(void *arg, struct quic_conn *c)
{
    struct qp_path *p = arg;
    (void)c;
    p->n = 0;
}

static const struct quic_client_path qp_client_path = {path_out, path_in, path_gone};

void qp_start(struct qp *q, struct quic_shared_config *qc, struct qp_path *path,
              unsigned ack_thresh)
{
    q->path = path;
    q->want = 0;
    assert_int_equal(echo_server_start(&q->es, qc), 0);
    q->cl = NULL;
    assert_int_equal(echo_client_new(&q->cl, false, NULL), 0);
    if (ack_thresh != 0)
        assert_int_equal(roost_client_set_ack_thresh(q->cl, ack_thresh), 0);
    if (path != NULL) {
        size_t keep = offsetof(struct qp_path, c);
        memset((uint8_t *)path + keep, 0, sizeof(*path) - keep);
        quic_client_set_path(client_quic(q->cl), &qp_client_path, path);
    }
    memset(&q->ec, 0, sizeof(q->ec));
    assert_int_equal(
        roost_client_connect(q->cl, "127.0.0.1", echo_server_port(q->es), &q->ec, &q->ec.c), 0);
    assert_true(qp_until(q, qp_opened, q, QP_WAIT_MS));
}

void qp_stop(struct qp *q, bool check_bufs)
{
    roost_client_del(q->cl);
    q->cl = NULL;
    echo_server_stop(q->es);
    q->es = NULL;
    if (check_bufs)
        assert_int_equal(buf_live(), caseguard_buf_base());
}

static bool deliver_one(struct qp_path *p)
{
    if (p->n == 0)
        return false;
    unsigned i = p->head;
    p->head = (p->head + 1) % QP_HELD_MAX;
    p->n--;
    (void)quic_client_deliver(p->c, p->data[i], p->len[i], roost_client_now());
    return true;
}

bool qp_until(struct qp *q, bool (*pred)(void *arg), void *arg, int timeout_ms)
{
    struct qp_path *p = q->path;
    if (p == NULL)
        return echo_client_until(q->cl, pred, arg, timeout_ms);
    uint64_t end = echo_now_ms() + (uint64_t)timeout_ms;
    while (!pred(arg) && echo_now_ms() < end) {
        roost_client_step(q->cl, p->step_ms > 0 ? p->step_ms : 1);
        while (p->n > 0 && p->due[p->head] <= roost_client_now()) {
            (void)deliver_one(p);
            (void)roost_client_process(q->cl, roost_client_now());
        }
    }
    return pred(arg);
}

bool qp_hand_in_one(struct qp *q)
{
    return q->path != NULL && deliver_one(q->path);
}

void qp_hand_in_all(struct qp *q)
{
    while (qp_hand_in_one(q))
        (void)roost_client_process(q->cl, roost_client_now());
}

bool qp_opened(void *q)
{
    return ((struct qp *)q)->ec.opened > 0;
}

bool qp_got_dgrams(void *q)
{
    const struct qp *x = q;
    return x->ec.dgram_in >= x->want;
}

bool qp_got_ctl(void *q)
{
    const struct qp *x = q;
    return x->ec.ctl_in >= x->want;
}

bool qp_until_ms(void *t_ms)
{
    return echo_now_ms() >= *(const uint64_t *)t_ms;
}

struct quic_stats qp_stats(const struct qp *q)
{
    struct quic_stats st;
    echo_server_stats(q->es, &st);
    return st;
}

void qp_burst(struct qp *q, unsigned n, unsigned size)
{
    uint8_t b[ECHO_BURST_LEN + 4];
    memcpy(b, ECHO_BURST_CMD, ECHO_BURST_LEN);
    b[ECHO_BURST_LEN] = (uint8_t)(n >> 8);
    b[ECHO_BURST_LEN + 1] = (uint8_t)n;
    b[ECHO_BURST_LEN + 2] = (uint8_t)(size >> 8);
    b[ECHO_BURST_LEN + 3] = (uint8_t)size;
    assert_int_equal(roost_conn_send_control(q->ec.c, b, sizeof(b)), 0);
}
