/**
 * Lease recovery end to end, every part real (3 metadata servers, 3 chunkservers on the local disk, the
 * client over gRPC and TCP): a writer vanishes in the middle of a chunk (its client closed, its lease never
 * renewed again). The leader recovers the file: the unsealed chunk is sealed at the length its replicas agree
 * on, the file is completed and reads back as a prefix of what was written, and it takes a new writer again.
 * The writer has also allocated the next chunk ahead (nothing written to it): recovery drops it.
 * Then the same with a writer in a child process killed with SIGKILL.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import t from 'tap';
import { realComponents } from '../../src/chunkserver/components.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import { FileClient } from '../../src/client/connect.ts';
import { connect } from '../../src/client/fs.ts';
import { startInProcessCluster, tempDir, waitFor } from '../metadata/harness.ts';
import { testAgentLimits, testClusterOptions } from './agent-harness.ts';
import { pattern } from '../client/pattern.ts';

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;
/**
 * The writers' lease, renewed every third of it. Short, so recovery comes soon after a writer vanishes; long
 * enough that a live writer's renewals, each a Raft commit with fsync, never all miss it on a loaded CI machine.
 */
const leaseMs = 3_000;

void t.test('a writer that vanished mid-chunk: the leader seals what its replicas agree on and completes the file', async (t) => {
  const cluster = await startInProcessCluster(3, {
    ...testClusterOptions,
    chunkManagerLimits: { ...testClusterOptions.chunkManagerLimits, proposalRetryMs: 500, leaseRecoveryDelayMs: 200, leaseRecoveryAnswerWaitMs: 2_000 },
  });
  t.teardown(() => cluster.close());
  const tmp = await tempDir('rfs-lease-recovery-');
  t.teardown(() => tmp.remove());
  const logger = pino({ level: 'silent' });
  const servers: Chunkserver[] = [];
  for (let i = 1; i <= 3; i++) {
    const server = await Chunkserver.start({
      dataDir: join(tmp.dir, `cs${i}`),
      listen: '127.0.0.1:0',
      metadata: cluster.addresses,
      rack: `rack${i}`,
      components: realComponents({ chunkSizeBytes }),
      agentLimits: testAgentLimits,
      logger,
    });
    await server.agent.whenRegistered();
    servers.push(server);
  }
  t.teardown(async () => {
    for (const server of servers) await server.stop();
  });

  const client = await FileClient.connect(cluster.addresses);
  t.teardown(() => client.close());
  await client.metadata.mutate('Mkdir', { path: '/d', chunkSizeBytes, replication: 3 });

  // The writer: a full chunk and half of the next, then its process is gone (no close, no abort). It allocates
  // the next chunk ahead once half of the current one is left and the previous chunk's seal has finished: the
  // writes below wait for that seal, so the third chunk is allocated (and left empty) on every run.
  const bytes = pattern(MiB + MiB / 2 + 1000, 5);
  const vanishing = await FileClient.connect(cluster.addresses);
  // Its renewals run on a timer this test stops when the writer "dies" (a process gone renews nothing).
  const renewals = new Set<NodeJS.Timeout>();
  const timers = {
    setInterval(fn: () => void, ms: number) {
      const timer = setInterval(fn, ms);
      renewals.add(timer);
      return () => clearInterval(timer);
    },
  };
  const writer = await vanishing.openWriter('/d/f', { leaseDurationMs: leaseMs, stagingBytes: 64 * 1024, timers });
  let layout = ''; // [index, sealed, length] of each chunk, as last seen: printed if a wait times out
  const chunksNow = async () => {
    const chunks = (await client.metadata.chunkLocations('/d/f')).chunks;
    layout = JSON.stringify(chunks.map((c) => [c.index, c.sealed, c.lengthBytes]));
    return chunks;
  };
  await writer.write(bytes.subarray(0, MiB + 1));
  await waitFor('the first chunk sealed', async () => ((await chunksNow())[0]?.sealed === true ? true : undefined), 10_000, () => layout);
  // The leader answered the writer's seal when it applied it, before this read: give that answer time to land.
  await new Promise((resolve) => setTimeout(resolve, 100));
  for (let at = MiB + 1; at < bytes.length; at += 100_000) await writer.write(bytes.subarray(at, Math.min(bytes.length, at + 100_000)));
  await waitFor('the third chunk allocated ahead', async () => {
    const chunks = await chunksNow();
    return chunks.length === 3 && chunks[0]!.sealed && !chunks[1]!.sealed && !chunks[2]!.sealed ? true : undefined;
  }, 10_000, () => layout);
  await new Promise((resolve) => setTimeout(resolve, 200)); // let the sent packets land
  const before = await client.metadata.stat('/d/f');
  t.equal(before.complete, false, 'incomplete while the writer lives');
  for (const timer of renewals) clearInterval(timer);
  vanishing.close();

  // Another writer is refused while the lease lives and while the leader recovers the file.
  const fs = await connect({ metadata: cluster.addresses });
  t.teardown(() => fs.close());
  await t.rejects(fs.appendFile('/d/f', 'x'), { code: 'EBUSY' }, 'another writer must wait');

  const started = Date.now();
  let lastSeen = '';
  await waitFor(
    'the file recovered',
    async () => {
      const leader = await cluster.leader();
      const st = await leader.fsm.stat('/d/f');
      const loc = await client.metadata.chunkLocations('/d/f');
      lastSeen = JSON.stringify({ st: st.ok ? { complete: st.value.complete, lease: st.value.lease, length: st.value.lengthBytes } : st.code, chunks: loc.chunks.map((c) => [c.handle, c.version, c.sealed, c.lengthBytes, c.replicas.map((r) => r.id)]), recov: leader.chunks.current?.leaseRecoveries(), leases: [...(leader.chunks.current?.currentView().leases ?? new Map()).entries()], now: Date.now() });
      return st.ok && st.value.complete ? true : undefined;
    },
    30_000,
    () => lastSeen,
  );
  t.comment(`recovered ${Date.now() - started} ms after the writer vanished`);
  const after = await client.metadata.stat('/d/f');
  const chunks = (await client.metadata.chunkLocations('/d/f')).chunks;
  t.ok(after.lengthBytes > MiB && after.lengthBytes <= bytes.length, `length ${after.lengthBytes}: the full chunk and some of the next`);
  t.ok(chunks.every((c) => c.sealed), 'every chunk sealed');
  t.same(chunks.map((c) => c.lengthBytes), [MiB, after.lengthBytes - MiB]);
  const read = await client.readFile('/d/f');
  t.equal(read.length, after.lengthBytes);
  t.ok(read.equals(bytes.subarray(0, read.length)), 'the file is a prefix of what was written');
  // Every replica of the recovered chunk is sealed and holds those bytes.
  await waitFor('three replicas listed', async () => ((await client.metadata.chunkLocations('/d/f')).chunks[1]!.replicas.length === 3 ? true : undefined), 20_000);
  const last = (await client.metadata.chunkLocations('/d/f')).chunks[1]!;
  for (const server of servers) {
    const info = server.store.info(last.handle);
    t.same(info && [info.version, info.lengthBytes, info.sealed, info.checksum], [last.version, last.lengthBytes, true, last.checksum], `${server.address}: sealed at the recorded length and checksum`);
    const got = await server.store.read(last.handle, last.version, 0, last.lengthBytes);
    t.ok(Buffer.from(got).equals(bytes.subarray(MiB, MiB + last.lengthBytes)), `${server.address} holds the recovered bytes`);
  }

  // The file takes a writer again: an append lands after the recovered bytes.
  await fs.appendFile('/d/f', 'tail');
  const whole = await client.readFile('/d/f');
  t.ok(whole.equals(Buffer.concat([bytes.subarray(0, after.lengthBytes), Buffer.from('tail')])), 'appended after the recovered prefix');
  // ---- A writer process killed with SIGKILL in the middle of its second chunk.
  const size = MiB + MiB / 2 + 777;
  const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vanishing-writer.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, cluster.addresses.join(','), '/d/killed', String(size), String(leaseMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('written')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`the writer exited ${code} before writing`)));
  });
  await new Promise((resolve) => setTimeout(resolve, 200)); // let the sent packets land
  t.equal((await client.metadata.stat('/d/killed')).complete, false, 'incomplete while its writer lives');
  child.kill('SIGKILL');
  await exited;
  const killedAt = Date.now();
  await waitFor('the killed writer\'s file recovered', async () => ((await client.metadata.stat('/d/killed')).complete ? true : undefined), 30_000);
  const killed = await client.metadata.stat('/d/killed');
  t.comment(`recovered ${Date.now() - killedAt} ms after SIGKILL: ${killed.lengthBytes} of ${size} bytes`);
  t.ok(killed.lengthBytes >= MiB && killed.lengthBytes <= size, `length ${killed.lengthBytes}: at least the first chunk`);
  const killedBytes = await client.readFile('/d/killed');
  t.ok(killedBytes.equals(pattern(size, 9).subarray(0, killed.lengthBytes)), 'a prefix of what the killed writer wrote');
});
