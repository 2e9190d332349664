// The roost wire protocol for the browser (docs/PROTOCOL.md §3, §4, §8,
// §11): control-message codec, media headers and the WebSocket channel
// tags. Pure functions, no DOM: the page imports it and node tests it
// (test/browser/proto.test.mjs) against bytes made by lib/proto.
//
// Messages are plain objects { type, ...fields } with the field names of
// PROTOCOL.md in camelCase. Strings are JS strings (UTF-8 on the wire);
// decoders return the byte offsets nowhere: every decode works on one
// whole body. Errors throw ProtoError with a code ('trunc', 'toobig',
// 'malformed', 'unknown', 'inval') like lib/proto's ROOST_E* values.

export const PROTO_VERSION = 1;
export const WS_SUBPROTOCOL = 'roost.v1';
export const WS_PATH = '/ws';
export const WS_TAG_CONTROL = 0x01;
export const WS_TAG_MEDIA = 0x02;

export const FRAME_MAX_BODY = 16384;
export const ROOM_ID_MAX = 64;
export const DISPLAY_NAME_MAX = 64;
export const CLIENT_NAME_MAX = 64;
export const SERVER_NAME_MAX = 64;
export const JOIN_TOKEN_MAX = 1024;
export const TEXT_MAX = 256;
export const JOINED_MAX_MEMBERS = 200;
export const EVENTS_MAX = 200;
export const WELCOME_MIN_DATAGRAM = 12;
export const QUALITY_LOSS_MAX = 1000;
export const VARINT_MAX = 2n ** 62n - 1n;

export const MSG = Object.freeze({
  HELLO: 0x01,
  WELCOME: 0x02,
  JOIN: 0x03,
  JOINED: 0x04,
  JOIN_REJECTED: 0x05,
  LEAVE: 0x06,
  PARTICIPANT_EVENTS: 0x07,
  KEYFRAME_REQUEST: 0x08,
  QUALITY: 0x09,
  ERROR: 0x0a,
  GOAWAY: 0x0b,
});
const MSG_NAMES = Object.fromEntries(Object.entries(MSG).map(([k, v]) => [v, k]));
export function msgTypeName(type) {
  return MSG_NAMES[type] ?? 'UNKNOWN';
}

export const PERM_PUBLISH = 0x01;
export const PERM_SUBSCRIBE = 0x02;
export const JOINED_MORE = 0x01;
export const MEMBER_PUBLISHER = 0x01;
export const EVENTS_SYNC_DONE = 0x01;
export const EV_JOIN = 1;
export const EV_LEAVE = 2;
export const QUALITY_EXT_SUMMARY = 1;

// §6 error codes.
export const ERR = Object.freeze({
  NO_ERROR: 0x00,
  INTERNAL: 0x01,
  PROTOCOL_VIOLATION: 0x02,
  UNSUPPORTED_VERSION: 0x03,
  BAD_TOKEN: 0x04,
  TOKEN_EXPIRED: 0x05,
  TOKEN_NOT_YET_VALID: 0x06,
  WRONG_ROOM: 0x07,
  ROOM_FULL: 0x08,
  SERVER_FULL: 0x09,
  NOT_PERMITTED: 0x0a,
  TOO_SLOW: 0x0b,
  GOING_AWAY: 0x0c,
  REPLACED: 0x0d,
  IDLE_TIMEOUT: 0x0e,
  ALREADY_JOINED: 0x0f,
  NOT_JOINED: 0x10,
  RATE_LIMITED: 0x11,
});
const ERR_NAMES = Object.fromEntries(Object.entries(ERR).map(([k, v]) => [v, k]));
export function errName(code) {
  return ERR_NAMES[code] ?? 'UNKNOWN';
}

// §8 media.
export const MEDIA_HDR_VERSION = 1;
export const MEDIA_C2R_HDR_LEN = 12;
export const MEDIA_R2C_HDR_LEN = 16;
export const MEDIA_F_KEYFRAME = 0x01;
export const MEDIA_F_END = 0x02;
export const MEDIA_F_VIDEO = 0x04;
export const MEDIA_F_START = 0x08;
export const MEDIA_F_KNOWN = 0x0f;

export class ProtoError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ProtoError';
    this.code = code;
  }
}
const fail = (code, what) => {
  throw new ProtoError(code, what);
};

const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ------------------------------------------------------------- varints

export function varintLen(v) {
  v = BigInt(v);
  if (v < 0n || v > VARINT_MAX) fail('inval', 'varint out of range');
  if (v < 64n) return 1;
  if (v < 16384n) return 2;
  if (v < 1073741824n) return 4;
  return 8;
}

// Shortest form, as §3.1 requires of senders.
export function varintEncode(v) {
  v = BigInt(v);
  const n = varintLen(v);
  const out = new Uint8Array(n);
  let x = v;
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  out[0] |= [0, 0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0][n];
  return out;
}

// Returns { value (a Number when below 2^53, else a BigInt), len }.
export function varintDecode(buf, off = 0) {
  if (off >= buf.length) fail('trunc', 'varint');
  const n = 1 << (buf[off] >> 6);
  if (buf.length - off < n) fail('trunc', 'varint');
  let v = BigInt(buf[off] & 0x3f);
  for (let i = 1; i < n; i++) v = (v << 8n) | BigInt(buf[off + i]);
  return { value: v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v, len: n };
}

// ------------------------------------------------------------- writing

class Writer {
  constructor() {
    this.parts = [];
    this.len = 0;
  }
  bytes(b) {
    this.parts.push(b);
    this.len += b.length;
  }
  u8(v) {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) fail('inval', 'u8 out of range');
    this.bytes(Uint8Array.of(v));
  }
  u16(v) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) fail('inval', 'u16 out of range');
    this.bytes(Uint8Array.of(v >> 8, v & 0xff));
  }
  u32(v) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) fail('inval', 'u32 out of range');
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    this.bytes(b);
  }
  varint(v) {
    this.bytes(varintEncode(v));
  }
  pid(v) {
    if (v === 0) fail('inval', 'participant id 0');
    this.u32(v);
  }
  str(s, min, max, ascii = false) {
    const b = ascii ? asciiBytes(s) : utf8enc.encode(s ?? '');
    if (b.length > max) fail('toobig', 'string too long');
    if (b.length < min) fail('inval', 'string too short');
    if (!ascii && b.includes(0)) fail('inval', 'NUL in string');
    this.varint(b.length);
    this.bytes(b);
  }
  finish() {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

function asciiBytes(s) {
  s = s ?? '';
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) fail('inval', 'non-printable ASCII');
    b[i] = c;
  }
  return b;
}

// Encodes a message body (varint type, then fields; no length prefix).
export function encodeBody(m) {
  const w = new Writer();
  if (!MSG_NAMES[m.type]) fail('inval', 'unknown message type');
  w.varint(m.type);
  switch (m.type) {
    case MSG.HELLO:
      if (!(m.minVersion >= 1) || m.maxVersion < m.minVersion) fail('inval', 'bad version range');
      w.u16(m.minVersion);
      w.u16(m.maxVersion);
      w.str(m.clientName, 0, CLIENT_NAME_MAX);
      break;
    case MSG.WELCOME:
      if (!(m.version >= 1) || !(m.maxDatagram >= WELCOME_MIN_DATAGRAM) || !(m.maxMembers >= 1))
        fail('inval', 'bad WELCOME');
      w.u16(m.version);
      w.pid(m.participantId);
      w.u32(m.idleTimeoutMs);
      w.u16(m.maxDatagram);
      w.u8(m.maxStreamId);
      w.u32(m.maxMembers);
      w.str(m.serverName, 0, SERVER_NAME_MAX);
      break;
    case MSG.JOIN:
      w.str(m.roomId, 1, ROOM_ID_MAX);
      w.str(m.token, 0, JOIN_TOKEN_MAX, true);
      w.str(m.displayName, 0, DISPLAY_NAME_MAX);
      break;
    case MSG.JOINED: {
      const members = m.members ?? [];
      if (members.length > JOINED_MAX_MEMBERS) fail('toobig', 'too many members');
      if (m.memberTotal < members.length) fail('inval', 'member_total below count');
      w.str(m.roomId, 1, ROOM_ID_MAX);
      w.u8(m.permissions);
      w.u8(m.flags);
      w.u32(m.memberTotal);
      w.varint(members.length);
      for (const mb of members) {
        w.pid(mb.participantId);
        w.u8(mb.flags);
        w.str(mb.displayName, 0, DISPLAY_NAME_MAX);
      }
      break;
    }
    case MSG.JOIN_REJECTED:
      w.u32(m.code);
      w.u32(m.retryAfterMs);
      w.str(m.reason, 0, TEXT_MAX);
      break;
    case MSG.LEAVE:
      break;
    case MSG.PARTICIPANT_EVENTS: {
      const evs = m.events ?? [];
      if (evs.length > EVENTS_MAX) fail('toobig', 'too many events');
      w.u8(m.flags);
      w.varint(evs.length);
      for (const ev of evs) {
        if (ev.kind !== EV_JOIN && ev.kind !== EV_LEAVE) fail('inval', 'bad event kind');
        w.u8(ev.kind);
        w.pid(ev.participantId);
        if (ev.kind === EV_JOIN) {
          w.u8(ev.flags);
          w.str(ev.displayName, 0, DISPLAY_NAME_MAX);
        }
      }
      break;
    }
    case MSG.KEYFRAME_REQUEST:
      w.pid(m.participantId);
      w.u8(m.streamId);
      break;
    case MSG.QUALITY:
      if (m.lossPermille > QUALITY_LOSS_MAX) fail('inval', 'loss above 1000');
      w.pid(m.participantId);
      w.u32(m.intervalMs);
      w.u32(m.rttUs);
      w.u32(m.rttvarUs);
      w.u16(m.lossPermille);
      w.u32(m.dropped);
      w.u32(m.estKbps);
      if (m.summary) {
        const s = m.summary;
        if (!(s.receivers >= 1) || s.lossMedian > 1000 || s.lossWorst > 1000)
          fail('inval', 'bad summary');
        w.u8(QUALITY_EXT_SUMMARY);
        w.u32(s.receivers);
        w.u16(s.lossMedian);
        w.u16(s.lossWorst);
        w.u32(s.rttMedianUs);
        w.u32(s.rttWorstUs);
      }
      break;
    case MSG.ERROR:
      w.u32(m.code);
      w.varint(m.msgType ?? 0);
      w.str(m.text, 0, TEXT_MAX);
      break;
    case MSG.GOAWAY:
      w.u32(m.drainMs);
      w.str(m.reconnect, 0, TEXT_MAX, true);
      break;
  }
  const body = w.finish();
  if (body.length > FRAME_MAX_BODY) fail('toobig', 'body above FRAME_MAX_BODY');
  return body;
}

// A whole §3.2 frame: body_len varint + body.
export function encodeFrame(m) {
  const body = encodeBody(m);
  const hdr = varintEncode(body.length);
  const out = new Uint8Array(hdr.length + body.length);
  out.set(hdr);
  out.set(body, hdr.length);
  return out;
}

// The §11.2 WebSocket message carrying a control message: 0x01 + frame.
export function encodeControlMessage(m) {
  const f = encodeFrame(m);
  const out = new Uint8Array(1 + f.length);
  out[0] = WS_TAG_CONTROL;
  out.set(f, 1);
  return out;
}

// ------------------------------------------------------------- reading

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n) {
    if (this.buf.length - this.pos < n) fail('trunc', 'body ends before a field');
  }
  u8() {
    this.need(1);
    return this.buf[this.pos++];
  }
  u16() {
    this.need(2);
    const v = this.dv.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.dv.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  varint() {
    const { value, len } = varintDecode(this.buf, this.pos);
    this.pos += len;
    return value;
  }
  pid() {
    const v = this.u32();
    if (v === 0) fail('malformed', 'participant id 0');
    return v;
  }
  count(max) {
    const n = this.varint();
    if (typeof n === 'bigint' || n > max) fail('toobig', 'count above limit');
    return n;
  }
  str(min, max, ascii = false) {
    const n = this.varint();
    if (typeof n === 'bigint' || n > max) fail('toobig', 'string above limit');
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    if (n < min) fail('malformed', 'string too short');
    if (ascii) {
      for (const c of b) if (c < 0x20 || c > 0x7e) fail('malformed', 'non-printable ASCII');
      return String.fromCharCode(...b);
    }
    if (b.includes(0)) fail('malformed', 'NUL in string');
    try {
      return utf8dec.decode(b);
    } catch {
      fail('malformed', 'bad UTF-8');
    }
  }
  rest() {
    return this.buf.length - this.pos;
  }
}

// Decodes one message body. Unknown types throw ProtoError('unknown') with
// .msgType set: the caller ignores them (§7). Trailing bytes are ignored.
export function decodeBody(body) {
  const r = new Reader(body);
  if (body.length === 0) fail('trunc', 'empty body');
  const type = r.varint();
  if (type === 0) fail('malformed', 'type 0');
  switch (type) {
    case MSG.HELLO: {
      const minVersion = r.u16();
      const maxVersion = r.u16();
      if (minVersion < 1 || maxVersion < minVersion) fail('malformed', 'bad version range');
      return { type, minVersion, maxVersion, clientName: r.str(0, CLIENT_NAME_MAX) };
    }
    case MSG.WELCOME: {
      const m = { type, version: r.u16(), participantId: r.pid(), idleTimeoutMs: r.u32() };
      m.maxDatagram = r.u16();
      m.maxStreamId = r.u8();
      m.maxMembers = r.u32();
      m.serverName = r.str(0, SERVER_NAME_MAX);
      if (m.version < 1 || m.maxDatagram < WELCOME_MIN_DATAGRAM || m.maxMembers < 1)
        fail('malformed', 'bad WELCOME');
      return m;
    }
    case MSG.JOIN:
      return {
        type,
        roomId: r.str(1, ROOM_ID_MAX),
        token: r.str(0, JOIN_TOKEN_MAX, true),
        displayName: r.str(0, DISPLAY_NAME_MAX),
      };
    case MSG.JOINED: {
      const m = { type, roomId: r.str(1, ROOM_ID_MAX), permissions: r.u8(), flags: r.u8() };
      m.memberTotal = r.u32();
      const n = r.count(JOINED_MAX_MEMBERS);
      if (m.memberTotal < n) fail('malformed', 'member_total below count');
      m.members = [];
      for (let i = 0; i < n; i++)
        m.members.push({
          participantId: r.pid(),
          flags: r.u8(),
          displayName: r.str(0, DISPLAY_NAME_MAX),
        });
      return m;
    }
    case MSG.JOIN_REJECTED:
      return { type, code: r.u32(), retryAfterMs: r.u32(), reason: r.str(0, TEXT_MAX) };
    case MSG.LEAVE:
      return { type };
    case MSG.PARTICIPANT_EVENTS: {
      const m = { type, flags: r.u8(), events: [] };
      const n = r.count(EVENTS_MAX);
      for (let i = 0; i < n; i++) {
        const kind = r.u8();
        if (kind !== EV_JOIN && kind !== EV_LEAVE) fail('malformed', 'bad event kind');
        const participantId = r.pid();
        if (kind === EV_JOIN)
          m.events.push({
            kind,
            participantId,
            flags: r.u8(),
            displayName: r.str(0, DISPLAY_NAME_MAX),
          });
        else m.events.push({ kind, participantId });
      }
      return m;
    }
    case MSG.KEYFRAME_REQUEST:
      return { type, participantId: r.pid(), streamId: r.u8() };
    case MSG.QUALITY: {
      const m = { type, participantId: r.pid(), intervalMs: r.u32(), rttUs: r.u32() };
      m.rttvarUs = r.u32();
      m.lossPermille = r.u16();
      if (m.lossPermille > QUALITY_LOSS_MAX) fail('malformed', 'loss above 1000');
      m.dropped = r.u32();
      m.estKbps = r.u32();
      // The receivers summary extension (§4.9); anything else is skipped.
      if (r.rest() >= 17 && body[r.pos] === QUALITY_EXT_SUMMARY) {
        r.u8();
        const s = { receivers: r.u32(), lossMedian: r.u16(), lossWorst: r.u16() };
        s.rttMedianUs = r.u32();
        s.rttWorstUs = r.u32();
        if (s.receivers >= 1 && s.lossMedian <= 1000 && s.lossWorst <= 1000) m.summary = s;
      }
      return m;
    }
    case MSG.ERROR:
      return { type, code: r.u32(), msgType: r.varint(), text: r.str(0, TEXT_MAX) };
    case MSG.GOAWAY:
      return { type, drainMs: r.u32(), reconnect: r.str(0, TEXT_MAX, true) };
    default: {
      const e = new ProtoError('unknown', `unknown message type ${type}`);
      e.msgType = type;
      throw e;
    }
  }
}

// Decodes a whole §3.2 frame that must fill buf exactly (a WebSocket
// control message after its tag, §11.2).
export function decodeFrameExact(buf) {
  const { value: bodyLen, len } = varintDecode(buf, 0);
  if (typeof bodyLen === 'bigint' || bodyLen > FRAME_MAX_BODY)
    fail('toobig', 'body_len above FRAME_MAX_BODY');
  if (bodyLen === 0) fail('malformed', 'body_len 0');
  if (buf.length - len !== bodyLen) fail('malformed', 'body_len does not match the message');
  return decodeBody(buf.subarray(len));
}

// §5: what the relay may send in each client state. 'hello' (HELLO sent),
// 'welcomed' (JOIN may be sent or pending), 'joined' (and after LEAVE:
// what was queued still comes). Unknown types never reach this check.
const RELAY_ALLOWED = {
  hello: [MSG.WELCOME, MSG.ERROR],
  welcomed: [MSG.JOINED, MSG.JOIN_REJECTED, MSG.ERROR, MSG.GOAWAY],
  joined: [MSG.PARTICIPANT_EVENTS, MSG.KEYFRAME_REQUEST, MSG.QUALITY, MSG.ERROR, MSG.GOAWAY],
};
export function relayMessageAllowed(state, type) {
  return RELAY_ALLOWED[state]?.includes(type) ?? false;
}

// ---------------------------------------------------------------- media

// The 12-byte client -> relay header followed by the payload, as one
// WebSocket message with the media tag: 0x02 | header | payload.
export function encodeMediaMessage(h, payload) {
  const flags = h.flags ?? 0;
  if ((flags & ~MEDIA_F_KNOWN) !== 0) fail('inval', 'unknown media flag');
  const p = payload ?? new Uint8Array(0);
  const out = new Uint8Array(1 + MEDIA_C2R_HDR_LEN + p.length);
  writeMediaC2R(out, 1, h);
  out[0] = WS_TAG_MEDIA;
  out.set(p, 1 + MEDIA_C2R_HDR_LEN);
  return out;
}

export function writeMediaC2R(out, off, h) {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[off] = MEDIA_HDR_VERSION << 6;
  out[off + 1] = h.streamId ?? 0;
  out[off + 2] = h.flags ?? 0;
  out[off + 3] = 0;
  dv.setUint32(off + 4, h.seq >>> 0);
  dv.setUint32(off + 8, h.timestamp >>> 0);
  return MEDIA_C2R_HDR_LEN;
}

// Parses a relay -> client media packet (§8.2; the WebSocket tag already
// removed). Returns { sender, streamId, flags, seq, timestamp, payload }.
// Throws 'trunc' (< 16 bytes), 'unknown' (header version), 'malformed'
// (sender 0): the caller drops the packet.
export function parseMediaR2C(buf) {
  if (buf.length < MEDIA_R2C_HDR_LEN) fail('trunc', 'media header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf[4] >> 6 !== MEDIA_HDR_VERSION) fail('unknown', 'media header version');
  const sender = dv.getUint32(0);
  if (sender === 0) fail('malformed', 'sender 0');
  return {
    sender,
    streamId: buf[5],
    flags: buf[6],
    seq: dv.getUint32(8),
    timestamp: dv.getUint32(12),
    payload: buf.subarray(MEDIA_R2C_HDR_LEN),
  };
}

// ------------------------------------------------------- WebSocket layer

// Splits one received binary WebSocket message (§11.2). Returns
// { kind: 'control', msg } or { kind: 'media', media } or
// { kind: 'ignore', why } for a message that is valid but not for us (an
// unknown control type, a media packet to drop). Throws ProtoError for a
// protocol violation (the caller closes with 4002).
export function parseWsMessage(data) {
  const buf = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (buf.length === 0) fail('malformed', 'empty message');
  const rest = buf.subarray(1);
  if (buf[0] === WS_TAG_CONTROL) {
    try {
      return { kind: 'control', msg: decodeFrameExact(rest) };
    } catch (e) {
      if (e instanceof ProtoError && e.code === 'unknown')
        return { kind: 'ignore', why: e.message };
      throw e;
    }
  }
  if (buf[0] === WS_TAG_MEDIA) {
    try {
      return { kind: 'media', media: parseMediaR2C(rest) };
    } catch (e) {
      if (e instanceof ProtoError) return { kind: 'ignore', why: e.message };
      throw e;
    }
  }
  fail('malformed', `unknown channel tag ${buf[0]}`);
}

// §11.4: roost code -> WebSocket close code and back.
export function closeCodeFor(code) {
  return code === ERR.NO_ERROR ? 1000 : 4000 + code;
}
export function codeFromClose(wsCode) {
  if (wsCode === 1000 || wsCode === 1001 || wsCode === 4000 || wsCode === 1005) return ERR.NO_ERROR;
  if (wsCode > 4000 && wsCode <= 4999) return wsCode - 4000;
  if (wsCode === 1002 || wsCode === 1007 || wsCode === 1009) return ERR.PROTOCOL_VIOLATION;
  return ERR.INTERNAL;
}

// Hex helpers for tests and logs.
export function toHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
export function fromHex(s) {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}
