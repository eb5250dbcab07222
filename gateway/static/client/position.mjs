// Stream positions ("<epoch>-<seq>", spec: epoch lowercase hex, seq decimal) and what a
// subscription makes of the ones it sees: the resume point, and the gaps in what it got.

export function parsePosition(text) {
  const m = /^([0-9a-f]+)-(\d+)$/.exec(String(text || ''));
  return m ? { epoch: m[1], seq: Number(m[2]), text: m[0] } : null;
}

/**
 * Per subscription: `resumeFrom` is the position to ask for after a reconnect (the newest one
 * seen, from messages or the SUBSCRIBE receipt), `gaps` counts seqs skipped between live or
 * resumed messages of one epoch (meaningful when the pattern covers the whole stream, as
 * `/topic/prices.*` does; a narrower one sees the other destinations' seqs as gaps). Snapshot messages carry old positions, one per key, so they
 * move neither the gap count nor the resume point backwards.
 */
export class PositionTracker {
  constructor() {
    this.resumeFrom = null;
    this.lastLive = null;
    this.gaps = 0;
  }

  /** Where a frame stands; 'duplicate' if a resumed/live one was already seen. */
  see(position, kind) {
    const p = parsePosition(position);
    if (!p) return 'unknown';
    // A snapshot replaces what came before (a first subscribe, or a resume the server could
    // not honour): what it skipped is reported as a reset, not counted as gaps.
    if (kind === 'snapshot') this.lastLive = null;
    else {
      const last = this.lastLive;
      if (last && last.epoch === p.epoch) {
        if (p.seq <= last.seq) return 'duplicate';
        if (p.seq > last.seq + 1) this.gaps += p.seq - last.seq - 1;
      }
      this.lastLive = p;
    }
    this._advance(p);
    return 'new';
  }

  /** The stream's position when a subscription started (RECEIPT `position`). */
  started(position) {
    const p = parsePosition(position);
    // Only the resume point: gaps are counted between messages, never against the receipt.
    if (p) this._advance(p);
  }

  _advance(p) {
    const r = this.resumeFrom;
    if (!r || r.epoch !== p.epoch || p.seq > r.seq) this.resumeFrom = p;
  }
}
