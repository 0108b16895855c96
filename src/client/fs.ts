/**
 * `RfsClient`: rfs shaped like `node:fs/promises` (see docs/CLIENT.md).
 *
 *   const fs = await connect({ metadata: ['127.0.0.1:7001', '127.0.0.1:7002', '127.0.0.1:7003'] });
 *   await fs.mkdir('/logs', { recursive: true });
 *   await fs.writeFile('/logs/a', 'hello');
 *
 * One object serves any number of concurrent calls. Under it:
 *  - one MetadataClient (one session): it finds the leader, follows redirects and retries with backoff;
 *    a mutation keeps its session stamp across retries so it is applied at most once. The session takes
 *    several mutations in flight (each has its own seq; `ack` advances over the answered prefix), and the
 *    servers keep at most `sessionResultsMax` (256) unacknowledged results per session, so this client
 *    lets at most `mutationsInflightMax` mutations out at once (the rest wait here, in order);
 *  - one data plane (one TcpDataNetwork) for every writer and read;
 *  - one FileReader; one FileWriter per file being written.
 *
 * Deadlines: every metadata RPC is retried until `timeoutMs`; a namespace call (mkdir, stat, ...) as a
 * whole also fails with TimeoutError at `timeoutMs`. Data transfers (readFile, writeFile, streams) are not
 * bounded as a whole (a large file takes as long as it takes), but each metadata step inside them is.
 * AbortSignal: every call takes `signal`; an aborted call rejects at once with AbortError. An aborted or
 * timed-out mutation may still be applied by the servers (its outcome is unknown, as with any timeout).
 */
import { constants as fsConstants } from 'node:fs';
import { hostname } from 'node:os';
import { posix } from 'node:path';
import { MetadataClient } from '../metadata/client.ts';
import type { ChunkLocation, StatInfo } from '../metadata/client.ts';
import type { DataPlaneLimits } from '../chunkserver/dataplane/index.ts';
import { createForWriter, dataPlaneOptions, metadataForData, tcpDataPlane } from './connect.ts';
import type { CreatedForWriter } from './connect.ts';
import type { DataPlane, ReaderMetadata, WriterMetadata } from './data-path.ts';
import { FileReader } from './file-reader.ts';
import { FileWriter } from './file-writer.ts';
import { AbortError, RfsError, TimeoutError, toRfsError } from './errors.ts';
import type { ErrorContext } from './errors.ts';
import { RfsFileHandle } from './handle.ts';
import type { OpenFlags } from './handle.ts';
import { RfsReadStream, RfsWriteStream } from './streams.ts';
import { SpareBuffers, spareBytesMaxDefault } from './spare-buffers.ts';
import type { ReadStreamOptions, WriteStreamOptions } from './streams.ts';

/** Default deadline of a namespace call and of each metadata RPC's retries. */
export const timeoutMsDefault = 30_000;
/** Mutations one client lets out at once (the servers keep 256 unacknowledged results per session). */
export const mutationsInflightMax = 64;
/** Bytes copyFile reads and writes at a time. */
export const copyPieceBytes = 4 * 1024 * 1024;
/** Deadline of one metadata RPC attempt (then the client retries, elsewhere if need be). */
const attemptTimeoutMsMax = 2_000;

export interface ConnectOptions {
  /** Metadata servers, 'host:port' (any of them; the client finds the leader). */
  readonly metadata: readonly string[];
  /** Deadline of each namespace call and of each metadata RPC's retries (default 30 s). */
  readonly timeoutMs?: number;
  /** Aborts connecting. */
  readonly signal?: AbortSignal;
  /** Lease duration of a file being written (renewed every third of it). */
  readonly leaseDurationMs?: number;
  /** Bytes a writer gathers before they go down a pipeline (the writer's bounded staging). */
  readonly stagingBytes?: number;
  /**
   * Bytes of large buffers (writers' staging, read-ahead of open files and streams) the client keeps for its
   * next writers and readers (spare-buffers.ts; default 64 MiB, 0 keeps none): fresh memory costs a page
   * fault per 4 KiB on first touch.
   */
  readonly spareBytesMax?: number;
  readonly dataPlaneLimits?: Partial<DataPlaneLimits>;
  /**
   * Read replicas that live on this host straight from their files, verified against their checksums
   * (short-circuit local reads, local-read.ts; default true). False: every read streams from a chunkserver.
   */
  readonly localReads?: boolean;
  /**
   * A read from a chunkserver that sends nothing for this long (a paused or hung server, a blackholed link)
   * fails over to the next replica (default 15 s).
   */
  readonly readStallMs?: number;
  /**
   * A write whose replicas acknowledge nothing for this long × the replication factor (a paused or hung
   * chunkserver, a blackholed link) goes on without the silent replica (default 10 s).
   */
  readonly pipelineStallMs?: number;
  /**
   * A file open for writing whose pipeline is idle sends the chunkservers a keepalive this often (default
   * 30 s); they end a pipeline silent for their pipeline-idle-ms (120 s), so keep it well below that.
   */
  readonly pipelineKeepaliveMs?: number;
  /** Reads of metadata go to this server first (MetadataClientOptions.readAddress; the Jepsen suite). */
  readonly readAddress?: string;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
}

export interface WriteFileOptions extends CallOptions {
  /** Replicas of each chunk (default: the parent directory's, else the cluster's). */
  readonly replication?: number;
  readonly chunkSizeBytes?: number;
  /** 'lz4': the replicas store the file's chunks LZ4-compressed (reads return the same bytes). Default: the parent directory's. */
  readonly compression?: 'none' | 'lz4';
  /** Replace the file only if its generation is this one (GenerationMismatchError otherwise). */
  readonly ifGeneration?: number;
  /** For string data. */
  readonly encoding?: BufferEncoding;
  /** Permission bits of a file this call creates (a number or an octal string, as Node's); default 0o644. */
  readonly mode?: number | string;
  /**
   * 'w' (default: create or truncate), 'wx' (fail with EEXIST if the path exists), 'a' (append; created if
   * missing) or 'ax' (create, append; EEXIST if the path exists). Other flags: EINVAL (rfs files are
   * append-only).
   */
  readonly flag?: 'w' | 'wx' | 'a' | 'ax';
}

export interface ReadFileOptions extends CallOptions {
  readonly encoding?: BufferEncoding;
}

/** A directory entry, like Node's fs.Dirent. */
export class RfsDirent {
  constructor(
    readonly name: string,
    /** The directory it was listed from. */
    readonly parentPath: string,
    private readonly type: 'dir' | 'file',
    /** The inode id. */
    readonly ino: number,
  ) {}
  isFile(): boolean {
    return this.type === 'file';
  }
  isDirectory(): boolean {
    return this.type === 'dir';
  }
  isSymbolicLink(): boolean {
    return false;
  }
}

/** A file's or directory's status, like Node's fs.Stats, plus rfs's own fields. */
export class RfsStats {
  readonly ino: number;
  readonly mode: number;
  /** The file's readable length (its sealed chunks); 0 for a directory. */
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /** rfs: bumped by every change of the inode; the value `ifGeneration` compares with. */
  readonly generation: number;
  readonly replication: number;
  readonly chunkSizeBytes: number;
  readonly chunkCount: number;
  /** rfs: how the replicas store the file's chunks (for a directory: what new files below it inherit). */
  readonly compression: 'none' | 'lz4';
  /** rfs: false while a writer has the file open (its last chunks are not readable yet). */
  readonly complete: boolean;
  /** Entries of a directory. */
  readonly childCount: number;
  readonly owner: string;
  private readonly type: 'dir' | 'file';

  constructor(info: StatInfo) {
    this.ino = info.id;
    this.mode = info.mode;
    this.size = info.type === 'file' ? info.lengthBytes : 0;
    this.mtimeMs = info.mtimeMs;
    this.ctimeMs = info.ctimeMs;
    this.generation = info.generation;
    this.replication = info.replication;
    this.chunkSizeBytes = info.chunkSizeBytes;
    this.chunkCount = info.chunkCount;
    this.compression = info.compression === 'lz4' ? 'lz4' : 'none';
    this.complete = info.complete;
    this.childCount = info.childCount;
    this.owner = info.owner;
    this.type = info.type;
  }
  get mtime(): Date {
    return new Date(this.mtimeMs);
  }
  get ctime(): Date {
    return new Date(this.ctimeMs);
  }
  /** Node's block size: the chunk size. */
  get blksize(): number {
    return this.chunkSizeBytes;
  }
  isFile(): boolean {
    return this.type === 'file';
  }
  isDirectory(): boolean {
    return this.type === 'dir';
  }
  isSymbolicLink(): boolean {
    return false;
  }
}

export interface ClusterInfo {
  /** ClusterStatus of the leader (or of the server answering, when no leader is known). */
  readonly status: Record<string, unknown>;
  readonly chunkservers: readonly Record<string, unknown>[];
}

/** Lets at most `max` tasks run at once; the rest wait in arrival order. */
class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  /** A task whose `signal` fired while it waited is not run (it rejects; its caller had its AbortError). */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      if (signal?.aborted === true) throw new Error('aborted while queued');
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next(); // the permit passes on
      else this.running--;
    }
  }
}

let holderCount = 0;

const writeFlags: readonly unknown[] = ['w', 'wx', 'a', 'ax'];

/** Connects to the metadata service (opens a session). */
export async function connect(options: ConnectOptions): Promise<RfsClient> {
  const timeoutMs = options.timeoutMs ?? timeoutMsDefault;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new RfsError('EINVAL', { syscall: 'connect' }, `timeoutMs: ${timeoutMs}`);
  for (const [name, ms] of [['readStallMs', options.readStallMs], ['pipelineStallMs', options.pipelineStallMs], ['pipelineKeepaliveMs', options.pipelineKeepaliveMs]] as const) {
    if (ms !== undefined && (!Number.isSafeInteger(ms) || ms <= 0)) throw new RfsError('EINVAL', { syscall: 'connect' }, `${name}: ${ms}`);
  }
  if (options.metadata.length === 0) throw new RfsError('EINVAL', { syscall: 'connect' }, 'metadata: at least one host:port');
  // Aborted by close() (or a failed connect): the metadata client's retries still running stop at once.
  const lifetime = new AbortController();
  const pending = MetadataClient.connect(options.metadata, {
    retryDeadlineMs: timeoutMs,
    attemptTimeoutMs: Math.min(attemptTimeoutMsMax, timeoutMs),
    signal: lifetime.signal,
    ...(options.readAddress !== undefined ? { readAddress: options.readAddress } : {}),
  });
  const meta = await guard({ syscall: 'connect' }, { signal: options.signal, timeoutMs }, () => pending).catch((error: unknown) => {
    lifetime.abort();
    // A session opened after we gave up is closed when it arrives.
    pending.then((m) => m.close(), () => undefined);
    throw error;
  });
  return new RfsClient(meta, options, timeoutMs, lifetime);
}

export class RfsClient {
  /** @internal */ readonly data: DataPlane;
  /** @internal Large buffers shared by this client's writers and read sessions (spare-buffers.ts). */
  readonly spares: SpareBuffers;
  /** @internal */ readonly reader: FileReader;
  private readonly limiter = new Limiter(mutationsInflightMax);
  private readonly readOps: WriterMetadata & ReaderMetadata;
  private readonly holderPrefix = `${hostname()}:${process.pid}:${Date.now().toString(36)}`;
  private closed = false;

  /** @internal Use `connect`. */
  constructor(
    /** The underlying metadata client (diagnostics, tests). */
    readonly metadata: MetadataClient,
    private readonly options: ConnectOptions,
    readonly timeoutMs: number,
    private readonly lifetime: AbortController,
  ) {
    this.data = tcpDataPlane(dataPlaneOptions(options));
    this.readOps = metadataForData(metadata);
    this.spares = new SpareBuffers(options.spareBytesMax ?? spareBytesMaxDefault);
    this.reader = new FileReader({ metadata: this.readOps, data: this.data, spares: this.spares });
  }

  // ------------------------------------------------------------------ namespace

  /** Creates a directory; with `recursive`, its missing parents too (and no error if it exists). */
  async mkdir(
    path: string,
    options: { recursive?: boolean; mode?: number; replication?: number; chunkSizeBytes?: number; compression?: 'none' | 'lz4' } & CallOptions = {},
  ): Promise<void> {
    const { recursive = false, mode, replication, chunkSizeBytes, compression } = options;
    await this.namespace({ syscall: 'mkdir', path }, options, async () => {
      try {
        await this.mutate('Mkdir', { path, parents: recursive, ...defined({ mode, replication, chunkSizeBytes, compression }) }, options.signal);
      } catch (error) {
        // Node: mkdir -p of an existing directory succeeds.
        if (!recursive || (error as { code?: string }).code !== 'EEXIST') throw error;
        const info = await this.metadata.stat(path);
        if (info.type !== 'dir') throw error;
      }
    });
  }

  /**
   * A directory's entries, in a stable order (by name). `recursive` (as Node's): everything below it too, as
   * paths relative to `path` ('a', 'a/b'), each directory's entries before those of the directories below;
   * with `withFileTypes`, Dirents whose `parentPath` is the directory that holds them.
   */
  readdir(path: string, options?: { withFileTypes?: false; recursive?: boolean } & CallOptions): Promise<string[]>;
  readdir(path: string, options: { withFileTypes: true; recursive?: boolean } & CallOptions): Promise<RfsDirent[]>;
  async readdir(path: string, options: { withFileTypes?: boolean; recursive?: boolean } & CallOptions = {}): Promise<string[] | RfsDirent[]> {
    const list = (dir: string) => this.namespace({ syscall: 'scandir', path: dir }, options, () => this.metadata.readdir(dir));
    if (options.recursive !== true) {
      const entries = await list(path);
      if (options.withFileTypes === true) return entries.map((e) => new RfsDirent(e.name, path, e.type, e.id));
      return entries.map((e) => e.name);
    }
    const root = path.length > 1 ? path.replace(/\/+$/, '') : path;
    const names: string[] = [];
    const dirents: RfsDirent[] = [];
    const pending = [root];
    for (let next = 0; next < pending.length; next++) {
      const dir = pending[next]!;
      for (const e of await list(dir)) {
        const full = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
        if (options.withFileTypes === true) dirents.push(new RfsDirent(e.name, dir, e.type, e.id));
        else names.push(full.slice(root === '/' ? 1 : root.length + 1));
        if (e.type === 'dir') pending.push(full);
      }
    }
    return options.withFileTypes === true ? dirents : names;
  }

  async stat(path: string, options: CallOptions = {}): Promise<RfsStats> {
    return new RfsStats(await this.namespace({ syscall: 'stat', path }, options, () => this.metadata.stat(path)));
  }

  /** Moves `from` to `to` (see docs/CLIENT.md for what happens when `to` exists). */
  async rename(from: string, to: string, options: { ifGeneration?: number } & CallOptions = {}): Promise<void> {
    await this.namespace({ syscall: 'rename', path: from, dest: to }, options, () =>
      this.mutate('Rename', { from, to, ...defined({ ifGeneration: options.ifGeneration }) }, options.signal),
    );
  }

  async unlink(path: string, options: { ifGeneration?: number } & CallOptions = {}): Promise<void> {
    await this.namespace({ syscall: 'unlink', path }, options, () => this.mutate('Unlink', { path, ...defined({ ifGeneration: options.ifGeneration }) }, options.signal));
  }

  async rmdir(path: string, options: { ifGeneration?: number } & CallOptions = {}): Promise<void> {
    await this.namespace({ syscall: 'rmdir', path }, options, () => this.mutate('Rmdir', { path, ...defined({ ifGeneration: options.ifGeneration }) }, options.signal));
  }

  /** Removes a file, or a directory with `recursive` (one atomic step); `force` ignores a missing path. */
  async rm(path: string, options: { recursive?: boolean; force?: boolean } & CallOptions = {}): Promise<void> {
    await this.namespace({ syscall: 'rm', path }, options, async () => {
      try {
        const info = await this.metadata.stat(path);
        if (info.type === 'file') await this.mutate('Unlink', { path }, options.signal);
        else if (options.recursive === true) await this.mutate('DeleteRecursive', { path }, options.signal);
        else throw new RfsError('EISDIR', { syscall: 'rm', path }, 'a directory: use { recursive: true }');
      } catch (error) {
        if (options.force === true && (error as { code?: string }).code === 'ENOENT') return;
        throw error;
      }
    });
  }

  /**
   * Sets the permission bits, as Node's `fs.chmod`: `mode` is a number or a string of octal digits; bits above
   * 0o7777 (file type) are ignored, as chmod(2) does. rfs keeps the bits and shows them in `stat`; it checks
   * no permissions. Changes `ctimeMs` and the generation.
   */
  async chmod(path: string, mode: string | number, options: { ifGeneration?: number } & CallOptions = {}): Promise<void> {
    const context = { syscall: 'chmod', path };
    const bits = fileModeBits(mode, context);
    await this.namespace(context, options, () => this.mutate('Setattr', { path, mode: bits, ...defined({ ifGeneration: options.ifGeneration }) }, options.signal));
  }

  /**
   * Sets the modification time, as Node's `fs.utimes`: each time is a Date, a number of seconds since the
   * epoch, or a numeric string of seconds. rfs keeps no access time: `atime` is checked and not stored.
   * Times before the epoch are refused (EINVAL). Stored in whole milliseconds.
   */
  async utimes(path: string, atime: TimeLike, mtime: TimeLike, options: { ifGeneration?: number } & CallOptions = {}): Promise<void> {
    const context = { syscall: 'utime', path };
    timeMs(atime, 'atime', context);
    const mtimeMs = timeMs(mtime, 'mtime', context);
    await this.namespace(context, options, () => this.mutate('Setattr', { path, mtimeMs, ...defined({ ifGeneration: options.ifGeneration }) }, options.signal));
  }

  /**
   * rfs: sets the replication factor. Of a file: the leader copies its sealed chunks to more chunkservers or
   * drops the surplus copies, in the background (`chunkLocations` shows the progress). Of a directory: the
   * factor files created below it from now on inherit. 1 to the cluster's maximum (EINVAL otherwise).
   */
  async setReplication(path: string, replication: number, options: { ifGeneration?: number } & CallOptions = {}): Promise<void> {
    const context = { syscall: 'setreplication', path };
    if (!Number.isSafeInteger(replication) || replication < 1) throw new RfsError('EINVAL', context, `replication ${String(replication)}: give a whole number of copies, at least 1`);
    await this.namespace(context, options, () => this.mutate('Setattr', { path, replication, ...defined({ ifGeneration: options.ifGeneration }) }, options.signal));
  }

  /**
   * As Node's `fs.access`: resolves when `path` exists, fails with ENOENT (or ENOTDIR) when not. rfs checks no
   * permissions, so every `mode` (F_OK, R_OK, W_OK, X_OK) asks only whether the path exists.
   */
  async access(path: string, mode?: number | null, options: CallOptions = {}): Promise<void> {
    const context = { syscall: 'access', path };
    // Absent or null: F_OK, as Node's.
    if (mode !== undefined && mode !== null && (!Number.isInteger(mode) || mode < 0 || mode > 7)) throw new RfsError('EINVAL', context, `mode ${String(mode)}: give F_OK, R_OK, W_OK, X_OK or an OR of them`);
    await this.namespace(context, options, () => this.metadata.stat(path));
  }

  // ------------------------------------------------------------------ whole files

  /**
   * Writes the whole file (replacing it; with flag 'a' or 'ax', appending to it); resolves once every byte is
   * durable and the file complete.
   */
  async writeFile(path: string, data: string | Uint8Array, options: WriteFileOptions = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, options.encoding ?? 'utf8') : data;
    const context = { syscall: 'open', path };
    const writer = await this.openWriter(path, options.flag ?? 'w', options, options.signal);
    await this.transfer(context, options.signal, writer, async () => {
      await writer.write(bytes);
      await writer.close();
    });
  }

  /** Appends to the file (created if missing): new bytes start a new chunk (see docs/CLIENT.md). */
  async appendFile(path: string, data: string | Uint8Array, options: Omit<WriteFileOptions, 'flag'> = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, options.encoding ?? 'utf8') : data;
    const writer = await this.openWriter(path, 'a', options, options.signal);
    await this.transfer({ syscall: 'open', path }, options.signal, writer, async () => {
      await writer.write(bytes);
      await writer.close();
    });
  }

  readFile(path: string, options?: { encoding?: undefined } & CallOptions): Promise<Buffer>;
  readFile(path: string, options: { encoding: BufferEncoding } & CallOptions): Promise<string>;
  async readFile(path: string, options: { encoding?: BufferEncoding | undefined } & CallOptions = {}): Promise<Buffer | string> {
    const bytes = await guard({ syscall: 'open', path }, { signal: options.signal }, () => this.reader.readFile(path));
    return options.encoding === undefined ? bytes : bytes.toString(options.encoding);
  }

  /**
   * A handle: flags 'r' (read), 'w' (create or truncate, then append), 'wx' (exclusive create), 'a'
   * (append; created if missing), 'ax'. rfs files are append-only: see AppendOnlyError.
   */
  async open(path: string, flags: OpenFlags = 'r', options: Omit<WriteFileOptions, 'flag' | 'encoding'> = {}): Promise<RfsFileHandle> {
    const context = { syscall: 'open', path };
    if (flags === 'r') {
      const info = await this.namespace(context, options, () => this.metadata.stat(path));
      if (info.type === 'dir') throw new RfsError('EISDIR', context);
      return RfsFileHandle.forReading(this, path);
    }
    if (flags === 'w' || flags === 'wx' || flags === 'a' || flags === 'ax') {
      const writer = await this.openWriter(path, flags, options, options.signal);
      return RfsFileHandle.forWriting(this, path, writer);
    }
    throw new RfsError('EINVAL', context, `flags '${String(flags)}': rfs files are append-only; use 'r', 'w', 'wx', 'a' or 'ax'`);
  }

  createReadStream(path: string, options: ReadStreamOptions = {}): RfsReadStream {
    return new RfsReadStream(this, path, options);
  }

  createWriteStream(path: string, options: WriteStreamOptions = {}): RfsWriteStream {
    return new RfsWriteStream(this, path, options);
  }

  /**
   * Copies a file, as Node's `fs.copyFile`: the bytes, and the source's mode, replication, chunk size and
   * compression; `dest` is replaced, or with `COPYFILE_EXCL` must not exist (EEXIST). `COPYFILE_FICLONE` copies
   * (rfs has no clones); `COPYFILE_FICLONE_FORCE` fails with ENOTSUP. Streams through the client in
   * `copyPieceBytes` pieces; the destination is complete (durable) when the promise resolves, and on a failure
   * keeps a prefix of the source, as any writer given up does.
   */
  async copyFile(src: string, dest: string, mode = 0, options: CallOptions = {}): Promise<void> {
    const context = { syscall: 'copyfile', path: src, dest };
    if (!Number.isInteger(mode) || mode < 0 || mode > 7) throw new RfsError('EINVAL', context, `mode ${String(mode)}: give 0 or an OR of COPYFILE_EXCL, COPYFILE_FICLONE, COPYFILE_FICLONE_FORCE`);
    if ((mode & fsConstants.COPYFILE_FICLONE_FORCE) !== 0) throw new RfsError('ENOTSUP', context, 'rfs cannot clone a file; copy it without COPYFILE_FICLONE_FORCE');
    const info = await this.namespace(context, options, () => this.metadata.stat(src));
    const exclusive = (mode & fsConstants.COPYFILE_EXCL) !== 0;
    // The destination is judged before the source's type, in Node's (libuv's) order: it opens both, then copies.
    const existing = await this.namespace(context, options, () => this.metadata.stat(dest)).catch(async (error: unknown) => {
      if ((error as { code?: string }).code !== 'ENOENT') throw error;
      await this.namespace(context, options, () => this.metadata.stat(posix.dirname(dest))).then((parent) => {
        if (parent.type !== 'dir') throw new RfsError('ENOTDIR', context);
      });
      return null;
    });
    if (existing !== null && exclusive) throw new RfsError('EEXIST', context);
    if (existing?.type === 'dir') throw new RfsError('EISDIR', context);
    if (info.type === 'dir') throw new RfsError('EISDIR', context);
    // A file copied onto itself: replacing dest would empty the source (Node does nothing then either).
    if (existing?.id === info.id) return;
    const source = RfsFileHandle.forReading(this, src);
    try {
      const flags = exclusive ? 'wx' : 'w';
      const writer = await this.openWriter(dest, flags, { replication: info.replication, chunkSizeBytes: info.chunkSizeBytes, compression: info.compression === 'lz4' ? 'lz4' : 'none', mode: info.mode }, options.signal).catch((error: unknown) => {
        // Node names both paths of a failed copy: the call is copyfile, whichever side failed.
        const e = toRfsError(error, context);
        throw e.syscall === 'copyfile' ? e : new RfsError(e.code, context, e.detail, { cause: e });
      });
      await this.transfer(context, options.signal, writer, async () => {
        const piece = Buffer.allocUnsafe(copyPieceBytes);
        for (;;) {
          const { bytesRead } = await source.read(piece, 0, piece.length, null);
          if (bytesRead === 0) break;
          await writer.write(piece.subarray(0, bytesRead));
        }
        await writer.close();
      });
    } finally {
      await source.close();
    }
  }

  // ------------------------------------------------------------------ rfs extras

  /** Every chunk of the file: handle, version, replicas (id, address), sealed, length, checksum. */
  async chunkLocations(path: string, options: CallOptions = {}): Promise<ChunkLocation[]> {
    return this.namespace({ syscall: 'chunkLocations', path }, options, async () => {
      const out: ChunkLocation[] = [];
      let fromIndex = 0;
      for (;;) {
        const page = await this.metadata.chunkLocations(path, { fromIndex });
        out.push(...page.chunks);
        if (page.nextIndex === null) return out;
        fromIndex = page.nextIndex;
      }
    });
  }

  /** The leader's ClusterStatus (members, term, indexes, chunkserver counts) and every chunkserver. */
  async clusterInfo(options: CallOptions = {}): Promise<ClusterInfo> {
    return this.namespace({ syscall: 'clusterInfo' }, options, async () => {
      // ListChunkservers is a linearizable read: once it answered, `target` is the leader.
      const chunkservers: Record<string, unknown>[] = [];
      let after = 0;
      for (;;) {
        const reply = await this.metadata.call('ListChunkservers', { after });
        const page = (reply['chunkservers'] ?? []) as Record<string, unknown>[];
        chunkservers.push(...page);
        if (reply['hasMore'] !== true || page.length === 0) break;
        after = Number(reply['nextAfter']);
      }
      let status: Record<string, unknown> = await this.metadata.clusterStatus();
      const leaderAddress = status['leaderAddress'];
      if (status['role'] !== 'leader' && typeof leaderAddress === 'string' && leaderAddress !== '')
        status = await this.metadata.clusterStatus(leaderAddress);
      return { status, chunkservers };
    });
  }

  /**
   * Closes the metadata channels and the idle data connections. Calls still running fail; writers not closed
   * leave their files incomplete.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.lifetime.abort();
    this.metadata.close();
    this.data.close?.();
  }

  // ------------------------------------------------------------------ internals (handles and streams use these)

  /** @internal A writer for `path`: 'w'/'wx' create (truncate unless x), 'a'/'ax' append. */
  async openWriter(path: string, flags: 'w' | 'wx' | 'a' | 'ax', options: Omit<WriteFileOptions, 'flag' | 'encoding'>, signal: AbortSignal | undefined): Promise<FileWriter> {
    const context = { syscall: 'open', path };
    if (this.closed) throw new RfsError('EBADF', context, 'the client is closed');
    // Callers in plain JavaScript (or with a cast) may pass anything: an unknown flag must not truncate.
    if (!writeFlags.includes(flags))
      throw new RfsError('EINVAL', context, `flags '${String(flags)}': rfs files are append-only; use 'w', 'wx', 'a' or 'ax'`);
    // Checked before anything is created or truncated.
    if (signal?.aborted === true) throw new AbortError(context, { cause: signal.reason });
    if (options.mode !== undefined) fileModeBits(options.mode, context);
    const holder = `${this.holderPrefix}:${++holderCount}`;
    const metadata = this.writerMetadata(flags, options);
    const opening = FileWriter.open(path, {
      metadata,
      data: this.data,
      holder,
      spares: this.spares,
      exclusive: flags === 'wx' || flags === 'ax',
      ...defined({ leaseDurationMs: this.options.leaseDurationMs, stagingBytes: this.options.stagingBytes }),
    });
    try {
      return await guard(context, { signal }, () => opening);
    } catch (error) {
      // Aborted while opening: wait for the open to settle and give the lease back, so that once this call
      // rejects the file is free for the next writer.
      await opening.then((w) => w.abort(), () => undefined);
      throw error;
    }
  }

  /** @internal Runs a transfer on `writer`; on any failure or abort the writer is aborted. */
  async transfer(context: ErrorContext, signal: AbortSignal | undefined, writer: FileWriter, fn: () => Promise<void>): Promise<void> {
    try {
      await guard(context, { signal }, fn);
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  /** A namespace call: timeout, signal, errors mapped. */
  private namespace<T>(context: ErrorContext, options: CallOptions, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new RfsError('EBADF', context, 'the client is closed'));
    return guard(context, { signal: options.signal, timeoutMs: this.timeoutMs }, fn);
  }

  private mutate(method: Parameters<MetadataClient['mutate']>[0], request: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
    return this.limiter.run(() => this.metadata.mutate(method, request), signal);
  }

  /** The writer's metadata operations, mutations through the limiter, file creation as `flags` say. */
  private writerMetadata(flags: 'w' | 'wx' | 'a' | 'ax', options: Omit<WriteFileOptions, 'flag' | 'encoding'>): WriterMetadata {
    const m = this.metadata;
    const limit = <T>(fn: () => Promise<T>): Promise<T> => this.limiter.run(fn);
    const { replication, chunkSizeBytes, ifGeneration, compression } = options;
    const mode = options.mode === undefined ? undefined : fileModeBits(options.mode, { syscall: 'open' });
    type Lease = { holder: string; durationMs: number };
    const leaseGuard = defined({ ifGeneration: flags === 'a' || flags === 'ax' ? ifGeneration : undefined });
    // A new file and its lease, one command (connect.ts, createForWriter).
    const create = async (path: string, exclusive: boolean, lease: Lease): Promise<CreatedForWriter> => {
      const attrs = { exclusive, ...defined({ replication, chunkSizeBytes, ifGeneration, compression, mode }) };
      try {
        return await limit(() => createForWriter(m, path, attrs, lease));
      } catch (error) {
        // O_CREAT|O_EXCL fails with EEXIST for any existing path; the state machine says EISDIR for a directory.
        if (exclusive && (error as { code?: string }).code === 'EISDIR') throw new RfsError('EEXIST', { syscall: 'open', path }, 'exists and is a directory');
        throw error;
      }
    };
    // Append to an existing file: the lease answers its chunk count, size and compression in one command (an
    // older leader: a stat after). A directory is EISDIR, a missing file ENOENT.
    const existing = async (path: string, lease: Lease): Promise<CreatedForWriter> => {
      const granted = await limit(() => m.acquireLease(path, { holder: lease.holder, durationMs: lease.durationMs, ...leaseGuard }));
      const held = { expiresMs: granted.expiresMs, chunkCount: granted.chunkCount };
      if (granted.chunkSizeBytes !== undefined) return { chunkSizeBytes: granted.chunkSizeBytes, ...defined({ compression: granted.compression }), lease: held };
      const info = await m.stat(path);
      return { chunkSizeBytes: info.chunkSizeBytes, ...defined({ compression: info.compression }), lease: held };
    };
    return {
      async createFile(path, { exclusive, lease }) {
        // 'w', 'wx', and 'ax' (a new file only: EEXIST for any existing path, as 'wx').
        if (flags !== 'a') return create(path, exclusive, lease);
        // 'a': an existing file keeps its chunks; the writer adds new ones after them.
        try {
          return await existing(path, lease);
        } catch (error) {
          if ((error as { code?: string }).code !== 'ENOENT') throw error;
        }
        try {
          return await create(path, true, lease);
        } catch (error) {
          // 'a' on a missing file races with another creator: it exists now, so append to it (as O_APPEND|O_CREAT).
          if ((error as { code?: string }).code !== 'EEXIST') throw error;
          return existing(path, lease);
        }
      },
      acquireLease: (path, holder, durationMs) => limit(() => m.acquireLease(path, { holder, durationMs, ...leaseGuard })),
      renewLease: (path, holder, durationMs) => limit(() => m.renewLease(path, { holder, durationMs })),
      releaseLease: (path, holder) => limit(() => m.releaseLease(path, { holder })),
      allocateChunk: (path, holder, index) => limit(() => m.allocateChunk(path, { holder, index })),
      bumpChunkVersion: (handle, holder, version, survivors) => limit(() => m.bumpChunkVersion(handle, { holder, version, survivors })),
      sealChunk: async (handle, holder, version, lengthBytes, checksum) => {
        await limit(() => m.sealChunk(handle, { holder, version, lengthBytes, checksum }));
      },
      completeFile: (path, holder, chunkCount, lastChunk) => limit(() => m.completeFile(path, { holder, chunkCount, ...defined({ lastChunk }) })),
    };
  }
}

/**
 * Runs `fn` for the caller: rejects with AbortError when `signal` fires and with TimeoutError after
 * `timeoutMs` (the work itself goes on in the background, bounded by the metadata client's own deadline),
 * and maps every other failure with toRfsError.
 * @internal
 */
export function guard<T>(context: ErrorContext, options: { signal?: AbortSignal | undefined; timeoutMs?: number }, fn: () => Promise<T>): Promise<T> {
  const { signal, timeoutMs } = options;
  if (signal?.aborted === true) return Promise.reject(new AbortError(context, { cause: signal.reason }));
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      cleanup();
      reject(new AbortError(context, { cause: signal?.reason }));
    };
    const cleanup = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined)
      timer = setTimeout(() => {
        cleanup();
        reject(new TimeoutError(context, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
    fn().then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (error: unknown) => {
        cleanup();
        reject(toRfsError(error, context));
      },
    );
  });
}

/** `o` without its undefined fields (exactOptionalPropertyTypes). */
function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** A time as Node's fs.utimes takes it: a Date, seconds since the epoch, or a numeric string of seconds. */
export type TimeLike = Date | number | string;

/** Milliseconds since the epoch of `time` (see TimeLike); EINVAL for anything else or a time before the epoch. */
function timeMs(time: TimeLike, name: string, context: ErrorContext): number {
  let seconds: number;
  if (time instanceof Date) seconds = time.getTime() / 1000;
  else if (typeof time === 'number') seconds = time;
  else if (typeof time === 'string' && time.trim() !== '' && Number.isFinite(Number(time))) seconds = Number(time);
  else throw new RfsError('EINVAL', context, `${name}: give a Date, seconds since the epoch, or a numeric string (got ${JSON.stringify(String(time))})`);
  const ms = Math.round(seconds * 1000);
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RfsError('EINVAL', context, `${name}: ${String(time)} is not a time rfs can keep (from the epoch on)`);
  return ms;
}

/** Permission bits of a mode as Node's fs.chmod takes it (a number, or a string of octal digits); chmod(2) keeps 0o7777 of them. */
function fileModeBits(mode: string | number, context: ErrorContext): number {
  const value = typeof mode === 'string' && /^[0-7]+$/.test(mode) ? Number.parseInt(mode, 8) : mode;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff_ffff)
    throw new RfsError('EINVAL', context, `mode ${JSON.stringify(String(mode))}: give a number or a string of octal digits`);
  return value & 0o7777;
}
