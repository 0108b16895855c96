/**
 * A replica that keeps its connection open and sends nothing (a paused chunkserver, a hung disk, a
 * blackholed link): the read fails with TIMEOUT after the data plane's stall timeout, and the reader goes on
 * to the next replica. Before, such a read waited for ever (only a broken connection or an error moved on).
 */
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { askLocalReplica, readRange } from '../../src/chunkserver/dataplane/read.ts';
import { realStallWatch } from '../../src/chunkserver/dataplane/stall.ts';
import { TcpDataNetwork } from '../../src/chunkserver/dataplane/tcp.ts';
import { PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { tcpDataPlane } from '../../src/client/connect.ts';
import type { ChunkLocation } from '../../src/client/data-path.ts';
import { FileReader } from '../../src/client/file-reader.ts';
import { patternBytes, startCluster, track } from '../chunkserver/dataplane-harness.ts';

const stallMs = 300;

void t.test('a read from a replica that answers nothing times out, and the reader moves on', async (t) => {
  let hang = false;
  const hung = new Promise<void>(() => undefined);
  // Replica 1's store never answers a read once `hang` is set: its server stays up, its connection open.
  const cluster = await startCluster('tcp', 2, { hooks: (index) => (index === 0 ? { before: (call) => (hang && call.op === 'read' ? hung : undefined) } : {}) });
  t.teardown(() => cluster.close());
  const data = patternBytes(3 * 1024 * 1024 + 777, 5);
  const writer = await PipelineWriter.open(cluster.network, { handle: 3, version: 1, chain: cluster.chain(), packetBytes: 256 * 1024 });
  await writer.write(data);
  await writer.flush();
  await writer.seal();
  hang = true;
  const stalled = cluster.servers[0]!.address;
  const request = { handle: 3, version: 1, offset: 0, length: data.length };

  // Without a stall watch (as every read was before): still waiting long after the timeout would have fired.
  const unwatched = track(readRange(cluster.network, stalled, request));
  await new Promise((r) => setTimeout(r, 3 * stallMs));
  t.notOk(unwatched.done, 'a read with no stall watch is still waiting');

  const plane = tcpDataPlane({ readStallMs: stallMs, localReads: false });
  t.teardown(() => plane.close());
  const started = Date.now();
  await t.rejects(plane.readRange(stalled, request), { code: 'TIMEOUT' }, 'the data plane gives up on the silent replica');
  const took = Date.now() - started;
  t.ok(took >= stallMs - 20 && took < stallMs + 5_000, `after its stall timeout (${took} ms for ${stallMs})`);

  // The reader: replica 1 first, then 2; the bytes come from 2.
  const chunk: ChunkLocation = {
    handle: 3,
    index: 0,
    version: 1,
    replicas: cluster.servers.map((s) => ({ id: s.id, address: s.address })),
    sealed: true,
    lengthBytes: data.length,
    checksum: crc32c(data),
  };
  const failures: { replicaId: number; code: string | undefined; reported: boolean }[] = [];
  const reader = new FileReader({
    metadata: {
      chunkLocations: () => Promise.resolve({ lengthBytes: data.length, complete: true, chunks: [chunk], hasMore: false, nextIndex: 0 }),
      reportBadReplica: () => Promise.reject(new Error('a silent replica is not corrupt: nothing to report')),
    },
    data: plane,
    orderReplicas: (c) => c.replicas,
    onReplicaFailure: (e) => failures.push({ replicaId: e.replicaId, code: e.code, reported: e.reported }),
  });
  const back = await reader.readFile('/f');
  t.ok(back.equals(data), 'the file reads back whole from the other replica');
  t.same(failures, [{ replicaId: 1, code: 'TIMEOUT', reported: false }], 'the silent replica timed out, not reported as bad');
});

void t.test("a local read's question to a silent chunkserver times out too", async (t) => {
  // A listener that accepts and never answers.
  const sockets = new Set<Socket>();
  const server = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const network = new TcpDataNetwork();
  const watch = realStallWatch(stallMs);
  await t.rejects(askLocalReplica(network, address, 1, 1, watch), { code: 'TIMEOUT' });
  await t.rejects(readRange(network, address, { handle: 1, version: 1, offset: 0, length: 10 }, undefined, watch), { code: 'TIMEOUT' });
});
