/**
 * Disk faults at the store and the agent, on the real file system (FaultyDisk: NodeDisk with errno faults)
 * and on the simulator's disk:
 * - errno mapping: ENOSPC/EDQUOT → DISK_FULL, any other errno → IO_ERROR;
 * - DISK_FULL on append or create, EIO on fsync (data and sidecar), EIO on read: typed errors, and a reopen
 *   finds the old or the new state, never a mix;
 * - SimDisk: a failed fsync loses the unsynced writes; bad spots; probabilistic errors by kind;
 * - the agent: a DISK_FULL makes the heartbeat report no room; repeated EIO mark the disk unhealthy (and it
 *   recovers as the window slides); a persistent read EIO gets the replica reported bad, a transient one not.
 */
import { pino } from 'pino';
import t from 'tap';
import type { Test } from 'tap';
import type { ChunkReportRequest, CommandsReply, MetadataLink, RegisterRequest } from '../../src/chunkserver/agent.ts';
import { MetadataAgent, errnoOf } from '../../src/chunkserver/agent.ts';
import { diskError } from '../../src/chunkserver/disk.ts';
import { createChunkserverMetrics } from '../../src/chunkserver/metrics.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { ChunkStoreError } from '../../src/chunkserver/types.ts';
import { ManualClock } from '../manual-clock.ts';
import { tempDir } from '../metadata/harness.ts';
import { SimDisk } from '../sim/disk.ts';
import { Prng } from '../sim/prng.ts';
import { FaultyDisk } from './faults-disk.ts';
import { MemoryIdStore } from './memory-store-agent.ts';

const KiB = 1024;

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

async function openFaulty(t: Test): Promise<{ disk: FaultyDisk; dir: string; open: () => Promise<FileChunkStore> }> {
  const tmp = await tempDir('rfs-faults-');
  t.teardown(() => tmp.remove());
  const disk = new FaultyDisk();
  const dir = `${tmp.dir}/chunks`;
  return { disk, dir, open: () => FileChunkStore.open(disk, dir, { chunkSizeBytes: 1024 * KiB }) };
}

void t.test('errno mapping: ENOSPC and EDQUOT are DISK_FULL, every other errno IO_ERROR', (t) => {
  const err = (code: string) => Object.assign(new Error(`${code}: something`), { code });
  t.equal(diskError(err('ENOSPC'), 'write x').code, 'DISK_FULL');
  t.equal(diskError(err('EDQUOT'), 'write x').code, 'DISK_FULL');
  for (const code of ['EIO', 'EROFS', 'EBADF', 'ENOENT', 'EUCLEAN']) t.equal(diskError(err(code), 'write x').code, 'IO_ERROR', code);
  t.equal(diskError(new Error('no code'), 'x').code, 'IO_ERROR');
  t.equal(errnoOf(new ChunkStoreError('IO_ERROR', 'read /a: EIO: i/o error')), 'EIO');
  t.equal(errnoOf(new ChunkStoreError('DISK_FULL', 'write /a')), 'ENOSPC', 'the usual errno when the message names none');
  t.end();
});

void t.test('DISK_FULL on append: typed, the replica keeps its old state, a reopen finds the synced state', async (t) => {
  const { disk, open } = await openFaulty(t);
  let store = await open();
  await store.create(1, 1);
  const first = bytes(100 * KiB, 1);
  await store.append(1, 1, 0, first);
  await store.sync(1);
  disk.limitBytes = disk.usedBytes() + 10 * KiB;
  await t.rejects(store.append(1, 1, first.length, bytes(64 * KiB, 2)), { code: 'DISK_FULL' }, 'the append fails DISK_FULL');
  t.equal(disk.injected.ENOSPC, 1);
  t.equal(store.info(1)?.lengthBytes, first.length, 'the length did not move');
  t.same(await store.read(1, 1, 0, first.length), first, 'the old bytes read back');
  t.equal((await store.usage()).capacityBytes, disk.limitBytes, 'usage reports the device');
  t.ok((await store.freeBytes()) < 10 * KiB, 'free bytes show the disk nearly full');
  // A new replica cannot be created either; nothing of it is left.
  disk.limitBytes = disk.usedBytes();
  await t.rejects(store.create(2, 1), { code: 'DISK_FULL' }, 'create fails DISK_FULL (its sidecar does not fit)');
  t.equal(store.info(2), undefined, 'no half-created replica');
  await store.close();
  disk.limitBytes = undefined;
  store = await open();
  t.same(store.list().map((r) => [r.handle, r.lengthBytes]), [[1, first.length]], 'reopened: the synced state, nothing of the failed writes');
  t.same(await store.read(1, 1, 0, first.length), first);
  // With room again the replica takes writes.
  await store.append(1, 1, first.length, bytes(10, 3));
  await store.sync(1);
  await store.close();
});

void t.test('EIO on the data fsync: IO_ERROR, the replica refuses writes, a reopen finds the last synced state', async (t) => {
  const { disk, open } = await openFaulty(t);
  let store = await open();
  await store.create(1, 1);
  const first = bytes(70 * KiB, 4);
  await store.append(1, 1, 0, first);
  await store.sync(1);
  await store.append(1, 1, first.length, bytes(5 * KiB, 5));
  disk.failSyncsNext = 1;
  await t.rejects(store.sync(1), { code: 'IO_ERROR' }, 'the failed fsync is an error, never a success');
  await t.rejects(store.sync(1), { code: 'IO_ERROR' }, 'and a retried sync does not pretend the bytes are durable');
  await t.rejects(store.append(1, 1, first.length + 5 * KiB, bytes(1, 6)), { code: 'IO_ERROR' }, 'the replica refuses writes');
  await store.close();
  store = await open();
  t.equal(store.info(1)?.lengthBytes, first.length, 'reopened at the last synced length');
  t.same(await store.read(1, 1, 0, first.length), first);
  t.ok(await store.delete(1, 1), 'a replica that failed can be deleted');
  await store.close();
});

void t.test('EIO on the sidecar: the sync fails, is retried, and a reopen finds old or new, never a mix', async (t) => {
  const { disk, open } = await openFaulty(t);
  let store = await open();
  await store.create(1, 1);
  await store.append(1, 1, 0, bytes(3 * KiB, 7));
  disk.failing = [{ pathIncludes: '.meta', kinds: ['rename'] }];
  await t.rejects(store.sync(1), { code: 'IO_ERROR' });
  disk.failing = [];
  await store.sync(1);
  await store.close();
  store = await open();
  t.equal(store.info(1)?.lengthBytes, 3 * KiB, 'the retried sync committed');
  t.same(await store.read(1, 1, 0, 3 * KiB), bytes(3 * KiB, 7));
  await store.close();
});

void t.test('EIO on read: IO_ERROR (not a checksum mismatch); the replica reads again once the fault clears', async (t) => {
  const { disk, open } = await openFaulty(t);
  const store = await open();
  await store.create(1, 1);
  await store.append(1, 1, 0, bytes(130 * KiB, 8));
  await store.seal(1, 1, 130 * KiB);
  await store.close();
  const reopened = await open();
  disk.failing = [{ pathIncludes: '1.data', kinds: ['read'] }];
  await t.rejects(reopened.read(1, 1, 0, 10), { code: 'IO_ERROR' });
  await t.rejects(reopened.verify(1), { code: 'IO_ERROR' });
  t.equal(reopened.stats.checksumMismatches, 0, 'not counted as corruption');
  disk.failing = [];
  t.same(await reopened.read(1, 1, 0, 10), bytes(130 * KiB, 8).subarray(0, 10));
  await reopened.close();
});

void t.test('SimDisk: a failed fsync loses the unsynced writes; bad spots; errors by kind', async (t) => {
  const disk = new SimDisk(Prng.fromSeed(5));
  await disk.makeDirectory('/d');
  const file = await disk.open('/d/a', { create: true });
  await disk.syncDirectory('/d');
  await file.write(bytes(10, 1), 0);
  await file.sync();
  await file.write(bytes(10, 2), 10);
  disk.failNext(1, ['sync']);
  await t.rejects(file.sync(), { code: 'IO_ERROR' });
  t.equal(disk.writebacksLost, 1);
  t.equal(await file.sizeBytes(), 10, 'the unsynced write is gone at once');
  await file.sync();
  disk.crash();
  t.same(disk.contents('/d/a'), bytes(10, 1), 'a later fsync did not make the lost bytes durable');

  const again = await disk.open('/d/a', { create: false });
  disk.failPath('/d/a', ['read']);
  await t.rejects(again.read(new Uint8Array(4), 0), { code: 'IO_ERROR', message: /EIO/ });
  await again.write(bytes(1, 3), 0); // writes still work there
  disk.healPath('/d/a');
  t.equal(await again.read(new Uint8Array(4), 0), 4);

  disk.ioErrorProbability = 1;
  disk.ioErrorKinds = ['write'];
  t.equal(await again.read(new Uint8Array(4), 0), 4, 'reads are not among the failing kinds');
  await t.rejects(again.write(bytes(1, 4), 0), { code: 'IO_ERROR' });
  t.ok(disk.ioErrorsInjected >= 3);

  disk.ioErrorProbability = 0;
  disk.capacityBytes = disk.usedBytes() + 5;
  await t.rejects(again.write(bytes(10, 5), 10), { code: 'DISK_FULL', message: /ENOSPC/ }, 'past the capacity: ENOSPC');
  t.equal(await again.sizeBytes(), 15, 'what fitted was written');
});

// ---- the agent

/** Lets real file-system work (statfs, fsync on the thread pool) finish between virtual-time steps. */
function realPause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 15));
}

/** Polls (advancing virtual time by nothing) until `check` holds, for real file-system work to finish. */
async function until(clock: ManualClock, check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !check(); i++) await clock.advance(0);
  return check();
}

class RecordingLink implements MetadataLink {
  readonly heartbeats: { atMs: number; capacityBytes: number; usedBytes: number }[] = [];
  readonly reports: ChunkReportRequest[] = [];
  constructor(private readonly clock: ManualClock) {}
  register(request: RegisterRequest): Promise<{ readonly id: number }> {
    return Promise.resolve({ id: request.id === 0 ? 3 : request.id });
  }
  heartbeat(request: { readonly id: number; readonly capacityBytes: number; readonly usedBytes: number }): Promise<CommandsReply> {
    this.heartbeats.push({ atMs: this.clock.now, capacityBytes: request.capacityBytes, usedBytes: request.usedBytes });
    return Promise.resolve({ commands: [], fullReportWanted: false });
  }
  chunkReport(request: ChunkReportRequest): Promise<CommandsReply> {
    this.reports.push(request);
    return Promise.resolve({ commands: [], fullReportWanted: false });
  }
  readonly bad: { handle: number; version: number }[] = [];
  reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }> {
    this.bad.push({ handle: request.handle, version: request.version });
    return Promise.resolve({ outcome: 'dropped' });
  }
}

async function agentOnFaultyDisk(t: Test) {
  const { disk, open } = await openFaulty(t);
  const store = await open();
  t.teardown(() => store.close());
  const clock = new ManualClock(0, realPause);
  const link = new RecordingLink(clock);
  const metrics = createChunkserverMetrics();
  const logged: { level: number; msg: string; handle?: number; errno?: string; version?: number | null }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line) as (typeof logged)[number]) });
  const agent = new MetadataAgent({
    address: '127.0.0.1:9000',
    rack: 'r0',
    store,
    link,
    idStore: new MemoryIdStore(),
    clock,
    copyReplica: () => Promise.resolve(),
    logger,
    metrics,
    freeBytes: () => store.freeBytes(),
    limits: { heartbeatIntervalMs: 1_000, retryDelayMsMin: 100, retryDelayMsMax: 1_000, reportDelayMs: 10, diskErrorWindowMs: 10_000, diskErrorsUnhealthyMin: 3, diskReserveBytes: 64 * KiB, readErrorVerifies: 3, readErrorVerifyIntervalMs: 1_000 },
  });
  t.teardown(() => agent.stop());
  await agent.start();
  await clock.advance(0);
  return { disk, store, clock, link, metrics, logged, agent };
}

void t.test('agent: DISK_FULL is logged with handle and errno, counted, and the heartbeat reports no room at once', async (t) => {
  const { disk, store, clock, link, metrics, logged, agent } = await agentOnFaultyDisk(t);
  disk.limitBytes = 1024 * KiB;
  let count = link.heartbeats.length;
  await clock.advance(1_000);
  await until(clock, () => link.heartbeats.length > count);
  const roomy = link.heartbeats.at(-1)!;
  t.ok(roomy.usedBytes < roomy.capacityBytes, 'room while the disk has room');
  await store.create(5, 2);
  disk.limitBytes = disk.usedBytes() + 100 * KiB;
  count = link.heartbeats.length;
  await clock.advance(1_000);
  await until(clock, () => link.heartbeats.length > count);
  const near = link.heartbeats.at(-1)!;
  t.ok(near.usedBytes >= near.capacityBytes - 100 * KiB + 64 * KiB, 'near full: the reserve is not offered as room');
  disk.limitBytes = disk.usedBytes() + 1;
  const error = await store.append(5, 2, 0, bytes(10, 1)).catch((e: unknown) => e);
  t.match(error, { code: 'DISK_FULL' });
  const before = link.heartbeats.length;
  agent.noteDiskError('append', 5, error);
  t.ok(await until(clock, () => link.heartbeats.length > before), 'a heartbeat went out at once');
  const full = link.heartbeats.at(-1)!;
  t.equal(full.usedBytes, full.capacityBytes, 'reported full');
  t.equal(agent.status().disk.full, true);
  const line = logged.find((l) => l.msg.startsWith('disk full'));
  t.match(line, { level: 40, handle: 5, version: 2, errno: 'ENOSPC' }, 'a warn line with handle, version and errno');
  t.match(await metrics.registry.getSingleMetricAsString('rfs_chunkserver_disk_errors_total'), /code="DISK_FULL",op="append"} 1/);
  disk.limitBytes = undefined;
  await clock.advance(11_000);
  t.equal(agent.status().disk.full, false, 'full no longer reported once the window passed with room');
  const later = link.heartbeats.at(-1)!;
  t.ok(later.usedBytes < later.capacityBytes);
});

void t.test('agent: repeated I/O errors mark the disk unhealthy, then healthy again', async (t) => {
  const { clock, link, metrics, logged, agent } = await agentOnFaultyDisk(t);
  const eio = new ChunkStoreError('IO_ERROR', 'write /x/9.data: EIO: i/o error');
  agent.noteDiskError('append', 9, eio);
  agent.noteDiskError('sync', 9, eio);
  t.equal(agent.status().disk.healthy, true, 'two errors: still healthy');
  agent.noteDiskError('create', 10, eio);
  t.equal(agent.status().disk.healthy, false, 'three within the window: unhealthy');
  const before = link.heartbeats.length;
  t.ok(await until(clock, () => link.heartbeats.length > before));
  const hb = link.heartbeats.at(-1)!;
  t.equal(hb.usedBytes, hb.capacityBytes, 'the heartbeat reports no room');
  t.match(await metrics.registry.getSingleMetricAsString('rfs_chunkserver_disk_healthy'), / 0$/m);
  t.ok(logged.some((l) => l.level === 50 && l.msg.startsWith('data disk marked unhealthy')));
  t.ok(logged.some((l) => l.level === 50 && l.msg === 'I/O error on the data disk' && l.errno === 'EIO' && l.handle === 9));
  agent.noteDiskError('append', 9, new ChunkStoreError('STALE_VERSION', 'not a disk error'));
  t.equal(agent.status().disk.ioErrorsRecent, 3, 'other codes are not disk errors');
  await clock.advance(10_000);
  t.equal(agent.status().disk.healthy, true, 'healthy again once the window holds fewer errors');
  t.ok(logged.some((l) => l.level === 40 && l.msg.startsWith('data disk healthy again')));
});

void t.test('agent: a persistent read EIO reports the replica bad to the leader; a transient one keeps it unreported', async (t) => {
  const { disk, store, clock, link, agent } = await agentOnFaultyDisk(t);
  for (const h of [1, 2, 3]) {
    await store.create(h, 1);
    await store.append(h, 1, 0, bytes(20 * KiB, h));
    await store.seal(h, 1, 20 * KiB);
  }
  await clock.advance(100);
  // Transient: the read failed, the verify that follows succeeds.
  agent.noteDiskError('read', 1, new ChunkStoreError('IO_ERROR', 'read 1.data: EIO'));
  await clock.advance(100);
  t.ok(store.info(1) !== undefined, 'a transient error deletes nothing');
  // A spell: every read fails for 1.5 s, longer than back-to-back verifies take, shorter than the verifies'
  // span (3 verifies 1 s apart). The replica is fine: it is kept.
  disk.failing = [{ pathIncludes: '/3.data', kinds: ['read'] }];
  agent.noteDiskError('read', 3, new ChunkStoreError('IO_ERROR', 'read 3.data: EIO'));
  await clock.advance(1_500);
  t.ok(store.info(3) !== undefined, 'still there in the spell: the verifies are spaced out');
  disk.failing = [];
  await clock.advance(1_000);
  await until(clock, () => false);
  t.ok(store.info(3) !== undefined, 'a spell of errors shorter than the verifies span deletes nothing');
  t.same(link.bad, [], 'and reports nothing');
  // Persistent: every read of the file fails.
  disk.failing = [{ pathIncludes: '/2.data', kinds: ['read'] }];
  agent.noteDiskError('read', 2, new ChunkStoreError('IO_ERROR', 'read 2.data: EIO'));
  await clock.advance(1_900);
  t.same(link.bad, [], 'not reported before the last verify (2 s after the error)');
  await clock.advance(100);
  t.ok(await until(clock, () => link.bad.length > 0), 'reported to the leader once every verify failed');
  t.same(link.bad, [{ handle: 2, version: 1 }]);
  t.equal(agent.status().unreadableReplicasReported, 1);
  t.ok(store.info(2) !== undefined, 'not deleted here: the leader orders its delete once another copy is listed');
});
