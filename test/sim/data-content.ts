/**
 * The data workload's file contents: a pure function of (seed, path), so the checkers know every expected
 * byte without storing what was written. Bytes come from a 32-bit xorshift stream seeded by the pair.
 */
import { hashString32 } from './prng.ts';

/** The expected bytes of `path` in the run of `seed`: `sizeBytes` long. */
export function expectedContent(seed: number, path: string, sizeBytes: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(sizeBytes / 4));
  let x = hashString32(path, seed >>> 0) | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer, 0, sizeBytes);
}

/** The first offset where `actual` differs from `expected[at..]`, or -1 when equal over actual's length. */
export function firstDifference(actual: Uint8Array, expected: Uint8Array, at: number): number {
  for (let i = 0; i < actual.length; i++) {
    if (at + i >= expected.length || actual[i] !== expected[at + i]) return at + i;
  }
  return -1;
}
