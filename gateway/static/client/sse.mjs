// A streaming parser for text/event-stream (the WHATWG "event stream interpretation"), fed
// with text chunks cut anywhere, including between the CR and LF of one line end. fetch()
// gives bytes; SseDecoder puts a streaming UTF-8 decoder in front.

export class SseParser {
  /** @param {{onEvent?: Function, onRetry?: Function, onComment?: Function}} handlers */
  constructor(handlers = {}) {
    this.onEvent = handlers.onEvent || (() => {});
    this.onRetry = handlers.onRetry || (() => {});
    this.onComment = handlers.onComment || (() => {});
    this.lastEventId = '';
    this._line = '';
    this._skipLf = false; // the previous chunk ended with CR: a leading LF belongs to it
    this._reset();
  }

  _reset() {
    this._data = '';
    this._type = '';
    this._hasData = false;
  }

  push(text) {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch === 10 && this._skipLf && i === start && this._line === '') {
        this._skipLf = false;
        start = i + 1;
        continue;
      }
      this._skipLf = false;
      if (ch !== 10 && ch !== 13) continue;
      const line = this._line + text.slice(start, i);
      this._line = '';
      if (ch === 13) {
        if (text.charCodeAt(i + 1) === 10) i++;
        else if (i + 1 === text.length) this._skipLf = true;
      }
      start = i + 1;
      this._processLine(line);
    }
    this._line += text.slice(start);
  }

  /** The stream ended: an event without its blank line is dropped, as the spec says. */
  end() {
    this._line = '';
    this._skipLf = false;
    this._reset();
  }

  _processLine(line) {
    if (line === '') { this._dispatch(); return; }
    if (line[0] === ':') { this.onComment(line.slice(1).replace(/^ /, '')); return; }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'event': this._type = value; break;
      case 'data': this._data += value + '\n'; this._hasData = true; break;
      case 'id': if (value.indexOf('\0') < 0) this.lastEventId = value; break;
      case 'retry': if (/^\d+$/.test(value)) this.onRetry(parseInt(value, 10)); break;
      default: break; // unknown fields are ignored
    }
  }

  _dispatch() {
    if (!this._hasData) { this._reset(); return; }
    const event = { type: this._type || 'message', data: this._data.slice(0, -1), id: this.lastEventId };
    this._reset();
    this.onEvent(event);
  }
}

/** SseParser fed with bytes (Uint8Array chunks of a fetch body). */
export class SseDecoder extends SseParser {
  constructor(handlers) {
    super(handlers);
    this._decoder = new TextDecoder('utf-8');
  }

  pushBytes(bytes) {
    this.push(this._decoder.decode(bytes, { stream: true }));
  }

  end() {
    this.push(this._decoder.decode());
    super.end();
  }
}
