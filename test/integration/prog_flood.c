/* prog_flood: sends malformed datagrams to a relay for the torture flood run
 * (test/torture/flood, docs/TESTING.md), and counts what comes back.
 *
 * Kinds, in turn:
 *   random     random bytes, 1..1400 long, any first byte
 *   truncated  a long header (Initial, version 1) cut off inside the header
 *   initial    a full-size (1200 B) Initial with valid-looking long header
 *              fields and garbage instead of protected payload (fails
 *              decryption; the relay must not keep state for it)
 *   version    a full-size long header with an unsupported version (the
 *              relay may answer with version negotiation, rate-limited)
 *   short      a short-header packet with an unknown 16-byte CID whose first
 *              byte names an existing worker (the relay may answer with a
 *              stateless reset, rate-limited)
 *   worker     a short header whose CID's first byte names worker w (cycling
 *              0..--workers-1, and one past the end), so packets land on a
 *              socket of one worker while the CID points at another: the
 *              relay's forwarding path between workers
 * Source ports vary (--sockets sockets), so SO_REUSEPORT spreads the flood
 * over every worker. --rate paces (0: as fast as possible), --count stops,
 * --duration bounds the run; SIGTERM stops early. Prints one JSON object. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test/torture/impair.c" /* seeded generator and option helpers */

#define MAX_SOCKS 64
#define BATCH 32
#define DGRAM_MAX 1400

enum kind { K_RANDOM, K_TRUNCATED, K_INITIAL, K_VERSION, K_SHORT, K_WORKER, K_N };
static const char *const kind_name[K_N] = {"random",  "truncated", "initial",
                                           "version", "short",     "worker"};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fill(struct impair_rng *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)impair_rng_next(r);
}

static size_t long_header(struct impair_rng *r, uint8_t *p, uint32_t version)
{
    size_t o = 0;
    p[o++] = 0xc0 | (uint8_t)(impair_rng_next(r) & 0x03); /* Initial, pn length */
    p[o++] = (uint8_t)(version >> 24);
    p[o++] = (uint8_t)(version >> 16);
    p[o++] = (uint8_t)(version >> 8);
    p[o++] = (uint8_t)version;
    uint8_t dl = (uint8_t)(8 + impair_rng_next(r) % 13); /* 8..20 */
    p[o++] = dl;
    fill(r, p + o, dl);
    o += dl;
    uint8_t sl = (uint8_t)(impair_rng_next(r) % 21);
    p[o++] = sl;
    fill(r, p + o, sl);
    o += sl;
    return o;
}

/* Builds one datagram of kind k. Returns its length. */
static size_t build(struct impair_rng *r, enum kind k, unsigned workers, uint64_t n, uint8_t *p)
{
    size_t len, o;
    switch (k) {
    case K_RANDOM:
        len = 1 + impair_rng_next(r) % DGRAM_MAX;
        fill(r, p, len);
        return len;
    case K_TRUNCATED:
        o = long_header(r, p, 1);
        p[o++] = 0;                              /* token length */
        return 1 + impair_rng_next(r) % (o - 1); /* cut inside the header */
    case K_INITIAL:
        o = long_header(r, p, 1);
        p[o++] = 0; /* token length */
        len = 1200;
        /* Length (2-byte varint) covers the rest: packet number + payload. */
        p[o] = (uint8_t)(0x40 | ((len - o - 2) >> 8));
        p[o + 1] = (uint8_t)(len - o - 2);
        o += 2;
        fill(r, p + o, len - o);
        return len;
    case K_VERSION:
        o = long_header(r, p, 0x1a2a3a4a); /* a reserved, unsupported version */
        fill(r, p + o, 1200 - o);
        return 1200;
    case K_SHORT:
    case K_WORKER:
        p[0] = 0x40 | (uint8_t)(impair_rng_next(r) & 0x3f);
        fill(r, p + 1, 16);
        if (k == K_SHORT) /* an existing worker, an unknown CID */
            p[1] = (uint8_t)(impair_rng_next(r) % workers);
        else /* every worker in turn, and one that does not exist */
            p[1] = (uint8_t)(n % (workers + 1));
        len = 1 + 16 + 24 + impair_rng_next(r) % 1100;
        fill(r, p + 17, len - 17);
        return len;
    default:
        return 0;
    }
}

/* Replies, by what they look like. */
struct replies {
    uint64_t vn, retry, reset_like, long_other, total;
};

static void drain(int *fds, unsigned n, struct replies *rp)
{
    uint8_t b[2048];
    for (unsigned i = 0; i < n; i++)
        for (int k = 0; k < 256; k++) {
            ssize_t m = recv(fds[i], b, sizeof(b), MSG_DONTWAIT);
            if (m <= 0)
                break;
            rp->total++;
            if (m >= 5 && (b[0] & 0x80)) {
                uint32_t v =
                    (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
                if (v == 0)
                    rp->vn++;
                else if (((b[0] >> 4) & 3) == 3)
                    rp->retry++;
                else
                    rp->long_other++;
            } else {
                rp->reset_like++;
            }
        }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: prog_flood --target HOST:PORT [--count N] [--rate PPS] [--duration T]\n"
               "                  [--workers W] [--sockets S] [--seed N] [--kinds LIST]\n"
               "  kinds: random,truncated,initial,version,short,worker (default all)\n");
}

int main(int argc, char **argv)
{
    char host[64] = "";
    uint16_t port = 0;
    uint64_t count = 100000, seed = 1, dur_ns = 60000000000ull;
    double rate = 0;
    unsigned workers = 2, nsock = 16;
    bool on[K_N];
    for (int k = 0; k < K_N; k++)
        on[k] = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL)
            goto bad;
        i++;
        char *end = NULL;
        if (strcmp(a, "--target") == 0) {
            if (impair_parse_hostport(v, host, sizeof(host), &port, false) != 0)
                goto bad;
        } else if (strcmp(a, "--count") == 0) {
            count = strtoull(v, &end, 10);
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, &end, 10);
        } else if (strcmp(a, "--rate") == 0) {
            rate = strtod(v, &end);
        } else if (strcmp(a, "--workers") == 0) {
            workers = (unsigned)strtoul(v, &end, 10);
        } else if (strcmp(a, "--sockets") == 0) {
            nsock = (unsigned)strtoul(v, &end, 10);
            if (nsock < 1 || nsock > MAX_SOCKS)
                goto bad;
        } else if (strcmp(a, "--duration") == 0) {
            if (impair_parse_time(v, &dur_ns) != 0)
                goto bad;
        } else if (strcmp(a, "--kinds") == 0) {
            for (int k = 0; k < K_N; k++)
                on[k] = strstr(v, kind_name[k]) != NULL;
        } else {
            goto bad;
        }
        if (end != NULL && (*end != '\0' || end == v))
            goto bad;
    }
    int n_on = 0;
    for (int k = 0; k < K_N; k++)
        n_on += on[k];
    if (port == 0 || n_on == 0 || !(rate >= 0) || workers < 1 || workers > 255)
        goto bad;

    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        sl = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        sl = sizeof(*s6);
    } else {
        goto bad;
    }
    int fds[MAX_SOCKS];
    for (unsigned i = 0; i < nsock; i++) {
        fds[i] = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fds[i] == -1 || connect(fds[i], (struct sockaddr *)&ss, sl) == -1) {
            perror("prog_flood: socket");
            return 1;
        }
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct impair_rng r;
    impair_rng_seed(&r, seed);
    static uint8_t bufs[BATCH][DGRAM_MAX];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint64_t sent[K_N] = {0}, errors = 0, eagain = 0, n = 0;
    struct replies rp = {0};
    uint64_t t0 = mono_ns(), end = t0 + dur_ns;
    int kind = 0;
    unsigned sock = 0;
    uint64_t per_kind[K_N] = {0}; /* built of each kind (cycles the worker byte) */
    /* Bounded by --count and by --duration. */
    while (n < count && !g_stop) {
        uint64_t now = mono_ns();
        if (now >= end)
            break;
        if (rate > 0) {
            uint64_t due = t0 + (uint64_t)((double)n * 1e9 / rate);
            if (due > now) {
                uint64_t w = due - now;
                struct timespec ts = {(time_t)(w / 1000000000ull), (long)(w % 1000000000ull)};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        unsigned b = 0;
        enum kind kb[BATCH];
        while (b < BATCH && n + b < count) {
            while (!on[kind])
                kind = (kind + 1) % K_N;
            kb[b] = (enum kind)kind;
            iov[b].iov_base = bufs[b];
            iov[b].iov_len = build(&r, (enum kind)kind, workers, per_kind[kind]++, bufs[b]);
            memset(&msgs[b], 0, sizeof(msgs[b]));
            msgs[b].msg_hdr.msg_iov = &iov[b];
            msgs[b].msg_hdr.msg_iovlen = 1;
            kind = (kind + 1) % K_N;
            b++;
        }
        int m = sendmmsg(fds[sock], msgs, b, MSG_DONTWAIT);
        sock = (sock + 1) % nsock;
        if (m < 0) {
            if (errno == EAGAIN || errno == ENOBUFS) {
                eagain++;
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
            } else {
                errors++;
            }
            m = 0;
        }
        for (int i = 0; i < m; i++)
            sent[kb[i]]++;
        /* Unsent ones are built again: n counts what left. */
        n += (uint64_t)m;
        if (m == 0 && errors > 1000)
            break;
        drain(fds, nsock, &rp);
    }
    uint64_t t1 = mono_ns();
    /* Late replies (rate-limited answers trickle). */
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    drain(fds, nsock, &rp);
    double el = (double)(t1 - t0) / 1e9;
    printf("{\"sent\":%llu,\"elapsed_s\":%.3f,\"rate_pps\":%.0f,\"by_kind\":{",
           (unsigned long long)n, el, el > 0 ? (double)n / el : 0.0);
    for (int k = 0; k < K_N; k++)
        printf("%s\"%s\":%llu", k ? "," : "", kind_name[k], (unsigned long long)sent[k]);
    printf("},\"send_errors\":%llu,\"eagain\":%llu,\"replies\":{\"total\":%llu,"
           "\"version_negotiation\":%llu,\"retry\":%llu,\"short_or_reset\":%llu,"
           "\"long_other\":%llu}}\n",
           (unsigned long long)errors, (unsigned long long)eagain, (unsigned long long)rp.total,
           (unsigned long long)rp.vn, (unsigned long long)rp.retry,
           (unsigned long long)rp.reset_like, (unsigned long long)rp.long_other);
    for (unsigned i = 0; i < nsock; i++)
        close(fds[i]);
    return errors > 1000 ? 1 : 0;
bad:
    usage(stderr);
    return 2;
}
