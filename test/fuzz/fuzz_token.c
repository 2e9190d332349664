/* libFuzzer target for join tokens (lib/proto/token).
 *
 * Each input is used twice:
 *  1. as token text, verified against a fixed keyring ("k1": bytes 0..31,
 *     "k2": bytes 100..131) for room "room-1" at several clocks;
 *  2. as a raw payload, signed with k1 by token_encode and verified, which
 *     takes the fuzzer past the tag into the payload parser.
 * Whenever verify authenticates a token (success, or wrong room / time
 * errors, which report claims), minting the same claims with the same key must
 * give back exactly the same text: one accepted encoding per token. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/token.h"

#define ROOM "room-1"
#define NOW 1700000000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void make_ring(struct token_keyring *r)
{
    uint8_t s[TOKEN_KEY_LEN];
    token_keyring_init(r);
    for (int i = 0; i < TOKEN_KEY_LEN; i++)
        s[i] = (uint8_t)i;
    if (token_keyring_add(r, "k1", 2, s) != 0)
        abort();
    for (int i = 0; i < TOKEN_KEY_LEN; i++)
        s[i] = (uint8_t)(100 + i);
    if (token_keyring_add(r, "k2", 2, s) != 0)
        abort();
}

static int authenticated(int rc)
{
    return rc == 0 || rc == ROOST_EWRONGROOM || rc == ROOST_EEXPIRED || rc == ROOST_ENOTYET;
}

static void check_claims(const struct token_keyring *r, const struct token_claims *c,
                         const char *tok, size_t len)
{
    if (c->room_len == 0 || c->room_len > TOKEN_ROOM_MAX || c->identity_len == 0 ||
        c->identity_len > TOKEN_IDENTITY_MAX || c->exp <= c->nbf ||
        (c->perms & ~TOKEN_PERM_ALL) != 0 || c->room[c->room_len] != '\0' ||
        c->identity[c->identity_len] != '\0')
        abort();
    const struct token_key *k = token_keyring_find(r, c->key_id, strlen(c->key_id));
    if (k == NULL)
        abort();
    char again[TOKEN_MAX_LEN + 1];
    int n = token_mint(k, c, again, sizeof(again));
    if (n < 0 || (size_t)n != len || memcmp(again, tok, len) != 0)
        abort();
}

static void verify_one(const struct token_keyring *r, const char *tok, size_t len)
{
    static const uint64_t clocks[] = {NOW, 0, UINT64_MAX};
    for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
        struct token_claims c;
        int rc =
            token_verify(tok, len, r, ROOM, sizeof(ROOM) - 1, clocks[i], TOKEN_DEFAULT_SKEW_S, &c);
        if (rc > 0)
            abort();
        if (authenticated(rc))
            check_claims(r, &c, tok, len);
        else if (c.room_len != 0 || c.key_id[0] != '\0')
            abort(); /* claims must be zeroed on every other error */
        if (rc != 0 && !authenticated(rc))
            break; /* the clock does not matter for this input */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct token_keyring r;
    make_ring(&r);

    /* Exact-size copy so ASan sees any read past the given length. */
    char *tok = malloc(size ? size : 1);
    if (tok == NULL)
        return 0;
    memcpy(tok, data, size);
    verify_one(&r, tok, size);
    free(tok);

    if (size <= TOKEN_PAYLOAD_MAX) {
        char signed_tok[TOKEN_MAX_LEN + 1];
        int n = token_encode(token_keyring_signer(&r), data, size, signed_tok, sizeof(signed_tok));
        if (n < 0)
            abort();
        verify_one(&r, signed_tok, (size_t)n);
    }
    return 0;
}
