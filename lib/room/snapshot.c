/* Participant snapshots: see snapshot.h for the contract.
 *
 * snapshot_build works in one pass over the batch:
 *   1. order the changes by (participant id, position) and keep the last
 *      change of each id: a batch may join, leave and rejoin one id;
 *   2. merge that id-ordered list with `prev` walked in id order (through
 *      its by-id index), producing the new membership in id order and the
 *      member count of every worker;
 *   3. allocate the one block, turn the per-worker counts into slice
 *      offsets (counting sort) and place each member into its worker's
 *      slice; walking in id order leaves each slice sorted by id and
 *      yields the by-id index for free.
 * O(n log n + members + n_workers) time, one scratch allocation. */
#include "room/snapshot.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>

#include "core/rcuptr.h"

#include "core/error.h"

struct snapshot_group {
    uint32_t worker;
    uint32_t offset; /* first member of the slice */
    uint32_t count;
};

struct snapshot {
    struct rcu_head rcu; /* first: SNAPSHOT_RCU_HEAD_OFFSET */
    uint64_t version;
    uint32_t count;
    uint32_t n_groups;
    uint32_t n_workers;
    /* All three point into this same allocation, after the header. */
    const struct snapshot_group *groups;
    const struct snapshot_member *members;
    const uint32_t *by_id; /* member positions in ascending participant id */
};

_Static_assert(offsetof(struct snapshot, rcu) == SNAPSHOT_RCU_HEAD_OFFSET,
               "rcu_head must sit where snapshot.h says");
_Static_assert(sizeof(struct snapshot_member) == 16, "member entry is 16 bytes");

static int cmp_change(const void *a, const void *b, void *arg)
{
    const struct snapshot_change *ch = arg;
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    uint32_t pa = ch[ia].member.participant_id, pb = ch[ib].member.participant_id;
    if (pa != pb)
        return pa < pb ? -1 : 1;
    /* Indices are unique, so the order is total and the sort stable. */
    return ia < ib ? -1 : ia > ib;
}

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

int snapshot_build(const struct snapshot *prev, const struct snapshot_change *changes, size_t n,
                   unsigned n_workers, uint32_t max_members, struct snapshot **out)
{
    void *scratch = NULL;
    int ret = 0;

    if (out == NULL || (changes == NULL && n > 0) || n_workers == 0 ||
        n_workers > SNAPSHOT_MAX_WORKERS)
        return ROOST_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (changes[i].op != SNAPSHOT_ADD && changes[i].op != SNAPSHOT_REMOVE)
            return ROOST_EINVAL;
    }

    const size_t pc = prev ? prev->count : 0;
    /* Scratch: change order, merged membership (pointers to entries in
     * prev or changes), per-worker counts that become placement cursors. */
    if (n > SIZE_MAX / 64 || pc > SIZE_MAX / 64)
        return ROOST_ENOMEM;
    const size_t order_sz = n * sizeof(size_t);
    const size_t seq_sz = (pc + n) * sizeof(const struct snapshot_member *);
    const size_t cnt_sz = (size_t)n_workers * sizeof(uint32_t);
    scratch = malloc(order_sz + seq_sz + cnt_sz);
    if (scratch == NULL)
        return ROOST_ENOMEM;
    size_t *order = scratch;
    const struct snapshot_member **seq =
        (const struct snapshot_member **)((char *)scratch + order_sz);
    uint32_t *cursor = (uint32_t *)((char *)scratch + order_sz + seq_sz);
    memset(cursor, 0, cnt_sz);

    /* 1. Last change per id, in id order: compact `order` in place. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (n > 1)
        qsort_r(order, n, sizeof(*order), cmp_change, (void *)changes);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool last_of_id = i + 1 == n || changes[order[i + 1]].member.participant_id !=
                                            changes[order[i]].member.participant_id;
        if (last_of_id)
            order[m++] = order[i];
    }

    /* 2. Merge with prev, both in id order. */
    size_t total = 0, i = 0, j = 0;
    while (i < pc || j < m) {
        const struct snapshot_member *pm = i < pc ? &prev->members[prev->by_id[i]] : NULL;
        const struct snapshot_change *ch = j < m ? &changes[order[j]] : NULL;
        const struct snapshot_member *keep;
        if (ch == NULL || (pm != NULL && pm->participant_id < ch->member.participant_id)) {
            keep = pm; /* untouched by the batch */
            i++;
        } else {
            if (pm != NULL && pm->participant_id == ch->member.participant_id)
                i++; /* replaced or removed */
            keep = ch->op == SNAPSHOT_ADD ? &ch->member : NULL;
            j++;
        }
        if (keep == NULL)
            continue;
        if (keep->worker >= n_workers) {
            ret = ROOST_EINVAL;
            goto out;
        }
        cursor[keep->worker]++;
        seq[total++] = keep;
    }
    if (total > max_members) {
        ret = ROOST_EFULL;
        goto out;
    }

    /* 3. One block: header, groups, members, by-id index. */
    uint32_t n_groups = 0;
    for (unsigned w = 0; w < n_workers; w++)
        n_groups += cursor[w] != 0;
    const size_t groups_off = align_up(sizeof(struct snapshot), _Alignof(struct snapshot_group));
    const size_t members_off = align_up(groups_off + n_groups * sizeof(struct snapshot_group),
                                        _Alignof(struct snapshot_member));
    const size_t by_id_off =
        align_up(members_off + total * sizeof(struct snapshot_member), _Alignof(uint32_t));
    const size_t block_sz = by_id_off + total * sizeof(uint32_t);
    char *block = malloc(block_sz);
    if (block == NULL) {
        ret = ROOST_ENOMEM;
        goto out;
    }
    struct snapshot *s = (struct snapshot *)block;
    struct snapshot_group *groups = (struct snapshot_group *)(block + groups_off);
    struct snapshot_member *members = (struct snapshot_member *)(block + members_off);
    uint32_t *by_id = (uint32_t *)(block + by_id_off);
    memset(&s->rcu, 0, sizeof(s->rcu));
    s->version = prev ? prev->version + 1 : 1;
    s->count = (uint32_t)total;
    s->n_groups = n_groups;
    s->n_workers = n_workers;
    s->groups = groups;
    s->members = members;
    s->by_id = by_id;

    /* Counts -> slice offsets; the cursors then advance while placing. */
    uint32_t off = 0, g = 0;
    for (unsigned w = 0; w < n_workers; w++) {
        uint32_t c = cursor[w];
        if (c == 0)
            continue;
        groups[g++] = (struct snapshot_group){.worker = w, .offset = off, .count = c};
        cursor[w] = off;
        off += c;
    }
    for (size_t k = 0; k < total; k++) {
        uint32_t pos = cursor[seq[k]->worker]++;
        members[pos] = *seq[k];
        by_id[k] = pos;
    }
    *out = s;

out:
    free(scratch);
    return ret;
}

void snapshot_free(struct snapshot *s)
{
    free(s);
}

struct rcu_head *snapshot_rcu_head(struct snapshot *s)
{
    return &s->rcu;
}

void snapshot_free_rcu(struct rcu_head *head)
{
    snapshot_free(caa_container_of(head, struct snapshot, rcu));
}

uint32_t snapshot_count(const struct snapshot *s)
{
    return s ? s->count : 0;
}

uint64_t snapshot_version(const struct snapshot *s)
{
    return s ? s->version : 0;
}

unsigned snapshot_n_workers(const struct snapshot *s)
{
    return s ? s->n_workers : 0;
}

const struct snapshot_member *snapshot_find(const struct snapshot *s, uint32_t participant_id)
{
    RCUPTR_ASSERT_READER();
    if (s == NULL)
        return NULL;
    uint32_t lo = 0, hi = s->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct snapshot_member *m = &s->members[s->by_id[mid]];
        if (m->participant_id == participant_id)
            return m;
        if (m->participant_id < participant_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct snapshot_member *snapshot_worker_members(const struct snapshot *s, unsigned worker,
                                                      uint32_t *n)
{
    RCUPTR_ASSERT_READER();
    *n = 0;
    if (s == NULL)
        return NULL;
    uint32_t lo = 0, hi = s->n_groups;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct snapshot_group *g = &s->groups[mid];
        if (g->worker == worker) {
            *n = g->count;
            return &s->members[g->offset];
        }
        if (g->worker < worker)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

unsigned snapshot_group_count(const struct snapshot *s)
{
    return s ? s->n_groups : 0;
}

const struct snapshot_member *snapshot_group(const struct snapshot *s, unsigned i, unsigned *worker,
                                             uint32_t *n)
{
    RCUPTR_ASSERT_READER();
    *n = 0;
    if (s == NULL || i >= s->n_groups)
        return NULL;
    const struct snapshot_group *g = &s->groups[i];
    *worker = g->worker;
    *n = g->count;
    return &s->members[g->offset];
}

const struct snapshot_member *snapshot_members(const struct snapshot *s, uint32_t *n)
{
    RCUPTR_ASSERT_READER();
    *n = snapshot_count(s);
    return s ? s->members : NULL;
}
