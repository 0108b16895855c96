/**
 * Reused buffers for the data path. On this kind of VM the first touch of freshly allocated memory costs
 * more than the disk (milliseconds per MiB), and per-packet allocations are most of the GC work, so packet
 * payloads (received frames, store read spans) live in buffers taken from a `BufferPool` and recycled.
 *
 * Ownership rule: a `PooledBuffer` is reference counted. Whoever takes it holds one reference; every other
 * user that may still read its bytes after the current synchronous step (a store append in flight, a socket
 * write not yet flushed) calls `retain()` first and `release()` when done. The bytes go back to the pool only
 * when the count reaches zero; releasing more often than retained is a broken invariant (assert). A user
 * that never releases costs only garbage (the pool allocates anew), never a reuse while still in use.
 */
import assert from 'node:assert/strict';

/** The smallest size class: smaller requests are rounded up to it. */
export const poolClassBytesMin = 64 * 1024;
/** Free buffers kept per size class at most; the rest go to the garbage collector. */
export const poolFreePerClassMax = 64;

export class PooledBuffer {
  private refs = 1;
  /** Bumped at each recycle: a stale holder's assertions can tell its buffer was reused. */
  generation = 0;

  constructor(
    /** The whole backing buffer (its length is the size class). */
    readonly bytes: Buffer,
    private readonly pool: BufferPool,
  ) {}

  get references(): number {
    return this.refs;
  }

  retain(): this {
    assert.ok(this.refs > 0, 'retain of a pooled buffer already returned to its pool');
    this.refs += 1;
    return this;
  }

  release(): void {
    assert.ok(this.refs > 0, 'pooled buffer released more often than retained');
    this.refs -= 1;
    if (this.refs === 0) this.pool.recycle(this);
  }

  /** @internal the pool hands a recycled buffer out again. */
  reset(): void {
    assert.equal(this.refs, 0, 'a pooled buffer is reused only when nobody holds it');
    this.refs = 1;
  }
}

export interface BufferPoolStats {
  /** Buffers allocated because the class's free list was empty. */
  allocated: number;
  /** Buffers handed out from a free list. */
  reused: number;
  /** Buffers returned to a free list. */
  recycled: number;
  /** Buffers currently out (taken and not yet returned). */
  outstanding: number;
}

/** Power-of-two size classes from poolClassBytesMin up to `bytesMax`; each a bounded LIFO free list. */
export class BufferPool {
  readonly stats: BufferPoolStats = { allocated: 0, reused: 0, recycled: 0, outstanding: 0 };
  private readonly free = new Map<number, PooledBuffer[]>();

  constructor(
    /** The largest buffer the pool hands out. */
    readonly bytesMax: number,
    private readonly freePerClassMax = poolFreePerClassMax,
    /**
     * Makes a new buffer of a size class. Default: `Buffer.allocUnsafeSlow` (a buffer of its own, not a slice
     * of Node's shared pool, so recycling it is ours alone). The data plane's networks pass page-aligned
     * slabs (aligned.ts), so a received packet can be written with O_DIRECT without a copy.
     */
    private readonly allocate: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafeSlow(bytes),
  ) {
    assert.ok(Number.isSafeInteger(bytesMax) && bytesMax > 0, 'bytesMax must be a positive integer');
  }

  /** A buffer of at least `length` bytes (its `bytes` may be longer), holding one reference for the caller. */
  take(length: number): PooledBuffer {
    assert.ok(Number.isSafeInteger(length) && length >= 0 && length <= this.bytesMax, `pool request of ${length} bytes`);
    const size = classOf(length, this.bytesMax);
    this.stats.outstanding += 1;
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused !== undefined) {
      reused.reset();
      this.stats.reused += 1;
      return reused;
    }
    this.stats.allocated += 1;
    return new PooledBuffer(this.allocate(size), this);
  }

  /** @internal called by PooledBuffer.release at zero references. */
  recycle(buffer: PooledBuffer): void {
    this.stats.outstanding -= 1;
    buffer.generation += 1;
    const size = buffer.bytes.length;
    let list = this.free.get(size);
    if (list === undefined) {
      list = [];
      this.free.set(size, list);
    }
    if (list.length >= this.freePerClassMax) return;
    list.push(buffer);
    this.stats.recycled += 1;
  }
}

function classOf(length: number, bytesMax: number): number {
  let size = poolClassBytesMin;
  while (size < length) size *= 2;
  return Math.min(size, Math.max(bytesMax, length));
}
