/**
 * The metadata workload end to end (`npm run sim -- --workload metadata`): whole metadata servers (the
 * metadata state machine over Raft) under faults, checked against a model replaying the committed log.
 */
import t from 'tap';
import { runSeed } from './simulation.ts';

/** Seeds every run of `npm test` checks; the CLI runs many more (`npm run sim -- --workload metadata --seeds 200`). */
const PASSING_SEEDS_COUNT = 20;

void t.test('a metadata seed replays exactly', async (t) => {
  const first = await runSeed(5, { workload: 'metadata' });
  const second = await runSeed(5, { workload: 'metadata' });
  t.equal(second.traceHash, first.traceHash, 'same trace hash');
  t.same(second.stats, first.stats, 'same statistics');
  t.not((await runSeed(5)).traceHash, first.traceHash, 'the raft workload of the same seed differs');
});

void t.test(`${PASSING_SEEDS_COUNT} metadata seeds pass`, async (t) => {
  const failures: string[] = [];
  let retries = 0;
  let reads = 0;
  let batches = 0;
  const chunks = { sealed: 0, copies: 0, deletes: 0, bumps: 0, converged: 0 };
  for (let seed = 1; seed <= PASSING_SEEDS_COUNT; seed++) {
    const r = await runSeed(seed, { workload: 'metadata' });
    chunks.sealed += r.stats.chunks?.chunksSealed ?? 0;
    chunks.copies += r.stats.chunks?.copiesDone ?? 0;
    chunks.deletes += r.stats.chunks?.deletesDone ?? 0;
    chunks.bumps += r.stats.chunks?.pipelineBumps ?? 0;
    if (r.stats.chunks?.convergedMs !== null && r.stats.chunks?.convergedMs !== undefined) chunks.converged++;
    retries += r.stats.metadata?.retriesDeduplicated ?? 0;
    reads += r.stats.metadata?.readsChecked ?? 0;
    batches += r.stats.metadata?.batchesChecked ?? 0;
    if (!r.ok) failures.push(`seed ${seed}: [${r.violation?.kind}] ${r.violation?.message} (npm run sim -- --seed ${seed} --workload metadata)`);
  }
  t.same(failures, [], 'no violations');
  t.ok(batches > PASSING_SEEDS_COUNT * 10, `node batches were checked against the model (${batches})`);
  t.ok(reads > PASSING_SEEDS_COUNT * 10, `stat/readdir reads were checked (${reads})`);
  t.ok(retries > 0, `retried commands were deduplicated (${retries})`);
  t.ok(chunks.sealed > PASSING_SEEDS_COUNT * 5, `writers sealed chunks (${chunks.sealed}), with new pipelines (${chunks.bumps})`);
  t.ok(chunks.copies > 0 && chunks.deletes > 0, `chunkservers copied (${chunks.copies}) and deleted (${chunks.deletes}) replicas on the manager's orders`);
  t.equal(chunks.converged, PASSING_SEEDS_COUNT, 'every seed converged: chunks back to their factor, no stale replica');
});

void t.test('read-without-quorum is caught on metadata reads', async (t) => {
  for (let seed = 1; seed <= 300; seed++) {
    const r = await runSeed(seed, { workload: 'metadata', bugs: new Set(['read-without-quorum']) });
    if (r.ok) continue;
    t.equal(r.violation?.kind, 'linearizability', `seed ${seed}: ${r.violation?.message}`);
    return;
  }
  t.fail('no seed in 1..300 caught read-without-quorum');
});
