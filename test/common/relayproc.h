/* Test support: the shipped roost-relay binary as a child process, for
 * tests that need a real process: stopped by a signal (drain, reload),
 * killed (SIGKILL) or paused (SIGSTOP / SIGCONT) while the test and the
 * other relays keep running.
 *
 * relayproc_start runs $ROOST_BUILD/roost-relay (default build/) with the
 * given arguments (a relay with a [cluster] section: clusterfx_proc_start,
 * clusterfx.h). stdout goes to /dev/null (a stray relay must not hold
 * prove's pipe), stderr (the log) to a file: never a pipe that could fill
 * while the test does not read it. relayproc_read copies what is new into
 * rp->log. Ready when the start banner names the QUIC port and, when it
 * names an admin endpoint, /healthz says ok (with a cluster: Redis
 * reached), polled against RELAYPROC_WAIT_MS. The process gets SIGKILL if
 * the test process dies (PR_SET_PDEATHSIG); it is signalled and reaped by
 * its PID only. Every start is remembered until relayproc_cleanup or
 * relayproc_kill_all, so that a teardown kills what a failed assertion
 * left and removes the logs. Not part of the relay.
 *
 * Thread safety: one thread for all of them (the test's). */
#ifndef ROOST_TEST_RELAYPROC_H
#define ROOST_TEST_RELAYPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/client.h"
#include "participant.h"

/* Deadline of a condition that must come (start-up, exit after a signal):
 * a failure bound, never a timing assumption. */
#define RELAYPROC_WAIT_MS 30000

struct relayproc {
    pid_t pid;           /* 0: not running (never started, or reaped) */
    uint16_t port;       /* QUIC, from the banner's listen=127.0.0.1:N */
    uint16_t admin_port; /* from the banner's admin=ADDR:N; 0: admin off */
    /* The relay's token key when a helper made one (clusterfx_proc_start),
     * for test_token (.r stays NULL; .port = port); relayproc_cleanup
     * removes its file. */
    struct test_relay keys;
    char log_path[64]; /* its stderr; "" before the first start */
    char log[32768];   /* the log's first bytes as read so far, NUL-ended */
    size_t log_len;
};

/* $ROOST_BUILD/roost-relay. */
const char *relayproc_bin(void);
/* A port on 127.0.0.1 free right now (type SOCK_DGRAM or SOCK_STREAM), or
 * 0. For a relay that must be given a non-zero port. */
uint16_t relayproc_free_port(int type);

/* Starts the relay with args (after argv[0], NULL ended, at most 30) and
 * waits until it is ready (rp zeroed first). Returns 0; ROOST_ENOENT when the binary is not
 * built, ROOST_ETIMEDOUT when it did not get ready (killed and reaped; its
 * log is in rp->log), ROOST_EIO when it could not be started. */
int relayproc_start(struct relayproc *rp, const char *const *args);

/* Reads what the relay logged since the last read into rp->log, waiting
 * at most timeout_ms for something new. */
void relayproc_read(struct relayproc *rp, int timeout_ms);
/* Waits up to ms for the relay to exit, stepping cl (when not NULL) so
 * its connections answer. Returns the wait status, or -1 while it runs. */
int relayproc_wait(struct relayproc *rp, struct roost_client *cl, int ms);
/* Waits up to ms for the n-th occurrence of what in rp->log, stepping cl
 * (when not NULL). */
bool relayproc_log_until(struct relayproc *rp, struct roost_client *cl, const char *what,
                         unsigned n, int ms);
/* The whole log (not only rp->log's part) has a line containing s. */
bool relayproc_log_has(const struct relayproc *rp, const char *s);
/* The whole log has no sanitizer report (ASan/UBSan/LSan) and no crash. */
bool relayproc_log_clean(const struct relayproc *rp);
/* Prints the whole log to stderr as TAP comments (on failure). */
void relayproc_dump_log(const struct relayproc *rp);
/* The value of the unlabelled sample name on the relay's /metrics, or -1
 * (no admin endpoint, no answer, not 200, no such sample). */
long long relayproc_metric(const struct relayproc *rp, const char *name);

/* SIGKILL and reap, when still running. */
void relayproc_kill(struct relayproc *rp);
/* SIGSTOP (returns once the process is stopped: waitpid WUNTRACED) /
 * SIGCONT. 0 or -1. */
int relayproc_pause(struct relayproc *rp);
int relayproc_resume(struct relayproc *rp);
/* SIGTERM (drain; exits once its rooms are empty) and reap, at most
 * wait_ms (then SIGKILL), stepping cl (when not NULL) meanwhile so that
 * its connections send what they have queued (a LEAVE) and answer.
 * Returns the wait status, or -1 when it had to be killed. */
int relayproc_term(struct relayproc *rp, struct roost_client *cl, int wait_ms);
/* Kills if running, removes the log and the token key file: the struct
 * may be started again. A zeroed struct is fine. */
void relayproc_cleanup(struct relayproc *rp);
/* relayproc_kill for every relay started and not reaped yet, and every
 * log removed: a teardown. */
void relayproc_kill_all(void);

#endif /* ROOST_TEST_RELAYPROC_H */
