/* [limits] placement = spread|pack and pack_members (session 8): parsing
 * (the default, both words, bad values with a clear error, in the file and
 * on the command line), and the value in force as relay_placement /
 * relay_pack_members and the /metrics gauges roost_placement and
 * roost_pack_members of a relay started in-process. */
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
#include "room/room.h"
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

static int set(struct config *c, const char *key, const char *value, char *err, size_t cap)
{
    err[0] = '\0';
    return config_set(c, key, value, "command line", 0, err, cap);
}

static void test_parse(void **state)
{
    (void)state;
    struct config c;
    char err[128];
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_SPREAD); /* the default */
    assert_int_equal(c.relay.pack_members, ROOM_DEFAULT_PACK_MEMBERS);
    assert_int_equal(set(&c, "placement", "pack", err, sizeof(err)), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_PACK);
    assert_int_equal(set(&c, "placement", "spread", err, sizeof(err)), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_SPREAD);
    assert_int_equal(set(&c, "placement", "pack", err, sizeof(err)), 0);
    static const char *const bad[] = {"", "packed", "Pack ", "hash", "1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(set(&c, "placement", bad[i], err, sizeof(err)), ROOST_EINVAL);
        assert_non_null(strstr(err, "expected spread or pack"));
        assert_int_equal(c.relay.placement, ROOM_PLACE_PACK); /* the value before stays */
    }
    assert_int_equal(set(&c, "pack_members", "40", err, sizeof(err)), 0);
    assert_int_equal(c.relay.pack_members, 40);
    assert_int_equal(set(&c, "pack_members", "0", err, sizeof(err)), ROOST_ERANGE);
    assert_non_null(strstr(err, "out of range (1..4294967295)"));
    assert_int_equal(set(&c, "pack_members", "many", err, sizeof(err)), ROOST_EINVAL);
    assert_int_equal(c.relay.pack_members, 40);
    config_free(&c);
}

static void test_parse_file(void **state)
{
    (void)state;
    struct config c;
    struct errs e = {0};
    assert_int_equal(config_init(&c), 0);
    static const char ok[] = "[limits]\nplacement = pack\npack_members = 30\n";
    assert_int_equal(config_load_mem(&c, "a.conf", ok, sizeof(ok) - 1, collect, &e), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_PACK);
    assert_int_equal(c.relay.pack_members, 30);
    config_free(&c);
    assert_int_equal(config_init(&c), 0);
    static const char bad[] = "[limits]\n\nplacement = fill\n";
    assert_int_equal(config_load_mem(&c, "b.conf", bad, sizeof(bad) - 1, collect, &e), 1);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.line[0], 3);
    assert_string_equal(e.key[0], "placement");
    assert_non_null(strstr(e.msg[0], "expected spread or pack"));
    assert_int_equal(c.relay.placement, ROOM_PLACE_SPREAD);
    config_free(&c);
}

/* The value in force and its gauges. */
static void check_relay(uint8_t placement, uint32_t pack_members, const char *want_mode,
                        uint32_t want_members)
{
    struct test_relay tr;
    struct relay_config cfg = {
        .n_workers = 2, .placement = placement, .pack_members = pack_members};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    assert_string_equal(relay_placement(tr.r), want_mode);
    assert_int_equal(relay_pack_members(tr.r), want_members);
    char *m = NULL;
    size_t ml = 0;
    assert_int_equal(metrics_render(tr.r, &m, &ml), 0);
    char want[96];
    snprintf(want, sizeof(want), "\nroost_placement{mode=\"%s\"} 1\n", want_mode);
    assert_non_null(strstr(m, "# TYPE roost_placement gauge\n"));
    assert_non_null(strstr(m, want));
    snprintf(want, sizeof(want), "\nroost_pack_members %u\n", want_members);
    assert_non_null(strstr(m, want));
    free(m);
    test_relay_stop(&tr);
}

static void test_in_force_and_gauge(void **state)
{
    (void)state;
    check_relay(ROOM_PLACE_SPREAD, 0, "spread", ROOM_DEFAULT_PACK_MEMBERS);
    check_relay(ROOM_PLACE_PACK, 0, "pack", ROOM_DEFAULT_PACK_MEMBERS);
    check_relay(ROOM_PLACE_PACK, 12, "pack", 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_in_force_and_gauge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
