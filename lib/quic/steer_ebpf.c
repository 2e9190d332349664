/* Extended-BPF steering (steer.h): the program, its two maps, and the
 * bpf(2) calls that load, attach and update them.
 *
 * Why hand-assembled instructions and the raw bpf(2) syscall rather than a
 * C program built with clang -target bpf and loaded by libbpf (as issue 14
 * first proposed): the program is 30 instructions that read 17 bytes, look
 * up one hash map and call one helper. It touches no kernel structure, so
 * it needs no BTF or CO-RE relocation; the loader is four bpf(2) commands.
 * Done this way the relay keeps a single build step and no new build or run
 * dependency (no libbpf, libelf or zlib in the binary, no BPF target in the
 * compiler, no new Build-Depends in debian/), and cannot fail at build time
 * on a host whose clang lacks the BPF back end. The cost is that the
 * program below must be read instruction by instruction: each carries its
 * meaning in a comment, and the integration tests (test_quic_rebind,
 * test_quic_handoff) check that the kernel delivers by it.
 *
 * Kernel: SK_REUSEPORT programs, REUSEPORT_SOCKARRAY and
 * bpf_sk_select_reuseport since 4.19. Privileges: CAP_BPF and
 * CAP_NET_ADMIN (or CAP_SYS_ADMIN) when the maps and program are made, at
 * start-up; before 5.11 the maps are charged to RLIMIT_MEMLOCK. */
#include "quic/steer.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

/* The moved-CID map holds at most this many CIDs (BPF_F_NO_PREALLOC:
 * memory is taken per entry, not up front). A full map refuses an update;
 * that connection's old CIDs are then forwarded through the ring. */
#define MOVED_MAX (1u << 18)

struct steer_ebpf {
    int prog, socks, moved;
};

static long sys_bpf(int cmd, union bpf_attr *a)
{
    return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static int map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t max, uint32_t flags)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = type;
    a.key_size = key;
    a.value_size = value;
    a.max_entries = max;
    a.map_flags = flags;
    return (int)sys_bpf(BPF_MAP_CREATE, &a);
}

static int map_update(int fd, const void *key, const void *value, uint64_t flags)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)fd;
    a.key = (uint64_t)(uintptr_t)key;
    a.value = (uint64_t)(uintptr_t)value;
    a.flags = flags;
    return sys_bpf(BPF_MAP_UPDATE_ELEM, &a) == 0 ? 0 : -1;
}

/* ------------------------------------------------------- the program */

#define INSN(c, d, s, o, i)                                                                        \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define MOV_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define LDX(sz, d, s, o) INSN(BPF_LDX | (sz) | BPF_MEM, d, s, o, 0)
#define STX(sz, d, s, o) INSN(BPF_STX | (sz) | BPF_MEM, d, s, o, 0)
#define JMP_IMM(op, d, i, o) INSN(BPF_JMP | (op) | BPF_K, d, 0, o, i)
#define JA(o) INSN(BPF_JMP | BPF_JA, 0, 0, o, 0)
#define CALL(f) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
/* Two slots: a 64-bit immediate that the kernel turns from a map fd into
 * the map. */
#define LD_MAP(d, fd)                                                                              \
    INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)

/* Registers: r1-r5 helper arguments (clobbered by calls), r0 the result,
 * r6-r9 kept across calls, r10 the frame pointer (read-only). */
enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };

/* The QUIC packet starts after the UDP header: bpf_skb_load_bytes reads
 * from skb->data, which is at the UDP header when the kernel picks a socket
 * (the classic program is run with those 8 bytes pulled, this one not). */
#define UDP_HDR 8
/* Stack: the first byte and the 16-byte DCID, read as one 17-byte block
 * at fp-25 so that the CID (the hash map's key) starts 8-aligned at fp-24;
 * the socket-array key (the worker, a u32) at fp-32. */
#define FP_PKT (-25)
#define FP_CID (-24)
#define FP_IDX (-32)

static int prog_load(int socks, int moved, unsigned n_workers, char *log, size_t loglen)
{
    /* Jump offsets count instructions from the next one; LD_MAP is two. */
    struct bpf_insn prog[] = {
        /* 0 */ MOV_REG(R6, R1), /* r6 = ctx */
        /* 1 */ MOV_REG(R1, R6),
        /* 2 */ MOV_IMM(R2, UDP_HDR),
        /* 3 */ MOV_REG(R3, R10),
        /* 4 */ ADD_IMM(R3, FP_PKT),
        /* 5 */ MOV_IMM(R4, 1 + STEER_CID_LEN),
        /* 6 */ CALL(BPF_FUNC_skb_load_bytes), /* first byte + DCID */
        /* 7 */ JMP_IMM(BPF_JNE, R0, 0, 22),   /* too short: to 30 (hash) */
        /* 8 */ LDX(BPF_B, R1, R10, FP_PKT),
        /* 9 */ JMP_IMM(BPF_JSET, R1, 0x80, 20), /* long header: to 30 (hash) */
        /* 10 */ LD_MAP(R1, moved),
        /* 12 */ MOV_REG(R2, R10),
        /* 13 */ ADD_IMM(R2, FP_CID),
        /* 14 */ CALL(BPF_FUNC_map_lookup_elem),               /* a moved CID? */
        /* 15 */ JMP_IMM(BPF_JEQ, R0, 0, 2),                   /* no: to 18 */
        /* 16 */ LDX(BPF_W, R7, R0, 0),                        /* r7 = its new worker */
        /* 17 */ JA(1),                                        /* to 19 */
        /* 18 */ LDX(BPF_B, R7, R10, FP_CID),                  /* r7 = the CID's worker byte */
        /* 19 */ JMP_IMM(BPF_JGE, R7, (int32_t)n_workers, 10), /* no worker: to 30 */
        /* 20 */ STX(BPF_W, R10, R7, FP_IDX),
        /* 21 */ MOV_REG(R1, R6),
        /* 22 */ LD_MAP(R2, socks),
        /* 24 */ MOV_REG(R3, R10),
        /* 25 */ ADD_IMM(R3, FP_IDX),
        /* 26 */ MOV_IMM(R4, 0),
        /* 27 */ CALL(BPF_FUNC_sk_select_reuseport), /* failing: the hash */
        /* 28 */ MOV_IMM(R0, SK_PASS),
        /* 29 */ EXIT(),
        /* 30 */ MOV_IMM(R0, SK_PASS), /* nothing selected: the kernel hashes */
        /* 31 */ EXIT(),
    };
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
    a.insns = (uint64_t)(uintptr_t)prog;
    a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
    a.license = (uint64_t)(uintptr_t) "MIT"; /* no GPL-only helper is used */
    int fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
    if (fd >= 0 || log == NULL || loglen == 0)
        return fd;
    /* Again with the verifier's log, for the start-up line. */
    int e = errno;
    log[0] = '\0';
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = (uint32_t)loglen;
    a.log_level = 1;
    fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
    if (fd >= 0)
        return fd;
    errno = e;
    return -1;
}

void steer_ebpf_close(struct steer_ebpf *st)
{
    if (st == NULL)
        return;
    if (st->prog >= 0)
        close(st->prog);
    if (st->socks >= 0)
        close(st->socks);
    if (st->moved >= 0)
        close(st->moved);
    free(st);
}

int steer_ebpf_attach(struct steer_ebpf **out, const int *fds, unsigned n_workers, const char **why,
                      char *log, size_t loglen)
{
    *out = NULL;
    if (log != NULL && loglen > 0)
        log[0] = '\0';
    if (n_workers == 0 || n_workers > 255) {
        *why = "workers";
        return ROOST_EINVAL;
    }
    struct steer_ebpf *st = malloc(sizeof(*st));
    if (st == NULL) {
        *why = "memory";
        return ROOST_ENOMEM;
    }
    st->prog = st->socks = st->moved = -1;
    /* Before 5.11 BPF memory is charged to RLIMIT_MEMLOCK; raising it needs
     * CAP_SYS_RESOURCE, and later kernels ignore it: best effort. */
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    (void)setrlimit(RLIMIT_MEMLOCK, &rl);
    int e;
    st->socks = map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, n_workers, 0);
    if (st->socks < 0) {
        *why = "socket array map";
        goto fail;
    }
    st->moved = map_create(BPF_MAP_TYPE_HASH, STEER_CID_LEN, 4, MOVED_MAX, BPF_F_NO_PREALLOC);
    if (st->moved < 0) {
        *why = "moved-CID map";
        goto fail;
    }
    /* Socket i at index i: the worker byte names the socket. */
    for (unsigned i = 0; i < n_workers; i++) {
        uint32_t k = i;
        uint64_t v = (uint64_t)fds[i];
        if (map_update(st->socks, &k, &v, BPF_ANY) != 0) {
            *why = "socket array update";
            goto fail;
        }
    }
    st->prog = prog_load(st->socks, st->moved, n_workers, log, loglen);
    if (st->prog < 0) {
        *why = "program load";
        goto fail;
    }
    if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &st->prog, sizeof(st->prog)) ==
        -1) {
        *why = "attach";
        goto fail;
    }
    *out = st;
    return 0;
fail:
    e = errno;
    steer_ebpf_close(st);
    errno = e;
    return ROOST_ESYS;
}

int steer_ebpf_move(const struct steer_ebpf *st, const uint8_t *cid, size_t len, unsigned worker)
{
    if (st == NULL || len != STEER_CID_LEN)
        return ROOST_EINVAL;
    uint32_t v = worker;
    return map_update(st->moved, cid, &v, BPF_ANY) == 0 ? 0 : ROOST_ESYS;
}

int steer_ebpf_unmove(const struct steer_ebpf *st, const uint8_t *cid, size_t len)
{
    if (st == NULL || len != STEER_CID_LEN)
        return ROOST_EINVAL;
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)st->moved;
    a.key = (uint64_t)(uintptr_t)cid;
    if (sys_bpf(BPF_MAP_DELETE_ELEM, &a) == 0)
        return 0;
    return errno == ENOENT ? ROOST_ENOENT : ROOST_ESYS;
}

int steer_ebpf_lookup(const struct steer_ebpf *st, const uint8_t *cid, size_t len)
{
    if (st == NULL || len != STEER_CID_LEN)
        return -1;
    union bpf_attr a;
    uint32_t v = 0;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)st->moved;
    a.key = (uint64_t)(uintptr_t)cid;
    a.value = (uint64_t)(uintptr_t)&v;
    return sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) == 0 ? (int)v : -1;
}

size_t steer_ebpf_count(const struct steer_ebpf *st)
{
    if (st == NULL)
        return 0;
    uint8_t key[STEER_CID_LEN], next[STEER_CID_LEN];
    size_t n = 0;
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)st->moved;
    a.key = 0; /* NULL: the first key */
    a.next_key = (uint64_t)(uintptr_t)next;
    while (sys_bpf(BPF_MAP_GET_NEXT_KEY, &a) == 0 && n < MOVED_MAX) {
        n++;
        memcpy(key, next, sizeof(key));
        a.key = (uint64_t)(uintptr_t)key;
    }
    return n;
}
