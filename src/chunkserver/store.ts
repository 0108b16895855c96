/**
 * `FileChunkStore`: the replica store on an injected `Disk` (node:fs in production, the simulator's disk in
 * tests). See types.ts for the contract and docs-store.md for the design.
 *
 * Layout, all in one directory:
 *   <handle>.data      the replica's bytes; appended in place, fsynced by sync()
 *   <handle>.meta      the sidecar: handle, version, length, sealed, CRC32C of [0, length), one CRC32C per
 *                      `checksumBlockBytes` block, and a CRC32C of the sidecar itself
 *   <handle>.meta.tmp  a sidecar being written; replaced atomically by rename, then the directory is fsynced
 *   <handle>.lz4       instead of .data, a sealed replica of an lz4 file: each `checksumBlockBytes` block
 *                      LZ4-compressed on its own (or raw where that is not smaller); the sidecar then also
 *                      holds the stored offset of every block, and the kind (compression.ts)
 *
 * Crash rule and why it holds: the sidecar is the commit record. A sidecar is written only after the data
 * file was fsynced up to the length it names, and it replaces the old one by rename (atomic), made durable by
 * fsyncing the directory. So the sidecar on disk always describes a durable prefix of the data file at some
 * sync(); at open the data file is cut back to the sidecar's length (dropping any unsynced or torn tail), temp
 * sidecars are removed, and data files without a sidecar (a create or delete cut short) are removed. Cuts
 * (bumpVersion, seal to a shorter length) write the new sidecar before truncating the data, for the same
 * reason.
 *
 * Compression (`create(…, { compression: 'lz4' })`): an unsealed replica is raw .data as above. Once sealed,
 * it is packed: the blocks are read back (verified), compressed into <handle>.lz4, which is fsynced and its
 * name made durable (directory fsync) BEFORE a new sidecar that names the packed layout commits by rename;
 * only then is .data unlinked. A crash before the commit leaves the sealed raw replica (open() removes the
 * unnamed .lz4); after it, the packed one (open() removes the stale .data). A failed pack leaves the
 * replica sealed raw, which is as valid (logged). Block CRCs stay over logical bytes and reads verify after
 * decompressing, so the scrubber, corruption reports and copies are unchanged.
 *
 * Memory: per replica only its metadata and block CRCs (4 bytes per 64 KiB block, 1/16384 of the data).
 * Concurrency: per replica, reads and verify share a lock; every mutation holds it exclusively.
 */
import { crc32c } from '@node-rs/crc32';
import type { Logger } from 'pino';
import { assert } from '../raft/errors.ts';
import type { DataBug } from './bugs.ts';
import { noDataBugs } from './bugs.ts';
import type { Disk, DiskFile } from './disk.ts';
import { diskError } from './disk.ts';
import type { CompressionUsage } from './compression.ts';
import { packBlock, unpackBlock } from './compression.ts';
import { gridPieceCount } from './block-crcs.ts';
import { crc32cCombine, crcOfBlocks } from './crc-combine.ts';
import { blockCount, decodeSidecar, encodeSidecar, sidecarBytesMax } from './sidecar.ts';
import type { AppendPiece, ChunkStore, Compression, CreateOptions, LocalReplicaPaths, ReplicaInfo, StoreUsage } from './types.ts';
import { ChunkStoreError, checksumBlockBytes, chunkSizeBytesMax } from './types.ts';

/**
 * Data files kept open (for appends and reads). Past it, the least recently used handle whose bytes are all
 * synced and whose replica is idle is closed (reopened when next needed): a soft bound. Only clean handles
 * are closed: an fsync through a handle opened after a failed writeback may not report the failure.
 */
export const dataFilesOpenMax = 256;

/** Bytes read per step by verify() and by cuts that recompute a prefix CRC. A multiple of the block size. */
export const verifySliceBytes = 1024 * 1024;
/**
 * Append ends inside a block remembered per replica (Replica.appendEnds): a writer's resume cuts to the
 * acknowledged length, at most a pipeline window (16 packets by default) back from the replica's length.
 */
export const appendEndsKeptMax = 64;

const dataSuffix = '.data';
const packedSuffix = '.lz4';
const metaSuffix = '.meta';
const tempSuffix = '.tmp';

assert(verifySliceBytes % checksumBlockBytes === 0, 'verifySliceBytes is a whole number of blocks');

export interface FileChunkStoreOptions {
  /** Largest replica accepted (TOO_LARGE past it). At most chunkSizeBytesMax. */
  readonly chunkSizeBytes?: number;
  readonly logger?: Logger;
  /** Planted bugs (the simulator's self-test only; see bugs.ts). */
  readonly bugs?: ReadonlySet<DataBug>;
}

/** What open() found and repaired. */
export interface RecoveryReport {
  readonly replicas: number;
  readonly tempFilesRemoved: number;
  readonly orphanDataFilesRemoved: number;
  /** Data files cut back to the length their sidecar names (an unsynced or torn tail). */
  readonly tailsTruncated: number;
  /** Replicas dropped because the sidecar failed its CRC or the data file was shorter than it (logged). */
  readonly corruptReplicasRemoved: number;
}

/** Counters for metrics. */
export interface StoreStats {
  checksumMismatches: number;
  bytesAppended: number;
  bytesRead: number;
  syncs: number;
}

interface Durable {
  readonly version: number;
  readonly lengthBytes: number;
  readonly sealed: boolean;
}

interface Replica {
  readonly handle: number;
  version: number;
  lengthBytes: number;
  sealed: boolean;
  readonly compression: Compression;
  /**
   * Set once packed (sealed lz4 replicas): packed[k] is where block k starts in <handle>.lz4, packed[blocks]
   * the file's length; block k is stored compressed iff packed[k+1] - packed[k] is less than its length.
   */
  packed: Uint32Array | undefined;
  /** A file a failed pack or unlink left behind (removed with the replica; open() removes it too). */
  strayPath: string | undefined;
  /** blockCrcs[k] is the CRC32C of bytes [k*B, min((k+1)*B, lengthBytes)); entries past the last block are stale. */
  blockCrcs: Uint32Array;
  /**
   * CRC32C of bytes [0, lengthBytes); undefined after an append until asked (prefixCrcOf derives it from
   * the block CRCs: appends checksum each byte once, not twice).
   */
  prefixCrc: number | undefined;
  /**
   * In memory only: after each of the latest appends (at most appendEndsKeptMax) that ended inside a block,
   * that length and the CRC32C its block had up to it. A cut to one of them (a writer's resume cuts to the
   * acknowledged length, always an append's end) checks the kept part of the block against it alone, so
   * bytes past the cut in the same block that fail their CRCs (a packet corrupted on the wire, stored under
   * the writer's CRCs before the chain's end rejected it) do not fail the cut. Empty after open().
   */
  appendEnds: { readonly lengthBytes: number; readonly blockCrc: number }[];
  /** What the sidecar on disk says. */
  durable: Durable;
  /** The data file while open (see dataFilesOpenMax). */
  file: DiskFile | undefined;
  /** A reader's open of the data file in flight (readers share the lock, so they share the open). */
  opening: Promise<DiskFile> | undefined;
  /** Bytes appended since the data file was last fsynced. */
  dataDirty: boolean;
  /** False once deleted (or failed to create): waiters must not use it. */
  live: boolean;
  /**
   * Set when an fsync of the data file failed: the kernel may have dropped the dirty pages, so a later
   * fsync could succeed without the bytes. The replica then refuses writes (IO_ERROR) until deleted.
   */
  syncFailure: string | undefined;
  readonly lock: RwLock;
}

/** A FIFO readers-writer lock. */
class RwLock {
  private readers = 0;
  private writer = false;
  private readonly waiting: { exclusive: boolean; grant: () => void }[] = [];

  shared(): Promise<() => void> {
    return this.acquire(false);
  }

  exclusive(): Promise<() => void> {
    return this.acquire(true);
  }

  /** Exclusive access if nobody holds or waits for the lock, else undefined. */
  tryExclusive(): (() => void) | undefined {
    if (this.writer || this.readers > 0 || this.waiting.length > 0) return undefined;
    this.writer = true;
    let released = false;
    return () => {
      assert(!released, 'lock released twice');
      released = true;
      this.writer = false;
      this.pump();
    };
  }

  private acquire(exclusive: boolean): Promise<() => void> {
    return new Promise((resolve) => {
      this.waiting.push({
        exclusive,
        grant: () => {
          let released = false;
          resolve(() => {
            assert(!released, 'lock released twice');
            released = true;
            if (exclusive) this.writer = false;
            else this.readers--;
            this.pump();
          });
        },
      });
      this.pump();
    });
  }

  private pump(): void {
    for (;;) {
      const head = this.waiting[0];
      if (head === undefined || this.writer) return;
      if (head.exclusive) {
        if (this.readers > 0) return;
        this.writer = true;
      } else {
        this.readers++;
      }
      this.waiting.shift();
      head.grant();
    }
  }
}

/** Bytes the replica's data file holds (its logical length unless packed). */
function storedBytesOf(r: Replica): number {
  return r.packed === undefined ? r.lengthBytes : (r.packed[r.packed.length - 1] as number);
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

async function readSidecar(disk: Disk, path: string): Promise<Uint8Array | string> {
  const file = await disk.open(path, { create: false });
  try {
    const size = await file.sizeBytes();
    if (size > sidecarBytesMax) return `sidecar of ${size} bytes is larger than any valid one`;
    const bytes = new Uint8Array(size);
    const n = await file.read(bytes, 0);
    return bytes.subarray(0, n);
  } finally {
    await file.close();
  }
}

export class FileChunkStore implements ChunkStore {
  readonly stats: StoreStats = { checksumMismatches: 0, bytesAppended: 0, bytesRead: 0, syncs: 0 };
  private readonly replicas = new Map<number, Replica>();
  /** Replicas with an open data file, least recently used first. */
  private readonly openFiles = new Map<number, Replica>();
  private readonly chunkSizeBytes: number;
  private readonly logger: Logger | undefined;
  private readonly bugs: ReadonlySet<DataBug>;
  private closed = false;

  private constructor(
    private readonly disk: Disk,
    private readonly dir: string,
    options: FileChunkStoreOptions,
    readonly recovery: RecoveryReport,
  ) {
    this.chunkSizeBytes = options.chunkSizeBytes ?? chunkSizeBytesMax;
    this.logger = options.logger;
    this.bugs = options.bugs ?? noDataBugs;
  }

  /** Opens (creating if needed) the store in `dir` and recovers every replica, repairing what a crash left. */
  static async open(disk: Disk, dir: string, options: FileChunkStoreOptions = {}): Promise<FileChunkStore> {
    const chunkSizeBytes = options.chunkSizeBytes ?? chunkSizeBytesMax;
    assert(isCount(chunkSizeBytes) && chunkSizeBytes > 0 && chunkSizeBytes <= chunkSizeBytesMax, 'chunkSizeBytes in (0, max]');
    await disk.makeDirectory(dir);
    const names = await disk.list(dir);
    const recovered: Replica[] = [];
    let tempFilesRemoved = 0;
    let orphanDataFilesRemoved = 0;
    let tailsTruncated = 0;
    let corruptReplicasRemoved = 0;
    const handleOf = (name: string, suffix: string): number | undefined => {
      if (!name.endsWith(suffix)) return undefined;
      const stem = name.slice(0, -suffix.length);
      const handle = Number(stem);
      return /^(0|[1-9][0-9]*)$/.test(stem) && isCount(handle) ? handle : undefined;
    };
    // Data files of either layout; each sidecar claims one, the rest are orphans.
    const dataNames = new Set(names.filter((n) => handleOf(n, dataSuffix) !== undefined || handleOf(n, packedSuffix) !== undefined));
    for (const name of names) {
      if (name.endsWith(tempSuffix)) {
        await disk.unlink(`${dir}/${name}`);
        tempFilesRemoved++;
        continue;
      }
      const handle = handleOf(name, metaSuffix);
      if (handle === undefined) continue;
      const outcome = await FileChunkStore.recoverOne(disk, dir, handle, dataNames);
      if (typeof outcome === 'string') {
        options.logger?.error({ handle, reason: outcome }, 'replica store: dropping a corrupt replica at open');
        await disk.unlink(`${dir}/${name}`);
        for (const dataName of [`${handle}${dataSuffix}`, `${handle}${packedSuffix}`]) {
          if (dataNames.delete(dataName)) await disk.unlink(`${dir}/${dataName}`);
        }
        corruptReplicasRemoved++;
        continue;
      }
      dataNames.delete(outcome.dataName);
      if (outcome.truncated) tailsTruncated++;
      recovered.push(outcome.replica);
    }
    for (const dataName of dataNames) {
      // A data file without a sidecar (a create or a delete that a crash cut short), or the layout its
      // sidecar does not name (a pack cut short, or the raw file a committed pack had not yet removed).
      await disk.unlink(`${dir}/${dataName}`);
      orphanDataFilesRemoved++;
    }
    if (tempFilesRemoved + orphanDataFilesRemoved + corruptReplicasRemoved > 0) await disk.syncDirectory(dir);
    const recovery = { replicas: recovered.length, tempFilesRemoved, orphanDataFilesRemoved, tailsTruncated, corruptReplicasRemoved };
    const store = new FileChunkStore(disk, dir, options, recovery);
    for (const r of recovered) store.replicas.set(r.handle, r);
    options.logger?.info({ dir, ...recovery }, 'replica store opened');
    return store;
  }

  private static async recoverOne(
    disk: Disk,
    dir: string,
    handle: number,
    dataNames: ReadonlySet<string>,
  ): Promise<{ replica: Replica; truncated: boolean; dataName: string } | string> {
    const bytes = await readSidecar(disk, `${dir}/${handle}${metaSuffix}`);
    if (typeof bytes === 'string') return bytes;
    const sidecar = decodeSidecar(bytes);
    if (typeof sidecar === 'string') return sidecar;
    if (sidecar.handle !== handle) return `sidecar names handle ${sidecar.handle}`;
    const dataName = `${handle}${sidecar.packed === undefined ? dataSuffix : packedSuffix}`;
    if (!dataNames.has(dataName)) return 'data file missing';
    const storedBytes = sidecar.packed === undefined ? sidecar.lengthBytes : (sidecar.packed[sidecar.packed.length - 1] as number);
    const file = await disk.open(`${dir}/${dataName}`, { create: false });
    let truncated = false;
    try {
      const size = await file.sizeBytes();
      if (size < storedBytes) return `data file holds ${size} bytes, sidecar says ${storedBytes}`;
      if (size > storedBytes) {
        await file.truncate(storedBytes);
        await file.sync();
        truncated = true;
      }
    } finally {
      await file.close();
    }
    const durable = { version: sidecar.version, lengthBytes: sidecar.lengthBytes, sealed: sidecar.sealed };
    const replica: Replica = {
      handle,
      ...durable,
      compression: sidecar.compression,
      packed: sidecar.packed,
      strayPath: undefined,
      blockCrcs: sidecar.blockCrcs,
      prefixCrc: sidecar.prefixCrc,
      appendEnds: [],
      durable,
      file: undefined,
      opening: undefined,
      dataDirty: false,
      live: true,
      syncFailure: undefined,
      lock: new RwLock(),
    };
    return { replica, truncated, dataName };
  }

  async create(handle: number, version: number, options: CreateOptions = {}): Promise<void> {
    this.assertOpen();
    if (!isCount(handle)) throw new ChunkStoreError('NO_SUCH_REPLICA', `invalid handle ${handle}`);
    if (!isCount(version)) throw new ChunkStoreError('STALE_VERSION', `invalid version ${version}`);
    const held = this.replicas.get(handle);
    if (held !== undefined) throw new ChunkStoreError('REPLICA_EXISTS', `chunk ${handle} is held at version ${held.version}`);
    const durable = { version, lengthBytes: 0, sealed: false };
    const r: Replica = {
      handle,
      ...durable,
      compression: options.compression ?? 'none',
      packed: undefined,
      strayPath: undefined,
      blockCrcs: new Uint32Array(0),
      prefixCrc: 0,
      appendEnds: [],
      durable: { version: -1, lengthBytes: 0, sealed: false },
      file: undefined,
      opening: undefined,
      dataDirty: false,
      live: true,
      syncFailure: undefined,
      lock: new RwLock(),
    };
    // Reserve the handle before any await, so a concurrent create sees it.
    this.replicas.set(handle, r);
    const release = await r.lock.exclusive();
    try {
      const file = await this.disk.open(this.dataPath(handle), { create: true });
      this.adoptFile(r, file);
      await file.truncate(0);
      // The data file's name becomes durable with the sidecar's rename (one directory fsync covers both).
      await this.writeSidecar(r);
      await this.evictFiles();
    } catch (error) {
      r.live = false;
      this.replicas.delete(handle);
      await this.closeFile(r);
      // Best effort, sidecar first (it may have been renamed in before a failed directory fsync); whatever is
      // left, open() removes: a data file without a sidecar, or a sidecar without a data file.
      await this.disk.unlink(this.metaPath(handle)).catch(() => undefined);
      await this.disk.unlink(this.dataPath(handle)).catch(() => undefined);
      throw diskError(error, `create ${handle}`);
    } finally {
      release();
    }
  }

  async append(handle: number, version: number, offset: number, data: Uint8Array, blockCrcs?: readonly number[]): Promise<void> {
    return this.appendPieces(handle, version, offset, [blockCrcs === undefined ? { data } : { data, blockCrcs }]);
  }

  /**
   * Appends `pieces` one after the other at `offset`, as `append` of each in turn would, in one disk write
   * (DiskFile.writev: NodeDisk writes page-aligned pieces with one O_DIRECT pwritev). A pipeline hop batches
   * the packets that arrived while its previous append was on the disk. All or nothing in memory: on
   * failure the length and CRCs stay as they were.
   */
  async appendPieces(handle: number, version: number, offset: number, pieces: readonly AppendPiece[]): Promise<void> {
    const { r, release } = await this.lockReplica(handle, true);
    try {
      this.checkVersion(r, version);
      if (r.sealed) throw new ChunkStoreError('SEALED', `chunk ${handle} is sealed at ${r.lengthBytes} bytes`);
      if (!isCount(offset) || offset !== r.lengthBytes) {
        throw new ChunkStoreError('BAD_OFFSET', `append to chunk ${handle} at ${offset}, its length is ${r.lengthBytes}`);
      }
      let total = 0;
      for (const piece of pieces) total += piece.data.length;
      if (offset + total > this.chunkSizeBytes) {
        throw new ChunkStoreError('TOO_LARGE', `chunk ${handle}: ${offset} + ${total} bytes passes the chunk size ${this.chunkSizeBytes}`);
      }
      const written = pieces.filter((piece) => piece.data.length > 0);
      if (written.length === 0) return;
      const file = await this.fileFor(r);
      // On failure (e.g. DISK_FULL after a partial write) nothing below runs: the length and CRCs stay, and
      // the bytes past the length are garbage the next append overwrites and open() cuts off.
      r.dataDirty = true;
      if (written.length === 1) await file.write(written[0]!.data, offset);
      else await file.writev(written.map((piece) => piece.data), offset);
      for (const piece of written) this.extendChecksums(r, piece.data, piece.blockCrcs);
      this.stats.bytesAppended += total;
    } finally {
      release();
    }
  }

  async sync(handle: number): Promise<void> {
    const { r, release } = await this.lockReplica(handle, true);
    try {
      if (this.isDurable(r)) return;
      await this.syncData(r);
      await this.writeSidecar(r);
    } finally {
      release();
    }
  }

  async bumpVersion(handle: number, fromVersion: number, toVersion: number, lengthBytes: number): Promise<void> {
    const { r, release } = await this.lockReplica(handle, true);
    try {
      if (!isCount(toVersion) || toVersion <= fromVersion) {
        throw new ChunkStoreError('STALE_VERSION', `chunk ${handle}: new version ${toVersion} does not raise ${fromVersion}`);
      }
      // Any version in [fromVersion, toVersion]: a pipeline set up part way (some replicas raised, then a
      // replica failed) leaves survivors at different versions; a retried setup finds toVersion already.
      if (r.version < fromVersion || r.version > toVersion) {
        throw new ChunkStoreError('STALE_VERSION', `chunk ${handle} is at version ${r.version}, not in [${fromVersion}, ${toVersion}]`);
      }
      if (r.sealed) {
        // A writer that lost a replica while sealing resumes with the survivors at a new version. A survivor
        // that sealed already holds every byte the writer sent (the resume offset is its sealed length): it
        // takes the new version and stays sealed. Anything else would cut or reopen sealed bytes.
        if (lengthBytes !== r.lengthBytes) {
          throw new ChunkStoreError('SEALED', `chunk ${handle} is sealed at ${r.lengthBytes} bytes; cannot resume at ${lengthBytes}`);
        }
        const before = r.version;
        r.version = toVersion;
        try {
          await this.writeSidecar(r);
        } catch (error) {
          r.version = before;
          throw error;
        }
        return;
      }
      if (!isCount(lengthBytes) || lengthBytes > r.lengthBytes) {
        throw new ChunkStoreError('BAD_OFFSET', `chunk ${handle} holds ${r.lengthBytes} bytes, cannot resume at ${lengthBytes}`);
      }
      await this.commitCut(r, lengthBytes, { version: toVersion, sealed: false });
    } finally {
      release();
    }
  }

  async seal(handle: number, version: number, lengthBytes: number): Promise<ReplicaInfo> {
    const { r, release } = await this.lockReplica(handle, true);
    try {
      this.checkVersion(r, version);
      if (r.sealed) {
        if (lengthBytes === r.lengthBytes && this.isDurable(r)) return this.infoOf(r);
        if (lengthBytes !== r.lengthBytes) {
          throw new ChunkStoreError('SEALED', `chunk ${handle} is sealed at ${r.lengthBytes} bytes, not ${lengthBytes}`);
        }
      }
      if (!isCount(lengthBytes) || lengthBytes > r.lengthBytes) {
        throw new ChunkStoreError('BAD_OFFSET', `chunk ${handle} holds ${r.lengthBytes} bytes, cannot seal at ${lengthBytes}`);
      }
      await this.commitCut(r, lengthBytes, { version, sealed: true });
      if (r.compression === 'lz4' && r.packed === undefined && r.lengthBytes > 0) await this.maybePack(r);
      // The file stays open: a sealed replica is usually read (re-replicated, served) soon after.
      return this.infoOf(r);
    } finally {
      release();
    }
  }

  async read(handle: number, version: number, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const { r, release } = await this.lockReplica(handle, false);
    try {
      if (!this.bugs.has('data-reuse-stale-replica')) this.checkVersion(r, version);
      if (!isCount(offset) || !isCount(length) || offset + length > r.lengthBytes) {
        throw new ChunkStoreError('BAD_OFFSET', `read of chunk ${handle} [${offset}, +${length}) past its length ${r.lengthBytes}`);
      }
      if (length === 0) return new Uint8Array(0);
      const firstBlock = Math.floor(offset / checksumBlockBytes);
      const lastBlock = Math.floor((offset + length - 1) / checksumBlockBytes);
      const spanStart = firstBlock * checksumBlockBytes;
      const spanEnd = Math.min(r.lengthBytes, (lastBlock + 1) * checksumBlockBytes);
      const span = await this.readVerified(r, spanStart, spanEnd, !this.bugs.has('data-skip-read-checksum'), into);
      this.stats.bytesRead += length;
      return span.subarray(offset - spanStart, offset - spanStart + length);
    } finally {
      release();
    }
  }

  async localPaths(handle: number, version: number): Promise<LocalReplicaPaths> {
    const { r, release } = await this.lockReplica(handle, false);
    try {
      this.checkVersion(r, version);
      // Only a state the sidecar on disk already names: the client verifies the data file against it.
      if (!r.sealed || !this.isDurable(r)) throw new ChunkStoreError('NOT_LOCAL', `chunk ${handle} is not sealed and durable yet`);
      if (r.packed !== undefined || r.compression === 'lz4') throw new ChunkStoreError('NOT_LOCAL', `chunk ${handle} is stored compressed`);
      if (!this.dir.startsWith('/')) throw new ChunkStoreError('NOT_LOCAL', `the store's directory ${this.dir} is not an absolute path`);
      return { dataPath: this.dataPath(handle), metaPath: this.metaPath(handle) };
    } finally {
      release();
    }
  }

  async verify(handle: number): Promise<void> {
    const { r, release } = await this.lockReplica(handle, false);
    try {
      let crc = 0;
      for (let start = 0; start < r.lengthBytes; start += verifySliceBytes) {
        const slice = await this.readVerified(r, start, Math.min(r.lengthBytes, start + verifySliceBytes));
        crc = crc32c(slice, crc);
      }
      if (crc !== this.prefixCrcOf(r)) {
        this.stats.checksumMismatches++;
        throw new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${handle}: whole-replica CRC32C differs from the sidecar's`);
      }
    } finally {
      release();
    }
  }

  async delete(handle: number, versionAtMost: number): Promise<boolean> {
    if (!this.replicas.has(handle)) return false;
    const { r, release } = await this.lockReplica(handle, true, false);
    try {
      if (r.version > versionAtMost) return false;
      // The sidecar goes first: a data file without one is an orphan that open() removes.
      await this.disk.unlink(this.metaPath(handle));
      r.live = false;
      this.replicas.delete(handle);
      await this.closeFile(r);
      await this.disk.unlink(this.currentDataPath(r));
      if (r.strayPath !== undefined) await this.disk.unlink(r.strayPath).catch(() => undefined);
      await this.disk.syncDirectory(this.dir);
      return true;
    } finally {
      release();
    }
  }

  info(handle: number): ReplicaInfo | undefined {
    const r = this.replicas.get(handle);
    return r === undefined ? undefined : this.infoOf(r);
  }

  list(): readonly ReplicaInfo[] {
    return [...this.replicas.values()].map((r) => this.infoOf(r)).sort((a, b) => a.handle - b.handle);
  }

  async usage(): Promise<StoreUsage> {
    const space = await this.disk.space(this.dir);
    let usedBytes = 0;
    for (const r of this.replicas.values()) usedBytes += storedBytesOf(r);
    return { capacityBytes: space.capacityBytes, usedBytes };
  }

  /** Logical and stored bytes of the replicas held compressed (the compression metrics). */
  compressionUsage(): CompressionUsage {
    let logicalBytes = 0;
    let storedBytes = 0;
    for (const r of this.replicas.values()) {
      if (r.packed === undefined) continue;
      logicalBytes += r.lengthBytes;
      storedBytes += storedBytesOf(r);
    }
    return { logicalBytes, storedBytes };
  }

  /** Free bytes on the disk (what a heartbeat reports as room for new replicas). */
  async freeBytes(): Promise<number> {
    return (await this.disk.space(this.dir)).freeBytes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of [...this.replicas.values()]) {
      const release = await r.lock.exclusive();
      try {
        await this.closeFile(r);
      } finally {
        release();
      }
    }
  }

  // ---- helpers ----

  private dataPath(handle: number): string {
    return `${this.dir}/${handle}${dataSuffix}`;
  }

  private packedPath(handle: number): string {
    return `${this.dir}/${handle}${packedSuffix}`;
  }

  private currentDataPath(r: Replica): string {
    return r.packed === undefined ? this.dataPath(r.handle) : this.packedPath(r.handle);
  }

  private metaPath(handle: number): string {
    return `${this.dir}/${handle}${metaSuffix}`;
  }

  private assertOpen(): void {
    if (this.closed) throw new ChunkStoreError('IO_ERROR', 'the replica store is closed');
  }

  private async lockReplica(handle: number, exclusive: boolean, writing = exclusive): Promise<{ r: Replica; release: () => void }> {
    this.assertOpen();
    const r = this.replicas.get(handle);
    if (r === undefined) throw new ChunkStoreError('NO_SUCH_REPLICA', `chunk ${handle} is not held here`);
    const release = exclusive ? await r.lock.exclusive() : await r.lock.shared();
    if (!r.live || this.closed) {
      release();
      throw new ChunkStoreError(this.closed ? 'IO_ERROR' : 'NO_SUCH_REPLICA', `chunk ${handle} is not held here`);
    }
    if (writing && r.syncFailure !== undefined) {
      release();
      throw new ChunkStoreError('IO_ERROR', `chunk ${handle} refuses writes after a failed fsync: ${r.syncFailure}`);
    }
    return { r, release };
  }

  private checkVersion(r: Replica, version: number): void {
    if (version !== r.version) {
      throw new ChunkStoreError('STALE_VERSION', `chunk ${r.handle} is at version ${r.version}, not ${version}`);
    }
  }

  private isDurable(r: Replica): boolean {
    const d = r.durable;
    return d.version === r.version && d.lengthBytes === r.lengthBytes && d.sealed === r.sealed;
  }

  private infoOf(r: Replica): ReplicaInfo {
    const base = { handle: r.handle, version: r.version, lengthBytes: r.lengthBytes, sealed: r.sealed };
    const info = r.sealed ? { ...base, checksum: this.prefixCrcOf(r) } : base;
    return r.compression === 'lz4' ? { ...info, compression: 'lz4' } : info;
  }

  /** The replica's data file, opened if needed; the caller holds the replica's lock (shared or exclusive). */
  private async fileFor(r: Replica): Promise<DiskFile> {
    if (r.file !== undefined) {
      this.openFiles.delete(r.handle);
      this.openFiles.set(r.handle, r);
      return r.file;
    }
    r.opening ??= this.disk.open(this.currentDataPath(r), { create: false }).finally(() => (r.opening = undefined));
    const opening = r.opening;
    const file = await opening;
    if (r.file === undefined) {
      this.adoptFile(r, file);
      await this.evictFiles();
    }
    return file;
  }

  private adoptFile(r: Replica, file: DiskFile): void {
    assert(r.file === undefined, 'one open data file per replica');
    r.file = file;
    this.openFiles.set(r.handle, r);
  }

  private async closeFile(r: Replica): Promise<void> {
    const file = r.file;
    r.file = undefined;
    this.openFiles.delete(r.handle);
    await file?.close().catch((error: unknown) => this.logger?.warn({ handle: r.handle, error: String(error) }, 'replica store: close failed'));
  }

  /** Closes clean, idle data files past dataFilesOpenMax, least recently used first (a soft bound). */
  private async evictFiles(): Promise<void> {
    for (const other of [...this.openFiles.values()]) {
      if (this.openFiles.size <= dataFilesOpenMax) return;
      if (other.dataDirty) continue;
      const release = other.lock.tryExclusive();
      if (release === undefined) continue;
      try {
        await this.closeFile(other);
      } finally {
        release();
      }
    }
  }

  /** CRC32C of the replica's bytes [0, lengthBytes), from its block CRCs when not known yet. */
  private prefixCrcOf(r: Replica): number {
    r.prefixCrc ??= crcOfBlocks(r.blockCrcs, r.lengthBytes);
    return r.prefixCrc;
  }

  /**
   * Folds appended bytes into the block CRCs (continuing the partial last block); the prefix CRC is derived
   * later. `pieceCrcs` (the pieces' CRC32Cs on the block grid, from upstream) are folded in instead of
   * checksumming the bytes again.
   */
  private extendChecksums(r: Replica, data: Uint8Array, pieceCrcs?: readonly number[]): void {
    assert(pieceCrcs === undefined || pieceCrcs.length === gridPieceCount(r.lengthBytes, data.length), 'one CRC per piece on the block grid');
    const newLength = r.lengthBytes + data.length;
    const blocks = blockCount(newLength);
    if (blocks > r.blockCrcs.length) {
      const grown = new Uint32Array(Math.min(blockCount(this.chunkSizeBytes), Math.max(blocks, r.blockCrcs.length * 2)));
      grown.set(r.blockCrcs);
      r.blockCrcs = grown;
    }
    let position = r.lengthBytes;
    let consumed = 0;
    for (let i = 0; consumed < data.length; i++) {
      const block = Math.floor(position / checksumBlockBytes);
      const inBlock = position % checksumBlockBytes;
      const take = Math.min(checksumBlockBytes - inBlock, data.length - consumed);
      const given = pieceCrcs?.[i];
      if (given !== undefined) r.blockCrcs[block] = inBlock === 0 ? given : crc32cCombine(r.blockCrcs[block]!, given, take);
      else {
        const piece = data.subarray(consumed, consumed + take);
        r.blockCrcs[block] = inBlock === 0 ? crc32c(piece) : crc32c(piece, r.blockCrcs[block]);
      }
      position += take;
      consumed += take;
    }
    r.prefixCrc = undefined;
    r.lengthBytes = newLength;
    if (newLength % checksumBlockBytes !== 0) {
      r.appendEnds.push({ lengthBytes: newLength, blockCrc: r.blockCrcs[Math.floor(newLength / checksumBlockBytes)]! });
      if (r.appendEnds.length > appendEndsKeptMax) r.appendEnds.shift();
    }
  }

  /**
   * Makes durable a new state at `lengthBytes` (at most the current length): data fsynced, then the new
   * sidecar committed, then (only then) the data file truncated. Memory changes only once the sidecar is in.
   */
  private async commitCut(r: Replica, lengthBytes: number, next: { version: number; sealed: boolean }): Promise<void> {
    let blockCrcs = r.blockCrcs;
    let prefixCrc = this.prefixCrcOf(r);
    if (lengthBytes < r.lengthBytes) {
      const cut = await this.checksumsOfPrefix(r, lengthBytes);
      blockCrcs = cut.blockCrcs;
      prefixCrc = cut.prefixCrc;
    }
    await this.syncData(r);
    const before = { lengthBytes: r.lengthBytes, version: r.version, sealed: r.sealed, blockCrcs: r.blockCrcs, prefixCrc: r.prefixCrc };
    const cutting = lengthBytes < r.lengthBytes;
    Object.assign(r, { lengthBytes, blockCrcs, prefixCrc, ...next });
    try {
      await this.writeSidecar(r);
    } catch (error) {
      Object.assign(r, before);
      throw error;
    }
    if (cutting) {
      // Ends past the cut are gone with their bytes; those below it still describe the bytes kept.
      r.appendEnds = r.appendEnds.filter((e) => e.lengthBytes <= lengthBytes);
      // Committed already: the cut is tidying. If it fails, the bytes past the length are never read, the next
      // append overwrites them and open() cuts them, so the operation still succeeded.
      try {
        const file = await this.fileFor(r);
        await file.truncate(lengthBytes);
      } catch (error) {
        this.logger?.warn({ handle: r.handle, error: String(error) }, 'replica store: truncating the data file after a cut failed');
      }
    }
  }

  /**
   * Block CRCs and the prefix CRC of the first `lengthBytes` bytes, re-read and verified from disk. The whole
   * blocks below the cut are checked against their CRCs; the part of the block the cut falls in is checked
   * against the CRC it had when an append ended there (appendEnds), else with its whole block as stored.
   */
  private async checksumsOfPrefix(r: Replica, lengthBytes: number): Promise<{ blockCrcs: Uint32Array; prefixCrc: number }> {
    const blocks = blockCount(lengthBytes);
    const blockCrcs = r.blockCrcs.slice(0, Math.max(blocks, 1));
    const wholeEnd = lengthBytes - (lengthBytes % checksumBlockBytes);
    let prefixCrc = 0;
    for (let start = 0; start < wholeEnd; start += verifySliceBytes) {
      const span = await this.readVerified(r, start, Math.min(wholeEnd, start + verifySliceBytes));
      prefixCrc = crc32c(span, prefixCrc);
    }
    if (wholeEnd < lengthBytes) {
      const end = r.appendEnds.find((e) => e.lengthBytes === lengthBytes);
      let kept: Uint8Array;
      if (end !== undefined) {
        kept = await this.readVerified(r, wholeEnd, lengthBytes, false);
        if (crc32c(kept) !== end.blockCrc) throw this.mismatch(r, wholeEnd, lengthBytes);
      } else {
        const span = await this.readVerified(r, wholeEnd, Math.min(r.lengthBytes, wholeEnd + checksumBlockBytes));
        kept = span.subarray(0, lengthBytes - wholeEnd);
      }
      blockCrcs[blocks - 1] = crc32c(kept);
      prefixCrc = crc32c(kept, prefixCrc);
    }
    return { blockCrcs, prefixCrc };
  }

  /**
   * Reads [start, end) (block-aligned start; end at a block boundary or the length) and checks every block.
   * Into `into` when it is long enough (no allocation: fresh memory costs more than the read), else a new buffer.
   */
  private async readVerified(r: Replica, start: number, end: number, verify = true, into?: Uint8Array): Promise<Uint8Array> {
    assert(start % checksumBlockBytes === 0 && end > start && end <= r.lengthBytes, 'readVerified: block-aligned span');
    if (r.packed !== undefined) return this.readPackedVerified(r, r.packed, start, end, verify, into);
    const span = into !== undefined && into.length >= end - start ? into.subarray(0, end - start) : new Uint8Array(end - start);
    const file = await this.fileFor(r);
    const n = await file.read(span, start);
    for (let blockStart = start; verify && blockStart < end; blockStart += checksumBlockBytes) {
      const blockEnd = Math.min(end, blockStart + checksumBlockBytes, r.lengthBytes);
      const ok = blockEnd - start <= n && crc32c(span.subarray(blockStart - start, blockEnd - start)) === r.blockCrcs[blockStart / checksumBlockBytes];
      if (!ok) throw this.mismatch(r, blockStart, blockEnd);
    }
    return span;
  }

  /**
   * readVerified of a packed replica: reads the stored bytes of exactly the blocks in [start, end) in one
   * read, decompresses each, and checks its CRC32C over the logical bytes.
   */
  private async readPackedVerified(r: Replica, packed: Uint32Array, start: number, end: number, verify: boolean, into?: Uint8Array): Promise<Uint8Array> {
    const firstBlock = start / checksumBlockBytes;
    const endBlock = Math.ceil(end / checksumBlockBytes);
    const storedStart = packed[firstBlock] as number;
    const stored = new Uint8Array((packed[endBlock] as number) - storedStart);
    const file = await this.fileFor(r);
    const n = await file.read(stored, storedStart);
    const span = into !== undefined && into.length >= end - start ? into.subarray(0, end - start) : new Uint8Array(end - start);
    for (let block = firstBlock; block < endBlock; block++) {
      const blockStart = block * checksumBlockBytes;
      const blockEnd = Math.min(end, blockStart + checksumBlockBytes);
      const from = (packed[block] as number) - storedStart;
      const to = (packed[block + 1] as number) - storedStart;
      const logical = to <= n ? unpackBlock(stored.subarray(from, to), blockEnd - blockStart) : undefined;
      if (logical !== undefined) span.set(logical, blockStart - start);
      // Without verification (a planted bug) an undecodable block reads as zeros.
      if (verify && (logical === undefined || crc32c(logical) !== r.blockCrcs[block])) throw this.mismatch(r, blockStart, blockEnd);
    }
    return span;
  }

  private mismatch(r: Replica, blockStart: number, blockEnd: number): ChunkStoreError {
    const block = blockStart / checksumBlockBytes;
    this.stats.checksumMismatches++;
    this.logger?.error({ handle: r.handle, version: r.version, block }, 'replica store: checksum mismatch');
    return new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${r.handle} version ${r.version}: block ${block} (bytes ${blockStart}..${blockEnd}) fails its CRC32C`);
  }

  /**
   * Rewrites a sealed, durable lz4 replica as packed blocks (see the header for the crash rule). A failure
   * leaves it sealed raw, which is as valid: logged, not thrown (the seal itself succeeded).
   */
  private async maybePack(r: Replica): Promise<void> {
    assert(r.sealed && r.packed === undefined && this.isDurable(r), 'pack a durable sealed raw replica');
    const path = this.packedPath(r.handle);
    const packed = new Uint32Array(blockCount(r.lengthBytes) + 1);
    let out: DiskFile | undefined;
    let named = false;
    try {
      out = await this.disk.open(path, { create: true });
      named = true;
      await out.truncate(0);
      for (let start = 0; start < r.lengthBytes; start += verifySliceBytes) {
        const slice = await this.readVerified(r, start, Math.min(r.lengthBytes, start + verifySliceBytes));
        const pieces: Uint8Array[] = [];
        for (let at = 0; at < slice.length; at += checksumBlockBytes) {
          const block = (start + at) / checksumBlockBytes;
          const piece = packBlock(slice.subarray(at, Math.min(slice.length, at + checksumBlockBytes)));
          pieces.push(piece);
          packed[block + 1] = (packed[block] as number) + piece.length;
        }
        await out.write(Buffer.concat(pieces), packed[start / checksumBlockBytes] as number);
      }
      await out.sync();
      await out.close();
      out = undefined;
      // The new name must be durable before a sidecar that names it.
      await this.disk.syncDirectory(this.dir);
    } catch (error) {
      await out?.close().catch(() => undefined);
      if (named) {
        await this.disk.unlink(path).catch(() => {
          r.strayPath = path;
        });
      }
      this.logger?.warn({ handle: r.handle, error: String(error) }, 'replica store: compressing a sealed replica failed; it stays raw');
      return;
    }
    const durable = r.durable;
    await this.closeFile(r); // the raw file; fileFor opens whichever layout is current
    r.packed = packed;
    try {
      await this.writeSidecar(r);
    } catch (error) {
      // Either sidecar may be on disk, and each names a file that exists: keep both files (the one not
      // named is removed with the replica, or by open()) and serve the raw one.
      r.packed = undefined;
      r.durable = durable;
      r.strayPath = path;
      this.logger?.warn({ handle: r.handle, error: String(error) }, 'replica store: committing a compressed replica failed; it stays raw');
      return;
    }
    const raw = this.dataPath(r.handle);
    r.strayPath = undefined;
    // Committed: the raw file is garbage now. If the unlink fails, delete() or open() removes it.
    await this.disk.unlink(raw).catch(() => {
      r.strayPath = raw;
    });
  }

  private async syncData(r: Replica): Promise<void> {
    if (!r.dataDirty) return;
    assert(r.file !== undefined, 'a data file with unsynced bytes stays open');
    try {
      await r.file.sync();
      r.dataDirty = false;
    } catch (error) {
      const failure = diskError(error, `fsync of chunk ${r.handle}`);
      r.syncFailure = failure.message;
      this.logger?.error({ handle: r.handle, error: failure.message }, 'replica store: data fsync failed; replica refuses writes');
      throw failure;
    }
  }

  /** Commits the replica's in-memory state as its sidecar: temp file, fsync, rename, directory fsync. */
  private async writeSidecar(r: Replica): Promise<void> {
    const bytes = encodeSidecar({ ...r, prefixCrc: this.prefixCrcOf(r) });
    const temp = `${this.metaPath(r.handle)}${tempSuffix}`;
    let file: DiskFile | undefined;
    try {
      file = await this.disk.open(temp, { create: true });
      await file.truncate(0);
      await file.write(bytes, 0);
      await file.sync();
      await file.close();
      file = undefined;
      await this.disk.rename(temp, this.metaPath(r.handle));
      await this.disk.syncDirectory(this.dir);
    } catch (error) {
      // The rename may have happened: what the disk holds is unknown, so the next sync rewrites the sidecar.
      r.durable = { version: -1, lengthBytes: -1, sealed: false };
      await file?.close().catch(() => undefined);
      await this.disk.unlink(temp).catch(() => undefined);
      throw diskError(error, `sidecar of chunk ${r.handle}`);
    }
    r.durable = { version: r.version, lengthBytes: r.lengthBytes, sealed: r.sealed };
    this.stats.syncs++;
  }
}
