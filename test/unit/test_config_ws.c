/* The [websocket] configuration keys (relay/config.c): ws_listen parsing
 * (ADDR:PORT and [V6]:PORT, what is refused), ws_plain only on loopback
 * and web_root only as a directory with ws_listen (config_validate). */
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
    char key[8][64];
    char msg[8][256];
};

static void collect(void *arg, const char *file, int line, const char *key, const char *msg)
{
    (void)file;
    (void)line;
    struct errs *e = arg;
    if (e->n >= 8)
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

static void test_ws_listen(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_null(c.relay.ws.addr); /* off by default */
    assert_int_equal(set(&c, "ws_listen", "127.0.0.1:4443"), 0);
    assert_string_equal(c.relay.ws.addr, "127.0.0.1");
    assert_int_equal(c.relay.ws.port, 4443);
    assert_int_equal(set(&c, "ws_listen", "[::1]:0"), 0);
    assert_string_equal(c.relay.ws.addr, "::1");
    assert_int_equal(c.relay.ws.port, 0);
    assert_int_equal(set(&c, "ws_listen", "0.0.0.0:443"), 0);
    assert_string_equal(c.relay.ws.addr, "0.0.0.0");
    const char *bad[] = {"4443",           "127.0.0.1",  "127.0.0.1:", ":4443",
                         "localhost:4443", "::1:4443",   "[::1]4443",  "[::1:4443",
                         "1.2.3.4:65536",  "1.2.3.4:4x", "[1.2.3.4]:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (set(&c, "ws_listen", bad[i]) != ROOST_EINVAL)
            fail_msg("accepted ws_listen = %s", bad[i]);
    assert_int_equal(set(&c, "ws_listen", ""), 0); /* off again */
    assert_null(c.relay.ws.addr);
    config_free(&c);
}

static void test_validate_ws(void **state)
{
    (void)state;
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(set(&c, "insecure_no_auth", "true"), 0);
    assert_int_equal(set(&c, "ws_listen", "0.0.0.0:4443"), 0);
    assert_int_equal(set(&c, "ws_plain", "true"), 0);
    assert_int_equal(set(&c, "web_root", "/nonexistent-web-root"), 0);
    config_validate(&c, collect, &e);
    assert_true(has(&e, "ws_plain", "only on a loopback"));
    assert_true(has(&e, "web_root", "not a directory"));
    config_free(&c);

    /* Loopback plain with an existing directory: no ws error. */
    struct errs e2 = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(set(&c, "insecure_no_auth", "true"), 0);
    assert_int_equal(set(&c, "ws_listen", "127.0.0.1:4443"), 0);
    assert_int_equal(set(&c, "ws_plain", "true"), 0);
    assert_int_equal(set(&c, "web_root", "/"), 0);
    config_validate(&c, collect, &e2);
    assert_false(has(&e2, "ws_plain", ""));
    assert_false(has(&e2, "web_root", ""));
    config_free(&c);

    /* ws_plain and web_root need ws_listen. */
    struct errs e3 = {0};
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(set(&c, "ws_plain", "true"), 0);
    assert_int_equal(set(&c, "web_root", "/"), 0);
    config_validate(&c, collect, &e3);
    assert_true(has(&e3, "ws_plain", "needs ws_listen"));
    assert_true(has(&e3, "web_root", "needs ws_listen"));
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_listen),
        cmocka_unit_test(test_validate_ws),
    };
    return cmocka_run_group_tests_name("config_ws", tests, NULL, NULL);
}
