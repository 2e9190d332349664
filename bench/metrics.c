#include "bench/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#define RESP_MAX (4 << 20)

static const char *const exact[METRICS_N] = {
    [METRICS_PKTS_IN] = "roost_packets_received_total",
    [METRICS_PKTS_OUT] = "roost_packets_sent_total",
    [METRICS_DGRAM_IN] = "roost_datagrams_received_total",
    [METRICS_DGRAM_OUT] = "roost_datagrams_sent_total",
    [METRICS_TURNS] = "roost_worker_turns_total",
    [METRICS_TRUNK_OUT] = "roost_trunk_frames_out",
    [METRICS_TRUNK_IN] = "roost_trunk_frames_in",
};
/* Families other branches add: matched by a part of the name. */
static const char *const part[METRICS_N] = {
    [METRICS_ACK_ONLY_IN] = "ack_only",
    [METRICS_PKTS_WRITTEN] = "packets_written",
};

const char *metrics_name(enum metrics_family f)
{
    switch (f) {
    case METRICS_ACK_ONLY_IN:
        return "*ack_only*_total";
    case METRICS_PKTS_WRITTEN:
        return "*packets_written*_total";
    default:
        return (unsigned)f < METRICS_N ? exact[f] : "?";
    }
}

static int family_of(const char *name, size_t n)
{
    for (int f = 0; f < METRICS_N; f++)
        if (exact[f] != NULL && strlen(exact[f]) == n && memcmp(exact[f], name, n) == 0)
            return f;
    for (int f = 0; f < METRICS_N; f++) {
        if (part[f] == NULL || n < 6 || memcmp(name + n - 6, "_total", 6) != 0)
            continue;
        size_t pl = strlen(part[f]);
        for (size_t i = 0; i + pl <= n; i++)
            if (memcmp(name + i, part[f], pl) == 0)
                return f;
    }
    return -1;
}

#define LAT_BUCKET "roost_fanout_latency_seconds_bucket"

/* Adds a roost_fanout_latency_seconds_bucket line's count to its bound's
 * slot (workers summed), keeping the bounds ascending. */
static void lat_add(struct metrics_lat *m, const char *l, size_t ll, double v)
{
    const char *p = NULL;
    for (size_t i = 0; i + 4 <= ll; i++)
        if (memcmp(l + i, "le=\"", 4) == 0) {
            p = l + i + 4;
            break;
        }
    if (p == NULL)
        return;
    const char *q = memchr(p, '"', ll - (size_t)(p - l));
    if (q == NULL || q == p || (size_t)(q - p) >= 32)
        return;
    char num[32];
    memcpy(num, p, (size_t)(q - p));
    num[q - p] = '\0';
    double le;
    if (strcmp(num, "+Inf") == 0) {
        le = INFINITY;
    } else {
        char *end;
        le = strtod(num, &end);
        if (*end != '\0' || !(le >= 0))
            return;
    }
    unsigned k = 0;
    while (k < m->n && m->le[k] < le)
        k++;
    if (k < m->n && m->le[k] == le) {
        m->cum[k] += v;
        return;
    }
    if (m->n == METRICS_LAT_MAX)
        return;
    memmove(&m->le[k + 1], &m->le[k], (m->n - k) * sizeof(m->le[0]));
    memmove(&m->cum[k + 1], &m->cum[k], (m->n - k) * sizeof(m->cum[0]));
    m->le[k] = le;
    m->cum[k] = v;
    m->n++;
}

int metrics_parse(const char *text, size_t len, struct metrics_sample *out)
{
    memset(out, 0, sizeof(*out));
    /* The first family matched by a part keeps the slot. */
    char partname[METRICS_N][128] = {{0}};
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        const char *l = text + i;
        size_t ll = e - i;
        i = e + 1;
        if (ll == 0 || l[0] == '#')
            continue;
        size_t n = 0;
        while (n < ll && l[n] != '{' && l[n] != ' ')
            n++;
        if (n == sizeof(LAT_BUCKET) - 1 && memcmp(l, LAT_BUCKET, n) == 0) {
            size_t s = ll;
            while (s > n && l[s - 1] != ' ')
                s--;
            char num[64];
            size_t k = ll - s < sizeof(num) - 1 ? ll - s : sizeof(num) - 1;
            memcpy(num, l + s, k);
            num[k] = '\0';
            char *end;
            double v = strtod(num, &end);
            if (end != num)
                lat_add(&out->lat, l, ll, v);
            continue;
        }
        int f = family_of(l, n);
        if (f < 0 || n >= sizeof(partname[0]))
            continue;
        if (part[f] != NULL) {
            if (partname[f][0] == '\0')
                memcpy(partname[f], l, n);
            else if (strlen(partname[f]) != n || memcmp(partname[f], l, n) != 0)
                continue;
        }
        /* The value follows the last space of the line (no timestamps). */
        size_t s = ll;
        while (s > n && l[s - 1] != ' ')
            s--;
        char num[64];
        size_t k = ll - s < sizeof(num) - 1 ? ll - s : sizeof(num) - 1;
        memcpy(num, l + s, k);
        num[k] = '\0';
        char *end;
        double v = strtod(num, &end);
        if (end == num)
            continue;
        out->have[f] = true;
        out->v[f] += v;
    }
    out->ok = true;
    return 0;
}

static int parse_addr(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        return ROOST_EINVAL;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return ROOST_EINVAL;
    char *h = host;
    if (h[0] == '[') {
        size_t hl = strlen(h);
        if (hl < 2 || h[hl - 1] != ']')
            return ROOST_EINVAL;
        h[hl - 1] = '\0';
        h++;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, h, &a->sin_addr) == 1) {
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        *len = sizeof(*a);
    } else if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
    } else {
        return ROOST_EINVAL;
    }
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for ev on fd until the deadline. Returns 0, ROOST_ETIMEDOUT, ROOST_ESYS. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t t = now_ms();
        if (t >= deadline)
            return ROOST_ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)(deadline - t));
        if (r == 1)
            return 0;
        if (r == -1 && errno != EINTR)
            return ROOST_ESYS;
    }
}

int metrics_scrape(const char *hostport, int timeout_ms, struct metrics_sample *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_storage ss;
    socklen_t sl;
    int rc = parse_addr(hostport, &ss, &sl);
    if (rc < 0)
        return rc;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    char *buf = NULL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return ROOST_ESYS;
    rc = ROOST_ESYS;
    if (connect(fd, (struct sockaddr *)&ss, sl) == -1) {
        if (errno != EINPROGRESS)
            goto out;
        rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            goto out;
        int err = 0;
        socklen_t el = sizeof(err);
        rc = ROOST_ESYS;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1 || err != 0)
            goto out;
    }
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: relay\r\nConnection: close\r\n\r\n";
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1))
        goto out;
    buf = malloc(RESP_MAX);
    if (buf == NULL) {
        rc = ROOST_ENOMEM;
        goto out;
    }
    size_t n = 0;
    for (;;) {
        rc = wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            goto out;
        ssize_t r = recv(fd, buf + n, RESP_MAX - 1 - n, 0);
        if (r == 0 || n + (size_t)r >= RESP_MAX - 1) {
            n += r > 0 ? (size_t)r : 0;
            break;
        }
        if (r == -1) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            rc = ROOST_ESYS;
            goto out;
        }
        n += (size_t)r;
        /* A server that keeps the connection open: stop at Content-Length. */
        buf[n] = '\0';
        const char *body = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (body != NULL && cl != NULL && cl < body &&
            n - (size_t)(body + 4 - buf) >= (size_t)strtoul(cl + 17, NULL, 10))
            break;
    }
    buf[n] = '\0';
    rc = ROOST_EMALFORMED;
    const char *body = strstr(buf, "\r\n\r\n");
    if (body == NULL || strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200", 4) != 0)
        goto out;
    body += 4;
    rc = metrics_parse(body, n - (size_t)(body - buf), out);
out:
    free(buf);
    close(fd);
    return rc;
}

void metrics_diff(const struct metrics_sample *before, const struct metrics_sample *after,
                  struct metrics_delta *out)
{
    memset(out, 0, sizeof(*out));
    out->ok = before->ok && after->ok;
    if (!out->ok)
        return;
    for (int f = 0; f < METRICS_N; f++) {
        out->have[f] = before->have[f] && after->have[f];
        if (out->have[f] && after->v[f] > before->v[f])
            out->v[f] = (uint64_t)(after->v[f] - before->v[f] + 0.5);
    }
    /* The bounds of the later scrape; a bound the earlier one lacked
     * counts from 0 (the relay is the same process: it does not happen). */
    out->lat.n = after->lat.n;
    for (unsigned k = 0; k < after->lat.n; k++) {
        double b = 0;
        for (unsigned j = 0; j < before->lat.n; j++)
            if (before->lat.le[j] == after->lat.le[k])
                b = before->lat.cum[j];
        out->lat.le[k] = after->lat.le[k];
        out->lat.cum[k] = after->lat.cum[k] > b ? after->lat.cum[k] - b : 0;
    }
}

double metrics_latency_quantile(const struct metrics_delta *d, double q, uint64_t *n)
{
    const struct metrics_lat *m = &d->lat;
    double total = m->n > 0 ? m->cum[m->n - 1] : 0;
    if (n != NULL)
        *n = (uint64_t)(total + 0.5);
    if (!d->ok || total <= 0 || !(q > 0 && q <= 1))
        return -1;
    double want = q * total, lo = 0, prev = 0;
    for (unsigned k = 0; k < m->n; k++) {
        if (m->cum[k] >= want) {
            if (isinf(m->le[k]))
                return INFINITY;
            double in = m->cum[k] - prev;
            return lo + (m->le[k] - lo) * (in > 0 ? (want - prev) / in : 1.0);
        }
        lo = m->le[k];
        prev = m->cum[k];
    }
    return INFINITY;
}
