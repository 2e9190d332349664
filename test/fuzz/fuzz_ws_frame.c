/* Fuzz target: the WebSocket receive path of a server connection after
 * the upgrade: wslay's server context (masking, fragments, control frames,
 * the message size cap) fed from the input in chunks of varying size, and
 * every message it delivers classified as the relay does (ws_msg_parse).
 * Byte 0 of the input picks the chunk sizes; the rest is the stream.
 * Invariants: no message over the cap, a control body is 1..FRAME_MAX_BODY
 * bytes inside its message, a media packet is the message minus its tag;
 * after a Close is received or a violation found, nothing more is
 * delivered. What the server would send (Pong, Close) is produced and
 * discarded. Any violation aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <wslay/wslay.h>

#include "core/error.h"
#include "proto/frame.h"
#include "ws/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

struct feed {
    const uint8_t *p;
    size_t n, off;
    uint8_t step; /* 0: everything at once */
    bool ended;   /* close received or violation: no more messages */
    unsigned msgs;
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    struct feed *f = user;
    size_t left = f->n - f->off;
    if (left == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t k = f->step ? f->step : left;
    if (k > left)
        k = left;
    if (k > len)
        k = len;
    memcpy(buf, f->p + f->off, k);
    f->off += k;
    return (ssize_t)k;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx;
    (void)data;
    (void)flags;
    (void)user;
    return (ssize_t)len;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    struct feed *f = user;
    CHECK(!f->ended);
    CHECK(arg->msg_length <= WS_MESSAGE_MIN);
    f->msgs++;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        f->ended = true;
        return;
    }
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        /* The relay closes: no more messages. */
        f->ended = true;
        wslay_event_shutdown_read(ctx);
        return;
    }
    if (arg->opcode != WSLAY_BINARY_FRAME)
        return;
    const uint8_t *body = NULL;
    size_t n = 0;
    int rc = ws_msg_parse(arg->msg, arg->msg_length, &body, &n);
    if (rc == WS_TAG_CONTROL) {
        CHECK(n >= 1 && n <= FRAME_MAX_BODY);
        CHECK(body > arg->msg && body + n == arg->msg + arg->msg_length);
    } else if (rc == WS_TAG_MEDIA) {
        CHECK(n + 1 == arg->msg_length && body == arg->msg + 1);
    } else {
        CHECK(rc == ROOST_EMALFORMED);
        f->ended = true;
        wslay_event_shutdown_read(ctx);
    }
}

static const struct wslay_event_callbacks cbs = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_msg_recv_callback = msg_cb,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct feed f = {.p = data + 1, .n = size - 1, .step = data[0]};
    wslay_event_context_ptr ctx;
    if (wslay_event_context_server_init(&ctx, &cbs, &f) != 0)
        return 0;
    wslay_event_config_set_max_recv_msg_length(ctx, WS_MESSAGE_MIN);
    /* As the connection does: read until wslay stops (would-block at the
     * end of the input, a violation or a Close), then write. */
    for (int round = 0; round < 4 && f.off < f.n; round++) {
        if (wslay_event_recv(ctx) != 0)
            break;
        if (!wslay_event_get_read_enabled(ctx))
            break;
    }
    (void)wslay_event_send(ctx);
    wslay_event_context_free(ctx);
    return 0;
}
