/* A growable FIFO of worker messages: the runtime's spill queues, the
 * inbox and the queue of messages a worker sends itself. Grows by doubling
 * and keeps its storage, so a steady state does not allocate. Not thread
 * safe: its owner serialises access (a worker, or the inbox mutex). */
#ifndef ROOST_CORE_MSGQ_H
#define ROOST_CORE_MSGQ_H

#include <stdint.h>

#include "core/worker.h"

struct msgq {
    struct worker_msg *v;
    uint32_t head;
    uint32_t len;
    uint32_t cap; /* power of two or 0 */
};

/* Appends a copy of m. Returns 0 or ROOST_ENOMEM (the queue is unchanged). */
int msgq_push(struct msgq *q, const struct worker_msg *m);
/* The oldest message; the queue must not be empty. */
const struct worker_msg *msgq_front(const struct msgq *q);
/* Drops the oldest message; the queue must not be empty. */
void msgq_pop(struct msgq *q);
/* Frees the storage and empties the queue. */
void msgq_free(struct msgq *q);

#endif
