/* [limits] placement = auto|spread|pack and pack_members (sessions 8 and
 * 10): parsing (the default auto, the three words, bad values with a clear
 * error, in the file and on the command line), auto's resolution
 * (relay_placement_resolve: pack iff room affinity is in force, spread in
 * a cluster, explicit values kept), and the value in force as
 * relay_placement / relay_placement_why / relay_pack_members and the
 * /metrics gauges roost_placement, roost_placement_setting and
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
    assert_int_equal(c.relay.placement, ROOM_PLACE_AUTO); /* the default */
    assert_int_equal(c.relay.pack_members, ROOM_DEFAULT_PACK_MEMBERS);
    assert_int_equal(set(&c, "placement", "spread", err, sizeof(err)), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_SPREAD);
    assert_int_equal(set(&c, "placement", "auto", err, sizeof(err)), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_AUTO);
    assert_int_equal(set(&c, "placement", "pack", err, sizeof(err)), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_PACK);
    assert_int_equal(set(&c, "placement", "spread", err, sizeof(err)), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_SPREAD);
    assert_int_equal(set(&c, "placement", "pack", err, sizeof(err)), 0);
    static const char *const bad[] = {"", "packed", "Pack ", "hash", "1", "Auto", "automatic"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(set(&c, "placement", bad[i], err, sizeof(err)), ROOST_EINVAL);
        assert_non_null(strstr(err, "expected auto, spread or pack"));
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
    assert_non_null(strstr(e.msg[0], "expected auto, spread or pack"));
    assert_int_equal(c.relay.placement, ROOM_PLACE_AUTO);
    config_free(&c);
    assert_int_equal(config_init(&c), 0);
    static const char au[] = "[limits]\nplacement = auto\n";
    assert_int_equal(config_load_mem(&c, "c.conf", au, sizeof(au) - 1, collect, &e), 0);
    assert_int_equal(c.relay.placement, ROOM_PLACE_AUTO);
    config_free(&c);
}

/* auto: pack iff room affinity is in force; spread in a cluster; the
 * explicit values kept (pack in a cluster is spread too). */
static void test_resolve(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_AUTO, 8, false, &why), ROOM_PLACE_PACK);
    assert_string_equal(why, "auto:affinity");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_AUTO, 1, false, &why), ROOM_PLACE_PACK);
    assert_string_equal(why, "auto:affinity");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_AUTO, 0, false, &why), ROOM_PLACE_SPREAD);
    assert_string_equal(why, "auto:no_affinity");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_AUTO, 8, true, &why), ROOM_PLACE_SPREAD);
    assert_string_equal(why, "auto:cluster");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_SPREAD, 8, false, &why), ROOM_PLACE_SPREAD);
    assert_string_equal(why, "explicit");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_PACK, 0, false, &why), ROOM_PLACE_PACK);
    assert_string_equal(why, "explicit");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_PACK, 8, true, &why), ROOM_PLACE_SPREAD);
    assert_string_equal(why, "cluster");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_SPREAD, 0, true, &why), ROOM_PLACE_SPREAD);
    assert_string_equal(why, "explicit");
    /* affinity auto resolves first (steering), then placement auto on it. */
    uint32_t on = relay_affinity_resolve(RELAY_AFFINITY_AUTO, "ebpf");
    uint32_t off = relay_affinity_resolve(RELAY_AFFINITY_AUTO, "hash");
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_AUTO, on, false, &why), ROOM_PLACE_PACK);
    assert_int_equal(relay_placement_resolve(ROOM_PLACE_AUTO, off, false, &why), ROOM_PLACE_SPREAD);
    assert_int_equal(relay_placement_resolve(
                         ROOM_PLACE_AUTO, relay_affinity_resolve(RELAY_OFF, "ebpf"), false, &why),
                     ROOM_PLACE_SPREAD);
}

/* The value in force and its gauges. */
static void check_relay_aff(uint8_t placement, uint32_t affinity, uint32_t pack_members,
                            const char *want_mode, const char *want_why, uint32_t want_members)
{
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2,
                               .placement = placement,
                               .affinity_max_members = affinity,
                               .pack_members = pack_members};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    assert_string_equal(relay_placement(tr.r), want_mode);
    assert_string_equal(relay_placement_why(tr.r), want_why);
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
    snprintf(want, sizeof(want), "\nroost_placement_setting{setting=\"%s\",why=\"%s\"} 1\n",
             want_mode, want_why);
    assert_non_null(strstr(m, "# TYPE roost_placement_setting gauge\n"));
    assert_non_null(strstr(m, want));
    free(m);
    test_relay_stop(&tr);
}

static void check_relay(uint8_t placement, uint32_t pack_members, const char *want_mode,
                        uint32_t want_members)
{
    check_relay_aff(placement, RELAY_OFF, pack_members, want_mode, "explicit", want_members);
}

static void test_in_force_and_gauge(void **state)
{
    (void)state;
    check_relay(ROOM_PLACE_SPREAD, 0, "spread", ROOM_DEFAULT_PACK_MEMBERS);
    check_relay(ROOM_PLACE_PACK, 0, "pack", ROOM_DEFAULT_PACK_MEMBERS);
    check_relay(ROOM_PLACE_PACK, 12, "pack", 12);
    /* auto on the affinity in force (an explicit limit: steering-free). */
    check_relay_aff(ROOM_PLACE_AUTO, 8, 0, "pack", "auto:affinity", ROOM_DEFAULT_PACK_MEMBERS);
    check_relay_aff(ROOM_PLACE_AUTO, RELAY_OFF, 0, "spread", "auto:no_affinity",
                    ROOM_DEFAULT_PACK_MEMBERS);
    check_relay_aff(ROOM_PLACE_SPREAD, 8, 0, "spread", "explicit", ROOM_DEFAULT_PACK_MEMBERS);
    /* The zero config: both auto; placement follows what affinity became. */
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    bool aff = relay_affinity_max_members(tr.r) > 0;
    assert_string_equal(relay_placement(tr.r), aff ? "pack" : "spread");
    assert_string_equal(relay_placement_why(tr.r), aff ? "auto:affinity" : "auto:no_affinity");
    test_relay_stop(&tr);
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
