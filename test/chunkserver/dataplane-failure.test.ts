/**
 * Failures mid-write and the acknowledgement rule: the writer learns WHICH replica failed and how many
 * bytes every replica acknowledged; an ack never precedes the last replica's append.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { copyReplica } from '../../src/chunkserver/dataplane/copy.ts';
import { readRange } from '../../src/chunkserver/dataplane/read.ts';
import { PipelineFailedError, PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { ChunkStoreError } from '../../src/chunkserver/types.ts';
import type { Cluster } from './dataplane-harness.ts';
import { patternBytes, settle, startCluster, track, transportKinds, waitFor } from './dataplane-harness.ts';
import type { MemoryStoreHooks } from './memory-store.ts';

const packetBytes = 64 * 1024;
const data = patternBytes(2 * 1024 * 1024, 11);
const failOffset = 1024 * 1024 + 3 * packetBytes;

async function writeUntilFailure(cluster: Cluster, handle: number): Promise<{ failure: PipelineFailedError; acks: number[] }> {
  const acks: number[] = [];
  const writer = await PipelineWriter.open(cluster.network, {
    handle,
    version: 1,
    chain: cluster.chain(),
    packetBytes,
    onAck: (length) => acks.push(length),
  });
  const outcome = await writer.write(data).then(() => writer.seal()).then(
    () => null,
    (error: unknown) => error,
  );
  if (!(outcome instanceof PipelineFailedError)) throw new Error(`expected a PipelineFailedError, got ${String(outcome)}`);
  return { failure: outcome, acks };
}

/** Every replica holds at least the acknowledged bytes, and they are the bytes written. */
function checkAckedPrefix(t: Test, cluster: Cluster, handle: number, acked: number, skip: number[] = []): void {
  for (const [index, store] of cluster.stores.entries()) {
    if (skip.includes(index)) continue;
    const info = store.info(handle);
    t.ok(info !== undefined && info.lengthBytes >= acked, `replica ${index} holds the ${acked} acknowledged bytes`);
  }
}

for (const kind of transportKinds) {
  for (const failing of [0, 1, 2]) {
    void t.test(`${kind}: replica ${failing}'s store fails mid-write → failedIndex ${failing}, acked bytes reported`, async (t) => {
      const cluster = await startCluster(kind, 3, {
        hooks: (index): MemoryStoreHooks =>
          index === failing
            ? {
                before: (call) => {
                  if (call.op === 'append' && (call.offset ?? 0) >= failOffset) throw new ChunkStoreError('IO_ERROR', 'EIO');
                },
              }
            : {},
      });
      t.teardown(() => cluster.close());
      const { failure, acks } = await writeUntilFailure(cluster, 21);
      t.equal(failure.failedIndex, failing);
      t.equal(failure.failedId, failing + 1);
      t.equal(failure.code, 'IO_ERROR');
      t.ok(failure.ackedLengthBytes <= failOffset, `acked ${failure.ackedLengthBytes} ≤ ${failOffset}`);
      t.equal(failure.ackedBytes, failure.ackedLengthBytes);
      t.equal(failure.ackedLengthBytes, acks.at(-1) ?? 0, 'the reported length is the last acknowledgement');
      checkAckedPrefix(t, cluster, 21, failure.ackedLengthBytes);
      await waitFor(() => cluster.servers.every((s) => s.activeHops().length === 0), 'every hop to close');
    });
  }

  for (const crashing of [0, 1, 2]) {
    void t.test(`${kind}: replica ${crashing}'s server goes away mid-write → failedIndex ${crashing}`, async (t) => {
      let crashed = false;
      let cluster: Cluster | null = null;
      cluster = await startCluster(kind, 3, {
        hooks: (index): MemoryStoreHooks =>
          index === crashing
            ? {
                before: (call) => {
                  if (call.op !== 'append' || (call.offset ?? 0) < failOffset) return;
                  if (!crashed) {
                    crashed = true;
                    void cluster?.crash(crashing);
                  }
                  return new Promise<void>(() => {}); // a dead server's disk never answers
                },
              }
            : {},
      });
      const live = cluster;
      t.teardown(() => live.close());
      const { failure } = await writeUntilFailure(live, 22);
      t.equal(failure.failedIndex, crashing, `${failure.message}`);
      t.equal(failure.code, 'CONNECTION_LOST');
      t.ok(failure.ackedLengthBytes <= failOffset);
      checkAckedPrefix(t, live, 22, failure.ackedLengthBytes);
      const survivor = crashing === 0 ? 1 : 0;
      const prefix = await readRange(live.network, live.servers[survivor]!.address, { handle: 22, version: 1, offset: 0, length: failure.ackedLengthBytes });
      t.ok(Buffer.from(prefix).equals(data.subarray(0, failure.ackedLengthBytes)), 'the acknowledged prefix reads back');
    });
  }

  void t.test(`${kind}: no ack before every replica's append (random delays on every replica)`, async (t) => {
    let step = 0;
    const cluster = await startCluster(kind, 3, {
      hooks: (index): MemoryStoreHooks => ({
        before: (call) => {
          if (call.op !== 'append') return;
          step += 1;
          const delayMs = (step * (index + 7)) % 4; // varied, replayable
          return delayMs === 0 ? undefined : new Promise<void>((resolve) => setTimeout(resolve, delayMs));
        },
      }),
    });
    t.teardown(() => cluster.close());
    let violations = 0;
    let acks = 0;
    const writer = await PipelineWriter.open(cluster.network, {
      handle: 23,
      version: 1,
      chain: cluster.chain(),
      packetBytes,
      onAck: (acked) => {
        acks += 1;
        for (const store of cluster.stores) if ((store.info(23)?.lengthBytes ?? 0) < acked) violations += 1;
      },
    });
    await writer.write(data);
    await writer.seal();
    t.equal(acks, data.length / packetBytes);
    t.equal(violations, 0, 'at every ack, every replica held the acknowledged bytes');
  });

  void t.test(`${kind}: a held append on the last replica holds every ack`, async (t) => {
    const gate: (() => void)[] = [];
    let held = true;
    const cluster = await startCluster(kind, 3, {
      hooks: (index): MemoryStoreHooks =>
        index === 2
          ? { before: (call) => (call.op === 'append' && held ? new Promise<void>((resolve) => gate.push(resolve)) : undefined) }
          : {},
    });
    t.teardown(() => cluster.close());
    const writer = await PipelineWriter.open(cluster.network, { handle: 24, version: 1, chain: cluster.chain(), packetBytes });
    const written = track(writer.write(data.subarray(0, 4 * packetBytes)).then(() => writer.flush()));
    await waitFor(() => gate.length > 0, 'the last replica to receive a packet');
    await waitFor(() => (cluster.stores[1]!.info(24)?.lengthBytes ?? 0) === 4 * packetBytes, 'the middle replica to append');
    await settle();
    t.equal(writer.ackedLengthBytes, 0, 'nothing acknowledged while the last replica has not appended');
    t.equal(written.done, false);
    held = false;
    for (const release of gate.splice(0)) release();
    await written.promise;
    t.equal(writer.ackedLengthBytes, 4 * packetBytes);
  });
}

void t.test('abort() tears the pipeline down: calls reject with ABORTED, every hop closes', async (t) => {
  const cluster = await startCluster('tcp', 3, {
    hooks: (index): MemoryStoreHooks => (index === 2 ? { before: (call) => (call.op === 'append' ? new Promise<void>(() => {}) : undefined) } : {}),
  });
  t.teardown(() => cluster.close());
  const writer = await PipelineWriter.open(cluster.network, { handle: 25, version: 1, chain: cluster.chain(), packetBytes });
  const written = track(writer.write(data));
  await waitFor(() => writer.inflightPackets > 0, 'packets in flight');
  await settle();
  t.equal(written.done, false);
  writer.abort('deadline passed');
  await t.rejects(written.promise, { code: 'ABORTED', failedIndex: 0, ackedLengthBytes: 0 });
  await t.rejects(writer.flush(), { code: 'ABORTED' });
  await waitFor(() => cluster.servers.every((s) => s.activeHops().length === 0), 'every hop to close');
});

for (const kind of transportKinds) {
  void t.test(`${kind}: an unreachable replica in the chain fails the setup at its index`, async (t) => {
    const cluster = await startCluster(kind, 3);
    t.teardown(() => cluster.close());
    const chain = cluster.chain();
    const deadAddress = kind === 'tcp' ? '127.0.0.1:1' : 'nowhere:1';
    await t.rejects(
      PipelineWriter.open(cluster.network, { handle: 26, version: 1, chain: [chain[0]!, { id: 9, address: deadAddress }, chain[2]!] }),
      { code: 'CONNECT_FAILED', failedIndex: 1, failedId: 9, ackedLengthBytes: 0 },
    );
    await t.rejects(
      PipelineWriter.open(cluster.network, { handle: 27, version: 1, chain: [{ id: 9, address: deadAddress }, ...chain] }),
      { code: 'CONNECT_FAILED', failedIndex: 0 },
    );
    await t.rejects(
      PipelineWriter.open(cluster.network, { handle: 28, version: 1, chain: [chain[0]!, { id: 77, address: chain[1]!.address }] }),
      { code: 'WRONG_SERVER', failedIndex: 1 },
      'a chain entry whose id is not the server at that address',
    );
  });
}

for (const kind of transportKinds) {
  // A replica lost while sealing (seen under SIGKILL in the end-to-end test): the replicas before it sealed
  // already. The writer resumes the survivors at a new version from the whole length; a sealed survivor
  // takes the version and stays sealed, and the resumed pipeline seals again with the same checksum.
  void t.test(`${kind}: a replica failing its seal: the sealed survivors resume at a new version and seal again`, async (t) => {
    const cluster = await startCluster(kind, 3, {
      hooks: (index): MemoryStoreHooks =>
        index === 2 ? { before: (call) => (call.op === 'seal' ? Promise.reject(new ChunkStoreError('IO_ERROR', 'EIO')) : undefined) } : {},
    });
    t.teardown(() => cluster.close());
    const writer = await PipelineWriter.open(cluster.network, { handle: 29, version: 1, chain: cluster.chain(), packetBytes });
    await writer.write(data);
    const failure = await writer.seal().then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(failure instanceof PipelineFailedError, `the seal failed: ${String(failure)}`);
    const failed = failure as PipelineFailedError;
    t.equal(failed.failedIndex, 2);
    t.equal(failed.ackedLengthBytes, data.length, 'every byte was acknowledged before the seal');
    const sealedBefore = cluster.stores.slice(0, 2).filter((s) => s.info(29)?.sealed === true).length;
    t.ok(sealedBefore > 0, `a survivor sealed before the failure (${sealedBefore})`);

    const resumed = await PipelineWriter.open(cluster.network, {
      handle: 29,
      version: 2,
      chain: cluster.chain([0, 1]),
      mode: 'resume',
      fromVersion: 1,
      offset: failed.ackedLengthBytes,
      packetBytes,
    });
    const sealed = await resumed.seal(data.length);
    t.same(sealed.map((r) => r.id), [1, 2]);
    t.ok(sealed.every((r) => r.lengthBytes === data.length && r.checksum === sealed[0]!.checksum), 'the same length and checksum on both');
    for (const index of [0, 1]) t.match(cluster.stores[index]!.info(29), { version: 2, sealed: true, lengthBytes: data.length }, `replica ${index} raised and sealed`);
    const back = await readRange(cluster.network, cluster.servers[1]!.address, { handle: 29, version: 2, offset: 0, length: data.length });
    t.ok(Buffer.from(back).equals(data), 'the bytes read back at the new version');
  });
}

/** Bound on how long an aborted copy may take to reject: no timer of the data plane is involved, only I/O. */
const abortBoundMs = 1_000;

void t.test('copyReplica: its signal aborts a copy to a target that accepts and never answers', async (t) => {
  const cluster = await startCluster('tcp', 1);
  t.teardown(() => cluster.close());
  const writer = await PipelineWriter.open(cluster.network, { handle: 30, version: 1, chain: cluster.chain(), packetBytes });
  await writer.write(data);
  await writer.seal();
  // A stopped (SIGSTOP) chunkserver: the kernel accepts the connection, nothing reads or answers it.
  const sockets: Socket[] = [];
  const stuck = createServer({ pauseOnConnect: true }, (socket) => sockets.push(socket));
  await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => stuck.close(() => resolve())));
  t.teardown(() => sockets.forEach((socket) => socket.destroy()));
  const address = `127.0.0.1:${(stuck.address() as AddressInfo).port}`;

  const controller = new AbortController();
  const copy = track(copyReplica(cluster.stores[0]!, cluster.network, 30, 1, { id: 9, address }, { packetBytes, signal: controller.signal }));
  await waitFor(() => sockets.length === 1, 'the target to accept');
  await settle();
  t.equal(copy.done, false, 'the copy waits for an answer that never comes');
  const abortedAt = Date.now();
  controller.abort(new Error('the agent stopped'));
  await waitFor(() => copy.done, 'the aborted copy to end', abortBoundMs);
  t.pass(`ended ${Date.now() - abortedAt} ms after the abort`);
  t.match(copy.error, { name: 'PipelineFailedError', code: 'ABORTED', failedId: 9, message: /the agent stopped/ }, 'rejected ABORTED');
  // The source closed its end: the target, reading again, sees the connection end.
  const socket = sockets[0]!;
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => {});
  socket.resume();
  await ended;
  t.pass('the connection to the target is closed');

  await t.rejects(copyReplica(cluster.stores[0]!, cluster.network, 30, 1, { id: 9, address }, { signal: controller.signal }), { code: 'ABORTED' }, 'an aborted signal dials nothing');
  await settle();
  t.equal(sockets.length, 1, 'no second connection');
});

void t.test('copyReplica: aborted mid-transfer, the target abandons its unsealed copy', async (t) => {
  const cluster = await startCluster('tcp', 2, {
    // The target's disk stops answering after the copy began.
    hooks: (index): MemoryStoreHooks => (index === 1 ? { before: (call) => (call.op === 'append' ? new Promise<void>(() => {}) : undefined) } : {}),
  });
  t.teardown(() => cluster.close());
  const writer = await PipelineWriter.open(cluster.network, { handle: 31, version: 1, chain: cluster.chain([0]), packetBytes });
  await writer.write(data);
  await writer.seal();
  const controller = new AbortController();
  const copy = track(copyReplica(cluster.stores[0]!, cluster.network, 31, 1, cluster.chain([1])[0]!, { packetBytes, signal: controller.signal }));
  await waitFor(() => cluster.servers[1]!.activeHops().some((hop) => hop.queuedPackets > 0), 'packets queued at the target');
  await settle();
  t.equal(copy.done, false);
  const abortedAt = Date.now();
  controller.abort(new Error('the agent stopped'));
  await waitFor(() => copy.done, 'the aborted copy to end', abortBoundMs);
  t.pass(`ended ${Date.now() - abortedAt} ms after the abort`);
  t.match(copy.error, { code: 'ABORTED' }, 'rejected ABORTED');
  await waitFor(() => cluster.servers[1]!.activeHops().length === 0, 'the target to abandon the pipeline');
  t.match(cluster.stores[1]!.info(31), { version: 1, sealed: false }, 'what arrived stays unsealed (never listed; garbage to the leader)');
});
