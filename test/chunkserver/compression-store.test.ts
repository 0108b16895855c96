/**
 * FileChunkStore with lz4 replicas: the conformance suite for replicas created compressed (on both disks),
 * then what packing at seal promises: fewer stored bytes, equal logical bytes after reopen, range reads
 * that read and decompress only their blocks, corruption found per block, and a failed pack that leaves a
 * valid raw replica.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Disk, DiskFile } from '../../src/chunkserver/disk.ts';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import type { ChunkStore, CreateOptions, ReplicaInfo, StoreUsage } from '../../src/chunkserver/types.ts';
import { checksumBlockBytes } from '../../src/chunkserver/types.ts';
import { SimDisk } from '../sim/disk.ts';
import { Prng } from '../sim/prng.ts';
import { compressible } from './compression-fixtures.ts';
import type { StoreFixture } from './store-conformance.ts';
import { pattern, rejectsCode, runStoreConformance } from './store-conformance.ts';

const B = checksumBlockBytes;
const chunkSizeBytes = 1024 * 1024;

/** Creates every replica lz4 and hides the `compression` field, so the plain conformance suite applies. */
class Lz4Everywhere implements ChunkStore {
  constructor(readonly inner: FileChunkStore) {}
  create(handle: number, version: number, _options?: CreateOptions): Promise<void> {
    return this.inner.create(handle, version, { compression: 'lz4' });
  }
  append(handle: number, version: number, offset: number, data: Uint8Array): Promise<void> {
    return this.inner.append(handle, version, offset, data);
  }
  sync(handle: number): Promise<void> {
    return this.inner.sync(handle);
  }
  bumpVersion(handle: number, fromVersion: number, toVersion: number, lengthBytes: number): Promise<void> {
    return this.inner.bumpVersion(handle, fromVersion, toVersion, lengthBytes);
  }
  async seal(handle: number, version: number, lengthBytes: number): Promise<ReplicaInfo> {
    return plain(await this.inner.seal(handle, version, lengthBytes));
  }
  read(handle: number, version: number, offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(handle, version, offset, length);
  }
  verify(handle: number): Promise<void> {
    return this.inner.verify(handle);
  }
  delete(handle: number, versionAtMost: number): Promise<boolean> {
    return this.inner.delete(handle, versionAtMost);
  }
  info(handle: number): ReplicaInfo | undefined {
    const info = this.inner.info(handle);
    return info === undefined ? undefined : plain(info);
  }
  list(): readonly ReplicaInfo[] {
    return this.inner.list().map(plain);
  }
  usage(): Promise<StoreUsage> {
    return this.inner.usage();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function plain(info: ReplicaInfo): ReplicaInfo {
  const { compression, ...rest } = info;
  if (compression !== 'lz4') throw new Error(`replica ${info.handle} is not lz4`);
  return rest;
}

async function nodeFixture(): Promise<StoreFixture & { dir: string }> {
  const root = await mkdtemp(join(tmpdir(), 'rfs-lz4-store-'));
  const dir = join(root, 'chunks');
  return {
    dir,
    chunkSizeBytes,
    open: async () => new Lz4Everywhere(await FileChunkStore.open(new NodeDisk(), dir, { chunkSizeBytes })),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

runStoreConformance(t, 'lz4 replicas on NodeDisk', nodeFixture);
runStoreConformance(t, 'lz4 replicas on SimDisk', () => {
  const disk = new SimDisk(Prng.fromSeed(5).split('disk'));
  return Promise.resolve({
    chunkSizeBytes,
    open: async () => new Lz4Everywhere(await FileChunkStore.open(disk, '/chunks', { chunkSizeBytes })),
    cleanup: () => Promise.resolve(),
  });
});

/** A Disk that counts the bytes read from files whose path ends with `suffix`. */
class CountingDisk implements Disk {
  reads: { position: number; lengthBytes: number }[] = [];
  constructor(
    private readonly inner: Disk,
    private readonly suffix: string,
  ) {}
  async open(path: string, options: { readonly create: boolean }): Promise<DiskFile> {
    const file = await this.inner.open(path, options);
    if (!path.endsWith(this.suffix)) return file;
    return {
      read: async (into, position) => {
        this.reads.push({ position, lengthBytes: into.length });
        return file.read(into, position);
      },
      write: (data, position) => file.write(data, position),
      writev: (pieces, position) => file.writev(pieces, position),
      truncate: (n) => file.truncate(n),
      sync: () => file.sync(),
      sizeBytes: () => file.sizeBytes(),
      close: () => file.close(),
    };
  }
  rename = (from: string, to: string) => this.inner.rename(from, to);
  unlink = (path: string) => this.inner.unlink(path);
  list = (dir: string) => this.inner.list(dir);
  makeDirectory = (dir: string) => this.inner.makeDirectory(dir);
  syncDirectory = (dir: string) => this.inner.syncDirectory(dir);
  space = (dir: string) => this.inner.space(dir);
}

const equalBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

void t.test('a sealed lz4 replica is stored compressed, reads back equal, also after reopen', async (t) => {
  const fixture = await nodeFixture();
  t.teardown(() => fixture.cleanup());
  let store = await FileChunkStore.open(new NodeDisk(), fixture.dir, { chunkSizeBytes });
  const data = compressible(3, 10 * B + 1234);
  await store.create(1, 1, { compression: 'lz4' });
  await store.create(2, 1); // a plain replica next to it stays raw
  for (let at = 0; at < data.length; at += 50_000) await store.append(1, 1, at, data.subarray(at, Math.min(data.length, at + 50_000)));
  await store.append(2, 1, 0, data);
  t.same(store.info(1), { handle: 1, version: 1, lengthBytes: data.length, sealed: false, compression: 'lz4' });
  const sealed = await store.seal(1, 1, data.length);
  await store.seal(2, 1, data.length);
  t.equal(sealed.compression, 'lz4');
  t.equal(sealed.checksum, store.info(2)?.checksum, 'the same logical CRC32C as the plain replica');
  const names = (await readdir(fixture.dir)).sort();
  t.same(names, ['1.lz4', '1.meta', '2.data', '2.meta'], 'the raw file is gone, the packed one named');
  const storedBytes = (await stat(join(fixture.dir, '1.lz4'))).size;
  t.ok(storedBytes * 3 < data.length, `stored ${storedBytes} bytes for ${data.length} logical`);
  t.same(store.compressionUsage(), { logicalBytes: data.length, storedBytes });
  t.equal((await store.usage()).usedBytes, storedBytes + data.length, 'usage counts stored bytes');
  t.ok(equalBytes(await store.read(1, 1, 0, data.length), data), 'whole replica');
  for (const [from, length] of [[0, 1], [B - 1, 2], [3 * B + 17, 2 * B], [10 * B, 1234], [5 * B, B]] as const) {
    t.ok(equalBytes(await store.read(1, 1, from, length), data.subarray(from, from + length)), `range [${from}, +${length})`);
  }
  await store.verify(1);
  await rejectsCode(t, store.append(1, 1, data.length, new Uint8Array(1)), 'SEALED', 'append after seal');
  t.same(await store.seal(1, 1, data.length), sealed, 'seal again is idempotent');
  await store.close();
  store = await FileChunkStore.open(new NodeDisk(), fixture.dir, { chunkSizeBytes });
  t.same(store.recovery, { replicas: 2, tempFilesRemoved: 0, orphanDataFilesRemoved: 0, tailsTruncated: 0, corruptReplicasRemoved: 0 });
  t.same(store.info(1), sealed);
  t.ok(equalBytes(await store.read(1, 1, 2 * B + 5, 3 * B), data.subarray(2 * B + 5, 5 * B + 5)), 'range after reopen');
  await store.verify(1);
  t.ok(await store.delete(1, 1));
  t.same((await readdir(fixture.dir)).sort(), ['2.data', '2.meta'], 'delete removes the packed file');
  await store.close();
});

void t.test('a range read of a packed replica reads and decompresses only the blocks it covers', async (t) => {
  const sim = new SimDisk(Prng.fromSeed(9).split('disk'));
  const disk = new CountingDisk(sim, '.lz4');
  const store = await FileChunkStore.open(disk, '/chunks', { chunkSizeBytes });
  const data = compressible(4, 16 * B);
  await store.create(1, 1, { compression: 'lz4' });
  await store.append(1, 1, 0, data);
  await store.seal(1, 1, data.length);
  const storedBytes = sim.contents('/chunks/1.lz4')?.length ?? 0;
  t.ok(storedBytes > 0 && storedBytes < data.length / 3, `packed to ${storedBytes} bytes`);
  disk.reads = [];
  const got = await store.read(1, 1, 7 * B + 100, 200);
  t.ok(equalBytes(got, data.subarray(7 * B + 100, 7 * B + 300)));
  t.equal(disk.reads.length, 1, 'one read of the packed file');
  const [one] = disk.reads;
  t.ok(one !== undefined && one.position > 0 && one.lengthBytes * 8 < storedBytes, `read ${one?.lengthBytes} of ${storedBytes} stored bytes at ${one?.position}`);
  disk.reads = [];
  await store.read(1, 1, 3 * B - 1, 2); // straddles blocks 2 and 3
  const two = disk.reads[0];
  t.ok(two !== undefined && two.lengthBytes > (one?.lengthBytes ?? 0) && two.lengthBytes * 4 < storedBytes, 'two blocks read for a straddling range');

  // Damage block 9's stored bytes: only reads that cover block 9 fail; every other block still reads.
  const offsets: number[] = [];
  for (let k = 0; k <= 16; k++) {
    disk.reads = [];
    if (k < 16) await store.read(1, 1, k * B, 1);
    offsets.push(k < 16 ? (disk.reads[0]?.position ?? -1) : storedBytes);
  }
  const nine = offsets[9] as number;
  sim.flipBit('/chunks/1.lz4', nine + Math.floor(((offsets[10] as number) - nine) / 2), 3);
  await rejectsCode(t, store.read(1, 1, 9 * B + 10, 10), 'CHECKSUM_MISMATCH', 'a read of the damaged block');
  await rejectsCode(t, store.read(1, 1, 8 * B, 2 * B), 'CHECKSUM_MISMATCH', 'a read across it');
  t.ok(equalBytes(await store.read(1, 1, 8 * B, B), data.subarray(8 * B, 9 * B)), 'the block before');
  t.ok(equalBytes(await store.read(1, 1, 10 * B, 6 * B), data.subarray(10 * B)), 'the blocks after');
  await rejectsCode(t, store.verify(1), 'CHECKSUM_MISMATCH', 'the scrubber finds it');
  // A damaged size prefix is a mismatch too (never a huge allocation or a crash).
  sim.flipBit('/chunks/1.lz4', (offsets[4] as number) + 2, 7);
  await rejectsCode(t, store.read(1, 1, 4 * B, 1), 'CHECKSUM_MISMATCH', 'a flipped size prefix');
  await store.close();
});

void t.test('incompressible blocks are kept raw inside a packed replica; mixed replicas read back equal', async (t) => {
  const sim = new SimDisk(Prng.fromSeed(11).split('disk'));
  const store = await FileChunkStore.open(sim, '/chunks', { chunkSizeBytes });
  const parts = [compressible(1, 2 * B), pattern(2, 3 * B + 7), compressible(3, B - 3), pattern(4, 100)];
  const data = Buffer.concat(parts);
  await store.create(4, 2, { compression: 'lz4' });
  await store.append(4, 2, 0, data);
  await store.seal(4, 2, data.length);
  const stored = sim.contents('/chunks/4.lz4')?.length ?? 0;
  const random = 3 * B + 7 + 100;
  t.ok(stored >= random && stored < random + B, `stored ${stored}: the random blocks raw, the rest compressed`);
  t.ok(equalBytes(await store.read(4, 2, 0, data.length), data));
  t.ok(equalBytes(await store.read(4, 2, 2 * B - 5, B + 10), data.subarray(2 * B - 5, 3 * B + 5)));
  await store.verify(4);
  // An empty lz4 replica seals without packing (nothing to compress).
  await store.create(5, 1, { compression: 'lz4' });
  t.equal((await store.seal(5, 1, 0)).lengthBytes, 0);
  t.notOk(sim.paths().includes('/chunks/5.lz4'), 'no packed file for an empty replica');
  await store.close();
});

void t.test('a pack that fails (I/O error, full disk) leaves the replica sealed raw and valid', async (t) => {
  const data = compressible(6, 5 * B + 9);
  for (let skip = 0; skip < 12; skip++) {
    const sim = new SimDisk(Prng.fromSeed(100 + skip).split('disk'));
    const store = await FileChunkStore.open(sim, '/chunks', { chunkSizeBytes });
    await store.create(1, 1, { compression: 'lz4' });
    await store.append(1, 1, 0, data);
    await store.sync(1);
    // Fail the seal's (skip)-th disk call: early ones fail the seal itself, later ones only the pack.
    sim.failNext(1, undefined, skip);
    let sealedOk = true;
    try {
      await store.seal(1, 1, data.length);
    } catch {
      sealedOk = false;
    }
    sim.failNext(0);
    const info = store.info(1);
    if (sealedOk) {
      t.equal(info?.sealed, true, `skip ${skip}: sealed`);
      t.ok(equalBytes(await store.read(1, 1, 0, data.length), data), `skip ${skip}: reads back`);
    } else {
      t.equal(info?.sealed, false, `skip ${skip}: a failed seal changed nothing`);
    }
    await store.close();
    sim.crash();
    const reopened = await FileChunkStore.open(sim, '/chunks', { chunkSizeBytes });
    const after = reopened.info(1);
    t.ok(after !== undefined, `skip ${skip}: survives a crash`);
    if (after !== undefined) {
      t.ok(equalBytes(await reopened.read(1, 1, 0, after.lengthBytes), data.subarray(0, after.lengthBytes)), `skip ${skip}: bytes after the crash`);
      if (sealedOk) t.equal(after.sealed, true, `skip ${skip}: still sealed`);
    }
    const names = sim.paths().map((p) => p.slice('/chunks/'.length));
    t.equal(names.filter((n) => n.startsWith('1.') && n !== '1.meta').length, 1, `skip ${skip}: exactly one data file (${names.join(' ')})`);
    await reopened.close();
  }
});
