/** Generations change on every modification; `ifGeneration` is a compare-and-set on the target. */
import t from 'tap';
import type { Op } from '../../src/fsm/commands.ts';
import { fsmTest } from './harness.ts';

fsmTest(t, 'every modification of an inode gives it a new, larger generation', async (t, h) => {
  const gens: number[] = [];
  await h.ok({ type: 'mkdir', path: '/d' });
  await h.ok({ type: 'create', path: '/d/f' });
  gens.push((await h.stat('/d/f')).generation);
  await h.ok({ type: 'setattr', path: '/d/f', mode: 0o600 });
  gens.push((await h.stat('/d/f')).generation);
  await h.ok({ type: 'rename', from: '/d/f', to: '/d/g' });
  gens.push((await h.stat('/d/g')).generation);
  await h.ok({ type: 'setattr', path: '/d/g' });
  gens.push((await h.stat('/d/g')).generation);
  for (let i = 1; i < gens.length; i++) t.ok(gens[i]! > gens[i - 1]!, `${gens[i]} > ${gens[i - 1]}`);
});

fsmTest(t, 'a failed command changes no generation', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d' });
  const before = await h.stat('/d');
  t.equal(await h.code({ type: 'mkdir', path: '/d' }), 'EEXIST');
  t.equal(
    await h.code({ type: 'rmdir', path: '/d', ifGeneration: before.generation + 100 }),
    'EPRECONDITION',
  );
  t.same(await h.stat('/d'), before);
});

fsmTest(t, 'a re-created path never repeats an old generation', async (t, h) => {
  await h.ok({ type: 'create', path: '/f' });
  const g1 = (await h.stat('/f')).generation;
  await h.ok({ type: 'unlink', path: '/f' });
  await h.ok({ type: 'create', path: '/f' });
  const g2 = (await h.stat('/f')).generation;
  t.ok(g2 > g1);
  t.equal(await h.code({ type: 'setattr', path: '/f', mode: 1, ifGeneration: g1 }), 'EPRECONDITION');
});

fsmTest(t, 'ifGeneration on every mutation: a mismatch fails, a match applies', async (t, h) => {
  const [cs] = await h.chunkservers(1);
  await h.ok({ type: 'mkdir', path: '/d' });
  await h.ok({ type: 'create', path: '/f' });
  await h.ok({ type: 'create', path: '/w', lease: { holder: 'me', durationMs: 60_000 } });
  const { handle } = await h.ok<{ handle: number }>({
    type: 'addChunk',
    path: '/w',
    holder: 'me',
    replicas: [cs!],
  });
  const gen = async (p: string) => (await h.stat(p)).generation;
  const csGen = async () => {
    const r = await h.sm.chunkserver(cs!);
    return r.ok ? r.value.generation : -1;
  };
  const cases: [string, (g: number) => Op, () => Promise<number>][] = [
    ['mkdir -p', (g) => ({ type: 'mkdir', path: '/d', parents: true, ifGeneration: g }), () => gen('/d')],
    ['create', (g) => ({ type: 'create', path: '/f', exclusive: false, ifGeneration: g }), () => gen('/f')],
    ['setattr', (g) => ({ type: 'setattr', path: '/f', mode: 0o600, ifGeneration: g }), () => gen('/f')],
    [
      'acquireLease',
      (g) => ({ type: 'acquireLease', path: '/f', holder: 'x', durationMs: 10, ifGeneration: g }),
      () => gen('/f'),
    ],
    [
      'renewLease',
      (g) => ({ type: 'renewLease', path: '/f', holder: 'x', durationMs: 10, ifGeneration: g }),
      () => gen('/f'),
    ],
    [
      'releaseLease',
      (g) => ({ type: 'releaseLease', path: '/f', holder: 'x', ifGeneration: g }),
      () => gen('/f'),
    ],
    [
      'addChunk',
      (g) => ({ type: 'addChunk', path: '/w', holder: 'me', replicas: [cs!], ifGeneration: g }),
      () => gen('/w'),
    ],
    [
      'bumpChunkVersion',
      (g) => ({
        type: 'bumpChunkVersion',
        handle,
        holder: 'me',
        version: 1,
        replicas: [cs!],
        ifGeneration: g,
      }),
      () => gen('/w'),
    ],
    [
      'setChunkReplicas',
      (g) => ({ type: 'setChunkReplicas', handle, version: 2, replicas: [cs!], ifGeneration: g }),
      () => gen('/w'),
    ],
    [
      'sealChunk',
      (g) => ({
        type: 'sealChunk',
        handle,
        holder: 'me',
        version: 2,
        lengthBytes: 5,
        checksum: 7,
        ifGeneration: g,
      }),
      () => gen('/w'),
    ],
    [
      'registerChunkserver',
      (g) => ({
        type: 'registerChunkserver',
        id: cs!,
        address: 'a',
        rack: 'r',
        capacityBytes: 1,
        usedBytes: 0,
        ifGeneration: g,
      }),
      csGen,
    ],
    [
      'setChunkserverState',
      (g) => ({ type: 'setChunkserverState', id: cs!, state: 'live', ifGeneration: g }),
      csGen,
    ],
    [
      'rename (destination)',
      (g) => ({ type: 'rename', from: '/d', to: '/d2', ifGeneration: g }),
      () => Promise.resolve(0),
    ],
    ['unlink', (g) => ({ type: 'unlink', path: '/f', ifGeneration: g }), () => gen('/f')],
    ['rmdir', (g) => ({ type: 'rmdir', path: '/d2', ifGeneration: g }), () => gen('/d2')],
  ];
  for (const [name, op, current] of cases) {
    const g = await current();
    t.equal(await h.code(op(g + 1)), 'EPRECONDITION', `${name}: mismatch`);
    const r = await h.run(op(g));
    t.ok(r.ok, `${name}: match applies${r.ok ? '' : ` (${r.code} ${r.message})`}`);
  }
  const loc = await h.sm.chunkLocations('/w');
  for (const c of loc.ok ? loc.value.chunks : []) {
    if (!c.sealed)
      await h.ok({
        type: 'sealChunk',
        handle: c.handle,
        holder: 'me',
        version: c.version,
        lengthBytes: 1,
        checksum: 1,
      });
  }
  const w = await h.stat('/w');
  await h.ok({ type: 'completeFile', path: '/w', holder: 'me', ifGeneration: w.generation });
  await h.ok({ type: 'deleteRecursive', path: '/w', ifGeneration: (await h.stat('/w')).generation });
});

fsmTest(t, 'ifGeneration 0 means the target must not exist', async (t, h) => {
  await h.ok({ type: 'create', path: '/f', ifGeneration: 0 });
  t.equal(await h.code({ type: 'create', path: '/f', exclusive: false, ifGeneration: 0 }), 'EPRECONDITION');
  await h.ok({ type: 'mkdir', path: '/d', ifGeneration: 0 });
  t.equal(await h.code({ type: 'mkdir', path: '/d', parents: true, ifGeneration: 0 }), 'EPRECONDITION');
  t.equal(await h.code({ type: 'setattr', path: '/f', ifGeneration: 0 }), 'EPRECONDITION');
  t.equal(
    await h.code({
      type: 'registerChunkserver',
      address: 'a',
      rack: 'r',
      capacityBytes: 1,
      usedBytes: 0,
      ifGeneration: 5,
    }),
    'EPRECONDITION',
  );
});

fsmTest(
  t,
  'resolution errors come before the precondition; the precondition before the rules',
  async (t, h) => {
    await h.ok({ type: 'mkdir', path: '/d' });
    const g = (await h.stat('/d')).generation;
    t.equal(await h.code({ type: 'unlink', path: '/missing', ifGeneration: 1 }), 'ENOENT');
    t.equal(await h.code({ type: 'unlink', path: '/d', ifGeneration: g + 1 }), 'EPRECONDITION');
    t.equal(await h.code({ type: 'unlink', path: '/d', ifGeneration: g }), 'EISDIR');
    t.equal(await h.code({ type: 'mkdir', path: '/d', ifGeneration: g }), 'EEXIST');
  },
);

fsmTest(
  t,
  'CAS replace: write a temp file, rename it over the target only if the target is unchanged',
  async (t, h) => {
    await h.ok({ type: 'create', path: '/config' });
    const seen = (await h.stat('/config')).generation;
    // Someone else updates the target in between.
    await h.ok({ type: 'setattr', path: '/config', mode: 0o600 });
    await h.ok({ type: 'create', path: '/config.tmp' });
    t.equal(
      await h.code({ type: 'rename', from: '/config.tmp', to: '/config', ifGeneration: seen }),
      'EPRECONDITION',
    );
    t.ok(await h.exists('/config.tmp'), 'nothing moved');
    const now = (await h.stat('/config')).generation;
    const tmpId = (await h.stat('/config.tmp')).id;
    await h.ok({ type: 'rename', from: '/config.tmp', to: '/config', ifGeneration: now });
    t.equal((await h.stat('/config')).id, tmpId);
  },
);
