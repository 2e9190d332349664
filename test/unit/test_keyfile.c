/* Key files (lib/proto/keyfile): parsing with file:line errors, the mode check,
 * generation (0600, never overwrites, fresh secrets) and rotation through
 * files: old + new key verifies both, new tokens use the new key, and once the
 * old line is removed its tokens fail with ROOST_EBADKEY. */
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
#include "proto/keyfile.h"
#include "proto/token.h"

/* 32 bytes 0..31 and 100..131 as base64url. */
#define SEC_A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
#define SEC_B "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/roost-keyfile-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int parse(const char *text, struct token_keyring *r, char *err, size_t cap)
{
    err[0] = '\0';
    return keyfile_parse(text, strlen(text), "keys.txt", r, err, cap);
}

static void test_parse_good(void **state)
{
    (void)state;
    struct token_keyring r;
    char err[256];
    const char *text = "# comment\n"
                       "\n"
                       "   # indented comment\n"
                       "new " SEC_B "\n"
                       "\t old\t\t" SEC_A "  \r\n"
                       "   \n";
    assert_int_equal(parse(text, &r, err, sizeof(err)), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(token_keyring_signer(&r)->id, "new"); /* first key signs */
    const struct token_key *old = token_keyring_find(&r, "old", 3);
    assert_non_null(old);
    for (int i = 0; i < TOKEN_KEY_LEN; i++) {
        assert_int_equal(old->secret[i], i);
        assert_int_equal(r.keys[0].secret[i], 100 + i);
    }
    /* No final newline. */
    assert_int_equal(parse("k " SEC_A, &r, err, sizeof(err)), 0);
    assert_int_equal(r.n, 1);
}

static void expect_bad(const char *text, int want, const char *msg_part)
{
    struct token_keyring r;
    char err[256];
    assert_int_equal(parse(text, &r, err, sizeof(err)), want);
    if (strstr(err, msg_part) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, msg_part);
    assert_int_equal(r.n, 0); /* nothing half-loaded */
}

static void test_parse_bad(void **state)
{
    (void)state;
    expect_bad("", ROOST_EMALFORMED, "keys.txt: no keys");
    expect_bad("# only comments\n\n", ROOST_EMALFORMED, "keys.txt: no keys");
    expect_bad("# c\nk1\n", ROOST_EMALFORMED, "keys.txt:2: expected");
    expect_bad("k1 " SEC_A " extra\n", ROOST_EMALFORMED, "keys.txt:1: expected");
    expect_bad("\n\nk.1 " SEC_A "\n", ROOST_EMALFORMED, "keys.txt:3: bad key id 'k.1'");
    expect_bad("abcdefghijklmnopq " SEC_A "\n", ROOST_EMALFORMED, "keys.txt:1: bad key id");
    expect_bad("k1 " SEC_A "A\n", ROOST_EMALFORMED, "keys.txt:1: key 'k1': secret must be");
    expect_bad("k1 AAEC\n", ROOST_EMALFORMED, "keys.txt:1: key 'k1': secret must be");
    expect_bad("k1 " SEC_A "=\n", ROOST_EMALFORMED, "keys.txt:1: key 'k1': secret");
    /* Standard base64 ('+', '/') is not base64url. */
    expect_bad("k1 ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM\n", ROOST_EMALFORMED,
               "keys.txt:1: key 'k1': secret");
    /* Non-canonical last character (unused bits set). */
    expect_bad("k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9\n", ROOST_EMALFORMED,
               "keys.txt:1: key 'k1': secret");
    expect_bad("k1 " SEC_A "\nk2 " SEC_B "\nk1 " SEC_B "\n", ROOST_EMALFORMED,
               "keys.txt:3: duplicate key id 'k1'");
    {
        const char nul[] = "k1 " SEC_A "\nk2\0 x\n";
        struct token_keyring r;
        char err[256];
        assert_int_equal(keyfile_parse(nul, sizeof(nul) - 1, "keys.txt", &r, err, sizeof(err)),
                         ROOST_EMALFORMED);
        assert_non_null(strstr(err, "keys.txt:2: NUL"));
    }
    char many[2048] = "";
    for (int i = 0; i <= TOKEN_KEYRING_MAX; i++) {
        char line[80];
        snprintf(line, sizeof(line), "k%d %s\n", i, SEC_A);
        strcat(many, line);
    }
    expect_bad(many, ROOST_ETOOBIG, "keys.txt:17: more than 16 keys");
    /* err may be omitted. */
    struct token_keyring r;
    assert_int_equal(keyfile_parse("x", 1, "n", &r, NULL, 0), ROOST_EMALFORMED);
}

static void test_load_and_mode(void **state)
{
    (void)state;
    char path[128], err[512];
    struct token_keyring r;
    path_of(path, sizeof(path), "k.keys");
    write_file(path, "k1 " SEC_A "\n", 0600);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), 0);
    assert_int_equal(r.n, 1);
    write_file(path, "k1 " SEC_A "\n", 0400);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), 0);

    static const mode_t refused[] = {0640, 0604, 0620, 0602, 0610, 0601, 0644, 0666};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        write_file(path, "k1 " SEC_A "\n", refused[i]);
        err[0] = '\0';
        assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), ROOST_EACCES);
        assert_int_equal(r.n, 0);
        char want[160];
        snprintf(want, sizeof(want), "%s: mode %04o", path, (unsigned)refused[i]);
        if (strstr(err, want) == NULL)
            fail_msg("error '%s' does not contain '%s'", err, want);
        assert_non_null(strstr(err, "chmod 600"));
    }

    /* Bad content is reported with the real path and line. */
    write_file(path, "# keys\nk1 " SEC_A "\nbroken\n", 0600);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), ROOST_EMALFORMED);
    char want[160];
    snprintf(want, sizeof(want), "%s:3: expected", path);
    assert_non_null(strstr(err, want));

    path_of(path, sizeof(path), "missing.keys");
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), ROOST_ENOENT);
    assert_non_null(strstr(err, path));
    assert_int_equal(keyfile_load(dir, &r, err, sizeof(err)), ROOST_EINVAL);
    assert_non_null(strstr(err, "not a regular file"));

    /* Over the size cap. */
    path_of(path, sizeof(path), "huge.keys");
    char *big = malloc(KEYFILE_MAX + 2);
    assert_non_null(big);
    memset(big, '#', KEYFILE_MAX + 1);
    big[KEYFILE_MAX + 1] = '\0';
    write_file(path, big, 0600);
    free(big);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), ROOST_ETOOBIG);
}

static void test_generate(void **state)
{
    (void)state;
    char path[128], path2[128], err[512];
    struct token_keyring g, l, g2;
    path_of(path, sizeof(path), "gen.keys");
    path_of(path2, sizeof(path2), "gen2.keys");
    unlink(path);
    unlink(path2);
    /* A permissive umask must not leak into the file mode. */
    mode_t old = umask(0);
    int rc = keyfile_generate(path, "main", &g, err, sizeof(err));
    umask(old);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.keys[0].id, "main");
    assert_int_equal(keyfile_load(path, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0].id, "main");
    assert_memory_equal(l.keys[0].secret, g.keys[0].secret, TOKEN_KEY_LEN);

    /* Never overwrites, and leaves the existing file alone. */
    err[0] = '\0';
    assert_int_equal(keyfile_generate(path, "other", NULL, err, sizeof(err)), ROOST_EEXIST);
    assert_non_null(strstr(err, "refusing to overwrite"));
    assert_int_equal(keyfile_load(path, &l, err, sizeof(err)), 0);
    assert_memory_equal(l.keys[0].secret, g.keys[0].secret, TOKEN_KEY_LEN);
    /* Nor through a symlink. */
    char link[128];
    path_of(link, sizeof(link), "link.keys");
    unlink(link);
    assert_int_equal(symlink(path2, link), 0);
    assert_true(keyfile_generate(link, "x", NULL, err, sizeof(err)) < 0);
    assert_int_equal(access(path2, F_OK), -1);

    /* Fresh secret each time; default id is k + 8 hex digits. */
    assert_int_equal(keyfile_generate(path2, NULL, &g2, err, sizeof(err)), 0);
    assert_int_equal(strlen(g2.keys[0].id), 9);
    assert_int_equal(g2.keys[0].id[0], 'k');
    assert_true(memcmp(g2.keys[0].secret, g.keys[0].secret, TOKEN_KEY_LEN) != 0);

    assert_int_equal(keyfile_generate(path2, "bad id", NULL, err, sizeof(err)), ROOST_EINVAL);
    path_of(path, sizeof(path), "no/such/dir.keys");
    assert_int_equal(keyfile_generate(path, "k", NULL, err, sizeof(err)), ROOST_ENOENT);
}

/* Rotation through files, as docs/TOKENS.md describes it. */
static void test_rotation_files(void **state)
{
    (void)state;
    char path[128], err[512];
    struct token_keyring r;
    struct token_claims c, v;
    uint8_t id[TOKEN_ID_LEN] = {9};
    char t_old[TOKEN_MAX_LEN + 1], t_new[TOKEN_MAX_LEN + 1];
    path_of(path, sizeof(path), "rot.keys");
    assert_int_equal(token_claims_set(&c, "room", 4, "bob", 3, TOKEN_PERM_ALL, 100, 700, id), 0);

    write_file(path, "old " SEC_A "\n", 0600);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), 0);
    assert_true(token_mint(token_keyring_signer(&r), &c, t_old, sizeof(t_old)) > 0);

    /* Step 1: relays learn the new key (second line: verifies, does not sign). */
    write_file(path, "old " SEC_A "\nnew " SEC_B "\n", 0600);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), 0);
    assert_string_equal(token_keyring_signer(&r)->id, "old");
    /* Step 2: new key first: it signs; the old one still verifies. */
    write_file(path, "new " SEC_B "\nold " SEC_A "\n", 0600);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), 0);
    assert_true(token_mint(token_keyring_signer(&r), &c, t_new, sizeof(t_new)) > 0);
    assert_memory_equal(t_new, "v1.new.", 7);
    assert_int_equal(token_verify(t_old, strlen(t_old), &r, "room", 4, 200, 0, &v), 0);
    assert_string_equal(v.key_id, "old");
    assert_int_equal(token_verify(t_new, strlen(t_new), &r, "room", 4, 200, 0, &v), 0);
    assert_string_equal(v.key_id, "new");
    /* Step 3: old key removed. */
    write_file(path, "new " SEC_B "\n", 0600);
    assert_int_equal(keyfile_load(path, &r, err, sizeof(err)), 0);
    assert_int_equal(token_verify(t_old, strlen(t_old), &r, "room", 4, 200, 0, &v), ROOST_EBADKEY);
    assert_int_equal(token_verify(t_new, strlen(t_new), &r, "room", 4, 200, 0, &v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),     cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_load_and_mode),  cmocka_unit_test(test_generate),
        cmocka_unit_test(test_rotation_files),
    };
    return cmocka_run_group_tests_name("keyfile", tests, setup, teardown);
}
