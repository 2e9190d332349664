/* Test support: a roost-relay process ($ROOST_BUILD/roost-relay, default
 * build/) with a [cluster] section, for failure tests that need a relay to
 * be killed (SIGKILL) or paused (SIGSTOP / SIGCONT) while the test and the
 * other relays keep running.
 *
 * The process gets a fresh token key (participants' tokens are minted with
 * test_token(&rp->keys, ...)), a kernel-chosen free UDP port (also its
 * trunk_listen) and a free admin TCP port on 127.0.0.1; its stderr goes to
 * a file (never a pipe that could fill while the test does not read it).
 * Ready when the admin endpoint answers /healthz "ok" (Redis reached),
 * polled against a deadline. It gets SIGKILL if the test process dies
 * (PR_SET_PDEATHSIG). Stopped by its PID only.
 *
 * Thread safety: one thread per struct relay_proc. */
#ifndef ROOST_TEST_RELAY_PROC_H
#define ROOST_TEST_RELAY_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "participant.h"

struct relay_proc_config {
    const char *relay_id;
    unsigned pid_prefix;
    uint16_t redis_port;
    const char *key_prefix;
    const char *secret_file;
    const char *lease;      /* e.g. "1s" */
    const char *join_wait;  /* e.g. "600ms" */
    const char *redis_time; /* redis_timeout, e.g. "200ms" */
};

struct relay_proc {
    pid_t pid; /* -1 when not running */
    uint16_t port, admin_port;
    struct test_relay keys; /* .r stays NULL; .port = port */
    char log_path[128];
};

/* Starts the process and waits (at most wait_ms) until it is ready.
 * Returns 0 or -1 (the log is printed to stderr). */
int relay_proc_start(struct relay_proc *rp, const struct relay_proc_config *cfg, unsigned wait_ms);
/* SIGKILL and reap. No-op when not running. */
void relay_proc_kill(struct relay_proc *rp);
/* SIGSTOP (returns once the process is stopped: waitpid WUNTRACED) /
 * SIGCONT. 0 or -1. */
int relay_proc_pause(struct relay_proc *rp);
int relay_proc_resume(struct relay_proc *rp);
/* SIGTERM (drain; exits once its rooms are empty) and reap, at most
 * wait_ms (then SIGKILL). Returns the wait status, or -1 when it had to be
 * killed. */
int relay_proc_term(struct relay_proc *rp, unsigned wait_ms);
/* The log has no sanitizer report (ASan/UBSan/LSan) and no crash. */
bool relay_proc_log_clean(const struct relay_proc *rp);
/* The log has a line containing s. */
bool relay_proc_log_has(const struct relay_proc *rp, const char *s);
/* Kills if running, removes the key file and the log. */
void relay_proc_cleanup(struct relay_proc *rp);
/* Prints the process's log to stderr as TAP comments (on failure). */
void relay_proc_dump_log(const struct relay_proc *rp);

/* GET path on 127.0.0.1:port over HTTP/1.0: the status (or -1) and the
 * body (NUL-terminated, cut to cap). Waits at most timeout_ms. */
int test_http_get(uint16_t port, const char *path, char *body, size_t cap, unsigned timeout_ms);
/* The value of an unlabelled Prometheus sample `name` in text, or -1. */
long long test_metric(const char *text, const char *name);

/* Kernel-chosen free loopback ports (bound, read, closed). */
uint16_t test_free_udp_port(void);
uint16_t test_free_tcp_port(void);

#endif
