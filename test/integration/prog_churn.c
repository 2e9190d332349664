/* prog_churn: join/leave/vanish cycles against a relay for the torture churn
 * run (test/torture/churn, docs/TESTING.md).
 *
 * Keeps up to --concurrency connections in flight. Each cycle: connect,
 * HELLO, JOIN one of --rooms rooms (a token minted from --token-key), on
 * JOINED send a few media datagrams, then end the membership one of three
 * ways, drawn from a seeded generator by --mix weights:
 *   leave   LEAVE, then wait for the relay's close
 *   close   CONNECTION_CLOSE (NO_ERROR) from the client
 *   abrupt  the client drops the connection without a word (the relay
 *           finds out only by its idle timeout)
 * Paced by the relay itself (a new cycle starts when one ends), so a slow
 * (ASan, loaded) relay gets fewer cycles per second instead of a collapse.
 * Stops after --cycles joins, --duration or SIGTERM; prints one JSON object. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "proto/frame.h"
#include "proto/media.h"
#include "proto/msg.h"
#include "proto/token.h"
#include "test/torture/impair.c" /* seeded generator and option helpers */

#define MAX_CONC 1024
#define CYCLE_TIMEOUT_NS 20000000000ull /* a cycle stuck this long counts as failed */

enum st { S_FREE, S_CONNECTING, S_JOINING, S_JOINED, S_LEAVING, S_CLOSED };
enum act { A_LEAVE, A_CLOSE, A_ABRUPT, A_N };
static const char *const act_name[A_N] = {"leave", "close", "abrupt"};

struct slot {
    struct roost_conn *c;
    enum st st;
    unsigned room;
    uint64_t started;
    uint64_t id;
};

struct churn {
    struct roost_client *cl;
    struct token_keyring keys;
    struct impair_rng rng;
    struct slot slots[MAX_CONC];
    unsigned conc, rooms;
    unsigned weight[A_N];
    char prefix[32];
    struct msg msg;
    uint64_t started, joined, rejected, failed_before_join, timeouts, done, media_sent;
    uint64_t ended[A_N], leave_closed_by_relay, closed_while_joined;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void send_msg(struct roost_conn *c, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    if (n > 0)
        (void)roost_conn_send_control(c, body, (size_t)n);
}

static void on_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    struct msg m = {.type = MSG_HELLO};
    m.u.hello.min_version = 1;
    m.u.hello.max_version = 1;
    m.u.hello.client_name.ptr = (const uint8_t *)"prog_churn";
    m.u.hello.client_name.len = 10;
    send_msg(c, &m);
}

static void send_join(struct churn *ch, struct slot *s)
{
    char room[64], ident[32], tok[TOKEN_MAX_LEN + 1];
    snprintf(room, sizeof(room), "%s%u", ch->prefix, s->room);
    snprintf(ident, sizeof(ident), "c%llu", (unsigned long long)s->id);
    struct token_claims cl;
    uint8_t id[TOKEN_ID_LEN] = {0};
    memcpy(id, &s->id, sizeof(s->id));
    uint64_t now_s = (uint64_t)time(NULL);
    int n = -1;
    if (token_claims_set(&cl, room, strlen(room), ident, strlen(ident), TOKEN_PERM_ALL, now_s - 60,
                         now_s + 3600, id) == 0)
        n = token_mint(token_keyring_signer(&ch->keys), &cl, tok, sizeof(tok));
    if (n < 0) {
        s->st = S_CLOSED;
        ch->failed_before_join++;
        return;
    }
    struct msg j = {.type = MSG_JOIN};
    j.u.join.room_id.ptr = (const uint8_t *)room;
    j.u.join.room_id.len = strlen(room);
    j.u.join.token.ptr = (const uint8_t *)tok;
    j.u.join.token.len = (size_t)n;
    j.u.join.display_name.ptr = (const uint8_t *)ident;
    j.u.join.display_name.len = strlen(ident);
    s->st = S_JOINING;
    send_msg(s->c, &j);
}

static void on_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    struct churn *ch = arg;
    struct slot *s = roost_conn_user(c);
    if (msg_decode(body, len, &ch->msg) != 0)
        return;
    switch (ch->msg.type) {
    case MSG_WELCOME:
        if (s->st == S_CONNECTING)
            send_join(ch, s);
        break;
    case MSG_JOINED:
        if (s->st == S_JOINING) {
            s->st = S_JOINED; /* the main loop ends the membership */
            ch->joined++;
        }
        break;
    case MSG_JOIN_REJECTED:
        if (s->st == S_JOINING) {
            ch->rejected++;
            s->st = S_CLOSED;
        }
        break;
    default:
        break;
    }
}

static void on_datagram(struct roost_conn *c, const uint8_t *d, size_t len, void *arg)
{
    (void)c;
    (void)d;
    (void)len;
    (void)arg;
}

static void on_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)info;
    struct churn *ch = arg;
    struct slot *s = roost_conn_user(c);
    if (s->st == S_LEAVING) {
        ch->leave_closed_by_relay++;
    } else if (s->st == S_JOINED) {
        ch->closed_while_joined++;
    } else if (s->st == S_CONNECTING || s->st == S_JOINING) {
        ch->failed_before_join++;
    }
    if (s->st != S_FREE)
        s->st = S_CLOSED;
}

static const struct roost_client_callbacks cbs = {
    .on_open = on_open,
    .on_control = on_control,
    .on_datagram = on_datagram,
    .on_close = on_close,
};

static void slot_free(struct slot *s)
{
    roost_conn_del(s->c); /* silent if still open: no callback */
    s->c = NULL;
    s->st = S_FREE;
}

static enum act pick(struct churn *ch)
{
    unsigned total = ch->weight[0] + ch->weight[1] + ch->weight[2];
    unsigned x = (unsigned)(impair_rng_next(&ch->rng) % total);
    for (int a = 0; a < A_N; a++) {
        if (x < ch->weight[a])
            return (enum act)a;
        x -= ch->weight[a];
    }
    return A_CLOSE;
}

/* A joined member sends a little media, then ends one of three ways. */
static void finish(struct churn *ch, struct slot *s)
{
    for (uint32_t k = 0; k < 3; k++) {
        uint8_t d[MEDIA_C2R_HDR_LEN + 64];
        struct media_hdr h = {.stream_id = 0, .flags = MEDIA_F_START | MEDIA_F_END, .seq = k};
        media_c2r_encode(&h, d, sizeof(d));
        memset(d + MEDIA_C2R_HDR_LEN, (int)k, 64);
        if (roost_conn_send_datagram(s->c, d, sizeof(d)) == 0)
            ch->media_sent++;
    }
    enum act a = pick(ch);
    ch->ended[a]++;
    ch->done++;
    switch (a) {
    case A_LEAVE: {
        struct msg m = {.type = MSG_LEAVE};
        s->st = S_LEAVING;
        send_msg(s->c, &m);
        break;
    }
    case A_CLOSE:
        s->st = S_CLOSED;
        roost_conn_close(s->c, 0);
        break;
    case A_ABRUPT:
    default:
        slot_free(s);
        break;
    }
}

static int parse_weights(const char *v, unsigned *w)
{
    if (sscanf(v, "%u:%u:%u", &w[0], &w[1], &w[2]) != 3 || w[0] + w[1] + w[2] == 0)
        return -EINVAL;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: prog_churn --relay HOST:PORT --token-key FILE --ca FILE [--cycles N]\n"
               "        [--concurrency C] [--rooms R] [--duration T] [--seed N]\n"
               "        [--mix LEAVE:CLOSE:ABRUPT] (weights, default 40:30:30)\n");
}

int main(int argc, char **argv)
{
    static struct churn chs;
    struct churn *ch = &chs;
    char host[64] = "";
    uint16_t port = 0;
    const char *key = NULL, *ca = NULL;
    uint64_t cycles = 20000, seed = 1, dur_ns = 600000000000ull;
    ch->conc = 32;
    ch->rooms = 20;
    ch->weight[A_LEAVE] = 40;
    ch->weight[A_CLOSE] = 30;
    ch->weight[A_ABRUPT] = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL)
            goto bad;
        i++;
        char *end = NULL;
        if (strcmp(a, "--relay") == 0) {
            if (impair_parse_hostport(v, host, sizeof(host), &port, false) != 0)
                goto bad;
        } else if (strcmp(a, "--token-key") == 0) {
            key = v;
        } else if (strcmp(a, "--ca") == 0) {
            ca = v;
        } else if (strcmp(a, "--cycles") == 0) {
            cycles = strtoull(v, &end, 10);
        } else if (strcmp(a, "--concurrency") == 0) {
            ch->conc = (unsigned)strtoul(v, &end, 10);
        } else if (strcmp(a, "--rooms") == 0) {
            ch->rooms = (unsigned)strtoul(v, &end, 10);
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, &end, 10);
        } else if (strcmp(a, "--duration") == 0) {
            if (impair_parse_time(v, &dur_ns) != 0)
                goto bad;
        } else if (strcmp(a, "--mix") == 0) {
            if (parse_weights(v, ch->weight) != 0)
                goto bad;
        } else {
            goto bad;
        }
        if (end != NULL && (*end != '\0' || end == v))
            goto bad;
    }
    if (port == 0 || key == NULL || ca == NULL || ch->conc < 1 || ch->conc > MAX_CONC ||
        ch->rooms < 1)
        goto bad;

    int ret = 1;
    char err[512];
    token_keyring_init(&ch->keys);
    if (keyfile_load(key, &ch->keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "prog_churn: %s\n", err);
        return 1;
    }
    impair_rng_seed(&ch->rng, seed);
    snprintf(ch->prefix, sizeof(ch->prefix), "churn-%d-", (int)getpid());
    struct roost_client_config cc = {.ca_file = ca};
    int rc = roost_client_new(&ch->cl, &cc, &cbs, ch);
    if (rc != 0) {
        fprintf(stderr, "prog_churn: client: %s\n", roost_strerror(rc));
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    uint64_t t0 = mono_ns(), end_t = t0 + dur_ns;
    uint64_t connect_errors = 0;
    /* Bounded by --cycles, --duration and the cycle timeout. */
    for (;;) {
        uint64_t now = mono_ns();
        bool stopping = g_stop || now >= end_t || ch->joined >= cycles;
        unsigned busy = 0, inflight = 0;
        for (unsigned i = 0; i < ch->conc; i++)
            inflight += ch->slots[i].st == S_CONNECTING || ch->slots[i].st == S_JOINING;
        for (unsigned i = 0; i < ch->conc; i++) {
            struct slot *s = &ch->slots[i];
            if (s->st == S_JOINED) {
                finish(ch, s);
            } else if (s->st == S_CLOSED) {
                slot_free(s);
            } else if (s->st != S_FREE && now - s->started > CYCLE_TIMEOUT_NS) {
                ch->timeouts++;
                slot_free(s);
            }
            if (s->st == S_FREE && !stopping && ch->joined + inflight < cycles) {
                s->id = ch->started;
                s->room = (unsigned)(impair_rng_next(&ch->rng) % ch->rooms);
                s->started = now;
                s->st = S_CONNECTING;
                rc = roost_client_connect(ch->cl, host, port, s, &s->c);
                if (rc != 0) {
                    s->st = S_FREE;
                    s->c = NULL;
                    if (++connect_errors > 100) {
                        fprintf(stderr, "prog_churn: connect: %s\n", roost_strerror(rc));
                        goto out;
                    }
                } else {
                    ch->started++;
                    inflight++;
                }
            }
            busy += s->st != S_FREE;
        }
        if (busy == 0 && stopping)
            break;
        if (g_stop && now >= end_t + 5000000000ull)
            break;
        if (roost_client_step(ch->cl, 5) != 0)
            goto out;
    }
    double el = (double)(mono_ns() - t0) / 1e9;
    printf("{\"started\":%llu,\"joined\":%llu,\"rejected\":%llu,\"failed_before_join\":%llu,"
           "\"timeouts\":%llu,\"ended\":{",
           (unsigned long long)ch->started, (unsigned long long)ch->joined,
           (unsigned long long)ch->rejected, (unsigned long long)ch->failed_before_join,
           (unsigned long long)ch->timeouts);
    for (int a = 0; a < A_N; a++)
        printf("%s\"%s\":%llu", a ? "," : "", act_name[a], (unsigned long long)ch->ended[a]);
    printf("},\"leave_closed_by_relay\":%llu,\"closed_while_joined\":%llu,\"media_sent\":%llu,"
           "\"elapsed_s\":%.3f,\"cycles_per_s\":%.1f}\n",
           (unsigned long long)ch->leave_closed_by_relay,
           (unsigned long long)ch->closed_while_joined, (unsigned long long)ch->media_sent, el,
           el > 0 ? (double)ch->done / el : 0.0);
    ret = 0;
out:
    for (unsigned i = 0; i < MAX_CONC; i++)
        if (ch->slots[i].c != NULL)
            slot_free(&ch->slots[i]);
    roost_client_del(ch->cl);
    token_keyring_wipe(&ch->keys);
    return ret;
bad:
    usage(stderr);
    return 2;
}
