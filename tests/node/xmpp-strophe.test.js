'use strict';
// Strophe.js, the XMPP library most web chats are built on, in headless Chromium: its
// browser bundle is loaded into a page the gateway serves, then it logs alice in over the
// target's WebSocket with SASL PLAIN and chats with bob, who is an @xmpp/client session in
// Node. Side by side: the gateway's xmpp bridge and Prosody's own mod_websocket (the
// Prosody target's page comes from a plain gateway, so its WebSocket is cross-origin).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { Gateway } = require('./lib/gateway');
const { xmppTargets } = require('./lib/xmpp-targets');
const { login } = require('./lib/xmpp');
const { Browser, browserMissing, blankSite } = require('./lib/xmpp-browser');

const STROPHE = path.join(__dirname, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js');
const T = { timeout: 45000 };

// Runs in the page: connect with Strophe and resolve once CONNECTED (or reject with the
// status it ended in). Incoming chat messages collect in window.received.
function stropheLogin({ url, jid, password }) {
  const { Strophe, $pres } = window; // the bundle sets globals
  const names = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));
  return new Promise((resolve, reject) => {
    const conn = new Strophe.Connection(url, { mechanisms: [Strophe.SASLPlain] });
    window.conn = conn;
    window.received = [];
    window.statuses = [];
    conn.addHandler((m) => {
      const body = m.getElementsByTagName('body')[0];
      window.received.push({ from: m.getAttribute('from'), type: m.getAttribute('type'), body: body ? body.textContent : null });
      return true; // keep the handler
    }, null, 'message');
    conn.connect(jid, password, (status, condition) => {
      window.statuses.push(names[status] + (condition ? `:${condition}` : ''));
      if (status === Strophe.Status.CONNECTED) {
        conn.send($pres());
        resolve({ jid: conn.jid, mechanism: conn._sasl_mechanism && conn._sasl_mechanism.mechname });
      } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.ERROR, Strophe.Status.DISCONNECTED].includes(status)) {
        reject(new Error(`${names[status]}${condition ? ` (${condition})` : ''}; statuses ${window.statuses}`));
      }
    });
  });
}

describe('Strophe.js in Chromium', { skip: browserMissing() }, () => {
  const site = blankSite();
  const targets = xmppTargets({ sections: { server: { static_dir: site } } });
  let browser;
  let pageGw; // serves the page for targets that are not the gateway

  before(async () => {
    browser = await new Browser().start();
    pageGw = await new Gateway({ sections: { server: { static_dir: site } } }).start();
  });

  after(async () => {
    if (browser) await browser.stop();
    if (pageGw) await pageGw.stop();
  });

  for (const target of targets) {
    describe(target.name, () => {
      const users = [];
      before(async () => { await target.start(); });
      after(async () => {
        await Promise.all(users.map((u) => u.dispose()));
        await target.stop();
      });

      const openPage = async () => {
        const page = await browser.page();
        const origin = target.kind === 'gateway' ? target.pageUrl('/') : pageGw.httpUrl('/');
        await page.goto(origin);
        await page.addScriptTag({ path: STROPHE });
        return page;
      };

      it('alice logs in with Strophe (SASL PLAIN), sends bob a message and receives his reply', T, async (t) => {
        if (target.unavailable) { t.skip(target.unavailable); return; }
        const bob = await login(target.url(), 'bob', 'bob-pass');
        users.push(bob);
        await bob.presence();

        const page = await openPage();
        const session = await page.evaluate(stropheLogin, { url: target.url(), jid: 'alice@localhost/strophe', password: 'alice-pass' });
        assert.equal(session.jid, 'alice@localhost/strophe');
        assert.equal(session.mechanism, 'PLAIN');

        // alice's initial presence (sent on CONNECTED) reaches bob: the roster has both ways.
        await bob.waitPresence('alice@localhost', 'available');

        const text = 'Hi Bob, from Strophe <in> a "browser" & more — ✓';
        await page.evaluate((body) => {
          const { $msg } = window;
          window.conn.send($msg({ to: 'bob@localhost', type: 'chat' }).c('body').t(body));
        }, text);
        const got = await bob.waitMessage('alice@localhost', text);
        assert.equal(got.attrs.from, 'alice@localhost/strophe');

        const reply = 'Hello Strophe, this is Node & @xmpp/client <3';
        await bob.message('alice@localhost/strophe', reply);
        await page.waitForFunction((r) => window.received.some((m) => m.body === r), reply, { timeout: 10000 });
        const msg = await page.evaluate((r) => window.received.find((m) => m.body === r), reply);
        assert.deepEqual(msg, { from: 'bob@localhost/node-bob', type: 'chat', body: reply });

        // Strophe's disconnect sends unavailable presence and <close/>; bob sees alice go.
        const mark = bob.stanzas.length;
        await page.evaluate(() => new Promise((resolve) => {
          const { Strophe } = window;
          window.conn.connect_callback = (status) => { if (status === Strophe.Status.DISCONNECTED) resolve(); };
          window.conn.disconnect('done');
        }));
        await bob.waitPresence('alice@localhost', 'unavailable', 10000, mark);
        assert.deepEqual(page.problems, []);
        await page.close();
      });

      it('a wrong password ends in Strophe AUTHFAIL', T, async (t) => {
        if (target.unavailable) { t.skip(target.unavailable); return; }
        const page = await openPage();
        const err = await page.evaluate(stropheLogin, { url: target.url(), jid: 'alice@localhost/strophe', password: 'wrong' })
          .then(() => null, (e) => e.message);
        assert.match(err || 'logged in', /AUTHFAIL/);
        await page.close();
      });
    });
  }
});
