/** rename(2) edge cases. */
import t from 'tap';
import { fsmTest } from './harness.ts';
import type { Harness } from './harness.ts';

async function tree(h: Harness, dirs: string[], files: string[]): Promise<void> {
  for (const d of dirs) await h.ok({ type: 'mkdir', path: d, parents: true });
  for (const f of files) await h.ok({ type: 'create', path: f });
}

fsmTest(t, 'a file within one directory', async (t, h) => {
  await tree(h, ['/d'], ['/d/a']);
  const id = (await h.stat('/d/a')).id;
  const before = await h.stat('/d');
  await h.ok({ type: 'rename', from: '/d/a', to: '/d/b' });
  t.same(await h.names('/d'), ['b']);
  t.equal((await h.stat('/d/b')).id, id, 'same inode');
  const after = await h.stat('/d');
  t.equal(after.childCount, 1);
  t.ok(after.generation > before.generation);
});

fsmTest(t, 'a directory across directories keeps its subtree', async (t, h) => {
  await tree(h, ['/x/sub/deep', '/y'], ['/x/sub/deep/f']);
  await h.ok({ type: 'rename', from: '/x/sub', to: '/y/moved' });
  t.same(await h.names('/x'), []);
  t.same(await h.names('/y'), ['moved']);
  t.ok(await h.exists('/y/moved/deep/f'));
  t.equal((await h.stat('/x')).childCount, 0);
  t.equal((await h.stat('/y')).childCount, 1);
});

fsmTest(t, 'onto itself: success, nothing changes', async (t, h) => {
  await tree(h, ['/d'], ['/f']);
  const gf = (await h.stat('/f')).generation;
  const gd = (await h.stat('/d')).generation;
  t.same(await h.ok({ type: 'rename', from: '/f', to: '/f' }), {
    id: (await h.stat('/f')).id,
    generation: gf,
  });
  await h.ok({ type: 'rename', from: '/d', to: '/d' });
  t.equal((await h.stat('/f')).generation, gf);
  t.equal((await h.stat('/d')).generation, gd);
  t.equal(await h.code({ type: 'rename', from: '/none', to: '/none' }), 'ENOENT');
});

fsmTest(t, 'a file over a file replaces it', async (t, h) => {
  await tree(h, ['/a', '/b'], ['/a/src', '/b/dst']);
  const src = (await h.stat('/a/src')).id;
  await h.ok({ type: 'rename', from: '/a/src', to: '/b/dst' });
  t.equal((await h.stat('/b/dst')).id, src);
  t.same(await h.names('/a'), []);
  t.equal((await h.stat('/b')).childCount, 1);
  // within one directory
  await tree(h, [], ['/b/other']);
  await h.ok({ type: 'rename', from: '/b/other', to: '/b/dst' });
  t.same(await h.names('/b'), ['dst']);
  t.equal((await h.stat('/b')).childCount, 1);
});

fsmTest(t, 'a directory over an empty directory replaces it', async (t, h) => {
  await tree(h, ['/src/inner', '/dst'], []);
  await h.ok({ type: 'rename', from: '/src', to: '/dst' });
  t.same(await h.names('/'), ['dst']);
  t.ok(await h.exists('/dst/inner'));
});

fsmTest(t, 'a directory over a non-empty directory: ENOTEMPTY', async (t, h) => {
  await tree(h, ['/src', '/dst/x'], []);
  t.equal(await h.code({ type: 'rename', from: '/src', to: '/dst' }), 'ENOTEMPTY');
  t.ok(await h.exists('/src'));
  t.ok(await h.exists('/dst/x'));
});

fsmTest(t, 'type mismatches: file over dir EISDIR, dir over file ENOTDIR', async (t, h) => {
  await tree(h, ['/d', '/e'], ['/f']);
  t.equal(await h.code({ type: 'rename', from: '/f', to: '/d' }), 'EISDIR');
  t.equal(await h.code({ type: 'rename', from: '/d', to: '/f' }), 'ENOTDIR');
  t.equal(await h.code({ type: 'rename', from: '/f', to: '/e' }), 'EISDIR', 'even over an empty directory');
});

fsmTest(t, 'a directory into its own subtree: EINVAL', async (t, h) => {
  await tree(h, ['/a/b/c'], []);
  t.equal(await h.code({ type: 'rename', from: '/a', to: '/a/b/c/a' }), 'EINVAL');
  t.equal(await h.code({ type: 'rename', from: '/a', to: '/a/x' }), 'EINVAL');
  t.equal(await h.code({ type: 'rename', from: '/a/b', to: '/a/b/c/d' }), 'EINVAL');
  t.equal(
    await h.code({ type: 'rename', from: '/a', to: '/a/b/c' }),
    'EINVAL',
    'onto a descendant that exists',
  );
  t.equal(
    await h.code({ type: 'rename', from: '/a', to: '/a/missing/x' }),
    'ENOENT',
    'resolution comes first',
  );
  // onto an ancestor: the ancestor is not empty
  t.equal(await h.code({ type: 'rename', from: '/a/b', to: '/a' }), 'ENOTEMPTY');
  await h.ok({ type: 'rename', from: '/a/b/c', to: '/c' });
  await h.ok({ type: 'rename', from: '/a', to: '/c/a' }, {});
  t.ok(await h.exists('/c/a/b'));
});

fsmTest(t, 'a name that merely starts like the source is not its subtree', async (t, h) => {
  await tree(h, ['/a', '/ab'], []);
  await h.ok({ type: 'rename', from: '/a', to: '/ab/a' });
  t.ok(await h.exists('/ab/a'));
});

fsmTest(t, 'the root can neither move nor be replaced', async (t, h) => {
  await tree(h, ['/d'], []);
  t.equal(await h.code({ type: 'rename', from: '/', to: '/d/x' }), 'EINVAL');
  t.equal(await h.code({ type: 'rename', from: '/d', to: '/' }), 'EINVAL');
});

fsmTest(t, 'missing source, missing or non-directory destination parent', async (t, h) => {
  await tree(h, ['/d'], ['/f']);
  t.equal(await h.code({ type: 'rename', from: '/nope', to: '/x' }), 'ENOENT');
  t.equal(await h.code({ type: 'rename', from: '/d', to: '/nope/x' }), 'ENOENT');
  t.equal(await h.code({ type: 'rename', from: '/d', to: '/f/x' }), 'ENOTDIR');
  t.equal(await h.code({ type: 'rename', from: '/f/x', to: '/y' }), 'ENOTDIR');
  t.equal(await h.code({ type: 'rename', from: '/d', to: '/x/' }), 'EINVAL');
  // As Linux: both parents resolve before the source is looked up.
  t.equal(await h.code({ type: 'rename', from: '/nope', to: '/f/x' }), 'ENOTDIR', 'missing source, destination under a file');
  t.equal(await h.code({ type: 'rename', from: '/nope', to: '/nope2/x' }), 'ENOENT');
});

fsmTest(t, 'onto an ancestor of the source: ENOTEMPTY, for a file too (as Linux, before the type checks)', async (t, h) => {
  await tree(h, ['/a/b/c'], ['/a/b/f']);
  t.equal(await h.code({ type: 'rename', from: '/a/b/f', to: '/a/b' }), 'ENOTEMPTY', 'a file onto its directory');
  t.equal(await h.code({ type: 'rename', from: '/a/b/f', to: '/a' }), 'ENOTEMPTY', 'a file onto its grandparent');
  t.equal(await h.code({ type: 'rename', from: '/a/b/c', to: '/a' }), 'ENOTEMPTY', 'a directory onto its grandparent');
  t.ok(await h.exists('/a/b/f'));
  t.ok(await h.exists('/a/b/c'));
});

fsmTest(t, 'replacing a file with chunks reclaims them', async (t, h) => {
  const [cs] = await h.chunkservers(1);
  await h.ok({ type: 'create', path: '/old', lease: { holder: 'w', durationMs: 1000 } });
  const { handle } = await h.ok<{ handle: number }>({
    type: 'addChunk',
    path: '/old',
    holder: 'w',
    replicas: [cs!],
  });
  await tree(h, [], ['/new']);
  await h.ok({ type: 'rename', from: '/new', to: '/old' });
  const r = await h.sm.chunk(handle);
  t.equal(r.ok ? 'ok' : r.code, 'ENOENT', 'the placement record is gone');
});
