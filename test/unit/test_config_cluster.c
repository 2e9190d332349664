/* The [cluster] configuration keys (relay/config_cluster.c): off by
 * default, redis/trunk HOST:PORT parsing, ids and prefixes checked at set
 * time, and what config_validate requires once redis is set (relay_id,
 * pid_prefix, a reachable trunk address, join_wait below the JOIN
 * deadline, timings that keep the lease guard); the INI section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "relay/config.h"

struct errs {
    unsigned n;
    char key[16][64];
    char msg[16][256];
};

static void collect(void *arg, const char *file, int line, const char *key, const char *msg)
{
    (void)file;
    (void)line;
    struct errs *e = arg;
    if (e->n >= 16)
        return;
    snprintf(e->key[e->n], sizeof(e->key[0]), "%s", key);
    snprintf(e->msg[e->n], sizeof(e->msg[0]), "%s", msg);
    e->n++;
}

static bool has(const struct errs *e, const char *key, const char *needle)
{
    for (unsigned i = 0; i < e->n; i++)
        if (strcmp(e->key[i], key) == 0 && strstr(e->msg[i], needle) != NULL)
            return true;
    return false;
}

static int set(struct config *c, const char *k, const char *v)
{
    char err[128];
    return config_set(c, k, v, "t", 1, err, sizeof(err));
}

/* Only the cluster's errors: the rest of a config (cert, keys) is not set. */
static unsigned cluster_errors(const struct config *c, struct errs *e)
{
    memset(e, 0, sizeof(*e));
    config_validate(c, collect, e);
    unsigned n = 0;
    static const char *const ours[] = {"redis",        "relay_id",        "pid_prefix",
                                       "trunk_listen", "trunk_advertise", "redis_password_file",
                                       "lease",        "join_wait"};
    for (unsigned i = 0; i < e->n; i++)
        for (unsigned k = 0; k < sizeof(ours) / sizeof(ours[0]); k++)
            n += strcmp(e->key[i], ours[k]) == 0;
    return n;
}

static void test_off_by_default(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_string_equal(c.relay.cluster.redis_host, "");
    assert_string_equal(c.relay.cluster_trunk_listen, "");
    assert_string_equal(c.relay.cluster.key_prefix, "roost");
    assert_int_equal(c.relay.cluster.timing.lease_ms, 5000);
    assert_int_equal(c.relay.cluster.timing.wait_ms, 2000);
    struct errs e;
    assert_int_equal(cluster_errors(&c, &e), 0);
    config_free(&c);
}

static void test_values(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(set(&c, "redis", "10.0.0.1:6379"), 0);
    assert_string_equal(c.relay.cluster.redis_host, "10.0.0.1");
    assert_int_equal(c.relay.cluster.redis_port, 6379);
    assert_int_equal(set(&c, "redis", "[::1]:7000"), 0);
    assert_string_equal(c.relay.cluster.redis_host, "::1");
    assert_int_equal(set(&c, "redis", "redis.internal:6380"), 0);
    assert_string_equal(c.relay.cluster.redis_host, "redis.internal");
    assert_int_equal(set(&c, "redis", "10.0.0.1"), ROOST_EINVAL);
    assert_int_equal(set(&c, "redis", "::1:6379"), ROOST_EINVAL);
    assert_int_equal(set(&c, "redis", "h:0"), ROOST_EINVAL);
    assert_int_equal(set(&c, "relay_id", "relay-1"), 0);
    assert_string_equal(c.relay.cluster_relay_id, "relay-1");
    assert_int_equal(set(&c, "relay_id", "bad id"), ROOST_EINVAL);
    assert_int_equal(set(&c, "relay_id", "x23456789012345678901234567890123"), ROOST_EINVAL);
    assert_int_equal(set(&c, "pid_prefix", "255"), 0);
    assert_int_equal(c.relay.cluster.pid_prefix, 255);
    assert_int_equal(set(&c, "pid_prefix", "256"), ROOST_ERANGE);
    assert_int_equal(set(&c, "trunk_listen", "0.0.0.0:4434"), 0);
    assert_string_equal(c.relay.cluster_trunk_listen, "0.0.0.0:4434");
    assert_int_equal(set(&c, "trunk_listen", "4434"), ROOST_EINVAL);
    assert_int_equal(set(&c, "cluster_secret_file", "/etc/roost/s"), 0);
    assert_string_equal(c.relay.cluster_secret_file, "/etc/roost/s");
    assert_int_equal(set(&c, "key_prefix", "a:b"), ROOST_EINVAL);
    assert_int_equal(set(&c, "lease", "2s"), 0);
    assert_int_equal(c.relay.cluster.timing.lease_ms, 2000);
    assert_int_equal(set(&c, "lease", "100ms"), ROOST_ERANGE);
    assert_int_equal(set(&c, "join_wait", "750ms"), 0);
    assert_int_equal(c.relay.cluster.timing.wait_ms, 750);
    assert_int_equal(set(&c, "redis_timeout", "250ms"), 0);
    assert_int_equal(c.relay.cluster.timing.cmd_timeout_ms, 250);
    assert_int_equal(c.relay.cluster.timing.connect_timeout_ms, 250);
    config_free(&c);
}

static void test_validate(void **state)
{
    (void)state;
    struct config c;
    struct errs e;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(set(&c, "redis", "127.0.0.1:6379"), 0);
    assert_int_equal(cluster_errors(&c, &e), 3);
    assert_true(has(&e, "relay_id", "required"));
    assert_true(has(&e, "pid_prefix", "required"));
    assert_true(has(&e, "trunk_listen", "required"));
    assert_int_equal(set(&c, "relay_id", "r1"), 0);
    assert_int_equal(set(&c, "pid_prefix", "1"), 0);
    assert_int_equal(set(&c, "trunk_listen", "0.0.0.0:4433"), 0);
    assert_int_equal(cluster_errors(&c, &e), 1);
    assert_true(has(&e, "trunk_listen", "wildcard"));
    assert_int_equal(set(&c, "trunk_advertise", "10.0.0.5:4434"), 0);
    assert_int_equal(cluster_errors(&c, &e), 0);
    /* trunks ride the relay's QUIC port: trunk_listen must name it (the
     * advertised port may differ, behind NAT) */
    assert_int_equal(set(&c, "trunk_listen", "0.0.0.0:4434"), 0);
    assert_int_equal(cluster_errors(&c, &e), 1);
    assert_true(has(&e, "trunk_listen", "not the relay's QUIC port 4433"));
    assert_int_equal(set(&c, "port", "4434"), 0);
    assert_int_equal(cluster_errors(&c, &e), 0);
    assert_int_equal(set(&c, "port", "4433"), 0);
    assert_int_equal(set(&c, "trunk_listen", "0.0.0.0:4433"), 0);
    assert_int_equal(set(&c, "join_wait", "5s"), 0); /* = handshake_timeout */
    assert_int_equal(cluster_errors(&c, &e), 1);
    assert_true(has(&e, "join_wait", "handshake_timeout"));
    assert_int_equal(set(&c, "join_wait", "1s"), 0);
    assert_int_equal(set(&c, "redis_password", "x"), 0);
    assert_int_equal(set(&c, "redis_password_file", "/nonexistent/pw"), 0);
    assert_int_equal(cluster_errors(&c, &e), 2);
    assert_true(has(&e, "redis_password_file", "not both"));
    assert_true(has(&e, "redis_password_file", "cannot read"));
    config_free(&c);
}

static void test_ini_section(void **state)
{
    (void)state;
    static const char ini[] = "[cluster]\nredis = 127.0.0.1:6379\nrelay_id = a\npid_prefix = 7\n"
                              "trunk_listen = 127.0.0.1:4434\n[server]\nrelay_id = b\n";
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_load_mem(&c, "t.conf", ini, sizeof(ini) - 1, collect, &e), 1);
    assert_true(has(&e, "relay_id", "belongs in section [cluster]"));
    assert_string_equal(c.relay.cluster_relay_id, "a");
    assert_int_equal(c.relay.cluster.pid_prefix, 7);
    size_t n;
    const struct config_key *k = config_keys(&n);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(k[i].name, "join_wait") == 0 && strcmp(k[i].section, "cluster") == 0;
    assert_true(found);
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_by_default),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_ini_section),
    };
    return cmocka_run_group_tests_name("config_cluster", tests, NULL, NULL);
}
