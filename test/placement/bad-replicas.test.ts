/**
 * The chunk manager's rules for replicas readers report bad, and for a writer's replacement replicas, on
 * hand-built views (see the rules in src/placement/manager.ts).
 */
import t from 'tap';
import type { Op } from '../../src/fsm/commands.ts';
import { ChunkManager } from '../../src/placement/manager.ts';
import type { ChunkManagerOptions, ChunkserverCommand, ClusterView } from '../../src/placement/manager.ts';
import { chunk, seededRandom, server, view } from './fixtures.ts';

const limits = { heartbeatTimeoutMs: 1_000, leaderGraceMs: 3_000, proposalRetryMs: 500, replicationTimeoutMs: 5_000 };

function manager(v: ClusterView, options: Partial<ChunkManagerOptions> = {}): ChunkManager {
  const m = new ChunkManager({ random: seededRandom(7), nowMs: 0, limits, ...options });
  m.setView(v);
  return m;
}

function ops(m: ChunkManager): Op[] {
  return m.takeProposals().map((p) => p.op);
}

function beat(m: ChunkManager, id: number, nowMs: number): ChunkserverCommand[] {
  return m.heartbeat(id, nowMs, { capacityBytes: 100, usedBytes: 0 }).commands;
}

const servers = [server(1, 'r1'), server(2, 'r2'), server(3, 'r3'), server(4, 'r1'), server(5, 'r2')];
const held = (handle: number, version = 1) => [{ handle, version, lengthBytes: 1 }];

void t.test('a bad listed replica is unlisted, then ordered deleted, never re-listed from that copy, and forgotten once gone', (t) => {
  const before = view(servers, [chunk(1, [1, 2, 3])]);
  const m = manager(before);
  for (const id of [1, 2, 3]) m.chunkReport(id, 0, { full: true, chunks: held(1) });
  m.markBadReplica(1, 3, 1);
  t.same(m.badReplicaDrop(before.chunks.get(1)!), { op: { type: 'setChunkReplicas', handle: 1, version: 1, replicas: [1, 2] } }, 'the drop a reporter proposes itself');
  m.tick(10);
  t.same(ops(m), [{ type: 'setChunkReplicas', handle: 1, version: 1, replicas: [1, 2] }], 'the pass unlists it too');
  t.same(beat(m, 3, 20), [], 'no delete while it is still listed (it may be needed)');

  // The drop applied: the pass orders the delete and re-replicates from a good copy only.
  const after = view(servers, [chunk(1, [1, 2])]);
  m.setView(after);
  m.settle('chunk:1');
  m.tick(600);
  t.same(beat(m, 3, 610), [{ kind: 'delete', handle: 1, version: 1 }], 'delete chunk Z, on its next heartbeat');
  const copies = [1, 2, 4, 5].flatMap((id) => beat(m, id, 620).map((c) => ({ from: id, ...c })));
  t.equal(copies.length, 1, 'one copy restores the factor');
  t.ok(copies[0]!.from === 1 || copies[0]!.from === 2, 'from a good replica');
  t.ok(copies[0]!.kind === 'replicate' && copies[0]!.target !== 3, 'not onto the bad server (it still holds the chunk)');
  // Before deleting, the bad server reports its copy: it is not listed (the chunk is short), the delete repeated.
  const again = m.chunkReport(3, 630, { full: true, chunks: held(1) });
  t.same(again.commands, [{ kind: 'delete', handle: 1, version: 1 }], 'the delete is repeated on a report of the copy');
  t.same(ops(m), [], 'and the bad copy is not listed although the chunk is short');
  t.equal(m.badReplicaMarks(), 1);
  m.chunkReport(3, 640, { full: false, chunks: [], removed: [1] });
  t.equal(m.badReplicaMarks(), 0, 'forgotten once the server reports the copy gone');
  t.end();
});

void t.test('a bad replica stays listed when no other usable replica is; unlisted or unknown ones change nothing', (t) => {
  const v = view([server(1, 'r1'), server(2, 'r2', { state: 'dead' }), server(3, 'r3')], [chunk(1, [1, 2], { replication: 2 })]);
  const m = manager(v);
  m.chunkReport(1, 0, { full: true, chunks: held(1) });
  m.markBadReplica(1, 1, 1);
  t.same(m.badReplicaDrop(v.chunks.get(1)!), { outcome: 'last_replica' }, 'the other listed replica is on a dead server');
  m.tick(10);
  t.same(ops(m), [], 'the pass keeps it too');
  const commands = [...beat(m, 1, 20), ...beat(m, 3, 20)];
  t.notOk(commands.some((c) => c.kind === 'delete'), 'no delete of the only copy');
  t.same(
    commands.map((c) => ({ kind: c.kind, handle: c.handle, target: 'target' in c ? c.target : undefined })),
    [{ kind: 'replicate', handle: 1, target: 3 }],
    'the bad replica is the only copy: it is the copy source, as a last resort (the source verifies every block it sends)',
  );
  m.markBadReplica(1, 3, 1);
  t.same(m.badReplicaDrop(v.chunks.get(1)!), { outcome: 'last_replica' });
  const m2 = manager(view(servers, [chunk(1, [1, 2])]));
  m2.markBadReplica(1, 5, 1);
  t.same(m2.badReplicaDrop(view(servers, [chunk(1, [1, 2])]).chunks.get(1)!), { outcome: 'not_listed' });
  t.end();
});

void t.test('bad replica marks: at a version, bounded, forgotten with their chunk; the proposal slot is shared', (t) => {
  const v = view(servers, [chunk(1, [1, 2, 3], { version: 2 }), chunk(2, [1, 2, 3])]);
  const m = manager(v, { limits: { ...limits, badReplicasMax: 2 } });
  m.markBadReplica(1, 3, 1);
  t.same(m.badReplicaDrop(v.chunks.get(1)!), { outcome: 'not_listed' }, 'a mark at an older version does not count');
  m.markBadReplica(2, 3, 1);
  t.throws(() => m.markBadReplica(2, 2, 1), { code: 'EAGAIN' }, 'badReplicasMax');
  m.markBadReplica(2, 3, 1);
  t.equal(m.badReplicaMarks(), 2, 'a repeated mark is no new mark');
  const claim = m.claimChunk(2, 0);
  t.equal(claim, 'chunk:2');
  t.equal(m.claimChunk(2, 0), null, 'one proposal per chunk at a time');
  m.tick(10);
  t.same(ops(m), [], 'the pass does not propose for a claimed chunk');
  m.settle(claim!);
  m.setView(view(servers, [], 3)); // both chunks reclaimed
  m.tick(20);
  t.equal(m.badReplicaMarks(), 0, 'marks of reclaimed and moved-on chunks are forgotten');
  t.end();
});

void t.test('replacements for a new pipeline: new servers, not holding the chunk, new racks first, fewer when few qualify', (t) => {
  const v = view([...servers, server(6, 'r3'), server(7, 'r4', { state: 'dead' })], [chunk(1, [1, 2, 3], { sealed: false })]);
  const m = manager(v);
  m.chunkReport(4, 0, { full: true, chunks: held(1) }); // a copy on 4 (an old pipeline's)
  for (let seed = 0; seed < 20; seed++) {
    const r = manager(v, { random: seededRandom(seed) });
    r.chunkReport(4, 0, { full: true, chunks: held(1) });
    t.same(r.replacements(1, { keep: [1, 2], exclude: [1, 2, 3], count: 1 }), [6], `seed ${seed}: the one live server in the survivors' missing rack that holds nothing`);
  }
  t.same(m.replacements(1, { keep: [1], exclude: [1, 2, 3], count: 5 }).sort(), [5, 6], 'all that qualify, no more');
  t.same(m.replacements(1, { keep: [1, 2], exclude: [1, 2, 3], count: 0 }), [], 'none asked');
  t.end();
});
