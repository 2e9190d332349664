/* UDP batches: sockets with IP_PKTINFO / IPV6_RECVPKTINFO, a recvmmsg
 * receive batch and a sendmmsg send batch. Replies carry the local address
 * the client used (pktinfo), so a server bound to a wildcard address answers
 * from the right one.
 *
 * Thread safety: none; a socket's batches belong to one thread. */
#ifndef ROOST_QUIC_UDP_H
#define ROOST_QUIC_UDP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define UDP_BATCH 64
#define UDP_RX_MAX 2048 /* larger datagrams are truncated and dropped */
#define UDP_TX_MAX 1472
/* Packets one send batch holds: a turn's packets of every connection leave
 * in one sendmmsg (a fuller batch is sent as it fills). */
#define UDP_TX_BATCH 256

struct udp_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len; /* 0: unset */
};

/* Parses a numeric IPv4/IPv6 address and port. Returns 0 or ROOST_EINVAL. */
int udp_addr_parse(struct udp_addr *out, const char *host, uint16_t port);
uint16_t udp_addr_port(const struct udp_addr *a);
bool udp_addr_equal(const struct udp_addr *a, const struct udp_addr *b);

/* Opens a non-blocking UDP socket bound to addr (port 0: ephemeral), with
 * pktinfo on, SO_REUSEPORT when reuseport, and send/receive buffers of
 * bufsize bytes requested (0: leave default). The granted sizes are read
 * back into *rcv / *snd (may be NULL). Returns the fd, or ROOST_ESYS. */
int udp_socket_open(const struct udp_addr *addr, bool reuseport, int bufsize, int *rcv, int *snd);
/* The socket's bound address. Returns 0 or ROOST_ESYS. */
int udp_socket_local(int fd, struct udp_addr *out);

struct udp_rx {
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    struct udp_addr remote[UDP_BATCH];
    struct udp_addr local[UDP_BATCH];
    /* Kernel receive time of each datagram (SO_TIMESTAMPNS), as
     * CLOCK_MONOTONIC ns; 0 when the kernel gave none. */
    uint64_t rx_ns[UDP_BATCH];
    /* Set up once (first call after udp_rx_init): `self` == this struct
     * when msgs[] point at this struct's buffers; later calls reset only
     * what the kernel changed in the `used` headers the previous call
     * filled. */
    const struct udp_rx *self;
    unsigned used;
    /* CLOCK_REALTIME - CLOCK_MONOTONIC (kernel timestamps are realtime),
     * read at the realtime off_at (ns; 0: not yet) and read again once a
     * timestamp is UDP_RX_OFF_NS past it (or before it). */
    int64_t off, off_at;
    _Alignas(struct cmsghdr) uint8_t ctl[UDP_BATCH][96]; /* pktinfo (v6: 40) + timestamp (32) */
    uint8_t data[UDP_BATCH][UDP_RX_MAX];
};

/* Receives up to UDP_BATCH datagrams. Returns how many (0 when none are
 * waiting), or ROOST_ESYS. For each i < n: data[i], msgs[i].msg_len bytes,
 * remote[i], local[i] (local address from pktinfo with the bound port of
 * `bound`; len 0 when absent), rx_ns[i]. Truncated datagrams have msg_len
 * set to 0. Before the first call: udp_rx_init, or zeroed memory. */
int udp_rx_recv(int fd, struct udp_rx *rx, const struct udp_addr *bound);
/* Marks a batch not set up (udp_rx_recv sets it up on its first call). */
static inline void udp_rx_init(struct udp_rx *rx)
{
    rx->self = NULL;
    rx->used = 0;
}

struct udp_txpkt {
    size_t len;
    struct udp_addr remote;
    struct udp_addr local; /* len 0: let the kernel choose */
    uint8_t data[UDP_TX_MAX];
};

struct udp_tx {
    int fd;
    unsigned head, n;                     /* queued packets are pkts[head..n) */
    bool blocked;                         /* last flush met EAGAIN */
    uint64_t sent, errors, eagain, calls; /* calls: sendmmsg calls */
    /* Set (after udp_tx_init): udp_tx_flush hands each packet to sink
     * instead of the socket (the client's path emulation hook). */
    void (*sink)(void *arg, const struct udp_txpkt *p);
    void *sink_arg;
    struct mmsghdr msgs[UDP_TX_BATCH];
    struct iovec iov[UDP_TX_BATCH];
    uint8_t ctl[UDP_TX_BATCH][64];
    struct udp_txpkt pkts[UDP_TX_BATCH];
};

void udp_tx_init(struct udp_tx *tx, int fd);
/* Next free packet slot (write up to UDP_TX_MAX bytes into ->data), or NULL
 * when the batch is full and could not be flushed (blocked). Flushes a full
 * batch first. */
struct udp_txpkt *udp_tx_slot(struct udp_tx *tx);
/* Queues the slot returned by udp_tx_slot with len bytes. */
void udp_tx_commit(struct udp_tx *tx, size_t len, const struct udp_addr *remote,
                   const struct udp_addr *local);
/* The same, for a slot whose remote and local (len 0: the kernel chooses)
 * addresses the caller wrote in place. */
static inline void udp_tx_commit_slot(struct udp_tx *tx, size_t len)
{
    tx->pkts[tx->n++].len = len;
}
/* Sends every queued packet. Returns 0 when the batch is empty afterwards,
 * ROOST_EAGAIN when the socket is full (packets stay queued; wait for
 * EPOLLOUT). Packets the kernel rejects otherwise are dropped and counted. */
int udp_tx_flush(struct udp_tx *tx);
static inline bool udp_tx_empty(const struct udp_tx *tx)
{
    return tx->head == tx->n;
}

#endif
