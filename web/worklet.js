// AudioWorklet processors of the roost page (loaded with
// audioWorklet.addModule). Both run on the audio rendering thread and talk
// to app.js through their MessagePort only.
//
// roost-capture: gathers the microphone's input into 20 ms frames (960
//   samples at 48 kHz) and posts each as { pcm: Float32Array, rms }.
// roost-playout: the jitter buffer of one sender. app.js posts decoded
//   frames ({ pcm }); the processor starts playing once `target` ms are
//   buffered and plays silence and re-buffers when it runs dry. Running
//   dry is an underrun only if audio comes back within 100 ms (late
//   audio: the target grows by one frame, up to maxTarget); a longer gap
//   is the sender pausing (muted, silence suppression) and changes
//   nothing. After 10 s without an underrun the target shrinks by one
//   frame, down to its initial value. More than target + 100 ms queued
//   (a sender whose clock runs fast, a burst after a stall): the oldest
//   audio is dropped down to the target. Twice a second it posts its
//   state ({ stats: { bufferedMs, targetMs, underruns, pauses,
//   droppedMs, playedMs } }).

const FRAME = 960;

class RoostCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new Float32Array(FRAME);
    this.fill = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true; // no input connected yet
    let i = 0;
    while (i < ch.length) {
      const n = Math.min(ch.length - i, FRAME - this.fill);
      this.buf.set(ch.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill === FRAME) {
        let e = 0;
        for (let k = 0; k < FRAME; k++) e += this.buf[k] * this.buf[k];
        const pcm = this.buf;
        this.port.postMessage({ pcm, rms: Math.sqrt(e / FRAME) }, [pcm.buffer]);
        this.buf = new Float32Array(FRAME);
        this.fill = 0;
      }
    }
    return true;
  }
}

class RoostPlayout extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.rate = sampleRate;
    const ms = (v) => Math.round((v * this.rate) / 1000);
    this.minTarget = ms(o.targetMs ?? 60);
    this.target = this.minTarget;
    this.maxTarget = ms(o.maxTargetMs ?? 200);
    this.slack = ms(100);
    this.lateWindow = ms(100); // dry this long, then audio: an underrun
    this.decayAfter = ms(10000); // stable this long: shrink the target
    this.queue = []; // Float32Array chunks
    this.head = 0; // read offset into queue[0]
    this.buffered = 0; // samples queued
    this.playing = false;
    this.dryAt = -1; // this.clock when it ran dry, -1: not dry
    this.clock = 0; // samples rendered
    this.stableSince = 0;
    this.underruns = 0;
    this.pauses = 0;
    this.dropped = 0;
    this.played = 0;
    this.sinceReport = 0;
    this.port.onmessage = (ev) => this.push(ev.data.pcm);
  }

  push(pcm) {
    if (!pcm || pcm.length === 0) return;
    if (this.dryAt >= 0) {
      if (this.clock - this.dryAt <= this.lateWindow) {
        this.underruns++;
        this.target = Math.min(this.maxTarget, this.target + FRAME);
      } else {
        this.pauses++;
      }
      this.dryAt = -1;
      this.stableSince = this.clock;
    }
    this.queue.push(pcm);
    this.buffered += pcm.length;
    // Too much queued: drop the oldest audio down to the target.
    if (this.buffered > this.target + this.slack) this.skip(this.buffered - this.target);
  }

  skip(n) {
    this.dropped += n;
    while (n > 0 && this.queue.length > 0) {
      const left = this.queue[0].length - this.head;
      if (left <= n) {
        n -= left;
        this.buffered -= left;
        this.queue.shift();
        this.head = 0;
      } else {
        this.head += n;
        this.buffered -= n;
        n = 0;
      }
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const need = out.length;
    if (!this.playing && this.buffered >= this.target) this.playing = true;
    let o = 0;
    if (this.playing) {
      while (o < need && this.queue.length > 0) {
        const c = this.queue[0];
        const n = Math.min(need - o, c.length - this.head);
        out.set(c.subarray(this.head, this.head + n), o);
        o += n;
        this.head += n;
        this.buffered -= n;
        if (this.head === c.length) {
          this.queue.shift();
          this.head = 0;
        }
      }
      if (o < need) {
        // Dry: silence for the rest, buffer up again; push() decides
        // whether it was late audio or a pause.
        this.playing = false;
        this.dryAt = this.clock + o;
      }
    }
    if (this.playing && this.clock - this.stableSince >= this.decayAfter) {
      this.stableSince = this.clock;
      this.target = Math.max(this.minTarget, this.target - FRAME);
    }
    this.clock += need;
    for (let k = o; k < need; k++) out[k] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.played += o;
    this.sinceReport += need;
    if (this.sinceReport >= this.rate / 2) {
      this.sinceReport = 0;
      const ms = (n) => Math.round((n * 1000) / this.rate);
      this.port.postMessage({
        stats: {
          bufferedMs: ms(this.buffered),
          targetMs: ms(this.target),
          underruns: this.underruns,
          pauses: this.pauses,
          droppedMs: ms(this.dropped),
          playedMs: ms(this.played),
        },
      });
    }
    return true;
  }
}

registerProcessor('roost-capture', RoostCapture);
registerProcessor('roost-playout', RoostPlayout);
