/**
 * A chunkserver process in one object: the replica store, the data server (client reads and pipelined
 * writes, copies between chunkservers), the metadata agent, and Prometheus metrics. The store and the data
 * server come from a `StoreAndDataServer` (factories), so this wiring does not depend on their code: the CLI
 * passes the real ones, tests a memory store.
 *
 * Start order: data dir → store → metrics → agent (constructed) → data server (it reports replica changes
 * and corruption to the agent) → agent started (it registers the data server's real address) → /metrics.
 * Stop runs it backwards. The agent registers in the background: a chunkserver starts and serves while
 * the metadata service is down, and registers once it is back.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { RandomSource } from '../raft/config.ts';
import type { Clock } from '../raft/node-api.ts';
import { systemClock, systemRandom } from '../runtime/clock.ts';
import type { AgentLimits, CopyReplica, IdStore, MetadataLink, StoreOperation } from './agent.ts';
import { AgentError, hasFreeBytes, MetadataAgent } from './agent.ts';
import { GrpcMetadataLink } from './metadata-link.ts';
import type { ChunkserverMetrics, MetricsHttpServer } from './metrics.ts';
import { registerCompressionMetrics } from './compression.ts';
import { FileChunkStore } from './store.ts';
import { createChunkserverMetrics, parseHostPort, serveMetrics } from './metrics.ts';
import type { ChunkStore } from './types.ts';

/** What the data server may tell the rest of the chunkserver (the agent implements it). */
export interface ReplicaEvents {
  noteReplicaChanged(handle: number): void;
  noteReplicaRemoved(handle: number): void;
  /** A checksum mismatch: the replica is deleted and the leader told. Never rejects. */
  reportCorrupt(handle: number): Promise<boolean>;
  /** A store operation failed DISK_FULL or IO_ERROR (logged, counted, judged: agent.ts). Never throws. */
  noteDiskError?(op: StoreOperation, handle: number, error: unknown): void;
}

export interface DataServerContext {
  readonly store: ChunkStore;
  /**
   * The chunkserver's id: undefined until its agent has loaded the saved one (a restart; it starts after the
   * data server, so for a moment) or registered (a new server).
   */
  readonly chunkserverId: () => number | undefined;
  readonly listen: { readonly host: string; readonly port: number };
  readonly events: ReplicaEvents;
  readonly metrics: ChunkserverMetrics;
  readonly logger: Logger;
  /** The chunkserver's data directory (e.g. for the short-circuit read token, localReadTokenFile). */
  readonly dataDir: string;
}

export interface DataServer {
  /** The port it listens on (the real one when asked for port 0). */
  readonly port: number;
  /** Re-replication on the leader's order: copy a held replica to another chunkserver. */
  readonly copyReplica: CopyReplica;
  close(): Promise<void>;
}

/** The two parts built elsewhere (src/chunkserver/store.ts, src/chunkserver/dataplane/), as factories. */
export interface StoreAndDataServer {
  /** `logger`: for what the store finds and does (replicas dropped or repaired at open, failed fsyncs, packing). */
  openStore(dataDir: string, logger: Logger): Promise<ChunkStore>;
  startDataServer(context: DataServerContext): Promise<DataServer>;
}

export interface ChunkserverOptions {
  readonly dataDir: string;
  /** 'host:port' the data server listens on (port 0: any). */
  readonly listen: string;
  /** 'host:port' others reach the data server at; default: the listen host with the real port. */
  readonly advertise?: string;
  /** Metadata servers' client addresses ('host:port'), any of them (redirects lead to the leader). */
  readonly metadata: readonly string[];
  /** Failure domain. */
  readonly rack: string;
  readonly components: StoreAndDataServer;
  /** The id the operator expects; a data dir saved with another id is refused. */
  readonly expectedId?: number;
  /** 'host:port' for HTTP `/metrics`. */
  readonly metricsListen?: string;
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly random?: RandomSource;
  readonly agentLimits?: Partial<AgentLimits>;
  /** The link to the metadata service; default gRPC to `metadata`. */
  readonly link?: MetadataLink;
  /** The agent stopped for good (the cluster refused this server's id or address). */
  readonly onFatal?: (error: AgentError) => void;
}

/** The file in the data dir holding the chunkserver's id. */
export const idFileName = 'chunkserver-id.json';

export class Chunkserver {
  private stopped = false;

  private constructor(
    readonly store: ChunkStore,
    readonly agent: MetadataAgent,
    readonly metrics: ChunkserverMetrics,
    readonly address: string,
    private readonly dataServer: DataServer,
    private readonly metricsServer: MetricsHttpServer | null,
    private readonly ownedLink: GrpcMetadataLink | null,
    private readonly logger: Logger,
  ) {}

  get dataPort(): number {
    return this.dataServer.port;
  }

  get metricsPort(): number {
    return this.metricsServer?.port ?? 0;
  }

  static async start(options: ChunkserverOptions): Promise<Chunkserver> {
    const logger = options.logger ?? pino({ level: 'info' });
    const listen = parseHostPort(options.listen);
    if (options.advertise !== undefined) parseHostPort(options.advertise);
    else hostForAddress(listen.host); // a wildcard listen host needs `advertise`: refused before anything starts
    await mkdir(options.dataDir, { recursive: true });
    const store = await options.components.openStore(options.dataDir, logger.child({ component: 'store' }));
    const undo: (() => Promise<void>)[] = [() => store.close()];
    try {
      const metrics = createChunkserverMetrics({ countReplicas: () => store.list().length });
      if (store instanceof FileChunkStore) registerCompressionMetrics(metrics.registry, () => store.compressionUsage());
      const ownedLink = options.link === undefined ? new GrpcMetadataLink(options.metadata) : null;
      if (ownedLink !== null) undo.push(() => Promise.resolve(ownedLink.close()));
      const link = options.link ?? ownedLink!;
      // The agent needs the data server's copy function and real port, the data server the agent's events.
      let dataServer: DataServer | null = null;
      const agent = new MetadataAgent({
        address: options.advertise ?? '', // known once the data server listens: set below, before start
        rack: options.rack,
        store,
        link,
        idStore: fileIdStore(options.dataDir),
        clock: options.clock ?? systemClock,
        random: options.random ?? systemRandom,
        copyReplica: (copy) => {
          if (dataServer === null) return Promise.reject(new Error('no data server yet'));
          return dataServer.copyReplica(copy);
        },
        logger: logger.child({ component: 'agent' }),
        metrics,
        ...(options.expectedId !== undefined ? { expectedId: options.expectedId } : {}),
        ...(options.agentLimits !== undefined ? { limits: options.agentLimits } : {}),
        ...(options.onFatal !== undefined ? { onFatal: options.onFatal } : {}),
        ...(hasFreeBytes(store) ? { freeBytes: () => store.freeBytes() } : {}),
      });
      // The saved id, loaded before the data server listens (a restart serves under it from the first
      // connection, registered or not); a new server's once it registers.
      await agent.loadId();
      const chunkserverId = (): number | undefined => agent.knownId();
      const started = await options.components.startDataServer({ store, listen, chunkserverId, events: agent, metrics, logger: logger.child({ component: 'data' }), dataDir: options.dataDir });
      dataServer = started;
      undo.push(() => started.close());
      const address = options.advertise ?? `${hostForAddress(listen.host)}:${started.port}`;
      agent.setAddress(address);
      await agent.start();
      undo.push(() => agent.stop());
      const metricsServer = options.metricsListen === undefined ? null : await serveMetrics(metrics.registry, options.metricsListen);
      logger.info({ address, rack: options.rack, dataDir: options.dataDir, metricsPort: metricsServer?.port ?? null }, 'chunkserver started');
      return new Chunkserver(store, agent, metrics, address, started, metricsServer, ownedLink, logger);
    } catch (e) {
      for (const u of undo.reverse()) await u().catch(() => {});
      throw e;
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.metricsServer?.close();
    await this.agent.stop();
    await this.dataServer.close();
    this.ownedLink?.close();
    await this.store.close();
    this.logger.info({ address: this.address }, 'chunkserver stopped');
  }
}

/** A wildcard listen host cannot be advertised: then `advertise` is required. */
function hostForAddress(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') {
    throw new RangeError(`listening on ${JSON.stringify(host)}: give the address to advertise (--advertise host:port)`);
  }
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The id in `<dataDir>/chunkserver-id.json`, written atomically (temp file, fsync, rename, fsync of the
 * directory), so a crash leaves the old file or the new one. A missing file is "no id" (a new or wiped disk);
 * a file that does not parse is an error (BAD_ID_FILE), never silently a new server.
 */
export function fileIdStore(dataDir: string): IdStore {
  const path = join(dataDir, idFileName);
  return {
    async load() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      let id: unknown;
      try {
        id = (JSON.parse(text) as { id?: unknown }).id;
      } catch {
        id = undefined;
      }
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) {
        throw new AgentError('BAD_ID_FILE', `${path} does not hold a chunkserver id; fix or remove it (removing makes this a new chunkserver)`);
      }
      return id;
    },
    async save(id) {
      const temp = `${path}.tmp`;
      const file = await open(temp, 'w');
      try {
        await file.writeFile(`${JSON.stringify({ id })}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path);
      const dir = await open(dataDir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    },
  };
}
