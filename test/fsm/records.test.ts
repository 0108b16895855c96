/** The records' own msgpack writer (records.ts RecordWriter) writes exactly what msgpackr writes. */
import fc from 'fast-check';
import t from 'tap';
import type { Inode, Meta, Session } from '../../src/fsm/records.ts';
import * as rec from '../../src/fsm/records.ts';

const number = fc.oneof(
  fc.constantFrom(0, 0x1f, 0x20, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 31, 2 ** 32 - 1, 2 ** 32),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, 1_700_000_000_000, -1, -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001),
  fc.nat(),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  fc.integer(),
  fc.double({ noNaN: true }),
);
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ minLength: 0x1f, maxLength: 0x21 }),
  fc.string({ minLength: 250, maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 60, maxLength: 80 }),
);
const bytes = fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 250, maxLength: 300 }));

const inode: fc.Arbitrary<Inode> = fc
  .record({
    id: fc.nat(),
    type: fc.constantFrom('dir' as const, 'file' as const),
    parent: number,
    name: text,
    mode: number,
    owner: text,
    mtimeMs: number,
    ctimeMs: number,
    generation: number,
    replication: number,
    chunkSizeBytes: number,
    childCount: number,
    lengthBytes: number,
    chunkCount: number,
    unsealedChunks: number,
    complete: fc.boolean(),
    lz4: fc.boolean(),
  })
  .map(({ lz4, ...n }) => (lz4 ? { ...n, compression: 'lz4' as const } : n));

const session: fc.Arbitrary<Session> = fc.record({
  clientId: fc.nat(),
  ack: number,
  lastUsedMs: number,
  pending: number,
  indexedMs: number,
  inlineSeq: number,
  inlineResult: fc.option(bytes, { nil: undefined }),
});

const meta: fc.Arbitrary<Meta> = fc.record({
  format: number,
  clockMs: number,
  nextInodeId: number,
  nextChunkHandle: number,
  nextChunkserverId: number,
  nextClientId: number,
  garbageNext: number,
  garbageCount: number,
  sessionCount: number,
});

const same = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a).toString('hex') === Buffer.from(b).toString('hex');

void t.test('inode records: the same bytes as msgpackr', (t) => {
  fc.assert(
    fc.property(inode, (n) => same(rec.encodeInode(n), rec.packInode(n))),
    { numRuns: 3000 },
  );
  t.end();
});

void t.test('session records: the same bytes as msgpackr', (t) => {
  fc.assert(
    fc.property(session, (s) => same(rec.encodeSession(s), rec.packSession(s))),
    { numRuns: 3000 },
  );
  const large = { clientId: 1, ack: 1, lastUsedMs: 2, pending: 1, indexedMs: 2, inlineSeq: 3, inlineResult: new Uint8Array(70_000).fill(7) };
  t.ok(same(rec.encodeSession(large), rec.packSession(large)), 'a result of more than 65,535 bytes');
  t.end();
});

void t.test('meta records: the same bytes as msgpackr', (t) => {
  fc.assert(
    fc.property(meta, (m) => same(rec.encodeMeta(m), rec.packMeta(m))),
    { numRuns: 3000 },
  );
  t.end();
});

void t.test('records written one after another do not share bytes', (t) => {
  const a = rec.encodeMeta(rec.initialMeta());
  const copy = a.slice();
  rec.encodeMeta({ ...rec.initialMeta(), clockMs: 123_456_789 });
  t.same([...a], [...copy]);
  t.end();
});
