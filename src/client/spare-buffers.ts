/**
 * `SpareBuffers`: large buffers a client's writers and read sessions are done with, kept for the next one.
 *
 * Why: the first touch of fresh memory costs a page fault per 4 KiB, and on the benchmark machine (a PVM
 * guest) that is about 3 ms per MiB: 60 times a copy into memory already touched. A buffer of 1 MiB or more
 * is its own mapping (glibc maps large allocations and unmaps them when freed), so memory a writer dropped is
 * fresh again for the next one. Without sharing, every file written paid for its staging buffers (up to
 * ~34 MiB for a large file: ~0.1 s of CPU) and every file read through a session for its read-ahead (16 MiB).
 * One `SpareBuffers` per client lets them all reuse the same warm memory.
 *
 * Rules:
 *  - only memory `take` made comes back: `give` takes any view of such a buffer from offset 0 and keeps the
 *    whole buffer (anything else is dropped, so a slice of Node's shared pool or a caller's memory is never
 *    handed out); a buffer given back while kept is a bug (assert);
 *  - the caller gives a buffer back only when nothing (a socket write, a read in flight) still uses it, and
 *    touches neither it nor any view of it after;
 *  - at most `bytesMax` are kept; past that, a buffer given back is left to the garbage collector.
 */
import { assert } from '../raft/errors.ts';

/** Spare bytes a client keeps by default: the staging of one large write and the read-ahead of a few reads. */
export const spareBytesMaxDefault = 64 * 1024 * 1024;

export interface SpareBufferStats {
  /** Buffers made fresh (each costs page faults on first touch). */
  allocated: number;
  /** Buffers handed out again. */
  reused: number;
  /** Buffers given back and kept. */
  kept: number;
  /** Buffers given back and dropped (over bytesMax, or not a whole buffer). */
  dropped: number;
}

export class SpareBuffers {
  /** Kept buffers by size, most recently given back last (LIFO: the warmest first). */
  private readonly bySize = new Map<number, Buffer[]>();
  private bytes = 0;
  /** Backing stores `take` made (only these come back). */
  private readonly ours = new WeakSet<ArrayBufferLike>();
  /** Backing stores kept now (a second give of one is a bug). */
  private readonly kept = new WeakSet<ArrayBufferLike>();
  readonly stats: SpareBufferStats = { allocated: 0, reused: 0, kept: 0, dropped: 0 };

  constructor(readonly bytesMax: number = spareBytesMaxDefault) {
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 0)
      throw new RangeError(`bytesMax must be a non-negative integer, got ${bytesMax}`);
  }

  /** Bytes kept now. */
  get keptBytes(): number {
    return this.bytes;
  }

  /** A buffer of exactly `size` bytes (contents undefined): a kept one when there is one, else a new one. */
  take(size: number): Buffer {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`a spare buffer of ${size} bytes`);
    const kept = this.bySize.get(size)?.pop();
    if (kept !== undefined) {
      this.kept.delete(kept.buffer);
      this.bytes -= size;
      this.stats.reused++;
      return kept;
    }
    this.stats.allocated++;
    // Its own backing store (never a slice of Node's shared pool), so that giving it back is safe.
    const made = Buffer.allocUnsafeSlow(size);
    this.ours.add(made.buffer);
    return made;
  }

  /**
   * Gives back the buffer `view` starts (a view from offset 0 of a buffer `take` made; anything else is
   * dropped). The caller must not touch the buffer, or any view of it, again.
   */
  give(view: Uint8Array): void {
    const backing = view.buffer;
    const size = backing.byteLength;
    if (view.byteOffset === 0 && this.ours.has(backing))
      assert(!this.kept.has(backing), 'a spare buffer given back twice');
    if (view.byteOffset !== 0 || !this.ours.has(backing) || this.bytes + size > this.bytesMax) {
      this.stats.dropped++;
      return;
    }
    this.kept.add(backing);
    let list = this.bySize.get(size);
    if (list === undefined) {
      list = [];
      this.bySize.set(size, list);
    }
    list.push(Buffer.from(backing, 0, size));
    this.bytes += size;
    this.stats.kept++;
  }
}
