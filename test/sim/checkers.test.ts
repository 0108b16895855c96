/**
 * Every checker must be able to fail. The planted bugs exercise some of them end to end (planted-bugs.test.ts);
 * here each checker gets a hand-made bad observation, and a matching good one that it must accept.
 */
import t, { type Test } from 'tap';
import type { NodeStatus } from '../../src/raft/node-api.ts';
import type { ConfState, Entry, NodeId, Role } from '../../src/raft/types.ts';
import { EntryType, emptyHardState } from '../../src/raft/types.ts';
import { InvariantChecker, type ViolationKind } from './checkers.ts';
import { encodeCommand } from './kv.ts';

const conf3: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

function status(id: NodeId, fields: Partial<NodeStatus> & { role?: Role } = {}): NodeStatus {
  return {
    id,
    term: 1,
    vote: 0,
    role: 'follower',
    lead: 0,
    commit: 0,
    applied: 0,
    firstIndex: 1,
    lastIndex: 0,
    confState: conf3,
    progress: new Map(),
    ...fields,
  };
}

function entry(index: number, term: number, text = `k=v${index}.${term}`): Entry {
  const [key = 'k', value = ''] = text.split('=');
  return { index, term, type: EntryType.Normal, data: encodeCommand({ key, value }) };
}

/** termAt over a list of (index, term) pairs. */
function terms(pairs: readonly (readonly [number, number])[]): (index: number) => number | null {
  const map = new Map(pairs);
  return (index) => map.get(index) ?? null;
}

function expectViolation(t: Test, checker: InvariantChecker, kind: ViolationKind, pattern?: RegExp): void {
  t.equal(checker.violation?.kind, kind, `violation kind is ${kind}`);
  if (pattern !== undefined) t.match(checker.violation?.message ?? '', pattern);
}

/** Saves `entries` and a hard state of `term` on each of `nodes`. */
function saveLog(checker: InvariantChecker, nodes: readonly NodeId[], entries: readonly Entry[], term: number): void {
  for (const id of nodes) {
    checker.onDurableSave(id, { entries, hardState: { term, vote: 0, commit: 0 } });
  }
}

void t.test('election safety: two leaders in one term', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onStatus(status(1, { role: 'leader', term: 3 }), terms([]));
  c.onStatus(status(1, { role: 'leader', term: 3 }), terms([]));
  t.equal(c.violation, null, 'the same leader seen twice is fine');
  c.onStatus(status(2, { role: 'leader', term: 4 }), terms([]));
  t.equal(c.violation, null, 'a leader of a later term is fine');
  c.onStatus(status(3, { role: 'leader', term: 3 }), terms([]));
  expectViolation(t, c, 'election-safety', /two leaders in term 3/);
  t.end();
});

void t.test('election safety: a vote changed within a term, a durable term going backwards', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onDurableSave(1, { hardState: { term: 2, vote: 2, commit: 0 } });
  c.onDurableSave(1, { hardState: { term: 2, vote: 2, commit: 1 } });
  c.onDurableSave(1, { hardState: { term: 3, vote: 3, commit: 1 } });
  t.equal(c.violation, null, 'same vote again, then a new term and vote');
  c.onDurableSave(1, { hardState: { term: 3, vote: 2, commit: 1 } });
  expectViolation(t, c, 'election-safety', /changed its vote in term 3/);

  const d = new InvariantChecker(() => 0);
  d.onDurableSave(1, { hardState: { term: 5, vote: 0, commit: 0 } });
  d.onDurableSave(1, { hardState: { term: 4, vote: 0, commit: 0 } });
  expectViolation(t, d, 'election-safety', /term 4 after term 5/);
  t.end();
});

void t.test('log matching: same (index, term) with different content or a different predecessor', (t) => {
  const c = new InvariantChecker(() => 0);
  saveLog(c, [1, 2], [entry(1, 1), entry(2, 1)], 1);
  t.equal(c.violation, null, 'identical logs agree');
  c.onDurableSave(3, { entries: [entry(1, 1), entry(2, 1, 'k=other')] });
  expectViolation(t, c, 'log-matching', /\(index 2, term 1\) saved on n3 has different content than on n1/);

  const d = new InvariantChecker(() => 0);
  d.onDurableSave(1, { entries: [entry(1, 1), entry(2, 2, 'k=x')] });
  d.onDurableSave(2, { entries: [entry(1, 2), entry(2, 2, 'k=x')] });
  expectViolation(t, d, 'log-matching', /different previous term/);
  t.end();
});

void t.test('log matching: a loaded record that differs on a node with injected corruption', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onDurableSave(1, { entries: [entry(1, 1), entry(2, 1)] });
  c.markCorruptionInjected(2);
  c.onDurableLoad(2, { hardState: emptyHardState, snapshot: null, entries: [entry(1, 1), entry(2, 1, 'k=bitflip')] });
  expectViolation(t, c, 'corruption-undetected');
  t.end();
});

void t.test('durability: synced state missing after a restart', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onDurableSave(1, { entries: [entry(1, 1), entry(2, 1)], hardState: { term: 1, vote: 1, commit: 2 } });
  c.onDurableLoad(1, { hardState: { term: 1, vote: 1, commit: 2 }, snapshot: null, entries: [entry(1, 1), entry(2, 1)] });
  t.equal(c.violation, null, 'everything synced came back');
  c.onDurableLoad(1, { hardState: { term: 1, vote: 1, commit: 2 }, snapshot: null, entries: [entry(1, 1)] });
  expectViolation(t, c, 'durability', /without its synced committed entry 2/);

  const d = new InvariantChecker(() => 0);
  d.onDurableSave(1, { hardState: { term: 4, vote: 2, commit: 0 } });
  d.onDurableLoad(1, { hardState: { term: 3, vote: 2, commit: 0 }, snapshot: null, entries: [] });
  expectViolation(t, d, 'durability', /restarted with term 3/);
  t.end();
});

void t.test('leader completeness: a new leader without a committed entry', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onStatus(status(1, { commit: 3, lastIndex: 3 }), terms([[1, 1], [2, 1], [3, 2]]));
  c.onStatus(status(2, { role: 'leader', term: 3, lastIndex: 3 }), terms([[1, 1], [2, 1], [3, 2]]));
  t.equal(c.violation, null, 'a leader holding every committed entry');
  c.onStatus(status(3, { role: 'leader', term: 4, lastIndex: 2 }), terms([[1, 1], [2, 1]]));
  expectViolation(t, c, 'leader-completeness', /n3 became leader of term 4 without committed entry 3/);
  t.end();
});

void t.test('leader completeness: a leader of a term the others have left need not hold what they committed since', (t) => {
  const c = new InvariantChecker(() => 0);
  // Entry 3 is committed in term 5 (node 1 sees it at term 5); node 2 then becomes leader of term 4 (it was
  // paused with its term-4 votes unread): not a violation. A leader of term 6 without entry 3 is one.
  c.onStatus(status(1, { term: 5, commit: 3, lastIndex: 3 }), terms([[1, 1], [2, 1], [3, 5]]));
  c.onStatus(status(2, { role: 'leader', term: 4, lastIndex: 2 }), terms([[1, 1], [2, 1]]));
  t.equal(c.violation, null, 'a stale-term leader');
  c.onStatus(status(3, { role: 'leader', term: 6, lastIndex: 2 }), terms([[1, 1], [2, 1]]));
  expectViolation(t, c, 'leader-completeness', /n3 became leader of term 6 without committed entry 3/);
  t.end();
});

void t.test('commit rule: a leader committing an earlier-term entry by counting replicas', (t) => {
  const durable = [entry(1, 1), entry(2, 2), entry(3, 3)];
  const log = terms([[1, 1], [2, 2], [3, 3]]);
  const c = new InvariantChecker(() => 0);
  saveLog(c, [1, 2, 3], durable, 3);
  c.onStatus(status(1, { role: 'leader', term: 3, commit: 1, lastIndex: 3 }), log);
  c.onStatus(status(1, { role: 'leader', term: 3, commit: 3, lastIndex: 3 }), log);
  t.equal(c.violation, null, 'commit moved onto an entry of the current term');
  const d = new InvariantChecker(() => 0);
  saveLog(d, [1, 2, 3], durable, 3);
  d.onStatus(status(1, { role: 'leader', term: 3, commit: 1, lastIndex: 3 }), log);
  d.onStatus(status(1, { role: 'leader', term: 3, commit: 2, lastIndex: 3 }), log);
  expectViolation(t, d, 'commit-rule', /advanced its commit index from 1 to 2, an entry of term 2/);
  t.end();
});

void t.test('commit durability: a leader committing what a quorum does not hold on disk', (t) => {
  const c = new InvariantChecker(() => 0);
  saveLog(c, [1, 2], [entry(1, 1)], 1);
  c.onStatus(status(1, { role: 'leader', commit: 1, lastIndex: 1 }), terms([[1, 1]]));
  t.equal(c.violation, null, 'two of three voters hold it');
  c.onDurableSave(1, { entries: [entry(2, 1)] });
  c.onStatus(status(1, { role: 'leader', commit: 2, lastIndex: 2 }), terms([[1, 1], [2, 1]]));
  expectViolation(t, c, 'commit-durability', /only \[n1\] of voters \[n1,n2,n3\]/);
  t.end();
});

void t.test('state machine safety: different entries applied at one index', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onApply(1, entry(1, 1, 'a=1'), 0);
  c.onApply(2, entry(1, 1, 'a=1'), 0);
  t.equal(c.violation, null, 'the same entry applied twice');
  c.onApply(3, entry(1, 1, 'a=2'), 0);
  expectViolation(t, c, 'state-machine-safety', /n3 applied a=2/);

  const d = new InvariantChecker(() => 0);
  d.onApply(1, entry(2, 1), 1);
  d.onApply(1, entry(2, 1), 2);
  expectViolation(t, d, 'state-machine-safety', /applied index 2 after index 2/);

  const e = new InvariantChecker(() => 0);
  e.onStatus(status(1, { commit: 2, lastIndex: 2 }), terms([[1, 1], [2, 1]]));
  e.onStatus(status(2, { commit: 2, lastIndex: 2 }), terms([[1, 1], [2, 2]]));
  expectViolation(t, e, 'state-machine-safety', /committed entry 2 changed/);
  t.end();
});

void t.test('snapshot consistency: a restored state that no node ever had', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onApply(1, entry(2, 1, 'a=1'), 1);
  c.onApply(1, entry(3, 1, 'a=2'), 2);
  const meta = { index: 2, term: 1, confState: conf3 };
  c.onRestore(2, meta, new Map([['a', '1']]));
  t.equal(c.violation, null, 'the state at index 2');
  c.onRestore(3, meta, new Map([['a', '2']]));
  expectViolation(t, c, 'snapshot-consistency', /a=2; the state there has a=1/);
  t.end();
});

void t.test('acknowledged writes: applied content differs from what was acknowledged', (t) => {
  const c = new InvariantChecker(() => 0);
  const floor = c.floorNow();
  const data = encodeCommand({ key: 'a', value: 'mine' });
  c.onWriteAcked({ key: 'a', value: 'mine', data, index: 5, term: 2, floor });
  c.onApply(1, { index: 5, term: 2, type: EntryType.Normal, data }, 4);
  t.equal(c.violation, null, 'the acknowledged entry was applied');
  c.onApply(2, entry(5, 3, 'a=theirs'), 4);
  expectViolation(t, c, 'acked-write-lost', /where write a=mine \(index 5, term 2\) was acknowledged/);

  const d = new InvariantChecker(() => 0);
  d.onApply(1, entry(5, 3, 'a=theirs'), 4);
  d.onWriteAcked({ key: 'a', value: 'mine', data, index: 5, term: 2, floor: d.floorNow() });
  expectViolation(t, d, 'acked-write-lost');
  t.end();
});

void t.test('linearizability: stale reads, impossible values, writes ordered before earlier acks', (t) => {
  const c = new InvariantChecker(() => 0);
  c.onApply(1, entry(3, 1, 'a=1'), 2);
  c.onWriteAcked({ key: 'a', value: '1', data: encodeCommand({ key: 'a', value: '1' }), index: 3, term: 1, floor: c.floorNow() });
  const floor = c.floorNow();
  c.onReadCompleted({ nodeId: 2, key: 'a', value: '1', readIndex: 3, stateIndex: 3, floor });
  t.equal(c.violation, null, 'a read that sees the acknowledged write');
  c.onReadCompleted({ nodeId: 2, key: 'a', value: undefined, readIndex: 2, stateIndex: 2, floor });
  expectViolation(t, c, 'linearizability', /stale read/);

  const d = new InvariantChecker(() => 0);
  d.onApply(1, entry(3, 1, 'a=1'), 2);
  d.onReadCompleted({ nodeId: 1, key: 'a', value: '7', readIndex: 3, stateIndex: 3, floor: d.floorNow() });
  expectViolation(t, d, 'linearizability', /returned 7; the state there has 1/);

  const e = new InvariantChecker(() => 0);
  e.onApply(1, entry(3, 1, 'a=1'), 2);
  e.onReadCompleted({ nodeId: 1, key: 'a', value: '1', readIndex: 3, stateIndex: 3, floor: e.floorNow() });
  e.onWriteAcked({ key: 'b', value: 'x', data: encodeCommand({ key: 'b', value: 'x' }), index: 3, term: 1, floor: e.floorNow() });
  expectViolation(t, e, 'linearizability', /acknowledged at or below index 3/);
  t.end();
});

void t.test('fail keeps the first violation', (t) => {
  let now = 10;
  const c = new InvariantChecker(() => now);
  c.fail('liveness', 'first');
  now = 20;
  c.fail('node-crash', 'second');
  t.same(c.violation, { kind: 'liveness', message: 'first', atMs: 10 });
  t.end();
});
