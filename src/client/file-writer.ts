/**
 * `FileWriter`: writes one file, chunk by chunk, through replicated write pipelines (GFS/HDFS style).
 *
 *  1. `open` creates the file (exclusive or truncating) and takes its writer lease, in one metadata command
 *     when the metadata grants both (else the lease is acquired after); renewed every third of its duration
 *     while the writer is open.
 *  2. Bytes are copied once into a staging buffer of `stagingBytes` (so small writes travel as large
 *     packets and the caller may reuse its buffer at once); a full staging buffer goes down the current
 *     chunk's pipeline. A chunk is allocated by the metadata leader when its first bytes are ready (a new
 *     file's first chunk comes with the create; its pipeline opens when its first bytes are ready), and
 *     sealed when it holds `chunkSizeBytes` (and at close): every replica seals, their CRC32C must equal
 *     the one computed here while writing, and the leader records length and checksum (the last chunk's in
 *     the close's CompleteFile: one command for both). A full chunk seals in
 *     the background while the next one streams (one at a time, so the leader seals chunks in file order):
 *     the replicas' fsyncs and the round trips no longer stall the data. The next chunk is allocated ahead,
 *     once the current one is half full (`allocateAheadBytes` left) and the previous seal is done: its
 *     allocation (a Raft commit at the leader) and pipeline setup overlap the current chunk's streaming
 *     instead of stalling the data at every chunk boundary. A chunk allocated ahead and never written to
 *     (the file ended first) leaves the file at close: CompleteFile names the chunks written, and the leader
 *     drops one unsealed chunk past them (and deletes its replicas), with no extra round trip.
 *     Each allocation names the index the writer expects (the chunks it was given so far). A retry of an
 *     allocation whose answer was lost (the leader stopped after committing it; a retry outside the session
 *     after the client's deadline) gets that allocation's chunk back instead of a second one, and one the
 *     writer never got back at all is the chunk CompleteFile drops: a lost answer never leaves the file with
 *     an unsealed chunk it cannot complete.
 *  3. A replica failure (the pipeline names the first failing replica and the length every replica
 *     acknowledged): the writer asks the leader for a new version with the survivors, opens a pipeline in
 *     `resume` mode (each survivor takes the new version and cuts to the acknowledged length) and resends
 *     what was not acknowledged. Replicas left at the old version are stale, and the leader deletes them;
 *     it restores the replication factor once the chunk is sealed. With no survivor left the write fails
 *     (EIO): an unsealed chunk whose replicas all failed cannot be recovered.
 *
 * Memory: the unacknowledged tails of the current chunk and of the one sealing (what their pipelines may
 * still need to resend) plus one staging buffer; each pipeline's in-flight window bounds its tail.
 */
import { crcAfter, gridCrcs } from '../chunkserver/block-crcs.ts';
import { FileIoError, realTimers } from './data-path.ts';
import type { AllocatedChunk, ChunkPipeline, ChunkSeal, DataPlane, PipelineFailure, Replica, WriterMetadata, WriterTimers } from './data-path.ts';
import { SpareBuffers } from './spare-buffers.ts';

/** Bytes gathered before they go down a pipeline (the data plane splits them into packets). */
export const stagingBytesDefault = 1024 * 1024;
/**
 * Acknowledged staging buffers a writer without a client's `spares` keeps for reuse, at most. Enough for every
 * buffer of two pipelines' windows (the chunk streaming and the one sealing behind it, 16 packets each by
 * default), which come back together when a seal completes: with 4, most of them were dropped at every chunk
 * boundary and as many fresh buffers allocated for the next chunk, and on this VM the first touch of fresh
 * memory costs a page fault per 4 KiB (bench:data: the client's system time per GB). Keeping them does not
 * raise the writer's peak memory: they were all alive, unacknowledged, a moment before.
 */
export const stagingSpareMax = 32;
/** The writer's lease duration; it is renewed every third of it. */
export const leaseDurationMsDefault = 60_000;
/**
 * Default for `allocateAheadBytes`: half a chunk. bench:data, 2026-11-27: allocating a chunk and setting up
 * its pipeline took 100–150 ms while the disk was busy with the data, about a third of a 64 MiB chunk's
 * streaming time, all of it stalled at each boundary before the writer allocated ahead.
 */
export const allocateAheadFractionDefault = 0.5;
/** New pipelines one chunk may need before the write gives up. */
export const pipelineRecoveriesMax = 8;

export interface FileWriterOptions {
  readonly metadata: WriterMetadata;
  readonly data: DataPlane;
  /** The lease holder's name (unique per writer). */
  readonly holder: string;
  /** Fail if the file exists (default: truncate it). */
  readonly exclusive?: boolean;
  /** The new file's compression; absent: its directory's (the replicas store it, the bytes stay the same). */
  readonly compression?: 'none' | 'lz4';
  readonly leaseDurationMs?: number;
  readonly stagingBytes?: number;
  /**
   * Where staging buffers come from and go back to (./spare-buffers.ts): a client passes its one shared by
   * all its writers and read sessions, so a new writer starts with warm memory. Default: the writer's own,
   * holding at most stagingSpareMax buffers.
   */
  readonly spares?: SpareBuffers;
  /**
   * Allocate the next chunk (and set its pipeline up) once the current chunk has at most this many bytes
   * left to fill; 0: only when the first byte past the boundary arrives. Default: half the chunk size.
   */
  readonly allocateAheadBytes?: number;
  readonly timers?: WriterTimers;
  /** Called after each pipeline recovery (tests, logs). */
  readonly onRecovery?: (event: { handle: number; failedId: number; ackedLengthBytes: number; version: number }) => void;
}

interface Pending {
  readonly offset: number;
  readonly data: Uint8Array;
}

interface PreparedChunk {
  readonly chunk: OpenChunk;
  /** Opening the chunk's first pipeline failed with this: recovery takes over once the chunk is used. */
  readonly pipelineError?: unknown;
}

interface OpenChunk {
  readonly handle: number;
  version: number;
  replicas: readonly Replica[];
  pipeline: ChunkPipeline;
  /** Version every replica in `replicas` is at, at least (the last pipeline that was set up in full). */
  settledVersion: number;
  /** Bytes handed to the pipeline. */
  sent: number;
  /** CRC32C of those bytes. */
  crc: number;
  /** Sent and maybe not acknowledged by every replica, in order (resent after a failure). */
  unacked: Pending[];
  recoveries: number;
}

/** Stands for a chunk's pipeline until one is open: every call fails (recovery replaces it). */
const noPipeline: ChunkPipeline = {
  write: () => Promise.reject(new FileIoError('EIO', 'no pipeline')),
  flush: () => Promise.reject(new FileIoError('EIO', 'no pipeline')),
  seal: () => Promise.reject(new FileIoError('EIO', 'no pipeline')),
  abort: () => undefined,
  ackedLengthBytes: 0,
};

/**
 * A writer gives its file up: releases the lease, which leaves the file to the leader's lease recovery when a
 * chunk is unsealed. With `unusedChunkAfter` (the chunks in use; the one after them, given with the create,
 * was never written to) it completes the file instead, dropping that chunk: a release would leave it
 * unsealed, and the file incomplete and refusing other writers (ELEASE) until lease recovery dropped it.
 * Best effort, as a release is: on failure the lease lapses.
 */
async function giveUp(metadata: WriterMetadata, path: string, holder: string, unusedChunkAfter: number | null): Promise<void> {
  if (unusedChunkAfter !== null) {
    try {
      await metadata.completeFile(path, holder, unusedChunkAfter);
      return;
    } catch {
      // Released below.
    }
  }
  await metadata.releaseLease(path, holder).catch(() => undefined);
}

export class FileWriter {
  private chunk: OpenChunk | null = null;
  /**
   * The previous chunk while it seals in the background (flush, every replica's seal with its fsync, and
   * SealChunk at the leader), so the next chunk streams meanwhile instead of the pipeline standing idle for
   * the fsyncs and round trips. At most one: a chunk's seal starts only after the previous one finished, so
   * chunks are sealed at the leader in file order. Its settled promise never rejects (the error is kept).
   */
  private sealing: { readonly chunk: OpenChunk; readonly done: Promise<Error | null>; settled: boolean } | null = null;
  /**
   * The next chunk, allocated ahead (see the top of the file): a chunk with its pipeline, or with the error
   * that opening the pipeline met (recovery handles it once the chunk is used), or the allocation's own error
   * (the writer then allocates again at the boundary, which reports it). Never rejects.
   */
  private ahead: Promise<PreparedChunk | Error> | null = null;
  /**
   * The file's chunks the leader gave out, to this writer or before it (an appended file's): the index the
   * next allocation expects.
   */
  private chunksGiven = 0;
  /** A chunk the leader gave with the file (index chunksGiven), not yet prepared: prepareChunk takes it. */
  private given: AllocatedChunk | null = null;
  /** The file's chunks in use: those before this writer's and those it wrote to. What CompleteFile names. */
  private chunksUsed = 0;
  private readonly allocateAheadBytes: number;
  private readonly stagingBytes: number;
  private stagingReturned = false;
  private staging: Buffer;
  private stagingUsed = 0;
  /**
   * Staging buffers every replica acknowledged go back here for reuse: fresh memory costs a page fault per
   * 4 KiB on first touch (about 3 ms per MiB on the benchmark machine), far more than the copy into it.
   */
  private readonly spares: SpareBuffers;
  /** Staging buffers this writer had to make fresh. */
  private fresh = 0;
  /** Bytes of the current chunk written by the caller (sent or staged). */
  private chunkFill = 0;
  private written = 0;
  /** Serialises write() and close(). */
  private tail: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;
  private closed = false;
  private readonly stopRenewing: () => void;

  private constructor(
    readonly path: string,
    private readonly options: FileWriterOptions,
    private readonly chunkSizeBytes: number,
    private readonly leaseDurationMs: number,
    /** The file's, as created: every pipeline's setup carries it. */
    private readonly compression: 'none' | 'lz4',
  ) {
    const stagingBytes = Math.min(options.stagingBytes ?? stagingBytesDefault, chunkSizeBytes);
    if (!Number.isSafeInteger(stagingBytes) || stagingBytes < 1) throw new RangeError(`stagingBytes must be a positive integer, got ${stagingBytes}`);
    this.stagingBytes = stagingBytes;
    this.spares = options.spares ?? new SpareBuffers(stagingSpareMax * stagingBytes);
    this.staging = this.takeStaging();
    this.allocateAheadBytes = options.allocateAheadBytes ?? Math.floor(chunkSizeBytes * allocateAheadFractionDefault);
    if (!Number.isSafeInteger(this.allocateAheadBytes) || this.allocateAheadBytes < 0)
      throw new RangeError(`allocateAheadBytes must be a non-negative integer, got ${this.allocateAheadBytes}`);
    const timers = options.timers ?? realTimers;
    this.stopRenewing = timers.setInterval(() => this.renew(), Math.max(1, Math.floor(leaseDurationMs / 3)));
  }

  static async open(path: string, options: FileWriterOptions): Promise<FileWriter> {
    const leaseDurationMs = options.leaseDurationMs ?? leaseDurationMsDefault;
    // The lease comes with the file when the metadata grants it on the way (one command for a new file).
    const created = await options.metadata.createFile(path, {
      exclusive: options.exclusive ?? false,
      ...(options.compression === undefined ? {} : { compression: options.compression }),
      lease: { holder: options.holder, durationMs: leaseDurationMs },
    });
    let leased = created.lease !== undefined;
    try {
      const { chunkCount } = created.lease ?? (await options.metadata.acquireLease(path, options.holder, leaseDurationMs));
      leased = true;
      const writer = new FileWriter(path, options, created.chunkSizeBytes, leaseDurationMs, created.compression ?? 'none');
      // Appending to a file: its chunks stay, and this writer's go after them.
      writer.chunksGiven = chunkCount;
      writer.chunksUsed = chunkCount;
      // A new file's first chunk, allocated by the create: its pipeline opens when the first bytes are ready
      // (a file closed empty creates no replicas, and CompleteFile drops the chunk).
      if (created.firstChunk !== undefined && created.lease !== undefined && created.lease.chunkCount === 0) {
        if (created.firstChunk.index !== 0) throw new FileIoError('EIO', `${path}: the leader gave chunk index ${created.firstChunk.index} as the first`);
        writer.given = created.firstChunk;
      }
      return writer;
    } catch (error) {
      // No writer to abort later: give the lease back now, so the file is not held until the lease expires.
      if (leased) await giveUp(options.metadata, path, options.holder, created.firstChunk !== undefined ? 0 : null);
      throw error;
    }
  }

  /** Staging buffers this writer had to make fresh (the spares had none of the size). */
  get stagingAllocated(): number {
    return this.fresh;
  }

  /** Bytes accepted so far (the file's length once closed). */
  get position(): number {
    return this.written;
  }

  /** Appends `data`; the caller may reuse `data` as soon as the promise resolves. */
  write(data: Uint8Array): Promise<void> {
    return this.serially(() => this.writeNow(data));
  }

  /** Seals the last chunk and completes the file; returns its length. The writer is done after. */
  close(): Promise<{ lengthBytes: number }> {
    return this.serially(async () => {
      await this.emitStaging();
      await this.settleSealing();
      const last = this.chunk;
      this.chunk = null;
      if (last !== null) await this.sealReplicas(last);
      await this.dropAhead();
      // The last chunk's seal goes with the completion: one command, not two.
      const lastChunk = last === null ? undefined : { handle: last.handle, version: last.version, lengthBytes: last.sent, checksum: last.crc };
      const result = await this.complete(lastChunk);
      if (last !== null) this.dropAcknowledged(last);
      this.closed = true;
      this.stopRenewing();
      this.giveBackStaging();
      return result;
    });
  }

  /**
   * CompleteFile with the last chunk's seal. A leader older than that field ignores it and refuses the
   * completion (EINVAL: a chunk is not sealed); a refusal applied nothing, so the chunk is then sealed on its
   * own and the file completed without it (what the writer did before the field existed).
   */
  private async complete(lastChunk: ChunkSeal | undefined): Promise<{ lengthBytes: number }> {
    const { metadata, holder } = this.options;
    try {
      return await metadata.completeFile(this.path, holder, this.chunksUsed, lastChunk);
    } catch (error) {
      if (lastChunk === undefined || (error as { code?: unknown }).code !== 'EINVAL') throw error;
      await metadata.sealChunk(lastChunk.handle, holder, lastChunk.version, lastChunk.lengthBytes, lastChunk.checksum);
      return metadata.completeFile(this.path, holder, this.chunksUsed);
    }
  }

  /** Gives up: stops the pipeline and the lease renewal; the lease is released, best effort. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failure ??= new FileIoError('EBADF', 'the writer was aborted');
    this.stopRenewing();
    this.chunk?.pipeline.abort(); // `noPipeline` until the first one opens
    this.sealing?.chunk.pipeline.abort();
    // Nothing goes back to the spares: a write() in progress may still copy into the staging buffer, and
    // pieces not acknowledged may still be in a socket's write queue.
    void this.ahead?.then((prepared) => {
      if (!(prepared instanceof Error)) prepared.chunk.pipeline.abort();
    });
    // The chunk given with the create was never used (no byte was written): nothing of the file is unsealed
    // but it, so the file is completed without it, as a release completes a file with nothing unsealed.
    await giveUp(this.options.metadata, this.path, this.options.holder, this.given !== null ? this.chunksUsed : null);
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.failure !== null) throw this.failure;
      if (this.closed) throw new FileIoError('EBADF', `${this.path}: the writer is closed`);
      try {
        return await fn();
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
        throw error;
      }
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private fail(error: Error): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.stopRenewing();
    this.chunk?.pipeline.abort(); // `noPipeline` until the first one opens
    this.sealing?.chunk.pipeline.abort();
  }

  private renew(): void {
    if (this.closed || this.failure !== null) return;
    this.options.metadata.renewLease(this.path, this.options.holder, this.leaseDurationMs).catch((error: unknown) => {
      // A lost lease means another writer may take the file: stop here rather than race it.
      this.fail(new FileIoError('EIO', `${this.path}: lease renewal failed`, error));
    });
  }

  private async writeNow(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      const n = Math.min(
        data.length - offset,
        this.chunkSizeBytes - this.chunkFill,
        this.staging.length - this.stagingUsed,
      );
      this.staging.set(data.subarray(offset, offset + n), this.stagingUsed);
      this.stagingUsed += n;
      this.chunkFill += n;
      this.written += n;
      offset += n;
      const chunkFull = this.chunkFill === this.chunkSizeBytes;
      if (this.stagingUsed === this.staging.length || chunkFull) await this.emitStaging();
      if (chunkFull) await this.sealInBackground();
      else this.maybeAllocateAhead();
    }
  }

  /**
   * Starts allocating the next chunk when the current one has at most allocateAheadBytes left, none is
   * allocated ahead yet, and the previous chunk's seal has finished (so at most two chunks of the file are
   * unsealed at the leader: the one streaming and the one ahead, which is sealed after it).
   */
  private maybeAllocateAhead(): void {
    if (this.ahead !== null || this.chunk === null || this.chunkFill === 0) return;
    if (this.chunkSizeBytes - this.chunkFill > this.allocateAheadBytes) return;
    if (this.sealing !== null && !this.sealing.settled) return;
    this.ahead = this.prepareChunk().catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
  }

  /**
   * At close: waits for the allocation ahead, if any, and closes the pipeline of the chunk it gave (the file did
   * not need it). CompleteFile then drops the chunk from the file, as it drops one whose allocation failed
   * after the leader had applied it.
   */
  private async dropAhead(): Promise<void> {
    const ahead = this.ahead;
    if (ahead === null) return;
    this.ahead = null;
    const prepared = await ahead;
    if (!(prepared instanceof Error)) prepared.chunk.pipeline.abort();
  }

  /** Starts sealing the full current chunk in the background (after the previous seal finished). */
  private async sealInBackground(): Promise<void> {
    await this.settleSealing();
    const chunk = this.chunk;
    this.chunk = null;
    this.chunkFill = 0;
    if (chunk === null) return;
    const sealing: { chunk: OpenChunk; done: Promise<Error | null>; settled: boolean } = { chunk, done: Promise.resolve(null), settled: false };
    sealing.done = this.sealChunk(chunk).then(
      () => {
        sealing.settled = true;
        return null;
      },
      (error: unknown) => {
        sealing.settled = true;
        const failure = error instanceof Error ? error : new Error(String(error));
        this.fail(failure); // later calls fail at once; the next boundary or close() reports it
        return failure;
      },
    );
    this.sealing = sealing;
  }

  /** Waits for the background seal, if any; throws its error. */
  private async settleSealing(): Promise<void> {
    const sealing = this.sealing;
    if (sealing === null) return;
    const error = await sealing.done;
    this.sealing = null;
    if (error !== null) throw error;
  }

  /** Sends the staged bytes down the current chunk's pipeline (allocating the chunk first if needed). */
  private async emitStaging(): Promise<void> {
    if (this.stagingUsed === 0) return;
    const piece = this.staging.subarray(0, this.stagingUsed);
    this.staging = this.takeStaging();
    this.stagingUsed = 0;
    const chunk = this.chunk ?? (await this.allocateChunk());
    chunk.unacked.push({ offset: chunk.sent, data: piece });
    // One pass over the bytes: their CRC32Cs on the block grid go with the packets (the last replica checks
    // them, block-crcs.ts), and the chunk's CRC32C, checked against every replica's at seal, is combined
    // from them.
    const crcs = gridCrcs(chunk.sent, piece);
    chunk.crc = crcAfter(chunk.crc, chunk.sent, piece.length, crcs);
    chunk.sent += piece.length;
    try {
      await chunk.pipeline.write(piece, crcs);
    } catch (error) {
      // The piece is in `unacked`: recovery resends it with everything else not acknowledged.
      await this.recover(chunk, this.failureOf(error));
    }
    this.dropAcknowledged(chunk);
  }

  /** The next chunk: the one allocated ahead when there is one, else allocated now; it becomes current. */
  private async allocateChunk(): Promise<OpenChunk> {
    const ahead = this.ahead;
    this.ahead = null;
    const taken = ahead === null ? null : await ahead;
    // An allocation ahead that failed is tried again here, which reports the error if it persists.
    const prepared = taken === null || taken instanceof Error ? await this.prepareChunk() : taken;
    const { chunk } = prepared;
    this.chunk = chunk;
    this.chunksUsed += 1;
    // Replicas that were created are at this version and empty: recovery continues from length 0.
    if ('pipelineError' in prepared) await this.recover(chunk, this.failureOf(prepared.pipelineError));
    return chunk;
  }

  /** Allocates a chunk at the leader and opens its first pipeline (the chunk does not become current). */
  private async prepareChunk(): Promise<PreparedChunk> {
    const { metadata, data, holder } = this.options;
    const index = this.chunksGiven;
    const given = this.given;
    this.given = null;
    const allocated = given ?? (await metadata.allocateChunk(this.path, holder, index));
    if (allocated.index !== index) throw new FileIoError('EIO', `${this.path}: the leader gave chunk index ${allocated.index}, not ${index}`);
    this.chunksGiven = index + 1;
    const chunk: OpenChunk = {
      handle: allocated.handle,
      version: allocated.version,
      replicas: allocated.replicas,
      settledVersion: allocated.version,
      pipeline: noPipeline,
      sent: 0,
      crc: 0,
      unacked: [],
      recoveries: 0,
    };
    try {
      chunk.pipeline = await data.openPipeline({
        handle: chunk.handle,
        version: chunk.version,
        chain: chunk.replicas,
        mode: 'create',
        compression: this.compression,
      });
      return { chunk };
    } catch (error) {
      return { chunk, pipelineError: error };
    }
  }

  /** Seals `chunk`: every replica seals with the writer's checksum, then the leader records it. */
  private async sealChunk(chunk: OpenChunk): Promise<void> {
    await this.sealReplicas(chunk);
    await this.options.metadata.sealChunk(chunk.handle, this.options.holder, chunk.version, chunk.sent, chunk.crc);
    this.dropAcknowledged(chunk);
  }

  /** Every replica of `chunk` seals it with the writer's checksum (recovering failed pipelines on the way). */
  private async sealReplicas(chunk: OpenChunk): Promise<void> {
    let sealed: readonly { readonly id: number; readonly checksum: number }[];
    for (;;) {
      try {
        await chunk.pipeline.flush();
        sealed = await chunk.pipeline.seal(chunk.sent);
        break;
      } catch (error) {
        await this.recover(chunk, this.failureOf(error));
      }
    }
    const bad = sealed.filter((r) => r.checksum !== chunk.crc);
    if (bad.length > 0)
      throw new FileIoError(
        'EIO',
        `chunk ${chunk.handle}: replica(s) ${bad.map((r) => r.id).join(', ')} sealed with a checksum other than the bytes sent`,
      );
  }

  private failureOf(error: unknown): PipelineFailure {
    const failure = this.options.data.pipelineFailure(error);
    if (failure === undefined) throw error;
    return failure;
  }

  /**
   * A new pipeline without the replica that failed: a new version from the leader, survivors cut to the
   * acknowledged length, the rest resent. Repeats while pipelines keep failing, up to the limit.
   */
  private async recover(chunk: OpenChunk, first: PipelineFailure): Promise<void> {
    const { metadata, data, holder } = this.options;
    let failure = first;
    for (;;) {
      chunk.pipeline.abort();
      if (++chunk.recoveries > pipelineRecoveriesMax)
        throw new FileIoError('EIO', `chunk ${chunk.handle}: gave up after ${pipelineRecoveriesMax} new pipelines`);
      const survivors = chunk.replicas.filter((_, i) => i !== failure.failedIndex);
      if (survivors.length === 0)
        throw new FileIoError('EIO', `chunk ${chunk.handle}: every replica failed (last: ${failure.code})`);
      const acked = failure.ackedLengthBytes;
      const bumped = await metadata.bumpChunkVersion(chunk.handle, holder, chunk.version, survivors.map((r) => r.id));
      chunk.version = bumped.version;
      chunk.replicas = bumped.replicas;
      this.options.onRecovery?.({ handle: chunk.handle, failedId: failure.failedId, ackedLengthBytes: acked, version: bumped.version });
      try {
        chunk.pipeline = await data.openPipeline({
          handle: chunk.handle,
          version: chunk.version,
          chain: chunk.replicas,
          mode: 'resume',
          fromVersion: chunk.settledVersion,
          offset: acked,
          compression: this.compression,
        });
        chunk.settledVersion = chunk.version;
        for (const p of chunk.unacked) {
          const end = p.offset + p.data.length;
          if (end <= acked) continue;
          await chunk.pipeline.write(p.offset >= acked ? p.data : p.data.subarray(acked - p.offset));
        }
        return;
      } catch (error) {
        failure = this.failureOf(error);
      }
    }
  }

  private takeStaging(): Buffer {
    const allocated = this.spares.stats.allocated;
    const buffer = this.spares.take(this.stagingBytes);
    this.fresh += this.spares.stats.allocated - allocated;
    return buffer;
  }

  /** The staging buffer back to the spares, once the writer is closed (close() runs after every write()). */
  private giveBackStaging(): void {
    if (this.stagingReturned) return;
    this.stagingReturned = true;
    this.spares.give(this.staging);
  }

  private dropAcknowledged(chunk: OpenChunk): void {
    const acked = chunk.pipeline.ackedLengthBytes;
    let i = 0;
    while (i < chunk.unacked.length) {
      const p = chunk.unacked[i]!;
      if (p.offset + p.data.length > acked) break;
      // Acknowledged by every replica: the pipeline is done with these bytes. A piece is a staging buffer
      // from its start, and only the piece itself is in `unacked` (a resent remainder is not), so each
      // buffer goes back once.
      this.spares.give(p.data);
      i++;
    }
    if (i > 0) chunk.unacked.splice(0, i);
  }
}
