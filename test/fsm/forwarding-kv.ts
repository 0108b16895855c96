/**
 * A test store that forwards every Kv call to a MemoryKv (`inner`). Tests extend it to add or change one
 * behaviour (a simulated read cache, getCached for some keys only); used as is, it is a store without
 * getCached, prefetch or peek.
 */
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { Kv, KvBatch, KvPair, KvRange } from '../../src/fsm/kv.ts';

export class ForwardingKv implements Kv {
  readonly inner = new MemoryKv();
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.inner.get(key);
  }
  scan(range: KvRange): Promise<KvPair[]> {
    return this.inner.scan(range);
  }
  write(batch: KvBatch): Promise<void> {
    return this.inner.write(batch);
  }
  snapshotIterator(): AsyncIterableIterator<KvPair> {
    return this.inner.snapshotIterator();
  }
  restore(pairs: AsyncIterable<KvPair> | Iterable<KvPair>): Promise<void> {
    return this.inner.restore(pairs);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
