/* Trunk messages between relays (docs/CLUSTER.md §2, docs/PROTOCOL.md §12):
 * a pure, bounded codec, no I/O, no allocation. Control messages travel on
 * the trunk's control stream with the client protocol's framing (varint
 * length + body, lib/proto/frame.h); this module encodes and decodes the
 * body. Media travels as QUIC DATAGRAMs: a fixed TRUNKMSG_DGRAM_HDR_LEN
 * header (room handle, lease generation) and then the relay -> client
 * media datagram as the publisher's relay wrote it (sender pid first).
 *
 * Integers are big-endian, fixed width; strings are a u8 length and bytes.
 * Bytes after the last field of a known type are ignored (forward
 * compatibility, as in the client protocol).
 *
 * Thread safety: none needed (pure functions). */
#ifndef ROOST_CLUSTER_TRUNKMSG_H
#define ROOST_CLUSTER_TRUNKMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRUNK_ALPN "roost-trunk/1"
#define TRUNKMSG_VERSION 1
#define TRUNKMSG_ID_MAX 32    /* relay id, as lib/cluster/dirkey */
#define TRUNKMSG_ROOM_MAX 64  /* = ROOM_ID_MAX */
#define TRUNKMSG_NAME_MAX 64  /* = DISPLAY_NAME_MAX */
#define TRUNKMSG_MAC_LEN 32   /* HMAC-SHA256 */
#define TRUNKMSG_BODY_MAX 256 /* every control body fits */
#define TRUNKMSG_DGRAM_HDR_LEN 13

enum trunkmsg_type {
    TRUNKMSG_HELLO = 1,           /* both ways, first message: relay id, mac */
    TRUNKMSG_SUBSCRIBE = 2,       /* subscriber -> home: room, handle, generation */
    TRUNKMSG_UNSUBSCRIBE = 3,     /* subscriber -> home */
    TRUNKMSG_SUB_ACK = 4,         /* home -> subscriber: code 0 or TRUNK_ERR_* */
    TRUNKMSG_PRESENCE = 5,        /* both ways: a member joined or left */
    TRUNKMSG_KFREQ = 6,           /* both ways, toward the publisher */
    TRUNKMSG_QUALITY = 7,         /* both ways: one receiver's link, toward the publishers */
    TRUNKMSG_PING = 8,            /* both ways, no fields: keeps an idle trunk open */
    TRUNKMSG_DGRAM = 0x40,        /* first byte of a media DATAGRAM (not a control body) */
    TRUNKMSG_DGRAM_REPLAY = 0x41, /* the same, a keyframe cache replay (not live) */
};

/* SUB_ACK codes and the trunk's QUIC application close codes. */
enum trunk_err {
    TRUNK_OK = 0,
    TRUNK_ERR_NOT_HOME = 1,      /* this relay is not the room's home (any more) */
    TRUNK_ERR_STALE_GEN = 2,     /* the generation is older than the one held */
    TRUNK_ERR_FULL = 3,          /* room or relay limit */
    TRUNK_ERR_AUTH = 0x1100,     /* close code: HELLO missing or its MAC wrong */
    TRUNK_ERR_PROTOCOL = 0x1101, /* close code: undecodable or unexpected message */
    TRUNK_ERR_PREFIX = 0x1102    /* close code: the peer has this relay's pid_prefix */
};

#define TRUNK_PRESENCE_JOIN 1
#define TRUNK_PRESENCE_LEAVE 2

struct trunkmsg {
    uint8_t type; /* enum trunkmsg_type */
    /* HELLO */
    uint8_t version;
    uint8_t id_len;
    char id[TRUNKMSG_ID_MAX];
    uint8_t mac[TRUNKMSG_MAC_LEN];
    uint8_t prefix; /* the sender's participant id prefix, 1..255 (PROTOCOL.md §4) */
    /* room-scoped: every type but HELLO */
    uint32_t handle; /* per trunk, chosen by the subscriber, != 0 */
    uint64_t gen;    /* lease generation of the room's home */
    /* SUBSCRIBE */
    uint8_t room_len;
    uint8_t room[TRUNKMSG_ROOM_MAX];
    /* SUB_ACK */
    uint32_t code;
    /* PRESENCE, KFREQ, QUALITY */
    uint8_t kind;    /* PRESENCE: TRUNK_PRESENCE_* */
    uint32_t pid;    /* the member (PRESENCE), the publisher (KFREQ), the receiver (QUALITY) */
    uint8_t flags;   /* PRESENCE join: PERM_* of the member */
    uint32_t from;   /* KFREQ: the requester */
    uint8_t stream;  /* KFREQ */
    uint16_t loss;   /* QUALITY: permille, 0..1000 */
    uint32_t rtt_us; /* QUALITY */
    uint8_t name_len;
    uint8_t name[TRUNKMSG_NAME_MAX]; /* PRESENCE join: display name */
};

/* Encodes m's body into out[0..cap). Returns its length, ROOST_ENOSPC, or
 * ROOST_EINVAL (unknown type, a length over its limit, handle 0 or pid 0
 * where required, a bad presence kind). */
int trunkmsg_encode(const struct trunkmsg *m, uint8_t *out, size_t cap);
/* Decodes a body. Returns 0, ROOST_ETRUNC, ROOST_EUNKNOWN (type), or
 * ROOST_EMALFORMED (a value the encoder refuses, or a length over its
 * limit). Never reads past len. */
int trunkmsg_decode(const uint8_t *body, size_t len, struct trunkmsg *m);

/* Media: writes the datagram header (TRUNKMSG_DGRAM_HDR_LEN bytes); replay:
 * the frame comes from a keyframe cache, not live (TRUNKMSG_DGRAM_REPLAY). */
void trunkmsg_dgram_hdr(uint8_t *out, uint32_t handle, uint64_t gen, bool replay);
/* Reads it: returns TRUNKMSG_DGRAM_HDR_LEN, ROOST_ETRUNC, or
 * ROOST_EMALFORMED (wrong first byte, handle 0). The relay media datagram
 * follows at that offset. */
int trunkmsg_dgram_parse(const uint8_t *d, size_t len, uint32_t *handle, uint64_t *gen,
                         bool *replay);

/* The MAC of a HELLO: HMAC-SHA256(secret, "roost-trunk/1 " role || id_len
 * || id || prefix || peer_len || peer || exporter), role "c" (dialer) or
 * "s", prefix the sender's pid_prefix. The exporter is 32 bytes of TLS
 * exporter output (label "EXPORTER-roost-trunk") that binds the MAC to this
 * TLS session. Returns 0 or ROOST_ECRYPTO. */
int trunkmsg_mac(const uint8_t *secret, size_t secret_len, char role, const char *id, size_t id_len,
                 uint8_t prefix, const char *peer, size_t peer_len, const uint8_t exporter[32],
                 uint8_t out[TRUNKMSG_MAC_LEN]);

const char *trunkmsg_type_name(uint8_t type);

#endif
