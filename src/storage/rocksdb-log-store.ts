/**
 * The production log store: one RocksDB database per log.
 *
 * Layout (keys sort in this order, so entries iterate in index order):
 *   'e' + 8-byte big-endian index -> entry record
 *   'h'                           -> hard state record
 *   's'                           -> snapshot record
 * Values are records of record-codec.ts. Errors name keys as log-keys.ts does ('entry/…', 'hardstate', …).
 *
 * save() is exactly one WriteBatch written with sync: true, so it applies whole or not at all, and is on disk
 * when it resolves. Calls run one at a time, in call order; the store keeps the stored index range in memory
 * (read at open, refreshed by load) to plan truncations, snapshots and compactions without reading the log.
 */
import { assert } from '../raft/errors.ts';
import { emptyHardState } from '../raft/types.ts';
import type { HardState, Snapshot } from '../raft/types.ts';
import { LogStoreClosedError, LogStoreUsageError } from './errors.ts';
import { LogAssembler } from './log-assembler.ts';
import { HARD_STATE_KEY, SNAPSHOT_KEY, entryKey } from './log-keys.ts';
import { boundsInvariantHolds, planCompact, planWrite, snapshotTermLookup } from './log-plan.ts';
import type { LogBounds, WritePlan } from './log-plan.ts';
import { CorruptLogError } from './log-store.ts';
import type { LoadedLog, LogStore, LogWrite } from './log-store.ts';
import {
  decodeEntry,
  decodeHardState,
  decodeSnapshot,
  encodeEntry,
  encodeHardState,
  encodeSnapshot,
} from './record-codec.ts';
import { RocksDbHandle } from './rocksdb-binding.ts';
import type { RocksDbBatchOp } from './rocksdb-binding.ts';

const ENTRY_PREFIX = 0x65; // 'e'
const INDEX_BYTES = 8;
const ENTRY_KEY_BYTES = 1 + INDEX_BYTES;
const HARD_STATE_DB_KEY = Buffer.from('h');
const SNAPSHOT_DB_KEY = Buffer.from('s');
/** [ENTRIES_START, ENTRIES_END) holds exactly the entry keys. */
const ENTRIES_START = Buffer.from([ENTRY_PREFIX]);
const ENTRIES_END = Buffer.from([ENTRY_PREFIX + 1]);
/** Deletes per (unsynced) batch when compacting; bounds the memory of one batch. */
const COMPACT_DELETES_PER_BATCH = 4096;

export interface RocksDbLogStoreOptions {
  /**
   * Open without taking the database lock, for inspection while another process writes: load() sees what
   * was written before opening; save() and compact() are refused.
   */
  readonly readOnly?: boolean;
}

export class RocksDbLogStore implements LogStore {
  /** Settles after the last call queued so far; each call starts after it. */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly db: RocksDbHandle,
    private bounds: LogBounds,
    private readonly readOnly: boolean,
  ) {}

  /**
   * Opens (creating if needed, unless read-only) the log in directory `dir`. Reads the snapshot and the first
   * and last entry keys; throws CorruptLogError if those are inconsistent. Records are checked by load().
   */
  static async open(dir: string, options: RocksDbLogStoreOptions = {}): Promise<RocksDbLogStore> {
    const readOnly = options.readOnly ?? false;
    const db = await RocksDbHandle.open(dir, { readOnly });
    try {
      return new RocksDbLogStore(db, await readBounds(db), readOnly);
    } catch (error) {
      await db.close();
      throw error;
    }
  }

  load(): Promise<LoadedLog> {
    return this.serially(() => this.loadNow());
  }

  save(write: LogWrite): Promise<void> {
    return this.serially(() => this.writable().saveNow(write));
  }

  /** Deletes in ascending batches, not synced: entries that come back after a crash stay hidden below the snapshot. */
  compact(index: number): Promise<void> {
    return this.serially(() => this.writable().compactNow(index));
  }

  /** Closes the database after the calls already queued; closing twice is harmless. */
  close(): Promise<void> {
    const result = this.tail.then(async () => {
      if (this.closed) return;
      this.closed = true;
      await this.db.close();
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  private serially<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.tail.then(() => {
      if (this.closed) throw new LogStoreClosedError('the log store is closed');
      return operation();
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  private writable(): this {
    if (this.readOnly) throw new LogStoreUsageError('the log store was opened read-only');
    return this;
  }

  private async loadNow(): Promise<LoadedLog> {
    const hardState = await readHardState(this.db);
    const snapshot = await readSnapshot(this.db);
    const assembler = new LogAssembler(snapshot, false);
    for await (const [key, record] of this.db.iterate({ gte: ENTRIES_START, lt: ENTRIES_END })) {
      assembler.add(indexOfEntryDbKey(key), record);
    }
    const { entries, bounds } = assembler.finish();
    this.bounds = bounds;
    return { hardState, snapshot, entries };
  }

  private async saveNow(write: LogWrite): Promise<void> {
    const lookup = snapshotTermLookup(this.bounds, write);
    const storedTerm = lookup === null ? undefined : await this.storedTerm(lookup);
    const plan = planWrite(this.bounds, write, storedTerm);
    await this.db.batch(batchFor(plan), { sync: true });
    this.bounds = plan.next;
  }

  private async compactNow(index: number): Promise<void> {
    const plan = planCompact(this.bounds, index);
    if (plan.deletes === null) return;
    for (let from = plan.deletes.from; from <= plan.deletes.to; from += COMPACT_DELETES_PER_BATCH) {
      const to = Math.min(from + COMPACT_DELETES_PER_BATCH - 1, plan.deletes.to);
      await this.db.batch(deleteOps(from, to), { sync: false });
      // Invariant kept between batches: the stored entries are still exactly [firstStored, lastStored].
      this.bounds = { ...this.bounds, firstStored: to + 1 };
    }
    assert(this.bounds.firstStored === plan.next.firstStored, 'compaction ends where it was planned to');
  }

  private async storedTerm(index: number): Promise<number> {
    const key = entryKey(index);
    const record = await this.db.get(entryDbKey(index));
    if (record === undefined) throw new CorruptLogError(`missing record ${key} inside the stored log`, key);
    return decodeEntry(record, key).term;
  }
}

function batchFor(plan: WritePlan): RocksDbBatchOp[] {
  const ops: RocksDbBatchOp[] = plan.deletes === null ? [] : deleteOps(plan.deletes.from, plan.deletes.to);
  if (plan.snapshot !== null)
    ops.push({ type: 'put', key: SNAPSHOT_DB_KEY, value: encodeSnapshot(plan.snapshot) });
  for (const entry of plan.entries)
    ops.push({ type: 'put', key: entryDbKey(entry.index), value: encodeEntry(entry) });
  if (plan.hardState !== null) {
    ops.push({ type: 'put', key: HARD_STATE_DB_KEY, value: encodeHardState(plan.hardState) });
  }
  return ops;
}

function deleteOps(from: number, to: number): RocksDbBatchOp[] {
  const ops: RocksDbBatchOp[] = [];
  for (let index = from; index <= to; index++) ops.push({ type: 'del', key: entryDbKey(index) });
  return ops;
}

async function readBounds(db: RocksDbHandle): Promise<LogBounds> {
  const snapshot = await readSnapshot(db);
  const snapshotIndex = snapshot?.metadata.index ?? 0;
  const snapshotTerm = snapshot?.metadata.term ?? 0;
  const first = await edgeEntryIndex(db, false);
  const last = await edgeEntryIndex(db, true);
  if (first === null || last === null) {
    return { snapshotIndex, snapshotTerm, firstStored: snapshotIndex + 1, lastStored: snapshotIndex };
  }
  const bounds = { snapshotIndex, snapshotTerm, firstStored: first, lastStored: last };
  if (!boundsInvariantHolds(bounds)) {
    const key = entryKey(first > snapshotIndex + 1 ? first : last);
    throw new CorruptLogError(
      `stored entries [${first}, ${last}] do not meet the snapshot at ${snapshotIndex}`,
      key,
    );
  }
  return bounds;
}

/** The lowest (or, reversed, highest) stored entry index, or null when there are no entries. */
async function edgeEntryIndex(db: RocksDbHandle, reverse: boolean): Promise<number | null> {
  for await (const [key] of db.iterate({ gte: ENTRIES_START, lt: ENTRIES_END, reverse, limit: 1 })) {
    return indexOfEntryDbKey(key);
  }
  return null;
}

async function readHardState(db: RocksDbHandle): Promise<HardState> {
  const record = await db.get(HARD_STATE_DB_KEY);
  return record === undefined ? emptyHardState : decodeHardState(record, HARD_STATE_KEY);
}

async function readSnapshot(db: RocksDbHandle): Promise<Snapshot | null> {
  const record = await db.get(SNAPSHOT_DB_KEY);
  return record === undefined ? null : decodeSnapshot(record, SNAPSHOT_KEY);
}

function entryDbKey(index: number): Buffer {
  const key = Buffer.allocUnsafe(ENTRY_KEY_BYTES);
  key[0] = ENTRY_PREFIX;
  key.writeBigUInt64BE(BigInt(index), 1);
  return key;
}

/** The index in an entry key; a malformed key in the entry range is corruption. */
function indexOfEntryDbKey(key: Buffer): number {
  const index = key.length === ENTRY_KEY_BYTES && key[0] === ENTRY_PREFIX ? key.readBigUInt64BE(1) : null;
  if (index === null || index > BigInt(Number.MAX_SAFE_INTEGER)) {
    const name = `raw key 0x${key.toString('hex')}`;
    throw new CorruptLogError(`malformed entry key ${name}`, name);
  }
  return Number(index);
}
