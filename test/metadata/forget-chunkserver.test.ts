/**
 * The chunkserver registry's bound and ForgetChunkserver over gRPC (3-server in-process cluster): past
 * chunkserversMax a new registration is refused, naming the limit; a decommissioned server is forgotten only
 * once it is silent; a forgotten one is unknown to heartbeats and registrations under its id, its id is not
 * reused, and its place in the registry is free again.
 */
import t from 'tap';
import type { WireReply } from '../../src/metadata/proto.ts';
import { rawCall, startInProcessCluster, waitFor } from './harness.ts';

void t.test('the registry is bounded; a decommissioned, silent chunkserver is forgotten', async (t) => {
  const heartbeatTimeoutMs = 1_500;
  const cluster = await startInProcessCluster(3, {
    chunkManagerIntervalMs: 50,
    chunkManagerLimits: { heartbeatTimeoutMs, leaderGraceMs: heartbeatTimeoutMs, chunkserversMax: 3 },
  });
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const at = cluster.peers.get(leader.id)!.client;
  const follower = cluster.peers.get([...cluster.servers.keys()].find((id) => id !== leader.id)!)!.client;
  const call = (method: string, request: Record<string, unknown>): Promise<WireReply> => rawCall(at, method, request);
  const register = (i: number, id?: number) =>
    call('RegisterChunkserver', { ...(id === undefined ? {} : { id }), address: `10.0.0.${i}:7000`, rack: `r${i}`, capacityBytes: 1e12, usedBytes: 0 });
  const beat = (id: number) => call('Heartbeat', { id, capacityBytes: 1e12, usedBytes: 0 });
  const states = async (): Promise<Map<number, string>> => {
    const r = await call('ListChunkservers', {});
    return new Map((r['chunkservers'] as { id: string; state: string }[]).map((c) => [Number(c.id), c.state]));
  };

  const ids: number[] = [];
  for (let i = 1; i <= 3; i++) {
    const r = await register(i);
    t.equal(r.error ?? undefined, undefined, `register ${i}`);
    ids.push(Number(r['id']));
  }
  await waitFor('the chunk manager to run', async () => ((await beat(ids[0]!)).error?.code === 'UNAVAILABLE' ? undefined : true));
  const alive = new Set(ids);
  const keepAlive = setInterval(() => {
    for (const id of alive) void beat(id).catch(() => {});
  }, 200);
  t.teardown(() => clearInterval(keepAlive));

  // The registry holds chunkserversMax (3): a fourth server is refused, naming the limit; known ones still re-register.
  const refused = await register(4);
  t.equal(refused.error?.code, 'EINVAL', 'a fourth server is refused at once');
  t.match(refused.error?.message, /chunkserversMax 3/, 'the refusal names the limit');
  t.equal((await register(1, ids[0])).error ?? undefined, undefined, 'a known server re-registers');

  // Refusals: unknown, follower, live, decommissioned but still heard from.
  t.equal((await call('ForgetChunkserver', { id: 77 })).error?.code, 'ENOENT');
  t.equal((await call('ForgetChunkserver', { id: 0 })).error?.code, 'EINVAL');
  t.equal((await rawCall(follower, 'ForgetChunkserver', { id: ids[2] })).error?.code, 'NOT_LEADER');
  const live = await call('ForgetChunkserver', { id: ids[2] });
  t.equal(live.error?.code, 'EINVAL');
  t.match(live.error?.message, /is live: decommission it first/);
  t.equal((await call('DecommissionChunkserver', { id: ids[2] })).error ?? undefined, undefined);
  await waitFor('decommissioned', async () => ((await states()).get(ids[2]!) === 'decommissioned' ? true : undefined));
  const heard = await call('ForgetChunkserver', { id: ids[2] });
  t.equal(heard.error?.code, 'EINVAL');
  t.match(heard.error?.message, /was heard from \d+ ms ago: stop it/, 'refused while it heartbeats');
  t.equal((await states()).size, 3, 'still listed');

  // Its process stops: once silent for the heartbeat timeout it is forgotten.
  alive.delete(ids[2]!);
  const forgotten = await waitFor(
    'the server to be forgotten once silent',
    async () => {
      const r = await call('ForgetChunkserver', { id: ids[2] });
      return r.error === undefined || r.error === null ? r : undefined;
    },
    heartbeatTimeoutMs * 10,
  );
  t.equal(Number(forgotten['id']), ids[2], 'forgotten');
  t.same([...(await states()).keys()], ids.slice(0, 2), 'no longer listed');
  await waitFor('the manager to drop it', async () => ((await beat(ids[2]!)).error?.code === 'ENOENT' ? true : undefined));
  t.equal((await register(3, ids[2])).error?.code, 'ENOENT', 'coming back under its id: ENOENT (the agent stops with UNKNOWN_ID)');
  t.equal((await call('ForgetChunkserver', { id: ids[2] })).error?.code, 'ENOENT', 'forgotten once');

  // Its place is free: the fourth server registers now, under a new id.
  const fourth = await waitFor('room in the registry', async () => {
    const r = await register(4);
    return r.error === undefined || r.error === null ? r : undefined;
  });
  t.ok(!ids.includes(Number(fourth['id'])), `a new id (${Number(fourth['id'])}), never a forgotten one`);
  const status = await call('ClusterStatus', {});
  t.equal(Number(status['deadChunkservers']), 0, 'the forgotten server is not counted dead');
});
