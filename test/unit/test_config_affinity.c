/* [limits] affinity_max_members = auto|N (session 7): parsing (auto, numbers,
 * 0 as off, bad values with a clear error, in the file and on the command
 * line), the resolution against the steering program that loaded (ebpf ->
 * RELAY_AFFINITY_AUTO_MEMBERS, cbpf -> 0, hash -> 0, an explicit N kept
 * under any), and the value in force as relay_affinity_max_members and the
 * /metrics gauge roost_affinity_max_members of a relay started in-process
 * with each program forced (ROOST_STEERING). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "relay/config.h"
#include "relay/metrics.h"
#include "relay/relay.h"
#include "../common/participant.h"

struct errs {
    unsigned n;
    int line[8];
    char key[8][64];
    char msg[8][256];
};

static void collect(void *arg, const char *file, int line, const char *key, const char *msg)
{
    (void)file;
    struct errs *e = arg;
    if (e->n >= 8)
        return;
    e->line[e->n] = line;
    snprintf(e->key[e->n], sizeof(e->key[0]), "%s", key);
    snprintf(e->msg[e->n], sizeof(e->msg[0]), "%s", msg);
    e->n++;
}

static int set(struct config *c, const char *value, char *err, size_t cap)
{
    err[0] = '\0';
    return config_set(c, "affinity_max_members", value, "command line", 0, err, cap);
}

static void test_parse(void **state)
{
    (void)state;
    struct config c;
    char err[128];
    assert_int_equal(config_init(&c), 0);
    /* The default is auto, which a zeroed relay_config means too. */
    assert_int_equal(c.relay.affinity_max_members, RELAY_AFFINITY_AUTO);
    assert_int_equal(RELAY_AFFINITY_AUTO, 0);
    assert_int_equal(set(&c, "8", err, sizeof(err)), 0);
    assert_int_equal(c.relay.affinity_max_members, 8);
    assert_int_equal(set(&c, "auto", err, sizeof(err)), 0);
    assert_int_equal(c.relay.affinity_max_members, RELAY_AFFINITY_AUTO);
    assert_int_equal(set(&c, "1", err, sizeof(err)), 0);
    assert_int_equal(c.relay.affinity_max_members, 1);
    assert_int_equal(set(&c, "AUTO", err, sizeof(err)), 0);
    assert_int_equal(c.relay.affinity_max_members, RELAY_AFFINITY_AUTO);
    /* 0 is off: not auto. */
    assert_int_equal(set(&c, "0", err, sizeof(err)), 0);
    assert_int_equal(c.relay.affinity_max_members, RELAY_OFF);
    assert_int_equal(set(&c, "4294967294", err, sizeof(err)), 0);
    assert_int_equal(c.relay.affinity_max_members, 4294967294u);
    /* Bad values: refused with a message naming both forms; the value
     * before stays. */
    static const char *const bad[] = {"", "eight", "-1", "8x", "auto8", "autox", " 8", "8 ", "0x8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(set(&c, bad[i], err, sizeof(err)), ROOST_EINVAL);
        assert_non_null(strstr(err, "expected a decimal number or auto"));
        assert_int_equal(c.relay.affinity_max_members, 4294967294u);
    }
    /* UINT32_MAX would be RELAY_OFF: out of range, as is anything larger. */
    assert_int_equal(set(&c, "4294967295", err, sizeof(err)), ROOST_ERANGE);
    assert_non_null(strstr(err, "out of range (0..4294967294, or auto)"));
    assert_int_equal(set(&c, "99999999999999999999999", err, sizeof(err)), ROOST_ERANGE);
    config_free(&c);
}

static void test_parse_file(void **state)
{
    (void)state;
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    static const char ok[] = "[limits]\naffinity_max_members = 5\n";
    assert_int_equal(config_load_mem(&c, "a.conf", ok, sizeof(ok) - 1, collect, &e), 0);
    assert_int_equal(c.relay.affinity_max_members, 5);
    static const char au[] = "[limits]\naffinity_max_members = auto\n";
    config_free(&c);
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_load_mem(&c, "b.conf", au, sizeof(au) - 1, collect, &e), 0);
    assert_int_equal(c.relay.affinity_max_members, RELAY_AFFINITY_AUTO);
    config_free(&c);
    assert_int_equal(config_init(&c), 0);
    static const char off[] = "[limits]\naffinity_max_members = 0\n";
    assert_int_equal(config_load_mem(&c, "c.conf", off, sizeof(off) - 1, collect, &e), 0);
    assert_int_equal(c.relay.affinity_max_members, RELAY_OFF);
    config_free(&c);
    assert_int_equal(config_init(&c), 0);
    static const char bad[] = "[limits]\n\naffinity_max_members = some\n";
    assert_int_equal(config_load_mem(&c, "d.conf", bad, sizeof(bad) - 1, collect, &e), 1);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.line[0], 3);
    assert_string_equal(e.key[0], "affinity_max_members");
    assert_non_null(strstr(e.msg[0], "expected a decimal number or auto: 'some'"));
    assert_int_equal(c.relay.affinity_max_members, RELAY_AFFINITY_AUTO);
    config_free(&c);
    /* The key table says so (usage, docs). */
    size_t n;
    const struct config_key *k = config_keys(&n);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(k[i].name, "affinity_max_members") == 0) {
            found = true;
            assert_int_equal(k[i].type, CONFIG_UINT_AUTO);
            assert_string_equal(k[i].def, "auto");
            assert_non_null(strstr(k[i].help, "auto: 8 under ebpf"));
        }
    assert_true(found);
}

static void test_resolve(void **state)
{
    (void)state;
    assert_int_equal(relay_affinity_resolve(RELAY_AFFINITY_AUTO, "ebpf"),
                     RELAY_AFFINITY_AUTO_MEMBERS);
    assert_int_equal(RELAY_AFFINITY_AUTO_MEMBERS, 8);
    assert_int_equal(relay_affinity_resolve(RELAY_AFFINITY_AUTO, "cbpf"), 0);
    assert_int_equal(relay_affinity_resolve(RELAY_AFFINITY_AUTO, "hash"), 0);
    assert_int_equal(relay_affinity_resolve(RELAY_AFFINITY_AUTO, NULL), 0);
    static const char *const modes[] = {"ebpf", "cbpf", "hash"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(relay_affinity_resolve(RELAY_OFF, modes[i]), 0);
        assert_int_equal(relay_affinity_resolve(1, modes[i]), 1);
        assert_int_equal(relay_affinity_resolve(3, modes[i]), 3);
        assert_int_equal(relay_affinity_resolve(8, modes[i]), 8);
        assert_int_equal(relay_affinity_resolve(500, modes[i]), 500);
    }
}

/* A relay with n workers, the given setting and ROOST_STEERING=mode:
 * returns the steering mode in force (static) and the value in force, and
 * checks that the gauge says the same. */
static const char *run_relay(unsigned n, uint32_t setting, const char *mode, uint32_t *in_force)
{
    static char got_mode[16];
    setenv("ROOST_STEERING", mode, 1);
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = n, .affinity_max_members = setting};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    snprintf(got_mode, sizeof(got_mode), "%s", relay_steering_mode(tr.r));
    *in_force = relay_affinity_max_members(tr.r);
    char *m = NULL;
    size_t ml = 0;
    assert_int_equal(metrics_render(tr.r, &m, &ml), 0);
    char want[64];
    snprintf(want, sizeof(want), "\nroost_affinity_max_members %u\n", *in_force);
    assert_non_null(strstr(m, "# TYPE roost_affinity_max_members gauge\n"));
    assert_non_null(strstr(m, want));
    free(m);
    test_relay_stop(&tr);
    printf("# workers=%u setting=%u ROOST_STEERING=%s: steering=%s affinity_max_members=%u\n", n,
           setting, mode, got_mode, *in_force);
    return got_mode;
}

static void test_in_force_and_gauge(void **state)
{
    (void)state;
    const char *saved = getenv("ROOST_STEERING");
    char keep[32] = "";
    if (saved != NULL)
        snprintf(keep, sizeof(keep), "%s", saved);
    uint32_t v;
    /* cbpf attaches without privileges: auto is off there. */
    assert_string_equal(run_relay(2, RELAY_AFFINITY_AUTO, "cbpf", &v), "cbpf");
    assert_int_equal(v, 0);
    assert_string_equal(run_relay(2, RELAY_AFFINITY_AUTO, "hash", &v), "hash");
    assert_int_equal(v, 0);
    /* One worker: nothing to steer (hash), nothing to place. */
    assert_string_equal(run_relay(1, RELAY_AFFINITY_AUTO, "auto", &v), "hash");
    assert_int_equal(v, 0);
    /* An explicit number is kept under any program; 0 (RELAY_OFF) is off. */
    run_relay(2, 5, "cbpf", &v);
    assert_int_equal(v, 5);
    run_relay(2, 3, "hash", &v);
    assert_int_equal(v, 3);
    run_relay(2, RELAY_OFF, "auto", &v);
    assert_int_equal(v, 0);
    /* ebpf needs CAP_BPF + CAP_NET_ADMIN (CI runs as root): auto is
     * RELAY_AFFINITY_AUTO_MEMBERS when it loaded, else the fallback's 0. */
    const char *m = run_relay(2, RELAY_AFFINITY_AUTO, "auto", &v);
    if (strcmp(m, "ebpf") == 0) {
        assert_int_equal(v, RELAY_AFFINITY_AUTO_MEMBERS);
        run_relay(2, 2, "ebpf", &v);
        assert_int_equal(v, 2);
    } else {
        printf("# extended BPF did not load here (steering=%s): auto resolved to 0\n", m);
        assert_int_equal(v, 0);
    }
    if (saved != NULL)
        setenv("ROOST_STEERING", keep, 1);
    else
        unsetenv("ROOST_STEERING");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_in_force_and_gauge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
