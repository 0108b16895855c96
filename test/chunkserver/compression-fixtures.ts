/** Shared by the compression tests. */

/** Deterministic bytes that LZ4 compresses several-fold: runs of one byte with a little noise. */
export function compressible(seed: number, lengthBytes: number, from = 0): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) {
    const x = from + i;
    out[i] = x % 61 < 52 ? ((x >>> 9) + seed) & 0xff : Math.imul(x ^ seed, 0x9e3779b1) >>> 24;
  }
  return out;
}
