/* The native participant of the browser test (test/browser/run.mjs): a
 * libroost-client session that joins a room over QUIC, sends a WAV file
 * as Opus (48 kHz mono, 20 ms frames, in real time, looping) and records
 * what one other participant sends into a WAV file, each decoded frame
 * placed by its media timestamp (gaps stay silent), and lists the frames
 * it placed in FILE.frames ("offset samples" per line) so that a gap can be
 * told from silence.
 *
 * It talks to the test on stdout, one event per line, and takes commands
 * on stdin, so the test waits for readiness instead of sleeping:
 *   joined ID                    in the room
 *   present ID NAME / left ID    presence
 *   media ID                     first media from ID
 *   recorded FRAMES              (on "stop") frames written to --record
 *   closed CODE                  the session ended
 * stdin: "stop" (or EOF): LEAVE, write the recording, print, exit 0.
 *
 * Usage: peer --relay HOST:PORT --ca FILE --room R --token T --name N
 *             [--send WAV] [--record WAV] [--record-from NAME]
 * Exit: 0 after stop, 1 on usage or I/O errors, 2 when the session failed
 * (join rejected, closed by the relay). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <opus.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"

#define RATE 48000
#define FRAME 960 /* 20 ms */
#define FRAME_NS 20000000ULL
#define RECORD_MAX_S 120
#define MAX_PEERS 32

struct peer {
    uint32_t id;
    char name[65];
    bool seen_media;
};

struct app {
    struct roost_client *cl;
    struct roost_session *s;
    OpusEncoder *enc;
    OpusDecoder *dec;
    int16_t *src; /* the WAV to send */
    size_t src_len, src_pos;
    uint32_t ts;
    const char *record_from; /* NULL: the first sender */
    uint32_t rec_id;         /* the participant recorded, 0: none yet */
    uint32_t rec_ts0;
    int16_t *rec;
    FILE *frames_log; /* --record FILE: FILE.frames, "offset samples" per decoded frame */
    size_t rec_len;   /* samples written (the end of the furthest frame) */
    uint64_t rec_frames;
    bool joined, closed, failed, stopped;
    struct peer peers[MAX_PEERS];
    unsigned n_peers;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static struct peer *peer_get(struct app *a, uint32_t id, bool add)
{
    for (unsigned i = 0; i < a->n_peers; i++)
        if (a->peers[i].id == id)
            return &a->peers[i];
    if (!add || a->n_peers == MAX_PEERS)
        return NULL;
    struct peer *p = &a->peers[a->n_peers++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    return p;
}

/* ------------------------------------------------------------------ WAV */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads a 16-bit PCM mono 48 kHz WAV. Returns 0 or -1 (message printed). */
static int wav_read(const char *path, int16_t **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "peer: %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t h[12], ch[8];
    int rc = -1;
    bool fmt_ok = false;
    if (fread(h, 1, 12, f) != 12 || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0)
        goto out;
    while (fread(ch, 1, 8, f) == 8) {
        uint32_t len = le32(ch + 4);
        if (memcmp(ch, "fmt ", 4) == 0) {
            uint8_t fm[16];
            if (len < 16 || fread(fm, 1, 16, f) != 16)
                goto out;
            fmt_ok = fm[0] == 1 && fm[2] == 1 && le32(fm + 4) == RATE && fm[14] == 16;
            if (fseek(f, (long)(len - 16 + (len & 1)), SEEK_CUR) != 0)
                goto out;
        } else if (memcmp(ch, "data", 4) == 0) {
            if (!fmt_ok)
                goto out;
            *n = len / 2;
            *out = malloc(*n * 2 + 2);
            if (*out == NULL || fread(*out, 2, *n, f) != *n)
                goto out;
            rc = 0; /* little-endian host assumed (x86, arm64) */
            goto out;
        } else if (fseek(f, (long)(len + (len & 1)), SEEK_CUR) != 0) {
            goto out;
        }
    }
out:
    if (rc != 0)
        fprintf(stderr, "peer: %s: not a 16-bit mono %d Hz PCM WAV\n", path, RATE);
    fclose(f);
    return rc;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int wav_write(const char *path, const int16_t *pcm, size_t n)
{
    uint8_t h[44];
    memcpy(h, "RIFF", 4);
    put32(h + 4, (uint32_t)(36 + n * 2));
    memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);
    h[20] = 1, h[21] = 0, h[22] = 1, h[23] = 0; /* PCM, mono */
    put32(h + 24, RATE);
    put32(h + 28, RATE * 2);
    h[32] = 2, h[33] = 0, h[34] = 16, h[35] = 0;
    memcpy(h + 36, "data", 4);
    put32(h + 40, (uint32_t)(n * 2));
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(h, 1, 44, f) != 44 || (n > 0 && fwrite(pcm, 2, n, f) != n)) {
        fprintf(stderr, "peer: %s: write failed\n", path);
        if (f != NULL)
            fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ callbacks */

static void on_joined(struct roost_session *s, const struct roost_joined *j, void *arg)
{
    (void)s;
    struct app *a = arg;
    a->joined = true;
    say("joined %u", j->self_id);
}

static void on_rejected(struct roost_session *s, uint32_t code, uint32_t retry_after_ms,
                        const char *reason, void *arg)
{
    (void)s;
    (void)retry_after_ms;
    struct app *a = arg;
    a->failed = true;
    fprintf(stderr, "peer: join rejected: %s (%s)\n", roost_error_code_name(code), reason);
}

static void on_presence(struct roost_session *s, const struct roost_presence *ev, void *arg)
{
    (void)s;
    struct app *a = arg;
    struct peer *p = peer_get(a, ev->participant_id, ev->kind == ROOST_PRESENCE_JOIN);
    if (ev->kind == ROOST_PRESENCE_JOIN) {
        if (p != NULL)
            snprintf(p->name, sizeof(p->name), "%s", ev->display_name);
        say("present %u %s", ev->participant_id, ev->display_name);
    } else {
        say("left %u", ev->participant_id);
    }
}

static void on_media(struct roost_session *s, const struct roost_media *m, void *arg)
{
    (void)s;
    struct app *a = arg;
    struct peer *p = peer_get(a, m->sender, false);
    if (p == NULL || m->stream_id != 0 || (m->flags & ROOST_MEDIA_VIDEO))
        return;
    if (!p->seen_media) {
        p->seen_media = true;
        say("media %u", m->sender);
    }
    if (a->rec == NULL)
        return;
    if (a->rec_id == 0) {
        if (a->record_from != NULL && strcmp(a->record_from, p->name) != 0)
            return;
        a->rec_id = m->sender;
        a->rec_ts0 = m->timestamp;
    }
    if (m->sender != a->rec_id)
        return;
    uint32_t off = m->timestamp - a->rec_ts0; /* wraps like the timestamps */
    if (off > (uint32_t)RECORD_MAX_S * RATE - FRAME * 6)
        return; /* before the first frame, or past the end */
    int n = opus_decode(a->dec, m->payload, (opus_int32)m->len, a->rec + off, FRAME * 6, 0);
    if (n <= 0)
        return;
    if (a->frames_log != NULL)
        fprintf(a->frames_log, "%u %d\n", off, n);
    a->rec_frames++;
    if (off + (size_t)n > a->rec_len)
        a->rec_len = off + (size_t)n;
}

static void on_close(struct roost_session *s, const struct roost_close_info *info, void *arg)
{
    (void)s;
    struct app *a = arg;
    a->closed = true;
    say("closed %s", info->app ? roost_error_code_name(info->code) : "transport");
}

static const struct roost_session_callbacks cbs = {
    .on_joined = on_joined,
    .on_rejected = on_rejected,
    .on_presence = on_presence,
    .on_media = on_media,
    .on_close = on_close,
};

static void send_frame(struct app *a)
{
    int16_t pcm[FRAME];
    for (int i = 0; i < FRAME; i++) {
        pcm[i] = a->src[a->src_pos++];
        if (a->src_pos == a->src_len)
            a->src_pos = 0;
    }
    unsigned char out[1500];
    opus_int32 n = opus_encode(a->enc, pcm, FRAME, out, sizeof(out));
    if (n > 0) {
        int rc =
            roost_session_send(a->s, 0, ROOST_MEDIA_START | ROOST_MEDIA_END, a->ts, out, (size_t)n);
        if (rc < 0 && rc != ROOST_ERR_FULL)
            fprintf(stderr, "peer: send: %s\n", roost_strerror(rc));
    }
    a->ts += FRAME;
}

/* Reads stdin; returns true on "stop" or EOF. */
static bool stdin_stop(void)
{
    char buf[256];
    ssize_t n = read(0, buf, sizeof(buf) - 1);
    if (n <= 0)
        return n == 0 || (errno != EAGAIN && errno != EINTR);
    buf[n] = '\0';
    return strstr(buf, "stop") != NULL;
}

static void run(struct app *a)
{
    uint64_t next = 0, leave_by = 0;
    bool stop = false;
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    for (;;) {
        uint64_t now = roost_client_now();
        if (a->closed || a->failed)
            break;
        if (stop && leave_by == 0) {
            if (!a->joined || roost_session_leave(a->s) < 0)
                break;
            leave_by = now + 2000000000ULL;
        }
        if (leave_by != 0 && now >= leave_by)
            break;
        if (a->joined && a->src != NULL && leave_by == 0 && now >= next) {
            send_frame(a);
            next = next == 0 || now - next > 5 * FRAME_NS ? now + FRAME_NS : next + FRAME_NS;
        }
        roost_client_process(a->cl, now);
        now = roost_client_now();
        uint64_t wait = roost_client_next_timeout(a->cl, now);
        if (a->joined && a->src != NULL && leave_by == 0 && next > now && next - now < wait)
            wait = next - now;
        if (wait > 100000000ULL)
            wait = 100000000ULL;
        struct pollfd pfd[2] = {{.fd = roost_client_fd(a->cl), .events = POLLIN},
                                {.fd = 0, .events = stop ? 0 : POLLIN}};
        poll(pfd, 2, (int)((wait + 999999) / 1000000));
        if (!stop && (pfd[1].revents & (POLLIN | POLLHUP)))
            a->stopped = stop = stdin_stop();
        roost_client_process(a->cl, roost_client_now());
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"relay", required_argument, NULL, 'r'},
        {"ca", required_argument, NULL, 'c'},
        {"room", required_argument, NULL, 'R'},
        {"token", required_argument, NULL, 't'},
        {"name", required_argument, NULL, 'n'},
        {"send", required_argument, NULL, 's'},
        {"record", required_argument, NULL, 'w'},
        {"record-from", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char *relay = NULL, *ca = NULL, *room = NULL, *token = "", *name = "native";
    const char *send = NULL, *record = NULL;
    static struct app a;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'r':
            relay = optarg;
            break;
        case 'c':
            ca = optarg;
            break;
        case 'R':
            room = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 's':
            send = optarg;
            break;
        case 'w':
            record = optarg;
            break;
        case 'f':
            a.record_from = optarg;
            break;
        default:
            return 1;
        }
    }
    const char *colon = relay != NULL ? strrchr(relay, ':') : NULL;
    if (colon == NULL || ca == NULL || room == NULL) {
        fprintf(stderr, "usage: peer --relay HOST:PORT --ca FILE --room R --token T --name N\n"
                        "            [--send WAV] [--record WAV] [--record-from NAME]\n");
        return 1;
    }
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - relay), relay);
    uint16_t port = (uint16_t)atoi(colon + 1);

    int err;
    if (send != NULL) {
        if (wav_read(send, &a.src, &a.src_len) != 0 || a.src_len < FRAME)
            return 1;
        a.enc = opus_encoder_create(RATE, 1, OPUS_APPLICATION_VOIP, &err);
        if (a.enc == NULL)
            return 1;
        opus_encoder_ctl(a.enc, OPUS_SET_BITRATE(32000));
    }
    if (record != NULL) {
        a.rec = calloc((size_t)RECORD_MAX_S * RATE, sizeof(int16_t));
        a.dec = opus_decoder_create(RATE, 1, &err);
        char path[4096];
        snprintf(path, sizeof(path), "%s.frames", record);
        a.frames_log = fopen(path, "w");
        if (a.rec == NULL || a.dec == NULL || a.frames_log == NULL)
            return 1;
    }
    struct roost_client_config cc = {.ca_file = ca};
    int rc = roost_client_new(&a.cl, &cc, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "peer: client: %s\n", roost_strerror(rc));
        return 1;
    }
    struct roost_session_config sc = {
        .room = room, .token = token, .display_name = name, .client_name = "roost-browser-peer/1"};
    rc = roost_session_new(&a.s, a.cl, host, port, &sc, &cbs, &a);
    if (rc < 0) {
        fprintf(stderr, "peer: session: %s\n", roost_strerror(rc));
        return 1;
    }
    run(&a);
    bool ok = a.joined && !a.failed && a.stopped;
    if (record != NULL) {
        if (wav_write(record, a.rec, a.rec_len) != 0)
            ok = false;
        say("recorded %llu", (unsigned long long)a.rec_frames);
    }
    roost_session_del(a.s);
    roost_client_del(a.cl);
    if (a.enc != NULL)
        opus_encoder_destroy(a.enc);
    if (a.dec != NULL)
        opus_decoder_destroy(a.dec);
    if (a.frames_log != NULL && fclose(a.frames_log) != 0)
        ok = false;
    free(a.src);
    free(a.rec);
    return ok ? 0 : 2;
}
