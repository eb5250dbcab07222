'use strict';
// The demo pages in Chromium (Debian's /usr/bin/chromium driven by playwright-core): the
// dashboard at / connects over STOMP to the built-in demo feed of a gateway started with
// no config file (env overrides for the ports only), shows prices that change, and
// reconnects after the gateway restarts; the echo page echoes. Saves
// tests/artifacts/dashboard.png.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { chromium } = require('playwright-core');
const { Gateway, ROOT } = require('./lib/gateway');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');
const T = { timeout: 45000 };

describe('demo pages in Chromium', { skip: !fs.existsSync(CHROMIUM) && `${CHROMIUM} missing` }, () => {
  let gw;
  let context;
  let profile;
  const problems = []; // console errors, page errors, requests leaving the gateway

  before(async () => {
    gw = await new Gateway({ config: false }).start();
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1200, height: 720 },
      deviceScaleFactor: 1,
      timeout: 30000,
    });
    const origin = new URL(gw.httpUrl('/')).host;
    context.on('request', (req) => {
      const u = new URL(req.url());
      if (u.host !== origin && !req.url().startsWith('data:')) problems.push(`external request: ${req.url()}`);
    });
  });

  after(async () => {
    if (context) await context.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    if (gw) {
      const rc = await gw.stop();
      assert.equal(rc, 0, `gateway exit code ${rc}\n${gw.log()}`);
    }
  });

  const watch = (page) => {
    problems.length = 0;
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  };

  it('dashboard connects, shows every demo symbol, and prices change on screen', T, async () => {
    const page = await context.newPage();
    watch(page);
    await page.goto(gw.httpUrl('/'));
    await page.waitForSelector('#conn-state[data-state=connected]', { timeout: 10000 });
    assert.equal(await page.textContent('#conn-state'), 'connected');

    const price = page.locator('tr[data-symbol=AAPL] .price');
    await price.waitFor({ timeout: 5000 });
    await page.waitForFunction(() => /\d/.test(document.querySelector('tr[data-symbol=AAPL] .price').textContent));
    const first = (await price.textContent()).trim();
    assert.match(first, /^[\d,]+\.\d{2}$/, `price cell shows a price: ${first}`);
    // The demo feed moves every symbol every 250 ms; wait for AAPL to move on screen.
    await page.waitForFunction(
      (p) => document.querySelector('tr[data-symbol=AAPL] .price').textContent.trim() !== p,
      first, { timeout: 10000 });

    const symbols = await page.$$eval('#prices tr[data-symbol]', (trs) => trs.map((t) => t.dataset.symbol));
    assert.deepEqual(symbols, ['AAPL', 'AMZN', 'GOOG', 'IBM', 'META', 'MSFT', 'NVDA', 'TSLA']);
    const time = await page.textContent('tr[data-symbol=MSFT] .time');
    assert.match(time, /^\d\d:\d\d:\d\d\.\d{3}$/);
    // A flash marks the direction of the last move.
    await page.waitForSelector('#prices .price.flash-up, #prices .price.flash-down', { timeout: 5000 });

    // Let the sparklines fill a little, then keep a picture of the page.
    await page.waitForTimeout(2500);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('dashboard shows disconnected when the gateway goes away and reconnects when it is back', T, async () => {
    const page = await context.newPage();
    watch(page);
    await page.goto(gw.httpUrl('/'));
    await page.waitForSelector('#conn-state[data-state=connected]', { timeout: 10000 });
    await page.waitForSelector('tr[data-symbol=IBM] .price');

    assert.equal(await gw.stop(), 0, 'gateway exits cleanly on SIGTERM with a browser attached');
    await page.waitForSelector('#conn-state[data-state=disconnected]', { timeout: 10000 });
    await gw.start(); // same ports
    await page.waitForSelector('#conn-state[data-state=connected]', { timeout: 15000 });
    // Prices flow again on the new connection.
    const before = await page.textContent('#stat-messages');
    await page.waitForFunction((b) => document.querySelector('#stat-messages').textContent !== b, before, { timeout: 5000 });
    // The reconnect attempts while the port was closed show up only as failed WebSocket
    // handshakes in the console; anything else is a problem.
    const others = problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
    assert.deepEqual(others, []);
    problems.length = 0;
    await page.close();
  });

  it('echo page echoes', T, async () => {
    const page = await context.newPage();
    watch(page);
    await page.goto(gw.httpUrl('/'));
    await page.click('a[href="/echo.html"]');
    await page.waitForSelector('#state.up', { timeout: 10000 });
    await page.fill('#text', 'hello from chromium');
    await page.click('#send button');
    await page.waitForFunction(() => document.querySelector('#log').textContent.includes('< hello from chromium'));
    assert.deepEqual(problems, []);
    await page.close();
  });
});
