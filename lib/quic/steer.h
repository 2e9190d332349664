/* Kernel steering of QUIC packets to the worker that owns their connection.
 *
 * The relay's UDP sockets form one SO_REUSEPORT group, socket i belonging to
 * worker i (quic_shared_new opens them in that order). Without steering the
 * kernel picks a socket by a hash of the 4-tuple, so a packet whose 4-tuple
 * changed (NAT rebinding, migration) lands on another worker, which forwards
 * it through a ring on every packet. With steering, a classic BPF program on
 * the group reads the worker byte of a short-header packet's destination
 * CID (cid.h: byte 0 of a server CID) and returns it as the socket index.
 * Long headers (Initial, Handshake: the client may have chosen the DCID),
 * and CIDs naming no worker, return an out-of-range index, for which the
 * kernel falls back to its hash: the same choice as without the program.
 *
 * Classic rather than extended BPF: the choice needs two byte loads and a
 * compare, cBPF attaches without CAP_BPF, needs no compiler or BTF at build
 * time and works on every kernel since 4.5.
 *
 * Thread safety: main thread, before the workers start. */
#ifndef ROOST_QUIC_STEER_H
#define ROOST_QUIC_STEER_H

#include <stddef.h>
#include <stdint.h>

/* Attaches the program to the reuseport group of fd (any member). Returns 0,
 * ROOST_EINVAL (n_workers 0 or above 255) or ROOST_ESYS (errno set: the
 * kernel refused; the group keeps hashing). */
int steer_attach(int fd, unsigned n_workers);

/* The socket index the program returns for a UDP payload; a pure mirror of
 * the program for tests. Values >= n_workers mean "kernel hash". */
uint32_t steer_index(const uint8_t *pkt, size_t len, unsigned n_workers);

#endif
