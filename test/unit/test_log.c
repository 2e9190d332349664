/* Logging (lib/core/log): level parsing, threshold filtering, the per-thread
 * tag, one line per call, truncation that keeps the newline. Output goes to
 * a pipe through log_set_fd and is read back with a non-blocking read: every
 * log call is one write(2) that has completed when it returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"

#define LOG_LINE_MAX 1024 /* log.c formats into a buffer of this size */

static int fds[2] = {-1, -1};
static char got[65536];

static int setup(void **state)
{
    (void)state;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
        return -1;
    log_set_fd(fds[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_fd(-1);
    log_set_level(LOG_LEVEL_INFO);
    log_set_thread_tag("main");
    close(fds[0]);
    close(fds[1]);
    return 0;
}

/* Everything written since the last drain, NUL-terminated; returns length. */
static size_t drain(void)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fds[0], got + n, sizeof(got) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    got[n] = '\0';
    return n;
}

static unsigned count_lines(const char *s)
{
    unsigned n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

static void test_parse_level(void **state)
{
    (void)state;
    enum log_level l = LOG_LEVEL_INFO;
    assert_int_equal(log_parse_level("error", &l), 0);
    assert_int_equal(l, LOG_LEVEL_ERROR);
    assert_int_equal(log_parse_level("WARN", &l), 0);
    assert_int_equal(l, LOG_LEVEL_WARN);
    assert_int_equal(log_parse_level("Info", &l), 0);
    assert_int_equal(l, LOG_LEVEL_INFO);
    assert_int_equal(log_parse_level("debug", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);

    /* Rejected names leave the output untouched. */
    l = LOG_LEVEL_WARN;
    assert_int_equal(log_parse_level("verbose", &l), ROOST_EINVAL);
    assert_int_equal(log_parse_level("", &l), ROOST_EINVAL);
    assert_int_equal(log_parse_level("info ", &l), ROOST_EINVAL);
    assert_int_equal(log_parse_level("err", &l), ROOST_EINVAL);
    assert_int_equal(l, LOG_LEVEL_WARN);
}

static void test_threshold(void **state)
{
    (void)state;
    drain();
    log_set_level(LOG_LEVEL_WARN);
    assert_int_equal(log_get_level(), LOG_LEVEL_WARN);
    log_debug("d %d", 1);
    log_info("i %d", 2);
    assert_int_equal(drain(), 0);
    log_warn("w %d", 3);
    log_error("e %d", 4);
    drain();
    assert_int_equal(count_lines(got), 2);
    assert_non_null(strstr(got, "level=warn worker=main w 3\n"));
    assert_non_null(strstr(got, "level=error worker=main e 4\n"));

    log_set_level(LOG_LEVEL_ERROR);
    log_warn("hidden");
    assert_int_equal(drain(), 0);

    log_set_level(LOG_LEVEL_DEBUG);
    log_debug("d %s", "shown");
    drain();
    assert_int_equal(count_lines(got), 1);
    assert_non_null(strstr(got, "level=debug worker=main d shown\n"));
}

static void *tagged_thread(void *arg)
{
    (void)arg;
    log_info("from the other thread");
    log_set_thread_tag("w3");
    log_info("tagged");
    return NULL;
}

static void test_thread_tag(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    drain();
    log_set_thread_tag("w12");
    log_info("hello");
    drain();
    assert_non_null(strstr(got, " level=info worker=w12 hello\n"));

    /* The tag is per thread: a new thread starts as "main" and its own tag
     * does not leak into ours. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, tagged_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    log_info("after");
    drain();
    assert_int_equal(count_lines(got), 3);
    assert_non_null(strstr(got, "worker=main from the other thread\n"));
    assert_non_null(strstr(got, "worker=w3 tagged\n"));
    assert_non_null(strstr(got, "worker=w12 after\n"));

    /* Tags longer than 15 bytes are cut. */
    log_set_thread_tag("a-very-long-thread-tag");
    log_info("x");
    drain();
    assert_non_null(strstr(got, " worker=a-very-long-thr x\n"));
}

static void test_one_line_per_call(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    log_set_thread_tag("main");
    drain();
    for (int i = 0; i < 50; i++)
        log_info("msg=%d", i);
    drain();
    assert_int_equal(count_lines(got), 50);
    /* Every line is complete and in order: ts= first, our message last. */
    char *save = NULL;
    int i = 0;
    for (char *line = strtok_r(got, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), i++) {
        assert_memory_equal(line, "ts=", 3);
        char want[32];
        snprintf(want, sizeof(want), " worker=main msg=%d", i);
        size_t ll = strlen(line), wl = strlen(want);
        assert_true(ll > wl);
        assert_string_equal(line + ll - wl, want);
    }
    assert_int_equal(i, 50);
}

static void test_truncation(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    drain();
    char *big = malloc(4000);
    assert_non_null(big);
    memset(big, 'x', 3999);
    big[3999] = '\0';
    log_info("%s", big);
    log_info("next");
    size_t n = drain();
    free(big);

    assert_int_equal(count_lines(got), 2);
    char *nl = strchr(got, '\n');
    assert_non_null(nl);
    size_t first = (size_t)(nl - got) + 1;
    /* Cut to the buffer, still ending in a newline, and the cut-off message
     * did not bleed into the next line. */
    assert_true(first <= LOG_LINE_MAX);
    assert_true(first > LOG_LINE_MAX - 4);
    assert_int_equal(nl[-1], 'x');
    assert_memory_equal(got, "ts=", 3);
    assert_memory_equal(nl + 1, "ts=", 3);
    assert_int_equal(got[n - 1], '\n');
    assert_non_null(strstr(nl + 1, " next\n"));

    /* Truncation leaves nothing behind for the next call. */
    log_info("%s", "short");
    drain();
    assert_int_equal(count_lines(got), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level), cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_thread_tag),  cmocka_unit_test(test_one_line_per_call),
        cmocka_unit_test(test_truncation),
    };
    return cmocka_run_group_tests_name("log", tests, setup, teardown);
}
