'use strict';
// The dashboard on gateway-client.js in Chromium, against the stream features of the
// gateway: the table filled from the snapshot before any tick, reconnects by itself when the
// network drops or the gateway restarts (resume, no gap), the same page over the HTTP
// fallback (asked for with ?transport=http, or forced by a relay that refuses upgrades), and
// the fallback's event stream read by the browser's own EventSource across a cut: no loss, no
// duplicate. Pages come from the source tree (staticDir). Checks that need spec section 1
// or 2 skip while the gateway lacks them.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { Gateway, stompService, ROOT } = require('./lib/gateway');
const { Browser, browserMissing } = require('./lib/xmpp-browser');
const { TcpProxy } = require('./lib/tcp-proxy');
const { fallbackMissing, streamsMissing, PRICE_STREAM } = require('./lib/client-lib');

const T = { timeout: 60000 };
const STATIC = path.join(ROOT, 'gateway', 'static');
const SYMBOLS = ['AAPL', 'AMZN', 'GOOG', 'IBM', 'META', 'MSFT', 'NVDA', 'TSLA'];
// What a browser logs by itself while the network is cut or a gateway restarts.
const NETWORK_NOISE = /WebSocket connection to .* failed|Failed to load resource|net::ERR_|ERR_CONNECTION|EventSource/;

/** A gateway whose /ws has the demo feed (ticking every `interval`) with a price stream. */
async function streamGateway(interval) {
  const services = [
    stompService({ demo: { interval }, stream: [PRICE_STREAM] }),
    { name: 'echo', path: '/echo', bridge: 'echo', allow_missing_origin: true, allow_no_subprotocol: true },
  ];
  try {
    return { gw: await new Gateway({ services, staticDir: STATIC }).start() };
  } catch (e) {
    const missing = streamsMissing(e);
    if (!missing) throw e;
    return { missing };
  }
}

const body = (page, key) => page.evaluate((k) => document.body.dataset[k], key);

describe('dashboard with snapshot, resume and fallback in Chromium', { skip: browserMissing() }, () => {
  let browser;
  before(async () => { browser = await new Browser().start(); });
  after(async () => { if (browser) await browser.stop(); });

  describe('a feed that ticks once an hour', () => {
    let gw;
    let missing;
    before(async () => ({ gw, missing } = await streamGateway('1h')));
    after(async () => { if (gw) await gw.stop(); });

    it('fills every row from the snapshot (the one tick was at start-up, before the page)', T, async (t) => {
      if (missing) { t.skip(missing); return; }
      const page = await browser.page();
      await page.goto(gw.httpUrl('/'));
      await page.waitForSelector('#conn-state[data-state=connected]', { timeout: 10000 });
      await page.waitForFunction((n) => document.querySelectorAll('#prices tr[data-symbol]').length === n, SYMBOLS.length, { timeout: 5000 });
      const rows = await page.$$eval('#prices tr[data-symbol]', (trs) => trs.map((r) => [r.dataset.symbol, r.dataset.source]));
      assert.deepEqual(rows, SYMBOLS.map((s) => [s, 'snapshot']));
      assert.match(await page.textContent('tr[data-symbol=AAPL] .price'), /^[\d,]+\.\d{2}$/);
      assert.equal(await body(page, 'transport'), 'websocket');
      assert.match(await body(page, 'position'), /^[0-9a-f]+-\d+$/);
      assert.deepEqual(page.problems, []);
      await page.close();
    });
  });

  describe('a live feed', () => {
    let gw;
    let missing;
    let proxy;
    let blocking;
    before(async () => {
      ({ gw, missing } = await streamGateway('100ms'));
      if (gw) {
        proxy = await new TcpProxy(gw.port).start();
        blocking = await new TcpProxy(gw.port, { blockUpgrades: true }).start();
      }
    });
    after(async () => {
      if (proxy) await proxy.stop();
      if (blocking) await blocking.stop();
      if (gw) await gw.stop();
    });

    const messages = (page) => page.evaluate(() => Number(document.querySelector('#stat-messages').textContent.replace(/\D/g, '')));
    const flowing = async (page) => {
      const n = await messages(page);
      await page.waitForFunction((b) => Number(document.querySelector('#stat-messages').textContent.replace(/\D/g, '')) > b + 16, n, { timeout: 10000 });
    };

    it('reconnects by itself after a network cut and after a gateway restart, and misses no tick', T, async (t) => {
      if (missing) { t.skip(missing); return; }
      const page = await browser.page();
      await page.goto(proxy.httpUrl('/'));
      await page.waitForSelector('#conn-state[data-state=connected]', { timeout: 10000 });
      await flowing(page);

      proxy.cut();
      await page.waitForSelector('body[data-reconnects="1"][data-conn=connected]', { timeout: 10000 });
      await flowing(page);
      assert.equal(await body(page, 'gaps'), '0', 'the resume replayed every tick missed');

      // A restart loses the history (new epoch): the page shows it went away, comes back by
      // itself, and takes the snapshot instead; still no gap counted.
      const epoch = (await body(page, 'position')).split('-')[0];
      assert.equal(await gw.stop(), 0);
      await page.waitForSelector('#conn-state[data-state=disconnected]', { timeout: 10000 });
      await gw.start();
      await page.waitForSelector('body[data-reconnects="2"][data-conn=connected]', { timeout: 20000 });
      await flowing(page);
      assert.notEqual((await body(page, 'position')).split('-')[0], epoch, 'a new epoch');
      assert.equal(await body(page, 'gaps'), '0');
      assert.equal(await body(page, 'transport'), 'websocket');
      assert.deepEqual(page.problems.filter((p) => !NETWORK_NOISE.test(p)), []);
      await page.close();
    });

    it('runs over the HTTP fallback: with ?transport=http, and behind a relay that refuses upgrades', T, async (t) => {
      if (missing) { t.skip(missing); return; }
      const noFallback = await fallbackMissing(gw.port);
      if (noFallback) { t.skip(noFallback); return; }
      for (const url of [gw.httpUrl('/?transport=http'), blocking.httpUrl('/')]) {
        const page = await browser.page();
        await page.goto(url);
        await page.waitForSelector('#conn-state[data-state=connected]', { timeout: 15000 });
        assert.equal(await body(page, 'transport'), 'http', url);
        await page.waitForFunction((n) => document.querySelectorAll('#prices tr[data-symbol]').length === n, SYMBOLS.length, { timeout: 5000 });
        await flowing(page);
        assert.equal(await body(page, 'gaps'), '0');
        assert.deepEqual(page.problems.filter((p) => !NETWORK_NOISE.test(p)), [], url);
        await page.close();
      }
      assert.ok(blocking.upgradesBlocked >= 1, 'the relay refused the WebSocket');
    });

    it('EventSource reads the fallback stream and resumes with Last-Event-ID after a cut: no loss, no duplicate', T, async (t) => {
      if (missing) { t.skip(missing); return; }
      const noFallback = await fallbackMissing(gw.port, '/echo', '');
      if (noFallback) { t.skip(noFallback); return; }
      const page = await browser.page();
      await page.goto(proxy.httpUrl('/echo.html'));
      await page.evaluate(async () => {
        const r = await fetch('/echo/sessions', { method: 'POST' });
        if (r.status !== 201) throw new Error('session: ' + r.status);
        const s = await r.json();
        window.session = s;
        window.got = [];
        window.opens = 0;
        window.seq = 1;
        window.post = async (texts) => {
          const res = await fetch(s.messages, {
            method: 'POST', headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ seq: window.seq, ack: 0, messages: texts.map((text) => ({ text })) }),
          });
          if (res.status !== 200) throw new Error('post: ' + res.status);
          window.seq += texts.length;
        };
        const es = new EventSource(s.events);
        es.onopen = () => { window.opens++; };
        es.onmessage = (ev) => window.got.push([Number(ev.lastEventId), ev.data]);
        window.es = es;
        await new Promise((resolve) => { es.addEventListener('open', resolve, { once: true }); });
      });
      const first = Array.from({ length: 20 }, (_, i) => `m${i}`);
      const second = Array.from({ length: 20 }, (_, i) => `m${i + 20}`);
      await page.evaluate((m) => window.post(m), first);
      await page.waitForFunction(() => window.got.length === 20, null, { timeout: 5000 });
      proxy.cut(); // the stream (and any other connection of the page) drops
      await page.evaluate((m) => window.post(m), second); // retried by hand below if it hit the cut
      await page.waitForFunction(() => window.got.length >= 40 && window.opens >= 2, null, { timeout: 10000 });
      await page.waitForTimeout(300);
      const got = await page.evaluate(() => window.got);
      assert.deepEqual(got.map((g) => g[1]), first.concat(second), 'every message once, in order');
      assert.deepEqual(got.map((g) => g[0]), got.map((_, i) => i + 1), 'ids 1..40');
      await page.evaluate(() => { window.es.close(); return fetch(window.session.events.replace(/\/events$/, ''), { method: 'DELETE' }); });
      await page.close();
    });
  });
});
