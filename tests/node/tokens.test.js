'use strict';
// Live token expiry with real clients: a session opened with a JWT (HS256, in the
// WebSocket URL as ?access_token=) ends when the token's `exp` passes, and the client is
// told in its protocol's words before the WebSocket closes with 1008 "token expired":
//   - @stomp/stompjs gets ERROR `message:token expired`; one that sends a fresh token to
//     /gateway/token before `exp` stays connected past it and keeps receiving, and one
//     whose refresh is refused gets an ERROR naming why;
//   - @xmpp/client (the gateway's xmpp bridge in front of a private Prosody) gets the
//     stream error <policy-violation/> with the text "token expired".
// The AMQP bridge's Connection.Close 320 is checked in amqp.test.js, next to its RabbitMQ.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { Gateway, stompService, sleep } = require('./lib/gateway');
const { connect, subscribe, publish, withReceipt, withTimeout } = require('./lib/stomp');
const { gatewayTarget } = require('./lib/xmpp-targets');
const { login } = require('./lib/xmpp');
const { hs256, expOf } = require('./lib/jwt');

const SECRET = 'node-token-expiry-secret-0123456789abcdef';
const AUTH = { auth: { jwt: { hs256_secret: SECRET } } };
const T = { timeout: 30000 };

/** Resolves with the first value `check()` returns (polled), or rejects after `ms`. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

describe('STOMP (stompjs) with an expiring token', () => {
  let gw;
  let clients = [];
  const url = (token) => gw.url('/ws') + (token ? `?access_token=${token}` : '');
  const open = async (token) => {
    const c = await connect(url(token));
    clients.push(c);
    return c;
  };

  before(async () => {
    gw = await new Gateway({ services: [stompService()], sections: AUTH }).start();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.deactivate({ force: true }).catch(() => {})));
    clients = [];
  });
  after(async () => {
    const rc = await gw.stop();
    assert.equal(rc, 0, `gateway exit code ${rc}\n${gw.log()}`);
  });

  it('gets ERROR "token expired" at exp, then the WebSocket closes with 1008', T, async () => {
    const token = hs256(SECRET, { sub: 'ann', expIn: 3 });
    const c = await open(token);
    assert.equal(c.connectedFrame.headers['user-name'], 'ann');
    const close = await until(() => c.closes[0], 6000, 'the WebSocket close');
    const ended = Date.now() / 1000;
    assert.ok(ended >= expOf(token), `not before exp (${ended} < ${expOf(token)})`);
    assert.ok(ended < expOf(token) + 2, `promptly after exp (${ended} vs ${expOf(token)})`);
    assert.equal(c.errors.length, 1, 'one ERROR frame');
    const [error] = c.errors;
    assert.equal(error.headers.message, 'token expired');
    assert.match(error.body, /fresh token/);
    assert.match(error.body, /\/gateway\/token/);
    assert.equal(close.code, 1008);
    assert.equal(close.reason, 'token expired');
    const expired = await gw.metrics();
    assert.match(expired, /gateway_credential_expiries_total\{[^}]*service="stomp"[^}]*\} [1-9]/);
  });

  it('refreshed through /gateway/token before exp, stays connected past it and keeps receiving', T, async () => {
    const first = hs256(SECRET, { sub: 'ann', expIn: 3 });
    const c = await open(first);
    const got = await subscribe(c, '/topic/tokens.refresh');
    const publisher = await open();
    const fresh = hs256(SECRET, { sub: 'ann', expIn: 120 });
    // What a stompjs application sends: publish() with the token and a receipt.
    const receipt = await withReceipt(c, (id) => c.publish({
      destination: '/gateway/token', headers: { token: fresh, receipt: id },
    }));
    assert.equal(Number(receipt.headers.expires), expOf(fresh), 'the RECEIPT says the new expiry');
    // Well past the first token's exp.
    await sleep(Math.max(0, (expOf(first) + 1.5) * 1000 - Date.now()));
    await publish(publisher, { destination: '/topic/tokens.refresh', body: 'after the first exp' });
    assert.equal((await got.next(3000)).body, 'after the first exp');
    assert.ok(c.connected, 'still connected');
    assert.deepEqual([c.errors.length, c.closes.length], [0, 0]);
  });

  for (const [name, token, message] of [
    ['another subject', () => hs256(SECRET, { sub: 'bob', expIn: 120 }), 'token refused: subject mismatch'],
    ['an expired token', () => hs256(SECRET, { sub: 'ann', expIn: -10 }), 'token refused: token expired'],
    ['a token signed with another key', () => hs256('some-other-secret-0123456789abcdefgh', { sub: 'ann' }), 'token refused: invalid token signature'],
  ]) {
    it(`a refresh with ${name} is refused with an ERROR naming why, and the session ends (1008)`, T, async () => {
      const c = await open(hs256(SECRET, { sub: 'ann', expIn: 60 }));
      c.publish({ destination: '/gateway/token', headers: { token: token(), receipt: 'refresh-1' } });
      const close = await until(() => c.closes[0], 5000, 'the WebSocket close');
      assert.equal(c.errors.length, 1);
      assert.equal(c.errors[0].headers.message, message);
      assert.equal(c.errors[0].headers['receipt-id'], 'refresh-1');
      assert.equal(close.code, 1008);
      assert.equal(close.reason, message);
    });
  }
});

describe('XMPP (@xmpp/client) with an expiring token', () => {
  const target = gatewayTarget({ sections: AUTH });
  const users = [];

  before(async () => { await target.start(); }, { timeout: 60000 });
  after(async () => {
    await Promise.all(users.map((u) => u.dispose()));
    await target.stop();
  });

  it('gets <policy-violation/> "token expired" at exp, then the WebSocket closes with 1008', T, async (t) => {
    if (target.unavailable) return t.skip(target.unavailable);
    // The handshake's user must be the SASL user (identity = "local"): alice both times.
    const token = hs256(SECRET, { sub: 'alice', expIn: 4 });
    const alice = await login(`${target.url()}?access_token=${token}`, 'alice', 'alice-pass');
    users.push(alice);
    let close;
    alice.xmpp.on('disconnect', ({ reason }) => { close = reason; });
    const error = await alice.until(() => alice.errors.find((e) => e.condition), 8000, 'a stream error');
    assert.ok(Date.now() / 1000 >= expOf(token), 'not before exp');
    assert.equal(error.name, 'StreamError');
    assert.equal(error.condition, 'policy-violation');
    assert.equal(error.text, 'token expired');
    await withTimeout(until(() => close, 5000, 'the WebSocket close'), 6000, 'disconnect');
    assert.equal(close.code, 1008);
    assert.equal(close.reason, 'token expired');
  });
});
