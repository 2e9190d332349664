/* Session ticket helpers (lib/quic/tickets): the key file (created 0600,
 * refused when group/other may read it or of the wrong size, rotation
 * written through), the gnutls key-name derivation's edges, the first PSK
 * identity of a ClientHello (present, absent, every truncation), and the
 * client's per-address store (replace, evict the least recently used,
 * forget). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "quic/tickets.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/roost-tickets-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_key_file(void **state)
{
    (void)state;
    char path[128], msg[256];
    snprintf(path, sizeof(path), "%s/quic-tickets", dir);
    struct tickets_keys a, b, c;
    assert_int_equal(tickets_load(path, &a, 1000, msg, sizeof(msg)), 0);
    assert_false(a.has_prev);
    assert_int_equal(a.rotated_at, 1000);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Loading again gives the same key. */
    assert_int_equal(tickets_load(path, &b, 5000, msg, sizeof(msg)), 0);
    assert_memory_equal(a.cur, b.cur, TICKETS_KEY_LEN);
    assert_int_equal(b.rotated_at, 1000);
    /* Rotation: new current, old one previous, written. */
    assert_int_equal(tickets_rotate(path, &b, &c, 7000), 0);
    assert_memory_not_equal(c.cur, b.cur, TICKETS_KEY_LEN);
    assert_memory_equal(c.prev, b.cur, TICKETS_KEY_LEN);
    assert_true(c.has_prev);
    assert_int_equal(tickets_load(path, &a, 8000, msg, sizeof(msg)), 0);
    assert_memory_equal(a.cur, c.cur, TICKETS_KEY_LEN);
    assert_memory_equal(a.prev, c.prev, TICKETS_KEY_LEN);
    assert_int_equal(a.rotated_at, 7000);
    /* Mode: group or other readable is refused. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(tickets_load(path, &a, 0, msg, sizeof(msg)), ROOST_EACCES);
    assert_non_null(strstr(msg, "chmod 600"));
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(tickets_load(path, &a, 0, NULL, 0), ROOST_EACCES);
    assert_int_equal(chmod(path, 0600), 0);
    /* Wrong size. */
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(tickets_load(path, &a, 0, msg, sizeof(msg)), ROOST_EIO);
    assert_non_null(strstr(msg, "wrong size"));
    unlink(path);
}

static void test_key_name(void **state)
{
    (void)state;
    uint8_t m[TICKETS_KEY_LEN], n0[TICKETS_NAME_LEN], n1[TICKETS_NAME_LEN], x[TICKETS_NAME_LEN];
    memset(m, 7, sizeof(m));
    unsigned life = 100; /* gnutls period 300 s */
    assert_int_equal(tickets_key_name(m, 900, life, 0, n0), 0);
    assert_int_equal(tickets_key_name(m, 1199, life, 0, x), 0);
    assert_memory_equal(n0, x, sizeof(x)); /* same period */
    assert_int_equal(tickets_key_name(m, 1200, life, 1, n1), 0);
    assert_memory_equal(n0, n1, sizeof(x)); /* one period back */
    assert_int_equal(tickets_key_name(m, 1200, life, 0, x), 0);
    assert_memory_not_equal(n0, x, sizeof(x));
    assert_int_equal(tickets_key_name(m, 100, life, 1, x), ROOST_EINVAL);
    assert_int_equal(tickets_key_name(m, 100, 0, 0, x), ROOST_EINVAL);
    uint8_t id[40];
    memcpy(id, n0, sizeof(n0));
    assert_true(tickets_issued_under(id, sizeof(id), m, 1000, life));
    assert_true(tickets_issued_under(id, sizeof(id), m, 1300, life));
    assert_false(tickets_issued_under(id, sizeof(id), m, 1500, life));
    assert_false(tickets_issued_under(id, 15, m, 1000, life));
    m[0] ^= 1;
    assert_false(tickets_issued_under(id, sizeof(id), m, 1000, life));
}

/* A ClientHello body: version, random, session id, suites, compression,
 * extensions (one filler, then pre_shared_key with identity "TICKET..."). */
static size_t make_ch(uint8_t *b, bool psk)
{
    size_t n = 0;
    b[n++] = 3, b[n++] = 3;
    memset(b + n, 0xaa, 32), n += 32;
    b[n++] = 0;                                        /* session id */
    b[n++] = 0, b[n++] = 2, b[n++] = 0x13, b[n++] = 1; /* suites */
    b[n++] = 1, b[n++] = 0;                            /* compression */
    size_t extpos = n;
    n += 2;
    b[n++] = 0, b[n++] = 43, b[n++] = 0, b[n++] = 3, b[n++] = 2, b[n++] = 3, b[n++] = 4;
    if (psk) {
        const char id[] = "TICKET-IDENTITY-0123456789";
        size_t il = sizeof(id) - 1;
        size_t body = 2 + 2 + il + 4 + 2 + 1 + 32;
        b[n++] = 0, b[n++] = 41, b[n++] = 0, b[n++] = (uint8_t)body;
        b[n++] = 0, b[n++] = (uint8_t)(2 + il + 4);
        b[n++] = 0, b[n++] = (uint8_t)il;
        memcpy(b + n, id, il), n += il;
        memset(b + n, 1, 4), n += 4;
        b[n++] = 0, b[n++] = 33, b[n++] = 32;
        memset(b + n, 2, 32), n += 32;
    }
    b[extpos] = (uint8_t)((n - extpos - 2) >> 8);
    b[extpos + 1] = (uint8_t)(n - extpos - 2);
    return n;
}

static void test_ch_identity(void **state)
{
    (void)state;
    uint8_t b[512];
    const uint8_t *id;
    size_t idlen;
    size_t n = make_ch(b, true);
    assert_true(tickets_ch_psk_identity(b, n, &id, &idlen));
    assert_int_equal(idlen, 26);
    assert_memory_equal(id, "TICKET-IDENTITY-0123456789", 26);
    /* Every truncation fails cleanly (the extension length no longer fits). */
    for (size_t k = 0; k < n; k++)
        assert_false(tickets_ch_psk_identity(b, k, &id, &idlen));
    n = make_ch(b, false);
    assert_false(tickets_ch_psk_identity(b, n, &id, &idlen));
}

static void test_store(void **state)
{
    (void)state;
    struct tickets_store *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    struct udp_addr a[TICKETS_STORE_MAX + 1];
    for (unsigned i = 0; i <= TICKETS_STORE_MAX; i++)
        assert_int_equal(udp_addr_parse(&a[i], "127.0.0.1", (uint16_t)(1000 + i)), 0);
    assert_null(tickets_store_get(st, &a[0]));
    assert_int_equal(tickets_store_put(st, &a[0], (const uint8_t *)"one", 3), 0);
    assert_int_equal(tickets_store_put(st, &a[0], (const uint8_t *)"two!", 4), 0);
    const struct tickets_entry *e = tickets_store_get(st, &a[0]);
    assert_non_null(e);
    assert_int_equal(e->len, 4);
    assert_memory_equal(e->data, "two!", 4);
    assert_int_equal(st->n, 1);
    for (unsigned i = 1; i < TICKETS_STORE_MAX; i++)
        assert_int_equal(tickets_store_put(st, &a[i], (const uint8_t *)"x", 1), 0);
    assert_non_null(tickets_store_get(st, &a[0])); /* a[0] now the most recent */
    /* Full: the least recently used (a[1]) goes. */
    assert_int_equal(tickets_store_put(st, &a[TICKETS_STORE_MAX], (const uint8_t *)"y", 1), 0);
    assert_int_equal(st->n, TICKETS_STORE_MAX);
    assert_null(tickets_store_get(st, &a[1]));
    assert_non_null(tickets_store_get(st, &a[0]));
    assert_non_null(tickets_store_get(st, &a[TICKETS_STORE_MAX]));
    tickets_store_forget(st, &a[0]);
    assert_null(tickets_store_get(st, &a[0]));
    assert_int_equal(st->n, TICKETS_STORE_MAX - 1);
    assert_non_null(tickets_store_get(st, &a[2]));
    tickets_store_clear(st);
    assert_int_equal(st->n, 0);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_file, setup, teardown),
        cmocka_unit_test(test_key_name),
        cmocka_unit_test(test_ch_identity),
        cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests_name("tickets", tests, NULL, NULL);
}
