/**
 * The key layout of the metadata state in the ordered store. One ASCII letter names the table; numbers are
 * 8-byte big-endian (so byte order = numeric order); names are raw UTF-8.
 *
 *   m "applied"                      -> u64 applied index
 *   m "meta"                         -> Meta record (format, stamped clock, id counters, counts)
 *   i <inode u64>                    -> Inode record
 *   d <dir u64> <name bytes>         -> <child u64> <type u8>      directory entry; one dir's entries are
 *                                                                   contiguous and in byte-wise name order
 *   c <file u64> <chunk index u64>   -> <chunk handle u64>         a file's chunk list, in order
 *   p <chunk handle u64>             -> Placement record
 *   l <file u64>                     -> Lease record
 *   g <sequence u64>                 -> <inode u64>                deleted subtrees awaiting reclamation, FIFO
 *   s <chunkserver u64>              -> Chunkserver record
 *   x <client u64>                   -> Session record
 *   r <client u64> <sequence u64>    -> Result record              a session's unacknowledged results but
 *                                                                   the one its Session record may hold
 *   y <indexed ms u64> <client u64>  -> (empty)                   sessions by last use, for expiry and
 *                                                                   eviction; lags the last use by less
 *                                                                   than sessionUseGranularityMs (sessions.ts)
 */
import { assert } from '../raft/errors.ts';

export const Table = {
  meta: 0x6d, // m
  inode: 0x69, // i
  dirent: 0x64, // d
  chunkList: 0x63, // c
  placement: 0x70, // p
  lease: 0x6c, // l
  garbage: 0x67, // g
  chunkserver: 0x73, // s
  session: 0x78, // x
  result: 0x72, // r
  sessionByUse: 0x79, // y
} as const;
export type Table = (typeof Table)[keyof typeof Table];

export const U64_BYTES = 8;
const TWO_32 = 2 ** 32;

export function writeU64(out: Uint8Array, offset: number, n: number): void {
  // The message is built only on failure: a template literal argument costs a string per call.
  if (!(Number.isSafeInteger(n) && n >= 0)) assert(false, `u64 out of range: ${n}`);
  writeU32(out, offset, Math.floor(n / TWO_32));
  writeU32(out, offset + 4, n >>> 0);
}

function writeU32(out: Uint8Array, offset: number, n: number): void {
  out[offset] = n >>> 24;
  out[offset + 1] = (n >>> 16) & 0xff;
  out[offset + 2] = (n >>> 8) & 0xff;
  out[offset + 3] = n & 0xff;
}

function readU32(b: Uint8Array, offset: number): number {
  return ((b[offset]! << 24) >>> 0) + (b[offset + 1]! << 16) + (b[offset + 2]! << 8) + b[offset + 3]!;
}

export function readU64(bytes: Uint8Array, offset: number): number {
  assert(bytes.length >= offset + U64_BYTES, 'u64 read past the end');
  const n = readU32(bytes, offset) * TWO_32 + readU32(bytes, offset + 4);
  assert(Number.isSafeInteger(n), 'stored u64 is not a safe integer');
  return n;
}

export function u64Bytes(n: number): Uint8Array {
  const out = new Uint8Array(U64_BYTES);
  writeU64(out, 0, n);
  return out;
}

/** A key: the table byte, then each number as u64, then each byte string as is. */
function key(table: Table, ...parts: (number | Uint8Array)[]): Uint8Array {
  let length = 1;
  for (const p of parts) length += typeof p === 'number' ? U64_BYTES : p.length;
  const out = new Uint8Array(length);
  out[0] = table;
  let at = 1;
  for (const p of parts) {
    if (typeof p === 'number') {
      writeU64(out, at, p);
      at += U64_BYTES;
    } else {
      out.set(p, at);
      at += p.length;
    }
  }
  return out;
}

const encoder = new TextEncoder();

export const appliedKey = key(Table.meta, encoder.encode('applied'));

/**
 * The value at appliedKey: the index of the last applied entry, then its term. A store written before the
 * term was recorded holds the index alone (8 bytes): its term reads as 0, unknown.
 */
export function appliedValue(index: number, term: number): Uint8Array {
  const out = new Uint8Array(2 * U64_BYTES);
  out.set(u64Bytes(index), 0);
  out.set(u64Bytes(term), U64_BYTES);
  return out;
}

export function readApplied(value: Uint8Array): { index: number; term: number } {
  return { index: readU64(value, 0), term: value.length >= 2 * U64_BYTES ? readU64(value, U64_BYTES) : 0 };
}
export const metaKey = key(Table.meta, encoder.encode('meta'));

// The keys every command builds, without key()'s rest parameters and type checks (the same bytes).

/** table | u64 */
function key1(table: Table, a: number): Uint8Array {
  const out = new Uint8Array(1 + U64_BYTES);
  out[0] = table;
  writeU64(out, 1, a);
  return out;
}

/** table | u64 | u64 */
function key2(table: Table, a: number, b: number): Uint8Array {
  const out = new Uint8Array(1 + 2 * U64_BYTES);
  out[0] = table;
  writeU64(out, 1, a);
  writeU64(out, 1 + U64_BYTES, b);
  return out;
}

export const inodeKey = (id: number): Uint8Array => key1(Table.inode, id);
export function direntKey(dir: number, name: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + U64_BYTES + name.length);
  out[0] = Table.dirent;
  writeU64(out, 1, dir);
  out.set(name, 1 + U64_BYTES);
  return out;
}
export const chunkListKey = (file: number, index: number): Uint8Array => key2(Table.chunkList, file, index);
export const placementKey = (handle: number): Uint8Array => key1(Table.placement, handle);
export const leaseKey = (file: number): Uint8Array => key1(Table.lease, file);
export const garbageKey = (seq: number): Uint8Array => key1(Table.garbage, seq);
export const chunkserverKey = (id: number): Uint8Array => key1(Table.chunkserver, id);
export const sessionKey = (client: number): Uint8Array => key1(Table.session, client);
export const resultKey = (client: number, seq: number): Uint8Array => key2(Table.result, client, seq);
export const sessionByUseKey = (indexedMs: number, client: number): Uint8Array =>
  key2(Table.sessionByUse, indexedMs, client);

/*
 * The same keys as key strings (kv.ts bytesToKeyString: one char per byte), built from the numbers without
 * the bytes. The state machine's overlays and the stores' read caches are keyed by these strings: a read or
 * write of the apply path then converts no bytes (the bytes are made only for a store read, or the write).
 */

/** The 8 chars of a u64 (see writeU64), after `table`'s. */
function key1String(table: Table, a: number): string {
  if (!(Number.isSafeInteger(a) && a >= 0)) assert(false, `u64 out of range: ${a}`);
  const hi = Math.floor(a / TWO_32);
  const lo = a >>> 0;
  return String.fromCharCode(
    table,
    hi >>> 24,
    (hi >>> 16) & 0xff,
    (hi >>> 8) & 0xff,
    hi & 0xff,
    lo >>> 24,
    (lo >>> 16) & 0xff,
    (lo >>> 8) & 0xff,
    lo & 0xff,
  );
}

function key2String(table: Table, a: number, b: number): string {
  if (!(Number.isSafeInteger(a) && a >= 0)) assert(false, `u64 out of range: ${a}`);
  if (!(Number.isSafeInteger(b) && b >= 0)) assert(false, `u64 out of range: ${b}`);
  const ah = Math.floor(a / TWO_32);
  const al = a >>> 0;
  const bh = Math.floor(b / TWO_32);
  const bl = b >>> 0;
  return String.fromCharCode(
    table,
    ah >>> 24,
    (ah >>> 16) & 0xff,
    (ah >>> 8) & 0xff,
    ah & 0xff,
    al >>> 24,
    (al >>> 16) & 0xff,
    (al >>> 8) & 0xff,
    al & 0xff,
    bh >>> 24,
    (bh >>> 16) & 0xff,
    (bh >>> 8) & 0xff,
    bh & 0xff,
    bl >>> 24,
    (bl >>> 16) & 0xff,
    (bl >>> 8) & 0xff,
    bl & 0xff,
  );
}

function charsOf(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

export const appliedKeyString = charsOf(appliedKey);
export const metaKeyString = charsOf(metaKey);
export const inodeKeyString = (id: number): string => key1String(Table.inode, id);
/** `nameChars`: the key string of the name's UTF-8 bytes (PathComponent.chars). */
export const direntKeyString = (dir: number, nameChars: string): string => key1String(Table.dirent, dir) + nameChars;
export const chunkListKeyString = (file: number, index: number): string => key2String(Table.chunkList, file, index);
export const placementKeyString = (handle: number): string => key1String(Table.placement, handle);
export const leaseKeyString = (file: number): string => key1String(Table.lease, file);
export const chunkserverKeyString = (id: number): string => key1String(Table.chunkserver, id);
export const sessionKeyString = (client: number): string => key1String(Table.session, client);
export const resultKeyString = (client: number, seq: number): string => key2String(Table.result, client, seq);
export const sessionByUseKeyString = (indexedMs: number, client: number): string =>
  key2String(Table.sessionByUse, indexedMs, client);

/** [gte, lt) covering every key that starts with the table byte and the given numbers. */
export function prefixRange(table: Table, ...ids: number[]): { gte: Uint8Array; lt: Uint8Array } {
  const gte = key(table, ...ids);
  return { gte, lt: prefixEnd(gte) };
}

/** The smallest key greater than every key starting with `prefix`. */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  const out = prefix.slice();
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i]! < 0xff) {
      out[i]! += 1;
      return out.subarray(0, i + 1);
    }
  }
  assert(false, 'prefixEnd of an all-0xff prefix');
}

/** The name part of a directory entry key. */
export function direntName(k: Uint8Array): Uint8Array {
  return k.subarray(1 + U64_BYTES);
}

/** A directory entry's value: the child's inode id and type. */
export const InodeType = { dir: 0, file: 1 } as const;
export type InodeType = 'dir' | 'file';

export function direntValue(child: number, type: InodeType): Uint8Array {
  const out = new Uint8Array(U64_BYTES + 1);
  writeU64(out, 0, child);
  out[U64_BYTES] = InodeType[type];
  return out;
}

export function readDirent(value: Uint8Array): { id: number; type: InodeType } {
  assert(value.length === U64_BYTES + 1, 'malformed directory entry');
  const code = value[U64_BYTES];
  assert(code === InodeType.dir || code === InodeType.file, 'malformed directory entry type');
  return { id: readU64(value, 0), type: code === InodeType.dir ? 'dir' : 'file' };
}
