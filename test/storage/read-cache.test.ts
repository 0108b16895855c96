/**
 * RocksDbKv's read cache: exact (a read returns the last value set or nothing, never a stale one), within its
 * byte budget after any sequence of operations, and honest about that budget: the heap it really takes is
 * what it accounts.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import t from 'tap';
import { ReadCache, cacheEntryOverheadBytes, kvCacheBytesMax } from '../../src/storage/rocksdb-kv.ts';

type CacheOp =
  | { readonly kind: 'set' | 'replace'; readonly key: string; readonly value: Uint8Array | null }
  | { readonly kind: 'get' | 'delete'; readonly key: string }
  | { readonly kind: 'clear' };

const key = fc.integer({ min: 0, max: 60 }).map((k) => `k${k}`);
const op: fc.Arbitrary<CacheOp> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key, value: fc.option(fc.uint8Array({ maxLength: 700 }), { nil: null }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('replace' as const), key, value: fc.option(fc.uint8Array({ maxLength: 700 }), { nil: null }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('get' as const), key }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) },
);

void t.test('the read cache (set, and replace from the write path) stays within its byte budget and never returns a stale value', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 600, max: 8000 }), fc.array(op, { maxLength: 400 }), (bytesMax, ops) => {
      const cache = new ReadCache(bytesMax);
      const model = new Map<string, Uint8Array | null>();
      for (const o of ops) {
        if (o.kind === 'set' || o.kind === 'replace') {
          if (o.kind === 'set') cache.set(o.key, o.value);
          else cache.replace(o.key, o.value);
          model.set(o.key, o.value);
        } else if (o.kind === 'delete') {
          cache.delete(o.key);
          model.delete(o.key);
        } else if (o.kind === 'clear') {
          cache.clear();
          model.clear();
        } else {
          const got = cache.get(o.key);
          // Evicted (undefined) is allowed; anything else is the model's value.
          if (got !== undefined && got !== model.get(o.key)) return false;
        }
        if (cache.bytes > bytesMax || cache.bytes < 0) return false;
        if (cache.size === 0 && cache.bytes !== 0) return false;
      }
      return true;
    }),
  );
  t.end();
});

void t.test('a value larger than half the budget is not cached', (t) => {
  const cache = new ReadCache(1000);
  cache.set('small', new Uint8Array(10));
  cache.set('big', new Uint8Array(600));
  t.equal(cache.get('big'), undefined);
  t.ok(cache.get('small') !== undefined);
  t.ok(cache.bytes <= 1000);
  t.end();
});

void t.test('the heap the read cache really takes is what it accounts', (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const budget = 32 * 1024 * 1024;
  t.ok(budget <= kvCacheBytesMax);
  const cache = new ReadCache(budget);
  const valueSizes = [9, 40, 80, 9, 60];
  // Keys and values shaped like the state machine's (13-byte dirent keys as latin1 strings, 9-80 byte
  // records), enough of them to fill both generations and evict several times.
  for (let i = 0; i < 250_000; i++) {
    const k = Buffer.alloc(13);
    k[0] = 0x64;
    k.writeUInt32BE(i, 9);
    cache.set(k.toString('latin1'), Uint8Array.from(new Uint8Array(valueSizes[i % valueSizes.length]!).fill(i)));
  }
  const accounted = cache.bytes;
  const entries = cache.size;
  // What the cache really holds is what the heap gets back when it is emptied.
  gc();
  const full = process.memoryUsage();
  cache.clear();
  gc();
  const empty = process.memoryUsage();
  const real = full.heapUsed - empty.heapUsed + (full.arrayBuffers - empty.arrayBuffers);
  t.ok(accounted <= budget, `accounted ${accounted} <= budget ${budget}`);
  t.ok(accounted > budget / 2, 'the cache is full enough for the measure to mean something');
  t.ok(
    real <= accounted * 1.1,
    `real ${(real / 1048576).toFixed(1)} MiB for ${entries} entries <= accounted ${(accounted / 1048576).toFixed(1)} MiB + 10% ` +
      `(overhead counted per entry: ${cacheEntryOverheadBytes} bytes)`,
  );
  t.ok(cache.get('never set') === undefined);
  t.end();
});
