/* Back-pressure from the bounded spill queues to the session (issue 16):
 * the worker owning a room is stalled (a signal handler parks its thread),
 * so the JOINs other workers' sessions send it pile up in the ring and the
 * spill queue; once the queue is at its bound, a session whose JOIN cannot
 * be queued is closed with TOO_SLOW (0x0B) and counted in
 * roost_ring_spill_full_total, while a session joining a room of a running
 * worker is answered at once; after the stall every JOIN that was queued is
 * answered JOINED. Every wait is on a condition with a generous deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/echo_app.h"
#include "../common/participant.h"
#include "core/worker_int.h"
#include "proto/errcode.h"
#include "relay/relay_int.h"
#include "room/room.h"

#define WAIT_MS 30000
#define N_PARTS 40 /* about half land on the running worker: far above the bound */
#define N_Q 16     /* one of them lands on the running worker (all but 2^-16) */

static sem_t g_release;
static _Atomic int g_stalled;

static void stall_handler(int sig)
{
    (void)sig;
    atomic_store(&g_stalled, 1);
    while (sem_wait(&g_release) != 0) {
    }
    atomic_store(&g_stalled, 0);
}

static bool stalled(void *arg)
{
    (void)arg;
    return atomic_load(&g_stalled) == 1;
}

/* A room name whose owner is worker `w`. */
static void room_owned_by(struct relay *r, unsigned w, char *out, size_t cap)
{
    for (unsigned i = 0;; i++) {
        snprintf(out, cap, "room-%u", i);
        if (room_shared_owner(r->rsh, (const uint8_t *)out, strlen(out)) == w)
            return;
    }
}

static struct part P[N_PARTS], Q[N_Q];

static bool q_joined(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < N_Q; i++)
        if (Q[i].joined)
            return true;
    return false;
}

static unsigned count(bool (*pred)(const struct part *))
{
    unsigned n = 0;
    for (unsigned i = 0; i < N_PARTS; i++)
        n += pred(&P[i]);
    return n;
}

static bool too_slow(const struct part *p)
{
    return p->closed && p->ci.remote && p->ci.app && p->ci.code == PROTO_ERR_TOO_SLOW;
}

static bool settled(const struct part *p)
{
    return p->joined || p->closed;
}

static bool some_too_slow(void *arg)
{
    (void)arg;
    return count(too_slow) > 0;
}

static bool all_settled(void *arg)
{
    (void)arg;
    return count(settled) == N_PARTS;
}

static void test_join_spill_full_too_slow(void **st)
{
    (void)st;
    struct test_relay tr;
    /* A JOIN waits for the stalled owner: the JOINING deadline
     * (handshake_timeout) must not end it first. */
    /* spread: the room is made on its hash owner O (placement auto would
     * pack it under steering). */
    struct relay_config cfg = {.n_workers = 2,
                               .placement = ROOM_PLACE_SPREAD,
                               .ring_capacity = 2,
                               .spill_max = 1,
                               .handshake_timeout_ns = 2ull * WAIT_MS * 1000000ull};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    const unsigned O = 1, W = 0; /* O owns the room and is stalled */
    char room_o[32], room_w[32];
    room_owned_by(tr.r, O, room_o, sizeof(room_o));
    room_owned_by(tr.r, W, room_w, sizeof(room_w));

    sem_init(&g_release, 0, 0);
    struct sigaction sa = {.sa_handler = stall_handler, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &sa, NULL), 0);
    assert_int_equal(pthread_kill(worker_pool_get(tr.r->pool, O)->thread, SIGUSR2), 0);
    struct roost_client *cl = NULL;
    assert_int_equal(test_client_new(&cl), 0);
    assert_true(echo_client_until(cl, stalled, NULL, WAIT_MS));

    /* Connections that land on the stalled worker wait for it; the others
     * send their JOIN to it through the bounded queue. */
    memset(P, 0, sizeof(P));
    for (unsigned i = 0; i < N_PARTS; i++) {
        snprintf(P[i].room, sizeof(P[i].room), "%s", room_o);
        snprintf(P[i].name, sizeof(P[i].name), "p%u", i);
        test_token(&tr, room_o, P[i].name, TOKEN_PERM_ALL, 0, 600, P[i].token, sizeof(P[i].token));
        assert_int_equal(part_connect(cl, tr.port, &P[i]), 0);
    }
    /* Sessions on W send their JOIN to O: the first fill O's ring and the
     * spill queue (spill_max 1), the next are closed TOO_SLOW. */
    assert_true(echo_client_until(cl, some_too_slow, NULL, WAIT_MS));
    /* Sessions on the running worker joining its room: answered now. */
    memset(Q, 0, sizeof(Q));
    for (unsigned i = 0; i < N_Q; i++) {
        snprintf(Q[i].room, sizeof(Q[i].room), "%s", room_w);
        snprintf(Q[i].name, sizeof(Q[i].name), "q%u", i);
        test_token(&tr, room_w, Q[i].name, TOKEN_PERM_ALL, 0, 600, Q[i].token, sizeof(Q[i].token));
        assert_int_equal(part_connect(cl, tr.port, &Q[i]), 0);
    }
    assert_true(echo_client_until(cl, q_joined, NULL, WAIT_MS));
    struct worker_stats ws;
    worker_pool_stats(tr.r->pool, W, &ws);
    assert_int_equal(ws.ring_spills, 1); /* the queue to O never grew past its bound */
    assert_true(ws.spill_full >= 1);

    /* The stalled worker runs again: every queued JOIN is answered, every
     * session that waited for the worker joins. */
    sem_post(&g_release);
    assert_true(echo_client_until(cl, all_settled, NULL, WAIT_MS));
    unsigned n_slow = count(too_slow);
    worker_pool_stats(tr.r->pool, W, &ws);
    assert_int_equal(ws.spill_full, n_slow); /* one refused JOIN per TOO_SLOW close */
    /* The rest joined, except connections that landed on O and gave up
     * their handshake while it was stalled (the client's own timeout on a
     * loaded machine: never opened, closed locally). */
    unsigned joined = 0, gave_up = 0;
    for (unsigned i = 0; i < N_PARTS; i++) {
        joined += P[i].joined;
        gave_up += P[i].closed && !P[i].opened && !P[i].ci.remote;
    }
    assert_int_equal(joined + n_slow + gave_up, N_PARTS);
    /* (Q sessions that landed on O send their JOIN to W through the same
     * tiny bound when O runs again: they join or are closed TOO_SLOW.) */
    for (unsigned i = 0; i < N_Q; i++)
        assert_true(!Q[i].closed || too_slow(&Q[i]));
    for (unsigned i = 0; i < N_PARTS; i++)
        roost_conn_del(P[i].c);
    for (unsigned i = 0; i < N_Q; i++)
        roost_conn_del(Q[i].c);
    roost_client_del(cl);
    test_relay_stop(&tr);
    sem_destroy(&g_release);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_spill_full_too_slow),
    };
    return cmocka_run_group_tests_name("spill", tests, NULL, NULL);
}
