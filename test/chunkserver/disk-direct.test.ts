/**
 * NodeDisk's direct writes (src/chunkserver/disk.ts): the aligned middle of a large write goes with O_DIRECT,
 * head and tail through the page cache. Whatever the split, the file must hold exactly the bytes written, as
 * seen through the DiskFile and through a fresh open; and where O_DIRECT is refused the disk falls back,
 * once, without losing a byte.
 */
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { DiskFile } from '../../src/chunkserver/disk.ts';
import { NodeDisk, directAlignBytes, directStagingBytes, directWriteBytesMin } from '../../src/chunkserver/disk.ts';
import { AlignedSlabs, allocateAligned, isPageAligned } from '../../src/chunkserver/aligned.ts';
import { Prng } from '../sim/prng.ts';

const A = directAlignBytes;

function randomBytes(prng: Prng, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = prng.int(256);
  return b;
}

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rfs-disk-direct-'));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function readAll(file: DiskFile, length: number): Promise<Buffer> {
  const into = Buffer.alloc(length);
  const n = await file.read(into, 0);
  return into.subarray(0, n);
}

void t.test('appends of every alignment read back exactly, and the aligned middles went direct', async (t) => {
  await withDir(async (dir) => {
    const prng = Prng.fromSeed(7);
    const disk = new NodeDisk();
    const path = join(dir, 'f.data');
    const file = await disk.open(path, { create: true });
    // Sizes around every edge: below the direct minimum, exactly aligned, a page off either way, longer than
    // one staging buffer (the middle goes in pieces), and odd sizes that leave later appends unaligned.
    const sizes = [100, directWriteBytesMin, A - 1, directWriteBytesMin + A + 1, 3 * directStagingBytes + 17, 5, 2 * directWriteBytesMin, A, 777_777, 64 * 1024 * 3];
    const expected: Buffer[] = [];
    let length = 0;
    for (const size of sizes) {
      const data = randomBytes(prng, size);
      await file.write(data, length);
      expected.push(data);
      length += size;
    }
    const all = Buffer.concat(expected);
    t.equal(await file.sizeBytes(), length, 'size is the sum of the appends');
    t.ok((await readAll(file, length)).equals(all), 'read through the DiskFile: every byte as written');
    await file.sync();
    await file.close();
    t.ok((await readFile(path)).equals(all), 'read through a fresh open: every byte as written');
    t.ok(disk.stats.directBytes >= 3 * directStagingBytes, `direct bytes ${disk.stats.directBytes}`);
    t.ok(disk.stats.cachedBytes > 0, 'heads, tails and small writes went through the page cache');
    t.equal(disk.stats.directBytes + disk.stats.cachedBytes, length, 'every byte counted once');
    t.equal(disk.stats.directUnavailable, undefined, 'direct writes stayed on');
  });
});

void t.test('page-aligned memory is written direct in place; other memory through staging; bytes exact', async (t) => {
  await withDir(async (dir) => {
    const prng = Prng.fromSeed(9);
    const disk = new NodeDisk();
    const path = join(dir, 'f.data');
    const file = await disk.open(path, { create: true });
    // 1) A packet as the data plane receives it: a page-aligned buffer, longer than one staging buffer, at an
    //    aligned offset: written in place, whole.
    const aligned = allocateAligned(2 * directStagingBytes + 3 * A);
    randomBytes(prng, aligned.length).copy(aligned);
    await file.write(aligned, 0);
    if (disk.stats.directUnavailable !== undefined) {
      t.comment(`O_DIRECT unavailable here (${disk.stats.directUnavailable}): nothing more to check`);
      await file.close();
      return;
    }
    t.equal(disk.stats.directInPlaceBytes, aligned.length, 'the whole aligned buffer went direct without staging');
    t.equal(disk.stats.directBytes, aligned.length);
    // 2) Aligned memory seen from 100 bytes in, at an aligned file offset: the middle starts off a page in
    //    memory, so it is staged, never written in place from a misaligned address.
    const off = allocateAligned(directStagingBytes + 2 * A);
    randomBytes(prng, off.length).copy(off);
    const view = off.subarray(100);
    await file.write(view, aligned.length);
    t.equal(disk.stats.directInPlaceBytes, aligned.length, 'a misaligned view is not written in place');
    // 3) Ordinary Node memory at an aligned offset: staged.
    const plain = randomBytes(prng, directStagingBytes);
    const at = aligned.length + view.length;
    await file.write(plain, at);
    t.equal(disk.stats.directInPlaceBytes, aligned.length, 'Node buffers are never written in place');
    const all = Buffer.concat([aligned, view, plain]);
    t.ok((await readAll(file, all.length)).equals(all), 'every byte as written');
    await file.sync();
    await file.close();
    t.ok((await readFile(path)).equals(all), 'and through a fresh open');
    t.equal(disk.stats.directBytes + disk.stats.cachedBytes, all.length, 'every byte counted once');
  });
});

void t.test('aligned slabs hand out page-aligned, disjoint buffers; plain buffers are not aligned memory', (t) => {
  const slabs = new AlignedSlabs(1024 * 1024);
  const sizes = [64 * 1024, 100, 300 * 1024, 5000, 1024 * 1024, 2 * 1024 * 1024, 64 * 1024];
  const buffers = sizes.map((n) => slabs.allocate(n));
  buffers.forEach((b, i) => {
    t.equal(b.length, sizes[i], `buffer ${i} has the size asked`);
    t.ok(isPageAligned(b), `buffer ${i} starts on a page`);
    b.fill(i + 1);
  });
  buffers.forEach((b, i) => t.ok(b.every((x) => x === i + 1), `buffer ${i} overlaps no other`));
  t.notOk(isPageAligned(buffers[0]!.subarray(1)), 'a view off a page boundary is not aligned');
  t.notOk(isPageAligned(Buffer.allocUnsafeSlow(64 * 1024)), 'Node memory is never taken for aligned');
  t.throws(() => new AlignedSlabs(100), RangeError);
  const refusing = new AlignedSlabs(1024 * 1024, () => {
    throw new RangeError('WebAssembly.Memory(): could not allocate memory');
  });
  const fallback = refusing.allocate(64 * 1024);
  t.equal(fallback.length, 64 * 1024, 'an engine refusing aligned memory still gets a buffer');
  t.notOk(isPageAligned(fallback), 'an ordinary one, written through staging');
  t.equal(refusing.fallbacks, 1, 'counted');
  t.throws(() => allocateAligned(0), RangeError);
  t.end();
});

void t.test('rewriting after a truncate (a cut replica resumed) reads back the new bytes', async (t) => {
  await withDir(async (dir) => {
    const prng = Prng.fromSeed(8);
    const disk = new NodeDisk();
    const path = join(dir, 'g.data');
    const file = await disk.open(path, { create: true });
    const first = randomBytes(prng, 2 * directStagingBytes);
    await file.write(first, 0);
    // A cached write into a page, then a direct write over the same range, then a cut: the kernel keeps the
    // page cache and the direct writes coherent, and so must the reads.
    const cut = directStagingBytes + 3 * A + 123;
    await file.truncate(cut);
    const second = randomBytes(prng, directStagingBytes + 5000);
    await file.write(second, cut);
    const expected = Buffer.concat([first.subarray(0, cut), second]);
    t.ok((await readAll(file, expected.length + 10)).equals(expected), 'bytes after the cut are the new ones');
    const over = randomBytes(prng, directStagingBytes);
    await file.write(over, 0); // overwrite an aligned range that was written direct and is cached now
    expected.set(over, 0);
    t.ok((await readAll(file, expected.length)).equals(expected), 'an overwrite of a direct range reads back');
    await file.close();
    t.ok((await readFile(path)).equals(expected), 'and from a fresh open');
  });
});

void t.test('direct writes turned off: everything through the page cache', async (t) => {
  await withDir(async (dir) => {
    const disk = new NodeDisk({ directWrites: false });
    const file = await disk.open(join(dir, 'h.data'), { create: true });
    const data = randomBytes(Prng.fromSeed(9), 2 * directStagingBytes);
    await file.write(data, 0);
    t.ok((await readAll(file, data.length)).equals(data));
    t.equal(disk.stats.directBytes, 0);
    t.equal(disk.stats.cachedBytes, data.length);
    await file.close();
  });
});

void t.test('a file that cannot be opened O_DIRECT writes cached; the disk keeps direct writes on', async (t) => {
  await withDir(async (dir) => {
    const disk = new NodeDisk();
    const path = join(dir, 'i.data');
    const file = await disk.open(path, { create: true });
    await unlink(path); // the open handle still writes; a second open (the O_DIRECT one) fails ENOENT
    const data = randomBytes(Prng.fromSeed(10), directStagingBytes);
    await file.write(data, 0);
    t.ok((await readAll(file, data.length)).equals(data), 'bytes written through the page cache instead');
    t.equal(disk.stats.directBytes, 0);
    t.ok(disk.directOn, 'one file failing is not the file system refusing O_DIRECT');
    await file.close();
  });
});

void t.test('O_DIRECT refused (EINVAL on a misaligned buffer): fall back once, lose nothing', async (t) => {
  await withDir(async (dir) => {
    const reasons: string[] = [];
    const disk = new NodeDisk({ onDirectUnavailable: (reason) => reasons.push(reason) });
    // Hand the file a staging buffer 16 bytes off a page: O_DIRECT needs at least 512-byte alignment there.
    const misaligned = Buffer.from(new ArrayBuffer(directStagingBytes + 16 + A)).subarray(16, 16 + directStagingBytes);
    disk.staging.take = () => misaligned;
    disk.staging.give = () => undefined;
    const path = join(dir, 'j.data');
    const file = await disk.open(path, { create: true });
    const data = randomBytes(Prng.fromSeed(11), 2 * directStagingBytes + 100);
    await file.write(data, 0);
    if (disk.stats.directBytes > 0) {
      t.comment('skipped: this file system takes O_DIRECT writes from misaligned memory (tmpfs), so no EINVAL to fall back from');
      await file.close();
      return;
    }
    t.ok((await readAll(file, data.length)).equals(data), 'every byte written through the page cache');
    t.equal(reasons.length, 1, 'the fallback is reported once');
    t.match(reasons[0], /O_DIRECT write/);
    t.notOk(disk.directOn, 'direct writes are off for the disk from now on');
    const more = randomBytes(Prng.fromSeed(12), directStagingBytes);
    await file.write(more, data.length);
    t.equal(reasons.length, 1, 'not reported again');
    await file.close();
    t.ok((await readFile(path)).equals(Buffer.concat([data, more])));
  });
});
