#include "proto/quality.h"

#include <stdlib.h>
#include <string.h>

#include "core/be.h"
#include "core/error.h"
#include "proto/msg.h"

int quality_summary_encode(const struct quality_summary *sum, uint32_t interval_ms, uint8_t *out,
                           size_t cap)
{
    if (sum->receivers == 0 || sum->worst_pid == 0 || sum->loss_worst > QUALITY_LOSS_MAX ||
        sum->loss_median > QUALITY_LOSS_MAX)
        return ROOST_EINVAL;
    struct msg m;
    memset(&m, 0, sizeof(m.type) + sizeof(m.u.quality));
    m.type = MSG_QUALITY;
    m.u.quality.participant_id = sum->worst_pid;
    m.u.quality.interval_ms = interval_ms;
    m.u.quality.rtt_us = sum->rtt_worst_us;
    m.u.quality.loss_permille = sum->loss_worst;
    int n = msg_encode_body(&m, out, cap);
    if (n < 0)
        return n;
    if (cap - (size_t)n < QUALITY_EXT_LEN)
        return ROOST_ENOSPC;
    uint8_t *p = out + n;
    p[0] = QUALITY_EXT_SUMMARY;
    be_put32(p + 1, sum->receivers);
    be_put16(p + 5, sum->loss_median);
    be_put16(p + 7, sum->loss_worst);
    be_put32(p + 9, sum->rtt_median_us);
    be_put32(p + 13, sum->rtt_worst_us);
    return n + QUALITY_EXT_LEN;
}

int quality_summary_decode(const uint8_t *body, size_t len, struct msg_quality *q,
                           struct quality_summary *sum)
{
    struct msg *m = malloc(sizeof(*m));
    if (m == NULL)
        return ROOST_ENOMEM;
    int rc = msg_decode(body, len, m);
    if (rc == 0 && m->type != MSG_QUALITY)
        rc = ROOST_EINVAL;
    if (rc != 0)
        goto out;
    *q = m->u.quality;
    /* Where the v1 fields end: re-encode them (fixed-width fields). */
    uint8_t tmp[64];
    int n = msg_encode_body(m, tmp, sizeof(tmp));
    if (n < 0) {
        rc = n;
        goto out;
    }
    rc = 0;
    if (len - (size_t)n >= QUALITY_EXT_LEN && body[n] == QUALITY_EXT_SUMMARY) {
        const uint8_t *p = body + n;
        sum->worst_pid = q->participant_id;
        sum->receivers = be_get32(p + 1);
        sum->loss_median = be_get16(p + 5);
        sum->loss_worst = be_get16(p + 7);
        sum->rtt_median_us = be_get32(p + 9);
        sum->rtt_worst_us = be_get32(p + 13);
        rc = 1;
    }
out:
    free(m);
    return rc;
}

uint16_t quality_loss_permille(uint64_t sent, uint64_t acked, uint64_t lost, int64_t *balance)
{
    *balance += (int64_t)sent - (int64_t)acked;
    uint64_t open = *balance > 0 ? (uint64_t)*balance : 0;
    uint64_t real = lost < open ? lost : open;
    if (real > sent)
        real = sent; /* at most all of this interval's datagrams */
    *balance -= (int64_t)real;
    return sent ? (uint16_t)(real * QUALITY_LOSS_MAX / sent) : 0;
}
