'use strict';
// XMPP over WebSocket with @xmpp/client, the same checks side by side against the gateway's
// xmpp bridge and Prosody's own mod_websocket (lib/xmpp-targets.js): SASL PLAIN login,
// roster, presence between contacts, chat messages both ways, clean logout, a wrong
// password, and the server going away in the middle of a session.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { xmppTargets } = require('./lib/xmpp-targets');
const { login, bare } = require('./lib/xmpp');

const T = { timeout: 45000 };

for (const target of xmppTargets()) {
  describe(`XMPP with @xmpp/client: ${target.name}`, () => {
    const users = [];
    const logIn = async (name, pass = `${name}-pass`, opts) => {
      const u = await login(target.url(), name, pass, opts);
      users.push(u);
      return u;
    };

    before(async () => { await target.start(); });

    after(async () => {
      await Promise.all(users.map((u) => u.dispose()));
      await target.stop();
    });

    const check = (name, fn) => it(name, T, async (t) => {
      if (target.unavailable) { t.skip(target.unavailable); return; }
      try {
        await fn(t);
      } catch (e) {
        e.message += `\n--- server logs ---\n${target.log().split('\n').slice(-40).join('\n')}`;
        throw e;
      }
    });

    check('alice and bob log in with SASL PLAIN, see each other online, chat both ways, log out', async () => {
      const alice = await logIn('alice');
      assert.ok(alice.mechanisms.includes('PLAIN'), `PLAIN offered: ${alice.mechanisms}`);
      assert.equal(alice.jid, 'alice@localhost/node-alice', 'the bound JID has our resource');

      const aliceRoster = await alice.roster();
      const bobItem = aliceRoster.find((i) => i.jid === 'bob@localhost');
      assert.ok(bobItem, `bob in alice's roster: ${JSON.stringify(aliceRoster)}`);
      assert.equal(bobItem.subscription, 'both');
      await alice.presence();

      const bob = await logIn('bob');
      const bobRoster = await bob.roster();
      assert.deepEqual(bobRoster.map((i) => [i.jid, i.subscription]), [['alice@localhost', 'both']]);
      const aliceSeenFrom = alice.stanzas.length;
      await bob.presence();

      // Initial presence: the server probes bob's contacts (alice is online) and
      // broadcasts bob's presence to alice.
      const aliceOnline = await bob.waitPresence('alice@localhost', 'available');
      assert.equal(aliceOnline.attrs.from, 'alice@localhost/node-alice');
      await alice.waitPresence('bob@localhost', 'available', 10000, aliceSeenFrom);

      // Markup characters and non-ASCII text survive both ways.
      const hello = 'Hello Bob <b>&amp;</b> "quoted" \'single\' — héllo 👋';
      await alice.message('bob@localhost', hello);
      const got = await bob.waitMessage('alice@localhost', hello);
      assert.equal(got.attrs.type, 'chat');
      assert.equal(got.attrs.from, 'alice@localhost/node-alice');
      assert.equal(bare(got.attrs.to), 'bob@localhost');

      const reply = 'Hi Alice, line one\nline two';
      await bob.message('alice@localhost/node-alice', reply);
      const back = await alice.waitMessage('bob@localhost', reply);
      assert.equal(back.attrs.from, 'bob@localhost/node-bob');

      // A burst arrives complete and in order.
      const burst = Array.from({ length: 20 }, (_, i) => `burst ${i}`);
      for (const b of burst) await alice.message('bob@localhost', b);
      await bob.waitMessage('alice@localhost', 'burst 19');
      const bodies = bob.stanzas.filter((s) => s.is('message') && /^burst /.test(s.getChildText('body') || ''))
        .map((s) => s.getChildText('body'));
      assert.deepEqual(bodies, burst);

      // Bob logs out: unavailable presence reaches alice, the server answers his <close/>.
      const beforeLogout = alice.stanzas.length;
      await bob.logout();
      assert.ok(bob.statuses.includes('close'), `server closed bob's stream in reply: ${bob.statuses}`);
      assert.equal(bob.xmpp.status, 'offline');
      await alice.waitPresence('bob@localhost', 'unavailable', 10000, beforeLogout);

      await alice.logout();
      assert.ok(alice.statuses.includes('close'), `server closed alice's stream in reply: ${alice.statuses}`);
      assert.deepEqual([...alice.errors, ...bob.errors].map((e) => e.message), [], 'no client errors');
    });

    check('a wrong password fails with SASL not-authorized', async () => {
      const t0 = Date.now();
      await assert.rejects(login(target.url(), 'alice', 'not-the-password'), (e) => {
        assert.equal(e.name, 'SASLError', `${e.name}: ${e.message}`);
        assert.equal(e.condition, 'not-authorized');
        return true;
      });
      assert.ok(Date.now() - t0 < 10000, 'the failure arrives promptly');
      // An unknown account looks the same to the client.
      await assert.rejects(login(target.url(), 'nobody', 'x'), (e) => e.condition === 'not-authorized');
      // The right password still works afterwards.
      const carol = await logIn('carol');
      assert.equal(bare(carol.jid), 'carol@localhost');
      await carol.logout();
    });

    check('the server going away mid-session ends the client session within seconds', async () => {
      const alice = await logIn('alice', 'alice-pass', { resource: 'doomed' });
      await alice.presence();
      await alice.roster();
      const t0 = Date.now();
      await target.prosody.stop();
      try {
        await alice.until(() => alice.statuses.includes('disconnect'), 10000, 'the session to end');
        const took = Date.now() - t0;
        assert.ok(took < 10000, `ended after ${took} ms`);
        // Prosody says goodbye with <system-shutdown/>; the client learns why.
        const conditions = alice.errors.map((e) => e.condition || e.message);
        assert.ok(conditions.includes('system-shutdown'), `errors: ${conditions}`);
      } finally {
        await target.prosody.start(); // same ports: the gateway's settings still point there
      }
      // Back in business: a new session logs in through the same gateway / server.
      const again = await logIn('alice', 'alice-pass', { resource: 'again' });
      assert.deepEqual((await again.roster()).map((i) => i.jid), ['bob@localhost']);
      await again.logout();
    });
  });
}
