'use strict';
// The chat demo page (/chat.html, served by the gateway from its embedded files) in
// headless Chromium: alice logs in through the page, sees bob (an @xmpp/client session in
// Node) online, chats with him both ways, watches his presence change, logs out; a wrong
// password shows the SASL condition. Against the gateway's xmpp bridge (the page's own
// /ws) and, with ?url=, against Prosody's mod_websocket. Saves tests/artifacts/chat.png.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { Gateway, ROOT } = require('./lib/gateway');
const { xmppTargets } = require('./lib/xmpp-targets');
const { login } = require('./lib/xmpp');
const { Browser, browserMissing } = require('./lib/xmpp-browser');

const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');
const T = { timeout: 50000 };

describe('chat page in Chromium', { skip: browserMissing() }, () => {
  const targets = xmppTargets();
  let browser;
  let pageGw; // serves /chat.html for the Prosody target

  before(async () => {
    browser = await new Browser().start();
    pageGw = await new Gateway({}).start();
  });

  after(async () => {
    if (browser) await browser.stop();
    if (pageGw) await pageGw.stop();
  });

  it('a WebSocket URL with no XMPP service behind it says so', T, async () => {
    // This gateway runs its defaults: /ws is STOMP only, so the xmpp handshake is refused.
    const page = await browser.page();
    await page.goto(pageGw.httpUrl('/chat.html'));
    await page.fill('#jid', 'alice@localhost');
    await page.fill('#password', 'alice-pass');
    await page.click('#login-button');
    await page.waitForSelector('#conn-state[data-state=error]', { timeout: 10000 });
    assert.match(await page.textContent('#login-error'), /cannot connect .*XMPP service \(subprotocol xmpp\)/);
    // The browser itself logs the refused handshake and the refused HTTP fallback session
    // (the page tries both); nothing else may go wrong.
    assert.deepEqual(page.problems.filter((p) => !/WebSocket connection to .* failed|Failed to load resource/.test(p)), []);
    await page.close();
  });

  for (const target of targets) {
    describe(target.name, () => {
      const users = [];
      before(async () => { await target.start(); });
      after(async () => {
        await Promise.all(users.map((u) => u.dispose()));
        await target.stop();
      });

      // The gateway target uses the page's default URL (its own /ws); Prosody's is passed in.
      const openChat = async () => {
        const page = await browser.page();
        const url = target.kind === 'gateway'
          ? target.pageUrl('/chat.html')
          : pageGw.httpUrl(`/chat.html?url=${encodeURIComponent(target.url())}`);
        const res = await page.goto(url);
        assert.equal(res.status(), 200, 'the gateway serves /chat.html');
        assert.equal(await page.inputValue('#url'), target.url(), 'the WebSocket URL field');
        assert.equal(await page.getAttribute('#conn-state', 'data-state'), 'closed');
        return page;
      };

      const logInAs = async (page, jid, password) => {
        await page.fill('#jid', jid);
        await page.fill('#password', password);
        await page.click('#login-button');
      };

      it('alice logs in, sees bob online, chats both ways, sees him go away, logs out', T, async (t) => {
        if (target.unavailable) { t.skip(target.unavailable); return; }
        const bob = await login(target.url(), 'bob', 'bob-pass');
        users.push(bob);
        await bob.presence();

        const page = await openChat();
        // Every state the indicator goes through, recorded in the page as it changes.
        await page.evaluate(() => {
          const pill = document.getElementById('conn-state');
          window.states = [];
          new MutationObserver(() => window.states.push(pill.dataset.state)).observe(pill, { attributes: true });
        });
        await logInAs(page, 'alice@localhost', 'alice-pass');
        await page.waitForSelector('#conn-state[data-state=online]', { timeout: 15000 });
        const states = await page.evaluate(() => window.states.filter((s, i, a) => s !== a[i - 1]));
        assert.deepEqual(states, ['connecting', 'authenticating', 'online']);
        assert.equal((await page.textContent('#conn-state')).trim(), 'online');
        assert.equal(await page.textContent('#me-jid'), 'alice@localhost');
        assert.match(await page.getAttribute('#me-jid', 'title'), /^alice@localhost\/web-/, 'the bound full JID');

        // The roster shows bob, online, and bob sees alice's initial presence.
        const bobEntry = page.locator('#roster li[data-jid="bob@localhost"]');
        await page.waitForSelector('#roster li[data-jid="bob@localhost"][data-presence=online]', { timeout: 10000 });
        const alicePresence = await bob.waitPresence('alice@localhost', 'available');
        const aliceJid = alicePresence.attrs.from;

        await bobEntry.click();
        assert.equal(await page.textContent('#peer-name'), 'bob');
        const text = 'Hi Bob! <b>not bold</b> & "quotes" — ünïcödé';
        await page.fill('#message', text);
        await page.press('#message', 'Enter');
        const got = await bob.waitMessage('alice@localhost', text);
        assert.equal(got.attrs.type, 'chat');
        assert.equal(got.attrs.from, aliceJid);
        assert.equal(await page.inputValue('#message'), '', 'the input is cleared after sending');
        await page.waitForSelector('#messages .msg.out', { timeout: 5000 });

        // bob replies; markup in his text stays text on the page.
        const reply = 'Hello Alice <img src=x onerror="window.pwned=1"> see you';
        await bob.message(aliceJid, reply);
        const inMsg = page.locator('#messages .msg.in').first();
        await inMsg.waitFor({ timeout: 10000 });
        assert.equal(await inMsg.evaluate((e) => e.firstChild.textContent), reply);
        assert.equal(await page.locator('#messages img').count(), 0);
        assert.equal(await page.evaluate(() => window.pwned), undefined);

        await bob.message(aliceJid, 'Second line from bob');
        await page.waitForFunction(() => document.querySelectorAll('#messages .msg.in').length === 2, null, { timeout: 10000 });

        if (target.kind === 'gateway') {
          fs.mkdirSync(ARTIFACTS, { recursive: true });
          await page.screenshot({ path: path.join(ARTIFACTS, 'chat.png'), fullPage: true });
        }

        // Presence changes show on the roster dot.
        await bob.presence({}, 'away');
        await page.waitForSelector('#roster li[data-jid="bob@localhost"][data-presence=away]', { timeout: 10000 });
        await bob.logout();
        await page.waitForSelector('#roster li[data-jid="bob@localhost"][data-presence=offline]', { timeout: 10000 });
        const bob2 = await login(target.url(), 'bob', 'bob-pass', { resource: 'second' });
        users.push(bob2);
        await bob2.presence();
        await page.waitForSelector('#roster li[data-jid="bob@localhost"][data-presence=online]', { timeout: 10000 });
        await bob2.waitPresence('alice@localhost', 'available');

        // Logging out sends unavailable presence and closes the session cleanly.
        const mark = bob2.stanzas.length;
        await page.click('#logout');
        await page.waitForSelector('#conn-state[data-state=closed]', { timeout: 10000 });
        await bob2.waitPresence('alice@localhost', 'unavailable', 10000, mark);
        assert.match(await page.textContent('#conn-state'), /closed/);
        assert.equal(await page.isVisible('#login'), true, 'back to the login form');
        assert.deepEqual(page.problems, []);
        await page.close();
      });

      it('over the HTTP fallback (?transport=http) alice logs in and chats with bob', T, async (t) => {
        if (target.unavailable) { t.skip(target.unavailable); return; }
        if (target.kind !== 'gateway') { t.skip('the fallback is the gateway\'s'); return; }
        const bob = await login(target.url(), 'bob', 'bob-pass', { resource: 'fallback' });
        users.push(bob);
        await bob.presence();
        const page = await browser.page();
        const upgrades = [];
        page.on('websocket', (ws) => upgrades.push(ws.url()));
        await page.goto(target.pageUrl('/chat.html?transport=http'));
        await logInAs(page, 'alice@localhost', 'alice-pass');
        await page.waitForSelector('#conn-state[data-state=online]', { timeout: 15000 });
        const alicePresence = await bob.waitPresence('alice@localhost', 'available');
        await page.locator('#roster li[data-jid="bob@localhost"]').click();
        await page.fill('#message', 'sent over server-sent events and POST');
        await page.press('#message', 'Enter');
        await bob.waitMessage('alice@localhost', 'sent over server-sent events and POST');
        await bob.message(alicePresence.attrs.from, 'and back');
        await page.locator('#messages .msg.in').first().waitFor({ timeout: 10000 });
        assert.deepEqual(upgrades, [], 'no WebSocket was opened');
        await page.click('#logout');
        await page.waitForSelector('#conn-state[data-state=closed]', { timeout: 10000 });
        await page.close();
      });

      it('a wrong password shows not-authorized', T, async (t) => {
        if (target.unavailable) { t.skip(target.unavailable); return; }
        const page = await openChat();
        await logInAs(page, 'alice@localhost', 'wrong-password');
        await page.waitForSelector('#conn-state[data-state=error]', { timeout: 15000 });
        assert.match(await page.textContent('#conn-state'), /not-authorized/);
        assert.equal(await page.isVisible('#login-error'), true);
        assert.match(await page.textContent('#login-error'), /authentication failed: not-authorized/);
        assert.equal(await page.isVisible('#chat'), false);
        assert.deepEqual(page.problems, []);
        await page.close();
      });

      it('the XMPP server shutting down shows as a stream error on the page', T, async (t) => {
        if (target.unavailable) { t.skip(target.unavailable); return; }
        const page = await openChat();
        await logInAs(page, 'carol@localhost', 'carol-pass');
        await page.waitForSelector('#conn-state[data-state=online]', { timeout: 15000 });
        await target.prosody.stop();
        try {
          // Prosody ends every stream with <system-shutdown/>; the page names it.
          await page.waitForSelector('#conn-state[data-state=error]', { timeout: 10000 });
          assert.match(await page.textContent('#conn-state'), /stream error: system-shutdown/);
          assert.match(await page.textContent('#login-error'), /system-shutdown/);
          assert.equal(await page.isVisible('#login'), true, 'back to the login form');
        } finally {
          await target.prosody.start();
        }
        assert.deepEqual(page.problems, []);
        await page.close();
      });
    });
  }
});
