/**
 * FileChunkStore against the conformance suite on the real disk and on the simulator's disk, then the
 * store's own failure handling: bit flips, a full disk, I/O errors, and what open() cleans up.
 */
import { mkdtemp, open as openFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { gridCrcs } from '../../src/chunkserver/block-crcs.ts';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { FileChunkStore, dataFilesOpenMax } from '../../src/chunkserver/store.ts';
import { checksumBlockBytes } from '../../src/chunkserver/types.ts';
import { SimDisk } from '../sim/disk.ts';
import { Prng } from '../sim/prng.ts';
import type { StoreFixture } from './store-conformance.ts';
import { pattern, rejectsCode, runStoreConformance } from './store-conformance.ts';

const B = checksumBlockBytes;
const chunkSizeBytes = 1024 * 1024;

async function nodeFixture(): Promise<StoreFixture & { dir: string }> {
  const root = await mkdtemp(join(tmpdir(), 'rfs-store-'));
  const dir = join(root, 'chunks');
  return {
    dir,
    chunkSizeBytes,
    open: () => FileChunkStore.open(new NodeDisk(), dir, { chunkSizeBytes }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

function simFixture(seed: number, capacityBytes?: number): StoreFixture & { disk: SimDisk } {
  const disk = new SimDisk(Prng.fromSeed(seed).split('disk'), capacityBytes === undefined ? {} : { capacityBytes });
  return {
    disk,
    chunkSizeBytes,
    open: () => FileChunkStore.open(disk, '/chunks', { chunkSizeBytes }),
    cleanup: () => Promise.resolve(),
  };
}

runStoreConformance(t, 'NodeDisk', nodeFixture);
let seed = 1;
runStoreConformance(t, 'SimDisk', () => Promise.resolve(simFixture(seed++)));

void t.test('NodeDisk: a flipped bit in a data file is caught by read and verify, and only in its block', async (t) => {
  const fixture = await nodeFixture();
  t.teardown(() => fixture.cleanup());
  let store = await fixture.open();
  const data = pattern(1, 3 * B + 100);
  await store.create(1, 1);
  await store.append(1, 1, 0, data);
  await store.seal(1, 1, data.length);
  await store.close();
  const flipAt = B + 12345;
  const file = await openFile(join(fixture.dir, '1.data'), 'r+');
  const byte = Buffer.alloc(1);
  await file.read(byte, 0, 1, flipAt);
  byte[0] = (byte[0] as number) ^ 0x10;
  await file.write(byte, 0, 1, flipAt);
  await file.close();
  store = await fixture.open();
  t.teardown(() => store.close());
  await rejectsCode(t, store.read(1, 1, flipAt, 1), 'CHECKSUM_MISMATCH', 'a one-byte read of the bad byte');
  await rejectsCode(t, store.read(1, 1, B - 1, 2), 'CHECKSUM_MISMATCH', 'a read touching the bad block at its start');
  await rejectsCode(t, store.read(1, 1, 2 * B - 1, 1), 'CHECKSUM_MISMATCH', 'a read of the bad block\'s last byte');
  await rejectsCode(t, store.verify(1), 'CHECKSUM_MISMATCH', 'verify');
  t.ok(Buffer.from(await store.read(1, 1, 0, B)).equals(Buffer.from(data.subarray(0, B))), 'the block before is fine');
  t.ok(Buffer.from(await store.read(1, 1, 2 * B, B + 100)).equals(Buffer.from(data.subarray(2 * B))), 'the blocks after are fine');
});

void t.test('SimDisk: a flipped bit in the partial last block is caught', async (t) => {
  const fixture = simFixture(100);
  const store = await fixture.open();
  await store.create(1, 1);
  await store.append(1, 1, 0, pattern(1, B + 50));
  await store.sync(1);
  fixture.disk.flipBit('/chunks/1.data', B + 49, 7);
  await rejectsCode(t, store.read(1, 1, B + 10, 1), 'CHECKSUM_MISMATCH', 'a partial read of the partial last block');
  await rejectsCode(t, store.verify(1), 'CHECKSUM_MISMATCH', 'verify');
  t.equal((store as FileChunkStore).stats.checksumMismatches, 2);
  await store.close();
});

/**
 * A middle hop of a write pipeline stores a packet corrupted on the wire under the writer's CRCs; the chain's
 * end rejects it, so it is never acknowledged, and the writer resumes with this replica cut back to the
 * acknowledged length. When that length falls inside a block the corrupt bytes share, the cut must keep the
 * good part (it matches the CRC the block had when the acknowledged append ended), not fail on the block.
 */
void t.test('SimDisk: a resume cut inside a block keeps its good part when bad bytes past the cut share the block', async (t) => {
  const fixture = simFixture(101);
  const store = await fixture.open();
  const written = pattern(7, 2 * B);
  const acked = B + 100;
  await store.create(1, 1);
  await store.append(1, 1, 0, written.subarray(0, acked), gridCrcs(0, written.subarray(0, acked)));
  // The next packet (to the end of the second block, and on into a third) arrives with one bit flipped.
  const corrupted = written.slice(acked, 2 * B);
  corrupted[corrupted.length - 5]! ^= 0x10;
  await store.append(1, 1, acked, corrupted, gridCrcs(acked, written.subarray(acked, 2 * B)));
  await rejectsCode(t, store.verify(1), 'CHECKSUM_MISMATCH', 'the replica holds bytes its CRCs fail');
  await store.bumpVersion(1, 1, 2, acked);
  t.match(store.info(1), { version: 2, lengthBytes: acked, sealed: false }, 'raised and cut to the acknowledged length');
  await store.verify(1);
  t.same(await store.read(1, 2, 0, acked), written.subarray(0, acked), 'the kept bytes are the ones written');
  // The writer resends what was not acknowledged; the replica then seals with the writer's checksum.
  await store.append(1, 2, acked, written.subarray(acked), gridCrcs(acked, written.subarray(acked)));
  const sealed = await store.seal(1, 2, 2 * B);
  t.equal(sealed.checksum, crc32c(written), 'sealed with the CRC32C of the bytes written');
  await store.verify(1);
  await store.close();
});

void t.test('SimDisk: a cut inside a block still fails when the kept part itself went bad', async (t) => {
  for (const reopen of [false, true]) {
    const fixture = simFixture(102);
    let store = await fixture.open();
    const written = pattern(8, B + 300);
    await store.create(1, 1);
    await store.append(1, 1, 0, written.subarray(0, B + 100));
    await store.append(1, 1, B + 100, written.subarray(B + 100));
    await store.sync(1);
    fixture.disk.flipBit('/chunks/1.data', B + 40, 2);
    // Reopened, the store knows no append ends: the cut is checked against the whole stored block.
    if (reopen) {
      await store.close();
      store = await fixture.open();
    }
    await rejectsCode(t, store.bumpVersion(1, 1, 2, B + 100), 'CHECKSUM_MISMATCH', `a flipped bit below the cut is found (reopened: ${reopen})`);
    t.match(store.info(1), { version: 1, lengthBytes: B + 300 }, 'the replica is left as it was');
    await store.close();
  }
});

void t.test('SimDisk: a corrupt sidecar drops the replica at open (reported), the rest survive', async (t) => {
  const fixture = simFixture(101);
  let store = await fixture.open();
  for (const h of [1, 2]) {
    await store.create(h, 1);
    await store.append(h, 1, 0, pattern(h, 1000));
    await store.seal(h, 1, 1000);
  }
  await store.close();
  fixture.disk.flipBit('/chunks/2.meta', 20);
  store = await fixture.open();
  t.same(store.list().map((r) => r.handle), [1]);
  t.equal((store as FileChunkStore).recovery.corruptReplicasRemoved, 1);
  t.same(fixture.disk.paths(), ['/chunks/1.data', '/chunks/1.meta'], 'both files of the corrupt replica are gone');
  await store.close();
});

void t.test('SimDisk: disk full gives DISK_FULL and leaves the replica usable', async (t) => {
  const fixture = simFixture(102, 300_000);
  const store = await fixture.open();
  await store.create(1, 1);
  await store.create(2, 1);
  const first = pattern(1, 200_000);
  await store.append(1, 1, 0, first);
  await store.sync(1);
  await store.append(2, 1, 0, pattern(2, 50_000));
  await rejectsCode(t, store.append(1, 1, first.length, pattern(3, 100_000)), 'DISK_FULL', 'an append that does not fit');
  t.equal(store.info(1)?.lengthBytes, first.length, 'the length did not move');
  t.ok(Buffer.from(await store.read(1, 1, 0, first.length)).equals(Buffer.from(first)), 'the replica reads back');
  await store.verify(1);
  // Room frees up: the same append at the same offset now succeeds over the partial garbage.
  t.equal(await store.delete(2, 1), true);
  const more = pattern(3, 80_000);
  await store.append(1, 1, first.length, more);
  await store.sync(1);
  await store.verify(1);
  t.ok(Buffer.from(await store.read(1, 1, first.length, more.length)).equals(Buffer.from(more)), 'the retried append');
  // A sidecar that does not fit fails the sync, and the previous durable state stays.
  fixture.disk.capacityBytes = fixture.disk.usedBytes();
  await rejectsCode(t, store.create(3, 1), 'DISK_FULL', 'a create whose sidecar does not fit');
  t.equal(store.info(3), undefined, 'no half-created replica');
  t.notOk(fixture.disk.paths().includes('/chunks/3.data'), 'nor its data file');
  await store.close();
});

void t.test('SimDisk: a failed data fsync makes the replica refuse writes; its lost bytes are never served; it can be deleted', async (t) => {
  const fixture = simFixture(103);
  const store = await fixture.open();
  await store.create(1, 1);
  await store.append(1, 1, 0, pattern(1, 1000));
  fixture.disk.failNext(1, ['sync']);
  await rejectsCode(t, store.sync(1), 'IO_ERROR', 'the failed fsync');
  await rejectsCode(t, store.sync(1), 'IO_ERROR', 'a retried sync does not pretend');
  await rejectsCode(t, store.append(1, 1, 1000, pattern(2, 10)), 'IO_ERROR', 'an append after it');
  // The failed fsync lost the unsynced bytes (SimDisk reverts the file, as Linux drops the dirty pages): a read
  // must not return what no disk holds, so it fails its checksum and the replica is replaced from another.
  await rejectsCode(t, store.read(1, 1, 0, 1000), 'CHECKSUM_MISMATCH', 'the lost bytes are not served');
  t.equal(await store.delete(1, 1), true, 'delete works');
  // Other I/O errors are reported and leave state as it was.
  await store.create(2, 1);
  fixture.disk.failNext(1, ['rename']);
  await store.append(2, 1, 0, pattern(2, 10));
  await rejectsCode(t, store.sync(2), 'IO_ERROR', 'a failed sidecar rename');
  fixture.disk.failNext(1, ['read']);
  await rejectsCode(t, store.read(2, 1, 0, 10), 'IO_ERROR', 'a failed read');
  await store.sync(2);
  t.equal((await store.read(2, 1, 0, 10)).length, 10);
  t.notOk(fixture.disk.paths().some((p) => p.endsWith('.tmp')), 'the failed sync removed its temp file');
  await store.close();
});

void t.test('open removes temp sidecars and data files without a sidecar', async (t) => {
  const fixture = await nodeFixture();
  t.teardown(() => fixture.cleanup());
  let store = await fixture.open();
  await store.create(1, 1);
  await store.close();
  await writeFile(join(fixture.dir, '1.meta.tmp'), 'half a sidecar');
  await writeFile(join(fixture.dir, '9.data'), 'an orphan');
  await writeFile(join(fixture.dir, 'README'), 'not ours');
  store = await fixture.open();
  t.teardown(() => store.close());
  const recovery = (store as FileChunkStore).recovery;
  t.same(recovery, { replicas: 1, tempFilesRemoved: 1, orphanDataFilesRemoved: 1, tailsTruncated: 0, corruptReplicasRemoved: 0 });
  t.same((await readdir(fixture.dir)).sort(), ['1.data', '1.meta', 'README']);
});

void t.test('open data files are bounded: clean idle ones are closed, unsynced ones never are', async (t) => {
  const fixture = simFixture(104);
  let store = await fixture.open();
  const count = dataFilesOpenMax + 44;
  for (let h = 1; h <= count; h++) {
    await store.create(h, 1);
    await store.append(h, 1, 0, pattern(h, 10));
    await store.sync(h);
  }
  t.ok(fixture.disk.openFiles <= dataFilesOpenMax + 1, `${fixture.disk.openFiles} files open after ${count} synced replicas`);
  // Dirty handles are kept open past the bound (closing one could hide a failed writeback).
  for (let h = 1; h <= count; h++) await store.append(h, 1, 10, pattern(h, 10, 10));
  t.equal(fixture.disk.openFiles, count, 'every replica with unsynced bytes keeps its file open');
  for (let h = 1; h <= count; h++) await store.sync(h);
  fixture.disk.crash();
  store = await fixture.open();
  t.equal(store.list().length, count);
  for (let h = 1; h <= count; h++) {
    const bytes = await store.read(h, 1, 0, 20);
    if (!Buffer.from(bytes).equals(Buffer.from(pattern(h, 20)))) t.fail(`replica ${h} differs after the crash`);
  }
  await store.close();
  t.equal(fixture.disk.openFiles, 0, 'close closes every file');
});

void t.test('SimDisk: a create whose directory fsync fails leaves nothing behind', async (t) => {
  const fixture = simFixture(105);
  const store = await fixture.open();
  fixture.disk.failNext(1, ['syncDirectory']);
  await rejectsCode(t, store.create(1, 1), 'IO_ERROR', 'the failed create');
  t.equal(store.info(1), undefined);
  t.same(fixture.disk.paths(), [], 'no data file, no sidecar');
  await store.create(1, 1);
  t.same(store.info(1), { handle: 1, version: 1, lengthBytes: 0, sealed: false }, 'a retry works');
  await store.close();
});

void t.test('SimDisk: after a failed sidecar commit the next sync rewrites it, so a crash cannot resurrect the failed state', async (t) => {
  for (let seed = 0; seed < 20; seed++) {
    const fixture = simFixture(200 + seed);
    let store = await fixture.open();
    await store.create(1, 1);
    await store.append(1, 1, 0, pattern(1, 1000));
    await store.sync(1);
    fixture.disk.failNext(1, ['syncDirectory']); // the new sidecar is renamed in, but not durably
    await rejectsCode(t, store.bumpVersion(1, 1, 2, 500), 'IO_ERROR', `seed ${seed}: the failed bump`);
    t.same(store.info(1), { handle: 1, version: 1, lengthBytes: 1000, sealed: false }, 'memory is as before');
    await store.sync(1);
    fixture.disk.crash();
    store = await fixture.open();
    t.same(store.info(1), { handle: 1, version: 1, lengthBytes: 1000, sealed: false }, 'the synced state, not the failed one');
    await store.close();
  }
});
