#include "participant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "caseguard.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "echo_app.h"
#include "proto/media.h"
#include "proto/msg.h"

static void send_msg(struct part *p, const struct msg *m)
{
    uint8_t body[FRAME_MAX_BODY];
    int n = msg_encode_body(m, body, sizeof(body));
    if (n > 0)
        roost_conn_send_control(p->c, body, (size_t)n);
}

static void p_open(struct roost_conn *c, void *arg)
{
    (void)arg;
    struct part *p = roost_conn_user(c);
    p->opened = true;
    struct msg m = {.type = MSG_HELLO};
    m.u.hello.min_version = 1;
    m.u.hello.max_version = 1;
    m.u.hello.client_name.ptr = (const uint8_t *)"roost-test";
    m.u.hello.client_name.len = 10;
    send_msg(p, &m);
}

static void p_control(struct roost_conn *c, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    struct part *p = roost_conn_user(c);
    struct msg *m = malloc(sizeof(*m));
    if (m == NULL || msg_decode(body, len, m) != 0) {
        free(m);
        return;
    }
    switch (m->type) {
    case MSG_WELCOME: {
        p->welcomed = true;
        p->pid = m->u.welcome.participant_id;
        struct msg j = {.type = MSG_JOIN};
        j.u.join.room_id.ptr = (const uint8_t *)p->room;
        j.u.join.room_id.len = strlen(p->room);
        j.u.join.token.ptr = (const uint8_t *)p->token;
        j.u.join.token.len = strlen(p->token);
        j.u.join.display_name.ptr = (const uint8_t *)p->name;
        j.u.join.display_name.len = strlen(p->name);
        send_msg(p, &j);
        break;
    }
    case MSG_JOINED:
        p->answered = p->joined = true;
        p->joined_n = m->u.joined.n_members;
        for (uint32_t i = 0; i < p->joined_n && i < 256; i++)
            p->joined_pids[i] = m->u.joined.members[i].participant_id;
        break;
    case MSG_JOIN_REJECTED:
        p->answered = true;
        p->reject_code = m->u.join_rejected.code;
        break;
    case MSG_PARTICIPANT_EVENTS:
        for (uint32_t i = 0; i < m->u.events.n_events && p->n_events < 1024; i++) {
            p->events[p->n_events].kind = m->u.events.events[i].kind;
            p->events[p->n_events].pid = m->u.events.events[i].participant_id;
            p->n_events++;
        }
        break;
    case MSG_ERROR:
        p->n_errors++;
        p->last_error = m->u.error.code;
        break;
    default:
        break;
    }
    free(m);
}

static void p_datagram(struct roost_conn *c, const uint8_t *data, size_t len, void *arg)
{
    (void)arg;
    struct part *p = roost_conn_user(c);
    struct media_hdr h;
    if (media_r2c_decode(data, len, &h) < 0)
        return;
    if (p->n_media < PART_LOG)
        p->media[p->n_media++] = (struct part_rx){.sender = h.participant_id, .seq = h.seq};
}

static void p_close(struct roost_conn *c, const struct roost_close_info *info, void *arg)
{
    (void)arg;
    struct part *p = roost_conn_user(c);
    p->closed = true;
    p->ci = *info;
}

const struct roost_client_callbacks part_cbs = {
    .on_open = p_open,
    .on_control = p_control,
    .on_datagram = p_datagram,
    .on_close = p_close,
};

int part_connect(struct roost_client *cl, uint16_t port, struct part *p)
{
    return roost_client_connect(cl, "127.0.0.1", port, p, &p->c);
}

int part_send(struct part *p, uint32_t seq)
{
    uint8_t d[MEDIA_C2R_HDR_LEN + 20];
    struct media_hdr h = {.stream_id = 0, .seq = seq, .timestamp = seq * 960};
    media_c2r_encode(&h, d, sizeof(d));
    memset(d + MEDIA_C2R_HDR_LEN, 0x5a, sizeof(d) - MEDIA_C2R_HDR_LEN);
    return roost_conn_send_datagram(p->c, d, sizeof(d));
}

int part_leave(struct part *p)
{
    struct msg m = {.type = MSG_LEAVE};
    uint8_t body[16];
    int n = msg_encode_body(&m, body, sizeof(body));
    return n > 0 ? roost_conn_send_control(p->c, body, (size_t)n) : n;
}

uint32_t part_events(const struct part *p, uint8_t kind, uint32_t pid)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_events; i++)
        if (p->events[i].kind == kind && p->events[i].pid == pid)
            n++;
    return n;
}

int test_relay_start(struct test_relay *tr, struct relay_config *cfg)
{
    static char cert[600], key[600];
    const char *d = echo_cert_dir(false);
    snprintf(cert, sizeof(cert), "%s/server.pem", d);
    snprintf(key, sizeof(key), "%s/server.key", d);
    snprintf(tr->key_file, sizeof(tr->key_file), "%s/tokenkeys-%d-%ld", d, (int)getpid(),
             (long)time(NULL));
    unlink(tr->key_file);
    char err[256];
    int rc = keyfile_generate(tr->key_file, "test", &tr->keys, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "keyfile_generate: %s\n", err);
        return rc;
    }
    cfg->cert_file = cert;
    cfg->key_file = key;
    cfg->token_key_file = tr->key_file;
    cfg->addr = "127.0.0.1";
    cfg->port = 0;
    cfg->no_pin = true;
    rc = relay_new(&tr->r, cfg);
    if (rc != 0)
        return rc;
    rc = relay_start(tr->r);
    if (rc != 0) {
        relay_del(tr->r);
        return rc;
    }
    tr->port = relay_port(tr->r);
    caseguard_hold(tr->r, test_relay_release, tr, sizeof(*tr));
    return 0;
}

void test_relay_release(void *tr)
{
    test_relay_stop(tr);
}

void test_relay_stop(struct test_relay *tr)
{
    caseguard_drop(tr->r);
    relay_del(tr->r);
    tr->r = NULL;
    unlink(tr->key_file);
}

void test_token(const struct test_relay *tr, const char *room, const char *identity, unsigned perms,
                int64_t nbf_off, int64_t exp_off, char *out, size_t cap)
{
    struct token_claims c;
    uint8_t id[TOKEN_ID_LEN] = {1, 2, 3};
    uint64_t now = (uint64_t)time(NULL);
    if (token_claims_set(&c, room, strlen(room), identity, strlen(identity), perms,
                         (uint64_t)((int64_t)now + nbf_off), (uint64_t)((int64_t)now + exp_off),
                         id) != 0 ||
        token_mint(token_keyring_signer(&tr->keys), &c, out, cap) < 0) {
        fprintf(stderr, "test_token: cannot mint\n");
        abort();
    }
}

int test_client_new(struct roost_client **out)
{
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.pem", echo_cert_dir(false));
    struct roost_client_config cc = {.ca_file = ca};
    return roost_client_new(out, &cc, &part_cbs, NULL);
}

bool part_all_answered(void *set)
{
    const struct part_set *s = set;
    for (unsigned i = 0; i < s->n; i++)
        if (!s->v[i].answered && !s->v[i].closed)
            return false;
    return true;
}

bool part_all_closed(void *set)
{
    const struct part_set *s = set;
    for (unsigned i = 0; i < s->n; i++)
        if (!s->v[i].closed)
            return false;
    return true;
}

bool part_all_media(void *set)
{
    const struct part_set *s = set;
    for (unsigned i = 0; i < s->n; i++)
        if (s->v[i].n_media < s->want)
            return false;
    return true;
}
