#include "bench/audio.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Little-endian, not be.h: RIFF/WAV stores its fields little-endian. */
static uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int audio_wav_read(const char *path, int16_t **out, size_t *n, char *err, size_t err_len)
{
    int rc = 0;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    *n = 0;
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? ROOST_ENOENT : ROOST_EIO;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = ROOST_EIO;
        goto out;
    }
    long size = ftell(f);
    if (size < 44 || size > (1l << 30) || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, err_len, "%s: not a WAV file (size)", path);
        rc = ROOST_EINVAL;
        goto out;
    }
    buf = malloc((size_t)size);
    if (buf == NULL) {
        rc = ROOST_ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        snprintf(err, err_len, "%s: read error", path);
        rc = ROOST_EIO;
        goto out;
    }
    if (memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WAVE", 4) != 0) {
        snprintf(err, err_len, "%s: not a RIFF/WAVE file", path);
        rc = ROOST_EINVAL;
        goto out;
    }
    bool have_fmt = false;
    size_t pos = 12;
    while (pos + 8 <= (size_t)size) {
        uint32_t clen = rd_le32(buf + pos + 4);
        const uint8_t *c = buf + pos + 8;
        size_t avail = (size_t)size - pos - 8;
        if (memcmp(buf + pos, "fmt ", 4) == 0) {
            if (clen < 16 || avail < 16) {
                snprintf(err, err_len, "%s: short fmt chunk", path);
                rc = ROOST_EINVAL;
                goto out;
            }
            uint16_t format = rd_le16(c), ch = rd_le16(c + 2), bits = rd_le16(c + 14);
            uint32_t rate = rd_le32(c + 4);
            /* 0xFFFE is WAVE_FORMAT_EXTENSIBLE, PCM when its sub-format says so;
             * accept it when the plain fields match. */
            if ((format != 1 && format != 0xFFFE) || ch != 1 || rate != AUDIO_RATE || bits != 16) {
                snprintf(err, err_len,
                         "%s: format %u, %u channel(s), %u Hz, %u bits: roost-bench needs "
                         "16-bit PCM, mono, 48000 Hz (convert it first, e.g. with sox or "
                         "ffmpeg -ac 1 -ar 48000 -sample_fmt s16)",
                         path, format, ch, rate, bits);
                rc = ROOST_EINVAL;
                goto out;
            }
            have_fmt = true;
        } else if (memcmp(buf + pos, "data", 4) == 0) {
            if (!have_fmt) {
                snprintf(err, err_len, "%s: data chunk before fmt chunk", path);
                rc = ROOST_EINVAL;
                goto out;
            }
            size_t bytes = clen < avail ? clen : avail;
            *n = bytes / 2;
            if (*n == 0) {
                snprintf(err, err_len, "%s: no samples", path);
                rc = ROOST_EINVAL;
                goto out;
            }
            *out = malloc(*n * sizeof(int16_t));
            if (*out == NULL) {
                rc = ROOST_ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < *n; i++)
                (*out)[i] = (int16_t)rd_le16(c + 2 * i);
            goto out;
        }
        pos += 8 + (size_t)clen + (clen & 1);
    }
    snprintf(err, err_len, "%s: no data chunk", path);
    rc = ROOST_EINVAL;
out:
    free(buf);
    fclose(f);
    return rc;
}

struct reson {
    double a1, a2, g, y1, y2;
};

static void reson_set(struct reson *r, double freq, double bw)
{
    double rr = exp(-M_PI * bw / AUDIO_RATE);
    r->a1 = 2 * rr * cos(2 * M_PI * freq / AUDIO_RATE);
    r->a2 = -rr * rr;
    r->g = 1 - rr;
}

static double reson_run(struct reson *r, double x)
{
    double y = r->g * x + r->a1 * r->y1 + r->a2 * r->y2;
    r->y2 = r->y1;
    r->y1 = y;
    return y;
}

static double rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

void audio_synth(int16_t *pcm, size_t n, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 88172645463325252ull;
    /* Vowel formant sets (F1, F2, F3 in Hz) cycled per syllable. */
    static const double vowels[][3] = {
        {730, 1090, 2440}, {270, 2290, 3010}, {530, 1840, 2480},
        {570, 840, 2410},  {300, 870, 2240},  {660, 1720, 2410},
    };
    struct reson f[3] = {{0}};
    double phase = 0, pitch = 120, env = 0;
    size_t syl_len = 0, syl_pos = 0;
    bool voiced = true;
    for (size_t i = 0; i < n; i++) {
        if (syl_pos >= syl_len) {
            /* A new syllable: 150-300 ms, mostly voiced, sometimes a pause. */
            syl_len = (size_t)((0.15 + 0.15 * rnd(&s)) * AUDIO_RATE);
            syl_pos = 0;
            double r = rnd(&s);
            voiced = r < 0.8;
            const double *v = vowels[(size_t)(rnd(&s) * 6) % 6];
            for (int k = 0; k < 3; k++)
                reson_set(&f[k], v[k] * (0.9 + 0.2 * rnd(&s)), 60 + 40 * k);
            pitch = 100 + 120 * rnd(&s);
        }
        double t = (double)syl_pos / (double)syl_len;
        double target = sin(M_PI * t); /* syllable envelope */
        env += (target - env) * 0.002;
        pitch *= 1 + (rnd(&s) - 0.5) * 0.0004; /* slow wander */
        double x;
        if (voiced) {
            phase += pitch / AUDIO_RATE;
            x = 0;
            if (phase >= 1) {
                phase -= 1;
                x = 1; /* glottal pulse */
            }
            x += (rnd(&s) - 0.5) * 0.02;
        } else {
            x = (rnd(&s) - 0.5) * 0.3;
        }
        double y = 0;
        for (int k = 0; k < 3; k++)
            y += reson_run(&f[k], x) / (k + 1);
        double v = y * env * 40000;
        if (v > 32767)
            v = 32767;
        if (v < -32768)
            v = -32768;
        pcm[i] = (int16_t)v;
        syl_pos++;
    }
}

int audio_table_build(struct audio_table *t, const char *wav_path, double seconds,
                      uint32_t frame_us, uint32_t bitrate, size_t frame_max, char *err,
                      size_t err_len)
{
    int rc = 0, oerr = 0;
    int16_t *pcm = NULL;
    size_t n = 0;
    OpusEncoder *enc = NULL;
    memset(t, 0, sizeof(*t));
    if (frame_us != 2500 && frame_us != 5000 && frame_us != 10000 && frame_us != 20000 &&
        frame_us != 40000 && frame_us != 60000) {
        snprintf(err, err_len, "frame size %u us: Opus takes 2.5, 5, 10, 20, 40 or 60 ms",
                 frame_us);
        return ROOST_EINVAL;
    }
    if (bitrate < 6000 || bitrate > 510000) {
        snprintf(err, err_len, "bitrate %u: Opus takes 6k..510k", bitrate);
        return ROOST_EINVAL;
    }
    size_t spf = (size_t)AUDIO_RATE * frame_us / 1000000; /* samples per frame */
    if (wav_path != NULL) {
        rc = audio_wav_read(wav_path, &pcm, &n, err, err_len);
        if (rc != 0)
            goto out;
        size_t want = (size_t)(seconds * AUDIO_RATE);
        if (n > want)
            n = want;
        snprintf(t->source, sizeof(t->source), "%s", wav_path);
    } else {
        n = (size_t)(seconds * AUDIO_RATE);
        pcm = malloc(n * sizeof(int16_t));
        if (pcm == NULL) {
            rc = ROOST_ENOMEM;
            goto out;
        }
        audio_synth(pcm, n, 1);
        snprintf(t->source, sizeof(t->source), "synthetic");
    }
    t->n = (unsigned)(n / spf);
    if (t->n == 0) {
        snprintf(err, err_len, "audio shorter than one frame");
        rc = ROOST_EINVAL;
        goto out;
    }
    t->seconds = (double)n / AUDIO_RATE;
    t->frames = calloc(t->n, sizeof(*t->frames));
    if (t->frames == NULL) {
        rc = ROOST_ENOMEM;
        goto out;
    }
    enc = opus_encoder_create(AUDIO_RATE, 1, OPUS_APPLICATION_VOIP, &oerr);
    if (enc == NULL) {
        snprintf(err, err_len, "opus_encoder_create: %s", opus_strerror(oerr));
        rc = ROOST_EUNKNOWN;
        goto out;
    }
    opus_encoder_ctl(enc, OPUS_SET_BITRATE((opus_int32)bitrate));
    opus_encoder_ctl(enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE));
    double total = 0;
    /* Opus honours a byte cap: frames always fit one datagram after the
     * headers. */
    size_t max_bytes =
        frame_max < sizeof(t->frames[0].data) ? frame_max : sizeof(t->frames[0].data);
    for (unsigned i = 0; i < t->n; i++) {
        opus_int32 len = opus_encode(enc, pcm + (size_t)i * spf, (int)spf, t->frames[i].data,
                                     (opus_int32)max_bytes);
        if (len < 0) {
            snprintf(err, err_len, "opus_encode: %s", opus_strerror(len));
            rc = ROOST_EUNKNOWN;
            goto out;
        }
        t->frames[i].len = (uint16_t)len;
        total += len;
    }
    t->mean_len = total / t->n;
    /* The pause frame: what a DTX encoder emits once it has seen silence
     * for a while (a one- or two-byte packet). */
    opus_encoder_ctl(enc, OPUS_SET_DTX(1));
    int16_t *silence = calloc(spf, sizeof(int16_t));
    if (silence == NULL) {
        rc = ROOST_ENOMEM;
        goto out;
    }
    size_t warm = 1000000 / frame_us + 1; /* one second of silence */
    for (size_t i = 0; i < warm; i++) {
        opus_int32 len = opus_encode(enc, silence, (int)spf, t->dtx.data, (opus_int32)max_bytes);
        if (len > 0)
            t->dtx.len = (uint16_t)len;
    }
    free(silence);
out:
    if (enc != NULL)
        opus_encoder_destroy(enc);
    free(pcm);
    if (rc != 0)
        audio_table_free(t);
    return rc;
}

void audio_table_free(struct audio_table *t)
{
    free(t->frames);
    t->frames = NULL;
    t->n = 0;
}
