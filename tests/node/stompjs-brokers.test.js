'use strict';
// @stomp/stompjs through the gateway to real brokers: the STOMP bridge with
// `backend = "amqp://..."` (RabbitMQ) and `backend = "stomp://..."` (ActiveMQ Classic), with
// the checks stompjs.test.js runs against the embedded broker where they apply: topic
// fan-out, competing queue consumers, client and client-individual acks with NACK
// redelivery, receipts, transactions, headers, binary and large bodies, temp-queue replies.
//
// RabbitMQ is the node tests/run.sh starts (RABBITMQ_AMQP_URL), or a private one started
// here; ActiveMQ is always a private one (tests/scripts/activemq.sh). Where a broker
// legitimately differs, a check reads `target.expect` (the list below, kept short).
//
// Without the brokers installed the file fails: tests/scripts/install-deps.sh installs them.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { Gateway, stompService, httpGet, sleep } = require('./lib/gateway');
const { startRabbitMQ, startActiveMQ } = require('./lib/brokers');
const { connect, subscribe, publish, withReceipt, withTimeout, RawPeer, Collector } = require('./lib/stomp');
const { RUN } = require('./lib/targets');

const T = { timeout: 30000 };

/** The gateway's STOMP service on a broker that `startBroker()` starts (and `stop()` ends). */
function brokerTarget(name, kind, startBroker, expect) {
  return {
    name,
    kind,
    broker: null,
    gw: null,
    async start() {
      this.broker = await startBroker();
      this.gw = await new Gateway({ services: [stompService({ backend: this.broker.url })] }).start();
      // The backend connects in the background; until then the service refuses upgrades.
      const deadline = Date.now() + 20000;
      for (;;) {
        const r = await httpGet(this.gw.port, '/readyz').catch((e) => ({ status: e.message }));
        if (r.status === 200) break;
        assert.ok(Date.now() < deadline, `${name}: /readyz is ${r.status} after 20 s\n${this.gw.log()}`);
        await sleep(50);
      }
    },
    async stop() {
      const rc = this.gw ? await this.gw.stop() : 0;
      if (this.broker) await this.broker.stop();
      assert.equal(rc, 0, `gateway exit code ${rc}\n${this.gw.log()}`);
    },
    url() { return this.gw.url('/ws'); },
    // Destinations of this run: RabbitMQ's /queue/ queues are durable and the node may be
    // shared with other test files and runs.
    q: (n) => `/queue/${n}.${RUN}`,
    t: (n) => `/topic/${n}.${RUN}`,
    expect,
  };
}

const targets = [
  brokerTarget('the gateway on RabbitMQ (amqp://)', 'rabbitmq', startRabbitMQ, {
    nackRedeliveryMs: 3000,           // NACK requeues at once
    tempReplyTo: /^\/amq\/queue\/stomp-gw\..+/,
  }),
  brokerTarget('the gateway on ActiveMQ (stomp://)', 'activemq', startActiveMQ, {
    // activemq.sh's redeliveryPlugin sends a NACKed message back after 1 s (ActiveMQ's own
    // default would dead-letter it)
    nackRedeliveryMs: 8000,
    tempReplyTo: /^\/queue\/gateway-tmp\..+/,
  }),
];

/** Frames are handled in order: once a later SEND's RECEIPT is back, earlier frames were too. */
const sync = (client, target) => publish(client, { destination: target.t('sync.nobody'), body: '' });

function checks(target) {
  const X = target.expect;
  const Q = target.q;
  const TP = target.t;
  let clients = [];
  let peers = [];

  const open = async (opts = {}) => {
    const c = await connect(target.url(), opts);
    clients.push(c);
    return c;
  };

  const rawPeer = async () => {
    const peer = new RawPeer(target.url());
    peers.push(peer);
    await peer.opened;
    peer.frame('CONNECT', { 'accept-version': '1.2', host: 'localhost' });
    await peer.waitFrame('CONNECTED');
    return peer;
  };

  before(async () => {
    await target.start();
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.deactivate({ force: !c.connected }).catch(() => {})));
    for (const p of peers) p.close();
    clients = [];
    peers = [];
  });

  after(async () => {
    await target.stop();
  });

  describe('topics', () => {
    it('fans out to three subscribers, in order, with their headers', T, async () => {
      const dest = TP('fan.out');
      const subs = [];
      for (let i = 0; i < 3; i++) subs.push(await subscribe(await open(), dest));
      const pub = await open();
      for (let i = 0; i < 5; i++) {
        pub.publish({ destination: dest, body: `m${i}`, headers: { 'content-type': 'text/plain', seq: String(i) } });
      }
      for (const s of subs) {
        const ms = await s.take(5, 5000);
        assert.deepEqual(ms.map((m) => m.body), ['m0', 'm1', 'm2', 'm3', 'm4']);
        assert.deepEqual(ms.map((m) => m.headers.seq), ['0', '1', '2', '3', '4']);
        for (const m of ms) {
          assert.equal(m.headers['content-type'], 'text/plain');
          assert.equal(m.headers.destination, dest);
          assert.equal(m.headers.subscription, s.sub.id);
          assert.ok(m.headers['message-id'], 'MESSAGE has a message-id');
        }
        await s.quiet(100);
      }
    });

    it('UNSUBSCRIBE stops deliveries', T, async () => {
      const dest = TP('unsub');
      const c = await open();
      const s = await subscribe(c, dest);
      await publish(c, { destination: dest, body: 'one' });
      assert.equal((await s.next()).body, 'one');
      await withReceipt(c, (receipt) => s.sub.unsubscribe({ receipt }));
      await publish(c, { destination: dest, body: 'two' });
      await s.quiet(300);
    });
  });

  describe('queues', () => {
    it('competing consumers share the messages, each once', T, async () => {
      const a = await subscribe(await open(), Q('rr'));
      const b = await subscribe(await open(), Q('rr'));
      const pub = await open();
      for (let i = 0; i < 6; i++) await publish(pub, { destination: Q('rr'), body: `q${i}` });
      const deadline = Date.now() + 5000;
      while (a.messages.length + b.messages.length < 6 && Date.now() < deadline) await sleep(20);
      await sleep(200);
      const all = [...a.messages, ...b.messages].map((m) => m.body).sort();
      assert.deepEqual(all, ['q0', 'q1', 'q2', 'q3', 'q4', 'q5']);
      assert.ok(a.messages.length >= 1 && b.messages.length >= 1,
        `both consumers get some, got ${a.messages.length}/${b.messages.length}`);
    });

    it('a queue keeps messages sent before anyone subscribed', T, async () => {
      const pub = await open();
      await publish(pub, { destination: Q('early'), body: 'waiting' });
      const s = await subscribe(await open(), Q('early'));
      assert.equal((await s.next(5000)).body, 'waiting');
    });

    it('client-individual: NACK redelivers with redelivered:true, ACKed ones are gone', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('nack'), { ack: 'client-individual' });
      const pub = await open();
      await publish(pub, { destination: Q('nack'), body: 'keep' });
      await publish(pub, { destination: Q('nack'), body: 'retry' });
      const [m1, m2] = await s1.take(2, 5000);
      assert.deepEqual([m1.body, m2.body], ['keep', 'retry']);
      assert.ok(m1.headers.ack, 'client-individual MESSAGE carries an ack header (1.2)');
      assert.notEqual(m1.headers.redelivered, 'true');
      await withReceipt(c1, (receipt) => m1.ack({ receipt }));
      await withReceipt(c1, (receipt) => m2.nack({ receipt }));
      const again = await s1.next(X.nackRedeliveryMs);
      assert.equal(again.body, 'retry');
      assert.equal(again.headers.redelivered, 'true');
      await withReceipt(c1, (receipt) => again.ack({ receipt }));
      await s1.quiet(300);
    });

    it('unacked messages go to another consumer when their consumer disconnects', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('leave'), { ack: 'client-individual' });
      const pub = await open();
      await publish(pub, { destination: Q('leave'), body: 'acked' });
      await publish(pub, { destination: Q('leave'), body: 'orphan' });
      const [m1, m2] = await s1.take(2, 5000);
      assert.equal(m2.body, 'orphan');
      await withReceipt(c1, (receipt) => m1.ack({ receipt }));
      const s2 = await subscribe(await open(), Q('leave'), { ack: 'client-individual' });
      await s2.quiet(200); // nothing for it while c1 holds the message
      await c1.deactivate();
      const m = await s2.next(5000);
      assert.equal(m.body, 'orphan');
      assert.equal(m.headers.redelivered, 'true');
      m.ack();
      await s2.quiet(300); // the acked one is not redelivered
    });

    it('UNSUBSCRIBE with unacked messages hands them to another consumer', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('unsub'), { ack: 'client' });
      const pub = await open();
      await publish(pub, { destination: Q('unsub'), body: 'held' });
      await s1.next(5000);
      const s2 = await subscribe(await open(), Q('unsub'), { ack: 'auto' });
      await withReceipt(c1, (receipt) => s1.sub.unsubscribe({ receipt }));
      const m = await s2.next(5000);
      assert.equal(m.body, 'held');
      assert.equal(m.headers.redelivered, 'true');
    });

    for (const [version, mode] of [['1.1', 'client-individual'], ['1.0', 'client']]) {
      it(`STOMP ${version} acknowledges by message-id (${mode})`, T, async () => {
        const dest = Q(`ack${version.replace('.', '')}`);
        const c1 = await open({ versions: [version] });
        assert.equal(c1.connectedFrame.headers.version, version);
        const s1 = await subscribe(c1, dest, { ack: mode });
        const pub = await open();
        await publish(pub, { destination: dest, body: 'first' });
        await publish(pub, { destination: dest, body: 'second' });
        const [m1, m2] = await s1.take(2, 5000);
        assert.equal(m1.headers.ack, undefined, 'no ack header before 1.2');
        assert.ok(m1.headers['message-id']);
        await withReceipt(c1, (receipt) => m1.ack({ receipt }));
        if (version === '1.1') {
          await withReceipt(c1, (receipt) => m2.nack({ receipt }));
          const again = await s1.next(X.nackRedeliveryMs);
          assert.equal(again.body, 'second');
          assert.equal(again.headers.redelivered, 'true');
        }
        const s2 = await subscribe(await open(), dest);
        await c1.deactivate();
        const m = await s2.next(5000);
        assert.equal(m.body, 'second');
        assert.equal(m.headers.redelivered, 'true');
        await s2.quiet(300);
      });
    }

    it('cumulative client ack settles every earlier message', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('cumulative'), { ack: 'client' });
      const pub = await open();
      for (let i = 0; i < 3; i++) await publish(pub, { destination: Q('cumulative'), body: `c${i}` });
      const ms = await s1.take(3, 5000);
      await withReceipt(c1, (receipt) => ms[1].ack({ receipt })); // settles c0 and c1
      const s2 = await subscribe(await open(), Q('cumulative'));
      await c1.deactivate();
      const m = await s2.next(5000);
      assert.equal(m.body, 'c2');
      await s2.quiet(300);
    });
  });

  describe('receipts and transactions', () => {
    it('RECEIPT for SUBSCRIBE, SEND, BEGIN, COMMIT, UNSUBSCRIBE and DISCONNECT', T, async () => {
      const peer = await rawPeer();
      const steps = [
        ['SUBSCRIBE', { id: 's1', destination: TP('rcpt') }],
        ['SEND', { destination: TP('rcpt') }, 'x'],
        ['SEND', { destination: Q('rcpt') }, 'y'],
        ['BEGIN', { transaction: 't1' }],
        ['COMMIT', { transaction: 't1' }],
        ['UNSUBSCRIBE', { id: 's1' }],
        ['DISCONNECT', {}],
      ];
      for (const [i, [cmd, headers, body]] of steps.entries()) {
        peer.frame(cmd, { ...headers, receipt: `rc-${i}` }, body || '');
        const ids = () => peer.frames.filter((f) => f.command === 'RECEIPT').map((f) => f.headers['receipt-id']);
        const deadline = Date.now() + 5000;
        while (!ids().includes(`rc-${i}`)) {
          assert.ok(Date.now() < deadline, `no RECEIPT for ${cmd}; got ${JSON.stringify(peer.frames.map((f) => f.command))}`);
          await sleep(10);
        }
      }
      const { code } = await withTimeout(peer.closed, 5000, 'close after DISCONNECT');
      assert.ok(code === 1000 || code === 1005, `normal close after DISCONNECT, got ${code}`);
    });

    it('MESSAGE keeps user headers, STOMP 1.2 escapes included', T, async () => {
      const dest = Q('hdrs');
      const c = await open();
      assert.equal(c.connectedFrame.headers.version, '1.2');
      const s = await subscribe(c, dest);
      const headers = {
        'x-user': 'u1',
        'content-type': 'text/plain',
        colon: 'a:b:c',
        newline: 'line1\nline2',
        backslash: 'C:\\path\\x',
        all: 'x:\r\n\\y',
      };
      await publish(c, { destination: dest, body: 'h', headers });
      const m = await s.next(5000);
      for (const [k, v] of Object.entries(headers)) assert.equal(m.headers[k], v, `header ${k}`);
      assert.equal(m.headers.destination, dest);
      assert.equal(m.headers.subscription, s.sub.id);
      assert.equal(m.headers.receipt, undefined, 'the SEND\'s receipt header stays with the gateway');
    });

    it('transaction: sends take effect only on COMMIT, never after ABORT', T, async () => {
      const dest = TP('tx');
      const got = await subscribe(await open(), dest);
      const c = await open();
      const tx = c.begin();
      c.publish({ destination: dest, body: 'tx-1', headers: { transaction: tx.id } });
      c.publish({ destination: dest, body: 'tx-2', headers: { transaction: tx.id } });
      await publish(c, { destination: dest, body: 'outside' });
      assert.deepEqual((await got.take(1, 5000)).map((m) => m.body), ['outside']);
      await got.quiet(200);
      tx.commit();
      await sync(c, target);
      assert.deepEqual((await got.take(3, 5000)).map((m) => m.body), ['outside', 'tx-1', 'tx-2']);
      assert.equal(got.messages[1].headers.transaction, undefined, 'no transaction header on delivery');

      const tx2 = c.begin();
      c.publish({ destination: dest, body: 'aborted', headers: { transaction: tx2.id } });
      tx2.abort();
      await sync(c, target);
      await publish(c, { destination: dest, body: 'after-abort' });
      assert.equal((await got.next(5000)).body, 'after-abort');
      await got.quiet(200);
    });

    it('transaction: an ACK inside an aborted transaction does not take effect, a committed one does', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('txack'), { ack: 'client-individual' });
      const pub = await open();
      await publish(pub, { destination: Q('txack'), body: 'a' });
      const m = await s1.next(5000);
      const tx = c1.begin();
      m.ack({ transaction: tx.id });
      tx.abort();
      await sync(c1, target);
      const s2 = await subscribe(await open(), Q('txack'), { ack: 'auto' });
      await c1.deactivate();
      const again = await s2.next(5000);
      assert.equal(again.body, 'a');
      assert.equal(again.headers.redelivered, 'true');

      const c3 = await open();
      const s3 = await subscribe(c3, Q('txack2'), { ack: 'client-individual' });
      await publish(pub, { destination: Q('txack2'), body: 'b' });
      const mb = await s3.next(5000);
      const tx3 = c3.begin();
      mb.ack({ transaction: tx3.id });
      tx3.commit();
      await sync(c3, target);
      const s4 = await subscribe(await open(), Q('txack2'));
      await c3.deactivate();
      await s4.quiet(400);
    });
  });

  describe('bodies', () => {
    it('binary body with NUL bytes round-trips with content-length', T, async () => {
      const dest = Q('bin');
      const c = await open();
      const s = await subscribe(c, dest);
      const body = new Uint8Array([0, 1, 2, 0, 255, 0x0a, 0, 0x7f, 0xfe, 0]);
      await publish(c, { destination: dest, binaryBody: body, headers: { 'content-type': 'application/octet-stream' } });
      const m = await s.next(5000);
      assert.equal(m.isBinaryBody, true);
      assert.deepEqual(Buffer.from(m.binaryBody), Buffer.from(body));
      assert.equal(m.headers['content-length'], String(body.length));
      assert.equal(m.headers['content-type'], 'application/octet-stream');
    });

    it('a 1 MiB body arrives intact', T, async () => {
      const dest = Q('big');
      const c = await open();
      const s = await subscribe(c, dest);
      const chunk = 'abcdefghijklmnopqrstuvwxyz012345';
      const body = chunk.repeat((1024 * 1024) / chunk.length);
      await publish(c, { destination: dest, body });
      const m = await s.next(10000);
      assert.equal(m.body.length, body.length);
      assert.equal(m.body, body);
    });
  });

  describe('temp queues', () => {
    it('temp-queue reply-to: the reply comes back on the requester session', T, async () => {
      const service = Q('rpc');
      const requests = await subscribe(await open(), service);
      const requester = await open();
      const replies = new Collector();
      requester.onUnhandledMessage = (m) => replies.push(m);
      await publish(requester, { destination: service, body: 'ping', headers: { 'reply-to': '/temp-queue/answers' } });
      const req = await requests.next(5000);
      assert.match(req.headers['reply-to'], X.tempReplyTo);
      const server = clients[0];
      await publish(server, { destination: req.headers['reply-to'], body: 'pong' });
      const reply = await replies.next(5000);
      assert.equal(reply.body, 'pong');
      assert.equal(reply.headers.subscription, '/temp-queue/answers');
    });
  });
}

// Each broker's block runs concurrently with the other's (tests inside a block one after
// the other): the brokers start in parallel and the wall time is the slower block's.
describe('stompjs through the gateway to real brokers', { concurrency: true }, () => {
  for (const target of targets) describe(`stompjs against ${target.name}`, { concurrency: 1 }, () => checks(target));
});
