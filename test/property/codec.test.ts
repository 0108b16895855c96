/**
 * The wire codecs: every valid message / conf change survives encode -> decode unchanged, and decoding
 * arbitrary or corrupted bytes either throws CodecError or yields a well-formed value: never another
 * exception, never a malformed object.
 */
import t from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { CodecError, decodeConfChange, decodeMessage, encodeConfChange, encodeMessage } from '../../src/raft/codec.ts';
import type { ConfChange, ConfState, Entry, Message, SnapshotChunk } from '../../src/raft/types.ts';
import { EntryType, messageTypes } from '../../src/raft/types.ts';
import { holds } from './util.ts';

const index = fc.oneof(fc.nat({ max: 1000 }), fc.nat(), fc.maxSafeNat());
const id = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const bytes = fc.uint8Array({ maxLength: 40 });

const entryArb: fc.Arbitrary<Entry> = fc.record({
  term: index,
  index: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
  type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange),
  data: bytes,
});

const confStateArb: fc.Arbitrary<ConfState> = fc.record({
  voters: fc.uniqueArray(id, { maxLength: 5 }),
  votersOutgoing: fc.uniqueArray(id, { maxLength: 5 }),
  learners: fc.uniqueArray(id, { maxLength: 3 }),
  learnersNext: fc.uniqueArray(id, { maxLength: 3 }),
  autoLeave: fc.boolean(),
});

const chunkArb: fc.Arbitrary<SnapshotChunk> = fc.record({
  metadata: fc.record({ index, term: index, confState: confStateArb }),
  offset: index,
  totalBytes: index,
  data: bytes,
});

const messageArb: fc.Arbitrary<Message> = fc.record({
  type: fc.constantFrom(...messageTypes),
  from: index,
  to: index,
  term: index,
  logTerm: index,
  index,
  entries: fc.array(entryArb, { maxLength: 4 }),
  commit: index,
  reject: fc.boolean(),
  rejectHint: index,
  context: fc.option(bytes, { nil: null }),
  snapshot: fc.option(chunkArb, { nil: null }),
});

const confChangeArb: fc.Arbitrary<ConfChange> = fc.record({
  transition: fc.constantFrom('auto' as const, 'joint-implicit' as const, 'joint-explicit' as const),
  changes: fc.array(fc.record({ type: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const), nodeId: id }), { maxLength: 6 }),
});

/** Replaces byte arrays (Buffer or Uint8Array) by plain arrays so values compare by content. */
function plain(x: unknown): unknown {
  if (x instanceof Uint8Array) return { bytes: [...x] };
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)]));
  return x;
}

const isNat = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const isIds = (x: unknown): boolean => Array.isArray(x) && x.every((v) => isNat(v) && (v as number) > 0);

/** Whether `m` has exactly the shape of a Message, field by field. */
function wellFormedMessage(m: Message): string | null {
  const keys = ['type', 'from', 'to', 'term', 'logTerm', 'index', 'entries', 'commit', 'reject', 'rejectHint', 'context', 'snapshot'];
  if (!isDeepStrictEqual(Object.keys(m).sort(), [...keys].sort())) return `keys ${Object.keys(m).join(',')}`;
  if (!messageTypes.includes(m.type)) return `type ${String(m.type)}`;
  for (const k of ['from', 'to', 'term', 'logTerm', 'index', 'commit', 'rejectHint'] as const) if (!isNat(m[k])) return `${k} ${String(m[k])}`;
  if (typeof m.reject !== 'boolean') return 'reject';
  if (!Array.isArray(m.entries)) return 'entries';
  for (const e of m.entries) {
    if (!isNat(e.term) || !isNat(e.index) || e.index === 0 || (e.type !== 0 && e.type !== 1) || !(e.data instanceof Uint8Array)) return 'entry';
  }
  if (m.context !== null && !(m.context instanceof Uint8Array)) return 'context';
  const s = m.snapshot;
  if (s !== null) {
    if (!isNat(s.offset) || !isNat(s.totalBytes) || !(s.data instanceof Uint8Array)) return 'chunk';
    const md = s.metadata;
    const c = md.confState;
    if (!isNat(md.index) || !isNat(md.term) || typeof c.autoLeave !== 'boolean') return 'metadata';
    if (!isIds(c.voters) || !isIds(c.votersOutgoing) || !isIds(c.learners) || !isIds(c.learnersNext)) return 'conf state';
  }
  return null;
}

function wellFormedConfChange(cc: ConfChange): string | null {
  if (!['auto', 'joint-implicit', 'joint-explicit'].includes(cc.transition)) return 'transition';
  if (!Array.isArray(cc.changes)) return 'changes';
  for (const c of cc.changes) {
    if (!['addVoter', 'addLearner', 'removeNode'].includes(c.type) || !isNat(c.nodeId) || c.nodeId === 0) return 'change';
  }
  return null;
}

/** Decodes; returns 'codec-error' for a CodecError, rethrows anything else, else checks the shape. */
function decodeOrReject<T>(decode: (b: Uint8Array) => T, check: (v: T) => string | null, b: Uint8Array): 'codec-error' | 'ok' {
  let v: T;
  try {
    v = decode(b);
  } catch (e) {
    if (e instanceof CodecError) return 'codec-error';
    throw new Error(`not a CodecError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  const problem = check(v);
  if (problem !== null) throw new Error(`decoded a malformed value (${problem}): ${JSON.stringify(plain(v))}`);
  return 'ok';
}

/** A corruption of an encoding: flipped bytes, a truncation, or an insertion. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.nat({ max: 255 }) }),
);

function mutate(b: Uint8Array, ms: readonly { kind: 'flip' | 'truncate' | 'insert'; at: number; xor?: number; byte?: number }[]): Uint8Array {
  let out = Uint8Array.from(b);
  for (const m of ms) {
    if (out.length === 0) break;
    const at = m.at % out.length;
    if (m.kind === 'flip') out[at] = out[at]! ^ (m.xor ?? 1);
    else if (m.kind === 'truncate') out = out.subarray(0, at);
    else out = Uint8Array.from([...out.subarray(0, at), m.byte ?? 0, ...out.subarray(at)]);
  }
  return out;
}

void t.test('encodeMessage / decodeMessage round-trip every valid message', (t) => {
  holds(
    t,
    'message round trip',
    fc.property(messageArb, (m) => {
      const back = decodeMessage(encodeMessage(m));
      return wellFormedMessage(back) === null && isDeepStrictEqual(plain(back), plain(m));
    }),
    400,
  );
  const m: Message = {
    type: 'snap', from: 1, to: 2, term: 3, logTerm: 0, index: 0, entries: [{ term: 3, index: 9, type: EntryType.ConfChange, data: new Uint8Array([1, 2]) }],
    commit: 8, reject: false, rejectHint: 0, context: null,
    snapshot: { metadata: { index: 7, term: 2, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false } }, offset: 16, totalBytes: 100, data: new Uint8Array([5]) },
  };
  t.same(plain(decodeMessage(encodeMessage(m))), plain(m), 'a worked example');
  t.end();
});

void t.test('encodeConfChange / decodeConfChange round-trip every valid change', (t) => {
  holds(
    t,
    'conf change round trip',
    fc.property(confChangeArb, (cc) => isDeepStrictEqual(plain(decodeConfChange(encodeConfChange(cc))), plain(cc))),
    400,
  );
  const leave: ConfChange = { transition: 'auto', changes: [] };
  t.same(decodeConfChange(encodeConfChange(leave)), leave);
  t.end();
});

void t.test('decodeMessage of random bytes throws CodecError or returns a well-formed message', (t) => {
  let accepted = 0;
  holds(
    t,
    'random bytes',
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      if (decodeOrReject(decodeMessage, wellFormedMessage, b) === 'ok') accepted++;
      return true;
    }),
    2000,
  );
  t.ok(accepted < 2000, 'most random inputs are refused');
  for (const bad of [new Uint8Array(0), new Uint8Array([0xc1]), new Uint8Array([0x90]), new Uint8Array([0x9c, 0, 0, 0])]) {
    t.throws(() => decodeMessage(bad), CodecError);
  }
  t.end();
});

void t.test('decodeMessage of corrupted encodings throws CodecError or returns a well-formed message', (t) => {
  let accepted = 0;
  let refused = 0;
  holds(
    t,
    'mutated encodings',
    fc.property(messageArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (m, ms) => {
      const outcome = decodeOrReject(decodeMessage, wellFormedMessage, mutate(encodeMessage(m), ms));
      if (outcome === 'ok') accepted++;
      else refused++;
      return true;
    }),
    1500,
  );
  t.ok(accepted > 0 && refused > 0, `both outcomes occur (${accepted} accepted, ${refused} refused)`);
  t.end();
});

void t.test('decodeConfChange of random or corrupted bytes throws CodecError or returns a well-formed change', (t) => {
  holds(
    t,
    'random bytes',
    fc.property(fc.uint8Array({ maxLength: 48 }), (b) => {
      decodeOrReject(decodeConfChange, wellFormedConfChange, b);
      return true;
    }),
    2000,
  );
  holds(
    t,
    'mutated encodings',
    fc.property(confChangeArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (cc, ms) => {
      decodeOrReject(decodeConfChange, wellFormedConfChange, mutate(encodeConfChange(cc), ms));
      return true;
    }),
    1500,
  );
  t.throws(() => decodeConfChange(new TextEncoder().encode('garbage')), CodecError);
  t.end();
});
