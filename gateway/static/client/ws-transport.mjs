// One WebSocket, as a transport of Connection: start() opens it, onopen/onmessage/onclose
// report, close() ends it at once. Single use; Connection makes a new one per attempt.

const OPEN = 1;

export class WebSocketTransport {
  /**
   * @param {object} o  url, protocols, WebSocket (constructor), timeout (ms to open),
   *   keepalive (ms; pings where the socket can send them, i.e. the `ws` package in Node)
   */
  constructor(o) {
    this.name = 'websocket';
    this.o = o;
    this.url = o.url;
    this.onopen = () => {};
    this.onmessage = () => {};
    this.onclose = () => {};
    this.opened = false;
    this.ended = false;
    this.sock = null;
    this.timers = [];
  }

  start() {
    let sock;
    try {
      sock = new this.o.WebSocket(this.url, this.o.protocols);
    } catch (e) {
      setTimeout(() => this._end(1006, e.message), 0);
      return;
    }
    this.sock = sock;
    sock.binaryType = 'arraybuffer';
    if (this.o.timeout > 0) {
      this.timers.push(setTimeout(() => { if (!this.opened) this._end(1006, 'open timed out'); }, this.o.timeout));
    }
    sock.onopen = () => {
      this.opened = true;
      this._keepalive();
      this.onopen({ protocol: sock.protocol || '' });
    };
    sock.onmessage = (ev) => {
      this.heard = true;
      const d = ev.data;
      if (typeof d === 'string') this.onmessage(d);
      else if (d instanceof ArrayBuffer) this.onmessage(new Uint8Array(d));
      else if (ArrayBuffer.isView(d)) this.onmessage(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    };
    sock.onerror = () => { /* the close event that follows says more */ };
    sock.onclose = (ev) => this._end(ev.code || 1006, ev.reason || '');
  }

  // Browsers answer the gateway's pings but cannot send their own; `ws` in Node can, so a
  // dead peer is noticed there without waiting for TCP to give up.
  _keepalive() {
    const sock = this.sock;
    const every = this.o.keepalive;
    if (!(every > 0) || typeof sock.ping !== 'function' || typeof sock.on !== 'function') return;
    this.heard = true;
    sock.on('pong', () => { this.heard = true; });
    this.timers.push(setInterval(() => {
      if (!this.heard) { this.close(4000, 'keepalive timeout'); return; }
      this.heard = false;
      try { sock.ping(); } catch (_) { /* closing */ }
    }, every));
  }

  get isOpen() {
    return this.opened && !this.ended && this.sock && this.sock.readyState === OPEN;
  }

  send(data) {
    if (!this.isOpen) return false;
    this.sock.send(data);
    return true;
  }

  /** Reports the close now: a dead peer would hold a closing handshake for a long time. */
  close(code = 1000, reason = '') {
    if (this.ended) return;
    const sock = this.sock;
    if (sock) {
      // Browsers only let a client send 1000 or 3000-4999.
      const c = code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
      try { sock.close(c, reason); } catch (_) { /* already closing */ }
    }
    this._end(code, reason, true);
  }

  _end(code, reason, byUs = false) {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) { clearTimeout(t); clearInterval(t); }
    const sock = this.sock;
    if (sock) {
      sock.onopen = sock.onmessage = sock.onclose = null;
      sock.onerror = () => {};
      if (!this.opened && sock.readyState < 2) {
        try { sock.close(); } catch (_) { /* not started */ }
      }
    }
    this.onclose({ code, reason, opened: this.opened, byUs });
  }
}
