/**
 * A new leader answers requests that read its state before proposing (AllocateChunk reads the file's
 * replication factor) only from a state that holds every write acknowledged before them. Here the member that
 * takes over has the file's create in its log, committed, but not applied (its applies are held back), so
 * it must wait for its ReadIndex to be applied rather than answer ENOENT for a file its client just created.
 * Before the fix, a writer's first AllocateChunk after a failover could fail that way.
 */
import t from 'tap';
import type { Entry } from '../../src/raft/types.ts';
import type { ApplyResult } from '../../src/fsm/state-machine.ts';
import { MetadataClient, MetadataError } from '../../src/metadata/client.ts';
import { FakeChunkservers } from './fake-chunkservers.ts';
import { rawCall, sleep, startInProcessCluster, waitFor } from './harness.ts';

void t.test('a new leader does not answer AllocateChunk from a state behind its commit index', async (t) => {
  const cluster = await startInProcessCluster(3, {
    chunkManagerIntervalMs: 50,
    chunkManagerLimits: { heartbeatTimeoutMs: 10_000, leaderGraceMs: 10_000, replicationTimeoutMs: 5_000, proposalRetryMs: 1_000 },
  });
  const client = await MetadataClient.connect(cluster.addresses);
  let beating = true;
  let loop: Promise<void> = Promise.resolve();
  t.teardown(async () => {
    beating = false;
    await loop;
    client.close();
    await cluster.close();
  });

  // Three chunkservers in three racks, kept live by heartbeats to whoever leads.
  const chunkservers = new FakeChunkservers(client);
  await chunkservers.register(['r0', 'r1', 'r2']);
  await waitFor('the chunk manager to know every chunkserver', () => chunkservers.beatAll().then(() => true, () => undefined));
  loop = (async () => {
    while (beating) {
      await chunkservers.beatAll().catch(() => {});
      await sleep(100);
    }
  })();

  // The member that will take over applies nothing until the gate opens.
  const leader = await cluster.leader();
  const next = [...cluster.servers.values()].find((s) => s.id !== leader.id)!;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  t.teardown(() => open());
  const fsm = next.fsm as unknown as { applyBatch: (entries: readonly Entry[]) => Promise<ApplyResult[]> };
  const apply = fsm.applyBatch.bind(fsm);
  fsm.applyBatch = (entries) => gate.then(() => apply(entries));

  await client.mkdir('/d');
  await client.create('/d/f', { replication: 3, leaseHolder: 'w', leaseDurationMs: 60_000 });
  const transferred = await rawCall(cluster.peers.get(leader.id)!.client, 'TransferLeadership', { id: next.id });
  t.equal(transferred.error ?? undefined, undefined, 'leadership transferred');
  await waitFor('the new leader', () => (next.node.status().role === 'leader' ? true : undefined));
  t.ok(next.fsm.appliedIndex() < next.node.status().commit, `the new leader has applied ${next.fsm.appliedIndex()} of ${next.node.status().commit} committed entries`);
  t.equal((await next.fsm.stat('/d/f')).ok, false, 'its state does not hold the file yet');

  // Its applies resume a moment after the allocation arrives.
  const opening = sleep(300).then(() => open());
  const codes: string[] = [];
  let reply: Record<string, unknown> | undefined;
  const deadline = Date.now() + 15_000;
  while (reply === undefined && Date.now() < deadline) {
    const r = await rawCall(cluster.peers.get(next.id)!.client, 'AllocateChunk', { path: '/d/f', holder: 'w', index: 0 });
    if (r.error === undefined || r.error === null) reply = r;
    else {
      codes.push(r.error.code);
      // The new leader's chunk manager answers UNAVAILABLE until it has loaded its first view.
      if (r.error.code !== 'UNAVAILABLE') break;
      await sleep(50);
    }
  }
  await opening;
  t.notOk(codes.includes('ENOENT'), `no ENOENT for the file created before the failover (errors seen: ${codes.join(', ') || 'none'})`);
  t.ok(reply !== undefined, 'the chunk is allocated');
  t.equal((reply?.['replicas'] as unknown[] | undefined)?.length, 3, 'on three replicas');
  // The same through the client library, which a writer uses.
  const c = await client.allocateChunk('/d/f', { holder: 'w' }).catch((e: unknown) => (e instanceof MetadataError ? e.code : e));
  t.match(c, { index: 1 }, 'the next chunk');
});
