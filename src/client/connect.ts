/**
 * The client data path wired to the real system: the metadata service over gRPC (MetadataClient, which
 * follows the leader and retries with its session stamp) and the chunkservers' TCP data plane.
 *
 *   const files = await FileClient.connect(['127.0.0.1:7001', ...]);
 *   await files.writeFile('/logs/a', bytes);
 *   const back = await files.readFile('/logs/a');
 *   const w = await files.openWriter('/big');  await w.write(part);  ...  await w.close();
 */
import { hostname } from 'node:os';
import { MetadataClient } from '../metadata/client.ts';
import type { CreateOptions, MetadataClientOptions } from '../metadata/client.ts';
import { PooledDialer } from './read-pool.ts';
import {
  askLocalReplica,
  DataPlaneError,
  PipelineFailedError,
  PipelineWriter,
  pipelineKeepaliveMsDefault,
  pipelineStallMsDefault,
  readRange,
  readStallMsDefault,
  realStallWatch,
  TcpDataNetwork,
} from '../chunkserver/dataplane/index.ts';
import type { DataPlaneLimits } from '../chunkserver/dataplane/index.ts';
import type { ChunkPipeline, DataPlane, PipelineFailure, ReaderMetadata, WriterMetadata } from './data-path.ts';
import { FileReader } from './file-reader.ts';
import type { ReadSession } from './read-session.ts';
import type { FileReaderOptions } from './file-reader.ts';
import { FileWriter } from './file-writer.ts';
import type { FileWriterOptions } from './file-writer.ts';
import { LocalReads } from './local-read.ts';
import { SpareBuffers, spareBytesMaxDefault } from './spare-buffers.ts';

/** What WriterMetadata.createFile answers. */
export type CreatedForWriter = Awaited<ReturnType<WriterMetadata['createFile']>>;

/**
 * A writer's file created (with `attrs`; absent ones the parent directory's), its lease granted and its first
 * chunk allocated, in one command that answers what the writer needs (without `firstChunk` when the leader
 * could not place it: the writer allocates it). From a leader older than that answer: a Stat after it, and
 * no lease in the result (the writer acquires it; the old leader granted it to the same holder already).
 */
export async function createForWriter(
  client: MetadataClient,
  path: string,
  attrs: Omit<CreateOptions, 'leaseHolder' | 'leaseDurationMs'>,
  lease: { holder: string; durationMs: number },
): Promise<CreatedForWriter> {
  const { writing } = await client.createForWriting(path, { ...attrs, holder: lease.holder, leaseDurationMs: lease.durationMs, firstChunk: true });
  if (writing !== undefined) {
    const created = { chunkSizeBytes: writing.chunkSizeBytes, compression: writing.compression, lease: { expiresMs: writing.leaseExpiresMs, chunkCount: 0 } };
    return writing.firstChunk === undefined ? created : { ...created, firstChunk: writing.firstChunk };
  }
  const info = await client.stat(path);
  return { chunkSizeBytes: info.chunkSizeBytes, compression: info.compression };
}

/** The metadata operations of the data path on a MetadataClient. */
export function metadataForData(client: MetadataClient): WriterMetadata & ReaderMetadata {
  return {
    createFile: (path, { lease, ...attrs }) => createForWriter(client, path, attrs, lease),
    acquireLease: (path, holder, durationMs) => client.acquireLease(path, { holder, durationMs }),
    renewLease: (path, holder, durationMs) => client.renewLease(path, { holder, durationMs }),
    releaseLease: (path, holder) => client.releaseLease(path, { holder }),
    allocateChunk: (path, holder, index) => client.allocateChunk(path, { holder, index }),
    bumpChunkVersion: (handle, holder, version, survivors) => client.bumpChunkVersion(handle, { holder, version, survivors }),
    async sealChunk(handle, holder, version, lengthBytes, checksum) {
      await client.sealChunk(handle, { holder, version, lengthBytes, checksum });
    },
    completeFile: (path, holder, chunkCount, lastChunk) => client.completeFile(path, { holder, chunkCount, ...(lastChunk === undefined ? {} : { lastChunk }) }),
    async chunkLocations(path, fromIndex) {
      const page = await client.chunkLocations(path, { fromIndex });
      return { ...page, hasMore: page.nextIndex !== null, nextIndex: page.nextIndex ?? 0 };
    },
    async reportBadReplica(handle, chunkserverId, version) {
      await client.reportBadReplica(handle, { chunkserverId, version });
    },
  };
}

/** Where a client's read bytes came from. */
export interface ReadSourceStats {
  /** Bytes read from replicas' files on this host (short-circuit local reads, local-read.ts). */
  readonly localBytes: number;
  /** Bytes streamed from chunkservers over the data plane. */
  readonly networkBytes: number;
  /** Local reads that fell back to the data plane (a failed check, a short file, a block's CRC). */
  readonly localFallbacks: number;
}

export interface TcpDataPlaneOptions {
  readonly limits?: Partial<DataPlaneLimits>;
  /** Read replicas on this host from their files (default true); false: every read goes over TCP. */
  readonly localReads?: boolean;
  /** A read (and a local read's question) fails with TIMEOUT after this long without data; default readStallMsDefault (15 s). */
  readonly readStallMs?: number;
  /**
   * A write pipeline whose chain sends no acknowledgement for this long × the chain's length fails with
   * TIMEOUT naming its first replica (the writer then goes on without it); default pipelineStallMsDefault (10 s).
   */
  readonly pipelineStallMs?: number;
  /**
   * An idle write pipeline (a file open for writing, nothing being written) sends a keepalive this often, so
   * the chunkservers (which end a pipeline silent for their pipeline-idle-ms, 120 s by default) keep it;
   * default pipelineKeepaliveMsDefault (30 s).
   */
  readonly pipelineKeepaliveMs?: number;
}

/** The real data plane: where its reads came from, and its connections and files closed by close(). */
export type TcpDataPlane = DataPlane & { readStats(): ReadSourceStats; isLocal(address: string): boolean; close(): void };

/** The data plane over TCP: write pipelines and range reads (from local replicas' files when it can). */
export function tcpDataPlane(options: TcpDataPlaneOptions = {}): TcpDataPlane {
  const limits = options.limits ?? {};
  const network = new TcpDataNetwork(limits);
  // Range reads reuse connections per replica (read-pool.ts); write pipelines dial their own, one per chunk.
  const reads = new PooledDialer(network);
  const stall = realStallWatch(options.readStallMs ?? readStallMsDefault);
  const pipelineStall = realStallWatch(options.pipelineStallMs ?? pipelineStallMsDefault);
  const keepalive = realStallWatch(options.pipelineKeepaliveMs ?? pipelineKeepaliveMsDefault);
  const local = options.localReads === false ? null : new LocalReads((address, handle, version) => askLocalReplica(reads, address, handle, version, stall), { stall });
  let networkBytes = 0;
  return {
    async openPipeline(o): Promise<ChunkPipeline> {
      const writer = await PipelineWriter.open(network, {
        handle: o.handle,
        version: o.version,
        chain: o.chain,
        mode: o.mode,
        limits,
        stall: pipelineStall,
        keepalive,
        ...(o.fromVersion !== undefined ? { fromVersion: o.fromVersion } : {}),
        ...(o.offset !== undefined ? { offset: o.offset } : {}),
        ...(o.compression !== undefined ? { compression: o.compression } : {}),
      });
      return {
        write: (data, crcs) => writer.write(data, crcs !== undefined ? { crcs } : {}),
        flush: () => writer.flush(),
        seal: (lengthBytes) => writer.seal(lengthBytes),
        abort: () => writer.abort(),
        get ackedLengthBytes() {
          return writer.ackedLengthBytes;
        },
      };
    },
    async readRange(address, request, into, options) {
      const fromFile = await local?.read(address, request, into, options);
      if (fromFile !== undefined) return fromFile;
      const bytes = await readRange(reads, address, request, into, stall);
      networkBytes += bytes.length;
      return bytes;
    },
    isLocal: (address) => local?.isLocal(address) ?? false,
    readStats: () => ({ localBytes: local?.stats.localBytes ?? 0, networkBytes, localFallbacks: local?.stats.fallbacks ?? 0 }),
    close() {
      reads.close();
      void local?.close();
    },
    pipelineFailure(error): PipelineFailure | undefined {
      return error instanceof PipelineFailedError ? error : undefined;
    },
    errorCode(error) {
      return error instanceof DataPlaneError ? error.code : undefined;
    },
  };
}

/** The data plane options of a client's options. */
export function dataPlaneOptions(options: {
  readonly dataPlaneLimits?: Partial<DataPlaneLimits>;
  readonly localReads?: boolean;
  readonly readStallMs?: number;
  readonly pipelineStallMs?: number;
  readonly pipelineKeepaliveMs?: number;
}): TcpDataPlaneOptions {
  return {
    ...(options.dataPlaneLimits !== undefined ? { limits: options.dataPlaneLimits } : {}),
    ...(options.localReads !== undefined ? { localReads: options.localReads } : {}),
    ...(options.readStallMs !== undefined ? { readStallMs: options.readStallMs } : {}),
    ...(options.pipelineStallMs !== undefined ? { pipelineStallMs: options.pipelineStallMs } : {}),
    ...(options.pipelineKeepaliveMs !== undefined ? { pipelineKeepaliveMs: options.pipelineKeepaliveMs } : {}),
  };
}

let writerCount = 0;

export interface FileClientOptions extends MetadataClientOptions {
  readonly dataPlaneLimits?: Partial<DataPlaneLimits>;
  /**
   * Read replicas that live on this host straight from their files, verified against their checksums
   * (short-circuit local reads, local-read.ts; default true). False: every read streams from a chunkserver.
   */
  readonly localReads?: boolean;
  /** A read from a replica that sends nothing for this long fails over to the next one (default readStallMsDefault, 15 s). */
  readonly readStallMs?: number;
  /** A write pipeline's stall unit (TcpDataPlaneOptions.pipelineStallMs; default 10 s). */
  readonly pipelineStallMs?: number;
  /** An idle write pipeline's keepalive interval (TcpDataPlaneOptions.pipelineKeepaliveMs; default 30 s). */
  readonly pipelineKeepaliveMs?: number;
  /**
   * Bytes of large buffers (writers' staging, read sessions' read-ahead) kept for reuse by the client's next
   * writers and sessions (./spare-buffers.ts); default spareBytesMaxDefault (64 MiB). 0 keeps none.
   */
  readonly spareBytesMax?: number;
  /** Lease holder prefix (default host:pid); each writer appends a counter. */
  readonly holderPrefix?: string;
  readonly reader?: Pick<FileReaderOptions, 'orderReplicas' | 'onReplicaFailure'>;
}

/** Files on rfs: the metadata client, the data plane, writers and a reader, in one object. */
export class FileClient {
  private constructor(
    readonly metadata: MetadataClient,
    private readonly ops: WriterMetadata & ReaderMetadata,
    private readonly data: TcpDataPlane,
    private readonly reader: FileReader,
    private readonly holderPrefix: string,
    /** Large buffers shared by this client's writers and read sessions (./spare-buffers.ts). */
    readonly spares: SpareBuffers,
  ) {}

  static async connect(addresses: readonly string[], options: FileClientOptions = {}): Promise<FileClient> {
    const metadata = await MetadataClient.connect(addresses, options);
    const ops = metadataForData(metadata);
    const data = tcpDataPlane(dataPlaneOptions(options));
    const spares = new SpareBuffers(options.spareBytesMax ?? spareBytesMaxDefault);
    const reader = new FileReader({ metadata: ops, data, spares, ...options.reader });
    return new FileClient(metadata, ops, data, reader, options.holderPrefix ?? `${hostname()}:${process.pid}`, spares);
  }

  openWriter(path: string, options: Omit<FileWriterOptions, 'metadata' | 'data' | 'holder'> & { holder?: string } = {}): Promise<FileWriter> {
    return FileWriter.open(path, { spares: this.spares, ...options, metadata: this.ops, data: this.data, holder: options.holder ?? `${this.holderPrefix}:${++writerCount}` });
  }

  async writeFile(path: string, data: Uint8Array, options: { exclusive?: boolean } = {}): Promise<void> {
    const writer = await this.openWriter(path, options);
    try {
      await writer.write(data);
      await writer.close();
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  readFile(path: string): Promise<Buffer> {
    return this.reader.readFile(path);
  }

  /** Reads from `offset` into `into` (up to its length; fewer at the end of the file); returns the count. */
  readInto(path: string, offset: number, into: Uint8Array): Promise<number> {
    return this.reader.readInto(path, offset, into);
  }

  read(path: string, offset: number, length: number): Promise<Buffer> {
    return this.reader.read(path, offset, length);
  }

  /** A session for many reads of one file: locations fetched once, read-ahead (./read-session.ts). */
  openForReading(path: string): ReadSession {
    return this.reader.open(path);
  }

  /** Bytes this client read so far, by source (local replica files or the network). */
  readStats(): ReadSourceStats {
    return this.data.readStats();
  }

  close(): void {
    this.metadata.close();
    this.data.close();
  }
}
