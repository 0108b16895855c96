/** Snapshot streams: bounded chunks, exact round trips, re-chunking, and atomic refusal of bad streams. */
import fc from 'fast-check';
import t from 'tap';
import { SnapshotFormatError } from '../../src/fsm/errors.ts';
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { Kv } from '../../src/fsm/kv.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import * as keys from '../../src/fsm/keys.ts';
import { Harness } from './harness.ts';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function dump(kv: Kv): Promise<string[]> {
  return (await collect(kv.snapshotIterator())).map(
    (p) => `${Buffer.from(p.key).toString('hex')}=${Buffer.from(p.value).toString('hex')}`,
  );
}

/** A state with something in every table. */
async function populated(chunkBytes: number): Promise<Harness> {
  const h = await Harness.open({ snapshotChunkBytes: chunkBytes, reclaimKeysPerCommandMax: 1 });
  const client = (await h.ok<{ clientId: number }>({ type: 'openSession' })).clientId;
  const cs = await h.chunkservers(3);
  for (let i = 0; i < 30; i++)
    await h.ok({ type: 'mkdir', path: `/dir${i}/sub`, parents: true, owner: 'x'.repeat(i * 3) });
  await h.ok(
    { type: 'create', path: '/dir0/f', lease: { holder: 'w', durationMs: 600_000 } },
    { session: { clientId: client, seq: 1, ack: 0 } },
  );
  for (let i = 0; i < 5; i++) await h.ok({ type: 'addChunk', path: '/dir0/f', holder: 'w', replicas: cs });
  await h.ok({ type: 'deleteRecursive', path: '/dir1' }); // leaves garbage queued (1 key per command)
  return h;
}

void t.test('a snapshot round trip reproduces the store exactly', async (t) => {
  const h = await populated(512);
  const chunks = await collect(h.sm.snapshotChunks());
  t.ok(chunks.length > 5, `${chunks.length} chunks`);
  for (const c of chunks) t.ok(c.length <= 512, `chunk of ${c.length} bytes`);
  const target = await Harness.open(h.limits); // limits are part of the protocol: same on every replica
  const index = await target.sm.restoreFromChunks(chunks);
  t.equal(index, h.sm.appliedIndex());
  t.equal(target.sm.appliedIndex(), h.sm.appliedIndex());
  t.same(await dump(target.kv), await dump(h.kv));
  t.same(await target.names('/dir0'), ['f', 'sub']);
  t.same(await target.invariants(), []);
  // The restored state machine goes on applying where the snapshot ended.
  target.index = index + 1;
  await target.ok({ type: 'mkdir', path: '/after' });
  await h.ok({ type: 'mkdir', path: '/after' });
  t.same(await dump(target.kv), await dump(h.kv), 'and stays identical');
});

void t.test('a snapshot is the state at the call, whatever is applied afterwards', async (t) => {
  const h = await populated(4096);
  const expected = await dump(h.kv);
  const stream = h.sm.snapshotChunks();
  await h.ok({ type: 'mkdir', path: '/late' });
  const target = await Harness.open();
  await target.sm.restoreFromChunks(stream);
  t.same(await dump(target.kv), expected);
});

void t.test('chunks may be concatenated and re-split anywhere', async (t) => {
  const h = await populated(300);
  const whole = Buffer.concat(await collect(h.sm.snapshotChunks()));
  const expected = await dump(h.kv);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
      async (sizes) => {
        const pieces: Uint8Array[] = [];
        for (let at = 0, i = 0; at < whole.length; i++) {
          const n = sizes[i % sizes.length]!;
          pieces.push(whole.subarray(at, at + n));
          at += n;
        }
        const kv = new MemoryKv();
        const sm = await MetadataStateMachine.open(kv);
        await sm.restoreFromChunks(pieces);
        return JSON.stringify(await dump(kv)) === JSON.stringify(expected);
      },
    ),
    { numRuns: 30, seed: 11 },
  );
  t.pass('30 random re-chunkings');
});

void t.test('a truncated, corrupted or foreign stream is refused and the old state kept', async (t) => {
  const h = await populated(400);
  const chunks = await collect(h.sm.snapshotChunks());
  const whole = Buffer.concat(chunks);
  const target = await Harness.open();
  await target.ok({ type: 'mkdir', path: '/mine' });
  const before = await dump(target.kv);
  const bad: [string, Uint8Array[]][] = [
    ['empty', []],
    ['header only', [chunks[0]!]],
    ['no trailer', chunks.slice(0, -1)],
    ['a middle chunk lost', [...chunks.slice(0, 3), ...chunks.slice(4)]],
    ['cut mid-frame', [whole.subarray(0, whole.length - 3)]],
    ['extra bytes', [whole, new Uint8Array([0])]],
    ['a flipped byte', [Buffer.from(whole).fill(0x41, 200, 201)]],
    ['garbage', [new Uint8Array([0, 0, 0, 3, 1, 2, 3])]],
    ['a huge frame length', [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0])]],
    ['twice', [...chunks, ...chunks]],
  ];
  for (const [name, stream] of bad) {
    await t.rejects(target.sm.restoreFromChunks(stream), SnapshotFormatError, name);
    t.same(await dump(target.kv), before, `${name}: old state kept`);
  }
  t.equal(target.sm.appliedIndex(), 1);
  t.same(await target.names('/'), ['mine']);
});

void t.test('an empty state round-trips too', async (t) => {
  const a = await Harness.open();
  const b = await Harness.open();
  await b.ok({ type: 'mkdir', path: '/x' });
  t.equal(await b.sm.restoreFromChunks(a.sm.snapshotChunks()), 0);
  t.same(await dump(b.kv), await dump(a.kv));
});

void t.test('closing a snapshot stream early releases the store iterator, even before the encoder reached it', async (t) => {
  for (const framesRead of [0, 1, 3]) {
    const kv = new MemoryKv();
    let released = 0;
    const original = kv.snapshotIterator.bind(kv);
    kv.snapshotIterator = () => {
      const inner = original();
      async function* tracked(): AsyncGenerator<{ key: Uint8Array; value: Uint8Array }> {
        try {
          yield* inner;
        } finally {
          released++;
        }
      }
      return tracked();
    };
    const sm = await MetadataStateMachine.open(kv, { limits: { snapshotChunkBytes: 64 } });
    const stream = sm.snapshotChunks();
    for (let i = 0; i < framesRead; i++) await stream.next();
    await stream.return?.(undefined);
    t.equal(released, 1, `after ${framesRead} frames read, the store iterator was released`);
  }
});

void t.test('restoreFromChunks: beforeInstall sees the verified applied index and may refuse, keeping the old state', async (t) => {
  const a = await populated(256);
  const b = await Harness.open();
  const before = await dump(b.kv);
  const seen: number[] = [];
  await t.rejects(
    b.sm.restoreFromChunks(a.sm.snapshotChunks(), {
      beforeInstall: (applied) => {
        seen.push(applied);
        throw new Error('refused');
      },
    }),
    /refused/,
  );
  t.same(seen, [a.sm.appliedIndex()]);
  t.same(await dump(b.kv), before, 'the old state is kept');
  t.equal(await b.sm.restoreFromChunks(a.sm.snapshotChunks(), { beforeInstall: () => undefined }), a.sm.appliedIndex());
  t.same(await dump(b.kv), await dump(a.kv));
});

void t.test('the applied term is stored with the applied index: across a restart and a snapshot round trip', async (t) => {
  const h = await populated(4096);
  t.equal(h.sm.appliedTerm(), 1, 'the harness writes entries of term 1');
  const entry = { ...h.entry(h.command({ type: 'mkdir', path: '/term7' })), term: 7 };
  await h.sm.applyBatch([entry]);
  t.equal(h.sm.appliedTerm(), 7);
  await h.reopen();
  t.equal(h.sm.appliedIndex(), entry.index);
  t.equal(h.sm.appliedTerm(), 7, 'read back at open');
  const target = await Harness.open(h.limits);
  await target.sm.restoreFromChunks(await collect(h.sm.snapshotChunks()));
  t.equal(target.sm.appliedTerm(), 7, 'carried by the snapshot');
  // A store written before terms were recorded: the index alone, the term unknown (0).
  const legacy = await Harness.open(h.limits);
  await legacy.kv.write({ puts: [{ key: keys.appliedKey, value: keys.u64Bytes(5) }], deletes: [] });
  await legacy.reopen();
  t.equal(legacy.sm.appliedIndex(), 5);
  t.equal(legacy.sm.appliedTerm(), 0);
  // Such a store's snapshot (an 8-byte applied value) still installs.
  const fromLegacy = await Harness.open(h.limits);
  t.equal(await fromLegacy.sm.restoreFromChunks(await collect(legacy.sm.snapshotChunks())), 5);
  t.equal(fromLegacy.sm.appliedTerm(), 0);
});
