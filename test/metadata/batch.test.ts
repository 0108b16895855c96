/**
 * Submit (many session-stamped mutations in one call) and the client's SubmitBatcher: concurrent sessions
 * share calls, each operation keeps its own stamp, result and typed error, and a retried stamp is applied
 * once, inside one call, across calls, and through the batcher after a redirect.
 */
import t from 'tap';
import { MetadataClient, SubmitBatcher } from '../../src/metadata/client.ts';
import { submitItemsMax } from '../../src/metadata/proto.ts';
import { FakeChunkservers } from './fake-chunkservers.ts';
import { rawCall, startInProcessCluster } from './harness.ts';

void t.test('Submit answers every item on its own; a retried stamp is applied once', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const address = cluster.peers.get(leader.id)!.client;
  const follower = [...cluster.servers.values()].find((s) => s.id !== leader.id)!;
  const opened = await rawCall(address, 'OpenSession', {});
  const clientId = opened['clientId'];
  const stamp = (seq: number) => ({ clientId, seq, ack: 0 });

  const first = await rawCall(address, 'Submit', {
    items: [
      { mkdir: { path: '/d', session: stamp(1) } },
      { create: { path: '/d/a', session: stamp(2), exclusive: true } },
      { create: { path: '/d/a', session: stamp(3), exclusive: true } }, // EEXIST: the item before made it
      { create: { path: 'relative', session: stamp(4) } }, // EINVAL, nothing proposed for it
      { create: { path: '/d/b', session: stamp(5) } },
      { create: { path: '/d/b2', session: stamp(5) } }, // the stamp of the item before: its result again
      {}, // no operation
    ],
  });
  t.equal(first.error ?? undefined, undefined, 'the call itself succeeded');
  const results = first['results'] as { error?: { code: string } | null; id?: string }[];
  t.equal(results.length, 7, 'one result per item');
  t.equal(results[0]!.error ?? undefined, undefined, 'mkdir');
  t.equal(results[1]!.error ?? undefined, undefined, 'create /d/a');
  t.equal(results[2]!.error?.code, 'EEXIST', 'a later item sees an earlier one');
  t.equal(results[3]!.error?.code, 'EINVAL', 'bad path: a typed error for that item only');
  t.equal(results[4]!.error ?? undefined, undefined, 'create /d/b');
  t.same(results[5], results[4], 'a duplicate stamp answers the first result');
  t.equal(results[6]!.error?.code, 'EINVAL', 'an item without an operation');

  // The whole call retried with the same stamps (its answer was lost): every result as the first time.
  const again = await rawCall(address, 'Submit', { items: [{ create: { path: '/d/a', session: stamp(2), exclusive: true } }, { create: { path: '/d/b', session: stamp(5) } }] });
  const againResults = again['results'] as unknown[];
  t.same(againResults[0], results[1], 'retried create answers its first result, not EEXIST');
  t.same(againResults[1], results[4]);

  const client = await MetadataClient.connect(cluster.addresses);
  t.teardown(() => client.close());
  t.same((await client.readdir('/d')).map((e) => e.name), ['a', 'b'], 'nothing applied twice, /d/b2 never created');
  t.equal((await client.stat('/d')).childCount, 2);

  // Whole-call errors: too many items, a follower.
  const tooMany = await rawCall(address, 'Submit', {
    items: Array.from({ length: submitItemsMax + 1 }, (_, i) => ({ create: { path: `/d/m${i}`, session: stamp(100 + i) } })),
  });
  t.equal(tooMany.error?.code, 'EINVAL');
  t.equal((await client.stat('/d')).childCount, 2, 'nothing of a refused call was applied');
  const redirected = await rawCall(cluster.peers.get(follower.id)!.client, 'Submit', { items: [{ create: { path: '/d/f', session: stamp(200) } }] });
  t.equal(redirected.error?.code, 'NOT_LEADER');
  t.equal(redirected.error?.leaderAddress, address);
});

void t.test('SubmitBatcher: concurrent sessions share calls, each gets its own answer', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const follower = [...cluster.servers.values()].find((s) => s.id !== leader.id)!;
  const batcher = new SubmitBatcher();
  t.teardown(() => batcher.close());
  // Sessions that start at a follower: the first call is redirected, per item, through the batcher.
  const addresses = [cluster.peers.get(follower.id)!.client, ...cluster.addresses];
  const sessionCount = 32;
  const perSession = 6;
  const sessions = await Promise.all(Array.from({ length: sessionCount }, () => MetadataClient.connect(addresses, { batcher })));
  t.teardown(() => sessions.forEach((s) => s.close()));
  await sessions[0]!.mkdir('/b');

  // One client alone: one call per operation (no waiting for company).
  const callsBefore = batcher.calls;
  await sessions[0]!.create('/b/alone');
  t.equal(batcher.calls - callsBefore, 1, 'a lone create is one call');
  // A create with the lease answers, through Submit too, what a writer needs to start.
  const leased = await sessions[0]!.createForWriting('/b/leased', { holder: 'w', leaseDurationMs: 10_000, chunkSizeBytes: 1 << 20 });
  t.equal(batcher.calls - callsBefore, 2, 'it went through the batcher');
  t.same(leased.writing && [leased.writing.chunkSizeBytes, leased.writing.compression, leased.writing.leaseExpiresMs > 0], [1 << 20, 'none', true], 'chunk size, compression and lease expiry in the SubmitResult');
  await sessions[0]!.unlink('/b/leased');

  const ids = await Promise.all(
    sessions.map(async (s, i) => {
      const out: number[] = [];
      for (let n = 0; n < perSession; n++) out.push((await s.create(`/b/s${i}-${n}`, { exclusive: true })).id);
      return out;
    }),
  );
  const all = ids.flat();
  t.equal(new Set(all).size, sessionCount * perSession, 'every create made its own inode');
  t.ok(batcher.calls < batcher.items / 4, `creates were coalesced (${batcher.items} items in ${batcher.calls} calls)`);
  t.equal((await sessions[1]!.stat('/b')).childCount, sessionCount * perSession + 1);

  // Per-operation errors through the batcher, mixed with successes in the same calls.
  const mixed = await Promise.allSettled(sessions.map((s, i) => (i % 2 === 0 ? s.create(`/b/s${i}-0`, { exclusive: true }) : s.mkdir(`/b/m${i}`))));
  mixed.forEach((r, i) => {
    if (i % 2 === 0) t.match(r, { status: 'rejected', reason: { code: 'EEXIST' } }, `session ${i}: EEXIST`);
    else t.equal(r.status, 'fulfilled', `session ${i}: mkdir`);
  });
  await t.resolves(sessions[2]!.rename('/b/m1', '/b/m1r'));
  await sessions[3]!.unlink('/b/alone');
  await sessions[4]!.rmdir('/b/m1r');
  t.equal((await sessions[5]!.stat('/b')).childCount, sessionCount * perSession + sessionCount / 2 - 1);
});

void t.test('Submit: a Create with its first chunk answers the chunk and its replicas in the SubmitResult', async (t) => {
  const cluster = await startInProcessCluster(3, { chunkManagerIntervalMs: 50 });
  const admin = await MetadataClient.connect(cluster.addresses);
  const batcher = new SubmitBatcher();
  const writer = await MetadataClient.connect(cluster.addresses, { batcher });
  t.teardown(async () => {
    writer.close();
    batcher.close();
    admin.close();
    await cluster.close();
  });
  const cs = new FakeChunkservers(admin);
  const registered = await cs.register(['r0', 'r1', 'r2']);
  await cs.whenKnown();
  const callsBefore = batcher.calls;
  const created = await writer.createForWriting('/f', { holder: 'w', leaseDurationMs: 10_000, firstChunk: true });
  t.equal(batcher.calls - callsBefore, 1, 'it went through the batcher');
  const first = created.writing?.firstChunk;
  t.same(first && [first.index, first.version, [...first.replicas.map((r) => r.id)].sort()], [0, 1, [...registered].sort()], 'the first chunk, on the three chunkservers');
  t.ok(first !== undefined && first.replicas.every((r) => r.address !== ''), 'with their addresses');
  t.same((await admin.chunkLocations('/f')).chunks.map((c) => c.handle), [first?.handle], 'as stored');
  // Several in one call, beside other mutations: each item its own file, lease and chunk.
  const others = await Promise.all(Array.from({ length: 6 }, () => MetadataClient.connect(cluster.addresses, { batcher })));
  t.teardown(() => others.forEach((o) => o.close()));
  const before = batcher.calls;
  const handles: number[] = [];
  await Promise.all(
    others.map(async (o, i) => {
      if (i % 2 !== 0) return void (await o.mkdir(`/d${i}`));
      const created = await o.createForWriting(`/g${i}`, { holder: `w${i}`, leaseDurationMs: 10_000, firstChunk: true });
      if (created.writing?.firstChunk !== undefined) handles.push(created.writing.firstChunk.handle);
    }),
  );
  t.ok(batcher.calls - before < others.length, `coalesced (${batcher.calls - before} calls for ${others.length} items)`);
  t.equal(new Set(handles).size, 3, 'three creates, three distinct first chunks');
  for (const i of [0, 2, 4]) t.equal((await admin.stat(`/g${i}`)).chunkCount, 1, `/g${i} has its chunk`);
});
