/* Process-level QUIC state: credentials (counted, RCU-published), the
 * static secrets, one socket per worker, rate limits and the per-worker
 * counters. See quic.h for the API and quic_int.h for the file layout. */
#include "quic/quic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <urcu-qsbr.h>

#include "core/error.h"
#include "core/log.h"
#include "quic/quic_int.h"

static const char priority_str[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:%DISABLE_TLS13_COMPAT_MODE";

static int load_secrets(struct quic_shared *sh, const char *dir)
{
    uint8_t both[2 * SECRET_LEN];
    if (dir == NULL) {
        if (gnutls_rnd(GNUTLS_RND_KEY, both, sizeof(both)) != 0)
            return ROOST_ECRYPTO;
        goto out;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/quic-secrets", dir) >= sizeof(path))
        return ROOST_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd != -1) {
        /* As the token key files (lib/proto/keyfile.c): whoever reads the
         * secrets can forge stateless resets and Retry tokens. Refuse,
         * rather than warn. */
        struct stat st;
        if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
            close(fd);
            log_error("msg=\"quic secrets file is not a regular file\" path=%s", path);
            return ROOST_EINVAL;
        }
        if ((st.st_mode & 077) != 0) {
            close(fd);
            log_error("msg=\"quic secrets file gives group or others access; run: chmod 600 "
                      "%s\" path=%s mode=%04o",
                      path, path, (unsigned)(st.st_mode & 07777));
            return ROOST_EACCES;
        }
        ssize_t n = read(fd, both, sizeof(both));
        close(fd);
        if (n != (ssize_t)sizeof(both)) {
            log_error("msg=\"quic secrets file unreadable\" path=%s", path);
            return ROOST_EIO;
        }
        goto out;
    }
    if (gnutls_rnd(GNUTLS_RND_KEY, both, sizeof(both)) != 0)
        return ROOST_ECRYPTO;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1) {
        log_error("msg=\"cannot create quic secrets\" path=%s err=%s", path, strerror(errno));
        return ROOST_EIO;
    }
    ssize_t n = write(fd, both, sizeof(both));
    if (n != (ssize_t)sizeof(both) || fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return ROOST_EIO;
    }
    close(fd);
out:
    memcpy(sh->reset_secret, both, SECRET_LEN);
    memcpy(sh->retry_secret, both + SECRET_LEN, SECRET_LEN);
    return 0;
}

int quic_creds_new(struct quic_creds **out)
{
    struct quic_creds *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return ROOST_ENOMEM;
    if (gnutls_certificate_allocate_credentials(&cr->cred) != 0) {
        free(cr);
        return ROOST_ECRYPTO;
    }
    atomic_init(&cr->refs, 1);
    *out = cr;
    return 0;
}

static int creds_load(const char *cert, const char *key, struct quic_creds **out)
{
    struct quic_creds *cr;
    int rc = quic_creds_new(&cr);
    if (rc < 0)
        return rc;
    int g = gnutls_certificate_set_x509_key_file(cr->cred, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        log_error("msg=\"cannot load certificate\" cert=%s key=%s err=\"%s\"", cert, key,
                  gnutls_strerror(g));
        quic_creds_unref(cr);
        return ROOST_ECRYPTO;
    }
    *out = cr;
    return 0;
}

struct quic_creds *quic_creds_ref(struct quic_creds *cr)
{
    /* relaxed: the caller holds a reference (or an RCU read section over a
     * published one), so cr is alive. */
    atomic_fetch_add_explicit(&cr->refs, 1, memory_order_relaxed);
    return cr;
}

int quic_priority_init(gnutls_priority_t *out)
{
    if (gnutls_priority_init(out, priority_str, NULL) != 0) {
        *out = NULL;
        return ROOST_ECRYPTO;
    }
    return 0;
}

void quic_creds_unref(struct quic_creds *cr)
{
    /* acq_rel: the last holder sees every other holder's use finished. */
    if (cr != NULL && atomic_fetch_sub_explicit(&cr->refs, 1, memory_order_acq_rel) == 1) {
        gnutls_certificate_free_credentials(cr->cred);
        free(cr);
    }
}

int quic_shared_reload_cert(struct quic_shared *sh, const char *cert_file, const char *key_file)
{
    struct quic_creds *nc;
    int rc = creds_load(cert_file, key_file, &nc);
    if (rc < 0)
        return rc;
    /* Pairs with rcu_dereference in server.c tls_init. After the grace period no
     * worker can still be between reading the old pointer and taking its
     * reference, so dropping ours is safe; connections keep theirs. */
    struct quic_creds *old = rcu_xchg_pointer(&sh->creds, nc);
    synchronize_rcu();
    quic_creds_unref(old);
    return 0;
}

int quic_shared_new(struct quic_shared **out, const struct quic_shared_config *cfg)
{
    if (cfg->cert_file == NULL || cfg->key_file == NULL || cfg->addr == NULL ||
        cfg->n_workers == 0 || cfg->n_workers > WORKER_MAX)
        return ROOST_EINVAL;
    struct quic_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        sh->fds[i] = -1;
    int rc;
    sh->cfg = *cfg;
    struct quic_shared_config *c = &sh->cfg;
    c->cert_file = c->key_file = c->state_dir = c->addr = NULL; /* borrowed only here */
    if (c->idle_timeout_ns == 0)
        c->idle_timeout_ns = QUIC_DEFAULT_IDLE_TIMEOUT_NS;
    if (c->handshake_timeout_ns == 0)
        c->handshake_timeout_ns = QUIC_DEFAULT_HANDSHAKE_TIMEOUT_NS;
    if (c->retry_threshold == 0)
        c->retry_threshold = QUIC_DEFAULT_RETRY_THRESHOLD;
    if (c->max_conns == 0)
        c->max_conns = QUIC_DEFAULT_MAX_CONNS;
    if (c->control_queue_max == 0)
        c->control_queue_max = QUIC_DEFAULT_CONTROL_QUEUE_MAX;
    if (c->dgram_queue_max == 0)
        c->dgram_queue_max = QUIC_DEFAULT_DGRAM_QUEUE_MAX;
    if (c->sock_buf == 0)
        c->sock_buf = QUIC_DEFAULT_SOCK_BUF;
    uint32_t burst = c->rate_burst ? c->rate_burst : QUIC_DEFAULT_RATE_BURST;
    tbucket_init(&sh->tb_retry, c->retry_rate ? c->retry_rate : QUIC_DEFAULT_RATE, burst);
    tbucket_init(&sh->tb_vn, c->vn_rate ? c->vn_rate : QUIC_DEFAULT_RATE, burst);
    tbucket_init(&sh->tb_reset, c->reset_rate ? c->reset_rate : QUIC_DEFAULT_RATE, burst);
    tbucket_init(&sh->tb_close, c->close_rate ? c->close_rate : QUIC_DEFAULT_RATE, burst);
    tbucket_init(&sh->tb_hs, c->handshake_rate, c->handshake_rate ? c->handshake_rate : 1);
    atomic_init(&sh->draining, false);
    atomic_init(&sh->live_max_conns, c->max_conns);
    atomic_init(&sh->live_retry_threshold, c->retry_threshold);

    rc = udp_addr_parse(&sh->bound, cfg->addr, cfg->port);
    if (rc < 0)
        goto fail;
    rc = load_secrets(sh, cfg->state_dir);
    if (rc < 0)
        goto fail;
    rc = creds_load(cfg->cert_file, cfg->key_file, &sh->creds);
    if (rc < 0)
        goto fail;
    rc = ROOST_ECRYPTO;
    if (quic_priority_init(&sh->prio) < 0)
        goto fail;
    /* Sockets in worker order: the SO_REUSEPORT group index of socket i is
     * i, which later kernel steering by CID byte can rely on. */
    for (unsigned i = 0; i < cfg->n_workers; i++) {
        int rcv = 0, snd = 0;
        int fd = udp_socket_open(&sh->bound, true, c->sock_buf, &rcv, &snd);
        if (fd < 0) {
            log_error("msg=\"cannot open quic socket\" err=%s", strerror(errno));
            rc = ROOST_ESYS;
            goto fail;
        }
        sh->fds[i] = fd;
        /* Linux reports twice the value it granted. */
        if (i == 0 && (rcv / 2 < c->sock_buf || snd / 2 < c->sock_buf))
            log_warn("msg=\"udp socket buffers clamped\" requested=%d rcvbuf=%d sndbuf=%d "
                     "hint=\"raise net.core.rmem_max/wmem_max\"",
                     c->sock_buf, rcv / 2, snd / 2);
        if (i == 0 && udp_addr_port(&sh->bound) == 0) {
            rc = udp_socket_local(fd, &sh->bound);
            if (rc < 0)
                goto fail;
        }
    }
    *out = sh;
    return 0;
fail:
    quic_shared_del(sh);
    return rc;
}

void quic_shared_del(struct quic_shared *sh)
{
    if (sh == NULL)
        return;
    for (unsigned i = 0; i < WORKER_MAX; i++)
        if (sh->fds[i] >= 0)
            close(sh->fds[i]);
    if (sh->prio != NULL)
        gnutls_priority_deinit(sh->prio);
    quic_creds_unref(sh->creds);
    gnutls_memset(sh->reset_secret, 0, SECRET_LEN);
    gnutls_memset(sh->retry_secret, 0, SECRET_LEN);
    free(sh);
}

uint16_t quic_shared_port(const struct quic_shared *sh)
{
    return udp_addr_port(&sh->bound);
}

void quic_shared_stats(const struct quic_shared *sh, unsigned worker, struct quic_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (worker >= WORKER_MAX)
        return;
    stat_read((uint64_t *)out, sh->stats[worker].st, STAT_N(struct quic_stats));
}

void quic_shared_set_draining(struct quic_shared *sh, bool on)
{
    atomic_store_explicit(&sh->draining, on, memory_order_relaxed);
}

bool quic_shared_draining(const struct quic_shared *sh)
{
    return atomic_load_explicit(&sh->draining, memory_order_relaxed);
}

void quic_shared_set_limits(struct quic_shared *sh, unsigned max_conns, unsigned retry_threshold)
{
    if (max_conns != 0)
        atomic_store_explicit(&sh->live_max_conns,
                              max_conns < sh->cfg.max_conns ? max_conns : sh->cfg.max_conns,
                              memory_order_relaxed);
    if (retry_threshold != 0)
        atomic_store_explicit(&sh->live_retry_threshold, retry_threshold, memory_order_relaxed);
}

void quic_shared_stats_total(const struct quic_shared *sh, struct quic_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < sh->cfg.n_workers; w++)
        stat_sum((uint64_t *)out, sh->stats[w].st, STAT_N(struct quic_stats));
}
