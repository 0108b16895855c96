/**
 * The simulator's disk on its own: what a crash keeps and loses, torn writes, directory durability, bit
 * flips, capacity and injected errors. The store's crash tests rely on this model being the stated one.
 */
import t from 'tap';
import type { DiskFile } from '../../src/chunkserver/disk.ts';
import { ChunkStoreError } from '../../src/chunkserver/types.ts';
import { SimDisk } from '../sim/disk.ts';
import { Prng } from '../sim/prng.ts';
import { rejectsCode } from './store-conformance.ts';

const bytes = (...xs: number[]) => new Uint8Array(xs);
const list = (b: Uint8Array | undefined) => (b === undefined ? undefined : [...b]);

async function freshDisk(seed: number, tornWriteProbability = 0.5) {
  const disk = new SimDisk(Prng.fromSeed(seed), { tornWriteProbability });
  await disk.makeDirectory('/d');
  return disk;
}

async function writeSynced(disk: SimDisk, path: string, data: Uint8Array): Promise<DiskFile> {
  const file = await disk.open(path, { create: true });
  await file.write(data, 0);
  await file.sync();
  await disk.syncDirectory('/d');
  return file;
}

void t.test('a crash keeps synced bytes and a prefix of the unsynced writes, in order, the first lost one maybe torn', async (t) => {
  const outcomes = new Set<string>();
  for (let seed = 0; seed < 200; seed++) {
    const disk = await freshDisk(seed);
    const file = await writeSynced(disk, '/d/f', bytes(1, 2, 3));
    await file.write(bytes(4, 5, 6, 7), 3);
    await file.write(bytes(8, 9), 7);
    disk.crash();
    const after = list(disk.contents('/d/f')) ?? [];
    const full = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    t.ok(after.length >= 3 && after.join() === full.slice(0, after.length).join(), `seed ${seed}: ${after.join()} is a prefix of the writes`);
    outcomes.add(String(after.length));
  }
  t.same([...outcomes].sort(), ['3', '4', '5', '6', '7', '8', '9'], 'lost, torn at every point, and kept all');
});

void t.test('with no tearing, a crash keeps whole writes only', async (t) => {
  for (let seed = 0; seed < 50; seed++) {
    const disk = await freshDisk(seed, 0);
    const file = await writeSynced(disk, '/d/f', bytes(1));
    await file.write(bytes(2, 3), 1);
    await file.truncate(2);
    disk.crash();
    t.ok(['1', '1,2,3', '1,2'].includes(list(disk.contents('/d/f'))?.join() ?? ''), `seed ${seed}`);
  }
});

void t.test('creates and renames are durable only after the directory fsync', async (t) => {
  const seen = { created: 0, lost: 0, renamed: 0, notRenamed: 0 };
  for (let seed = 0; seed < 100; seed++) {
    const disk = await freshDisk(seed);
    const old = await writeSynced(disk, '/d/tmp', bytes(7));
    await old.close();
    const file = await disk.open('/d/new', { create: true });
    await file.write(bytes(1), 0);
    await file.sync(); // the file's bytes, not its name
    await disk.rename('/d/tmp', '/d/final');
    disk.crash();
    const paths = disk.paths();
    if (paths.includes('/d/new')) seen.created++;
    else seen.lost++;
    // The rename is atomic: exactly one of the two names.
    t.equal(paths.filter((p) => p === '/d/tmp' || p === '/d/final').length, 1, `seed ${seed}: ${paths.join(' ')}`);
    if (paths.includes('/d/final')) seen.renamed++;
    else seen.notRenamed++;
    if (paths.includes('/d/final')) t.same(list(disk.contents('/d/final')), [7]);
  }
  t.ok(Object.values(seen).every((n) => n > 0), `every outcome happens: ${JSON.stringify(seen)}`);
  const disk = await freshDisk(1);
  await (await writeSynced(disk, '/d/a', bytes(1))).close();
  await disk.rename('/d/a', '/d/b');
  await disk.syncDirectory('/d');
  disk.crash();
  t.same(disk.paths(), ['/d/b'], 'after the directory fsync the rename survives');
});

void t.test('bit flips survive crashes; handles from before a crash fail; capacity; injected errors', async (t) => {
  const disk = await freshDisk(3);
  const file = await writeSynced(disk, '/d/f', bytes(0, 0, 0));
  disk.flipBit('/d/f', 1, 2);
  disk.crash();
  t.same(list(disk.contents('/d/f')), [0, 4, 0], 'the flip is on the medium');
  await rejectsCode(t, file.read(new Uint8Array(1), 0), 'IO_ERROR', 'a handle from before the crash');
  t.equal(disk.openFiles, 0);

  disk.capacityBytes = 5;
  const g = await disk.open('/d/g', { create: true });
  await rejectsCode(t, g.write(bytes(1, 2, 3), 0), 'DISK_FULL', 'a write past capacity');
  t.same(list(disk.contents('/d/g')), [1, 2], 'what fits was written');
  await g.write(bytes(9, 9), 0);
  t.same(list(disk.contents('/d/g')), [9, 9], 'overwriting needs no room');

  disk.failNext(1, ['sync']);
  await rejectsCode(t, g.sync(), 'IO_ERROR', 'an injected fsync error');
  await g.sync();
  disk.crashBeforeMutation(1);
  await g.write(bytes(5), 0);
  try {
    await g.write(bytes(6), 0);
    t.fail('the second mutation should crash');
  } catch (error) {
    t.ok(error instanceof ChunkStoreError && error.code === 'IO_ERROR', 'the armed crash happens in place of the 2nd mutation');
  }
  t.equal(disk.crashes, 2);
  t.same(list(disk.contents('/d/f')), [0, 4, 0], 'synced files are still there after it');
  const flipped = disk.flipRandomBit((p) => p === '/d/f');
  t.equal(flipped?.path, '/d/f');
});
