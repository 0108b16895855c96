/**
 * The simulator end to end: determinism (a seed replays exactly), a batch of mixed-fault seeds passes on the
 * real Raft code, and the liveness check can fail.
 */
import t from 'tap';
import { runSeed } from './simulation.ts';

/** Seeds every run of `npm test` checks; the CLI runs thousands (`npm run sim -- --seeds 1000`). */
const PASSING_SEEDS_COUNT = 40;

void t.test('the same seed replays exactly; different seeds differ', async (t) => {
  for (const clusterSizes of [[1], [3], [5]] as const) {
    const first = await runSeed(7, { clusterSizes });
    const second = await runSeed(7, { clusterSizes });
    t.equal(second.traceHash, first.traceHash, `cluster of ${clusterSizes[0]}: same trace hash`);
    t.equal(second.simulatedMs, first.simulatedMs, 'same simulated duration');
    t.same(second.stats, first.stats, 'same statistics');
    t.same(
      second.history.map((op) => [op.kind, op.key, op.value, op.outcome, op.index, op.readIndex]),
      first.history.map((op) => [op.kind, op.key, op.value, op.outcome, op.index, op.readIndex]),
      'same client history',
    );
  }
  const hashes = new Set<string>();
  for (let seed = 1; seed <= 5; seed++) hashes.add((await runSeed(seed)).traceHash);
  t.equal(hashes.size, 5, 'five seeds, five different traces');
});

void t.test(`${PASSING_SEEDS_COUNT} mixed-fault seeds pass`, async (t) => {
  const failures: string[] = [];
  let faults = 0;
  for (let seed = 1; seed <= PASSING_SEEDS_COUNT; seed++) {
    const r = await runSeed(seed);
    faults += r.stats.cluster.crashes + r.stats.cluster.pauses + r.stats.faults.partitions + r.stats.membership.proposed;
    if (!r.ok) failures.push(`seed ${seed}: [${r.violation?.kind}] ${r.violation?.message} (npm run sim -- --seed ${seed})`);
  }
  t.same(failures, [], 'no violations');
  t.ok(faults > PASSING_SEEDS_COUNT * 5, `the seeds injected faults (${faults})`);
});

void t.test('single-node clusters pass too', async (t) => {
  for (let seed = 1; seed <= 5; seed++) {
    const r = await runSeed(seed, { clusterSizes: [1] });
    t.ok(r.ok, `seed ${seed} with one node: ${r.violation?.message ?? 'ok'}`);
  }
});

void t.test('the liveness check fails a run that does not heal in time', async (t) => {
  const r = await runSeed(1, { livenessDeadlineMs: 1 });
  t.equal(r.ok, false);
  t.equal(r.violation?.kind, 'liveness');
  t.match(r.violation?.message ?? '', /within 1ms of healing/);
});
