/* roost-bench: command line, modes (steady, --ramp, --join-storm, --floor),
 * summary and JSON. The load itself is bench/load.c; the floor forwarder
 * bench/floor.c; the output bench/report.c. docs/BENCH.md is the guide. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/audio.h"
#include "bench/floor.h"
#include "bench/load.h"
#include "bench/netem.h"
#include "bench/report.h"
#include "bench/verdict.h"
#include "core/cpulist.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "proto/media.h"

#define BENCH_VERSION "0.1"
/* Exit codes besides the verdicts (enum load_verdict: 0 OK, 1 FAIL, 2
 * INCONCLUSIVE); docs/BENCH.md. */
#define EXIT_ERROR 3  /* the bench could not run */
#define EXIT_USAGE 64 /* bad command line (sysexits EX_USAGE) */
#define MAX_CPUS 1024
/* Payload room in a datagram: the relay's WELCOME promises 1200 bytes
 * client -> relay, and prepends 4 on the way out. */
#define FRAME_CAP (1200 - MEDIA_C2R_HDR_LEN - LOAD_PAYLOAD_HDR - 16)

struct opts {
    char host[64];
    uint16_t port;
    bool have_relay;
    uint32_t rooms, size, speakers;
    bool speakers_set;
    double duration_s, frame_ms, drain_ms, join_timeout_s;
    uint32_t bitrate;
    unsigned threads;
    double join_rate, storm_rate;
    const char *token_key, *ca, *pin, *server_name, *audio, *json;
    bool talk;
    int relay_pid;
    bool ramp, floor, no_pin, quiet;
    uint32_t ramp_step, ramp_max;
    double slo_p99_ms, slo_loss_pct;
    unsigned floor_workers;
    double send_interval_us;
    int cpus[MAX_CPUS];
    unsigned n_cpus;
    double rtt_s, jitter_s, loss_pct;
    double path_seed;
    const char *metrics;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: roost-bench [options]\n"
               "target:\n"
               "  --relay HOST:PORT        the relay (numeric address; [v6]:port)\n"
               "  --token-key FILE         key file (roost-cli keygen); the bench mints tokens\n"
               "  --ca FILE                trust anchors for the relay certificate\n"
               "  --insecure-pin FILE      dev: accept exactly this PEM certificate\n"
               "  --server-name NAME       SNI / name checked (default localhost)\n"
               "  --relay-pid PID          sample the relay's CPU and RSS from /proc\n"
               "  --floor                  run against the built-in plain UDP fan-out instead\n"
               "  --floor-workers N        floor threads (default: online CPUs, like the relay)\n"
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
    O_SEND_INTERVAL,
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
    {"send-interval-us", required_argument, NULL, O_SEND_INTERVAL},
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
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_args(int argc, char **argv, struct opts *o)
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
        case O_SEND_INTERVAL:
            bad = parse_num(optarg, 1, 1e7, &o->send_interval_us);
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
    if (!o->floor) {
        if (!o->have_relay || o->token_key == NULL || (o->ca == NULL && o->pin == NULL)) {
            fprintf(stderr, "roost-bench: --relay, --token-key and --ca (or --insecure-pin) are "
                            "required (or --floor)\n");
            return EXIT_USAGE;
        }
    }
    if (o->ramp_step == 0)
        o->ramp_step = o->rooms;
    return 0;
}

/* The exact command line, shell-quoted where needed. */
static char *command_line(int argc, char **argv)
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

/* The relay's own command line (its configuration), from /proc. */
static void proc_cmdline(int pid, char *out, size_t cap)
{
    char path[64];
    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    for (size_t i = 0; i + 1 < n; i++)
        if (out[i] == '\0')
            out[i] = ' ';
    out[n] = '\0';
}

struct step {
    uint32_t rooms;
    struct load_config cfg;
    struct load_result res;
    bool pass;
    const char *why; /* failing criterion */
};

static int run_one(const struct opts *o, struct load_config *cfg, uint32_t rooms, unsigned step,
                   struct load_result *res, char *prefix, size_t prefix_cap)
{
    char err[256];
    struct floor *fl = NULL;
    cfg->rooms = rooms;
    snprintf(prefix, prefix_cap, "bench-%d-%u-", (int)getpid(), step);
    cfg->room_prefix = prefix;
    if (o->floor) {
        uint32_t storm_rooms =
            (uint32_t)(o->storm_rate * o->duration_s) / o->size + 1; /* room for the storm */
        struct floor_config fc = {
            .workers = o->floor_workers,
            .rooms = rooms + storm_rooms,
            .size = o->size,
            .pin = !o->no_pin,
        };
        int rc = floor_new(&fl, &fc);
        if (rc != 0) {
            fprintf(stderr, "roost-bench: floor: %s\n", roost_strerror(rc));
            return rc;
        }
        cfg->floor = fl;
        cfg->host = "127.0.0.1";
        cfg->port = floor_port(fl);
    }
    int rc = load_run(cfg, res, err, sizeof(err));
    floor_del(fl);
    cfg->floor = NULL;
    if (rc != 0)
        fprintf(stderr, "roost-bench: %s\n", err);
    return rc;
}

static void header(FILE *f, const struct opts *o, const struct load_config *cfg,
                   const struct audio_table *a, const struct machine_info *m, uint32_t rooms)
{
    char where[96];
    if (o->floor)
        snprintf(where, sizeof(where), "floor (in-process, %u workers)", o->floor_workers);
    else
        snprintf(where, sizeof(where), "relay %s:%u", cfg->host, cfg->port);
    fprintf(f,
            "roost-bench %s: %s  rooms=%u size=%u speakers=%u duration=%.1fs frame=%.1fms "
            "bitrate=%u threads=%u%s%s\n",
            BENCH_VERSION, where, rooms, o->size, o->speakers, o->duration_s, o->frame_ms,
            o->bitrate, o->threads, o->talk ? " talk-spurts" : "",
            o->storm_rate > 0 ? " join-storm" : "");
    fprintf(f, "  machine: %ld cores, %s, %s; audio %s (%u frames, mean %.0f bytes)\n", m->cores,
            m->cpu_model, m->kernel, a->source, a->n, a->mean_len);
    if (netem_active(&cfg->path))
        fprintf(f, "  path: emulated, rtt %.1f ms, jitter %.1f ms, loss %.3g%% each way\n",
                (double)cfg->path.rtt_ns / 1e6, (double)cfg->path.jitter_ns / 1e6,
                cfg->path.loss * 100);
    else
        fprintf(f, "  path: loopback as is (--rtt 0)\n");
}

int main(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    int ret = EXIT_ERROR;
    struct token_keyring keys;
    struct audio_table audio = {0};
    struct step *steps = NULL;
    unsigned n_steps = 0;
    char *cmd = command_line(argc, argv);
    char err[512];
    token_keyring_init(&keys);
    if (!o.floor) {
        rc = keyfile_load(o.token_key, &keys, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "roost-bench: %s\n", err);
            goto out;
        }
    }
    rc = audio_table_build(&audio, o.audio, 10.0, (uint32_t)(o.frame_ms * 1000 + 0.5), o.bitrate,
                           FRAME_CAP, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "roost-bench: audio: %s\n", err);
        goto out;
    }
    struct machine_info mach;
    report_machine(&mach);
    uint64_t frame_ns = (uint64_t)(o.frame_ms * 1e6 + 0.5);
    struct load_config base = {
        .mode = o.floor ? LOAD_FLOOR : LOAD_QUIC,
        .host = o.host,
        .port = o.port,
        .size = o.size,
        .speakers = o.speakers,
        .duration_ns = (uint64_t)(o.duration_s * 1e9),
        .frame_ns = frame_ns,
        .send_interval_ns =
            o.send_interval_us > 0 ? (uint64_t)(o.send_interval_us * 1000) : frame_ns,
        .drain_ns = (uint64_t)(o.drain_ms * 1e6),
        .join_timeout_ns = (uint64_t)(o.join_timeout_s * 1e9),
        .threads = o.threads,
        .cpus = o.n_cpus ? o.cpus : NULL,
        .n_cpus = o.n_cpus,
        .pin = !o.no_pin,
        .join_rate = o.join_rate,
        .storm_rate = o.storm_rate,
        .keys = &keys,
        .ca_file = o.ca,
        .pinned_cert = o.pin,
        .server_name = o.server_name,
        .talk = {.enabled = o.talk},
        .audio = &audio,
        .relay_pid = o.floor ? 0 : o.relay_pid,
        .slo_p99_ns = (uint64_t)(o.slo_p99_ms * 1e6),
        .slo_loss = o.slo_loss_pct / 100,
        .path =
            {
                .rtt_ns = (uint64_t)(o.rtt_s * 1e9 + 0.5),
                .jitter_ns = (uint64_t)(o.jitter_s * 1e9 + 0.5),
                .loss = o.loss_pct / 100,
                .seed = (uint64_t)o.path_seed,
            },
        .metrics_addr = o.floor ? NULL : o.metrics,
    };
    if (o.floor)
        base.host = "127.0.0.1";
    unsigned max_steps = o.ramp ? (o.ramp_max - o.rooms) / o.ramp_step + 1 : 1;
    if (max_steps > 10000)
        max_steps = 10000;
    steps = calloc(max_steps, sizeof(*steps));
    if (steps == NULL)
        goto out;
    char prefix[64];
    int capacity = -1;
    const char *limited_by = "ramp-max";
    for (unsigned s = 0; s < max_steps; s++) {
        struct step *st = &steps[s];
        st->rooms = o.rooms + s * o.ramp_step;
        st->cfg = base;
        if (!o.quiet) {
            if (o.ramp)
                printf("== ramp step %u: %u rooms x %u\n", s + 1, st->rooms, o.size);
            header(stdout, &o, &st->cfg, &audio, &mach, st->rooms);
            fflush(stdout);
        }
        rc = run_one(&o, &st->cfg, st->rooms, s, &st->res, prefix, sizeof(prefix));
        if (rc != 0) {
            load_result_free(&st->res);
            if (s == 0)
                goto out;
            limited_by = "error";
            break;
        }
        n_steps++;
        st->cfg.room_prefix = NULL; /* prefix storage is reused */
        if (!o.quiet) {
            report_summary(stdout, &st->cfg, &st->res);
            fflush(stdout);
        }
        if (!o.ramp)
            break;
        /* Precedence (docs/BENCH.md): a relay fault (join rejected or
         * timed out, connection closed by the relay, relay gone) stops the
         * ramp as the relay's limit even when the bench also had trouble
         * or the SLO broke with it; then the bench's own faults
         * (INCONCLUSIVE: not a limit of the relay); then the SLO. */
        if (st->res.relay_fault)
            st->why = "fail";
        else if (st->res.verdict == LOAD_INCONCLUSIVE)
            st->why = "inconclusive";
        else if (!st->res.slo_p99_met)
            st->why = "slo-p99";
        else if (!st->res.slo_loss_met)
            st->why = "slo-loss";
        st->pass = st->why == NULL;
        if (!o.quiet)
            printf("  ramp: %s\n", st->pass ? "PASS" : st->why);
        if (!st->pass) {
            limited_by = st->why;
            break;
        }
        capacity = (int)s;
    }
    if (o.ramp && !o.quiet) {
        if (capacity >= 0)
            printf("capacity at SLO (p99 <= %.3g ms, loss <= %.3g%%): %u rooms x %u = %u "
                   "participants (stopped by %s)\n",
                   o.slo_p99_ms, o.slo_loss_pct, steps[capacity].rooms, o.size,
                   steps[capacity].rooms * o.size, limited_by);
        else
            printf("capacity at SLO: none (the first step failed: %s)\n", limited_by);
    }
    if (o.json != NULL) {
        FILE *f = fopen(o.json, "w");
        if (f == NULL) {
            fprintf(stderr, "roost-bench: %s: %s\n", o.json, strerror(errno));
            goto out;
        }
        struct jw w;
        jw_init(&w, f);
        jw_obj(&w, NULL);
        jw_str(&w, "tool", "roost-bench");
        jw_str(&w, "version", BENCH_VERSION);
        jw_str(&w, "command", cmd);
        jw_arr(&w, "argv");
        for (int i = 0; i < argc; i++)
            jw_str(&w, NULL, argv[i]);
        jw_arr_end(&w);
        jw_i64(&w, "time_unix", (int64_t)time(NULL));
        report_machine_json(&w, &mach);
        jw_str(&w, "mode", o.ramp ? "ramp" : o.storm_rate > 0 ? "join-storm" : "steady");
        jw_obj(&w, "server");
        jw_str(&w, "kind", o.floor ? "floor" : "relay");
        jw_str(&w, "address", base.host);
        jw_u64(&w, "port", o.floor ? 0 : o.port);
        if (o.floor) {
            jw_str(&w, "version", "roost-bench floor " BENCH_VERSION);
            jw_u64(&w, "workers", o.floor_workers);
            jw_str(&w, "config", "plain UDP fan-out, SO_REUSEPORT, recvmmsg/sendmmsg");
        } else {
            jw_str(&w, "version", n_steps ? steps[0].res.server_name : "");
            jw_u64(&w, "max_datagram", n_steps ? steps[0].res.max_datagram : 0);
            if (o.relay_pid > 0) {
                char cl[4096];
                proc_cmdline(o.relay_pid, cl, sizeof(cl));
                jw_i64(&w, "pid", o.relay_pid);
                jw_str(&w, "config", cl);
            } else {
                jw_str(&w, "config", NULL);
            }
        }
        jw_obj_end(&w);
        jw_obj(&w, "config");
        jw_u64(&w, "rooms", o.rooms);
        jw_u64(&w, "size", o.size);
        jw_u64(&w, "speakers", o.speakers);
        jw_dbl(&w, "duration_s", o.duration_s);
        jw_dbl(&w, "frame_ms", o.frame_ms);
        jw_dbl(&w, "send_interval_us", (double)base.send_interval_ns / 1000);
        jw_u64(&w, "bitrate", o.bitrate);
        jw_u64(&w, "threads", o.threads);
        jw_dbl(&w, "join_rate", o.join_rate);
        jw_dbl(&w, "join_storm_rate", o.storm_rate);
        jw_bool(&w, "talk_spurts", o.talk);
        jw_dbl(&w, "drain_ms", o.drain_ms);
        jw_str(&w, "audio", audio.source);
        jw_u64(&w, "audio_frames", audio.n);
        jw_dbl(&w, "audio_mean_frame_bytes", audio.mean_len);
        jw_u64(&w, "dtx_frame_bytes", audio.dtx.len);
        jw_dbl(&w, "slo_p99_ms", o.slo_p99_ms);
        jw_dbl(&w, "slo_loss_pct", o.slo_loss_pct);
        jw_obj(&w, "path");
        jw_bool(&w, "emulated", netem_active(&base.path));
        jw_dbl(&w, "rtt_ms", (double)base.path.rtt_ns / 1e6);
        jw_dbl(&w, "jitter_ms", (double)base.path.jitter_ns / 1e6);
        jw_dbl(&w, "loss_pct", base.path.loss * 100);
        jw_u64(&w, "seed", base.path.seed);
        jw_str(&w, "latency", "net of the path's nominal delay (rtt)");
        jw_obj_end(&w);
        jw_str(&w, "metrics", base.metrics_addr);
        jw_obj_end(&w);
        if (o.ramp) {
            jw_arr(&w, "steps");
            for (unsigned s = 0; s < n_steps; s++) {
                steps[s].cfg.rooms = steps[s].rooms;
                jw_obj(&w, NULL);
                jw_u64(&w, "rooms", steps[s].rooms);
                jw_bool(&w, "pass", steps[s].pass);
                jw_str(&w, "failed", steps[s].why);
                jw_str(&w, "verdict", verdict_name(steps[s].res.verdict));
                report_result_json(&w, "result", &steps[s].cfg, &steps[s].res, false);
                jw_obj_end(&w);
            }
            jw_arr_end(&w);
            jw_obj(&w, "capacity");
            if (capacity >= 0) {
                jw_u64(&w, "rooms", steps[capacity].rooms);
                jw_u64(&w, "participants", (uint64_t)steps[capacity].rooms * o.size);
            } else {
                jw_str(&w, "rooms", NULL);
                jw_str(&w, "participants", NULL);
            }
            jw_str(&w, "limited_by", limited_by);
            jw_obj_end(&w);
        }
        if (n_steps > 0) {
            struct step *last = capacity >= 0 ? &steps[capacity] : &steps[n_steps - 1];
            if (!o.ramp)
                last = &steps[0];
            last->cfg.rooms = last->rooms;
            report_result_json(&w, "result", &last->cfg, &last->res, !o.ramp);
        }
        jw_obj_end(&w);
        if (fclose(f) != 0) {
            fprintf(stderr, "roost-bench: %s: write failed\n", o.json);
            goto out;
        }
    }
    if (!o.ramp)
        ret = (int)steps[0].res.verdict;
    else if (strcmp(limited_by, "error") == 0)
        ret = EXIT_ERROR;
    else if (strcmp(limited_by, "inconclusive") == 0)
        ret = LOAD_INCONCLUSIVE; /* the bench stopped the ramp: a lower bound */
    else if (capacity < 0 && strcmp(limited_by, "ramp-max") != 0)
        ret = LOAD_FAIL; /* the relay failed the first step */
    else
        ret = LOAD_OK;
out:
    if (steps != NULL)
        for (unsigned s = 0; s < n_steps; s++)
            load_result_free(&steps[s].res);
    free(steps);
    audio_table_free(&audio);
    token_keyring_wipe(&keys);
    free(cmd);
    return ret;
}
