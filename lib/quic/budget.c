#include "quic/budget.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void budget_lim_init(struct budget_lim *l, uint32_t pkt_rate, uint64_t byte_rate)
{
    l->pkt_ns = pkt_rate == 0 ? 0 : 1000000000ULL / pkt_rate;
    if (pkt_rate != 0 && l->pkt_ns == 0)
        l->pkt_ns = 1;
    l->byte_rate = byte_rate;
}

bool budget_take(struct budget *b, const struct budget_lim *l, uint64_t now, size_t len)
{
    uint64_t limit = now + BUDGET_BURST_NS;
    uint64_t tp = 0, tb = 0;
    if (l->pkt_ns != 0) {
        tp = (b->tat_pkt > now ? b->tat_pkt : now) + l->pkt_ns;
        if (tp > limit)
            return false;
    }
    if (l->byte_rate != 0) {
        /* len < 2^16 and 1e9 < 2^30: no overflow; at least 1 ns a byte's
         * worth is charged even above 1 GB/s. */
        uint64_t cost = ((uint64_t)len * 1000000000ULL + l->byte_rate - 1) / l->byte_rate;
        tb = (b->tat_byte > now ? b->tat_byte : now) + cost;
        if (tb > limit)
            return false;
    }
    if (l->pkt_ns != 0)
        b->tat_pkt = tp;
    if (l->byte_rate != 0)
        b->tat_byte = tb;
    return true;
}

int budget_addr_init(struct budget_addr_table *t, const struct budget_lim *lim)
{
    memset(t, 0, sizeof(*t));
    t->lim = *lim;
    if (!budget_lim_on(lim))
        return 0; /* no table: every address is unlimited */
    int rc = hash_key_random(&t->key);
    if (rc != 0)
        return rc;
    t->salt = (uint32_t)hash_siphash24(&t->key, "recent", 6);
    t->e = calloc((size_t)BUDGET_ADDR_SETS * BUDGET_ADDR_WAYS, sizeof(*t->e));
    return t->e == NULL ? ROOST_ENOMEM : 0;
}

void budget_addr_fini(struct budget_addr_table *t)
{
    free(t->e);
    t->e = NULL;
}

/* What an entry still owes at now: how far its budget is from full. */
static uint64_t owed(const struct budget *b, uint64_t now)
{
    uint64_t p = b->tat_pkt > now ? b->tat_pkt - now : 0;
    uint64_t y = b->tat_byte > now ? b->tat_byte - now : 0;
    return p > y ? p : y;
}

bool budget_addr_take(struct budget_addr_table *t, const uint8_t addr[16], uint64_t now, size_t len)
{
    if (t->e == NULL)
        return true;
    uint32_t v;
    memcpy(&v, addr + 12, 4); /* IPv4, or an IPv6 address's interface id's end */
    v ^= t->salt;
    v ^= v >> 16;
    struct budget_addr_ent **r = &t->recent[(v ^ (v >> 8)) & (BUDGET_ADDR_RECENT - 1)];
    if (*r != NULL && (*r)->used && memcmp((*r)->addr, addr, 16) == 0)
        return budget_take(&(*r)->b, &t->lim, now, len);
    uint64_t h = hash_siphash24(&t->key, addr, 16);
    struct budget_addr_ent *set = &t->e[(h % BUDGET_ADDR_SETS) * BUDGET_ADDR_WAYS];
    struct budget_addr_ent *victim = NULL;
    uint64_t victim_owed = UINT64_MAX;
    for (unsigned i = 0; i < BUDGET_ADDR_WAYS; i++) {
        struct budget_addr_ent *e = &set[i];
        if (e->used && memcmp(e->addr, addr, 16) == 0) {
            *r = e;
            return budget_take(&e->b, &t->lim, now, len);
        }
        uint64_t o = e->used ? owed(&e->b, now) : 0;
        if (!e->used || o < victim_owed) {
            victim = e;
            victim_owed = o;
            if (!e->used)
                break;
        }
    }
    if (victim->used)
        t->evictions++;
    memcpy(victim->addr, addr, 16);
    victim->used = true;
    memset(&victim->b, 0, sizeof(victim->b));
    *r = victim;
    return budget_take(&victim->b, &t->lim, now, len);
}
