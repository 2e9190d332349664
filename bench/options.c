#include "bench/options.h"

#include <errno.h>
#include <sched.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/netem.h"
#include "core/cpulist.h"
#include "core/error.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: roost-bench [options]\n"
            "target:\n"
            "  --relay HOST:PORT        the relay (numeric address; [v6]:port)\n"
            "  --relays A,B,...         a cluster (docs/CLUSTER.md): up to 8 relays' QUIC\n"
            "                           addresses; member m of room r joins relay (r + m) mod N\n"
            "  --admins A,B,...         with --relays: each relay's admin HOST:PORT, same order\n"
            "                           (/metrics per relay, trunk frames; as --metrics)\n"
            "  --relay-pids P,Q,...     with --relays: each relay's pid, same order (CPU per\n"
            "                           relay and their sum; as --relay-pid)\n"
            "  --token-key FILE         key file (roost-cli keygen); the bench mints tokens\n"
            "  --ca FILE                trust anchors for the relay certificate\n"
            "  --insecure-pin FILE      dev: accept exactly this PEM certificate\n"
            "  --server-name NAME       SNI / name checked (default localhost)\n"
            "  --relay-pid PID          sample the relay's CPU and RSS from /proc\n"
            "  --ws N                   the last N members of every room join over WebSocket\n"
            "                           (docs/PROTOCOL.md 11) instead of QUIC; --ws SIZE:\n"
            "                           all of them (the join storm stays QUIC)\n"
            "  --ws-relay HOST:PORT     the relay's ws_listen address (TLS with --ca or\n"
            "                           --insecure-pin and --server-name, as QUIC)\n"
            "  --ws-plain               plain ws:// (the relay's ws_plain: loopback only)\n"
            "  --floor                  run against the built-in plain UDP fan-out instead\n"
            "  --floor-workers N        floor threads (default: online CPUs, like the relay)\n"
            "  --floor-cpus LIST        pin floor thread i to the i-th CPU of LIST, e.g. 1 or\n"
            "                           2-3, apart from the bench threads (--cpus); default:\n"
            "                           floor thread i on CPU i (unpinned with --no-pin)\n"
            "workload:\n"
            "  --rooms R                rooms (default 20)\n"
            "  --size S                 participants per room (default 5)\n"
            "  --speakers K             speakers per room (default: all)\n"
            "  --duration D             measurement window, e.g. 10s, 500ms (default 10s)\n"
            "  --frame-ms F             Opus frame: 2.5 5 10 20 40 60 (default 20)\n"
            "  --bitrate B              Opus bitrate, e.g. 32k (default 32k)\n"
            "  --audio FILE.wav         16-bit PCM mono 48 kHz source (default: synthetic)\n"
            "  --talk                   talk-spurt model: on/off speech with DTX frames\n"
            "  --send-interval-us N     send slots this far apart instead of one per frame\n"
            "  --phase spread|packed    a room's speakers send interval/speakers apart (spread,\n"
            "                           default) or one after another in a burst (packed)\n"
            "  --threads T              bench threads (default: online CPUs)\n"
            "  --cpus LIST              pin bench threads to these CPUs, e.g. 0,2-3\n"
            "  --no-pin                 do not pin bench threads\n"
            "  --join-rate N            joins per second before the window (default 1000; 0: "
            "no limit)\n"
            "  --join-timeout D         give up when joins take longer (default 60s)\n"
            "  --drain-ms N             keep receiving after the window (default 500)\n"
            "path (emulated in the bench's own endpoint, both modes; docs/BENCHMARKS.md):\n"
            "  --rtt D                  added round trip, e.g. 30ms: every datagram waits\n"
            "                           rtt/2 each way in a timing wheel (default 0: loopback)\n"
            "  --jitter D               each one-way delay is rtt/2 +- uniform(D), never\n"
            "                           reordering a connection's datagrams (default 0)\n"
            "  --loss PCT               drop this share of datagrams each way (default 0;\n"
            "                           counts against the loss SLO)\n"
            "  --path-seed N            seed of the loss and jitter draws (default 1)\n"
            "  latency is reported net of the path's nominal delay (the rtt)\n"
            "modes:\n"
            "  (default)                steady load for the duration\n"
            "  --ramp                   step the number of rooms up until the SLO fails\n"
            "  --ramp-step N            rooms added per step (default: --rooms)\n"
            "  --ramp-max N             stop at this many rooms (default 100000)\n"
            "  --slo-p99 MS             latency SLO, one-way p99 (default 5), every run\n"
            "  --slo-loss PCT           loss SLO (default 0.1), every run\n"
            "  --join-storm N           N joins/s of extra idle participants during the window\n"
            "output:\n"
            "  --json FILE              every figure, the command, machine and server\n"
            "  --metrics HOST:PORT      the relay's admin endpoint: read /metrics before and\n"
            "                           after the window for the per-frame packet counts\n"
            "  --quiet                  no summary table\n"
            "  -h, --help\n");
    fputs("verdict and exit code (docs/BENCH.md):\n"
          "  0 OK            the relay met the SLO and the bench kept its schedule\n"
          "  1 FAIL          the relay's fault: a join rejected or timed out, a connection\n"
          "                  closed by the relay, the relay gone, or the SLO broken while\n"
          "                  the bench kept its schedule\n"
          "  2 INCONCLUSIVE  the bench's fault: send schedule not kept, a bench thread\n"
          "                  saturated, or a broken SLO explained by the machine stalling it\n"
          "  3               error: the bench could not run (key file, audio, set-up, I/O)\n"
          "  64              usage error\n"
          "  --ramp: 0 the relay's limit was found (or --ramp-max reached), 1 the first\n"
          "  step already failed by the relay's fault, 2 a step was INCONCLUSIVE first (the\n"
          "  capacity is only a lower bound)\n",
          f);
}

static int parse_duration_s(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0))
        return ROOST_EINVAL;
    if (*end == '\0' || strcmp(end, "s") == 0)
        *out = v;
    else if (strcmp(end, "ms") == 0)
        *out = v / 1000;
    else if (strcmp(end, "m") == 0)
        *out = v * 60;
    else
        return ROOST_EINVAL;
    return 0;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return ROOST_EINVAL;
    *out = v;
    return 0;
}

/* "32k", "32000", "0.5M" */
static int parse_bitrate(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s)
        return ROOST_EINVAL;
    if (*end == 'k' || *end == 'K') {
        v *= 1000;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        v *= 1000000;
        end++;
    }
    if (*end != '\0' || !(v >= 1 && v <= 10e6))
        return ROOST_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/* "N" or "N/s" */
static int parse_rate(const char *s, double *out)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    size_t n = strlen(buf);
    if (n > 2 && strcmp(buf + n - 2, "/s") == 0)
        buf[n - 2] = '\0';
    return parse_num(buf, 0, 1e7, out);
}

static int parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon;
    size_t hl;
    const char *h = s;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return ROOST_EINVAL;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return ROOST_EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= cap)
        return ROOST_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    double p;
    if (parse_num(colon + 1, 1, 65535, &p) != 0)
        return ROOST_EINVAL;
    *port = (uint16_t)p;
    return 0;
}

/* Splits a comma-separated list into at most max items of at most cap - 1
 * bytes each, calling item(i, text) for each; returns the count, or -1
 * (empty item, too many, too long, or item refused). */
static int split_list(const char *s, unsigned max, size_t cap,
                      int (*item)(struct opts *o, unsigned i, const char *text), struct opts *o)
{
    unsigned n = 0;
    const char *p = s;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c != NULL ? (size_t)(c - p) : strlen(p);
        char buf[128];
        if (len == 0 || len >= cap || len >= sizeof(buf) || n >= max)
            return -1;
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (item(o, n, buf) != 0)
            return -1;
        n++;
        if (c == NULL)
            return (int)n;
        p = c + 1;
    }
}

static int relay_item(struct opts *o, unsigned i, const char *t)
{
    return parse_hostport(t, o->relay_hosts[i], sizeof(o->relay_hosts[i]), &o->relay_ports[i]);
}

static int admin_item(struct opts *o, unsigned i, const char *t)
{
    uint16_t port;
    char host[64];
    if (parse_hostport(t, host, sizeof(host), &port) != 0)
        return -1;
    snprintf(o->admins[i], sizeof(o->admins[i]), "%s", t);
    return 0;
}

static int pid_item(struct opts *o, unsigned i, const char *t)
{
    double v;
    if (parse_num(t, 1, 1 << 30, &v) != 0)
        return -1;
    o->relay_pids[i] = (int)v;
    return 0;
}

/* The combinations --relays refuses; NULL when o is fine. */
static const char *relays_check(const struct opts *o, bool metrics)
{
    if (o->n_relays == 0) {
        if (o->n_admins > 0)
            return "--admins goes with --relays (one relay: --metrics)";
        if (o->n_relay_pids > 0)
            return "--relay-pids goes with --relays (one relay: --relay-pid)";
        return NULL;
    }
    if (o->have_relay)
        return "give --relay (one relay) or --relays (a cluster), not both";
    if (o->floor)
        return "--relays needs relays, not --floor";
    if (o->ws > 0)
        return "--relays does not take --ws (WebSocket participants join one address)";
    if (metrics)
        return "with --relays, give --admins (one admin HOST:PORT per relay), not --metrics";
    if (o->relay_pid > 0)
        return "with --relays, give --relay-pids (one pid per relay), not --relay-pid";
    for (unsigned i = 0; i < o->n_relays; i++)
        for (unsigned j = 0; j < i; j++)
            if (o->relay_ports[i] == o->relay_ports[j] &&
                strcmp(o->relay_hosts[i], o->relay_hosts[j]) == 0)
                return "--relays lists one relay twice";
    if (o->n_admins > 0 && o->n_admins != o->n_relays)
        return "--admins must list one admin address per relay of --relays, in the same order";
    if (o->n_relay_pids > 0 && o->n_relay_pids != o->n_relays)
        return "--relay-pids must list one pid per relay of --relays, in the same order";
    /* A pid or an admin twice would count that relay's CPU or counters
     * twice. */
    for (unsigned i = 0; i < o->n_relay_pids; i++)
        for (unsigned j = 0; j < i; j++)
            if (o->relay_pids[i] == o->relay_pids[j])
                return "--relay-pids lists one pid twice";
    for (unsigned i = 0; i < o->n_admins; i++)
        for (unsigned j = 0; j < i; j++)
            if (strcmp(o->admins[i], o->admins[j]) == 0)
                return "--admins lists one admin address twice";
    return NULL;
}

enum {
    O_RELAY = 256,
    O_ROOMS,
    O_SIZE,
    O_SPEAKERS,
    O_DURATION,
    O_FRAME,
    O_BITRATE,
    O_THREADS,
    O_JOIN_RATE,
    O_TOKEN_KEY,
    O_CA,
    O_PIN,
    O_SERVER_NAME,
    O_AUDIO,
    O_TALK,
    O_RELAY_PID,
    O_JSON,
    O_RAMP,
    O_RAMP_STEP,
    O_RAMP_MAX,
    O_SLO_P99,
    O_SLO_LOSS,
    O_STORM,
    O_FLOOR,
    O_FLOOR_WORKERS,
    O_FLOOR_CPUS,
    O_SEND_INTERVAL,
    O_PHASE,
    O_DRAIN,
    O_JOIN_TIMEOUT,
    O_CPUS,
    O_NO_PIN,
    O_QUIET,
    O_RTT,
    O_JITTER,
    O_LOSS,
    O_PATH_SEED,
    O_METRICS,
    O_WS,
    O_WS_RELAY,
    O_WS_PLAIN,
    O_RELAYS,
    O_ADMINS,
    O_RELAY_PIDS,
};

static const struct option long_opts[] = {
    {"relay", required_argument, NULL, O_RELAY},
    {"rooms", required_argument, NULL, O_ROOMS},
    {"size", required_argument, NULL, O_SIZE},
    {"speakers", required_argument, NULL, O_SPEAKERS},
    {"duration", required_argument, NULL, O_DURATION},
    {"frame-ms", required_argument, NULL, O_FRAME},
    {"bitrate", required_argument, NULL, O_BITRATE},
    {"threads", required_argument, NULL, O_THREADS},
    {"join-rate", required_argument, NULL, O_JOIN_RATE},
    {"token-key", required_argument, NULL, O_TOKEN_KEY},
    {"ca", required_argument, NULL, O_CA},
    {"insecure-pin", required_argument, NULL, O_PIN},
    {"server-name", required_argument, NULL, O_SERVER_NAME},
    {"audio", required_argument, NULL, O_AUDIO},
    {"talk", no_argument, NULL, O_TALK},
    {"relay-pid", required_argument, NULL, O_RELAY_PID},
    {"json", required_argument, NULL, O_JSON},
    {"ramp", no_argument, NULL, O_RAMP},
    {"ramp-step", required_argument, NULL, O_RAMP_STEP},
    {"ramp-max", required_argument, NULL, O_RAMP_MAX},
    {"slo-p99", required_argument, NULL, O_SLO_P99},
    {"slo-loss", required_argument, NULL, O_SLO_LOSS},
    {"join-storm", required_argument, NULL, O_STORM},
    {"floor", no_argument, NULL, O_FLOOR},
    {"floor-workers", required_argument, NULL, O_FLOOR_WORKERS},
    {"floor-cpus", required_argument, NULL, O_FLOOR_CPUS},
    {"send-interval-us", required_argument, NULL, O_SEND_INTERVAL},
    {"phase", required_argument, NULL, O_PHASE},
    {"drain-ms", required_argument, NULL, O_DRAIN},
    {"join-timeout", required_argument, NULL, O_JOIN_TIMEOUT},
    {"cpus", required_argument, NULL, O_CPUS},
    {"no-pin", no_argument, NULL, O_NO_PIN},
    {"quiet", no_argument, NULL, O_QUIET},
    {"rtt", required_argument, NULL, O_RTT},
    {"jitter", required_argument, NULL, O_JITTER},
    {"loss", required_argument, NULL, O_LOSS},
    {"path-seed", required_argument, NULL, O_PATH_SEED},
    {"metrics", required_argument, NULL, O_METRICS},
    {"ws", required_argument, NULL, O_WS},
    {"ws-relay", required_argument, NULL, O_WS_RELAY},
    {"ws-plain", no_argument, NULL, O_WS_PLAIN},
    {"relays", required_argument, NULL, O_RELAYS},
    {"admins", required_argument, NULL, O_ADMINS},
    {"relay-pids", required_argument, NULL, O_RELAY_PIDS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* --floor-cpus names CPUs this process may run on, and only with --floor:
 * pthread_setaffinity_np would fail silently later and leave the floor
 * where the scheduler puts it, which is what the option is there to stop. */
static const char *floor_cpus_check(const struct opts *o)
{
    static char why[160];
    if (o->n_floor_cpus == 0)
        return NULL;
    if (!o->floor)
        return "--floor-cpus needs --floor";
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return NULL; /* unknown: let the pinning try */
    for (unsigned i = 0; i < o->n_floor_cpus; i++) {
        if (!CPU_ISSET(o->floor_cpus[i], &allowed)) {
            snprintf(why, sizeof(why),
                     "--floor-cpus '%s': CPU %d is not one this process may run on (it may use %d)",
                     o->floor_cpus_arg, o->floor_cpus[i], CPU_COUNT(&allowed));
            return why;
        }
    }
    return NULL;
}

int options_parse(int argc, char **argv, struct opts *o)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (struct opts){
        .rooms = 20,
        .size = 5,
        .duration_s = 10,
        .frame_ms = 20,
        .drain_ms = 500,
        .join_timeout_s = 60,
        .bitrate = 32000,
        .threads = ncpu > 0 ? (unsigned)ncpu : 1,
        .join_rate = 1000,
        .slo_p99_ms = 5,
        .slo_loss_pct = 0.1,
        .ramp_max = 100000,
        .floor_workers = ncpu > 0 ? (unsigned)ncpu : 1,
        .path_seed = 1,
    };
    int opt;
    double v;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case O_RELAY:
            bad = parse_hostport(optarg, o->host, sizeof(o->host), &o->port);
            o->have_relay = true;
            break;
        case O_ROOMS:
            bad = parse_num(optarg, 1, 1e6, &v);
            o->rooms = (uint32_t)v;
            break;
        case O_SIZE:
            bad = parse_num(optarg, 2, 100000, &v);
            o->size = (uint32_t)v;
            break;
        case O_SPEAKERS:
            bad = parse_num(optarg, 0, 100000, &v);
            o->speakers = (uint32_t)v;
            o->speakers_set = true;
            break;
        case O_DURATION:
            bad = parse_duration_s(optarg, &o->duration_s) || o->duration_s <= 0;
            break;
        case O_FRAME:
            bad = parse_num(optarg, 2.5, 60, &o->frame_ms);
            break;
        case O_BITRATE:
            bad = parse_bitrate(optarg, &o->bitrate);
            break;
        case O_THREADS:
            bad = parse_num(optarg, 1, 1024, &v);
            o->threads = (unsigned)v;
            break;
        case O_JOIN_RATE:
            bad = parse_rate(optarg, &o->join_rate);
            break;
        case O_TOKEN_KEY:
            o->token_key = optarg;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_PIN:
            o->pin = optarg;
            break;
        case O_SERVER_NAME:
            o->server_name = optarg;
            break;
        case O_AUDIO:
            o->audio = optarg;
            break;
        case O_TALK:
            o->talk = true;
            break;
        case O_RELAY_PID:
            bad = parse_num(optarg, 1, 1 << 30, &v);
            o->relay_pid = (int)v;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_RAMP:
            o->ramp = true;
            break;
        case O_RAMP_STEP:
            bad = parse_num(optarg, 1, 1e6, &v);
            o->ramp_step = (uint32_t)v;
            break;
        case O_RAMP_MAX:
            bad = parse_num(optarg, 1, 1e6, &v);
            o->ramp_max = (uint32_t)v;
            break;
        case O_SLO_P99:
            bad = parse_num(optarg, 0, 1e6, &o->slo_p99_ms);
            break;
        case O_SLO_LOSS:
            bad = parse_num(optarg, 0, 100, &o->slo_loss_pct);
            break;
        case O_STORM:
            bad = parse_rate(optarg, &o->storm_rate) || o->storm_rate <= 0;
            break;
        case O_FLOOR:
            o->floor = true;
            break;
        case O_FLOOR_WORKERS:
            bad = parse_num(optarg, 1, 1024, &v);
            o->floor_workers = (unsigned)v;
            break;
        case O_FLOOR_CPUS:
            bad = cpulist_parse(optarg, o->floor_cpus, MAX_CPUS, &o->n_floor_cpus);
            o->floor_cpus_arg = optarg;
            break;
        case O_SEND_INTERVAL:
            bad = parse_num(optarg, 1, 1e7, &o->send_interval_us);
            break;
        case O_PHASE:
            bad = strcmp(optarg, "spread") != 0 && strcmp(optarg, "packed") != 0;
            o->phase_packed = strcmp(optarg, "packed") == 0;
            break;
        case O_DRAIN:
            bad = parse_num(optarg, 0, 60000, &o->drain_ms);
            break;
        case O_JOIN_TIMEOUT:
            bad = parse_duration_s(optarg, &o->join_timeout_s) || o->join_timeout_s <= 0;
            break;
        case O_CPUS:
            bad = cpulist_parse(optarg, o->cpus, MAX_CPUS, &o->n_cpus);
            break;
        case O_NO_PIN:
            o->no_pin = true;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_RTT:
            bad = parse_duration_s(optarg, &o->rtt_s) || o->rtt_s * 1e9 > NETEM_MAX_RTT_NS;
            break;
        case O_JITTER:
            bad = parse_duration_s(optarg, &o->jitter_s) || o->jitter_s * 1e9 > NETEM_MAX_JITTER_NS;
            break;
        case O_LOSS:
            bad = parse_num(optarg, 0, 100, &o->loss_pct);
            break;
        case O_PATH_SEED:
            bad = parse_num(optarg, 0, 1e15, &o->path_seed);
            break;
        case O_METRICS:
            o->metrics = optarg;
            break;
        case O_WS:
            bad = parse_num(optarg, 0, 100000, &v);
            o->ws = (uint32_t)v;
            break;
        case O_WS_RELAY:
            bad = parse_hostport(optarg, o->ws_host, sizeof(o->ws_host), &o->ws_port);
            o->have_ws_relay = true;
            break;
        case O_WS_PLAIN:
            o->ws_plain = true;
            break;
        case O_RELAYS: {
            int n = split_list(optarg, MAX_RELAYS, sizeof(o->relay_hosts[0]) + 8, relay_item, o);
            bad = n < 1;
            o->n_relays = n > 0 ? (unsigned)n : 0;
            break;
        }
        case O_ADMINS: {
            int n = split_list(optarg, MAX_RELAYS, sizeof(o->admins[0]), admin_item, o);
            bad = n < 1;
            o->n_admins = n > 0 ? (unsigned)n : 0;
            break;
        }
        case O_RELAY_PIDS: {
            int n = split_list(optarg, MAX_RELAYS, 16, pid_item, o);
            bad = n < 1;
            o->n_relay_pids = n > 0 ? (unsigned)n : 0;
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr, "roost-bench: invalid value for --%s: '%s'\n",
                    long_opts[opt - O_RELAY].name, optarg);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "roost-bench: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (!o->speakers_set)
        o->speakers = o->size;
    if (o->speakers > o->size) {
        fprintf(stderr, "roost-bench: --speakers %u is more than --size %u\n", o->speakers,
                o->size);
        return EXIT_USAGE;
    }
    const char *rwhy = relays_check(o, o->metrics != NULL);
    if (rwhy != NULL) {
        fprintf(stderr, "roost-bench: %s\n", rwhy);
        return EXIT_USAGE;
    }
    const char *fwhy = floor_cpus_check(o);
    if (fwhy != NULL) {
        fprintf(stderr, "roost-bench: %s\n", fwhy);
        return EXIT_USAGE;
    }
    if (o->ws > 0) {
        const char *why = NULL;
        if (o->floor)
            why = "--ws needs the relay, not --floor";
        else if (o->ws > o->size)
            why = "--ws is more than --size";
        else if (!o->have_ws_relay)
            why = "--ws needs --ws-relay HOST:PORT (the relay's ws_listen)";
        else if (o->rtt_s > 0 || o->jitter_s > 0 || o->loss_pct > 0)
            why = "--ws cannot use the emulated path (--rtt, --jitter, --loss: UDP only)";
        if (why != NULL) {
            fprintf(stderr, "roost-bench: %s\n", why);
            return EXIT_USAGE;
        }
        /* Every participant over WebSocket: no QUIC address needed, unless
         * a join storm (QUIC) comes too. */
        if (o->ws == o->size && !o->have_relay && o->storm_rate == 0) {
            snprintf(o->host, sizeof(o->host), "%s", o->ws_host);
            o->port = o->ws_port;
            o->have_relay = true;
        }
    }
    if (!o->floor) {
        if ((!o->have_relay && o->n_relays == 0) || o->token_key == NULL ||
            (o->ca == NULL && o->pin == NULL)) {
            fprintf(stderr, "roost-bench: --relay (or --relays, or --ws-relay with --ws SIZE), "
                            "--token-key and --ca (or --insecure-pin) are required (or --floor)\n");
            return EXIT_USAGE;
        }
    }
    if (o->ramp_step == 0)
        o->ramp_step = o->rooms;
    return 0;
}

/* The exact command line, shell-quoted where needed. */
char *options_command_line(int argc, char **argv)
{
    size_t cap = 1;
    for (int i = 0; i < argc; i++)
        cap += strlen(argv[i]) * 4 + 3;
    char *s = malloc(cap);
    if (s == NULL)
        return NULL;
    size_t n = 0;
    for (int i = 0; i < argc; i++) {
        if (i)
            s[n++] = ' ';
        const char *a = argv[i];
        bool plain = *a != '\0';
        for (const char *p = a; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%",
                        *p))
                plain = false;
        if (plain) {
            memcpy(s + n, a, strlen(a));
            n += strlen(a);
            continue;
        }
        s[n++] = '\'';
        for (const char *p = a; *p; p++) {
            if (*p == '\'') {
                memcpy(s + n, "'\\''", 4);
                n += 4;
            } else {
                s[n++] = *p;
            }
        }
        s[n++] = '\'';
    }
    s[n] = '\0';
    return s;
}
