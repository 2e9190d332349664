/* SipHash-2-4 against the official test vectors, and sanity of the owner
 * mapping (spread over workers, dependence on the key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/hash.h"

/* The reference vectors published with SipHash (vectors.h of the reference
 * implementation): key = 00 01 .. 0f, message i = the i bytes 00 01 .. i-1,
 * output as the 8 little-endian bytes of the 64-bit result, hex-encoded. */
static const char *const sip64_vectors[64] = {
    "310e0edd47db6f72", "fd67dc93c539f874", "5a4fa9d909806c0d", "2d7efbd796666785",
    "b7877127e09427cf", "8da699cd64557618", "cee3fe586e46c9cb", "37d1018bf50002ab",
    "6224939a79f5f593", "b0e4a90bdf82009e", "f3b9dd94c5bb5d7a", "a7ad6b22462fb3f4",
    "fbe50e86bc8f1e75", "903d84c02756ea14", "eef27a8e90ca23f7", "e545be4961ca29a1",
    "db9bc2577fcc2a3f", "9447be2cf5e99a69", "9cd38d96f0b3c14b", "bd6179a71dc96dbb",
    "98eea21af25cd6be", "c7673b2eb0cbf2d0", "883ea3e395675393", "c8ce5ccd8c030ca8",
    "94af49f6c650adb8", "eab8858ade92e1bc", "f315bb5bb835d817", "adcf6b0763612e2f",
    "a5c91da7acaa4dde", "716595876650a2a6", "28ef495c53a387ad", "42c341d8fa92d832",
    "ce7cf2722f512771", "e37859f94623f3a7", "381205bb1ab0e012", "ae97a10fd434e015",
    "b4a31508beff4d31", "81396229f0907902", "4d0cf49ee5d4dcca", "5c73336a76d8bf9a",
    "d0a704536ba93e0e", "925958fcd6420cad", "a915c29bc8067318", "952b79f3bc0aa6d4",
    "f21df2e41d4535f9", "87577519048f53a9", "10a56cf5dfcd9adb", "eb75095ccd986cd0",
    "51a9cb9ecba312e6", "96afadfc2ce666c7", "72fe52975a4364ee", "5a1645b276d592a1",
    "b274cb8ebf87870a", "6f9bb4203de7b381", "eaecb2a30b22a87f", "9924a43cc1315724",
    "bd838d3aafbf8db7", "0b1a2a3265d51aea", "135079a3231ce660", "932b2846e4d70666",
    "e1915f5cb1eca46c", "f325965ca16d629f", "575ff28e60381be5", "724506eb4c328a95",
};

static struct hash_key seq_key(void)
{
    struct hash_key k;
    for (int i = 0; i < HASH_KEY_LEN; i++)
        k.bytes[i] = (uint8_t)i;
    return k;
}

static void test_reference_vectors(void **state)
{
    (void)state;
    const struct hash_key k = seq_key();
    uint8_t msg[64];
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t len = 0; len < 64; len++) {
        uint64_t h = hash_siphash24(&k, len ? msg : NULL, len);
        char hex[17];
        for (int b = 0; b < 8; b++)
            snprintf(hex + 2 * b, 3, "%02x", (unsigned)((h >> (8 * b)) & 0xff));
        if (strcmp(hex, sip64_vectors[len]) != 0)
            fail_msg("length %zu: got %s want %s", len, hex, sip64_vectors[len]);
    }
}

/* The example worked through in the paper's appendix: 15-byte message. */
static void test_paper_example(void **state)
{
    (void)state;
    const struct hash_key k = seq_key();
    uint8_t msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    assert_true(hash_siphash24(&k, msg, sizeof(msg)) == 0xa129ca6149be45e5ULL);
}

/* Input that does not start on an 8-byte boundary hashes like an aligned
 * copy (the loads are bytewise). */
static void test_unaligned_input(void **state)
{
    (void)state;
    const struct hash_key k = seq_key();
    uint8_t buf[80];
    for (int i = 0; i < 80; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    for (size_t off = 1; off < 8; off++) {
        uint8_t copy[64];
        memcpy(copy, buf + off, 64);
        assert_true(hash_siphash24(&k, buf + off, 64) == hash_siphash24(&k, copy, 64));
    }
}

#define N_ROOMS 8000
#define N_WORKERS 8

static void room_name(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "room-%u", i);
}

/* Every room maps into [0, n); the spread over 8 workers is close to even
 * (deterministic input and key, so this cannot flake); a different key
 * gives a different mapping for most rooms. */
static void test_owner_distribution(void **state)
{
    (void)state;
    struct hash_key k1 = seq_key();
    struct hash_key k2 = seq_key();
    k2.bytes[0] ^= 0x80;
    unsigned hist[N_WORKERS] = {0};
    unsigned moved = 0;
    for (unsigned i = 0; i < N_ROOMS; i++) {
        char name[32];
        room_name(i, name, sizeof(name));
        unsigned o1 = hash_owner(&k1, name, strlen(name), N_WORKERS);
        unsigned o2 = hash_owner(&k2, name, strlen(name), N_WORKERS);
        assert_true(o1 < N_WORKERS);
        assert_true(o2 < N_WORKERS);
        /* Same key, same input: same owner (workers must agree). */
        assert_int_equal(o1, hash_owner(&k1, name, strlen(name), N_WORKERS));
        hist[o1]++;
        moved += o1 != o2;
    }
    for (unsigned w = 0; w < N_WORKERS; w++) {
        /* Expect 1000 each; 5 sigma is about +-150. */
        assert_in_range(hist[w], 850, 1150);
    }
    /* A random remapping moves 7/8 of the rooms: 7000 expected. */
    assert_in_range(moved, 6500, 7500);

    assert_int_equal(hash_owner(&k1, "x", 1, 1), 0);
    assert_int_equal(hash_owner(&k1, "x", 1, 0), 0);
}

/* Two keys from the CSPRNG differ and give different hashes. */
static void test_random_key(void **state)
{
    (void)state;
    struct hash_key a, b;
    assert_int_equal(hash_key_random(&a), 0);
    assert_int_equal(hash_key_random(&b), 0);
    assert_memory_not_equal(a.bytes, b.bytes, HASH_KEY_LEN);
    assert_true(hash_siphash24(&a, "room", 4) != hash_siphash24(&b, "room", 4));
    assert_int_equal(hash_key_random(NULL), ROOST_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors), cmocka_unit_test(test_paper_example),
        cmocka_unit_test(test_unaligned_input),   cmocka_unit_test(test_owner_distribution),
        cmocka_unit_test(test_random_key),
    };
    return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
