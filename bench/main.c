/* roost-bench: modes (steady, --ramp, --join-storm, --floor), summary and
 * JSON. The command line is bench/options.c; the load itself bench/load.c
 * and bench/loop.c; the floor forwarder bench/floor.c; the output
 * bench/report.c. docs/BENCH.md is the guide. */
#include <errno.h>
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
#include "bench/options.h"
#include "bench/report.h"
#include "bench/verdict.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "proto/media.h"

/* Payload room in a datagram: the relay's WELCOME promises 1200 bytes
 * client -> relay, and prepends 4 on the way out. */
#define FRAME_CAP (1200 - MEDIA_C2R_HDR_LEN - LOAD_PAYLOAD_HDR - 16)

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
            .cpus = o->n_floor_cpus ? o->floor_cpus : NULL,
            .n_cpus = o->n_floor_cpus,
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
        snprintf(where, sizeof(where), "floor (in-process, %u workers%s%s)", o->floor_workers,
                 o->floor_cpus_arg ? ", cpus " : "", o->floor_cpus_arg ? o->floor_cpus_arg : "");
    else if (cfg->n_relays > 0)
        snprintf(where, sizeof(where), "cluster of %u relays", cfg->n_relays);
    else
        snprintf(where, sizeof(where), "relay %s:%u", cfg->host, cfg->port);
    fprintf(f,
            "roost-bench %s: %s  rooms=%u size=%u speakers=%u duration=%.1fs frame=%.1fms "
            "bitrate=%u threads=%u%s%s\n",
            BENCH_VERSION, where, rooms, o->size, o->speakers, o->duration_s, o->frame_ms,
            o->bitrate, o->threads, o->talk ? " talk-spurts" : "",
            o->storm_rate > 0 ? " join-storm" : "");
    for (unsigned k = 0; k < cfg->n_relays; k++)
        fprintf(f, "  relay %u: %s:%u%s%s\n", k, cfg->relays[k].host, cfg->relays[k].port,
                cfg->relays[k].admin ? ", admin " : "",
                cfg->relays[k].admin ? cfg->relays[k].admin : "");
    if (o->ws > 0)
        fprintf(f, "  transports: %u QUIC + %u WebSocket (%s://%s:%u/ws) per room\n",
                o->size - o->ws, o->ws, o->ws_plain ? "ws" : "wss", o->ws_host, o->ws_port);
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
    int rc = options_parse(argc, argv, &o);
    if (rc != 0)
        return rc;
    int ret = EXIT_ERROR;
    struct token_keyring keys;
    struct audio_table audio = {0};
    struct step *steps = NULL;
    unsigned n_steps = 0;
    char *cmd = options_command_line(argc, argv);
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
        .phase_packed = o.phase_packed,
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
        .ws_per_room = o.ws,
        .ws_host = o.ws_host,
        .ws_port = o.ws_port,
        .ws_plain = o.ws_plain,
    };
    if (o.floor)
        base.host = "127.0.0.1";
    struct load_relay relays[MAX_RELAYS];
    for (unsigned k = 0; k < o.n_relays; k++)
        relays[k] = (struct load_relay){
            .host = o.relay_hosts[k],
            .port = o.relay_ports[k],
            .pid = o.n_relay_pids ? o.relay_pids[k] : 0,
            .admin = o.n_admins ? o.admins[k] : NULL,
        };
    if (o.n_relays > 0) {
        base.n_relays = o.n_relays;
        base.relays = relays;
        base.host = o.relay_hosts[0];
        base.port = o.relay_ports[0];
    }
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
        /* A cluster run (--relays): the addresses are in "relays". */
        jw_str(&w, "address", o.n_relays ? NULL : base.host);
        jw_u64(&w, "port", o.floor ? 0 : o.port);
        if (o.floor) {
            jw_str(&w, "version", "roost-bench floor " BENCH_VERSION);
            jw_u64(&w, "workers", o.floor_workers);
            jw_str(&w, "cpus", o.floor_cpus_arg);
            jw_str(&w, "config", "plain UDP fan-out, SO_REUSEPORT, recvmmsg/sendmmsg");
        } else {
            jw_str(&w, "version", n_steps ? steps[0].res.server_name : "");
            jw_u64(&w, "max_datagram", n_steps ? steps[0].res.max_datagram : 0);
            if (o.n_relays > 0) {
                jw_arr(&w, "relays");
                for (unsigned k = 0; k < o.n_relays; k++) {
                    char cl[4096];
                    jw_obj(&w, NULL);
                    jw_str(&w, "address", o.relay_hosts[k]);
                    jw_u64(&w, "port", o.relay_ports[k]);
                    jw_str(&w, "admin", relays[k].admin);
                    jw_i64(&w, "pid", relays[k].pid);
                    if (relays[k].pid > 0) {
                        proc_cmdline(relays[k].pid, cl, sizeof(cl));
                        jw_str(&w, "config", cl);
                    } else {
                        jw_str(&w, "config", NULL);
                    }
                    jw_obj_end(&w);
                }
                jw_arr_end(&w);
            }
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
        jw_str(&w, "phase", o.phase_packed ? "packed" : "spread");
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
        jw_u64(&w, "relays", o.n_relays);
        jw_str(&w, "relay_rule",
               o.n_relays ? "member m of room r -> relay (r + m) mod relays" : NULL);
        jw_u64(&w, "ws_per_room", o.ws);
        if (o.ws > 0) {
            char wa[96];
            snprintf(wa, sizeof(wa), "%s://%s:%u/ws", o.ws_plain ? "ws" : "wss", o.ws_host,
                     o.ws_port);
            jw_str(&w, "ws_relay", wa);
        } else {
            jw_str(&w, "ws_relay", NULL);
        }
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
