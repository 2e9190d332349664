// The browser test (make test-browser; docs/WEB.md): the page in a real
// headless Chromium and a native participant (test/browser/peer.c, QUIC)
// in one room of a relay that serves the page and speaks WebSocket.
//
//   - Chromium's fake microphone plays the speech WAV; the native side
//     records what the browser sends; it must correlate with the source
//     after alignment (>= ROOST_BROWSER_MIN_CORR, default 0.9).
//   - The native side sends the same WAV; the page must report decoded
//     frames from it, with speech energy (window.__roostStats).
//   - The page's participant list must show the native participant's name.
//   - Screenshots (desktop and phone-sized) go to the output directory
//     ($ROOST_BUILD/test/browser/out), with the recording, the logs and
//     results.json.
//
// TAP on stdout. Every wait is for a condition, with a deadline; the whole
// run takes about 25 s on an idle machine. Environment: ROOST_BUILD (build), CHROMIUM
// (chromium), ROOST_BROWSER_SECONDS (audio to record, default 8).
import { spawn, execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync, createWriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Browser } from './cdp.mjs';
import { correlate, readFramesMask, readWav } from './correlate.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const build = path.resolve(root, process.env.ROOST_BUILD ?? 'build');
const out = path.join(build, 'test/browser/out');
const wav = path.resolve(root, process.env.ROOST_BROWSER_WAV ?? '../shared/audio/speech-48k-mono.wav');
const seconds = Number(process.env.ROOST_BROWSER_SECONDS ?? 8);
const minCorr = Number(process.env.ROOST_BROWSER_MIN_CORR ?? 0.9);
const chromium = process.env.CHROMIUM ?? 'chromium';
// ROOST_BROWSER_TLS=1: https:// and wss:// with the dev certificate (as
// make run serves them; Chromium told to accept it) instead of plain ws://.
const tls = process.env.ROOST_BROWSER_TLS === '1';
const ROOM = 'browser-test';
const NATIVE = 'native-peer';
const WEBNAME = 'Browser Tester';

let n = 0;
let failed = 0;
const T0 = Date.now();
const ok = (cond, what, extra = '') => {
  n++;
  if (!cond) failed++;
  const t = `[${((Date.now() - T0) / 1000).toFixed(1)} s]`;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what} # ${extra ? `${extra} ` : ''}${t}`);
  return cond;
};
const note = (s) => console.log(`# ${s}`);

const procs = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'roost-browser-'));
let browser = null;

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.on('exit', r)) : null)));
  rmSync(tmp, { recursive: true, force: true });
}

function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.on('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Runs a program, logging its output to out/<name>.log; returns
// { proc, lines(): all lines so far, waitLine(re, ms) }.
function start(name, exe, args, opts = {}) {
  const proc = spawn(exe, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  procs.push(proc);
  const log = createWriteStream(path.join(out, `${name}.log`));
  const lines = [];
  const waiters = new Set();
  const feed = (d) => {
    log.write(d);
    for (const l of d.split('\n').filter(Boolean)) {
      lines.push(l);
      for (const w of waiters) if (w.re.test(l)) w.done(l);
    }
  };
  proc.stdout.setEncoding('utf8').on('data', feed);
  proc.stderr.setEncoding('utf8').on('data', feed);
  const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    lines,
    exited,
    waitLine(re, ms, what) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { re };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`${name}: timed out after ${ms} ms waiting for ${what}`));
        }, ms);
        w.done = (l) => {
          clearTimeout(t);
          waiters.delete(w);
          resolve(l);
        };
        waiters.add(w);
        exited.then((code) => {
          if (!waiters.has(w)) return;
          clearTimeout(t);
          waiters.delete(w);
          reject(new Error(`${name} exited (${code}) before ${what}`));
        });
      });
    },
  };
}

async function main() {
  mkdirSync(out, { recursive: true });
  for (const f of ['screenshot.png', 'screenshot-phone.png', 'native-recorded.wav', 'native-recorded.wav.frames', 'results.json'])
    rmSync(path.join(out, f), { force: true });
  const bins = ['roost-relay', 'roost-cli', 'test/browser/peer'].map((b) => path.join(build, b));
  for (const b of bins) if (!existsSync(b)) throw new Error(`${b} missing: run make first`);
  const [relayBin, cli, peerBin] = bins;

  // Chromium first (its start-up is the slowest step on a loaded
  // machine), with a fake microphone playing the WAV.
  const prof = path.join(tmp, 'profile');
  const args = [
    '--headless=new', `--user-data-dir=${prof}`, '--no-first-run', '--no-default-browser-check',
    '--disable-gpu', '--disable-extensions', '--mute-audio',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`, '--autoplay-policy=no-user-gesture-required',
    '--window-size=1100,760', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-default-apps', '--no-service-autorun', '--password-store=basic',
    '--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider',
  ];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  if (tls) args.push('--ignore-certificate-errors');
  const blog = createWriteStream(path.join(out, 'chromium.log'));
  browser = Browser.launch(chromium, args, (l) => blog.write(`${l}\n`));

  // A relay with a dev certificate (QUIC) and plain ws:// on loopback.
  const state = path.join(tmp, 'state');
  execFileSync(path.join(root, 'scripts/dev-cert'), [state], { stdio: 'ignore' });
  execFileSync(cli, ['keygen', '--out', path.join(state, 'token.keys')], { stdio: 'ignore' });
  const token = (id) =>
    execFileSync(cli, ['token', '--key-file', path.join(state, 'token.keys'), '--room', ROOM,
      '--identity', id, '--ttl', '10m'], { encoding: 'utf8' }).trim();
  const quicPort = await freeUdpPort();
  const relay = start('relay', relayBin, ['--listen', '127.0.0.1', '--port', String(quicPort),
    '--workers', '2', '--cert', path.join(state, 'server.pem'), '--key', path.join(state, 'server.key'),
    '--token-keys', path.join(state, 'token.keys'), '--admin-port', '0',
    '--ws-listen', '127.0.0.1:0', ...(tls ? [] : ['--ws-plain']), '--web-root', path.join(root, 'web')]);
  const wsLine = await relay.waitLine(/event=ws_listen/, 30000, 'the WebSocket listener');
  const wsPort = Number(wsLine.match(/url=wss?:\/\/127\.0\.0\.1:(\d+)/)?.[1]);
  ok(wsPort > 0, `relay serves ${tls ? 'wss' : 'ws'}:// on loopback`, `port ${wsPort}`);

  // The native participant: sends the WAV, records the browser.
  const rec = path.join(out, 'native-recorded.wav');
  const peer = start('native', peerBin, ['--relay', `127.0.0.1:${quicPort}`, '--ca',
    path.join(state, 'ca.pem'), '--room', ROOM, '--token', token('native'), '--name', NATIVE,
    '--send', wav, '--record', rec, '--record-from', WEBNAME]);
  await peer.waitLine(/^joined \d+/, 15000, 'the native participant to join');
  note(`native participant joined [${((Date.now() - T0) / 1000).toFixed(1)} s]`);

  const page = await browser.newPage();
  const console_ = createWriteStream(path.join(out, 'console.log'));
  page.on((method, p) => {
    if (method === 'Runtime.consoleAPICalled')
      console_.write(`${p.type}: ${p.args.map((a) => a.value ?? a.description).join(' ')}\n`);
    if (method === 'Runtime.exceptionThrown')
      console_.write(`exception: ${p.exceptionDetails.exception?.description ?? p.exceptionDetails.text}\n`);
  });
  await page.send('Runtime.enable');
  await page.send('Page.enable');
  const version = await browser.send('Browser.getVersion');
  note(`${version.product}`);
  const q = new URLSearchParams({ room: ROOM, name: WEBNAME, token: token('web'), processing: '0' });
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${wsPort}/?${q}`;
  await page.send('Page.navigate', { url });
  await page.waitFor(`document.readyState === 'complete' && !!document.getElementById('join')`, 15000,
    'the page to load');
  ok(true, 'relay serves the page at /');

  // A token the relay refuses: the page says why and stays usable.
  await page.eval(`document.getElementById('token').value = 'v1.bogus.token'`);
  await page.eval(`document.getElementById('join').click()`, true);
  await page.waitFor(`window.__roostStats.state === 'closed'`, 15000, 'the refused join');
  const refused = await page.eval(`document.getElementById('form-error').textContent`);
  ok(/BAD_TOKEN/.test(refused), 'a refused join is shown on the form', refused);
  await page.eval(`document.getElementById('token').value = new URLSearchParams(location.search).get('token')`);

  // Join with a click (a user gesture, as a person would).
  await page.eval(`document.getElementById('join').click()`, true);
  await page.waitFor(`window.__roostStats.state === 'joined' || window.__roostStats.state === 'closed'`,
    15000, 'the page to join');
  const st = await page.eval('window.__roostStats');
  if (!ok(st.state === 'joined', 'the page joins the room', `state ${st.state}`)) {
    note(`page: ${JSON.stringify(st)}; form error: ${await page.eval(`document.getElementById('form-error').textContent`)}`);
    throw new Error('the page did not join');
  }

  // Presence, both ways.
  const nativeId = await page.waitFor(
    `Object.values(window.__roostStats.members).find((m) => m.name === ${JSON.stringify(NATIVE)})?.id`,
    10000, 'the native participant in the page');
  await page.waitFor(`document.getElementById('members').innerText.includes(${JSON.stringify(NATIVE)})`,
    5000, 'the name in the participant list');
  ok(true, 'the participant list shows the native participant', `id ${nativeId}`);
  await peer.waitLine(new RegExp(`^present \\d+ ${WEBNAME}$`), 10000, 'the browser in the native presence');
  ok(true, 'the native participant sees the browser join');

  // Media both ways: wait for `seconds` of audio from the browser to the
  // native side and for the page to decode as much from the native side.
  await peer.waitLine(/^media \d+/, 15000, 'media from the browser');
  const frames = Math.round(seconds * 50);
  const t0 = Date.now();
  await page.waitFor(`(() => { const s = window.__roostStats, m = s.members[${nativeId}];
      return s.sentFrames >= ${frames + 75} && m && m.framesDecoded >= ${frames}; })()`,
  seconds * 1000 + 20000, `${seconds} s of audio each way`);
  note(`audio both ways after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  // Screenshots: the window as a desktop shows it, then phone-sized.
  await page.eval(`new Promise((r) => requestAnimationFrame(() => setTimeout(r, 200)))`);
  const shot = async (file) => {
    const { data } = await page.send('Page.captureScreenshot', { format: 'png' });
    writeFileSync(path.join(out, file), Buffer.from(data, 'base64'));
  };
  await shot('screenshot.png');
  await page.send('Emulation.setDeviceMetricsOverride', { width: 390, height: 844, deviceScaleFactor: 2, mobile: true });
  await page.eval(`new Promise((r) => requestAnimationFrame(() => setTimeout(r, 300)))`);
  await shot('screenshot-phone.png');
  await page.send('Emulation.clearDeviceMetricsOverride');
  ok(true, 'screenshots written', path.join(out, 'screenshot.png'));

  const stats = await page.eval('window.__roostStats');
  const m = stats.members[nativeId];
  ok(m.framesDecoded >= frames, 'the page decodes the native participant', `${m.framesDecoded} frames`);
  ok(m.rmsMean > 0.01, 'the decoded audio carries speech energy', `mean RMS ${m.rmsMean.toFixed(4)}`);
  ok(stats.encoderErrors === 0 && stats.decoderErrors === 0, 'no WebCodecs errors',
    `encoder ${stats.encoderErrors}, decoder ${stats.decoderErrors}`);
  ok(m.playout && m.playout.playedMs > 0, 'the jitter buffer plays the native participant',
    m.playout ? `played ${m.playout.playedMs} ms, buffer ${m.playout.bufferedMs} ms, underruns ${m.playout.underruns}` : 'no playout stats');

  // Mute stops the browser's media (once the frames already in the
  // encoder are out: on a loaded machine that can be a backlog); unmute
  // resumes it.
  await page.eval(`document.getElementById('mute').click()`, true);
  const settled = await page.waitFor(`new Promise((r) => {
      const a = window.__roostStats.sentFrames;
      setTimeout(() => r(window.__roostStats.sentFrames === a ? a : 0), 500);
    })`, 10000, 'sending to stop after mute').catch(() => 0);
  ok(settled > 0, 'mute stops sending', `no frame sent for 500 ms after ${settled} frames`);
  await page.eval(`document.getElementById('mute').click()`, true);
  await page.waitFor(`window.__roostStats.sentFrames > ${settled}`, 10000, 'sending to resume after unmute')
    .catch(() => 0);
  ok((await page.eval('window.__roostStats.sentFrames')) > settled, 'unmute resumes sending');

  // Stop the native side: it leaves and writes its recording.
  peer.proc.stdin.write('stop\n');
  const recLine = await peer.waitLine(/^recorded \d+/, 10000, 'the recording');
  const peerCode = await peer.exited;
  ok(peerCode === 0, 'the native participant leaves cleanly', `exit ${peerCode}`);
  await page.waitFor(`!Object.values(window.__roostStats.members).some((m) => m.name === ${JSON.stringify(NATIVE)})`,
    10000, 'the native participant to leave the page list');
  ok(true, 'the page sees the native participant leave');

  // Leave from the page.
  await page.eval(`document.getElementById('leave').click()`, true);
  await page.waitFor(`window.__roostStats.close !== null`, 10000, 'the page to leave');
  const close = await page.eval('window.__roostStats.close');
  ok(close.code === 0 && close.byUs, 'Leave ends the session with NO_ERROR',
    `close ${close.wsCode} ${close.name}`);

  // The recording against the source.
  const r = readWav(rec);
  const src = readWav(wav);
  const recSeconds = r.pcm.length / r.rate;
  const mask = readFramesMask(`${rec}.frames`, r.pcm.length);
  const res = correlate(r.pcm, src.pcm, r.rate, Math.round(0.5 * r.rate), Math.round(seconds * r.rate), mask);
  note(`native recorded ${recLine.split(' ')[1]} frames, ${recSeconds.toFixed(1)} s`);
  note(`correlation ${res.corr.toFixed(4)} over ${res.seconds.toFixed(1)} s (${(res.coverage * 100).toFixed(1)} % of it received) at lag ${res.lagMs.toFixed(1)} ms; ` +
    `per-second median ${res.blockMedian.toFixed(4)} (${res.blocks} blocks)`);
  // One alignment for the whole window, unless Chromium's capture skipped
  // (its blocks align at different lags: a starved machine makes the fake
  // microphone drop audio); then each second is aligned on its own.
  const shifts = res.blockShiftsMs;
  const skipped = shifts.length > 1 && Math.max(...shifts) - Math.min(...shifts) > 5;
  if (skipped) note(`the browser's capture skipped: per-second lags ${shifts.join(' ')} ms`);
  const figure = skipped ? res.blockMedian : res.corr;
  ok(figure >= minCorr, `browser audio correlates with its source (>= ${minCorr})`,
    `${figure.toFixed(4)}${skipped ? ' per-second median (capture skipped)' : ' after alignment'}`);

  const results = {
    chromium: version.product,
    correlation: res,
    recordedSeconds: recSeconds,
    page: { framesDecoded: m.framesDecoded, rmsMean: m.rmsMean, energy: m.energy,
      jitterMs: m.jitterMs, playout: m.playout, sentFrames: stats.sentFrames, sendDropped: stats.sendDropped,
      micFrames: stats.micFrames, encodeQueueMax: stats.encodeQueueMax, encodeDropped: stats.encodeDropped,
      ownLink: stats.ownLink ?? null },
    close,
  };
  writeFileSync(path.join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  relay.proc.kill('SIGTERM');
  const relayCode = await relay.exited;
  ok(relayCode === 0, 'the relay exits cleanly', `exit ${relayCode}`);
}

const PLAN = 18;
console.log(`1..${PLAN}`);
const watchdog = setTimeout(() => {
  console.log('# watchdog: the test took over 180 s');
  cleanup().finally(() => process.exit(1));
}, 180000);
try {
  await main();
} catch (e) {
  ok(false, `the run completed`, e.message);
  note(`logs in ${out}`);
}
clearTimeout(watchdog);
await cleanup();
while (n < PLAN) ok(false, 'not reached');
process.exit(failed ? 1 : 0);
