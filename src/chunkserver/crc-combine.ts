/**
 * CRC32C of a concatenation from the CRC32Cs of its parts (zlib's crc32_combine, for the Castagnoli
 * polynomial): crc(A ‖ B) = crc(A)·x^(8·|B|) ⊕ crc(B) over GF(2), the product applied as a 32×32 bit matrix.
 *
 * The store keeps one CRC32C per 64 KiB block of a replica; the CRC32C of the whole replica (reported at
 * seal, kept in the sidecar) is derived from them when asked (`crcOfBlocks`: about 32 XORs per block)
 * instead of running a second CRC over every appended byte.
 */
import { checksumBlockBytes } from './types.ts';

/** CRC-32C, reflected. */
const polynomial = 0x82f63b78;

/** A linear map on 32-bit CRC registers: row n is the image of bit n. */
type Operator = Uint32Array;

function apply(op: Operator, vector: number): number {
  let sum = 0;
  for (let i = 0, v = vector >>> 0; v !== 0; i++, v >>>= 1) if ((v & 1) !== 0) sum ^= op[i]!;
  return sum >>> 0;
}

/** The operator doing `b`, then `a`. */
function compose(a: Operator, b: Operator): Operator {
  const out = new Uint32Array(32);
  for (let n = 0; n < 32; n++) out[n] = apply(a, b[n]!);
  return out;
}

/** The operator that feeds one zero byte through the CRC register. */
function oneZeroByte(): Operator {
  let op: Operator = new Uint32Array(32);
  op[0] = polynomial;
  for (let n = 1; n < 32; n++) op[n] = (1 << (n - 1)) >>> 0;
  for (let i = 0; i < 3; i++) op = compose(op, op); // one bit → 2 → 4 → 8 bits
  return op;
}

const zeroByte = oneZeroByte();

/** The operator that feeds `bytes` zero bytes through the register (binary powers; log2(bytes) squarings). */
export function zerosOperator(bytes: number): Operator {
  let result: Operator | null = null;
  let power = zeroByte;
  for (let k = bytes; k > 0; k = Math.floor(k / 2)) {
    if (k % 2 === 1) result = result === null ? power : compose(power, result);
    if (k > 1) power = compose(power, power);
  }
  if (result !== null) return result;
  const identity = new Uint32Array(32);
  for (let n = 0; n < 32; n++) identity[n] = (1 << n) >>> 0;
  return identity;
}

const wholeBlock = zerosOperator(checksumBlockBytes);

/** crc32c(A ‖ B) from crc32c(A), crc32c(B) and |B| (a whole block's operator is kept: the common case). */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return (apply(lengthB === checksumBlockBytes ? wholeBlock : zerosOperator(lengthB), crcA) ^ crcB) >>> 0;
}

/**
 * The CRC32C of `lengthBytes` bytes whose `checksumBlockBytes` blocks have the CRC32Cs `blockCrcs` (the
 * last block may be partial). 0 for no bytes, as crc32c of an empty buffer.
 */
export function crcOfBlocks(blockCrcs: Uint32Array, lengthBytes: number): number {
  const fullBlocks = Math.floor(lengthBytes / checksumBlockBytes);
  let crc = 0;
  for (let k = 0; k < fullBlocks; k++) crc = (apply(wholeBlock, crc) ^ blockCrcs[k]!) >>> 0;
  const tail = lengthBytes - fullBlocks * checksumBlockBytes;
  if (tail > 0) crc = crc32cCombine(crc, blockCrcs[fullBlocks]!, tail);
  return crc;
}
