/**
 * Helpers of the metadata agent's tests: agents on memory stores over the real gRPC link (with a spy on what
 * they send), a metadata cluster on fixed ports that can be stopped and started again, and the few state
 * changes the gRPC service leaves to the write path (seal, version bump), proposed on the leader directly.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import type { AgentLimits, ChunkReportRequest, CommandsReply, CopyReplica, MetadataLink, RegisterRequest } from '../../src/chunkserver/agent.ts';
import { MetadataAgent } from '../../src/chunkserver/agent.ts';
import { GrpcMetadataLink } from '../../src/chunkserver/metadata-link.ts';
import type { ChunkserverMetrics } from '../../src/chunkserver/metrics.ts';
import { createChunkserverMetrics } from '../../src/chunkserver/metrics.ts';
import type { FsResult } from '../../src/fsm/errors.ts';
import type { Op } from '../../src/fsm/commands.ts';
import { MetadataServer } from '../../src/metadata/server.ts';
import type { MetadataServerOptions, PeerAddress } from '../../src/metadata/server.ts';
import { systemClock } from '../../src/runtime/clock.ts';
import { freePort, rawCall, stablePort, tempDir, waitFor } from '../metadata/harness.ts';
import { MemoryChunkStore, MemoryIdStore } from './memory-store-agent.ts';

/** Short intervals, so liveness is decided in seconds. */
export const testAgentLimits: Partial<AgentLimits> = { heartbeatIntervalMs: 100, retryDelayMsMin: 20, retryDelayMsMax: 100, reportDelayMs: 20, readErrorVerifyIntervalMs: 200, badReplicaReportIntervalMs: 300 };

/** The leader's chunk manager for tests: a pass every 50 ms, dead after 1.5 s of silence. */
export const testClusterOptions: Partial<MetadataServerOptions> = {
  chunkManagerIntervalMs: 50,
  chunkManagerLimits: { heartbeatTimeoutMs: 1_500, leaderGraceMs: 1_500 },
};

/** A link that records every request and reply. */
export class SpyLink implements MetadataLink {
  readonly sent: (
    | { kind: 'register'; request: RegisterRequest }
    | { kind: 'heartbeat' }
    | { kind: 'report'; request: ChunkReportRequest }
    | { kind: 'bad'; request: { handle: number; chunkserverId: number; version: number }; outcome?: string }
  )[] = [];
  readonly replies: CommandsReply[] = [];
  constructor(readonly inner: GrpcMetadataLink) {}
  register(request: RegisterRequest): Promise<{ readonly id: number }> {
    this.sent.push({ kind: 'register', request });
    return this.inner.register(request);
  }
  async heartbeat(request: { readonly id: number; readonly capacityBytes: number; readonly usedBytes: number }): Promise<CommandsReply> {
    this.sent.push({ kind: 'heartbeat' });
    const reply = await this.inner.heartbeat(request);
    this.replies.push(reply);
    return reply;
  }
  async chunkReport(request: ChunkReportRequest): Promise<CommandsReply> {
    this.sent.push({ kind: 'report', request });
    const reply = await this.inner.chunkReport(request);
    this.replies.push(reply);
    return reply;
  }
  async reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }> {
    const entry: { kind: 'bad'; request: typeof request; outcome?: string } = { kind: 'bad', request };
    this.sent.push(entry);
    const reply = await this.inner.reportBadReplica(request);
    entry.outcome = reply.outcome;
    return reply;
  }
  reports(): ChunkReportRequest[] {
    return this.sent.flatMap((s) => (s.kind === 'report' ? [s.request] : []));
  }
  /** The outcomes of the bad-replica reports answered so far. */
  badOutcomes(): string[] {
    return this.sent.flatMap((s) => (s.kind === 'bad' && s.outcome !== undefined ? [s.outcome] : []));
  }
}

export interface TestAgent {
  readonly agent: MetadataAgent;
  readonly store: MemoryChunkStore;
  readonly idStore: MemoryIdStore;
  readonly link: SpyLink;
  readonly metrics: ChunkserverMetrics;
  readonly address: string;
  readonly copies: { handle: number; version: number; targetId: number; targetAddress: string }[];
  stop(): Promise<void>;
}

export async function startTestAgent(
  metadata: readonly string[],
  options: {
    store?: MemoryChunkStore;
    idStore?: MemoryIdStore;
    address?: string;
    rack?: string;
    copyReplica?: CopyReplica;
    expectedId?: number;
    onFatal?: (e: Error) => void;
  } = {},
): Promise<TestAgent> {
  const store = options.store ?? new MemoryChunkStore();
  const idStore = options.idStore ?? new MemoryIdStore();
  const link = new SpyLink(new GrpcMetadataLink(metadata, { attemptTimeoutMs: 1_000 }));
  const metrics = createChunkserverMetrics({ countReplicas: () => store.list().length });
  const address = options.address ?? `127.0.0.1:${await freePort()}`;
  const copies: TestAgent['copies'] = [];
  const copyReplica: CopyReplica = (copy) => {
    copies.push({ handle: copy.handle, version: copy.version, targetId: copy.targetId, targetAddress: copy.targetAddress });
    return options.copyReplica?.(copy) ?? Promise.resolve();
  };
  const agent = new MetadataAgent({
    address,
    rack: options.rack ?? 'r0',
    store,
    link,
    idStore,
    clock: systemClock,
    copyReplica,
    logger: pino({ level: 'silent' }),
    metrics,
    limits: testAgentLimits,
    ...(options.expectedId !== undefined ? { expectedId: options.expectedId } : {}),
    ...(options.onFatal !== undefined ? { onFatal: options.onFatal } : {}),
  });
  await agent.start();
  return {
    agent,
    store,
    idStore,
    link,
    metrics,
    address,
    copies,
    async stop() {
      await agent.stop();
      link.inner.close();
    },
  };
}

export interface ChunkserverRecord {
  id: number;
  address: string;
  state: string;
}

export async function listChunkservers(address: string): Promise<ChunkserverRecord[]> {
  const r = await rawCall(address, 'ListChunkservers', {});
  if (r.error !== undefined && r.error !== null) throw new Error(`ListChunkservers: ${r.error.code}`);
  return ((r['chunkservers'] ?? []) as { id: string; address: string; state: string }[]).map((c) => ({
    id: Number(c.id),
    address: c.address,
    state: c.state,
  }));
}

export function waitForState(address: string, id: number, state: string, timeoutMs = 20_000): Promise<ChunkserverRecord> {
  return waitFor(
    `chunkserver ${id} ${state}`,
    async () => {
      const c = (await listChunkservers(address)).find((x) => x.id === id);
      return c?.state === state ? c : undefined;
    },
    timeoutMs,
  );
}

/**
 * Proposes a state-machine command on the leader, as the write path will (sealChunk, bumpChunkVersion have
 * no gRPC method of their own: the data path's writer drives them). Test-only access to a private method.
 */
export async function proposeOnLeader(leader: MetadataServer, op: Op): Promise<FsResult> {
  const server = leader as unknown as { proposeOp(op: Op): Promise<FsResult> };
  return server.proposeOp(op);
}

/** A session on the leader for mutations, with stamps. */
export async function openSession(at: string): Promise<() => { clientId: number; seq: number; ack: number }> {
  const session = await rawCall(at, 'OpenSession', {});
  const clientId = Number(session['clientId']);
  let seq = 0;
  return () => ({ clientId, seq: ++seq, ack: 0 });
}

/** A metadata cluster on ports chosen once, whose servers can all be stopped and started again. */
export class RestartableCluster {
  readonly servers = new Map<number, MetadataServer>();
  private constructor(
    readonly peers: Map<number, PeerAddress>,
    private readonly dir: string,
    private readonly remove: () => Promise<void>,
    private readonly options: Partial<MetadataServerOptions>,
  ) {}

  static async reserve(size: number, options: Partial<MetadataServerOptions>): Promise<RestartableCluster> {
    const peers = new Map<number, PeerAddress>();
    // Bound only when the cluster starts, and again after each restart: ports no outgoing connection can take.
    for (let id = 1; id <= size; id++) peers.set(id, { client: `127.0.0.1:${await stablePort()}`, raft: `127.0.0.1:${await stablePort()}` });
    const tmp = await tempDir('rfs-agent-cluster-');
    return new RestartableCluster(peers, tmp.dir, tmp.remove, options);
  }

  get addresses(): string[] {
    return [...this.peers.values()].map((p) => p.client);
  }

  async start(): Promise<void> {
    const logger = pino({ level: 'silent' });
    await Promise.all(
      [...this.peers.keys()].map(async (id) => {
        const server = await MetadataServer.start({ ...this.options, id, peers: this.peers, dataDir: join(this.dir, `m${id}`), logger });
        this.servers.set(id, server);
      }),
    );
  }

  leader(): Promise<MetadataServer> {
    return waitFor('a leader', () => [...this.servers.values()].find((s) => s.node.status().role === 'leader'));
  }

  async stopAll(): Promise<void> {
    for (const s of this.servers.values()) await s.stop();
    this.servers.clear();
  }

  async close(): Promise<void> {
    await this.stopAll();
    await this.remove();
  }
}
