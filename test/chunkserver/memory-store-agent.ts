/**
 * A plain in-memory ChunkStore (src/chunkserver/types.ts) for the agent's and server's tests, until the real
 * store is merged. It follows the contract's errors and versions; it has no durability story (nothing to
 * crash) and verifies no checksums except a corruption switch (`corrupt(handle)`) for read/verify tests.
 * Also: an id store in memory and a data server that does nothing but listen.
 */
import { createServer } from 'node:net';
import { crc32c } from '@node-rs/crc32';
import type { IdStore } from '../../src/chunkserver/agent.ts';
import type { DataServer } from '../../src/chunkserver/server.ts';
import type { ChunkStore, ReplicaInfo, StoreUsage } from '../../src/chunkserver/types.ts';
import { ChunkStoreError, chunkSizeBytesMax } from '../../src/chunkserver/types.ts';

interface Replica {
  version: number;
  data: Buffer;
  sealed: boolean;
  checksum?: number;
  corrupt: boolean;
  /** Reads reaching this byte fail CHECKSUM_MISMATCH (a bad block from here on). */
  corruptFromByte?: number;
}

export class MemoryChunkStore implements ChunkStore {
  private readonly replicas = new Map<number, Replica>();
  /** Every delete call, in order (handle, versionAtMost, result). */
  readonly deletes: { handle: number; versionAtMost: number; removed: boolean }[] = [];

  constructor(readonly capacityBytes = 1e12) {}

  private get(handle: number, version?: number): Replica {
    const r = this.replicas.get(handle);
    if (r === undefined) throw new ChunkStoreError('NO_SUCH_REPLICA', `no replica of chunk ${handle}`);
    if (version !== undefined && r.version !== version) {
      throw new ChunkStoreError(
        'STALE_VERSION',
        `chunk ${handle} is at version ${r.version}, not ${version}`,
      );
    }
    return r;
  }

  create(handle: number, version: number): Promise<void> {
    if (this.replicas.has(handle))
      return Promise.reject(new ChunkStoreError('REPLICA_EXISTS', `chunk ${handle}`));
    this.replicas.set(handle, { version, data: Buffer.alloc(0), sealed: false, corrupt: false });
    return Promise.resolve();
  }

  append(handle: number, version: number, offset: number, data: Uint8Array): Promise<void> {
    return settle(() => {
      const r = this.get(handle, version);
      if (r.sealed) throw new ChunkStoreError('SEALED', `chunk ${handle}`);
      if (offset !== r.data.length)
        throw new ChunkStoreError('BAD_OFFSET', `append at ${offset}, length ${r.data.length}`);
      if (offset + data.length > chunkSizeBytesMax) throw new ChunkStoreError('TOO_LARGE', `chunk ${handle}`);
      r.data = Buffer.concat([r.data, data]);
    });
  }

  sync(handle: number): Promise<void> {
    return settle(() => {
      this.get(handle);
    });
  }

  bumpVersion(handle: number, fromVersion: number, toVersion: number, lengthBytes: number): Promise<void> {
    return settle(() => {
      const r = this.get(handle, fromVersion);
      if (r.sealed) throw new ChunkStoreError('SEALED', `chunk ${handle}`);
      if (r.data.length < lengthBytes)
        throw new ChunkStoreError('BAD_OFFSET', `holds ${r.data.length} < ${lengthBytes}`);
      r.version = toVersion;
      r.data = r.data.subarray(0, lengthBytes);
    });
  }

  seal(handle: number, version: number, lengthBytes: number): Promise<ReplicaInfo> {
    return settle(() => {
      const r = this.get(handle, version);
      if (r.data.length < lengthBytes)
        throw new ChunkStoreError('BAD_OFFSET', `holds ${r.data.length} < ${lengthBytes}`);
      r.data = r.data.subarray(0, lengthBytes);
      r.sealed = true;
      r.checksum = crc32c(r.data);
      return this.info(handle)!;
    });
  }

  read(handle: number, version: number, offset: number, length: number): Promise<Uint8Array> {
    return settle(() => {
      const r = this.get(handle, version);
      if (offset < 0 || length < 0 || offset + length > r.data.length)
        throw new ChunkStoreError('BAD_OFFSET', `read past ${r.data.length}`);
      if (r.corrupt) throw new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${handle} block 0`);
      if (r.corruptFromByte !== undefined && offset + length > r.corruptFromByte) throw new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${handle} at ${r.corruptFromByte}`);
      return r.data.subarray(offset, offset + length);
    });
  }

  verify(handle: number): Promise<void> {
    return settle(() => {
      if (this.get(handle).corrupt) throw new ChunkStoreError('CHECKSUM_MISMATCH', `chunk ${handle} block 0`);
    });
  }

  delete(handle: number, versionAtMost: number): Promise<boolean> {
    const r = this.replicas.get(handle);
    const removed = r !== undefined && r.version <= versionAtMost;
    if (removed) this.replicas.delete(handle);
    this.deletes.push({ handle, versionAtMost, removed });
    return Promise.resolve(removed);
  }

  info(handle: number): ReplicaInfo | undefined {
    const r = this.replicas.get(handle);
    if (r === undefined) return undefined;
    return {
      handle,
      version: r.version,
      lengthBytes: r.data.length,
      sealed: r.sealed,
      ...(r.checksum !== undefined ? { checksum: r.checksum } : {}),
    };
  }

  list(): readonly ReplicaInfo[] {
    return [...this.replicas.keys()].sort((a, b) => a - b).map((h) => this.info(h)!);
  }

  usage(): Promise<StoreUsage> {
    let usedBytes = 0;
    for (const r of this.replicas.values()) usedBytes += r.data.length;
    return Promise.resolve({ capacityBytes: this.capacityBytes, usedBytes });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Test switch: reads of `handle` reaching byte `offset` fail with CHECKSUM_MISMATCH from now on. */
  corruptFrom(handle: number, offset: number): void {
    this.get(handle).corruptFromByte = offset;
  }

  /** Test switch: reads and verify of `handle` fail with CHECKSUM_MISMATCH from now on. */
  corrupt(handle: number): void {
    this.get(handle).corrupt = true;
  }

  /** A replica at `version` holding `data`, sealed if asked. */
  async put(handle: number, version: number, data: Uint8Array, sealed: boolean): Promise<ReplicaInfo> {
    await this.create(handle, version);
    await this.append(handle, version, 0, data);
    return sealed ? this.seal(handle, version, data.length) : this.info(handle)!;
  }
}

/** An IdStore in memory, counting saves. */
export class MemoryIdStore implements IdStore {
  saves = 0;
  constructor(public id: number | undefined = undefined) {}
  load(): Promise<number | undefined> {
    return Promise.resolve(this.id);
  }
  save(id: number): Promise<void> {
    this.saves++;
    this.id = id;
    return Promise.resolve();
  }
}

/** A data server placeholder: listens (so the port is real) and closes every connection. */
export async function startIdleDataServer(listen: { host: string; port: number }): Promise<DataServer> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : listen.port;
  return {
    port,
    copyReplica: () => Promise.reject(new Error('the placeholder data server copies nothing')),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Runs `fn` now; its result or throw as a promise (the store's methods are asynchronous by contract). */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}
