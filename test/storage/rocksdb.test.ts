import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { entryKey } from '../../src/storage/log-keys.ts';
import { CorruptLogError } from '../../src/storage/log-store.ts';
import { RocksDbHandle } from '../../src/storage/rocksdb-binding.ts';
import { RocksDbLogStore } from '../../src/storage/rocksdb-log-store.ts';
import { entries, runLogStoreConformance, snapshot } from './conformance.ts';
import type { OpenedStore } from './conformance.ts';

/** Each run opens a database and syncs a batch per command: a few milliseconds per command. */
const MODEL_RUNS = 25;
const MAX_COMMANDS = 20;

/** Byte 0x65 ('e') then the 8-byte big-endian index: the entry key layout of rocksdb-log-store.ts. */
function entryDbKey(index: number): Buffer {
  const key = Buffer.alloc(9);
  key[0] = 0x65;
  key.writeBigUInt64BE(BigInt(index), 1);
  return key;
}

async function freshDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'rfs-rocksdb-log-'));
}

async function openRocksDb(): Promise<OpenedStore> {
  const dir = await freshDir();
  let store = await RocksDbLogStore.open(dir);
  return {
    store,
    reopen: async () => {
      await store.close();
      store = await RocksDbLogStore.open(dir);
      return store;
    },
    inspect: async () => {
      // A read-only handle opened beside the writer can race the writer's background compaction, which
      // deletes table files the reader just listed ("No such file"): then open it again.
      for (let attempt = 1; ; attempt++) {
        try {
          const reader = await RocksDbLogStore.open(dir, { readOnly: true });
          try {
            return await reader.load();
          } finally {
            await reader.close();
          }
        } catch (error) {
          if (attempt >= 5 || !/No such file/.test(String((error as Error).message))) throw error;
        }
      }
    },
    destroy: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Rewrites one stored value through a raw handle, as a failing disk would. */
async function rewriteRaw(dir: string, key: Buffer, change: (value: Buffer) => Buffer): Promise<void> {
  const raw = await RocksDbHandle.open(dir);
  try {
    const value = await raw.get(key);
    if (value === undefined) throw new Error(`no value under ${key.toString('hex')}`);
    await raw.batch([{ type: 'put', key, value: change(Buffer.from(value)) }], { sync: true });
  } finally {
    await raw.close();
  }
}

await runLogStoreConformance(t, 'rocksdb', openRocksDb, { modelRuns: MODEL_RUNS, maxCommands: MAX_COMMANDS });

void t.test('a flipped byte in a stored entry makes load() throw CorruptLogError naming it', async (t) => {
  const dir = await freshDir();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await RocksDbLogStore.open(dir);
  await store.save({ entries: entries(1, 5, 1), hardState: { term: 1, vote: 1, commit: 5 } });
  await store.close();
  for (const index of [3, 5]) {
    await rewriteRaw(dir, entryDbKey(index), (value) => {
      value[value.length - 1]! ^= 0x01;
      return value;
    });
    const reopened = await RocksDbLogStore.open(dir);
    await t.rejects(
      reopened.load(),
      { name: 'CorruptLogError', code: 'ECORRUPTLOG', key: entryKey(index) },
      `entry ${index}`,
    );
    await reopened.close();
    await rewriteRaw(dir, entryDbKey(index), (value) => {
      value[value.length - 1]! ^= 0x01;
      return value;
    });
  }
  const repaired = await RocksDbLogStore.open(dir);
  t.equal((await repaired.load()).entries.length, 5, 'restored bytes load again');
  await repaired.close();
});

void t.test(
  'a truncated last entry is corruption, not a torn tail: RocksDB batches are atomic',
  async (t) => {
    const dir = await freshDir();
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const store = await RocksDbLogStore.open(dir);
    await store.save({ entries: entries(1, 3, 1) });
    await store.close();
    await rewriteRaw(dir, entryDbKey(3), (value) => value.subarray(0, value.length - 2));
    const reopened = await RocksDbLogStore.open(dir);
    await t.rejects(reopened.load(), CorruptLogError);
    await reopened.close();
  },
);

void t.test(
  'a corrupt snapshot record fails open(); a missing entry inside the log fails load()',
  async (t) => {
    const dir = await freshDir();
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const store = await RocksDbLogStore.open(dir);
    await store.save({ entries: entries(1, 6, 1) });
    await store.save({ snapshot: snapshot(2, 1) });
    await store.close();
    const raw = await RocksDbHandle.open(dir);
    await raw.batch([{ type: 'del', key: entryDbKey(4) }], { sync: true });
    await raw.close();
    const reopened = await RocksDbLogStore.open(dir);
    await t.rejects(reopened.load(), { name: 'CorruptLogError', key: entryKey(5) }, 'gap after entry 3');
    await reopened.close();
    await rewriteRaw(dir, Buffer.from('s'), (value) => {
      value[0]! ^= 0x80;
      return value;
    });
    await t.rejects(RocksDbLogStore.open(dir), { name: 'CorruptLogError', key: 'snapshot' });
    const again = await RocksDbHandle.open(dir);
    await again.close();
    t.pass('a failed open() releases the database');
  },
);

void t.test('a read-only store refuses writes', async (t) => {
  const dir = await freshDir();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await RocksDbLogStore.open(dir);
  await store.save({ entries: entries(1, 2, 1) });
  const reader = await RocksDbLogStore.open(dir, { readOnly: true });
  t.equal((await reader.load()).entries.length, 2, 'reads while the writer is open');
  await t.rejects(reader.save({ entries: entries(3, 3, 1) }), { code: 'EINVAL' });
  await t.rejects(reader.compact(0), { code: 'EINVAL' });
  await reader.close();
  await store.close();
});

void t.test('compacting many entries spans several batches', async (t) => {
  const dir = await freshDir();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let store = await RocksDbLogStore.open(dir);
  const count = 10_000;
  await store.save({ entries: entries(1, count, 1) });
  await store.save({ snapshot: snapshot(count - 1, 1) });
  await store.compact(count - 1);
  await store.close();
  const raw = await RocksDbHandle.open(dir);
  let stored = 0;
  for await (const _pair of raw.iterate({ gte: Buffer.from('e'), lt: Buffer.from('f') })) stored++;
  await raw.close();
  t.equal(stored, 1, 'only the entry above the snapshot is left');
  store = await RocksDbLogStore.open(dir);
  t.equal((await store.load()).entries[0]?.index, count);
  await store.close();
});
