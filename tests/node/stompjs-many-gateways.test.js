'use strict';
// @stomp/stompjs on two gateways (server.node gw-a and gw-c) sharing one RabbitMQ: a topic
// published on one reaches subscribers on both, a queue filled on one is consumed on the
// other, and a request sent with reply-to:/temp-queue/... on gw-a is answered from gw-c at
// the reply-to it was given. tests/e2e/test_many_gateways.py does the same with stomp.py
// and three gateways, and the counts on the broker.
//
// RabbitMQ is the node tests/run.sh starts (RABBITMQ_AMQP_URL), or a private one started here.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { Gateway, stompService, httpGet, sleep } = require('./lib/gateway');
const { startRabbitMQ } = require('./lib/brokers');
const { connect, subscribe, publish, Collector } = require('./lib/stomp');
const { RUN } = require('./lib/targets');

const T = { timeout: 30000 };

async function ready(gw) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const r = await httpGet(gw.port, '/readyz').catch((e) => ({ status: e.message }));
    if (r.status === 200) return;
    assert.ok(Date.now() < deadline, `/readyz is ${r.status} after 20 s\n${gw.log()}`);
    await sleep(50);
  }
}

describe('stompjs across gateways on one RabbitMQ', { concurrency: 1 }, () => {
  let broker;
  const gws = {};
  const clients = [];
  const open = async (node) => {
    const c = await connect(gws[node].url('/ws'), { connectHeaders: { host: '/' } });
    clients.push(c);
    return c;
  };

  before(async () => {
    broker = await startRabbitMQ();
    for (const node of ['gw-a', 'gw-c']) {
      gws[node] = await new Gateway({
        sections: { server: { node } },
        services: [stompService({ backend: broker.url })],
      }).start();
    }
    await Promise.all(Object.values(gws).map(ready));
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.deactivate().catch(() => {})));
    for (const gw of Object.values(gws)) {
      const rc = await gw.stop();
      assert.equal(rc, 0, `gateway exit code ${rc}\n${gw.log()}`);
    }
    if (broker) await broker.stop();
  });

  it('a topic published on one gateway reaches subscribers on both', T, async () => {
    const topic = `/topic/many.${RUN}`;
    const onA = await subscribe(await open('gw-a'), topic);
    const onC = await subscribe(await open('gw-c'), topic);
    await publish(await open('gw-c'), { destination: topic, body: 'from gw-c' });
    for (const sub of [onA, onC]) {
      assert.equal((await sub.next(5000)).body, 'from gw-c');
      await sub.quiet(200);
    }
  });

  it('a queue filled on gw-a is consumed on gw-c', T, async () => {
    const queue = `/queue/many.${RUN}`;
    const consumer = await subscribe(await open('gw-c'), queue);
    const producer = await open('gw-a');
    for (let i = 0; i < 5; i++) await publish(producer, { destination: queue, body: `job-${i}` });
    const got = await consumer.take(5, 5000);
    assert.deepEqual(got.map((m) => m.body), ['job-0', 'job-1', 'job-2', 'job-3', 'job-4']);
  });

  it('a temp-queue request on gw-a is answered from gw-c', T, async () => {
    const service = `/queue/rpc.${RUN}`;
    const server = await open('gw-c');
    const requests = await subscribe(server, service);
    const requester = await open('gw-a');
    const replies = new Collector();
    requester.onUnhandledMessage = (m) => replies.push(m);
    await publish(requester, { destination: service, body: 'ping', headers: { 'reply-to': '/temp-queue/answers' } });
    const req = await requests.next(5000);
    assert.match(req.headers['reply-to'], /^\/amq\/queue\/stomp-gw\.gw-a\..+/);
    await publish(server, { destination: req.headers['reply-to'], body: 'pong' });
    const reply = await replies.next(5000);
    assert.equal(reply.body, 'pong');
    assert.equal(reply.headers.subscription, '/temp-queue/answers');
  });
});
