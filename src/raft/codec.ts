/**
 * Encodings of Raft payloads with msgpackr: conf change entries (decoded by the core when applied) and
 * whole messages (for transports). Decoders validate shape and throw CodecError on bad input.
 */
import { Packr } from 'msgpackr';
import type { ConfChange, ConfChangeSingle, Entry, Message, MessageType, SnapshotChunk, SnapshotMetadata } from './types.ts';
import { messageTypes } from './types.ts';

export class CodecError extends Error {
  readonly code = 'EBADMSG';
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false });

function fail(what: string): never {
  throw new CodecError(`malformed ${what}`);
}

function isIndex(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function asBytes(x: unknown, what: string): Uint8Array {
  if (x instanceof Uint8Array) return x;
  return fail(what);
}

const changeTypes = new Set(['addVoter', 'addLearner', 'removeNode']);
const transitions = new Set(['auto', 'joint-implicit', 'joint-explicit']);

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return packr.pack({ t: cc.transition, c: cc.changes.map((c) => [c.type, c.nodeId]) });
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch {
    return fail('conf change');
  }
  if (typeof raw !== 'object' || raw === null) return fail('conf change');
  const { t, c } = raw as { t?: unknown; c?: unknown };
  if (typeof t !== 'string' || !transitions.has(t) || !Array.isArray(c)) return fail('conf change');
  const changes: ConfChangeSingle[] = c.map((item: unknown) => {
    if (!Array.isArray(item) || item.length !== 2) return fail('conf change item');
    const [type, nodeId] = item as [unknown, unknown];
    if (typeof type !== 'string' || !changeTypes.has(type) || !isIndex(nodeId) || nodeId === 0) {
      return fail('conf change item');
    }
    return { type: type as ConfChangeSingle['type'], nodeId };
  });
  return { transition: t as ConfChange['transition'], changes };
}

const typeCodes = new Map<MessageType, number>(messageTypes.map((t, i) => [t, i]));

function encodeMeta(m: SnapshotMetadata): unknown[] {
  const c = m.confState;
  return [m.index, m.term, c.voters, c.votersOutgoing, c.learners, c.learnersNext, c.autoLeave];
}

function decodeIds(x: unknown): number[] {
  if (!Array.isArray(x) || !x.every((id) => isIndex(id) && id > 0)) return fail('node id list');
  return x as number[];
}

function decodeMeta(x: unknown): SnapshotMetadata {
  if (!Array.isArray(x) || x.length !== 7) return fail('snapshot metadata');
  const [index, term, voters, outgoing, learners, learnersNext, autoLeave] = x as unknown[];
  if (!isIndex(index) || !isIndex(term) || typeof autoLeave !== 'boolean') return fail('snapshot metadata');
  return {
    index,
    term,
    confState: {
      voters: decodeIds(voters),
      votersOutgoing: decodeIds(outgoing),
      learners: decodeIds(learners),
      learnersNext: decodeIds(learnersNext),
      autoLeave,
    },
  };
}

/** Encodes a message for the wire. Entry data and snapshot chunks are referenced, not copied, by msgpackr. */
export function encodeMessage(m: Message): Uint8Array {
  const entries = m.entries.map((e) => [e.term, e.index, e.type, e.data]);
  const snap = m.snapshot === null ? null : [encodeMeta(m.snapshot.metadata), m.snapshot.offset, m.snapshot.totalBytes, m.snapshot.data];
  return packr.pack([
    typeCodes.get(m.type), m.from, m.to, m.term, m.logTerm, m.index, entries, m.commit, m.reject, m.rejectHint, m.context, snap,
  ]);
}

export function decodeMessage(bytes: Uint8Array): Message {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch {
    return fail('message');
  }
  if (!Array.isArray(raw) || raw.length !== 12) return fail('message');
  const [typeCode, from, to, term, logTerm, index, entries, commit, reject, rejectHint, context, snap] = raw as unknown[];
  const type = typeof typeCode === 'number' ? messageTypes[typeCode] : undefined;
  if (type === undefined) return fail('message type');
  for (const n of [from, to, term, logTerm, index, commit, rejectHint]) if (!isIndex(n)) return fail('message field');
  if (typeof reject !== 'boolean' || !Array.isArray(entries)) return fail('message field');
  const decodedEntries: Entry[] = entries.map((e: unknown) => {
    if (!Array.isArray(e) || e.length !== 4) return fail('entry');
    const [eTerm, eIndex, eType, data] = e as unknown[];
    if (!isIndex(eTerm) || !isIndex(eIndex) || eIndex === 0 || (eType !== 0 && eType !== 1)) return fail('entry');
    return { term: eTerm, index: eIndex, type: eType, data: asBytes(data, 'entry data') };
  });
  let snapshot: SnapshotChunk | null = null;
  if (snap !== null) {
    if (!Array.isArray(snap) || snap.length !== 4) return fail('snapshot chunk');
    const [meta, offset, totalBytes, data] = snap as unknown[];
    if (!isIndex(offset) || !isIndex(totalBytes)) return fail('snapshot chunk');
    snapshot = { metadata: decodeMeta(meta), offset, totalBytes, data: asBytes(data, 'snapshot chunk data') };
  }
  return {
    type,
    from: from as number,
    to: to as number,
    term: term as number,
    logTerm: logTerm as number,
    index: index as number,
    entries: decodedEntries,
    commit: commit as number,
    reject,
    rejectHint: rejectHint as number,
    context: context === null ? null : asBytes(context, 'context'),
    snapshot,
  };
}
