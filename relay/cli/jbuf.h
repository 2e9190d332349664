/* An adaptive jitter buffer for one sender's audio (roost-cli call).
 *
 * Pure: no I/O, no clock (times are passed in, ns), no allocation after
 * jbuf_new. One instance per sender, one thread.
 *
 * Packets go in with their media sequence number and timestamp
 * (jbuf_put); the player takes one frame per frame period (jbuf_get),
 * which names what to decode: a packet, the in-band FEC of the next packet
 * (the frame itself was lost and its successor is here), Opus loss
 * concealment (PLC; also what a DTX pause decodes as), or silence (nothing
 * has been played yet).
 *
 * Timing: a timestamp maps to a playout time. The mapping is set at the
 * start of each talk spurt (the first packet, or a packet that follows
 * the previous one in sequence after a timestamp gap: the sender was in
 * DTX) so that the packet waits the target delay; between spurts nothing
 * is heard, so moving playout there is inaudible. Inside a spurt, when
 * the frame due is missing and the target is above the current delay by a
 * frame or more, one concealment frame is played without advancing
 * (playout stretches by a frame, and the late frame may still make it);
 * the delay shrinks at the next spurt (an empty buffer mid-spurt may be a
 * late packet, not a pause), by dropping a quiet frame (under 40 % of the
 * average packet size: the noise floor between words) when two frames or
 * more above the target, or at once for packets that waited more than
 * max_delay. When
 * three new packets in a row arrive after their slot was played, the
 * stream is behind playout (a sender that stalled and skipped time): the
 * buffer starts over at the third (a resync).
 *
 * Target: the peak transit variation seen (decaying by half in about 3 s),
 * plus half a frame, plus one frame for each recent late packet (decaying
 * too), clamped to [min_delay, max_delay]. Loss is counted from sequence
 * numbers (RFC 3550 style: expected minus received); jitter is RFC 3550's
 * interarrival jitter. */
#ifndef ROOST_CLI_JBUF_H
#define ROOST_CLI_JBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JBUF_SLOTS 64 /* frames held: 1.28 s of 20 ms frames */
#define JBUF_PAYLOAD_MAX 1280

struct jbuf_config {
    uint32_t rate;         /* timestamp units per second (48000) */
    uint32_t frame_ts;     /* timestamp units per frame (960 = 20 ms) */
    uint32_t min_delay_ms; /* 0: one frame */
    uint32_t max_delay_ms; /* 0: 400; at most (JBUF_SLOTS - 2) frames */
};

enum jbuf_kind {
    JBUF_SILENCE = 0, /* nothing to play yet: zeros, no decoder call */
    JBUF_FRAME,       /* decode data normally */
    JBUF_FEC,         /* decode data (the next packet) with decode_fec = 1 */
    JBUF_PLC,         /* decode with no data (concealment or DTX) */
};

struct jbuf_out {
    enum jbuf_kind kind;
    const uint8_t *data; /* FRAME, FEC: valid until the next jbuf_put/get */
    size_t len;
    uint32_t ts; /* the timestamp played */
};

enum jbuf_put_result {
    JBUF_OK = 0,
    JBUF_LATE,  /* its slot was already played: dropped */
    JBUF_DUP,   /* already held: dropped */
    JBUF_INVAL, /* empty or above JBUF_PAYLOAD_MAX: dropped */
};

struct jbuf_stats {
    uint64_t received;  /* accepted packets */
    uint64_t expected;  /* from the sequence numbers: highest - first + 1 */
    uint64_t lost;      /* expected - received - late (>= 0) */
    uint64_t late, dup; /* dropped on arrival */
    /* jbuf_get results: packets, FEC, concealment of a loss, concealment
     * with nothing held (a DTX pause, or the sender quiet), silence
     * before the first packet. */
    uint64_t frames, fec, plc, pause, silence;
    uint64_t stretches, shrinks; /* frames inserted / dropped by adaptation */
    uint64_t skips;              /* frames dropped: waited over max_delay */
    uint64_t spurts;             /* playout re-anchored */
    uint64_t resyncs;            /* started over: LATE_RESYNC new packets late in a row */
    uint64_t bytes;              /* payload bytes accepted */
    double jitter_ms;            /* RFC 3550 interarrival jitter */
    uint32_t target_ms;          /* current target delay */
    uint32_t delay_ms;           /* current playout delay */
};

struct jbuf;

struct jbuf *jbuf_new(const struct jbuf_config *cfg);
void jbuf_free(struct jbuf *jb);

/* A packet arrived at now_ns. */
enum jbuf_put_result jbuf_put(struct jbuf *jb, uint32_t seq, uint32_t ts, const uint8_t *data,
                              size_t len, uint64_t now_ns);
/* The next frame to play, at now_ns (call once per frame period). A
 * player that fell behind passes each missed period's nominal time. */
void jbuf_get(struct jbuf *jb, uint64_t now_ns, struct jbuf_out *out);
void jbuf_stats(const struct jbuf *jb, struct jbuf_stats *out);
/* Packets held (not yet played). */
unsigned jbuf_held(const struct jbuf *jb);

#endif
