/* Process-level WebSocket state: address, certificate credentials and
 * their reload, one listening socket per worker, draining, counters. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <urcu-qsbr.h>

#include "core/error.h"
#include "core/log.h"
#include "ws/ws_int.h"

#define MS 1000000ULL

static const char priority_str[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

/* ------------------------------------------------------------ shared */

static int addr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return ROOST_EINVAL;
}

bool ws_addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (addr == NULL)
        return false;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

static int creds_load(const char *cert, const char *key, struct ws_creds **out)
{
    struct ws_creds *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return ROOST_ENOMEM;
    if (gnutls_certificate_allocate_credentials(&cr->cred) != 0) {
        free(cr);
        return ROOST_ECRYPTO;
    }
    int g = gnutls_certificate_set_x509_key_file(cr->cred, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        log_error("msg=\"cannot load certificate\" cert=%s key=%s err=\"%s\"", cert, key,
                  gnutls_strerror(g));
        gnutls_certificate_free_credentials(cr->cred);
        free(cr);
        return ROOST_ECRYPTO;
    }
    atomic_init(&cr->refs, 1);
    *out = cr;
    return 0;
}

void wsshared_creds_unref(struct ws_creds *cr)
{
    /* acq_rel: the last holder sees every other holder's use finished. */
    if (cr != NULL && atomic_fetch_sub_explicit(&cr->refs, 1, memory_order_acq_rel) == 1) {
        gnutls_certificate_free_credentials(cr->cred);
        free(cr);
    }
}

int ws_shared_reload_cert(struct ws_shared *sh, const char *cert_file, const char *key_file)
{
    if (sh->creds == NULL)
        return ROOST_EINVAL; /* plain */
    struct ws_creds *nc;
    int rc = creds_load(cert_file, key_file, &nc);
    if (rc < 0)
        return rc;
    /* Pairs with rcu_dereference in tls_setup. After the grace period no
     * worker is between reading the old pointer and taking its reference,
     * so ours can go; connections keep theirs. */
    struct ws_creds *old = rcu_xchg_pointer(&sh->creds, nc);
    synchronize_rcu();
    wsshared_creds_unref(old);
    return 0;
}

void ws_shared_set_draining(struct ws_shared *sh, bool on)
{
    atomic_store_explicit(&sh->draining, on, memory_order_relaxed);
}

bool ws_shared_draining(const struct ws_shared *sh)
{
    return atomic_load_explicit(&sh->draining, memory_order_relaxed);
}

static int listen_open(struct ws_shared *sh)
{
    int fd = socket(sh->bound.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return ROOST_ESYS;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    if (sh->bound.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sh->bound, sh->bound_len) == -1)
        goto fail;
    if (listen(fd, 1024) == -1)
        goto fail;
    return fd;
fail:
    close(fd);
    return ROOST_ESYS;
}

int ws_shared_new(struct ws_shared **out, const struct ws_shared_config *cfg)
{
    if (cfg->addr == NULL || cfg->n_workers == 0 || cfg->n_workers > WORKER_MAX)
        return ROOST_EINVAL;
    if (!cfg->plain && (cfg->cert_file == NULL || cfg->key_file == NULL))
        return ROOST_EINVAL;
    if (cfg->plain && !ws_addr_is_loopback(cfg->addr)) {
        log_error("msg=\"plain ws:// is allowed on loopback only\" addr=%s", cfg->addr);
        return ROOST_EINVAL;
    }
    if (cfg->max_message != 0 && cfg->max_message < WS_MESSAGE_MIN)
        return ROOST_EINVAL;
    struct ws_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        sh->fds[i] = -1;
    sh->web_fd = -1;
    sh->cfg = *cfg;
    struct ws_shared_config *c = &sh->cfg;
    c->cert_file = c->key_file = c->addr = c->web_root = NULL; /* borrowed only here */
    if (c->max_conns == 0)
        c->max_conns = 10000;
    if (c->handshake_timeout_ns == 0)
        c->handshake_timeout_ns = 5000 * MS;
    if (c->idle_timeout_ns == 0)
        c->idle_timeout_ns = 30000 * MS;
    if (c->ping_interval_ns == 0)
        c->ping_interval_ns = c->idle_timeout_ns / 3;
    if (c->control_timeout_ns == 0)
        c->control_timeout_ns = 5000 * MS;
    if (c->close_timeout_ns == 0)
        c->close_timeout_ns = 2000 * MS;
    if (c->media_max_age_ns == 0)
        c->media_max_age_ns = 500 * MS;
    if (c->max_message == 0)
        c->max_message = WS_MESSAGE_MAX;
    if (c->control_queue_max == 0)
        c->control_queue_max = 256 * 1024;
    if (c->media_queue_max == 0)
        c->media_queue_max = 256;
    if (c->out_buffer == 0)
        c->out_buffer = 64 * 1024;

    int rc = addr_parse(cfg->addr, cfg->port, &sh->bound, &sh->bound_len);
    if (rc < 0)
        goto fail;
    if (cfg->web_root != NULL) {
        sh->web_fd = open(cfg->web_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (sh->web_fd == -1) {
            log_error("msg=\"web_root is not a readable directory\" web_root=%s err=\"%s\"",
                      cfg->web_root, strerror(errno));
            rc = ROOST_EINVAL;
            goto fail;
        }
    }
    atomic_init(&sh->draining, false);
    if (!cfg->plain) {
        rc = creds_load(cfg->cert_file, cfg->key_file, &sh->creds);
        if (rc < 0)
            goto fail;
        rc = ROOST_ECRYPTO;
        if (gnutls_priority_init(&sh->prio, priority_str, NULL) != 0) {
            sh->prio = NULL;
            goto fail;
        }
    }
    /* Sockets in worker order, all on one port: the first one picks it
     * when the configuration says 0. */
    for (unsigned i = 0; i < cfg->n_workers; i++) {
        int fd = listen_open(sh);
        if (fd < 0) {
            log_error("msg=\"cannot open ws listener\" addr=%s port=%u err=%s", cfg->addr,
                      (unsigned)sh->port, strerror(errno));
            rc = ROOST_ESYS;
            goto fail;
        }
        sh->fds[i] = fd;
        if (i == 0) {
            socklen_t l = sh->bound_len;
            if (getsockname(fd, (struct sockaddr *)&sh->bound, &l) == -1) {
                rc = ROOST_ESYS;
                goto fail;
            }
            sh->port = sh->bound.ss_family == AF_INET
                           ? ntohs(((struct sockaddr_in *)&sh->bound)->sin_port)
                           : ntohs(((struct sockaddr_in6 *)&sh->bound)->sin6_port);
        }
    }
    *out = sh;
    return 0;
fail:
    ws_shared_del(sh);
    return rc;
}

void ws_shared_del(struct ws_shared *sh)
{
    if (sh == NULL)
        return;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        if (sh->fds[i] >= 0)
            close(sh->fds[i]);
    if (sh->web_fd >= 0)
        close(sh->web_fd);
    if (sh->prio != NULL)
        gnutls_priority_deinit(sh->prio);
    wsshared_creds_unref(sh->creds);
    free(sh);
}

uint16_t ws_shared_port(const struct ws_shared *sh)
{
    return sh->port;
}

void ws_shared_stats(const struct ws_shared *sh, unsigned worker, struct ws_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (worker < WORKER_MAX)
        stat_read((uint64_t *)out, sh->stats[worker].v, STAT_N(struct ws_stats));
}

void ws_shared_stats_total(const struct ws_shared *sh, struct ws_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < sh->cfg.n_workers; w++)
        stat_sum((uint64_t *)out, sh->stats[w].v, STAT_N(struct ws_stats));
}
