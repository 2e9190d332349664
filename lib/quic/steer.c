#include "quic/steer.h"

#include <errno.h>
#include <linux/filter.h>
#include <sys/socket.h>

#include "core/error.h"

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

/* Returned for "let the kernel hash": any index >= the group size. */
#define STEER_HASH 0xffffffffu

int steer_attach(int fd, unsigned n_workers)
{
    if (n_workers == 0 || n_workers > 255)
        return ROOST_EINVAL;
    /* Offsets are into the UDP payload; jump offsets count from the next
     * instruction. A packet too short for a load ends the program with 0
     * (socket 0), which is harmless: such a packet is garbage anywhere. */
    struct sock_filter prog[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 3, 0),     /* long header: to 5 */
        /* 2 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),                /* DCID byte 0: worker */
        /* 3 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, n_workers, 1, 0), /* no worker: to 5 */
        /* 4 */ BPF_STMT(BPF_RET | BPF_A, 0),
        /* 5 */ BPF_STMT(BPF_RET | BPF_K, STEER_HASH),
    };
    struct sock_fprog fp = {.len = sizeof(prog) / sizeof(prog[0]), .filter = prog};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fp, sizeof(fp)) == -1)
        return ROOST_ESYS;
    return 0;
}

uint32_t steer_index(const uint8_t *pkt, size_t len, unsigned n_workers)
{
    if (len < 1)
        return 0;
    if (pkt[0] & 0x80)
        return STEER_HASH;
    if (len < 2)
        return 0;
    return pkt[1] >= n_workers ? STEER_HASH : pkt[1];
}
