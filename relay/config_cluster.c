/* roost-relay configuration: the [cluster] section (issue 18,
 * docs/CLUSTER.md, docs/CONFIG.md "[cluster]"). Its keys live in this
 * file's table; relay/config.c numbers them after its own and calls in
 * here to store and check them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/dirkey.h"
#include "cluster/dirtime.h"
#include "core/error.h"
#include "relay/cluster.h"
#include "relay/config_int.h"

enum {
    C_REDIS,
    C_PASSWORD,
    C_PASSWORD_FILE,
    C_DB,
    C_RELAY_ID,
    C_PID_PREFIX,
    C_TRUNK_LISTEN,
    C_TRUNK_ADVERTISE,
    C_SECRET_FILE,
    C_KEY_PREFIX,
    C_LEASE,
    C_JOIN_WAIT,
    C_REDIS_TIMEOUT,
    C_STATIC_HOME,
    C_N,
};
_Static_assert(C_N == CONFIG_CLUSTER_NKEYS, "CONFIG_CLUSTER_NKEYS");

#define MS (1000000ull)
#define S (1000000000ull)
const struct config_key config_cluster_keys[CONFIG_CLUSTER_NKEYS] = {
    [C_REDIS] = {"cluster", "redis", CONFIG_STR, "", 0, 0, false,
                 "HOST:PORT of the cluster's Redis; empty: no cluster (this relay alone)"},
    [C_PASSWORD] = {"cluster", "redis_password", CONFIG_STR, "", 0, 0, false,
                    "Redis AUTH password (prefer redis_password_file)"},
    [C_PASSWORD_FILE] = {"cluster", "redis_password_file", CONFIG_PATH, "", 0, 0, false,
                         "file whose first line is the Redis AUTH password"},
    [C_DB] = {"cluster", "redis_db", CONFIG_UINT, "0", 0, 1000000, false,
              "Redis database number (SELECT when > 0)"},
    [C_RELAY_ID] = {"cluster", "relay_id", CONFIG_STR, "", 0, 0, false,
                    "this relay's id, unique in the cluster: 1-32 of [A-Za-z0-9._-]"},
    [C_PID_PREFIX] = {"cluster", "pid_prefix", CONFIG_UINT, "0", 0, 255, false,
                      "1-255, unique in the cluster: top byte of every participant id"},
    [C_TRUNK_LISTEN] = {"cluster", "trunk_listen", CONFIG_STR, "", 0, 0, false,
                        "HOST:PORT the relay-to-relay QUIC trunks listen on"},
    [C_TRUNK_ADVERTISE] = {"cluster", "trunk_advertise", CONFIG_STR, "", 0, 0, false,
                           "HOST:PORT other relays reach the trunks at; empty: trunk_listen"},
    [C_SECRET_FILE] = {"cluster", "cluster_secret_file", CONFIG_PATH, "", 0, 0, false,
                       "shared secret that authenticates trunks between relays"},
    [C_KEY_PREFIX] = {"cluster", "key_prefix", CONFIG_STR, "roost", 0, 0, false,
                      "prefix of every Redis key; the same on every relay of a cluster"},
    [C_LEASE] = {"cluster", "lease", CONFIG_DURATION, "5s", 300 * MS, 3600 * S, false,
                 "room home lease; a dead home is replaced after about this long"},
    [C_JOIN_WAIT] = {"cluster", "join_wait", CONFIG_DURATION, "2s", 100 * MS, 60 * S, false,
                     "a JOIN of a room not placed yet waits this long for Redis, then "
                     "JOIN_REJECTED"},
    [C_REDIS_TIMEOUT] = {"cluster", "redis_timeout", CONFIG_DURATION, "500ms", 10 * MS, 10 * S,
                         false, "Redis connect and command timeout"},
    [C_STATIC_HOME] = {"cluster", "static_home", CONFIG_STR, "", 0, 0, false,
                       "tests/fixed deployments without Redis: ID@HOST:PORT homes every room"},
};

static int copy_to(char *dst, size_t cap, const char *value, char *err, size_t err_len)
{
    if (strlen(value) >= cap) {
        snprintf(err, err_len, "longer than %zu bytes", cap - 1);
        return ROOST_EINVAL;
    }
    snprintf(dst, cap, "%s", value);
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port (1..65535). */
static int host_port(const char *value, char *host, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(value, ':');
    if (colon == NULL || colon == value || colon[1] == '\0')
        return ROOST_EINVAL;
    const char *h = value;
    size_t hlen = (size_t)(colon - value);
    if (h[0] == '[') {
        if (hlen < 3 || h[hlen - 1] != ']')
            return ROOST_EINVAL;
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) != NULL) {
        return ROOST_EINVAL; /* an IPv6 address needs brackets */
    }
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || p == 0 || p > 65535 || hlen >= cap)
        return ROOST_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int cluster_trunk_port_check(const char *trunk_listen, uint16_t port, char *err, size_t err_len)
{
    char h[256];
    uint16_t p;
    if (trunk_listen[0] == '\0' || port == 0 || host_port(trunk_listen, h, sizeof(h), &p) != 0 ||
        p == port)
        return 0;
    snprintf(err, err_len,
             "port %u is not the relay's QUIC port %u: trunks ride the relay's QUIC port "
             "(ALPN roost-trunk/1), so trunk_listen must name port %u",
             (unsigned)p, (unsigned)port, (unsigned)port);
    return ROOST_EINVAL;
}

int config_cluster_set(struct config *c, unsigned i, const char *value, uint64_t v, char *err,
                       size_t err_len)
{
    struct relay_config *r = &c->relay;
    struct relay_cluster_config *k = &r->cluster;
    switch (i) {
    case C_REDIS:
        if (*value == '\0') {
            k->redis_host[0] = '\0';
            k->redis_port = 0;
            return 0;
        }
        if (host_port(value, k->redis_host, sizeof(k->redis_host), &k->redis_port) != 0) {
            snprintf(err, err_len, "expected HOST:PORT or [V6ADDR]:PORT, e.g. 127.0.0.1:6379");
            return ROOST_EINVAL;
        }
        return 0;
    case C_PASSWORD:
        return copy_to(k->redis_password, sizeof(k->redis_password), value, err, err_len);
    case C_PASSWORD_FILE:
        return copy_to(k->redis_password_file, sizeof(k->redis_password_file), value, err, err_len);
    case C_DB:
        k->redis_db = (int)v;
        return 0;
    case C_RELAY_ID:
        if (*value != '\0' && !dirkey_valid_id(value)) {
            snprintf(err, err_len, "expected 1-32 bytes of [A-Za-z0-9._-]");
            return ROOST_EINVAL;
        }
        return copy_to(r->cluster_relay_id, sizeof(r->cluster_relay_id), value, err, err_len);
    case C_PID_PREFIX:
        k->pid_prefix = (uint8_t)v;
        return 0;
    case C_TRUNK_LISTEN:
    case C_TRUNK_ADVERTISE: {
        char h[256];
        uint16_t p;
        if (*value != '\0' && host_port(value, h, sizeof(h), &p) != 0) {
            snprintf(err, err_len, "expected HOST:PORT or [V6ADDR]:PORT, e.g. 10.0.0.5:4434");
            return ROOST_EINVAL;
        }
        if (i == C_TRUNK_LISTEN)
            return copy_to(r->cluster_trunk_listen, sizeof(r->cluster_trunk_listen), value, err,
                           err_len);
        return copy_to(k->trunk_advertise, sizeof(k->trunk_advertise), value, err, err_len);
    }
    case C_SECRET_FILE:
        return copy_to(r->cluster_secret_file, sizeof(r->cluster_secret_file), value, err, err_len);
    case C_KEY_PREFIX:
        if (!dirkey_valid_prefix(value)) {
            snprintf(err, err_len, "expected 1-32 bytes of [A-Za-z0-9._-]");
            return ROOST_EINVAL;
        }
        return copy_to(k->key_prefix, sizeof(k->key_prefix), value, err, err_len);
    case C_LEASE:
        k->timing.lease_ms = (uint32_t)(v / MS);
        return 0;
    case C_JOIN_WAIT:
        k->timing.wait_ms = (uint32_t)(v / MS);
        return 0;
    case C_REDIS_TIMEOUT:
        k->timing.connect_timeout_ms = (uint32_t)(v / MS);
        k->timing.cmd_timeout_ms = (uint32_t)(v / MS);
        return 0;
    case C_STATIC_HOME:
        return copy_to(r->cluster_static_home, sizeof(r->cluster_static_home), value, err, err_len);
    default:
        return 0;
    }
}

int config_cluster_validate(const struct config *c, int base, config_report_fn report,
                            config_error_cb cb, void *arg)
{
    const struct relay_config *r = &c->relay;
    const struct relay_cluster_config *k = &r->cluster;
    int n = 0;
    if ((r->cluster_relay_id[0] != '\0' || k->redis_host[0] != '\0') && k->pid_prefix == 0)
        n += report(c, base + C_PID_PREFIX, cb, arg,
                    "required with relay_id or redis: 1-255, different on every relay of the "
                    "cluster");
    if (r->cluster_static_home[0] != '\0' && k->redis_host[0] != '\0')
        n += report(c, base + C_STATIC_HOME, cb, arg, "give redis or static_home, not both");
    char msg[400];
    if (cluster_trunk_port_check(r->cluster_trunk_listen, r->port, msg, sizeof(msg)) != 0)
        n += report(c, base + C_TRUNK_LISTEN, cb, arg, msg);
    if (k->redis_host[0] == '\0')
        return n;
    if (r->cluster_relay_id[0] == '\0')
        n += report(c, base + C_RELAY_ID, cb, arg, "required with redis");
    const char *adv = k->trunk_advertise[0] ? k->trunk_advertise : r->cluster_trunk_listen;
    int adv_id = base + (k->trunk_advertise[0] ? C_TRUNK_ADVERTISE : C_TRUNK_LISTEN);
    char h[256];
    uint16_t p;
    if (adv[0] == '\0') {
        n += report(c, base + C_TRUNK_LISTEN, cb, arg,
                    "required with redis (the address other relays trunk to)");
    } else if (!dirkey_valid_addr(adv) || host_port(adv, h, sizeof(h), &p) != 0) {
        n += report(c, adv_id, cb, arg, "not a usable HOST:PORT");
    } else if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0) {
        n += report(c, adv_id, cb, arg,
                    "a wildcard address cannot be reached by other relays: set trunk_advertise "
                    "to this relay's reachable HOST:PORT");
    }
    if (k->redis_password[0] != '\0' && k->redis_password_file[0] != '\0')
        n += report(c, base + C_PASSWORD_FILE, cb, arg,
                    "give redis_password or redis_password_file, not both");
    if (k->redis_password_file[0] != '\0' && access(k->redis_password_file, R_OK) != 0) {
        snprintf(msg, sizeof(msg), "cannot read '%s'", k->redis_password_file);
        n += report(c, base + C_PASSWORD_FILE, cb, arg, msg);
    }
    struct dir_timing t = k->timing;
    if (dirtime_complete(&t) != 0)
        n += report(c, base + C_LEASE, cb, arg,
                    "too short for the other cluster timings (renewals every lease/3)");
    uint64_t hs = r->handshake_timeout_ns ? r->handshake_timeout_ns : 5 * S;
    if ((uint64_t)t.wait_ms * MS >= hs) {
        snprintf(msg, sizeof(msg),
                 "must be shorter than handshake_timeout (%llu ms), the JOIN deadline",
                 (unsigned long long)(hs / MS));
        n += report(c, base + C_JOIN_WAIT, cb, arg, msg);
    }
    return n;
}
