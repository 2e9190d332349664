/* prog_wsload: relay CPU per delivered frame, WebSocket listeners vs QUIC
 * listeners (docs/BENCHMARKS.md, issue 20). Not a test.
 *
 * Against a running roost-relay (its QUIC port, its ws_listen port, its
 * pid): R rooms, each with one QUIC speaker and M listeners of the chosen
 * transport; every speaker sends one packet (12-byte header + payload)
 * every frame period for the given time. The relay's CPU (utime + stime
 * from /proc/PID/stat) over the sending window plus a short drain, divided
 * by the frames the listeners received, is the figure. Everything else is
 * the same between the two transports, so the ratio of two runs is the
 * cost of the transport on the relay's egress path.
 *
 * Usage: prog_wsload --relay HOST:QPORT --ws-port P --relay-pid PID
 *          --token-key FILE --ca CA.pem [--transport quic|ws] [--plain]
 *          [--rooms R] [--listeners M] [--seconds S] [--frame-ms F]
 *          [--payload B]
 * Prints one JSON line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/participant.h"
#include "../common/ws_client.h"
#include "proto/keyfile.h"
#include "proto/media.h"
#include "proto/token.h"

static struct token_keyring keys;

static void mint(const char *room, const char *id, char *out, size_t cap)
{
    struct token_claims c;
    uint8_t tid[TOKEN_ID_LEN] = {7};
    uint64_t now = (uint64_t)time(NULL);
    if (token_claims_set(&c, room, strlen(room), id, strlen(id), TOKEN_PERM_ALL, now - 60,
                         now + 3600, tid) != 0 ||
        token_mint(token_keyring_signer(&keys), &c, out, cap) < 0) {
        fprintf(stderr, "prog_wsload: cannot mint a token\n");
        exit(2);
    }
}

/* utime + stime of pid, in clock ticks; -1 when unreadable. */
static long long proc_cpu(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* After ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

int main(int argc, char **argv)
{
    const char *relay = "127.0.0.1:4433", *key_file = NULL, *ca = NULL, *transport = "ws";
    unsigned ws_port = 0, rooms = 10, listeners = 4, seconds = 10, frame_ms = 20, payload = 80;
    long relay_pid = 0;
    bool plain = false;
    static const struct option opts[] = {
        {"relay", required_argument, NULL, 'r'},
        {"ws-port", required_argument, NULL, 'w'},
        {"relay-pid", required_argument, NULL, 'p'},
        {"token-key", required_argument, NULL, 'k'},
        {"ca", required_argument, NULL, 'c'},
        {"transport", required_argument, NULL, 't'},
        {"plain", no_argument, NULL, 'P'},
        {"rooms", required_argument, NULL, 'R'},
        {"listeners", required_argument, NULL, 'M'},
        {"seconds", required_argument, NULL, 's'},
        {"frame-ms", required_argument, NULL, 'f'},
        {"payload", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'r':
            relay = optarg;
            break;
        case 'w':
            ws_port = (unsigned)atoi(optarg);
            break;
        case 'p':
            relay_pid = atol(optarg);
            break;
        case 'k':
            key_file = optarg;
            break;
        case 'c':
            ca = optarg;
            break;
        case 't':
            transport = optarg;
            break;
        case 'P':
            plain = true;
            break;
        case 'R':
            rooms = (unsigned)atoi(optarg);
            break;
        case 'M':
            listeners = (unsigned)atoi(optarg);
            break;
        case 's':
            seconds = (unsigned)atoi(optarg);
            break;
        case 'f':
            frame_ms = (unsigned)atoi(optarg);
            break;
        case 'b':
            payload = (unsigned)atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    bool ws = strcmp(transport, "ws") == 0;
    char host[64];
    const char *colon = strrchr(relay, ':');
    if (key_file == NULL || ca == NULL || colon == NULL || relay_pid <= 0 ||
        (size_t)(colon - relay) >= sizeof(host) || (ws && ws_port == 0) || payload > 1000 ||
        rooms == 0 || frame_ms == 0) {
        fprintf(stderr, "prog_wsload: see the usage in test/integration/prog_wsload.c\n");
        return 2;
    }
    memcpy(host, relay, (size_t)(colon - relay));
    host[colon - relay] = '\0';
    uint16_t qport = (uint16_t)atoi(colon + 1);
    char err[256];
    if (keyfile_load(key_file, &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "prog_wsload: %s\n", err);
        return 2;
    }
    struct roost_client_config cc = {.ca_file = ca};
    struct roost_client *cl;
    if (roost_client_new(&cl, &cc, &part_cbs, NULL) != 0)
        return 2;
    unsigned nl = rooms * listeners;
    struct part *sp = calloc(rooms, sizeof(*sp));
    struct part *ql = ws ? NULL : calloc(nl, sizeof(*ql));
    struct wsp *wl = ws ? calloc(nl, sizeof(*wl)) : NULL;
    if (sp == NULL || (ws ? wl == NULL : ql == NULL))
        return 2;
    /* Listeners first, then the speakers. */
    for (unsigned i = 0; i < nl; i++) {
        char room[32], id[32];
        snprintf(room, sizeof(room), "load-%u", i / listeners);
        snprintf(id, sizeof(id), "l%u-%ld", i, (long)getpid());
        if (ws) {
            snprintf(wl[i].room, sizeof(wl[i].room), "%s", room);
            snprintf(wl[i].name, sizeof(wl[i].name), "%s", id);
            mint(room, id, wl[i].token, sizeof(wl[i].token));
            if (wsp_connect(&wl[i], host, (uint16_t)ws_port, plain ? NULL : ca, "/ws", 0, 10000) !=
                0) {
                fprintf(stderr, "prog_wsload: WebSocket connect %u failed\n", i);
                return 1;
            }
            /* Answer the earlier ones' WELCOME now: the relay wants JOIN
             * within its handshake timeout. */
            for (unsigned k = 0; k <= i; k++)
                (void)wsp_poll(&wl[k], 0);
        } else {
            snprintf(ql[i].room, sizeof(ql[i].room), "%s", room);
            snprintf(ql[i].name, sizeof(ql[i].name), "%s", id);
            mint(room, id, ql[i].token, sizeof(ql[i].token));
            if (part_connect(cl, qport, &ql[i]) != 0)
                return 1;
        }
    }
    for (unsigned r = 0; r < rooms; r++) {
        snprintf(sp[r].room, sizeof(sp[r].room), "load-%u", r);
        snprintf(sp[r].name, sizeof(sp[r].name), "s%u-%ld", r, (long)getpid());
        mint(sp[r].room, sp[r].name, sp[r].token, sizeof(sp[r].token));
        if (part_connect(cl, qport, &sp[r]) != 0)
            return 1;
    }
    /* Everyone joined. */
    uint64_t end = wsc_now_ms() + 60000;
    for (;;) {
        unsigned ok = 0;
        for (unsigned r = 0; r < rooms; r++)
            ok += sp[r].joined;
        for (unsigned i = 0; i < nl; i++)
            ok += ws ? wl[i].joined : ql[i].joined;
        if (ok == rooms + nl)
            break;
        if (wsc_now_ms() >= end) {
            fprintf(stderr, "prog_wsload: only %u of %u joined\n", ok, rooms + nl);
            return 1;
        }
        roost_client_step(cl, 1);
        for (unsigned i = 0; ws && i < nl; i++)
            (void)wsp_poll(&wl[i], 0);
    }
    uint64_t rx0 = 0;
    for (unsigned i = 0; i < nl; i++)
        rx0 += ws ? wl[i].n_media : ql[i].n_media;
    long long cpu0 = proc_cpu(relay_pid);
    uint64_t t0 = roost_client_now(), period = (uint64_t)frame_ms * 1000000u;
    uint64_t stop = t0 + (uint64_t)seconds * 1000000000u, next = t0;
    uint32_t seq = 0;
    uint8_t d[MEDIA_C2R_HDR_LEN + 1000];
    memset(d, 0x42, sizeof(d));
    uint64_t sent = 0;
    for (;;) {
        uint64_t now = roost_client_now();
        if (now >= stop + 500000000u) /* sending window, then a 500 ms drain */
            break;
        while (now >= next && next < stop) { /* catch up when late */
            seq++;
            struct media_hdr h = {.stream_id = 0, .seq = seq, .timestamp = seq * 960};
            media_c2r_encode(&h, d, sizeof(d));
            for (unsigned r = 0; r < rooms; r++)
                if (roost_conn_send_datagram(sp[r].c, d, MEDIA_C2R_HDR_LEN + payload) == 0)
                    sent++;
            next += period;
        }
        roost_client_step(cl, 0);
        for (unsigned i = 0; ws && i < nl; i++)
            (void)wsp_poll(&wl[i], 0);
        if (!ws)
            roost_client_step(cl, 1);
    }
    long long cpu1 = proc_cpu(relay_pid);
    uint64_t rx = 0;
    for (unsigned i = 0; i < nl; i++)
        rx += ws ? wl[i].n_media : ql[i].n_media;
    rx -= rx0;
    double cpu_s = (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK);
    printf("{\"transport\":\"%s\",\"rooms\":%u,\"listeners\":%u,\"seconds\":%u,\"frame_ms\":%u,"
           "\"payload\":%u,\"sent\":%llu,\"delivered\":%llu,\"expected\":%llu,"
           "\"relay_cpu_s\":%.2f,\"relay_cpu_us_per_frame\":%.3f}\n",
           transport, rooms, listeners, seconds, frame_ms, payload, (unsigned long long)sent,
           (unsigned long long)rx, (unsigned long long)(sent * listeners), cpu_s,
           rx ? cpu_s * 1e6 / (double)rx : 0.0);
    for (unsigned i = 0; ws && i < nl; i++)
        wsp_free(&wl[i]);
    roost_client_del(cl);
    free(sp);
    free(ql);
    free(wl);
    token_keyring_wipe(&keys);
    return 0;
}
