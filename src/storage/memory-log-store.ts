/**
 * The log store of the deterministic simulator: a simulated disk with crash semantics (MemoryDisk, one per
 * simulated node, surviving its crashes) and a LogStore over it (MemoryLogStore, one per process incarnation).
 *
 * Disk model. The disk keeps a durable image (what survives a crash) and, on top of it, the batches written
 * since the last completed sync, in write order. Reads see the durable image with those batches applied.
 * A sync covers every batch written before it was issued, and takes effect only when its completion runs
 * (the simulator decides when). A crash keeps a prefix of the write stream: every synced batch and, with
 * some probability, part of the unsynced ones (the earlier batches whole and a prefix of the last one, whose
 * last surviving entry record is cut short: a torn write). Nothing written by the store survives unless it
 * was synced or lies in that prefix.
 */
import { assert } from '../raft/errors.ts';
import type { RandomSource } from '../raft/config.ts';
import { emptyHardState } from '../raft/types.ts';
import type { HardState, Snapshot } from '../raft/types.ts';
import { LogStoreClosedError, LogStoreUsageError } from './errors.ts';
import { LogAssembler } from './log-assembler.ts';
import { ENTRY_KEY_PREFIX, HARD_STATE_KEY, SNAPSHOT_KEY, entryIndexOfKey, entryKey } from './log-keys.ts';
import { planCompact, planWrite, snapshotTermLookup } from './log-plan.ts';
import type { IndexRange, LogBounds, WritePlan } from './log-plan.ts';
import type { LoadedLog, LogStore, LogWrite } from './log-store.ts';
import {
  RECORD_CRC_BYTES,
  decodeEntry,
  decodeHardState,
  decodeSnapshot,
  encodeEntry,
  encodeHardState,
  encodeSnapshot,
  recordLooksTorn,
} from './record-codec.ts';

/**
 * One operation of a batch. `tearable` marks the puts a crash may cut: a torn batch keeps the operations
 * before its first tearable put, then a prefix of its tearable puts (which must be consecutive) with the last
 * kept one cut short, and loses the rest.
 */
export type DiskOp =
  | { readonly type: 'put'; readonly key: string; readonly record: Uint8Array; readonly tearable: boolean }
  | { readonly type: 'del'; readonly key: string };

export type SyncScheduler = (complete: () => void) => void;

export interface MemoryDiskOptions {
  /**
   * Called once per sync. The sync takes effect, and the save() waiting for it resolves, when `complete` is
   * called; calls after the first, or after a crash of the disk, do nothing. Default: complete at once.
   */
  readonly syncScheduler?: SyncScheduler;
}

export interface CrashOptions {
  /** Probability in [0, 1] that the last unsynced batch is torn rather than lost (when it has entry records). */
  readonly tornWriteProbability?: number;
}

export interface MemoryDiskStats {
  /** Syncs issued, and those whose completion took effect. */
  readonly syncs: number;
  readonly syncsCompleted: number;
  /** Batches written, and the record bytes they put. */
  readonly batches: number;
  readonly bytesWritten: number;
  readonly crashes: number;
  readonly tornWrites: number;
  readonly corruptions: number;
}

interface Batch {
  readonly seq: number;
  readonly ops: readonly DiskOp[];
}

/** Resolution of probability draws: RandomSource gives integers, so p becomes p * this many in-range draws. */
const PROBABILITY_SCALE = 1_000_000;
const BITS_PER_BYTE = 8;

const completeAtOnce: SyncScheduler = (complete) => complete();

export class MemoryDisk {
  private readonly syncScheduler: SyncScheduler;
  /** What survives a crash. */
  private durable = new Map<string, Uint8Array>();
  /** `durable` with `unsynced` applied: what reads see. */
  private visible = new Map<string, Uint8Array>();
  /** Batches written and not yet covered by a completed sync, in write order (ascending seq). */
  private unsynced: Batch[] = [];
  private nextSeq = 1;
  /** Bumped by every crash: sync completions and stores from an earlier generation are void. */
  private generationCounter = 0;
  private counters = {
    syncs: 0,
    syncsCompleted: 0,
    batches: 0,
    bytesWritten: 0,
    crashes: 0,
    tornWrites: 0,
    corruptions: 0,
  };

  constructor(options: MemoryDiskOptions = {}) {
    this.syncScheduler = options.syncScheduler ?? completeAtOnce;
  }

  get stats(): MemoryDiskStats {
    return { ...this.counters };
  }

  /** Crashes so far; a store remembers the generation it was created in. */
  get generation(): number {
    return this.generationCounter;
  }

  /** Batches written but not yet synced (they are lost or torn by a crash). */
  get unsyncedBatches(): number {
    return this.unsynced.length;
  }

  // ---- Used by MemoryLogStore. Records are immutable once written: nothing here mutates one in place. ----

  read(key: string): Uint8Array | undefined {
    return this.visible.get(key);
  }

  /** The entry keys that reads see, in index order. */
  entryKeys(): string[] {
    return [...this.visible.keys()].filter((key) => key.startsWith(ENTRY_KEY_PREFIX)).sort();
  }

  /** Applies `ops` for reads at once; they become durable with the next completed sync. */
  write(ops: readonly DiskOp[]): void {
    applyOps(this.visible, ops);
    this.unsynced.push({ seq: this.nextSeq++, ops });
    this.counters.batches++;
    for (const op of ops) if (op.type === 'put') this.counters.bytesWritten += op.record.length;
  }

  /** Makes every batch written so far durable, once the scheduler completes it. */
  sync(): Promise<void> {
    const generation = this.generationCounter;
    const upToSeq = this.nextSeq - 1;
    this.counters.syncs++;
    return new Promise((resolve) => {
      let called = false;
      this.syncScheduler(() => {
        if (called || generation !== this.generationCounter) return;
        called = true;
        this.markSynced(upToSeq);
        this.counters.syncsCompleted++;
        resolve();
      });
    });
  }

  // ---- Simulator API. ----

  /**
   * The process dies: unsynced batches are lost, except that with probability `tornWriteProbability` the
   * last one is torn instead (the batches before it then reached the disk whole). Pending sync completions
   * and stores created before the crash become void. Draws from `random` only when a tear is possible.
   */
  crash(random: RandomSource, options: CrashOptions = {}): void {
    const probability = options.tornWriteProbability ?? 0;
    if (!(probability >= 0 && probability <= 1)) {
      throw new LogStoreUsageError(`tornWriteProbability must be in [0, 1], got ${probability}`);
    }
    this.generationCounter++;
    this.counters.crashes++;
    const last = this.unsynced.at(-1);
    if (last !== undefined && probability > 0 && hasTearablePut(last.ops)) {
      if (random.int(PROBABILITY_SCALE) < Math.round(probability * PROBABILITY_SCALE)) {
        for (const batch of this.unsynced.slice(0, -1)) applyOps(this.durable, batch.ops);
        applyOps(this.durable, tornPrefix(last.ops, random));
        this.counters.tornWrites++;
      }
    }
    this.unsynced = [];
    this.visible = new Map(this.durable);
  }

  /**
   * Flips one bit of one synced entry record (any index, hidden ones below the snapshot included) that no
   * unsynced batch overwrites, and returns its key: the next load() throws CorruptLogError naming that key,
   * unless a write deletes the record first. The hard state and snapshot records are never chosen.
   * Returns null when there is no candidate.
   */
  corruptRandomRecord(random: RandomSource): string | null {
    const candidates = [...this.durable.entries()]
      .filter(([key, record]) => key.startsWith(ENTRY_KEY_PREFIX) && this.visible.get(key) === record)
      .filter(([, record]) => !recordLooksTorn(record))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (candidates.length === 0) return null;
    const chosen = candidates[random.int(candidates.length)];
    assert(chosen !== undefined, 'random.int out of range');
    const [key, record] = chosen;
    const corrupted = flipOneBit(record, random);
    this.durable.set(key, corrupted);
    this.visible.set(key, corrupted);
    this.counters.corruptions++;
    return key;
  }

  private markSynced(upToSeq: number): void {
    while (this.unsynced[0] !== undefined && this.unsynced[0].seq <= upToSeq) {
      const batch = this.unsynced.shift();
      assert(batch !== undefined, 'unsynced batch vanished');
      applyOps(this.durable, batch.ops);
    }
  }
}

/**
 * A LogStore over a MemoryDisk, for one process incarnation: create a new one after every crash (a store from
 * before a crash rejects every call with LogStoreClosedError, as a dead process writes nothing).
 * save() writes one batch, ordered deletes, snapshot, entries, hard state, then syncs. compact() writes
 * without syncing: compacted entries that come back after a crash lie below the snapshot and stay hidden.
 * load() returns copies, never views of the disk's records.
 */
export class MemoryLogStore implements LogStore {
  private readonly generation: number;
  /** Known after the first call; each call reads or plans against it. */
  private bounds: LogBounds | null = null;
  private closed = false;

  constructor(private readonly disk: MemoryDisk) {
    this.generation = disk.generation;
  }

  load(): Promise<LoadedLog> {
    return attempt(() => this.loadNow());
  }

  save(write: LogWrite): Promise<void> {
    return attempt(() => this.saveNow(write));
  }

  compact(index: number): Promise<void> {
    return attempt(() => this.compactNow(index));
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private loadNow(): LoadedLog {
    this.checkUsable();
    const hardState = this.readHardState();
    const snapshot = this.readSnapshot();
    const assembler = new LogAssembler(snapshot, true);
    for (const key of this.disk.entryKeys()) {
      const index = entryIndexOfKey(key);
      assert(index !== null, `malformed entry key on the memory disk: ${key}`);
      assembler.add(index, this.readCopy(key));
    }
    const { entries, bounds, repairs } = assembler.finish();
    // The torn record is deleted like any write: durable with the next sync, harmless if lost in a crash.
    if (repairs.length > 0) this.disk.write(repairs.map(({ key }) => ({ type: 'del', key })));
    this.bounds = bounds;
    return repairs.length > 0 ? { hardState, snapshot, entries, repairs } : { hardState, snapshot, entries };
  }

  private saveNow(write: LogWrite): Promise<void> {
    this.checkUsable();
    const bounds = this.currentBounds();
    const lookup = snapshotTermLookup(bounds, write);
    const plan = planWrite(bounds, write, lookup === null ? undefined : this.storedTerm(lookup));
    const ops = batchFor(plan);
    if (ops.length > 0) this.disk.write(ops);
    this.bounds = plan.next;
    return this.disk.sync();
  }

  private compactNow(index: number): void {
    this.checkUsable();
    const plan = planCompact(this.currentBounds(), index);
    if (plan.deletes !== null) this.disk.write(deletesFor(plan.deletes));
    this.bounds = plan.next;
  }

  private currentBounds(): LogBounds {
    if (this.bounds === null) this.loadNow();
    assert(this.bounds !== null, 'load sets the bounds');
    return this.bounds;
  }

  private storedTerm(index: number): number {
    const key = entryKey(index);
    const record = this.disk.read(key);
    assert(record !== undefined, `bounds say ${key} is stored`);
    return decodeEntry(record, key).term;
  }

  private readHardState(): HardState {
    const record = this.disk.read(HARD_STATE_KEY);
    return record === undefined ? emptyHardState : decodeHardState(record, HARD_STATE_KEY);
  }

  private readSnapshot(): Snapshot | null {
    return this.disk.read(SNAPSHOT_KEY) === undefined
      ? null
      : decodeSnapshot(this.readCopy(SNAPSHOT_KEY), SNAPSHOT_KEY);
  }

  /** A private copy of a record, so decoded data never aliases the disk. */
  private readCopy(key: string): Buffer {
    const record = this.disk.read(key);
    assert(record !== undefined, `${key} was listed but is not on the disk`);
    return Buffer.from(record);
  }

  private checkUsable(): void {
    if (this.closed) throw new LogStoreClosedError('the log store is closed');
    if (this.disk.generation !== this.generation) {
      throw new LogStoreClosedError('the disk crashed after this log store was created; create a new one');
    }
  }
}

/**
 * The batch of one save. A batch holding a snapshot has no tearable puts: a snapshot surviving a tear without
 * its hard state would leave the commit index below the snapshot.
 */
function batchFor(plan: WritePlan): DiskOp[] {
  const tearable = plan.snapshot === null;
  const ops: DiskOp[] = plan.deletes === null ? [] : deletesFor(plan.deletes);
  if (plan.snapshot !== null) {
    ops.push({ type: 'put', key: SNAPSHOT_KEY, record: encodeSnapshot(plan.snapshot), tearable: false });
  }
  for (const entry of plan.entries) {
    ops.push({ type: 'put', key: entryKey(entry.index), record: encodeEntry(entry), tearable });
  }
  if (plan.hardState !== null) {
    ops.push({ type: 'put', key: HARD_STATE_KEY, record: encodeHardState(plan.hardState), tearable: false });
  }
  return ops;
}

function deletesFor(range: IndexRange): DiskOp[] {
  const ops: DiskOp[] = [];
  for (let index = range.from; index <= range.to; index++) ops.push({ type: 'del', key: entryKey(index) });
  return ops;
}

function applyOps(map: Map<string, Uint8Array>, ops: readonly DiskOp[]): void {
  for (const op of ops) {
    if (op.type === 'put') map.set(op.key, op.record);
    else map.delete(op.key);
  }
}

function hasTearablePut(ops: readonly DiskOp[]): boolean {
  return ops.some((op) => op.type === 'put' && op.tearable);
}

/** The operations of `ops` that reach the disk when it is torn; see DiskOp. */
function tornPrefix(ops: readonly DiskOp[], random: RandomSource): DiskOp[] {
  const first = ops.findIndex((op) => op.type === 'put' && op.tearable);
  let end = first;
  while (end < ops.length && isTearablePut(ops[end])) end++;
  assert(first >= 0 && !ops.slice(end).some(isTearablePut), 'tearable puts must be consecutive');
  const kept = 1 + random.int(end - first);
  const cut = ops[first + kept - 1];
  assert(cut !== undefined && cut.type === 'put', 'the cut operation is a tearable put');
  const cutRecord = cut.record.subarray(0, random.int(cut.record.length));
  return [...ops.slice(0, first + kept - 1), { ...cut, record: cutRecord }];
}

function isTearablePut(op: DiskOp | undefined): boolean {
  return op !== undefined && op.type === 'put' && op.tearable;
}

/**
 * A copy of `record` with one random bit flipped. CRC32C detects every single-bit error; when the flip would
 * make the record look cut short (a length header grew, so the payload seems to end early; load() would then
 * forgive it at the tail), the same bit of the CRC is flipped instead, which keeps the payload complete.
 */
function flipOneBit(record: Uint8Array, random: RandomSource): Uint8Array {
  const bit = random.int(record.length * BITS_PER_BYTE);
  const flipped = withBitFlipped(record, bit);
  return recordLooksTorn(flipped)
    ? withBitFlipped(record, bit % (RECORD_CRC_BYTES * BITS_PER_BYTE))
    : flipped;
}

function withBitFlipped(record: Uint8Array, bit: number): Uint8Array {
  const copy = Uint8Array.from(record);
  const byte = Math.floor(bit / BITS_PER_BYTE);
  copy[byte] = (copy[byte] ?? 0) ^ (1 << (bit % BITS_PER_BYTE));
  return copy;
}

/** Runs `operation` as a promise: a synchronous throw becomes a rejection. */
function attempt<T>(operation: () => T | Promise<T>): Promise<T> {
  return new Promise<T>((resolve) => resolve(operation()));
}
