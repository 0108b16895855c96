/** RocksDbKv against the shared Kv conformance suite, plus restart and restore-failure behaviour. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { RocksDbKv } from '../../src/storage/rocksdb-kv.ts';
import { runKvConformance } from '../fsm/kv-conformance.ts';
import type { KvPair } from '../../src/fsm/kv.ts';

const base = await mkdtemp(join(tmpdir(), 'rfs-kv-'));
t.teardown(() => rm(base, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(base, `kv-${++n}`);
const s = (x: string) => new TextEncoder().encode(x);
const text = (x: Uint8Array | undefined) => (x === undefined ? undefined : new TextDecoder().decode(x));

runKvConformance(t, 'RocksDbKv', () => RocksDbKv.open(freshDir()));

void t.test('RocksDbKv keeps its content and generation across a reopen', async (t) => {
  const dir = freshDir();
  let kv = await RocksDbKv.open(dir);
  await kv.write({ puts: [{ key: s('a'), value: s('1') }], deletes: [] });
  await kv.restore([{ key: s('b'), value: s('2') }]);
  await kv.close();
  kv = await RocksDbKv.open(dir);
  t.equal(text(await kv.get(s('a'))), undefined, 'the old generation is gone');
  t.equal(text(await kv.get(s('b'))), '2');
  t.equal((await kv.scan({ limit: 10 })).length, 1);
  await kv.close();
});

void t.test('RocksDbKv: a restore whose source fails midway keeps the old content', async (t) => {
  const kv = await RocksDbKv.open(freshDir());
  await kv.write({ puts: [{ key: s('keep'), value: s('yes') }], deletes: [] });
  async function* failing(): AsyncGenerator<KvPair> {
    yield { key: s('x'), value: s('1') };
    await Promise.resolve();
    throw new Error('source broke');
  }
  await t.rejects(kv.restore(failing()), /source broke/);
  t.equal(text(await kv.get(s('keep'))), 'yes');
  t.equal(text(await kv.get(s('x'))), undefined);
  t.equal((await kv.scan({ limit: 10 })).length, 1);
  await kv.close();
});

void t.test('RocksDbKv.prefetch: values, absent keys and later writes read back exactly', async (t) => {
  const dir = freshDir();
  let kv = await RocksDbKv.open(dir);
  await kv.write({
    puts: [
      { key: s('a'), value: s('1') },
      { key: s('b'), value: s('2') },
    ],
    deletes: [],
  });
  await kv.close();
  kv = await RocksDbKv.open(dir); // a cold cache
  await kv.prefetch([s('a'), s('b'), s('c'), s('a')]);
  t.equal(text(await kv.get(s('a'))), '1');
  t.equal(text(await kv.get(s('c'))), undefined, 'absent, and cached as absent');
  await kv.write({ puts: [{ key: s('c'), value: s('3') }], deletes: [s('a')] });
  await kv.prefetch([s('a'), s('c')]);
  t.equal(text(await kv.get(s('a'))), undefined, 'the delete is seen');
  t.equal(text(await kv.get(s('c'))), '3', 'the put is seen');
  // A write racing a prefetch: the prefetched values are not cached over the write.
  const racing = kv.prefetch([s('b')]);
  await kv.write({ puts: [{ key: s('b'), value: s('changed') }], deletes: [] });
  await racing;
  t.equal(text(await kv.get(s('b'))), 'changed');
  await kv.close();
});

void t.test('RocksDbKv with lazy writes: sync() resolves and the content survives a reopen', async (t) => {
  const dir = freshDir();
  let kv = await RocksDbKv.open(dir, { sync: false });
  await kv.write({ puts: [{ key: s('lazy'), value: s('1') }], deletes: [] });
  await kv.sync();
  t.same((await kv.scan({ limit: 10 })).map((p) => text(p.key)), ['lazy'], 'the sync mark is not a data key');
  await kv.close();
  kv = await RocksDbKv.open(dir);
  t.equal(text(await kv.get(s('lazy'))), '1');
  await kv.close();
});

void t.test('RocksDbKv: reads racing writes never leave a stale cached value', async (t) => {
  const kv = await RocksDbKv.open(freshDir(), { sync: false });
  let stale = 0;
  for (let i = 0; i < 300; i++) {
    const key = s(`k${i % 7}`);
    const value = s(`v${i}`);
    // A write in flight, and reads of the same key started during it (they miss the cache and read the
    // store, possibly before the write lands, possibly finishing after it refilled the cache).
    const write = kv.write({ puts: [{ key, value }], deletes: [] });
    const reads = [kv.get(key), kv.prefetch([key]), kv.get(key)];
    await Promise.all([write, ...reads]);
    if (text(await kv.get(key)) !== `v${i}`) stale++;
  }
  t.equal(stale, 0, 'after every write completes, the cache serves the written value');
  await kv.close();
});
