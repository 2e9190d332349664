/* Test support: a roost protocol participant on a roost_client endpoint
 * (HELLO -> WELCOME -> JOIN -> JOINED, presence and media logs), and an
 * in-process relay with a fresh token key for integration tests. */
#ifndef ROOST_TEST_PARTICIPANT_H
#define ROOST_TEST_PARTICIPANT_H

#include <stdbool.h>
#include <stdint.h>

#include "client/client.h"
#include "proto/token.h"
#include "relay/relay.h"

#define PART_LOG 4096

struct part_rx {
    uint32_t sender;
    uint32_t seq;
};

struct part {
    struct roost_conn *c;
    char room[65];
    char token[TOKEN_MAX_LEN + 1];
    char name[32];
    uint32_t pid; /* from WELCOME */
    bool opened, welcomed, answered, joined, closed;
    uint32_t reject_code;
    uint32_t joined_n;
    uint32_t joined_pids[256];
    uint32_t n_events;
    struct {
        uint8_t kind;
        uint32_t pid;
    } events[1024];
    uint32_t n_errors;
    uint32_t last_error;
    uint32_t n_media;
    struct part_rx media[PART_LOG];
    struct roost_close_info ci;
};

extern const struct roost_client_callbacks part_cbs;

/* Connects p (zeroed by the caller, room/token/name set) to the relay. It
 * sends HELLO when open and JOIN after WELCOME. */
int part_connect(struct roost_client *cl, uint16_t port, struct part *p);
/* Sends a media datagram with this sequence number (stream 0, audio). */
int part_send(struct part *p, uint32_t seq);
/* Sends LEAVE. */
int part_leave(struct part *p);
uint32_t part_events(const struct part *p, uint8_t kind, uint32_t pid);

/* Participants v[0..n) and the frames each should get: the conditions
 * below take one (for echo_client_until). */
struct part_set {
    struct part *v;
    unsigned n;
    uint32_t want;
};
/* Each was answered (WELCOME or an error) or its connection closed. */
bool part_all_answered(void *set);
/* Each one's connection closed. */
bool part_all_closed(void *set);
/* Each got at least want frames. */
bool part_all_media(void *set);

/* A test relay with its own token key. */
struct test_relay {
    struct relay *r;
    uint16_t port;
    struct token_keyring keys;
    char key_file[256];
};

/* Starts a relay on 127.0.0.1 (ephemeral port) with cfg's limits; cert,
 * key and token key file are filled in. */
int test_relay_start(struct test_relay *tr, struct relay_config *cfg);
void test_relay_stop(struct test_relay *tr);
/* test_relay_stop for caseguard (caseguard.h): tr is a struct test_relay. */
void test_relay_release(void *tr);
/* Mints a token for room/identity valid [now+nbf_off, now+exp_off). */
void test_token(const struct test_relay *tr, const char *room, const char *identity, unsigned perms,
                int64_t nbf_off, int64_t exp_off, char *out, size_t cap);
/* A client endpoint trusting the test CA. */
int test_client_new(struct roost_client **out);

#endif
