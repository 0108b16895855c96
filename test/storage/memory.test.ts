import assert from 'node:assert/strict';
import fc from 'fast-check';
import t from 'tap';
import type { RandomSource } from '../../src/raft/config.ts';
import { emptyHardState } from '../../src/raft/types.ts';
import type { Entry, HardState } from '../../src/raft/types.ts';
import { entryKey } from '../../src/storage/log-keys.ts';
import { CorruptLogError } from '../../src/storage/log-store.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { entries, entry, plainLog, runLogStoreConformance, snapshot } from './conformance.ts';
import type { ExpectedLog, OpenedStore } from './conformance.ts';

/** Property runs of the crash properties; each run is a few milliseconds. */
const CRASH_RUNS = 200;
/** Event-loop turns to let a promise settle when it is able to. */
const SETTLE_TURNS = 5;

function openMemory(disk = new MemoryDisk()): Promise<OpenedStore> {
  let store = new MemoryLogStore(disk);
  return Promise.resolve({
    store,
    reopen: async () => {
      await store.close();
      store = new MemoryLogStore(disk);
      return store;
    },
    inspect: () => loadFresh(disk),
    destroy: () => store.close(),
  });
}

/** Loads through a new store, as a restarted process would. */
async function loadFresh(disk: MemoryDisk) {
  const store = new MemoryLogStore(disk);
  try {
    return await store.load();
  } finally {
    await store.close();
  }
}

/** A seeded RandomSource (mulberry32), so every case replays exactly. */
function seededRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  return {
    int(maxExclusive: number): number {
      state = (state + 0x6d2b79f5) >>> 0;
      let x = state;
      x = Math.imul(x ^ (x >>> 15), x | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      return Math.floor((((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * maxExclusive);
    },
  };
}

/** A sync scheduler the test drives by hand: completions queue until released. */
function manualSyncs() {
  const queued: (() => void)[] = [];
  return {
    scheduler: (complete: () => void) => {
      queued.push(complete);
    },
    queued,
    completeAll() {
      for (const complete of queued.splice(0)) complete();
    },
  };
}

/** Whether `promise` has settled after a few event-loop turns. */
async function settles(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let turn = 0; turn < SETTLE_TURNS; turn++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

function sameLog(actual: ExpectedLog, expected: ExpectedLog): boolean {
  try {
    assert.deepStrictEqual(plainLog(actual), plainLog(expected));
    return true;
  } catch {
    return false;
  }
}

await runLogStoreConformance(t, 'memory', () => openMemory(), { modelRuns: 200 });

void t.test('save() resolves only when its sync completes; one sync per save', async (t) => {
  const syncs = manualSyncs();
  const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
  const store = new MemoryLogStore(disk);
  const saved = store.save({ entries: entries(1, 2, 1) });
  t.equal(syncs.queued.length, 1, 'the scheduler was called once');
  t.notOk(await settles(saved), 'not resolved before the sync completes');
  t.equal(disk.unsyncedBatches, 1);
  syncs.completeAll();
  t.ok(await settles(saved), 'resolved once the sync completed');
  t.equal(disk.unsyncedBatches, 0);
  t.match(disk.stats, { syncs: 1, syncsCompleted: 1, batches: 1 });
  t.ok(disk.stats.bytesWritten > 0, 'bytes counted');
});

void t.test('a crash drops unsynced writes and keeps synced ones', async (t) => {
  const syncs = manualSyncs();
  const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
  const store = new MemoryLogStore(disk);
  const hardState = { term: 1, vote: 1, commit: 2 };
  const first = store.save({ entries: entries(1, 3, 1), hardState });
  syncs.completeAll();
  await first;
  const second = store.save({ entries: entries(4, 5, 1), hardState: { term: 2, vote: 2, commit: 4 } });
  t.equal((await store.load()).entries.length, 5, 'the running process reads its unsynced write');
  disk.crash(seededRandom(1));
  t.strictSame(
    plainLog(await loadFresh(disk)),
    plainLog({ hardState, snapshot: null, entries: entries(1, 3, 1) }),
  );
  await t.rejects(store.load(), { code: 'ECLOSED' }, 'the store of the crashed process is dead');
  await t.rejects(store.save({ hardState }), { code: 'ECLOSED' });
  t.notOk(await settles(second), 'the unsynced save never resolves');
  t.equal(disk.stats.crashes, 1);
});

void t.test('a pending sync completed after a crash does nothing', async (t) => {
  const syncs = manualSyncs();
  const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
  const saved = new MemoryLogStore(disk).save({ entries: entries(1, 2, 1) });
  disk.crash(seededRandom(2));
  const restarted = new MemoryLogStore(disk);
  syncs.completeAll(); // the stale completion arrives late
  t.equal(disk.stats.syncsCompleted, 0, 'the stale completion took no effect');
  t.notOk(await settles(saved), 'and resolved nothing');
  t.strictSame((await restarted.load()).entries, [], 'nothing became durable');
  const next = restarted.save({ entries: entries(1, 1, 2) });
  syncs.completeAll();
  await next;
  disk.crash(seededRandom(3));
  t.strictSame(
    plainLog(await loadFresh(disk)),
    plainLog({ hardState: emptyHardState, snapshot: null, entries: [entry(1, 2)] }),
  );
});

void t.test('a torn tail is discarded and reported, never thrown', async (t) => {
  for (let seed = 1; seed <= 50; seed++) {
    const syncs = manualSyncs();
    const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
    const store = new MemoryLogStore(disk);
    const hardState = { term: 1, vote: 1, commit: 3 };
    const synced = store.save({ entries: entries(1, 3, 1), hardState });
    syncs.completeAll();
    await synced;
    void store.save({ entries: entries(4, 8, 2), hardState: { term: 2, vote: 1, commit: 3 } });
    disk.crash(seededRandom(seed), { tornWriteProbability: 1 });
    const loaded = await loadFresh(disk);
    const cut = loaded.entries.length + 1;
    assert.ok(cut >= 4 && cut <= 8, `the cut entry ${cut} is one of the torn batch`);
    assert.deepStrictEqual(loaded.repairs, [{ key: entryKey(cut), index: cut, reason: 'torn-tail' }]);
    assert.deepStrictEqual(
      plainLog(loaded),
      plainLog({ hardState, snapshot: null, entries: [...entries(1, 3, 1), ...entries(4, cut - 1, 2)] }),
    );
    assert.equal(disk.stats.tornWrites, 1);
    // The repair is an unsynced delete: lost in a plain crash, the torn record is found and repaired again.
    disk.crash(seededRandom(seed));
    assert.deepStrictEqual((await loadFresh(disk)).repairs?.length, 1);
    // Appending over the repaired tail, synced, leaves nothing to repair.
    const restarted = new MemoryLogStore(disk);
    await restarted.load();
    const appended = restarted.save({ entries: entries(cut, cut, 3) });
    syncs.completeAll();
    await appended;
    disk.crash(seededRandom(seed));
    const after = await loadFresh(disk);
    assert.equal(after.repairs, undefined);
    assert.equal(after.entries.at(-1)?.index, cut);
  }
  t.pass('50 torn appends repaired');
});

void t.test('a torn truncating write leaves no stale entries after the new ones', async (t) => {
  for (let seed = 1; seed <= 50; seed++) {
    const syncs = manualSyncs();
    const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
    const store = new MemoryLogStore(disk);
    const synced = store.save({ entries: entries(1, 6, 1) });
    syncs.completeAll();
    await synced;
    void store.save({ entries: entries(3, 5, 2) });
    disk.crash(seededRandom(seed), { tornWriteProbability: 1 });
    const loaded = await loadFresh(disk);
    const cut = loaded.entries.length + 1;
    assert.ok(cut >= 3 && cut <= 5);
    assert.deepStrictEqual(
      loaded.repairs?.map((r) => r.index),
      [cut],
    );
    assert.deepStrictEqual(
      plainLog(loaded),
      plainLog({
        hardState: emptyHardState,
        snapshot: null,
        entries: [...entries(1, 2, 1), ...entries(3, cut - 1, 2)],
      }),
    );
  }
  t.pass('50 torn truncations repaired');
});

void t.test('a batch holding a snapshot is lost whole, never torn', async (t) => {
  const syncs = manualSyncs();
  const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
  const store = new MemoryLogStore(disk);
  void store.save({ snapshot: snapshot(5, 1), entries: entries(6, 9, 1) });
  disk.crash(seededRandom(4), { tornWriteProbability: 1 });
  t.equal(disk.stats.tornWrites, 0);
  t.strictSame(
    plainLog(await loadFresh(disk)),
    plainLog({ hardState: emptyHardState, snapshot: null, entries: [] }),
  );
});

void t.test('when the last unsynced batch is torn, the ones before it survive whole', async (t) => {
  const syncs = manualSyncs();
  const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
  const store = new MemoryLogStore(disk);
  const hardState = { term: 1, vote: 2, commit: 0 };
  void store.save({ entries: entries(1, 2, 1), hardState });
  void store.save({ entries: entries(3, 6, 1), hardState: { term: 1, vote: 2, commit: 2 } });
  disk.crash(seededRandom(5), { tornWriteProbability: 1 });
  const loaded = await loadFresh(disk);
  t.equal(loaded.repairs?.length, 1);
  t.strictSame(loaded.hardState, hardState, 'the first batch, hard state included');
  t.ok(loaded.entries.length >= 2 && loaded.entries.length < 6);
});

void t.test('crash() refuses a probability outside [0, 1]', (t) => {
  const disk = new MemoryDisk();
  t.throws(() => disk.crash(seededRandom(1), { tornWriteProbability: 1.5 }), { code: 'EINVAL' });
  t.throws(() => disk.crash(seededRandom(1), { tornWriteProbability: Number.NaN }), { code: 'EINVAL' });
  t.equal(disk.stats.crashes, 0);
  t.end();
});

void t.test('corruptRandomRecord makes load() throw CorruptLogError naming the record', async (t) => {
  t.equal(new MemoryDisk().corruptRandomRecord(seededRandom(1)), null, 'nothing to corrupt on an empty disk');
  const onlyState = new MemoryDisk();
  await new MemoryLogStore(onlyState).save({
    hardState: { term: 1, vote: 1, commit: 0 },
    snapshot: snapshot(3, 1),
  });
  t.equal(onlyState.corruptRandomRecord(seededRandom(1)), null, 'hard state and snapshot are left alone');

  await fc.assert(
    fc.asyncProperty(
      fc.integer(),
      fc.integer({ min: 1, max: 12 }),
      fc.boolean(),
      async (seed, count, withSnapshot) => {
        const disk = new MemoryDisk();
        const store = new MemoryLogStore(disk);
        await store.save({ entries: entries(1, count, 1), hardState: { term: 1, vote: 1, commit: count } });
        // A matching snapshot leaves the entries it covers stored until compact(): they are checked too.
        if (withSnapshot) await store.save({ snapshot: snapshot(Math.ceil(count / 2), 1) });
        const key = disk.corruptRandomRecord(seededRandom(seed));
        assert.ok(key !== null);
        await assert.rejects(
          loadFresh(disk),
          (error: unknown) => error instanceof CorruptLogError && error.key === key,
        );
      },
    ),
    { numRuns: CRASH_RUNS },
  );
  t.pass(`${CRASH_RUNS} corruptions detected`);
});

void t.test('loaded data is a copy: changing it changes nothing stored', async (t) => {
  const disk = new MemoryDisk();
  const store = new MemoryLogStore(disk);
  await store.save({ entries: [entry(1, 1, Buffer.from('abc'))] });
  const loaded = await store.load();
  (loaded.entries[0]?.data as Uint8Array).fill(0);
  t.equal(Buffer.from((await loadFresh(disk)).entries[0]?.data ?? []).toString(), 'abc');
});

/**
 * Whatever the sync and crash timing, a crash leaves a prefix of the write stream: the state after some
 * write j at or after the last synced one, possibly followed by a prefix of write j + 1's entries.
 */
void t.test('a crash leaves a prefix of the write stream', async (t) => {
  const writeArb = fc.record({
    backOff: fc.nat({ max: 3 }),
    count: fc.integer({ min: 1, max: 4 }),
    withHardState: fc.boolean(),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(writeArb, { minLength: 1, maxLength: 8 }),
      fc.nat(),
      fc.integer(),
      fc.boolean(),
      async (plan, syncedCount, seed, tear) => {
        const syncs = manualSyncs();
        const disk = new MemoryDisk({ syncScheduler: syncs.scheduler });
        const store = new MemoryLogStore(disk);
        const states: ExpectedLog[] = [{ hardState: emptyHardState, snapshot: null, entries: [] }];
        const writes: Entry[][] = [];
        const synced = syncedCount % (plan.length + 1);
        for (const [i, w] of plan.entries()) {
          const previous = states.at(-1)!;
          const last = previous.entries.at(-1)?.index ?? 0;
          const start = Math.max(1, last + 1 - w.backOff);
          const list = entries(start, start + w.count - 1, i + 1);
          const hardState: HardState = w.withHardState
            ? { term: i + 1, vote: 1, commit: 0 }
            : previous.hardState;
          void store.save(w.withHardState ? { entries: list, hardState } : { entries: list });
          if (i + 1 === synced) syncs.completeAll();
          writes.push(list);
          states.push({
            ...previous,
            hardState,
            entries: [...previous.entries.filter((e) => e.index < start), ...list],
          });
        }
        disk.crash(seededRandom(seed), { tornWriteProbability: tear ? 1 : 0 });
        const loaded = await loadFresh(disk);
        const candidates: ExpectedLog[] = [];
        for (let j = synced; j < states.length; j++) {
          const state = states[j]!;
          candidates.push(state);
          const next = writes[j];
          if (next === undefined) continue;
          const kept = state.entries.filter((e) => e.index < next[0]!.index);
          for (let m = 0; m < next.length; m++)
            candidates.push({ ...state, entries: [...kept, ...next.slice(0, m)] });
        }
        assert.ok(
          candidates.some((c) => sameLog(loaded, c)),
          `loaded ${JSON.stringify(plainLog(loaded))}`,
        );
      },
    ),
    { numRuns: CRASH_RUNS },
  );
  t.pass(`${CRASH_RUNS} crash schedules leave a prefix of the writes`);
});
