/**
 * The whole data path in one process, every part real: a 3-server metadata cluster (RocksDB, gRPC), four
 * chunkservers (FileChunkStore on the local disk, the TCP data plane, the metadata agent, the scrubber), and
 * the client (FileWriter, FileReader over gRPC and TCP).
 *  - a file spanning chunks is written with replication 3 and read back equal, ranges included;
 *  - a chunkserver stopped in the middle of a write: the write completes on the survivors (a new chunk
 *    version), the bytes read back equal, and the leader restores three copies of every chunk;
 *  - a bit flipped in a stored chunk file: the read still returns the right bytes (another replica), the
 *    bad replica is reported, deleted and replaced, so the chunk is back at three good copies.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { realComponents } from '../../src/chunkserver/components.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import { FileClient } from '../../src/client/connect.ts';
import { startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { testAgentLimits, testClusterOptions } from './agent-harness.ts';
import { pattern } from '../client/pattern.ts';

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;


void t.test('the data path end to end: write, a chunkserver lost mid-write, a flipped bit', async (t) => {
  const cluster = await startInProcessCluster(3, {
    ...testClusterOptions,
    chunkManagerLimits: { ...testClusterOptions.chunkManagerLimits, replicationTimeoutMs: 5_000, proposalRetryMs: 500 },
  });
  t.teardown(() => cluster.close());
  const tmp = await tempDir('rfs-e2e-');
  t.teardown(() => tmp.remove());
  const logger = pino({ level: 'silent' });
  const servers = new Map<number, { server: Chunkserver; dataDir: string }>();
  for (let i = 1; i <= 4; i++) {
    const dataDir = join(tmp.dir, `cs${i}`);
    const server = await Chunkserver.start({
      dataDir,
      listen: '127.0.0.1:0',
      metadata: cluster.addresses,
      rack: `rack${i % 2}`,
      components: realComponents({ chunkSizeBytes }),
      agentLimits: testAgentLimits,
      logger,
    });
    const id = await server.agent.whenRegistered();
    servers.set(id, { server, dataDir });
  }
  t.teardown(async () => {
    for (const { server } of servers.values()) await server.stop();
  });

  const client = await FileClient.connect(cluster.addresses);
  t.teardown(() => client.close());
  await client.metadata.mutate('Mkdir', { path: '/d', chunkSizeBytes, replication: 3 });
  await t.rejects(client.metadata.mutate('Mkdir', { path: '/huge', chunkSizeBytes: 128 * MiB }), { code: 'EINVAL' }, 'chunks larger than a chunkserver takes are refused');

  // ---- A file of several chunks, read back whole and in ranges.
  const first = pattern(3 * MiB + 4321, 1);
  await client.writeFile('/d/one', first);
  t.ok((await client.readFile('/d/one')).equals(first), 'read back equal');
  t.ok((await client.read('/d/one', MiB - 7, MiB + 20)).equals(first.subarray(MiB - 7, 2 * MiB + 13)), 'a range across chunks');
  const oneChunks = (await client.metadata.chunkLocations('/d/one')).chunks;
  t.same(oneChunks.map((c) => c.lengthBytes), [MiB, MiB, MiB, 4321]);
  t.ok(oneChunks.every((c) => c.sealed && c.replicas.length === 3), 'every chunk sealed on three servers');

  // ---- A chunkserver stopped in the middle of a write.
  const second = pattern(4 * MiB + 99, 2);
  const writer = await client.openWriter('/d/two', { stagingBytes: 128 * 1024, onRecovery: (e) => t.comment(`recovery ${JSON.stringify(e)}`) });
  const recoveries: number[] = [];
  await writer.write(second.subarray(0, MiB + MiB / 2));
  // The chunk being streamed: the last unsealed one (the full chunk before it may still be sealing in the background).
  const current = (await client.metadata.chunkLocations('/d/two')).chunks.filter((c) => !c.sealed).at(-1)!;
  t.ok(current !== undefined, 'a chunk is being written');
  const victim = current.replicas[1]!.id; // the middle of the pipeline
  t.comment(`chain ${JSON.stringify(current.replicas)} victim ${victim}`);
  await servers.get(victim)!.server.stop();
  await writer.write(second.subarray(MiB + MiB / 2));
  await writer.close();
  recoveries.push(writer.position);
  t.ok((await client.readFile('/d/two')).equals(second), 'the write completed and reads back equal');
  const afterKill = (await client.metadata.chunkLocations('/d/two')).chunks.find((c) => c.handle === current.handle)!;
  t.ok(afterKill.version > current.version, 'the chunk went on at a new version');
  t.notOk(afterKill.replicas.some((r) => r.id === victim), 'without the stopped server');
  await waitFor(
    'three copies of every chunk again',
    async () => {
      const chunks = [...(await client.metadata.chunkLocations('/d/one')).chunks, ...(await client.metadata.chunkLocations('/d/two')).chunks];
      return chunks.every((c) => c.replicas.length === 3 && !c.replicas.some((r) => r.id === victim)) ? true : undefined;
    },
    30_000,
  );
  t.pass('replication factor restored on the three servers left');
  t.ok((await client.readFile('/d/two')).equals(second), 'still equal after re-replication');

  // ---- A flipped bit in a stored chunk file.
  const chunk = (await client.metadata.chunkLocations('/d/one')).chunks[1]!;
  const holder = chunk.replicas[0]!.id;
  const dataFile = join(servers.get(holder)!.dataDir, 'chunks', `${chunk.handle}.data`);
  const stored = await readFile(dataFile);
  stored[12345] = stored[12345]! ^ 0x04;
  await writeFile(dataFile, stored);
  const failures: { replicaId: number; code: string | undefined }[] = [];
  const ordered = await FileClient.connect(cluster.addresses, {
    reader: {
      // The corrupt replica first, so this read must fail over.
      orderReplicas: (c) => [...c.replicas].sort((a, b) => (a.id === holder ? -1 : b.id === holder ? 1 : 0)),
      onReplicaFailure: (e) => failures.push(e),
    },
  });
  t.teardown(() => ordered.close());
  t.ok((await ordered.read('/d/one', MiB, MiB)).equals(first.subarray(MiB, 2 * MiB)), 'the read returns the right bytes');
  t.same(failures.map((f) => [f.replicaId, f.code]), [[holder, 'CHECKSUM_MISMATCH']], 'after failing over from the corrupt replica');
  await waitFor(
    'the corrupt replica replaced',
    async () => {
      const c = (await client.metadata.chunkLocations('/d/one')).chunks[1]!;
      const holderStore = servers.get(holder)!.server.store;
      const good = holderStore.info(chunk.handle) === undefined || (await holderStore.verify(chunk.handle).then(() => true, () => false));
      return c.replicas.length === 3 && good ? true : undefined;
    },
    30_000,
  );
  t.ok((await client.readFile('/d/one')).equals(first), 'three good copies; the file reads back equal');
});
