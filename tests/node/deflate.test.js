'use strict';
// permessage-deflate (RFC 7692) with real clients: `ws` (which @stomp/stompjs and
// @xmpp/client run on in Node) and Chromium's own WebSocket (with Strophe.js for XMPP)
// negotiate it against a STOMP and an XMPP service that turned it on, and their traffic
// goes through compressed. The gateway counts each compressed session, which is how a
// check sees that a library negotiated it.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const WebSocket = require('ws');

const { Gateway, stompService, httpGet } = require('./lib/gateway');
const { connect, subscribe, publish } = require('./lib/stomp');
const { Prosody } = require('./lib/prosody');
const { xmppService } = require('./lib/xmpp-targets');
const { login } = require('./lib/xmpp');
const { Browser, browserMissing, blankSite } = require('./lib/xmpp-browser');

const STROPHE = path.join(__dirname, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js');
const T = { timeout: 45000 };
const COMPRESSION = { min_size: 32 };
const PRICE = JSON.stringify({ symbol: 'EURUSD', bid: 1.08345, ask: 1.08351, venues: Array(20).fill('LSE') });

async function compressedSessions(gw, service) {
  const r = await httpGet(gw.adminPort, '/metrics');
  let n = 0;
  for (const line of r.body.split('\n')) {
    if (line.startsWith('gateway_ws_compressed_sessions_total{') && line.includes(`service="${service}"`)) {
      n += Number(line.split(' ').pop());
    }
  }
  return n;
}

describe('permessage-deflate', () => {
  let prosody;
  let gw;
  const site = blankSite();

  before(async () => {
    prosody = await new Prosody().start();
    gw = await new Gateway({
      services: [
        stompService({}, { path: '/stomp', compression: COMPRESSION }),
        xmppService(prosody, { compression: COMPRESSION }),
      ],
      sections: { server: { static_dir: site } },
    }).start();
  });

  after(async () => {
    if (gw) await gw.stop();
    if (prosody) await prosody.destroy();
  });

  it('ws negotiates it and exchanges STOMP frames compressed', T, async () => {
    const ws = new WebSocket(gw.url('/stomp'), 'v12.stomp', { perMessageDeflate: true });
    let answer;
    ws.once('upgrade', (res) => { answer = res.headers['sec-websocket-extensions']; });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    assert.equal(answer, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    assert.equal(ws.extensions, 'permessage-deflate');
    const frames = [];
    ws.on('message', (d) => frames.push(d.toString()));
    const waitFor = async (pred) => {
      for (let i = 0; i < 200 && !frames.some(pred); i++) await new Promise((r) => setTimeout(r, 25));
      return frames.find(pred);
    };
    ws.send('CONNECT\naccept-version:1.2\nhost:localhost\n\n\0');
    assert.ok(await waitFor((f) => f.startsWith('CONNECTED')));
    ws.send('SUBSCRIBE\nid:0\ndestination:/topic/prices.ws\n\n\0');
    ws.send('SEND\ndestination:/topic/sync\nreceipt:r1\n\n\0');
    assert.ok(await waitFor((f) => f.startsWith('RECEIPT')));
    ws.send(`SEND\ndestination:/topic/prices.ws\ncontent-type:application/json\n\n${PRICE}\0`);
    const msg = await waitFor((f) => f.startsWith('MESSAGE'));
    assert.ok(msg && msg.endsWith(`${PRICE}\0`), msg);
    ws.close();
  });

  it('@stomp/stompjs (over ws) subscribes and receives compressed MESSAGE frames', T, async () => {
    const before = await compressedSessions(gw, 'stomp');
    const c = await connect(gw.url('/stomp'));
    try {
      assert.match(c.webSocket.extensions, /permessage-deflate/);
      const got = await subscribe(c, '/topic/prices.stompjs');
      for (let i = 0; i < 5; i++) await publish(c, { destination: '/topic/prices.stompjs', body: PRICE });
      const bodies = await got.take(5);
      assert.deepEqual(bodies.map((m) => m.body), Array(5).fill(PRICE));
      assert.equal(await compressedSessions(gw, 'stomp'), before + 1);
    } finally {
      await c.deactivate();
    }
  });

  it('@xmpp/client (over ws) logs in and chats compressed', T, async () => {
    const before = await compressedSessions(gw, 'xmpp');
    const alice = await login(gw.url('/ws'), 'alice', 'alice-pass');
    const bob = await login(gw.url('/ws'), 'bob', 'bob-pass');
    try {
      await alice.presence();
      await bob.presence();
      await bob.waitPresence('alice@localhost', 'available');
      const text = `compressed hello ${'la '.repeat(50)}`;
      await alice.message('bob@localhost', text);
      await bob.waitMessage('alice@localhost', text);
      assert.equal(await compressedSessions(gw, 'xmpp'), before + 2);
    } finally {
      await alice.dispose();
      await bob.dispose();
    }
  });

  describe('Chromium', { skip: browserMissing() }, () => {
    let browser;
    before(async () => { browser = await new Browser().start(); });
    after(async () => { if (browser) await browser.stop(); });

    it('the browser WebSocket negotiates it with the STOMP service and gets MESSAGE frames', T, async () => {
      const page = await browser.page();
      await page.goto(gw.httpUrl('/'));
      const out = await page.evaluate(({ url, body }) => new Promise((resolve, reject) => {
        const ws = new WebSocket(url, 'v12.stomp');
        const frames = [];
        ws.onerror = () => reject(new Error('WebSocket error'));
        ws.onopen = () => ws.send('CONNECT\naccept-version:1.2\nhost:localhost\n\n\0');
        ws.onmessage = (ev) => {
          frames.push(ev.data);
          if (ev.data.startsWith('CONNECTED')) {
            ws.send('SUBSCRIBE\nid:0\ndestination:/topic/prices.browser\nreceipt:s\n\n\0');
          } else if (ev.data.startsWith('RECEIPT')) {
            ws.send(`SEND\ndestination:/topic/prices.browser\n\n${body}\0`);
          } else if (ev.data.startsWith('MESSAGE')) {
            resolve({ extensions: ws.extensions, message: ev.data });
            ws.close();
          }
        };
      }), { url: gw.url('/stomp'), body: PRICE });
      assert.equal(out.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
      assert.ok(out.message.endsWith(`${PRICE}\0`));
      assert.deepEqual(page.problems, []);
    });

    it('Strophe.js in the browser logs in over the compressed XMPP service', T, async () => {
      const before = await compressedSessions(gw, 'xmpp');
      const bob = await login(gw.url('/ws'), 'bob', 'bob-pass');
      try {
        await bob.presence();
        const page = await browser.page();
        await page.goto(gw.httpUrl('/'));
        await page.addScriptTag({ path: STROPHE });
        const text = `from Strophe, compressed ${'tra '.repeat(40)}`;
        await page.evaluate(({ url, body }) => new Promise((resolve, reject) => {
          const { Strophe, $pres, $msg } = window;
          const conn = new Strophe.Connection(url, { mechanisms: [Strophe.SASLPlain] });
          conn.connect('alice@localhost/strophe', 'alice-pass', (status) => {
            if (status === Strophe.Status.CONNECTED) {
              conn.send($pres());
              conn.send($msg({ to: 'bob@localhost', type: 'chat' }).c('body').t(body));
              resolve();
            } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.ERROR].includes(status)) {
              reject(new Error(`Strophe status ${status}`));
            }
          });
        }), { url: gw.url('/ws'), body: text });
        await bob.waitMessage('alice@localhost', text);
        assert.equal(await compressedSessions(gw, 'xmpp'), before + 2);
      } finally {
        await bob.dispose();
      }
    });
  });
});
