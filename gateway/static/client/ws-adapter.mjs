// A WebSocket look-alike over a Connection, for client libraries written against the
// browser's WebSocket (XMPP, AMQP, STOMP ones): readyState, protocol, binaryType, send,
// close, on* handlers and addEventListener. It lives as long as one transport does, like a
// real WebSocket: when that transport ends it fires close and stays CLOSED, and the library
// makes a new one (a new adapter) to reconnect, by then on whatever transport is up.

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

export function webSocketAdapter(conn) {
  const listeners = new Map();
  const ws = {
    CONNECTING, OPEN, CLOSING, CLOSED,
    url: conn.urls[0],
    readyState: CONNECTING,
    protocol: '',
    extensions: '',
    bufferedAmount: 0,
    binaryType: 'blob',
    onopen: null, onmessage: null, onclose: null, onerror: null,
    addEventListener(type, fn) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(fn);
    },
    removeEventListener(type, fn) {
      const set = listeners.get(type);
      if (set) set.delete(fn);
    },
    send(data) {
      if (ws.readyState === CONNECTING) throw new Error('InvalidStateError: still connecting');
      if (ws.readyState !== OPEN) return;
      if (typeof data !== 'string' && typeof Blob !== 'undefined' && data instanceof Blob) {
        throw new TypeError('Blob messages are not supported; send an ArrayBuffer');
      }
      conn.send(typeof data === 'string' ? data : toBytes(data));
    },
    close(code = 1000, reason = '') {
      if (ws.readyState >= CLOSING) return;
      ws.readyState = CLOSING;
      conn.close(code, reason);
    },
    get transport() { return conn.transportName; },
  };

  function fire(type, props) {
    const ev = { type, target: ws, currentTarget: ws, ...props };
    const h = ws['on' + type];
    if (typeof h === 'function') h.call(ws, ev);
    for (const fn of Array.from(listeners.get(type) || [])) fn.call(ws, ev);
  }

  function onOpen(info) {
    if (ws.readyState !== CONNECTING) return;
    ws.readyState = OPEN;
    ws.protocol = info.protocol || '';
    ws.url = info.url || ws.url;
    fire('open', {});
  }

  function onMessage(data) {
    if (ws.readyState !== OPEN) return;
    let d = data;
    if (typeof data !== 'string') {
      const copy = data.slice().buffer; // an ArrayBuffer of exactly this message
      d = ws.binaryType === 'arraybuffer' || typeof Blob === 'undefined' ? copy : new Blob([copy]);
    }
    fire('message', { data: d });
  }

  function onClose(info) {
    if (ws.readyState === CLOSED) return;
    detach();
    const wasClean = info.code === 1000;
    ws.readyState = CLOSED;
    if (!wasClean && info.code !== 1005) fire('error', {});
    fire('close', { code: info.code || 1006, reason: info.reason || '', wasClean });
  }

  function onState(state, detail) {
    if (state === 'closed') onClose(detail || {});
  }

  function detach() {
    conn.off('open', onOpen);
    conn.off('message', onMessage);
    conn.off('close', onClose);
    conn.off('state', onState);
  }

  conn.on('open', onOpen);
  conn.on('message', onMessage);
  conn.on('close', onClose);
  conn.on('state', onState);
  if (conn.isOpen) {
    // A real WebSocket never opens synchronously; libraries set handlers after `new`.
    setTimeout(() => onOpen({ protocol: conn.protocol, url: conn.url }), 0);
  } else if (conn.state === 'idle' || conn.state === 'closed') {
    conn.open();
  }
  return ws;
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new TextEncoder().encode(String(data));
}
