/* Test support: what the cluster integration tests (test_cluster_*.c) set
 * up alike: a private redis-server, the cluster secret file, in-process
 * relays with a [cluster] section (the directory in Redis, trunks on the
 * QUIC port), participants joined with a token of a relay's key, and the
 * presence and media conditions the tests wait for
 * (echo_client_until). Not part of the relay.
 *
 * Thread safety: the test's thread. */
#ifndef ROOST_TEST_CLUSTERFX_H
#define ROOST_TEST_CLUSTERFX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/dirtime.h"
#include "participant.h"
#include "redis_server.h"
#include "relay/trunk.h"
#include "relayproc.h"

/* The secret every relay of a test shares. */
#define CLUSTERFX_SECRET "0123456789abcdef-cluster-secret\n"

/* Without redis-server on PATH: prints the TAP skip line (scripts/
 * install-deps installs it) and returns true; main returns 0 then. */
bool clusterfx_skip_without_redis(void);
/* Starts rs on a free port (a group set-up). 0, or -1 (said why). */
int clusterfx_redis_start(struct redis_server *rs);
/* GET key into out ("" when absent). 0, or -1 when Redis did not answer
 * (one try). */
int clusterfx_redis_get(const struct redis_server *rs, const char *key, char *out, size_t cap);
/* Writes s into a new file made from the mkstemp template tmpl (which gets
 * its name). 0 or -1. */
int clusterfx_secret_file(char *tmpl, const char *s);

/* A relay with a [cluster] section: in-process (clusterfx_relay_start) or
 * a roost-relay process (clusterfx_proc_start). */
struct clusterfx_relay {
    const char *relay_id;
    uint8_t pid_prefix;
    uint16_t redis_port; /* on 127.0.0.1 */
    const char *key_prefix;
    const char *secret_file;
    /* NULL: 127.0.0.1 and the relay's QUIC port, a free one; else as given
     * (and the QUIC port is chosen by the kernel at start). */
    const char *trunk_listen;
    /* Zeros take the defaults. A process gets lease_ms, wait_ms (its
     * join_wait) and cmd_timeout_ms (its redis_timeout) only. */
    struct dir_timing timing;
    /* In-process: called between relay_new and relay_start (no worker
     * runs yet), to register hooks; NULL: none. */
    void (*before_start)(struct relay *r, void *arg);
    void *arg;
};

/* Starts t: two workers on 127.0.0.1, the test certificate, a fresh token
 * key (t->keys, t->key_file; test_relay_stop removes it), c's cluster.
 * 0, or -1 (t->r is NULL then). */
int clusterfx_relay_start(struct test_relay *t, const struct clusterfx_relay *c);
/* clusterfx_relay_start for t[from..to): relay i is c->relay_id followed
 * by i ("rt" -> "rt1"), with pid_prefix i + 1. 0 or -1. */
int clusterfx_relays_start(struct test_relay *t, unsigned from, unsigned to,
                           const struct clusterfx_relay *c);
/* The same relay as a roost-relay process (relayproc.h): two workers on
 * 127.0.0.1, the admin endpoint on a kernel-chosen port, a fresh token key
 * in rp->keys (relayproc_cleanup removes it). Returns relayproc_start's
 * codes; on a failure the log is printed. */
int clusterfx_proc_start(struct relayproc *rp, const struct clusterfx_relay *c);

/* Static-home clusters (test_cluster_trunk*.c): in-process relay t named
 * "r<i>" with pid_prefix prefix (0: i + 1), QUALITY every 250 ms, the
 * secret in secret_file, every room's home "r0" at 127.0.0.1:home_port
 * (0: r0 itself, whose own entry needs no port). 0, or test_relay_start's
 * error. */
int clusterfx_static_start(struct test_relay *t, unsigned i, unsigned workers,
                           const char *secret_file, uint16_t home_port, uint8_t prefix);
/* A static-home cluster: r0 (the home, two workers), r1 (one), r2 (two),
 * a secret file of CLUSTERFX_SECRET, one client for the participants. */
struct clusterfx_static {
    struct test_relay tr[4]; /* tr[3]: a test's own fourth relay */
    struct roost_client *cl;
    char secret_file[64];
};
/* Starts s, the client with callbacks cbs (kept: static). 0 or -1 (a
 * group set-up). */
int clusterfx_static_setup(struct clusterfx_static *s, const struct roost_client_callbacks *cbs);
/* Deletes the client, stops every relay started, removes the secret. */
void clusterfx_static_teardown(struct clusterfx_static *s);
/* clusterfx_join with s's client to relay i, asserting it connects. */
void clusterfx_static_join(struct clusterfx_static *s, struct part *p, unsigned i, const char *room,
                           const char *id, unsigned perms);
/* A client trusting the test CA with callbacks cbs (kept: static). */
int clusterfx_client_new(struct roost_client **out, const struct roost_client_callbacks *cbs);
/* t's trunk counters, summed. */
struct trunk_stats clusterfx_trunk_stats(const struct test_relay *t);
/* p knows pid exactly once: in JOINED's list or by JOIN events (less
 * LEAVEs). */
bool clusterfx_knows(const struct part *p, uint32_t pid);

/* Zeroes p, mints it a token of t's key for room as id with perms
 * (TOKEN_PERM_*), and connects it to t->port with cl: it joins once
 * welcomed. Returns part_connect's result. */
int clusterfx_join(struct roost_client *cl, struct part *p, const struct test_relay *t,
                   const char *room, const char *id, unsigned perms);

/* Participants p knows: JOINED's list plus joins minus leaves. */
unsigned clusterfx_known(const struct part *p);

/* A group of participants p[0..n) and what each should reach. */
struct clusterfx_grp {
    struct part *p;
    unsigned n, want;
};
/* (struct clusterfx_grp) each joined and knows want others. */
bool clusterfx_all_know(void *arg);
/* (struct clusterfx_grp) each got at least want frames. */
bool clusterfx_all_media(void *arg);
/* (struct part) answered: joined, or closed. */
bool clusterfx_joined(void *arg);

/* A frame (sender, seq) p should get. */
struct clusterfx_frame {
    struct part *p;
    uint32_t sender, seq;
};
/* (struct clusterfx_frame) p got it. */
bool clusterfx_got_frame(void *arg);

#endif /* ROOST_TEST_CLUSTERFX_H */
