/* Directory keys and values (lib/cluster/dirkey): id and room checks, key
 * names (binary-safe rooms, limits), the room value "<id>:<gen>" both ways
 * (rooms and values with ':' split at the last one), decimal parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/dirkey.h"
#include "core/error.h"

static void test_ids(void **state)
{
    (void)state;
    assert_true(dirkey_valid_id("relay-1"));
    assert_true(dirkey_valid_id("a.b_C-9"));
    assert_true(dirkey_valid_id("abcdefghijabcdefghijabcdefghij12")); /* 32 */
    assert_false(dirkey_valid_id("abcdefghijabcdefghijabcdefghij123"));
    assert_false(dirkey_valid_id(""));
    assert_false(dirkey_valid_id(NULL));
    assert_false(dirkey_valid_id("a:b"));
    assert_false(dirkey_valid_id("a b"));
    assert_false(dirkey_valid_id("é"));
    assert_true(dirkey_valid_prefix("roost"));
    assert_false(dirkey_valid_prefix("ro:ost"));
    assert_true(dirkey_valid_room("demo", 4));
    assert_true(dirkey_valid_room("a:b:c", 5));
    assert_false(dirkey_valid_room("", 0));
    assert_false(dirkey_valid_room("a\0b", 3));
    char big[DIR_ROOM_MAX + 1];
    memset(big, 'x', sizeof(big));
    assert_true(dirkey_valid_room(big, DIR_ROOM_MAX));
    assert_false(dirkey_valid_room(big, DIR_ROOM_MAX + 1));
    assert_true(dirkey_valid_addr("127.0.0.1:4434"));
    assert_true(dirkey_valid_addr("[::1]:4434"));
    assert_false(dirkey_valid_addr("a b"));
    assert_false(dirkey_valid_addr(""));
}

static void test_keys(void **state)
{
    (void)state;
    char k[DIR_KEY_MAX + 1];
    assert_int_equal(dirkey_relay(k, sizeof(k), "roost", "r1"), 14);
    assert_string_equal(k, "roost:relay:r1");
    assert_int_equal(dirkey_relays(k, sizeof(k), "roost"), 12);
    assert_string_equal(k, "roost:relays");
    assert_int_equal(dirkey_relay_prefix(k, sizeof(k), "p"), 8);
    assert_string_equal(k, "p:relay:");
    assert_int_equal(dirkey_room(k, sizeof(k), "roost", "demo", 4), 15);
    assert_string_equal(k, "roost:room:demo");
    assert_int_equal(dirkey_gen(k, sizeof(k), "roost", "a:b", 3), 13);
    assert_string_equal(k, "roost:gen:a:b");
    /* Only len bytes of the room are used. */
    assert_int_equal(dirkey_room(k, sizeof(k), "x", "demoXXX", 4), 11);
    assert_string_equal(k, "x:room:demo");
    /* The longest key fits DIR_KEY_MAX. */
    char prefix[DIR_PREFIX_MAX + 1], room[DIR_ROOM_MAX];
    memset(prefix, 'p', DIR_PREFIX_MAX);
    prefix[DIR_PREFIX_MAX] = '\0';
    memset(room, 'r', sizeof(room));
    assert_int_equal(dirkey_room(k, sizeof(k), prefix, room, sizeof(room)), DIR_KEY_MAX - 1);
    assert_int_equal(dirkey_room(k, 10, "roost", "demo", 4), ROOST_ENOSPC);
    assert_int_equal(dirkey_room(k, sizeof(k), "bad:prefix", "demo", 4), ROOST_EINVAL);
    assert_int_equal(dirkey_room(k, sizeof(k), "roost", "", 0), ROOST_EINVAL);
    assert_int_equal(dirkey_relay(k, sizeof(k), "roost", "bad id"), ROOST_EINVAL);
}

static void test_value(void **state)
{
    (void)state;
    char v[DIR_VALUE_MAX + 1], id[DIR_ID_MAX + 1];
    uint64_t gen = 0;
    assert_int_equal(dirkey_value_format(v, sizeof(v), "relay-a", 42), 10);
    assert_string_equal(v, "relay-a:42");
    assert_int_equal(dirkey_value_parse(v, strlen(v), id, &gen), 0);
    assert_string_equal(id, "relay-a");
    assert_int_equal(gen, 42);
    /* Largest generation round-trips; the longest value fits. */
    char longid[DIR_ID_MAX + 1];
    memset(longid, 'i', DIR_ID_MAX);
    longid[DIR_ID_MAX] = '\0';
    assert_int_equal(dirkey_value_format(v, sizeof(v), longid, UINT64_MAX), DIR_VALUE_MAX);
    assert_int_equal(dirkey_value_parse(v, strlen(v), id, &gen), 0);
    assert_int_equal(gen, UINT64_MAX);
    assert_string_equal(id, longid);
    assert_int_equal(dirkey_value_format(v, sizeof(v), "a", 0), ROOST_EINVAL);
    assert_int_equal(dirkey_value_format(v, 4, "abc", 1), ROOST_ENOSPC);
    /* A realistic generation: microseconds since 1970. */
    const char *t = "r2:1764466234123456";
    assert_int_equal(dirkey_value_parse(t, strlen(t), id, &gen), 0);
    assert_int_equal(gen, 1764466234123456ull);

    const char *bad[] = {
        "",      "r1",   "r1:", ":5", "r1:0", "r1:-1", "r1:1x", "r 1:5", "r1:18446744073709551616",
        "a:b:c", "r1:5 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dirkey_value_parse(bad[i], strlen(bad[i]), id, &gen), ROOST_EMALFORMED);
    /* Splits at the last ':' (an id never has one, so "a:b:5" has id "a:b": bad). */
    assert_int_equal(dirkey_value_parse("a:b:5", 5, id, &gen), ROOST_EMALFORMED);
    /* Length-bounded: bytes after len are ignored. */
    assert_int_equal(dirkey_value_parse("r9:77trailing", 5, id, &gen), 0);
    assert_int_equal(gen, 77);
}

static void test_u64(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(dirkey_parse_u64("0", 1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(dirkey_parse_u64("18446744073709551615", 20, &v), 0);
    assert_int_equal(v, UINT64_MAX);
    assert_int_equal(dirkey_parse_u64("18446744073709551616", 20, &v), ROOST_ERANGE);
    assert_int_equal(dirkey_parse_u64("99999999999999999999", 20, &v), ROOST_ERANGE);
    assert_int_equal(dirkey_parse_u64("", 0, &v), ROOST_EMALFORMED);
    assert_int_equal(dirkey_parse_u64("+1", 2, &v), ROOST_EMALFORMED);
    assert_int_equal(dirkey_parse_u64("1 ", 2, &v), ROOST_EMALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_u64),
    };
    return cmocka_run_group_tests_name("cluster_dirkey", tests, NULL, NULL);
}
