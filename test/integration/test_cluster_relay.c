/* The relay wired to the cluster directory (issue 18, docs/CLUSTER.md
 * 1.8) against a private redis-server: two in-process relays with
 * [cluster] settings and real QUIC participants.
 *
 *   - the first member of a room claims it: the lease is in Redis naming
 *     this relay, the home ops say self with that generation; participant
 *     ids carry each relay's prefix;
 *   - a member of the same room at the second relay is served there and
 *     its relay's home ops name the first relay, its trunk address and
 *     generation; the last member leaving a relay reports gone, and the
 *     home's last member leaving deletes the lease;
 *   - Redis killed: /healthz says degraded and /metrics roost_cluster_up 0,
 *     a placed room takes new members and relays media, a JOIN of a new room is rejected
 *     (SERVER_FULL, after join_wait), /cluster/place answers 503; Redis
 *     restarted on the same port: new rooms join without restarting the
 *     relay, the placed room is home again, /cluster/place and /rooms/{id}
 *     answer with the home.
 *
 * Skipped (TAP "1..0 # SKIP") without redis-server. Every wait polls
 * against a deadline; timings are short (1 s leases). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/clusterfx.h"
#include "../common/echo_app.h"
#include "../common/participant.h"
#include "../common/redis_server.h"
#include "../common/relayproc.h"
#include "core/error.h"
#include "proto/errcode.h"
#include "proto/keyfile.h"
#include "relay/admin.h"
#include "relay/cluster.h"

#define WAIT_MS 10000
#define LEASE_MS 1000
#define JOIN_WAIT_MS 600

static struct redis_server rs = {.pid = -1};
/* [cluster] relay_id turns trunks on: they need the cluster secret. */
static char secret_file[64] = "/tmp/roost-cr-secret-XXXXXX";

/* ------------------------------------------------------- recorded ops */

struct rec {
    pthread_mutex_t mu;
    unsigned homes, gones;
    bool self;
    char room[65], id[64], addr[128];
    uint64_t gen, gone_gen;
};

static void rec_home(struct relay_worker *rw, const char *room, size_t len, bool self,
                     const char *home_id, const char *home_addr, uint64_t gen, void *arg)
{
    (void)rw;
    struct rec *r = arg;
    pthread_mutex_lock(&r->mu);
    r->homes++;
    r->self = self;
    snprintf(r->room, sizeof(r->room), "%.*s", (int)len, room);
    snprintf(r->id, sizeof(r->id), "%s", home_id);
    snprintf(r->addr, sizeof(r->addr), "%s", home_addr);
    r->gen = gen;
    pthread_mutex_unlock(&r->mu);
}

static void rec_gone(struct relay_worker *rw, const char *room, size_t len, uint64_t gen, void *arg)
{
    (void)rw;
    (void)room;
    (void)len;
    struct rec *r = arg;
    pthread_mutex_lock(&r->mu);
    r->gones++;
    r->gone_gen = gen;
    pthread_mutex_unlock(&r->mu);
}

static const struct cluster_home_ops rec_ops = {.home = rec_home, .gone = rec_gone};

static struct rec rec_get(struct rec *r)
{
    pthread_mutex_lock(&r->mu);
    struct rec c = *r;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* --------------------------------------------------------------- relays */

/* The recording ops, registered before the workers run. */
static void use_rec(struct relay *r, void *arg)
{
    struct rec *rec = arg;
    assert_non_null(relay_cluster(r));
    pthread_mutex_init(&rec->mu, NULL);
    cluster_set_home_ops(relay_cluster(r), &rec_ops, rec);
}

/* A relay with the cluster (trunk_listen as given) and the recording ops. */
static void start_relay(struct test_relay *tr, const char *id, uint8_t prefix, const char *keys,
                        const char *trunk, struct rec *rec)
{
    struct clusterfx_relay c = {.relay_id = id,
                                .pid_prefix = prefix,
                                .redis_port = rs.port,
                                .key_prefix = keys,
                                .secret_file = secret_file,
                                .trunk_listen = trunk,
                                .timing = {.refresh_ms = 200,
                                           .relay_ttl_ms = 600,
                                           .lease_ms = LEASE_MS,
                                           .wait_ms = JOIN_WAIT_MS,
                                           .connect_timeout_ms = 200,
                                           .cmd_timeout_ms = 200,
                                           .backoff_min_ms = 20,
                                           .backoff_max_ms = 200},
                                .before_start = use_rec,
                                .arg = rec};
    assert_int_equal(clusterfx_relay_start(tr, &c), 0);
}

static bool answered(void *arg)
{
    struct part *p = arg;
    return p->answered || p->closed;
}

static bool closed(void *arg)
{
    struct part *p = arg;
    return p->closed;
}

static void join_one(struct roost_client *cl, struct test_relay *tr, struct part *p,
                     const char *room, const char *who)
{
    assert_int_equal(clusterfx_join(cl, p, tr, room, who, TOKEN_PERM_ALL), 0);
    assert_true(echo_client_until(cl, answered, p, WAIT_MS));
}

struct got {
    struct part *p;
    uint32_t n;
};

static bool got_media(void *arg)
{
    struct got *g = arg;
    return g->p->n_media >= g->n;
}

static void leave_one(struct roost_client *cl, struct part *p)
{
    assert_int_equal(part_leave(p), 0);
    assert_true(echo_client_until(cl, closed, p, WAIT_MS));
}

/* ---------------------------------------------------------------- Redis */

/* GET key into out ("" when absent). */
static void redis_get(const char *key, char *out, size_t cap)
{
    assert_int_equal(clusterfx_redis_get(&rs, key, out, cap), 0);
}

static long long redis_pttl(const char *key)
{
    redisContext *rc = redis_server_connect(&rs);
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, "PTTL %s", key);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    freeReplyObject(r);
    redisFree(rc);
    return v;
}

static void nap(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls the key until it starts with want ("": absent), stepping cl. */
static bool redis_until(struct roost_client *cl, const char *key, const char *want)
{
    uint64_t until = redis_test_now_ms() + WAIT_MS;
    char v[128];
    do {
        redis_get(key, v, sizeof(v));
        if (want[0] == '\0' ? v[0] == '\0' : strncmp(v, want, strlen(want)) == 0)
            return true;
        if (cl != NULL)
            roost_client_step(cl, 20);
        else
            nap(20);
    } while (redis_test_now_ms() < until);
    fprintf(stderr, "# %s = '%s', wanted '%s'\n", key, v, want);
    return false;
}

/* ----------------------------------------------------------------- HTTP */

static char *http_get(uint16_t port, const char *path, int *status)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_true(poll(&pfd, 1, WAIT_MS) == 1);
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        assert_true(k >= 0);
        if (k == 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", status), 1);
    char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    char *out = strdup(body + 4);
    free(buf);
    return out;
}

/* Polls path until its body contains want. */
static bool http_until(uint16_t port, const char *path, const char *want)
{
    uint64_t until = redis_test_now_ms() + WAIT_MS;
    do {
        int st;
        char *b = http_get(port, path, &st);
        bool ok = strstr(b, want) != NULL;
        free(b);
        if (ok)
            return true;
        nap(50);
    } while (redis_test_now_ms() < until);
    fprintf(stderr, "# %s never showed '%s'\n", path, want);
    return false;
}

/* ---------------------------------------------------------------- tests */

static void test_claim_peer_release(void **state)
{
    (void)state;
    static struct rec ra, rb;
    struct test_relay a, b;
    start_relay(&a, "relay-a", 1, "t1", "127.0.0.1:7101", &ra);
    start_relay(&b, "relay-b", 2, "t1", "127.0.0.1:7102", &rb);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    static struct part p1, p2;

    /* First member at A: A claims, its JOIN waited for the answer. */
    join_one(cl, &a, &p1, "demo", "alice");
    assert_true(p1.joined);
    assert_int_equal(p1.pid >> 24, 1);
    char v[128];
    redis_get("t1:room:demo", v, sizeof(v));
    assert_true(strncmp(v, "relay-a:", 8) == 0);
    assert_true(redis_pttl("t1:room:demo") > 0);
    uint64_t gen = strtoull(v + 8, NULL, 10);
    struct rec r = rec_get(&ra);
    assert_int_equal(r.homes, 1);
    assert_true(r.self);
    assert_string_equal(r.room, "demo");
    assert_string_equal(r.id, "relay-a");
    assert_int_equal(r.gen, gen);

    /* Same room at B: served there, home is A. */
    join_one(cl, &b, &p2, "demo", "bob");
    assert_true(p2.joined);
    assert_int_equal(p2.pid >> 24, 2);
    assert_int_not_equal(p1.pid, p2.pid);
    r = rec_get(&rb);
    assert_int_equal(r.homes, 1);
    assert_false(r.self);
    assert_string_equal(r.id, "relay-a");
    assert_string_equal(r.addr, "127.0.0.1:7101");
    assert_int_equal(r.gen, gen);

    /* B's last member leaves: gone at B; A keeps the lease. */
    leave_one(cl, &p2);
    uint64_t until = redis_test_now_ms() + WAIT_MS;
    while (rec_get(&rb).gones == 0 && redis_test_now_ms() < until)
        nap(10);
    assert_int_equal(rec_get(&rb).gones, 1);
    redis_get("t1:room:demo", v, sizeof(v));
    assert_true(strncmp(v, "relay-a:", 8) == 0);

    /* A's last member leaves: released in Redis at once (not by expiry:
     * the poll ends well before a lease would). */
    uint64_t t0 = redis_test_now_ms();
    leave_one(cl, &p1);
    assert_true(redis_until(cl, "t1:room:demo", ""));
    fprintf(stderr, "# lease gone %llu ms after LEAVE (lease %u ms)\n",
            (unsigned long long)(redis_test_now_ms() - t0), LEASE_MS);
    until = redis_test_now_ms() + WAIT_MS;
    while (rec_get(&ra).gones == 0 && redis_test_now_ms() < until)
        nap(10);
    r = rec_get(&ra);
    assert_int_equal(r.gones, 1);
    assert_int_equal(r.gone_gen, gen);

    roost_client_del(cl);
    test_relay_stop(&b);
    test_relay_stop(&a);
}

static void test_redis_down_and_back(void **state)
{
    (void)state;
    static struct rec ra;
    struct test_relay a;
    start_relay(&a, "relay-a", 1, "t2", "127.0.0.1:7201", &ra);
    struct admin *adm;
    struct admin_config ac = {.addr = "127.0.0.1", .port = 0};
    assert_int_equal(admin_new(&adm, a.r, &ac), 0);
    uint16_t ap = admin_port(adm);
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    static struct part p1, p2, p3, p4, p5;

    join_one(cl, &a, &p1, "placed", "alice");
    assert_true(p1.joined);
    assert_true(http_until(ap, "/metrics", "roost_cluster_up 1"));
    assert_true(http_until(ap, "/healthz", "ok"));
    assert_true(http_until(ap, "/cluster/place?room=placed", "\"is_home\": true"));

    /* Redis dies. */
    redis_server_kill(&rs);
    assert_true(http_until(ap, "/healthz", "degraded"));
    assert_true(http_until(ap, "/metrics", "roost_cluster_up 0"));
    int st;
    char *body = http_get(ap, "/cluster/place?room=placed", &st);
    assert_int_equal(st, 503);
    assert_non_null(strstr(body, "redis unavailable"));
    free(body);

    /* The placed room keeps taking members; a new room is refused after
     * the join wait. */
    join_one(cl, &a, &p2, "placed", "bob");
    assert_true(p2.joined);
    for (uint32_t k = 0; k < 5; k++)
        assert_int_equal(part_send(&p1, k), 0);
    struct got g = {&p2, 5};
    assert_true(echo_client_until(cl, got_media, &g, WAIT_MS));
    uint64_t t0 = redis_test_now_ms();
    join_one(cl, &a, &p3, "fresh", "carol");
    assert_false(p3.joined);
    assert_int_equal(p3.reject_code, PROTO_ERR_SERVER_FULL);
    fprintf(stderr, "# JOIN of a new room rejected after %llu ms (join_wait %u ms)\n",
            (unsigned long long)(redis_test_now_ms() - t0), JOIN_WAIT_MS);
    assert_true(http_until(ap, "/metrics", "roost_cluster_joins_rejected_total 1"));
    /* The placed room's lease lapses (Redis cannot renew it) and its claim
     * again fails too: the room keeps serving and is retried later. */
    assert_true(http_until(ap, "/metrics", "roost_cluster_claim_failures_total 2"));
    join_one(cl, &a, &p5, "placed", "erin");
    assert_true(p5.joined);

    /* Redis is back on the same port, empty: no restart of the relay. */
    assert_int_equal(redis_server_restart(&rs), 0);
    assert_true(http_until(ap, "/healthz", "ok"));
    join_one(cl, &a, &p4, "fresh", "dave");
    assert_true(p4.joined);
    assert_true(redis_until(cl, "t2:room:fresh", "relay-a:"));
    /* The placed room is home here again (restored or claimed again). */
    assert_true(redis_until(cl, "t2:room:placed", "relay-a:"));
    assert_true(http_until(ap, "/cluster/place?room=placed", "\"is_home\": true"));
    assert_true(http_until(ap, "/rooms/placed", "\"self\": true"));
    assert_true(http_until(ap, "/metrics", "roost_cluster_up 1"));

    leave_one(cl, &p1);
    leave_one(cl, &p2);
    leave_one(cl, &p4);
    leave_one(cl, &p5);
    roost_client_del(cl);
    admin_del(adm);
    test_relay_stop(&a);
}

static int group_setup(void **state)
{
    (void)state;
    if (clusterfx_redis_start(&rs) != 0)
        return -1;
    return clusterfx_secret_file(secret_file, CLUSTERFX_SECRET);
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(secret_file);
    redis_server_stop(&rs);
    return 0;
}

/* trunk_listen must name the relay's QUIC port (trunks ride it): relay_new
 * refuses another port, with or without a cluster section's redis. */
static void test_trunk_listen_port(void **state)
{
    (void)state;
    struct relay_config cfg = {.n_workers = 1};
    struct relay_cluster_config *k = &cfg.cluster;
    snprintf(k->redis_host, sizeof(k->redis_host), "127.0.0.1");
    k->redis_port = rs.port;
    k->pid_prefix = 9;
    snprintf(cfg.cluster_relay_id, sizeof(cfg.cluster_relay_id), "tl");
    static char cert[600], key[600], keys[600];
    const char *d = echo_cert_dir(false);
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    snprintf(keys, sizeof(keys), "%s/tokenkeys-%d-tl", d, (int)getpid());
    struct token_keyring kr;
    char err[256];
    unlink(keys);
    assert_int_equal(keyfile_generate(keys, "test", &kr, err, sizeof(err)), 0);
    snprintf(cfg.cluster_secret_file, sizeof(cfg.cluster_secret_file), "%s", secret_file);
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.token_key_file = keys;
    cfg.addr = "127.0.0.1";
    cfg.no_pin = true;
    cfg.port = relayproc_free_port(SOCK_DGRAM);
    snprintf(cfg.cluster_trunk_listen, sizeof(cfg.cluster_trunk_listen), "127.0.0.1:%u",
             cfg.port == 65535 ? 1u : cfg.port + 1u);
    struct relay *r = NULL;
    assert_int_equal(relay_new(&r, &cfg), ROOST_EINVAL);
    assert_null(r);
    k->redis_host[0] = '\0'; /* trunks without redis (static_home) ride the port too */
    assert_int_equal(relay_new(&r, &cfg), ROOST_EINVAL);
    assert_null(r);
    snprintf(k->redis_host, sizeof(k->redis_host), "127.0.0.1");
    snprintf(cfg.cluster_trunk_listen, sizeof(cfg.cluster_trunk_listen), "127.0.0.1:%u", cfg.port);
    assert_int_equal(relay_new(&r, &cfg), 0);
    relay_del(r);
    unlink(keys);
}

int main(void)
{
    if (clusterfx_skip_without_redis())
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_peer_release),
        cmocka_unit_test(test_redis_down_and_back),
        cmocka_unit_test(test_trunk_listen_port),
    };
    return cmocka_run_group_tests_name("cluster_relay", tests, group_setup, group_teardown);
}
