'use strict';
// @xmpp/client sessions for tests: log in with SASL PLAIN over an RFC 7395 WebSocket,
// record every incoming stanza and status change, and wait for the ones a test expects.

// @xmpp/client uses the global WebSocket, which Node 20 does not have.
globalThis.WebSocket = globalThis.WebSocket || require('ws');

const { withTimeout } = require('./stomp');

let lib;
/** @xmpp/client is an ES module: load it once. */
async function xmppLib() {
  lib = lib || await import('@xmpp/client');
  return lib;
}

const NS_ROSTER = 'jabber:iq:roster';

class XmppUser {
  constructor(xmpp, username) {
    this.xmpp = xmpp;
    this.username = username;
    this.stanzas = [];
    this.statuses = [];
    this.errors = [];
    this.mechanisms = [];
    this.waiters = [];
    xmpp.on('stanza', (s) => { this.stanzas.push(s); this._wake(); });
    xmpp.on('status', (s) => { this.statuses.push(s); this._wake(); });
    // Without a listener an 'error' event would crash the test process.
    xmpp.on('error', (e) => { this.errors.push(e); this._wake(); });
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Resolves when `check()` returns something truthy (re-checked on every event). */
  async until(check, ms, what) {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = check();
      if (v) return v;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${this.username}: timed out after ${ms} ms waiting for ${what}; statuses ${this.statuses.join(',')}; ` +
          `errors ${this.errors.map((e) => e.condition || e.message).join(',') || 'none'}`);
      }
      await withTimeout(new Promise((r) => this.waiters.push(r)), left, what).catch(() => {});
    }
  }

  /** The first stanza (from index `from` on) that `pred` accepts. */
  waitStanza(pred, ms = 10000, what = 'a stanza', from = 0) {
    return this.until(() => this.stanzas.slice(from).find(pred), ms, what);
  }

  waitMessage(fromBare, body, ms = 10000) {
    return this.waitStanza((s) => s.is('message') && bare(s.attrs.from) === fromBare &&
      (body === undefined || s.getChildText('body') === body), ms, `message from ${fromBare}${body ? ` "${body}"` : ''}`);
  }

  waitPresence(fromBare, type, ms = 10000, from = 0) {
    return this.waitStanza((s) => s.is('presence') && bare(s.attrs.from) === fromBare &&
      (s.attrs.type || 'available') === type, ms, `${type} presence from ${fromBare}`, from);
  }

  get jid() { return this.xmpp.jid ? this.xmpp.jid.toString() : null; }

  send(stanza) { return this.xmpp.send(stanza); }

  async roster() {
    const { xml } = await xmppLib();
    const r = await this.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER })), 10000);
    return r.getChild('query', NS_ROSTER).getChildren('item').map((i) => ({ ...i.attrs }));
  }

  async message(to, body) {
    const { xml } = await xmppLib();
    await this.send(xml('message', { to, type: 'chat' }, xml('body', {}, body)));
  }

  /** Presence with `attrs`; `show` (away, xa, dnd, chat) adds a <show/>. */
  async presence(attrs = {}, show) {
    const { xml } = await xmppLib();
    await this.send(xml('presence', attrs, show ? xml('show', {}, show) : null));
  }

  /** Unavailable presence, then <close/>; resolves when the transport is gone. */
  async logout(ms = 10000) {
    await withTimeout(this.xmpp.stop(), ms, `${this.username} to log out`);
  }

  /** For cleanup: never throws, never waits long. */
  async dispose() {
    this.xmpp.reconnect.stop();
    if (this.xmpp.status === 'offline') return;
    await withTimeout(this.xmpp.stop(), 3000, 'stop').catch(() => {});
    try { this.xmpp.socket?.socket?.terminate?.(); } catch (_) { /* already gone */ }
  }
}

const bare = (jid) => String(jid || '').split('/')[0];

/**
 * Logs `username` in over `url` with SASL PLAIN (refusing if the server does not offer
 * it); resolves to an XmppUser once online. A login that fails rejects with the client's
 * error (a SASLError carries `condition`, e.g. "not-authorized") and leaves no session.
 */
async function login(url, username, password, opts = {}) {
  const { client } = await xmppLib();
  let user;
  const xmpp = client({
    service: url,
    domain: opts.domain || 'localhost',
    resource: opts.resource || `node-${username}`,
    credentials: async (authenticate, mechanisms) => {
      user.mechanisms = mechanisms;
      if (!mechanisms.includes('PLAIN')) throw new Error(`no SASL PLAIN offered (${mechanisms.join(', ')})`);
      await authenticate({ username, password }, 'PLAIN');
    },
  });
  xmpp.reconnect.stop(); // a test decides itself whether to reconnect
  user = new XmppUser(xmpp, username);
  try {
    await withTimeout(xmpp.start(), opts.timeout || 15000, `${username} to log in`);
  } catch (e) {
    await user.dispose();
    throw e;
  }
  return user;
}

module.exports = { login, xmppLib, XmppUser, bare, NS_ROSTER };
