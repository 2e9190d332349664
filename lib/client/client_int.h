/* Private glue between the endpoint (client.c) and the protocol session
 * (session.c) of libroost-client. */
#ifndef ROOST_CLIENT_CLIENT_INT_H
#define ROOST_CLIENT_CLIENT_INT_H

#include <stdint.h>

#include "client/client.h"

/* The connection callbacks of a session endpoint (roost_client_new with
 * cbs NULL): every connection's user pointer is its roost_session. */
extern const struct roost_client_callbacks session_conn_cbs;

/* Starts a connection on a session endpoint (roost_client_connect refuses
 * there). Returns what roost_client_connect returns; ROOST_EINVAL on a raw
 * endpoint. */
int client_connect_session(struct roost_client *cl, const char *host, uint16_t port,
                           struct roost_session *s, struct roost_conn **out);

/* The QUIC endpoint under a raw endpoint (in-tree users only: roost-bench
 * sets its path emulation there, quic/client.h). */
struct quic_client;
struct quic_client *client_quic(struct roost_client *cl);

#endif
