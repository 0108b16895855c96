/**
 * Buffer reuse on the data path (pool.ts): the pool's reference counting; the pooled frame decoder gives
 * the same messages as FrameDecoder at any chunking (also with reads landing in place), reusing one receive
 * buffer; and over real TCP a 3-replica pipeline and range reads return exact bytes while payload buffers
 * are recycled (reused more often than allocated) and every one comes back (none leaked, none released
 * twice).
 */
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { DataServer } from '../../src/chunkserver/dataplane/server.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { checksumBlockBytes, readSpanBytes } from '../../src/chunkserver/types.ts';
import { FrameDecoder, PooledFrameDecoder, encodeFrame } from '../../src/chunkserver/dataplane/frame.ts';
import { BufferPool, poolClassBytesMin } from '../../src/chunkserver/dataplane/pool.ts';
import type { Message } from '../../src/chunkserver/dataplane/protocol.ts';
import { readRange } from '../../src/chunkserver/dataplane/read.ts';
import { TcpDataNetwork } from '../../src/chunkserver/dataplane/tcp.ts';
import { PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { patternBytes, startCluster, waitFor } from './dataplane-harness.ts';

void t.test('pool: a buffer returns only when its last reference is released', (t) => {
  const pool = new BufferPool(256 * 1024);
  const a = pool.take(100_000);
  t.equal(a.bytes.length, 128 * 1024, 'rounded up to its power-of-two class');
  t.equal(pool.take(1).bytes.length, poolClassBytesMin);
  a.retain();
  a.release();
  const b = pool.take(100_000);
  t.not(b, a, 'still referenced: not handed out again');
  a.release();
  t.equal(pool.take(128 * 1024), a, 'released: reused');
  t.equal(pool.stats.allocated, 3);
  t.equal(pool.stats.reused, 1);
  const c = pool.take(10);
  c.release();
  t.throws(() => c.release(), { name: 'AssertionError' }, 'releasing twice is a broken invariant');
  t.throws(() => c.retain(), { name: 'AssertionError' }, 'retaining a returned buffer too');
  t.end();
});

const packetArb = fc.record({
  type: fc.constant('packet' as const),
  seq: fc.nat({ max: 1000 }),
  offset: fc.nat({ max: 2 ** 26 }),
  sync: fc.boolean(),
  payload: fc.uint8Array({ minLength: 1, maxLength: 200_000 }).map((b) => Buffer.from(b)),
});
const ackArb = fc.record({ type: fc.constant('ack' as const), seq: fc.nat({ max: 1000 }), replicas: fc.array(fc.record({ id: fc.nat({ max: 9 }) }), { maxLength: 3 }) });
const limits = { frameBytesMax: 256 * 1024 + 4096 + 9, packetBytesMax: 256 * 1024 };

function plain(message: Message): unknown {
  return 'payload' in message ? { ...message, payload: Buffer.from(message.payload).toString('hex') } : message;
}

void t.test('pooled decoder = FrameDecoder at any chunking, in place or through a reused receive buffer', (t) => {
  fc.assert(
    fc.property(fc.array(fc.oneof(packetArb, ackArb), { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 6 }), fc.boolean(), (messages, reads, inPlace) => {
      const stream = Buffer.concat(messages.flatMap((m) => encodeFrame(m, limits)));
      const reference = new FrameDecoder(limits);
      reference.push(stream);
      const expected: unknown[] = [];
      for (let m = reference.next(); m !== undefined; m = reference.next()) expected.push(plain(m));
      const pool = new BufferPool(limits.packetBytesMax);
      const decoder = new PooledFrameDecoder(limits, pool);
      const receive = Buffer.alloc(70_000);
      const got: unknown[] = [];
      let at = 0;
      let step = 0;
      while (at < stream.length) {
        const size = Math.min(reads[step++ % reads.length] ?? 1, stream.length - at);
        const target = inPlace ? decoder.payloadTarget() : null;
        if (target !== null) {
          const n = Math.min(size, target.length);
          stream.copy(target, 0, at, at + n);
          decoder.pushedInPlace(n);
          at += n;
        } else {
          stream.copy(receive, 0, at, at + size);
          decoder.push(receive.subarray(0, size));
          receive.fill(0xee); // the decoder kept nothing of the receive buffer
          at += size;
        }
        for (let f = decoder.next(); f !== undefined; f = decoder.next()) {
          got.push(plain(f.message));
          f.lease?.release();
        }
      }
      t.same(got, expected);
      t.equal(pool.stats.outstanding, 0, 'every payload buffer came back');
    }),
    { numRuns: 60 },
  );
  t.end();
});

void t.test('pooled decoder: bad input is a typed error and releases what it held', (t) => {
  const pool = new BufferPool(limits.packetBytesMax);
  const decoder = new PooledFrameDecoder(limits, pool);
  const good = Buffer.concat(encodeFrame({ type: 'packet', seq: 0, offset: 0, sync: false, payload: Buffer.alloc(1000, 1) }, limits));
  decoder.push(good);
  decoder.push(good.subarray(0, 500)); // a partial frame holds a pooled payload
  t.equal(pool.stats.outstanding, 2);
  const bad = Buffer.alloc(9);
  bad.writeUInt32BE(limits.frameBytesMax + 1, 0);
  const fresh = new PooledFrameDecoder(limits, pool);
  t.throws(() => fresh.push(bad), { code: 'FRAME_TOO_LARGE' });
  t.throws(() => fresh.next(), { code: 'FRAME_TOO_LARGE' }, 'poisoned after');
  decoder.dispose();
  t.equal(pool.stats.outstanding, 0, 'disposing released the undelivered frame and the partial payload');
  t.end();
});

void t.test('tcp: a 3-replica pipeline and range reads are exact while payload buffers are recycled', async (t) => {
  const cluster = await startCluster('tcp', 3);
  t.teardown(() => cluster.close());
  const network = cluster.network as TcpDataNetwork;
  const data = patternBytes(24 * 1024 * 1024 + 12_345, 31);
  const chain = cluster.servers.map((s, i) => ({ id: i + 1, address: s.address }));
  // 256 KiB packets: about a hundred of them per replica, so reuse must dominate allocation.
  const writer = await PipelineWriter.open(network, { handle: 77, version: 1, chain, packetBytes: 256 * 1024 });
  for (let at = 0; at < data.length; at += 3_000_000) await writer.write(data.subarray(at, at + 3_000_000));
  const sealed = await writer.seal();
  t.equal(sealed.length, 3);
  for (let i = 0; i < 3; i++) {
    const back = await readRange(network, cluster.servers[i]!.address, { handle: 77, version: 1, offset: 0, length: data.length });
    t.ok(Buffer.from(back).equals(data), `replica ${i + 1} holds exactly the bytes written`);
  }
  const part = await readRange(network, cluster.servers[2]!.address, { handle: 77, version: 1, offset: 1_000_001, length: 5_000_000 });
  t.ok(Buffer.from(part).equals(data.subarray(1_000_001, 6_000_001)), 'a range read is exact');
  const { stats } = network.pool;
  t.ok(stats.reused > 10 * stats.allocated, `payload buffers reused (${stats.reused}) far more than allocated (${stats.allocated})`);
  await waitFor(() => stats.outstanding === 0, 'every pooled payload buffer to come back');
});

void t.test('store.read into a caller buffer: a view of it, exact; a short buffer is ignored', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rfs-pool-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = await FileChunkStore.open(new NodeDisk(), join(root, 'chunks'), {});
  t.teardown(() => store.close());
  const data = patternBytes(3 * checksumBlockBytes + 777, 5);
  await store.create(1, 1);
  await store.append(1, 1, 0, data);
  const into = Buffer.alloc(readSpanBytes(70_000, 100_000), 0xee);
  t.equal(into.length, 2 * checksumBlockBytes, 'the span is the two whole blocks it touches');
  const got = await store.read(1, 1, 70_000, 100_000, into);
  t.ok(Buffer.from(got).equals(data.subarray(70_000, 170_000)), 'exact bytes');
  t.equal(got.buffer, into.buffer, 'read into the given buffer');
  const short = Buffer.alloc(10);
  const other = await store.read(1, 1, 0, 100_000, short);
  t.not(other.buffer, short.buffer, 'a buffer shorter than the span is not used');
  t.ok(Buffer.from(other).equals(data.subarray(0, 100_000)));
});

void t.test('tcp + file store: concurrent range reads are exact while read buffers are recycled', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rfs-pool-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = await FileChunkStore.open(new NodeDisk(), join(root, 'chunks'), {});
  const network = new TcpDataNetwork();
  const server = await DataServer.start({ id: 1, store, network, address: '127.0.0.1:0' });
  t.teardown(async () => {
    await server.close();
    await store.close();
  });
  const data = patternBytes(6 * 1024 * 1024 + 4321, 9);
  const writer = await PipelineWriter.open(network, { handle: 3, version: 1, chain: [{ id: 1, address: server.address }] });
  await writer.write(data);
  await writer.seal();
  // Ranges at odd offsets, several at once: each must come back exact even though the server reads every
  // piece into a recycled buffer and the client's payload buffers are recycled too.
  const ranges = [0, 1, 65_535, 1_000_003, 2_500_000].map((offset, i) => ({ offset, length: data.length - offset - i * 1000 }));
  for (let round = 0; round < 3; round++) {
    const backs = await Promise.all(ranges.map((r) => readRange(network, server.address, { handle: 3, version: 1, ...r }, Buffer.alloc(r.length))));
    backs.forEach((back, i) => {
      const r = ranges[i]!;
      t.ok(Buffer.from(back).equals(data.subarray(r.offset, r.offset + r.length)), `round ${round}: range at ${r.offset} exact`);
    });
  }
  t.ok(server.readPool.stats.reused > server.readPool.stats.allocated, `read buffers reused (${server.readPool.stats.reused}) more than allocated (${server.readPool.stats.allocated})`);
  await waitFor(() => server.readPool.stats.outstanding === 0 && network.pool.stats.outstanding === 0, 'every read and payload buffer to come back');
});
