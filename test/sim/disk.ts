/**
 * The simulator's disk: an in-memory, deterministic `Disk` (src/chunkserver/disk.ts) with the faults real
 * disks have. Randomness comes only from the injected PRNG stream, so one seed replays a run.
 *
 * Model (ext4 without auto_da_alloc guarantees, made explicit):
 * - A file (inode) has a durable image and a log of writes and truncates since its last `sync()`.
 *   `crash()` applies a random prefix of that log to the durable image, the last applied write possibly
 *   torn (only a random prefix of its bytes kept); everything later is lost.
 * - A directory has durable names and a log of creates, renames and unlinks since its last
 *   `syncDirectory()`; `crash()` keeps a random prefix of that log. A file no durable name reaches is gone.
 * - `flipBit` corrupts the medium: the current and the durable image both change.
 * - Capacity: a write past `capacityBytes` (total of file sizes) writes what fits and fails DISK_FULL.
 * - Injected I/O errors: `failNext(count)`, `failPath(path)` (a bad spot: every matching operation on that
 *   file fails until `healPath` or the file is unlinked) and `ioErrorProbability` (restricted to `ioErrorKinds` when set) make
 *   operations fail IO_ERROR ("EIO" in the message).
 * - A failed fsync loses the file's unsynced writes (Linux marks the dirty pages clean after a writeback
 *   error, so a later fsync would succeed without them): the file reverts to its durable image at once, so a
 *   store that trusted a later fsync would serve or keep bytes no disk holds.
 * After `crash()` every handle opened before it fails: the process that held them is gone.
 */
import { ChunkStoreError } from '../../src/chunkserver/types.ts';
import type { Disk, DiskFile, DiskSpace } from '../../src/chunkserver/disk.ts';
import type { Prng } from './prng.ts';

type FileOp = { kind: 'write'; position: number; data: Uint8Array } | { kind: 'truncate'; lengthBytes: number };
type DirOp = { kind: 'link'; name: string; inode: number } | { kind: 'unlink'; name: string } | { kind: 'rename'; from: string; to: string };

class Inode {
  /** Current contents: bytes[0, size). */
  bytes = new Uint8Array(0);
  size = 0;
  durable = new Uint8Array(0);
  pending: FileOp[] = [];

  current(): Uint8Array {
    return this.bytes.subarray(0, this.size);
  }

  apply(op: FileOp): void {
    if (op.kind === 'truncate') {
      if (op.lengthBytes < this.size) this.bytes.fill(0, op.lengthBytes, this.size);
      this.resize(op.lengthBytes);
      return;
    }
    const end = op.position + op.data.length;
    if (end > this.size) this.resize(end);
    this.bytes.set(op.data, op.position);
  }

  private resize(size: number): void {
    if (size > this.bytes.length) {
      const grown = new Uint8Array(Math.max(size, this.bytes.length * 2, 4096));
      grown.set(this.bytes.subarray(0, this.size));
      this.bytes = grown;
    }
    this.size = size;
  }
}

interface Directory {
  names: Map<string, number>;
  durable: Map<string, number>;
  pending: DirOp[];
}

export interface SimDiskOptions {
  readonly capacityBytes?: number;
  /** Chance that a crash tears the first lost write of a file (keeps a prefix of it). */
  readonly tornWriteProbability?: number;
}

export interface CrashReport {
  /** Files whose unsynced tail was lost or torn. */
  readonly filesRolledBack: number;
  readonly tornWrites: number;
  readonly directoryOpsLost: number;
}

export type SimDiskOpKind = 'open' | 'read' | 'write' | 'truncate' | 'sync' | 'rename' | 'unlink' | 'list' | 'syncDirectory';

function split(path: string): { dir: string; name: string } {
  const slash = path.lastIndexOf('/');
  if (slash <= 0) throw new ChunkStoreError('IO_ERROR', `bad path ${path}`);
  return { dir: path.slice(0, slash), name: path.slice(slash + 1) };
}

export class SimDisk implements Disk {
  capacityBytes: number;
  /** Per operation chance of an injected IO_ERROR. */
  ioErrorProbability = 0;
  /** The kinds `ioErrorProbability` applies to (all when undefined). */
  ioErrorKinds: readonly SimDiskOpKind[] | undefined = undefined;
  /** Injected I/O errors so far, and fsync failures that lost unsynced writes. */
  ioErrorsInjected = 0;
  writebacksLost = 0;
  /** Bad spots: path → the kinds that fail there (all when undefined). */
  private readonly badPaths = new Map<string, readonly SimDiskOpKind[] | undefined>();
  private readonly tornWriteProbability: number;
  private readonly inodes = new Map<number, Inode>();
  private readonly directories = new Map<string, Directory>();
  private nextInode = 1;
  /** Handles carry the epoch they were opened in; a crash starts a new one. */
  private epoch = 0;
  private failures: { count: number; kinds: readonly SimDiskOpKind[] | undefined; skip: number } = { count: 0, kinds: undefined, skip: 0 };
  /** Mutating operations left before a crash happens instead of the next one; -1 when none is armed. */
  private crashCountdown = -1;
  crashes = 0;
  /** Handles open now (a crash closes them all). */
  openFiles = 0;

  constructor(
    private readonly prng: Prng,
    options: SimDiskOptions = {},
  ) {
    this.capacityBytes = options.capacityBytes ?? Number.MAX_SAFE_INTEGER;
    this.tornWriteProbability = options.tornWriteProbability ?? 0.5;
  }

  // ---- fault switches ----

  /** The next `count` operations (of `kinds`, or any) fail with IO_ERROR, after `skip` of them succeed. */
  failNext(count: number, kinds?: readonly SimDiskOpKind[], skip = 0): void {
    this.failures = { count, kinds, skip };
  }

  /** Every later operation of `kinds` (or any) on `path` fails IO_ERROR until `healPath` (a bad sector). */
  failPath(path: string, kinds?: readonly SimDiskOpKind[]): void {
    this.badPaths.set(path, kinds);
  }

  healPath(path: string): void {
    this.badPaths.delete(path);
  }

  /** Arms a crash in place of the `n`-th next mutating operation (write, truncate, sync, rename, unlink, create). */
  crashBeforeMutation(n: number): void {
    this.crashCountdown = n;
  }

  /** Loses every unsynced write and directory change (some torn), as a power cut would. */
  crash(): CrashReport {
    this.crashes++;
    this.epoch++;
    this.openFiles = 0;
    this.crashCountdown = -1;
    let filesRolledBack = 0;
    let tornWrites = 0;
    let directoryOpsLost = 0;
    for (const inode of this.inodes.values()) {
      if (inode.pending.length === 0) continue;
      const ops = inode.pending;
      const kept = this.prng.int(ops.length + 1);
      const rebuilt = new Inode();
      rebuilt.apply({ kind: 'write', position: 0, data: inode.durable });
      for (const op of ops.slice(0, kept)) rebuilt.apply(op);
      const next = ops[kept];
      if (next?.kind === 'write' && next.data.length > 1 && this.prng.chance(this.tornWriteProbability)) {
        rebuilt.apply({ ...next, data: next.data.subarray(0, this.prng.int(next.data.length)) });
        tornWrites++;
      }
      if (kept < ops.length) filesRolledBack++;
      inode.bytes = rebuilt.bytes;
      inode.size = rebuilt.size;
      inode.durable = rebuilt.current().slice();
      inode.pending = [];
    }
    const live = new Set<number>();
    for (const directory of this.directories.values()) {
      const kept = this.prng.int(directory.pending.length + 1);
      directoryOpsLost += directory.pending.length - kept;
      for (const op of directory.pending.slice(0, kept)) applyDirOp(directory.durable, op);
      directory.pending = [];
      directory.names = new Map(directory.durable);
      for (const inode of directory.names.values()) live.add(inode);
    }
    for (const id of [...this.inodes.keys()]) if (!live.has(id)) this.inodes.delete(id);
    return { filesRolledBack, tornWrites, directoryOpsLost };
  }

  /** Flips one bit of a stored file, on the medium (survives crashes). */
  flipBit(path: string, byteOffset: number, bit = 0): void {
    const inode = this.inodeAt(path);
    if (inode === undefined || byteOffset >= inode.size) throw new RangeError(`flipBit: ${path} has no byte ${byteOffset}`);
    const mask = 1 << bit;
    inode.bytes[byteOffset] = (inode.bytes[byteOffset] as number) ^ mask;
    if (byteOffset < inode.durable.length) inode.durable[byteOffset] = (inode.durable[byteOffset] as number) ^ mask;
  }

  /** Flips a random bit of a random non-empty file whose name passes `filter`; returns where, or undefined. */
  flipRandomBit(filter: (path: string) => boolean = () => true): { path: string; byteOffset: number } | undefined {
    const candidates = this.paths().filter((p) => filter(p) && (this.inodeAt(p)?.size ?? 0) > 0);
    if (candidates.length === 0) return undefined;
    const path = this.prng.pick(candidates);
    const byteOffset = this.prng.int(this.inodeAt(path)?.size ?? 1);
    this.flipBit(path, byteOffset, this.prng.int(8));
    return { path, byteOffset };
  }

  /** Every current file path, sorted. */
  paths(): string[] {
    const out: string[] = [];
    for (const [dir, directory] of this.directories) for (const name of directory.names.keys()) out.push(`${dir}/${name}`);
    return out.sort();
  }

  /** A copy of a file's current bytes (for tests), or undefined. */
  contents(path: string): Uint8Array | undefined {
    return this.inodeAt(path)?.current().slice();
  }

  usedBytes(): number {
    let used = 0;
    const counted = new Set<number>();
    for (const directory of this.directories.values()) {
      for (const id of directory.names.values()) {
        if (counted.has(id)) continue;
        counted.add(id);
        used += this.inodes.get(id)?.size ?? 0;
      }
    }
    return used;
  }

  // ---- Disk ----

  async open(path: string, options: { readonly create: boolean }): Promise<DiskFile> {
    await Promise.resolve();
    const { dir, name } = split(path);
    const directory = this.directory(dir, `open ${path}`);
    let id = directory.names.get(name);
    if (id === undefined) {
      if (!options.create) throw new ChunkStoreError('IO_ERROR', `open ${path}: ENOENT: no such file`);
      this.beforeMutation('open', path);
      id = this.nextInode++;
      this.inodes.set(id, new Inode());
      directory.names.set(name, id);
      directory.pending.push({ kind: 'link', name, inode: id });
    } else {
      this.maybeFail('open', path);
    }
    this.openFiles++;
    return new SimFile(this, id, path, this.epoch);
  }

  async rename(from: string, to: string): Promise<void> {
    await Promise.resolve();
    const a = split(from);
    const b = split(to);
    if (a.dir !== b.dir) throw new ChunkStoreError('IO_ERROR', `rename ${from} -> ${to}: SimDisk renames within one directory only`);
    const directory = this.directory(a.dir, `rename ${from}`);
    const id = directory.names.get(a.name);
    if (id === undefined) throw new ChunkStoreError('IO_ERROR', `rename ${from}: ENOENT: no such file`);
    this.beforeMutation('rename', from);
    applyDirOp(directory.names, { kind: 'rename', from: a.name, to: b.name });
    directory.pending.push({ kind: 'rename', from: a.name, to: b.name });
  }

  async unlink(path: string): Promise<void> {
    await Promise.resolve();
    const { dir, name } = split(path);
    const directory = this.directory(dir, `unlink ${path}`);
    if (!directory.names.has(name)) throw new ChunkStoreError('IO_ERROR', `unlink ${path}: ENOENT: no such file`);
    this.beforeMutation('unlink', path);
    this.badPaths.delete(path); // the bad spot went with the file's blocks
    directory.names.delete(name);
    directory.pending.push({ kind: 'unlink', name });
  }

  async list(dir: string): Promise<string[]> {
    await Promise.resolve();
    this.maybeFail('list', dir);
    return [...this.directory(dir, `readdir ${dir}`).names.keys()].sort();
  }

  async makeDirectory(dir: string): Promise<void> {
    await Promise.resolve();
    // Directories themselves are created durably at once (the store uses one, made at start).
    if (!this.directories.has(dir)) this.directories.set(dir, { names: new Map(), durable: new Map(), pending: [] });
  }

  async syncDirectory(dir: string): Promise<void> {
    await Promise.resolve();
    const directory = this.directory(dir, `fsync directory ${dir}`);
    this.beforeMutation('syncDirectory', dir);
    directory.durable = new Map(directory.names);
    directory.pending = [];
  }

  async space(_dir: string): Promise<DiskSpace> {
    await Promise.resolve();
    return { capacityBytes: this.capacityBytes, freeBytes: Math.max(0, this.capacityBytes - this.usedBytes()) };
  }

  // ---- used by SimFile ----

  /** Checks the handle is from this incarnation and applies fault injection; returns the inode. */
  live(id: number, epoch: number, kind: SimDiskOpKind, path: string): Inode {
    if (epoch !== this.epoch) throw new ChunkStoreError('IO_ERROR', `${kind} ${path}: the disk crashed since this file was opened`);
    if (kind === 'read') this.maybeFail(kind, path);
    else {
      try {
        this.beforeMutation(kind, path);
      } catch (error) {
        // A failed fsync (not a crash, which started a new epoch): the unsynced writes are gone.
        const inode = this.inodes.get(id);
        if (kind === 'sync' && epoch === this.epoch && inode !== undefined) this.loseWriteback(inode);
        throw error;
      }
    }
    const inode = this.inodes.get(id);
    if (inode === undefined) throw new ChunkStoreError('IO_ERROR', `${kind} ${path}: file is gone`);
    return inode;
  }

  closed(epoch: number): void {
    if (epoch === this.epoch) this.openFiles--;
  }

  freeBytes(): number {
    return Math.max(0, this.capacityBytes - this.usedBytes());
  }

  private loseWriteback(inode: Inode): void {
    if (inode.pending.length === 0) return;
    const durable = inode.durable;
    inode.bytes = new Uint8Array(Math.max(durable.length, 4096));
    inode.bytes.set(durable);
    inode.size = durable.length;
    inode.pending = [];
    this.writebacksLost++;
  }

  private beforeMutation(kind: SimDiskOpKind, path: string): void {
    if (this.crashCountdown >= 0) {
      if (this.crashCountdown === 0) {
        this.crash();
        throw new ChunkStoreError('IO_ERROR', `${kind} ${path}: the disk crashed`);
      }
      this.crashCountdown--;
    }
    this.maybeFail(kind, path);
  }

  private maybeFail(kind: SimDiskOpKind, path: string): void {
    if (this.badPaths.has(path)) {
      const kinds = this.badPaths.get(path);
      if (kinds === undefined || kinds.includes(kind)) {
        this.ioErrorsInjected++;
        throw new ChunkStoreError('IO_ERROR', `${kind} ${path}: EIO: input/output error (bad spot)`);
      }
    }
    const failures = this.failures;
    if (failures.count > 0 && (failures.kinds === undefined || failures.kinds.includes(kind))) {
      if (failures.skip > 0) {
        failures.skip--;
        return;
      }
      failures.count--;
      this.ioErrorsInjected++;
      throw new ChunkStoreError('IO_ERROR', `${kind} ${path}: EIO: injected I/O error`);
    }
    if (this.ioErrorProbability > 0 && (this.ioErrorKinds === undefined || this.ioErrorKinds.includes(kind)) && this.prng.chance(this.ioErrorProbability)) {
      this.ioErrorsInjected++;
      throw new ChunkStoreError('IO_ERROR', `${kind} ${path}: EIO: injected I/O error`);
    }
  }

  private directory(dir: string, what: string): Directory {
    const directory = this.directories.get(dir);
    if (directory === undefined) throw new ChunkStoreError('IO_ERROR', `${what}: ENOENT: no such directory`);
    return directory;
  }

  private inodeAt(path: string): Inode | undefined {
    const { dir, name } = split(path);
    const id = this.directories.get(dir)?.names.get(name);
    return id === undefined ? undefined : this.inodes.get(id);
  }
}

function applyDirOp(names: Map<string, number>, op: DirOp): void {
  if (op.kind === 'link') names.set(op.name, op.inode);
  else if (op.kind === 'unlink') names.delete(op.name);
  else {
    const id = names.get(op.from);
    if (id === undefined) return;
    names.set(op.to, id);
    names.delete(op.from);
  }
}

class SimFile implements DiskFile {
  private closed = false;

  constructor(
    private readonly disk: SimDisk,
    private readonly id: number,
    private readonly path: string,
    private readonly epoch: number,
  ) {}

  async read(into: Uint8Array, position: number): Promise<number> {
    await Promise.resolve();
    const inode = this.inode('read');
    const source = inode.current();
    if (position >= source.length) return 0;
    const n = Math.min(into.length, source.length - position);
    into.set(source.subarray(position, position + n));
    return n;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    await Promise.resolve();
    const inode = this.inode('write');
    const growthBytes = Math.max(0, position + data.length - inode.size);
    const free = this.disk.freeBytes();
    const fits = growthBytes <= free ? data.length : Math.max(0, data.length - (growthBytes - free));
    if (fits > 0) {
      const op: FileOp = { kind: 'write', position, data: data.slice(0, fits) };
      inode.apply(op);
      inode.pending.push(op);
    }
    if (fits < data.length) throw new ChunkStoreError('DISK_FULL', `write ${this.path}: ENOSPC: no space left on device`);
  }

  /** Each piece as its own write (a crash may keep any subset of them, as for separate writes). */
  async writev(pieces: readonly Uint8Array[], position: number): Promise<void> {
    for (const piece of pieces) {
      await this.write(piece, position);
      position += piece.length;
    }
  }

  async truncate(lengthBytes: number): Promise<void> {
    await Promise.resolve();
    const inode = this.inode('truncate');
    if (lengthBytes > inode.size && lengthBytes - inode.size > this.disk.freeBytes()) {
      throw new ChunkStoreError('DISK_FULL', `truncate ${this.path}: ENOSPC: no space left on device`);
    }
    const op: FileOp = { kind: 'truncate', lengthBytes };
    inode.apply(op);
    inode.pending.push(op);
  }

  async sync(): Promise<void> {
    await Promise.resolve();
    const inode = this.inode('sync');
    inode.durable = inode.current().slice();
    inode.pending = [];
  }

  async sizeBytes(): Promise<number> {
    await Promise.resolve();
    return this.inode('read').size;
  }

  async close(): Promise<void> {
    await Promise.resolve();
    if (this.closed) throw new ChunkStoreError('IO_ERROR', `close ${this.path}: already closed`);
    this.closed = true;
    this.disk.closed(this.epoch);
  }

  private inode(kind: SimDiskOpKind): Inode {
    if (this.closed) throw new ChunkStoreError('IO_ERROR', `${kind} ${this.path}: file closed`);
    return this.disk.live(this.id, this.epoch, kind, this.path);
  }
}
