/**
 * `FileReader`: reads byte ranges of files from their chunks' replicas.
 *
 * For each chunk a range covers, it asks one replica at the chunk's current version for exactly the part
 * needed (the chunkserver reads and verifies only the 64 KiB blocks that part touches), in the order
 * `orderReplicas` gives (nearest first; by default replicas on this host first (read from their files,
 * ./local-read.ts), then the listed order rotated by the chunk's handle, which spreads readers over the
 * replicas). A checksum mismatch or I/O error on a replica is reported to the
 * metadata leader (which replaces that replica from a good copy) and the next replica is tried; any other
 * failure (connection, timeout, stale version) just moves on. EIO when no replica serves the part.
 *
 * Only sealed chunks are read: the file's readable length is the sum of its sealed chunks' lengths.
 */
import type { DataBug } from '../chunkserver/bugs.ts';
import { FileIoError, ReadBufferAbandonedError } from './data-path.ts';
import type { ChunkLocation, DataPlane, ReaderMetadata, ReadIntoOptions, Replica } from './data-path.ts';
import { ReadSession } from './read-session.ts';
import type { SpareBuffers } from './spare-buffers.ts';

/**
 * Codes of a read failure that mean the replica itself is bad (reported to the leader, which unlists the
 * replica and has it deleted). Only a checksum mismatch proves that: the bytes the chunkserver holds are not
 * the ones written. An I/O error may be transient (a disk's bad moment), and the chunkserver that met it
 * judges it itself: it re-verifies the replica and deletes and reports it only if the error persists
 * (agent.ts, `noteDiskError`). A reader that reported it too made the leader drop a good copy; with a second
 * replica lost later, an acknowledged file had no copy left (simulator seed 43253 of the data workload).
 */
const badReplicaCodes = new Set(['CHECKSUM_MISMATCH']);

export interface FileReaderOptions {
  readonly metadata: ReaderMetadata;
  readonly data: DataPlane;
  readonly orderReplicas?: (chunk: ChunkLocation) => readonly Replica[];
  /** Called for each replica that failed a read (tests, logs). */
  readonly onReplicaFailure?: (event: { handle: number; replicaId: number; code: string | undefined; reported: boolean }) => void;
  /** Planted bugs of read sessions (the simulator's self-test only). */
  readonly bugs?: ReadonlySet<DataBug>;
  /** Read-ahead buffers of sessions come from and go back to these (a client's, ./spare-buffers.ts). */
  readonly spares?: SpareBuffers;
}

export class FileReader {
  constructor(private readonly options: FileReaderOptions) {}

  /** The whole file (its sealed chunks), in one buffer allocated once. */
  async readFile(path: string): Promise<Buffer> {
    const chunks = await this.locations(path);
    return this.readOwn(chunks, 0, chunks.reduce((sum, c) => sum + c.lengthBytes, 0));
  }

  /** Up to `length` bytes from `offset` (fewer at the end of the file), in one new buffer. */
  async read(path: string, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      throw new FileIoError('EINVAL', `bad range: offset ${offset}, length ${length}`);
    const chunks = await this.locations(path);
    const total = chunks.reduce((sum, c) => sum + c.lengthBytes, 0);
    return this.readOwn(chunks, offset, Math.max(0, Math.min(length, total - offset)));
  }

  /**
   * `length` bytes from `start` in a new buffer of the reader's own, which it can retire (ReadIntoOptions): a
   * read abandoned with a file-system call still writing into it is read again into another buffer (the
   * hung replica's address is then read over the network).
   */
  private async readOwn(chunks: readonly ChunkLocation[], start: number, length: number): Promise<Buffer> {
    // Its own memory (never a slice of Node's shared pool, which an abandoned call could write into).
    const out = Buffer.allocUnsafeSlow(length);
    try {
      await this.readChunks(chunks, start, out, { retirable: true });
      return out;
    } catch (error) {
      if (!(error instanceof ReadBufferAbandonedError)) throw error;
      const again = Buffer.allocUnsafe(length);
      await this.readChunks(chunks, start, again);
      return again;
    }
  }

  /**
   * Reads from `offset` into the caller's buffer (up to its length; fewer at the end of the file) and returns
   * the bytes read: a reader of a large file reuses one buffer instead of allocating per range.
   */
  async readInto(path: string, offset: number, into: Uint8Array): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FileIoError('EINVAL', `bad offset ${offset}`);
    const chunks = await this.locations(path);
    const total = chunks.reduce((sum, c) => sum + c.lengthBytes, 0);
    const count = Math.max(0, Math.min(into.length, total - offset));
    await this.readChunks(chunks, offset, into.subarray(0, count));
    return count;
  }

  /**
   * A session for reading `path` many times (a reading file handle, a read stream): chunk locations fetched
   * once and reads ahead when sequential (./read-session.ts). Close it when done.
   */
  open(path: string): ReadSession {
    return new ReadSession(
      { locations: (p) => this.locations(p), readChunks: (chunks, start, out, options) => this.readChunks(chunks, start, out, options) },
      path,
      this.options.bugs,
      this.options.spares,
    );
  }

  /** Every sealed chunk of the file, in order (all pages of locations). */
  private async locations(path: string): Promise<ChunkLocation[]> {
    const out: ChunkLocation[] = [];
    let from = 0;
    for (;;) {
      const page = await this.options.metadata.chunkLocations(path, from);
      for (const c of page.chunks) {
        if (!c.sealed) return out;
        out.push(c);
      }
      if (!page.hasMore) return out;
      from = page.nextIndex;
    }
  }

  /**
   * Fills `out` with the file's bytes from `start` (out.length of them, all within the sealed chunks). Settles
   * only when no read writes into `out` any more (but an abandoned one, ReadBufferAbandonedError, which is the
   * error then thrown whatever else failed).
   */
  private async readChunks(chunks: readonly ChunkLocation[], start: number, out: Uint8Array, options?: ReadIntoOptions): Promise<void> {
    const end = start + out.length;
    let chunkStart = 0;
    const reads: Promise<void>[] = [];
    for (const chunk of chunks) {
      if (chunkStart >= end) break;
      const chunkEnd = chunkStart + chunk.lengthBytes;
      const from = Math.max(start, chunkStart);
      const to = Math.min(end, chunkEnd);
      // Each chunk's part is read straight into its place in `out` (the parts are disjoint).
      if (from < to) reads.push(this.readChunk(chunk, from - chunkStart, out.subarray(from - start, to - start), options));
      chunkStart = chunkEnd;
    }
    // Every read settles first: one failing must not leave the others writing into `out` after this returns.
    const failures = (await Promise.allSettled(reads)).flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) throw failures.find((e) => e instanceof ReadBufferAbandonedError) ?? failures[0];
  }

  /**
   * Fills `into` with the chunk's bytes from `offset`, from the first replica that serves them. A read
   * abandoned with a call still writing into `into` ends it (no replica is read into it again).
   */
  private async readChunk(chunk: ChunkLocation, offset: number, into: Uint8Array, options?: ReadIntoOptions): Promise<void> {
    const length = into.length;
    const { data, metadata } = this.options;
    const replicas = this.options.orderReplicas?.(chunk) ?? localFirst(rotate(chunk.replicas, chunk.handle), data);
    let last: unknown = undefined;
    for (const replica of replicas) {
      try {
        const bytes = await data.readRange(replica.address, { handle: chunk.handle, version: chunk.version, offset, length }, into, options);
        if (bytes.length !== length) throw new FileIoError('EIO', `replica ${replica.id} returned ${bytes.length} of ${length} bytes`);
        // A data plane that ignores `into` returns its own buffer: one copy then.
        if (bytes !== into) into.set(bytes);
        return;
      } catch (error) {
        if (error instanceof ReadBufferAbandonedError) throw error;
        last = error;
        const code = data.errorCode(error);
        const bad = code !== undefined && badReplicaCodes.has(code);
        if (bad) await metadata.reportBadReplica(chunk.handle, replica.id, chunk.version).catch(() => undefined);
        this.options.onReplicaFailure?.({ handle: chunk.handle, replicaId: replica.id, code, reported: bad });
      }
    }
    throw new FileIoError('EIO', `chunk ${chunk.handle} (index ${chunk.index}): no replica could serve the read`, last);
  }
}

/** Replicas the data plane reads from this host's files first (nearest), the others in their order. */
function localFirst(replicas: readonly Replica[], data: DataPlane): readonly Replica[] {
  if (data.isLocal === undefined) return replicas;
  const local = replicas.filter((r) => data.isLocal!(r.address));
  return local.length === 0 ? replicas : [...local, ...replicas.filter((r) => !data.isLocal!(r.address))];
}

function rotate<T>(items: readonly T[], by: number): readonly T[] {
  if (items.length === 0) return items;
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
