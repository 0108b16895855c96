/**
 * A write buffer over a KvReader: reads see the buffered writes first, then the base. The state machine
 * stacks two of them: a batch overlay over the store (so a command sees the writes of earlier commands of
 * the same batch, and the whole batch goes to the store in one atomic write), and a command overlay over
 * the batch overlay (so a failed command leaves no trace: its overlay is dropped).
 */
import { assert } from '../raft/errors.ts';
import { bytesToKeyString, keyStringToBytes } from './kv.ts';
import type { KvBatch, KvPair, KvRange, KvReader } from './kv.ts';
import { SortedStrings } from './sorted-strings.ts';

/** A buffered write: a value, or null for a delete. */
type Pending = Uint8Array | null;

const resolvedUndefined: Promise<undefined> = Promise.resolve(undefined);

/** Pairs fetched from the base per round trip while merging, at least. */
const BASE_PAGE_MIN = 16;

export class Overlay implements KvReader {
  /** Key string (see bytesToKeyString) -> buffered value or delete. */
  private readonly pending = new Map<string, Pending>();
  /**
   * The keys of `pending`, in order (so a scan visits only the buffered keys in its range). Built at the
   * overlay's first scan and kept from then on: most commands (a create) never scan, and keeping every put's
   * key in order twice (the command's overlay, then the batch's) cost more than sorting at a first scan.
   */
  private order: SortedStrings | undefined;
  /** Scans in flight; the buffer must not change under one (a command awaits its own scans). */
  private scanning = 0;

  constructor(private readonly base: KvReader) {}

  /** Number of buffered writes. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * The buffered value, else the store's. A key the buffers or the store's cache answer (KvReader.getCached)
   * costs no read of the store: one resolved promise, however many overlays are stacked.
   */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.getByKeyString(bytesToKeyString(key), key);
  }

  /** get() of the key whose key string (bytesToKeyString) is `k`; `key`: its bytes, if the caller has them. */
  getByKeyString(k: string, key?: Uint8Array): Promise<Uint8Array | undefined> {
    const v = this.getCached(k);
    if (v === null) return resolvedUndefined;
    if (v !== undefined) return Promise.resolve(v);
    return this.store.get(key ?? keyStringToBytes(k));
  }

  /** What get() would return, when the buffers or the store know it without I/O (see KvReader.getCached). */
  getCached(keyString: string): Uint8Array | null | undefined {
    const p = this.pending.get(keyString);
    if (p !== undefined) return p;
    return this.base.getCached?.(keyString);
  }

  /** The store under every overlay. */
  private get store(): KvReader {
    return this.base instanceof Overlay ? this.base.store : this.base;
  }

  /**
   * What the buffered writes of this overlay and of the overlays under it say about `key`, without reading
   * the store at the bottom: for a key the caller knows the store does not hold.
   */
  getBuffered(keyString: string): Uint8Array | undefined {
    return this.buffered(keyString);
  }

  private buffered(k: string): Uint8Array | undefined {
    const p = this.pending.get(k);
    if (p === null) return undefined;
    if (p !== undefined) return p;
    return this.base instanceof Overlay ? this.base.buffered(k) : undefined;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    this.set(bytesToKeyString(key), value);
  }

  delete(key: Uint8Array): void {
    this.set(bytesToKeyString(key), null);
  }

  /** put() of the key whose key string (bytesToKeyString) is `k`. */
  putByKeyString(k: string, value: Uint8Array): void {
    this.set(k, value);
  }

  /** delete() of the key whose key string (bytesToKeyString) is `k`. */
  deleteByKeyString(k: string): void {
    this.set(k, null);
  }

  private set(k: string, v: Pending): void {
    assert(this.scanning === 0, 'overlay written during one of its scans');
    if (this.order !== undefined && !this.pending.has(k)) this.order.add(k);
    this.pending.set(k, v);
  }

  /**
   * Merges the base's pairs with the buffered writes in the range. The base is read in pages from a cursor,
   * so buffered deletes never make the result shorter than `limit` while more pairs exist.
   */
  async scan(range: KvRange): Promise<KvPair[]> {
    this.scanning += 1;
    try {
      return await this.merge(range);
    } finally {
      this.scanning -= 1;
    }
  }

  /** The buffered keys in order (see `order`). */
  private sortedKeys(): SortedStrings {
    if (this.order === undefined) {
      const order = new SortedStrings();
      for (const k of [...this.pending.keys()].sort()) order.add(k);
      this.order = order;
    }
    return this.order;
  }

  private async merge(range: KvRange): Promise<KvPair[]> {
    const mine = this.sortedKeys().range(
      range.gte === undefined ? undefined : bytesToKeyString(range.gte),
      range.lt === undefined ? undefined : bytesToKeyString(range.lt),
    );
    let m = mine.next();
    const out: KvPair[] = [];
    let page: KvPair[] = [];
    let pi = 0;
    /** Key string of page[pi], computed once per pair. */
    let bKey: string | undefined;
    let cursor = range.gte;
    let baseDone = false;
    while (out.length < range.limit) {
      if (pi === page.length && !baseDone) {
        const want = Math.max(BASE_PAGE_MIN, range.limit - out.length);
        page = await this.base.scan({ gte: cursor, lt: range.lt, limit: want });
        pi = 0;
        bKey = undefined;
        baseDone = page.length < want;
        const last = page[page.length - 1];
        if (last !== undefined) cursor = successor(last.key);
      }
      const b = page[pi];
      if (b === undefined && m.done === true) break;
      if (b !== undefined && bKey === undefined) bKey = bytesToKeyString(b.key);
      if (m.done !== true && (b === undefined || m.value <= bKey!)) {
        if (m.value === bKey) {
          pi++; // the buffered write shadows the base's pair
          bKey = undefined;
        }
        const value = this.pending.get(m.value)!;
        if (value !== null) out.push({ key: keyStringToBytes(m.value), value });
        m = mine.next();
      } else {
        pi++;
        bKey = undefined;
        out.push(b!);
      }
    }
    return out;
  }

  /** Moves every buffered write into `target` (an overlay over the same data), leaving this one empty. */
  mergeInto(target: Overlay): void {
    for (const [k, v] of this.pending) target.set(k, v);
    this.pending.clear();
    this.order = undefined;
  }

  /** The buffered writes as one store batch. */
  toBatch(): KvBatch {
    const puts: KvPair[] = [];
    const deletes: Uint8Array[] = [];
    const putKeys: string[] = [];
    const deleteKeys: string[] = [];
    for (const [k, v] of this.pending) {
      if (v === null) {
        deletes.push(keyStringToBytes(k));
        deleteKeys.push(k);
      } else {
        puts.push({ key: keyStringToBytes(k), value: v });
        putKeys.push(k);
      }
    }
    return { puts, deletes, putKeys, deleteKeys };
  }
}

/** The smallest key greater than `key`. */
export function successor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out.set(key);
  return out;
}
