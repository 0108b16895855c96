/**
 * RaftLog against a simple model: random sequences of the operations the core performs (leader-style
 * appends that may truncate an uncommitted suffix, commits, Ready hand-outs and their persistence completing
 * in order, applies, local snapshots with compaction, and snapshot restores from a leader), checking after
 * each step lastIndex, term(i), slice contents, the committed/applied marks, findConflictByTerm, and that
 * the part of the log the core calls stable really is on the simulated disk.
 */
import t from 'tap';
import fc from 'fast-check';
import { NO_TERM, RaftLog } from '../../src/raft/log.ts';
import type { Entry, Snapshot } from '../../src/raft/types.ts';
import { EntryType, emptyConfState } from '../../src/raft/types.ts';
import { holds } from './util.ts';

type Op =
  | { kind: 'append'; at: number; count: number; bump: boolean; bytes: number }
  | { kind: 'commit'; to: number }
  | { kind: 'ready' }
  | { kind: 'persist' }
  | { kind: 'apply'; max: number }
  | { kind: 'snapshot'; keep: number }
  | { kind: 'restore'; ahead: number }
  | { kind: 'probe'; a: number; b: number; term: number; max: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('append' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }), bump: fc.boolean(), bytes: fc.nat({ max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('commit' as const), to: fc.nat() }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'ready' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'persist' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('apply' as const), max: fc.nat({ max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), keep: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restore' as const), ahead: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('probe' as const), a: fc.nat(), b: fc.nat(), term: fc.nat({ max: 12 }), max: fc.nat({ max: 12 }) }) },
);

interface Batch {
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
}

/** What the simulated disk holds: a snapshot point and the entries after it. */
interface Disk {
  snapIndex: number;
  snapTerm: number;
  entries: Entry[];
}

class Model {
  /** Entries after the compaction point `offset`. */
  entries: Entry[] = [];
  offset: number;
  offsetTerm: number;
  committed: number;
  applied: number;
  /** The durable snapshot the log reports for term() at its index. */
  snapIndex: number;
  snapTerm: number;
  term: number;
  readonly inflight: Batch[] = [];
  readonly disk: Disk;
  constructor(boot: Snapshot) {
    this.offset = boot.metadata.index;
    this.offsetTerm = boot.metadata.term;
    this.committed = this.applied = boot.metadata.index;
    this.snapIndex = boot.metadata.index;
    this.snapTerm = boot.metadata.term;
    this.term = boot.metadata.term;
    this.disk = { snapIndex: boot.metadata.index, snapTerm: boot.metadata.term, entries: [] };
  }
  last(): number {
    return this.offset + this.entries.length;
  }
  termAt(i: number): number {
    if (i === this.offset) return this.offsetTerm;
    if (i > this.offset && i <= this.last()) return this.entries[i - this.offset - 1]!.term;
    if (i === this.snapIndex && i < this.offset) return this.snapTerm;
    return NO_TERM;
  }
  entry(i: number): Entry {
    return this.entries[i - this.offset - 1]!;
  }
}

function fail(message: string): never {
  throw new Error(message);
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type || a.data.byteLength !== b.data.byteLength) return false;
  return a.data.every((x, i) => x === b.data[i]);
}

function data(index: number, term: number, bytes: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, k) => (index * 31 + term * 7 + k) & 0xff);
}

/** Checks every observable of the log against the model. */
function check(log: RaftLog, m: Model, op: Op): void {
  if (log.lastIndex() !== m.last()) fail(`lastIndex ${log.lastIndex()} != ${m.last()}`);
  if (log.firstIndex() !== m.offset + 1) fail(`firstIndex ${log.firstIndex()} != ${m.offset + 1}`);
  if (log.committed !== m.committed) fail(`committed ${log.committed} != ${m.committed}`);
  if (log.applied !== m.applied) fail(`applied ${log.applied} != ${m.applied}`);
  for (let i = Math.max(0, m.offset - 2); i <= m.last() + 2; i++) {
    if (log.term(i) !== m.termAt(i)) fail(`term(${i}) = ${log.term(i)}, model ${m.termAt(i)}`);
  }
  if (log.lastTerm() !== m.termAt(m.last())) fail('lastTerm');
  // Invariants of the marks.
  if (!(log.applied <= log.committed && log.committed <= log.lastIndex())) fail(`marks out of order: applied ${log.applied} committed ${log.committed} last ${log.lastIndex()}`);
  for (let i = m.offset + 2; i <= m.last(); i++) if (m.termAt(i) < m.termAt(i - 1)) fail('terms decrease (model generator bug)');
  // The stable part is on disk, entry for entry.
  for (let i = m.offset + 1; i <= log.stableLastIndex(); i++) {
    const onDisk = m.disk.entries.find((e) => e.index === i);
    if (onDisk === undefined || !sameEntry(onDisk, log.entryAt(i))) fail(`entry ${i} is called stable but the disk has ${onDisk ? `term ${onDisk.term}` : 'nothing'}`);
  }
  if (log.stableLastIndex() < m.offset || log.stableLastIndex() > m.last()) fail(`stableLastIndex ${log.stableLastIndex()} outside [${m.offset}, ${m.last()}]`);
  if (op.kind !== 'probe') return;
  // slice(lo, hi, max): the model's entries from lo, byte-bounded but never empty when lo < hi.
  const span = m.last() - m.offset + 2;
  const lo = m.offset + 1 + (op.a % span);
  const hi = lo + (op.b % (span + 1));
  const got = log.slice(lo, hi, op.max);
  if (got === null) fail(`slice(${lo}, ${hi}) returned null above the compaction point`);
  const top = Math.min(hi, m.last() + 1);
  const want: Entry[] = [];
  let bytes = 0;
  for (let i = lo; i < top; i++) {
    bytes += m.entry(i).data.byteLength;
    if (want.length > 0 && bytes > op.max) break;
    want.push(m.entry(i));
  }
  if (got.length !== want.length || got.some((e, i) => !sameEntry(e, want[i]!))) {
    fail(`slice(${lo}, ${hi}, ${op.max}) = ${JSON.stringify(got.map((e) => [e.index, e.term]))}, want ${JSON.stringify(want.map((e) => [e.index, e.term]))}`);
  }
  if (m.offset > 0 && log.slice(m.offset, m.offset + 1, 100) !== null) fail('slice below firstIndex must be null');
  // findConflictByTerm(index, term): the largest index <= min(index, last), not below the compaction
  // point, whose term is <= term.
  const index = m.offset + (op.b % (span + 2));
  const r = log.findConflictByTerm(index, op.term);
  const cap = Math.min(index, m.last());
  if (r.index > cap || r.index < m.offset) fail(`findConflictByTerm(${index}, ${op.term}).index = ${r.index} outside [${m.offset}, ${cap}]`);
  if (r.term !== m.termAt(r.index)) fail(`findConflictByTerm(${index}, ${op.term}) term ${r.term} != term(${r.index}) ${m.termAt(r.index)}`);
  if (r.index > m.offset && r.term > op.term) fail(`findConflictByTerm(${index}, ${op.term}) returned term ${r.term} > ${op.term}`);
  for (let j = r.index + 1; j <= cap; j++) {
    if (m.termAt(j) <= op.term) fail(`findConflictByTerm(${index}, ${op.term}) = ${r.index} but ${j} has term ${m.termAt(j)}`);
  }
}

function step(log: RaftLog, m: Model, op: Op): void {
  switch (op.kind) {
    case 'append': {
      const first = m.committed + 1 + (op.at % (m.last() - m.committed + 1));
      // Overwriting needs a newer leader; so does a fresh term. Terms are never reused for other entries.
      if (op.bump || first <= m.last()) m.term++;
      const entries = Array.from({ length: op.count }, (_, k): Entry => ({ index: first + k, term: m.term, type: EntryType.Normal, data: data(first + k, m.term, op.bytes) }));
      log.append(entries);
      m.entries.length = first - m.offset - 1;
      m.entries.push(...entries);
      return;
    }
    case 'commit': {
      const to = m.committed + (op.to % (m.last() - m.committed + 1));
      log.commitTo(to);
      m.committed = Math.max(m.committed, to);
      return;
    }
    case 'ready': {
      const snapshot = log.hasSnapshotToPersist() ? log.unstableSnapshot : null;
      const entries = log.entriesToPersist();
      if (snapshot === null && entries.length === 0) return;
      // What is handed out is the model's unpersisted tail, contiguous and unchanged.
      entries.forEach((e, i) => {
        if (i > 0 && e.index !== entries[i - 1]!.index + 1) fail('entriesToPersist not contiguous');
        if (!sameEntry(e, m.entry(e.index))) fail(`entriesToPersist has a stale entry at ${e.index}`);
      });
      if (entries.length > 0 && entries[entries.length - 1]!.index !== m.last()) fail('entriesToPersist does not reach lastIndex');
      log.markPersisting(entries.length, snapshot !== null);
      if (log.entriesToPersist().length !== 0 || log.hasSnapshotToPersist()) fail('handed-out data handed out again');
      m.inflight.push({ snapshot, entries });
      return;
    }
    case 'persist': {
      const b = m.inflight.shift();
      if (b === undefined) return;
      // The disk write, as storage does it: snapshot first, then entries truncating any suffix from their first index.
      if (b.snapshot !== null) {
        m.disk.snapIndex = b.snapshot.metadata.index;
        m.disk.snapTerm = b.snapshot.metadata.term;
        m.disk.entries = [];
      }
      const first = b.entries[0];
      if (first !== undefined) {
        const diskLast = m.disk.entries.length > 0 ? m.disk.entries[m.disk.entries.length - 1]!.index : m.disk.snapIndex;
        if (first.index > diskLast + 1) fail(`write at ${first.index} leaves a gap after ${diskLast} on disk`);
        m.disk.entries = m.disk.entries.filter((e) => e.index < first.index).concat(b.entries);
      }
      // Then the acknowledgement, exactly as Raft.advance() gives it.
      if (b.snapshot !== null) {
        const idx = b.snapshot.metadata.index;
        log.persisted(0, 0, idx);
        if (log.applied < idx) log.applied = idx;
        if (m.applied < idx) m.applied = idx;
        if (log.snapshotIndex() === idx) {
          m.snapIndex = idx;
          m.snapTerm = b.snapshot.metadata.term;
        }
      }
      const last = b.entries[b.entries.length - 1];
      if (last !== undefined) log.persisted(last.index, last.term, null);
      return;
    }
    case 'apply': {
      const ents = log.nextCommittedEntries(op.max);
      if (ents.length === 0) {
        const durable = log.lastIndex() - log.entriesToPersist().length;
        if (log.unstableSnapshot === null && m.applied < Math.min(m.committed, durable)) fail(`nothing to apply though ${m.applied} < min(committed ${m.committed}, handed out ${durable})`);
        return;
      }
      let bytes = 0;
      ents.forEach((e, i) => {
        if (e.index !== m.applied + 1 + i) fail(`applying ${e.index}, expected ${m.applied + 1 + i}`);
        if (e.index > m.committed) fail(`applying uncommitted ${e.index}`);
        if (!sameEntry(e, m.entry(e.index))) fail(`applying a wrong entry at ${e.index}`);
        bytes += e.data.byteLength;
      });
      if (ents.length > 1 && bytes > op.max) fail(`apply batch of ${bytes} bytes over ${op.max}`);
      const lastApplied = ents[ents.length - 1]!.index;
      if (lastApplied > log.lastIndex() - log.entriesToPersist().length) fail('applying an entry never handed out for persistence');
      log.appliedTo(lastApplied);
      m.applied = lastApplied;
      return;
    }
    case 'snapshot': {
      if (log.unstableSnapshot !== null || m.applied < log.snapshotIndex() || m.applied < m.offset) return;
      const index = m.applied;
      const snap: Snapshot = { metadata: { index, term: m.termAt(index), confState: emptyConfState }, data: new Uint8Array([index & 0xff]) };
      log.setSnapshot(snap);
      m.snapIndex = index;
      m.snapTerm = snap.metadata.term;
      const hi = Math.min(index, log.stableLastIndex());
      if (hi < m.offset) return;
      const to = m.offset + (op.keep % (hi - m.offset + 1));
      const toTerm = m.termAt(to);
      log.compact(to);
      m.entries = m.entries.slice(to - m.offset);
      m.offset = to;
      m.offsetTerm = toTerm;
      return;
    }
    case 'restore': {
      m.term++;
      const index = m.committed + op.ahead;
      const snap: Snapshot = { metadata: { index, term: m.term, confState: emptyConfState }, data: new Uint8Array([1, 2, 3]) };
      log.restore(snap);
      m.entries = [];
      m.offset = index;
      m.offsetTerm = m.term;
      m.committed = index;
      return;
    }
    case 'probe':
      return;
  }
}

function run(ops: readonly Op[]): boolean {
  const boot: Snapshot = { metadata: { index: 1, term: 1, confState: emptyConfState }, data: new Uint8Array(0) };
  const log = new RaftLog(boot, [], 1, 0);
  const m = new Model(boot);
  ops.forEach((op, i) => {
    try {
      step(log, m, op);
      check(log, m, op);
    } catch (e) {
      throw new Error(`after op ${i} ${JSON.stringify(op)}: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  return true;
}

void t.test('RaftLog matches an array model under random appends, truncations, commits, persistence, applies, compaction and restores', (t) => {
  holds(t, 'log model', fc.property(fc.array(opArb, { maxLength: 80 }), run), 400);
  t.end();
});

void t.test('RaftLog worked example: a truncating append, its persistence, and term lookups around compaction', (t) => {
  const boot: Snapshot = { metadata: { index: 1, term: 1, confState: emptyConfState }, data: new Uint8Array(0) };
  const log = new RaftLog(boot, [], 1, 0);
  const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array([index]) });
  log.append([e(2, 2), e(3, 2), e(4, 2)]);
  t.equal(log.lastIndex(), 4);
  t.equal(log.stableLastIndex(), 1, 'nothing persisted yet');
  const batch = log.entriesToPersist();
  t.same(batch.map((x) => x.index), [2, 3, 4]);
  log.markPersisting(batch.length, false);
  log.append([e(4, 3)]); // a new leader replaces entry 4 while the write is in flight
  log.persisted(4, 2, null); // the write of the old entry 4 completes: it must not count
  t.equal(log.stableLastIndex(), 1, 'the replaced entry was not made stable');
  t.same(log.entriesToPersist().map((x) => [x.index, x.term]), [[4, 3]]);
  log.markPersisting(1, false);
  log.persisted(4, 3, null);
  t.equal(log.stableLastIndex(), 4);
  t.same([log.term(1), log.term(2), log.term(4), log.term(5)], [1, 2, 3, NO_TERM]);
  log.commitTo(3);
  t.same(log.nextCommittedEntries(100).map((x) => x.index), [2, 3]);
  log.appliedTo(3);
  log.setSnapshot({ metadata: { index: 3, term: 2, confState: emptyConfState }, data: new Uint8Array(0) });
  log.compact(3);
  t.same([log.firstIndex(), log.term(2), log.term(3), log.term(4)], [4, NO_TERM, 2, 3]);
  t.equal(log.slice(3, 5, 100), null, 'compacted');
  t.same(log.findConflictByTerm(4, 2), { index: 3, term: 2 });
  t.end();
});
