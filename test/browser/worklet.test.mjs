// Unit test of the AudioWorklet processors (web/worklet.js) in node: the
// worklet globals are stubbed, the processors driven by hand in render
// quanta of 128 samples.
import { test } from 'node:test';
import assert from 'node:assert/strict';

const registered = {};
globalThis.sampleRate = 48000;
globalThis.AudioWorkletProcessor = class {
  constructor() {
    this.port = { sent: [], onmessage: null, postMessage(m) { this.sent.push(m); } };
  }
};
globalThis.registerProcessor = (name, cls) => (registered[name] = cls);
await import('../../web/worklet.js');

const Q = 128;
const FRAME = 960;
const frame = (v) => new Float32Array(FRAME).fill(v);
// Renders n quanta; returns the samples played.
function render(p, n) {
  const outs = [];
  for (let i = 0; i < n; i++) {
    const out = [[new Float32Array(Q)]];
    p.process([], out);
    outs.push(...out[0][0]);
  }
  return outs;
}
const ms = (n) => Math.ceil((n * 48) / Q); // quanta in n ms

test('capture: 20 ms frames with their level', () => {
  const c = new registered['roost-capture']();
  const input = new Float32Array(Q).fill(0.5);
  for (let i = 0; i < 15; i++) c.process([[input]], []);
  assert.equal(c.port.sent.length, 2); // 1920 samples
  assert.equal(c.port.sent[0].pcm.length, FRAME);
  assert.ok(Math.abs(c.port.sent[0].rms - 0.5) < 1e-6);
  c.process([[]], []); // no input: nothing
  assert.equal(c.port.sent.length, 2);
});

test('playout: silent until the target is buffered, then plays in order', () => {
  const p = new registered['roost-playout']({ processorOptions: { targetMs: 60 } });
  p.push(frame(0.1));
  p.push(frame(0.2));
  assert.ok(render(p, 4).every((v) => v === 0), '40 ms buffered: still silent');
  p.push(frame(0.3));
  const out = render(p, 15); // 1920 samples
  assert.equal(out[0], Math.fround(0.1));
  assert.equal(out[FRAME], Math.fround(0.2));
  assert.equal(p.underruns, 0);
});

test('playout: late audio is an underrun and grows the target', () => {
  const p = new registered['roost-playout']({ processorOptions: { targetMs: 60, maxTargetMs: 100 } });
  for (let i = 0; i < 3; i++) p.push(frame(0.1));
  render(p, ms(60) + 2); // plays out and runs dry
  assert.equal(p.playing, false);
  render(p, ms(40));
  p.push(frame(0.1)); // 40 ms later: late
  assert.equal(p.underruns, 1);
  assert.equal(p.target, 4 * FRAME);
  // Grows up to maxTarget (100 ms = 5 frames) only.
  for (let k = 0; k < 3; k++) {
    for (let i = 0; i < 5; i++) p.push(frame(0.1));
    render(p, ms(120) + 2);
    p.push(frame(0.1));
  }
  assert.equal(p.target, 5 * FRAME);
});

test('playout: a long gap is a pause, not an underrun', () => {
  const p = new registered['roost-playout']({ processorOptions: { targetMs: 60 } });
  for (let i = 0; i < 3; i++) p.push(frame(0.1));
  render(p, ms(60) + 2);
  render(p, ms(500));
  p.push(frame(0.1));
  assert.equal(p.underruns, 0);
  assert.equal(p.pauses, 1);
  assert.equal(p.target, 3 * FRAME);
});

test('playout: too much queued drops the oldest audio down to the target', () => {
  const p = new registered['roost-playout']({ processorOptions: { targetMs: 60 } });
  for (let i = 0; i < 8; i++) p.push(frame(i / 10)); // 160 ms: not above 60 + 100
  assert.equal(p.dropped, 0);
  p.push(frame(0.8)); // 180 ms
  assert.equal(p.buffered, 3 * FRAME);
  assert.equal(p.dropped, 6 * FRAME);
  const out = render(p, 1);
  assert.equal(out[0], Math.fround(0.6)); // frames 0..5 dropped
});

test('playout: the target shrinks back after 10 s without an underrun', () => {
  const p = new registered['roost-playout']({ processorOptions: { targetMs: 60 } });
  for (let i = 0; i < 3; i++) p.push(frame(0.1));
  render(p, ms(60) + 2);
  render(p, 2);
  p.push(frame(0.1)); // late: target 80 ms
  assert.equal(p.target, 4 * FRAME);
  // 10.5 s of steady audio, one frame per 20 ms.
  for (let t = 0; t < 525; t++) {
    p.push(frame(0.1));
    render(p, t % 2 ? 8 : 7); // 7.5 quanta = 20 ms
  }
  assert.equal(p.target, 3 * FRAME);
  assert.equal(p.underruns, 1);
});

test('playout: posts its statistics twice a second', () => {
  const p = new registered['roost-playout']({ processorOptions: {} });
  render(p, ms(1000) + 2);
  const st = p.port.sent.filter((m) => m.stats);
  assert.equal(st.length, 2);
  assert.deepEqual(Object.keys(st[0].stats).sort(),
    ['bufferedMs', 'droppedMs', 'pauses', 'playedMs', 'targetMs', 'underruns']);
});
