/* Participant snapshot of a room: an immutable member list, grouped by the
 * worker that delivers to each member (DESIGN.md §1-§2).
 *
 * The room's owner worker builds a new snapshot for every batch of joins and
 * leaves (snapshot_build folds the whole batch into one pass), publishes it
 * with rcu_assign_pointer and retires the previous one with call_rcu. Any
 * worker reads the published snapshot lock-free on the fan-out path: its
 * own slice (snapshot_worker_members) to queue the frame for local members,
 * and the list of groups (snapshot_group) to send one FANOUT message to each
 * other worker that has members.
 *
 * A member names a delivery endpoint, not a QUIC connection: (worker, slot,
 * gen) is a handle that the member's worker checks against its own
 * connection (or other endpoint) table; a stale generation means the
 * endpoint went away after this snapshot was built, and is skipped.
 *
 * Layout: one allocation holding the header, the groups (one per worker
 * that has members, ascending worker), the members (sorted by worker, then
 * participant id; each group is one contiguous slice) and an index of the
 * members sorted by participant id (for snapshot_find).
 *
 * Thread safety: a snapshot is never written after snapshot_build returns
 * it, so every read-only function may be called by any number of threads at
 * once, inside the RCU read-side section in which they obtained the pointer.
 * snapshot_build: any thread (in practice the room's owner worker); it only
 * reads `prev`. snapshot_free: the owner, once no reader can hold the
 * pointer (never published, or from the call_rcu callback
 * snapshot_free_rcu). */
#ifndef ROOST_ROOM_SNAPSHOT_H
#define ROOST_ROOM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/perm.h"

struct rcu_head; /* liburcu, <urcu-qsbr.h> */
struct snapshot;

/* Largest n_workers accepted: a worker id is a uint16_t in a member. */
#define SNAPSHOT_MAX_WORKERS 65536u

struct snapshot_member {
    uint32_t participant_id; /* unique within the room */
    uint16_t worker;         /* the worker that delivers to this member */
    uint16_t flags;          /* PERM_* (proto/perm.h) */
    uint32_t slot;           /* endpoint handle on `worker`: table slot */
    uint32_t gen;            /* ... and its generation (stale: skip) */
};

enum snapshot_op {
    SNAPSHOT_ADD = 1,    /* insert, or replace the member with the same id */
    SNAPSHOT_REMOVE = 2, /* remove by member.participant_id; absent: no-op */
};

struct snapshot_change {
    enum snapshot_op op;
    struct snapshot_member member; /* REMOVE reads only participant_id */
};

/* Builds the snapshot that follows `prev` (NULL: the empty room) after the
 * `n` changes, applied in order: for one participant id only its last
 * change in the batch counts. Every member must have worker < n_workers.
 * `max_members` bounds the result (participants per room).
 *
 * Returns 0 and stores a new snapshot (version prev+1, or 1) in *out, which
 * the caller owns; `prev` is left untouched and still owned by the caller.
 * Errors (nothing is built, *out untouched):
 *   ROOST_EINVAL  out NULL, changes NULL with n > 0, n_workers 0 or above
 *                 SNAPSHOT_MAX_WORKERS, an unknown op, or a resulting member
 *                 (added, or kept from prev) whose worker >= n_workers;
 *   ROOST_EFULL   the result would hold more than max_members members (the
 *                 batch is all or nothing: reject the joins and rebuild);
 *   ROOST_ENOMEM  allocation failed.
 * Any thread; reads `prev` only (the owner's current snapshot). Allocates:
 * the control path, never the per-packet path. */
int snapshot_build(const struct snapshot *prev, const struct snapshot_change *changes, size_t n,
                   unsigned n_workers, uint32_t max_members, struct snapshot **out);

/* Frees a snapshot no reader can still hold. Accepts NULL. Owner thread. */
void snapshot_free(struct snapshot *s);

/* For call_rcu: the rcu_head embedded in `s`, and the callback that frees
 * the snapshot holding a given head. The head is the first member, so
 * SNAPSHOT_RCU_HEAD_OFFSET is what rcuptr_init wants as head_off. Usage by
 * the owner, after unpublishing: call_rcu(snapshot_rcu_head(old),
 * snapshot_free_rcu). snapshot_free_rcu runs on the call_rcu thread. */
#define SNAPSHOT_RCU_HEAD_OFFSET 0
struct rcu_head *snapshot_rcu_head(struct snapshot *s);
void snapshot_free_rcu(struct rcu_head *head);

/* Read side. Each accepts NULL as the empty room (nothing published) and
 * returns pointers borrowed from `s`: valid as long as `s` is. The member
 * readers (find, worker_members, group, members) check the read-side rule
 * in sanitizer/debug builds (RCUPTR_ASSERT_READER, core/rcuptr.h): the
 * caller is a registered, online RCU thread. */

/* Number of members. */
uint32_t snapshot_count(const struct snapshot *s);
/* 1 for the first snapshot of a room, +1 for each build; 0 for NULL. */
uint64_t snapshot_version(const struct snapshot *s);
/* The n_workers the snapshot was built for; 0 for NULL. */
unsigned snapshot_n_workers(const struct snapshot *s);

/* The member with this participant id, or NULL. O(log n). */
const struct snapshot_member *snapshot_find(const struct snapshot *s, uint32_t participant_id);

/* The members delivered by `worker`, sorted by participant id; stores
 * their number in *n (0 and NULL when that worker has none). O(log groups).
 * This is the fan-out path. */
const struct snapshot_member *snapshot_worker_members(const struct snapshot *s, unsigned worker,
                                                      uint32_t *n);

/* Number of workers that have at least one member. */
unsigned snapshot_group_count(const struct snapshot *s);
/* Group i (0 <= i < snapshot_group_count, ascending worker): stores the
 * worker id in *worker and the slice length in *n, returns the slice.
 * NULL (and *n = 0) when i is out of range. */
const struct snapshot_member *snapshot_group(const struct snapshot *s, unsigned i, unsigned *worker,
                                             uint32_t *n);

/* Every member, grouped by ascending worker; *n = snapshot_count. */
const struct snapshot_member *snapshot_members(const struct snapshot *s, uint32_t *n);

#endif
