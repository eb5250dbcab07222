// When and where the next connection attempt goes. A round is one attempt at every URL of
// the failover list, in order; the next URL of a round is tried at once (that is what a
// failover list is for), and only a whole failed round waits. The wait grows by `factor`
// per failed round up to `max`; after `rounds` failed rounds it is `max` from then on, so a
// client facing a dead cluster settles at one round per `max` instead of hammering it.
// Jitter takes a random part (up to `jitter` of it) off every wait, so clients dropped
// together do not come back together.

export const DEFAULT_BACKOFF = { initial: 250, max: 10000, factor: 2, jitter: 0.5, rounds: 6, stable: 5000 };

export class Backoff {
  /**
   * @param {number} count  how many URLs there are
   * @param {object} options  DEFAULT_BACKOFF's keys; `stable`: ms a connection must stay
   *   open for its drop to count as a fresh start rather than one more failure
   * @param {() => number} random  in [0, 1); injectable for tests
   */
  constructor(count, options = {}, random = Math.random) {
    this.count = Math.max(1, count);
    this.o = { ...DEFAULT_BACKOFF, ...options };
    this.random = random;
    this.index = 0; // the URL of the current (or next) attempt
    this.failures = 0; // failed attempts since the last stable connection
    this.openedAt = null;
  }

  /** The wait before a round after `round` failed ones (round >= 1). */
  delayFor(round) {
    const o = this.o;
    const base = round >= o.rounds ? o.max : Math.min(o.max, o.initial * Math.pow(o.factor, round - 1));
    return Math.round(base * (1 - o.jitter * this.random()));
  }

  /** The attempt at the current URL failed (never opened): where and when the next one goes. */
  failed() {
    this.failures++;
    this.index = (this.index + 1) % this.count;
    const endOfRound = this.failures % this.count === 0;
    return { index: this.index, delay: endOfRound ? this.delayFor(this.failures / this.count) : 0 };
  }

  opened(now = Date.now()) {
    this.openedAt = now;
  }

  /**
   * An open connection dropped. After a stable spell the count starts again and the same URL
   * is tried first, after a short jittered pause; a connection that drops soon after opening
   * counts as a failed attempt, so a flapping server is backed off from like a dead one.
   */
  dropped(now = Date.now()) {
    const stable = this.openedAt !== null && now - this.openedAt >= this.o.stable;
    this.openedAt = null;
    if (!stable) return this.failed();
    this.failures = 0;
    return { index: this.index, delay: Math.round(this.o.initial * (1 - this.o.jitter * this.random())) };
  }
}
