// Connection: one logical link to a gateway service that outlives its transports. Each
// attempt goes to one URL of the failover list, WebSocket first and, when that fails before
// opening (a proxy that refuses upgrades looks exactly like that to a browser), the HTTP
// fallback at the same URL. Every later attempt starts with WebSocket again, so a client
// returns to it as soon as the path allows. Waits between attempts come from Backoff.

import { Emitter } from './emitter.mjs';
import { Backoff } from './backoff.mjs';
import { WebSocketTransport } from './ws-transport.mjs';
import { HttpTransport } from './http-transport.mjs';
import { webSocketAdapter } from './ws-adapter.mjs';
import { wsUrl } from './urls.mjs';

/** Default rule: any WebSocket attempt that ended before opening is worth an HTTP try. */
export function fallbackOnAnyFailure(failure) {
  return !failure.opened;
}

export class Connection extends Emitter {
  /**
   * @param {object} o
   *   urls | url, protocols, transports (['websocket', 'http']), backoff (see Backoff),
   *   keepalive (ms), connectTimeout (ms), WebSocket, fetch, fallback(failure) -> bool,
   *   reconnect (true), initialRounds (Infinity: rounds the first open may take before the
   *   connection gives up), shouldReconnect(closeInfo) -> bool, credentials (fetch's),
   *   autoConnect (true), random (for tests)
   */
  constructor(o = {}) {
    super();
    const urls = o.urls || (o.url ? [o.url] : []);
    if (!urls.length) throw new TypeError('Connection needs urls');
    this.urls = urls.map(wsUrl);
    this.protocols = o.protocols ? [].concat(o.protocols) : [];
    this.transports = o.transports || ['websocket', 'http'];
    this.keepalive = o.keepalive != null ? o.keepalive : 15000;
    this.connectTimeout = o.connectTimeout != null ? o.connectTimeout : 10000;
    this.WebSocketImpl = o.WebSocket || globalThis.WebSocket;
    this.fetchImpl = o.fetch || (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null);
    this.fallback = o.fallback || fallbackOnAnyFailure;
    this.reconnectEnabled = o.reconnect !== false;
    this.initialRounds = o.initialRounds != null ? o.initialRounds : Infinity;
    this.shouldReconnect = o.shouldReconnect || (() => true);
    this.credentials = o.credentials;
    this.backoff = new Backoff(this.urls.length, o.backoff, o.random);

    this.state = 'idle';
    this.transport = null; // the open transport
    this.pending = null; // the transport of an attempt under way
    this.url = null;
    this.protocol = '';
    this.transportName = null;
    this.attempts = 0;
    this.reconnects = 0;
    this.everOpened = false;
    this.stopped = false;
    this.timer = null;
    if (o.autoConnect !== false) queueMicrotask(() => { if (this.state === 'idle') this.open(); });
  }

  get isOpen() {
    return Boolean(this.transport && this.transport.isOpen);
  }

  open() {
    if (this.state !== 'idle' && this.state !== 'closed') return this;
    this.stopped = false;
    this._setState('connecting', { url: this.urls[this.backoff.index] });
    this._attempt();
    return this;
  }

  send(data) {
    return this.isOpen ? this.transport.send(data) : false;
  }

  /** Ends the connection for good (no reconnect). */
  close(code = 1000, reason = '') {
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.pending) this.pending.close(code, reason);
    if (this.transport) this.transport.close(code, reason);
    else if (this.state !== 'closed') this._setState('closed', { code, reason });
  }

  /** Drops the current transport and reconnects (a protocol noticed the peer went silent). */
  reconnect(code = 4000, reason = 'reconnect') {
    if (this.transport) this.transport.close(code, reason);
  }

  /** A WebSocket-like object on this connection, for libraries written against WebSocket. */
  asWebSocket() {
    return webSocketAdapter(this);
  }

  /**
   * A WebSocket-compatible constructor: each `new` is one Connection without reconnects
   * (the library does its own) but with failover and the HTTP fallback.
   */
  static webSocketClass(options = {}) {
    function GatewayWebSocket(url, protocols) {
      const urls = [url].concat((options.urls || []).filter((u) => u !== url));
      const conn = new Connection({ ...options, urls, protocols, reconnect: false, initialRounds: 1 });
      return conn.asWebSocket();
    }
    Object.assign(GatewayWebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
    return GatewayWebSocket;
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.emit('state', state, detail);
  }

  _makeTransport(name, url) {
    const common = { url, protocols: this.protocols, timeout: this.connectTimeout, keepalive: this.keepalive };
    if (name === 'websocket') {
      if (!this.WebSocketImpl) return null;
      return new WebSocketTransport({ ...common, WebSocket: this.WebSocketImpl });
    }
    if (name === 'http') {
      if (!this.fetchImpl) return null;
      const o = { ...common, fetch: this.fetchImpl };
      if (this.credentials) o.credentials = this.credentials;
      return new HttpTransport(o);
    }
    return null;
  }

  /** Opens `name` at `url`: resolves true once open, or to the failure ({code, reason, ...}). */
  _try(name, url) {
    const t = this._makeTransport(name, url);
    if (!t) return Promise.resolve({ opened: false, code: 1006, reason: `no ${name} available`, transport: name });
    this.attempts++;
    this.emit('attempt', { url, transport: name, attempt: this.attempts });
    this.pending = t;
    return new Promise((resolve) => {
      t.onopen = (info) => {
        this.pending = null;
        if (this.stopped) { t.onclose = () => {}; t.close(1000, 'closed'); resolve({ opened: false, code: 1000, reason: 'closed' }); return; }
        this._opened(t, name, url, info);
        resolve(true);
      };
      t.onmessage = (data) => this.emit('message', data);
      t.onclose = (info) => {
        if (this.pending === t) this.pending = null;
        if (info.opened) this._dropped(t, name, url, info);
        else resolve({ ...info, transport: name, url });
      };
      t.start();
    });
  }

  async _attempt() {
    this.timer = null;
    const url = this.urls[this.backoff.index];
    let failure = null;
    for (const name of this.transports) {
      const r = await this._try(name, url);
      if (r === true || this.stopped) return;
      failure = r;
      this.emit('failure', r);
      if (name === 'websocket' && !this.fallback(r)) break;
    }
    const next = this.backoff.failed();
    if (!this.everOpened && this.backoff.failures >= this.initialRounds * this.urls.length) {
      this._setState('closed', { code: failure ? failure.code : 1006, reason: failure ? failure.reason : 'cannot connect', failure });
      return;
    }
    this._schedule(next, failure);
  }

  _schedule(next, why) {
    this._setState('reconnecting', {
      url: this.urls[next.index], delay: next.delay, reason: why ? why.reason : '', code: why ? why.code : undefined,
    });
    this.timer = setTimeout(() => this._attempt(), next.delay);
  }

  _opened(t, name, url, info) {
    if (this.everOpened) this.reconnects++;
    this.everOpened = true;
    this.transport = t;
    this.transportName = name;
    this.url = url;
    this.protocol = info.protocol || '';
    this.backoff.opened();
    const detail = { transport: name, url, protocol: this.protocol, session: info.session, reconnects: this.reconnects };
    this._setState('open', detail);
    this.emit('open', detail);
  }

  _dropped(t, name, url, info) {
    if (this.transport === t) this.transport = null;
    const close = { code: info.code, reason: info.reason, transport: name, url };
    if (this.stopped || !this.reconnectEnabled || !this.shouldReconnect(close)) {
      this.stopped = true;
      this._setState('closed', close);
      this.emit('close', { ...close, willReconnect: false });
      return;
    }
    // State first, so whoever handles 'close' already sees 'reconnecting'.
    this._schedule(this.backoff.dropped(), close);
    this.emit('close', { ...close, willReconnect: true });
  }
}
