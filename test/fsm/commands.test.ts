/**
 * Command encoding: every well-formed command round-trips; random and mutated bytes decode to a
 * well-formed command or throw CommandDecodeError (never anything else); applying any bytes yields a
 * result, never an exception, and leaves the stored state sound.
 */
import fc from 'fast-check';
import t from 'tap';
import { Packr } from 'msgpackr';
import { decodeCommand, encodeCommand, opTypes } from '../../src/fsm/commands.ts';
import type { Command, Op } from '../../src/fsm/commands.ts';
import { CommandDecodeError } from '../../src/fsm/errors.ts';
import { EntryType } from '../../src/raft/types.ts';
import { Harness } from './harness.ts';

const nat = fc.oneof(fc.nat({ max: 20 }), fc.maxSafeNat());
const str = fc.oneof(
  fc.constantFrom('/', '/a', '/a/b', '/b', 'w', ''),
  fc.string({ maxLength: 12 }).map((s) => `/${s}`),
);
const ids = fc.array(fc.nat({ max: 5 }), { maxLength: 4 });
const cond = { ifGeneration: fc.option(nat, { nil: undefined }) };
const optNat = fc.option(nat, { nil: undefined });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant({ type: 'openSession' as const }),
  fc.record({
    type: fc.constant('mkdir' as const),
    path: str,
    parents: fc.option(fc.boolean(), { nil: undefined }),
    mode: optNat,
    owner: fc.option(str, { nil: undefined }),
    replication: optNat,
    chunkSizeBytes: optNat,
    ...cond,
  }),
  fc.record({
    type: fc.constant('create' as const),
    path: str,
    exclusive: fc.option(fc.boolean(), { nil: undefined }),
    mode: optNat,
    lease: fc.option(fc.record({ holder: str, durationMs: nat }), { nil: undefined }),
    firstChunkCandidates: fc.option(ids, { nil: undefined }),
    ...cond,
  }),
  fc.record({
    type: fc.constant('setattr' as const),
    path: str,
    mode: optNat,
    mtimeMs: optNat,
    owner: fc.option(str, { nil: undefined }),
    replication: optNat,
    ...cond,
  }),
  fc.record({ type: fc.constant('rename' as const), from: str, to: str, ...cond }),
  fc.record({
    type: fc.constantFrom('unlink' as const, 'rmdir' as const, 'deleteRecursive' as const),
    path: str,
    ...cond,
  }),
  fc.record({
    type: fc.constantFrom('acquireLease' as const, 'renewLease' as const),
    path: str,
    holder: str,
    durationMs: nat,
    ...cond,
  }),
  fc.record({ type: fc.constant('releaseLease' as const), path: str, holder: str, ...cond }),
  fc.record({
    type: fc.constant('completeFile' as const),
    path: str,
    holder: str,
    chunkCount: optNat,
    lastChunk: fc.option(fc.record({ handle: nat, version: nat, lengthBytes: nat, checksum: nat }), { nil: undefined }),
    ...cond,
  }),
  fc.record({ type: fc.constant('addChunk' as const), path: str, holder: str, replicas: ids, ...cond }),
  fc.record({
    type: fc.constant('bumpChunkVersion' as const),
    handle: nat,
    holder: str,
    version: nat,
    replicas: ids,
    ...cond,
  }),
  fc.record({
    type: fc.constant('sealChunk' as const),
    handle: nat,
    holder: str,
    version: nat,
    lengthBytes: nat,
    checksum: nat,
    ...cond,
  }),
  fc.record({
    type: fc.constant('setChunkReplicas' as const),
    handle: nat,
    version: nat,
    replicas: ids,
    ...cond,
  }),
  fc.record({
    type: fc.constant('registerChunkserver' as const),
    id: optNat,
    address: str,
    rack: str,
    capacityBytes: nat,
    usedBytes: nat,
    ...cond,
  }),
  fc.record({
    type: fc.constant('setChunkserverState' as const),
    id: nat,
    state: fc.constantFrom('live' as const, 'dead' as const, 'decommissioning' as const, 'decommissioned' as const),
    ...cond,
  }),
  fc.record({ type: fc.constant('forgetChunkserver' as const), id: nat, ...cond }),
);

const commandArb: fc.Arbitrary<Command> = fc
  .tuple(
    nat,
    opArb,
    fc.option(fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 })), { nil: undefined }),
  )
  .map(([nowMs, op, s]) => {
    if (s === undefined || op.type === 'openSession') return { nowMs, op };
    const seq = Math.max(s[0], s[1]);
    return {
      nowMs,
      op,
      session: { clientId: s[0], seq, ack: Math.min(s[0], s[1]) === seq ? seq - 1 : Math.min(s[0], s[1]) },
    };
  });

/** The op without undefined fields (as it looks after a round trip). */
function defined(op: Op): Record<string, unknown> {
  return Object.fromEntries(Object.entries(op).filter(([, v]) => v !== undefined));
}

/** Whether a decoded command has exactly the shape the types promise. */
function wellFormed(c: Command): string | null {
  const isNat = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (!isNat(c.nowMs)) return 'nowMs';
  if (c.session !== undefined) {
    const s = c.session;
    if (!isNat(s.clientId) || s.clientId < 1 || !isNat(s.seq) || s.seq < 1 || !isNat(s.ack) || s.ack >= s.seq)
      return 'session';
  }
  if (!opTypes.includes(c.op.type)) return 'type';
  for (const [k, v] of Object.entries(c.op)) {
    if (k === 'type') continue;
    if (k === 'lease') {
      const l = v as { holder: unknown; durationMs: unknown };
      if (typeof l.holder !== 'string' || !isNat(l.durationMs) || Object.keys(l).length !== 2) return 'lease';
    } else if (k === 'lastChunk') {
      const l = v as Record<string, unknown>;
      if (Object.keys(l).length !== 4 || !['handle', 'version', 'lengthBytes', 'checksum'].every((f) => isNat(l[f]))) return 'lastChunk';
    } else if (k === 'replicas' || k === 'firstChunkCandidates') {
      if (!Array.isArray(v) || !v.every(isNat)) return 'replicas';
    } else if (!(typeof v === 'string' || typeof v === 'boolean' || isNat(v))) return `field ${k}`;
  }
  return null;
}

function decodeOrReject(bytes: Uint8Array): 'rejected' | Command {
  try {
    const c = decodeCommand(bytes);
    const problem = wellFormed(c);
    if (problem !== null) throw new Error(`decoded a malformed command (${problem}): ${JSON.stringify(c)}`);
    return c;
  } catch (e) {
    if (e instanceof CommandDecodeError) return 'rejected';
    throw e;
  }
}

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.nat({ max: 255 }) }),
);

function mutate(
  b: Uint8Array,
  ms: readonly { kind: string; at: number; xor?: number; byte?: number }[],
): Uint8Array {
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

void t.test('every well-formed command round-trips', (t) => {
  fc.assert(
    fc.property(commandArb, (c) => {
      const d = decodeCommand(encodeCommand(c));
      return (
        JSON.stringify([d.nowMs, d.session, defined(d.op)]) ===
        JSON.stringify([c.nowMs, c.session, defined(c.op)])
      );
    }),
    { numRuns: 2000, seed: 5 },
  );
  t.pass('2000 commands');
  t.end();
});

void t.test('random bytes: a typed error or a well-formed command, never a crash', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      decodeOrReject(b);
    }),
    { numRuns: 3000, seed: 6 },
  );
  t.pass('3000 byte strings');
  t.end();
});

void t.test('mutated commands: a typed error or a well-formed command', (t) => {
  let rejected = 0;
  fc.assert(
    fc.property(commandArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (c, ms) => {
      if (decodeOrReject(mutate(encodeCommand(c), ms)) === 'rejected') rejected += 1;
    }),
    { numRuns: 3000, seed: 8 },
  );
  t.ok(rejected > 100, `${rejected} rejected`);
  t.end();
});

void t.test('well-formed msgpack of the wrong shape is rejected', (t) => {
  const p = new Packr({ useRecords: false, moreTypes: false });
  const cases: unknown[] = [
    null,
    1,
    'x',
    [],
    [1, 0, null],
    [2, 0, null, { type: 'openSession' }],
    [1, -1, null, { type: 'openSession' }],
    [1, 1.5, null, { type: 'openSession' }],
    [1, 0, null, { type: 'nope' }],
    [1, 0, null, { type: 'mkdir' }],
    [1, 0, null, { type: 'mkdir', path: 5 }],
    [1, 0, null, { type: 'mkdir', path: '/a', extra: 1 }],
    [1, 0, null, { type: 'mkdir', path: '/a', mode: -1 }],
    [1, 0, null, { type: 'mkdir', path: '/a', parents: 1 }],
    [1, 0, [0, 1, 0], { type: 'mkdir', path: '/a' }],
    [1, 0, [1, 1, 1], { type: 'mkdir', path: '/a' }],
    [1, 0, [1, 1], { type: 'mkdir', path: '/a' }],
    [1, 0, [1, 1, 0], { type: 'openSession' }],
    [1, 0, null, { type: 'addChunk', path: '/a', holder: 'w', replicas: [1, -2] }],
    [1, 0, null, { type: 'addChunk', path: '/a', holder: 'w', replicas: 'x' }],
    [1, 0, null, { type: 'create', path: '/a', lease: { holder: 'w' } }],
    [1, 0, null, { type: 'create', path: '/a', lease: { holder: 'w', durationMs: 1, x: 1 } }],
    [1, 0, null, { type: 'setChunkserverState', id: 1, state: 'zombie' }],
    [1, 0, null, { type: 'completeFile', path: '/a', holder: 'w', lastChunk: { handle: 1, version: 1, lengthBytes: 1 } }],
    [1, 0, null, { type: 'completeFile', path: '/a', holder: 'w', lastChunk: { handle: 1, version: 1, lengthBytes: 1, checksum: 1, x: 1 } }],
    [1, 0, null, { type: 'completeFile', path: '/a', holder: 'w', lastChunk: { handle: 1, version: -1, lengthBytes: 1, checksum: 1 } }],
    [1, 0, null, { type: 'completeFile', path: '/a', holder: 'w', lastChunk: [1, 1, 1, 1] }],
    [1, 0, null, [['type', 'mkdir']]],
    [1, 0, null, new Uint8Array([1])],
    [1, 0, null, { type: 'mkdir', path: 'x'.repeat(70_000) }],
  ];
  for (const c of cases) t.equal(decodeOrReject(p.pack(c)), 'rejected', JSON.stringify(c)?.slice(0, 60));
  const proto = JSON.parse('{"type":"mkdir","__proto__":{"path":"/a"}}') as unknown;
  t.equal(
    decodeOrReject(p.pack([1, 0, null, proto])),
    'rejected',
    'a __proto__ key is a field like any other (unknown)',
  );
  t.end();
});

void t.test('applying arbitrary and mutated entries never throws and keeps the state sound', async (t) => {
  const h = await Harness.open();
  await h.ok({ type: 'mkdir', path: '/a/b', parents: true });
  await h.ok({ type: 'openSession' });
  await h.chunkservers(2);
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 40 }),
          commandArb.map(encodeCommand),
          fc
            .tuple(commandArb, fc.array(mutation, { maxLength: 2 }))
            .map(([c, ms]) => mutate(encodeCommand(c), ms)),
        ),
        { minLength: 1, maxLength: 8 },
      ),
      async (datas) => {
        const results = await h.sm.applyBatch(
          datas.map((data) => ({ term: 1, index: h.index++, type: EntryType.Normal, data })),
        );
        for (const [i, r] of results.entries()) {
          if (datas[i]!.length === 0 ? r !== undefined : r === undefined || typeof r.ok !== 'boolean')
            throw new Error('missing result');
        }
        const problems = await h.invariants();
        if (problems.length > 0) throw new Error(problems.join('; '));
      },
    ),
    { numRuns: 300, seed: 9 },
  );
  t.pass('300 random batches');
});
