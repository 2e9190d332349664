/* Connection hand-off between workers (lib/quic/handoff.h), on the echo
 * relay: the client asks with a control "handoff" + worker; the echo app
 * calls quic_conn_handoff and, once adopted, says "adopted" + worker.
 *
 *   live:      datagrams with sequence numbers flow through the hand-off;
 *              every one comes back exactly once (what was lost is what the
 *              relay counted dropped), the connection ends up on the target
 *              worker only; with each steering mode (extended BPF, classic
 *              BPF, the hash).
 *   direct:    after the move, with extended steering, the old CIDs'
 *              packets land on the new worker: nothing is forwarded, through
 *              rebinds too; the kernel's moved-CID map empties at the end.
 *   vanish:    the client goes silent right after the hand-off: the idle
 *              timer, re-armed on the new worker, ends the connection.
 *   leave:     the client closes in the same flight as the hand-off request.
 *   shutdown:  the relay stops while the connection is held on the new
 *              worker (knob 1) or still queued in a ring (knob 2, the
 *              runtime's discard): one on_close each, nothing leaks (ASan).
 *   rebind:    the client's port changes right after the hand-off.
 *   property:  random hand-offs, closes and opens on four workers; then
 *              every connection is on exactly one worker and answers.
 * Deadlines are conditions (never timing bounds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/buf.h"
#include "../common/echo_app.h"

#define WAIT_MS 30000
#define NSEQ 400

struct hconn {
    struct roost_conn *c;
    int opened, closed;
    uint64_t ctl_in, dgram_in;
    int adopted_on; /* -1 until "adopted" */
    int at;         /* the last "where" answer, -1 none */
    unsigned adopted;
    uint8_t seen[NSEQ];
    unsigned dups;
};

static void h_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    ((struct hconn *)roost_conn_user(c))->opened++;
}

static void h_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct hconn *h = roost_conn_user(c);
    h->ctl_in++;
    if (len == 3 && body[0] == 'a' && body[1] == 't')
        h->at = body[2];
    if (len == ECHO_ADOPTED_LEN + 1 && memcmp(body, ECHO_ADOPTED, ECHO_ADOPTED_LEN) == 0) {
        h->adopted_on = body[ECHO_ADOPTED_LEN];
        h->adopted++;
    }
}

static void h_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct hconn *h = roost_conn_user(c);
    h->dgram_in++;
    if (len >= 4) {
        uint32_t seq;
        memcpy(&seq, data, 4);
        if (seq < NSEQ) {
            if (h->seen[seq])
                h->dups++;
            h->seen[seq] = 1;
        }
    }
}

static void h_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)arg;
    (void)info;
    ((struct hconn *)roost_conn_user(c))->closed++;
}

static const struct roost_client_callbacks h_cbs = {
    .on_open = h_open,
    .on_control = h_control,
    .on_datagram = h_datagram,
    .on_close = h_close,
};

static struct roost_client *client_new(void)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl = NULL;
    assert_int_equal(roost_client_new(&cl, &cc, &h_cbs, NULL), 0);
    return cl;
}

static bool until(struct roost_client *cl, bool (*pred)(void *), void *arg)
{
    return echo_client_until(cl, pred, arg, WAIT_MS);
}

static bool p_opened(void *arg)
{
    return ((struct hconn *)arg)->opened > 0;
}

static bool p_adopted(void *arg)
{
    return ((struct hconn *)arg)->adopted > 0;
}

static void connect_one(struct roost_client *cl, struct echo_server *es, struct hconn *h)
{
    memset(h, 0, sizeof(*h));
    h->adopted_on = -1;
    h->at = -1;
    assert_int_equal(roost_client_connect(cl, "127.0.0.1", echo_server_port(es), h, &h->c), 0);
    assert_true(until(cl, p_opened, h));
}

/* The one worker holding a connection (conns_open per worker); -1 when
 * none or several do. */
static int conn_worker(struct echo_server *es, unsigned *total)
{
    int w = -1;
    *total = 0;
    for (unsigned i = 0; i < es->n_workers; i++) {
        struct quic_stats st;
        quic_shared_stats(es->sh, i, &st);
        *total += (unsigned)st.conns_open;
        if (st.conns_open > 0)
            w = (int)i;
    }
    return *total == 1 ? w : -1;
}

static void ask_handoff(struct hconn *h, unsigned to)
{
    uint8_t body[ECHO_HANDOFF_LEN + 1];
    memcpy(body, ECHO_HANDOFF_CMD, ECHO_HANDOFF_LEN);
    body[ECHO_HANDOFF_LEN] = (uint8_t)to;
    assert_int_equal(roost_conn_send_control(h->c, body, sizeof(body)), 0);
}

struct echo_wait {
    struct hconn *h;
    uint64_t want;
};

static bool p_ctl(void *arg)
{
    struct echo_wait *e = arg;
    return e->h->ctl_in >= e->want;
}

/* A control round trip: the connection answers wherever it is. */
static void ping(struct roost_client *cl, struct hconn *h)
{
    struct echo_wait e = {.h = h, .want = h->ctl_in + 1};
    const uint8_t body[] = "ping";
    assert_int_equal(roost_conn_send_control(h->c, body, sizeof(body)), 0);
    assert_true(until(cl, p_ctl, &e));
}

static struct echo_server *cur_es;

static bool p_server_empty(void *arg)
{
    (void)arg;
    struct quic_stats st;
    echo_server_stats(cur_es, &st);
    return st.conns_open == 0 && st.handoff_fwd_cids == 0;
}

static void wait_server_empty(struct roost_client *cl, struct echo_server *es)
{
    cur_es = es;
    assert_true(until(cl, p_server_empty, NULL));
}

/* ------------------------------------------------------------------ live */

struct seq_wait {
    struct hconn *h;
    struct echo_server *es;
    unsigned sent;
};

static unsigned received(const struct hconn *h)
{
    unsigned n = 0;
    for (unsigned i = 0; i < NSEQ; i++)
        n += h->seen[i];
    return n;
}

/* Datagrams the relay received and did not echo, counted by reason. */
static uint64_t counted_drops(struct echo_server *es)
{
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st.dgram_drop_cwnd + st.dgram_drop_queue + st.dgram_drop_state +
           st.dgram_drop_too_large + st.dgram_lost;
}

/* Everything sent reached the relay or was counted lost on the way (by the
 * client, or a forward dropped on a full ring), and everything the relay
 * received came back or was counted dropped there. */
static bool p_all_back(void *arg)
{
    struct seq_wait *w = arg;
    struct quic_stats st;
    echo_server_stats(w->es, &st);
    struct roost_conn_stats cs;
    roost_conn_stats(w->h->c, &cs);
    return received(w->h) + counted_drops(w->es) == st.dgram_in &&
           st.dgram_in + st.fwd_dropped + cs.dgram_dropped + cs.dgram_lost >= w->sent;
}

/* Starts es with steering mode `mode`; false (es stopped) when that mode
 * cannot be had here: extended BPF without the privileges (a root test
 * run must get it). */
static bool start_mode(struct echo_server **es, struct quic_shared_config *qc,
                       enum quic_steer_mode mode)
{
    qc->steer = mode;
    qc->no_steering = mode == QUIC_STEER_HASH;
    assert_int_equal(echo_server_start(es, qc), 0);
    const char *want = mode == QUIC_STEER_EBPF ? "ebpf" : mode == QUIC_STEER_CBPF ? "cbpf" : "hash";
    const char *got = quic_shared_steering_mode((*es)->sh);
    if (strcmp(got, want) != 0 && mode == QUIC_STEER_EBPF && geteuid() != 0) {
        printf("# extended BPF steering not available (not root): skipped\n");
        echo_server_stop(*es);
        *es = NULL;
        return false;
    }
    assert_string_equal(got, want);
    return true;
}

static void run_live(enum quic_steer_mode mode)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2};
    bool steering = mode != QUIC_STEER_HASH;
    if (!start_mode(&es, &qc, mode)) {
        skip();
        return;
    }
    struct roost_client *cl = client_new();
    struct hconn *h = calloc(1, sizeof(*h));
    connect_one(cl, es, h);
    ping(cl, h);
    unsigned total;
    int from = conn_worker(es, &total);
    assert_true(from >= 0);
    unsigned to = 1u - (unsigned)from;
    /* Live media: one datagram per client step; the hand-off is asked for
     * a quarter of the way in, while datagrams are in flight both ways. */
    unsigned sent = 0;
    for (uint32_t seq = 0; seq < NSEQ; seq++) {
        uint8_t dg[64] = {0};
        memcpy(dg, &seq, 4);
        /* Refused by the client's queue (a loaded machine): not sent. */
        if (roost_conn_send_datagram(h->c, dg, sizeof(dg)) == 0)
            sent++;
        if (seq == NSEQ / 4)
            ask_handoff(h, to);
        roost_client_step(cl, 1);
    }
    struct seq_wait sw = {.h = h, .es = es, .sent = sent};
    bool all = until(cl, p_all_back, &sw);
    if (!all) {
        struct quic_stats x;
        echo_server_stats(es, &x);
        struct roost_conn_stats cs;
        roost_conn_stats(h->c, &cs);
        printf(
            "# NOT ALL BACK: received=%u drops=%llu dgram_in=%llu dgram_out=%llu unknown_cid=%llu "
            "reset_sent=%llu malformed=%llu fwd_out=%llu fwd_in=%llu fwd_dropped=%llu "
            "handoffs_out=%llu in=%llu client: sent=%llu lost=%llu dropped=%llu\n",
            received(h), (unsigned long long)counted_drops(es), (unsigned long long)x.dgram_in,
            (unsigned long long)x.dgram_out, (unsigned long long)x.unknown_cid,
            (unsigned long long)x.reset_sent, (unsigned long long)x.malformed,
            (unsigned long long)x.fwd_out, (unsigned long long)x.fwd_in,
            (unsigned long long)x.fwd_dropped, (unsigned long long)x.handoffs_out,
            (unsigned long long)x.handoffs_in, (unsigned long long)cs.dgram_sent,
            (unsigned long long)cs.dgram_lost, (unsigned long long)cs.dgram_dropped);
    }
    assert_true(all);
    assert_true(until(cl, p_adopted, h));
    struct quic_stats st, so, sn;
    echo_server_stats(es, &st);
    quic_shared_stats(es->sh, (unsigned)from, &so);
    quic_shared_stats(es->sh, to, &sn);
    uint64_t drops = counted_drops(es);
    printf("# live sent=%u steering=%d from=%d to=%u received=%u dups=%u counted_drops=%llu "
           "(fwd %llu cwnd %llu queue %llu state %llu lost %llu) "
           "fwd_out(old)=%llu fwd_in(new)=%llu dgram_in=%llu\n",
           sent, steering, from, to, received(h), h->dups, (unsigned long long)drops,
           (unsigned long long)st.fwd_dropped, (unsigned long long)st.dgram_drop_cwnd,
           (unsigned long long)st.dgram_drop_queue, (unsigned long long)st.dgram_drop_state,
           (unsigned long long)st.dgram_lost, (unsigned long long)so.fwd_out,
           (unsigned long long)sn.fwd_in, (unsigned long long)st.dgram_in);
    /* Exactly once: no duplicate, every datagram the relay received came
     * back or was counted dropped (none on an idle loopback), and no
     * forward was lost. */
    assert_int_equal(h->dups, 0);
    assert_int_equal(received(h) + drops, st.dgram_in);
    assert_true(st.dgram_in <= sent);
    assert_int_equal(st.fwd_dropped, 0);
    assert_int_equal(h->adopted_on, (int)to);
    assert_int_equal(conn_worker(es, &total), (int)to);
    assert_int_equal(so.handoffs_out, 1);
    assert_int_equal(sn.handoffs_in, 1);
    assert_int_equal(st.handoffs_failed, 0);
    /* The client still uses the CIDs of the old worker: it keeps their
     * forwarding entries. With classic steering the kernel delivers them
     * there, and they are forwarded; with extended steering the kernel
     * delivers them to the new worker (moved-CID map), and only what
     * arrived during the move may have been. */
    assert_true(so.handoff_fwd_cids > 0);
    if (mode == QUIC_STEER_EBPF)
        assert_true(quic_shared_steer_moved(es->sh) > 0);
    /* After the adoption (on a loaded machine the move may come after the
     * last datagram): this round trip's packets use the old CIDs. */
    ping(cl, h);
    quic_shared_stats(es->sh, to, &sn);
    if (mode == QUIC_STEER_CBPF)
        assert_true(sn.fwd_in > 0);
    assert_int_equal(h->closed, 0);
    assert_int_equal(st.reset_sent, 0);
    /* The end drops the forwarding entries everywhere, and the kernel's. */
    roost_conn_close(h->c, 0);
    wait_server_empty(cl, es);
    assert_int_equal(quic_shared_steer_moved(es->sh), 0);
    echo_server_stats(es, &st);
    assert_int_equal(atomic_load(&es->closes), 1);
    roost_client_del(cl);
    free(h);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_handoff_live_ebpf(void **state)
{
    (void)state;
    run_live(QUIC_STEER_EBPF);
}

static void test_handoff_live_cbpf(void **state)
{
    (void)state;
    run_live(QUIC_STEER_CBPF);
}

static void test_handoff_live_hashed(void **state)
{
    (void)state;
    run_live(QUIC_STEER_HASH);
}

/* ---------------------------------------------------------------- direct */

static uint64_t fwd_total(struct echo_server *es)
{
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st.fwd_out + st.fwd_in + st.fwd_dropped;
}

/* Datagrams and a control round trip; lost datagrams are not waited for
 * (each comes back or not: only where the packets land is measured). */
static void traffic(struct roost_client *cl, struct hconn *h, unsigned n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint8_t dg[64] = {0};
        uint32_t seq = NSEQ; /* not tracked */
        memcpy(dg, &seq, 4);
        (void)roost_conn_send_datagram(h->c, dg, sizeof(dg));
        roost_client_step(cl, 1);
    }
    ping(cl, h);
}

/* After a hand-off has completed, packets for the connection's old CIDs
 * (the client keeps using them: ngtcp2 0.12 cannot retire a server's CIDs)
 * land on the new worker directly with extended steering: no packet is
 * forwarded from then on, through port rebinds too; the moved-CID map
 * holds the CIDs while the connection lives and none after it ended.
 * With classic steering the same traffic is forwarded by the old worker
 * (the contrast that makes the first assertion mean something). */
static void run_direct(enum quic_steer_mode mode)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2};
    if (!start_mode(&es, &qc, mode)) {
        skip();
        return;
    }
    struct roost_client *cl = client_new();
    struct hconn *h = calloc(1, sizeof(*h));
    connect_one(cl, es, h);
    ping(cl, h);
    unsigned total;
    int from = conn_worker(es, &total);
    assert_true(from >= 0);
    unsigned to = 1u - (unsigned)from;
    assert_int_equal(fwd_total(es), 0);
    ask_handoff(h, to);
    assert_true(until(cl, p_adopted, h));
    assert_int_equal(h->adopted_on, (int)to);
    /* Settle: what the client sent before "adopted" reached it may have
     * gone to the old worker (and been forwarded); this round trip comes
     * after it on the old worker's socket. */
    traffic(cl, h, 20);
    uint64_t before = fwd_total(es);
    size_t moved = quic_shared_steer_moved(es->sh);
    traffic(cl, h, 100);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(roost_conn_rebind(h->c), 0);
        traffic(cl, h, 20);
    }
    uint64_t after = fwd_total(es);
    struct quic_stats so, sn;
    quic_shared_stats(es->sh, (unsigned)from, &so);
    quic_shared_stats(es->sh, to, &sn);
    printf("# direct mode=%s from=%d to=%u forwarded before=%llu after=%llu moved_cids=%zu "
           "old: pkts_in=%llu new: pkts_in=%llu\n",
           quic_shared_steering_mode(es->sh), from, to, (unsigned long long)before,
           (unsigned long long)after, moved, (unsigned long long)so.pkts_in,
           (unsigned long long)sn.pkts_in);
    assert_int_equal(conn_worker(es, &total), (int)to);
    assert_int_equal(h->closed, 0);
    if (mode == QUIC_STEER_EBPF) {
        assert_true(moved > 0);
        assert_int_equal(after, before);
    } else {
        assert_int_equal(moved, 0);
        assert_true(after > before);
    }
    roost_conn_close(h->c, 0);
    wait_server_empty(cl, es);
    /* Retired with the connection: nothing left in the kernel's map. */
    assert_int_equal(quic_shared_steer_moved(es->sh), 0);
    roost_client_del(cl);
    free(h);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

static void test_handoff_direct_ebpf(void **state)
{
    (void)state;
    run_direct(QUIC_STEER_EBPF);
}

static void test_handoff_direct_cbpf(void **state)
{
    (void)state;
    run_direct(QUIC_STEER_CBPF);
}

/* ---------------------------------------------------------------- vanish */

static void test_handoff_vanish(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2, .idle_timeout_ns = 400ULL * 1000000ULL};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = client_new();
    struct hconn *h = calloc(1, sizeof(*h));
    connect_one(cl, es, h);
    ping(cl, h);
    unsigned total;
    int from = conn_worker(es, &total);
    assert_true(from >= 0);
    /* The adopted connection sends nothing by itself (no "adopted"), and
     * the client is silent from the hand-off on (never stepped again after
     * its request left): only the timer armed on the new worker can end
     * it. */
    atomic_store(&es->quiet_adopt, true);
    ask_handoff(h, 1u - (unsigned)from);
    /* Stepped only until the request left the client and the relay acted
     * on it (one step is not always enough: pacing can hold the packet). */
    struct quic_stats hs;
    uint64_t sent_end = echo_now_ms() + WAIT_MS;
    do {
        roost_client_step(cl, 0);
        echo_server_stats(es, &hs);
        if (hs.handoffs_out > 0 || hs.idle_timeouts > 0)
            break;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    } while (echo_now_ms() < sent_end);
    uint64_t end = echo_now_ms() + WAIT_MS;
    while (atomic_load(&es->closes) == 0 && echo_now_ms() < end) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct quic_stats vs;
    echo_server_stats(es, &vs);
    printf("# vanish mode=%s from=%d closes=%llu idle=%llu adopts=%llu handoffs out=%llu in=%llu "
           "failed=%llu idle_timeouts=%llu\n",
           quic_shared_steering_mode(es->sh), from, (unsigned long long)atomic_load(&es->closes),
           (unsigned long long)atomic_load(&es->close_idle),
           (unsigned long long)atomic_load(&es->adopts), (unsigned long long)vs.handoffs_out,
           (unsigned long long)vs.handoffs_in, (unsigned long long)vs.handoffs_failed,
           (unsigned long long)vs.idle_timeouts);
    assert_int_equal(atomic_load(&es->closes), 1);
    assert_int_equal(atomic_load(&es->close_idle), 1);
    assert_int_equal(atomic_load(&es->adopts), 1);
    /* on_close runs before the worker frees the connection's slot at turn
     * end: wait for the count (bounded) instead of reading it at once. */
    struct quic_stats st;
    end = echo_now_ms() + WAIT_MS;
    for (;;) {
        echo_server_stats(es, &st);
        if (st.conns_open == 0 || echo_now_ms() >= end)
            break;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(st.conns_open, 0);
    assert_int_equal(st.handoffs_in, 1);
    roost_client_del(cl);
    free(h);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

/* ----------------------------------------------------------------- leave */

static void test_handoff_leave_midway(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = client_new();
    for (int round = 0; round < 6; round++) {
        struct hconn *h = calloc(1, sizeof(*h));
        connect_one(cl, es, h);
        ping(cl, h);
        unsigned total;
        int from = conn_worker(es, &total);
        assert_true(from >= 0);
        ask_handoff(h, 1u - (unsigned)from);
        /* Steps before the close: 0 (same flight), then later and later,
         * so the close meets the connection before, during and after. */
        for (int i = 0; i < round; i++)
            roost_client_step(cl, 1);
        roost_conn_close(h->c, 0);
        wait_server_empty(cl, es);
        assert_int_equal(atomic_load(&es->closes), (uint64_t)round + 1);
        roost_conn_del(h->c);
        free(h);
    }
    struct quic_stats st;
    echo_server_stats(es, &st);
    printf("# leave: handoffs_out=%llu in=%llu failed=%llu\n", (unsigned long long)st.handoffs_out,
           (unsigned long long)st.handoffs_in, (unsigned long long)st.handoffs_failed);
    assert_int_equal(st.handoffs_out, st.handoffs_in);
    assert_int_equal(atomic_load(&es->adopts), st.handoffs_in);
    roost_client_del(cl);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

/* -------------------------------------------------------------- shutdown */

static bool p_sent(void *arg)
{
    struct echo_server *es = arg;
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st.handoffs_out > 0;
}

static bool p_taken(void *arg)
{
    struct echo_server *es = arg;
    struct quic_stats st;
    echo_server_stats(es, &st);
    return st.handoffs_in > 0;
}

static void run_shutdown(int knob)
{
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = client_new();
    struct hconn *h = calloc(1, sizeof(*h));
    connect_one(cl, es, h);
    ping(cl, h);
    unsigned total;
    int from = conn_worker(es, &total);
    assert_true(from >= 0);
    atomic_store(&quic_handoff_test_hold, knob);
    ask_handoff(h, 1u - (unsigned)from);
    assert_true(until(cl, knob == 1 ? p_taken : p_sent, es));
    /* The connection is between workers: held by the new one (1), or in
     * its message queue (2) when the workers stop. */
    worker_pool_stop(es->pool);
    atomic_store(&quic_handoff_test_hold, 0);
    printf("# shutdown knob=%d opens=%llu closes=%llu going_away=%llu adopts=%llu\n", knob,
           (unsigned long long)atomic_load(&es->opens),
           (unsigned long long)atomic_load(&es->closes),
           (unsigned long long)atomic_load(&es->close_going_away),
           (unsigned long long)atomic_load(&es->adopts));
    assert_int_equal(atomic_load(&es->opens), 1);
    assert_int_equal(atomic_load(&es->closes), 1);
    assert_int_equal(atomic_load(&es->close_going_away), 1);
    assert_int_equal(atomic_load(&es->adopts), knob == 1 ? 1 : 0);
    struct quic_stats st;
    echo_server_stats(es, &st);
    assert_int_equal(st.handoffs_out, 1);
    assert_int_equal(st.handoffs_in, knob == 1 ? 1 : 0);
    echo_server_stop(es);
    roost_client_del(cl);
    free(h);
    assert_int_equal(buf_live(), 0);
}

static void test_handoff_shutdown_held(void **state)
{
    (void)state;
    run_shutdown(1);
}

static void test_handoff_shutdown_in_ring(void **state)
{
    (void)state;
    run_shutdown(2);
}

/* ---------------------------------------------------------------- rebind */

static void test_handoff_rebind(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 2};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = client_new();
    struct hconn *h = calloc(1, sizeof(*h));
    connect_one(cl, es, h);
    ping(cl, h);
    unsigned total;
    int from = conn_worker(es, &total);
    assert_true(from >= 0);
    ask_handoff(h, 1u - (unsigned)from);
    assert_int_equal(roost_conn_rebind(h->c), 0);
    ping(cl, h);
    assert_true(until(cl, p_adopted, h));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(roost_conn_rebind(h->c), 0);
        ping(cl, h);
    }
    assert_int_equal(h->closed, 0);
    assert_int_equal(conn_worker(es, &total), 1 - from);
    struct quic_stats st;
    echo_server_stats(es, &st);
    assert_int_equal(st.reset_sent, 0);
    assert_int_equal(st.handshakes_ok, 1);
    roost_conn_close(h->c, 0);
    wait_server_empty(cl, es);
    roost_client_del(cl);
    free(h);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

/* -------------------------------------------------------------- property */

#define PCONNS 6
#define PSTEPS 40

struct adopt_wait {
    struct hconn *h;
    unsigned want;
};

static bool p_adopt_n(void *arg)
{
    struct adopt_wait *a = arg;
    return a->h->adopted >= a->want;
}

/* Asks the connection which worker it is on (h->at). */
static void where_is(struct roost_client *cl, struct hconn *h)
{
    h->at = -1;
    struct echo_wait e = {.h = h, .want = h->ctl_in + 1};
    assert_int_equal(roost_conn_send_control(h->c, (const uint8_t *)ECHO_WHERE_CMD, ECHO_WHERE_LEN),
                     0);
    assert_true(until(cl, p_ctl, &e));
    assert_true(h->at >= 0);
}

static bool p_live6(void *arg)
{
    (void)arg;
    struct quic_stats st;
    echo_server_stats(cur_es, &st);
    return st.conns_open == PCONNS;
}

static void test_handoff_property(void **state)
{
    (void)state;
    struct echo_server *es = NULL;
    struct quic_shared_config qc = {.n_workers = 4};
    assert_int_equal(echo_server_start(&es, &qc), 0);
    struct roost_client *cl = client_new();
    unsigned seed = (unsigned)time(NULL);
    printf("# property seed=%u\n", seed);
    srand(seed);
    struct hconn *hs[PCONNS];
    int where[PCONNS]; /* expected worker, -1 unknown (not moved yet) */
    for (int i = 0; i < PCONNS; i++) {
        hs[i] = calloc(1, sizeof(*hs[i]));
        connect_one(cl, es, hs[i]);
        where[i] = -1;
    }
    unsigned moves = 0, reopens = 0, adopted_closed = 0;
    for (int step = 0; step < PSTEPS; step++) {
        int i = rand() % PCONNS;
        int op = rand() % 4;
        if (op == 0) {
            /* leave and a new one joins in its place */
            roost_conn_close(hs[i]->c, 0);
            struct hconn *nh = calloc(1, sizeof(*nh));
            connect_one(cl, es, nh);
            adopted_closed += hs[i]->adopted;
            roost_conn_del(hs[i]->c);
            free(hs[i]);
            hs[i] = nh;
            where[i] = -1;
            reopens++;
        } else {
            unsigned to = (unsigned)(rand() % 4);
            where_is(cl, hs[i]);
            if ((int)to != hs[i]->at) {
                unsigned before = hs[i]->adopted;
                ask_handoff(hs[i], to);
                struct adopt_wait aw = {.h = hs[i], .want = before + 1};
                assert_true(until(cl, p_adopt_n, &aw));
                assert_int_equal(hs[i]->adopted_on, (int)to);
                where[i] = (int)to;
                moves++;
            }
        }
        /* Every connection answers, from the worker it should be on. */
        for (int k = 0; k < PCONNS; k++) {
            where_is(cl, hs[k]);
            if (where[k] >= 0)
                assert_int_equal(hs[k]->at, where[k]);
        }
    }
    /* Exactly one worker each: once the closed ones drained, every
     * worker's connection gauge equals the connections that say they are
     * on it. */
    cur_es = es;
    assert_true(until(cl, p_live6, NULL));
    struct quic_stats st;
    echo_server_stats(es, &st);
    unsigned on[4] = {0};
    for (int k = 0; k < PCONNS; k++) {
        where_is(cl, hs[k]);
        on[hs[k]->at]++;
        assert_int_equal(hs[k]->closed, 0);
        adopted_closed += hs[k]->adopted;
    }
    for (unsigned w = 0; w < 4; w++) {
        struct quic_stats sw;
        quic_shared_stats(es->sh, w, &sw);
        assert_int_equal(sw.conns_open, on[w]);
    }
    printf("# property moves=%u reopens=%u handoffs in=%llu out=%llu failed=%llu fwd_in=%llu\n",
           moves, reopens, (unsigned long long)st.handoffs_in, (unsigned long long)st.handoffs_out,
           (unsigned long long)st.handoffs_failed, (unsigned long long)st.fwd_in);
    assert_int_equal(st.handoffs_in, st.handoffs_out);
    assert_int_equal(st.handoffs_in, moves);
    assert_int_equal(adopted_closed, moves);
    assert_int_equal(st.reset_sent, 0);
    for (int k = 0; k < PCONNS; k++)
        roost_conn_close(hs[k]->c, 0);
    wait_server_empty(cl, es);
    echo_server_stats(es, &st);
    printf("# property end: opens=%llu closes=%llu handshakes ok=%llu failed=%llu timeouts=%llu "
           "idle=%llu unknown_cid=%llu\n",
           (unsigned long long)atomic_load(&es->opens),
           (unsigned long long)atomic_load(&es->closes), (unsigned long long)st.handshakes_ok,
           (unsigned long long)st.handshakes_failed, (unsigned long long)st.handshake_timeouts,
           (unsigned long long)st.idle_timeouts, (unsigned long long)st.unknown_cid);
    /* One on_close per connection: the opened ones, and server
     * connections whose handshake failed (closing and at once reopening a
     * client connection, then deleting the closed one, leaves one such
     * about every run, hand-offs or not). */
    assert_int_equal(atomic_load(&es->closes), atomic_load(&es->opens) + st.handshakes_failed);
    roost_client_del(cl);
    for (int k = 0; k < PCONNS; k++)
        free(hs[k]);
    echo_server_stop(es);
    assert_int_equal(buf_live(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handoff_live_ebpf),
        cmocka_unit_test(test_handoff_live_cbpf),
        cmocka_unit_test(test_handoff_live_hashed),
        cmocka_unit_test(test_handoff_direct_ebpf),
        cmocka_unit_test(test_handoff_direct_cbpf),
        cmocka_unit_test(test_handoff_vanish),
        cmocka_unit_test(test_handoff_leave_midway),
        cmocka_unit_test(test_handoff_shutdown_held),
        cmocka_unit_test(test_handoff_shutdown_in_ring),
        cmocka_unit_test(test_handoff_rebind),
        cmocka_unit_test(test_handoff_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
