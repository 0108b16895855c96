/** Reclamation of deleted subtrees: bounded work per command, invariants after every step, nothing left. */
import t from 'tap';
import { Harness } from './harness.ts';

void t.test('a large deleted subtree is reclaimed a few keys per command', async (t) => {
  const h = await Harness.open({ reclaimKeysPerCommandMax: 3 });
  const [cs] = await h.chunkservers(1);
  await h.ok({ type: 'mkdir', path: '/keep' });
  const baseline = (await h.kv.scan({ limit: 10_000 })).length;
  for (let d = 0; d < 4; d++) {
    await h.ok({ type: 'mkdir', path: `/big/d${d}/sub`, parents: true });
    for (let f = 0; f < 5; f++) {
      const path = `/big/d${d}/sub/f${f}`;
      await h.ok({ type: 'create', path, lease: { holder: 'w', durationMs: 600_000 } });
      for (let c = 0; c < 3; c++) await h.ok({ type: 'addChunk', path, holder: 'w', replicas: [cs!] });
    }
  }
  const full = (await h.kv.scan({ limit: 10_000 })).length;
  await h.ok({ type: 'deleteRecursive', path: '/big' });
  t.same(await h.names('/'), ['keep'], 'gone from the namespace at once');
  let commands = 0;
  let previous = full;
  for (;;) {
    const keys = (await h.kv.scan({ limit: 10_000 })).length;
    t.ok(previous - keys <= 3 * 3 + 4, `bounded work per command (${previous - keys} keys)`);
    previous = keys;
    const problems = await h.invariants();
    if (problems.length > 0) t.fail(problems.join('; '));
    if (keys === baseline) break;
    await h.ok({ type: 'setattr', path: '/keep' });
    commands += 1;
    if (commands > 1000) throw new Error('reclamation does not finish');
  }
  t.ok(commands > 10, `took ${commands} further commands`);
  const chunks = await h.sm.scanChunks();
  t.same(chunks.ok && chunks.value.items, [], 'every placement record is gone');
});

void t.test('failed and malformed commands drive reclamation too', async (t) => {
  const h = await Harness.open({ reclaimKeysPerCommandMax: 1 });
  await h.ok({ type: 'mkdir', path: '/a/b/c', parents: true });
  await h.ok({ type: 'deleteRecursive', path: '/a' });
  for (let i = 0; i < 5; i++) {
    await h.code({ type: 'unlink', path: '/missing' });
    await h.sm.applyBatch([{ term: 1, index: h.index++, type: 0, data: new Uint8Array([1, 2, 3]) }]);
  }
  t.equal((await h.kv.scan({ limit: 100 })).length, 3, 'only root, meta and applied index remain');
  t.same(await h.invariants(), []);
});
