/* A small WebSocket test client: TCP + gnutls (or plain), the HTTP upgrade
 * and RFC 6455 framing written by hand, so that a test can send what a
 * browser never would (unmasked frames, bad lengths, fragments, silence).
 * Every wait takes a deadline in milliseconds; nothing sleeps. Not part
 * of the relay.
 *
 * Thread safety: none; one client per thread. */
#ifndef ROOST_TEST_WS_CLIENT_H
#define ROOST_TEST_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wsc;

struct wsc_frame {
    uint8_t opcode;
    bool fin;
    uint8_t *data; /* owned by the client, valid until the next receive */
    size_t len;
    uint16_t close_code; /* Close frames: the status (0: none) */
};

/* Connects to addr:port; with ca_file, TLS 1.3 verifying the dev
 * certificate for "localhost". rcvbuf > 0 sets SO_RCVBUF before connect.
 * Returns 0 or a negative error. */
int wsc_connect(struct wsc **out, const char *addr, uint16_t port, const char *ca_file, int rcvbuf,
                int timeout_ms);
void wsc_free(struct wsc *c);
int wsc_fd(const struct wsc *c);

/* Sends the upgrade request for path (protocol NULL: no
 * Sec-WebSocket-Protocol header) followed by extra bytes (may be NULL) in
 * one write, and reads the answer's head. Sets *status. Returns 0 when the
 * answer is a 101 with the right accept key and subprotocol, 1 for any
 * other complete answer, negative on error or timeout. */
int wsc_upgrade(struct wsc *c, const char *path, const char *protocol, const uint8_t *extra,
                size_t extra_len, int *status, int timeout_ms);

/* Writes raw bytes (through TLS if any). Returns 0 or negative. */
int wsc_send_raw(struct wsc *c, const void *p, size_t n, int timeout_ms);
/* Encodes one frame into out (cap bytes); returns its length. */
size_t wsc_frame_encode(uint8_t *out, size_t cap, uint8_t opcode, bool fin, bool mask,
                        const uint8_t *p, size_t n);
/* Sends one frame. */
int wsc_send_frame(struct wsc *c, uint8_t opcode, bool fin, bool mask, const uint8_t *p, size_t n);
/* Sends one masked binary message [tag][p...]. */
int wsc_send_msg(struct wsc *c, uint8_t tag, const uint8_t *p, size_t n);
/* Sends a control message: tag 0x01, §3.2 length prefix, body. */
int wsc_send_control(struct wsc *c, const uint8_t *body, size_t len);

/* Receives one frame. Returns 1 (frame in *f), 0 (timeout), or negative
 * (EOF or error: the connection ended). */
int wsc_recv_frame(struct wsc *c, struct wsc_frame *f, int timeout_ms);

uint64_t wsc_now_ms(void);

/* Reads until the server closes (EOF, TLS close_notify or an error):
 * *data, *len are everything received and not yet consumed as frames
 * (valid until the next call on c). Returns 0, or ROOST_ETIMEDOUT. */
int wsc_read_all(struct wsc *c, const uint8_t **data, size_t *len, int timeout_ms);

/* ------------------------------------------------------------------------
 * A roost participant over WebSocket (the browser's side, without a
 * browser): HELLO on connect, JOIN after WELCOME, presence, errors, QUALITY
 * and media logged as test/common/participant does for QUIC. */

#define WSP_LOG 4096

struct wsp_rx {
    uint32_t sender, seq;
    uint32_t len; /* payload bytes after the §8.2 header */
    bool intact;  /* payload is wsp_payload(seq) of that length */
};

struct wsp {
    struct wsc *c;
    char room[65];
    char token[512];
    char name[32];
    uint32_t pid; /* from WELCOME */
    bool welcomed, answered, joined, closed;
    uint32_t reject_code;
    uint32_t joined_n;
    uint32_t joined_pids[256];
    uint32_t n_events;
    struct {
        uint8_t kind;
        uint32_t pid;
    } events[1024];
    uint32_t n_errors, last_error, n_quality, n_goaway;
    uint32_t quality_dropped; /* sum of QUALITY.dropped about this participant's link */
    uint32_t n_media;
    struct wsp_rx media[WSP_LOG];
    uint16_t close_code; /* the relay's Close frame, 0 if none (yet) */
};

/* Connects p (zeroed by the caller, room/token/name set), upgrades on
 * path ("/ws" or "/") and sends HELLO. ca_file NULL: plain ws://.
 * rcvbuf as wsc_connect. Returns 0 or negative. */
int wsp_connect(struct wsp *p, const char *addr, uint16_t port, const char *ca_file,
                const char *path, int rcvbuf, int timeout_ms);
/* Reads and handles what arrives within timeout_ms (at least one wait;
 * then whatever is already there). Answers Pings, sends JOIN after
 * WELCOME. Returns the number of messages handled, or negative once the
 * connection ended (p->closed set). */
int wsp_poll(struct wsp *p, int timeout_ms);
/* One media packet: stream 0, this sequence number, len payload bytes of
 * wsp_payload(seq). */
int wsp_send_media(struct wsp *p, uint32_t seq, size_t len);
/* The test payload byte i of packet seq. */
uint8_t wsp_payload(uint32_t seq, size_t i);
int wsp_leave(struct wsp *p);
uint32_t wsp_events(const struct wsp *p, uint8_t kind, uint32_t pid);
void wsp_free(struct wsp *p);

#endif
