/**
 * Frames and the connection edge: round trips of every message through the decoder at any chunking;
 * random bytes never crash the decoder (only typed errors); malformed, oversized or out-of-place frames on
 * a live server end that connection with a typed error while the server keeps serving; a peer that
 * ignores the window is simply not read.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import net from 'node:net';
import t from 'tap';
import { DataPlaneError } from '../../src/chunkserver/dataplane/errors.ts';
import { FrameDecoder, encodeFrame } from '../../src/chunkserver/dataplane/frame.ts';
import { defaultDataPlaneLimits } from '../../src/chunkserver/dataplane/limits.ts';
import type { Message } from '../../src/chunkserver/dataplane/protocol.ts';
import { readRange } from '../../src/chunkserver/dataplane/read.ts';
import { parseAddress } from '../../src/chunkserver/dataplane/tcp.ts';
import { PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import type { MemoryStoreHooks } from './memory-store.ts';
import { patternBytes, settle, startCluster, transportKinds, waitFor } from './dataplane-harness.ts';

const limits = { frameBytesMax: 70_000, packetBytesMax: 64 * 1024 };
const nat = fc.nat({ max: 2 ** 40 });
const codeArb = fc.constantFrom('NO_SUCH_REPLICA', 'STALE_VERSION', 'CHECKSUM_MISMATCH', 'BAD_OFFSET', 'MALFORMED_FRAME' as const);
const ackArb = fc.oneof(
  fc.record({ id: nat }),
  fc.record({ id: nat, lengthBytes: nat, checksum: fc.nat({ max: 0xffff_ffff }) }),
);
const payloadArb = fc.uint8Array({ maxLength: 3000 }).map((bytes) => Buffer.from(bytes));
const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    type: fc.constant('setup' as const),
    handle: nat,
    version: nat,
    targetId: nat,
    mode: fc.constantFrom('create' as const, 'resume' as const),
    fromVersion: nat,
    offset: nat,
    chain: fc.array(fc.record({ id: nat, address: fc.string({ maxLength: 40 }) }), { maxLength: 4 }),
  }),
  fc.record({ type: fc.constant('setup-ack' as const), replicas: fc.array(ackArb, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('packet' as const), seq: nat, offset: nat, sync: fc.boolean(), payload: payloadArb }),
  fc.record({ type: fc.constant('seal' as const), seq: nat, lengthBytes: nat }),
  fc.record({ type: fc.constant('ack' as const), seq: nat, replicas: fc.array(ackArb, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('failure' as const), index: nat, id: nat, code: codeArb, detail: fc.string({ maxLength: 100 }) }),
  fc.record({ type: fc.constant('read' as const), handle: nat, version: nat, offset: nat, length: nat }),
  fc.record({ type: fc.constant('data' as const), offset: nat, last: fc.boolean(), payload: payloadArb }),
  fc.record({ type: fc.constant('error' as const), code: codeArb, detail: fc.string({ maxLength: 100 }) }),
  fc.record({ type: fc.constant('local-read' as const), handle: nat, version: nat }),
  fc.record({
    type: fc.constant('local-replica' as const),
    dataPath: fc.string({ maxLength: 200 }),
    metaPath: fc.string({ maxLength: 200 }),
    tokenPath: fc.string({ maxLength: 200 }),
    token: fc.string({ maxLength: 40 }),
  }),
);

function concat(parts: readonly Uint8Array[]): Buffer {
  return Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length)));
}

/** Comparable form: payloads as plain arrays. */
function plain(message: Message): unknown {
  return 'payload' in message ? { ...message, payload: [...message.payload] } : message;
}

void t.test('every message round-trips through the decoder, whatever the chunking', (t) => {
  fc.assert(
    fc.property(fc.array(messageArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat({ max: 5000 }), { maxLength: 8 }), (messages, cuts) => {
      const bytes = concat(messages.flatMap((m) => encodeFrame(m, limits)));
      const decoder = new FrameDecoder(limits);
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const decoded: unknown[] = [];
      let start = 0;
      for (const point of [...points, bytes.length]) {
        decoder.push(bytes.subarray(start, point));
        start = point;
        for (let m = decoder.next(); m !== undefined; m = decoder.next()) decoded.push(plain(m));
      }
      t.same(decoded, messages.map(plain));
      t.equal(decoder.bufferedBytes, 0);
    }),
    { numRuns: 300 },
  );
  t.end();
});

void t.test('the payload is sent as the caller buffer (no copy) and received as a view when it can be', (t) => {
  const payload = Buffer.from(patternBytes(1000, 9));
  const parts = encodeFrame({ type: 'packet', seq: 1, offset: 0, sync: false, payload }, limits);
  t.equal(parts[2], payload, 'the third buffer is the payload itself');
  const decoder = new FrameDecoder(limits);
  const wire = concat(parts);
  decoder.push(wire);
  const message = decoder.next();
  t.ok(message?.type === 'packet' && message.payload.buffer === wire.buffer, 'decoded payload is a view of the received chunk');
  t.end();
});

void t.test('random bytes into the decoder: typed errors or frames, never a crash', (t) => {
  let typedErrors = 0;
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 6 }), fc.boolean(), (chunks, validPrefix) => {
      const decoder = new FrameDecoder(limits);
      // Half the runs start with a valid-looking prefix (format 1, small lengths) so the header parser is reached.
      if (validPrefix && chunks[0] !== undefined && chunks[0].length >= 9) {
        const head = Buffer.from(chunks[0]);
        head.writeUInt32BE(Math.min(head.length - 4, 200), 0);
        head.writeUInt8(1, 4);
        head.writeUInt32BE(Math.max(1, Math.min(head.length - 9, 40)), 5);
        chunks[0] = head;
      }
      try {
        for (const chunk of chunks) {
          decoder.push(chunk);
          while (decoder.next() !== undefined);
        }
      } catch (error) {
        if (!(error instanceof DataPlaneError) || !['MALFORMED_FRAME', 'FRAME_TOO_LARGE'].includes(error.code)) throw error;
        typedErrors += 1;
        t.throws(() => decoder.next(), { code: error.code }, 'a failed decoder stays failed');
      }
    }),
    { numRuns: 2000 },
  );
  t.ok(typedErrors > 0, `the fuzzer reached the error paths (${typedErrors} runs)`);
  t.end();
});

void t.test('specific malformed frames get specific codes', (t) => {
  const decode = (bytes: Buffer) => {
    const decoder = new FrameDecoder(limits);
    decoder.push(bytes);
    return decoder.next();
  };
  const frame = (header: Buffer, payload = Buffer.alloc(0), format = 1) => {
    const prefix = Buffer.alloc(9);
    prefix.writeUInt32BE(5 + header.length + payload.length, 0);
    prefix.writeUInt8(format, 4);
    prefix.writeUInt32BE(header.length, 5);
    return Buffer.concat([prefix, header, payload]);
  };
  const good = concat(encodeFrame({ type: 'seal', seq: 1, lengthBytes: 5 }, limits));
  const header = good.subarray(9);
  t.same(decode(good), { type: 'seal', seq: 1, lengthBytes: 5 });
  t.throws(() => decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 1])), { code: 'FRAME_TOO_LARGE' });
  t.throws(() => decode(frame(header, Buffer.alloc(0), 2)), { code: 'MALFORMED_FRAME' }, 'unknown format');
  t.throws(() => decode(frame(Buffer.from([0xc1]))), { code: 'MALFORMED_FRAME' }, 'not msgpack');
  t.throws(() => decode(frame(header, Buffer.from([1, 2]))), { code: 'MALFORMED_FRAME' }, 'payload on a seal');
  const localRead = concat(encodeFrame({ type: 'local-read', handle: 1, version: 2 }, limits));
  t.same(decode(localRead), { type: 'local-read', handle: 1, version: 2 });
  t.throws(() => decode(frame(Buffer.from(new Packr().pack({ type: 'local-read', handle: 1 })))), { code: 'MALFORMED_FRAME' }, 'local-read without a version');
  const longPath = { type: 'local-replica', dataPath: 'x'.repeat(4097), metaPath: '/m', tokenPath: '/t', token: 'k' };
  t.throws(() => decode(frame(Buffer.from(new Packr().pack(longPath)))), { code: 'MALFORMED_FRAME' }, 'a path longer than PATH_MAX');
  const packet = concat(encodeFrame({ type: 'packet', seq: 0, offset: 0, sync: false, payload: Buffer.alloc(10) }, limits));
  const badPacket = Buffer.from(packet);
  t.ok(decode(badPacket));
  const wrongLengths = Buffer.from(good);
  wrongLengths.writeUInt32BE(100, 5); // header longer than the frame
  t.throws(() => decode(wrongLengths), { code: 'MALFORMED_FRAME' });
  t.throws(() => encodeFrame({ type: 'data', offset: 0, last: true, payload: Buffer.alloc(64 * 1024 + 1) }, limits), { code: 'FRAME_TOO_LARGE' });
  t.end();
});

/** Sends raw bytes to a TCP server and collects what comes back until it closes. */
async function rawExchange(address: string, bytes: Buffer): Promise<Message[]> {
  const { host, port } = parseAddress(address);
  const socket = net.connect({ host, port });
  const decoder = new FrameDecoder(defaultDataPlaneLimits);
  const received: Message[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      for (let m = decoder.next(); m !== undefined; m = decoder.next()) received.push(m);
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
    socket.write(bytes);
  });
  return received;
}

void t.test('tcp: bad frames end that connection with a typed error; the server keeps serving', async (t) => {
  const cluster = await startCluster('tcp', 1);
  t.teardown(() => cluster.close());
  const address = cluster.servers[0]!.address;
  const oversized = Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 0, 0, 0, 1]);
  t.match(await rawExchange(address, oversized), [{ type: 'error', code: 'FRAME_TOO_LARGE' }]);
  t.match(await rawExchange(address, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), [{ type: 'error', code: 'FRAME_TOO_LARGE' }]);
  t.match(await rawExchange(address, Buffer.from([0, 0, 0, 6, 1, 0, 0, 0, 1, 0xc1])), [{ type: 'error', code: 'MALFORMED_FRAME' }]);
  const ack = concat(encodeFrame({ type: 'ack', seq: 0, replicas: [] }, defaultDataPlaneLimits));
  t.match(await rawExchange(address, ack), [{ type: 'error', code: 'PROTOCOL_ERROR' }], 'a message out of place');
  for (let i = 0; i < 20; i++) {
    const garbage = Buffer.from(patternBytes(100 + i * 37, 100 + i));
    const replies = await rawExchange(address, garbage);
    t.ok(replies.every((m) => m.type === 'error'), `garbage ${i}: only an error comes back`);
  }
  // Still serving.
  const data = patternBytes(300_000, 8);
  const writer = await PipelineWriter.open(cluster.network, { handle: 41, version: 1, chain: cluster.chain(), packetBytes: 64 * 1024 });
  await writer.write(data);
  await writer.seal();
  const back = await readRange(cluster.network, address, { handle: 41, version: 1, offset: 0, length: data.length });
  t.ok(Buffer.from(back).equals(data));
  const errors = (await cluster.servers[0]!.metrics.connectionErrors.get()).values;
  t.ok((errors.find((v) => v.labels.code === 'MALFORMED_FRAME')?.value ?? 0) >= 1, 'malformed frames are counted');
  t.ok((errors.find((v) => v.labels.code === 'FRAME_TOO_LARGE')?.value ?? 0) >= 2, 'oversized frames are counted');
});

for (const kind of transportKinds) {
  void t.test(`${kind}: a writer that ignores the window is not read past inflightPacketsMax`, async (t) => {
    const inflightPacketsMax = 3;
    const gate: (() => void)[] = [];
    let stalled = true;
    const cluster = await startCluster(kind, 1, {
      limits: { inflightPacketsMax },
      hooks: (): MemoryStoreHooks => ({
        before: (call) => (call.op === 'append' && stalled ? new Promise<void>((resolve) => gate.push(resolve)) : undefined),
      }),
    });
    t.teardown(() => cluster.close());
    const connection = await cluster.network.dial(cluster.servers[0]!.address);
    const acks: number[] = [];
    let setupAcked = false;
    connection.start({
      onMessage: (message) => {
        if (message.type === 'setup-ack') setupAcked = true;
        if (message.type === 'ack') acks.push(message.seq);
      },
      onClose: () => {},
    });
    connection.send({ type: 'setup', handle: 51, version: 1, targetId: 1, mode: 'create', fromVersion: 0, offset: 0, chain: [] });
    await waitFor(() => setupAcked, 'setup-ack');
    const packetBytes = 16 * 1024;
    const packets = 40;
    const data = patternBytes(packets * packetBytes, 12);
    for (let seq = 0; seq < packets; seq++)
      connection.send({ type: 'packet', seq, offset: seq * packetBytes, sync: false, payload: data.subarray(seq * packetBytes, (seq + 1) * packetBytes) });
    await settle(100);
    const [hop] = cluster.servers[0]!.activeHops();
    t.ok(hop !== undefined && hop.queuedPacketsMaxSeen <= inflightPacketsMax, `the hop queued at most ${hop?.queuedPacketsMaxSeen}`);
    t.equal(acks.length, 0);
    stalled = false;
    for (const release of gate.splice(0)) release();
    await waitFor(() => acks.length === packets, 'every packet to be acknowledged');
    t.same(acks, [...Array(packets).keys()], 'acks in seq order');
    t.ok(hop !== undefined && hop.queuedPacketsMaxSeen <= inflightPacketsMax, 'and never more than the window');
    t.equal(cluster.stores[0]!.info(51)?.lengthBytes, data.length);
    connection.destroy();
  });
}

for (const kind of transportKinds) {
  void t.test(`${kind}: connections past connectionsMax are refused with BUSY`, async (t) => {
    const cluster = await startCluster(kind, 1, { connectionsMax: 2 });
    t.teardown(() => cluster.close());
    const address = cluster.servers[0]!.address;
    const writer = await PipelineWriter.open(cluster.network, { handle: 61, version: 1, chain: cluster.chain(), packetBytes: 64 * 1024 });
    await writer.write(patternBytes(1000, 1));
    await writer.seal();
    const idle = [await cluster.network.dial(address), await cluster.network.dial(address)];
    for (const connection of idle) connection.start({ onMessage: () => {}, onClose: () => {} });
    await settle();
    await t.rejects(readRange(cluster.network, address, { handle: 61, version: 1, offset: 0, length: 10 }), { code: 'BUSY' });
    idle[0]!.destroy();
    let back: Uint8Array | null = null;
    for (let attempt = 0; attempt < 100 && back === null; attempt++) {
      back = await readRange(cluster.network, address, { handle: 61, version: 1, offset: 0, length: 10 }).catch(() => null);
      if (back === null) await settle(20);
    }
    t.ok(back !== null && Buffer.from(back).equals(patternBytes(1000, 1).subarray(0, 10)), 'served once a slot is free');
    idle[1]!.destroy();
  });
}
