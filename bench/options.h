/* roost-bench's command line: the options, their parsing and checks, the
 * usage text (docs/BENCH.md is the guide), and the command line echoed into
 * the JSON. Main thread only. */
#ifndef ROOST_BENCH_OPTIONS_H
#define ROOST_BENCH_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#define BENCH_VERSION "0.1"
/* Exit codes besides the verdicts (enum load_verdict: 0 OK, 1 FAIL, 2
 * INCONCLUSIVE); docs/BENCH.md. */
#define EXIT_ERROR 3  /* the bench could not run */
#define EXIT_USAGE 64 /* bad command line (sysexits EX_USAGE) */
#define MAX_CPUS 1024
#define MAX_RELAYS 8 /* --relays; LOAD_RELAYS_MAX */

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
    bool phase_packed; /* --phase packed */
    int cpus[MAX_CPUS];
    unsigned n_cpus;
    /* --floor-cpus: the floor's workers, apart from the bench threads */
    int floor_cpus[MAX_CPUS];
    unsigned n_floor_cpus;
    const char *floor_cpus_arg;
    double rtt_s, jitter_s, loss_pct;
    double path_seed;
    const char *metrics;
    uint32_t ws;      /* --ws: WebSocket participants per room */
    char ws_host[64]; /* --ws-relay */
    uint16_t ws_port;
    bool have_ws_relay, ws_plain;
    /* --relays A,B,C (a cluster: participants spread over them), with
     * --admins and --relay-pids in the same order. */
    unsigned n_relays, n_admins, n_relay_pids;
    char relay_hosts[MAX_RELAYS][64];
    uint16_t relay_ports[MAX_RELAYS];
    char admins[MAX_RELAYS][80];
    int relay_pids[MAX_RELAYS];
};

/* Parses argv into *o (defaults first). Returns 0, or the exit code to
 * leave with (EXIT_USAGE after a message on stderr); --help prints the
 * usage and exits 0. */
int options_parse(int argc, char **argv, struct opts *o);
/* The exact command line, shell-quoted where needed (malloc'd; NULL when
 * out of memory). */
char *options_command_line(int argc, char **argv);

#endif
