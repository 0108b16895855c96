/**
 * The ordered key-value store the metadata state lives in, so the namespace is bounded by disk, not RAM.
 *
 * One interface, several implementations: `MemoryKv` here (the simulator and tests), a RocksDB one in
 * src/storage. Keys and values are bytes; keys order byte-wise (unsigned, shorter prefix first), as in
 * RocksDB's default comparator. Every method is async so a disk-backed store fits behind it.
 *
 * Contract (what every implementation keeps, and the conformance suite in test/fsm checks):
 * - `write` is atomic: after a crash either every put and delete of the batch is visible or none is. A store
 *   may make writes durable lazily (RocksDbKv with `sync: false`); then a crash of the machine loses a
 *   suffix of whole writes, never a part of one, and `sync()` makes every earlier write durable.
 * - `snapshotIterator` fixes its point in time when it is called (synchronously), not on the first `next()`:
 *   writes made afterwards are never visible through it.
 * - `restore` replaces the whole content atomically; if the source fails midway the old content stays.
 * - Byte arrays handed in are not retained (the store copies), and byte arrays handed out are the caller's.
 */
import { SortedStrings } from './sorted-strings.ts';

export interface KvPair {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/** A key range [gte, lt) and the most pairs to return. A missing bound is open. */
export interface KvRange {
  readonly gte?: Uint8Array | undefined;
  readonly lt?: Uint8Array | undefined;
  /** At least 1. */
  readonly limit: number;
}

/** One atomic write. A key appears at most once across `puts` and `deletes`. */
export interface KvBatch {
  readonly puts: readonly KvPair[];
  readonly deletes: readonly Uint8Array[];
  /**
   * Optional: the same keys as strings (bytesToKeyString), in the same order, when the producer holds them
   * already (the state machine's overlays do); a store keyed by strings then converts nothing.
   */
  readonly putKeys?: readonly string[];
  readonly deleteKeys?: readonly string[];
}

/** The read half, shared with the write overlays of the state machine. */
export interface KvReader {
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /**
   * Optional: exactly what `get` would return now, when the store knows it without I/O (an in-memory store, a
   * write-through read cache): the value, null for a key known absent, undefined when unknown (then call get).
   * The key is given as its key string (bytesToKeyString), which the caller holds already. The value may be the store's own
   * array, shared with later calls: never modify it (the state machine only decodes what it reads). Spares
   * the state machine a promise per cached read.
   */
  getCached?(keyString: string): Uint8Array | null | undefined;
  /** Pairs with gte <= key < lt in ascending key order, at most `limit`. */
  scan(range: KvRange): Promise<KvPair[]>;
}

export interface Kv extends KvReader {
  write(batch: KvBatch): Promise<void>;
  /**
   * Optional hint: these keys are about to be read. A disk-backed store may fetch them together (one round
   * trip) into its read cache. Never changes what any read returns.
   */
  prefetch?(keys: readonly Uint8Array[]): Promise<void>;
  /**
   * Optional, with prefetch: the value `get` would return now if the store knows it without I/O (its read
   * cache): the value, null for a key known absent, undefined when unknown. A hint for read-ahead only: the
   * state machine never bases a result on it. The value is the store's (no copy): never modify it.
   */
  peek?(key: Uint8Array): Uint8Array | null | undefined;
  /** Optional: makes every earlier write durable (a store whose writes are always durable omits it). */
  sync?(): Promise<void>;
  /** Every pair, ascending, as of the moment of the call. Return early with `return()` to release it. */
  snapshotIterator(): AsyncIterableIterator<KvPair>;
  /** Replaces the whole content with `pairs` (strictly ascending keys), atomically. */
  restore(pairs: AsyncIterable<KvPair> | Iterable<KvPair>): Promise<void>;
  close(): Promise<void>;
}

/** Byte-wise comparison: negative, zero or positive. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * Bytes as a string of char codes 0..255. JavaScript compares strings by UTF-16 code units, so these
 * strings order exactly as the bytes do: the in-memory structures key their maps and sorted arrays by them.
 */
export function bytesToKeyString(bytes: Uint8Array): string {
  if (bytes.length <= KEY_STRING_STEP) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let s = '';
  for (let i = 0; i < bytes.length; i += KEY_STRING_STEP) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + KEY_STRING_STEP) as unknown as number[]);
  }
  return s;
}

/** Bytes converted per fromCharCode call (bounded: the arguments go on the stack). */
const KEY_STRING_STEP = 4096;

export function keyStringToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

interface MemoryState {
  readonly keys: SortedStrings;
  readonly values: Map<string, Uint8Array>;
}

/**
 * A sorted in-memory store: an ordered set of key strings (sorted-strings.ts) plus a map to values. Snapshots
 * are copy-on-write: taking one is O(1), and the next write copies the structures once.
 */
export class MemoryKv implements Kv {
  private state: MemoryState = { keys: new SortedStrings(), values: new Map() };
  /** Whether a snapshot iterator may still read `state` (so the next write must copy it first). */
  private shared = false;
  private closed = false;

  get size(): number {
    return this.state.keys.size;
  }

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.checkOpen();
    const v = this.state.values.get(bytesToKeyString(key));
    return Promise.resolve(v === undefined ? undefined : v.slice());
  }

  /** Every key is known: never undefined. The stored arrays are private to the store (write copies). */
  getCached(keyString: string): Uint8Array | null {
    this.checkOpen();
    return this.state.values.get(keyString) ?? null;
  }

  scan(range: KvRange): Promise<KvPair[]> {
    this.checkOpen();
    return Promise.resolve(scanState(this.state, range));
  }

  write(batch: KvBatch): Promise<void> {
    this.checkOpen();
    const puts = batch.puts.map((p) => [bytesToKeyString(p.key), p.value.slice()] as const);
    const deletes = batch.deletes.map(bytesToKeyString);
    const seen = new Set<string>();
    for (const k of [...puts.map(([k]) => k), ...deletes]) {
      if (seen.has(k)) return Promise.reject(new Error('MemoryKv.write: a key appears twice in one batch'));
      seen.add(k);
    }
    if (this.shared) {
      this.state = { keys: this.state.keys.clone(), values: new Map(this.state.values) };
      this.shared = false;
    }
    const { keys, values } = this.state;
    for (const k of deletes) if (values.delete(k)) keys.delete(k);
    for (const [k, v] of puts) {
      keys.add(k);
      values.set(k, v);
    }
    return Promise.resolve();
  }

  snapshotIterator(): AsyncIterableIterator<KvPair> {
    this.checkOpen();
    this.shared = true;
    return iterateState(this.state);
  }

  async restore(pairs: AsyncIterable<KvPair> | Iterable<KvPair>): Promise<void> {
    this.checkOpen();
    const keys = new SortedStrings();
    const values = new Map<string, Uint8Array>();
    let last: string | undefined;
    for await (const p of pairs) {
      const k = bytesToKeyString(p.key);
      if (last !== undefined && k <= last)
        throw new Error('MemoryKv.restore: keys are not strictly ascending');
      last = k;
      keys.add(k);
      values.set(k, p.value.slice());
    }
    // Installed only now, in one step: a failure above left the old state untouched.
    this.state = { keys, values };
    this.shared = false;
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('MemoryKv is closed');
  }
}

function scanState(state: MemoryState, range: KvRange): KvPair[] {
  const out: KvPair[] = [];
  if (range.limit < 1) return out;
  const gte = range.gte === undefined ? undefined : bytesToKeyString(range.gte);
  const lt = range.lt === undefined ? undefined : bytesToKeyString(range.lt);
  for (const k of state.keys.range(gte, lt)) {
    out.push({ key: keyStringToBytes(k), value: state.values.get(k)!.slice() });
    if (out.length >= range.limit) break;
  }
  return out;
}

// eslint-disable-next-line @typescript-eslint/require-await -- an async generator keeps the Kv contract's shape
async function* iterateState(state: MemoryState): AsyncGenerator<KvPair> {
  for (const k of state.keys.range(undefined, undefined))
    yield { key: keyStringToBytes(k), value: state.values.get(k)!.slice() };
}
