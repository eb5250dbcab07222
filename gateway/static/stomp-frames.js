// STOMP 1.0/1.1/1.2 frames as bytes: header escaping, encoding, and a reader that takes
// WebSocket messages (whole frames, several frames, heart-beats or a frame split across
// messages) and hands back frames.
//
// Shared by the classic-script client (stomp-client.js, loaded by <script src> or Node's
// require) and the ES module client (gateway-client.mjs, which imports this file for its
// side effect). No module syntax, so one file serves both: it defines globalThis.StompFrames
// and, under CommonJS, module.exports.
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

  /**
   * A frame ready for the wire: a string when the body is text (or absent), so it travels as
   * a WebSocket text message; bytes when the body is binary.
   */
  function encodeFrame(command, headers, body, version) {
    const v = version || '1.0';
    let bytes = null;
    if (body != null) bytes = typeof body === 'string' ? encoder.encode(body) : new Uint8Array(body);
    let head = command + '\n';
    for (const k of Object.keys(headers)) {
      if (headers[k] == null) continue;
      head += escapeValue(k, v) + ':' + escapeValue(headers[k], v) + '\n';
    }
    if (bytes && bytes.length) head += 'content-length:' + bytes.length + '\n';
    head += '\n';
    if (!bytes || typeof body === 'string') return head + (body || '') + '\0';
    const h = encoder.encode(head);
    const out = new Uint8Array(h.length + bytes.length + 1);
    out.set(h, 0);
    out.set(bytes, h.length);
    return out;
  }

  /** Accumulates received data; `next(version)` returns one whole frame or null. */
  class FrameReader {
    constructor() {
      this.buffer = new Uint8Array(0);
    }

    push(data) {
      const chunk = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
      this.buffer = concat(this.buffer, chunk);
    }

    reset() {
      this.buffer = new Uint8Array(0);
    }

    // `version` decides the unescaping; CONNECTED is always read as 1.0 (it names the version).
    next(version) {
      const buf = this.buffer;
      let i = 0;
      while (i < buf.length && (buf[i] === LF || buf[i] === CR)) i++; // heart-beats
      if (i === buf.length) { this.buffer = new Uint8Array(0); return null; }
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
      const v = command === 'CONNECTED' ? '1.0' : (version || '1.0');
      const headers = {};
      for (const line of lines) {
        const c = line.indexOf(':');
        if (c < 0) continue;
        const k = unescapeValue(line.slice(0, c), v);
        if (!(k in headers)) headers[k] = unescapeValue(line.slice(c + 1), v); // first wins
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
  }

  const api = { escapeValue: escapeValue, unescapeValue: unescapeValue, encodeFrame: encodeFrame, FrameReader: FrameReader };
  global.StompFrames = api;
  if (typeof module === 'object' && module && module.exports) module.exports = api;
})(globalThis);
