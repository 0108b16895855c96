/** The simulator's building blocks: PRNG streams, the event queue, the world's gating, partitions, the durable-log mirror. */
import t from 'tap';
import { EntryType, type Entry } from '../../src/raft/types.ts';
import { DurableLogMirror } from './durable-log.ts';
import { EventQueue } from './event-queue.ts';
import { linkKey, makePartition } from './network.ts';
import { Prng } from './prng.ts';
import { NO_NODE, World, type Gate, type SimEvent } from './world.ts';

void t.test('prng: seeded, split streams independent of draws elsewhere', (t) => {
  const draw = (p: Prng, n: number): number[] => Array.from({ length: n }, () => p.nextUint32());
  t.same(draw(Prng.fromSeed(42), 5), draw(Prng.fromSeed(42), 5), 'same seed, same numbers');
  t.not(draw(Prng.fromSeed(42), 5).join(), draw(Prng.fromSeed(43), 5).join(), 'different seeds differ');
  const a = Prng.fromSeed(9);
  const b = Prng.fromSeed(9);
  draw(a, 100);
  t.same(draw(a.split('disk'), 5), draw(b.split('disk'), 5), 'a stream does not depend on its parent draws');
  t.not(draw(b.split('disk'), 5).join(), draw(b.split('net'), 5).join(), 'named streams differ');
  const r = Prng.fromSeed(1);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 40_000; i++) counts[r.int(4)]!++;
  for (const c of counts) t.ok(c > 9_000 && c < 11_000, `int(4) is roughly uniform (${c})`);
  t.throws(() => r.int(0), RangeError);
  t.end();
});

void t.test('event queue: pops in (time, seq) order', (t) => {
  const q = new EventQueue<{ timeMs: number; seq: number }>();
  const r = Prng.fromSeed(3);
  const pushed = Array.from({ length: 500 }, (_, seq) => ({ timeMs: r.int(50), seq }));
  for (const e of pushed) q.push(e);
  const popped: { timeMs: number; seq: number }[] = [];
  for (let e = q.pop(); e !== undefined; e = q.pop()) popped.push(e);
  const expected = [...pushed].sort((x, y) => x.timeMs - y.timeMs || x.seq - y.seq);
  t.same(popped, expected);
  t.end();
});

void t.test('world: time order, gating, deferral, errors', (t) => {
  const ran: string[] = [];
  const errors: unknown[] = [];
  const deferred: SimEvent[] = [];
  let gate: Gate = 'run';
  const world = new World({ gate: () => gate, defer: (e) => deferred.push(e), onEventError: (_e, error) => errors.push(error) });
  const spec = (name: string, nodeId = 1) => ({ kind: 'timer' as const, nodeId, epoch: 0, run: () => ran.push(name), onDrop: () => ran.push(`dropped ${name}`) });
  world.schedule(5, spec('b'));
  world.schedule(1, spec('a'));
  world.schedule(5, spec('c'));
  while (world.step() !== null) {
    /* run all */
  }
  t.same(ran, ['a', 'b', 'c'], 'ordered by time, then by scheduling order');
  t.equal(world.nowMs, 5);
  gate = 'drop';
  world.schedule(1, spec('d'));
  world.step();
  gate = 'defer';
  world.schedule(1, spec('e'));
  world.step();
  t.same(ran.slice(3), ['dropped d'], 'a dropped event runs its onDrop; a deferred one waits');
  gate = 'run';
  world.requeue(deferred);
  world.step();
  t.same(ran.slice(4), ['e'], 'a requeued event runs');
  world.schedule(1, { kind: 'control', nodeId: NO_NODE, epoch: 0, run: () => { throw new Error('boom'); } });
  world.step();
  t.match(String(errors[0]), /boom/, 'an exception from the code under test is reported, not thrown');
  t.throws(() => world.schedule(-1, spec('x')), RangeError, 'no scheduling into the past');
  t.end();
});

void t.test('partitions', (t) => {
  const r = Prng.fromSeed(5);
  const nodes = [1, 2, 3, 4, 5];
  const isolate = makePartition('isolate', nodes, r, 3);
  for (const other of [1, 2, 4, 5]) {
    t.ok(isolate.blocked.has(linkKey(3, other)) && isolate.blocked.has(linkKey(other, 3)), `n3 cut from n${other} both ways`);
  }
  t.equal(isolate.blocked.size, 8);
  const oneWay = makePartition('one-way', nodes, r, 2);
  t.ok(oneWay.blocked.has(linkKey(2, 1)) && !oneWay.blocked.has(linkKey(1, 2)), 'one-way cuts one direction only');
  const ring = makePartition('majorities-ring', nodes, r);
  for (const a of nodes) {
    const reachable = nodes.filter((b) => b !== a && !ring.blocked.has(linkKey(a, b)));
    t.equal(reachable.length, 2, `n${a} reaches exactly its two ring neighbours`);
  }
  const halves = makePartition('halves', nodes, r);
  for (const a of nodes) for (const b of nodes) t.equal(halves.blocked.has(linkKey(a, b)), halves.blocked.has(linkKey(b, a)));
  t.end();
});

void t.test('durable log mirror: appends, truncation, snapshots, compaction', (t) => {
  const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array() });
  const m = new DurableLogMirror();
  const prevTerms: (number | null)[] = [];
  m.appendEntries([e(1, 1), e(2, 1), e(3, 2)], (_entry, prev) => prevTerms.push(prev));
  t.same(prevTerms, [null, 1, 1]);
  t.equal(m.lastIndex, 3);
  m.appendEntries([e(3, 3), e(4, 3)], (_entry, prev) => prevTerms.push(prev));
  t.same([m.termAt(3), m.termAt(4)], [3, 3], 'a conflicting suffix is replaced');
  m.applySnapshot({ index: 3, term: 3, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } });
  t.equal(m.termAt(4), 3, 'entries after a matching snapshot stay');
  t.equal(m.termAt(2), null, 'entries below it go');
  t.ok(m.holds(2, 99), 'a snapshot holds everything below it');
  m.applySnapshot({ index: 10, term: 5, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } });
  t.equal(m.lastIndex, 10);
  t.equal(m.termAt(4), null, 'a snapshot past the log replaces it');
  m.appendEntries([e(11, 5)], (_entry, prev) => t.equal(prev, 5, 'the entry after a snapshot follows the snapshot term'));
  m.compact(10);
  t.equal(m.termAt(11), 5);
  t.end();
});
