/**
 * A ChunkStore in memory, following the contract of src/chunkserver/types.ts, for data-plane tests and
 * benchmarks. Hooks inject delays (a hook returning a promise holds the call) and errors (a hook that
 * throws fails the call, before any state changes). `discardData` keeps only lengths and a running CRC32C
 * (benchmarks moving more bytes than memory holds; reads then fail with IO_ERROR).
 */
import { crc32c } from '@node-rs/crc32';
import type { AppendPiece, ChunkStore, ReplicaInfo, StoreUsage } from '../../src/chunkserver/types.ts';
import { ChunkStoreError, chunkSizeBytesMax } from '../../src/chunkserver/types.ts';

export interface StoreCall {
  readonly op: 'create' | 'append' | 'sync' | 'bumpVersion' | 'seal' | 'read';
  readonly handle: number;
  readonly version?: number;
  readonly offset?: number;
  readonly length?: number;
}

export interface MemoryStoreHooks {
  /** Runs before the call changes anything: return a promise to delay it, throw to fail it. */
  before?: (call: StoreCall) => void | Promise<void>;
  /** Runs once the call completed (appends: the bytes are in the replica). */
  after?: (call: StoreCall) => void;
}

interface Replica {
  version: number;
  data: Buffer;
  lengthBytes: number;
  /** Running CRC32C of [0, lengthBytes) while appending (discardData mode relies on it). */
  runningCrc: number;
  sealed: boolean;
  checksum: number | undefined;
  corrupt: boolean;
}

export class MemoryChunkStore implements ChunkStore {
  readonly hooks: MemoryStoreHooks;
  private readonly replicas = new Map<number, Replica>();
  private readonly discardData: boolean;
  private closed = false;

  /**
   * Present only with `appendPieces: true`: a pipeline hop's batch is then one store call (one `append` hook
   * call covering every piece), as on FileChunkStore; without it the hop appends piece by piece (appendAll).
   */
  readonly appendPieces?: (handle: number, version: number, offset: number, pieces: readonly AppendPiece[]) => Promise<void>;

  constructor(options: { hooks?: MemoryStoreHooks; discardData?: boolean; capacityBytes?: number; appendPieces?: boolean } = {}) {
    this.hooks = options.hooks ?? {};
    this.discardData = options.discardData ?? false;
    this.capacityBytes = options.capacityBytes ?? 1 << 40;
    if (options.appendPieces === true)
      this.appendPieces = (handle, version, offset, pieces) => this.appendAll(handle, version, offset, pieces.map((p) => p.data));
  }

  private readonly capacityBytes: number;

  /** Makes reads of `handle` fail their checksum check (a bit flip on disk). */
  corrupt(handle: number): void {
    this.get(handle).corrupt = true;
  }

  async create(handle: number, version: number): Promise<void> {
    await this.enter({ op: 'create', handle, version });
    if (this.replicas.has(handle)) throw new ChunkStoreError('REPLICA_EXISTS', `chunk ${handle} is held`);
    this.replicas.set(handle, {
      version,
      data: Buffer.alloc(0),
      lengthBytes: 0,
      runningCrc: 0,
      sealed: false,
      checksum: undefined,
      corrupt: false,
    });
    this.hooks.after?.({ op: 'create', handle, version });
  }

  append(handle: number, version: number, offset: number, data: Uint8Array): Promise<void> {
    return this.appendAll(handle, version, offset, [data]);
  }

  /** One store call for `pieces`, back to back at `offset`: checked whole before any byte is kept. */
  private async appendAll(handle: number, version: number, offset: number, pieces: readonly Uint8Array[]): Promise<void> {
    const length = pieces.reduce((sum, data) => sum + data.length, 0);
    const call: StoreCall = { op: 'append', handle, version, offset, length };
    await this.enter(call);
    const replica = this.at(handle, version);
    if (replica.sealed) throw new ChunkStoreError('SEALED', `chunk ${handle} is sealed`);
    if (offset !== replica.lengthBytes)
      throw new ChunkStoreError('BAD_OFFSET', `append at ${offset}, chunk ${handle} holds ${replica.lengthBytes}`);
    if (offset + length > chunkSizeBytesMax) throw new ChunkStoreError('TOO_LARGE', `append past ${chunkSizeBytesMax}`);
    if (!this.discardData && replica.data.length < offset + length) {
      const grown = Buffer.allocUnsafe(Math.min(chunkSizeBytesMax, Math.max(offset + length, replica.data.length * 2)));
      replica.data.copy(grown, 0, 0, replica.lengthBytes);
      replica.data = grown;
    }
    for (const data of pieces) {
      if (!this.discardData) replica.data.set(data, replica.lengthBytes);
      replica.runningCrc = crc32c(Buffer.from(data.buffer, data.byteOffset, data.length), replica.runningCrc);
      replica.lengthBytes += data.length;
    }
    this.hooks.after?.(call);
  }

  async sync(handle: number): Promise<void> {
    await this.enter({ op: 'sync', handle });
    this.get(handle);
    this.hooks.after?.({ op: 'sync', handle });
  }

  async bumpVersion(handle: number, fromVersion: number, toVersion: number, lengthBytes: number): Promise<void> {
    await this.enter({ op: 'bumpVersion', handle, version: toVersion, length: lengthBytes });
    const held = this.replicas.get(handle);
    if (held === undefined) throw new ChunkStoreError('NO_SUCH_REPLICA', `no replica of chunk ${handle}`);
    if (held.version < fromVersion || held.version > toVersion)
      throw new ChunkStoreError('STALE_VERSION', `chunk ${handle} is at ${held.version}, not in [${fromVersion}, ${toVersion}]`);
    const replica = held;
    if (toVersion <= fromVersion) throw new ChunkStoreError('STALE_VERSION', `cannot lower ${fromVersion} to ${toVersion}`);
    if (replica.sealed) {
      // As the real store: a sealed survivor of a failed seal takes the new version at its sealed length.
      if (lengthBytes !== replica.lengthBytes) throw new ChunkStoreError('SEALED', `chunk ${handle} is sealed`);
      replica.version = toVersion;
      this.hooks.after?.({ op: 'bumpVersion', handle, version: toVersion, length: lengthBytes });
      return;
    }
    if (toVersion <= fromVersion) throw new ChunkStoreError('STALE_VERSION', `cannot lower ${fromVersion} to ${toVersion}`);
    if (replica.lengthBytes < lengthBytes)
      throw new ChunkStoreError('BAD_OFFSET', `chunk ${handle} holds ${replica.lengthBytes} < ${lengthBytes} bytes`);
    if (this.discardData && replica.lengthBytes !== lengthBytes)
      throw new ChunkStoreError('IO_ERROR', 'a discarding store cannot cut a replica');
    replica.version = toVersion;
    replica.lengthBytes = lengthBytes;
    if (!this.discardData) replica.runningCrc = crc32c(replica.data.subarray(0, lengthBytes));
    this.hooks.after?.({ op: 'bumpVersion', handle, version: toVersion, length: lengthBytes });
  }

  async seal(handle: number, version: number, lengthBytes: number): Promise<ReplicaInfo> {
    await this.enter({ op: 'seal', handle, version, length: lengthBytes });
    const replica = this.at(handle, version);
    if (replica.sealed && replica.lengthBytes !== lengthBytes)
      throw new ChunkStoreError('SEALED', `chunk ${handle} is sealed at ${replica.lengthBytes}`);
    if (lengthBytes > replica.lengthBytes)
      throw new ChunkStoreError('BAD_OFFSET', `seal at ${lengthBytes}, chunk ${handle} holds ${replica.lengthBytes}`);
    if (!replica.sealed) {
      if (lengthBytes !== replica.lengthBytes) {
        if (this.discardData) throw new ChunkStoreError('IO_ERROR', 'a discarding store cannot cut a replica');
        replica.runningCrc = crc32c(replica.data.subarray(0, lengthBytes));
      }
      replica.lengthBytes = lengthBytes;
      replica.sealed = true;
      replica.checksum = replica.runningCrc;
      if (!this.discardData) replica.data = Buffer.from(replica.data.subarray(0, lengthBytes));
    }
    this.hooks.after?.({ op: 'seal', handle, version, length: lengthBytes });
    return this.describe(handle, replica);
  }

  async read(handle: number, version: number, offset: number, length: number): Promise<Uint8Array> {
    await this.enter({ op: 'read', handle, version, offset, length });
    const replica = this.at(handle, version);
    if (offset < 0 || length < 0 || offset + length > replica.lengthBytes)
      throw new ChunkStoreError('BAD_OFFSET', `read [${offset}, ${offset + length}) of ${replica.lengthBytes} bytes`);
    if (replica.corrupt && length > 0) throw new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${handle} block ${Math.floor(offset / 65536)}`);
    if (this.discardData) throw new ChunkStoreError('IO_ERROR', 'a discarding store keeps no bytes');
    return Buffer.from(replica.data.subarray(offset, offset + length));
  }

  verify(handle: number): Promise<void> {
    const replica = this.get(handle);
    if (replica.corrupt) return Promise.reject(new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${handle}`));
    return Promise.resolve();
  }

  delete(handle: number, versionAtMost: number): Promise<boolean> {
    const replica = this.replicas.get(handle);
    if (replica === undefined || replica.version > versionAtMost) return Promise.resolve(false);
    this.replicas.delete(handle);
    return Promise.resolve(true);
  }

  info(handle: number): ReplicaInfo | undefined {
    const replica = this.replicas.get(handle);
    return replica === undefined ? undefined : this.describe(handle, replica);
  }

  list(): readonly ReplicaInfo[] {
    return [...this.replicas].map(([handle, replica]) => this.describe(handle, replica));
  }

  usage(): Promise<StoreUsage> {
    let usedBytes = 0;
    for (const replica of this.replicas.values()) usedBytes += replica.lengthBytes;
    return Promise.resolve({ capacityBytes: this.capacityBytes, usedBytes });
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private async enter(call: StoreCall): Promise<void> {
    if (this.closed) throw new ChunkStoreError('IO_ERROR', 'store closed');
    await this.hooks.before?.(call);
  }

  private get(handle: number): Replica {
    const replica = this.replicas.get(handle);
    if (replica === undefined) throw new ChunkStoreError('NO_SUCH_REPLICA', `no replica of chunk ${handle}`);
    return replica;
  }

  private at(handle: number, version: number): Replica {
    const replica = this.get(handle);
    if (replica.version !== version)
      throw new ChunkStoreError('STALE_VERSION', `chunk ${handle} is at version ${replica.version}, not ${version}`);
    return replica;
  }

  private describe(handle: number, replica: Replica): ReplicaInfo {
    const base = { handle, version: replica.version, lengthBytes: replica.lengthBytes, sealed: replica.sealed };
    return replica.checksum === undefined ? base : { ...base, checksum: replica.checksum };
  }
}
