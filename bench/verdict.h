/* The verdict of a roost-bench run: OK, FAIL (the relay's fault) or
 * INCONCLUSIVE (the bench's fault), from an aggregated load_result and the
 * SLO of its load_config, with the reasons; and the table of how
 * participants' joins and connections ended (enum load_end_kind).
 *
 * Precedence (docs/BENCH.md): a relay fault (join rejected or timed out,
 * connection closed by the relay, relay process gone) is FAIL whatever the
 * bench did; else a bench fault (send schedule not kept, a bench thread
 * saturated, or a broken SLO that the time the machine stalled a bench
 * thread can explain) is INCONCLUSIVE; else a broken SLO is FAIL; else OK.
 *
 * Pure functions of their arguments; any thread. */
#ifndef ROOST_BENCH_VERDICT_H
#define ROOST_BENCH_VERDICT_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/load.h"

/* Sets res->verdict, relay_fault, inconclusive, the SLO fields (p99_ns,
 * slo_p99_met, slo_loss_met) and the reasons, from the other fields of an
 * aggregated result (totals, ratios, threads, ends, latency, relay_gone). */
void verdict_judge(const struct load_config *cfg, struct load_result *res);

/* "OK", "FAIL", "INCONCLUSIVE". */
const char *verdict_name(enum load_verdict v);

/* Counts n ends of (kind, joined, code) in ends[*n_ends] (a full table
 * merges into its last entry). */
void verdict_end_add(struct load_end *ends, unsigned *n_ends, enum load_end_kind kind, bool joined,
                     uint64_t code, uint64_t n);

#endif
