/** Writer leases, chunks and placement versions, completion, and the chunkserver registry. */
import t from 'tap';
import { fsmTest } from './harness.ts';
import type { Harness } from './harness.ts';

const W = 'writer-1';

async function writable(h: Harness, path = '/f', durationMs = 10_000): Promise<void> {
  await h.ok({ type: 'create', path, lease: { holder: W, durationMs } });
}

fsmTest(t, 'create with a lease; the lease shows in stat', async (t, h) => {
  await writable(h);
  const f = await h.stat('/f');
  t.same(f.lease, { holder: W, expiresMs: h.nowMs + 10_000 });
  t.equal(f.complete, false);
});

fsmTest(t, 'a live lease blocks other holders; an expired one can be taken over', async (t, h) => {
  await writable(h, '/f', 1000);
  t.equal(await h.code({ type: 'acquireLease', path: '/f', holder: 'other', durationMs: 1000 }), 'ELEASE');
  t.same(
    await h.ok({ type: 'acquireLease', path: '/f', holder: W, durationMs: 2000 }),
    { expiresMs: h.nowMs + 2000, chunkCount: 0, chunkSizeBytes: 64 << 20, compression: 'none' },
    're-acquire by the holder (with what an appending writer needs: chunk count, size, compression)',
  );
  h.nowMs += 2000; // expired exactly now
  t.same(await h.ok({ type: 'acquireLease', path: '/f', holder: 'other', durationMs: 500 }), {
    expiresMs: h.nowMs + 500,
    chunkCount: 0,
    chunkSizeBytes: 64 << 20,
    compression: 'none',
  });
  t.equal((await h.stat('/f')).lease?.holder, 'other');
  t.equal(
    await h.code({ type: 'renewLease', path: '/f', holder: W, durationMs: 500 }),
    'ELEASE',
    'the old holder lost it',
  );
});

fsmTest(t, 'renew needs the same holder and a live lease; release needs the holder', async (t, h) => {
  await writable(h, '/f', 1000);
  h.nowMs += 500;
  t.same(await h.ok({ type: 'renewLease', path: '/f', holder: W, durationMs: 1000 }), {
    expiresMs: h.nowMs + 1000,
  });
  t.equal(await h.code({ type: 'renewLease', path: '/f', holder: 'x', durationMs: 1000 }), 'ELEASE');
  h.nowMs += 1000;
  t.equal(await h.code({ type: 'renewLease', path: '/f', holder: W, durationMs: 1000 }), 'ELEASE', 'expired');
  t.equal(await h.code({ type: 'releaseLease', path: '/f', holder: 'x' }), 'ELEASE');
  await h.ok({ type: 'releaseLease', path: '/f', holder: W });
  t.equal((await h.stat('/f')).lease, null);
  t.equal(await h.code({ type: 'releaseLease', path: '/f', holder: W }), 'ELEASE', 'nothing to release');
  t.equal(
    await h.code({ type: 'renewLease', path: '/f', holder: W, durationMs: 1 }),
    'ELEASE',
    'nothing to renew',
  );
});

fsmTest(t, 'lease errors: EISDIR, ENOENT, EINVAL', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d' });
  await h.ok({ type: 'create', path: '/f' });
  t.equal(await h.code({ type: 'acquireLease', path: '/d', holder: W, durationMs: 1 }), 'EISDIR');
  t.equal(await h.code({ type: 'acquireLease', path: '/nope', holder: W, durationMs: 1 }), 'ENOENT');
  t.equal(await h.code({ type: 'acquireLease', path: '/f', holder: W, durationMs: 0 }), 'EINVAL');
  t.equal(
    await h.code({ type: 'acquireLease', path: '/f', holder: W, durationMs: 11 * 60 * 1000 }),
    'EINVAL',
  );
  t.equal(await h.code({ type: 'acquireLease', path: '/f', holder: '', durationMs: 1 }), 'EINVAL');
  t.equal(
    await h.code({ type: 'acquireLease', path: '/f', holder: 'h'.repeat(256), durationMs: 1 }),
    'EINVAL',
  );
});

fsmTest(t, 'lease commands do not change the generation', async (t, h) => {
  await h.ok({ type: 'create', path: '/f' });
  const g = (await h.stat('/f')).generation;
  await h.ok({ type: 'acquireLease', path: '/f', holder: W, durationMs: 100 });
  await h.ok({ type: 'renewLease', path: '/f', holder: W, durationMs: 100 });
  await h.ok({ type: 'releaseLease', path: '/f', holder: W });
  t.equal((await h.stat('/f')).generation, g);
});

fsmTest(t, 'truncating create of a file leased to someone else: ELEASE', async (t, h) => {
  await writable(h, '/f', 1000);
  t.equal(await h.code({ type: 'create', path: '/f', exclusive: false }), 'ELEASE');
  t.equal(
    await h.code({ type: 'create', path: '/f', exclusive: false, lease: { holder: 'y', durationMs: 5 } }),
    'ELEASE',
  );
  await h.ok({ type: 'create', path: '/f', exclusive: false, lease: { holder: W, durationMs: 5 } });
  h.nowMs += 10;
  await h.ok({ type: 'create', path: '/f', exclusive: false }, {});
});

fsmTest(t, 'add, seal and complete: the chunk list, lengths and the sealed length', async (t, h) => {
  const cs = await h.chunkservers(3);
  await writable(h);
  const c0 = await h.ok<{ handle: number; index: number; version: number }>({
    type: 'addChunk',
    path: '/f',
    holder: W,
    replicas: cs,
  });
  const c1 = await h.ok<{ handle: number; index: number; version: number }>({
    type: 'addChunk',
    path: '/f',
    holder: W,
    replicas: [cs[2]!, cs[0]!],
  });
  t.same([c0.index, c0.version, c1.index, c1.version], [0, 1, 1, 1]);
  t.not(c0.handle, c1.handle);
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W }), 'EINVAL', 'unsealed chunks');
  t.same(
    await h.ok({
      type: 'sealChunk',
      handle: c0.handle,
      holder: W,
      version: 1,
      lengthBytes: 64 * 1024 * 1024,
      checksum: 0xdeadbeef,
    }),
    { fileLengthBytes: 64 * 1024 * 1024 },
  );
  await h.ok({ type: 'sealChunk', handle: c1.handle, holder: W, version: 1, lengthBytes: 10, checksum: 1 });
  const done = await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/f', holder: W });
  t.equal(done.lengthBytes, 64 * 1024 * 1024 + 10);
  const f = await h.stat('/f');
  t.same(
    [f.complete, f.lengthBytes, f.chunkCount, f.lease],
    [true, 64 * 1024 * 1024 + 10, 2, null],
    'complete releases the lease',
  );
  const loc = await h.sm.chunkLocations('/f');
  t.ok(loc.ok);
  if (loc.ok) {
    t.same(
      loc.value.chunks.map((c) => [c.index, c.replicas, c.sealed, c.lengthBytes, c.checksum]),
      [
        [0, cs, true, 64 * 1024 * 1024, 0xdeadbeef],
        [1, [cs[2], cs[0]], true, 10, 1],
      ],
    );
    t.equal(loc.value.nextIndex, null);
  }
  const page = await h.sm.chunkLocations('/f', { limit: 1 });
  t.same(page.ok && [page.value.chunks.length, page.value.nextIndex], [1, 1]);
  const second = await h.sm.chunkLocations('/f', { fromIndex: 1 });
  t.same(second.ok && second.value.chunks.map((c) => c.handle), [c1.handle]);
});

fsmTest(t, 'placement versions: bumped by every new pipeline; old versions get ESTALE', async (t, h) => {
  const cs = await h.chunkservers(4);
  await writable(h);
  const { handle } = await h.ok<{ handle: number }>({
    type: 'addChunk',
    path: '/f',
    holder: W,
    replicas: cs.slice(0, 3),
  });
  t.same(
    await h.ok({
      type: 'bumpChunkVersion',
      handle,
      holder: W,
      version: 1,
      replicas: [cs[0]!, cs[1]!, cs[3]!],
    }),
    { version: 2 },
  );
  t.same(
    await h.ok({ type: 'bumpChunkVersion', handle, holder: W, version: 2, replicas: [cs[0]!, cs[3]!] }),
    { version: 3 },
  );
  t.equal(
    await h.code({ type: 'bumpChunkVersion', handle, holder: W, version: 2, replicas: [cs[0]!] }),
    'ESTALE',
  );
  t.equal(
    await h.code({ type: 'sealChunk', handle, holder: W, version: 1, lengthBytes: 1, checksum: 1 }),
    'ESTALE',
  );
  t.equal(await h.code({ type: 'setChunkReplicas', handle, version: 2, replicas: [cs[1]!] }), 'ESTALE');
  const info = await h.sm.chunk(handle);
  t.same(info.ok && [info.value.version, info.value.replicas], [3, [cs[0], cs[3]]]);
  await h.ok({ type: 'sealChunk', handle, holder: W, version: 3, lengthBytes: 100, checksum: 5 });
  t.equal(
    await h.code({ type: 'bumpChunkVersion', handle, holder: W, version: 3, replicas: [cs[0]!] }),
    'EINVAL',
    'sealed',
  );
  t.equal(
    await h.code({ type: 'sealChunk', handle, holder: W, version: 3, lengthBytes: 100, checksum: 5 }),
    'EINVAL',
    'sealed twice',
  );
  // Re-replication by the leader: no lease needed, version unchanged.
  t.same(await h.ok({ type: 'setChunkReplicas', handle, version: 3, replicas: [cs[0]!, cs[1]!, cs[2]!] }), {
    version: 3,
  });
});

fsmTest(t, 'abandonChunk drops the last unsealed chunk allocated ahead, and nothing else', async (t, h) => {
  const cs = await h.chunkservers(3);
  await writable(h);
  const add = () => h.ok<{ handle: number; index: number }>({ type: 'addChunk', path: '/f', holder: W, replicas: cs });
  const c0 = await add();
  const c1 = await add();
  t.equal(await h.code({ type: 'abandonChunk', path: '/f', holder: W, handle: c0.handle }), 'EINVAL', 'not the last chunk');
  t.equal(await h.code({ type: 'abandonChunk', path: '/f', holder: 'intruder', handle: c1.handle }), 'ELEASE', 'the holder only');
  t.equal(await h.code({ type: 'abandonChunk', path: '/f', holder: W, handle: 999_999 }), 'ENOENT', 'no such chunk');
  await h.ok({ type: 'create', path: '/g', lease: { holder: W, durationMs: 10_000 } });
  t.equal(await h.code({ type: 'abandonChunk', path: '/g', holder: W, handle: c1.handle }), 'EINVAL', "another file's chunk");
  const before = (await h.stat('/f')).generation;
  await h.ok({ type: 'sealChunk', handle: c0.handle, holder: W, version: 1, lengthBytes: 100, checksum: 7 });
  t.same(await h.ok({ type: 'abandonChunk', path: '/f', holder: W, handle: c1.handle }), { chunkCount: 1 });
  const f = await h.stat('/f');
  t.same([f.chunkCount, f.lengthBytes], [1, 100], 'the sealed chunk stays, the abandoned one is gone');
  t.ok(f.generation > before, 'the file changed');
  const loc = await h.sm.chunkLocations('/f');
  t.same(loc.ok && loc.value.chunks.map((c) => c.handle), [c0.handle]);
  t.equal(await h.code({ type: 'abandonChunk', path: '/f', holder: W, handle: c1.handle }), 'ENOENT', 'once only');
  t.equal(await h.code({ type: 'abandonChunk', path: '/f', holder: W, handle: c0.handle }), 'EINVAL', 'a sealed chunk stays');
  // The file completes with what is left; a chunk added after takes the freed index.
  const c2 = await add();
  t.equal(c2.index, 1);
  t.not(c2.handle, c1.handle, 'handles are never reused');
  await h.ok({ type: 'abandonChunk', path: '/f', holder: W, handle: c2.handle });
  t.same(await h.ok({ type: 'completeFile', path: '/f', holder: W }), { lengthBytes: 100, generation: (await h.stat('/f')).generation });
});

fsmTest(t, 'addChunk with the index the writer expects: a retry answers the first allocation; other indexes are EINVAL', async (t, h) => {
  const cs = await h.chunkservers(3);
  await writable(h);
  const add = (index: number) => h.ok<{ handle: number; index: number; version: number }>({ type: 'addChunk', path: '/f', holder: W, replicas: cs, index });
  const c0 = await add(0);
  t.same([c0.index, c0.version], [0, 1]);
  const generation = (await h.stat('/f')).generation;
  // The answer was lost; the writer asks again for index 0 (outside its session): the same chunk, nothing new.
  t.same(await add(0), c0, 'a retry gets the chunk it was given');
  t.same([(await h.stat('/f')).chunkCount, (await h.stat('/f')).generation], [1, generation], 'no second chunk, no change');
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: cs, index: 2 }), 'EINVAL', 'an index past the next');
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: 'intruder', replicas: cs, index: 0 }), 'ELEASE', 'the holder only');
  // Once written through (a new pipeline bumped its version) or sealed, index 0 is taken for good.
  await h.ok({ type: 'bumpChunkVersion', handle: c0.handle, holder: W, version: 1, replicas: cs });
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: cs, index: 0 }), 'EINVAL', 'a chunk at version 2 is not a lost allocation');
  await h.ok({ type: 'sealChunk', handle: c0.handle, holder: W, version: 2, lengthBytes: 10, checksum: 1 });
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: cs, index: 0 }), 'EINVAL', 'a sealed chunk');
  const c1 = await add(1);
  t.same([c1.index, c1.version], [1, 1]);
  t.not(c1.handle, c0.handle);
  t.same(await add(1), c1);
  // Without an index the chunk goes at the end, as before.
  const c2 = await h.ok<{ index: number }>({ type: 'addChunk', path: '/f', holder: W, replicas: cs });
  t.equal(c2.index, 2);
});

fsmTest(t, 'completeFile with the chunks written drops one unsealed chunk past them, and refuses other counts', async (t, h) => {
  const cs = await h.chunkservers(3);
  await writable(h);
  const add = (index: number) => h.ok<{ handle: number }>({ type: 'addChunk', path: '/f', holder: W, replicas: cs, index });
  const c0 = await add(0);
  const c1 = await add(1); // allocated ahead, never written to (or its answer was lost)
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 1 }), 'EINVAL', 'the written chunk is not sealed yet');
  t.equal((await h.stat('/f')).chunkCount, 2, 'the refused completion dropped nothing (no half-applied command)');
  await h.ok({ type: 'sealChunk', handle: c0.handle, holder: W, version: 1, lengthBytes: 100, checksum: 7 });
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W }), 'EINVAL', 'without a count every chunk must be sealed');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 0 }), 'EINVAL', 'two chunks past the count');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 3 }), 'EINVAL', 'more than the file has');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: 'intruder', chunkCount: 1 }), 'ELEASE');
  t.equal((await h.stat('/f')).chunkCount, 2, 'nothing applied by the refusals');
  const done = await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/f', holder: W, chunkCount: 1 });
  t.equal(done.lengthBytes, 100);
  const f = await h.stat('/f');
  t.same([f.chunkCount, f.complete, f.lease], [1, true, null]);
  const loc = await h.sm.chunkLocations('/f');
  t.same(loc.ok && loc.value.chunks.map((c) => c.handle), [c0.handle], 'the unsealed chunk left the file');
  t.equal(await h.code({ type: 'sealChunk', handle: c1.handle, holder: W, version: 1, lengthBytes: 1, checksum: 1 }), 'ENOENT', 'its placement is gone');
  // A sealed chunk past the count is never dropped.
  await h.ok({ type: 'create', path: '/g', lease: { holder: W, durationMs: 10_000 } });
  const g0 = await h.ok<{ handle: number }>({ type: 'addChunk', path: '/g', holder: W, replicas: cs, index: 0 });
  await h.ok({ type: 'sealChunk', handle: g0.handle, holder: W, version: 1, lengthBytes: 5, checksum: 1 });
  t.equal(await h.code({ type: 'completeFile', path: '/g', holder: W, chunkCount: 0 }), 'EINVAL', 'a sealed chunk stays');
  t.equal((await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/g', holder: W, chunkCount: 1 })).lengthBytes, 5);
  // An appending writer's lease says where its chunks start.
  const lease = await h.ok<{ chunkCount: number }>({ type: 'acquireLease', path: '/f', holder: 'appender', durationMs: 1000 });
  t.equal(lease.chunkCount, 1);
  t.equal((await h.ok<{ index: number }>({ type: 'addChunk', path: '/f', holder: 'appender', replicas: cs, index: 1 })).index, 1);
});

fsmTest(t, 'create with a lease returns what the writer needs: chunk size, compression, the lease expiry', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d', chunkSizeBytes: 1 << 20, compression: 'lz4' });
  const created = await h.ok<Record<string, unknown>>({ type: 'create', path: '/d/f', lease: { holder: W, durationMs: 5_000 } });
  t.same(
    { ...created, id: 0, generation: 0 },
    { id: 0, generation: 0, chunkSizeBytes: 1 << 20, compression: 'lz4', leaseExpiresMs: h.nowMs + 5_000 },
    'inherited from the directory, and the lease granted',
  );
  const f = await h.stat('/d/f');
  t.same([created['id'], created['generation']], [f.id, f.generation]);
  // A truncating create with a lease replaces the file: the new one has no chunks, so the writer starts at 0.
  const replaced = await h.ok<Record<string, unknown>>({ type: 'create', path: '/d/f', exclusive: false, chunkSizeBytes: 2 << 20, lease: { holder: W, durationMs: 1_000 } });
  t.same([replaced['chunkSizeBytes'], replaced['compression'], replaced['leaseExpiresMs']], [2 << 20, 'lz4', h.nowMs + 1_000]);
  t.equal((await h.stat('/d/f')).chunkCount, 0);
  // Without a lease the reply is the inode alone (what the benchmark's and Submit's creates carry).
  t.same(Object.keys(await h.ok({ type: 'create', path: '/g' })).sort(), ['generation', 'id']);
});

fsmTest(t, 'create with firstChunkCandidates adds chunk 0 on the first replication of them, or creates the file without it', async (t, h) => {
  const cs = await h.chunkservers(5);
  await h.ok({ type: 'mkdir', path: '/d', replication: 2 });
  const lease = { holder: W, durationMs: 5_000 };
  type Created = { id: number; firstChunk?: { handle: number; index: number; version: number; replicas: number[] } };
  const placed = async (path: string) => {
    const loc = await h.sm.chunkLocations(path);
    return loc.ok ? loc.value.chunks.map((c) => ({ index: c.index, version: c.version, replicas: c.replicas, sealed: c.sealed })) : loc.code;
  };
  // The file's factor (2, from the directory) picks the first two candidates, in the leader's order.
  const a = await h.ok<Created>({ type: 'create', path: '/d/a', lease, firstChunkCandidates: [cs[4]!, cs[2]!, cs[0]!] });
  t.same(a.firstChunk && { index: a.firstChunk.index, version: a.firstChunk.version, replicas: a.firstChunk.replicas }, { index: 0, version: 1, replicas: [cs[4], cs[2]] }, 'answered with its replicas');
  t.same(await placed('/d/a'), [{ index: 0, version: 1, replicas: [cs[4], cs[2]], sealed: false }]);
  const fa = await h.stat('/d/a');
  t.same([fa.chunkCount, fa.complete, fa.lengthBytes, fa.lease?.holder], [1, false, 0, W]);
  // The writer writes to it and closes in one command, as with a chunk from addChunk.
  const done = await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/d/a', holder: W, chunkCount: 1, lastChunk: { handle: a.firstChunk!.handle, version: 1, lengthBytes: 7, checksum: 9 } });
  t.equal(done.lengthBytes, 7);
  // Unused (a file closed empty): CompleteFile with chunk count 0 drops it.
  const e = await h.ok<Created>({ type: 'create', path: '/d/empty', lease, firstChunkCandidates: cs.slice(0, 2) });
  t.ok(e.firstChunk);
  t.equal((await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/d/empty', holder: W, chunkCount: 0 })).lengthBytes, 0);
  t.same([(await h.stat('/d/empty')).chunkCount, await placed('/d/empty')], [0, []]);
  // Fewer candidates than the factor, or an unregistered one among those taken: created without the chunk.
  for (const [name, candidates] of [['few', [cs[0]!]], ['unknown', [cs[0]!, 999]]] as const) {
    const c = await h.ok<Created>({ type: 'create', path: `/d/${name}`, lease, firstChunkCandidates: [...candidates] });
    t.equal(c.firstChunk, undefined, `${name}: no first chunk`);
    const f = await h.stat(`/d/${name}`);
    t.same([f.chunkCount, f.lease?.holder], [0, W], `${name}: the file and its lease all the same`);
  }
  // An unregistered candidate past the factor is not looked at.
  t.ok((await h.ok<Created>({ type: 'create', path: '/d/b', lease, firstChunkCandidates: [cs[1]!, cs[3]!, 999] })).firstChunk);
  // The factor of the request, and of the replaced file on a truncating create.
  const r = await h.ok<Created>({ type: 'create', path: '/d/r', replication: 3, lease, firstChunkCandidates: cs });
  t.same(await placed('/d/r'), [{ index: 0, version: 1, replicas: cs.slice(0, 3), sealed: false }]);
  await h.ok({ type: 'completeFile', path: '/d/r', holder: W, chunkCount: 0 });
  const again = await h.ok<Created>({ type: 'create', path: '/d/r', exclusive: false, lease, firstChunkCandidates: [cs[3]!, cs[2]!, cs[1]!, cs[0]!] });
  t.not(again.id, r.id, 'a new inode');
  t.same(await placed('/d/r'), [{ index: 0, version: 1, replicas: [cs[3], cs[2], cs[1]], sealed: false }], "the replaced file's factor, 3");
  // Malformed lists, and a first chunk without the lease: EINVAL, and nothing created.
  for (const [what, op] of [
    ['empty', { firstChunkCandidates: [] as number[], lease }],
    ['duplicates', { firstChunkCandidates: [cs[0]!, cs[0]!], lease }],
    ['id 0', { firstChunkCandidates: [0, cs[0]!], lease }],
    ['too long', { firstChunkCandidates: Array.from({ length: 17 }, (_, i) => i + 1), lease }],
    ['no lease', { firstChunkCandidates: cs }],
  ] as const) {
    t.equal(await h.code({ type: 'create', path: '/d/bad', ...op }), 'EINVAL', what);
    t.equal(await h.exists('/d/bad'), false, `${what}: nothing created`);
  }
  t.same(await h.invariants(), []);
});

fsmTest(t, 'completeFile with lastChunk seals it and completes the file in one command, both or neither', async (t, h) => {
  const cs = await h.chunkservers(3);
  await writable(h);
  const add = (index: number) => h.ok<{ handle: number }>({ type: 'addChunk', path: '/f', holder: W, replicas: cs, index });
  const c0 = await add(0);
  await h.ok({ type: 'sealChunk', handle: c0.handle, holder: W, version: 1, lengthBytes: 100, checksum: 7 });
  const c1 = await add(1);
  const c2 = await add(2); // allocated ahead, never written to
  const seal1 = { handle: c1.handle, version: 1, lengthBytes: 40, checksum: 9 };
  const unchanged = async (what: string): Promise<void> => {
    const f = await h.stat('/f');
    t.same([f.chunkCount, f.lengthBytes, f.complete, f.lease?.holder], [3, 100, false, W], `${what}: nothing applied`);
    const loc = await h.sm.chunkLocations('/f');
    t.same(loc.ok && loc.value.chunks.map((c) => c.sealed), [true, false, false], `${what}: c1 still unsealed`);
  };
  // Refusals of every kind leave both the chunk and the file as they were.
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: { ...seal1, version: 2 } }), 'ESTALE', 'a stale version');
  await unchanged('stale');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: { ...seal1, lengthBytes: (64 << 20) + 1 } }), 'EINVAL', 'longer than a chunk');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: { ...seal1, checksum: 2 ** 32 } }), 'EINVAL', 'not a CRC32C');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: { ...seal1, handle: c2.handle } }), 'EINVAL', 'the chunk allocated ahead is not a written one');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: { ...seal1, handle: c0.handle } }), 'EINVAL', 'sealed already');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: { ...seal1, handle: 999_999 } }), 'EINVAL', 'no such chunk');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: 'intruder', chunkCount: 2, lastChunk: seal1 }), 'ELEASE');
  await unchanged('refused');
  // The seal passes its checks but the completion does not (a count the file cannot have): the seal is undone too.
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 1, lastChunk: { ...seal1, handle: c0.handle } }), 'EINVAL');
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: W, chunkCount: 3, lastChunk: seal1 }), 'EINVAL', 'sealed, but c2 is not: no completion');
  await unchanged('completion refused');
  // Accepted: sealed, the chunk ahead dropped, the file complete and its lease released, in one command.
  const done = await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/f', holder: W, chunkCount: 2, lastChunk: seal1 });
  t.equal(done.lengthBytes, 140);
  const f = await h.stat('/f');
  t.same([f.chunkCount, f.lengthBytes, f.complete, f.lease], [2, 140, true, null]);
  const after = await h.sm.chunkLocations('/f');
  t.same(after.ok && after.value.chunks.map((c) => [c.handle, c.sealed, c.lengthBytes]), [[c0.handle, true, 100], [c1.handle, true, 40]]);
  // Without chunkCount the last chunk must be the file's last one and every other chunk sealed.
  await h.ok({ type: 'create', path: '/g', lease: { holder: W, durationMs: 10_000 } });
  const g0 = await h.ok<{ handle: number }>({ type: 'addChunk', path: '/g', holder: W, replicas: cs, index: 0 });
  t.equal((await h.ok<{ lengthBytes: number }>({ type: 'completeFile', path: '/g', holder: W, lastChunk: { handle: g0.handle, version: 1, lengthBytes: 3, checksum: 1 } })).lengthBytes, 3);
  // Another file's chunk is refused.
  await h.ok({ type: 'create', path: '/h', lease: { holder: W, durationMs: 10_000 } });
  await h.ok({ type: 'addChunk', path: '/h', holder: W, replicas: cs, index: 0 });
  t.equal(await h.code({ type: 'completeFile', path: '/h', holder: W, chunkCount: 1, lastChunk: { handle: c1.handle, version: 1, lengthBytes: 1, checksum: 1 } }), 'EINVAL', "another file's chunk");
});

fsmTest(t, 'chunk commands need the live lease', async (t, h) => {
  const cs = await h.chunkservers(1);
  await writable(h, '/f', 1000);
  const { handle } = await h.ok<{ handle: number }>({
    type: 'addChunk',
    path: '/f',
    holder: W,
    replicas: cs,
  });
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: 'intruder', replicas: cs }), 'ELEASE');
  t.equal(
    await h.code({ type: 'sealChunk', handle, holder: 'intruder', version: 1, lengthBytes: 1, checksum: 1 }),
    'ELEASE',
  );
  t.equal(
    await h.code({ type: 'bumpChunkVersion', handle, holder: 'intruder', version: 1, replicas: cs }),
    'ELEASE',
  );
  t.equal(await h.code({ type: 'completeFile', path: '/f', holder: 'intruder' }), 'ELEASE');
  h.nowMs += 1000;
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: cs }), 'ELEASE', 'expired');
  await h.ok({ type: 'create', path: '/nolease' });
  t.equal(
    await h.code({ type: 'addChunk', path: '/nolease', holder: W, replicas: cs }),
    'ELEASE',
    'no lease at all',
  );
});

fsmTest(t, 'chunk command argument errors', async (t, h) => {
  const cs = await h.chunkservers(2);
  await writable(h);
  await h.ok({ type: 'mkdir', path: '/d' });
  const { handle } = await h.ok<{ handle: number }>({
    type: 'addChunk',
    path: '/f',
    holder: W,
    replicas: cs,
  });
  t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: [] }), 'EINVAL', 'no replicas');
  t.equal(
    await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: [cs[0]!, cs[0]!] }),
    'EINVAL',
    'duplicate',
  );
  t.equal(
    await h.code({
      type: 'addChunk',
      path: '/f',
      holder: W,
      replicas: Array.from({ length: 17 }, (_, i) => i + 1),
    }),
    'EINVAL',
    'too many',
  );
  t.equal(
    await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: [999] }),
    'ENOENT',
    'unknown chunkserver',
  );
  t.equal(await h.code({ type: 'addChunk', path: '/d', holder: W, replicas: cs }), 'EISDIR');
  t.equal(await h.code({ type: 'addChunk', path: '/zz', holder: W, replicas: cs }), 'ENOENT');
  t.equal(
    await h.code({ type: 'sealChunk', handle: 12345, holder: W, version: 1, lengthBytes: 1, checksum: 1 }),
    'ENOENT',
  );
  t.equal(
    await h.code({
      type: 'sealChunk',
      handle,
      holder: W,
      version: 1,
      lengthBytes: 65 * 1024 * 1024,
      checksum: 1,
    }),
    'EINVAL',
    'longer than a chunk',
  );
  t.equal(
    await h.code({ type: 'sealChunk', handle, holder: W, version: 1, lengthBytes: 1, checksum: 2 ** 32 }),
    'EINVAL',
    'checksum',
  );
  t.equal(await h.code({ type: 'setChunkReplicas', handle, version: 1, replicas: [777] }), 'ENOENT');
  t.equal(await h.code({ type: 'completeFile', path: '/d', holder: W }), 'EISDIR');
  const r = await h.sm.chunkLocations('/d');
  t.equal(!r.ok && r.code, 'EISDIR');
});

fsmTest(
  t,
  'a file at its chunk limit refuses more chunks',
  async (t, h) => {
    const cs = await h.chunkservers(1);
    await writable(h);
    await h.ok({ type: 'addChunk', path: '/f', holder: W, replicas: cs });
    await h.ok({ type: 'addChunk', path: '/f', holder: W, replicas: cs });
    t.equal(await h.code({ type: 'addChunk', path: '/f', holder: W, replicas: cs }), 'EINVAL');
  },
  { fileChunksMax: 2 },
);

fsmTest(t, 'a deleted file loses its lease; chunk commands on it get ENOENT', async (t, h) => {
  const cs = await h.chunkservers(1);
  await h.ok({ type: 'mkdir', path: '/d' });
  await writable(h, '/d/f');
  const { handle } = await h.ok<{ handle: number }>({
    type: 'addChunk',
    path: '/d/f',
    holder: W,
    replicas: cs,
  });
  await h.ok({ type: 'deleteRecursive', path: '/d' });
  t.equal(
    await h.code({ type: 'sealChunk', handle, holder: W, version: 1, lengthBytes: 1, checksum: 1 }),
    'ENOENT',
  );
  t.equal(await h.code({ type: 'setChunkReplicas', handle, version: 1, replicas: cs }), 'ENOENT');
});

fsmTest(t, 'appending after completion reopens the file', async (t, h) => {
  const cs = await h.chunkservers(1);
  await writable(h);
  await h.ok({ type: 'completeFile', path: '/f', holder: W });
  t.equal((await h.stat('/f')).complete, true);
  await h.ok({ type: 'acquireLease', path: '/f', holder: 'appender', durationMs: 100 });
  await h.ok({ type: 'addChunk', path: '/f', holder: 'appender', replicas: cs });
  t.equal((await h.stat('/f')).complete, false);
});

fsmTest(t, 'chunkserver registry: register, re-register, states, listing', async (t, h) => {
  const r1 = await h.ok<{ id: number; generation: number }>({
    type: 'registerChunkserver',
    address: 'a:1',
    rack: 'r1',
    capacityBytes: 1000,
    usedBytes: 10,
  });
  const r2 = await h.ok<{ id: number }>({
    type: 'registerChunkserver',
    address: 'b:1',
    rack: 'r2',
    capacityBytes: 2000,
    usedBytes: 0,
  });
  t.same([r1.id, r2.id], [1, 2]);
  await h.ok({ type: 'setChunkserverState', id: r1.id, state: 'dead' });
  let c = await h.sm.chunkserver(r1.id);
  t.equal(c.ok && c.value.state, 'dead');
  await h.ok({
    type: 'registerChunkserver',
    id: r1.id,
    address: 'a:2',
    rack: 'r1',
    capacityBytes: 1000,
    usedBytes: 500,
  });
  c = await h.sm.chunkserver(r1.id);
  t.same(
    c.ok && [c.value.state, c.value.address, c.value.usedBytes],
    ['live', 'a:2', 500],
    're-registering revives a dead server',
  );
  await h.ok({ type: 'setChunkserverState', id: r2.id, state: 'decommissioning' });
  await h.ok({
    type: 'registerChunkserver',
    id: r2.id,
    address: 'b:1',
    rack: 'r2',
    capacityBytes: 2000,
    usedBytes: 1,
  });
  c = await h.sm.chunkserver(r2.id);
  t.equal(c.ok && c.value.state, 'decommissioning', 'decommissioning survives re-registration');
  await h.ok({ type: 'setChunkserverState', id: r2.id, state: 'decommissioned' });
  await h.ok({ type: 'registerChunkserver', id: r2.id, address: 'b:1', rack: 'r2', capacityBytes: 2000, usedBytes: 1 });
  c = await h.sm.chunkserver(r2.id);
  t.equal(c.ok && c.value.state, 'decommissioned', 'decommissioned survives re-registration (it is not revived)');
  t.equal(
    await h.code({
      type: 'registerChunkserver',
      id: 77,
      address: 'x',
      rack: 'r',
      capacityBytes: 1,
      usedBytes: 0,
    }),
    'ENOENT',
  );
  t.equal(await h.code({ type: 'setChunkserverState', id: 77, state: 'live' }), 'ENOENT');

  t.equal(
    await h.code({ type: 'registerChunkserver', address: '', rack: 'r', capacityBytes: 1, usedBytes: 0 }),
    'EINVAL',
  );
  t.equal(
    await h.code({ type: 'registerChunkserver', address: 'a', rack: '', capacityBytes: 1, usedBytes: 0 }),
    'EINVAL',
  );
  for (let i = 0; i < 3; i++)
    await h.ok({ type: 'registerChunkserver', address: `m${i}`, rack: 'r', capacityBytes: 1, usedBytes: 0 });
  const ids: number[] = [];
  let after: number | undefined;
  for (;;) {
    const page = await h.sm.listChunkservers({ limit: 2, after });
    if (!page.ok) throw new Error(page.code);
    ids.push(...page.value.items.map((x) => x.id));
    if (page.value.nextAfter === null) break;
    after = page.value.nextAfter;
  }
  t.same(ids, [1, 2, 3, 4, 5]);
  const missing = await h.sm.chunkserver(42);
  t.equal(!missing.ok && missing.code, 'ENOENT');
  // Forgetting: only a dead or decommissioned server, under its generation; the record goes, the id is not reused.
  t.equal(await h.code({ type: 'forgetChunkserver', id: 77 }), 'ENOENT');
  t.equal(await h.code({ type: 'forgetChunkserver', id: r1.id }), 'EINVAL', 'a live server is not forgotten');
  const m4 = await h.ok<{ id: number; generation: number }>({ type: 'setChunkserverState', id: 4, state: 'decommissioning' });
  t.equal(await h.code({ type: 'forgetChunkserver', id: 4 }), 'EINVAL', 'nor a decommissioning one');
  const dead4 = await h.ok<{ id: number; generation: number }>({ type: 'setChunkserverState', id: 4, state: 'dead', ifGeneration: m4.generation });
  // A dead server that re-registers (comes back) changes its generation: a forget proposed before is refused.
  await h.ok({ type: 'registerChunkserver', id: 4, address: 'm1', rack: 'r', capacityBytes: 1, usedBytes: 0 });
  t.equal(await h.code({ type: 'forgetChunkserver', id: 4, ifGeneration: dead4.generation }), 'EPRECONDITION', 'a dead server that came back is not forgotten');
  const dead4again = await h.ok<{ id: number; generation: number }>({ type: 'setChunkserverState', id: 4, state: 'dead' });
  t.same(await h.ok({ type: 'forgetChunkserver', id: 4, ifGeneration: dead4again.generation }), { id: 4 }, 'a dead one is');
  const before = await h.sm.chunkserver(r2.id);
  const generation = before.ok ? before.value.generation : -1;
  t.equal(await h.code({ type: 'forgetChunkserver', id: r2.id, ifGeneration: generation + 1 }), 'EPRECONDITION');
  t.same(await h.ok({ type: 'forgetChunkserver', id: r2.id, ifGeneration: generation }), { id: r2.id });
  c = await h.sm.chunkserver(r2.id);
  t.equal(!c.ok && c.code, 'ENOENT', 'the record is gone');
  const listed = await h.sm.listChunkservers({});
  t.same(listed.ok && listed.value.items.map((x) => x.id), [1, 3, 5], 'and no longer listed');
  t.equal(await h.code({ type: 'registerChunkserver', id: r2.id, address: 'b:1', rack: 'r2', capacityBytes: 2000, usedBytes: 1 }), 'ENOENT', 'coming back under the id: ENOENT');
  t.equal(await h.code({ type: 'forgetChunkserver', id: r2.id }), 'ENOENT', 'forgotten once');
  const r3 = await h.ok<{ id: number }>({ type: 'registerChunkserver', address: 'c:1', rack: 'r3', capacityBytes: 1, usedBytes: 0 });
  t.equal(r3.id, 6, 'a new server gets a new id, never the forgotten one');
});

fsmTest(t, 'scanChunks lists every placement record in handle order', async (t, h) => {
  const cs = await h.chunkservers(1);
  await writable(h, '/a');
  await writable(h, '/b');
  const handles: number[] = [];
  for (const p of ['/a', '/b', '/a'])
    handles.push(
      (await h.ok<{ handle: number }>({ type: 'addChunk', path: p, holder: W, replicas: cs })).handle,
    );
  const seen: number[] = [];
  let after: number | undefined;
  for (;;) {
    const page = await h.sm.scanChunks({ limit: 2, after });
    if (!page.ok) throw new Error(page.code);
    seen.push(...page.value.items.map((c) => c.handle));
    if (page.value.nextAfter === null) break;
    after = page.value.nextAfter;
  }
  t.same(
    seen,
    handles.sort((x, y) => x - y),
  );
});
