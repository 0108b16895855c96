/** Namespace commands and queries, one behaviour per test, and every error code they can return. */
import t from 'tap';
import { fsmTest } from './harness.ts';

const MiB = 1024 * 1024;

fsmTest(t, 'a new state has an empty root directory with the default attributes', async (t, h) => {
  const root = await h.stat('/');
  t.equal(root.type, 'dir');
  t.equal(root.id, 1);
  t.equal(root.replication, 3);
  t.equal(root.chunkSizeBytes, 64 * MiB);
  t.same(await h.names('/'), []);
  t.equal(h.sm.appliedIndex(), 0);
});

fsmTest(t, 'mkdir creates a directory and updates the parent', async (t, h) => {
  h.nowMs = 5000;
  const { id, generation } = await h.ok<{ id: number; generation: number }>({
    type: 'mkdir',
    path: '/a',
    mode: 0o700,
  });
  const a = await h.stat('/a');
  t.equal(a.id, id);
  t.equal(a.generation, generation);
  t.equal(a.generation, 1, 'generation is the log index of the change');
  t.equal(a.mode, 0o700);
  t.equal(a.mtimeMs, 5000);
  const root = await h.stat('/');
  t.equal(root.childCount, 1);
  t.equal(root.generation, 1, 'the parent changed too');
  t.equal(root.mtimeMs, 5000);
});

fsmTest(t, 'mkdir errors: EEXIST, ENOENT, ENOTDIR, EINVAL, ENAMETOOLONG', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/a' });
  await h.ok({ type: 'create', path: '/f' });
  t.equal(await h.code({ type: 'mkdir', path: '/a' }), 'EEXIST');
  t.equal(await h.code({ type: 'mkdir', path: '/f' }), 'EEXIST');
  t.equal(await h.code({ type: 'mkdir', path: '/' }), 'EEXIST');
  t.equal(await h.code({ type: 'mkdir', path: '/x/y' }), 'ENOENT');
  t.equal(await h.code({ type: 'mkdir', path: '/f/y' }), 'ENOTDIR');
  t.equal(await h.code({ type: 'mkdir', path: 'a' }), 'EINVAL', 'relative');
  t.equal(await h.code({ type: 'mkdir', path: '/a/' }), 'EINVAL', 'trailing slash');
  t.equal(await h.code({ type: 'mkdir', path: '//a' }), 'EINVAL', 'empty component');
  t.equal(await h.code({ type: 'mkdir', path: '/a/.' }), 'EINVAL');
  t.equal(await h.code({ type: 'mkdir', path: '/a/..' }), 'EINVAL');
  t.equal(await h.code({ type: 'mkdir', path: '/a\0b' }), 'EINVAL', 'NUL');
  t.equal(await h.code({ type: 'mkdir', path: `/${'x'.repeat(256)}` }), 'ENAMETOOLONG');
  t.equal(await h.code({ type: 'mkdir', path: `/${'é'.repeat(128)}` }), 'ENAMETOOLONG', '256 UTF-8 bytes');
  await h.ok({ type: 'mkdir', path: `/${'é'.repeat(127)}` });
  await h.ok({ type: 'mkdir', path: `/${'x'.repeat(255)}` });
  const deep = `/${Array.from({ length: 20 }, () => 'y'.repeat(250)).join('/')}`;
  t.equal(await h.code({ type: 'mkdir', path: deep, parents: true }), 'ENAMETOOLONG', 'path over 4096 bytes');
  t.equal(await h.code({ type: 'mkdir', path: '/m', mode: 0o10000 }), 'EINVAL', 'mode');
  t.equal(await h.code({ type: 'mkdir', path: '/m', replication: 0 }), 'EINVAL', 'replication 0');
  t.equal(await h.code({ type: 'mkdir', path: '/m', replication: 17 }), 'EINVAL', 'replication above max');
  t.equal(await h.code({ type: 'mkdir', path: '/m', chunkSizeBytes: 1 }), 'EINVAL', 'chunk size');
  t.equal(await h.code({ type: 'mkdir', path: '/m', owner: 'o'.repeat(256) }), 'EINVAL', 'owner');
  t.notOk(await h.exists('/m'), 'failed commands change nothing');
});

fsmTest(t, 'mkdir with parents creates missing ancestors and accepts an existing directory', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/a' });
  const r = await h.ok<{ id: number }>({ type: 'mkdir', path: '/a/b/c/d', parents: true, mode: 0o711 });
  t.equal((await h.stat('/a/b/c/d')).id, r.id);
  t.equal((await h.stat('/a/b')).mode, 0o711);
  const again = await h.ok<{ id: number }>({ type: 'mkdir', path: '/a/b/c/d', parents: true });
  t.equal(again.id, r.id, 'existing directory: same id, no error');
  t.same(await h.ok({ type: 'mkdir', path: '/', parents: true }), {
    id: 1,
    generation: (await h.stat('/')).generation,
  });
  await h.ok({ type: 'create', path: '/a/f' });
  t.equal(await h.code({ type: 'mkdir', path: '/a/f', parents: true }), 'EEXIST', 'a file at the end');
  t.equal(
    await h.code({ type: 'mkdir', path: '/a/f/x/y', parents: true }),
    'ENOTDIR',
    'a file in the middle',
  );
  t.notOk(await h.exists('/a/f/x'));
});

fsmTest(
  t,
  'replication and chunk size are inherited from the parent directory, settable per file',
  async (t, h) => {
    await h.ok({ type: 'mkdir', path: '/cold', replication: 2, chunkSizeBytes: 128 * MiB });
    await h.ok({ type: 'mkdir', path: '/cold/deeper' });
    await h.ok({ type: 'create', path: '/cold/deeper/f' });
    await h.ok({ type: 'create', path: '/cold/g', replication: 5, chunkSizeBytes: 1 * MiB });
    await h.ok({ type: 'create', path: '/h' });
    const f = await h.stat('/cold/deeper/f');
    t.same([f.replication, f.chunkSizeBytes], [2, 128 * MiB]);
    const g = await h.stat('/cold/g');
    t.same([g.replication, g.chunkSizeBytes], [5, 1 * MiB]);
    const root = await h.stat('/h');
    t.same([root.replication, root.chunkSizeBytes], [3, 64 * MiB]);
  },
);

fsmTest(t, 'create: exclusive by default; truncating replaces the file with an empty one', async (t, h) => {
  const first = await h.ok<{ id: number }>({
    type: 'create',
    path: '/f',
    mode: 0o600,
    owner: 'ann',
    replication: 2,
  });
  const f = await h.stat('/f');
  t.same([f.type, f.mode, f.owner, f.lengthBytes, f.complete], ['file', 0o600, 'ann', 0, true]);
  t.equal(await h.code({ type: 'create', path: '/f' }), 'EEXIST');
  t.equal(await h.code({ type: 'create', path: '/f', exclusive: true }), 'EEXIST');
  const second = await h.ok<{ id: number; generation: number }>({
    type: 'create',
    path: '/f',
    exclusive: false,
  });
  t.not(second.id, first.id, 'a truncated file is a new inode');
  const g = await h.stat('/f');
  t.same([g.mode, g.owner, g.replication], [0o600, 'ann', 2], 'attributes carry over unless given');
  t.ok(g.generation > f.generation);
  t.equal((await h.stat('/')).childCount, 1);
});

fsmTest(t, 'create errors: EISDIR, ENOENT, ENOTDIR, EINVAL', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d' });
  await h.ok({ type: 'create', path: '/f' });
  t.equal(await h.code({ type: 'create', path: '/d' }), 'EISDIR');
  t.equal(await h.code({ type: 'create', path: '/d', exclusive: false }), 'EISDIR');
  t.equal(await h.code({ type: 'create', path: '/' }), 'EISDIR');
  t.equal(await h.code({ type: 'create', path: '/none/f' }), 'ENOENT');
  t.equal(await h.code({ type: 'create', path: '/f/g' }), 'ENOTDIR');
  t.equal(await h.code({ type: 'create', path: '/x', chunkSizeBytes: 2 * 1024 * 1024 * 1024 }), 'EINVAL');
  t.equal(
    await h.code({ type: 'create', path: '/x', lease: { holder: '', durationMs: 10 } }),
    'EINVAL',
    'empty holder',
  );
  t.equal(
    await h.code({ type: 'create', path: '/x', lease: { holder: 'w', durationMs: 0 } }),
    'EINVAL',
    'zero duration',
  );
});

fsmTest(t, 'setattr changes mode, mtime, owner and replication, and bumps the generation', async (t, h) => {
  await h.ok({ type: 'create', path: '/f' });
  const before = await h.stat('/f');
  h.nowMs += 10;
  await h.ok({ type: 'setattr', path: '/f', mode: 0o640, mtimeMs: 42, owner: 'bob', replication: 5 });
  const after = await h.stat('/f');
  t.same([after.mode, after.mtimeMs, after.owner, after.replication], [0o640, 42, 'bob', 5]);
  t.equal(after.ctimeMs, h.nowMs);
  t.ok(after.generation > before.generation);
  await h.ok({ type: 'setattr', path: '/', mode: 0o777 });
  t.equal((await h.stat('/')).mode, 0o777);
  t.equal(await h.code({ type: 'setattr', path: '/nope', mode: 1 }), 'ENOENT');
  t.equal(await h.code({ type: 'setattr', path: '/f', mode: 0o77777 }), 'EINVAL');
  t.equal(await h.code({ type: 'setattr', path: '/f', replication: 99 }), 'EINVAL');
  t.equal(await h.code({ type: 'setattr', path: '/f/x', mode: 1 }), 'ENOTDIR');
});

fsmTest(t, 'setattr replication on a directory changes the default for new children only', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d' });
  await h.ok({ type: 'create', path: '/d/old' });
  await h.ok({ type: 'setattr', path: '/d', replication: 1 });
  await h.ok({ type: 'create', path: '/d/new' });
  t.equal((await h.stat('/d/old')).replication, 3);
  t.equal((await h.stat('/d/new')).replication, 1);
});

fsmTest(t, 'unlink removes files only', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d' });
  await h.ok({ type: 'create', path: '/d/f' });
  await h.ok({ type: 'unlink', path: '/d/f' });
  t.notOk(await h.exists('/d/f'));
  t.equal((await h.stat('/d')).childCount, 0);
  t.equal(await h.code({ type: 'unlink', path: '/d/f' }), 'ENOENT');
  t.equal(await h.code({ type: 'unlink', path: '/d' }), 'EISDIR');
  t.equal(await h.code({ type: 'unlink', path: '/' }), 'EISDIR');
  await h.ok({ type: 'create', path: '/g' });
  t.equal(await h.code({ type: 'unlink', path: '/g/x' }), 'ENOTDIR');
});

fsmTest(t, 'rmdir removes empty directories only', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d/e', parents: true });
  await h.ok({ type: 'create', path: '/f' });
  t.equal(await h.code({ type: 'rmdir', path: '/d' }), 'ENOTEMPTY');
  t.equal(await h.code({ type: 'rmdir', path: '/f' }), 'ENOTDIR');
  t.equal(await h.code({ type: 'rmdir', path: '/' }), 'EINVAL');
  t.equal(await h.code({ type: 'rmdir', path: '/zz' }), 'ENOENT');
  await h.ok({ type: 'rmdir', path: '/d/e' });
  await h.ok({ type: 'rmdir', path: '/d' });
  t.same(await h.names('/'), ['f']);
});

fsmTest(t, 'deleteRecursive removes a whole subtree at once, and a file', async (t, h) => {
  for (const p of ['/a/b/c', '/a/b/d', '/a/e']) await h.ok({ type: 'mkdir', path: p, parents: true });
  for (const p of ['/a/b/c/f1', '/a/b/f2', '/a/f3', '/keep']) await h.ok({ type: 'create', path: p });
  await h.ok({ type: 'deleteRecursive', path: '/a' });
  t.same(await h.names('/'), ['keep']);
  t.same(await h.invariants(), []);
  await h.ok({ type: 'deleteRecursive', path: '/keep' });
  t.same(await h.names('/'), []);
  t.equal(await h.code({ type: 'deleteRecursive', path: '/' }), 'EINVAL');
  t.equal(await h.code({ type: 'deleteRecursive', path: '/a' }), 'ENOENT');
  // Everything was reclaimed: only the root, meta and applied index remain.
  const all = await h.kv.scan({ limit: 100 });
  t.equal(all.length, 3);
});

fsmTest(t, 'readdir pages in byte-wise name order, with a stable cursor', async (t, h) => {
  const names = ['b', 'a', 'Z', 'aa', 'é', 'a b', '~', '0'];
  for (const n of names) await h.ok({ type: 'create', path: `/${n}` });
  await h.ok({ type: 'mkdir', path: '/dir' });
  const sorted = [...names, 'dir'].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  const seen: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const r = await h.sm.readdir('/', { limit: 3, cursor });
    if (!r.ok) throw new Error(r.code);
    seen.push(...r.value.entries.map((e) => e.name));
    if (r.value.nextCursor === null) break;
    cursor = r.value.nextCursor;
    if (seen.length === 3) await h.ok({ type: 'unlink', path: `/${cursor}` }); // the cursor's entry vanishes: still fine
  }
  t.same(seen, sorted);
  const page = await h.sm.readdir('/', { cursor: 'b', limit: 100 });
  t.ok(page.ok && page.value.entries.every((e) => Buffer.compare(Buffer.from(e.name), Buffer.from('b')) > 0));
  const dirEntry = page.ok ? page.value.entries.find((e) => e.name === 'dir') : undefined;
  t.equal(dirEntry?.type, 'dir');
});

fsmTest(t, 'readdir and stat errors', async (t, h) => {
  await h.ok({ type: 'create', path: '/f' });
  const code = async (p: Promise<{ ok: boolean; code?: string }>) => (await p).code;
  t.equal(await code(h.sm.readdir('/f')), 'ENOTDIR');
  t.equal(await code(h.sm.readdir('/nope')), 'ENOENT');
  t.equal(await code(h.sm.readdir('/', { limit: 0 })), 'EINVAL');
  t.equal(await code(h.sm.readdir('/', { cursor: '' })), 'EINVAL');
  t.equal(await code(h.sm.readdir('/', { cursor: 'x/y' })), 'EINVAL');
  t.equal(await code(h.sm.stat('relative')), 'EINVAL');
  t.equal(await code(h.sm.stat('/f/g')), 'ENOTDIR');
  t.equal(await code(h.sm.stat(`/${'n'.repeat(300)}`)), 'ENAMETOOLONG');
  const big = await h.sm.readdir('/', { limit: 1_000_000 });
  t.ok(big.ok, 'a limit above the maximum is clamped');
});

fsmTest(t, 'an unknown, empty or membership entry is not a command', async (t, h) => {
  const results = await h.sm.applyBatch([
    { term: 1, index: 1, type: 0, data: new Uint8Array(0) },
    { term: 1, index: 2, type: 1, data: new Uint8Array([1, 2, 3]) },
    { term: 1, index: 3, type: 0, data: new Uint8Array([0xc1]) },
  ]);
  t.same(results.slice(0, 2), [undefined, undefined]);
  t.equal(results[2]?.ok === false && results[2].code, 'EBADMSG');
  t.equal(h.sm.appliedIndex(), 3);
});

fsmTest(t, 'createMany: new empty files in one directory, all or none', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/d' });
  const r = await h.ok<{ created: number; firstId: number }>({ type: 'createMany', dir: '/d', names: ['a', 'b', 'c'] });
  t.equal(r.created, 3);
  t.same(await h.names('/d'), ['a', 'b', 'c']);
  t.equal((await h.stat('/d/a')).id, r.firstId);
  t.equal((await h.stat('/d/c')).id, r.firstId + 2, 'ids in the order of the names');
  t.equal((await h.stat('/d')).childCount, 3);
  t.equal(await h.code({ type: 'createMany', dir: '/d', names: ['x', 'b'] }), 'EEXIST');
  t.equal(await h.code({ type: 'createMany', dir: '/d', names: ['y', 'y'] }), 'EINVAL', 'a name twice');
  t.equal(await h.code({ type: 'createMany', dir: '/d', names: ['z', '..'] }), 'EINVAL');
  t.equal(await h.code({ type: 'createMany', dir: '/d/a', names: ['z'] }), 'ENOTDIR');
  t.equal(await h.code({ type: 'createMany', dir: '/nope', names: ['z'] }), 'ENOENT');
  t.same(await h.names('/d'), ['a', 'b', 'c'], 'no failed call left a file behind');
  t.equal((await h.stat('/d')).childCount, 3);
});
