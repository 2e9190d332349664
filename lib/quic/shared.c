/* Process-level QUIC state: credentials (counted, RCU-published), the
 * static secrets, one socket per worker, rate limits and the per-worker
 * counters. See quic.h for the API and quic_int.h for the file layout. */
#include "quic/quic.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <urcu-qsbr.h>

#include "core/error.h"
#include "core/log.h"
#include "quic/quic_int.h"
#include "quic/steer.h"

/* The rotation schedule: a thread that sleeps until the period ends or
 * quic_shared_del wakes it through the pipe. */
struct quic_tickets_timer {
    pthread_t thread;
    int pipe[2];
    struct quic_shared *sh;
    /* When the current keys were made; written by the rotator (under the
     * flag below), read by the thread, which must not touch the keys: a
     * SIGHUP rotation may free them under it. */
    _Atomic uint64_t rotated_at;
};

/* One rotation at a time (SIGHUP on main vs the schedule): a try-flag, the
 * loser returns ROOST_EAGAIN instead of waiting. */
static atomic_flag rotating = ATOMIC_FLAG_INIT;

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

int quic_priority_init(gnutls_priority_t *out, const char *priority)
{
    if (gnutls_priority_init(out, priority ? priority : QUIC_DEFAULT_PRIORITY, NULL) != 0) {
        *out = NULL;
        return ROOST_ECRYPTO;
    }
    return 0;
}

int quic_priority_check(const char *priority, char *msg, size_t msglen)
{
    gnutls_priority_t p;
    const char *err = NULL;
    int g = gnutls_priority_init(&p, priority, &err);
    if (g == 0) {
        gnutls_priority_deinit(p);
        return 0;
    }
    if (msg != NULL && msglen > 0) {
        size_t pos = err != NULL && err >= priority ? (size_t)(err - priority) : 0;
        snprintf(msg, msglen, "invalid TLS priority at offset %zu ('%.32s'): %s", pos,
                 err != NULL ? err : "", gnutls_strerror(g));
    }
    return ROOST_EINVAL;
}

unsigned quic_ticket_lifetime(unsigned period_s)
{
    uint64_t l = 2ull * period_s;
    return l > TICKETS_MAX_LIFETIME_S ? TICKETS_MAX_LIFETIME_S : (unsigned)l;
}

/* ------------------------------------------------------------ tickets */

static uint64_t wall_s(void)
{
    return (uint64_t)time(NULL);
}

static int tickets_path(const struct quic_shared *sh, char *path, size_t n)
{
    if (sh->state_dir[0] == '\0')
        return 0;
    if ((size_t)snprintf(path, n, "%s/quic-tickets", sh->state_dir) >= n)
        return ROOST_EINVAL;
    return 1;
}

/* Publishes next, frees the old keys after a grace period. */
static void tickets_publish(struct quic_shared *sh, struct tickets_keys *next)
{
    /* Pairs with rcu_dereference in servertls.c (quic_server_tls_init, the ClientHello
     * hook): after the grace period no worker reads the old keys. */
    struct tickets_keys *old = rcu_xchg_pointer(&sh->tickets, next);
    synchronize_rcu();
    if (old != NULL) {
        gnutls_memset(old, 0, sizeof(*old));
        free(old);
    }
}

/* A new current master key; the old one stays as the previous one, or
 * (keep_prev false) is dropped with every ticket issued under either. */
static int tickets_renew(struct quic_shared *sh, bool keep_prev)
{
    if (sh->cfg.no_tickets)
        return ROOST_EINVAL;
    if (atomic_flag_test_and_set_explicit(&rotating, memory_order_acquire))
        return ROOST_EAGAIN;
    char path[4200] = "";
    int rc = tickets_path(sh, path, sizeof(path));
    struct tickets_keys *next = calloc(1, sizeof(*next));
    if (rc < 0 || next == NULL) {
        rc = rc < 0 ? rc : ROOST_ENOMEM;
        goto out;
    }
    /* Only rotators write sh->tickets, and the flag makes us the only one:
     * a plain read of the published pointer is enough here. */
    struct tickets_keys *cur = rcu_dereference(sh->tickets);
    rc = tickets_rotate(NULL, cur, next, wall_s());
    if (rc == 0 && !keep_prev) {
        gnutls_memset(next->prev, 0, sizeof(next->prev));
        next->has_prev = false;
    }
    if (rc == 0 && path[0] != '\0')
        rc = tickets_write(path, next);
    if (rc < 0) {
        log_error("msg=\"cannot rotate ticket keys\" err=%s", roost_strerror(rc));
        goto out;
    }
    if (sh->tickets_timer != NULL)
        atomic_store_explicit(&sh->tickets_timer->rotated_at, next->rotated_at,
                              memory_order_relaxed);
    tickets_publish(sh, next);
    next = NULL;
    log_info("event=rotate what=tls_ticket_key%s", keep_prev ? "" : " dropped=previous");
out:
    if (next != NULL) {
        gnutls_memset(next, 0, sizeof(*next));
        free(next);
    }
    atomic_flag_clear_explicit(&rotating, memory_order_release);
    return rc;
}

int quic_shared_rotate_tickets(struct quic_shared *sh)
{
    return tickets_renew(sh, true);
}

static void *tickets_timer_run(void *arg)
{
    struct quic_tickets_timer *t = arg;
    struct quic_shared *sh = t->sh;
    uint64_t period = sh->cfg.ticket_period_s;
    for (;;) {
        uint64_t now = wall_s();
        uint64_t due = atomic_load_explicit(&t->rotated_at, memory_order_relaxed) + period;
        uint64_t wait_ms = due > now ? (due - now) * 1000 : 0;
        if (wait_ms > 0) {
            struct pollfd p = {.fd = t->pipe[0], .events = POLLIN};
            int n = poll(&p, 1, wait_ms > 3600000 ? 3600000 : (int)wait_ms);
            if (n > 0)
                return NULL; /* quic_shared_del */
            continue;        /* timeout (or EINTR): look again */
        }
        if (quic_shared_rotate_tickets(sh) < 0) {
            /* Keep the keys; try again in a minute rather than spin. */
            struct pollfd p = {.fd = t->pipe[0], .events = POLLIN};
            if (poll(&p, 1, 60000) > 0)
                return NULL;
        }
    }
}

static void tickets_timer_stop(struct quic_tickets_timer *t)
{
    if (t == NULL)
        return;
    if (t->pipe[1] >= 0) {
        char b = 1;
        if (write(t->pipe[1], &b, 1) == 1)
            pthread_join(t->thread, NULL);
    }
    if (t->pipe[0] >= 0)
        close(t->pipe[0]);
    if (t->pipe[1] >= 0)
        close(t->pipe[1]);
    free(t);
}

/* Loads (or creates) the ticket keys, rotates them when their period ran
 * out while we were down, and starts the schedule. */
static int tickets_init(struct quic_shared *sh)
{
    if (sh->cfg.ticket_period_s == 0)
        sh->cfg.ticket_period_s = QUIC_DEFAULT_TICKET_PERIOD_S;
    if (sh->cfg.no_tickets)
        return 0;
    struct tickets_keys *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return ROOST_ENOMEM;
    char path[4200], msg[4400];
    int rc = tickets_path(sh, path, sizeof(path));
    if (rc == 1) {
        rc = tickets_load(path, k, wall_s(), msg, sizeof(msg));
        if (rc < 0)
            log_error("msg=\"cannot load ticket keys\" detail=\"%s\"", msg);
    } else if (rc == 0) {
        k->rotated_at = wall_s();
        rc = gnutls_rnd(GNUTLS_RND_KEY, k->cur, TICKETS_KEY_LEN) == 0 ? 0 : ROOST_ECRYPTO;
    }
    if (rc < 0) {
        free(k);
        return rc;
    }
    rcu_set_pointer(&sh->tickets, k);
    if (wall_s() >= k->rotated_at + sh->cfg.ticket_period_s) {
        rc = quic_shared_rotate_tickets(sh);
        if (rc < 0)
            return rc;
    }
    struct quic_tickets_timer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ROOST_ENOMEM;
    t->sh = sh;
    t->pipe[0] = t->pipe[1] = -1;
    /* Single-threaded still: the keys are ours to read. */
    atomic_init(&t->rotated_at, rcu_dereference(sh->tickets)->rotated_at);
    sh->tickets_timer = t;
    if (pipe2(t->pipe, O_CLOEXEC) != 0)
        return ROOST_ESYS;
    if (pthread_create(&t->thread, NULL, tickets_timer_run, t) != 0) {
        close(t->pipe[1]);
        t->pipe[1] = -1; /* nothing to join */
        return ROOST_ESYS;
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
    /* Pairs with rcu_dereference in servertls.c quic_server_tls_init. After the grace period no
     * worker can still be between reading the old pointer and taking its
     * reference, so dropping ours is safe; connections keep theirs. */
    struct quic_creds *old = rcu_xchg_pointer(&sh->creds, nc);
    synchronize_rcu();
    quic_creds_unref(old);
    /* A resumed session skips the certificate: after a new one, every
     * client must see (and verify) it once, so no ticket from before may
     * resume. A failure here is logged and leaves the tickets valid. */
    if (!sh->cfg.no_tickets)
        (void)tickets_renew(sh, false);
    return 0;
}

/* The mode asked for: the config's, or with AUTO the environment's
 * ROOST_STEERING (ebpf|cbpf|hash|off), which tests and benchmarks use to
 * force one. NULL *bad: the variable was understood (or not set). */
static enum quic_steer_mode steer_wanted(const struct quic_shared_config *c, const char **bad)
{
    *bad = NULL;
    if (c->no_steering)
        return QUIC_STEER_HASH;
    if (c->steer != QUIC_STEER_AUTO)
        return c->steer;
    const char *e = getenv("ROOST_STEERING");
    if (e == NULL || *e == '\0' || strcmp(e, "auto") == 0)
        return QUIC_STEER_AUTO;
    if (strcmp(e, "ebpf") == 0)
        return QUIC_STEER_EBPF;
    if (strcmp(e, "cbpf") == 0)
        return QUIC_STEER_CBPF;
    if (strcmp(e, "hash") == 0 || strcmp(e, "off") == 0)
        return QUIC_STEER_HASH;
    *bad = e;
    return QUIC_STEER_AUTO;
}

/* The fallback chain (steer.h): extended BPF, then classic BPF, then the
 * kernel's hash, each refusal keeping the next; one log line says which is
 * on and why. With one socket there is nothing to steer; the hash keeps
 * the ring forwarding, which is correct, only dearer. */
static void steering_setup(struct quic_shared *sh)
{
    unsigned n = sh->cfg.n_workers;
    const char *bad;
    enum quic_steer_mode want = steer_wanted(&sh->cfg, &bad);
    if (bad != NULL)
        log_warn("msg=\"ROOST_STEERING not understood, using auto\" value=\"%.32s\"", bad);
    sh->steer_mode = "hash";
    if (want == QUIC_STEER_HASH || n < 2) {
        log_info("event=steering mode=hash reason=%s", n < 2                 ? "one_worker"
                                                       : sh->cfg.no_steering ? "config"
                                                                             : "forced");
        return;
    }
    char ebpf_err[160] = "";
    if (want == QUIC_STEER_AUTO || want == QUIC_STEER_EBPF) {
        const char *why = "";
        char vlog[512];
        if (steer_ebpf_attach(&sh->ebpf, sh->fds, n, &why, vlog, sizeof(vlog)) == 0) {
            sh->steering = true;
            sh->steer_mode = "ebpf";
            log_info("event=steering mode=cid workers=%u program=ebpf%s", n,
                     want == QUIC_STEER_EBPF ? " forced=1" : "");
            return;
        }
        /* The verifier's last line, when it spoke, says most. */
        size_t l = strlen(vlog);
        while (l > 0 && vlog[l - 1] == '\n')
            vlog[--l] = '\0';
        const char *last = strrchr(vlog, '\n');
        snprintf(ebpf_err, sizeof(ebpf_err), "%s: %s%s%.60s", why, strerror(errno),
                 vlog[0] != '\0' ? " / " : "", last != NULL ? last + 1 : vlog);
        if (want == QUIC_STEER_EBPF) {
            log_warn("event=steering mode=hash reason=\"extended BPF refused (%s)\" "
                     "hint=\"needs CAP_BPF+CAP_NET_ADMIN, kernel >= 4.19\" "
                     "effect=\"rebound and handed-off packets are forwarded between workers\"",
                     ebpf_err);
            return;
        }
    }
    if (steer_attach(sh->fds[0], n) != 0) {
        log_warn("event=steering mode=hash reason=\"kernel refused the reuseport program%s%s%s\" "
                 "err=\"%s\" effect=\"rebound packets are forwarded between workers\"",
                 ebpf_err[0] != '\0' ? "s (extended: " : "", ebpf_err,
                 ebpf_err[0] != '\0' ? ")" : "", strerror(errno));
        return;
    }
    sh->steering = true;
    sh->steer_mode = "cbpf";
    if (ebpf_err[0] != '\0')
        log_warn(
            "event=steering mode=cid workers=%u program=cbpf reason=\"extended BPF refused (%s)\" "
            "hint=\"needs CAP_BPF+CAP_NET_ADMIN, kernel >= 4.19\" "
            "effect=\"handed-off connections' packets are forwarded by their old worker\"",
            n, ebpf_err);
    else
        log_info("event=steering mode=cid workers=%u program=cbpf reason=forced", n);
}

bool quic_shared_steering(const struct quic_shared *sh)
{
    return sh->steering;
}

const char *quic_shared_steering_mode(const struct quic_shared *sh)
{
    return sh->steer_mode != NULL ? sh->steer_mode : "hash";
}

size_t quic_shared_steer_moved(const struct quic_shared *sh)
{
    return steer_ebpf_count(sh->ebpf);
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
    c->priority = NULL;
    if (cfg->state_dir != NULL && (size_t)snprintf(sh->state_dir, sizeof(sh->state_dir), "%s",
                                                   cfg->state_dir) >= sizeof(sh->state_dir)) {
        rc = ROOST_EINVAL;
        goto fail;
    }
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
    if (cfg->priority != NULL) {
        char msg[256];
        rc = quic_priority_check(cfg->priority, msg, sizeof(msg));
        if (rc < 0) {
            log_error("msg=\"%s\"", msg);
            goto fail;
        }
    }
    rc = ROOST_ECRYPTO;
    if (quic_priority_init(&sh->prio, cfg->priority) < 0)
        goto fail;
    rc = tickets_init(sh);
    if (rc < 0)
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
    steering_setup(sh);
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
    tickets_timer_stop(sh->tickets_timer);
    steer_ebpf_close(sh->ebpf);
    if (sh->tickets != NULL) {
        gnutls_memset(sh->tickets, 0, sizeof(*sh->tickets));
        free(sh->tickets);
    }
    quic_creds_unref(sh->creds);
    gnutls_memset(sh->reset_secret, 0, SECRET_LEN);
    gnutls_memset(sh->retry_secret, 0, SECRET_LEN);
    free(sh);
}

bool quic_conn_tls_resumed(const struct quic_conn *c)
{
    return c->tls != NULL ? gnutls_session_is_resumed(c->tls) != 0 : c->tls_resumed;
}

void quic_conn_tls_release(struct quic_conn *c)
{
    if (c->tls == NULL || c->conn == NULL || !quic_conn_is_server(c) ||
        !ngtcp2_conn_get_handshake_completed(c->conn))
        return;
    c->tls_resumed = gnutls_session_is_resumed(c->tls) != 0;
    ngtcp2_conn_set_tls_native_handle(c->conn, NULL);
    gnutls_deinit(c->tls);
    c->tls = NULL;
    quic_creds_unref(c->creds);
    c->creds = NULL;
    stat_inc(c->ep->st, QS(tls_released));
}

int quic_recv_crypto_data_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level, uint64_t offset,
                             const uint8_t *data, size_t datalen, void *user_data)
{
    if (ngtcp2_conn_get_tls_native_handle(conn) == NULL)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data, datalen, user_data);
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
    /* Raising it needs nothing more: each worker grows its own slot table
     * when it fills (server.c, slots_grow). */
    if (max_conns != 0)
        atomic_store_explicit(&sh->live_max_conns, max_conns, memory_order_relaxed);
    if (retry_threshold != 0)
        atomic_store_explicit(&sh->live_retry_threshold, retry_threshold, memory_order_relaxed);
}

void quic_shared_stats_total(const struct quic_shared *sh, struct quic_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < sh->cfg.n_workers; w++)
        stat_sum((uint64_t *)out, sh->stats[w].st, STAT_N(struct quic_stats));
}
