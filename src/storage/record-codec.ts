/**
 * Stored records of the durable log: a 4-byte big-endian CRC32C of the payload, then the payload, one
 * msgpack array whose first element names the record kind:
 *
 *   entry:      [1, term, index, type, data]
 *   hard state: [2, term, vote, commit]
 *   snapshot:   [3, index, term, voters, votersOutgoing, learners, learnersNext, autoLeave, data]
 *
 * Decoding checks the CRC, then the structure and every field, so corrupt input either throws
 * CorruptLogError or yields exactly what was encoded; never a bogus value.
 *
 * Buffers: encoding writes the payload once, after 4 reserved bytes, and fills in the CRC in place; decoding
 * returns `data` as a view into the record (no copy), so a record must not be mutated after decoding.
 */
import { crc32c } from '@node-rs/crc32';
import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import { EntryType } from '../raft/types.ts';
import type { ConfState, Entry, HardState, NodeId, Snapshot } from '../raft/types.ts';
import { CorruptLogError } from './log-store.ts';

/** Bytes of the CRC32C that precedes every payload. */
export const RECORD_CRC_BYTES = 4;

/** First element of every payload: what the record holds. A new layout gets a new kind. */
const RecordKind = { Entry: 1, HardState: 2, Snapshot: 3 } as const;
type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** Elements of each payload array, kind included. */
const ENTRY_FIELDS = 5;
const HARD_STATE_FIELDS = 4;
const SNAPSHOT_FIELDS = 9;

/** Plain msgpack only: no msgpackr records, shared structures or extension types. */
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
});

const entryTypes: ReadonlySet<unknown> = new Set(Object.values(EntryType));

export function encodeEntry(entry: Entry): Buffer {
  return encodeRecord([RecordKind.Entry, entry.term, entry.index, entry.type, entry.data]);
}

export function encodeHardState(hardState: HardState): Buffer {
  return encodeRecord([RecordKind.HardState, hardState.term, hardState.vote, hardState.commit]);
}

export function encodeSnapshot(snapshot: Snapshot): Buffer {
  const { index, term, confState } = snapshot.metadata;
  return encodeRecord([
    RecordKind.Snapshot,
    index,
    term,
    confState.voters,
    confState.votersOutgoing,
    confState.learners,
    confState.learnersNext,
    confState.autoLeave,
    snapshot.data,
  ]);
}

/** Decodes an entry record stored under `key`. Throws CorruptLogError naming `key` if it is not one. */
export function decodeEntry(record: Uint8Array, key: string): Entry {
  const fields = openRecord(record, key, RecordKind.Entry, ENTRY_FIELDS);
  const type = fields[3];
  if (!entryTypes.has(type)) throw corrupt(key, `unknown entry type ${String(type)}`);
  return {
    term: positiveInteger(fields[1], key, 'term'),
    index: positiveInteger(fields[2], key, 'index'),
    type: type as EntryType,
    data: bytes(fields[4], key, 'data'),
  };
}

export function decodeHardState(record: Uint8Array, key: string): HardState {
  const fields = openRecord(record, key, RecordKind.HardState, HARD_STATE_FIELDS);
  return {
    term: nonNegativeInteger(fields[1], key, 'term'),
    vote: nonNegativeInteger(fields[2], key, 'vote'),
    commit: nonNegativeInteger(fields[3], key, 'commit'),
  };
}

export function decodeSnapshot(record: Uint8Array, key: string): Snapshot {
  const fields = openRecord(record, key, RecordKind.Snapshot, SNAPSHOT_FIELDS);
  const autoLeave = fields[7];
  if (typeof autoLeave !== 'boolean') throw corrupt(key, 'autoLeave is not a boolean');
  const confState: ConfState = {
    voters: nodeIds(fields[3], key, 'voters'),
    votersOutgoing: nodeIds(fields[4], key, 'votersOutgoing'),
    learners: nodeIds(fields[5], key, 'learners'),
    learnersNext: nodeIds(fields[6], key, 'learnersNext'),
    autoLeave,
  };
  return {
    metadata: {
      index: positiveInteger(fields[1], key, 'index'),
      term: positiveInteger(fields[2], key, 'term'),
      confState,
    },
    data: bytes(fields[8], key, 'data'),
  };
}

/**
 * True when `record` looks like the prefix of a record cut short by a crash mid-write: shorter than the
 * CRC, or a CRC mismatch over a payload that ends before its msgpack value does. A single flipped bit in a
 * complete record keeps its length and usually its structure, so it is reported as corrupt instead (the
 * exception: a flip in a length header can look like a cut; callers treat only the log's tail this way).
 */
export function recordLooksTorn(record: Uint8Array): boolean {
  if (record.length < RECORD_CRC_BYTES) return true;
  if (crcMatches(record)) return false;
  try {
    packr.unpack(payloadOf(record));
    return false;
  } catch (error) {
    return isIncompleteMsgpack(error);
  }
}

function encodeRecord(fields: readonly unknown[]): Buffer {
  // RESERVE_START_SPACE | n: msgpackr leaves n bytes before the payload, in the buffer it returns.
  const record = packr.pack(fields, RESERVE_START_SPACE | RECORD_CRC_BYTES);
  record.writeUInt32BE(crc32c(payloadOf(record)), 0);
  return record;
}

/** Checks the CRC and the kind and arity of the payload array; returns its elements. */
function openRecord(record: Uint8Array, key: string, kind: RecordKind, arity: number): readonly unknown[] {
  if (record.length < RECORD_CRC_BYTES) throw corrupt(key, `${record.length} bytes, shorter than its CRC`);
  if (!crcMatches(record)) throw corrupt(key, 'CRC32C mismatch');
  let payload: unknown;
  try {
    payload = packr.unpack(payloadOf(record));
  } catch (error) {
    throw corrupt(key, `undecodable payload (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!Array.isArray(payload)) throw corrupt(key, 'payload is not an array');
  const fields = payload as readonly unknown[];
  if (fields[0] !== kind) throw corrupt(key, `record kind ${String(fields[0])}, expected ${kind}`);
  if (fields.length !== arity) throw corrupt(key, `${fields.length} fields, expected ${arity}`);
  return fields;
}

function payloadOf(record: Uint8Array): Uint8Array {
  return record.subarray(RECORD_CRC_BYTES);
}

function crcMatches(record: Uint8Array): boolean {
  const stored = new DataView(record.buffer, record.byteOffset, RECORD_CRC_BYTES).getUint32(0);
  return stored === crc32c(payloadOf(record));
}

/** msgpackr marks errors from input that ends before the value does with `incomplete: true`. */
function isIncompleteMsgpack(error: unknown): boolean {
  return (
    typeof error === 'object' && error !== null && (error as { incomplete?: unknown }).incomplete === true
  );
}

function nonNegativeInteger(value: unknown, key: string, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw corrupt(key, `${field} is not a non-negative integer`);
  }
  return value;
}

function positiveInteger(value: unknown, key: string, field: string): number {
  const n = nonNegativeInteger(value, key, field);
  if (n === 0) throw corrupt(key, `${field} is 0`);
  return n;
}

function nodeIds(value: unknown, key: string, field: string): NodeId[] {
  if (!Array.isArray(value)) throw corrupt(key, `${field} is not an array`);
  return (value as unknown[]).map((id) => positiveInteger(id, key, field));
}

function bytes(value: unknown, key: string, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw corrupt(key, `${field} is not bytes`);
  return value;
}

function corrupt(key: string, reason: string): CorruptLogError {
  return new CorruptLogError(`corrupt record ${key}: ${reason}`, key);
}
