/* 100k malformed datagrams during live connections: random bytes, truncated
 * long headers, absurd length fields, short headers with unknown CIDs (for
 * every worker and for none), Initials under 1200 bytes, unknown versions.
 * Every live connection keeps exchanging control messages and datagrams
 * throughout, the relay counts and drops the garbage, and no connection is
 * created or lost by it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "quic/cid.h"
#include "../common/echo_app.h"

#define LIVE 16
#define FLOOD 100000
#define WORKERS 2
/* Deadline of a condition that must come (never a timing bound). */
#define WAIT_MS 30000
/* Garbage sent ahead of what the relay has read: kept well under what the
 * sockets buffer, so a loaded machine (the relay descheduled while the
 * flood goes on) slows the flood instead of making the kernel drop it. */
#define FLOOD_WINDOW 256

static struct echo_conn conns[LIVE];
static uint64_t want_ctl[LIVE], want_dg[LIVE];

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static bool all_open(void *arg)
{
    (void)arg;
    return echo_conns_open(conns, LIVE);
}

static bool all_echoed(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < LIVE; i++)
        if (conns[i].ctl_in < want_ctl[i] || conns[i].dgram_in < want_dg[i])
            return false;
    return true;
}

static void exchange(struct roost_client *cl)
{
    const uint8_t body[] = "still-here";
    uint8_t dg[120] = {9};
    for (unsigned i = 0; i < LIVE; i++) {
        want_ctl[i] = conns[i].ctl_in + 1;
        want_dg[i] = conns[i].dgram_in + 1;
        assert_int_equal(roost_conn_send_control(conns[i].c, body, sizeof(body)), 0);
    }
    /* Datagrams are unreliable: resent, paced, until each one's echo came
     * back; the control echo is reliable. */
    for (uint64_t end = echo_now_ms() + WAIT_MS; !all_echoed(NULL) && echo_now_ms() < end;) {
        for (unsigned i = 0; i < LIVE; i++)
            if (conns[i].dgram_in < want_dg[i])
                roost_conn_send_datagram(conns[i].c, dg, sizeof(dg));
        echo_client_until(cl, all_echoed, NULL, 50);
    }
    assert_true(all_echoed(NULL));
}

/* One malformed datagram of kind k into p; returns its length. */
static size_t garbage(uint8_t *p, unsigned k)
{
    size_t len;
    switch (k % 6) {
    case 0: /* random bytes, random length */
        len = 1 + rnd() % 1500;
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rnd();
        return len;
    case 1: /* truncated long header */
        len = 1 + rnd() % 6;
        p[0] = 0xc0;
        for (size_t i = 1; i < len; i++)
            p[i] = (uint8_t)rnd();
        return len;
    case 2: /* Initial v1 with an absurd length field */
        memset(p, 0, 1200);
        p[0] = 0xc3;
        p[4] = 1;
        p[5] = 8;
        for (int i = 6; i < 14; i++)
            p[i] = (uint8_t)rnd();
        p[14] = 0;                  /* scid len */
        p[15] = 0;                  /* token len */
        p[16] = 0xbf, p[17] = 0xff; /* 8-byte varint follows: absurd */
        p[18] = p[19] = p[20] = p[21] = p[22] = p[23] = 0xff;
        return 1200;
    case 3: { /* short header, unknown CID, naming some worker (or none) */
        uint8_t cid[QUIC_CID_LEN];
        cid_generate(cid, (unsigned)(rnd() % (WORKERS + 2)));
        p[0] = 0x40 | (uint8_t)(rnd() & 0x3f);
        memcpy(p + 1, cid, sizeof(cid));
        len = 21 + rnd() % 100;
        for (size_t i = 17; i < len; i++)
            p[i] = (uint8_t)rnd();
        return len;
    }
    case 4: /* Initial under 1200 bytes */
        len = 100 + rnd() % 1000;
        memset(p, 0, len);
        p[0] = 0xc0;
        p[4] = 1;
        p[5] = 8;
        for (int i = 6; i < 14; i++)
            p[i] = (uint8_t)rnd();
        p[16] = 0x40 | (uint8_t)((len - 18) >> 8);
        p[17] = (uint8_t)(len - 18);
        return len;
    default: /* unknown version, short datagram (no VN earned) */
        len = 50;
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rnd();
        p[0] = 0xc0;
        p[1] = 0x1a, p[2] = 0x2a, p[3] = 0x3a, p[4] = 0x4a;
        p[5] = 8;
        p[14] = 8;
        return len;
    }
}

static struct echo_server *g_es;

/* The relay has read all but FLOOD_WINDOW of the garbage sent so far
 * (pkts_in also counts the live connections' packets: it only gets there
 * sooner), or has read nothing new for 200 ms (it drained its sockets:
 * what is not there the kernel dropped). Steps the client meanwhile. */
static void flood_pace(struct roost_client *cl, uint64_t in0, unsigned sent)
{
    if (sent <= FLOOD_WINDOW)
        return;
    uint64_t last = UINT64_MAX, since = echo_now_ms();
    for (uint64_t end = echo_now_ms() + WAIT_MS; echo_now_ms() < end;) {
        struct quic_stats st;
        echo_server_stats(g_es, &st);
        if (st.pkts_in - in0 >= sent - FLOOD_WINDOW)
            return;
        if (st.pkts_in != last) {
            last = st.pkts_in;
            since = echo_now_ms();
        } else if (echo_now_ms() - since > 200) {
            return;
        }
        roost_client_step(cl, 1);
    }
}

static void test_flood(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = WORKERS};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    g_es = es;
    struct roost_client *cl = NULL;
    assert_int_equal(echo_client_new(&cl, false, NULL), 0);
    for (unsigned i = 0; i < LIVE; i++)
        assert_int_equal(
            roost_client_connect(cl, "127.0.0.1", echo_server_port(es), &conns[i], &conns[i].c), 0);
    assert_true(echo_client_until(cl, all_open, NULL, WAIT_MS));
    exchange(cl);
    struct quic_stats st0;
    echo_server_stats(es, &st0);

    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(echo_server_port(es))};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    uint8_t p[1500];
    unsigned sent = 0;
    for (unsigned i = 0; i < FLOOD; i++) {
        size_t len = garbage(p, i);
        if (send(fds[i % 8], p, len, 0) == (ssize_t)len)
            sent++;
        if (i % 64 == 63)
            flood_pace(cl, st0.pkts_in, sent);
        if (i % 250 == 0)
            roost_client_step(cl, 0);
        if (i % 10000 == 9999)
            exchange(cl);
    }
    exchange(cl);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    struct quic_stats st;
    echo_server_stats(es, &st);
    printf("# sent=%u pkts_in=%llu malformed=%llu unknown_cid=%llu reset=%llu vn=%llu "
           "fwd=%llu limited=%llu\n",
           sent, (unsigned long long)st.pkts_in, (unsigned long long)st.malformed,
           (unsigned long long)st.unknown_cid, (unsigned long long)st.reset_sent,
           (unsigned long long)st.vn_sent, (unsigned long long)st.fwd_out,
           (unsigned long long)st.rate_limited);
    assert_int_equal(st.handshakes_ok, LIVE);
    assert_int_equal(st.conns_open, LIVE);
    assert_true(st.malformed + st.unknown_cid > sent / 2);
    for (unsigned i = 0; i < LIVE; i++)
        assert_int_equal(conns[i].closed, 0);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood),
    };
    return cmocka_run_group_tests_name("quic_flood", tests, NULL, NULL);
}
