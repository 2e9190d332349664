/* The set-up the quic_* integration tests share (test_quic_pace,
 * test_quic_ackdelay, test_quic_send, test_quic_slow): an echo server
 * (echo_app.h) and one client connection to it, predicates on what the
 * connection got, and an optional simulated path on the client
 * (quic/client.h) that counts what the client sends and holds what it
 * receives, for a delay or until the test hands it in. Not part of the
 * relay. */
#ifndef ROOST_TEST_QUICPATH_H
#define ROOST_TEST_QUICPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "echo_app.h"

/* Deadline of a condition that must come (never a timing bound): a loaded
 * machine only makes it come later. */
#define QP_WAIT_MS 30000
#define QP_HELD_MAX 256
#define QP_PKT_MAX 1500

/* The simulated client path. The caller sets the first three fields;
 * qp_start zeroes the rest. */
struct qp_path {
    uint64_t delay_ns;           /* a received packet is due this long after it came */
    size_t count_min, count_max; /* sent packets of count_min <= len < count_max are counted */
    int step_ms;                 /* roost_client_step's wait in qp_until (0: 1 ms) */
    struct quic_conn *c;         /* the client's connection, once it sent or received */
    uint64_t bytes_out;          /* all bytes sent */
    uint64_t counted;            /* sent packets in the counted range */
    uint64_t counted_at;         /* the client's time of the last of them (ns) */
    size_t counted_len;          /* the length of the last of them */
    unsigned head, n;            /* held received packets (a ring) */
    uint8_t data[QP_HELD_MAX][QP_PKT_MAX];
    size_t len[QP_HELD_MAX];
    uint64_t due[QP_HELD_MAX];
};

struct qp {
    struct echo_server *es;
    struct roost_client *cl;
    struct echo_conn ec;
    uint64_t want;        /* what qp_got_dgrams and qp_got_ctl wait for */
    struct qp_path *path; /* NULL: the client's own UDP path */
};

/* Starts an echo server with qc, a client trusting the test CA (its ACK
 * threshold ack_thresh when not 0; path as its path when not NULL) and
 * connects it; waits up to QP_WAIT_MS until the connection is open. */
void qp_start(struct qp *q, struct quic_shared_config *qc, struct qp_path *path,
              unsigned ack_thresh);
/* Deletes the client, stops the server; with check_bufs, asserts every
 * buffer came back (buf_live() == caseguard_buf_base(): 0 outside a
 * CASEGUARD_TEST case). */
void qp_stop(struct qp *q, bool check_bufs);

/* Steps the client until pred(arg) holds or timeout_ms passed; on the
 * simulated path, hands in (and processes) each held packet once due.
 * Returns pred's last value. */
bool qp_until(struct qp *q, bool (*pred)(void *arg), void *arg, int timeout_ms);
/* Hands in and processes the oldest held packet; false when none is held. */
bool qp_hand_in_one(struct qp *q);
/* Hands in every held packet, one at a time, each processed. */
void qp_hand_in_all(struct qp *q);

/* Predicates for qp_until / echo_client_until; arg is the struct qp. */
bool qp_opened(void *q);
bool qp_got_dgrams(void *q); /* ec.dgram_in >= want */
bool qp_got_ctl(void *q);    /* ec.ctl_in >= want */
/* arg: a uint64_t, echo_now_ms() to wait for. */
bool qp_until_ms(void *t_ms);

/* The echo server's QUIC counters. */
struct quic_stats qp_stats(const struct qp *q);
/* Asks the echo app for n datagrams of size bytes, queued in one turn. */
void qp_burst(struct qp *q, unsigned n, unsigned size);

#endif /* ROOST_TEST_QUICPATH_H */
