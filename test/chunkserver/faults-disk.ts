/**
 * A real disk (NodeDisk, node:fs) that fails on demand the way an OS does: the wrapper throws Node-style
 * errno errors (`code: 'ENOSPC'`, `'EIO'`) and maps them through `diskError`, the same mapping NodeDisk uses,
 * so the store sees exactly what it would see from a full or failing device.
 *
 * - `limitBytes`: the device's room. A write that would grow the directory's files past it writes what fits
 *   (like a short write before ENOSPC) and fails ENOSPC; `space()` reports the room left.
 * - `failing`: rules (path substring, operation kinds) under which every matching operation fails EIO; a
 *   rule goes when a file it matches is unlinked (the bad blocks went with the file).
 * - `failSyncsNext`: the next N fsyncs of data or sidecar files fail EIO.
 */
import type { Disk, DiskFile, DiskSpace } from '../../src/chunkserver/disk.ts';
import { diskError, NodeDisk } from '../../src/chunkserver/disk.ts';

export type FaultKind = 'read' | 'write' | 'sync' | 'open' | 'rename' | 'unlink';

function errno(code: 'ENOSPC' | 'EIO', what: string): Error {
  const message = code === 'ENOSPC' ? 'no space left on device' : 'i/o error';
  return Object.assign(new Error(`${code}: ${message}, ${what}`), { code, errno: code === 'ENOSPC' ? -28 : -5 });
}

export class FaultyDisk implements Disk {
  private readonly inner = new NodeDisk();
  /** Bytes the files may hold in total; undefined: no limit beyond the real disk. */
  limitBytes: number | undefined = undefined;
  failing: { readonly pathIncludes: string; readonly kinds: readonly FaultKind[] }[] = [];
  failSyncsNext = 0;
  /** Sizes of the files written through this disk (for the limit). */
  private readonly sizes = new Map<string, number>();
  readonly injected = { ENOSPC: 0, EIO: 0 };

  usedBytes(): number {
    let total = 0;
    for (const size of this.sizes.values()) total += size;
    return total;
  }

  check(kind: FaultKind, path: string): void {
    if (this.failing.some((f) => f.kinds.includes(kind) && path.includes(f.pathIncludes))) {
      this.injected.EIO++;
      throw diskError(errno('EIO', `${kind} '${path}'`), `${kind} ${path}`);
    }
    if (kind === 'sync' && this.failSyncsNext > 0) {
      this.failSyncsNext--;
      this.injected.EIO++;
      throw diskError(errno('EIO', `fsync '${path}'`), `fsync ${path}`);
    }
  }

  /** Bytes of a write of `length` at `position` that fit; throws nothing. */
  room(path: string, position: number, length: number): number {
    if (this.limitBytes === undefined) return length;
    const size = this.sizes.get(path) ?? 0;
    const growth = Math.max(0, position + length - size);
    const free = Math.max(0, this.limitBytes - this.usedBytes());
    return growth <= free ? length : Math.max(0, length - (growth - free));
  }

  noteSize(path: string, size: number): void {
    this.sizes.set(path, size);
  }

  async open(path: string, options: { readonly create: boolean }): Promise<DiskFile> {
    this.check('open', path);
    const file = await this.inner.open(path, options);
    this.sizes.set(path, await file.sizeBytes());
    return new FaultyFile(this, file, path);
  }

  async rename(from: string, to: string): Promise<void> {
    this.check('rename', from);
    await this.inner.rename(from, to);
    this.sizes.set(to, this.sizes.get(from) ?? 0);
    this.sizes.delete(from);
  }

  async unlink(path: string): Promise<void> {
    this.check('unlink', path);
    await this.inner.unlink(path);
    this.sizes.delete(path);
    // A bad spot belongs to the file's blocks: a file made again under the name gets good ones.
    this.failing = this.failing.filter((f) => !path.includes(f.pathIncludes));
  }

  list(dir: string): Promise<string[]> {
    return this.inner.list(dir);
  }

  makeDirectory(dir: string): Promise<void> {
    return this.inner.makeDirectory(dir);
  }

  syncDirectory(dir: string): Promise<void> {
    return this.inner.syncDirectory(dir);
  }

  async space(dir: string): Promise<DiskSpace> {
    const real = await this.inner.space(dir);
    if (this.limitBytes === undefined) return real;
    return { capacityBytes: this.limitBytes, freeBytes: Math.max(0, this.limitBytes - this.usedBytes()) };
  }
}

class FaultyFile implements DiskFile {
  constructor(
    private readonly disk: FaultyDisk,
    private readonly inner: DiskFile,
    private readonly path: string,
  ) {}

  async read(into: Uint8Array, position: number): Promise<number> {
    this.disk.check('read', this.path);
    return this.inner.read(into, position);
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.disk.check('write', this.path);
    const fits = this.disk.room(this.path, position, data.length);
    if (fits > 0) await this.inner.write(data.subarray(0, fits), position);
    this.disk.noteSize(this.path, await this.inner.sizeBytes());
    if (fits < data.length) {
      this.disk.injected.ENOSPC++;
      throw diskError(errno('ENOSPC', `write '${this.path}'`), `write ${this.path}`);
    }
  }

  async writev(pieces: readonly Uint8Array[], position: number): Promise<void> {
    for (const piece of pieces) {
      await this.write(piece, position);
      position += piece.length;
    }
  }

  async truncate(lengthBytes: number): Promise<void> {
    this.disk.check('write', this.path);
    await this.inner.truncate(lengthBytes);
    this.disk.noteSize(this.path, lengthBytes);
  }

  async sync(): Promise<void> {
    this.disk.check('sync', this.path);
    await this.inner.sync();
  }

  sizeBytes(): Promise<number> {
    return this.inner.sizeBytes();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
