/**
 * The agent's own rules on a manual clock and a scripted link (no network, deterministic, as the simulator
 * will run it): retry backoff and its bound, reports split at reportChunksMax, copies limited to
 * replicationsInflightMax, a full report asked for during one, a corrupt source found by a copy, an id save
 * that fails, and the limits' consistency checks.
 */
import { pino } from 'pino';
import t from 'tap';
import type { AgentCommand, ChunkReportRequest, CommandsReply, CopyReplica, MetadataLink, RegisterRequest } from '../../src/chunkserver/agent.ts';
import { MetadataAgent, MetadataLinkError, checkAgentLimits, defaultAgentLimits } from '../../src/chunkserver/agent.ts';
import { ChunkStoreError } from '../../src/chunkserver/types.ts';
import { ManualClock, settleTurns } from '../manual-clock.ts';
import { MemoryChunkStore, MemoryIdStore } from './memory-store-agent.ts';

/** A link answering from a script. */
class ScriptedLink implements MetadataLink {
  up = true;
  readonly calls: { kind: string; atMs: number; request?: ChunkReportRequest | RegisterRequest }[] = [];
  /** Commands for the next reply. */
  queued: AgentCommand[] = [];
  fullReportWanted = false;
  constructor(private readonly clock: ManualClock) {}
  private check(): void {
    if (!this.up) throw new MetadataLinkError('UNAVAILABLE', 'no metadata leader answered');
  }
  private reply(): CommandsReply {
    const commands = this.queued;
    this.queued = [];
    return { commands, fullReportWanted: this.fullReportWanted };
  }
  register(request: RegisterRequest): Promise<{ readonly id: number }> {
    this.calls.push({ kind: 'register', atMs: this.clock.now, request });
    return Promise.resolve().then(() => {
      this.check();
      return { id: request.id === 0 ? 7 : request.id };
    });
  }
  heartbeat(): Promise<CommandsReply> {
    this.calls.push({ kind: 'heartbeat', atMs: this.clock.now });
    return Promise.resolve().then(() => {
      this.check();
      return this.reply();
    });
  }
  chunkReport(request: ChunkReportRequest): Promise<CommandsReply> {
    this.calls.push({ kind: 'report', atMs: this.clock.now, request });
    return Promise.resolve().then(() => {
      this.check();
      return this.reply();
    });
  }
  /** The next bad-replica reports' answers, in order (then 'dropped'); an Error rejects. */
  badAnswers: (string | Error)[] = [];
  readonly badReports: { handle: number; version: number; atMs: number }[] = [];
  /** How long a bad-replica report takes to be answered (on the manual clock). */
  badDelayMs = 0;
  reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }> {
    this.calls.push({ kind: 'bad', atMs: this.clock.now });
    this.badReports.push({ handle: request.handle, version: request.version, atMs: this.clock.now });
    const answered = this.badDelayMs === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.clock.setTimer(this.badDelayMs, resolve));
    return answered.then(() => {
      this.check();
      const answer = this.badAnswers.shift() ?? 'dropped';
      if (answer instanceof Error) throw answer;
      return { outcome: answer };
    });
  }
  reports(): ChunkReportRequest[] {
    return this.calls.flatMap((c) => (c.kind === 'report' ? [c.request as ChunkReportRequest] : []));
  }
}

function makeAgent(options: { store?: MemoryChunkStore; idStore?: MemoryIdStore; copyReplica?: CopyReplica; limits?: Partial<typeof defaultAgentLimits> } = {}) {
  const clock = new ManualClock(0, () => settleTurns(5));
  const link = new ScriptedLink(clock);
  const store = options.store ?? new MemoryChunkStore();
  const idStore = options.idStore ?? new MemoryIdStore();
  const agent = new MetadataAgent({
    address: '127.0.0.1:9000',
    rack: 'r0',
    store,
    link,
    idStore,
    clock,
    copyReplica: options.copyReplica ?? (() => Promise.resolve()),
    logger: pino({ level: 'silent' }),
    limits: { heartbeatIntervalMs: 1_000, retryDelayMsMin: 100, retryDelayMsMax: 1_000, reportDelayMs: 10, ...options.limits },
  });
  return { clock, link, store, idStore, agent };
}

void t.test('retries back off exponentially up to retryDelayMsMax, then recover', async (t) => {
  const { clock, link, agent } = makeAgent();
  link.up = false;
  await agent.start();
  await clock.advance(6_000);
  const times = link.calls.map((c) => c.atMs);
  const gaps = times.slice(1).map((x, i) => x - times[i]!);
  t.same(gaps.slice(0, 6), [100, 200, 400, 800, 1_000, 1_000], 'doubling, then capped');
  t.ok(gaps.every((g) => g <= 1_000), 'never longer than the cap');
  t.equal(agent.status().registered, false);
  link.up = true;
  await clock.advance(1_000);
  t.equal(agent.status().id, 7, 'registered once the link is up');
  t.equal(agent.status().consecutiveFailures, 0);
  await agent.stop();
});

void t.test('reports are split at reportChunksMax; heartbeats follow at their interval', async (t) => {
  const store = new MemoryChunkStore();
  for (let h = 1; h <= 25; h++) await store.put(h, 1, Buffer.from([h]), true);
  const { clock, link, agent } = makeAgent({ store, limits: { reportChunksMax: 10 } });
  await agent.start();
  await clock.advance(0);
  const full = link.reports();
  t.same(
    full.map((r) => [r.full, r.fullMore === true, r.chunks.length]),
    [
      [true, true, 10],
      [false, true, 10],
      [false, false, 5],
    ],
    'a full report of 25 in three messages: the first one full, all but the last with more to come',
  );
  for (let h = 1; h <= 25; h++) agent.noteReplicaChanged(h);
  await clock.advance(5);
  t.equal(link.reports().length, 3, 'changes wait reportDelayMs');
  await clock.advance(100);
  const incremental = link.reports().slice(3);
  t.same(incremental.map((r) => r.chunks.length + r.removed.length), [10, 10, 5], 'then go in messages of at most 10');
  t.ok(incremental.every((r) => !r.full && r.fullMore !== true), 'incremental ones are not part of a full report');
  const beats = link.calls.filter((c) => c.kind === 'heartbeat').map((c) => c.atMs);
  await clock.advance(3_000);
  const later = link.calls.filter((c) => c.kind === 'heartbeat').map((c) => c.atMs);
  t.same(later.slice(beats.length), [1_000, 2_000, 3_000], 'a heartbeat every interval');
  await agent.stop();
});

void t.test('copies: at most replicationsInflightMax at once, duplicates ignored, only held versions', async (t) => {
  const store = new MemoryChunkStore();
  for (let h = 1; h <= 5; h++) await store.put(h, 2, Buffer.from('x'), true);
  const running: { handle: number; done: () => void }[] = [];
  const copyReplica: CopyReplica = (copy) =>
    new Promise<void>((resolve) => {
      running.push({ handle: copy.handle, done: resolve });
    });
  const { clock, link, agent } = makeAgent({ store, copyReplica, limits: { replicationsInflightMax: 2 } });
  await agent.start();
  await clock.advance(0);
  const order = (handle: number, version = 2): AgentCommand => ({ kind: 'replicate', handle, version, target: 9, targetAddress: '127.0.0.1:9009' });
  link.queued = [order(1), order(2), order(3), order(3), order(4), order(5, 1)];
  await clock.advance(1_000);
  t.same(running.map((r) => r.handle), [1, 2], 'two copies run');
  t.equal(agent.status().copiesQueued, 2, 'two wait (the duplicate dropped, the wrong version skipped)');
  running[0]!.done();
  await clock.advance(0);
  t.same(running.map((r) => r.handle), [1, 2, 3], 'a slot freed: the next starts');
  running[1]!.done();
  running[2]!.done();
  await clock.advance(0);
  running[3]!.done();
  await clock.advance(0);
  t.same(running.map((r) => r.handle), [1, 2, 3, 4], 'handle 5 at version 1 is not held: never copied');
  t.equal(agent.status().copiesDone, 4);
  t.equal(agent.status().copiesInflight, 0);
  await agent.stop();
});

void t.test('a copy that finds its source corrupt reports it bad to the leader, and deletes it only on the leader\'s order', async (t) => {
  const store = new MemoryChunkStore();
  await store.put(4, 1, Buffer.from('x'), true);
  const copyReplica: CopyReplica = () => Promise.reject(new ChunkStoreError('CHECKSUM_MISMATCH', 'chunk 4 block 0'));
  const { clock, link, agent } = makeAgent({ store, copyReplica });
  await agent.start();
  await clock.advance(0);
  t.equal(link.reports().length, 1);
  link.queued = [{ kind: 'replicate', handle: 4, version: 1, target: 2, targetAddress: '127.0.0.1:1' }];
  link.badAnswers = ['last_replica'];
  await clock.advance(1_000);
  t.same(link.badReports.map((r) => [r.handle, r.version]), [[4, 1]], 'reported bad at its version');
  t.ok(store.info(4) !== undefined, 'kept: the leader says it is the only listed copy');
  t.equal(agent.status().copiesFailed, 1);
  // Reported again every badReplicaReportIntervalMs while held; the leader then drops it and orders the delete.
  await clock.advance(defaultAgentLimits.badReplicaReportIntervalMs);
  t.equal(link.badReports.length, 2, 'reported again');
  link.queued = [{ kind: 'delete', handle: 4, version: 1 }];
  await clock.advance(defaultAgentLimits.heartbeatIntervalMs);
  t.equal(store.info(4), undefined, 'deleted on the leader\'s order');
  await clock.advance(defaultAgentLimits.badReplicaReportIntervalMs * 2);
  t.equal(link.badReports.length, 2, 'and no longer reported');
  // A good copy placed here again at the same version (re-replication) is another replica: not reported.
  t.equal(await agent.reportCorrupt(4), false, 'nothing held: nothing to report');
  await store.put(4, 1, Buffer.from('x'), true);
  agent.noteReplicaChanged(4);
  await clock.advance(defaultAgentLimits.badReplicaReportIntervalMs * 2);
  t.equal(link.badReports.length, 2, 'the new copy is not reported');
  // One found bad and then rewritten before its report went out is not reported either.
  t.equal(await agent.reportCorrupt(4), true);
  agent.noteReplicaChanged(4);
  await clock.advance(defaultAgentLimits.badReplicaReportIntervalMs * 2);
  t.equal(link.badReports.length, 2, 'a changed replica is not the one found bad');
  await agent.stop();
});

void t.test('many bad replicas (a failing disk) do not hold back the heartbeats', async (t) => {
  const store = new MemoryChunkStore();
  for (let h = 1; h <= 40; h++) await store.put(h, 1, Buffer.from(`replica ${h}`), true);
  const { clock, link, agent } = makeAgent({ store });
  await agent.start();
  await clock.advance(0);
  link.badDelayMs = 100; // 40 reports: 4 s of them, two heartbeat intervals
  for (let h = 1; h <= 40; h++) await agent.reportCorrupt(h);
  await clock.advance(6_000);
  const bad = link.calls.filter((c) => c.kind === 'bad');
  t.equal(new Set(link.badReports.map((r) => r.handle)).size, 40, 'every bad replica reported');
  const first = bad[0]!.atMs;
  const last = bad.at(-1)!.atMs;
  const beats = link.calls.filter((c) => c.kind === 'heartbeat' && c.atMs > first && c.atMs < last);
  t.ok(beats.length >= 1, `heartbeats went out while the reports ran (${beats.length} between ${first} and ${last} ms)`);
  await agent.stop();
});

void t.test('bad replica reports: ESTALE settles it, UNAVAILABLE retries, unsealed deletes it here', async (t) => {
  const store = new MemoryChunkStore();
  await store.put(5, 2, Buffer.from('five'), true);
  await store.put(6, 1, Buffer.from('six'), false);
  const { clock, link, agent } = makeAgent({ store });
  await agent.start();
  await clock.advance(0);
  link.badAnswers = [new MetadataLinkError('UNAVAILABLE', 'no leader'), new MetadataLinkError('ESTALE', 'chunk 5 is at version 3')];
  t.equal(await agent.reportCorrupt(5), true);
  t.equal(await agent.reportCorrupt(5), true, 'a second report of the same version is one entry');
  await clock.advance(1_000);
  t.equal(link.badReports.filter((r) => r.handle === 5).length, 2, 'retried after UNAVAILABLE, then ESTALE');
  await clock.advance(defaultAgentLimits.badReplicaReportIntervalMs * 2);
  t.equal(link.badReports.filter((r) => r.handle === 5).length, 2, 'ESTALE settles it: not reported again');
  t.ok(store.info(5) !== undefined, 'left to garbage collection');
  link.badAnswers = ['unsealed'];
  await agent.reportCorrupt(6);
  await clock.advance(1_000);
  t.equal(store.info(6), undefined, 'an unsealed chunk\'s bad replica is deleted here');
  t.ok(link.reports().some((r) => !r.full && r.removed.includes(6)), 'and its removal reported');
  await agent.stop();
});

void t.test('a full report asked for while one is sent is sent again; deletes run and are reported', async (t) => {
  const store = new MemoryChunkStore();
  await store.put(1, 1, Buffer.from('a'), true);
  await store.put(2, 3, Buffer.from('b'), true);
  const { clock, link, agent } = makeAgent({ store });
  link.fullReportWanted = true; // the leader keeps asking (e.g. a new leader between two messages)
  await agent.start();
  await clock.advance(0);
  t.equal(link.reports().length, 1, 'one full report at once');
  await clock.advance(10);
  t.equal(link.reports().length, 2, 'asked again: sent again, reportDelayMs later');
  link.fullReportWanted = false;
  await clock.advance(10);
  const fullCount = link.reports().length;
  link.queued = [
    { kind: 'delete', handle: 1, version: 1 },
    { kind: 'delete', handle: 2, version: 2 }, // a newer replica: kept
  ];
  await clock.advance(1_000);
  t.equal(store.info(1), undefined, 'deleted');
  t.equal(store.info(2)?.version, 3, 'a replica above versionAtMost is kept');
  await clock.advance(100);
  const after = link.reports().slice(fullCount);
  t.same(after.flatMap((r) => r.removed), [1], 'the deletion reported');
  await agent.stop();
});

void t.test('an id the leader allocated is saved before use; a failed save is retried, not re-registered', async (t) => {
  const idStore = new MemoryIdStore();
  let failSaves = 2;
  const save = idStore.save.bind(idStore);
  idStore.save = (id) => (failSaves-- > 0 ? Promise.reject(new Error('EIO')) : save(id));
  const { clock, link, agent } = makeAgent({ idStore });
  await agent.start();
  await clock.advance(2_000);
  t.equal(link.calls.filter((c) => c.kind === 'register').length, 1, 'registered once');
  t.equal(idStore.id, 7, 'saved on the third try');
  t.equal(agent.status().id, 7);
  await agent.stop();
  t.equal(await agent.whenRegistered(), 7);

  const never = makeAgent();
  never.link.up = false;
  await never.agent.start();
  const waiting = never.agent.whenRegistered();
  await never.clock.advance(500);
  await never.agent.stop();
  await t.rejects(waiting, { code: 'STOPPED' }, 'stopped before it registered');
});

void t.test('too many unreported changes turn into one full report', async (t) => {
  const store = new MemoryChunkStore();
  for (let h = 1; h <= 6; h++) await store.put(h, 1, Buffer.from('x'), true);
  const { clock, link, agent } = makeAgent({ store, limits: { pendingChangesMax: 4 } });
  await agent.start();
  await clock.advance(0);
  link.up = false;
  for (let h = 1; h <= 6; h++) agent.noteReplicaChanged(h);
  t.equal(agent.status().pendingChanges, 1, 'dropped at the bound (only the change after it kept)');
  link.up = true;
  await clock.advance(1_000);
  const reports = link.reports();
  t.equal(reports.filter((r) => r.full).length, 2, 'a full report instead');
  t.equal(reports.at(-1)?.chunks.length, 6, 'listing everything');
  t.equal(reports.filter((r) => !r.full).length, 0, 'no incremental report needed');
  await agent.stop();
});

void t.test('limits that contradict each other are refused', (t) => {
  t.doesNotThrow(() => checkAgentLimits(defaultAgentLimits));
  t.throws(() => checkAgentLimits({ ...defaultAgentLimits, reportChunksMax: 10_000 }), RangeError, 'a report too large for one message');
  t.throws(() => checkAgentLimits({ ...defaultAgentLimits, retryDelayMsMax: 5_000 }), RangeError, 'backoff past a heartbeat');
  t.throws(() => checkAgentLimits({ ...defaultAgentLimits, replicationsInflightMax: 0 }), RangeError);
  t.end();
});

void t.test('lease recovery commands: a query reports the replica verified (sealed before a bad block); a seal cuts, raises and seals', async (t) => {
  const block = 64 * 1024;
  const store = new MemoryChunkStore();
  await store.put(1, 3, Buffer.alloc(3 * block + 10, 1), false);
  store.corruptFrom(1, 2 * block + 5); // a packet that went bad in flight, never acknowledged
  await store.put(2, 2, Buffer.alloc(1000, 2), false); // a survivor the last pipeline never raised
  await store.put(3, 3, Buffer.alloc(1000, 3), false); // shorter than the agreed length
  await store.put(4, 3, Buffer.alloc(500, 4), false); // a clean one, only asked
  const { clock, link, agent } = makeAgent({ store });
  link.queued = [
    { kind: 'recover', handle: 1, version: 3 },
    { kind: 'recover', handle: 2, version: 3, lengthBytes: 600 },
    { kind: 'recover', handle: 3, version: 3, lengthBytes: 2000 },
    { kind: 'recover', handle: 4, version: 3 },
    { kind: 'recover', handle: 9, version: 1 },
  ];
  await agent.start();
  await clock.advance(200);
  const after = link.reports().slice(1);
  const latest = new Map<number, unknown>();
  for (const r of after) {
    for (const c of r.chunks) latest.set(c.handle, [c.version, c.lengthBytes, c.sealed, c.checksum !== undefined]);
    for (const h of r.removed) latest.set(h, 'removed');
  }
  t.same(latest.get(1), [3, 2 * block, false, false], 'reported only up to the bad block');
  t.same(latest.get(2), [3, 600, true, true], 'cut to the agreed length, raised to the version, sealed, with its checksum');
  t.same(latest.get(3), [3, 1000, false, false], 'too short to seal at the agreed length: reported as it is');
  t.same(latest.get(4), [3, 500, false, false], 'a clean replica is reported as it is');
  t.equal(latest.get(9), 'removed', 'a chunk not held is reported removed');
  t.ok(Buffer.from(await store.read(2, 3, 0, 600)).equals(Buffer.alloc(600, 2)), 'the cut keeps the first bytes');
  // Then the seal agreed on for chunk 1 (its other replicas held as much): cut before the bad block.
  link.queued = [{ kind: 'recover', handle: 1, version: 3, lengthBytes: 2 * block }];
  await clock.advance(2_000);
  t.same(store.info(1) && [store.info(1)!.lengthBytes, store.info(1)!.sealed], [2 * block, true], 'sealed at the agreed length');
  const final = link.reports().at(-1)!.chunks.find((c) => c.handle === 1);
  t.same(final && [final.lengthBytes, final.sealed, final.checksum === store.info(1)!.checksum], [2 * block, true, true], 'reported sealed, with its checksum');
  await agent.stop();
});

void t.test('lease recovery orders past recoveriesQueuedMax are dropped, and taken when ordered again', async (t) => {
  const store = new MemoryChunkStore();
  for (let h = 1; h <= 5; h++) await store.put(h, 1, Buffer.alloc(100, h), false);
  const { clock, link, agent } = makeAgent({ store, limits: { recoveriesQueuedMax: 2 } });
  const answered = (): number[] => [...new Set(link.reports().slice(1).flatMap((r) => r.chunks.map((c) => c.handle)))].sort();
  link.queued = [1, 2, 3, 4, 5].map((handle) => ({ kind: 'recover' as const, handle, version: 1 }));
  await agent.start();
  await clock.advance(200);
  // The first order runs at once; two wait; the last two find the queue full.
  t.same(answered(), [1, 2, 3], 'the orders the queue held were answered; the rest dropped');
  link.queued = [4, 5].map((handle) => ({ kind: 'recover' as const, handle, version: 1 }));
  await clock.advance(2_000);
  t.same(answered(), [1, 2, 3, 4, 5], 'ordered again (as the leader does after its answer wait), they are answered');
  await agent.stop();
});
