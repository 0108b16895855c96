/**
 * Short-circuit local reads (src/client/local-read.ts) against a real data server over TCP whose store is a
 * FileChunkStore on the local disk: a sealed replica is read from its files, exact for any range; whatever
 * is not right (a flipped bit, another host's token, a server that offers none, an unsealed or compressed
 * replica, a stale version) falls back to the data plane, which gives the bytes or the typed error; at most
 * localReplicasOpenMax data files stay open.
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
import { LocalReads, localReadPieceBytes, localReplicasOpenMax } from '../../src/client/local-read.ts';
import { PooledDialer } from '../../src/client/read-pool.ts';
import { patternBytes } from '../chunkserver/dataplane-harness.ts';

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
  const local = new LocalReads((address, handle, version) => askLocalReplica(pool, address, handle, version), nowMs);
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
