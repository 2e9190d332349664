#include "core/rcuptr.h"

#include <assert.h>
#include <stdlib.h>

#include "core/log.h"

/* Our own record of registration: liburcu dies on a double registration and
 * does not say whether a thread is registered. Thread-local, so no
 * synchronisation. */
static __thread bool rcuptr_registered;

void rcuptr_thread_register(void)
{
    if (rcuptr_registered)
        return;
    rcu_register_thread();
    rcuptr_registered = true;
}

void rcuptr_thread_unregister(void)
{
    if (!rcuptr_registered)
        return;
    /* liburcu puts the thread offline first, so an offline thread may
     * unregister too. */
    rcu_unregister_thread();
    rcuptr_registered = false;
}

bool rcuptr_thread_registered(void)
{
    return rcuptr_registered;
}

/* The assertions below test "registered and online" through liburcu's own
 * state (under QSBR, read_ongoing is the thread's online flag), so they also
 * hold for threads that registered with rcu_register_thread directly. */

void rcuptr_quiescent(void)
{
    assert(rcu_read_ongoing());
    rcu_quiescent_state();
}

void rcuptr_thread_offline(void)
{
    assert(rcu_read_ongoing());
    rcu_thread_offline();
}

void rcuptr_thread_online(void)
{
    rcu_thread_online();
}

void rcuptr_init(struct rcuptr *slot, size_t head_off, rcuptr_free_cb free_cb)
{
    slot->head_off = head_off;
    slot->free_cb = free_cb;
    /* Plain store: the slot is not shared yet; whatever shares it (thread
     * creation, a ring message) orders this before any reader. */
    CMM_STORE_SHARED(slot->ptr, NULL);
}

void rcuptr_publish(struct rcuptr *slot, void *obj)
{
    /* call_rcu requires a registered, online thread (QSBR reads its
     * per-thread state); catching this here beats a silent stall. */
    assert(rcu_read_ongoing());
    void *old = CMM_LOAD_SHARED(slot->ptr); /* single writer: no race on the old value */
    /* Release: the object's construction happens before its pointer is
     * visible; pairs with rcu_dereference in rcuptr_deref. */
    rcu_assign_pointer(slot->ptr, obj);
    if (old != NULL)
        call_rcu((struct rcu_head *)((char *)old + slot->head_off), slot->free_cb);
}

void rcuptr_fini(struct rcuptr *slot)
{
    rcuptr_publish(slot, NULL);
}

void rcuptr_retire(struct rcu_head *head, rcuptr_free_cb free_cb)
{
    assert(rcu_read_ongoing());
    call_rcu(head, free_cb);
}

void rcuptr_synchronize(void)
{
    synchronize_rcu();
}

void rcuptr_barrier(void)
{
    /* rcu_barrier puts an online QSBR caller offline for the wait itself. */
    rcu_barrier();
}

void rcuptr_reader_violation(const char *func)
{
    log_error("msg=\"RCU read outside a read-side section (thread not registered or "
              "offline)\" func=%s",
              func);
    abort();
}
