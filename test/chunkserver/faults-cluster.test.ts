/**
 * Disk faults in a whole cluster in one process (a 3-server metadata cluster; five chunkservers running the
 * real store, data plane, agent and scrubber, each store on a FaultyDisk: node:fs with errno faults):
 *  - one chunkserver's disk fills in the middle of a write: the write completes on the others, the bytes
 *    read back equal, the full server is reported full and receives no new chunk, replication is restored;
 *  - EIO on reads of a replica: the client reads the right bytes from another replica, and the unreadable
 *    replica is deleted and replaced;
 *  - a chunkserver restarted with its id but an emptied chunk directory: the leader re-replicates what it
 *    thought was there, back to three copies that really exist.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { realComponents } from '../../src/chunkserver/components.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import type { StoreAndDataServer } from '../../src/chunkserver/server.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { FileClient } from '../../src/client/connect.ts';
import { startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { pattern } from '../client/pattern.ts';
import { testAgentLimits, testClusterOptions } from './agent-harness.ts';
import { FaultyDisk } from './faults-disk.ts';

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;

void t.test('disk full mid-write, EIO on read, a restart on an emptied chunk directory', async (t) => {
  const cluster = await startInProcessCluster(3, {
    ...testClusterOptions,
    chunkManagerLimits: { ...testClusterOptions.chunkManagerLimits, replicationTimeoutMs: 5_000, proposalRetryMs: 500 },
  });
  t.teardown(() => cluster.close());
  const tmp = await tempDir('rfs-faults-cluster-');
  t.teardown(() => tmp.remove());
  const logger = pino({ level: process.env.FAULTS_LOG ?? 'silent' });
  const real = realComponents({ chunkSizeBytes });
  const components = (disk: FaultyDisk): StoreAndDataServer => ({
    openStore: (dataDir) => FileChunkStore.open(disk, join(dataDir, 'chunks'), { chunkSizeBytes }),
    startDataServer: (context) => real.startDataServer(context),
  });
  const agentLimits = { ...testAgentLimits, diskReserveBytes: 2 * chunkSizeBytes, diskErrorWindowMs: 3_000 };
  const servers = new Map<number, { server: Chunkserver; dataDir: string; disk: FaultyDisk }>();
  const start = async (dataDir: string, disk: FaultyDisk): Promise<number> => {
    const server = await Chunkserver.start({ dataDir, listen: '127.0.0.1:0', metadata: cluster.addresses, rack: `rack${servers.size % 2}`, components: components(disk), agentLimits, logger });
    const id = await server.agent.whenRegistered();
    servers.set(id, { server, dataDir, disk });
    return id;
  };
  for (let i = 1; i <= 5; i++) await start(join(tmp.dir, `cs${i}`), new FaultyDisk());
  t.teardown(async () => {
    for (const { server } of servers.values()) await server.stop();
  });
  const client = await FileClient.connect(cluster.addresses);
  t.teardown(() => client.close());
  await client.metadata.mutate('Mkdir', { path: '/d', chunkSizeBytes, replication: 3 });
  const locations = async (path: string) => (await client.metadata.chunkLocations(path)).chunks;
  /** Every chunk on three servers that really hold it, sealed at its version. */
  const fullyReplicated = async (path: string, without?: number): Promise<true | undefined> => {
    for (const c of await locations(path)) {
      if (c.replicas.length !== 3 || c.replicas.some((r) => r.id === without)) return undefined;
      for (const r of c.replicas) {
        const info = servers.get(r.id)?.server.store.info(c.handle);
        if (info === undefined || info.version !== c.version || !info.sealed) return undefined;
      }
    }
    return true;
  };

  // ---- A disk fills in the middle of a write.
  const content = pattern(4 * MiB + 77, 11);
  const recoveries: { failedId: number }[] = [];
  const writer = await client.openWriter('/d/full', { stagingBytes: 128 * 1024, onRecovery: (e) => recoveries.push(e) });
  await writer.write(content.subarray(0, MiB + MiB / 2));
  // The chunk being streamed: the last unsealed one (the full chunk before it may still be sealing in the background).
  const current = (await locations('/d/full')).filter((c) => !c.sealed).at(-1)!;
  t.ok(current !== undefined, 'a chunk is being written');
  const full = current.replicas[1]!.id;
  const fullDisk = servers.get(full)!.disk;
  fullDisk.limitBytes = fullDisk.usedBytes() + 4096;
  await writer.write(content.subarray(MiB + MiB / 2));
  await writer.close();
  t.ok((await client.readFile('/d/full')).equals(content), 'the write completed and reads back equal');
  t.ok(fullDisk.injected.ENOSPC > 0, 'the full disk refused writes (ENOSPC)');
  t.ok(recoveries.some((e) => e.failedId === full), `the writer recovered past the full server (${JSON.stringify(recoveries)})`);
  const fullAgent = servers.get(full)!.server.agent;
  const disk = fullAgent.status().disk;
  t.ok(disk.full || (disk.freeBytes !== undefined && disk.freeBytes < agentLimits.diskReserveBytes), `the full server reports no room (${JSON.stringify(disk)})`);
  const chunks = await locations('/d/full');
  const after = chunks.filter((c) => c.handle !== current.handle && c.index > current.index);
  t.ok(after.length > 0 && after.every((c) => !c.replicas.some((r) => r.id === full)), 'no chunk allocated after the failure is on the full server');
  t.notOk(chunks.find((c) => c.handle === current.handle)!.replicas.some((r) => r.id === full), 'the chunk it failed on went on without it');
  await client.writeFile('/d/later', pattern(2 * MiB + 5, 12));
  t.notOk((await locations('/d/later')).some((c) => c.replicas.some((r) => r.id === full)), 'a new file gets no chunk there');
  await waitFor('three real copies of every chunk of /d/full', () => fullyReplicated('/d/full'), 30_000);
  t.pass('replication restored');
  const metricsText = await servers.get(full)!.server.metrics.registry.getSingleMetricAsString('rfs_chunkserver_disk_errors_total');
  t.match(metricsText, /code="DISK_FULL"/, 'counted in rfs_chunkserver_disk_errors_total');
  fullDisk.limitBytes = undefined;

  // ---- EIO on reads of one replica.
  const second = pattern(2 * MiB + 999, 13);
  await client.writeFile('/d/eio', second);
  const chunk = (await locations('/d/eio'))[0]!;
  const bad = chunk.replicas[0]!.id;
  const badDisk = servers.get(bad)!.disk;
  badDisk.failing = [{ pathIncludes: `/${chunk.handle}.data`, kinds: ['read'] }];
  const failures: { replicaId: number; code: string | undefined }[] = [];
  // The fault is injected into the chunkserver's disk layer only: the client's own reads of the replica's
  // files (short-circuit local reads) would not see it, so this client streams every read from chunkservers.
  const ordered = await FileClient.connect(cluster.addresses, {
    localReads: false,
    reader: {
      orderReplicas: (c) => [...c.replicas].sort((a, b) => (a.id === bad ? -1 : b.id === bad ? 1 : 0)),
      onReplicaFailure: (e) => failures.push(e),
    },
  });
  t.teardown(() => ordered.close());
  t.ok((await ordered.read('/d/eio', 0, MiB)).equals(second.subarray(0, MiB)), 'the read returns the right bytes');
  t.same(failures.map((f) => [f.replicaId, f.code]), [[bad, 'IO_ERROR']], 'after failing over from the unreadable replica');
  await waitFor('the unreadable replica replaced', () => (servers.get(bad)!.server.agent.status().unreadableReplicasReported > 0 ? fullyReplicated('/d/eio') : undefined), 30_000);
  t.ok((await client.readFile('/d/eio')).equals(second), 'three readable copies; the file reads back equal');
  t.equal(servers.get(bad)!.server.agent.status().unreadableReplicasReported, 1, 'reported as unreadable');
  badDisk.failing = [];

  // ---- A restart with the same id on an emptied chunk directory.
  const [emptiedId, emptied] = [...servers].find(([, s]) => s.server.store.list().length > 0)!;
  const held = emptied.server.store.list().length;
  await emptied.server.stop();
  servers.delete(emptiedId);
  await rm(join(emptied.dataDir, 'chunks'), { recursive: true });
  const restartedId = await start(emptied.dataDir, new FaultyDisk());
  t.equal(restartedId, emptiedId, 'it comes back with its id');
  t.equal(servers.get(restartedId)!.server.store.list().length, 0, `holding none of its ${held} replicas`);
  for (const path of ['/d/full', '/d/later', '/d/eio']) {
    await waitFor(`three real copies of every chunk of ${path}`, () => fullyReplicated(path), 30_000);
  }
  t.pass('every chunk back at three copies that exist');
  for (const [path, bytes] of [['/d/full', content], ['/d/eio', second]] as const) t.ok((await client.readFile(path)).equals(bytes), `${path} reads back equal`);
});
