/* roost-relay: configuration (file + command line), signals (drain on
 * SIGTERM, reload on SIGHUP), the admin endpoint and the start-up banner.
 * The relay itself is relay/relay.c; docs/OPERATIONS.md says how to run it. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/worker.h"
#include "relay/admin.h"
#include "relay/config.h"
#include "relay/relay.h"

#define RELAY_VERSION "0.1"
#define OPT_KEY_BASE 1000
#define OPT_CHECK 900
#define OPT_VERSION 901
#define TICK_NS 100000000l /* signal wait granularity while draining */

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
    log_info("event=start version=%s listen=%s:%u workers=%u cpus=%s online_cpus=%ld "
             "max_rooms=%u max_members=%u max_conns_per_worker=%u max_half_open=%u "
             "handshake_rate=%u drain_timeout_ms=%llu admin=%s auth=%s config=%s",
             RELAY_VERSION, c->relay.addr, relay_port(r), n, cpus, sysconf(_SC_NPROCESSORS_ONLN),
             lim.max_rooms, lim.max_members, lim.max_conns_per_worker, lim.max_half_open,
             lim.handshake_rate, (unsigned long long)(c->drain_timeout_ns / 1000000u), admin,
             c->relay.insecure_no_auth ? "DISABLED" : "token", c->file ? c->file : "none");
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

    bool draining = false;
    uint64_t deadline = 0;
    const struct timespec tick = {0, TICK_NS};
    for (;;) {
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, draining ? &tick : NULL);
        if (sig == -1 && errno != EAGAIN && errno != EINTR)
            break;
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
                continue;
            }
            confs[n_confs++] = next;
            log_set_level(next->log_level);
            relay_reload(r, &next->relay);
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
