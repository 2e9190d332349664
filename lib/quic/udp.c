#include "quic/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"

int udp_addr_parse(struct udp_addr *out, const char *host, uint16_t port)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons(port);
        out->len = sizeof(out->u.in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    return ROOST_EINVAL;
}

uint16_t udp_addr_port(const struct udp_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in.sin_port);
    if (a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return 0;
}

bool udp_addr_equal(const struct udp_addr *a, const struct udp_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_port == b->u.in.sin_port &&
               a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    return false;
}

int udp_socket_open(const struct udp_addr *addr, bool reuseport, int bufsize, int *rcv, int *snd)
{
    int one = 1;
    int fam = addr->u.sa.sa_family;
    int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return ROOST_ESYS;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    if (fam == AF_INET) {
        if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) == -1)
            goto fail;
    } else {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) == -1)
            goto fail;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
            goto fail;
    }
    /* Kernel receive timestamps (udp_rx.rx_ns: the relay's ingress stamp).
     * Not fatal: without them rx_ns is 0. */
    (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    if (bufsize > 0) {
        /* Failure to enlarge is not fatal: the granted size is reported. */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    }
    int g;
    socklen_t gl = sizeof(g);
    if (rcv != NULL && getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &g, &gl) == 0)
        *rcv = g;
    gl = sizeof(g);
    if (snd != NULL && getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &g, &gl) == 0)
        *snd = g;
    if (bind(fd, &addr->u.sa, addr->len) == -1)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return ROOST_ESYS;
}

int udp_socket_local(int fd, struct udp_addr *out)
{
    memset(out, 0, sizeof(*out));
    socklen_t l = sizeof(out->u);
    if (getsockname(fd, &out->u.sa, &l) == -1)
        return ROOST_ESYS;
    out->len = l;
    return 0;
}

static void rx_setup(struct udp_rx *rx)
{
    for (unsigned i = 0; i < UDP_BATCH; i++) {
        rx->iov[i].iov_base = rx->data[i];
        rx->iov[i].iov_len = UDP_RX_MAX;
        struct msghdr *h = &rx->msgs[i].msg_hdr;
        h->msg_name = &rx->remote[i].u;
        h->msg_namelen = sizeof(rx->remote[i].u);
        h->msg_iov = &rx->iov[i];
        h->msg_iovlen = 1;
        h->msg_control = rx->ctl[i];
        h->msg_controllen = sizeof(rx->ctl[i]);
        h->msg_flags = 0;
    }
    rx->used = 0;
    rx->off_at = 0;
    rx->self = rx;
}

/* Kernel timestamps are CLOCK_REALTIME: the offset to CLOCK_MONOTONIC. */
static int64_t real_to_mono_ns(void)
{
    struct timespec r, m;
    clock_gettime(CLOCK_REALTIME, &r);
    clock_gettime(CLOCK_MONOTONIC, &m);
    return ((int64_t)r.tv_sec - (int64_t)m.tv_sec) * 1000000000 + (r.tv_nsec - m.tv_nsec);
}

/* The offset is read again at most every UDP_RX_OFF_NS of received
 * timestamps (it was read per batch: two clock reads per packet at light
 * load). Between reads it moves only by NTP's slew (at most 500 ppm: 25 us
 * in 50 ms), or by a step of the realtime clock, which a timestamp before
 * off_at or far after it shows. */
#define UDP_RX_OFF_NS (50LL * 1000000LL)

static int64_t rx_off(struct udp_rx *rx, int64_t real)
{
    if (rx->off_at == 0 || real < rx->off_at || real - rx->off_at > UDP_RX_OFF_NS) {
        rx->off = real_to_mono_ns();
        rx->off_at = real;
    }
    return rx->off;
}

int udp_rx_recv(int fd, struct udp_rx *rx, const struct udp_addr *bound)
{
    if (rx->self != rx) {
        rx_setup(rx);
    } else {
        /* recvmmsg writes msg_namelen, msg_controllen and msg_flags (and
         * msg_len) of the headers it filled, nothing else: reset those. */
        for (unsigned i = 0; i < rx->used && i < UDP_BATCH; i++) {
            struct msghdr *h = &rx->msgs[i].msg_hdr;
            h->msg_namelen = sizeof(rx->remote[i].u);
            h->msg_controllen = sizeof(rx->ctl[i]);
        }
        rx->used = 0;
    }
    int n;
    do {
        n = recvmmsg(fd, rx->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    } while (n == -1 && errno == EINTR);
    if (n == -1)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : ROOST_ESYS;
    rx->used = (unsigned)n;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &rx->msgs[i].msg_hdr;
        rx->remote[i].len = h->msg_namelen;
        if (h->msg_flags & MSG_TRUNC)
            rx->msgs[i].msg_len = 0;
        struct udp_addr *l = &rx->local[i];
        l->len = 0;
        rx->rx_ns[i] = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof(ts));
                int64_t real = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
                int64_t ns = real - rx_off(rx, real);
                rx->rx_ns[i] = ns > 0 ? (uint64_t)ns : 0;
            } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo pi;
                memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                memset(l, 0, sizeof(*l));
                l->u.in.sin_family = AF_INET;
                l->u.in.sin_addr = pi.ipi_addr;
                l->u.in.sin_port = htons(bound != NULL ? udp_addr_port(bound) : 0);
                l->len = sizeof(l->u.in);
            } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                struct in6_pktinfo pi;
                memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                memset(l, 0, sizeof(*l));
                l->u.in6.sin6_family = AF_INET6;
                l->u.in6.sin6_addr = pi.ipi6_addr;
                l->u.in6.sin6_port = htons(bound != NULL ? udp_addr_port(bound) : 0);
                l->len = sizeof(l->u.in6);
            }
        }
        if (l->len == 0 && bound != NULL)
            *l = *bound;
    }
    return n;
}

void udp_tx_init(struct udp_tx *tx, int fd)
{
    memset(tx, 0, offsetof(struct udp_tx, msgs));
    tx->fd = fd;
}

struct udp_txpkt *udp_tx_slot(struct udp_tx *tx)
{
    if (tx->n == UDP_TX_BATCH) {
        (void)udp_tx_flush(tx);
        if (tx->n == UDP_TX_BATCH)
            return NULL;
    }
    return &tx->pkts[tx->n];
}

void udp_tx_commit(struct udp_tx *tx, size_t len, const struct udp_addr *remote,
                   const struct udp_addr *local)
{
    struct udp_txpkt *p = &tx->pkts[tx->n++];
    p->len = len;
    p->remote = *remote;
    if (local != NULL)
        p->local = *local;
    else
        p->local.len = 0;
}

static void set_pktinfo(struct msghdr *h, uint8_t *ctl, const struct udp_addr *local)
{
    h->msg_control = NULL;
    h->msg_controllen = 0;
    if (local->len == 0)
        return;
    /* Only the message's own bytes are written (with its padding, which
     * the kernel does not read): no memset of the whole buffer per
     * packet. */
    h->msg_control = ctl;
    struct cmsghdr *c;
    if (local->u.sa.sa_family == AF_INET) {
        h->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
        c = CMSG_FIRSTHDR(h);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo pi = {.ipi_spec_dst = local->u.in.sin_addr};
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        memset(ctl + CMSG_LEN(sizeof(pi)), 0, CMSG_SPACE(sizeof(pi)) - CMSG_LEN(sizeof(pi)));
    } else {
        h->msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
        c = CMSG_FIRSTHDR(h);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
        struct in6_pktinfo pi = {.ipi6_addr = local->u.in6.sin6_addr};
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        memset(ctl + CMSG_LEN(sizeof(pi)), 0, CMSG_SPACE(sizeof(pi)) - CMSG_LEN(sizeof(pi)));
    }
}

int udp_tx_flush(struct udp_tx *tx)
{
    if (tx->sink != NULL) {
        for (; tx->head < tx->n; tx->head++, tx->sent++)
            tx->sink(tx->sink_arg, &tx->pkts[tx->head]);
        tx->head = tx->n = 0;
        return 0;
    }
    while (tx->head < tx->n) {
        unsigned cnt = tx->n - tx->head;
        for (unsigned k = 0; k < cnt; k++) {
            struct udp_txpkt *p = &tx->pkts[tx->head + k];
            struct msghdr *h = &tx->msgs[k].msg_hdr;
            tx->iov[k].iov_base = p->data;
            tx->iov[k].iov_len = p->len;
            h->msg_name = &p->remote.u;
            h->msg_namelen = p->remote.len;
            h->msg_iov = &tx->iov[k];
            h->msg_iovlen = 1;
            h->msg_flags = 0;
            set_pktinfo(h, tx->ctl[k], &p->local);
        }
        tx->calls++;
        int r = sendmmsg(tx->fd, tx->msgs, cnt, 0);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                tx->eagain++;
                tx->blocked = true;
                /* Move the unsent tail to the front so slots free up. */
                if (tx->head > 0) {
                    memmove(&tx->pkts[0], &tx->pkts[tx->head], cnt * sizeof(tx->pkts[0]));
                    tx->n = cnt;
                    tx->head = 0;
                }
                return ROOST_EAGAIN;
            }
            /* The first packet was refused (e.g. unreachable): drop it. */
            tx->errors++;
            tx->head++;
            continue;
        }
        tx->sent += (unsigned)r;
        tx->head += (unsigned)r;
    }
    tx->head = tx->n = 0;
    tx->blocked = false;
    return 0;
}
