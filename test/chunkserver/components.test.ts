/**
 * The production chunkserver wiring (Chunkserver.start with realComponents: FileChunkStore, the TCP data
 * server, the scrubber, the metadata agent) against a scripted metadata link, so each case controls what the
 * leader says and when:
 *  - every scrub and copy event is counted once (an I/O error, a checksum failure, a re-replication), and a
 *    clean scrub sends nothing, so it is not counted as bytes out;
 *  - a copy to a target that accepts and never answers (a SIGSTOPped chunkserver) does not hold up stop();
 *  - the store logs what it finds at open (a corrupt replica dropped), under component=store;
 *  - a copy keeps to the configured data-plane limits (a packetBytesMax below the 1 MiB default);
 *  - a restarted chunkserver serves pipelines under its saved id while the metadata service is out of reach
 *    (a new one, with no id yet, still refuses them).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import t from 'tap';
import type { Test } from 'tap';
import type { AgentCommand, ChunkReportRequest, CommandsReply, MetadataLink, RegisterRequest } from '../../src/chunkserver/agent.ts';
import { MetadataLinkError } from '../../src/chunkserver/agent.ts';
import type { RealComponentsOptions } from '../../src/chunkserver/components.ts';
import { realComponents } from '../../src/chunkserver/components.ts';
import { readRange } from '../../src/chunkserver/dataplane/read.ts';
import { PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { TcpDataNetwork } from '../../src/chunkserver/dataplane/tcp.ts';
import type { Disk } from '../../src/chunkserver/disk.ts';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import type { StoreAndDataServer } from '../../src/chunkserver/server.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { testAgentLimits } from './agent-harness.ts';
import { settle, waitFor } from './dataplane-harness.ts';
import { FaultyDisk } from './faults-disk.ts';

const replicaBytes = 300_000;
/** Fast enough that a replica is scrubbed as soon as the server starts. */
const scrubBytesPerSecond = 64 * 1024 * 1024;

/**
 * A metadata leader in a script: registration answers `id` (or fails UNAVAILABLE, a leader out of reach),
 * the next heartbeat carries the queued commands, bad-replica reports are answered `pending`.
 */
class ScriptedLink implements MetadataLink {
  readonly commands: AgentCommand[] = [];
  readonly registrations: RegisterRequest[] = [];
  readonly badReports: { handle: number; version: number }[] = [];

  constructor(private readonly id: number | undefined) {}

  register(request: RegisterRequest): Promise<{ readonly id: number }> {
    this.registrations.push(request);
    if (this.id === undefined) return Promise.reject(new MetadataLinkError('UNAVAILABLE', 'no metadata server answers'));
    return Promise.resolve({ id: this.id });
  }

  heartbeat(): Promise<CommandsReply> {
    return Promise.resolve({ commands: this.commands.splice(0), fullReportWanted: false });
  }

  chunkReport(_request: ChunkReportRequest): Promise<CommandsReply> {
    return Promise.resolve({ commands: [], fullReportWanted: false });
  }

  reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }> {
    this.badReports.push({ handle: request.handle, version: request.version });
    return Promise.resolve({ outcome: 'pending' });
  }
}

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rfs-components-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a sealed replica of `handle` into `<dataDir>/chunks` before the server opens it. */
async function putReplica(dataDir: string, handle: number, bytes: Uint8Array): Promise<void> {
  const store = await FileChunkStore.open(new NodeDisk(), join(dataDir, 'chunks'));
  await store.create(handle, 1);
  await store.append(handle, 1, 0, bytes);
  await store.seal(handle, 1, bytes.length);
  await store.close();
}

/** realComponents, its store opened on `disk` (a FaultyDisk) instead of the real one. */
function onDisk(disk: Disk, options: RealComponentsOptions): StoreAndDataServer {
  const real = realComponents(options);
  return {
    openStore: (dataDir) => FileChunkStore.open(disk, join(dataDir, 'chunks')),
    startDataServer: (context) => real.startDataServer(context),
  };
}

async function start(
  t: Test,
  dataDir: string,
  link: ScriptedLink,
  components: StoreAndDataServer = realComponents({ scrubBytesPerSecond }),
  logger: Logger = pino({ level: 'silent' }),
): Promise<Chunkserver> {
  const server = await Chunkserver.start({
    dataDir,
    listen: '127.0.0.1:0',
    metadata: ['127.0.0.1:1'], // unused: the link is given
    rack: 'r1',
    components,
    link,
    agentLimits: testAgentLimits,
    logger,
  });
  t.teardown(() => server.stop());
  return server;
}

/** A counter's value, summed over the series whose labels include `labels`. */
async function counter(server: Chunkserver, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = server.metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

void t.test('a scrub read that fails with an I/O error is counted once', async (t) => {
  const dataDir = await tempDir(t);
  const handle = 7_001;
  await putReplica(dataDir, handle, randomBytes(replicaBytes));
  const disk = new FaultyDisk();
  disk.failing = [{ pathIncludes: `/${handle}.data`, kinds: ['read'] }];
  const server = await start(t, dataDir, new ScriptedLink(1), onDisk(disk, { scrubBytesPerSecond }));
  await waitFor(() => server.agent.status().disk.ioErrorsRecent > 0, 'the scrubber to hit the bad spot');
  await settle(200);
  t.equal(server.agent.status().disk.ioErrorsRecent, 1, 'one I/O error in the disk-health window');
  t.equal(await counter(server, 'rfs_chunkserver_disk_errors_total'), 1, 'one in rfs_chunkserver_disk_errors_total');
  t.equal(await counter(server, 'rfs_chunkserver_disk_errors_total', { code: 'IO_ERROR', op: 'verify' }), 1, 'as a scrub (op verify)');
});

void t.test('a bit flipped in a replica is one checksum failure when the scrubber finds it', async (t) => {
  const dataDir = await tempDir(t);
  const handle = 7_002;
  await putReplica(dataDir, handle, randomBytes(replicaBytes));
  const file = await open(join(dataDir, 'chunks', `${handle}.data`), 'r+');
  const byte = Buffer.alloc(1);
  await file.read(byte, 0, 1, 12_345);
  byte[0] = byte[0]! ^ 0x10;
  await file.write(byte, 0, 1, 12_345);
  await file.close();
  const link = new ScriptedLink(1);
  const server = await start(t, dataDir, link);
  await waitFor(() => link.badReports.length > 0, 'the corrupt replica to be reported');
  await settle(200);
  t.equal(await counter(server, 'rfs_chunkserver_checksum_failures_total'), 1, 'one checksum failure');
  t.same(link.badReports, [{ handle, version: 1 }], 'reported bad to the leader once');
  t.equal(await counter(server, 'rfs_chunkserver_disk_errors_total'), 0, 'no disk error');
});

void t.test('a clean scrub is not bytes out; a read served and a copy are, once', async (t) => {
  const dataDir = await tempDir(t);
  const handle = 7_003;
  const bytes = randomBytes(replicaBytes);
  await putReplica(dataDir, handle, bytes);
  const sourceLink = new ScriptedLink(1);
  const source = await start(t, dataDir, sourceLink);
  await waitFor(() => source.store instanceof FileChunkStore && source.store.stats.bytesRead >= replicaBytes, 'the scrubber to read the replica');
  await settle(100);
  t.equal(await counter(source, 'rfs_chunkserver_bytes_out_total'), 0, 'the scrub sent nothing: no bytes out');
  t.equal(await counter(source, 'rfs_chunkserver_checksum_failures_total'), 0);

  // A read served to a client: bytes out.
  const network = new TcpDataNetwork();
  const read = await readRange(network, source.address, { handle, version: 1, offset: 1_000, length: 5_000 });
  t.ok(Buffer.from(read).equals(bytes.subarray(1_000, 6_000)), 'the read returns the bytes');
  t.equal(await counter(source, 'rfs_chunkserver_bytes_out_total'), 5_000, 'a read served is bytes out');

  // A copy ordered by the leader: one re-replication, its bytes counted once.
  const target = await start(t, await tempDir(t), new ScriptedLink(2));
  await waitFor(() => target.agent.status().registered, 'the target to register');
  await waitFor(() => source.agent.status().registered, 'the source to register');
  sourceLink.commands.push({ kind: 'replicate', handle, version: 1, target: 2, targetAddress: target.address });
  await waitFor(() => source.agent.status().copiesDone + source.agent.status().copiesFailed > 0, 'the copy');
  t.equal(source.agent.status().copiesDone, 1, 'copied');
  t.equal(target.store.info(handle)?.sealed, true, 'the target holds it sealed');
  t.equal(await counter(source, 'rfs_chunkserver_rereplications_total', { outcome: 'ok' }), 1, 'one re-replication');
  t.equal(await counter(source, 'rfs_chunkserver_rereplications_total'), 1, 'and nothing else');
  t.equal(await counter(source, 'rfs_chunkserver_rereplication_bytes_total'), replicaBytes, 'its bytes');
  t.equal(await counter(source, 'rfs_chunkserver_bytes_out_total'), 5_000 + replicaBytes, 'bytes out: the read and the copy, each once');
});

void t.test('stop() aborts a copy to a target that accepts and never answers', async (t) => {
  const dataDir = await tempDir(t);
  const handle = 7_004;
  await putReplica(dataDir, handle, randomBytes(replicaBytes));
  const sockets: Socket[] = [];
  const stuck = createServer({ pauseOnConnect: true }, (socket) => sockets.push(socket));
  await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => stuck.close(() => resolve())));
  const link = new ScriptedLink(1);
  const server = await start(t, dataDir, link);
  await waitFor(() => server.agent.status().registered, 'registration');
  link.commands.push({ kind: 'replicate', handle, version: 1, target: 2, targetAddress: `127.0.0.1:${(stuck.address() as AddressInfo).port}` });
  await waitFor(() => sockets.length === 1 && server.agent.status().copiesInflight === 1, 'the copy to connect');
  await settle();
  const stopBoundMs = 5_000;
  const startedMs = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    server.stop().then(() => 'stopped' as const),
    new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), stopBoundMs))),
  ]);
  clearTimeout(timer);
  // A hung stop is released by breaking the copy's connection, so the test ends either way.
  for (const socket of sockets) socket.destroy();
  t.equal(outcome, 'stopped', `stop() returned (${Date.now() - startedMs} ms; bound ${stopBoundMs} ms)`);
  t.equal(server.agent.status().copiesFailed, 1, 'the copy was given up');
});

void t.test('the store logs a corrupt replica it drops at open, as component=store', async (t) => {
  const dataDir = await tempDir(t);
  const handle = 7_005;
  await putReplica(dataDir, handle, randomBytes(replicaBytes));
  await putReplica(dataDir, handle + 1, randomBytes(1_000));
  // Shorter than its sidecar says: the store cannot trust it and drops it when it opens.
  await truncate(join(dataDir, 'chunks', `${handle}.data`), 1_000);
  const lines: { level: number; msg: string; component?: string; handle?: number; corruptReplicasRemoved?: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[number]) });
  const server = await start(t, dataDir, new ScriptedLink(1), realComponents({ scrubBytesPerSecond }), logger);
  t.same(server.store.list().map((r) => r.handle), [handle + 1], 'the corrupt replica is gone, the other kept');
  t.match(
    lines.filter((l) => l.msg.includes('dropping a corrupt replica')),
    [{ level: 50, component: 'store', handle, msg: 'replica store: dropping a corrupt replica at open' }],
    'logged at error, once, by the store',
  );
  t.match(lines.filter((l) => l.msg === 'replica store opened'), [{ component: 'store', corruptReplicasRemoved: 1 }], 'and the recovery report');
});

void t.test('a copy keeps to a small configured packetBytesMax', async (t) => {
  const components = (): StoreAndDataServer => realComponents({ scrubBytesPerSecond, dataPlaneLimits: { packetBytesMax: 64 * 1024 } });
  const dataDir = await tempDir(t);
  const handle = 7_007;
  const bytes = randomBytes(replicaBytes);
  await putReplica(dataDir, handle, bytes);
  const sourceLink = new ScriptedLink(1);
  const source = await start(t, dataDir, sourceLink, components());
  const target = await start(t, await tempDir(t), new ScriptedLink(2), components());
  await waitFor(() => source.agent.status().registered && target.agent.status().registered, 'registration');
  sourceLink.commands.push({ kind: 'replicate', handle, version: 1, target: 2, targetAddress: target.address });
  await waitFor(() => source.agent.status().copiesDone + source.agent.status().copiesFailed > 0, 'the copy');
  t.equal(source.agent.status().copiesFailed, 0, 'no copy failed (FRAME_TOO_LARGE before)');
  t.equal(source.agent.status().copiesDone, 1, 'copied');
  t.match(target.store.info(handle), { version: 1, sealed: true, lengthBytes: replicaBytes }, 'the target holds it sealed');
  const back = await readRange(new TcpDataNetwork({ packetBytesMax: 64 * 1024 }), target.address, { handle, version: 1, offset: 0, length: replicaBytes });
  t.ok(Buffer.from(back).equals(bytes), 'the copy reads back equal');
});

void t.test('restarted with the metadata service out of reach, a chunkserver serves under its saved id', async (t) => {
  const dataDir = await tempDir(t);
  const first = await start(t, dataDir, new ScriptedLink(5));
  await waitFor(() => first.agent.status().registered, 'the first registration');
  await first.stop();

  // The production gRPC link, to an address nobody listens at. `idAtListen`: the id the data server would
  // serve under at the moment it starts listening.
  const idAtListen: (number | undefined)[] = [];
  const unreachable = async (dir: string): Promise<Chunkserver> => {
    const real = realComponents({ scrubBytesPerSecond });
    const components: StoreAndDataServer = {
      openStore: (d, l) => real.openStore(d, l),
      startDataServer: (context) => {
        idAtListen.push(context.chunkserverId());
        return real.startDataServer(context);
      },
    };
    const server = await Chunkserver.start({ dataDir: dir, listen: '127.0.0.1:0', metadata: ['127.0.0.1:1'], rack: 'r1', components, agentLimits: testAgentLimits, logger: pino({ level: 'silent' }) });
    t.teardown(() => server.stop());
    await waitFor(() => server.agent.status().consecutiveFailures >= 2, 'failed registrations');
    return server;
  };
  const network = new TcpDataNetwork();
  const bytes = randomBytes(100_000);
  const write = async (server: Chunkserver, id: number, handle: number): Promise<unknown> => {
    try {
      const writer = await PipelineWriter.open(network, { handle, version: 1, chain: [{ id, address: server.address }] });
      await writer.write(bytes);
      return await writer.seal();
    } catch (error) {
      return error;
    }
  };

  const restarted = await unreachable(dataDir);
  t.equal(idAtListen[0], 5, 'the saved id is known before the data server listens (no window of WRONG_SERVER)');
  t.equal(restarted.agent.status().registered, false, 'not registered');
  const sealed = await write(restarted, 5, 8_001);
  t.match(sealed, [{ id: 5, lengthBytes: bytes.length }], 'a pipeline naming its saved id is served (WRONG_SERVER before)');
  t.match(restarted.store.info(8_001), { version: 1, sealed: true, lengthBytes: bytes.length }, 'the replica is written');

  const fresh = await unreachable(await tempDir(t));
  t.match(await write(fresh, 5, 8_002), { code: 'WRONG_SERVER', failedId: 5 }, 'a new server, no id yet, refuses it as before');
  t.equal(fresh.store.info(8_002), undefined, 'and writes nothing');
});

void t.test('a replica event while the data server starts does not start the agent early (it registers once started, with its address)', async (t) => {
  const dataDir = await tempDir(t);
  const link = new ScriptedLink(7);
  const real = realComponents({ scrubBytesPerSecond });
  let registrationsBeforeStart = -1;
  const components: StoreAndDataServer = {
    openStore: (d, l) => real.openStore(d, l),
    startDataServer: async (context) => {
      const server = await real.startDataServer(context);
      // A pipeline's replica event arriving before the agent is started (its address not set yet).
      context.events.noteReplicaChanged(1);
      await settle(50);
      registrationsBeforeStart = link.registrations.length;
      return server;
    },
  };
  const server = await Chunkserver.start({ dataDir, listen: '127.0.0.1:0', metadata: [], rack: 'r1', components, link, agentLimits: testAgentLimits, logger: pino({ level: 'silent' }) });
  t.teardown(() => server.stop());
  await waitFor(() => server.agent.status().registered, 'the registration');
  t.equal(registrationsBeforeStart, 0, 'no exchange before the agent started');
  t.ok(link.registrations.length > 0 && link.registrations.every((r) => r.address === server.address), 'registered with its address');
});
