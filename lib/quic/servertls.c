/* The server end's TLS session set-up (quic_int.h): credentials taken
 * under RCU so a reload never pulls them from under a handshake, the ALPN
 * list (roost/1, plus the trunks' protocol when configured), session tickets
 * under the rotating master keys and the hook that lets a ticket issued
 * under the previous key resume and counts resumptions. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <urcu-qsbr.h>

#include "core/error.h"
#include "quic/quic.h"
#include "quic/quic_int.h"

/* Enables tickets on the session with one master key (gnutls derives its
 * time-based keys from it). */
static int tls_enable_tickets(gnutls_session_t tls, const uint8_t *master)
{
    gnutls_datum_t k = {.data = (unsigned char *)master, .size = TICKETS_KEY_LEN};
    return gnutls_session_ticket_enable_server(tls, &k) == 0 ? 0 : ROOST_ECRYPTO;
}

/* Server TLS hook. ClientHello (before gnutls reads it): a ticket issued
 * under the previous master key gets that key, as gnutls takes one master
 * per session. Client Finished (after): count resumptions. */
static int tls_hook(gnutls_session_t tls, unsigned htype, unsigned when, unsigned incoming,
                    const gnutls_datum_t *msg)
{
    if (!incoming)
        return 0;
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(tls);
    struct quic_conn *c = ref->user_data;
    struct quic_shared *sh = quic_conn_server(c)->sh;
    if (htype == GNUTLS_HANDSHAKE_FINISHED && when == GNUTLS_HOOK_POST) {
        if (gnutls_session_is_resumed(tls)) {
            stat_inc(c->ep->st, QS(tls_resumed));
            if (gnutls_group_get(tls) == GNUTLS_GROUP_INVALID) /* no key share: psk_ke */
                stat_inc(c->ep->st, QS(tls_resumed_psk_ke));
        }
        return 0;
    }
    const uint8_t *id;
    size_t idlen;
    if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_PRE ||
        !tickets_ch_psk_identity(msg->data, msg->size, &id, &idlen))
        return 0;
    uint64_t now = (uint64_t)time(NULL);
    unsigned life = quic_ticket_lifetime(sh->cfg.ticket_period_s);
    int rc = 0;
    /* Pairs with rcu_xchg_pointer in shared.c tickets_publish. */
    rcu_read_lock();
    const struct tickets_keys *k = rcu_dereference(sh->tickets);
    if (!tickets_issued_under(id, idlen, k->cur, now, life) && k->has_prev &&
        tickets_issued_under(id, idlen, k->prev, now, life))
        rc = tls_enable_tickets(tls, k->prev);
    rcu_read_unlock();
    return rc < 0 ? GNUTLS_E_INTERNAL_ERROR : 0;
}

int quic_server_tls_init(struct quic_conn *c, struct quic_shared *sh)
{
    /* New sessions use the current credentials; the reference keeps them
     * alive for this session across a reload. Workers are QSBR readers;
     * pairs with rcu_xchg_pointer in quic_shared_reload_cert. */
    rcu_read_lock();
    struct quic_creds *cr = quic_creds_ref(rcu_dereference(sh->creds));
    rcu_read_unlock();
    int rc = quic_conn_tls_init(c, sh->prio, cr, QUIC_ALPN);
    if (rc == 0 && sh->cfg.alpn2 != NULL) {
        /* Both protocols (relay trunks); MANDATORY as in quic_conn_tls_init. */
        gnutls_datum_t a[2] = {
            {.data = (unsigned char *)QUIC_ALPN, .size = (unsigned)strlen(QUIC_ALPN)},
            {.data = (unsigned char *)sh->cfg.alpn2, .size = (unsigned)strlen(sh->cfg.alpn2)}};
        if (gnutls_alpn_set_protocols(c->tls, a, 2,
                                      GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE) != 0)
            rc = ROOST_ECRYPTO;
    }
    if (rc < 0 || sh->cfg.no_tickets)
        return rc;
    /* Tickets (the session starts with GNUTLS_NO_TICKETS; enabling clears
     * it): lifetime two periods; issued under the current master key. No
     * early data: GNUTLS_ENABLE_EARLY_DATA stays unset (0-RTT is off). */
    gnutls_db_set_cache_expiration(c->tls, (int)quic_ticket_lifetime(sh->cfg.ticket_period_s));
    rcu_read_lock(); /* pairs with rcu_xchg_pointer in shared.c tickets_publish */
    rc = tls_enable_tickets(c->tls, rcu_dereference(sh->tickets)->cur);
    rcu_read_unlock();
    if (rc < 0)
        return rc;
    gnutls_handshake_set_hook_function(c->tls, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_BOTH, tls_hook);
    return 0;
}
