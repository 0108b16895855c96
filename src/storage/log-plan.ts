/**
 * What a write or a compaction does to the stored log, decided before anything is written. Both stores
 * validate and plan with these pure functions, then carry out the plan as one batch: a call either applies
 * whole or throws LogStoreUsageError having applied nothing.
 */
import { assert } from '../raft/errors.ts';
import { EntryType } from '../raft/types.ts';
import type { ConfState, Entry, HardState, Snapshot } from '../raft/types.ts';
import { LogStoreUsageError } from './errors.ts';
import type { LogWrite } from './log-store.ts';

/**
 * What is stored, as far as planning needs to know.
 *
 * Invariants:
 *  - the stored entries are exactly the indexes [firstStored, lastStored], none when firstStored = lastStored + 1;
 *  - firstStored <= snapshotIndex + 1 <= lastStored + 1, so lastStored is the log's last index;
 *  - stored entries at or below snapshotIndex match the snapshot; they are never loaded and wait for compact().
 */
export interface LogBounds {
  /** Index and term of the saved snapshot; 0 and 0 when there is none. */
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  readonly firstStored: number;
  readonly lastStored: number;
}

export const emptyLogBounds: LogBounds = { snapshotIndex: 0, snapshotTerm: 0, firstStored: 1, lastStored: 0 };

/** Stored entry indexes [from, to], inclusive and non-empty. */
export interface IndexRange {
  readonly from: number;
  readonly to: number;
}

/** One validated LogWrite. Carried out in this order: delete `deletes`, put snapshot, entries, hard state. */
export interface WritePlan {
  readonly deletes: IndexRange | null;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
  readonly next: LogBounds;
}

export interface CompactPlan {
  readonly deletes: IndexRange | null;
  readonly next: LogBounds;
}

export function boundsInvariantHolds(b: LogBounds): boolean {
  return b.firstStored >= 1 && b.firstStored <= b.snapshotIndex + 1 && b.snapshotIndex <= b.lastStored;
}

/**
 * The index whose stored term planWrite needs: the new snapshot's index when an entry there is stored above
 * the saved snapshot (to learn whether the log matches the snapshot), else null.
 */
export function snapshotTermLookup(bounds: LogBounds, write: LogWrite): number | null {
  const index: unknown = write.snapshot?.metadata?.index;
  if (typeof index !== 'number' || !Number.isSafeInteger(index)) return null;
  return index > bounds.snapshotIndex && index <= bounds.lastStored ? index : null;
}

/**
 * Validates `write` against `bounds` and decides its effect. `storedTermAtSnapshot` is the term of the stored
 * entry at the index snapshotTermLookup() named (undefined when it named none).
 *
 * A snapshot whose index and term match the log keeps the entries (those at or below it are hidden and wait
 * for compact()); a snapshot that does not match replaces the whole log. Entries then truncate from their
 * first index and append.
 */
export function planWrite(
  bounds: LogBounds,
  write: LogWrite,
  storedTermAtSnapshot: number | undefined,
): WritePlan {
  assert(boundsInvariantHolds(bounds), `log bounds broken: ${JSON.stringify(bounds)}`);
  const { hardState, entries = [], snapshot } = write;
  if (hardState !== undefined) checkHardState(hardState);
  if (snapshot !== undefined) checkSnapshot(snapshot);
  checkEntries(entries);

  const afterSnapshot = snapshot === undefined ? null : planSnapshot(bounds, snapshot, storedTermAtSnapshot);
  const base = afterSnapshot?.next ?? bounds;
  const afterEntries = planEntries(base, entries);
  assert(
    (afterSnapshot?.deletes ?? null) === null || afterEntries.deletes === null,
    'a replaced log has nothing to truncate',
  );
  const next = afterEntries.next;
  assert(boundsInvariantHolds(next), `planned bounds broken: ${JSON.stringify(next)}`);
  return {
    deletes: afterSnapshot?.deletes ?? afterEntries.deletes,
    snapshot: snapshot ?? null,
    entries,
    hardState: hardState ?? null,
    next,
  };
}

/** compact(index): drops stored entries <= index, which the saved snapshot must cover. */
export function planCompact(bounds: LogBounds, index: number): CompactPlan {
  assert(boundsInvariantHolds(bounds), `log bounds broken: ${JSON.stringify(bounds)}`);
  if (!isIndex(index)) throw usage(`compact index must be a non-negative integer, got ${String(index)}`);
  if (index > bounds.snapshotIndex) {
    throw usage(`cannot compact to ${index}: the saved snapshot covers only up to ${bounds.snapshotIndex}`);
  }
  if (index < bounds.firstStored) return { deletes: null, next: bounds };
  return { deletes: { from: bounds.firstStored, to: index }, next: { ...bounds, firstStored: index + 1 } };
}

function planSnapshot(
  bounds: LogBounds,
  snapshot: Snapshot,
  storedTerm: number | undefined,
): { deletes: IndexRange | null; next: LogBounds } {
  const { index, term } = snapshot.metadata;
  if (index < bounds.snapshotIndex) {
    throw usage(`snapshot at ${index} is older than the saved snapshot at ${bounds.snapshotIndex}`);
  }
  if (index === bounds.snapshotIndex && term !== bounds.snapshotTerm) {
    throw usage(
      `snapshot at ${index} has term ${term}, the saved one at that index has ${bounds.snapshotTerm}`,
    );
  }
  const matches = index === bounds.snapshotIndex || storedTerm === term;
  if (matches) return { deletes: null, next: { ...bounds, snapshotIndex: index, snapshotTerm: term } };
  const stored = bounds.firstStored <= bounds.lastStored;
  return {
    deletes: stored ? { from: bounds.firstStored, to: bounds.lastStored } : null,
    next: { snapshotIndex: index, snapshotTerm: term, firstStored: index + 1, lastStored: index },
  };
}

function planEntries(
  bounds: LogBounds,
  entries: readonly Entry[],
): { deletes: IndexRange | null; next: LogBounds } {
  const first = entries[0];
  const last = entries.at(-1);
  if (first === undefined || last === undefined) return { deletes: null, next: bounds };
  if (first.index <= bounds.snapshotIndex) {
    throw usage(
      `entries from ${first.index} would overwrite the snapshot, which covers up to ${bounds.snapshotIndex}`,
    );
  }
  if (first.index > bounds.lastStored + 1) {
    throw usage(`entries from ${first.index} leave a gap after the last index ${bounds.lastStored}`);
  }
  const truncates = first.index <= bounds.lastStored;
  return {
    deletes: truncates ? { from: first.index, to: bounds.lastStored } : null,
    next: { ...bounds, lastStored: last.index },
  };
}

function checkEntries(entries: readonly Entry[]): void {
  if (!isArray(entries)) throw usage('entries must be an array');
  entries.forEach((entry, i) => {
    checkEntry(entry, i);
    const previous = entries[i - 1];
    if (previous !== undefined && entry.index !== previous.index + 1) {
      throw usage(`entries are not contiguous: ${previous.index} is followed by ${entry.index}`);
    }
  });
}

function checkEntry(entry: Entry, position: number): void {
  const at = `entries[${position}]`;
  if (typeof entry !== 'object' || entry === null) throw usage(`${at} is not an entry`);
  if (!isIndex(entry.index) || entry.index < 1) throw usage(`${at}.index must be a positive integer`);
  if (!isIndex(entry.term) || entry.term < 1) throw usage(`${at}.term must be a positive integer`);
  if (entry.type !== EntryType.Normal && entry.type !== EntryType.ConfChange) {
    throw usage(`${at}.type must be an EntryType, got ${String(entry.type)}`);
  }
  if (!(entry.data instanceof Uint8Array)) throw usage(`${at}.data must be a Uint8Array`);
}

function checkHardState(hardState: HardState): void {
  if (typeof hardState !== 'object' || hardState === null) throw usage('hardState is not an object');
  for (const field of ['term', 'vote', 'commit'] as const) {
    if (!isIndex(hardState[field])) throw usage(`hardState.${field} must be a non-negative integer`);
  }
}

function checkSnapshot(snapshot: Snapshot): void {
  if (typeof snapshot !== 'object' || snapshot === null) throw usage('snapshot is not an object');
  const metadata = snapshot.metadata as Snapshot['metadata'] | undefined;
  if (typeof metadata !== 'object' || metadata === null) throw usage('snapshot.metadata is not an object');
  if (!isIndex(metadata.index) || metadata.index < 1)
    throw usage('snapshot index must be a positive integer');
  if (!isIndex(metadata.term) || metadata.term < 1) throw usage('snapshot term must be a positive integer');
  checkConfState(metadata.confState);
  if (!(snapshot.data instanceof Uint8Array)) throw usage('snapshot.data must be a Uint8Array');
}

function checkConfState(confState: ConfState): void {
  if (typeof confState !== 'object' || confState === null) throw usage('snapshot confState is not an object');
  for (const field of ['voters', 'votersOutgoing', 'learners', 'learnersNext'] as const) {
    const ids: unknown = confState[field];
    if (!Array.isArray(ids) || !(ids as unknown[]).every((id) => isIndex(id) && id >= 1)) {
      throw usage(`snapshot confState.${field} must be an array of positive node ids`);
    }
  }
  if (typeof confState.autoLeave !== 'boolean') throw usage('snapshot confState.autoLeave must be a boolean');
}

/** Array.isArray without narrowing the argument to any[]. */
function isArray(value: unknown): boolean {
  return Array.isArray(value);
}

function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function usage(message: string): LogStoreUsageError {
  return new LogStoreUsageError(message);
}
