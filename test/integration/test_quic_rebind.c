/* NAT rebinding: the client's UDP source port changes mid-connection.
 *
 * Without steering (no_steering), SO_REUSEPORT's 4-tuple hash may drop its
 * packets on another worker, which hands them to the owner (the CID's worker
 * byte) through the ring; the connection survives and keeps exchanging
 * control messages and datagrams. That test rebinds until at least one
 * packet was forwarded.
 *
 * With steering (the default), the kernel picks the owner's socket by the
 * CID: forty rebinds on four workers forward nothing (with the hash, the
 * chance that forty new 4-tuples all land on the owner is 0.75^40), with
 * the extended program and with the classic one.
 *
 * Fallback: a process without the privileges extended BPF needs gets the
 * classic program, with one log line saying so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <linux/capability.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "../common/echo_app.h"

/* Deadline of a condition (never a timing bound): a loaded machine only
 * makes the echo come later. A lost datagram is sent again every
 * RESEND_MS while waiting. */
#define WAIT_MS 30000
#define RESEND_MS 100

static struct echo_conn ec;
static uint64_t want_ctl, want_dg;

static bool opened(void *arg)
{
    (void)arg;
    return ec.opened > 0;
}

static bool echoed(void *arg)
{
    (void)arg;
    return ec.ctl_in >= want_ctl && ec.dgram_in >= want_dg;
}

static void exchange(struct roost_client *cl)
{
    want_ctl = ec.ctl_in + 1;
    want_dg = ec.dgram_in + 1;
    const uint8_t body[] = "ping";
    assert_int_equal(roost_conn_send_control(ec.c, body, sizeof(body)), 0);
    uint8_t dg[80] = {7};
    uint64_t t0 = echo_now_ms();
    while (!echoed(NULL) && echo_now_ms() - t0 < WAIT_MS) {
        if (ec.dgram_in < want_dg)
            assert_int_equal(roost_conn_send_datagram(ec.c, dg, sizeof(dg)), 0);
        echo_client_until(cl, echoed, NULL, RESEND_MS);
    }
    assert_true(echoed(NULL));
}

static void test_rebind_forwarded(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 4, .no_steering = true};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, WAIT_MS));
    exchange(cl);
    struct quic_stats st;
    int rebinds = 0;
    for (; rebinds < 40; rebinds++) {
        uint16_t old = roost_conn_local_port(ec.c);
        assert_int_equal(roost_conn_rebind(ec.c), 0);
        assert_int_not_equal(roost_conn_local_port(ec.c), old);
        exchange(cl);
        echo_server_stats(es, &st);
        if (st.fwd_in > 0)
            break;
    }
    printf("# rebinds=%d fwd_out=%llu fwd_in=%llu\n", rebinds + 1, (unsigned long long)st.fwd_out,
           (unsigned long long)st.fwd_in);
    assert_true(st.fwd_out > 0);
    assert_true(st.fwd_in > 0);
    /* Still the same connection, still working after more traffic. */
    exchange(cl);
    exchange(cl);
    assert_int_equal(ec.closed, 0);
    echo_server_stats(es, &st);
    assert_int_equal(st.handshakes_ok, 1);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.reset_sent, 0);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void run_steered(enum quic_steer_mode mode)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 4, .steer = mode};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    const char *want = mode == QUIC_STEER_EBPF ? "ebpf" : "cbpf";
    if (mode == QUIC_STEER_EBPF && geteuid() != 0 &&
        strcmp(quic_shared_steering_mode(es->sh), want) != 0) {
        printf("# extended BPF steering not available (not root): skipped\n");
        echo_server_stop(es);
        skip();
        return;
    }
    assert_string_equal(quic_shared_steering_mode(es->sh), want);
    assert_true(echo_server_steering(es));
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    memset(&ec, 0, sizeof(ec));
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &ec, &ec.c), 0);
    assert_true(echo_client_until(cl, opened, NULL, 10000));
    exchange(cl);
    struct quic_stats st;
    for (int i = 0; i < 40; i++) {
        uint16_t old = roost_conn_local_port(ec.c);
        assert_int_equal(roost_conn_rebind(ec.c), 0);
        assert_int_not_equal(roost_conn_local_port(ec.c), old);
        exchange(cl);
    }
    echo_server_stats(es, &st);
    printf("# steered (%s): rebinds=40 fwd_out=%llu fwd_in=%llu pkts_in=%llu\n", want,
           (unsigned long long)st.fwd_out, (unsigned long long)st.fwd_in,
           (unsigned long long)st.pkts_in);
    assert_int_equal(st.fwd_out, 0);
    assert_int_equal(st.fwd_in, 0);
    assert_int_equal(ec.closed, 0);
    assert_int_equal(st.handshakes_ok, 1);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.reset_sent, 0);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_rebind_steered_ebpf(void **state)
{
    (void)state;
    run_steered(QUIC_STEER_EBPF);
}

static void test_rebind_steered_cbpf(void **state)
{
    (void)state;
    run_steered(QUIC_STEER_CBPF);
}

/* ------------------------------------------------------------ fallback */

/* Drops the capabilities extended BPF needs (CAP_BPF, CAP_NET_ADMIN,
 * CAP_SYS_ADMIN) from this process, if it has them. */
static void drop_bpf_caps(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &hdr, d) != 0)
        return;
    const unsigned caps[] = {CAP_SYS_ADMIN, CAP_NET_ADMIN, 39 /* CAP_BPF */};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        d[caps[i] / 32].effective &= ~(1u << (caps[i] % 32));
        d[caps[i] / 32].permitted &= ~(1u << (caps[i] % 32));
    }
    if (syscall(SYS_capset, &hdr, d) != 0)
        _exit(3);
}

/* Without the privileges extended BPF needs, the chain falls back to the
 * classic program (which needs none): exactly one "event=steering" line,
 * saying mode=cbpf and why. Runs in a child that drops its capabilities,
 * so the tests after it keep theirs. */
static void test_steering_fallback(void **state)
{
    (void)state;
    char path[] = "/tmp/roost-steer-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        drop_bpf_caps();
        log_set_fd(fd);
        struct quic_shared_config qc = {.n_workers = 2};
        char cert[600], key[600];
        snprintf(cert, sizeof(cert), "%s/server.pem", echo_cert_dir(false));
        snprintf(key, sizeof(key), "%s/server.key", echo_cert_dir(false));
        qc.cert_file = cert;
        qc.key_file = key;
        qc.addr = "127.0.0.1";
        qc.no_tickets = true;
        struct quic_shared *sh = NULL;
        if (quic_shared_new(&sh, &qc) != 0)
            _exit(4);
        int rc =
            strcmp(quic_shared_steering_mode(sh), "cbpf") == 0 && quic_shared_steering(sh) ? 0 : 5;
        quic_shared_del(sh);
        _exit(rc);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char logbuf[4096];
    ssize_t n = pread(fd, logbuf, sizeof(logbuf) - 1, 0);
    close(fd);
    assert_true(n > 0);
    logbuf[n] = '\0';
    printf("# fallback child exit=%d log:\n%s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
           logbuf);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    unsigned lines = 0;
    for (const char *p = logbuf; (p = strstr(p, "event=steering")) != NULL; p++)
        lines++;
    assert_int_equal(lines, 1);
    assert_non_null(strstr(logbuf, "event=steering mode=cid workers=2 program=cbpf"));
    assert_non_null(strstr(logbuf, "extended BPF refused"));
}

int main(void)
{
    /* The fallback test needs the default chain: no forced mode. */
    unsetenv("ROOST_STEERING");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebind_forwarded),
        cmocka_unit_test(test_rebind_steered_ebpf),
        cmocka_unit_test(test_rebind_steered_cbpf),
        cmocka_unit_test(test_steering_fallback),
    };
    return cmocka_run_group_tests_name("quic_rebind", tests, NULL, NULL);
}
