/* roost-relay: command line, signals, start-up banner. The relay itself is
 * relay/relay.c. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/worker.h"
#include "relay/relay.h"

#define MAX_CPUS WORKER_MAX

static void usage(FILE *f)
{
    fprintf(f,
            "usage: roost-relay [options]\n"
            "  --listen ADDR            numeric IPv4/IPv6 address (default 127.0.0.1)\n"
            "  --port N                 UDP port (default 4433)\n"
            "  --workers N              worker threads (default: one per allowed CPU)\n"
            "  --cpus LIST              pin workers to these CPUs, e.g. 0,2-5\n"
            "  --cert FILE              PEM certificate chain (required)\n"
            "  --key FILE               PEM private key (required)\n"
            "  --token-keys FILE        join-token key file (required unless --insecure-no-auth)\n"
            "  --state-dir DIR          keeps the stateless-reset/Retry secret across restarts\n"
            "  --log-level LEVEL        error|warn|info|debug (default info)\n"
            "  --max-rooms N            rooms on this server (default 10000)\n"
            "  --max-members N          participants per room (default 500)\n"
            "  --max-conns N            connections per worker (default 100000)\n"
            "  --idle-timeout DUR       e.g. 30s (default 30s)\n"
            "  --handshake-timeout DUR  handshake, HELLO and JOIN deadline (default 5s)\n"
            "  --force-retry            validate every client address with Retry\n"
            "  --insecure-no-auth       DEV ONLY: accept every JOIN without a token\n"
            "  -h, --help\n"
            "Durations take a unit: ms, s, m, h (e.g. 250ms, 30s).\n");
}

/* "30s", "250ms", "2m", "1h"; a bare number is seconds. */
static int parse_duration_ns(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return ROOST_EINVAL;
    uint64_t mul;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000000000ull;
    else if (strcmp(end, "ms") == 0)
        mul = 1000000ull;
    else if (strcmp(end, "m") == 0)
        mul = 60ull * 1000000000ull;
    else if (strcmp(end, "h") == 0)
        mul = 3600ull * 1000000000ull;
    else
        return ROOST_EINVAL;
    if (v > UINT64_MAX / mul)
        return ROOST_ERANGE;
    *out = v * mul;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > max)
        return ROOST_EINVAL;
    *out = v;
    return 0;
}

/* "0,2-5" */
static int parse_cpus(const char *s, int *cpus, unsigned *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10);
        if (end == p || a < 0 || a >= CPU_SETSIZE)
            return ROOST_EINVAL;
        long b = a;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1 || b < a || b >= CPU_SETSIZE)
                return ROOST_EINVAL;
            p = end;
        }
        for (long c = a; c <= b; c++) {
            if (*n >= MAX_CPUS)
                return ROOST_ERANGE;
            cpus[(*n)++] = (int)c;
        }
        if (*p == ',')
            p++;
        else if (*p != '\0')
            return ROOST_EINVAL;
    }
    return *n ? 0 : ROOST_EINVAL;
}

enum {
    OPT_LISTEN = 256,
    OPT_PORT,
    OPT_WORKERS,
    OPT_CPUS,
    OPT_CERT,
    OPT_KEY,
    OPT_TOKEN_KEYS,
    OPT_STATE_DIR,
    OPT_LOG_LEVEL,
    OPT_MAX_ROOMS,
    OPT_MAX_MEMBERS,
    OPT_MAX_CONNS,
    OPT_IDLE,
    OPT_HANDSHAKE,
    OPT_FORCE_RETRY,
    OPT_NO_AUTH,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"port", required_argument, NULL, OPT_PORT},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"token-keys", required_argument, NULL, OPT_TOKEN_KEYS},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"max-rooms", required_argument, NULL, OPT_MAX_ROOMS},
    {"max-members", required_argument, NULL, OPT_MAX_MEMBERS},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE},
    {"force-retry", no_argument, NULL, OPT_FORCE_RETRY},
    {"insecure-no-auth", no_argument, NULL, OPT_NO_AUTH},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    struct relay_config cfg = {.addr = "127.0.0.1", .port = 4433};
    int cpus[MAX_CPUS];
    unsigned long v;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case OPT_LISTEN:
            cfg.addr = optarg;
            break;
        case OPT_PORT:
            bad = parse_uint(optarg, 65535, &v) || v == 0;
            cfg.port = (uint16_t)v;
            break;
        case OPT_WORKERS:
            bad = parse_uint(optarg, WORKER_MAX, &v) || v == 0;
            cfg.n_workers = (unsigned)v;
            break;
        case OPT_CPUS:
            bad = parse_cpus(optarg, cpus, &cfg.n_cpus) != 0;
            cfg.cpus = cpus;
            break;
        case OPT_CERT:
            cfg.cert_file = optarg;
            break;
        case OPT_KEY:
            cfg.key_file = optarg;
            break;
        case OPT_TOKEN_KEYS:
            cfg.token_key_file = optarg;
            break;
        case OPT_STATE_DIR:
            cfg.state_dir = optarg;
            break;
        case OPT_LOG_LEVEL: {
            enum log_level lvl;
            bad = log_parse_level(optarg, &lvl) != 0;
            if (!bad)
                log_set_level(lvl);
            break;
        }
        case OPT_MAX_ROOMS:
            bad = parse_uint(optarg, UINT32_MAX, &v) || v == 0;
            cfg.max_rooms = (uint32_t)v;
            break;
        case OPT_MAX_MEMBERS:
            bad = parse_uint(optarg, UINT32_MAX, &v) || v == 0;
            cfg.max_members = (uint32_t)v;
            break;
        case OPT_MAX_CONNS:
            bad = parse_uint(optarg, UINT32_MAX, &v) || v == 0;
            cfg.max_conns_per_worker = (unsigned)v;
            break;
        case OPT_IDLE:
            bad = parse_duration_ns(optarg, &cfg.idle_timeout_ns) != 0;
            break;
        case OPT_HANDSHAKE:
            bad = parse_duration_ns(optarg, &cfg.handshake_timeout_ns) != 0;
            break;
        case OPT_FORCE_RETRY:
            cfg.force_retry = true;
            break;
        case OPT_NO_AUTH:
            cfg.insecure_no_auth = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "roost-relay: invalid value for --%s: '%s'\n",
                    long_opts[opt - OPT_LISTEN].name, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "roost-relay: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (cfg.cert_file == NULL || cfg.key_file == NULL) {
        fprintf(stderr, "roost-relay: --cert and --key are required\n");
        usage(stderr);
        return 2;
    }

    /* Workers inherit this mask; the main thread takes the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct relay *r = NULL;
    int rc = relay_new(&r, &cfg);
    if (rc != 0) {
        fprintf(stderr, "roost-relay: cannot start: %s\n", roost_strerror(rc));
        return 1;
    }
    rc = relay_start(r);
    if (rc != 0) {
        fprintf(stderr, "roost-relay: cannot start workers: %s\n", roost_strerror(rc));
        relay_del(r);
        return 1;
    }
    log_info("event=start version=0.1 listen=%s port=%u workers=%u max_rooms=%u "
             "max_members=%u auth=%s",
             cfg.addr, relay_port(r), relay_workers(r), cfg.max_rooms ? cfg.max_rooms : 10000,
             cfg.max_members ? cfg.max_members : 500, cfg.insecure_no_auth ? "DISABLED" : "token");

    int sig = 0;
    do {
        if (sigwait(&set, &sig) != 0)
            break;
    } while (sig == SIGPIPE);
    log_info("event=stop signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* Read while the workers still hold their shards (values may lag). */
    struct relay_stats st;
    relay_stats(r, &st);
    relay_request_stop(r);
    relay_stop(r);
    log_info("event=exit sessions=%" PRIu64 " joins=%" PRIu64 " media_in=%" PRIu64
             " media_out=%" PRIu64,
             st.sessions_opened, st.joins_ok, st.media_in, st.media_out);
    relay_del(r);
    return 0;
}
