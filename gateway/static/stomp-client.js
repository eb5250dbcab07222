// A small STOMP 1.2 client over a browser WebSocket (1.1 and 1.0 servers work too):
// CONNECT with accept-version and heart-beat, SUBSCRIBE / UNSUBSCRIBE / SEND / ACK, and
// heart-beats both ways; frames are read and written by stomp-frames.js. One connection, no
// reconnect: gateway-client.mjs (StompSession) is the client that survives outages.
//
//   const c = new StompClient('ws://host/ws', {
//     heartBeat: [10000, 10000],          // [we send every, we want every] ms; 0 = never
//     onConnect(frame) { c.subscribe('/topic/x', (msg) => ...); },
//     onClose(event) {}, onError(frame) {},
//   });
//   c.connect();
(function (global) {
  'use strict';

  // The codec lives in stomp-frames.js: a page loads it first (<script src>), Node requires it.
  const Frames = global.StompFrames || (typeof require === 'function' ? require('./stomp-frames.js') : null);
  if (!Frames) throw new Error('stomp-client.js needs stomp-frames.js loaded first');
  const { escapeValue, unescapeValue, encodeFrame, FrameReader } = Frames;

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
      this.reader = new FrameReader();
      this.nextId = 1;
      this.timers = [];
      this.lastSent = 0;
      this.lastHeard = 0;
    }

    connect() {
      const ws = new WebSocket(this.url, this.protocols);
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      this.reader.reset();
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
      this.ws.send(encodeFrame(command, headers, body, version || this.version || '1.0'));
      this.lastSent = Date.now();
    }

    _onData(data) {
      this.lastHeard = Date.now();
      this.reader.push(data);
      for (;;) {
        const frame = this.reader.next(this.version);
        if (!frame) break;
        this._dispatch(frame);
      }
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
