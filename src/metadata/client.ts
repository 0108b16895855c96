/**
 * A small Metadata client (tests, tools): talks to a list of servers, follows NOT_LEADER redirects, and
 * retries after UNAVAILABLE, TIMEOUT and transport failures until `retryDeadlineMs` has passed. A mutation
 * keeps its session stamp (client id, seq) across retries, so a command that was applied before its answer
 * got lost is not applied twice: the server returns the first result.
 */
import type { ChunkSeal } from '../fsm/commands.ts';
import type { StatInfo as FsmStatInfo } from '../fsm/queries.ts';
import * as grpc from '@grpc/grpc-js';
import { MetadataClientConstructor, submitItemMethods, submitItemsMax } from './proto.ts';
import type { MetadataMethod, SubmitItemField, SubmittableMethod, WireError, WireReply, WireRequest } from './proto.ts';

export class MetadataError extends Error {
  constructor(
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'MetadataError';
  }
}

export interface MetadataClientOptions {
  /** Deadline of one RPC attempt. */
  readonly attemptTimeoutMs?: number;
  /** Give up retrying an operation after this long. */
  readonly retryDeadlineMs?: number;
  /** Pause before retrying when no leader is known. */
  readonly retryDelayMs?: number;
  /** Called for every successful answer, with the server that gave it (diagnostics, failover tests). */
  readonly onAnswer?: (address: string, method: MetadataMethod) => void;
  /**
   * Namespace mutations (Mkdir, Create, Setattr, Rename, Unlink, Rmdir) go through this batcher, shared by
   * the process's sessions: concurrent ones travel in one Submit call. Redirects, retries and session stamps
   * stay per operation, as without it.
   */
  readonly batcher?: SubmitBatcher;
  /** Once aborted, calls stop retrying: each fails with UNAVAILABLE before its next attempt (client shutdown). */
  readonly signal?: AbortSignal;
  /**
   * Reads (Stat, Readdir, ChunkLocations) are tried once at this server first, instead of the current
   * target: any member answers a linearizable read (its ReadIndex round goes through the leader). The Jepsen
   * suite spreads reads over the members this way; its planted bug `read-without-quorum` shows only on
   * servers clients read from. Any failure there takes the normal path. Default: none.
   */
  readonly readAddress?: string;
}

/** A stat answer as the wire carries it: the state machine's StatInfo without the lease record. */
export type StatInfo = Omit<FsmStatInfo, 'lease'>;

export interface InodeRef {
  readonly id: number;
  readonly generation: number;
}

/** A new file's attributes (absent: the parent directory's), and optionally its writer's lease. */
export interface CreateOptions {
  /** true (default): an existing file is EEXIST; false: it is replaced by an empty file. */
  readonly exclusive?: boolean;
  readonly mode?: number;
  readonly replication?: number;
  readonly chunkSizeBytes?: number;
  readonly compression?: 'none' | 'lz4';
  readonly leaseHolder?: string;
  readonly leaseDurationMs?: number;
  readonly ifGeneration?: number;
}

export interface DirEntry {
  readonly name: string;
  readonly id: number;
  readonly type: 'dir' | 'file';
}

export interface ChunkReplica {
  readonly id: number;
  /** The chunkserver's 'host:port' ('' if the registry has no record of it). */
  readonly address: string;
}

/** What a Create with the writer's lease answers besides the inode (createForWriting). */
export interface CreatedWriting {
  readonly chunkSizeBytes: number;
  readonly compression: 'none' | 'lz4';
  readonly leaseExpiresMs: number;
  /** The file's first chunk, when asked for and the leader could place it. */
  readonly firstChunk?: ChunkPipeline;
}

/** A chunk's write pipeline: AllocateChunk and BumpChunkVersion answer one, and Create with first_chunk. */
export interface ChunkPipeline {
  readonly handle: number;
  /** The chunk's index in its file (AllocateChunk; 0 for Create's first chunk; -1 from BumpChunkVersion). */
  readonly index: number;
  readonly version: number;
  /** The pipeline's replicas, in order. */
  readonly replicas: readonly ChunkReplica[];
}

export interface ChunkLocation {
  readonly handle: number;
  readonly index: number;
  readonly version: number;
  readonly replicas: readonly ChunkReplica[];
  readonly sealed: boolean;
  readonly lengthBytes: number;
  /** CRC32C of the chunk's bytes, once sealed. */
  readonly checksum: number;
}

export interface ChunkLocationsPage {
  readonly fileId: number;
  readonly lengthBytes: number;
  readonly chunkCount: number;
  readonly complete: boolean;
  readonly chunks: readonly ChunkLocation[];
  /** Pass as `fromIndex` for the next page; null when this page ends the file. */
  readonly nextIndex: number | null;
}

/** What ReportBadReplica did (see metadata.proto). */
export type BadReplicaOutcome = 'dropped' | 'pending' | 'not_listed' | 'last_replica' | 'unsealed';

interface Stub extends grpc.Client {
  [method: string]: unknown;
}
type UnaryFn = (
  request: WireRequest,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, reply?: WireReply) => void,
) => void;

/**
 * Addresses learned from NOT_LEADER redirects, beyond the ones the client was configured with, kept at most.
 * A server may name any address, and each one kept holds a gRPC channel: past this, the oldest learned address
 * is forgotten and its channel closed (the chunkserver's metadata link caps its list the same way). The
 * configured addresses are always kept.
 */
export const learnedAddressesMax = 32;
/** Servers a SubmitBatcher keeps a queue and a channel for, at most: past it, idle ones are closed, oldest first. */
export const batcherTargetsMax = 32;

const retryableCodes = new Set(['UNAVAILABLE', 'TIMEOUT']);
/** The methods `readAddress` applies to: reads of the namespace and of chunk locations. */
const readMethods = new Set<string>(['Stat', 'Readdir', 'ChunkLocations']);
const retryableGrpc = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
]);

export class MetadataClient {
  private readonly stubs = new Map<string, Stub>();
  /** close() was called: every call from now on fails (a writer left open stops renewing its lease). */
  private closed = false;
  /** The configured addresses (the first `configuredCount`), then those learned from redirects. */
  private readonly addresses: string[];
  private readonly configuredCount: number;
  private current = 0;
  private clientId = 0;
  private seq = 0;
  /** Every seq <= ack has been answered. */
  private ack = 0;
  private readonly answered = new Set<number>();
  private readonly attemptTimeoutMs: number;
  private readonly retryDeadlineMs: number;
  private readonly retryDelayMs: number;
  private readonly onAnswer: ((address: string, method: MetadataMethod) => void) | undefined;
  private readonly batcher: SubmitBatcher | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly readAddress: string | undefined;
  /** Retries performed (for tests and diagnostics). */
  retries = 0;

  private constructor(addresses: readonly string[], options: MetadataClientOptions) {
    if (addresses.length === 0) throw new Error('need at least one server address');
    this.addresses = [...new Set(addresses)];
    this.configuredCount = this.addresses.length;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 2_000;
    this.retryDeadlineMs = options.retryDeadlineMs ?? 15_000;
    this.retryDelayMs = options.retryDelayMs ?? 50;
    this.onAnswer = options.onAnswer;
    this.batcher = options.batcher;
    this.signal = options.signal;
    this.readAddress = options.readAddress;
  }

  /** Connects and opens a session. */
  static async connect(
    addresses: readonly string[],
    options: MetadataClientOptions = {},
  ): Promise<MetadataClient> {
    const client = new MetadataClient(addresses, options);
    const reply = await client.call('OpenSession', {});
    client.clientId = Number(reply['clientId']);
    return client;
  }

  get sessionId(): number {
    return this.clientId;
  }

  /** The address the client currently sends to. */
  get target(): string {
    return this.addresses[this.current] ?? '';
  }

  /** The addresses it tries: the configured ones, then those learned from redirects (diagnostics, tests). */
  knownAddresses(): readonly string[] {
    return [...this.addresses];
  }

  /** gRPC channels this client holds open now (one per address used; diagnostics, tests). */
  openChannels(): number {
    return this.stubs.size;
  }

  mkdir(
    path: string,
    options: { parents?: boolean; mode?: number; ifGeneration?: number; compression?: 'none' | 'lz4' } = {},
  ): Promise<InodeRef> {
    return this.mutate('Mkdir', { path, ...options }).then(inodeRef);
  }

  /** With `leaseHolder` and `leaseDurationMs`, the new file's writer lease is granted too. */
  create(path: string, options: CreateOptions = {}): Promise<InodeRef> {
    return this.mutate('Create', { path, ...options }).then(inodeRef);
  }

  /**
   * Creates (or, without `exclusive`, replaces) the file and grants `holder` its writer lease in the same
   * command. `writing` is what a writer needs to start: the file's chunk size and compression and the
   * lease's expiry (also when the call travels in a Submit batch); undefined from a leader older than these
   * fields (the caller then stats the file, and acquires the lease: the old leader granted it already).
   * With `firstChunk`, the leader also allocates the file's first chunk when it can place it now, and
   * `writing.firstChunk` is its pipeline (absent: allocate it with allocateChunk, index 0).
   */
  async createForWriting(
    path: string,
    options: Omit<CreateOptions, 'leaseHolder' | 'leaseDurationMs'> & { holder: string; leaseDurationMs: number; firstChunk?: boolean },
  ): Promise<InodeRef & { writing?: CreatedWriting }> {
    const { holder, ...rest } = options;
    const reply = await this.mutate('Create', { path, ...rest, leaseHolder: holder });
    const ref = inodeRef(reply);
    const size = reply['chunkSizeBytes'];
    const expires = reply['leaseExpiresMs'];
    if (size === undefined || size === null || expires === undefined || expires === null) return ref;
    const compression = reply['compression'] === 'lz4' ? 'lz4' : 'none';
    const first = reply['firstChunk'];
    const writing = { chunkSizeBytes: num(size), compression, leaseExpiresMs: num(expires) } as const;
    if (first === undefined || first === null) return { ...ref, writing };
    return { ...ref, writing: { ...writing, firstChunk: chunkPipeline(first as WireReply) } };
  }

  /** Changes a file's or directory's attributes (what is given); a directory's replication and compression are what new files below it inherit. */
  setattr(
    path: string,
    options: { mode?: number; mtimeMs?: number; owner?: string; replication?: number; compression?: 'none' | 'lz4'; ifGeneration?: number },
  ): Promise<InodeRef> {
    return this.mutate('Setattr', { path, ...options }).then(inodeRef);
  }

  /** Many new empty files in one existing directory, all or none (at most 1024 names per call). */
  async createMany(
    dir: string,
    names: readonly string[],
    options: { mode?: number; ifGeneration?: number; compression?: 'none' | 'lz4' } = {},
  ): Promise<{ created: number; firstId: number }> {
    const reply = await this.mutate('CreateMany', { dir, names, ...options });
    return { created: Number(reply['created'] ?? 0), firstId: Number(reply['firstId'] ?? 0) };
  }

  rename(from: string, to: string, options: { ifGeneration?: number } = {}): Promise<InodeRef> {
    return this.mutate('Rename', { from, to, ...options }).then(inodeRef);
  }

  async unlink(path: string, options: { ifGeneration?: number } = {}): Promise<void> {
    await this.mutate('Unlink', { path, ...options });
  }

  async rmdir(path: string, options: { ifGeneration?: number } = {}): Promise<void> {
    await this.mutate('Rmdir', { path, ...options });
  }

  async stat(path: string, options: { staleOk?: boolean } = {}): Promise<StatInfo> {
    const reply = await this.call('Stat', { path, ...options });
    const info = (reply['info'] ?? {}) as Record<string, unknown>;
    return {
      id: num(info['id']),
      type: info['type'] === 'dir' ? 'dir' : 'file',
      mode: num(info['mode']),
      owner: typeof info['owner'] === 'string' ? info['owner'] : '',
      mtimeMs: num(info['mtimeMs']),
      ctimeMs: num(info['ctimeMs']),
      generation: num(info['generation']),
      replication: num(info['replication']),
      chunkSizeBytes: num(info['chunkSizeBytes']),
      compression: info['compression'] === 'lz4' ? 'lz4' : 'none',
      childCount: num(info['childCount']),
      lengthBytes: num(info['lengthBytes']),
      chunkCount: num(info['chunkCount']),
      complete: info['complete'] === true,
    };
  }

  /** All entries of a directory (follows pages). */
  async readdir(path: string, options: { staleOk?: boolean } = {}): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    let cursor = '';
    for (;;) {
      const reply = await this.call('Readdir', { path, cursor, ...options });
      const entries = (reply['entries'] ?? []) as Record<string, unknown>[];
      for (const e of entries)
        out.push({ name: String(e['name']), id: num(e['id']), type: e['type'] === 'dir' ? 'dir' : 'file' });
      const next = reply['nextCursor'];
      if (typeof next !== 'string' || next === '') return out;
      cursor = next;
    }
  }

  // ---------------------------------------------------------------- writers and readers of chunks

  /**
   * The file's writer lease for `durationMs`; resolves with its expiry (the leader's wall-clock ms), the file's
   * chunk count (where an appending writer's chunks start) and, from a leader that answers them, its chunk
   * size and compression.
   */
  async acquireLease(
    path: string,
    options: { holder: string; durationMs: number; ifGeneration?: number },
  ): Promise<{ expiresMs: number; chunkCount: number; chunkSizeBytes?: number; compression?: 'none' | 'lz4' }> {
    const reply = await this.mutate('AcquireLease', { path, ...options });
    const lease = { expiresMs: num(reply['expiresMs']), chunkCount: num(reply['chunkCount']) };
    const size = reply['chunkSizeBytes'];
    if (size === undefined || size === null) return lease;
    return { ...lease, chunkSizeBytes: num(size), compression: reply['compression'] === 'lz4' ? 'lz4' : 'none' };
  }

  /** Extends the holder's live lease by `durationMs` from now (ELEASE once it expired: acquire again). */
  async renewLease(path: string, options: { holder: string; durationMs: number; ifGeneration?: number }): Promise<{ expiresMs: number }> {
    const reply = await this.mutate('RenewLease', { path, ...options });
    return { expiresMs: num(reply['expiresMs']) };
  }

  async releaseLease(path: string, options: { holder: string; ifGeneration?: number }): Promise<void> {
    await this.mutate('ReleaseLease', { path, ...options });
  }

  /**
   * A new chunk at the end of the file (the holder's lease required), with replicas chosen by the leader.
   * `index`: the index the writer expects, which makes a retry outside the session answer the first
   * allocation (metadata.proto, AllocateChunkRequest).
   */
  async allocateChunk(path: string, options: { holder: string; index?: number; ifGeneration?: number }): Promise<ChunkPipeline> {
    return chunkPipeline(await this.mutate('AllocateChunk', { path, ...options }));
  }

  /**
   * A new pipeline after a replica failed: `version` is the chunk's current one (ESTALE otherwise), `survivors`
   * the replicas kept; with `addReplacements` the leader tops the list up to the file's replication factor.
   */
  async bumpChunkVersion(
    handle: number,
    options: { holder: string; version: number; survivors: readonly number[]; addReplacements?: boolean; ifGeneration?: number },
  ): Promise<ChunkPipeline> {
    return chunkPipeline(await this.mutate('BumpChunkVersion', { handle, ...options }));
  }

  /** Fixes the chunk's length and CRC32C; resolves with the file's length so far. */
  async sealChunk(
    handle: number,
    options: { holder: string; version: number; lengthBytes: number; checksum: number; ifGeneration?: number },
  ): Promise<{ fileLengthBytes: number }> {
    checkCrc32c(options.checksum, 'checksum');
    const reply = await this.mutate('SealChunk', { handle, ...options });
    return { fileLengthBytes: num(reply['fileLengthBytes']) };
  }

  /** Drops the file's last, unsealed chunk that this writer allocated ahead and never wrote to. */
  async abandonChunk(path: string, options: { holder: string; handle: number; ifGeneration?: number }): Promise<{ chunkCount: number }> {
    const reply = await this.mutate('AbandonChunk', { path, ...options });
    return { chunkCount: num(reply['chunkCount']) };
  }

  /**
   * Seals the file (every chunk sealed first) and releases the lease. `chunkCount`: the chunks the writer
   * wrote; one unsealed chunk past them is dropped. `lastChunk`: the last written chunk, sealed by the same
   * command (as sealChunk would; both or neither), so a writer's close is one call (metadata.proto,
   * CompleteFileRequest).
   */
  async completeFile(
    path: string,
    options: { holder: string; chunkCount?: number; lastChunk?: ChunkSeal; ifGeneration?: number },
  ): Promise<{ lengthBytes: number; generation: number }> {
    if (options.lastChunk !== undefined) checkCrc32c(options.lastChunk.checksum, 'lastChunk.checksum');
    const reply = await this.mutate('CompleteFile', { path, ...options });
    return { lengthBytes: num(reply['lengthBytes']), generation: num(reply['generation']) };
  }

  /** A replica read at `version` was corrupt (idempotent: no session stamp). rfs reports checksum mismatches only. */
  async reportBadReplica(
    handle: number,
    options: { chunkserverId: number; version: number },
  ): Promise<{ outcome: BadReplicaOutcome; replicas: ChunkReplica[] }> {
    const reply = await this.call('ReportBadReplica', { handle, ...options });
    return { outcome: reply['outcome'] as BadReplicaOutcome, replicas: replicaList(reply['replicas']) };
  }

  /** One page of the file's chunk locations, from chunk `fromIndex`. */
  async chunkLocations(path: string, options: { fromIndex?: number; limit?: number; staleOk?: boolean } = {}): Promise<ChunkLocationsPage> {
    const reply = await this.call('ChunkLocations', { path, ...options });
    const chunks = ((reply['chunks'] ?? []) as Record<string, unknown>[]).map((c) => ({
      handle: num(c['handle']),
      index: num(c['index']),
      version: num(c['version']),
      replicas: replicaList(c['replicas']),
      sealed: c['sealed'] === true,
      lengthBytes: num(c['lengthBytes']),
      checksum: num(c['checksum']),
    }));
    return {
      fileId: num(reply['fileId']),
      lengthBytes: num(reply['lengthBytes']),
      chunkCount: num(reply['chunkCount']),
      complete: reply['complete'] === true,
      chunks,
      nextIndex: reply['hasMore'] === true ? num(reply['nextIndex']) : null,
    };
  }

  /** ClusterStatus of the server the client currently talks to (no redirect). */
  clusterStatus(address = this.target): Promise<WireReply> {
    return this.attempt(address, 'ClusterStatus', {});
  }

  /** A mutation with a fresh session stamp, kept across retries. */
  async mutate(method: MetadataMethod, request: WireRequest): Promise<WireReply> {
    const seq = ++this.seq;
    const session = { clientId: this.clientId, seq, ack: this.ack };
    try {
      return await this.call(method, { ...request, session });
    } finally {
      // Answered (result or definite error), or given up: either way the client will not retry this seq.
      this.answered.add(seq);
      while (this.answered.delete(this.ack + 1)) this.ack++;
    }
  }

  /** One operation with redirects and retries; a reply error that is not retryable is thrown. */
  async call(method: MetadataMethod, request: WireRequest): Promise<WireReply> {
    if (this.closed) throw new MetadataError('UNAVAILABLE', 'the client was closed');
    if (this.readAddress !== undefined && readMethods.has(method)) {
      const reply = await this.readAt(this.readAddress, method, request);
      if (reply !== undefined) return reply;
    }
    const deadline = Date.now() + this.retryDeadlineMs;
    // Created only when an attempt fails: an Error captures a stack, a cost on every call otherwise.
    let last: MetadataError | undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.signal?.aborted === true || this.closed) throw new MetadataError('UNAVAILABLE', 'the client was shut down');
      if (attempt > 0) {
        this.retries++;
        if (Date.now() >= deadline) throw last ?? new MetadataError('UNAVAILABLE', 'no attempt made');
      }
      const address = this.target;
      let reply: WireReply;
      try {
        reply = await this.attempt(address, method, request);
      } catch (e) {
        const code = (e as grpc.ServiceError).code;
        if (!retryableGrpc.has(code)) throw e;
        last = new MetadataError('UNAVAILABLE', `${address}: ${(e as Error).message}`);
        this.rotate();
        await sleep(this.retryDelayMs);
        continue;
      }
      const error = reply.error;
      if (error === undefined || error === null) {
        this.onAnswer?.(address, method);
        return reply;
      }
      last = new MetadataError(error.code, error.message);
      if (error.code === 'NOT_LEADER') {
        if (
          error.leaderAddress !== undefined &&
          error.leaderAddress !== '' &&
          error.leaderAddress !== address
        ) {
          this.redirect(error.leaderAddress);
        } else {
          this.rotate();
          await sleep(this.retryDelayMs);
        }
        continue;
      }
      if (retryableCodes.has(error.code)) {
        if (error.code === 'UNAVAILABLE') this.rotate();
        await sleep(this.retryDelayMs);
        continue;
      }
      throw toError(error);
    }
  }

  /** One attempt of a read at `address`; undefined if it failed in any way (the caller takes the normal path). */
  private async readAt(address: string, method: MetadataMethod, request: WireRequest): Promise<WireReply | undefined> {
    let reply: WireReply;
    try {
      reply = await this.attempt(address, method, request);
    } catch {
      return undefined;
    }
    if (reply.error !== undefined && reply.error !== null) return undefined;
    this.onAnswer?.(address, method);
    return reply;
  }

  private attempt(address: string, method: string, request: WireRequest): Promise<WireReply> {
    if (this.batcher !== undefined && submittable.has(method)) {
      return this.batcher.submit(address, method as SubmittableMethod, request, this.attemptTimeoutMs);
    }
    const stub = this.stub(address);
    const fn = stub[method] as UnaryFn;
    return new Promise((resolve, reject) => {
      fn.call(stub, request, { deadline: Date.now() + this.attemptTimeoutMs }, (error, reply) => {
        if (error !== null) reject(error);
        else resolve(reply ?? {});
      });
    });
  }

  private stub(address: string): Stub {
    let stub = this.stubs.get(address);
    if (stub === undefined) {
      stub = newStub(address);
      this.stubs.set(address, stub);
    }
    return stub;
  }

  private redirect(address: string): void {
    let i = this.addresses.indexOf(address);
    if (i < 0) {
      if (this.addresses.length - this.configuredCount >= learnedAddressesMax) {
        const [dropped] = this.addresses.splice(this.configuredCount, 1);
        if (dropped !== undefined) this.closeStub(dropped);
      }
      this.addresses.push(address);
      i = this.addresses.length - 1;
    }
    this.current = i;
  }

  /** Closes the channel of an address the client forgot (a call still running on it may fail: it is retried). */
  private closeStub(address: string): void {
    if (address === this.readAddress) return;
    const stub = this.stubs.get(address);
    if (stub === undefined) return;
    this.stubs.delete(address);
    stub.close();
  }

  private rotate(): void {
    this.current = (this.current + 1) % this.addresses.length;
  }

  close(): void {
    this.closed = true;
    for (const stub of this.stubs.values()) stub.close();
    this.stubs.clear();
  }
}

const submittable = new Map<string, SubmitItemField>(
  Object.entries(submitItemMethods).map(([field, method]) => [method, field as SubmitItemField]),
);

/** Submit calls in flight per server, at most: one more batch fills while the previous ones are answered. */
export const submitsInflightMax = 2;
/** Estimated request bytes per Submit call, at most: under the server's 64 KiB request limit. */
export const submitBytesMax = 48 * 1024;
/** Estimated bytes of an item beside its strings (field tags, session stamp, numbers). */
const itemOverheadBytes = 64;

interface QueuedItem {
  readonly field: SubmitItemField;
  readonly request: WireRequest;
  readonly bytes: number;
  readonly deadlineMs: number;
  readonly resolve: (reply: WireReply) => void;
  readonly reject: (error: unknown) => void;
}

interface TargetQueue {
  readonly stub: Stub;
  items: QueuedItem[];
  inflight: number;
  scheduled: boolean;
}

/**
 * Group commit from the client: concurrent namespace mutations of one process (any number of sessions)
 * are coalesced into Submit calls, one queue per server. Nagle-free: an operation waits for no timer; a
 * call leaves at the next turn of the event loop (setImmediate) unless `submitsInflightMax` calls to that
 * server are in flight, and then carries everything queued meanwhile (up to `submitItemsMax` items and
 * `submitBytesMax`). So one client alone sees one call per operation, as without batching, and many
 * clients share one call and one Raft append. Each item keeps its session stamp; the caller
 * (MetadataClient.call) handles each item's answer (redirects, retries) as a unary call's.
 */
export class SubmitBatcher {
  private readonly targets = new Map<string, TargetQueue>();
  private closed = false;
  /** Submit calls sent and items carried (diagnostics, tests). */
  calls = 0;
  items = 0;

  /** One item's answer from `address` (its own reply or error), or the call's transport error. */
  submit(address: string, method: SubmittableMethod, request: WireRequest, timeoutMs: number): Promise<WireReply> {
    if (this.closed) return Promise.reject(new MetadataError('UNAVAILABLE', 'batcher closed'));
    const field = submittable.get(method);
    if (field === undefined) return Promise.reject(new MetadataError('EINVAL', `${method} cannot be submitted in a batch`));
    const target = this.target(address);
    return new Promise((resolve, reject) => {
      target.items.push({ field, request, bytes: estimateBytes(request), deadlineMs: Date.now() + timeoutMs, resolve, reject });
      this.schedule(target);
    });
  }

  /** Servers with a queue and a channel now (diagnostics, tests). */
  targetCount(): number {
    return this.targets.size;
  }

  close(): void {
    this.closed = true;
    for (const t of this.targets.values()) {
      t.stub.close();
      for (const item of t.items.splice(0)) item.reject(new MetadataError('UNAVAILABLE', 'batcher closed'));
    }
    this.targets.clear();
  }

  private target(address: string): TargetQueue {
    let t = this.targets.get(address);
    if (t === undefined) {
      this.evictIdleTargets(batcherTargetsMax - 1);
      t = { stub: newStub(address), items: [], inflight: 0, scheduled: false };
      this.targets.set(address, t);
    }
    return t;
  }

  /** Closes idle targets (nothing queued or in flight), oldest first, until at most `keep` remain. */
  private evictIdleTargets(keep: number): void {
    for (const [address, t] of this.targets) {
      if (this.targets.size <= keep) return;
      if (t.items.length > 0 || t.inflight > 0 || t.scheduled) continue;
      this.targets.delete(address);
      t.stub.close();
    }
  }

  private schedule(t: TargetQueue): void {
    if (t.scheduled || t.inflight >= submitsInflightMax || t.items.length === 0) return;
    t.scheduled = true;
    setImmediate(() => {
      t.scheduled = false;
      while (t.inflight < submitsInflightMax && t.items.length > 0 && !this.closed) this.send(t);
    });
  }

  private send(t: TargetQueue): void {
    let bytes = 0;
    let n = 0;
    while (n < t.items.length && n < submitItemsMax && (n === 0 || bytes + t.items[n]!.bytes <= submitBytesMax)) {
      bytes += t.items[n]!.bytes;
      n++;
    }
    const batch = t.items.splice(0, n);
    const deadline = Math.max(...batch.map((i) => i.deadlineMs));
    const items = batch.map((i) => ({ [i.field]: i.request }));
    t.inflight++;
    this.calls++;
    this.items += batch.length;
    const fn = t.stub['Submit'] as UnaryFn;
    fn.call(t.stub, { items }, { deadline }, (error, reply) => {
      t.inflight--;
      this.schedule(t);
      if (error !== null) {
        for (const i of batch) i.reject(error);
        return;
      }
      const callError = reply?.error;
      const results = (reply?.['results'] ?? []) as WireReply[];
      for (let k = 0; k < batch.length; k++) {
        if (callError !== undefined && callError !== null) batch[k]!.resolve({ error: callError });
        else if (results.length !== batch.length)
          batch[k]!.resolve({ error: { code: 'UNAVAILABLE', message: `Submit answered ${results.length} results for ${batch.length} items` } });
        else batch[k]!.resolve(results[k]!);
      }
    });
  }
}

function estimateBytes(request: WireRequest): number {
  let bytes = itemOverheadBytes;
  for (const value of Object.values(request)) if (typeof value === 'string') bytes += Buffer.byteLength(value);
  return bytes;
}

function newStub(address: string): Stub {
  return new MetadataClientConstructor(address, grpc.credentials.createInsecure(), {
    // Reconnect quickly to a server that comes back.
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1_000,
  });
}

function toError(error: WireError): MetadataError {
  return new MetadataError(error.code, error.message);
}

function num(x: unknown): number {
  return typeof x === 'number' ? x : typeof x === 'string' ? Number(x) : 0;
}

function replicaList(x: unknown): ChunkReplica[] {
  if (!Array.isArray(x)) return [];
  return (x as Record<string, unknown>[]).map((r) => ({ id: num(r['id']), address: typeof r['address'] === 'string' ? r['address'] : '' }));
}

function chunkPipeline(reply: WireReply): ChunkPipeline {
  return {
    handle: num(reply['handle']),
    index: reply['index'] === undefined ? -1 : num(reply['index']),
    version: num(reply['version']),
    replicas: replicaList(reply['replicas']),
  };
}

/** uint32 on the wire: protobuf would silently truncate a larger number, so it is refused before sending. */
function checkCrc32c(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > 0xffff_ffff) throw new MetadataError('EINVAL', `${what}: ${value} is not a CRC32C`);
}

function inodeRef(reply: WireReply): InodeRef {
  return { id: num(reply['id']), generation: num(reply['generation']) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
