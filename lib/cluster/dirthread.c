/* The cluster thread: its loop (take the request FIFO, run a turn, sleep
 * until the next deadline) and its shutdown. Calls dirreq, dirredis and
 * dirlease; dir_new starts it. */
#include "cluster/dir_int.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/dir_lua.h"
#include "core/error.h"
#include "core/log.h"

static const char REASON_DOWN[] = "redis unavailable";
static const char REASON_CLOSED[] = "directory shutting down";

/* ------------------------------------------------------------------ thread */

static void turn(struct dir *d)
{
    uint64_t now = dir_now();
    dirlease_expire(d, now);
    if (d->rc == NULL && now >= d->reconnect_at)
        dirredis_connect(d, now);
    if (d->rc != NULL && now >= d->refresh_at)
        dirredis_register(d);
    if (d->rc != NULL)
        dirredis_renew_due(d, now);
    /* Requests in order; a connection failure leaves the rest pending. */
    while (d->rc != NULL && d->p_head != NULL) {
        struct dir_req *q = d->p_head;
        if (!dirreq_serve(d, q))
            break;
        d->p_head = q->next;
        if (d->p_head == NULL)
            d->p_tail = NULL;
        free(q);
    }
    now = dir_now();
    dirlease_expire(d, now);
    if (d->rc != NULL)
        return;
    /* Down: claims of rooms held answer locally; the rest wait until their
     * bound. */
    struct dir_req **pp = &d->p_head;
    d->p_tail = NULL;
    while (*pp != NULL) {
        struct dir_req *q = *pp;
        bool done = false;
        if (q->op == REQ_CLAIM && dirreq_claim_held(d, q, now)) {
            done = true;
        } else if (now >= q->deadline) {
            if (q->op != REQ_RELEASE) {
                stat_inc(d->st, ST(req_timeouts));
                log_info("event=dir_request_failed op=%d msg=\"%s\"", (int)q->op, REASON_DOWN);
            }
            dirreq_fail(q, ROOST_ETIMEDOUT, REASON_DOWN);
            done = true;
        }
        if (done) {
            *pp = q->next;
            free(q);
        } else {
            d->p_tail = q;
            pp = &q->next;
        }
    }
}

/* When the thread must run next, on its own (requests wake it earlier). */
static uint64_t next_due(const struct dir *d)
{
    uint64_t next = UINT64_MAX;
#define MIN_(x)                                                                                    \
    do {                                                                                           \
        uint64_t x_ = (x);                                                                         \
        if (x_ < next)                                                                             \
            next = x_;                                                                             \
    } while (0)
    for (size_t i = 0; i < d->n_held; i++) {
        uint64_t u = atomic_load_explicit(&d->held[i]->until, memory_order_acquire);
        if (u != 0)
            MIN_(u);
        if (d->rc != NULL && u != 0)
            MIN_(d->held[i]->renew_at);
    }
    if (d->rc != NULL) {
        MIN_(d->refresh_at);
        if (d->p_head != NULL)
            MIN_(0);
    } else {
        MIN_(d->reconnect_at);
        for (const struct dir_req *q = d->p_head; q != NULL; q = q->next)
            MIN_(q->deadline);
    }
#undef MIN_
    return next;
}

static void shutdown_thread(struct dir *d)
{
    /* Best effort: let others claim our rooms now rather than after the
     * lease, and disappear from placement. */
    while (d->n_held > 0) {
        struct dir_lease *l = d->held[0];
        dirlease_end(l);
        if (d->rc != NULL) {
            char rk[DIR_KEY_MAX + 1];
            int rl = dirkey_room(rk, sizeof(rk), d->prefix, l->room, l->room_len);
            const char *argv[] = {"EVAL", RELEASE_LUA, "1", rk, l->value};
            size_t lens[] = {4, sizeof(RELEASE_LUA) - 1, 1, (size_t)rl, l->value_len};
            redisReply *r = dirredis_command(d, 5, argv, lens);
            freeReplyObject(r);
        }
        dirlease_held_remove(d, 0);
    }
    if (d->rc != NULL) {
        const char *argv[] = {"EVAL", UNREGISTER_LUA, "2", d->relay_key, d->relays_key, d->id};
        size_t lens[] = {4,
                         sizeof(UNREGISTER_LUA) - 1,
                         1,
                         strlen(d->relay_key),
                         strlen(d->relays_key),
                         strlen(d->id)};
        redisReply *r = dirredis_command(d, 6, argv, lens);
        freeReplyObject(r);
    }
    for (struct dir_req *q = d->p_head, *nx; q != NULL; q = nx) {
        nx = q->next;
        dirreq_fail(q, ROOST_ECLOSED, REASON_CLOSED);
        free(q);
    }
    d->p_head = d->p_tail = NULL;
    pthread_mutex_lock(&d->mu);
    struct dir_req *rest = d->q_head;
    d->q_head = d->q_tail = NULL;
    d->q_len = 0;
    pthread_mutex_unlock(&d->mu);
    for (struct dir_req *q = rest, *nx; q != NULL; q = nx) {
        nx = q->next;
        dirreq_fail(q, ROOST_ECLOSED, REASON_CLOSED);
        free(q);
    }
    if (d->rc != NULL) {
        redisFree(d->rc);
        d->rc = NULL;
    }
    if (d->is_up) {
        d->is_up = false;
        stat_dec(d->st, ST(up));
    }
}

void *dirthread_main(void *arg)
{
    struct dir *d = arg;
    log_set_thread_tag("cluster");
    for (;;) {
        /* Computed outside the lock (thread-only state): submitters never
         * wait for a scan of the held leases. */
        uint64_t next = next_due(d);
        pthread_mutex_lock(&d->mu);
        for (;;) {
            if (d->stop)
                break;
            if (d->stall) {
                pthread_cond_wait(&d->cv, &d->mu);
                continue;
            }
            if (d->q_head != NULL)
                break;
            if (next <= dir_now())
                break;
            if (next == UINT64_MAX) {
                pthread_cond_wait(&d->cv, &d->mu);
            } else {
                struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                      .tv_nsec = (long)(next % 1000000000ull)};
                pthread_cond_timedwait(&d->cv, &d->mu, &ts);
            }
        }
        if (d->stop) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        /* Take the whole FIFO: the lock is never held across Redis. */
        if (d->q_head != NULL) {
            if (d->p_tail != NULL)
                d->p_tail->next = d->q_head;
            else
                d->p_head = d->q_head;
            d->p_tail = d->q_tail;
            d->q_head = d->q_tail = NULL;
            d->q_len = 0;
        }
        pthread_mutex_unlock(&d->mu);
        turn(d);
    }
    shutdown_thread(d);
    return NULL;
}
