/* TLS session resumption (docs/OPERATIONS.md "TLS: key exchange,
 * certificates, resumption"): a second connection to the same relay
 * resumes from the ticket of the first (both ends say so); a ticket from a
 * relay with another master key, or from a key rotated out, gets a full
 * handshake that works; one rotation keeps the previous key's tickets
 * valid; a key file group or other may read is refused; a bad priority
 * string is refused with its position. */
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

#include "core/buf.h"
#include "core/error.h"
#include "quic/client.h"
#include "../common/echo_app.h"
#include "../common/resumecl.h"

/* Certificates with an Ed25519 key (scripts/dev-cert --type ed25519). */
static const char *ed25519_dir(void)
{
    static char d[512];
    if (d[0] != '\0')
        return d;
    const char *b = getenv("ROOST_BUILD");
    snprintf(d, sizeof(d), "%s/test-certs-ed25519", b && *b ? b : "build");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "scripts/dev-cert --type ed25519 '%s' >/dev/null", d);
    assert_int_equal(system(cmd), 0);
    return d;
}

static const char *ca_dir = NULL; /* NULL: echo_cert_dir(false) */

static void new_client(struct quic_client **cl)
{
    assert_int_equal(resumecl_new(cl, ca_dir), 0);
}

/* One connection: opens, echoes a control message, closes. Returns whether
 * it resumed. Waits for the relay's ticket when want_ticket. */
static bool join(struct quic_client *cl, uint16_t port, bool want_ticket)
{
    struct resumecl_conn t = {0};
    struct quic_conn *c = NULL;
    assert_int_equal(quic_client_connect(cl, "127.0.0.1", port, &t, &c), 0);
    assert_true(resumecl_until_open(cl, &t));
    assert_int_equal(t.closed, 0);
    assert_int_equal(quic_conn_send_control(c, (const uint8_t *)"hi", 2), 0);
    assert_true(resumecl_until(cl, &t.ctl_in, 1));
    if (want_ticket)
        assert_true(resumecl_until_ticket(cl, port));
    assert_int_equal(resumecl_close(cl, c), 0);
    return t.resumed;
}

static char *state_dir(void)
{
    const char *b = getenv("ROOST_BUILD");
    char tmpl[600];
    snprintf(tmpl, sizeof(tmpl), "%s/test-resume-XXXXXX", b && *b ? b : "build");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_state(char *d)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

static struct echo_server *start(const char *dir, uint16_t port)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1, .state_dir = dir, .port = port};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    return es;
}

static uint64_t resumed_count(struct echo_server *es)
{
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st.tls_resumed;
}

static void test_resume(void **state)
{
    (void)state;
    char *d = state_dir();
    struct echo_server *es = start(d, 0);
    uint16_t port = echo_server_port(es);
    struct quic_client *cl = NULL;
    new_client(&cl);
    assert_false(join(cl, port, true));
    assert_int_equal(resumed_count(es), 0);
    assert_true(join(cl, port, true));
    assert_int_equal(resumed_count(es), 1);
    /* The resumed session's own ticket resumes again. */
    assert_true(join(cl, port, false));
    assert_int_equal(resumed_count(es), 2);
    /* Without a ticket: full handshake. */
    quic_client_forget_ticket(cl, "127.0.0.1", port);
    assert_false(join(cl, port, false));
    quic_client_del(cl);
    echo_server_stop(es);
    rm_state(d);
    assert_int_equal(buf_live(), 0);
}

static void test_other_master_key(void **state)
{
    (void)state;
    char *d1 = state_dir(), *d2 = state_dir();
    struct echo_server *es = start(d1, 0);
    uint16_t port = echo_server_port(es);
    struct quic_client *cl = NULL;
    new_client(&cl);
    assert_false(join(cl, port, true));
    echo_server_stop(es);
    /* Same address, another relay (another state directory, so another
     * master key): the ticket is not accepted, the full handshake works and
     * brings a ticket that resumes there. */
    es = start(d2, port);
    assert_false(join(cl, port, true));
    assert_int_equal(resumed_count(es), 0);
    assert_true(join(cl, port, false));
    assert_int_equal(resumed_count(es), 1);
    quic_client_del(cl);
    echo_server_stop(es);
    /* The first relay's key survives its restart: same state directory. */
    es = start(d1, port);
    new_client(&cl);
    assert_false(join(cl, port, true));
    echo_server_stop(es);
    es = start(d1, port);
    assert_true(join(cl, port, false));
    quic_client_del(cl);
    echo_server_stop(es);
    rm_state(d1);
    rm_state(d2);
}

static void test_rotation(void **state)
{
    (void)state;
    char *d = state_dir();
    struct echo_server *es = start(d, 0);
    uint16_t port = echo_server_port(es);
    struct quic_client *cl = NULL, *cl2 = NULL;
    new_client(&cl);
    new_client(&cl2);
    assert_false(join(cl, port, true));
    assert_false(join(cl2, port, true));
    /* One rotation: the previous key's tickets stay valid. */
    assert_int_equal(quic_shared_rotate_tickets(es->sh), 0);
    assert_true(join(cl, port, true));
    assert_int_equal(resumed_count(es), 1);
    /* A second rotation: cl2's ticket's key is gone (expired): full
     * handshake, which works. */
    assert_int_equal(quic_shared_rotate_tickets(es->sh), 0);
    assert_false(join(cl2, port, true));
    assert_int_equal(resumed_count(es), 1);
    /* cl's ticket came from a resumption under the previous key, now gone
     * too: full handshake. */
    assert_false(join(cl, port, true));
    /* Fresh tickets resume. */
    assert_true(join(cl, port, false));
    assert_true(join(cl2, port, false));
    quic_client_del(cl);
    quic_client_del(cl2);
    echo_server_stop(es);
    /* The rotated keys were written: a restart resumes with them. */
    es = start(d, port);
    new_client(&cl);
    assert_false(join(cl, port, true));
    assert_int_equal(quic_shared_rotate_tickets(es->sh), 0);
    echo_server_stop(es);
    es = start(d, port);
    assert_true(join(cl, port, false)); /* previous key, loaded from the file */
    quic_client_del(cl);
    echo_server_stop(es);
    rm_state(d);
}

static void test_key_file_mode(void **state)
{
    (void)state;
    char *d = state_dir();
    struct echo_server *es = start(d, 0);
    echo_server_stop(es);
    char path[700];
    snprintf(path, sizeof(path), "%s/quic-tickets", d);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(chmod(path, 0640), 0);
    struct quic_shared_config qc = {.n_workers = 1, .state_dir = d};
    es = NULL;
    assert_int_equal(echo_server_start(&es, &qc), ROOST_EACCES);
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(echo_server_start(&es, &qc), ROOST_EACCES);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(echo_server_start(&es, &qc), 0);
    echo_server_stop(es);
    rm_state(d);
}

static void test_priority(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(quic_priority_check(QUIC_DEFAULT_PRIORITY, msg, sizeof(msg)), 0);
    assert_int_equal(quic_priority_check("NORMAL:-VERS-ALL:+VERS-TLS1.3:+BOGUS", msg, sizeof(msg)),
                     ROOST_EINVAL);
    assert_non_null(strstr(msg, "offset 30"));
    assert_non_null(strstr(msg, "+BOGUS"));
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1, .priority = "NORMAL:%NOPE"};
    assert_int_equal(echo_server_start(&es, &qc), ROOST_EINVAL);
    /* psk_ke instead of psk_dhe_ke (the benchmark's variant) still resumes. */
    qc.priority = QUIC_DEFAULT_PRIORITY ":+PSK";
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct quic_client *cl = NULL;
    new_client(&cl);
    assert_false(join(cl, echo_server_port(es), true));
    assert_true(join(cl, echo_server_port(es), false));
    quic_client_del(cl);
    echo_server_stop(es);
}

static void test_ed25519(void **state)
{
    (void)state;
    char cert[600], key[600];
    snprintf(cert, sizeof(cert), "%s/server.pem", ed25519_dir());
    snprintf(key, sizeof(key), "%s/server.key", ed25519_dir());
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 1, .cert_file = cert, .key_file = key};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    ca_dir = ed25519_dir();
    struct quic_client *cl = NULL;
    new_client(&cl);
    assert_false(join(cl, echo_server_port(es), true));
    assert_true(join(cl, echo_server_port(es), false));
    quic_client_del(cl);
    ca_dir = NULL;
    echo_server_stop(es);
}

/* A certificate reload drops every ticket: a resumed session would skip
 * the new certificate. */
static void test_cert_reload_drops_tickets(void **state)
{
    (void)state;
    char *d = state_dir();
    struct echo_server *es = start(d, 0);
    uint16_t port = echo_server_port(es);
    struct quic_client *cl = NULL;
    new_client(&cl);
    assert_false(join(cl, port, true));
    assert_true(join(cl, port, true));
    char cert[600], key[600];
    snprintf(cert, sizeof(cert), "%s/server.pem", echo_cert_dir(false));
    snprintf(key, sizeof(key), "%s/server.key", echo_cert_dir(false));
    assert_int_equal(quic_shared_reload_cert(es->sh, cert, key), 0);
    assert_false(join(cl, port, true));
    assert_true(join(cl, port, false));
    quic_client_del(cl);
    echo_server_stop(es);
    rm_state(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_other_master_key),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_key_file_mode),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_ed25519),
        cmocka_unit_test(test_cert_reload_drops_tickets),
    };
    return cmocka_run_group_tests_name("quic_resume", tests, NULL, NULL);
}
