#include "quic/cid.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/error.h"
#include "core/hash.h"

int cid_generate(uint8_t *cid, unsigned worker)
{
    cid[0] = (uint8_t)worker;
    if (gnutls_rnd(GNUTLS_RND_NONCE, cid + 1, QUIC_CID_LEN - 1) != 0)
        return ROOST_ECRYPTO;
    return 0;
}

int cid_worker(const uint8_t *cid, size_t len)
{
    if (len != QUIC_CID_LEN)
        return -1;
    return cid[0];
}

struct slot {
    void *value; /* NULL: empty */
    uint8_t len;
    uint8_t cid[20];
};

/* A direct-mapped cache of recent hits in front of the table: a packet's
 * CID is found without SipHash when it was found before. Indexed by the
 * CID's last bytes (random in a server CID) mixed with a per-table salt;
 * an entry is made only by a hit in the table and cleared when its CID is
 * removed, so every cached entry is in the table with that value, and a
 * CID that is not (anything an attacker makes up) only ever misses: it
 * costs the lookup it cost before, plus a compare. */
#define CID_CACHE 256

struct cid_table {
    struct slot *slots;
    size_t cap; /* power of two */
    size_t count;
    struct hash_key key;
    uint32_t salt;
    struct slot cache[CID_CACHE];
};

static size_t cache_idx(const struct cid_table *t, const uint8_t *cid, size_t len)
{
    uint32_t v = 0;
    size_t n = len < 4 ? len : 4;
    memcpy(&v, cid + len - n, n);
    v ^= t->salt;
    v ^= v >> 16;
    return (v ^ (v >> 8)) & (CID_CACHE - 1);
}

static bool slot_is(const struct slot *s, const uint8_t *cid, size_t len)
{
    return s->value != NULL && s->len == len && memcmp(s->cid, cid, len) == 0;
}

int cid_table_new(struct cid_table **out)
{
    struct cid_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ROOST_ENOMEM;
    t->cap = 64;
    t->slots = calloc(t->cap, sizeof(*t->slots));
    if (t->slots == NULL) {
        free(t);
        return ROOST_ENOMEM;
    }
    int rc = hash_key_random(&t->key);
    if (rc < 0) {
        free(t->slots);
        free(t);
        return rc;
    }
    t->salt = (uint32_t)hash_siphash24(&t->key, "cache", 5);
    *out = t;
    return 0;
}

void cid_table_del(struct cid_table *t)
{
    if (t == NULL)
        return;
    free(t->slots);
    free(t);
}

static size_t find(const struct cid_table *t, const uint8_t *cid, size_t len, bool *found)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)hash_siphash24(&t->key, cid, len) & mask;
    for (;;) {
        const struct slot *s = &t->slots[i];
        if (s->value == NULL) {
            *found = false;
            return i;
        }
        if (s->len == len && memcmp(s->cid, cid, len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int grow(struct cid_table *t)
{
    struct slot *old = t->slots;
    size_t ocap = t->cap;
    struct slot *ns = calloc(ocap * 2, sizeof(*ns));
    if (ns == NULL)
        return ROOST_ENOMEM;
    t->slots = ns;
    t->cap = ocap * 2;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].value == NULL)
            continue;
        bool found;
        size_t j = find(t, old[i].cid, old[i].len, &found);
        t->slots[j] = old[i];
    }
    free(old);
    return 0;
}

int cid_table_put(struct cid_table *t, const uint8_t *cid, size_t len, void *value)
{
    if (len == 0 || len > 20 || value == NULL)
        return ROOST_EINVAL;
    if ((t->count + 1) * 2 > t->cap) {
        int rc = grow(t);
        if (rc < 0)
            return rc;
    }
    bool found;
    size_t i = find(t, cid, len, &found);
    if (found)
        return ROOST_EEXIST;
    t->slots[i].value = value;
    t->slots[i].len = (uint8_t)len;
    memcpy(t->slots[i].cid, cid, len);
    t->count++;
    return 0;
}

void *cid_table_get(const struct cid_table *t, const uint8_t *cid, size_t len)
{
    if (len == 0 || len > 20)
        return NULL;
    struct slot *c = (struct slot *)&t->cache[cache_idx(t, cid, len)];
    if (slot_is(c, cid, len))
        return c->value;
    bool found;
    size_t i = find(t, cid, len, &found);
    if (!found)
        return NULL;
    *c = t->slots[i]; /* the cache is not the table's state: a const lookup may fill it */
    return c->value;
}

int cid_table_remove(struct cid_table *t, const uint8_t *cid, size_t len, const void *value)
{
    if (len == 0 || len > 20)
        return ROOST_ENOENT;
    bool found;
    size_t i = find(t, cid, len, &found);
    if (!found || (value != NULL && t->slots[i].value != value))
        return ROOST_ENOENT;
    struct slot *c = &t->cache[cache_idx(t, cid, len)];
    if (slot_is(c, cid, len))
        c->value = NULL;
    /* Backward-shift deletion keeps linear probing chains intact without
     * tombstones. */
    size_t mask = t->cap - 1;
    size_t j = i;
    for (;;) {
        t->slots[i].value = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (t->slots[j].value == NULL) {
                t->count--;
                return 0;
            }
            size_t k = (size_t)hash_siphash24(&t->key, t->slots[j].cid, t->slots[j].len) & mask;
            /* Move j back to i unless its home k lies cyclically in (i, j]. */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                continue;
            break;
        }
        t->slots[i] = t->slots[j];
        i = j;
    }
}

size_t cid_table_count(const struct cid_table *t)
{
    return t->count;
}
