/**
 * The data workload's file contents: a pure function of (seed, path), so the checkers know every expected
 * byte without storing what was written. Bytes come from a 32-bit xorshift stream seeded by the pair.
 */
import { hashString32 } from './prng.ts';

/** The expected bytes of `path` in the run of `seed`: `sizeBytes` long. */
export function expectedContent(seed: number, path: string, sizeBytes: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(sizeBytes / 4));
  let x = hashString32(path, seed >>> 0) | 1;
  // lz4 files get runs of 8 equal words, so their replicas really compress (others stay incompressible).
  const run = compressionOfPath(path) === 'lz4' ? 8 : 1;
  for (let i = 0; i < words.length; i++) {
    if (i % run === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
    }
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer, 0, sizeBytes);
}

/**
 * The compression the data workload gives a file: every second file of each writer (`/w<w>.<n>`, n even)
 * is lz4. Decided by the path, not the PRNG, so the workload's random draws are unchanged.
 */
export function compressionOfPath(path: string): 'none' | 'lz4' {
  const n = Number(path.slice(path.lastIndexOf('.') + 1));
  return Number.isSafeInteger(n) && n > 0 && n % 2 === 0 ? 'lz4' : 'none';
}

/** The first offset where `actual` differs from `expected[at..]`, or -1 when equal over actual's length. */
export function firstDifference(actual: Uint8Array, expected: Uint8Array, at: number): number {
  for (let i = 0; i < actual.length; i++) {
    if (at + i >= expected.length || actual[i] !== expected[at + i]) return at + i;
  }
  return -1;
}
