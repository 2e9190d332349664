// The roost web client: joins a room over the relay's WebSocket transport
// (docs/PROTOCOL.md §11), sends the microphone as Opus (WebCodecs
// AudioEncoder, 48 kHz mono, 20 ms frames) and plays every other
// participant through its own AudioDecoder and jitter buffer
// (worklet.js). No framework, no build step.
//
// URL query parameters prefill the form: room, name, token, relay (a ws://
// or wss:// URL; default: /ws on this page's host), processing=0 (no echo
// cancellation / noise suppression / gain control), autojoin=1.
//
// window.__roostStats is a live view of the session for tests and for the
// curious (docs/WEB.md).
import * as P from './proto.js';

const RATE = 48000;
const FRAME = 960; // 20 ms at 48 kHz
const FRAME_US = 20000;
const STREAM_AUDIO = 0;
const SEND_BUFFER_MAX = 64 * 1024; // WebSocket bytes queued before we drop our media
const SPEAKING_RMS = 0.02; // level above which a frame counts as speech
const SPEAKING_HOLD_MS = 350;
const LEAVE_WAIT_MS = 2000;
const ENCODE_QUEUE_MAX = 25; // frames waiting in the AudioEncoder (500 ms)

const $ = (id) => document.getElementById(id);

const stats = {
  state: 'idle', // idle | connecting | joining | joined | closed
  selfId: 0,
  room: '',
  name: '',
  permissions: 0,
  sentFrames: 0,
  sentBytes: 0,
  sendDropped: 0,
  micFrames: 0,
  encoderErrors: 0,
  decoderErrors: 0,
  encodeQueueMax: 0,
  encodeDropped: 0,
  close: null, // { wsCode, code, name, reason, byUs }
  errors: [], // ERROR / JOIN_REJECTED messages seen
  members: {}, // id -> per-participant view, see memberStats()
};
window.__roostStats = stats;

let sess = null; // the live session, see join()

// ------------------------------------------------------------- the form

function prefill() {
  const q = new URLSearchParams(location.search);
  $('room').value = q.get('room') ?? localStorage.getItem('roost.room') ?? 'demo';
  $('name').value = q.get('name') ?? localStorage.getItem('roost.name') ?? '';
  $('token').value = q.get('token') ?? '';
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  $('relay').value = q.get('relay') ?? `${scheme}://${location.host || '127.0.0.1:4443'}${P.WS_PATH}`;
  $('processing').checked = q.get('processing') !== '0';
  const missing = [];
  if (!('AudioEncoder' in window) || !('AudioDecoder' in window)) missing.push('WebCodecs audio');
  if (!('AudioWorkletNode' in window)) missing.push('AudioWorklet');
  if (!navigator.mediaDevices?.getUserMedia) missing.push('getUserMedia (needs https or localhost)');
  if (missing.length) {
    showFormError(`This browser lacks ${missing.join(', ')}. Try a recent Chrome, Edge or Firefox.`);
    $('join').disabled = true;
    return;
  }
  if (q.get('autojoin') === '1') join();
}

function showFormError(text) {
  const el = $('form-error');
  el.textContent = text;
  el.hidden = !text;
}

function setState(s, detail = '') {
  stats.state = s;
  const pill = $('status');
  pill.dataset.state = s;
  pill.textContent = detail || { idle: 'Not connected', connecting: 'Connecting…',
    joining: 'Joining…', joined: 'Connected', closed: 'Disconnected' }[s];
}

// ------------------------------------------------------------- session

async function join(ev) {
  ev?.preventDefault();
  if (sess) return;
  showFormError('');
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  const token = $('token').value.trim();
  const relay = $('relay').value.trim();
  const enc = new TextEncoder();
  if (!room || enc.encode(room).length > P.ROOM_ID_MAX) return showFormError('Room: 1 to 64 bytes.');
  if (enc.encode(name).length > P.DISPLAY_NAME_MAX) return showFormError('Name: at most 64 bytes.');
  if (!/^[\x20-\x7e]*$/.test(token) || token.length > P.JOIN_TOKEN_MAX)
    return showFormError('Token: printable ASCII, at most 1024 characters.');
  localStorage.setItem('roost.room', room);
  localStorage.setItem('roost.name', name);

  $('join').disabled = true;
  setState('connecting');
  const s = {
    room, name, token, relay,
    ws: null, ctx: null, mic: null, capture: null, encoder: null,
    phase: 'hello', seq: 0, samples: 0, tsQueue: [], muted: false, joined: false, leaving: false,
    peers: new Map(), // id -> peer (decoder, worklet node, stats)
    selfLevel: 0, selfSpokeAt: 0,
    uiTimer: 0,
  };
  sess = s;
  Object.assign(stats, { selfId: 0, room, name, permissions: 0, sentFrames: 0, sentBytes: 0,
    sendDropped: 0, micFrames: 0, encodeQueueMax: 0, encodeDropped: 0, close: null, errors: [], members: {}, ownLink: null, receivers: null });
  try {
    // The AudioContext first, inside the click: browsers let it start then.
    s.ctx = new AudioContext({ sampleRate: RATE, latencyHint: 'interactive' });
    await s.ctx.audioWorklet.addModule(new URL('./worklet.js', import.meta.url));
    const proc = $('processing').checked;
    s.mic = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        sampleRate: RATE,
        echoCancellation: proc,
        noiseSuppression: proc,
        autoGainControl: proc,
      },
    });
    if (sess !== s) return cleanup(s);
    await s.ctx.resume();
  } catch (e) {
    fail(s, `Microphone or audio: ${e.message || e}`);
    return;
  }
  connect(s);
}

function connect(s) {
  let ws;
  try {
    ws = new WebSocket(s.relay, P.WS_SUBPROTOCOL);
  } catch (e) {
    fail(s, `Relay URL: ${e.message}`);
    return;
  }
  ws.binaryType = 'arraybuffer';
  s.ws = ws;
  ws.onopen = () => {
    if (ws.protocol !== P.WS_SUBPROTOCOL) {
      ws.close(P.closeCodeFor(P.ERR.PROTOCOL_VIOLATION), 'subprotocol');
      return;
    }
    setState('joining');
    sendControl(s, { type: P.MSG.HELLO, minVersion: 1, maxVersion: 1,
      clientName: `roost-web/1 ${navigator.userAgent.match(/(Chrome|Firefox|Safari)\/[\d.]+/)?.[0] ?? ''}`.trim() });
  };
  ws.onmessage = (e) => onMessage(s, e.data);
  ws.onclose = (e) => onClosed(s, e);
  ws.onerror = () => {}; // onclose follows with the details
}

function sendControl(s, m) {
  if (s.ws?.readyState === WebSocket.OPEN) s.ws.send(P.encodeControlMessage(m));
}

function violation(s, why) {
  console.warn('roost: protocol violation:', why);
  s.ws.close(P.closeCodeFor(P.ERR.PROTOCOL_VIOLATION), String(why).slice(0, 100));
}

function onMessage(s, data) {
  if (typeof data === 'string') return violation(s, 'text message');
  let m;
  try {
    m = P.parseWsMessage(new Uint8Array(data));
  } catch (e) {
    return violation(s, e.message);
  }
  if (m.kind === 'media') return onMedia(s, m.media);
  if (m.kind === 'control') return onControl(s, m.msg);
}

function onControl(s, m) {
  if (!P.relayMessageAllowed(s.phase, m.type))
    return violation(s, `${P.msgTypeName(m.type)} not allowed in state ${s.phase}`);
  switch (m.type) {
    case P.MSG.WELCOME:
      s.phase = 'welcomed';
      stats.selfId = m.participantId;
      s.maxDatagram = m.maxDatagram;
      sendControl(s, { type: P.MSG.JOIN, roomId: s.room, token: s.token, displayName: s.name });
      break;
    case P.MSG.JOINED:
      s.phase = 'joined';
      s.joined = true;
      stats.permissions = m.permissions;
      for (const mb of m.members) addMember(s, mb.participantId, mb.displayName, mb.flags);
      setState('joined');
      showCall(s);
      startSending(s);
      break;
    case P.MSG.JOIN_REJECTED:
      stats.errors.push({ type: 'JOIN_REJECTED', code: m.code, name: P.errName(m.code), text: m.reason });
      fail(s, `Join refused: ${P.errName(m.code)}${m.reason ? ` (${m.reason})` : ''}`);
      break;
    case P.MSG.PARTICIPANT_EVENTS:
      for (const ev of m.events) {
        if (ev.kind === P.EV_JOIN) addMember(s, ev.participantId, ev.displayName, ev.flags);
        else removeMember(s, ev.participantId);
      }
      break;
    case P.MSG.QUALITY: {
      const q = { lossPermille: m.lossPermille, rttMs: m.rttUs / 1000, jitterMs: m.rttvarUs / 1000,
        dropped: m.dropped, estKbps: m.estKbps, summary: m.summary ?? null, at: performance.now() };
      if (m.participantId === stats.selfId) stats.ownLink = q;
      else if (m.summary) stats.receivers = q;
      else if (stats.members[m.participantId]) stats.members[m.participantId].quality = q;
      break;
    }
    case P.MSG.KEYFRAME_REQUEST:
      break; // audio frames are all independently decodable
    case P.MSG.ERROR:
      stats.errors.push({ type: 'ERROR', code: m.code, name: P.errName(m.code), text: m.text });
      toast(`Relay: ${P.errName(m.code)}${m.text ? ` — ${m.text}` : ''}`);
      break;
    case P.MSG.GOAWAY:
      toast('The relay is restarting; rejoin in a moment.');
      break;
    default:
      violation(s, `unexpected ${P.msgTypeName(m.type)}`);
  }
}

function onClosed(s, e) {
  const code = P.codeFromClose(e.code);
  stats.close = { wsCode: e.code, code, name: P.errName(code), reason: e.reason, byUs: s.leaving };
  if (sess !== s) return;
  if (s.leaving || code === P.ERR.NO_ERROR) {
    cleanup(s);
    showForm();
    setState('idle', 'Left the room');
    return;
  }
  const why = e.code === 1006 && !s.joined ? 'could not reach the relay' : `${P.errName(code)}${e.reason ? `: ${e.reason}` : ''}`;
  fail(s, `Disconnected (${why})`);
}

function fail(s, text) {
  if (sess !== s) return;
  cleanup(s);
  showForm();
  setState('closed');
  showFormError(text);
}

function cleanup(s) {
  if (sess === s) sess = null;
  clearInterval(s.uiTimer);
  try {
    if (s.encoder && s.encoder.state !== 'closed') s.encoder.close();
  } catch {}
  for (const p of s.peers.values()) closePeer(p);
  s.peers.clear();
  s.mic?.getTracks().forEach((t) => t.stop());
  s.capture?.disconnect();
  s.ctx?.close().catch(() => {});
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
  $('join').disabled = false;
}

async function leave() {
  const s = sess;
  if (!s || s.leaving) return;
  s.leaving = true;
  $('leave').disabled = true;
  stopSending(s);
  if (s.joined && s.ws.readyState === WebSocket.OPEN) {
    // LEAVE, then the relay closes with NO_ERROR; close ourselves if not.
    sendControl(s, { type: P.MSG.LEAVE });
    setTimeout(() => s.ws.readyState <= WebSocket.OPEN && s.ws.close(1000), LEAVE_WAIT_MS);
  } else {
    s.ws?.close(1000);
  }
}

// ------------------------------------------------------------- sending

function startSending(s) {
  if (!(stats.permissions & P.PERM_PUBLISH)) {
    toast('Your token lets you listen only.');
    return;
  }
  s.encoder = new AudioEncoder({
    output: (chunk) => sendChunk(s, chunk),
    error: (e) => {
      stats.encoderErrors++;
      console.warn('roost: encoder:', e);
    },
  });
  s.encoder.configure({
    codec: 'opus',
    sampleRate: RATE,
    numberOfChannels: 1,
    bitrate: 48000,
    opus: { frameDuration: FRAME_US, complexity: 5, usedtx: false },
  });
  const src = s.ctx.createMediaStreamSource(s.mic);
  s.capture = new AudioWorkletNode(s.ctx, 'roost-capture', {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    channelCount: 1,
    channelCountMode: 'explicit',
  });
  src.connect(s.capture);
  // Connected to the destination so that it is pulled; it outputs silence.
  s.capture.connect(s.ctx.destination);
  s.capture.port.onmessage = (e) => onMicFrame(s, e.data);
}

function stopSending(s) {
  if (s.capture) s.capture.port.onmessage = null;
  try {
    if (s.encoder && s.encoder.state === 'configured') s.encoder.close();
  } catch {}
}

function onMicFrame(s, { pcm, rms }) {
  stats.micFrames++;
  const now = performance.now();
  s.selfLevel = s.muted ? 0 : rms;
  if (!s.muted && rms > SPEAKING_RMS) s.selfSpokeAt = now;
  const ts = s.samples;
  s.samples += FRAME;
  if (s.muted || s.encoder?.state !== 'configured') return;
  // An encoder that falls behind (a starved CPU) drops frames instead of
  // sending them late; receivers hear a gap, not a growing delay.
  stats.encodeQueueMax = Math.max(stats.encodeQueueMax ?? 0, s.encoder.encodeQueueSize);
  if (s.encoder.encodeQueueSize >= ENCODE_QUEUE_MAX) {
    stats.encodeDropped = (stats.encodeDropped ?? 0) + 1;
    return;
  }
  // Chromium numbers the encoder's output by counting samples, whatever
  // the input said, so a dropped frame would shift every later timestamp:
  // the media timestamp of each chunk is taken from this queue instead
  // (one 20 ms input frame gives one output chunk).
  s.tsQueue.push(ts);
  const data = new AudioData({
    format: 'f32-planar',
    sampleRate: RATE,
    numberOfFrames: FRAME,
    numberOfChannels: 1,
    timestamp: Math.round((ts * 1e6) / RATE),
    data: pcm,
  });
  s.encoder.encode(data);
  data.close();
}

function sendChunk(s, chunk) {
  const queued = s.tsQueue.shift(); // this chunk's capture timestamp
  const ws = s.ws;
  if (!s.joined || s.leaving || ws.readyState !== WebSocket.OPEN) return;
  const payload = new Uint8Array(chunk.byteLength);
  chunk.copyTo(payload);
  if (P.MEDIA_C2R_HDR_LEN + payload.length > (s.maxDatagram ?? 1200)) {
    stats.sendDropped++;
    return;
  }
  // A congested socket: drop our own audio rather than queue it (§11.3).
  if (ws.bufferedAmount > SEND_BUFFER_MAX) {
    stats.sendDropped++;
    s.seq = (s.seq + 1) >>> 0; // a gap the receivers see as loss
    return;
  }
  const ts = (queued ?? Math.round((chunk.timestamp * RATE) / 1e6)) >>> 0;
  ws.send(P.encodeMediaMessage({ streamId: STREAM_AUDIO, flags: P.MEDIA_F_START | P.MEDIA_F_END,
    seq: s.seq, timestamp: ts }, payload));
  s.seq = (s.seq + 1) >>> 0;
  stats.sentFrames++;
  stats.sentBytes += payload.length;
}

function setMuted(s, muted) {
  s.muted = muted;
  s.mic?.getAudioTracks().forEach((t) => (t.enabled = !muted));
  const b = $('mute');
  b.setAttribute('aria-pressed', String(muted));
  b.querySelector('.label').textContent = muted ? 'Unmute' : 'Mute';
  b.setAttribute('aria-label', muted ? 'Unmute microphone' : 'Mute microphone');
  renderMembers(s);
}

// ----------------------------------------------------------- receiving

function memberStats(id, name, flags) {
  return { id, name, publisher: !!(flags & P.MEMBER_PUBLISHER), framesDecoded: 0, packets: 0,
    lost: 0, energy: 0, rmsMean: 0, level: 0, jitterMs: 0, quality: null, playout: null };
}

function addMember(s, id, name, flags) {
  const m = stats.members[id];
  if (m) {
    m.name = name;
    m.publisher = !!(flags & P.MEMBER_PUBLISHER);
  } else {
    stats.members[id] = memberStats(id, name, flags);
  }
  renderMembers(s);
}

function removeMember(s, id) {
  if (!stats.members[id]) return;
  delete stats.members[id];
  const p = s.peers.get(id);
  if (p) closePeer(p);
  s.peers.delete(id);
  renderMembers(s);
}

function peerFor(s, id) {
  let p = s.peers.get(id);
  if (p) return p;
  const node = new AudioWorkletNode(s.ctx, 'roost-playout', {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { targetMs: 60, maxTargetMs: 200 },
  });
  node.connect(s.ctx.destination);
  p = { id, node, decoder: null, lastSeq: -1, transit: null, jitter: 0, spokeAt: 0 };
  node.port.onmessage = (e) => {
    const m = stats.members[id];
    if (m && e.data.stats) m.playout = e.data.stats;
  };
  p.decoder = new AudioDecoder({
    output: (ad) => onDecoded(s, p, ad),
    error: (e) => {
      stats.decoderErrors++;
      console.warn('roost: decoder:', e);
      p.decoder = null; // a fresh decoder with the next packet
    },
  });
  p.decoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 1 });
  s.peers.set(id, p);
  return p;
}

function closePeer(p) {
  try {
    if (p.decoder && p.decoder.state !== 'closed') p.decoder.close();
  } catch {}
  p.node.port.onmessage = null;
  p.node.disconnect();
}

function onMedia(s, md) {
  // Media may come before its sender's JOIN event (§4.7): drop it then.
  const m = stats.members[md.sender];
  if (!m || md.streamId !== STREAM_AUDIO || (md.flags & P.MEDIA_F_VIDEO)) return;
  let p = s.peers.get(md.sender);
  if (p && !p.decoder) {
    closePeer(p);
    s.peers.delete(md.sender);
    p = null;
  }
  p = p ?? peerFor(s, md.sender);
  // Receive statistics: sequence gaps, RFC 3550 interarrival jitter.
  m.packets++;
  if (p.lastSeq >= 0) {
    const gap = (md.seq - p.lastSeq - 1) >>> 0;
    if (gap > 0 && gap < 1000) m.lost += gap;
  }
  p.lastSeq = md.seq;
  const transit = (performance.now() * RATE) / 1000 - md.timestamp;
  if (p.transit !== null) {
    const d = Math.abs(transit - p.transit);
    if (d < RATE * 10) p.jitter += (d - p.jitter) / 16;
  }
  p.transit = transit;
  m.jitterMs = (p.jitter * 1000) / RATE;
  if (md.payload.length === 0) return;
  p.decoder.decode(new EncodedAudioChunk({
    type: 'key',
    timestamp: Math.round((md.timestamp * 1e6) / RATE),
    data: md.payload,
  }));
}

function onDecoded(s, p, ad) {
  const n = ad.numberOfFrames;
  const pcm = new Float32Array(n);
  try {
    ad.copyTo(pcm, { planeIndex: 0, format: 'f32-planar' });
  } finally {
    ad.close();
  }
  let e = 0;
  for (let i = 0; i < n; i++) e += pcm[i] * pcm[i];
  const rms = Math.sqrt(e / n);
  const m = stats.members[p.id];
  if (m) {
    m.framesDecoded++;
    m.energy += e;
    m.rmsMean += (rms - m.rmsMean) / m.framesDecoded;
    m.level = rms;
    if (rms > SPEAKING_RMS) p.spokeAt = performance.now();
  }
  p.node.port.postMessage({ pcm }, [pcm.buffer]);
}

// ------------------------------------------------------------------ UI

function showCall(s) {
  $('join-view').hidden = true;
  $('call-view').hidden = false;
  $('room-title').textContent = s.room;
  $('leave').disabled = false;
  setMuted(s, false);
  renderMembers(s);
  s.uiTimer = setInterval(() => renderMembers(s), 150);
}

function showForm() {
  $('call-view').hidden = true;
  $('join-view').hidden = false;
}

function initials(name) {
  const w = name.trim().split(/\s+/).filter(Boolean);
  if (!w.length) return '?';
  return (w[0][0] + (w.length > 1 ? w[w.length - 1][0] : '')).toUpperCase();
}

function hue(id) {
  return (id * 137) % 360;
}

function fmtQuality(q, local) {
  const parts = [];
  if (local) {
    const total = local.packets + local.lost;
    parts.push(`rx loss ${total ? ((local.lost * 100) / total).toFixed(1) : '0.0'}%`);
    parts.push(`jitter ${local.jitterMs.toFixed(1)} ms`);
    if (local.playout) parts.push(`buffer ${local.playout.bufferedMs} ms`);
  }
  if (q) {
    parts.push(`link loss ${(q.lossPermille / 10).toFixed(1)}%`);
    parts.push(`rtt ${q.rttMs.toFixed(0)} ±${q.jitterMs.toFixed(0)} ms`);
  }
  return parts.join(' · ');
}

function selfMeta() {
  const parts = [fmtQuality(stats.ownLink, null) || 'Waiting for link statistics…'];
  const r = stats.receivers?.summary;
  if (r) parts.push(`${r.receivers} listening, worst loss ${(r.lossWorst / 10).toFixed(1)}%`);
  return parts.join(' · ');
}

function memberRow(key) {
  let li = document.querySelector(`#members li[data-key="${key}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.key = key;
    li.innerHTML = `<div class="avatar"><span></span></div>
      <div class="who"><div class="name"></div><div class="meta"></div></div>
      <div class="meter" aria-hidden="true"><i></i></div>`;
    $('members').appendChild(li);
  }
  return li;
}

function fillRow(li, { id, name, you, speaking, level, meta, muted, listener }) {
  li.classList.toggle('speaking', speaking);
  li.classList.toggle('muted', !!muted);
  const av = li.querySelector('.avatar');
  av.style.setProperty('--hue', hue(id));
  av.querySelector('span').textContent = initials(name);
  const nm = li.querySelector('.name');
  nm.textContent = name || `Participant ${id}`;
  if (you) nm.insertAdjacentHTML('beforeend', ' <em>(you)</em>');
  if (muted) nm.insertAdjacentHTML('beforeend', ' <b class="tag">muted</b>');
  if (listener) nm.insertAdjacentHTML('beforeend', ' <b class="tag">listener</b>');
  // One span per figure, so that a narrow screen wraps between them.
  const metaEl = li.querySelector('.meta');
  metaEl.replaceChildren(...meta.split(' · ').flatMap((part, i) => {
    const span = document.createElement('span');
    span.textContent = part;
    return i ? [' · ', span] : [span];
  }));
  const pct = Math.min(100, Math.round(Math.sqrt(level) * 220));
  li.querySelector('.meter i').style.width = `${pct}%`;
}

function renderMembers(s) {
  if (!s || sess !== s || !s.joined) return;
  const now = performance.now();
  const keep = new Set(['self']);
  fillRow(memberRow('self'), {
    id: stats.selfId,
    name: s.name || 'You',
    you: true,
    speaking: !s.muted && now - s.selfSpokeAt < SPEAKING_HOLD_MS,
    level: s.selfLevel,
    muted: s.muted,
    listener: !(stats.permissions & P.PERM_PUBLISH),
    meta: selfMeta(),
  });
  const ids = Object.keys(stats.members).map(Number).sort((a, b) => a - b);
  for (const id of ids) {
    const m = stats.members[id];
    const p = s.peers.get(id);
    keep.add(String(id));
    const fresh = p && now - p.spokeAt < SPEAKING_HOLD_MS;
    fillRow(memberRow(String(id)), {
      id,
      name: m.name,
      speaking: !!fresh,
      level: fresh ? m.level : 0,
      listener: !m.publisher,
      meta: m.packets || m.quality ? fmtQuality(m.quality, m) : m.publisher ? 'No audio yet' : 'Listening',
    });
  }
  for (const li of [...document.querySelectorAll('#members li')])
    if (!keep.has(li.dataset.key)) li.remove();
  $('count').textContent = `${ids.length + 1} in the room`;
  $('alone').hidden = ids.length > 0;
}

let toastTimer = 0;
function toast(text) {
  const el = $('toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 5000);
}

$('join-form').addEventListener('submit', join);
$('mute').addEventListener('click', () => sess && setMuted(sess, !sess.muted));
$('leave').addEventListener('click', leave);
window.addEventListener('pagehide', () => {
  if (sess?.joined) sendControl(sess, { type: P.MSG.LEAVE });
});
setState('idle');
prefill();
