/**
 * Write pipelines with a silent replica (its store stops answering, so it acknowledges nothing while its
 * connection stays open: a hung disk, and to its neighbours the same as a paused process). Every watcher
 * (the writer, each hop with replicas after it) gives up after its stall timeout, and the one nearest the
 * silent replica gives up first, so the failure names that replica and the writer goes on without it. A
 * pipeline that owes nothing (idle between writes) or makes slow progress is never failed. The server's
 * side of a read: a reader that stops taking data loses its connection (and the server its slot) after
 * readSendStallUnits units; a slow reader does not. An idle pipeline whose writer sends keepalives stays
 * open past the hops' idle timeout; one whose writer went silent (paused) is ended by every hop.
 */
import net from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { encodeFrame } from '../../src/chunkserver/dataplane/frame.ts';
import { defaultDataPlaneLimits } from '../../src/chunkserver/dataplane/limits.ts';
import { readSendStallUnits } from '../../src/chunkserver/dataplane/server.ts';
import { realStallWatch } from '../../src/chunkserver/dataplane/stall.ts';
import { parseAddress } from '../../src/chunkserver/dataplane/tcp.ts';
import { PipelineFailedError, PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { patternBytes, settle, startCluster, waitFor } from './dataplane-harness.ts';

/** The stall unit of these tests: the last hop waits this long, the first twice, the writer three times. */
const unitMs = 150;
const watch = realStallWatch(unitMs);
const hung = new Promise<void>(() => undefined);

for (const [silent, expectMs] of [
  [2, unitMs],
  [1, 2 * unitMs],
  [0, 3 * unitMs],
] as const) {
  void t.test(`replica ${silent + 1} of 3 stops acknowledging: the failure names it`, async (t) => {
    let hang = false;
    const cluster = await startCluster('tcp', 3, {
      stall: watch,
      hooks: (index) => (index === silent ? { before: (call) => (hang && call.op === 'append' ? hung : undefined) } : {}),
    });
    t.teardown(() => cluster.close());
    const writer = await PipelineWriter.open(cluster.network, { handle: 11, version: 1, chain: cluster.chain(), packetBytes: 64 * 1024, stall: watch });
    const data = patternBytes(1024 * 1024, silent);
    await writer.write(data.subarray(0, 256 * 1024));
    await writer.flush();
    hang = true;
    const started = Date.now();
    const error = await writer
      .write(data.subarray(256 * 1024))
      .then(() => writer.flush())
      .then(
        () => null,
        (e: unknown) => e,
      );
    const took = Date.now() - started;
    t.type(error, PipelineFailedError);
    const failure = error as PipelineFailedError;
    t.equal(failure.code, 'TIMEOUT');
    t.equal(failure.failedIndex, silent, `chain position ${silent} named`);
    t.equal(failure.failedId, cluster.servers[silent]!.id);
    t.equal(failure.ackedLengthBytes, 256 * 1024, 'what every replica acknowledged before');
    t.ok(took >= expectMs - 20 && took < expectMs + 5_000, `after ${took} ms (its watcher waits ${expectMs} ms)`);
  });
}

void t.test('an idle pipeline owes nothing and is never failed; slow progress is not a stall', async (t) => {
  let delayMs = 0;
  const cluster = await startCluster('tcp', 3, {
    stall: watch,
    // One store call per hop batch, so a slow store still acknowledges after every call.
    appendPieces: true,
    hooks: (index) => (index === 2 ? { before: (call) => (call.op === 'append' && delayMs > 0 ? new Promise((r) => setTimeout(r, delayMs)) : undefined) } : {}),
  });
  t.teardown(() => cluster.close());
  const writer = await PipelineWriter.open(cluster.network, { handle: 12, version: 1, chain: cluster.chain(), packetBytes: 64 * 1024, stall: watch });
  const piece = 128 * 1024;
  const rounds = 12;
  const data = patternBytes(piece * (rounds + 1), 9);
  await writer.write(data.subarray(0, piece));
  await writer.flush();
  // Idle for longer than every watcher's timeout.
  await new Promise((r) => setTimeout(r, 5 * unitMs));
  // Then every append of the last replica takes a third of a unit: the whole write takes many units, but an
  // acknowledgement arrives within every unit.
  delayMs = Math.floor(unitMs / 3);
  const started = Date.now();
  for (let i = 1; i <= rounds; i++) {
    await writer.write(data.subarray(i * piece, (i + 1) * piece));
    await writer.flush();
  }
  const sealed = await writer.seal();
  t.equal(sealed.length, 3, 'sealed on every replica');
  const took = Date.now() - started;
  t.ok(took > 3 * unitMs, `the slow write took ${took} ms, longer than any watcher's timeout`);
});

/** A raw TCP reader: sends one `read` request for the whole chunk and takes data only as `take` allows. */
async function rawRead(address: string, request: { handle: number; version: number; length: number }): Promise<net.Socket> {
  const { host, port } = parseAddress(address);
  const socket = net.connect({ host, port });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.pause();
  for (const part of encodeFrame({ type: 'read', handle: request.handle, version: request.version, offset: 0, length: request.length }, defaultDataPlaneLimits)) socket.write(part);
  return socket;
}

const readLength = 16 * 1024 * 1024;

async function sealedChunk(cluster: Awaited<ReturnType<typeof startCluster>>, handle: number): Promise<void> {
  const writer = await PipelineWriter.open(cluster.network, { handle, version: 1, chain: cluster.chain() });
  await writer.write(patternBytes(readLength, handle));
  await writer.flush();
  await writer.seal();
}

async function timeouts(cluster: Awaited<ReturnType<typeof startCluster>>): Promise<number> {
  const m = await cluster.servers[0]!.metrics.connectionErrors.get();
  return m.values.find((v) => v.labels.code === 'TIMEOUT')?.value ?? 0;
}

/** One data server holding a sealed chunk `handle`, and a raw socket that asked to read all of it. */
async function rawReadOfSealedChunk(t: Test, handle: number) {
  const cluster = await startCluster('tcp', 1, { stall: watch });
  t.teardown(() => cluster.close());
  await sealedChunk(cluster, handle);
  const server = cluster.servers[0]!;
  const socket = await rawRead(server.address, { handle, version: 1, length: readLength });
  t.teardown(() => socket.destroy());
  return { cluster, server, socket };
}

void t.test(`a reader that takes nothing loses its connection after ${readSendStallUnits} stall units; the server frees its slot`, async (t) => {
  const { cluster, server } = await rawReadOfSealedChunk(t, 21);
  await waitFor(() => server.connectionCount === 1, 'the read connection');
  const started = Date.now();
  // The reader never reads: the kernel's buffers fill, then the server's send queue.
  await waitFor(() => server.connectionCount === 0, 'the server to drop the stalled reader', 10 * readSendStallUnits * unitMs + 3_000).catch(() => undefined);
  const took = Date.now() - started;
  t.equal(server.connectionCount, 0, `the connection is gone (after ${took} ms)`);
  t.ok(took >= readSendStallUnits * unitMs - 20, `not before ${readSendStallUnits} units`);
  t.equal(await timeouts(cluster), 1, 'counted as a TIMEOUT connection error');
});

void t.test('a slow reader that keeps taking data is not cut off', async (t) => {
  const { cluster, server, socket } = await rawReadOfSealedChunk(t, 22);
  // Takes about 10 MiB a second: the whole read lasts several times the watch's timeout.
  const bytesPerMs = (10 * 1024 * 1024) / 1000;
  const started = Date.now();
  let received = 0;
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    const ahead = received / bytesPerMs - (Date.now() - started);
    if (ahead > 0) {
      socket.pause();
      setTimeout(() => socket.resume(), ahead);
    }
  });
  socket.resume();
  await waitFor(() => received >= readLength || closed, 'the whole read', 30_000);
  const took = Date.now() - started;
  t.notOk(closed, 'the connection stayed open');
  t.ok(received >= readLength, `every byte arrived (${received} in ${took} ms)`);
  t.ok(took > 2 * readSendStallUnits * unitMs, `the read took longer than the watch's timeout (${took} ms)`);
  await settle();
  t.equal(server.connectionCount, 1, 'and the server kept it');
  t.equal(await timeouts(cluster), 0);
});

void t.test("an idle pipeline: kept by its writer's keepalives, ended by every hop once the writer is silent", async (t) => {
  const idleMs = 400;
  const cluster = await startCluster('tcp', 3, { stall: watch, pipelineIdle: realStallWatch(idleMs) });
  t.teardown(() => cluster.close());
  const data = patternBytes(512 * 1024, 21);
  const baseline = cluster.servers.map((s) => s.connectionCount);

  // Keepalives every 100 ms: idle for five idle timeouts, then the write goes on and seals.
  const kept = await PipelineWriter.open(cluster.network, { handle: 31, version: 1, chain: cluster.chain(), packetBytes: 64 * 1024, stall: watch, keepalive: realStallWatch(100) });
  await kept.write(data.subarray(0, 128 * 1024));
  await kept.flush();
  await new Promise((r) => setTimeout(r, 5 * idleMs));
  await kept.write(data.subarray(128 * 1024));
  const sealed = await kept.seal();
  t.same(sealed.map((r) => r.lengthBytes), [data.length, data.length, data.length], 'the kept pipeline wrote and sealed on every replica');

  // No keepalives (a writer that stopped without closing): every hop ends the pipeline after its idle timeout.
  const silent = await PipelineWriter.open(cluster.network, { handle: 32, version: 1, chain: cluster.chain(), packetBytes: 64 * 1024, stall: watch });
  await silent.write(data.subarray(0, 128 * 1024));
  await silent.flush();
  const open = cluster.servers.map((s) => s.connectionCount);
  t.ok(open.every((n, i) => n > baseline[i]!), `the pipeline holds connections on every server (${open.join(', ')})`);
  const started = Date.now();
  await waitFor(() => cluster.servers.every((s, i) => s.connectionCount === baseline[i]), 'every hop to end the idle pipeline', 10_000);
  const took = Date.now() - started;
  t.ok(took >= idleMs - 100, `ended after ${took} ms (idle timeout ${idleMs} ms)`);
  const error = await silent.write(data.subarray(128 * 1024)).then(() => silent.flush()).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(error, PipelineFailedError, 'the writer, back, finds its pipeline ended');
  t.equal(cluster.stores[0]!.info(32)?.lengthBytes, 128 * 1024, 'what was acknowledged stays on the replicas');
});
