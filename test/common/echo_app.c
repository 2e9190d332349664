#include "echo_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "caseguard.h"
#include "core/error.h"

static int on_open(struct quic_conn *c, void *arg)
{
    (void)c;
    struct echo_server *es = arg;
    atomic_fetch_add(&es->opens, 1);
    return 0;
}

static void on_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct echo_server *es = arg;
    atomic_fetch_add(&es->control_in, 1);
    if (len == 5 && memcmp(body, "blast", 5) == 0) {
        /* ECHO_BLAST_COUNT messages of ECHO_BLAST_SIZE bytes back. */
        static uint8_t big[ECHO_BLAST_SIZE];
        memset(big, 'B', sizeof(big));
        for (int i = 0; i < ECHO_BLAST_COUNT; i++)
            if (quic_conn_send_control(c, big, sizeof(big)) < 0)
                return;
        return;
    }
    if (len == ECHO_BURST_LEN + 4 && memcmp(body, ECHO_BURST_CMD, ECHO_BURST_LEN) == 0) {
        /* burst N S (big-endian u16 each): N datagrams of S bytes back, all
         * queued in this one call (one loop turn). */
        unsigned n = (unsigned)body[ECHO_BURST_LEN] << 8 | body[ECHO_BURST_LEN + 1];
        size_t sz = (size_t)body[ECHO_BURST_LEN + 2] << 8 | body[ECHO_BURST_LEN + 3];
        static uint8_t d[UINT16_MAX];
        memset(d, 'D', sz);
        for (unsigned i = 0; i < n; i++)
            if (quic_conn_send_datagram(c, d, sz) < 0)
                break;
        return;
    }
    if (len == ECHO_HANDOFF_LEN + 1 && memcmp(body, ECHO_HANDOFF_CMD, ECHO_HANDOFF_LEN) == 0) {
        (void)quic_conn_handoff(c, body[ECHO_HANDOFF_LEN]);
        return;
    }
    if (len == ECHO_WHERE_LEN && memcmp(body, ECHO_WHERE_CMD, ECHO_WHERE_LEN) == 0) {
        uint8_t at[3] = {'a', 't', (uint8_t)quic_conn_worker(c)};
        (void)quic_conn_send_control(c, at, sizeof(at));
        return;
    }
    if (len == ECHO_CLOSE_LEN && memcmp(body, ECHO_CLOSE_CMD, ECHO_CLOSE_LEN) == 0) {
        /* Close the way the relay refuses a version: code and reason. */
        quic_conn_close(c, PROTO_ERR_UNSUPPORTED_VERSION, ECHO_CLOSE_REASON);
        return;
    }
    (void)quic_conn_send_control(c, body, len);
}

static void on_datagram(struct quic_conn *c, const uint8_t *data, size_t len, void *arg)
{
    struct echo_server *es = arg;
    atomic_fetch_add(&es->dgram_in, 1);
    (void)quic_conn_send_datagram(c, data, len);
}

static void on_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)c;
    struct echo_server *es = arg;
    atomic_fetch_add(&es->closes, 1);
    if (app_error == QUIC_APP_IDLE_TIMEOUT)
        atomic_fetch_add(&es->close_idle, 1);
    if (app_error == QUIC_APP_TOO_SLOW)
        atomic_fetch_add(&es->close_too_slow, 1);
    if (app_error == QUIC_APP_GOING_AWAY)
        atomic_fetch_add(&es->close_going_away, 1);
}

static void on_detach(struct quic_conn *c, void *arg)
{
    (void)c;
    struct echo_server *es = arg;
    atomic_fetch_add(&es->detaches, 1);
}

static void on_adopt(struct quic_conn *c, void *arg)
{
    struct echo_server *es = arg;
    atomic_fetch_add(&es->adopts, 1);
    if (atomic_load(&es->quiet_adopt))
        return;
    uint8_t body[ECHO_ADOPTED_LEN + 1];
    memcpy(body, ECHO_ADOPTED, ECHO_ADOPTED_LEN);
    body[ECHO_ADOPTED_LEN] = (uint8_t)quic_conn_worker(c);
    (void)quic_conn_send_control(c, body, sizeof(body));
}

static const struct quic_app_ops echo_ops = {
    .on_open = on_open,
    .on_control = on_control,
    .on_datagram = on_datagram,
    .on_close = on_close,
    .on_detach = on_detach,
    .on_adopt = on_adopt,
};

static int w_start(struct worker *w, void *arg)
{
    struct echo_server *es = arg;
    struct quic_server *s = NULL;
    int rc = quic_server_new(&s, w, es->sh, &echo_ops, es);
    if (rc < 0)
        return rc;
    worker_set_user(w, s);
    return 0;
}

static void w_stop(struct worker *w, void *arg)
{
    (void)arg;
    quic_server_del(worker_user(w));
    worker_set_user(w, NULL);
}

static void w_turn_end(struct worker *w, void *arg)
{
    (void)arg;
    quic_server_turn_end(worker_user(w));
}

static const struct worker_ops echo_worker_ops = {
    .start = w_start,
    .stop = w_stop,
    .on_turn_end = w_turn_end, /* ring messages: quic_server_new registers them */
};

const char *echo_cert_dir(bool other)
{
    static char dirs[2][512];
    char *d = dirs[other ? 1 : 0];
    if (d[0] != '\0')
        return d;
    const char *b = getenv("ROOST_BUILD");
    snprintf(d, 512, "%s/test-certs%s", b && *b ? b : "build", other ? "-other" : "");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "scripts/dev-cert '%s' >/dev/null", d);
    if (system(cmd) != 0) {
        fprintf(stderr, "echo_cert_dir: %s failed\n", cmd);
        abort();
    }
    return d;
}

static void echo_server_release(void *copy);

int echo_server_start(struct echo_server **out, struct quic_shared_config *qcfg)
{
    static char cert[600], key[600];
    const char *d = echo_cert_dir(false);
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    if (qcfg->cert_file == NULL)
        qcfg->cert_file = cert;
    if (qcfg->key_file == NULL)
        qcfg->key_file = key;
    if (qcfg->addr == NULL)
        qcfg->addr = "127.0.0.1";
    struct echo_server *es = calloc(1, sizeof(*es));
    if (es == NULL)
        return ROOST_ENOMEM;
    es->n_workers = qcfg->n_workers;
    int rc = quic_shared_new(&es->sh, qcfg);
    if (rc < 0)
        goto fail;
    struct worker_config wc = {.n_workers = qcfg->n_workers, .no_pin = true};
    rc = worker_pool_new(&es->pool, &wc, &echo_worker_ops, es);
    if (rc < 0)
        goto fail;
    rc = worker_pool_start(es->pool);
    if (rc < 0)
        goto fail;
    caseguard_hold(es, echo_server_release, &es, sizeof(es));
    *out = es;
    return 0;
fail:
    worker_pool_del(es->pool);
    quic_shared_del(es->sh);
    free(es);
    return rc;
}

static void echo_server_release(void *copy)
{
    echo_server_stop(*(struct echo_server **)copy);
}

void echo_server_stop(struct echo_server *es)
{
    if (es == NULL)
        return;
    caseguard_drop(es);
    worker_pool_stop(es->pool);
    worker_pool_del(es->pool);
    quic_shared_del(es->sh);
    free(es);
}

bool echo_server_steering(const struct echo_server *es)
{
    return quic_shared_steering(es->sh);
}

uint16_t echo_server_port(const struct echo_server *es)
{
    return quic_shared_port(es->sh);
}

void echo_server_stats(const struct echo_server *es, struct quic_stats *out)
{
    quic_shared_stats_total(es->sh, out);
}

uint64_t echo_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool echo_client_until(struct roost_client *cl, bool (*pred)(void *arg), void *arg, int timeout_ms)
{
    uint64_t end = echo_now_ms() + (uint64_t)timeout_ms;
    while (!pred(arg)) {
        if (echo_now_ms() >= end)
            return pred(arg);
        roost_client_step(cl, 5);
    }
    return true;
}

static void ec_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    ((struct echo_conn *)roost_conn_user(c))->opened++;
}

static void ec_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    (void)body;
    (void)len;
    ((struct echo_conn *)roost_conn_user(c))->ctl_in++;
}

static void ec_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    (void)data;
    (void)len;
    ((struct echo_conn *)roost_conn_user(c))->dgram_in++;
}

static void ec_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)arg;
    struct echo_conn *e = roost_conn_user(c);
    e->closed++;
    e->info = *info;
}

const struct roost_client_callbacks echo_client_cbs = {
    .on_open = ec_open,
    .on_control = ec_control,
    .on_datagram = ec_datagram,
    .on_close = ec_close,
};

int echo_client_new(struct roost_client **out, bool other_ca, const char *alpn)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(other_ca));
    struct roost_client_config cc = {.ca_file = ca, .alpn = alpn};
    return roost_client_new(out, &cc, &echo_client_cbs, NULL);
}

bool echo_conns_open(struct echo_conn *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!v[i].opened)
            return false;
    return true;
}

bool echo_conns_closed(struct echo_conn *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!v[i].closed)
            return false;
    return true;
}
