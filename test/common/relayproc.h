/* Test support: the shipped roost-relay binary as a child process. Starts
 * $ROOST_BUILD/roost-relay (default build/) with the given arguments,
 * keeps its stderr (the log) in memory, waits for readiness (the start
 * banner's listen address, then /healthz when the admin endpoint is on),
 * signals and reaps it by its PID only. Every start is remembered until
 * reaped, so a test's teardown can kill what a failed assertion left
 * (relayproc_kill_all). Not part of the relay. */
#ifndef ROOST_TEST_RELAYPROC_H
#define ROOST_TEST_RELAYPROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/client.h"

/* Deadline of a condition that must come (start-up, exit after a signal):
 * a failure bound, never a timing assumption. */
#define RELAYPROC_WAIT_MS 30000

struct relayproc {
    pid_t pid; /* 0 once reaped */
    int err_fd;
    uint16_t port;       /* QUIC, from the banner's listen=127.0.0.1:N */
    uint16_t admin_port; /* from the banner's admin=ADDR:N; 0: admin off */
    char log[32768];
    size_t log_len;
};

/* $ROOST_BUILD/roost-relay. */
const char *relayproc_bin(void);
/* A port on 127.0.0.1 free right now (type SOCK_DGRAM or SOCK_STREAM), or
 * 0. For a relay that must be given a non-zero port. */
uint16_t relayproc_free_port(int type);
/* Starts the relay with args (after argv[0], NULL ended, at most 30),
 * stdout to /dev/null (a stray relay must not hold prove's pipe), stderr
 * read into rp->log. Waits (RELAYPROC_WAIT_MS) for the start banner and,
 * when it names an admin endpoint, for /healthz to say ok. Returns 0;
 * ROOST_ENOENT when the binary is not built, ROOST_ETIMEDOUT when it did
 * not get ready (killed and reaped; its log is in rp->log), ROOST_EIO
 * when it could not be started. */
int relayproc_start(struct relayproc *rp, const char *const *args);
/* Reads what the relay logged, waiting at most timeout_ms for the first
 * bytes. */
void relayproc_read(struct relayproc *rp, int timeout_ms);
/* Waits up to ms for the relay to exit, stepping cl (when not NULL) so
 * its connections answer. Returns the wait status, or -1 while it runs. */
int relayproc_wait(struct relayproc *rp, struct roost_client *cl, int ms);
/* Waits up to ms for the n-th occurrence of what in the log, stepping cl
 * (when not NULL). */
bool relayproc_log_until(struct relayproc *rp, struct roost_client *cl, const char *what,
                         unsigned n, int ms);
/* SIGKILL and reap, when still running. */
void relayproc_kill(struct relayproc *rp);
/* relayproc_kill for every relay started and not reaped yet: a teardown. */
void relayproc_kill_all(void);

#endif /* ROOST_TEST_RELAYPROC_H */
