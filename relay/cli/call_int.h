/* roost-cli call internals shared by call.c (options, event loop, session
 * callbacks) and callaudio.c (the audio: source and encoder, per-sender
 * jitter buffers and decoders, mixing, recording, status). */
#ifndef ROOST_CLI_CALL_INT_H
#define ROOST_CLI_CALL_INT_H

#include <opus.h>
#include "client/client.h"
#include <stdbool.h>
#include <stdint.h>

#include "relay/cli/jbuf.h"
#include "relay/cli/wav.h"

#define CALL_RATE 48000
#define CALL_FRAME 960 /* 20 ms */
#define CALL_FRAME_NS 20000000ull
#define CALL_MAX_PEERS 64

enum call_source { SRC_NONE, SRC_FILE, SRC_TONE, SRC_SILENCE };

struct call_opts {
    const char *host;
    uint16_t port;
    const char *ca, *pin, *server_name, *token, *room, *name;
    enum call_source source;
    const char *send_path;
    double tone_hz;
    const char *record, *record_dir;
    double duration_s; /* 0: no limit */
    double drop;       /* share of sent packets not sent */
    uint64_t seed;
    int bitrate, loss_perc;
    bool fec, dtx, exit_when_alone;
    uint32_t jb_min_ms, jb_max_ms;
};

struct call_peer {
    uint32_t id;
    char name[65];
    bool left;
    struct jbuf *jb;
    OpusDecoder *dec;
    struct wav_writer *wav; /* --record-dir: opened at its first sound */
    struct jbuf_stats prev; /* at the last status line */
    uint64_t media_bytes, prev_bytes;
};

struct call {
    struct call_opts o;
    struct roost_client *cl;
    struct roost_session *s;
    OpusEncoder *enc;
    int16_t *src;
    size_t src_n, src_pos;
    bool src_done;
    double phase;
    uint32_t ts, seq;
    uint64_t rng;
    uint8_t dgram[1500];

    bool joined, closed, failed, leaving;
    uint32_t self_id, max_datagram;
    struct call_peer *peers[CALL_MAX_PEERS];
    unsigned n_peers;
    bool seen_peer;
    struct wav_writer *rec;

    uint64_t sent, sent_bytes, dropped, dtx, send_errors, ticks, late_ticks;
    uint64_t prev_sent_bytes;
    uint32_t own_rtt_us; /* from QUALITY about our own link, 0: none yet */
    uint64_t leave_deadline;
    bool tty;
    int exit_code;
};

/* callaudio.c */
int call_audio_init(struct call *c, char *err, size_t err_len);
void call_audio_free(struct call *c);
/* One 20 ms period at now: send a frame (if a source is set), play one
 * frame of every sender into the recordings. */
void call_tick(struct call *c, uint64_t now);
struct call_peer *call_peer_get(struct call *c, uint32_t id, bool create);
void call_peer_media(struct call *c, const struct roost_media *m, uint64_t now);
/* Removes the peers that left and have nothing left to play. */
void call_peers_reap(struct call *c);
void call_status(struct call *c, uint64_t elapsed_ns);
void call_summary(struct call *c);
void call_summary_peer(struct call *c, const struct call_peer *p);

#endif
