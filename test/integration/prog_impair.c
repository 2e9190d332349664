/* prog_impair: a userspace UDP impairment proxy for the torture runs
 * (test/torture/, docs/TESTING.md). tc netem is not available on the
 * build machines, so this stands in for it.
 *
 * Clients send to --listen; each distinct client address gets its own
 * upstream socket (its own source port) connected to --upstream, so the
 * relay sees as many 4-tuples as there are clients. Each direction has its
 * own loss, duplication, delay + jitter and reordering (test/torture/
 * impair.c draws the verdicts from a seeded generator). NAT rebinding:
 * at --rebind-at times, every --rebind-every, or on SIGUSR1, every client's
 * upstream socket is replaced by a fresh one (a new source port), so the
 * relay sees each client's address change mid-connection.
 *
 * Prints "impair: listening HOST PORT" once ready, runs until --duration
 * or SIGTERM/SIGINT, then prints its counters as one JSON object (stdout
 * and --stats FILE). Every loop is bounded: a turn reads at most BATCH
 * datagrams per socket and sends at most the queue's capacity. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The pure parts, compiled into this program (see impair.h). */
#include "test/torture/impair.c"

#define BATCH 64
#define EVENTS 64

struct dir_stats {
    uint64_t rx, tx, lost, duplicated, delayed, reordered, queue_full, send_errors, stale;
};

struct client {
    bool used;
    struct sockaddr_storage addr; /* downstream (the real client) */
    socklen_t alen;
    int fd; /* upstream socket, connected to the relay; -1 if none */
    uint32_t gen;
    uint64_t last_ns;
    uint64_t down_rx_since_rebind; /* relay -> client packets on the current socket */
    uint64_t up_tx_since_rebind;
};

struct proxy {
    struct impair_opts o;
    struct impair_rng rng[2];
    struct impair_queue q;
    int down_fd, ep;
    struct sockaddr_storage up_addr;
    socklen_t up_alen;
    struct client *cl;
    unsigned n_cl;
    uint64_t t0;
    struct dir_stats st[2];
    uint64_t clients_seen, clients_refused, clients_evicted, rebinds, rebind_sockets, rebind_errors,
        pending_at_exit, queue_max;
    uint64_t last_rebind_ns;
    unsigned rebind_next_at;
    uint64_t next_periodic_ns;
};

static volatile sig_atomic_t g_stop, g_rebind;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_rebind = 1;
    else
        g_stop = 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
        return 0;
    }
    return -EINVAL;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* A new upstream socket connected to the relay, registered with epoll under
 * the client's index. Returns the fd or -1. */
static int upstream_socket(struct proxy *p, unsigned idx)
{
    int fd = socket(p->up_addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    int buf = 1 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx + 1};
    if (connect(fd, (struct sockaddr *)&p->up_addr, p->up_alen) == -1 ||
        epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        close(fd);
        return -1;
    }
    return fd;
}

static void client_drop(struct client *c)
{
    if (c->fd != -1)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->used = false;
    c->gen++; /* packets still queued for it are stale */
}

/* The client for addr, created on first sight. NULL: table full. */
static struct client *client_get(struct proxy *p, const struct sockaddr_storage *addr,
                                 socklen_t alen, uint64_t now, unsigned *idx)
{
    int free_i = -1, idle_i = -1;
    uint64_t idle_ns = (uint64_t)(p->o.idle_s * 1e9);
    /* Linear: the torture runs have at most a few hundred clients. */
    for (unsigned i = 0; i < p->n_cl; i++) {
        struct client *c = &p->cl[i];
        if (!c->used) {
            if (free_i < 0)
                free_i = (int)i;
            continue;
        }
        if (same_addr(&c->addr, addr)) {
            *idx = i;
            return c;
        }
        if (idle_i < 0 && now - c->last_ns > idle_ns)
            idle_i = (int)i;
    }
    if (free_i < 0 && idle_i >= 0) {
        client_drop(&p->cl[idle_i]);
        p->clients_evicted++;
        free_i = idle_i;
    }
    if (free_i < 0) {
        p->clients_refused++;
        return NULL;
    }
    struct client *c = &p->cl[free_i];
    int fd = upstream_socket(p, (unsigned)free_i);
    if (fd == -1) {
        p->clients_refused++;
        return NULL;
    }
    c->used = true;
    c->addr = *addr;
    c->alen = alen;
    c->fd = fd;
    c->last_ns = now;
    c->down_rx_since_rebind = c->up_tx_since_rebind = 0;
    p->clients_seen++;
    *idx = (unsigned)free_i;
    return c;
}

/* Every client moves to a new upstream socket: the relay sees a new
 * source port for each connection (a NAT rebinding). */
static void rebind_all(struct proxy *p, uint64_t now)
{
    p->rebinds++;
    p->last_rebind_ns = now;
    for (unsigned i = 0; i < p->n_cl; i++) {
        struct client *c = &p->cl[i];
        if (!c->used)
            continue;
        int fd = upstream_socket(p, i);
        if (fd == -1) {
            p->rebind_errors++;
            continue;
        }
        close(c->fd);
        c->fd = fd;
        c->down_rx_since_rebind = c->up_tx_since_rebind = 0;
        p->rebind_sockets++;
    }
}

/* Applies the direction's impairments to one received datagram. */
static void ingest(struct proxy *p, int dir, unsigned idx, const uint8_t *data, size_t len,
                   uint64_t now)
{
    struct dir_stats *s = &p->st[dir];
    s->rx++;
    struct impair_verdict v;
    impair_decide(&p->o.dir[dir], &p->rng[dir], &v);
    if (v.copies == 0) {
        s->lost++;
        return;
    }
    if (v.copies == 2)
        s->duplicated++;
    for (unsigned k = 0; k < v.copies; k++) {
        struct impair_pkt *pk = impair_queue_alloc(&p->q);
        if (pk == NULL) {
            s->queue_full++;
            continue;
        }
        pk->dir = (uint32_t)dir;
        pk->client = idx;
        pk->client_gen = p->cl[idx].gen;
        pk->len = (uint16_t)len;
        memcpy(pk->data, data, len);
        if (v.delay_ns[k] > 0)
            s->delayed++;
        if (v.reordered[k])
            s->reordered++;
        impair_queue_push(&p->q, pk, now + v.delay_ns[k]);
    }
    if (p->q.n > p->queue_max)
        p->queue_max = p->q.n;
}

static void send_due(struct proxy *p, uint64_t now)
{
    /* Bounded by the queue's size: each pop removes one packet. */
    for (size_t guard = p->q.cap + 1; guard > 0; guard--) {
        struct impair_pkt *pk = impair_queue_pop_due(&p->q, now);
        if (pk == NULL)
            break;
        struct dir_stats *s = &p->st[pk->dir];
        struct client *c = &p->cl[pk->client];
        if (!c->used || c->gen != pk->client_gen) {
            s->stale++;
        } else {
            ssize_t n;
            if (pk->dir == IMPAIR_UP)
                n = send(c->fd, pk->data, pk->len, MSG_DONTWAIT);
            else
                n = sendto(p->down_fd, pk->data, pk->len, MSG_DONTWAIT, (struct sockaddr *)&c->addr,
                           c->alen);
            if (n == (ssize_t)pk->len) {
                s->tx++;
                if (pk->dir == IMPAIR_UP)
                    c->up_tx_since_rebind++;
            } else {
                s->send_errors++;
            }
        }
        impair_queue_release(&p->q, pk);
    }
}

static void read_down(struct proxy *p, uint64_t now)
{
    uint8_t buf[IMPAIR_MTU];
    for (int k = 0; k < BATCH; k++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n =
            recvfrom(p->down_fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        unsigned idx;
        struct client *c = client_get(p, &from, fl, now, &idx);
        if (c == NULL)
            continue;
        c->last_ns = now;
        ingest(p, IMPAIR_UP, idx, buf, (size_t)n, now);
    }
}

static void read_up(struct proxy *p, unsigned idx, uint64_t now)
{
    uint8_t buf[IMPAIR_MTU];
    struct client *c = &p->cl[idx];
    for (int k = 0; k < BATCH && c->used; k++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0)
            return; /* EAGAIN, or ECONNREFUSED while the relay is down */
        c->last_ns = now;
        c->down_rx_since_rebind++;
        ingest(p, IMPAIR_DOWN, idx, buf, (size_t)n, now);
    }
}

static void json_dir(FILE *f, const char *name, const struct impair_dir *d,
                     const struct dir_stats *s)
{
    fprintf(f,
            "\"%s\":{\"config\":{\"loss\":%.6g,\"dup\":%.6g,\"reorder\":%.6g,\"delay_ms\":%.6g,"
            "\"jitter_ms\":%.6g,\"reorder_delay_ms\":%.6g},"
            "\"rx\":%llu,\"tx\":%llu,\"lost\":%llu,\"duplicated\":%llu,\"delayed\":%llu,"
            "\"reordered\":%llu,\"queue_full\":%llu,\"send_errors\":%llu,\"stale\":%llu}",
            name, d->loss, d->dup, d->reorder, (double)d->delay_ns / 1e6,
            (double)d->jitter_ns / 1e6, (double)d->reorder_ns / 1e6, (unsigned long long)s->rx,
            (unsigned long long)s->tx, (unsigned long long)s->lost,
            (unsigned long long)s->duplicated, (unsigned long long)s->delayed,
            (unsigned long long)s->reordered, (unsigned long long)s->queue_full,
            (unsigned long long)s->send_errors, (unsigned long long)s->stale);
}

static void report(struct proxy *p, FILE *f, uint64_t now)
{
    unsigned active = 0, rx_after = 0, tx_after = 0;
    for (unsigned i = 0; i < p->n_cl; i++) {
        const struct client *c = &p->cl[i];
        if (!c->used)
            continue;
        active++;
        rx_after += c->down_rx_since_rebind > 0;
        tx_after += c->up_tx_since_rebind > 0;
    }
    fprintf(f, "{\"seed\":%llu,\"elapsed_s\":%.3f,", (unsigned long long)p->o.seed,
            (double)(now - p->t0) / 1e9);
    json_dir(f, "up", &p->o.dir[IMPAIR_UP], &p->st[IMPAIR_UP]);
    fputc(',', f);
    json_dir(f, "down", &p->o.dir[IMPAIR_DOWN], &p->st[IMPAIR_DOWN]);
    fprintf(f,
            ",\"clients\":{\"seen\":%llu,\"active\":%u,\"refused\":%llu,\"evicted\":%llu},"
            "\"rebind\":{\"events\":%llu,\"sockets\":%llu,\"errors\":%llu,"
            "\"last_at_s\":%.3f,\"clients_rx_since_last\":%u,\"clients_tx_since_last\":%u},"
            "\"queue\":{\"cap\":%zu,\"max\":%llu,\"pending_at_exit\":%llu}}\n",
            (unsigned long long)p->clients_seen, active, (unsigned long long)p->clients_refused,
            (unsigned long long)p->clients_evicted, (unsigned long long)p->rebinds,
            (unsigned long long)p->rebind_sockets, (unsigned long long)p->rebind_errors,
            p->rebinds ? (double)(p->last_rebind_ns - p->t0) / 1e9 : 0.0, rx_after, tx_after,
            p->q.cap, (unsigned long long)p->queue_max, (unsigned long long)p->pending_at_exit);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: prog_impair --upstream HOST:PORT [options]\n"
               "  --listen HOST:PORT      where clients send (default 127.0.0.1:0, printed)\n"
               "  --seed N                generator seed (default 1)\n"
               "  --duration T            stop after T (default: at SIGTERM)\n"
               "  --loss P --dup P        percent of packets dropped / sent twice\n"
               "  --delay T --jitter T    one-way delay, +- uniform jitter (e.g. 20ms)\n"
               "  --reorder P             percent of copies held back --reorder-delay (30ms)\n"
               "  --up-X / --down-X       the same for one direction (up: client -> relay)\n"
               "  --rebind-at T[,T..]     NAT rebinding of every client at these times\n"
               "  --rebind-every T        ... and/or periodically; SIGUSR1 rebinds now\n"
               "  --max-clients N         mapping table size (default 1024)\n"
               "  --idle T                reuse mappings idle this long (default 60s)\n"
               "  --queue N               delayed packets held at most (default 16384)\n"
               "  --stats FILE            also write the exit JSON here\n");
}

int main(int argc, char **argv)
{
    static struct proxy px;
    struct proxy *p = &px;
    char err[256];
    int rc = impair_parse(argc, argv, &p->o, err, sizeof(err));
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "prog_impair: %s\n", err);
        usage(stderr);
        return 2;
    }
    int ret = 1;
    p->down_fd = p->ep = -1;
    impair_rng_seed(&p->rng[IMPAIR_UP], p->o.seed);
    impair_rng_seed(&p->rng[IMPAIR_DOWN], p->o.seed ^ 0x5bd1e995u);
    if (impair_queue_init(&p->q, p->o.queue_cap) != 0)
        goto out;
    p->n_cl = p->o.max_clients;
    p->cl = calloc(p->n_cl, sizeof(*p->cl));
    if (p->cl == NULL)
        goto out;
    for (unsigned i = 0; i < p->n_cl; i++)
        p->cl[i].fd = -1;

    struct sockaddr_storage la;
    socklen_t ll;
    if (resolve(p->o.up_host, p->o.up_port, &p->up_addr, &p->up_alen) != 0 ||
        resolve(p->o.listen_host, p->o.listen_port, &la, &ll) != 0) {
        fprintf(stderr, "prog_impair: addresses must be numeric\n");
        goto out;
    }
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    p->down_fd = socket(la.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->ep == -1 || p->down_fd == -1) {
        perror("prog_impair: socket");
        goto out;
    }
    int buf = 4 << 20;
    (void)setsockopt(p->down_fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    (void)setsockopt(p->down_fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (bind(p->down_fd, (struct sockaddr *)&la, ll) == -1 ||
        epoll_ctl(p->ep, EPOLL_CTL_ADD, p->down_fd, &ev) == -1) {
        perror("prog_impair: bind");
        goto out;
    }
    ll = sizeof(la);
    getsockname(p->down_fd, (struct sockaddr *)&la, &ll);
    uint16_t port = ntohs(la.ss_family == AF_INET ? ((struct sockaddr_in *)&la)->sin_port
                                                  : ((struct sockaddr_in6 *)&la)->sin6_port);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    p->t0 = mono_ns();
    uint64_t end = p->o.duration_s > 0 ? p->t0 + (uint64_t)(p->o.duration_s * 1e9) : UINT64_MAX;
    p->next_periodic_ns =
        p->o.rebind_every_s > 0 ? p->t0 + (uint64_t)(p->o.rebind_every_s * 1e9) : UINT64_MAX;
    printf("impair: listening %s %u\n", p->o.listen_host, port);
    fflush(stdout);

    while (!g_stop) {
        uint64_t now = mono_ns();
        if (now >= end)
            break;
        /* Rebinding: scheduled, periodic or by signal. */
        bool rebind = g_rebind;
        g_rebind = 0;
        if (p->rebind_next_at < p->o.n_rebind_at &&
            now >= p->t0 + (uint64_t)(p->o.rebind_at_s[p->rebind_next_at] * 1e9)) {
            p->rebind_next_at++;
            rebind = true;
        }
        if (now >= p->next_periodic_ns) {
            p->next_periodic_ns = now + (uint64_t)(p->o.rebind_every_s * 1e9);
            rebind = true;
        }
        if (rebind)
            rebind_all(p, now);

        uint64_t wake = end;
        const struct impair_pkt *top = impair_queue_peek(&p->q);
        if (top != NULL && top->due < wake)
            wake = top->due;
        if (p->next_periodic_ns < wake)
            wake = p->next_periodic_ns;
        if (p->rebind_next_at < p->o.n_rebind_at) {
            uint64_t at = p->t0 + (uint64_t)(p->o.rebind_at_s[p->rebind_next_at] * 1e9);
            if (at < wake)
                wake = at;
        }
        int timeout_ms = 100; /* also bounds how late a signal is noticed */
        if (wake <= now)
            timeout_ms = 0;
        else if (wake - now < 100000000ull)
            timeout_ms = (int)((wake - now + 999999) / 1000000);
        struct epoll_event evs[EVENTS];
        int n = epoll_wait(p->ep, evs, EVENTS, timeout_ms);
        if (n == -1 && errno != EINTR) {
            perror("prog_impair: epoll_wait");
            goto out;
        }
        now = mono_ns();
        for (int i = 0; i < n; i++) {
            uint64_t id = evs[i].data.u64;
            if (id == 0)
                read_down(p, now);
            else if (id - 1 < p->n_cl)
                read_up(p, (unsigned)(id - 1), now);
        }
        send_due(p, now);
    }
    ret = 0;
out:;
    uint64_t now = mono_ns();
    p->pending_at_exit = p->q.n;
    if (p->t0 != 0) {
        report(p, stdout, now);
        fflush(stdout);
        if (p->o.stats_file != NULL) {
            FILE *f = fopen(p->o.stats_file, "w");
            if (f != NULL) {
                report(p, f, now);
                fclose(f);
            } else {
                perror("prog_impair: --stats");
                ret = 1;
            }
        }
    }
    for (unsigned i = 0; p->cl != NULL && i < p->n_cl; i++)
        if (p->cl[i].used)
            client_drop(&p->cl[i]);
    free(p->cl);
    impair_queue_free(&p->q);
    if (p->down_fd != -1)
        close(p->down_fd);
    if (p->ep != -1)
        close(p->ep);
    return ret;
}
