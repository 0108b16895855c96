/**
 * The metadata agent against a real 3-server in-process metadata cluster over gRPC: registration through a
 * follower (redirect), the id kept across restarts, a data dir without an id registering as a new server,
 * heartbeats keeping a server live and their absence getting it declared dead, and the full report followed
 * by incremental ones.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { AgentError } from '../../src/chunkserver/agent.ts';
import { fileIdStore, idFileName } from '../../src/chunkserver/server.ts';
import { startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { listChunkservers, startTestAgent, testClusterOptions, waitForState } from './agent-harness.ts';
import { MemoryChunkStore, MemoryIdStore } from './memory-store-agent.ts';

void t.test('registration, redirects, identity, liveness and reports', async (t) => {
  const cluster = await startInProcessCluster(3, testClusterOptions);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const leaderAddress = cluster.peers.get(leader.id)!.client;
  const followerAddress = cluster.peers.get([...cluster.servers.keys()].find((id) => id !== leader.id)!)!.client;

  // A server holding two replicas (unknown to this cluster's chunk handles: above its next handle, so kept).
  const store = new MemoryChunkStore();
  await store.put(1_000_001, 3, Buffer.from('abc'), true);
  await store.put(1_000_002, 1, Buffer.from('defg'), false);

  // Only a follower's address given: the NOT_LEADER redirect leads to the leader.
  const a = await startTestAgent([followerAddress], { store });
  t.teardown(() => a.stop());
  const id = await a.agent.whenRegistered();
  t.ok(id >= 1, 'registered');
  t.equal(a.idStore.id, id, 'the id is saved');
  // Given one address only, the link can reach another server only through a NOT_LEADER redirect.
  t.not(a.link.inner.target, followerAddress, 'the link followed the redirect');
  t.ok(cluster.addresses.includes(a.link.inner.target), 'to a member (the leader when it answered)');
  const record = (await listChunkservers(leaderAddress)).find((c) => c.id === id);
  t.same(record, { id, address: a.address, state: 'live' }, 'the leader lists it, live, at its address');

  // The first report is full and lists every replica; the leader wants no other.
  await waitFor('a full report', () => (a.agent.status().fullReportsSent >= 1 ? true : undefined));
  const first = a.link.reports()[0]!;
  t.equal(first.full, true, 'full report first');
  t.same(
    first.chunks,
    [
      { handle: 1_000_001, version: 3, lengthBytes: 3, sealed: true, checksum: store.info(1_000_001)!.checksum },
      { handle: 1_000_002, version: 1, lengthBytes: 4, sealed: false },
    ],
    'with every replica, and whether it is sealed',
  );
  t.equal(a.agent.status().fullReportsSent, 1, 'one full report');
  t.ok(a.link.replies.every((r) => r.commands.length === 0), 'replicas of handles the cluster has not issued are not garbage');

  // Changes: batched into incremental reports, each replica as the store has it now.
  await store.append(1_000_002, 1, 4, Buffer.from('hi'));
  a.agent.noteReplicaChanged(1_000_002);
  await store.put(1_000_003, 1, Buffer.from('x'), false);
  a.agent.noteReplicaChanged(1_000_003);
  await store.delete(1_000_001, 3);
  a.agent.noteReplicaRemoved(1_000_001);
  await waitFor('the changes reported', () => (a.agent.status().pendingChanges === 0 && a.agent.status().incrementalReportsSent >= 1 ? true : undefined));
  const incremental = a.link.reports().filter((r) => !r.full);
  t.same(
    incremental.flatMap((r) => r.chunks).sort((x, y) => x.handle - y.handle),
    [
      { handle: 1_000_002, version: 1, lengthBytes: 6, sealed: false },
      { handle: 1_000_003, version: 1, lengthBytes: 1, sealed: false },
    ],
    'changed replicas reported with their new length',
  );
  t.same(incremental.flatMap((r) => r.removed), [1_000_001], 'the removed one reported as removed');
  t.ok(incremental.length <= 3, `changes close together share reports (${incremental.length})`);

  // Heartbeats keep it live past several heartbeat timeouts (1.5 s).
  const beats = a.agent.status().heartbeatsSent;
  await new Promise((resolve) => setTimeout(resolve, 4_000));
  t.ok(a.agent.status().heartbeatsSent > beats + 10, 'heartbeats sent');
  t.equal((await listChunkservers(leaderAddress)).find((c) => c.id === id)?.state, 'live', 'still live');
  t.equal(a.agent.status().consecutiveFailures, 0);
  t.equal(a.agent.status().fullReportsSent, 1, 'no further full report was wanted');

  // Silence gets it declared dead.
  await a.stop();
  await waitForState(leaderAddress, id, 'dead');
  t.pass('declared dead once its heartbeats stopped');

  // A restart with the same id file (and a new address): the same id, its record updated, live again.
  const again = await startTestAgent(cluster.addresses, { store, idStore: a.idStore });
  t.teardown(() => again.stop());
  t.equal(await again.agent.whenRegistered(), id, 'registered again with its id');
  t.equal(again.link.sent[0]?.kind === 'register' ? again.link.sent[0].request.id : -1, id, 'registration named its id');
  t.equal(again.idStore.saves, 1, 'the id was not saved again');
  const back = await waitForState(leaderAddress, id, 'live');
  t.equal(back.address, again.address, 'its new address recorded');
  t.equal(again.link.reports()[0]?.full, true, 'a full report after the restart');

  // A data dir without an id file (a new or wiped disk) is a new server, even with the same expected id.
  const wiped = await startTestAgent(cluster.addresses, { expectedId: id });
  t.teardown(() => wiped.stop());
  const newId = await wiped.agent.whenRegistered();
  t.not(newId, id, 'a new id');
  t.equal(wiped.link.sent[0]?.kind === 'register' ? wiped.link.sent[0].request.id : -1, 0, 'registered as new');

  // A saved id that is not the expected one: refused before anything is sent.
  await t.rejects(startTestAgent(cluster.addresses, { idStore: new MemoryIdStore(id), expectedId: id + 100 }), { code: 'ID_MISMATCH' });

  // A saved id this cluster does not know: fatal, reported, nothing registered.
  const fatal: Error[] = [];
  const stranger = await startTestAgent(cluster.addresses, { idStore: new MemoryIdStore(9_999), onFatal: (e) => fatal.push(e) });
  t.teardown(() => stranger.stop());
  await t.rejects(stranger.agent.whenRegistered(), { code: 'UNKNOWN_ID' });
  t.equal(fatal.length, 1, 'onFatal called');
  t.ok(fatal[0] instanceof AgentError);
  const registered = await listChunkservers(leaderAddress);
  t.same(registered.map((c) => c.id).sort((x, y) => x - y), [id, newId].sort((x, y) => x - y), 'still two chunkservers registered (the stranger added none)');
});

void t.test('the id file: missing is no id; saved atomically; garbage is an error, not a new server', async (t) => {
  const tmp = await tempDir('rfs-agent-id-');
  t.teardown(() => tmp.remove());
  const ids = fileIdStore(tmp.dir);
  t.equal(await ids.load(), undefined, 'no file: no id');
  await ids.save(42);
  t.equal(await ids.load(), 42);
  t.equal(await fileIdStore(tmp.dir).load(), 42, 'read back by another instance (a restart)');
  await writeFile(join(tmp.dir, idFileName), 'not json');
  await t.rejects(ids.load(), { code: 'BAD_ID_FILE' });
  await writeFile(join(tmp.dir, idFileName), '{"id": -3}');
  await t.rejects(ids.load(), { code: 'BAD_ID_FILE' });
});
