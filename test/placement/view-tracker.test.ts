/**
 * ViewTracker (src/placement/view.ts): the chunk manager's view kept up to date by the state machine's store
 * writes must equal a whole read of the store after every batch, whatever the batch did: files written,
 * sealed, deleted (one by one and whole directories), renamed over, their replication changed, chunks
 * abandoned, leases taken and recovered, chunkservers registered and declared dead. Seeded random runs
 * over the real state machine; each failure names its seed and step.
 */
import t from 'tap';
import { encodeCommand } from '../../src/fsm/commands.ts';
import type { Op } from '../../src/fsm/commands.ts';
import { MemoryKv } from '../../src/fsm/kv.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import type { ApplyResult } from '../../src/fsm/state-machine.ts';
import { loadClusterView, ViewTracker } from '../../src/placement/view.ts';
import { EntryType } from '../../src/raft/types.ts';
import { Prng } from '../sim/prng.ts';
import { viewDifference } from '../sim/view-check.ts';

interface Fixture {
  readonly kv: MemoryKv;
  readonly fsm: MetadataStateMachine;
  readonly views: ViewTracker;
  apply(ops: readonly Op[]): Promise<ApplyResult[]>;
}

async function fixture(changesKeptMax?: number): Promise<Fixture> {
  const kv = new MemoryKv();
  const views = new ViewTracker(undefined, changesKeptMax);
  const fsm = await MetadataStateMachine.open(kv, { onStoreWrite: (write) => views.noteWrite(write) });
  let index = 0;
  let nowMs = 1_000_000;
  return {
    kv,
    fsm,
    views,
    apply: (ops) => {
      nowMs += 1_000;
      return fsm.applyBatch(ops.map((op) => ({ term: 1, index: ++index, type: EntryType.Normal, data: encodeCommand({ nowMs, op }) })));
    },
  };
}

async function differs(f: Fixture): Promise<string | null> {
  const kept = await f.views.load(f.kv, f.fsm.limits);
  return viewDifference(kept, await loadClusterView(f.kv, f.fsm.limits));
}

/** One random batch of operations against the files and servers made so far. */
function randomBatch(r: Prng, step: number, handles: number[]): Op[] {
  const ops: Op[] = [];
  const file = (): string => `/d${r.int(3)}/f${r.int(12)}`;
  for (let i = r.intBetween(1, 6); i > 0; i--) {
    const holder = 'w';
    switch (r.pick([0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 6, 7, 8, 9, 10, 11])) {
      case 0:
        ops.push({ type: 'registerChunkserver', address: `10.0.0.${r.int(6)}:7000`, rack: `r${r.int(3)}`, capacityBytes: 1e12, usedBytes: 0 });
        break;
      case 1:
        ops.push({ type: 'setChunkserverState', id: r.intBetween(1, 6), state: r.pick(['live', 'dead', 'decommissioning'] as const) });
        break;
      case 2:
        ops.push({ type: 'create', path: file(), replication: r.intBetween(1, 3), lease: { holder, durationMs: 60_000 } });
        break;
      case 3:
      case 4:
        ops.push({ type: 'addChunk', path: file(), holder, replicas: [1, 2, 3].slice(0, r.intBetween(1, 3)) });
        break;
      case 5: {
        const handle = handles.length > 0 ? r.pick(handles) : 1;
        ops.push({ type: 'sealChunk', handle, holder, version: 1, lengthBytes: r.intBetween(1, 1 << 20), checksum: r.int(1 << 30) });
        break;
      }
      case 6:
        ops.push({ type: 'completeFile', path: file(), holder });
        break;
      case 7:
        ops.push({ type: 'setattr', path: file(), replication: r.intBetween(1, 3) });
        break;
      case 8:
        ops.push(r.chance(0.8) ? { type: 'unlink', path: file() } : { type: 'deleteRecursive', path: `/d${r.int(3)}` });
        break;
      case 9:
        ops.push({ type: 'rename', from: file(), to: file() });
        break;
      case 10:
        ops.push(r.chance(0.5) ? { type: 'releaseLease', path: file(), holder } : { type: 'acquireLease', path: file(), holder, durationMs: 60_000 });
        break;
      default:
        ops.push({ type: 'mkdir', path: `/d${r.int(3)}`, parents: true });
    }
  }
  void step;
  return ops;
}

void t.test('the kept view equals a whole read after every batch (seeded random runs)', async (t) => {
  const seeds = 25;
  const steps = 120;
  let partial = 0;
  let chunks = 0;
  /** Chunks of deleted files (not reclaimed yet) in the views compared. */
  let deadSeen = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const r = Prng.fromSeed(seed);
    const f = await fixture();
    const handles: number[] = [];
    await f.apply([{ type: 'mkdir', path: '/d0', parents: true }]);
    for (let step = 0; step < steps; step++) {
      const results = await f.apply(randomBatch(r, step, handles));
      for (const res of results) {
        const v = res?.ok === true ? (res.value as { handle?: unknown }) : undefined;
        if (typeof v?.handle === 'number') handles.push(v.handle);
      }
      // Not after every batch: changes of several batches are read together too.
      if (r.chance(0.6)) {
        deadSeen += [...(await loadClusterView(f.kv, f.fsm.limits)).chunks.values()].filter((c) => !c.fileLive).length;
        const difference = await differs(f);
        if (difference !== null) {
          t.fail(`seed ${seed}, step ${step}: ${difference}`);
          return;
        }
      }
    }
    partial += f.views.partialLoads;
    chunks += (await loadClusterView(f.kv, f.fsm.limits)).chunks.size;
  }
  t.pass(`${seeds} seeds × ${steps} batches: the kept view matched a whole read every time`);
  t.ok(partial > seeds * steps * 0.3, `most loads read only what changed (${partial})`);
  t.ok(chunks > seeds * 5, `the runs ended with ${chunks} chunks`);
  t.ok(deadSeen > 0, `the views compared held ${deadSeen} chunks of deleted files`);
});

void t.test('a whole read when needed: the first load, a directory deleted, too many changes, a reset', async (t) => {
  const f = await fixture(50);
  await f.apply([
    { type: 'registerChunkserver', address: '10.0.0.1:7000', rack: 'r1', capacityBytes: 1e12, usedBytes: 0 },
    { type: 'mkdir', path: '/a/b', parents: true },
    { type: 'create', path: '/a/b/f', lease: { holder: 'w', durationMs: 60_000 } },
    { type: 'addChunk', path: '/a/b/f', holder: 'w', replicas: [1] },
  ]);
  t.equal(await differs(f), null);
  t.same([f.views.wholeLoads, f.views.partialLoads], [1, 0], 'the first load reads everything');
  await f.apply([{ type: 'setattr', path: '/a/b/f', replication: 1 }]);
  t.equal(await differs(f), null);
  t.same([f.views.wholeLoads, f.views.partialLoads], [1, 1], 'a file changed: only its chunks read');
  t.equal((await f.views.load(f.kv, f.fsm.limits)).chunks.get(1)?.replication, 1, 'with its new replication factor');
  await f.apply([{ type: 'deleteRecursive', path: '/a' }]);
  t.equal(await differs(f), null);
  t.equal(f.views.wholeLoads, 2, 'a directory left the tree: everything read again');
  t.equal((await f.views.load(f.kv, f.fsm.limits)).chunks.get(1)?.fileLive ?? false, false, 'its file\'s chunk is no longer live');
  await f.apply(Array.from({ length: 60 }, (_, i) => ({ type: 'create', path: `/g${i}` }))); // 61 inodes changed, past 50
  t.equal(await differs(f), null);
  t.equal(f.views.wholeLoads, 3, 'past changesKeptMax records: one whole read instead');
  f.views.reset();
  t.equal(await differs(f), null);
  t.equal(f.views.wholeLoads, 4, 'after a reset');
});

void t.test('a failed store write or an installed snapshot makes the next load whole', async (t) => {
  const f = await fixture();
  await f.apply([{ type: 'registerChunkserver', address: '10.0.0.1:7000', rack: 'r1', capacityBytes: 1e12, usedBytes: 0 }]);
  await f.views.load(f.kv, f.fsm.limits);
  f.views.noteWrite('unknown');
  await f.views.load(f.kv, f.fsm.limits);
  t.equal(f.views.wholeLoads, 2);
});
