/* Containment of a failed test case. A cmocka assertion that fails
 * unwinds out of the case (longjmp): whatever it started and had not
 * stopped yet stays behind. A relay or an echo server left running keeps
 * its worker threads going, and they keep taking and giving back counted
 * buffers (core/buf.h): the next cases of the same binary then see the
 * process-wide buf_live() move under them and report buffer counts that
 * are only a consequence of the first failure.
 *
 * The harness registers what it starts for a case: test_relay_start and
 * clusterfx_relay_start (relays), echo_server_start (echo servers); their
 * stop functions drop the registration. A binary whose cases run under
 * caseguard_setup / caseguard_teardown (CASEGUARD_TEST) gets, after each
 * case, everything the case started and did not stop stopped, and said
 * (one "# caseguard:" line); what a group set-up started is never touched.
 * Clients (roost_client) are not registered (tests delete them with
 * roost_client_del, which the harness cannot see): one left behind runs
 * only when stepped, so its buffers stay as they are, and a case that
 * checks its buffers against caseguard_buf_base() (buf_live() when it
 * began) or its own baseline is not disturbed by them.
 *
 * Thread safety: the test's thread. Not part of the relay. */
#ifndef ROOST_TEST_CASEGUARD_H
#define ROOST_TEST_CASEGUARD_H

#include <stddef.h>
#include <stdint.h>

/* Registers obj (size bytes, copied: obj may live on the case's stack)
 * under key; release(copy) stops it if a case teardown finds it still
 * registered (release may call caseguard_drop(key): it is gone by then). */
void caseguard_hold(const void *key, void (*release)(void *copy), const void *obj, size_t size);
/* Drops key's registration; no-op when it has none. */
void caseguard_drop(const void *key);
/* How many registrations there are (all: the group's too). */
unsigned caseguard_held(void);

/* cmocka per-case fixtures: setup records buf_live() and starts the case;
 * teardown stops what the case registered and left, and ends the case.
 * Both return 0. */
int caseguard_setup(void **state);
int caseguard_teardown(void **state);
#define CASEGUARD_TEST(f) cmocka_unit_test_setup_teardown(f, caseguard_setup, caseguard_teardown)

/* buf_live() when the current case began; 0 outside CASEGUARD cases. */
int64_t caseguard_buf_base(void);
/* Registrations stopped by case teardowns so far. */
unsigned caseguard_reaped(void);

#endif /* ROOST_TEST_CASEGUARD_H */
