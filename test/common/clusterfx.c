#include "clusterfx.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "caseguard.h"
#include "echo_app.h"
#include "proto/keyfile.h"
#include "proto/msg.h"
#include "core/error.h"

bool clusterfx_skip_without_redis(void)
{
    if (redis_server_available())
        return false;
    printf("1..0 # SKIP redis-server not installed (scripts/install-deps installs it)\n");
    return true;
}

int clusterfx_redis_start(struct redis_server *rs)
{
    int rc = redis_server_start(rs, 0);
    if (rc != 0)
        fprintf(stderr, "# cannot start redis-server: %d (scripts/install-deps installs it)\n", rc);
    return rc == 0 ? 0 : -1;
}

int clusterfx_redis_get(const struct redis_server *rs, const char *key, char *out, size_t cap)
{
    redisContext *rc = redis_server_connect(rs);
    if (rc == NULL)
        return -1;
    redisReply *r = redisCommand(rc, "GET %s", key);
    redisFree(rc);
    if (r == NULL)
        return -1;
    snprintf(out, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return 0;
}

int clusterfx_secret_file(char *tmpl, const char *s)
{
    int fd = mkstemp(tmpl);
    if (fd == -1)
        return -1;
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -1;
}

int clusterfx_relay_start(struct test_relay *t, const struct clusterfx_relay *c)
{
    t->r = NULL;
    struct relay_config cfg = {.n_workers = 2};
    struct relay_cluster_config *k = &cfg.cluster;
    snprintf(k->redis_host, sizeof(k->redis_host), "127.0.0.1");
    k->redis_port = c->redis_port;
    snprintf(k->key_prefix, sizeof(k->key_prefix), "%s", c->key_prefix);
    k->pid_prefix = c->pid_prefix;
    k->timing = c->timing;
    snprintf(cfg.cluster_relay_id, sizeof(cfg.cluster_relay_id), "%s", c->relay_id);
    snprintf(cfg.cluster_secret_file, sizeof(cfg.cluster_secret_file), "%s", c->secret_file);
    if (c->trunk_listen != NULL) {
        snprintf(cfg.cluster_trunk_listen, sizeof(cfg.cluster_trunk_listen), "%s", c->trunk_listen);
    } else {
        cfg.port = relayproc_free_port(SOCK_DGRAM);
        if (cfg.port == 0)
            return -1;
        snprintf(cfg.cluster_trunk_listen, sizeof(cfg.cluster_trunk_listen), "127.0.0.1:%u",
                 (unsigned)cfg.port);
    }
    static char cert[600], key[600];
    const char *d = echo_cert_dir(false);
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    snprintf(t->key_file, sizeof(t->key_file), "%s/tokenkeys-%d-%s-%s", d, (int)getpid(),
             c->key_prefix, c->relay_id);
    unlink(t->key_file);
    char err[256];
    if (keyfile_generate(t->key_file, "test", &t->keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "# relay %s: token key: %s\n", c->relay_id, err);
        return -1;
    }
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.token_key_file = t->key_file;
    cfg.addr = "127.0.0.1";
    cfg.no_pin = true;
    if (relay_new(&t->r, &cfg) != 0) {
        t->r = NULL;
        return -1;
    }
    if (c->before_start != NULL)
        c->before_start(t->r, c->arg);
    if (relay_start(t->r) != 0) {
        relay_del(t->r);
        t->r = NULL;
        return -1;
    }
    t->port = relay_port(t->r);
    caseguard_hold(t->r, test_relay_release, t, sizeof(*t));
    return cfg.port == 0 || t->port == cfg.port ? 0 : -1;
}

int clusterfx_relays_start(struct test_relay *t, unsigned from, unsigned to,
                           const struct clusterfx_relay *c)
{
    for (unsigned i = from; i < to; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s%u", c->relay_id, i);
        struct clusterfx_relay ci = *c;
        ci.relay_id = id;
        ci.pid_prefix = (uint8_t)(i + 1);
        if (clusterfx_relay_start(&t[i], &ci) != 0)
            return -1;
    }
    return 0;
}

/* A duration flag's value in ms; NULL for 0 (the default, no flag). */
static const char *ms_arg(char *buf, size_t cap, uint32_t ms)
{
    snprintf(buf, cap, "%ums", (unsigned)ms);
    return ms != 0 ? buf : NULL;
}

int clusterfx_proc_start(struct relayproc *rp, const struct clusterfx_relay *c)
{
    struct test_relay k;
    memset(&k, 0, sizeof(k));
    const char *d = echo_cert_dir(false);
    snprintf(k.key_file, sizeof(k.key_file), "%s/tokenkeys-%d-%s-%s", d, (int)getpid(),
             c->key_prefix, c->relay_id);
    unlink(k.key_file);
    char err[256];
    if (keyfile_generate(k.key_file, "proc", &k.keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "# relay %s: token key: %s\n", c->relay_id, err);
        return ROOST_EIO;
    }
    char cert[600], key[600], port[16], redis[64], trunk[64], prefix[16], lease[24], jwait[24],
        rtime[24];
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    uint16_t quic = relayproc_free_port(SOCK_DGRAM);
    snprintf(port, sizeof(port), "%u", quic);
    snprintf(redis, sizeof(redis), "127.0.0.1:%u", c->redis_port);
    snprintf(trunk, sizeof(trunk), "127.0.0.1:%u", quic);
    snprintf(prefix, sizeof(prefix), "%u", c->pid_prefix);
    const char *opt[][2] = {
        {"--lease", ms_arg(lease, sizeof(lease), c->timing.lease_ms)},
        {"--join-wait", ms_arg(jwait, sizeof(jwait), c->timing.wait_ms)},
        {"--redis-timeout", ms_arg(rtime, sizeof(rtime), c->timing.cmd_timeout_ms)},
    };
    /* The options with their values, grouped. */
    /* clang-format off */
    const char *args[40] = {
        "--listen", "127.0.0.1", "--port", port, "--workers", "2",
        "--cert", cert, "--key", key, "--token-keys", k.key_file,
        "--admin-listen", "127.0.0.1", "--admin-port", "0",
        "--redis", redis, "--relay-id", c->relay_id, "--pid-prefix", prefix,
        "--trunk-listen", c->trunk_listen != NULL ? c->trunk_listen : trunk,
        "--cluster-secret-file", c->secret_file, "--key-prefix", c->key_prefix};
    /* clang-format on */
    size_t a = 0;
    while (args[a] != NULL)
        a++;
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (opt[i][1] != NULL) {
            args[a++] = opt[i][0];
            args[a++] = opt[i][1];
        }
    args[a] = NULL;
    int rc = quic != 0 ? relayproc_start(rp, args) : ROOST_EIO;
    if (rc != 0) {
        fprintf(stderr, "# relay %s did not get ready: %s\n", c->relay_id, roost_strerror(rc));
        relayproc_dump_log(rp);
        unlink(k.key_file);
        return rc;
    }
    k.port = rp->port;
    rp->keys = k;
    return 0;
}

int clusterfx_static_start(struct test_relay *t, unsigned i, unsigned workers,
                           const char *secret_file, uint16_t home_port, uint8_t prefix)
{
    /* QUALITY every 250 ms: reports cross two trunks in a few intervals */
    struct relay_config cfg = {.n_workers = workers, .quality_interval_ns = 250000000ull};
    snprintf(cfg.cluster_relay_id, sizeof(cfg.cluster_relay_id), "r%u", i);
    cfg.cluster.pid_prefix = prefix ? prefix : (uint8_t)(i + 1);
    snprintf(cfg.cluster_secret_file, sizeof(cfg.cluster_secret_file), "%s", secret_file);
    snprintf(cfg.cluster_static_home, sizeof(cfg.cluster_static_home), "r0@127.0.0.1:%u",
             home_port ? home_port : 1u);
    return test_relay_start(t, &cfg);
}

int clusterfx_static_setup(struct clusterfx_static *s, const struct roost_client_callbacks *cbs)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->secret_file, sizeof(s->secret_file), "/tmp/roost-trunk-secret-XXXXXX");
    if (clusterfx_secret_file(s->secret_file, CLUSTERFX_SECRET) != 0)
        return -1;
    struct test_relay *t = s->tr;
    if (clusterfx_static_start(&t[0], 0, 2, s->secret_file, 0, 0) != 0 ||
        clusterfx_static_start(&t[1], 1, 1, s->secret_file, t[0].port, 0) != 0 ||
        clusterfx_static_start(&t[2], 2, 2, s->secret_file, t[0].port, 0) != 0)
        return -1;
    return clusterfx_client_new(&s->cl, cbs);
}

void clusterfx_static_teardown(struct clusterfx_static *s)
{
    roost_client_del(s->cl);
    s->cl = NULL;
    for (unsigned i = 0; i < sizeof(s->tr) / sizeof(s->tr[0]); i++)
        if (s->tr[i].r != NULL)
            test_relay_stop(&s->tr[i]);
    unlink(s->secret_file);
}

void clusterfx_static_join(struct clusterfx_static *s, struct part *p, unsigned i, const char *room,
                           const char *id, unsigned perms)
{
    assert_int_equal(clusterfx_join(s->cl, p, &s->tr[i], room, id, perms), 0);
}

int clusterfx_client_new(struct roost_client **out, const struct roost_client_callbacks *cbs)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    return roost_client_new(out, &cc, cbs, NULL);
}

struct trunk_stats clusterfx_trunk_stats(const struct test_relay *t)
{
    struct trunk_stats st;
    trunk_stats_total(t->r, &st);
    return st;
}

bool clusterfx_knows(const struct part *p, uint32_t pid)
{
    int n = 0;
    for (uint32_t i = 0; i < p->joined_n; i++)
        n += p->joined_pids[i] == pid;
    for (uint32_t i = 0; i < p->n_events; i++)
        if (p->events[i].pid == pid)
            n += p->events[i].kind == MSG_EV_JOIN ? 1 : -1;
    return n == 1;
}

int clusterfx_join(struct roost_client *cl, struct part *p, const struct test_relay *t,
                   const char *room, const char *id, unsigned perms)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->room, sizeof(p->room), "%s", room);
    snprintf(p->name, sizeof(p->name), "%s", id);
    test_token(t, room, id, perms, 0, 600, p->token, sizeof(p->token));
    return part_connect(cl, t->port, p);
}

unsigned clusterfx_known(const struct part *p)
{
    unsigned n = p->joined_n;
    for (uint32_t i = 0; i < p->n_events; i++)
        n += p->events[i].kind == MSG_EV_JOIN ? 1 : -1;
    return n;
}

bool clusterfx_all_know(void *arg)
{
    struct clusterfx_grp *g = arg;
    for (unsigned i = 0; i < g->n; i++)
        if (!g->p[i].joined || clusterfx_known(&g->p[i]) != g->want)
            return false;
    return true;
}

bool clusterfx_all_media(void *arg)
{
    struct clusterfx_grp *g = arg;
    for (unsigned i = 0; i < g->n; i++)
        if (g->p[i].n_media < g->want)
            return false;
    return true;
}

bool clusterfx_joined(void *arg)
{
    struct part *p = arg;
    return p->joined || p->closed;
}

bool clusterfx_got_frame(void *arg)
{
    struct clusterfx_frame *w = arg;
    for (uint32_t k = 0; k < w->p->n_media; k++)
        if (w->p->media[k].sender == w->sender && w->p->media[k].seq == w->seq)
            return true;
    return false;
}
