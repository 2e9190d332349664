/* tone: a minimal libroost-client application.
 *
 * Joins a room on a roost relay, sends a sine tone as Opus (48 kHz mono,
 * 20 ms frames) for --duration seconds, and prints who speaks: presence
 * events, and a "speaking:" line when media from a participant starts
 * again after a pause (with the level of its decoded audio). Then LEAVE.
 *
 * Build against an installed libroost-client:
 *   cc -o tone tone.c $(pkg-config --cflags --libs roost-client opus) -lm
 *
 * Run (a relay from `make run`, a token from roost-cli token):
 *   ./tone --relay 127.0.0.1:4433 --ca build/state/ca.pem --room demo \
 *          --token "$TOKEN" --name alice --hz 440 --duration 10
 *
 * Two ways to drive the library, both shown: the default is the
 * application's own loop (poll on roost_client_fd, roost_client_process);
 * --threaded runs the library's thread (roost_client_run) and sends from
 * the main thread under roost_client_lock. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <opus.h>
#include <poll.h>
#include <roost/client.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RATE 48000
#define FRAME 960 /* 20 ms */
#define FRAME_NS 20000000ULL
#define PAUSE_NS 300000000ULL /* a gap this long ends a talk spurt */
#define MAX_PEERS 64

struct peer {
    uint32_t id;
    char name[65];
    uint64_t last_ns; /* last media, 0: none yet */
    uint64_t frames;
    OpusDecoder *dec;
};

struct app {
    struct roost_client *cl;
    struct roost_session *s;
    OpusEncoder *enc;
    double hz, phase;
    uint32_t ts;
    bool joined, closed, failed;
    struct peer peers[MAX_PEERS];
    unsigned n_peers;
};

static struct peer *peer_get(struct app *a, uint32_t id)
{
    for (unsigned i = 0; i < a->n_peers; i++)
        if (a->peers[i].id == id)
            return &a->peers[i];
    if (a->n_peers == MAX_PEERS)
        return NULL;
    struct peer *p = &a->peers[a->n_peers++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    snprintf(p->name, sizeof(p->name), "#%u", id);
    return p;
}

/* ------------------------------------------------------------ callbacks */

static void on_joined(struct roost_session *s, const struct roost_joined *j, void *arg)
{
    (void)s;
    struct app *a = arg;
    a->joined = true;
    printf("joined as id %u (%u others, %s)\n", j->self_id, j->member_total,
           (j->permissions & ROOST_PERM_PUBLISH) ? "may publish" : "listen only");
    fflush(stdout);
}

static void on_rejected(struct roost_session *s, uint32_t code, uint32_t retry_after_ms,
                        const char *reason, void *arg)
{
    (void)s;
    (void)retry_after_ms;
    struct app *a = arg;
    a->failed = true;
    fprintf(stderr, "tone: join rejected: %s (%s)\n", roost_error_code_name(code), reason);
}

static void on_presence(struct roost_session *s, const struct roost_presence *ev, void *arg)
{
    (void)s;
    struct app *a = arg;
    struct peer *p = peer_get(a, ev->participant_id);
    if (p != NULL && ev->kind == ROOST_PRESENCE_JOIN && ev->display_name[0] != '\0')
        snprintf(p->name, sizeof(p->name), "%s", ev->display_name);
    printf("%s: %s (id %u)\n", ev->kind == ROOST_PRESENCE_JOIN ? "present" : "left",
           p != NULL ? p->name : ev->display_name, ev->participant_id);
    fflush(stdout);
}

static void on_media(struct roost_session *s, const struct roost_media *m, void *arg)
{
    (void)s;
    struct app *a = arg;
    struct peer *p = peer_get(a, m->sender);
    if (p == NULL)
        return;
    if (p->dec == NULL) {
        int err;
        p->dec = opus_decoder_create(RATE, 1, &err);
        if (p->dec == NULL)
            return;
    }
    opus_int16 pcm[FRAME * 6];
    int n = opus_decode(p->dec, m->payload, (opus_int32)m->len, pcm, FRAME * 6, 0);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)pcm[i] * pcm[i];
    double dbfs = n > 0 && sum > 0 ? 10 * log10(sum / n / (32768.0 * 32768.0)) : -120;
    uint64_t now = roost_client_now();
    if (p->last_ns == 0 || now - p->last_ns > PAUSE_NS) {
        printf("speaking: %s (id %u, %.0f dBFS)\n", p->name, p->id, dbfs);
        fflush(stdout);
    }
    p->last_ns = now;
    p->frames++;
}

static void on_quality(struct roost_session *s, const struct roost_quality *q, void *arg)
{
    (void)arg;
    if (q->participant_id == roost_session_id(s) && !q->summary)
        printf("quality: rtt %u us, loss %u permille\n", q->rtt_us, q->loss_permille);
}

static void on_keyframe_request(struct roost_session *s, uint32_t requester, uint8_t stream_id,
                                void *arg)
{
    (void)s;
    (void)arg;
    /* Every Opus frame is independently decodable: nothing to do. */
    printf("keyframe request from %u for stream %u\n", requester, stream_id);
}

static void on_close(struct roost_session *s, const struct roost_close_info *info, void *arg)
{
    (void)s;
    struct app *a = arg;
    a->closed = true;
    if (info->app && info->code != 0)
        fprintf(stderr, "tone: closed by %s: %s\n", info->remote ? "relay" : "us",
                roost_error_code_name(info->code));
}

static const struct roost_session_callbacks cbs = {
    .on_joined = on_joined,
    .on_rejected = on_rejected,
    .on_presence = on_presence,
    .on_media = on_media,
    .on_quality = on_quality,
    .on_keyframe_request = on_keyframe_request,
    .on_close = on_close,
};

/* ------------------------------------------------------------- sending */

/* Encodes and sends the next 20 ms of tone. */
static void send_frame(struct app *a)
{
    opus_int16 pcm[FRAME];
    for (int i = 0; i < FRAME; i++) {
        pcm[i] = (opus_int16)(0.3 * 32767 * sin(a->phase));
        a->phase += 2 * M_PI * a->hz / RATE;
    }
    a->phase = fmod(a->phase, 2 * M_PI);
    unsigned char out[1500];
    opus_int32 n = opus_encode(a->enc, pcm, FRAME, out, sizeof(out));
    if (n > 0) {
        int rc =
            roost_session_send(a->s, 0, ROOST_MEDIA_START | ROOST_MEDIA_END, a->ts, out, (size_t)n);
        if (rc < 0 && rc != ROOST_ERR_FULL)
            fprintf(stderr, "tone: send: %s\n", roost_strerror(rc));
    }
    a->ts += FRAME;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ULL),
                          .tv_nsec = (long)(t % 1000000000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* The application's own loop: poll the library's fd with the earlier of
 * its timer and our next frame. */
static void run_loop(struct app *a, uint64_t end)
{
    uint64_t next = 0, leave_by = 0;
    for (;;) {
        uint64_t now = roost_client_now();
        if (a->closed || a->failed)
            break;
        if (leave_by == 0 && (now >= end || (!a->joined && now >= end + 5000000000ULL))) {
            if (roost_session_leave(a->s) < 0)
                break;
            leave_by = now + 2000000000ULL;
        }
        if (leave_by != 0 && now >= leave_by)
            break;
        if (a->joined && leave_by == 0 && now >= next) {
            send_frame(a);
            next = next == 0 || now - next > 5 * FRAME_NS ? now + FRAME_NS : next + FRAME_NS;
        }
        roost_client_process(a->cl, now); /* sends what send_frame queued */
        now = roost_client_now();
        uint64_t wait = roost_client_next_timeout(a->cl, now);
        if (a->joined && leave_by == 0 && next > now && next - now < wait)
            wait = next - now;
        if (wait > 100000000ULL)
            wait = 100000000ULL;
        struct pollfd pfd = {.fd = roost_client_fd(a->cl), .events = POLLIN};
        poll(&pfd, 1, (int)((wait + 999999) / 1000000));
        roost_client_process(a->cl, roost_client_now());
    }
}

/* Thread mode: the library's thread receives and runs the callbacks; this
 * thread sends, taking the endpoint lock for each call. */
static void run_threaded(struct app *a, uint64_t end)
{
    if (roost_client_run(a->cl) < 0) {
        fprintf(stderr, "tone: cannot start the client thread\n");
        a->failed = true;
        return;
    }
    uint64_t next = roost_client_now();
    for (;;) {
        roost_client_lock(a->cl);
        bool done = a->closed || a->failed;
        if (!done && a->joined)
            send_frame(a);
        roost_client_unlock(a->cl);
        if (done || roost_client_now() >= end)
            break;
        next += FRAME_NS;
        sleep_until(next);
    }
    roost_client_lock(a->cl);
    int rc = a->closed ? -1 : roost_session_leave(a->s);
    roost_client_unlock(a->cl);
    for (int i = 0; rc == 0 && i < 200; i++) {
        roost_client_lock(a->cl);
        bool closed = a->closed;
        roost_client_unlock(a->cl);
        if (closed)
            break;
        sleep_until(roost_client_now() + 10000000ULL);
    }
    roost_client_stop(a->cl);
}

static void usage(FILE *f)
{
    fputs("usage: tone --relay HOST:PORT (--ca FILE | --pin FILE) --room R --token T\n"
          "            [--name NAME] [--hz HZ] [--duration SECONDS] [--threaded]\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"relay", required_argument, NULL, 'r'},
        {"ca", required_argument, NULL, 'c'},
        {"pin", required_argument, NULL, 'p'},
        {"room", required_argument, NULL, 'R'},
        {"token", required_argument, NULL, 't'},
        {"name", required_argument, NULL, 'n'},
        {"hz", required_argument, NULL, 'z'},
        {"duration", required_argument, NULL, 'd'},
        {"threaded", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *relay = NULL, *ca = NULL, *pin = NULL, *room = NULL, *token = NULL, *name = "tone";
    double hz = 440, duration = 5;
    bool threaded = false;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'r':
            relay = optarg;
            break;
        case 'c':
            ca = optarg;
            break;
        case 'p':
            pin = optarg;
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
        case 'z':
            hz = atof(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'T':
            threaded = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    char host[64];
    const char *colon = relay != NULL ? strrchr(relay, ':') : NULL;
    if (colon == NULL || (ca == NULL) == (pin == NULL) || room == NULL || token == NULL ||
        (size_t)(colon - relay) >= sizeof(host) || hz <= 0 || duration <= 0) {
        usage(stderr);
        return 1;
    }
    memcpy(host, relay, (size_t)(colon - relay));
    host[colon - relay] = '\0';
    uint16_t port = (uint16_t)atoi(colon + 1);

    struct app a = {.hz = hz};
    int err;
    a.enc = opus_encoder_create(RATE, 1, OPUS_APPLICATION_VOIP, &err);
    if (a.enc == NULL) {
        fprintf(stderr, "tone: opus: %s\n", opus_strerror(err));
        return 2;
    }
    opus_encoder_ctl(a.enc, OPUS_SET_BITRATE(24000));

    /* cbs NULL: a session endpoint. */
    struct roost_client_config cc = {.ca_file = ca, .pinned_cert = pin};
    int rc = roost_client_new(&a.cl, &cc, NULL, NULL);
    if (rc == 0) {
        struct roost_session_config sc = {.room = room,
                                          .token = token,
                                          .display_name = name,
                                          .client_name = "roost-tone-example"};
        rc = roost_session_new(&a.s, a.cl, host, port, &sc, &cbs, &a);
    }
    if (rc < 0) {
        fprintf(stderr, "tone: %s\n", roost_strerror(rc));
        roost_client_del(a.cl);
        opus_encoder_destroy(a.enc);
        return 2;
    }
    uint64_t end = roost_client_now() + (uint64_t)(duration * 1e9);
    if (threaded)
        run_threaded(&a, end);
    else
        run_loop(&a, end);

    for (unsigned i = 0; i < a.n_peers; i++) {
        printf("heard: %s (id %u) %llu frames\n", a.peers[i].name, a.peers[i].id,
               (unsigned long long)a.peers[i].frames);
        if (a.peers[i].dec != NULL)
            opus_decoder_destroy(a.peers[i].dec);
    }
    bool ok = a.joined && !a.failed;
    roost_client_del(a.cl); /* frees the session too */
    opus_encoder_destroy(a.enc);
    return ok ? 0 : 2;
}
