/* Directory keys and values in Redis (docs/CLUSTER.md 1.2): key names, id
 * checks, the room value `<relay id>:<generation>` and the relay record.
 * Pure functions: no Redis, no clock.
 *
 * Thread safety: every function reads only its arguments; any thread. */
#ifndef ROOST_CLUSTER_DIRKEY_H
#define ROOST_CLUSTER_DIRKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIR_ID_MAX 32     /* relay id bytes: [A-Za-z0-9._-]{1,32} */
#define DIR_ROOM_MAX 64   /* = ROOM_ID_MAX of the protocol */
#define DIR_PREFIX_MAX 32 /* key prefix bytes, same alphabet as ids */
#define DIR_ADDR_MAX 63   /* trunk address "host:port" */
/* Longest key: prefix ":room:" room, or prefix ":relay:" id. */
#define DIR_KEY_MAX (DIR_PREFIX_MAX + 7 + DIR_ROOM_MAX)
/* Longest room value: id ':' 20 digits. */
#define DIR_VALUE_MAX (DIR_ID_MAX + 1 + 20)

/* The load a relay publishes (what /capacity reports). */
struct dir_load {
    uint32_t participants;
    uint32_t max_participants; /* 0: unknown (treated as full) */
    uint32_t rooms;
    uint32_t cpu_permille; /* busiest worker's busy share x 1000 */
    bool accepting;        /* can_accept_more */
};

/* A registered relay as read back from Redis. */
struct dir_relay {
    char id[DIR_ID_MAX + 1];
    char addr[DIR_ADDR_MAX + 1];
    struct dir_load load;
    int64_t ttl_ms; /* remaining TTL of its registration; -1 unknown */
};

/* A relay id or key prefix: 1..DIR_ID_MAX (DIR_PREFIX_MAX) bytes of
 * [A-Za-z0-9._-]. */
bool dirkey_valid_id(const char *id);
bool dirkey_valid_prefix(const char *prefix);
/* A room id: 1..DIR_ROOM_MAX bytes, no NUL (contents otherwise free). */
bool dirkey_valid_room(const char *room, size_t len);
/* A trunk address: 1..DIR_ADDR_MAX printable bytes without spaces. */
bool dirkey_valid_addr(const char *addr);

/* Key builders: write the NUL-terminated key into out (cap bytes, at least
 * DIR_KEY_MAX + 1) and return its length, or ROOST_EINVAL (bad argument)
 * or ROOST_ENOSPC (cap too small). Room keys are binary-safe: the room is
 * copied as `len` bytes. */
int dirkey_relay(char *out, size_t cap, const char *prefix, const char *id);
int dirkey_relays(char *out, size_t cap, const char *prefix);
int dirkey_room(char *out, size_t cap, const char *prefix, const char *room, size_t len);
int dirkey_gen(char *out, size_t cap, const char *prefix, const char *room, size_t len);
/* The prefix of relay hashes, "<prefix>:relay:" (scripts append an id). */
int dirkey_relay_prefix(char *out, size_t cap, const char *prefix);

/* Room value "<id>:<gen>" into out (cap >= DIR_VALUE_MAX + 1). Returns its
 * length, ROOST_EINVAL (bad id, gen 0) or ROOST_ENOSPC. */
int dirkey_value_format(char *out, size_t cap, const char *id, uint64_t gen);
/* Parses a room value of `len` bytes, splitting at the last ':'. id gets
 * DIR_ID_MAX + 1 bytes. Returns 0 or ROOST_EMALFORMED (no ':', bad id,
 * generation not a decimal in 1..2^64-1). */
int dirkey_value_parse(const char *v, size_t len, char *id, uint64_t *gen);

/* Decimal unsigned parse of exactly `len` bytes (no sign, no spaces).
 * Returns 0, ROOST_EMALFORMED or ROOST_ERANGE. */
int dirkey_parse_u64(const char *s, size_t len, uint64_t *out);

#endif
