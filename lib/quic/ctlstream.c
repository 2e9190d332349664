#include "quic/ctlstream.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/frame.h"

/* A send chunk is sized to the message it is made for (at least
 * CHUNK_MIN, so that a run of small messages shares one); later messages
 * fill its slack while they fit. A message never spans two chunks. */
#define CHUNK_MIN 512

/* The receive buffer holds one incomplete message: its length prefix as the
 * peer wrote it and up to FRAME_MAX_BODY bytes. A peer may write the
 * prefix in any varint length (RFC 9000 does not require the minimal one),
 * so the prefix takes up to 8 bytes, not FRAME_MAX_HDR. It is sized to the
 * message being gathered and freed once that message is delivered. */
#define RX_HDR_MAX 8
#define RX_CAP (RX_HDR_MAX + FRAME_MAX_BODY)

struct ctl_chunk {
    struct ctl_chunk *next;
    uint64_t start; /* stream offset of data[0] */
    size_t len, cap;
    uint8_t data[];
};

void ctl_tx_init(struct ctl_tx *q, size_t limit)
{
    memset(q, 0, sizeof(*q));
    q->limit = limit;
}

void ctl_tx_free(struct ctl_tx *q)
{
    struct ctl_chunk *c = q->head;
    while (c != NULL) {
        struct ctl_chunk *n = c->next;
        free(c);
        c = n;
    }
    q->head = q->tail = NULL;
    q->chunks = 0;
}

/* The tail chunk with room for n more bytes, made (sized to n) if the
 * tail has not: NULL when out of memory. Appending after bytes ngtcp2
 * already references never moves them. */
static struct ctl_chunk *room_for(struct ctl_tx *q, size_t n)
{
    struct ctl_chunk *t = q->tail;
    if (t != NULL && t->cap - t->len >= n)
        return t;
    size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
    struct ctl_chunk *c = malloc(sizeof(*c) + cap);
    if (c == NULL)
        return NULL;
    c->next = NULL;
    c->start = q->end;
    c->len = 0;
    c->cap = cap;
    if (t == NULL)
        q->head = c;
    else
        t->next = c;
    q->tail = c;
    q->chunks++;
    return c;
}

int ctl_tx_push(struct ctl_tx *q, const uint8_t *body, size_t len)
{
    uint8_t hdr[FRAME_MAX_HDR];
    if (len == 0)
        return ROOST_EINVAL;
    int h = frame_put_header(hdr, sizeof(hdr), len);
    if (h < 0)
        return h;
    if (ctl_tx_pending(q) + (size_t)h + len > q->limit)
        return ROOST_EFULL;
    /* Memory first, so a failed push leaves the stream as it was: a
     * half-queued frame would corrupt the peer's framing. */
    struct ctl_chunk *t = room_for(q, (size_t)h + len);
    if (t == NULL)
        return ROOST_ENOMEM;
    memcpy(t->data + t->len, hdr, (size_t)h);
    memcpy(t->data + t->len + (size_t)h, body, len);
    t->len += (size_t)h + len;
    q->end += (size_t)h + len;
    return 0;
}

size_t ctl_tx_peek(const struct ctl_tx *q, const uint8_t **data)
{
    for (struct ctl_chunk *c = q->head; c != NULL; c = c->next) {
        uint64_t cend = c->start + c->len;
        if (q->sent < cend) {
            *data = c->data + (q->sent - c->start);
            return (size_t)(cend - q->sent);
        }
    }
    *data = NULL;
    return 0;
}

void ctl_tx_sent(struct ctl_tx *q, size_t n)
{
    q->sent += n;
}

void ctl_tx_acked(struct ctl_tx *q, uint64_t offset, uint64_t len)
{
    /* ngtcp2 reports acks in order of the contiguous acked prefix. */
    if (offset + len > q->acked)
        q->acked = offset + len;
    /* A fully acked chunk is freed even when it is the partly filled tail:
     * idle connections then hold no send buffer (the next append allocates
     * a fresh chunk), which matters more than one malloc per message. */
    while (q->head != NULL && q->head->start + q->head->len <= q->acked) {
        struct ctl_chunk *c = q->head;
        q->head = c->next;
        if (q->head == NULL)
            q->tail = NULL;
        free(c);
        q->chunks--;
    }
}

size_t ctl_tx_pending(const struct ctl_tx *q)
{
    return (size_t)(q->end - q->acked);
}

bool ctl_tx_has_unsent(const struct ctl_tx *q)
{
    return q->sent < q->end;
}

void ctl_rx_init(struct ctl_rx *r)
{
    r->buf = NULL;
    r->len = 0;
    r->cap = 0;
}

void ctl_rx_free(struct ctl_rx *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = 0;
    r->cap = 0;
}

/* Makes the receive buffer hold at least n bytes (n <= RX_CAP). */
static int rx_reserve(struct ctl_rx *r, size_t n)
{
    if (n <= r->cap)
        return 0;
    uint8_t *b = realloc(r->buf, n);
    if (b == NULL)
        return ROOST_ENOMEM;
    r->buf = b;
    r->cap = n;
    return 0;
}

/* The bytes the incomplete message starting at p (n bytes of it) needs in
 * all, prefix and body, when its prefix is complete; else a prefix's worth.
 * At most RX_CAP. */
static size_t rx_want(const uint8_t *p, size_t n)
{
    size_t hl, bl;
    if (frame_parse(p, n, &hl, &bl) == 0 && hl + bl <= RX_CAP)
        return hl + bl;
    return RX_HDR_MAX;
}

/* Tries to deliver one message from p[0..n); returns bytes used, 0 when
 * incomplete, or an error. */
static int deliver_one(const uint8_t *p, size_t n, ctl_body_cb cb, void *arg)
{
    size_t hl, bl;
    int rc = frame_parse(p, n, &hl, &bl);
    if (rc == ROOST_ETRUNC)
        return 0;
    if (rc < 0)
        return rc;
    if (bl == 0)
        return ROOST_EMALFORMED;
    if (n - hl < bl)
        return 0;
    cb(p + hl, bl, arg);
    return (int)(hl + bl);
}

int ctl_rx_feed(struct ctl_rx *r, const uint8_t *data, size_t len, ctl_body_cb cb, void *arg)
{
    size_t used = 0;
    /* Finish a message left over from earlier bytes, copying only what it
     * needs so later whole messages are delivered in place. */
    while (r->len > 0 && used < len) {
        size_t cap = RX_CAP;
        size_t hl, bl;
        int rc = frame_parse(r->buf, r->len, &hl, &bl);
        size_t want;
        if (rc == ROOST_ETRUNC)
            want = r->len + 1;
        else if (rc < 0)
            return rc;
        else if (bl == 0)
            return ROOST_EMALFORMED;
        else
            want = hl + bl;
        if (want > cap)
            return ROOST_ETOOBIG;
        size_t k = want - r->len;
        if (k > len - used)
            k = len - used;
        /* Sized to the whole message once its prefix is known. */
        if (rx_reserve(r, rc == 0 ? want : RX_HDR_MAX) < 0)
            return ROOST_ENOMEM;
        memcpy(r->buf + r->len, data + used, k);
        r->len += k;
        used += k;
        if (rc == 0 && r->len == want) {
            cb(r->buf + hl, bl, arg);
            ctl_rx_free(r); /* an idle connection holds no buffer */
        }
    }
    if (r->len > 0) {
        /* A prefix completed by the last byte is checked now, not on the
         * next feed (which may never come). */
        size_t hl, bl;
        int rc = frame_parse(r->buf, r->len, &hl, &bl);
        if (rc < 0 && rc != ROOST_ETRUNC)
            return rc;
        if (rc == 0 && bl == 0)
            return ROOST_EMALFORMED;
    }
    while (used < len) {
        int n = deliver_one(data + used, len - used, cb, arg);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        used += (size_t)n;
    }
    if (used < len) {
        /* The rest is one incomplete message: a partial prefix (< 8
         * bytes) or a valid prefix (<= 8 bytes) and less than its body, so
         * it fits RX_CAP. Checked anyway: an overrun here would be a heap
         * write chosen by the peer. The buffer is sized to the message. */
        if (len - used > RX_CAP)
            return ROOST_ETOOBIG;
        size_t want = rx_want(data + used, len - used);
        if (rx_reserve(r, want > len - used ? want : len - used) < 0)
            return ROOST_ENOMEM;
        memcpy(r->buf, data + used, len - used);
        r->len = len - used;
    }
    return (int)len;
}
