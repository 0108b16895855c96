/**
 * Issue 4's acceptance test with real processes: three `rfs chunkserver` OS processes (real store on disk,
 * TCP data plane) under a 3-server metadata cluster. A file is written with replication 3; in the middle of
 * the write the chunkserver in the middle of the current chunk's pipeline is SIGKILLed. The write completes
 * on the survivors (new chunk version), the bytes read back equal, and once the killed server is started
 * again on its disk (its replica of the chunk is now stale and is deleted) the leader restores three copies
 * of every chunk.
 *
 * The same with the chunkserver SIGSTOPped instead: its connections stay open and it acknowledges nothing,
 * so only the stall watches (src/chunkserver/dataplane/stall.ts) notice; the write goes on without it and the
 * file reads back (a read that picks the paused server times out and moves on).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { FileClient } from '../../src/client/connect.ts';
import { stablePort, startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { testClusterOptions } from './agent-harness.ts';
import { pattern } from '../client/pattern.ts';

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;


interface Proc {
  child: ChildProcess;
  readonly port: number;
  readonly dataDir: string;
  readonly rack: string;
}

const clusterOptions = {
  ...testClusterOptions,
  chunkManagerLimits: { heartbeatTimeoutMs: 3_000, leaderGraceMs: 3_000, replicationTimeoutMs: 10_000, proposalRetryMs: 500 },
};

/** Waits until the leader lists three live chunkservers; their ids by address. */
function threeLiveChunkservers(client: FileClient): Promise<Map<string, number>> {
  return waitFor(
    'three live chunkservers',
    async () => {
      const r = await client.metadata.call('ListChunkservers', {});
      const up = ((r['chunkservers'] ?? []) as { id: number | string; address: string; state: string }[]).filter((c) => c.state === 'live');
      return up.length === 3 ? new Map(up.map((c) => [c.address, Number(c.id)])) : undefined;
    },
    60_000,
  );
}

/**
 * The chunk of `path` being streamed (the last unsealed one: the full chunk before it may still be sealing in
 * the background) and the middle replica of its chain: its id and its process.
 */
async function middleOfCurrentChain(client: FileClient, path: string, procs: readonly Proc[], idsByAddress: ReadonlyMap<string, number>) {
  const current = (await client.metadata.chunkLocations(path)).chunks.filter((c) => !c.sealed).at(-1);
  if (current === undefined) throw new Error('no chunk being written');
  const id = current.replicas[1]!.id;
  const proc = procs.find((p) => idsByAddress.get(`127.0.0.1:${p.port}`) === id)!;
  return { current, id, proc };
}

/** Starts `rfs chunkserver` processes against `metadata`; `extra`: more flags. */
function startProcess(metadata: readonly string[], extra: readonly string[] = []): (p: Omit<Proc, 'child'>) => Proc {
  return (p) => {
    const child = spawn(
      process.execPath,
      [
        ...['--import', 'tsx', 'src/cli/rfs.ts', 'chunkserver', '--data-dir', p.dataDir, '--metadata', metadata.join(','), '--rack', p.rack],
        ...['--listen', `127.0.0.1:${p.port}`, '--heartbeat-ms', '300', '--log-level', 'warn', ...extra],
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    return { ...p, child };
  };
}

void t.test('three chunkserver processes, one SIGKILLed mid-write', async (t) => {
  const cluster = await startInProcessCluster(3, clusterOptions);
  t.teardown(() => cluster.close());
  const tmp = await tempDir('rfs-cs-procs-');
  t.teardown(() => tmp.remove());
  const procs: Proc[] = [];
  const start = startProcess(cluster.addresses);
  for (let i = 0; i < 3; i++) procs.push(start({ port: await stablePort(), dataDir: join(tmp.dir, `cs${i}`), rack: `rack${i}` }));
  t.teardown(() => {
    for (const p of procs) p.child.kill('SIGKILL');
  });

  const client = await FileClient.connect(cluster.addresses, { retryDeadlineMs: 30_000 });
  t.teardown(() => client.close());
  const idsByAddress = await threeLiveChunkservers(client);
  await client.metadata.mutate('Mkdir', { path: '/d', chunkSizeBytes, replication: 3 });

  const bytes = pattern(4 * MiB + 777, 3);
  const writer = await client.openWriter('/d/f', { stagingBytes: 128 * 1024 });
  await writer.write(bytes.subarray(0, MiB + MiB / 2));
  const { current, id: victimId, proc: victim } = await middleOfCurrentChain(client, '/d/f', procs, idsByAddress);
  victim.child.kill('SIGKILL');
  await writer.write(bytes.subarray(MiB + MiB / 2));
  const { lengthBytes } = await writer.close();
  t.equal(lengthBytes, bytes.length, 'the write completed');
  t.ok((await client.readFile('/d/f')).equals(bytes), 'the bytes read back equal');
  const after = (await client.metadata.chunkLocations('/d/f')).chunks;
  const resumed = after.find((c) => c.handle === current.handle)!;
  t.ok(resumed.version > current.version && !resumed.replicas.some((r) => r.id === victimId), 'the chunk went on at a new version without the killed server');

  // The killed server comes back on its disk: stale replicas are deleted, and every chunk gets three copies.
  procs[procs.indexOf(victim)] = start(victim);
  await waitFor(
    'three copies of every chunk',
    async () => {
      const chunks = (await client.metadata.chunkLocations('/d/f')).chunks;
      return chunks.length === 5 && chunks.every((c) => c.sealed && c.replicas.length === 3) ? true : undefined;
    },
    90_000,
  );
  t.pass('replication factor restored');
  const restored = (await client.metadata.chunkLocations('/d/f')).chunks.find((c) => c.handle === current.handle)!;
  t.ok(restored.replicas.some((r) => r.id === victimId), 'the restarted server holds a fresh copy of the resumed chunk');
  t.ok((await client.readFile('/d/f')).equals(bytes), 'still equal');
});

void t.test('three chunkserver processes, one SIGSTOPped mid-write: the stall watches go on without it', async (t) => {
  const cluster = await startInProcessCluster(3, clusterOptions);
  t.teardown(() => cluster.close());
  const tmp = await tempDir('rfs-cs-pause-');
  t.teardown(() => tmp.remove());
  // A hop gives up on a silent replica after it within 0.5 s per replica after the hop; the writer after 1.5 s.
  const stallMs = 500;
  const start = startProcess(cluster.addresses, ['--pipeline-stall-ms', String(stallMs)]);
  const procs: Proc[] = [];
  for (let i = 0; i < 3; i++) procs.push(start({ port: await stablePort(), dataDir: join(tmp.dir, `cs${i}`), rack: `rack${i}` }));
  t.teardown(() => {
    for (const p of procs) {
      p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    }
  });

  const client = await FileClient.connect(cluster.addresses, { retryDeadlineMs: 30_000, pipelineStallMs: stallMs, readStallMs: 2 * stallMs });
  t.teardown(() => client.close());
  const idsByAddress = await threeLiveChunkservers(client);
  await client.metadata.mutate('Mkdir', { path: '/d', chunkSizeBytes, replication: 3 });

  const bytes = pattern(3 * MiB + 333, 4);
  const writer = await client.openWriter('/d/f', { stagingBytes: 128 * 1024 });
  await writer.write(bytes.subarray(0, MiB + MiB / 2));
  const { current, id: pausedId, proc: paused } = await middleOfCurrentChain(client, '/d/f', procs, idsByAddress);
  paused.child.kill('SIGSTOP');
  const started = Date.now();
  await writer.write(bytes.subarray(MiB + MiB / 2));
  const { lengthBytes } = await writer.close();
  t.equal(lengthBytes, bytes.length, `the write completed (${Date.now() - started} ms after the pause)`);
  const after = (await client.metadata.chunkLocations('/d/f')).chunks;
  const resumed = after.find((c) => c.handle === current.handle)!;
  t.ok(resumed.version > current.version && !resumed.replicas.some((r) => r.id === pausedId), 'the chunk went on at a new version without the paused server');
  t.ok((await client.readFile('/d/f')).equals(bytes), 'the bytes read back equal while it is still paused');
  paused.child.kill('SIGCONT');
});
