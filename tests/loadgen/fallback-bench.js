// The HTTP fallback transport (server-sent events down, POST up) against WebSocket, one run
// (BENCHMARKS.md, "HTTP fallback vs WebSocket"); started by fallback-bench.sh.
//
//   fan-out  SUBS STOMP subscribers of one topic spread over PROCS worker processes, all on
//            one transport; a publisher on WebSocket sends RATE msgs/s for DURATION s with
//            its send time in the body. Deliveries/s, latency p50/p99, the gateway's CPU
//            per delivery (from /proc), the workers' CPU share.
//   idle     IDLE sessions per transport, STOMP-connected (HTTP: events stream open), no
//            subscription: the gateway's RSS growth per session.
'use strict';

const { fork } = require('child_process');
const fs = require('fs');
const WebSocket = require('ws');

const BASE = process.env.BASE || 'http://127.0.0.1:8787';
const PATH = process.env.SERVICE_PATH || '/ws';
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CONNECT = 'CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0';
const subscribeFrame = (dest) => `SUBSCRIBE\nid:s\ndestination:${dest}\n\n\0`;

/** MESSAGE bodies out of a STOMP byte stream (text only, NUL-terminated frames). */
function frameSplitter(onFrame) {
  let buf = '';
  return (text) => {
    buf += text;
    let end;
    while ((end = buf.indexOf('\0')) >= 0) {
      const raw = buf.slice(0, end).replace(/^\n+/, '');
      buf = buf.slice(end + 1);
      if (raw) onFrame(raw.slice(0, raw.indexOf('\n')), raw.slice(raw.indexOf('\n\n') + 2));
    }
  };
}

/** One STOMP session over WebSocket. */
function wsSession(onFrame) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(BASE.replace(/^http/, 'ws') + PATH, ['v12.stomp']);
    const feed = frameSplitter((cmd, body) => {
      if (cmd === 'CONNECTED') resolve({ send: (t) => ws.send(t), close: () => ws.terminate() });
      else onFrame(cmd, body);
    });
    ws.on('message', (d) => feed(d.toString()));
    ws.on('error', reject);
    ws.on('open', () => ws.send(CONNECT));
  });
}

/** One STOMP session over the HTTP fallback: POST to open, an SSE stream read with fetch
 * (reopened from the last id when the server rolls it over), POSTs for what we send. */
async function httpSession(onFrame) {
  const opened = await fetch(`${BASE}${PATH}/sessions?protocol=v12.stomp`, { method: 'POST' });
  if (opened.status !== 201) throw new Error(`open: ${opened.status} ${await opened.text()}`);
  const info = await opened.json();
  let lastId = 0;
  let upSeq = 1;
  let connected;
  const ready = new Promise((r) => (connected = r));
  const feed = frameSplitter((cmd, body) => (cmd === 'CONNECTED' ? connected() : onFrame(cmd, body)));
  let closed = false;
  const controller = new AbortController();
  (async () => {
    while (!closed) {
      const res = await fetch(`${BASE}${info.events}?last_event_id=${lastId}`, { signal: controller.signal });
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let pending = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += dec.decode(value, { stream: true });
        let cut;
        while ((cut = pending.indexOf('\n\n')) >= 0) {
          const event = pending.slice(0, cut);
          pending = pending.slice(cut + 2);
          let data = null;
          let kind = 'message';
          for (const line of event.split('\n')) {
            if (line.startsWith('id:')) lastId = +line.slice(3).trim();
            else if (line.startsWith('event:')) kind = line.slice(6).trim();
            else if (line.startsWith('data:')) {
              const d = line.slice(line[5] === ' ' ? 6 : 5);
              data = data === null ? d : data + '\n' + d;
            }
          }
          if (kind === 'close') { closed = true; return; }
          if (data !== null && kind === 'message') feed(data);
        }
      }
    }
  })().catch(() => {});
  const post = async (text) => {
    const seq = upSeq++;
    const r = await fetch(`${BASE}${info.messages}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ seq, ack: lastId, messages: [{ text }] }),
    });
    await r.arrayBuffer();
  };
  await post(CONNECT);
  await ready;
  return {
    send: post,
    close: () => { closed = true; controller.abort(); fetch(`${BASE}${info.messages.replace(/\/messages$/, '')}`, { method: 'DELETE' }).catch(() => {}); },
  };
}

const open = (transport, onFrame) => (transport === 'http' ? httpSession(onFrame) : wsSession(onFrame));

// --- worker -------------------------------------------------------------------------------
async function worker() {
  const transport = process.env.TRANSPORT;
  const n = +process.env.COUNT;
  const subscribe = process.env.ROLE === 'sub';
  let delivered = 0;
  let lat = [];
  const sessions = [];
  for (let i = 0; i < n; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 50); j++) {
      batch.push(open(transport, (cmd, body) => {
        if (cmd !== 'MESSAGE') return;
        delivered++;
        lat.push(now() - JSON.parse(body).t);
      }).then(async (s) => {
        if (subscribe) await s.send(subscribeFrame('/topic/fan.x'));
        sessions.push(s);
      }));
    }
    await Promise.all(batch);
  }
  let cpu0 = process.cpuUsage();
  process.send({ ready: sessions.length });
  process.on('message', (m) => {
    if (m === 'start') { delivered = 0; lat = []; cpu0 = process.cpuUsage(); }
    if (m === 'stats') {
      const c = process.cpuUsage(cpu0);
      process.send({ delivered, lat, cpuMs: (c.user + c.system) / 1000 });
    }
    if (m === 'exit') process.exit(0);
  });
}

// --- main ---------------------------------------------------------------------------------
const GW_PID = +process.env.GW_PID;
const cpuTicks = () => {
  const f = fs.readFileSync(`/proc/${GW_PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return +f[11] + +f[12];
};
const rssKiB = () => +fs.readFileSync(`/proc/${GW_PID}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1];
const CLK = +(process.env.CLK_TCK || 100);

function startWorkers(transport, total, procs, role) {
  const per = Math.ceil(total / procs);
  const ws = [];
  for (let i = 0; i < procs; i++) {
    const count = Math.min(per, total - i * per);
    if (count <= 0) break;
    ws.push(fork(__filename, ['worker'], { env: { ...process.env, TRANSPORT: transport, COUNT: String(count), ROLE: role } }));
  }
  const ready = Promise.all(ws.map((w) => new Promise((r, j) => {
    w.once('message', (m) => r(m.ready));
    w.once('exit', (code) => j(new Error(`worker exited ${code}`)));
  })));
  return { ws, ready };
}

const ask = (w) => new Promise((r) => { w.once('message', r); w.send('stats'); });
const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function fanOut(transport) {
  const SUBS = +(process.env.SUBS || 1000);
  const PROCS = +(process.env.PROCS || 4);
  const RATE = +(process.env.RATE || 100);
  const DURATION = +(process.env.DURATION || 10);
  const { ws, ready } = startWorkers(transport, SUBS, PROCS, 'sub');
  const counts = await ready;
  const pub = await wsSession(() => {});
  await sleep(1000);
  ws.forEach((w) => w.send('start'));
  const t0 = cpuTicks();
  const wall0 = now();
  let n = 0;
  const timer = setInterval(() => {
    const due = Math.floor(((now() - wall0) / 1000) * RATE) - n;
    for (let i = 0; i < due; i++) pub.send(`SEND\ndestination:/topic/fan.x\n\n{"t":${now()},"n":${n++}}\0`);
  }, 2);
  await sleep(DURATION * 1000);
  clearInterval(timer);
  await sleep(1000);
  const gwCpuMs = ((cpuTicks() - t0) * 1000) / CLK;
  const wall = now() - wall0;
  const stats = await Promise.all(ws.map(ask));
  const delivered = stats.reduce((a, s) => a + s.delivered, 0);
  const lat = stats.flatMap((s) => s.lat).sort((a, b) => a - b);
  const genCpu = stats.reduce((a, s) => a + s.cpuMs, 0);
  const expected = n * counts.reduce((a, b) => a + b, 0);
  console.log(`${transport.padEnd(9)} fan-out: ${counts.reduce((a, b) => a + b, 0)} subscribers, ${n} published at ${RATE}/s: ` +
    `${delivered}/${expected} delivered (${(delivered / (DURATION + 1)).toFixed(0)}/s), ` +
    `latency p50 ${pct(lat, 50).toFixed(2)} ms p99 ${pct(lat, 99).toFixed(2)} ms; ` +
    `gateway CPU ${((gwCpuMs * 1000) / Math.max(1, delivered)).toFixed(2)} µs/delivery; ` +
    `load generator ${((genCpu / wall) * 100).toFixed(0)}% of a core over ${ws.length} processes`);
  pub.close();
  ws.forEach((w) => w.send('exit'));
  await sleep(1500);
  return { delivered, gwCpuMs };
}

async function idle(transport) {
  const IDLE = +(process.env.IDLE || 1000);
  const before = rssKiB();
  const { ws, ready } = startWorkers(transport, IDLE, +(process.env.PROCS || 4), 'idle');
  const counts = await ready;
  await sleep(3000);
  const after = rssKiB();
  const n = counts.reduce((a, b) => a + b, 0);
  console.log(`${transport.padEnd(9)} idle: ${n} STOMP sessions, gateway RSS +${((after - before) / n).toFixed(1)} KiB/session`);
  ws.forEach((w) => w.send('exit'));
  await sleep(3000);
}

if (process.argv[2] === 'worker') {
  worker().catch((e) => { console.error('worker:', e.message); process.exit(1); });
} else {
  (async () => {
    const transports = (process.env.TRANSPORTS || 'websocket http').split(/\s+/);
    const parts = (process.env.PARTS || 'fanout idle').split(/\s+/);
    const out = {};
    if (parts.includes('fanout')) for (const t of transports) out[t] = await fanOut(t);
    if (out.websocket && out.http) {
      const per = (r) => r.gwCpuMs / r.delivered;
      console.log(`http/websocket gateway CPU per delivery: ${(per(out.http) / per(out.websocket)).toFixed(2)}x (goal ≤ 3x)`);
    }
    if (parts.includes('idle')) for (const t of transports) await idle(t);
    process.exit(0);
  })().catch((e) => { console.error(e); process.exit(1); });
}
