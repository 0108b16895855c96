/**
 * Backpressure end to end: with the last replica stalled, the writer stops at inflightPacketsMax
 * unacknowledged packets, every hop holds at most that many, and nothing grows while it stays stalled.
 */
import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { MemoryDataNetwork } from '../../src/chunkserver/dataplane/memory-network.ts';
import { PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { patternBytes, settle, startCluster, track, transportKinds, waitFor } from './dataplane-harness.ts';
import type { MemoryStoreHooks } from './memory-store.ts';

const packetBytes = 64 * 1024;
const inflightPacketsMax = 4;
// Socket buffers: keep the send queue's high-water mark small so TCP's own buffering stays small too.
const limits = { inflightPacketsMax, sendQueueBytesHigh: 2 * packetBytes };

for (const kind of transportKinds) {
  void t.test(`${kind}: a stalled last replica stalls the writer within the window`, async (t) => {
    const gate: (() => void)[] = [];
    let stalled = true;
    const cluster = await startCluster(kind, 3, {
      limits,
      hooks: (index): MemoryStoreHooks =>
        index === 2
          ? { before: (call) => (call.op === 'append' && stalled ? new Promise<void>((resolve) => gate.push(resolve)) : undefined) }
          : {},
    });
    t.teardown(() => cluster.close());
    const data = patternBytes(64 * packetBytes, 5);
    const writer = await PipelineWriter.open(cluster.network, { handle: 31, version: 1, chain: cluster.chain(), packetBytes, limits });
    const written = track(writer.write(data));
    await waitFor(() => gate.length > 0, 'the last replica to be reached');
    await settle(100);
    const lengths = () => cluster.stores.map((s) => s.info(31)?.lengthBytes ?? 0);
    const before = { lengths: lengths(), queued: cluster.network instanceof MemoryDataNetwork ? cluster.network.queuedBytes() : 0 };
    t.equal(written.done, false, 'write() waits');
    t.equal(writer.ackedLengthBytes, 0);
    t.ok(writer.inflightPackets <= inflightPacketsMax, `writer has ${writer.inflightPackets} packets in flight`);
    t.ok(writer.inflightPacketsMaxSeen <= inflightPacketsMax, 'and never had more');
    for (const [index, server] of cluster.servers.entries()) {
      for (const hop of server.activeHops())
        t.ok(hop.queuedPacketsMaxSeen <= inflightPacketsMax, `hop ${index} queued at most ${hop.queuedPacketsMaxSeen} packets`);
    }
    for (const [index, length] of before.lengths.entries())
      t.ok(length <= inflightPacketsMax * packetBytes, `replica ${index} received ${length} bytes: one window at most`);
    t.ok(before.queued <= 3 * (limits.sendQueueBytesHigh + packetBytes), `${before.queued} bytes wait in inboxes`);
    // Still stalled a while later: nothing has grown.
    await settle(200);
    t.same(lengths(), before.lengths, 'replicas received nothing more while stalled');
    t.ok(writer.inflightPackets <= inflightPacketsMax);
    if (cluster.network instanceof MemoryDataNetwork) t.equal(cluster.network.queuedBytes(), before.queued, 'no message queued since');
    // Release the stalled replica: everything flows and lands intact.
    stalled = false;
    for (const release of gate.splice(0)) release();
    await written.promise;
    const sealed = await writer.seal();
    t.same(sealed.map((s) => s.checksum), [crc32c(data), crc32c(data), crc32c(data)]);
    t.ok(writer.inflightPacketsMaxSeen <= inflightPacketsMax);
  });

  void t.test(`${kind}: a slow middle replica paces the writer`, async (t) => {
    let appends = 0;
    const cluster = await startCluster(kind, 3, {
      limits,
      hooks: (index): MemoryStoreHooks =>
        index === 1
          ? { before: (call) => (call.op === 'append' && ++appends % 2 === 0 ? new Promise<void>((resolve) => setTimeout(resolve, 3)) : undefined) }
          : {},
    });
    t.teardown(() => cluster.close());
    const data = patternBytes(48 * packetBytes, 6);
    const writer = await PipelineWriter.open(cluster.network, { handle: 32, version: 1, chain: cluster.chain(), packetBytes, limits });
    await writer.write(data);
    await writer.flush();
    t.ok(writer.inflightPacketsMaxSeen <= inflightPacketsMax);
    for (const server of cluster.servers) t.equal(server.activeHops().length, 1);
    await writer.seal();
    t.equal(cluster.stores[2]!.info(32)?.checksum, crc32c(data));
  });
}

// The writer here ignores the replicas' window (1000 packets, a 64 MiB send queue): the replicas' own limit
// (pausing their upstream socket) is what keeps memory flat.
void t.test('tcp: with the last replica stalled, memory stays flat while a greedy writer offers 64 MiB', async (t) => {
  const packet = 256 * 1024;
  const gate: (() => void)[] = [];
  let stalled = true;
  const cluster = await startCluster('tcp', 3, {
    limits: { inflightPacketsMax, sendQueueBytesHigh: 2 * packet },
    hooks: (index): MemoryStoreHooks =>
      index === 2 ? { before: (call) => (call.op === 'append' && stalled ? new Promise<void>((resolve) => gate.push(resolve)) : undefined) } : {},
  });
  t.teardown(() => cluster.close());
  const data = Buffer.alloc(64 * 1024 * 1024, 7);
  const writer = await PipelineWriter.open(cluster.network, {
    handle: 33,
    version: 1,
    chain: cluster.chain(),
    packetBytes: packet,
    limits: { sendQueueBytesHigh: 64 * 1024 * 1024, inflightPacketsMax: 1000 },
  });
  const baseline = process.memoryUsage().arrayBuffers;
  const written = track(writer.write(data));
  await waitFor(() => gate.length > 0, 'the last replica to be reached');
  await settle(300);
  // Growth of array-buffer memory since the baseline (negative when a collection freed older garbage).
  // With the replicas' window at 1000 instead it grows by ~190 MiB: every hop reads what it is sent.
  const grownBytes = process.memoryUsage().arrayBuffers - baseline;
  t.ok(grownBytes < 16 * 1024 * 1024, `array buffers grew by ${(grownBytes / 2 ** 20).toFixed(1)} MiB`);
  t.ok((cluster.stores[0]!.info(33)?.lengthBytes ?? 0) <= inflightPacketsMax * packet);
  // Released, it flows again (the rest is not waited for: it would only cost test time).
  stalled = false;
  for (const release of gate.splice(0)) release();
  await waitFor(() => writer.ackedLengthBytes >= 8 * 1024 * 1024, 'acknowledgements to resume');
  writer.abort('test done');
  await t.rejects(written.promise, { code: 'ABORTED' });
});
