/**
 * The chunk RPCs of a 3-server in-process cluster: chunkservers register, heartbeat and report; writers
 * allocate chunks under a lease and look up their locations; admins list and decommission chunkservers;
 * the leader's chunk manager (on a real timer) declares silent servers dead and orders garbage deleted.
 */
import t from 'tap';
import type { WireReply } from '../../src/metadata/proto.ts';
import { rawCall, sleep, startInProcessCluster, waitFor } from './harness.ts';

interface Replica {
  id: string;
  address: string;
}

void t.test('chunkservers, chunk allocation and locations, decommissioning, liveness over gRPC', async (t) => {
  const cluster = await startInProcessCluster(3, {
    chunkManagerIntervalMs: 50,
    // Generous for a loaded machine: the keep-alive below beats every 200 ms.
    chunkManagerLimits: { heartbeatTimeoutMs: 4_000, leaderGraceMs: 4_000 },
  });
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const at = cluster.peers.get(leader.id)!.client;
  const followerId = [...cluster.servers.keys()].find((id) => id !== leader.id)!;
  const follower = cluster.peers.get(followerId)!.client;
  const call = (method: string, request: Record<string, unknown>): Promise<WireReply> => rawCall(at, method, request);

  // Registration: validated, leader only, ids allocated.
  t.equal((await call('RegisterChunkserver', { address: 'nope', rack: 'r0' })).error?.code, 'EINVAL', 'bad address');
  t.equal((await call('RegisterChunkserver', { address: '10.0.0.1:7000' })).error?.code, 'EINVAL', 'no rack');
  t.equal((await rawCall(follower, 'RegisterChunkserver', { address: '10.0.0.1:7000', rack: 'r0' })).error?.code, 'NOT_LEADER');
  const ids: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await call('RegisterChunkserver', { address: `10.0.0.${i + 1}:7000`, rack: `r${i % 3}`, capacityBytes: 1e12, usedBytes: 0 });
    t.equal(r.error ?? undefined, undefined, `register ${i}`);
    ids.push(Number(r['id']));
  }
  t.same(new Set(ids).size, 4, 'four ids');

  // Heartbeats: validated; answered once the leader's chunk manager runs; unknown ids are ENOENT.
  t.equal((await call('Heartbeat', { id: 0 })).error?.code, 'EINVAL', 'id 0');
  t.equal((await rawCall(follower, 'Heartbeat', { id: ids[0] })).error?.code, 'NOT_LEADER');
  const beat = (id: number) => call('Heartbeat', { id, capacityBytes: 1e12, usedBytes: 0 });
  await waitFor('the chunk manager to run', async () => ((await beat(ids[0]!)).error?.code === 'UNAVAILABLE' ? undefined : true));
  t.equal((await beat(99)).error?.code, 'ENOENT', 'unknown chunkserver');
  // Every server heartbeats (until one is silenced below to be declared dead).
  const alive = new Set(ids);
  const keepAlive = setInterval(() => {
    for (const id of alive) void beat(id).catch(() => {});
  }, 200);
  t.teardown(() => clearInterval(keepAlive));
  const first = await beat(ids[0]!);
  t.equal(first.error ?? undefined, undefined);
  t.equal(first['fullReportWanted'], true, 'a new leader wants a full report');
  // A full report over two messages: it counts once its last message (without fullMore) arrived.
  const firstPart = await call('ChunkReport', { id: ids[0], full: true, fullMore: true, chunks: [] });
  t.equal(firstPart['fullReportWanted'], true, 'still wanted while more of the full report is to come');
  const fullReply = await call('ChunkReport', { id: ids[0], chunks: [] });
  t.equal(fullReply['fullReportWanted'], false, 'not after one');
  t.equal((await call('ChunkReport', { id: ids[0], fullMore: true, removed: ['3'] })).error?.code, 'EINVAL', 'no removed in a part of a full report');
  t.equal((await call('ChunkReport', { id: ids[0], full: true, removed: ['3'] })).error?.code, 'EINVAL', 'removed only in incremental reports');
  t.equal((await call('ChunkReport', { id: ids[0], chunks: [{ handle: 0, version: 1 }] })).error?.code, 'EINVAL', 'handle 0');

  // A file under a lease; chunks allocated on live servers, spread over racks; locations paginated.
  const session = await call('OpenSession', {});
  const clientId = Number(session['clientId']);
  let seq = 0;
  const stamp = () => ({ clientId, seq: ++seq, ack: 0 });
  const created = await call('Create', { session: stamp(), path: '/f', replication: 3, leaseHolder: 'w', leaseDurationMs: 60_000 });
  t.equal(created.error ?? undefined, undefined, 'create with a lease');
  t.equal((await call('Create', { session: stamp(), path: '/g', leaseHolder: 'w' })).error?.code, 'EINVAL', 'lease holder without a duration');
  t.equal((await call('AllocateChunk', { path: '/f', holder: 'intruder' })).error?.code, 'ELEASE', 'only the lease holder allocates');
  t.equal((await call('AllocateChunk', { path: '/nope', holder: 'w' })).error?.code, 'ENOENT');
  t.equal((await call('AllocateChunk', { path: '/f' })).error?.code, 'EINVAL', 'holder required');
  const allocation = await call('AllocateChunk', { session: stamp(), path: '/f', holder: 'w' });
  t.equal(allocation.error ?? undefined, undefined, 'allocated');
  const replicas = allocation['replicas'] as Replica[];
  t.equal(replicas.length, 3, 'three replicas');
  t.equal(new Set(replicas.map((r) => r.id)).size, 3, 'on three servers');
  t.ok(replicas.every((r) => r.address.startsWith('10.0.0.')), 'with their addresses');
  const racks = new Set(replicas.map((r) => `r${(ids.indexOf(Number(r.id))) % 3}`));
  t.equal(racks.size, 3, 'one per rack');
  const retried = await call('AllocateChunk', { session: { clientId, seq, ack: 0 }, path: '/f', holder: 'w' });
  t.equal(retried['handle'], allocation['handle'], 'a retried session stamp answers the first allocation');
  for (let i = 0; i < 2; i++) await call('AllocateChunk', { session: stamp(), path: '/f', holder: 'w' });
  const page1 = await call('ChunkLocations', { path: '/f', limit: 2 });
  t.equal(page1.error ?? undefined, undefined);
  t.equal((page1['chunks'] as unknown[]).length, 2);
  t.equal(page1['hasMore'], true);
  const page2 = await call('ChunkLocations', { path: '/f', fromIndex: page1['nextIndex'], limit: 2 });
  t.equal((page2['chunks'] as unknown[]).length, 1);
  t.equal(page2['hasMore'], false);
  t.same(((page1['chunks'] as { replicas: Replica[] }[])[0]!.replicas), replicas, 'locations name the allocated replicas');
  const onFollower = await rawCall(follower, 'ChunkLocations', { path: '/f' });
  t.equal((onFollower['chunks'] as unknown[]).length, 3, 'a follower answers locations (linearizable read)');
  t.equal((await call('ChunkLocations', { path: '/' })).error?.code, 'EISDIR', 'locations of a directory');

  // Garbage: a replica of a deleted file is deleted on the next report.
  await call('Create', { session: stamp(), path: '/g', replication: 1, leaseHolder: 'w', leaseDurationMs: 60_000 });
  const g = await call('AllocateChunk', { session: stamp(), path: '/g', holder: 'w' });
  const gHolder = Number((g['replicas'] as Replica[])[0]!.id);
  t.equal((await call('Unlink', { session: stamp(), path: '/g' })).error ?? undefined, undefined);
  const garbage = await waitFor('the manager to see the deletion', async () => {
    const r = await call('ChunkReport', { id: gHolder, full: false, chunks: [{ handle: g['handle'], version: 1, lengthBytes: 0 }] });
    const commands = (r['commands'] ?? []) as { kind: string; handle: string }[];
    return commands.some((c) => c.kind === 'delete') ? commands : undefined;
  });
  t.match(garbage, [{ kind: 'delete', handle: String(g['handle']), version: '1' }], 'delete chunk Z');

  // Admin: list, decommission (no sealed chunk on it: decommissioned right away).
  const list = await call('ListChunkservers', { limit: 3 });
  t.equal((list['chunkservers'] as unknown[]).length, 3);
  t.equal(list['hasMore'], true);
  const rest = await call('ListChunkservers', { after: list['nextAfter'] });
  t.equal((rest['chunkservers'] as unknown[]).length, 1);
  t.equal((await call('DecommissionChunkserver', { id: 77 })).error?.code, 'ENOENT');
  t.equal((await rawCall(follower, 'DecommissionChunkserver', { id: ids[3] })).error?.code, 'NOT_LEADER');
  const decommissioned = await call('DecommissionChunkserver', { id: ids[3] });
  t.equal(decommissioned.error ?? undefined, undefined, 'decommissioning');
  await waitFor('decommissioned', async () => {
    const r = await call('ListChunkservers', {});
    const cs = (r['chunkservers'] as { id: string; state: string }[]).find((c) => Number(c.id) === ids[3]);
    return cs?.state === 'decommissioned' ? true : undefined;
  });
  t.equal((await call('DecommissionChunkserver', { id: ids[3] })).error?.code, 'EINVAL', 'decommissioned already');

  // Liveness: servers 0 and 1 keep heartbeating, server 2 falls silent and is declared dead.
  alive.delete(ids[2]!);
  alive.delete(ids[3]!);
  const status = await waitFor('server 2 to be declared dead', async () => {
    const s = await call('ClusterStatus', {});
    return Number(s['deadChunkservers']) >= 1 ? s : undefined;
  }, 20_000);
  // The keep-alive goes on for servers 0 and 1 to the end: silenced too, they would be declared dead 4 s on,
  // and on a loaded machine the steps below can take that long.
  t.equal(Number(status['liveChunkservers']), 2, 'two live');
  t.equal(Number(status['underReplicatedChunks']), 0, 'no sealed chunk is short (none is sealed)');
  // A follower runs no chunk manager: it computes the counts from its own store when asked (cached briefly).
  const counts = (s: WireReply): string => `live ${Number(s['liveChunkservers'])} dead ${Number(s['deadChunkservers'])} short ${Number(s['underReplicatedChunks'])}`;
  const followerStatus = await waitFor('the follower to count the dead server', async () => {
    const s = await rawCall(follower, 'ClusterStatus', {});
    return counts(s) === counts(status) ? s : undefined;
  }, 10_000);
  t.equal(counts(followerStatus), 'live 2 dead 1 short 0', "the follower's ClusterStatus counts are the leader's");
  t.equal(followerStatus['role'], 'follower');
  const followerMetrics = await cluster.servers.get(followerId)!.metrics();
  t.match(followerMetrics, /rfs_live_chunkservers 2\b/, "the follower's live_chunkservers gauge");
  t.match(followerMetrics, /rfs_under_replicated_chunks 0\b/, "the follower's under_replicated_chunks gauge");
  const listed = await call('ListChunkservers', {});
  t.equal((listed['chunkservers'] as { id: string; state: string }[]).find((c) => Number(c.id) === ids[2])?.state, 'dead');
  const revived = await beat(ids[2]!);
  t.equal(revived.error ?? undefined, undefined, 'a dead server heartbeats again');
  alive.add(ids[2]!); // and goes on beating (silent, it would be declared dead again 4 s on)
  await waitFor('re-registered live', async () => {
    const r = await call('ListChunkservers', {});
    return (r['chunkservers'] as { id: string; state: string }[]).find((c) => Number(c.id) === ids[2])?.state === 'live' ? true : undefined;
  });
  await waitFor('the follower to count it live again (its cached counts expire)', async () =>
    counts(await rawCall(follower, 'ClusterStatus', {})) === 'live 3 dead 0 short 0' ? true : undefined, 10_000);
  // The follower keeps its chunk view as the leader does: one whole read, then only what changed.
  const followerLoads = await cluster.servers.get(followerId)!.metrics();
  const loads = (kind: string): number => Number(new RegExp(`rfs_chunk_view_loads_total\\{kind="${kind}"\\} (\\d+)`).exec(followerLoads)?.[1] ?? 0);
  t.equal(loads('whole'), 1, "the follower read the chunk placement whole once, for its first counts");
  t.ok(loads('changed') >= 1, `and then only what changed (${loads('changed')} loads)`);
  const metrics = await leader.metrics();
  t.match(metrics, /rfs_live_chunkservers \d/, 'live_chunkservers gauge');
  t.match(metrics, /rfs_under_replicated_chunks 0/, 'under_replicated_chunks gauge');
});

void t.test("an idle leader's chunk manager reads the placement again only after something was applied", async (t) => {
  const cluster = await startInProcessCluster(3, { chunkManagerIntervalMs: 50 });
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const at = cluster.peers.get(leader.id)!.client;
  const loadsOf = async (kind: 'whole' | 'changed'): Promise<number> =>
    Number(new RegExp(`^rfs_chunk_view_loads_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(await leader.metrics())?.[1] ?? 0);
  const loads = async (): Promise<number> => (await loadsOf('whole')) + (await loadsOf('changed'));
  await waitFor('the chunk manager to run', () => (leader.chunks.current !== null ? true : undefined));
  await sleep(300); // the new leader's first entry applied everywhere
  const idleFrom = await loads();
  t.ok(idleFrom >= 1, `the manager read its first view (${idleFrom} reads)`);
  await sleep(1_000); // about 20 passes
  t.equal(await loads(), idleFrom, 'no read in a second of passes while nothing was applied');

  // A chunkserver registers (applied): the next pass reads the view again and the manager knows the server.
  const registered = await rawCall(at, 'RegisterChunkserver', { address: '10.0.0.1:7000', rack: 'r0', capacityBytes: 1e12, usedBytes: 0 });
  const id = Number(registered['id']);
  t.ok(id >= 1, 'registered');
  const beat = await waitFor('the manager to know the new server', async () => {
    const r = await rawCall(at, 'Heartbeat', { id, capacityBytes: 1e12, usedBytes: 0 });
    return r.error?.code === 'ENOENT' ? undefined : r;
  });
  t.equal(beat.error ?? undefined, undefined, 'its heartbeat is answered');
  t.ok((await loads()) > idleFrom, 'the view was read again after the registration was applied');
  t.equal(await loadsOf('whole'), 1, 'only the first read was of every record: later ones read what the applied entries changed');
  await sleep(200); // the pass that read it has finished
  const settled = await loads();
  for (let i = 0; i < 5; i++) {
    t.equal((await rawCall(at, 'Heartbeat', { id, capacityBytes: 1e12, usedBytes: i })).error ?? undefined, undefined, `heartbeat ${i}`);
    await sleep(100);
  }
  t.equal(await loads(), settled, 'heartbeats (leader memory, nothing applied) cause no reads');
});
