#include "relayproc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include "echo_app.h"
#include "httpc.h"

/* A GET of the admin endpoint (each read). */
#define HTTP_MS 2000

/* Every start until relayproc_cleanup / relayproc_kill_all: its PID while
 * not reaped (PIDs, not the structs: a failed test's struct may be gone
 * with its stack frame) and its log. */
#define MAX_STARTS 32
static struct started {
    pid_t pid;
    char log_path[64];
} started[MAX_STARTS];

static void remember(const struct relayproc *rp)
{
    for (unsigned i = 0; i < MAX_STARTS; i++)
        if (started[i].log_path[0] == '\0') {
            started[i].pid = rp->pid;
            snprintf(started[i].log_path, sizeof(started[i].log_path), "%s", rp->log_path);
            return;
        }
}

static void reaped(struct relayproc *rp)
{
    for (unsigned i = 0; i < MAX_STARTS; i++)
        if (started[i].pid == rp->pid)
            started[i].pid = 0;
    rp->pid = 0;
}

static void forget(const char *log_path)
{
    for (unsigned i = 0; i < MAX_STARTS; i++)
        if (strcmp(started[i].log_path, log_path) == 0)
            memset(&started[i], 0, sizeof(started[i]));
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* polling a condition, not a fixed wait */
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

/* What is new in the log file, into rp->log (as long as it has room). */
static void read_new(struct relayproc *rp)
{
    int fd = rp->log_path[0] != '\0' ? open(rp->log_path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return;
    while (rp->log_len < sizeof(rp->log) - 1) {
        ssize_t k =
            pread(fd, rp->log + rp->log_len, sizeof(rp->log) - 1 - rp->log_len, (off_t)rp->log_len);
        if (k <= 0)
            break;
        rp->log_len += (size_t)k;
    }
    rp->log[rp->log_len] = '\0';
    close(fd);
}

void relayproc_read(struct relayproc *rp, int timeout_ms)
{
    uint64_t end = echo_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        size_t before = rp->log_len;
        read_new(rp);
        uint64_t now = echo_now_ms();
        if (rp->log_len > before || now >= end)
            return;
        nap_ms(end - now < 10 ? (unsigned)(end - now) : 10);
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

/* Forks and execs the relay with args, stderr to a fresh log file. */
static int spawn(struct relayproc *rp, const char *const *args)
{
    const char *bin = relayproc_bin();
    if (access(bin, X_OK) != 0)
        return ROOST_ENOENT;
    const char *argv[32] = {bin};
    size_t a = 1;
    for (size_t i = 0; args != NULL && args[i] != NULL && a < 31; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    static unsigned serial;
    snprintf(rp->log_path, sizeof(rp->log_path), "/tmp/roost-relayproc-%d-%u.log", (int)getpid(),
             serial++);
    int fd = open(rp->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        rp->log_path[0] = '\0';
        return ROOST_EIO;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        unlink(rp->log_path);
        rp->log_path[0] = '\0';
        return ROOST_EIO;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    rp->pid = pid;
    remember(rp);
    return 0;
}

/* Started: waits for the banner and, with the admin endpoint on, for
 * /healthz to say ok. */
static int ready(struct relayproc *rp)
{
    uint64_t end = echo_now_ms() + RELAYPROC_WAIT_MS;
    while (rp->port == 0 && echo_now_ms() < end) {
        relayproc_read(rp, 100);
        rp->port = banner_port(rp->log, " listen=");
        if (rp->port == 0 && waitpid(rp->pid, NULL, WNOHANG) == rp->pid) {
            reaped(rp); /* exited: a bad argument or config (in the log) */
            break;
        }
    }
    if (rp->port != 0) {
        rp->admin_port = banner_port(rp->log, " admin=");
        uint64_t now = echo_now_ms();
        int left = (int)(end > now ? end - now : 0);
        if (rp->admin_port == 0 || httpc_until(rp->admin_port, "/healthz", "ok", left))
            return 0;
    }
    relayproc_read(rp, 0);
    relayproc_kill(rp);
    return ROOST_ETIMEDOUT;
}

int relayproc_start(struct relayproc *rp, const char *const *args)
{
    memset(rp, 0, sizeof(*rp));
    int rc = spawn(rp, args);
    return rc != 0 ? rc : ready(rp);
}

int relayproc_wait(struct relayproc *rp, struct roost_client *cl, int ms)
{
    if (rp->pid <= 0)
        return -1;
    uint64_t end = echo_now_ms() + (uint64_t)ms;
    for (;;) {
        int st;
        if (waitpid(rp->pid, &st, WNOHANG) == rp->pid) {
            relayproc_read(rp, 0);
            reaped(rp);
            return st;
        }
        if (echo_now_ms() >= end)
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
    uint64_t end = echo_now_ms() + (uint64_t)ms;
    for (;;) {
        unsigned seen = 0;
        for (const char *p = strstr(rp->log, what); p != NULL; p = strstr(p + 1, what))
            seen++;
        if (seen >= n)
            return true;
        if (echo_now_ms() >= end)
            return false;
        if (cl != NULL)
            roost_client_step(cl, 20);
        relayproc_read(rp, cl != NULL ? 0 : 20);
    }
}

/* Whether a line of the whole log contains one of the n strings in s. */
static bool log_any(const struct relayproc *rp, const char *const *s, unsigned n)
{
    FILE *f = rp->log_path[0] != '\0' ? fopen(rp->log_path, "r") : NULL;
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        for (unsigned i = 0; i < n && !found; i++)
            found = strstr(line, s[i]) != NULL;
    fclose(f);
    return found;
}

bool relayproc_log_has(const struct relayproc *rp, const char *s)
{
    return log_any(rp, &s, 1);
}

bool relayproc_log_clean(const struct relayproc *rp)
{
    static const char *const bad[] = {"Sanitizer", "runtime error:", "event=crash"};
    FILE *f = rp->log_path[0] != '\0' ? fopen(rp->log_path, "r") : NULL;
    if (f == NULL)
        return false; /* no log: nothing to vouch for */
    fclose(f);
    return !log_any(rp, bad, 3);
}

void relayproc_dump_log(const struct relayproc *rp)
{
    FILE *f = rp->log_path[0] != '\0' ? fopen(rp->log_path, "r") : NULL;
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL)
        fprintf(stderr, "# [%s] %s", rp->log_path, line);
    fclose(f);
}

long long relayproc_metric(const struct relayproc *rp, const char *name)
{
    int st = 0;
    char *text = rp->admin_port != 0 ? httpc_get(rp->admin_port, "/metrics", &st, HTTP_MS) : NULL;
    long long v = -1;
    size_t nl = strlen(name);
    for (const char *p = st == 200 ? text : NULL; p != NULL && *p;
         p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
            v = strtoll(p + nl + 1, NULL, 10);
            break;
        }
    }
    free(text);
    return v;
}

void relayproc_kill(struct relayproc *rp)
{
    if (rp->pid <= 0)
        return;
    kill(rp->pid, SIGKILL);
    while (waitpid(rp->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    reaped(rp);
}

int relayproc_pause(struct relayproc *rp)
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

int relayproc_resume(struct relayproc *rp)
{
    return rp->pid > 0 ? kill(rp->pid, SIGCONT) : -1;
}

int relayproc_term(struct relayproc *rp, struct roost_client *cl, int wait_ms)
{
    if (rp->pid <= 0 || kill(rp->pid, SIGTERM) != 0)
        return -1;
    int st = relayproc_wait(rp, cl, wait_ms);
    if (st == -1)
        relayproc_kill(rp);
    return st;
}

void relayproc_cleanup(struct relayproc *rp)
{
    relayproc_kill(rp);
    if (rp->keys.key_file[0] != '\0')
        unlink(rp->keys.key_file);
    if (rp->log_path[0] != '\0') {
        unlink(rp->log_path);
        forget(rp->log_path);
    }
    rp->keys.key_file[0] = '\0';
    rp->log_path[0] = '\0';
}

void relayproc_kill_all(void)
{
    for (unsigned i = 0; i < MAX_STARTS; i++) {
        if (started[i].pid > 0) {
            kill(started[i].pid, SIGKILL);
            while (waitpid(started[i].pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        if (started[i].log_path[0] != '\0')
            unlink(started[i].log_path);
        memset(&started[i], 0, sizeof(started[i]));
    }
}
