/* /proc readings of another process (the relay under measurement). */
#ifndef ROOST_BENCH_PROCSTAT_H
#define ROOST_BENCH_PROCSTAT_H

#include <stdbool.h>

/* CPU time (utime + stime) of process pid in seconds; < 0 when unreadable. */
double procstat_cpu_s(int pid);
/* Time all the process's threads spent runnable but waiting for a CPU
 * (schedstat run_delay), in seconds; < 0 when unreadable. */
double procstat_runq_s(int pid);
/* VmRSS in KiB; < 0 when unreadable. */
long procstat_rss_kb(int pid);
/* The process exists and is not a zombie. */
bool procstat_alive(int pid);

#endif
