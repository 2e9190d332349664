/* roost-cli call: the audio. One frame period (call_tick) sends one Opus
 * frame and plays one frame of every sender: jitter buffer -> decoder (the
 * packet, the next packet's FEC, or concealment) -> the sender's WAV
 * (--record-dir) and the mix (--record). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/cli/call_int.h"

static double rnd01(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

int call_audio_init(struct call *c, char *err, size_t err_len)
{
    c->rng = c->o.seed * 2654435761u + 88172645463325252ull;
    if (c->o.source == SRC_FILE && wav_read(c->o.send_path, &c->src, &c->src_n, err, err_len) != 0)
        return -1;
    if (c->o.source != SRC_NONE) {
        int oerr = 0;
        c->enc = opus_encoder_create(CALL_RATE, 1, OPUS_APPLICATION_VOIP, &oerr);
        if (c->enc == NULL) {
            snprintf(err, err_len, "opus_encoder_create: %s", opus_strerror(oerr));
            return -1;
        }
        opus_encoder_ctl(c->enc, OPUS_SET_BITRATE(c->o.bitrate));
        opus_encoder_ctl(c->enc, OPUS_SET_INBAND_FEC(c->o.fec ? 1 : 0));
        opus_encoder_ctl(c->enc, OPUS_SET_PACKET_LOSS_PERC(c->o.loss_perc));
        opus_encoder_ctl(c->enc, OPUS_SET_DTX(c->o.dtx ? 1 : 0));
    }
    if (c->o.record != NULL) {
        c->rec = wav_create(c->o.record, err, err_len);
        if (c->rec == NULL)
            return -1;
    }
    return 0;
}

static void peer_free(struct call_peer *p)
{
    if (p == NULL)
        return;
    if (wav_close(p->wav) != 0)
        fprintf(stderr, "roost-cli: write error on the recording of %s\n", p->name);
    jbuf_free(p->jb);
    if (p->dec != NULL)
        opus_decoder_destroy(p->dec);
    free(p);
}

void call_audio_free(struct call *c)
{
    for (unsigned i = 0; i < c->n_peers; i++)
        peer_free(c->peers[i]);
    c->n_peers = 0;
    if (wav_close(c->rec) != 0) {
        fprintf(stderr, "roost-cli: write error on %s\n", c->o.record);
        c->exit_code = 2;
    }
    c->rec = NULL;
    if (c->enc != NULL)
        opus_encoder_destroy(c->enc);
    c->enc = NULL;
    free(c->src);
    c->src = NULL;
}

struct call_peer *call_peer_get(struct call *c, uint32_t id, bool create)
{
    for (unsigned i = 0; i < c->n_peers; i++)
        if (c->peers[i]->id == id)
            return c->peers[i];
    if (!create || c->n_peers == CALL_MAX_PEERS)
        return NULL;
    struct call_peer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->id = id;
    snprintf(p->name, sizeof(p->name), "%" PRIu32, id);
    c->peers[c->n_peers++] = p;
    c->seen_peer = true;
    return p;
}

void call_peer_media(struct call *c, const struct roost_media *m, uint64_t now)
{
    if (m->flags & ROOST_MEDIA_VIDEO)
        return;
    struct call_peer *p = call_peer_get(c, m->sender, true);
    if (p == NULL || p->left)
        return;
    if (p->jb == NULL) {
        struct jbuf_config cfg = {.rate = CALL_RATE,
                                  .frame_ts = CALL_FRAME,
                                  .min_delay_ms = c->o.jb_min_ms,
                                  .max_delay_ms = c->o.jb_max_ms};
        int oerr = 0;
        p->jb = jbuf_new(&cfg);
        p->dec = opus_decoder_create(CALL_RATE, 1, &oerr);
        if (p->jb == NULL || p->dec == NULL) {
            fprintf(stderr, "roost-cli: cannot set up the decoder for %s\n", p->name);
            jbuf_free(p->jb);
            p->jb = NULL;
            if (p->dec != NULL)
                opus_decoder_destroy(p->dec);
            p->dec = NULL;
            return;
        }
    }
    p->media_bytes += m->len;
    jbuf_put(p->jb, m->seq, m->timestamp, m->payload, m->len, now);
}

void call_peers_reap(struct call *c)
{
    for (unsigned i = 0; i < c->n_peers;) {
        struct call_peer *p = c->peers[i];
        if (p->left && (p->jb == NULL || jbuf_held(p->jb) == 0)) {
            call_summary_peer(c, p);
            peer_free(p);
            c->peers[i] = c->peers[--c->n_peers];
        } else {
            i++;
        }
    }
}

/* The next 20 ms of the source into pcm. */
static void source_frame(struct call *c, int16_t *pcm)
{
    memset(pcm, 0, CALL_FRAME * sizeof(*pcm));
    if (c->o.source == SRC_FILE) {
        size_t n = c->src_n - c->src_pos < CALL_FRAME ? c->src_n - c->src_pos : CALL_FRAME;
        memcpy(pcm, c->src + c->src_pos, n * sizeof(*pcm));
        c->src_pos += n;
        if (c->src_pos >= c->src_n)
            c->src_done = true;
    } else if (c->o.source == SRC_TONE) {
        for (int i = 0; i < CALL_FRAME; i++) {
            pcm[i] = (int16_t)(0.3 * 32767 * sin(c->phase));
            c->phase += 2 * M_PI * c->o.tone_hz / CALL_RATE;
            if (c->phase > 2 * M_PI)
                c->phase -= 2 * M_PI;
        }
    }
}

static void send_frame(struct call *c)
{
    int16_t pcm[CALL_FRAME];
    uint8_t *payload = c->dgram + ROOST_MEDIA_HDR_LEN;
    size_t cap = c->max_datagram > ROOST_MEDIA_HDR_LEN ? c->max_datagram - ROOST_MEDIA_HDR_LEN : 0;
    if (cap > sizeof(c->dgram) - ROOST_MEDIA_HDR_LEN)
        cap = sizeof(c->dgram) - ROOST_MEDIA_HDR_LEN;
    source_frame(c, pcm);
    opus_int32 len = opus_encode(c->enc, pcm, CALL_FRAME, payload, (opus_int32)cap);
    uint32_t ts = c->ts;
    c->ts += CALL_FRAME;
    if (len < 0) {
        c->send_errors++;
        return;
    }
    /* DTX: a packet of one or two bytes need not be sent (RFC 6716). */
    if (len <= 2) {
        c->dtx++;
        return;
    }
    struct roost_media m = {.stream_id = 0,
                            .flags = ROOST_MEDIA_START | ROOST_MEDIA_END,
                            .seq = c->seq,
                            .timestamp = ts};
    /* The number is used even when --drop skips the packet: the receivers
     * see a gap, as for a loss on the path. */
    c->seq++;
    if (c->o.drop > 0 && rnd01(&c->rng) < c->o.drop) {
        c->dropped++;
        return;
    }
    if (roost_media_header_write(&m, c->dgram, ROOST_MEDIA_HDR_LEN) < 0) {
        c->send_errors++;
        return;
    }
    int rc = roost_conn_send_datagram(roost_session_conn(c->s), c->dgram,
                                      ROOST_MEDIA_HDR_LEN + (size_t)len);
    if (rc == 0) {
        c->sent++;
        c->sent_bytes += (uint64_t)len;
    } else {
        c->send_errors++;
    }
}

static int decode(struct call_peer *p, const struct jbuf_out *o, int16_t *pcm)
{
    int n;
    switch (o->kind) {
    case JBUF_FRAME:
        n = opus_decode(p->dec, o->data, (opus_int32)o->len, pcm, CALL_FRAME, 0);
        break;
    case JBUF_FEC:
        n = opus_decode(p->dec, o->data, (opus_int32)o->len, pcm, CALL_FRAME, 1);
        break;
    case JBUF_PLC:
        n = opus_decode(p->dec, NULL, 0, pcm, CALL_FRAME, 0);
        break;
    default:
        n = 0;
    }
    if (n < 0) /* a bad packet: conceal it */
        n = opus_decode(p->dec, NULL, 0, pcm, CALL_FRAME, 0);
    if (n < 0)
        n = 0;
    if (n < CALL_FRAME)
        memset(pcm + n, 0, (size_t)(CALL_FRAME - n) * sizeof(*pcm));
    return n;
}

static void peer_record(struct call *c, struct call_peer *p, const int16_t *pcm)
{
    if (c->o.record_dir == NULL)
        return;
    if (p->wav == NULL) {
        char path[4096], err[512];
        /* The id first: names are not unique and may hold any character. */
        char safe[65];
        size_t k = 0;
        for (const char *q = p->name; *q != '\0' && k < sizeof(safe) - 1; q++)
            safe[k++] = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                                (*q >= '0' && *q <= '9') || *q == '-' || *q == '_'
                            ? *q
                            : '_';
        safe[k] = '\0';
        snprintf(path, sizeof(path), "%s/%" PRIu32 "-%s.wav", c->o.record_dir, p->id, safe);
        p->wav = wav_create(path, err, sizeof(err));
        if (p->wav == NULL) {
            fprintf(stderr, "roost-cli: %s\n", err);
            c->o.record_dir = NULL; /* say it once */
            return;
        }
    }
    if (wav_write(p->wav, pcm, CALL_FRAME) != 0)
        c->exit_code = 2;
}

void call_tick(struct call *c, uint64_t now)
{
    c->ticks++;
    if (c->enc != NULL && !c->src_done && !c->leaving)
        send_frame(c);
    int32_t mix[CALL_FRAME] = {0};
    for (unsigned i = 0; i < c->n_peers; i++) {
        struct call_peer *p = c->peers[i];
        if (p->jb == NULL)
            continue;
        struct jbuf_out o;
        jbuf_get(p->jb, now, &o);
        if (o.kind == JBUF_SILENCE)
            continue;
        int16_t pcm[CALL_FRAME];
        decode(p, &o, pcm);
        for (int k = 0; k < CALL_FRAME; k++)
            mix[k] += pcm[k];
        peer_record(c, p, pcm);
    }
    if (c->rec != NULL) {
        int16_t out[CALL_FRAME];
        for (int k = 0; k < CALL_FRAME; k++)
            out[k] = (int16_t)(mix[k] > 32767 ? 32767 : mix[k] < -32768 ? -32768 : mix[k]);
        if (wav_write(c->rec, out, CALL_FRAME) != 0)
            c->exit_code = 2;
    }
}

static double pct(uint64_t part, uint64_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0;
}

void call_status(struct call *c, uint64_t elapsed_ns)
{
    char line[2048];
    size_t n = 0;
    struct roost_conn_stats cs;
    roost_conn_stats(roost_session_conn(c->s), &cs);
    double rtt_ms = c->own_rtt_us != 0 ? c->own_rtt_us / 1000.0 : (double)cs.srtt_ns / 1e6;
    unsigned present = 0;
    for (unsigned i = 0; i < c->n_peers; i++)
        present += !c->peers[i]->left;
    n += (size_t)snprintf(line + n, sizeof(line) - n, "%5.0fs  peers %u  rtt %.1f ms",
                          (double)elapsed_ns / 1e9, present, rtt_ms);
    if (c->enc != NULL)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "  send %.0f kbit/s",
                              (double)(c->sent_bytes - c->prev_sent_bytes) * 8 / 1000);
    c->prev_sent_bytes = c->sent_bytes;
    for (unsigned i = 0; i < c->n_peers && n < sizeof(line) - 1; i++) {
        struct call_peer *p = c->peers[i];
        if (p->jb == NULL)
            continue;
        struct jbuf_stats st;
        jbuf_stats(p->jb, &st);
        uint64_t exp = st.expected - p->prev.expected, lost = st.lost - p->prev.lost;
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              "  | %s: loss %.1f%% jitter %.1f ms buf %u ms %.0f kbit/s", p->name,
                              pct(lost, exp), st.jitter_ms, st.delay_ms,
                              (double)(p->media_bytes - p->prev_bytes) * 8 / 1000);
        p->prev = st;
        p->prev_bytes = p->media_bytes;
    }
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    if (c->tty)
        fprintf(stderr, "\r\033[K%.*s", (int)n, line);
    else
        fprintf(stderr, "status %.*s\n", (int)n, line);
    fflush(stderr);
}

void call_summary_peer(struct call *c, const struct call_peer *p)
{
    (void)c;
    if (p->jb == NULL)
        return;
    struct jbuf_stats st;
    jbuf_stats(p->jb, &st);
    printf("summary peer=%" PRIu32 " name=%s received=%" PRIu64 " expected=%" PRIu64
           " lost=%" PRIu64 " late=%" PRIu64 " dup=%" PRIu64 " fec=%" PRIu64 " plc=%" PRIu64
           " stretches=%" PRIu64 " shrinks=%" PRIu64 " skips=%" PRIu64 " resyncs=%" PRIu64
           " jitter_ms=%.2f delay_ms=%u target_ms=%u\n",
           p->id, p->name, st.received, st.expected, st.lost, st.late, st.dup, st.fec, st.plc,
           st.stretches, st.shrinks, st.skips, st.resyncs, st.jitter_ms, st.delay_ms, st.target_ms);
    fflush(stdout);
}

void call_summary(struct call *c)
{
    for (unsigned i = 0; i < c->n_peers; i++)
        call_summary_peer(c, c->peers[i]);
    if (c->enc != NULL)
        printf("summary sent=%" PRIu64 " dropped=%" PRIu64 " dtx=%" PRIu64 " bytes=%" PRIu64
               " errors=%" PRIu64 "\n",
               c->sent, c->dropped, c->dtx, c->sent_bytes, c->send_errors);
    fflush(stdout);
}
