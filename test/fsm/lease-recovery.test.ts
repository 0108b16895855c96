/** Lease recovery in the state machine: beginLeaseRecovery, recoverChunk, and what a writer sees meanwhile. */
import t from 'tap';
import { fsmTest } from './harness.ts';
import type { Harness } from './harness.ts';
import { RECOVERY_HOLDER } from '../../src/fsm/records.ts';

const W = 'writer-1';
const MiB = 1024 * 1024;
const CHUNK = 1 * MiB;

/** /f (1 MiB chunks) under W's 1 s lease, with `sealed` full chunks sealed and `unsealed` more allocated. */
async function partlyWritten(h: Harness, cs: number[], sealed: number, unsealed: number): Promise<number[]> {
  await h.ok({ type: 'create', path: '/f', chunkSizeBytes: CHUNK, lease: { holder: W, durationMs: 1000 } });
  const handles: number[] = [];
  for (let i = 0; i < sealed + unsealed; i++) {
    const { handle } = await h.ok<{ handle: number }>({ type: 'addChunk', path: '/f', holder: W, replicas: cs });
    handles.push(handle);
    if (i < sealed) await h.ok({ type: 'sealChunk', handle, holder: W, version: 1, lengthBytes: CHUNK, checksum: 7 });
  }
  return handles;
}

async function chunks(h: Harness): Promise<[number, boolean, number, readonly number[]][]> {
  const loc = await h.sm.chunkLocations('/f');
  if (!loc.ok) throw new Error(loc.code);
  return loc.value.chunks.map((c) => [c.handle, c.sealed, c.lengthBytes, c.replicas]);
}

fsmTest(t, 'beginLeaseRecovery: refused while the writer lease lives; then the recovery holder takes the file', async (t, h) => {
  const cs = await h.chunkservers(3);
  await partlyWritten(h, cs, 1, 1);
  const id = (await h.stat('/f')).id;
  t.equal(await h.code({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 }), 'ELEASE', 'the writer still holds it');
  h.nowMs += 1000;
  t.same(await h.ok({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 }), { completed: false, expiresMs: h.nowMs + 5000 });
  t.same((await h.stat('/f')).lease, { holder: RECOVERY_HOLDER, expiresMs: h.nowMs + 5000 });
  // Nobody can take it, nor can the old holder go on; a retried begin extends the recovery lease.
  t.equal(await h.code({ type: 'acquireLease', path: '/f', holder: 'other', durationMs: 1000 }), 'ELEASE');
  t.equal(await h.code({ type: 'acquireLease', path: '/f', holder: W, durationMs: 1000 }), 'ELEASE');
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: cs }), 'ELEASE');
  h.nowMs += 100;
  t.same(await h.ok({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 }), { completed: false, expiresMs: h.nowMs + 5000 });
  t.equal(await h.code({ type: 'beginLeaseRecovery', file: 9999, durationMs: 5000 }), 'ENOENT');
  t.equal(await h.code({ type: 'beginLeaseRecovery', file: 1, durationMs: 5000 }), 'EISDIR', 'the root');
  t.equal(await h.code({ type: 'beginLeaseRecovery', file: id, durationMs: 0 }), 'EINVAL');
  t.same(await h.invariants(), []);
});

fsmTest(t, 'recoverChunk seals the last chunk at the agreed length and completes the file', async (t, h) => {
  const cs = await h.chunkservers(3);
  const [c0, c1] = await partlyWritten(h, cs, 1, 1);
  const id = (await h.stat('/f')).id;
  t.equal(
    await h.code({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 10, checksum: 9, replicas: cs }),
    'ELEASE',
    'only under the recovery holder',
  );
  h.nowMs += 1000;
  await h.ok({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 });
  t.equal(await h.code({ type: 'recoverChunk', handle: c1!, version: 2, lengthBytes: 10, checksum: 9, replicas: cs }), 'ESTALE');
  t.equal(await h.code({ type: 'recoverChunk', handle: c0!, version: 1, lengthBytes: 10, checksum: 9, replicas: cs }), 'EINVAL', 'sealed');
  t.equal(await h.code({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: CHUNK + 1, checksum: 9, replicas: cs }), 'EINVAL');
  t.equal(await h.code({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 10, checksum: 9, replicas: [] }), 'EINVAL', 'no replica');
  t.equal(await h.code({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 10, checksum: 9, replicas: [99] }), 'ENOENT');
  t.same(await h.ok({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 10, checksum: 9, replicas: [cs[1]!] }), {
    completed: true,
    lengthBytes: CHUNK + 10,
    chunkCount: 2,
  });
  const f = await h.stat('/f');
  t.same([f.complete, f.lengthBytes, f.lease], [true, CHUNK + 10, null]);
  t.same(await chunks(h), [
    [c0, true, CHUNK, cs],
    [c1, true, 10, [cs[1]]],
  ]);
  // The file is a normal complete file again: appendable.
  await h.ok({ type: 'acquireLease', path: '/f', holder: 'other', durationMs: 1000 });
  t.same(await h.invariants(), []);
});

fsmTest(t, 'a short recovered chunk ends the file: every chunk after it goes; length 0 drops the chunk itself', async (t, h) => {
  const cs = await h.chunkservers(3);
  const [c0, c1, c2] = await partlyWritten(h, cs, 0, 3);
  const id = (await h.stat('/f')).id;
  h.nowMs += 1000;
  await h.ok({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 });
  // The first chunk is full: the next ones stay for their own recovery.
  t.same(await h.ok({ type: 'recoverChunk', handle: c0!, version: 1, lengthBytes: CHUNK, checksum: 1, replicas: cs }), {
    completed: false,
    lengthBytes: CHUNK,
    chunkCount: 3,
  });
  // The second is short: the third goes with it.
  t.same(await h.ok({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 5, checksum: 2, replicas: cs }), {
    completed: true,
    lengthBytes: CHUNK + 5,
    chunkCount: 2,
  });
  t.same((await chunks(h)).map((c) => c[0]), [c0, c1]);
  t.equal(await h.code({ type: 'recoverChunk', handle: c2!, version: 1, lengthBytes: 0, checksum: 0, replicas: [] }), 'ENOENT', 'gone');
  t.same(await h.invariants(), []);
});

fsmTest(t, 'recoverChunk at length 0 drops the chunk and what follows', async (t, h) => {
  const cs = await h.chunkservers(2);
  const [c0, c1, c2] = await partlyWritten(h, cs, 1, 2);
  const id = (await h.stat('/f')).id;
  h.nowMs += 1000;
  await h.ok({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 });
  t.equal(await h.code({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 0, checksum: 0, replicas: cs }), 'EINVAL', 'length 0 with replicas');
  t.same(await h.ok({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 0, checksum: 0, replicas: [] }), {
    completed: true,
    lengthBytes: CHUNK,
    chunkCount: 1,
  });
  t.same((await chunks(h)).map((c) => c[0]), [c0]);
  t.not(c2, undefined);
  t.same(await h.invariants(), []);
});

fsmTest(t, 'released or expired with nothing unsealed: completed at once', async (t, h) => {
  const cs = await h.chunkservers(1);
  await partlyWritten(h, cs, 1, 0);
  await h.ok({ type: 'releaseLease', path: '/f', holder: W });
  const f = await h.stat('/f');
  t.same([f.complete, f.lengthBytes, f.lease], [true, CHUNK, null], 'a release completes a file with nothing unsealed');
  await h.ok({ type: 'create', path: '/g', lease: { holder: W, durationMs: 1000 } });
  const g = (await h.stat('/g')).id;
  h.nowMs += 1000;
  t.same(await h.ok({ type: 'beginLeaseRecovery', file: g, durationMs: 5000 }), { completed: true, expiresMs: 0 });
  const after = await h.stat('/g');
  t.same([after.complete, after.lengthBytes, after.lease], [true, 0, null]);
});

fsmTest(t, 'a writer cannot take over chunks left unsealed by another; replacing the file ends the recovery', async (t, h) => {
  const cs = await h.chunkservers(1);
  const [, c1] = await partlyWritten(h, cs, 1, 1);
  await h.ok({ type: 'releaseLease', path: '/f', holder: W });
  t.equal((await h.stat('/f')).complete, false, 'an unsealed chunk waits for recovery');
  t.equal(await h.code({ type: 'acquireLease', path: '/f', holder: 'appender', durationMs: 1000 }), 'ELEASE');
  const id = (await h.stat('/f')).id;
  await h.ok({ type: 'beginLeaseRecovery', file: id, durationMs: 5000 });
  await h.ok({ type: 'create', path: '/f', exclusive: false, lease: { holder: 'other', durationMs: 1000 } });
  t.not((await h.stat('/f')).id, id, 'a new inode');
  t.equal(await h.code({ type: 'recoverChunk', handle: c1!, version: 1, lengthBytes: 3, checksum: 1, replicas: cs }), 'ENOENT');
  t.same(await h.invariants(), []);
});

fsmTest(t, 'the holder whose lease lapsed may take it back while its chunks wait (not yet recovered)', async (t, h) => {
  const cs = await h.chunkservers(1);
  await partlyWritten(h, cs, 0, 1);
  h.nowMs += 1500;
  await h.ok({ type: 'acquireLease', path: '/f', holder: W, durationMs: 1000 });
  t.equal((await h.stat('/f')).lease?.holder, W);
});
