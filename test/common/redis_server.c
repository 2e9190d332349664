#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#define READY_MS 5000
#define STOP_MS 2000

uint64_t redis_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

bool redis_server_available(void)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *dir = strtok_r(buf, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        char f[4200];
        snprintf(f, sizeof(f), "%s/redis-server", dir);
        if (access(f, X_OK) == 0)
            return true;
    }
    return false;
}

/* A loopback TCP port nobody listens on right now (the kernel's pick). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static pid_t spawn(uint16_t port)
{
    char p[8];
    snprintf(p, sizeof(p), "%u", port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid; /* -1 or the child */
    /* Child: only async-signal-safe calls until exec. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int null = open("/dev/null", O_RDWR);
    if (null != -1) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp", "--loglevel", "warning",
           (char *)NULL);
    _exit(127);
}

struct redisContext *redis_server_connect(const struct redis_server *rs)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    if (c == NULL || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static bool answers_ping(const struct redis_server *rs)
{
    redisContext *c = redis_server_connect(rs);
    if (c == NULL)
        return false;
    redisReply *r = redisCommand(c, "PING");
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    freeReplyObject(r);
    redisFree(c);
    return ok;
}

static int start_on(struct redis_server *rs, uint16_t port)
{
    rs->port = port;
    rs->pid = spawn(port);
    if (rs->pid == -1)
        return ROOST_ESYS;
    uint64_t deadline = redis_test_now_ms() + READY_MS;
    while (redis_test_now_ms() < deadline) {
        int st;
        if (waitpid(rs->pid, &st, WNOHANG) == rs->pid) {
            rs->pid = -1; /* exited: port taken, or not installed */
            return ROOST_EAGAIN;
        }
        if (answers_ping(rs))
            return 0;
        nap_ms(10);
    }
    redis_server_kill(rs);
    return ROOST_ETIMEDOUT;
}

int redis_server_start(struct redis_server *rs, uint16_t port)
{
    rs->pid = -1;
    if (!redis_server_available())
        return ROOST_ENOENT;
    for (int attempt = 0; attempt < 5; attempt++) {
        uint16_t p = port != 0 ? port : free_port();
        if (p == 0)
            return ROOST_ESYS;
        int rc = start_on(rs, p);
        if (rc != ROOST_EAGAIN)
            return rc;
        if (port != 0)
            nap_ms(50); /* the old server's socket may still be closing */
    }
    return ROOST_ETIMEDOUT;
}

int redis_server_restart(struct redis_server *rs)
{
    redis_server_kill(rs);
    return redis_server_start(rs, rs->port);
}

static void reap(struct redis_server *rs, int sig, unsigned wait_ms)
{
    if (rs->pid <= 0)
        return;
    kill(rs->pid, sig);
    uint64_t deadline = redis_test_now_ms() + wait_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(rs->pid, &st, WNOHANG);
        if (r == rs->pid || (r == -1 && errno == ECHILD))
            break;
        if (redis_test_now_ms() >= deadline) {
            kill(rs->pid, SIGKILL);
            waitpid(rs->pid, &st, 0);
            break;
        }
        nap_ms(5);
    }
    rs->pid = -1;
}

void redis_server_stop(struct redis_server *rs)
{
    reap(rs, SIGTERM, STOP_MS);
}

void redis_server_kill(struct redis_server *rs)
{
    reap(rs, SIGKILL, STOP_MS);
}
