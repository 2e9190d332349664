/* A client's next JOIN starts with fresh hand-off state (session 11): with
 * room affinity, a JOIN answered "move" hands the connection to the room's
 * worker and is repeated there, movable while it has used fewer than
 * RELAY_JOIN_MOVES_MAX hand-offs. A JOIN that used them all and was then
 * rejected by its room (full) left the member not movable, so the client's
 * next JOIN on that connection could not follow its room: it joined from
 * the worker the last hand-off left it on, one member off the room's
 * worker (a split room). Now the client's own JOIN resets the count and
 * the movable flag; only the repeats count.
 *
 * after_rejected_third_move: 2 workers, affinity on, rooms by hash (spread), max_members 2.
 * The client's first JOIN (a bad token) shows which worker its connection
 * is on (w). Its second JOIN is for a full room owned by the other worker:
 * answered "move", and the test hook session_test_bounce_repeats hands the
 * repeat on twice more (as when the room's home placed the room elsewhere
 * meanwhile), so the repeat that reaches the room is the one after the
 * third hand-off, not movable, and is rejected ROOM_FULL. Its third JOIN is
 * for a room owned by w: it must follow the room there (its member listed
 * on the room's owner worker, with the room's other member).
 *
 * after_refused_repeat: the second JOIN's repeat, after one hand-off, is
 * refused in the token check (test hook session_test_refuse_repeats),
 * which left its hand-off counted; the third JOIN, bounced twice on its
 * way, must still follow its room after its third hand-off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "proto/errcode.h"
#include "proto/msg.h"
#include "relay/relay_int.h"
#include "../common/echo_app.h"
#include "../common/participant.h"

#define WAIT_MS 20000

/* A participant that counts its JOIN_REJECTED answers. */
struct fpart {
    struct part p; /* first: roost_conn_user returns it */
    unsigned n_rejected;
};

static void f_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct fpart *x = roost_conn_user(c);
    struct msg *m = malloc(sizeof(*m));
    assert_non_null(m);
    if (msg_decode(body, len, m) == 0 && m->type == MSG_JOIN_REJECTED)
        x->n_rejected++;
    free(m);
    part_cbs.on_control(c, body, len, arg);
}

static void send_join(struct fpart *x, const char *room, const char *token)
{
    struct msg j = {.type = MSG_JOIN};
    j.u.join.room_id.ptr = (const uint8_t *)room;
    j.u.join.room_id.len = strlen(room);
    j.u.join.token.ptr = (const uint8_t *)token;
    j.u.join.token.len = strlen(token);
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(&j, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(roost_conn_send_control(x->p.c, body, (size_t)n), 0);
}

/* The n-th (from 0) room id of the form prefix-i whose hash owner is w. */
static void room_on(struct relay *r, unsigned w, unsigned n, const char *prefix, char *out,
                    size_t cap)
{
    for (unsigned i = 0, found = 0;; i++) {
        snprintf(out, cap, "%s-%u", prefix, i);
        if (relay_room_owner(r, out, strlen(out)) == w && found++ == n)
            return;
    }
}

struct rejects {
    struct fpart *x;
    unsigned want;
};

static bool rejected(void *arg)
{
    struct rejects *q = arg;
    return q->x->n_rejected >= q->want || q->x->p.closed;
}

static bool joined(void *arg)
{
    struct fpart *x = arg;
    return x->p.joined || x->p.closed;
}

static bool none_left(void *arg)
{
    struct relay_stats st;
    relay_stats(arg, &st);
    return st.participants == 0 && st.rooms == 0;
}

static uint64_t bad_tokens(struct relay *r, unsigned w)
{
    struct relay_worker_stats ws;
    relay_worker_stats(r, w, &ws);
    return ws.relay.rejects_bad_token;
}

/* The listed member pid of room `room`; fails when it is not listed. */
static struct relay_member_info member(struct relay *r, const char *room, uint32_t pid)
{
    struct relay_member_info *mi;
    size_t n;
    assert_int_equal(relay_members(r, &mi, &n), 0);
    for (size_t k = 0; k < n; k++)
        if (mi[k].pid == pid && strcmp(mi[k].room, room) == 0) {
            struct relay_member_info one = mi[k];
            free(mi);
            return one;
        }
    free(mi);
    fail_msg("pid %u not listed in %s", pid, room);
    return (struct relay_member_info){0};
}

static void join_one(struct roost_client *cl, struct test_relay *tr, struct part *p,
                     const char *room, const char *name)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->room, sizeof(p->room), "%s", room);
    snprintf(p->name, sizeof(p->name), "%s", name);
    test_token(tr, room, name, TOKEN_PERM_ALL, 0, 600, p->token, sizeof(p->token));
    assert_int_equal(part_connect(cl, tr->port, p), 0);
    struct part_set one = {p, 1, 0};
    assert_true(echo_client_until(cl, part_all_answered, &one, WAIT_MS));
    assert_true(p->joined);
}

/* One relay, the client c and its worker. */
struct env {
    int64_t base;
    struct test_relay tr;
    struct roost_client *cl;
    struct fpart c;
    unsigned w; /* c's worker before its first hand-off */
    struct part m[3];
    unsigned n_m;
};

static void env_start(struct env *e)
{
    memset(e, 0, sizeof(*e));
    e->base = buf_live();
    struct relay_config cfg = {.n_workers = 2,
                               .affinity_max_members = 8,
                               .placement = ROOM_PLACE_SPREAD, /* rooms on their hash owner */
                               .max_members = 2};
    assert_int_equal(test_relay_start(&e->tr, &cfg), 0);
    static struct roost_client_callbacks cbs;
    cbs = part_cbs;
    cbs.on_control = f_control;
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    assert_int_equal(roost_client_new(&e->cl, &cc, &cbs, NULL), 0);
    /* c's first JOIN, a bad token, is refused on the connection's worker. */
    struct fpart *c = &e->c;
    snprintf(c->p.room, sizeof(c->p.room), "nowhere");
    snprintf(c->p.name, sizeof(c->p.name), "c");
    test_token(&e->tr, "nowhere", "c", TOKEN_PERM_ALL, 0, 600, c->p.token, sizeof(c->p.token));
    c->p.token[strlen(c->p.token) - 5] ^= 1; /* tampered: BAD_TOKEN */
    uint64_t bad0 = bad_tokens(e->tr.r, 0), bad1 = bad_tokens(e->tr.r, 1);
    assert_int_equal(part_connect(e->cl, e->tr.port, &c->p), 0);
    struct rejects q = {c, 1};
    assert_true(echo_client_until(e->cl, rejected, &q, WAIT_MS));
    assert_false(c->p.closed);
    assert_int_equal(c->p.reject_code, PROTO_ERR_BAD_TOKEN);
    bool on0 = bad_tokens(e->tr.r, 0) == bad0 + 1, on1 = bad_tokens(e->tr.r, 1) == bad1 + 1;
    assert_true(on0 != on1);
    e->w = on0 ? 0u : 1u;
}

/* Another member of room, joined (and moved to the room's worker). */
static void env_member(struct env *e, const char *room, const char *name)
{
    assert_true(e->n_m < 3);
    join_one(e->cl, &e->tr, &e->m[e->n_m++], room, name);
}

/* c's JOIN for room (a fresh token), answered after want rejections in
 * all (or joined: want 0). */
static void env_join(struct env *e, const char *room, unsigned want)
{
    char tok[TOKEN_MAX_LEN + 1];
    test_token(&e->tr, room, "c", TOKEN_PERM_ALL, 0, 600, tok, sizeof(tok));
    send_join(&e->c, room, tok);
    if (want > 0) {
        struct rejects q = {&e->c, want};
        assert_true(echo_client_until(e->cl, rejected, &q, WAIT_MS));
    } else {
        assert_true(echo_client_until(e->cl, joined, &e->c, WAIT_MS));
    }
    assert_false(e->c.p.closed);
}

/* c joined room, on the room's owner (worker w), with the room's other
 * member o: not split. */
static void env_check_on_owner(struct env *e, const char *room, const struct part *o, unsigned w)
{
    struct relay_member_info mc = member(e->tr.r, room, e->c.p.pid);
    struct relay_member_info mo = member(e->tr.r, room, o->pid);
    printf("# c: worker %u owner %u; %s: worker %u owner %u\n", mc.worker, mc.owner, o->name,
           mo.worker, mo.owner);
    assert_true(mc.joined);
    assert_int_equal(mc.owner, w);
    assert_int_equal(mc.worker, mc.owner); /* not split: on the room's worker */
    assert_int_equal(mc.worker, mo.worker);
}

static void env_stop(struct env *e)
{
    atomic_store(&session_test_bounce_repeats, 0u);
    atomic_store(&session_test_refuse_repeats, false);
    part_leave(&e->c.p);
    for (unsigned i = 0; i < e->n_m; i++)
        part_leave(&e->m[i]);
    assert_true(echo_client_until(e->cl, none_left, e->tr.r, WAIT_MS));
    roost_client_del(e->cl);
    test_relay_stop(&e->tr);
    assert_int_equal(buf_live(), e->base);
}

/* A JOIN rejected by its room after its third hand-off (not movable by
 * then): the next JOIN may move again. */
static void test_after_rejected_third_move(void **state)
{
    (void)state;
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    env_start(e);
    /* full: the other worker's room, at max_members; open: w's. */
    char room_full[32], room_open[32];
    room_on(e->tr.r, 1u - e->w, 0, "full", room_full, sizeof(room_full));
    room_on(e->tr.r, e->w, 0, "open", room_open, sizeof(room_open));
    env_member(e, room_full, "f1");
    env_member(e, room_full, "f2");
    env_member(e, room_open, "o1");
    /* Moved to the full room's worker, bounced twice by the hook, repeated
     * there after its third hand-off: rejected. */
    atomic_store(&session_test_bounce_repeats, 2u);
    env_join(e, room_full, 2);
    assert_int_equal(e->c.p.reject_code, PROTO_ERR_ROOM_FULL);
    assert_int_equal(atomic_load(&session_test_bounce_repeats), 0u); /* both bounces made */
    /* For w's room, from the other worker: it follows the room to w. */
    env_join(e, room_open, 0);
    env_check_on_owner(e, room_open, &e->m[2], e->w);
    env_stop(e);
    free(e);
}

/* A JOIN whose repeat after one hand-off was refused in the token check:
 * the next JOIN has all its hand-offs. It is bounced twice on its way (its
 * room placed elsewhere meanwhile, twice): the repeat after its second
 * hand-off must still follow the room; before the fix the first JOIN's
 * hand-off counted too, the repeat could not move and joined from the
 * other worker. */
static void test_after_refused_repeat(void **state)
{
    (void)state;
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    env_start(e);
    char room_far[32], room_open[32];
    room_on(e->tr.r, 1u - e->w, 0, "far", room_far, sizeof(room_far));
    room_on(e->tr.r, e->w, 0, "open", room_open, sizeof(room_open));
    env_member(e, room_far, "r1");
    env_member(e, room_open, "o1");
    /* Moved to the other worker; the repeat is refused there. */
    atomic_store(&session_test_refuse_repeats, true);
    env_join(e, room_far, 2);
    atomic_store(&session_test_refuse_repeats, false);
    assert_int_equal(e->c.p.reject_code, PROTO_ERR_TOKEN_EXPIRED);
    /* For w's room: moved there, bounced back and forth by the hook, then
     * repeated on w: it joins there. */
    atomic_store(&session_test_bounce_repeats, 2u);
    env_join(e, room_open, 0);
    env_check_on_owner(e, room_open, &e->m[1], e->w);
    assert_int_equal(atomic_load(&session_test_bounce_repeats), 0u);
    env_stop(e);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_after_rejected_third_move),
        cmocka_unit_test(test_after_refused_repeat),
    };
    return cmocka_run_group_tests_name("join_fresh", tests, NULL, NULL);
}
