/**
 * Write pipelines with a silent replica (its store stops answering, so it acknowledges nothing while its
 * connection stays open: a hung disk, and to its neighbours the same as a paused process). Every watcher
 * (the writer, each hop with replicas after it) gives up after its stall timeout, and the one nearest the
 * silent replica gives up first, so the failure names that replica and the writer goes on without it. A
 * pipeline that owes nothing (idle between writes) or makes slow progress is never failed.
 */
import t from 'tap';
import type { StallWatch } from '../../src/chunkserver/dataplane/stall.ts';
import { PipelineFailedError, PipelineWriter } from '../../src/chunkserver/dataplane/writer.ts';
import { patternBytes, startCluster } from './dataplane-harness.ts';

/** The stall unit of these tests: the last hop waits this long, the first twice, the writer three times. */
const unitMs = 150;
const watch: StallWatch = {
  ms: unitMs,
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};
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
