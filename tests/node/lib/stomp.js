'use strict';
// Helpers for the STOMP tests: stompjs clients over `ws` that resolve once connected,
// message collectors with timeouts, and a raw WebSocket STOMP peer for the cases a
// well-behaved client library cannot produce (silence, hand-written frames).

const { Client, Versions } = require('@stomp/stompjs');
const WebSocket = require('ws');

const ALL_SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

/** A deferred value with a timeout that names what was awaited. */
function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Connect a stompjs client; resolves to the client once CONNECTED arrived (its frame is
 * `client.connectedFrame`). Options: subprotocols, versions (e.g. ['1.1']), heartbeat
 * [out, in] in ms, connectHeaders, timeout.
 */
function connect(url, opts = {}) {
  const subprotocols = opts.subprotocols || ALL_SUBPROTOCOLS;
  const [hbOut, hbIn] = opts.heartbeat || [0, 0];
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, subprotocols),
    connectHeaders: opts.connectHeaders || {},
    heartbeatOutgoing: hbOut,
    heartbeatIncoming: hbIn,
    reconnectDelay: 0,
    connectionTimeout: opts.timeout || 5000,
    debug: process.env.STOMP_DEBUG ? (m) => console.error('[stompjs]', m) : () => {},
  });
  if (opts.versions) client.stompVersions = new Versions(opts.versions);
  client.errors = [];
  client.closes = [];
  return withTimeout(new Promise((resolve, reject) => {
    client.onConnect = (frame) => { client.connectedFrame = frame; resolve(client); };
    client.onStompError = (frame) => {
      client.errors.push(frame);
      reject(new Error(`ERROR frame: ${frame.headers.message}: ${frame.body}`));
    };
    client.onWebSocketClose = (ev) => {
      client.closes.push(ev);
      reject(new Error(`WebSocket closed before CONNECTED (code ${ev.code})`));
    };
    client.activate();
  }), opts.timeout || 5000, 'CONNECTED');
}

/** Messages of one subscription, in arrival order, with `next()` to await the following one. */
class Collector {
  constructor() {
    this.messages = [];
    this.waiters = [];
    this.cursor = 0;
  }

  push(m) {
    this.messages.push(m);
    const w = this.waiters.shift();
    if (w) w();
  }

  /** The next message not yet returned by next(); rejects after `ms`. */
  async next(ms = 3000) {
    const deadline = Date.now() + ms;
    while (this.cursor >= this.messages.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms (got ${this.messages.length} so far)`);
      await withTimeout(new Promise((r) => this.waiters.push(r)), left, 'a message').catch(() => {});
    }
    return this.messages[this.cursor++];
  }

  /** Waits until `n` messages arrived in total and returns them. */
  async take(n, ms = 3000) {
    const out = [];
    while (this.cursor < n) out.push(await this.next(ms));
    return this.messages.slice(0, n);
  }

  /** Asserts nothing more arrives within `ms`. */
  async quiet(ms = 300) {
    const before = this.messages.length;
    await new Promise((r) => setTimeout(r, ms));
    if (this.messages.length !== before) {
      const m = this.messages[before];
      throw new Error(`unexpected message: ${m.headers.destination} ${JSON.stringify(m.body)}`);
    }
  }
}

let receiptSeq = 0;

/** Runs `fn(receiptId)` (which sends a frame with that receipt) and waits for the RECEIPT. */
function withReceipt(client, fn, ms = 3000) {
  const id = `r-${process.pid}-${++receiptSeq}`;
  const got = new Promise((resolve) => client.watchForReceipt(id, resolve));
  fn(id);
  return withTimeout(got, ms, `RECEIPT ${id}`);
}

/** Subscribe and wait until the gateway confirmed it (receipt), so later sends reach it. */
async function subscribe(client, destination, headers = {}) {
  const c = new Collector();
  let sub;
  await withReceipt(client, (receipt) => {
    sub = client.subscribe(destination, (m) => c.push(m), { ...headers, receipt });
  });
  c.sub = sub;
  return c;
}

/** Publish with a receipt so the gateway has handled the SEND when this resolves. */
function publish(client, params) {
  return withReceipt(client, (receipt) => {
    client.publish({ ...params, headers: { ...(params.headers || {}), receipt } });
  });
}

// --- raw peer ---------------------------------------------------------------------------

/** Parses STOMP frames out of a WebSocket message (several frames and heart-beats allowed). */
function parseFrames(data) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  const frames = [];
  let i = 0;
  while (i < buf.length) {
    if (buf[i] === 0x0a || buf[i] === 0x0d) { i++; continue; } // heart-beat / EOLs
    const headEnd = buf.indexOf('\n\n', i);
    if (headEnd < 0) throw new Error('incomplete frame: ' + buf.slice(i).toString());
    const lines = buf.slice(i, headEnd).toString('utf8').split('\n').map((l) => l.replace(/\r$/, ''));
    const command = lines.shift();
    const headers = {};
    for (const line of lines) {
      const c = line.indexOf(':');
      const k = line.slice(0, c);
      if (!(k in headers)) headers[k] = line.slice(c + 1);
    }
    let bodyStart = headEnd + 2;
    let bodyEnd;
    if (headers['content-length'] !== undefined) {
      bodyEnd = bodyStart + parseInt(headers['content-length'], 10);
    } else {
      bodyEnd = buf.indexOf(0, bodyStart);
    }
    frames.push({ command, headers, body: buf.slice(bodyStart, bodyEnd) });
    i = bodyEnd + 1;
  }
  return frames;
}

/** A WebSocket peer that records every message, parsed frame and heart-beat it receives. */
class RawPeer {
  constructor(url, protocols = ALL_SUBPROTOCOLS) {
    this.ws = new WebSocket(url, protocols);
    this.frames = [];
    this.heartBeats = 0;
    this.messages = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => { resolve({ code, reason: reason.toString() }); this._wake(); });
    });
    this.ws.on('message', (data, isBinary) => {
      this.messages.push({ data, isBinary });
      if (data.toString() === '\n') this.heartBeats++; // a text message, or binary (RabbitMQ ws_frame = binary)
      else this.frames.push(...parseFrames(data));
      this._wake();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  send(text) {
    this.ws.send(text);
  }

  frame(command, headers = {}, body = '') {
    const lines = [command, ...Object.entries(headers).map(([k, v]) => `${k}:${v}`)];
    this.send(lines.join('\n') + '\n\n' + body + '\0');
  }

  /** Waits for the first frame with `command` (after `from`), resolving to it. */
  async waitFrame(command, ms = 3000, from = 0) {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.slice(from).find((x) => x.command === command);
      if (f) return f;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no ${command} within ${ms} ms; got ${this.frames.map((x) => x.command).join(',') || 'nothing'}`);
      }
      await withTimeout(new Promise((r) => this.waiters.push(r)), left, command).catch(() => {});
    }
  }

  close() {
    this.ws.close();
  }
}

module.exports = {
  ALL_SUBPROTOCOLS, Client, Versions, WebSocket, Collector, RawPeer,
  connect, subscribe, publish, withReceipt, withTimeout, parseFrames,
};
