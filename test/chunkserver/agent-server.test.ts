/**
 * The chunkserver wiring (Chunkserver.start) on the placeholder memory store and an idle data server, against
 * a real metadata cluster: it registers at its data server's real address, keeps its id in the data dir across
 * a restart, refuses a data dir of another id, and serves /metrics. And the `rfs chunkserver` command, which
 * stops with a clear message until the store and data plane are merged.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { Chunkserver, idFileName } from '../../src/chunkserver/server.ts';
import type { StoreAndDataServer } from '../../src/chunkserver/server.ts';
import { startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { listChunkservers, testAgentLimits, testClusterOptions } from './agent-harness.ts';
import { MemoryChunkStore, startIdleDataServer } from './memory-store-agent.ts';

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

void t.test('Chunkserver.start: registration, id file, restart, /metrics', async (t) => {
  const cluster = await startInProcessCluster(3, testClusterOptions);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const leaderAddress = cluster.peers.get(leader.id)!.client;
  const tmp = await tempDir('rfs-chunkserver-');
  t.teardown(() => tmp.remove());
  const dataDir = join(tmp.dir, 'c1');
  const store = new MemoryChunkStore();
  await store.put(3_000_001, 1, Buffer.from('held'), true);
  const components: StoreAndDataServer = {
    openStore: () => Promise.resolve(store),
    startDataServer: (context) => startIdleDataServer(context.listen),
  };
  const options = {
    dataDir,
    listen: '127.0.0.1:0',
    metadata: cluster.addresses,
    rack: 'rack-a',
    components,
    metricsListen: '127.0.0.1:0',
    agentLimits: testAgentLimits,
    logger: pino({ level: 'silent' }),
  };

  const server = await Chunkserver.start(options);
  const id = await server.agent.whenRegistered();
  t.equal(server.address, `127.0.0.1:${server.dataPort}`, 'advertises the data server\'s real port');
  t.not(server.dataPort, 0);
  const record = (await listChunkservers(leaderAddress)).find((c) => c.id === id);
  t.same(record, { id, address: server.address, state: 'live' }, 'registered at that address');
  t.same(JSON.parse(await readFile(join(dataDir, idFileName), 'utf8')), { id }, 'the id is in the data dir');

  const metrics = await httpGet(`http://127.0.0.1:${server.metricsPort}/metrics`);
  t.equal(metrics.status, 200);
  for (const name of [
    'rfs_chunkserver_bytes_in_total',
    'rfs_chunkserver_bytes_out_total',
    'rfs_chunkserver_write_seconds_bucket',
    'rfs_chunkserver_read_seconds_bucket',
    'rfs_chunkserver_checksum_failures_total',
    'rfs_chunkserver_rereplication_bytes_total',
  ]) {
    t.match(metrics.body, new RegExp(`^${name}`, 'm'), name);
  }
  t.match(metrics.body, /^rfs_chunkserver_replicas 1$/m, 'replicas held, read at scrape time');
  t.equal((await httpGet(`http://127.0.0.1:${server.metricsPort}/other`)).status, 404);
  await server.stop();

  // A restart on the same data dir: the same id.
  const again = await Chunkserver.start({ ...options, expectedId: id });
  t.equal(await again.agent.whenRegistered(), id, 'same id after a restart');
  await waitFor('a full report after the restart', () => (again.agent.status().fullReportsSent >= 1 ? true : undefined));
  t.equal(again.agent.status().consecutiveFailures, 0, 'exchanges succeed after the restart');
  await again.stop();

  // The data dir of another server: refused, and nothing left running.
  await t.rejects(Chunkserver.start({ ...options, expectedId: id + 1 }), { code: 'ID_MISMATCH' });
});

function runCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/rfs.ts', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

void t.test('rfs chunkserver: clear messages', async (t) => {
  const tmp = await tempDir('rfs-chunkserver-cli-');
  t.teardown(() => tmp.remove());
  const base = ['chunkserver', '--data-dir', tmp.dir, '--metadata', '127.0.0.1:1', '--listen', '127.0.0.1:0'];
  const noRack = await runCli(base);
  t.equal(noRack.code, 2, 'usage error');
  t.match(noRack.stderr, /--rack is required/);
  const unavailable = await runCli([...base, '--rack', 'r1']);
  t.equal(unavailable.code, 69, 'EX_UNAVAILABLE');
  t.match(unavailable.stderr, /data plane not available yet/);
});
