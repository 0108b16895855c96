/**
 * What the client's file writer and reader need from the rest of the system, as interfaces: the metadata
 * leader's file and chunk operations, and the chunkservers' data plane. The real implementations are the
 * metadata gRPC client and the TCP data plane (see ./connect.ts); the simulator and the unit tests inject
 * their own. Keeping the writer and reader behind these interfaces is what lets the deterministic
 * simulator run the very same write and read logic.
 */
import type { ChunkSeal } from '../fsm/commands.ts';

export interface Replica {
  readonly id: number;
  readonly address: string;
}

export interface AllocatedChunk {
  readonly handle: number;
  readonly index: number;
  readonly version: number;
  readonly replicas: readonly Replica[];
}

export interface ChunkLocation {
  readonly handle: number;
  readonly index: number;
  readonly version: number;
  readonly replicas: readonly Replica[];
  readonly sealed: boolean;
  readonly lengthBytes: number;
  readonly checksum: number;
}

export interface ChunkLocationsPage {
  readonly lengthBytes: number;
  readonly complete: boolean;
  readonly chunks: readonly ChunkLocation[];
  readonly hasMore: boolean;
  readonly nextIndex: number;
}

/** A writer's lease as granted: its expiry, and the file's chunks then (where the writer's chunks start). */
export interface GrantedLease {
  readonly expiresMs: number;
  readonly chunkCount: number;
}

/** A chunk's seal: its version, final length and CRC32C (as CompleteFile carries it). */
export type { ChunkSeal };

/** The metadata operations a writer uses (all but `chunkSizeOf` are leader-only mutations). */
export interface WriterMetadata {
  /**
   * Creates the file (exclusive or truncating; `compression` absent: the directory's) and returns its chunk
   * size in bytes and its compression (absent: none). The writer's `lease` may be granted on the way (by the
   * create's own command, or for an existing file the writer appends to): then the answer's `lease` is set,
   * with the file's chunk count when it was granted; when it is absent the writer acquires the lease itself
   * (an implementation may ignore the option). `firstChunk`: the new file's first chunk (index 0), allocated
   * by the same command when the lease came with it; absent: the writer allocates it (allocateChunk).
   */
  createFile(
    path: string,
    options: { exclusive: boolean; compression?: 'none' | 'lz4'; lease: { holder: string; durationMs: number } },
  ): Promise<{ chunkSizeBytes: number; compression?: 'none' | 'lz4'; lease?: GrantedLease; firstChunk?: AllocatedChunk }>;
  /** The lease, and the file's chunk count when it was granted (where an appending writer's chunks start). */
  acquireLease(path: string, holder: string, durationMs: number): Promise<{ expiresMs: number; chunkCount: number }>;
  renewLease(path: string, holder: string, durationMs: number): Promise<{ expiresMs: number }>;
  releaseLease(path: string, holder: string): Promise<void>;
  /**
   * A new chunk at `index`, the writer's count of chunks it was given so far: a retry of an allocation whose
   * answer was lost is answered with that allocation's chunk, whatever the session did.
   */
  allocateChunk(path: string, holder: string, index: number): Promise<AllocatedChunk>;
  /** A new pipeline for an unsealed chunk, with the survivors only. */
  bumpChunkVersion(handle: number, holder: string, version: number, survivors: readonly number[]): Promise<{ version: number; replicas: readonly Replica[] }>;
  sealChunk(handle: number, holder: string, version: number, lengthBytes: number, checksum: number): Promise<void>;
  /**
   * Completes the file the writer wrote `chunkCount` chunks of; the leader drops one unsealed chunk past them
   * (allocated ahead and never written to, or allocated by a call whose answer was lost). `lastChunk`: the
   * last written chunk, sealed by the same command (as sealChunk would; both or neither).
   */
  completeFile(path: string, holder: string, chunkCount: number, lastChunk?: ChunkSeal): Promise<{ lengthBytes: number }>;
}

export interface ReaderMetadata {
  chunkLocations(path: string, fromIndex: number): Promise<ChunkLocationsPage>;
  /** Tells the leader a replica is corrupt (a checksum mismatch); it replaces it from a good copy. */
  reportBadReplica(handle: number, chunkserverId: number, version: number): Promise<void>;
}

/** A write pipeline for one chunk (the data plane's PipelineWriter). */
export interface ChunkPipeline {
  /**
   * Sends `data` (the pipeline may keep a view of it until acknowledged); waits under backpressure. `crcs`:
   * the CRC32Cs of `data` on the chunk's block grid (gridCrcs at the pipeline's current length), when the
   * caller computed them anyway; the pipeline computes them otherwise.
   */
  write(data: Uint8Array, crcs?: readonly number[]): Promise<void>;
  /** Waits until everything written is acknowledged by every replica. */
  flush(): Promise<void>;
  /** Seals every replica at `lengthBytes`; each replica's CRC32C of the whole chunk. */
  seal(lengthBytes: number): Promise<readonly { readonly id: number; readonly checksum: number }[]>;
  abort(): void;
  /** The length every replica has acknowledged. */
  readonly ackedLengthBytes: number;
}

export interface OpenPipeline {
  readonly handle: number;
  readonly version: number;
  readonly chain: readonly Replica[];
  /** `resume`: after a version bump, survivors go from `fromVersion` to `version` and cut to `offset`. */
  readonly mode: 'create' | 'resume';
  readonly fromVersion?: number;
  readonly offset?: number;
  /** The file's compression: `lz4` makes the replicas store the chunk compressed. Default none. */
  readonly compression?: 'none' | 'lz4';
}

/** A pipeline failure: which replica failed first, and what every replica acknowledged. */
export interface PipelineFailure {
  readonly code: string;
  readonly failedIndex: number;
  readonly failedId: number;
  readonly ackedLengthBytes: number;
}

/** How a read may use the caller's buffer. */
export interface ReadIntoOptions {
  /**
   * The caller owns `into` and can retire it: on a ReadBufferAbandonedError it never reads or reuses that
   * buffer again. Only then does a short-circuit local read read straight into it (a file-system call cannot
   * be cancelled, so one abandoned on a hung disk may write into its buffer at any later time); otherwise it
   * reads into buffers of its own and copies the verified bytes out.
   */
  readonly retirable?: boolean;
}

/**
 * A read into a retirable buffer (ReadIntoOptions) gave up on a file-system call still reading into it (a
 * short-circuit local read on a hung disk). The caller must retire the buffer, and read the range again into
 * other memory: the replica's address is then read over the network.
 */
export class ReadBufferAbandonedError extends Error {
  readonly code = 'TIMEOUT';
  constructor(readonly detail: string) {
    super(`TIMEOUT: ${detail}`);
    this.name = 'ReadBufferAbandonedError';
  }
}

export interface DataPlane {
  openPipeline(options: OpenPipeline): Promise<ChunkPipeline>;
  /**
   * `into` (exactly `length` bytes), if given, may receive the bytes: the result is then `into` itself. With
   * `retirable` (see ReadIntoOptions) the data plane may read into `into` with a call it cannot cancel.
   */
  readRange(address: string, request: { handle: number; version: number; offset: number; length: number }, into?: Uint8Array, options?: ReadIntoOptions): Promise<Uint8Array>;
  /** The failure of a pipeline (from openPipeline or any pipeline call), or undefined for other errors. */
  pipelineFailure(error: unknown): PipelineFailure | undefined;
  /** The data plane's error code of a failed read (e.g. CHECKSUM_MISMATCH), if it has one. */
  errorCode(error: unknown): string | undefined;
  /** Closes connections kept for reuse (the real client's read pool), if any. */
  close?(): void;
  /** Whether the replica at `address` is on this host and read from its files (readers try it first). */
  isLocal?(address: string): boolean;
}

/** Timers for lease renewal, injected so the simulator drives them. */
export interface WriterTimers {
  setInterval(fn: () => void, ms: number): () => void;
}

export const realTimers: WriterTimers = {
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

export type FileIoErrorCode =
  | 'EIO' // every replica of a chunk failed (write) or no replica could serve a range (read)
  | 'EBADF' // the writer is closed or failed
  | 'EINVAL'; // a bad argument (negative offset, ...)

/** A data-path failure with a stable code (metadata failures keep their own MetadataError). */
export class FileIoError extends Error {
  constructor(
    readonly code: FileIoErrorCode,
    readonly detail: string,
    override readonly cause?: unknown,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'FileIoError';
  }
}
