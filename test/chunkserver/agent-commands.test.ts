/**
 * The commands in the leader's replies, carried out by two agents on memory stores against a real metadata
 * cluster: a stale replica (left at an older version by a new write pipeline) is deleted; an
 * under-replicated sealed chunk is copied to the right target, which reports it and gets listed; a replica
 * found corrupt is reported, deleted on the leader's order and replaced from the good copy; the only copy of a
 * chunk found corrupt is kept.
 */
import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { rawCall, startInProcessCluster, waitFor } from '../metadata/harness.ts';
import type { TestAgent } from './agent-harness.ts';
import { openSession, proposeOnLeader, startTestAgent, testClusterOptions } from './agent-harness.ts';

interface Replica {
  id: string;
  address: string;
}

void t.test('delete and replicate commands, corrupt replicas', async (t) => {
  const cluster = await startInProcessCluster(3, testClusterOptions);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const at = cluster.peers.get(leader.id)!.client;
  const call = (method: string, request: Record<string, unknown>) => rawCall(at, method, request);
  const stamp = await openSession(at);

  // Two chunkservers. A copy "sent" by one lands in the other's store, which notes it (as its data server will).
  const agents = new Map<number, TestAgent>();
  const byId = (id: number): TestAgent => agents.get(id)!;
  const copyInto = (copy: { handle: number; version: number; targetId: number }, from: TestAgent) => {
    const source = from.store.info(copy.handle)!;
    const target = byId(copy.targetId);
    return from.store
      .read(copy.handle, copy.version, 0, source.lengthBytes)
      .then((bytes) => target.store.put(copy.handle, copy.version, bytes, source.sealed))
      .then(() => target.agent.noteReplicaChanged(copy.handle));
  };
  for (let i = 0; i < 2; i++) {
    const holder: { agent?: TestAgent } = {};
    const a = await startTestAgent(cluster.addresses, { rack: `r${i}`, copyReplica: (copy) => copyInto(copy, holder.agent!) });
    holder.agent = a;
    t.teardown(() => a.stop());
    agents.set(await a.agent.whenRegistered(), a);
  }
  const [idA, idB] = [...agents.keys()] as [number, number];
  await waitFor('both full reports', () => ([...agents.values()].every((a) => a.agent.status().fullReportsSent >= 1) ? true : undefined));

  // ---- A stale replica: the chunk's pipeline moved to version 2 on one server; the other still holds version 1.
  t.equal((await call('Create', { session: stamp(), path: '/s', replication: 1, leaseHolder: 'w', leaseDurationMs: 60_000 })).error ?? undefined, undefined);
  const s = await call('AllocateChunk', { session: stamp(), path: '/s', holder: 'w' });
  t.equal(s.error ?? undefined, undefined, 'allocated');
  const sHandle = Number(s['handle']);
  const sVersion = Number(s['version']);
  const listed = Number((s['replicas'] as Replica[])[0]!.id);
  const other = listed === idA ? idB : idA;
  const bumped = await proposeOnLeader(leader, { type: 'bumpChunkVersion', handle: sHandle, holder: 'w', version: sVersion, replicas: [listed] });
  t.ok(bumped.ok, 'version bumped (a new pipeline without the other server)');
  // The other server was in the old pipeline: it holds the chunk at the old version, and says so.
  await byId(other).store.put(sHandle, sVersion, Buffer.from('old bytes'), false);
  // The leader judges a replica when it is reported, against its view of the chunks (reloaded every pass): a
  // report that arrives before the view has the bump finds nothing wrong. So it is reported until deleted.
  let polls = 0;
  await waitFor('the stale replica deleted', () => {
    if (polls++ % 10 === 0) byId(other).agent.noteReplicaChanged(sHandle);
    return byId(other).store.info(sHandle) === undefined ? true : undefined;
  });
  t.same(byId(other).store.deletes, [{ handle: sHandle, versionAtMost: sVersion, removed: true }], 'delete(handle, the stale version) on the leader\'s order');
  await waitFor('the removal reported', () =>
    byId(other).link.reports().some((r) => !r.full && r.removed.includes(sHandle)) ? true : undefined,
  );
  t.pass('the removal was reported');
  t.equal(byId(other).agent.status().deletesDone, 1);

  // ---- Re-replication: a sealed chunk held by one server, its file's factor raised to 2.
  t.equal((await call('Create', { session: stamp(), path: '/r', replication: 1, leaseHolder: 'w', leaseDurationMs: 60_000 })).error ?? undefined, undefined);
  const r = await call('AllocateChunk', { session: stamp(), path: '/r', holder: 'w' });
  const handle = Number(r['handle']);
  const version = Number(r['version']);
  const sourceId = Number((r['replicas'] as Replica[])[0]!.id);
  const targetId = sourceId === idA ? idB : idA;
  const source = byId(sourceId);
  const target = byId(targetId);
  const data = Buffer.from('the bytes of a sealed chunk');
  await source.store.put(handle, version, data, true);
  source.agent.noteReplicaChanged(handle);
  const sealed = await proposeOnLeader(leader, { type: 'sealChunk', handle, holder: 'w', version, lengthBytes: data.length, checksum: crc32c(data) });
  t.ok(sealed.ok, 'sealed');
  t.equal((await call('Setattr', { session: stamp(), path: '/r', replication: 2 })).error ?? undefined, undefined, 'factor raised to 2');
  const replicasOf = async (): Promise<number[]> => {
    const loc = await call('ChunkLocations', { path: '/r' });
    return ((loc['chunks'] as { replicas: Replica[] }[])[0]?.replicas ?? []).map((x) => Number(x.id)).sort();
  };
  await waitFor('the copy listed', async () => ((await replicasOf()).length === 2 ? true : undefined));
  t.same(source.copies, [{ handle, version, targetId, targetAddress: target.address }], 'copyReplica called with the right target');
  t.same(target.store.info(handle), { handle, version, lengthBytes: data.length, sealed: true, checksum: crc32c(data) }, 'the target holds it');
  t.same(await replicasOf(), [idA, idB].sort(), 'both listed (the target reported its new replica)');
  t.equal(source.agent.status().copiesDone, 1);

  // ---- Corruption on the target: reported, unlisted, deleted on the leader's order, copied again from the good replica.
  target.store.corrupt(handle);
  await t.rejects(target.store.verify(handle), { code: 'CHECKSUM_MISMATCH' }, 'the scrubber would find it');
  const deletesBefore = target.store.deletes.length;
  t.equal(await target.agent.reportCorrupt(handle), true, 'reportCorrupt: held, and reported');
  t.ok(target.store.info(handle) !== undefined, 'not deleted on the server\'s own verdict');
  await waitFor('the leader dropped it', () => (target.link.badOutcomes().includes('dropped') ? true : undefined));
  await waitFor('deleted on the leader\'s order', () => (target.store.deletes.length > deletesBefore ? true : undefined));
  t.match(target.store.deletes[deletesBefore], { handle, versionAtMost: version, removed: true }, 'the bad version deleted');
  await waitFor('a second copy', () => (source.copies.length === 2 && target.store.info(handle) !== undefined ? true : undefined));
  t.same(source.copies[1], { handle, version, targetId, targetAddress: target.address }, 'copied again from the good replica');
  await waitFor('listed twice again', async () => ((await replicasOf()).length === 2 ? true : undefined));
  const exposition = await target.metrics.registry.metrics();
  t.match(exposition, /rfs_chunkserver_checksum_failures_total 1/, 'checksum failure counted');
  t.match(exposition, /rfs_chunkserver_bad_replicas\{state="reported"\} 0/, 'no bad replica held once it was deleted');
  t.match(await source.metrics.registry.metrics(), /rfs_chunkserver_rereplications_total\{outcome="ok"\} 2/, 'copies counted');
  t.equal(await target.agent.reportCorrupt(987_654), false, 'an unknown handle: nothing to report');

  // ---- The only copy corrupt: kept (its good blocks are all there is), still listed, reported again later.
  t.equal((await call('Create', { session: stamp(), path: '/one', replication: 1, leaseHolder: 'w', leaseDurationMs: 60_000 })).error ?? undefined, undefined);
  const one = await call('AllocateChunk', { session: stamp(), path: '/one', holder: 'w' });
  const oneHandle = Number(one['handle']);
  const holderOfOne = byId(Number((one['replicas'] as Replica[])[0]!.id));
  const oneData = Buffer.from('the only copy of these bytes');
  await holderOfOne.store.put(oneHandle, 1, oneData, true);
  holderOfOne.agent.noteReplicaChanged(oneHandle);
  t.ok((await proposeOnLeader(leader, { type: 'sealChunk', handle: oneHandle, holder: 'w', version: 1, lengthBytes: oneData.length, checksum: crc32c(oneData) })).ok);
  holderOfOne.store.corrupt(oneHandle);
  const deletesOfOne = holderOfOne.store.deletes.length;
  t.equal(await holderOfOne.agent.reportCorrupt(oneHandle), true);
  await waitFor('reported twice', () => (holderOfOne.link.badOutcomes().filter((o) => o === 'last_replica').length >= 2 ? true : undefined));
  t.ok(holderOfOne.store.info(oneHandle) !== undefined, 'the only copy is kept');
  t.equal(holderOfOne.store.deletes.length, deletesOfOne, 'and never deleted');
  const gauges = await holderOfOne.metrics.registry.metrics();
  t.match(gauges, /rfs_chunkserver_bad_replicas\{state="last_copy"\} 1/, 'shown as a kept last copy');
  t.match(gauges, /rfs_chunkserver_bad_replicas\{state="reported"\} 0/);
  const oneLoc = await call('ChunkLocations', { path: '/one' });
  t.same(((oneLoc['chunks'] as { replicas: Replica[] }[])[0]?.replicas ?? []).map((x) => Number(x.id)), [holderOfOne === byId(idA) ? idA : idB], 'still listed');
});
