#include "relay/config.h"
#include "relay/config_int.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpulist.h"
#include "core/error.h"
#include "proto/keyfile.h"
#include "quic/quic.h"
#include "quic/udp.h"
#include "room/room.h"
#include "ws/ws.h"

enum key_id {
    K_LISTEN,
    K_PORT,
    K_WORKERS,
    K_CPUS,
    K_STATE_DIR,
    K_LOG_LEVEL,
    K_UDP_BUFFER,
    K_STEERING,
    K_CERT,
    K_KEY,
    K_TLS_PRIORITY,
    K_TICKET_PERIOD,
    K_SESSION_TICKETS,
    K_TOKEN_KEYS,
    K_TOKEN_SKEW,
    K_INSECURE_NO_AUTH,
    K_MAX_ROOMS,
    K_MAX_MEMBERS,
    K_AFFINITY_MAX_MEMBERS,
    K_OWNER_SHARE_MAX,
    K_PLACEMENT,
    K_PACK_MEMBERS,
    K_MAX_CONNS,
    K_MAX_HALF_OPEN,
    K_HANDSHAKE_RATE,
    K_IDLE_TIMEOUT,
    K_HANDSHAKE_TIMEOUT,
    K_FORCE_RETRY,
    K_ADMIN,
    K_ADMIN_LISTEN,
    K_ADMIN_PORT,
    K_DRAIN_TIMEOUT,
    /* ops (issue 16/19): room tuning and admin connection limits */
    K_KEYFRAME_CAP,
    K_PREFILL,
    K_KFREQ_WINDOW,
    K_QUALITY_INTERVAL,
    K_ADMIN_CONN_LIMIT,
    K_ADMIN_CONN_TIMEOUT,
    /* WebSocket transport (issue 20) */
    K_WS_LISTEN,
    K_WS_PLAIN,
    K_WEB_ROOT,
    K_TURN_BATCH,  /* issue 13: turn cadence */
    K_TIMER_SLACK, /* session 6: timers may fire this late rather than cut a hold */
    /* receive budgets (issue 16) */
    K_CONN_PKT_RATE,
    K_CONN_BYTE_RATE,
    K_ADDR_PKT_RATE,
    K_ADDR_BYTE_RATE,
    K_COUNT, /* then the [cluster] keys (config_cluster.c) */
    K_TOTAL = K_COUNT + CONFIG_CLUSTER_NKEYS,
};

#define S (1000000000ull)
/* Defaults that belong to a layer are that layer's constants, printed. */
#define STR_(x) #x
#define STR(x) STR_(x)
static const struct config_key keys[K_COUNT] = {
    [K_LISTEN] = {"server", "listen", CONFIG_STR, "127.0.0.1", 0, 0, false,
                  "numeric IPv4/IPv6 address the QUIC sockets bind"},
    [K_PORT] = {"server", "port", CONFIG_UINT, "4433", 1, 65535, false, "UDP port"},
    [K_WORKERS] = {"server", "workers", CONFIG_UINT, "0", 0, WORKER_MAX, false,
                   "worker threads; 0: one per CPU in `cpus` or in the affinity mask"},
    [K_CPUS] = {"server", "cpus", CONFIG_CPUS, "", 0, 0, false,
                "pin workers to these CPUs, e.g. 2-5,8; empty: the affinity mask"},
    [K_STATE_DIR] = {"server", "state_dir", CONFIG_PATH, "", 0, 0, false,
                     "keeps the stateless-reset/Retry secret across restarts"},
    [K_LOG_LEVEL] = {"server", "log_level", CONFIG_LEVEL, "info", 0, 0, true,
                     "error|warn|info|debug"},
    [K_UDP_BUFFER] = {"server", "udp_buffer", CONFIG_SIZE, "4m", 64 * 1024, 1ull << 30, false,
                      "SO_RCVBUF/SO_SNDBUF per socket (capped by net.core.[rw]mem_max)"},
    [K_STEERING] = {"server", "steering", CONFIG_BOOL, "true", 0, 0, false,
                    "kernel steers packets to their connection's worker (OPERATIONS.md)"},
    [K_CERT] = {"tls", "cert", CONFIG_PATH, "", 0, 0, false, "PEM certificate chain (required)"},
    [K_KEY] = {"tls", "key", CONFIG_PATH, "", 0, 0, false, "PEM private key (required)"},
    [K_TLS_PRIORITY] = {"tls", "priority", CONFIG_STR, "", 0, 0, false,
                        "gnutls priority string; empty: TLS 1.3, X25519 first (OPERATIONS.md)"},
    [K_TICKET_PERIOD] = {"tls", "ticket_rotation", CONFIG_DURATION, "6h", 60 * S, 302400 * S, false,
                         "session ticket key rotation period (also on SIGHUP)"},
    [K_SESSION_TICKETS] = {"tls", "session_tickets", CONFIG_BOOL, "true", 0, 0, false,
                           "issue session tickets (resumed joins skip the certificate)"},
    [K_TOKEN_KEYS] = {"auth", "token_keys", CONFIG_PATH, "", 0, 0, true,
                      "join-token key file (required unless insecure_no_auth)"},
    [K_TOKEN_SKEW] = {"auth", "token_skew", CONFIG_DURATION, "30s", 0, 3600 * S, false,
                      "clock skew allowed on token validity"},
    [K_INSECURE_NO_AUTH] = {"auth", "insecure_no_auth", CONFIG_BOOL, "false", 0, 0, false,
                            "DEV ONLY: accept every JOIN without a token"},
    [K_MAX_ROOMS] = {"limits", "max_rooms", CONFIG_UINT, STR(ROOM_DEFAULT_MAX_ROOMS), 1, UINT32_MAX,
                     false, "rooms on this server"},
    [K_MAX_MEMBERS] = {"limits", "max_members", CONFIG_UINT, STR(ROOM_DEFAULT_MAX_MEMBERS), 1,
                       UINT32_MAX, false, "participants per room"},
    [K_AFFINITY_MAX_MEMBERS] = {"limits", "affinity_max_members", CONFIG_UINT_AUTO, "auto", 0,
                                UINT32_MAX - 1, false,
                                "rooms up to this size keep their members on the owner "
                                "worker (connection hand-off); 0: off; auto: " STR(
                                    RELAY_AFFINITY_AUTO_MEMBERS) " under ebpf steering, "
                                                                 "else off"},
    [K_OWNER_SHARE_MAX] = {"limits", "owner_share_max", CONFIG_UINT, "0", 0, 100, false,
                           "percent of the relay's participants one worker may own before "
                           "new rooms hashing to it go to the next hash's worker; 0: off"},
    [K_PLACEMENT] = {"limits", "placement", CONFIG_STR, "auto", 0, 0, false,
                     "where new rooms go: spread (the worker the room id hashes to), pack "
                     "(the lowest-numbered worker owning fewer than pack_members participants; "
                     "idle workers sleep) or auto: pack when room affinity is in force, else "
                     "spread"},
    [K_PACK_MEMBERS] = {"limits", "pack_members", CONFIG_UINT, STR(ROOM_DEFAULT_PACK_MEMBERS), 1,
                        UINT32_MAX, false,
                        "placement = pack: participants a worker owns before new rooms go to "
                        "the next worker"},
    [K_MAX_CONNS] = {"limits", "max_conns", CONFIG_UINT, STR(QUIC_DEFAULT_MAX_CONNS), 1, UINT32_MAX,
                     true, "connections per worker (reload may raise or lower it)"},
    [K_MAX_HALF_OPEN] = {"limits", "max_half_open", CONFIG_UINT, STR(QUIC_DEFAULT_RETRY_THRESHOLD),
                         1, UINT32_MAX, true, "handshakes in flight per worker before Retry"},
    [K_HANDSHAKE_RATE] = {"limits", "handshake_rate", CONFIG_UINT, "0", 0, UINT32_MAX, false,
                          "new handshakes per second before Retry; 0: unlimited"},
    [K_IDLE_TIMEOUT] = {"limits", "idle_timeout", CONFIG_DURATION, "30s", S / 10, 3600 * S, false,
                        "QUIC idle timeout"},
    [K_HANDSHAKE_TIMEOUT] = {"limits", "handshake_timeout", CONFIG_DURATION, "5s", S / 10, 600 * S,
                             false, "handshake, HELLO and JOIN deadline"},
    [K_FORCE_RETRY] = {"limits", "force_retry", CONFIG_BOOL, "false", 0, 0, false,
                       "validate every client address with Retry"},
    [K_ADMIN] = {"admin", "admin", CONFIG_BOOL, "true", 0, 0, false,
                 "serve /metrics /capacity /rooms /healthz"},
    [K_ADMIN_LISTEN] = {"admin", "admin_listen", CONFIG_STR, "127.0.0.1", 0, 0, false,
                        "numeric address of the admin endpoint"},
    [K_ADMIN_PORT] = {"admin", "admin_port", CONFIG_UINT, "9464", 0, 65535, false,
                      "TCP port of the admin endpoint; 0: ephemeral"},
    [K_DRAIN_TIMEOUT] = {"drain", "drain_timeout", CONFIG_DURATION, "30s", 0, 3600 * S, true,
                         "SIGTERM: keep relaying until rooms are empty or this long"},
    /* ops (issue 16/19): room tuning and admin connection limits */
    [K_KEYFRAME_CAP] = {"rooms", "keyframe_cap", CONFIG_SIZE, "200k", 1024, 64ull << 20, false,
                        "keyframe cache bytes per (sender, stream)"},
    [K_PREFILL] = {"rooms", "prefill", CONFIG_DURATION, "0", 0, 10 * S, false,
                   "audio sent to a joiner from before it joined; 0: off"},
    [K_KFREQ_WINDOW] = {"rooms", "keyframe_request_window", CONFIG_DURATION, "200ms", S / 1000,
                        60 * S, false, "duplicate KEYFRAME_REQUESTs suppressed this long"},
    [K_QUALITY_INTERVAL] = {"rooms", "quality_interval", CONFIG_DURATION, "1s", S / 10, 60 * S,
                            false, "period of QUALITY reports to members"},
    [K_ADMIN_CONN_LIMIT] = {"admin", "admin_conn_limit", CONFIG_UINT, "1024", 4, 65536, false,
                            "admin TCP connections served at once"},
    [K_ADMIN_CONN_TIMEOUT] = {"admin", "admin_conn_timeout", CONFIG_DURATION, "5s", S, 600 * S,
                              false, "an idle admin connection is closed after this long"},
    /* WebSocket transport (issue 20) */
    [K_WS_LISTEN] = {"websocket", "ws_listen", CONFIG_STR, "", 0, 0, false,
                     "ADDR:PORT ([v6]:PORT) of the WebSocket (browser) listener; empty: off"},
    [K_WS_PLAIN] = {"websocket", "ws_plain", CONFIG_BOOL, "false", 0, 0, false,
                    "DEV ONLY: ws:// without TLS; loopback ws_listen only"},
    [K_WEB_ROOT] = {"websocket", "web_root", CONFIG_PATH, "", 0, 0, false,
                    "directory of the browser page served at / on ws_listen; empty: none"},
    [K_TURN_BATCH] = {"server", "turn_batch_us", CONFIG_UINT, STR(RELAY_DEFAULT_TURN_BATCH_US), 0,
                      100000, false,
                      "turn cadence: a worker with little work waits up to this many us "
                      "between turns; 0: off"},
    [K_TIMER_SLACK] = {"server", "timer_slack_us", CONFIG_UINT, STR(RELAY_DEFAULT_TIMER_SLACK_US),
                       0, 100000, false,
                       "turn cadence: a timer may fire up to this many us late rather than "
                       "end a wait early; 0: timers end waits at their expiry"},
    /* receive budgets (issue 16): far above media rates (a 5 Mbit/s
     * publisher sends ~500 packets/s); 0: unlimited */
    [K_CONN_PKT_RATE] = {"limits", "conn_packet_rate", CONFIG_UINT, "10000", 0, UINT32_MAX, false,
                         "packets/s one connection may send; above: closed RATE_LIMITED"},
    [K_CONN_BYTE_RATE] = {"limits", "conn_byte_rate", CONFIG_SIZE, "16m", 0, 1ull << 40, false,
                          "bytes/s one connection may send; above: closed RATE_LIMITED"},
    [K_ADDR_PKT_RATE] = {"limits", "addr_packet_rate", CONFIG_UINT, "100000", 0, UINT32_MAX, false,
                         "packets/s per source IP address and worker; above: dropped"},
    [K_ADDR_BYTE_RATE] = {"limits", "addr_byte_rate", CONFIG_SIZE, "128m", 0, 1ull << 40, false,
                          "bytes/s per source IP address and worker; above: dropped"},
};
#undef S
#undef STR
#undef STR_

/* Both tables as one (config_keys), made at the first call. */
static struct config_key all_keys[K_TOTAL];

const struct config_key *config_keys(size_t *n)
{
    if (all_keys[0].name == NULL) {
        memcpy(all_keys, keys, sizeof(keys));
        memcpy(all_keys + K_COUNT, config_cluster_keys, sizeof(config_cluster_keys));
    }
    *n = K_TOTAL;
    return all_keys;
}

const struct config_key *config_key_at(int id)
{
    return id < K_COUNT ? &keys[id] : &config_cluster_keys[id - K_COUNT];
}

int config_key_find(const char *name)
{
    for (int i = 0; i < K_TOTAL; i++)
        if (strcmp(config_key_at(i)->name, name) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------- storage */

static int store_str(struct config *c, int id, const char *value, const char **dst)
{
    char *d = strdup(value);
    if (d == NULL)
        return ROOST_ENOMEM;
    free(c->strs[id]);
    c->strs[id] = d;
    *dst = *d ? d : NULL; /* empty: unset */
    return 0;
}

static void ferr(char *err, size_t len, const char *fmt, const char *a)
{
    if (err != NULL && len > 0)
        snprintf(err, len, fmt, a);
}

/* ws_listen: "ADDR:PORT" or "[V6ADDR]:PORT" (empty: off) into
 * relay.ws.addr (a numeric address) and relay.ws.port (0..65535; 0:
 * ephemeral). Returns 0, ROOST_EINVAL (err says why) or ROOST_ENOMEM. */
static int ws_listen_parse(struct config *c, int id, const char *value, char *err, size_t err_len)
{
    struct relay_config *r = &c->relay;
    if (*value == '\0') {
        r->ws.addr = NULL;
        r->ws.port = 0;
        return store_str(c, id, value, &r->ws.addr);
    }
    const char *colon = strrchr(value, ':');
    const char *host = value;
    size_t hlen = colon != NULL ? (size_t)(colon - value) : 0;
    if (hlen > 0 && value[0] == '[') {
        if (value[hlen - 1] != ']') {
            ferr(err, err_len, "%s", "expected ADDR:PORT or [V6ADDR]:PORT");
            return ROOST_EINVAL;
        }
        host = value + 1;
        hlen -= 2;
    }
    char *end = NULL;
    unsigned long port = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
    if (colon == NULL || hlen == 0 || colon[1] == '\0' || *end != '\0' || port > 65535) {
        ferr(err, err_len, "%s", "expected ADDR:PORT or [V6ADDR]:PORT, e.g. 127.0.0.1:4443");
        return ROOST_EINVAL;
    }
    char h[64];
    struct udp_addr a;
    if (hlen < sizeof(h)) {
        memcpy(h, host, hlen);
        h[hlen] = '\0';
    }
    /* An IPv6 address only in brackets, brackets only around one. */
    bool bracketed = host != value, v6 = hlen < sizeof(h) && strchr(h, ':') != NULL;
    if (hlen >= sizeof(h) || bracketed != v6 || udp_addr_parse(&a, h, 0) != 0) {
        ferr(err, err_len, "%s", "not a numeric IPv4 address or [IPv6] address");
        return ROOST_EINVAL;
    }
    int rc = store_str(c, id, h, &r->ws.addr);
    r->ws.port = (uint16_t)port;
    return rc;
}

int config_set(struct config *c, const char *name, const char *value, const char *file, int line,
               char *err, size_t err_len)
{
    int id = config_key_find(name);
    if (id < 0) {
        ferr(err, err_len, "unknown key '%s'", name);
        return ROOST_ENOENT;
    }
    const struct config_key *k = config_key_at(id);
    struct relay_config *r = &c->relay;
    uint64_t v = 0;
    bool b = false, is_auto = false;
    unsigned n_cpus = 0;
    int rc = 0;
    switch (k->type) {
    case CONFIG_UINT:
    case CONFIG_UINT_AUTO:
    case CONFIG_DURATION:
    case CONFIG_SIZE:
        if (k->type == CONFIG_UINT_AUTO && strcasecmp(value, "auto") == 0) {
            is_auto = true;
            break;
        }
        if (k->type == CONFIG_UINT || k->type == CONFIG_UINT_AUTO) {
            const char *end;
            rc = config_parse_u64(value, &v, &end);
            if (rc == 0 && *end != '\0')
                rc = ROOST_EINVAL;
        } else if (k->type == CONFIG_DURATION) {
            rc = config_parse_duration(value, &v);
        } else {
            rc = config_parse_size(value, &v);
        }
        if (rc == ROOST_EINVAL) {
            ferr(err, err_len, "%s",
                 k->type == CONFIG_UINT        ? "expected a decimal number"
                 : k->type == CONFIG_UINT_AUTO ? "expected a decimal number or auto"
                 : k->type == CONFIG_DURATION  ? "expected a duration such as 250ms, 30s, 2m, 1h"
                                               : "expected a size such as 65536, 64k, 4m, 1g");
            return rc;
        }
        if (rc != 0 || v < k->min || (k->max != 0 && v > k->max)) {
            if (err != NULL)
                snprintf(err, err_len, "out of range (%llu..%llu%s)", (unsigned long long)k->min,
                         (unsigned long long)k->max,
                         k->type == CONFIG_DURATION    ? " ns"
                         : k->type == CONFIG_SIZE      ? " bytes"
                         : k->type == CONFIG_UINT_AUTO ? ", or auto"
                                                       : "");
            return ROOST_ERANGE;
        }
        break;
    case CONFIG_BOOL:
        if (config_parse_bool(value, &b) != 0) {
            ferr(err, err_len, "%s", "expected true or false");
            return ROOST_EINVAL;
        }
        break;
    case CONFIG_LEVEL:
        if (log_parse_level(value, &c->log_level) != 0) {
            ferr(err, err_len, "%s", "expected error, warn, info or debug");
            return ROOST_EINVAL;
        }
        break;
    case CONFIG_CPUS:
        if (*value == '\0') {
            r->n_cpus = 0;
            r->cpus = NULL;
            break;
        }
        rc = cpulist_parse(value, c->cpus, WORKER_MAX, &n_cpus);
        if (rc != 0) {
            ferr(err, err_len, "%s",
                 rc == ROOST_ERANGE ? "too many CPUs" : "expected a CPU list such as 0,2-5");
            return rc;
        }
        r->n_cpus = n_cpus;
        r->cpus = c->cpus;
        break;
    case CONFIG_STR:
    case CONFIG_PATH:
        break;
    }

    switch ((enum key_id)id) {
    case K_LISTEN:
        if (*value == '\0') {
            ferr(err, err_len, "%s", "must not be empty");
            return ROOST_EINVAL;
        }
        rc = store_str(c, id, value, &r->addr);
        break;
    case K_PORT:
        r->port = (uint16_t)v;
        break;
    case K_WORKERS:
        r->n_workers = (unsigned)v;
        break;
    /* relay_config: 0 is "the default", RELAY_OFF is off (relay.h). */
    case K_TURN_BATCH:
        r->turn_batch_us = v == 0 ? RELAY_OFF : (uint32_t)v;
        break;
    case K_TIMER_SLACK:
        r->timer_slack_us = v == 0 ? RELAY_OFF : (uint32_t)v;
        break;
    case K_STATE_DIR:
        rc = store_str(c, id, value, &r->state_dir);
        break;
    case K_UDP_BUFFER:
        r->sock_buf = (int)v;
        break;
    case K_CERT:
        rc = store_str(c, id, value, &r->cert_file);
        break;
    case K_KEY:
        rc = store_str(c, id, value, &r->key_file);
        break;
    case K_TLS_PRIORITY:
        rc = *value != '\0' ? store_str(c, id, value, &r->tls_priority) : 0;
        break;
    case K_TICKET_PERIOD:
        r->ticket_period_s = (unsigned)(v / 1000000000ull);
        break;
    case K_SESSION_TICKETS:
        r->no_tickets = !b;
        break;
    case K_TOKEN_KEYS:
        rc = store_str(c, id, value, &r->token_key_file);
        break;
    case K_TOKEN_SKEW:
        r->token_skew_s = (uint32_t)(v / 1000000000ull);
        break;
    case K_INSECURE_NO_AUTH:
        r->insecure_no_auth = b;
        break;
    case K_MAX_ROOMS:
        r->max_rooms = (uint32_t)v;
        break;
    case K_MAX_MEMBERS:
        r->max_members = (uint32_t)v;
        break;
    case K_AFFINITY_MAX_MEMBERS: /* resolved by relay_new (relay_affinity_resolve) */
        r->affinity_max_members = is_auto ? RELAY_AFFINITY_AUTO : v == 0 ? RELAY_OFF : (uint32_t)v;
        break;
    case K_OWNER_SHARE_MAX:
        r->owner_share_max = (uint32_t)v;
        break;
    case K_PLACEMENT:
        if (strcmp(value, "auto") == 0) { /* resolved by relay_new (relay_placement_resolve) */
            r->placement = ROOM_PLACE_AUTO;
        } else if (strcmp(value, "spread") == 0) {
            r->placement = ROOM_PLACE_SPREAD;
        } else if (strcmp(value, "pack") == 0) {
            r->placement = ROOM_PLACE_PACK;
        } else {
            ferr(err, err_len, "%s", "expected auto, spread or pack");
            return ROOST_EINVAL;
        }
        break;
    case K_PACK_MEMBERS:
        r->pack_members = (uint32_t)v;
        break;
    case K_MAX_CONNS:
        r->max_conns_per_worker = (unsigned)v;
        break;
    case K_MAX_HALF_OPEN:
        r->max_half_open = (unsigned)v;
        break;
    case K_HANDSHAKE_RATE:
        r->handshake_rate = (uint32_t)v;
        break;
    case K_IDLE_TIMEOUT:
        r->idle_timeout_ns = v;
        break;
    case K_HANDSHAKE_TIMEOUT:
        r->handshake_timeout_ns = v;
        break;
    case K_FORCE_RETRY:
        r->force_retry = b;
        break;
    case K_STEERING:
        r->no_steering = !b;
        break;
    case K_ADMIN:
        c->admin = b;
        break;
    case K_ADMIN_LISTEN:
        rc = store_str(c, id, value, &c->admin_listen);
        break;
    case K_ADMIN_PORT:
        c->admin_port = (uint16_t)v;
        break;
    case K_DRAIN_TIMEOUT:
        c->drain_timeout_ns = v;
        r->drain_ms = (uint32_t)(v / 1000000u);
        break;
    /* ops (issue 16/19) */
    case K_KEYFRAME_CAP:
        r->keyframe_cap = (uint32_t)v;
        break;
    case K_PREFILL:
        r->prefill_ms = (uint32_t)(v / 1000000u);
        break;
    case K_KFREQ_WINDOW:
        r->kfreq_window_ns = v;
        break;
    case K_QUALITY_INTERVAL:
        r->quality_interval_ns = v;
        break;
    case K_ADMIN_CONN_LIMIT:
        c->admin_conn_limit = (unsigned)v;
        break;
    case K_ADMIN_CONN_TIMEOUT:
        c->admin_conn_timeout_ns = v;
        break;
    /* WebSocket transport (issue 20) */
    case K_WS_LISTEN:
        rc = ws_listen_parse(c, id, value, err, err_len);
        if (rc == ROOST_EINVAL)
            return rc;
        break;
    case K_WS_PLAIN:
        r->ws.plain = b;
        break;
    case K_WEB_ROOT:
        rc = store_str(c, id, value, &r->ws.web_root);
        break;
    case K_CONN_PKT_RATE:
        r->conn_pkt_rate = (uint32_t)v;
        break;
    case K_CONN_BYTE_RATE:
        r->conn_byte_rate = v;
        break;
    case K_ADDR_PKT_RATE:
        r->addr_pkt_rate = (uint32_t)v;
        break;
    case K_ADDR_BYTE_RATE:
        r->addr_byte_rate = v;
        break;
    case K_CPUS:
    case K_LOG_LEVEL:
        break;
    default: /* [cluster]: K_COUNT.. (config_cluster.c) */
        rc = config_cluster_set(c, (unsigned)(id - K_COUNT), value, v, err, err_len);
        if (rc == ROOST_EINVAL)
            return rc;
        break;
    }
    if (rc != 0) {
        ferr(err, err_len, "%s", "out of memory");
        return rc;
    }
    c->origin[id].file = file;
    c->origin[id].line = line;
    c->set[id] = true;
    return 0;
}

int config_init(struct config *c)
{
    memset(c, 0, sizeof(*c));
    c->strs = calloc(K_TOTAL, sizeof(*c->strs));
    c->origin = calloc(K_TOTAL, sizeof(*c->origin));
    c->set = calloc(K_TOTAL, sizeof(*c->set));
    if (c->strs == NULL || c->origin == NULL || c->set == NULL) {
        config_free(c);
        return ROOST_ENOMEM;
    }
    for (int i = 0; i < K_TOTAL; i++) {
        char err[128];
        int rc =
            config_set(c, config_key_at(i)->name, config_key_at(i)->def, NULL, 0, err, sizeof(err));
        if (rc != 0) {
            config_free(c);
            return rc;
        }
        c->set[i] = false;
    }
    return 0;
}

void config_free(struct config *c)
{
    if (c->strs != NULL)
        for (int i = 0; i < K_TOTAL; i++)
            free(c->strs[i]);
    free(c->strs);
    free(c->origin);
    free(c->set);
    free(c->file);
    memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------ validate */

static int verr(const struct config *c, int id, config_error_cb cb, void *arg, const char *msg)
{
    if (cb != NULL)
        cb(arg, c->origin[id].file ? c->origin[id].file : (c->file ? c->file : "command line"),
           c->origin[id].line, config_key_at(id)->name, msg);
    return 1;
}

int config_validate(const struct config *c, config_error_cb cb, void *arg)
{
    const struct relay_config *r = &c->relay;
    int n = 0;
    char msg[400];
    if (r->cert_file == NULL)
        n += verr(c, K_CERT, cb, arg, "required");
    if (r->key_file == NULL)
        n += verr(c, K_KEY, cb, arg, "required");
    if (r->cert_file != NULL && access(r->cert_file, R_OK) != 0) {
        snprintf(msg, sizeof(msg), "cannot read '%s': %s", r->cert_file, strerror(errno));
        n += verr(c, K_CERT, cb, arg, msg);
    } else if (r->key_file != NULL && access(r->key_file, R_OK) != 0) {
        snprintf(msg, sizeof(msg), "cannot read '%s': %s", r->key_file, strerror(errno));
        n += verr(c, K_KEY, cb, arg, msg);
    } else if (r->cert_file != NULL && r->key_file != NULL) {
        gnutls_certificate_credentials_t cred;
        if (gnutls_certificate_allocate_credentials(&cred) == 0) {
            int g = gnutls_certificate_set_x509_key_file(cred, r->cert_file, r->key_file,
                                                         GNUTLS_X509_FMT_PEM);
            if (g < 0) {
                snprintf(msg, sizeof(msg), "certificate and key do not load: %s",
                         gnutls_strerror(g));
                n += verr(c, K_CERT, cb, arg, msg);
            }
            gnutls_certificate_free_credentials(cred);
        }
    }
    if (r->tls_priority != NULL && quic_priority_check(r->tls_priority, msg, sizeof(msg)) != 0)
        n += verr(c, K_TLS_PRIORITY, cb, arg, msg);
    if (!r->insecure_no_auth) {
        if (r->token_key_file == NULL) {
            n += verr(c, K_TOKEN_KEYS, cb, arg, "required (or insecure_no_auth = true, dev only)");
        } else {
            struct token_keyring *kr = malloc(sizeof(*kr));
            if (kr != NULL && keyfile_load(r->token_key_file, kr, msg, sizeof(msg)) != 0)
                n += verr(c, K_TOKEN_KEYS, cb, arg, msg);
            if (kr != NULL)
                token_keyring_wipe(kr);
            free(kr);
        }
    }
    struct udp_addr a;
    if (r->addr != NULL && udp_addr_parse(&a, r->addr, r->port) != 0)
        n += verr(c, K_LISTEN, cb, arg, "not a numeric IPv4/IPv6 address");
    if (c->admin && c->admin_listen != NULL && udp_addr_parse(&a, c->admin_listen, 0) != 0)
        n += verr(c, K_ADMIN_LISTEN, cb, arg, "not a numeric IPv4/IPv6 address");
    if (r->n_cpus > 0) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
            for (unsigned i = 0; i < r->n_cpus; i++)
                if (!CPU_ISSET(c->cpus[i], &set)) {
                    snprintf(msg, sizeof(msg), "CPU %d is not in this process's affinity mask",
                             c->cpus[i]);
                    n += verr(c, K_CPUS, cb, arg, msg);
                    break;
                }
    }
    if (r->n_cpus > 0 && r->n_workers > r->n_cpus)
        n += verr(c, K_WORKERS, cb, arg, "more workers than CPUs in `cpus`");
    if (r->ws.plain && r->ws.addr == NULL)
        n += verr(c, K_WS_PLAIN, cb, arg, "needs ws_listen");
    if (r->ws.plain && r->ws.addr != NULL && !ws_addr_is_loopback(r->ws.addr))
        n += verr(c, K_WS_PLAIN, cb, arg,
                  "plain ws:// (no TLS) is allowed only on a loopback ws_listen address "
                  "(127.0.0.0/8, ::1); use TLS (ws_plain = false) on this address");
    if (r->ws.web_root != NULL && r->ws.addr == NULL)
        n += verr(c, K_WEB_ROOT, cb, arg, "needs ws_listen (the page is served on that port)");
    if (r->ws.web_root != NULL) {
        struct stat st;
        if (stat(r->ws.web_root, &st) != 0 || !S_ISDIR(st.st_mode)) {
            snprintf(msg, sizeof(msg), "'%s' is not a directory", r->ws.web_root);
            n += verr(c, K_WEB_ROOT, cb, arg, msg);
        }
    }
    return n + config_cluster_validate(c, K_COUNT, verr, cb, arg);
}
