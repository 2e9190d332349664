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

#endif
