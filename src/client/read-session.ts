/**
 * `ReadSession`: the reads of one open file (a reading file handle, a read stream), as HDFS's input stream
 * does them.
 *
 * - **Chunk locations are fetched once**, at the first read, not per read: a path read (`FileReader.read`)
 *   asks the metadata leader for the file's chunk list every time, which costs a round trip per call, and
 *   a reader of a large file in 1 MiB calls would pay it a thousand times per GiB. The session asks again
 *   only when a read reaches past the chunks it knows (the file may have grown: a writer sealed more
 *   chunks), or when no replica of a known chunk served a part (the replicas may have moved: the read is
 *   then retried once on the fresh list).
 * - **Read-ahead.** Once reads are sequential (each starts where the previous ended; the first read at
 *   offset 0 counts), the session keeps up to `readAheadPiecesMax` pieces of `readAheadPieceBytes` read
 *   ahead of the reader, in buffers it owns and reuses (so its memory stays bounded and warm: on this VM
 *   copying into fresh or large memory costs several times more than into a few MiB reused). A read the
 *   pieces cover is copied out of them; the part of a read no piece covers is read straight into the
 *   caller's buffer. A random read drops the read-ahead and starts none.
 *
 * What the session sees: sealed chunks never change (every new write pipeline bumps a chunk's version, and a
 * sealed chunk is not written again), so bytes read through the known list are the file's bytes as of the
 * first read. Chunks sealed later are seen when a read reaches them. A file replaced (renamed over,
 * re-created) after the first read is seen only when the session next asks (a read past the known end, or a
 * chunk whose replicas are gone); like a Unix descriptor of a file unlinked while open, the session reads the
 * file it opened until then. A path read always reads the file the path names now.
 *
 * Errors: the same as a path read (EIO when no replica serves a part, after the retry on a fresh list). A
 * read-ahead piece that failed is not reported as such: the read that reaches it reads that part again
 * itself, and fails or succeeds on its own.
 */
import type { DataBug } from '../chunkserver/bugs.ts';
import { noDataBugs } from '../chunkserver/bugs.ts';
import type { ChunkLocation, ReadIntoOptions } from './data-path.ts';
import { FileIoError, ReadBufferAbandonedError } from './data-path.ts';
import { SpareBuffers } from './spare-buffers.ts';

/** Bytes per read-ahead piece: one data-plane read each. */
export const readAheadPieceBytes = 4 * 1024 * 1024;
/** Read-ahead pieces a session keeps (in flight or read, not yet consumed), at most. */
export const readAheadPiecesMax = 4;

/** What a session needs from the file reader. */
export interface ReadSessionSource {
  /** Every sealed chunk of the file, in order (a fresh list from the metadata leader). */
  locations(path: string): Promise<ChunkLocation[]>;
  /**
   * Fills `out` with the bytes of `chunks` (the file's list) from the file offset `start`. With `retirable`,
   * it may reject with ReadBufferAbandonedError: `out`'s buffer must then never be touched again.
   */
  readChunks(chunks: readonly ChunkLocation[], start: number, out: Uint8Array, options?: ReadIntoOptions): Promise<void>;
}

interface Piece {
  readonly start: number;
  readonly end: number;
  /** The pool buffer the piece was read into; the piece's bytes are base[skip, skip + end - start). */
  readonly base: Buffer;
  readonly skip: number;
  /** Settles when the read into `base` is done: true when it succeeded. */
  readonly done: Promise<boolean>;
  /**
   * `settled`: `done` has settled (the buffer can be reused at once). `abandoned`: the read gave up on a
   * file-system call that may still write into `base` (a local read on a hung disk): the buffer is retired.
   */
  readonly state: { settled: boolean; abandoned: boolean };
}

export interface ReadSessionStats {
  /** Bytes copied out of read-ahead pieces. */
  readAheadBytes: number;
  /** Bytes read straight into callers' buffers. */
  directBytes: number;
  /** Chunk lists fetched from the metadata leader. */
  locationFetches: number;
  /** Read-ahead buffers allocated (the pool's size, unless pieces were dropped while in flight). */
  buffersAllocated: number;
}

export class ReadSession {
  private chunks: ChunkLocation[] | undefined;
  /** File offset of each known chunk's first byte, and of the end of the last (length chunks + 1). */
  private starts: number[] = [0];
  /** Pieces read ahead, in file order and contiguous: pieces[0].start is the next byte a sequential read wants. */
  private pieces: Piece[] = [];
  /** Buffers free for the next pieces (a dropped piece's buffer returns once its read settles). */
  private readonly free: Buffer[] = [];
  /** Where the next sequential read starts. */
  private nextSequential = 0;
  private closed = false;
  /** A chunk list being fetched (concurrent reads share it). */
  private fetching: Promise<void> | undefined;
  readonly stats: ReadSessionStats = { readAheadBytes: 0, directBytes: 0, locationFetches: 0, buffersAllocated: 0 };

  constructor(
    private readonly source: ReadSessionSource,
    readonly path: string,
    /** Planted bugs (the simulator's self-test only; none in production). */
    private readonly bugs: ReadonlySet<DataBug> = noDataBugs,
    /**
     * Where read-ahead buffers come from, and go back to when the session closes (./spare-buffers.ts): a
     * client's, shared by its sessions and writers, so a new session reads into warm memory. Default: none
     * shared (the session's buffers are dropped at close).
     */
    private readonly spares: SpareBuffers = new SpareBuffers(0),
  ) {}

  /** The length of the file as far as the session knows (its sealed chunks); undefined before the first read. */
  get knownLengthBytes(): number | undefined {
    return this.chunks === undefined ? undefined : this.starts[this.starts.length - 1]!;
  }

  /**
   * Reads from `offset` into `into` (up to its length; fewer at the end of the file) and returns the count:
   * 0 at or past the end.
   */
  async readInto(offset: number, into: Uint8Array): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FileIoError('EINVAL', `bad offset ${offset}`);
    if (this.closed) throw new FileIoError('EBADF', 'the read session is closed');
    if (this.chunks === undefined || offset + into.length > this.knownLengthBytes!) await this.refresh();
    const total = this.knownLengthBytes!;
    const count = Math.max(0, Math.min(into.length, total - offset));
    if (count === 0) return 0;
    const sequential = offset === this.nextSequential;
    const unchecked = this.bugs.has('data-read-ahead-unchecked');
    if (!sequential && !unchecked) this.dropPieces();
    this.nextSequential = offset + count;

    // Copy out what the read-ahead covers (it starts exactly at `offset` when the read is sequential).
    let done = 0;
    while (done < count && this.pieces.length > 0) {
      const piece = this.pieces[0]!;
      const at = offset + done;
      if (piece.start !== at && !unchecked) break;
      if (!(await piece.done)) break; // read that part again below, to fail or succeed on its own
      if (this.pieces[0] !== piece) break; // dropped meanwhile (a concurrent random read)
      const take = Math.min(count - done, piece.end - piece.start); // piece.start === at (unless the planted bug)
      into.set(piece.base.subarray(piece.skip, piece.skip + take), done);
      done += take;
      this.stats.readAheadBytes += take;
      // A piece used up returns its buffer; the rest of one stays for the next read.
      if (take === piece.end - piece.start) this.release(this.pieces.shift()!);
      else this.pieces[0] = { ...piece, start: piece.start + take, skip: piece.skip + take };
    }
    if (done < count) {
      // Past the read-ahead: those pieces (if any) are behind us now.
      this.dropPieces();
      await this.readDirect(offset + done, into.subarray(done, count));
      this.stats.directBytes += count - done;
    }
    if (sequential && !this.closed) this.readAhead(offset + count);
    return count;
  }

  /**
   * Stops the read-ahead and forgets the chunk list; later reads fail with EBADF. The read-ahead buffers go
   * back to the spares (one still being read into, once its read settles).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropPieces();
    for (const buffer of this.free.splice(0)) this.spares.give(buffer);
  }

  /** Fetches the chunk list (one fetch shared by concurrent reads). */
  private async refresh(): Promise<void> {
    if (this.fetching === undefined) {
      this.fetching = (async () => {
        this.stats.locationFetches++;
        const chunks = await this.source.locations(this.path);
        const starts = [0];
        for (const c of chunks) starts.push(starts[starts.length - 1]! + c.lengthBytes);
        // A different list: anything read ahead may be another file's bytes.
        if (!this.samePrefix(chunks)) this.dropPieces();
        this.chunks = chunks;
        this.starts = starts;
      })().finally(() => (this.fetching = undefined));
    }
    await this.fetching;
  }

  /** Whether the known chunks are the first chunks of `chunks` (same handles, versions and lengths). */
  private samePrefix(chunks: readonly ChunkLocation[]): boolean {
    const known = this.chunks;
    if (known === undefined) return true;
    if (chunks.length < known.length) return false;
    return known.every((c, i) => c.handle === chunks[i]!.handle && c.version === chunks[i]!.version && c.lengthBytes === chunks[i]!.lengthBytes);
  }

  /** Reads [start, start + out.length) on the known list; on EIO, once more on a fresh list. */
  private async readDirect(start: number, out: Uint8Array): Promise<void> {
    const chunks = this.chunks!;
    try {
      await this.source.readChunks(chunks, start, out);
    } catch (error) {
      if (!(error instanceof FileIoError) || error.code !== 'EIO' || this.closed) throw error;
      await this.refresh();
      if (start + out.length > this.knownLengthBytes!) throw error; // the file is shorter now: nothing to retry
      await this.source.readChunks(this.chunks!, start, out);
    }
  }

  /** Starts pieces from the end of the read-ahead (or `from` when there is none) up to the limits. */
  private readAhead(from: number): void {
    const total = this.knownLengthBytes!;
    let at = this.pieces.length > 0 ? this.pieces[this.pieces.length - 1]!.end : from;
    while (this.pieces.length < readAheadPiecesMax && at < total) {
      // A piece never spans two chunks: one data-plane read each.
      const chunkEnd = this.starts[this.chunkIndexAt(at) + 1]!;
      const end = Math.min(at + readAheadPieceBytes, chunkEnd, total);
      const base = this.free.pop() ?? this.allocate();
      const state = { settled: false, abandoned: false };
      const settle = (ok: boolean): boolean => {
        state.settled = true;
        return ok;
      };
      // The session owns `base` and can retire it: a local read may read straight into it (ReadIntoOptions).
      const done = this.source.readChunks(this.chunks!, at, base.subarray(0, end - at), { retirable: true }).then(
        () => settle(true),
        (error: unknown) => {
          if (error instanceof ReadBufferAbandonedError) state.abandoned = true;
          return settle(false);
        },
      );
      this.pieces.push({ start: at, end, base, skip: 0, done, state });
      at = end;
    }
  }

  private allocate(): Buffer {
    const allocated = this.spares.stats.allocated;
    const buffer = this.spares.take(readAheadPieceBytes);
    this.stats.buffersAllocated += this.spares.stats.allocated - allocated;
    return buffer;
  }

  /** Index of the known chunk holding file offset `at` (< the known length). */
  private chunkIndexAt(at: number): number {
    let lo = 0;
    let hi = this.starts.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Forgets every piece; their buffers return to the pool once their reads settle. */
  private dropPieces(): void {
    const dropped = this.pieces;
    this.pieces = [];
    for (const piece of dropped) this.release(piece);
  }

  /**
   * The piece's buffer returns to the pool once its read settles (it may still be writing into it): at once
   * when it has, so the next piece reuses it (a fresh buffer per piece costs page faults on every byte). A
   * buffer whose read was abandoned is retired: left to the garbage collector, never reused or given back.
   */
  private release(piece: Piece): void {
    const recycle = (): void => {
      if (piece.state.abandoned) return;
      if (!this.closed) this.free.push(piece.base);
      else this.spares.give(piece.base);
    };
    if (piece.state.settled) recycle();
    else void piece.done.then(recycle);
  }
}
