/**
 * The metadata state machine's ordered key-value store on RocksDB (src/fsm/kv.ts's `Kv`), so the
 * namespace is bounded by disk, not RAM.
 *
 * Layout: user keys live under a generation prefix, `0x01 | generation (u32 BE) | key`; the current
 * generation is stored at `0x00 "gen"`. `restore()` writes the new content under the next generation in
 * bounded batches, then switches the generation pointer in one synced write: a restore that fails midway
 * leaves the old content in place, and a crash at any point leaves exactly one whole generation visible.
 * Data of other generations is garbage, deleted in the background after a switch and at open.
 */
import type { Kv, KvBatch, KvPair, KvRange } from '../fsm/kv.ts';
import { bytesToKeyString } from '../fsm/kv.ts';
import { assert } from '../raft/errors.ts';
import { RocksDbHandle, type RocksDbBatchOp } from './rocksdb-binding.ts';

const GENERATION_KEY = Buffer.from([0x00, 0x67, 0x65, 0x6e]); // "\0gen"
const DATA_TAG = 0x01;
/** Bytes of keys and values per write batch during restore and garbage collection. */
export const kvRestoreBatchBytes = 4 * 1024 * 1024;
/** Heap bytes of the read cache (keys, values and each entry's overhead, see cacheEntryOverheadBytes), at most. */
export const kvCacheBytesMax = 64 * 1024 * 1024;

/**
 * A write-through read cache of point lookups, absent keys included. Every write goes through this
 * object, so the cache is exact; it spares the state machine a thread-pool round trip per key read.
 *
 * Eviction is by two generations (an approximation of LRU without reordering on every hit): new and
 * re-used entries go to the young map; when it holds half the byte budget it becomes the old map and the
 * previous old map is dropped. A hit in the old map moves the entry to the young one.
 */
export class ReadCache {
  private young = new Map<string, Uint8Array | null>();
  private old = new Map<string, Uint8Array | null>();
  private youngBytes = 0;
  private oldBytes = 0;

  constructor(readonly bytesMax: number) {}

  /** Accounted bytes of both generations; at most bytesMax. */
  get bytes(): number {
    return this.youngBytes + this.oldBytes;
  }

  get size(): number {
    return this.young.size + this.old.size;
  }

  get(key: string): Uint8Array | null | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o === undefined) return undefined;
    this.old.delete(key);
    this.oldBytes -= entryBytes(key, o);
    this.add(key, o);
    return o;
  }

  set(key: string, value: Uint8Array | null): void {
    this.delete(key);
    this.add(key, value);
  }

  /** set() for the write path: a key already in the young generation is updated in place (one lookup). */
  replace(key: string, value: Uint8Array | null): void {
    const y = this.young.get(key);
    if (y !== undefined) {
      const delta = entryBytes(key, value) - entryBytes(key, y);
      if ((this.youngBytes + delta) * 2 <= this.bytesMax) {
        this.young.set(key, value);
        this.youngBytes += delta;
        return;
      }
    }
    this.set(key, value);
  }

  /** Invariant: each generation holds at most bytesMax / 2 (an entry larger than that is not cached). */
  private add(key: string, value: Uint8Array | null): void {
    const bytes = entryBytes(key, value);
    if (bytes * 2 > this.bytesMax) return;
    if ((this.youngBytes + bytes) * 2 > this.bytesMax) {
      this.old = this.young;
      this.oldBytes = this.youngBytes;
      this.young = new Map();
      this.youngBytes = 0;
    }
    this.young.set(key, value);
    this.youngBytes += bytes;
  }

  delete(key: string): void {
    const v = this.young.get(key);
    if (v !== undefined) {
      this.young.delete(key);
      this.youngBytes -= entryBytes(key, v);
    }
    const o = this.old.get(key);
    if (o !== undefined) {
      this.old.delete(key);
      this.oldBytes -= entryBytes(key, o);
    }
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
    this.youngBytes = 0;
    this.oldBytes = 0;
  }
}

/**
 * Heap bytes a cached entry costs beyond its key and value: map slot, string header, Uint8Array and
 * ArrayBuffer objects. Measured (Node 20, 13-byte keys, 9 to 80-byte values, after GC): 255 to 330 bytes,
 * depending on how full the maps' tables are (test/storage/read-cache.test.ts); the earlier estimate of
 * 160 let the cache's real heap reach ~100 MiB for its 64 MiB budget.
 */
export const cacheEntryOverheadBytes = 320;

/** Approximate memory of one cached entry: key characters, value bytes, and the map's overhead. */
function entryBytes(key: string, value: Uint8Array | null): number {
  return key.length + (value?.byteLength ?? 0) + cacheEntryOverheadBytes;
}

export class KvStoreError extends Error {
  constructor(
    readonly code: 'EINVAL' | 'ECLOSED',
    message: string,
  ) {
    super(message);
    this.name = 'KvStoreError';
  }
}

/** `prefix | key` in one allocation. */
function withPrefix(prefix: Buffer, key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(prefix.length + key.length);
  prefix.copy(out, 0);
  out.set(key, prefix.length);
  return out;
}

function prefixOf(generation: number): Buffer {
  const p = Buffer.alloc(5);
  p[0] = DATA_TAG;
  p.writeUInt32BE(generation, 1);
  return p;
}

export interface RocksDbKvOptions {
  /**
   * Sync every write to disk before resolving (default true). With false, writes reach the write-ahead
   * log unsynced: a process crash loses nothing, a machine crash may lose a suffix of whole writes, and
   * `sync()` makes every earlier write durable.
   */
  readonly sync?: boolean;
}

const SYNC_MARK_KEY = Buffer.from([0x00, 0x73, 0x79, 0x6e, 0x63]); // "\0sync", outside every generation

export class RocksDbKv implements Kv {
  private closed = false;
  private garbage: Promise<void> = Promise.resolve();
  private readonly cache = new ReadCache(kvCacheBytesMax);
  /** Count of writes started, and of writes in flight: a read fills the cache only if it overlapped none. */
  private writes = 0;
  private writesInFlight = 0;

  private constructor(
    private readonly db: RocksDbHandle,
    private generation: number,
    private readonly syncWrites: boolean,
  ) {}

  static async open(dir: string, options: RocksDbKvOptions = {}): Promise<RocksDbKv> {
    const db = await RocksDbHandle.open(dir);
    const raw = await db.get(GENERATION_KEY);
    const kv = new RocksDbKv(db, raw === undefined ? 0 : raw.readUInt32BE(0), options.sync ?? true);
    kv.collectGarbage();
    return kv;
  }

  private get prefix(): Buffer {
    return prefixOf(this.generation);
  }

  private dataKey(key: Uint8Array, generation = this.generation): Buffer {
    return Buffer.concat([prefixOf(generation), key]);
  }

  private checkOpen(): void {
    if (this.closed) throw new KvStoreError('ECLOSED', 'the key-value store is closed');
  }

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.checkOpen();
    const cacheKey = bytesToKeyString(key);
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined) return cached === null ? undefined : cached.slice();
    const clean = this.readStart();
    const value = await this.db.get(this.dataKey(key));
    // A write that overlapped this read may have changed the key: then do not cache what was read.
    if (clean()) this.cache.set(cacheKey, value ?? null);
    return value === undefined ? undefined : value.slice();
  }

  /**
   * Call when a store read starts; the returned check says, when it ends, whether the read overlapped no
   * write (none in flight at the start, none started since), so its values may be cached. A read that
   * starts while a write is in flight can see the old value and finish after the write refilled the
   * cache: caching it then would leave a stale entry.
   */
  private readStart(): () => boolean {
    const writesBefore = this.writes;
    const idle = this.writesInFlight === 0;
    return () => idle && this.writes === writesBefore;
  }

  /**
   * The read cache's answer (see KvReader.getCached); never I/O. The cache is write-through, so it is exact: a
   * value it holds is what get() returns (get() copies it, this does not).
   */
  getCached(keyString: string): Uint8Array | null | undefined {
    this.checkOpen();
    return this.cache.get(keyString);
  }

  /** The read cache's answer (see Kv.peek); never I/O. Read-ahead only looks at it, so no copy is made. */
  peek(key: Uint8Array): Uint8Array | null | undefined {
    this.checkOpen();
    return this.cache.get(bytesToKeyString(key));
  }

  /** Reads the keys missing from the read cache in one thread-pool job, and caches them (absent ones too). */
  async prefetch(keys: readonly Uint8Array[]): Promise<void> {
    this.checkOpen();
    const missing = new Map<string, Buffer>();
    for (const key of keys) {
      const cacheKey = bytesToKeyString(key);
      if (!missing.has(cacheKey) && this.cache.get(cacheKey) === undefined)
        missing.set(cacheKey, this.dataKey(key));
    }
    if (missing.size === 0) return;
    const clean = this.readStart();
    const values = await this.db.getMany([...missing.values()]);
    if (!clean()) return; // a write overlapped: what was read may be stale
    let i = 0;
    for (const cacheKey of missing.keys()) this.cache.set(cacheKey, values[i++] ?? null);
  }

  async scan(range: KvRange): Promise<KvPair[]> {
    this.checkOpen();
    if (!Number.isInteger(range.limit) || range.limit < 1)
      throw new KvStoreError('EINVAL', 'scan limit must be >= 1');
    const prefix = this.prefix;
    const out: KvPair[] = [];
    const gte = range.gte !== undefined ? Buffer.concat([prefix, range.gte]) : prefix;
    const lt = range.lt !== undefined ? Buffer.concat([prefix, range.lt]) : prefixOf(this.generation + 1);
    if (Buffer.compare(gte, lt) >= 0) return out;
    for await (const [k, v] of this.db.iterate({ gte, lt, limit: range.limit })) {
      out.push({ key: k.subarray(prefix.length), value: v });
    }
    return out;
  }

  async write(batch: KvBatch): Promise<void> {
    this.checkOpen();
    // Cache keys are the latin1 strings of the keys (bytesToKeyString), taken from the batch when it has them.
    const { puts, deletes } = batch;
    const putKeys = batch.putKeys ?? puts.map((p) => bytesToKeyString(p.key));
    const deleteKeys = batch.deleteKeys ?? deletes.map(bytesToKeyString);
    assert(putKeys.length === puts.length && deleteKeys.length === deletes.length, 'batch key strings do not match its keys');
    const seen = new Set<string>(putKeys);
    if (seen.size !== puts.length || deleteKeys.some((k) => seen.has(k)))
      throw new KvStoreError('EINVAL', 'a key appears twice in one batch');
    if (puts.length + deletes.length === 0) return;
    const prefix = this.prefix;
    const ops: RocksDbBatchOp[] = [];
    // One copy of each value: RocksDB copies it into its write batch, and the cache keeps it (reads copy).
    const values: Buffer[] = [];
    for (const p of puts) {
      const value = Buffer.from(p.value);
      values.push(value);
      ops.push({ type: 'put', key: withPrefix(prefix, p.key), value });
    }
    for (const d of deletes) ops.push({ type: 'del', key: withPrefix(prefix, d) });
    // The cache is updated once the write succeeded. Meanwhile it serves the values from before the write
    // (still the store's, and still right for a read that overlaps the write); a failed write leaves both
    // as they were. Reads that miss the cache during the write cache nothing (readStart).
    this.writes++;
    this.writesInFlight++;
    try {
      await this.db.batch(ops, { sync: this.syncWrites });
      // A Uint8Array view, not the Buffer: get() returns `.slice()`, a copy only for a plain Uint8Array.
      for (let i = 0; i < putKeys.length; i++) {
        const v = values[i]!;
        this.cache.replace(putKeys[i]!, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      }
      for (const k of deleteKeys) this.cache.replace(k, null);
    } finally {
      this.writesInFlight--;
    }
  }

  /** Every earlier write durable: one synced write, which syncs the write-ahead log up to it. */
  async sync(): Promise<void> {
    this.checkOpen();
    await this.db.batch([{ type: 'put', key: SYNC_MARK_KEY, value: Buffer.alloc(0) }], { sync: true });
  }

  snapshotIterator(): AsyncIterableIterator<KvPair> {
    this.checkOpen();
    const prefix = this.prefix;
    // The RocksDB iterator is created now: its implicit snapshot fixes the point in time.
    const raw = this.db.iterateFromNow({ gte: prefix, lt: prefixOf(this.generation + 1) });
    async function* pairs(): AsyncGenerator<KvPair> {
      for await (const [k, v] of raw) yield { key: k.subarray(prefix.length), value: v };
    }
    return pairs();
  }

  async restore(pairs: AsyncIterable<KvPair> | Iterable<KvPair>): Promise<void> {
    this.checkOpen();
    await this.garbage;
    const next = this.generation + 1;
    let ops: RocksDbBatchOp[] = [];
    let bytes = 0;
    let previous: Buffer | null = null;
    try {
      for await (const p of pairs) {
        const key = this.dataKey(p.key, next);
        if (previous !== null && Buffer.compare(previous, key) >= 0) {
          throw new KvStoreError('EINVAL', 'restore keys must be strictly ascending');
        }
        previous = key;
        ops.push({ type: 'put', key, value: Buffer.from(p.value) });
        bytes += key.length + p.value.length;
        if (bytes >= kvRestoreBatchBytes) {
          await this.db.batch(ops, { sync: false });
          ops = [];
          bytes = 0;
        }
      }
      const generationValue = Buffer.alloc(4);
      generationValue.writeUInt32BE(next, 0);
      ops.push({ type: 'put', key: GENERATION_KEY, value: generationValue });
      // The switch: synced, and with it every earlier unsynced batch of the new generation (one WAL).
      await this.db.batch(ops, { sync: true });
    } catch (error) {
      await this.deleteGeneration(next);
      throw error;
    }
    this.generation = next;
    this.writes++;
    this.cache.clear();
    this.collectGarbage();
  }

  /** Deletes every data key not of the current generation, in bounded batches, in the background. */
  private collectGarbage(): void {
    const current = this.generation;
    this.garbage = this.garbage.then(async () => {
      await this.deleteRange(prefixOf(0), prefixOf(current));
      await this.deleteRange(prefixOf(current + 1), Buffer.from([DATA_TAG + 1]));
    });
  }

  private async deleteGeneration(generation: number): Promise<void> {
    await this.deleteRange(prefixOf(generation), prefixOf(generation + 1));
  }

  private async deleteRange(gte: Buffer, lt: Buffer): Promise<void> {
    let ops: RocksDbBatchOp[] = [];
    let bytes = 0;
    for await (const [k] of this.db.iterate({ gte, lt })) {
      ops.push({ type: 'del', key: k });
      bytes += k.length;
      if (bytes >= kvRestoreBatchBytes) {
        await this.db.batch(ops, { sync: false });
        ops = [];
        bytes = 0;
      }
    }
    if (ops.length > 0) await this.db.batch(ops, { sync: false });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.garbage.catch(() => undefined);
    await this.db.close();
  }
}
