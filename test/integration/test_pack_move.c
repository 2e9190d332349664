/* placement = pack through the whole relay (session 8; lib/room/place.c):
 * a relay of 2 workers with room affinity, placement pack and
 * pack_members = S. The first room (its home worker 1) is made on worker
 * 0 and its members' connections follow it there; the next room (its
 * home worker 0) finds worker 0 at the bound and is made on worker 1.
 * The first room, placed off its home, moves when asked (POST
 * /rooms/{id}/move?worker=1: 202, "from" names its owner 0, not its home
 * 1), its members follow, and it moves back (from 1); then everyone
 * leaves and nothing is left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "relay/admin.h"
#include "room/room.h"
#include "../common/echo_app.h"
#include "../common/httpc.h"
#include "../common/participant.h"

#define WAIT_MS 30000
#define S 3

struct parts {
    struct part *v;
    unsigned n;
};

static bool all_answered(void *arg)
{
    struct parts *ps = arg;
    for (unsigned i = 0; i < ps->n; i++)
        if (!ps->v[i].answered)
            return false;
    return true;
}

/* The n-th room id prefix-i whose home (hash owner) is worker w. */
static void room_on(struct relay *r, unsigned w, unsigned n, const char *prefix, char *out,
                    size_t cap)
{
    for (unsigned i = 0, found = 0;; i++) {
        snprintf(out, cap, "%s-%u", prefix, i);
        if (relay_room_owner(r, out, strlen(out)) == w && found++ == n)
            return;
    }
}

/* POST over HTTP/1.0: the status, the body in out (NUL-terminated). */
static int http_post(uint16_t port, const char *path, char *out, size_t cap)
{
    int status = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", path);
    assert_true(n > 0 && (size_t)n < sizeof(req));
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
        ssize_t k = read(fd, out + len, cap - len - 1);
        assert_true(k >= 0);
        if (k == 0)
            break;
        len += (size_t)k;
        assert_true(len < cap - 1);
    }
    out[len] = '\0';
    assert_int_equal(sscanf(out, "HTTP/1.%*d %d", &status), 1);
    close(fd);
    return status;
}

struct room_env {
    struct relay *r;
    struct part v[S];
    unsigned w; /* where every member should be, owned there */
};

/* Every member of the room on worker e->w, owned by e->w. */
static bool all_on(void *arg)
{
    struct room_env *e = arg;
    struct relay_member_info *mi;
    size_t n;
    assert_int_equal(relay_members(e->r, &mi, &n), 0);
    unsigned ok = 0;
    for (size_t k = 0; k < n; k++)
        for (unsigned i = 0; i < S; i++)
            if (mi[k].pid == e->v[i].pid && mi[k].joined && mi[k].worker == e->w &&
                mi[k].owner == e->w)
                ok++;
    free(mi);
    return ok == S;
}

static void join_all(struct test_relay *tr, struct roost_client *cl, struct room_env *e,
                     const char *room)
{
    for (unsigned i = 0; i < S; i++) {
        struct part *p = &e->v[i];
        snprintf(p->room, sizeof(p->room), "%s", room);
        snprintf(p->name, sizeof(p->name), "%s-m%u", room, i);
        test_token(tr, p->room, p->name, TOKEN_PERM_ALL, 0, 600, p->token, sizeof(p->token));
        assert_int_equal(part_connect(cl, tr->port, p), 0);
        struct parts one = {p, 1};
        assert_true(echo_client_until(cl, all_answered, &one, WAIT_MS));
        assert_true(p->joined);
    }
}

static bool none_left(void *arg)
{
    struct relay_stats st;
    relay_stats(arg, &st);
    return st.participants == 0 && st.rooms == 0;
}

static void post_move(uint16_t aport, const char *room, unsigned to, int want, char *body,
                      size_t cap)
{
    char path[128];
    snprintf(path, sizeof(path), "/rooms/%s/move?worker=%u", room, to);
    int st = http_post(aport, path, body, cap);
    if (st != want)
        fail_msg("POST %s: %d, want %d: %s", path, st, want, body);
}

static void test_pack_spill_and_move(void **state)
{
    (void)state;
    int64_t base = buf_live();
    struct test_relay tr;
    struct relay_config cfg = {
        .n_workers = 2, .affinity_max_members = 8, .placement = ROOM_PLACE_PACK, .pack_members = S};
    assert_int_equal(test_relay_start(&tr, &cfg), 0);
    struct admin *adm;
    struct admin_config ac = {.addr = "127.0.0.1", .port = 0};
    assert_int_equal(admin_new(&adm, tr.r, &ac), 0);
    uint16_t aport = admin_port(adm);
    assert_true(httpc_until(aport, "/metrics", "roost_placement{mode=\"pack\"} 1", WAIT_MS));
    struct roost_client *cl;
    assert_int_equal(test_client_new(&cl), 0);
    static struct room_env a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.r = b.r = tr.r;
    char ra[32], rb[32];
    room_on(tr.r, 1, 0, "pk", ra, sizeof(ra));
    room_on(tr.r, 0, 0, "pk", rb, sizeof(rb));
    /* Worker 0 first, whatever the home. */
    join_all(&tr, cl, &a, ra);
    a.w = 0;
    assert_true(echo_client_until(cl, all_on, &a, WAIT_MS));
    /* Worker 0 owns S = pack_members: the next room spills to 1. */
    join_all(&tr, cl, &b, rb);
    b.w = 1;
    assert_true(echo_client_until(cl, all_on, &b, WAIT_MS));
    /* The placed room moves: "from" is its owner (0), not its home (1). */
    char body[4096];
    post_move(aport, ra, 1, 202, body, sizeof(body));
    assert_non_null(strstr(body, "\"from\": 0"));
    a.w = 1;
    assert_true(echo_client_until(cl, all_on, &a, WAIT_MS));
    post_move(aport, ra, 1, 200, body, sizeof(body));
    assert_non_null(strstr(body, "already there"));
    post_move(aport, ra, 0, 202, body, sizeof(body));
    assert_non_null(strstr(body, "\"from\": 1"));
    a.w = 0;
    assert_true(echo_client_until(cl, all_on, &a, WAIT_MS));
    for (unsigned i = 0; i < S; i++) {
        part_leave(&a.v[i]);
        part_leave(&b.v[i]);
    }
    assert_true(echo_client_until(cl, none_left, tr.r, WAIT_MS));
    admin_del(adm);
    roost_client_del(cl);
    test_relay_stop(&tr);
    assert_int_equal(buf_live(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_spill_and_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
