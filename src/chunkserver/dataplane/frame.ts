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
