/**
 * The durable Raft log: one interface, two implementations (memory with crash semantics for the simulator,
 * RocksDB for production), one conformance suite (test/storage/).
 *
 * The Raft core never reads this store directly: at start-up the driver calls `load()` once and feeds the
 * result to the core's in-memory log view; from then on the store is written, not read.
 */
import type { Entry, HardState, Snapshot } from '../raft/types.ts';

/** Everything that was synced before the last crash, exactly. */
export interface LoadedLog {
  readonly hardState: HardState;
  /** The latest snapshot saved, or null. */
  readonly snapshot: Snapshot | null;
  /** Contiguous entries after the compaction point (all with index > snapshot index, when there is one). */
  readonly entries: readonly Entry[];
  /**
   * Records load() discarded instead of failing: only a torn entry record at the tail of the log, cut short
   * by a crash during a write that was never synced (so never acknowledged). Absent when nothing was repaired.
   */
  readonly repairs?: readonly LogRepair[];
}

/** A record load() discarded; see LoadedLog.repairs. */
export interface LogRepair {
  readonly key: string;
  readonly index: number;
  readonly reason: 'torn-tail';
}

/** One atomic, synced write. Applied in this order: snapshot, entries (truncating), hard state. */
export interface LogWrite {
  readonly hardState?: HardState;
  /**
   * Entries to append. When the first entry's index is <= the last stored index, every stored entry at or
   * after that index is removed first (the conflicting suffix). Invariant: entries are contiguous, and the
   * first index is <= lastIndex + 1.
   */
  readonly entries?: readonly Entry[];
  /** A snapshot to keep. Entries at or below its index that do not match are discarded with it. */
  readonly snapshot?: Snapshot;
}

export interface LogStore {
  /** Reads back what was synced. Throws CorruptLogError if a record fails its CRC32C check. */
  load(): Promise<LoadedLog>;
  /** Writes atomically and syncs before resolving. */
  save(write: LogWrite): Promise<void>;
  /** Drops entries with index <= `index` (a snapshot at or above `index` must have been saved). */
  compact(index: number): Promise<void>;
  close(): Promise<void>;
}

/** A stored record failed its checksum or could not be decoded. It is reported, never applied. */
export class CorruptLogError extends Error {
  readonly code = 'ECORRUPTLOG';
  constructor(
    message: string,
    readonly key: string,
  ) {
    super(message);
    this.name = 'CorruptLogError';
  }
}
