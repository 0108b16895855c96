/**
 * Short-circuit local reads: when a replica of a chunk lives on this host, the client reads the replica's
 * data file itself instead of streaming the bytes through the chunkserver's socket, and verifies every
 * 64 KiB block against the replica's sidecar exactly as the chunkserver would (HDFS's short-circuit local
 * reads, in their path-based form). It saves the chunkserver's read, the socket copies on both sides and the
 * chunkserver's CPU; the bytes still come from the replica the metadata leader named.
 *
 * How a replica is opened:
 *   1. the client asks the chunkserver (`local-read {handle, version}` on a read connection, protocol.ts)
 *      where the replica's files are; the answer also names the server's token file and its token;
 *   2. the client reads the token file: the same token means the paths are that chunkserver's (this host,
 *      this file system), anything else means it is elsewhere, and the address is not asked again for
 *      localReadRetryMs (nor when this process may not read the replica files: another user's directory);
 *   3. it reads the sidecar and checks that it names the handle at the version, sealed and uncompressed,
 *      then opens the data file, which stays open (at most localReplicasOpenMax replicas, least recently used
 *      closed first) for the next reads of the chunk.
 * A read then reads the blocks its range touches, in pieces of localReadPieceBytes (at most
 * localReadPiecesInflightMax at a time for the whole client, first asked first served), and checks each
 * block's CRC32C.
 *
 * Anything unexpected (the server offers no local reads, another host, an unsealed or compressed replica, a
 * file gone, a short read, a block that fails its CRC) makes `read` return undefined: the caller reads over
 * the data plane as before. That is also how corruption is handled: a local mismatch is not reported by the
 * client itself; the chunkserver's own verified read of the same replica finds it, reports it to the leader
 * and the reader fails over, as for any read.
 *
 * A hung disk: every local open (token, sidecar, data file) and every piece read is raced against the read
 * stall timeout (`LocalReadsOptions.stall`; the client passes its readStallMs). One that takes longer ends
 * the read (the caller goes over the data plane, where the chunkserver's read of that disk is watched by the
 * reader's stall timer), frees its slot, and the address is not read locally for localReadRetryMs, nor while
 * any call abandoned on its files has not returned (so a disk that stays hung holds the libuv threads of
 * the calls running when it hung, and no more). A file-system call cannot be cancelled: whatever it yields
 * late is dropped (a file it opened is closed), and it may write into its buffer at any later time. So a
 * piece is read straight into the caller's buffer only when the caller can retire that buffer
 * (`ReadIntoOptions.retirable`: a read session's read-ahead, a path read's own result buffer), and a read
 * abandoned that way fails with ReadBufferAbandonedError, telling the caller never to touch the buffer
 * again; into any other caller's buffer (one the application owns and will reuse), pieces are read into
 * buffers of this object's own and copied out once verified, and an abandoned one of those is dropped.
 *
 * Why the bytes are right: they are returned only when every block matches the CRC32C in the sidecar of a
 * sealed replica at the version the metadata leader named, and a sealed chunk's bytes at a version never
 * change (every new write pipeline bumps the version). A replica deleted or replaced while open is still
 * read through the open descriptor, whose bytes are those the sidecar described.
 */
import { crc32c } from '@node-rs/crc32';
import { open } from 'node:fs/promises';
import { DataPlaneError } from '../chunkserver/dataplane/errors.ts';
import type { LocalReplicaMessage } from '../chunkserver/dataplane/protocol.ts';
import type { StallWatch } from '../chunkserver/dataplane/stall.ts';
import { readStallMsDefault, realStallWatch } from '../chunkserver/dataplane/stall.ts';
import { decodeSidecar, sidecarBytesMax } from '../chunkserver/sidecar.ts';
import { checksumBlockBytes } from '../chunkserver/types.ts';
import { assert } from '../raft/errors.ts';
import { ReadBufferAbandonedError } from './data-path.ts';
import type { ReadIntoOptions } from './data-path.ts';

/** Replicas whose data file is kept open between reads, at most (one file descriptor each). */
export const localReplicasOpenMax = 64;
/** Bytes read from a data file per read call (a whole number of checksum blocks). */
export const localReadPieceBytes = 4 * 1024 * 1024;
/**
 * Pieces read at once, across every read of the client (the disk sees a queue, and checksums overlap the
 * reads). Pieces are served in the order they were asked for, so concurrent reads of several chunks (a range
 * spanning them) read one file after the other, each sequentially: measured on this machine's disk, 1.6–2.2
 * GB/s against 0.8–1.1 GB/s when four files are read side by side.
 */
export const localReadPiecesInflightMax = 4;
/** An address found to be on another host, or to offer no local reads, is not asked again for this long. */
export const localReadRetryMs = 60_000;
/** A token file larger than this is not a token file. */
const tokenBytesMax = 4096;

assert(localReadPieceBytes % checksumBlockBytes === 0, 'localReadPieceBytes is a whole number of blocks');

export interface LocalReadStats {
  /** Bytes returned by local reads. */
  localBytes: number;
  /** Reads that fell back to the data plane after a local attempt (not counting addresses known remote). */
  fallbacks: number;
  /** Replicas opened (sidecar read and data file opened). */
  replicasOpened: number;
  /** Local opens or piece reads abandoned after the stall timeout (a hung disk; see the header). */
  stalls: number;
}

/** What local reads use of an open file: a FileHandle (tests substitute one whose calls hang). */
export interface LocalFile {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

export interface LocalReadsOptions {
  /** The clock of the localReadRetryMs waits (default Date.now). */
  readonly nowMs?: () => number;
  /**
   * A local open or piece read not finished after `stall.ms` is abandoned (see the header). Default: real
   * timers of readStallMsDefault (15 s).
   */
  readonly stall?: StallWatch;
  /** Opens a file for reading (default `fs.promises.open(path, 'r')`). */
  readonly openFile?: (path: string) => Promise<LocalFile>;
}

/** What `LocalReads.within` yields for a call that did not finish within the stall timeout. */
const stalled = Symbol('stalled');
type Stalled = typeof stalled;

/** How a read ended: its bytes are in the target, or not (fall back), or a call on the disk was abandoned. */
type ReadOutcome = 'ok' | 'failed' | 'stalled';

/** Asks a chunkserver where a replica's files are (askLocalReplica over the client's read pool). */
export type AskLocalReplica = (address: string, handle: number, version: number) => Promise<LocalReplicaMessage>;

interface OpenReplica {
  readonly key: string;
  readonly address: string;
  readonly file: LocalFile;
  readonly lengthBytes: number;
  readonly blockCrcs: Uint32Array;
  /** Reads using it now; it is closed only when none is. */
  users: number;
  /** Out of the cache (evicted, failed, or the reader closed): closed when its last user is done. */
  dropped: boolean;
}

export class LocalReads {
  /** Open replicas by `address#handle#version`, least recently used first. */
  private readonly replicas = new Map<string, OpenReplica>();
  /** Opens in flight, so concurrent reads of a replica share one. */
  private readonly opening = new Map<string, Promise<OpenReplica | undefined>>();
  /** Addresses not to ask until the time given (ms). */
  private readonly remoteUntil = new Map<string, number>();
  /** Calls on an address's files abandoned after the stall timeout and not returned yet (see the header). */
  private readonly abandoned = new Map<string, number>();
  /** The token last confirmed on this host, per address. */
  private readonly confirmed = new Map<string, string>();
  private closed = false;
  /** Pieces waiting for one of the localReadPiecesInflightMax slots, first asked first served. */
  private readonly waiting: (() => void)[] = [];
  private running = 0;
  /** Piece buffers free for the next copied piece (at most localReadPiecesInflightMax kept). */
  private readonly pieceBuffers: Buffer[] = [];
  private readonly nowMs: () => number;
  private readonly stall: StallWatch;
  private readonly openFile: (path: string) => Promise<LocalFile>;
  readonly stats: LocalReadStats = { localBytes: 0, fallbacks: 0, replicasOpened: 0, stalls: 0 };

  constructor(
    private readonly ask: AskLocalReplica,
    options: LocalReadsOptions = {},
  ) {
    this.nowMs = options.nowMs ?? Date.now;
    this.stall = options.stall ?? realStallWatch(readStallMsDefault);
    this.openFile = options.openFile ?? ((path) => open(path, 'r'));
  }

  /** Whether the chunkserver at `address` was found to be on this host (and still is, as far as known). */
  isLocal(address: string): boolean {
    return this.confirmed.has(address) && !this.knownRemote(address);
  }

  /**
   * The range read from the local replica's files into `into` (exactly `length` bytes; a new buffer when
   * absent), or undefined when it cannot be read locally: the caller then reads over the data plane. With
   * `options.retirable`, pieces are read straight into `into`, and a read abandoned on a hung disk rejects
   * with ReadBufferAbandonedError (the caller retires `into`); otherwise `into` is written only with
   * verified bytes, before this returns.
   */
  async read(address: string, request: { handle: number; version: number; offset: number; length: number }, into?: Uint8Array, options: ReadIntoOptions = {}): Promise<Uint8Array | undefined> {
    const { handle, version, offset, length } = request;
    if (this.closed || this.knownRemote(address)) return undefined;
    if (into !== undefined && into.length !== length) throw new RangeError(`a read of ${length} bytes into a buffer of ${into.length}`);
    const replica = await this.acquire(address, handle, version);
    if (replica === undefined) return undefined;
    let outcome: ReadOutcome;
    // A buffer of our own, or one the caller retires if a read into it is abandoned, is read into straight.
    const straight = into === undefined || options.retirable === true;
    // Its own memory (never a slice of Node's shared pool, which an abandoned call could write into).
    const out = into ?? Buffer.allocUnsafeSlow(length);
    try {
      // Past the end: the data plane answers BAD_OFFSET.
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > replica.lengthBytes) return undefined;
      outcome = await this.readVerified(replica, offset, out, straight);
    } finally {
      this.release(replica);
    }
    if (outcome === 'ok') {
      this.stats.localBytes += length;
      return out;
    }
    this.stats.fallbacks++;
    if (outcome === 'failed') this.drop(replica);
    else if (into !== undefined && straight) throw new ReadBufferAbandonedError(`a local read of chunk ${handle} from ${address}'s files took over ${this.stall.ms} ms`);
    return undefined;
  }

  /** Runs `task` when one of the localReadPiecesInflightMax slots is free (in the order asked). */
  private async inSlot<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= localReadPiecesInflightMax) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter (running stays the same), or is freed.
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.running--;
    }
  }

  /**
   * `work` raced against the stall timeout: what it yields, or `stalled` when it has not settled by then. The
   * call goes on regardless (a file-system call cannot be cancelled): a value it yields late goes to `late`
   * (to close a file it opened), a late failure is dropped. While it is out, `address` is not read locally.
   */
  private within<T>(address: string, work: Promise<T>, late?: (value: T) => void): Promise<T | Stalled> {
    return new Promise((resolve, reject) => {
      let timedOut = false;
      const cancel = this.stall.setTimeout(() => {
        timedOut = true;
        this.stats.stalls++;
        this.markRemote(address);
        this.abandoned.set(address, (this.abandoned.get(address) ?? 0) + 1);
        resolve(stalled);
      }, this.stall.ms);
      const returnedLate = (): void => {
        const left = (this.abandoned.get(address) ?? 1) - 1;
        if (left > 0) this.abandoned.set(address, left);
        else this.abandoned.delete(address);
      };
      work.then(
        (value) => {
          if (!timedOut) {
            cancel();
            resolve(value);
            return;
          }
          returnedLate();
          late?.(value);
        },
        (error: unknown) => {
          if (!timedOut) {
            cancel();
            reject(error instanceof Error ? error : new Error(String(error)));
            return;
          }
          returnedLate();
        },
      );
    });
  }

  /** A buffer of localReadPieceBytes for one copied piece (its own memory: never a slice of a shared pool). */
  private takePieceBuffer(): Buffer {
    return this.pieceBuffers.pop() ?? Buffer.allocUnsafeSlow(localReadPieceBytes);
  }

  /** A copied piece's buffer back, once no read can write into it any more. */
  private givePieceBuffer(buffer: Buffer): void {
    if (this.pieceBuffers.length < localReadPiecesInflightMax) this.pieceBuffers.push(buffer);
  }

  /** Closes every open data file (reads in progress finish first); later reads go over the data plane. */
  async close(): Promise<void> {
    this.closed = true;
    const open = [...this.replicas.values()];
    this.replicas.clear();
    await Promise.all(open.map((r) => this.dropAndClose(r)));
  }

  /** Open replicas now (tests). */
  get openCount(): number {
    return this.replicas.size;
  }

  private knownRemote(address: string): boolean {
    if (this.abandoned.has(address)) return true;
    const until = this.remoteUntil.get(address);
    if (until === undefined) return false;
    if (until > this.nowMs()) return true;
    this.remoteUntil.delete(address);
    return false;
  }

  private markRemote(address: string): void {
    this.confirmed.delete(address);
    this.remoteUntil.set(address, this.nowMs() + localReadRetryMs);
  }

  private async acquire(address: string, handle: number, version: number): Promise<OpenReplica | undefined> {
    const key = `${address}#${handle}#${version}`;
    const cached = this.replicas.get(key);
    if (cached !== undefined) {
      // Most recently used last.
      this.replicas.delete(key);
      this.replicas.set(key, cached);
      cached.users++;
      return cached;
    }
    let pending = this.opening.get(key);
    if (pending === undefined) {
      pending = this.openReplica(key, address, handle, version).finally(() => this.opening.delete(key));
      this.opening.set(key, pending);
    }
    const opened = await pending;
    if (opened === undefined || opened.dropped) return undefined;
    opened.users++;
    return opened;
  }

  private async openReplica(key: string, address: string, handle: number, version: number): Promise<OpenReplica | undefined> {
    let reply: LocalReplicaMessage;
    try {
      reply = await this.ask(address, handle, version);
    } catch (error) {
      // A server that offers none, or one too old to know the request: not asked again for a while. Other
      // failures (a stale version, a replica not held, a lost connection) are the data plane's to report.
      if (error instanceof DataPlaneError && (error.code === 'LOCAL_READS_OFF' || error.code === 'PROTOCOL_ERROR')) this.markRemote(address);
      return undefined;
    }
    // Each file-system step is raced against the stall timeout (see the header).
    if (this.confirmed.get(address) !== reply.token) {
      const token = await this.within(address, readSmallFile(this.openFile, reply.tokenPath, tokenBytesMax));
      if (token === stalled) return undefined;
      if (token?.toString() !== reply.token) {
        this.markRemote(address);
        return undefined;
      }
      this.confirmed.set(address, reply.token);
    }
    const sidecarBytes = await this.within(address, readSmallFile(this.openFile, reply.metaPath, sidecarBytesMax, () => this.markRemote(address)));
    if (sidecarBytes === stalled || sidecarBytes === undefined) return undefined;
    const sidecar = decodeSidecar(sidecarBytes);
    if (typeof sidecar === 'string' || sidecar.handle !== handle || sidecar.version !== version || !sidecar.sealed) return undefined;
    if (sidecar.compression !== 'none' || sidecar.packed !== undefined) return undefined;
    let file: LocalFile;
    try {
      const opened = await this.within(address, this.openFile(reply.dataPath), closeQuietly);
      if (opened === stalled) return undefined;
      file = opened;
    } catch {
      return undefined;
    }
    try {
      const stat = await this.within(address, file.stat());
      if (stat === stalled || stat.size < sidecar.lengthBytes) {
        closeQuietly(file);
        return undefined;
      }
    } catch {
      closeQuietly(file);
      return undefined;
    }
    const replica: OpenReplica = { key, address, file, lengthBytes: sidecar.lengthBytes, blockCrcs: sidecar.blockCrcs, users: 0, dropped: false };
    this.stats.replicasOpened++;
    if (this.closed) {
      replica.dropped = true;
      closeQuietly(file);
      return undefined;
    }
    this.replicas.set(key, replica);
    this.evict();
    return replica;
  }

  /**
   * Fills `out` with the replica's bytes [offset, offset + out.length), reading whole blocks and verifying each
   * against the sidecar, and settles once every piece has finished, failed or been abandoned. With `straight`,
   * pieces inside the range are read into `out` itself; otherwise into piece buffers, copied into `out` once
   * verified (and only while no piece has failed). A partial first or last block always goes through a
   * block-sized buffer of its own. Anything but 'ok' means nothing in `out` is to be trusted.
   */
  private async readVerified(replica: OpenReplica, offset: number, out: Uint8Array, straight: boolean): Promise<ReadOutcome> {
    const end = offset + out.length;
    if (out.length === 0) return 'ok';
    const spanStart = Math.floor(offset / checksumBlockBytes) * checksumBlockBytes;
    const spanEnd = Math.min(replica.lengthBytes, Math.ceil(end / checksumBlockBytes) * checksumBlockBytes);
    const pieces: Piece[] = [];
    let at = spanStart;
    if (offset !== spanStart) {
      pieces.push({ start: at, end: Math.min(spanEnd, at + checksumBlockBytes) });
      at = pieces[0]!.end;
    }
    const lastBlockStart = Math.floor((spanEnd - 1) / checksumBlockBytes) * checksumBlockBytes;
    const middleEnd = end !== spanEnd && lastBlockStart >= at ? lastBlockStart : spanEnd;
    for (; at < middleEnd; at = Math.min(middleEnd, at + localReadPieceBytes)) pieces.push({ start: at, end: Math.min(middleEnd, at + localReadPieceBytes) });
    if (at < spanEnd) pieces.push({ start: at, end: spanEnd });

    let outcome: ReadOutcome = 'ok';
    const readPiece = async (piece: Piece): Promise<void> => {
      // An earlier piece failed (the read falls back anyway), or a call on this address's files hung meanwhile.
      if (outcome !== 'ok') return;
      if (this.knownRemote(replica.address)) {
        outcome = 'failed';
        return;
      }
      const inside = piece.start >= offset && piece.end <= end;
      const direct = inside && straight;
      const pooled = inside && !straight ? this.takePieceBuffer() : undefined;
      const target = direct ? out.subarray(piece.start - offset, piece.end - offset) : (pooled?.subarray(0, piece.end - piece.start) ?? Buffer.allocUnsafeSlow(piece.end - piece.start));
      let read: boolean | Stalled;
      try {
        read = await this.within(replica.address, readFully(replica.file, target, piece.start));
      } catch {
        read = false;
      }
      // Abandoned: `target` may still be written into, so a pooled one is dropped, never reused.
      if (read === stalled) {
        outcome = 'stalled';
        return;
      }
      if (!read || !blocksMatch(replica, piece.start, target)) {
        if (outcome === 'ok') outcome = 'failed';
      } else if (outcome === 'ok' && !direct) {
        const from = Math.max(offset, piece.start);
        const to = Math.min(end, piece.end);
        out.set(target.subarray(from - piece.start, to - piece.start), from - offset);
      }
      if (pooled !== undefined) this.givePieceBuffer(pooled);
    };
    // Every piece asks for its slot now, in order: this read's pieces are served before a later read's.
    await Promise.all(pieces.map((piece) => this.inSlot(() => readPiece(piece))));
    return outcome;
  }

  /** Closes the least recently used replicas past localReplicasOpenMax (once their reads are done). */
  private evict(): void {
    for (const replica of this.replicas.values()) {
      if (this.replicas.size <= localReplicasOpenMax) return;
      this.drop(replica);
    }
  }

  private drop(replica: OpenReplica): void {
    if (this.replicas.get(replica.key) === replica) this.replicas.delete(replica.key);
    void this.dropAndClose(replica);
  }

  private async dropAndClose(replica: OpenReplica): Promise<void> {
    replica.dropped = true;
    if (replica.users === 0) await replica.file.close().catch(() => undefined);
  }

  private release(replica: OpenReplica): void {
    replica.users--;
    if (replica.dropped && replica.users === 0) void replica.file.close().catch(() => undefined);
  }
}

/**
 * A file's bytes when it is at most `bytesMax` long and readable; else undefined. `onDenied`: the file exists
 * but this process may not read it (the chunkserver's data directory is not readable by this user).
 */
async function readSmallFile(openFile: (path: string) => Promise<LocalFile>, path: string, bytesMax: number, onDenied?: () => void): Promise<Buffer | undefined> {
  let file: LocalFile;
  try {
    file = await openFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') onDenied?.();
    return undefined;
  }
  try {
    const { size } = await file.stat();
    if (size > bytesMax) return undefined;
    // Its own memory: a read abandoned on a hung disk may write into it late.
    const bytes = Buffer.allocUnsafeSlow(size);
    return (await readFully(file, bytes, 0)) ? bytes : undefined;
  } catch {
    return undefined;
  } finally {
    await file.close().catch(() => undefined);
  }
}

/** Closes a file, ignoring failure (a file opened late, or dropped). */
function closeQuietly(file: LocalFile): void {
  void file.close().catch(() => undefined);
}

/** Fills `into` from `position`; false on a short file or an error. */
async function readFully(file: LocalFile, into: Uint8Array, position: number): Promise<boolean> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await file.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) return false;
    done += bytesRead;
  }
  return true;
}

interface Piece {
  /** Block-aligned start in the chunk, and end (a block boundary or the replica's length). */
  readonly start: number;
  readonly end: number;
}

/** Whether every block of `bytes` (the replica's bytes from the block-aligned `start`) matches its CRC. */
function blocksMatch(replica: OpenReplica, start: number, bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.length; at += checksumBlockBytes) {
    const block = bytes.subarray(at, Math.min(bytes.length, at + checksumBlockBytes));
    if (crc32c(block) !== replica.blockCrcs[(start + at) / checksumBlockBytes]) return false;
  }
  return true;
}
