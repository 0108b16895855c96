/**
 * Page-aligned memory, for O_DIRECT writes straight from the buffers the data plane receives packets into.
 *
 * Node buffers carry no alignment guarantee, so aligned memory comes from a WebAssembly.Memory, whose
 * backing store the engine maps page-aligned. Memory made here is remembered (a WeakSet of backing stores),
 * so a later user can ask whether a view of it starts on a page (`isPageAligned`) without knowing where it
 * came from: the disk writes such a view directly, and copies anything else into aligned staging first.
 */

/** The page size O_DIRECT aligns to on the file systems we run on (ext4, xfs on 4 KiB-sector disks). */
export const pageBytes = 4096;
/** A WebAssembly.Memory grows in pages of 64 KiB: aligned allocations are rounded up to it. */
const wasmPageBytes = 64 * 1024;

/** The engine's WebAssembly.Memory (the project's TypeScript libs do not declare WebAssembly). */
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } })
  .WebAssembly.Memory;

const alignedBackings = new WeakSet<ArrayBufferLike>();

/** `bytes` of fresh, zeroed, page-aligned memory (its own backing store, never shared with Node's pool). */
export function allocateAligned(bytes: number): Buffer {
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new RangeError(`aligned allocation of ${bytes} bytes`);
  const pages = Math.ceil(bytes / wasmPageBytes);
  const backing = new WasmMemory({ initial: pages, maximum: pages }).buffer;
  alignedBackings.add(backing);
  return Buffer.from(backing, 0, bytes);
}

/** Whether `view` lies in memory made by allocateAligned and starts on a page boundary. */
export function isPageAligned(view: Uint8Array): boolean {
  return view.byteOffset % pageBytes === 0 && alignedBackings.has(view.buffer);
}

/**
 * Hands out page-aligned buffers carved from slabs of `slabBytes` (one WebAssembly.Memory each, so there are
 * few of them: each reserves address space). Every buffer starts on a page; a request larger than a slab gets
 * a slab of its own. A slab's memory is freed by the garbage collector once no buffer of it is referenced.
 */
export class AlignedSlabs {
  private slab: Buffer | null = null;
  private used = 0;
  /** Buffers that had to be ordinary (unaligned) memory. */
  fallbacks = 0;

  constructor(
    readonly slabBytes: number,
    /** Makes page-aligned memory (tests inject a refusing one). */
    private readonly allocateSlab: (bytes: number) => Buffer = allocateAligned,
  ) {
    if (!Number.isSafeInteger(slabBytes) || slabBytes < pageBytes) throw new RangeError(`slab of ${slabBytes} bytes`);
  }

  /**
   * A buffer of `bytes`. Should the engine refuse another WebAssembly.Memory (address space), it is an
   * ordinary Node buffer instead: still correct, only written through staging (`fallbacks` counts them).
   */
  allocate(bytes: number): Buffer {
    const span = Math.ceil(bytes / pageBytes) * pageBytes;
    try {
      if (span > this.slabBytes) return this.allocateSlab(bytes);
      if (this.slab === null || this.used + span > this.slab.length) {
        this.slab = this.allocateSlab(this.slabBytes);
        this.used = 0;
      }
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      this.fallbacks += 1;
      return Buffer.allocUnsafeSlow(bytes);
    }
    const buffer = this.slab.subarray(this.used, this.used + bytes);
    this.used += span;
    return buffer;
  }
}
