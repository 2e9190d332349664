/* Strict UTF-8 validation (lib/proto/utf8): every boundary of RFC 3629's
 * table of well-formed sequences, overlongs, surrogates, values above
 * U+10FFFF, stray and missing continuation bytes, truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/utf8.h"

struct sample {
    const char *what;
    const char *s;
    size_t len;
};
#define S(what, s)                                                                                 \
    {                                                                                              \
        what, s, sizeof(s) - 1                                                                     \
    }

static const struct sample good[] = {
    S("empty", ""),
    S("ascii", "room-1"),
    S("NUL is UTF-8", "a\0b"),
    S("U+007F", "\x7f"),
    S("U+0080", "\xc2\x80"),
    S("U+07FF", "\xdf\xbf"),
    S("U+0800", "\xe0\xa0\x80"),
    S("U+0FFF", "\xe0\xbf\xbf"),
    S("U+1000", "\xe1\x80\x80"),
    S("U+CFFF", "\xec\xbf\xbf"),
    S("U+D000", "\xed\x80\x80"),
    S("U+D7FF", "\xed\x9f\xbf"),
    S("U+E000", "\xee\x80\x80"),
    S("U+FFFD", "\xef\xbf\xbd"),
    S("U+FFFF", "\xef\xbf\xbf"),
    S("U+10000", "\xf0\x90\x80\x80"),
    S("U+3FFFF", "\xf0\xbf\xbf\xbf"),
    S("U+40000", "\xf1\x80\x80\x80"),
    S("U+FFFFF", "\xf3\xbf\xbf\xbf"),
    S("U+100000", "\xf4\x80\x80\x80"),
    S("U+10FFFF", "\xf4\x8f\xbf\xbf"),
    S("mixed", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"),
};

static const struct sample bad[] = {
    S("stray continuation", "\x80"),
    S("stray continuation BF", "\xbf"),
    S("overlong NUL 2", "\xc0\x80"),
    S("overlong 2 (C1)", "\xc1\xbf"),
    S("overlong 3", "\xe0\x80\x80"),
    S("overlong 3 high", "\xe0\x9f\xbf"),
    S("overlong 4", "\xf0\x80\x80\x80"),
    S("overlong 4 high", "\xf0\x8f\xbf\xbf"),
    S("surrogate D800", "\xed\xa0\x80"),
    S("surrogate DBFF", "\xed\xaf\xbf"),
    S("surrogate DC00", "\xed\xb0\x80"),
    S("surrogate DFFF", "\xed\xbf\xbf"),
    S("surrogate pair", "\xed\xa0\xbd\xed\xb8\x80"),
    S("U+110000", "\xf4\x90\x80\x80"),
    S("F5 lead", "\xf5\x80\x80\x80"),
    S("F8 lead (5 bytes)", "\xf8\x88\x80\x80\x80"),
    S("FC lead (6 bytes)", "\xfc\x84\x80\x80\x80\x80"),
    S("FE", "\xfe"),
    S("FF", "\xff"),
    S("cut 2", "\xc3"),
    S("cut 3 after 1", "\xe2"),
    S("cut 3 after 2", "\xe2\x82"),
    S("cut 4 after 3", "\xf0\x9f\x98"),
    S("missing continuation", "\xc3\x41"),
    S("bad 3rd byte", "\xe2\x82\x41"),
    S("bad 4th byte", "\xf0\x9f\x98\xc0"),
    S("continuation then ascii", "a\x80z"),
};

/* Each sample from an exact-size heap copy so that ASan sees over-reads. */
static bool check(const struct sample *s)
{
    uint8_t *p = malloc(s->len ? s->len : 1);
    assert_non_null(p);
    memcpy(p, s->s, s->len);
    bool ok = utf8_valid(p, s->len);
    free(p);
    return ok;
}

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!check(&good[i]))
            fail_msg("rejected valid: %s", good[i].what);
    assert_true(utf8_valid(NULL, 0));
}

static void test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (check(&bad[i]))
            fail_msg("accepted invalid: %s", bad[i].what);
}

/* Every strict prefix of a multi-byte character ending the input is
 * rejected; the whole is accepted. */
static void test_cut_characters(void **state)
{
    (void)state;
    const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(chars[i]);
        for (size_t k = 1; k < n; k++) {
            struct sample s = {"cut", chars[i], k};
            assert_false(check(&s));
        }
        struct sample whole = {"whole", chars[i], n};
        assert_true(check(&whole));
    }
}

/* Brute force over all 2-byte inputs against the rule written out: a
 * 2-byte string is valid iff both are ASCII, or it is one C2..DF lead with a
 * continuation. */
static void test_all_two_byte_inputs(void **state)
{
    (void)state;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
            bool want =
                (a < 0x80 && b < 0x80) || (a >= 0xc2 && a <= 0xdf && b >= 0x80 && b <= 0xbf);
            if (utf8_valid(s, 2) != want)
                fail_msg("%02x %02x: got %d", a, b, !want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_cut_characters),
        cmocka_unit_test(test_all_two_byte_inputs),
    };
    return cmocka_run_group_tests_name("proto_utf8", tests, NULL, NULL);
}
