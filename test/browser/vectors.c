/* Test vectors for web/proto.js: every control message and both media
 * headers encoded by lib/proto, printed as one JSON array of
 * {"name", "kind", "hex", "fields"} objects. The node test
 * (test/browser/proto.test.mjs) decodes each hex string with proto.js and
 * compares the fields, and encodes the fields and compares the bytes, so
 * the browser codec is checked against the C reference. Not a test by
 * itself: it only prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/media.h"
#include "proto/msg.h"
#include "proto/quality.h"

static int first = 1;

static struct msg_str S(const char *s) {
    return (struct msg_str){.ptr = (const uint8_t *)s, .len = strlen(s)};
}

static void
hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

/* fields is a JSON object text written by the caller (ASCII or raw UTF-8). */
static void emit(const char *name, const char *kind, const uint8_t *p, size_t n, const char *fields)
{
    printf("%s\n  {\"name\": \"%s\", \"kind\": \"%s\", \"hex\": \"", first ? "" : ",", name, kind);
    hex(p, n);
    printf("\", \"fields\": %s}", fields);
    first = 0;
}

static void frame(const char *name, const struct msg *m, const char *fields)
{
    uint8_t out[FRAME_MAX_BODY + 8];
    int n = msg_encode(m, out, sizeof(out));
    if (n < 0) {
        fprintf(stderr, "vectors: %s: msg_encode failed (%d)\n", name, n);
        exit(1);
    }
    emit(name, "frame", out, (size_t)n, fields);
}

int main(void)
{
    static struct msg m; /* about 5 KiB: not on the stack */
    printf("[");

    memset(&m, 0, sizeof(m));
    m.type = MSG_HELLO;
    m.u.hello = (struct msg_hello){.min_version = 1, .max_version = 1, .client_name = S("cli/1")};
    frame("hello", &m,
          "{\"type\": 1, \"minVersion\": 1, \"maxVersion\": 1, \"clientName\": \"cli/1\"}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_WELCOME;
    m.u.welcome = (struct msg_welcome){.version = 1,
                                       .participant_id = 0x01020304,
                                       .idle_timeout_ms = 30000,
                                       .max_datagram = 1200,
                                       .max_stream_id = 7,
                                       .max_members = 1000,
                                       .server_name = S("roost-relay/1 test")};
    frame("welcome", &m,
          "{\"type\": 2, \"version\": 1, \"participantId\": 16909060, \"idleTimeoutMs\": 30000, "
          "\"maxDatagram\": 1200, \"maxStreamId\": 7, \"maxMembers\": 1000, "
          "\"serverName\": \"roost-relay/1 test\"}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_JOIN;
    m.u.join = (struct msg_join){.room_id = S("demo"),
                                 .token = S("v1.k1.eyJyIjoiZGVtbyJ9.c2ln"),
                                 .display_name = S("Zo\xc3\xab \xf0\x9f\x8e\xa7")};
    frame("join", &m,
          "{\"type\": 3, \"roomId\": \"demo\", \"token\": \"v1.k1.eyJyIjoiZGVtbyJ9.c2ln\", "
          "\"displayName\": \"Zo\xc3\xab \xf0\x9f\x8e\xa7\"}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_JOINED;
    m.u.joined.room_id = S("demo");
    m.u.joined.permissions = MSG_PERM_PUBLISH | MSG_PERM_SUBSCRIBE;
    m.u.joined.flags = 0;
    m.u.joined.member_total = 2;
    m.u.joined.n_members = 2;
    m.u.joined.members[0] =
        (struct msg_member){.participant_id = 7, .flags = 1, .display_name = S("native")};
    m.u.joined.members[1] =
        (struct msg_member){.participant_id = 70000, .flags = 0, .display_name = S("")};
    frame(
        "joined", &m,
        "{\"type\": 4, \"roomId\": \"demo\", \"permissions\": 3, \"flags\": 0, \"memberTotal\": 2, "
        "\"members\": [{\"participantId\": 7, \"flags\": 1, \"displayName\": \"native\"}, "
        "{\"participantId\": 70000, \"flags\": 0, \"displayName\": \"\"}]}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_JOIN_REJECTED;
    m.u.join_rejected =
        (struct msg_join_rejected){.code = 0x04, .retry_after_ms = 0, .reason = S("bad signature")};
    frame("join_rejected", &m,
          "{\"type\": 5, \"code\": 4, \"retryAfterMs\": 0, \"reason\": \"bad signature\"}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_LEAVE;
    frame("leave", &m, "{\"type\": 6}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_PARTICIPANT_EVENTS;
    m.u.events.flags = MSG_EVENTS_SYNC_DONE;
    m.u.events.n_events = 2;
    m.u.events.events[0] = (struct msg_event){
        .kind = MSG_EV_JOIN, .participant_id = 9, .flags = 1, .display_name = S("bob")};
    m.u.events.events[1] = (struct msg_event){.kind = MSG_EV_LEAVE, .participant_id = 7};
    frame("participant_events", &m,
          "{\"type\": 7, \"flags\": 1, \"events\": [{\"kind\": 1, \"participantId\": 9, \"flags\": "
          "1, "
          "\"displayName\": \"bob\"}, {\"kind\": 2, \"participantId\": 7}]}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_KEYFRAME_REQUEST;
    m.u.keyframe_request = (struct msg_keyframe_request){.participant_id = 42, .stream_id = 1};
    frame("keyframe_request", &m, "{\"type\": 8, \"participantId\": 42, \"streamId\": 1}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_QUALITY;
    m.u.quality = (struct msg_quality){.participant_id = 5,
                                       .interval_ms = 1000,
                                       .rtt_us = 12345,
                                       .rttvar_us = 678,
                                       .loss_permille = 25,
                                       .dropped = 3,
                                       .est_kbps = 2500};
    frame("quality", &m,
          "{\"type\": 9, \"participantId\": 5, \"intervalMs\": 1000, \"rttUs\": 12345, "
          "\"rttvarUs\": 678, "
          "\"lossPermille\": 25, \"dropped\": 3, \"estKbps\": 2500}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_ERROR;
    m.u.error = (struct msg_error){.code = 0x10, .msg_type = MSG_LEAVE, .text = S("not joined")};
    frame("error", &m, "{\"type\": 10, \"code\": 16, \"msgType\": 6, \"text\": \"not joined\"}");

    memset(&m, 0, sizeof(m));
    m.type = MSG_GOAWAY;
    m.u.goaway = (struct msg_goaway){.drain_ms = 5000, .reconnect = S("[::1]:4433")};
    frame("goaway", &m, "{\"type\": 11, \"drainMs\": 5000, \"reconnect\": \"[::1]:4433\"}");

    /* A QUALITY receivers summary (a body: prefix it with its length). */
    {
        struct quality_summary sum = {.receivers = 4,
                                      .worst_pid = 11,
                                      .loss_median = 10,
                                      .loss_worst = 120,
                                      .rtt_median_us = 20000,
                                      .rtt_worst_us = 90000};
        uint8_t body[128], out[130];
        int n = quality_summary_encode(&sum, 1000, body, sizeof(body));
        if (n < 0 || n > 63) {
            fprintf(stderr, "vectors: quality_summary_encode failed (%d)\n", n);
            return 1;
        }
        out[0] = (uint8_t)n; /* a one-byte varint */
        memcpy(out + 1, body, (size_t)n);
        emit("quality_summary", "frame", out, (size_t)n + 1,
             "{\"type\": 9, \"participantId\": 11, \"intervalMs\": 1000, \"rttUs\": 90000, "
             "\"rttvarUs\": 0, \"lossPermille\": 120, \"dropped\": 0, \"estKbps\": 0, "
             "\"summary\": {\"receivers\": 4, \"lossMedian\": 10, \"lossWorst\": 120, "
             "\"rttMedianUs\": 20000, \"rttWorstUs\": 90000}}");
    }

    /* Media headers, followed by a 3-byte payload. */
    {
        uint8_t out[32];
        struct media_hdr h = {.stream_id = 0,
                              .flags = MEDIA_F_START | MEDIA_F_END,
                              .seq = 0xfffffffe,
                              .timestamp = 960u * 1000u};
        int n = media_c2r_encode(&h, out, sizeof(out));
        memcpy(out + n, "\x01\x02\x03", 3);
        emit("media_c2r", "media_c2r", out, (size_t)n + 3,
             "{\"streamId\": 0, \"flags\": 10, \"seq\": 4294967294, \"timestamp\": 960000, "
             "\"payload\": \"010203\"}");
        h = (struct media_hdr){.participant_id = 0x80000001,
                               .stream_id = 1,
                               .flags =
                                   MEDIA_F_KEYFRAME | MEDIA_F_END | MEDIA_F_VIDEO | MEDIA_F_START,
                               .seq = 42,
                               .timestamp = 90000};
        n = media_r2c_encode(&h, out, sizeof(out));
        memcpy(out + n, "\x01\x02\x03", 3);
        emit("media_r2c", "media_r2c", out, (size_t)n + 3,
             "{\"sender\": 2147483649, \"streamId\": 1, \"flags\": 15, \"seq\": 42, \"timestamp\": "
             "90000, "
             "\"payload\": \"010203\"}");
    }

    printf("\n]\n");
    return 0;
}
