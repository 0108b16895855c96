/** Applying batches: atomicity with the applied index, overlays, restarts, determinism, serialisation. */
import t from 'tap';
import type { Op } from '../../src/fsm/commands.ts';
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { KvBatch, KvPair } from '../../src/fsm/kv.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import { AssertionError } from '../../src/raft/errors.ts';
import { Harness } from './harness.ts';
import { StateFormatError } from '../../src/fsm/errors.ts';
import * as keys from '../../src/fsm/keys.ts';
import * as rec from '../../src/fsm/records.ts';
import { encodeSnapshot } from '../../src/fsm/snapshot.ts';

/** A MemoryKv whose next write can be made to fail (a crash before the write reached the disk). */
class FlakyKv extends MemoryKv {
  failNext = false;
  override write(batch: KvBatch): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error('disk gone'));
    }
    return super.write(batch);
  }
}

async function dump(kv: MemoryKv): Promise<string[]> {
  const out: string[] = [];
  for await (const p of kv.snapshotIterator())
    out.push(`${Buffer.from(p.key).toString('hex')}=${Buffer.from(p.value).toString('hex')}`);
  return out;
}

void t.test('the applied index is stored with the batch and survives a restart', async (t) => {
  const h = await Harness.open();
  await h.runBatch([
    { type: 'mkdir', path: '/a' },
    { type: 'mkdir', path: '/b' },
  ]);
  t.equal(h.sm.appliedIndex(), 2);
  await h.reopen();
  t.equal(h.sm.appliedIndex(), 2);
  t.same(await h.names('/'), ['a', 'b']);
  await h.ok({ type: 'mkdir', path: '/c' });
  t.equal(h.sm.appliedIndex(), 3);
});

void t.test('a command sees the writes of earlier commands in the same batch', async (t) => {
  const h = await Harness.open();
  const results = await h.runBatch([
    { type: 'mkdir', path: '/a' },
    { type: 'create', path: '/a/f' },
    { type: 'rename', from: '/a/f', to: '/g' },
    { type: 'create', path: '/a/f' },
    { type: 'mkdir', path: '/a' },
  ]);
  t.same(
    results.map((r) => r?.ok),
    [true, true, true, true, false],
  );
  t.same(await h.names('/'), ['a', 'g']);
  t.same(await h.names('/a'), ['f']);
  t.same(await h.invariants(), []);
});

void t.test('a failed store write applies nothing of the batch, not even the applied index', async (t) => {
  const kv = new FlakyKv();
  const h = await Harness.open({}, kv);
  await h.ok({ type: 'mkdir', path: '/before' });
  const before = await dump(kv);
  kv.failNext = true;
  const entries = [
    h.entry(h.command({ type: 'mkdir', path: '/x' })),
    h.entry(h.command({ type: 'create', path: '/x/f' })),
  ];
  await t.rejects(h.sm.applyBatch(entries), /disk gone/);
  t.same(await dump(kv), before, 'the store is untouched');
  t.equal(h.sm.appliedIndex(), 1);
  await h.reopen();
  t.equal(h.sm.appliedIndex(), 1, 'a restart resumes from the last whole batch');
  const again = await h.sm.applyBatch(entries);
  t.ok(
    again.every((r) => r?.ok),
    'Raft redelivers the batch; it applies once',
  );
  t.same(await h.names('/x'), ['f']);
});

void t.test('entries must come in order, above the applied index', async (t) => {
  const h = await Harness.open();
  await h.ok({ type: 'mkdir', path: '/a' });
  const e = h.entry(h.command({ type: 'mkdir', path: '/b' }));
  await t.rejects(h.sm.applyBatch([{ ...e, index: 1 }]), AssertionError);
  await t.rejects(
    h.sm.applyBatch([
      { ...e, index: 5 },
      { ...e, index: 4 },
    ]),
    AssertionError,
  );
  t.same(await h.sm.applyBatch([]), []);
  t.equal(h.sm.appliedIndex(), 1);
});

void t.test('grouping entries into batches differently yields identical stores', async (t) => {
  const ops: Op[] = [
    { type: 'openSession' },
    { type: 'registerChunkserver', address: 'a', rack: 'r', capacityBytes: 10, usedBytes: 1 },
    { type: 'mkdir', path: '/a/b/c', parents: true },
    { type: 'create', path: '/a/b/f', lease: { holder: 'w', durationMs: 100 } },
    { type: 'addChunk', path: '/a/b/f', holder: 'w', replicas: [1] },
    { type: 'addChunk', path: '/a/b/f', holder: 'w', replicas: [1] },
    { type: 'rename', from: '/a/b', to: '/moved' },
    { type: 'create', path: '/moved/f', exclusive: false },
    { type: 'deleteRecursive', path: '/moved' },
    { type: 'mkdir', path: '/z' },
    { type: 'unlink', path: '/nope' },
  ];
  const stores: string[][] = [];
  for (const sizes of [[ops.length], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [3, 5, 3], [2, 9]]) {
    const kv = new MemoryKv();
    const h = await Harness.open({ reclaimKeysPerCommandMax: 1 }, kv);
    let at = 0;
    for (const n of sizes) {
      await h.runBatch(ops.slice(at, at + n).map((op, i) => h.command(op, { nowMs: 1000 + at + i })));
      at += n;
    }
    stores.push(await dump(kv));
  }
  for (const s of stores.slice(1)) t.same(s, stores[0]);
});

void t.test('queries wait for a batch in progress and never see half of it', async (t) => {
  const h = await Harness.open();
  const ops: Op[] = [];
  for (let i = 0; i < 50; i++) ops.push({ type: 'mkdir', path: `/d${i}` });
  const applying = h.runBatch(ops);
  const during = h.sm.readdir('/');
  await applying;
  const r = await during;
  t.equal(r.ok && r.value.entries.length, 50);
});

void t.test('open refuses a store with foreign data and no applied index', async (t) => {
  const kv = new MemoryKv();
  await kv.write({ puts: [{ key: new Uint8Array([1]), value: new Uint8Array([2]) }], deletes: [] });
  await t.rejects(MetadataStateMachine.open(kv), AssertionError);
  await t.rejects(MetadataStateMachine.open(new MemoryKv(), { limits: { sessionsMax: 0 } }), AssertionError);
});

void t.test('a store or a snapshot of another state format is refused with a typed error', async (t) => {
  // A format-1 store (before the session record carried its by-use index time): meta says format 1.
  const h = await Harness.open();
  await h.ok({ type: 'openSession' });
  const m = rec.decodeMeta((await h.kv.get(keys.metaKey))!);
  await h.kv.write({ puts: [{ key: keys.metaKey, value: rec.encodeMeta({ ...m, format: 1 }) }], deletes: [] });
  const error = await MetadataStateMachine.open(h.kv).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof StateFormatError, 'StateFormatError');
  const reads = new RegExp(`format 1, this rfs reads format ${rec.FORMAT_VERSION}`);
  t.match(error, { code: 'EFORMAT', found: 1, expected: rec.FORMAT_VERSION, message: reads });
  // The same state as a snapshot stream: refused before anything is installed.
  const target = await Harness.open();
  await t.rejects(target.sm.restoreFromChunks(encodeSnapshot(h.kv.snapshotIterator(), 1024)), {
    name: 'SnapshotFormatError',
    message: reads,
  });
  t.same(await target.invariants(), [], 'the target keeps its own state');
});

void t.test('every stored pair is in the documented key layout', async (t) => {
  const h = await Harness.open();
  const c = (await h.ok<{ clientId: number }>({ type: 'openSession' })).clientId;
  await h.chunkservers(1);
  await h.ok(
    { type: 'create', path: '/f', lease: { holder: 'w', durationMs: 10 } },
    { session: { clientId: c, seq: 1, ack: 0 } },
  );
  // A second unacknowledged result: the session record holds the first, a result key this one.
  await h.ok({ type: 'mkdir', path: '/g' }, { session: { clientId: c, seq: 2, ack: 0 } });
  await h.ok({ type: 'addChunk', path: '/f', holder: 'w', replicas: [1] });
  const tables = new Set<string>();
  for await (const p of h.kv.snapshotIterator() as AsyncIterable<KvPair>)
    tables.add(String.fromCharCode(p.key[0]!));
  t.same([...tables].sort(), ['c', 'd', 'i', 'l', 'm', 'p', 'r', 's', 'x', 'y']);
  t.same(await h.invariants(), []);
});

void t.test('concurrent applyBatch calls run one after the other, in call order', async (t) => {
  const h = await Harness.open();
  const first = [
    h.entry(h.command({ type: 'mkdir', path: '/a' })),
    h.entry(h.command({ type: 'mkdir', path: '/a/b' })),
  ];
  const second = [h.entry(h.command({ type: 'create', path: '/a/b/f' }))];
  const [r1, r2, snapshotted] = await Promise.all([
    h.sm.applyBatch(first),
    h.sm.applyBatch(second),
    h.sm.stat('/a/b/f'),
  ]);
  t.ok(r1.every((r) => r?.ok) && r2.every((r) => r?.ok));
  t.ok(snapshotted.ok, 'a query issued after both sees both');
  t.equal(h.sm.appliedIndex(), 3);
});
