#include "resumecl.h"

#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "echo_app.h"
#include "quic/quic.h"

static int rc_open(struct quic_conn *c, void *arg)
{
    (void)arg;
    struct resumecl_conn *t = quic_conn_user(c);
    t->opened++;
    t->resumed = quic_conn_tls_resumed(c);
    return 0;
}

static void rc_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)body;
    (void)len;
    (void)arg;
    ((struct resumecl_conn *)quic_conn_user(c))->ctl_in++;
}

static void rc_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)app_error;
    (void)arg;
    ((struct resumecl_conn *)quic_conn_user(c))->closed++;
}

const struct quic_app_ops resumecl_ops = {
    .on_open = rc_open, .on_control = rc_control, .on_close = rc_close};

uint64_t resumecl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int resumecl_new(struct quic_client **out, const char *ca_dir)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", ca_dir != NULL ? ca_dir : echo_cert_dir(false));
    struct quic_client_config cc = {.ca_file = ca};
    return quic_client_new(out, &cc, &resumecl_ops, NULL);
}

/* One step of the client loop: waits for a packet or its next timer, at
 * most 5 ms, then processes. */
static bool step(struct quic_client *cl)
{
    struct pollfd p = {.fd = quic_client_fd(cl), .events = POLLIN};
    uint64_t to = quic_client_next_timeout(cl, resumecl_now_ns());
    (void)poll(&p, 1, to > 5000000 ? 5 : (int)(to / 1000000));
    return quic_client_process(cl, resumecl_now_ns()) == 0;
}

static uint64_t deadline(void)
{
    return resumecl_now_ns() + (uint64_t)RESUMECL_WAIT_MS * 1000000ULL;
}

bool resumecl_until(struct quic_client *cl, const uint64_t *v, uint64_t want)
{
    uint64_t end = deadline();
    while (*v < want) {
        if (resumecl_now_ns() > end || !step(cl))
            return false;
    }
    return true;
}

bool resumecl_until_open(struct quic_client *cl, const struct resumecl_conn *t)
{
    uint64_t end = deadline();
    while (t->opened == 0 && t->closed == 0) {
        if (resumecl_now_ns() > end || !step(cl))
            return false;
    }
    return t->opened > 0;
}

bool resumecl_until_ticket(struct quic_client *cl, uint16_t port)
{
    uint64_t end = deadline();
    while (!quic_client_has_ticket(cl, "127.0.0.1", port)) {
        if (resumecl_now_ns() > end || !step(cl))
            return false;
    }
    return true;
}

int resumecl_close(struct quic_client *cl, struct quic_conn *c)
{
    quic_conn_close(c, QUIC_APP_NO_ERROR, NULL);
    int rc = quic_client_process(cl, resumecl_now_ns());
    quic_client_conn_del(c);
    return rc;
}
