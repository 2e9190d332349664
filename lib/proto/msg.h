/* Control messages of the roost protocol (docs/PROTOCOL.md §4): one tagged
 * struct, an encoder that writes a whole frame (length prefix + body) into a
 * caller buffer, and a decoder that reads a body (or a whole frame) without
 * allocating.
 *
 * Decoded strings are views into the input buffer (not NUL-terminated):
 * they stay valid while that buffer does. Member and event lists are
 * bounded arrays inside struct msg (at most JOINED_MAX_MEMBERS /
 * EVENTS_MAX entries), so a decode never allocates; sizeof(struct msg) is
 * about 5 KiB.
 *
 * Encoders validate what they write with the decoder's rules, so whatever
 * msg_encode accepts, msg_decode accepts and returns equal.
 *
 * Pure functions: no I/O, no global state, callable from any thread. */
#ifndef ROOST_PROTO_MSG_H
#define ROOST_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/frame.h"

#define PROTO_VERSION 1 /* the version docs/PROTOCOL.md defines */

/* Limits, in bytes unless said otherwise (docs/PROTOCOL.md §9). */
#define ROOM_ID_MAX 64 /* and at least 1 */
#define DISPLAY_NAME_MAX 64
#define CLIENT_NAME_MAX 64
#define SERVER_NAME_MAX 64
#define JOIN_TOKEN_MAX 1024     /* printable ASCII 0x20..0x7e */
#define TEXT_MAX 256            /* reasons, error texts, reconnect hint */
#define JOINED_MAX_MEMBERS 200  /* entries in JOINED.members */
#define EVENTS_MAX 200          /* entries in PARTICIPANT_EVENTS.events */
#define WELCOME_MIN_DATAGRAM 12 /* WELCOME.max_datagram >= the client->relay header */
#define QUALITY_LOSS_MAX 1000   /* loss_permille */

enum msg_type {
    MSG_HELLO = 0x01,
    MSG_WELCOME = 0x02,
    MSG_JOIN = 0x03,
    MSG_JOINED = 0x04,
    MSG_JOIN_REJECTED = 0x05,
    MSG_LEAVE = 0x06,
    MSG_PARTICIPANT_EVENTS = 0x07,
    MSG_KEYFRAME_REQUEST = 0x08,
    MSG_QUALITY = 0x09,
    MSG_ERROR = 0x0a,
    MSG_GOAWAY = 0x0b,
};
#define MSG_TYPE_LAST MSG_GOAWAY

/* Bits of msg_direction(). */
#define MSG_DIR_C2R 0x1 /* client -> relay */
#define MSG_DIR_R2C 0x2 /* relay -> client */

/* Flag bits. Unknown bits are kept by the decoder and must be ignored by
 * the caller; encoders write what they are given. */
#define MSG_PERM_PUBLISH 0x01     /* JOINED.permissions */
#define MSG_PERM_SUBSCRIBE 0x02   /* JOINED.permissions */
#define MSG_JOINED_MORE 0x01      /* JOINED.flags: rest in PARTICIPANT_EVENTS */
#define MSG_MEMBER_PUBLISHER 0x01 /* member / event flags */
#define MSG_EVENTS_SYNC_DONE 0x01 /* PARTICIPANT_EVENTS.flags */

enum msg_event_kind {
    MSG_EV_JOIN = 1,
    MSG_EV_LEAVE = 2,
};

/* A byte string inside a buffer someone else owns; ptr may be NULL when
 * len is 0. */
struct msg_str {
    const uint8_t *ptr;
    size_t len;
};

struct msg_hello {
    uint16_t min_version; /* >= 1 */
    uint16_t max_version; /* >= min_version */
    struct msg_str client_name;
};

struct msg_welcome {
    uint16_t version;        /* >= 1 */
    uint32_t participant_id; /* != 0 */
    uint32_t idle_timeout_ms;
    uint16_t max_datagram; /* >= WELCOME_MIN_DATAGRAM */
    uint8_t max_stream_id;
    uint32_t max_members; /* >= 1 */
    struct msg_str server_name;
};

struct msg_join {
    struct msg_str room_id; /* 1..ROOM_ID_MAX, UTF-8 */
    struct msg_str token;   /* 0..JOIN_TOKEN_MAX, printable ASCII */
    struct msg_str display_name;
};

struct msg_member {
    uint32_t participant_id; /* != 0 */
    uint8_t flags;           /* MSG_MEMBER_* */
    struct msg_str display_name;
};

struct msg_joined {
    struct msg_str room_id;
    uint8_t permissions;   /* MSG_PERM_* */
    uint8_t flags;         /* MSG_JOINED_* */
    uint32_t member_total; /* >= n_members */
    uint32_t n_members;    /* <= JOINED_MAX_MEMBERS */
    struct msg_member members[JOINED_MAX_MEMBERS];
};

struct msg_join_rejected {
    uint32_t code; /* enum proto_errcode */
    uint32_t retry_after_ms;
    struct msg_str reason; /* 0..TEXT_MAX, UTF-8 */
};

struct msg_event {
    uint8_t kind;                /* enum msg_event_kind */
    uint32_t participant_id;     /* != 0 */
    uint8_t flags;               /* JOIN only (0 after decoding a LEAVE) */
    struct msg_str display_name; /* JOIN only (empty after decoding a LEAVE) */
};

struct msg_events {
    uint8_t flags;     /* MSG_EVENTS_* */
    uint32_t n_events; /* <= EVENTS_MAX */
    struct msg_event events[EVENTS_MAX];
};

struct msg_keyframe_request {
    uint32_t participant_id; /* != 0 */
    uint8_t stream_id;
};

struct msg_quality {
    uint32_t participant_id; /* != 0 */
    uint32_t interval_ms;
    uint32_t rtt_us;
    uint32_t rttvar_us;
    uint16_t loss_permille; /* <= QUALITY_LOSS_MAX */
    uint32_t dropped;
    uint32_t est_kbps;
};

struct msg_error {
    uint32_t code;     /* enum proto_errcode */
    uint64_t msg_type; /* type that caused it, 0 = none; <= VARINT_MAX */
    struct msg_str text;
};

struct msg_goaway {
    uint32_t drain_ms;
    struct msg_str reconnect; /* 0..TEXT_MAX, printable ASCII */
};

struct msg {
    /* enum msg_type for known messages; after ROOST_EUNKNOWN, the unknown
     * type number read from the wire. */
    uint64_t type;
    union {
        struct msg_hello hello;
        struct msg_welcome welcome;
        struct msg_join join;
        struct msg_joined joined;
        struct msg_join_rejected join_rejected;
        /* MSG_LEAVE has no fields. */
        struct msg_events events;
        struct msg_keyframe_request keyframe_request;
        struct msg_quality quality;
        struct msg_error error;
        struct msg_goaway goaway;
    } u;
};

/* Decodes one message body (varint type, then fields) from body[0..len),
 * never reading past len and never allocating; strings in *m point into
 * body. Bytes after the last field of a known type are ignored (forward
 * compatibility, PROTOCOL.md §7).
 * Returns 0 on success, or:
 *   ROOST_EUNKNOWN   unknown message type; m->type holds it, the caller
 *                    ignores the message (the rest of *m is unspecified)
 *   ROOST_ETRUNC     the body ends before a field does (len 0 included)
 *   ROOST_ETOOBIG    a string length or list count above its limit
 *   ROOST_EMALFORMED bad UTF-8 or NUL, non-printable token byte, type 0,
 *                    a zero participant id, an empty room id, an unknown
 *                    event kind, or another value outside its range
 * On any error other than ROOST_EUNKNOWN the message is a protocol
 * violation. */
int msg_decode(const uint8_t *body, size_t len, struct msg *m);

/* Decodes the frame (length prefix + body) at buf[0..len) with frame_parse
 * and msg_decode. Sets *consumed to the frame's total length whenever the
 * whole frame is in buf (so an unknown type can be skipped), and leaves it
 * untouched otherwise. Returns what msg_decode returns, or ROOST_ETRUNC
 * when buf does not yet hold the whole frame, or ROOST_ETOOBIG when the
 * frame's body_len exceeds FRAME_MAX_BODY. */
int msg_decode_frame(const uint8_t *buf, size_t len, struct msg *m, size_t *consumed);

/* Encodes *m as a complete frame (length prefix + body) into out[0..cap).
 * Returns the number of bytes written, or:
 *   ROOST_ENOSPC  cap too small (the contents of out are then unspecified)
 *   ROOST_ETOOBIG a string or list above its limit
 *   ROOST_EINVAL  m->type unknown, or a value the decoder would reject
 *                 (bad UTF-8, zero participant id, loss > 1000, ...)
 * Validation errors take precedence over ROOST_ENOSPC. m and the strings it
 * points to are only read. */
int msg_encode(const struct msg *m, uint8_t *out, size_t cap);

/* Encodes only the body of *m (varint type, then fields: no length prefix)
 * into out[0..cap), for callers that frame bodies themselves (e.g. with
 * frame_put_header). Returns the body length (1..FRAME_MAX_BODY) or the
 * errors of msg_encode. */
int msg_encode_body(const struct msg *m, uint8_t *out, size_t cap);

/* Returns the length msg_encode would write for *m (at most
 * FRAME_MAX_HDR + FRAME_MAX_BODY), or the error it would return (never
 * ROOST_ENOSPC). */
int msg_encoded_len(const struct msg *m);

/* Returns true when a and b are the same known message: equal fields, equal
 * string contents, equal list entries (only the first n entries compared).
 * Both must be of a known type. */
bool msg_equal(const struct msg *a, const struct msg *b);

/* Returns the spec name of a message type ("HELLO", ...), or "UNKNOWN". */
const char *msg_type_name(uint64_t type);

/* Returns the allowed directions of a known type (MSG_DIR_C2R and/or
 * MSG_DIR_R2C), or 0 for an unknown type. */
int msg_direction(uint64_t type);

/* Returns true for the types reserved for greasing: 0x21 + 0x1f * N. */
bool msg_type_is_grease(uint64_t type);

#endif
