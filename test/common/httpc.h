/* Test support: a minimal HTTP/1.0 GET against 127.0.0.1 (the relay's
 * admin endpoint: /healthz, /metrics, /capacity, /rooms). Not part of the
 * relay. */
#ifndef ROOST_TEST_HTTPC_H
#define ROOST_TEST_HTTPC_H

#include <stdbool.h>
#include <stdint.h>

/* GET path from 127.0.0.1:port over HTTP/1.0 (the server closes when
 * done), each read waiting at most timeout_ms. Returns the body
 * (malloc'd, NUL-terminated) and sets *status, or NULL when the
 * connection, a read or the status line failed. */
char *httpc_get(uint16_t port, const char *path, int *status, int timeout_ms);
/* Polls path until its body contains want (whatever the status: /healthz
 * says "degraded" with 503), for at most wait_ms, every 50 ms. A refused
 * connection counts as not yet. */
bool httpc_until(uint16_t port, const char *path, const char *want, int wait_ms);

#endif /* ROOST_TEST_HTTPC_H */
