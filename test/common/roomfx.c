#include "roomfx.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/buf.h"
#include "core/error.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/perm.h"
#include "room/room_int.h"

static struct msg dec; /* large: lists of 200 */

void roomfx_push(struct roomfx *fx, unsigned w, const struct worker_msg *wm)
{
    assert_true(fx->tail[w] - fx->head[w] < ROOMFX_QMAX);
    fx->q[w][fx->tail[w]++ % ROOMFX_QMAX] = *wm;
}

int roomfx_send(void *arg, unsigned to, struct worker_msg *wm)
{
    struct roomfx *fx = arg;
    assert_true(to < fx->nw);
    if (fx->fail_type != 0 && (int)wm->type == fx->fail_type) {
        fx->fail_type = 0;
        return ROOST_ENOMEM;
    }
    roomfx_push(fx, to, wm);
    return 0;
}

static int roomfx_ep_media(void *e, struct buf *b, uint32_t off, uint32_t len, void *arg)
{
    (void)b, (void)off, (void)len, (void)arg;
    ((struct roomfx_ep *)e)->media++;
    return 0;
}

static void roomfx_ep_control(void *e, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct roomfx_ep *ep = e;
    ep->controls++;
    if (msg_decode(body, len, &dec) != 0)
        return;
    if (dec.type == MSG_PARTICIPANT_EVENTS)
        ep->events += dec.u.events.n_events;
    if (dec.type == MSG_JOINED)
        ep->joined_msgs++;
}

static void roomfx_ep_joined(void *e, uint32_t code, void *arg)
{
    (void)arg;
    struct roomfx_ep *ep = e;
    ep->joined_cb++;
    ep->last_code = code;
}

static void roomfx_ep_replaced(void *e, void *arg)
{
    (void)arg;
    ((struct roomfx_ep *)e)->replaced++;
}

static void roomfx_ep_move(void *e, unsigned to, void *arg)
{
    (void)arg;
    ((struct roomfx_ep *)e)->moved_to = (int)to;
}

const struct room_ops roomfx_ops = {.media = roomfx_ep_media,
                                    .control = roomfx_ep_control,
                                    .joined = roomfx_ep_joined,
                                    .replaced = roomfx_ep_replaced,
                                    .move = roomfx_ep_move};

void roomfx_start_ops(struct roomfx *fx, unsigned nw, const struct room_limits *lim,
                      const struct room_ops *ops)
{
    assert_true(nw <= ROOMFX_MAXW);
    memset(fx, 0, sizeof(*fx));
    fx->nw = nw;
    fx->buf_base = buf_live();
    rcu_register_thread();
    assert_int_equal(room_shared_new(&fx->sh, nw, lim), 0);
    static const struct worker_ops wops = {0};
    struct worker_config cfg = {.n_workers = nw, .no_pin = true};
    assert_int_equal(worker_pool_new(&fx->pool, &cfg, &wops, NULL), 0);
    for (unsigned w = 0; w < nw; w++) {
        assert_int_equal(room_shard_new(&fx->s[w], fx->sh, worker_pool_get(fx->pool, w),
                                        ops != NULL ? ops : &roomfx_ops, NULL),
                         0);
        fx->s[w]->send_hook = roomfx_send;
        fx->s[w]->send_hook_arg = fx;
    }
}

void roomfx_start_lim(struct roomfx *fx, unsigned nw, const struct room_limits *lim)
{
    roomfx_start_ops(fx, nw, lim, NULL);
}

void roomfx_start(struct roomfx *fx, unsigned nw, uint32_t amax)
{
    struct room_limits lim = {.affinity_max_members = amax};
    roomfx_start_lim(fx, nw, &lim);
}

void roomfx_start_pack(struct roomfx *fx, unsigned nw, uint32_t pack_members)
{
    struct room_limits lim = {.placement = ROOM_PLACE_PACK, .pack_members = pack_members};
    roomfx_start_lim(fx, nw, &lim);
}

bool roomfx_step(struct roomfx *fx, unsigned w)
{
    if (fx->head[w] == fx->tail[w])
        return false;
    struct worker_msg wm = fx->q[w][fx->head[w]++ % ROOMFX_QMAX];
    rcu_quiescent_state();
    room_dispatch_one(fx->s[w], &wm);
    return true;
}

void roomfx_pump(struct roomfx *fx)
{
    roomfx_step_fn step = fx->step != NULL ? fx->step : roomfx_step;
    bool any = true;
    while (any) {
        any = false;
        for (unsigned w = 0; w < fx->nw; w++) {
            while (step(fx, w))
                any = true;
            room_shard_flush(fx->s[w]);
            any |= fx->head[w] != fx->tail[w];
        }
    }
}

void roomfx_stop_discard(struct roomfx *fx)
{
    for (unsigned w = 0; w < fx->nw; w++)
        while (fx->head[w] != fx->tail[w])
            assert_true(room_msg_release(&fx->q[w][fx->head[w]++ % ROOMFX_QMAX]));
    for (unsigned w = 0; w < fx->nw; w++)
        room_shard_del(fx->s[w]);
    worker_pool_del(fx->pool);
    rcu_thread_offline();
    rcu_barrier();
    rcu_thread_online();
    rcu_unregister_thread();
    room_shared_del(fx->sh);
    assert_int_equal(buf_live(), fx->buf_base);
}

void roomfx_stop(struct roomfx *fx)
{
    roomfx_pump(fx);
    roomfx_stop_discard(fx);
}

const char *roomfx_home_room(struct roomfx *fx, unsigned w, unsigned n)
{
    static char ids[4][16];
    for (unsigned i = 0, found = 0;; i++) {
        char id[16];
        snprintf(id, sizeof(id), "room-%u", i);
        if (room_shared_owner(fx->sh, (const uint8_t *)id, strlen(id)) != w)
            continue;
        if (found++ == n) {
            memcpy(ids[n], id, sizeof(id));
            return ids[n];
        }
    }
}

bool roomfx_no_placements(struct roomfx *fx)
{
    for (unsigned w = 0; w < fx->nw; w++)
        for (uint32_t b = 0; b <= fx->s[w]->placed_mask; b++)
            if (fx->s[w]->placed[b] != NULL)
                return false;
    return true;
}

struct room *roomfx_find(struct roomfx *fx, unsigned w, const char *id)
{
    uint64_t h;
    return owner_room_find(fx->s[w], (const uint8_t *)id, strlen(id), &h);
}

int roomfx_move(struct roomfx *fx, unsigned home, const char *id, unsigned to)
{
    uint32_t n;
    return room_shard_move(fx->s[home], (const uint8_t *)id, strlen(id), to, &n);
}

struct worker_msg roomfx_hold(struct roomfx *fx, unsigned w, uint16_t type)
{
    for (unsigned i = fx->head[w]; i != fx->tail[w]; i++) {
        if (fx->q[w][i % ROOMFX_QMAX].type != type)
            continue;
        struct worker_msg wm = fx->q[w][i % ROOMFX_QMAX];
        for (unsigned k = i; k + 1 != fx->tail[w]; k++)
            fx->q[w][k % ROOMFX_QMAX] = fx->q[w][(k + 1) % ROOMFX_QMAX];
        fx->tail[w]--;
        return wm;
    }
    fail_msg("no message of type 0x%x for worker %u", type, w);
    struct worker_msg none = {0};
    return none;
}

void roomfx_ep_new(struct roomfx *fx, struct roomfx_ep *e, unsigned w)
{
    memset(e, 0, sizeof(*e));
    e->w = w;
    e->moved_to = -1;
    assert_int_equal(room_member_new(fx->s[w], e, &e->m), 0);
    room_member_set_movable(e->m, true);
    e->pid = room_member_pid(e->m);
}

void roomfx_ep_join(struct roomfx_ep *e, const char *room, const char *ident)
{
    assert_int_equal(room_join(e->m, (const uint8_t *)room, strlen(room), (const uint8_t *)ident,
                               strlen(ident), (const uint8_t *)"n", 1, PERM_ALL),
                     0);
}

void roomfx_ep_send(struct roomfx_ep *e)
{
    uint8_t d[64];
    struct media_hdr h = {.stream_id = 1, .seq = 1};
    assert_int_equal(media_c2r_encode(&h, d, sizeof(d)), MEDIA_C2R_HDR_LEN);
    memset(d + MEDIA_C2R_HDR_LEN, 0xab, 8);
    assert_int_equal(room_publish(e->m, d, MEDIA_C2R_HDR_LEN + 8), 0);
}

void roomfx_ep_hand_off(struct roomfx *fx, struct roomfx_ep *e, unsigned to)
{
    struct room_keep keep;
    room_member_detach(e->m, &keep);
    assert_true(keep.valid);
    e->m = NULL;
    e->w = to;
    assert_int_equal(room_member_rebind(fx->s[to], e, &keep, &e->m), 0);
    assert_int_equal(room_member_pid(e->m), e->pid);
    assert_true(room_member_joined(e->m));
}

void roomfx_join3(struct roomfx *fx, struct roomfx_ep *a, struct roomfx_ep *b, struct roomfx_ep *d,
                  const char *id)
{
    roomfx_ep_new(fx, a, 0);
    roomfx_ep_new(fx, b, 1);
    roomfx_ep_new(fx, d, 2);
    roomfx_ep_join(a, id, "a");
    roomfx_ep_join(b, id, "b");
    roomfx_ep_join(d, id, "d");
    roomfx_pump(fx);
    assert_int_equal(a->last_code, 0);
    assert_int_equal(b->last_code, 0);
    assert_int_equal(d->last_code, 0);
}

void roomfx_del3(struct roomfx_ep *a, struct roomfx_ep *b, struct roomfx_ep *d)
{
    room_member_del(a->m);
    room_member_del(b->m);
    room_member_del(d->m);
}
