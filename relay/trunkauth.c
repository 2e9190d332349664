/* Trunks: who may speak (trunk_int.h). The process-level trunk state
 * (this relay's id and pid prefix, the cluster secret, static_home) and the
 * HELLO exchange that authenticates a trunk: an HMAC-SHA256 over the
 * cluster secret, both relay ids, the role and the TLS exporter, so a MAC
 * cannot be replayed on another TLS session (docs/CLUSTER.md §2). */
#include "relay/trunk_int.h"

#include "cluster/dirkey.h"

int trunk_shared_new(struct trunk_shared **out, const struct relay_config *cfg)
{
    *out = NULL;
    if (cfg->cluster_relay_id[0] == '\0')
        return 0;
    struct trunk_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ROOST_ENOMEM;
    int rc = ROOST_EINVAL;
    sh->id_len = strlen(cfg->cluster_relay_id);
    if (sh->id_len > TRUNKMSG_ID_MAX) {
        log_error("event=trunk_config msg=\"relay_id longer than %d bytes\"", TRUNKMSG_ID_MAX);
        goto fail;
    }
    memcpy(sh->id, cfg->cluster_relay_id, sh->id_len);
    sh->prefix = cfg->cluster.pid_prefix; /* configured (config_cluster.c requires it) */
    if (sh->prefix == 0) {
        log_error("event=trunk_config msg=\"[cluster] pid_prefix (1-255) is required with "
                  "relay_id\"");
        goto fail;
    }
    if (cfg->cluster_secret_file[0] == '\0') {
        log_error("event=trunk_config msg=\"cluster_secret_file is required\"");
        goto fail;
    }
    int fd = open(cfg->cluster_secret_file, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        log_error("event=trunk_config msg=\"cannot open cluster_secret_file\" path=%s err=\"%s\"",
                  cfg->cluster_secret_file, strerror(errno));
        rc = ROOST_EIO;
        goto fail;
    }
    uint8_t buf[sizeof(sh->secret) + 2];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < 16 || (size_t)n > sizeof(sh->secret)) {
        log_error("event=trunk_config msg=\"cluster secret must be 16-%zu bytes\" path=%s",
                  sizeof(sh->secret), cfg->cluster_secret_file);
        explicit_bzero(buf, sizeof(buf));
        goto fail;
    }
    memcpy(sh->secret, buf, (size_t)n);
    explicit_bzero(buf, sizeof(buf));
    sh->secret_len = (size_t)n;
    if (cfg->cluster_static_home[0] != '\0') {
        const char *at = strchr(cfg->cluster_static_home, '@');
        if (at == NULL || at == cfg->cluster_static_home ||
            (size_t)(at - cfg->cluster_static_home) > TRUNKMSG_ID_MAX || strrchr(at, ':') == NULL ||
            strlen(at + 1) >= sizeof(sh->static_addr)) {
            log_error("event=trunk_config msg=\"static_home must be ID@HOST:PORT\" value=\"%s\"",
                      cfg->cluster_static_home);
            goto fail;
        }
        sh->static_mode = true;
        memcpy(sh->static_id, cfg->cluster_static_home, (size_t)(at - cfg->cluster_static_home));
        snprintf(sh->static_addr, sizeof(sh->static_addr), "%s", at + 1);
        sh->static_self = strcmp(sh->static_id, sh->id) == 0;
    }
    pthread_mutex_init(&sh->mu, NULL);
    log_info("event=trunk_config relay_id=%s pid_prefix=%u static_home=%s%s", sh->id, sh->prefix,
             sh->static_mode ? sh->static_id : "-", sh->static_self ? " (self)" : "");
    *out = sh;
    return 0;
fail:
    free(sh);
    return rc;
}

void trunk_shared_del(struct trunk_shared *sh)
{
    if (sh == NULL)
        return;
    while (sh->homes != NULL) {
        struct home_ent *e = sh->homes;
        sh->homes = e->next;
        dir_lease_put(e->lease);
        free(e);
    }
    pthread_mutex_destroy(&sh->mu);
    explicit_bzero(sh->secret, sizeof(sh->secret));
    free(sh);
}

void trunk_shared_set_cluster(struct trunk_shared *sh, struct cluster *c)
{
    sh->cluster = c;
}

/* ours: the MAC of our HELLO; otherwise the one the peer's HELLO (with
 * pid prefix peer_prefix) must carry. */
static int hello_mac(struct trunk *t, char role, bool ours, uint8_t peer_prefix,
                     uint8_t mac[TRUNKMSG_MAC_LEN])
{
    struct trunk_shared *sh = t->set->sh;
    uint8_t ex[32];
    int rc = quic_conn_export(t->c, EXPORTER_LABEL, ex, sizeof(ex));
    if (rc != 0)
        return rc;
    if (ours)
        return trunkmsg_mac(sh->secret, sh->secret_len, role, sh->id, sh->id_len, sh->prefix,
                            t->peer_id, t->peer_len, ex, mac);
    return trunkmsg_mac(sh->secret, sh->secret_len, role, t->peer_id, t->peer_len, peer_prefix,
                        sh->id, sh->id_len, ex, mac);
}

int trunk_send_hello(struct trunk *t)
{
    struct trunk_shared *sh = t->set->sh;
    struct trunkmsg m = {.type = TRUNKMSG_HELLO,
                         .version = TRUNKMSG_VERSION,
                         .id_len = (uint8_t)sh->id_len,
                         .prefix = sh->prefix};
    memcpy(m.id, sh->id, sh->id_len);
    int rc = hello_mac(t, t->outbound ? 'c' : 's', true, 0, m.mac);
    return rc != 0 ? rc : trunk_send_msg(t, &m);
}

void trunk_close_auth(struct trunk *t, const char *why)
{
    TSTAT_INC(t->set, auth_failures);
    log_warn("event=trunk_auth_failed peer=%.*s dir=%s reason=\"%s\"", (int)t->peer_len, t->peer_id,
             t->outbound ? "out" : "in", why);
    quic_conn_close(t->c, TRUNK_ERR_AUTH, "trunk authentication failed");
}

/* The peer uses this relay's pid_prefix: counted and logged on both ends
 * (here: we found it, or the peer closed with TRUNK_ERR_PREFIX). */
void trunk_close_prefix(struct trunk *t, bool close)
{
    TSTAT_INC(t->set, prefix_conflicts);
    log_error("event=trunk_prefix_conflict peer=%.*s dir=%s pid_prefix=%u "
              "msg=\"two relays share [cluster] pid_prefix; give each relay its own\"",
              (int)t->peer_len, t->peer_id, t->outbound ? "out" : "in", t->set->sh->prefix);
    if (close)
        quic_conn_close(t->c, TRUNK_ERR_PREFIX, "pid_prefix shared with this relay");
}

void trunk_on_hello(struct trunk *t, const struct trunkmsg *m)
{
    if (t->st != T_HELLO) {
        quic_conn_close(t->c, TRUNK_ERR_PROTOCOL, "unexpected HELLO");
        return;
    }
    if (m->version != TRUNKMSG_VERSION) {
        trunk_close_auth(t, "version");
        return;
    }
    if (t->outbound) {
        if (m->id_len != t->peer_len || memcmp(m->id, t->peer_id, t->peer_len) != 0) {
            trunk_close_auth(t, "the home answered with another relay id");
            return;
        }
    } else {
        /* Not authenticated yet: only a well-formed id is kept (and logged). */
        char id[TRUNKMSG_ID_MAX + 1];
        memcpy(id, m->id, m->id_len);
        id[m->id_len] = '\0';
        if (!dirkey_valid_id(id)) {
            trunk_close_auth(t, "malformed relay id");
            return;
        }
        memcpy(t->peer_id, id, (size_t)m->id_len + 1);
        t->peer_len = m->id_len;
    }
    uint8_t want[TRUNKMSG_MAC_LEN];
    if (hello_mac(t, t->outbound ? 's' : 'c', false, m->prefix, want) != 0 ||
        gnutls_memcmp(want, m->mac, TRUNKMSG_MAC_LEN) != 0) {
        trunk_close_auth(t, "bad MAC (cluster secret differs?)");
        return;
    }
    t->peer_prefix = m->prefix;
    if (m->prefix == t->set->sh->prefix) {
        /* Both relays would issue the same participant ids: refused before
         * any room is shared (PROTOCOL.md §12.2). The home checks first, so
         * a dialer normally learns it from the close (trunk.c on_close). */
        trunk_close_prefix(t, true);
        return;
    }
    if (!t->outbound && trunk_send_hello(t) != 0)
        return; /* closing (too slow) */
    trunk_up(t);
}
