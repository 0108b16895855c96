/**
 * Short-circuit local reads (src/client/local-read.ts) against a real data server over TCP whose store is a
 * FileChunkStore on the local disk: a sealed replica is read from its files, exact for any range; whatever
 * is not right (a flipped bit, another host's token, a server that offers none, an unsealed or compressed
 * replica, a stale version) falls back to the data plane, which gives the bytes or the typed error; at most
 * localReplicasOpenMax data files stay open; a hung disk (file calls that never return) costs a read the
 * stall timeout at most, and neither its slots nor a caller's buffer it may not retire stay with the hung
 * calls.
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { writeLocalReadToken } from '../../src/chunkserver/components.ts';
import { askLocalReplica, readRange } from '../../src/chunkserver/dataplane/read.ts';
import { DataServer } from '../../src/chunkserver/dataplane/server.ts';
import type { LocalReadToken } from '../../src/chunkserver/dataplane/server.ts';
import { TcpDataNetwork } from '../../src/chunkserver/dataplane/tcp.ts';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { checksumBlockBytes } from '../../src/chunkserver/types.ts';
import { tcpDataPlane } from '../../src/client/connect.ts';
import { realStallWatch } from '../../src/chunkserver/dataplane/stall.ts';
import { ReadBufferAbandonedError } from '../../src/client/data-path.ts';
import { LocalReads, localReadPieceBytes, localReadPiecesInflightMax, localReplicasOpenMax } from '../../src/client/local-read.ts';
import type { LocalFile } from '../../src/client/local-read.ts';
import { PooledDialer } from '../../src/client/read-pool.ts';
import { patternBytes, track } from '../chunkserver/dataplane-harness.ts';

interface Setup {
  readonly dir: string;
  readonly store: FileChunkStore;
  readonly server: DataServer;
  readonly token: LocalReadToken;
  readonly network: TcpDataNetwork;
  close(): Promise<void>;
}

async function setup(options: { localReads?: boolean } = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'rfs-local-read-'));
  const store = await FileChunkStore.open(new NodeDisk(), join(dir, 'chunks'));
  const token = await writeLocalReadToken(dir);
  const network = new TcpDataNetwork();
  const server = await DataServer.start({ id: 1, store, network, address: '127.0.0.1:0', ...(options.localReads === false ? {} : { localReads: token }) });
  return {
    dir,
    store,
    server,
    token,
    network,
    async close() {
      await server.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function sealed(store: FileChunkStore, handle: number, version: number, data: Uint8Array, options: { compression?: 'lz4' } = {}): Promise<void> {
  await store.create(handle, version, options);
  await store.append(handle, version, 0, data);
  await store.seal(handle, version, data.length);
}

function localReadsOf(s: Setup, nowMs?: () => number): { local: LocalReads; pool: PooledDialer } {
  const pool = new PooledDialer(s.network);
  const local = new LocalReads((address, handle, version) => askLocalReplica(pool, address, handle, version), nowMs === undefined ? {} : { nowMs });
  return { local, pool };
}

async function metric(server: DataServer, outcome: string): Promise<number> {
  const m = await server.metrics.localReads.get();
  return m.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

// Two pieces and a partial last block: exercises pieces, block edges and the tail.
const length = localReadPieceBytes + 3 * checksumBlockBytes + 1234;

void t.test('a sealed replica is read from its files: exact for every range, nothing over TCP', async (t) => {
  const s = await setup();
  t.teardown(() => s.close());
  const data = patternBytes(length, 11);
  await sealed(s.store, 5, 2, data);
  const plane = tcpDataPlane();
  t.teardown(() => plane.close());
  const address = s.server.address;

  const whole = await plane.readRange(address, { handle: 5, version: 2, offset: 0, length });
  t.ok(Buffer.from(whole).equals(data), 'the whole replica');
  t.ok(plane.isLocal?.(address), 'the server is known to be on this host');

  // Ranges at and across every kind of edge, plus seeded random ones (a failure names the range).
  const B = checksumBlockBytes;
  const ranges: [number, number][] = [
    [0, 1],
    [1, B - 2],
    [B - 1, 2],
    [B, B],
    [100, 3 * B],
    [localReadPieceBytes - 5, 10],
    [length - 1234, 1234],
    [length - 1, 1],
    [length - B - 7, B + 7],
    [0, 0],
  ];
  let state = 99;
  for (let i = 0; i < 40; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const offset = state % length;
    state = (state * 1103515245 + 12345) % 2 ** 31;
    ranges.push([offset, state % (length - offset + 1)]);
  }
  let expectedLocal = length;
  for (const [offset, n] of ranges) {
    const into = Buffer.alloc(n, 0xee);
    const got = await plane.readRange(address, { handle: 5, version: 2, offset, length: n }, into);
    t.equal(got, into, `[${offset}, +${n}) lands in the caller's buffer`);
    if (!Buffer.from(got).equals(data.subarray(offset, offset + n))) t.fail(`[${offset}, +${n}) differs`);
    expectedLocal += n;
  }
  const stats = plane.readStats();
  t.same(stats, { localBytes: expectedLocal, networkBytes: 0, localFallbacks: 0 }, 'every byte came from the local files');
  t.equal(await metric(s.server, 'ok'), 1, 'one local-read request: the open replica is reused');
});

void t.test('a flipped bit: the local read falls back, and the data plane reports the mismatch', async (t) => {
  const s = await setup();
  t.teardown(() => s.close());
  const data = patternBytes(length, 12);
  await sealed(s.store, 6, 1, data);
  const { local, pool } = localReadsOf(s);
  t.teardown(() => {
    pool.close();
    return local.close();
  });
  const address = s.server.address;
  t.ok((await local.read(address, { handle: 6, version: 1, offset: 0, length: 10 }))?.length === 10, 'read before the damage');
  const file = await open(join(s.dir, 'chunks', '6.data'), 'r+');
  const byte = Buffer.alloc(1);
  const at = 2 * checksumBlockBytes + 17;
  await file.read(byte, 0, 1, at);
  byte[0] = byte[0]! ^ 0x10;
  await file.write(byte, 0, 1, at);
  await file.close();

  t.equal(await local.read(address, { handle: 6, version: 1, offset: at - 5, length: 10 }), undefined, 'the damaged block is not returned');
  t.equal(local.stats.fallbacks, 1);
  t.equal(local.openCount, 0, 'the replica is closed after a mismatch');
  t.same(await local.read(address, { handle: 6, version: 1, offset: 0, length: 10 }), data.subarray(0, 10), 'an intact block still reads locally (reopened)');
  const plane = tcpDataPlane();
  t.teardown(() => plane.close());
  await t.rejects(plane.readRange(address, { handle: 6, version: 1, offset: at - 5, length: 10 }), { code: 'CHECKSUM_MISMATCH' }, 'through the data plane the chunkserver finds the bad block (and reports it)');
});

void t.test('another host (a token that does not match) and a server offering none: reads go over TCP', async (t) => {
  const s = await setup();
  t.teardown(() => s.close());
  const data = patternBytes(100_000, 13);
  await sealed(s.store, 7, 1, data);
  await writeFile(s.token.tokenPath, 'another-host');
  let now = 1_000;
  const { local, pool } = localReadsOf(s, () => now);
  t.teardown(() => {
    pool.close();
    return local.close();
  });
  const address = s.server.address;
  t.equal(await local.read(address, { handle: 7, version: 1, offset: 0, length: 10 }), undefined, 'a different token: not local');
  t.notOk(local.isLocal(address));
  t.equal(await local.read(address, { handle: 7, version: 1, offset: 0, length: 10 }), undefined);
  t.equal(await metric(s.server, 'ok'), 1, 'the address is not asked again within localReadRetryMs');
  await writeFile(s.token.tokenPath, s.token.token);
  now += 61_000;
  t.same(await local.read(address, { handle: 7, version: 1, offset: 0, length: 10 }), data.subarray(0, 10), 'asked again later: now local');
  t.ok(local.isLocal(address));

  const off = await setup({ localReads: false });
  t.teardown(() => off.close());
  await sealed(off.store, 7, 1, data);
  const plane = tcpDataPlane();
  t.teardown(() => plane.close());
  for (let i = 0; i < 3; i++) t.ok(Buffer.from(await plane.readRange(off.server.address, { handle: 7, version: 1, offset: 5, length: 500 })).equals(data.subarray(5, 505)), `read ${i} exact`);
  t.equal(await metric(off.server, 'LOCAL_READS_OFF'), 1, 'a server offering none is asked once');
  t.same(plane.readStats(), { localBytes: 0, networkBytes: 1500, localFallbacks: 0 }, 'every byte over TCP');
  const disabled = tcpDataPlane({ localReads: false });
  t.teardown(() => disabled.close());
  t.ok(Buffer.from(await disabled.readRange(s.server.address, { handle: 7, version: 1, offset: 0, length: 10 })).equals(data.subarray(0, 10)));
  t.equal(disabled.readStats().networkBytes, 10, 'localReads: false never reads files');
});

void t.test('unsealed, compressed, stale and unknown replicas', async (t) => {
  const s = await setup();
  t.teardown(() => s.close());
  const data = patternBytes(200_000, 14);
  await s.store.create(8, 1);
  await s.store.append(8, 1, 0, data);
  await sealed(s.store, 9, 1, data, { compression: 'lz4' });
  await sealed(s.store, 10, 3, data);
  await t.rejects(s.store.localPaths(8, 1), { code: 'NOT_LOCAL' }, 'an unsealed replica has no local paths');
  await t.rejects(s.store.localPaths(9, 1), { code: 'NOT_LOCAL' }, 'nor a compressed one');
  await t.rejects(s.store.localPaths(10, 2), { code: 'STALE_VERSION' });
  await t.rejects(s.store.localPaths(11, 1), { code: 'NO_SUCH_REPLICA' });
  t.same(await s.store.localPaths(10, 3), { dataPath: join(s.dir, 'chunks', '10.data'), metaPath: join(s.dir, 'chunks', '10.meta') });

  const plane = tcpDataPlane();
  t.teardown(() => plane.close());
  const address = s.server.address;
  t.ok(Buffer.from(await plane.readRange(address, { handle: 8, version: 1, offset: 0, length: 1000 })).equals(data.subarray(0, 1000)), 'unsealed: over TCP');
  t.ok(Buffer.from(await plane.readRange(address, { handle: 9, version: 1, offset: 0, length: 1000 })).equals(data.subarray(0, 1000)), 'compressed: over TCP');
  await t.rejects(plane.readRange(address, { handle: 10, version: 2, offset: 0, length: 10 }), { code: 'STALE_VERSION' }, 'a stale version: the data plane says so');
  await t.rejects(plane.readRange(address, { handle: 10, version: 3, offset: 199_990, length: 20 }), { code: 'BAD_OFFSET' }, 'past the end: the data plane says so');
  t.same(plane.readStats(), { localBytes: 0, networkBytes: 2000, localFallbacks: 0 });
  t.ok(Buffer.from(await plane.readRange(address, { handle: 10, version: 3, offset: 0, length: 1000 })).equals(data.subarray(0, 1000)), 'the sealed one reads locally');
  t.equal(plane.readStats().localBytes, 1000);
});

void t.test(`at most ${localReplicasOpenMax} replicas stay open`, async (t) => {
  const s = await setup();
  t.teardown(() => s.close());
  const { local, pool } = localReadsOf(s);
  t.teardown(() => {
    pool.close();
    return local.close();
  });
  const count = localReplicasOpenMax + 6;
  for (let h = 1; h <= count; h++) await sealed(s.store, h, 1, patternBytes(1000, h));
  for (let h = 1; h <= count; h++) t.same(await local.read(s.server.address, { handle: h, version: 1, offset: 0, length: 1000 }), patternBytes(1000, h), `replica ${h}`);
  t.equal(local.openCount, localReplicasOpenMax, 'the least recently used were closed');
  t.equal(local.stats.replicasOpened, count);
  t.same(await local.read(s.server.address, { handle: count, version: 1, offset: 0, length: 1000 }), patternBytes(1000, count));
  t.equal(local.stats.replicasOpened, count, 'a recently used one is still open');
  await local.close();
  t.equal(local.openCount, 0, 'close() closes every file');
  t.equal(await local.read(s.server.address, { handle: 1, version: 1, offset: 0, length: 10 }), undefined, 'and later reads go over the data plane');
  t.same(await readRange(pool, s.server.address, { handle: 1, version: 1, offset: 0, length: 10 }), patternBytes(1000, 1).subarray(0, 10));
});

void t.test('a hung disk: local opens and piece reads give up after the stall timeout, free their slots, and write late only into retirable buffers', async (t) => {
  const stallMs = 300;
  const hungDisk = await setup();
  t.teardown(() => hungDisk.close());
  const healthy = await setup(); // a second chunkserver on this host, on another disk
  t.teardown(() => healthy.close());
  const data = patternBytes(length, 15);
  await sealed(hungDisk.store, 20, 1, data);
  await sealed(hungDisk.store, 21, 1, data);
  await sealed(healthy.store, 20, 1, data);

  // Files under hungDisk.dir: reads (or opens of data files) that never return while `hang` says so, until
  // the test lets them finish late.
  let hang: 'nothing' | 'reads' | 'data-opens' = 'nothing';
  const hungReads: { buffer: Uint8Array; finish: () => void }[] = [];
  const hungOpens: ((file: LocalFile) => void)[] = [];
  const readTargets: ArrayBufferLike[] = [];
  const openFile = async (path: string): Promise<LocalFile> => {
    const onHungDisk = path.startsWith(hungDisk.dir);
    if (onHungDisk && hang === 'data-opens' && path.endsWith('.data')) return new Promise<LocalFile>((resolve) => hungOpens.push(resolve));
    const file = await open(path, 'r');
    return {
      read(buffer, offset, n, position) {
        readTargets.push(buffer.buffer);
        if (!(onHungDisk && hang === 'reads')) return file.read(buffer, offset, n, position);
        // Finishing late writes garbage where the bytes would have gone, as a late read would.
        const target = buffer.subarray(offset, offset + n);
        return new Promise((resolve) => hungReads.push({ buffer: target, finish: () => resolve({ bytesRead: target.fill(0xaa).length }) }));
      },
      stat: () => file.stat(),
      close: () => file.close(),
    };
  };
  let now = 1_000;
  const pool = new PooledDialer(hungDisk.network);
  const local = new LocalReads((address, handle, version) => askLocalReplica(pool, address, handle, version), { stall: realStallWatch(stallMs), openFile, nowMs: () => now });
  t.teardown(() => {
    pool.close();
    return local.close();
  });
  const slow = hungDisk.server.address;
  t.same(await local.read(slow, { handle: 20, version: 1, offset: 0, length: 10 }), data.subarray(0, 10), 'read locally while the disk answers');
  t.same(await local.read(healthy.server.address, { handle: 20, version: 1, offset: 0, length: 10 }), data.subarray(0, 10));

  // The disk hangs: a whole-replica read into a buffer the caller owns (two pieces, copied), a whole-replica
  // read into a buffer the caller can retire (read into straight) and a small read take every slot.
  hang = 'reads';
  const owned = Buffer.alloc(length, 0xee);
  const retirable = Buffer.alloc(length, 0xee);
  const small = Buffer.alloc(10, 0xee);
  const started = Date.now();
  const timed = <T>(promise: Promise<T>) => track(promise.then((value) => ({ value, tookMs: Date.now() - started })));
  const ownedRead = timed(local.read(slow, { handle: 20, version: 1, offset: 0, length }, owned));
  const retirableRead = timed(local.read(slow, { handle: 20, version: 1, offset: 0, length }, retirable, { retirable: true }));
  const smallRead = timed(local.read(slow, { handle: 20, version: 1, offset: 100, length: 10 }, small));
  // A read of the healthy server's replica waits for a slot behind them.
  const behind = track(local.read(healthy.server.address, { handle: 20, version: 1, offset: 5, length: 1000 }, Buffer.alloc(1000)));
  await new Promise((r) => setTimeout(r, stallMs + 1_500));
  t.equal(hungReads.length, localReadPiecesInflightMax, 'every slot went to a read of the hung disk');
  t.ok(ownedRead.done && retirableRead.done && smallRead.done, 'every read of the hung disk gave up');
  t.ok(behind.done, 'the read waiting for a slot got one');
  for (const r of [ownedRead, smallRead].filter((r) => r.done)) {
    const { value, tookMs } = await r.promise;
    t.equal(value, undefined, 'a read into a buffer the caller owns returns undefined: the caller goes over the data plane');
    t.ok(tookMs >= stallMs - 20 && tookMs < stallMs + 1_000, `after the stall timeout (${tookMs} ms for ${stallMs})`);
  }
  if (retirableRead.done) {
    t.ok(retirableRead.error instanceof ReadBufferAbandonedError, 'a read into a retirable buffer rejects: the caller retires it');
    t.match(retirableRead.error, { code: 'TIMEOUT' });
  }
  if (behind.done) t.same(await behind.promise, data.subarray(5, 1005), "the healthy server's replica read locally");
  t.ok(local.stats.stalls >= 1, `stalls counted (${local.stats.stalls})`);
  t.notOk(local.isLocal(slow), 'the hung address is not read locally for a while');
  t.ok(local.isLocal(healthy.server.address));
  const hungBefore = hungReads.length;
  const later = track(local.read(slow, { handle: 20, version: 1, offset: 0, length: 10 }));
  await new Promise((r) => setTimeout(r, 50));
  t.ok(later.done, 'a later read of it goes over the data plane at once');
  if (later.done) t.equal(await later.promise, undefined);
  t.equal(hungReads.length, hungBefore, 'without touching its files');
  t.same(await readRange(pool, slow, { handle: 20, version: 1, offset: 0, length: 10 }), data.subarray(0, 10), 'where the chunkserver serves it');
  now += 61_000;
  t.equal(await local.read(slow, { handle: 20, version: 1, offset: 0, length: 10 }), undefined, 'nor after localReadRetryMs while its hung calls are out');
  t.equal(hungReads.length, hungBefore, 'no further call is risked on the hung disk');

  // Only the retirable buffer was read into straight; the hung calls finish late, writing garbage.
  const hungTargets = new Set(hungReads.map((r) => r.buffer.buffer));
  t.ok(hungTargets.has(retirable.buffer), 'the retirable buffer was read into straight');
  t.notOk(hungTargets.has(owned.buffer) || hungTargets.has(small.buffer), "no file read was given a buffer the caller owns");
  hang = 'nothing';
  for (const r of hungReads) r.finish();
  await new Promise((r) => setTimeout(r, 20));
  t.ok([owned, small].every((into) => into.every((b) => b === 0xee)), "the late reads changed nothing in the owners' buffers");
  const targetsBefore = readTargets.length;
  for (let i = 0; i < 8; i++) {
    const into = Buffer.alloc(length);
    t.equal(await local.read(healthy.server.address, { handle: 20, version: 1, offset: 0, length }, into), into);
    if (!into.equals(data)) t.fail(`read ${i} after the late completions differs`);
  }
  t.notOk(readTargets.slice(targetsBefore).some((target) => hungTargets.has(target)), 'no buffer of an abandoned read was used again');

  // Its hung calls returned and localReadRetryMs passed: the address is tried again; now an open of a data file hangs.
  hang = 'data-opens';
  const opening = track(local.read(slow, { handle: 21, version: 1, offset: 0, length: 10 }));
  await new Promise((r) => setTimeout(r, stallMs + 1_500));
  t.equal(hungOpens.length, 1, 'the data file open hangs');
  t.ok(opening.done, 'the read gave up on the hung open');
  if (opening.done) t.equal(await opening.promise, undefined);
  t.notOk(local.isLocal(slow));
  let lateClosed = false;
  hungOpens[0]!({ read: () => Promise.reject(new Error('not to be read')), stat: () => Promise.reject(new Error('not to be read')), close: () => Promise.resolve(void (lateClosed = true)) });
  await new Promise((r) => setTimeout(r, 20));
  t.ok(lateClosed, 'a file the hung open yields late is closed');
});
