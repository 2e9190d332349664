#include "bench/verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/errcode.h"

#define SEND_RATIO_MIN 0.95 /* send slots reached in time / target below this: inconclusive */

void verdict_end_add(struct load_end *ends, unsigned *n_ends, enum load_end_kind kind, bool joined,
                     uint64_t code, uint64_t n)
{
    for (unsigned i = 0; i < *n_ends; i++) {
        struct load_end *e = &ends[i];
        if (e->kind == kind && e->joined == joined && e->code == code) {
            e->n += n;
            return;
        }
    }
    if (*n_ends == LOAD_ENDS_MAX) {
        ends[LOAD_ENDS_MAX - 1].n += n; /* the table is full: merged, the total stays right */
        return;
    }
    ends[(*n_ends)++] = (struct load_end){.kind = kind, .joined = joined, .code = code, .n = n};
}

const char *verdict_name(enum load_verdict v)
{
    switch (v) {
    case LOAD_OK:
        return "OK";
    case LOAD_FAIL:
        return "FAIL";
    default:
        return "INCONCLUSIVE";
    }
}

static void append(char *buf, size_t cap, const char *fmt, va_list ap)
{
    size_t n = strlen(buf);
    if (n + 3 >= cap)
        return;
    if (n > 0) {
        memcpy(buf + n, "; ", 3);
        n += 2;
    }
    vsnprintf(buf + n, cap - n, fmt, ap);
}

/* A fault of the relay (it decides the verdict: FAIL). */
static void add_fail(struct load_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_fail(struct load_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    append(res->fail_reasons, sizeof(res->fail_reasons), fmt, ap);
    va_end(ap);
}

/* A fault of the bench (INCONCLUSIVE unless the relay failed anyway).
 * workload: the bench did not generate the workload asked for, so every
 * figure (relay CPU included) measures the bench: res->inconclusive. */
static void add_bench(struct load_result *res, bool workload, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_bench(struct load_result *res, bool workload, const char *fmt, ...)
{
    if (workload)
        res->inconclusive = true;
    va_list ap;
    va_start(ap, fmt);
    append(res->bench_reasons, sizeof(res->bench_reasons), fmt, ap);
    va_end(ap);
}

/* "SERVER_FULL (0x09) x3" style text of the ends of one side (joined: early
 * closes, else failed joins), relay faults only. */
static void ends_text(const struct load_result *res, bool joined, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < res->n_ends && n + 1 < cap; i++) {
        const struct load_end *e = &res->ends[i];
        if (e->joined != joined || e->kind == LOAD_END_SETUP)
            continue;
        const char *sep = n ? ", " : "";
        int w;
        switch (e->kind) {
        case LOAD_END_REJECTED:
            w = snprintf(out + n, cap - n, "%srejected %s (0x%02llx) x%llu", sep,
                         proto_errcode_name(e->code), (unsigned long long)e->code,
                         (unsigned long long)e->n);
            break;
        case LOAD_END_CLOSED_APP:
            w = snprintf(out + n, cap - n, "%sclosed by the relay %s (0x%02llx) x%llu", sep,
                         proto_errcode_name(e->code), (unsigned long long)e->code,
                         (unsigned long long)e->n);
            break;
        case LOAD_END_CLOSED_QUIC:
            w = snprintf(out + n, cap - n,
                         "%sclosed by the relay, QUIC transport error 0x%llx x%llu", sep,
                         (unsigned long long)e->code, (unsigned long long)e->n);
            break;
        case LOAD_END_RESET:
            w = snprintf(out + n, cap - n,
                         "%sstateless reset (the relay lost the connection) x%llu", sep,
                         (unsigned long long)e->n);
            break;
        case LOAD_END_IDLE:
            w = snprintf(out + n, cap - n, "%sidle timeout (the relay stopped answering) x%llu",
                         sep, (unsigned long long)e->n);
            break;
        case LOAD_END_TCP:
            w = snprintf(out + n, cap - n,
                         "%sWebSocket connection failed or ended without a Close (code %lld) "
                         "x%llu",
                         sep, (long long)(int64_t)e->code, (unsigned long long)e->n);
            break;
        case LOAD_END_TIMEOUT:
            w = snprintf(out + n, cap - n, "%sno answer within the join timeout x%llu", sep,
                         (unsigned long long)e->n);
            break;
        default:
            w = snprintf(out + n, cap - n, "%sclosed after a QUIC error (ngtcp2 %lld) x%llu", sep,
                         (long long)(int64_t)e->code, (unsigned long long)e->n);
            break;
        }
        if (w < 0)
            break;
        n += (size_t)w < cap - n ? (size_t)w : cap - n - 1;
    }
}

static uint64_t ends_count(const struct load_result *res, bool joined, bool setup)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < res->n_ends; i++)
        if (res->ends[i].joined == joined && (res->ends[i].kind == LOAD_END_SETUP) == setup)
            n += res->ends[i].n;
    return n;
}

void verdict_judge(const struct load_config *cfg, struct load_result *res)
{
    char txt[400];
    /* The relay's faults. */
    uint64_t jf = ends_count(res, false, false);
    if (jf > 0) {
        ends_text(res, false, txt, sizeof(txt));
        add_fail(res, "%llu of %llu joins failed: %s", (unsigned long long)jf,
                 (unsigned long long)(res->joins_ok + res->joins_failed + res->storm_ok +
                                      res->storm_failed),
                 txt);
    }
    uint64_t ce = ends_count(res, true, false);
    if (ce > 0) {
        ends_text(res, true, txt, sizeof(txt));
        add_fail(res, "%llu connections closed early: %s", (unsigned long long)ce, txt);
    }
    if (res->relay_gone)
        add_fail(res, "the relay process (pid %d) exited during the run",
                 res->gone_pid > 0 ? res->gone_pid : cfg->relay_pid);
    res->relay_fault = res->fail_reasons[0] != '\0';
    /* The bench's faults. */
    if (res->schedule_ratio < SEND_RATIO_MIN)
        add_bench(res, true,
                  "achieved send rate %.1f%% of target: %.1f%% of the send slots were missed "
                  "by the bench (< %.0f%% kept)",
                  res->send_ratio * 100, (1 - res->schedule_ratio) * 100, SEND_RATIO_MIN * 100);
    for (unsigned i = 0; i < res->n_threads; i++)
        if (res->threads[i].saturated)
            add_bench(res, true, "bench thread %u saturated (%.0f%% CPU)", i,
                      res->threads[i].util * 100);
    uint64_t setup = ends_count(res, false, true) + ends_count(res, true, true);
    if (setup > 0)
        add_bench(res, true, "%llu participants could not be set up by the bench",
                  (unsigned long long)setup);
    /* The SLO, always evaluated. */
    res->p99_ns = hist_quantile(res->latency, 0.99);
    res->slo_p99_met = res->p99_ns <= cfg->slo_p99_ns;
    res->slo_loss_met = res->loss_ratio <= cfg->slo_loss;
    bool slo_met = res->slo_p99_met && res->slo_loss_met;
    if (!slo_met) {
        /* The machine stalled a bench thread for a share of the window: at
         * most that share of the samples were inflated (or lost) by the
         * bench. The broken SLO is the relay's only if it stays broken
         * without them: p99 of the rest is the (0.99 - share) quantile. */
        double share = 0;
        unsigned worst = 0;
        for (unsigned i = 0; i < res->n_threads; i++) {
            const struct load_thread_stat *t = &res->threads[i];
            double sh = t->wall_ns ? (double)t->runq_ns / (double)t->wall_ns : 0;
            if (sh > share) {
                share = sh;
                worst = i;
            }
        }
        uint64_t p_rest = hist_quantile(res->latency, share < 0.99 ? 0.99 - share : 0);
        bool p99_explained = !res->slo_p99_met && p_rest <= cfg->slo_p99_ns;
        bool loss_explained = !res->slo_loss_met && res->loss_ratio <= share;
        if (share > 0 && (p99_explained || loss_explained))
            add_bench(res, false,
                      "machine stalled: bench thread %u waited for a CPU %.1f%% of the window "
                      "(up to %.1f ms at once), enough to explain the broken SLO (p99 without "
                      "those samples %.3f ms)",
                      worst, share * 100, (double)res->threads[worst].max_stall_ns / 1e6,
                      (double)p_rest / 1e6);
    }
    if (!res->slo_p99_met)
        add_fail(res, "latency p99 %.3f ms over the SLO %.3f ms", (double)res->p99_ns / 1e6,
                 (double)cfg->slo_p99_ns / 1e6);
    if (!res->slo_loss_met)
        add_fail(res, "loss %.4f%% over the SLO %.4f%%", res->loss_ratio * 100,
                 cfg->slo_loss * 100);
    if (res->relay_fault)
        res->verdict = LOAD_FAIL;
    else if (res->bench_reasons[0] != '\0')
        res->verdict = LOAD_INCONCLUSIVE;
    else if (!slo_met)
        res->verdict = LOAD_FAIL;
    else
        res->verdict = LOAD_OK;
    snprintf(res->reasons, sizeof(res->reasons), "%s%s%s", res->fail_reasons,
             res->fail_reasons[0] && res->bench_reasons[0] ? "; " : "", res->bench_reasons);
}
