/* The directory's public API on the callers' threads: submitting requests
 * to the cluster thread's FIFO, releasing leases, the lifecycle (dir_new
 * starts the thread, dir_del stops it) and the read-only accessors. The
 * cluster thread's work is in dirthread, dirreq, dirredis and dirlease
 * (dir_int.h lists the calls between them; none calls back up). */
#include "cluster/dir.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster/dir_int.h"
#include "core/error.h"
#include "core/stat.h"

/* -------------------------------------------------------------- public API */

static int enqueue(struct dir *d, struct dir_req *q, bool bypass_limit)
{
    q->deadline = dir_now() + (uint64_t)d->t.wait_ms * DIRTIME_MS;
    q->next = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->stop) {
        pthread_mutex_unlock(&d->mu);
        return ROOST_ECLOSED;
    }
    if (!bypass_limit && d->q_len >= d->max_queue) {
        pthread_mutex_unlock(&d->mu);
        return ROOST_EFULL;
    }
    if (d->q_tail != NULL)
        d->q_tail->next = q;
    else
        d->q_head = q;
    d->q_tail = q;
    d->q_len++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int submit(struct dir *d, enum req_op op, const char *room, size_t len, dir_done_cb cb,
                  void *arg)
{
    if (d == NULL || cb == NULL || (room != NULL && !dirkey_valid_room(room, len)))
        return ROOST_EINVAL;
    struct dir_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ROOST_ENOMEM;
    q->op = op;
    q->cb = cb;
    q->arg = arg;
    if (room != NULL) {
        memcpy(q->room, room, len);
        q->room_len = len;
    }
    int rc = enqueue(d, q, false);
    if (rc != 0)
        free(q);
    return rc;
}

int dir_claim(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg)
{
    if (room == NULL)
        return ROOST_EINVAL;
    return submit(d, REQ_CLAIM, room, len, cb, arg);
}

int dir_lookup(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg)
{
    if (room == NULL)
        return ROOST_EINVAL;
    return submit(d, REQ_LOOKUP, room, len, cb, arg);
}

int dir_list(struct dir *d, dir_done_cb cb, void *arg)
{
    return submit(d, REQ_LIST, NULL, 0, cb, arg);
}

int dir_place(struct dir *d, const char *room, size_t len, dir_done_cb cb, void *arg)
{
    if (room == NULL)
        return ROOST_EINVAL;
    return submit(d, REQ_PLACE, room, len, cb, arg);
}

void dir_release(struct dir *d, struct dir_lease *l)
{
    if (l == NULL)
        return;
    dirlease_end(l); /* every holder stops believing now, not when the thread gets to it */
    struct dir_req *q = d != NULL ? calloc(1, sizeof(*q)) : NULL;
    if (q == NULL) {
        dir_lease_put(l); /* the key expires by its TTL */
        return;
    }
    q->op = REQ_RELEASE;
    q->lease = l;
    if (enqueue(d, q, true) != 0) {
        dir_lease_put(l);
        free(q);
    }
}

bool dir_up(const struct dir *d)
{
    return atomic_load_explicit(&d->st[ST(up)], memory_order_relaxed) != 0;
}

void dir_stats(const struct dir *d, struct dir_stats *out)
{
    stat_read((uint64_t *)out, d->st, STAT_N(struct dir_stats));
}

const char *dir_relay_id(const struct dir *d)
{
    return d->id;
}

void dir_test_stall(struct dir *d, bool on)
{
    pthread_mutex_lock(&d->mu);
    d->stall = on;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

int dir_new(struct dir **out, const struct dir_config *cfg)
{
    *out = NULL;
    if (cfg == NULL || cfg->redis_host == NULL || cfg->redis_port == 0 ||
        strlen(cfg->redis_host) >= sizeof(((struct dir *)0)->host) ||
        !dirkey_valid_id(cfg->relay_id) || !dirkey_valid_addr(cfg->trunk_addr) ||
        (cfg->prefix != NULL && !dirkey_valid_prefix(cfg->prefix)))
        return ROOST_EINVAL;
    struct dir_timing t = cfg->timing;
    if (dirtime_complete(&t) != 0)
        return ROOST_EINVAL;
    uint8_t nonce[8];
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        return ROOST_ESYS;

    struct dir *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_ENOMEM;
    snprintf(d->host, sizeof(d->host), "%s", cfg->redis_host);
    d->port = cfg->redis_port;
    if (cfg->password != NULL && (d->password = strdup(cfg->password)) == NULL)
        goto fail_alloc;
    d->db = cfg->db;
    snprintf(d->prefix, sizeof(d->prefix), "%s", cfg->prefix != NULL ? cfg->prefix : "roost");
    snprintf(d->id, sizeof(d->id), "%s", cfg->relay_id);
    snprintf(d->addr, sizeof(d->addr), "%s", cfg->trunk_addr);
    for (size_t i = 0; i < sizeof(nonce); i++)
        snprintf(d->inst + 2 * i, 3, "%02x", nonce[i]);
    if (dirkey_relay(d->relay_key, sizeof(d->relay_key), d->prefix, d->id) < 0 ||
        dirkey_relays(d->relays_key, sizeof(d->relays_key), d->prefix) < 0 ||
        dirkey_relay_prefix(d->relay_prefix, sizeof(d->relay_prefix), d->prefix) < 0) {
        rc = ROOST_EINVAL;
        goto fail_alloc;
    }
    d->t = t;
    d->load_cb = cfg->load_cb;
    d->load_arg = cfg->load_arg;
    d->event_cb = cfg->event_cb;
    d->event_arg = cfg->event_arg;
    d->max_queue = cfg->max_queue ? cfg->max_queue : 4096;
    for (size_t i = 0; i < STAT_N(struct dir_stats); i++)
        atomic_init(&d->st[i], 0);

    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        rc = ROOST_ESYS;
        goto fail_alloc;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        rc = ROOST_ESYS;
        goto fail_alloc;
    }
    pthread_mutex_init(&d->mu, NULL);
    if (pthread_create(&d->thread, NULL, dirthread_main, d) != 0) {
        rc = ROOST_ESYS;
        goto fail_thread;
    }
    d->thread_started = true;
    *out = d;
    return 0;

fail_thread:
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
fail_alloc:
    free(d->password);
    free(d);
    return rc;
}

void dir_del(struct dir *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (d->thread_started)
        pthread_join(d->thread, NULL);
    free(d->held);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->password);
    free(d);
}
