/* Private to relay/cluster*.c: the cluster object that cluster.c (the
 * directory's relay side, the workers' room tables) and cluster_admin.c
 * (what the admin endpoint and /metrics read) share. */
#ifndef ROOST_RELAY_CLUSTER_INT_H
#define ROOST_RELAY_CLUSTER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/dir.h"
#include "core/worker.h"
#include "relay/cluster.h"

struct cluster_worker;

/* One per relay with [cluster] redis; made and freed by the main thread
 * (cluster.c), fields written after start are atomics or under mu. */
struct cluster {
    struct relay *r;
    struct dir *d;
    struct dir_config dc;
    char host[256], password[256], prefix[64], id[DIR_ID_MAX + 1], addr[DIR_ADDR_MAX + 1];
    uint8_t pid_prefix; /* [cluster] pid_prefix */
    const struct cluster_home_ops *ops;
    void *ops_arg;
    struct cluster_worker *cw[WORKER_MAX];
    /* The load callback reads the workers only while they run. */
    pthread_mutex_t mu;
    bool stats_ok;
    uint64_t last_ns, last_busy[WORKER_MAX];
    _Atomic uint64_t joins_waited, joins_rejected, claim_failures, homes_self, homes_remote,
        rooms_gone;
};

/* A /rooms/{id} question to the room's owner worker (CLUSTER_MSG_QUERY):
 * the admin thread waits a bounded time, so both hold a reference. */
struct cluster_query {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int refs;
    uint8_t len;
    char room[65];
    struct cluster_room_local out;
};
/* Marks q done (answered or not) and drops the caller's reference. */
void cluster_query_finish(struct cluster_query *q);

#endif
