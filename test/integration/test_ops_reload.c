/* The shipped roost-relay process under reload and room flags (issue 19):
 *  - max_conns raised on SIGHUP (edited config file): a relay started with
 *    max_conns = N and full admits N more after the reload (each worker
 *    grows its connection table), refuses the one after; lowering it again
 *    refuses new connections while the open ones stay;
 *  - [rooms] settings given as flags reach lib/room: with --prefill a late
 *    joiner gets the audio sent before it joined;
 *  - keys fixed at start (owner_share_max, affinity_max_members, placement,
 *    pack_members) changed in the file: the reload logs reload_needs_restart
 *    for each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/echo_app.h"
#include "../common/participant.h"
#include "../common/relayproc.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "relay/relay.h"

/* Deadline of a condition that must come (never a timing bound). */
#define WAIT_MS RELAYPROC_WAIT_MS

/* ------------------------------------------------------------- helpers */

/* After each test: a relay a failed assertion left running is killed (by
 * its PID only). */
static int kill_running(void **state)
{
    (void)state;
    relayproc_kill_all();
    return 0;
}

/* A relay process and its config file. */
struct child {
    struct relayproc rp;
    char conf[300];
};

static void keys_for_child(struct test_relay *k)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->key_file, sizeof(k->key_file), "%s/reloadkeys-%d", echo_cert_dir(false),
             (int)getpid());
    unlink(k->key_file);
    char err[256];
    assert_int_equal(keyfile_generate(k->key_file, "reload", &k->keys, err, sizeof(err)), 0);
}

/* More [limits] lines for the next write_conf ("" for none). */
static const char *conf_limits = "";

/* (Re)writes the child's config file with this max_conns. */
static void write_conf(const struct child *ch, const struct test_relay *k, uint16_t port,
                       unsigned max_conns)
{
    FILE *f = fopen(ch->conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[server]\nlisten = 127.0.0.1\nport = %u\nworkers = 1\n"
            "[tls]\ncert = %s/server.pem\nkey = %s/server.key\n"
            "[auth]\ntoken_keys = %s\n"
            "[limits]\nmax_conns = %u\n%s"
            "[admin]\nadmin = false\n[drain]\ndrain_timeout = 0\n",
            port, echo_cert_dir(false), echo_cert_dir(false), k->key_file, max_conns, conf_limits);
    assert_int_equal(fclose(f), 0);
}

/* Starts build/roost-relay -c ch->conf plus the extra arguments (NULL
 * ended, at most 8) and waits until it listens. */
static void child_start(struct child *ch, const struct test_relay *k, unsigned max_conns,
                        const char *const *extra)
{
    memset(ch, 0, sizeof(*ch));
    snprintf(ch->conf, sizeof(ch->conf), "%s/reload-%d.conf", echo_cert_dir(false), (int)getpid());
    write_conf(ch, k, relayproc_free_port(SOCK_DGRAM), max_conns);
    const char *argv[12] = {"-c", ch->conf};
    size_t a = 2;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && a < 10; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    int rc = relayproc_start(&ch->rp, argv);
    if (rc != 0)
        fail_msg("roost-relay did not start (%s):\n%s", roost_strerror(rc), ch->rp.log);
}

/* SIGTERM (drain_timeout 0: no drain wait), then waits for exit 0
 * (pumping the client so it answers). */
static void child_stop(struct child *ch, struct roost_client *cl)
{
    assert_int_equal(kill(ch->rp.pid, SIGTERM), 0);
    int st = relayproc_wait(&ch->rp, cl, WAIT_MS);
    unlink(ch->conf);
    if (st == -1) {
        relayproc_kill(&ch->rp);
        fail_msg("roost-relay did not exit");
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Waits for the n-th occurrence of what in the child's log. */
static bool child_log_until(struct child *ch, struct roost_client *cl, const char *what, unsigned n)
{
    return relayproc_log_until(&ch->rp, cl, what, n, WAIT_MS);
}

static struct roost_client *client_new(void)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &part_cbs, NULL), 0);
    return cl;
}

static void setup_part(const struct test_relay *k, struct part *p, const char *room,
                       const char *identity)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->room, sizeof(p->room), "%s", room);
    snprintf(p->name, sizeof(p->name), "%s", identity);
    test_token(k, room, identity, TOKEN_PERM_ALL, 0, 600, p->token, sizeof(p->token));
}

struct parts {
    struct part *v;
    unsigned n;
};

static bool all_settled(void *arg)
{
    struct parts *ps = arg;
    for (unsigned i = 0; i < ps->n; i++)
        if (!ps->v[i].answered && !ps->v[i].closed)
            return false;
    return true;
}

/* Connects n participants and waits until each joined or was closed. */
static void connect_all(struct roost_client *cl, uint16_t port, struct part *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(part_connect(cl, port, &v[i]), 0);
    struct parts ps = {v, n};
    assert_true(echo_client_until(cl, all_settled, &ps, WAIT_MS));
}

/* The connection was refused by the relay's limit: closed before any
 * handshake completed. */
static void assert_refused(const struct part *p)
{
    assert_true(p->closed);
    assert_false(p->opened);
    assert_false(p->joined);
}

/* ------------------------------------------------------- max_conns up */

#define N 3

static void test_reload_raises_max_conns(void **state)
{
    (void)state;
    struct test_relay k;
    keys_for_child(&k);
    struct child ch;
    child_start(&ch, &k, N, NULL);
    struct roost_client *cl = client_new();
    struct part *v = calloc(3 * N + 3, sizeof(*v));
    assert_non_null(v);
    char id[16];
    for (unsigned i = 0; i < 3 * N + 3; i++) {
        snprintf(id, sizeof(id), "u%u", i);
        setup_part(&k, &v[i], "M", id);
    }
    /* Full at N: the next one is refused. */
    connect_all(cl, ch.rp.port, v, N);
    for (unsigned i = 0; i < N; i++)
        assert_true(v[i].joined);
    connect_all(cl, ch.rp.port, &v[N], 1);
    assert_refused(&v[N]);

    /* Raise to 2N in the file, SIGHUP: N more get in, the one after not. */
    write_conf(&ch, &k, ch.rp.port, 2 * N);
    assert_int_equal(kill(ch.rp.pid, SIGHUP), 0);
    assert_true(child_log_until(&ch, cl, "event=reload what=limits", 1));
    connect_all(cl, ch.rp.port, &v[N + 1], N);
    for (unsigned i = N + 1; i < 2 * N + 1; i++)
        assert_true(v[i].joined);
    assert_non_null(strstr(ch.rp.log, "event=reload what=limits max_conns=6 "));
    assert_null(strstr(ch.rp.log, "reload_needs_restart key=max_conns"));
    connect_all(cl, ch.rp.port, &v[2 * N + 1], 1);
    assert_refused(&v[2 * N + 1]);
    /* The first ones are still there. */
    for (unsigned i = 0; i < N; i++)
        assert_false(v[i].closed);

    /* Lower to N: a new connection is refused, the 2N open ones stay. */
    write_conf(&ch, &k, ch.rp.port, N);
    assert_int_equal(kill(ch.rp.pid, SIGHUP), 0);
    assert_true(child_log_until(&ch, cl, "event=reload what=limits", 2));
    assert_non_null(strstr(ch.rp.log, "event=reload what=limits max_conns=3 "));
    connect_all(cl, ch.rp.port, &v[2 * N + 2], 1);
    assert_refused(&v[2 * N + 2]);
    for (unsigned i = 0; i < 2 * N + 1; i++)
        assert_true(i == N || !v[i].closed);

    child_stop(&ch, cl);
    free(v);
    roost_client_del(cl);
    unlink(k.key_file);
    token_keyring_wipe(&k.keys);
}

/* ------------------------------------------------ keys fixed at start */

/* owner_share_max and affinity_max_members are read once, when lib/room is
 * made: a reload that changes them says that they need a restart (like
 * max_members) instead of ignoring them silently; one that keeps them says
 * nothing. */
static void test_reload_fixed_room_keys(void **state)
{
    (void)state;
    struct test_relay k;
    keys_for_child(&k);
    struct child ch;
    conf_limits = "owner_share_max = 60\naffinity_max_members = 4\nplacement = pack\n"
                  "pack_members = 50\n";
    child_start(&ch, &k, N, NULL);
    struct roost_client *cl = client_new();
    /* Unchanged: a reload, no warning. */
    assert_int_equal(kill(ch.rp.pid, SIGHUP), 0);
    assert_true(child_log_until(&ch, cl, "event=reload what=limits", 1));
    /* Changed: one warning per key, the relay keeps running. */
    conf_limits = "owner_share_max = 30\naffinity_max_members = 8\nplacement = spread\n"
                  "pack_members = 60\n";
    write_conf(&ch, &k, ch.rp.port, N);
    assert_int_equal(kill(ch.rp.pid, SIGHUP), 0);
    assert_true(child_log_until(&ch, cl, "reload_needs_restart key=owner_share_max", 1));
    assert_true(child_log_until(&ch, cl, "reload_needs_restart key=affinity_max_members", 1));
    assert_true(child_log_until(&ch, cl, "reload_needs_restart key=placement", 1));
    assert_true(child_log_until(&ch, cl, "reload_needs_restart key=pack_members", 1));
    /* The first reload (logged before the second's lines) warned of neither. */
    const char *second = strstr(ch.rp.log, "event=reload what=limits");
    assert_non_null(second);
    second = strstr(second + 1, "event=reload what=limits");
    assert_non_null(second);
    assert_true(strstr(ch.rp.log, "key=owner_share_max") > second);
    assert_true(strstr(ch.rp.log, "key=affinity_max_members") > second);
    assert_true(strstr(ch.rp.log, "key=placement") > second);
    conf_limits = "";
    child_stop(&ch, cl);
    roost_client_del(cl);
    unlink(k.key_file);
    token_keyring_wipe(&k.keys);
}

/* ------------------------------------------------------ [rooms] flags */

struct seq_wait {
    struct part *p;
    uint32_t sender, seq;
};

static bool got_seq(void *arg)
{
    struct seq_wait *w = arg;
    for (uint32_t j = 0; j < w->p->n_media && j < PART_LOG; j++)
        if (w->p->media[j].sender == w->sender && w->p->media[j].seq == w->seq)
            return true;
    return false;
}

/* Returns how many packets of sender before seq `live` the part received. */
static unsigned early_packets(const struct part *p, uint32_t sender, uint32_t live)
{
    unsigned n = 0;
    for (uint32_t j = 0; j < p->n_media && j < PART_LOG; j++)
        n += p->media[j].sender == sender && p->media[j].seq < live;
    return n;
}

/* A joiner after 5 audio packets gets them first with --prefill (from the
 * command line, over the file), and none without. */
static void prefill_run(const char *const *extra, bool want)
{
    struct test_relay k;
    keys_for_child(&k);
    struct child ch;
    child_start(&ch, &k, 100, extra);
    struct roost_client *cl = client_new();
    struct part *v = calloc(2, sizeof(*v));
    assert_non_null(v);
    setup_part(&k, &v[0], "P", "sender");
    setup_part(&k, &v[1], "P", "late");
    connect_all(cl, ch.rp.port, v, 1);
    assert_true(v[0].joined);
    for (uint32_t s = 1; s <= 5; s++)
        assert_int_equal(part_send(&v[0], s), 0);
    /* The datagrams leave before the joiner's handshake starts, so the
     * relay has them before it sees the JOIN (loopback, one worker). */
    roost_client_step(cl, 50);
    connect_all(cl, ch.rp.port, &v[1], 1);
    assert_true(v[1].joined);
    assert_int_equal(part_send(&v[0], 100), 0);
    struct seq_wait w = {&v[1], v[0].pid, 100};
    assert_true(echo_client_until(cl, got_seq, &w, WAIT_MS));
    unsigned n = early_packets(&v[1], v[0].pid, 100);
    if (want)
        assert_int_equal(n, 5);
    else
        assert_int_equal(n, 0);
    child_stop(&ch, cl);
    free(v);
    roost_client_del(cl);
    unlink(k.key_file);
    token_keyring_wipe(&k.keys);
}

static void test_prefill_flag(void **state)
{
    (void)state;
    static const char *const extra[] = {"--prefill",
                                        "10s",
                                        "--keyframe-cap",
                                        "64k",
                                        "--keyframe-request-window",
                                        "50ms",
                                        "--quality-interval",
                                        "250ms",
                                        NULL};
    prefill_run(extra, true);
}

static void test_prefill_default_off(void **state)
{
    (void)state;
    prefill_run(NULL, false);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reload_raises_max_conns, kill_running),
        cmocka_unit_test_teardown(test_reload_fixed_room_keys, kill_running),
        cmocka_unit_test_teardown(test_prefill_flag, kill_running),
        cmocka_unit_test_teardown(test_prefill_default_off, kill_running),
    };
    return cmocka_run_group_tests_name("ops_reload", tests, NULL, NULL);
}
