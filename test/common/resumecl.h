/* Test support for TLS session tests: a bare quic_client (lib/quic, under
 * lib/client, so the test sees the connection itself: tickets, key
 * updates, whether the handshake resumed) whose connections count what
 * they get, and a client loop bounded by a deadline. Shared by
 * test_quic_resume and test_quic_tls_release. Not part of the relay. */
#ifndef ROOST_TEST_RESUMECL_H
#define ROOST_TEST_RESUMECL_H

#include <stdbool.h>
#include <stdint.h>

#include "quic/client.h"

/* Deadline of a condition that must come (a failure bound, never a timing
 * assumption: a loaded machine only makes it come later). */
#define RESUMECL_WAIT_MS 30000

/* One connection's view: pass it as the connection's user pointer. */
struct resumecl_conn {
    uint64_t opened, closed, ctl_in;
    bool resumed; /* quic_conn_tls_resumed() at on_open */
};

/* The callbacks resumecl_new gives the client. */
extern const struct quic_app_ops resumecl_ops;

uint64_t resumecl_now_ns(void);
/* A client trusting ca_dir/ca.pem (ca_dir NULL: the test CA,
 * echo_cert_dir(false)) with resumecl_ops. Returns quic_client_new's
 * result. */
int resumecl_new(struct quic_client **out, const char *ca_dir);
/* Steps cl until *v >= want or RESUMECL_WAIT_MS passed; false on the
 * deadline or when the client loop fails. */
bool resumecl_until(struct quic_client *cl, const uint64_t *v, uint64_t want);
/* Steps cl until the connection opened or closed; true when it opened. */
bool resumecl_until_open(struct quic_client *cl, const struct resumecl_conn *t);
/* Steps cl until it holds a ticket for 127.0.0.1:port; false on the
 * deadline. */
bool resumecl_until_ticket(struct quic_client *cl, uint16_t port);
/* Closes c (no error), sends the close and deletes it. Returns the client
 * loop's result (0). */
int resumecl_close(struct quic_client *cl, struct quic_conn *c);

#endif /* ROOST_TEST_RESUMECL_H */
