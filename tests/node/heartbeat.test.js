'use strict';
// Heart-beats on a gateway configured with heart_beat = [500, 500] (heart_beat_floor = 500
// allows it; grace 2.0): they keep an idle connection alive, and a client that promised
// heart-beats and then stays silent is dropped with ERROR "heart-beat timeout".
// Side by side with RabbitMQ Web-STOMP when RABBITMQ_WS_URL is set (lib/targets.js): it
// counts heart-beats in whole seconds (a client asking for 500 ms gets 1000), so the
// clients there ask for 1000 ms.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { stompService, sleep } = require('./lib/gateway');
const { Client, WebSocket, RawPeer, subscribe, publish, withTimeout } = require('./lib/stomp');
const { stompTargets } = require('./lib/targets');

const T = { timeout: 20000 };
const GATEWAY_HB = 500;

/** The checks against one target (lib/targets.js). */
function checks(target) {
  const HB = target.gateway ? GATEWAY_HB : 1000;
  const X = target.expect;
  const hello = target.rawConnectHeaders;

  before(async () => {
    await target.start();
  });

  after(async () => {
    await target.stop();
  });

  it('stompjs heart-beating both ways stays connected past 3x the interval', T, async () => {
    let serverBeats = 0;
    const closes = [];
    const client = new Client({
      webSocketFactory: () => {
        const ws = new WebSocket(target.url(), ['v12.stomp']);
        ws.on('message', (data) => { if (Buffer.from(data).toString() === '\n') serverBeats++; }); // text, or binary (RabbitMQ ws_frame = binary)
        return ws;
      },
      connectHeaders: target.connectHeaders,
      heartbeatOutgoing: HB,
      heartbeatIncoming: HB,
      reconnectDelay: 0,
      debug: () => {},
    });
    const connected = new Promise((resolve) => { client.onConnect = resolve; });
    client.onWebSocketClose = (ev) => closes.push(ev.code);
    client.activate();
    try {
      const frame = await withTimeout(connected, 5000, 'CONNECTED');
      assert.equal(frame.headers['heart-beat'], `${HB},${HB}`);

      await sleep(3.5 * HB + 400); // idle: only heart-beats flow
      assert.deepEqual(closes, [], 'the connection was not closed');
      assert.equal(client.connected, true);
      assert.ok(serverBeats >= 3, `server sent heart-beats while idle (got ${serverBeats})`);

      const s = await subscribe(client, '/topic/hb.alive');
      await publish(client, { destination: '/topic/hb.alive', body: 'still here' });
      assert.equal((await s.next()).body, 'still here');
    } finally {
      await client.deactivate(); // a live client (heart-beat timers) would keep the file running
    }
  });

  it('a raw client that sends "\\n" every interval is kept; one that promised none is not timed', T, async () => {
    const beating = new RawPeer(target.url(), ['v12.stomp']);
    const lazy = new RawPeer(target.url(), ['v12.stomp']);
    try {
      await Promise.all([beating.opened, lazy.opened]);
      beating.frame('CONNECT', { 'accept-version': '1.2', ...hello, 'heart-beat': `${HB},${HB}` });
      lazy.frame('CONNECT', { 'accept-version': '1.2', ...hello, 'heart-beat': '0,0' });
      const c1 = await beating.waitFrame('CONNECTED');
      const c2 = await lazy.waitFrame('CONNECTED');
      assert.equal(c1.headers['heart-beat'], `${HB},${HB}`);
      assert.equal(c2.headers['heart-beat'], '0,0');
      const timer = setInterval(() => beating.send('\n'), HB / 2);
      try {
        await sleep(3.5 * HB + 300);
      } finally {
        clearInterval(timer);
      }
      assert.equal(beating.ws.readyState, WebSocket.OPEN, 'heart-beating client still connected');
      assert.equal(lazy.ws.readyState, WebSocket.OPEN, 'client without heart-beats still connected');
      assert.ok(beating.heartBeats >= 3, `server heart-beats received: ${beating.heartBeats}`);
      assert.equal(lazy.heartBeats, 0, 'no heart-beats to a client that asked for none');
      assert.equal(beating.frames.filter((f) => f.command === 'ERROR').length, 0);
    } finally {
      beating.close(); // an open socket would keep the file running
      lazy.close();
    }
  });

  it(`a client that promised heart-beats and goes silent gets ${X.silentClient.error ? 'ERROR "heart-beat timeout" and ' : ''}a close`, T, async () => {
    const before = target.gateway ? await target.gw.metrics() : '';
    const peer = new RawPeer(target.url(), ['v12.stomp']);
    await peer.opened;
    peer.frame('CONNECT', { 'accept-version': '1.2', ...hello, 'heart-beat': `${HB},${HB}` });
    await peer.waitFrame('CONNECTED');
    const t0 = Date.now();
    if (!X.silentClient.error) {
      // RabbitMQ: no ERROR frame, the WebSocket just closes (1000 "STOMP died").
      const { code } = await withTimeout(peer.closed, 4 * HB + 2000, 'close');
      const elapsed = Date.now() - t0;
      assert.equal(code, X.silentClient.code);
      assert.deepEqual(peer.frames.map((f) => f.command), ['CONNECTED']);
      assert.ok(elapsed >= 2 * HB - 100 && elapsed < 3 * HB + 1500, `dropped after ${elapsed} ms`);
      return;
    }
    const err = await peer.waitFrame('ERROR', 6000);
    const elapsed = Date.now() - t0;
    assert.equal(err.headers.message, X.silentClient.error);
    assert.ok(err.body.length > 0, 'the ERROR body explains');
    const { code } = await withTimeout(peer.closed, 3000, 'close');
    assert.equal(code, X.silentClient.code);
    // Dropped after about grace (2.0) x 500 ms of silence, not at once and not much later.
    assert.ok(elapsed >= 2 * HB - 100 && elapsed < 2 * HB + 1500, `dropped after ${elapsed} ms`);
    const m = /gateway_stomp_error_frames_total\{[^}]*reason="heart_beat_timeout"[^}]*\} (\d+)/;
    const n0 = Number((before.match(m) || [0, 0])[1]);
    const after1 = await target.gw.metrics();
    const n1 = Number((after1.match(m) || [0, 0])[1]);
    assert.equal(n1, n0 + 1, 'error frame counted by reason');
  });
}

// Everything runs concurrently (the tests mostly wait, each on its own connections).
const targets = stompTargets({ services: [stompService({ heart_beat: [GATEWAY_HB, GATEWAY_HB], heart_beat_floor: GATEWAY_HB, heart_beat_grace: 2.0 })] });
describe(`STOMP heart-beats side by side: ${targets.map((t) => t.kind).join(', ')}`, { concurrency: true }, () => {
  for (const target of targets) {
    describe(`STOMP heart-beats against ${target.name} (${target.gateway ? 'heart_beat = [500, 500]' : '1000 ms'})`,
      { concurrency: true }, () => checks(target));
  }
});
