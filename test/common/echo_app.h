/* Test support for the QUIC layer: an in-process echo relay (a worker pool
 * whose workers run quic_server with an application that sends every
 * control message and datagram back to its sender), dev certificates, and a
 * client loop helper. Not part of the relay. */
#ifndef ROOST_TEST_ECHO_APP_H
#define ROOST_TEST_ECHO_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/client.h"
#include "core/worker.h"
#include "quic/quic.h"

/* A control body "blast" makes the echo app answer with this many bodies. */
#define ECHO_BLAST_COUNT 32
#define ECHO_BLAST_SIZE 4000
/* A control body "burst" + N + S (big-endian u16 each) makes the echo app
 * queue N datagrams of S bytes to the sender in one loop turn. */
#define ECHO_BURST_CMD "burst"
#define ECHO_BURST_LEN 5
/* A control body "close" makes the echo app close the connection with
 * UNSUPPORTED_VERSION and this reason phrase. */
#define ECHO_CLOSE_CMD "close"
#define ECHO_CLOSE_LEN 5
#define ECHO_CLOSE_REASON "supported: 1"

/* A control body "handoff" + worker (one byte) makes the echo app hand the
 * connection to that worker (quic_conn_handoff); once adopted there it
 * sends "adopted" + the worker byte on the control stream. */
#define ECHO_HANDOFF_CMD "handoff"
#define ECHO_HANDOFF_LEN 7
#define ECHO_ADOPTED "adopted"
#define ECHO_ADOPTED_LEN 7
/* A control body "where" is answered with "at" + the worker byte. */
#define ECHO_WHERE_CMD "where"
#define ECHO_WHERE_LEN 5

struct echo_server {
    struct quic_shared *sh;
    struct worker_pool *pool;
    unsigned n_workers;
    _Atomic uint64_t opens, closes, close_idle, close_going_away, close_too_slow, control_in,
        dgram_in, detaches, adopts;
    _Atomic bool quiet_adopt; /* adopted connections send nothing */
};

/* Directory holding ca.pem, server.pem, server.key (made once with
 * scripts/dev-cert under $ROOST_BUILD, default build/). `other` selects a
 * second, unrelated CA. Aborts the test on failure. */
const char *echo_cert_dir(bool other);
/* Fills qcfg's cert/key from echo_cert_dir(false) when they are NULL and
 * starts n_workers workers serving the echo application. */
int echo_server_start(struct echo_server **out, struct quic_shared_config *qcfg);
void echo_server_stop(struct echo_server *es);
uint16_t echo_server_port(const struct echo_server *es);
/* True when the kernel steers by CID (quic_shared_steering). */
bool echo_server_steering(const struct echo_server *es);
void echo_server_stats(const struct echo_server *es, struct quic_stats *out);

/* Steps the client until pred(arg) holds or timeout_ms of wall time
 * passed. Returns pred's last value. */
bool echo_client_until(struct roost_client *cl, bool (*pred)(void *arg), void *arg, int timeout_ms);
uint64_t echo_now_ms(void);

/* Generic client-side tracking: pass a struct echo_conn as the connection's
 * user pointer and echo_client_cbs as the callbacks. */
struct echo_conn {
    struct roost_conn *c;
    int opened, closed;
    uint64_t ctl_in, dgram_in;
    struct roost_close_info info;
};
extern const struct roost_client_callbacks echo_client_cbs;
/* A client trusting the test CA (other: the unrelated CA). */
int echo_client_new(struct roost_client **out, bool other_ca, const char *alpn);
bool echo_conns_open(struct echo_conn *v, unsigned n);
bool echo_conns_closed(struct echo_conn *v, unsigned n);

#endif /* ROOST_TEST_ECHO_APP_H */
