import assert from 'node:assert/strict';
import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import t from 'tap';
import { EntryType } from '../../src/raft/types.ts';
import type { Entry, HardState, Snapshot } from '../../src/raft/types.ts';
import { CorruptLogError } from '../../src/storage/log-store.ts';
import {
  RECORD_CRC_BYTES,
  decodeEntry,
  decodeHardState,
  decodeSnapshot,
  encodeEntry,
  encodeHardState,
  encodeSnapshot,
  recordLooksTorn,
} from '../../src/storage/record-codec.ts';

/** Property runs per codec property; each run is microseconds. */
const RUNS = 300;
const KEY = 'entry/under-test';

const positive = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const nonNegative = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const bytes = fc.uint8Array({ maxLength: 64 });
const nodeIds = fc.array(fc.integer({ min: 1, max: 1000 }), { maxLength: 5 });

const entryArb: fc.Arbitrary<Entry> = fc.record({
  term: positive,
  index: positive,
  type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange),
  data: bytes,
});
const hardStateArb: fc.Arbitrary<HardState> = fc.record({
  term: nonNegative,
  vote: nonNegative,
  commit: nonNegative,
});
const snapshotArb: fc.Arbitrary<Snapshot> = fc.record({
  metadata: fc.record({
    index: positive,
    term: positive,
    confState: fc.record({
      voters: nodeIds,
      votersOutgoing: nodeIds,
      learners: nodeIds,
      learnersNext: nodeIds,
      autoLeave: fc.boolean(),
    }),
  }),
  data: bytes,
});

/** For structural comparison: bytes as hex whatever their class, objects with the plain prototype. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/** A record with a correct CRC around an arbitrary payload: tests the structural checks behind the CRC. */
function recordWithPayload(payload: unknown): Buffer {
  const body = pack(payload);
  const record = Buffer.alloc(RECORD_CRC_BYTES + body.length);
  record.writeUInt32BE(crc32c(body), 0);
  body.copy(record, RECORD_CRC_BYTES);
  return record;
}

function flipBit(record: Uint8Array, bit: number): Buffer {
  const copy = Buffer.from(record);
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return copy;
}

void t.test('records round-trip', (t) => {
  fc.assert(
    fc.property(entryArb, (entry) => {
      assert.deepStrictEqual(plain(decodeEntry(encodeEntry(entry), KEY)), plain(entry));
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(hardStateArb, (hardState) => {
      assert.deepStrictEqual(
        plain(decodeHardState(encodeHardState(hardState), 'hardstate')),
        plain(hardState),
      );
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(snapshotArb, (snapshot) => {
      assert.deepStrictEqual(plain(decodeSnapshot(encodeSnapshot(snapshot), 'snapshot')), plain(snapshot));
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} entries, hard states and snapshots each decode to what was encoded`);
  t.end();
});

void t.test('the record layout is a big-endian CRC32C of the msgpack payload, then the payload', (t) => {
  const record = encodeEntry({ term: 2, index: 7, type: EntryType.Normal, data: Buffer.from('x') });
  const payload = record.subarray(RECORD_CRC_BYTES);
  t.equal(record.readUInt32BE(0), crc32c(payload));
  t.strictSame(plain(recordWithPayload([1, 2, 7, 0, Buffer.from('x')])), plain(record));
  t.end();
});

void t.test('any single bit flip is detected', (t) => {
  fc.assert(
    fc.property(entryArb, fc.nat(), (entry, seed) => {
      const record = encodeEntry(entry);
      const flipped = flipBit(record, seed % (record.length * 8));
      assert.throws(() => decodeEntry(flipped, KEY), CorruptLogError);
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} random flips in random entries detected`);
  // Exhaustively, on one record of each kind.
  const records: [Buffer, (r: Uint8Array) => unknown][] = [
    [
      encodeEntry({ term: 3, index: 9, type: EntryType.ConfChange, data: Buffer.from('abc') }),
      (r) => decodeEntry(r, KEY),
    ],
    [encodeHardState({ term: 3, vote: 2, commit: 9 }), (r) => decodeHardState(r, 'hardstate')],
    [
      encodeSnapshot({
        metadata: {
          index: 9,
          term: 3,
          confState: {
            voters: [1, 2],
            votersOutgoing: [],
            learners: [3],
            learnersNext: [],
            autoLeave: false,
          },
        },
        data: Buffer.from('state'),
      }),
      (r) => decodeSnapshot(r, 'snapshot'),
    ],
  ];
  let flips = 0;
  for (const [record, decode] of records) {
    for (let bit = 0; bit < record.length * 8; bit++) {
      try {
        decode(flipBit(record, bit));
        t.fail(`flip of bit ${bit} not detected`);
      } catch (error) {
        if (!(error instanceof CorruptLogError)) throw error;
        flips++;
      }
    }
  }
  t.ok(flips > 0, `${flips} flips detected`);
  t.end();
});

void t.test('the error names the key', (t) => {
  const record = flipBit(
    encodeEntry({ term: 1, index: 1, type: EntryType.Normal, data: Buffer.alloc(0) }),
    40,
  );
  t.throws(() => decodeEntry(record, 'entry/0000000000000001'), {
    name: 'CorruptLogError',
    code: 'ECORRUPTLOG',
    key: 'entry/0000000000000001',
  });
  t.end();
});

void t.test('every truncation is detected and looks torn; intact and bit-flipped records do not', (t) => {
  const record = encodeEntry({
    term: 4,
    index: 12,
    type: EntryType.Normal,
    data: Buffer.from('some payload bytes'),
  });
  t.notOk(recordLooksTorn(record));
  for (let length = 0; length < record.length; length++) {
    const cut = record.subarray(0, length);
    t.throws(() => decodeEntry(cut, KEY), CorruptLogError);
    t.ok(recordLooksTorn(cut), `cut to ${length} bytes looks torn`);
  }
  // A flip in the data or the CRC keeps the record complete: corrupt, not torn.
  t.notOk(recordLooksTorn(flipBit(record, 3)));
  t.notOk(recordLooksTorn(flipBit(record, (record.length - 1) * 8)));
  t.end();
});

void t.test('records with a valid CRC but a wrong shape are rejected', (t) => {
  const data = Buffer.from('d');
  const bad: [string, unknown][] = [
    ['not an array', { term: 1 }],
    ['wrong kind', [2, 1, 1, 0, data]],
    ['too few fields', [1, 1, 1, 0]],
    ['too many fields', [1, 1, 1, 0, data, 0]],
    ['term 0', [1, 0, 1, 0, data]],
    ['index 0', [1, 1, 0, 0, data]],
    ['negative index', [1, 1, -3, 0, data]],
    ['fractional term', [1, 1.5, 1, 0, data]],
    ['unsafe integer', [1, 2 ** 60, 1, 0, data]],
    ['index as string', [1, 1, '1', 0, data]],
    ['unknown type', [1, 1, 1, 7, data]],
    ['data as string', [1, 1, 1, 0, 'd']],
    ['data missing', [1, 1, 1, 0, null]],
  ];
  for (const [why, payload] of bad) {
    t.throws(() => decodeEntry(recordWithPayload(payload), KEY), CorruptLogError, why);
  }
  t.throws(
    () => decodeHardState(recordWithPayload([2, -1, 0, 0]), 'hardstate'),
    CorruptLogError,
    'negative term',
  );
  t.throws(
    () => decodeHardState(recordWithPayload([1, 1, 1, 0, data]), 'hardstate'),
    CorruptLogError,
    'an entry',
  );
  t.throws(
    () => decodeSnapshot(recordWithPayload([3, 5, 1, [1, 0], [], [], [], false, data]), 'snapshot'),
    CorruptLogError,
    'node id 0',
  );
  t.throws(
    () => decodeSnapshot(recordWithPayload([3, 5, 1, [1], [], [], [], 'no', data]), 'snapshot'),
    CorruptLogError,
    'autoLeave not a boolean',
  );
  t.throws(
    () => decodeEntry(recordWithPayload([1, 1, 1, 0, data]).subarray(0, 3), KEY),
    CorruptLogError,
    'no CRC',
  );
  t.end();
});

void t.test('decoding does not copy the data bytes', (t) => {
  const record = encodeEntry({ term: 1, index: 1, type: EntryType.Normal, data: Buffer.alloc(1024, 7) });
  const entry = decodeEntry(record, KEY);
  t.equal(entry.data.buffer, record.buffer, 'data is a view into the record');
  t.end();
});
