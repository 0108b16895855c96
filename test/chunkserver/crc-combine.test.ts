/**
 * CRC32C combination (src/chunkserver/crc-combine.ts) against @node-rs/crc32 over whole buffers: any split
 * point, and whole replicas of any length from their 64 KiB block CRCs.
 */
import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import t from 'tap';
import { crc32cCombine, crcOfBlocks } from '../../src/chunkserver/crc-combine.ts';
import { checksumBlockBytes } from '../../src/chunkserver/types.ts';
import { patternBytes } from './dataplane-harness.ts';

void t.test('crc(A ‖ B) from crc(A), crc(B) and |B|, at any split', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat(), (bytes, at) => {
      const split = bytes.length === 0 ? 0 : at % (bytes.length + 1);
      const a = bytes.subarray(0, split);
      const b = bytes.subarray(split);
      return crc32cCombine(crc32c(Buffer.from(a)), crc32c(Buffer.from(b)), b.length) === crc32c(Buffer.from(bytes));
    }),
    { numRuns: 300 },
  );
  t.equal(crc32cCombine(0x12345678, 0, 0), 0x12345678, 'nothing appended');
  t.end();
});

void t.test('the CRC of a replica from its block CRCs, for lengths around block edges', (t) => {
  const data = patternBytes(5 * checksumBlockBytes + 333, 7);
  const B = checksumBlockBytes;
  for (const length of [0, 1, B - 1, B, B + 1, 2 * B, 3 * B + 17, 5 * B, 5 * B + 333]) {
    const blocks = new Uint32Array(Math.ceil(length / B));
    for (let k = 0; k < blocks.length; k++) blocks[k] = crc32c(data.subarray(k * B, Math.min(length, (k + 1) * B)));
    t.equal(crcOfBlocks(blocks, length), crc32c(data.subarray(0, length)), `${length} bytes`);
  }
  t.end();
});
