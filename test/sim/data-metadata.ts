/**
 * The data workload's way to the metadata leader: each metadata node's ChunkService (the leader's runs the
 * real ChunkManager on the node's clock), requests with latency and timeouts that follow leader hints, and
 * the adapters the real client and chunkserver code talk through:
 * - `SimWriterMetadata` (src/client WriterMetadata): create, leases, allocate (ChunkService), bump (ChunkService
 *   over the chunk's view), seal, complete — each a proposal on the leader, rejected after a timeout;
 * - `SimReaderMetadata` (ReaderMetadata): chunk locations read on the leader after a ReadIndex (linearizable),
 *   bad replica reports through ChunkService;
 * - `SimMetadataLink` (the chunkserver agent's MetadataLink): register, heartbeat, chunk report.
 * Nothing here retries a proposal whose outcome is unknown: the caller sees an error (a writer then gives
 * up its file; an agent retries, which is idempotent).
 */
import type { AllocatedChunk, ChunkLocationsPage, ChunkSeal, GrantedLease, ReaderMetadata, Replica, WriterMetadata } from '../../src/client/data-path.ts';
import type { ChunkReportRequest, CommandsReply, MetadataLink, RegisterRequest } from '../../src/chunkserver/agent.ts';
import { MetadataLinkError } from '../../src/chunkserver/agent.ts';
import type { FsResult, Op, SessionStamp } from '../../src/fsm/index.ts';
import { encodeCommand as encodeFsmCommand } from '../../src/fsm/index.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { Reply } from '../../src/placement/manager.ts';
import { ChunkService } from '../../src/placement/service.ts';
import { loadChunkView } from '../../src/placement/view.ts';
import { NotLeaderError } from '../../src/raft/errors.ts';
import type { NodeId } from '../../src/raft/types.ts';
import type { InvariantChecker } from './checkers.ts';
import { simChunkManagerLimits } from './chunks.ts';
import { MetadataChecker } from './metadata.ts';
import { describeError, type Cluster, type Host } from './cluster.ts';
import type { Prng } from './prng.ts';
import { sendRequest } from './workload.ts';
import { ANY_EPOCH, NO_NODE, type World } from './world.ts';

/** How often each metadata node runs its chunk service's pass. */
const SERVICE_STEP_INTERVAL_MS = 100;
/** A proposal or request not answered within this is given up (its outcome unknown). */
export const REQUEST_TIMEOUT_MS = 1_500;
/** Tries of one request refused before it reached the state machine (no leader, not the leader). */
const REFUSED_TRIES_MAX = 20;
const REFUSED_BACKOFF_MS = 50;

/** An error whose operation certainly did not happen (refused before proposing): safe to send again. */
class RefusedError extends Error {}

export interface DataMetadataDeps {
  readonly world: World;
  readonly cluster: Cluster;
  readonly checker: InvariantChecker;
  readonly random: Prng;
  readonly placementBugs: ReadonlySet<PlacementBug>;
}

export class DataMetadata {
  private readonly services = new Map<NodeId, { epoch: number; service: ChunkService }>();
  /** Chunkserver id → its data address (every id ever registered; an id is never reused). */
  readonly addresses = new Map<number, string>();

  constructor(private readonly deps: DataMetadataDeps) {}

  start(): void {
    this.schedule(0, 'chunk services step', () => this.stepServices());
  }

  schedule(delayMs: number, what: string, run: () => void): void {
    this.deps.world.schedule(delayMs, { kind: 'control', nodeId: NO_NODE, epoch: ANY_EPOCH, describe: () => what, run });
  }

  /** The host's chunk service (a new one per incarnation). */
  service(host: Host): ChunkService {
    const known = this.services.get(host.id);
    if (known !== undefined && known.epoch === host.epoch) return known.service;
    const epoch = host.epoch;
    const service = new ChunkService({
      // The stamp too (the server's proposeOp keeps it): a caller that passes one gets its exactly-once answer.
      propose: (op, session) => this.propose(host, epoch, op, session),
      loadView: () => {
        const meta = host.meta;
        if (meta === null || host.epoch !== epoch) return Promise.reject(new Error('node down'));
        return meta.managerView();
      },
      role: () => {
        const status = host.epoch === epoch && host.running ? host.raft?.status() : undefined;
        return { leader: status?.role === 'leader', term: status?.term ?? 0 };
      },
      random: this.deps.random.split(`service/${host.id}/${epoch}`),
      limits: simChunkManagerLimits,
      bugs: this.deps.placementBugs,
    });
    this.services.set(host.id, { epoch, service });
    return service;
  }

  /** The host's drifting clock, which its chunk manager runs on. */
  hostNowMs(host: Host): number {
    return host.hardware.offsetMs + this.deps.world.nowMs * host.hardware.rate;
  }

  /** Proposes `op` on the host's RaftNode; rejects after REQUEST_TIMEOUT_MS without an answer. */
  propose(host: Host, epoch: number, op: Op, session?: SessionStamp): Promise<FsResult> {
    const raft = host.raft;
    if (raft === null || host.epoch !== epoch) return Promise.reject(new RefusedError('node down'));
    const data = encodeFsmCommand({ nowMs: Math.floor(this.deps.world.nowMs), op, ...(session !== undefined ? { session } : {}) });
    return new Promise((resolve, reject) => {
      let settled = false;
      this.schedule(REQUEST_TIMEOUT_MS, `proposal timeout (${op.type})`, () => {
        if (settled) return;
        settled = true;
        reject(new Error('proposal timed out'));
      });
      raft.propose(data).then(
        (r) => {
          if (settled) return;
          settled = true;
          resolve(r.result as FsResult);
        },
        (e: unknown) => {
          if (settled) return;
          settled = true;
          reject(e instanceof NotLeaderError ? e : e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  private stepServices(): void {
    for (const host of this.deps.cluster.allHosts()) {
      if (!host.running || host.raft === null || host.meta === null) continue;
      const epoch = host.epoch;
      this.service(host)
        .step(this.hostNowMs(host), Math.floor(this.deps.world.nowMs)) // commands are stamped with world time
        .catch((e: unknown) => {
          if (host.epoch === epoch && host.running) this.deps.checker.fail('node-crash', `n${host.id}'s chunk service failed: ${describeError(e)}`);
        });
    }
    this.schedule(SERVICE_STEP_INTERVAL_MS, 'chunk services step', () => this.stepServices());
  }

  /**
   * Runs `run` on the node `client` believes leads, after a request latency; follows leader hints. A request
   * refused before it reached the state machine (node down, not the leader) is sent again, a few times;
   * anything else (a timeout: outcome unknown) rejects.
   */
  async request<T>(client: MetadataClientState, run: (host: Host, service: ChunkService) => Promise<T> | T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.requestOnce(client, run);
      } catch (error) {
        if (!(error instanceof RefusedError) || attempt >= REFUSED_TRIES_MAX) throw error;
        await new Promise<void>((resolve) => this.schedule(client.random.floatBetween(1, REFUSED_BACKOFF_MS), 'request retry', resolve));
      }
    }
  }

  private requestOnce<T>(client: MetadataClientState, run: (host: Host, service: ChunkService) => Promise<T> | T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (error: unknown, value?: T): void => {
        if (settled) return;
        settled = true;
        if (error !== null) reject(error instanceof Error ? error : new Error(describeError(error)));
        else resolve(value as T);
      };
      this.schedule(REQUEST_TIMEOUT_MS, 'data request timeout', () => finish(new Error('timed out')));
      const nodeId = client.target;
      const elsewhere = (hintFromError = 0): void => {
        const hint = hintFromError !== 0 ? hintFromError : (this.deps.cluster.host(nodeId)?.raft?.status().lead ?? 0);
        client.target = hint !== 0 && hint !== nodeId ? hint : client.random.pick(this.deps.cluster.addressableIds());
      };
      sendRequest(
        { world: this.deps.world, cluster: this.deps.cluster },
        client.random,
        nodeId,
        (host) => {
          const service = this.service(host);
          if (service.current === null || !host.running) {
            elsewhere();
            return finish(new RefusedError('not the leader'));
          }
          Promise.resolve()
            .then(() => run(host, service))
            .then(
              (value) => finish(null, value),
              (e: unknown) => {
                if (e instanceof NotLeaderError) {
                  elsewhere(e.leaderHint);
                  return finish(new RefusedError(`not the leader: ${e.message}`));
                }
                if ((e as { code?: unknown } | null)?.code === 'EAGAIN') {
                  elsewhere();
                  return finish(new RefusedError('the chunk manager is not running here'));
                }
                finish(e);
              },
            );
        },
        () => {
          elsewhere();
          finish(new RefusedError('unavailable'));
        },
      );
    });
  }

  /** A proposal on the leader; a failed result rejects with its code. */
  async proposeOp(client: MetadataClientState, op: Op): Promise<unknown> {
    const result = await this.request(client, (host) => this.propose(host, host.epoch, op));
    if (!result.ok) throw new MetadataOpError(result.code, `${op.type}: ${result.message}`);
    return result.value;
  }

  async replicasOf(host: Host, handle: number): Promise<Replica[]> {
    const meta = host.meta;
    if (meta === null) throw new RefusedError('node down');
    const chunk = await meta.fsm.chunk(handle);
    if (!chunk.ok) throw new MetadataOpError(chunk.code, chunk.message);
    return chunk.value.replicas.map((id) => this.replica(id));
  }

  replica(id: number): Replica {
    return { id, address: this.addresses.get(id) ?? `unknown-${id}:0` };
  }
}

export class MetadataOpError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'MetadataOpError';
  }
}

/** One client's view of the metadata cluster: whom it believes leads, and its randomness. */
export interface MetadataClientState {
  target: NodeId;
  readonly random: Prng;
}

/** WriterMetadata on the simulated leader. */
export class SimWriterMetadata implements WriterMetadata {
  constructor(
    private readonly meta: DataMetadata,
    private readonly client: MetadataClientState,
    private readonly file: { readonly replication: number; readonly chunkSizeBytes: number; readonly compression?: 'none' | 'lz4' },
  ) {}

  async createFile(
    path: string,
    options: { exclusive: boolean; lease: { holder: string; durationMs: number } },
  ): Promise<{ chunkSizeBytes: number; compression: 'none' | 'lz4'; lease?: GrantedLease; firstChunk?: AllocatedChunk }> {
    const { replication, chunkSizeBytes } = this.file;
    const compression = this.file.compression ?? 'none';
    const op: Op = {
      type: 'create',
      path,
      exclusive: options.exclusive,
      replication,
      chunkSizeBytes,
      ...(compression === 'lz4' ? { compression } : {}),
      lease: options.lease,
    };
    // With the lease and the first chunk: one command, as the real client's (the file's attributes and its
    // first chunk come back with it); the leader's chunk manager names the candidates, as the server's does.
    return await this.meta.request(this.client, async (host, service) => {
      const candidates = service.firstChunkCandidates(replication);
      const result = await this.meta.propose(host, host.epoch, candidates.length === 0 ? op : { ...op, firstChunkCandidates: candidates });
      if (!result.ok) throw new MetadataOpError(result.code, `create: ${result.message}`);
      const value = result.value as { chunkSizeBytes?: number; compression?: 'none' | 'lz4'; leaseExpiresMs?: number; firstChunk?: { handle: number; index: number; version: number; replicas: number[] } } | undefined;
      if (value?.chunkSizeBytes === undefined || value.leaseExpiresMs === undefined) throw new Error('create with a lease returned no chunk size or lease expiry');
      const created = { chunkSizeBytes: value.chunkSizeBytes, compression: value.compression ?? 'none', lease: { expiresMs: value.leaseExpiresMs, chunkCount: 0 } } as const;
      const first = value.firstChunk;
      if (first === undefined) return created;
      return { ...created, firstChunk: { handle: first.handle, index: first.index, version: first.version, replicas: first.replicas.map((id) => this.meta.replica(id)) } };
    });
  }

  async acquireLease(path: string, holder: string, durationMs: number): Promise<{ expiresMs: number; chunkCount: number }> {
    const value = (await this.meta.proposeOp(this.client, { type: 'acquireLease', path, holder, durationMs })) as { chunkCount?: number } | undefined;
    return { expiresMs: 0, chunkCount: value?.chunkCount ?? 0 };
  }

  async renewLease(path: string, holder: string, durationMs: number): Promise<{ expiresMs: number }> {
    await this.meta.proposeOp(this.client, { type: 'renewLease', path, holder, durationMs });
    return { expiresMs: 0 };
  }

  async releaseLease(path: string, holder: string): Promise<void> {
    await this.meta.proposeOp(this.client, { type: 'releaseLease', path, holder });
  }

  /** No session stamp: a retry on another leader is made idempotent by `index` alone (the addChunk op). */
  allocateChunk(path: string, holder: string, index: number): Promise<AllocatedChunk> {
    return this.meta.request(this.client, async (host, service) => {
      const result = await service.allocateChunk({ path, holder, replication: this.file.replication, index });
      if (!result.ok) throw new MetadataOpError(result.code, `allocateChunk: ${result.message}`);
      const { handle, version } = result.value;
      return { handle, index: result.value.index, version, replicas: await this.meta.replicasOf(host, handle) };
    });
  }

  bumpChunkVersion(handle: number, holder: string, version: number, survivors: readonly number[]): Promise<{ version: number; replicas: readonly Replica[] }> {
    return this.meta.request(this.client, async (host, service) => {
      const meta = host.meta;
      if (meta === null) throw new RefusedError('node down');
      const chunk = await loadChunkView(host.metaKv, meta.fsm.limits, handle);
      if (!chunk.ok) throw new MetadataOpError(chunk.code, chunk.message);
      if (chunk.value.version === version && survivors.some((id) => !chunk.value.replicas.includes(id))) {
        throw new MetadataOpError('EINVAL', `survivors ${survivors.join(',')} are not all replicas of chunk ${handle}`);
      }
      const result = await service.bumpChunkVersion({ chunk: chunk.value, holder, version, survivors, replacements: false });
      if (!result.ok) throw new MetadataOpError(result.code, `bumpChunkVersion: ${result.message}`);
      return { version: result.value.version, replicas: await this.meta.replicasOf(host, handle) };
    });
  }

  async sealChunk(handle: number, holder: string, version: number, lengthBytes: number, checksum: number): Promise<void> {
    await this.meta.proposeOp(this.client, { type: 'sealChunk', handle, holder, version, lengthBytes, checksum });
  }

  async completeFile(path: string, holder: string, chunkCount: number, lastChunk?: ChunkSeal): Promise<{ lengthBytes: number }> {
    const op = { type: 'completeFile', path, holder, chunkCount, ...(lastChunk === undefined ? {} : { lastChunk }) } as const;
    const value = (await this.meta.proposeOp(this.client, op)) as { lengthBytes?: number } | undefined;
    return { lengthBytes: value?.lengthBytes ?? 0 };
  }
}

/**
 * ReaderMetadata on the simulated leader. With `staleCache`, chunk locations also list servers that were in
 * an earlier pipeline of the chunk (a reader holding locations cached before a version bump), first: a stale
 * replica there must refuse the read.
 */
export class SimReaderMetadata implements ReaderMetadata {
  constructor(
    private readonly meta: DataMetadata,
    private readonly client: MetadataClientState,
    private readonly staleCache: ((handle: number) => readonly number[]) | null,
  ) {}

  chunkLocations(path: string, fromIndex: number): Promise<ChunkLocationsPage> {
    return this.meta.request(this.client, async (host) => {
      const raft = host.raft;
      const meta = host.meta;
      if (raft === null || meta === null) throw new RefusedError('node down');
      await raft.read();
      const result = await meta.fsm.chunkLocations(path, { fromIndex });
      if (!result.ok) throw new MetadataOpError(result.code, result.message);
      const page = result.value;
      return {
        lengthBytes: page.lengthBytes,
        complete: page.complete,
        chunks: page.chunks.map((c) => {
          const former = this.staleCache?.(c.handle).filter((id) => !c.replicas.includes(id)) ?? [];
          return { ...c, replicas: [...former, ...c.replicas].map((id) => this.meta.replica(id)) };
        }),
        hasMore: page.nextIndex !== null,
        nextIndex: page.nextIndex ?? 0,
      };
    });
  }

  async reportBadReplica(handle: number, chunkserverId: number, version: number): Promise<void> {
    await this.meta.request(this.client, async (host, service) => {
      const meta = host.meta;
      if (meta === null) throw new RefusedError('node down');
      const result = await service.reportBadReplica({
        handle,
        id: chunkserverId,
        version,
        nowMs: this.meta.hostNowMs(host),
        readChunk: () => loadChunkView(host.metaKv, meta.fsm.limits, handle),
      });
      if (!result.ok) throw new MetadataOpError(result.code, result.message);
    });
  }
}

/** The chunkserver agent's link to the simulated leader. `alive` is false once its incarnation crashed. */
export class SimMetadataLink implements MetadataLink {
  constructor(
    private readonly meta: DataMetadata,
    private readonly client: MetadataClientState,
    private readonly alive: () => boolean,
  ) {}

  async register(request: RegisterRequest): Promise<{ readonly id: number }> {
    const result = await this.call((_host, service) =>
      service.register({ id: request.id === 0 ? undefined : request.id, address: request.address, rack: request.rack, capacityBytes: request.capacityBytes, usedBytes: request.usedBytes }),
    );
    if (!result.ok) throw new MetadataLinkError(result.code, result.message);
    const id = (result.value as { id: number }).id;
    this.meta.addresses.set(id, request.address);
    return { id };
  }

  heartbeat(request: { readonly id: number; readonly capacityBytes: number; readonly usedBytes: number }): Promise<CommandsReply> {
    return this.call(async (host, service) => {
      const nowMs = this.meta.hostNowMs(host);
      return commandsReply(await service.exchange(nowMs, (c) => c.heartbeat(request.id, nowMs, { capacityBytes: request.capacityBytes, usedBytes: request.usedBytes })));
    });
  }

  chunkReport(request: ChunkReportRequest): Promise<CommandsReply> {
    return this.call((host, service) =>
      service
        .exchange(this.meta.hostNowMs(host), (c) => c.chunkReport(request.id, this.meta.hostNowMs(host), { full: request.full, fullMore: request.fullMore, chunks: request.chunks, removed: request.removed }))
        .then(commandsReply),
    );
  }

  reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }> {
    return this.call(async (host, service) => {
      const meta = host.meta;
      if (meta === null) throw new RefusedError('node down');
      const result = await service.reportBadReplica({
        handle: request.handle,
        id: request.chunkserverId,
        version: request.version,
        nowMs: this.meta.hostNowMs(host),
        readChunk: () => loadChunkView(host.metaKv, meta.fsm.limits, request.handle),
      });
      if (!result.ok) throw new MetadataLinkError(result.code, result.message);
      return { outcome: result.value.outcome };
    });
  }

  private async call<T>(run: (host: Host, service: ChunkService) => Promise<T> | T): Promise<T> {
    if (!this.alive()) throw new MetadataLinkError('UNAVAILABLE', 'this chunkserver crashed');
    try {
      const value = await this.meta.request(this.client, run);
      if (!this.alive()) throw new MetadataLinkError('UNAVAILABLE', 'this chunkserver crashed');
      return value;
    } catch (error) {
      if (error instanceof MetadataLinkError) throw error;
      const code = (error as { code?: unknown } | null)?.code;
      throw new MetadataLinkError(typeof code === 'string' ? code : 'UNAVAILABLE', describeError(error));
    }
  }
}

function commandsReply(reply: Reply): CommandsReply {
  return {
    commands: reply.commands.map((c) =>
      c.kind === 'replicate'
        ? { kind: c.kind, handle: c.handle, version: c.version, target: c.target, targetAddress: c.targetAddress }
        : c.kind === 'recover' && c.lengthBytes !== undefined
          ? { kind: c.kind, handle: c.handle, version: c.version, lengthBytes: c.lengthBytes }
          : { kind: c.kind, handle: c.handle, version: c.version },
    ),
    fullReportWanted: reply.fullReportWanted,
  };
}

/**
 * The metadata checker of the data workload: nodes run the real metadata state machine, but its results are
 * not replayed against a model (the metadata workload does that); the Raft invariants are still checked.
 */
export class UncheckedMetadata extends MetadataChecker {
  override onBatch(): Promise<void> {
    return Promise.resolve();
  }

  override onRestore(): Promise<void> {
    return Promise.resolve();
  }
}
