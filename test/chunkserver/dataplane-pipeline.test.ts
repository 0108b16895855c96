/** Write pipelines and reads end to end over both transports: bytes in equal bytes out on every replica. */
import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { copyReplica } from '../../src/chunkserver/dataplane/copy.ts';
import { DataPlaneError } from '../../src/chunkserver/dataplane/errors.ts';
import { readRange } from '../../src/chunkserver/dataplane/read.ts';
import { PipelineFailedError, PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { ChunkStoreError } from '../../src/chunkserver/types.ts';
import { patternBytes, startCluster, transportKinds } from './dataplane-harness.ts';

const packetBytes = 64 * 1024;

for (const kind of transportKinds) {
  void t.test(`${kind}: a 3-replica pipeline writes, seals and reads back equal bytes`, async (t) => {
    const syncs = [0, 0, 0];
    const cluster = await startCluster(kind, 3, {
      hooks: (index) => ({
        after: (call) => {
          if (call.op === 'sync') syncs[index]! += 1;
        },
      }),
    });
    t.teardown(() => cluster.close());
    const data = patternBytes(3 * 1024 * 1024 + 12_345, 1);
    const acks: number[] = [];
    const writer = await PipelineWriter.open(cluster.network, {
      handle: 7,
      version: 1,
      chain: cluster.chain(),
      packetBytes,
      onAck: (length) => acks.push(length),
    });
    // Writes of uneven sizes: packets are cut at packetBytes within each write.
    const cuts = [0, 1, 70_000, 1_000_000, 1_000_001, 2_500_000, data.length];
    for (let i = 1; i < cuts.length; i++) await writer.write(data.subarray(cuts[i - 1], cuts[i]), { sync: i === 3 });
    await writer.flush();
    t.equal(writer.ackedLengthBytes, data.length);
    t.same(syncs, [1, 1, 1], 'the one sync packet made every replica sync once');
    t.same(acks, [...acks].sort((a, b) => a - b), 'acknowledged lengths only grow');
    const sealed = await writer.seal();
    const checksum = crc32c(data);
    t.same(
      sealed,
      cluster.servers.map((s) => ({ id: s.id, lengthBytes: data.length, checksum })),
      'every replica sealed at the full length with the data checksum, in chain order',
    );
    for (const [index, store] of cluster.stores.entries()) {
      t.match(store.info(7), { version: 1, lengthBytes: data.length, sealed: true, checksum }, `store ${index}`);
      const whole = await readRange(cluster.network, cluster.servers[index]!.address, { handle: 7, version: 1, offset: 0, length: data.length });
      t.ok(Buffer.from(whole).equals(data), `replica ${index} reads back the bytes written`);
    }
    const part = await readRange(cluster.network, cluster.servers[1]!.address, { handle: 7, version: 1, offset: 1_234_567, length: 1_900_001 });
    t.ok(Buffer.from(part).equals(data.subarray(1_234_567, 1_234_567 + 1_900_001)), 'a byte range reads back');
    const empty = await readRange(cluster.network, cluster.servers[2]!.address, { handle: 7, version: 1, offset: data.length, length: 0 });
    t.equal(empty.length, 0);
    t.equal(cluster.servers.reduce((n, s) => n + s.activeHops().length, 0), 0, 'no hop is left open');
  });

  void t.test(`${kind}: reads return typed errors and the connection keeps serving`, async (t) => {
    const cluster = await startCluster(kind, 1);
    t.teardown(() => cluster.close());
    const writer = await PipelineWriter.open(cluster.network, { handle: 1, version: 3, chain: cluster.chain(), packetBytes });
    const data = patternBytes(200_000, 2);
    await writer.write(data);
    await writer.seal();
    const address = cluster.servers[0]!.address;
    const read = (handle: number, version: number, offset: number, length: number) =>
      readRange(cluster.network, address, { handle, version, offset, length });
    await t.rejects(read(2, 3, 0, 10), { name: 'DataPlaneError', code: 'NO_SUCH_REPLICA' });
    await t.rejects(read(1, 2, 0, 10), { code: 'STALE_VERSION' });
    await t.rejects(read(1, 3, 199_995, 10), { code: 'BAD_OFFSET' });
    await t.rejects(read(1, 3, 64 * 1024 * 1024, 1), { code: 'BAD_OFFSET' });
    cluster.stores[0]!.corrupt(1);
    await t.rejects(read(1, 3, 0, 10), { code: 'CHECKSUM_MISMATCH' });
    const counted = (await cluster.servers[0]!.metrics.reads.get()).values;
    t.equal(counted.find((v) => v.labels.outcome === 'CHECKSUM_MISMATCH')?.value, 1, 'counted');
    t.equal(counted.find((v) => v.labels.outcome === 'NO_SUCH_REPLICA')?.value, 1, 'counted');
  });

  void t.test(`${kind}: after a failure the survivors resume at the acknowledged length under a new version`, async (t) => {
    let failAt = -1;
    const cluster = await startCluster(kind, 3, {
      hooks: (index) =>
        index === 1
          ? {
              before: (call) => {
                if (call.op === 'append' && failAt >= 0 && (call.offset ?? 0) >= failAt)
                  throw new ChunkStoreError('DISK_FULL', 'no space left');
              },
            }
          : {},
    });
    t.teardown(() => cluster.close());
    const data = patternBytes(2 * 1024 * 1024, 3);
    failAt = 1024 * 1024;
    const writer = await PipelineWriter.open(cluster.network, { handle: 9, version: 1, chain: cluster.chain(), packetBytes });
    const failure = await writer.write(data).then(() => writer.flush()).then(
      () => null,
      (error: unknown) => error,
    );
    t.type(failure, PipelineFailedError);
    const { failedIndex, failedId, ackedLengthBytes, code } = failure as PipelineFailedError;
    t.equal(failedIndex, 1);
    t.equal(failedId, 2);
    t.equal(code, 'DISK_FULL');
    t.ok(ackedLengthBytes <= failAt, 'nothing the failing replica lacks was acknowledged');
    // The metadata leader bumps the version; the writer resumes with the survivors at the acked length.
    const resumed = await PipelineWriter.open(cluster.network, {
      handle: 9,
      version: 2,
      chain: cluster.chain([0, 2]),
      mode: 'resume',
      fromVersion: 1,
      offset: ackedLengthBytes,
      packetBytes,
    });
    await resumed.write(data.subarray(ackedLengthBytes));
    const sealed = await resumed.seal();
    t.same(sealed.map((s) => s.checksum), [crc32c(data), crc32c(data)]);
    for (const index of [0, 2]) {
      const back = await readRange(cluster.network, cluster.servers[index]!.address, { handle: 9, version: 2, offset: 0, length: data.length });
      t.ok(Buffer.from(back).equals(data), `survivor ${index} holds the whole chunk at version 2`);
    }
    await t.rejects(
      readRange(cluster.network, cluster.servers[1]!.address, { handle: 9, version: 2, offset: 0, length: 1 }),
      { code: 'STALE_VERSION' },
      'the failed replica is left at the old version: recognisably stale',
    );
    // A resume that does not raise the version is refused.
    await t.rejects(
      PipelineWriter.open(cluster.network, { handle: 9, version: 2, chain: cluster.chain([0]), mode: 'resume', fromVersion: 2, offset: 0 }),
      { code: 'STALE_VERSION', failedIndex: 0 },
    );
  });

  void t.test(`${kind}: copyReplica re-replicates a sealed replica to another server`, async (t) => {
    const cluster = await startCluster(kind, 2);
    t.teardown(() => cluster.close());
    const data = patternBytes(1_500_000, 4);
    const writer = await PipelineWriter.open(cluster.network, { handle: 5, version: 4, chain: cluster.chain([0]), packetBytes });
    await writer.write(data);
    await writer.seal();
    const [target] = cluster.chain([1]);
    const copied = await copyReplica(cluster.stores[0]!, cluster.network, 5, 4, target!, { packetBytes });
    t.same(copied, { id: 2, lengthBytes: data.length, checksum: crc32c(data) });
    t.match(cluster.stores[1]!.info(5), { version: 4, sealed: true, checksum: crc32c(data) });
    const back = await readRange(cluster.network, target!.address, { handle: 5, version: 4, offset: 0, length: data.length });
    t.ok(Buffer.from(back).equals(data));
    await t.rejects(copyReplica(cluster.stores[0]!, cluster.network, 5, 3, target!), { code: 'STALE_VERSION' });
    await t.rejects(copyReplica(cluster.stores[0]!, cluster.network, 6, 4, target!), { code: 'NO_SUCH_REPLICA' });
    await t.rejects(copyReplica(cluster.stores[0]!, cluster.network, 5, 4, target!), { code: 'REPLICA_EXISTS', failedIndex: 0 });
    t.type(new DataPlaneError('IO_ERROR', 'x'), Error);
  });
}
