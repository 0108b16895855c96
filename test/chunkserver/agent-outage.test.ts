/**
 * The metadata service down: an agent started before any metadata server runs keeps retrying (no crash, no
 * unhandled rejection, failures counted) and registers once the cluster comes up; when the whole cluster
 * stops and starts again on the same ports and disks, the agent rides it out and reports in full to the new
 * leader.
 */
import t from 'tap';
import { waitFor } from '../metadata/harness.ts';
import { listChunkservers, RestartableCluster, startTestAgent, testClusterOptions } from './agent-harness.ts';
import { MemoryChunkStore } from './memory-store-agent.ts';

void t.test('metadata cluster down, up, down and up again', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  const cluster = await RestartableCluster.reserve(3, testClusterOptions);
  t.teardown(() => cluster.close());
  const store = new MemoryChunkStore();
  await store.put(2_000_001, 1, Buffer.from('kept'), true);
  const a = await startTestAgent(cluster.addresses, { store });
  t.teardown(() => a.stop());

  // Nobody listens yet.
  await waitFor('several failed registrations', () => (a.agent.status().consecutiveFailures >= 5 ? true : undefined));
  t.equal(a.agent.status().registered, false, 'not registered');
  t.match(await a.metrics.registry.metrics(), /rfs_chunkserver_heartbeat_failures_total\{request="register"\} [1-9]/, 'failures counted');
  const registerAttempts = a.link.sent.filter((s) => s.kind === 'register').length;
  t.ok(registerAttempts >= 5, `retried (${registerAttempts} attempts)`);

  // The cluster comes up: the agent registers and reports.
  await cluster.start();
  const id = await a.agent.whenRegistered();
  const registrations = a.link.sent.filter((s) => s.kind === 'register').length;
  const leader = await cluster.leader();
  const leaderAddress = cluster.peers.get(leader.id)!.client;
  await waitFor('a full report', () => (a.agent.status().fullReportsSent >= 1 ? true : undefined));
  t.equal(a.agent.status().consecutiveFailures, 0, 'exchanges succeed');
  t.equal((await listChunkservers(leaderAddress)).find((c) => c.id === id)?.state, 'live');

  // The whole cluster stops: heartbeats fail and keep being retried.
  await cluster.stopAll();
  const failuresBefore = a.agent.status().consecutiveFailures;
  await waitFor('heartbeats failing', () => (a.agent.status().consecutiveFailures >= failuresBefore + 5 ? true : undefined));
  t.equal(a.agent.status().registered, true, 'still registered (its id is kept)');
  const fullBefore = a.agent.status().fullReportsSent;

  // It comes back on the same disks: a new leader, which wants a full report; the server is live again.
  await cluster.start();
  const newLeader = await cluster.leader();
  const newLeaderAddress = cluster.peers.get(newLeader.id)!.client;
  await waitFor('reports again', () => (a.agent.status().consecutiveFailures === 0 && a.agent.status().fullReportsSent > fullBefore ? true : undefined), 30_000);
  t.pass('recovered and sent a full report to the new leader');
  const reports = a.link.reports().filter((r) => r.full);
  t.same(reports.at(-1)?.chunks, [{ handle: 2_000_001, version: 1, lengthBytes: 4, sealed: true, checksum: store.info(2_000_001)!.checksum }], 'listing its replica (sealed: with its checksum)');
  t.equal(a.agent.status().id, id, 'same id');
  t.equal(a.link.sent.filter((s) => s.kind === 'register').length, registrations, 'no registration after the first success');
  t.equal((await listChunkservers(newLeaderAddress)).find((c) => c.id === id)?.state, 'live', 'live');
  t.same(unhandled, [], 'no unhandled rejection');
});
