#include "room/quality.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/msg.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

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
    put32(p + 1, sum->receivers);
    put16(p + 5, sum->loss_median);
    put16(p + 7, sum->loss_worst);
    put32(p + 9, sum->rtt_median_us);
    put32(p + 13, sum->rtt_worst_us);
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
        sum->receivers = get32(p + 1);
        sum->loss_median = get16(p + 5);
        sum->loss_worst = get16(p + 7);
        sum->rtt_median_us = get32(p + 9);
        sum->rtt_worst_us = get32(p + 13);
        rc = 1;
    }
out:
    free(m);
    return rc;
}
