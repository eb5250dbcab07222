'use strict';
// amqplib as the load generator for tests/loadgen/amqp-bench.sh (BENCHMARKS.md, "AMQP 0-9-1
// over WebSocket"). One client library on both paths, so the difference is the path:
//
//   perf     one side (--ws-url: through the gateway; --amqp-url: straight to RabbitMQ):
//            publish with confirms, consume with prefetch and multiple acks, round-trip
//            latency at a low fixed rate. One JSON line on stdout.
//   clients  --count AMQP-over-WebSocket clients spread over --processes workers, each with
//            a consumer on its own server-named queue; reports the gateway's RSS before and
//            with them, the broker connections RabbitMQ lists, whether every consumer still
//            gets a message, and the CPU each process used. One JSON line on stdout.
//   worker   (run by `clients`) holds its share of the clients; JSON lines on stdout, takes
//            `check` / `close` on stdin.
//
// Progress goes to stderr. The options are the `opt()` calls below, each with its default;
// amqp-bench.sh passes them all.

const fs = require('node:fs');
const path = require('node:path');
const { spawn, execFile } = require('node:child_process');
const readline = require('node:readline');

const NODE_MODULES = process.env.AMQP_BENCH_NODE_MODULES || path.join(__dirname, 'node', 'node_modules');
const amqplib = require(path.join(NODE_MODULES, 'amqplib'));
// amqplib's `exports` open only its entry points; the Connection that connect() wraps
// around a TCP socket is reached by path, as connect() would build it over a WebSocket.
const AMQPLIB = path.dirname(require.resolve(path.join(NODE_MODULES, 'amqplib')));
const { Connection } = require(path.join(AMQPLIB, 'lib', 'connection'));
const { ChannelModel } = require(path.join(AMQPLIB, 'lib', 'channel_model'));
const { WebSocket, createWebSocketStream } = require(path.join(NODE_MODULES, 'ws'));

// --- options --------------------------------------------------------------------------
const argv = process.argv.slice(2);
const mode = argv[0];
function opt(name, def) {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = argv[i + 1];
  return typeof def === 'number' ? Number(v) : v;
}
const T0 = Date.now();
const log = (...a) => console.error(`[amqp-bench ${mode} +${((Date.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- /proc readings -------------------------------------------------------------------
const CLK_TCK = opt('clk-tck', 100);
/** CPU seconds (user + system) a process has used, or null if it is gone. */
function procCpu(pid) {
  if (!pid) return null;
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime
  } catch { return null; }
}
function rssKib(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
/** Busy and total jiffies of the whole machine. */
function machineTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}
/**
 * CPU meter over a phase: % of one core for the generator (this process, plus `extraPids`),
 * the gateway, the broker, and the whole machine (of 100 x cores).
 */
function cpuMeter(pids, extraPids = []) {
  const t0 = process.hrtime.bigint();
  const self0 = process.cpuUsage();
  const m0 = machineTicks();
  const p0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, procCpu(p)]));
  const e0 = extraPids.map(procCpu);
  return () => {
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const s = process.cpuUsage(self0);
    const m1 = machineTicks();
    const pct = (x) => Math.round((100 * x) / secs);
    const out = {};
    let gen = (s.user + s.system) / 1e6;
    extraPids.forEach((p, i) => { const v = procCpu(p); if (v != null && e0[i] != null) gen += v - e0[i]; });
    out.generator = pct(gen);
    for (const [k, p] of Object.entries(pids)) {
      const v = procCpu(p);
      if (v != null && p0[k] != null) out[k] = pct(v - p0[k]);
    }
    const cores = require('node:os').cpus().length;
    out.machine = Math.round((100 * cores * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total));
    const known = Object.values(out).reduce((a, b) => a + b, 0) - out.machine;
    out.others = Math.max(0, out.machine - known);
    return out;
  };
}

// --- connecting -------------------------------------------------------------------------
/** The start-ok / tune-ok / open fields amqplib's connect() sends (lib/connect.js openFrames). */
function openFields(user, pass) {
  return {
    clientProperties: {
      product: 'amqplib', information: 'gateway amqp-bench',
      capabilities: {
        publisher_confirms: true, 'basic.nack': true, consumer_cancel_notify: true,
        exchange_exchange_bindings: true, 'connection.blocked': true, authentication_failure_close: true,
      },
    },
    mechanism: 'PLAIN',
    response: amqplib.credentials.plain(user, pass).response(),
    locale: 'en_US',
    channelMax: 0,
    frameMax: 131072,
    // No heart-beats on either path: the runs are short, and 1,000 idle clients would
    // otherwise measure timers.
    heartbeat: 0,
    virtualHost: '/',
    capabilities: '',
    insist: 0,
  };
}

function openWebSocket(url) {
  return new Promise((resolve, reject) => {
    // No subprotocol: the service has allow_no_subprotocol, as a plain AMQP client expects.
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      reject(new Error(`upgrade refused: HTTP ${res.statusCode}`));
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** An amqplib ChannelModel through the gateway's WebSocket, as connect() builds one over TCP. */
async function connectWs(url, user, pass) {
  const ws = await openWebSocket(url);
  const stream = createWebSocketStream(ws);
  // Errors reach the Connection ('error'/'close'); an idle stream's reset would otherwise
  // be an uncaught exception.
  stream.on('error', () => {});
  const conn = new Connection(stream);
  await new Promise((resolve, reject) => conn.open(openFields(user, pass), (err) => (err ? reject(err) : resolve())));
  const model = new ChannelModel(conn);
  model.ws = ws;
  return model;
}

/** amqplib.connect() straight to RabbitMQ; Nagle off, as `ws` turns it off on its socket. */
function connectDirect(url) {
  const u = new URL(url);
  u.searchParams.set('heartbeat', '0');
  return amqplib.connect(u.toString(), { noDelay: true });
}

function connector() {
  const ws = opt('ws-url', '');
  if (ws) return () => connectWs(ws, opt('user', 'guest'), opt('pass', 'guest'));
  return () => connectDirect(opt('amqp-url', 'amqp://guest:guest@127.0.0.1:5672/%2f'));
}

// --- perf: (a) publish, (b) consume, (c) latency ----------------------------------------
function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Publishes for `secs` with at most `window` unconfirmed; returns confirmed messages/s. */
async function publishPhase(conn, queue, secs, size, window) {
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: false });
  await ch.purgeQueue(queue);
  const body = Buffer.alloc(size, 'x');
  let outstanding = 0; let acked = 0; let nacked = 0; let stopped = false; let waitingDrain = false;
  let settle;
  const settled = new Promise((r) => { settle = r; });
  const onConfirm = (err) => {
    outstanding--;
    if (err) nacked++; else if (!stopped) acked++;
    if (stopped) { if (outstanding === 0) settle(); return; }
    if (!waitingDrain && outstanding < window / 2) pump();
  };
  function pump() {
    while (!stopped && outstanding < window) {
      outstanding++;
      if (!ch.publish('', queue, body, {}, onConfirm)) {
        waitingDrain = true;
        ch.once('drain', () => { waitingDrain = false; pump(); });
        return;
      }
    }
  }
  const t0 = process.hrtime.bigint();
  pump();
  await sleep(secs * 1000);
  stopped = true;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  if (outstanding > 0) await Promise.race([settled, sleep(10000)]);
  await ch.close();
  return { confirmed: acked, nacked, secs: +elapsed.toFixed(2), rate: Math.round(acked / elapsed) };
}

/** Puts exactly `count` messages in `queue`, straight on RabbitMQ (not measured). */
async function fill(amqpUrl, queue, count, size) {
  const conn = await connectDirect(amqpUrl);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: false });
  await ch.purgeQueue(queue);
  const body = Buffer.alloc(size, 'x');
  for (let i = 0; i < count; i++) {
    if (!ch.publish('', queue, body)) await new Promise((r) => ch.once('drain', r));
  }
  await ch.waitForConfirms();
  await conn.close();
  return count;
}

/** Consumes `count` messages with prefetch, acking every `ackEvery` with multiple=true. */
async function consumePhase(conn, queue, count, prefetch, ackEvery, maxSecs) {
  const ch = await conn.createChannel();
  await ch.prefetch(prefetch);
  let got = 0; let last = null; let done;
  const finished = new Promise((r) => { done = r; });
  const t0 = process.hrtime.bigint();
  let tEnd = t0;
  await ch.consume(queue, (m) => {
    got++;
    last = m;
    if (got % ackEvery === 0 || got >= count) { ch.ack(m, true); last = null; }
    if (got >= count) { tEnd = process.hrtime.bigint(); done(); }
  }, { noAck: false });
  await Promise.race([finished, sleep(maxSecs * 1000)]);
  if (got < count) tEnd = process.hrtime.bigint();
  if (last) ch.ack(last, true);
  const elapsed = Number(tEnd - t0) / 1e9;
  await ch.close();
  return { received: got, of: count, secs: +elapsed.toFixed(2), rate: Math.round(got / elapsed) };
}

/**
 * Publishes `rate` msgs/s for `warm + secs` on one connection and consumes them on another;
 * each body carries its send time (one process, one clock). Latencies of the first `warm`
 * seconds are dropped.
 */
async function latencyPhase(pubConn, subConn, queue, rate, secs, warm, size) {
  const sub = await subConn.createChannel();
  await sub.assertQueue(queue, { durable: false });
  await sub.purgeQueue(queue);
  await sub.prefetch(1000);
  const lat = [];
  let received = 0;
  const tWarm = process.hrtime.bigint() + BigInt(Math.round(warm * 1e9));
  await sub.consume(queue, (m) => {
    const now = process.hrtime.bigint();
    const sent = BigInt(m.content.toString('latin1', 0, 20).trim());
    received++;
    if (sent >= tWarm) lat.push(Number(now - sent) / 1e6);
    sub.ack(m);
  }, { noAck: false });
  const pub = await pubConn.createChannel();
  const body = Buffer.alloc(size, ' ');
  const t0 = process.hrtime.bigint();
  const total = Math.round(rate * (warm + secs));
  // Send on schedule (message i at t0 + i / rate), a few per tick if timers run late.
  for (let i = 0; i < total;) {
    const now = process.hrtime.bigint();
    const due = Math.min(total, Math.floor((Number(now - t0) / 1e9) * rate) + 1);
    for (; i < due; i++) {
      body.write(String(process.hrtime.bigint()).padEnd(20), 0, 'latin1');
      pub.publish('', queue, body);
    }
    await sleep(Math.max(0, (i / rate) * 1000 - Number(process.hrtime.bigint() - t0) / 1e6));
  }
  const deadline = Date.now() + 5000;
  while (received < total && Date.now() < deadline) await sleep(10);
  lat.sort((a, b) => a - b);
  const r3 = (x) => (x == null ? null : +x.toFixed(3));
  await pub.close();
  await sub.close();
  return {
    sent: total, received, measured: lat.length,
    p50_ms: r3(pct(lat, 50)), p99_ms: r3(pct(lat, 99)), p999_ms: r3(pct(lat, 99.9)), max_ms: r3(lat[lat.length - 1]),
  };
}

async function perf() {
  const side = opt('side', 'gateway');
  const connect = connector();
  const pids = { gateway: opt('gateway-pid', 0), broker: opt('broker-pid', 0) };
  if (!pids.gateway) delete pids.gateway;
  const secs = opt('duration', 10);
  const size = opt('size', 100);
  const amqpUrl = opt('fill-url', 'amqp://guest:guest@127.0.0.1:5672/%2f');
  const q = `amqp-bench-${side}`;
  const parts = (opt('parts', 'publish,consume,latency')).split(',');
  const out = { side };

  const conn = await connect();
  conn.on('error', (e) => log('connection error:', e.message));
  if (parts.includes('publish')) {
    log(`${side}: publish with confirms, window ${opt('window', 1000)}, ${secs}s`);
    const cpu = cpuMeter(pids);
    out.publish = await publishPhase(conn, q, secs, size, opt('window', 1000));
    out.publish.cpu = cpu();
    log(`${side}: publish`, JSON.stringify(out.publish));
  }
  if (parts.includes('consume')) {
    const count = opt('consume-count', 300000);
    log(`${side}: filling ${q} to ${count} messages (straight to RabbitMQ, not measured)`);
    await fill(amqpUrl, q, count, size);
    await sleep(1000);
    log(`${side}: consume ${count}, prefetch ${opt('prefetch', 1000)}, ack multiple every ${opt('ack-every', 500)}`);
    const cpu = cpuMeter(pids);
    out.consume = await consumePhase(conn, q, count, opt('prefetch', 1000), opt('ack-every', 500), opt('consume-max', 30));
    out.consume.cpu = cpu();
    log(`${side}: consume`, JSON.stringify(out.consume));
  }
  if (parts.includes('latency')) {
    const rate = opt('lat-rate', 100);
    log(`${side}: latency at ${rate} msgs/s, ${opt('lat-duration', 10)}s after ${opt('lat-warm', 1)}s warm-up`);
    const subConn = await connect();
    const cpu = cpuMeter(pids);
    out.latency = await latencyPhase(conn, subConn, `${q}-lat`, rate, opt('lat-duration', 10), opt('lat-warm', 1), size);
    out.latency.cpu = cpu();
    log(`${side}: latency`, JSON.stringify(out.latency));
    await subConn.close();
  }
  const ch = await conn.createChannel();
  await ch.deleteQueue(q);
  await ch.deleteQueue(`${q}-lat`);
  await conn.close();
  console.log(JSON.stringify(out));
}

// --- clients: (d) many concurrent clients -----------------------------------------------
/** Runs `fn(i)` for i < n with at most `limit` in flight; resolves to the settled results. */
async function pool(n, limit, fn) {
  const results = new Array(n);
  let next = 0;
  async function lane() {
    while (next < n) {
      const i = next++;
      try { results[i] = { ok: await fn(i) }; } catch (e) { results[i] = { err: e.message }; }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
  return results;
}

async function worker() {
  const count = opt('count', 250);
  const connect = connector();
  const clients = [];
  let received = 0;
  const t0 = Date.now();
  const lat = [];
  const results = await pool(count, opt('concurrency', 10), async () => {
    const t = process.hrtime.bigint();
    const conn = await connect();
    conn.on('error', () => {});
    const ch = await conn.createChannel();
    // Server-named and exclusive: the gateway owns it for this session and deletes it at the end.
    const { queue } = await ch.assertQueue('', { exclusive: true, durable: false });
    await ch.consume(queue, (m) => { received++; ch.ack(m); }, { noAck: false });
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    clients.push({ conn, queue });
    return queue;
  });
  const errors = {};
  for (const r of results) if (r.err) errors[r.err] = (errors[r.err] || 0) + 1;
  lat.sort((a, b) => a - b);
  console.log(JSON.stringify({
    ready: clients.length, failed: count - clients.length, errors, secs: (Date.now() - t0) / 1000,
    setup_p50_ms: pct(lat, 50), setup_p99_ms: pct(lat, 99), queues: clients.map((c) => c.queue),
  }));
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    if (line === 'check') {
      const want = Number(opt('check-count', clients.length));
      const deadline = Date.now() + 10000;
      while (received < want && Date.now() < deadline) await sleep(20);
      const closed = clients.filter((c) => c.conn.ws.readyState !== WebSocket.OPEN).length;
      console.log(JSON.stringify({ received, closed }));
    } else if (line === 'close') {
      await Promise.all(clients.map((c) => c.conn.close().catch(() => {})));
      console.log(JSON.stringify({ closed: true }));
      process.exit(0);
    }
  });
  rl.on('close', () => process.exit(0)); // the parent went away
}

function rabbitmqctl(args) {
  const dir = opt('rabbit-dir', '');
  const node = opt('rabbit-node', 'rabbit@localhost');
  return new Promise((resolve, reject) => {
    execFile(opt('rabbitmqctl', '/usr/lib/rabbitmq/bin/rabbitmqctl'), ['-n', node, '-q', ...args, '--no-table-headers'],
      { env: { ...process.env, HOME: dir || process.env.HOME }, timeout: 60000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => (err ? reject(new Error(`rabbitmqctl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

async function clientsMode() {
  const count = opt('count', 1000);
  const procs = opt('processes', 4);
  const gwPid = opt('gateway-pid', 0);
  const hold = opt('hold', 5);
  const pass = ['--ws-url', opt('ws-url', ''), '--user', opt('user', 'guest'), '--pass', opt('pass', 'guest'),
    '--concurrency', String(opt('concurrency', 10))];
  const out = { clients: count, processes: procs };
  const conns0 = (await rabbitmqctl(['list_connections', 'name'])).split('\n').filter(Boolean).length;
  out.broker_connections_before = conns0;
  out.gateway_rss_before_kib = rssKib(gwPid);
  log(`gateway RSS before ${out.gateway_rss_before_kib} KiB, broker connections before ${conns0}`);

  const workers = [];
  for (let k = 0; k < procs; k++) {
    const n = Math.floor(count / procs) + (k < count % procs ? 1 : 0);
    const child = spawn(process.execPath, [__filename, 'worker', '--count', String(n), ...pass],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = [];
    let waiter = null;
    readline.createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(JSON.parse(l));
      if (waiter) { const w = waiter; waiter = null; w(); }
    });
    const next = async () => { while (!lines.length) await new Promise((r) => { waiter = r; }); return lines.shift(); };
    workers.push({ child, next, n });
  }
  const cpu = cpuMeter({ gateway: gwPid }, workers.map((w) => w.child.pid));
  const t0 = Date.now();
  const ready = await Promise.all(workers.map((w) => w.next()));
  out.connect_secs = (Date.now() - t0) / 1000;
  out.ready = ready.reduce((a, r) => a + r.ready, 0);
  out.failed = ready.reduce((a, r) => a + r.failed, 0);
  out.errors = {};
  for (const r of ready) for (const [e, n] of Object.entries(r.errors)) out.errors[e] = (out.errors[e] || 0) + n;
  out.setup_p50_ms = Math.max(...ready.map((r) => r.setup_p50_ms || 0));
  out.setup_p99_ms = Math.max(...ready.map((r) => r.setup_p99_ms || 0));
  out.cpu_connecting = cpu();
  log(`${out.ready} of ${count} clients consuming in ${out.connect_secs}s (failed ${out.failed})`, JSON.stringify(out.errors));

  await sleep(hold * 1000);
  out.gateway_rss_held_kib = rssKib(gwPid);
  const conns = (await rabbitmqctl(['list_connections', 'name', 'user', 'channels'])).split('\n').filter(Boolean);
  out.broker_connections = conns.length;
  out.broker_connection_list = conns;
  const queues = (await rabbitmqctl(['list_queues', 'name', 'consumers'])).split('\n').filter(Boolean);
  out.broker_queues = queues.length;
  out.broker_consumers = queues.reduce((a, l) => a + (Number(l.split('\t')[1]) || 0), 0);
  out.gateway_rss_per_client_kib = out.ready
    ? +(((out.gateway_rss_held_kib - out.gateway_rss_before_kib) / out.ready).toFixed(2)) : null;

  // Every consumer must still get its message: one to each queue, straight on RabbitMQ.
  const direct = await connectDirect(opt('amqp-url', 'amqp://guest:guest@127.0.0.1:5672/%2f'));
  const ch = await direct.createConfirmChannel();
  const cpuCheck = cpuMeter({ gateway: gwPid }, workers.map((w) => w.child.pid));
  for (const r of ready) for (const q of r.queues) ch.publish('', q, Buffer.alloc(100, 'c'));
  await ch.waitForConfirms();
  for (const w of workers) w.child.stdin.write('check\n');
  const checks = await Promise.all(workers.map((w) => w.next()));
  out.check_received = checks.reduce((a, c) => a + c.received, 0);
  out.check_ws_closed = checks.reduce((a, c) => a + c.closed, 0);
  out.cpu_check = cpuCheck();
  await direct.close();
  log(`check: ${out.check_received} of ${out.ready} consumers got their message`);

  for (const w of workers) w.child.stdin.write('close\n');
  await Promise.all(workers.map((w) => w.next()));
  console.log(JSON.stringify(out));
}

const modes = { perf, clients: clientsMode, worker };
if (!modes[mode]) {
  console.error('usage: node amqp-bench.js perf|clients [--ws-url URL --user U --pass P | --amqp-url URL] ...');
  process.exit(2);
}
modes[mode]().catch((e) => { log('failed:', e.stack || e.message); process.exit(1); });
