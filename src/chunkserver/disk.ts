/**
 * The file operations the replica store needs, and nothing else, so the simulator can put its own disk
 * underneath (test/sim/disk.ts) and the store never touches node:fs directly.
 *
 * Every failure is a `ChunkStoreError`: ENOSPC (and EDQUOT) is DISK_FULL, anything else IO_ERROR with the
 * OS message. Paths are plain strings joined with '/'.
 *
 * Durability model the store must assume (ext4 without auto_da_alloc, and the simulator enforces it):
 * a file's bytes are durable only after `DiskFile.sync()`; a create, rename or unlink is durable only after
 * `syncDirectory()` of the directory holding the name.
 *
 * Direct writes (NodeDisk): the 4 KiB-aligned middle of a large write goes to the device with O_DIRECT,
 * bypassing the page cache: straight from the caller's memory when that is page-aligned memory of aligned.ts
 * (the data plane receives packets into such buffers), else through an aligned staging buffer; the unaligned head and tail go through the page cache
 * as before. Why: on the benchmark VM a buffered write's copy into freshly allocated page-cache pages was the
 * largest single cost of the data path (35 % of all CPU while writing; `bench:data`), and an O_DIRECT write of
 * the same bytes costs about a tenth of the CPU. Nothing changes for the store: reads go through the page cache
 * (the kernel drops cached pages a direct write overlaps, and writes back dirty ones first), `sync()` is an
 * fsync of the same inode, and the durability model above still holds (a direct write may be durable earlier,
 * never later). Where O_DIRECT is refused (a file system without it, a misaligned buffer) the disk switches
 * direct writes off for good, says why once (`onDirectUnavailable`) and writes through the page cache.
 */
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, rename, statfs, unlink } from 'node:fs/promises';
import { allocateAligned, isPageAligned } from './aligned.ts';
import { ChunkStoreError } from './types.ts';

export interface DiskFile {
  /** Reads up to `length` bytes at `position` into `into[0..)`; returns how many were read (fewer at the end). */
  read(into: Uint8Array, position: number): Promise<number>;
  /** Writes all of `data` at `position`. On DISK_FULL a prefix may have been written. */
  write(data: Uint8Array, position: number): Promise<void>;
  /**
   * Writes `pieces` one after the other from `position`: the same bytes and durability as `write` of each
   * in turn (on DISK_FULL a prefix may have been written), in one call where the disk can (NodeDisk: one
   * O_DIRECT pwritev of page-aligned pieces).
   */
  writev(pieces: readonly Uint8Array[], position: number): Promise<void>;
  truncate(lengthBytes: number): Promise<void>;
  /** Makes the file's bytes and size durable (fsync). */
  sync(): Promise<void>;
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

export interface DiskSpace {
  readonly capacityBytes: number;
  readonly freeBytes: number;
}

export interface Disk {
  /** `create`: makes the file if missing (never truncates). Otherwise the file must exist. */
  open(path: string, options: { readonly create: boolean }): Promise<DiskFile>;
  /** Atomically replaces `to` with `from` (same directory). */
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Names (not paths) in `dir`. */
  list(dir: string): Promise<string[]>;
  /** Creates `dir` (and its parents) if missing, durably. */
  makeDirectory(dir: string): Promise<void>;
  /** Makes creates, renames and unlinks of names in `dir` durable. */
  syncDirectory(dir: string): Promise<void>;
  space(dir: string): Promise<DiskSpace>;
}

/** Maps a thrown OS error to the store's codes. */
export function diskError(error: unknown, what: string): ChunkStoreError {
  if (error instanceof ChunkStoreError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') return new ChunkStoreError('DISK_FULL', `${what}: ${message}`);
  return new ChunkStoreError('IO_ERROR', `${what}: ${message}`);
}

async function mapped<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw diskError(error, what);
  }
}

/** Writes whose 4 KiB-aligned middle is at least this long write that middle with O_DIRECT (NodeDisk). */
export const directWriteBytesMin = 64 * 1024;
/** Alignment of direct writes' file offsets, lengths and memory: a page, enough for logical blocks up to 4 KiB. */
export const directAlignBytes = 4096;
/** Bytes of one aligned staging buffer: a longer direct write goes in pieces of this size. */
export const directStagingBytes = 1024 * 1024;
/** Staging buffers per NodeDisk at most (allocated on first use); a write that finds none free is buffered. */
export const directStagingBuffersMax = 16;

export interface NodeDiskOptions {
  /** Write large aligned ranges with O_DIRECT (see the top of this file); default true. */
  readonly directWrites?: boolean;
  /** Called once when direct writes are switched off because the file system or memory refused them. */
  readonly onDirectUnavailable?: (reason: string) => void;
}

export interface NodeDiskStats {
  /** Bytes written with O_DIRECT. */
  directBytes: number;
  /** Of directBytes, those written straight from the caller's page-aligned memory (no staging copy). */
  directInPlaceBytes: number;
  /** Writes of several pieces done as one O_DIRECT pwritev (appends the pipeline batched). */
  directWritevCalls: number;
  /** Bytes written through the page cache. */
  cachedBytes: number;
  /** Why direct writes are off (undefined while on, or when turned off by the options). */
  directUnavailable: string | undefined;
}

/**
 * Page-aligned buffers for direct writes, carved out of one WebAssembly.Memory (whose backing store the engine
 * maps page-aligned; Node buffers carry no alignment guarantee). Taken and given back around one write.
 */
class AlignedStaging {
  private memory: Buffer | undefined;
  private readonly free: Buffer[] = [];

  take(): Buffer | undefined {
    if (this.memory === undefined) {
      this.memory = allocateAligned(directStagingBuffersMax * directStagingBytes);
      for (let i = 0; i < directStagingBuffersMax; i++) this.free.push(this.memory.subarray(i * directStagingBytes, (i + 1) * directStagingBytes));
    }
    return this.free.pop();
  }

  give(buffer: Buffer): void {
    this.free.push(buffer);
  }
}

const alignDown = (n: number): number => n - (n % directAlignBytes);
const alignUp = (n: number): number => alignDown(n + directAlignBytes - 1);

class NodeDiskFile implements DiskFile {
  /** The same file opened with O_DIRECT, on first use (null: it could not be opened). */
  private direct: Promise<FileHandle | null> | undefined;

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly disk: NodeDisk,
  ) {}

  async read(into: Uint8Array, position: number): Promise<number> {
    return mapped(`read ${this.path}`, async () => {
      // A pread may return short before the end of file; loop until full or EOF.
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await this.handle.read(into, done, into.length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    });
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    const start = alignUp(position);
    const end = alignDown(position + data.length);
    if (!this.disk.directOn || end - start < directWriteBytesMin) return this.writeCached(data, position);
    // Head through the page cache, the aligned middle direct (in staging-sized pieces), the tail cached.
    // Appends keep this order, so a direct write never covers a page an earlier cached write left partial.
    let done = start - position;
    if (done > 0) await this.writeCached(data.subarray(0, done), position);
    while (position + done < end) {
      // Page-aligned memory goes down whole, as it is; other memory through staging, a buffer at a time.
      const inPlace = isPageAligned(data.subarray(done));
      const length = inPlace ? end - position - done : Math.min(directStagingBytes, end - position - done);
      const written = await this.writeDirect(data.subarray(done, done + length), position + done, inPlace);
      done += written;
      if (written < length) break; // direct writes unavailable (or a short write): the rest is cached
    }
    if (done < data.length) await this.writeCached(data.subarray(done), position + done);
  }

  async writev(pieces: readonly Uint8Array[], position: number): Promise<void> {
    let total = 0;
    let direct = this.disk.directOn && position % directAlignBytes === 0;
    for (const piece of pieces) {
      total += piece.length;
      // Whole pages of page-aligned memory (aligned.ts): O_DIRECT straight from it, all pieces at once.
      direct &&= piece.length % directAlignBytes === 0 && isPageAligned(piece);
    }
    let written = 0;
    if (direct && pieces.length > 1 && total >= directWriteBytesMin) written = await this.writevDirect(pieces, position);
    // What one pwritev did not write (none of it, or after a short write), piece by piece.
    let at = 0;
    for (const piece of pieces) {
      const end = at + piece.length;
      if (end > written) await this.write(written > at ? piece.subarray(written - at) : piece, position + Math.max(at, written));
      at = end;
    }
  }

  /** One O_DIRECT pwritev of whole pages of page-aligned memory; the bytes written (whole pages), 0 if refused. */
  private async writevDirect(pieces: readonly Uint8Array[], position: number): Promise<number> {
    const direct = await this.directHandle();
    if (direct === null || !this.disk.directOn) return 0;
    try {
      const { bytesWritten } = await direct.writev(pieces as Uint8Array[], position);
      const written = bytesWritten - (bytesWritten % directAlignBytes);
      this.disk.stats.directBytes += written;
      this.disk.stats.directInPlaceBytes += written;
      this.disk.stats.directWritevCalls += 1;
      return written;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw diskError(error, `write ${this.path}`);
      this.disk.directUnavailable(`O_DIRECT write: ${(error as Error).message}`);
      return 0;
    }
  }

  private async writeCached(data: Uint8Array, position: number): Promise<void> {
    await mapped(`write ${this.path}`, async () => {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    });
    this.disk.stats.cachedBytes += data.length;
  }

  /**
   * Writes `data` (aligned offset and length) with O_DIRECT, from `data` itself when `inPlace` (page-aligned
   * memory) else through a staging buffer; returns the bytes written, 0 if it could not.
   */
  private async writeDirect(data: Uint8Array, position: number, inPlace: boolean): Promise<number> {
    const direct = await this.directHandle();
    if (direct === null || !this.disk.directOn) return 0;
    if (inPlace) {
      const written = await this.directWrite(direct, data, position);
      this.disk.stats.directInPlaceBytes += written;
      return written;
    }
    const staging = this.disk.staging.take();
    if (staging === undefined) return 0;
    try {
      staging.set(data);
      return await this.directWrite(direct, staging.subarray(0, data.length), position);
    } finally {
      this.disk.staging.give(staging);
    }
  }

  /** The same file opened with O_DIRECT (opened on first use), or null when it cannot be. */
  private directHandle(): Promise<FileHandle | null> {
    this.direct ??= open(this.path, constants.O_WRONLY | constants.O_DIRECT).catch((error: unknown) => {
      // EINVAL: this file system has no O_DIRECT, so no file of this disk will. Anything else (the file gone,
      // out of descriptors) is this file's: it writes through the page cache, where a real fault is reported.
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') this.disk.directUnavailable(`open with O_DIRECT: ${(error as Error).message}`);
      return null;
    });
    return this.direct;
  }

  /** One O_DIRECT pwrite of aligned `memory`; the bytes written (whole pages), 0 if O_DIRECT refused it. */
  private async directWrite(direct: FileHandle, memory: Uint8Array, position: number): Promise<number> {
    try {
      const { bytesWritten } = await direct.write(memory, 0, memory.length, position);
      // A short direct write (a device at its end) leaves the rest to the cached path, which reports why.
      const written = bytesWritten - (bytesWritten % directAlignBytes);
      this.disk.stats.directBytes += written;
      return written;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw diskError(error, `write ${this.path}`);
      // O_DIRECT refused this buffer or offset (an alignment this file system needs and we do not meet).
      this.disk.directUnavailable(`O_DIRECT write: ${(error as Error).message}`);
      return 0;
    }
  }

  truncate(lengthBytes: number): Promise<void> {
    return mapped(`truncate ${this.path}`, () => this.handle.truncate(lengthBytes));
  }

  sync(): Promise<void> {
    return mapped(`fsync ${this.path}`, () => this.handle.sync());
  }

  sizeBytes(): Promise<number> {
    return mapped(`stat ${this.path}`, async () => (await this.handle.stat()).size);
  }

  close(): Promise<void> {
    return mapped(`close ${this.path}`, async () => {
      const direct = this.direct === undefined ? null : await this.direct;
      this.direct = undefined;
      try {
        await direct?.close();
      } finally {
        await this.handle.close();
      }
    });
  }
}

/** The real file system, through node:fs/promises file handles. */
export class NodeDisk implements Disk {
  readonly stats: NodeDiskStats = { directBytes: 0, directInPlaceBytes: 0, directWritevCalls: 0, cachedBytes: 0, directUnavailable: undefined };
  /** @internal */
  readonly staging = new AlignedStaging();
  private direct: boolean;

  constructor(private readonly options: NodeDiskOptions = {}) {
    this.direct = options.directWrites ?? true;
  }

  /** Whether large aligned writes go direct (on unless turned off or found unavailable). */
  get directOn(): boolean {
    return this.direct;
  }

  /** @internal switches direct writes off for good and says why, once. */
  directUnavailable(reason: string): void {
    if (!this.direct) return;
    this.direct = false;
    this.stats.directUnavailable = reason;
    this.options.onDirectUnavailable?.(reason);
  }

  async open(path: string, options: { readonly create: boolean }): Promise<DiskFile> {
    const flags = options.create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR;
    const handle = await mapped(`open ${path}`, () => open(path, flags, 0o644));
    return new NodeDiskFile(handle, path, this);
  }

  rename(from: string, to: string): Promise<void> {
    return mapped(`rename ${from} -> ${to}`, () => rename(from, to));
  }

  unlink(path: string): Promise<void> {
    return mapped(`unlink ${path}`, () => unlink(path));
  }

  list(dir: string): Promise<string[]> {
    return mapped(`readdir ${dir}`, () => readdir(dir));
  }

  async makeDirectory(dir: string): Promise<void> {
    await mapped(`mkdir ${dir}`, () => mkdir(dir, { recursive: true }));
    await this.syncDirectory(dir);
  }

  async syncDirectory(dir: string): Promise<void> {
    await mapped(`fsync directory ${dir}`, async () => {
      const handle = await open(dir, constants.O_RDONLY);
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }

  space(dir: string): Promise<DiskSpace> {
    return mapped(`statfs ${dir}`, async () => {
      const stats = await statfs(dir);
      return { capacityBytes: stats.blocks * stats.bsize, freeBytes: stats.bavail * stats.bsize };
    });
  }
}
