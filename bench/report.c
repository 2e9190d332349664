#include "bench/report.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench/verdict.h"
#include "proto/errcode.h"

/* ------------------------------------------------------------ JSON */

void jw_escape(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f); /* UTF-8 passes through */
        }
    }
    fputc('"', f);
}

void jw_init(struct jw *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    w->first[0] = true;
}

static void pre(struct jw *w, const char *key)
{
    if (!w->first[w->depth])
        fputc(',', w->f);
    w->first[w->depth] = false;
    if (w->depth > 0) {
        fputc('\n', w->f);
        for (int i = 0; i < w->depth; i++)
            fputs("  ", w->f);
    }
    if (key != NULL) {
        jw_escape(w->f, key);
        fputs(": ", w->f);
    }
}

static void open_(struct jw *w, const char *key, char c)
{
    pre(w, key);
    fputc(c, w->f);
    if (w->depth + 1 < JW_DEPTH)
        w->depth++;
    w->first[w->depth] = true;
}

static void close_(struct jw *w, char c)
{
    bool empty = w->first[w->depth];
    if (w->depth > 0)
        w->depth--;
    if (!empty) {
        fputc('\n', w->f);
        for (int i = 0; i < w->depth; i++)
            fputs("  ", w->f);
    }
    fputc(c, w->f);
    if (w->depth == 0)
        fputc('\n', w->f);
}

void jw_obj(struct jw *w, const char *key)
{
    open_(w, key, '{');
}

void jw_obj_end(struct jw *w)
{
    close_(w, '}');
}

void jw_arr(struct jw *w, const char *key)
{
    open_(w, key, '[');
}

void jw_arr_end(struct jw *w)
{
    close_(w, ']');
}

void jw_str(struct jw *w, const char *key, const char *v)
{
    pre(w, key);
    if (v == NULL)
        fputs("null", w->f);
    else
        jw_escape(w->f, v);
}

void jw_u64(struct jw *w, const char *key, uint64_t v)
{
    pre(w, key);
    fprintf(w->f, "%" PRIu64, v);
}

void jw_i64(struct jw *w, const char *key, int64_t v)
{
    pre(w, key);
    fprintf(w->f, "%" PRId64, v);
}

void jw_dbl(struct jw *w, const char *key, double v)
{
    pre(w, key);
    if (isfinite(v))
        fprintf(w->f, "%.6g", v);
    else
        fputs("null", w->f);
}

void jw_bool(struct jw *w, const char *key, bool v)
{
    pre(w, key);
    fputs(v ? "true" : "false", w->f);
}

/* --------------------------------------------------------- machine */

void report_machine(struct machine_info *m)
{
    memset(m, 0, sizeof(*m));
    m->cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(m->cpu_model, sizeof(m->cpu_model), "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c != NULL) {
                    c++;
                    while (*c == ' ' || *c == '\t')
                        c++;
                    c[strcspn(c, "\n")] = '\0';
                    snprintf(m->cpu_model, sizeof(m->cpu_model), "%s", c);
                }
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m->kernel, sizeof(m->kernel), "%.64s %.64s %.64s", u.sysname, u.release,
                 u.machine);
        snprintf(m->hostname, sizeof(m->hostname), "%.64s", u.nodename);
    }
}

void report_machine_json(struct jw *w, const struct machine_info *m)
{
    jw_obj(w, "machine");
    jw_i64(w, "cores", m->cores);
    jw_str(w, "cpu_model", m->cpu_model);
    jw_str(w, "kernel", m->kernel);
    jw_str(w, "hostname", m->hostname);
    jw_obj_end(w);
}

/* --------------------------------------------------------- results */

/* The bench threads' CPU over the window and the drain: the client side's
 * cost, which on a shared machine decides how much load it can offer. */
static double bench_cpu_s(const struct load_result *r)
{
    uint64_t ns = 0;
    for (unsigned i = 0; i < r->n_threads; i++)
        ns += r->threads[i].cpu_ns;
    return (double)ns / 1e9;
}

double report_egress_per_cpu_s(const struct load_result *r)
{
    return r->server_cpu_s > 0 ? (double)r->egress_datagrams / r->server_cpu_s : -1;
}

double report_delivered_per_cpu_s(const struct load_result *r)
{
    return r->server_cpu_s > 0 ? (double)r->delivered / r->server_cpu_s : -1;
}

double report_per_frame(const struct load_result *r, int family)
{
    const struct metrics_delta *m = &r->server_counters;
    if (!m->ok || family < 0 || family >= METRICS_N || !m->have[family] || r->delivered == 0)
        return -1;
    return (double)m->v[family] / (double)r->delivered;
}

double report_frames_per_packet(const struct load_result *r)
{
    const struct metrics_delta *m = &r->server_counters;
    if (!m->ok || !m->have[METRICS_DGRAM_OUT] || !m->have[METRICS_PKTS_OUT] ||
        m->v[METRICS_PKTS_OUT] == 0)
        return -1;
    return (double)m->v[METRICS_DGRAM_OUT] / (double)m->v[METRICS_PKTS_OUT];
}

/* "%.3f" or "n/a". */
static const char *fig(char *buf, size_t cap, double v)
{
    if (v < 0)
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.3f", v);
    return buf;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void hist_line(FILE *f, const char *name, const struct hist *h, double div, const char *unit)
{
    if (h->n == 0) {
        fprintf(f, "  %-14s (no samples)\n", name);
        return;
    }
    fprintf(f, "  %-14s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f  %s  n=%" PRIu64 "\n", name,
            (double)hist_quantile(h, 0.5) / div, (double)hist_quantile(h, 0.9) / div,
            (double)hist_quantile(h, 0.99) / div, (double)hist_quantile(h, 0.999) / div,
            (double)h->max / div, hist_mean(h) / div, unit, h->n);
}

/* --------------------------------------------------- cluster runs */

double report_trunk(const struct load_result *r, int family)
{
    const struct metrics_delta *m = &r->server_counters;
    return m->ok && m->have[family] ? (double)m->v[family] : -1;
}

/* Merges the latency of the pairs (from, to) with from == to (same) or
 * from != to into a new histogram (malloc'd; NULL when out of memory).
 * to_only >= 0: only receivers on that relay, any sender. */
static struct hist *pair_merge(const struct load_result *r, int same, int to_only)
{
    struct hist *h = malloc(sizeof(*h));
    if (h == NULL)
        return NULL;
    hist_init(h);
    unsigned n = r->n_relays;
    for (unsigned a = 0; r->pair_latency != NULL && a < n; a++)
        for (unsigned b = 0; b < n; b++) {
            if (to_only >= 0 ? (int)b != to_only : (same ? a != b : a == b))
                continue;
            hist_merge(h, &r->pair_latency[a * n + b]);
        }
    return h;
}

static void relays_summary(FILE *f, const struct load_config *cfg, const struct load_result *r)
{
    char a[16], b[16];
    fprintf(f, "  relays         %u, member m of room r on relay (r + m) mod %u\n", r->n_relays,
            r->n_relays);
    for (unsigned k = 0; k < r->n_relays; k++) {
        const struct load_relay_stat *x = &r->relays[k];
        const struct load_relay *c = &cfg->relays[k];
        const struct metrics_delta *m = &x->counters;
        fprintf(f,
                "    [%u] %s:%u  %u participants (%" PRIu64 " joined, %" PRIu64
                " failed), %u speakers sent %" PRIu64 ", received %" PRIu64 " of %" PRIu64
                " (lost %" PRIu64 "), CPU %s s%s\n",
                k, c->host, c->port, x->participants, x->joins_ok, x->joins_failed, x->speakers,
                x->sent, x->rx_delivered, x->rx_expected, x->lost, fig(a, sizeof(a), x->cpu_s),
                x->gone ? ", GONE" : "");
        if (m->ok && m->have[METRICS_TRUNK_OUT] && m->have[METRICS_TRUNK_IN])
            fprintf(f, "        trunk frames out %" PRIu64 ", in %" PRIu64 "\n",
                    m->v[METRICS_TRUNK_OUT], m->v[METRICS_TRUNK_IN]);
    }
    struct hist *same = pair_merge(r, 1, -1), *other = pair_merge(r, 0, -1);
    if (same != NULL && other != NULL && r->n_relays > 1)
        fprintf(f,
                "  latency        same relay p50 %.3f p99 %.3f ms (n=%" PRIu64
                "); other relay p50 %.3f p99 %.3f ms (n=%" PRIu64 ")\n",
                (double)hist_quantile(same, 0.5) / 1e6, (double)hist_quantile(same, 0.99) / 1e6,
                same->n, (double)hist_quantile(other, 0.5) / 1e6,
                (double)hist_quantile(other, 0.99) / 1e6, other->n);
    free(same);
    free(other);
    double in = report_trunk(r, METRICS_TRUNK_IN);
    if (in >= 0)
        fprintf(f,
                "  trunk frames   %.0f in, %.0f out; ideal %" PRIu64
                " (each frame once to each other relay of its room): %s per remote relay per "
                "frame, %s per delivered frame\n",
                in, report_trunk(r, METRICS_TRUNK_OUT), r->trunk_ideal,
                fig(a, sizeof(a), r->trunk_ideal ? in / (double)r->trunk_ideal : -1),
                fig(b, sizeof(b), r->delivered ? in / (double)r->delivered : -1));
    else
        fprintf(f, "  trunk frames   unknown (give --admins, one admin HOST:PORT per relay)\n");
}

void report_summary(FILE *f, const struct load_config *cfg, const struct load_result *r)
{
    fprintf(f, "  %-14s %9s %9s %9s %9s %9s %9s\n", "", "p50", "p90", "p99", "p99.9", "max",
            "mean");
    hist_line(f, "latency", r->latency, 1000.0, "us");
    hist_line(f, "join", r->join, 1e6, "ms");
    if (r->storm_planned > 0)
        hist_line(f, "storm join", r->storm_join, 1e6, "ms");
    fprintf(f,
            "  frames sent    %" PRIu64 " of %" PRIu64 " target (%.2f%%), skipped %" PRIu64
            ", failed %" PRIu64 "\n",
            r->sent, r->target, r->send_ratio * 100, r->skipped, r->failed);
    fprintf(f,
            "  delivered      %" PRIu64 " of %" PRIu64 " expected, lost %" PRIu64
            " (%.4f%%), dup %" PRIu64 ", reordered %" PRIu64 "\n",
            r->delivered, r->expected, r->lost, r->loss_ratio * 100, r->dup, r->reordered);
    fprintf(f, "  joins          %" PRIu64 " ok, %" PRIu64 " failed\n", r->joins_ok,
            r->joins_failed);
    if (cfg->ws_per_room > 0) {
        static const char *const tn[LOAD_TR_N] = {"QUIC", "WebSocket"};
        for (int k = 0; k < LOAD_TR_N; k++) {
            const struct load_transport_stat *x = &r->tr[k];
            if (x->participants == 0)
                continue;
            fprintf(f,
                    "  %-9s      %u participants (%" PRIu64 " joined): sent %" PRIu64
                    ", received %" PRIu64 " of %" PRIu64 " (lost %" PRIu64
                    "), latency p50 %.3f p99 %.3f ms\n",
                    tn[k], x->participants, x->joins_ok, x->sent, x->rx_delivered, x->rx_expected,
                    x->lost, (double)hist_quantile(x->latency, 0.5) / 1e6,
                    (double)hist_quantile(x->latency, 0.99) / 1e6);
        }
    }
    if (r->storm_planned > 0) {
        double s = (double)r->window_ns / 1e9;
        fprintf(f,
                "  join storm     %" PRIu64 " planned, %" PRIu64 " ok, %" PRIu64
                " failed, %.1f joins/s\n",
                r->storm_planned, r->storm_ok, r->storm_failed, s > 0 ? r->storm_ok / s : 0);
    }
    const char *who = cfg->mode == LOAD_FLOOR ? "floor" : "relay";
    if (r->server_cpu_s >= 0) {
        fprintf(f,
                "  %s CPU      %.3f s over the window: %.0f egress datagrams/CPU-s, %.0f "
                "delivered frames/CPU-s\n",
                who, r->server_cpu_s, report_egress_per_cpu_s(r), report_delivered_per_cpu_s(r));
    } else {
        fprintf(f, "  %s CPU      unknown (give --relay-pid)\n", who);
    }
    if (r->server_runq_s >= 0 && r->window_ns > 0)
        fprintf(
            f,
            "  relay runq     %.3f s waiting for a CPU over the window and drain (%.1f%% of the "
            "window's length)\n",
            r->server_runq_s, r->server_runq_s * 1e9 * 100 / (double)r->window_ns);
    if (r->server_counters.ok) {
        char a[16], b[16], c[16], d[16], e[16];
        fprintf(f,
                "  per frame      %s UDP out, %s UDP in (%s ACK-only), %s loop turns; %s frames "
                "per packet out\n",
                fig(a, sizeof(a), report_per_frame(r, METRICS_PKTS_OUT)),
                fig(b, sizeof(b), report_per_frame(r, METRICS_PKTS_IN)),
                fig(c, sizeof(c), report_per_frame(r, METRICS_ACK_ONLY_IN)),
                fig(d, sizeof(d), report_per_frame(r, METRICS_TURNS)),
                fig(e, sizeof(e), report_frames_per_packet(r)));
        uint64_t ln = 0;
        double l50 = metrics_latency_quantile(&r->server_counters, 0.5, &ln);
        double l99 = metrics_latency_quantile(&r->server_counters, 0.99, NULL);
        if (ln > 0)
            fprintf(f,
                    "  relay-added    p50 %.1f us, p99 %.1f us (the relay's fan-out histogram, "
                    "n=%" PRIu64 ")\n",
                    l50 * 1e6, l99 * 1e6, ln);
    } else if (cfg->mode == LOAD_QUIC) {
        fprintf(f, "  per frame      unknown (give --metrics ADMIN-HOST:PORT)\n");
    }
    if (cfg->n_relays > 0)
        relays_summary(f, cfg, r);
    if (netem_active(&cfg->path))
        fprintf(f,
                "  path           rtt %.1f ms: %" PRIu64 " out, %" PRIu64 " in, lost %" PRIu64
                " out, %" PRIu64 " in; latency above is net of the rtt\n",
                (double)cfg->path.rtt_ns / 1e6, r->path_stats.queued[NETEM_OUT],
                r->path_stats.queued[NETEM_IN], r->path_stats.lost[NETEM_OUT],
                r->path_stats.lost[NETEM_IN]);
    if (r->rss_before_kb >= 0 && r->rss_joined_kb >= 0 && r->joins_ok > 0)
        fprintf(f, "  relay RSS      %ld KiB -> %ld KiB joined: %.0f bytes per participant\n",
                r->rss_before_kb, r->rss_joined_kb,
                (double)(r->rss_joined_kb - r->rss_before_kb) * 1024.0 / (double)r->joins_ok);
    fprintf(f, "  bench threads ");
    for (unsigned i = 0; i < r->n_threads; i++)
        fprintf(f, " [%u cpu%d %.0f%%%s, waited for a CPU %.1f%%]", i, r->threads[i].cpu,
                r->threads[i].util * 100, r->threads[i].saturated ? " SATURATED" : "",
                r->threads[i].wall_ns
                    ? (double)r->threads[i].runq_ns * 100 / (double)r->threads[i].wall_ns
                    : 0.0);
    if (r->delivered > 0)
        fprintf(f,
                "\n  bench CPU      %.3f s over the window and drain: %.2f us per delivered frame",
                bench_cpu_s(r), bench_cpu_s(r) * 1e6 / (double)r->delivered);
    fprintf(f, "\n  SLO            p99 %.3f ms <= %.3f ms: %s; loss %.4f%% <= %.4f%%: %s\n",
            (double)r->p99_ns / 1e6, (double)cfg->slo_p99_ns / 1e6,
            r->slo_p99_met ? "met" : "BROKEN", r->loss_ratio * 100, cfg->slo_loss * 100,
            r->slo_loss_met ? "met" : "BROKEN");
    fprintf(f, "  verdict        %s%s%s\n", verdict_name(r->verdict), r->reasons[0] ? ": " : "",
            r->reasons);
}

static const char *end_kind_name(uint8_t k)
{
    static const char *const names[LOAD_END_KINDS] = {
        [LOAD_END_REJECTED] = "rejected",
        [LOAD_END_CLOSED_APP] = "closed_app",
        [LOAD_END_CLOSED_QUIC] = "closed_quic",
        [LOAD_END_RESET] = "stateless_reset",
        [LOAD_END_IDLE] = "idle_timeout",
        [LOAD_END_LOCAL] = "local_error",
        [LOAD_END_TIMEOUT] = "join_timeout",
        [LOAD_END_SETUP] = "bench_setup",
        [LOAD_END_TCP] = "ws_tcp",
    };
    return k < LOAD_END_KINDS ? names[k] : "unknown";
}

static void hist_json(struct jw *w, const char *key, const struct hist *h)
{
    jw_obj(w, key);
    jw_u64(w, "n", h->n);
    jw_u64(w, "min", h->n ? h->min : 0);
    jw_u64(w, "p50", hist_quantile(h, 0.5));
    jw_u64(w, "p90", hist_quantile(h, 0.9));
    jw_u64(w, "p99", hist_quantile(h, 0.99));
    jw_u64(w, "p999", hist_quantile(h, 0.999));
    jw_u64(w, "max", h->max);
    jw_dbl(w, "mean", hist_mean(h));
    jw_obj_end(w);
}

static void counter_json(struct jw *w, const char *key, const struct metrics_delta *m, int f)
{
    if (m->ok && m->have[f])
        jw_u64(w, key, m->v[f]);
    else
        jw_str(w, key, NULL);
}

/* result.relays (one object per relay of --relays, in its order) and
 * result.cluster (the trunk figures and the latency by relay pair). */
static void relays_json(struct jw *w, const struct load_config *cfg, const struct load_result *r)
{
    char addr[96];
    jw_arr(w, "relays");
    for (unsigned k = 0; k < r->n_relays; k++) {
        const struct load_relay_stat *x = &r->relays[k];
        const struct load_relay *c = &cfg->relays[k];
        jw_obj(w, NULL);
        jw_u64(w, "index", k);
        snprintf(addr, sizeof(addr), strchr(c->host, ':') ? "[%s]:%u" : "%s:%u", c->host, c->port);
        jw_str(w, "address", addr);
        jw_str(w, "admin", c->admin);
        jw_i64(w, "pid", c->pid);
        jw_u64(w, "participants", x->participants);
        jw_u64(w, "speakers", x->speakers);
        jw_u64(w, "joins_ok", x->joins_ok);
        jw_u64(w, "joins_failed", x->joins_failed);
        jw_u64(w, "closed_early", x->closed_early);
        jw_u64(w, "sent", x->sent);
        jw_u64(w, "expected", x->rx_expected);
        jw_u64(w, "delivered", x->rx_delivered);
        jw_u64(w, "lost", x->lost);
        if (x->cpu_s >= 0)
            jw_dbl(w, "cpu_s", x->cpu_s);
        else
            jw_str(w, "cpu_s", NULL);
        jw_bool(w, "gone", x->gone);
        counter_json(w, "trunk_frames_out", &x->counters, METRICS_TRUNK_OUT);
        counter_json(w, "trunk_frames_in", &x->counters, METRICS_TRUNK_IN);
        counter_json(w, "datagrams_out", &x->counters, METRICS_DGRAM_OUT);
        counter_json(w, "udp_packets_out", &x->counters, METRICS_PKTS_OUT);
        counter_json(w, "udp_packets_in", &x->counters, METRICS_PKTS_IN);
        struct hist *h = pair_merge(r, 0, (int)k);
        if (h != NULL)
            hist_json(w, "latency_ns", h);
        free(h);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_obj(w, "cluster");
    jw_u64(w, "relays", r->n_relays);
    jw_str(w, "rule", "member m of room r connects to relay (r + m) mod relays");
    double in = report_trunk(r, METRICS_TRUNK_IN), out = report_trunk(r, METRICS_TRUNK_OUT);
    counter_json(w, "trunk_frames_in", &r->server_counters, METRICS_TRUNK_IN);
    counter_json(w, "trunk_frames_out", &r->server_counters, METRICS_TRUNK_OUT);
    jw_u64(w, "trunk_frames_ideal", r->trunk_ideal);
    jw_dbl(w, "trunk_per_remote_relay_per_frame",
           in >= 0 && r->trunk_ideal ? in / (double)r->trunk_ideal : NAN);
    jw_dbl(w, "trunk_per_delivered_frame",
           in >= 0 && r->delivered ? in / (double)r->delivered : NAN);
    jw_dbl(w, "trunk_per_sent_frame", in >= 0 && r->sent ? in / (double)r->sent : NAN);
    jw_dbl(w, "trunk_out_per_sent_frame", out >= 0 && r->sent ? out / (double)r->sent : NAN);
    struct hist *same = pair_merge(r, 1, -1), *other = pair_merge(r, 0, -1);
    if (same != NULL && other != NULL) {
        hist_json(w, "latency_same_relay_ns", same);
        hist_json(w, "latency_other_relay_ns", other);
    }
    free(same);
    free(other);
    jw_arr(w, "pairs");
    for (unsigned a = 0; r->pair_latency != NULL && a < r->n_relays; a++)
        for (unsigned b = 0; b < r->n_relays; b++) {
            jw_obj(w, NULL);
            jw_u64(w, "from", a);
            jw_u64(w, "to", b);
            hist_json(w, "latency_ns", &r->pair_latency[a * r->n_relays + b]);
            jw_obj_end(w);
        }
    jw_arr_end(w);
    jw_obj_end(w);
}

void report_result_json(struct jw *w, const char *key, const struct load_config *cfg,
                        const struct load_result *r, bool per_participant)
{
    jw_obj(w, key);
    jw_str(w, "verdict", verdict_name(r->verdict));
    jw_bool(w, "inconclusive", r->inconclusive);
    jw_str(w, "reasons", r->reasons);
    jw_bool(w, "relay_fault", r->relay_fault);
    jw_str(w, "fail_reasons", r->fail_reasons);
    jw_str(w, "bench_reasons", r->bench_reasons);
    jw_obj(w, "slo");
    jw_dbl(w, "p99_ms", (double)cfg->slo_p99_ns / 1e6);
    jw_dbl(w, "loss_pct", cfg->slo_loss * 100);
    jw_u64(w, "measured_p99_ns", r->p99_ns);
    jw_dbl(w, "measured_loss_pct", r->loss_ratio * 100);
    jw_bool(w, "p99_met", r->slo_p99_met);
    jw_bool(w, "loss_met", r->slo_loss_met);
    jw_bool(w, "met", r->slo_p99_met && r->slo_loss_met);
    jw_obj_end(w);
    jw_u64(w, "rooms", cfg->rooms);
    jw_u64(w, "participants", (uint64_t)cfg->rooms * cfg->size);
    jw_dbl(w, "window_s", (double)r->window_ns / 1e9);
    jw_obj(w, "frames");
    jw_u64(w, "target", r->target);
    jw_u64(w, "sent", r->sent);
    jw_u64(w, "skipped", r->skipped);
    jw_u64(w, "failed", r->failed);
    jw_dbl(w, "send_ratio", r->send_ratio);
    jw_dbl(w, "schedule_ratio", r->schedule_ratio);
    jw_dbl(w, "target_per_s", (double)r->target * 1e9 / (double)(r->window_ns ? r->window_ns : 1));
    jw_obj_end(w);
    jw_obj(w, "delivery");
    jw_u64(w, "expected", r->expected);
    jw_u64(w, "delivered", r->delivered);
    jw_u64(w, "lost", r->lost);
    jw_dbl(w, "loss_ratio", r->loss_ratio);
    jw_u64(w, "duplicated", r->dup);
    jw_u64(w, "reordered", r->reordered);
    jw_u64(w, "foreign", r->foreign);
    jw_obj_end(w);
    hist_json(w, "latency_ns", r->latency);
    hist_json(w, "join_ns", r->join);
    jw_obj(w, "joins");
    jw_u64(w, "ok", r->joins_ok);
    jw_u64(w, "failed", r->joins_failed);
    jw_u64(w, "closed_early", r->closed_early);
    jw_obj_end(w);
    jw_arr(w, "ends");
    for (unsigned i = 0; i < r->n_ends; i++) {
        const struct load_end *e = &r->ends[i];
        jw_obj(w, NULL);
        jw_str(w, "kind", end_kind_name(e->kind));
        jw_bool(w, "after_join", e->joined);
        jw_i64(w, "code", (int64_t)e->code);
        if (e->kind == LOAD_END_REJECTED || e->kind == LOAD_END_CLOSED_APP)
            jw_str(w, "name", proto_errcode_name(e->code));
        jw_u64(w, "count", e->n);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    /* Per transport: senders (their frames and their delivery to every
     * receiver) and receivers (frames expected and delivered at them). */
    jw_obj(w, "transports");
    for (int k = 0; k < LOAD_TR_N; k++) {
        const struct load_transport_stat *x = &r->tr[k];
        jw_obj(w, k == LOAD_TR_WS ? "ws" : "quic");
        jw_u64(w, "participants", x->participants);
        jw_u64(w, "speakers", x->speakers);
        jw_u64(w, "joins_ok", x->joins_ok);
        jw_u64(w, "joins_failed", x->joins_failed);
        jw_u64(w, "closed_early", x->closed_early);
        jw_u64(w, "target", x->target);
        jw_u64(w, "sent", x->sent);
        jw_u64(w, "skipped", x->skipped);
        jw_u64(w, "failed", x->failed);
        jw_u64(w, "sent_expected", x->tx_expected);
        jw_u64(w, "sent_delivered", x->tx_delivered);
        jw_u64(w, "expected", x->rx_expected);
        jw_u64(w, "delivered", x->rx_delivered);
        jw_u64(w, "lost", x->lost);
        hist_json(w, "latency_ns", x->latency);
        jw_obj_end(w);
    }
    jw_obj_end(w);
    jw_bool(w, "relay_gone", r->relay_gone);
    if (cfg->n_relays > 0)
        relays_json(w, cfg, r);
    if (r->storm_planned > 0) {
        jw_obj(w, "join_storm");
        jw_u64(w, "planned", r->storm_planned);
        jw_u64(w, "ok", r->storm_ok);
        jw_u64(w, "failed", r->storm_failed);
        double s = (double)r->window_ns / 1e9;
        jw_dbl(w, "joins_per_s", s > 0 ? r->storm_ok / s : 0);
        hist_json(w, "join_ns", r->storm_join);
        jw_obj_end(w);
    }
    jw_obj(w, "server");
    jw_str(w, "kind", cfg->mode == LOAD_FLOOR ? "floor" : "relay");
    if (r->server_cpu_s >= 0)
        jw_dbl(w, "cpu_s", r->server_cpu_s);
    else
        jw_str(w, "cpu_s", NULL);
    jw_u64(w, "egress_datagrams", r->egress_datagrams);
    jw_str(w, "egress_datagrams_source",
           cfg->mode == LOAD_FLOOR ? "floor counters (exact)"
                                   : "media datagrams delivered to the bench (lower bound)");
    jw_dbl(w, "runq_s", r->server_runq_s >= 0 ? r->server_runq_s : NAN);
    jw_dbl(w, "egress_datagrams_per_cpu_s", report_egress_per_cpu_s(r));
    jw_dbl(w, "delivered_frames_per_cpu_s", report_delivered_per_cpu_s(r));
    jw_dbl(w, "cpu_us_per_delivered_frame",
           r->server_cpu_s >= 0 && r->delivered > 0 ? r->server_cpu_s * 1e6 / (double)r->delivered
                                                    : NAN);
    jw_i64(w, "rss_before_kb", r->rss_before_kb);
    jw_i64(w, "rss_joined_kb", r->rss_joined_kb);
    if (r->rss_before_kb >= 0 && r->rss_joined_kb >= 0 && r->joins_ok > 0)
        jw_dbl(w, "rss_per_participant_bytes",
               (double)(r->rss_joined_kb - r->rss_before_kb) * 1024.0 / (double)r->joins_ok);
    /* Per delivered frame, from the server's own counters (relay: /metrics
     * with --metrics; floor: exact); null where unknown. */
    jw_obj(w, "per_frame");
    jw_str(w, "source",
           cfg->mode == LOAD_FLOOR ? "floor counters"
           : r->server_counters.ok ? "relay /metrics"
                                   : NULL);
    static const struct {
        const char *key;
        int family;
    } pf[] = {
        {"udp_packets_out", METRICS_PKTS_OUT},
        {"udp_packets_in", METRICS_PKTS_IN},
        {"ack_only_packets_in", METRICS_ACK_ONLY_IN},
        {"loop_turns", METRICS_TURNS},
        {"datagrams_out", METRICS_DGRAM_OUT},
        {"quic_packets_written", METRICS_PKTS_WRITTEN},
    };
    for (size_t i = 0; i < sizeof(pf) / sizeof(pf[0]); i++)
        jw_dbl(w, pf[i].key,
               report_per_frame(r, pf[i].family) >= 0 ? report_per_frame(r, pf[i].family) : NAN);
    double fpp = report_frames_per_packet(r);
    jw_dbl(w, "frames_per_packet_out", fpp >= 0 ? fpp : NAN);
    jw_obj_end(w);
    /* The relay's own fan-out latency histogram over the window (ingress
     * timestamp to queueing on the egress worker), interpolated inside
     * its buckets; null where unknown. */
    jw_obj(w, "relay_added_latency_us");
    uint64_t lat_n = 0;
    double lat50 = metrics_latency_quantile(&r->server_counters, 0.5, &lat_n);
    double lat99 = metrics_latency_quantile(&r->server_counters, 0.99, NULL);
    jw_u64(w, "n", lat_n);
    jw_dbl(w, "p50", lat50 >= 0 ? lat50 * 1e6 : NAN);
    jw_dbl(w, "p99", lat99 >= 0 ? lat99 * 1e6 : NAN);
    jw_obj_end(w);
    jw_obj(w, "counters");
    for (int k = 0; k < METRICS_N; k++) {
        if (r->server_counters.ok && r->server_counters.have[k])
            jw_u64(w, metrics_name(k), r->server_counters.v[k]);
        else
            jw_str(w, metrics_name(k), NULL);
    }
    jw_obj_end(w);
    jw_obj_end(w);
    jw_obj(w, "path");
    jw_bool(w, "emulated", netem_active(&cfg->path));
    jw_dbl(w, "rtt_ms", (double)cfg->path.rtt_ns / 1e6);
    jw_dbl(w, "jitter_ms", (double)cfg->path.jitter_ns / 1e6);
    jw_dbl(w, "loss_pct", cfg->path.loss * 100);
    jw_u64(w, "queued_out", r->path_stats.queued[NETEM_OUT]);
    jw_u64(w, "queued_in", r->path_stats.queued[NETEM_IN]);
    jw_u64(w, "lost_out", r->path_stats.lost[NETEM_OUT]);
    jw_u64(w, "lost_in", r->path_stats.lost[NETEM_IN]);
    jw_u64(w, "max_held", r->path_stats.max_held);
    jw_obj_end(w);
    jw_arr(w, "bench_threads");
    for (unsigned i = 0; i < r->n_threads; i++) {
        const struct load_thread_stat *t = &r->threads[i];
        jw_obj(w, NULL);
        jw_i64(w, "cpu", t->cpu);
        jw_u64(w, "participants", t->participants);
        jw_dbl(w, "util", t->util);
        jw_dbl(w, "cpu_s", (double)t->cpu_ns / 1e9);
        jw_u64(w, "target", t->target);
        jw_u64(w, "sent", t->sent);
        jw_dbl(w, "max_late_us", us(t->max_late_ns));
        jw_dbl(w, "max_stall_us", us(t->max_stall_ns));
        jw_dbl(w, "runq_ms", (double)t->runq_ns / 1e6);
        jw_bool(w, "saturated", t->saturated);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_obj(w, "bench_cpu");
    jw_dbl(w, "cpu_s", bench_cpu_s(r));
    jw_dbl(w, "us_per_delivered_frame",
           r->delivered > 0 ? bench_cpu_s(r) * 1e6 / (double)r->delivered : NAN);
    jw_obj_end(w);
    if (per_participant) {
        jw_arr(w, "receivers");
        for (uint32_t i = 0; i < r->n_rx; i++) {
            const struct load_rx_stat *x = &r->rx[i];
            jw_obj(w, NULL);
            jw_u64(w, "idx", x->idx);
            jw_u64(w, "room", x->room);
            jw_u64(w, "member", x->member);
            jw_str(w, "transport", x->transport == LOAD_TR_WS ? "ws" : "quic");
            if (cfg->n_relays > 0)
                jw_u64(w, "relay", x->relay);
            jw_u64(w, "expected", x->expected);
            jw_u64(w, "delivered", x->delivered);
            jw_u64(w, "lost", x->lost);
            jw_u64(w, "duplicated", x->dup);
            jw_u64(w, "reordered", x->reordered);
            jw_obj_end(w);
        }
        jw_arr_end(w);
        jw_arr(w, "senders");
        for (uint32_t i = 0; i < r->n_tx; i++) {
            const struct load_tx_stat *x = &r->tx[i];
            jw_obj(w, NULL);
            jw_u64(w, "idx", x->idx);
            jw_u64(w, "room", x->room);
            jw_u64(w, "member", x->member);
            jw_str(w, "transport", x->transport == LOAD_TR_WS ? "ws" : "quic");
            if (cfg->n_relays > 0)
                jw_u64(w, "relay", x->relay);
            jw_u64(w, "target", x->target);
            jw_u64(w, "sent", x->sent);
            jw_u64(w, "skipped", x->skipped);
            jw_u64(w, "failed", x->failed);
            jw_u64(w, "expected", x->expected);
            jw_u64(w, "delivered", x->delivered);
            jw_obj_end(w);
        }
        jw_arr_end(w);
    }
    jw_obj_end(w);
}
