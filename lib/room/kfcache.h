/* Keyframe cache and audio prefill of one sender (DESIGN.md §4).
 *
 * Who writes what:
 *   - the SENDER's worker owns a `struct kfcache` (one per publishing member).
 *     It sees every datagram of that sender first (room_publish builds the
 *     counted buffer there) and feeds it here: keyframe packets are buffered
 *     per stream until the end-of-frame flag, then promoted as the stream's
 *     latest complete keyframe; audio packets of the last `prefill_ms` are
 *     kept per stream. Only that worker calls kfcache_* on it.
 *   - after a stream changes the owner builds an immutable sub-view of that
 *     stream only (counted references to its packets) and a new
 *     `struct kfcache_view` that shares the other streams' sub-views (one
 *     pointer each; read in order: keyframes of every stream, then the
 *     audio prefill), and publishes it with rcu_assign_pointer into a slot
 *     the caller provides; the previous view is retired with call_rcu,
 *     which frees the one sub-view it replaced.
 *   - what a sender holds is capped per stream (payload bytes) and per
 *     sender over all streams (real memory and packets), so that one
 *     publishing connection cannot exhaust its worker.
 *   - any worker (the joiner's) reads the slot with rcu_dereference inside a
 *     read-side section and delivers the view's packets; buffers it wants to
 *     keep past the section are buf_ref'd (buffers are counted; views are
 *     RCU-protected and must not be kept).
 *
 * Per-packet cost on the sender's worker: a flags test, and for keyframe or
 * prefill packets a buf_ref into a per-stream array; a view is rebuilt (one
 * allocation for the stream's sub-view, one for the view, call_rcu) when a
 * keyframe completes, and for each audio packet only while prefill is on.
 *
 * State per stream (keyframe): IDLE -> BUILDING (keyframe packet) ->
 * promoted on END | discarded by a non-keyframe packet | OVER (cap exceeded:
 * buffered packets released, the stream's older keyframe is dropped too as
 * it is stale, counted once) -> IDLE at END.  A keyframe packet flagged
 * START while BUILDING restarts the buffer (the previous frame never ended).
 */
#ifndef ROOST_ROOM_KFCACHE_H
#define ROOST_ROOM_KFCACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct kfcache;
struct kfcache_view;

#define KFCACHE_DEFAULT_CAP (200u * 1024u)
/* Per sender, over all its streams (keyframes being built, cached
 * keyframes, prefill): real memory (kfcache_stats.mem: buffer header and
 * capacity, allocator header, array and view slots) and packets. 1 MiB
 * holds two 200 KiB keyframes being replaced on each of two streams; 1024
 * packets bound the per-packet overhead of tiny packets and what a joiner
 * replays of one sender. */
#define KFCACHE_DEFAULT_SENDER_BYTES (1024u * 1024u)
#define KFCACHE_DEFAULT_SENDER_PKTS 1024u

struct kfcache_config {
    uint32_t cap_bytes;  /* payload per stream (keyframe, and prefill); 0: KFCACHE_DEFAULT_CAP */
    uint32_t prefill_ms; /* audio prefill window; 0: off */
    uint32_t sender_cap_bytes; /* real memory, all streams; 0: KFCACHE_DEFAULT_SENDER_BYTES */
    uint32_t sender_cap_pkts;  /* packets, all streams; 0: KFCACHE_DEFAULT_SENDER_PKTS */
};

/* Who the published view belongs to, checked by readers against the
 * snapshot entry and room they found it through. */
struct kfcache_tag {
    uint32_t pid, gen;
    uint32_t owner, room_slot, room_gen;
};

#define KFCACHE_EV_PROMOTED 0x1  /* a keyframe was cached */
#define KFCACHE_EV_DISCARDED 0x2 /* a partial keyframe was flushed */
#define KFCACHE_EV_OVER_CAP 0x4  /* a keyframe exceeded the cap */

struct kfcache_stats {
    uint64_t promoted;   /* keyframes cached */
    uint64_t discarded;  /* partial keyframes flushed by a non-keyframe packet */
    uint64_t over_cap;   /* keyframes larger than the cap, not cached */
    uint64_t prefill_in; /* audio packets kept for prefill */
    uint64_t published;  /* views published */
    uint64_t mem;        /* real memory held now (see KFCACHE_DEFAULT_SENDER_BYTES) */
    uint64_t pkts;       /* packets held now */
};

/* A cache publishing its views into *slot (borrowed until kfcache_del;
 * the slot must start NULL or hold a view this cache published).
 * Returns 0, ROOST_EINVAL or ROOST_ENOMEM. Owner worker; the thread must
 * be an RCU reader (call_rcu). */
int kfcache_new(struct kfcache **out, const struct kfcache_config *cfg,
                struct kfcache_view *_Atomic *slot);
/* Clears (unpublishes) and frees. Accepts NULL. Owner worker. */
void kfcache_del(struct kfcache *c);
/* Drops every cached and buffered packet and unpublishes the view (the
 * sender left its room). The tag is kept. Owner worker. */
void kfcache_clear(struct kfcache *c);
/* Sets the tag of the views published from now on (call after clear, when
 * the sender joins a room). Owner worker. */
void kfcache_set_tag(struct kfcache *c, const struct kfcache_tag *tag);
/* The sender's connection moves to another worker (lib/room/move.c):
 * unpublishes the view from the slot (readers keep it a grace period) and
 * forgets the slot; what is cached stays. Only kfcache_attach or
 * kfcache_del may follow. Old owner worker. */
void kfcache_detach(struct kfcache *c);
/* On the new worker: the cache publishes into *slot (as kfcache_new's)
 * with `tag`, at once, everything it holds. The new worker owns it from
 * now on (the hand-off through the ring orders the two). Returns 0 or
 * ROOST_ENOMEM (nothing is published then; the cache still works). */
int kfcache_attach(struct kfcache *c, struct kfcache_view *_Atomic *slot,
                   const struct kfcache_tag *tag);
/* Feeds one relay->client media datagram: b->data[0, b->len) holds the
 * 16-byte relay header (sender id, then the client header) and the payload;
 * its header must have been checked (media_relay_datagram). now: the
 * worker's clock in ns (prefill window). Takes its own references.
 * Returns a mask of KFCACHE_EV_* (0: nothing to report), ROOST_EMALFORMED (shorter than the header:
 * ignored) or ROOST_ENOMEM (the packet is not cached; the stream's state is reset). Owner worker.
 */
int kfcache_feed(struct kfcache *c, struct buf *b, uint64_t now);
void kfcache_stats(const struct kfcache *c, struct kfcache_stats *out);

/* Reader side: inside an RCU read-side section, on a view obtained with
 * rcu_dereference(*slot). Borrowed pointers, valid until the section ends.
 * Checked in sanitizer/debug builds (RCUPTR_ASSERT_READER, core/rcuptr.h). */
const struct kfcache_tag *kfcache_view_tag(const struct kfcache_view *v);
/* Number of packets: keyframes (stream order, packet order) then prefill. */
uint32_t kfcache_view_count(const struct kfcache_view *v);
/* Packet i (< count): a whole relay datagram b->data[0, b->len).
 * O(streams) per call: for tests; delivery uses kfcache_view_walk. */
struct buf *kfcache_view_packet(const struct kfcache_view *v, uint32_t i);
/* Calls fn on the first (at most) max packets in count order (keyframes of
 * every stream, then prefill); fn's result is ignored. Returns how many it
 * visited. v may be NULL. */
uint32_t kfcache_view_walk(const struct kfcache_view *v, uint32_t max,
                           int (*fn)(struct buf *b, void *arg), void *arg);

#endif
