// How long the clients of a killed gateway take to be subscribed again on the others, for
// BENCHMARKS.md (run by cluster-bench.sh, which starts the gateways): CLIENTS sessions of the
// client library (gateway/static/gateway-client.mjs, StompSession with its default backoff)
// spread over PROCESSES Node processes, each with the failover list [victim, the others in
// turn], all subscribed to TOPIC through the victim. Then the victim gets SIGKILL and every
// session is timed until its re-SUBSCRIBE's RECEIPT on a survivor; a message published
// afterwards must reach every one of them.
//
// Env: VICTIM_URL, VICTIM_PID, OTHER_URLS (comma-separated), OTHER_PIDS (the survivors, for
// their CPU), CLIENTS (5000), PROCESSES (2),
// TOPIC (/topic/failover-bench), OPEN_RATE (new sessions per second per process, 500),
// LIMIT_S (60: give up waiting after this).
'use strict';

const { fork } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const CLIENT_MODULE = path.join(__dirname, '..', '..', 'gateway', 'static', 'gateway-client.mjs');
const CLIENTS = +(process.env.CLIENTS || 5000);
const PROCESSES = +(process.env.PROCESSES || 2);
const TOPIC = process.env.TOPIC || '/topic/failover-bench';
const OPEN_RATE = +(process.env.OPEN_RATE || 500);
const LIMIT_S = +(process.env.LIMIT_S || 60);
const VICTIM_URL = process.env.VICTIM_URL;
const OTHER_URLS = (process.env.OTHER_URLS || '').split(',').filter(Boolean);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const load = () => import(pathToFileURL(CLIENT_MODULE).href);

function cpuSeconds(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch (_) {
    return 0;
  }
}

async function child() {
  const WebSocket = require('ws');
  const { StompSession } = await load();
  const share = +process.env.SHARE;
  const index = +process.env.INDEX;
  const sessions = [];
  let subscribed = 0;
  const again = []; // ms since the epoch at which each session was subscribed again
  const closed = []; // ... saw its connection drop
  const reopened = []; // ... had a new connection open (before CONNECT and SUBSCRIBE)
  let probes = 0;
  let killedAt = null;
  const timeline = [];
  for (let i = 0; i < share; i++) {
    // Half the victim's clients prefer one survivor next, half the other.
    const n = index * share + i;
    const others = OTHER_URLS.map((_, j) => OTHER_URLS[(n + j) % OTHER_URLS.length]);
    const s = new StompSession({ urls: [VICTIM_URL, ...others], WebSocket, heartBeat: [0, 0], keepalive: 0 });
    let first = true;
    s.on('subscribed', () => {
      if (first) { first = false; subscribed++; return; }
      again.push(Date.now());
    });
    s.subscribe(TOPIC, (m) => { if (m.body === 'probe') probes++; });
    s.connection.on('close', () => closed.push(Date.now()));
    if (n === 0) {
      // One session's path through the failover, for the report.
      const log = (what) => (x) => killedAt && timeline.push(`${Date.now() - killedAt} ms ${what} ${x.transport || ''} ${x.url || ''} ${x.reason || ''}`.trim());
      s.connection.on('attempt', log('attempt'));
      s.connection.on('failure', log('failed'));
      s.connection.on('open', log('open'));
    }
    s.connection.on('open', (info) => { if (info.reconnects > 0) reopened.push(Date.now()); });
    sessions.push(s);
    if (i % Math.max(1, Math.round(OPEN_RATE / 20)) === 0) await sleep(50);
  }
  const report = () => process.send({ subscribed, again: again.length, probes });
  const timer = setInterval(report, 250);
  process.on('message', (m) => {
    if (m.killedAt) killedAt = m.killedAt;
    if (m.done) {
      clearInterval(timer);
      const since = (list) => list.map((t) => t - killedAt);
      process.send({ done: true, times: since(again), closed: since(closed), reopened: since(reopened), probes, timeline });
      setTimeout(() => process.exit(0), 100);
    }
  });
}

async function parent() {
  const WebSocket = require('ws');
  const { StompSession } = await load();
  const share = Math.ceil(CLIENTS / PROCESSES);
  const kids = [];
  const state = [];
  for (let k = 0; k < PROCESSES; k++) {
    const c = fork(__filename, [], { env: { ...process.env, ROLE: 'child', SHARE: String(share), INDEX: String(k) } });
    state[k] = { subscribed: 0, again: 0, probes: 0 };
    c.on('message', (m) => { if (!m.done) state[k] = m; });
    kids.push(c);
  }
  const total = share * PROCESSES;
  const sum = (key) => state.reduce((a, s) => a + s[key], 0);
  const until = async (pred, what) => {
    const deadline = Date.now() + LIMIT_S * 1000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
      await sleep(50);
    }
  };
  await until(() => sum('subscribed') === total, `${total} subscriptions (have ${sum('subscribed')})`);
  console.log(`${total} sessions in ${PROCESSES} processes subscribed to ${TOPIC} through ${VICTIM_URL}`);
  await sleep(5500); // past the client's `stable` spell: a drop is a fresh start, not a failure

  const pids = [process.pid, ...kids.map((c) => c.pid)];
  const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const others = (process.env.OTHER_PIDS || '').split(',').filter(Boolean).map(Number);
  const others0 = others.reduce((a, p) => a + cpuSeconds(p), 0);
  const killedAt = Date.now();
  process.kill(+process.env.VICTIM_PID, 'SIGKILL');
  for (const c of kids) c.send({ killedAt });
  let resubscribedMs = null;
  try {
    await until(() => sum('again') === total, `every session subscribed again (have ${sum('again')})`);
    resubscribedMs = Date.now() - killedAt;
  } catch (e) {
    console.log(e.message);
  }
  const wall = (Date.now() - killedAt) / 1000;
  const cpu1 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const others1 = others.reduce((a, p) => a + cpuSeconds(p), 0);

  // Every session is back: one message must reach all of them.
  const probe = new StompSession({ urls: OTHER_URLS, WebSocket, heartBeat: [0, 0], keepalive: 0 });
  await probe.next('connected');
  await probe.send(TOPIC, 'probe');
  try { await until(() => sum('probes') === total, 'the probe everywhere'); } catch (e) { console.log(e.message); }

  const times = [];
  const closed = [];
  const reopened = [];
  await Promise.all(kids.map((c) => new Promise((resolve) => {
    c.on('message', (m) => {
      if (!m.done) return;
      times.push(...m.times);
      closed.push(...m.closed);
      reopened.push(...m.reopened);
      if (m.timeline.length) console.log(`  session 0: ${m.timeline.join('; ')}`);
      resolve();
    });
    c.send({ done: true });
  })));
  for (const list of [times, closed, reopened]) list.sort((a, b) => a - b);
  const pick = (list, q) => (list.length ? list[Math.min(list.length - 1, Math.floor(q * list.length))] : NaN);
  const at = (q) => pick(times, q);
  const spread = (list) => `first ${pick(list, 0)} ms, p50 ${pick(list, 0.5)} ms, last ${pick(list, 1)} ms`;
  const cores = require('node:os').cpus().length;
  const share100 = ((cpu1 - cpu0) / wall / cores) * 100;
  console.log(`killed the victim (SIGKILL); subscribed again on ${OTHER_URLS.length} others: ` +
    `${times.length} of ${total}, first ${at(0)} ms, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, all ${resubscribedMs ?? 'not'} ms`);
  console.log(`  drop noticed: ${spread(closed)}; new connection open: ${spread(reopened)}`);
  console.log(`probe published after: reached ${sum('probes')} of ${total}`);
  console.log(`load generator CPU while reconnecting: ${(cpu1 - cpu0).toFixed(1)} s over ${wall.toFixed(1)} s = ` +
    `${share100.toFixed(0)}% of the machine's ${cores} cores` +
    (others.length ? `; the surviving gateways ${(others1 - others0).toFixed(1)} s` : ''));
  console.log(JSON.stringify({
    clients: total, processes: PROCESSES, resubscribed: times.length, first_ms: at(0), p50_ms: at(0.5),
    p99_ms: at(0.99), all_ms: resubscribedMs, probe_reached: sum('probes'), loadgen_cpu_percent_of_machine: share100,
    survivors_cpu_s: others.length ? others1 - others0 : null,
  }));
  await probe.close();
  process.exit(resubscribedMs !== null && sum('probes') === total ? 0 : 1);
}

(process.env.ROLE === 'child' ? child() : parent()).catch((e) => {
  console.error(e);
  process.exit(1);
});
