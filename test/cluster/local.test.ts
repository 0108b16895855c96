/**
 * startLocalCluster: three metadata servers and three chunkservers as child processes on free ports in a
 * temp dir. The cluster comes up (a leader over three members, three live chunkservers), a file written
 * through FileClient reads back, stop() leaves no child running, and a restart on the same dir keeps the
 * file. A busy port is a clear PORT_IN_USE error; a chunkserver that dies is reported and restarted.
 */
import { createServer } from 'node:net';
import t from 'tap';
import { FileClient } from '../../src/client/connect.ts';
import { unaryCall } from '../../src/metadata/proto.ts';
import { startLocalCluster } from '../../src/cluster/local.ts';
import type { ClusterEvent, LocalCluster } from '../../src/cluster/local.ts';
import { tempDir, waitFor } from '../metadata/harness.ts';
import { pattern } from '../client/pattern.ts';

const MiB = 1024 * 1024;
/** Six processes starting on a loaded 2-core machine can take a minute or more. */
const readyTimeoutMs = 240_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

async function liveChunkservers(client: FileClient): Promise<number> {
  const r = await client.metadata.call('ListChunkservers', {});
  const list = (r['chunkservers'] ?? []) as { state: string }[];
  return list.filter((c) => c.state === 'live').length;
}

void t.test('a local cluster comes up, serves a file, stops cleanly and keeps its data across a restart', async (t) => {
  const tmp = await tempDir('rfs-local-cluster-');
  t.teardown(() => tmp.remove());
  let cluster: LocalCluster | null = null;
  t.teardown(async () => {
    await cluster?.stop();
  });
  const events: ClusterEvent[] = [];
  const options = { dir: tmp.dir, basePort: 0, logLevel: 'warn', heartbeatMs: 300, readyTimeoutMs, onEvent: (e: ClusterEvent) => events.push(e) };
  const t0 = Date.now();
  const phase = (what: string): void => t.comment(`${what}: ${Date.now() - t0} ms`);
  cluster = await startLocalCluster(options);
  phase('ready');
  t.equal(cluster.metadata.length, 3, 'three metadata servers');
  t.equal(cluster.chunkservers.length, 3, 'three chunkservers');
  t.equal(cluster.pids().length, 6, 'six child processes');
  t.ok(cluster.pids().every(alive), 'all running');

  const leader = cluster.metadata.find((m) => m.id === cluster!.leaderId);
  if (leader === undefined) throw new Error('no leader endpoint');
  const status = await unaryCall(leader.address, 'ClusterStatus', {}, 2_000);
  t.equal(status['role'], 'leader', `${leader.name} leads`);
  t.equal((status['members'] as unknown[]).length, 3, 'three members');

  const client = await FileClient.connect(cluster.metadataAddresses, { retryDeadlineMs: 30_000 });
  t.equal(await liveChunkservers(client), 3, 'ListChunkservers: three live');
  t.same([...cluster.chunkserverIds.values()].sort(), [1, 2, 3], 'chunkserver ids as registered');
  const bytes = pattern(3 * MiB + 123, 5);
  await client.writeFile('/f', bytes);
  t.ok((await client.readFile('/f')).equals(bytes), 'a file written reads back');
  const metrics = await fetch(cluster.chunkservers[0]!.metricsUrl);
  t.equal(metrics.status, 200, 'chunkserver metrics served');
  t.match(await (await fetch(leader.metricsUrl)).text(), /rfs_/, 'metadata metrics served');
  client.close();
  phase('file written and read');

  const pids = cluster.pids();
  const addresses = cluster.metadataAddresses;
  await cluster.stop();
  cluster = null;
  phase('stopped');
  t.same(pids.filter(alive), [], 'stop() leaves no child process');
  t.same(events, [], 'no child died unexpectedly');

  // Same dir again: the saved layout (same ports), the same data.
  cluster = await startLocalCluster(options);
  t.same(cluster.metadataAddresses, addresses, 'the saved port layout is reused');
  const again = await FileClient.connect(cluster.metadataAddresses, { retryDeadlineMs: 30_000 });
  t.teardown(() => again.close());
  t.ok((await again.readFile('/f')).equals(bytes), 'the file survived the restart');
  phase('restarted and read');
  await t.rejects(startLocalCluster({ ...options, metadataServers: 5 }), { code: 'LAYOUT_MISMATCH' }, 'another shape on the same dir is refused');
});

void t.test('a busy port is a clear error, and nothing is left running', async (t) => {
  const tmp = await tempDir('rfs-local-cluster-busy-');
  t.teardown(() => tmp.remove());
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const address = busy.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await t.rejects(startLocalCluster({ dir: tmp.dir, basePort: port }), {
    code: 'PORT_IN_USE',
    message: `port ${port} in use — is another rfs cluster running? stop it or use --base-port`,
  });
});

void t.test('a chunkserver that dies is reported and restarted', async (t) => {
  const tmp = await tempDir('rfs-local-cluster-restart-');
  t.teardown(() => tmp.remove());
  const events: ClusterEvent[] = [];
  const cluster = await startLocalCluster({
    dir: tmp.dir,
    basePort: 0,
    metadataServers: 1,
    chunkservers: 1,
    logLevel: 'warn',
    heartbeatMs: 300,
    restart: true,
    restartDelayMs: 100,
    readyTimeoutMs,
    onEvent: (e) => events.push(e),
  });
  t.teardown(() => cluster.stop());
  const first = cluster.child('cs1');
  first?.kill('SIGKILL');
  await waitFor('a new cs1', () => {
    const now = cluster.child('cs1');
    return now !== undefined && now !== first ? now : undefined;
  });
  t.match(events, [{ type: 'exited', name: 'cs1', signal: 'SIGKILL' }, { type: 'restarting', name: 'cs1', attempt: 1 }], 'reported');
  const client = await FileClient.connect(cluster.metadataAddresses, { retryDeadlineMs: 30_000 });
  t.teardown(() => client.close());
  await waitFor('cs1 live again', async () => ((await liveChunkservers(client)) === 1 ? true : undefined), 30_000);
  const pids = cluster.pids();
  t.equal(pids.length, 3, 'three processes started in all');
  await cluster.stop();
  t.same(pids.filter(alive), [], 'no child left after stop()');
});
