/**
 * Rebuilds the log at load time from the stored entry records, fed in ascending index order, and checks
 * everything that must hold of them: each record decodes (CRC, structure, fields), sits under the key of its
 * own index, and the stored indexes are contiguous and consistent with the snapshot. Entries at or below the
 * snapshot index (waiting for compact()) are checked too, then dropped.
 *
 * A record that fails may be forgiven only when the store allows a torn tail, the record looks cut short
 * (recordLooksTorn) and no record follows it: it is then reported as a repair instead of thrown.
 */
import type { Entry, Snapshot } from '../raft/types.ts';
import { entryKey } from './log-keys.ts';
import type { LogBounds } from './log-plan.ts';
import { CorruptLogError } from './log-store.ts';
import type { LogRepair } from './log-store.ts';
import { decodeEntry, recordLooksTorn } from './record-codec.ts';

export interface AssembledLog {
  /** The entries above the snapshot index, contiguous from snapshotIndex + 1. */
  readonly entries: Entry[];
  readonly bounds: LogBounds;
  readonly repairs: LogRepair[];
}

interface TornRecord {
  readonly index: number;
  readonly key: string;
}

export class LogAssembler {
  private readonly snapshotIndex: number;
  private readonly snapshotTerm: number;
  private readonly entries: Entry[] = [];
  /** Index range of the valid records seen so far; firstValid = 0 until the first one. */
  private firstValid = 0;
  private lastValid = 0;
  /** Index of the last record fed, valid or not; null before the first. */
  private lastSeen: number | null = null;
  private torn: TornRecord | null = null;

  constructor(
    snapshot: Snapshot | null,
    private readonly allowTornTail: boolean,
  ) {
    this.snapshotIndex = snapshot?.metadata.index ?? 0;
    this.snapshotTerm = snapshot?.metadata.term ?? 0;
  }

  /** Feeds the record stored under the entry key of `index`. Indexes must ascend. */
  add(index: number, record: Uint8Array): void {
    const key = entryKey(index);
    if (this.torn !== null) {
      throw new CorruptLogError(
        `corrupt record ${this.torn.key}: followed by ${key}, so not a torn tail`,
        this.torn.key,
      );
    }
    if (this.lastSeen !== null && index !== this.lastSeen + 1) {
      throw new CorruptLogError(`gap in the log: ${entryKey(this.lastSeen)} is followed by ${key}`, key);
    }
    this.lastSeen = index;
    const entry = this.decode(index, key, record);
    if (entry === null) return;
    if (entry.index !== index) {
      throw new CorruptLogError(`corrupt record ${key}: holds the entry for index ${entry.index}`, key);
    }
    if (this.firstValid === 0) this.firstValid = index;
    this.lastValid = index;
    if (index > this.snapshotIndex) this.entries.push(entry);
  }

  finish(): AssembledLog {
    const repairs: LogRepair[] = [];
    if (this.torn !== null) {
      this.checkTornFollowsLog(this.torn);
      repairs.push({ key: this.torn.key, index: this.torn.index, reason: 'torn-tail' });
    }
    const stored = this.firstValid !== 0;
    if (stored) this.checkStoredMeetsSnapshot();
    const bounds: LogBounds = {
      snapshotIndex: this.snapshotIndex,
      snapshotTerm: this.snapshotTerm,
      firstStored: stored ? this.firstValid : this.snapshotIndex + 1,
      lastStored: stored ? this.lastValid : this.snapshotIndex,
    };
    return { entries: this.entries, bounds, repairs };
  }

  /** The decoded entry, or null for a record set aside as a possibly torn tail. */
  private decode(index: number, key: string, record: Uint8Array): Entry | null {
    try {
      return decodeEntry(record, key);
    } catch (error) {
      if (!(error instanceof CorruptLogError) || !this.allowTornTail || !recordLooksTorn(record)) throw error;
      this.torn = { index, key };
      return null;
    }
  }

  /** A torn record was the last one written, above the snapshot, right after the valid log. */
  private checkTornFollowsLog(torn: TornRecord): void {
    const expected = this.firstValid === 0 ? this.snapshotIndex + 1 : this.lastValid + 1;
    if (torn.index !== expected) {
      throw new CorruptLogError(
        `corrupt record ${torn.key}: cut short, but not right after the log`,
        torn.key,
      );
    }
  }

  /** Stored entries must start at or below snapshotIndex + 1 and reach at least the snapshot index. */
  private checkStoredMeetsSnapshot(): void {
    if (this.firstValid > this.snapshotIndex + 1) {
      const key = entryKey(this.firstValid);
      throw new CorruptLogError(
        `gap in the log: it starts at ${key} after a snapshot at ${this.snapshotIndex}`,
        key,
      );
    }
    if (this.lastValid < this.snapshotIndex) {
      const key = entryKey(this.lastValid);
      throw new CorruptLogError(`log ends at ${key}, below the snapshot at ${this.snapshotIndex}`, key);
    }
  }
}
