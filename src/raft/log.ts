/**
 * The core's view of its log: a stable part (already persisted, held in memory for reads) after an
 * optional snapshot, followed by an unstable tail not yet persisted.
 *
 * Invariants:
 *   snapshotIndex <= applied <= committed <= lastIndex
 *   stable[i] has index snapshotIndex + 1 + i; unstable[i] has index stableLast + 1 + i
 *   terms never decrease along the log
 */
import type { Entry, Snapshot } from './types.ts';
import { assert } from './errors.ts';

export const NO_TERM = -1;

/**
 * The entry with data that owns its whole buffer. Entries stay in the log until compaction (thousands of
 * them), and data that is a view into a larger buffer would keep all of it alive: a received frame with many
 * messages, or an encoder's shared output buffer. On a 3-server bulk load such views kept about 5 times the
 * entries' own bytes alive, unseen by the driver's byte-based snapshot trigger. Copying an entry's bytes
 * once is cheap next to persisting them.
 */
export function ownedEntry(e: Entry): Entry {
  const d = e.data;
  if (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength) return e;
  // new Uint8Array(view) copies; Buffer.prototype.slice would return another view.
  return { ...e, data: new Uint8Array(d) };
}

export class RaftLog {
  /** The entry just before stable[0]: the compaction point (index 0, term 0 for a fresh log). */
  private offsetIndex: number;
  private offsetTerm: number;
  /** The latest snapshot data known durable (what a leader streams to lagging followers). */
  snapshot: Snapshot | null;
  private stable: Entry[];
  private unstable: Entry[] = [];
  /** A snapshot received from the leader, not yet persisted. */
  unstableSnapshot: Snapshot | null = null;
  /** Entries of `unstable` already handed out in a Ready, awaiting persistence. */
  private unstableInProgress = 0;
  private unstableSnapshotInProgress = false;
  committed: number;
  applied: number;

  constructor(snapshot: Snapshot | null, entries: readonly Entry[], committed: number, applied: number) {
    this.snapshot = snapshot;
    const first = entries[0];
    // Entries loaded from storage may start at or below the snapshot (compaction keeps a tail).
    this.offsetIndex = first !== undefined ? first.index - 1 : (snapshot?.metadata.index ?? 0);
    this.offsetTerm = snapshot !== null && this.offsetIndex === snapshot.metadata.index ? snapshot.metadata.term : 0;
    assert(snapshot === null || this.offsetIndex <= snapshot.metadata.index, 'gap between snapshot and entries');
    this.stable = [...entries];
    for (let i = 0; i < this.stable.length; i++) {
      assert(this.stable[i]!.index === this.offsetIndex + 1 + i, 'loaded entries must be contiguous');
    }
    if (first !== undefined && this.offsetIndex !== snapshot?.metadata.index) {
      // The term of the entry before the first kept one is unknown; it is only needed for matching
      // at exactly offsetIndex, which a leader never asks once the follower is past it.
      this.offsetTerm = first.index === 1 ? 0 : NO_TERM;
    }
    const snapIndex = snapshot?.metadata.index ?? 0;
    this.committed = Math.max(committed, snapIndex);
    this.applied = Math.max(applied, snapIndex);
    assert(this.committed <= this.lastIndex(), `committed ${this.committed} beyond last index ${this.lastIndex()}`);
    assert(this.applied <= this.committed, `applied ${this.applied} beyond committed ${this.committed}`);
  }

  firstIndex(): number {
    return this.offsetIndex + 1;
  }

  stableLastIndex(): number {
    return this.offsetIndex + this.stable.length;
  }

  snapshotIndex(): number {
    return this.snapshot?.metadata.index ?? 0;
  }

  lastIndex(): number {
    return this.stableLastIndex() + this.unstable.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** The term of the entry at `index`, or NO_TERM when compacted away or beyond the end. */
  term(index: number): number {
    if (index === this.offsetIndex) return this.offsetTerm;
    if (this.snapshot !== null && index === this.snapshot.metadata.index && index < this.offsetIndex) {
      return this.snapshot.metadata.term;
    }
    if (index < this.offsetIndex || index > this.lastIndex()) return NO_TERM;
    return this.entryAt(index).term;
  }

  entryAt(index: number): Entry {
    const stableLast = this.stableLastIndex();
    const entry =
      index <= stableLast ? this.stable[index - this.offsetIndex - 1] : this.unstable[index - stableLast - 1];
    if (entry === undefined || entry.index !== index) assert(false, `no entry at ${index}`);
    return entry;
  }

  matchTerm(index: number, term: number): boolean {
    const t = this.term(index);
    return t !== NO_TERM && t === term;
  }

  /** Raft §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Entries in [lo, hi), at most `bytesMax` of data but always at least one. Null when lo is compacted.
   */
  slice(lo: number, hi: number, bytesMax: number): Entry[] | null {
    if (lo < this.firstIndex()) return null;
    hi = Math.min(hi, this.lastIndex() + 1);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.entryAt(i);
      bytes += e.data.byteLength;
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /** Appends entries from a leader after (prevIndex, prevTerm) matched. Returns the new last index, or null on mismatch. */
  maybeAppend(prevIndex: number, prevTerm: number, committed: number, entries: readonly Entry[]): number | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with committed entry ${this.committed}`);
      this.append(entries.slice(conflict - prevIndex - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** The first index whose term differs from ours (or that we lack), or 0 when all match. */
  private findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast back-off (etcd's findConflictByTerm): the largest index <= `index` whose term is <= `term`,
   * with its term.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    index = Math.min(index, this.lastIndex());
    for (; index >= this.offsetIndex; index--) {
      const t = this.term(index);
      if (t === NO_TERM) break;
      if (t <= term) return { index, term: t };
    }
    return { index: this.offsetIndex, term: this.offsetTerm };
  }

  /**
   * Appends to the unstable tail, truncating a conflicting suffix (which is never committed). The log keeps
   * its own copy of entry data that is a view into a larger buffer (see ownedEntry).
   */
  append(appended: readonly Entry[]): void {
    if (appended.length === 0) return;
    const entries = appended.map(ownedEntry);
    const first = entries[0]!.index;
    if (first <= this.committed) assert(false, `append at ${first} would overwrite committed ${this.committed}`);
    if (first > this.lastIndex() + 1) assert(false, `append at ${first} leaves a gap after ${this.lastIndex()}`);
    const stableLast = this.stableLastIndex();
    if (first <= stableLast) {
      // Truncate into the stable part: its suffix is rewritten; the Ready that persists `unstable`
      // carries the truncation point (its first index) so storage drops the old suffix too. A persist
      // still in flight for the replaced entries is ignored when it completes (persisted() checks terms).
      this.stable.length = first - this.offsetIndex - 1;
      this.unstable = [...entries];
      this.unstableInProgress = 0;
    } else {
      const keep = first - stableLast - 1;
      if (keep < this.unstableInProgress) this.unstableInProgress = keep;
      this.unstable.length = keep;
      for (const e of entries) this.unstable.push(e);
    }
  }

  commitTo(index: number): void {
    if (index > this.committed) {
      if (index > this.lastIndex()) assert(false, `commit ${index} beyond last index ${this.lastIndex()}`);
      this.committed = index;
    }
  }

  // ----- Ready support -----

  /** Unstable entries not yet handed out for persistence. */
  entriesToPersist(): Entry[] {
    return this.unstable.slice(this.unstableInProgress);
  }

  markPersisting(count: number, snapshot: boolean): void {
    this.unstableInProgress += count;
    if (snapshot) this.unstableSnapshotInProgress = true;
  }

  hasSnapshotToPersist(): boolean {
    return this.unstableSnapshot !== null && !this.unstableSnapshotInProgress;
  }

  /**
   * Entries up to (lastIndex, lastTerm) and the snapshot at `snapshotIndex`, if given, are now durable.
   * Returns the index up to which the log is now stable.
   */
  persisted(lastIndex: number, lastTerm: number, snapshotIndex: number | null): void {
    if (snapshotIndex !== null && this.unstableSnapshot?.metadata.index === snapshotIndex) {
      this.snapshot = this.unstableSnapshot;
      this.offsetIndex = snapshotIndex;
      this.offsetTerm = this.unstableSnapshot.metadata.term;
      this.unstableSnapshot = null;
      this.unstableSnapshotInProgress = false;
    }
    const stableLast = this.stableLastIndex();
    if (lastIndex <= stableLast) return;
    // The persisted entries may have been replaced by a truncating append since: then nothing moves.
    if (this.term(lastIndex) !== lastTerm) return;
    const count = lastIndex - stableLast;
    // Only entries whose persist was started may become stable.
    const movable = Math.min(count, this.unstableInProgress, this.unstable.length);
    const moved = this.unstable.splice(0, movable);
    for (const e of moved) this.stable.push(e);
    this.unstableInProgress -= movable;
  }

  /** Committed entries that are durable locally and not yet applied, at most `bytesMax` (at least one). */
  nextCommittedEntries(bytesMax: number): Entry[] {
    const hi = Math.min(this.committed, this.stableLastIndex() + this.unstableInProgress);
    if (this.applied >= hi || this.unstableSnapshot !== null) return [];
    return this.slice(this.applied + 1, hi + 1, bytesMax) ?? [];
  }

  appliedTo(index: number): void {
    if (!(index <= this.committed && index >= this.applied))
      assert(false, `applied ${index} out of [${this.applied}, ${this.committed}]`);
    this.applied = index;
  }

  /** Replaces the whole log with a snapshot from the leader (after checking it is newer). */
  restore(snapshot: Snapshot): void {
    this.unstableSnapshot = snapshot;
    this.unstableSnapshotInProgress = false;
    this.stable = [];
    this.unstable = [];
    this.unstableInProgress = 0;
    this.offsetIndex = snapshot.metadata.index;
    this.offsetTerm = snapshot.metadata.term;
    this.committed = snapshot.metadata.index;
    // applied is moved by the driver when it restores the state machine (via advance).
  }

  /** A locally taken snapshot at an applied index; entries up to it may now be compacted. */
  setSnapshot(snapshot: Snapshot): void {
    assert(snapshot.metadata.index <= this.applied, 'snapshot beyond applied');
    assert(snapshot.metadata.index >= this.snapshotIndex(), 'snapshot older than current');
    this.snapshot = snapshot;
  }

  /** Drops stable entries up to `index` (<= the durable snapshot's index). */
  compact(index: number): void {
    if (index <= this.offsetIndex) return;
    assert(index <= this.snapshotIndex(), 'compact beyond snapshot');
    assert(index <= this.stableLastIndex(), 'compact beyond the stable log');
    const term = this.term(index);
    this.stable.splice(0, index - this.offsetIndex);
    this.offsetIndex = index;
    this.offsetTerm = term;
  }
}
