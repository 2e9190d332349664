/* Leases (docs/CLUSTER.md 1.5): the reference-counted lease object shared
 * with other threads, and the cluster thread's table of the leases this
 * relay holds, including losing one and the event that tells. The bottom of
 * the directory's files: it calls none of the others. */
#include "cluster/dir_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

uint64_t dir_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ leases */

bool dir_lease_valid(const struct dir_lease *l, uint64_t now)
{
    /* Pairs with the release stores in lease_publish/lease_extend/dirlease_end. */
    return l != NULL && now < atomic_load_explicit(&l->until, memory_order_acquire);
}

uint64_t dir_lease_gen(const struct dir_lease *l)
{
    return l->gen;
}

uint64_t dir_lease_until(const struct dir_lease *l)
{
    return atomic_load_explicit(&l->until, memory_order_acquire);
}

const char *dir_lease_room(const struct dir_lease *l, size_t *len)
{
    if (len != NULL)
        *len = l->room_len;
    return l->room;
}

void dir_lease_get(struct dir_lease *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void dir_lease_put(struct dir_lease *l)
{
    if (l == NULL)
        return;
    /* acq_rel: the last putter sees every other holder's writes before free. */
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

void dirlease_end(struct dir_lease *l)
{
    atomic_store_explicit(&l->until, 0, memory_order_release);
}

struct dir_lease *dirlease_new(const struct dir_req *q, const char *id, uint64_t gen)
{
    struct dir_lease *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    memcpy(l->room, q->room, q->room_len);
    l->room_len = q->room_len;
    l->gen = gen;
    int n = dirkey_value_format(l->value, sizeof(l->value), id, gen);
    if (n < 0) {
        free(l);
        return NULL;
    }
    l->value_len = (size_t)n;
    atomic_init(&l->refs, 1);
    atomic_init(&l->until, 0);
    return l;
}

/* ------------------------------------------------------------------ events */

void dirlease_emit(struct dir *d, const struct dir_event *ev)
{
    if (d->event_cb != NULL)
        d->event_cb(ev, d->event_arg);
}

int dirlease_held_find(const struct dir *d, const char *room, size_t len)
{
    for (size_t i = 0; i < d->n_held; i++)
        if (d->held[i]->room_len == len && memcmp(d->held[i]->room, room, len) == 0)
            return (int)i;
    return -1;
}

/* Removes held[i] (order is not kept) and drops the table's reference. */
void dirlease_held_remove(struct dir *d, size_t i)
{
    struct dir_lease *l = d->held[i];
    d->held[i] = d->held[--d->n_held];
    stat_dec(d->st, ST(leases_held));
    dir_lease_put(l);
}

void dirlease_lose(struct dir *d, size_t i, enum dir_lost_reason why)
{
    struct dir_lease *l = d->held[i];
    dirlease_end(l);
    stat_inc(d->st, ST(leases_lost));
    stat_inc(d->st, why == DIR_LOST_TAKEN ? ST(leases_taken) : ST(leases_expired));
    log_warn("event=lease_lost room=\"%.*s\" gen=%" PRIu64 " reason=%s", (int)l->room_len, l->room,
             l->gen, why == DIR_LOST_TAKEN ? "taken" : "expired");
    struct dir_event ev = {.type = DIR_EV_LEASE_LOST,
                           .room = l->room,
                           .room_len = l->room_len,
                           .gen = l->gen,
                           .reason = why};
    dir_lease_get(l); /* keep the room bytes alive for the event */
    dirlease_held_remove(d, i);
    dirlease_emit(d, &ev);
    dir_lease_put(l);
}

/* Leases past their local deadline are lost, whether or not Redis answers:
 * the split-brain guard (docs/CLUSTER.md 1.5). Released ones (until 0)
 * wait for their RELEASE request. */
void dirlease_expire(struct dir *d, uint64_t now)
{
    for (size_t i = 0; i < d->n_held;) {
        uint64_t u = atomic_load_explicit(&d->held[i]->until, memory_order_acquire);
        if (u != 0 && now >= u) {
            dirlease_lose(d, i, DIR_LOST_EXPIRED);
            continue;
        }
        i++;
    }
}

bool dirlease_held_add(struct dir *d, struct dir_lease *l)
{
    if (d->n_held == d->cap_held) {
        size_t cap = d->cap_held ? d->cap_held * 2 : 16;
        struct dir_lease **h = realloc(d->held, cap * sizeof(*h));
        if (h == NULL)
            return false;
        d->held = h;
        d->cap_held = cap;
    }
    d->held[d->n_held++] = l;
    stat_inc(d->st, ST(leases_held));
    return true;
}
