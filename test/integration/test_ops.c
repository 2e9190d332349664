/* Relay operations end to end: the admin endpoint against a live in-process
 * relay (JSON parsed with jansson, Prometheus text with python3's
 * prometheus_client parser), admission limits and what /capacity says,
 * drain (GOAWAY, refusal of new connections, relaying goes on), SIGHUP-style
 * key rotation, and the roost-relay process itself: SIGTERM drains and exits
 * 0 once rooms are empty, or at the deadline, or at once on a second signal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/echo_app.h"
#include "../common/httpc.h"
#include "../common/participant.h"
#include "../common/relayproc.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "relay/admin.h"
#include "relay/relay.h"

/* Deadline of a condition that must come (never a timing bound): a loaded
 * machine only makes it come later. */
#define WAIT_MS 30000
/* The drain deadline of test_process_drain_deadline and the interval in
 * which test_process_drain_rooms_empty checks the relay is still running
 * (an absence: a loaded machine only makes the check weaker). */
#define DRAIN_DEADLINE_S 1
#define STILL_RUNNING_MS 300

/* ------------------------------------------------ participants + GOAWAY */

struct opart {
    struct part p; /* first: roost_conn_user() points here */
    unsigned goaway;
    uint32_t goaway_ms;
};

static void op_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct opart *op = roost_conn_user(c);
    struct msg *m = malloc(sizeof(*m));
    if (m != NULL && msg_decode(body, len, m) == 0 && m->type == MSG_GOAWAY) {
        op->goaway++;
        op->goaway_ms = m->u.goaway.drain_ms;
    }
    free(m);
    part_cbs.on_control(c, body, len, arg);
}

/* part_cbs with GOAWAY counting (part_cbs is not a constant expression). */
static struct roost_client_callbacks cbs_rt;

/* A client trusting the test CA, or (other) the unrelated second CA. */
static struct roost_client *client_new_ca(bool other)
{
    cbs_rt = part_cbs;
    cbs_rt.on_control = op_control;
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(other));
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &cbs_rt, NULL), 0);
    return cl;
}

static struct roost_client *client_new(void)
{
    return client_new_ca(false);
}

static void setup_op(const struct test_relay *tr, struct opart *op, const char *room,
                     const char *identity)
{
    memset(op, 0, sizeof(*op));
    snprintf(op->p.room, sizeof(op->p.room), "%s", room);
    snprintf(op->p.name, sizeof(op->p.name), "%s", identity);
    test_token(tr, room, identity, TOKEN_PERM_ALL, 0, 600, op->p.token, sizeof(op->p.token));
}

struct ops {
    struct opart *v;
    unsigned n;
};

static bool all_answered(void *arg)
{
    struct ops *o = arg;
    for (unsigned i = 0; i < o->n; i++)
        if (!o->v[i].p.answered && !o->v[i].p.closed)
            return false;
    return true;
}

static bool all_goaway(void *arg)
{
    struct ops *o = arg;
    for (unsigned i = 0; i < o->n; i++)
        if (o->v[i].goaway == 0)
            return false;
    return true;
}

static bool all_closed(void *arg)
{
    struct ops *o = arg;
    for (unsigned i = 0; i < o->n; i++)
        if (!o->v[i].p.closed)
            return false;
    return true;
}

static void join(struct roost_client *cl, uint16_t port, struct opart *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(part_connect(cl, port, &v[i].p), 0);
    struct ops o = {v, n};
    assert_true(echo_client_until(cl, all_answered, &o, WAIT_MS));
}

struct media_wait {
    struct opart *v;
    unsigned n;
    uint32_t want;
};

static bool got_media(void *arg)
{
    struct media_wait *w = arg;
    for (unsigned i = 0; i < w->n; i++)
        if (w->v[i].p.n_media < w->want)
            return false;
    return true;
}

struct stats_wait {
    struct relay *r;
    int64_t rooms;
};

static bool rooms_are(void *arg)
{
    struct stats_wait *w = arg;
    struct relay_stats st;
    relay_stats(w->r, &st);
    return st.rooms == w->rooms && (w->rooms != 0 || st.participants == 0);
}

/* ------------------------------------------------------------------ HTTP */

/* GET over HTTP/1.0: the body (malloc'd) and the status; fails the test
 * when there is no answer. */
static char *http_get(uint16_t port, const char *path, int *status)
{
    char *body = httpc_get(port, path, status, WAIT_MS);
    if (body == NULL)
        fail_msg("GET %s on port %u: no answer", path, port);
    return body;
}

static json_t *get_json(uint16_t port, const char *path, int want_status)
{
    int status;
    char *body = http_get(port, path, &status);
    assert_int_equal(status, want_status);
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    if (j == NULL)
        fail_msg("%s: not JSON: %s", path, je.text);
    free(body);
    return j;
}

static json_int_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* Prometheus text parsed by python3-prometheus-client: the script prints
 * one "name{labels} value" line per sample. Returns NULL (the test is
 * skipped) when the parser is not installed. */
static const char prom_py[] =
    "import sys\n"
    "try:\n"
    "    from prometheus_client.parser import text_string_to_metric_families as f\n"
    "except ImportError:\n"
    "    sys.exit(3)\n"
    "for fam in f(open(sys.argv[1]).read()):\n"
    "    for s in fam.samples:\n"
    "        l = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))\n"
    "        print('%s{%s} %r' % (s.name, l, float(s.value)))\n";

static char *prom_parse(const char *text)
{
    char path[] = "/tmp/roost-test-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char script[] = "/tmp/roost-test-prom-XXXXXX";
    fd = mkstemp(script);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, prom_py, strlen(prom_py)), (ssize_t)strlen(prom_py));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s", script, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t k;
    while ((k = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (len + 1 >= cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
    }
    out[len] = '\0';
    int st = pclose(p);
    unlink(path);
    unlink(script);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
        free(out);
        return NULL;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("prometheus_client rejected the exposition (status %d)", st);
    return out;
}

/* Sum of the samples of `name` whose labels contain `label` (NULL: all). */
static double prom_sum(const char *parsed, const char *name, const char *label)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *l = parsed; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, name, nl) != 0 || l[nl] != '{')
            continue;
        const char *close = strchr(l, '}');
        const char *eol = strchr(l, '\n');
        if (close == NULL || (eol && close > eol))
            continue;
        if (label != NULL) {
            char lab[256];
            size_t ll = (size_t)(close - l - (long)nl - 1);
            if (ll >= sizeof(lab))
                continue;
            memcpy(lab, l + nl + 1, ll);
            lab[ll] = '\0';
            if (strstr(lab, label) == NULL)
                continue;
        }
        sum += strtod(close + 2, NULL);
    }
    return sum;
}

/* ------------------------------------------------------------- admin */

static void start_admin(struct test_relay *tr, struct admin **adm, uint16_t *port)
{
    struct admin_config ac = {.addr = "127.0.0.1", .port = 0, .drain_timeout_ns = 2000000000ull};
    assert_int_equal(admin_new(adm, tr->r, &ac), 0);
    *port = admin_port(*adm);
    assert_true(*port != 0);
}

/* Every admin endpoint on a relay with no session and no room. /rooms then
 * has no member to sort: admin.c once called qsort(NULL, 0, ...), undefined
 * behaviour that the UBSan build (make check-asan) stops on. */
static void test_admin_empty_relay(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct admin *adm;
    uint16_t ap;
    start_admin(&tr, &adm, &ap);

    int status;
    char *text = http_get(ap, "/metrics", &status);
    assert_int_equal(status, 200);
    assert_non_null(strstr(text, "roost_workers 2\n"));
    char *parsed = prom_parse(text);
    free(text);
    if (parsed != NULL) {
        assert_true(prom_sum(parsed, "roost_server_rooms", NULL) == 0);
        assert_true(prom_sum(parsed, "roost_server_participants", NULL) == 0);
        assert_true(prom_sum(parsed, "roost_joins_total", NULL) == 0);
        assert_true(prom_sum(parsed, "roost_join_latency_seconds_count", NULL) == 0);
        free(parsed);
    } else {
        print_message("python3-prometheus-client missing: exposition not parsed\n");
    }

    json_t *j = get_json(ap, "/capacity", 200);
    assert_int_equal(jint(j, "rooms"), 0);
    assert_int_equal(jint(j, "participants"), 0);
    assert_int_equal(jint(j, "connections"), 0);
    assert_int_equal(json_array_size(json_object_get(j, "workers")), 2);
    json_decref(j);

    const char *all[] = {"/rooms", "/rooms/"};
    for (size_t i = 0; i < 2; i++) {
        j = get_json(ap, all[i], 200);
        assert_int_equal(jint(j, "count"), 0);
        json_t *rooms = json_object_get(j, "rooms");
        assert_true(json_is_array(rooms));
        assert_int_equal(json_array_size(rooms), 0);
        json_decref(j);
    }

    j = get_json(ap, "/rooms/nope", 404);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "no such room");
    json_decref(j);

    text = http_get(ap, "/healthz", &status);
    assert_int_equal(status, 200);
    assert_string_equal(text, "ok\n");
    free(text);

    admin_del(adm);
    test_relay_stop(&tr);
}

static void test_admin_endpoints(void **state)
{
    (void)state;
    struct test_relay tr;
    /* spread: /rooms names each room's hash owner as its owner. */
    struct relay_config cfg = {.n_workers = 2, .placement = ROOM_PLACE_SPREAD};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct admin *adm;
    uint16_t ap;
    start_admin(&tr, &adm, &ap);
    struct roost_client *cl = client_new();
    struct opart v[4];
    setup_op(&tr, &v[0], "ops-room", "alice");
    setup_op(&tr, &v[1], "ops-room", "bob");
    setup_op(&tr, &v[2], "ops-room", "carol");
    setup_op(&tr, &v[3], "other", "dave");
    join(cl, tr.port, v, 4);
    for (unsigned i = 0; i < 4; i++)
        assert_true(v[i].p.joined);
    for (uint32_t k = 0; k < 5; k++)
        for (unsigned i = 0; i < 3; i++)
            assert_int_equal(part_send(&v[i].p, i * 100 + k), 0);
    struct media_wait mw = {v, 3, 10};
    assert_true(echo_client_until(cl, got_media, &mw, WAIT_MS));

    int status;
    char *h = http_get(ap, "/healthz", &status);
    assert_int_equal(status, 200);
    assert_string_equal(h, "ok\n");
    free(h);

    /* /rooms: both rooms, the three members of ops-room with their ids. */
    json_t *j = get_json(ap, "/rooms", 200);
    assert_int_equal(jint(j, "count"), 2);
    json_t *rooms = json_object_get(j, "rooms");
    assert_int_equal(json_array_size(rooms), 2);
    json_t *room = json_array_get(rooms, 0); /* sorted by id: ops-room < other */
    assert_string_equal(json_string_value(json_object_get(room, "id")), "ops-room");
    assert_int_equal(jint(room, "owner_worker"), relay_room_owner(tr.r, "ops-room", 8));
    assert_int_equal(jint(room, "member_count"), 3);
    json_t *members = json_object_get(room, "members");
    for (unsigned i = 0; i < 3; i++) {
        bool found = false;
        size_t k;
        json_t *m;
        json_array_foreach(members, k, m)
        {
            if (jint(m, "participant_id") == v[i].p.pid) {
                found = true;
                assert_string_equal(json_string_value(json_object_get(m, "display_name")),
                                    v[i].p.name);
                assert_true(json_is_true(json_object_get(m, "joined")));
                json_t *link = json_object_get(m, "link");
                assert_true(jint(link, "datagrams_in") >= 5);
                assert_true(jint(link, "bytes_in") > 0);
            }
        }
        assert_true(found);
    }
    json_decref(j);

    j = get_json(ap, "/rooms/other", 200);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "other");
    assert_int_equal(jint(j, "member_count"), 1);
    json_decref(j);
    j = get_json(ap, "/rooms/nope", 404);
    json_decref(j);

    /* /capacity reflects the members and rooms. */
    j = get_json(ap, "/capacity", 200);
    assert_int_equal(jint(j, "participants"), 4);
    assert_int_equal(jint(j, "rooms"), 2);
    assert_int_equal(jint(j, "connections"), 4);
    assert_int_equal(json_array_size(json_object_get(j, "workers")), 2);
    assert_true(json_is_true(json_object_get(j, "can_accept_more")));
    assert_int_equal(jint(j, "suggested_backoff_ms"), 0);
    json_decref(j);

    /* /metrics: valid exposition; the counters moved. */
    char *text = http_get(ap, "/metrics", &status);
    assert_int_equal(status, 200);
    char *parsed = prom_parse(text);
    free(text);
    if (parsed != NULL) {
        assert_true(prom_sum(parsed, "roost_joins_total", NULL) == 4);
        assert_true(prom_sum(parsed, "roost_server_participants", NULL) == 4);
        assert_true(prom_sum(parsed, "roost_server_rooms", NULL) == 2);
        assert_true(prom_sum(parsed, "roost_rooms", NULL) == 2);
        assert_true(prom_sum(parsed, "roost_participants", NULL) == 4);
        assert_true(prom_sum(parsed, "roost_connections", NULL) == 4);
        assert_true(prom_sum(parsed, "roost_handshakes_total", "result=ok") == 4);
        assert_true(prom_sum(parsed, "roost_media_in_total", NULL) >= 15);
        assert_true(prom_sum(parsed, "roost_media_out_total", NULL) >= 30);
        assert_true(prom_sum(parsed, "roost_join_latency_seconds_count", NULL) == 4);
        assert_true(prom_sum(parsed, "roost_join_latency_seconds_bucket", "le=+Inf") == 4);
        /* Every delivery is timed, and none by more than a second: ingress
         * and egress read one clock (turn starts of two workers are not
         * comparable and once produced wrapped negative delays). */
        double fo = prom_sum(parsed, "roost_fanout_latency_seconds_count", NULL);
        assert_true(fo >= 30);
        assert_true(prom_sum(parsed, "roost_fanout_latency_seconds_bucket", "le=1.07374182") == fo);
        assert_true(prom_sum(parsed, "roost_bytes_received_total", NULL) > 0);
        assert_true(prom_sum(parsed, "roost_worker_busy_seconds_total", NULL) > 0);
        /* The timer and pacer counters are exported (their values depend
         * on timing; test_quic_pace and test_quic_ackdelay test them). */
        assert_non_null(strstr(parsed, "roost_quic_timer_fires_total"));
        assert_non_null(strstr(parsed, "roost_quic_acks_settled_total"));
        assert_non_null(strstr(parsed, "roost_quic_pace_holds_total"));
        assert_non_null(strstr(parsed, "roost_quic_expiry_kept_total"));
        /* No room or identity labels anywhere. */
        assert_null(strstr(parsed, "ops-room"));
        assert_null(strstr(parsed, "alice"));
        free(parsed);
    } else {
        print_message("python3-prometheus-client missing: exposition not parsed\n");
    }

    admin_del(adm);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* -------------------------------------------------------- admission */

static bool closed_or_open(void *arg)
{
    struct part *p = arg;
    return p->closed || p->opened;
}

static void test_admission_limits(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {
        .n_workers = 1, .max_members = 2, .max_rooms = 2, .max_conns_per_worker = 5};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct admin *adm;
    uint16_t ap;
    start_admin(&tr, &adm, &ap);
    struct roost_client *cl = client_new();
    struct opart v[6];
    setup_op(&tr, &v[0], "A", "a1");
    setup_op(&tr, &v[1], "A", "a2");
    setup_op(&tr, &v[2], "A", "a3"); /* room full */
    setup_op(&tr, &v[3], "B", "b1");
    setup_op(&tr, &v[4], "C", "c1"); /* server full: max_rooms 2 */
    setup_op(&tr, &v[5], "B", "b2"); /* 6th connection: over max_conns */
    join(cl, tr.port, v, 2);
    join(cl, tr.port, v + 2, 1);
    join(cl, tr.port, v + 3, 1);
    join(cl, tr.port, v + 4, 1);
    assert_true(v[0].p.joined && v[1].p.joined && v[3].p.joined);
    assert_false(v[2].p.joined);
    assert_int_equal(v[2].p.reject_code, PROTO_ERR_ROOM_FULL);
    assert_false(v[4].p.joined);
    assert_int_equal(v[4].p.reject_code, PROTO_ERR_SERVER_FULL);
    assert_int_equal(part_connect(cl, tr.port, &v[5].p), 0);
    assert_true(echo_client_until(cl, closed_or_open, &v[5].p, WAIT_MS));
    assert_true(v[5].p.closed);
    assert_false(v[5].p.ci.opened); /* refused before the handshake */

    json_t *j = get_json(ap, "/capacity", 200);
    assert_false(json_is_true(json_object_get(j, "can_accept_more")));
    assert_true(jint(j, "suggested_backoff_ms") > 0);
    json_t *rej = json_object_get(j, "rejections");
    assert_int_equal(jint(rej, "room_full"), 1);
    assert_int_equal(jint(rej, "server_full"), 1);
    assert_true(jint(rej, "conn_limit") >= 1);
    assert_int_equal(jint(j, "rooms"), 2);
    assert_int_equal(jint(j, "max_rooms"), 2);
    json_t *w0 = json_array_get(json_object_get(j, "workers"), 0);
    assert_true(json_is_true(json_object_get(w0, "full")));
    json_decref(j);

    int status;
    char *text = http_get(ap, "/metrics", &status);
    char *parsed = prom_parse(text);
    free(text);
    if (parsed != NULL) {
        assert_true(prom_sum(parsed, "roost_join_rejections_total", "code=room_full") == 1);
        assert_true(prom_sum(parsed, "roost_join_rejections_total", "code=server_full") == 1);
        assert_true(
            prom_sum(parsed, "roost_admission_rejections_total", "reason=refused_conn_limit") >= 1);
        free(parsed);
    }
    admin_del(adm);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* Above the handshake rate new clients are sent a Retry; they still get in. */
/* n clients start at once against a relay with cfg's admission limits;
 * all must still get in. Returns worker 0's counters. */
static void join_all_under_limit(struct relay_config *cfg, unsigned n, const char *room,
                                 struct relay_worker_stats *ws)
{
    struct test_relay tr;
    assert_int_equal(test_relay_start(&tr, cfg), 0);
    struct roost_client *cl = client_new();
    struct opart v[8];
    assert_true(n <= 8);
    for (unsigned i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "u%u", i);
        setup_op(&tr, &v[i], room, id);
    }
    join(cl, tr.port, v, n);
    for (unsigned i = 0; i < n; i++)
        assert_true(v[i].p.joined);
    relay_worker_stats(tr.r, 0, ws);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* Above handshake_rate new clients are sent a Retry, and still join. */
static void test_handshake_rate_retry(void **state)
{
    (void)state;
    struct relay_config cfg = {.n_workers = 1, .handshake_rate = 1};
    struct relay_worker_stats ws;
    join_all_under_limit(&cfg, 3, "R", &ws);
    assert_true(ws.quic.retry_rate >= 1);
    assert_true(ws.quic.retry_sent >= 1);
}

/* Half-open handshakes above max_half_open are answered with Retry: eight
 * clients start at once against a limit of one; all still get in. */
static void test_half_open_retry(void **state)
{
    (void)state;
    struct relay_config cfg = {.n_workers = 1, .max_half_open = 1};
    struct relay_worker_stats ws;
    join_all_under_limit(&cfg, 8, "H", &ws);
    assert_true(ws.quic.retry_half_open >= 1);
    assert_true(ws.quic.retry_sent >= ws.quic.retry_half_open);
}

/* ------------------------------------------------------------- drain */

static void test_drain_in_process(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2, .drain_ms = 1234};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct admin *adm;
    uint16_t ap;
    start_admin(&tr, &adm, &ap);
    struct roost_client *cl = client_new();
    struct opart v[4];
    setup_op(&tr, &v[0], "D", "d1");
    setup_op(&tr, &v[1], "D", "d2");
    setup_op(&tr, &v[2], "D", "d3");
    setup_op(&tr, &v[3], "D", "late");
    join(cl, tr.port, v, 3);

    assert_false(relay_draining(tr.r));
    assert_int_equal(relay_drain(tr.r), 0);
    assert_true(relay_draining(tr.r));
    struct ops o = {v, 3};
    assert_true(echo_client_until(cl, all_goaway, &o, WAIT_MS));
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(v[i].goaway, 1);
        assert_int_equal(v[i].goaway_ms, 1234);
        assert_false(v[i].p.closed);
    }
    int status;
    free(http_get(ap, "/healthz", &status));
    assert_int_equal(status, 503);
    json_t *j = get_json(ap, "/capacity", 200);
    assert_false(json_is_true(json_object_get(j, "can_accept_more")));
    assert_true(json_is_true(json_object_get(j, "draining")));
    assert_int_equal(jint(j, "suggested_backoff_ms"), 2000);
    json_decref(j);

    /* A new connection is refused... */
    assert_int_equal(part_connect(cl, tr.port, &v[3].p), 0);
    assert_true(echo_client_until(cl, closed_or_open, &v[3].p, WAIT_MS));
    assert_true(v[3].p.closed);
    assert_false(v[3].p.ci.opened);
    /* ...while the members still relay media. */
    assert_int_equal(part_send(&v[0].p, 7), 0);
    struct media_wait mw = {v + 1, 2, 1};
    assert_true(echo_client_until(cl, got_media, &mw, WAIT_MS));

    /* Members leave: the rooms empty, which is what ends a drain. */
    for (unsigned i = 0; i < 3; i++)
        part_leave(&v[i].p);
    assert_true(echo_client_until(cl, all_closed, &o, WAIT_MS));
    struct stats_wait sw = {tr.r, 0};
    assert_true(echo_client_until(cl, rooms_are, &sw, WAIT_MS));
    struct relay_worker_stats ws0, ws1;
    relay_worker_stats(tr.r, 0, &ws0);
    relay_worker_stats(tr.r, 1, &ws1);
    assert_int_equal(ws0.relay.goaway_sent + ws1.relay.goaway_sent, 3);
    assert_true(ws0.quic.refused_draining + ws1.quic.refused_draining >= 1);
    admin_del(adm);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* ------------------------------------------------------------ reload */

static void test_reload_key_rotation(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *cl = client_new();
    struct opart v[3];
    setup_op(&tr, &v[0], "K", "old-member");
    setup_op(&tr, &v[1], "K", "old-key-late"); /* minted now with the old key */
    join(cl, tr.port, v, 1);
    assert_true(v[0].p.joined);

    /* Rotate: the new file holds only a new key. */
    struct test_relay nk; /* only keys and key_file are used */
    memset(&nk, 0, sizeof(nk));
    snprintf(nk.key_file, sizeof(nk.key_file), "%.200s.new", tr.key_file);
    unlink(nk.key_file);
    char err[256];
    assert_int_equal(keyfile_generate(nk.key_file, "rotated", &nk.keys, err, sizeof(err)), 0);
    struct relay_config rc = cfg;
    rc.token_key_file = nk.key_file;
    assert_int_equal(relay_reload(tr.r, &rc), 0);
    setup_op(&nk, &v[2], "K", "new-member");

    join(cl, tr.port, v + 1, 2);
    assert_false(v[1].p.joined);
    assert_int_equal(v[1].p.reject_code, PROTO_ERR_BAD_TOKEN);
    assert_true(v[2].p.joined);
    /* The member admitted under the old key is still there and hears the
     * new one. */
    assert_false(v[0].p.closed);
    assert_int_equal(part_send(&v[2].p, 1), 0);
    struct media_wait mw = {v, 1, 1};
    assert_true(echo_client_until(cl, got_media, &mw, WAIT_MS));
    assert_int_equal(v[0].p.media[0].sender, v[2].p.pid);

    /* A broken key file keeps the current keys. */
    struct relay_config bad = cfg;
    bad.token_key_file = "/nonexistent/keys";
    assert_int_equal(relay_reload(tr.r, &bad), ROOST_EBADKEY);
    struct opart v4;
    setup_op(&nk, &v4, "K", "after-bad-reload");
    join(cl, tr.port, &v4, 1);
    assert_true(v4.p.joined);

    unlink(nk.key_file);
    token_keyring_wipe(&nk.keys);
    roost_client_del(cl);
    test_relay_stop(&tr);
}

/* SIGHUP certificate reload: new sessions get the new certificate, a
 * session from before keeps working, and a bad file keeps the current one. */
static void test_reload_certificate(void **state)
{
    (void)state;
    struct test_relay tr;
    struct relay_config cfg = {.n_workers = 2};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct roost_client *old_ca = client_new_ca(false);
    struct opart a;
    setup_op(&tr, &a, "C", "before");
    join(old_ca, tr.port, &a, 1);
    assert_true(a.p.joined);

    /* The second test certificate is signed by an unrelated CA. */
    static char cert[600], key[600];
    snprintf(cert, sizeof(cert), "%s/server.pem", echo_cert_dir(true));
    snprintf(key, sizeof(key), "%s/server.key", echo_cert_dir(true));
    struct relay_config rc = cfg;
    rc.cert_file = cert;
    rc.key_file = key;
    assert_int_equal(relay_reload(tr.r, &rc), 0);

    /* A client trusting only the new CA now connects; one trusting only
     * the old CA no longer can. */
    struct roost_client *new_ca = client_new_ca(true);
    struct opart b, c;
    setup_op(&tr, &b, "C", "after");
    join(new_ca, tr.port, &b, 1);
    assert_true(b.p.joined);
    setup_op(&tr, &c, "C", "old-trust");
    join(old_ca, tr.port, &c, 1);
    assert_false(c.p.joined);
    assert_true(c.p.closed && !c.p.ci.opened);

    /* The session from before the reload is untouched and hears b. */
    assert_false(a.p.closed);
    assert_int_equal(part_send(&b.p, 1), 0);
    struct media_wait mw = {&a, 1, 1};
    for (int i = 0; i < 500 && a.p.n_media == 0; i++) {
        roost_client_step(new_ca, 2);
        roost_client_step(old_ca, 2);
    }
    assert_true(got_media(&mw));
    assert_int_equal(a.p.media[0].sender, b.p.pid);

    /* A missing file: reload fails, the current certificate stays. */
    struct relay_config bad = rc;
    bad.cert_file = "/nonexistent/cert.pem";
    assert_int_equal(relay_reload(tr.r, &bad), ROOST_ECRYPTO);
    struct opart d;
    setup_op(&tr, &d, "C", "after-bad");
    join(new_ca, tr.port, &d, 1);
    assert_true(d.p.joined);

    roost_client_del(new_ca);
    roost_client_del(old_ca);
    test_relay_stop(&tr);
}

/* ------------------------------------------------- the process itself */

/* Starts roost-relay on a free port with two workers, the test
 * certificate, keys' token key, no admin endpoint and this drain timeout,
 * and waits until it listens. */
static void child_start(struct relayproc *ch, const struct test_relay *keys, const char *drain)
{
    char cert[600], key[600], port[16];
    snprintf(cert, sizeof(cert), "%s/server.pem", echo_cert_dir(false));
    snprintf(key, sizeof(key), "%s/server.key", echo_cert_dir(false));
    snprintf(port, sizeof(port), "%u", relayproc_free_port(SOCK_DGRAM));
    const char *const args[] = {"--port",
                                port,
                                "--workers",
                                "2",
                                "--cert",
                                cert,
                                "--key",
                                key,
                                "--token-keys",
                                keys->key_file,
                                "--admin=false",
                                "--drain-timeout",
                                drain,
                                "--max-members",
                                "50",
                                NULL};
    int rc = relayproc_start(ch, args);
    if (rc != 0)
        fail_msg("roost-relay did not start (%s):\n%s", roost_strerror(rc), ch->log);
}

/* Waits up to ms for the child to exit; returns its wait status or -1. */
static int child_wait(struct relayproc *ch, struct roost_client *cl, int ms)
{
    return relayproc_wait(ch, cl, ms);
}

static void keys_for_child(struct test_relay *k)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->key_file, sizeof(k->key_file), "%s/opskeys-%d", echo_cert_dir(false),
             (int)getpid());
    unlink(k->key_file);
    char err[256];
    assert_int_equal(keyfile_generate(k->key_file, "proc", &k->keys, err, sizeof(err)), 0);
}

/* After each process test: a relay a failed assertion left running is
 * killed (by its PID). */
static int kill_relays(void **state)
{
    (void)state;
    relayproc_kill_all();
    return 0;
}

/* SIGTERM with members: GOAWAY, still running; members leave -> exit 0. */
static void test_process_drain_rooms_empty(void **state)
{
    (void)state;
    struct test_relay k;
    keys_for_child(&k);
    struct relayproc ch;
    child_start(&ch, &k, "20s");
    struct roost_client *cl = client_new();
    struct opart v[2];
    setup_op(&k, &v[0], "P", "p1");
    setup_op(&k, &v[1], "P", "p2");
    join(cl, ch.port, v, 2);
    assert_true(v[0].p.joined && v[1].p.joined);
    assert_int_equal(kill(ch.pid, SIGTERM), 0);
    struct ops o = {v, 2};
    assert_true(echo_client_until(cl, all_goaway, &o, WAIT_MS));
    assert_int_equal(v[0].goaway_ms, 20000);
    /* Rooms are not empty: the relay keeps running. */
    assert_int_equal(child_wait(&ch, cl, STILL_RUNNING_MS), -1);
    part_leave(&v[0].p);
    part_leave(&v[1].p);
    int st = child_wait(&ch, cl, WAIT_MS);
    assert_true(st != -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_non_null(strstr(ch.log, "event=drain_done reason=rooms_empty"));
    assert_non_null(strstr(ch.log, "event=conn_closed"));
    /* Tokens never reach the log. */
    assert_null(strstr(ch.log, v[0].p.token));
    roost_client_del(cl);
    unlink(k.key_file);
}

/* SIGTERM with members that stay: exit 0 at the deadline. */
static void test_process_drain_deadline(void **state)
{
    (void)state;
    struct test_relay k;
    keys_for_child(&k);
    struct relayproc ch;
    char deadline[16];
    snprintf(deadline, sizeof(deadline), "%ds", DRAIN_DEADLINE_S);
    child_start(&ch, &k, deadline);
    struct roost_client *cl = client_new();
    struct opart v[1];
    setup_op(&k, &v[0], "Q", "q1");
    join(cl, ch.port, v, 1);
    assert_true(v[0].p.joined);
    uint64_t t0 = echo_now_ms();
    assert_int_equal(kill(ch.pid, SIGTERM), 0);
    int st = child_wait(&ch, cl, WAIT_MS);
    assert_true(st != -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* Not before the deadline (t0 is before the signal, so at least it). */
    assert_true(echo_now_ms() - t0 >= DRAIN_DEADLINE_S * 1000u);
    assert_non_null(strstr(ch.log, "event=drain_done reason=timeout"));
    struct ops o = {v, 1};
    assert_true(echo_client_until(cl, all_closed, &o, WAIT_MS));
    assert_int_equal(v[0].goaway, 1);
    roost_client_del(cl);
    unlink(k.key_file);
}

/* A second signal ends the drain at once. */
static void test_process_second_signal(void **state)
{
    (void)state;
    struct test_relay k;
    keys_for_child(&k);
    struct relayproc ch;
    child_start(&ch, &k, "60s");
    struct roost_client *cl = client_new();
    struct opart v[1];
    setup_op(&k, &v[0], "S", "s1");
    join(cl, ch.port, v, 1);
    assert_int_equal(kill(ch.pid, SIGTERM), 0);
    struct ops o = {v, 1};
    assert_true(echo_client_until(cl, all_goaway, &o, WAIT_MS));
    assert_int_equal(kill(ch.pid, SIGINT), 0);
    int st = child_wait(&ch, cl, WAIT_MS);
    assert_true(st != -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_non_null(strstr(ch.log, "event=drain_abort"));
    roost_client_del(cl);
    unlink(k.key_file);
}

/* The admin endpoint on an ephemeral port: relayproc reads it from the
 * start banner and waits for /healthz before it returns; SIGTERM on an
 * empty relay exits 0 at once. */
static void test_process_ready_healthz(void **state)
{
    (void)state;
    struct test_relay k;
    keys_for_child(&k);
    char cert[600], key[600], port[16];
    snprintf(cert, sizeof(cert), "%s/server.pem", echo_cert_dir(false));
    snprintf(key, sizeof(key), "%s/server.key", echo_cert_dir(false));
    snprintf(port, sizeof(port), "%u", relayproc_free_port(SOCK_DGRAM));
    const char *const args[] = {"--port", port, "--workers",    "1",        "--cert",       cert,
                                "--key",  key,  "--token-keys", k.key_file, "--admin-port", "0",
                                NULL};
    struct relayproc ch;
    int rc = relayproc_start(&ch, args);
    if (rc != 0)
        fail_msg("roost-relay did not start (%s):\n%s", roost_strerror(rc), ch.log);
    assert_int_not_equal(ch.admin_port, 0);
    int status = 0;
    char *h = http_get(ch.admin_port, "/healthz", &status);
    assert_int_equal(status, 200);
    assert_string_equal(h, "ok\n");
    free(h);
    assert_int_equal(kill(ch.pid, SIGTERM), 0);
    int st = child_wait(&ch, NULL, WAIT_MS);
    assert_true(st != -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unlink(k.key_file);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_empty_relay),
        cmocka_unit_test(test_admin_endpoints),
        cmocka_unit_test(test_admission_limits),
        cmocka_unit_test(test_handshake_rate_retry),
        cmocka_unit_test(test_drain_in_process),
        cmocka_unit_test(test_reload_key_rotation),
        cmocka_unit_test(test_reload_certificate),
        cmocka_unit_test(test_half_open_retry),
        cmocka_unit_test_teardown(test_process_drain_rooms_empty, kill_relays),
        cmocka_unit_test_teardown(test_process_drain_deadline, kill_relays),
        cmocka_unit_test_teardown(test_process_second_signal, kill_relays),
        cmocka_unit_test_teardown(test_process_ready_healthz, kill_relays),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
