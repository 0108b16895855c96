/**
 * The `rfs` command.
 *
 *   rfs metadata --id 1 --listen 127.0.0.1:7001 \
 *       --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir ./data/m1
 *
 * starts one metadata server. `--peers` names every member's client address; a member's Raft transport
 * listens on its client port + `--raft-port-offset` (default 1000), or give it explicitly as
 * `id=host:clientPort/raftPort`. SIGTERM and SIGINT stop the server cleanly. Logs are pino JSON on stdout.
 * Run it with `npx tsx src/cli/rfs.ts metadata …` (or `node --import tsx src/cli/rfs.ts …`).
 *
 *   rfs chunkserver --data-dir ./data/c1 --metadata 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \
 *       --rack r1 --listen 127.0.0.1:7101 [--id N] [--advertise HOST:PORT] [--metrics HOST:PORT]
 *
 * starts one chunkserver (one per disk). Its id is allocated by the metadata leader on first start and kept
 * in the data dir; `--id` only checks that the data dir is the expected server's.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Chunkserver } from '../chunkserver/server.ts';
import type { StoreAndDataServer } from '../chunkserver/server.ts';
import { MetadataServer, splitHostPort } from '../metadata/server.ts';
import type { PeerAddress } from '../metadata/server.ts';

const usage = `usage: rfs metadata --id N --listen HOST:PORT --peers ID=HOST:PORT[/RAFTPORT],... --data-dir DIR
                    [--raft-port-offset 1000] [--metrics HOST:PORT] [--tick-ms 50] [--election-ticks 10] [--log-level info]
       rfs chunkserver --data-dir DIR --metadata HOST:PORT,... --rack NAME --listen HOST:PORT
                    [--id N] [--advertise HOST:PORT] [--metrics HOST:PORT] [--heartbeat-ms 2000] [--log-level info]`;

export function parsePeers(spec: string, raftPortOffset: number): Map<number, PeerAddress> {
  const peers = new Map<number, PeerAddress>();
  for (const part of spec.split(',').filter((p) => p.trim() !== '')) {
    const m = /^\s*([0-9]+)=([^/\s]+)(?:\/([0-9]+))?\s*$/.exec(part);
    if (m === null) throw new Error(`bad peer ${JSON.stringify(part)} (want ID=HOST:PORT[/RAFTPORT])`);
    const id = Number(m[1]);
    const client = m[2] ?? '';
    const { host, port } = splitHostPort(client);
    const raftPort = m[3] !== undefined ? Number(m[3]) : port + raftPortOffset;
    if (!Number.isSafeInteger(id) || id < 1) throw new Error(`bad peer id in ${part}`);
    if (raftPort > 65535) throw new Error(`raft port of ${part} out of range`);
    if (peers.has(id)) throw new Error(`peer ${id} given twice`);
    peers.set(id, { client, raft: `${host.includes(':') ? `[${host}]` : host}:${raftPort}` });
  }
  return peers;
}

function positive(s: string, what: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what}: a positive integer is required`);
  return n;
}

async function metadata(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      id: { type: 'string' },
      listen: { type: 'string' },
      peers: { type: 'string' },
      'data-dir': { type: 'string' },
      'raft-port-offset': { type: 'string', default: '1000' },
      metrics: { type: 'string' },
      'tick-ms': { type: 'string' },
      'election-ticks': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
    },
    strict: true,
  });
  const id = Number(values.id);
  if (!Number.isSafeInteger(id) || id < 1) throw new Error('--id: a positive integer is required');
  if (values.peers === undefined) throw new Error('--peers is required');
  if (values['data-dir'] === undefined) throw new Error('--data-dir is required');
  const peers = parsePeers(values.peers, Number(values['raft-port-offset']));
  const self = peers.get(id);
  if (self === undefined) throw new Error(`--peers must include this server's id ${id}`);
  const logger = pino({ level: values['log-level'] ?? 'info' });
  // --listen may name another interface (e.g. 0.0.0.0) than the advertised address; the Raft port is kept.
  const listen = values.listen ?? self.client;
  const server = await MetadataServer.start({
    id,
    listen,
    raftListen: `${splitHostPort(listen).host}:${splitHostPort(self.raft).port}`,
    peers,
    dataDir: values['data-dir'],
    logger,
    ...(values['tick-ms'] !== undefined ? { tickMs: positive(values['tick-ms'], '--tick-ms') } : {}),
    ...(values['election-ticks'] !== undefined
      ? { electionTicks: positive(values['election-ticks'], '--election-ticks') }
      : {}),
    ...(values.metrics !== undefined ? { metricsListen: values.metrics } : {}),
    onFatal: () => {
      process.exitCode = 70;
      void server.stop().finally(() => process.exit(70));
    },
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    server.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: e }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Exit status when a part of the chunkserver is not built yet (EX_UNAVAILABLE). */
const exitUnavailable = 69;

/**
 * THE wiring point of the chunkserver's store and data plane: the on-disk replica store
 * (src/chunkserver/store.ts) and the data server with its `copyReplica` (src/chunkserver/dataplane/) plug in
 * here once they are merged. Until then the command stops with a clear message.
 */
function createStoreAndDataServer(): Promise<StoreAndDataServer> {
  return Promise.reject(new ChunkserverUnavailableError('data plane not available yet: the chunk store and data server are not merged'));
}

class ChunkserverUnavailableError extends Error {
  override readonly name = 'ChunkserverUnavailableError';
}

async function chunkserver(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      id: { type: 'string' },
      'data-dir': { type: 'string' },
      metadata: { type: 'string' },
      rack: { type: 'string' },
      listen: { type: 'string' },
      advertise: { type: 'string' },
      metrics: { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
    },
    strict: true,
  });
  if (values['data-dir'] === undefined) throw new Error('--data-dir is required');
  if (values.metadata === undefined) throw new Error('--metadata is required (the metadata servers, host:port,...)');
  if (values.rack === undefined || values.rack === '') throw new Error('--rack is required');
  if (values.listen === undefined) throw new Error('--listen is required');
  const metadataAddresses = values.metadata.split(',').map((a) => a.trim()).filter((a) => a !== '');
  for (const a of metadataAddresses) splitHostPort(a);
  if (metadataAddresses.length === 0) throw new Error('--metadata: at least one host:port');
  const logger = pino({ level: values['log-level'] ?? 'info' });
  let components: StoreAndDataServer;
  try {
    components = await createStoreAndDataServer();
  } catch (e) {
    if (!(e instanceof ChunkserverUnavailableError)) throw e;
    process.stderr.write(`rfs chunkserver: ${e.message}\n`);
    process.exit(exitUnavailable);
  }
  const heartbeatMs = values['heartbeat-ms'] !== undefined ? positive(values['heartbeat-ms'], '--heartbeat-ms') : undefined;
  let server: Chunkserver | null = null;
  server = await Chunkserver.start({
    dataDir: values['data-dir'],
    listen: values.listen,
    metadata: metadataAddresses,
    rack: values.rack,
    components,
    logger,
    ...(values.id !== undefined ? { expectedId: positive(values.id, '--id') } : {}),
    ...(values.advertise !== undefined ? { advertise: values.advertise } : {}),
    ...(values.metrics !== undefined ? { metricsListen: values.metrics } : {}),
    ...(heartbeatMs !== undefined
      ? // Retries back off to at most one heartbeat interval (checkAgentLimits).
        { agentLimits: { heartbeatIntervalMs: heartbeatMs, retryDelayMsMin: Math.min(100, heartbeatMs), retryDelayMsMax: Math.min(2_000, heartbeatMs) } }
      : {}),
    onFatal: (error) => {
      logger.error({ err: error }, 'chunkserver cannot continue');
      process.exitCode = 70;
      void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(70));
    },
  });
  const running = server;
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    running.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: e }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'metadata':
      return metadata(rest);
    case 'chunkserver':
      return chunkserver(rest);
    default:
      process.stderr.write(`${usage}\n`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`rfs: ${e instanceof Error ? e.message : String(e)}\n${usage}\n`);
  process.exit(2);
});
