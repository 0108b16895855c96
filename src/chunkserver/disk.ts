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
 */
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, rename, statfs, unlink } from 'node:fs/promises';
import { ChunkStoreError } from './types.ts';

export interface DiskFile {
  /** Reads up to `length` bytes at `position` into `into[0..)`; returns how many were read (fewer at the end). */
  read(into: Uint8Array, position: number): Promise<number>;
  /** Writes all of `data` at `position`. On DISK_FULL a prefix may have been written. */
  write(data: Uint8Array, position: number): Promise<void>;
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

class NodeDiskFile implements DiskFile {
  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
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
    await mapped(`write ${this.path}`, async () => {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    });
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
    return mapped(`close ${this.path}`, () => this.handle.close());
  }
}

/** The real file system, through node:fs/promises file handles. */
export class NodeDisk implements Disk {
  async open(path: string, options: { readonly create: boolean }): Promise<DiskFile> {
    const flags = options.create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR;
    const handle = await mapped(`open ${path}`, () => open(path, flags, 0o644));
    return new NodeDiskFile(handle, path);
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
