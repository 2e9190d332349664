/* Server connection IDs and the table that maps them to connections.
 *
 * A server CID is QUIC_CID_LEN bytes: byte 0 is the worker id that owns the
 * connection (DESIGN.md §2, routing by connection ID), the rest is random.
 * Stateless-reset tokens are derived from the CID with a static secret, so
 * a restarted relay still recognises its own CIDs' tokens.
 *
 * The table is an open-addressing map keyed by SipHash-2-4 (core/hash.h) with a per-table
 * random key: CIDs are attacker-chosen bytes, so the bucket index must not
 * be predictable.
 *
 * Thread safety: none; one table per worker, used by that worker only. */
#ifndef ROOST_QUIC_CID_H
#define ROOST_QUIC_CID_H

#include <stddef.h>
#include <stdint.h>

#define QUIC_CID_LEN 16

/* Fills cid[0..QUIC_CID_LEN) with the worker byte and random bytes.
 * Returns 0 or ROOST_ECRYPTO (random generator failure). Any thread. */
int cid_generate(uint8_t *cid, unsigned worker);
/* The worker named by a server CID of len bytes, or -1 when len is not
 * QUIC_CID_LEN. */
int cid_worker(const uint8_t *cid, size_t len);

struct cid_table;

/* Returns 0, ROOST_ENOMEM or ROOST_ESYS (no random key). */
int cid_table_new(struct cid_table **out);
void cid_table_del(struct cid_table *t);
/* Maps cid (1..20 bytes) to value (non-NULL). Returns 0, ROOST_EEXIST
 * (already mapped; unchanged), ROOST_EINVAL, ROOST_ENOMEM. */
int cid_table_put(struct cid_table *t, const uint8_t *cid, size_t len, void *value);
/* Returns the mapped value or NULL. */
void *cid_table_get(const struct cid_table *t, const uint8_t *cid, size_t len);
/* Removes a mapping if present (and only if it maps to value, when value is
 * non-NULL). Returns 0 or ROOST_ENOENT. */
int cid_table_remove(struct cid_table *t, const uint8_t *cid, size_t len, const void *value);
size_t cid_table_count(const struct cid_table *t);

#endif
