/* A process's CPU time, CPU wait, RSS and liveness from /proc: how the
 * bench samples the relay it measures (by its pid). */
#include "bench/procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* /proc/PID/stat, past the command name (which may hold spaces): the
 * text after its closing ')' in buf, or NULL when unreadable. */
static const char *stat_fields(int pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strrchr(buf, ')');
}

double procstat_cpu_s(int pid)
{
    char buf[2048];
    const char *p = stat_fields(pid, buf, sizeof(buf));
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

double procstat_runq_s(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    unsigned long long sum = 0;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p2[300];
        snprintf(p2, sizeof(p2), "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(p2, "r");
        if (f == NULL)
            continue; /* the thread ended meanwhile */
        unsigned long long run = 0, wait = 0;
        if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
            sum += wait;
            n++;
        }
        fclose(f);
    }
    closedir(d);
    return n > 0 ? (double)sum / 1e9 : -1;
}

bool procstat_alive(int pid)
{
    char buf[512];
    const char *p = stat_fields(pid, buf, sizeof(buf));
    /* State Z (zombie) or X (dead): it exited, its parent has not reaped it. */
    return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

long procstat_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
