#include "relay_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "echo_app.h"
#include "proto/keyfile.h"

static uint16_t free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    uint16_t p = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        p = ntohs(a.sin_port);
    close(fd);
    return p;
}

uint16_t test_free_udp_port(void)
{
    return free_port(SOCK_DGRAM);
}

uint16_t test_free_tcp_port(void)
{
    return free_port(SOCK_STREAM);
}

int test_http_get(uint16_t port, const char *path, char *body, size_t cap, unsigned timeout_ms)
{
    body[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    uint64_t end = echo_now_ms() + timeout_ms;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    if (poll(&pfd, 1, (int)timeout_ms) != 1) {
        close(fd);
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (soerr != 0 || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char buf[65536];
    size_t len = 0;
    for (;;) {
        uint64_t now = echo_now_ms();
        if (now >= end)
            break;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, (int)(end - now)) != 1)
            break;
        ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, cap, "%s", b != NULL ? b + 4 : "");
    return status;
}

long long test_metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtoll(p + nl + 1, NULL, 10);
    }
    return -1;
}

void relay_proc_dump_log(const struct relay_proc *rp)
{
    FILE *f = fopen(rp->log_path, "r");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL)
        fprintf(stderr, "# [%s] %s", rp->log_path, line);
    fclose(f);
}

static bool ready(const struct relay_proc *rp)
{
    char body[256];
    int st = test_http_get(rp->admin_port, "/healthz", body, sizeof(body), 500);
    return st == 200 && strncmp(body, "ok", 2) == 0;
}

int relay_proc_start(struct relay_proc *rp, const struct relay_proc_config *cfg, unsigned wait_ms)
{
    memset(rp, 0, sizeof(*rp));
    rp->pid = -1;
    const char *b = getenv("ROOST_BUILD");
    char bin[300], cert[600], key[600];
    snprintf(bin, sizeof(bin), "%s/roost-relay", b ? b : "build");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "# %s not built\n", bin);
        return -1;
    }
    const char *d = echo_cert_dir(false);
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    snprintf(rp->keys.key_file, sizeof(rp->keys.key_file), "%s/tokenkeys-%d-%s", d, (int)getpid(),
             cfg->relay_id);
    unlink(rp->keys.key_file);
    char err[256];
    if (keyfile_generate(rp->keys.key_file, "proc", &rp->keys.keys, err, sizeof(err)) != 0)
        return -1;
    snprintf(rp->log_path, sizeof(rp->log_path), "/tmp/roost-relayproc-%d-%s.log", (int)getpid(),
             cfg->relay_id);
    rp->port = test_free_udp_port();
    rp->admin_port = test_free_tcp_port();
    rp->keys.port = rp->port;
    char port[16], aport[16], redis[64], trunk[64], prefix[16];
    snprintf(port, sizeof(port), "%u", rp->port);
    snprintf(aport, sizeof(aport), "%u", rp->admin_port);
    snprintf(redis, sizeof(redis), "127.0.0.1:%u", cfg->redis_port);
    snprintf(trunk, sizeof(trunk), "127.0.0.1:%u", rp->port);
    snprintf(prefix, sizeof(prefix), "%u", cfg->pid_prefix);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int fd = open(rp->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, bin, "--listen", "127.0.0.1", "--port", port, "--workers", "2", "--cert", cert,
              "--key", key, "--token-keys", rp->keys.key_file, "--admin-listen", "127.0.0.1",
              "--admin-port", aport, "--redis", redis, "--relay-id", cfg->relay_id, "--pid-prefix",
              prefix, "--trunk-listen", trunk, "--cluster-secret-file", cfg->secret_file,
              "--key-prefix", cfg->key_prefix, "--lease", cfg->lease, "--join-wait", cfg->join_wait,
              "--redis-timeout", cfg->redis_time, (char *)NULL);
        _exit(127);
    }
    rp->pid = pid;
    uint64_t end = echo_now_ms() + wait_ms;
    while (echo_now_ms() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rp->pid = -1;
            fprintf(stderr, "# relay %s exited during start-up\n", cfg->relay_id);
            relay_proc_dump_log(rp);
            return -1;
        }
        if (ready(rp))
            return 0;
        usleep(20000);
    }
    fprintf(stderr, "# relay %s not ready after %u ms\n", cfg->relay_id, wait_ms);
    relay_proc_dump_log(rp);
    relay_proc_kill(rp);
    return -1;
}

void relay_proc_kill(struct relay_proc *rp)
{
    if (rp->pid <= 0)
        return;
    kill(rp->pid, SIGKILL);
    int st;
    while (waitpid(rp->pid, &st, 0) < 0 && errno == EINTR)
        ;
    rp->pid = -1;
}

int relay_proc_pause(struct relay_proc *rp)
{
    if (rp->pid <= 0 || kill(rp->pid, SIGSTOP) != 0)
        return -1;
    /* kill() returns before every thread stopped: wait for the stop. */
    int st;
    pid_t w;
    while ((w = waitpid(rp->pid, &st, WUNTRACED)) < 0 && errno == EINTR)
        ;
    return w == rp->pid && WIFSTOPPED(st) ? 0 : -1;
}

int relay_proc_resume(struct relay_proc *rp)
{
    return rp->pid > 0 ? kill(rp->pid, SIGCONT) : -1;
}

int relay_proc_term(struct relay_proc *rp, unsigned wait_ms)
{
    if (rp->pid <= 0)
        return -1;
    kill(rp->pid, SIGTERM);
    uint64_t end = echo_now_ms() + wait_ms;
    while (echo_now_ms() < end) {
        int st;
        pid_t w = waitpid(rp->pid, &st, WNOHANG);
        if (w == rp->pid) {
            rp->pid = -1;
            return st;
        }
        usleep(20000);
    }
    relay_proc_kill(rp);
    return -1;
}

bool relay_proc_log_clean(const struct relay_proc *rp)
{
    FILE *f = fopen(rp->log_path, "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool clean = true;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, "Sanitizer") != NULL || strstr(line, "runtime error:") != NULL ||
            strstr(line, "event=crash") != NULL)
            clean = false;
    fclose(f);
    return clean;
}

bool relay_proc_log_has(const struct relay_proc *rp, const char *s)
{
    FILE *f = fopen(rp->log_path, "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

void relay_proc_cleanup(struct relay_proc *rp)
{
    relay_proc_kill(rp);
    if (rp->keys.key_file[0] != '\0')
        unlink(rp->keys.key_file);
    if (rp->log_path[0] != '\0')
        unlink(rp->log_path);
}
