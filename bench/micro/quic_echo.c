/* DATAGRAM echo rate on one worker core, against a raw UDP echo floor.
 *
 * Server: one roost worker (pinned to the first allowed CPU) running
 * quic_server with an echo application. Client: this thread (pinned to the
 * next CPU) drives CONNS roost_client connections, keeping WINDOW datagrams
 * in flight per connection. Floor: the same shape with a plain UDP echo
 * thread (recvmmsg/sendmmsg, no QUIC) on the same server core. Each run is
 * bounded (SECONDS per size); payload sizes 64 B and 160 B.
 *
 * Usage: quic_echo [seconds-per-run]   (default 2) */
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "core/log.h"
#include "core/worker.h"
#include "quic/quic.h"
#include "quic/udp.h"

#define CONNS 4
#define WINDOW 64

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- server */

static struct quic_shared *g_sh;

static void s_dgram(struct quic_conn *c, const uint8_t *d, size_t n, void *arg)
{
    (void)arg;
    quic_conn_send_datagram(c, d, n);
}

static void s_control(struct quic_conn *c, const uint8_t *b, size_t n, void *arg)
{
    (void)arg;
    quic_conn_send_control(c, b, n);
}

static const struct quic_app_ops app = {.on_datagram = s_dgram, .on_control = s_control};

static int w_start(struct worker *w, void *arg)
{
    (void)arg;
    struct quic_server *s;
    int rc = quic_server_new(&s, w, g_sh, &app, NULL);
    if (rc == 0)
        worker_set_user(w, s);
    return rc;
}
static void w_stop(struct worker *w, void *arg)
{
    (void)arg;
    quic_server_del(worker_user(w));
}
static void w_end(struct worker *w, void *arg)
{
    (void)arg;
    quic_server_turn_end(worker_user(w));
}
/* Ring messages: quic_server_new registers its range with the runtime. */
static const struct worker_ops wops = {.start = w_start, .stop = w_stop, .on_turn_end = w_end};

/* ---------------------------------------------------------------- client */

struct bconn {
    struct roost_conn *c;
    uint64_t sent, recv, written_off;
    uint64_t last_progress;
    int open;
};

static struct bconn bc[CONNS];
static size_t g_size;
static uint8_t g_payload[1200];

static void c_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    ((struct bconn *)roost_conn_user(c))->open = 1;
}
static void c_dgram(struct roost_conn *c, const uint8_t *d, size_t n, void *arg)
{
    (void)arg;
    (void)d;
    (void)n;
    ((struct bconn *)roost_conn_user(c))->recv++;
}
static const struct roost_client_callbacks ccb = {.on_open = c_open, .on_datagram = c_dgram};

static void top_up(uint64_t now)
{
    for (int i = 0; i < CONNS; i++) {
        struct bconn *b = &bc[i];
        if (!b->open)
            continue;
        /* Datagrams lost or dropped never come back: after 20 ms without
         * progress, forget what is outstanding. */
        if (now - b->last_progress > 20000000ULL) {
            b->written_off = b->sent - b->recv;
            b->last_progress = now;
        }
        while (b->sent - b->recv - b->written_off < WINDOW) {
            if (roost_conn_send_datagram(b->c, g_payload, g_size) != 0)
                break;
            b->sent++;
        }
    }
}

static uint64_t total_recv(void)
{
    uint64_t r = 0;
    for (int i = 0; i < CONNS; i++)
        r += bc[i].recv;
    return r;
}

static double g_pkts_rate;

static double run_quic(struct roost_client *cl, size_t size, double seconds)
{
    struct quic_stats s0, s1;
    quic_shared_stats(g_sh, 0, &s0);
    g_size = size;
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    uint64_t r0 = total_recv(), prev = r0;
    for (int i = 0; i < CONNS; i++)
        bc[i].last_progress = start;
    while (now_ns() < end) {
        uint64_t now = now_ns();
        top_up(now);
        roost_client_process(cl, now);
        uint64_t r = total_recv();
        if (r != prev) {
            for (int i = 0; i < CONNS; i++)
                bc[i].last_progress = now;
            prev = r;
        }
    }
    double el = (double)(now_ns() - start) / 1e9;
    quic_shared_stats(g_sh, 0, &s1);
    g_pkts_rate = (double)(s1.pkts_in - s0.pkts_in) / el;
    /* Drain what is in flight so the next size starts clean. */
    uint64_t drain = now_ns() + 100000000ULL;
    while (now_ns() < drain)
        roost_client_process(cl, now_ns());
    for (int i = 0; i < CONNS; i++)
        bc[i].written_off = bc[i].sent - bc[i].recv;
    return (double)(total_recv() - r0) / el;
}

/* ------------------------------------------------------------ raw floor */

static atomic_int raw_stop;
static int raw_cpu;

static void *raw_server(void *arg)
{
    int fd = *(int *)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(raw_cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    static struct udp_rx rx;
    static struct udp_tx tx;
    udp_tx_init(&tx, fd);
    while (!atomic_load_explicit(&raw_stop, memory_order_relaxed)) {
        int n = udp_rx_recv(fd, &rx, NULL);
        for (int i = 0; i < n; i++) {
            struct udp_txpkt *p = udp_tx_slot(&tx);
            if (p == NULL)
                break;
            memcpy(p->data, rx.data[i], rx.msgs[i].msg_len);
            udp_tx_commit(&tx, rx.msgs[i].msg_len, &rx.remote[i], NULL);
        }
        udp_tx_flush(&tx);
        if (n == 0)
            sched_yield();
    }
    return NULL;
}

static double run_raw(int cfd, size_t size, double seconds)
{
    static struct udp_rx rx;
    struct mmsghdr msgs[WINDOW];
    struct iovec iov[WINDOW];
    uint64_t sent = 0, recv = 0, off = 0, last = now_ns();
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    while (now_ns() < end) {
        uint64_t now = now_ns();
        if (now - last > 20000000ULL) {
            off = sent - recv;
            last = now;
        }
        unsigned k = 0;
        while (sent + k - recv - off < (uint64_t)WINDOW * CONNS && k < WINDOW) {
            iov[k].iov_base = g_payload;
            iov[k].iov_len = size;
            memset(&msgs[k], 0, sizeof(msgs[k]));
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            k++;
        }
        if (k > 0) {
            int s = sendmmsg(cfd, msgs, k, MSG_DONTWAIT);
            if (s > 0)
                sent += (unsigned)s;
        }
        int n = udp_rx_recv(cfd, &rx, NULL);
        if (n > 0) {
            recv += (unsigned)n;
            last = now;
        }
    }
    double el = (double)(now_ns() - start) / 1e9;
    return (double)recv / el;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (seconds <= 0 || seconds > 60)
        seconds = 2.0;
    log_set_level(LOG_LEVEL_WARN);
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof(allowed), &allowed);
    int cpus[2] = {-1, -1}, nc = 0;
    for (int i = 0; i < CPU_SETSIZE && nc < 2; i++)
        if (CPU_ISSET(i, &allowed))
            cpus[nc++] = i;
    if (nc < 2) {
        fprintf(stderr, "quic_echo: needs 2 CPUs\n");
        return 1;
    }
    raw_cpu = cpus[0];
    memset(g_payload, 0x42, sizeof(g_payload));
    printf("quic_echo: online_cpus=%ld server_cpu=%d client_cpu=%d conns=%d window=%d "
           "seconds=%.1f cmd=\"%s%s%s\"\n",
           sysconf(_SC_NPROCESSORS_ONLN), cpus[0], cpus[1], CONNS, WINDOW, seconds, argv[0],
           argc > 1 ? " " : "", argc > 1 ? argv[1] : "");

    const char *b = getenv("ROOST_BUILD");
    char dir[512], cert[600], key[600], ca[600], cmd[700];
    snprintf(dir, sizeof(dir), "%s/bench-certs", b && *b ? b : "build");
    snprintf(cmd, sizeof(cmd), "scripts/dev-cert '%s' >/dev/null", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "quic_echo: %s failed (run from the repo root)\n", cmd);
        return 1;
    }
    snprintf(cert, sizeof(cert), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);

    struct quic_shared_config qc = {
        .cert_file = cert, .key_file = key, .addr = "127.0.0.1", .n_workers = 1};
    if (quic_shared_new(&g_sh, &qc) != 0)
        return 1;
    struct worker_config wc = {.n_workers = 1, .cpus = &cpus[0], .n_cpus = 1};
    struct worker_pool *pool;
    if (worker_pool_new(&pool, &wc, &wops, NULL) != 0 || worker_pool_start(pool) != 0)
        return 1;
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CPU_SET(cpus[1], &cs);
    pthread_setaffinity_np(pthread_self(), sizeof(cs), &cs);

    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl;
    if (roost_client_new(&cl, &cc, &ccb, NULL) != 0)
        return 1;
    for (int i = 0; i < CONNS; i++)
        if (roost_client_connect(cl, "127.0.0.1", quic_shared_port(g_sh), &bc[i], &bc[i].c) != 0)
            return 1;
    uint64_t dl = now_ns() + 5000000000ULL;
    int open = 0;
    while (open < CONNS && now_ns() < dl) {
        roost_client_step(cl, 5);
        open = 0;
        for (int i = 0; i < CONNS; i++)
            open += bc[i].open;
    }
    if (open < CONNS) {
        fprintf(stderr, "quic_echo: connections did not open\n");
        return 1;
    }
    double q64 = run_quic(cl, 64, seconds);
    double p64 = g_pkts_rate;
    double q160 = run_quic(cl, 160, seconds);
    double p160 = g_pkts_rate;
    struct quic_stats st;
    quic_shared_stats(g_sh, 0, &st);
    roost_client_del(cl);
    worker_pool_del(pool);
    quic_shared_del(g_sh);

    /* Raw UDP floor, same server core. */
    struct udp_addr a;
    udp_addr_parse(&a, "127.0.0.1", 0);
    int sfd = udp_socket_open(&a, false, 4 << 20, NULL, NULL);
    struct udp_addr sa;
    udp_socket_local(sfd, &sa);
    int cfd = udp_socket_open(&a, false, 4 << 20, NULL, NULL);
    if (sfd < 0 || cfd < 0 || connect(cfd, &sa.u.sa, sa.len) != 0)
        return 1;
    pthread_t th;
    pthread_create(&th, NULL, raw_server, &sfd);
    double r64 = run_raw(cfd, 64, seconds);
    double r160 = run_raw(cfd, 160, seconds);
    atomic_store(&raw_stop, 1);
    pthread_join(th, NULL);
    close(sfd);
    close(cfd);

    /* QUIC packs several DATAGRAM frames per packet (WRITE_DATAGRAM_FLAG_MORE);
     * the raw floor sends one datagram per packet: both columns matter. */
    printf("size  quic_echo/s  quic_pkts_in/s  raw_udp_echo/s  quic/raw\n");
    printf("64    %11.0f  %14.0f  %14.0f  %8.3f\n", q64, p64, r64, r64 > 0 ? q64 / r64 : 0);
    printf("160   %11.0f  %14.0f  %14.0f  %8.3f\n", q160, p160, r160, r160 > 0 ? q160 / r160 : 0);
    printf("server: dgram_in=%llu dgram_out=%llu drop_cwnd=%llu drop_queue=%llu pkts_in=%llu "
           "pkts_out=%llu\n",
           (unsigned long long)st.dgram_in, (unsigned long long)st.dgram_out,
           (unsigned long long)st.dgram_drop_cwnd, (unsigned long long)st.dgram_drop_queue,
           (unsigned long long)st.pkts_in, (unsigned long long)st.pkts_out);
    return 0;
}
