/* roost-relay: configuration (file + command line), signals (drain on
 * SIGTERM, reload on SIGHUP), the admin endpoint and the start-up banner.
 * The relay itself is relay/relay.c; docs/OPERATIONS.md says how to run it. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/worker.h"
#include "relay/admin.h"
#include "relay/config.h"
#include "relay/relay.h"
#include "quic/udp.h"

#define RELAY_VERSION "0.1"
#define OPT_KEY_BASE 1000
#define OPT_CHECK 900
#define OPT_VERSION 901
#define TICK_NS 100000000l      /* signal wait granularity while draining */
#define STATUS_NS 5000000000ull /* sd_notify STATUS= refresh */
#define DEFAULT_STATE_DIR "/var/lib/roost"

#ifndef ROOST_SANITIZE
/* jemalloc reads this at its first allocation (MALLOC_CONF in the
 * environment still overrides it). Without a background thread, dirty
 * pages are only purged when some thread allocates again, so an idle relay
 * kept 113-208 MB after a flood (issue 16); with it they go back to the
 * kernel within about dirty_decay_ms. The sanitizer build runs on libc
 * malloc (ASan owns the allocator), where this symbol means nothing. */
const char *malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
#endif

/* Command-line key overrides, kept to re-apply them on every reload. */
struct override {
    const char *key;
    const char *value;
};

struct cli {
    const char *file;
    bool check;
    struct override *ov;
    size_t n_ov;
};

static void usage(FILE *f)
{
    size_t n;
    const struct config_key *k = config_keys(&n);
    fprintf(f, "usage: roost-relay [-c FILE] [--check-config] [--KEY VALUE]...\n"
               "  -c, --config FILE   INI configuration (docs/CONFIG.md)\n"
               "  --check-config      validate the configuration, print every error, exit\n"
               "  --version, -h/--help\n"
               "Every configuration key can be given on the command line and overrides the "
               "file:\n");
    for (size_t i = 0; i < n; i++) {
        char opt[64];
        snprintf(opt, sizeof(opt), "%s", k[i].name);
        for (char *p = opt; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  --%-20s %s (default: %s)\n", opt, k[i].help, *k[i].def ? k[i].def : "none");
    }
    fprintf(f, "Durations take a unit (250ms, 30s, 2m, 1h); sizes too (64k, 4m).\n"
               "Boolean keys: --KEY alone means true; else --KEY=false (with '=').\n"
               "Signals: SIGTERM drains then exits (a second one exits at once), SIGHUP "
               "reloads.\n");
}

static void print_err(void *arg, const char *file, int line, const char *key, const char *msg)
{
    (void)arg;
    if (line > 0)
        fprintf(stderr, "%s:%d: %s%s%s\n", file, line, key, *key ? ": " : "", msg);
    else
        fprintf(stderr, "%s: %s%s%s\n", file ? file : "command line", key, *key ? ": " : "", msg);
}

/* Builds a configuration from the file and the overrides. Returns the
 * number of errors (printed). */
static int build_config(struct config *c, const struct cli *cli)
{
    if (config_init(c) != 0) {
        fprintf(stderr, "roost-relay: out of memory\n");
        return 1;
    }
    int errors = 0;
    if (cli->file != NULL) {
        int rc = config_load_file(c, cli->file, print_err, NULL);
        errors += rc < 0 ? 1 : rc;
    }
    for (size_t i = 0; i < cli->n_ov; i++) {
        char err[256];
        if (config_set(c, cli->ov[i].key, cli->ov[i].value, "command line", 0, err, sizeof(err)) !=
            0) {
            char opt[64];
            snprintf(opt, sizeof(opt), "%s", cli->ov[i].key);
            for (char *p = opt; *p; p++)
                if (*p == '_')
                    *p = '-';
            fprintf(stderr, "command line: invalid value for --%s: %s: '%s'\n", opt, err,
                    cli->ov[i].value);
            errors++;
        }
    }
    return errors;
}

static int parse_cli(int argc, char **argv, struct cli *cli, char **names)
{
    size_t n;
    const struct config_key *k = config_keys(&n);
    struct option *opts = calloc(n + 5, sizeof(*opts));
    cli->ov = calloc((size_t)argc, sizeof(*cli->ov));
    if (opts == NULL || cli->ov == NULL) {
        free(opts);
        return 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        for (char *p = names[i]; *p; p++)
            if (*p == '_')
                *p = '-';
        opts[o++] = (struct option){
            names[i], k[i].type == CONFIG_BOOL ? optional_argument : required_argument, NULL,
            OPT_KEY_BASE + (int)i};
    }
    opts[o++] = (struct option){"config", required_argument, NULL, 'c'};
    opts[o++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
    opts[o++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    opts[o++] = (struct option){"help", no_argument, NULL, 'h'};
    int opt, ret = -1;
    while (ret < 0 && (opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (opt >= OPT_KEY_BASE && opt < OPT_KEY_BASE + (int)n) {
            size_t id = (size_t)(opt - OPT_KEY_BASE);
            cli->ov[cli->n_ov].key = k[id].name;
            cli->ov[cli->n_ov].value = optarg ? optarg : "true";
            cli->n_ov++;
            continue;
        }
        switch (opt) {
        case 'c':
            cli->file = optarg;
            break;
        case OPT_CHECK:
            cli->check = true;
            break;
        case OPT_VERSION:
            printf("roost-relay %s\n", RELAY_VERSION);
            ret = 0;
            break;
        case 'h':
            usage(stdout);
            ret = 0;
            break;
        default:
            usage(stderr);
            ret = 2;
            break;
        }
    }
    if (ret < 0 && optind < argc) {
        fprintf(stderr, "roost-relay: unexpected argument '%s'\n", argv[optind]);
        ret = 2;
    }
    free(opts);
    return ret;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ state dir */

/* An installed relay keeps its reset/Retry secret in a state directory:
 * systemd's StateDirectory= (exported as $STATE_DIRECTORY), else
 * /var/lib/roost when it is a writable directory. Without one the secret
 * is random per process and stateless resets after a restart are ignored
 * by clients: say so loudly. Applied on start and on every reload (so a
 * reload does not see state_dir "changed"). */
static void default_state_dir(struct config *c, bool warn)
{
    static char dir[4096];
    if (c->relay.state_dir != NULL)
        return;
    if (dir[0] == '\0') {
        const char *env = getenv("STATE_DIRECTORY"); /* may be a ':' list */
        if (env != NULL && *env != '\0') {
            snprintf(dir, sizeof(dir), "%s", env);
            char *colon = strchr(dir, ':');
            if (colon != NULL)
                *colon = '\0';
        } else {
            snprintf(dir, sizeof(dir), "%s", DEFAULT_STATE_DIR);
        }
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)
            snprintf(dir, sizeof(dir), "%s", "-");
    }
    if (strcmp(dir, "-") != 0) {
        c->relay.state_dir = dir;
        return;
    }
    if (warn)
        log_warn("event=no_state_dir msg=\"no state_dir (and %s is not a writable "
                 "directory): the stateless-reset/Retry secret is random per process, so "
                 "resets after a restart will not be recognised by clients; set "
                 "[server] state_dir\"",
                 DEFAULT_STATE_DIR);
}

/* ---------------------------------------------------- one relay per port */

/* SO_REUSEPORT lets a second relay bind the same port and silently take
 * part of the traffic (issue 16). Two guards: a lock file per address:port
 * in the state directory, flock'ed for the life of the process and holding
 * its PID (names the other relay); and a probe bind WITHOUT SO_REUSEPORT,
 * which fails with EADDRINUSE whenever anyone holds the port, reuseport or
 * not (covers relays with another state directory and other programs).
 * Returns the lock fd (kept open; -1 without a state dir) or -2 (refused,
 * printed). */
static int claim_port(const struct config *c)
{
    const char *addr = c->relay.addr ? c->relay.addr : "127.0.0.1";
    unsigned port = c->relay.port;
    long other = 0;
    int fd = -1;
    char path[4096] = "";
    if (c->relay.state_dir != NULL) {
        snprintf(path, sizeof(path), "%s/relay-%s-%u.lock", c->relay.state_dir, addr, port);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd == -1) {
            log_warn("event=port_lock_failed path=%s err=\"%s\"", path, strerror(errno));
        } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            char buf[32] = "";
            ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
            if (n > 0)
                other = strtol(buf, NULL, 10);
            fprintf(stderr,
                    "roost-relay: UDP %s:%u is in use by another roost-relay (pid %ld, lock "
                    "%s); refusing to start\n",
                    addr, port, other, path);
            close(fd);
            return -2;
        } else {
            char buf[32];
            int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
                log_warn("event=port_lock_failed path=%s msg=\"cannot write pid\"", path);
        }
    }
    struct udp_addr ua;
    if (udp_addr_parse(&ua, addr, (uint16_t)port) == 0) {
        int s = socket(ua.u.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s != -1 && bind(s, &ua.u.sa, ua.len) != 0 && errno == EADDRINUSE) {
            fprintf(stderr,
                    "roost-relay: UDP %s:%u is already in use (another roost-relay or another "
                    "program holds it); refusing to start\n",
                    addr, port);
            close(s);
            if (fd != -1)
                close(fd);
            return -2;
        }
        if (s != -1)
            close(s);
    }
    return fd;
}

/* The WebSocket listener's TCP port, probed without SO_REUSEPORT as in
 * claim_port: another program (or relay) holding it makes us refuse to
 * start instead of sharing it. Returns 0 or -2 (refused, printed). */
static int claim_ws_port(const struct config *c)
{
    const struct ws_shared_config *w = &c->relay.ws;
    struct udp_addr ua;
    if (w->addr == NULL || w->port == 0 || udp_addr_parse(&ua, w->addr, w->port) != 0)
        return 0;
    int s = socket(ua.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = 0, one = 1;
    /* SO_REUSEADDR: connections of a previous run in TIME_WAIT are fine, a
     * listener is not. */
    if (s != -1)
        (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s != -1 && bind(s, &ua.u.sa, ua.len) != 0 && errno == EADDRINUSE) {
        fprintf(stderr, "roost-relay: TCP %s:%u (ws_listen) is already in use; refusing to start\n",
                w->addr, (unsigned)w->port);
        rc = -2;
    }
    if (s != -1)
        close(s);
    return rc;
}

/* -------------------------------------------------------------- systemd */

/* sd_notify is a no-op without NOTIFY_SOCKET (not under systemd). */
static void notify_status(struct relay *r, const char *state)
{
    struct relay_stats st;
    relay_stats(r, &st);
    sd_notifyf(0, "STATUS=%s: %lld rooms, %lld participants, %llu connections", state,
               (long long)st.rooms, (long long)st.participants, (unsigned long long)st.conns_open);
}

/* The watchdog is fed only while every worker makes progress: each one's
 * turn counter must have moved since the last ping (a worker turns at
 * least every quality_interval through its timer). */
struct watchdog {
    uint64_t interval_ns; /* ping period: half of WatchdogSec; 0: off */
    uint64_t next_ns;
    uint64_t turns[WORKER_MAX];
};

static void watchdog_tick(struct watchdog *wd, struct relay *r, uint64_t now)
{
    if (wd->interval_ns == 0 || now < wd->next_ns)
        return;
    wd->next_ns = now + wd->interval_ns;
    bool all = true;
    unsigned n = relay_workers(r);
    for (unsigned i = 0; i < n && i < WORKER_MAX; i++) {
        struct relay_worker_stats ws;
        relay_worker_stats(r, i, &ws);
        if (ws.worker.turns == wd->turns[i]) {
            all = false;
            log_warn("event=watchdog_skip worker=%u turns=%llu msg=\"no progress\"", i,
                     (unsigned long long)ws.worker.turns);
        }
        wd->turns[i] = ws.worker.turns;
    }
    if (all)
        sd_notify(0, "WATCHDOG=1");
}

/* ------------------------------------------------------------- jemalloc */

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

/* "background_thread=true dirty_decay_ms=1000 muzzy_decay_ms=0" as in
 * force (read back through mallctl), or "libc" without jemalloc. */
static void alloc_settings(char *out, size_t len)
{
    mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
    if (mallctl == NULL) {
        snprintf(out, len, "allocator=libc");
        return;
    }
    bool bg = false;
    ssize_t dirty = -2, muzzy = -2;
    size_t bl = sizeof(bg), sl = sizeof(ssize_t);
    if (mallctl("background_thread", &bg, &bl, NULL, 0) != 0)
        bg = false;
    if (mallctl("arenas.dirty_decay_ms", &dirty, &sl, NULL, 0) != 0)
        dirty = -2;
    sl = sizeof(ssize_t);
    if (mallctl("arenas.muzzy_decay_ms", &muzzy, &sl, NULL, 0) != 0)
        muzzy = -2;
    snprintf(out, len,
             "allocator=jemalloc jemalloc_background_thread=%s jemalloc_dirty_decay_ms=%zd "
             "jemalloc_muzzy_decay_ms=%zd",
             bg ? "true" : "false", dirty, muzzy);
}

static void banner(struct relay *r, const struct config *c, const struct admin *adm)
{
    unsigned n = relay_workers(r);
    char cpus[256] = "";
    size_t off = 0;
    for (unsigned i = 0; i < n && off < sizeof(cpus) - 8; i++) {
        struct relay_worker_stats ws;
        relay_worker_stats(r, i, &ws);
        off += (size_t)snprintf(cpus + off, sizeof(cpus) - off, "%s%d", i ? "," : "", ws.cpu);
    }
    struct relay_limits lim;
    relay_limits(r, &lim);
    char admin[80] = "off";
    if (adm != NULL)
        snprintf(admin, sizeof(admin), "%s:%u", c->admin_listen, admin_port(adm));
    char alloc[160];
    alloc_settings(alloc, sizeof(alloc));
    log_info("event=start version=%s listen=%s:%u workers=%u cpus=%s online_cpus=%ld "
             "max_rooms=%u max_members=%u max_conns_per_worker=%u max_half_open=%u "
             "handshake_rate=%u steering=%s affinity_max_members=%u drain_timeout_ms=%llu "
             "admin=%s auth=%s state_dir=%s %s config=%s",
             RELAY_VERSION, c->relay.addr, relay_port(r), n, cpus, sysconf(_SC_NPROCESSORS_ONLN),
             lim.max_rooms, lim.max_members, lim.max_conns_per_worker, lim.max_half_open,
             lim.handshake_rate, relay_steering_mode(r), relay_affinity_max_members(r),
             (unsigned long long)(c->drain_timeout_ns / 1000000u), admin,
             c->relay.insecure_no_auth ? "DISABLED" : "token",
             c->relay.state_dir ? c->relay.state_dir : "none", alloc, c->file ? c->file : "none");
    if (relay_ws_port(r) != 0)
        log_info("event=ws_listen url=%s://%s%s%s:%u/ web_root=%s",
                 c->relay.ws.plain ? "ws" : "wss", strchr(c->relay.ws.addr, ':') ? "[" : "",
                 c->relay.ws.addr, strchr(c->relay.ws.addr, ':') ? "]" : "", relay_ws_port(r),
                 c->relay.ws.web_root ? c->relay.ws.web_root : "none");
}

int main(int argc, char **argv)
{
    log_set_thread_tag("main");
    size_t nkeys;
    const struct config_key *keys = config_keys(&nkeys);
    char **names = calloc(nkeys, sizeof(*names));
    if (names == NULL)
        return 1;
    for (size_t i = 0; i < nkeys; i++)
        if ((names[i] = strdup(keys[i].name)) == NULL)
            return 1;
    struct cli cli = {0};
    int ret = parse_cli(argc, argv, &cli, names);
    if (ret >= 0)
        goto out_names;

    /* Every configuration ever applied stays alive: the relay keeps
     * pointers into it (file names) until exit. Reloads are rare. */
    struct config **confs = calloc(1, sizeof(*confs));
    size_t n_confs = 0;
    if (confs == NULL || (confs[0] = calloc(1, sizeof(**confs))) == NULL)
        return 1;
    n_confs = 1;
    int errors = build_config(confs[0], &cli);
    struct config *c = confs[0];
    if (cli.check) {
        errors += config_validate(c, print_err, NULL);
        if (errors > 0)
            fprintf(stderr, "roost-relay: %d configuration error%s\n", errors,
                    errors == 1 ? "" : "s");
        else
            printf("roost-relay: configuration OK%s%s\n", cli.file ? ": " : "",
                   cli.file ? cli.file : "");
        ret = errors > 0 ? 1 : 0;
        goto out_confs;
    }
    if (errors > 0) {
        fprintf(stderr, "roost-relay: %d configuration error%s (see --check-config)\n", errors,
                errors == 1 ? "" : "s");
        ret = 2;
        goto out_confs;
    }
    /* The rest (files readable, keys valid) is checked by relay_new, which
     * logs what is wrong; --check-config reports it all at once. */
    if (c->relay.cert_file == NULL || c->relay.key_file == NULL) {
        fprintf(stderr, "roost-relay: --cert and --key are required (or [tls] cert/key)\n");
        usage(stderr);
        ret = 2;
        goto out_confs;
    }
    log_set_level(c->log_level);
    default_state_dir(c, true);
    int lock_fd = -1; /* held (flock) until exit; see claim_port */
    if (c->relay.port != 0 && (lock_fd = claim_port(c)) == -2) {
        ret = 1;
        goto out_confs;
    }
    if (claim_ws_port(c) == -2) {
        if (lock_fd >= 0)
            close(lock_fd);
        ret = 1;
        goto out_confs;
    }

    /* Workers inherit this mask; the main thread takes the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct relay *r = NULL;
    struct admin *adm = NULL;
    int rc = relay_new(&r, &c->relay);
    if (rc != 0) {
        fprintf(stderr, "roost-relay: cannot start: %s\n", roost_strerror(rc));
        ret = 1;
        goto out_confs;
    }
    rc = relay_start(r);
    if (rc != 0) {
        fprintf(stderr, "roost-relay: cannot start workers: %s\n", roost_strerror(rc));
        ret = 1;
        goto out_relay;
    }
    if (c->admin) {
        struct admin_config ac = {.addr = c->admin_listen,
                                  .port = c->admin_port,
                                  .drain_timeout_ns = c->drain_timeout_ns,
                                  .conn_limit = c->admin_conn_limit,
                                  .conn_timeout_ns = c->admin_conn_timeout_ns};
        rc = admin_new(&adm, r, &ac);
        if (rc != 0) {
            fprintf(stderr, "roost-relay: cannot start the admin endpoint on %s:%u: %s\n",
                    c->admin_listen, c->admin_port, roost_strerror(rc));
            ret = 1;
            goto out_relay;
        }
    }
    banner(r, c, adm);

    /* Sockets are bound and the workers run: tell systemd (a no-op without
     * NOTIFY_SOCKET). */
    struct watchdog wd = {0};
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        wd.interval_ns = wd_usec * 1000u / 2u;
        log_info("event=watchdog interval_ms=%llu", (unsigned long long)(wd_usec / 1000u));
    }
    sd_notify(0, "READY=1");
    notify_status(r, "serving");
    uint64_t next_status = mono_ns() + STATUS_NS;

    bool draining = false;
    uint64_t deadline = 0;
    /* Wake at least every second (STATUS=, watchdog), every tick while
     * draining. */
    uint64_t wait_ns = 1000000000ull;
    if (wd.interval_ns != 0 && wd.interval_ns / 2 < wait_ns)
        wait_ns = wd.interval_ns / 2;
    const struct timespec idle = {(time_t)(wait_ns / 1000000000ull),
                                  (long)(wait_ns % 1000000000ull)};
    const struct timespec tick = {0, TICK_NS};
    for (;;) {
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, draining && TICK_NS < (long)wait_ns ? &tick : &idle);
        if (sig == -1 && errno != EAGAIN && errno != EINTR)
            break;
        uint64_t now = mono_ns();
        watchdog_tick(&wd, r, now);
        if (now >= next_status) {
            notify_status(r, draining ? "draining" : "serving");
            next_status = now + STATUS_NS;
        }
        if (sig == SIGHUP) {
            struct config **nc = realloc(confs, (n_confs + 1) * sizeof(*confs));
            struct config *next = calloc(1, sizeof(*next));
            if (nc != NULL)
                confs = nc;
            if (nc == NULL || next == NULL) {
                free(next);
                log_error("event=reload_failed msg=\"out of memory\"");
                continue;
            }
            sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                       (unsigned long long)(mono_ns() / 1000u));
            log_info("event=reload_start config=%s", cli.file ? cli.file : "none");
            int e = build_config(next, &cli);
            if (e == 0)
                e = config_validate(next, print_err, NULL);
            if (e > 0) {
                log_error("event=reload_failed errors=%d msg=\"configuration invalid; nothing "
                          "changed\"",
                          e);
                config_free(next);
                free(next);
                sd_notify(0, "READY=1");
                notify_status(r, "serving (last reload failed: configuration invalid)");
                continue;
            }
            confs[n_confs++] = next;
            log_set_level(next->log_level);
            default_state_dir(next, false);
            relay_reload(r, &next->relay);
            sd_notify(0, "READY=1");
            notify_status(r, "serving");
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            if (draining) {
                log_warn("event=drain_abort signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
                break;
            }
            const struct config *cur = confs[n_confs - 1];
            draining = true;
            deadline = mono_ns() + cur->drain_timeout_ns;
            struct relay_stats st;
            relay_stats(r, &st);
            log_info("event=drain_start signal=%s rooms=%lld participants=%lld timeout_ms=%llu",
                     sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)st.rooms,
                     (long long)st.participants,
                     (unsigned long long)(cur->drain_timeout_ns / 1000000u));
            sd_notify(0, "STOPPING=1");
            notify_status(r, "draining");
            relay_drain(r);
        }
        if (draining) {
            struct relay_stats st;
            relay_stats(r, &st);
            if (st.rooms == 0 && st.participants == 0) {
                log_info("event=drain_done reason=rooms_empty");
                break;
            }
            if (mono_ns() >= deadline) {
                log_info("event=drain_done reason=timeout rooms=%lld participants=%lld",
                         (long long)st.rooms, (long long)st.participants);
                break;
            }
        }
    }
    admin_del(adm);
    adm = NULL;
    struct relay_stats st;
    relay_stats(r, &st);
    relay_request_stop(r);
    relay_stop(r);
    log_info("event=exit sessions=%" PRIu64 " joins=%" PRIu64 " media_in=%" PRIu64
             " media_out=%" PRIu64,
             st.sessions_opened, st.joins_ok, st.media_in, st.media_out);
    ret = 0;
out_relay:
    admin_del(adm);
    relay_del(r);
    if (lock_fd >= 0)
        close(lock_fd); /* releases the flock; the file stays (no unlink race) */
out_confs:
    for (size_t i = 0; i < n_confs; i++) {
        config_free(confs[i]);
        free(confs[i]);
    }
    free(confs);
out_names:
    free(cli.ov);
    for (size_t i = 0; i < nkeys; i++)
        free(names[i]);
    free(names);
    return ret;
}
