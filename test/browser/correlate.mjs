// How well a recording matches its source, after alignment: the normalised
// cross-correlation at the best lag. The source is taken as looping (a
// fake microphone plays its file over and over), so the recording may
// start anywhere in it and wrap.
//
// Coarse search over every lag by FFT at 4 kHz (12:1 box decimation), then
// the exact lag at 48 kHz within ±2 ms of it. Also reports the correlation
// of each 1 s block aligned on its own (median), which tolerates a capture
// glitch that shifts the rest of the recording.
//
// CLI: node correlate.mjs REC.wav SRC.wav [skip_s] [len_s] -> JSON on stdout.
import { existsSync, readFileSync } from 'node:fs';

export function readWav(path) {
  const b = readFileSync(path);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE')
    throw new Error(`${path}: not a WAV file`);
  let off = 12;
  let fmt = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const len = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ')
      fmt = { format: b.readUInt16LE(body), channels: b.readUInt16LE(body + 2),
        rate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
    if (id === 'data') {
      if (!fmt || fmt.format !== 1 || fmt.bits !== 16 || fmt.channels !== 1)
        throw new Error(`${path}: want 16-bit mono PCM`);
      const n = Math.floor(Math.min(len, b.length - body) / 2);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = b.readInt16LE(body + 2 * i) / 32768;
      return { rate: fmt.rate, pcm: out };
    }
    off = body + len + (len & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

function fft(re, im, inverse) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = ((inverse ? 2 : -2) * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k;
        const b = a + len / 2;
        const xr = re[b] * cr - im[b] * ci;
        const xi = re[b] * ci + im[b] * cr;
        re[b] = re[a] - xr;
        im[b] = im[a] - xi;
        re[a] += xr;
        im[a] += xi;
        const t = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = t;
      }
    }
  }
}

function decimate(x, f) {
  const out = new Float64Array(Math.floor(x.length / f));
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let k = 0; k < f; k++) s += x[i * f + k];
    out[i] = s / f;
  }
  return out;
}

// Normalised correlation of rec[0..n) with the looping src from lag, over
// the samples mask marks as received (no mask: all of them).
function ncc(rec, src, lag, n, mask = null) {
  let xy = 0;
  let xx = 0;
  let yy = 0;
  const L = src.length;
  let j = ((lag % L) + L) % L;
  for (let i = 0; i < n; i++) {
    if (!mask || mask[i]) {
      const x = rec[i];
      const y = src[j];
      xy += x * y;
      xx += x * x;
      yy += y * y;
    }
    if (++j === L) j = 0;
  }
  return xx > 0 && yy > 0 ? xy / Math.sqrt(xx * yy) : 0;
}

function decimateMask(m, f) {
  const out = new Uint8Array(Math.floor(m.length / f));
  for (let i = 0; i < out.length; i++) out[i] = m[i * f] && m[i * f + f - 1] ? 1 : 0;
  return out;
}

// A mask of the samples the recorder placed, from its FILE.frames list
// ("offset samples" per line), for a recording of len samples.
export function readFramesMask(path, len) {
  const mask = new Uint8Array(len);
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const [off, n] = line.split(' ').map(Number);
    if (Number.isFinite(off) && Number.isFinite(n)) mask.fill(1, off, Math.min(len, off + n));
  }
  return mask;
}

// Best lag of rec (a window) in the looping src: coarse by FFT, then fine.
function bestLag(rec, src, mask, decim = 12) {
  const r = decimate(rec, decim);
  const s = decimate(src, decim);
  let n = 1;
  while (n < s.length + r.length) n <<= 1;
  const sr = new Float64Array(n);
  const si = new Float64Array(n);
  for (let i = 0; i < n; i++) sr[i] = s[i % s.length]; // looping source
  const rr = new Float64Array(n);
  const ri = new Float64Array(n);
  rr.set(r);
  fft(sr, si, false);
  fft(rr, ri, false);
  // corr[k] = sum r[i] s[i + k]: IFFT(S * conj(R)).
  for (let i = 0; i < n; i++) {
    const a = sr[i] * rr[i] + si[i] * ri[i];
    const b = si[i] * rr[i] - sr[i] * ri[i];
    sr[i] = a;
    si[i] = b;
  }
  fft(sr, si, true);
  let best = 0;
  for (let k = 1; k < s.length; k++) if (sr[k] > sr[best]) best = k;
  let lag = best * decim;
  let c = -2;
  for (let d = -2 * decim; d <= 2 * decim; d++) {
    const v = ncc(rec, src, lag + d, rec.length, mask);
    if (v > c) {
      c = v;
      best = lag + d;
    }
  }
  lag = ((best % src.length) + src.length) % src.length;
  return { lag, corr: c };
}

function rms(x) {
  let e = 0;
  for (const v of x) e += v * v;
  return Math.sqrt(e / Math.max(1, x.length));
}

// rec, src: Float32Array at the same rate. skip / len in samples. mask
// (optional, as long as rec): 1 where the recorder placed a received
// frame; gaps (frames never sent or received) are left out of every sum,
// and coverage says how much of the window they leave.
export function correlate(rec, src, rate, skip, len, mask = null) {
  const end = Math.min(rec.length, skip + len);
  const win = rec.subarray(skip, end);
  const wmask = mask ? mask.subarray(skip, end) : null;
  let covered = win.length;
  if (wmask) covered = wmask.reduce((a, v) => a + v, 0);
  const coverage = win.length ? covered / win.length : 0;
  if (win.length < rate || covered < rate / 2)
    return { corr: 0, lagMs: 0, blockMedian: 0, blocks: 0, blockShiftsMs: [], seconds: win.length / rate, coverage };
  const { lag, corr } = bestLag(win, src, wmask);
  const blocks = [];
  const shifts = []; // each block's own lag minus the global one, ms
  const D = 12;
  const srcD = decimate(src, D);
  for (let o = 0; o + rate <= win.length; o += rate) {
    const blk = win.subarray(o, o + rate);
    const bm = wmask ? wmask.subarray(o, o + rate) : null;
    if (bm && bm.reduce((a, v) => a + v, 0) < rate / 2) continue; // mostly a gap
    if (rms(blk) < 0.003) continue; // a pause: nothing to compare
    // The block's own best lag within ±100 ms of the global one: on the
    // 4 kHz grid first, then exact at the full rate.
    const blkD = decimate(blk, D);
    const bmD = bm ? decimateMask(bm, D) : null;
    const base = Math.round((lag + o) / D);
    let bd = 0;
    let b = -2;
    for (let d = -Math.round((0.1 * rate) / D); d <= Math.round((0.1 * rate) / D); d++) {
      const v = ncc(blkD, srcD, base + d, blkD.length, bmD);
      if (v > b) [b, bd] = [v, d];
    }
    const c0 = (base + bd) * D;
    b = -2;
    let fine = c0;
    for (let d = c0 - D; d <= c0 + D; d++) {
      const v = ncc(blk, src, d, blk.length, bm);
      if (v > b) [b, fine] = [v, d];
    }
    blocks.push(b);
    shifts.push(Math.round(((fine - lag - o) * 1000) / rate));
  }
  blocks.sort((a, b) => a - b);
  return {
    corr,
    lagMs: (lag * 1000) / rate,
    blockMedian: blocks.length ? blocks[Math.floor(blocks.length / 2)] : 0,
    blocks: blocks.length,
    blockShiftsMs: shifts,
    seconds: win.length / rate,
    coverage,
    recRms: rms(win),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [recPath, srcPath, skipS = '0.5', lenS = '8'] = process.argv.slice(2);
  const rec = readWav(recPath);
  const src = readWav(srcPath);
  const mask = existsSync(`${recPath}.frames`) ? readFramesMask(`${recPath}.frames`, rec.pcm.length) : null;
  const r = correlate(rec.pcm, src.pcm, rec.rate, Math.round(+skipS * rec.rate), Math.round(+lenS * rec.rate), mask);
  console.log(JSON.stringify(r));
}
