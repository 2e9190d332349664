// A minimal Chrome DevTools Protocol client over --remote-debugging-pipe
// (no npm packages): Chromium reads commands on its fd 3 and writes
// answers and events on its fd 4, each a JSON text ended by a NUL byte.
import { spawn } from 'node:child_process';

export class Browser {
  // Starts Chromium with args (plus the pipe flag). log(line) gets its
  // stderr.
  static launch(exe, args, log = () => {}) {
    const child = spawn(exe, ['--remote-debugging-pipe', ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    });
    return new Browser(child, log);
  }

  constructor(child, log) {
    this.child = child;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
    this.exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
    this.exited.then(({ code, sig }) => {
      for (const { reject } of this.pending.values())
        reject(new Error(`chromium exited (${sig ?? code})`));
      this.pending.clear();
    });
    child.on('error', (e) => log(`spawn: ${e.message}`));
    for (const s of [child.stdout, child.stderr])
      s.setEncoding('utf8').on('data', (d) => d.split('\n').filter(Boolean).forEach(log));
    let buf = '';
    child.stdio[4].setEncoding('utf8').on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\0')) >= 0) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.dispatch(JSON.parse(text));
      }
    });
    child.stdio[3].on('error', () => {});
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
      return;
    }
    for (const l of this.listeners) l(msg);
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.child.stdio[3].write(JSON.stringify(msg) + '\0');
    });
  }

  on(fn) {
    this.listeners.add(fn);
  }

  // A new page; returns a Page bound to its flat session.
  async newPage() {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    return new Page(this, sessionId);
  }

  async close() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send('Browser.close').catch(() => {});
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(t);
  }
}

export class Page {
  constructor(browser, sessionId) {
    this.b = browser;
    this.sid = sessionId;
  }

  send(method, params = {}) {
    return this.b.send(method, params, this.sid);
  }

  // Calls fn(method, params) for this page's events.
  on(fn) {
    this.b.on((m) => m.sessionId === this.sid && fn(m.method, m.params));
  }

  // Evaluates an expression (awaiting a promise) and returns its value.
  async eval(expr, userGesture = false) {
    const r = await this.send('Runtime.evaluate', {
      expression: expr,
      returnByValue: true,
      awaitPromise: true,
      userGesture,
    });
    if (r.exceptionDetails)
      throw new Error(`page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }

  // Polls expr every 100 ms until it is truthy; returns its value. Throws
  // after timeoutMs with what = a description of the wait.
  async waitFor(expr, timeoutMs, what) {
    const end = Date.now() + timeoutMs;
    let last;
    for (;;) {
      last = await this.eval(expr);
      if (last) return last;
      if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
