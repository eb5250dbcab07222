// A small STOMP 1.2 client over a browser WebSocket (1.1 and 1.0 servers work too):
// CONNECT with accept-version and heart-beat, SUBSCRIBE / UNSUBSCRIBE / SEND / ACK,
// frame parsing with content-length, several frames (and heart-beats) per WebSocket
// message or a frame split across messages, header escaping, and heart-beats both ways.
//
//   const c = new StompClient('ws://host/ws', {
//     heartBeat: [10000, 10000],          // [we send every, we want every] ms; 0 = never
//     onConnect(frame) { c.subscribe('/topic/x', (msg) => ...); },
//     onClose(event) {}, onError(frame) {},
//   });
//   c.connect();
(function (global) {
  'use strict';

  const NUL = 0;
  const LF = 10;
  const CR = 13;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder('utf-8');

  function escapeValue(v, version) {
    if (version === '1.0') return v;
    let s = String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/:/g, '\\c');
    if (version === '1.2') s = s.replace(/\r/g, '\\r');
    return s;
  }

  // One pass, left to right, so "\\n" (escaped backslash, then n) stays a backslash and an n.
  function unescapeValue(v, version) {
    if (version === '1.0' || v.indexOf('\\') < 0) return v;
    let out = '';
    for (let i = 0; i < v.length; i++) {
      const ch = v[i];
      if (ch !== '\\') { out += ch; continue; }
      const next = v[++i];
      if (next === 'n') out += '\n';
      else if (next === 'c') out += ':';
      else if (next === '\\') out += '\\';
      else if (next === 'r' && version === '1.2') out += '\r';
      else throw new Error('bad escape \\' + (next || '') + ' in header value');
    }
    return out;
  }

  function concat(a, b) {
    if (a.length === 0) return b;
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  class StompClient {
    constructor(url, options) {
      const o = options || {};
      this.url = url;
      this.protocols = o.protocols || ['v12.stomp', 'v11.stomp', 'v10.stomp'];
      this.acceptVersion = o.acceptVersion || '1.2,1.1,1.0';
      this.heartBeat = o.heartBeat || [10000, 10000];
      this.connectHeaders = o.connectHeaders || {};
      this.onConnect = o.onConnect || function () {};
      this.onClose = o.onClose || function () {};
      this.onError = o.onError || function () {};
      this.onFrame = o.onFrame || function () {};
      this.ws = null;
      this.version = null;
      this.connected = false;
      this.subscriptions = new Map();
      this.receipts = new Map();
      this.buffer = new Uint8Array(0);
      this.nextId = 1;
      this.timers = [];
      this.lastSent = 0;
      this.lastHeard = 0;
    }

    connect() {
      const ws = new WebSocket(this.url, this.protocols);
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      this.buffer = new Uint8Array(0);
      ws.onopen = () => {
        const headers = Object.assign({
          'accept-version': this.acceptVersion,
          host: location.hostname || 'localhost',
          'heart-beat': this.heartBeat.join(','),
        }, this.connectHeaders);
        this._transmit('CONNECT', headers, null, '1.0');
      };
      ws.onmessage = (ev) => this._onData(ev.data);
      ws.onclose = (ev) => this._closed(ev);
      ws.onerror = () => {};
    }

    /** Subscribe; `callback(message)` gets {headers, body (string), binaryBody, ack(), nack()}. */
    subscribe(destination, callback, headers) {
      const id = 'sub-' + this.nextId++;
      this.subscriptions.set(id, callback);
      this._transmit('SUBSCRIBE', Object.assign({ id: id, destination: destination, ack: 'auto' }, headers || {}));
      return {
        id: id,
        unsubscribe: (extra) => {
          this.subscriptions.delete(id);
          this._transmit('UNSUBSCRIBE', Object.assign({ id: id }, extra || {}));
        },
      };
    }

    send(destination, body, headers) {
      this._transmit('SEND', Object.assign({ destination: destination }, headers || {}), body);
    }

    /** Resolves when the server confirms every earlier frame was handled. */
    receipt(command, headers) {
      const id = 'rcpt-' + this.nextId++;
      return new Promise((resolve) => {
        this.receipts.set(id, resolve);
        this._transmit(command, Object.assign({ receipt: id }, headers || {}));
      });
    }

    disconnect() {
      this._stopTimers();
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.connected) {
        const id = 'bye-' + this.nextId++;
        this.receipts.set(id, () => this.ws.close());
        this._transmit('DISCONNECT', { receipt: id });
        setTimeout(() => this.ws && this.ws.close(), 2000);
      } else if (this.ws) {
        this.ws.close();
      }
    }

    // --- wire --------------------------------------------------------------------------

    _transmit(command, headers, body, version) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      const v = version || this.version || '1.0';
      let bytes = null;
      if (body != null) bytes = typeof body === 'string' ? encoder.encode(body) : new Uint8Array(body);
      let head = command + '\n';
      for (const k of Object.keys(headers)) {
        if (headers[k] == null) continue;
        head += escapeValue(k, v) + ':' + escapeValue(headers[k], v) + '\n';
      }
      if (bytes && bytes.length) head += 'content-length:' + bytes.length + '\n';
      head += '\n';
      const isText = !bytes || typeof body === 'string';
      if (isText) {
        this.ws.send(head + (body || '') + '\0');
      } else {
        const h = encoder.encode(head);
        const out = new Uint8Array(h.length + bytes.length + 1);
        out.set(h, 0);
        out.set(bytes, h.length);
        this.ws.send(out);
      }
      this.lastSent = Date.now();
    }

    _onData(data) {
      this.lastHeard = Date.now();
      const chunk = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
      this.buffer = concat(this.buffer, chunk);
      for (;;) {
        const frame = this._parseOne();
        if (!frame) break;
        this._dispatch(frame);
      }
    }

    /** Takes one frame off the buffer, or null if it holds only part of one. */
    _parseOne() {
      const buf = this.buffer;
      let i = 0;
      while (i < buf.length && (buf[i] === LF || buf[i] === CR)) i++; // heart-beats
      if (i === buf.length) { this.buffer = new Uint8Array(0); return null; }
      // End of headers: the first empty line.
      let headEnd = -1;
      let bodyStart = -1;
      for (let j = i; j < buf.length; j++) {
        if (buf[j] !== LF) continue;
        if (buf[j + 1] === LF) { headEnd = j; bodyStart = j + 2; break; }
        if (buf[j + 1] === CR && buf[j + 2] === LF) { headEnd = j; bodyStart = j + 3; break; }
      }
      if (headEnd < 0) { this.buffer = buf.subarray(i); return null; }
      const lines = decoder.decode(buf.subarray(i, headEnd)).split('\n').map((l) => l.replace(/\r$/, ''));
      const command = lines.shift();
      const version = command === 'CONNECTED' ? '1.0' : (this.version || '1.0');
      const headers = {};
      for (const line of lines) {
        const c = line.indexOf(':');
        if (c < 0) continue;
        const k = unescapeValue(line.slice(0, c), version);
        if (!(k in headers)) headers[k] = unescapeValue(line.slice(c + 1), version); // first wins
      }
      let bodyEnd;
      if (headers['content-length'] !== undefined) {
        bodyEnd = bodyStart + parseInt(headers['content-length'], 10);
        if (buf.length < bodyEnd + 1) { this.buffer = buf.subarray(i); return null; }
      } else {
        bodyEnd = buf.indexOf(NUL, bodyStart);
        if (bodyEnd < 0) { this.buffer = buf.subarray(i); return null; }
      }
      const binaryBody = buf.slice(bodyStart, bodyEnd);
      this.buffer = buf.subarray(bodyEnd + 1);
      return { command: command, headers: headers, binaryBody: binaryBody, body: decoder.decode(binaryBody) };
    }

    _dispatch(frame) {
      this.onFrame(frame);
      switch (frame.command) {
        case 'CONNECTED':
          this.version = frame.headers.version || '1.0';
          this.connected = true;
          this._startHeartBeats(frame.headers['heart-beat']);
          this.onConnect(frame);
          break;
        case 'MESSAGE': {
          const cb = this.subscriptions.get(frame.headers.subscription);
          if (!cb) break;
          const ackId = this.version === '1.2' ? frame.headers.ack : frame.headers['message-id'];
          const ackHeaders = this.version === '1.2' ? { id: ackId } : { 'message-id': ackId, subscription: frame.headers.subscription };
          frame.ack = (h) => this._transmit('ACK', Object.assign(ackHeaders, h || {}));
          frame.nack = (h) => this._transmit('NACK', Object.assign(ackHeaders, h || {}));
          cb(frame);
          break;
        }
        case 'RECEIPT': {
          const done = this.receipts.get(frame.headers['receipt-id']);
          this.receipts.delete(frame.headers['receipt-id']);
          if (done) done(frame);
          break;
        }
        case 'ERROR':
          this.onError(frame);
          break;
        default:
          break;
      }
    }

    _startHeartBeats(header) {
      this._stopTimers();
      const parts = (header || '0,0').split(',').map((x) => parseInt(x, 10) || 0);
      const sx = parts[0];
      const sy = parts[1];
      const cx = this.heartBeat[0];
      const cy = this.heartBeat[1];
      if (this.version !== '1.0' && cx > 0 && sy > 0) {
        const every = Math.max(cx, sy);
        this.timers.push(setInterval(() => {
          if (Date.now() - this.lastSent >= every / 2 && this.ws.readyState === WebSocket.OPEN) {
            this.ws.send('\n');
            this.lastSent = Date.now();
          }
        }, Math.max(every / 4, 50)));
      }
      if (this.version !== '1.0' && cy > 0 && sx > 0) {
        const every = Math.max(cy, sx);
        this.timers.push(setInterval(() => {
          if (Date.now() - this.lastHeard > 2 * every) {
            // The server went silent: drop the connection so the owner can reconnect.
            this.ws.close(4000, 'heart-beat timeout');
          }
        }, every));
      }
    }

    _stopTimers() {
      for (const t of this.timers) clearInterval(t);
      this.timers = [];
    }

    _closed(ev) {
      this._stopTimers();
      this.connected = false;
      this.subscriptions.clear();
      this.receipts.clear();
      this.onClose(ev);
    }
  }

  StompClient.escapeValue = escapeValue;
  StompClient.unescapeValue = unescapeValue;
  global.StompClient = StompClient;
})(typeof window !== 'undefined' ? window : globalThis);
