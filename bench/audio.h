/* The bench's media: a table of real Opus frames encoded once at start-up
 * from a speech-like signal (synthetic, or a 16-bit mono 48 kHz WAV file),
 * which speakers then send in a loop. Encoding up front keeps libopus off
 * the send path, so the bench measures the relay, not the encoder.
 *
 * Start-up code on the main thread; the table is read-only afterwards and
 * shared by every bench thread. */
#ifndef ROOST_BENCH_AUDIO_H
#define ROOST_BENCH_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#define AUDIO_RATE 48000
#define AUDIO_FRAME_MAX 1275 /* Opus: largest packet of one frame */

struct audio_frame {
    uint16_t len;
    uint8_t data[AUDIO_FRAME_MAX * 3]; /* 40 and 60 ms frames may be larger */
};

struct audio_table {
    unsigned n;                 /* speech frames */
    struct audio_frame *frames; /* n entries */
    struct audio_frame dtx;     /* what the encoder sends in a pause (DTX) */
    double mean_len;            /* mean speech frame bytes */
    double seconds;             /* of source audio */
    char source[256];           /* "synthetic" or the file name */
};

/* Builds the table: seconds of signal (from wav_path when not NULL, else
 * synthetic; a WAV shorter than that is used as it is) encoded with Opus
 * (VoIP, DTX on) at bitrate bits/s in frames of frame_us (2500, 5000,
 * 10000, 20000, 40000 or 60000). Returns 0, ROOST_EINVAL (bad frame size or
 * bitrate; frames are capped at frame_max bytes; a WAV that is not 16-bit PCM mono 48 kHz,
 * described in err), ROOST_EIO / ROOST_ENOENT (file), ROOST_ENOMEM, ROOST_EUNKNOWN (libopus error).
 * Free with audio_table_free. */
int audio_table_build(struct audio_table *t, const char *wav_path, double seconds,
                      uint32_t frame_us, uint32_t bitrate, size_t frame_max, char *err,
                      size_t err_len);
void audio_table_free(struct audio_table *t);

/* Reads a 16-bit PCM mono 48 kHz WAV file into a malloc'ed sample array
 * (*out, *n samples; caller frees). Returns 0 or the errors above. */
int audio_wav_read(const char *path, int16_t **out, size_t *n, char *err, size_t err_len);

/* Fills n samples of a speech-like synthetic signal (voiced glottal pulses
 * with a wandering pitch through three formant resonators, syllable-rate
 * envelope, unvoiced noise bursts), deterministic for a seed. */
void audio_synth(int16_t *pcm, size_t n, uint64_t seed);

#endif
