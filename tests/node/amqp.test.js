'use strict';
// AMQP 0-9-1 over WebSocket with real clients: amqplib (its Connection over a `ws` stream,
// promise and callback models) and @cloudamqp/amqp-client's AMQPWebSocketClient, each run
// side by side against two targets on the same RabbitMQ:
//   - the gateway's `amqp` bridge at /amqp (clients log in as a gateway realm user; the
//     bridge uses its own pooled broker connections);
//   - a plain byte relay from a WebSocket to RabbitMQ's TCP port, so the same check shows
//     what RabbitMQ itself does.
// Where the gateway legitimately differs from RabbitMQ a check reads `target.expect` (kept
// short). Both ways across the bridge: what a WebSocket client publishes, amqplib connected
// straight to RabbitMQ reads, and the other way round. Gateway only: many clients share
// `pool_size` broker connections, and the bridge's metrics appear after traffic.
//
// RabbitMQ is the node tests/run.sh starts (RABBITMQ_AMQP_URL), or a private one started
// here. A gateway built without the amqp bridge skips its half with that reason.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');

const { Gateway, freePort, httpGet, sleep } = require('./lib/gateway');
const { startRabbitMQ } = require('./lib/brokers');
const {
  amqplibOverWebSocket, amqplibDirect, openWebSocket, replyCode, amqplibClient, amqpClientJs, withTimeout,
  RawAmqp, rawFrame, defs, amqpService,
} = require('./lib/amqp');
const { gatewayTarget, relayTarget, names, collector, POOL_SIZE } = require('./lib/amqp-targets');

const T = { timeout: 30000 };

let rabbit;
const targets = [gatewayTarget(), relayTarget()];

before(async () => {
  rabbit = await startRabbitMQ();
  for (const t of targets) await t.start(rabbit);
}, { timeout: 180000 });

after(async () => {
  for (const t of targets) await t.stop();
  if (rabbit) await rabbit.stop();
}, { timeout: 60000 });

for (const target of targets) {
  const X = target.expect;
  for (const client of [amqplibClient, amqpClientJs]) {
    describe(`${client.name} against ${target.name}`, () => {
      const skip = () => target.unavailable;
      const open = () => client.connect(target.url(), target.creds);
      const n = (what) => names(target, client, what);

      it('negotiates Tune: frame_max 131072 (both defaults), the server\'s channel-max', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        try {
          // amqplib asks for 131072 and the server offers 131072; amqp-client asks for 8192.
          assert.equal(c.tune.frameMax, client === amqplibClient ? 131072 : 8192);
          assert.equal(c.tune.channelMax, X.channelMax);
        } finally { await c.close(); }
      });

      it('declares an exchange and a queue, binds, publishes with confirms, consumes with manual ack', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel({ confirm: true });
        const ex = n('direct');
        const q = n('work');
        await ch.declareExchange(ex, 'direct');
        const d = await ch.declareQueue(q);
        assert.equal(d.queue, q);
        assert.equal(d.messageCount, 0);
        await ch.bind(q, ex, 'job');
        // Confirms resolve only once the broker has taken each message; the unroutable one
        // (no binding for "other") is confirmed too: without `mandatory` it is dropped.
        await Promise.all([
          ch.publish(ex, 'job', Buffer.from('one'), { headers: { n: 1 }, contentType: 'text/plain' }),
          ch.publish(ex, 'job', Buffer.from('two'), { headers: { n: 2 } }),
          ch.publish(ex, 'other', Buffer.from('lost')),
          ch.publish(ex, 'job', Buffer.from('three'), { headers: { n: 3 } }),
        ]);
        assert.equal((await ch.checkQueue(q)).messageCount, 3);
        const got = collector();
        const tag = await ch.consume(q, (m) => got.push(m));
        const msgs = await got.wait(3);
        assert.deepEqual(msgs.map((m) => m.body.toString()), ['one', 'two', 'three']);
        assert.deepEqual(msgs.map((m) => m.headers.n), [1, 2, 3]);
        assert.deepEqual(msgs.map((m) => [m.exchange, m.routingKey, m.redelivered]),
          [[ex, 'job', false], [ex, 'job', false], [ex, 'job', false]]);
        for (const m of msgs) await ch.ack(m);
        await ch.cancel(tag);
        // Acked, the messages are gone: a fresh channel (which would get any unacked
        // message back) finds the queue empty.
        await ch.close();
        const ch2 = await c.channel();
        assert.equal((await ch2.checkQueue(q)).messageCount, 0);
        assert.equal(await ch2.get(q), null);
        await ch2.deleteQueue(q);
        await ch2.deleteExchange(ex);
        await c.close();
      });

      it('nack with requeue brings the message back marked redelivered; ack then removes it', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel({ confirm: true });
        const q = n('nack');
        await ch.declareQueue(q);
        await ch.publish('', q, Buffer.from('job-1'));
        const got = collector();
        await ch.consume(q, (m) => got.push(m));
        const [first] = await got.wait(1);
        assert.equal(first.redelivered, false);
        await ch.nack(first, true);
        const [, again] = await got.wait(2);
        assert.equal(again.body.toString(), 'job-1');
        assert.equal(again.redelivered, true);
        assert.notEqual(again.deliveryTag, first.deliveryTag);
        await ch.ack(again);
        await sleep(100);
        assert.equal(got.seen.length, 2, 'nothing else delivered after the ack');
        await ch.close();
        const ch2 = await c.channel();
        assert.equal((await ch2.checkQueue(q)).messageCount, 0);
        await ch2.deleteQueue(q);
        await c.close();
      });

      it('prefetch 2: two unacked deliveries at a time, one more per ack; nack without requeue drops', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel({ confirm: true });
        const q = n('prefetch');
        await ch.declareQueue(q);
        for (let i = 1; i <= 5; i++) await ch.publish('', q, Buffer.from(`p${i}`));
        await ch.qos(2);
        const got = collector();
        await ch.consume(q, (m) => got.push(m));
        await got.wait(2);
        await sleep(200);
        assert.deepEqual(got.seen.map((m) => m.body.toString()), ['p1', 'p2'], 'only the prefetch window is delivered');
        await ch.ack(got.seen[0]);
        await got.wait(3);
        await sleep(200);
        assert.equal(got.seen.length, 3, 'one ack, one more delivery');
        // Dropped, not requeued: p2 never comes back.
        await ch.nack(got.seen[1], false);
        await got.wait(4);
        for (const m of got.seen.slice(2)) await ch.ack(m);
        await got.wait(5);
        await ch.ack(got.seen[4]);
        await sleep(200);
        assert.deepEqual(got.seen.map((m) => m.body.toString()), ['p1', 'p2', 'p3', 'p4', 'p5']);
        await ch.close();
        const ch2 = await c.channel();
        assert.equal((await ch2.checkQueue(q)).messageCount, 0);
        await ch2.deleteQueue(q);
        await c.close();
      });

      it('basic.get: empty queue gives nothing, then messages one at a time with the count left', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel({ confirm: true });
        const q = n('get');
        await ch.declareQueue(q);
        assert.equal(await ch.get(q), null);
        await ch.publish('', q, Buffer.from('a'));
        await ch.publish('', q, Buffer.from('b'));
        const a = await ch.get(q);
        assert.equal(a.body.toString(), 'a');
        assert.equal(a.messageCount, 1);
        assert.equal(a.redelivered, false);
        await ch.ack(a);
        const b = await ch.get(q);
        assert.equal(b.body.toString(), 'b');
        assert.equal(b.messageCount, 0);
        // Nacked with requeue, the same message is got again, redelivered.
        await ch.nack(b, true);
        const b2 = await ch.get(q);
        assert.equal(b2.body.toString(), 'b');
        assert.equal(b2.redelivered, true);
        await ch.ack(b2);
        assert.equal(await ch.get(q), null);
        await ch.deleteQueue(q);
        await c.close();
      });

      it('carries a 1 MiB binary body (many body frames) both by consume and by get', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel({ confirm: true });
        const q = n('big');
        await ch.declareQueue(q);
        const body = crypto.randomBytes(1024 * 1024);
        body[0] = 0; body[1] = 0xff; // a NUL and a non-UTF-8 byte up front
        const sum = crypto.createHash('sha256').update(body).digest('hex');
        await ch.publish('', q, body, { contentType: 'application/octet-stream' });
        await ch.publish('', q, body);
        const got = collector();
        const tag = await ch.consume(q, (m) => got.push(m));
        const delivered = await got.wait(2, 15000);
        for (const m of delivered) {
          assert.equal(m.body.length, body.length);
          assert.equal(crypto.createHash('sha256').update(m.body).digest('hex'), sum);
          await ch.ack(m);
        }
        // Both delivered and acked before the cancel: nothing is in flight for it.
        await ch.cancel(tag);
        await ch.publish('', q, body);
        const m = await ch.get(q);
        assert.ok(m, 'the third 1 MiB message by basic.get');
        assert.equal(crypto.createHash('sha256').update(m.body).digest('hex'), sum);
        await ch.ack(m);
        await ch.deleteQueue(q);
        await c.close();
      });

      it('passive declare of a missing queue: 404 closes that channel, the connection carries on', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel();
        const missing = n('missing');
        const err = await ch.checkQueue(missing).then(() => null, (e) => e);
        assert.ok(err, 'passive declare of a missing queue must fail');
        assert.equal(replyCode(err), 404, err.message);
        assert.match(err.message, /NOT_FOUND/);
        // Another channel on the same connection works end to end.
        const ch2 = await c.channel({ confirm: true });
        const q = n('after404');
        await ch2.declareQueue(q);
        await ch2.publish('', q, Buffer.from('still here'));
        const m = await ch2.get(q);
        assert.equal(m.body.toString(), 'still here');
        await ch2.ack(m);
        await ch2.deleteQueue(q);
        await c.close();
      });

      it('returns an unroutable mandatory publish (312 NO_ROUTE) and still confirms it', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel({ confirm: true });
        const ex = n('mandatory');
        await ch.declareExchange(ex, 'direct');
        await ch.publish(ex, 'nobody', Buffer.from('bounce'), {}, { mandatory: true });
        // basic.return comes before the confirm (spec 0-9-1 and RabbitMQ's confirms doc).
        assert.equal(ch.returned.length, 1, 'one basic.return before the confirm');
        assert.equal(ch.returned[0].replyCode, 312);
        assert.equal(ch.returned[0].replyText, 'NO_ROUTE');
        assert.equal(ch.returned[0].body.toString(), 'bounce');
        await ch.deleteExchange(ex);
        await c.close();
      });

      it('an ack of an unknown delivery tag on a consuming channel: 406 closes it, the connection carries on', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel();
        const q = await ch.declareQueue('', { exclusive: true });
        await ch.consume(q.queue, () => {});
        await ch.ackTag(4242);
        const err = await withTimeout(ch.closed, 5000, 'channel close after a bad ack');
        assert.ok(err, 'closed by the server');
        assert.equal(replyCode(err), 406, err.message);
        assert.match(err.message, /PRECONDITION_FAILED/);
        const ch2 = await c.channel();
        const q2 = await ch2.declareQueue('', { exclusive: true });
        assert.match(q2.queue, /^amq\.gen-/);
        await c.close();
      });

      it('an ack of an unknown delivery tag on a channel without a consumer', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel();
        await ch.ackTag(4242);
        const closed = await Promise.race([ch.closed, sleep(1000).then(() => 'open')]);
        if (X.unknownTagIdle.close) {
          assert.notEqual(closed, 'open', 'Channel.Close within 1 s');
          assert.equal(replyCode(closed), X.unknownTagIdle.close, closed.message);
        } else {
          assert.equal(closed, 'open', 'no Channel.Close for the ack itself');
          const err = await ch.declareQueue('', { exclusive: true }).then(() => null, (e) => e);
          assert.ok(err, 'the next method on that channel fails');
          assert.equal(replyCode(err), X.unknownTagIdle.next, err.message);
        }
        const ch2 = await c.channel();
        const q2 = await ch2.declareQueue('', { exclusive: true });
        assert.match(q2.queue, /^amq\.gen-/);
        await c.close();
      });

      it('another connection\'s exclusive queue is 405 RESOURCE_LOCKED', T, async (t) => {
        if (skip()) return t.skip(skip());
        const owner = await open();
        const other = await open();
        try {
          const q = n('exclusive');
          await (await owner.channel()).declareQueue(q, { exclusive: true });
          const ch = await other.channel();
          const err = await ch.declareQueue(q, { exclusive: true }).then(() => null, (e) => e);
          assert.ok(err, 'declaring another connection\'s exclusive queue must fail');
          assert.equal(replyCode(err), 405, err.message);
          assert.match(err.message, /RESOURCE_LOCKED/);
        } finally {
          await other.close();
          await owner.close();
        }
      });

      it('refuses a vhost that is not served with 530 NOT_ALLOWED', T, async (t) => {
        if (skip()) return t.skip(skip());
        const err = await client.connect(target.url(), { ...target.creds, vhost: 'no-such-vhost' })
          .then(async (c) => { await c.close(); return null; }, (e) => e);
        assert.ok(err, 'Connection.Open of an unknown vhost must fail');
        assert.equal(replyCode(err), 530, err.message);
        assert.match(err.message, /NOT_ALLOWED/);
      });

      it('refuses a wrong password with 403 ACCESS_REFUSED', T, async (t) => {
        if (skip()) return t.skip(skip());
        const err = await client.connect(target.url(), target.badCreds).then(async (c) => { await c.close(); return null; }, (e) => e);
        assert.ok(err, 'a wrong password must not open a connection');
        assert.equal(replyCode(err), 403, err.message);
        assert.match(err.message, /ACCESS.REFUSED/);
      });

      it('closes cleanly: Connection.Close answered, then the WebSocket ends', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const ch = await c.channel();
        await ch.declareQueue('', { exclusive: true });
        await withTimeout(c.close(), 5000, 'connection close');
        const code = await withTimeout(c.wsClosed, 5000, 'WebSocket close');
        // After Close-Ok either end may close the WebSocket first: the client (both
        // libraries close without a status code: 1005) or the server (1000). A dropped
        // socket (1006) or an error code is not a clean close.
        assert.ok([1000, 1005].includes(code), `WebSocket close code ${code}`);
      });

      it('both ways across: published here is read by amqplib on RabbitMQ\'s TCP port, and back', T, async (t) => {
        if (skip()) return t.skip(skip());
        const c = await open();
        const direct = await amqplibDirect(rabbit.url);
        try {
          const ch = await c.channel({ confirm: true });
          const dch = await direct.createConfirmChannel();
          const toDirect = n('to-direct');
          const fromDirect = n('from-direct');
          await dch.assertQueue(toDirect, { durable: false });
          await dch.assertQueue(fromDirect, { durable: false });
          const body = Buffer.from([0, 1, 2, 0xfe, 0xff, ...Buffer.from('über')]);
          await ch.publish('', toDirect, body, { headers: { from: 'ws' }, messageId: 'm-1' });
          const m = await dch.get(toDirect, { noAck: true });
          assert.ok(m, 'amqplib on TCP gets the message published over the WebSocket');
          assert.deepEqual(m.content, body);
          assert.equal(m.properties.headers.from, 'ws');
          assert.equal(m.properties.messageId, 'm-1');

          await new Promise((resolve, reject) => dch.sendToQueue(fromDirect, Buffer.from('from tcp'),
            { headers: { from: 'tcp' }, correlationId: 'c-9' }, (e) => (e ? reject(e) : resolve())));
          const got = collector();
          await ch.consume(fromDirect, (x) => got.push(x));
          const [w] = await got.wait(1);
          assert.equal(w.body.toString(), 'from tcp');
          assert.equal(w.headers.from, 'tcp');
          assert.equal(w.raw.properties.correlationId, 'c-9');
          await ch.ack(w);
          await dch.deleteQueue(toDirect);
          await dch.deleteQueue(fromDirect);
        } finally {
          await c.close();
          await direct.close();
        }
      });
    });
  }

  describe(`amqplib callback model against ${target.name}`, () => {
    it('opens a channel, declares, publishes with a confirm and gets the message', T, async (t) => {
      if (target.unavailable) return t.skip(target.unavailable);
      const conn = await amqplibOverWebSocket(target.url(), { ...target.creds, model: 'callback' });
      conn.on('error', () => {});
      const q = names(target, { name: 'cb' }, 'q');
      const body = await new Promise((resolve, reject) => {
        conn.createConfirmChannel((err, ch) => {
          if (err) return reject(err);
          ch.assertQueue(q, { durable: false }, (err1) => {
            if (err1) return reject(err1);
            ch.sendToQueue(q, Buffer.from('callback'), {}, (err2) => {
              if (err2) return reject(err2);
              ch.get(q, { noAck: true }, (err3, m) => {
                if (err3) return reject(err3);
                ch.deleteQueue(q, {}, () => resolve(m && m.content.toString()));
              });
            });
          });
        });
      });
      assert.equal(body, 'callback');
      await new Promise((resolve, reject) => conn.close((e) => (e ? reject(e) : resolve())));
    });
  });
}

// Basic.Cancel with deliveries in flight: the 0-9-1 spec and RabbitMQ send every delivery
// for a consumer before its Cancel-Ok, so a client may forget the consumer at Cancel-Ok
// (amqplib then closes the channel on an "Unknown consumer"; amqp-client drops the delivery
// unacked). Read off the wire, over many rounds, since the window is short.
for (const target of targets) {
  describe(`consumer cancel against ${target.name}`, () => {
    it('no basic.deliver for a consumer after its basic.cancel-ok', { timeout: 60000 }, async (t) => {
      if (target.unavailable) return t.skip(target.unavailable);
      const conn = await amqplibOverWebSocket(target.url(), target.creds);
      conn.on('error', () => {});
      const late = [];
      const cancelled = new Set();
      conn.ws.on('message', (data) => {
        // Whole frames per message from the gateway; the relay's may be cut, so scan frames.
        for (let i = 0; i + 7 <= data.length;) {
          const size = data.readUInt32BE(i + 3);
          if (i + 8 + size > data.length) break;
          if (data[i] === 1 && data.readUInt16BE(i + 7) === 60) {
            const method = data.readUInt16BE(i + 9);
            const tag = data.subarray(i + 12, i + 12 + data[i + 11]).toString();
            if (method === 31) cancelled.add(tag);                       // cancel-ok
            if (method === 60 && cancelled.has(tag)) late.push(tag);      // deliver
          }
          i += 8 + size;
        }
      });
      try {
        for (let round = 0; round < 20; round++) {
          const ch = await conn.createConfirmChannel();
          const errors = [];
          ch.on('error', (e) => errors.push(e));
          const q = (await ch.assertQueue('', { exclusive: true })).queue;
          for (let i = 0; i < 20; i++) ch.sendToQueue(q, crypto.randomBytes(64 * 1024));
          await ch.waitForConfirms();
          let first;
          const seen = new Promise((resolve) => { first = resolve; });
          const { consumerTag } = await ch.consume(q, () => first(), { noAck: false });
          await seen;
          await ch.cancel(consumerTag);
          await sleep(50);
          assert.deepEqual(late, [], `round ${round}: basic.deliver frames after their consumer's cancel-ok`);
          assert.deepEqual(errors.map((e) => e.message), [], `round ${round}: the channel stays open`);
          await ch.close();
        }
      } finally {
        await conn.close().catch(() => {});
      }
    });
  });
}

// Raw bytes, no client library: what comes back for the protocol header and for garbage.
for (const target of targets) {
  describe(`raw frames against ${target.name}`, () => {
    /** A WebSocket collecting binary messages, with its close code. */
    async function rawSocket() {
      const ws = await openWebSocket(target.url(), ['amqp']);
      const messages = [];
      let notify = null;
      ws.on('message', (data, isBinary) => { messages.push({ data, isBinary }); if (notify) notify(); });
      const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
      const bytes = async (n, ms = 5000) => {
        const deadline = Date.now() + ms;
        while (Buffer.concat(messages.map((m) => m.data)).length < n) {
          assert.ok(Date.now() < deadline, `${n} bytes within ${ms} ms`);
          await new Promise((resolve) => { notify = resolve; setTimeout(resolve, 50); });
        }
        return Buffer.concat(messages.map((m) => m.data));
      };
      return { ws, messages, closed, bytes };
    }

    it('answers the 0-9-1 protocol header with Connection.Start on channel 0', T, async (t) => {
      if (target.unavailable) return t.skip(target.unavailable);
      const s = await rawSocket();
      s.ws.send(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
      const head = await s.bytes(7);
      const size = head.readUInt32BE(3);
      const all = await s.bytes(7 + size + 1);
      assert.equal(all[0], 1, 'a method frame');
      assert.equal(all.readUInt16BE(1), 0, 'channel 0');
      assert.deepEqual([all.readUInt16BE(7), all.readUInt16BE(9)], [10, 10], 'connection.start');
      assert.deepEqual([all[11], all[12]], [0, 9], 'version 0-9');
      assert.equal(all[7 + size], 0xce, 'frame end');
      assert.ok(s.messages.every((m) => m.isBinary), 'binary messages only');
      // The gateway sends one AMQP frame per WebSocket message; RabbitMQ's TCP reads, as
      // relayed, may cut anywhere, so only the gateway is held to it.
      if (target.kind === 'gateway') assert.equal(s.messages[0].data.length, 7 + size + 1, 'Connection.Start alone in the first message');
      s.ws.terminate();
    });

    // Connection-level errors: Connection.Close with the code, then the socket ends.
    const hard = [
      ['a method on a channel that was never opened', 504, (p) => {
        p.method(5, defs.QueueDeclare, { ticket: 0, queue: 'x', passive: false, durable: false, exclusive: false,
          autoDelete: false, nowait: false, arguments: {} });
      }],
      ['channel.open above the channel-max it offered', target.expect.channelAboveMax, (p) => {
        p.method(p.tune.channelMax + 1, defs.ChannelOpen, { outOfBand: '' });
      }],
      ['a body frame with no content header before it', 505, async (p) => {
        p.method(1, defs.ChannelOpen, { outOfBand: '' });
        await p.expect(defs.ChannelOpenOk);
        p.send(rawFrame(3, 1, Buffer.from('stray body')));
      }],
      ['a frame larger than the frame-max it offered', 501, async (p) => {
        p.method(1, defs.ChannelOpen, { outOfBand: '' });
        await p.expect(defs.ChannelOpenOk);
        p.method(1, defs.BasicPublish, { ticket: 0, exchange: '', routingKey: 'nowhere', mandatory: false, immediate: false });
        // A body frame whose payload alone is frame-max + 1 (RabbitMQ 3.10 lets a payload of
        // exactly frame-max through, 8 octets over, so that is not used here).
        p.send(defs.encodeProperties(defs.BasicProperties, 1, p.tune.frameMax + 1, {}));
        p.send(rawFrame(3, 1, Buffer.alloc(p.tune.frameMax + 1)));
      }],
    ];
    for (const [what, code, act] of hard) {
      it(`${what}: ${code ? `Connection.Close ${code}` : 'accepted'}`, T, async (t) => {
        if (target.unavailable) return t.skip(target.unavailable);
        const p = await RawAmqp.open(target.url(), target.creds);
        await act(p);
        if (!code) {
          await p.expect(defs.ChannelOpenOk);
          p.ws.terminate();
          return;
        }
        // RabbitMQ takes 3 s to answer an oversized frame.
        const close = await p.connectionClose(10000);
        assert.equal(close.replyCode, code, `${close.replyCode} ${close.replyText}`);
        assert.ok(close.replyText.length > 0, 'with a reason');
        assert.ok(target.expect.hardErrorClose.includes(close.wsCode), `WebSocket close ${close.wsCode}`);
      });
    }

    it('answers a header that is not AMQP 0-9-1 with the 0-9-1 header, then closes', T, async (t) => {
      if (target.unavailable) return t.skip(target.unavailable);
      for (const bad of ['GET / HTTP/1.1\r\n', 'AMQP\x00\x01\x00\x00', 'AMQP\x03\x01\x00\x00']) {
        const s = await rawSocket();
        s.ws.send(Buffer.from(bad, 'latin1'));
        const code = await withTimeout(s.closed, 5000, `close after ${JSON.stringify(bad)}`);
        assert.deepEqual(Buffer.concat(s.messages.map((m) => m.data)), Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'),
          `the 0-9-1 header back for ${JSON.stringify(bad)}`);
        assert.ok(target.expect.badHeaderClose.includes(code), `close code ${code} after ${JSON.stringify(bad)}`);
      }
    });
  });
}

describe('gateway only', () => {
  const gwt = targets[0];

  /** The gateway process's established TCP connections to RabbitMQ's AMQP port. */
  function brokerConnections() {
    const port = Number(new URL(rabbit.url).port);
    const pid = gwt.gw.proc.pid;
    const inodes = new Set();
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch (_) { /* closed meanwhile */ }
    }
    let count = 0;
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text;
      try { text = fs.readFileSync(table, 'utf8'); } catch (_) { continue; }
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10) continue;
        const remotePort = parseInt(f[2].split(':')[1], 16);
        if (remotePort === port && f[3] === '01' && inodes.has(f[9])) count += 1; // 01: ESTABLISHED
      }
    }
    return count;
  }

  it(`many clients share ${POOL_SIZE} broker connections (pool_size)`, { timeout: 60000 }, async (t) => {
    if (gwt.unavailable) return t.skip(gwt.unavailable);
    const clients = [];
    try {
      for (let i = 0; i < 12; i++) {
        const c = await (i % 2 ? amqpClientJs : amqplibClient).connect(gwt.url(), gwt.creds);
        clients.push(c);
        const ch = await c.channel({ confirm: true });
        const q = await ch.declareQueue('', { exclusive: true });
        await ch.publish('', q.queue, Buffer.from(`client ${i}`));
        assert.equal((await ch.get(q.queue)).body.toString(), `client ${i}`);
      }
      assert.equal(brokerConnections(), POOL_SIZE, `the gateway's TCP connections to RabbitMQ with ${clients.length} clients`);
    } finally {
      for (const c of clients) await c.close();
    }
    assert.equal(brokerConnections(), POOL_SIZE, 'the pool stays after the clients leave');
  });

  it('sends exactly one AMQP frame per WebSocket message, content frames included', T, async (t) => {
    if (gwt.unavailable) return t.skip(gwt.unavailable);
    const conn = await amqplibOverWebSocket(gwt.url(), gwt.creds);
    conn.on('error', () => {});
    const messages = [];
    conn.ws.on('message', (data, isBinary) => messages.push({ data, isBinary }));
    const ch = await conn.createConfirmChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    const body = crypto.randomBytes(300 * 1024); // three body frames at frame_max 131072
    await new Promise((resolve, reject) => ch.sendToQueue(q.queue, body, {}, (e) => (e ? reject(e) : resolve())));
    const m = await ch.get(q.queue, { noAck: true });
    assert.deepEqual(m.content, body);
    await conn.close();
    assert.ok(messages.length >= 7, `messages seen: ${messages.length}`);
    for (const [i, { data, isBinary }] of messages.entries()) {
      assert.ok(isBinary, `message ${i} is binary`);
      assert.ok(data.length >= 8, `message ${i}: ${data.length} bytes`);
      assert.equal(data.length, 8 + data.readUInt32BE(3), `message ${i} (type ${data[0]}) holds one whole frame`);
      assert.equal(data[data.length - 1], 0xce, `message ${i} ends with the frame end octet`);
    }
    // get-ok, its header and the body frames: each in its own message.
    assert.ok(messages.filter(({ data }) => data[0] === 3).length >= 3, 'the body came as separate body-frame messages');
  });

  it('with RabbitMQ not there: /readyz 503 and upgrades to /amqp 503', T, async (t) => {
    if (gwt.unavailable) return t.skip(gwt.unavailable);
    // A port nothing listens on (taken free, then let go).
    const dead = `amqp://guest:guest@127.0.0.1:${await freePort()}/%2f`;
    const gw = await new Gateway({ services: [amqpService({ backend: dead })] }).start();
    try {
      await sleep(500);
      assert.equal((await httpGet(gw.port, '/readyz')).status, 503);
      const err = await openWebSocket(gw.url('/amqp')).then((ws) => { ws.terminate(); return null; }, (e) => e);
      assert.ok(err, 'the upgrade is refused');
      assert.equal(err.status, 503, err.message);
    } finally {
      assert.equal(await gw.stop(), 0, gw.log());
    }
  });

  it('reports the bridge metrics from the contract after traffic', T, async (t) => {
    if (gwt.unavailable) return t.skip(gwt.unavailable);
    const c = await amqplibClient.connect(gwt.url(), gwt.creds);
    const ch = await c.channel({ confirm: true });
    const q = names(gwt, { name: 'metrics' }, 'q');
    await ch.declareQueue(q);
    await ch.publish('', q, Buffer.from('m'));
    const got = collector();
    await ch.consume(q, (m) => got.push(m));
    const [m] = await got.wait(1);
    await ch.ack(m);
    await ch.checkQueue(n404(gwt)).catch(() => {});
    const ch2 = await c.channel();
    await ch2.deleteQueue(q);
    const text = await gwt.gw.metrics();
    await c.close();
    const series = (name) => text.split('\n').filter((l) => l.startsWith(name) && /service="amqp"/.test(l));
    for (const name of ['gateway_amqp_sessions', 'gateway_amqp_channels', 'gateway_amqp_methods_in_total',
      'gateway_amqp_methods_out_total', 'gateway_amqp_publishes_total', 'gateway_amqp_confirms_total',
      'gateway_amqp_deliveries_total', 'gateway_amqp_acks_total', 'gateway_amqp_channel_exceptions_total']) {
      assert.ok(series(name).length > 0, `${name}{service="amqp"} in /metrics:\n${text}`);
    }
    const value = (line) => Number(line.trim().split(/\s+/).pop());
    assert.ok(series('gateway_amqp_publishes_total').some((l) => value(l) >= 1), 'publishes counted');
    assert.ok(series('gateway_amqp_deliveries_total').some((l) => value(l) >= 1), 'deliveries counted');
    assert.ok(series('gateway_amqp_channel_exceptions_total').some((l) => /code="404"/.test(l) && value(l) >= 1),
      'the 404 counted by code');
    assert.ok(series('gateway_amqp_methods_in_total').some((l) => /class="basic"/.test(l)), 'methods in by class');
  });
});

const n404 = (target) => names(target, { name: 'metrics' }, 'missing');

describe('the /amqp upgrade', () => {
  it('the gateway answers the /amqp upgrade with 101 with and without the amqp token', T, async (t) => {
    const gwt = targets[0];
    if (gwt.unavailable) return t.skip(gwt.unavailable);
    for (const protocols of [['amqp'], undefined]) {
      const ws = await openWebSocket(gwt.url(), protocols);
      assert.equal(ws.protocol, protocols ? 'amqp' : '');
      ws.terminate();
    }
  });
});

// AMQP over the HTTP fallback: the browser's AMQP client unchanged, its WebSocket swapped for
// gateway-client.js's adapter limited to the fallback transport (binary frames go base64 in
// the events stream and the POSTs).
describe('@cloudamqp/amqp-client over the HTTP fallback (gateway-client.js)', () => {
  const target = targets[0];
  it('logs in, publishes with confirms and consumes, every frame binary over SSE + POST', T, async (t) => {
    if (target.unavailable) return t.skip(target.unavailable);
    const { Connection } = await import('../../gateway/static/gateway-client.mjs');
    const saved = globalThis.WebSocket;
    globalThis.WebSocket = Connection.webSocketClass({ transports: ['http'], fetch: globalThis.fetch });
    let c;
    try {
      c = await amqpClientJs.connect(target.url(), target.creds);
    } finally {
      globalThis.WebSocket = saved;
    }
    try {
      const ch = await c.channel({ confirm: true });
      const q = names(target, amqpClientJs, 'fallback');
      await ch.declareQueue(q);
      const bodies = ['one', 'two\u0000with a NUL', Buffer.from([0, 255, 13, 10]).toString('latin1')];
      for (const b of bodies) await ch.publish('', q, Buffer.from(b, 'latin1'));
      const got = collector();
      await ch.consume(q, got.push);
      const msgs = await got.wait(3);
      assert.deepEqual(msgs.map((m) => m.body.toString('latin1')), bodies);
      for (const m of msgs) await ch.ack(m);
    } finally {
      await c.close();
    }
  });
});

// Live token expiry: a client admitted with a JWT (?access_token=) is told Connection.Close
// 320 (CONNECTION_FORCED) "token expired" when the token's exp passes, then the WebSocket
// closes with 1008. AMQP has no refresh on a live connection: the client reconnects.
describe('the amqp bridge with an expiring token', () => {
  const { hs256, expOf } = require('./lib/jwt');
  const SECRET = 'node-amqp-token-secret-0123456789abcdef';
  let gw;

  before(async () => {
    if (targets[0].unavailable) return;
    gw = await new Gateway({
      services: [amqpService({ backend: rabbit.url, pool_size: 1 })],
      sections: { auth: { jwt: { hs256_secret: SECRET } } },
    }).start();
    const deadline = Date.now() + 20000;
    while ((await httpGet(gw.port, '/readyz').catch(() => ({}))).status !== 200) {
      assert.ok(Date.now() < deadline, `/readyz not 200 after 20 s\n${gw.log()}`);
      await sleep(50);
    }
  }, { timeout: 30000 });

  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0, gw.log());
  });

  it('amqplib sees Connection.Close 320 "token expired" at exp, then close 1008', T, async (t) => {
    if (targets[0].unavailable) return t.skip(targets[0].unavailable);
    const token = hs256(SECRET, { sub: 'ann', expIn: 3 });
    // The handshake said who this is: the SASL user repeats it (the password is not checked).
    const conn = await amqplibOverWebSocket(`${gw.url('/amqp')}?access_token=${token}`,
      { username: 'ann', password: 'unused' });
    const wsClosed = new Promise((resolve) => conn.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    const closed = new Promise((resolve) => conn.on('close', resolve));
    conn.on('error', () => {});
    // Live until then: a queue declared and consumed.
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    const q = `tokens.${crypto.randomUUID()}`;
    await ch.assertQueue(q, { exclusive: true });
    const got = [];
    await ch.consume(q, (m) => got.push(m.content.toString()), { noAck: true });
    ch.sendToQueue(q, Buffer.from('before exp'));
    const err = await withTimeout(closed, 8000, 'the connection to close');
    assert.ok(Date.now() / 1000 >= expOf(token), 'not before exp');
    assert.deepEqual(got, ['before exp']);
    assert.equal(err.code, 320, err.message);
    assert.match(err.message, /token expired/);
    const ws = await withTimeout(wsClosed, 5000, 'the WebSocket close');
    assert.deepEqual(ws, { code: 1008, reason: 'token expired' });
  });
});
