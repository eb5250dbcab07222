// StompSession: STOMP over a Connection, for as long as the application wants it, whatever
// happens to the transports underneath. After every reconnect it sends CONNECT again,
// re-subscribes every subscription (with `resume` from the last stream position it saw, so
// the gateway replays what was missed, or with `snapshot` the first time when asked) and
// sends again every SEND whose RECEIPT never came. Frames are read and written by
// stomp-frames.js, the codec of the pages' classic client.
//
// What a re-subscription after a reconnect (to the same gateway or another one of the
// failover list) can promise depends on where the messages wait meanwhile: a queue keeps
// them (unacknowledged ones come again, `redelivered:true`); a gateway stream replays them
// (`resume:ok`) or, in another epoch (another gateway, a restart), gives the snapshot
// (`reset`); a RabbitMQ stream queue read with `x-stream-offset` is read on from the offset
// after the last one seen; anything else (a topic without a stream, an exchange) lost what
// was published while the client was away, and the session says so with a `gap` event.

import '../stomp-frames.js';
import { Emitter } from './emitter.mjs';
import { Connection } from './connection.mjs';
import { PositionTracker } from './position.mjs';

const { encodeFrame, FrameReader } = globalThis.StompFrames;

const STOMP_PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

class Subscription {
  constructor(session, id, destination, callback, options) {
    this.session = session;
    this.id = id;
    this.destination = destination;
    this.callback = callback;
    this.snapshot = Boolean(options.snapshot);
    this.headers = options.headers || {};
    this.ack = options.ack || 'auto';
    this.tracker = new PositionTracker();
    this.active = true;
    // The last `x-stream-offset` delivered (a RabbitMQ stream queue), the next resume point.
    this.streamOffset = null;
    this.everSubscribed = false; // a RECEIPT for one of its SUBSCRIBEs came
    this.unresumed = 0; // re-subscriptions that may have missed messages (see `gap`)
  }

  /** The last stream position seen ("<epoch>-<seq>"), the next resume point. */
  get position() {
    return this.tracker.resumeFrom ? this.tracker.resumeFrom.text : null;
  }

  get gaps() {
    return this.tracker.gaps;
  }

  /** Where messages wait while the client is away: nothing is lost across a reconnect. */
  get keptByBroker() {
    return /^\/(queue|amq\/queue|temp-queue)\//.test(this.destination);
  }

  unsubscribe(headers) {
    this.session._unsubscribe(this, headers);
  }
}

export class StompSession extends Emitter {
  /**
   * @param {object} o  Connection's options, or `connection` (an existing one), plus login,
   *   passcode, host, connectHeaders, acceptVersion, heartBeat ([we send every, we want
   *   every] ms; [10000, 10000]), maxBuffered (sends held while disconnected; 1000)
   */
  constructor(o = {}) {
    super();
    this.o = o;
    this.heartBeat = o.heartBeat || [10000, 10000];
    this.maxBuffered = o.maxBuffered != null ? o.maxBuffered : 1000;
    this.connection = o.connection || new Connection({ protocols: STOMP_PROTOCOLS, ...o, autoConnect: false });
    this.reader = new FrameReader();
    this.subs = new Map(); // id -> Subscription
    this.sends = new Map(); // receipt id -> pending SEND, in the order they were made
    this.receipts = new Map(); // receipt id -> handler, for this connection only
    this.nextId = 1;
    this.version = null;
    this.connected = false;
    this.link = 0; // counts CONNECTEDs: which STOMP connection a message came on
    this.state = 'connecting';
    this.timers = [];
    const c = this.connection;
    c.on('open', (info) => this._onOpen(info));
    c.on('message', (data) => this._onData(data));
    c.on('close', (info) => this._onClose(info));
    c.on('state', (s, d) => this._onConnState(s, d));
    if (!o.connection && o.autoConnect !== false) queueMicrotask(() => c.open());
  }

  get transport() { return this.connection.transportName; }
  get reconnects() { return this.connection.reconnects; }

  /**
   * `callback(message)` gets { headers, body, binaryBody, position, kind ('live' |
   * 'snapshot' | 'resumed'), ack(), nack() }. options: snapshot, ack, headers.
   */
  subscribe(destination, callback, options = {}) {
    const sub = new Subscription(this, 'sub-' + this.nextId++, destination, callback, options);
    this.subs.set(sub.id, sub);
    if (this.connected) this._subscribe(sub);
    return sub;
  }

  /** Resolves with the RECEIPT; held while disconnected (up to maxBuffered) and resent. */
  send(destination, body, headers = {}) {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed') { reject(new Error('session closed')); return; }
      if (!this.connected && this.sends.size >= this.maxBuffered) {
        reject(new Error(`send buffer full (${this.maxBuffered} unconfirmed sends while disconnected)`));
        return;
      }
      const id = 'send-' + this.nextId++;
      const entry = { id, destination, body, headers, resolve, reject };
      this.sends.set(id, entry);
      if (this.connected) this._transmitSend(entry);
    });
  }

  /** DISCONNECT (waiting for its receipt, up to 2 s), then the connection closes. */
  async close() {
    if (this.state === 'closed') return;
    if (this.connected) {
      const id = 'bye-' + this.nextId++;
      await new Promise((resolve) => {
        this.receipts.set(id, resolve);
        this._transmit('DISCONNECT', { receipt: id });
        setTimeout(resolve, 2000);
      });
    }
    this._stopTimers();
    this.connection.close(1000, 'bye');
  }

  // --- connection life -------------------------------------------------------------------

  _onOpen(info) {
    this.reader.reset();
    this.version = null;
    let host = this.o.host;
    if (!host) { try { host = new URL(info.url).hostname; } catch (_) { host = 'localhost'; } }
    const headers = {
      'accept-version': this.o.acceptVersion || '1.2,1.1,1.0',
      host,
      'heart-beat': this.heartBeat.join(','),
    };
    if (this.o.login != null) headers.login = this.o.login;
    if (this.o.passcode != null) headers.passcode = this.o.passcode;
    Object.assign(headers, this.o.connectHeaders || {});
    this._transmit('CONNECT', headers, null, '1.0');
  }

  _onConnState(state, detail) {
    if (state === 'connecting' || state === 'reconnecting') this._setState(state, detail);
    else if (state === 'closed') {
      this._setState('closed', detail);
      const err = new Error('session closed' + (detail && detail.reason ? ': ' + detail.reason : ''));
      for (const s of this.sends.values()) s.reject(err);
      this.sends.clear();
    }
  }

  _onClose() {
    this.connected = false;
    this._stopTimers();
    this.receipts.clear();
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.emit('state', state, detail);
  }

  // --- wire ------------------------------------------------------------------------------

  _transmit(command, headers, body, version) {
    const frame = encodeFrame(command, headers, body, version || this.version || '1.0');
    if (this.connection.send(frame)) this.lastSent = Date.now();
  }

  _subscribe(sub) {
    const receipt = 'rs-' + this.nextId++;
    const headers = { ...sub.headers, id: sub.id, destination: sub.destination, ack: sub.ack, receipt };
    const resume = sub.position;
    if (resume) headers.resume = resume;
    else if (sub.snapshot) headers.snapshot = 'true';
    // A stream queue is read on where this subscription stopped, on whichever gateway.
    if (sub.streamOffset !== null) headers['x-stream-offset'] = `offset=${sub.streamOffset + 1}`;
    const again = sub.everSubscribed;
    this.receipts.set(receipt, (frame) => this._subscribed(sub, frame, resume, again));
    this._transmit('SUBSCRIBE', headers);
  }

  _subscribed(sub, frame, asked, again) {
    const h = frame.headers;
    sub.everSubscribed = true;
    if (h.position) sub.tracker.started(h.position);
    const info = { position: h.position, resume: h.resume, reason: h['resume-reason'], asked, frame };
    this.emit('subscribed', sub, info);
    if (h.resume === 'ok') this.emit('resumed', sub, info);
    else if (h.resume === 'reset') this.emit('reset', sub, info);
    else if (again && !sub.keptByBroker && sub.streamOffset === null) {
      // Back after a reconnect with nothing to resume from: whatever was published while
      // the session was away is gone, and how much is unknown.
      sub.unresumed++;
      this.emit('gap', sub, {
        missed: null, position: null, resume: h.resume || 'unavailable',
        reason: 'resubscribed after a reconnect without history: messages published meanwhile are lost',
      });
    }
  }

  _transmitSend(entry) {
    this.receipts.set(entry.id, (frame) => {
      this.sends.delete(entry.id);
      entry.resolve(frame);
    });
    this._transmit('SEND', { ...entry.headers, destination: entry.destination, receipt: entry.id }, entry.body);
  }

  _unsubscribe(sub, headers) {
    if (!sub.active) return;
    sub.active = false;
    this.subs.delete(sub.id);
    if (this.connected) this._transmit('UNSUBSCRIBE', { ...(headers || {}), id: sub.id });
  }

  _onData(data) {
    this.lastHeard = Date.now();
    this.reader.push(data);
    for (;;) {
      let frame;
      try {
        frame = this.reader.next(this.version);
      } catch (e) {
        this.emit('error', e);
        this.connection.reconnect(4002, 'bad frame');
        return;
      }
      if (!frame) return;
      this._dispatch(frame);
    }
  }

  _dispatch(frame) {
    this.emit('frame', frame);
    switch (frame.command) {
      case 'CONNECTED': this._connected(frame); break;
      case 'MESSAGE': this._message(frame); break;
      case 'RECEIPT': {
        const id = frame.headers['receipt-id'];
        const done = this.receipts.get(id);
        this.receipts.delete(id);
        if (done) done(frame);
        break;
      }
      case 'ERROR': this._error(frame); break;
      default: break;
    }
  }

  _connected(frame) {
    this.version = frame.headers.version || '1.0';
    this.connected = true;
    this.link++;
    this._startHeartBeats(frame.headers['heart-beat']);
    const c = this.connection;
    this._setState('connected', { transport: c.transportName, url: c.url, reconnects: c.reconnects, frame });
    this.emit('connected', frame, { transport: c.transportName, url: c.url, reconnects: c.reconnects });
    for (const sub of this.subs.values()) this._subscribe(sub);
    for (const entry of Array.from(this.sends.values())) this._transmitSend(entry);
  }

  _message(frame) {
    const h = frame.headers;
    const sub = this.subs.get(h.subscription);
    if (!sub) return;
    const kind = h.snapshot === 'true' ? 'snapshot' : h.resumed === 'true' ? 'resumed' : 'live';
    const v12 = this.version === '1.2';
    const ackHeaders = v12 ? { id: h.ack } : { 'message-id': h['message-id'], subscription: h.subscription };
    // An ack id means something only on the connection that delivered it: after a reconnect
    // (perhaps to another gateway) the message comes again, redelivered, and an old id would
    // be an unknown one there.
    const link = this.link;
    const ack = (extra) => { if (this.link === link) this._transmit('ACK', { ...ackHeaders, ...(extra || {}) }); };
    const nack = (extra) => { if (this.link === link) this._transmit('NACK', { ...ackHeaders, ...(extra || {}) }); };
    let seen = 'unknown';
    if (h.position) {
      const before = sub.tracker.gaps;
      seen = sub.tracker.see(h.position, kind);
      if (sub.tracker.gaps > before) this.emit('gap', sub, { missed: sub.tracker.gaps - before, position: h.position });
    }
    const offset = h['x-stream-offset'] != null ? Number(h['x-stream-offset']) : NaN;
    if (sub.headers['x-stream-offset'] != null && Number.isSafeInteger(offset)) {
      if (sub.streamOffset !== null && offset <= sub.streamOffset) seen = 'duplicate';
      else sub.streamOffset = offset;
    }
    if (seen === 'duplicate') {
      if (sub.ack !== 'auto') ack();
      return;
    }
    sub.callback({ ...frame, position: h.position || null, kind, subscription: sub, ack, nack });
  }

  _error(frame) {
    const id = frame.headers['receipt-id'];
    const err = new Error('STOMP ERROR: ' + (frame.headers.message || '') + (frame.body ? ' ' + frame.body : ''));
    err.frame = frame;
    if (id && this.sends.has(id)) {
      // The server refused this SEND: it will not be resent.
      this.sends.get(id).reject(err);
      this.sends.delete(id);
    }
    this.emit('error', err, frame);
    // An ERROR instead of CONNECTED (bad login, say) would come back on every reconnect.
    if (!this.connected && this.o.stopOnConnectError !== false) this.connection.close(1000, 'refused at CONNECT');
  }

  // --- heart-beats -----------------------------------------------------------------------

  _startHeartBeats(header) {
    this._stopTimers();
    if (this.version === '1.0') return;
    const [sx, sy] = (header || '0,0').split(',').map((x) => parseInt(x, 10) || 0);
    const [cx, cy] = this.heartBeat;
    this.lastHeard = this.lastSent = Date.now();
    if (cx > 0 && sy > 0) {
      const every = Math.max(cx, sy);
      this.timers.push(setInterval(() => {
        if (Date.now() - this.lastSent >= every / 2 && this.connection.send('\n')) this.lastSent = Date.now();
      }, Math.max(every / 4, 50)));
    }
    if (cy > 0 && sx > 0) {
      const every = Math.max(cy, sx);
      this.timers.push(setInterval(() => {
        // Silent for two intervals: the link is dead even if no socket said so yet.
        if (Date.now() - this.lastHeard > 2 * every) this.connection.reconnect(4001, 'heart-beat timeout');
      }, every / 2));
    }
  }

  _stopTimers() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }
}
