// A small XMPP client over a browser WebSocket (RFC 7395, subprotocol "xmpp"): stream
// <open/>, SASL PLAIN, stream restart, resource binding, session (when a server still
// requires it), roster, presence and chat messages. Incoming text goes through DOMParser;
// outgoing XML is built from escaped strings, never from markup mixed with user data.
//
//   const c = new XmppClient({
//     url: 'ws://host/ws', jid: 'alice@localhost', password: '...',
//     onState(state, detail) {},   // connecting | authenticating | online | error | closed
//     onRoster(items) {},          // [{ jid, name, subscription }]; again on every roster push
//     onPresence(p) {},            // { from, bare, type, show, status }
//     onMessage(m) {},             // { from, bare, type, body, id }
//   });
//   c.connect(); c.sendMessage('bob@localhost', 'hi'); c.logout();
(function (global) {
  'use strict';

  const NS = {
    framing: 'urn:ietf:params:xml:ns:xmpp-framing',
    stream: 'http://etherx.jabber.org/streams',
    streams: 'urn:ietf:params:xml:ns:xmpp-streams',
    sasl: 'urn:ietf:params:xml:ns:xmpp-sasl',
    bind: 'urn:ietf:params:xml:ns:xmpp-bind',
    session: 'urn:ietf:params:xml:ns:xmpp-session',
    stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
    client: 'jabber:client',
    roster: 'jabber:iq:roster',
    ping: 'urn:xmpp:ping',
  };

  // --- outgoing XML ---------------------------------------------------------------------

  function escapeXml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({
      '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;',
    })[c]);
  }

  /** Raw markup built by el(); anything else given to el() as a child is text. */
  function Raw(xml) { this.xml = xml; }

  /** el('message', { to: 'a@b' }, el('body', {}, 'text')) -> Raw; undefined attributes are left out. */
  function el(name, attrs, ...children) {
    let s = '<' + name;
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) s += ' ' + k + '="' + escapeXml(v) + '"';
    }
    const inner = children.filter((c) => c !== undefined && c !== null)
      .map((c) => (c instanceof Raw ? c.xml : escapeXml(c))).join('');
    return new Raw(inner ? s + '>' + inner + '</' + name + '>' : s + '/>');
  }

  // SASL PLAIN wants base64 of UTF-8 bytes; btoa alone only takes Latin-1.
  function base64Utf8(s) {
    const bytes = new TextEncoder().encode(s);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  // --- incoming XML ---------------------------------------------------------------------

  const parser = new DOMParser();

  // RFC 7395 puts one element in each message; a wrapper tolerates a server that sends more,
  // and declares the stream prefix for one that leaves it undeclared.
  function parseMessage(text) {
    const body = String(text).replace(/^\s*<\?xml[^>]*\?>/, '');
    const doc = parser.parseFromString('<w xmlns:stream="' + NS.stream + '">' + body + '</w>', 'application/xml');
    if (doc.getElementsByTagName('parsererror').length) throw new Error('not well-formed XML: ' + body.slice(0, 200));
    return Array.from(doc.documentElement.children);
  }

  const child = (e, name, ns) => Array.from(e.children).find((c) => c.localName === name && (!ns || c.namespaceURI === ns));
  const childText = (e, name, ns) => { const c = child(e, name, ns); return c ? c.textContent : undefined; };
  const bareJid = (jid) => String(jid || '').split('/')[0];

  /** The defined condition (first child in `ns`) and optional <text> of a stream or stanza error. */
  function errorOf(e, ns) {
    const cond = Array.from(e.children).find((c) => c.namespaceURI === ns && c.localName !== 'text');
    const text = childText(e, 'text', ns);
    return { condition: cond ? cond.localName : 'undefined-condition', text };
  }

  // --- the client -----------------------------------------------------------------------

  function XmppClient(opts) {
    this.opts = opts;
    this.jid = opts.jid;
    this.domain = String(opts.jid).split('@').pop().split('/')[0];
    this.local = String(opts.jid).includes('@') ? String(opts.jid).split('@')[0] : '';
    this.resource = opts.resource || 'web-' + Math.random().toString(36).slice(2, 8);
    this.state = 'closed';
    this.ws = null;
    this.phase = null; // 'auth' before SASL success, 'bound' after the restart
    this.pending = new Map(); // iq id -> callback
    this.seq = 0;
    this.roster = [];
  }

  XmppClient.prototype._setState = function (state, detail) {
    this.state = state;
    if (this.opts.onState) this.opts.onState(state, detail || '');
  };

  XmppClient.prototype._debug = function (dir, text) {
    if (this.opts.onWire) this.opts.onWire(dir, text);
  };

  // RFC 7395 §3.3.3: each message stands alone, so stanzas carry jabber:client themselves.
  function stanza(name, attrs, ...children) {
    return el(name, Object.assign({ xmlns: NS.client }, attrs), ...children);
  }

  XmppClient.prototype.send = function (raw) {
    const xml = raw instanceof Raw ? raw.xml : String(raw);
    if (!this.ws || this.ws.readyState !== 1) return false; // OPEN
    this._debug('out', xml);
    this.ws.send(xml);
    return true;
  };

  XmppClient.prototype._open = function () {
    this.send(el('open', { xmlns: NS.framing, to: this.domain, version: '1.0' }));
  };

  XmppClient.prototype.connect = function () {
    this.failed = null;
    this.closing = false;
    this.closeSent = false;
    this.opened = false;
    this.phase = 'auth';
    this._setState('connecting', this.opts.url);
    let ws;
    try {
      // opts.WebSocket: a look-alike (gateway-client.js's Connection.asWebSocket) to ride its
      // reconnects and HTTP fallback.
      const Socket = this.opts.WebSocket || WebSocket;
      ws = new Socket(this.opts.url, ['xmpp']);
    } catch (e) {
      this._setState('error', e.message);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws.protocol !== 'xmpp') {
        this._fail('the server did not accept the xmpp subprotocol');
        return;
      }
      this._open();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') { this._fail('binary WebSocket message'); return; }
      this._debug('in', ev.data);
      let elements;
      try { elements = parseMessage(ev.data); } catch (e) { this._fail(e.message); return; }
      for (const e of elements) this._handle(e);
    };
    ws.onerror = () => { /* the close event that follows carries the code */ };
    ws.onclose = (ev) => {
      this.ws = null;
      for (const cb of this.pending.values()) cb(null);
      this.pending.clear();
      if (this.failed) this._setState('error', this.failed);
      else if (this.closing) this._setState('closed', 'logged out');
      // Browsers hide why a handshake failed (always 1006): name the likely causes.
      else if (this.state === 'connecting' && !this.opened) this._setState('error', 'cannot connect (WebSocket close ' + ev.code + '): is there an XMPP service (subprotocol xmpp) at ' + this.opts.url + '?');
      else this._setState('closed', 'connection closed' + (ev.code ? ' (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')' : ''));
      this.opened = false;
    };
  };

  XmppClient.prototype._close = function () {
    if (this.closeSent) return;
    this.closeSent = true;
    this.send(el('close', { xmlns: NS.framing }));
  };

  /** Ends the session with a reason shown as the error state. */
  XmppClient.prototype._fail = function (reason) {
    if (!this.failed) this.failed = reason;
    this._close();
    const ws = this.ws;
    // Give <close/> a moment to leave; a server that does not answer gets closed anyway.
    if (ws) setTimeout(() => { if (ws.readyState < 2) ws.close(); }, 1000);
  };

  XmppClient.prototype.logout = function () {
    if (!this.ws) { this._setState('closed', 'logged out'); return; }
    this.closing = true;
    if (this.state === 'online') this.send(stanza('presence', { type: 'unavailable' }));
    this._close();
    const ws = this.ws;
    // RFC 7395: the server answers <close/>, then closes the WebSocket; do it ourselves if not.
    setTimeout(() => { if (ws.readyState < 2) ws.close(1000); }, 2000);
  };

  XmppClient.prototype._iq = function (type, payload, cb, to) {
    const id = 'q' + (++this.seq);
    if (cb) this.pending.set(id, cb);
    this.send(stanza('iq', { type, id, to }, payload));
    return id;
  };

  XmppClient.prototype._handle = function (e) {
    const name = e.localName;
    if (name === 'open' && e.namespaceURI === NS.framing) { this.opened = true; return; }
    if (name === 'close' && e.namespaceURI === NS.framing) { this._serverClose(e); return; }
    if (name === 'error' && e.namespaceURI === NS.stream) {
      const err = errorOf(e, NS.streams);
      this._fail('stream error: ' + err.condition + (err.text ? ' (' + err.text + ')' : ''));
      return;
    }
    if (name === 'features' && e.namespaceURI === NS.stream) { this._features(e); return; }
    if (e.namespaceURI === NS.sasl) { this._sasl(e); return; }
    if (name === 'iq') this._onIq(e);
    else if (name === 'presence') this._onPresence(e);
    else if (name === 'message') this._onMessage(e);
  };

  XmppClient.prototype._serverClose = function (e) {
    // A see-other-uri redirect is a close we do not follow: report it.
    const uri = e.getAttribute('see-other-uri');
    if (uri && !this.failed) this.failed = 'server redirects to ' + uri;
    if (!this.closing && !this.failed) this.failed = 'server closed the stream';
    this._close();
    if (this.ws) this.ws.close(1000);
  };

  XmppClient.prototype._features = function (f) {
    if (this.phase === 'auth') {
      const mechs = child(f, 'mechanisms', NS.sasl);
      const names = mechs ? Array.from(mechs.children).map((m) => m.textContent.trim()) : [];
      if (!names.includes('PLAIN')) {
        this._fail('the server offers no SASL PLAIN (offers: ' + (names.join(', ') || 'none') + ')');
        return;
      }
      this._setState('authenticating', 'SASL PLAIN as ' + this.local + '@' + this.domain);
      this.send(el('auth', { xmlns: NS.sasl, mechanism: 'PLAIN' },
        base64Utf8('\0' + this.local + '\0' + this.opts.password)));
      return;
    }
    if (!child(f, 'bind', NS.bind)) { this._fail('the server offers no resource binding'); return; }
    const session = child(f, 'session', NS.session);
    const sessionNeeded = session && !child(session, 'optional', NS.session);
    this._iq('set', el('bind', { xmlns: NS.bind }, el('resource', {}, this.resource)), (r) => {
      if (!r) return;
      if (r.getAttribute('type') !== 'result') { this._fail('resource binding refused: ' + errorOf(child(r, 'error') || r, NS.stanzas).condition); return; }
      const bind = child(r, 'bind', NS.bind);
      this.jid = (bind && childText(bind, 'jid', NS.bind)) || this.jid;
      if (sessionNeeded) this._iq('set', el('session', { xmlns: NS.session }), (s) => { if (s) this._online(); });
      else this._online();
    });
  };

  XmppClient.prototype._sasl = function (e) {
    if (e.localName === 'success') {
      this.phase = 'bound';
      this._open(); // RFC 7395 §3.5: a new <open/> restarts the stream, same WebSocket
    } else if (e.localName === 'failure') {
      const err = errorOf(e, NS.sasl);
      this._fail('authentication failed: ' + err.condition + (err.text ? ' (' + err.text + ')' : ''));
    } else if (e.localName === 'challenge') {
      this.send(el('abort', { xmlns: NS.sasl })); // PLAIN has no challenges
    }
  };

  XmppClient.prototype._online = function () {
    this._iq('get', el('query', { xmlns: NS.roster }), (r) => {
      if (!r) return;
      const q = child(r, 'query', NS.roster);
      this.roster = q ? this._items(q) : [];
      if (this.opts.onRoster) this.opts.onRoster(this.roster.slice());
      // Initial presence after the roster: the server then sends our contacts' presence.
      this.send(stanza('presence', {}));
      this._setState('online', this.jid);
    });
  };

  XmppClient.prototype._items = function (query) {
    return Array.from(query.children).filter((c) => c.localName === 'item').map((i) => ({
      jid: i.getAttribute('jid'),
      name: i.getAttribute('name') || '',
      subscription: i.getAttribute('subscription') || 'none',
    }));
  };

  XmppClient.prototype._onIq = function (iq) {
    const type = iq.getAttribute('type');
    const id = iq.getAttribute('id');
    if ((type === 'result' || type === 'error') && this.pending.has(id)) {
      const cb = this.pending.get(id);
      this.pending.delete(id);
      cb(iq);
      return;
    }
    if (type !== 'get' && type !== 'set') return;
    const from = iq.getAttribute('from');
    const payload = iq.firstElementChild;
    // RFC 6121 §2.1.6: a roster push comes from our own account (or no from at all).
    if (type === 'set' && payload && payload.namespaceURI === NS.roster && (!from || bareJid(from) === bareJid(this.jid))) {
      for (const item of this._items(payload)) {
        this.roster = this.roster.filter((r) => r.jid !== item.jid);
        if (item.subscription !== 'remove') this.roster.push(item);
      }
      this.send(stanza('iq', { type: 'result', id }));
      if (this.opts.onRoster) this.opts.onRoster(this.roster.slice());
      return;
    }
    if (type === 'get' && payload && payload.namespaceURI === NS.ping) {
      this.send(stanza('iq', { type: 'result', id, to: from }));
      return;
    }
    // Every other request gets an error reply, as RFC 6120 §8.2.3 asks.
    this.send(stanza('iq', { type: 'error', id, to: from },
      el('error', { type: 'cancel' }, el('service-unavailable', { xmlns: NS.stanzas }))));
  };

  XmppClient.prototype._onPresence = function (p) {
    const from = p.getAttribute('from') || '';
    if (this.opts.onPresence) {
      this.opts.onPresence({
        from,
        bare: bareJid(from),
        type: p.getAttribute('type') || 'available',
        show: childText(p, 'show') || '',
        status: childText(p, 'status') || '',
      });
    }
  };

  XmppClient.prototype._onMessage = function (m) {
    const body = childText(m, 'body');
    const type = m.getAttribute('type') || 'normal';
    const from = m.getAttribute('from') || '';
    if (type === 'error') {
      const err = child(m, 'error');
      if (this.opts.onMessage) {
        this.opts.onMessage({ from, bare: bareJid(from), type, body: '', id: m.getAttribute('id'), error: err ? errorOf(err, NS.stanzas).condition : 'error' });
      }
      return;
    }
    if (body === undefined) return; // chat states and receipts without text
    if (this.opts.onMessage) this.opts.onMessage({ from, bare: bareJid(from), type, body, id: m.getAttribute('id') });
  };

  XmppClient.prototype.sendMessage = function (to, body) {
    const id = 'm' + (++this.seq);
    return this.send(stanza('message', { to, type: 'chat', id }, el('body', {}, body))) ? id : null;
  };

  XmppClient.prototype.setPresence = function (show) {
    return this.send(stanza('presence', {}, show ? el('show', {}, show) : undefined));
  };

  global.XmppClient = XmppClient;
  global.XmppClient.el = el;
  global.XmppClient.escapeXml = escapeXml;
})(typeof window !== 'undefined' ? window : this);
