'use strict';
// AMQP 0-9-1 over WebSocket for the node tests: the gateway's `amqp` service table, a plain
// byte relay (WebSocket <-> RabbitMQ's TCP port, nothing parsed) so every check can run
// against the gateway and, side by side, against RabbitMQ itself, and two clients over a
// WebSocket: amqplib (its Connection over a Duplex made from a `ws` socket) and
// @cloudamqp/amqp-client's AMQPWebSocketClient (the one browsers use).

const net = require('node:net');
const path = require('node:path');
const { WebSocket, WebSocketServer, createWebSocketStream } = require('ws');

const { HOST, freePort } = require('./gateway');

// AMQPWebSocketClient opens `new WebSocket(url)` from the global scope; Node 20 has none
// (Node 22 does). `ws` gives the same browser-style API (binaryType, addEventListener).
if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = WebSocket;
const { AMQPWebSocketClient } = require('@cloudamqp/amqp-client');

// amqplib's package `exports` only opens its two entry points; the Connection that its
// connect() wraps around a TCP socket is reached by path from the resolved entry point.
const AMQPLIB = path.dirname(require.resolve('amqplib'));
const { Connection } = require(path.join(AMQPLIB, 'lib', 'connection'));
const { ChannelModel } = require(path.join(AMQPLIB, 'lib', 'channel_model'));
const { CallbackModel } = require(path.join(AMQPLIB, 'lib', 'callback_model'));
const defs = require(path.join(AMQPLIB, 'lib', 'defs'));
const amqplib = require('amqplib');

/** The [[service]] table of an amqp bridge for non-browser clients (no Origin, no subprotocol). */
function amqpService(settings = {}, over = {}) {
  return {
    name: 'amqp',
    path: '/amqp',
    bridge: 'amqp',
    allow_no_subprotocol: true,
    allow_missing_origin: true,
    ...over,
    settings,
  };
}

/**
 * A WebSocket server on a free loopback port whose every connection is a TCP connection to
 * `amqpUrl`'s host and port, bytes copied both ways (binary messages out, as many as TCP
 * reads give). It stands in for "RabbitMQ with a WebSocket port": what a client sees
 * through it is RabbitMQ's own behaviour. `{ url(), close(), connections }`.
 */
async function startRelay(amqpUrl) {
  const { hostname, port } = new URL(amqpUrl);
  const wss = new WebSocketServer({ host: HOST, port: await freePort() });
  await new Promise((resolve, reject) => { wss.once('listening', resolve); wss.once('error', reject); });
  const sockets = new Set();
  wss.on('connection', (ws) => {
    const tcp = net.connect({ host: hostname, port: Number(port) || 5672 });
    sockets.add(tcp);
    tcp.setNoDelay(true);
    ws.on('message', (data) => tcp.write(data));
    tcp.on('data', (chunk) => ws.send(chunk, { binary: true }));
    ws.on('close', () => tcp.end());
    // RabbitMQ ending the connection is a normal close; a reset (RabbitMQ closes with bytes
    // it did not read still queued, e.g. after a bad protocol header) is 1011. Both follow
    // whatever RabbitMQ sent before, as ws sends in order.
    let reset = false;
    tcp.on('error', () => { reset = true; });
    tcp.on('close', () => { sockets.delete(tcp); ws.close(reset ? 1011 : 1000); });
    ws.on('error', () => tcp.destroy());
  });
  const addr = wss.address();
  return {
    connections: sockets,
    url(p = '/amqp') { return `ws://${HOST}:${addr.port}${p}`; },
    close() {
      for (const s of sockets) s.destroy();
      for (const c of wss.clients) c.terminate();
      return new Promise((resolve) => wss.close(() => resolve()));
    },
  };
}

/** The fields amqplib's connect() sends in start-ok, tune-ok and open (lib/connect.js openFrames). */
function openFields({ username, password, vhost = '/', heartbeat = 0, frameMax = 131072 }) {
  return {
    clientProperties: { product: 'amqplib', information: 'gateway node tests', capabilities: {
      publisher_confirms: true, 'basic.nack': true, consumer_cancel_notify: true,
      exchange_exchange_bindings: true, 'connection.blocked': true, authentication_failure_close: true,
    } },
    mechanism: 'PLAIN',
    response: amqplib.credentials.plain(username, password).response(),
    locale: 'en_US',
    channelMax: 0,
    frameMax,
    heartbeat,
    virtualHost: vhost,
    capabilities: '',
    insist: 0,
  };
}

/** A WebSocket that has opened, or a rejection with the HTTP status of a refused upgrade. */
function openWebSocket(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode}`), { status: res.statusCode }));
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** The first Connection.Close (reply code and text) among the frames `ws` receives. */
function watchConnectionClose(ws) {
  let buf = Buffer.alloc(0);
  const seen = { close: null, stop: () => ws.off('message', onMessage) };
  function onMessage(data) {
    buf = Buffer.concat([buf, data]);
    // Skip the 8-byte protocol header a server sends back when it refuses ours.
    if (buf.length >= 8 && buf.subarray(0, 4).toString('latin1') === 'AMQP') buf = buf.subarray(8);
    while (buf.length >= 7 && buf.length >= 8 + buf.readUInt32BE(3)) {
      const size = buf.readUInt32BE(3);
      const p = buf.subarray(7, 7 + size);
      if (buf[0] === 1 && p.length >= 6 && p.readUInt16BE(0) === 10 && p.readUInt16BE(2) === 50 && !seen.close) {
        const len = p[6];
        seen.close = { code: p.readUInt16BE(4), text: p.subarray(7, 7 + len).toString() };
      }
      buf = buf.subarray(8 + size);
    }
  }
  ws.on('message', onMessage);
  return seen;
}

/**
 * amqplib over a WebSocket (subprotocol `amqp`), as amqplib's own connect() does over TCP:
 * `new Connection(stream)` then `open(fields)`. model 'promise' (default) resolves to a
 * ChannelModel, 'callback' to a CallbackModel; both are what amqplib.connect() gives.
 * `ws` is kept on the model so a test can look at the close code.
 */
async function amqplibOverWebSocket(url, opts = {}) {
  const ws = await openWebSocket(url, opts.protocols || ['amqp']);
  const stream = createWebSocketStream(ws);
  // Socket errors surface through the Connection ('error'/'close'); without a listener here
  // a reset while the stream is idle would be an uncaught exception.
  stream.on('error', () => {});
  const conn = new Connection(stream);
  // amqplib reports a Connection.Close that answers Connection.Open as "Expected
  // ConnectionOpenOk; got <ConnectionClose>", without its code: read the server's frames
  // beside it while opening (a second 'message' listener takes nothing from the stream).
  const handshake = watchConnectionClose(ws);
  try {
    await new Promise((resolve, reject) => conn.open(openFields(opts), (err) => (err ? reject(err) : resolve())));
  } catch (e) {
    const close = handshake.close;
    if (close && typeof e.code !== 'number') {
      e.code = close.code;
      e.message += ` (${close.code} ${close.text})`;
    }
    stream.destroy();
    e.ws = ws;
    throw e;
  } finally {
    handshake.stop();
  }
  const model = opts.model === 'callback' ? new CallbackModel(conn) : new ChannelModel(conn);
  model.ws = ws;
  return model;
}

/** amqplib straight to RabbitMQ's TCP port (the other side of the gateway). */
function amqplibDirect(amqpUrl) {
  return amqplib.connect(amqpUrl);
}

/** @cloudamqp/amqp-client's WebSocket client, connected. */
async function amqpWsClient(url, { username, password, vhost = '/', frameMax, heartbeat = 0 } = {}) {
  const client = new AMQPWebSocketClient({ url, vhost, username, password, frameMax, heartbeat });
  await client.connect();
  return client;
}

// --- one client API over both libraries ---------------------------------------------
// The checks are written once against this small surface; each method is one library call,
// so what a check sees is what that library reports. A message is
// `{ body: Buffer, redelivered, routingKey, exchange, headers, deliveryTag, raw }`.

/** The AMQP reply code of a failed call (channel or connection close), or undefined. */
function replyCode(err) {
  if (!err) return undefined;
  if (typeof err.code === 'number') return err.code;      // amqplib
  const m = /\((\d{3})\)\s*$/.exec(err.message || '');     // AMQPError: "... closed: TEXT (404)"
  if (m) return Number(m[1]);
  const h = /: (\d{3}) \(/.exec(err.message || '');        // amqplib's handshake errors
  return h ? Number(h[1]) : undefined;
}

const amqplibClient = {
  name: 'amqplib',
  async connect(url, creds) {
    const conn = await amqplibOverWebSocket(url, creds);
    // A server-side connection close is also an 'error' event; checks look at what the
    // calls return instead, and an unheard 'error' would end the process.
    conn.on('error', () => {});
    const closed = new Promise((resolve) => conn.ws.once('close', (code) => resolve(code)));
    return {
      tune: { frameMax: conn.connection.frameMax, channelMax: conn.connection.channelMax, heartbeat: conn.connection.heartbeat },
      wsClosed: closed,
      async channel({ confirm = false } = {}) {
        const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
        const errors = [];
        const returned = [];
        ch.on('error', (e) => errors.push(e));
        ch.on('return', (m) => returned.push({ body: m.content, replyCode: m.fields.replyCode, replyText: m.fields.replyText }));
        const norm = (m) => m && {
          body: m.content, redelivered: m.fields.redelivered, routingKey: m.fields.routingKey,
          exchange: m.fields.exchange, headers: m.properties.headers || {}, deliveryTag: m.fields.deliveryTag,
          messageCount: m.fields.messageCount, raw: m,
        };
        // amqplib rejects every call on a channel it closed itself (say, on a delivery it
        // cannot place) with just "Channel closed": add the reason it recorded.
        const why = (p) => Promise.resolve(p).catch((e) => {
          if (errors.length && !e.message.includes(errors[0].message)) e.message += ` (the channel had closed: ${errors[0].message})`;
          throw e;
        });
        const api = {
          errors,
          returned,
          declareExchange: (name, type) => ch.assertExchange(name, type, { durable: false }),
          async declareQueue(name, opts = {}) {
            const r = await ch.assertQueue(name, { durable: false, ...opts });
            return { queue: r.queue, messageCount: r.messageCount };
          },
          async checkQueue(name) {
            const r = await ch.checkQueue(name);
            return { queue: r.queue, messageCount: r.messageCount };
          },
          bind: (q, ex, rk) => ch.bindQueue(q, ex, rk),
          publish(ex, rk, body, props = {}, { mandatory = false } = {}) {
            props = { ...props, mandatory };
            if (!confirm) return Promise.resolve(ch.publish(ex, rk, body, props));
            return new Promise((resolve, reject) => ch.publish(ex, rk, body, props, (err) => (err ? reject(err) : resolve())));
          },
          async consume(q, onMessage) {
            const r = await ch.consume(q, (m) => onMessage(norm(m)), { noAck: false });
            return r.consumerTag;
          },
          cancel: (tag) => ch.cancel(tag),
          qos: (n) => ch.prefetch(n),
          ack: (m) => ch.ack(m.raw),
          // An ack for a tag this channel never delivered; the broker closes the channel.
          ackTag: (tag) => ch.ack({ fields: { deliveryTag: tag } }),
          nack: (m, requeue) => ch.nack(m.raw, false, requeue),
          async get(q) { return norm(await ch.get(q, { noAck: false })) || null; },
          deleteQueue: (q) => ch.deleteQueue(q),
          deleteExchange: (ex) => ch.deleteExchange(ex),
          close: () => ch.close(),
        };
        for (const [k, f] of Object.entries(api)) if (typeof f === 'function') api[k] = (...a) => why(new Promise((resolve) => resolve(f(...a))));
        // Resolves once the channel is closed (by the server or by us), with the error if any.
        api.closed = new Promise((resolve) => ch.once('close', () => resolve(errors[0])));
        return api;
      },
      close: () => conn.close(),
    };
  },
};

const amqpClientJs = {
  name: '@cloudamqp/amqp-client',
  async connect(url, creds) {
    const client = await amqpWsClient(url, creds);
    const closed = new Promise((resolve) => client.socket.addEventListener('close', (ev) => resolve(ev.code)));
    return {
      tune: { frameMax: client.frameMax, channelMax: client.channelMax, heartbeat: client.heartbeat },
      wsClosed: closed,
      async channel({ confirm = false } = {}) {
        const ch = await client.channel();
        if (confirm) await ch.confirmSelect();
        const returned = [];
        const errors = [];
        let channelClosed;
        const closed = new Promise((resolve) => { channelClosed = resolve; });
        // A server-side Channel.Close lands here (the library's default passes it on to the
        // connection's onerror as if the connection had failed).
        ch.onerror = (reason) => { errors.push(new Error(reason)); channelClosed(errors[0]); };
        ch.onReturn = (m) => returned.push({ body: Buffer.from(m.body || []), replyCode: m.replyCode, replyText: m.replyText });
        const norm = (m) => m && {
          body: Buffer.from(m.body || []),
          redelivered: m.redelivered, routingKey: m.routingKey, exchange: m.exchange,
          headers: m.properties.headers || {}, deliveryTag: m.deliveryTag, messageCount: m.messageCount, raw: m,
        };
        return {
          errors,
          returned,
          closed,
          declareExchange: (name, type) => ch.exchangeDeclare(name, type, { durable: false }),
          async declareQueue(name, opts = {}) {
            const r = await ch.queueDeclare(name, {
              durable: false, exclusive: Boolean(opts.exclusive), autoDelete: Boolean(opts.autoDelete),
            });
            return { queue: r.name, messageCount: r.messageCount };
          },
          async checkQueue(name) {
            const r = await ch.queueDeclare(name, { passive: true });
            return { queue: r.name, messageCount: r.messageCount };
          },
          bind: (q, ex, rk) => ch.queueBind(q, ex, rk),
          publish: (ex, rk, body, props = {}, { mandatory = false } = {}) => ch.basicPublish(ex, rk, body, props, mandatory),
          async consume(q, onMessage) {
            const c = await ch.basicConsume(q, { noAck: false }, (m) => onMessage(norm(m)));
            return c.tag;
          },
          cancel: (tag) => ch.basicCancel(tag),
          qos: (n) => ch.basicQos(n),
          ack: (m) => m.raw.ack(),
          ackTag: (tag) => ch.basicAck(tag),
          nack: (m, requeue) => m.raw.nack(requeue),
          async get(q) { return norm(await ch.basicGet(q, { noAck: false })) || null; },
          deleteQueue: (q) => ch.queueDelete(q),
          deleteExchange: (ex) => ch.exchangeDelete(ex),
          close: () => ch.close(),
        };
      },
      close: () => client.close(),
    };
  },
};

// --- a raw AMQP peer ---------------------------------------------------------------
// For checks no client library lets one make (frames out of order, oversized, on channels
// that were never opened): frames encoded and decoded with amqplib's generated codec.

/** One frame: type byte, channel, 4-byte size, payload, frame end. */
function rawFrame(type, channel, payload) {
  const head = Buffer.alloc(7);
  head[0] = type;
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([0xce])]);
}

class RawAmqp {
  /** A WebSocket to `url` with the handshake done as `creds`; resolves to the peer. */
  static async open(url, creds) {
    const peer = new RawAmqp(await openWebSocket(url, ['amqp']));
    peer.ws.send(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
    await peer.expect(defs.ConnectionStart);
    peer.method(0, defs.ConnectionStartOk, {
      clientProperties: { product: 'raw' }, mechanism: 'PLAIN', locale: 'en_US',
      response: Buffer.from(`\0${creds.username}\0${creds.password}`),
    });
    const tune = await peer.expect(defs.ConnectionTune);
    peer.tune = tune.fields;
    peer.method(0, defs.ConnectionTuneOk, { channelMax: tune.fields.channelMax, frameMax: tune.fields.frameMax, heartbeat: 0 });
    peer.method(0, defs.ConnectionOpen, { virtualHost: '/', capabilities: '', insist: false });
    await peer.expect(defs.ConnectionOpenOk);
    return peer;
  }

  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.buf = Buffer.alloc(0);
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
    ws.on('message', (data) => {
      this.buf = Buffer.concat([this.buf, data]);
      while (this.buf.length >= 7 && this.buf.length >= 8 + this.buf.readUInt32BE(3)) {
        const size = this.buf.readUInt32BE(3);
        const f = { type: this.buf[0], channel: this.buf.readUInt16BE(1), payload: this.buf.subarray(7, 7 + size) };
        if (f.type === 1) {
          f.id = f.payload.readUInt32BE(0);
          f.name = defs.info(f.id).name;
          f.fields = defs.decode(f.id, f.payload.subarray(4));
        }
        this.buf = this.buf.subarray(8 + size);
        this.frames.push(f);
        for (const w of this.waiters.splice(0)) w();
      }
    });
    ws.once('close', () => { for (const w of this.waiters.splice(0)) w(); });
  }

  method(channel, id, fields) { this.ws.send(defs.encodeMethod(id, channel, fields)); }

  send(buf) { this.ws.send(buf); }

  /** The next method frame (any other frames skipped), which must be `id`; fails after `ms`. */
  async expect(id, ms = 5000) {
    const f = await this.nextMethod(ms);
    if (f.id !== id) throw new Error(`expected ${defs.info(id).name}, got ${f.name} ${JSON.stringify(f.fields)}`);
    return f;
  }

  async nextMethod(ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === 1);
      if (i >= 0) return this.frames.splice(0, i + 1).pop();
      if (this.ws.readyState !== WebSocket.OPEN) throw new Error('socket closed with no further method');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no method frame within ${ms} ms`);
      await new Promise((resolve) => { this.waiters.push(resolve); setTimeout(resolve, left); });
    }
  }

  /** Waits for Connection.Close, answers Close-Ok, resolves to its fields and the close code. */
  async connectionClose(ms = 5000) {
    const f = await this.expect(defs.ConnectionClose, ms);
    this.method(0, defs.ConnectionCloseOk, {});
    const code = await withTimeout(this.closed, ms, 'the socket to close after Close-Ok');
    return { ...f.fields, wsCode: code };
  }
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]);
}

module.exports = {
  amqpService, startRelay, amqplibOverWebSocket, amqplibDirect, amqpWsClient, openWebSocket,
  RawAmqp, rawFrame, defs, withTimeout, AMQPWebSocketClient, replyCode, amqplibClient, amqpClientJs,
};
