// A minimal event emitter, the same in browsers and Node (EventTarget would wrap every
// payload in an Event, which makes `on('message', (data) => ...)` clumsy).
export class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    const set = this._handlers.get(event);
    if (set) set.delete(fn);
    return this;
  }

  once(event, fn) {
    const wrapped = (...args) => { this.off(event, wrapped); fn(...args); };
    return this.on(event, wrapped);
  }

  /** Resolves with the first argument of the next `event`. */
  next(event) {
    return new Promise((resolve) => this.once(event, resolve));
  }

  // A throwing handler must not stop the others or the caller's state machine.
  emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of Array.from(set)) {
      try {
        fn(...args);
      } catch (e) {
        setTimeout(() => { throw e; }, 0);
      }
    }
  }
}
