/* Handshake cost probe (docs/OPERATIONS.md, issue 15): a QUIC echo server
 * and a client that makes N sequential connections, full or resumed, for
 * scripts/hs-callgrind, which runs the server under callgrind.
 *
 *   prog_hs server CERT KEY STATE_DIR PRIORITY PORTFILE N
 *       serves until N connections closed; writes its port to
 *       PORTFILE once listening. PRIORITY "" : the default.
 *   prog_hs client CA PORT N RESUME PRIORITY
 *       RESUME 1: one full connection for a ticket first, then N resumed
 *       ones (each must resume); 0: N full ones (no tickets). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quic/client.h"
#include "../common/echo_app.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int server(char **av)
{
    struct quic_shared_config qc = {.n_workers = 1,
                                    .cert_file = av[0],
                                    .key_file = av[1],
                                    .state_dir = av[2],
                                    .priority = *av[3] ? av[3] : NULL,
                                    .handshake_timeout_ns = 60000000000ULL};
    unsigned n = (unsigned)atoi(av[5]);
    struct echo_server *es = NULL;
    if (echo_server_start(&es, &qc) != 0)
        return 1;
    FILE *f = fopen(av[4], "w");
    if (f == NULL)
        return 1;
    fprintf(f, "%u\n", echo_server_port(es));
    fclose(f);
    /* Closes only: a client that closes at once may coalesce its
     * CONNECTION_CLOSE with its Finished, and the server then ends the
     * connection (handshake done, ticket issued) without an on_open. */
    while (atomic_load(&es->closes) < n)
        usleep(2000);
    struct quic_stats st;
    echo_server_stats(es, &st);
    fprintf(stderr, "prog_hs server: opens=%u resumed=%llu\n", n,
            (unsigned long long)st.tls_resumed);
    echo_server_stop(es);
    return 0;
}

struct tconn {
    int opened, closed;
    bool resumed;
};

static int t_open(struct quic_conn *c, void *arg)
{
    (void)arg;
    struct tconn *t = quic_conn_user(c);
    t->opened = 1;
    t->resumed = quic_conn_tls_resumed(c);
    return 0;
}

static void t_close(struct quic_conn *c, uint64_t e, void *arg)
{
    (void)e;
    (void)arg;
    ((struct tconn *)quic_conn_user(c))->closed = 1;
}

static const struct quic_app_ops ops = {.on_open = t_open, .on_close = t_close};

static bool step_until(struct quic_client *cl, bool (*done)(struct quic_client *, void *), void *a)
{
    uint64_t end = mono_ns() + 60000000000ULL;
    while (!done(cl, a)) {
        if (mono_ns() > end)
            return false;
        struct pollfd p = {.fd = quic_client_fd(cl), .events = POLLIN};
        uint64_t to = quic_client_next_timeout(cl, mono_ns());
        (void)poll(&p, 1, to > 5000000 ? 5 : (int)(to / 1000000));
        if (quic_client_process(cl, mono_ns()) != 0)
            return false;
    }
    return true;
}

static bool opened(struct quic_client *cl, void *a)
{
    (void)cl;
    return ((struct tconn *)a)->opened || ((struct tconn *)a)->closed;
}

static uint16_t g_port;
static bool ticket(struct quic_client *cl, void *a)
{
    (void)a;
    return quic_client_has_ticket(cl, "127.0.0.1", g_port);
}

static bool idle(struct quic_client *cl, void *a)
{
    (void)a;
    return quic_client_active(cl) == 0;
}

static int one(struct quic_client *cl, bool want_ticket, bool must_resume)
{
    struct tconn t = {0};
    struct quic_conn *c = NULL;
    if (want_ticket)
        quic_client_forget_ticket(cl, "127.0.0.1", g_port);
    if (quic_client_connect(cl, "127.0.0.1", g_port, &t, &c) != 0 || !step_until(cl, opened, &t) ||
        !t.opened)
        return -1;
    if (must_resume && !t.resumed) {
        fprintf(stderr, "prog_hs client: not resumed\n");
        return -1;
    }
    if (want_ticket && !step_until(cl, ticket, NULL))
        return -1;
    quic_conn_close(c, QUIC_APP_NO_ERROR, NULL);
    (void)step_until(cl, idle, NULL);
    quic_client_conn_del(c);
    return 0;
}

static int client(char **av)
{
    g_port = (uint16_t)atoi(av[1]);
    unsigned n = (unsigned)atoi(av[2]);
    bool resume = atoi(av[3]) != 0;
    struct quic_client_config cc = {
        .ca_file = av[0], .priority = *av[4] ? av[4] : NULL, .no_tickets = !resume};
    struct quic_client *cl = NULL;
    if (quic_client_new(&cl, &cc, &ops, NULL) != 0)
        return 1;
    if (resume && one(cl, true, false) != 0)
        return 1;
    for (unsigned i = 0; i < n; i++)
        if (one(cl, false, resume) != 0)
            return 1;
    quic_client_del(cl);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 8 && strcmp(argv[1], "server") == 0)
        return server(argv + 2);
    if (argc == 7 && strcmp(argv[1], "client") == 0)
        return client(argv + 2);
    fprintf(stderr, "usage: see test/integration/prog_hs.c\n");
    return 2;
}
