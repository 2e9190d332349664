#include "httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *httpc_get(uint16_t port, const char *path, int *status, int timeout_ms)
{
    char *buf = NULL, *out = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto out;
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (n <= 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n)
        goto out;
    size_t cap = 1 << 16, len = 0;
    buf = malloc(cap);
    if (buf == NULL)
        goto out;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) != 1)
            goto out;
        if (len + 4096 > cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                goto out;
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        if (k < 0)
            goto out;
        if (k == 0)
            break;
        len += (size_t)k;
    }
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 || body == NULL)
        goto out;
    out = strdup(body + 4);
out:
    free(buf);
    close(fd);
    return out;
}

bool httpc_until(uint16_t port, const char *path, const char *want, int wait_ms)
{
    uint64_t end = now_ms() + (uint64_t)wait_ms;
    for (;;) {
        int st = 0;
        char *b = httpc_get(port, path, &st, wait_ms);
        bool ok = b != NULL && strstr(b, want) != NULL;
        free(b);
        if (ok)
            return true;
        if (now_ms() >= end)
            return false;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL); /* polling a condition, not a fixed wait */
    }
}
