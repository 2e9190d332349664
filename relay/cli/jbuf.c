/* The jitter buffer of jbuf.h. Internally timestamps become frame numbers
 * (timestamp - first timestamp) / frame_ts, compared as signed 32-bit
 * differences; slot = frame number % JBUF_SLOTS. */
#include "relay/cli/jbuf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PEAK_HALF_LIFE_S 3.0         /* transit peak decay */
#define LATE_HALF_LIFE_S 10.0        /* late-packet boost decay */
#define MIN_WINDOW_NS 10000000000ull /* transit minimum: two 10 s windows */
#define LATE_RESYNC 3                /* new packets late in a row: start over */

struct slot {
    bool used;
    uint32_t fn, seq;
    uint64_t arrival;
    int64_t extra; /* transit above the minimum, ns */
    uint16_t len;
    uint8_t data[JBUF_PAYLOAD_MAX];
};

struct jbuf {
    struct jbuf_config cfg;
    uint64_t frame_ns;
    uint32_t frame_ms;
    struct slot slots[JBUF_SLOTS];

    bool started; /* a packet was accepted: base_ts, max_* valid */
    uint32_t base_ts;
    uint64_t base_ns; /* arrival of the first packet */
    uint32_t first_seq, max_seq, max_fn;
    uint64_t seq_span; /* extended highest seq - first_seq */

    bool playing; /* the timestamp -> time mapping is set */
    uint32_t play_fn;
    uint32_t spurt_fn;  /* first frame of the next talk spurt */
    bool spurt_pending; /* spurt_fn not played yet */
    bool have_played;
    uint32_t last_played_seq;

    /* Transit (arrival minus media time, ns) and what is derived from it. */
    bool have_transit;
    int64_t last_transit, min_cur, min_prev;
    uint64_t min_window_start;
    double peak_ms, late_ms, jitter_ns;
    uint64_t last_put_ns;
    uint32_t target_ms, delay_ms;
    unsigned late_run; /* newest packets late in a row */
    double avg_len;    /* payload bytes, moving average */

    struct jbuf_stats st;
};

struct jbuf *jbuf_new(const struct jbuf_config *cfg)
{
    if (cfg->rate == 0 || cfg->frame_ts == 0)
        return NULL;
    struct jbuf *jb = calloc(1, sizeof(*jb));
    if (jb == NULL)
        return NULL;
    jb->cfg = *cfg;
    jb->frame_ns = (uint64_t)cfg->frame_ts * 1000000000ull / cfg->rate;
    jb->frame_ms = (uint32_t)(jb->frame_ns / 1000000);
    uint32_t cap_ms = (JBUF_SLOTS - 2) * jb->frame_ms;
    if (jb->cfg.max_delay_ms == 0)
        jb->cfg.max_delay_ms = 400;
    if (jb->cfg.max_delay_ms > cap_ms)
        jb->cfg.max_delay_ms = cap_ms;
    if (jb->cfg.min_delay_ms == 0)
        jb->cfg.min_delay_ms = jb->frame_ms;
    if (jb->cfg.min_delay_ms > jb->cfg.max_delay_ms)
        jb->cfg.min_delay_ms = jb->cfg.max_delay_ms;
    jb->target_ms = jb->cfg.min_delay_ms;
    return jb;
}

void jbuf_free(struct jbuf *jb)
{
    free(jb);
}

static struct slot *slot_of(struct jbuf *jb, uint32_t fn)
{
    return &jb->slots[fn % JBUF_SLOTS];
}

/* The packet for frame fn, or NULL. */
static struct slot *held(struct jbuf *jb, uint32_t fn)
{
    struct slot *s = slot_of(jb, fn);
    return s->used && s->fn == fn ? s : NULL;
}

static unsigned buffered(const struct jbuf *jb)
{
    unsigned n = 0;
    for (unsigned i = 0; i < JBUF_SLOTS; i++)
        n += jb->slots[i].used;
    return n;
}

/* Whether a packet is held for a frame in [from, to). */
static bool held_before(struct jbuf *jb, uint32_t from, uint32_t to)
{
    for (uint32_t fn = from; (int32_t)(to - fn) > 0; fn++)
        if (held(jb, fn) != NULL)
            return true;
    return false;
}

static void flush(struct jbuf *jb)
{
    for (unsigned i = 0; i < JBUF_SLOTS; i++)
        jb->slots[i].used = false;
}

static void update_target(struct jbuf *jb)
{
    double t = jb->peak_ms + jb->frame_ms / 2.0 + jb->late_ms;
    if (t < jb->cfg.min_delay_ms)
        t = jb->cfg.min_delay_ms;
    if (t > jb->cfg.max_delay_ms)
        t = jb->cfg.max_delay_ms;
    jb->target_ms = (uint32_t)ceil(t);
}

/* Transit statistics for a packet of frame fn arriving at now; returns its
 * transit above the minimum, in ns. */
static int64_t transit_update(struct jbuf *jb, uint32_t fn, uint64_t now)
{
    int64_t media = (int64_t)((uint64_t)fn * jb->frame_ns);
    int64_t transit = (int64_t)(now - jb->base_ns) - media;
    if (!jb->have_transit) {
        jb->have_transit = true;
        jb->last_transit = jb->min_cur = jb->min_prev = transit;
        jb->min_window_start = now;
        jb->last_put_ns = now;
    }
    double d = (double)(transit - jb->last_transit);
    jb->jitter_ns += (fabs(d) - jb->jitter_ns) / 16.0;
    jb->last_transit = transit;
    if (now - jb->min_window_start >= MIN_WINDOW_NS) {
        jb->min_prev = jb->min_cur;
        jb->min_cur = transit;
        jb->min_window_start = now;
    }
    if (transit < jb->min_cur)
        jb->min_cur = transit;
    int64_t min = jb->min_cur < jb->min_prev ? jb->min_cur : jb->min_prev;
    int64_t extra = transit - min;

    double dt_s = (double)(now - jb->last_put_ns) / 1e9;
    jb->last_put_ns = now;
    jb->peak_ms *= exp2(-dt_s / PEAK_HALF_LIFE_S);
    jb->late_ms *= exp2(-dt_s / LATE_HALF_LIFE_S);
    if ((double)extra / 1e6 > jb->peak_ms)
        jb->peak_ms = (double)extra / 1e6;
    update_target(jb);
    return extra;
}

/* A talk spurt starts at frame fn (the first packet, after a resync, or
 * after a DTX pause): it plays once it has waited the target delay (less
 * its extra transit) and everything before it has been played. */
static void start_spurt(struct jbuf *jb, uint32_t fn)
{
    if (!jb->playing)
        jb->play_fn = fn;
    jb->playing = true;
    jb->spurt_fn = fn;
    jb->spurt_pending = true;
}

enum jbuf_put_result jbuf_put(struct jbuf *jb, uint32_t seq, uint32_t ts, const uint8_t *data,
                              size_t len, uint64_t now)
{
    if (len == 0 || len > JBUF_PAYLOAD_MAX)
        return JBUF_INVAL;
    bool first = !jb->started;
    if (first) {
        jb->started = true;
        jb->base_ts = ts;
        jb->base_ns = now;
        jb->first_seq = jb->max_seq = seq;
        jb->max_fn = 0;
    }
    uint32_t fn = (ts - jb->base_ts) / jb->cfg.frame_ts;
    int32_t seq_ahead = (int32_t)(seq - jb->max_seq);
    bool in_order = seq_ahead == 1;
    bool dtx_gap = in_order && (int32_t)(fn - jb->max_fn) > 1;
    if (!first && seq_ahead > 0) {
        jb->seq_span += (uint32_t)seq_ahead;
        jb->max_seq = seq;
    }
    if ((int32_t)(fn - jb->max_fn) > 0)
        jb->max_fn = fn;
    int64_t extra = transit_update(jb, fn, now);

    if (jb->playing && (int32_t)(fn - jb->play_fn) < 0) {
        jb->st.late++;
        jb->late_ms += jb->frame_ms;
        update_target(jb);
        if (seq_ahead <= 0 || ++jb->late_run < LATE_RESYNC)
            return JBUF_LATE;
        /* The stream itself is behind playout (the sender stalled and
         * skipped ahead in time, or the path did): start over here, with
         * the transit statistics of the new timing. */
        jb->st.late--;
        jb->st.resyncs++;
        flush(jb);
        jb->playing = false;
        jb->have_transit = false;
        jb->peak_ms = 0;
        extra = transit_update(jb, fn, now);
    }
    jb->late_run = 0;
    if (held(jb, fn) != NULL) {
        jb->st.dup++;
        return JBUF_DUP;
    }
    if (jb->playing && (int32_t)(fn - jb->play_fn) >= JBUF_SLOTS - 1) {
        /* Far ahead (a long stall or a timestamp jump): start over here. */
        flush(jb);
        jb->playing = false;
    }
    /* A talk spurt starts: playout may move here unheard. */
    if (!jb->playing || dtx_gap)
        start_spurt(jb, fn);
    struct slot *s = slot_of(jb, fn);
    s->used = true;
    s->fn = fn;
    s->seq = seq;
    s->arrival = now;
    s->extra = extra;
    s->len = (uint16_t)len;
    memcpy(s->data, data, len);
    jb->st.received++;
    jb->st.bytes += len;
    jb->avg_len += ((double)len - jb->avg_len) / (jb->st.received < 32 ? jb->st.received : 32);
    return JBUF_OK;
}

static void advance(struct jbuf *jb)
{
    struct slot *s = held(jb, jb->play_fn);
    if (s != NULL)
        s->used = false;
    jb->play_fn++;
}

void jbuf_get(struct jbuf *jb, uint64_t now, struct jbuf_out *out)
{
    *out = (struct jbuf_out){.kind = JBUF_SILENCE};
    if (!jb->playing) {
        jb->st.silence++;
        return;
    }
    /* Bound: no packet waits more than max_delay (plus a frame). By wait,
     * not by count: a player that stalled and catches up (gets at their
     * nominal times, after the packets that came meanwhile) finds many
     * packets held, none of them old. */
    uint64_t max_wait = (uint64_t)jb->cfg.max_delay_ms * 1000000 + jb->frame_ns;
    for (struct slot *h;
         (h = held(jb, jb->play_fn)) != NULL && now > h->arrival && now - h->arrival > max_wait;) {
        jb->st.skips++;
        advance(jb);
    }
    out->ts = jb->base_ts + jb->play_fn * jb->cfg.frame_ts;
    if (jb->spurt_pending) {
        struct slot *sp = held(jb, jb->spurt_fn);
        if (sp == NULL || (int32_t)(jb->spurt_fn - jb->play_fn) < 0) {
            jb->spurt_pending = false; /* skipped by the bound */
        } else if (!held_before(jb, jb->play_fn, jb->spurt_fn)) {
            /* In the pause before the spurt: wait until it is due, then
             * jump to it (the delay shrinks or grows here, unheard). */
            int64_t due = (int64_t)sp->arrival - sp->extra + (int64_t)jb->target_ms * 1000000;
            if ((int64_t)now < due) {
                if (jb->have_played) {
                    out->kind = JBUF_PLC;
                    jb->st.pause++;
                } else {
                    jb->st.silence++;
                }
                return;
            }
            jb->play_fn = jb->spurt_fn;
            jb->spurt_pending = false;
            jb->st.spurts++;
        }
    }
    struct slot *s = held(jb, jb->play_fn);
    /* Shrink: two frames or more above the target and a quiet frame (a
     * packet under 40 % of the average size: a pause's noise floor) with
     * its successor here: drop it. DTX pauses (above) are where the
     * delay moves most; speech with a noise floor but no DTX needs this. */
    if (s != NULL && jb->delay_ms >= jb->target_ms + 2 * jb->frame_ms &&
        (double)s->len < 0.4 * jb->avg_len && held(jb, jb->play_fn + 1) != NULL) {
        advance(jb);
        jb->st.shrinks++;
        jb->delay_ms -= jb->frame_ms;
        s = held(jb, jb->play_fn);
    }
    if (s != NULL) {
        out->kind = JBUF_FRAME;
        out->data = s->data;
        out->len = s->len;
        /* The delay, measured: this packet's wait plus its extra transit
         * (what a packet with the least transit waits). */
        int64_t d = (int64_t)(now - s->arrival) + s->extra;
        jb->delay_ms = d > 0 ? (uint32_t)(d / 1000000) : 0;
        jb->have_played = true;
        jb->last_played_seq = s->seq;
        jb->st.frames++;
        advance(jb);
        return;
    }
    /* Stretch: the frame is not here and the target is above the delay
     * by a frame (late packets, more jitter): one concealment frame
     * without advancing, so that the frame may still come in time. */
    if (jb->target_ms >= jb->delay_ms + jb->frame_ms &&
        jb->delay_ms + jb->frame_ms <= jb->cfg.max_delay_ms) {
        jb->st.stretches++;
        jb->delay_ms += jb->frame_ms;
        if (jb->have_played)
            out->kind = JBUF_PLC;
        return;
    }
    unsigned held_n = buffered(jb);
    struct slot *n = held(jb, jb->play_fn + 1);
    if (n != NULL && jb->have_played && n->seq != jb->last_played_seq + 1) {
        /* This frame was lost and its successor carries it (in-band FEC). */
        out->kind = JBUF_FEC;
        out->data = n->data;
        out->len = n->len;
        jb->st.fec++;
    } else {
        out->kind = JBUF_PLC;
        if (held_n > 0)
            jb->st.plc++; /* a hole before packets that are here: a loss */
        else
            jb->st.pause++; /* DTX pause, sender quiet, or loss at the end */
    }
    jb->play_fn++;
}

void jbuf_stats(const struct jbuf *jb, struct jbuf_stats *out)
{
    *out = jb->st;
    out->expected = jb->started ? jb->seq_span + 1 : 0;
    uint64_t got = jb->st.received + jb->st.late;
    out->lost = out->expected > got ? out->expected - got : 0;
    out->jitter_ms = jb->jitter_ns / 1e6;
    out->target_ms = jb->target_ms;
    out->delay_ms = jb->delay_ms;
}

unsigned jbuf_held(const struct jbuf *jb)
{
    return buffered(jb);
}
