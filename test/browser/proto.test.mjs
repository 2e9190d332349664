// Unit test of web/proto.js (node --test). The reference bytes come from
// lib/proto through the vectors program (test/browser/vectors.c): each
// vector is decoded by proto.js and compared with its fields, and the
// fields are encoded by proto.js and compared with the C bytes. The
// examples of PROTOCOL.md §10 and §11.2 are checked as written there.
//
// ROOST_BUILD (default build) names the build directory holding
// test/browser/vectors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as P from '../../web/proto.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const build = process.env.ROOST_BUILD ?? 'build';
const vectorsBin = path.resolve(root, build, 'test/browser/vectors');
const vectors = JSON.parse(execFileSync(vectorsBin, { encoding: 'utf8' }));

test('vectors program produced every message type', () => {
  const types = new Set(vectors.filter((v) => v.kind === 'frame').map((v) => v.fields.type));
  for (const t of Object.values(P.MSG)) assert.ok(types.has(t), `no vector for type ${t}`);
});

for (const v of vectors.filter((x) => x.kind === 'frame')) {
  test(`C ${v.name}: proto.js decodes it`, () => {
    const got = P.decodeFrameExact(P.fromHex(v.hex));
    assert.deepEqual(got, v.fields);
  });
  test(`C ${v.name}: proto.js encodes the same bytes`, () => {
    assert.equal(P.toHex(P.encodeFrame(v.fields)), v.hex);
  });
  test(`C ${v.name}: as a WebSocket control message`, () => {
    const msg = P.encodeControlMessage(v.fields);
    assert.equal(msg[0], P.WS_TAG_CONTROL);
    assert.equal(P.toHex(msg.subarray(1)), v.hex);
    const parsed = P.parseWsMessage(msg);
    assert.equal(parsed.kind, 'control');
    assert.deepEqual(parsed.msg, v.fields);
  });
}

test('C media_c2r: proto.js writes the same header', () => {
  const v = vectors.find((x) => x.name === 'media_c2r');
  const f = v.fields;
  const msg = P.encodeMediaMessage(f, P.fromHex(f.payload));
  assert.equal(msg[0], P.WS_TAG_MEDIA);
  assert.equal(P.toHex(msg.subarray(1)), v.hex);
});

test('C media_r2c: proto.js parses it', () => {
  const v = vectors.find((x) => x.name === 'media_r2c');
  const bytes = P.fromHex(v.hex);
  const ws = new Uint8Array(bytes.length + 1);
  ws[0] = P.WS_TAG_MEDIA;
  ws.set(bytes, 1);
  const got = P.parseWsMessage(ws);
  assert.equal(got.kind, 'media');
  const { payload, ...hdr } = got.media;
  const { payload: want, ...wantHdr } = v.fields;
  assert.deepEqual(hdr, wantHdr);
  assert.equal(P.toHex(payload), want);
});

test('PROTOCOL.md §10 and §11.2 examples', () => {
  const hello = { type: P.MSG.HELLO, minVersion: 1, maxVersion: 1, clientName: 'cli/1' };
  assert.equal(P.toHex(P.encodeControlMessage(hello)), '010b010001000105636c692f31');
  assert.equal(P.toHex(P.encodeControlMessage({ type: P.MSG.LEAVE })), '010106');
  const m = P.parseMediaR2C(P.fromHex('0000000740010f000000002a00015f90'));
  assert.deepEqual(
    { sender: m.sender, streamId: m.streamId, flags: m.flags, seq: m.seq, ts: m.timestamp },
    { sender: 7, streamId: 1, flags: 0x0f, seq: 42, ts: 90000 },
  );
});

test('varints: shortest form written, longer forms accepted', () => {
  const cases = [
    [0, '00'],
    [63, '3f'],
    [64, '4040'],
    [16383, '7fff'],
    [16384, '80004000'],
    [1073741823, 'bfffffff'],
    [1073741824, 'c000000040000000'],
  ];
  for (const [v, h] of cases) {
    assert.equal(P.toHex(P.varintEncode(v)), h);
    assert.deepEqual(P.varintDecode(P.fromHex(h)), { value: v, len: h.length / 2 });
  }
  assert.deepEqual(P.varintDecode(P.fromHex('4006')), { value: 6, len: 2 });
  assert.equal(P.varintDecode(P.fromHex('ffffffffffffffff')).value, 2n ** 62n - 1n);
  assert.throws(() => P.varintDecode(P.fromHex('40')), { code: 'trunc' });
  assert.throws(() => P.varintEncode(2n ** 62n), { code: 'inval' });
});

test('control framing rules of §11.2', () => {
  const leave = P.fromHex('0106');
  assert.throws(() => P.parseWsMessage(P.fromHex('0100')), { code: 'malformed' }); // body_len 0
  assert.throws(() => P.parseWsMessage(P.fromHex('010206')), { code: 'malformed' }); // short
  assert.throws(() => P.parseWsMessage(P.fromHex('01010606')), { code: 'malformed' }); // long
  assert.throws(() => P.parseWsMessage(P.fromHex('0101060106')), { code: 'malformed' }); // two
  assert.throws(() => P.parseWsMessage(P.fromHex('0180004001')), { code: 'toobig' });
  assert.throws(() => P.parseWsMessage(new Uint8Array(0)), { code: 'malformed' });
  assert.throws(() => P.parseWsMessage(P.fromHex('030106')), { code: 'malformed' }); // tag
  assert.deepEqual(P.decodeFrameExact(leave), { type: P.MSG.LEAVE });
  // Unknown and grease types are ignored, not violations (§7).
  assert.equal(P.parseWsMessage(P.fromHex('010321aabb')).kind, 'ignore');
  assert.equal(P.parseWsMessage(P.fromHex('01024040')).kind, 'ignore');
  // Type 0 is malformed.
  assert.throws(() => P.parseWsMessage(P.fromHex('010100')), { code: 'malformed' });
  // Trailing bytes after a known message are ignored (§3.2).
  assert.deepEqual(P.parseWsMessage(P.fromHex('01020699')).msg, { type: P.MSG.LEAVE });
});

test('decoder limits and values', () => {
  const body = (h) => P.decodeBody(P.fromHex(h));
  // WELCOME with participant id 0.
  assert.throws(() => body('02' + '0001' + '00000000' + '00000000' + '04b0' + '00' + '00000001' + '00'), {
    code: 'malformed',
  });
  // JOINED with an empty room id.
  assert.throws(() => body('04' + '00' + '03' + '00' + '00000000' + '00'), { code: 'malformed' });
  // JOINED with a member count above 200.
  assert.throws(() => body('04' + '0161' + '03' + '00' + '00000000' + '40c9'), { code: 'toobig' });
  // Event kind 3.
  assert.throws(() => body('07' + '00' + '01' + '03' + '00000001'), { code: 'malformed' });
  // A display name with bad UTF-8, and with a NUL.
  assert.throws(() => body('07' + '00' + '01' + '01' + '00000001' + '00' + '01c0'), { code: 'malformed' });
  assert.throws(() => body('07' + '00' + '01' + '01' + '00000001' + '00' + '0100'), { code: 'malformed' });
  // A name above 64 bytes is rejected before its bytes are read.
  assert.throws(() => body('07' + '00' + '01' + '01' + '00000001' + '00' + '4041'), { code: 'toobig' });
  // QUALITY loss above 1000.
  assert.throws(() => body('09' + '00000001' + '000003e8' + '00000000' + '00000000' + '03e9' + '00000000' + '00000000'), {
    code: 'malformed',
  });
  // A truncated body.
  assert.throws(() => body('0b' + '0000'), { code: 'trunc' });
});

test('encoder refuses what the decoder would reject', () => {
  assert.throws(() => P.encodeBody({ type: P.MSG.JOIN, roomId: '', token: '', displayName: '' }), {
    code: 'inval',
  });
  assert.throws(() => P.encodeBody({ type: P.MSG.JOIN, roomId: 'r', token: 'é', displayName: '' }), {
    code: 'inval',
  });
  assert.throws(
    () => P.encodeBody({ type: P.MSG.JOIN, roomId: 'r'.repeat(65), token: '', displayName: '' }),
    { code: 'toobig' },
  );
  assert.throws(() => P.encodeBody({ type: P.MSG.KEYFRAME_REQUEST, participantId: 0, streamId: 0 }), {
    code: 'inval',
  });
  assert.throws(() => P.encodeMediaMessage({ flags: 0x10, seq: 0, timestamp: 0 }), { code: 'inval' });
});

test('media packets to drop are ignored, not violations', () => {
  assert.equal(P.parseWsMessage(P.fromHex('02' + '00000007' + '40')).kind, 'ignore'); // short
  assert.equal(
    P.parseWsMessage(P.fromHex('02' + '00000007' + '80000300' + '00000001' + '00000002')).kind,
    'ignore',
  ); // version 2
  assert.equal(
    P.parseWsMessage(P.fromHex('02' + '00000000' + '40000300' + '00000001' + '00000002')).kind,
    'ignore',
  ); // sender 0
});

test('close codes of §11.4', () => {
  assert.equal(P.closeCodeFor(P.ERR.NO_ERROR), 1000);
  assert.equal(P.closeCodeFor(P.ERR.TOO_SLOW), 4011);
  assert.equal(P.codeFromClose(1000), 0);
  assert.equal(P.codeFromClose(4000), 0);
  assert.equal(P.codeFromClose(1005), 0);
  assert.equal(P.codeFromClose(4013), P.ERR.REPLACED);
  assert.equal(P.codeFromClose(1002), P.ERR.PROTOCOL_VIOLATION);
  assert.equal(P.codeFromClose(1006), P.ERR.INTERNAL);
  assert.equal(P.errName(0x0d), 'REPLACED');
});

test('what the relay may send in each state (§5)', () => {
  const M = P.MSG;
  assert.ok(P.relayMessageAllowed('hello', M.WELCOME));
  assert.ok(!P.relayMessageAllowed('hello', M.JOINED));
  assert.ok(P.relayMessageAllowed('welcomed', M.JOINED));
  assert.ok(P.relayMessageAllowed('welcomed', M.JOIN_REJECTED));
  assert.ok(!P.relayMessageAllowed('welcomed', M.WELCOME)); // a second WELCOME
  assert.ok(!P.relayMessageAllowed('welcomed', M.QUALITY));
  assert.ok(P.relayMessageAllowed('joined', M.PARTICIPANT_EVENTS));
  assert.ok(P.relayMessageAllowed('joined', M.QUALITY));
  assert.ok(!P.relayMessageAllowed('joined', M.JOINED)); // a second JOINED
  // Client-to-relay types never come from the relay.
  for (const st of ['hello', 'welcomed', 'joined'])
    for (const t of [M.HELLO, M.JOIN, M.LEAVE]) assert.ok(!P.relayMessageAllowed(st, t));
});
