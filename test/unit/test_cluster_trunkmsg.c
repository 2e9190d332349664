/* Trunk message codec (lib/cluster/trunkmsg): every type round-trips,
 * truncations and bad values are refused, the datagram header parses, and
 * the HELLO MAC depends on the secret, the role, both ids and the exporter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/trunkmsg.h"
#include "core/error.h"

static void roundtrip(const struct trunkmsg *m)
{
    uint8_t b[TRUNKMSG_BODY_MAX];
    int n = trunkmsg_encode(m, b, sizeof(b));
    assert_true(n > 0);
    struct trunkmsg d;
    assert_int_equal(trunkmsg_decode(b, (size_t)n, &d), 0);
    assert_memory_equal(&d, m, sizeof(d));
    /* every strict prefix is truncated */
    for (int k = 0; k < n; k++)
        assert_int_equal(trunkmsg_decode(b, (size_t)k, &d), ROOST_ETRUNC);
    /* too small an output buffer */
    assert_int_equal(trunkmsg_encode(m, b, (size_t)n - 1), ROOST_ENOSPC);
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct trunkmsg m;
    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_HELLO;
    m.version = TRUNKMSG_VERSION;
    m.id_len = 2;
    memcpy(m.id, "r1", 2);
    memset(m.mac, 0xab, sizeof(m.mac));
    m.prefix = 3;
    roundtrip(&m);
    m.prefix = 0; /* HELLO must carry the sender's pid prefix */
    uint8_t hb[TRUNKMSG_BODY_MAX];
    assert_int_equal(trunkmsg_encode(&m, hb, sizeof(hb)), ROOST_EINVAL);
    m.prefix = 3;
    int hn = trunkmsg_encode(&m, hb, sizeof(hb));
    assert_true(hn > 0);
    hb[hn - 1] = 0;
    struct trunkmsg d;
    assert_int_equal(trunkmsg_decode(hb, (size_t)hn, &d), ROOST_EMALFORMED);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_SUBSCRIBE;
    m.handle = 7;
    m.gen = 0x0102030405060708ull;
    m.room_len = 4;
    memcpy(m.room, "demo", 4);
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_UNSUBSCRIBE;
    m.handle = 7;
    m.gen = 9;
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_SUB_ACK;
    m.handle = 7;
    m.gen = 9;
    m.code = TRUNK_ERR_STALE_GEN;
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_PRESENCE;
    m.handle = 1;
    m.gen = 2;
    m.kind = TRUNK_PRESENCE_JOIN;
    m.pid = 0x01000005;
    m.flags = 3;
    m.name_len = 5;
    memcpy(m.name, "alice", 5);
    roundtrip(&m);
    m.kind = TRUNK_PRESENCE_LEAVE;
    m.flags = 0;
    m.name_len = 0;
    memset(m.name, 0, sizeof(m.name));
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_KFREQ;
    m.handle = 1;
    m.gen = 2;
    m.pid = 5;
    m.from = 6;
    m.stream = 1;
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_QUALITY;
    m.handle = 1;
    m.gen = 2;
    m.pid = 5;
    m.loss = 12;
    m.rtt_us = 30000;
    roundtrip(&m);
    m.loss = 1000;
    roundtrip(&m);
    m.loss = 1001; /* per mille */
    uint8_t qb[TRUNKMSG_BODY_MAX];
    assert_int_equal(trunkmsg_encode(&m, qb, sizeof(qb)), ROOST_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_PING;
    roundtrip(&m);
}

static void test_refused(void **state)
{
    (void)state;
    uint8_t b[TRUNKMSG_BODY_MAX];
    struct trunkmsg m, d;
    memset(&m, 0, sizeof(m));
    m.type = 99;
    assert_int_equal(trunkmsg_encode(&m, b, sizeof(b)), ROOST_EINVAL);
    b[0] = 99;
    assert_int_equal(trunkmsg_decode(b, 1, &d), ROOST_EUNKNOWN);
    assert_int_equal(trunkmsg_decode(b, 0, &d), ROOST_ETRUNC);
    /* handle 0 */
    m.type = TRUNKMSG_UNSUBSCRIBE;
    assert_int_equal(trunkmsg_encode(&m, b, sizeof(b)), ROOST_EINVAL);
    memset(b, 0, 13);
    b[0] = TRUNKMSG_UNSUBSCRIBE;
    assert_int_equal(trunkmsg_decode(b, 13, &d), ROOST_EMALFORMED);
    /* empty room, room too long */
    m.type = TRUNKMSG_SUBSCRIBE;
    m.handle = 1;
    assert_int_equal(trunkmsg_encode(&m, b, sizeof(b)), ROOST_EINVAL);
    b[0] = TRUNKMSG_SUBSCRIBE;
    b[4] = 1;
    b[13] = 65;
    memset(b + 14, 'a', 65);
    assert_int_equal(trunkmsg_decode(b, 14 + 65, &d), ROOST_EMALFORMED);
    /* presence with a bad kind or pid 0 */
    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_PRESENCE;
    m.handle = 1;
    m.pid = 1;
    m.kind = 3;
    assert_int_equal(trunkmsg_encode(&m, b, sizeof(b)), ROOST_EINVAL);
    m.kind = TRUNK_PRESENCE_LEAVE;
    m.pid = 0;
    assert_int_equal(trunkmsg_encode(&m, b, sizeof(b)), ROOST_EINVAL);
    /* HELLO without an id */
    memset(&m, 0, sizeof(m));
    m.type = TRUNKMSG_HELLO;
    assert_int_equal(trunkmsg_encode(&m, b, sizeof(b)), ROOST_EINVAL);
}

static void test_dgram(void **state)
{
    (void)state;
    uint8_t d[TRUNKMSG_DGRAM_HDR_LEN];
    trunkmsg_dgram_hdr(d, 42, 77, false);
    uint32_t h;
    uint64_t g;
    bool replay = true;
    assert_int_equal(trunkmsg_dgram_parse(d, sizeof(d), &h, &g, &replay), TRUNKMSG_DGRAM_HDR_LEN);
    assert_int_equal(h, 42);
    assert_int_equal(g, 77);
    assert_false(replay);
    trunkmsg_dgram_hdr(d, 42, 77, true); /* a keyframe cache replay */
    assert_int_equal(d[0], TRUNKMSG_DGRAM_REPLAY);
    assert_int_equal(trunkmsg_dgram_parse(d, sizeof(d), &h, &g, &replay), TRUNKMSG_DGRAM_HDR_LEN);
    assert_true(replay);
    assert_int_equal(trunkmsg_dgram_parse(d, sizeof(d) - 1, &h, &g, &replay), ROOST_ETRUNC);
    d[0] = 0;
    assert_int_equal(trunkmsg_dgram_parse(d, sizeof(d), &h, &g, &replay), ROOST_EMALFORMED);
    d[0] = 0x42;
    assert_int_equal(trunkmsg_dgram_parse(d, sizeof(d), &h, &g, &replay), ROOST_EMALFORMED);
    trunkmsg_dgram_hdr(d, 0, 77, false);
    assert_int_equal(trunkmsg_dgram_parse(d, sizeof(d), &h, &g, &replay), ROOST_EMALFORMED);
}

static void test_mac(void **state)
{
    (void)state;
    uint8_t ex[32], a[32], b[32];
    memset(ex, 1, sizeof(ex));
    const uint8_t k1[] = "secret-one", k2[] = "secret-two";
    assert_int_equal(trunkmsg_mac(k1, 10, 'c', "r1", 2, 1, "r2", 2, ex, a), 0);
    assert_int_equal(trunkmsg_mac(k1, 10, 'c', "r1", 2, 1, "r2", 2, ex, b), 0);
    assert_memory_equal(a, b, 32);
    assert_int_equal(trunkmsg_mac(k2, 10, 'c', "r1", 2, 1, "r2", 2, ex, b), 0);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(trunkmsg_mac(k1, 10, 's', "r1", 2, 1, "r2", 2, ex, b), 0);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(trunkmsg_mac(k1, 10, 'c', "r2", 2, 1, "r1", 2, ex, b), 0);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(trunkmsg_mac(k1, 10, 'c', "r1", 2, 2, "r2", 2, ex, b), 0);
    assert_memory_not_equal(a, b, 32); /* the sender's pid prefix is covered */
    ex[31] ^= 1;
    assert_int_equal(trunkmsg_mac(k1, 10, 'c', "r1", 2, 1, "r2", 2, ex, b), 0);
    assert_memory_not_equal(a, b, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_dgram),
        cmocka_unit_test(test_mac),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
