/* Join tokens: mint and verify `v1.<key id>.<base64url payload>.<base64url tag>`.
 *
 * Pure: no I/O, no globals, no clock. Time is passed in as `now_s` (Unix
 * seconds); randomness (the token id) is passed in by the caller at mint time.
 * The tag is HMAC-SHA256 (gnutls) over TOKEN_LABEL, one zero byte and the token
 * text before the last '.'; docs/TOKENS.md has the exact byte layout.
 *
 * All functions are reentrant and may be called from any thread; a keyring is
 * read-only after it is filled, so several threads may verify against one. */
#ifndef ROOST_PROTO_TOKEN_H
#define ROOST_PROTO_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_LABEL "roost-join-token-v1" /* domain separation for the tag */
#define TOKEN_MAX_LEN 512                 /* whole token text, checked first */
#define TOKEN_KEY_ID_MAX 16               /* key id: [A-Za-z0-9_-]{1,16} */
#define TOKEN_KEY_LEN 32                  /* HMAC-SHA256 secret */
#define TOKEN_TAG_LEN 32
#define TOKEN_ROOM_MAX 64     /* bytes of UTF-8 */
#define TOKEN_IDENTITY_MAX 64 /* bytes of UTF-8 */
#define TOKEN_ID_LEN 16       /* 128-bit random token id */
#define TOKEN_PAYLOAD_VERSION 1
/* version, perms, nbf, exp, id, room_len, room, identity_len, identity */
#define TOKEN_PAYLOAD_MIN (1 + 1 + 8 + 8 + TOKEN_ID_LEN + 1 + 1 + 1 + 1)
#define TOKEN_PAYLOAD_MAX                                                                          \
    (1 + 1 + 8 + 8 + TOKEN_ID_LEN + 1 + TOKEN_ROOM_MAX + 1 + TOKEN_IDENTITY_MAX)
#define TOKEN_KEYRING_MAX 16
#define TOKEN_DEFAULT_SKEW_S 30 /* clock-skew allowance a relay should use */

/* Permission bits of a token. The relay refuses JOIN without TOKEN_PERM_JOIN. */
enum token_perm {
    TOKEN_PERM_JOIN = 1u << 0,
    TOKEN_PERM_PUBLISH = 1u << 1,
    TOKEN_PERM_SUBSCRIBE = 1u << 2,
};
#define TOKEN_PERM_ALL (TOKEN_PERM_JOIN | TOKEN_PERM_PUBLISH | TOKEN_PERM_SUBSCRIBE)

/* The room permissions (PERM_* of proto/perm.h) a token's bits grant: the
 * one place token bits are translated. TOKEN_PERM_JOIN has no room bit; the
 * relay checks it before joining. Pure. */
unsigned token_room_perms(unsigned token_perms);

struct token_key {
    char id[TOKEN_KEY_ID_MAX + 1]; /* NUL-terminated */
    uint8_t id_len;
    uint8_t secret[TOKEN_KEY_LEN];
};

/* A fixed-capacity set of keys in caller storage. keys[0] signs new tokens;
 * every key verifies. Holds secrets: wipe it with token_keyring_wipe. */
struct token_keyring {
    struct token_key keys[TOKEN_KEYRING_MAX];
    unsigned n;
};

/* The claims of a token; self-contained copies (no borrowed pointers). */
struct token_claims {
    char room[TOKEN_ROOM_MAX + 1]; /* NUL-terminated; room_len bytes */
    uint8_t room_len;
    char identity[TOKEN_IDENTITY_MAX + 1]; /* NUL-terminated */
    uint8_t identity_len;
    uint8_t perms;                     /* enum token_perm bits */
    uint64_t nbf;                      /* not before, Unix seconds */
    uint64_t exp;                      /* expiry, Unix seconds; exp > nbf */
    uint8_t id[TOKEN_ID_LEN];          /* random, chosen at mint time */
    char key_id[TOKEN_KEY_ID_MAX + 1]; /* verify: the key that signed it */
};

/* Checks a key id against [A-Za-z0-9_-]{1,16}.
 * Returns 0, ROOST_ETOOBIG (longer than 16) or ROOST_EMALFORMED. */
int token_key_id_check(const char *id, size_t len);

/* Empties a keyring. */
void token_keyring_init(struct token_keyring *ring);
/* Copies a key into the ring (the first one added signs).
 * Returns 0, ROOST_EINVAL (bad id), ROOST_EEXIST (id already present) or
 * ROOST_EFULL (TOKEN_KEYRING_MAX keys). */
int token_keyring_add(struct token_keyring *ring, const char *id, size_t id_len,
                      const uint8_t secret[TOKEN_KEY_LEN]);
/* Returns the key with this id (borrowed from ring) or NULL. */
const struct token_key *token_keyring_find(const struct token_keyring *ring, const char *id,
                                           size_t id_len);
/* Returns the signing key (keys[0], borrowed) or NULL when the ring is empty. */
const struct token_key *token_keyring_signer(const struct token_keyring *ring);
/* Overwrites every secret and empties the ring (not optimised away). */
void token_keyring_wipe(struct token_keyring *ring);

/* Unpadded base64url encoding of n bytes into out, which must hold
 * token_b64url_len(n) + 1 bytes (NUL-terminated). Returns the length. */
size_t token_b64url_encode(const uint8_t *in, size_t n, char *out);
#define TOKEN_B64URL_LEN(n) ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
static inline size_t token_b64url_len(size_t n)
{
    return TOKEN_B64URL_LEN(n);
}
/* Strict unpadded base64url decoding: rejects '=', any byte outside
 * [A-Za-z0-9_-], a length of 1 mod 4 and non-zero unused trailing bits, so each
 * byte string has exactly one accepted encoding.
 * Returns 0 with *out_len set, ROOST_EMALFORMED or ROOST_ENOSPC (out too small). */
int token_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Fills claims for minting after checking them: room and identity 1..64
 * bytes of valid UTF-8 without control characters, perms only known bits,
 * exp > nbf. key_id is cleared (the key chosen at mint time names itself).
 * Returns 0 or ROOST_EINVAL. */
int token_claims_set(struct token_claims *c, const char *room, size_t room_len,
                     const char *identity, size_t identity_len, unsigned perms, uint64_t nbf,
                     uint64_t exp, const uint8_t id[TOKEN_ID_LEN]);

/* Mints a token for claims `c` (checked as token_claims_set does), signed with
 * `key` (borrowed), into out (cap bytes, NUL-terminated).
 * Returns the token length, ROOST_EINVAL (bad claims or key id), ROOST_ENOSPC
 * or ROOST_ECRYPTO. */
int token_mint(const struct token_key *key, const struct token_claims *c, char *out, size_t cap);

/* Lower level, for tests, fuzzing and tools: signs an arbitrary payload of up
 * to TOKEN_PAYLOAD_MAX bytes without looking at it.
 * Returns the token length, ROOST_EINVAL, ROOST_ETOOBIG, ROOST_ENOSPC or
 * ROOST_ECRYPTO. */
int token_encode(const struct token_key *key, const uint8_t *payload, size_t payload_len, char *out,
                 size_t cap);

/* Verifies tok (len bytes, need not be NUL-terminated) for `room` at now_s,
 * accepting clocks off by up to skew_s seconds in either direction:
 * valid while nbf <= now_s + skew_s and now_s < exp + skew_s.
 * Order: length cap, syntax, key id lookup, tag (constant time), payload,
 * room, time. `out` is filled once the tag has been verified, so on
 * ROOST_EWRONGROOM / ROOST_ENOTYET / ROOST_EEXPIRED it holds the
 * authenticated claims; on every other error it is zeroed.
 * Returns 0 or:
 *   ROOST_ETOOBIG     longer than TOKEN_MAX_LEN, or a field over its cap
 *   ROOST_ETRUNC      fewer than four parts, a short tag or payload
 *   ROOST_EMALFORMED  bad syntax, base64url or payload layout
 *   ROOST_EUNKNOWN    unknown token or payload version
 *   ROOST_EBADKEY     key id not in the ring
 *   ROOST_EBADTAG     tag does not match
 *   ROOST_EWRONGROOM, ROOST_ENOTYET, ROOST_EEXPIRED */
int token_verify(const char *tok, size_t len, const struct token_keyring *keys, const char *room,
                 size_t room_len, uint64_t now_s, uint32_t skew_s, struct token_claims *out);

#endif
