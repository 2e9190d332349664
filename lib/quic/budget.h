/* Receive budgets: packets/s and bytes/s per connection and per source
 * address, checked in the server's receive dispatch before a packet is
 * decrypted (docs/PROTOCOL.md §2, docs/OPERATIONS.md "Receive budgets").
 * ngtcp2 0.12 has no such limit of its own.
 *
 * A budget is two GCRA "theoretical arrival times" (one for packets, one
 * for bytes) that may run at most BUDGET_BURST_NS ahead of the clock: a
 * sender may burst one second's worth of its rate, then must keep to the
 * rate. A packet is taken only when both fit (nothing is charged for a
 * refused one).
 *
 * The per-address budgets live in a fixed-size, set-associative table per
 * worker (BUDGET_ADDR_SETS x BUDGET_ADDR_WAYS entries, keyed by SipHash of
 * the IP address under a per-table random key): memory is bounded whatever
 * the number of addresses; a miss evicts the entry of its set that owes the
 * least (an entry whose budget is full again loses nothing by eviction).
 *
 * Thread safety: none; a table and the connection budgets belong to one
 * worker. */
#ifndef ROOST_QUIC_BUDGET_H
#define ROOST_QUIC_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hash.h"

#define BUDGET_BURST_NS 1000000000ULL /* one second's worth of the rate */
#define BUDGET_ADDR_SETS 1024
#define BUDGET_ADDR_WAYS 4

/* Limits of one scope (connection or address). 0: unlimited. */
struct budget_lim {
    uint64_t pkt_ns;    /* ns per packet; 0: no packet limit */
    uint64_t byte_rate; /* bytes per second; 0: no byte limit */
};

/* The state of one budget; zeroed: full. */
struct budget {
    uint64_t tat_pkt, tat_byte; /* ns */
};

/* pkt_rate packets/s and byte_rate bytes/s (0: unlimited). */
void budget_lim_init(struct budget_lim *l, uint32_t pkt_rate, uint64_t byte_rate);
static inline bool budget_lim_on(const struct budget_lim *l)
{
    return l->pkt_ns != 0 || l->byte_rate != 0;
}
/* Takes one packet of len bytes at time now (ns). Returns true when it
 * fits both budgets (then both are charged). */
bool budget_take(struct budget *b, const struct budget_lim *l, uint64_t now, size_t len);

struct budget_addr_ent {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    bool used;
    struct budget b;
};

/* Recent entries, direct-mapped by the address's last bytes and a salt:
 * a packet from an address seen before finds its entry without SipHash
 * (checked against the entry's address, so a stale or colliding pointer
 * only falls back to the table). */
#define BUDGET_ADDR_RECENT 256

struct budget_addr_table {
    struct hash_key key;
    struct budget_lim lim;
    struct budget_addr_ent *e; /* BUDGET_ADDR_SETS * BUDGET_ADDR_WAYS */
    uint64_t evictions;
    uint32_t salt;
    struct budget_addr_ent *recent[BUDGET_ADDR_RECENT];
};

/* Returns 0, ROOST_ENOMEM or ROOST_ESYS (no random key). */
int budget_addr_init(struct budget_addr_table *t, const struct budget_lim *lim);
void budget_addr_fini(struct budget_addr_table *t);
/* Takes one packet of len bytes from the budget of addr (16 bytes, IPv6 or
 * IPv4-mapped) at now. Returns true when it fits. */
bool budget_addr_take(struct budget_addr_table *t, const uint8_t addr[16], uint64_t now,
                      size_t len);

#endif
