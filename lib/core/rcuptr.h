/* RCU glue: a published pointer slot with deferred reclamation, on liburcu's
 * QSBR flavour (DESIGN.md §1: rooms and participant snapshots).
 *
 * Pattern. One writer thread owns a slot. It builds a new immutable object,
 * publishes it with rcuptr_publish() (rcu_assign_pointer: every store that
 * built the object is visible before the pointer is), and the previous
 * object is handed to call_rcu, which frees it once every reader that could
 * still see it has passed a quiescent state. Readers on any registered
 * thread load the pointer with rcuptr_deref() between rcuptr_read_lock() and
 * rcuptr_read_unlock() and may use the object until they unlock; they never
 * write it. Objects embed a `struct rcu_head` (from liburcu) at an offset the
 * slot is told once, and the slot's free callback receives that head.
 *
 * QSBR, and what it demands. Read-side sections cost nothing: lock and
 * unlock compile to nothing and rcuptr_deref() is a plain load. The price is
 * that liburcu cannot see when a reader is done; a grace period ends only
 * when every registered thread has either announced a quiescent state
 * (rcuptr_quiescent(), which a worker calls once per loop turn, outside any
 * read-side section) or is offline (rcuptr_thread_offline(), which a worker
 * calls before blocking in epoll_wait). A registered thread that does
 * neither - it blocks on a lock, sleeps, or spins without announcing - stalls
 * every grace period in the process: rcuptr_synchronize() never returns and
 * call_rcu callbacks never run, so retired objects pile up. A pointer read in
 * one section must not be used after the thread's next quiescent state or
 * offline period.
 *
 * Deferred frees run on the call_rcu worker thread that liburcu creates on
 * first use (it registers itself). Free callbacks therefore run on that
 * thread, must not block for long, and must not call rcuptr_barrier().
 * At shutdown, after the last publish/retire, call rcuptr_barrier() so every
 * pending free has run before exit (otherwise retired objects are still
 * allocated when LeakSanitizer looks). The default call_rcu thread lives for
 * the process; liburcu 0.13.3+ stops it from a library destructor once its
 * queue is empty, which rcuptr_barrier() guarantees. Every thread that
 * registered must unregister before it exits (liburcu keeps its per-thread
 * reader state in a global list).
 *
 * Synchronisation table ("R" = any registered thread, online):
 *
 *   call                      | thread                     | may race with
 *   --------------------------+----------------------------+--------------------------------
 *   rcuptr_thread_register    | the thread itself          | everything
 *   rcuptr_thread_unregister  | the thread itself, outside | everything
 *                             | a read-side section        |
 *   rcuptr_quiescent          | R, outside a section       | everything
 *   rcuptr_thread_offline/    | R, outside a section       | everything
 *     _online                 |                            |
 *   rcuptr_read_lock/unlock,  | R (online)                 | everything, including publish on
 *     rcuptr_deref            |                            | the same slot
 *   rcuptr_init               | the slot's writer, before  | nothing on that slot
 *                             | the slot is shared         |
 *   rcuptr_publish,           | the slot's single writer,  | readers of the slot; NOT another
 *     rcuptr_writer_get,      | R, outside a section       | publish/fini on the same slot
 *     rcuptr_fini             |                            | (one writer per slot)
 *   rcuptr_retire             | R (call_rcu requires it)   | everything
 *   rcuptr_synchronize        | any thread, outside a      | everything; an online caller is
 *                             | section                    | put offline for the wait
 *   rcuptr_barrier            | any thread, outside a      | everything, but not from a free
 *                             | section, not a callback    | callback
 *   free callbacks            | the call_rcu thread        | readers of other versions
 */
#ifndef ROOST_CORE_RCUPTR_H
#define ROOST_CORE_RCUPTR_H

#include <stdbool.h>
#include <stddef.h>

#include <urcu-qsbr.h>

/* Frees one retired object; receives the rcu_head embedded in it (recover
 * the object with caa_container_of). Runs on the call_rcu thread. */
typedef void (*rcuptr_free_cb)(struct rcu_head *head);

/* A published pointer slot. Exposed so it can be embedded (a room holds its
 * participant snapshot slot) and so reads inline; fields are private. */
struct rcuptr {
    void *ptr;              /* the published object or NULL; readers: rcuptr_deref */
    size_t head_off;        /* offset of struct rcu_head in the objects it holds */
    rcuptr_free_cb free_cb; /* immutable after rcuptr_init */
};

/* ------------------------------------------------------------ threads */

/* Registers the calling thread as an RCU reader; it starts online. Must be
 * called before any other rcuptr_* call on that thread except
 * rcuptr_synchronize/rcuptr_barrier. Calling it twice on one thread is a
 * no-op. The worker runtime calls it first thing on each worker. A thread
 * registered with liburcu's rcu_register_thread directly may use every
 * other rcuptr_* call, but must not also call this (liburcu forbids a
 * second registration, and only this function sets the flag below). */
void rcuptr_thread_register(void);

/* Unregisters the calling thread (outside a read-side section). Required
 * before the thread exits. No-op when not registered. */
void rcuptr_thread_unregister(void);

/* True when the calling thread registered through rcuptr_thread_register. */
bool rcuptr_thread_registered(void);

/* Announces a quiescent state: the calling thread holds no pointer read in
 * an earlier section. Registered thread, online, outside a section. */
void rcuptr_quiescent(void);

/* Goes offline (e.g. before blocking in epoll_wait); grace periods no
 * longer wait for this thread. No reads until rcuptr_thread_online().
 * Registered thread, online, outside a section. */
void rcuptr_thread_offline(void);

/* Comes back online after rcuptr_thread_offline(). Registered thread.
 * (Debug builds assert "registered and online" in the calls above and in
 * rcuptr_publish/_retire; misuse otherwise shows up as a stalled grace
 * period or a use-after-free.) */
void rcuptr_thread_online(void);

/* ---------------------------------------------------------- read side */

/* Read-side section around rcuptr_deref(). Free under QSBR; kept so the
 * code says where a borrowed pointer stops being valid, and so liburcu's
 * debug builds can check nesting. Registered online thread. */
static inline void rcuptr_read_lock(void)
{
    rcu_read_lock();
}

static inline void rcuptr_read_unlock(void)
{
    rcu_read_unlock();
}

/* The object currently published in `slot`, or NULL. Borrowed: valid until
 * the caller's rcuptr_read_unlock() (under QSBR, strictly until its next
 * quiescent state or offline period). Registered online thread, inside a
 * read-side section. */
static inline void *rcuptr_deref(const struct rcuptr *slot)
{
    /* Pairs with rcu_assign_pointer's release in rcuptr_publish: the
     * object's contents are visible once its pointer is. */
    return rcu_dereference(slot->ptr);
}

/* The read-side rule, checked. Every accessor that reads RCU-protected
 * memory (snapshot and keyframe-cache readers, room handle resolution)
 * starts with RCUPTR_ASSERT_READER(). Under QSBR rcu_read_lock() records
 * nothing, so rcu_read_ongoing() is true exactly when the calling thread is
 * registered and online: the check catches a read on an unregistered
 * thread or during an offline period (around a blocking wait), where the
 * object may be freed under the reader - not a forgotten rcu_read_lock on
 * an online worker, which QSBR makes harmless until the next quiescent
 * state. In the sanitizer and debug builds (ROOST_SANITIZE, set by make
 * check-asan, or ROOST_DEBUG) a violation logs the function and aborts; in
 * the optimised build the macro compiles to nothing (no cost on the
 * fan-out path). */
#if defined(ROOST_SANITIZE) || defined(ROOST_DEBUG)
#define RCUPTR_ASSERT_READER()                                                                     \
    do {                                                                                           \
        if (!rcu_read_ongoing())                                                                   \
            rcuptr_reader_violation(__func__);                                                     \
    } while (0)
#else
#define RCUPTR_ASSERT_READER() ((void)0)
#endif

/* Reports a read outside a read-side section (RCUPTR_ASSERT_READER) and
 * aborts. */
void rcuptr_reader_violation(const char *func) __attribute__((noreturn, cold));

/* ------------------------------------------------------------- writer */

/* Initialises an empty slot whose objects embed their struct rcu_head at
 * `head_off` and are freed by `free_cb`. Not thread-safe: before the slot
 * is shared. Use RCUPTR_INIT to compute the offset. */
void rcuptr_init(struct rcuptr *slot, size_t head_off, rcuptr_free_cb free_cb);

#define RCUPTR_INIT(slot, type, member, free_cb)                                                   \
    rcuptr_init((slot), offsetof(type, member), (free_cb))

/* Publishes `obj` (may be NULL to unpublish) and retires the previous
 * object, whose free callback runs after a grace period. Takes ownership of
 * `obj`; it must be fully built and never written again. Never fails.
 * The slot's single writer thread, registered and online (call_rcu). */
void rcuptr_publish(struct rcuptr *slot, void *obj);

/* The current object, for the slot's writer (which needs no read-side
 * section: only it replaces the pointer). Borrowed until its next publish. */
static inline void *rcuptr_writer_get(const struct rcuptr *slot)
{
    /* The writer made the last store itself: a plain load suffices. */
    return CMM_LOAD_SHARED(slot->ptr);
}

/* Unpublishes and retires the current object (rcuptr_publish(slot, NULL)).
 * The slot may be reused. The slot's writer, registered and online. */
void rcuptr_fini(struct rcuptr *slot);

/* Retires an object unpublished by other means (e.g. removed from a
 * cds_lfht): `free_cb(head)` runs after a grace period. Ownership passes to
 * the callback. Registered online thread. */
void rcuptr_retire(struct rcu_head *head, rcuptr_free_cb free_cb);

/* Waits for a grace period: every reader that was inside a section when
 * this was called has left it. Blocks; an online registered caller is put
 * offline for the wait. Any thread, outside a read-side section. */
void rcuptr_synchronize(void);

/* Waits until every callback queued by rcuptr_publish/_fini/_retire before
 * this call has run. Call at shutdown once nothing publishes any more, so
 * every retired object is freed before exit. Blocks; any thread outside a
 * read-side section, never from a free callback. */
void rcuptr_barrier(void);

#endif
