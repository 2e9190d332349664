/* roost client endpoint: many QUIC connections driven from one thread.
 *
 * The public API lives in include/roost/client.h (installed as
 * <roost/client.h>, documented there and in docs/CLIENT.md); this in-tree
 * header is a thin include of it so that the bench, the CLI and the tests
 * keep writing #include "client/client.h". The path is relative so that
 * no build needs an extra -I.
 *
 * The bench runs thousands of connections per endpoint, the CLI one, the
 * tests a few hundred. Each connection has its own UDP socket (its own
 * source port, so the relay's SO_REUSEPORT spreads connections over
 * workers); one epoll set and one timer heap serve them all. The endpoint
 * never blocks except in roost_client_step.
 *
 * In-tree code returns lib/core's ROOST_E* codes; they have the values of
 * the public ROOST_ERR_* (checked in client.c). */
#ifndef ROOST_CLIENT_CLIENT_H
#define ROOST_CLIENT_CLIENT_H

#include "../../include/roost/client.h"

#endif
