/* Proves which allocator the test binaries run on: jemalloc in normal
 * builds (mallctl answers with its version), libc under the sanitizers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dlfcn.h>

#include "core/buf.h"
#include "core/error.h"

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static void test_allocator(void **state)
{
    (void)state;
    mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
#ifdef ROOST_SANITIZE
    assert_null(mallctl);
#else
    assert_non_null(mallctl);
    const char *version = NULL;
    size_t len = sizeof(version);
    assert_int_equal(mallctl("version", &version, &len, NULL, 0), 0);
    assert_non_null(version);
    assert_true(strlen(version) > 0);
    /* And malloc itself is served by it: a fresh allocation moves its
     * allocated-bytes statistic. */
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch);
    size_t before = 0, after = 0, slen = sizeof(size_t);
    assert_int_equal(mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
    assert_int_equal(mallctl("stats.allocated", &before, &slen, NULL, 0), 0);
    void *p = malloc(8 << 20);
    assert_non_null(p);
    memset(p, 1, 8 << 20);
    assert_int_equal(mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
    assert_int_equal(mallctl("stats.allocated", &after, &slen, NULL, 0), 0);
    assert_true(after >= before + (8 << 20));
    free(p);
#endif
}

static void test_buf_refcount(void **state)
{
    (void)state;
    int64_t live = buf_live();
    struct buf *b = buf_new(100);
    assert_non_null(b);
    assert_int_equal(b->cap, 100);
    assert_int_equal(buf_live(), live + 1);
    buf_ref(b);
    buf_unref(b);
    assert_int_equal(buf_live(), live + 1);
    buf_unref(b);
    assert_int_equal(buf_live(), live);
    buf_unref(NULL);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(roost_strerror(ROOST_OK), "success");
    assert_string_equal(roost_strerror(ROOST_ETRUNC), "truncated input");
    assert_string_equal(roost_strerror(ROOST_ENOMEM), strerror(ENOMEM));
    assert_string_equal(roost_strerror(-99999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator),
        cmocka_unit_test(test_buf_refcount),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
