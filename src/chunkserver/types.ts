/**
 * The contract between a chunkserver's replica store and the rest of the chunkserver (the data plane, the
 * metadata-leader agent, the scrubber). One interface, two disks underneath: the real file system and the
 * simulator's disk (lost unsynced writes, torn writes, bit flips), one conformance suite.
 *
 * A replica is one chunk (handle) at one version, held as a data file plus a small sidecar (handle,
 * version, length, sealed flag, a CRC32C for every `checksumBlockBytes` block). Writes are appends at the
 * replica's current length (a write pipeline streams a chunk front to back); a new pipeline after a
 * failure raises the version of the survivors' replicas (GFS), so a replica left at an older version is
 * recognisably stale.
 *
 * Durability: `sync()` makes everything written so far durable; a crash at any moment leaves every
 * replica at a state it had at some `sync()` (or a longer valid prefix), never a mix of two states and never
 * bytes whose checksum does not match. `seal()` syncs.
 */

/** Bytes per checksummed block: reads verify, and touch, only the blocks they cover. */
export const checksumBlockBytes = 64 * 1024;

/** The default (and largest) chunk size; a file may use a smaller one. */
export const chunkSizeBytesMax = 64 * 1024 * 1024;

/**
 * How a replica is stored. `lz4`: raw while unsealed, rewritten at seal as independently LZ4-compressed
 * blocks (compression.ts); reads, CRCs and the wire always deal in logical (uncompressed) bytes.
 */
export type Compression = 'none' | 'lz4';

export function isCompression(value: unknown): value is Compression {
  return value === 'none' || value === 'lz4';
}

export interface CreateOptions {
  /** Default `none`. */
  readonly compression?: Compression;
}

export interface ReplicaInfo {
  readonly handle: number;
  readonly version: number;
  readonly lengthBytes: number;
  readonly sealed: boolean;
  /** CRC32C of the whole replica's bytes, once sealed (the value the metadata leader records). */
  readonly checksum?: number;
  /** Present (`lz4`) only for a compressed replica: a copy of it must be created compressed too. */
  readonly compression?: 'lz4';
}

export interface StoreUsage {
  readonly capacityBytes: number;
  readonly usedBytes: number;
}

/** Stable codes of the store's expected failures (thrown as `ChunkStoreError`). */
export type ChunkStoreErrorCode =
  | 'NO_SUCH_REPLICA' // unknown handle
  | 'STALE_VERSION' // the caller's version differs from the replica's (older: stale caller; newer: stale replica)
  | 'REPLICA_EXISTS' // create of a handle already held
  | 'BAD_OFFSET' // append not at the current length, or a read past the end
  | 'SEALED' // write to a sealed replica
  | 'TOO_LARGE' // past the chunk size
  | 'CHECKSUM_MISMATCH' // stored bytes do not match their block checksum (the replica is corrupt)
  | 'DISK_FULL' // ENOSPC
  | 'IO_ERROR' // any other I/O failure
  | 'NOT_LOCAL'; // a short-circuit local read of a replica that cannot be read from its files now (see localPaths)

export class ChunkStoreError extends Error {
  constructor(
    readonly code: ChunkStoreErrorCode,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'ChunkStoreError';
  }
}

/** A replica's files on this host (ChunkStore.localPaths). */
export interface LocalReplicaPaths {
  /** The replica's bytes, raw (block k at offset k * checksumBlockBytes). */
  readonly dataPath: string;
  /** Its sidecar (sidecar.ts): version, length, sealed, one CRC32C per block. */
  readonly metaPath: string;
}

/** One piece of an `appendPieces`: bytes and, when known, their CRC32Cs on the block grid (see `append`). */
export interface AppendPiece {
  readonly data: Uint8Array;
  readonly blockCrcs?: readonly number[];
}

/** `store.appendPieces` when the store has it, else one `append` per piece. */
export async function appendAll(store: ChunkStore, handle: number, version: number, offset: number, pieces: readonly AppendPiece[]): Promise<void> {
  if (store.appendPieces !== undefined) return store.appendPieces(handle, version, offset, pieces);
  for (const piece of pieces) {
    await store.append(handle, version, offset, piece.data, piece.blockCrcs);
    offset += piece.data.length;
  }
}

export interface ChunkStore {
  /**
   * Starts an empty replica of `handle` at `version`, stored with `options.compression` (default none).
   * REPLICA_EXISTS if one is held (at any version).
   */
  create(handle: number, version: number, options?: CreateOptions): Promise<void>;
  /**
   * Appends `data` at `offset`, which must be the replica's current length (BAD_OFFSET otherwise). Not
   * durable until `sync()`. The caller keeps ownership of `data` once the promise settles.
   * `blockCrcs`: the CRC32C of each piece of `data` on the block grid (block-crcs.ts), already computed and
   * checked upstream (the write pipeline): the store keeps them instead of checksumming `data` again.
   */
  append(handle: number, version: number, offset: number, data: Uint8Array, blockCrcs?: readonly number[]): Promise<void>;
  /**
   * `append` of each piece in turn, in one disk write where the store can (a pipeline hop batches the
   * packets that arrived while its previous append was on the disk); all or nothing in memory. Optional: the
   * hop appends one piece at a time to a store without it (appendAll).
   */
  appendPieces?(handle: number, version: number, offset: number, pieces: readonly AppendPiece[]): Promise<void>;
  /** Makes every append so far durable (fsync of data, then the sidecar). */
  sync(handle: number): Promise<void>;
  /**
   * A new write pipeline after a failure: raises an unsealed replica from `fromVersion` to `toVersion`
   * and cuts it to `lengthBytes` (the length every replica of the old pipeline acknowledged; the writer
   * resends from there), durably. STALE_VERSION unless `fromVersion <= version <= toVersion` (a setup that
   * failed part way leaves survivors between the two; a retried setup finds `toVersion`); BAD_OFFSET if it
   * holds fewer than `lengthBytes` bytes.
   */
  bumpVersion(handle: number, fromVersion: number, toVersion: number, lengthBytes: number): Promise<void>;
  /** Fixes the length (truncating bytes past it), syncs, and returns the info with the whole-chunk CRC32C. */
  seal(handle: number, version: number, lengthBytes: number): Promise<ReplicaInfo>;
  /**
   * Reads `[offset, offset + length)` of the replica at `version`, verifying the checksum of every block it
   * touches (and only those). CHECKSUM_MISMATCH names the first bad block. `into`: a buffer the store may
   * read into instead of allocating (the result is then a view of it; the caller does not reuse `into` while
   * it uses the result); a store may ignore it, and does when it is shorter than `readSpanBytes`.
   */
  read(handle: number, version: number, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Where the files of a sealed, durable, uncompressed replica at `version` are (absolute paths), so that a
   * client on this host can read and verify them itself (short-circuit local reads, src/client/local-read.ts).
   * NOT_LOCAL when the replica is not in that state (unsealed, its last change not yet durable, or packed);
   * NO_SUCH_REPLICA and STALE_VERSION as `read`. Absent where a client cannot open the files (the simulator).
   */
  localPaths?(handle: number, version: number): Promise<LocalReplicaPaths>;
  /** Re-reads the whole replica and verifies every block (the scrubber). */
  verify(handle: number): Promise<void>;
  /** Removes the replica if held at `version` or below; returns whether it removed one. */
  delete(handle: number, versionAtMost: number): Promise<boolean>;
  info(handle: number): ReplicaInfo | undefined;
  /** Every replica held (the full chunk report). */
  list(): readonly ReplicaInfo[];
  usage(): Promise<StoreUsage>;
  close(): Promise<void>;
}

/** Bytes a read of [offset, offset + length) spans: whole checksum blocks (the most a store reads for it). */
export function readSpanBytes(offset: number, length: number): number {
  if (length === 0) return 0;
  const first = Math.floor(offset / checksumBlockBytes);
  const last = Math.floor((offset + length - 1) / checksumBlockBytes);
  return (last - first + 1) * checksumBlockBytes;
}
