/* WAV files for roost-cli call, through libsndfile: 48 kHz mono 16-bit
 * PCM in and out (the rate and layout of the call's Opus stream). */
#ifndef ROOST_CLI_WAV_H
#define ROOST_CLI_WAV_H

#include <stddef.h>
#include <stdint.h>

#define WAV_RATE 48000

/* Reads a whole mono 48 kHz file (any PCM or float encoding libsndfile
 * reads, converted to 16-bit) into *out (malloc'd, *n samples). Returns 0
 * or -1 with a message in err. */
int wav_read(const char *path, int16_t **out, size_t *n, char *err, size_t err_len);

struct wav_writer;

/* Creates (truncates) path as a 48 kHz mono 16-bit PCM WAV. Returns NULL
 * with a message in err. */
struct wav_writer *wav_create(const char *path, char *err, size_t err_len);
/* Appends n samples. Returns 0 or -1 (write error). */
int wav_write(struct wav_writer *w, const int16_t *pcm, size_t n);
/* Finishes the header and closes. Returns 0 or -1. Accepts NULL. */
int wav_close(struct wav_writer *w);

#endif
