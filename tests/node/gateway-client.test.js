'use strict';
// gateway/static/gateway-client.mjs in Node (`ws` for WebSocket, Node's own fetch): its SSE
// parser and backoff plan on hand-made input; its HTTP transport against a stand-in for the
// gateway's fallback (lib/fallback-mock.js); then against real gateways: a STOMP round trip,
// reconnects through a relay the test cuts, sends held while down, failover, the pace of
// attempts at a closed port. The checks that need the server side of spec sections 1 and 2
// (snapshot/resume, the gateway's own HTTP fallback) probe for it and skip until it lands.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');

const WebSocket = require('ws');
const { Gateway, stompService, freePort, sleep } = require('./lib/gateway');
const { withTimeout } = require('./lib/stomp');
const { TcpProxy } = require('./lib/tcp-proxy');
const { FallbackMock } = require('./lib/fallback-mock');
const { loadClient, fallbackMissing, streamsMissing, PRICE_STREAM } = require('./lib/client-lib');

const T = { timeout: 30000 };
let C; // the module's exports
before(async () => { C = await loadClient(); });

/** Resolves once `pred()` holds, polling. */
async function until(pred, ms, what) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves when `emitter` reports `state`. */
function stateOf(emitter, state) {
  return new Promise((resolve) => {
    const on = (st, detail) => { if (st === state) { emitter.off('state', on); resolve(detail); } };
    emitter.on('state', on);
  });
}

describe('SseParser', () => {
  const parse = (chunks) => {
    const events = [];
    const retries = [];
    const comments = [];
    const p = new C.SseParser({ onEvent: (e) => events.push(e), onRetry: (r) => retries.push(r), onComment: (c) => comments.push(c) });
    for (const c of chunks) p.push(c);
    p.end();
    return { events, retries, comments };
  };

  it('ids, event types, multi-line data, comments and retry', () => {
    const { events, retries, comments } = parse([
      'retry: 500\n: keepalive\n\nid: 1\ndata: one\n\n',
      'id: 2\nevent: binary\ndata: AAEC\n\nid: 3\ndata: a\ndata:b\ndata:  c\n\n',
      'event: close\ndata: {"code":1000}\n\n',
    ]);
    assert.deepEqual(retries, [500]);
    assert.deepEqual(comments, ['keepalive']);
    assert.deepEqual(events, [
      { type: 'message', data: 'one', id: '1' },
      { type: 'binary', data: 'AAEC', id: '2' },
      { type: 'message', data: 'a\nb\n c', id: '3' },
      { type: 'close', data: '{"code":1000}', id: '3' }, // the id persists, as EventSource's does
    ]);
  });

  it('any cut of the stream, CR, LF and CRLF line ends alike', () => {
    const text = 'id: 7\r\ndata: x\r\ndata: y\r\n\r\nid: 8\rdata: z\r\rid: 9\ndata\n\n';
    const whole = parse([text]).events;
    assert.deepEqual(whole.map((e) => [e.id, e.data]), [['7', 'x\ny'], ['8', 'z'], ['9', '']]);
    for (let i = 1; i < text.length; i++) {
      assert.deepEqual(parse([text.slice(0, i), text.slice(i)]).events, whole, `cut at ${i}`);
    }
    assert.deepEqual(parse(text.split('')).events, whole, 'one character at a time');
  });

  it('no event without data; an unfinished event at the end is dropped; bad retry ignored', () => {
    const { events, retries } = parse(['id: 1\n\nevent: x\n\nretry: soon\ndata: kept\n\ndata: lost']);
    assert.deepEqual(events.map((e) => [e.id, e.type, e.data]), [['1', 'message', 'kept']]);
    assert.deepEqual(retries, []);
  });

  it('SseDecoder takes UTF-8 bytes split inside a character', () => {
    const events = [];
    const d = new C.SseDecoder({ onEvent: (e) => events.push(e.data) });
    const bytes = new TextEncoder().encode('data: ünï €\n\n');
    for (const b of bytes) d.pushBytes(new Uint8Array([b]));
    assert.deepEqual(events, ['ünï €']);
  });
});

describe('Backoff', () => {
  const fixed = (r) => () => r;

  it('fails over along the list at once, waits only after a whole round, doubling to max', () => {
    const b = new C.Backoff(3, { initial: 100, max: 1000, factor: 2, jitter: 0.5, rounds: 99 }, fixed(0));
    const plan = [];
    for (let i = 0; i < 15; i++) plan.push(Object.values(b.failed()));
    assert.deepEqual(plan, [
      [1, 0], [2, 0], [0, 100],
      [1, 0], [2, 0], [0, 200],
      [1, 0], [2, 0], [0, 400],
      [1, 0], [2, 0], [0, 800],
      [1, 0], [2, 0], [0, 1000],
    ]);
  });

  it('jitter only takes off, at most `jitter` of the wait; after `rounds` rounds the wait is max', () => {
    const lo = new C.Backoff(1, { initial: 100, max: 5000, factor: 2, jitter: 0.5, rounds: 3 }, fixed(0.999999));
    const hi = new C.Backoff(1, { initial: 100, max: 5000, factor: 2, jitter: 0.5, rounds: 3 }, fixed(0));
    const l = [1, 2, 3, 4].map(() => lo.failed().delay);
    const h = [1, 2, 3, 4].map(() => hi.failed().delay);
    assert.deepEqual(h, [100, 200, 5000, 5000]);
    assert.deepEqual(l, [50, 100, 2500, 2500]);
    const rnd = new C.Backoff(1, {}, Math.random);
    for (let i = 1; i <= 10; i++) {
      const d = rnd.delayFor(i);
      const base = i >= 6 ? 10000 : Math.min(10000, 250 * 2 ** (i - 1));
      assert.ok(d >= base / 2 && d <= base, `round ${i}: ${d} within [${base / 2}, ${base}]`);
    }
  });

  it('a stable connection resets the count and retries its own URL first; a flapping one does not', () => {
    const b = new C.Backoff(2, { initial: 100, jitter: 0, stable: 1000 }, fixed(0));
    b.failed(); b.failed(); b.failed(); // index 1, three failures
    b.opened(0);
    assert.deepEqual(b.dropped(5000), { index: 1, delay: 100 });
    assert.equal(b.failures, 0);
    b.opened(6000);
    assert.deepEqual(b.dropped(6100), { index: 0, delay: 0 }, 'dropped after 100 ms: a failure, next URL');
    assert.equal(b.failures, 1);
  });
});

describe('PositionTracker', () => {
  it('counts seqs skipped within an epoch, drops duplicates, leaves snapshots out', () => {
    const t = new C.PositionTracker();
    assert.equal(t.see('a1-3', 'snapshot'), 'new');
    assert.equal(t.see('a1-1', 'snapshot'), 'new');
    assert.equal(t.position, undefined);
    assert.equal(t.resumeFrom.text, 'a1-3', 'snapshots never move the resume point back');
    assert.equal(t.see('a1-4', 'live'), 'new');
    assert.equal(t.see('a1-5', 'live'), 'new');
    assert.equal(t.see('a1-5', 'resumed'), 'duplicate');
    assert.equal(t.see('a1-8', 'live'), 'new');
    assert.equal(t.gaps, 2);
    assert.equal(t.see('b2-1', 'live'), 'new', 'a new epoch starts over');
    assert.equal(t.gaps, 2);
    assert.equal(t.resumeFrom.text, 'b2-1');
    assert.equal(C.parsePosition('nope'), null);
  });
});

describe('Connection over the HTTP fallback (stand-in server)', () => {
  let mock;
  before(async () => { mock = await new FallbackMock({ streamBytes: 600 }).start(); });
  after(async () => { await mock.stop(); });

  it('falls back when the upgrade fails, round-trips text, CR text and binary, loses nothing across stream rotations and cuts', T, async () => {
    const conn = new C.Connection({ urls: [mock.url('/echo')], protocols: ['echo'], WebSocket, keepalive: 0 });
    const states = [];
    conn.on('state', (s) => states.push(s));
    const failures = [];
    conn.on('failure', (f) => failures.push(f.transport));
    const got = [];
    conn.on('message', (d) => got.push(d));
    const opened = await withTimeout(conn.next('open'), 5000, 'open');
    assert.equal(opened.transport, 'http');
    assert.equal(opened.protocol, 'echo');
    assert.deepEqual(failures, ['websocket']);
    assert.deepEqual(states, ['connecting', 'open']);

    const sent = [];
    for (let i = 0; i < 60; i++) {
      const m = i % 10 === 3 ? `line ${i}\r\nwith CR` : i % 10 === 5 ? `multi\nline ${i}` : `message ${i}`;
      sent.push(m);
      assert.equal(conn.send(m), true);
      if (i === 30) mock.cutStreams(); // the network drops the stream mid-way
    }
    conn.send(new Uint8Array([0, 1, 2, 255]));
    await until(() => got.length === 61, 10000, '61 echoes');
    assert.deepEqual(got.slice(0, 60), sent, 'every message once, in order');
    assert.deepEqual(Array.from(got[60]), [0, 1, 2, 255]);
    assert.ok(got[60] instanceof Uint8Array);
    const s = mock.only();
    assert.ok(mock.eventGets.length >= 3, `the stream was asked again (${mock.eventGets})`);
    assert.ok(mock.eventGets.slice(1).every((id) => id > 0), 'each time from the last id');
    assert.ok(mock.posts.length < 61, `sends went in batches (${mock.posts.length} POSTs)`);
    await until(() => mock.posts.some((p) => p.ack === 61), 5000, 'an ack for everything received');

    const closed = conn.next('close');
    conn.close();
    await withTimeout(closed, 3000, 'close');
    await until(() => s.closed, 2000, 'the session deleted');
    assert.equal(conn.state, 'closed');
  });

  it('a POST whose answer is lost goes again with the same seq, and nothing is applied twice', T, async () => {
    const conn = new C.Connection({ urls: [mock.url('/echo')], transports: ['http'], keepalive: 0 });
    const got = [];
    conn.on('message', (d) => got.push(d));
    await withTimeout(conn.next('open'), 5000, 'open');
    const session = Array.from(mock.sessions.values()).pop();
    mock.dropPostAnswers = 1;
    const before = mock.posts.length;
    conn.send('once');
    await until(() => got.length === 1, 5000, 'the echo');
    const retried = () => mock.posts.slice(before).filter((p) => p.session === session.id && p.count > 0).length >= 2;
    await until(retried, 3000, 'the POST again');
    await sleep(100);
    const mine = mock.posts.slice(before).filter((p) => p.session === session.id && p.count > 0);
    assert.ok(mine.length >= 2, 'sent twice');
    assert.ok(mine.every((p) => p.seq === 1), `same seq: ${JSON.stringify(mine)}`);
    assert.deepEqual(session.received, [{ text: 'once' }]);
    assert.deepEqual(got, ['once']);
    conn.close();
  });

  it('asWebSocket() gives a WebSocket-shaped object on the fallback', T, async () => {
    const conn = new C.Connection({ urls: [mock.url('/echo')], transports: ['http'], keepalive: 0 });
    const ws = conn.asWebSocket();
    ws.binaryType = 'arraybuffer';
    assert.equal(ws.readyState, 0);
    await withTimeout(new Promise((r) => { ws.onopen = r; }), 5000, 'onopen');
    assert.equal(ws.readyState, 1);
    const got = [];
    ws.addEventListener('message', (ev) => got.push(ev.data));
    ws.send('hi');
    ws.send(new Uint8Array([9, 8]).buffer);
    await until(() => got.length === 2, 5000, 'echoes');
    assert.equal(got[0], 'hi');
    assert.deepEqual(Array.from(new Uint8Array(got[1])), [9, 8]);
    const closed = new Promise((r) => { ws.onclose = r; });
    ws.close();
    assert.equal((await withTimeout(closed, 3000, 'onclose')).code, 1000);
    assert.equal(ws.readyState, 3);
  });
});

describe('StompSession against the gateway', () => {
  let gw;
  let proxy;
  before(async () => {
    gw = await new Gateway({ services: [stompService({ heart_beat: [1000, 1000], heart_beat_floor: 500 })] }).start();
    proxy = await new TcpProxy(gw.port).start();
  });
  after(async () => {
    await proxy.stop();
    const rc = await gw.stop();
    assert.equal(rc, 0, `gateway exit code ${rc}\n${gw.log()}`);
  });

  const session = (o) => new C.StompSession({ WebSocket, heartBeat: [1000, 1000], keepalive: 0, ...o });

  it('connects over WebSocket and round-trips text, binary and headers; send resolves on RECEIPT', T, async () => {
    const s = session({ urls: [gw.url('/ws')] });
    const got = [];
    s.subscribe('/topic/rt', (m) => got.push(m));
    const [frame] = await Promise.all([withTimeout(s.next('connected'), 5000, 'CONNECTED')]);
    assert.equal(frame.headers.version, '1.2');
    assert.equal(s.transport, 'websocket');
    const r = await withTimeout(s.send('/topic/rt', 'text body', { tricky: 'a:b\n' }), 3000, 'receipt');
    assert.equal(r.command, 'RECEIPT');
    await s.send('/topic/rt', new Uint8Array([0, 1, 0]), { 'content-type': 'application/octet-stream' });
    await until(() => got.length === 2, 3000, 'two messages');
    assert.equal(got[0].body, 'text body');
    assert.equal(got[0].headers.tricky, 'a:b\n');
    assert.equal(got[0].kind, 'live');
    assert.deepEqual(Array.from(got[1].binaryBody), [0, 1, 0]);
    await s.close();
    assert.equal(s.state, 'closed');
  });

  it('reconnects by itself after the network drops and its subscriptions carry on', T, async () => {
    const s = session({ urls: [proxy.url('/ws')], backoff: { initial: 100, max: 1000 } });
    const states = [];
    s.on('state', (st) => states.push(st));
    const got = [];
    s.subscribe('/topic/survive', (m) => got.push(m.body));
    await withTimeout(s.next('connected'), 5000, 'CONNECTED');
    const other = session({ urls: [gw.url('/ws')] });
    await withTimeout(other.next('connected'), 5000, 'other CONNECTED');
    await other.send('/topic/survive', 'before');
    await until(() => got.length === 1, 3000, 'first message');

    proxy.cut();
    await withTimeout(s.next('connected'), 5000, 'CONNECTED again');
    assert.equal(s.reconnects, 1);
    // The re-SUBSCRIBE went before anything else on the new connection; a receipted SEND
    // after it proves the subscription is back.
    await s.send('/topic/sync.none', 'x');
    await other.send('/topic/survive', 'after');
    await until(() => got.length === 2, 3000, 'message after the reconnect');
    assert.deepEqual(got, ['before', 'after']);
    assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'connected']);
    await s.close();
    await other.close();
  });

  it('holds sends while down and has them receipted after the reconnect; beyond maxBuffered they are refused', T, async () => {
    const s = session({ urls: [proxy.url('/ws')], backoff: { initial: 100, max: 300 }, maxBuffered: 3 });
    const got = [];
    const watcher = session({ urls: [gw.url('/ws')] });
    watcher.subscribe('/queue/held', (m) => got.push(m.body));
    await withTimeout(Promise.all([s.next('connected'), watcher.next('connected')]), 5000, 'both CONNECTED');
    await watcher.send('/topic/sync.none', 'x'); // its SUBSCRIBE is in

    proxy.refuse = true;
    proxy.cut();
    await withTimeout(stateOf(s, 'reconnecting'), 3000, 'reconnecting');
    const held = ['one', 'two', 'three'].map((b) => s.send('/queue/held', b));
    await assert.rejects(s.send('/queue/held', 'four'), /send buffer full/);
    let settled = 0;
    held.forEach((p) => p.then(() => settled++));
    await sleep(500);
    assert.equal(settled, 0, 'no receipt while down');
    proxy.refuse = false;
    const receipts = await withTimeout(Promise.all(held), 5000, 'receipts after the reconnect');
    assert.ok(receipts.every((r) => r.command === 'RECEIPT'));
    await until(() => got.length === 3, 3000, 'the held messages delivered');
    assert.deepEqual(got, ['one', 'two', 'three']);
    await s.close();
    await watcher.close();
  });

  it('fails over to the second URL when the first is down', T, async () => {
    const dead = await freePort();
    const s = session({ urls: [`ws://127.0.0.1:${dead}/ws`, gw.url('/ws')], transports: ['websocket'] });
    const attempts = [];
    s.connection.on('attempt', (a) => attempts.push(a.url));
    const [, info] = await withTimeout(new Promise((r) => s.once('connected', (f, i) => r([f, i]))), 5000, 'CONNECTED');
    assert.equal(info.url, gw.url('/ws'));
    assert.deepEqual(attempts, [`ws://127.0.0.1:${dead}/ws`, gw.url('/ws')]);
    await s.close();
  });

  it('does not hammer a closed port: attempts slow down to one per max', T, async () => {
    const port = await freePort();
    const listener = net.createServer((c) => { hits++; c.destroy(); });
    let hits = 0;
    await new Promise((r) => listener.listen(port, '127.0.0.1', r));
    const conn = new C.Connection({
      urls: [`ws://127.0.0.1:${port}/ws`], transports: ['websocket'], WebSocket,
      backoff: { initial: 100, max: 1000, factor: 2, jitter: 0.5, rounds: 4 },
    });
    const delays = [];
    conn.on('state', (st, d) => { if (st === 'reconnecting') delays.push(d.delay); });
    await sleep(4000);
    conn.close();
    listener.close();
    // Waits 100, 200, 400, then 1000, jitter taking up to half off: in 4 s at least 4 tries
    // and at most 11 (50 + 100 + 200 ms, then 500 ms each), where no backoff would be hundreds.
    assert.ok(hits >= 4 && hits <= 11, `${hits} connections in 4 s`);
    assert.ok(delays.slice(3).every((d) => d >= 500 && d <= 1000), `capped: ${delays}`);
    assert.equal(conn.state, 'closed');
  });
});

describe('StompSession: snapshot and resume (spec section 1)', () => {
  let gw;
  let proxy;
  let missing = false;
  before(async () => {
    try {
      gw = await new Gateway({
        services: [stompService({ demo: { interval: '100ms' }, stream: [PRICE_STREAM] })],
      }).start();
      proxy = await new TcpProxy(gw.port).start();
    } catch (e) {
      missing = streamsMissing(e);
      if (!missing) throw e;
    }
  });
  after(async () => {
    if (proxy) await proxy.stop();
    if (gw) await gw.stop();
  });

  it('a snapshot first, then live; after a cut, resume:ok with no gap and no duplicate', T, async (t) => {
    if (missing) { t.skip(missing); return; }
    const s = new C.StompSession({ urls: [proxy.url('/ws')], WebSocket, keepalive: 0, backoff: { initial: 100 } });
    const got = [];
    const sub = s.subscribe('/topic/prices.*', (m) => got.push(m), { snapshot: true });
    const resumed = [];
    s.on('resumed', (x, info) => resumed.push(info));
    await withTimeout(s.next('connected'), 5000, 'CONNECTED');
    await until(() => got.some((m) => m.kind === 'live'), 5000, 'live prices');
    assert.equal(got[0].kind, 'snapshot');
    assert.ok(got.filter((m) => m.kind === 'snapshot').length >= 8, 'one per demo symbol');
    const n = got.length;
    proxy.cut();
    await withTimeout(s.next('connected'), 5000, 'CONNECTED again');
    await until(() => resumed.length === 1, 5000, 'resume:ok');
    await until(() => got.length > n + 20, 5000, 'prices after the resume');
    assert.equal(sub.gaps, 0, 'no seq skipped');
    const live = got.filter((m) => m.kind !== 'snapshot').map((m) => C.parsePosition(m.position).seq);
    assert.deepEqual(live, [...new Set(live)].sort((a, b) => a - b), 'no duplicate, in order');
    await s.close();
  });
});

describe('StompSession over the gateway\'s HTTP fallback (spec section 2)', () => {
  let gw;
  let proxy;
  let missing = false;
  before(async () => {
    gw = await new Gateway({ services: [stompService({})] }).start();
    proxy = await new TcpProxy(gw.port, { blockUpgrades: true }).start();
    missing = await fallbackMissing(gw.port);
  });
  after(async () => {
    await proxy.stop();
    await gw.stop();
  });

  it('a proxy that refuses upgrades: the session runs over HTTP, and comes back after a cut', T, async (t) => {
    if (missing) { t.skip(missing); return; }
    const s = new C.StompSession({ urls: [proxy.url('/ws')], WebSocket, keepalive: 0, backoff: { initial: 100 } });
    const got = [];
    s.subscribe('/topic/fb', (m) => got.push(m.body));
    await withTimeout(s.next('connected'), 5000, 'CONNECTED');
    assert.equal(s.transport, 'http');
    assert.ok(proxy.upgradesBlocked >= 1);
    await s.send('/topic/fb', 'over http');
    await s.send('/topic/fb', new Uint8Array([1, 2, 3]));
    await until(() => got.length === 2, 3000, 'messages');
    proxy.cut();
    await s.send('/topic/fb', 'after the cut');
    await until(() => got.length === 3, 8000, 'message after the cut');
    assert.equal(got[2], 'after the cut');
    await s.close();
  });
});
