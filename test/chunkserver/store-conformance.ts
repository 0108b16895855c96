/**
 * The ChunkStore conformance suite: every store (FileChunkStore on the real disk and on the simulator's
 * disk) must pass it. `runStoreConformance(t, name, makeFixture)`; the fixture opens a store over one disk
 * and directory, any number of times (a reopen sees what the last store made durable).
 */
import { crc32c } from '@node-rs/crc32';
import type { Test } from 'tap';
import type { ChunkStore, ChunkStoreErrorCode } from '../../src/chunkserver/types.ts';
import { ChunkStoreError, checksumBlockBytes } from '../../src/chunkserver/types.ts';

export interface StoreFixture {
  /** The chunk size the fixture's stores enforce (small, so TOO_LARGE is cheap to reach). */
  readonly chunkSizeBytes: number;
  open(): Promise<ChunkStore>;
  cleanup(): Promise<void>;
}

const B = checksumBlockBytes;

/** Deterministic, position-dependent bytes: pattern(seed, n)[i] differs for nearby seeds and offsets. */
export function pattern(seed: number, lengthBytes: number, from = 0): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) {
    const x = from + i;
    out[i] = (Math.imul(x ^ (x >>> 7), 0x9e3779b1) + seed * 131) >>> 24;
  }
  return out;
}

export async function rejectsCode(t: Test, promise: Promise<unknown>, code: ChunkStoreErrorCode, what: string): Promise<void> {
  try {
    await promise;
    t.fail(`${what}: resolved, expected ${code}`);
  } catch (error) {
    if (error instanceof ChunkStoreError) t.equal(error.code, code, `${what}: ${code}`);
    else t.fail(`${what}: threw ${String(error)}, expected ChunkStoreError ${code}`);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const same = (t: Test, actual: Uint8Array, expected: Uint8Array, what: string) =>
  t.ok(Buffer.from(actual).equals(Buffer.from(expected)), `${what} (${actual.length} bytes)`);

export function runStoreConformance(t: Test, name: string, makeFixture: () => Promise<StoreFixture>): void {
  const test = (title: string, body: (t: Test, store: ChunkStore, fixture: StoreFixture) => Promise<void>) =>
    void t.test(`${name}: ${title}`, async (t) => {
      const fixture = await makeFixture();
      const store = await fixture.open();
      try {
        await body(t, store, fixture);
      } finally {
        await store.close();
        await fixture.cleanup();
      }
    });

  test('create, append across blocks, sync, read ranges', async (t, store) => {
    await store.create(7, 1);
    t.same(store.info(7), { handle: 7, version: 1, lengthBytes: 0, sealed: false });
    const parts = [pattern(1, 100), pattern(2, B + 5), pattern(3, 2 * B - 105), pattern(4, 3000)];
    let offset = 0;
    for (const part of parts) {
      await store.append(7, 1, offset, part);
      offset += part.length;
    }
    const all = concat(...parts);
    t.equal(store.info(7)?.lengthBytes, all.length);
    await store.sync(7);
    same(t, await store.read(7, 1, 0, all.length), all, 'the whole replica');
    for (const [from, length] of [
      [0, 1],
      [99, 2],
      [B - 1, 2],
      [B, B],
      [10, 3 * B],
      [3 * B - 7, 7],
      [3 * B, 3000],
      [all.length - 1, 1],
      [all.length, 0],
      [5, 0],
    ] as const) {
      same(t, await store.read(7, 1, from, length), all.subarray(from, from + length), `read [${from}, +${length})`);
    }
    await store.verify(7);
    t.same(store.list(), [{ handle: 7, version: 1, lengthBytes: all.length, sealed: false }]);
  });

  test('the caller keeps its buffer: a later change to it does not reach the replica', async (t, store) => {
    await store.create(1, 1);
    const data = pattern(5, 1000);
    const copy = data.slice();
    await store.append(1, 1, 0, data);
    data.fill(0);
    same(t, await store.read(1, 1, 0, 1000), copy, 'the appended bytes');
  });

  test('unknown handle: every operation says NO_SUCH_REPLICA, delete says false', async (t, store) => {
    await rejectsCode(t, store.append(9, 1, 0, pattern(1, 10)), 'NO_SUCH_REPLICA', 'append');
    await rejectsCode(t, store.sync(9), 'NO_SUCH_REPLICA', 'sync');
    await rejectsCode(t, store.read(9, 1, 0, 0), 'NO_SUCH_REPLICA', 'read');
    await rejectsCode(t, store.seal(9, 1, 0), 'NO_SUCH_REPLICA', 'seal');
    await rejectsCode(t, store.bumpVersion(9, 1, 2, 0), 'NO_SUCH_REPLICA', 'bumpVersion');
    await rejectsCode(t, store.verify(9), 'NO_SUCH_REPLICA', 'verify');
    t.equal(await store.delete(9, 100), false);
    t.equal(store.info(9), undefined);
    await rejectsCode(t, store.create(-1, 1), 'NO_SUCH_REPLICA', 'create with a negative handle');
    await rejectsCode(t, store.create(1.5, 1), 'NO_SUCH_REPLICA', 'create with a fractional handle');
    await rejectsCode(t, store.create(1, -2), 'STALE_VERSION', 'create with a negative version');
    t.same(store.list(), []);
  });

  test('bad inputs get typed errors and change nothing', async (t, store, fixture) => {
    await store.create(3, 5);
    const data = pattern(3, B + 10);
    await store.append(3, 5, 0, data);
    await rejectsCode(t, store.create(3, 5), 'REPLICA_EXISTS', 'create of a held handle');
    await rejectsCode(t, store.create(3, 9), 'REPLICA_EXISTS', 'create of a held handle at another version');
    await rejectsCode(t, store.append(3, 4, data.length, pattern(1, 1)), 'STALE_VERSION', 'append at an older version');
    await rejectsCode(t, store.append(3, 6, data.length, pattern(1, 1)), 'STALE_VERSION', 'append at a newer version');
    await rejectsCode(t, store.append(3, 5, data.length - 1, pattern(1, 1)), 'BAD_OFFSET', 'append before the end');
    await rejectsCode(t, store.append(3, 5, data.length + 1, pattern(1, 1)), 'BAD_OFFSET', 'append past the end');
    await rejectsCode(t, store.append(3, 5, -1, pattern(1, 1)), 'BAD_OFFSET', 'append at a negative offset');
    await rejectsCode(t, store.append(3, 5, 0.5, pattern(1, 1)), 'BAD_OFFSET', 'append at a fractional offset');
    const room = fixture.chunkSizeBytes - data.length;
    await rejectsCode(t, store.append(3, 5, data.length, new Uint8Array(room + 1)), 'TOO_LARGE', 'append past the chunk size');
    await rejectsCode(t, store.read(3, 4, 0, 1), 'STALE_VERSION', 'read at another version');
    await rejectsCode(t, store.read(3, 5, 0, data.length + 1), 'BAD_OFFSET', 'read past the end');
    await rejectsCode(t, store.read(3, 5, data.length + 1, 0), 'BAD_OFFSET', 'read starting past the end');
    await rejectsCode(t, store.read(3, 5, -1, 1), 'BAD_OFFSET', 'read at a negative offset');
    await rejectsCode(t, store.read(3, 5, 0, -1), 'BAD_OFFSET', 'read of a negative length');
    await rejectsCode(t, store.seal(3, 4, data.length), 'STALE_VERSION', 'seal at another version');
    await rejectsCode(t, store.seal(3, 5, data.length + 1), 'BAD_OFFSET', 'seal past the length');
    await rejectsCode(t, store.bumpVersion(3, 6, 7, 0), 'STALE_VERSION', 'bump of a replica older than fromVersion');
    await rejectsCode(t, store.bumpVersion(3, 3, 4, 0), 'STALE_VERSION', 'bump of a replica newer than toVersion');
    await rejectsCode(t, store.bumpVersion(3, 5, 5, 0), 'STALE_VERSION', 'bump to the same version');
    await rejectsCode(t, store.bumpVersion(3, 5, 4, 0), 'STALE_VERSION', 'bump to a lower version');
    await rejectsCode(t, store.bumpVersion(3, 5, 6, data.length + 1), 'BAD_OFFSET', 'bump resuming past the length');
    t.same(store.info(3), { handle: 3, version: 5, lengthBytes: data.length, sealed: false }, 'nothing changed');
    same(t, await store.read(3, 5, 0, data.length), data, 'the bytes are intact');
    // The boundary itself is fine: exactly up to the chunk size.
    await store.append(3, 5, data.length, pattern(4, room));
    t.equal(store.info(3)?.lengthBytes, fixture.chunkSizeBytes, 'a replica can fill the chunk exactly');
  });

  test('seal: syncs, returns the whole-replica CRC32C, refuses writes, is idempotent', async (t, store) => {
    await store.create(4, 2);
    const data = pattern(4, 2 * B + 333);
    await store.append(4, 2, 0, data.subarray(0, 1000));
    await store.append(4, 2, 1000, data.subarray(1000));
    const info = await store.seal(4, 2, data.length);
    t.same(info, { handle: 4, version: 2, lengthBytes: data.length, sealed: true, checksum: crc32c(data) });
    t.same(store.info(4), info);
    await rejectsCode(t, store.append(4, 2, data.length, pattern(1, 1)), 'SEALED', 'append to a sealed replica');
    await rejectsCode(t, store.bumpVersion(4, 2, 3, 0), 'SEALED', 'bump of a sealed replica');
    await rejectsCode(t, store.seal(4, 2, data.length - 1), 'SEALED', 'seal again at another length');
    t.same(await store.seal(4, 2, data.length), info, 'seal again at the same length');
    same(t, await store.read(4, 2, B - 3, B + 6), data.subarray(B - 3, 2 * B + 3), 'read of a sealed replica');
    await store.verify(4);
    // A writer that lost another replica while sealing resumes the survivors at a new version, at the whole
    // length: a sealed survivor takes the version and stays sealed; its bytes are unchanged.
    await rejectsCode(t, store.bumpVersion(4, 2, 3, data.length - 1), 'SEALED', 'bump of a sealed replica below its length');
    await store.bumpVersion(4, 2, 3, data.length);
    const bumped = { ...info, version: 3 };
    t.same(store.info(4), bumped, 'raised, still sealed, same length and checksum');
    await rejectsCode(t, store.read(4, 2, 0, 1), 'STALE_VERSION', 'the old version is gone');
    t.same(await store.seal(4, 3, data.length), bumped, 'the resumed pipeline seals it again at the new version');
    same(t, await store.read(4, 3, 0, data.length), data, 'read at the new version');
    await store.verify(4);
  });

  test('seal shorter cuts the replica, mid-block', async (t, store) => {
    await store.create(5, 1);
    const data = pattern(5, 3 * B);
    await store.append(5, 1, 0, data);
    const cut = B + 17;
    const info = await store.seal(5, 1, cut);
    t.same(info, { handle: 5, version: 1, lengthBytes: cut, sealed: true, checksum: crc32c(data.subarray(0, cut)) });
    await rejectsCode(t, store.read(5, 1, cut - 1, 2), 'BAD_OFFSET', 'read past the cut');
    same(t, await store.read(5, 1, B, 17), data.subarray(B, cut), 'the partial last block');
    await store.verify(5);
  });

  test('an empty replica seals with the CRC of nothing', async (t, store) => {
    await store.create(6, 1);
    t.same(await store.seal(6, 1, 0), { handle: 6, version: 1, lengthBytes: 0, sealed: true, checksum: 0 });
    same(t, await store.read(6, 1, 0, 0), new Uint8Array(0), 'an empty read');
    await store.verify(6);
  });

  test('bumpVersion raises the version and cuts to the acknowledged length; the writer resends from there', async (t, store) => {
    await store.create(8, 1);
    const first = pattern(8, 2 * B + 500);
    await store.append(8, 1, 0, first);
    const acked = B + 1234;
    await store.bumpVersion(8, 1, 2, acked);
    t.same(store.info(8), { handle: 8, version: 2, lengthBytes: acked, sealed: false });
    await rejectsCode(t, store.read(8, 1, 0, 1), 'STALE_VERSION', 'read at the old version');
    await rejectsCode(t, store.append(8, 1, acked, pattern(1, 1)), 'STALE_VERSION', 'append by the old pipeline');
    const resent = pattern(9, B);
    await store.append(8, 2, acked, resent);
    const expected = concat(first.subarray(0, acked), resent);
    same(t, await store.read(8, 2, 0, expected.length), expected, 'old prefix + resent bytes');
    await store.verify(8);
    // No cut: same length, new version.
    await store.bumpVersion(8, 2, 3, expected.length);
    t.equal(store.info(8)?.version, 3);
    const info = await store.seal(8, 3, expected.length);
    t.equal(info.checksum, crc32c(expected), 'the whole-replica CRC after a cut and more appends');
  });

  test('delete removes only at or below the given version; the handle can be created again', async (t, store) => {
    await store.create(2, 3);
    await store.append(2, 3, 0, pattern(2, 100));
    t.equal(await store.delete(2, 2), false, 'a newer replica is kept');
    t.equal(store.info(2)?.version, 3);
    t.equal(await store.delete(2, 3), true);
    t.equal(store.info(2), undefined);
    t.same(store.list(), []);
    await rejectsCode(t, store.read(2, 3, 0, 1), 'NO_SUCH_REPLICA', 'read after delete');
    t.equal(await store.delete(2, 3), false, 'a second delete');
    await store.create(2, 4);
    t.same(store.info(2), { handle: 2, version: 4, lengthBytes: 0, sealed: false }, 'created afresh');
  });

  test('list and usage', async (t, store) => {
    await store.create(11, 1);
    await store.create(10, 1);
    await store.append(11, 1, 0, pattern(1, 5000));
    await store.append(10, 1, 0, pattern(2, 300));
    await store.seal(10, 1, 300);
    t.same(
      store.list().map((r) => [r.handle, r.lengthBytes, r.sealed]),
      [
        [10, 300, true],
        [11, 5000, false],
      ],
    );
    const usage = await store.usage();
    t.equal(usage.usedBytes, 5300);
    t.ok(usage.capacityBytes > 0, 'capacity from the disk');
  });

  test('concurrent creates of one handle: exactly one wins', async (t, store) => {
    const results = await Promise.allSettled([store.create(12, 1), store.create(12, 1), store.create(12, 2)]);
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) {
      if (r.status === 'rejected') t.equal((r.reason as ChunkStoreError).code, 'REPLICA_EXISTS');
    }
  });

  test('reads concurrent with appends see whole appends only and always verify', async (t, store) => {
    await store.create(13, 1);
    const data = pattern(13, 8 * 10_000);
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) {
      ops.push(store.append(13, 1, i * 10_000, data.subarray(i * 10_000, (i + 1) * 10_000)));
      ops.push(store.read(13, 1, 0, (i + 1) * 10_000 - 1).then((bytes) => same(t, bytes, data.subarray(0, bytes.length), `read ${i}`)));
    }
    await Promise.all(ops);
    await store.verify(13);
  });

  test('reopen: synced state survives; unsynced appends and a close without sync do not', async (t, _store, fixture) => {
    const store = _store;
    await store.create(20, 1);
    await store.create(21, 1);
    await store.create(22, 1);
    const a = pattern(20, 2 * B + 7);
    await store.append(20, 1, 0, a);
    await store.sync(20);
    await store.append(20, 1, a.length, pattern(99, 500)); // never synced
    await store.append(21, 1, 0, pattern(21, 1000));
    const sealed = await store.seal(21, 1, 1000);
    await store.append(22, 1, 0, pattern(22, 100));
    await store.bumpVersion(22, 1, 4, 60);
    await store.close();
    const reopened = await fixture.open();
    try {
      t.same(reopened.list(), [
        { handle: 20, version: 1, lengthBytes: a.length, sealed: false },
        sealed,
        { handle: 22, version: 4, lengthBytes: 60, sealed: false },
      ]);
      same(t, await reopened.read(20, 1, 0, a.length), a, 'the synced bytes');
      for (const h of [20, 21, 22]) await reopened.verify(h);
      // The partial last block's running CRC continues after a reopen.
      await reopened.append(20, 1, a.length, pattern(7, B));
      await reopened.sync(20);
      same(t, await reopened.read(20, 1, 2 * B, 7 + B), concat(a.subarray(2 * B), pattern(7, B)), 'appended after reopen');
      await reopened.append(22, 4, 60, pattern(6, 10));
      same(t, await reopened.read(22, 4, 0, 70), concat(pattern(22, 60), pattern(6, 10)), 'resumed after a bump');
    } finally {
      await reopened.close();
    }
  });
}
