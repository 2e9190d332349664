/* Talk-spurt model: whether a simulated speaker sends speech, a DTX
 * comfort-noise frame, or nothing, frame by frame, so that load looks like
 * a conversation rather than everyone talking at once.
 *
 * Two states, TALKING and SILENT, with exponentially distributed durations
 * (defaults: mean talk spurt 1.0 s, mean pause 1.5 s, close to the
 * conversational speech model of ITU-T P.59). While silent, an Opus
 * encoder with DTX sends one small frame per dtx interval (400 ms), the
 * first one as the pause begins. A disabled model talks all the time.
 *
 * Driven by frame ticks, not by a clock: the caller calls talk_next once
 * per frame slot, so the sequence depends only on the seed (testable,
 * reproducible across runs).
 *
 * Thread safety: none; one owner per struct talk. */
#ifndef ROOST_CLIENT_TALK_H
#define ROOST_CLIENT_TALK_H

#include <stdbool.h>
#include <stdint.h>

enum talk_frame {
    TALK_SPEECH = 0, /* send a speech frame */
    TALK_DTX = 1,    /* send a DTX (comfort noise) frame */
    TALK_SILENT = 2, /* send nothing */
};

struct talk_config {
    bool enabled;             /* false: always TALK_SPEECH */
    uint64_t frame_ns;        /* frame duration, > 0 */
    uint64_t mean_talk_ns;    /* 0: 1 s */
    uint64_t mean_silence_ns; /* 0: 1.5 s */
    uint64_t dtx_interval_ns; /* 0: 400 ms; UINT64_MAX: no DTX frames (pure silence) */
};

/* Exposed for caller storage; fields are private to talk.c. */
struct talk {
    bool enabled;
    bool talking;
    uint32_t left;  /* frames left in the current state */
    uint32_t quiet; /* frames since the pause began */
    uint32_t dtx_every;
    double mean_talk, mean_silence; /* in frames */
    uint64_t rng;
};

/* Sets up t from cfg with this seed (any value). The first state is drawn
 * with the long-run talk probability. Returns 0 or ROOST_EINVAL
 * (frame_ns 0). */
int talk_init(struct talk *t, const struct talk_config *cfg, uint64_t seed);
/* What to send in the next frame slot. */
enum talk_frame talk_next(struct talk *t);
/* True while in a talk spurt (the state the next slot continues). */
bool talk_is_talking(const struct talk *t);

#endif
