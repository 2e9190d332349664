/* Join load with session resumption (issue 15), for scripts/join-cpu
 * --resume and test_join_resume.sh: N participants (rooms of 5, nobody
 * talks) join a relay at RATE per second with full TLS handshakes, all
 * close, and (with "resume") the same N participant slots join again
 * offering the session ticket the first round left in the client's ticket
 * store, so that the relay resumes every handshake.
 *
 *   prog_joins HOST PORT PIN_PEM TOKEN_KEYS N RATE full|resume [PRIORITY]
 *
 * PRIORITY: the client's gnutls priority string ("" or absent: the
 * default, which offers psk_dhe_ke only; add ":+PSK" to offer psk_ke too).
 * The participants speak the protocol on the QUIC client directly (HELLO,
 * WELCOME, JOIN, JOINED), as the client library does, so that the priority
 * can be chosen.
 *
 * Protocol on stdout/stdin, one line each, so that the caller can scrape
 * the relay between the phases:
 *   "ready"                        -> waits for a line on stdin
 *   "joined full J F R"            (after the full round: J joined, F
 *                                   failed, R of the J handshakes resumed)
 *   "closed"                       -> waits for a line on stdin (resume only)
 *   "joined resumed J F R"         (after the resumed round)
 *   "closed"
 * Exit 0 when every participant of every round joined, 1 otherwise.
 *
 * Full round: the client's ticket for the relay is forgotten before each
 * connection (tickets arrive after each handshake), so every handshake is
 * a full one. Resumed round: the ticket is kept; each resumed connection
 * brings a fresh ticket, which replaces it. The relay's cost per resumed
 * handshake does not depend on which of its tickets is offered. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/keyfile.h"
#include "proto/msg.h"
#include "proto/token.h"
#include "quic/client.h"

#define ROOM_SIZE 5

struct slot {
    struct quic_conn *c;
    unsigned idx, round;
    int state; /* 0 idle, 1 connecting, 2 joined, 3 failed */
    bool resumed;
};

static struct token_keyring g_keys;
static unsigned g_joined, g_failed, g_resumed;
static struct msg g_msg;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void fail(struct slot *sl)
{
    if (sl->state == 1) {
        sl->state = 3;
        g_failed++;
    }
}

static int send_msg(struct quic_conn *c, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    return n < 0 ? n : quic_conn_send_control(c, body, (size_t)n);
}

static struct msg_str view(const char *s)
{
    return (struct msg_str){.ptr = (const uint8_t *)s, .len = strlen(s)};
}

static int t_open(struct quic_conn *c, void *arg)
{
    (void)arg;
    struct slot *sl = quic_conn_user(c);
    sl->resumed = quic_conn_tls_resumed(c);
    struct msg m = {.type = MSG_HELLO};
    m.u.hello.min_version = PROTO_VERSION;
    m.u.hello.max_version = PROTO_VERSION;
    m.u.hello.client_name = view("prog_joins");
    return send_msg(c, &m) < 0 ? 1 : 0;
}

static int mint(unsigned idx, unsigned round, char *room, size_t room_cap, char *name,
                size_t name_cap, char *tok, size_t tok_cap);

static void t_control(struct quic_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct slot *sl = quic_conn_user(c);
    if (msg_decode(body, len, &g_msg) < 0) {
        fail(sl);
        return;
    }
    if (g_msg.type == MSG_WELCOME) {
        char room[32], name[32], tok[TOKEN_MAX_LEN + 1];
        struct msg m = {.type = MSG_JOIN};
        if (mint(sl->idx, sl->round, room, sizeof(room), name, sizeof(name), tok, sizeof(tok))) {
            fail(sl);
            return;
        }
        m.u.join.room_id = view(room);
        m.u.join.token = view(tok);
        m.u.join.display_name = view(name);
        if (send_msg(c, &m) < 0)
            fail(sl);
    } else if (g_msg.type == MSG_JOINED && sl->state == 1) {
        sl->state = 2;
        g_joined++;
        g_resumed += sl->resumed;
    } else if (g_msg.type == MSG_JOIN_REJECTED) {
        fail(sl);
    }
}

static void t_close(struct quic_conn *c, uint64_t app_error, void *arg)
{
    (void)app_error;
    (void)arg;
    fail(quic_conn_user(c));
}

static const struct quic_app_ops ops = {
    .on_open = t_open, .on_control = t_control, .on_close = t_close};

static int mint(unsigned idx, unsigned round, char *room, size_t room_cap, char *name,
                size_t name_cap, char *tok, size_t tok_cap)
{
    snprintf(room, room_cap, "j%u", idx / ROOM_SIZE);
    snprintf(name, name_cap, "p%u-%u", idx, round);
    struct token_claims cl;
    uint8_t id[TOKEN_ID_LEN] = {0};
    uint64_t t = now_ns();
    memcpy(id, &idx, sizeof(idx));
    memcpy(id + 4, &round, sizeof(round));
    memcpy(id + 8, &t, sizeof(t));
    uint64_t now_s = (uint64_t)time(NULL);
    if (token_claims_set(&cl, room, strlen(room), name, strlen(name), TOKEN_PERM_ALL, now_s - 60,
                         now_s + 3600, id) != 0)
        return -1;
    return token_mint(token_keyring_signer(&g_keys), &cl, tok, tok_cap) < 0 ? -1 : 0;
}

static void step(struct quic_client *qc, int max_ms)
{
    struct pollfd p = {.fd = quic_client_fd(qc), .events = POLLIN};
    uint64_t to = quic_client_next_timeout(qc, now_ns());
    int ms = to / 1000000 < (uint64_t)max_ms ? (int)(to / 1000000) : max_ms;
    (void)poll(&p, 1, ms);
    (void)quic_client_process(qc, now_ns());
}

/* One round: connect the n slots at rate per second, wait until each has
 * joined or failed, then close them all and wait until the client has no
 * connection left. */
static int round_run(struct quic_client *qc, const char *host, uint16_t port, struct slot *sl,
                     unsigned n, double rate, bool full, unsigned round)
{
    g_joined = g_failed = g_resumed = 0;
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(n / rate * 1e9) + 120000000000ULL;
    unsigned started = 0;
    while (g_joined + g_failed < n) {
        uint64_t now = now_ns();
        if (now > deadline) {
            fprintf(stderr, "prog_joins: round %u timed out (%u joined, %u failed of %u)\n", round,
                    g_joined, g_failed, n);
            return -1;
        }
        while (started < n && (double)(now - t0) * rate / 1e9 >= started) {
            if (full)
                quic_client_forget_ticket(qc, host, port);
            else if (!quic_client_has_ticket(qc, host, port)) {
                fprintf(stderr, "prog_joins: no ticket to resume with\n");
                return -1;
            }
            struct slot *s = &sl[started];
            *s = (struct slot){.idx = started, .round = round, .state = 1};
            if (quic_client_connect(qc, host, port, s, &s->c) != 0) {
                s->c = NULL;
                fail(s);
            }
            started++;
        }
        step(qc, 1);
    }
    if (full) {
        /* Let the last participants' tickets arrive (they follow the
         * handshake by a round trip). */
        while (!quic_client_has_ticket(qc, host, port) && now_ns() < deadline)
            step(qc, 5);
    }
    printf("joined %s %u %u %u\n", full ? "full" : "resumed", g_joined, g_failed, g_resumed);
    fflush(stdout);
    unsigned joined = g_joined;
    for (unsigned i = 0; i < n; i++)
        if (sl[i].c != NULL)
            quic_conn_close(sl[i].c, QUIC_APP_NO_ERROR, NULL);
    while (quic_client_active(qc) > 0 && now_ns() < deadline)
        step(qc, 5);
    for (unsigned i = 0; i < n; i++)
        if (sl[i].c != NULL)
            quic_client_conn_del(sl[i].c);
    memset(sl, 0, n * sizeof(*sl));
    printf("closed\n");
    fflush(stdout);
    return joined == n ? 0 : -1;
}

static void wait_line(void)
{
    char line[64];
    if (fgets(line, sizeof(line), stdin) == NULL)
        exit(1);
}

int main(int argc, char **argv)
{
    if ((argc != 8 && argc != 9) ||
        (strcmp(argv[7], "full") != 0 && strcmp(argv[7], "resume") != 0)) {
        fprintf(stderr,
                "usage: prog_joins HOST PORT PIN_PEM TOKEN_KEYS N RATE full|resume [PRIORITY]\n");
        return 2;
    }
    const char *host = argv[1];
    uint16_t port = (uint16_t)atoi(argv[2]);
    unsigned n = (unsigned)atoi(argv[5]);
    double rate = atof(argv[6]);
    bool resume = strcmp(argv[7], "resume") == 0;
    if (n == 0 || rate <= 0)
        return 2;
    char err[256];
    token_keyring_init(&g_keys);
    if (keyfile_load(argv[4], &g_keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "prog_joins: %s\n", err);
        return 1;
    }
    struct quic_client_config cc = {.pinned_cert = argv[3],
                                    .priority = argc == 9 && *argv[8] ? argv[8] : NULL,
                                    .handshake_timeout_ns = 60000000000ULL,
                                    .idle_timeout_ns = 120000000000ULL};
    struct quic_client *qc = NULL;
    if (quic_client_new(&qc, &cc, &ops, NULL) != 0) {
        fprintf(stderr, "prog_joins: client set-up failed\n");
        return 1;
    }
    struct slot *sl = calloc(n, sizeof(*sl));
    int rc = sl == NULL ? -1 : 0;
    printf("ready\n");
    fflush(stdout);
    wait_line();
    if (rc == 0)
        rc = round_run(qc, host, port, sl, n, rate, true, 0);
    if (rc == 0 && resume) {
        wait_line();
        rc = round_run(qc, host, port, sl, n, rate, false, 1);
    }
    free(sl);
    quic_client_del(qc);
    token_keyring_wipe(&g_keys);
    return rc == 0 ? 0 : 1;
}
