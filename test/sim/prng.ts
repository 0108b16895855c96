/**
 * A small, fast, seeded PRNG (sfc32) that splits into independent named streams.
 *
 * Invariant: a stream's sequence depends only on the root seed and the stream's path of names, never on how
 * many numbers other streams (or its parent) have drawn. Adding a draw to the network stream therefore does
 * not perturb the disk stream, which keeps replays stable while the simulator evolves.
 */
import type { RandomSource } from '../../src/raft/config.ts';

const UINT32_RANGE = 0x1_0000_0000;

/** 32-bit string hash (FNV-1a followed by a murmur3 finaliser), for deriving stream seeds. */
export function hashString32(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(input: number): number {
  let h = input >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Prng implements RandomSource {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  private constructor(
    private readonly rootSeed: number,
    /** The stream's name path from the root, e.g. "/network" or "/raft/3/2". */
    readonly path: string,
  ) {
    this.a = hashString32(`${path}#a`, rootSeed);
    this.b = hashString32(`${path}#b`, rootSeed ^ 0x9e3779b9);
    this.c = hashString32(`${path}#c`, rootSeed ^ 0x7f4a7c15);
    this.d = 1;
    // Warm up: sfc32 needs a few rounds before its output is well mixed.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  static fromSeed(seed: number): Prng {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
    // Fold high bits in so seeds above 2^32 still differ.
    const folded = (seed % UINT32_RANGE) ^ Math.floor(seed / UINT32_RANGE);
    return new Prng(folded >>> 0, '');
  }

  /** An independent stream named `name` under this one. */
  split(name: string): Prng {
    return new Prng(this.rootSeed, `${this.path}/${name}`);
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.nextUint32() / UINT32_RANGE;
  }

  /** An integer in [0, maxExclusive). maxExclusive must be a positive integer <= 2^32. */
  int(maxExclusive: number): number {
    if (!Number.isInteger(maxExclusive) || maxExclusive <= 0 || maxExclusive > UINT32_RANGE) {
      throw new RangeError(`int(maxExclusive): bad bound ${maxExclusive}`);
    }
    return Math.floor(this.float() * maxExclusive);
  }

  /** An integer in [min, max], both inclusive. */
  intBetween(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  /** A float in [min, max). */
  floatBetween(min: number, max: number): number {
    return min + this.float() * (max - min);
  }

  chance(probability: number): boolean {
    return probability > 0 && this.float() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  /** An exponentially distributed delay with the given mean (memoryless fault arrivals). */
  exponential(mean: number): number {
    return -Math.log(1 - this.float()) * mean;
  }

  /** Fisher-Yates shuffle into a new array. */
  shuffled<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = out[i] as T;
      out[i] = out[j] as T;
      out[j] = tmp;
    }
    return out;
  }
}
