'use strict';
// Real brokers behind the gateway's STOMP bridge, for the node tests: RabbitMQ (the node
// tests/run.sh started, from RABBITMQ_AMQP_URL, or a private one) and ActiveMQ Classic (a
// private one), each started with its script in tests/scripts in a temp dir on ports that
// lie below the kernel's ephemeral range, where the gateways take theirs.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { ROOT, HOST } = require('./gateway');

const SCRIPTS = path.join(ROOT, 'tests', 'scripts');

/** True if something accepts TCP connections on `port`. */
function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port });
    s.setTimeout(300);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('timeout', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(false));
  });
}

/** The first port in [from, to) for which every `offsets` port is free. */
async function freeFixedPort(from, to, offsets = [0]) {
  // Start at a random point: two test runs at once should not race for the same port.
  const span = to - from;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const p = from + ((start + i) % span);
    const busy = await Promise.all(offsets.map((o) => listening(p + o)));
    if (!busy.some(Boolean)) return p;
  }
  throw new Error(`no free port in ${from}..${to}`);
}

/** Runs `tests/scripts/NAME start|stop DIR`; resolves to its KEY=VALUE stdout as an object. */
function script(name, cmd, dir, env, timeoutMs = 120000) {
  return new Promise((resolve, reject) => {
    execFile('bash', [path.join(SCRIPTS, name), cmd, dir], { env: { ...process.env, ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`${name} ${cmd} failed (${err.code || err.signal}):\n${stderr}`));
        const out = {};
        for (const line of stdout.split('\n')) {
          const i = line.indexOf('=');
          if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).replace(/^'(.*)'$/, '$1');
        }
        resolve(out);
      });
  });
}

/** `amqp://u:p@h:port/` names the default vhost for RabbitMQ but not for every URI parser. */
function withVhost(url) {
  const u = new URL(url);
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/%2f';
  return u.toString();
}

/**
 * RabbitMQ for the AMQP backend: `{ url, stop() }`. Uses RABBITMQ_AMQP_URL when set
 * (stopping it is then the caller's business), else starts a node without plugins.
 */
async function startRabbitMQ() {
  if (process.env.RABBITMQ_AMQP_URL) {
    return { url: withVhost(process.env.RABBITMQ_AMQP_URL), own: false, async stop() {} };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-rabbitmq-'));
  // AMQP port p, distribution port p + 20000, a private epmd on p - 1130 (4470..4569: apart
  // from the default 4369 and from the e2e fixture's 4370..4469).
  const port = await freeFixedPort(5600, 5700, [0, 20000, -1130]);
  const env = {
    RABBITMQ_AMQP_PORT: String(port),
    RABBITMQ_NODENAME: `nodetest${port}@localhost`,
    RABBITMQ_PLUGINS: '',
    ERL_EPMD_PORT: String(port - 1130),
    // Boot is ~6 s of CPU, but took 45 s on a 2-core machine busy with builds.
    RABBITMQ_START_TIMEOUT: '120',
  };
  await script('rabbitmq.sh', 'start', dir, env, 150000);
  return {
    url: `amqp://guest:guest@${HOST}:${port}/%2f`,
    own: true,
    async stop() {
      await script('rabbitmq.sh', 'stop', dir, env, 60000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A private ActiveMQ with a STOMP connector: `{ url, port, stop() }`. */
async function startActiveMQ() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-activemq-'));
  const port = await freeFixedPort(61630, 61700);
  const env = { ACTIVEMQ_STOMP_PORT: String(port) };
  const info = await script('activemq.sh', 'start', dir, env);
  return {
    url: info.ACTIVEMQ_STOMP_URL,
    port,
    async stop() {
      await script('activemq.sh', 'stop', dir, env, 60000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startRabbitMQ, startActiveMQ, listening };
