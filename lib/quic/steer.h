/* Kernel steering of QUIC packets to the worker that owns their connection.
 *
 * The relay's UDP sockets form one SO_REUSEPORT group, socket i belonging to
 * worker i (quic_shared_new opens them in that order). Without steering the
 * kernel picks a socket by a hash of the 4-tuple, so a packet whose 4-tuple
 * changed (NAT rebinding, migration) lands on another worker, which forwards
 * it through a ring on every packet. Two programs can steer, tried in this
 * order (quic_shared_new, "event=steering" says which one is on and why):
 *
 * - extended BPF (steer_ebpf.c; issue 14): a SK_REUSEPORT program with a
 *   REUSEPORT_SOCKARRAY (socket i at index i) and a hash map of moved CIDs
 *   (16-byte CID -> worker). A short-header packet goes to the worker the
 *   map names for its DCID, else to the DCID's worker byte (cid.h: byte 0
 *   of a server CID). A connection handed off to another worker (handoff.h)
 *   keeps the CIDs it was given at the handshake (ngtcp2 0.12 cannot retire
 *   a server's own CIDs): the new worker puts them in the map, so their
 *   packets land on it directly instead of being forwarded; they leave the
 *   map when the CID is retired or the connection ends. Needs CAP_BPF and
 *   CAP_NET_ADMIN (or CAP_SYS_ADMIN) at start and a 4.19+ kernel.
 * - classic BPF (steer_attach): the worker byte only. Attaches without
 *   privileges on every kernel since 4.5; moved connections' packets are
 *   forwarded by their old worker (handoff.c's forwarding table).
 *
 * In both, long headers (Initial, Handshake: the client may have chosen the
 * DCID), packets too short to hold a CID and bytes naming no worker go by
 * the kernel's hash, the same choice as without a program.
 *
 * Thread safety: steer_attach, steer_ebpf_attach and steer_ebpf_close on
 * the main thread, before the workers start / after they stopped;
 * steer_ebpf_move/unmove/lookup from any thread (each is one bpf(2) call
 * on a kernel map). */
#ifndef ROOST_QUIC_STEER_H
#define ROOST_QUIC_STEER_H

#include <stddef.h>
#include <stdint.h>

/* Attaches the classic program to the reuseport group of fd (any member). Returns 0,
 * ROOST_EINVAL (n_workers 0 or above 255) or ROOST_ESYS (errno set: the
 * kernel refused; the group keeps hashing). */
int steer_attach(int fd, unsigned n_workers);

/* The socket index the program returns for a UDP payload; a pure mirror of
 * the program for tests. Values >= n_workers mean "kernel hash". */
uint32_t steer_index(const uint8_t *pkt, size_t len, unsigned n_workers);

/* The length of the CIDs the extended program looks up (QUIC_CID_LEN). */
#define STEER_CID_LEN 16

struct steer_ebpf;

/* Makes the maps and the program, fills the socket array with fds[0..n)
 * (one bound SO_REUSEPORT socket per worker, in worker order) and attaches
 * the program to their group. Returns 0 (*out set), ROOST_EINVAL (n 0 or
 * above 255), ROOST_ENOMEM or ROOST_ESYS (errno set; *why names the step
 * that failed; log, when given, holds the verifier's log if the program
 * was refused). On failure nothing is attached. */
int steer_ebpf_attach(struct steer_ebpf **out, const int *fds, unsigned n_workers, const char **why,
                      char *log, size_t loglen);
/* Closes the maps and program (the group keeps the program until its
 * sockets close). NULL: nothing. */
void steer_ebpf_close(struct steer_ebpf *st);
/* Packets for cid (len must be STEER_CID_LEN) go to worker from now on.
 * Returns 0, ROOST_EINVAL (st NULL, other length) or ROOST_ESYS (map full,
 * no memory). */
int steer_ebpf_move(const struct steer_ebpf *st, const uint8_t *cid, size_t len, unsigned worker);
/* cid goes by its worker byte again. Returns 0, ROOST_ENOENT (not in the
 * map), ROOST_EINVAL or ROOST_ESYS. */
int steer_ebpf_unmove(const struct steer_ebpf *st, const uint8_t *cid, size_t len);
/* The worker the map names for cid, or -1 (none); for tests. */
int steer_ebpf_lookup(const struct steer_ebpf *st, const uint8_t *cid, size_t len);
/* The number of CIDs in the moved-CID map (one bpf(2) call each: for tests
 * and diagnostics, not for a scrape). NULL: 0. */
size_t steer_ebpf_count(const struct steer_ebpf *st);

#endif
