#include "relayproc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "httpc.h"

/* PIDs started and not reaped yet, for relayproc_kill_all (PIDs, not the
 * structs: a failed test's struct may be gone with its stack frame). */
#define MAX_LIVE 16
static pid_t live[MAX_LIVE];

static void live_add(pid_t pid)
{
    for (unsigned i = 0; i < MAX_LIVE; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_del(pid_t pid)
{
    for (unsigned i = 0; i < MAX_LIVE; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *relayproc_bin(void)
{
    static char bin[300];
    const char *b = getenv("ROOST_BUILD");
    snprintf(bin, sizeof(bin), "%s/roost-relay", b != NULL && *b != '\0' ? b : "build");
    return bin;
}

uint16_t relayproc_free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

void relayproc_read(struct relayproc *rp, int timeout_ms)
{
    if (rp->err_fd < 0)
        return;
    struct pollfd pfd = {.fd = rp->err_fd, .events = POLLIN};
    while (rp->log_len < sizeof(rp->log) - 1 && poll(&pfd, 1, timeout_ms) == 1) {
        ssize_t k = read(rp->err_fd, rp->log + rp->log_len, sizeof(rp->log) - rp->log_len - 1);
        if (k <= 0)
            break;
        rp->log_len += (size_t)k;
        rp->log[rp->log_len] = '\0';
        timeout_ms = 0;
    }
}

/* The port after key in the start banner ("listen=127.0.0.1:4433"), 0 when
 * the banner is not there (yet) or names none. */
static uint16_t banner_port(const char *log, const char *key)
{
    const char *b = strstr(log, "event=start ");
    if (b == NULL || strchr(b, '\n') == NULL)
        return 0;
    const char *at = strstr(b, key);
    if (at == NULL || at > strchr(b, '\n'))
        return 0;
    const char *colon = strchr(at, ':');
    const char *sp = strchr(at + 1, ' ');
    if (colon == NULL || (sp != NULL && colon > sp))
        return 0;
    return (uint16_t)atoi(colon + 1);
}

int relayproc_start(struct relayproc *rp, const char *const *args)
{
    memset(rp, 0, sizeof(*rp));
    rp->err_fd = -1;
    const char *bin = relayproc_bin();
    if (access(bin, X_OK) != 0)
        return ROOST_ENOENT;
    const char *argv[32] = {bin};
    size_t a = 1;
    for (size_t i = 0; args != NULL && args[i] != NULL && a < 31; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    int p[2];
    if (pipe(p) != 0)
        return ROOST_EIO;
    rp->pid = fork();
    if (rp->pid < 0) {
        close(p[0]);
        close(p[1]);
        rp->pid = 0;
        return ROOST_EIO;
    }
    if (rp->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    rp->err_fd = p[0];
    live_add(rp->pid);
    uint64_t end = now_ms() + RELAYPROC_WAIT_MS;
    while (rp->port == 0 && now_ms() < end) {
        relayproc_read(rp, 100);
        rp->port = banner_port(rp->log, " listen=");
        if (rp->port == 0 && waitpid(rp->pid, NULL, WNOHANG) == rp->pid) {
            live_del(rp->pid);
            rp->pid = 0; /* exited: a bad argument or config (in the log) */
            break;
        }
    }
    if (rp->port != 0) {
        rp->admin_port = banner_port(rp->log, " admin=");
        int left = (int)(end > now_ms() ? end - now_ms() : 0);
        if (rp->admin_port == 0 || httpc_until(rp->admin_port, "/healthz", "ok", left))
            return 0;
    }
    relayproc_read(rp, 0);
    relayproc_kill(rp);
    return ROOST_ETIMEDOUT;
}

int relayproc_wait(struct relayproc *rp, struct roost_client *cl, int ms)
{
    if (rp->pid <= 0)
        return -1;
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        int st;
        if (waitpid(rp->pid, &st, WNOHANG) == rp->pid) {
            relayproc_read(rp, 0);
            close(rp->err_fd);
            rp->err_fd = -1;
            live_del(rp->pid);
            rp->pid = 0;
            return st;
        }
        if (now_ms() >= end)
            return -1;
        if (cl != NULL)
            roost_client_step(cl, 20);
        else
            relayproc_read(rp, 20);
        relayproc_read(rp, 0);
    }
}

bool relayproc_log_until(struct relayproc *rp, struct roost_client *cl, const char *what,
                         unsigned n, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        unsigned seen = 0;
        for (const char *p = strstr(rp->log, what); p != NULL; p = strstr(p + 1, what))
            seen++;
        if (seen >= n)
            return true;
        if (now_ms() >= end)
            return false;
        if (cl != NULL)
            roost_client_step(cl, 20);
        relayproc_read(rp, cl != NULL ? 0 : 20);
    }
}

void relayproc_kill(struct relayproc *rp)
{
    if (rp->pid > 0) {
        kill(rp->pid, SIGKILL);
        waitpid(rp->pid, NULL, 0);
        live_del(rp->pid);
        rp->pid = 0;
    }
    if (rp->err_fd >= 0) {
        close(rp->err_fd);
        rp->err_fd = -1;
    }
}

void relayproc_kill_all(void)
{
    for (unsigned i = 0; i < MAX_LIVE; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}
