/**
 * In-memory stand-ins for the metadata leader and the chunkservers' data plane, faithful to the contracts
 * in src/client/data-path.ts, with switches for failures: a server that dies after taking N more bytes
 * (so replicas before it in the chain hold bytes that were never acknowledged), a corrupt replica, a
 * refused lease renewal. They exercise the writer's and reader's logic; the real metadata service and data
 * plane are covered by their own tests and by the end-to-end test.
 */
import { crc32c } from '@node-rs/crc32';
import type {
  AllocatedChunk,
  ChunkLocation,
  ChunkLocationsPage,
  ChunkPipeline,
  ChunkSeal,
  DataPlane,
  GrantedLease,
  OpenPipeline,
  PipelineFailure,
  ReaderMetadata,
  Replica,
  WriterMetadata,
  WriterTimers,
} from '../../src/client/data-path.ts';

interface FakeReplica {
  version: number;
  bytes: Buffer;
  sealed: boolean;
}

export class FakeServer {
  alive = true;
  /** Dies after appending this many more bytes (part of a packet is kept). */
  failAfterBytes = Infinity;
  /** Reads of these handles fail with CHECKSUM_MISMATCH. */
  readonly corrupt = new Set<number>();
  /** Reads of these handles fail with IO_ERROR (the server's disk failing). */
  readonly unreadable = new Set<number>();
  /** Seals with this value XORed into the checksum (a replica that stored other bytes than it was sent). */
  sealChecksumXor = 0;
  readonly replicas = new Map<number, FakeReplica>();
  constructor(
    readonly id: number,
    readonly address: string,
  ) {}
}

class FakePipelineError extends Error implements PipelineFailure {
  constructor(
    readonly code: string,
    readonly failedIndex: number,
    readonly failedId: number,
    readonly ackedLengthBytes: number,
  ) {
    super(`${code}: replica ${failedId} at chain position ${failedIndex}`);
  }
}

class FakeReadError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

export class FakeDataPlane implements DataPlane {
  readonly servers = new Map<string, FakeServer>();
  pipelinesOpened = 0;
  /** Acknowledgements lag this many bytes behind what was written, until a flush (a pipeline's window). */
  ackLagBytes = 0;

  constructor(count: number) {
    for (let id = 1; id <= count; id++) this.servers.set(`cs${id}:1`, new FakeServer(id, `cs${id}:1`));
  }

  server(id: number): FakeServer {
    return this.servers.get(`cs${id}:1`)!;
  }

  openPipeline(o: OpenPipeline): Promise<ChunkPipeline> {
    this.pipelinesOpened++;
    const chain = o.chain.map((r) => this.servers.get(r.address)!);
    const offset = o.offset ?? 0;
    for (const [i, s] of chain.entries()) {
      if (!s.alive) return Promise.reject(new FakePipelineError('CONNECTION_LOST', i, s.id, offset));
      const existing = s.replicas.get(o.handle);
      if (o.mode === 'create') {
        if (existing !== undefined) return Promise.reject(new FakePipelineError('REPLICA_EXISTS', i, s.id, offset));
        s.replicas.set(o.handle, { version: o.version, bytes: Buffer.alloc(0), sealed: false });
      } else if (existing === undefined && offset === 0) {
        // A replica a failed create never reached: started afresh (the data plane's resume rule).
        s.replicas.set(o.handle, { version: o.version, bytes: Buffer.alloc(0), sealed: false });
      } else {
        const ok = existing !== undefined && !existing.sealed && existing.version >= (o.fromVersion ?? 0) && existing.version <= o.version && existing.bytes.length >= offset;
        if (!ok) return Promise.reject(new FakePipelineError('STALE_VERSION', i, s.id, offset));
        existing.version = o.version;
        existing.bytes = Buffer.from(existing.bytes.subarray(0, offset));
      }
    }
    let acked = offset;
    let sent = offset;
    const fail = (code: string): never => {
      const i = chain.findIndex((s) => !s.alive);
      throw new FakePipelineError(code, i, chain[i]!.id, acked);
    };
    const pipeline: ChunkPipeline = {
      get ackedLengthBytes() {
        return acked;
      },
      write: (data) => {
        try {
          for (const s of chain) {
            if (!s.alive) fail('CONNECTION_LOST');
            const r = s.replicas.get(o.handle)!;
            if (r.version !== o.version) fail('STALE_VERSION');
            const take = Math.min(data.length, s.failAfterBytes);
            r.bytes = Buffer.concat([r.bytes, data.subarray(0, take)]);
            s.failAfterBytes -= take;
            if (take < data.length) {
              s.alive = false;
              fail('CONNECTION_LOST');
            }
          }
          sent += data.length;
          acked = Math.max(acked, sent - this.ackLagBytes);
          return Promise.resolve();
        } catch (error) {
          return Promise.reject(error instanceof Error ? error : new Error(String(error)));
        }
      },
      flush: () => {
        for (const s of chain) if (!s.alive) return Promise.reject(new FakePipelineError('CONNECTION_LOST', chain.indexOf(s), s.id, acked));
        acked = sent;
        return Promise.resolve();
      },
      seal: (lengthBytes) => {
        const out: { id: number; checksum: number }[] = [];
        for (const [i, s] of chain.entries()) {
          if (!s.alive) return Promise.reject(new FakePipelineError('CONNECTION_LOST', i, s.id, acked));
          const r = s.replicas.get(o.handle)!;
          if (r.bytes.length !== lengthBytes) return Promise.reject(new FakePipelineError('BAD_OFFSET', i, s.id, acked));
          r.sealed = true;
          out.push({ id: s.id, checksum: (crc32c(r.bytes) ^ s.sealChecksumXor) >>> 0 });
        }
        return Promise.resolve(out);
      },
      abort: () => undefined,
    };
    return Promise.resolve(pipeline);
  }

  readRange(address: string, request: { handle: number; version: number; offset: number; length: number }): Promise<Uint8Array> {
    const s = this.servers.get(address);
    if (s === undefined || !s.alive) return Promise.reject(new FakeReadError('CONNECTION_LOST'));
    if (s.corrupt.has(request.handle)) return Promise.reject(new FakeReadError('CHECKSUM_MISMATCH'));
    if (s.unreadable.has(request.handle)) return Promise.reject(new FakeReadError('IO_ERROR'));
    const r = s.replicas.get(request.handle);
    if (r === undefined) return Promise.reject(new FakeReadError('NO_SUCH_REPLICA'));
    if (r.version !== request.version) return Promise.reject(new FakeReadError('STALE_VERSION'));
    return Promise.resolve(r.bytes.subarray(request.offset, request.offset + request.length));
  }

  pipelineFailure(error: unknown): PipelineFailure | undefined {
    return error instanceof FakePipelineError ? error : undefined;
  }

  errorCode(error: unknown): string | undefined {
    return error instanceof FakeReadError || error instanceof FakePipelineError ? error.code : undefined;
  }
}

interface FakeChunk {
  handle: number;
  index: number;
  version: number;
  replicas: Replica[];
  sealed: boolean;
  lengthBytes: number;
  checksum: number;
}

interface FakeFile {
  chunks: FakeChunk[];
  holder: string | null;
  complete: boolean;
  lengthBytes: number;
}

export class FakeMetadata implements WriterMetadata, ReaderMetadata {
  readonly files = new Map<string, FakeFile>();
  readonly badReports: { handle: number; chunkserverId: number; version: number }[] = [];
  /** Handles of unsealed chunks completeFile dropped past the writer's count, in order. */
  readonly abandoned: number[] = [];
  /** When set, the next allocation is applied but its answer is lost (the call rejects). */
  loseNextAllocationAnswer = false;
  /** Grant the writer's lease in createFile when asked (as a current leader); false: as an older one. */
  leaseOnCreate = true;
  /** As a leader older than CompleteFile's lastChunk: completeFile ignores it. */
  lastChunkIgnored = false;
  /** createFile with the lease also adds the file's first chunk and answers it (as Create's first_chunk). */
  firstChunkOnCreate = false;
  /** createFile calls, and whether each granted the lease. */
  readonly creates: { path: string; withLease: boolean }[] = [];
  /** acquireLease, sealChunk and completeFile calls (completeFile: with the last chunk's seal or not). */
  readonly calls: string[] = [];
  /** Calls of allocateChunk so far. */
  allocations = 0;
  renewals = 0;
  refuseRenewal = false;
  private nextHandle = 100;
  private readonly chunks = new Map<number, { file: FakeFile; chunk: FakeChunk }>();

  constructor(
    private readonly data: FakeDataPlane,
    readonly chunkSizeBytes: number,
    private readonly replication = 3,
  ) {}

  createFile(
    path: string,
    options: { exclusive: boolean; lease: { holder: string; durationMs: number } },
  ): Promise<{ chunkSizeBytes: number; lease?: GrantedLease; firstChunk?: AllocatedChunk }> {
    if (options.exclusive && this.files.has(path)) return Promise.reject(new Error(`EEXIST: ${path}`));
    this.creates.push({ path, withLease: this.leaseOnCreate });
    // As the state machine's create with a lease (when leaseOnCreate): the new file is the holder's at once.
    const holder = this.leaseOnCreate ? options.lease.holder : null;
    const f: FakeFile = { chunks: [], holder, complete: false, lengthBytes: 0 };
    this.files.set(path, f);
    const created = { chunkSizeBytes: this.chunkSizeBytes, ...(holder !== null ? { lease: { expiresMs: 0, chunkCount: 0 } } : {}) };
    if (holder === null || !this.firstChunkOnCreate) return Promise.resolve(created);
    const first = this.addChunk(f);
    return Promise.resolve({ ...created, firstChunk: { handle: first.handle, index: 0, version: 1, replicas: first.replicas } });
  }

  /** A new chunk at the end of `f`, on the first `replication` live servers. */
  private addChunk(f: FakeFile): FakeChunk {
    const live = [...this.data.servers.values()].filter((s) => s.alive).slice(0, this.replication);
    const chunk: FakeChunk = {
      handle: this.nextHandle++,
      index: f.chunks.length,
      version: 1,
      replicas: live.map((s) => ({ id: s.id, address: s.address })),
      sealed: false,
      lengthBytes: 0,
      checksum: 0,
    };
    f.chunks.push(chunk);
    this.chunks.set(chunk.handle, { file: f, chunk });
    return chunk;
  }

  private file(path: string, holder: string): FakeFile {
    const f = this.files.get(path);
    if (f === undefined) throw new Error(`ENOENT: ${path}`);
    if (f.holder !== holder) throw new Error(`ELEASE: ${path}`);
    return f;
  }

  acquireLease(path: string, holder: string): Promise<{ expiresMs: number; chunkCount: number }> {
    this.calls.push('acquireLease');
    const f = this.files.get(path)!;
    if (f.holder !== null && f.holder !== holder) return Promise.reject(new Error('ELEASE'));
    f.holder = holder;
    return Promise.resolve({ expiresMs: 0, chunkCount: f.chunks.length });
  }

  renewLease(path: string, holder: string): Promise<{ expiresMs: number }> {
    this.renewals++;
    if (this.refuseRenewal) return Promise.reject(new Error('ELEASE: expired'));
    this.file(path, holder);
    return Promise.resolve({ expiresMs: 0 });
  }

  releaseLease(path: string, holder: string): Promise<void> {
    const f = this.files.get(path);
    if (f !== undefined && f.holder === holder) f.holder = null;
    return Promise.resolve();
  }

  allocateChunk(path: string, holder: string, index: number): Promise<AllocatedChunk> {
    const f = this.file(path, holder);
    this.allocations += 1;
    // As the state machine's addChunk: the writer's own allocation whose answer was lost is answered again.
    if (index !== f.chunks.length) {
      const last = f.chunks[f.chunks.length - 1];
      if (index === f.chunks.length - 1 && last !== undefined && !last.sealed && last.version === 1) {
        return Promise.resolve({ handle: last.handle, index, version: 1, replicas: last.replicas });
      }
      return Promise.reject(new Error(`EINVAL: index ${index}, the file has ${f.chunks.length} chunks`));
    }
    // The writer seals one full chunk in the background while the next streams: more unsealed is a bug.
    if (f.chunks.filter((c) => !c.sealed).length > 1) return Promise.reject(new Error('EINVAL: two chunks are not sealed'));
    const chunk = this.addChunk(f);
    if (this.loseNextAllocationAnswer) {
      this.loseNextAllocationAnswer = false;
      return Promise.reject(new Error('TIMEOUT: the answer was lost'));
    }
    return Promise.resolve({ handle: chunk.handle, index: chunk.index, version: chunk.version, replicas: chunk.replicas });
  }

  bumpChunkVersion(handle: number, holder: string, version: number, survivors: readonly number[]): Promise<{ version: number; replicas: readonly Replica[] }> {
    const entry = this.chunks.get(handle)!;
    if (entry.file.holder !== holder) return Promise.reject(new Error('ELEASE'));
    if (entry.chunk.version !== version) return Promise.reject(new Error('ESTALE'));
    entry.chunk.version++;
    entry.chunk.replicas = entry.chunk.replicas.filter((r) => survivors.includes(r.id));
    return Promise.resolve({ version: entry.chunk.version, replicas: entry.chunk.replicas });
  }

  sealChunk(handle: number, holder: string, version: number, lengthBytes: number, checksum: number): Promise<void> {
    this.calls.push('sealChunk');
    return this.seal(handle, holder, version, lengthBytes, checksum);
  }

  private seal(handle: number, holder: string, version: number, lengthBytes: number, checksum: number): Promise<void> {
    const entry = this.chunks.get(handle)!;
    if (entry.file.holder !== holder) return Promise.reject(new Error('ELEASE'));
    if (entry.chunk.version !== version) return Promise.reject(new Error('ESTALE'));
    // The writer seals chunks in file order (a reader's length is the sealed prefix).
    if (entry.file.chunks.slice(0, entry.chunk.index).some((c) => !c.sealed)) return Promise.reject(new Error('EINVAL: an earlier chunk is not sealed'));
    Object.assign(entry.chunk, { sealed: true, lengthBytes, checksum });
    return Promise.resolve();
  }

  async completeFile(path: string, holder: string, chunkCount: number, lastChunk?: ChunkSeal): Promise<{ lengthBytes: number }> {
    this.calls.push(lastChunk === undefined || this.lastChunkIgnored ? 'completeFile' : 'completeFile+seal');
    const f = this.file(path, holder);
    if (lastChunk !== undefined && !this.lastChunkIgnored) {
      const entry = this.chunks.get(lastChunk.handle);
      if (entry === undefined || entry.file !== f || entry.chunk.index >= chunkCount) throw new Error(`EINVAL: chunk ${lastChunk.handle} was not written`);
      // As the state machine: the seal and the completion both happen or neither (the seal is undone on failure).
      const before = { ...entry.chunk };
      const chunks = [...f.chunks];
      const abandoned = this.abandoned.length;
      await this.seal(lastChunk.handle, holder, lastChunk.version, lastChunk.lengthBytes, lastChunk.checksum);
      try {
        return await this.complete(f, chunkCount);
      } catch (error) {
        Object.assign(entry.chunk, before);
        f.chunks = chunks;
        for (const c of this.abandoned.splice(abandoned)) this.chunks.set(c, { file: f, chunk: chunks.find((x) => x.handle === c)! });
        throw error;
      }
    }
    return this.complete(f, chunkCount);
  }

  private complete(f: FakeFile, chunkCount: number): Promise<{ lengthBytes: number }> {
    // As the state machine's completeFile: one unsealed chunk past the writer's count is dropped.
    if (chunkCount !== f.chunks.length) {
      const last = f.chunks[f.chunks.length - 1];
      if (chunkCount !== f.chunks.length - 1 || last === undefined || last.sealed) {
        return Promise.reject(new Error(`EINVAL: the writer wrote ${chunkCount} chunks, the file has ${f.chunks.length}`));
      }
      f.chunks.pop();
      this.chunks.delete(last.handle);
      this.abandoned.push(last.handle);
    }
    if (f.chunks.some((c) => !c.sealed)) return Promise.reject(Object.assign(new Error('EINVAL: a chunk is not sealed'), { code: 'EINVAL' }));
    f.complete = true;
    f.holder = null;
    f.lengthBytes = f.chunks.reduce((s, c) => s + c.lengthBytes, 0);
    return Promise.resolve({ lengthBytes: f.lengthBytes });
  }

  chunkLocations(path: string, fromIndex: number): Promise<ChunkLocationsPage> {
    const f = this.files.get(path);
    if (f === undefined) return Promise.reject(new Error(`ENOENT: ${path}`));
    const pageSize = 2; // small pages, so readers must follow them
    const chunks: ChunkLocation[] = f.chunks.slice(fromIndex, fromIndex + pageSize).map((c) => ({ ...c }));
    const hasMore = fromIndex + pageSize < f.chunks.length;
    return Promise.resolve({ lengthBytes: f.lengthBytes, complete: f.complete, chunks, hasMore, nextIndex: fromIndex + pageSize });
  }

  reportBadReplica(handle: number, chunkserverId: number, version: number): Promise<void> {
    this.badReports.push({ handle, chunkserverId, version });
    return Promise.resolve();
  }
}

/** Timers the test fires by hand. */
export class ManualTimers implements WriterTimers {
  private readonly fns = new Set<() => void>();
  setInterval(fn: () => void): () => void {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }
  fire(): void {
    for (const fn of this.fns) fn();
  }
  get active(): number {
    return this.fns.size;
  }
}
