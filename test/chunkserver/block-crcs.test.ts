/**
 * Packet CRCs on the block grid (src/chunkserver/block-crcs.ts): the writer computes them once, the store
 * keeps them instead of checksumming again, and the chain's last replica refuses a packet whose bytes do
 * not match them.
 */
import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import t from 'tap';
import { crcAfter, firstMismatch, gridCrcs, gridPieceCount } from '../../src/chunkserver/block-crcs.ts';
import { crc32cCombine } from '../../src/chunkserver/crc-combine.ts';
import { decodeMessage } from '../../src/chunkserver/dataplane/protocol.ts';
import { PipelineFailedError, PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { checksumBlockBytes } from '../../src/chunkserver/types.ts';
import { patternBytes, startCluster, transportKinds } from './dataplane-harness.ts';

const B = checksumBlockBytes;

void t.test('gridCrcs cuts on the block grid; the pieces combine to the CRC of the whole', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 3 * B }), fc.integer({ min: 0, max: 5 * B }), fc.integer({ min: 1, max: 255 }), (offset, length, seed) => {
      const data = patternBytes(length, seed);
      const crcs = gridCrcs(offset, data);
      if (crcs.length !== gridPieceCount(offset, length)) return false;
      let whole = 0;
      for (let i = 0, at = 0; i < crcs.length; i++) {
        const end = Math.min(length, at + B - ((offset + at) % B));
        if (crcs[i] !== crc32c(data.subarray(at, end))) return false;
        // Every piece but the first starts on the grid.
        if (i > 0 && (offset + at) % B !== 0) return false;
        whole = crc32cCombine(whole, crcs[i]!, end - at);
        at = end;
      }
      return whole === crc32c(data) && crcAfter(0, offset, length, crcs) === whole && firstMismatch(offset, data, crcs) === -1;
    }),
    { numRuns: 200 },
  );
  const data = patternBytes(3 * B, 1);
  const crcs = gridCrcs(0, data);
  data[2 * B + 7] = data[2 * B + 7]! ^ 1;
  t.equal(firstMismatch(0, data, crcs), 2, 'a flipped bit is found in its piece');
  t.end();
});

void t.test('the store keeps given CRCs: the same checksums and verified reads as computing them', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rfs-block-crcs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await FileChunkStore.open(new NodeDisk(), dir, { chunkSizeBytes: 8 * B });
  const data = patternBytes(5 * B + 1234, 7);
  // Appends of uneven sizes, so pieces start mid-block and the given CRCs are combined into partial blocks.
  const cuts = [0, 1000, B, B + 1, 3 * B - 17, 3 * B, data.length];
  await store.create(1, 1);
  await store.create(2, 1);
  for (let i = 1; i < cuts.length; i++) {
    const piece = data.subarray(cuts[i - 1], cuts[i]);
    await store.append(1, 1, cuts[i - 1]!, piece, gridCrcs(cuts[i - 1]!, piece));
    await store.append(2, 1, cuts[i - 1]!, piece);
  }
  const given = await store.seal(1, 1, data.length);
  const computed = await store.seal(2, 1, data.length);
  t.equal(given.checksum, crc32c(data), 'the sealed checksum from given CRCs is the CRC of the bytes');
  t.equal(given.checksum, computed.checksum, 'and the same as from CRCs the store computed');
  t.ok(Buffer.from(await store.read(1, 1, B - 5, 3 * B)).equals(data.subarray(B - 5, 4 * B - 5)), 'reads verify against the given CRCs');
  await store.close?.();
});

void t.test('packet crcs on the wire: a wrong count or a non-u32 is a malformed frame', (t) => {
  const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });
  const payload = patternBytes(B + 10, 3);
  const decode = (crcs: unknown): unknown => decodeMessage(packr.pack({ type: 'packet', seq: 0, offset: B - 5, sync: false, crcs }), payload);
  t.same((decode(gridCrcs(B - 5, payload)) as { crcs: number[] }).crcs, gridCrcs(B - 5, payload), 'the right count decodes');
  for (const bad of [[1, 2], [1, 2, 3, 4], [1, -1, 2], [1, 2 ** 32, 3], ['a', 1, 2], 'x']) {
    t.throws(() => decode(bad), { name: 'DataPlaneError', code: 'MALFORMED_FRAME' }, `refused: ${JSON.stringify(bad)}`);
  }
  t.end();
});

for (const kind of transportKinds) {
  void t.test(`${kind}: the chain's last replica refuses bytes that do not match the writer's CRCs`, async (t) => {
    const cluster = await startCluster(kind, 3);
    t.teardown(() => cluster.close());
    const data = patternBytes(4 * B, 5);
    const good = await PipelineWriter.open(cluster.network, { handle: 1, version: 1, chain: cluster.chain(), packetBytes: 2 * B });
    await good.write(data, { crcs: gridCrcs(0, data) });
    const sealed = await good.seal();
    t.ok(sealed.every((r) => r.checksum === crc32c(data)), 'right CRCs: every replica seals with the checksum of the bytes');

    const crcs = gridCrcs(0, data);
    crcs[3] = (crcs[3]! ^ 1) >>> 0; // as if the bytes of block 3 changed on the way
    const bad = await PipelineWriter.open(cluster.network, { handle: 2, version: 1, chain: cluster.chain(), packetBytes: 2 * B });
    const outcome = await bad.write(data, { crcs }).then(() => bad.flush()).then(
      () => null,
      (error: unknown) => error,
    );
    t.ok(outcome instanceof PipelineFailedError, 'the write fails');
    const failure = outcome as PipelineFailedError;
    t.equal(failure.code, 'CHECKSUM_MISMATCH');
    t.equal(failure.failedIndex, 2, 'reported by the chain end');
    t.equal(failure.ackedLengthBytes, 2 * B, 'the first packet (good) was acknowledged, the second not');
  });
}
