'use strict';
// The dashboard's own STOMP client (gateway/static/stomp-client.js): its frame parser on
// hand-made input, then against a gateway (heart_beat = [500, 500]) with `ws` standing in
// for the browser's WebSocket.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const WebSocket = require('ws');
const { Gateway, stompService, sleep, ROOT } = require('./lib/gateway');
const { withTimeout } = require('./lib/stomp');

globalThis.WebSocket = globalThis.WebSocket || WebSocket;
globalThis.location = globalThis.location || { hostname: 'localhost', protocol: 'http:' };
require(path.join(ROOT, 'gateway', 'static', 'stomp-client.js'));
const { StompClient } = globalThis;

const T = { timeout: 20000 };

/** A client whose parser is fed by hand: returns the frames it dispatched. */
function feed(version, ...chunks) {
  const c = new StompClient('ws://unused');
  c.version = version;
  const frames = [];
  c.onFrame = (f) => frames.push(f);
  for (const ch of chunks) c._onData(typeof ch === 'string' ? ch : new Uint8Array(ch).buffer);
  return frames;
}

describe('stomp-client.js parser', () => {
  it('several frames and heart-beats in one message', () => {
    const fs = feed('1.2', '\nMESSAGE\ndestination:/topic/a\n\none\0\n\r\nMESSAGE\ndestination:/topic/b\n\ntwo\0\n');
    assert.deepEqual(fs.map((f) => [f.command, f.headers.destination, f.body]),
      [['MESSAGE', '/topic/a', 'one'], ['MESSAGE', '/topic/b', 'two']]);
  });

  it('a frame split across messages, and CRLF line ends', () => {
    const fs = feed('1.2', 'MESS', 'AGE\r\ndestination:/t\r\n', '\r\nbo', 'dy\0');
    assert.equal(fs.length, 1);
    assert.equal(fs[0].headers.destination, '/t');
    assert.equal(fs[0].body, 'body');
  });

  it('content-length bodies may hold NUL bytes', () => {
    const head = Buffer.from('MESSAGE\ncontent-length:5\nsubscription:s\n\n');
    const body = Buffer.from([1, 0, 2, 0, 3]);
    const fs = feed('1.2', Buffer.concat([head, body, Buffer.from([0])]), 'RECEIPT\nreceipt-id:9\n\n\0');
    assert.deepEqual(Array.from(fs[0].binaryBody), [1, 0, 2, 0, 3]);
    assert.equal(fs[1].headers['receipt-id'], '9');
  });

  it('waits for the whole content-length body even past a NUL', () => {
    const fs = feed('1.2', 'MESSAGE\ncontent-length:3\n\na\0', 'b\0');
    assert.equal(fs.length, 1);
    assert.equal(fs[0].body, 'a\0b');
  });

  it('1.2 header unescaping is a single pass; the first repeated header wins', () => {
    const fs = feed('1.2', 'MESSAGE\nk:a\\cb\\\\n\\n\\r\\c\nk:second\n\n\0');
    assert.equal(fs[0].headers.k, 'a:b\\n\n\r:');
    assert.equal(StompClient.escapeValue('a:b\\n\n\r:', '1.2'), 'a\\cb\\\\n\\n\\r\\c');
    assert.equal(StompClient.unescapeValue('x\\r', '1.0'), 'x\\r');
    assert.throws(() => StompClient.unescapeValue('bad\\t', '1.2'), /escape/);
  });
});

describe('stomp-client.js against the gateway (heart_beat = [500, 500])', () => {
  let gw;
  before(async () => {
    gw = await new Gateway({ services: [stompService({ heart_beat: [500, 500], heart_beat_floor: 500 })] }).start();
  });
  after(async () => {
    const rc = await gw.stop();
    assert.equal(rc, 0, `gateway exit code ${rc}\n${gw.log()}`);
  });

  function open(opts) {
    return new Promise((resolve, reject) => {
      const c = new StompClient(gw.url('/ws'), {
        protocols: ['v12.stomp'],
        ...opts,
        onConnect: (f) => resolve({ c, connected: f }),
        onError: (f) => reject(new Error(`ERROR ${f.headers.message}: ${f.body}`)),
        onClose: (ev) => { c.closedWith = ev.code; reject(new Error(`closed ${ev.code}`)); },
      });
      c.connect();
    });
  }

  it('connects with heart-beats, stays up while idle, and round-trips text, binary and escaped headers', T, async () => {
    const { c, connected } = await withTimeout(open({ heartBeat: [500, 500] }), 5000, 'CONNECTED');
    assert.equal(connected.headers.version, '1.2');
    assert.equal(connected.headers['heart-beat'], '500,500');
    await sleep(1800); // > 3x the interval: our client's "\n" keeps the gateway from dropping it
    assert.equal(c.connected, true);
    assert.equal(c.closedWith, undefined);

    const got = [];
    c.subscribe('/topic/own', (m) => got.push(m));
    await c.receipt('SEND', { destination: '/topic/sync.nobody' });
    c.send('/topic/own', 'text body', { 'content-type': 'text/plain', tricky: 'a:b\\n\n\r:' });
    c.send('/topic/own', new Uint8Array([0, 1, 0, 2]), { 'content-type': 'application/octet-stream' });
    await c.receipt('SEND', { destination: '/topic/sync.nobody' });
    const deadline = Date.now() + 3000;
    while (got.length < 2 && Date.now() < deadline) await sleep(20);
    assert.equal(got.length, 2);
    assert.equal(got[0].body, 'text body');
    assert.equal(got[0].headers.tricky, 'a:b\\n\n\r:');
    assert.deepEqual(Array.from(got[1].binaryBody), [0, 1, 0, 2]);
    assert.equal(got[1].headers['content-length'], '4');

    const closed = new Promise((resolve) => { c.onClose = (ev) => resolve(ev.code); });
    c.disconnect();
    assert.ok([1000, 1005].includes(await withTimeout(closed, 3000, 'close')));
  });
});
