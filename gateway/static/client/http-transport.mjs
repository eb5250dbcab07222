// The gateway's HTTP fallback (POST P/sessions, then an event stream down and POSTed
// batches up) as a transport of Connection, with fetch only, so it runs the same in browsers
// and Node. What it guarantees, in both directions, is what a WebSocket gives: every message
// once, in order, or the session ends.
//
// Down: the events stream is read with a streaming SSE parser; when it ends without a close
// event (the server rotates it every stream_bytes, or the network cut it) it is asked again
// from the last id seen, and ids at or below that are dropped, so a replay overlap is never
// a duplicate. Up: messages get consecutive seqs; one POST in flight; a POST that failed on
// the network goes again with the same seq (the server skips what it already applied). Each
// POST carries `ack`, and a receive-only client POSTs an empty batch now and then, so the
// server's replay buffer does not fill with what we already have.

import { SseDecoder } from './sse.mjs';
import { base64ToBytes, bytesToBase64 } from './base64.mjs';
import { httpUrl, withQuery } from './urls.mjs';

const encoder = new TextEncoder();
const utf8 = new TextDecoder('utf-8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Statuses after which the session is gone for good: asking again cannot help.
const SESSION_GONE = new Set([400, 403, 404, 410, 421]);

export class HttpTransport {
  /**
   * @param {object} o  url (ws or http form of the service path), protocols, fetch,
   *   timeout (ms for the session POST), keepalive (ms; the server's comment interval, a
   *   stream silent for twice that is asked again), ackInterval (ms), credentials (fetch's)
   */
  constructor(o) {
    this.name = 'http';
    this.o = { ackInterval: 1000, credentials: 'include', ...o };
    this.url = o.url;
    this.onopen = () => {};
    this.onmessage = () => {};
    this.onclose = () => {};
    this.opened = false;
    this.ended = false;
    this.lastId = 0; // the last down event id handled
    this.ackedId = 0; // the last id the server has been told about
    this.unackedBytes = 0;
    this.nextSeq = 1;
    this.queue = []; // up messages not yet acknowledged: { seq, json, size }
    this.inFlight = false;
    this.retry = 500;
    this.streamAbort = null;
    this.ackTimer = null;
  }

  get isOpen() {
    return this.opened && !this.ended && !this.closing;
  }

  async start() {
    const base = httpUrl(this.url);
    const u = new URL(base);
    u.pathname = u.pathname.replace(/\/$/, '') + '/sessions';
    const sessionsUrl = withQuery(u.href, base, { protocol: (this.o.protocols || []).join(',') });
    const abort = new AbortController();
    const timer = this.o.timeout > 0 ? setTimeout(() => abort.abort(), this.o.timeout) : null;
    let info;
    try {
      const res = await this.o.fetch(sessionsUrl, {
        method: 'POST', signal: abort.signal, credentials: this.o.credentials, cache: 'no-store',
      });
      const text = await res.text();
      if (res.status !== 201) {
        this._end(1006, `HTTP ${res.status} ${text.trim().slice(0, 200)}`.trim(), { status: res.status });
        return;
      }
      info = JSON.parse(text);
    } catch (e) {
      this._end(1006, abort.signal.aborted ? 'open timed out' : String(e && e.message || e));
      return;
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (this.ended) return; // closed while the POST was out
    this.session = info.session;
    this.graceMs = info.grace_ms || 30000;
    this.maxPostBytes = info.max_post_bytes || 1 << 20;
    this.eventsUrl = withQuery(info.events, base);
    this.messagesUrl = withQuery(info.messages, base);
    this.sessionUrl = withQuery(new URL(info.events, base).pathname.replace(/\/events$/, ''), base);
    this.opened = true;
    this.onopen({ protocol: info.protocol || '', session: info.session });
    this._readEvents();
    this._flush();
  }

  // --- down ----------------------------------------------------------------------------

  async _readEvents() {
    let lastGood = Date.now();
    let failures = 0;
    while (!this.ended) {
      const abort = new AbortController();
      this.streamAbort = abort;
      const url = this.lastId ? withQuery(this.eventsUrl, this.eventsUrl, { last_event_id: this.lastId }) : this.eventsUrl;
      const headers = this.lastId ? { 'Last-Event-ID': String(this.lastId) } : {};
      let idle = null;
      const watch = () => {
        if (idle) clearTimeout(idle);
        if (this.o.keepalive > 0) idle = setTimeout(() => abort.abort(), 2 * this.o.keepalive + 1000);
      };
      try {
        watch();
        const res = await this.o.fetch(url, { headers, signal: abort.signal, credentials: this.o.credentials, cache: 'no-store' });
        if (SESSION_GONE.has(res.status)) {
          this._end(1006, `events: HTTP ${res.status}`, { status: res.status });
          return;
        }
        if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
        lastGood = Date.now();
        failures = 0;
        const closed = await this._consume(res.body, watch);
        if (closed) return;
      } catch (e) {
        if (this.ended) return;
        if (Date.now() - lastGood > this.graceMs) {
          this._end(1006, 'events stream lost: ' + (e && e.message || e));
          return;
        }
        failures++;
        await sleep(Math.min(this.retry * failures, 5000));
      } finally {
        if (idle) clearTimeout(idle);
      }
    }
  }

  /** Reads one response; true if it carried the session's close event. */
  async _consume(body, watch) {
    let closed = false;
    const parser = new SseDecoder({
      onRetry: (ms) => { this.retry = ms; },
      onEvent: (ev) => { if (!closed && !this.ended) closed = this._event(ev); },
    });
    const reader = body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.ended) break;
        watch();
        parser.pushBytes(value);
        if (closed) break;
      }
    } finally {
      parser.end();
      reader.cancel().catch(() => { /* already gone */ });
    }
    if (this.ended) return true;
    return closed;
  }

  _event(ev) {
    if (ev.type === 'close') {
      let info = {};
      try { info = JSON.parse(ev.data); } catch (_) { /* keep the defaults */ }
      this._end(info.code || 1005, info.reason || '', { byServer: true });
      return true;
    }
    const id = parseInt(ev.id, 10);
    if (Number.isFinite(id)) {
      if (id <= this.lastId) return false; // already handled before the stream was asked again
      this.lastId = id;
    }
    let data;
    if (ev.type === 'binary') data = base64ToBytes(ev.data);
    else if (ev.type === 'text64') data = utf8.decode(base64ToBytes(ev.data));
    else if (ev.type === 'message') data = ev.data;
    else return false;
    this.unackedBytes += ev.data.length;
    this.onmessage(data);
    this._scheduleAck();
    return false;
  }

  _scheduleAck() {
    if (this.unackedBytes > 64 * 1024) { this._flush(); return; }
    if (this.ackTimer || this.ended) return;
    this.ackTimer = setTimeout(() => { this.ackTimer = null; this._flush(); }, this.o.ackInterval);
  }

  // --- up ------------------------------------------------------------------------------

  send(data) {
    if (!this.isOpen) return false;
    const msg = typeof data === 'string' ? { text: data } : { binary: bytesToBase64(toBytes(data)) };
    const json = JSON.stringify(msg);
    this.queue.push({ seq: this.nextSeq++, json, size: encoder.encode(json).length });
    this._flush();
    return true;
  }

  async _flush() {
    if (this.inFlight || this.ended || !this.opened) return;
    const budget = Math.max(1024, this.maxPostBytes - 256);
    const batch = [];
    let size = 0;
    for (const m of this.queue) {
      if (batch.length && size + m.size + 1 > budget) break;
      batch.push(m);
      size += m.size + 1;
    }
    if (!batch.length && this.lastId <= this.ackedId) {
      if (this.drained) this.drained();
      return;
    }
    this.inFlight = true;
    const ack = this.lastId;
    const seq = batch.length ? batch[0].seq : this.nextSeq;
    const body = '{"seq":' + seq + ',"ack":' + ack + ',"messages":[' + batch.map((m) => m.json).join(',') + ']}';
    let delay = 0;
    try {
      const res = await this.o.fetch(this.messagesUrl, {
        method: 'POST', body, headers: { 'Content-Type': 'application/json' },
        credentials: this.o.credentials, cache: 'no-store',
      });
      const reply = await res.json().catch(() => ({}));
      if (res.status === 200) {
        this._applied(reply.ack != null ? reply.ack : seq + batch.length - 1);
        this.ackedId = Math.max(this.ackedId, ack);
        this.unackedBytes = 0;
        this.postFailingSince = null;
      } else if (res.status === 409) {
        // Either a POST of ours the network lost the answer to is still being applied, or
        // the server is ahead of what we thought: skip what it has, try again.
        if (reply.expected != null) this._applied(reply.expected - 1);
        if (reply.expected != null && reply.expected > this.nextSeq) {
          this._end(1006, 'server expects messages we never sent');
          return;
        }
        delay = 100;
      } else if (res.status === 413) {
        this._end(1009, 'message too big for one POST');
        return;
      } else if (SESSION_GONE.has(res.status)) {
        this._end(1006, `messages: HTTP ${res.status}`, { status: res.status });
        return;
      } else {
        throw new Error(`messages: HTTP ${res.status}`);
      }
    } catch (e) {
      // Same batch, same seq, later: the server deduplicates what it already applied.
      const now = Date.now();
      this.postFailingSince = this.postFailingSince || now;
      if (now - this.postFailingSince > this.graceMs) {
        this._end(1006, 'cannot reach the server: ' + (e && e.message || e));
        return;
      }
      this.postFailures = (this.postFailures || 0) + 1;
      delay = Math.min(250 * Math.pow(2, this.postFailures - 1), 5000);
    } finally {
      this.inFlight = false;
    }
    if (!delay) this.postFailures = 0;
    if (this.ended) return;
    if (delay) setTimeout(() => this._flush(), delay);
    else this._flush();
  }

  _applied(upTo) {
    while (this.queue.length && this.queue[0].seq <= upTo) this.queue.shift();
  }

  // --- the end -------------------------------------------------------------------------

  /** Sends what is queued (up to a second), then deletes the session. */
  async close(code = 1000, reason = '') {
    if (this.ended || this.closing) return;
    this.closing = true;
    if (this.opened && (this.queue.length || this.inFlight)) {
      await Promise.race([new Promise((r) => { this.drained = r; this._flush(); }), sleep(1000)]);
    }
    const url = this.sessionUrl;
    this._end(code, reason, { byUs: true });
    if (url) {
      // keepalive lets the DELETE outlive a page being unloaded.
      this.o.fetch(url, { method: 'DELETE', keepalive: true, credentials: this.o.credentials }).catch(() => {});
    }
  }

  _end(code, reason, extra = {}) {
    if (this.ended) return;
    this.ended = true;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (this.streamAbort) this.streamAbort.abort();
    this.onclose({ code, reason, opened: this.opened, ...extra });
  }
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('send() takes a string, an ArrayBuffer or a typed array');
}
