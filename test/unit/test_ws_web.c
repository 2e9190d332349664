/* The static file server's path rules (lib/ws/wsweb.c): what maps to a
 * file under the web root and what is refused before any file is opened.
 * Serving itself (types, size cap, symlinks) is tested end to end in
 * test/integration/test_relay_ws.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ws/ws_int.h"

static void expect_map(const char *path, const char *rel)
{
    char out[64];
    if (!wsweb_map_path(path, out, sizeof(out)))
        fail_msg("refused: %s", path);
    assert_string_equal(out, rel);
}

static void expect_refused(const char *path)
{
    char out[64];
    if (wsweb_map_path(path, out, sizeof(out)))
        fail_msg("accepted: %s -> %s", path, out);
}

static void test_map(void **state)
{
    (void)state;
    expect_map("/", "index.html");
    expect_map("/index.html", "index.html");
    expect_map("/app.js", "app.js");
    expect_map("/js/worklet-1.2_x.js", "js/worklet-1.2_x.js");
    expect_map("/sub/", "sub/index.html");
    expect_map("/a.b.c", "a.b.c");
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",          "index.html", "/..",        "/../etc/passwd", "/a/../b", "/a/..",
        "/.hidden",  "/a/.git/x",  "/.",         "//etc/passwd",   "/a//b",   "/%2e%2e/x",
        "/a b",      "/a\\b",      "/a:b",       "/~root",         "/a?b",    "/a\x01",
        "/\xc3\xa9", "/a;b",       "/a%00.html",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i]);
    /* Too long for the output buffer. */
    char out[8];
    assert_false(wsweb_map_path("/abcdefgh.js", out, sizeof(out)));
    assert_false(wsweb_map_path("/abc/", out, sizeof(out))); /* abc/index.html */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests_name("ws_web", tests, NULL, NULL);
}
