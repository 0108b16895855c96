/**
 * A sorted set of strings as a list of sorted blocks (each at most BLOCK_MAX long): O(log n + BLOCK_MAX)
 * insert and delete, O(log n + k) ordered range iteration. Used to keep an overlay's buffered keys in order,
 * so a scan inside a large batch does not re-sort every buffered write.
 */

/** Strings per block, at most; a block that grows past it is split in two. */
const BLOCK_MAX = 512;

function lowerBound(xs: readonly string[], x: string): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class SortedStrings {
  /** Invariant: no block is empty; blocks are sorted and every string of block i < every string of block i+1. */
  private blocks: string[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Index of the block that holds (or would hold) `x`. */
  private blockFor(x: string): number {
    let lo = 0;
    let hi = this.blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const block = this.blocks[mid]!;
      if (block[block.length - 1]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Adds `x`; returns false if it was present. */
  add(x: string): boolean {
    if (this.blocks.length === 0) {
      this.blocks.push([x]);
      this.count = 1;
      return true;
    }
    const b = this.blockFor(x);
    const block = this.blocks[b]!;
    const i = lowerBound(block, x);
    if (block[i] === x) return false;
    block.splice(i, 0, x);
    this.count += 1;
    if (block.length > BLOCK_MAX) this.blocks.splice(b + 1, 0, block.splice(BLOCK_MAX >>> 1));
    return true;
  }

  /** Removes `x`; returns false if it was absent. */
  delete(x: string): boolean {
    if (this.blocks.length === 0) return false;
    const b = this.blockFor(x);
    const block = this.blocks[b]!;
    const i = lowerBound(block, x);
    if (block[i] !== x) return false;
    block.splice(i, 1);
    this.count -= 1;
    if (block.length === 0) this.blocks.splice(b, 1);
    return true;
  }

  /** An independent copy. */
  clone(): SortedStrings {
    const copy = new SortedStrings();
    copy.blocks = this.blocks.map((b) => b.slice());
    copy.count = this.count;
    return copy;
  }

  clear(): void {
    this.blocks = [];
    this.count = 0;
  }

  /** The strings s with gte <= s < lt (an undefined bound is open), ascending. */
  *range(gte: string | undefined, lt: string | undefined): Generator<string> {
    if (this.blocks.length === 0) return;
    let b = gte === undefined ? 0 : this.blockFor(gte);
    let i = gte === undefined ? 0 : lowerBound(this.blocks[b]!, gte);
    for (; b < this.blocks.length; b++, i = 0) {
      const block = this.blocks[b]!;
      for (; i < block.length; i++) {
        const x = block[i]!;
        if (lt !== undefined && x >= lt) return;
        yield x;
      }
    }
  }
}
