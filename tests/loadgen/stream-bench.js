// Snapshot and resume figures for BENCHMARKS.md (run by stream-bench.sh, which starts the
// gateway): STOMP over WebSocket with the `ws` package, side by side in one run.
//
//   snapshot  SYMBOLS symbols on /topic/bench.S<n>, each re-published every TICK_MS. A new
//             subscriber to /topic/bench.* is timed from SUBSCRIBE until its table holds
//             every symbol: with `snapshot:true`, and without (waiting for the ticks, the
//             way a dashboard filled before).
//   resume    RATE msgs/s on /topic/bench.R (a counter in the body). A subscriber drops its
//             socket for GAP_MS, reconnects and subscribes again: with `resume:<last
//             position>`, and without. Counts the messages it never got and times the
//             catch-up (reconnect start to the first live message after the missed ones).
'use strict';

const WebSocket = require('ws');

const URL = process.env.URL || 'ws://127.0.0.1:8686/ws';
const SYMBOLS = +(process.env.SYMBOLS || 1000);
const TICK_MS = +(process.env.TICK_MS || 1000);
const ROUNDS = +(process.env.ROUNDS || 20);
const RATE = +(process.env.RATE || 100);
const GAP_MS = +(process.env.GAP_MS || 5000);
const PARTS = (process.env.PARTS || 'snapshot resume').split(/\s+/);

/** A STOMP 1.2 session: frames in order, text bodies only. */
class Stomp {
  static open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(URL, ['v12.stomp']);
      const s = new Stomp(ws);
      ws.on('error', reject);
      ws.on('open', () => {
        s.send('CONNECT', { 'accept-version': '1.2', host: 'localhost', 'heart-beat': '0,0' });
        s.waitFor((f) => f.command === 'CONNECTED').then(() => resolve(s), reject);
      });
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.buf = '';
    this.waiters = [];
    this.onFrame = () => {};
    ws.on('message', (data) => this.data(data.toString()));
  }

  data(text) {
    this.buf += text;
    let end;
    while ((end = this.buf.indexOf('\0')) >= 0) {
      const raw = this.buf.slice(0, end).replace(/^\n+/, '');
      this.buf = this.buf.slice(end + 1);
      if (!raw) continue;
      const split = raw.indexOf('\n\n');
      const lines = raw.slice(0, split).split('\n');
      const headers = {};
      for (const l of lines.slice(1)) {
        const c = l.indexOf(':');
        if (!(l.slice(0, c) in headers)) headers[l.slice(0, c)] = l.slice(c + 1);
      }
      const f = { command: lines[0], headers, body: raw.slice(split + 2) };
      this.onFrame(f);
      this.waiters = this.waiters.filter((w) => !w(f));
    }
  }

  waitFor(pred) {
    return new Promise((resolve) => this.waiters.push((f) => (pred(f) ? (resolve(f), true) : false)));
  }

  send(command, headers, body = '') {
    let out = command + '\n';
    for (const [k, v] of Object.entries(headers)) out += `${k}:${v}\n`;
    this.ws.send(out + '\n' + body + '\0');
  }

  close() {
    this.ws.terminate();
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fmt = (xs) => `p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;

async function snapshotPart() {
  const pub = await Stomp.open();
  // Every symbol once, then each again every TICK_MS, spread evenly.
  for (let n = 0; n < SYMBOLS; n++) pub.send('SEND', { destination: `/topic/bench.S${n}` }, `{"px":${n}}`);
  const every = TICK_MS / SYMBOLS;
  let next = 0;
  const ticker = setInterval(() => {
    const due = Math.max(1, Math.round(10 / every));
    for (let i = 0; i < due; i++) {
      pub.send('SEND', { destination: `/topic/bench.S${next}` }, `{"px":${next}}`);
      next = (next + 1) % SYMBOLS;
    }
  }, 10);
  await sleep(500);
  const results = {};
  for (const snapshot of [true, false]) {
    const times = [];
    for (let r = 0; r < ROUNDS; r++) {
      const c = await Stomp.open();
      const seen = new Set();
      const t0 = process.hrtime.bigint();
      const full = new Promise((resolve) => {
        c.onFrame = (f) => {
          if (f.command !== 'MESSAGE') return;
          seen.add(f.headers.destination);
          if (seen.size === SYMBOLS) resolve(Number(process.hrtime.bigint() - t0) / 1e6);
        };
      });
      const headers = { id: 's', destination: '/topic/bench.*' };
      if (snapshot) headers.snapshot = 'true';
      c.send('SUBSCRIBE', headers);
      times.push(await full);
      c.close();
    }
    results[snapshot] = times;
    console.log(`snapshot ${snapshot ? 'on ' : 'off'}: table of ${SYMBOLS} symbols full after ${fmt(times)}, first (cold) ${times[0].toFixed(1)} ms (${ROUNDS} subscribers, symbols tick every ${TICK_MS} ms)`);
  }
  clearInterval(ticker);
  pub.close();
  return results;
}

async function resumePart() {
  const pub = await Stomp.open();
  let counter = 0;
  const ticker = setInterval(() => {
    pub.send('SEND', { destination: '/topic/bench.R' }, String(++counter));
  }, 1000 / RATE);
  for (const resume of [true, false]) {
    const got = new Set();
    let last = null;
    const c = await Stomp.open();
    c.onFrame = (f) => {
      if (f.command !== 'MESSAGE') return;
      got.add(+f.body);
      last = f.headers.position;
    };
    c.send('SUBSCRIBE', { id: 's', destination: '/topic/bench.R' });
    await sleep(1000);
    const firstSeen = Math.min(...got);
    c.close();
    await sleep(GAP_MS);
    const missedWhileAway = counter - Math.max(...got);
    const t0 = process.hrtime.bigint();
    const again = await Stomp.open();
    const backAt = counter;
    let caughtUp = null;
    again.onFrame = (f) => {
      if (f.command !== 'MESSAGE') return;
      got.add(+f.body);
      if (caughtUp === null && f.headers.resumed === undefined && +f.body > backAt) {
        caughtUp = Number(process.hrtime.bigint() - t0) / 1e6;
      }
    };
    const headers = { id: 's', destination: '/topic/bench.R' };
    if (resume) headers.resume = last;
    again.send('SUBSCRIBE', headers);
    await sleep(1500);
    const upTo = Math.max(...got);
    let missing = 0;
    for (let n = firstSeen; n <= upTo; n++) if (!got.has(n)) missing++;
    again.close();
    console.log(`resume ${resume ? 'on ' : 'off'}: ${missedWhileAway} published during a ${GAP_MS} ms disconnect at ${RATE}/s; never received: ${missing}; reconnect to caught up live: ${caughtUp === null ? 'n/a' : caughtUp.toFixed(1) + ' ms'}`);
  }
  clearInterval(ticker);
  pub.close();
}

(async () => {
  if (PARTS.includes('snapshot')) await snapshotPart();
  if (PARTS.includes('resume')) await resumePart();
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
