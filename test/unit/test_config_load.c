/* relay/config loading from memory (config_load_mem, the fuzz target's
 * entry point) and the line reader both loaders share: same results as the
 * file loader, long lines and NUL bytes reported and skipped whole (they
 * used to reach inih in pieces, so the tail of a long comment was parsed as
 * a key and later line numbers were wrong). */
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
    } v[16];
};

static void collect(void *arg, const char *file, int line, const char *key, const char *msg)
{
    struct errs *e = arg;
    if (e->n >= 16)
        return;
    snprintf(e->v[e->n].file, sizeof(e->v[e->n].file), "%s", file ? file : "");
    e->v[e->n].line = line;
    snprintf(e->v[e->n].key, sizeof(e->v[e->n].key), "%s", key);
    snprintf(e->v[e->n].msg, sizeof(e->v[e->n].msg), "%s", msg);
    e->n++;
}

static int load(struct config *c, struct errs *e, const char *text, size_t len)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(config_init(c), 0);
    return config_load_mem(c, "mem.conf", text, len, collect, e);
}

static void test_mem_like_file(void **state)
{
    (void)state;
    const char *text = "[server]\n"
                       "port = 5000\n"
                       "workers = many\n"
                       "[limits]\n"
                       "max_members = 8\n"
                       "[server]\n"
                       "listen = ::1"; /* no final newline */
    char path[128];
    snprintf(path, sizeof(path), "/tmp/roost-test-config-load-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);

    struct config m, f;
    struct errs em, ef = {0};
    assert_int_equal(load(&m, &em, text, strlen(text)), 1);
    assert_int_equal(config_init(&f), 0);
    assert_int_equal(config_load_file(&f, path, collect, &ef), 1);
    assert_int_equal(em.n, 1);
    assert_int_equal(ef.n, 1);
    assert_string_equal(em.v[0].file, "mem.conf");
    assert_int_equal(em.v[0].line, 3);
    assert_int_equal(ef.v[0].line, 3);
    assert_string_equal(em.v[0].key, "workers");
    assert_string_equal(em.v[0].msg, ef.v[0].msg);
    assert_int_equal(m.relay.port, 5000);
    assert_int_equal(m.relay.max_members, 8);
    assert_string_equal(m.relay.addr, "::1");
    assert_string_equal(f.relay.addr, "::1");
    config_free(&m);
    config_free(&f);
    unlink(path);

    /* Empty input: nothing set, no error. */
    assert_int_equal(load(&m, &em, "", 0), 0);
    assert_int_equal(m.relay.port, 4433);
    config_free(&m);
}

static void test_long_line_skipped_whole(void **state)
{
    (void)state;
    /* A comment whose 200th byte starts "port = 9": before the fix, inih
     * got it in 199-byte pieces, set port = 9 from the tail and then refused
     * line 3 as "set twice". */
    char text[1024];
    char pad[300];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    int n = snprintf(text, sizeof(text), "[server]\n# %.196s port = 9\nport = 10\n", pad);
    struct config c;
    struct errs e;
    assert_int_equal(load(&c, &e, text, (size_t)n), 1);
    assert_int_equal(e.v[0].line, 2);
    assert_string_equal(e.v[0].key, "");
    assert_non_null(strstr(e.v[0].msg, "line longer than"));
    assert_int_equal(c.relay.port, 10); /* from line 3, and only from there */
    config_free(&c);

    /* A long value is refused, not cut short; the next line keeps its number. */
    n = snprintf(text, sizeof(text), "[server]\nstate_dir = /%s\nworkers = x\n", pad);
    assert_int_equal(load(&c, &e, text, (size_t)n), 2);
    assert_int_equal(e.v[0].line, 2);
    assert_non_null(strstr(e.v[0].msg, "line longer than"));
    assert_int_equal(e.v[1].line, 3);
    assert_string_equal(e.v[1].key, "workers");
    assert_null(c.relay.state_dir);
    config_free(&c);

    /* The longest line that fits (199 bytes before the newline) is read. */
    char path199[200];
    memset(path199, 'p', sizeof(path199));
    int plen = 199 - (int)strlen("state_dir = /");
    n = snprintf(text, sizeof(text), "[server]\nstate_dir = /%.*s\n", plen, path199);
    assert_int_equal(load(&c, &e, text, (size_t)n), 0);
    assert_non_null(c.relay.state_dir);
    assert_int_equal(strlen(c.relay.state_dir), (size_t)plen + 1);
    config_free(&c);
    /* ... also as the last line without a newline. */
    assert_int_equal(load(&c, &e, text, (size_t)n - 1), 0);
    assert_non_null(c.relay.state_dir);
    config_free(&c);
}

static void test_nul_byte(void **state)
{
    (void)state;
    /* "port = 44\0" + "33": used to set port 44 silently. */
    static const char text[] = "[server]\nport = 44\00033\nworkers = 2\n";
    struct config c;
    struct errs e;
    assert_int_equal(load(&c, &e, text, sizeof(text) - 1), 1);
    assert_int_equal(e.v[0].line, 2);
    assert_non_null(strstr(e.v[0].msg, "NUL"));
    assert_int_equal(c.relay.port, 4433);
    assert_int_equal(c.relay.n_workers, 2);
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_like_file),
        cmocka_unit_test(test_long_line_skipped_whole),
        cmocka_unit_test(test_nul_byte),
    };
    return cmocka_run_group_tests_name("config_load", tests, NULL, NULL);
}
