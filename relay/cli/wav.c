#include "relay/cli/wav.h"

#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>

struct wav_writer {
    SNDFILE *f;
};

int wav_read(const char *path, int16_t **out, size_t *n, char *err, size_t err_len)
{
    SF_INFO info = {0};
    *out = NULL;
    *n = 0;
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, sf_strerror(NULL));
        return -1;
    }
    int rc = -1;
    if (info.channels != 1 || info.samplerate != WAV_RATE) {
        snprintf(err, err_len,
                 "%s: %d channel(s) at %d Hz: roost-cli call needs mono 48000 Hz "
                 "(convert it first, e.g. sox in.wav -c 1 -r 48000 out.wav)",
                 path, info.channels, info.samplerate);
        goto out;
    }
    if (info.frames <= 0 || info.frames > (sf_count_t)1 << 31) {
        snprintf(err, err_len, "%s: %lld samples", path, (long long)info.frames);
        goto out;
    }
    *out = malloc((size_t)info.frames * sizeof(int16_t));
    if (*out == NULL) {
        snprintf(err, err_len, "%s: out of memory", path);
        goto out;
    }
    sf_count_t got = sf_readf_short(f, *out, info.frames);
    if (got <= 0) {
        snprintf(err, err_len, "%s: read error: %s", path, sf_strerror(f));
        free(*out);
        *out = NULL;
        goto out;
    }
    *n = (size_t)got;
    rc = 0;
out:
    sf_close(f);
    return rc;
}

struct wav_writer *wav_create(const char *path, char *err, size_t err_len)
{
    SF_INFO info = {
        .samplerate = WAV_RATE, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    struct wav_writer *w = malloc(sizeof(*w));
    if (w == NULL) {
        snprintf(err, err_len, "%s: out of memory", path);
        return NULL;
    }
    w->f = sf_open(path, SFM_WRITE, &info);
    if (w->f == NULL) {
        snprintf(err, err_len, "%s: %s", path, sf_strerror(NULL));
        free(w);
        return NULL;
    }
    return w;
}

int wav_write(struct wav_writer *w, const int16_t *pcm, size_t n)
{
    return sf_writef_short(w->f, pcm, (sf_count_t)n) == (sf_count_t)n ? 0 : -1;
}

int wav_close(struct wav_writer *w)
{
    if (w == NULL)
        return 0;
    int rc = sf_close(w->f) == 0 ? 0 : -1;
    free(w);
    return rc;
}
