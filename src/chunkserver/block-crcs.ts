/**
 * CRC32Cs of appended bytes on the replica's block grid, computed once by the writer and carried in each
 * packet (HDFS does the same): a packet's bytes are cut at every multiple of `checksumBlockBytes` of the
 * chunk offset, and each piece gets its CRC32C. The replica at the end of a write pipeline verifies them
 * against the bytes it received (which passed through every replica before it); the replicas before it store
 * them as they are, so each appended byte is checksummed by the writer and once more by the last replica,
 * not by every replica. A replica whose bytes differ from its stored CRCs (a corruption after it forwarded
 * them) is caught as any flipped bit is: by the read that verifies the block, or by the scrubber.
 */
import { crc32c } from '@node-rs/crc32';
import { crc32cCombine } from './crc-combine.ts';
import { checksumBlockBytes } from './types.ts';

/** How many pieces `lengthBytes` bytes at chunk offset `offset` fall into on the block grid. */
export function gridPieceCount(offset: number, lengthBytes: number): number {
  if (lengthBytes === 0) return 0;
  return Math.floor((offset + lengthBytes - 1) / checksumBlockBytes) - Math.floor(offset / checksumBlockBytes) + 1;
}

/** The CRC32C of each piece of `data` (at chunk offset `offset`) cut on the block grid, in order. */
export function gridCrcs(offset: number, data: Uint8Array): number[] {
  const crcs: number[] = [];
  let at = 0;
  for (const take of gridPieceLengths(offset, data.length)) {
    crcs.push(crc32c(data.subarray(at, at + take)));
    at += take;
  }
  return crcs;
}

/** Each piece's length, for `lengthBytes` bytes at chunk offset `offset` cut on the block grid. */
function* gridPieceLengths(offset: number, lengthBytes: number): Generator<number> {
  for (let at = 0; at < lengthBytes; ) {
    const take = Math.min(checksumBlockBytes - ((offset + at) % checksumBlockBytes), lengthBytes - at);
    yield take;
    at += take;
  }
}

/** The CRC32C of `before ‖ data`, from `crcBefore` (of `before`) and `crcs = gridCrcs(offset, data)`. */
export function crcAfter(crcBefore: number, offset: number, lengthBytes: number, crcs: readonly number[]): number {
  let crc = crcBefore;
  let i = 0;
  for (const take of gridPieceLengths(offset, lengthBytes)) crc = crc32cCombine(crc, crcs[i++]!, take);
  return crc;
}

/** The index of the first piece whose CRC differs from `data`'s own, or -1 when all match. */
export function firstMismatch(offset: number, data: Uint8Array, crcs: readonly number[]): number {
  const actual = gridCrcs(offset, data);
  if (actual.length !== crcs.length) return 0;
  for (let i = 0; i < actual.length; i++) if (actual[i] !== crcs[i]) return i;
  return -1;
}
