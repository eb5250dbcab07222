'use strict';
// A stand-in for the gateway's HTTP fallback (the contract of POST P/sessions, the event
// stream and POSTed messages), echoing every up message down. It tests the client's side of
// the contract while the gateway's is being built, and lets a test break what a real server
// rarely breaks on cue: end streams early, drop a POST's answer after applying it.

const http = require('node:http');
const crypto = require('node:crypto');

const HOST = '127.0.0.1';

class FallbackMock {
  /** opts: streamBytes (end each events response after about this many bytes) */
  constructor(opts = {}) {
    this.opts = opts;
    this.sessions = new Map();
    this.posts = []; // { session, seq, count, ack }
    this.dropPostAnswers = 0; // apply the next N POSTs, then destroy their sockets unanswered
    this.eventGets = []; // the Last-Event-ID each events request resumed from
  }

  start() {
    this.server = http.createServer((req, res) => this._route(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    }));
    return new Promise((resolve) => this.server.listen(0, HOST, () => {
      this.port = this.server.address().port;
      resolve(this);
    }));
  }

  url(p = '/echo') { return `ws://${HOST}:${this.port}${p}`; }

  async _route(req, res) {
    const u = new URL(req.url, `http://${HOST}`);
    let m;
    if (req.method === 'POST' && (m = /^(\/[^/]+)\/sessions$/.exec(u.pathname))) return this._open(m[1], u, res);
    m = /^\/[^/]+\/sessions\/([^/]+)(\/events|\/messages)?$/.exec(u.pathname);
    const s = m && this.sessions.get(m[1]);
    if (!s) { res.writeHead(404); res.end('{"error":"unknown session"}'); return; }
    if (req.method === 'GET' && m[2] === '/events') return this._events(s, req, u, res);
    if (req.method === 'POST' && m[2] === '/messages') return this._messages(s, req, res);
    if (req.method === 'DELETE' && !m[2]) { this._close(s, 1000, 'client closed'); res.writeHead(204); res.end(); return; }
    res.writeHead(405);
    res.end();
  }

  _open(path, u, res) {
    const offered = (u.searchParams.get('protocol') || '').split(',').filter(Boolean);
    const id = 'mock.' + crypto.randomBytes(16).toString('base64url');
    const s = { id, down: [], nextDown: 1, expected: 1, received: [], stream: null, closed: null, deleted: false };
    this.sessions.set(id, s);
    const base = `${path}/sessions/${id}`;
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      session: id, protocol: offered[0] || '', events: `${base}/events`, messages: `${base}/messages`,
      grace_ms: 30000, max_post_bytes: 65536, max_message_size: 1 << 20,
    }));
  }

  _events(s, req, u, res) {
    const from = Number(req.headers['last-event-id'] || u.searchParams.get('last_event_id') || 0);
    this.eventGets.push(from);
    if (s.stream) s.stream.end(); // a new GET replaces the older stream
    s.down = s.down.filter((e) => e.id > from); // acknowledged by asking past them
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write('retry: 500\n: hello\n\n');
    s.stream = res;
    s.written = 0;
    res.on('close', () => { if (s.stream === res) s.stream = null; });
    for (const e of s.down) this._write(s, e);
    if (s.closed) this._writeClose(s);
  }

  _write(s, e) {
    const res = s.stream;
    if (!res) return;
    let text;
    if (e.binary) text = `id: ${e.id}\nevent: binary\ndata: ${e.binary}\n\n`;
    else if (e.text.includes('\r')) text = `id: ${e.id}\nevent: text64\ndata: ${Buffer.from(e.text).toString('base64')}\n\n`;
    else text = `id: ${e.id}\n` + e.text.split('\n').map((l) => `data: ${l}\n`).join('') + '\n';
    // Cut inside the event now and then, so the client's parser sees partial chunks.
    const half = Math.floor(text.length / 2);
    res.write(text.slice(0, half));
    res.write(text.slice(half));
    s.written += text.length;
    if (this.opts.streamBytes && s.written >= this.opts.streamBytes) {
      s.stream = null;
      res.end(); // rotated: no close event, the client asks again from its last id
    }
  }

  _writeClose(s) {
    if (!s.stream) return;
    s.stream.end(`event: close\ndata: ${JSON.stringify(s.closed)}\n\n`);
    s.stream = null;
  }

  push(s, msg) {
    const e = { id: s.nextDown++, ...msg };
    s.down.push(e);
    this._write(s, e);
  }

  async _messages(s, req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = JSON.parse(Buffer.concat(chunks).toString());
    this.posts.push({ session: s.id, seq: body.seq, count: body.messages.length, ack: body.ack });
    s.down = s.down.filter((e) => e.id > body.ack);
    if (body.seq > s.expected) {
      res.writeHead(409, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'gap', expected: s.expected }));
      return;
    }
    body.messages.forEach((m, i) => {
      const seq = body.seq + i;
      if (seq < s.expected) return; // already applied: a retry
      s.expected = seq + 1;
      s.received.push(m);
      this.push(s, m); // echo
    });
    if (this.dropPostAnswers > 0) {
      this.dropPostAnswers--;
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ack: s.expected - 1 }));
  }

  _close(s, code, reason) {
    s.closed = { code, reason };
    this._writeClose(s);
  }

  /** Ends every open events response without a close event (a network cut, or rotation). */
  cutStreams() {
    for (const s of this.sessions.values()) {
      if (s.stream) { s.stream.destroy(); s.stream = null; }
    }
  }

  only() {
    const all = Array.from(this.sessions.values());
    if (all.length !== 1) throw new Error(`expected one session, have ${all.length}`);
    return all[0];
  }

  async stop() {
    for (const s of this.sessions.values()) if (s.stream) s.stream.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(() => r()));
  }
}

module.exports = { FallbackMock };
