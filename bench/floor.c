#include "bench/floor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/be.h"
#include "core/error.h"

#define RX_BATCH 64
#define RX_MAX 2048
#define TX_BATCH 1024

struct slot {
    struct sockaddr_in addr;
    /* 0 until the address above is written; release store, paired with
     * the acquire load on the forwarding path. */
    _Atomic uint32_t joined;
};

struct fworker {
    struct floor *f;
    unsigned id;
    int fd;
    pthread_t th;
    bool started;
    /* Written by the worker only (relaxed), read by floor_stats. */
    _Atomic uint64_t rx, tx, tx_fail, joins, turns;
    struct mmsghdr rmsg[RX_BATCH];
    struct iovec riov[RX_BATCH];
    struct sockaddr_in rsrc[RX_BATCH];
    uint8_t rbuf[RX_BATCH][RX_MAX];
    struct mmsghdr tmsg[TX_BATCH];
    struct iovec tiov[TX_BATCH];
    uint8_t ack[RX_BATCH][5];
};

struct floor {
    struct floor_config cfg;
    uint16_t port;
    _Atomic bool stop;
    struct slot *slots; /* rooms * size */
    struct fworker *w;
};

static void flush(struct fworker *w, unsigned *n)
{
    unsigned off = 0;
    while (off < *n) {
        int s = sendmmsg(w->fd, w->tmsg + off, *n - off, 0);
        if (s <= 0) {
            if (s == -1 && errno == EINTR)
                continue;
            /* Loopback drops rather than blocks; count what is left. */
            atomic_fetch_add_explicit(&w->tx_fail, *n - off, memory_order_relaxed);
            break;
        }
        atomic_store_explicit(&w->tx,
                              atomic_load_explicit(&w->tx, memory_order_relaxed) + (unsigned)s,
                              memory_order_relaxed);
        off += (unsigned)s;
    }
    *n = 0;
}

static void queue(struct fworker *w, unsigned *n, void *data, size_t len, struct sockaddr_in *to)
{
    if (*n == TX_BATCH)
        flush(w, n);
    struct mmsghdr *m = &w->tmsg[*n];
    w->tiov[*n] = (struct iovec){.iov_base = data, .iov_len = len};
    memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
    m->msg_hdr.msg_name = to;
    m->msg_hdr.msg_namelen = sizeof(*to);
    m->msg_hdr.msg_iov = &w->tiov[*n];
    m->msg_hdr.msg_iovlen = 1;
    (*n)++;
}

static void *worker_main(void *arg)
{
    struct fworker *w = arg;
    struct floor *f = w->f;
    const uint32_t size = f->cfg.size;
    for (unsigned i = 0; i < RX_BATCH; i++) {
        w->riov[i] = (struct iovec){.iov_base = w->rbuf[i], .iov_len = RX_MAX};
        memset(&w->rmsg[i].msg_hdr, 0, sizeof(w->rmsg[i].msg_hdr));
        w->rmsg[i].msg_hdr.msg_iov = &w->riov[i];
        w->rmsg[i].msg_hdr.msg_iovlen = 1;
        w->rmsg[i].msg_hdr.msg_name = &w->rsrc[i];
    }
    while (!atomic_load_explicit(&f->stop, memory_order_relaxed)) {
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        atomic_store_explicit(&w->turns, atomic_load_explicit(&w->turns, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        for (;;) {
            for (unsigned i = 0; i < RX_BATCH; i++)
                w->rmsg[i].msg_hdr.msg_namelen = sizeof(w->rsrc[i]);
            int n = recvmmsg(w->fd, w->rmsg, RX_BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0)
                break;
            atomic_store_explicit(&w->rx,
                                  atomic_load_explicit(&w->rx, memory_order_relaxed) + (unsigned)n,
                                  memory_order_relaxed);
            unsigned tn = 0;
            for (int i = 0; i < n; i++) {
                uint8_t *d = w->rbuf[i];
                size_t len = w->rmsg[i].msg_len;
                if (len < FLOOR_HDR_LEN)
                    continue;
                uint32_t room = be_get32(d + 1), member = be_get32(d + 5);
                if (room >= f->cfg.rooms || member >= size)
                    continue;
                struct slot *base = &f->slots[(size_t)room * size];
                if (d[0] == FLOOR_JOIN) {
                    base[member].addr = w->rsrc[i];
                    /* Pairs with the acquire loads below, on any worker. */
                    atomic_store_explicit(&base[member].joined, 1, memory_order_release);
                    atomic_store_explicit(&w->joins,
                                          atomic_load_explicit(&w->joins, memory_order_relaxed) + 1,
                                          memory_order_relaxed);
                    uint32_t pid = room * size + member + 1;
                    uint8_t *a = w->ack[i];
                    a[0] = FLOOR_JOINED;
                    be_put32(a + 1, pid);
                    queue(w, &tn, a, 5, &w->rsrc[i]);
                } else if (d[0] == FLOOR_MEDIA) {
                    for (uint32_t m = 0; m < size; m++) {
                        /* Pairs with the release store of the JOIN. */
                        if (m == member ||
                            !atomic_load_explicit(&base[m].joined, memory_order_acquire))
                            continue;
                        queue(w, &tn, d, len, &base[m].addr);
                    }
                }
            }
            flush(w, &tn);
            if (n < RX_BATCH)
                break;
        }
    }
    return NULL;
}

static int open_sock(uint16_t port, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return ROOST_ESYS;
    int one = 1, buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
        getsockname(fd, (struct sockaddr *)&a, &al) == -1) {
        close(fd);
        return ROOST_ESYS;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

int floor_new(struct floor **out, const struct floor_config *cfg)
{
    int rc = 0;
    *out = NULL;
    if (cfg->workers == 0 || cfg->rooms == 0 || cfg->size == 0)
        return ROOST_EINVAL;
    struct floor *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return ROOST_ENOMEM;
    f->cfg = *cfg;
    f->slots = calloc((size_t)cfg->rooms * cfg->size, sizeof(*f->slots));
    f->w = calloc(cfg->workers, sizeof(*f->w));
    if (f->slots == NULL || f->w == NULL) {
        rc = ROOST_ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < cfg->workers; i++)
        f->w[i].fd = -1;
    for (unsigned i = 0; i < cfg->workers; i++) {
        uint16_t bound = 0;
        int fd = open_sock(f->port, &bound);
        if (fd < 0) {
            rc = fd;
            goto fail;
        }
        f->w[i].fd = fd;
        f->w[i].f = f;
        f->w[i].id = i;
        f->port = bound;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (unsigned i = 0; i < cfg->workers; i++) {
        if (pthread_create(&f->w[i].th, NULL, worker_main, &f->w[i]) != 0) {
            rc = ROOST_ESYS;
            goto fail;
        }
        f->w[i].started = true;
        if (cfg->n_cpus > 0 || (cfg->pin && ncpu > 0)) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cfg->n_cpus ? cfg->cpus[i % cfg->n_cpus] : (int)(i % (unsigned)ncpu), &set);
            (void)pthread_setaffinity_np(f->w[i].th, sizeof(set), &set);
        }
    }
    *out = f;
    return 0;
fail:
    floor_del(f);
    return rc;
}

uint16_t floor_port(const struct floor *f)
{
    return f->port;
}

void floor_stats(struct floor *f, struct floor_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < f->cfg.workers; i++) {
        struct fworker *w = &f->w[i];
        out->rx += atomic_load_explicit(&w->rx, memory_order_relaxed);
        out->tx += atomic_load_explicit(&w->tx, memory_order_relaxed);
        out->tx_fail += atomic_load_explicit(&w->tx_fail, memory_order_relaxed);
        out->joins += atomic_load_explicit(&w->joins, memory_order_relaxed);
        out->turns += atomic_load_explicit(&w->turns, memory_order_relaxed);
        clockid_t cid;
        struct timespec ts;
        if (w->started && pthread_getcpuclockid(w->th, &cid) == 0 && clock_gettime(cid, &ts) == 0)
            out->cpu_ns += (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
}

void floor_del(struct floor *f)
{
    if (f == NULL)
        return;
    atomic_store_explicit(&f->stop, true, memory_order_relaxed);
    for (unsigned i = 0; f->w != NULL && i < f->cfg.workers; i++) {
        if (f->w[i].started)
            pthread_join(f->w[i].th, NULL);
        if (f->w[i].fd >= 0)
            close(f->w[i].fd);
    }
    free(f->w);
    free(f->slots);
    free(f);
}
