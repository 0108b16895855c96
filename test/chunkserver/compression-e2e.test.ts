/**
 * Compression end to end, every part real (the in-process harness of e2e.test.ts): a 3-server metadata
 * cluster, four chunkservers on the local disk, the client over gRPC and TCP.
 *  - a compressible file written into an lz4 directory reads back equal (whole and in ranges), and every
 *    replica of every chunk is stored packed, measurably smaller than the logical bytes (files and metrics);
 *  - a file created `none` in the same directory is stored raw;
 *  - a chunkserver stopped: the leader re-replicates, and the new copies are stored compressed too.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { realComponents } from '../../src/chunkserver/components.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import { FileClient } from '../../src/client/connect.ts';
import { startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { testAgentLimits, testClusterOptions } from './agent-harness.ts';
import { compressible } from './compression-fixtures.ts';

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;

/** Bytes on disk per replica file of `handle` on one server's data dir: { suffix: size }. */
async function storedFiles(dataDir: string, handle: number): Promise<Record<string, number>> {
  const dir = join(dataDir, 'chunks');
  const out: Record<string, number> = {};
  for (const name of await readdir(dir)) {
    const [stem, suffix] = name.split('.');
    if (stem === String(handle) && suffix !== 'meta') out[suffix ?? ''] = (await stat(join(dir, name))).size;
  }
  return out;
}

async function gauge(server: Chunkserver, name: string): Promise<number> {
  const metric = server.metrics.registry.getSingleMetric(name);
  const value = (await metric?.get())?.values[0]?.value;
  return value ?? -1;
}

void t.test('lz4 end to end: stored compressed, read back equal, re-replicated compressed', async (t) => {
  const cluster = await startInProcessCluster(3, {
    ...testClusterOptions,
    chunkManagerLimits: { ...testClusterOptions.chunkManagerLimits, replicationTimeoutMs: 5_000, proposalRetryMs: 500 },
  });
  t.teardown(() => cluster.close());
  const tmp = await tempDir('rfs-lz4-e2e-');
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
    servers.set(await server.agent.whenRegistered(), { server, dataDir });
  }
  t.teardown(async () => {
    for (const { server } of servers.values()) await server.stop();
  });

  const client = await FileClient.connect(cluster.addresses);
  t.teardown(() => client.close());
  await client.metadata.mutate('Mkdir', { path: '/z', chunkSizeBytes, replication: 3, compression: 'lz4' });
  await t.rejects(client.metadata.mkdir('/bad', { compression: 'zstd' as 'lz4' }), { code: 'EINVAL' }, 'an unknown kind is refused');
  t.equal((await client.metadata.stat('/z')).compression, 'lz4');

  // ---- A compressible file in the lz4 directory.
  const data = compressible(7, 2 * MiB + 54_321);
  await client.writeFile('/z/f', data);
  t.equal((await client.metadata.stat('/z/f')).compression, 'lz4', 'the file inherited lz4');
  t.ok((await client.readFile('/z/f')).equals(data), 'read back equal');
  t.ok((await client.read('/z/f', MiB - 100, 300_000)).equals(data.subarray(MiB - 100, MiB + 299_900)), 'a range across chunks');
  const chunks = (await client.metadata.chunkLocations('/z/f')).chunks;
  t.same(chunks.map((c) => c.lengthBytes), [MiB, MiB, 54_321]);
  let storedBytes = 0;
  let logicalBytes = 0;
  for (const c of chunks) {
    t.equal(c.replicas.length, 3);
    for (const r of c.replicas) {
      const files = await storedFiles(servers.get(r.id)!.dataDir, c.handle);
      t.same(Object.keys(files), ['lz4'], `chunk ${c.handle} on ${r.id}: packed only`);
      storedBytes += files['lz4'] ?? 0;
      logicalBytes += c.lengthBytes;
    }
  }
  t.ok(storedBytes * 3 < logicalBytes, `stored ${storedBytes} bytes for ${logicalBytes} logical (ratio ${(logicalBytes / storedBytes).toFixed(2)})`);
  t.comment(`compression ratio ${(logicalBytes / storedBytes).toFixed(2)}`);
  let metricLogical = 0;
  let metricStored = 0;
  for (const { server } of servers.values()) {
    metricLogical += await gauge(server, 'rfs_chunkserver_compressed_logical_bytes');
    metricStored += await gauge(server, 'rfs_chunkserver_compressed_stored_bytes');
  }
  t.same([metricLogical, metricStored], [logicalBytes, storedBytes], 'the metrics count the same bytes');

  // ---- An explicit none in the same directory is stored raw.
  const plain = compressible(8, 300_000);
  const writer = await client.openWriter('/z/plain', { compression: 'none' });
  await writer.write(plain);
  await writer.close();
  t.equal((await client.metadata.stat('/z/plain')).compression, 'none');
  t.ok((await client.readFile('/z/plain')).equals(plain));
  const [plainChunk] = (await client.metadata.chunkLocations('/z/plain')).chunks;
  t.same(Object.keys(await storedFiles(servers.get(plainChunk!.replicas[0]!.id)!.dataDir, plainChunk!.handle)), ['data'], 'raw');

  // ---- A chunkserver stopped: every chunk of /z/f is copied back to three servers, compressed.
  const victim = chunks[0]!.replicas[0]!.id;
  await servers.get(victim)!.server.stop();
  const restored = await waitFor(
    'three copies of every chunk without the stopped server',
    async () => {
      const now = (await client.metadata.chunkLocations('/z/f')).chunks;
      return now.every((c) => c.replicas.length === 3 && !c.replicas.some((r) => r.id === victim)) ? now : undefined;
    },
    30_000,
  );
  const copied = restored.flatMap((c) => c.replicas.filter((r) => !chunks.find((o) => o.handle === c.handle)!.replicas.some((o) => o.id === r.id)).map((r) => ({ c, r })));
  t.ok(copied.length > 0, `${copied.length} replicas were copied`);
  for (const { c, r } of copied) {
    // A copy is listed once it is sealed; it packs right after (inside the same seal), so under load the
    // listing can come first: wait for the raw file to go, then check what stays.
    const files = await waitFor(
      `the copy of chunk ${c.handle} on ${r.id} to be packed`,
      async () => {
        const now = await storedFiles(servers.get(r.id)!.dataDir, c.handle);
        return Object.keys(now).join() === 'lz4' ? now : undefined;
      },
      20_000,
    ).catch(() => storedFiles(servers.get(r.id)!.dataDir, c.handle));
    t.same(Object.keys(files), ['lz4'], `the copy of chunk ${c.handle} on ${r.id} is packed`);
    t.ok((files['lz4'] ?? Infinity) * 3 < c.lengthBytes, 'and small');
  }
  t.ok((await client.readFile('/z/f')).equals(data), 'still equal after re-replication');
});
