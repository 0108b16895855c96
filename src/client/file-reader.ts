/**
 * `FileReader`: reads byte ranges of files from their chunks' replicas.
 *
 * For each chunk a range covers, it asks one replica at the chunk's current version for exactly the part
 * needed (the chunkserver reads and verifies only the 64 KiB blocks that part touches), in the order
 * `orderReplicas` gives (nearest first; by default the listed order rotated by the chunk's handle, which
 * spreads readers over the replicas). A checksum mismatch or I/O error on a replica is reported to the
 * metadata leader (which replaces that replica from a good copy) and the next replica is tried; any other
 * failure (connection, timeout, stale version) just moves on. EIO when no replica serves the part.
 *
 * Only sealed chunks are read: the file's readable length is the sum of its sealed chunks' lengths.
 */
import { FileIoError } from './data-path.ts';
import type { ChunkLocation, DataPlane, ReaderMetadata, Replica } from './data-path.ts';

/** Codes of a read failure that mean the replica itself is bad (reported to the leader). */
const badReplicaCodes = new Set(['CHECKSUM_MISMATCH', 'IO_ERROR']);

export interface FileReaderOptions {
  readonly metadata: ReaderMetadata;
  readonly data: DataPlane;
  readonly orderReplicas?: (chunk: ChunkLocation) => readonly Replica[];
  /** Called for each replica that failed a read (tests, logs). */
  readonly onReplicaFailure?: (event: { handle: number; replicaId: number; code: string | undefined; reported: boolean }) => void;
}

export class FileReader {
  constructor(private readonly options: FileReaderOptions) {}

  /** The whole file (its sealed chunks). */
  async readFile(path: string): Promise<Buffer> {
    const chunks = await this.locations(path);
    return this.readChunks(chunks, 0, Number.MAX_SAFE_INTEGER);
  }

  /** Up to `length` bytes from `offset` (fewer at the end of the file). */
  async read(path: string, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      throw new FileIoError('EINVAL', `bad range: offset ${offset}, length ${length}`);
    const chunks = await this.locations(path);
    return this.readChunks(chunks, offset, length);
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

  private async readChunks(chunks: readonly ChunkLocation[], offset: number, length: number): Promise<Buffer> {
    const total = chunks.reduce((sum, c) => sum + c.lengthBytes, 0);
    const start = Math.min(offset, total);
    const end = Math.min(total, start + length);
    const out = Buffer.allocUnsafe(end - start);
    let chunkStart = 0;
    const reads: Promise<void>[] = [];
    for (const chunk of chunks) {
      const chunkEnd = chunkStart + chunk.lengthBytes;
      const from = Math.max(start, chunkStart);
      const to = Math.min(end, chunkEnd);
      if (from < to) {
        const at = from - start;
        reads.push(
          this.readChunk(chunk, from - chunkStart, to - from).then((bytes) => {
            out.set(bytes, at);
          }),
        );
      }
      chunkStart = chunkEnd;
      if (chunkStart >= end) break;
    }
    await Promise.all(reads);
    return out;
  }

  private async readChunk(chunk: ChunkLocation, offset: number, length: number): Promise<Uint8Array> {
    const { data, metadata } = this.options;
    const replicas = this.options.orderReplicas?.(chunk) ?? rotate(chunk.replicas, chunk.handle);
    let last: unknown = undefined;
    for (const replica of replicas) {
      try {
        const bytes = await data.readRange(replica.address, { handle: chunk.handle, version: chunk.version, offset, length });
        if (bytes.length !== length) throw new FileIoError('EIO', `replica ${replica.id} returned ${bytes.length} of ${length} bytes`);
        return bytes;
      } catch (error) {
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

function rotate<T>(items: readonly T[], by: number): readonly T[] {
  if (items.length === 0) return items;
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
