/**
 * Per-file compression as the replica store applies it: a sealed replica of a compressed file is rewritten
 * as independently compressed `checksumBlockBytes` blocks (store.ts, `pack`), so a range read decompresses
 * only the blocks it covers. Everything above the store (the wire, the write pipeline, CRCs, the client)
 * sees logical bytes only.
 *
 * Block format: lz4-napi's `compressSync` output, an LZ4 block prefixed with its decompressed size (u32
 * little-endian). A block whose compressed form is not strictly smaller than its logical bytes is stored
 * raw; the stored length tells which (stored length == logical length means raw).
 */
import { compressSync, uncompressSync } from 'lz4-napi';
import type { Registry } from 'prom-client';
import { Gauge } from 'prom-client';
import { assert } from '../raft/errors.ts';
import { checksumBlockBytes } from './types.ts';

/** Bytes of the size prefix lz4-napi puts before each compressed block. */
const sizePrefixBytes = 4;

/**
 * The stored form of one logical block: its LZ4 compression if strictly smaller, else the block itself
 * (no copy). The result of a compression is a fresh buffer.
 */
export function packBlock(logical: Uint8Array): Uint8Array {
  assert(logical.length > 0 && logical.length <= checksumBlockBytes, 'packBlock: one non-empty block');
  const packed = compressSync(Buffer.from(logical.buffer, logical.byteOffset, logical.byteLength));
  return packed.length < logical.length ? packed : logical;
}

/**
 * The logical bytes of a stored block of `logicalBytes` bytes, or undefined when the stored bytes are not a
 * valid compressed block of exactly that size (corruption: the caller reports a checksum mismatch). The
 * size prefix is checked before decompressing, so a flipped prefix never makes the decoder allocate.
 */
export function unpackBlock(stored: Uint8Array, logicalBytes: number): Uint8Array | undefined {
  if (stored.length === logicalBytes) return stored;
  if (stored.length < sizePrefixBytes || stored.length > logicalBytes) return undefined;
  const view = new DataView(stored.buffer, stored.byteOffset, stored.byteLength);
  if (view.getUint32(0, true) !== logicalBytes) return undefined;
  try {
    const logical = uncompressSync(Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength));
    return logical.length === logicalBytes ? logical : undefined;
  } catch {
    return undefined;
  }
}

/** Logical and stored bytes of the replicas the store holds compressed (sealed and packed). */
export interface CompressionUsage {
  readonly logicalBytes: number;
  readonly storedBytes: number;
}

/**
 * Gauges of a store's compressed replicas, read at every scrape: logical bytes and the bytes they take on
 * disk (their ratio is the compression ratio).
 */
export function registerCompressionMetrics(registry: Registry, usage: () => CompressionUsage): { logical: Gauge; stored: Gauge } {
  const registers = [registry];
  const logical = new Gauge({
    name: 'rfs_chunkserver_compressed_logical_bytes',
    help: 'Logical bytes of the replicas held LZ4-compressed',
    registers,
    collect(this: Gauge) {
      this.set(usage().logicalBytes);
    },
  });
  const stored = new Gauge({
    name: 'rfs_chunkserver_compressed_stored_bytes',
    help: 'Bytes on disk of the replicas held LZ4-compressed',
    registers,
    collect(this: Gauge) {
      this.set(usage().storedBytes);
    },
  });
  return { logical, stored };
}
