#include "core/msgq.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int msgq_push(struct msgq *q, const struct worker_msg *m)
{
    if (q->len == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 64;
        if (cap <= q->cap)
            return ROOST_ENOMEM;
        struct worker_msg *v = malloc((size_t)cap * sizeof(*v));
        if (v == NULL)
            return ROOST_ENOMEM;
        /* Unwrap into the new array. */
        for (uint32_t i = 0; i < q->len; i++)
            v[i] = q->v[(q->head + i) & (q->cap - 1)];
        free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = cap;
    }
    q->v[(q->head + q->len) & (q->cap - 1)] = *m;
    q->len++;
    return 0;
}

const struct worker_msg *msgq_front(const struct msgq *q)
{
    return &q->v[q->head & (q->cap - 1)];
}

void msgq_pop(struct msgq *q)
{
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
}

void msgq_free(struct msgq *q)
{
    free(q->v);
    memset(q, 0, sizeof(*q));
}
