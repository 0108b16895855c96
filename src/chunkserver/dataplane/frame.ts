/**
 * Frames on a byte stream. Layout (big-endian):
 *
 *   u32 frameBytes   bytes after this field: 1 + 4 + headerBytes + payload length; at most frameBytesMax
 *   u8  format       1
 *   u32 headerBytes  at most frameHeaderBytesMax
 *   header           the message's fields, msgpack (protocol.ts)
 *   payload          raw bytes (packet and data messages), the rest of the frame
 *
 * The payload is never copied into an encoding: a frame is sent as three buffers (prefix, header, payload).
 * The decoder refuses an oversized frame from its length prefix alone, so a peer can never make it buffer
 * more than frameBytesMax; any malformed input is a typed DataPlaneError, never a crash.
 */
import assert from 'node:assert/strict';
import { DataPlaneError } from './errors.ts';
import { frameHeaderBytesMax, framePrefixBytes } from './limits.ts';
import type { BufferPool, PooledBuffer } from './pool.ts';
import type { Message } from './protocol.ts';
import { decodeMessage, encodeFields, payloadOf } from './protocol.ts';

export const frameFormat = 1;

export interface FrameLimits {
  readonly frameBytesMax: number;
  readonly packetBytesMax: number;
}

/** The buffers of one frame, in order; the payload (if any) is the caller's buffer itself. */
export function encodeFrame(message: Message, limits: FrameLimits): Uint8Array[] {
  const header = encodeFields(message);
  const payload = payloadOf(message);
  const payloadBytes = payload?.length ?? 0;
  if (payloadBytes > limits.packetBytesMax)
    throw new DataPlaneError('FRAME_TOO_LARGE', `payload of ${payloadBytes} bytes exceeds packetBytesMax`);
  assert.ok(header.length <= frameHeaderBytesMax, 'message fields exceed frameHeaderBytesMax');
  const frameBytes = framePrefixBytes - 4 + header.length + payloadBytes;
  if (frameBytes > limits.frameBytesMax)
    throw new DataPlaneError('FRAME_TOO_LARGE', `frame of ${frameBytes} bytes exceeds frameBytesMax`);
  const prefix = Buffer.allocUnsafe(framePrefixBytes);
  prefix.writeUInt32BE(frameBytes, 0);
  prefix.writeUInt8(frameFormat, 4);
  prefix.writeUInt32BE(header.length, 5);
  return payload === undefined || payload.length === 0 ? [prefix, header] : [prefix, header, payload];
}

const emptyPayload = new Uint8Array(0);

/**
 * Incremental decoder: `push` received chunks, then take frames with `next` until it returns undefined.
 * Holds at most one partial frame plus the chunk that completed it. After a throw it is poisoned (the
 * stream has lost framing) and every later call throws the same error.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffset = 0;
  private buffered = 0;
  private failure: DataPlaneError | null = null;

  constructor(private readonly limits: FrameLimits) {}

  /** Bytes received and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): void {
    if (this.failure !== null) throw this.failure;
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.buffered += chunk.length;
  }

  next(): Message | undefined {
    if (this.failure !== null) throw this.failure;
    try {
      return this.take();
    } catch (error) {
      assert.ok(error instanceof DataPlaneError, 'the frame decoder throws only typed errors');
      this.failure = error;
      this.chunks = [];
      this.buffered = 0;
      throw error;
    }
  }

  private take(): Message | undefined {
    if (this.buffered < framePrefixBytes) return undefined;
    const prefix = this.peek(framePrefixBytes);
    const frameBytes = prefix.readUInt32BE(0);
    const format = prefix.readUInt8(4);
    const headerBytes = prefix.readUInt32BE(5);
    if (frameBytes > this.limits.frameBytesMax)
      throw new DataPlaneError('FRAME_TOO_LARGE', `frame of ${frameBytes} bytes exceeds ${this.limits.frameBytesMax}`);
    if (format !== frameFormat) throw new DataPlaneError('MALFORMED_FRAME', `unknown frame format ${format}`);
    if (headerBytes === 0 || headerBytes > frameHeaderBytesMax || headerBytes > frameBytes - 5)
      throw new DataPlaneError('MALFORMED_FRAME', `header length ${headerBytes} does not fit the frame`);
    const payloadBytes = frameBytes - 5 - headerBytes;
    if (payloadBytes > this.limits.packetBytesMax)
      throw new DataPlaneError('FRAME_TOO_LARGE', `payload of ${payloadBytes} bytes exceeds packetBytesMax`);
    if (this.buffered < 4 + frameBytes) return undefined;
    this.consume(framePrefixBytes);
    const header = this.consume(headerBytes);
    const payload = payloadBytes === 0 ? emptyPayload : this.consume(payloadBytes);
    return decodeMessage(header, payload);
  }

  /** The next `length` buffered bytes without consuming them (a copy only if they span chunks). */
  private peek(length: number): Buffer {
    const head = this.chunks[0];
    assert.ok(head !== undefined);
    if (head.length - this.headOffset >= length) return head.subarray(this.headOffset, this.headOffset + length);
    return this.gather(length, false);
  }

  /** Takes the next `length` bytes: a view of the received chunk when they lie in one, else one copy. */
  private consume(length: number): Buffer {
    const head = this.chunks[0];
    assert.ok(head !== undefined && length <= this.buffered);
    if (head.length - this.headOffset >= length) {
      const view = head.subarray(this.headOffset, this.headOffset + length);
      this.advance(length);
      return view;
    }
    return this.gather(length, true);
  }

  private gather(length: number, take: boolean): Buffer {
    const out = Buffer.allocUnsafe(length);
    let written = 0;
    let index = 0;
    let offset = this.headOffset;
    while (written < length) {
      const chunk = this.chunks[index];
      assert.ok(chunk !== undefined);
      const count = Math.min(chunk.length - offset, length - written);
      chunk.copy(out, written, offset, offset + count);
      written += count;
      index += 1;
      offset = 0;
    }
    if (take) this.advance(length);
    return out;
  }

  private advance(length: number): void {
    this.buffered -= length;
    let remaining = length;
    while (remaining > 0) {
      const head = this.chunks[0];
      assert.ok(head !== undefined);
      const available = head.length - this.headOffset;
      if (available > remaining) {
        this.headOffset += remaining;
        return;
      }
      remaining -= available;
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}

/** A decoded message and, when its payload lives in a pooled buffer, that buffer (one reference held). */
export interface DecodedFrame {
  readonly message: Message;
  readonly lease: PooledBuffer | null;
}

/**
 * The receive side of a TCP connection: like FrameDecoder, but every payload lands in a buffer taken from
 * `pool` (one copy, into memory that is reused), never in memory allocated per packet, and the received
 * chunk is not kept after `push` returns, so the caller may reuse it (a socket's `onread` buffer).
 * `payloadTarget()` offers the rest of the current payload as the next read's destination, so bytes read
 * there land in place with no copy at all (`pushedInPlace`).
 *
 * Each frame is returned with its lease: the caller owns that one reference (pool.ts's ownership rule).
 * Frames decoded and not yet taken hold their leases; `dispose()` releases them and the partial payload.
 */
export class PooledFrameDecoder {
  /** Prefix and header bytes of the frame being received (both small, bounded by frameHeaderBytesMax). */
  private readonly head = Buffer.allocUnsafe(framePrefixBytes + frameHeaderBytesMax);
  private headFilled = 0;
  /** Bytes the head needs: the prefix, then prefix + header once the prefix is known. */
  private headNeeded = framePrefixBytes;
  private payloadBytes = 0;
  private payload: PooledBuffer | null = null;
  private payloadFilled = 0;
  /** In the payload phase: the header is complete and the payload is being filled. */
  private inPayload = false;
  private readonly ready: DecodedFrame[] = [];
  /** Wire bytes (prefix, header, payload) of the frames in `ready`. */
  private readyBytes = 0;
  /** Wire bytes of each frame in `ready`, in order. */
  private readonly readySizes: number[] = [];
  private failure: DataPlaneError | null = null;

  constructor(
    private readonly limits: FrameLimits,
    private readonly pool: BufferPool,
  ) {
    assert.ok(pool.bytesMax >= limits.packetBytesMax, 'the pool must hold a full packet');
  }

  /** Bytes received that are not part of a returned frame (a partial frame, and frames not yet taken). */
  get bufferedBytes(): number {
    return this.headFilled + this.payloadFilled + this.readyBytes;
  }

  /** Decodes every complete frame in `chunk` (copying what it keeps); throws a typed error on bad input. */
  push(chunk: Uint8Array): void {
    if (this.failure !== null) throw this.failure;
    try {
      let at = 0;
      while (at < chunk.length) {
        if (this.inPayload) {
          assert.ok(this.payload !== null);
          const take = Math.min(this.payloadBytes - this.payloadFilled, chunk.length - at);
          this.payload.bytes.set(chunk.subarray(at, at + take), this.payloadFilled);
          this.payloadFilled += take;
          at += take;
          if (this.payloadFilled === this.payloadBytes) this.completeFrame();
          continue;
        }
        const take = Math.min(this.headNeeded - this.headFilled, chunk.length - at);
        this.head.set(chunk.subarray(at, at + take), this.headFilled);
        this.headFilled += take;
        at += take;
        if (this.headFilled === this.headNeeded) this.headComplete();
      }
    } catch (error) {
      assert.ok(error instanceof DataPlaneError, 'the frame decoder throws only typed errors');
      this.failure = error;
      this.dispose();
      throw error;
    }
  }

  /** Where the next read may land directly: the unfilled rest of the current payload, if any. */
  payloadTarget(): Uint8Array | null {
    if (this.failure !== null || !this.inPayload || this.payload === null) return null;
    return this.payload.bytes.subarray(this.payloadFilled, this.payloadBytes);
  }

  /** `length` bytes were read into the start of the last `payloadTarget()`. */
  pushedInPlace(length: number): void {
    assert.ok(this.inPayload && this.payload !== null && length <= this.payloadBytes - this.payloadFilled, 'read past the payload target');
    this.payloadFilled += length;
    if (this.payloadFilled === this.payloadBytes) {
      try {
        this.completeFrame();
      } catch (error) {
        assert.ok(error instanceof DataPlaneError, 'the frame decoder throws only typed errors');
        this.failure = error;
        this.dispose();
        throw error;
      }
    }
  }

  /** The next decoded frame; the caller owns its lease. */
  next(): DecodedFrame | undefined {
    if (this.failure !== null) throw this.failure;
    const frame = this.ready.shift();
    if (frame !== undefined) this.readyBytes -= this.readySizes.shift() ?? 0;
    return frame;
  }

  /**
   * Releases every buffer held: frames not taken, and the partial payload unless `recyclePartial` is false
   * (a socket may still read into it: it is then dropped, never reused). The decoder is unusable after.
   */
  dispose(options: { recyclePartial?: boolean } = {}): void {
    for (const frame of this.ready.splice(0)) frame.lease?.release();
    this.readySizes.length = 0;
    this.readyBytes = 0;
    if (options.recyclePartial ?? true) this.payload?.release();
    this.payload = null;
    this.failure ??= new DataPlaneError('CONNECTION_LOST', 'the frame decoder was disposed');
  }

  private headComplete(): void {
    if (this.headNeeded === framePrefixBytes) {
      const frameBytes = this.head.readUInt32BE(0);
      const format = this.head.readUInt8(4);
      const headerBytes = this.head.readUInt32BE(5);
      if (frameBytes > this.limits.frameBytesMax)
        throw new DataPlaneError('FRAME_TOO_LARGE', `frame of ${frameBytes} bytes exceeds ${this.limits.frameBytesMax}`);
      if (format !== frameFormat) throw new DataPlaneError('MALFORMED_FRAME', `unknown frame format ${format}`);
      if (headerBytes === 0 || headerBytes > frameHeaderBytesMax || headerBytes > frameBytes - 5)
        throw new DataPlaneError('MALFORMED_FRAME', `header length ${headerBytes} does not fit the frame`);
      const payloadBytes = frameBytes - 5 - headerBytes;
      if (payloadBytes > this.limits.packetBytesMax)
        throw new DataPlaneError('FRAME_TOO_LARGE', `payload of ${payloadBytes} bytes exceeds packetBytesMax`);
      this.payloadBytes = payloadBytes;
      this.headNeeded = framePrefixBytes + headerBytes;
      return;
    }
    if (this.payloadBytes === 0) {
      this.completeFrame();
      return;
    }
    this.payload = this.pool.take(this.payloadBytes);
    this.payloadFilled = 0;
    this.inPayload = true;
  }

  private completeFrame(): void {
    const header = this.head.subarray(framePrefixBytes, this.headNeeded);
    const wireBytes = this.headNeeded + this.payloadBytes;
    const lease = this.payload;
    const payload = lease === null ? emptyPayload : lease.bytes.subarray(0, this.payloadBytes);
    // Reset first: a malformed header throws below, and the lease then belongs to nobody but this frame.
    this.payload = null;
    this.payloadFilled = 0;
    this.payloadBytes = 0;
    this.inPayload = false;
    this.headFilled = 0;
    this.headNeeded = framePrefixBytes;
    let message: Message;
    try {
      message = decodeMessage(header, payload);
    } catch (error) {
      lease?.release();
      throw error;
    }
    this.ready.push({ message, lease });
    this.readySizes.push(wireBytes);
    this.readyBytes += wireBytes;
  }
}
