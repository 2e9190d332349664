/* relay/config: defaults, units, INI parsing with file:line:key errors for
 * every kind of mistake, command-line overrides and whole-config checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "relay/config.h"

struct errs {
    unsigned n;
    struct {
        char file[256];
        int line;
        char key[64];
        char msg[256];
    } v[32];
};

static void collect(void *arg, const char *file, int line, const char *key, const char *msg)
{
    struct errs *e = arg;
    if (e->n >= 32)
        return;
    snprintf(e->v[e->n].file, sizeof(e->v[e->n].file), "%s", file ? file : "");
    e->v[e->n].line = line;
    snprintf(e->v[e->n].key, sizeof(e->v[e->n].key), "%s", key);
    snprintf(e->v[e->n].msg, sizeof(e->v[e->n].msg), "%s", msg);
    e->n++;
}

static bool has_err(const struct errs *e, int line, const char *key, const char *needle)
{
    for (unsigned i = 0; i < e->n; i++)
        if (e->v[i].line == line && strcmp(e->v[i].key, key) == 0 &&
            strstr(e->v[i].msg, needle) != NULL)
            return true;
    return false;
}

static void write_file(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/roost-test-config-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_string_equal(c.relay.addr, "127.0.0.1");
    assert_int_equal(c.relay.port, 4433);
    assert_int_equal(c.relay.max_rooms, 10000);
    assert_int_equal(c.relay.max_members, 500);
    assert_int_equal(c.relay.idle_timeout_ns, 30000000000ull);
    assert_int_equal(c.relay.sock_buf, 4 << 20);
    assert_int_equal(c.drain_timeout_ns, 30000000000ull);
    assert_int_equal(c.relay.drain_ms, 30000);
    assert_true(c.admin);
    assert_int_equal(c.admin_port, 9464);
    assert_null(c.relay.cert_file);
    assert_null(c.relay.cpus);
    config_free(&c);
}

static void test_units(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(config_parse_duration("250ms", &v), 0);
    assert_int_equal(v, 250000000ull);
    assert_int_equal(config_parse_duration("30s", &v), 0);
    assert_int_equal(v, 30000000000ull);
    assert_int_equal(config_parse_duration("2m", &v), 0);
    assert_int_equal(v, 120000000000ull);
    assert_int_equal(config_parse_duration("1h", &v), 0);
    assert_int_equal(v, 3600000000000ull);
    assert_int_equal(config_parse_duration("7", &v), 0);
    assert_int_equal(v, 7000000000ull);
    assert_int_equal(config_parse_duration("5 s", &v), ROOST_EINVAL);
    assert_int_equal(config_parse_duration("-1s", &v), ROOST_EINVAL);
    assert_int_equal(config_parse_duration("3d", &v), ROOST_EINVAL);
    assert_int_equal(config_parse_duration("99999999999999999999h", &v), ROOST_ERANGE);
    assert_int_equal(config_parse_size("64k", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(config_parse_size("4M", &v), 0);
    assert_int_equal(v, 4u << 20);
    assert_int_equal(config_parse_size("1GiB", &v), 0);
    assert_int_equal(v, 1u << 30);
    assert_int_equal(config_parse_size("100", &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(config_parse_size("1t", &v), ROOST_EINVAL);
}

static void test_set_values(void **state)
{
    (void)state;
    struct config c;
    char err[256];
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_set(&c, "cpus", "0,2-4", "x", 1, err, sizeof(err)), 0);
    assert_int_equal(c.relay.n_cpus, 4);
    assert_int_equal(c.relay.cpus[3], 4);
    assert_int_equal(config_set(&c, "force_retry", "yes", "x", 1, err, sizeof(err)), 0);
    assert_true(c.relay.force_retry);
    assert_int_equal(config_set(&c, "udp_buffer", "8m", "x", 1, err, sizeof(err)), 0);
    assert_int_equal(c.relay.sock_buf, 8 << 20);
    assert_int_equal(config_set(&c, "drain_timeout", "1500ms", "x", 1, err, sizeof(err)), 0);
    assert_int_equal(c.relay.drain_ms, 1500);
    assert_int_equal(config_set(&c, "nope", "1", "x", 1, err, sizeof(err)), ROOST_ENOENT);
    assert_int_equal(config_set(&c, "max_rooms", "0", "x", 1, err, sizeof(err)), ROOST_ERANGE);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(config_set(&c, "udp_buffer", "1k", "x", 1, err, sizeof(err)), ROOST_ERANGE);
    assert_int_equal(config_set(&c, "force_retry", "maybe", "x", 1, err, sizeof(err)),
                     ROOST_EINVAL);
    assert_int_equal(config_set(&c, "cpus", "1-", "x", 1, err, sizeof(err)), ROOST_EINVAL);
    assert_int_equal(config_set(&c, "log_level", "loud", "x", 1, err, sizeof(err)), ROOST_EINVAL);
    /* A failed set leaves the old value. */
    assert_int_equal(c.relay.n_cpus, 4);
    assert_true(c.relay.force_retry);
    config_free(&c);
}

static void test_file_ok_and_override(void **state)
{
    (void)state;
    char path[128];
    write_file(path, sizeof(path),
               "; a comment\n"
               "# another\n"
               "[server]\n"
               "listen = ::1\n"
               "port = 5000   ; inline comment\n"
               "workers = 3\n"
               "\n"
               "[tls]\n"
               "cert = /etc/roost/cert.pem\n"
               "key = /etc/roost/key.pem\n"
               "[limits]\n"
               "max_members = 8\n"
               "idle_timeout = 45s\n"
               "[admin]\n"
               "admin = off\n"
               "[drain]\n"
               "drain_timeout = 2m\n");
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_load_file(&c, path, collect, &e), 0);
    assert_int_equal(e.n, 0);
    assert_string_equal(c.relay.addr, "::1");
    assert_int_equal(c.relay.port, 5000);
    assert_int_equal(c.relay.n_workers, 3);
    assert_string_equal(c.relay.cert_file, "/etc/roost/cert.pem");
    assert_int_equal(c.relay.max_members, 8);
    assert_int_equal(c.relay.idle_timeout_ns, 45000000000ull);
    assert_false(c.admin);
    assert_int_equal(c.drain_timeout_ns, 120000000000ull);
    /* The command line wins over the file (main applies it after). */
    char err[128];
    assert_int_equal(config_set(&c, "port", "6000", "command line", 0, err, sizeof(err)), 0);
    assert_int_equal(c.relay.port, 6000);
    config_free(&c);
    unlink(path);
}

static void test_file_errors(void **state)
{
    (void)state;
    char path[128];
    write_file(path, sizeof(path),
               "[server]\n"                /* 1 */
               "port = 70000\n"            /* 2 range */
               "workers = many\n"          /* 3 not a number */
               "[limits]\n"                /* 4 */
               "idle_timeout = 10 years\n" /* 5 bad duration */
               "max_rooms = 10\n"          /* 6 ok */
               "frobnicate = 1\n"          /* 7 unknown key */
               "max_rooms = 11\n"          /* 8 twice */
               "[admin]\n"                 /* 9 */
               "max_members = 5\n"         /* 10 wrong section */
               "[server]\n"                /* 11 */
               "udp_buffer = lots\n"       /* 12 bad size */
               "just text\n");             /* 13 syntax */
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    int n = config_load_file(&c, path, collect, &e);
    assert_int_equal(n, 8);
    assert_int_equal(e.n, 8);
    for (unsigned i = 0; i < e.n; i++)
        assert_string_equal(e.v[i].file, path);
    assert_true(has_err(&e, 2, "port", "out of range"));
    assert_true(has_err(&e, 3, "workers", "decimal"));
    assert_true(has_err(&e, 5, "idle_timeout", "duration"));
    assert_true(has_err(&e, 7, "frobnicate", "unknown key"));
    assert_true(has_err(&e, 8, "max_rooms", "set twice (first on line 6)"));
    assert_true(has_err(&e, 10, "max_members", "section [limits]"));
    assert_true(has_err(&e, 12, "udp_buffer", "size"));
    assert_true(has_err(&e, 13, "", "syntax error"));
    assert_int_equal(c.relay.max_rooms, 10); /* the first value stands */
    config_free(&c);
    unlink(path);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_load_file(&c, "/nonexistent/roost.conf", collect, &e), ROOST_ENOENT);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.v[0].line, 0);
    config_free(&c);
}

static void test_validate(void **state)
{
    (void)state;
    char path[128];
    write_file(path, sizeof(path),
               "[tls]\n"
               "cert = /nonexistent/cert.pem\n"
               "key = /nonexistent/key.pem\n"
               "[auth]\n"
               "token_keys = /nonexistent/keys\n"
               "[server]\n"
               "listen = not-an-address\n");
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_load_file(&c, path, collect, &e), 0);
    int n = config_validate(&c, collect, &e);
    assert_int_equal(n, 3);
    assert_true(has_err(&e, 2, "cert", "cannot read"));
    assert_true(has_err(&e, 5, "token_keys", "No such file"));
    assert_true(has_err(&e, 7, "listen", "numeric"));
    config_free(&c);

    /* Nothing given: the required keys are named. */
    struct errs e2 = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_validate(&c, collect, &e2), 3);
    assert_true(has_err(&e2, 0, "cert", "required"));
    assert_true(has_err(&e2, 0, "key", "required"));
    assert_true(has_err(&e2, 0, "token_keys", "required"));
    config_free(&c);
    unlink(path);
}

static void test_key_table(void **state)
{
    (void)state;
    size_t n;
    const struct config_key *k = config_keys(&n);
    assert_true(n > 20);
    struct config c;
    assert_int_equal(config_init(&c), 0);
    for (size_t i = 0; i < n; i++) {
        char err[128];
        /* Every default parses, and names are unique. */
        assert_int_equal(config_set(&c, k[i].name, k[i].def, "t", 1, err, sizeof(err)), 0);
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(k[i].name, k[j].name);
    }
    config_free(&c);
}

/* Timer slack of the turn cadence (session 6): default (session 7:
 * RELAY_DEFAULT_TIMER_SLACK_US, the same as a zeroed relay_config), file,
 * 0 is off, range. */
static void test_timer_slack_key(void **state)
{
    (void)state;
    struct config c;
    char err[128];
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(relay_timer_slack_us(&c.relay), RELAY_DEFAULT_TIMER_SLACK_US);
    struct relay_config zero = {0};
    assert_int_equal(relay_timer_slack_us(&zero), RELAY_DEFAULT_TIMER_SLACK_US);
    static const char ini[] = "[server]\ntimer_slack_us = 250\n";
    struct errs e = {0};
    assert_int_equal(config_load_mem(&c, "m.conf", ini, sizeof(ini) - 1, collect, &e), 0);
    assert_int_equal(c.relay.timer_slack_us, 250);
    assert_int_equal(relay_timer_slack_us(&c.relay), 250);
    assert_int_equal(config_set(&c, "timer_slack_us", "0", "command line", 0, err, sizeof(err)), 0);
    assert_int_equal(relay_timer_slack_us(&c.relay), 0);
    assert_int_equal(config_set(&c, "timer_slack_us", "500", "command line", 0, err, sizeof(err)),
                     0);
    assert_int_equal(c.relay.timer_slack_us, 500);
    assert_int_not_equal(
        config_set(&c, "timer_slack_us", "100001", "command line", 0, err, sizeof(err)), 0);
    config_free(&c);
}

/* Turn cadence (issue 13): default (the same as a zeroed relay_config),
 * file, 0 is off (RELAY_OFF in relay_config), range. */
static void test_turn_batch_key(void **state)
{
    (void)state;
    struct config c;
    char err[128];
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(relay_turn_batch_us(&c.relay), RELAY_DEFAULT_TURN_BATCH_US);
    struct relay_config zero = {0};
    assert_int_equal(relay_turn_batch_us(&zero), RELAY_DEFAULT_TURN_BATCH_US);
    static const char ini[] = "[server]\nturn_batch_us = 0\n";
    struct errs e = {0};
    assert_int_equal(config_load_mem(&c, "m.conf", ini, sizeof(ini) - 1, collect, &e), 0);
    assert_int_equal(c.relay.turn_batch_us, RELAY_OFF);
    assert_int_equal(relay_turn_batch_us(&c.relay), 0);
    assert_int_equal(config_set(&c, "turn_batch_us", "700", "command line", 0, err, sizeof(err)),
                     0);
    assert_int_equal(c.relay.turn_batch_us, 700);
    assert_int_equal(relay_turn_batch_us(&c.relay), 700);
    assert_int_not_equal(
        config_set(&c, "turn_batch_us", "100001", "command line", 0, err, sizeof(err)), 0);
    config_free(&c);
}

/* The room tuning and admin limits of issue 16/19: defaults, file, units. */
static void test_room_and_admin_keys(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(c.relay.keyframe_cap, 200u * 1024u);
    assert_int_equal(c.relay.prefill_ms, 0);
    assert_int_equal(c.relay.kfreq_window_ns, 200ull * 1000000ull);
    assert_int_equal(c.relay.quality_interval_ns, 1000000000ull);
    assert_int_equal(c.admin_conn_limit, 1024);
    assert_int_equal(c.admin_conn_timeout_ns, 5000000000ull);
    static const char ini[] = "[rooms]\nkeyframe_cap = 1m\nprefill = 240ms\n"
                              "keyframe_request_window = 500ms\nquality_interval = 2s\n"
                              "[admin]\nadmin_conn_limit = 16\nadmin_conn_timeout = 2s\n";
    struct errs e = {0};
    assert_int_equal(config_load_mem(&c, "m.conf", ini, sizeof(ini) - 1, collect, &e), 0);
    assert_int_equal(c.relay.keyframe_cap, 1u << 20);
    assert_int_equal(c.relay.prefill_ms, 240);
    assert_int_equal(c.relay.kfreq_window_ns, 500ull * 1000000ull);
    assert_int_equal(c.relay.quality_interval_ns, 2000000000ull);
    assert_int_equal(c.admin_conn_limit, 16);
    assert_int_equal(c.admin_conn_timeout_ns, 2000000000ull);
    char err[128];
    assert_int_equal(config_set(&c, "prefill", "11s", "t", 1, err, sizeof(err)), ROOST_ERANGE);
    assert_int_equal(config_set(&c, "quality_interval", "10ms", "t", 1, err, sizeof(err)),
                     ROOST_ERANGE);
    assert_int_equal(config_set(&c, "keyframe_cap", "12", "t", 1, err, sizeof(err)), ROOST_ERANGE);
    assert_int_equal(config_set(&c, "admin_conn_timeout", "0", "t", 1, err, sizeof(err)),
                     ROOST_ERANGE);
    /* A room key in the wrong section is named. */
    static const char bad[] = "[limits]\nprefill = 100ms\n";
    struct errs e2 = {0};
    assert_int_equal(config_load_mem(&c, "b.conf", bad, sizeof(bad) - 1, collect, &e2), 1);
    assert_true(has_err(&e2, 2, "prefill", "belongs in section [rooms]"));
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_set_values),
        cmocka_unit_test(test_file_ok_and_override),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_room_and_admin_keys),
        cmocka_unit_test(test_turn_batch_key),
        cmocka_unit_test(test_timer_slack_key),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
