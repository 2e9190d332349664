/* Logging: levels, a per-thread tag (the worker id), one line per call to
 * stderr in logfmt (`ts= level= worker= msg=`). Formats into a stack buffer
 * and writes with one write(2): no allocation, safe on any thread. Per-packet
 * paths must not log. */
#ifndef ROOST_CORE_LOG_H
#define ROOST_CORE_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

/* Process-wide threshold; messages above it are skipped before formatting. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or ROOST_EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

/* Tag of the calling thread, e.g. "w0" for worker 0, "main"; the string must
 * outlive the thread (copied into a thread-local buffer, max 15 bytes). */
void log_set_thread_tag(const char *tag);

/* Redirect output (tests). fd -1 restores stderr. */
void log_set_fd(int fd);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap);

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
