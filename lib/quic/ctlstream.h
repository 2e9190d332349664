/* Control-stream buffering shared by the server and the client.
 *
 * Outbound: framed messages (lib/proto framing) are appended to a chain of
 * chunks sized to the messages (at least 512 bytes; a message never spans
 * two). ngtcp2 references stream bytes until they are acknowledged,
 * so a chunk never moves and is freed only once every byte in it is acked.
 * The number of queued-but-unacked bytes is bounded; hitting the bound
 * means the peer stopped reading (the owner closes with TOO_SLOW).
 *
 * Inbound: stream bytes arrive in order (ngtcp2 reassembles); they are
 * gathered into one message buffer until a whole body is present, and each
 * body (without its length prefix) is handed to a callback. The owner
 * extends flow control by the bytes consumed.
 *
 * Thread safety: none; one owner thread (the connection's). */
#ifndef ROOST_QUIC_CTLSTREAM_H
#define ROOST_QUIC_CTLSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ctl_chunk;

struct ctl_tx {
    struct ctl_chunk *head; /* oldest chunk still holding unacked bytes */
    struct ctl_chunk *tail;
    uint64_t acked;  /* stream offset acknowledged up to */
    uint64_t sent;   /* stream offset handed to ngtcp2 up to */
    uint64_t end;    /* stream offset of the last queued byte + 1 */
    size_t limit;    /* max end - acked */
    uint64_t chunks; /* live chunks (tests) */
};

/* Initialises an empty queue bounded to `limit` unacked bytes. */
void ctl_tx_init(struct ctl_tx *q, size_t limit);
/* Frees every chunk. */
void ctl_tx_free(struct ctl_tx *q);
/* Frames `body` (len bytes, 1..FRAME_MAX_BODY) and queues it.
 * Returns 0; ROOST_ETOOBIG (body too large or empty: ROOST_EINVAL);
 * ROOST_EFULL when the unacked bound would be exceeded (nothing queued);
 * ROOST_ENOMEM. */
int ctl_tx_push(struct ctl_tx *q, const uint8_t *body, size_t len);
/* Next contiguous run of unsent bytes: sets *data and returns its length
 * (0 when everything was handed out). The bytes stay valid until acked. */
size_t ctl_tx_peek(const struct ctl_tx *q, const uint8_t **data);
/* Records that n bytes from ctl_tx_peek were accepted by ngtcp2. */
void ctl_tx_sent(struct ctl_tx *q, size_t n);
/* ngtcp2 acknowledged [offset, offset+len): frees chunks wholly acked. */
void ctl_tx_acked(struct ctl_tx *q, uint64_t offset, uint64_t len);
/* Bytes queued and not yet acknowledged. */
size_t ctl_tx_pending(const struct ctl_tx *q);
/* True when bytes remain that ngtcp2 has not taken yet. */
bool ctl_tx_has_unsent(const struct ctl_tx *q);

typedef void (*ctl_body_cb)(const uint8_t *body, size_t len, void *arg);

struct ctl_rx {
    uint8_t *buf; /* one incomplete message, sized to it; NULL between messages */
    size_t len, cap;
};

void ctl_rx_init(struct ctl_rx *r);
void ctl_rx_free(struct ctl_rx *r);
/* Feeds in-order stream bytes; calls cb for every complete body. The
 * callback may not call ctl_rx_* on the same object. Returns the number of
 * bytes consumed (all of them: partial messages are copied aside), or
 * ROOST_ETOOBIG (a length prefix above FRAME_MAX_BODY), ROOST_EMALFORMED
 * (an empty body), ROOST_ENOMEM. On error the stream is unusable. */
int ctl_rx_feed(struct ctl_rx *r, const uint8_t *data, size_t len, ctl_body_cb cb, void *arg);

#endif
