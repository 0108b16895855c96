/**
 * The replica sidecar (`<handle>.meta`, see store.ts): the commit record of a replica on disk. Layout,
 * little-endian: magic u32 "RFSM", format u16, flags u16 (sealed, lz4, packed), handle u64, version u64,
 * length u64, CRC32C of [0, length) u32, block count u32, one CRC32C per `checksumBlockBytes` block, for a
 * packed replica blocks + 1 stored offsets (u32), then a CRC32C of everything before it.
 *
 * A module of its own because two readers parse it: the store (at open) and the client's short-circuit local
 * reads (src/client/local-read.ts), which verify the data file's blocks against it without the chunkserver.
 */
import { crc32c } from '@node-rs/crc32';
import { assert } from '../raft/errors.ts';
import type { Compression } from './types.ts';
import { checksumBlockBytes, chunkSizeBytesMax } from './types.ts';

const sidecarMagic = 0x4d534652; // "RFSM" little-endian
const sidecarFormat = 1;
const sidecarHeaderBytes = 40;
const sidecarTrailerBytes = 4;
const sidecarFlagSealed = 1;
/** The replica's file is lz4-compressed (packed once sealed). */
const sidecarFlagLz4 = 2;
/** The data lives in <handle>.lz4; the block CRCs are followed by blocks + 1 stored offsets (u32). */
const sidecarFlagPacked = 4;
const sidecarFlagsKnown = sidecarFlagSealed | sidecarFlagLz4 | sidecarFlagPacked;
export const sidecarBytesMax = sidecarHeaderBytes + 8 * Math.ceil(chunkSizeBytesMax / checksumBlockBytes) + 4 + sidecarTrailerBytes;

/** What a sidecar records (the store's in-memory replica has these fields). */
export interface SidecarFields {
  readonly handle: number;
  readonly version: number;
  readonly lengthBytes: number;
  readonly sealed: boolean;
  readonly prefixCrc: number;
  /** blockCrcs[k] is the CRC32C of block k; entries past the last block are ignored. */
  readonly blockCrcs: Uint32Array;
  readonly compression: Compression;
  readonly packed: Uint32Array | undefined;
}

export function blockCount(lengthBytes: number): number {
  return Math.ceil(lengthBytes / checksumBlockBytes);
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

export function encodeSidecar(r: SidecarFields): Uint8Array {
  const blocks = blockCount(r.lengthBytes);
  const offsetsBytes = r.packed === undefined ? 0 : (blocks + 1) * 4;
  const bytes = new Uint8Array(sidecarHeaderBytes + blocks * 4 + offsetsBytes + sidecarTrailerBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, sidecarMagic, true);
  view.setUint16(4, sidecarFormat, true);
  const flags =
    (r.sealed ? sidecarFlagSealed : 0) | (r.compression === 'lz4' ? sidecarFlagLz4 : 0) | (r.packed === undefined ? 0 : sidecarFlagPacked);
  view.setUint16(6, flags, true);
  view.setBigUint64(8, BigInt(r.handle), true);
  view.setBigUint64(16, BigInt(r.version), true);
  view.setBigUint64(24, BigInt(r.lengthBytes), true);
  view.setUint32(32, r.prefixCrc, true);
  view.setUint32(36, blocks, true);
  for (let k = 0; k < blocks; k++) view.setUint32(sidecarHeaderBytes + k * 4, r.blockCrcs[k] as number, true);
  if (r.packed !== undefined) {
    assert(r.packed.length === blocks + 1, 'one stored offset per block, plus the end');
    const at = sidecarHeaderBytes + blocks * 4;
    for (let k = 0; k <= blocks; k++) view.setUint32(at + k * 4, r.packed[k] as number, true);
  }
  const body = bytes.subarray(0, bytes.length - sidecarTrailerBytes);
  view.setUint32(body.length, crc32c(body), true);
  return bytes;
}

/** Whether `offsets` is a valid stored-offset table for `lengthBytes` logical bytes; else why not. */
function checkPacked(offsets: Uint32Array, lengthBytes: number): string | undefined {
  if (offsets[0] !== 0) return 'packed offsets do not start at 0';
  for (let k = 0; k + 1 < offsets.length; k++) {
    const stored = (offsets[k + 1] as number) - (offsets[k] as number);
    const logical = Math.min(checksumBlockBytes, lengthBytes - k * checksumBlockBytes);
    if (stored <= 0 || stored > logical) return `packed block ${k} stores ${stored} bytes for ${logical}`;
  }
  return undefined;
}

/** Returns the sidecar, or a reason it is unusable. */
export function decodeSidecar(bytes: Uint8Array): SidecarFields | string {
  if (bytes.length < sidecarHeaderBytes + sidecarTrailerBytes) return `sidecar too short (${bytes.length} bytes)`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const body = bytes.subarray(0, bytes.length - sidecarTrailerBytes);
  if (view.getUint32(body.length, true) !== crc32c(body)) return 'sidecar CRC mismatch';
  if (view.getUint32(0, true) !== sidecarMagic) return 'bad sidecar magic';
  if (view.getUint16(4, true) !== sidecarFormat) return `unknown sidecar format ${view.getUint16(4, true)}`;
  const handle = Number(view.getBigUint64(8, true));
  const version = Number(view.getBigUint64(16, true));
  const lengthBytes = Number(view.getBigUint64(24, true));
  const blocks = view.getUint32(36, true);
  const flags = view.getUint16(6, true);
  if (!isCount(handle) || !isCount(version) || !isCount(lengthBytes) || lengthBytes > chunkSizeBytesMax) {
    return 'sidecar fields out of range';
  }
  const sealed = (flags & sidecarFlagSealed) !== 0;
  const compression: Compression = (flags & sidecarFlagLz4) !== 0 ? 'lz4' : 'none';
  const isPacked = (flags & sidecarFlagPacked) !== 0;
  if ((flags & ~sidecarFlagsKnown) !== 0) return `unknown sidecar flags ${flags}`;
  if (isPacked && (!sealed || compression !== 'lz4')) return 'a packed replica must be sealed and lz4';
  const offsetsBytes = isPacked ? (blocks + 1) * 4 : 0;
  if (blocks !== blockCount(lengthBytes) || bytes.length !== sidecarHeaderBytes + blocks * 4 + offsetsBytes + sidecarTrailerBytes) {
    return 'sidecar block count does not match its length';
  }
  const blockCrcs = new Uint32Array(blocks);
  for (let k = 0; k < blocks; k++) blockCrcs[k] = view.getUint32(sidecarHeaderBytes + k * 4, true);
  let packed: Uint32Array | undefined;
  if (isPacked) {
    packed = new Uint32Array(blocks + 1);
    const at = sidecarHeaderBytes + blocks * 4;
    for (let k = 0; k <= blocks; k++) packed[k] = view.getUint32(at + k * 4, true);
    const bad = checkPacked(packed, lengthBytes);
    if (bad !== undefined) return bad;
  }
  return { handle, version, lengthBytes, sealed, prefixCrc: view.getUint32(32, true), blockCrcs, compression, packed };
}

