/* libFuzzer target for the relay's configuration parser (relay/config.c:
 * the INI reader, every key's value parser: numbers, units, CPU lists,
 * booleans, levels), fed from memory through config_load_mem, so no file
 * is touched. config_validate (which opens files) is not called.
 *
 * Checks: the load returns the number of errors it reported, each error
 * names the input and a line within it, keys set from the input carry a
 * line within it, and the values kept respect the key table's bounds.
 * Loading the same input twice gives the same errors and values. Any
 * violation aborts. */
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "relay/config.h"

#define NAME "fuzz.conf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

struct errs {
    int n;
    int max_line;
    uint64_t sum; /* of lines and message lengths: compares two loads */
};

static void on_err(void *arg, const char *file, int line, const char *key, const char *msg)
{
    struct errs *e = arg;
    CHECK(file != NULL && strcmp(file, NAME) == 0);
    CHECK(key != NULL && msg != NULL && msg[0] != '\0');
    CHECK(line >= 0 && line <= e->max_line);
    e->n++;
    e->sum += (uint64_t)line * 1000003u + strlen(key) * 31u + strlen(msg);
}

static void check_values(const struct config *c, int max_line)
{
    size_t nk;
    (void)config_keys(&nk);
    for (size_t i = 0; i < nk; i++) {
        if (!c->set[i])
            continue;
        CHECK(c->origin[i].line >= 1 && c->origin[i].line <= max_line);
        CHECK(c->origin[i].file == c->file);
    }
    const struct relay_config *r = &c->relay;
    CHECK(r->n_workers <= WORKER_MAX);
    CHECK(r->n_cpus <= WORKER_MAX);
    CHECK(r->n_cpus == 0 || r->cpus == c->cpus);
    for (unsigned i = 0; i < r->n_cpus; i++)
        CHECK(c->cpus[i] >= 0 && c->cpus[i] < CPU_SETSIZE);
    CHECK(r->port >= 1);
    CHECK(r->max_rooms >= 1 && r->max_members >= 1);
    CHECK(r->idle_timeout_ns >= 100000000ull && r->idle_timeout_ns <= 3600000000000ull);
    CHECK(r->sock_buf >= 64 * 1024 && r->sock_buf <= (1 << 30));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    struct config a, b;
    struct errs ea = {.max_line = lines}, eb = {.max_line = lines};
    if (config_init(&a) != 0)
        return 0;
    int na = config_load_mem(&a, NAME, (const char *)data, size, on_err, &ea);
    if (na == ROOST_ENOMEM) {
        config_free(&a);
        return 0;
    }
    CHECK(na >= 0 && na == ea.n);
    check_values(&a, lines);

    /* Deterministic: the same input, the same outcome. */
    if (config_init(&b) == 0) {
        int nb = config_load_mem(&b, NAME, (const char *)data, size, on_err, &eb);
        if (nb != ROOST_ENOMEM) {
            CHECK(nb == na && eb.sum == ea.sum);
            size_t nk;
            (void)config_keys(&nk);
            CHECK(memcmp(a.set, b.set, sizeof(bool) * nk) == 0);
            CHECK(a.relay.port == b.relay.port && a.relay.n_workers == b.relay.n_workers &&
                  a.relay.n_cpus == b.relay.n_cpus && a.relay.max_rooms == b.relay.max_rooms &&
                  a.relay.idle_timeout_ns == b.relay.idle_timeout_ns &&
                  a.relay.sock_buf == b.relay.sock_buf && a.log_level == b.log_level &&
                  a.drain_timeout_ns == b.drain_timeout_ns);
            CHECK(memcmp(a.cpus, b.cpus, sizeof(a.cpus)) == 0);
        }
        config_free(&b);
    }
    config_free(&a);
    return 0;
}
