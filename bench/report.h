/* Output of roost-bench: a small JSON writer (keys and strings escaped),
 * the machine description, the readable summary table and the JSON form
 * of one run's result.
 *
 * Main thread only; all calls write to the FILE given. */
#ifndef ROOST_BENCH_REPORT_H
#define ROOST_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/load.h"

#define JW_DEPTH 32

struct jw {
    FILE *f;
    int depth;
    bool first[JW_DEPTH]; /* nothing written yet at this level */
};

/* key is NULL inside arrays and for the top-level value. */
void jw_init(struct jw *w, FILE *f);
void jw_obj(struct jw *w, const char *key);
void jw_obj_end(struct jw *w);
void jw_arr(struct jw *w, const char *key);
void jw_arr_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *v); /* NULL: null */
void jw_u64(struct jw *w, const char *key, uint64_t v);
void jw_i64(struct jw *w, const char *key, int64_t v);
void jw_dbl(struct jw *w, const char *key, double v); /* non-finite: null */
void jw_bool(struct jw *w, const char *key, bool v);
/* Writes s as a JSON string literal (quotes included). */
void jw_escape(FILE *f, const char *s);

struct machine_info {
    long cores;
    char cpu_model[128];
    char kernel[256];
    char hostname[72];
};
void report_machine(struct machine_info *m);
void report_machine_json(struct jw *w, const struct machine_info *m);

/* The readable table of one run. */
void report_summary(FILE *f, const struct load_config *cfg, const struct load_result *r);
/* One run as a JSON object under key; per_participant adds the receivers
 * and senders arrays. */
void report_result_json(struct jw *w, const char *key, const struct load_config *cfg,
                        const struct load_result *r, bool per_participant);

/* Figures derived from a result, shared by the table, the JSON and --ramp. */
double report_egress_per_cpu_s(const struct load_result *r);    /* < 0 unknown */
double report_delivered_per_cpu_s(const struct load_result *r); /* < 0 unknown */
/* The server's count of a metrics family (enum metrics_family) per
 * delivered frame, and DATAGRAM frames per UDP packet out; < 0 unknown. */
double report_per_frame(const struct load_result *r, int family);
double report_frames_per_packet(const struct load_result *r);
/* A cluster run: the relays' summed count of a trunk family
 * (METRICS_TRUNK_IN or _OUT) over the window; < 0 unknown. */
double report_trunk(const struct load_result *r, int family);

#endif
