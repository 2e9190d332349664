#include "client/talk.h"

#include <math.h>

#include "core/error.h"

#define DEF_TALK_NS 1000000000ull
#define DEF_SILENCE_NS 1500000000ull
#define DEF_DTX_NS 400000000ull

static uint64_t next_rand(struct talk *t)
{
    /* xorshift64*: fast and plenty for a traffic model. */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 0x2545F4914F6CDD1Dull;
}

/* Uniform in (0, 1]. */
static double unit(struct talk *t)
{
    return ((double)(next_rand(t) >> 11) + 1.0) / 9007199254740992.0;
}

/* An exponential duration with this mean, in whole frames, at least one. */
static uint32_t draw(struct talk *t, double mean_frames)
{
    double d = -mean_frames * log(unit(t));
    if (d < 1)
        return 1;
    if (d > 1e9)
        return 1000000000u;
    return (uint32_t)(d + 0.5);
}

int talk_init(struct talk *t, const struct talk_config *cfg, uint64_t seed)
{
    if (cfg->frame_ns == 0)
        return ROOST_EINVAL;
    uint64_t on = cfg->mean_talk_ns ? cfg->mean_talk_ns : DEF_TALK_NS;
    uint64_t off = cfg->mean_silence_ns ? cfg->mean_silence_ns : DEF_SILENCE_NS;
    uint64_t dtx = cfg->dtx_interval_ns ? cfg->dtx_interval_ns : DEF_DTX_NS;
    t->enabled = cfg->enabled;
    t->mean_talk = (double)on / (double)cfg->frame_ns;
    t->mean_silence = (double)off / (double)cfg->frame_ns;
    if (dtx == UINT64_MAX)
        t->dtx_every = 0;
    else
        t->dtx_every = dtx / cfg->frame_ns ? (uint32_t)(dtx / cfg->frame_ns) : 1;
    /* splitmix64 of the seed, so nearby seeds give unrelated streams and
     * the xorshift state is never zero. */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    t->rng = (z ^ (z >> 31)) | 1;
    t->talking = unit(t) <= t->mean_talk / (t->mean_talk + t->mean_silence);
    t->left = draw(t, t->talking ? t->mean_talk : t->mean_silence);
    t->quiet = 0;
    return 0;
}

enum talk_frame talk_next(struct talk *t)
{
    if (!t->enabled)
        return TALK_SPEECH;
    if (t->left == 0) {
        t->talking = !t->talking;
        t->left = draw(t, t->talking ? t->mean_talk : t->mean_silence);
        t->quiet = 0;
    }
    t->left--;
    if (t->talking)
        return TALK_SPEECH;
    uint32_t q = t->quiet++;
    if (t->dtx_every != 0 && q % t->dtx_every == 0)
        return TALK_DTX;
    return TALK_SILENT;
}

bool talk_is_talking(const struct talk *t)
{
    return !t->enabled || t->talking;
}
