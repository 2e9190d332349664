/* TLS session tickets (docs/OPERATIONS.md "TLS: key exchange,
 * certificates, resumption"), the parts both ends of lib/quic use:
 *
 * - the server's ticket master keys: the current one and the previous one,
 *   kept in STATE_DIR/quic-tickets (0600, created if absent, refused when
 *   group or other may read it), rotated on a schedule and on SIGHUP;
 * - the selection of the master key a ticket was issued under, from the
 *   ClientHello's first PSK identity (gnutls takes one master key per
 *   session, and only derives time-based keys from it: accepting the
 *   previous master's tickets for one period is ours to do);
 * - the client's ticket store: the latest ticket per relay address, in
 *   memory.
 *
 * Pure helpers and file I/O; no threads. Thread safety: a tickets_keys is
 * immutable once built (published with RCU by shared.c); a ticket store
 * belongs to its client's thread. */
#ifndef ROOST_QUIC_TICKETS_H
#define ROOST_QUIC_TICKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quic/udp.h"

/* gnutls' session ticket master key size (TICKET_MASTER_KEY_SIZE). */
#define TICKETS_KEY_LEN 64
#define TICKETS_NAME_LEN 16
/* gnutls derives a new key every STEK_ROTATION_PERIOD_PRODUCT ticket
 * lifetimes (lib/gnutls_int.h in 3.7). */
#define TICKETS_GNUTLS_PERIOD_PRODUCT 3
/* gnutls_db_set_cache_expiration's upper bound. */
#define TICKETS_MAX_LIFETIME_S 604800u

struct tickets_keys {
    uint8_t cur[TICKETS_KEY_LEN];
    uint8_t prev[TICKETS_KEY_LEN];
    bool has_prev;
    uint64_t rotated_at; /* wall-clock seconds when cur was made */
};

/* Loads path (cur, prev, rotated_at), or creates it with a fresh current
 * key when absent. A file group or other may read, or of the wrong size, is
 * refused. Returns 0, ROOST_EACCES (mode), ROOST_EIO, ROOST_ECRYPTO. The
 * message says why (msg may be NULL). */
int tickets_load(const char *path, struct tickets_keys *out, uint64_t now_s, char *msg,
                 size_t msglen);
/* next = a fresh current key, the old current as previous, rotated at now_s;
 * written to path (when not NULL) through a temporary file and rename.
 * Returns 0, ROOST_EIO, ROOST_ECRYPTO. */
int tickets_rotate(const char *path, const struct tickets_keys *old, struct tickets_keys *next,
                   uint64_t now_s);
/* Writes k to path through a temporary file and rename (0600). Returns 0
 * or ROOST_EIO. */
int tickets_write(const char *path, const struct tickets_keys *k);
/* The key name gnutls 3.7 gives tickets made under master for wall-clock
 * second now_s and ticket lifetime lifetime_s, for its period `back`
 * periods ago (0 or 1): SHA3-512(be64(period) || master)[0..16). */
int tickets_key_name(const uint8_t master[TICKETS_KEY_LEN], uint64_t now_s, unsigned lifetime_s,
                     unsigned back, uint8_t name[TICKETS_NAME_LEN]);
/* Finds the first PSK identity of a TLS 1.3 ClientHello body (handshake
 * message without its 4-byte header). Returns true and the identity
 * (borrowed from ch) when there is one. */
bool tickets_ch_psk_identity(const uint8_t *ch, size_t len, const uint8_t **id, size_t *idlen);
/* True when the ticket identity was issued under master (current or the
 * previous gnutls period). */
bool tickets_issued_under(const uint8_t *id, size_t idlen, const uint8_t master[TICKETS_KEY_LEN],
                          uint64_t now_s, unsigned lifetime_s);

/* Client: the latest ticket (gnutls_session_get_data2 output) per address. */
#define TICKETS_STORE_MAX 64

struct tickets_entry {
    struct udp_addr addr;
    uint8_t *data; /* malloc'd */
    size_t len;
    uint64_t used; /* store clock of the last put/get, for eviction */
};

struct tickets_store {
    struct tickets_entry e[TICKETS_STORE_MAX];
    unsigned n;
    uint64_t clock;
};

/* Replaces addr's ticket (evicting the least recently used address when
 * full). Returns 0 or ROOST_ENOMEM. */
int tickets_store_put(struct tickets_store *st, const struct udp_addr *addr, const uint8_t *data,
                      size_t len);
/* addr's ticket (borrowed until the next put/del), or NULL. */
const struct tickets_entry *tickets_store_get(struct tickets_store *st,
                                              const struct udp_addr *addr);
void tickets_store_forget(struct tickets_store *st, const struct udp_addr *addr);
/* Frees every ticket. */
void tickets_store_clear(struct tickets_store *st);

#endif
