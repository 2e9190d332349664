/* Test support: a private redis-server for directory tests.
 *
 * Started as `redis-server --port P --bind 127.0.0.1 --save '' --appendonly
 * no --daemonize no` on a free loopback port (or a given one, to restart on
 * the same port), ready when it answers PING (polled against a deadline),
 * stopped or killed by its PID. The server gets SIGKILL if the test process
 * dies first (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
 *
 * Thread safety: one thread per struct redis_server. */
#ifndef ROOST_TEST_REDIS_SERVER_H
#define ROOST_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct redisContext;

struct redis_server {
    pid_t pid; /* -1 when not running */
    uint16_t port;
};

/* redis-server is on PATH. */
bool redis_server_available(void);

/* Starts a server on `port` (0: a free one, retried if another process
 * takes it first) and waits until it answers PING, at most 5 s. Returns 0,
 * ROOST_ENOENT (no redis-server), ROOST_ETIMEDOUT or ROOST_ESYS. */
int redis_server_start(struct redis_server *rs, uint16_t port);
/* SIGTERM and wait (SIGKILL after 2 s). No-op when not running. */
void redis_server_stop(struct redis_server *rs);
/* SIGKILL and wait: a crash, no shutdown work. No-op when not running. */
void redis_server_kill(struct redis_server *rs);
/* Starts again on the same port. Same returns as redis_server_start. */
int redis_server_restart(struct redis_server *rs);

/* A hiredis connection to the server for checks (caller redisFree()s it);
 * NULL on failure. */
struct redisContext *redis_server_connect(const struct redis_server *rs);

/* CLOCK_MONOTONIC in ms, for test deadlines. */
uint64_t redis_test_now_ms(void);

#endif
