/**
 * The snapshot stream: every key/value pair of the state, in key order, as a sequence of frames.
 *
 *   frame   = u32 big-endian payload length, then the payload (msgpack)
 *   header  = [0, SNAPSHOT_FORMAT]
 *   pairs   = [1, [key, value, key, value, ...]]        keys strictly ascending across the whole stream
 *   trailer = [2, pair count, CRC32C chained over every pairs payload]
 *
 * Each chunk the encoder yields is one frame of at most `chunkBytes` bytes (unless a single pair is larger).
 * The decoder reassembles frames from chunks cut anywhere (so the chunks may be concatenated into one blob
 * and re-split by a transport), validates everything, and throws SnapshotFormatError on anything wrong,
 * including a stream that ends before its trailer: a consumer installing the pairs as they come (Kv.restore)
 * aborts and keeps its old state.
 */
import { crc32c } from '@node-rs/crc32';
import { SnapshotFormatError } from './errors.ts';
import type { KvPair } from './kv.ts';
import { compareBytes } from './kv.ts';
import { packr } from './records.ts';

export const SNAPSHOT_FORMAT = 1;
/** Bytes of one frame's payload, at most, accepted by the decoder (bounds memory on garbage input). */
export const snapshotFrameBytesMax = 64 * 1024 * 1024;

const FRAME_HEADER_BYTES = 4;
/** msgpack overhead of a pairs payload (kind, array headers), at most. */
const PAIRS_OVERHEAD_BYTES = 16;
/** msgpack overhead of one bin value, at most. */
const BIN_OVERHEAD_BYTES = 5;

const Kind = { header: 0, pairs: 1, trailer: 2 } as const;

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

export async function* encodeSnapshot(
  pairs: AsyncIterable<KvPair>,
  chunkBytes: number,
): AsyncGenerator<Uint8Array> {
  yield frame(packr.pack([Kind.header, SNAPSHOT_FORMAT]));
  let batch: Uint8Array[] = [];
  let estimate = FRAME_HEADER_BYTES + PAIRS_OVERHEAD_BYTES;
  let count = 0;
  let crc = 0;
  const flush = (): Uint8Array => {
    const payload = packr.pack([Kind.pairs, batch]);
    crc = crc32c(payload, crc);
    batch = [];
    estimate = FRAME_HEADER_BYTES + PAIRS_OVERHEAD_BYTES;
    return frame(payload);
  };
  for await (const p of pairs) {
    const cost = p.key.length + p.value.length + 2 * BIN_OVERHEAD_BYTES;
    if (batch.length > 0 && estimate + cost > chunkBytes) yield flush();
    batch.push(p.key, p.value);
    estimate += cost;
    count += 1;
  }
  if (batch.length > 0) yield flush();
  yield frame(packr.pack([Kind.trailer, count, crc]));
}

/** Splits a byte stream cut anywhere back into frame payloads. */
class FrameReader {
  private chunks: Uint8Array[] = [];
  private bytes = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  get buffered(): number {
    return this.bytes;
  }

  /** The next complete payload, or undefined if more bytes are needed. */
  next(): Uint8Array | undefined {
    if (this.bytes < FRAME_HEADER_BYTES) return undefined;
    const head = this.peek(FRAME_HEADER_BYTES);
    const length = new DataView(head.buffer, head.byteOffset, FRAME_HEADER_BYTES).getUint32(0);
    if (length > snapshotFrameBytesMax) throw new SnapshotFormatError(`frame of ${length} bytes`);
    if (this.bytes < FRAME_HEADER_BYTES + length) return undefined;
    return this.take(FRAME_HEADER_BYTES + length).subarray(FRAME_HEADER_BYTES);
  }

  private peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    return this.concat(n);
  }

  private take(n: number): Uint8Array {
    const out = this.chunks[0]!.length >= n ? this.chunks[0]!.subarray(0, n) : this.concat(n);
    let left = n;
    while (left > 0) {
      const first = this.chunks[0]!;
      if (first.length <= left) {
        this.chunks.shift();
        left -= first.length;
      } else {
        this.chunks[0] = first.subarray(left);
        left = 0;
      }
    }
    this.bytes -= n;
    return out;
  }

  private concat(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    for (const c of this.chunks) {
      if (at >= n) break;
      const part = c.subarray(0, n - at);
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

function unpack(payload: Uint8Array): unknown[] {
  let raw: unknown;
  try {
    raw = packr.unpack(payload);
  } catch {
    throw new SnapshotFormatError('frame is not msgpack');
  }
  if (!Array.isArray(raw) || raw.length < 2) throw new SnapshotFormatError('frame is not a tagged array');
  return raw as unknown[];
}

/** The pairs of a snapshot stream, validated as they come; throws SnapshotFormatError on any defect. */
export async function* decodeSnapshot(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<KvPair> {
  const reader = new FrameReader();
  let stage: 'header' | 'pairs' | 'done' = 'header';
  let count = 0;
  let crc = 0;
  let lastKey: Uint8Array | undefined;
  for await (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) throw new SnapshotFormatError('chunk is not bytes');
    reader.push(chunk);
    for (let payload = reader.next(); payload !== undefined; payload = reader.next()) {
      const [kind, ...rest] = unpack(payload);
      if (stage === 'done') throw new SnapshotFormatError('data after the trailer');
      if (stage === 'header') {
        if (kind !== Kind.header || rest.length !== 1 || rest[0] !== SNAPSHOT_FORMAT)
          throw new SnapshotFormatError('bad header');
        stage = 'pairs';
      } else if (kind === Kind.pairs) {
        const flat = rest[0];
        if (rest.length !== 1 || !Array.isArray(flat) || flat.length % 2 !== 0)
          throw new SnapshotFormatError('bad pairs frame');
        crc = crc32c(payload, crc);
        for (let i = 0; i < flat.length; i += 2) {
          const key: unknown = flat[i];
          const value: unknown = flat[i + 1];
          if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array))
            throw new SnapshotFormatError('pair is not bytes');
          if (lastKey !== undefined && compareBytes(lastKey, key) >= 0)
            throw new SnapshotFormatError('keys out of order');
          lastKey = key;
          count += 1;
          yield { key, value };
        }
      } else if (kind === Kind.trailer) {
        if (rest.length !== 2 || rest[0] !== count || rest[1] !== crc)
          throw new SnapshotFormatError('trailer does not match the pairs');
        stage = 'done';
      } else {
        throw new SnapshotFormatError(`unknown frame kind ${String(kind)}`);
      }
    }
  }
  if (stage !== 'done' || reader.buffered > 0) throw new SnapshotFormatError('truncated snapshot');
}
