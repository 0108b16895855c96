/** The chunk manager's lease recovery, step by step on hand-built views (see planLeaseRecoveries). */
import t from 'tap';
import type { Op } from '../../src/fsm/commands.ts';
import { RECOVERY_HOLDER } from '../../src/fsm/records.ts';
import { ChunkManager } from '../../src/placement/manager.ts';
import type { ChunkView, ChunkserverCommand, ClusterView, LeaseView, ReportedChunk } from '../../src/placement/manager.ts';
import { chunk, seededRandom, server, view } from './fixtures.ts';

const limits = {
  heartbeatTimeoutMs: 1_000,
  leaderGraceMs: 3_000,
  proposalRetryMs: 500,
  leaseRecoveryDelayMs: 200,
  recoveryLeaseMs: 10_000,
  leaseRecoveryAnswerWaitMs: 1_000,
  leaseRecoveryReplicasLostMs: 5_000,
};
const FILE = 101;
const servers = [server(1, 'r1'), server(2, 'r2'), server(3, 'r3'), server(4, 'r1')];

function withLeases(v: ClusterView, leases: Record<number, LeaseView>): ClusterView {
  return { ...v, leases: new Map(Object.entries(leases).map(([k, l]) => [Number(k), l])) };
}

/** The file's unsealed chunk 1 on servers 1–3 (the last chunk a vanished writer was writing). */
function unsealed(options: Partial<ChunkView> = {}): ChunkView {
  return chunk(1, [1, 2, 3], { fileId: FILE, sealed: false, lengthBytes: 0, index: 0, ...options });
}

function start(v: ClusterView, nowMs = 0): ChunkManager {
  const m = new ChunkManager({ random: seededRandom(3), nowMs, limits });
  m.setView(v);
  return m;
}

function ops(m: ChunkManager): Op[] {
  return m.takeProposals().map((p) => {
    m.settle(p.key);
    return p.op;
  });
}

/** Server `id` exchanges: a report of `chunks` (incremental), and the commands it is handed. */
function report(m: ChunkManager, id: number, nowMs: number, chunks: ReportedChunk[], full = false): ChunkserverCommand[] {
  return m.chunkReport(id, nowMs, { full, chunks }).commands;
}

void t.test('an expired lease: recovery begins after leaseRecoveryDelayMs; a live one is left alone', (t) => {
  const v = withLeases(view(servers, [unsealed()]), { [FILE]: { holder: 'w', expiresMs: 1_000 } });
  const m = start(v);
  m.tick(900);
  t.same(ops(m), [], 'the writer still holds it');
  m.tick(1_100);
  t.same(ops(m), [], 'expired, but within the delay (the holder may take it back)');
  m.tick(1_200);
  t.same(ops(m), [{ type: 'beginLeaseRecovery', file: FILE, durationMs: 10_000 }]);
  t.end();
});

void t.test('released with an unsealed chunk: recovery begins at once; an expired lease on a complete file is cleaned up', (t) => {
  const done = chunk(2, [1, 2, 3], { fileId: 202 });
  const m = start(withLeases(view(servers, [unsealed(), done]), { 202: { holder: 'w', expiresMs: 0 } }));
  m.tick(500);
  t.same(
    ops(m).map((o) => (o.type === 'beginLeaseRecovery' ? o.file : 0)).sort(),
    [FILE, 202],
  );
  t.end();
});

void t.test('asking, agreeing on the shortest unsealed length, sealing, then recoverChunk with the sealers', (t) => {
  const v = withLeases(view(servers, [unsealed()]), { [FILE]: { holder: RECOVERY_HOLDER, expiresMs: 20_000 } });
  const m = start(v);
  for (const id of [1, 2, 3]) report(m, id, 0, [{ handle: 1, version: 1, lengthBytes: 0, sealed: false }], true);
  m.tick(100);
  t.same(ops(m), []);
  t.equal(m.leaseRecoveries(), 1);
  // A report sent before the server was asked is no answer; the query travels in the next reply.
  const handed = new Map<number, ChunkserverCommand[]>();
  for (const id of [1, 2, 3]) handed.set(id, m.heartbeat(id, 150, { capacityBytes: 1, usedBytes: 0 }).commands);
  for (const id of [1, 2, 3]) t.same(handed.get(id), [{ kind: 'recover', handle: 1, version: 1 }], `server ${id} is asked`);
  // Answers: replica 2 is at the older version (its pipeline's new version never reached it).
  report(m, 1, 200, [{ handle: 1, version: 1, lengthBytes: 300_000, sealed: false }]);
  report(m, 2, 200, [{ handle: 1, version: 0, lengthBytes: 200_000, sealed: false }]);
  m.tick(300);
  t.same(ops(m), [], 'server 3 has not answered, and the wait is not over');
  report(m, 3, 400, [{ handle: 1, version: 1, lengthBytes: 250_000, sealed: false }]);
  m.tick(500);
  t.same(ops(m), [], 'all answered: sealing next');
  const seals = [1, 2, 3].map((id) => m.heartbeat(id, 550, { capacityBytes: 1, usedBytes: 0 }).commands);
  for (const s of seals) t.same(s, [{ kind: 'recover', handle: 1, version: 1, lengthBytes: 200_000 }], 'cut to the shortest, at the current version');
  report(m, 1, 600, [{ handle: 1, version: 1, lengthBytes: 200_000, sealed: true, checksum: 77 }]);
  report(m, 2, 600, [{ handle: 1, version: 1, lengthBytes: 200_000, sealed: true, checksum: 77 }]);
  m.tick(700);
  t.same(ops(m), [], 'waits for server 3 (within the answer wait)');
  report(m, 3, 800, [{ handle: 1, version: 1, lengthBytes: 250_000, sealed: false }]); // its seal failed
  m.tick(900);
  t.same(ops(m), [{ type: 'recoverChunk', handle: 1, version: 1, lengthBytes: 200_000, checksum: 77, replicas: [1, 2] }]);
  t.end();
});

void t.test('a replica the writer sealed (its seal never reached the leader) fixes the length', (t) => {
  const v = withLeases(view(servers, [unsealed()]), { [FILE]: { holder: RECOVERY_HOLDER, expiresMs: 20_000 } });
  const m = start(v);
  m.tick(0);
  for (const id of [1, 2, 3]) m.heartbeat(id, 10, { capacityBytes: 1, usedBytes: 0 });
  report(m, 1, 20, [{ handle: 1, version: 1, lengthBytes: 400, sealed: true, checksum: 5 }]);
  report(m, 2, 20, [{ handle: 1, version: 1, lengthBytes: 100, sealed: false }]); // lost unsynced bytes in a crash
  report(m, 3, 20, [{ handle: 1, version: 1, lengthBytes: 900, sealed: false }]);
  m.tick(100);
  t.same(ops(m), [{ type: 'recoverChunk', handle: 1, version: 1, lengthBytes: 400, checksum: 5, replicas: [1] }]);
  t.same(m.heartbeat(3, 150, { capacityBytes: 1, usedBytes: 0 }).commands, [{ kind: 'recover', handle: 1, version: 1, lengthBytes: 400 }], 'the longer one is cut to it');
  t.same(m.heartbeat(2, 150, { capacityBytes: 1, usedBytes: 0 }).commands, [], 'the shorter one cannot be');
  t.end();
});

void t.test('silent replicas: after the answer wait the others decide; with no answer at all it asks again, then drops the chunk', (t) => {
  const v = withLeases(view(servers, [unsealed()]), { [FILE]: { holder: RECOVERY_HOLDER, expiresMs: 20_000 } });
  const m = start(v);
  m.tick(0);
  for (const id of [1, 2, 3]) m.heartbeat(id, 10, { capacityBytes: 1, usedBytes: 0 });
  report(m, 1, 20, [{ handle: 1, version: 1, lengthBytes: 64, sealed: false }]);
  m.tick(500);
  t.same(ops(m), []);
  m.tick(1_010);
  t.same(ops(m), [], 'wait over: sealing with the one answer');
  t.same(m.heartbeat(1, 1_020, { capacityBytes: 1, usedBytes: 0 }).commands, [{ kind: 'recover', handle: 1, version: 1, lengthBytes: 64 }]);

  // Another file whose replicas hold nothing of it (a chunk allocated and never written to, or lost by every
  // replica). Their full reports lacking it are not enough to drop it at once (a report may predate a
  // replica); their answers to the query, reports naming it removed, are: nothing to wait for then.
  const gone = chunk(2, [1, 2], { fileId: 303, sealed: false, lengthBytes: 0, index: 0 });
  const v2 = withLeases(view(servers, [gone]), { 303: { holder: RECOVERY_HOLDER, expiresMs: 20_000 } });
  const m2 = start(v2);
  m2.tick(0);
  for (const id of [1, 2]) report(m2, id, 10, [], true);
  m2.tick(100);
  t.same(ops(m2), [], "held nowhere by the leader's holdings: not dropped at once");
  m2.chunkReport(1, 150, { full: false, chunks: [], removed: [2] });
  m2.tick(200);
  t.same(ops(m2), [], 'one replica said so, the other has not yet');
  m2.chunkReport(2, 250, { full: false, chunks: [], removed: [2] });
  m2.tick(300);
  t.same(ops(m2), [{ type: 'recoverChunk', handle: 2, version: 1, lengthBytes: 0, checksum: 0, replicas: [] }], 'every replica said, asked, it holds none: dropped at once');

  // The same, but one listed replica is on a dead server: it may come back with bytes, so the chunk is
  // dropped only after leaseRecoveryReplicasLostMs.
  const halfGone = chunk(3, [1, 2, 3], { fileId: 404, sealed: false, lengthBytes: 0, index: 0 });
  const withDead = [server(1, 'r1'), server(2, 'r2'), server(3, 'r3', { state: 'dead' })];
  const v3 = withLeases(view(withDead, [halfGone]), { 404: { holder: RECOVERY_HOLDER, expiresMs: 20_000 } });
  const m3 = start(v3);
  const dropped: number[] = [];
  for (let now = 0; now <= 6_000; now += 100) {
    for (const id of [1, 2]) m3.chunkReport(id, now, { full: false, chunks: [], removed: [3] });
    m3.tick(now);
    if (ops(m3).some((op) => op.type === 'recoverChunk')) dropped.push(now);
  }
  t.equal(dropped[0], 5_000, 'dropped after leaseRecoveryReplicasLostMs, not before (the view here never applies it: proposed again each pass)');
  t.end();
});

/** A file under recovery whose chunk 1 has one replica, on server 1, which holds 4 KiB of it (a full report says so). */
function heldOnOneReplica(recoveryExpiresMs: number): { m: ChunkManager; held: ReportedChunk } {
  const v = withLeases(view([server(1, 'r1')], [chunk(1, [1], { fileId: 7, sealed: false, lengthBytes: 0, index: 0, replication: 1 })]), {
    7: { holder: RECOVERY_HOLDER, expiresMs: recoveryExpiresMs },
  });
  const m = start(v);
  const held: ReportedChunk = { handle: 1, version: 1, lengthBytes: 4096, sealed: false };
  report(m, 1, 0, [held], true);
  return { m, held };
}

void t.test('a tick inside a full report of several messages does not drop a chunk whose replica holds bytes', (t) => {
  const { m, held } = heldOnOneReplica(20_000);
  m.tick(100); // the recovery asks
  t.same(m.chunkReport(1, 150, { full: true, fullMore: true, chunks: [] }).commands, [{ kind: 'recover', handle: 1, version: 1 }], "asked with the reply to a full report's first message");
  m.tick(200); // between that message and the next, the leader's holdings lack the chunk
  t.same(ops(m), [], 'no recoverChunk at length 0 while the replica holds 4 KiB');
  report(m, 1, 250, [held], false);
  m.tick(300);
  t.same(ops(m), [], 'still none');
  t.same(m.heartbeat(1, 350, { capacityBytes: 1, usedBytes: 0 }).commands, [{ kind: 'recover', handle: 1, version: 1, lengthBytes: 4096 }], 'sealed at what it holds');
  t.end();
});

void t.test('a recovery older than leaseRecoveryReplicasLostMs does not drop a chunk whose replica holds bytes while its full report arrives', (t) => {
  const { m, held } = heldOnOneReplica(60_000);
  m.tick(0);
  m.heartbeat(1, 50, { capacityBytes: 1, usedBytes: 0 }); // asked
  report(m, 1, 60, [held]); // answered: 4 KiB
  const drops: number[] = [];
  const watch = (now: number): void => {
    if (ops(m).some((op) => op.type === 'recoverChunk' && op.lengthBytes === 0)) drops.push(now);
  };
  // Its seal never comes (a disk that keeps failing): the recovery asks again and again, past the lost wait.
  for (let now = 100; now < 6_000; now += 100) {
    m.heartbeat(1, now, { capacityBytes: 1, usedBytes: 0 });
    m.tick(now);
    watch(now);
  }
  m.chunkReport(1, 6_000, { full: true, fullMore: true, chunks: [] }); // a full report's first page
  m.tick(6_050); // between its pages, the leader's holdings lack the chunk
  watch(6_050);
  m.chunkReport(1, 6_100, { full: false, chunks: [held] }); // its last page
  m.tick(6_200);
  watch(6_200);
  t.same(drops, [], 'never dropped at length 0 while the replica holds 4 KiB');
  t.end();
});

void t.test('the recovery lease is extended while it runs; a recovery whose chunk moved on is forgotten', (t) => {
  const v = withLeases(view(servers, [unsealed()]), { [FILE]: { holder: RECOVERY_HOLDER, expiresMs: 6_000 } });
  const m = start(v);
  m.tick(0);
  t.same(ops(m), []);
  m.tick(1_001);
  t.same(ops(m), [{ type: 'beginLeaseRecovery', file: FILE, durationMs: 10_000 }], 'under half the recovery lease left');
  m.setView(withLeases(view(servers, [unsealed({ sealed: true, lengthBytes: 10 })]), {}));
  m.tick(1_100);
  t.equal(m.leaseRecoveries(), 0);
  t.end();
});
