/**
 * Stored records (the values of the key layout in keys.ts): msgpack arrays, compact because there is one
 * inode record per file. The state machine wrote every one of them, so a record of the wrong shape means
 * corruption or a bug: decoding asserts (crash loudly) instead of reporting bad input.
 */
import { Packr } from 'msgpackr';
import { assert } from '../raft/errors.ts';
import type { FsErrorCode, FsResult } from './errors.ts';
import { fsErrorCodes, StateFormatError } from './errors.ts';
import type { InodeType } from './keys.ts';

/** Plain msgpack only: no msgpackr records, shared structures or extension types. */
export const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
});

/** Bytes of each chunk RecordWriter writes records into (a record larger than that gets a chunk of its own). */
const recordChunkBytes = 8192;

/**
 * A msgpack writer for the records' own shapes, writing exactly the bytes `packr.pack` writes for the same
 * array (test/fsm/records.test.ts compares them on random records): numbers, ASCII strings, booleans, null,
 * byte arrays, one array of up to 65,535 values. A record it does not cover (a string with a non-ASCII char)
 * is declined: `finish()` returns undefined and the caller packs the record with packr. Spares msgpackr's
 * per-call set-up and its result's Buffer object on the records every create writes (inodes, the session
 * record, the meta record).
 */
class RecordWriter {
  /** Records are written one after another into this chunk, and handed out as views of it (as msgpackr does). */
  private buf = new Uint8Array(recordChunkBytes);
  private view = new DataView(this.buf.buffer);
  /** Where the record being written starts, and where its next byte goes. */
  private start = 0;
  private pos = 0;
  private ok = true;

  /** Starts a record: an array of `length` values (< 65,536). */
  array(length: number): this {
    this.start = this.pos;
    this.ok = true;
    this.room(3);
    if (length < 0x10) this.buf[this.pos++] = 0x90 | length;
    else {
      this.buf[this.pos++] = 0xdc;
      this.buf[this.pos++] = length >> 8;
      this.buf[this.pos++] = length & 0xff;
    }
    return this;
  }

  /** Makes room for `bytes` more: a fresh chunk, with the record so far, when this one is full. */
  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const sofar = this.pos - this.start;
    const chunk = new Uint8Array(Math.max(recordChunkBytes, 2 * (sofar + bytes)));
    chunk.set(this.buf.subarray(this.start, this.pos));
    this.buf = chunk;
    this.view = new DataView(chunk.buffer);
    this.start = 0;
    this.pos = sofar;
  }

  /** As msgpackr writes a number (no float32: this packr's useFloat32 is off). */
  number(n: number): this {
    this.room(9);
    const b = this.buf;
    if (n >>> 0 === n) {
      if (n < 0x80) b[this.pos++] = n;
      else if (n < 0x100) {
        b[this.pos++] = 0xcc;
        b[this.pos++] = n;
      } else if (n < 0x10000) {
        b[this.pos++] = 0xcd;
        b[this.pos++] = n >> 8;
        b[this.pos++] = n & 0xff;
      } else {
        b[this.pos++] = 0xce;
        this.view.setUint32(this.pos, n);
        this.pos += 4;
      }
    } else if (n >> 0 === n) {
      if (n >= -0x20) b[this.pos++] = 0x100 + n;
      else if (n >= -0x80) {
        b[this.pos++] = 0xd0;
        b[this.pos++] = n + 0x100;
      } else if (n >= -0x8000) {
        b[this.pos++] = 0xd1;
        this.view.setInt16(this.pos, n);
        this.pos += 2;
      } else {
        b[this.pos++] = 0xd2;
        this.view.setInt32(this.pos, n);
        this.pos += 4;
      }
    } else {
      b[this.pos++] = 0xcb;
      this.view.setFloat64(this.pos, n);
      this.pos += 8;
    }
    return this;
  }

  /** An ASCII string of fewer than 65,536 chars; any other string declines the record. */
  string(s: string): this {
    const length = s.length;
    if (length >= 0x10000) {
      this.ok = false;
      return this;
    }
    this.room(length + 3);
    const b = this.buf;
    if (length < 0x20) b[this.pos++] = 0xa0 | length;
    else if (length < 0x100) {
      b[this.pos++] = 0xd9;
      b[this.pos++] = length;
    } else {
      b[this.pos++] = 0xda;
      b[this.pos++] = length >> 8;
      b[this.pos++] = length & 0xff;
    }
    let at = this.pos;
    for (let i = 0; i < length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.ok = false;
        return this;
      }
      b[at++] = c;
    }
    this.pos = at;
    return this;
  }

  boolean(x: boolean): this {
    this.room(1);
    this.buf[this.pos++] = x ? 0xc3 : 0xc2;
    return this;
  }

  /** A byte array (msgpack bin), or null. */
  bytesOrNull(x: Uint8Array | null): this {
    if (x === null) {
      this.room(1);
      this.buf[this.pos++] = 0xc0;
      return this;
    }
    const length = x.length;
    this.room(length + 5);
    const b = this.buf;
    if (length < 0x100) {
      b[this.pos++] = 0xc4;
      b[this.pos++] = length;
    } else if (length < 0x10000) {
      b[this.pos++] = 0xc5;
      b[this.pos++] = length >> 8;
      b[this.pos++] = length & 0xff;
    } else {
      b[this.pos++] = 0xc6;
      this.view.setUint32(this.pos, length);
      this.pos += 4;
    }
    b.set(x, this.pos);
    this.pos += length;
    return this;
  }

  /** The record's bytes (a view of the chunk, never written again), or undefined if a value was declined. */
  finish(): Uint8Array | undefined {
    if (!this.ok) {
      this.pos = this.start; // its bytes are overwritten by the next record
      return undefined;
    }
    return this.buf.subarray(this.start, this.pos);
  }
}

const writer = new RecordWriter();

/**
 * The layout version of the whole state (in Meta); a new layout gets a new number. 2: the session record
 * carries `indexedMs`, the time of its by-use index entry, which may lag its last use (sessions.ts). 3: the
 * session record may hold one of its results itself (`inlineSeq`, `inlineResult`).
 */
export const FORMAT_VERSION = 3;

/** The root directory's inode id. Invariant: it exists, is a directory, and is its own parent. */
export const ROOT_ID = 1;

function isNat(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function unpackArray(bytes: Uint8Array, fields: number, what: string): unknown[] {
  const raw: unknown = packr.unpack(bytes);
  if (!(Array.isArray(raw) && raw.length === fields)) assert(false, `corrupt ${what} record`);
  return raw as unknown[];
}

function nats(values: unknown[], what: string): number[] {
  for (const v of values) if (!isNat(v)) assert(false, `corrupt ${what} record: ${String(v)}`);
  return values as number[];
}

/**
 * A file or directory. Invariants: `parent`/`name` name the one directory entry that points here (the root
 * is its own parent, with an empty name); `generation` is the log index of the last command that changed
 * this record, so it changes on every modification and is never reused by another inode at the same path.
 * Directories keep `childCount` = number of their entries; files keep `chunkCount` = length of the chunk
 * list, `unsealedChunks` = chunks without a sealed length, `lengthBytes` = sum of sealed chunk lengths.
 */
export interface Inode {
  readonly id: number;
  type: InodeType;
  parent: number;
  name: string;
  mode: number;
  owner: string;
  mtimeMs: number;
  ctimeMs: number;
  generation: number;
  /** Files: the target replication factor. Directories: the default for what is created inside. */
  replication: number;
  /** Files: the chunk size. Directories: the default for what is created inside. */
  chunkSizeBytes: number;
  childCount: number;
  lengthBytes: number;
  chunkCount: number;
  unsealedChunks: number;
  /** Files: completed (length sealed) and not appended to since. */
  complete: boolean;
  /**
   * Files: how the chunkservers store its chunks (`lz4`: compressed once sealed). Directories: the default
   * for what is created inside. Absent means none (and is encoded as the 15-field record of old).
   */
  compression?: 'lz4';
}

const INODE_FIELDS = 15;
/** The optional 16th field: 1 = lz4. */
const INODE_COMPRESSION_LZ4 = 1;

export function encodeInode(n: Inode): Uint8Array {
  const lz4 = n.compression === 'lz4';
  const fast = writer
    .array(lz4 ? INODE_FIELDS + 1 : INODE_FIELDS)
    .number(n.type === 'dir' ? 0 : 1)
    .number(n.parent)
    .string(n.name)
    .number(n.mode)
    .string(n.owner)
    .number(n.mtimeMs)
    .number(n.ctimeMs)
    .number(n.generation)
    .number(n.replication)
    .number(n.chunkSizeBytes)
    .number(n.childCount)
    .number(n.lengthBytes)
    .number(n.chunkCount)
    .number(n.unsealedChunks)
    .boolean(n.complete);
  if (lz4) fast.number(INODE_COMPRESSION_LZ4);
  return fast.finish() ?? packInode(n);
}

/** encodeInode's bytes, written by msgpackr (a record RecordWriter declines). */
export function packInode(n: Inode): Uint8Array {
  return packr.pack([
    n.type === 'dir' ? 0 : 1,
    n.parent,
    n.name,
    n.mode,
    n.owner,
    n.mtimeMs,
    n.ctimeMs,
    n.generation,
    n.replication,
    n.chunkSizeBytes,
    n.childCount,
    n.lengthBytes,
    n.chunkCount,
    n.unsealedChunks,
    n.complete,
    ...(n.compression === 'lz4' ? [INODE_COMPRESSION_LZ4] : []),
  ]);
}

export function decodeInode(id: number, bytes: Uint8Array): Inode {
  const r = unpackInodeArray(bytes);
  const compression = r.length > INODE_FIELDS ? r.pop() : undefined;
  assert(compression === undefined || compression === INODE_COMPRESSION_LZ4, 'corrupt inode record: compression');
  const [
    type,
    parent,
    name,
    mode,
    owner,
    mtimeMs,
    ctimeMs,
    generation,
    replication,
    chunkSizeBytes,
    childCount,
    lengthBytes,
    chunkCount,
    unsealedChunks,
    complete,
  ] = r;
  nats(
    [
      type,
      parent,
      mode,
      mtimeMs,
      ctimeMs,
      generation,
      replication,
      chunkSizeBytes,
      childCount,
      lengthBytes,
      chunkCount,
      unsealedChunks,
    ],
    'inode',
  );
  assert(
    (type === 0 || type === 1) &&
      typeof name === 'string' &&
      typeof owner === 'string' &&
      typeof complete === 'boolean',
    'corrupt inode record',
  );
  return {
    id,
    type: type === 0 ? 'dir' : 'file',
    parent: parent as number,
    name,
    mode: mode as number,
    owner,
    mtimeMs: mtimeMs as number,
    ctimeMs: ctimeMs as number,
    generation: generation as number,
    replication: replication as number,
    chunkSizeBytes: chunkSizeBytes as number,
    childCount: childCount as number,
    lengthBytes: lengthBytes as number,
    chunkCount: chunkCount as number,
    unsealedChunks: unsealedChunks as number,
    complete,
    ...(compression === INODE_COMPRESSION_LZ4 ? { compression: 'lz4' as const } : {}),
  };
}

/** A copy of `n` with exactly the fields decodeInode gives (what decoding encodeInode(n) returns). */
export function copyInode(n: Inode): Inode {
  return {
    id: n.id,
    type: n.type,
    parent: n.parent,
    name: n.name,
    mode: n.mode,
    owner: n.owner,
    mtimeMs: n.mtimeMs,
    ctimeMs: n.ctimeMs,
    generation: n.generation,
    replication: n.replication,
    chunkSizeBytes: n.chunkSizeBytes,
    childCount: n.childCount,
    lengthBytes: n.lengthBytes,
    chunkCount: n.chunkCount,
    unsealedChunks: n.unsealedChunks,
    complete: n.complete,
    ...(n.compression === 'lz4' ? { compression: 'lz4' as const } : {}),
  };
}

/** An inode record: 15 fields, or 16 with the compression. */
function unpackInodeArray(bytes: Uint8Array): unknown[] {
  const raw: unknown = packr.unpack(bytes);
  assert(Array.isArray(raw) && (raw.length === INODE_FIELDS || raw.length === INODE_FIELDS + 1), 'corrupt inode record');
  return raw as unknown[];
}

/**
 * Where one chunk lives. Invariants: `version` starts at 1 and grows by one per new write pipeline, so a
 * replica reporting a lower version is stale; a sealed chunk never changes length or checksum again.
 */
export interface Placement {
  readonly handle: number;
  readonly fileId: number;
  readonly index: number;
  version: number;
  replicas: number[];
  sealed: boolean;
  lengthBytes: number;
  /** CRC32C of the sealed chunk's bytes (0 until sealed). */
  checksum: number;
}

export function encodePlacement(p: Placement): Uint8Array {
  return packr.pack([p.fileId, p.index, p.version, p.replicas, p.sealed, p.lengthBytes, p.checksum]);
}

export function decodePlacement(handle: number, bytes: Uint8Array): Placement {
  const [fileId, index, version, replicas, sealed, lengthBytes, checksum] = unpackArray(
    bytes,
    7,
    'placement',
  );
  nats([fileId, index, version, lengthBytes, checksum], 'placement');
  assert(Array.isArray(replicas) && typeof sealed === 'boolean', 'corrupt placement record');
  return {
    handle,
    fileId: fileId as number,
    index: index as number,
    version: version as number,
    replicas: nats(replicas, 'placement replicas'),
    sealed,
    lengthBytes: lengthBytes as number,
    checksum: checksum as number,
  };
}

/**
 * The holder of a file's lease while the leader recovers it (beginLeaseRecovery): empty, which no client can
 * hold (every client-given holder must be non-empty, checkLabel).
 */
export const RECOVERY_HOLDER = '';

/** A writer lease on a file: the holder may add and seal chunks until `expiresMs` (stamped time). */
export interface Lease {
  readonly holder: string;
  readonly expiresMs: number;
}

export function encodeLease(l: Lease): Uint8Array {
  return packr.pack([l.holder, l.expiresMs]);
}

export function decodeLease(bytes: Uint8Array): Lease {
  const [holder, expiresMs] = unpackArray(bytes, 2, 'lease');
  assert(typeof holder === 'string' && isNat(expiresMs), 'corrupt lease record');
  return { holder, expiresMs };
}

/**
 * live: takes new chunks. dead: missed heartbeats (the leader's chunk manager decided); re-registration makes it
 * live again. decommissioning: an operator asked to drain it; its chunks are copied elsewhere, it takes no new
 * ones. decommissioned: drained; stays so (re-registration does not revive it). Appended values only: the
 * stored record keeps the index.
 */
export const chunkserverStates = ['live', 'dead', 'decommissioning', 'decommissioned'] as const;
export type ChunkserverState = (typeof chunkserverStates)[number];

export interface Chunkserver {
  readonly id: number;
  address: string;
  rack: string;
  capacityBytes: number;
  usedBytes: number;
  state: ChunkserverState;
  /** Log index of the last command that changed this record. */
  generation: number;
  registeredMs: number;
  updatedMs: number;
}

export function encodeChunkserver(c: Chunkserver): Uint8Array {
  return packr.pack([
    c.address,
    c.rack,
    c.capacityBytes,
    c.usedBytes,
    chunkserverStates.indexOf(c.state),
    c.generation,
    c.registeredMs,
    c.updatedMs,
  ]);
}

export function decodeChunkserver(id: number, bytes: Uint8Array): Chunkserver {
  const [address, rack, capacityBytes, usedBytes, state, generation, registeredMs, updatedMs] = unpackArray(
    bytes,
    8,
    'chunkserver',
  );
  nats([capacityBytes, usedBytes, state, generation, registeredMs, updatedMs], 'chunkserver');
  const s = chunkserverStates[state as number];
  assert(
    typeof address === 'string' && typeof rack === 'string' && s !== undefined,
    'corrupt chunkserver record',
  );
  return {
    id,
    address,
    rack,
    capacityBytes: capacityBytes as number,
    usedBytes: usedBytes as number,
    state: s,
    generation: generation as number,
    registeredMs: registeredMs as number,
    updatedMs: updatedMs as number,
  };
}

/**
 * A client session. Invariants: results are kept for exactly the sequences > `ack` that were applied
 * (`pending` of them): at most one in the record itself (`inlineSeq`, 0 for none, with its encoded
 * `inlineResult`), the others under result keys, never one in both; the session's one entry in the by-use
 * index is at `indexedMs`, and `lastUsedMs - sessionUseGranularityMs < indexedMs <= lastUsedMs` (the entry
 * moves only when the session is used at least that long after it: sessions.ts).
 */
export interface Session {
  readonly clientId: number;
  ack: number;
  /** Stamped time of the session's last command (or of its opening). */
  lastUsedMs: number;
  pending: number;
  /** Stamped time of the session's by-use index entry. */
  indexedMs: number;
  /** Sequence of the result kept in the record (0: none). */
  inlineSeq: number;
  /** That result, as encodeResult gives it (undefined when inlineSeq is 0). */
  inlineResult: Uint8Array | undefined;
}

export function encodeSession(s: Session): Uint8Array {
  const fast = writer
    .array(6)
    .number(s.ack)
    .number(s.lastUsedMs)
    .number(s.pending)
    .number(s.indexedMs)
    .number(s.inlineSeq)
    .bytesOrNull(s.inlineResult ?? null)
    .finish();
  return fast ?? packSession(s);
}

/** encodeSession's bytes, written by msgpackr. */
export function packSession(s: Session): Uint8Array {
  return packr.pack([s.ack, s.lastUsedMs, s.pending, s.indexedMs, s.inlineSeq, s.inlineResult ?? null]);
}

export function decodeSession(clientId: number, bytes: Uint8Array): Session {
  const raw = unpackArray(bytes, 6, 'session');
  const [ack, lastUsedMs, pending, indexedMs, inlineSeq] = nats(raw.slice(0, 5), 'session');
  const inline = raw[5];
  if (!(inlineSeq === 0 ? inline === null : inline instanceof Uint8Array)) assert(false, 'corrupt session record');
  return {
    clientId,
    ack: ack!,
    lastUsedMs: lastUsedMs!,
    pending: pending!,
    indexedMs: indexedMs!,
    inlineSeq: inlineSeq!,
    inlineResult: inlineSeq === 0 ? undefined : (inline as Uint8Array),
  };
}

/** A copy of `s` with exactly the fields decodeSession gives (the result's bytes are shared, never changed). */
export function copySession(s: Session): Session {
  return {
    clientId: s.clientId,
    ack: s.ack,
    lastUsedMs: s.lastUsedMs,
    pending: s.pending,
    indexedMs: s.indexedMs,
    inlineSeq: s.inlineSeq,
    inlineResult: s.inlineResult,
  };
}

export function encodeResult(r: FsResult): Uint8Array {
  return packr.pack(r.ok ? [1, r.value] : [0, r.code, r.message]);
}

export function decodeResult(bytes: Uint8Array): FsResult {
  const raw: unknown = packr.unpack(bytes);
  assert(Array.isArray(raw), 'corrupt result record');
  if (raw[0] === 1 && raw.length === 2) return { ok: true, value: raw[1] as unknown };
  const [, code, message] = raw as unknown[];
  assert(
    raw[0] === 0 && raw.length === 3 && typeof message === 'string' && fsErrorCodes.includes(code as never),
    'corrupt result record',
  );
  return { ok: false, code: code as FsErrorCode, message };
}

/**
 * Global state of the state machine. `clockMs` is the largest time any leader stamped so far (so stamped
 * time never runs backwards inside the state machine, even across leaders with skewed clocks). The counters
 * hand out ids deterministically: every replica applies the same commands in the same order.
 */
export interface Meta {
  format: number;
  clockMs: number;
  nextInodeId: number;
  nextChunkHandle: number;
  nextChunkserverId: number;
  nextClientId: number;
  /** Next sequence for the garbage queue. */
  garbageNext: number;
  /** Entries in the garbage queue. */
  garbageCount: number;
  sessionCount: number;
}

export function encodeMeta(m: Meta): Uint8Array {
  const fast = writer
    .array(9)
    .number(m.format)
    .number(m.clockMs)
    .number(m.nextInodeId)
    .number(m.nextChunkHandle)
    .number(m.nextChunkserverId)
    .number(m.nextClientId)
    .number(m.garbageNext)
    .number(m.garbageCount)
    .number(m.sessionCount)
    .finish();
  return fast ?? packMeta(m);
}

/** encodeMeta's bytes, written by msgpackr. */
export function packMeta(m: Meta): Uint8Array {
  return packr.pack([
    m.format,
    m.clockMs,
    m.nextInodeId,
    m.nextChunkHandle,
    m.nextChunkserverId,
    m.nextClientId,
    m.garbageNext,
    m.garbageCount,
    m.sessionCount,
  ]);
}

export function decodeMeta(bytes: Uint8Array): Meta {
  const [
    format,
    clockMs,
    nextInodeId,
    nextChunkHandle,
    nextChunkserverId,
    nextClientId,
    garbageNext,
    garbageCount,
    sessionCount,
  ] = nats(unpackArray(bytes, 9, 'meta'), 'meta');
  if (format !== FORMAT_VERSION) throw new StateFormatError(format!, FORMAT_VERSION);
  return {
    format,
    clockMs: clockMs!,
    nextInodeId: nextInodeId!,
    nextChunkHandle: nextChunkHandle!,
    nextChunkserverId: nextChunkserverId!,
    nextClientId: nextClientId!,
    garbageNext: garbageNext!,
    garbageCount: garbageCount!,
    sessionCount: sessionCount!,
  };
}

/** A copy of `m` with exactly the fields decodeMeta gives (what decoding encodeMeta(m) returns). */
export function copyMeta(m: Meta): Meta {
  return {
    format: m.format,
    clockMs: m.clockMs,
    nextInodeId: m.nextInodeId,
    nextChunkHandle: m.nextChunkHandle,
    nextChunkserverId: m.nextChunkserverId,
    nextClientId: m.nextClientId,
    garbageNext: m.garbageNext,
    garbageCount: m.garbageCount,
    sessionCount: m.sessionCount,
  };
}

export function initialMeta(): Meta {
  return {
    format: FORMAT_VERSION,
    clockMs: 0,
    nextInodeId: ROOT_ID + 1,
    nextChunkHandle: 1,
    nextChunkserverId: 1,
    nextClientId: 1,
    garbageNext: 1,
    garbageCount: 0,
    sessionCount: 0,
  };
}
