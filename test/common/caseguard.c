#include "caseguard.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

struct item {
    struct item *next;
    const void *key;
    void (*release)(void *copy);
    unsigned case_no;                           /* 0: registered outside a case (a group set-up) */
    _Alignas(max_align_t) unsigned char copy[]; /* any object, aligned */
};

static struct item *items;
static unsigned case_no, cases, reaped;
static int64_t buf_base;

void caseguard_hold(const void *key, void (*release)(void *copy), const void *obj, size_t size)
{
    struct item *it = malloc(sizeof(*it) + size);
    if (it == NULL) {
        fprintf(stderr, "# caseguard: out of memory, not registered\n");
        return;
    }
    it->key = key;
    it->release = release;
    it->case_no = case_no;
    memcpy(it->copy, obj, size);
    it->next = items;
    items = it;
}

void caseguard_drop(const void *key)
{
    for (struct item **p = &items; *p != NULL; p = &(*p)->next) {
        if ((*p)->key == key) {
            struct item *it = *p;
            *p = it->next;
            free(it);
            return;
        }
    }
}

unsigned caseguard_held(void)
{
    unsigned n = 0;
    for (const struct item *it = items; it != NULL; it = it->next)
        n++;
    return n;
}

int caseguard_setup(void **state)
{
    (void)state;
    case_no = ++cases;
    buf_base = buf_live();
    return 0;
}

int caseguard_teardown(void **state)
{
    (void)state;
    unsigned n = 0;
    int64_t before = buf_live();
    for (;;) {
        struct item **p = &items;
        while (*p != NULL && ((*p)->case_no == 0 || (*p)->case_no != case_no))
            p = &(*p)->next;
        if (*p == NULL)
            break;
        struct item *it = *p;
        *p = it->next; /* unlinked first: release may drop its key */
        it->release(it->copy);
        free(it);
        n++;
    }
    if (n > 0) {
        reaped += n;
        fprintf(
            stderr,
            "# caseguard: the case left %u relay(s)/server(s) running (it failed, or it leaks): "
            "stopped them; buffers live %lld -> %lld (%lld at its start)\n",
            n, (long long)before, (long long)buf_live(), (long long)buf_base);
    }
    case_no = 0;
    return 0;
}

int64_t caseguard_buf_base(void)
{
    return case_no != 0 ? buf_base : 0;
}

unsigned caseguard_reaped(void)
{
    return reaped;
}
