'use strict';
// Several gateways on one RabbitMQ, clients with the client library's failover list
// (gateway/static/gateway-client.mjs, StompSession): what a client keeps when its gateway is
// killed (SIGKILL) or drained (SIGTERM). README.md, "Scaling out", states the guarantees
// these checks prove:
//
// - queue consumers (`ack:client-individual`) under receipted load: every SEND the publisher
//   got a RECEIPT for reaches a surviving consumer; a message seen twice is marked
//   `redelivered:true`, or is one the publisher sent again because its RECEIPT died with
//   the gateway (at least once, never lost);
// - a drain closes every session with 1001 and the sessions carry on on the other gateways;
// - topic subscribers: without a stream the session reports the outage (`gap`); with a
//   gateway stream the other gateway's history is another epoch, so the client gets the
//   snapshot and `reset`; a RabbitMQ stream queue read with `x-stream-offset` is read on from
//   the next offset: no gap, no duplicate.
//
// RabbitMQ is the node tests/run.sh started (RABBITMQ_AMQP_URL) or a private one.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const amqplib = require('amqplib');

const WebSocket = require('ws');
const { Gateway, stompService, sleep, httpGet } = require('./lib/gateway');
const { startRabbitMQ } = require('./lib/brokers');
const { withTimeout } = require('./lib/stomp');
const { loadClient } = require('./lib/client-lib');

const T = { timeout: 60000 };
// One word (no dots): destinations of this run stay apart from other runs on a shared node.
const TAG = `f${process.pid}x${Date.now().toString(36)}`;
const STREAM_PREFIX = `/topic/ticks${TAG}.`;

async function until(pred, ms, what) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let C;
let rabbit;
const queues = []; // durable queues this run declared, deleted at the end (the node may be shared)
const started = []; // every gateway, so a failed check leaves none running
const sessionsMade = []; // every client session: a failed check must not leave one reconnecting
before(async () => {
  C = await loadClient();
  rabbit = await startRabbitMQ();
});
after(async () => {
  await Promise.all(sessionsMade.map((s) => s.close().catch(() => {})));
  for (const gw of started) {
    if (gw.proc && gw.proc.exitCode === null && gw.proc.signalCode === null) gw.proc.kill('SIGKILL');
  }
  if (!rabbit) return;
  const conn = await amqplib.connect(rabbit.url);
  const ch = await conn.createChannel();
  for (const q of queues) await ch.deleteQueue(q);
  await conn.close();
  await rabbit.stop();
});

/** `n` gateways on the node, each ready (its backend connected). */
async function gateways(n) {
  const settings = {
    backend: rabbit.url,
    heart_beat: [1000, 1000],
    stream: [{ destination: STREAM_PREFIX, history: 10000, history_age: '5m', snapshot_keys: 100 }],
  };
  const gws = await Promise.all(Array.from({ length: n }, () => new Gateway({ services: [stompService(settings)] }).start()));
  started.push(...gws);
  for (const gw of gws) {
    const deadline = Date.now() + 20000;
    for (;;) {
      const r = await httpGet(gw.port, '/readyz').catch((e) => ({ status: e.message }));
      if (r.status === 200) break;
      assert.ok(Date.now() < deadline, `/readyz is ${r.status} after 20 s\n${gw.log()}`);
      await sleep(50);
    }
  }
  return gws;
}

async function stopAll(gws, sessions) {
  await Promise.all(sessions.map((s) => s.close().catch(() => {})));
  for (const gw of gws) {
    if (gw.proc.exitCode !== null || gw.proc.signalCode !== null) continue;
    const rc = await gw.stop();
    assert.equal(rc, 0, `gateway exit code ${rc}\n${gw.log()}`);
  }
}

/** The failover list starting at gateway `first`: a client prefers it, then the others in turn. */
function urls(gws, first) {
  return gws.map((_, i) => gws[(first + i) % gws.length].url('/ws'));
}

function session(gws, first, o = {}) {
  const s = new C.StompSession({
    urls: urls(gws, first), WebSocket, heartBeat: [1000, 1000], keepalive: 0,
    backoff: { initial: 100, max: 1000 }, ...o,
  });
  sessionsMade.push(s);
  return s;
}

function kill(gw, signal) {
  const exited = gw.exited;
  gw.proc.kill(signal);
  return exited;
}

describe('queue consumers when a gateway is killed under receipted load', () => {
  it('delivers every receipted SEND to a survivor; repeats are marked redelivered or were resent', T, async () => {
    const gws = await gateways(3);
    const Q = `/queue/failover.${TAG}`;
    queues.push(Q.slice('/queue/'.length));
    const deliveries = new Map(); // body -> [{consumer, redelivered}]
    const consumers = [0, 1, 2].map((i) => {
      const s = session(gws, i);
      // The consumer on the gateway that dies holds its acks a while, so it has
      // unacknowledged messages when it goes: RabbitMQ must give those to the others.
      const ackDelay = i === 0 ? 300 : 5;
      s.subscribe(Q, (m) => {
        const list = deliveries.get(m.body) || [];
        list.push({ consumer: i, redelivered: m.headers.redelivered === 'true' });
        deliveries.set(m.body, list);
        setTimeout(() => m.ack(), ackDelay);
      }, { ack: 'client-individual', headers: { 'prefetch-count': '50' } });
      return s;
    });
    await Promise.all(consumers.map((s) => withTimeout(s.next('subscribed'), 10000, 'subscribed')));
    const closes = [];
    consumers[0].connection.on('close', (c) => closes.push(c));

    // The publisher is on the gateway that dies too: SENDs whose RECEIPT it never got go
    // again to the next gateway (at least once).
    const pub = session(gws, 0);
    await withTimeout(pub.next('connected'), 10000, 'publisher CONNECTED');
    const N = 900;
    const KILL_AT = 300;
    const pending = new Set();
    const receipted = new Set();
    let pendingAtKill = null;
    let killed = null;
    const inFlight = [];
    for (let n = 1; n <= N; n++) {
      const body = `m${n}`;
      pending.add(body);
      const p = pub.send(Q, body, { persistent: 'true' }).then(() => { pending.delete(body); receipted.add(body); });
      inFlight.push(p);
      if (n === KILL_AT) {
        pendingAtKill = new Set(pending);
        killed = kill(gws[0], 'SIGKILL');
      }
      // A window of 50 unconfirmed SENDs: a steady flow rather than one burst.
      if (inFlight.length >= 50) await inFlight.shift();
    }
    const exit = await killed;
    assert.equal(exit.signal, 'SIGKILL');
    await withTimeout(Promise.all(inFlight), 20000, 'every RECEIPT');
    assert.equal(receipted.size, N, 'every SEND got its RECEIPT in the end');

    await until(() => deliveries.size === N, 20000, `all ${N} messages (have ${deliveries.size})`);
    await sleep(500); // stray repeats would come now
    const lost = [...receipted].filter((b) => !deliveries.has(b));
    assert.deepEqual(lost, [], 'no receipted SEND is lost');
    let redelivered = 0;
    let resent = 0;
    for (const [body, list] of deliveries) {
      if (list.length === 1) continue;
      for (const d of list.slice(1)) {
        if (d.redelivered) redelivered++;
        else {
          assert.ok(pendingAtKill.has(body), `${body} came twice unmarked (${JSON.stringify(list)}) ` +
            'but its SEND was not waiting for a RECEIPT when the gateway died');
          resent++;
        }
      }
    }
    const unackedOnDead = [...deliveries.values()].filter((l) => l[0].consumer === 0 && l.length > 1).length;
    assert.ok(redelivered > 0 && unackedOnDead > 0,
      `the dead gateway's consumer had unacknowledged messages; they came again marked (redelivered ${redelivered})`);
    assert.ok(closes.length >= 1 && closes[0].code === 1006, `the killed gateway's clients saw the TCP drop (${JSON.stringify(closes)})`);
    assert.notEqual(consumers[0].connection.url, gws[0].url('/ws'), 'consumer 0 failed over');
    assert.equal(consumers[0].state, 'connected');
    console.log(`# ${N} receipted, ${deliveries.size} delivered, ${redelivered} redelivered-marked repeats, ` +
      `${resent} resent repeats (${pendingAtKill.size} SENDs awaited a RECEIPT at the kill)`);
    await stopAll(gws, [...consumers, pub]);
  });
});

describe('a drained gateway', () => {
  it('closes its sessions with 1001 and they carry on elsewhere: queues lose nothing, topics say what they lost', T, async () => {
    const gws = await gateways(3);
    const Q = `/queue/drain.${TAG}`;
    queues.push(Q.slice('/queue/'.length));
    const TOPIC = `/topic/news${TAG}`;
    const TICK = `${STREAM_PREFIX}A`;

    const queued = [];
    const qc = session(gws, 0);
    qc.subscribe(Q, (m) => { queued.push(m.body); m.ack(); }, { ack: 'client-individual' });
    const news = [];
    const gaps = [];
    const nc = session(gws, 0);
    const newsSub = nc.subscribe(TOPIC, (m) => news.push(m.body));
    nc.on('gap', (sub, info) => gaps.push(info));
    const ticks = [];
    const resets = [];
    const tc = session(gws, 0);
    tc.subscribe(TICK, (m) => ticks.push({ body: m.body, kind: m.kind }), { snapshot: true });
    tc.on('reset', (sub, info) => resets.push(info));
    const clients = [qc, nc, tc];
    await Promise.all(clients.map((s) => withTimeout(s.next('subscribed'), 10000, 'subscribed')));
    const closes = clients.map(() => []);
    clients.forEach((s, i) => s.connection.on('close', (c) => closes[i].push(c.code)));

    const pub = session(gws, 1);
    await withTimeout(pub.next('connected'), 10000, 'publisher CONNECTED');
    await pub.send(Q, 'q1');
    await pub.send(TOPIC, 'n1');
    // The gateways' own stream subscriptions start in the background: tick until one arrives.
    for (let i = 0; !ticks.some((t) => t.body === 't1'); i++) {
      assert.ok(i < 50, 'the stream never delivered t1');
      await pub.send(TICK, 't1');
      await sleep(100);
    }
    await until(() => queued.length === 1 && news.length === 1, 5000,
      `first messages (queue ${JSON.stringify(queued)}, topic ${JSON.stringify(news)})`);

    const exit = await withTimeout(kill(gws[0], 'SIGTERM'), 15000, 'drained gateway exit');
    assert.equal(exit.code, 0, gws[0].log());
    for (const [i, codes] of closes.entries()) assert.deepEqual(codes, [1001], `client ${i} was told to go (1001)`);

    // Published while the subscribers move (they may be back already: a reconnect takes
    // milliseconds): the queue keeps it whenever it comes.
    await pub.send(Q, 'q2');
    await Promise.all(clients.map((s) => until(() => s.state === 'connected', 10000, 'reconnected')));
    for (const s of clients) assert.notEqual(s.connection.url, gws[0].url('/ws'));
    await until(() => gaps.length === 1, 5000, 'the gap report');
    assert.equal(gaps[0].missed, null, 'how much was lost is unknown');
    assert.equal(newsSub.unresumed, 1);
    await until(() => resets.length === 1, 5000, 'the stream reset');
    assert.match(resets[0].reason || '', /epoch/, 'another gateway: another epoch');
    // The survivor's own stream subscription may have come up after t1 was published, so
    // its snapshot need not hold t1: what counts is the reset and the ticks after it.

    await pub.send(Q, 'q3');
    await pub.send(TOPIC, 'n3');
    await pub.send(TICK, 't2');
    await until(() => queued.length === 3 && news.includes('n3') && ticks.some((t) => t.body === 't2'), 5000, 'messages after the move');
    assert.deepEqual(queued, ['q1', 'q2', 'q3'], 'the queue lost nothing');
    assert.deepEqual(news, ['n1', 'n3']);
    await stopAll(gws, [...clients, pub]);
  });
});

describe('a RabbitMQ stream queue across a gateway kill', () => {
  it('reads on from the next x-stream-offset on another gateway: no gap, no duplicate', T, async () => {
    const name = `failover-stream.${TAG}`;
    const conn = await amqplib.connect(rabbit.url);
    const ch = await conn.createChannel();
    await ch.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'stream' } });
    queues.push(name);

    const gws = await gateways(2);
    const got = [];
    let frames = 0;
    const reader = session(gws, 0);
    reader.on('frame', (f) => { if (f.command === 'MESSAGE') frames++; });
    reader.subscribe(`/amq/queue/${name}`, (m) => { got.push(m.body); m.ack(); },
      { ack: 'client-individual', headers: { 'x-stream-offset': 'first', 'prefetch-count': '100' } });
    await withTimeout(reader.next('subscribed'), 10000, 'subscribed');
    const pub = session(gws, 1);
    await withTimeout(pub.next('connected'), 10000, 'publisher CONNECTED');

    const N = 600;
    const sends = [];
    for (let n = 1; n <= N; n++) {
      sends.push(pub.send(`/amq/queue/${name}`, String(n)));
      if (n === N / 2) {
        await until(() => got.length > 0, 5000, 'some messages before the kill');
        await kill(gws[0], 'SIGKILL');
      }
      if (sends.length % 50 === 0) await Promise.all(sends.slice(-50));
    }
    await withTimeout(Promise.all(sends), 15000, 'every RECEIPT');
    await until(() => got.length >= N, 15000, `all ${N} (have ${got.length})`);
    await sleep(300);
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => String(i + 1)), 'every message once, in order');
    assert.notEqual(reader.connection.url, gws[0].url('/ws'));
    console.log(`# stream queue: ${N} read once in order, ${frames - N} repeated frames dropped by offset`);
    await stopAll(gws, [reader, pub]);
    await conn.close();
  });
});
