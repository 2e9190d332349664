/* libroost-client: the public C API of roost (pkg-config: roost-client).
 *
 * Self-contained: this header includes only the C standard library and
 * names only roost_* / ROOST_* things. docs/CLIENT.md is the guide.
 *
 * Two layers:
 *
 *  - The endpoint (struct roost_client) and its connections (struct
 *    roost_conn): QUIC to a relay, certificate checked against a CA file or
 *    a pinned certificate, raw control-message bodies and DATAGRAMs. This is
 *    what load generators and tests use.
 *  - The session (struct roost_session): one participant speaking the roost
 *    protocol (docs/PROTOCOL.md) on a connection of an endpoint created
 *    with cbs == NULL: HELLO, JOIN with a token, presence, media with
 *    parsed headers, QUALITY, keyframe requests, LEAVE.
 *
 * Driving an endpoint. Nothing happens unless the endpoint is driven, in
 * one of three ways:
 *  - roost_client_step(cl, timeout_ms): blocks up to timeout_ms;
 *  - your own loop: poll roost_client_fd() for readability with a timeout
 *    of roost_client_next_timeout(), then call roost_client_process();
 *  - roost_client_run(): an internal thread does it until
 *    roost_client_stop().
 * Queued control bodies and datagrams go out at the next step/process (or
 * at once in thread mode: roost_client_unlock wakes the thread).
 *
 * Thread rules. An endpoint, its connections and its sessions form one
 * unit that one thread at a time may touch; different endpoints are
 * independent. Without roost_client_run that thread is the caller's. With
 * roost_client_run every callback runs on the internal thread while it
 * holds the endpoint lock; any other thread must take roost_client_lock()
 * around each call on the endpoint, its connections or its sessions (calls
 * made from inside a callback need no lock). roost_client_stop and
 * roost_client_del must not be called from a callback.
 *
 * Errors. Fallible functions return 0 (or a count) on success and a
 * negative ROOST_ERR_* code on failure; roost_strerror() names any of them.
 *
 * Strings and buffers passed to callbacks are borrowed for the call only. */
#ifndef ROOST_CLIENT_H
#define ROOST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROOST_CLIENT_VERSION_MAJOR 1
#define ROOST_CLIENT_VERSION_MINOR 1

/* ------------------------------------------------------------ errors */

/* Negative error codes (Linux errno values where one fits, own codes below
 * -1000). Stable: a value never changes meaning. */
enum roost_error {
    ROOST_ERR_OK = 0,
    ROOST_ERR_NOMEM = -12,       /* out of memory */
    ROOST_ERR_INVAL = -22,       /* invalid argument, or not valid in this state */
    ROOST_ERR_AGAIN = -11,       /* try again later */
    ROOST_ERR_NOENT = -2,        /* no such item */
    ROOST_ERR_EXIST = -17,       /* already exists */
    ROOST_ERR_NOSPC = -28,       /* buffer too small */
    ROOST_ERR_RANGE = -34,       /* value out of range */
    ROOST_ERR_IO = -5,           /* I/O error */
    ROOST_ERR_ACCES = -13,       /* permission denied */
    ROOST_ERR_TIMEDOUT = -110,   /* timed out */
    ROOST_ERR_TRUNC = -1001,     /* input ends before the item it announces */
    ROOST_ERR_MALFORMED = -1002, /* input is structurally invalid */
    ROOST_ERR_TOOBIG = -1003,    /* a field or count exceeds its limit */
    ROOST_ERR_UNKNOWN = -1004,   /* unknown type or version */
    ROOST_ERR_BADTAG = -1005,    /* authentication tag mismatch */
    ROOST_ERR_EXPIRED = -1006,   /* token or credential past its expiry */
    ROOST_ERR_NOTYET = -1007,    /* token not yet valid */
    ROOST_ERR_BADKEY = -1008,    /* unknown key id, or unusable key */
    ROOST_ERR_WRONGROOM = -1009, /* token for another room */
    ROOST_ERR_CRYPTO = -1010,    /* TLS / crypto failure (certificate unreadable, ...) */
    ROOST_ERR_QUIC = -1011,      /* QUIC library failure */
    ROOST_ERR_CLOSED = -1012,    /* object is closed or shutting down */
    ROOST_ERR_FULL = -1013,      /* a limit or a queue is full */
    ROOST_ERR_SYS = -1014,       /* system call failure; errno says more */
};

/* A static, human-readable string for any ROOST_ERR_* code or negative
 * errno. Any thread. */
const char *roost_strerror(int err);

/* ---------------------------------------------------------- endpoint */

struct roost_client;
struct roost_conn;

struct roost_client_config {
    const char *ca_file;           /* PEM trust anchors */
    const char *pinned_cert;       /* dev mode: accept exactly this PEM certificate instead */
    const char *server_name;       /* SNI and name checked in the certificate; NULL: "localhost" */
    const char *alpn;              /* NULL: "roost/1" (tests offer others) */
    uint64_t idle_timeout_ns;      /* 0: 30 s */
    uint64_t handshake_timeout_ns; /* 0: 10 s */
    size_t control_queue_max;      /* unacked control bytes; 0: 1 MiB */
};

/* roost_client_set_ack_thresh() for a media receiver. */
#define ROOST_ACK_THRESH_MEDIA 10u

/* How a connection ended. */
struct roost_close_info {
    bool remote;   /* the relay closed it (CONNECTION_CLOSE received) */
    bool app;      /* code is an application code (PROTOCOL.md §6), else transport */
    bool opened;   /* the handshake had completed */
    bool idle;     /* idle or handshake timeout */
    bool reset;    /* stateless reset received */
    uint64_t code; /* application or transport error code (TLS alert: 0x100 + alert) */
    int liberr;    /* QUIC library error that ended it locally, 0 if none */
};

/* Raw-connection callbacks (not used with sessions). */
struct roost_client_callbacks {
    /* Handshake complete and the control stream is open. */
    void (*on_open)(struct roost_conn *c, void *arg);
    /* A control-message body, borrowed for the call. */
    void (*on_control)(struct roost_conn *c, const uint8_t *body, size_t len, void *arg);
    /* A DATAGRAM payload, borrowed for the call. */
    void (*on_datagram)(struct roost_conn *c, const uint8_t *data, size_t len, void *arg);
    /* Exactly once per connection; the connection stays allocated until
     * roost_conn_del. */
    void (*on_close)(struct roost_conn *c, const struct roost_close_info *info, void *arg);
};

/* Creates an endpoint. cfg strings are read during the call; cbs and arg
 * are borrowed for the endpoint's life. cbs NULL: a session endpoint (its
 * connections are made by roost_session_new only). Returns 0,
 * ROOST_ERR_INVAL, ROOST_ERR_CRYPTO (CA or pinned certificate unreadable),
 * ROOST_ERR_SYS, ROOST_ERR_NOMEM. */
int roost_client_new(struct roost_client **out, const struct roost_client_config *cfg,
                     const struct roost_client_callbacks *cbs, void *arg);

/* ACK policy of the client's connections made from now on: ack-eliciting
 * packets received before an ACK goes at once. 0 or 2: every second one
 * (RFC 9000 §13.2.2, the default). A receiver of media (many small DATAGRAM
 * packets) may set ROOST_ACK_THRESH_MEDIA: its ACKs then ride with its own
 * packets, or go alone within the advertised max_ack_delay
 * (docs/PROTOCOL.md §13). A setter rather than a roost_client_config field
 * so that the config struct keeps its 1.0 size. Since 1.1. Returns 0 or
 * ROOST_EINVAL (above 255). */
int roost_client_set_ack_thresh(struct roost_client *cl, unsigned n);
/* Stops the thread (roost_client_run) if any, frees every connection and
 * session (without callbacks) and the endpoint. Accepts NULL. */
void roost_client_del(struct roost_client *cl);

/* Starts a raw connection to host (numeric IPv4/IPv6) and port. user is
 * returned by roost_conn_user. Returns 0, ROOST_ERR_INVAL (also on a
 * session endpoint), ROOST_ERR_SYS, ROOST_ERR_CRYPTO, ROOST_ERR_QUIC,
 * ROOST_ERR_NOMEM. */
int roost_client_connect(struct roost_client *cl, const char *host, uint16_t port, void *user,
                         struct roost_conn **out);

/* Waits up to timeout_ms (0: poll) for packets or timers, processes them,
 * and sends what is ready. Returns 0 or ROOST_ERR_SYS. */
int roost_client_step(struct roost_client *cl, int timeout_ms);
/* The endpoint's event fd (an epoll fd: readable when roost_client_process
 * has work), for callers with their own loop. */
int roost_client_fd(const struct roost_client *cl);
/* Non-blocking step at time now (CLOCK_MONOTONIC ns). Returns 0 or
 * ROOST_ERR_SYS. */
int roost_client_process(struct roost_client *cl, uint64_t now);
/* ns until the next timer (UINT64_MAX: none). */
uint64_t roost_client_next_timeout(const struct roost_client *cl, uint64_t now);
/* CLOCK_MONOTONIC in ns, the clock roost_client_process expects. */
uint64_t roost_client_now(void);
/* Connections not yet closed. */
unsigned roost_client_active(const struct roost_client *cl);

/* Thread mode: starts an internal thread that drives the endpoint until
 * roost_client_stop. Returns 0, ROOST_ERR_EXIST (already running),
 * ROOST_ERR_SYS. */
int roost_client_run(struct roost_client *cl);
/* Stops and joins the thread; no callback runs after it returns. Not from
 * a callback. Accepts an endpoint that is not running. */
void roost_client_stop(struct roost_client *cl);
/* The endpoint lock (thread mode; harmless otherwise): take it around
 * calls from threads other than the internal one. Unlock wakes the thread
 * so that what was queued goes out now. Not recursive. */
void roost_client_lock(struct roost_client *cl);
void roost_client_unlock(struct roost_client *cl);

/* Testing: drop this share (0..1) of received datagrams. */
void roost_client_set_rx_drop(struct roost_client *cl, double share);

/* Frames and queues a control body (1..65535 bytes, copied); it is sent
 * once the control stream is open. Returns 0, ROOST_ERR_INVAL,
 * ROOST_ERR_TOOBIG, ROOST_ERR_CLOSED, ROOST_ERR_FULL, ROOST_ERR_NOMEM. */
int roost_conn_send_control(struct roost_conn *c, const uint8_t *body, size_t len);
/* Queues one DATAGRAM (copied). Returns 0, ROOST_ERR_CLOSED (not open),
 * ROOST_ERR_FULL (queue full: dropped), ROOST_ERR_NOMEM. */
int roost_conn_send_datagram(struct roost_conn *c, const uint8_t *data, size_t len);
/* Closes with an application error code; on_close runs now. */
void roost_conn_close(struct roost_conn *c, uint64_t app_error);
/* Frees a raw connection (closing it silently if still open, no callback).
 * Accepts NULL. */
void roost_conn_del(struct roost_conn *c);
void *roost_conn_user(const struct roost_conn *c);
bool roost_conn_is_open(const struct roost_conn *c);
bool roost_conn_is_closed(const struct roost_conn *c);
/* Testing (NAT rebinding): moves the connection to a new socket with a
 * new source port. Returns 0 or ROOST_ERR_SYS. */
int roost_conn_rebind(struct roost_conn *c);
/* The connection's current local UDP port. */
uint16_t roost_conn_local_port(const struct roost_conn *c);

struct roost_conn_stats {
    uint64_t srtt_ns, min_rtt_ns, latest_rtt_ns, rttvar_ns;
    uint64_t cwnd, bytes_in_flight;
    uint64_t dgram_sent, dgram_recv, dgram_acked, dgram_lost, dgram_dropped;
    uint64_t control_sent, control_recv;
};
void roost_conn_stats(const struct roost_conn *c, struct roost_conn_stats *out);

/* ------------------------------------------------------ media headers */

/* Media datagrams (PROTOCOL.md §8): client -> relay a 12-byte header,
 * relay -> client the sender's participant id (4 bytes) before it. */
#define ROOST_MEDIA_HDR_LEN 12
#define ROOST_MEDIA_RECV_HDR_LEN 16

#define ROOST_MEDIA_KEYFRAME 0x01 /* part of an independently decodable frame */
#define ROOST_MEDIA_END 0x02      /* last packet of its frame */
#define ROOST_MEDIA_VIDEO 0x04    /* video stream (clear: audio) */
#define ROOST_MEDIA_START 0x08    /* first packet of its frame */

struct roost_media {
    uint32_t sender; /* participant id (received media only) */
    uint8_t stream_id;
    uint8_t flags; /* ROOST_MEDIA_*; unknown bits masked off */
    uint32_t seq;
    uint32_t timestamp;
    const uint8_t *payload; /* received media: borrowed for the callback */
    size_t len;
};

/* Writes the 12-byte client -> relay header for *m (sender, payload, len
 * not used) into out[0..cap). Returns ROOST_MEDIA_HDR_LEN, ROOST_ERR_NOSPC
 * or ROOST_ERR_INVAL (unknown flag bits). */
int roost_media_header_write(const struct roost_media *m, uint8_t *out, size_t cap);
/* Parses a relay -> client datagram: header into *m, payload/len pointing
 * into data. Returns 0, ROOST_ERR_TRUNC, ROOST_ERR_UNKNOWN (header
 * version), ROOST_ERR_MALFORMED. */
int roost_media_parse(const uint8_t *data, size_t len, struct roost_media *m);

/* ----------------------------------------------------------- session */

struct roost_session;

struct roost_session_config {
    const char *room;         /* 1..64 bytes of UTF-8 */
    const char *token;        /* join token (roost-cli token); "" for an insecure_no_auth relay */
    const char *display_name; /* NULL: none; up to 64 bytes of UTF-8 */
    const char *client_name;  /* sent in HELLO; NULL: "libroost-client" */
    /* Reserved for session resumption (a resumption ticket from an earlier
     * session; the protocol has none yet): must be NULL / 0. When it
     * exists, a session given a ticket will skip the full JOIN. */
    const void *resume_ticket;
    size_t resume_ticket_len;
};

/* Permissions in roost_joined.permissions (= the token's rights). */
#define ROOST_PERM_PUBLISH 0x01
#define ROOST_PERM_SUBSCRIBE 0x02

struct roost_joined {
    uint32_t self_id;      /* this participant's id */
    unsigned permissions;  /* ROOST_PERM_* */
    uint32_t member_total; /* others in the room; each also arrives as a presence JOIN */
    /* Largest media datagram (header included) roost_session_send takes:
     * the relay's WELCOME.max_datagram, capped at 1100 so that it fits a
     * 1200-byte QUIC packet on any path. */
    uint32_t max_datagram;
};

enum roost_presence_kind {
    ROOST_PRESENCE_JOIN = 1,
    ROOST_PRESENCE_LEAVE = 2,
};

struct roost_presence {
    enum roost_presence_kind kind;
    uint32_t participant_id;
    bool publisher;           /* JOIN: may send media */
    const char *display_name; /* JOIN: NUL-terminated (may be ""); LEAVE: the name seen at JOIN */
};

struct roost_quality {
    uint32_t participant_id; /* whose link: own id = own link */
    uint32_t interval_ms, rtt_us, rttvar_us;
    uint16_t loss_permille;
    uint32_t dropped, est_kbps;
    /* Receivers summary (a publisher's subscribers): valid when summary. */
    bool summary;
    uint32_t receivers;
    uint16_t loss_median, loss_worst;
    uint32_t rtt_median_us, rtt_worst_us;
};

/* Protocol error codes (PROTOCOL.md §6) seen in on_rejected, on_error and
 * roost_close_info.code. roost_error_code_name() names them. */
#define ROOST_CODE_BAD_TOKEN 0x04
#define ROOST_CODE_TOKEN_EXPIRED 0x05
#define ROOST_CODE_ROOM_FULL 0x08
#define ROOST_CODE_NOT_PERMITTED 0x0a
#define ROOST_CODE_GOING_AWAY 0x0c
#define ROOST_CODE_REPLACED 0x0d
const char *roost_error_code_name(uint64_t code);

/* Every callback may be NULL. */
struct roost_session_callbacks {
    /* JOINED: the session is in the room; media may flow. */
    void (*on_joined)(struct roost_session *s, const struct roost_joined *j, void *arg);
    /* JOIN_REJECTED (the relay then closes the connection). */
    void (*on_rejected)(struct roost_session *s, uint32_t code, uint32_t retry_after_ms,
                        const char *reason, void *arg);
    /* Someone joined or left (members present at JOINED come as JOINs). */
    void (*on_presence)(struct roost_session *s, const struct roost_presence *p, void *arg);
    /* A media datagram from another participant. */
    void (*on_media)(struct roost_session *s, const struct roost_media *m, void *arg);
    /* Link statistics from the relay. */
    void (*on_quality)(struct roost_session *s, const struct roost_quality *q, void *arg);
    /* Someone (requester) wants a keyframe on our stream stream_id. */
    void (*on_keyframe_request)(struct roost_session *s, uint32_t requester, uint8_t stream_id,
                                void *arg);
    /* ERROR from the relay (the session stays). */
    void (*on_error)(struct roost_session *s, uint32_t code, const char *text, void *arg);
    /* GOAWAY: the relay drains; reconnect (hint may be "") within drain_ms. */
    void (*on_goaway)(struct roost_session *s, uint32_t drain_ms, const char *reconnect, void *arg);
    /* Exactly once; the session stays allocated until roost_session_del. */
    void (*on_close)(struct roost_session *s, const struct roost_close_info *info, void *arg);
};

/* Connects to host:port on a session endpoint (roost_client_new with cbs
 * NULL), sends HELLO once open and JOIN after WELCOME. cfg strings are
 * copied; cbs and arg are borrowed for the session's life. Returns 0,
 * ROOST_ERR_INVAL (bad config, resume ticket set, raw endpoint),
 * ROOST_ERR_TOOBIG (room, name or token too long) and the errors of
 * roost_client_connect. */
int roost_session_new(struct roost_session **out, struct roost_client *cl, const char *host,
                      uint16_t port, const struct roost_session_config *cfg,
                      const struct roost_session_callbacks *cbs, void *arg);
/* Frees the session (closing its connection silently if open, no
 * callback). Accepts NULL. */
void roost_session_del(struct roost_session *s);

/* Sends LEAVE (the relay then closes the connection: on_close). Returns
 * 0, ROOST_ERR_INVAL (not joined), ROOST_ERR_CLOSED, ROOST_ERR_FULL,
 * ROOST_ERR_NOMEM. */
int roost_session_leave(struct roost_session *s);
/* Closes the connection now (application code 0, NO_ERROR); on_close runs. */
void roost_session_close(struct roost_session *s);

/* Sends one media packet: header (stream, flags, the stream's next
 * sequence number, timestamp) + payload in one DATAGRAM. flags:
 * ROOST_MEDIA_*; an audio frame is usually START|END. Returns 0,
 * ROOST_ERR_INVAL (not joined, bad flags), ROOST_ERR_TOOBIG (above
 * max_datagram), ROOST_ERR_FULL (send queue full: dropped),
 * ROOST_ERR_CLOSED, ROOST_ERR_NOMEM. */
int roost_session_send(struct roost_session *s, uint8_t stream_id, unsigned flags,
                       uint32_t timestamp, const void *payload, size_t len);
/* Sends one whole frame, split into as many packets as max_datagram needs:
 * START on the first, END on the last, keyframe (ROOST_MEDIA_KEYFRAME in
 * flags) and ROOST_MEDIA_VIDEO on all. Returns the number of packets or
 * the errors of roost_session_send (packets before a failure were sent). */
int roost_session_send_frame(struct roost_session *s, uint8_t stream_id, unsigned flags,
                             uint32_t timestamp, const void *frame, size_t len);
/* Asks sender for a keyframe on its stream stream_id. Returns 0,
 * ROOST_ERR_INVAL (not joined, sender 0) and the control-send errors. */
int roost_session_request_keyframe(struct roost_session *s, uint32_t sender, uint8_t stream_id);

/* Own participant id (0 before WELCOME). */
uint32_t roost_session_id(const struct roost_session *s);
bool roost_session_is_joined(const struct roost_session *s);
bool roost_session_is_closed(const struct roost_session *s);
/* The session's connection (stats, local port); owned by the session. */
struct roost_conn *roost_session_conn(const struct roost_session *s);

#ifdef __cplusplus
}
#endif

#endif
