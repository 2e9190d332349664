/* Keyed hashing of attacker-chosen bytes: SipHash-2-4 (Aumasson, Bernstein,
 * "SipHash: a fast short-input PRF", 2012) with a 16-byte secret key.
 *
 * Room ids and connection ids come from clients; with an unkeyed hash a
 * client could pick ids that all land on one worker or one table bucket.
 * A secret per-process key (hash_key_random) makes the mapping
 * unpredictable from outside.
 *
 * Thread safety: every function is pure (or reads only its arguments); any
 * thread may call any of them concurrently. A key is immutable once made. */
#ifndef ROOST_CORE_HASH_H
#define ROOST_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_KEY_LEN 16

struct hash_key {
    uint8_t bytes[HASH_KEY_LEN];
};

/* Fills `key` from the system CSPRNG (getrandom(2)).
 * Returns 0, ROOST_EINVAL (key NULL) or ROOST_ESYS (errno says why). */
int hash_key_random(struct hash_key *key);

/* SipHash-2-4 of `len` bytes at `data` (may be NULL when len is 0) under
 * `key`, as the paper defines it: the 64-bit result is the value whose
 * little-endian bytes are the reference implementation's output. */
uint64_t hash_siphash24(const struct hash_key *key, const void *data, size_t len);

/* The worker that owns a room: siphash(room id) mod n_workers.
 * Returns a value in [0, n_workers); 0 when n_workers is 0. */
unsigned hash_owner(const struct hash_key *key, const void *room_id, size_t len,
                    unsigned n_workers);

#endif
