/* roost-cli call: options, the session's callbacks and the event loop.
 * One thread: poll on the endpoint's fd until the next 20 ms tick, the
 * library's next timer or the next status line, whichever is first; each
 * tick is one frame period (callaudio.c). The ticks follow the clock: a
 * late wake-up runs the missed ticks at once, so send and playout keep the
 * media rate on a loaded machine. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/token.h"
#include "relay/cli/call.h"
#include "relay/cli/call_int.h"

#define STATUS_NS 1000000000ull
#define LEAVE_WAIT_NS 2000000000ull /* LEAVE, then close after this at most */
#define TAIL_TICKS 10               /* after --send ends: let the last packets out */

enum call_exit {
    CALL_OK = 0,
    CALL_USAGE = 1,
    CALL_FILE = 2,    /* WAV file unreadable or unwritable */
    CALL_CONNECT = 3, /* cannot connect, join rejected, connection lost */
    CALL_INTERNAL = 9,
};

const char call_usage_text[] =
    "  call --relay HOST:PORT (--ca FILE | --pin FILE) --token T [--room R] [--name N]\n"
    "       [--send IN.wav | --tone HZ | --silence] [--record OUT.wav] [--record-dir DIR]\n"
    "       [--duration DUR] [--exit-when-alone] [--drop P] [--seed N] [--bitrate BPS]\n"
    "       [--loss-perc N] [--no-fec] [--no-dtx] [--jitter-min MS] [--jitter-max MS]\n"
    "       [--server-name NAME]\n"
    "      Join a room as a participant with audio: Opus 48 kHz mono, 20 ms frames\n"
    "      (VOIP, in-band FEC, DTX). Sends IN.wav once (48 kHz mono), a sine tone or\n"
    "      silence; without any of them it only listens. Every sender is played\n"
    "      through its own adaptive jitter buffer (loss concealed with the next\n"
    "      packet's FEC, else Opus PLC); --record writes the mix, --record-dir one\n"
    "      DIR/<id>-<name>.wav per sender. --room defaults to the token's room. A\n"
    "      status line once a second on stderr (participants, per-sender loss,\n"
    "      jitter, buffer delay, bitrate, RTT); 'ready id=...' on stdout once joined\n"
    "      and 'summary ...' lines at the end. Leaves (LEAVE, then close) on\n"
    "      Ctrl-C/SIGTERM, after --duration (DUR: seconds, or 1.5s, 2m, 1h), when\n"
    "      IN.wav has been sent, or with --exit-when-alone once every other\n"
    "      participant has left and been played out. --drop P skips a random share P\n"
    "      of the sent packets (seeded by --seed; their sequence numbers are used,\n"
    "      as for a loss on the path). --loss-perc tells the encoder the loss to\n"
    "      expect (default 10): it sizes the FEC. Defaults: --bitrate 32000,\n"
    "      --jitter-min 20, --jitter-max 400.\n"
    "      exit codes: 0 ok, 1 usage, 2 WAV file error, 3 connection or join\n"
    "      failed, 9 internal error\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "roost-cli: call: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'roost-cli --help'.\n");
    return CALL_USAGE;
}

/* "30", "1.5s", "2m", "1h". */
static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0))
        return -1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        v *= 60, end++;
    else if (*end == 'h')
        v *= 3600, end++;
    if (*end != '\0' || v > 1e7)
        return -1;
    *out = v;
    return 0;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* HOST:PORT or [V6]:PORT. host points into buf. */
static int parse_hostport(const char *s, char *buf, size_t cap, const char **host, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
        h++, hl -= 2;
    if (hl == 0 || hl >= cap)
        return -1;
    memcpy(buf, h, hl);
    buf[hl] = '\0';
    double p;
    if (parse_num(colon + 1, 1, 65535, &p) != 0 || p != floor(p))
        return -1;
    *host = buf;
    *port = (uint16_t)p;
    return 0;
}

/* The room named in a token's payload (not verified: the relay does). */
static int room_from_token(const char *tok, char *room, size_t cap)
{
    const char *a = strchr(tok, '.');
    const char *b = a != NULL ? strchr(a + 1, '.') : NULL;
    const char *e = b != NULL ? strchr(b + 1, '.') : NULL;
    if (e == NULL)
        return -1;
    uint8_t p[TOKEN_PAYLOAD_MAX];
    size_t n;
    if (token_b64url_decode(b + 1, (size_t)(e - b - 1), p, sizeof(p), &n) != 0)
        return -1;
    const size_t off = 1 + 1 + 8 + 8 + TOKEN_ID_LEN; /* version .. id, then room_len */
    if (n <= off || p[off] == 0 || off + 1 + p[off] > n || p[off] >= cap)
        return -1;
    memcpy(room, p + off + 1, p[off]);
    room[p[off]] = '\0';
    return 0;
}

/* ---------------------------------------------------------- callbacks */

static void on_joined(struct roost_session *s, const struct roost_joined *j, void *arg)
{
    (void)s;
    struct call *c = arg;
    c->joined = true;
    c->self_id = j->self_id;
    c->max_datagram = j->max_datagram;
    if (c->enc != NULL && !(j->permissions & ROOST_PERM_PUBLISH))
        fprintf(stderr, "roost-cli: the token does not allow publishing: listening only\n");
    printf("ready id=%" PRIu32 " others=%" PRIu32 "\n", j->self_id, j->member_total);
    fflush(stdout);
}

static void on_rejected(struct roost_session *s, uint32_t code, uint32_t retry_after_ms,
                        const char *reason, void *arg)
{
    (void)s;
    (void)retry_after_ms;
    struct call *c = arg;
    c->failed = true;
    fprintf(stderr, "roost-cli: join rejected: %s (%s)\n", roost_error_code_name(code), reason);
}

static void on_presence(struct roost_session *s, const struct roost_presence *ev, void *arg)
{
    (void)s;
    struct call *c = arg;
    struct call_peer *p = call_peer_get(c, ev->participant_id, ev->kind == ROOST_PRESENCE_JOIN);
    if (p != NULL && ev->kind == ROOST_PRESENCE_JOIN && ev->display_name[0] != '\0')
        snprintf(p->name, sizeof(p->name), "%s", ev->display_name);
    if (p != NULL && ev->kind == ROOST_PRESENCE_LEAVE)
        p->left = true;
    if (c->tty)
        fputs("\r\033[K", stderr);
    printf("%s id=%" PRIu32 " name=%s\n", ev->kind == ROOST_PRESENCE_JOIN ? "joined" : "left",
           ev->participant_id, p != NULL ? p->name : ev->display_name);
    fflush(stdout);
}

static void on_media(struct roost_session *s, const struct roost_media *m, void *arg)
{
    (void)s;
    call_peer_media(arg, m, roost_client_now());
}

static void on_quality(struct roost_session *s, const struct roost_quality *q, void *arg)
{
    struct call *c = arg;
    if (q->participant_id == roost_session_id(s) && !q->summary)
        c->own_rtt_us = q->rtt_us;
}

static void on_error(struct roost_session *s, uint32_t code, const char *text, void *arg)
{
    (void)s;
    (void)arg;
    fprintf(stderr, "roost-cli: relay error: %s (%s)\n", roost_error_code_name(code), text);
}

static void on_close(struct roost_session *s, const struct roost_close_info *info, void *arg)
{
    (void)s;
    struct call *c = arg;
    c->closed = true;
    c->joined = false;
    if (!c->leaving) {
        c->failed = true;
        fprintf(stderr, "roost-cli: connection closed (%s code 0x%" PRIx64 "%s%s)\n",
                info->app ? "application" : "transport", info->code, info->idle ? ", idle" : "",
                info->opened ? "" : ", before the handshake completed");
    }
}

static const struct roost_session_callbacks session_cbs = {
    .on_joined = on_joined,
    .on_rejected = on_rejected,
    .on_presence = on_presence,
    .on_media = on_media,
    .on_quality = on_quality,
    .on_error = on_error,
    .on_close = on_close,
};

/* ------------------------------------------------------------ options */

static int parse_opts(int argc, char **argv, struct call_opts *o, char *hostbuf, size_t hostcap)
{
    enum {
        O_RELAY = 256,
        O_CA,
        O_PIN,
        O_TOKEN,
        O_ROOM,
        O_NAME,
        O_SEND,
        O_TONE,
        O_SILENCE,
        O_RECORD,
        O_RECDIR,
        O_DURATION,
        O_DROP,
        O_SEED,
        O_BITRATE,
        O_LOSS,
        O_NOFEC,
        O_NODTX,
        O_JMIN,
        O_JMAX,
        O_SNI,
        O_ALONE,
        O_HELP,
    };
    static const struct option opts[] = {
        {"relay", required_argument, NULL, O_RELAY},
        {"ca", required_argument, NULL, O_CA},
        {"pin", required_argument, NULL, O_PIN},
        {"token", required_argument, NULL, O_TOKEN},
        {"room", required_argument, NULL, O_ROOM},
        {"name", required_argument, NULL, O_NAME},
        {"send", required_argument, NULL, O_SEND},
        {"tone", required_argument, NULL, O_TONE},
        {"silence", no_argument, NULL, O_SILENCE},
        {"record", required_argument, NULL, O_RECORD},
        {"record-dir", required_argument, NULL, O_RECDIR},
        {"duration", required_argument, NULL, O_DURATION},
        {"drop", required_argument, NULL, O_DROP},
        {"seed", required_argument, NULL, O_SEED},
        {"bitrate", required_argument, NULL, O_BITRATE},
        {"loss-perc", required_argument, NULL, O_LOSS},
        {"no-fec", no_argument, NULL, O_NOFEC},
        {"no-dtx", no_argument, NULL, O_NODTX},
        {"jitter-min", required_argument, NULL, O_JMIN},
        {"jitter-max", required_argument, NULL, O_JMAX},
        {"server-name", required_argument, NULL, O_SNI},
        {"exit-when-alone", no_argument, NULL, O_ALONE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (struct call_opts){.bitrate = 32000,
                            .loss_perc = 10,
                            .fec = true,
                            .dtx = true,
                            .seed = 1,
                            .jb_min_ms = 20,
                            .jb_max_ms = 400};
    const char *relay = NULL;
    unsigned sources = 0;
    double v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case O_RELAY:
            relay = optarg;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_PIN:
            o->pin = optarg;
            break;
        case O_TOKEN:
            o->token = optarg;
            break;
        case O_ROOM:
            o->room = optarg;
            break;
        case O_NAME:
            o->name = optarg;
            break;
        case O_SEND:
            o->source = SRC_FILE, o->send_path = optarg, sources++;
            break;
        case O_TONE:
            if (parse_num(optarg, 1, 20000, &o->tone_hz) != 0)
                return usage_error("bad --tone '%s' (1..20000 Hz)", optarg);
            o->source = SRC_TONE, sources++;
            break;
        case O_SILENCE:
            o->source = SRC_SILENCE, sources++;
            break;
        case O_RECORD:
            o->record = optarg;
            break;
        case O_RECDIR:
            o->record_dir = optarg;
            break;
        case O_DURATION:
            if (parse_seconds(optarg, &o->duration_s) != 0 || o->duration_s == 0)
                return usage_error("bad --duration '%s' (e.g. 30, 1.5s, 2m)", optarg);
            break;
        case O_DROP:
            if (parse_num(optarg, 0, 1, &o->drop) != 0)
                return usage_error("bad --drop '%s' (0..1)", optarg);
            break;
        case O_SEED:
            if (parse_num(optarg, 0, 1e15, &v) != 0)
                return usage_error("bad --seed '%s'", optarg);
            o->seed = (uint64_t)v;
            break;
        case O_BITRATE:
            if (parse_num(optarg, 6000, 510000, &v) != 0)
                return usage_error("bad --bitrate '%s' (6000..510000)", optarg);
            o->bitrate = (int)v;
            break;
        case O_LOSS:
            if (parse_num(optarg, 0, 100, &v) != 0)
                return usage_error("bad --loss-perc '%s' (0..100)", optarg);
            o->loss_perc = (int)v;
            break;
        case O_NOFEC:
            o->fec = false;
            break;
        case O_NODTX:
            o->dtx = false;
            break;
        case O_JMIN:
        case O_JMAX:
            if (parse_num(optarg, 1, 1200, &v) != 0)
                return usage_error("bad jitter buffer delay '%s' (1..1200 ms)", optarg);
            *(ch == O_JMIN ? &o->jb_min_ms : &o->jb_max_ms) = (uint32_t)v;
            break;
        case O_SNI:
            o->server_name = optarg;
            break;
        case O_ALONE:
            o->exit_when_alone = true;
            break;
        case O_HELP:
            fputs("usage: roost-cli call [options]\n\n", stdout);
            fputs(call_usage_text, stdout);
            return -1;
        default:
            return usage_error("%s", "bad option");
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (relay == NULL || o->token == NULL || (o->ca == NULL && o->pin == NULL))
        return usage_error("%s", "--relay, --token and --ca (or --pin) are required");
    if (sources > 1)
        return usage_error("%s", "--send, --tone and --silence exclude each other");
    if (parse_hostport(relay, hostbuf, hostcap, &o->host, &o->port) != 0)
        return usage_error("bad --relay '%s' (HOST:PORT, HOST a numeric address)", relay);
    if (o->jb_min_ms > o->jb_max_ms)
        return usage_error("%s", "--jitter-min above --jitter-max");
    return 0;
}

/* -------------------------------------------------------------- loop */

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t m = a < b ? a : b;
    return m < c ? m : c;
}

static void start_leave(struct call *c, uint64_t now)
{
    if (c->leaving)
        return;
    c->leaving = true;
    if (roost_session_leave(c->s) != 0)
        roost_session_close(c->s);
    c->leave_deadline = now + LEAVE_WAIT_NS;
}

static void run(struct call *c)
{
    uint64_t now = roost_client_now();
    uint64_t next_tick = 0, next_status = 0, start = 0, end = UINT64_MAX;
    unsigned tail = 0;
    while (!c->closed) {
        if (stop_signal != 0) {
            if (!c->joined || c->leaving) { /* not in yet, or a second Ctrl-C */
                c->leaving = true;
                roost_session_close(c->s);
                break;
            }
            start_leave(c, now);
            stop_signal = 0;
        }
        if (c->leaving && now >= c->leave_deadline) {
            roost_session_close(c->s);
            break;
        }
        if (c->failed)
            break;
        if (c->joined && start == 0) {
            start = now;
            next_tick = now;
            next_status = now + STATUS_NS;
            if (c->o.duration_s > 0)
                end = now + (uint64_t)(c->o.duration_s * 1e9);
        }
        if (c->joined && !c->leaving) {
            while (now >= next_tick) {
                call_tick(c, next_tick); /* nominal time: see jbuf_get */
                next_tick += CALL_FRAME_NS;
                if (now > next_tick + 50 * CALL_FRAME_NS) { /* stalled for a second: resync */
                    c->late_ticks++;
                    next_tick = now + CALL_FRAME_NS;
                }
            }
            call_peers_reap(c);
            if (now >= next_status) {
                call_status(c, now - start);
                next_status += STATUS_NS;
                if (next_status <= now)
                    next_status = now + STATUS_NS;
            }
            bool done = now >= end;
            if (c->src_done && ++tail > TAIL_TICKS)
                done = true;
            if (c->o.exit_when_alone && c->seen_peer && c->n_peers == 0)
                done = true;
            if (done)
                start_leave(c, now);
        }
        uint64_t lib = roost_client_next_timeout(c->cl, now);
        uint64_t wake = lib == UINT64_MAX ? UINT64_MAX : now + lib;
        if (c->joined && !c->leaving)
            wake = min3(wake, next_tick, next_status);
        if (c->leaving)
            wake = wake < c->leave_deadline ? wake : c->leave_deadline;
        uint64_t wait = wake > now ? wake - now : 0;
        if (wait > 100000000ull)
            wait = 100000000ull; /* check signals at least every 100 ms */
        struct pollfd pfd = {.fd = roost_client_fd(c->cl), .events = POLLIN};
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000ull),
                              .tv_nsec = (long)(wait % 1000000000ull)};
        ppoll(&pfd, 1, &ts, NULL);
        now = roost_client_now();
        if (roost_client_process(c->cl, now) != 0) {
            c->failed = true;
            break;
        }
        now = roost_client_now();
    }
    if (c->tty)
        fputs("\n", stderr);
}

int cmd_call(int argc, char **argv)
{
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CALL_INTERNAL;
    char hostbuf[256], err[1024], room[TOKEN_ROOM_MAX + 1];
    int rc = parse_opts(argc, argv, &c->o, hostbuf, sizeof(hostbuf));
    if (rc != 0) {
        free(c);
        return rc < 0 ? CALL_OK : rc;
    }
    if (c->o.room == NULL) {
        if (room_from_token(c->o.token, room, sizeof(room)) != 0) {
            free(c);
            return usage_error("%s", "cannot read the room from the token: give --room");
        }
        c->o.room = room;
    }
    c->tty = isatty(STDERR_FILENO) == 1;
    c->exit_code = CALL_OK;
    if (call_audio_init(c, err, sizeof(err)) != 0) {
        fprintf(stderr, "roost-cli: %s\n", err);
        call_audio_free(c);
        free(c);
        return CALL_FILE;
    }
    struct roost_client_config cfg = {
        .ca_file = c->o.ca, .pinned_cert = c->o.pin, .server_name = c->o.server_name};
    rc = roost_client_new(&c->cl, &cfg, NULL, NULL);
    if (rc == 0) {
        struct roost_session_config sc = {.room = c->o.room,
                                          .token = c->o.token,
                                          .display_name = c->o.name,
                                          .client_name = "roost-cli"};
        rc = roost_session_new(&c->s, c->cl, c->o.host, c->o.port, &sc, &session_cbs, c);
    }
    if (rc != 0) {
        fprintf(stderr, "roost-cli: cannot connect to %s:%u: %s\n", c->o.host, c->o.port,
                roost_strerror(rc));
        roost_client_del(c->cl);
        call_audio_free(c);
        free(c);
        return rc == ROOST_ERR_CRYPTO ? CALL_FILE : CALL_CONNECT;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    run(c);

    call_summary(c);
    int code = c->exit_code;
    if (c->failed && code == CALL_OK)
        code = CALL_CONNECT;
    roost_session_del(c->s);
    roost_client_del(c->cl);
    call_audio_free(c);
    if (c->exit_code != CALL_OK && code == CALL_OK)
        code = c->exit_code;
    free(c);
    return code;
}
