/* The /rooms member listing (relay_members): the admin thread posts
 * RELAY_MSG_MEMBERS to every worker, each appends its sessions' members
 * (session_members_collect, on that worker) and the last to answer wakes
 * the waiting thread. Control path: a mutex is fine. */
#include "relay/relay_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/worker.h"
#include "room/room.h"

/* One /rooms request, shared by the workers answering it. */
struct members_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending;
    struct relay_member_info *v;
    size_t n, cap;
    bool nomem;
};

void session_members_done(struct members_req *q)
{
    pthread_mutex_lock(&q->mu);
    if (--q->pending == 0)
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void session_members_collect(struct relay_worker *rw, struct members_req *q)
{
    uint64_t now = worker_now(rw->w);
    for (struct session *ss = rw->live; ss != NULL; ss = ss->next) {
        bool joined = room_member_joined(ss->m);
        if (ss->c == NULL || (!joined && ss->state != SESSION_JOINING))
            continue;
        struct relay_member_info mi = {.pid = room_member_pid(ss->m),
                                       .worker = worker_id(rw->w),
                                       .joined = joined,
                                       .rebinding = joined && room_member_rebinding(ss->m)};
        memcpy(mi.room, ss->room, ss->room_len + 1u);
        mi.room_len = ss->room_len;
        memcpy(mi.display, ss->display, sizeof(mi.display));
        /* Joined: the worker that answered (the owner load bound may have
         * placed the room off its hash owner). */
        mi.owner = joined ? room_member_owner(ss->m)
                          : room_shared_owner(rw->r->rsh, (const uint8_t *)ss->room, ss->room_len);
        mi.joined_for_ms = mi.joined ? (now - ss->joined_ns) / 1000000u : 0;
        mi.transport = ss->eo->name;
        endpoint_link_stats(ss, &mi.link);
        pthread_mutex_lock(&q->mu);
        if (q->n == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 64;
            struct relay_member_info *nv = realloc(q->v, cap * sizeof(*nv));
            if (nv == NULL) {
                q->nomem = true;
                pthread_mutex_unlock(&q->mu);
                break;
            }
            q->v = nv;
            q->cap = cap;
        }
        q->v[q->n++] = mi;
        pthread_mutex_unlock(&q->mu);
    }
}

int relay_members(struct relay *r, struct relay_member_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    struct members_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ROOST_ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->pending = 1; /* ours, dropped after posting */
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct worker_msg m = {.type = RELAY_MSG_MEMBERS};
        m.u.ptr[0] = q;
        pthread_mutex_lock(&q->mu);
        q->pending++;
        pthread_mutex_unlock(&q->mu);
        if (worker_pool_post(r->pool, i, &m) != 0)
            session_members_done(q); /* worker gone (or no memory): nothing to wait for */
    }
    pthread_mutex_lock(&q->mu);
    q->pending--;
    while (q->pending > 0)
        pthread_cond_wait(&q->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    int rc = q->nomem ? ROOST_ENOMEM : 0;
    if (rc == 0) {
        *out = q->v;
        *n = q->n;
    } else {
        free(q->v);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
    return rc;
}
